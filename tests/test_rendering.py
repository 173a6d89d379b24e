"""Headless rendering: backend choice, non-blank frames, upright cameras, fast mode."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from crlgym import envs
from crlgym.envs.metaworld_env import CAMERAS, ROLLED_CAMERAS

pytestmark = pytest.mark.integration  # renders MuJoCo frames, subprocesses


def _frame(env: gym.Env) -> np.ndarray:
    """The env's rendered rgb frame."""
    frame = env.render()
    assert isinstance(frame, np.ndarray)
    return frame


def _gl_backend_in_fresh_process(environment: dict[str, str]) -> str:
    code = "import crlgym.envs, os; print(os.environ['MUJOCO_GL'])"
    result = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_mujoco_gl_is_set_to_egl_when_unset() -> None:
    environment = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}
    assert _gl_backend_in_fresh_process(environment) == "egl"


def test_users_mujoco_gl_is_kept() -> None:
    assert _gl_backend_in_fresh_process({**os.environ, "MUJOCO_GL": "osmesa"}) == "osmesa"


@pytest.mark.parametrize("task", ["hammer", "cheetah-run", "toy-reach-0"])
def test_frames_are_not_blank(task: str) -> None:
    env = envs.make_env(task, envs.EnvConfig(render_mode="rgb_array", width=96, height=64))
    env.reset(seed=0)
    env.step(env.action_space.sample())
    frame = _frame(env)
    env.close()
    assert frame.dtype == np.uint8
    if not task.startswith("toy"):
        assert frame.shape == (64, 96, 3)
    assert frame.astype(np.float64).var() > 0


def _camera_up_in_world(env, camera: str) -> np.ndarray:
    raw = env.unwrapped
    mujoco.mj_forward(raw.model, raw.data)
    camera_id = raw.model.camera(camera).id
    return raw.data.cam_xmat[camera_id].reshape(3, 3)[:, 1]  # the image's "up" axis


@pytest.mark.parametrize("camera", ROLLED_CAMERAS)
def test_corner_cameras_render_upright(camera: str) -> None:
    """Meta-World's corner cameras are rolled 180 degrees (image up points at the floor)."""
    rendering = envs.make_env("push", envs.EnvConfig(render_mode="rgb_array", camera=camera))
    plain = envs.make_env("push")  # no rendering: the model is left as Meta-World ships it
    assert _camera_up_in_world(plain, camera)[2] < 0
    assert _camera_up_in_world(rendering, camera)[2] > 0
    rendering.close()


def test_every_offered_camera_renders() -> None:
    for camera in CAMERAS:
        config = envs.EnvConfig(render_mode="rgb_array", camera=camera, width=32, height=32)
        env = envs.make_env("reach", config, seed=0)
        env.reset()
        assert _frame(env).var() > 0, camera
        env.close()


def test_fast_mode_turns_shadows_and_reflections_off() -> None:
    frames = {}
    for fast in (True, False):
        config = envs.EnvConfig(render_mode="rgb_array", fast_render=fast, width=64, height=64)
        env = envs.make_env("hammer", config, seed=0)
        env.reset()
        frames[fast] = _frame(env)
        raw: Any = env.unwrapped  # a MuJoCo env (gymnasium types it as a plain Env)
        viewer = raw.mujoco_renderer._get_viewer("rgb_array")
        assert bool(viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW]) is not fast
        assert bool(viewer.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION]) is not fast
        env.close()
    assert not np.array_equal(frames[True], frames[False])


def test_no_renderer_is_built_without_render_mode() -> None:
    env = envs.make_env("hammer", seed=0)
    env.reset()
    assert env.render() is None
    raw: Any = env.unwrapped
    assert not raw.mujoco_renderer._viewers
