"""The `crl` command line: listings, the demo, errors without tracebacks, and the options
and YAML keys of ``crl train`` (recorded before the CLI rework; every one must keep working)."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from crlgym.errors import ConfigError
from crlgym.experiments.cli import build_parser, config_from_args, main
from crlgym.experiments.config import (
    OPTION_GROUPS,
    QUICKSTART,
    SECTIONS,
    TrainConfig,
    build_config,
    config_options,
    field_docs,
)
from tests.helpers import table_rows


def run_crl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crlgym.experiments.cli", *args], capture_output=True, text=True
    )


def test_list_shows_sequences_and_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    output = capsys.readouterr().out
    for name in ("CW10", "CW20", "MT40", "DMC10", "DMC6", "hammer-v3", "cheetah-run"):
        assert name in output


@pytest.mark.integration  # runs crl in a subprocess
@pytest.mark.integration  # runs crl in a subprocess
def test_unknown_task_is_one_clear_message_and_exit_2() -> None:
    result = run_crl("demo", "--tasks", "hamer")
    assert result.returncode == 2
    assert "unknown task 'hamer'" in result.stderr and "hammer-v3" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.integration  # runs crl demo in a subprocess
@pytest.mark.integration  # runs crl in a subprocess
def test_demo_records_a_video_and_reports_success(tmp_path: Path) -> None:
    result = run_crl(
        "demo", "--tasks", "reach", "--episodes", "2", "--size", "64",
        "--video-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    video = tmp_path / "reach-v3" / "expert_episode_0.mp4"
    assert video.stat().st_size > 1000
    import imageio.v2 as imageio

    reader = imageio.get_reader(video)
    assert reader.get_meta_data()["fps"] == pytest.approx(80)  # Meta-World: dt = 12.5 ms
    assert reader.count_frames() == 200
    (row,) = table_rows(result.stdout)  # one row per task: task, success, mean return, video
    assert row["task"] == "reach-v3"
    assert float(row["success"]) == 1.0, result.stdout  # the expert solves both episodes


# --- crl train: today's options and YAML keys -----------------------------------------------

#: Every config option of `crl train` as it was before the CLI rework, recorded from the parser
#: then: the option, the arguments after it (a few need a companion option to be valid), and
#: {field (section.name): (its default, the value these arguments set)}.
TRAIN_OPTIONS: list[tuple[str, list[str], dict[str, tuple[Any, Any]]]] = [
    ("--sequence", ["CW20"], {"sequence": ("CW10", "CW20")}),
    ("--agent", ["dt"], {"agent": ("sac", "dt")}),
    ("--data-dir", ["data/other"], {"data_dir": ("data/datasets", "data/other")}),
    ("--method", ["l2"], {"method": ("finetune", "l2")}),
    ("--steps-per-task", ["2000000"], {"steps_per_task": (1000000, 2000000)}),
    ("--seed", ["3"], {"seed": (0, 3)}),
    ("--task-id-input", ["true"], {"task_id_input": (None, True)}),
    ("--episode-length", ["100"], {"episode_length": (None, 100)}),
    ("--eval-every", ["40000"], {"eval_every": (20000, 40000)}),
    ("--eval-episodes", ["20"], {"eval_episodes": (10, 20)}),
    ("--eval-deterministic-episodes", ["2"], {"eval_deterministic_episodes": (1, 2)}),
    ("--videos", ["false"], {"videos": (True, False)}),
    ("--video-every", ["100"], {"video_every": (None, 100)}),
    ("--video-size", ["512"], {"video_size": (256, 512)}),
    ("--checkpoint-every", ["200000"], {"checkpoint_every": (100000, 200000)}),
    ("--run-name", ["my-run"], {"run_name": (None, "my-run")}),
    ("--runs-dir", ["runs/other"], {"runs_dir": ("runs", "runs/other")}),
    ("--videos-dir", ["videos/other"], {"videos_dir": ("videos", "videos/other")}),
    ("--threads", ["4"], {"threads": (2, 4)}),
    ("--progress", ["false"], {"progress": (True, False)}),
    (
        "--method-option",
        ["coef=2.5", "--method-option", "mode=[a, b]"],
        {"method_options": ({}, {"coef": 2.5, "mode": ["a", "b"]})},
    ),
    ("--hidden-sizes", ["32", "64"], {"sac.hidden_sizes": ((256, 256, 256, 256), (32, 64))}),
    ("--layer-norm-first", ["false"], {"sac.layer_norm_first": (True, False)}),
    ("--multi-head", ["false"], {"sac.multi_head": (True, False)}),
    ("--per-task-alpha", ["false"], {"sac.per_task_alpha": (True, False)}),
    ("--learning-rate", ["0.002"], {"sac.learning_rate": (0.001, 0.002)}),
    ("--batch-size", ["256"], {"sac.batch_size": (128, 256)}),
    ("--gamma", ["0.9"], {"sac.gamma": (0.99, 0.9)}),
    ("--polyak", ["0.9"], {"sac.polyak": (0.995, 0.9)}),
    ("--buffer-size", ["2000000"], {"sac.buffer_size": (1000000, 2000000)}),
    ("--random-steps", ["20000"], {"sac.random_steps": (10000, 20000)}),
    ("--update-after", ["2000"], {"sac.update_after": (1000, 2000)}),
    ("--update-every", ["100"], {"sac.update_every": (50, 100)}),
    ("--gradient-steps", ["100"], {"sac.gradient_steps": (50, 100)}),
    ("--initial-alpha", ["2.0"], {"sac.initial_alpha": (1.0, 2.0)}),
    ("--reset-buffer", ["false"], {"sac.reset_buffer": (True, False)}),
    ("--reset-optimizer", ["false"], {"sac.reset_optimizer": (True, False)}),
    ("--reset-critic", ["true"], {"sac.reset_critic": (False, True)}),
    ("--reset-actor", ["true"], {"sac.reset_actor": (False, True)}),
    ("--replay-ratio", ["adaptive"], {"plasticity.replay_ratio": ("fixed", "adaptive")}),
    ("--rr-low", ["1.0"], {"plasticity.rr_low": (0.5, 1.0)}),
    ("--rr-high", ["4.0"], {"plasticity.rr_high": (2.0, 4.0)}),
    ("--rr-check-every", ["100000"], {"plasticity.rr_check_every": (50000, 100000)}),
    ("--rr-tolerance", ["0.5"], {"plasticity.rr_tolerance": (0.001, 0.5)}),
    ("--rr-restart-each-task", ["false"], {"plasticity.rr_restart_each_task": (True, False)}),
    (
        "--reset",
        ["redo", "--reset-every", "1000"],
        {"plasticity.reset": ("none", "redo"), "plasticity.reset_every": (None, 1000)},
    ),
    (
        "--reset-every",
        ["1000", "--reset", "full"],
        {"plasticity.reset": ("none", "full"), "plasticity.reset_every": (None, 1000)},
    ),
    (
        "--reset-at-task-start",
        ["true", "--reset", "shrink-perturb"],
        {
            "plasticity.reset": ("none", "shrink-perturb"),
            "plasticity.reset_at_task_start": (False, True),
        },
    ),
    ("--reset-networks", ["actor"], {"plasticity.reset_networks": ("both", "actor")}),
    ("--reset-last-layers", ["2"], {"plasticity.reset_last_layers": (1, 2)}),
    ("--shrink", ["0.8"], {"plasticity.shrink": (0.4, 0.8)}),
    ("--perturb", ["0.2"], {"plasticity.perturb": (0.1, 0.2)}),
    ("--redo-tau", ["0.05"], {"plasticity.redo_tau": (0.025, 0.05)}),
    ("--reset-clear-buffer", ["true"], {"plasticity.reset_clear_buffer": (False, True)}),
    ("--metrics-every", ["20000"], {"plasticity.metrics_every": (10000, 20000)}),
    ("--dormant-tau", ["0.05"], {"plasticity.dormant_tau": (0.025, 0.05)}),
    ("--probe-batch-size", ["512"], {"plasticity.probe_batch_size": (256, 512)}),
    ("--d-model", ["128"], {"dt.d_model": (64, 128)}),
    ("--layers", ["4"], {"dt.layers": (2, 4)}),
    ("--heads", ["8"], {"dt.heads": (4, 8)}),
    ("--context", ["32"], {"dt.context": (16, 32)}),
    ("--memory", ["window"], {"dt.memory": ("hcam", "window")}),
    ("--action-bins", ["128"], {"dt.action_bins": (64, 128)}),
    ("--reward-tokens", ["true"], {"dt.reward_tokens": (False, True)}),
    ("--reward-scale", ["2.0"], {"dt.reward_scale": (1.0, 2.0)}),
    ("--dt-learning-rate", ["0.0002"], {"dt.learning_rate": (0.0001, 0.0002)}),
    ("--weight-decay", ["0.0002"], {"dt.weight_decay": (0.0001, 0.0002)}),
    ("--dt-batch-size", ["32"], {"dt.batch_size": (16, 32)}),
    ("--warmup", ["2000"], {"dt.warmup": (1000, 2000)}),
    ("--grad-clip", ["0.5"], {"dt.grad_clip": (0.25, 0.5)}),
    ("--target-return", ["100"], {"dt.target_return": (None, 100.0)}),
    ("--dropout", ["0.5"], {"dt.dropout": (0.0, 0.5)}),
    ("--max-timestep", ["2048"], {"dt.max_timestep": (1024, 2048)}),
    ("--dt-reset-optimizer", ["false"], {"dt.reset_optimizer": (True, False)}),
    (
        "--segment-sampling",
        ["random", "--memory", "none"],
        {"dt.memory": ("hcam", "none"), "dt.segment_sampling": ("sequential", "random")},
    ),
    (
        "--memory-option",
        ["chunk_size=8", "--memory-option", "top_k=2"],
        {"dt.memory_options": ({}, {"chunk_size": 8, "top_k": 2})},
    ),
    ("--pretrained", ["m.pt"], {"l2m.pretrained": ("", "m.pt")}),
    ("--modulator", ["ia3"], {"l2m.modulator": ("lora", "ia3")}),
    ("--l2m-mode", ["oracle"], {"l2m.l2m_mode": ("l2m", "oracle")}),
    ("--pool-size", ["60"], {"l2m.pool_size": (30, 60)}),
    ("--pool-top-k", ["2"], {"l2m.pool_top_k": (1, 2)}),
    ("--pretrain-eval-tasks", ["3"], {"l2m.pretrain_eval_tasks": (0, 3)}),
    ("--l2m-learning-rate", ["0.002"], {"l2m.l2m_learning_rate": (0.001, 0.002)}),
    ("--l2m-batch-size", ["32"], {"l2m.l2m_batch_size": (16, 32)}),
    ("--l2m-warmup", ["200"], {"l2m.l2m_warmup": (100, 200)}),
    ("--ewc-coef", ["20000.0"], {"l2m.ewc_coef": (10000.0, 20000.0)}),
    ("--ewc-fisher-batches", ["40"], {"l2m.ewc_fisher_batches": (20, 40)}),
    ("--prompt-pool-size", ["200"], {"l2m.prompt_pool_size": (100, 200)}),
    ("--prompt-length", ["10"], {"l2m.prompt_length": (5, 10)}),
    ("--prompt-top-k", ["4"], {"l2m.prompt_top_k": (5, 4)}),
]

#: Flat YAML keys that are not the field's own name (DT's names that SAC's already use).
FLAT_YAML_KEYS = {
    "dt.learning_rate": "dt_learning_rate",
    "dt.batch_size": "dt_batch_size",
    "dt.reset_optimizer": "dt_reset_optimizer",
}

#: The other commands' options and positionals (destinations for positionals) with defaults.
OTHER_COMMANDS: dict[str, list[tuple[str, Any]]] = {
    "list": [("what", "all")],
    "demo": [("--tasks", ["hammer", "push-wall", "faucet-close"]), ("--episodes", 5),
             ("--seed", 0), ("--size", 256), ("--video-dir", "videos/demo")],
    "train": [("--config", None), ("--resume", None), ("--overwrite", False)],
    "eval": [("run_dir", None), ("--episodes", None)],
    "report": [("run_dirs", None), ("--out", None)],
    "collect": [("--tasks", None), ("--episodes", 100), ("--noise", 0.1), ("--noisy-share", 0.2),
                ("--noisy-noise", 0.5), ("--dmc-expert-steps", 100000), ("--episode-length", None),
                ("--kind", "expert"), ("--data-dir", "data/datasets"), ("--seed", 0),
                ("--overwrite", False), ("--no-progress", False)],
    "data info": [("name", None), ("--data-dir", "data/datasets")],
    "data list": [("--data-dir", "data/datasets")],
    "pretrain": [("--data", None), ("--model", "small"), ("--updates", 10000), ("--out", None),
                 ("--data-dir", "data/datasets"), ("--eval-episodes", 5), ("--batch-size", None),
                 ("--learning-rate", None), ("--checkpoint-every", 0), ("--seed", 0),
                 ("--threads", 2)],
}  # fmt: skip

GROUP_OF_SECTION = {
    "sac": "SAC",
    "plasticity": "plasticity",
    "dt": "Decision Transformer",
    "l2m": "L2M",
}


@cache
def parser() -> argparse.ArgumentParser:
    return build_parser()


def subcommand(path: str) -> argparse.ArgumentParser:
    command = parser()
    for name in path.split():
        (action,) = (a for a in command._actions if isinstance(a, argparse._SubParsersAction))
        command = action.choices[name]
    return command


def train_config(*argv: str) -> TrainConfig:
    return config_from_args(parser().parse_args(["train", *argv]))


def flat_fields(config: TrainConfig) -> dict[str, Any]:
    """``{"seed": 0, ..., "sac.learning_rate": 0.001, ...}``"""
    values: dict[str, Any] = {}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if item.name in SECTIONS:
            for sub in dataclasses.fields(value):
                values[f"{item.name}.{sub.name}"] = getattr(value, sub.name)
        else:
            values[item.name] = value
    return values


@pytest.mark.parametrize(("option", "argv", "changes"), TRAIN_OPTIONS, ids=lambda x: str(x))
def test_every_train_option_of_today_sets_its_field_with_its_default(
    option: str, argv: list[str], changes: dict[str, tuple[Any, Any]]
) -> None:
    defaults = flat_fields(TrainConfig())
    for path, (default, _) in changes.items():
        assert defaults[path] == default and type(defaults[path]) is type(default), path
    # --sequence CW10 (the default): no quick start, so only these arguments change anything
    config = flat_fields(train_config("--sequence", "CW10", option, *argv))
    changed = {path: value for path, value in config.items() if value != defaults[path]}
    assert changed == {path: value for path, (_, value) in changes.items()}
    for path, (_, value) in changes.items():
        assert type(config[path]) is type(value), path


def test_train_keeps_every_option_name_and_the_other_commands_theirs() -> None:
    train = {flag for action in subcommand("train")._actions for flag in action.option_strings}
    assert {option for option, _, _ in TRAIN_OPTIONS} <= train
    for path, options in OTHER_COMMANDS.items():
        actions = subcommand(path)._actions
        found = {a.option_strings[0] if a.option_strings else a.dest: a.default for a in actions}
        for name, default in options:
            assert name in found and found[name] == default, (path, name)


@pytest.mark.parametrize(("option", "argv", "changes"), TRAIN_OPTIONS, ids=lambda x: str(x))
def test_today_yaml_keys_flat_nested_or_kebab_give_the_same_config(
    tmp_path: Path, option: str, argv: list[str], changes: dict[str, tuple[Any, Any]]
) -> None:
    expected = train_config("--sequence", "CW10", option, *argv)
    flat: dict[str, Any] = {"sequence": "CW10"}
    nested: dict[str, Any] = {"sequence": "CW10"}
    for path, (_, value) in changes.items():
        value = list(value) if isinstance(value, tuple) else value
        section, _, name = path.rpartition(".")
        flat[FLAT_YAML_KEYS.get(path, name)] = value
        (nested.setdefault(section, {}) if section else nested)[name] = value
    kebab = {key.replace("_", "-"): value for key, value in flat.items()}
    for form, values in {"flat": flat, "nested": nested, "kebab": kebab}.items():
        path = tmp_path / f"{form}.yaml"
        path.write_text(yaml.safe_dump(values))
        assert train_config("--config", str(path)) == expected, form


def test_options_win_over_the_config_file_and_without_one_over_the_quick_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("sequence: CW20\nseed: 1\nsac:\n  learning_rate: 0.01\n  gamma: 0.9\n")
    config = train_config("--config", str(path), "--seed", "2", "--learning-rate", "0.02")
    assert (config.sequence, config.seed, config.sac.learning_rate) == ("CW20", 2, 0.02)
    assert config.sac.gamma == 0.9  # from the file
    assert train_config() == build_config(QUICKSTART)  # `crl train`: the quick start
    assert train_config("--seed", "3") == build_config({**QUICKSTART, "seed": 3})
    assert train_config("--sequence", "CW10") == TrainConfig()


def test_value_spellings_of_booleans_and_none() -> None:
    for text, value in [("false", False), ("No", False), ("0", False), ("off", False),
                        ("TRUE", True), ("yes", True), ("1", True), ("on", True)]:  # fmt: skip
        assert train_config("--sequence", "CW10", "--videos", text).videos is value
    config = train_config(
        "--sequence", "CW10", "--episode-length", "none", "--target-return", "None"
    )
    assert config.episode_length is None and config.dt.target_return is None
    assert train_config("--sequence", "CW10", "--task-id-input", "none").task_id_input is None


def test_repository_config_files_load(tmp_path: Path) -> None:
    configs = sorted(Path(__file__).parents[1].glob("configs/*.yaml"))
    assert configs
    for path in configs:
        assert isinstance(train_config("--config", str(path)), TrainConfig)


def test_train_help_groups_options_by_what_they_configure() -> None:
    groups = {
        group.title: [flag for action in group._group_actions for flag in action.option_strings]
        for group in subcommand("train")._action_groups
    }
    titles = [title.split(" (")[0] for title in groups if title not in ("options",
              "positional arguments")]  # fmt: skip
    assert titles == ["run", "methods", "SAC", "plasticity", "Decision Transformer", "L2M"]
    group_of = {flag: title for title, flags in groups.items() for flag in flags}
    for option, _, changes in TRAIN_OPTIONS:
        section = next(iter(changes)).rpartition(".")[0] if option != "--reset" else "plasticity"
        title = GROUP_OF_SECTION.get(section, "run")
        if option in ("--method", "--method-option"):
            title = "methods"
        assert group_of[option].startswith(title), option


def test_every_config_option_has_help() -> None:
    assert OPTION_GROUPS[0].title == "run"
    for option in config_options():
        cls = TrainConfig if option.section is None else SECTIONS[option.section]
        assert field_docs(cls)[option.name], option.flag
    for action in subcommand("train")._actions:
        assert action.help and not action.help.startswith(" ("), action.option_strings


@dataclasses.dataclass
class _Base:
    inherited: int = 1
    """From the base class."""


@dataclasses.dataclass
class _Documented(_Base):
    plain: str = "a"
    """Line one,
    line two."""
    explicit: int = dataclasses.field(default=2, metadata={"help": "From metadata."})
    """Shadowed by the metadata."""
    bare: float = 0.5


def test_field_docs_reads_docstrings_metadata_and_bases_and_never_fails() -> None:
    assert field_docs(_Documented) == {
        "inherited": "From the base class.",
        "plain": "Line one, line two.",
        "explicit": "From metadata.",
        "bare": "",
    }

    @dataclasses.dataclass
    class Local:  # no findable source: no help rather than an error
        value: int = 0
        """Unreachable."""

    assert field_docs(Local) == {"value": ""}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--sede", "3"], "unrecognized arguments: --sede 3 (did you mean --seed?)"),
        (["train", "--seed", "abc"], "argument --seed: invalid int value: 'abc'"),
        (["train", "--videos", "maybe"], "argument --videos: expected true/false, got 'maybe'"),
        (["train", "--method-option", "coef"], "expected KEY=VALUE, got 'coef'"),
        (["data", "info", "x", "--data-dirr", "d"], "(did you mean --data-dir?)"),
    ],
)
def test_command_line_mistakes_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error and "--help" in error, error


def test_unknown_yaml_key_names_the_closest_option(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("sequence: CW10\nlearning_rat: 0.1\n")
    with pytest.raises(
        ConfigError, match=r"unknown option 'learning_rat' \(did you mean 'learning_rate'"
    ):
        train_config("--config", str(path))
    path.write_text("sac:\n  gama: 0.9\n")
    with pytest.raises(ConfigError, match=r"unknown sac option 'gama' \(did you mean 'gamma'"):
        train_config("--config", str(path))
