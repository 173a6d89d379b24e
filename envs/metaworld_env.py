"""Meta-World v3 tasks under Continual World conventions.

One thin `gymnasium.Wrapper` over the raw ``SawyerXYZEnv`` (no wrapper stack: every extra
layer costs on the hot path, and the overhead budget is 3% of a raw step) that

* shows the goal in the observation (MT50 / Continual World) with a fresh random
  object/goal on every reset, drawn from the env's own seeded generator;
* advertises true observation bounds: one 39-d float32 box shared by all 50 tasks, whose
  goal part is the union of the tasks' goal spaces (Meta-World advertises 0 there);
* ends episodes after ``episode_length`` steps (200 by default, as Continual World);
* reports ``info["success"]`` every step and ``info["is_success"]`` (success at any step
  of the episode) on the final step;
* takes seeds through ``reset(seed=...)`` or the constructor (raw Meta-World ignores the
  ``reset`` seed);
* renders upright frames headlessly, optionally without shadows and reflections.
"""

from __future__ import annotations

import atexit
import warnings
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from crlgym.envs.families import Expert, TaskFamily
from crlgym.errors import ConfigError

if TYPE_CHECKING:
    from crlgym.envs.make import EnvConfig

#: Episode length of Continual World.
CW_EPISODE_LENGTH = 200

#: Meta-World v3's MT50 tasks, in ``metaworld.env_dict.ALL_V3_ENVIRONMENTS`` order (static, so
#: that ``import crlgym`` needs no Meta-World; tests/test_metaworld.py checks it).
METAWORLD_TASKS: tuple[str, ...] = (
    "assembly-v3", "basketball-v3", "bin-picking-v3", "box-close-v3",
    "button-press-topdown-v3", "button-press-topdown-wall-v3", "button-press-v3",
    "button-press-wall-v3", "coffee-button-v3", "coffee-pull-v3", "coffee-push-v3",
    "dial-turn-v3", "disassemble-v3", "door-close-v3", "door-lock-v3", "door-open-v3",
    "door-unlock-v3", "hand-insert-v3", "drawer-close-v3", "drawer-open-v3",
    "faucet-open-v3", "faucet-close-v3", "hammer-v3", "handle-press-side-v3",
    "handle-press-v3", "handle-pull-side-v3", "handle-pull-v3", "lever-pull-v3",
    "pick-place-wall-v3", "pick-out-of-hole-v3", "pick-place-v3", "plate-slide-v3",
    "plate-slide-side-v3", "plate-slide-back-v3", "plate-slide-back-side-v3",
    "peg-insert-side-v3", "peg-unplug-side-v3", "soccer-v3", "stick-push-v3",
    "stick-pull-v3", "push-v3", "push-wall-v3", "push-back-v3", "reach-v3",
    "reach-wall-v3", "shelf-place-v3", "sweep-into-v3", "sweep-v3", "window-open-v3",
    "window-close-v3",
)  # fmt: skip
_METAWORLD_TASK_SET = frozenset(METAWORLD_TASKS)

#: The version suffix that short Meta-World names (``hammer``) may drop.
METAWORLD_SUFFIX = "-v3"

#: Continual World's CW10, in the paper's order.
CW10: tuple[str, ...] = (
    "hammer-v3", "push-wall-v3", "faucet-close-v3", "push-back-v3", "stick-pull-v3",
    "handle-press-side-v3", "push-v3", "shelf-place-v3", "window-close-v3",
    "peg-unplug-side-v3",
)  # fmt: skip

# Hand, gripper and object parts of the raw space are the same for every task; the goal part
# is the union of `goal_space` over MT50 (checked by tests/test_metaworld.py).
_HAND_LOW, _HAND_HIGH = (-0.525, 0.348, -0.0525), (0.525, 1.025, 0.7)
GOAL_LOW = np.array([-0.5, 0.4, -0.15])
GOAL_HIGH = np.array([0.51, 1.0, 0.5])


