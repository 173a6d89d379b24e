"""Shared test helpers."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils.env_checker import check_env

from crlgym import envs  # noqa: F401 - sets MUJOCO_GL before anything imports mujoco

# Small test networks run fastest on one thread, and several threads spin-wait badly when
# the 2 cores are shared with other processes.
torch.set_num_threads(1)

# Notices of gymnasium's checker that describe our design, not a defect:
# - we check the env as users get it (wrapped), which the checker always remarks on;
# - Meta-World object coordinates and DMControl observations are unbounded, so an infinite
#   bound is the true bound (tests assert exactly which dimensions are infinite).
ACCEPTED_CHECKER_NOTICES = (
    "is different from the unwrapped version",
    "observation space minimum value is -infinity",
    "observation space maximum value is infinity",
)


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
        assert len(before) == len(after)
        for mine, theirs in zip(before, after, strict=True):
            assert_same_state(mine, theirs)
    else:
        assert before == after
