"""Figures of docs/results.md that compare runs along a setting (``crl report`` draws the
per-run and per-method figures).

``python -m crlgym.experiments.figures recall RUNS_DIR OUT.png``: final recall success against the
delay D, one line per memory, from runs named ``d<D>-<memory>-s<seed>`` (configs/recall_runs.sh).
Prints the table it plots.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from crlgym.experiments.aggregate import recall_scores
from crlgym.experiments.plots import plot_recall
from crlgym.experiments.tables import md_table


def recall_table(scores: Mapping[str, Mapping[int, Sequence[float]]]) -> str:
    """Markdown table of :func:`recall_scores`: memory x delay, mean (and each seed)."""
    delays = sorted({d for per_delay in scores.values() for d in per_delay})
    rows = [
        [memory]
        + [
            f"{np.mean(per_delay[d]):.2f} ({', '.join(f'{v:.2f}' for v in per_delay[d])})"
            if d in per_delay
            else "-"
            for d in delays
        ]
        for memory, per_delay in sorted(scores.items())
    ]
    headers = ["memory", *(f"D={d}" for d in delays)]
    return md_table(headers, rows, "l" + "r" * len(delays))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="figure", required=True)
    recall = sub.add_parser("recall", help="recall success vs delay per memory")
    recall.add_argument("runs_dir", type=Path)
    recall.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    scores = recall_scores(args.runs_dir)
    print(recall_table(scores))
    print(plot_recall(scores, args.out))


if __name__ == "__main__":
    main()
