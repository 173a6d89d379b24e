"""Rehearsal methods: perfect-memory replay (`Replay`) and behaviour-cloning replay (`ClonEx`).

Also the memory pieces the rehearsal methods share (A-GEM in `crlgym.agents.methods.agem` uses them
too):

- `task_transitions`: the current task's transitions, read from the agent's replay buffer.
- `sac_actor_loss` / `sac_critic_loss`: SAC's actor and critic losses on any batch, computed
  exactly as `ContinualSAC.train` computes them (per-sample entropy coefficient of the
  sample's own task, twin critics, target critic for the TD target).
- `EpisodicMemory` (a fixed number of samples per finished task) and `ReservoirMemory`
  (reservoir sampling over everything ever added).

Memories are CPU tensors (moved to the agent's device one batch at a time) and their
``state_dict`` holds only tensors, numbers and lists, so checkpoints load with
``torch.load(weights_only=True)``. Every observation keeps its one-hot task id, so a
multi-head network evaluates a remembered sample with that sample's own head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from crlgym.agents.methods.base import ContinualMethod
from torch.nn import functional as F

from crlgym.errors import ConfigError

if TYPE_CHECKING:
    from crlgym.agents.sac import ContinualSAC

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


# --- SAC's losses on any batch ----------------------------------------------------------


def sac_actor_loss(agent: ContinualSAC, observations: torch.Tensor) -> torch.Tensor:
    """SAC's actor loss on ``observations``, as in `ContinualSAC.train`:
    mean of ``alpha * log pi(a|s) - min_i Q_i(s, a)``, ``a ~ pi(.|s)`` reparameterized,
    ``alpha`` (detached) of each sample's own task."""
    actions, log_prob = agent.actor.action_log_prob(observations)
    alpha = agent.entropy_coefficients(observations).detach().exp()
    q_pi = torch.cat(agent.critic(observations, actions), dim=1)
    return (alpha * log_prob.reshape(-1, 1) - q_pi.min(dim=1, keepdim=True).values).mean()


def sac_critic_loss(agent: ContinualSAC, batch: Any) -> torch.Tensor:
    """SAC's critic (TD) loss on ``batch`` (anything with `Transitions`' fields), as in
    `ContinualSAC.train`: the target uses the target critic's min over the twins, the
    entropy bonus with each sample's own task alpha, and no gradient."""
    alpha = agent.entropy_coefficients(batch.observations).detach().exp()
    with torch.no_grad():
        next_actions, next_log_prob = agent.actor.action_log_prob(batch.next_observations)
        next_q = torch.cat(agent.critic_target(batch.next_observations, next_actions), dim=1)
        next_q = next_q.min(dim=1, keepdim=True).values - alpha * next_log_prob.reshape(-1, 1)
        target_q = batch.rewards + (1 - batch.dones) * agent.gamma * next_q
    current_q = agent.critic(batch.observations, batch.actions)
    return 0.5 * sum(F.mse_loss(q, target_q) for q in current_q)


def gaussian_kl(
    mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor, log_std_q: torch.Tensor
) -> torch.Tensor:
    """KL(p || q) of diagonal Gaussians, summed over the last dimension."""
    variance_ratio = torch.exp(2 * (log_std_p - log_std_q))
    mean_term = (mean_p - mean_q) ** 2 * torch.exp(-2 * log_std_q)
    return (log_std_q - log_std_p + 0.5 * (variance_ratio + mean_term - 1)).sum(dim=-1)


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
        self.tasks = [int(task) for task in state["tasks"]]
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
            slots, items = slots[kept].numpy(), items[kept].numpy()
            # a slot drawn twice keeps the later sample, as sequential insertion would
            _, first_in_reverse = np.unique(slots[::-1], return_index=True)
            last = len(slots) - 1 - first_in_reverse
            slots, items = torch.as_tensor(slots[last]), torch.as_tensor(items[last])
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


# --- the methods ------------------------------------------------------------------------


