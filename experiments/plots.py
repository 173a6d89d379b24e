"""Figures of runs (matplotlib, PNG): per-run heatmaps and success curves, the method
comparison and the plasticity panels of ``crl report``, and the recall-vs-delay figure of
docs/results.md.

Every figure is written atomically and tagged in its PNG metadata as a report artifact
(:data:`REPORT_MARKER`), so that ``crl report`` only ever overwrites its own files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crlgym.experiments.aggregate import CONFIDENCE, NOT_AVAILABLE, MethodSummary
from crlgym.experiments.results import RunResults

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DPI",
    "REPORT_MARKER",
    "plasticity_runs",
    "plot_curves",
    "plot_heatmap",
    "plot_method_comparison",
    "plot_plasticity",
    "plot_recall",
]

DPI = 120
#: Marks the files ``crl report`` writes, so that it only ever overwrites its own artifacts.
REPORT_MARKER = "crlgym report"
#: The PNG text key holding :data:`REPORT_MARKER`.
PNG_METADATA_KEY = "Source"
#: Chance level of the recall task (4 cues).
RECALL_CHANCE = 0.25


def _format_steps(steps: float) -> str:
    """``0``, ``500``, ``1.5k``, ``2M``: compact env-step counts for axis ticks."""
    for factor, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(steps) >= factor:
            return f"{steps / factor:.4g}{suffix}"
    return f"{steps:.4g}"


def _task_labels(run: RunResults) -> list[str]:
    return [f"{index} {task}" for index, task in enumerate(run.tasks)]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: Path) -> Path:
    """Save ``fig`` as PNG atomically (temp file, then rename), tagged as a report artifact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={PNG_METADATA_KEY: REPORT_MARKER})
        os.replace(tmp, path)
    finally:
        _pyplot().close(fig)
        tmp.unlink(missing_ok=True)
    return path


def _tick_stride(n: int, max_ticks: int = 12) -> int:
    """The smallest of 1, 2, 5, 10, 20, 25, 50, ... giving at most ``max_ticks`` of ``n``."""
    scale = 1
    while True:
        for stride in (scale, 2 * scale, 5 * scale / 2, 5 * scale):
            if stride == int(stride) and math.ceil(n / stride) <= max_ticks:
                return int(stride)
        scale *= 10


def _heatmap_figsize(n_tasks: int) -> tuple[float, float]:
    return 10.0, max(3.0, 0.35 * n_tasks + 1.6)


def plot_heatmap(run: RunResults, path: Path) -> Path:
    """Success of every task (rows) at every evaluation (columns) of ``run``, saved to ``path``.

    Colours are viridis on ``[0, 1]``; dashed white lines separate the tasks' training windows
    and a white box marks each task's own window on its row. Returns ``path``.
    """
    plt = _pyplot()
    m = run.matrix
    fig, ax = plt.subplots(figsize=_heatmap_figsize(m.n_tasks), layout="constrained")
    image = ax.imshow(
        m.success.T, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest"
    )
    ax.set_yticks(range(m.n_tasks), _task_labels(run), fontsize=8)
    ticks = np.arange(0, m.n_evals, _tick_stride(m.n_evals))
    ax.set_xticks(ticks, [_format_steps(m.eval_steps[i]) for i in ticks])
    ax.set_xlabel(f"evaluation ({run.step_unit})")
    # Column e lies in the window of task i iff task_starts[i] < step <= task_ends[i]; a
    # boundary is drawn between the last evaluation of one window and the first of the next.
    first = np.searchsorted(m.eval_steps, m.task_starts, side="right")
    last = np.searchsorted(m.eval_steps, m.task_ends, side="right") - 1
    for task in range(m.n_tasks):
        if task < m.n_tasks - 1 and -1 < last[task] < m.n_evals - 1:
            ax.axvline(last[task] + 0.5, color="white", linewidth=0.8, linestyle="--")
        if first[task] <= last[task]:
            width = last[task] - first[task] + 1
            box = plt.Rectangle(
                (first[task] - 0.5, task - 0.5), width, 1.0, fill=False, edgecolor="white"
            )
            ax.add_patch(box)
    fig.colorbar(image, ax=ax, label="success rate / normalized score", pad=0.01)
    ax.set_title(f"{run.name}: {run.method} on {run.sequence} (stochastic policy)")
    return _save(fig, path)


