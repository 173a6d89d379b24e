"""Success rate of Meta-World's scripted experts on a sequence's tasks, within 200 and 500 steps.

Usage: ``python benchmarks/expert_success.py [--sequence CW10] [--episodes 50]``
"""

from __future__ import annotations

import argparse

from crlgym import envs


def first_success_step(task: str, seed: int, limit: int) -> int | None:
    """Step (1-based) of the first success in an episode of ``limit`` steps, or None."""
    env = envs.make_env(task, envs.EnvConfig(episode_length=limit))
    expert = envs.expert_policy(task)
    observation, _ = env.reset(seed=seed)
    for step in range(1, limit + 1):
        observation, _, _, _, info = env.step(expert(observation))
        if info["success"]:
            return step
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequence", default="CW10")
    parser.add_argument("--episodes", type=int, default=50)
    args = parser.parse_args()
    sequence = envs.load_sequence(args.sequence)
    print(f"seeds 0..{args.episodes - 1}")
    print(f"{'task':22s} {'<=200 steps':>12s} {'<=500 steps':>12s} {'seeds 0-9, <=200':>17s}")
    for task in dict.fromkeys(sequence.task_names):
        steps = [first_success_step(task, seed, 500) for seed in range(args.episodes)]
        within_200 = [s is not None and s <= 200 for s in steps]
        within_500 = [s is not None for s in steps]
        print(
            f"{task:22s} {sum(within_200) / len(steps):12.2f} {sum(within_500) / len(steps):12.2f}"
            f" {sum(within_200[:10]):>14d}/10"
        )


if __name__ == "__main__":
    main()
