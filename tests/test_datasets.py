"""Offline datasets: `crl collect`, Minari storage, loading, segment sampling, `crl data`."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import minari
import numpy as np
import pytest

import crlgym
from crlgym import envs
from crlgym.experiments.cli import main
from crlgym.experiments.collect import (
    collect,
    episode_seed,
    expert_weights_path,
    is_noisy_episode,
)
from crlgym.memory.datasets import (
    DatasetExistsError,
    DatasetNotFoundError,
    dataset_id,
    dataset_info,
    list_datasets,
    load_episodes,
    load_task_dataset,
    minari_datasets_path,
    require_datasets,
    returns_to_go,
    sample_segments,
)

TOY_TASKS = ("toy-reach-0", "toy-mirror-1")
SEED = 3
EPISODES = 20
NOISE, NOISY_SHARE, NOISY_NOISE = 0.1, 0.2, 0.5


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both toy tasks collected once for the read-only tests of this module."""
    data_dir = tmp_path_factory.mktemp("collect") / "datasets"
    collect(
        ",".join(TOY_TASKS),
        episodes=EPISODES,
        data_dir=data_dir,
        seed=SEED,
        action_noise=NOISE,
        noisy_share=NOISY_SHARE,
        noisy_noise=NOISY_NOISE,
        progress=False,
    )
    return data_dir


def manual_rollout(task: str, episode: int) -> dict[str, np.ndarray]:
    """The documented scheme written out by hand: seeded env, expert, clipped noise."""
    env = envs.make_env(task)
    expert = envs.expert_policy(task)
    key = zlib.crc32(task.encode())
    rng = np.random.default_rng([SEED, key, episode, 1])
    std = NOISY_NOISE if episode % 5 == 4 else NOISE  # share 0.2: every fifth episode
    env_seed = int(np.random.SeedSequence([SEED, key, episode]).generate_state(1)[0])
    observation, _ = env.reset(seed=env_seed)
    observations, actions, rewards, success = [observation], [], [], []
    done = False
    while not done:
        action = np.clip(expert(observation) + std * rng.standard_normal(2), -1.0, 1.0)
        action = action.astype(np.float32)
        observation, reward, terminated, truncated, info = env.step(action)
        observations.append(observation)
        actions.append(action)
        rewards.append(reward)
        success.append(info["success"])
        done = terminated or truncated
    return {
        "observations": np.array(observations),
        "actions": np.array(actions),
        "rewards": np.array(rewards),
        "success": np.array(success, dtype=bool),
    }


# -- collection and storage -------------------------------------------------------------------


def test_collected_datasets_load_back_with_minari(toy_data: Path) -> None:
    with minari_datasets_path(toy_data):
        local = minari.list_local_datasets()
        for task in TOY_TASKS:
            assert f"crlgym/{task}/expert-v0" in local
            dataset = minari.load_dataset(f"crlgym/{task}/expert-v0")
            assert dataset.total_episodes == EPISODES
            assert dataset.total_steps == EPISODES * 50
            metadata = dataset.storage.metadata
            assert metadata["task"] == task and metadata["kind"] == "expert"
            assert metadata["collection"]["seed"] == SEED
            assert metadata["collection"]["noisy_noise"] == NOISY_NOISE
            for episode in dataset.iterate_episodes():
                assert len(episode) == 50
                assert episode.observations.shape == (51, 2)
                assert episode.actions.shape == (50, 2)
                assert episode.infos["success"].shape == (51,)
                assert episode.truncations[-1] and not episode.terminations.any()
    assert list_datasets(toy_data) == [f"crlgym/{task}/expert-v0" for task in sorted(TOY_TASKS)]
    assert (toy_data / ".gitignore").read_text() == "*\n"
    assert not list(toy_data.glob(".staging-*"))


