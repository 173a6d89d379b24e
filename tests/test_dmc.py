"""DeepMind Control Suite tasks behind the gymnasium API."""

from __future__ import annotations

import numpy as np
import pytest

import crlgym
from crlgym import envs
from crlgym.envs.dmc_env import DMControlEnv, load_reference_returns, normalized_score
from crlgym.envs.dmc_specs import inspect_task, load_dmc_specs
from crlgym.envs.sequences import DMC6, DMC10
from tests.helpers import check_registered_env, rollout

L2M_TASKS = tuple(dict.fromkeys(DMC10 + DMC6))


def test_task_list_matches_dm_control() -> None:
    from dm_control import suite

    assert sorted(envs.dmc_tasks()) == sorted(f"{d}-{t}" for d, t in suite.ALL_TASKS)


@pytest.mark.parametrize("task", (*L2M_TASKS, "quadruped-run"))
def test_shipped_spec_matches_dm_control(task: str) -> None:
    domain, name = task.split("-", 1)
    shipped = load_dmc_specs()[task]
    assert inspect_task(domain, name) == {
        **shipped,
        "observation": [(k, n) for k, n in shipped["observation"]],
    }


@pytest.mark.parametrize("task", L2M_TASKS)
@pytest.mark.integration  # gymnasium's checker renders every mode
def test_env_checker(task: str) -> None:
    check_registered_env(task)


def test_reference_returns_cover_every_task_and_are_ordered() -> None:
    references = load_reference_returns()
    assert set(references) == set(envs.dmc_tasks())
    for task, reference in references.items():
        assert reference["expert"] > reference["random"], task


def test_normalized_score_formula() -> None:
    reference = load_reference_returns()["cheetah-run"]
    assert normalized_score("cheetah-run", reference["random"]) == pytest.approx(0.0)
    assert normalized_score("cheetah-run", reference["expert"]) == pytest.approx(1.0)
    midpoint = (reference["random"] + reference["expert"]) / 2
    assert normalized_score("cheetah-run", midpoint) == pytest.approx(0.5)


def test_flat_float32_observation_and_unit_actions() -> None:
    env = envs.make_env("walker-walk", seed=0)
    observation, _ = env.reset()
    assert observation.dtype == np.float32
    assert observation.shape == (24,) == env.observation_space.shape
    assert env.action_space.shape == (6,)
    assert env.action_space.low.min() == -1.0 and env.action_space.high.max() == 1.0


def test_actions_map_to_the_actuator_range() -> None:
    """quadruped's actuators are not [-1, 1]: action +-1 must reach their limits."""
    env = envs.make_env("quadruped-run", seed=0)
    env.reset()
    spec = load_dmc_specs()["quadruped-run"]
    physics = env.unwrapped._env.physics
    env.step(np.ones(12, dtype=np.float32))
    np.testing.assert_allclose(physics.data.ctrl, spec["action_high"], rtol=1e-6)
    env.step(-np.ones(12, dtype=np.float32))
    np.testing.assert_allclose(physics.data.ctrl, spec["action_low"], rtol=1e-6)


def test_same_seed_same_trajectory_different_seed_differs() -> None:
    actions = np.random.default_rng(0).uniform(-1, 1, size=(20, 1)).astype(np.float32)
    first = rollout(envs.make_env("cartpole-swingup"), actions, seed=5)
    again = rollout(envs.make_env("cartpole-swingup"), actions, seed=5)
    other = rollout(envs.make_env("cartpole-swingup"), actions, seed=6)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[0], other[0])
    constructor_seeded = envs.make_env("cartpole-swingup", seed=5)
    np.testing.assert_array_equal(constructor_seeded.reset()[0], first[0])


def test_episode_is_1000_steps_with_a_normalized_score_at_the_end() -> None:
    env = envs.make_env("pendulum-swingup", seed=0)
    env.reset()
    total, steps, truncated, info = 0.0, 0, False, {}
    while not truncated:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert not terminated
        total += reward
        steps += 1
    assert steps == 1000
    assert info["episode_return"] == pytest.approx(total)
    assert info["normalized_score"] == pytest.approx(normalized_score("pendulum-swingup", total))


def test_shorter_episode_length() -> None:
    env = envs.make_env("cheetah-run", envs.EnvConfig(episode_length=10), seed=0)
    env.reset()
    flags = [env.step(env.action_space.sample())[3] for _ in range(10)]
    assert flags == [False] * 9 + [True]


def test_video_frame_rate_is_the_control_rate() -> None:
    """shimmy reports control_timestep x 1000; one frame per control step is 1/dt."""
    assert envs.make_env("cheetah-run").metadata["render_fps"] == 100  # dt = 0.01 s
    assert envs.make_env("walker-walk").metadata["render_fps"] == 40  # dt = 0.025 s


def test_episode_longer_than_the_suite_limit_is_refused() -> None:
    with pytest.raises(crlgym.ConfigError, match="episode_length"):
        DMControlEnv("cheetah-run", episode_length=2000)
