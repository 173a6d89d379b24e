"""Pieces several continual-learning methods share; no method imports a sibling method.

- `QuadraticAnchor`: importance-weighted quadratic pull towards the parameters a task ended
  with (L2, EWC, MAS here; the Decision-Transformer/L2M side reuses it).
- Option checks: `check_positive`, `check_non_negative` (one-line `ConfigError`).
- Reading the agent's buffer: `Transitions`, `task_transitions`, `as_transitions`.
- Memories: `EpisodicMemory` (a fixed number of samples per finished task) and
  `ReservoirMemory` (reservoir sampling over everything ever added).
- Private random generators that checkpoints keep: `lazy_generator`, `generator_state`,
  `restore_generator`.

Memories are CPU tensors (moved to the agent's device one batch at a time) and their
``state_dict`` holds only tensors, numbers and lists, so checkpoints load with
``torch.load(weights_only=True)``. Every observation keeps its one-hot task id, so a
multi-head network evaluates a remembered sample with that sample's own head.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from crlgym.errors import ConfigError

if TYPE_CHECKING:
    from crlgym.agents.sac import ContinualSAC

# --- transitions and option checks -----------------------------------------------------


TRANSITION_KEYS = ("observations", "actions", "next_observations", "dones", "rewards")
"""The fields of a transition, named as in SB3's ``ReplayBufferSamples``."""


class Transitions(NamedTuple):
    """A batch of transitions; the same field names as SB3's ``ReplayBufferSamples``."""

    observations: torch.Tensor
    actions: torch.Tensor
    next_observations: torch.Tensor
    dones: torch.Tensor
    rewards: torch.Tensor


def check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}")


