"""Task sequences: registry, custom lists, YAML files, shared spaces, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import crlgym
from crlgym import envs
from crlgym.envs.padding import METAWORLD_SLOT
from crlgym.envs.sequences import CW10, DMC6, DMC10, SEQUENCES

CW10_BRIEF = [
    "hammer",
    "push-wall",
    "faucet-close",
    "push-back",
    "stick-pull",
    "handle-press-side",
    "push",
    "shelf-place",
    "window-close",
    "peg-unplug-side",
]


def test_cw10_order_is_the_papers() -> None:
    assert [t.removesuffix("-v3") for t in envs.load_sequence("CW10").task_names] == CW10_BRIEF


def test_cw20_is_cw10_twice() -> None:
    assert envs.load_sequence("cw20").task_names == CW10 + CW10


def test_mt40_is_mt50_minus_cw10() -> None:
    mt40 = SEQUENCES["MT40"]
    assert len(mt40) == 40 and not set(mt40) & set(CW10)
    assert set(mt40) | set(CW10) == set(envs.METAWORLD_TASKS)


def test_l2m_dmc_lists() -> None:
    assert len(DMC10) == 10 and len(DMC6) == 6
    assert "walker-run" in DMC10 and "cheetah-run" in DMC6


def test_single_task_and_comma_lists() -> None:
    assert envs.load_sequence("hammer").task_names == ("hammer-v3",)
    custom = envs.load_sequence(" push , reach-v3 ,window-close")
    assert custom.task_names == ("push-v3", "reach-v3", "window-close-v3")
    assert envs.load_sequence(["toy-reach-0", "toy-reach-4"]).num_tasks == 2
    # A list longer than the OS allows a file name is still a list (MT40 written out).
    mt40 = envs.load_sequence("MT40").task_names
    assert envs.load_sequence(",".join(mt40)).task_names == mt40


def test_builds_envs_for_earlier_tasks() -> None:
    sequence = envs.load_sequence("toy-reach-0,toy-reach-4")
    earlier = sequence.make_env(0, seed=0)
    assert earlier.unwrapped.task_name == "toy-reach-0"


def test_yaml_round_trip(tmp_path: Path) -> None:
    original = envs.load_sequence("hammer,push-wall,toy-reach-1", steps_per_task=1000)
    path = tmp_path / "seq.yaml"
    original.save_yaml(path)
    loaded = envs.load_sequence(str(path))
    assert loaded.task_names == original.task_names
    assert [t.steps for t in loaded.tasks] == [1000, 1000, 1000]
    assert loaded.name == original.name


def test_yaml_budgets_and_repeats(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "steps_per_task: 500\nrepeats: 2\ntasks:\n  - hammer\n  - {task: push, steps: 70}\n"
    )
    sequence = envs.load_sequence(str(path))
    assert sequence.name == "mine"
    assert sequence.task_names == ("hammer-v3", "push-v3") * 2
    assert [t.steps for t in sequence.tasks] == [500, 70, 500, 70]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tasks:\n  - hammer\n  - hamer\n", r":3: unknown task 'hamer'.*hammer"),
        ("tasks:\n  - hammer\nsteps_per_task: -5\n", r":3: 'steps_per_task' must be a positive"),
        ("tasks:\n  - {task: push, steps: many}\n", r":2: 'steps' must be a positive integer"),
        ("tasks:\n  - hammer\nepisodes: 3\n", r":3: unknown field 'episodes'"),
        ("name: x\n", r":1: missing field 'tasks'"),
        ("tasks: []\n", r":1: 'tasks' must be a non-empty list"),
        ("tasks:\n  - hammer\n\t- push\n", r":3: not valid YAML \(found character '\\t'"),
        ("tasks:\n  - {name: push}\n", r":2: a task entry is a name or"),
    ],
)
def test_bad_yaml_names_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(crlgym.SequenceFileError, match=expected):
        envs.load_sequence(str(path))


def test_missing_yaml_file() -> None:
    with pytest.raises(crlgym.SequenceFileError, match="does not exist"):
        envs.load_sequence("no/such/file.yaml")


def test_unknown_names_list_the_closest() -> None:
    with pytest.raises(crlgym.UnknownSequenceError, match="CW10, CW20"):
        envs.load_sequence("CW11")
    with pytest.raises(crlgym.UnknownTaskError, match="push-wall-v3"):
        envs.load_sequence("hammer,push-wal")
    with pytest.raises(crlgym.UnknownTaskError, match="cheetah-run"):
        envs.make_env("cheeta-run")


def test_same_space_tasks_are_not_padded() -> None:
    sequence = envs.load_sequence("CW10")
    assert sequence.layout is None
    assert sequence.observation_space.shape == (39,)


MIXED = "hammer,cheetah-run,walker-walk,ball_in_cup-catch"


def test_mixed_sequence_shares_identical_spaces() -> None:
    sequence = envs.load_sequence(MIXED)
    assert sequence.layout is not None
    for index in range(sequence.num_tasks):
        env = sequence.make_env(index, seed=0)
        assert env.observation_space == sequence.observation_space
        assert env.action_space == sequence.action_space
        observation, _ = env.reset()
        for _ in range(3):
            observation, *_ = env.step(env.action_space.sample())
            assert observation in sequence.observation_space
        env.close()


def test_padded_layout_places_each_task_in_its_slots() -> None:
    sequence = envs.load_sequence(MIXED)
    layout = sequence.layout
    start, width = layout.slot(METAWORLD_SLOT)
    assert (start, width) == (0, 39)
    native = envs.make_env("cheetah-run", seed=1)
    padded = sequence.make_env(1, seed=1)
    raw_obs, _ = native.reset()
    padded_obs, _ = padded.reset()
    position_start, _ = layout.slot("position")
    velocity_start, _ = layout.slot("velocity")
    np.testing.assert_array_equal(padded_obs[position_start : position_start + 8], raw_obs[:8])
    np.testing.assert_array_equal(padded_obs[velocity_start : velocity_start + 9], raw_obs[8:])
    assert np.count_nonzero(padded_obs[:39]) == 0  # the Meta-World slot stays empty
    # Only the first 6 of the padded action dims drive cheetah; extra dims are ignored.
    action = np.linspace(-1, 1, layout.action_dim).astype(np.float32)
    native_next = native.step(action[:6])[0]
    padded_next = padded.step(action)[0]
    np.testing.assert_array_equal(padded_next[position_start : position_start + 8], native_next[:8])


def test_l2m_pretraining_and_finetuning_sets_share_one_layout() -> None:
    pretrain = envs.load_sequence(list(SEQUENCES["MT40"] + DMC10))
    finetune = envs.load_sequence(list(CW10 + DMC6))
    assert pretrain.layout == finetune.layout
    assert pretrain.action_space.shape == (6,)


def test_padding_never_refuses_mismatched_spaces() -> None:
    with pytest.raises(crlgym.SpaceMismatchError, match=r"cheetah-run: observation \(17,\)"):
        envs.load_sequence("cheetah-run,walker-walk", envs.EnvConfig(padding="never"))


def test_padding_always_pads_even_identical_spaces() -> None:
    sequence = envs.load_sequence("hammer,push", envs.EnvConfig(padding="always"))
    assert sequence.layout is not None
    assert sequence.observation_space.shape[0] > 39


def test_one_hot_task_id_is_off_by_default_and_appended_when_asked() -> None:
    assert envs.load_sequence("toy-reach-0,toy-reach-4").observation_space.shape == (2,)
    sequence = envs.load_sequence("toy-reach-0,toy-reach-4", envs.EnvConfig(one_hot_task_id=True))
    assert sequence.observation_space.shape == (4,)
    observation, _ = sequence.make_env(1, seed=0).reset()
    assert observation[2:].tolist() == [0.0, 1.0]
