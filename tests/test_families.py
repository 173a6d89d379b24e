"""Task families are plug-ins: a `TaskFamily` subclass plus one entry in ``FAMILIES``.

The family defined here (``tiny-<k>``: a 1-D point moving to a goal, pure numpy) is
registered for one test at a time with monkeypatch, which restores the registry after.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import crlgym
from crlgym import envs
from crlgym.envs.families import Expert, TaskFamily
from crlgym.envs.registration import NAMESPACE, register_envs
from crlgym.envs.tasks import FAMILIES, split_masked_task

TINY_NAMES = ("tiny-0", "tiny-1", "tiny-2")
TINY_EPISODE_LENGTH = 7


class LineEnv(gym.Env):
    """A point on [-1, 1] that moves by ``0.2 * action`` towards a hidden goal."""

    metadata = {"render_modes": []}  # noqa: RUF012 - gymnasium declares it an instance attribute

    def __init__(self, goal: float, episode_length: int, seed: int | None = None) -> None:
        self.goal = goal
        self.episode_length = episode_length
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._first_seed = seed
        self._x = 0.0
        self._t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None:
            seed, self._first_seed = self._first_seed, None
        super().reset(seed=seed)
        self._x = float(self.np_random.uniform(-0.1, 0.1))
        self._t = 0
        return np.array([self._x], dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._x = float(np.clip(self._x + 0.2 * np.clip(action[0], -1.0, 1.0), -1.0, 1.0))
        self._t += 1
        distance = abs(self._x - self.goal)
        info = {"success": float(distance < 0.05)}
        truncated = self._t >= self.episode_length
        return np.array([self._x], dtype=np.float32), -distance, False, truncated, info


class TinyFamily(TaskFamily):
    domain = "tiny"
    description = "1-D point to a hidden goal (test family)"

    def canonical(self, name: str) -> str | None:
        cleaned = name.strip()
        if not cleaned.startswith("tiny-"):
            return None
        if cleaned in TINY_NAMES:
            return cleaned
        raise self.unknown_task(name, detail="tiny tasks are named tiny-<0..2>", valid=TINY_NAMES)

    def names(self) -> tuple[str, ...]:
        return TINY_NAMES

    def make(self, name: str, config: envs.EnvConfig, seed: int | None) -> gym.Env:
        length = config.episode_length or self.default_episode_length(name)
        return LineEnv(self._goal(name), length, seed)

    def default_episode_length(self, name: str) -> int:
        return TINY_EPISODE_LENGTH

    def expert(self, name: str) -> Expert:
        goal = self._goal(name)
        return lambda observation: np.clip((goal - observation) * 5.0, -1.0, 1.0).astype(np.float32)

    @staticmethod
    def _goal(name: str) -> float:
        return 0.3 * int(name.rsplit("-", 1)[1]) + 0.2


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> TinyFamily:
    family = TinyFamily()
    monkeypatch.setitem(FAMILIES, "tiny", family)
    return family


def _episode(env: gym.Env, policy: Expert) -> tuple[int, float]:
    observation, _ = env.reset()
    steps, done, success = 0, False, 0.0
    while not done:
        observation, _reward, terminated, truncated, info = env.step(policy(observation))
        steps, done, success = steps + 1, terminated or truncated, info["success"]
    return steps, success


def test_make_env_builds_a_registered_family(tiny: TinyFamily) -> None:
    env = envs.make_env(" tiny-1 ", seed=3)
    assert isinstance(env, LineEnv) and env.goal == pytest.approx(0.5)
    assert _episode(env, envs.expert_policy("tiny-1")) == (TINY_EPISODE_LENGTH, 1.0)
    assert envs.default_episode_length("tiny-1") == TINY_EPISODE_LENGTH
    short = envs.make_env("tiny-1", envs.EnvConfig(episode_length=3), seed=3)
    assert _episode(short, envs.expert_policy("tiny-1"))[0] == 3
    # The seed passed to make_env seeds the first reset.
    again = envs.make_env("tiny-1", seed=3)
    assert env.reset(seed=3)[0] == again.reset()[0]


def test_names_and_domain_come_from_the_family(tiny: TinyFamily) -> None:
    assert envs.canonical_task_name(" tiny-2 ") == "tiny-2"
    assert envs.task_domain("tiny-2") == "tiny"
    assert envs.resolve_task("tiny-0") == ("tiny-0", tiny)
    assert envs.all_tasks()[-3:] == TINY_NAMES
    assert split_masked_task("tiny-0") is None


def test_sequences_of_family_tasks(tiny: TinyFamily) -> None:
    sequence = envs.load_sequence("tiny-0, tiny-2", steps_per_task=100)
    assert sequence.task_names == ("tiny-0", "tiny-2") and sequence.layout is None
    assert sequence.observation_space == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    env = sequence.make_env(1, seed=0)
    assert isinstance(env, LineEnv) and env.goal == pytest.approx(0.8)
    with_id = envs.load_sequence("tiny-1", envs.EnvConfig(one_hot_task_id=True))
    assert with_id.make_env(0, seed=0).reset()[0].shape == (2,)


def test_gymnasium_ids_of_family_names(tiny: TinyFamily) -> None:
    ids = [f"{NAMESPACE}/{name}" for name in TINY_NAMES]
    try:
        register_envs()
        env = gym.make(ids[2], seed=0, episode_length=4)
        assert _episode(env, lambda _o: np.zeros(1, dtype=np.float32))[0] == 4
        env.close()
    finally:
        for env_id in ids:
            gym.registry.pop(env_id, None)


def test_unknown_names_give_one_line_errors(tiny: TinyFamily) -> None:
    # The family's own pattern: its message, its suggestions.
    with pytest.raises(crlgym.UnknownTaskError) as caught:
        envs.make_env("tiny-9")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("unknown task 'tiny-9' (tiny tasks are named tiny-<0..2>)")
    assert "closest valid names: tiny-" in message and "crl list tasks" in message
    # No family's name: the generic message, which suggests plug-in names too.
    with pytest.raises(crlgym.UnknownTaskError) as caught:
        envs.canonical_task_name("tinny-1")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("unknown task 'tinny-1'")
    assert "closest valid names: tiny-1" in message
    with pytest.raises(crlgym.UnknownSequenceError, match="unknown sequence or task 'tinny-1'"):
        envs.load_sequence("tinny-1")


def test_unregistered_family_is_unknown() -> None:
    assert "tiny" not in FAMILIES
    with pytest.raises(crlgym.UnknownTaskError, match=r"^unknown task 'tiny-0'[^\n]*$"):
        envs.make_env("tiny-0")


@pytest.fixture
def restored_registry() -> Iterator[None]:
    before = dict(FAMILIES)
    yield
    assert before == FAMILIES


def test_builtin_families(restored_registry: None) -> None:
    assert list(FAMILIES) == ["metaworld", "dmc", "toy", "recall", "masked"]
    domains = {name: family.domain for name, family in FAMILIES.items()}
    assert domains == {
        "metaworld": "metaworld",
        "dmc": "dmc",
        "toy": "toy",
        "recall": "recall",
        "masked": "metaworld",
    }
    # Each family claims its own names, canonically spelled, and no other family's.
    for name, family in FAMILIES.items():
        assert family.description and family.names()
        for task in family.names():
            assert family.canonical(task) == task
            assert envs.resolve_task(task) == (task, family)
            for other_name, other in FAMILIES.items():
                if other_name != name:
                    assert other.canonical(task) is None, (other_name, task)
    assert envs.all_tasks() == tuple(t for f in FAMILIES.values() for t in f.names())
    assert [envs.default_episode_length(t) for t in ("hammer", "cheetah-run", "toy-reach-0")] == [
        200,
        1000,
        50,
    ]
    assert envs.default_episode_length("masked3-reach") == 200
    with pytest.raises(crlgym.ConfigError, match="cheetah-run has no scripted expert"):
        envs.expert_policy("cheetah-run")
