"""Regenerate ``envs/data/dmc_reference_returns.json``: the returns that define DMControl's
normalized score (0 = random policy, 1 = expert).

* The 26 suite tasks that L2M (Schmied et al., NeurIPS 2023) normalizes use L2M's published
  references: the random policy's return and the mean return of its expert datasets.
* Every other task: the random return measured here (uniform actions, ``--episodes``
  seeded episodes) and the suite's maximum return (rewards lie in [0, 1] per step, 1000
  steps) as the expert reference, since no published expert exists for them here.

Usage: ``python benchmarks/dmc_reference_returns.py [--episodes 5]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from crlgym import envs
from crlgym.envs.dmc_env import DMControlEnv
from crlgym.envs.dmc_specs import load_dmc_specs

# (random return, expert-dataset mean return), L2M's table of data-normalized scores.
L2M_REFERENCES: dict[str, tuple[float, float]] = {
    "acrobot-swingup": (8.351, 4.877),
    "ball_in_cup-catch": (0.0, 926.719),
    "cartpole-balance": (350.391, 938.506),
    "cartpole-swingup": (27.414, 766.15),
    "cheetah-run": (3.207, 324.045),
    "finger-spin": (0.2, 834.629),
    "finger-turn_easy": (57.8, 800.645),
    "finger-turn_hard": (40.6, 676.144),
    "fish-swim": (67.675, 78.212),
    "fish-upright": (229.406, 547.962),
    "hopper-hop": (0.076, 62.794),
    "hopper-stand": (1.296, 266.783),
    "humanoid-run": (0.741, 0.794),
    "humanoid-stand": (4.327, 5.053),
    "humanoid-walk": (0.913, 1.194),
    "manipulator-bring_ball": (0.0, 0.429),
    "manipulator-insert_ball": (0.0, 43.307),
    "manipulator-insert_peg": (0.235, 78.477),
    "pendulum-swingup": (0.0, 614.491),
    "point_mass-easy": (1.341, 779.273),
    "reacher-easy": (33.0, 849.241),
    "reacher-hard": (8.0, 779.947),
    "swimmer-swimmer15": (78.817, 152.297),
    "swimmer-swimmer6": (229.834, 167.082),
    "walker-run": (23.427, 344.794),
    "walker-stand": (134.701, 816.322),
    "walker-walk": (30.193, 773.174),
}
# L2M's expert datasets failed on these (expert <= random or ~random): a normalized score
# against them is meaningless, so they fall back to the measured random / maximum return.
L2M_UNUSABLE = {
    "acrobot-swingup", "humanoid-run", "humanoid-stand", "humanoid-walk",
    "manipulator-bring_ball", "swimmer-swimmer6", "fish-swim",
}  # fmt: skip
MAX_RETURN = 1000.0


def random_return(task: str, episodes: int) -> float:
    env = DMControlEnv(task)
    rng = np.random.default_rng(0)
    returns = []
    for episode in range(episodes):
        env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            action = rng.uniform(-1.0, 1.0, size=env.action_space.shape)
            _, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=5)
    args = parser.parse_args()
    table = {}
    for task in load_dmc_specs():
        if task in L2M_REFERENCES and task not in L2M_UNUSABLE:
            rand, expert = L2M_REFERENCES[task]
            table[task] = {"random": rand, "expert": expert, "source": "L2M"}
        else:
            rand = round(random_return(task, args.episodes), 3)
            table[task] = {"random": rand, "expert": MAX_RETURN, "source": "measured+max"}
        print(f"{task:28s} {table[task]}", flush=True)
    target = Path(envs.__file__).with_name("data") / "dmc_reference_returns.json"
    header = {
        "description": (
            "normalized score = (return - random) / (expert - random). source 'L2M': "
            "Schmied et al. 2023's random and expert-dataset returns; 'measured+max': "
            "uniform-random return measured by benchmarks/dmc_reference_returns.py "
            f"({args.episodes} seeded episodes) and the suite's maximum return 1000."
        ),
        "tasks": table,
    }
    target.write_text(json.dumps(header, indent=1) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
