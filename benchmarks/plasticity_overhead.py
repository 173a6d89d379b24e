"""Cost of plasticity metrics and of ReDo per call, as a share of training wall time.

A Continual World-sized agent (4x256 networks, multi-head, batch 128, replay ratio 1) on
CW10's first task gets a filled replay buffer; then, in interleaved rounds, we time

- an update phase (50 gradient steps through ``agent.train``), giving seconds per update;
- one metrics call (FAU, dormant ratio, effective rank, weight and gradient norms of actor
  and critic on the 256-sample probe batch);
- one ReDo call (trace, record activations, recycle dormant units of actor and critic).

Share of a call = its time / (interval x seconds of training per env step), where training
per env step counts only the updates (env stepping and evaluation would make the share
smaller, so the figure is an upper bound). Intervals: metrics at the default
``metrics_every`` (10k env steps); ReDo every 1k env steps (Sokar et al. recycle every
1k gradient steps; there is no default since resets are off unless asked).
Target (issue 5): <= 3% each.

Usage: ``python benchmarks/plasticity_overhead.py [--rounds 5] [--threads 1]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch_threads import check_threads

from crlgym import envs
from crlgym.agents.plasticity import PlasticityConfig
from crlgym.agents.sac import ContinualSAC, SACConfig

FILL_STEPS = 2_000
TARGET_SHARE = 0.03


def prepared_agent(plasticity: PlasticityConfig) -> ContinualSAC:
    """A CW-sized agent inside task 0 with a filled buffer and a few updates done."""
    sequence = envs.load_sequence("CW10", envs.EnvConfig(one_hot_task_id=True))
    config = SACConfig(random_steps=FILL_STEPS, update_after=FILL_STEPS, buffer_size=20_000)
    torch.manual_seed(0)
    agent = ContinualSAC(
        sequence.make_env(0, seed=0),
        num_tasks=sequence.num_tasks,
        config=config,
        plasticity=plasticity,
        task_id_dims=sequence.num_tasks,
        seed=0,
    )
    agent.on_task_start(0, 1_000_000)
    agent.learn(FILL_STEPS, reset_num_timesteps=False)  # random steps only: no updates
    agent.train(gradient_steps=50, batch_size=agent.batch_size)
    return agent


def seconds_per_update(agent: ContinualSAC, phases: int) -> float:
    started = time.perf_counter()
    for _ in range(phases):
        agent._update(50, agent.batch_size)
    return (time.perf_counter() - started) / (50 * phases)


def seconds_per_call(function, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--phases", type=int, default=4, help="update phases timed per round")
    parser.add_argument("--calls", type=int, default=5, help="metric/ReDo calls per round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--redo-every", type=int, default=1_000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    check_threads(args.threads)
    plasticity = PlasticityConfig(reset="redo", reset_every=args.redo_every)
    agent = prepared_agent(plasticity)
    controller = agent.plasticity
    timings: dict[str, list[float]] = {"update": [], "metrics": [], "redo": []}
    step = agent.num_timesteps
    for _ in range(args.rounds):
        timings["update"].append(seconds_per_update(agent, args.phases))
        timings["metrics"].append(seconds_per_call(lambda: controller.measure(step), args.calls))
        timings["redo"].append(
            seconds_per_call(lambda: controller.reset(step, reason="benchmark"), args.calls)
        )
    update = float(np.median(timings["update"]))
    metrics_call = float(np.median(timings["metrics"]))
    redo_call = float(np.median(timings["redo"]))
    default_interval = PlasticityConfig().metrics_every or 0
    ratio = agent.config.gradient_steps / agent.config.update_every
    per_env_step = update * ratio
    rows = [
        ("metrics", metrics_call, default_interval),
        ("redo", redo_call, args.redo_every),
    ]
    print(f"update: {1000 * update:.2f} ms/gradient step (replay ratio {ratio:g}, 1 update/step)")
    print(f"{'work':8s} {'ms/call':>9s} {'every':>8s} {'share':>8s} {'target':>7s}")
    for name, seconds, interval in rows:
        share = seconds / (interval * per_env_step)
        verdict = "meets" if share <= TARGET_SHARE else "MISSES"
        print(
            f"{name:8s} {1000 * seconds:9.2f} {interval:8d} {100 * share:7.3f}% "
            f"{'<=3%':>7s} {verdict}"
        )
    recycled = [e.details.get("recycled_total", 0) for e in controller.events]
    print(f"ReDo recycled per call (tau={plasticity.redo_tau}): {recycled[:3]} ...")


if __name__ == "__main__":
    main()
