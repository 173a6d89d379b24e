"""Runs grouped and aggregated: per method over seeds with bootstrap confidence intervals,
single-task reference runs for forward transfer, and the recall-vs-delay grid.

Every metric is recomputed from a run's evaluation matrix by
:func:`crlgym.experiments.metrics.summarize` (a run's stored metrics are never used) and
aggregated over seeds with a 90% percentile bootstrap confidence interval
(:func:`crlgym.experiments.metrics.bootstrap_ci`). Metrics that cannot be computed (e.g.
forward transfer without single-task reference runs) are ``None``, shown as ``n/a``; tasks
never evaluated inside their own training window (whose forgetting and forward transfer are
therefore unavailable, see :func:`crlgym.experiments.metrics.tasks_without_own_evaluation`)
are listed per run in :attr:`MethodSummary.tasks_without_own_evaluation`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from crlgym.errors import CrlgymError
from crlgym.experiments.metrics import bootstrap_ci, summarize, tasks_without_own_evaluation
from crlgym.experiments.results import RESULTS_FILE, ResultsError, RunResults, read

__all__ = [
    "CONFIDENCE",
    "METRICS",
    "NOT_AVAILABLE",
    "MethodSummary",
    "MetricValue",
    "ReportError",
    "find_reference_aucs",
    "format_metric",
    "format_number",
    "recall_scores",
    "summarize_runs",
]

#: Metrics aggregated over seeds, in :func:`crlgym.experiments.metrics.summarize` key names.
METRICS: tuple[str, ...] = (
    "performance",
    "forgetting",
    "forward_transfer",
    "min_acc",
    "wc_acc",
    "wf10",
)
#: Confidence level of the bootstrap interval over seeds.
CONFIDENCE = 0.9
NOT_AVAILABLE = "n/a"


class ReportError(CrlgymError):
    """Runs that cannot be reported on together, or a report that cannot be written."""


def format_number(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals, never ``-0.00``."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


@dataclass(frozen=True)
class MetricValue:
    """A metric over seeds: the mean, and the bootstrap CI when there are >= 2 values."""

    mean: float
    low: float | None
    high: float | None
    n: int

    def format(self, digits: int = 2) -> str:
        """``0.43 [0.38, 0.49]`` with a CI, ``0.43`` without."""
        mean = format_number(self.mean, digits)
        if self.low is None or self.high is None:
            return mean
        return f"{mean} [{format_number(self.low, digits)}, {format_number(self.high, digits)}]"


def format_metric(value: MetricValue | None, digits: int = 2) -> str:
    """Table cell of a metric: see :meth:`MetricValue.format`; ``n/a`` when unavailable."""
    return NOT_AVAILABLE if value is None else value.format(digits)


@dataclass(frozen=True)
class MethodSummary:
    """All runs of one method on one sequence, sorted by seed.

    ``values[key]`` holds the per-seed values of each metric in :data:`METRICS` (seeds where
    the metric is undefined are left out); ``metrics[key]`` aggregates them, ``None`` when no
    seed has a value. ``label`` is what tables show: the method, plus the sequence when the
    report covers more than one sequence. ``tasks_without_own_evaluation`` maps the name of
    each run with tasks never evaluated inside their own training window to those tasks'
    names (runs without such tasks are left out).
    """

    method: str
    sequence: str
    label: str
    seeds: tuple[int, ...]
    run_names: tuple[str, ...]
    unfinished: tuple[str, ...]
    values: Mapping[str, tuple[float, ...]]
    metrics: Mapping[str, MetricValue | None]
    tasks_without_own_evaluation: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )


def _aggregate(values: Sequence[float]) -> MetricValue | None:
    if not values:
        return None
    if len(values) == 1:
        return MetricValue(mean=float(values[0]), low=None, high=None, n=1)
    mean, low, high = bootstrap_ci(values, confidence=CONFIDENCE)
    return MetricValue(mean=mean, low=low, high=high, n=len(values))


def _run_metrics(run: RunResults) -> dict[str, float | None]:
    try:
        return summarize(run.matrix, run.reference_auc)
    except ValueError as error:
        raise ReportError(
            f"cannot compute the metrics of run '{run.name}' ({run.run_dir}): {error}"
        ) from None


def summarize_runs(runs: Sequence[RunResults]) -> list[MethodSummary]:
    """Group ``runs`` by method (first-seen order) and aggregate each metric over seeds.

    Metrics are recomputed from each run's matrix with :func:`summarize` (stored metrics are
    ignored). Within a method, runs are sorted by seed, so the result does not depend on the
    order of ``runs``; a metric with >= 2 values gets a :data:`CONFIDENCE` bootstrap CI via
    :func:`bootstrap_ci`. Runs of one method on different sequences are kept apart.

    Raises:
        ReportError: if no runs are given, two runs share method, sequence and seed, runs of
            one method and sequence train different tasks, or a metric cannot be computed.
    """
    if not runs:
        raise ReportError("no runs to report on; pass at least one run directory")
    groups: dict[tuple[str, str], list[RunResults]] = {}
    for run in runs:
        group = groups.setdefault((run.method, run.sequence), [])
        for other in group:
            if other.seed == run.seed:
                raise ReportError(
                    f"runs {other.run_dir} and {run.run_dir} are both method '{run.method}' "
                    f"seed {run.seed} on {run.sequence}; pass each run once"
                )
            if other.tasks != run.tasks:
                raise ReportError(
                    f"runs {other.run_dir} and {run.run_dir} are both method '{run.method}' on "
                    f"'{run.sequence}' but train different tasks; report them separately"
                )
        group.append(run)

    several_sequences = len({sequence for _, sequence in groups}) > 1
    summaries = []
    for (method, sequence), group in groups.items():
        group = sorted(group, key=lambda run: run.seed)
        per_run = [_run_metrics(run) for run in group]
        lacking = {
            run.name: tuple(run.tasks[i] for i in missing)
            for run in group
            if (missing := tasks_without_own_evaluation(run.matrix))
        }
        values = {
            key: tuple(value for m in per_run if (value := m[key]) is not None) for key in METRICS
        }
        summaries.append(
            MethodSummary(
                method=method,
                sequence=sequence,
                label=f"{method} ({sequence})" if several_sequences else method,
                seeds=tuple(run.seed for run in group),
                run_names=tuple(run.name for run in group),
                unfinished=tuple(run.name for run in group if not run.evaluated_to_end),
                values=MappingProxyType(values),
                metrics=MappingProxyType({key: _aggregate(values[key]) for key in METRICS}),
                tasks_without_own_evaluation=MappingProxyType(lacking),
            )
        )
    return summaries


def _finished_runs(runs_dir: Path, exclude: Path | None = None) -> list[RunResults]:
    """The finished runs of ``runs_dir/*/``, sorted by directory; unreadable ones left out."""
    found = []
    for path in sorted(runs_dir.glob(f"*/{RESULTS_FILE}")):
        if exclude is not None and path.parent.resolve() == exclude.resolve():
            continue
        try:
            results = read(path, partial=True)
        except ResultsError:
            continue
        if results.finished:
            found.append(results)
    return found


