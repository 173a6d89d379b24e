"""Train an agent through a task sequence, evaluating retention on every task.

`run_training` is the whole job of ``crl train``:

1. prepare ``runs/<name>/`` (refuse to touch an existing run unless resuming/overwriting);
2. build the sequence, the agent, the evaluator, TensorBoard logging;
3. for each task: ``on_task_start`` -> learn in chunks (checkpoints between chunks,
   evaluations every ``eval_every`` steps from a callback) -> ``on_task_end`` ->
   evaluation, metrics, videos, checkpoint;
4. write results.json, eval.csv and the PNG report.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from stable_baselines3.common.logger import Logger, configure

from crlgym.agents.methods import make_method
from crlgym.envs import EnvConfig, TaskSequence, load_sequence
from crlgym.errors import ConfigError, CrlgymError
from crlgym.experiments import metrics
from crlgym.experiments.aggregate import find_reference_aucs
from crlgym.experiments.checkpoint import (
    CheckpointError,
    global_rng_state,
    load_checkpoint,
    previous_path,
    require_keys,
    save_checkpoint,
    set_global_rng_state,
)
from crlgym.experiments.config import TrainConfig, build_config, check_run_name
from crlgym.experiments.evaluation import EvalHistory, Evaluator, TaskScores
from crlgym.experiments.learners import Learner, make_learner
from crlgym.experiments.progress import Progress
from crlgym.experiments.results import RESULTS_FILE, PolicyScores, RunResults
from crlgym.memory.datasets import require_datasets

CHECKPOINT = "checkpoints/latest.pt"


class RunDirectoryError(CrlgymError):
    """A run directory that cannot be used as asked."""


@dataclass
class RunState:
    """Where a run is; saved in checkpoints with the agent."""

    task_index: int = 0
    steps_in_task: int = 0
    episode_in_task: int = 0
    task_ends: list[int] = field(default_factory=list)
    history: EvalHistory = field(default_factory=EvalHistory)
    train_seconds: float = 0.0
    videos: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_index": self.task_index,
            "steps_in_task": self.steps_in_task,
            "episode_in_task": self.episode_in_task,
            "task_ends": self.task_ends,
            "history": self.history.to_dict(),
            "train_seconds": self.train_seconds,
            "videos": self.videos,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        return cls(**{**data, "history": EvalHistory.from_dict(data["history"])})


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a crlgym run: a real directory (not a link) whose config.yaml is a
    run configuration crl train wrote. Only such a directory is ever deleted (--overwrite)."""
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        load_run_config(path)
    except CrlgymError:
        return False
    return True


def check_run_paths(config: TrainConfig) -> None:
    """Refuse, before anything is written, paths a run could not use: a run name that is not
    a plain name, a runs or videos directory that is a file."""
    check_run_name(config.name)
    folders = [("--runs-dir", Path(config.runs_dir))]
    if config.videos:
        folders.append(("--videos-dir", Path(config.videos_dir)))
    for option, folder in folders:
        for parent in (folder, *folder.parents):
            if parent.exists() and not parent.is_dir():
                raise RunDirectoryError(
                    f"{option} {folder}: {parent} is a file, not a directory; "
                    f"give {option} a directory"
                )


def prepare_run_dir(config: TrainConfig, *, resume: bool, overwrite: bool) -> Path:
    check_run_paths(config)
    run_dir = Path(config.runs_dir) / config.name
    if resume:
        return run_dir
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        raise RunDirectoryError(
            f"{run_dir} exists and is not a run directory; give --run-name another name"
        )
    videos = Path(config.videos_dir) / config.name
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunDirectoryError(
                f"run directory {run_dir} already exists; use --resume {run_dir} to continue "
                "it, --overwrite to replace it, or --run-name to start another"
            )
        if not is_run_dir(run_dir):
            raise RunDirectoryError(
                f"{run_dir} is not a crlgym run (no config.yaml of crl train), so --overwrite "
                "will not delete it; give --run-name another name"
            )
        if videos.is_symlink() or (videos.exists() and not videos.is_dir()):
            raise RunDirectoryError(
                f"{videos} is not a videos directory, so --overwrite will not delete it; "
                "give --run-name another name"
            )
        try:
            shutil.rmtree(run_dir)
            if videos.is_dir():
                shutil.rmtree(videos)
        except OSError as error:
            raise RunDirectoryError(
                f"cannot remove the run {run_dir} to replace it ({error.strerror}); "
                "check its permissions or give --run-name another name"
            ) from None
    missing = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".crlgym-write-test"
        probe.touch()
        probe.unlink()
    except OSError as error:
        for folder in missing:  # leave no empty folder of ours behind
            try:
                folder.rmdir()
            except OSError:
                break
        raise RunDirectoryError(
            f"cannot write the run directory {run_dir} ({error.strerror}); give a writable "
            "--runs-dir"
        ) from None
    return run_dir


