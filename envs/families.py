"""Task families: the plug-in interface behind task names, `make_env` and `expert_policy`.

A family owns a set of task names (listed, or parsed by pattern) and knows how to spell
them canonically, build their envs, their episode length, their native spaces and their
scripted expert.  Every family is one `TaskFamily` subclass living next to its env code
(``envs/toy.py``: `ToyFamily`, ``envs/recall.py``: `RecallFamily`, ...) and one entry of
the ordered registry `crlgym.envs.tasks.FAMILIES`, which `canonical_task_name`,
`task_domain`, `all_tasks`, `make_env`, `default_episode_length`, `expert_policy` and
`native_spaces` consult.  Families must claim disjoint names.

This module imports nothing of crlgym's envs at import time (every family module imports
it), and a family module must keep heavy simulators (mujoco, metaworld, dm_control) inside
its methods: ``import crlgym`` instantiates every family and registers `TaskFamily.names`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

from crlgym.errors import UnknownTaskError

if TYPE_CHECKING:
    from crlgym.envs.make import EnvConfig

__all__ = ["Expert", "TaskFamily"]

#: A scripted expert: native observation -> action in [-1, 1] (may be a stateful callable).
Expert = Callable[[np.ndarray], np.ndarray]


class TaskFamily(ABC):
    """One family of tasks; subclass it and add an instance to ``FAMILIES`` (envs/tasks.py).

    Class attributes:
        domain: what `crlgym.envs.task_domain` returns for the family's tasks (several
            families may share one, as goal-masked Meta-World shares ``metaworld``).
        description: one line for documentation and listings.
    """

    domain: str
    description: str

    @abstractmethod
    def canonical(self, name: str) -> str | None:
        """The canonical spelling of ``name`` if it is one of this family's tasks, else None.

        ``name`` is as the user wrote it (ignore surrounding whitespace, but quote it
        unchanged in errors).  A name in the family's pattern that is invalid raises
        `UnknownTaskError` (`unknown_task` builds the one-line message) instead of None.
        """

    @abstractmethod
    def names(self) -> tuple[str, ...]:
        """Representative canonical names: registered as ``crlgym/<name>`` gymnasium ids
        and listed by ``crl list tasks``.  Called on ``import crlgym``: keep it cheap."""

    @abstractmethod
    def make(self, name: str, config: EnvConfig, seed: int | None) -> gym.Env:
        """The env of canonical task ``name`` (native spaces; ``seed`` seeds its first reset).

        ``config.episode_length`` None means `default_episode_length`.
        """

    @abstractmethod
    def default_episode_length(self, name: str) -> int:
        """Steps per episode of canonical task ``name`` when the config sets none."""

    def expert(self, name: str) -> Expert | None:
        """A scripted expert for canonical task ``name``, or None when the family has none."""
        return None

    def spaces(self, name: str) -> tuple[gym.spaces.Box, gym.spaces.Box]:
        """Native observation and action spaces of canonical task ``name``.

        The default builds the env once; override it when the spaces are known statically
        (sequences ask for them before building any env).
        """
        from crlgym.envs.make import EnvConfig

        env = self.make(name, EnvConfig(), None)
        try:
            observation_space, action_space = env.observation_space, env.action_space
        finally:
            env.close()
        if not isinstance(observation_space, gym.spaces.Box) or not isinstance(
            action_space, gym.spaces.Box
        ):
            raise TypeError(f"{name}: crlgym tasks need Box observation and action spaces")
        return observation_space, action_space

    def unknown_task(
        self, name: str, *, detail: str = "", valid: tuple[str, ...] | None = None
    ) -> UnknownTaskError:
        """The one-line error for an invalid ``name`` of this family (raise it).

        ``valid``: the names to suggest from (default: every task, `all_tasks`).
        """
        from crlgym.envs.tasks import all_tasks, unknown_name_message

        choices = all_tasks() if valid is None else valid
        return UnknownTaskError(
            unknown_name_message("task", name, choices, "crl list tasks", detail=detail)
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(domain={self.domain!r})"
