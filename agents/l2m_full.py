"""Full fine-tuning modes: ``full`` (every weight trains, the forgetting baseline) and ``ewc``
(full fine-tuning plus Elastic Weight Consolidation).

Both train with AdamW and the pretraining's weight decay, as pretraining did.

EWC: at each task end the diagonal Fisher of the action-token cross-entropy is estimated on
that task's data, ``ewc_fisher_batches`` training batches drawn as training draws them (the
squared gradient of each batch's mean loss: a batch-level empirical Fisher, cheaper than
per-sample gradients and the usual approximation at this scale); Fishers add up over tasks
and the anchor is the weights at the last task end (`QuadraticAnchor`, shared with the SAC
side's regularizers); the loss gains ewc_coef * sum F (w - anchor)^2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from crlgym.agents.dt import Context, DecisionTransformerAgent
from crlgym.agents.l2m_strategy import FineTuningStrategy
from crlgym.agents.methods.common import QuadraticAnchor

if TYPE_CHECKING:
    from crlgym.agents.dt import _Batch
    from crlgym.agents.l2m import L2MAgent, L2MConfig


class FullFineTuning(FineTuningStrategy):
    """Every weight trains: no protection against forgetting."""

    name = "full"
    description = "full fine-tuning of every weight (the forgetting baseline)"

    def optimizer(self, agent: L2MAgent) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            agent.model.parameters(),
            lr=agent.config.learning_rate,
            weight_decay=agent.config.weight_decay,
        )


class EWCFineTuning(FullFineTuning):
    """Full fine-tuning with an EWC penalty around the weights of the last task end."""

    name = "ewc"
    description = "full fine-tuning with Elastic Weight Consolidation"

    def __init__(self, config: L2MConfig) -> None:
        super().__init__(config)
        self.anchor = QuadraticAnchor()
        """Summed diagonal Fishers and the weights at the last task end."""

    def on_task_end(self, agent: L2MAgent, task_index: int) -> None:
        """Add the task's diagonal Fisher to the penalty; anchor at the current weights."""
        params = dict(agent.model.named_parameters())
        self.anchor.consolidate(params, self.fisher(agent))

    def fisher(self, agent: L2MAgent) -> dict[str, Tensor]:
        """The current task's diagonal Fisher of every parameter (see the module doc)."""
        params = dict(agent.model.named_parameters())
        fisher = {name: torch.zeros_like(p) for name, p in params.items()}
        batches, context = self.config.ewc_fisher_batches, agent.config.context
        batch: _Batch | None = None
        state: Context | None = None
        start = 0
        agent.model.train()
        for _ in range(batches):
            if agent.config.segment_sampling == "random":
                outputs, actions, valid = agent._segment_outputs(agent._sample_batch())
            else:
                if batch is None or start >= batch.valid.shape[1]:
                    batch, start = agent._sample_batch(), 0
                    state = agent.model.initial_context(batch.valid.shape[0], agent.device)
                assert state is not None
                window = slice(start, start + context)
                outputs, new_state = agent.model.segment(
                    batch.returns_to_go[:, window], batch.states[:, window],
                    batch.actions[:, window], batch.rewards[:, window], start, state,
                )  # fmt: skip
                state = new_state.detach()
                actions, valid = batch.actions[:, window], batch.valid[:, window]
                start += context
            # The task loss alone, without the penalty of earlier tasks.
            loss, _ = DecisionTransformerAgent._loss(agent, outputs, actions, valid)
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for name, grad in zip(params, grads, strict=True):
                if grad is not None:
                    fisher[name] += grad.detach().square() / batches
        return fisher

    def penalty(self, agent: L2MAgent) -> Tensor | None:
        """ewc_coef * sum F (w - anchor)^2 over every weight; None before the first task end."""
        penalty = self.anchor.penalty(dict(agent.model.named_parameters()))
        return None if penalty is None else self.config.ewc_coef * penalty

    def loss_term(self, agent: L2MAgent) -> Tensor | None:
        return self.penalty(agent)

    def state_dict(self) -> dict[str, Any]:
        return {"quadratic_anchor": self.anchor.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "quadratic_anchor" in state:
            self.anchor.load_state_dict(state["quadratic_anchor"])
        elif state.get("fisher") is not None:  # saved before QuadraticAnchor (L2MAgent._fisher)
            self.anchor.load_state_dict({"anchor": state["anchor"], "importance": state["fisher"]})
        else:
            self.anchor = QuadraticAnchor()


__all__ = ["EWCFineTuning", "FullFineTuning"]
