"""Pretraining of L2M's multi-domain Decision Transformer (``crl pretrain``; brief section 3).

One Decision Transformer (no memory, reward tokens) learns from the union of several tasks'
offline datasets (``crl collect``) in ONE padded space: the layout built over the pretraining
tasks (envs/padding.py), saved with the checkpoint so fine-tuning maps its tasks into the same
slots (envs/padding.py `fit_positions` refuses tasks that do not fit). Returns-to-go and rewards
are divided by each task's domain scale (Meta-World 200, DMControl 100, others 1) before they
are embedded, so domains of very different reward magnitudes share one model.

Batches mix tasks: the Decision Transformer agent trains on one "task" whose episodes are all
the pretraining tasks' episodes, and samples each batch's episodes uniformly from them (tasks
are weighted by their episode counts). The presets train on random segments (agents/dt.py
``segment_sampling="random"``): each update draws ``batch_size`` segments of ``context``
steps at random places of random episodes, each computed exactly as acting computes it; the
L2M fine-tuning of such a checkpoint samples the same way.

Outputs under ``--out``: ``model.pt`` (`crlgym.agents.l2m.PretrainedModel`, written atomically,
loaded with ``weights_only=True``), ``tb/`` (TensorBoard: loss, action accuracy, learning
rate, throughput), ``pretrain_eval.json`` (online evaluation of the pretrained model on its
pretraining tasks: success, or normalized score for DMControl, per task) and
``pretrain.json`` (settings and throughput).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crlgym.agents.dt import DecisionTransformerAgent, DTConfig
from crlgym.agents.l2m import (
    L2MAgent,
    L2MConfig,
    PretrainedModel,
    reward_scale_of,
    scale_episodes,
)
from crlgym.envs import EnvConfig, load_sequence
from crlgym.envs.padding import SpaceMap, build_layout, layout_episodes
from crlgym.errors import ConfigError
from crlgym.memory.datasets import DEFAULT_DATA_DIR, load_episodes, require_datasets

PRESETS: dict[str, DTConfig] = {
    # Trains on 2 CPU cores within minutes (~0.6M parameters with a 97-d layout).
    "small": DTConfig(
        d_model=128, layers=3, heads=4, context=5, memory="none", reward_tokens=True,
        learning_rate=3e-4, warmup=100, batch_size=16, weight_decay=1e-4,
        segment_sampling="random",
    ),
    # L2M's model: GPT-2 style, 6 layers, 12 heads, width 768, context 5.
    "paper": DTConfig(
        d_model=768, layers=6, heads=12, context=5, memory="none", reward_tokens=True,
        learning_rate=1e-4, warmup=1000, batch_size=16, weight_decay=1e-4, dropout=0.1,
        segment_sampling="random",
    ),
}  # fmt: skip
"""``crl pretrain --model NAME`` (memory none, reward tokens, context 5)."""

CHECKPOINT_NAME = "model.pt"
EVAL_NAME = "pretrain_eval.json"


# --- acting in the pretrained space ---------------------------------------------------------


class LayoutPolicy:
    """An L2M/pretrained agent as the evaluator's policy on a sequence whose envs show their
    own spaces: observations go into the agent's layout, actions come back cut to the env's
    width, and the sequence's task ``i`` is the agent's task ``offset + i``."""

    def __init__(self, agent: DecisionTransformerAgent, maps: Sequence[SpaceMap], offset: int = 0):
        self.agent, self.maps, self.offset = agent, list(maps), offset
        self._map = self.maps[0]

    def __call__(self, observation: np.ndarray, deterministic: bool) -> np.ndarray:
        action = self.agent.act(self._map.observations(observation), deterministic)
        return self._map.action(action)

    def start_episode(self, task_index: int) -> None:
        self._map = self.maps[task_index]
        self.agent.start_episode(self.offset + task_index)

    def observe_reward(self, reward: float) -> None:
        self.agent.observe_reward(reward)


def evaluate_tasks(
    agent: DecisionTransformerAgent,
    tasks: Sequence[str],
    pretrained: PretrainedModel,
    episodes: int,
    seed: int = 0,
    offset: int = 0,
) -> dict[str, dict[str, float]]:
    """Online evaluation of ``agent`` (in ``pretrained``'s layout) on ``tasks``.

    ``episodes`` sampled-action episodes and one greedy episode per task, from fixed seeds
    (experiments/evaluation.py). The agent's task ``offset + i`` is ``tasks[i]``.

    Returns:
        task -> {score (success, or DMControl normalized score; sampled actions),
        deterministic, return, deterministic_return}.
    """
    from crlgym.experiments.evaluation import Evaluator

    sequence = load_sequence(list(tasks), EnvConfig())
    width = int(np.prod(sequence.action_space.shape))
    maps = [SpaceMap(task, pretrained.layout, sequence.layout, width) for task in tasks]
    evaluator = Evaluator(sequence, episodes, 1, seed)
    scores, _seconds = evaluator.evaluate(LayoutPolicy(agent, maps, offset))
    return {
        task: {
            "score": score.stochastic,
            "deterministic": score.deterministic,
            "return": score.stochastic_return,
            "deterministic_return": score.deterministic_return,
        }
        for task, score in zip(sequence.task_names, scores, strict=True)
    }


def frozen_agent(pretrained: PretrainedModel, seed: int = 0) -> L2MAgent:
    """The pretrained model acting on its own pretraining tasks, unchanged (no training)."""

    def no_data(task_index: int) -> list[dict]:
        raise RuntimeError(f"the frozen pretrained agent does not train (task {task_index})")

    return L2MAgent(
        pretrained,
        num_tasks=len(pretrained.tasks),
        config=L2MConfig(l2m_mode="full"),
        episodes_of=no_data,
        reward_scales=[reward_scale_of(task) for task in pretrained.tasks],
        target_returns=dict(enumerate(pretrained.target_returns)),
        seed=seed,
    )


# --- pretraining ----------------------------------------------------------------------------


def load_pretraining_data(
    tasks: Sequence[str], data_dir: str | Path
) -> tuple[list[dict[str, Any]], list[float], Any]:
    """Every task's episodes in the shared layout with scaled rewards, each task's best scaled
    return, and the layout."""
    require_datasets(tasks, data_dir)
    layout = build_layout(list(tasks))
    union: list[dict[str, Any]] = []
    best: list[float] = []
    for task in tasks:
        episodes = scale_episodes(
            layout_episodes(load_episodes(task, data_dir=data_dir), task, layout),
            reward_scale_of(task),
        )
        if not episodes:
            raise ConfigError(f"the dataset of {task} has no episodes")
        best.append(max(float(np.sum(e["rewards"])) for e in episodes))
        union.extend(episodes)
    return union, best, layout


def pretrain(
    tasks: Sequence[str],
    out: str | Path,
    *,
    model: str = "small",
    updates: int = 1000,
    data_dir: str | Path = DEFAULT_DATA_DIR,
    eval_episodes: int = 5,
    seed: int = 0,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    log_every: int = 50,
    checkpoint_every: int = 0,
    threads: int | None = None,
    on_update: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Pretrain a multi-domain Decision Transformer on ``tasks``' datasets; see the module doc.

    Args:
        tasks: canonical task names (sequence names are expanded by the caller).
        out: output directory.
        model: a `PRESETS` name.
        updates: gradient updates.
        data_dir: where the datasets are.
        eval_episodes: sampled-action evaluation episodes per task (0: no evaluation).
        seed: weights, batch sampling, evaluation seeds.
        batch_size, learning_rate: override the preset's.
        log_every: updates between TensorBoard points.
        checkpoint_every: updates between intermediate saves of ``model.pt`` (0: at the end
            only); each replaces the last atomically, so a crash keeps the latest weights.
        threads: torch CPU threads (None: leave as is).
        on_update: called with the update count after each update.

    Returns:
        The summary written to ``pretrain.json`` (plus the evaluation when run).
    """
    from stable_baselines3.common.logger import configure

    if model not in PRESETS:
        raise ConfigError(f"unknown model preset {model!r}; choose {', '.join(PRESETS)}")
    if updates < 1 or eval_episodes < 0 or checkpoint_every < 0 or log_every < 1:
        raise ConfigError(
            "updates and log_every must be >= 1, eval_episodes and checkpoint_every >= 0"
        )
    tasks = list(dict.fromkeys(tasks))
    if threads is not None:
        torch.set_num_threads(threads)
    config = PRESETS[model]
    overrides: dict[str, Any] = {}
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    if learning_rate is not None:
        overrides["learning_rate"] = learning_rate
    config = replace(config, **overrides)
    union, best, layout = load_pretraining_data(tasks, data_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    agent = DecisionTransformerAgent(
        observation_dim=layout.observation_dim,
        action_dim=layout.action_dim,
        num_tasks=1,  # one pool of all tasks' episodes: every batch mixes tasks
        config=config,
        episodes_of=lambda _task: union,
        seed=seed,
    )
    logger = configure(str(out / "tb"), ["tensorboard"])
    agent.set_logger(logger)
    agent.on_task_start(0)
    samples_per_update = config.batch_size * config.context
    started = time.perf_counter()
    mark = (started, 0)

    def checkpoint(step: int) -> PretrainedModel:
        pretrained = PretrainedModel(
            config=config,
            layout=layout,
            tasks=tasks,
            target_returns=best,
            state_dict={k: v.detach().clone() for k, v in agent.model.state_dict().items()},
            updates=step,
            preset=model,
        )
        pretrained.save(out / CHECKPOINT_NAME)
        return pretrained

    def after_update(step: int) -> None:
        nonlocal mark
        if checkpoint_every and step % checkpoint_every == 0 and step < updates:
            checkpoint(step)
        if step % log_every == 0 or step == updates:
            now = time.perf_counter()
            rate = (step - mark[1]) * samples_per_update / max(now - mark[0], 1e-9)
            logger.record("time/samples_per_second", rate)
            logger.dump(step)
            mark = (now, step)
        if on_update is not None:
            on_update(step)

    agent.learn_updates(updates, callback=after_update)
    seconds = time.perf_counter() - started
    agent.on_task_end(0)
    pretrained = checkpoint(updates)
    summary: dict[str, Any] = {
        "tasks": tasks,
        "model": model,
        "config": config.to_dict(),
        "updates": updates,
        "episodes": len(union),
        "parameters": agent.parameter_count(),
        "observation_dim": layout.observation_dim,
        "action_dim": layout.action_dim,
        "train_seconds": seconds,
        # A sample = one timestep of one episode (its rtg, state, action and reward tokens).
        "samples_per_second": updates * samples_per_update / seconds,
        "updates_per_second": updates / seconds,
        "threads": torch.get_num_threads(),
        "checkpoint": str(out / CHECKPOINT_NAME),
    }
    _write_json_atomic(out / "pretrain.json", summary)
    if eval_episodes:
        started = time.perf_counter()
        scores = evaluate_tasks(
            frozen_agent(pretrained, seed), tasks, pretrained, eval_episodes, seed
        )
        evaluation = {
            "updates": updates,
            "episodes": eval_episodes,
            "tasks": scores,
            "mean_score": float(np.mean([s["score"] for s in scores.values()])),
            "seconds": time.perf_counter() - started,
        }
        _write_json_atomic(out / EVAL_NAME, evaluation)
        for task, score in scores.items():
            logger.record(f"pretrain_eval/{task}/score", score["score"])
        logger.dump(updates)
        summary["evaluation"] = evaluation
    logger.close()
    return summary


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2))
    os.replace(temporary, path)


__all__ = [
    "CHECKPOINT_NAME",
    "EVAL_NAME",
    "PRESETS",
    "LayoutPolicy",
    "evaluate_tasks",
    "frozen_agent",
    "load_pretraining_data",
    "pretrain",
]
