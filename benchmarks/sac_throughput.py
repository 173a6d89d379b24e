"""Throughput of our `ContinualSAC` vs vanilla stable-baselines3 SAC, interleaved in one run.

Three agents train on the same Meta-World task (default hammer-v3), each on its own env
built the same way and seeded alike:

* ``ours``: `ContinualSAC` configured as plain SAC (single head, no task id in the
  observation, one entropy coefficient, ``layer_norm_first=False``), so its networks are
  exactly SB3's ``MlpPolicy`` with ``net_arch=[256]*4, activation_fn=nn.LeakyReLU``
  (the script checks that both have the same number of parameters);
* ``vanilla``: SB3's ``SAC("MlpPolicy", ...)`` with identical hyperparameters: lr 1e-3,
  batch 128, gamma 0.99, tau 0.005, 50 gradient steps every 50 env steps, buffer 100k,
  the same ``learning_starts`` (= the fill size), ``ent_coef="auto"`` (initial 1.0), the
  same torch thread count (``--threads``);
* ``ours-CW`` (information only): Continual World's configuration (first layer
  Linear -> LayerNorm -> tanh, multi-head with one task and the one-hot task id in the
  observation, per-task entropy coefficient).

How it measures, always through the agents' own ``learn()`` loop:

1. **Collection** (``env steps/s random``): each agent runs ``learn()`` from 0 to
   ``--fill`` steps. Below ``learning_starts`` every action is uniform-random and no
   update happens (checked), so this is env steps + replay insertion + SB3's loop.
2. **Warm-up**: one untimed rollout + update phase per agent (first Adam steps, caches).
3. **Training** (``updates/s`` and ``env steps/s policy``): each agent runs ``learn()``
   for ``--steps`` more steps (one gradient update per env step). ``model.train`` is
   wrapped with a timer, so ``updates/s`` = gradient updates / seconds inside ``train``
   (sampling, forward, backward, optimizer steps, target update, logging), and
   ``env steps/s policy`` = env steps / (``learn`` seconds - ``train`` seconds), i.e.
   collection with the policy choosing the actions.

Both phases run in blocks of ``--block`` steps, alternating the agents and rotating which
goes first in each round, so machine noise (other jobs, thermal state) hits every agent
alike. The ratio ours/vanilla is reported over the whole phase, and the spread of the
per-round ratios shows the noise level: on a shared 2-core machine a few percent, so a
ratio a hair under 1.0 whose per-round range straddles 1.0 is not evidence of a slowdown.

Target: ours/vanilla >= 1.0 for both updates/s and env steps/s (ours is no slower).
With ``--threads`` > 1 the script first checks that multi-threaded torch is not collapsing
because other jobs occupy the cores, and stops if it is.

Usage: ``python benchmarks/sac_throughput.py [--quick] [--task hammer] [--threads 1]``
(defaults take about 2-3 minutes on 2 cores; ``--quick`` about 30 s).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from stable_baselines3 import SAC
from torch import nn
from torch_threads import check_threads

from crlgym import envs
from crlgym.agents.sac import ContinualSAC, SACConfig

HIDDEN = (256, 256, 256, 256)
UPDATE_EVERY = 50
TARGET_RATIO = 1.0


@dataclass
class Timed:
    """One agent and what was measured on it."""

    name: str
    model: Any
    collect_steps: int = 0
    collect_s: float = 0.0
    learn_steps: int = 0
    learn_s: float = 0.0
    train_s: float = 0.0
    updates: int = 0
    round_collect_rates: list[float] = field(default_factory=list)
    round_update_rates: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        # SB3's learn() calls self.train(...): an instance attribute takes precedence.
        original: Callable[..., None] = self.model.train

        def timed_train(gradient_steps: int, batch_size: int = 64) -> None:
            started = time.perf_counter()
            original(gradient_steps=gradient_steps, batch_size=batch_size)
            self.train_s += time.perf_counter() - started
            self.updates += gradient_steps

        self.model.train = timed_train

    def learn(self, steps: int) -> tuple[float, float, int]:
        """Run ``steps`` env steps of learn(); (wall seconds, train seconds, updates)."""
        train_before, updates_before = self.train_s, self.updates
        started = time.perf_counter()
        self.model.learn(steps, reset_num_timesteps=False)
        wall = time.perf_counter() - started
        return wall, self.train_s - train_before, self.updates - updates_before

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.policy.parameters())


def sac_config(cw: bool, fill: int) -> SACConfig:
    return SACConfig(
        hidden_sizes=HIDDEN,
        layer_norm_first=cw,
        multi_head=cw,
        per_task_alpha=cw,
        learning_rate=1e-3,
        batch_size=128,
        gamma=0.99,
        polyak=0.995,
        buffer_size=100_000,
        random_steps=fill,
        update_after=fill,
        update_every=UPDATE_EVERY,
        gradient_steps=UPDATE_EVERY,
        initial_alpha=1.0,
    )


def build_agents(task: str, fill: int, seed: int = 0) -> list[Timed]:
    plain = envs.load_sequence(task, envs.EnvConfig(one_hot_task_id=False))
    with_id = envs.load_sequence(task, envs.EnvConfig(one_hot_task_id=True))

    torch.manual_seed(seed)
    ours = ContinualSAC(plain.make_env(0, seed=seed), 1, sac_config(False, fill), seed=seed)
    ours.on_task_start(0)

    torch.manual_seed(seed)
    vanilla = SAC(
        "MlpPolicy",
        plain.make_env(0, seed=seed),
        learning_rate=1e-3,
        buffer_size=100_000,
        learning_starts=fill,
        batch_size=128,
        tau=0.005,
        gamma=0.99,
        train_freq=(UPDATE_EVERY, "step"),
        gradient_steps=UPDATE_EVERY,
        ent_coef="auto",
        policy_kwargs={"net_arch": list(HIDDEN), "activation_fn": nn.LeakyReLU},
        seed=seed,
        device="cpu",
    )

    torch.manual_seed(seed)
    cw = ContinualSAC(
        with_id.make_env(0, seed=seed), 1, sac_config(True, fill), task_id_dims=1, seed=seed
    )
    cw.on_task_start(0)

    agents = [Timed("ours", ours), Timed("vanilla", vanilla), Timed("ours-CW", cw)]
    if agents[0].parameters != agents[1].parameters:
        raise SystemExit(
            f"architectures differ: ours has {agents[0].parameters} parameters, "
            f"vanilla {agents[1].parameters}"
        )
    return agents


def rotated(agents: list[Timed], round_index: int) -> list[Timed]:
    shift = round_index % len(agents)
    return agents[shift:] + agents[:shift]


def collection_phase(agents: list[Timed], fill: int, block: int) -> None:
    done, round_index = 0, 0
    while done < fill:
        steps = min(block, fill - done)
        for agent in rotated(agents, round_index):
            wall, _, updates = agent.learn(steps)
            if updates:
                raise RuntimeError(f"{agent.name} updated during the collection phase")
            agent.collect_steps += steps
            agent.collect_s += wall
            agent.round_collect_rates.append(steps / wall)
        done += steps
        round_index += 1


def training_phase(agents: list[Timed], steps: int, block: int) -> None:
    for agent in agents:  # warm-up, untimed
        agent.learn(UPDATE_EVERY)
    agent_train_s = {agent.name: agent.train_s for agent in agents}
    agent_updates = {agent.name: agent.updates for agent in agents}
    done, round_index = 0, 0
    while done < steps:
        chunk = min(block, steps - done)
        for agent in rotated(agents, round_index):
            wall, train_s, updates = agent.learn(chunk)
            agent.learn_steps += chunk
            agent.learn_s += wall
            agent.round_update_rates.append(updates / train_s)
        done += chunk
        round_index += 1
    for agent in agents:  # count only the timed part
        agent.train_s -= agent_train_s[agent.name]
        agent.updates -= agent_updates[agent.name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="hammer", help="Meta-World task (default hammer)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--fill", type=int, help="random collection steps (default 4000)")
    parser.add_argument("--steps", type=int, help="timed training steps = updates (2500)")
    parser.add_argument("--block", type=int, help="steps per interleaved block (500)")
    parser.add_argument("--quick", action="store_true", help="about 30 s instead of 2-3 min")
    args = parser.parse_args()
    fill = args.fill or (500 if args.quick else 4000)
    steps = args.steps or (450 if args.quick else 2500)
    block = args.block or (150 if args.quick else 500)
    if steps % UPDATE_EVERY or block % UPDATE_EVERY or fill % UPDATE_EVERY:
        parser.error(f"--fill, --steps and --block must be multiples of {UPDATE_EVERY}")

    check_threads(args.threads)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    agents = build_agents(args.task, fill)
    task = envs.canonical_task_name(args.task)
    print(
        f"{task}, torch threads {torch.get_num_threads()}, 4x256 MLPs, batch 128, "
        f"{UPDATE_EVERY} updates every {UPDATE_EVERY} steps; "
        f"collection {fill} random steps, training {steps} steps = {steps} updates "
        f"per agent, blocks of {block}"
    )
    collection_phase(agents, fill, block)
    training_phase(agents, steps, block)
    if torch.get_num_threads() != args.threads:
        raise RuntimeError(f"torch threads changed to {torch.get_num_threads()} during the run")

    header = (
        f"{'agent':9s} {'params':>8s} {'env steps/s':>12s} {'env steps/s':>12s} "
        f"{'updates/s':>10s} {'ms/update':>10s} {'learn steps/s':>14s}"
    )
    print()
    print(header)
    print(f"{'':9s} {'':8s} {'(random)':>12s} {'(policy)':>12s} {'':10s} {'':10s} {'(total)':>14s}")
    rates: dict[str, tuple[float, float]] = {}
    for agent in agents:
        random_rate = agent.collect_steps / agent.collect_s
        policy_rate = agent.learn_steps / (agent.learn_s - agent.train_s)
        update_rate = agent.updates / agent.train_s
        rates[agent.name] = (update_rate, random_rate)
        print(
            f"{agent.name:9s} {agent.parameters:8d} {random_rate:12.0f} {policy_rate:12.0f} "
            f"{update_rate:10.1f} {1000 / update_rate:10.2f} "
            f"{agent.learn_steps / agent.learn_s:14.1f}"
        )
    ours, vanilla, cw = agents
    print()
    for label, first, rounds_of in (
        ("updates/s", ours, "round_update_rates"),
        ("env steps/s (random)", ours, "round_collect_rates"),
        ("updates/s", cw, "round_update_rates"),
    ):
        ratios = [
            a / b
            for a, b in zip(getattr(first, rounds_of), getattr(vanilla, rounds_of), strict=True)
        ]
        print(
            f"per-round {label} ratio {first.name}/vanilla: median "
            f"{statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f} "
            f"over {len(ratios)} rounds"
        )
    print(f"wall time {time.perf_counter() - started:.0f} s")
    update_ratio = rates["ours"][0] / rates["vanilla"][0]
    step_ratio = rates["ours"][1] / rates["vanilla"][1]
    meets = update_ratio >= TARGET_RATIO and step_ratio >= TARGET_RATIO
    print(
        f"ratio ours/vanilla: updates/s {update_ratio:.2f}, env steps/s {step_ratio:.2f} "
        f"(target >= {TARGET_RATIO:.1f}: {'meets' if meets else 'MISSES'})"
    )


if __name__ == "__main__":
    main()
