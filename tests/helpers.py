"""Helpers shared by the test modules: ``from tests.helpers import ...``.

Pytest fixtures and session setup live in ``tests/conftest.py``; plain functions live here
so that test modules import them by name (a conftest is not meant to be imported).
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils.env_checker import check_env

if TYPE_CHECKING:
    from crlgym.agents.methods import ContinualMethod
    from crlgym.agents.plasticity import PlasticityConfig
    from crlgym.agents.sac import ContinualSAC, SACConfig
    from crlgym.envs import TaskSequence

TOY_PAIR = "toy-reach-0,toy-reach-4"
"""Two toy tasks with conflicting goals (0 and 180 degrees): the default agent sequence."""

# Notices of gymnasium's checker that describe our design, not a defect:
# - we check the env as users get it (wrapped), which the checker always remarks on;
# - Meta-World object coordinates and DMControl observations are unbounded, so an infinite
#   bound is the true bound (tests assert exactly which dimensions are infinite).
ACCEPTED_CHECKER_NOTICES = (
    "is different from the unwrapped version",
    "observation space minimum value is -infinity",
    "observation space maximum value is infinity",
)


# --- environments ----------------------------------------------------------------------------


@contextmanager
def only_accepted_warnings() -> Iterator[None]:
    """Fail on any warning other than `ACCEPTED_CHECKER_NOTICES`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    unexpected = [
        str(w.message)
        for w in caught
        if not any(notice in str(w.message) for notice in ACCEPTED_CHECKER_NOTICES)
        and not (issubclass(w.category, DeprecationWarning) and "dm_control" in w.filename)
    ]
    assert not unexpected, f"unexpected warnings: {unexpected}"


def check_registered_env(task: str) -> None:
    """gymnasium's env checker on ``gymnasium.make("crlgym/<task>")``, render modes too."""
    env = gym.make(f"crlgym/{task}", disable_env_checker=True)
    try:
        with only_accepted_warnings():
            check_env(env, skip_render_check=False)
    finally:
        env.close()


def rollout(env: gym.Env, actions: np.ndarray, seed: int | None) -> np.ndarray:
    """Observations of one episode prefix driven by a fixed action sequence."""
    observation, _ = env.reset(seed=seed)
    observations = [observation]
    for action in actions:
        observation, *_ = env.step(action)
        observations.append(observation)
    return np.stack(observations)


# --- checkpoints -----------------------------------------------------------------------------


def checkpoint_round_trip(state: dict) -> dict:
    """``state`` saved and loaded back the way crlgym checkpoints are (weights_only)."""
    file = io.BytesIO()
    torch.save(state, file)
    file.seek(0)
    return torch.load(file, weights_only=True)


def assert_same_state(before: object, after: object) -> None:
    """Nested dicts/lists of tensors and plain values are equal, tensors bit for bit."""
    if isinstance(before, torch.Tensor):
        assert isinstance(after, torch.Tensor) and torch.equal(before, after)
    elif isinstance(before, dict):
        assert isinstance(after, dict) and before.keys() == after.keys()
        for key in before:
            assert_same_state(before[key], after[key])
    elif isinstance(before, list | tuple):
        assert isinstance(after, list | tuple) and len(before) == len(after)
        for mine, theirs in zip(before, after, strict=True):
            assert_same_state(mine, theirs)
    else:
        assert before == after


# --- SAC agents on toy tasks -----------------------------------------------------------------


def make_sac_agent(
    tasks: str = TOY_PAIR,
    *,
    config: SACConfig | None = None,
    method: ContinualMethod | None = None,
    plasticity: PlasticityConfig | None = None,
    seed: int = 0,
    policy_kwargs: dict[str, Any] | None = None,
    silent_logger: bool = False,
    **settings: Any,
) -> tuple[ContinualSAC, TaskSequence]:
    """A seeded `ContinualSAC` on the toy sequence ``tasks``, built through the public API.

    ``settings`` are `SACConfig` fields (or pass a ready ``config``, not both); each test
    module keeps its own small settings and passes them here. The observations carry the
    one-hot task id exactly when the config is multi-head. The agent starts on task 0 (env
    seeded with ``seed``; ``torch.manual_seed(seed)`` before the networks are built).
    ``silent_logger`` gives it SB3's logger without outputs, for methods that log before
    ``learn`` sets one up.
    """
    from crlgym import envs
    from crlgym.agents.sac import ContinualSAC, SACConfig

    if config is None:
        config = SACConfig(**settings)
    elif settings:
        raise TypeError(f"pass SACConfig fields or a config, not both: {sorted(settings)}")
    sequence = envs.load_sequence(tasks, envs.EnvConfig(one_hot_task_id=config.multi_head))
    torch.manual_seed(seed)
    agent = ContinualSAC(
        sequence.make_env(0, seed=seed),
        num_tasks=sequence.num_tasks,
        config=config,
        method=method,
        plasticity=plasticity,
        task_id_dims=sequence.num_tasks if config.multi_head else 0,
        seed=seed,
        policy_kwargs=policy_kwargs,
    )
    if silent_logger:
        from stable_baselines3.common.logger import Logger

        agent.set_logger(Logger(folder=None, output_formats=[]))
    return agent, sequence


def train_task(agent: ContinualSAC, sequence: TaskSequence, task: int, steps: int) -> None:
    """Task ``task`` from start to end: its env (seeded ``task``; task 0 keeps the agent's),
    ``on_task_start`` (no budget given), ``steps`` env steps of learning, ``on_task_end``."""
    if task > 0:
        agent.set_env(sequence.make_env(task, seed=task))
    agent.on_task_start(task)
    agent.learn(steps, reset_num_timesteps=False)
    agent.on_task_end(task)


# --- command output --------------------------------------------------------------------------

_CELL_EDGE = "│┃|"


def table_rows(output: str) -> list[dict[str, str]]:
    """The rows of the table that `rich` printed in ``output`` (box-drawing or ASCII
    borders), each as {column title: cell text}. A cell folded over several lines keeps only
    its first line; the continuation lines (first cell empty) are left out."""
    lines = [
        line.strip()
        for line in output.splitlines()
        if line.strip()[:1] in set(_CELL_EDGE) and not re.fullmatch(r"[|+\-=\s]+", line.strip())
    ]
    if not lines:
        raise AssertionError(f"no table in the output:\n{output}")
    cells = [[cell.strip() for cell in re.split(f"[{_CELL_EDGE}]", line)[1:-1]] for line in lines]
    header, *rows = cells
    return [dict(zip(header, row, strict=True)) for row in rows if row[0]]
