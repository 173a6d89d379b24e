"""User mistakes end in one line that names the fix, a non-zero exit, no traceback, and every
file already on disk byte-identical (a canary tree around and inside the runs directory).

The cases call the CLI's ``main()`` in the test process (fast); one trained toy run (a few
seconds) serves the cases that need a real run and checkpoint.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from crlgym.experiments import runner as runner_module
from crlgym.experiments.cli import main

#: A tiny toy run (seconds): two checkpoints (step 100 inside the task, step 200 at its end).
TINY = [
    "--sequence", "toy-reach-0", "--steps-per-task", "200", "--eval-every", "100",
    "--eval-episodes", "1", "--checkpoint-every", "100", "--hidden-sizes", "16", "16",
    "--random-steps", "50", "--update-after", "50", "--batch-size", "16",
    "--buffer-size", "1000", "--videos", "false", "--progress", "false", "--threads", "1",
]  # fmt: skip


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``root``."""
    return {
        str(path.relative_to(root)): (path.read_bytes() if path.is_file() else None)
        for path in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run, trained once for the module (copied into each canary tree)."""
    root = tmp_path_factory.mktemp("trained")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["train", *TINY, "--run-name", "done"]) == 0
    finally:
        os.chdir(cwd)
    return root / "runs" / "done"


@pytest.fixture
def canary(tmp_path: Path, trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory with files around and inside ``runs/`` (a finished run, a folder
    that is not a run, loose files); asserts after the test that none of them changed."""
    (tmp_path / "notes.txt").write_text("the user's own file next to runs/\n")
    (tmp_path / "a-file").write_text("not a directory\n")
    shutil.copytree(trained_run, tmp_path / "runs" / "done")
    (tmp_path / "runs" / "keep.txt").write_text("a file inside runs/\n")
    (tmp_path / "runs" / "not-a-run").mkdir()
    (tmp_path / "runs" / "not-a-run" / "data.csv").write_text("1,2,3\n")
    (tmp_path / "videos" / "done").mkdir(parents=True)
    (tmp_path / "videos" / "done" / "clip.mp4").write_bytes(b"\x00video")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    yield tmp_path
    after = snapshot(tmp_path)
    changed = [name for name, data in before.items() if after.get(name, b"gone") != data]
    assert not changed, f"changed or removed: {changed}"


def crl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Exit status and stderr of ``crl argv`` run in this process."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's errors
        code = int(exit_.code or 0)
    return code, capsys.readouterr().err


def assert_one_line(code: int, error: str, *fragments: str) -> None:
    assert code != 0
    assert "Traceback" not in error
    assert error.strip().count("\n") == 0, error
    for fragment in fragments:
        assert fragment in error, error


def _write(path: str, text: str) -> str:
    Path(path).write_text(text)
    return path


# (id, arguments of crl, what the one line must say); run in the canary directory.
MISTAKES: list[tuple[str, Callable[[], list[str]], tuple[str, ...]]] = [
    ("run-name-dot", lambda: ["train", *TINY, "--run-name", ".", "--overwrite"],
     ("not a plain name", "--run-name")),
    ("run-name-dotdot", lambda: ["train", *TINY, "--run-name", "..", "--overwrite"],
     ("not a plain name", "--run-name")),
    ("run-name-path", lambda: ["train", *TINY, "--run-name", "../notes", "--overwrite"],
     ("not a plain name",)),
    ("run-name-empty", lambda: ["train", *TINY, "--run-name", ""], ("not a plain name",)),
    ("overwrite-not-a-run", lambda: ["train", *TINY, "--run-name", "not-a-run", "--overwrite"],
     ("not a crlgym run", "will not delete it", "--run-name")),
    ("existing-run", lambda: ["train", *TINY, "--run-name", "done"],
     ("already exists", "--resume runs/done")),
    ("negative-seed", lambda: ["train", *TINY, "--seed", "-1"], ("seed must be zero or positive",)),
    ("config-directory", lambda: ["train", "--config", "runs"], ("is not a file", "YAML file")),
    ("config-missing", lambda: ["train", "--config", "nothing.yaml"], ("does not exist",)),
    ("config-binary", lambda: ["train", "--config", _bytes("bin.yaml", b"\xff\xfe\x00")],
     ("not a text file",)),
    ("config-wrong-type", lambda: ["train", "--config", _write("c.yaml", "seed: abc\n")],
     ("config option 'seed' must be an integer", "'abc'")),
    ("config-wrong-type-nested",
     lambda: ["train", "--config", _write("c.yaml", "sac:\n  batch_size: '12'\n")],
     ("'sac.batch_size' must be an integer",)),
    ("config-eval-every-string",
     lambda: ["train", "--config", _write("c.yaml", "eval_every: often\n")],
     ("'eval_every' must be an integer",)),
    ("runs-dir-is-a-file", lambda: ["train", *TINY, "--runs-dir", "a-file"],
     ("is a file, not a directory", "--runs-dir")),
    ("videos-dir-is-a-file",
     lambda: ["train", *TINY, "--videos", "true", "--videos-dir", "a-file/sub"],
     ("is a file, not a directory", "--videos-dir")),
    ("empty-task-name", lambda: ["train", *TINY, "--sequence", "toy-reach-0,,toy-reach-4"],
     ("empty task name", "remove the extra comma")),
    ("ewc-negative-coef", lambda: ["train", *TINY, "--method", "ewc", "--method-option",
                                   "coef=-5"], ("coef must be zero or positive",)),
    ("eval-episodes-huge", lambda: ["train", *TINY, "--eval-episodes", "1000000000"],
     ("above the limit of 1000",)),
    ("episode-length-zero", lambda: ["train", *TINY, "--episode-length", "0"],
     ("episode_length must be positive",)),
    ("missing-pretrained",
     lambda: ["train", *TINY, "--agent", "l2m", "--pretrained", "missing.pt"],
     ("no pretrained checkpoint at missing.pt", "crl pretrain")),
    ("eval-negative-episodes", lambda: ["eval", "runs/done", "--episodes", "-1"],
     ("--episodes must be between 1 and 1000",)),
    ("eval-not-a-run", lambda: ["eval", "runs/not-a-run"], ("not a crlgym run directory",)),
    ("resume-not-a-run", lambda: ["train", "--resume", "runs/not-a-run"],
     ("not a crlgym run directory",)),
    ("resume-finished", lambda: ["train", "--resume", "runs/done"], ("already finished",)),
]  # fmt: skip


def _bytes(path: str, data: bytes) -> str:
    Path(path).write_bytes(data)
    return path


@pytest.mark.parametrize(("argv", "fragments"), [m[1:] for m in MISTAKES],
                         ids=[m[0] for m in MISTAKES])  # fmt: skip
def test_mistake_is_one_line_and_changes_nothing(
    canary: Path,
    capsys: pytest.CaptureFixture[str],
    argv: Callable[[], list[str]],
    fragments: tuple[str, ...],
) -> None:
    code, error = crl(capsys, *argv())
    assert_one_line(code, error, *fragments)
    # nothing was created for the refused run either
    assert sorted(p.name for p in (canary / "runs").iterdir()) == ["done", "keep.txt", "not-a-run"]


def test_corrected_command_after_a_mistake_is_not_refused(
    canary: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, error = crl(capsys, "train", *TINY, "--run-name", "fix", "--episode-length", "0")
    assert_one_line(code, error, "episode_length must be positive")
    assert main(["train", *TINY, "--run-name", "fix", "--episode-length", "50"]) == 0


def test_runs_directory_without_write_permission(
    canary: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Path.touch

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "touch", refuse)  # as root, chmod would not stop writing
    code, error = crl(capsys, "train", *TINY, "--run-name", "new")
    monkeypatch.setattr(Path, "touch", original)
    assert_one_line(code, error, "cannot write the run directory", "writable --runs-dir")
    assert not (canary / "runs" / "new").exists()


def test_an_unreadable_config_file(
    canary: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = canary / "private.yaml"
    path.write_text("seed: 1\n")
    path.chmod(0)
    original = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == "private.yaml":  # as root, mode 000 would not stop reading
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)
    code, error = crl(capsys, "train", "--config", str(path))
    assert_one_line(code, error, "cannot read config file", "check its permissions")


def test_checkpoint_without_the_expected_keys(
    canary: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = canary / "runs" / "keys"
    shutil.copytree(canary / "runs" / "done", run)
    (run / "config.yaml").write_text(
        (run / "config.yaml").read_text().replace("run_name: done", "run_name: keys")
    )
    for name in ("latest.pt", "previous_latest.pt"):
        torch.save({"format_version": 1}, run / "checkpoints" / name)
    before = snapshot(run)
    for argv in (["eval", str(run)], ["train", "--resume", str(run)]):
        code, error = crl(capsys, *argv)
        assert_one_line(code, error, "not a run checkpoint", "another --run-name")
        assert "--overwrite" not in error
    assert snapshot(run) == before


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(
    canary: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = canary / "runs" / "corrupt"
    shutil.copytree(canary / "runs" / "done", run)
    (run / "config.yaml").write_text(
        (run / "config.yaml").read_text().replace("run_name: done", "run_name: corrupt")
    )
    (run / "checkpoints" / "latest.pt").write_bytes(b"half a checkpoint")
    before = snapshot(run)
    code, error = crl(capsys, "eval", str(run), "--episodes", "1")
    assert code == 0
    assert error.count("\n") == 1 and "warning" in error and "previous checkpoint" in error
    assert snapshot(run) == before  # crl eval writes nothing into the run
    (run / "checkpoints" / "previous_latest.pt").write_bytes(b"also broken")
    code, error = crl(capsys, "train", "--resume", str(run))
    assert_one_line(code, error, "corrupt", "no earlier checkpoint is usable")
    assert "--overwrite" not in error
    assert (run / "checkpoints" / "latest.pt").read_bytes() == b"half a checkpoint"


def test_eval_writes_nothing_into_the_run(canary: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = crl(capsys, "eval", "runs/done", "--episodes", "1")
    assert code == 0  # the canary asserts that runs/done is byte-identical (no tb events)


def test_ctrl_c_prints_the_resume_command(
    canary: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: runner_module.Runner) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_module.Runner, "run", interrupted)
    code, error = crl(capsys, "train", *TINY, "--run-name", "stopped")
    assert code == 130
    assert "Traceback" not in error and error.strip().count("\n") == 0, error
    assert "crl train --resume runs/stopped" in error


def test_overwrite_replaces_only_the_run_it_names(
    canary: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(canary / "runs" / "done", canary / "runs" / "again")
    config = canary / "runs" / "again" / "config.yaml"
    config.write_text(config.read_text().replace("run_name: done", "run_name: again"))
    (canary / "runs" / "again" / "stale.txt").write_text("from the replaced run")
    assert main(["train", *TINY, "--run-name", "again", "--overwrite"]) == 0
    assert not (canary / "runs" / "again" / "stale.txt").exists()


@pytest.mark.integration  # a real SIGINT to a crl subprocess
def test_real_ctrl_c_is_one_line_and_the_run_resumes(tmp_path: Path) -> None:
    argv = [a if a != "200" else "4000" for a in TINY] + ["--run-name", "sig"]
    command = [sys.executable, "-m", "crlgym.experiments.cli", "train", *argv]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # A shell that starts a job in the background (CI may) makes it ignore SIGINT, and
        # Python then installs no KeyboardInterrupt handler: give the child the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    latest = tmp_path / "runs" / "sig" / "checkpoints" / "latest.pt"
    deadline = time.time() + 120
    while not latest.exists():
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, error = process.communicate(timeout=60)
    assert process.returncode == 130, error
    assert "Traceback" not in error
    assert error.strip().splitlines()[-1] == "crl: interrupted; continue the run with: " + (
        "crl train --resume runs/sig"
    )
    assert len(error.strip().splitlines()) == 1, error
