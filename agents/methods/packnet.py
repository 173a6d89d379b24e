"""PackNet (Mallya & Lazebnik 2018) as Continual World runs it with SAC.

Every managed weight has an *owner*: the task that keeps it, or -1 while it is free.

* **Training task t.** Only free weights learn; weights owned by earlier tasks are frozen
  (their gradients are zeroed and, because Adam's running moments and weight decay move a
  weight even with a zero gradient, their values are written back after every optimizer
  step by a step post-hook). The forward pass uses every weight.
* **Pruning.** When the last ``retrain`` env steps of the task's budget begin (at the
  first actor update there), each weight matrix keeps the largest-magnitude
  ``1 - prune_fraction`` of its free weights for task t (owner = t); the others are set
  to zero and stay free for later tasks. The paper's
  schedule prunes ``tasks_left / (tasks_left + 1)`` (tasks_left = num_tasks - t - 1), so
  every task gets an equal share; the last task keeps everything that is left.
* **Retraining.** For the rest of the budget only the weights owned by t learn; the pruned
  ones stay at zero. The Adam state of the packed networks is reset at pruning (the
  moments belong to the unpruned network), as CW resets its optimizer before retraining.
* **After task t** its weights are frozen for good. The pruned (zero) weights are not
  re-initialized: the next task starts training them from zero, as in PackNet and CW.
* **Evaluating task j** (`evaluating`) zeroes every weight that task j did not see: owned
  by a later task, or free while j is an earlier task than the current one (free weights
  count as the current task's). The exact values come back on exit.

Design decisions:

* **What is packed.** The actor's Linear weights (trunk ``latent_pi``, heads ``mu`` and
  ``log_std``); the critics' as well with ``regularize_critic`` (CW's default is False:
  the critic is fine-tuned, or reset with ``SACConfig.reset_critic``).
* **Biases and LayerNorm** are never pruned: they learn during the first task
  (retraining included) and are frozen after it (owner 0), as in PackNet, whose biases
  are fixed after the first task. CW freezes them one phase earlier, when the first
  task's retraining starts.
* **Multi-head output layers.** Head k is only ever used for task k, so its rows (weights
  and biases) are not pruned: all of them become task k's when task k is pruned. (CW
  leaves multi-head outputs out of PackNet altogether; owning them also shields an old
  head from leftover Adam moments or replayed old-task data.) With one head, the output
  layer is packed like the trunk.
* **Retraining length.** CW retrains for ``retrain_steps`` extra gradient steps after
  the task's 1M env steps, on the replay buffer alone. Here retraining is part of the
  budget, so every method sees the same env steps: the last ``min(retrain_steps,
  budget // 2)`` env steps of the task (the agent keeps collecting data with the pruned
  policy). Without a known budget (``agent.task_budget is None``) or with
  ``retrain_steps=0``, pruning happens at the task's end and nothing retrains.
* **Gradient clipping.** CW's PackNet runs clip the global gradient norm of actor and
  critic to ``clipnorm = 2e-5`` (after masking; with TF's Adam epsilon 1e-7 this also
  damps the step size; torch's epsilon is 1e-8). This method clips actor and critic the
  same way; it cannot reach the entropy coefficient's gradient, which CW clips as well.
  ``clipnorm=None`` turns clipping off.
* **Resets.** Re-initializing a packed network at a task change (``reset_actor``, or
  ``reset_critic`` with ``regularize_critic``) would erase the frozen weights, so it is
  refused.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

import torch
from torch import nn

from crlgym.agents.methods.base import ContinualMethod, MethodOptions, Network
from crlgym.errors import ConfigError

if TYPE_CHECKING:
    from crlgym.agents.sac import ContinualSAC

FREE = -1
"""Owner of a weight no task keeps yet."""

Kind = Literal["weight", "shared", "head"]


@dataclass
class Slot:
    """One managed parameter tensor: how PackNet treats it."""

    name: str
    param: nn.Parameter
    kind: Kind
    """"weight": pruned; "shared": bias or LayerNorm, the first task's; "head": multi-head
    output layer, head k's rows are task k's."""
    rows_per_head: int = 0


@dataclass
class Frozen:
    """What must not move in the current phase (float masks: multiplying is several times
    faster than boolean indexing or ``where``, and exact with 0/1 factors)."""

    slot: Slot
    trainable: torch.Tensor | None
    """1.0 where the entry may learn, 0.0 where frozen; None: the whole tensor is frozen."""
    values: torch.Tensor
    """The frozen entries' values, 0.0 elsewhere (the whole tensor when all frozen)."""


