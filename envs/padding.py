"""One shared observation/action space for sequences whose tasks differ (L2M's layout idea).

Layout of the padded observation vector (documented in docs/spaces.md):

* slot ``metaworld``: the 39-d Meta-World observation (when the layout has Meta-World);
* one slot per DMControl observation key (``position``, ``velocity``, ``orientations``,
  ...), in alphabetical order, each as wide as the widest value of that key over the
  layout's domains; a task writes each of its keys at the start of the key's slot;
* slot ``toy``: the pure-numpy test tasks' observation (when the layout has toy tasks);
* slot ``recall``: recall tasks' cue, distractor and phase blocks (when the layout has
  recall tasks), each block as wide as the most cues of the layout's recall tasks, so a
  task with fewer cues leaves the tail of its cue and distractor blocks at 0;
* zeros everywhere a task has nothing.

Goal-masked Meta-World tasks use the Meta-World slot (their masked goal is 0, which the
slot's bounds include).

The layout's DMControl domains are always L2M's ten (DMC10 + DMC6: ball_in_cup, cartpole,
cheetah, finger, fish, hopper, pendulum, point_mass, reacher, walker) plus the domains of
the sequence's own tasks, and it always has the Meta-World slot, so any sequence drawn from
MT50, DMC10 and DMC6 (L2M's pretraining and fine-tuning sets) gets the same layout.
Actions are padded to the widest action of those domains (6 for L2M's); a task reads the
first ``n`` dimensions of the agent's action and ignores the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import gymnasium as gym
import numpy as np

from crlgym.envs.dmc_specs import load_dmc_specs
from crlgym.envs.tasks import resolve_task, task_domain
from crlgym.errors import ConfigError

L2M_DMC_DOMAINS = (
    "ball_in_cup", "cartpole", "cheetah", "finger", "fish",
    "hopper", "pendulum", "point_mass", "reacher", "walker",
)  # fmt: skip
METAWORLD_SLOT = "metaworld"
TOY_SLOT = "toy"
RECALL_SLOT = "recall"


@dataclass(frozen=True)
class PaddedLayout:
    """Where each task's observation lives in the shared vector, and the shared action size."""

    slots: tuple[tuple[str, int, int], ...]
    """(slot name, start index, width) in order."""
    action_dim: int
    """Width of the shared action vector."""
    slot_low: tuple[float, ...]
    """Lower bound of every padded observation dimension."""
    slot_high: tuple[float, ...]
    """Upper bound of every padded observation dimension."""

    @property
    def observation_dim(self) -> int:
        _name, start, width = self.slots[-1]
        return start + width

    @cached_property
    def observation_space(self) -> gym.spaces.Box:
        low = np.asarray(self.slot_low, dtype=np.float32)
        return gym.spaces.Box(low, np.asarray(self.slot_high, dtype=np.float32), dtype=np.float32)

    @cached_property
    def action_space(self) -> gym.spaces.Box:
        return gym.spaces.Box(-1.0, 1.0, shape=(self.action_dim,), dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (``torch.load(weights_only=True)`` reads them back)."""
        return {
            "slots": [[name, start, width] for name, start, width in self.slots],
            "action_dim": self.action_dim,
            "slot_low": list(self.slot_low),
            "slot_high": list(self.slot_high),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PaddedLayout:
        """The layout `to_dict` wrote."""
        return cls(
            slots=tuple((str(n), int(s), int(w)) for n, s, w in data["slots"]),
            action_dim=int(data["action_dim"]),
            slot_low=tuple(float(x) for x in data["slot_low"]),
            slot_high=tuple(float(x) for x in data["slot_high"]),
        )

    def slot(self, name: str) -> tuple[int, int]:
        """(start, width) of a slot."""
        for slot_name, start, width in self.slots:
            if slot_name == name:
                return start, width
        raise KeyError(name)

    def positions(self, task: str) -> np.ndarray:
        """Index of each native observation dimension of ``task`` in the padded vector."""
        name, family = resolve_task(task)
        domain = family.domain
        if domain == "dmc":
            pieces = []
            for key, size in load_dmc_specs()[name]["observation"]:
                start, _ = self.slot(key)
                pieces.append(np.arange(start, start + size))
            return np.concatenate(pieces)
        if domain == "recall":
            from crlgym.envs.recall import parse_recall_name

            cues = parse_recall_name(name).num_cues
            start, width = self.slot(RECALL_SLOT)
            widest = (width - 3) // 2
            return np.concatenate(
                [
                    start + np.arange(cues),
                    start + widest + np.arange(cues),
                    start + 2 * widest + np.arange(3),
                ]
            )
        start, width = self.slot(METAWORLD_SLOT if domain == "metaworld" else TOY_SLOT)
        return np.arange(start, start + width)


def build_layout(tasks: list[str]) -> PaddedLayout:
    """The padded layout for a sequence of (canonical) task names; see the module docstring."""
    from crlgym.envs.metaworld_env import METAWORLD_OBSERVATION_SPACE
    from crlgym.envs.toy import make_toy_env

    specs = load_dmc_specs()
    domains = set(L2M_DMC_DOMAINS) | {t.split("-", 1)[0] for t in tasks if task_domain(t) == "dmc"}
    key_width: dict[str, int] = {}
    action_dim = 4  # Meta-World
    for task, spec in specs.items():
        if task.split("-", 1)[0] in domains:
            action_dim = max(action_dim, spec["action_dim"])
            for key, size in spec["observation"]:
                key_width[key] = max(key_width.get(key, 0), size)
    slots: list[tuple[str, int, int]] = []
    low: list[float] = []
    high: list[float] = []

    def add(name: str, lows: np.ndarray, highs: np.ndarray) -> None:
        start = slots[-1][1] + slots[-1][2] if slots else 0
        slots.append((name, start, len(lows)))
        # Tasks without this slot leave zeros in it, so 0 must lie inside the bounds.
        low.extend(np.minimum(lows, 0.0).tolist())
        high.extend(np.maximum(highs, 0.0).tolist())

    mw = METAWORLD_OBSERVATION_SPACE
    add(METAWORLD_SLOT, mw.low.astype(np.float64), mw.high.astype(np.float64))
    for key in sorted(key_width):
        width = key_width[key]
        add(key, np.full(width, -np.inf), np.full(width, np.inf))
    toy_tasks = [t for t in tasks if task_domain(t) == "toy"]
    if toy_tasks:
        toy_space = make_toy_env(toy_tasks[0]).observation_space
        assert isinstance(toy_space, gym.spaces.Box)
        add(TOY_SLOT, toy_space.low.astype(np.float64), toy_space.high.astype(np.float64))
        action_dim = max(action_dim, 2)
    recall_tasks = [t for t in tasks if task_domain(t) == "recall"]
    if recall_tasks:
        from crlgym.envs.recall import parse_recall_name

        widest = max(parse_recall_name(t).num_cues for t in recall_tasks)
        add(RECALL_SLOT, np.zeros(2 * widest + 3), np.ones(2 * widest + 3))
        action_dim = max(action_dim, widest)
    return PaddedLayout(tuple(slots), action_dim, tuple(low), tuple(high))


def fit_positions(layout: PaddedLayout, task: str) -> np.ndarray:
    """Index of each native observation dimension of ``task`` in ``layout``'s vector, for a
    layout built over other tasks (a pretrained model's).

    Raises:
        ConfigError: the layout has no slot for the task's domain or keys, a slot is too
            narrow for the task, or the task's actions are wider than the layout's.
    """
    name, family = resolve_task(task)
    domain = family.domain
    observation_space, action_space = family.spaces(name)
    assert observation_space.shape is not None and action_space.shape is not None
    native_obs, native_act = int(observation_space.shape[0]), int(action_space.shape[0])
    slot_names = [slot for slot, _start, _width in layout.slots]
    problem = None
    if native_act > layout.action_dim:
        problem = f"{native_act}-d actions, the layout has {layout.action_dim}"
    elif domain == "dmc":
        for key, size in load_dmc_specs()[name]["observation"]:
            if key not in slot_names:
                problem = f"observation key {key!r} has no slot"
            elif size > layout.slot(key)[1]:
                problem = f"observation key {key!r} is {size}-d, its slot {layout.slot(key)[1]}"
    elif domain == "toy":
        if TOY_SLOT not in slot_names:
            problem = "no toy slot"
        elif layout.slot(TOY_SLOT)[1] != native_obs:
            problem = f"{native_obs}-d observations, the toy slot is {layout.slot(TOY_SLOT)[1]}"
    elif domain == "recall":
        if RECALL_SLOT not in slot_names:
            problem = "no recall slot"
        elif (native_obs - 3) // 2 > (layout.slot(RECALL_SLOT)[1] - 3) // 2:
            problem = "more cues than the recall slot holds"
    if problem is None:
        positions = layout.positions(name)
        if len(positions) == native_obs and positions.max() < layout.observation_dim:
            return positions
        problem = "its observation does not map onto the layout"
    raise ConfigError(
        f"task {task} does not fit the pretrained model's padded layout ({problem}); "
        "fine-tune on tasks whose domains the pretraining data covered, or pretrain with them"
    )


class SpaceMap:
    """Moves one task's observations from the space its env shows into a layout, and cuts the
    layout-wide actions back to the env's width.

    Args:
        task: the task's name.
        layout: the target layout (a pretrained model's); the task must fit it
            (`fit_positions`).
        source: the layout the env pads into (a mixed sequence's), or None for native
            observations.
        env_action_dim: the width of actions the env takes.
    """

    def __init__(
        self, task: str, layout: PaddedLayout, source: PaddedLayout | None, env_action_dim: int
    ) -> None:
        self.target = fit_positions(layout, task)
        self.source = (
            np.arange(len(self.target)) if source is None else source.positions(task)
        ).astype(np.int64)
        self.observation_dim = layout.observation_dim
        self.env_action_dim = env_action_dim

    def observations(self, observations: np.ndarray) -> np.ndarray:
        """(..., env obs) -> (..., layout obs), zeros outside the task's slots."""
        observations = np.asarray(observations, dtype=np.float32)
        out = np.zeros((*observations.shape[:-1], self.observation_dim), dtype=np.float32)
        out[..., self.target] = observations[..., self.source]
        return out

    def action(self, action: np.ndarray) -> np.ndarray:
        return np.asarray(action)[: self.env_action_dim]


def layout_episodes(
    episodes: list[dict[str, Any]], task: str, layout: PaddedLayout
) -> list[dict[str, Any]]:
    """Native episodes of ``task`` (`crlgym.memory.datasets.load_episodes`) in ``layout``'s space:
    observations in the task's slots, actions zero-padded to the layout's width."""
    space = SpaceMap(task, layout, None, layout.action_dim)
    out = []
    for episode in episodes:
        actions = np.zeros((episode["actions"].shape[0], layout.action_dim), dtype=np.float32)
        actions[:, : episode["actions"].shape[1]] = episode["actions"]
        out.append(
            {
                **episode,
                "observations": space.observations(episode["observations"]),
                "actions": actions,
            }
        )
    return out


class PaddedEnv(gym.Wrapper):
    """Presents one task through a `PaddedLayout`: padded observations, wider actions."""

    def __init__(self, env: gym.Env, task: str, layout: PaddedLayout) -> None:
        super().__init__(env)
        self.layout = layout
        self.observation_space = layout.observation_space
        self.action_space = layout.action_space
        self._positions = layout.positions(task)
        assert env.action_space.shape is not None
        self._native_action_dim = int(np.prod(env.action_space.shape))

    def _pad(self, observation: np.ndarray) -> np.ndarray:
        padded = np.zeros(self.layout.observation_dim, dtype=np.float32)
        padded[self._positions] = observation
        return padded

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        return self._pad(observation), info

    def step(self, action: np.ndarray):
        observation, reward, terminated, truncated, info = self.env.step(
            np.asarray(action)[: self._native_action_dim]
        )
        return self._pad(observation), reward, terminated, truncated, info


class TaskIdEnv(gym.ObservationWrapper):
    """Appends a one-hot task id (position in the sequence) to the observation."""

    def __init__(self, env: gym.Env, task_index: int, num_tasks: int) -> None:
        super().__init__(env)
        self.observation_space = self.extend_space(env.observation_space, num_tasks)
        self._one_hot = np.zeros(num_tasks, dtype=np.float32)
        self._one_hot[task_index] = 1.0

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.concatenate([observation, self._one_hot])

    @staticmethod
    def extend_space(space: gym.Space, num_tasks: int) -> gym.spaces.Box:
        """``space`` with ``num_tasks`` one-hot dimensions in [0, 1] appended."""
        assert isinstance(space, gym.spaces.Box)
        return gym.spaces.Box(
            np.concatenate([space.low, np.zeros(num_tasks, dtype=np.float32)]),
            np.concatenate([space.high, np.ones(num_tasks, dtype=np.float32)]),
            dtype=np.float32,
        )