def test_data_equals_a_manual_rollout_of_the_seeded_noisy_expert(toy_data: Path) -> None:
    for task in TOY_TASKS:
        episodes = load_episodes(task, toy_data)
        for index in (0, 4, 9):  # episode 4 and 9 are noisy ones (share 0.2)
            expected = manual_rollout(task, index)
            stored = episodes[index]
            np.testing.assert_array_equal(stored["observations"], expected["observations"])
            np.testing.assert_array_equal(stored["actions"], expected["actions"])
            np.testing.assert_allclose(stored["rewards"], expected["rewards"], rtol=0, atol=0)
            np.testing.assert_array_equal(stored["success"], expected["success"])
            assert stored["seed"] == episode_seed(SEED, task, index)
            assert stored["task"] == task


def test_noisy_share_lowers_returns_and_success_is_recorded(toy_data: Path) -> None:
    for task in TOY_TASKS:
        episodes = load_episodes(task, toy_data)
        noisy = [e for e in episodes if e["noisy"]]
        clean = [e for e in episodes if not e["noisy"]]
        assert len(noisy) == round(EPISODES * NOISY_SHARE)
        assert {e["noise_std"] for e in noisy} == {NOISY_NOISE}
        assert {e["noise_std"] for e in clean} == {NOISE}
        assert np.mean([e["return"] for e in noisy]) < np.mean([e["return"] for e in clean])
        assert np.abs(np.concatenate([e["actions"] for e in episodes])).max() <= 1.0
        info = dataset_info(task, toy_data)
        assert info.noisy_episodes == len(noisy)
        assert info.success_rate == pytest.approx(np.mean([e["success"].any() for e in episodes]))
        assert info.success_rate > 0.5
        assert info.return_mean == pytest.approx(np.mean([e["return"] for e in episodes]))
        assert info.return_min == pytest.approx(min(e["return"] for e in episodes))


def test_noisy_episodes_are_spread_evenly() -> None:
    flags = [is_noisy_episode(i, 0.2) for i in range(20)]
    assert sum(flags) == 4 and [i for i, f in enumerate(flags) if f] == [4, 9, 14, 19]
    assert not any(is_noisy_episode(i, 0.0) for i in range(10))
    assert all(is_noisy_episode(i, 1.0) for i in range(10))


def test_collection_is_reproducible_and_seed_dependent(toy_data: Path, tmp_path: Path) -> None:
    collect("toy-reach-0", episodes=3, data_dir=tmp_path / "a", seed=SEED, progress=False)
    collect("toy-reach-0", episodes=3, data_dir=tmp_path / "b", seed=SEED + 1, progress=False)
    same = load_episodes("toy-reach-0", tmp_path / "a")
    other = load_episodes("toy-reach-0", tmp_path / "b")
    full = load_episodes("toy-reach-0", toy_data)  # same seed, more episodes
    for index in range(3):
        np.testing.assert_array_equal(same[index]["actions"], full[index]["actions"])
        assert not np.array_equal(other[index]["observations"], full[index]["observations"])


def test_stateful_experts_are_reset_every_episode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class CountingExpert:
        """Acts like the toy expert; counts resets and steps since the last one."""

        def __init__(self, task: str) -> None:
            self.inner = original(task)
            self.resets = 0
            self.steps_since_reset: list[int] = []

        def reset(self) -> None:
            self.resets += 1
            self.steps_since_reset.append(0)

        def __call__(self, observation: np.ndarray) -> np.ndarray:
            self.steps_since_reset[-1] += 1
            return self.inner(observation)

    made: list[CountingExpert] = []
    original = envs.expert_policy

    def fake(task: str) -> CountingExpert:
        made.append(CountingExpert(task))
        return made[-1]

    monkeypatch.setattr(envs, "expert_policy", fake)
    collect("toy-reach-0", episodes=4, data_dir=tmp_path, progress=False)
    monkeypatch.setattr(envs, "expert_policy", original)
    assert len(made) == 1 and made[0].resets == 4
    assert made[0].steps_since_reset == [50, 50, 50, 50]


