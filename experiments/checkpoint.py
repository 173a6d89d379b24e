"""Atomic, code-free checkpoints.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values
(NumPy arrays are converted to tensors). It is written to a temporary file in the same
folder and renamed over the old one, so a crash never leaves a half-written checkpoint,
and it is read with ``torch.load(weights_only=True)``, which refuses to run code. The
checkpoint it replaces is kept as ``previous_<name>`` (`previous_path`), for the runner to
fall back to when the latest cannot be used.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crlgym.errors import CrlgymError

FORMAT_VERSION = 1


class CheckpointError(CrlgymError):
    """A missing, corrupt or foreign checkpoint."""


def previous_path(path: Path) -> Path:
    """Where the checkpoint before ``path``'s is kept (``checkpoints/previous_latest.pt``)."""
    return path.with_name(f"previous_{path.name}")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename); the checkpoint it
    replaces becomes `previous_path` (at every moment one of the two is complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        torch.save({"format_version": FORMAT_VERSION, **state}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    if path.is_file():
        os.replace(path, previous_path(path))
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint without executing code from it."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; was this run started with crl train?")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a crlgym checkpoint ({type(error).__name__})"
        ) from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has an unknown format")
    return state


def require_keys(path: Path, state: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Refuse a checkpoint that loads but lacks what the runner needs."""
    missing = [key for key in keys if key not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} is not a run checkpoint (it lacks {', '.join(missing)})"
        )


def global_rng_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's global random states, in checkpoint-safe types."""
    state = np.random.get_state(legacy=True)
    if not isinstance(state, tuple):  # legacy=True always gives the tuple
        raise TypeError(f"unexpected NumPy random state {type(state).__name__}")
    name, keys, position, has_gauss, cached = state
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }


def set_global_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
