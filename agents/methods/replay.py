"""Rehearsal methods: perfect-memory replay (`Replay`) and behaviour-cloning replay (`ClonEx`).

Both draw one memory batch per gradient step (`ContinualMethod.sample_extra_batch`) and
use it in the critic's and the actor's auxiliary loss of that step. The memories and
buffer helpers they share with A-GEM are in `crlgym.agents.methods.common`; SAC's losses
on a memory batch are `crlgym.agents.sac_losses`'s, the very functions the agent's own
update calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch.nn import functional as F

from crlgym.agents.methods.base import ContinualMethod, MethodOptions
from crlgym.agents.methods.common import (
    EpisodicMemory,
    ReservoirMemory,
    Transitions,
    as_transitions,
    check_non_negative,
    check_positive,
    generator_state,
    lazy_generator,
    restore_generator,
    task_transitions,
)
from crlgym.agents.sac_losses import sac_actor_loss, sac_critic_loss

if TYPE_CHECKING:
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    from crlgym.agents.sac import ContinualSAC


def gaussian_kl(
    mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor, log_std_q: torch.Tensor
) -> torch.Tensor:
    """KL(p || q) of diagonal Gaussians, summed over the last dimension."""
    variance_ratio = torch.exp(2 * (log_std_p - log_std_q))
    mean_term = (mean_p - mean_q) ** 2 * torch.exp(-2 * log_std_q)
    return (log_std_q - log_std_p + 0.5 * (variance_ratio + mean_term - 1)).sum(dim=-1)


# --- perfect-memory replay --------------------------------------------------------------


@dataclass(frozen=True)
class ReplayOptions(MethodOptions):
    """Options of `Replay`."""

    capacity: int = 1_000_000
    """Reservoir size in transitions. CW's 20M (every transition of CW10) needs about 8 GB
    for Meta-World observations; with 1M each transition of the finished tasks is kept with
    equal probability (reservoir sampling), e.g. 1/9 of each of 9 finished 1M-step tasks."""
    batch_size: int = 128
    """Transitions of the memory batch per gradient step."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(capacity=self.capacity, batch_size=self.batch_size)


class Replay(ContinualMethod[Transitions]):
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
    Options: `ReplayOptions`.
    """

    name = "replay"
    description = "perfect-memory replay: SAC losses on a reservoir of all finished tasks' data"
    Options: ClassVar[type[MethodOptions]] = ReplayOptions
    options: ReplayOptions

    def __init__(self, options: MethodOptions | None = None, /, **values: Any) -> None:
        super().__init__(options, **values)
        self.memory = ReservoirMemory(self.options.capacity)

    def on_task_end(self, agent: ContinualSAC, task_index: int) -> None:
        self.memory.add(task_transitions(agent))

    def sample_extra_batch(self, agent: ContinualSAC) -> Transitions | None:
        """A batch of remembered transitions on the agent's device; None while empty."""
        if len(self.memory) == 0:
            return None
        return as_transitions(self.memory.sample(self.options.batch_size), agent.device)

    def critic_aux_loss(
        self, agent: ContinualSAC, batch: ReplayBufferSamples, extra: Transitions | None
    ) -> torch.Tensor | None:
        return None if extra is None else sac_critic_loss(agent, extra)

    def actor_aux_loss(
        self, agent: ContinualSAC, batch: ReplayBufferSamples, extra: Transitions | None
    ) -> torch.Tensor | None:
        return None if extra is None else sac_actor_loss(agent, extra.observations)

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])


# --- behaviour-cloning replay -----------------------------------------------------------

ClonedStates = dict[str, torch.Tensor]
"""A batch of ClonEx's memory: observations, actions and the stored mean, log_std and
q_values."""


@dataclass(frozen=True)
class ClonExOptions(MethodOptions):
    """Options of `ClonEx`."""

    states_per_task: int = 10_000
    """Stored states per finished task (the paper's 10,000)."""
    batch_size: int = 128
    """Stored states per gradient step (CW's batch size)."""
    coef: float = 1.0
    """Weight of the KL term (the paper's default policy regularization coefficient; the KL
    is O(1) per state while SAC's actor loss is of the order of Q-values, so long sequences
    may want a larger value)."""
    critic_coef: float = 0.0
    """Weight of the critic regularizer (0: off, as the paper found regularizing the critic
    not to help)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(states_per_task=self.states_per_task, batch_size=self.batch_size)
        check_non_negative(coef=self.coef, critic_coef=self.critic_coef)


class ClonEx(ContinualMethod[ClonedStates]):
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
    not included: hooks do not act in the environment. Options: `ClonExOptions`.
    """

    name = "clonex"
    description = "behaviour-cloning replay: KL to the stored policy on earlier tasks' states"
    Options: ClassVar[type[MethodOptions]] = ClonExOptions
    options: ClonExOptions

    def __init__(self, options: MethodOptions | None = None, /, **values: Any) -> None:
        super().__init__(options, **values)
        self.memory = EpisodicMemory()
        self.generator: torch.Generator | None = None

    def on_task_end(self, agent: ContinualSAC, task_index: int) -> None:
        self.generator = lazy_generator(self.generator)
        data = task_transitions(agent, self.options.states_per_task, self.generator)
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

    def sample_extra_batch(self, agent: ContinualSAC) -> ClonedStates | None:
        """Stored states (with their stored outputs) on the agent's device; None while the
        memory is empty or both coefficients are 0."""
        if len(self.memory) == 0 or (self.options.coef == 0 and self.options.critic_coef == 0):
            return None
        return {
            name: tensor.to(agent.device)
            for name, tensor in self.memory.sample(self.options.batch_size).items()
        }

    def kl(self, agent: ContinualSAC, batch: ClonedStates) -> torch.Tensor:
        """Mean KL(stored || current policy) over the batch's states."""
        mean, log_std, _ = agent.actor.get_action_dist_params(batch["observations"])
        return gaussian_kl(batch["mean"], batch["log_std"], mean, log_std).mean()

    def critic_aux_loss(
        self, agent: ContinualSAC, batch: ReplayBufferSamples, extra: ClonedStates | None
    ) -> torch.Tensor | None:
        if extra is None or self.options.critic_coef == 0:
            return None
        stored = extra["q_values"]
        current = agent.critic(extra["observations"], extra["actions"])
        total = F.mse_loss(current[0], stored[:, 0:1])
        for i, q in enumerate(current[1:], start=1):
            total = total + F.mse_loss(q, stored[:, i : i + 1])
        return self.options.critic_coef * 0.5 * total

    def actor_aux_loss(
        self, agent: ContinualSAC, batch: ReplayBufferSamples, extra: ClonedStates | None
    ) -> torch.Tensor | None:
        if extra is None or self.options.coef == 0:
            return None
        return self.options.coef * self.kl(agent, extra)

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict(), "generator": generator_state(self.generator)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])
        self.generator = restore_generator(state["generator"])


__all__ = ["ClonEx", "ClonExOptions", "ClonedStates", "Replay", "ReplayOptions", "gaussian_kl"]