def test_a_failed_collection_leaves_the_old_dataset_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import crlgym.experiments.collect

    calls = {"n": 0}

    def broken(task: str) -> Any:
        def act(observation: np.ndarray) -> np.ndarray:
            calls["n"] += 1
            if calls["n"] > 120:  # in the third episode, after the first two were written
                raise RuntimeError("expert crashed")
            return np.zeros(2, dtype=np.float32)

        return act

    collect("toy-reach-1", episodes=1, data_dir=tmp_path, progress=False)
    before = load_episodes("toy-reach-1", tmp_path)
    monkeypatch.setattr(crlgym.experiments.collect, "EPISODES_PER_WRITE", 2)
    monkeypatch.setattr(envs, "expert_policy", broken)
    for task, overwrite in (("toy-reach-0", False), ("toy-reach-1", True)):
        calls["n"] = 0
        with pytest.raises(RuntimeError, match="expert crashed"):
            collect(task, episodes=5, data_dir=tmp_path, overwrite=overwrite, progress=False)
    assert not (tmp_path / "crlgym" / "toy-reach-0" / "expert-v0").exists()
    after = load_episodes("toy-reach-1", tmp_path)
    assert len(after) == 1
    np.testing.assert_array_equal(after[0]["actions"], before[0]["actions"])
    assert not list(tmp_path.glob(".staging-*"))


# -- refusing, errors, CLI --------------------------------------------------------------------


def test_existing_dataset_is_kept_unless_overwrite(tmp_path: Path) -> None:
    collect("toy-reach-0", episodes=2, data_dir=tmp_path, seed=1, progress=False)
    before = load_episodes("toy-reach-0", tmp_path)
    with pytest.raises(DatasetExistsError, match="--overwrite"):
        collect("toy-reach-0,toy-reach-1", episodes=3, data_dir=tmp_path, progress=False)
    assert not (tmp_path / "crlgym" / "toy-reach-1").exists()  # checked before any work
    code = main(["collect", "--tasks", "toy-reach-0", "--episodes", "3", "--data-dir",
                 str(tmp_path), "--no-progress"])  # fmt: skip
    assert code == 2
    np.testing.assert_array_equal(
        load_episodes("toy-reach-0", tmp_path)[0]["actions"], before[0]["actions"]
    )
    collect("toy-reach-0", episodes=3, data_dir=tmp_path, seed=2, overwrite=True, progress=False)
    info = dataset_info("toy-reach-0", tmp_path)
    assert info.episodes == 3 and info.collection["seed"] == 2
    assert not list(tmp_path.glob(".staging-*"))


def test_unknown_task_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    for tasks in ("toy-rech-0", "toy-reach-0,nope"):
        code = main(["collect", "--tasks", tasks, "--data-dir", str(data_dir), "--no-progress"])
        assert code == 2
        error = capsys.readouterr().err
        assert error.startswith("crl: error: unknown task") and "Traceback" not in error
    assert main(["collect", "--tasks", "toy-reach-0", "--episodes", "0", "--data-dir",
                 str(data_dir)]) == 2  # fmt: skip
    assert not data_dir.exists()


def test_missing_dataset_names_the_collect_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(DatasetNotFoundError, match="crl collect --tasks reach-v3"):
        load_task_dataset("reach", tmp_path)
    assert main(["data", "info", "reach", "--data-dir", str(tmp_path)]) == 2
    assert "no dataset crlgym/reach-v3/expert-v0" in capsys.readouterr().err


def test_require_datasets_names_every_missing_task_once(tmp_path: Path) -> None:
    from crlgym.errors import ConfigError

    require_datasets([], tmp_path)  # nothing to check
    with pytest.raises(ConfigError) as error:
        require_datasets(["toy-reach-0", "reach", "toy-reach-0"], tmp_path, episodes=200)
    message = str(error.value)
    assert "\n" not in message
    assert message == (
        f"no offline dataset for toy-reach-0, reach in {tmp_path}; record them with "
        f"'crl collect --tasks toy-reach-0,reach --episodes 200 --data-dir {tmp_path}'"
    )
    collect(["toy-reach-0"], episodes=2, data_dir=tmp_path, progress=False)
    require_datasets(["toy-reach-0"], tmp_path)
    with pytest.raises(ConfigError, match=r"for reach in .*'crl collect --tasks reach --data-dir"):
        require_datasets(["toy-reach-0", "reach"], tmp_path)


