"""Tables of runs: GitHub markdown (report.md) and rich (the console).

Every markdown table is built by :func:`md_table`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from crlgym.experiments.aggregate import (
    CONFIDENCE,
    NOT_AVAILABLE,
    MethodSummary,
    MetricValue,
    format_metric,
    format_number,
)
from crlgym.experiments.results import RunResults

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

__all__ = [
    "RETENTION_HEADERS",
    "TABLE_COLUMNS",
    "markdown_table",
    "md_table",
    "render_retention_table",
    "render_table",
    "retention_markdown",
    "retention_rows",
    "runs_markdown",
    "table_note",
]

#: (column header, metric key) of the method tables.
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("performance", "performance"),
    ("forgetting", "forgetting"),
    ("forward transfer", "forward_transfer"),
    ("min-ACC", "min_acc"),
)


def md_cell(text: str) -> str:
    """``text`` safe inside a markdown table cell."""
    return text.replace("|", r"\|")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A GitHub markdown table (no trailing newline); cells are escaped.

    ``align`` has one letter per column, ``l`` (left) or ``r`` (right); columns it does not
    cover are left-aligned.
    """
    align = align.ljust(len(headers), "l")
    rules = ["---:" if side == "r" else "---" for side in align[: len(headers)]]
    lines = [_md_row(headers), _md_row(rules)]
    lines += [_md_row(row) for row in rows]
    return "\n".join(lines)


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(md_cell(cell) for cell in cells) + " |"


# --------------------------------------------------------------------------------------------
# Methods over seeds
# --------------------------------------------------------------------------------------------


def table_note(summaries: Sequence[MethodSummary]) -> str:
    """What the method table's numbers are, which runs are unfinished, and which tasks were
    never evaluated inside their own training window (so their forgetting and forward
    transfer are left out)."""
    note = (
        f"mean over seeds [{CONFIDENCE:.0%} bootstrap CI] with >= 2 seeds; "
        f"{NOT_AVAILABLE} = not available (forward transfer needs single-task reference runs)"
    )
    unfinished = [name for s in summaries for name in s.unfinished]
    if unfinished:
        note += f"; * includes unfinished runs: {', '.join(unfinished)}"
    lacking = [
        f"{run} ({', '.join(tasks)})"
        for s in summaries
        for run, tasks in s.tasks_without_own_evaluation.items()
    ]
    if lacking:
        note += (
            "; tasks never evaluated inside their own training window (left out of forgetting "
            "and forward transfer; a last task's makes performance and WC-ACC n/a too): "
            f"{'; '.join(lacking)}"
        )
    return note


def _summary_row(summary: MethodSummary) -> list[str]:
    label = summary.label + (" *" if summary.unfinished else "")
    cells = [format_metric(summary.metrics[key]) for _, key in TABLE_COLUMNS]
    return [label, str(len(summary.seeds)), *cells]


def markdown_table(summaries: Sequence[MethodSummary]) -> str:
    """The :func:`render_table` table as a GitHub markdown table (no trailing newline)."""
    headers = ["method", "seeds", *(header for header, _ in TABLE_COLUMNS)]
    return md_table(headers, [_summary_row(s) for s in summaries], "l" + "r" * len(headers))


def render_table(summaries: Sequence[MethodSummary]) -> Table:
    """A rich table: method, seeds, performance, forgetting, forward transfer, min-ACC."""
    from rich.table import Table
    from rich.text import Text

    sequences = sorted({s.sequence for s in summaries})
    table = Table(title=f"results on {', '.join(sequences)}", caption=table_note(summaries))
    table.add_column("method")
    table.add_column("seeds", justify="right")
    rows = [
        [Text(cell) for cell in _summary_row(s)[:2]]  # Text: method names are not markup
        + [_rich_cell(s.metrics[key], Text) for _, key in TABLE_COLUMNS]
        for s in summaries
    ]
    for header, _ in TABLE_COLUMNS:
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def _rich_cell(value: MetricValue | None, text: type[Text]) -> Text:
    """The mean, and the CI dimmed on a second line (so a narrow terminal never splits it)."""
    if value is None or value.low is None or value.high is None:
        return text(format_metric(value))
    mean, interval = value.format().split(" ", 1)
    return text.assemble(mean, "\n", (interval, "dim"))


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------


def runs_markdown(runs: Sequence[RunResults]) -> str:
    """One row per run: name, method, seed, sequence, tasks, finished, wall time."""
    headers = ["run", "method", "seed", "sequence", "tasks", "finished", "wall time"]
    rows = []
    for run in runs:
        wall = "" if run.wall_time_s is None else f"{run.wall_time_s:.0f} s"
        rows.append([
            run.name, run.method, str(run.seed), run.sequence, str(len(run.tasks)),
            "yes" if run.evaluated_to_end else "no", wall,
        ])  # fmt: skip
    return md_table(headers, rows, "llrlrlr")


RETENTION_HEADERS = (
    "run", "method", "seed", "pretraining tasks", "success before", "success after",
    "return before", "return after", "after / before",
)  # fmt: skip


def retention_rows(runs: Sequence[RunResults]) -> list[list[str]]:
    """One row per run that measured retention of pretraining (:data:`RETENTION_HEADERS`):
    mean success (or normalized score) and summed return on the pretraining sample, before
    fine-tuning and at the last evaluation."""
    rows = []
    for run in runs:
        kept = run.retention
        if kept is None:
            continue
        ratio = kept.return_ratio
        rows.append([
            run.name, run.method, str(run.seed), str(len(kept.tasks)),
            format_number(float(kept.score[0].mean()), 2),
            format_number(float(kept.score[-1].mean()), 2),
            f"{kept.returns[0].sum():.0f}", f"{kept.returns[-1].sum():.0f}",
            NOT_AVAILABLE if ratio is None else f"{ratio:.2f}x",
        ])  # fmt: skip
    return rows


def retention_markdown(runs: Sequence[RunResults]) -> list[str]:
    """The report's "Retention of pretraining" section (no lines when no run measured it)."""
    rows = retention_rows(runs)
    if not rows:
        return []
    traces = [
        [run.name, task, " ".join(format_number(float(v), 2) for v in run.retention.score[:, j])]
        for run in runs
        if run.retention is not None
        for j, task in enumerate(run.retention.tasks)
    ]
    return [
        "",
        "## Retention of pretraining",
        "",
        "Pretraining tasks that no task of the sequence trains on, scored before fine-tuning "
        "and at the last evaluation (`--pretrain-eval-tasks`).",
        "",
        md_table(RETENTION_HEADERS, rows, "llrrrrrrr"),
        "",
        md_table(["run", "task", "success per evaluation"], traces),
    ]


def render_retention_table(runs: Sequence[RunResults]) -> Table | None:
    """The retention rows as a compact rich table (None when no run measured retention)."""
    rows = retention_rows(runs)
    if not rows:
        return None
    from rich.table import Table
    from rich.text import Text

    # Compact columns: the markdown report has the full table.
    table = Table(title="retention of pretraining (sample of pretraining tasks)")
    for header in ("run", "tasks", "success before -> after", "return before -> after"):
        table.add_column(header, justify="left" if header == "run" else "right")
    for run, _method, _seed, tasks, s0, s1, r0, r1, ratio in rows:
        table.add_row(Text(run), tasks, f"{s0} -> {s1}", f"{r0} -> {r1} ({ratio})")
    return table
