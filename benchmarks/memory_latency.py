"""Read latency and memory of HCAM against full attention as the stored length grows.

For each stored length L (1k to 64k steps) both memories are filled with L random hidden
states in one write (HCAM: capacity L / C chunks, so nothing is evicted; full attention:
capacity L steps), then a read of one new step (T = 1, what acting does at every env
step) is timed under ``torch.no_grad()``. Defaults: batch 8, d_model 128, 4 heads, HCAM
chunk size C = 64 and top k = 8, float32, 1 torch thread. Both memories store raw hidden
states and project keys and values at read time the same way (`crlgym.memory.attention`), so the
difference is the memory structure: HCAM touches L / C summaries and k C states, full
attention all L states.

Timing: every (length, memory) pair is measured once per round, rounds interleaved so
machine noise hits all alike; a measurement makes one untimed read, then repeats the read
until ``--min-time`` has passed and takes the mean; the table shows the median over
rounds. The slope of log(time) vs log(length) is a least-squares fit over all lengths
(< 1 = sublinear), also given over the lengths from 8k on, where the fixed per-read
overhead weighs less. The machine's other jobs add noise: compare within one run.

Memory: ``state MB`` = bytes of the memory state's tensors; ``read MB`` = peak bytes
allocated during one read beyond what existed before it, measured by a TorchDispatchMode
that tracks every storage an aten op creates and when it is freed (op granularity, so a
kernel's internal scratch space is not seen).

Targets: HCAM >= 5x faster than full attention at 16k stored steps, and sublinear growth.

Usage: ``python benchmarks/memory_latency.py [--rounds 7] [--out docs/img/memory_latency.png]
[--quick]`` (about 20 s; ``--quick`` 1k/4k/16k only, a few seconds, no plot unless
``--out`` is given).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch_threads import check_threads

# Submodules, not the package: they import the same whether ``memory`` resolves as a
# regular package or (an editable install made before memory/__init__.py) a namespace one.
from crlgym.memory.base import MemoryState
from crlgym.memory.full import FullAttentionConfig, FullAttentionMemory
from crlgym.memory.hcam import HCAMConfig, HCAMMemory

LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768, 65536)
QUICK_LENGTHS = (1024, 4096, 16384)
TARGET_RATIO, TARGET_LENGTH = 5.0, 16384
DEFAULT_OUT = Path("docs/img/memory_latency.png")
MEMORIES = ("hcam", "full")


class PeakAllocations(TorchDispatchMode):
    """Peak bytes of storages created by aten ops inside the mode and still alive."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = self.peak = 0

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for key in [key for key, (ref, _) in self.live.items() if ref.expired()]:
            self.current -= self.live.pop(key)[1]
        inputs = {
            leaf.untyped_storage().data_ptr()
            for leaf in tree_leaves((args, kwargs))
            if isinstance(leaf, torch.Tensor)
        }
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                key = storage.data_ptr()
                # Views and in-place results share an input's storage: nothing allocated.
                if key not in self.live and key not in inputs and storage.nbytes():
                    self.live[key] = (StorageWeakRef(storage), storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


def state_bytes(state: MemoryState) -> int:
    return sum(v.nbytes for v in state.to_dict().values() if isinstance(v, torch.Tensor))


def build(kind: str, length: int, args: argparse.Namespace) -> HCAMMemory | FullAttentionMemory:
    torch.manual_seed(0)
    if kind == "hcam":
        config = HCAMConfig(
            chunk_size=args.chunk,
            top_k=args.top_k,
            capacity=length // args.chunk,
            heads=args.heads,
        )
        return HCAMMemory(args.d_model, config)
    return FullAttentionMemory(args.d_model, FullAttentionConfig(capacity=length, heads=args.heads))


def timed(read: Callable[[], torch.Tensor], min_time: float) -> float:
    """Seconds per call, averaged over as many calls as fit in ``min_time``.

    One untimed call first: right after another memory's read, the first call pays for
    cache misses and freshly mapped pages (about 2x a steady read of HCAM's).
    """
    read()
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < min_time or calls == 0:
        read()
        calls += 1
    return elapsed / calls


def slope(lengths: list[int], seconds: list[float]) -> float:
    return float(np.polyfit(np.log(lengths), np.log(seconds), 1)[0])


def plot(
    lengths: list[int],
    times: dict[str, list[float]],
    memory: dict[str, list[tuple[int, int]]],
    settings: str,
    out: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"hcam": "HCAM", "full": "full attention"}
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, marker, color in zip(MEMORIES, ("o", "s"), ("C0", "C1"), strict=True):
        label = f"{names[kind]} (slope {slope(lengths, times[kind]):.2f})"
        milliseconds = [1000 * t for t in times[kind]]
        left.plot(lengths, milliseconds, marker=marker, color=color, label=label)
        state = [s / 2**20 for s, _ in memory[kind]]
        peak = [p / 2**20 for _, p in memory[kind]]
        right.plot(lengths, state, marker=marker, color=color, label=f"{names[kind]}: state")
        right.plot(
            lengths,
            peak,
            marker=marker,
            color=color,
            linestyle="--",
            label=f"{names[kind]}: extra during a read",
        )
    linear = [1000 * times["full"][0] * n / lengths[0] for n in lengths]
    left.plot(lengths, linear, color="gray", linestyle=":", label="linear (slope 1)")
    left.set(ylabel="read latency (ms, median)", title="read of one step vs stored length")
    right.set(ylabel="MB", title="memory state and extra peak during a read")
    for axis in (left, right):
        axis.set(xscale="log", yscale="log", xlabel="stored steps")
        axis.set_xticks(lengths, [f"{n // 1024}k" for n in lengths])
        axis.minorticks_off()
        axis.grid(True, which="major", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(settings, fontsize=9)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="streams read at once (8)")
    parser.add_argument("--d-model", type=int, default=128, help="hidden width (128)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (4)")
    parser.add_argument("--chunk", type=int, default=64, help="HCAM chunk size C (64)")
    parser.add_argument("--top-k", type=int, default=8, help="HCAM chunks read in detail (8)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (7; --quick 3)")
    parser.add_argument(
        "--min-time", type=float, help="seconds per measurement (0.05; --quick 0.01)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument(
        "--out", type=Path, help=f"plot file (default {DEFAULT_OUT}; --quick: none unless given)"
    )
    parser.add_argument("--quick", action="store_true", help="1k, 4k, 16k only; a few seconds")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 7)
    min_time = args.min_time or (0.01 if args.quick else 0.05)
    out = args.out or (None if args.quick else DEFAULT_OUT)
    lengths = list(QUICK_LENGTHS if args.quick else LENGTHS)

    check_threads(args.threads)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    settings = (
        f"batch {args.batch}, d_model {args.d_model}, {args.heads} heads, HCAM C={args.chunk} "
        f"k={args.top_k}, one query step (T=1), float32, no_grad, {args.threads} torch thread(s)"
    )
    print(settings, flush=True)
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(args.batch, 1, args.d_model, generator=generator)
    prepared: dict[tuple[str, int], tuple[HCAMMemory | FullAttentionMemory, Any]] = {}
    memory: dict[str, list[tuple[int, int]]] = {kind: [] for kind in MEMORIES}
    with torch.no_grad():
        for length in lengths:
            hidden = torch.randn(args.batch, length, args.d_model, generator=generator)
            for kind in MEMORIES:
                layer = build(kind, length, args)
                state = layer.write(hidden, layer.initial_state(args.batch))
                layer.read(query, state)  # warm-up
                with PeakAllocations() as peak:
                    layer.read(query, state)
                memory[kind].append((state_bytes(state), peak.peak))
                prepared[kind, length] = (layer, state)
            del hidden
        print(f"memories filled in {time.perf_counter() - started:.1f} s; timing ...", flush=True)
        samples: dict[tuple[str, int], list[float]] = {key: [] for key in prepared}
        for _ in range(rounds):
            for length in lengths:
                for kind in MEMORIES:
                    layer, state = prepared[kind, length]
                    samples[kind, length].append(timed(partial(layer.read, query, state), min_time))
    times = {kind: [statistics.median(samples[kind, n]) for n in lengths] for kind in MEMORIES}

    print()
    print(
        f"{'stored':>7s} {'HCAM ms':>8s} {'full ms':>8s} {'full/HCAM':>9s} "
        f"{'HCAM state MB':>13s} {'HCAM read MB':>12s} {'full state MB':>13s} "
        f"{'full read MB':>12s}"
    )
    for i, length in enumerate(lengths):
        (hcam_state, hcam_peak), (full_state, full_peak) = memory["hcam"][i], memory["full"][i]
        print(
            f"{length:7d} {1000 * times['hcam'][i]:8.3f} {1000 * times['full'][i]:8.3f} "
            f"{times['full'][i] / times['hcam'][i]:8.1f}x {hcam_state / 2**20:13.1f} "
            f"{hcam_peak / 2**20:12.2f} {full_state / 2**20:13.1f} {full_peak / 2**20:12.2f}"
        )
    print()
    upper = [i for i, n in enumerate(lengths) if n >= 8192]
    for kind, name in (("hcam", "HCAM"), ("full", "full attention")):
        line = f"{name}: slope of log(time) vs log(length) {slope(lengths, times[kind]):.2f}"
        if len(upper) >= 2:
            tail = slope([lengths[i] for i in upper], [times[kind][i] for i in upper])
            line += f" (8k-{lengths[-1] // 1024}k: {tail:.2f})"
        print(line)
    print(
        "state MB: bytes of the state's tensors (HCAM also stores a summary per chunk); "
        "read MB: peak extra allocation during one read, tracked per aten op."
    )
    if out is not None:
        plot(lengths, times, memory, settings, out)
        print(f"plot: {out}")
    print(f"wall time {time.perf_counter() - started:.0f} s")
    verdicts = []
    if TARGET_LENGTH in lengths:
        i = lengths.index(TARGET_LENGTH)
        ratio = times["full"][i] / times["hcam"][i]
        verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
        verdicts.append(
            f"HCAM {ratio:.1f}x faster than full attention at {TARGET_LENGTH // 1024}k "
            f"({verdict} >= {TARGET_RATIO:.0f}x)"
        )
    hcam_slope = slope(lengths, times["hcam"])
    verdicts.append(
        f"HCAM slope {hcam_slope:.2f} ({'sublinear' if hcam_slope < 1 else 'NOT sublinear'})"
    )
    print("; ".join(verdicts))


if __name__ == "__main__":
    main()
