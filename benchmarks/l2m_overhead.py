"""What L2M's modulation costs: acting latency, trainable parameters per task, pretraining speed.

1. Inference latency of the modulated model against the frozen base it modulates, on the same
   inputs: a 200-step online episode (`act` at every env step, as evaluation does; the query
   and selection of the first ``context`` steps included), those first ``context`` steps alone
   (where the preliminary selection runs the per-sample modulation and the held one is
   merged into the weights, agents/l2m_pool.py), and one training-shaped forward with per-sample
   entries (16 episodes x ``context`` steps, no merging possible). Base and modulated runs
   alternate round by round so that machine noise hits both alike; each measurement is the
   mean over repetitions and the table shows the median over rounds and the ratio. Target:
   modulated / base <= 1.10.
2. Trainable parameters per task (one pool entry: key + the modulators of every block) as a
   share of the base model. Target: <= 2%.
3. Pretraining throughput of a preset (samples/s, a sample = one timestep of one episode
   with its 4 tokens) on synthetic episodes of 200 steps in L2M's 95-d / 6-d padded space,
   with random segments (the presets' sampling) and sequential ones.

Weights are random (latency and counts do not depend on them). Defaults: 1 torch thread.

Usage: ``python benchmarks/l2m_overhead.py [--model small|paper] [--rounds 7] [--quick]``
(``--quick``: fewer rounds and updates, a few seconds).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from crlgym.agents.dt import DecisionTransformerAgent
from crlgym.agents.dt_model import DecisionTransformer
from crlgym.agents.l2m import L2MAgent, L2MConfig, PretrainedModel
from crlgym.envs.padding import build_layout
from crlgym.experiments.pretrain import PRESETS

EPISODE_STEPS = 200
"""Steps of synthetic episodes and of the timed acting episode (Meta-World's length)."""


def synthetic_episodes(count: int, observation_dim: int, action_dim: int, seed: int = 0) -> list:
    generator = np.random.default_rng(seed)
    return [
        {
            "observations": generator.normal(size=(EPISODE_STEPS + 1, observation_dim)).astype(
                np.float32
            ),
            "actions": generator.uniform(-1, 1, size=(EPISODE_STEPS, action_dim)).astype(
                np.float32
            ),
            "rewards": generator.uniform(0, 1, size=EPISODE_STEPS),
        }
        for _ in range(count)
    ]


def make_pretrained(model: str) -> PretrainedModel:
    layout = build_layout(["reach"])  # Meta-World + L2M's DMControl keys: 95-d, 6-d actions
    config = PRESETS[model]
    torch.manual_seed(0)
    network = DecisionTransformer(layout.observation_dim, layout.action_dim, config)
    return PretrainedModel(
        config=config,
        layout=layout,
        tasks=["reach-v3"],
        target_returns=[1.0],
        state_dict=network.state_dict(),
        preset=model,
    )


def make_agent(pretrained: PretrainedModel, mode: str, modulator: str = "lora") -> L2MAgent:
    episodes = synthetic_episodes(
        4, pretrained.layout.observation_dim, pretrained.layout.action_dim
    )
    return L2MAgent(
        pretrained,
        num_tasks=1,
        config=L2MConfig(l2m_mode=mode, modulator=modulator),
        episodes_of=lambda _task: episodes,
        reward_scales=[1.0],
        target_returns={0: 1.0},
    )


def time_call(function: Callable[[], None], repeats: int) -> float:
    function()  # untimed warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def acting_episode(agent: L2MAgent, observations: np.ndarray) -> Callable[[], None]:
    def run() -> None:
        agent.start_episode(0)
        for observation in observations:
            agent.act(observation, deterministic=True)
            agent.observe_reward(0.5)

    return run


def segment_forward(agent: L2MAgent, batch: int) -> Callable[[], None]:
    config = agent.config
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(batch, config.context, agent.observation_dim, generator=generator)
    actions = torch.rand(batch, config.context, agent.action_dim, generator=generator) * 2 - 1
    returns = torch.rand(batch, config.context, generator=generator)
    pool = agent.pool
    selection = None if pool is None else torch.zeros(batch, 1, dtype=torch.long)

    @torch.no_grad()
    def run() -> None:
        context = agent.model.initial_context(batch, "cpu")
        if pool is None:
            agent.model.segment(returns, states, actions, returns, 0, context)
        else:
            assert selection is not None
            with pool.selected(selection):
                agent.model.segment(returns, states, actions, returns, 0, context)

    return run


def latency(model: str, rounds: int, steps: int, repeats: int) -> None:
    pretrained = make_pretrained(model)
    agents = {
        "base": make_agent(pretrained, "full"),  # the pretrained model, unmodulated
        "lora": make_agent(pretrained, "l2m", "lora"),
        "ia3": make_agent(pretrained, "l2m", "ia3"),
    }
    observations = np.random.default_rng(1).normal(size=(steps, pretrained.layout.observation_dim))
    observations = observations.astype(np.float32)
    context = pretrained.config.context
    kinds = {
        f"act ({steps}-step episode)": lambda agent: acting_episode(agent, observations),
        f"act (first {context} steps)": lambda agent: acting_episode(agent, observations[:context]),
        "forward (16 x context)": lambda agent: segment_forward(agent, 16),
    }
    threads = torch.get_num_threads()
    print(f"\n{model}: latency, median over {rounds} interleaved rounds ({threads} thread(s))")
    print(
        f"{'measurement':<28}{'base ms':>10}{'lora ms':>10}{'ia3 ms':>10}{'lora x':>8}{'ia3 x':>8}"
    )
    for label, build in kinds.items():
        calls = {name: build(agent) for name, agent in agents.items()}
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(rounds):
            for name, call in calls.items():
                times[name].append(time_call(call, repeats))
        median = {name: statistics.median(values) * 1e3 for name, values in times.items()}
        print(
            f"{label:<28}{median['base']:>10.3f}{median['lora']:>10.3f}{median['ia3']:>10.3f}"
            f"{median['lora'] / median['base']:>8.3f}{median['ia3'] / median['base']:>8.3f}"
        )
    print("trainable parameters per task (one entry) / base parameters:")
    for name in ("lora", "ia3"):
        agent = agents[name]
        assert agent.pool is not None
        share = agent.entry_share()
        assert share is not None
        print(
            f"  {name}: {agent.pool.entry_parameter_count()} / "
            f"{sum(p.numel() for n, p in agent.model.named_parameters() if 'pool' not in n)} "
            f"= {100 * share:.2f}%"
        )


def throughput(model: str, updates: int, batch_size: int | None) -> None:
    """Samples/s of the preset's pretraining updates, with random segments (the presets'
    sampling: each segment's receptive field replayed without gradient first) and with
    sequential segments of whole episodes, alternated round by round."""
    layout = build_layout(["reach"])
    preset = PRESETS[model]
    if batch_size is not None:
        preset = replace(preset, batch_size=batch_size)
    episodes = synthetic_episodes(64, layout.observation_dim, layout.action_dim)
    agents = {}
    for sampling in ("random", "sequential"):
        config = replace(preset, segment_sampling=sampling)
        agent = DecisionTransformerAgent(
            layout.observation_dim, layout.action_dim, 1, config, lambda _task: episodes, seed=0
        )
        agent.on_task_start(0)
        agent.learn_updates(5)  # warm-up
        agents[sampling] = agent
    rates: dict[str, list[float]] = {sampling: [] for sampling in agents}
    for _ in range(3):
        for sampling, agent in agents.items():
            started = time.perf_counter()
            agent.learn_updates(updates)
            seconds = time.perf_counter() - started
            rates[sampling].append(updates * preset.batch_size * preset.context / seconds)
    random_rate, sequential_rate = (statistics.median(rates[k]) for k in agents)
    print(
        f"\n{model}: pretraining {agents['random'].parameter_count()} parameters, batch "
        f"{preset.batch_size} x context {preset.context}, {torch.get_num_threads()} thread(s): "
        f"random segments {random_rate:.0f} samples/s, sequential {sequential_rate:.0f} "
        f"samples/s (random / sequential {random_rate / sequential_rate:.2f}x; random "
        f"replays {preset.receptive_steps} steps before each segment)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", choices=tuple(PRESETS), default="small")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=None, help="pretraining batch size")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and updates")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rounds = 3 if args.quick else args.rounds
    steps = 50 if args.quick else EPISODE_STEPS
    latency(args.model, rounds, steps, repeats=2 if args.quick else 5)
    throughput(args.model, updates=10 if args.quick else 100, batch_size=args.batch_size)


if __name__ == "__main__":
    main()
