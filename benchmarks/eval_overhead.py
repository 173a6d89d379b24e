"""Share of a run's wall time spent evaluating: the quick start and Continual World defaults.

No full training run is needed; the script measures the two costs that make up a run and
adds them up along each configuration's schedule:

1. **Training cost**, from a short segment of `ContinualSAC` on CW10's first task at
   Continual World settings (4x256 networks, LayerNorm first layer, multi-head with the
   10-task one-hot id, batch 128, 50 updates every 50 steps = 1 update per env step, the
   run's torch thread count): ``--fill`` uniform-random steps without updates give
   seconds per *random* env step; after an untimed warm-up, ``--train-steps`` steps of
   ``learn()`` with ``train`` wrapped in a timer give seconds per *policy* env step
   (``learn`` time minus ``train`` time, per step) and seconds per gradient update
   (``train`` time per update). The replay buffer is 100k (not 1M) to spare memory; it
   holds only the segment's few thousand transitions either way.
2. **Evaluation cost**: one full `crlgym.experiments.evaluation.Evaluator.evaluate` of every task
   of the sequence, with the configuration's stochastic + deterministic episodes, of an
   untrained `ContinualSAC` through the runner's policy function
   (``agent.policy._predict``). The evaluation envs are built first and timed apart (a
   run builds them once). Meta-World episodes never end early (``terminated`` is always
   False; they are truncated at 200 steps), so every episode is 200 steps whatever the
   policy does: a trained policy evaluates the same number of steps, and only the physics
   cost per step (contacts) can differ a little. ``--eval-episodes`` shrinks the CW10
   evaluation and scales its time linearly to the full episode count (stated in the
   output); by default the real thing is measured.

Then, following `crlgym.experiments.runner` (an evaluation at step 0, every ``eval_every`` steps
inside a task, and one after every task end):

* per period: ``eval / (eval + training of eval_every steps)`` in the steady state (policy
  actions, one update per env step);
* whole run: all evaluations / (all evaluations + all training), with each task's random
  steps and the updates starting ``update_after`` steps into each task.

Training time here excludes checkpoints, videos and the progress display, which the real
run also spends, so the shares are slight overestimates. Target: <= 15%. Because faster
updates raise the share, the script also prints the update cost at which each
configuration's whole-run share would reach the target.

Torch threads default to the run's (``TrainConfig.threads``). If the cores are busy with
other jobs, multi-threaded torch collapses (every kernel waits for a descheduled thread);
the script detects that and stops rather than report such timings: use ``--threads 1``
then, and keep in mind that on an idle machine with more threads updates are faster and
the shares higher.

Usage: ``python benchmarks/eval_overhead.py [--threads N] [--eval-episodes K] [--quick]``
(about 1-2 minutes; ``--quick`` about 30 s).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch_threads import check_threads

from crlgym import envs
from crlgym.agents.sac import ContinualSAC, SACConfig
from crlgym.experiments.config import QUICKSTART, TrainConfig, build_config
from crlgym.experiments.evaluation import Evaluator

TARGET_SHARE = 0.15
MEASURE_BUFFER = 100_000


@dataclass
class TrainCost:
    """Seconds per random env step, per policy env step and per gradient update."""

    random_step: float
    policy_step: float
    update: float


@dataclass
class EvalCost:
    """Seconds of one full evaluation (scaled if measured with fewer episodes)."""

    seconds: float
    build_seconds: float
    env_steps: int
    num_tasks: int
    note: str


def measure_training(threads: int, fill: int, steps: int, seed: int = 0) -> TrainCost:
    torch.set_num_threads(threads)
    sequence = envs.load_sequence("CW10", envs.EnvConfig(one_hot_task_id=True))
    config = replace(
        TrainConfig().sac, random_steps=fill, update_after=fill, buffer_size=MEASURE_BUFFER
    )
    agent = ContinualSAC(
        sequence.make_env(0, seed=seed),
        num_tasks=sequence.num_tasks,
        config=config,
        task_id_dims=sequence.num_tasks,
        seed=seed,
    )
    agent.on_task_start(0)
    timing = {"train": 0.0, "updates": 0}
    original = agent.train

    def timed_train(gradient_steps: int, batch_size: int = 64) -> None:
        started = time.perf_counter()
        original(gradient_steps=gradient_steps, batch_size=batch_size)
        timing["train"] += time.perf_counter() - started
        timing["updates"] += gradient_steps

    agent.train = timed_train  # type: ignore[method-assign]

    started = time.perf_counter()
    agent.learn(fill, reset_num_timesteps=False)
    random_step = (time.perf_counter() - started) / fill
    if timing["updates"]:
        raise RuntimeError("updates happened during the random phase")
    agent.learn(config.update_every, reset_num_timesteps=False)  # warm-up, untimed
    timing["train"], timing["updates"] = 0.0, 0
    started = time.perf_counter()
    agent.learn(steps, reset_num_timesteps=False)
    wall = time.perf_counter() - started
    return TrainCost(
        random_step=random_step,
        policy_step=(wall - timing["train"]) / steps,
        update=timing["train"] / timing["updates"],
    )


def measure_evaluation(
    spec: str,
    sac: SACConfig,
    stochastic: int,
    deterministic: int,
    measured_stochastic: int,
    measured_deterministic: int,
    threads: int,
    seed: int = 0,
) -> EvalCost:
    """One evaluation of every task of ``spec`` by an untrained multi-head agent."""
    torch.set_num_threads(threads)
    sequence = envs.load_sequence(spec, envs.EnvConfig(one_hot_task_id=True))
    agent = ContinualSAC(
        sequence.make_env(0, seed=seed),
        num_tasks=sequence.num_tasks,
        config=replace(sac, buffer_size=1_000),
        task_id_dims=sequence.num_tasks,
        seed=seed,
    )

    def policy(observation: np.ndarray, deterministic: bool) -> np.ndarray:
        tensor = torch.as_tensor(observation, dtype=torch.float32).unsqueeze(0)
        return agent.policy._predict(tensor, deterministic=deterministic)[0].numpy()

    evaluator = Evaluator(sequence, measured_stochastic, measured_deterministic, seed)
    started = time.perf_counter()
    for task_index in range(sequence.num_tasks):
        evaluator._env(task_index)  # built once per run; kept out of the per-evaluation time
    build_seconds = time.perf_counter() - started
    _, seconds = evaluator.evaluate(policy)
    evaluator.close()
    measured = measured_stochastic + measured_deterministic
    full = stochastic + deterministic
    episode_length = 200
    note = f"measured {measured} episodes/task"
    if measured != full:
        note += f", scaled x{full / measured:.2f} to {full}"
    return EvalCost(
        seconds=seconds * full / measured,
        build_seconds=build_seconds,
        env_steps=sequence.num_tasks * full * episode_length,
        num_tasks=sequence.num_tasks,
        note=note,
    )


def evaluation_count(steps_per_task: int, num_tasks: int, eval_every: int) -> int:
    """Evaluations of a run, as `crlgym.experiments.runner` schedules them."""
    count = 1  # before training
    for task_index in range(num_tasks):
        start, end = task_index * steps_per_task, (task_index + 1) * steps_per_task
        inside = end // eval_every - start // eval_every - (1 if end % eval_every == 0 else 0)
        count += inside + 1  # periodic ones inside the task (not its last step), task end
    return count


def run_training_seconds(config: TrainConfig, num_tasks: int, cost: TrainCost) -> float:
    """Training seconds of a whole run (random steps, policy steps, updates per task)."""
    sac, steps = config.sac, config.steps_per_task
    random_steps = min(sac.random_steps, steps)
    rollouts = steps // sac.update_every
    # SB3 trains after a rollout when the task's step count exceeds update_after.
    training_rollouts = sum(
        1 for k in range(1, rollouts + 1) if k * sac.update_every > sac.update_after
    )
    updates = training_rollouts * sac.gradient_steps
    per_task = (
        random_steps * cost.random_step
        + (steps - random_steps) * cost.policy_step
        + updates * cost.update
    )
    return num_tasks * per_task


def period_training_seconds(config: TrainConfig, cost: TrainCost) -> float:
    """Training seconds of one ``eval_every`` period in the steady state."""
    sac = config.sac
    updates = config.eval_every // sac.update_every * sac.gradient_steps
    return config.eval_every * cost.policy_step + updates * cost.update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_threads = TrainConfig().threads
    parser.add_argument(
        "--threads", type=int, help=f"torch threads (default: the run's, {default_threads})"
    )
    parser.add_argument("--fill", type=int, help="random steps timed (default 1000)")
    parser.add_argument("--train-steps", type=int, help="updating steps timed (default 2000)")
    parser.add_argument(
        "--eval-episodes",
        type=int,
        help="stochastic episodes per task actually run for CW10 (default: all 10), "
        "plus the deterministic one; the time is scaled to the full count",
    )
    parser.add_argument("--quick", action="store_true", help="about 30 s, CW10 eval scaled")
    args = parser.parse_args()
    threads = args.threads or default_threads
    fill = args.fill or (500 if args.quick else 1000)
    train_steps = args.train_steps or (500 if args.quick else 2000)

    check_threads(threads)
    started = time.perf_counter()
    quick = build_config(QUICKSTART)
    cw = TrainConfig()
    configs = {"quick start": (quick, quick.sequence), "CW10 defaults": (cw, cw.sequence)}
    print(f"torch threads {threads}; measuring training on CW10 task 0 ...", flush=True)
    cost = measure_training(threads, fill, train_steps)
    print(
        f"training: {1000 * cost.random_step:.3f} ms/random step, "
        f"{1000 * cost.policy_step:.3f} ms/policy step, {1000 * cost.update:.2f} ms/update "
        f"({fill} random + {train_steps} updating steps measured)"
    )

    rows = []
    for name, (config, spec) in configs.items():
        stochastic, deterministic = config.eval_episodes, config.eval_deterministic_episodes
        measured_stochastic = stochastic
        if name == "CW10 defaults":
            if args.eval_episodes is not None:
                measured_stochastic = args.eval_episodes
            elif args.quick:
                measured_stochastic = 1
        evaluation = measure_evaluation(
            spec, config.sac, stochastic, deterministic, measured_stochastic, deterministic, threads
        )
        num_tasks = evaluation.num_tasks
        period = period_training_seconds(config, cost)
        total_train = run_training_seconds(config, num_tasks, cost)
        count = evaluation_count(config.steps_per_task, num_tasks, config.eval_every)
        period_share = evaluation.seconds / (evaluation.seconds + period)
        run_share = count * evaluation.seconds / (count * evaluation.seconds + total_train)
        rows.append((name, config, num_tasks, evaluation, period, count, period_share, run_share))
        print(
            f"{name}: one evaluation = {evaluation.seconds:.1f} s "
            f"({num_tasks} tasks x {stochastic}+{deterministic} episodes x 200 steps = "
            f"{evaluation.env_steps} env steps, {evaluation.note}; "
            f"building the eval envs {evaluation.build_seconds:.1f} s once)",
            flush=True,
        )

    print()
    print(
        f"{'configuration':14s} {'tasks':>5s} {'eval_every':>10s} {'eval s':>7s} "
        f"{'train s/period':>14s} {'share/period':>12s} {'evals/run':>9s} {'run h':>7s} "
        f"{'share/run':>9s}"
    )
    for name, config, num_tasks, evaluation, period, count, period_share, run_share in rows:
        total = count * evaluation.seconds + run_training_seconds(config, num_tasks, cost)
        print(
            f"{name:14s} {num_tasks:5d} {config.eval_every:10d} {evaluation.seconds:7.1f} "
            f"{period:14.1f} {100 * period_share:11.1f}% {count:9d} {total / 3600:7.2f} "
            f"{100 * run_share:8.1f}%"
        )
    print()
    print(
        "share/period: one evaluation vs eval_every steps of steady-state training; "
        "share/run: every evaluation (step 0, periodic, task ends) vs all training. "
        "Checkpoints, videos and the progress display are not counted as training."
    )
    for name, config, num_tasks, evaluation, *_ in rows:
        # share/run = n E / (n E + steps + U u): the update cost u at which it hits the target
        steps_only = run_training_seconds(config, num_tasks, replace(cost, update=0.0))
        updates = run_training_seconds(config, num_tasks, TrainCost(0.0, 0.0, 1.0))
        evals = evaluation_count(config.steps_per_task, num_tasks, config.eval_every)
        needed = evals * evaluation.seconds * (1 - TARGET_SHARE) / TARGET_SHARE
        print(
            f"{name}: share/run reaches {100 * TARGET_SHARE:.0f}% if an update takes "
            f"{1000 * (needed - steps_only) / updates:.1f} ms or less "
            f"(measured {1000 * cost.update:.1f} ms at {threads} thread(s))"
        )
    print(f"wall time {time.perf_counter() - started:.0f} s")
    verdicts = []
    for name, _, _, _, _, _, period_share, run_share in rows:
        worst = max(period_share, run_share)
        verdict = "meets" if worst <= TARGET_SHARE else "MISSES"
        verdicts.append(
            f"{name} {100 * period_share:.1f}%/period, {100 * run_share:.1f}%/run ({verdict})"
        )
    print(f"evaluation share: {'; '.join(verdicts)} (target <= {100 * TARGET_SHARE:.0f}%)")


if __name__ == "__main__":
    main()