def load_run_config(run_dir: Path) -> TrainConfig:
    """The resolved config a run was started with (for --resume and crl eval)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise RunDirectoryError(
            f"{run_dir} is not a crlgym run directory (no config.yaml); give the folder that "
            "crl train printed"
        )
    try:
        return build_config(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, TypeError, AttributeError) as error:
        raise RunDirectoryError(f"{path} is corrupt ({error})") from None


class Runner:
    """Everything of one run; `run` trains it to the end."""

    def __init__(self, config: TrainConfig, run_dir: Path, *, tensorboard: bool = True) -> None:
        """``tensorboard=False``: no logging to disk (crl eval, or until `start_logging`)."""
        self.config = config
        self.run_dir = run_dir
        torch.set_num_threads(config.threads)
        env_config = EnvConfig(
            episode_length=config.episode_length,
            one_hot_task_id=config.uses_task_id,
            width=config.video_size,
            height=config.video_size,
        )
        self.sequence: TaskSequence = load_sequence(
            config.sequence, env_config, steps_per_task=config.steps_per_task
        )
        self.state = RunState()
        self._reference_auc: list[float | None] | None = None
        self.evaluator = Evaluator(
            self.sequence, config.eval_episodes, config.eval_deterministic_episodes, config.seed
        )
        _seed_everything(config.seed)
        self.learner: Learner = make_learner(config, self.sequence)
        self.logger: Logger = Logger(folder=None, output_formats=[])
        if tensorboard:
            self.start_logging()
        else:
            self.learner.set_logger(self.logger)
        self.progress = Progress(self.sequence, enabled=config.progress)

    def start_logging(self) -> None:
        """TensorBoard logging into the run directory (which this creates)."""
        self.logger = configure(str(self.run_dir / "tb"), ["tensorboard"])
        self.learner.set_logger(self.logger)

    # -- pieces ---------------------------------------------------------------------------
    @property
    def agent(self) -> Any:
        """The learner's agent (ContinualSAC, DecisionTransformerAgent)."""
        learner: Any = self.learner  # every learner has one; the Learner protocol omits it
        return learner.agent

    @property
    def policy(self) -> Any:
        """The acting policy evaluations use."""
        return self.learner.policy()

    def task_context(self, task_index: int) -> AbstractContextManager:
        """How the agent wants to act on task ``task_index`` (e.g. PackNet's masks)."""
        return self.learner.task_context(task_index)

    def evaluate(self) -> list[TaskScores]:
        step = self.learner.num_timesteps
        scores, seconds = self.evaluator.evaluate(self.policy, self.task_context)
        self.state.history.append(step, scores, seconds)
        names = self.sequence.task_names
        for task_index, (task, score) in enumerate(zip(names, scores, strict=True)):
            for mode in ("stochastic", "deterministic"):
                prefix = f"test/{mode}/{task_index}/{task}"
                self.logger.record(f"{prefix}/success", getattr(score, mode))
                self.logger.record(f"{prefix}/return", getattr(score, f"{mode}_return"))
        for mode in ("stochastic", "deterministic"):
            average = float(np.mean([getattr(s, mode) for s in scores]))
            self.logger.record(f"test/{mode}/average_success", average)
        self.logger.dump(step)
        self.progress.evaluation(step, [s.stochastic for s in scores])
        self.write_results()
        return scores

    def record_videos(self) -> None:
        step = self.learner.num_timesteps
        seen = self.sequence.task_names[: self.state.task_index + 1]
        for task_index, task in enumerate(seen):
            folder = task if seen.index(task) == task_index else f"{task}-{task_index}"
            path = Path(self.config.videos_dir) / self.config.name / folder / f"step_{step}.mp4"
            self.evaluator.record_video(self.policy, task_index, path, step, self.task_context)
            self.state.videos.append(str(path))

    def checkpoint(self, inside_task: bool) -> None:
        if inside_task:
            self.state.episode_in_task = self.learner.episode_in_task()
        state = {
            "agent": self.learner.training_state(),
            "run": self.state.to_dict(),
            "rng": global_rng_state(),
        }
        save_checkpoint(self.run_dir / CHECKPOINT, state)

    def restore(self) -> None:
        """Load the latest checkpoint, or, when it cannot be used, the previous one (with a
        warning on stderr). Nothing on disk is changed."""
        latest = self.run_dir / CHECKPOINT
        problems: list[str] = []
        for path in (latest, previous_path(latest)):
            if not path.is_file():
                continue
            try:
                self._restore_from(path)
            except CheckpointError as error:
                problems.append(str(error))
                continue
            if problems:
                print(
                    f"crl: warning: {problems[0]}; continuing from the previous checkpoint {path}",
                    file=sys.stderr,
                )
            return
        if not problems:
            raise CheckpointError(f"{self.run_dir} has no checkpoint yet")
        raise CheckpointError(
            f"{problems[0]}, and no earlier checkpoint is usable; its results so far stay in "
            f"{self.run_dir}: start a new run with another --run-name"
        )

    def _restore_from(self, path: Path) -> None:
        state = load_checkpoint(path)
        require_keys(path, state, ("agent", "run", "rng"))
        try:
            self.state = RunState.from_dict(state["run"])
            self.learner.load_training_state(state["agent"])
            set_global_rng_state(state["rng"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as e:
            problem = f"{type(e).__name__}: {e}".splitlines()[0]
            raise CheckpointError(f"checkpoint {path} does not fit this run ({problem})") from None
        self.evaluator.evaluations = len(self.state.history.steps)

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> RunResults:
        started = time.perf_counter() - self.state.train_seconds
        learner, sequence = self.learner, self.sequence
        if not self.state.history.steps:
            self.evaluate()
        with self.progress:
            while self.state.task_index < sequence.num_tasks:
                task_index = self.state.task_index
                budget = sequence.steps_for(task_index, self.config.steps_per_task)
                fresh = self.state.steps_in_task == 0
                learner.on_task_start(task_index, budget, self.state.episode_in_task, fresh)
                self.progress.on_task_start(
                    task_index, budget, learner.task_start_step, learner.num_timesteps
                )
                task_end_step = learner.task_start_step + budget
                while self.state.steps_in_task < budget:
                    chunk = min(
                        self.config.checkpoint_every
                        - self.state.steps_in_task % self.config.checkpoint_every,
                        budget - self.state.steps_in_task,
                    )
                    learner.learn(chunk, partial(self._on_step, task_end_step=task_end_step))
                    self.state.steps_in_task += chunk
                    self.state.train_seconds = time.perf_counter() - started
                    if self.state.steps_in_task < budget:
                        self.checkpoint(inside_task=True)
                learner.on_task_end(task_index)
                self.state.task_ends.append(learner.num_timesteps)
                self.evaluate()
                self._log_task_metrics()
                if self.config.videos and self.config.video_every is None:
                    self.record_videos()
                self.state.task_index += 1
                self.state.steps_in_task = 0
                self.state.episode_in_task = 0
                self.state.train_seconds = time.perf_counter() - started
                self.checkpoint(inside_task=False)
        self.evaluator.close()
        results = self.write_results(final=True)
        self.logger.close()
        return results

    def _on_step(self, step: int, task_end_step: int) -> None:
        """After every step of a budget: evaluations and videos when due, progress."""
        config = self.config
        # The task's last step is evaluated by the runner, after the task ends.
        if step % config.eval_every == 0 and step != task_end_step:
            self.evaluate()
        if config.videos and config.video_every and step % config.video_every == 0:
            self.record_videos()
        self.progress.advance(step)

    def _log_task_metrics(self) -> None:
        matrix = self.matrix()
        if matrix is None:
            return
        for key, value in self.summary(matrix).items():
            if value is not None:
                self.logger.record(f"metrics/{key}", value)
        self.logger.dump(self.learner.num_timesteps)

    # -- results --------------------------------------------------------------------------
    def matrix(self) -> metrics.EvalMatrix | None:
        """The evaluation matrix over the tasks finished so far (None before the first)."""
        ends = self.state.task_ends
        if not ends:
            return None
        history = self.state.history
        keep = [i for i, step in enumerate(history.steps) if step <= ends[-1]]
        scores = np.asarray(history.stochastic)[keep][:, : len(ends)]
        steps = np.asarray(history.steps)[keep]
        return metrics.EvalMatrix(scores, steps, np.asarray(ends))

    def summary(self, matrix: metrics.EvalMatrix) -> dict[str, float | None]:
        """Metrics of the finished tasks (forward transfer against reference runs)."""
        return metrics.summarize(matrix, self.reference_auc()[: matrix.n_tasks])

    def reference_auc(self, refresh: bool = False) -> list[float | None]:
        """Forward-transfer references, found once per run (a scan reads every run's
        results.json) and refreshed for the final results."""
        if refresh or self._reference_auc is None:
            self._reference_auc = find_reference_aucs(
                Path(self.config.runs_dir),
                self.sequence.task_names,
                self.config.steps_per_task,
                exclude=self.run_dir,
            )
        return self._reference_auc

    def write_results(self, final: bool = False) -> RunResults:
        """Write results.json (and eval.csv) of the run so far; ``final`` after the last task."""
        history = self.state.history
        matrix = self.matrix()
        if final:
            self.reference_auc(refresh=True)
        summary = self.summary(matrix) if matrix is not None else {}
        own_auc = (
            metrics.auc_in_own_window(matrix, 0)
            if matrix is not None and self.sequence.num_tasks == 1
            else None
        )
        tasks = self.sequence.task_names
        shape = (len(history.steps), len(tasks))
        results = RunResults(
            name=self.config.name,
            method=self.config.method_label,
            seed=self.config.seed,
            sequence=self.sequence.name,
            tasks=tuple(tasks),
            steps_per_task=tuple(
                self.sequence.steps_for(i, self.config.steps_per_task)
                for i in range(self.sequence.num_tasks)
            ),
            task_ends=tuple(self.state.task_ends),
            eval_steps=tuple(history.steps),
            score=PolicyScores.from_rows(history.stochastic, history.deterministic, shape),
            returns=PolicyScores.from_rows(
                history.stochastic_return, history.deterministic_return, shape
            ),
            reference_auc=tuple(self.reference_auc()),
            single_task_auc=own_auc,
            metrics=summary,
            finished=final,
            wall_time_s=self.state.train_seconds,
            eval_time_s=history.seconds,
            videos=tuple(self.state.videos),
            agent=self.config.agent,
            step_unit=self.learner.step_unit,
            agent_results=self.learner.results(),
        )
        results.write(self.run_dir / RESULTS_FILE)
        _write_eval_csv(self.run_dir / "eval.csv", tasks, history)
        return results


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _write_eval_csv(path: Path, tasks: tuple[str, ...], history: EvalHistory) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "task_index", "task", "mode", "success", "return"])
        for row, step in enumerate(history.steps):
            for task_index, task in enumerate(tasks):
                for mode in ("stochastic", "deterministic"):
                    writer.writerow(
                        [
                            step,
                            task_index,
                            task,
                            mode,
                            getattr(history, mode)[row][task_index],
                            getattr(history, f"{mode}_return")[row][task_index],
                        ]
                    )
    os.replace(tmp, path)


