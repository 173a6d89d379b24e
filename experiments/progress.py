"""The progress display of a run (rich): task i/N, steps, ETA, latest evaluation."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from crlgym.envs.sequences import TaskSequence

_UPDATE_EVERY = 100  # steps between redraws: a redraw per env step would cost real time


class Progress:
    """A context manager; every method is a no-op when disabled."""

    def __init__(self, sequence: TaskSequence, enabled: bool = True) -> None:
        self.sequence = sequence
        self.enabled = enabled
        self.console = Console(stderr=True)
        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[latest]}"),
            console=self.console,
            disable=not enabled,
        )
        self._task_id: TaskID | None = None
        self._task_start_step = 0
        self._latest = ""

    def __enter__(self) -> Progress:
        self._bar.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._bar.__exit__(kind, value, traceback)

    def on_task_start(self, task_index: int, budget: int, task_start_step: int, step: int) -> None:
        if self._task_id is not None:
            self._bar.remove_task(self._task_id)
        name = self.sequence.task_names[task_index]
        self._task_id = self._bar.add_task(
            f"task {task_index + 1}/{self.sequence.num_tasks} {name}",
            total=budget,
            completed=step - task_start_step,
            latest=self._latest,
        )
        self._task_start_step = task_start_step

    def advance(self, step: int) -> None:
        if self._task_id is None or step % _UPDATE_EVERY:
            return
        self._bar.update(self._task_id, completed=step - self._task_start_step)

    def evaluation(self, step: int, scores: list[float]) -> None:
        average = sum(scores) / len(scores)
        per_task = " ".join(f"{s:.2f}" for s in scores)
        self._latest = f"eval@{step}: avg {average:.2f}"
        if self._task_id is not None:
            self._bar.update(self._task_id, latest=self._latest)
        if self.enabled:
            self._bar.console.print(f"step {step:>9}: success [{per_task}] avg {average:.2f}")
