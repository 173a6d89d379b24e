"""Cost of each continual-learning method per gradient update, relative to fine-tuning.

Every method runs on the same Continual World-sized agent (4x256 networks, multi-head,
batch 128) on the CW10 sequence: task 0 is filled with random steps and ended (so the
method consolidates: snapshots, Fisher, masks, memories), then task 1 starts and
``--updates`` gradient updates are timed through ``agent.train``. Methods are timed in
interleaved rounds so machine noise hits all alike. PackNet is timed outside its
retraining phase. Targets (issue 4): EWC/L2/MAS <= 1.3x, PackNet <= 1.2x.

Usage: ``python benchmarks/method_overhead.py [--updates 200] [--rounds 3] [--threads 1]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch_threads import check_threads

from crlgym import envs
from crlgym.agents.methods import METHODS, make_method
from crlgym.agents.sac import ContinualSAC, SACConfig

TARGETS = {"l2": 1.3, "ewc": 1.3, "mas": 1.3, "packnet": 1.2}
FILL_STEPS = 2_000


def prepared_agent(method: str, sequence: envs.TaskSequence) -> ContinualSAC:
    """An agent that finished task 0 and is inside task 1 with a filled buffer."""
    config = SACConfig(random_steps=FILL_STEPS, update_after=FILL_STEPS, buffer_size=20_000)
    torch.manual_seed(0)
    agent = ContinualSAC(
        sequence.make_env(0, seed=0),
        num_tasks=sequence.num_tasks,
        config=config,
        method=make_method(method),
        task_id_dims=sequence.num_tasks,
        seed=0,
    )
    budget = 10 * FILL_STEPS  # long enough that PackNet is not yet retraining in task 1
    for task_index in (0, 1):
        if task_index:
            agent.set_env(sequence.make_env(task_index, seed=task_index))
        agent.on_task_start(task_index, budget)
        agent.learn(FILL_STEPS, reset_num_timesteps=False)  # random steps only: no updates
        if task_index == 0:
            agent.on_task_end(task_index)
    return agent


def time_updates(agent: ContinualSAC, updates: int) -> float:
    started = time.perf_counter()
    for _ in range(updates // 50):
        agent.train(gradient_steps=50, batch_size=agent.batch_size)
    return (time.perf_counter() - started) / updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200, help="updates per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    check_threads(args.threads)
    sequence = envs.load_sequence("CW10", envs.EnvConfig(one_hot_task_id=True))
    agents = {name: prepared_agent(name, sequence) for name in args.methods}
    seconds: dict[str, list[float]] = {name: [] for name in agents}
    for round_index in range(args.rounds):
        order = (
            list(agents)[round_index % len(agents) :] + list(agents)[: round_index % len(agents)]
        )
        for name in order:
            seconds[name].append(time_updates(agents[name], args.updates))
    base = float(np.median(seconds["finetune"]))
    print(f"{'method':10s} {'ms/update':>10s} {'ratio':>7s} {'target':>7s}")
    for name, values in seconds.items():
        ratio = float(np.median(values)) / base
        target = TARGETS.get(name)
        verdict = "" if target is None else ("meets" if ratio <= target else "MISSES")
        target_text = f"<={target}" if target else ""
        milliseconds = 1000 * float(np.median(values))
        print(f"{name:10s} {milliseconds:10.2f} {ratio:7.2f} {target_text:>7s} {verdict}")


if __name__ == "__main__":
    main()
