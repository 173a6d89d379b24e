"""Steps/s of crlgym's Meta-World env vs the raw Meta-World env, interleaved in one run.

Both run the same random actions on the same CW10 task, configured alike (goal shown,
fresh random goal every reset, 200-step episodes), in alternating blocks so machine noise
hits both equally. Prints a table and the overall ratio; the target is an overhead of at
most 3% (ratio >= 0.97).

Usage: ``python benchmarks/env_overhead.py [--steps 5000] [--block 500] [--tasks ...]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from crlgym import envs
from crlgym.envs.sequences import CW10

TARGET_OVERHEAD = 0.03


def make_raw(task: str, seed: int):
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    raw = ALL_V3_ENVIRONMENTS[task]()
    raw._partially_observable = False
    del raw.sawyer_observation_space
    raw._freeze_rand_vec = False
    raw.seeded_rand_vec = True
    raw._set_task_called = True
    raw.max_path_length = 200
    raw.seed(seed)
    raw.reset()
    return raw


def timed_steps(env, actions: np.ndarray) -> float:
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return time.perf_counter() - start


def measure(task: str, steps: int, block: int, seed: int = 0) -> tuple[float, float]:
    """(raw seconds, crlgym seconds) for ``steps`` steps each."""
    raw = make_raw(task, seed)
    ours = envs.make_env(task, seed=seed)
    ours.reset()
    actions = np.random.default_rng(seed).uniform(-1, 1, (steps, 4)).astype(np.float32)
    raw_time = ours_time = 0.0
    for start in range(0, steps, block):
        chunk = actions[start : start + block]
        # Alternate which env goes first so neither always runs on a warmer cache.
        if (start // block) % 2 == 0:
            raw_time += timed_steps(raw, chunk)
            ours_time += timed_steps(ours, chunk)
        else:
            ours_time += timed_steps(ours, chunk)
            raw_time += timed_steps(raw, chunk)
    raw.close()
    ours.close()
    return raw_time, ours_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="random steps per task and env")
    parser.add_argument("--block", type=int, default=500, help="steps per interleaved block")
    parser.add_argument("--tasks", nargs="+", default=list(CW10))
    args = parser.parse_args()
    print(f"{'task':22s} {'raw steps/s':>12s} {'crlgym steps/s':>15s} {'ratio':>7s}")
    total_raw = total_ours = 0.0
    for task in args.tasks:
        name = envs.canonical_task_name(task)
        raw_time, ours_time = measure(name, args.steps, args.block)
        total_raw += raw_time
        total_ours += ours_time
        print(
            f"{name:22s} {args.steps / raw_time:12.0f} {args.steps / ours_time:15.0f} "
            f"{raw_time / ours_time:7.3f}"
        )
    ratio = total_raw / total_ours
    verdict = "meets" if ratio >= 1 - TARGET_OVERHEAD else "MISSES"
    print(
        f"{'all tasks':22s} {len(args.tasks) * args.steps / total_raw:12.0f} "
        f"{len(args.tasks) * args.steps / total_ours:15.0f} {ratio:7.3f}"
    )
    print(
        f"overhead {100 * (1 - ratio):+.1f}% (ratio crlgym/raw steps/s = {ratio:.3f}); "
        f"{verdict} the target of <= {100 * TARGET_OVERHEAD:.0f}%"
    )


if __name__ == "__main__":
    main()
