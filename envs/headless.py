"""Headless OpenGL set-up for MuJoCo rendering.

MuJoCo reads ``MUJOCO_GL`` once, when it is first imported, so this module must run before
anything imports ``mujoco`` (``envs/__init__.py`` imports it first). A value the user already
set is always kept. Otherwise EGL is chosen when its library can be found (GPU or Mesa's
software EGL), then OSMesa, so frames render on a machine without a display.
"""

from __future__ import annotations

import ctypes.util
import os
import sys

#: Debian packages that provide each backend; named in error messages and installed by the
#: Makefile when missing.
BACKEND_PACKAGES: dict[str, tuple[str, ...]] = {
    "egl": ("libegl1", "libegl-mesa0", "libgl1-mesa-dri", "libopengl0"),
    "osmesa": ("libosmesa6",),
}


def choose_gl_backend() -> str:
    """Return the backend to use: the user's ``MUJOCO_GL``, else ``egl``, else ``osmesa``."""
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    if ctypes.util.find_library("EGL") is not None:
        return "egl"
    if ctypes.util.find_library("OSMesa") is not None:
        return "osmesa"
    # Neither library is present: keep EGL so the error at render time names it; the
    # message of `rendering_help()` says which packages to install.
    return "egl"


def configure_headless_rendering() -> str:
    """Set ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM``) unless already set; return the backend.

    Warns on stderr when ``mujoco`` was imported before this ran, because the choice can no
    longer take effect in this process.
    """
    backend = choose_gl_backend()
    if "MUJOCO_GL" not in os.environ:
        if "mujoco" in sys.modules:
            print(
                "crlgym: mujoco was imported before crlgym; import crlgym first (or set "
                "MUJOCO_GL=egl) for headless rendering.",
                file=sys.stderr,
            )
        os.environ["MUJOCO_GL"] = backend
    if backend in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


def rendering_help(backend: str | None = None) -> str:
    """One-line fix for a failed headless render."""
    backend = backend or os.environ.get("MUJOCO_GL", "egl")
    packages = " ".join(BACKEND_PACKAGES.get(backend, BACKEND_PACKAGES["egl"]))
    return (
        f"headless rendering with MUJOCO_GL={backend} failed; install the libraries with "
        f"'apt-get install {packages}' (or run 'make deps'), or set MUJOCO_GL=osmesa "
        "after 'apt-get install libosmesa6'."
    )
