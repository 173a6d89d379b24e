"""Figures of docs/results.md that compare runs along a setting (``crl report`` draws the
per-run and per-method figures).

``python -m crlgym.experiments.figures recall RUNS_DIR OUT.png``: final recall success against the
delay D, one line per memory, from runs named ``d<D>-<memory>-s<seed>`` (configs/recall_runs.sh).
Prints the table it plots.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from crlgym.experiments.report import _pyplot, _save

RUN_NAME = re.compile(r"^d(?P<delay>\d+)-(?P<memory>[a-z]+)-s(?P<seed>\d+)$")
CHANCE = 0.25  # 4 cues


def final_scores(runs_dir: Path) -> dict[str, dict[int, list[float]]]:
    """memory -> delay -> final stochastic success of each finished seed."""
    scores: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for results_file in sorted(runs_dir.glob("*/results.json")):
        match = RUN_NAME.match(results_file.parent.name)
        if match is None:
            continue
        data = json.loads(results_file.read_text())
        if not data.get("finished"):
            continue
        final = data["score"]["stochastic"][-1][0]
        scores[match["memory"]][int(match["delay"])].append(float(final))
    return scores


def plot_recall(scores: dict[str, dict[int, list[float]]], path: Path) -> Path:
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
    ax.axhline(CHANCE, color="0.6", linestyle="--", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("delay D (steps between cue and choice)")
    ax.set_ylabel("recall success (20 stochastic episodes)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title("recall vs delay: mean over seeds (dots: seeds)")
    return _save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="figure", required=True)
    recall = sub.add_parser("recall", help="recall success vs delay per memory")
    recall.add_argument("runs_dir", type=Path)
    recall.add_argument("out", type=Path)
    args = parser.parse_args()
    scores = final_scores(args.runs_dir)
    delays = sorted({d for per_delay in scores.values() for d in per_delay})
    print("| memory | " + " | ".join(f"D={d}" for d in delays) + " |")
    print("|---|" + "---:|" * len(delays))
    for memory, per_delay in sorted(scores.items()):
        cells = [
            f"{np.mean(per_delay[d]):.2f} ({', '.join(f'{v:.2f}' for v in per_delay[d])})"
            if d in per_delay
            else "-"
            for d in delays
        ]
        print(f"| {memory} | " + " | ".join(cells) + " |")
    print(plot_recall(scores, args.out))


if __name__ == "__main__":
    main()