def _curves_grid(n_tasks: int) -> tuple[int, int]:
    ncols = 1 if n_tasks <= 10 else 2
    return math.ceil(n_tasks / ncols), ncols


def _curves_figsize(n_tasks: int) -> tuple[float, float]:
    nrows, ncols = _curves_grid(n_tasks)
    return 6.0 + 4.0 * ncols, 1.25 * nrows + 1.0


def plot_curves(run: RunResults, path: Path) -> Path:
    """One success curve per task of ``run`` (shared env-step axis), saved to ``path``.

    Each subplot shades the task's own training window and draws dashed lines at all task
    boundaries; y spans ``[0, 1.05]``. Returns ``path``.
    """
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    m = run.matrix
    nrows, ncols = _curves_grid(m.n_tasks)
    figsize = _curves_figsize(m.n_tasks)
    fig, axes = plt.subplots(
        nrows, ncols, sharex=True, sharey=True, squeeze=False, figsize=figsize, layout="constrained"
    )
    marker = "o" if m.n_evals <= 60 else None
    labels = _task_labels(run)
    for task, ax in enumerate(axes.flat):
        if task >= m.n_tasks:  # empty slot of a 2-column grid: show x labels above it
            ax.set_visible(False)
            axes.flat[task - ncols].xaxis.set_tick_params(labelbottom=True)
            continue
        start, end = m.task_starts[task], m.task_ends[task]
        ax.axvspan(start, end, color="tab:orange", alpha=0.18, label="trained")
        for boundary in m.task_ends[:-1]:
            ax.axvline(boundary, color="0.5", linewidth=0.7, linestyle="--")
        ax.plot(m.eval_steps, m.success[:, task], marker=marker, markersize=2.5, label="success")
        ax.set_title(labels[task], loc="left", fontsize=9)
        ax.set_ylim(0.0, 1.05)
        ax.set_xlim(0, m.task_ends[-1])
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside upper right", ncols=2, fontsize=8, frameon=False)
    axes[0, -1].xaxis.set_major_formatter(FuncFormatter(lambda x, _: _format_steps(x)))
    fig.supxlabel(run.step_unit)
    fig.supylabel("success rate (stochastic policy)")
    fig.suptitle(f"{run.name}: {run.method} on {run.sequence}")
    return _save(fig, path)