def run_training(
    config: TrainConfig, *, resume: bool = False, overwrite: bool = False
) -> tuple[Path, dict[str, Any]]:
    """Train (or resume) a run; returns its directory and its final results.json object
    (:meth:`RunResults.to_json`)."""
    # Refuse bad names, options and paths before anything is written to disk: the whole run
    # (sequence, agent, evaluator) is built first, and only then is the directory made.
    check_run_paths(config)
    make_method(config.method, **config.method_options)
    if config.agent == "dt":  # before the (costly) Runner, which validates the sequence itself
        sequence = load_sequence(config.sequence, steps_per_task=config.steps_per_task)
        require_datasets(sequence.task_names, config.data_dir, episodes=200)
    run_dir = Path(config.runs_dir) / config.name
    runner = Runner(config, run_dir, tensorboard=False)
    # A run stopped before its first checkpoint resumes from its beginning.
    if resume and has_checkpoint(run_dir):
        runner.restore()
        if runner.state.task_index >= runner.sequence.num_tasks:
            raise RunDirectoryError(f"{run_dir} already finished; nothing to resume")
    prepare_run_dir(config, resume=resume, overwrite=overwrite)
    if not resume:
        config.save_yaml(run_dir / "config.yaml")
    runner.start_logging()
    if not resume:
        _write_config_text(runner.logger, config)
    return run_dir, runner.run().to_json()


def has_checkpoint(run_dir: Path) -> bool:
    """Whether the run has a checkpoint (the latest or, after a crash mid-write, the
    previous one)."""
    latest = run_dir / CHECKPOINT
    return latest.is_file() or previous_path(latest).is_file()


def _write_config_text(logger: Logger, config: TrainConfig) -> None:
    from stable_baselines3.common.logger import TensorBoardOutputFormat

    text = "```\n" + yaml.safe_dump(config.to_dict(), sort_keys=False) + "```"
    for output in logger.output_formats:
        if isinstance(output, TensorBoardOutputFormat):
            output.writer.add_text("config", text, 0)
            output.writer.flush()


__all__ = [
    "ConfigError",
    "RunDirectoryError",
    "Runner",
    "has_checkpoint",
    "is_run_dir",
    "load_run_config",
    "run_training",
]