def test_dataset_ids() -> None:
    assert dataset_id("reach") == "crlgym/reach-v3/expert-v0"
    assert (
        dataset_id("cartpole-balance", "medium-replay")
        == "crlgym/cartpole-balance/medium-replay-v0"
    )
    with pytest.raises(crlgym.ConfigError):
        dataset_id("reach", "Expert v2")
    with pytest.raises(crlgym.UnknownTaskError):
        dataset_id("reech")


def test_data_info_and_list_print_the_numbers(
    toy_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = dataset_info("toy-mirror-1", toy_data)
    assert main(["data", "info", "toy-mirror-1", "--data-dir", str(toy_data)]) == 0
    output = capsys.readouterr().out
    for text in (
        "crlgym/toy-mirror-1/expert-v0",
        f"{info.episodes}",
        f"{info.steps}",
        f"{info.return_mean:.3f}",
        f"{info.return_std:.3f}",
        f"{info.success_rate:.3f}",
        "Box(2,) float32",
        "SeedSequence([seed",  # rich markup would have eaten the brackets
    ):
        assert text in output, text
    assert main(["data", "info", info.dataset_id, "--data-dir", str(toy_data)]) == 0
    assert f"{info.return_mean:.3f}" in capsys.readouterr().out
    assert main(["data", "list", "--data-dir", str(toy_data)]) == 0
    output = capsys.readouterr().out
    assert "toy-mirror-1" in output and "toy-reach-0" in output
    assert f"{info.return_mean:.1f}" in output


# -- loading and sampling ---------------------------------------------------------------------


def test_returns_to_go_by_hand(toy_data: Path) -> None:
    np.testing.assert_allclose(returns_to_go(np.array([1.0, 2.0, 3.0])), [6.0, 5.0, 3.0])
    np.testing.assert_allclose(returns_to_go(np.array([1.0, 2.0, 3.0]), 0.5), [2.75, 3.5, 3.0])
    episode = load_episodes("toy-reach-0", toy_data)[0]
    rewards, rtg = episode["rewards"], episode["returns_to_go"]
    assert rtg[0] == pytest.approx(rewards.sum()) and rtg[-1] == rewards[-1]
    np.testing.assert_allclose(rtg[:-1] - rtg[1:], rewards[:-1], atol=1e-12)
    np.testing.assert_array_equal(episode["timesteps"], np.arange(50))


def _toy_episodes() -> list[dict[str, np.ndarray]]:
    """Two hand-made episodes: lengths 3 and 8, observation = 10 * episode + step."""
    episodes = []
    for index, length in enumerate((3, 8)):
        steps = np.arange(length)
        rewards = steps + 1.0
        episodes.append(
            {
                "observations": (10.0 * index + np.arange(length + 1))[:, None].repeat(2, 1),
                "actions": (10.0 * index + steps)[:, None].astype(np.float32),
                "rewards": rewards,
                "returns_to_go": returns_to_go(rewards),
                "terminations": np.zeros(length, dtype=bool),
                "truncations": steps == length - 1,
                "success": steps >= 1,
            }
        )
    return episodes


def test_sample_segments_is_reproducible_and_pads_short_windows() -> None:
    episodes = _toy_episodes()
    first = sample_segments(episodes, 64, 5, 7)
    again = sample_segments(episodes, 64, 5, np.random.default_rng(7))
    other = sample_segments(episodes, 64, 5, 8)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["start"], other["start"])
    assert first["observations"].shape == (64, 5, 2) and first["actions"].shape == (64, 5, 1)
    lengths = np.array([3, 8])
    # Starts are uniform over all 11 steps: the 8-step episode is drawn about 8/11 of the time.
    assert 0.5 < np.mean(first["episode"] == 1) < 0.95
    for row in range(64):
        index, start = first["episode"][row], first["start"][row]
        n = min(5, lengths[index] - start)
        mask = first["mask"][row]
        np.testing.assert_array_equal(mask, [0.0] * (5 - n) + [1.0] * n)  # left padding
        real = slice(5 - n, 5)
        expected_steps = np.arange(start, start + n)
        np.testing.assert_array_equal(first["timesteps"][row, real], expected_steps)
        np.testing.assert_array_equal(
            first["observations"][row, real, 0], 10.0 * index + expected_steps
        )
        rtg = returns_to_go(episodes[index]["rewards"])[start : start + n]
        np.testing.assert_array_equal(first["returns_to_go"][row, real], rtg)
        np.testing.assert_array_equal(first["success"][row, real], expected_steps >= 1)
        assert not first["observations"][row, : 5 - n].any()
        assert not first["rewards"][row, : 5 - n].any()
    assert (first["mask"].sum(axis=1) < 5).any()  # some windows were short
    right = sample_segments(episodes, 64, 5, 7, pad="right")
    np.testing.assert_array_equal(right["mask"].sum(1), first["mask"].sum(1))
    assert (right["mask"][:, 0] == 1).all()


