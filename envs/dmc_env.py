"""DeepMind Control Suite tasks behind the gymnasium API.

Shimmy converts dm_env to gymnasium (spaces, step types); one wrapper on top flattens the
observation dict in dm_control's key order to float32, maps actions from [-1, 1] to the
actuator range, seeds the task's own random state (shimmy's ``reset(seed=)`` does not),
truncates at ``episode_length``, renders with the correct frame rate (shimmy reports it
x1000), and reports a normalized score at the end of each episode, since DMControl has no
success flag.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, TypedDict

import gymnasium as gym
import numpy as np

from crlgym.envs.dmc_specs import load_dmc_specs
from crlgym.envs.families import TaskFamily
from crlgym.errors import ConfigError

if TYPE_CHECKING:
    from crlgym.envs.make import EnvConfig

DMC_EPISODE_LENGTH = 1000
#: Cameras that frame the agent well; dm_control's examples use 2 for quadruped.
_DEFAULT_CAMERA = {"quadruped": 2}


class ReferenceReturns(TypedDict):
    """Returns that map to normalized scores 0 (``random``) and 1 (``expert``)."""

    random: float
    expert: float
    source: str


@lru_cache(maxsize=1)
def load_reference_returns() -> dict[str, ReferenceReturns]:
    """Per-task reference returns shipped in ``data/dmc_reference_returns.json``."""
    text = resources.files("crlgym.envs").joinpath("data/dmc_reference_returns.json").read_text()
    return json.loads(text)["tasks"]


def normalized_score(task: str, episode_return: float) -> float:
    """(return - random) / (expert - random), the normalization L2M uses for DMControl."""
    reference = load_reference_returns()[task]
    return (episode_return - reference["random"]) / (reference["expert"] - reference["random"])


class DMControlEnv(gym.Wrapper):
    """A DMControl suite task with a flat float32 observation and actions in [-1, 1].

    Args:
        task: ``domain-task``, e.g. ``"cheetah-run"``.
        episode_length: steps before truncation; at most the suite's own limit (1000).
        seed: seeds the first reset (later resets continue the same random stream).
        render_mode: ``None`` or ``"rgb_array"``.
        camera: camera id or name; default 0 (2 for quadruped).
        width, height: frame size in pixels.
        fast_render: turn shadows and reflections off.

    ``info`` on the final step holds ``episode_return`` and ``normalized_score``.
    """

    def __init__(
        self,
        task: str,
        *,
        episode_length: int = DMC_EPISODE_LENGTH,
        seed: int | None = None,
        render_mode: str | None = None,
        camera: int | str | None = None,
        width: int = 256,
        height: int = 256,
        fast_render: bool = True,
    ) -> None:
        from dm_control import suite
        from shimmy.dm_control_compatibility import DmControlCompatibilityV0

        spec = load_dmc_specs()[task]
        native_length = spec["episode_steps"] or None
        if episode_length <= 0 or (native_length and episode_length > native_length):
            raise ConfigError(
                f"episode_length for {task} must be in 1..{native_length or 'inf'}, "
                f"got {episode_length}"
            )
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        domain, task_name = task.split("-", 1)
        dm_env = suite.load(domain, task_name, task_kwargs={"random": seed})
        super().__init__(DmControlCompatibilityV0(dm_env))
        self._dm_env = dm_env  # dm_control's own env: its task's random state and physics
        self.task = task
        self.episode_length = episode_length
        self._keys = [key for key, _ in spec["observation"]]
        size = sum(n for _, n in spec["observation"])
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(spec["action_dim"],), dtype=np.float32)
        # lqr's actuators are unbounded (+-1e10): crlgym bounds them to unit control.
        low = np.clip(np.asarray(spec["action_low"]), -1.0, None)
        high = np.asarray(spec["action_high"])
        high = np.where(high > 1e6, 1.0, high)
        self._action_centre = (high + low) / 2.0
        self._action_half_range = (high - low) / 2.0
        self._render_mode = render_mode
        self.metadata = {
            "render_modes": ["rgb_array"],
            "render_fps": round(1.0 / spec["control_timestep"]),
        }
        self._camera = _DEFAULT_CAMERA.get(domain, 0) if camera is None else camera
        self._width, self._height = width, height
        self._render_overrides = {"shadow": False, "reflection": False} if fast_render else None
        self._steps = 0
        self._return = 0.0

    @property
    def render_mode(self) -> str | None:  # type: ignore[override]  # read-only: fixed at build
        return self._render_mode

    def _flatten(self, observation: dict[str, Any]) -> np.ndarray:
        return np.concatenate(
            [np.asarray(observation[key], dtype=np.float32).ravel() for key in self._keys]
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self._dm_env.task.random.seed(seed)
        observation, info = self.env.reset(seed=seed, options=options)
        self._steps = 0
        self._return = 0.0
        return self._flatten(observation), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        scaled = self._action_centre + self._action_half_range * np.clip(action, -1.0, 1.0)
        observation, reward, terminated, truncated, info = self.env.step(scaled)
        self._steps += 1
        self._return += float(reward)
        if self._steps >= self.episode_length:
            truncated = not terminated
        if terminated or truncated:
            info["episode_return"] = self._return
            if self.task in load_reference_returns():
                info["normalized_score"] = normalized_score(self.task, self._return)
        return self._flatten(observation), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self._render_mode is None:
            return None
        physics = self._dm_env.physics
        return physics.render(
            height=self._height,
            width=self._width,
            camera_id=self._camera,
            render_flag_overrides=self._render_overrides,
        )


class DMControlFamily(TaskFamily):
    """Every DeepMind Control Suite task as ``domain-task`` (``data/dmc_specs.json``); no
    scripted experts (L2M's datasets train SAC experts instead)."""

    domain = "dmc"
    description = "DeepMind Control Suite tasks, flat observations, actions in [-1, 1]"

    def canonical(self, name: str) -> str | None:
        cleaned = name.strip()
        return cleaned if cleaned in load_dmc_specs() else None

    def names(self) -> tuple[str, ...]:
        return tuple(load_dmc_specs())

    def make(self, name: str, config: EnvConfig, seed: int | None) -> gym.Env:
        return DMControlEnv(
            name,
            episode_length=config.episode_length or DMC_EPISODE_LENGTH,
            seed=seed,
            render_mode=config.render_mode,
            camera=config.camera,
            width=config.width,
            height=config.height,
            fast_render=config.fast_render,
        )

    def default_episode_length(self, name: str) -> int:
        return DMC_EPISODE_LENGTH

    def spaces(self, name: str) -> tuple[gym.spaces.Box, gym.spaces.Box]:
        spec = load_dmc_specs()[name]
        size = sum(n for _, n in spec["observation"])
        return (
            gym.spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32),
            gym.spaces.Box(-1.0, 1.0, shape=(spec["action_dim"],), dtype=np.float32),
        )
