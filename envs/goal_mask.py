"""Goal-masked Meta-World: the goal is shown for the first K steps only, so acting needs memory.

``masked<K>-<Meta-World task>`` (``masked10-reach``, canonical ``masked10-reach-v3``) is the
Meta-World task under Continual World conventions (`crlgym.envs.metaworld_env.MetaWorldEnv`) whose
observations ``obs_0 .. obs_{K-1}`` (the reset observation and the next ``K - 1``) show the
goal, ``obs[36:39]``, and whose later observations carry zeros there.  Every other
dimension is untouched: same seed and actions, same hand/object observations as the plain
task.  ``K = 0`` never shows the goal; ``K >= episode length`` never hides it.

No "goal visible" flag is appended: the observation stays 39-d, so masked and plain tasks
share network input sizes and the padded layout's Meta-World slot.  Zeros are unambiguous,
because every Meta-World goal has ``y >= 0.4`` (`crlgym.envs.metaworld_env.GOAL_LOW`), so
``obs[37] == 0`` means "goal hidden".  The observation space is Meta-World's 39-d box with
the goal bounds kept but widened to include 0 (its ``y`` low becomes 0).  That single
difference makes a sequence that mixes masked and plain tasks pad (``padding="auto"``).

Expert: Meta-World's scripted policies read the goal from the observation, so
`MaskedGoalExpert` remembers the last goal it saw and writes it back into masked
observations; each new episode shows its goal on the reset observation (``K >= 1``), which
overwrites the memory.  The scripted policy on masked observations, without that memory,
steers to the zero vector instead of the goal.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from crlgym.envs.families import Expert, TaskFamily
from crlgym.envs.metaworld_env import (
    CW10,
    CW_EPISODE_LENGTH,
    METAWORLD_ACTION_SPACE,
    METAWORLD_OBSERVATION_SPACE,
    METAWORLD_TASKS,
    canonical_metaworld_name,
    make_metaworld_env,
    metaworld_expert,
)
from crlgym.errors import ConfigError

if TYPE_CHECKING:
    from crlgym.envs.make import EnvConfig

__all__ = [
    "GOAL_SLICE",
    "MASKED_NAME_FORMAT",
    "MASKED_OBSERVATION_SPACE",
    "MASKED_TASK_NAMES",
    "GoalMaskedEnv",
    "GoalMaskedFamily",
    "MaskedGoalExpert",
    "masked_name",
    "split_masked_name",
]

#: Where Meta-World's 39-d observation holds the goal.
GOAL_SLICE = slice(36, 39)

_MASKED_NAME = re.compile(r"masked(\d+)-(.+)")


def _masked_bounds() -> tuple[np.ndarray, np.ndarray]:
    low = METAWORLD_OBSERVATION_SPACE.low.copy()
    high = METAWORLD_OBSERVATION_SPACE.high.copy()
    low[GOAL_SLICE] = np.minimum(low[GOAL_SLICE], 0.0)
    high[GOAL_SLICE] = np.maximum(high[GOAL_SLICE], 0.0)
    return low, high


MASKED_OBSERVATION_SPACE = gym.spaces.Box(*_masked_bounds(), dtype=np.float32)


def split_masked_name(name: str) -> tuple[int, str] | None:
    """``(K, inner name)`` of ``masked<K>-<inner>``, or None when ``name`` has no such form.

    The inner name is returned as written; the caller canonicalizes and validates it.
    """
    match = _MASKED_NAME.fullmatch(name.strip())
    if match is None:
        return None
    return int(match.group(1)), match.group(2)


def masked_name(visible_steps: int, metaworld_task: str) -> str:
    """Canonical masked name from K and a canonical Meta-World name (``masked10-reach-v3``)."""
    return f"masked{visible_steps}-{metaworld_task}"


#: Representative goal-masked tasks (registered with gymnasium): CW10 and reach, K = 10.
MASKED_TASK_NAMES: tuple[str, ...] = tuple(masked_name(10, t) for t in (*CW10, "reach-v3"))
MASKED_NAME_FORMAT = "masked<K>-<Meta-World task>"


class GoalMaskedEnv(gym.Wrapper):
    """Shows a Meta-World task's goal for the first ``visible_steps`` observations only.

    Args:
        env: the plain task (`MetaWorldEnv`, or anything with Meta-World's 39-d layout).
        visible_steps: K, how many observations of an episode show the goal (>= 0).
        task: the masked task's name, for display.
    """

    def __init__(self, env: gym.Env, visible_steps: int, task: str | None = None) -> None:
        if visible_steps < 0:
            raise ConfigError(f"visible_steps must be >= 0, got {visible_steps}")
        super().__init__(env)
        self.visible_steps = int(visible_steps)
        self.task = task
        self.observation_space = MASKED_OBSERVATION_SPACE
        self._t = 0

    @property
    def episode_length(self) -> int:
        return self.env.episode_length  # type: ignore[attr-defined]  # a MetaWorldEnv's

    def _mask(self, observation: np.ndarray) -> np.ndarray:
        if self._t >= self.visible_steps:
            # The wrapped env returns a fresh array every call, so masking in place is safe.
            observation[GOAL_SLICE] = 0.0
        return observation

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        observation, info = self.env.reset(seed=seed, options=options)
        self._t = 0
        return self._mask(observation), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._t += 1
        return self._mask(observation), float(reward), terminated, truncated, info


class MaskedGoalExpert:
    """Meta-World's scripted policy with a memory for the goal of the running episode.

    Call it on each native (39-d) observation of an episode, in order, from the reset
    observation on.  A visible goal is remembered (a new episode's first observation
    overwrites the old one); a masked goal is replaced by the remembered one before the
    scripted policy sees the observation.  Raises RuntimeError if no goal was seen yet.
    """

    def __init__(self, metaworld_task: str) -> None:
        self.metaworld_task = metaworld_task
        self._policy = metaworld_expert(metaworld_task)
        self._goal: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the remembered goal."""
        self._goal = None

    @property
    def remembered_goal(self) -> np.ndarray | None:
        return None if self._goal is None else self._goal.copy()

    def __call__(self, observation: Any) -> np.ndarray:
        obs = np.array(observation, dtype=np.float64)
        if obs.shape != (39,):
            raise ValueError(
                f"MaskedGoalExpert takes one native observation of shape (39,), got {obs.shape}"
            )
        goal = obs[GOAL_SLICE]
        if np.any(goal != 0.0):
            self._goal = goal.copy()
        elif self._goal is None:
            raise RuntimeError("no goal seen yet: feed the expert every observation from reset")
        else:
            obs[GOAL_SLICE] = self._goal
        return self._policy(obs)


class GoalMaskedFamily(TaskFamily):
    """``masked<K>-<Meta-World task>``, parsed by pattern; Meta-World's domain, episode
    length and (memory-equipped) expert."""

    domain = "metaworld"
    description = "Meta-World tasks whose goal shows for the first K steps only (memory)"

    def canonical(self, name: str) -> str | None:
        masked = split_masked_name(name)
        if masked is None:
            return None
        visible_steps, inner = masked
        metaworld_task = canonical_metaworld_name(inner)
        if metaworld_task is not None and inner == inner.strip():
            return masked_name(visible_steps, metaworld_task)
        # Suggest masked names with the K the user asked for.
        valid = tuple(masked_name(visible_steps, t) for t in METAWORLD_TASKS)
        detail = f"goal-masked tasks are named {MASKED_NAME_FORMAT}"
        raise self.unknown_task(name, detail=detail, valid=valid)

    def names(self) -> tuple[str, ...]:
        return MASKED_TASK_NAMES

    def make(self, name: str, config: EnvConfig, seed: int | None) -> gym.Env:
        visible_steps, metaworld_task = self._split(name)
        return GoalMaskedEnv(make_metaworld_env(metaworld_task, config, seed), visible_steps, name)

    def default_episode_length(self, name: str) -> int:
        return CW_EPISODE_LENGTH

    def expert(self, name: str) -> Expert:
        visible_steps, metaworld_task = self._split(name)
        if visible_steps == 0:
            raise ConfigError(f"{name} never shows its goal, so no scripted expert can act on it.")
        return MaskedGoalExpert(metaworld_task)

    def spaces(self, name: str) -> tuple[gym.spaces.Box, gym.spaces.Box]:
        return MASKED_OBSERVATION_SPACE, METAWORLD_ACTION_SPACE

    @staticmethod
    def _split(name: str) -> tuple[int, str]:
        masked = split_masked_name(name)
        assert masked is not None, f"{name} is no canonical goal-masked task name"
        return masked
