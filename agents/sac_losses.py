"""SAC's three losses, defined once: `ContinualSAC`'s update and the methods that need SAC's
losses on other data (replay, A-GEM, plasticity probes) all call these.

- `entropy_coefficient_loss`: the temperature loss, ``-mean(log alpha * (log pi + H))``.
- `critic_loss`: the twin critics' TD loss; the target uses the target critic's min over the
  twins and the entropy bonus with each sample's own task alpha, without gradient.
- `actor_loss`: ``mean(alpha * log pi(a|s) - min_i Q_i(s, a))`` for reparameterized actions.

``alpha`` is always per sample, shape (batch, 1), detached: each sample's own task's
coefficient (`ContinualSAC.entropy_coefficients`). `sac_critic_loss` and `sac_actor_loss`
are the same losses on any batch with the agent's current alphas (and, for the actor,
freshly sampled actions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch
from torch.nn import functional as F

if TYPE_CHECKING:
    from crlgym.agents.sac import ContinualSAC


class TransitionBatch(Protocol):
    """Anything with SB3's ``ReplayBufferSamples`` fields (e.g. `Transitions`)."""

    @property
    def observations(self) -> torch.Tensor: ...

    @property
    def actions(self) -> torch.Tensor: ...

    @property
    def next_observations(self) -> torch.Tensor: ...

    @property
    def dones(self) -> torch.Tensor: ...

    @property
    def rewards(self) -> torch.Tensor: ...


def entropy_coefficient_loss(
    log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float | torch.Tensor
) -> torch.Tensor:
    """The temperature loss ``-mean(log_alpha * (log_prob + target_entropy))``, the second
    factor detached (``log_alpha`` and ``log_prob``: shape (batch, 1))."""
    return -(log_alpha * (log_prob + target_entropy).detach()).mean()


def critic_loss(agent: ContinualSAC, batch: TransitionBatch, alpha: torch.Tensor) -> torch.Tensor:
    """``0.5 * sum_i MSE(Q_i(s, a), r + (1 - done) * gamma * (min_j Q'_j(s', a') - alpha log
    pi(a'|s')))`` with ``a' ~ pi(.|s')`` and the target critic ``Q'``, the target without
    gradient. Draws the next actions from the global torch RNG."""
    with torch.no_grad():
        next_actions, next_log_prob = agent.actor.action_log_prob(batch.next_observations)
        next_q = torch.cat(agent.critic_target(batch.next_observations, next_actions), dim=1)
        next_q = next_q.min(dim=1, keepdim=True).values
        next_q = next_q - alpha * next_log_prob.reshape(-1, 1)
        target_q = batch.rewards + (1 - batch.dones) * agent.gamma * next_q
    current_q = agent.critic(batch.observations, batch.actions)
    total = F.mse_loss(current_q[0], target_q)
    for q in current_q[1:]:
        total = total + F.mse_loss(q, target_q)
    return 0.5 * total


def actor_loss(
    agent: ContinualSAC,
    observations: torch.Tensor,
    actions: torch.Tensor,
    log_prob: torch.Tensor,
    alpha: torch.Tensor,
) -> torch.Tensor:
    """``mean(alpha * log_prob - min_i Q_i(observations, actions))``; ``actions`` and
    ``log_prob`` (shape (batch, 1)) come from the actor, reparameterized."""
    q_pi = torch.cat(agent.critic(observations, actions), dim=1)
    return (alpha * log_prob - q_pi.min(dim=1, keepdim=True).values).mean()


def sac_critic_loss(agent: ContinualSAC, batch: TransitionBatch) -> torch.Tensor:
    """`critic_loss` on ``batch`` with each sample's current task alpha."""
    alpha = agent.entropy_coefficients(batch.observations).detach().exp()
    return critic_loss(agent, batch, alpha)


def sac_actor_loss(agent: ContinualSAC, observations: torch.Tensor) -> torch.Tensor:
    """`actor_loss` on ``observations`` with freshly sampled actions (``a ~ pi(.|s)``) and each
    sample's current task alpha."""
    actions, log_prob = agent.actor.action_log_prob(observations)
    alpha = agent.entropy_coefficients(observations).detach().exp()
    return actor_loss(agent, observations, actions, log_prob.reshape(-1, 1), alpha)


__all__ = [
    "TransitionBatch",
    "actor_loss",
    "critic_loss",
    "entropy_coefficient_loss",
    "sac_actor_loss",
    "sac_critic_loss",
]
