"""The offline Decision Transformer through the continual runner (crl train --agent dt)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crlgym import envs
from crlgym.experiments.collect import collect
from crlgym.experiments.config import build_config
from crlgym.experiments.learners import sequence_episodes

pytestmark = pytest.mark.integration  # crl training runs

TASKS = "recall-d3,recall-d6"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    collect(TASKS.split(","), episodes=12, data_dir=folder, action_noise=0.0, noisy_share=0.0,
            progress=False)  # fmt: skip
    return folder


def crl_train(tmp_path: Path, data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [
        "train", "--agent", "dt", "--sequence", TASKS, "--steps-per-task", "6",
        "--eval-every", "3", "--eval-episodes", "2", "--eval-deterministic-episodes", "1",
        "--checkpoint-every", "3", "--context", "2", "--d-model", "16", "--layers", "1",
        "--heads", "2", "--dt-batch-size", "4", "--warmup", "2", "--videos", "false",
        "--threads", "1", "--progress", "false", "--data-dir", str(data_dir),
        "--runs-dir", str(tmp_path / "runs"), *extra,
    ]  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "crlgym.experiments.cli", *args], capture_output=True, text=True
    )


@pytest.mark.parametrize("memory", ["hcam", "window", "full", "lstm"])
def test_dt_runs_through_the_sequence_with_every_memory(
    tmp_path: Path, data_dir: Path, memory: str
) -> None:
    result = crl_train(tmp_path, data_dir, "--memory", memory)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "runs" / f"recall-d3+recall-d6-dt-{memory}-s0"
    results = json.loads((run_dir / "results.json").read_text())
    assert results["agent"] == "dt" and results["method"] == f"dt-{memory}"
    assert results["step_unit"] == "updates" and results["memory"] == memory
    assert results["eval_steps"] == [0, 3, 6, 9, 12] and results["task_ends"] == [6, 12]
    assert results["finished"] and results["parameters"] > 0
    scores = np.asarray(results["score"]["stochastic"])
    assert scores.shape == (5, 2) and ((scores >= 0) & (scores <= 1)).all()


def test_dt_options_reach_the_model_and_memory(data_dir: Path) -> None:
    config = build_config(
        {
            "agent": "dt",
            "memory": "window",
            "memory_options": {"window": 7},
            "dt_learning_rate": 0.01,
            "learning_rate": 0.5,
        }
    )
    assert config.dt.memory_options == {"window": 7}
    assert config.dt.learning_rate == 0.01 and config.sac.learning_rate == 0.5
    nested = build_config({"agent": "dt", "dt": {"memory": "window", "learning_rate": 0.01}})
    assert nested.dt.learning_rate == 0.01 and nested.name == "CW10-dt-window-s0"


def test_missing_dataset_names_the_collect_command(tmp_path: Path) -> None:
    result = crl_train(tmp_path, tmp_path / "empty")
    assert result.returncode == 2
    assert "crl collect --tasks recall-d3,recall-d6" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


def test_dt_refuses_continual_methods(tmp_path: Path, data_dir: Path) -> None:
    result = crl_train(tmp_path, data_dir, "--method", "ewc")
    assert result.returncode == 2 and "--method finetune" in result.stderr


def test_episodes_follow_the_sequence_layout(data_dir: Path) -> None:
    # Native observations, then the one-hot task id when the sequence appends it.
    plain = envs.load_sequence("recall-d3")
    episodes = sequence_episodes(plain, 0, data_dir)
    assert episodes[0]["observations"].shape[1] == 11
    with_id = envs.load_sequence("recall-d3,recall-d6", envs.EnvConfig(one_hot_task_id=True))
    tagged = sequence_episodes(with_id, 1, data_dir)
    assert tagged[0]["observations"].shape[1] == 13
    np.testing.assert_array_equal(tagged[0]["observations"][:, -2:], [[0, 1]] * 13)  # 5+6+1 steps
