"""Recall tasks (envs/recall.py): cue, delay with distractors, one rewarded choice."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import crlgym
from crlgym import envs
from crlgym.envs.make import default_episode_length
from crlgym.envs.padding import RECALL_SLOT
from crlgym.envs.recall import (
    RECALL_TASK_NAMES,
    RecallEnv,
    RecallExpert,
    make_recall_env,
    parse_recall_name,
)
from tests.helpers import check_registered_env


def _episode(
    env: gym.Env, policy: Any, seed: int | None = None, options: dict[str, Any] | None = None
) -> tuple[np.ndarray, list[float], list[bool], list[bool], list[dict[str, Any]]]:
    """Observations (reset one included), rewards, terminated/truncated flags, infos."""
    observation, _ = env.reset(seed=seed, options=options)
    observations, rewards, terms, truncs, infos = [observation], [], [], [], []
    done = False
    while not done:
        observation, reward, terminated, truncated, info = env.step(policy(observation))
        observations.append(observation)
        rewards.append(reward)
        terms.append(terminated)
        truncs.append(truncated)
        infos.append(info)
        done = terminated or truncated
        assert len(rewards) < 10_000, "episode never ends"
    return np.stack(observations), rewards, terms, truncs, infos


def _random_policy(num_cues: int, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    return lambda _obs: rng.uniform(-1, 1, num_cues).astype(np.float32)


def test_registered_env_passes_the_checker() -> None:
    check_registered_env("recall-d50")


def test_representative_tasks_are_registered_and_listed() -> None:
    for name in RECALL_TASK_NAMES:
        assert f"crlgym/{name}" in gym.registry
        assert name in envs.all_tasks()
        assert envs.task_domain(name) == "recall"
    env = gym.make("crlgym/recall-d200", seed=0)
    observation, _ = env.reset()
    assert observation in env.observation_space
    env.close()


@pytest.mark.parametrize(
    ("name", "cue_steps", "delay", "cues"),
    [("recall-d0", 5, 0, 4), ("recall-d10", 5, 10, 4), ("recall-d37-c8-s3", 3, 37, 8)],
)
def test_episode_ends_at_the_choice_step(name: str, cue_steps: int, delay: int, cues: int) -> None:
    env = envs.make_env(name)
    assert env.observation_space.shape == (2 * cues + 3,)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (cues,), np.float32)
    length = cue_steps + delay + 1
    assert default_episode_length(name) == length == env.unwrapped.episode_length
    for seed in range(3):
        observations, rewards, terms, truncs, infos = _episode(
            env, _random_policy(cues, seed), seed=seed
        )
        assert len(rewards) == length
        assert terms == [False] * (length - 1) + [True]
        assert not any(truncs)
        assert all(r == 0.0 for r in rewards[:-1])
        assert all("is_success" not in info and info["success"] == 0.0 for info in infos[:-1])
        assert infos[-1]["is_success"] == infos[-1]["success"] == rewards[-1]
        assert np.all(observations[-1] == 0.0)  # the terminal observation shows nothing
        for observation in observations:
            assert observation in env.observation_space
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.action_space.sample())


def test_phases_and_the_cue_vanishing_after_the_cue_phase() -> None:
    env = envs.make_env("recall-d40-s4")
    per_cue = [
        _episode(env, lambda o: np.zeros(4), seed=3, options={"cue": k})[0] for k in range(4)
    ]
    for k, observations in enumerate(per_cue):
        cue, distractor, phase = observations[:, :4], observations[:, 4:8], observations[:, 8:]
        np.testing.assert_array_equal(cue[:4], np.tile(np.eye(4)[k], (4, 1)))
        assert np.all(cue[4:] == 0.0)
        assert np.all(distractor[:4] == 0.0) and np.all(distractor[44:] == 0.0)
        np.testing.assert_array_equal(phase[:4], np.tile([1, 0, 0], (4, 1)))
        np.testing.assert_array_equal(phase[4:44], np.tile([0, 1, 0], (40, 1)))
        np.testing.assert_array_equal(phase[44], [0, 0, 1])
        # Distractors play during the delay: one-hot or empty, never more than one.
        assert set(distractor[4:44].sum(axis=1)) == {0.0, 1.0}
    # Same seed, different cue: every observation after the cue phase is the same.
    for observations in per_cue[1:]:
        np.testing.assert_array_equal(observations[4:], per_cue[0][4:])
    assert not np.array_equal(per_cue[0][:4], per_cue[1][:4])


def test_reward_only_for_the_correct_choice() -> None:
    env = envs.make_env("recall-d5-c6")
    for cue in range(6):
        for choice in range(6):
            action = np.full(6, -0.5, dtype=np.float32)
            action[choice] = 0.9
            _, rewards, _, _, infos = _episode(env, lambda _o, a=action: a, options={"cue": cue})
            correct = float(choice == cue)
            assert rewards[-1] == correct and sum(rewards) == correct
            assert infos[-1]["is_success"] == correct
            assert (infos[-1]["cue"], infos[-1]["choice"]) == (cue, choice)


def test_only_the_choice_step_action_counts() -> None:
    env = envs.make_env("recall-d3")
    env.reset(seed=0, options={"cue": 2})
    wrong = np.eye(4, dtype=np.float32)[0]
    for _ in range(5 + 3):
        env.step(wrong)
    *_, info = env.step(np.eye(4, dtype=np.float32)[2])
    assert info["is_success"] == 1.0


def test_stateful_expert_always_succeeds_and_random_is_at_chance() -> None:
    env = envs.make_env("recall-d50", seed=0)
    expert = envs.expert_policy("recall-d50")  # one object across episodes, as a demo uses it
    assert isinstance(expert, RecallExpert)
    successes = [_episode(env, expert)[4][-1]["is_success"] for _ in range(50)]
    assert successes == [1.0] * 50
    privileged = env.unwrapped
    assert all(
        _episode(env, lambda _o: privileged.expert_action(), seed=s)[4][-1]["is_success"]
        for s in range(20)
    )
    # A random choice is right with probability 1/num_cues: 2000 episodes put the rate
    # within 0.05 of it with overwhelming probability (0.05 is about 5 standard errors).
    for name, cues in (("recall-d0", 4), ("recall-d0-c8", 8)):
        short = envs.make_env(name, seed=1)
        policy = _random_policy(cues, seed=2)
        rate = np.mean([_episode(short, policy)[4][-1]["is_success"] for _ in range(2000)])
        assert abs(rate - 1.0 / cues) < 0.05, (name, rate)


def test_expert_contract_errors() -> None:
    expert = RecallExpert(4)
    choice_observation = np.zeros(11, dtype=np.float32)
    choice_observation[10] = 1.0
    with pytest.raises(RuntimeError, match="no cue seen"):
        expert(choice_observation)
    with pytest.raises(ValueError, match=r"shape \(11,\)"):
        expert(np.zeros(12, dtype=np.float32))
    cue_observation = np.zeros(11, dtype=np.float32)
    cue_observation[[1, 8]] = 1.0
    # Neutral before the choice, so recorded actions never carry the cue.
    np.testing.assert_array_equal(expert(cue_observation), [0, 0, 0, 0])
    np.testing.assert_array_equal(expert(choice_observation), [-1, 1, -1, -1])
    assert expert.remembered_cue == 1
    expert.reset()
    assert expert.remembered_cue is None


def test_seeding_is_deterministic() -> None:
    def rollout(env: gym.Env, seed: int | None) -> np.ndarray:
        return _episode(env, _random_policy(4, 0), seed=seed)[0]

    env_a, env_b = envs.make_env("recall-d30"), envs.make_env("recall-d30")
    np.testing.assert_array_equal(rollout(env_a, 7), rollout(env_b, 7))
    assert env_a.unwrapped.cue == env_b.unwrapped.cue
    assert not np.array_equal(rollout(env_a, 7), rollout(env_a, 8))
    # The seed given to make_env seeds the first reset only.
    seeded = envs.make_env("recall-d30", seed=7)
    np.testing.assert_array_equal(rollout(seeded, None), rollout(env_a, 7))
    assert not np.array_equal(rollout(seeded, None), rollout(env_a, 7))


def test_distractor_statistics_are_configurable() -> None:
    def delay_slots(name: str, episodes: int = 20) -> np.ndarray:
        env = envs.make_env(name, seed=0)
        spec = parse_recall_name(name)
        cues, start = spec.num_cues, spec.cue_steps
        blocks = [
            _episode(env, lambda _o: np.zeros(cues))[0][start : start + spec.delay, cues : 2 * cues]
            for _ in range(episodes)
        ]
        return np.stack(blocks)

    assert np.all(delay_slots("recall-d50-p0") == 0.0)
    assert np.all(delay_slots("recall-d50-p100").sum(axis=-1) == 1.0)
    shown = delay_slots("recall-d200").sum(axis=-1).mean()
    assert 0.45 < shown < 0.55  # default: a distractor on half of the delay steps
    held = delay_slots("recall-d60-p100-h5")
    segments = held.reshape(20, 12, 5, 4)
    assert np.all(segments == segments[:, :, :1])  # constant within each 5-step segment
    assert not np.all(segments[:, 1:] == segments[:, :1])  # but changing between them
    # Distractors are uniform over the cues.
    counts = delay_slots("recall-d200-p100").sum(axis=(0, 1))
    assert np.all(np.abs(counts / counts.sum() - 0.25) < 0.03)


def test_huge_delays_cost_nothing_up_front_and_steps_are_fast() -> None:
    env = envs.make_env("recall-d1000000", seed=0)
    started = time.perf_counter()
    env.reset()
    action = np.zeros(4, dtype=np.float32)
    for _ in range(20_000):
        env.step(action)
    # About 1 microsecond per step here; the bound leaves room for busy shared cores.
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("recall-d50", "recall-d50"),
        ("  recall-d050 ", "recall-d50"),
        ("recall-d200-c8", "recall-d200-c8"),
        ("recall-c8-d200", "recall-d200-c8"),
        ("recall-d10-c4-s5-p50-h1", "recall-d10"),
        ("recall-d10-h2-p0-s1-c3", "recall-d10-c3-s1-p0-h2"),
        ("recall-d777", "recall-d777"),
    ],
)
def test_valid_names(given: str, canonical: str) -> None:
    assert envs.canonical_task_name(given) == canonical
    assert envs.task_domain(given) == "recall"
    env = envs.make_env(given)
    assert env.unwrapped.task_name == canonical
    spec = parse_recall_name(canonical)
    assert env.observation_space.shape == (2 * spec.num_cues + 3,)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("recall-dx", "cannot read 'dx'"),
        ("recall", "delay d<D> is missing"),
        ("recall-c8", "delay d<D> is missing"),
        ("recall-d5-c1", "at least 2 cues"),
        ("recall-d5-s0", "at least 1 step"),
        ("recall-d5-p101", "0..100"),
        ("recall-d5-h0", "hold must be >= 1"),
        ("recall-d5-d6", "given twice"),
        ("recall-d-5", "cannot read"),
    ],
)
def test_bad_names_raise_one_line_unknown_task_errors(name: str, problem: str) -> None:
    with pytest.raises(crlgym.UnknownTaskError) as caught:
        envs.make_env(name)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"unknown task '{name}'")
    assert problem in message and "recall-d<delay>" in message
    assert "crl list tasks" in message
    with pytest.raises(crlgym.UnknownSequenceError, match="recall-d<delay>"):
        envs.load_sequence(name)


def test_episode_length_config() -> None:
    with pytest.raises(crlgym.ConfigError, match=r"lasts 56 steps .* at least 56"):
        envs.make_env("recall-d50", envs.EnvConfig(episode_length=55))
    env = envs.make_env("recall-d50", envs.EnvConfig(episode_length=500))
    assert len(_episode(env, lambda _o: np.zeros(4), seed=0)[1]) == 56
    exact = envs.make_env("recall-d50", envs.EnvConfig(episode_length=56))
    assert len(_episode(exact, lambda _o: np.zeros(4), seed=0)[1]) == 56


def test_spec_round_trip_and_direct_construction() -> None:
    env = make_recall_env("recall-d12-c5")
    made = gym.make(env.spec)
    assert isinstance(made.unwrapped, RecallEnv)
    assert made.unwrapped.num_cues == 5 and made.unwrapped.delay == 12
    raw = RecallEnv(3, num_cues=2, cue_steps=1, distractor_prob=0.0)
    assert len(_episode(raw, lambda _o: np.zeros(2), seed=0)[1]) == 5
    with pytest.raises(RuntimeError):
        RecallEnv().step(np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        raw.reset(seed=0)
        for _ in range(4):
            raw.step(np.zeros(2))
        raw.step(np.array([np.nan, 0.0]))


def test_render() -> None:
    assert envs.make_env("recall-d5").render() is None
    env = make_recall_env("recall-d5", render_mode="rgb_array")
    env.reset(seed=0, options={"cue": 1})
    cue_frame = env.render()
    assert cue_frame.dtype == np.uint8 and cue_frame.shape == (64, 64, 3)
    for _ in range(5):
        env.step(np.zeros(4))
    delay_frame = env.render()
    assert not np.array_equal(cue_frame, delay_frame)
    for _ in range(5):
        env.step(np.zeros(4))
    env.step(np.eye(4)[1])
    right = env.render()
    env.reset(seed=0, options={"cue": 1})
    for _ in range(10):
        env.step(np.zeros(4))
    env.step(np.eye(4)[2])
    assert not np.array_equal(right, env.render())  # a wrong choice is drawn differently
    sized = envs.make_env(
        "recall-d5-c8", envs.EnvConfig(render_mode="rgb_array", width=96, height=48)
    )
    sized.reset(seed=0)
    frame = sized.render()
    assert frame.shape == (48, 96, 3) and frame.var() > 0


def test_sequences_of_recall_tasks() -> None:
    sequence = envs.load_sequence("recall-d50,recall-d200")
    assert sequence.task_names == ("recall-d50", "recall-d200")
    assert sequence.layout is None and sequence.observation_space.shape == (11,)
    with_id = envs.load_sequence("recall-d50,recall-d200", envs.EnvConfig(one_hot_task_id=True))
    assert with_id.observation_space.shape == (13,)
    env = with_id.make_env(1, seed=0)
    observations = _episode(env, lambda _o: np.zeros(4))[0]
    assert len(observations) == 5 + 200 + 2
    assert np.all(observations[:, 11:] == [0.0, 1.0])


def test_yaml_sequence_of_recall_tasks(tmp_path: Path) -> None:
    path = tmp_path / "memory.yaml"
    path.write_text("tasks:\n  - recall-d50\n  - {task: recall-d1000, steps: 500}\n")
    sequence = envs.load_sequence(str(path))
    assert sequence.task_names == ("recall-d50", "recall-d1000")
    assert [t.steps for t in sequence.tasks] == [None, 500]
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  - recall-d50\n  - recall-dx\n")
    with pytest.raises(crlgym.SequenceFileError, match=r":3: unknown task 'recall-dx'"):
        envs.load_sequence(str(bad))


def test_different_cue_counts_share_a_padded_space() -> None:
    sequence = envs.load_sequence("recall-d5,recall-d5-c8")
    layout = sequence.layout
    assert layout is not None
    start, width = layout.slot(RECALL_SLOT)
    assert width == 2 * 8 + 3 and sequence.action_space.shape == (8,)
    env = sequence.make_env(0, seed=0)  # 4 cues inside the 8-cue slot
    observation, _ = env.reset(options={"cue": 3})
    slot = observation[start : start + width]
    np.testing.assert_array_equal(slot[:8], np.eye(8)[3])
    np.testing.assert_array_equal(slot[16:], [1, 0, 0])
    assert np.count_nonzero(observation) == 2
    for _ in range(10):
        observation, *_ = env.step(np.zeros(8))
        assert observation in sequence.observation_space
    # The task reads the first 4 action dims: the 8th dim's large value is ignored.
    action = np.full(8, -1.0, dtype=np.float32)
    action[[3, 7]] = [0.5, 1.0]
    *_, info = env.step(action)
    assert info["is_success"] == 1.0
    with pytest.raises(crlgym.SpaceMismatchError, match="recall-d5-c8: observation"):
        envs.load_sequence("recall-d5,recall-d5-c8", envs.EnvConfig(padding="never"))
