"""What the runner trains: one adapter per kind of agent, behind the `Learner` interface.

The runner (experiments/runner.py) knows tasks, budgets, evaluation, checkpoints and
results; a learner knows how its agent spends a task's budget:

- `SACLearner`: online SAC (agents/sac.py) with a continual method and plasticity options;
  a task's budget is env steps.
- `DTLearner`: the offline sequence policy (agents/dt.py) with a memory; it trains on each
  task's offline dataset (``crl collect``) and acts online only when evaluated; a task's
  budget is gradient updates.

Both present the same step axis to the runner (``num_timesteps``: env steps or updates), a
policy for evaluation, task events, and their state for checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger

from crlgym.agents.methods import make_method
from crlgym.agents.sac import ContinualSAC
from crlgym.envs import TaskSequence
from crlgym.envs.wrappers import EpisodeSeeding

if TYPE_CHECKING:
    from crlgym.agents.dt import DecisionTransformerAgent
    from crlgym.agents.l2m import L2MAgent
    from crlgym.experiments.config import TrainConfig

StepHook = Callable[[int], None]
"""Called by a learner after each step of its budget with the run's step count."""


class Learner(Protocol):
    """The runner's view of an agent."""

    step_unit: str
    """What a step of a task's budget is: 'env steps' or 'updates'."""

    @property
    def num_timesteps(self) -> int:
        """Steps of every budget so far (the x axis of the run)."""

    @property
    def task_start_step(self) -> int:
        """``num_timesteps`` when the current task started."""

    def on_task_start(self, task_index: int, budget: int, first_episode: int, fresh: bool) -> None:
        """Enter task ``task_index`` (``fresh``: from its beginning, not a resumed middle)."""

    def learn(self, steps: int, on_step: StepHook) -> None:
        """Spend ``steps`` of the current task's budget."""

    def on_task_end(self, task_index: int) -> None:
        """The task's budget is spent."""

    def episode_in_task(self) -> int:
        """Training episodes of the current task begun so far (for resuming); 0 if offline."""

    def policy(self) -> Callable[[np.ndarray, bool], np.ndarray]:
        """The acting policy for evaluation (may carry ``start_episode``/``observe_reward``)."""

    def task_context(self, task_index: int) -> AbstractContextManager:
        """Context in which the agent acts on task ``task_index``."""

    def set_logger(self, logger: Logger) -> None: ...

    def training_state(self) -> dict[str, Any]: ...

    def load_training_state(self, state: dict[str, Any]) -> None: ...

    def results(self) -> dict[str, Any]:
        """Agent-specific entries of results.json."""


# --- SAC (online) ---------------------------------------------------------------------------


class _StepCallback(BaseCallback):
    def __init__(self, on_step: StepHook) -> None:
        super().__init__()
        self.hook = on_step

    def _on_step(self) -> bool:
        self.hook(self.model.num_timesteps)
        return True


class SACLearner:
    """Online SAC through a task sequence; budgets are env steps."""

    step_unit = "env steps"

    def __init__(self, config: TrainConfig, sequence: TaskSequence) -> None:
        self.config = config
        self.sequence = sequence
        sac = config.sac
        self.agent = ContinualSAC(
            self._train_env(0, 0),
            num_tasks=sequence.num_tasks,
            config=sac,
            method=make_method(config.method, **config.method_options),
            plasticity=config.plasticity,
            task_id_dims=sequence.num_tasks if sac.multi_head else 0,
            device="cpu",
        )
        self.agent.action_space.seed(config.seed)
        self._env: EpisodeSeeding | None = None

    def _train_env(self, task_index: int, first_episode: int) -> EpisodeSeeding:
        env = self.sequence.make_env(task_index)
        seed = self.config.seed * 1000 + task_index
        return EpisodeSeeding(env, base_seed=seed, first_episode=first_episode)

    @property
    def num_timesteps(self) -> int:
        return self.agent.num_timesteps

    @property
    def task_start_step(self) -> int:
        return self.agent.task_start_step

    def on_task_start(self, task_index: int, budget: int, first_episode: int, fresh: bool) -> None:
        self._env = self._train_env(task_index, first_episode)
        self.agent.set_env(self._env)
        if fresh:
            self.agent.on_task_start(task_index, budget)

    def learn(self, steps: int, on_step: StepHook) -> None:
        self.agent.learn(steps, reset_num_timesteps=False, callback=_StepCallback(on_step))

    def on_task_end(self, task_index: int) -> None:
        self.agent.on_task_end(task_index)

    def episode_in_task(self) -> int:
        env = self._env
        if env is None:
            return 0
        # Chunks end on episode boundaries: the env already reset for the next episode,
        # which a resumed run replays from its seed.
        return env.episode - 1 if env.steps_in_episode == 0 else env.episode

    def policy(self) -> Callable[[np.ndarray, bool], np.ndarray]:
        def act(observation: np.ndarray, deterministic: bool) -> np.ndarray:
            tensor = torch.as_tensor(observation, dtype=torch.float32).unsqueeze(0)
            return self.agent.policy._predict(tensor, deterministic=deterministic)[0].numpy()

        return act

    def task_context(self, task_index: int) -> AbstractContextManager:
        return self.agent.method.evaluating(self.agent, task_index)

    def set_logger(self, logger: Logger) -> None:
        self.agent.set_logger(logger)

    def training_state(self) -> dict[str, Any]:
        return self.agent.training_state()

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.agent.load_training_state(state)

    def results(self) -> dict[str, Any]:
        return {"plasticity": self.agent.plasticity.summary()}


