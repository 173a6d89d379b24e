"""Tests for the toy point-reaching task family (envs/toy.py)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from crlgym.envs.toy import (
    TOY_TASK_NAMES,
    PointReachEnv,
    make_toy_env,
    toy_task_goal,
)

N_EPISODES = 20


def _run_episode(env, policy, seed):
    """Roll out one episode; return (obs list, rewards, infos)."""
    obs, _ = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], []
    while True:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
        if terminated or truncated:
            return observations, rewards, infos


def _success_rate(env, policy, n=N_EPISODES, seed0=0):
    return np.mean([_run_episode(env, policy, seed0 + i)[2][-1]["is_success"] for i in range(n)])


def test_task_names():
    assert len(TOY_TASK_NAMES) == 16
    assert len(set(TOY_TASK_NAMES)) == 16
    for k in range(8):
        assert f"toy-reach-{k}" in TOY_TASK_NAMES
        assert f"toy-mirror-{k}" in TOY_TASK_NAMES
        assert toy_task_goal(f"toy-reach-{k}") == toy_task_goal(f"toy-mirror-{k}")
        assert np.hypot(*toy_task_goal(f"toy-reach-{k}")) == pytest.approx(0.7)
    assert toy_task_goal("toy-reach-0") == pytest.approx((0.7, 0.0))
    assert toy_task_goal("toy-reach-2") == pytest.approx((0.0, 0.7))


@pytest.mark.parametrize("name", ["toy-reach-0", "toy-mirror-5"])
@pytest.mark.parametrize("render_mode", [None, "rgb_array"])
def test_check_env_without_warnings(name, render_mode):
    env = make_toy_env(name, render_mode=render_mode)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    assert not caught, [str(w.message) for w in caught]


def test_spec_roundtrip_via_gym_make():
    env = make_toy_env("toy-mirror-2", max_episode_steps=30)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        made = gym.make(env.spec)
        made.reset(seed=0)
        made.step(made.action_space.sample())
    assert not caught, [str(w.message) for w in caught]
    assert isinstance(made.unwrapped, PointReachEnv)
    assert made.unwrapped.task_name == "toy-mirror-2"
    assert made.unwrapped.mirror
    assert made.unwrapped.max_episode_steps == 30


def test_spaces_and_observation():
    env = make_toy_env("toy-reach-3")
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    assert env.observation_space.shape == (2,)
    assert env.observation_space.dtype == np.float32
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs in env.observation_space
    assert np.all(np.abs(obs) <= 0.1)  # starts near the origin
    # Big actions are clipped; position stays in the arena.
    for _ in range(30):
        obs, *_ = env.step(np.array([5.0, -5.0], dtype=np.float32))
        assert obs in env.observation_space
    np.testing.assert_allclose(obs, [1.0, -1.0])

    env4 = PointReachEnv(include_last_action=True)
    assert env4.observation_space.shape == (4,)
    env4.reset(seed=0)
    obs, *_ = env4.step(np.array([0.5, 2.0], dtype=np.float32))
    np.testing.assert_allclose(obs[2:], [0.5, 1.0])


def test_step_moves_by_max_speed_and_mirror_negates():
    for name, sign in [("toy-reach-1", 1.0), ("toy-mirror-1", -1.0)]:
        env = make_toy_env(name)
        obs0, _ = env.reset(options={"start": (0.0, 0.0)})
        np.testing.assert_allclose(obs0, [0.0, 0.0])
        obs, reward, *_ = env.step(np.array([1.0, -0.5], dtype=np.float32))
        np.testing.assert_allclose(obs, sign * np.array([0.1, -0.05]), atol=1e-6)
        assert reward == pytest.approx(-np.linalg.norm(obs - env.goal), abs=1e-6)


def test_seeding_determinism():
    def rollout(env, seed):
        rng = np.random.default_rng(123)
        obs_list, rewards, _ = _run_episode(
            env, lambda o: rng.uniform(-1, 1, 2).astype(np.float32), seed
        )
        return np.array(obs_list), np.array(rewards)

    env_a, env_b = make_toy_env("toy-reach-5"), make_toy_env("toy-reach-5")
    obs_a, rew_a = rollout(env_a, 7)
    obs_b, rew_b = rollout(env_b, 7)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    obs_c, _ = rollout(env_a, 8)
    assert not np.array_equal(obs_a[0], obs_c[0])
    # The seed of make_toy_env seeds the first reset.
    first, _ = make_toy_env("toy-reach-5", seed=7).reset()
    np.testing.assert_array_equal(first, obs_a[0])
    other, _ = make_toy_env("toy-reach-5", seed=8).reset()
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("name", TOY_TASK_NAMES)
def test_expert_succeeds(name):
    env = make_toy_env(name)
    assert _success_rate(env, env.expert_action) >= 0.95


def test_random_policy_rarely_succeeds():
    rng = np.random.default_rng(0)
    rates = [
        _success_rate(make_toy_env(name), lambda o: rng.uniform(-1, 1, 2).astype(np.float32))
        for name in TOY_TASK_NAMES
    ]
    assert np.mean(rates) < 0.2


def test_tasks_conflict():
    expert0 = make_toy_env("toy-reach-0").expert_action
    assert _success_rate(make_toy_env("toy-reach-4"), expert0) == 0.0
    for k in range(8):
        reach_expert = make_toy_env(f"toy-reach-{k}").expert_action
        assert _success_rate(make_toy_env(f"toy-mirror-{k}"), reach_expert) == 0.0


def test_mirror_expert_is_negated_reach_expert():
    obs = np.random.default_rng(0).uniform(-1, 1, (64, 2)).astype(np.float32)
    for k in range(8):
        reach = make_toy_env(f"toy-reach-{k}").expert_action(obs)
        mirror = make_toy_env(f"toy-mirror-{k}").expert_action(obs)
        assert reach.shape == (64, 2) and reach.dtype == np.float32
        assert np.all(np.abs(reach) <= 1.0)
        np.testing.assert_array_equal(mirror, -reach)
        np.testing.assert_array_equal(
            make_toy_env(f"toy-reach-{k}").expert_action(obs[0]), reach[0]
        )


def test_render_rgb_array():
    env = make_toy_env("toy-reach-2", render_mode="rgb_array")
    assert env.metadata["render_fps"] > 0
    env.reset(seed=0)
    frame = env.render()
    assert isinstance(frame, np.ndarray)
    assert frame.dtype == np.uint8 and frame.shape == (64, 64, 3)
    assert frame.var() > 0
    for _ in range(5):
        env.step(env.expert_action(env.position))
    assert not np.array_equal(frame, env.render())
    assert make_toy_env("toy-reach-2").render() is None


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as excinfo:
        make_toy_env("toy-reach-8")
    for name in TOY_TASK_NAMES:
        assert name in str(excinfo.value)


def test_is_success_only_on_final_step():
    env = make_toy_env("toy-reach-6", max_episode_steps=20)
    _, _, infos = _run_episode(env, env.expert_action, seed=0)
    assert len(infos) == 20
    assert all("is_success" not in info for info in infos[:-1])
    assert infos[-1]["is_success"] == 1.0
    assert all(info["success"] in (0.0, 1.0) for info in infos)
    assert infos[0]["success"] == 0.0 and infos[-1]["success"] == 1.0
    # A random policy's final is_success reflects success at any step.
    rng = np.random.default_rng(1)
    _, _, infos = _run_episode(env, lambda o: rng.uniform(-1, 1, 2), seed=1)
    assert infos[-1]["is_success"] == float(any(i["success"] for i in infos))


def test_terminate_on_success():
    env = make_toy_env("toy-reach-0", terminate_on_success=True, success_bonus=1.0)
    _, rewards, infos = _run_episode(env, env.expert_action, seed=0)
    assert len(infos) < 50
    assert infos[-1]["success"] == 1.0 and infos[-1]["is_success"] == 1.0
    assert rewards[-1] > 0.0  # bonus added on the success step


def test_step_before_reset_raises():
    with pytest.raises(RuntimeError):
        PointReachEnv().step(np.zeros(2, dtype=np.float32))
