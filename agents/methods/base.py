"""How a continual-learning method plugs into the agent.

A method sees the agent only through these named hooks; nothing method-specific lives in
the agent or the runner. Every hook has a no-op default, so `FineTuning` (no protection,
the lower bound) is the base class itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:
    from crlgym.agents.sac import ContinualSAC
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

Network = Literal["actor", "critic"]


class ContinualMethod:
    """Base class of continual-learning methods (fine-tuning when nothing is overridden)."""

    name = "finetune"
    description = "fine-tuning: no protection against forgetting (the lower bound)"

    def on_task_start(self, agent: ContinualSAC, task_index: int) -> None:
        """Called after the agent applied its own task-change resets."""

    def on_task_end(self, agent: ContinualSAC, task_index: int) -> None:
        """Called when the task's step budget is spent, before evaluation of the next task."""

    def actor_aux_loss(
        self, agent: ContinualSAC, batch: ReplayBufferSamples
    ) -> torch.Tensor | None:
        """A term added to the actor loss (e.g. a regularizer); None for nothing."""
        return None

    def critic_aux_loss(
        self, agent: ContinualSAC, batch: ReplayBufferSamples
    ) -> torch.Tensor | None:
        """A term added to the critic loss; None for nothing."""
        return None

    def adjust_gradients(self, agent: ContinualSAC, network: Network) -> None:
        """Change ``network``'s gradients after backward, before the optimizer step."""

    @contextmanager
    def evaluating(self, agent: ContinualSAC, task_index: int) -> Iterator[None]:
        """Context in which the agent acts on task ``task_index`` during evaluation (e.g.
        PackNet applies that task's masks); must leave the agent as it found it."""
        yield

    def state_dict(self) -> dict[str, Any]:
        """Per-task state to keep in checkpoints (tensors, numbers, lists, dicts)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


class FineTuning(ContinualMethod):
    """No protection: the agent simply keeps training on each new task."""