def plot_method_comparison(summaries: Sequence[MethodSummary], path: Path) -> Path:
    """Bar chart of performance and forgetting per method, with CI error bars. Returns path."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(4.0 + 1.2 * len(summaries), 3.6), layout="constrained")
    positions = np.arange(len(summaries))
    for ax, key in zip(axes, ("performance", "forgetting"), strict=True):
        for x, summary in zip(positions, summaries, strict=True):
            value = summary.metrics[key]
            if value is None:
                ax.text(x, 0.02, NOT_AVAILABLE, ha="center", va="bottom")
                continue
            errors = None
            if value.low is not None and value.high is not None:
                errors = [[value.mean - value.low], [value.high - value.mean]]
            ax.bar(x, value.mean, yerr=errors, capsize=4, color=f"C{x % 10}")
        ax.set_xticks(positions, [s.label for s in summaries], rotation=20, ha="right")
        ax.axhline(0.0, color="0.3", linewidth=0.8)
        ax.set_title(key)
    fig.suptitle(f"mean over seeds, {CONFIDENCE:.0%} bootstrap CI")
    return _save(fig, path)


PLASTICITY_PANELS = (
    ("critic", "fau", "critic FAU"),
    ("critic", "dormant_ratio", "critic dormant ratio"),
    ("critic", "effective_rank", "critic effective rank"),
    ("actor", "fau", "actor FAU"),
)


def plasticity_runs(runs: Sequence[RunResults]) -> list[tuple[RunResults, Mapping[str, Any]]]:
    """The runs that recorded plasticity metrics, each with its plasticity record."""
    return [(run, run.plasticity) for run in runs if run.plasticity is not None]


def plot_plasticity(runs: Sequence[RunResults], path: Path) -> Path:
    """Plasticity metrics over env steps, one line per run that recorded them (see
    :func:`plasticity_runs`): critic FAU, dormant ratio and effective rank, actor FAU; task
    boundaries of the first such run dashed, replay-ratio switches marked."""
    plastic = plasticity_runs(runs)
    if not plastic:
        raise ValueError("no run has plasticity metrics")
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(2, 2, sharex=True, figsize=(10, 6.5), layout="constrained")
    for (net, key, title), ax in zip(PLASTICITY_PANELS, axes.flat, strict=True):
        for index, (run, plasticity) in enumerate(plastic):
            color = f"C{index % 10}"
            records = [r for r in plasticity["metrics"] if r.get("net") == net and key in r]
            steps = [r["step"] for r in records]
            values = [r[key] for r in records]
            ax.plot(steps, values, color=color, linewidth=1.2, label=run.name)
            for switch in plasticity.get("switch_steps", []):
                if switch in steps:
                    ax.plot(switch, values[steps.index(switch)], "v", color=color, markersize=7)
        for boundary in plastic[0][0].task_ends[:-1]:
            ax.axvline(boundary, color="0.5", linewidth=0.8, linestyle="--")
        ax.set_title(title, loc="left", fontsize=10)
        ax.grid(alpha=0.3)
    axes[1, 0].xaxis.set_major_formatter(FuncFormatter(lambda x, _: _format_steps(x)))
    axes[0, 0].legend(fontsize=7, frameon=False, loc="best")
    fig.supxlabel("env steps (v: adaptive replay ratio switched; dashed: task boundary)")
    fig.suptitle("plasticity (fixed probe batch per task)")
    return _save(fig, path)


def plot_recall(scores: Mapping[str, Mapping[int, Sequence[float]]], path: Path) -> Path:
    """Final recall success against the delay D (log scale), one line per memory (mean over
    seeds, dots: seeds), with the expert and chance levels (see
    :func:`crlgym.experiments.aggregate.recall_scores`)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    # Distinct markers, line styles and a small horizontal offset keep equal curves visible.
    styles = {"hcam": ("o", "-", 0.97), "full": ("s", "--", 0.99), "window": ("^", "-.", 1.01),
              "lstm": ("v", ":", 1.03)}  # fmt: skip
    for index, memory in enumerate(("hcam", "full", "window", "lstm")):
        if memory not in scores:
            continue
        marker, line, offset = styles[memory]
        delays = sorted(scores[memory])
        shifted = [d * offset for d in delays]
        means = [np.mean(scores[memory][d]) for d in delays]
        color = f"C{index}"
        ax.plot(shifted, means, marker=marker, linestyle=line, color=color, label=memory)
        for delay, x in zip(delays, shifted, strict=True):
            seeds = scores[memory][delay]
            ax.scatter([x] * len(seeds), seeds, color=color, s=12, alpha=0.5)
    ax.axhline(1.0, color="0.3", linestyle=":", linewidth=1, label="expert")
    ax.axhline(RECALL_CHANCE, color="0.6", linestyle="--", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("delay D (steps between cue and choice)")
    ax.set_ylabel("recall success (20 stochastic episodes)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title("recall vs delay: mean over seeds (dots: seeds)")
    return _save(fig, path)