def find_reference_aucs(
    runs_dir: Path, tasks: Sequence[str], steps_per_task: int, exclude: Path | None = None
) -> list[float | None]:
    """AUC of finished single-task runs with the same budget, per task (None if none).

    Any finished ``crl train --sequence <task>`` run in ``runs_dir`` serves as the reference
    for forward transfer; several seeds are averaged. ``exclude``: a run directory to skip
    (the run asking). Unreadable or corrupt results.json files are skipped.
    """
    found: dict[tuple[str, int], list[float]] = {}
    if runs_dir.is_dir():
        for results in _finished_runs(runs_dir, exclude):
            auc, budgets = results.single_task_auc, results.steps_per_task
            if auc is not None and budgets is not None:
                found.setdefault((results.tasks[0], budgets[0]), []).append(auc)
    references: list[float | None] = []
    for task in tasks:
        values = found.get((task, steps_per_task))
        references.append(float(np.mean(values)) if values else None)
    return references


#: Run names of the recall experiment (configs/recall_runs.sh): ``d<D>-<memory>-s<seed>``.
RECALL_RUN_NAME = re.compile(r"^d(?P<delay>\d+)-(?P<memory>[a-z]+)-s(?P<seed>\d+)$")


def recall_scores(runs_dir: Path) -> dict[str, dict[int, list[float]]]:
    """memory -> delay -> final stochastic success of each finished recall run's seed."""
    scores: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for results in _finished_runs(runs_dir):
        match = RECALL_RUN_NAME.match(results.run_dir.name)
        if match is not None:
            final = float(results.score.stochastic[-1, 0])
            scores[match["memory"]][int(match["delay"])].append(final)
    return scores