def check_non_negative(**values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise ConfigError(f"{name} must be >= 0, got {value}")


# --- reading the agent's buffer ---------------------------------------------------------


def task_transitions(
    agent: ContinualSAC, count: int | None = None, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """Transitions of the current task from ``agent.replay_buffer`` (float32 CPU tensors).

    The task's transitions are the ones added since the task started
    (``agent.num_timesteps - agent.task_start_step`` env steps, the newest rows of the FIFO
    buffer), so nothing of an earlier task is taken even when the buffer is not reset
    between tasks. With ``count``, that many are drawn uniformly without replacement (all
    of them when the task has fewer). ``dones`` are true terminations: a time-limit
    truncation is not a done (as SB3's buffer samples them). Rewards and dones have shape
    (n, 1).
    """
    buffer = agent.replay_buffer
    assert buffer is not None
    n_envs, size = buffer.n_envs, buffer.buffer_size
    filled = size if buffer.full else buffer.pos
    steps = max(0, agent.num_timesteps - agent.task_start_step)
    rows = min(filled, -(-steps // n_envs))
    row_index = np.arange(buffer.pos - rows, buffer.pos) % size
    total = rows * n_envs
    if count is not None and count < total:
        flat = torch.randperm(total, generator=generator)[:count].numpy()
    else:
        flat = np.arange(total)
    index, env = row_index[flat // n_envs], flat % n_envs
    if buffer.optimize_memory_usage:
        next_observations = buffer.observations[(index + 1) % size, env]
    else:
        next_observations = buffer.next_observations[index, env]
    dones = buffer.dones[index, env]
    if buffer.handle_timeout_termination:
        dones = dones * (1 - buffer.timeouts[index, env])
    arrays = {
        "observations": buffer.observations[index, env],
        "actions": buffer.actions[index, env],
        "next_observations": next_observations,
        "dones": dones.reshape(-1, 1),
        "rewards": buffer.rewards[index, env].reshape(-1, 1),
    }
    return {
        name: torch.as_tensor(np.asarray(array), dtype=torch.float32).reshape(len(flat), -1)
        for name, array in arrays.items()
    }


def as_transitions(data: dict[str, torch.Tensor], device: torch.device | str) -> Transitions:
    """A `Transitions` batch on ``device`` from a dict of tensors."""
    return Transitions(*(data[name].to(device) for name in TRANSITION_KEYS))


# --- memories ---------------------------------------------------------------------------


def lazy_generator(generator: torch.Generator | None) -> torch.Generator:
    """A CPU generator seeded from the global torch RNG (the agent's seed) on first use."""
    if generator is None:
        generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,)).item()))
    return generator


def generator_state(generator: torch.Generator | None) -> torch.Tensor | None:
    return None if generator is None else generator.get_state()


def restore_generator(state: torch.Tensor | None) -> torch.Generator | None:
    if state is None:
        return None
    generator = torch.Generator()
    generator.set_state(state)
    return generator


class EpisodicMemory:
    """Samples stored per finished task: one flat tensor per field, tasks in order."""

    def __init__(self) -> None:
        self.data: dict[str, torch.Tensor] = {}
        self.tasks: list[int] = []
        self.sizes: list[int] = []

    def __len__(self) -> int:
        return sum(self.sizes)

    def append(self, task_index: int, data: dict[str, torch.Tensor]) -> None:
        """Store ``data`` (tensors with equal first dimension) for task ``task_index``."""
        stored = {name: tensor.detach().to("cpu", torch.float32) for name, tensor in data.items()}
        count = len(next(iter(stored.values())))
        if self.data and set(stored) != set(self.data):
            raise ValueError(f"fields {sorted(stored)} differ from {sorted(self.data)}")
        self.data = {
            name: torch.cat([self.data[name], tensor]) if self.data else tensor
            for name, tensor in stored.items()
        }
        self.tasks.append(int(task_index))
        self.sizes.append(count)

    def task_sizes(self) -> dict[int, int]:
        """Samples stored per task."""
        return dict(zip(self.tasks, self.sizes, strict=True))

    def of_task(self, task_index: int) -> dict[str, torch.Tensor]:
        """The samples stored for task ``task_index``."""
        position = self.tasks.index(task_index)
        start = sum(self.sizes[:position])
        end = start + self.sizes[position]
        return {name: tensor[start:end] for name, tensor in self.data.items()}

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """``batch_size`` samples drawn uniformly (with replacement) over all stored ones."""
        index = torch.randint(len(self), (batch_size,))
        return {name: tensor[index] for name, tensor in self.data.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"data": dict(self.data), "tasks": list(self.tasks), "sizes": list(self.sizes)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.data = {name: tensor.to("cpu") for name, tensor in state["data"].items()}
        self.tasks = [int(task_index) for task_index in state["tasks"]]
        self.sizes = [int(size) for size in state["sizes"]]


class ReservoirMemory:
    """Reservoir sampling (Vitter's algorithm R): after ``seen`` samples were added, the
    memory holds ``min(capacity, seen)`` of them, each seen sample equally likely to be one.

    ``add`` takes a whole batch at once (vectorized, same distribution as adding one by one).
    """

    def __init__(self, capacity: int) -> None:
        check_positive(capacity=capacity)
        self.capacity = capacity
        self.data: dict[str, torch.Tensor] = {}
        self.seen = 0
        self.generator: torch.Generator | None = None

    def __len__(self) -> int:
        return 0 if not self.data else len(next(iter(self.data.values())))

    def add(self, data: dict[str, torch.Tensor]) -> None:
        stored = {name: tensor.detach().to("cpu", torch.float32) for name, tensor in data.items()}
        count = len(next(iter(stored.values())))
        if count == 0:
            return
        if not self.data:
            self.data = {name: tensor[:0].clone() for name, tensor in stored.items()}
        # 1) while there is room, every sample is kept
        free = min(count, self.capacity - len(self))
        if free > 0:
            self.data = {
                name: torch.cat([self.data[name], stored[name][:free]]) for name in self.data
            }
        # 2) afterwards the sample of global index t replaces slot j ~ U{0..t} if j < capacity
        rest = count - free
        if rest > 0:
            self.generator = lazy_generator(self.generator)
            global_index = torch.arange(self.seen + free, self.seen + count, dtype=torch.float64)
            uniform = torch.rand(rest, generator=self.generator, dtype=torch.float64)
            slots = (uniform * (global_index + 1)).floor().long()
            items = torch.arange(free, count)
            kept = slots < self.capacity
            kept_slots, kept_items = slots[kept].numpy(), items[kept].numpy()
            # a slot drawn twice keeps the later sample, as sequential insertion would
            _, first_in_reverse = np.unique(kept_slots[::-1], return_index=True)
            last = len(kept_slots) - 1 - first_in_reverse
            slots, items = torch.as_tensor(kept_slots[last]), torch.as_tensor(kept_items[last])
            for name, tensor in self.data.items():
                tensor[slots] = stored[name][items]
        self.seen += count

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """``batch_size`` samples drawn uniformly (with replacement) from the reservoir."""
        index = torch.randint(len(self), (batch_size,))
        return {name: tensor[index] for name, tensor in self.data.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "data": dict(self.data),
            "seen": self.seen,
            "generator": generator_state(self.generator),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.data = {name: tensor.to("cpu") for name, tensor in state["data"].items()}
        if len(self) > self.capacity:  # a smaller capacity now: a uniform subset stays uniform
            self.data = {name: tensor[: self.capacity] for name, tensor in self.data.items()}
        self.seen = int(state["seen"])
        self.generator = restore_generator(state["generator"])


# --- quadratic anchor -------------------------------------------------------------------


class QuadraticAnchor:
    """Importance per parameter summed over finished tasks, anchored at the parameters the
    latest task ended with.

    ``penalty(parameters) = sum_name sum(importance[name] * (parameters[name] - anchor[name])^2)``
    (not multiplied by any coefficient; the caller scales it). Parameters are keyed by name
    (e.g. ``named_parameters()``); the names that have an importance are pulled, so the
    parameters given to `penalty` must include them.
    """

    def __init__(self) -> None:
        self.anchor: dict[str, torch.Tensor] = {}
        """Detached copies of the parameters at the end of the latest consolidated task."""
        self.importance: dict[str, torch.Tensor] = {}
        """Importance of each parameter element, summed over the consolidated tasks."""

    @property
    def empty(self) -> bool:
        """True before the first `consolidate` (no penalty yet)."""
        return not self.anchor

    def consolidate(
        self, parameters: Mapping[str, torch.Tensor], importance: Mapping[str, torch.Tensor]
    ) -> None:
        """Add a finished task's ``importance`` (detached) to the total and anchor at
        detached clones of ``parameters`` (the latest task's parameters replace the anchor)."""
        total = dict(self.importance)
        for name, value in importance.items():
            total[name] = value.detach() + total[name] if name in total else value.detach().clone()
        self.importance = total
        self.anchor = {name: param.detach().clone() for name, param in parameters.items()}

    def penalty(self, parameters: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """``sum_name sum(importance * (p - anchor)^2)`` over the names with an importance
        (one sum per parameter, stacked, then summed); None while `empty`. The stored
        tensors move once to the parameters' device (e.g. after loading a CPU checkpoint)."""
        if self.empty:
            return None
        self._place(next(iter(parameters.values())).device)
        terms = [
            (importance * (parameters[name] - self.anchor[name]).square()).sum()
            for name, importance in self.importance.items()
        ]
        return torch.stack(terms).sum()

    def _place(self, device: torch.device) -> None:
        if any(t.device != device for t in self.anchor.values()):
            self.anchor = {name: t.to(device) for name, t in self.anchor.items()}
        if any(t.device != device for t in self.importance.values()):
            self.importance = {name: t.to(device) for name, t in self.importance.items()}

    def state_dict(self) -> dict[str, Any]:
        """``{"anchor": {name: tensor}, "importance": {name: tensor}}`` (cloned tensors)."""
        return {"anchor": _cloned(self.anchor), "importance": _cloned(self.importance)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.anchor = _cloned(state["anchor"])
        self.importance = _cloned(state["importance"])


def _cloned(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in tensors.items()}


__all__ = [
    "TRANSITION_KEYS",
    "EpisodicMemory",
    "QuadraticAnchor",
    "ReservoirMemory",
    "Transitions",
    "as_transitions",
    "check_non_negative",
    "check_positive",
    "generator_state",
    "lazy_generator",
    "restore_generator",
    "task_transitions",
]