class Replay(ContinualMethod):
    """Perfect-memory replay (Continual World's "Perfect Memory", Wolczyk et al. 2021).

    CW keeps one huge buffer (20M transitions, never reset) and trains on batches of 512
    drawn from all tasks. Here the agent's own buffer keeps its behaviour (FIFO, reset at a
    task change with the default ``reset_buffer=True``) and holds the current task; this
    method keeps every finished task's transitions in a reservoir and adds SAC's losses on a
    reservoir batch to the agent's losses:

        critic loss += TD loss on the memory batch
        actor loss  += SAC actor loss on the memory batch's observations

    so every gradient step trains on ``config.batch_size`` current plus ``batch_size`` old
    transitions, each old transition with its own one-hot task id (hence its own head and
    its own task's entropy coefficient, which stays as it was at the task's end: the
    entropy-coefficient loss sees only current data). Mirroring CW's 512 mixed batch means
    e.g. ``config.batch_size=256`` and ``batch_size=256``. The same memory batch serves the
    critic and the actor of one gradient step, as in SAC. A task's transitions are the ones
    added since it started, so a run with ``reset_buffer=False`` stores nothing twice.

    Options (keyword-only):
        capacity: reservoir size in transitions (default 1_000_000). CW's 20M (every
            transition of CW10) needs about 8 GB for Meta-World observations; with 1M each
            transition of the finished tasks is kept with equal probability
            (reservoir sampling), e.g. 1/9 of each of 9 finished 1M-step tasks.
        batch_size: transitions of the memory batch per gradient step (default 128).
    """

    name = "replay"
    description = "perfect-memory replay: SAC losses on a reservoir of all finished tasks' data"

    def __init__(self, *, capacity: int = 1_000_000, batch_size: int = 128) -> None:
        check_positive(capacity=capacity, batch_size=batch_size)
        self.capacity, self.batch_size = capacity, batch_size
        self.memory = ReservoirMemory(capacity)
        self._pending: Transitions | None = None

    def on_task_end(self, agent: ContinualSAC, task_index: int) -> None:
        self.memory.add(task_transitions(agent))

    def memory_batch(self, agent: ContinualSAC) -> Transitions:
        """A batch of remembered transitions on the agent's device."""
        return as_transitions(self.memory.sample(self.batch_size), agent.device)

    def critic_aux_loss(self, agent: ContinualSAC, batch: Any) -> torch.Tensor | None:
        if len(self.memory) == 0:
            return None
        self._pending = self.memory_batch(agent)
        return sac_critic_loss(agent, self._pending)

    def actor_aux_loss(self, agent: ContinualSAC, batch: Any) -> torch.Tensor | None:
        if len(self.memory) == 0:
            return None
        memory_batch = self._pending if self._pending is not None else self.memory_batch(agent)
        self._pending = None
        return sac_actor_loss(agent, memory_batch.observations)

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])
        self._pending = None


