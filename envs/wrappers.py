"""Wrappers that runs put around task envs."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class EpisodeSeeding(gym.Wrapper):
    """Seeds every reset from (base seed, episode index), so any episode can be replayed.

    A resumed run rebuilds its training env with the episode index it had reached and gets
    the very same initial states, with no need to save the simulator's internal state.
    An explicit ``reset(seed=...)`` still wins.
    """

    def __init__(self, env: gym.Env, base_seed: int, first_episode: int = 0) -> None:
        super().__init__(env)
        self.base_seed = base_seed
        self.episode = first_episode
        self.steps_in_episode = 0

    def seed_for(self, episode: int) -> int:
        return int(np.random.SeedSequence([self.base_seed, episode]).generate_state(1)[0])

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is None:
            seed = self.seed_for(self.episode)
        self.episode += 1
        self.steps_in_episode = 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.steps_in_episode += 1
        observation, reward, terminated, truncated, info = self.env.step(action)
        return observation, float(reward), terminated, truncated, info
