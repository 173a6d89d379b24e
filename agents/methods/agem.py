"""A-GEM (Chaudhry et al. 2019, "Efficient Lifelong Learning with A-GEM"), Continual World
style: an episodic memory of every finished task, and the current gradient projected so
that it does not increase the loss on a batch of that memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from crlgym.agents.methods.base import ContinualMethod, MethodOptions, Network
from crlgym.agents.methods.common import (
    EpisodicMemory,
    as_transitions,
    check_positive,
    generator_state,
    lazy_generator,
    restore_generator,
    task_transitions,
)
from crlgym.agents.sac_losses import sac_actor_loss, sac_critic_loss

if TYPE_CHECKING:
    from crlgym.agents.sac import ContinualSAC


def agem_project(gradient: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """A-GEM's projection of the flat ``gradient`` given the flat ``reference`` gradient.

    When they conflict (``g . g_ref < 0``) the result is
    ``g - (g . g_ref / g_ref . g_ref) g_ref``, orthogonal to ``g_ref``; otherwise ``g``
    itself (the same tensor) is returned.
    """
    dot = torch.dot(gradient, reference)
    if dot >= 0:
        return gradient
    return gradient - (dot / torch.dot(reference, reference)) * reference


@dataclass(frozen=True)
class AGEMOptions(MethodOptions):
    """Options of `AGEM`."""

    samples_per_task: int = 10_000
    """Transitions stored per finished task (CW: 10,000)."""
    episodic_batch_size: int = 128
    """Memory transitions per reference gradient (CW: 128)."""
    regularize_critic: bool = True
    """Project the critic's gradient too (as in CW's A-GEM runs); false projects only the
    actor's."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(
            samples_per_task=self.samples_per_task, episodic_batch_size=self.episodic_batch_size
        )


class AGEM(ContinualMethod[None]):
    """Averaged Gradient Episodic Memory.

    At a task's end, ``samples_per_task`` of its transitions (uniform without replacement
    from the transitions added during the task) are stored, one-hot task id included. While
    a later task trains, after the backward pass of a network (the actor; the critic too
    when ``regularize_critic``) the reference gradient ``g_ref`` of the same SAC loss
    (actor loss, or critic TD loss) on an ``episodic_batch_size`` batch drawn uniformly from
    the memory of all finished tasks is computed (with ``torch.autograd.grad``, so no
    parameter's ``.grad`` is touched), and the network's gradient ``g`` (all its parameters
    flattened) is replaced by its projection when ``g . g_ref < 0``:
    ``g <- g - (g . g_ref / g_ref . g_ref) g_ref``. Before the first task ends there is no
    memory and nothing happens.

    Continual World projects actor and critic gradients together (one dot product over
    both); the agent's hooks adjust each network on its own, so here each network's
    gradient is projected with its own reference gradient.

    Options: `AGEMOptions`.
    """

    name = "agem"
    description = "A-GEM: project gradients that would increase the loss on an episodic memory"

    Options: ClassVar[type[MethodOptions]] = AGEMOptions
    options: AGEMOptions

    def __init__(self, options: MethodOptions | None = None, /, **values: Any) -> None:
        super().__init__(options, **values)
        self.memory = EpisodicMemory()
        self.generator: torch.Generator | None = None
        self.projections = {"actor": 0, "critic": 0}
        """How many gradients were projected (conflicted with the memory), per network."""
        self.adjustments = {"actor": 0, "critic": 0}
        """How many gradients were compared with a reference gradient, per network."""

    def on_task_end(self, agent: ContinualSAC, task_index: int) -> None:
        self.generator = lazy_generator(self.generator)
        data = task_transitions(agent, self.options.samples_per_task, self.generator)
        self.memory.append(task_index, data)

    def _parameters(self, agent: ContinualSAC, network: Network) -> list[torch.nn.Parameter]:
        module = agent.actor if network == "actor" else agent.critic
        return [p for p in module.parameters() if p.requires_grad]

    def reference_gradient(self, agent: ContinualSAC, network: Network) -> torch.Tensor:
        """Flat gradient of ``network``'s SAC loss on a fresh batch of the memory (leaves
        every parameter's ``.grad`` as it is)."""
        batch = as_transitions(self.memory.sample(self.options.episodic_batch_size), agent.device)
        if network == "actor":
            loss = sac_actor_loss(agent, batch.observations)
        else:
            loss = sac_critic_loss(agent, batch)
        parameters = self._parameters(agent, network)
        gradients = torch.autograd.grad(loss, parameters, allow_unused=True)
        return torch.cat(
            [
                (torch.zeros_like(p) if g is None else g).reshape(-1)
                for p, g in zip(parameters, gradients, strict=True)
            ]
        )

    def adjust_gradients(self, agent: ContinualSAC, network: Network) -> None:
        if len(self.memory) == 0 or (network == "critic" and not self.options.regularize_critic):
            return
        reference = self.reference_gradient(agent, network)
        parameters = self._parameters(agent, network)
        gradient = torch.cat(
            [(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in parameters]
        )
        self.adjustments[network] += 1
        projected = agem_project(gradient, reference)
        if projected is gradient:
            return
        self.projections[network] += 1
        for p, chunk in zip(
            parameters, projected.split([p.numel() for p in parameters]), strict=True
        ):
            if p.grad is None:
                p.grad = chunk.view_as(p).clone()
            else:
                p.grad.copy_(chunk.view_as(p))

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict(), "generator": generator_state(self.generator)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])
        self.generator = restore_generator(state["generator"])


__all__ = ["AGEM", "AGEMOptions", "agem_project"]
