"""The `crl` command line: listings, the demo, and errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from crlgym.experiments.cli import main


def run_crl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crlgym.experiments.cli", *args], capture_output=True, text=True
    )


def test_list_shows_sequences_and_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    output = capsys.readouterr().out
    for name in ("CW10", "CW20", "MT40", "DMC10", "DMC6", "hammer-v3", "cheetah-run"):
        assert name in output


def test_unknown_task_is_one_clear_message_and_exit_2() -> None:
    result = run_crl("demo", "--tasks", "hamer")
    assert result.returncode == 2
    assert "unknown task 'hamer'" in result.stderr and "hammer-v3" in result.stderr
    assert "Traceback" not in result.stderr


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
    assert "1.00" in result.stdout  # the expert solves reach in both episodes