@dataclass(frozen=True)
class PackNetOptions(MethodOptions):
    """Options of `PackNet`."""

    retrain_steps: int = 100_000
    """Env steps at the end of each task's budget spent retraining the kept weights after
    pruning (at most half the budget)."""
    prune_fraction: float | None = None
    """Share of the still-free weights each task gives up (the last task keeps all); None:
    the paper's tasks_left / (tasks_left + 1)."""
    regularize_critic: bool = False
    """Pack the critics too (CW: false, only the actor)."""
    clipnorm: float | None = 2e-5
    """Global gradient norm bound of actor and critic (CW: 2e-5); None: off."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.retrain_steps < 0:
            raise ConfigError(f"retrain_steps must be >= 0, got {self.retrain_steps}")
        if self.prune_fraction is not None and not 0.0 <= self.prune_fraction < 1.0:
            raise ConfigError(f"prune_fraction must be in [0, 1), got {self.prune_fraction}")
        if self.clipnorm is not None and self.clipnorm <= 0:
            raise ConfigError(f"clipnorm must be positive, got {self.clipnorm}")


class PackNet(ContinualMethod[None]):
    """PackNet: prune after each task, freeze what the task keeps, mask per task at test.

    Options: `PackNetOptions`.
    """

    name = "packnet"
    description = "PackNet: per-task weight pruning and freezing, task masks at evaluation"

    Options: ClassVar[type[MethodOptions]] = PackNetOptions
    options: PackNetOptions

    def __init__(self, options: MethodOptions | None = None, /, **values: Any) -> None:
        super().__init__(options, **values)
        self.owners: dict[str, torch.Tensor] = {}
        """Owner task of every entry of every managed parameter (int16, -1: free)."""
        self.packed_task = FREE
        """The last task whose weights were claimed (pruned)."""
        self._slots: dict[str, list[Slot]] | None = None
        self._slots_of: nn.Module | None = None
        self._frozen: dict[str, list[Frozen]] | None = None
        self._frozen_phase: tuple[int, bool] | None = None
        self._hooks: dict[str, tuple[torch.optim.Optimizer, Any]] = {}

    # -- which parameters ------------------------------------------------------------------
    def _networks(self) -> tuple[Network, ...]:
        return ("actor", "critic") if self.options.regularize_critic else ("actor",)

    def slots(self, agent: ContinualSAC) -> dict[str, list[Slot]]:
        """The managed parameters of each packed network (built once per agent)."""
        if self._slots is None or self._slots_of is not agent.actor:
            heads = agent.actor.num_heads
            actor = agent.actor
            slots = {"actor": _trunk_slots("actor.latent_pi", actor.latent_pi)}
            for layer_name, layer in actor.output_layers().items():  # mu, then log_std
                slots["actor"] += _head_slots(f"actor.{layer_name}", layer, heads)
            if self.options.regularize_critic:
                slots["critic"] = []
                for index, q_net in enumerate(agent.critic.q_networks):
                    trunk, head = q_net.get_submodule("0"), q_net.get_submodule("1")
                    slots["critic"] += _trunk_slots(f"critic.qf{index}.0", trunk)
                    slots["critic"] += _head_slots(
                        f"critic.qf{index}.1", cast(nn.Linear, head), heads
                    )
            self._slots, self._slots_of = slots, agent.actor
            for slot in self.all_slots(agent):
                if slot.name not in self.owners:
                    self.owners[slot.name] = torch.full(slot.param.shape, FREE, dtype=torch.int16)
                self.owners[slot.name] = self.owners[slot.name].to(slot.param.device)
        return self._slots

    def all_slots(self, agent: ContinualSAC) -> Iterator[Slot]:
        """Every managed parameter, actor first."""
        for network_slots in self.slots(agent).values():
            yield from network_slots

    # -- schedule --------------------------------------------------------------------------
    def fraction_to_prune(self, task_index: int, num_tasks: int) -> float:
        """Share of the free weights task ``task_index`` gives up when it is pruned."""
        tasks_left = num_tasks - task_index - 1
        if tasks_left <= 0:
            return 0.0
        if self.options.prune_fraction is None:
            return tasks_left / (tasks_left + 1)
        return self.options.prune_fraction

    def retrain_length(self, agent: ContinualSAC) -> int:
        """Env steps of the current task's retraining phase (0: prune at the task's end)."""
        budget = agent.task_budget
        if budget is None or self.fraction_to_prune(agent.current_task, agent.num_tasks) == 0:
            return 0
        return min(self.options.retrain_steps, budget // 2)

    def _packed(self, agent: ContinualSAC) -> bool:
        return self.packed_task == agent.current_task

    # -- hooks -----------------------------------------------------------------------------
    def on_task_start(self, agent: ContinualSAC, task_index: int) -> None:
        if agent.config.reset_actor or (
            self.options.regularize_critic and agent.config.reset_critic
        ):
            raise ConfigError(
                "PackNet keeps earlier tasks' weights in the packed networks: turn off "
                "reset_actor (and reset_critic with regularize_critic)"
            )
        self.slots(agent)
        self._frozen = None

    def on_task_end(self, agent: ContinualSAC, task_index: int) -> None:
        if self.packed_task != task_index:
            self.prune(agent, task_index)
        self._frozen = None

    def adjust_gradients(self, agent: ContinualSAC, network: Network) -> None:
        # Pruning waits for the actor's call: the actor's graph of this gradient step is
        # still needed when the critic's gradients come, and pruning writes the weights.
        retrain = self.retrain_length(agent) if network == "actor" else 0
        if retrain > 0 and not self._packed(agent):
            assert agent.task_budget is not None
            if agent.num_timesteps - agent.task_start_step >= agent.task_budget - retrain:
                self.prune(agent, agent.current_task)
                self._reset_optimizer_states(agent)
        if network in self._networks():
            for frozen in self._frozen_entries(agent)[network]:
                grad = frozen.slot.param.grad
                if grad is None:
                    continue
                if frozen.trainable is None:
                    frozen.slot.param.grad = None  # the optimizer skips it entirely
                else:
                    grad.mul_(frozen.trainable)
            self._hook_optimizer(agent, network)
        if self.options.clipnorm is not None:
            module = agent.actor if network == "actor" else agent.critic
            nn.utils.clip_grad_norm_(module.parameters(), self.options.clipnorm)

    @contextmanager
    def evaluating(self, agent: ContinualSAC, task_index: int) -> Iterator[None]:
        """Only the weights task ``task_index`` was trained with (free ones count as the
        current task's); the exact values are back on exit."""
        saved: list[tuple[nn.Parameter, torch.Tensor]] = []
        with torch.no_grad():
            for slot in self.all_slots(agent):
                owner = self.owners[slot.name]
                visible = (owner >= 0) & (owner <= task_index)
                if task_index >= agent.current_task:
                    visible |= owner == FREE
                if bool(visible.all()):
                    continue
                saved.append((slot.param, slot.param.detach().clone()))
                slot.param.masked_fill_(~visible, 0.0)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, value in saved:
                    param.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {
            "owners": {name: owner.clone() for name, owner in self.owners.items()},
            "packed_task": self.packed_task,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.owners = {name: owner.clone() for name, owner in state["owners"].items()}
        self.packed_task = int(state["packed_task"])
        self._slots = None  # re-checks that every managed parameter has owners
        self._frozen = None

    # -- pruning ---------------------------------------------------------------------------
    @torch.no_grad()
    def prune(self, agent: ContinualSAC, task_index: int) -> None:
        """Give task ``task_index`` its weights: the largest free ones of each matrix,
        its head's rows, and (first task) the biases and LayerNorm; zero the rest."""
        fraction = self.fraction_to_prune(task_index, agent.num_tasks)
        for slot in self.all_slots(agent):
            owner, param = self.owners[slot.name], slot.param
            free = owner == FREE
            if slot.kind == "shared":
                owner[free] = task_index
            elif slot.kind == "head":
                rows = slice(task_index * slot.rows_per_head, (task_index + 1) * slot.rows_per_head)
                owner[rows][free[rows]] = task_index
            else:
                free_index = free.flatten().nonzero().squeeze(1)
                keep = len(free_index) - int(len(free_index) * fraction)
                magnitude = param.detach().flatten()[free_index].abs()
                kept = free_index[torch.topk(magnitude, keep, sorted=False).indices]
                owner.view(-1)[kept] = task_index
                param.masked_fill_(owner == FREE, 0.0)
        self.packed_task = task_index
        self._frozen = None

    def _reset_optimizer_states(self, agent: ContinualSAC) -> None:
        for network in self._networks():
            module = agent.actor if network == "actor" else agent.critic
            module.optimizer.state.clear()

    # -- freezing --------------------------------------------------------------------------
    def _frozen_entries(self, agent: ContinualSAC) -> dict[str, list[Frozen]]:
        """Per network, the entries that must not move in this phase (before pruning: all
        but the free ones; after: all but the current task's) and their values now."""
        phase = (agent.current_task, self._packed(agent))
        if self._frozen is None or self._frozen_phase != phase:
            frozen: dict[str, list[Frozen]] = {}
            for network, slots in self.slots(agent).items():
                frozen[network] = []
                for slot in slots:
                    owner = self.owners[slot.name]
                    mask = owner != (agent.current_task if phase[1] else FREE)
                    if not bool(mask.any()):
                        continue
                    values = slot.param.detach().clone()
                    if bool(mask.all()):
                        frozen[network].append(Frozen(slot, None, values))
                    else:
                        trainable = (~mask).to(values.dtype)
                        frozen[network].append(Frozen(slot, trainable, values * mask))
            self._frozen, self._frozen_phase = frozen, phase
        return self._frozen

    def _hook_optimizer(self, agent: ContinualSAC, network: Network) -> None:
        """Write frozen values back after every step of the network's optimizer (hooked
        anew whenever the agent made a new optimizer, e.g. at a task change)."""
        optimizer = (agent.actor if network == "actor" else agent.critic).optimizer
        hooked = self._hooks.get(network)
        if hooked is not None and hooked[0] is optimizer:
            return
        if hooked is not None:
            hooked[1].remove()
        restore = functools.partial(self._restore_frozen, network)
        self._hooks[network] = (optimizer, optimizer.register_step_post_hook(restore))

    @torch.no_grad()
    def _restore_frozen(self, network: str, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._frozen is None:
            return
        for frozen in self._frozen[network]:
            if frozen.trainable is None:
                frozen.slot.param.copy_(frozen.values)
            else:  # x * 1 + 0 = x and x * 0 + v = v, exactly
                frozen.slot.param.mul_(frozen.trainable).add_(frozen.values)


def _module_slots(name: str, module: nn.Module) -> list[Slot]:
    """A Linear layer's weight matrix is pruned; its bias and LayerNorm's are shared."""
    return [
        Slot(f"{name}.{param_name}", param, "weight" if param.dim() == 2 else "shared")
        for param_name, param in module.named_parameters(recurse=False)
    ]


def _trunk_slots(prefix: str, trunk: nn.Module) -> list[Slot]:
    slots: list[Slot] = []
    for module_name, module in trunk.named_modules():
        if isinstance(module, nn.Linear | nn.LayerNorm):
            slots += _module_slots(f"{prefix}.{module_name}", module)
    return slots


def _head_slots(name: str, head: nn.Linear, num_heads: int) -> list[Slot]:
    if num_heads == 1:
        return _module_slots(name, head)
    rows = head.out_features // num_heads
    return [
        Slot(f"{name}.{param_name}", param, "head", rows)
        for param_name, param in head.named_parameters(recurse=False)
    ]