def _observation_bounds() -> tuple[np.ndarray, np.ndarray]:
    frame_low = np.concatenate([_HAND_LOW, [-1.0], np.full(14, -np.inf)])
    frame_high = np.concatenate([_HAND_HIGH, [1.0], np.full(14, np.inf)])
    low = np.concatenate([frame_low, frame_low, GOAL_LOW]).astype(np.float32)
    high = np.concatenate([frame_high, frame_high, GOAL_HIGH]).astype(np.float32)
    return low, high


METAWORLD_OBSERVATION_SPACE = gym.spaces.Box(*_observation_bounds(), dtype=np.float32)
METAWORLD_ACTION_SPACE = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)

#: Cameras whose XML orientation rolls the image by 180 degrees; crlgym turns them upright.
ROLLED_CAMERAS = ("corner", "corner2", "corner3", "corner4")
CAMERAS = ("corner", "corner2", "corner3", "corner4", "topview", "behindGripper", "gripperPOV")
DEFAULT_CAMERA = "corner"

_ROLL_180 = np.array([0.0, 0.0, 0.0, 1.0])  # quaternion (w, x, y, z): 180 degrees about z

# Renderers hold EGL contexts that raise when freed after mujoco's own exit hook has
# terminated the EGL display; envs still open at exit are closed by a hook registered after
# mujoco's (exit hooks run last-registered first).
_RENDERING_ENVS: weakref.WeakSet[MetaWorldEnv] = weakref.WeakSet()
_exit_hook_registered = False


class MetaWorldEnv(gym.Wrapper):
    """A Meta-World v3 task with Continual World conventions (see module docstring).

    Args:
        task: canonical task name, e.g. ``"hammer-v3"``.
        episode_length: steps before truncation (Continual World: 200; Meta-World: 500).
        seed: seeds the first reset (later resets continue the same random stream).
        render_mode: ``None`` or ``"rgb_array"``.
        camera: one of `CAMERAS`; every one renders upright.
        width, height: frame size in pixels.
        fast_render: turn shadows and reflections off (about 3x cheaper frames).
    """

    def __init__(
        self,
        task: str,
        *,
        episode_length: int = CW_EPISODE_LENGTH,
        seed: int | None = None,
        render_mode: str | None = None,
        camera: str = DEFAULT_CAMERA,
        width: int = 256,
        height: int = 256,
        fast_render: bool = True,
    ) -> None:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        if episode_length <= 0:
            raise ConfigError(f"episode_length must be positive, got {episode_length}")
        if camera not in CAMERAS:
            raise ConfigError(f"unknown Meta-World camera '{camera}'; choose one of {CAMERAS}")
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        raw = ALL_V3_ENVIRONMENTS[task](
            render_mode="rgb_array" if render_mode else None,
            camera_name=camera,
            width=width,
            height=height,
        )
        raw._partially_observable = False
        del raw.sawyer_observation_space  # cached property: recompute with the goal shown
        raw._freeze_rand_vec = False
        raw.seeded_rand_vec = True
        raw._set_task_called = True
        raw.max_path_length = episode_length
        super().__init__(raw)
        self._raw = raw  # Meta-World's env: its own seeding and renderer
        self.task = task
        self.episode_length = episode_length
        self.observation_space = METAWORLD_OBSERVATION_SPACE
        self.action_space = METAWORLD_ACTION_SPACE
        self.metadata = {**raw.metadata, "render_modes": ["rgb_array"]}
        self._pending_seed = seed
        self._episode_success = False
        self._fast_render = fast_render
        self._render_configured = False
        if render_mode is not None and camera in ROLLED_CAMERAS:
            camera_id = raw.model.camera(camera).id
            raw.model.cam_quat[camera_id] = _quaternion_product(
                raw.model.cam_quat[camera_id], _ROLL_180
            )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None:
            seed, self._pending_seed = self._pending_seed, None
        if seed is not None:
            self._raw.seed(seed)  # Meta-World ignores reset(seed=...)
            self._pending_seed = None
        obs, info = self.env.reset(options=options)
        self._episode_success = False
        return obs.astype(np.float32), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(np.clip(action, -1.0, 1.0))
        if info["success"]:
            self._episode_success = True
        if terminated or truncated:
            info["is_success"] = self._episode_success
        return obs.astype(np.float32), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        if not self._render_configured:
            self._configure_renderer()
        frame = self.env.render()
        assert isinstance(frame, np.ndarray), "render_mode is rgb_array"
        return frame

    def _configure_renderer(self) -> None:
        import mujoco

        renderer = self._raw.mujoco_renderer
        viewer = renderer._get_viewer(render_mode="rgb_array")
        if self._fast_render:
            viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            viewer.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._render_configured = True
        _RENDERING_ENVS.add(self)
        global _exit_hook_registered
        if not _exit_hook_registered:
            atexit.register(close_rendering_envs)
            _exit_hook_registered = True

    def close(self) -> None:
        _RENDERING_ENVS.discard(self)
        super().close()