# --- Decision Transformer (offline) -----------------------------------------------------------


class _EpisodicPolicy:
    """The DT agent as the evaluator's policy: episode starts and rewards reach it."""

    def __init__(self, agent: DecisionTransformerAgent) -> None:
        self.agent = agent

    def __call__(self, observation: np.ndarray, deterministic: bool) -> np.ndarray:
        return self.agent.act(observation, deterministic)

    def start_episode(self, task_index: int) -> None:
        self.agent.start_episode(task_index)

    def observe_reward(self, reward: float) -> None:
        self.agent.observe_reward(reward)


def sequence_episodes(
    sequence: TaskSequence, task_index: int, data_dir: str | Path
) -> list[dict[str, Any]]:
    """The task's offline episodes as the sequence presents them (padded observations and
    actions when the sequence mixes spaces, one-hot task id appended when configured)."""
    from crlgym.envs.padding import layout_episodes
    from crlgym.memory.datasets import load_episodes

    name = sequence.task_names[task_index]
    episodes = load_episodes(name, data_dir=data_dir)
    if sequence.layout is not None:
        episodes = layout_episodes(episodes, name, sequence.layout)
    if sequence.config.one_hot_task_id:
        for episode in episodes:
            observations = episode["observations"]
            task_id = np.zeros((observations.shape[0], sequence.num_tasks), dtype=np.float32)
            task_id[:, task_index] = 1.0
            episode["observations"] = np.concatenate([observations, task_id], axis=1)
    return episodes


class DTLearner:
    """The offline sequence policy through a task sequence; budgets are gradient updates."""

    step_unit = "updates"

    def __init__(self, config: TrainConfig, sequence: TaskSequence) -> None:
        from crlgym.agents.dt import DecisionTransformerAgent

        self.config = config
        self.sequence = sequence
        self.agent = DecisionTransformerAgent(
            observation_dim=int(np.prod(sequence.observation_space.shape)),
            action_dim=int(np.prod(sequence.action_space.shape)),
            num_tasks=sequence.num_tasks,
            config=config.dt,
            episodes_of=lambda task_index: sequence_episodes(sequence, task_index, config.data_dir),
            seed=config.seed,
        )
        self._task_start_step = 0

    @property
    def num_timesteps(self) -> int:
        return self.agent.num_timesteps

    @property
    def task_start_step(self) -> int:
        return self._task_start_step

    def on_task_start(self, task_index: int, budget: int, first_episode: int, fresh: bool) -> None:
        if fresh:
            self._task_start_step = self.agent.num_timesteps
            self.agent.on_task_start(task_index, budget)

    def learn(self, steps: int, on_step: StepHook) -> None:
        self.agent.learn_updates(steps, callback=on_step)

    def on_task_end(self, task_index: int) -> None:
        self.agent.on_task_end(task_index)

    def episode_in_task(self) -> int:
        return 0

    def policy(self) -> Callable[[np.ndarray, bool], np.ndarray]:
        return _EpisodicPolicy(self.agent)

    def task_context(self, task_index: int) -> AbstractContextManager:
        return nullcontext()

    def set_logger(self, logger: Logger) -> None:
        self.agent.set_logger(logger)

    def training_state(self) -> dict[str, Any]:
        return {"agent": self.agent.training_state(), "task_start_step": self._task_start_step}

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.agent.load_training_state(state["agent"])
        self._task_start_step = state["task_start_step"]

    def results(self) -> dict[str, Any]:
        return {
            "agent": "dt",
            "memory": self.config.dt.memory,
            "parameters": self.agent.parameter_count(),
        }


# --- L2M: a pretrained Decision Transformer fine-tuned through a modulation pool ---------------