class ClonEx(ContinualMethod):
    """Behaviour-cloning replay (ClonEx, Wolczyk et al. 2022, "Disentangling Transfer in
    Continual Reinforcement Learning"), the cloning part.

    At a task's end, ``states_per_task`` of its states (uniform without replacement from the
    task's transitions) are stored with the policy's outputs on them: the mean and log std
    of the pre-tanh Gaussian of that task's head, plus the twin critics' Q-values of the
    buffer's actions. While later tasks train, the actor loss gets

        coef * mean_s KL(stored Gaussian(s) || current Gaussian(s))

    on a batch of stored states drawn uniformly over all earlier tasks (KL summed over action
    dimensions; the old policy first, as in policy distillation, so the current policy must
    cover the old one's actions). With ``critic_coef > 0`` the critic loss gets
    ``critic_coef * 0.5 * sum_i MSE(Q_i(s, a), stored Q_i(s, a))`` on the same batch.
    The paper's exploration part (starting a new task's head from the best previous head) is
    not included: hooks do not act in the environment.

    Options (keyword-only):
        states_per_task: stored states per finished task (default 10_000, as the paper).
        batch_size: stored states per gradient step (default 128, CW's batch size).
        coef: weight of the KL term (default 1.0, the paper's default policy
            regularization coefficient; the KL is O(1) per state while SAC's actor loss is
            of the order of Q-values, so long sequences may want a larger value).
        critic_coef: weight of the critic regularizer (default 0.0: off, as the paper
            found regularizing the critic not to help).
    """

    name = "clonex"
    description = "behaviour-cloning replay: KL to the stored policy on earlier tasks' states"

    def __init__(
        self,
        *,
        states_per_task: int = 10_000,
        batch_size: int = 128,
        coef: float = 1.0,
        critic_coef: float = 0.0,
    ) -> None:
        check_positive(states_per_task=states_per_task, batch_size=batch_size)
        check_non_negative(coef=coef, critic_coef=critic_coef)
        self.states_per_task, self.batch_size = states_per_task, batch_size
        self.coef, self.critic_coef = coef, critic_coef
        self.memory = EpisodicMemory()
        self.generator: torch.Generator | None = None
        self._pending: dict[str, torch.Tensor] | None = None

    def on_task_end(self, agent: ContinualSAC, task_index: int) -> None:
        self.generator = lazy_generator(self.generator)
        data = task_transitions(agent, self.states_per_task, self.generator)
        observations, actions = data["observations"], data["actions"]
        means, log_stds, q_values = [], [], []
        with torch.no_grad():
            for start in range(0, len(observations), 4096):
                obs = observations[start : start + 4096].to(agent.device)
                act = actions[start : start + 4096].to(agent.device)
                mean, log_std, _ = agent.actor.get_action_dist_params(obs)
                means.append(mean.cpu())
                log_stds.append(log_std.cpu())
                q_values.append(torch.cat(agent.critic(obs, act), dim=1).cpu())
        self.memory.append(
            task_index,
            {
                "observations": observations,
                "actions": actions,
                "mean": torch.cat(means),
                "log_std": torch.cat(log_stds),
                "q_values": torch.cat(q_values),
            },
        )

    def _batch(self, agent: ContinualSAC) -> dict[str, torch.Tensor]:
        return {
            name: tensor.to(agent.device)
            for name, tensor in self.memory.sample(self.batch_size).items()
        }

    def kl(self, agent: ContinualSAC, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean KL(stored || current policy) over the batch's states."""
        mean, log_std, _ = agent.actor.get_action_dist_params(batch["observations"])
        return gaussian_kl(batch["mean"], batch["log_std"], mean, log_std).mean()

    def critic_aux_loss(self, agent: ContinualSAC, batch: Any) -> torch.Tensor | None:
        if len(self.memory) == 0 or self.critic_coef == 0:
            return None
        self._pending = self._batch(agent)
        stored = self._pending["q_values"]
        current = agent.critic(self._pending["observations"], self._pending["actions"])
        return (
            self.critic_coef
            * 0.5
            * sum(F.mse_loss(q, stored[:, i : i + 1]) for i, q in enumerate(current))
        )

    def actor_aux_loss(self, agent: ContinualSAC, batch: Any) -> torch.Tensor | None:
        if len(self.memory) == 0 or self.coef == 0:
            return None
        memory_batch = self._pending if self._pending is not None else self._batch(agent)
        self._pending = None
        return self.coef * self.kl(agent, memory_batch)

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict(), "generator": generator_state(self.generator)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])
        self.generator = restore_generator(state["generator"])
        self._pending = None


__all__ = [
    "TRANSITION_KEYS",
    "ClonEx",
    "EpisodicMemory",
    "Replay",
    "ReservoirMemory",
    "Transitions",
    "as_transitions",
    "check_non_negative",
    "check_positive",
    "gaussian_kl",
    "generator_state",
    "lazy_generator",
    "restore_generator",
    "sac_actor_loss",
    "sac_critic_loss",
    "task_transitions",
]