def test_sample_segments_from_a_minari_dataset(toy_data: Path) -> None:
    dataset = load_task_dataset("toy-reach-0", toy_data)
    batch = sample_segments(dataset, 8, 20, 0)
    episodes = load_episodes(dataset)
    np.testing.assert_array_equal(batch["actions"], sample_segments(episodes, 8, 20, 0)["actions"])
    row = int(np.argmax(batch["mask"].sum(1)))
    index, start = batch["episode"][row], batch["start"][row]
    n = int(batch["mask"][row].sum())
    np.testing.assert_array_equal(
        batch["actions"][row, 20 - n :], episodes[index]["actions"][start : start + n]
    )


# -- real domains (slow) ----------------------------------------------------------------------


@pytest.mark.slow
def test_metaworld_expert_dataset(tmp_path: Path) -> None:
    (info,) = collect("reach", episodes=2, data_dir=tmp_path, progress=False)
    assert info.dataset_id == "crlgym/reach-v3/expert-v0"
    assert info.episodes == 2 and info.steps == 400
    assert info.success_rate == 1.0
    assert info.collection["expert"] == "scripted"
    episodes = load_episodes("reach", tmp_path)
    assert episodes[0]["observations"].shape == (201, 39)
    assert episodes[0]["actions"].shape == (200, 4)
    env = load_task_dataset("reach", tmp_path).recover_environment()
    assert env.observation_space.shape == (39,)
    env.close()


@pytest.mark.slow
def test_dmc_dataset_trains_saves_and_reuses_a_sac_expert(tmp_path: Path) -> None:
    options = {"episodes": 2, "data_dir": tmp_path, "dmc_expert_steps": 2000, "progress": False}
    (info,) = collect("cartpole-balance", **options)
    weights = expert_weights_path(tmp_path, "cartpole-balance", 0, 2000)
    assert weights.is_file()
    assert info.episodes == 2 and info.steps == 2000
    assert info.success_rate is None  # DMControl has no success signal
    assert info.collection["expert"] == "sac" and not info.collection["expert_reused"]
    dataset = load_task_dataset("cartpole-balance", tmp_path)
    assert dataset.storage.metadata["ref_max_score"] > dataset.storage.metadata["ref_min_score"]
    attrs = list(dataset.storage.get_episode_metadata([0, 1]))
    assert all("normalized_score" in a for a in attrs)
    first = load_episodes(dataset)
    (again,) = collect("cartpole-balance", overwrite=True, **options)
    assert again.collection["expert_reused"]
    for old, new in zip(first, load_episodes("cartpole-balance", tmp_path), strict=True):
        np.testing.assert_array_equal(old["actions"], new["actions"])
