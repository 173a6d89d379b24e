"""Evaluation on every task of a sequence, isolated from training.

Each task has its own evaluation env (never the training env), episodes start from fixed
seeds (the same start states at every evaluation, so curves move only when the agent does),
and the random-number generators of Python, NumPy and torch are saved before and restored
after, so an evaluation leaves training exactly as it found it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from crlgym.envs.sequences import TaskSequence

Policy = Callable[[np.ndarray, bool], np.ndarray]
"""(observation, deterministic) -> action. A policy with memory may also have
``start_episode(task_index)`` (called before each episode's first action) and
``observe_reward(reward)`` (called after each step)."""
TaskContext = Callable[[int], AbstractContextManager]
"""task index -> context in which the agent acts on that task (a method's `evaluating`)."""


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's global random states on exit."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)


def episode_score(info: dict) -> float:
    """Success of a finished episode (Meta-World, toy) or its normalized score (DMControl)."""
    if "is_success" in info:
        return float(info["is_success"])
    return float(info["normalized_score"])


@dataclass
class TaskScores:
    """One evaluation of one task."""

    stochastic: float
    deterministic: float
    stochastic_return: float
    deterministic_return: float


@dataclass
class EvalHistory:
    """Every evaluation of a run: step x task scores (the matrices of results.json)."""

    steps: list[int] = field(default_factory=list)
    stochastic: list[list[float]] = field(default_factory=list)
    deterministic: list[list[float]] = field(default_factory=list)
    stochastic_return: list[list[float]] = field(default_factory=list)
    deterministic_return: list[list[float]] = field(default_factory=list)
    seconds: float = 0.0

    def append(self, step: int, scores: list[TaskScores], seconds: float) -> None:
        self.steps.append(step)
        self.stochastic.append([s.stochastic for s in scores])
        self.deterministic.append([s.deterministic for s in scores])
        self.stochastic_return.append([s.stochastic_return for s in scores])
        self.deterministic_return.append([s.deterministic_return for s in scores])
        self.seconds += seconds

    def to_dict(self) -> dict:
        return {
            "steps": self.steps,
            "stochastic": self.stochastic,
            "deterministic": self.deterministic,
            "stochastic_return": self.stochastic_return,
            "deterministic_return": self.deterministic_return,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: dict) -> EvalHistory:
        return cls(**data)


def _start_episode(policy: Policy, task_index: int) -> Callable[[float], None]:
    """Tell a policy with memory that an episode of task ``task_index`` starts; returns where
    rewards go."""
    start = getattr(policy, "start_episode", None)
    if start is not None:
        start(task_index)
    return getattr(policy, "observe_reward", lambda reward: None)


class Evaluator:
    """Runs evaluation episodes of every task of ``sequence``.

    Args:
        sequence: the run's sequence (its envs present the agent's spaces).
        stochastic_episodes: sampled-action episodes per task.
        deterministic_episodes: mean-action episodes per task.
        seed: the run's seed; evaluation seeds are derived from it, apart from training's.
    """

    def __init__(
        self,
        sequence: TaskSequence,
        stochastic_episodes: int,
        deterministic_episodes: int,
        seed: int,
    ) -> None:
        self.sequence = sequence
        self.stochastic_episodes = stochastic_episodes
        self.deterministic_episodes = deterministic_episodes
        self.seed = seed
        self._envs: dict[int, gym.Env] = {}
        self.evaluations = 0

    def _env(self, task_index: int) -> gym.Env:
        if task_index not in self._envs:
            self._envs[task_index] = self.sequence.make_env(task_index)
        return self._envs[task_index]

    def episode_seed(self, task_index: int, episode: int) -> int:
        seeds = np.random.SeedSequence([self.seed, 7919, task_index, episode])
        return int(seeds.generate_state(1)[0])

    def run_episode(
        self, policy: Policy, task_index: int, episode: int, deterministic: bool
    ) -> tuple[float, float]:
        """(score, return) of one episode."""
        env = self._env(task_index)
        observation, _ = env.reset(seed=self.episode_seed(task_index, episode))
        observe_reward = _start_episode(policy, task_index)
        total, done = 0.0, False
        info: dict[str, Any] = {}
        while not done:
            observation, reward, terminated, truncated, info = env.step(
                policy(observation, deterministic)
            )
            observe_reward(float(reward))
            total += float(reward)
            done = terminated or truncated
        return episode_score(info), total

    def evaluate(
        self, policy: Policy, task_context: TaskContext | None = None
    ) -> tuple[list[TaskScores], float]:
        """Scores of every task and the seconds it took; training RNG is untouched."""
        task_context = task_context or (lambda task_index: nullcontext())
        started = time.perf_counter()
        scores = []
        with preserved_rng(), torch.no_grad():
            torch.manual_seed(self.episode_seed(self.sequence.num_tasks, self.evaluations))
            for task_index in range(self.sequence.num_tasks):
                with task_context(task_index):
                    sampled = [
                        self.run_episode(policy, task_index, k, deterministic=False)
                        for k in range(self.stochastic_episodes)
                    ]
                    greedy = [
                        self.run_episode(policy, task_index, self.stochastic_episodes + k, True)
                        for k in range(self.deterministic_episodes)
                    ]
                scores.append(
                    TaskScores(
                        stochastic=float(np.mean([s for s, _ in sampled])),
                        deterministic=float(np.mean([s for s, _ in greedy])) if greedy else 0.0,
                        stochastic_return=float(np.mean([r for _, r in sampled])),
                        deterministic_return=float(np.mean([r for _, r in greedy]))
                        if greedy
                        else 0.0,
                    )
                )
        self.evaluations += 1
        return scores, time.perf_counter() - started

    def record_video(
        self,
        policy: Policy,
        task_index: int,
        path: Path,
        seed: int,
        task_context: TaskContext | None = None,
    ) -> Path:
        """One deterministic episode of task ``task_index`` as mp4 at the env's frame rate."""
        from crlgym.experiments.video import write_video

        env = self.sequence.make_env(task_index, render_mode="rgb_array")
        frames: list[np.ndarray] = []
        context = task_context(task_index) if task_context else nullcontext()
        with preserved_rng(), torch.no_grad(), context:
            observation, _ = env.reset(seed=self.episode_seed(task_index, 10_000 + seed))
            observe_reward = _start_episode(policy, task_index)
            done = False
            while not done:
                frames.append(np.asarray(env.render()))
                observation, reward, terminated, truncated, _ = env.step(policy(observation, True))
                observe_reward(float(reward))
                done = terminated or truncated
        fps = env.metadata.get("render_fps", 30)
        env.close()
        return write_video(path, frames, fps=fps)

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
