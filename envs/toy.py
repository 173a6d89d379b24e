"""Tiny, fast, pure-numpy continuous-control task family for continual-RL unit tests.

``PointReachEnv`` is a point mass in the 2-D arena ``[-1, 1]^2``.  Each step the action
``a in [-1, 1]^2`` (clipped) moves the point by ``max_speed * a`` (negated first for the
*mirror* tasks); the position is clipped to the arena.  Episodes start uniformly in the
box ``[-start_radius, start_radius]^2`` (default 0.1) and are truncated after
``max_episode_steps`` (default 50) steps.

Design choices (all deliberate, for use as a continual-learning benchmark):

* **The goal is hidden.**  The observation is the position only (optionally followed by
  the last clipped action, ``include_last_action=True``), float32, bounded by
  ``[-1, 1]``.  A single policy therefore cannot solve two tasks whose goals differ, so
  a task sequence *conflicts* and plain fine-tuning forgets earlier tasks.
* **Reward** is dense: ``-distance(position, goal)`` after the move, plus
  ``success_bonus`` (default 0) on success steps.  Success means
  ``distance < success_radius`` (default 0.1).  Per-step rewards lie in about
  ``[-2.0, 0]``; an optimal episode returns about -2, a motionless one about -35.
  With ``max_speed=0.1`` the goal (0.7 from the origin) is 7 steps away, so SAC learns a
  task within a few thousand environment steps on CPU.
* **Success info** follows the Meta-World envs of this project: ``info["success"]`` is
  a float 0/1 for the current step; on the final step (terminated or truncated)
  ``info["is_success"]`` is 1.0 if the episode succeeded at any step (what SB3 reads).
  ``info["distance"]`` is the current distance to the goal.
  ``terminate_on_success`` (default False) ends the episode at the first success.
* **Task family** (``TOY_TASK_NAMES``): ``toy-reach-<k>``, k in 0..7, has its goal on the
  circle of radius 0.7 at angle ``2*pi*k/8``.  ``toy-mirror-<k>`` has the same goal but
  negates the action, so a ``toy-reach-k`` policy moves exactly away from the goal
  (action-mapping conflict with an identical observation distribution).
* **Seeding** follows gymnasium: ``reset(seed=s)`` seeds ``self.np_random``; the same
  seed gives identical trajectories.  ``make_toy_env(seed=s)`` makes the first
  ``reset()`` use ``s`` (and seeds the action/observation spaces) so a fresh env is
  reproducible without passing a seed to ``reset``.  ``reset(options={"start": (x, y)})``
  places the point explicitly.
* **Speed**: state is kept as Python floats; ``step`` allocates only the observation and
  the info dict (about 2 microseconds per step on a modern CPU).
* **Rendering**: ``render_mode="rgb_array"`` returns a 64x64x3 uint8 frame drawn with
  numpy (dark background, arena centre cross, green goal disc of radius
  ``success_radius``, orange agent disc).  No other rendering dependencies.
* ``expert_action(obs)`` is a scripted expert (direction-preserving proportional
  controller towards the hidden goal, accounting for the mirror).  It also accepts a
  batch of observations ``(..., obs_dim)``.

Only numpy and gymnasium are imported (plus the standard library and the light
`crlgym.envs.families`); `ToyFamily` registers the task names (envs/tasks.py).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec

from crlgym.envs.families import Expert, TaskFamily

if TYPE_CHECKING:
    from crlgym.envs.make import EnvConfig

__all__ = [
    "TOY_EPISODE_LENGTH",
    "TOY_GOAL_RADIUS",
    "TOY_NUM_GOALS",
    "TOY_TASK_NAMES",
    "PointReachEnv",
    "ToyFamily",
    "make_toy_env",
    "toy_task_goal",
]

TOY_NUM_GOALS = 8
TOY_GOAL_RADIUS = 0.7
#: Default steps per episode of the toy tasks.
TOY_EPISODE_LENGTH = 50
TOY_TASK_NAMES: tuple[str, ...] = tuple(f"toy-reach-{k}" for k in range(TOY_NUM_GOALS)) + tuple(
    f"toy-mirror-{k}" for k in range(TOY_NUM_GOALS)
)

_RENDER_SIZE = 64
_AGENT_DRAW_RADIUS = 0.06
_BG_COLOR = np.array([30, 30, 40], dtype=np.uint8)
_AXIS_COLOR = np.array([70, 70, 85], dtype=np.uint8)
_GOAL_COLOR = np.array([40, 200, 80], dtype=np.uint8)
_AGENT_COLOR = np.array([255, 140, 20], dtype=np.uint8)


def _parse_task_name(name: str) -> tuple[int, bool]:
    """Return ``(goal_index, mirror)`` for a toy task name, or raise ValueError."""
    if name not in TOY_TASK_NAMES:
        raise ValueError(f"Unknown toy task {name!r}; valid names: {', '.join(TOY_TASK_NAMES)}")
    kind, k = name.rsplit("-", 1)
    return int(k), kind == "toy-mirror"


def toy_task_goal(name: str) -> tuple[float, float]:
    """The (hidden) goal position of a toy task."""
    k, _ = _parse_task_name(name)
    angle = 2.0 * math.pi * k / TOY_NUM_GOALS
    return (TOY_GOAL_RADIUS * math.cos(angle), TOY_GOAL_RADIUS * math.sin(angle))


class PointReachEnv(gym.Env):
    """2-D point reaching a hidden goal; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # noqa: RUF012 - gymnasium declares it an instance attribute

    def __init__(
        self,
        goal: tuple[float, float] = (TOY_GOAL_RADIUS, 0.0),
        *,
        mirror: bool = False,
        max_episode_steps: int = 50,
        max_speed: float = 0.1,
        success_radius: float = 0.1,
        start_radius: float = 0.1,
        success_bonus: float = 0.0,
        terminate_on_success: bool = False,
        include_last_action: bool = False,
        render_mode: str | None = None,
        task_name: str | None = None,
    ) -> None:
        super().__init__()
        gx, gy = float(goal[0]), float(goal[1])
        if not (-1.0 <= gx <= 1.0 and -1.0 <= gy <= 1.0):
            raise ValueError(f"goal {goal} must lie in the arena [-1, 1]^2")
        if max_episode_steps < 1:
            raise ValueError("max_episode_steps must be >= 1")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode {render_mode!r} not supported; use one of "
                f"{self.metadata['render_modes']} or None"
            )
        self._gx, self._gy = gx, gy
        self.mirror = bool(mirror)
        self._sign = -1.0 if self.mirror else 1.0
        self.max_episode_steps = int(max_episode_steps)
        self.max_speed = float(max_speed)
        self.success_radius = float(success_radius)
        self.start_radius = float(start_radius)
        self.success_bonus = float(success_bonus)
        self.terminate_on_success = bool(terminate_on_success)
        self.include_last_action = bool(include_last_action)
        self.render_mode = render_mode
        self.task_name = task_name

        obs_dim = 4 if self.include_last_action else 2
        self.observation_space: spaces.Box = spaces.Box(
            -1.0, 1.0, shape=(obs_dim,), dtype=np.float32
        )
        self.action_space: spaces.Box = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

        # Episode state (Python floats for speed); None until the first reset.
        self._x: float | None = None
        self._y = 0.0
        self._ax = 0.0
        self._ay = 0.0
        self._t = 0
        self._ever_success = False
        self._first_reset_seed: int | None = None
        self._bg: np.ndarray | None = None

    # ------------------------------------------------------------------ properties
    @property
    def goal(self) -> np.ndarray:
        """The hidden goal (a copy; not part of the observation)."""
        return np.array([self._gx, self._gy], dtype=np.float64)

    @property
    def position(self) -> np.ndarray:
        """Current position (float64 copy)."""
        if self._x is None:
            raise RuntimeError("call reset() first")
        return np.array([self._x, self._y], dtype=np.float64)

    # ------------------------------------------------------------------ gym API
    def _obs(self) -> np.ndarray:
        if self.include_last_action:
            return np.array((self._x, self._y, self._ax, self._ay), dtype=np.float32)
        return np.array((self._x, self._y), dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None and self._first_reset_seed is not None:
            seed = self._first_reset_seed
        self._first_reset_seed = None
        super().reset(seed=seed)
        start = None if options is None else options.get("start")
        if start is not None:
            x, y = float(start[0]), float(start[1])
            x = min(max(x, -1.0), 1.0)
            y = min(max(y, -1.0), 1.0)
        else:
            r = self.start_radius
            x, y = (float(v) for v in self.np_random.uniform(-r, r, size=2))
        self._x, self._y = x, y
        self._ax = self._ay = 0.0
        self._t = 0
        dist = math.hypot(x - self._gx, y - self._gy)
        self._ever_success = False
        return self._obs(), {"distance": dist}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._x is None:
            raise RuntimeError("call reset() before step()")
        a0 = float(action[0])
        a1 = float(action[1])
        if math.isnan(a0) or math.isnan(a1):
            raise ValueError(f"action contains NaN: {action}")
        a0 = min(max(a0, -1.0), 1.0)
        a1 = min(max(a1, -1.0), 1.0)
        self._ax, self._ay = a0, a1
        scale = self._sign * self.max_speed
        x = self._x + scale * a0
        y = self._y + scale * a1
        x = min(max(x, -1.0), 1.0)
        y = min(max(y, -1.0), 1.0)
        self._x, self._y = x, y
        self._t += 1

        dist = math.hypot(x - self._gx, y - self._gy)
        success = dist < self.success_radius
        reward = -dist
        if success:
            self._ever_success = True
            reward += self.success_bonus
        terminated = success and self.terminate_on_success
        truncated = self._t >= self.max_episode_steps
        info: dict[str, Any] = {"success": 1.0 if success else 0.0, "distance": dist}
        if terminated or truncated:
            info["is_success"] = 1.0 if self._ever_success else 0.0
        return self._obs(), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        n = _RENDER_SIZE
        # Pixel-centre world coordinates; row 0 is the top of the arena (y = +1).
        coords = (np.arange(n, dtype=np.float64) + 0.5) * (2.0 / n) - 1.0
        px = coords[None, :]
        py = coords[::-1, None]
        if self._bg is None:
            bg = np.empty((n, n, 3), dtype=np.uint8)
            bg[:] = _BG_COLOR
            bg[n // 2, :] = _AXIS_COLOR
            bg[:, n // 2] = _AXIS_COLOR
            goal_mask = (px - self._gx) ** 2 + (py - self._gy) ** 2 <= self.success_radius**2
            bg[goal_mask] = _GOAL_COLOR
            self._bg = bg
        frame = self._bg.copy()
        if self._x is not None:
            agent_mask = (px - self._x) ** 2 + (py - self._y) ** 2 <= _AGENT_DRAW_RADIUS**2
            frame[agent_mask] = _AGENT_COLOR
        return frame

    def close(self) -> None:
        self._bg = None

    # ------------------------------------------------------------------ expert
    def expert_action(self, obs: Any) -> np.ndarray:
        """Scripted expert for this env's hidden goal.

        Proportional controller ``(goal - pos) / max_speed`` scaled down (direction kept)
        so that its largest component is at most 1, negated on mirror tasks.  Lands on
        the goal and then stays there.  ``obs`` may be one observation or a batch
        ``(..., obs_dim)``; returns float32 actions of shape ``(..., 2)``.
        """
        pos = np.asarray(obs, dtype=np.float64)[..., :2]
        delta = (np.array([self._gx, self._gy]) - pos) / self.max_speed
        m = np.maximum(np.abs(delta).max(axis=-1, keepdims=True), 1.0)
        return (self._sign * delta / m).astype(np.float32)


def make_toy_env(
    name: str,
    *,
    max_episode_steps: int = 50,
    render_mode: str | None = None,
    seed: int | None = None,
    **kwargs: Any,
) -> PointReachEnv:
    """Create toy task ``name`` (one of ``TOY_TASK_NAMES``).

    ``seed`` seeds the first ``reset()`` (and the action/observation spaces).  Extra
    keyword arguments go to ``PointReachEnv`` (e.g. ``terminate_on_success``).  The env
    gets an ``EnvSpec`` so that ``gymnasium.make(env.spec)`` recreates it.
    """
    _, mirror = _parse_task_name(name)
    env = PointReachEnv(
        toy_task_goal(name),
        mirror=mirror,
        max_episode_steps=max_episode_steps,
        render_mode=render_mode,
        task_name=name,
        **kwargs,
    )
    env.spec = EnvSpec(
        id=name,
        entry_point="crlgym.envs.toy:make_toy_env",
        max_episode_steps=max_episode_steps,
        kwargs={"name": name, "max_episode_steps": max_episode_steps, **kwargs},
    )
    if seed is not None:
        env._first_reset_seed = int(seed)
        env.action_space.seed(int(seed))
        env.observation_space.seed(int(seed))
    return env


class ToyFamily(TaskFamily):
    """``toy-reach-<k>`` / ``toy-mirror-<k>``: the pure-numpy test tasks (`TOY_TASK_NAMES`)."""

    domain = "toy"
    description = "pure-numpy 2-D point reaching a hidden goal (unit tests, quick checks)"

    def canonical(self, name: str) -> str | None:
        cleaned = name.strip()
        return cleaned if cleaned in TOY_TASK_NAMES else None

    def names(self) -> tuple[str, ...]:
        return TOY_TASK_NAMES

    def make(self, name: str, config: EnvConfig, seed: int | None) -> gym.Env:
        length = config.episode_length or TOY_EPISODE_LENGTH
        return make_toy_env(
            name, max_episode_steps=length, render_mode=config.render_mode, seed=seed
        )

    def default_episode_length(self, name: str) -> int:
        return TOY_EPISODE_LENGTH

    def expert(self, name: str) -> Expert:
        return make_toy_env(name).expert_action

    def spaces(self, name: str) -> tuple[spaces.Box, spaces.Box]:
        env = make_toy_env(name)
        return env.observation_space, env.action_space
