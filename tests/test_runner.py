"""The continual runner: evaluation on every task, results, logs, videos, resume, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from crlgym.experiments.config import build_config
from crlgym.experiments.results import read
from crlgym.experiments.runner import Runner, prepare_run_dir, run_training

pytestmark = pytest.mark.integration  # crl training runs

TOY = "toy-reach-0,toy-reach-4"


def toy_config(tmp_path: Path, **overrides) -> dict:
    return {
        "sequence": TOY,
        "steps_per_task": 500,
        "eval_every": 250,
        "eval_episodes": 2,
        "checkpoint_every": 250,
        "runs_dir": str(tmp_path / "runs"),
        "videos_dir": str(tmp_path / "videos"),
        "videos": False,
        "threads": 1,
        "progress": False,
        "hidden_sizes": [32, 32],
        "random_steps": 100,
        "update_after": 50,
        "batch_size": 32,
        "buffer_size": 5_000,
        **overrides,
    }


def train(tmp_path: Path, **overrides) -> tuple[Path, dict]:
    return run_training(build_config(toy_config(tmp_path, **overrides)))


def test_every_task_is_evaluated_at_every_interval_and_task_end(tmp_path: Path) -> None:
    run_dir, results = train(tmp_path, steps_per_task=600, eval_every=250)
    assert results["eval_steps"] == [0, 250, 500, 600, 750, 1000, 1200]
    assert results["task_ends"] == [600, 1200]
    stochastic = np.asarray(results["score"]["stochastic"])
    assert stochastic.shape == (7, 2)
    assert np.asarray(results["score"]["deterministic"]).shape == (7, 2)
    assert results["finished"] and set(results["metrics"]) >= {"performance", "forgetting"}
    assert results["metrics"]["forward_transfer"] is None  # no reference runs: n/a, not 0
    # The typed record reproduces the runner's file byte for byte.
    record = read(run_dir / "results.json")
    assert json.dumps(record.to_json(), indent=1) == (run_dir / "results.json").read_text()
    assert record.to_json() == results and record.finished and record.evaluated_to_end
    lines = (run_dir / "eval.csv").read_text().splitlines()
    assert lines[0] == "step,task_index,task,mode,success,return"
    assert len(lines) == 1 + 7 * 2 * 2
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints/latest.pt").is_file()


def test_tensorboard_has_the_documented_keys(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = train(tmp_path)
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    expected = {
        "test/stochastic/0/toy-reach-0/success",
        "test/stochastic/1/toy-reach-4/return",
        "test/stochastic/average_success",
        "test/deterministic/0/toy-reach-0/success",
        "test/deterministic/average_success",
        "train/active_task",
        "train/actor_loss",
        "rollout/success_rate",
        "metrics/performance",
    }
    assert expected <= scalars
    active = [e.value for e in events.Scalars("train/active_task")]
    assert active[0] == 0 and active[-1] == 1
    assert "config/text_summary" in events.Tags()["tensors"]


def test_evaluation_does_not_disturb_training(tmp_path: Path) -> None:
    """Evaluating 5x more often must leave the trained agent bit-identical."""
    runners = []
    for name, every in (("often", 50), ("rarely", 250)):
        config = build_config(toy_config(tmp_path, eval_every=every, run_name=name))
        runner = Runner(config, tmp_path / name)  # seeds the process's generators
        runner.run()
        runners.append(runner)
    often, rarely = runners
    for mine, theirs in zip(
        often.agent.policy.parameters(), rarely.agent.policy.parameters(), strict=True
    ):
        assert torch.equal(mine, theirs)
    assert often.agent.replay_buffer.pos == rarely.agent.replay_buffer.pos


def test_same_seed_same_results_other_seed_differs(tmp_path: Path) -> None:
    _, first = train(tmp_path / "1")
    _, again = train(tmp_path / "2")
    _, other = train(tmp_path / "3", seed=1)
    assert first["score"] == again["score"]
    assert first["return"] == again["return"]
    assert first["return"] != other["return"]


def test_videos_of_seen_tasks_at_task_ends(tmp_path: Path) -> None:
    _, results = train(tmp_path, videos=True)
    videos = sorted(Path(p).relative_to(tmp_path / "videos").as_posix() for p in results["videos"])
    name = "toy-reach-0+toy-reach-4-finetune-s0"
    assert videos == [
        f"{name}/toy-reach-0/step_1000.mp4",
        f"{name}/toy-reach-0/step_500.mp4",
        f"{name}/toy-reach-4/step_1000.mp4",
    ]


def test_no_rendering_when_videos_are_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import crlgym.envs.sequences

    original = crlgym.envs.sequences.TaskSequence.make_env
    # Per env the run builds: (the render mode asked for, the sequence config's).
    render_modes: list[tuple[str | None, str | None]] = []

    def recording(self: crlgym.envs.sequences.TaskSequence, *args: Any, **kwargs: Any) -> Any:
        render_modes.append((kwargs.get("render_mode"), self.config.render_mode))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(crlgym.envs.sequences.TaskSequence, "make_env", recording)
    train(tmp_path, videos=False)
    assert len(render_modes) >= 2  # the evaluator alone builds one env per task
    assert render_modes == [(None, None)] * len(render_modes)
    assert not (tmp_path / "videos").exists()


def test_single_task_runs_serve_as_forward_transfer_references(tmp_path: Path) -> None:
    for task in TOY.split(","):
        _, single = train(tmp_path, sequence=task)
        assert single["single_task_auc"] is not None
    for name, text in (("broken", "{"), ("not-a-record", "[1, 2]")):  # skipped, not fatal
        (tmp_path / "runs" / name).mkdir()
        (tmp_path / "runs" / name / "results.json").write_text(text)
    _, results = train(tmp_path)
    assert all(value is not None for value in results["reference_auc"])
    assert results["metrics"]["forward_transfer"] is not None


CLI = [sys.executable, "-m", "crlgym.experiments.cli"]


def cli_args(tmp_path: Path, **overrides) -> list[str]:
    args = []
    for key, value in toy_config(tmp_path, **overrides).items():
        flag = "--" + key.replace("_", "-")
        args += [flag, *map(str, value)] if isinstance(value, list) else [flag, str(value)]
    return args


def test_killed_run_resumes_to_the_same_results(tmp_path: Path) -> None:
    """SIGKILL mid-task, resume: the evaluation matrix equals an uninterrupted run's."""
    # The kill lands after the first checkpoint (step 250, mid-task 0): 750 steps before the end.
    overrides = {"steps_per_task": 500, "checkpoint_every": 250, "eval_every": 250}
    _, uninterrupted = train(tmp_path / "ref", **overrides)

    args = cli_args(tmp_path / "killed", **overrides)
    run_dir = tmp_path / "killed" / "runs" / "toy-reach-0+toy-reach-4-finetune-s0"
    process = subprocess.Popen(
        [*CLI, "train", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 300
    assert process.stderr is not None
    while not (run_dir / "checkpoints" / "latest.pt").exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    partial = read(run_dir / "results.json", partial=True)
    assert not partial.finished and len(partial.task_ends) < len(partial.tasks)

    resumed = subprocess.run(
        [*CLI, "train", "--resume", str(run_dir)], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads((run_dir / "results.json").read_text())
    assert final["eval_steps"] == uninterrupted["eval_steps"]
    assert final["score"] == uninterrupted["score"]
    assert final["return"] == uninterrupted["return"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "ewk"], "unknown method 'ewk'"),
        (["--steps-per-task", "0"], "steps_per_task must be positive"),
        (["--steps-per-task", "120"], "multiple of update_every"),
        (["--sequence", "toy-reach-9"], "unknown sequence or task"),
        (["--method-option", "coef=3"], "method finetune has no option coef"),
    ],
)
def test_bad_options_give_one_message(tmp_path: Path, extra: list[str], message: str) -> None:
    result = subprocess.run(
        [*CLI, "train", *cli_args(tmp_path), *extra], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing written for a mistake


def test_existing_run_is_never_overwritten_without_asking(tmp_path: Path) -> None:
    run_dir, _ = train(tmp_path)
    before = (run_dir / "results.json").read_bytes()
    result = subprocess.run([*CLI, "train", *cli_args(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (run_dir / "results.json").read_bytes() == before


def test_resume_errors(tmp_path: Path) -> None:
    not_a_run = tmp_path / "nothing"
    not_a_run.mkdir()
    result = subprocess.run(
        [*CLI, "train", "--resume", str(not_a_run)], capture_output=True, text=True
    )
    assert result.returncode == 2 and "not a crlgym run directory" in result.stderr

    config = build_config(toy_config(tmp_path))
    run_dir = prepare_run_dir(config, resume=False, overwrite=False)
    config.save_yaml(run_dir / "config.yaml")
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "latest.pt").write_bytes(b"not a checkpoint")
    result = subprocess.run(
        [*CLI, "train", "--resume", str(run_dir)], capture_output=True, text=True
    )
    assert result.returncode == 2 and "corrupt" in result.stderr
    assert "Traceback" not in result.stderr
    assert (run_dir / "checkpoints" / "latest.pt").read_bytes() == b"not a checkpoint"


def test_eval_command_evaluates_the_checkpoint(tmp_path: Path) -> None:
    run_dir, _ = train(tmp_path)
    result = subprocess.run(
        [*CLI, "eval", str(run_dir), "--episodes", "2"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "toy-reach-4" in result.stdout and "average success" in result.stdout
