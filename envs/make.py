"""Build one task's environment from its name: `make_env` and its options `EnvConfig`.

Each task's family (`crlgym.envs.tasks.FAMILIES`) builds it, knows its episode length and
its scripted expert.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from crlgym.envs.tasks import resolve_task
from crlgym.errors import ConfigError


@dataclass(frozen=True)
class EnvConfig:
    """How every task environment of a run is built."""

    episode_length: int | None = None
    """Steps per episode; None = the domain's default (Meta-World 200, DMControl 1000, toy 50;
    a recall task's own cue + delay + choice length). A recall task ends at its choice step
    whatever this is, and refuses a value shorter than that length."""
    render_mode: str | None = None
    """None, or "rgb_array" for frames from `env.render()` (videos)."""
    camera: str | None = None
    """Camera name (Meta-World: corner, corner2, corner3, corner4, topview, behindGripper,
    gripperPOV; DMControl: name or id); None = the domain's default."""
    width: int = 256
    """Frame width in pixels."""
    height: int = 256
    """Frame height in pixels."""
    fast_render: bool = True
    """Render without shadows and reflections (about 3x cheaper Meta-World frames)."""
    one_hot_task_id: bool = False
    """Append a one-hot task id to observations (off, as in Continual World)."""
    padding: str = "auto"
    """Shared padded spaces for sequences: "auto" (only when tasks' spaces differ),
    "always", or "never" (a sequence whose tasks differ then refuses to build)."""

    def __post_init__(self) -> None:
        if self.episode_length is not None and self.episode_length <= 0:
            raise ConfigError(f"episode_length must be positive, got {self.episode_length}")
        if self.render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode must be None or 'rgb_array', got {self.render_mode}")
        if self.width <= 0 or self.height <= 0:
            raise ConfigError(f"frame size must be positive, got {self.width}x{self.height}")
        if self.padding not in ("auto", "always", "never"):
            raise ConfigError(f"padding must be auto, always or never, got '{self.padding}'")


def default_episode_length(task: str) -> int:
    """Steps per episode of ``task`` when `EnvConfig.episode_length` is None (Meta-World 200,
    DMControl 1000, toy 50, a recall task its own)."""
    name, family = resolve_task(task)
    return family.default_episode_length(name)


def make_env(task: str, config: EnvConfig | None = None, *, seed: int | None = None) -> gym.Env:
    """Build the environment of one task (native spaces, no padding or task id).

    Args:
        task: any task name (``hammer``, ``hammer-v3``, ``cheetah-run``, ``toy-reach-0``,
            ``recall-d200``, ``masked10-reach``).
        config: how to build it; defaults to `EnvConfig()`.
        seed: seeds the first reset; ``reset(seed=...)`` works too.

    Raises:
        UnknownTaskError: no task family knows ``task``.
        ConfigError: ``config.episode_length`` is shorter than a recall task's episode.
    """
    name, family = resolve_task(task)
    return family.make(name, config or EnvConfig(), seed)


def expert_policy(task: str) -> Callable[[np.ndarray], np.ndarray]:
    """Scripted expert for a task: Meta-World's ``metaworld.policies`` or the toy expert.

    Returns a function from the task's native observation to an action in [-1, 1].  For the
    memory tasks (recall, goal-masked Meta-World) it is a stateful callable
    (`crlgym.envs.recall.RecallExpert`, `crlgym.envs.goal_mask.MaskedGoalExpert`): feed it every
    observation of an episode in order, from the reset observation on; it remembers the
    cue / goal it saw and forgets it by itself when the next episode shows a new one.  Use
    one expert per env when several envs run side by side.
    DMControl has no scripted experts (L2M's datasets train SAC experts instead).
    """
    name, family = resolve_task(task)
    expert = family.expert(name)
    if expert is None:
        raise ConfigError(
            f"{name} has no scripted expert; only Meta-World, toy and recall tasks do."
        )
    return expert
