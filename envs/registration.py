"""Gymnasium registration: ``gymnasium.make("crlgym/<task>")`` for every task.

Ids are ``crlgym/hammer-v3`` (``crlgym/hammer`` resolves to it with gymnasium's
latest-version notice), ``crlgym/cheetah-run``, ``crlgym/toy-reach-0``. Registration runs
on ``import crlgym`` (string entry points: nothing heavy is imported until an env is made),
so ``gymnasium.make("crlgym:crlgym/hammer-v3")`` works in a fresh interpreter.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from crlgym.envs.make import EnvConfig, make_env
from crlgym.envs.tasks import all_tasks

NAMESPACE = "crlgym"


def make_registered(task: str, seed: int | None = None, **config: Any) -> gym.Env:
    """Entry point behind the registered ids; keyword arguments are `EnvConfig` fields."""
    return make_env(task, EnvConfig(**config), seed=seed)


def register_envs() -> None:
    """Register every task under the ``crlgym`` namespace (idempotent)."""
    for task in all_tasks():
        env_id = f"{NAMESPACE}/{task}"
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="crlgym.envs.registration:make_registered",
                kwargs={"task": task},
                disable_env_checker=False,
            )
