"""Goal-masked Meta-World (envs/goal_mask.py): the goal shows for the first K steps only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import crlgym
from crlgym import envs
from crlgym.envs.goal_mask import (
    GOAL_SLICE,
    MASKED_OBSERVATION_SPACE,
    GoalMaskedEnv,
    MaskedGoalExpert,
)
from crlgym.envs.metaworld_env import METAWORLD_OBSERVATION_SPACE, metaworld_expert
from crlgym.envs.tasks import MASKED_TASK_NAMES, split_masked_task
from tests.helpers import check_registered_env


@pytest.mark.parametrize("visible", [1, 10])
def test_goal_shows_for_exactly_k_observations_and_nothing_else_changes(visible: int) -> None:
    masked = envs.make_env(f"masked{visible}-reach", seed=3)
    plain = envs.make_env("reach", seed=3)
    assert isinstance(masked, GoalMaskedEnv)
    actions = np.random.default_rng(0).uniform(-1, 1, (25, 4)).astype(np.float32)
    masked_obs = [masked.reset()[0]]
    plain_obs = [plain.reset()[0]]
    for action in actions:
        masked_obs.append(masked.step(action)[0])
        plain_obs.append(plain.step(action)[0])
    masked_all, plain_all = np.stack(masked_obs), np.stack(plain_obs)
    np.testing.assert_array_equal(masked_all[:, :36], plain_all[:, :36])
    np.testing.assert_array_equal(masked_all[:visible, GOAL_SLICE], plain_all[:visible, GOAL_SLICE])
    assert np.all(masked_all[visible:, GOAL_SLICE] == 0.0)
    assert np.all(plain_all[:, 37] >= 0.4)  # a real goal is never 0: zeros mean "hidden"
    for observation in masked_all:
        assert observation in masked.observation_space
    # The next episode shows its (new) goal again.
    observation, _ = masked.reset()
    assert np.all(observation[GOAL_SLICE] == plain.reset()[0][GOAL_SLICE])
    masked.close()
    plain.close()


def test_observation_space_keeps_goal_bounds_widened_to_zero() -> None:
    assert MASKED_OBSERVATION_SPACE.shape == (39,)
    np.testing.assert_array_equal(
        MASKED_OBSERVATION_SPACE.low[:36], METAWORLD_OBSERVATION_SPACE.low[:36]
    )
    np.testing.assert_array_equal(
        MASKED_OBSERVATION_SPACE.high[:36], METAWORLD_OBSERVATION_SPACE.high[:36]
    )
    np.testing.assert_allclose(MASKED_OBSERVATION_SPACE.low[GOAL_SLICE], [-0.5, 0.0, -0.15])
    np.testing.assert_allclose(MASKED_OBSERVATION_SPACE.high[GOAL_SLICE], [0.51, 1.0, 0.5])
    assert np.all(np.isfinite(MASKED_OBSERVATION_SPACE.low[GOAL_SLICE]))


@pytest.mark.integration  # gymnasium's checker renders every mode
def test_registered_env_passes_the_checker() -> None:
    check_registered_env("masked10-reach-v3")


def test_names_domain_and_registration() -> None:
    assert envs.canonical_task_name("masked10-reach") == "masked10-reach-v3"
    assert envs.canonical_task_name(" masked010-push-wall-v3 ") == "masked10-push-wall-v3"
    assert envs.canonical_task_name("masked0-hammer") == "masked0-hammer-v3"
    assert envs.canonical_task_name("masked250-hammer") == "masked250-hammer-v3"
    assert split_masked_task("masked7-reach") == (7, "reach-v3")
    assert split_masked_task("reach") is None
    assert envs.task_domain("masked3-push") == "metaworld"
    assert len(MASKED_TASK_NAMES) == 11 and "masked10-reach-v3" in MASKED_TASK_NAMES
    for name in MASKED_TASK_NAMES:
        assert f"crlgym/{name}" in gym.registry and name in envs.all_tasks()
    for name in ("masked10-rech", "masked5-cheetah-run", "masked-reach", "maskedx-reach"):
        with pytest.raises(crlgym.UnknownTaskError) as caught:
            envs.canonical_task_name(name)
        assert "\n" not in str(caught.value) and "crl list tasks" in str(caught.value)
    with pytest.raises(crlgym.UnknownTaskError, match="closest valid names: masked10-reach-v3"):
        envs.make_env("masked10-rech")
    with pytest.raises(crlgym.UnknownSequenceError, match="masked<K>-<Meta-World task>"):
        envs.load_sequence("masked4-cheetah-run")


def _success_rate(task: str, policy_for_episode: Any, episodes: int = 10) -> float:
    env = envs.make_env(task, seed=0)
    successes = []
    for episode in range(episodes):
        policy = policy_for_episode()
        observation, _ = env.reset(seed=episode)
        done = False
        while not done:
            observation, _, terminated, truncated, info = env.step(policy(observation))
            done = terminated or truncated
        successes.append(float(info["is_success"]))
    env.close()
    return float(np.mean(successes))


@pytest.mark.integration  # full expert episodes
def test_memory_expert_succeeds_where_the_memoryless_one_fails() -> None:
    expert = envs.expert_policy("masked10-reach")  # one object across episodes
    assert isinstance(expert, MaskedGoalExpert)
    # Measured: 10/10 with memory, 0/10 without (it steers to the zero "goal").
    assert _success_rate("masked10-reach", lambda: expert) >= 0.9
    assert _success_rate("masked10-reach", lambda: metaworld_expert("reach-v3")) <= 0.1


def test_expert_contract() -> None:
    expert = MaskedGoalExpert("reach-v3")
    hidden = np.zeros(39, dtype=np.float32)
    with pytest.raises(RuntimeError, match="no goal seen"):
        expert(hidden)
    with pytest.raises(ValueError, match=r"shape \(39,\)"):
        expert(np.zeros(40, dtype=np.float32))
    visible = hidden.copy()
    visible[GOAL_SLICE] = [0.1, 0.8, 0.2]
    first = expert(visible)
    np.testing.assert_allclose(expert.remembered_goal, [0.1, 0.8, 0.2], rtol=1e-6)
    np.testing.assert_array_equal(expert(hidden), first)  # the goal is filled back in
    expert.reset()
    assert expert.remembered_goal is None
    with pytest.raises(crlgym.ConfigError, match="never shows its goal"):
        envs.expert_policy("masked0-reach")


def test_sequences_of_masked_tasks(tmp_path: Path) -> None:
    sequence = envs.load_sequence("masked10-reach,masked10-push")
    assert sequence.task_names == ("masked10-reach-v3", "masked10-push-v3")
    assert sequence.layout is None
    assert sequence.observation_space == MASKED_OBSERVATION_SPACE
    with_id = envs.load_sequence(
        "masked10-reach,masked10-push", envs.EnvConfig(one_hot_task_id=True)
    )
    env = with_id.make_env(1, seed=0)
    observation, _ = env.reset()
    assert observation.shape == (41,) and observation[39:].tolist() == [0.0, 1.0]
    env.close()
    path = tmp_path / "masked.yaml"
    path.write_text("tasks:\n  - masked10-reach\n  - {task: masked5-push-v3, steps: 100}\n")
    from_file = envs.load_sequence(str(path))
    assert from_file.task_names == ("masked10-reach-v3", "masked5-push-v3")


def test_masked_and_plain_tasks_differ_in_bounds_and_pad() -> None:
    mixed = envs.load_sequence("masked10-reach,reach")
    assert mixed.layout is not None
    env = mixed.make_env(0, seed=0)
    observation, _ = env.reset()
    for _ in range(12):
        observation, *_ = env.step(env.action_space.sample())
    assert observation in mixed.observation_space
    assert np.all(observation[GOAL_SLICE] == 0.0)  # the Meta-World slot holds the masked goal
    env.close()
    with pytest.raises(crlgym.SpaceMismatchError, match="other bounds"):
        envs.load_sequence("masked10-reach,reach", envs.EnvConfig(padding="never"))