class L2MLearner(DTLearner):
    """A ``crl pretrain`` model fine-tuned offline on each task (agents/l2m.py); budgets are
    gradient updates, evaluation online on every task of the sequence.

    The agent works in the checkpoint's padded layout: each task's episodes are moved into it
    from their native spaces, and the evaluation policy moves observations from the
    sequence's envs into it (tasks the layout cannot hold are refused).

    Retention of pretraining (``pretrain_eval_tasks`` > 0): an evenly spaced sample of the
    pretraining tasks is evaluated by the learner itself, not the runner, before the first
    task and at every task end, and reported in results.json under ``pretrain_retention``
    (steps x tasks matrices, like the runner's).
    """

    step_unit = "updates"
    agent: L2MAgent

    def __init__(self, config: TrainConfig, sequence: TaskSequence) -> None:
        from crlgym.agents.l2m import L2MAgent, PretrainedModel, reward_scale_of
        from crlgym.envs.padding import SpaceMap, layout_episodes
        from crlgym.errors import ConfigError
        from crlgym.memory.datasets import load_episodes, require_datasets

        self.config = config
        self.sequence = sequence
        options = config.l2m
        if not options.pretrained:
            raise ConfigError("agent l2m needs --pretrained CHECKPOINT (made by crl pretrain)")
        if sequence.config.one_hot_task_id:
            raise ConfigError("agent l2m takes no one-hot task id (the oracle mode uses task ids)")
        self.pretrained = PretrainedModel.load(options.pretrained)
        layout = self.pretrained.layout
        width = int(np.prod(sequence.action_space.shape))
        tasks = list(sequence.task_names)
        self.maps = [SpaceMap(task, layout, sequence.layout, width) for task in tasks]
        require_datasets(tasks, config.data_dir)
        known = self.pretrained.tasks
        count = min(options.pretrain_eval_tasks, len(known))
        picks = (
            sorted({int(i) for i in np.linspace(0, len(known) - 1, count).round()}) if count else []
        )
        self.retention_tasks = [known[i] for i in picks]
        names = tasks + self.retention_tasks

        def episodes_of(task_index: int) -> list[dict[str, Any]]:
            name = names[task_index]
            return layout_episodes(load_episodes(name, data_dir=config.data_dir), name, layout)

        self.agent = L2MAgent(
            self.pretrained,
            num_tasks=len(names),
            pool_tasks=len(tasks),
            config=options,
            episodes_of=episodes_of,
            reward_scales=[reward_scale_of(name) for name in names],
            target_returns={
                len(tasks) + j: self.pretrained.target_returns[i] for j, i in enumerate(picks)
            },
            seed=config.seed,
        )
        self._task_start_step = 0
        self.retention: dict[str, Any] = {
            "tasks": self.retention_tasks, "steps": [], "score": [], "return": [],
        }  # fmt: skip

    def _evaluate_retention(self) -> None:
        if not self.retention_tasks:
            return
        from crlgym.experiments.pretrain import evaluate_tasks

        scores = evaluate_tasks(
            self.agent,
            self.retention_tasks,
            self.pretrained,
            self.config.eval_episodes,
            seed=self.config.seed,
            offset=self.sequence.num_tasks,
        )
        self.retention["steps"].append(self.agent.num_timesteps)
        self.retention["score"].append([scores[t]["score"] for t in self.retention_tasks])
        self.retention["return"].append([scores[t]["return"] for t in self.retention_tasks])
        if self.agent.logger is not None:
            for task in self.retention_tasks:
                self.agent.logger.record(f"pretrain_retention/{task}/score", scores[task]["score"])

    def on_task_start(self, task_index: int, budget: int, first_episode: int, fresh: bool) -> None:
        if fresh and task_index == 0 and not self.retention["steps"]:
            self._evaluate_retention()  # the pretrained model before any fine-tuning
        super().on_task_start(task_index, budget, first_episode, fresh)

    def on_task_end(self, task_index: int) -> None:
        super().on_task_end(task_index)
        self._evaluate_retention()

    def policy(self) -> Callable[[np.ndarray, bool], np.ndarray]:
        from crlgym.experiments.pretrain import LayoutPolicy

        return LayoutPolicy(self.agent, self.maps)

    def training_state(self) -> dict[str, Any]:
        return {**super().training_state(), "retention": self.retention}

    def load_training_state(self, state: dict[str, Any]) -> None:
        super().load_training_state(state)
        self.retention = state["retention"]

    def results(self) -> dict[str, Any]:
        pool = self.agent.pool
        return {
            "agent": "l2m",
            "l2m_mode": self.config.l2m.l2m_mode,
            "modulator": self.config.l2m.modulator,
            "pretrained": self.config.l2m.pretrained,
            "parameters": self.agent.parameter_count(),
            "entry_share": self.agent.entry_share(),
            "pool_usage": None if pool is None else pool.usage.tolist(),
            "pretrain_retention": self.retention,
        }


LEARNERS: dict[str, type] = {"sac": SACLearner, "dt": DTLearner, "l2m": L2MLearner}
"""``crl train --agent NAME``."""


def make_learner(config: TrainConfig, sequence: TaskSequence) -> Learner:
    return LEARNERS[config.agent](config, sequence)


__all__ = [
    "LEARNERS",
    "DTLearner",
    "L2MLearner",
    "Learner",
    "SACLearner",
    "make_learner",
    "sequence_episodes",
]
