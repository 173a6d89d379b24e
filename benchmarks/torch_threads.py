"""Refuse to time multi-threaded torch on a machine whose cores are busy."""

from __future__ import annotations

import time

import torch
from torch import nn


def thread_slowdown(threads: int, seconds: float = 0.5) -> float:
    """How much slower a 128x256x256 linear layer runs on ``threads`` threads than on 1.

    On a machine whose cores are busy with other jobs, torch's multi-threaded kernels wait
    for descheduled threads at every operation and can run tens of times slower.
    """
    layer, inputs = nn.Linear(256, 256), torch.randn(128, 256)
    per_call = {}
    with torch.no_grad():
        for count in (1, threads):
            torch.set_num_threads(count)
            calls, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                layer(inputs)
                calls += 1
            per_call[count] = (time.perf_counter() - started) / calls
    torch.set_num_threads(threads)
    return per_call[threads] / per_call[1]


def check_threads(threads: int) -> None:
    if threads > 1 and (slowdown := thread_slowdown(threads)) > 2.0:
        raise SystemExit(
            f"torch on {threads} threads runs {slowdown:.0f}x slower than on 1 here: the "
            "cores are busy with other jobs, so timings would not be representative. "
            "Rerun when the machine is idle, or with --threads 1."
        )