def close_rendering_envs() -> None:
    """Close every Meta-World env that still holds a renderer (called at exit)."""
    for env in list(_RENDERING_ENVS):
        env.close()


def metaworld_expert(task: str) -> Callable[[np.ndarray], np.ndarray]:
    """Meta-World's scripted policy for ``task``: observation (39,) -> action (4,) in [-1, 1].

    Meta-World's policies warn when their gains saturate; the action is clipped instead.
    """
    from metaworld.policies import ENV_POLICY_MAP

    policy_class: Callable[[], Any] = ENV_POLICY_MAP[task]  # a concrete policy per task
    policy = policy_class()

    def act(observation: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            action = policy.get_action(np.asarray(observation, dtype=np.float64))
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    return act


def _quaternion_product(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = q
    w2, x2, y2, z2 = r
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


def canonical_metaworld_name(name: str) -> str | None:
    """``hammer`` / ``hammer-v3`` (surrounding whitespace ignored) -> ``hammer-v3``; None
    for a name that is no Meta-World task."""
    cleaned = name.strip()
    if cleaned in _METAWORLD_TASK_SET:
        return cleaned
    if cleaned + METAWORLD_SUFFIX in _METAWORLD_TASK_SET:
        return cleaned + METAWORLD_SUFFIX
    return None


def make_metaworld_env(name: str, config: EnvConfig, seed: int | None) -> MetaWorldEnv:
    """`MetaWorldEnv` of canonical task ``name`` built as ``config`` says."""
    return MetaWorldEnv(
        name,
        episode_length=config.episode_length or CW_EPISODE_LENGTH,
        seed=seed,
        render_mode=config.render_mode,
        camera=config.camera or DEFAULT_CAMERA,
        width=config.width,
        height=config.height,
        fast_render=config.fast_render,
    )


class MetaWorldFamily(TaskFamily):
    """Meta-World v3's MT50 tasks (`METAWORLD_TASKS`); ``hammer`` means ``hammer-v3``."""

    domain = "metaworld"
    description = "Meta-World v3 MT50 manipulation tasks, Continual World conventions"

    def canonical(self, name: str) -> str | None:
        return canonical_metaworld_name(name)

    def names(self) -> tuple[str, ...]:
        return METAWORLD_TASKS

    def make(self, name: str, config: EnvConfig, seed: int | None) -> gym.Env:
        return make_metaworld_env(name, config, seed)

    def default_episode_length(self, name: str) -> int:
        return CW_EPISODE_LENGTH

    def expert(self, name: str) -> Expert:
        return metaworld_expert(name)

    def spaces(self, name: str) -> tuple[gym.spaces.Box, gym.spaces.Box]:
        return METAWORLD_OBSERVATION_SPACE, METAWORLD_ACTION_SPACE
