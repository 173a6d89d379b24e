"""Continual World's parameter-regularization methods: L2, EWC and MAS (Wolczyk et al. 2021).

All three add, once a task is over, a quadratic pull towards the parameters it ended with::

    penalty = coef * sum_p sum(importance_p * (p - p_old) ** 2)

``p_old`` is a detached copy of the parameters taken at the end of the latest task and
``importance_p`` (one value per parameter element) is summed over all finished tasks. The
methods differ only in the importance of one task:

- `L2`: 1 for every parameter.
- `EWC`: the diagonal Fisher information of the policy (Kirkpatrick et al. 2017).
- `MAS`: the mean absolute gradient of the squared output norm (Aljundi et al. 2018).

Reads top to bottom: the shared base `ParameterRegularizer`, `L2`, the per-sample gradient
helpers, the data-driven base `SampledImportanceRegularizer`, `EWC`, `MAS`.

Which parameters. Every parameter of the actor (and of the critic with
``regularize_critic=True``; Continual World regularizes only the actor by default) is kept,
keyed by its ``named_parameters()`` name. With multi-head networks a task's importance lives
only on the shared parameters and on the rows of its *own* output head: the rows of other
heads get importance 0. So the head of a task that has not been trained yet is free to learn
(L2 would otherwise anchor it to its random initialization), while finished heads keep their
importance. With the replay buffer emptied at each task change this equals Continual World,
which leaves the heads out of the penalty altogether (``common_variables``): a finished head
gets no gradient from the new task, so its penalty stays exactly 0.

Importance of EWC and MAS is estimated on the finished task's own data: ``num_batches``
batches of ``batch_size`` transitions drawn from ``agent.replay_buffer`` at `on_task_end`
(Continual World: 10 x 256), with exact per-sample gradients (``torch.func``: ``vmap`` over
``jacrev`` of a ``functional_call``), in chunks to bound memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from crlgym.agents.methods.base import ContinualMethod, MethodOptions, Network
from crlgym.agents.methods.common import QuadraticAnchor

if TYPE_CHECKING:
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    from crlgym.agents.sac import ContinualSAC

ParameterTensors = dict[str, torch.Tensor]
"""One tensor per parameter, keyed by its ``named_parameters()`` name."""


class GaussianActor(Protocol):
    """What the importance of an actor needs: its Gaussian's parameters per observation."""

    def get_action_dist_params(
        self, obs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]: ...


Outputs = Callable[..., torch.Tensor]
"""``outputs(network, *inputs) -> (batch, k)``: the per-sample quantities whose gradients
define an importance (inputs: ``(observations,)`` for the actor, ``(observations, actions)``
for the critic)."""

PER_SAMPLE_CHUNK = 8
"""Samples per vectorized Jacobian: memory is chunk x outputs x parameters floats, and small
chunks were the fastest on CPU (EWC on Continual World's actor: about 3 s per 1,000 states)."""


def output_heads(network: nn.Module) -> list[nn.Module]:
    """The multi-head output layers of an actor (``mu``, ``log_std``) or critic (the last
    layer of each Q-network)."""
    q_networks = getattr(network, "q_networks", None)
    if q_networks is not None:
        return [q_net[-1] for q_net in q_networks]
    return [network.get_submodule("mu"), network.get_submodule("log_std")]


def task_masks(network: nn.Module, task_index: int) -> ParameterTensors:
    """1 on the parameters that compute task ``task_index``'s output, 0 elsewhere.

    That is every shared parameter and the task's own rows of the multi-head output layers
    (heads are laid out as consecutive blocks of rows, as in `crlgym.agents.sac.select_head`).
    Single-head networks (``num_heads == 1``) are all ones.
    """
    masks = {name: torch.ones_like(param) for name, param in network.named_parameters()}
    num_heads = int(getattr(network, "num_heads", 1))
    if num_heads == 1:
        return masks
    head_params = {id(param) for head in output_heads(network) for param in head.parameters()}
    for name, param in network.named_parameters():
        if id(param) in head_params:
            per_head = masks[name].view(num_heads, -1, *param.shape[1:])  # shares memory
            per_head.zero_()
            per_head[task_index] = 1.0
    return masks


# --- the shared base --------------------------------------------------------------------


@dataclass(frozen=True)
class RegularizerOptions(MethodOptions):
    """Options of every `ParameterRegularizer`."""

    coef: float = 1.0
    """Strength of the penalty (Continual World's cl_reg_coef)."""
    regularize_critic: bool = False
    """Also regularize the critic (its own importance and penalty, added to the critic
    loss); Continual World regularizes only the actor."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.coef < 0:
            raise ValueError(f"coef must be zero or positive, got {self.coef}")


class ParameterRegularizer(ContinualMethod[None]):
    """Quadratic pull towards the parameters of the latest finished task, weighted by a
    per-parameter importance summed over the finished tasks: one `QuadraticAnchor` per
    regularized network.

    Subclasses define `task_importance` (and `importance_data` when it needs data).
    Options: `RegularizerOptions` (or a subclass).
    """

    name = "regularizer"
    description = "quadratic pull towards earlier tasks' parameters (base of l2/ewc/mas)"
    Options: ClassVar[type[MethodOptions]] = RegularizerOptions
    options: RegularizerOptions

    def __init__(self, options: MethodOptions | None = None, /, **values: Any) -> None:
        super().__init__(options, **values)
        self.anchors: dict[Network, QuadraticAnchor] = {
            network: QuadraticAnchor() for network in self.networks()
        }
        """Per regularized network: importance and anchor."""
        self.finished_tasks: list[int] = []
        """Tasks already consolidated (`on_task_end` is idempotent per task)."""

    def networks(self) -> tuple[Network, ...]:
        """The networks this method regularizes."""
        return ("actor", "critic") if self.options.regularize_critic else ("actor",)

    @property
    def old_params(self) -> dict[Network, ParameterTensors]:
        """Per consolidated network: parameters at the end of the latest task."""
        return {network: a.anchor for network, a in self.anchors.items() if not a.empty}

    @property
    def importance(self) -> dict[Network, ParameterTensors]:
        """Per consolidated network: importance summed over the finished tasks."""
        return {network: a.importance for network, a in self.anchors.items() if not a.empty}

    # -- what subclasses define -----------------------------------------------------------
    def importance_data(self, agent: ContinualSAC) -> list[ReplayBufferSamples]:
        """Transitions of the finished task the importance is estimated on (none by default)."""
        return []

    def task_importance(
        self,
        agent: ContinualSAC,
        network: Network,
        data: Sequence[ReplayBufferSamples],
    ) -> ParameterTensors:
        """Importance of each parameter of ``network`` for the task that just ended."""
        raise NotImplementedError

    # -- hooks ----------------------------------------------------------------------------
    def on_task_end(self, agent: ContinualSAC, task_index: int) -> None:
        """Add the finished task's importance and remember the parameters it ended with."""
        if task_index in self.finished_tasks:
            return
        data = self.importance_data(agent)
        for network in self.networks():
            module: nn.Module = getattr(agent, network)
            masks = task_masks(module, task_index)
            new = self.task_importance(agent, network, data)
            self.anchors[network].consolidate(
                dict(module.named_parameters()),
                {name: new[name].detach() * masks[name] for name in masks},
            )
        self.finished_tasks.append(task_index)

    def actor_aux_loss(
        self, agent: ContinualSAC, batch: ReplayBufferSamples, extra: None
    ) -> torch.Tensor | None:
        return self.penalty(agent, "actor")

    def critic_aux_loss(
        self, agent: ContinualSAC, batch: ReplayBufferSamples, extra: None
    ) -> torch.Tensor | None:
        return self.penalty(agent, "critic") if self.options.regularize_critic else None

    def penalty(self, agent: ContinualSAC, network: Network) -> torch.Tensor | None:
        """``coef * sum_p sum(importance_p * (p - p_old)^2)``; None before any task ended."""
        anchor = self.anchors.get(network)
        if anchor is None or anchor.empty:  # no parameter walk while nothing is anchored
            return None
        penalty = anchor.penalty(dict(getattr(agent, network).named_parameters()))
        assert penalty is not None
        return self.options.coef * penalty

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Anchors, importances and finished tasks (tensors and plain values only), keyed
        ``old_params`` / ``importance`` (per network name) / ``finished_tasks``."""
        states = {network: a.state_dict() for network, a in self.anchors.items() if not a.empty}
        return {
            "old_params": {network: state["anchor"] for network, state in states.items()},
            "importance": {network: state["importance"] for network, state in states.items()},
            "finished_tasks": list(self.finished_tasks),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchors = {network: QuadraticAnchor() for network in self.networks()}
        for network, anchor in state["old_params"].items():
            restored = self.anchors.setdefault(network, QuadraticAnchor())
            restored.load_state_dict({"anchor": anchor, "importance": state["importance"][network]})
        self.finished_tasks = [int(task_index) for task_index in state["finished_tasks"]]


@dataclass(frozen=True)
class L2Options(RegularizerOptions):
    """Options of `L2`."""

    coef: float = 1e5
    """Strength of the penalty (Continual World's CW20 setting: 1e5)."""


class L2(ParameterRegularizer):
    """L2: every parameter is equally important (importance 1 per finished task).

    Options: `L2Options`.
    """

    name = "l2"
    description = "L2 pull towards earlier tasks' parameters (Continual World, coef 1e5)"
    Options: ClassVar[type[MethodOptions]] = L2Options
    options: L2Options

    def task_importance(
        self,
        agent: ContinualSAC,
        network: Network,
        data: Sequence[ReplayBufferSamples],
    ) -> ParameterTensors:
        module: nn.Module = getattr(agent, network)
        return {name: torch.ones_like(param) for name, param in module.named_parameters()}


# --- per-sample gradients ---------------------------------------------------------------


class _BoundOutputs(nn.Module):
    """``outputs(network, *inputs)`` as a module, so `functional_call` can swap parameters."""

    def __init__(self, network: nn.Module, outputs: Outputs) -> None:
        super().__init__()
        self.network = network
        self.outputs = outputs

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.outputs(self.network, *inputs)


def per_sample_jacobians(
    network: nn.Module, outputs: Outputs, inputs: Sequence[torch.Tensor]
) -> ParameterTensors:
    """Exact per-sample Jacobians: name -> (batch, k, *param.shape), the derivative of
    ``outputs(network, *sample)[j]`` (each sample alone, as a batch of one) for every sample."""
    bound = _BoundOutputs(network, outputs)
    params = {f"network.{name}": p.detach() for name, p in network.named_parameters()}

    def one_sample(params: ParameterTensors, *sample: torch.Tensor) -> torch.Tensor:
        batch = tuple(x.unsqueeze(0) for x in sample)
        return functional_call(bound, params, batch).squeeze(0)

    in_dims = (None, *([0] * len(inputs)))
    jacobians = vmap(jacrev(one_sample), in_dims=in_dims)(params, *inputs)
    return {name.removeprefix("network."): jac for name, jac in jacobians.items()}


def mean_per_sample_statistic(
    network: nn.Module,
    outputs: Outputs,
    batches: Iterable[Sequence[torch.Tensor]],
    statistic: Callable[[torch.Tensor], torch.Tensor],
    floor: float = 0.0,
) -> ParameterTensors:
    """``mean_s max(floor, sum_j statistic(d outputs(s)[j] / d theta))`` per parameter element,
    over every sample of ``batches`` (per-sample Jacobians in chunks of `PER_SAMPLE_CHUNK`)."""
    totals = {name: torch.zeros_like(p) for name, p in network.named_parameters()}
    count = 0
    for inputs in batches:
        for chunk in zip(*(x.split(PER_SAMPLE_CHUNK) for x in inputs), strict=True):
            jacobians = per_sample_jacobians(network, outputs, chunk)
            for name, jac in jacobians.items():
                totals[name] += statistic(jac).sum(dim=1).clamp_min(floor).sum(dim=0)
            count += chunk[0].shape[0]
    if count == 0:
        raise ValueError("no samples to estimate the importance on")
    return {name: total / count for name, total in totals.items()}


# --- data-driven importance -------------------------------------------------------------


@dataclass(frozen=True)
class SampledImportanceOptions(RegularizerOptions):
    """Options of every `SampledImportanceRegularizer` (EWC, MAS)."""

    coef: float = 1e4
    """Strength of the penalty (Continual World's CW20 setting: 1e4)."""
    num_batches: int = 10
    """Batches sampled from the replay buffer at the end of a task to estimate the
    importance on (Continual World: 10)."""
    batch_size: int = 256
    """Transitions per such batch (Continual World: 256)."""
    squash_mean: bool = True
    """Take the importance of the action mean after tanh (Continual World's actor returns
    tanh(mu); the action scale is 1 on Meta-World); false: of the pre-tanh mean."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_batches <= 0 or self.batch_size <= 0:
            raise ValueError("num_batches and batch_size must be positive")


class SampledImportanceRegularizer(ParameterRegularizer):
    """Base of `EWC` and `MAS`: importance is a mean over the finished task's transitions of
    a per-sample gradient statistic of the actor's (and critic's) outputs.

    Options: `SampledImportanceOptions` (or a subclass).
    """

    Options: ClassVar[type[MethodOptions]] = SampledImportanceOptions
    options: SampledImportanceOptions

    def actor_floor(self) -> float:
        """Lower bound of each sample's actor statistic (0: none)."""
        return 0.0

    def statistic(self, jacobian: torch.Tensor) -> torch.Tensor:
        """The per-sample statistic of a Jacobian, summed over outputs by the caller."""
        raise NotImplementedError

    def actor_outputs(self, actor: GaussianActor, observations: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def critic_outputs(
        self, critic: nn.Module, observations: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError

    def policy_mean(self, mean: torch.Tensor) -> torch.Tensor:
        """The action mean the importance is taken of (`squash_mean`)."""
        return torch.tanh(mean) if self.options.squash_mean else mean

    def importance_data(self, agent: ContinualSAC) -> list[ReplayBufferSamples]:
        buffer = agent.replay_buffer
        if buffer is None or (buffer.pos == 0 and not buffer.full):
            raise RuntimeError(
                f"{self.name}: the replay buffer is empty at the end of the task; the "
                "importance is estimated on the task's own transitions"
            )
        env = getattr(agent, "_vec_normalize_env", None)
        options = self.options
        return [buffer.sample(options.batch_size, env=env) for _ in range(options.num_batches)]

    def task_importance(
        self,
        agent: ContinualSAC,
        network: Network,
        data: Sequence[ReplayBufferSamples],
    ) -> ParameterTensors:
        if network == "actor":
            states = [(batch.observations,) for batch in data]
            return mean_per_sample_statistic(
                agent.actor, self.actor_outputs, states, self.statistic, self.actor_floor()
            )
        pairs = [(batch.observations, batch.actions) for batch in data]
        return mean_per_sample_statistic(agent.critic, self.critic_outputs, pairs, self.statistic)


FISHER_EPS = 1e-6
"""Added to the variance in the Fisher's denominator (Continual World)."""


@dataclass(frozen=True)
class EWCOptions(SampledImportanceOptions):
    """Options of `EWC`."""

    fisher_clip: float = 1e-5
    """Lower bound of each sample's Fisher (Continual World clips at 1e-5, so every shared
    parameter keeps a small importance); 0 for none."""


class EWC(SampledImportanceRegularizer):
    """EWC: importance = diagonal Fisher information of the policy on the task's data.

    For the diagonal Gaussian policy (mean ``mu``, std ``sigma`` per action dimension) the
    Fisher w.r.t. a parameter ``theta`` is, in closed form (as Continual World computes it)::

        F = E_s[ max(fisher_clip, sum_a ((d mu_a/d theta)^2 + 2 (d sigma_a/d theta)^2)
                                        / (sigma_a^2 + 1e-6)) ]

    (``2 (d sigma/d theta)^2 / sigma^2 = 2 (d log sigma/d theta)^2``), with exact per-sample
    gradients and ``mu = tanh(mean)`` by default (``squash_mean``). The critic's (with
    ``regularize_critic``) is the Fisher of a unit-variance Gaussian around each Q-value:
    ``E_s[(d Q/d theta)^2]``, unclipped.

    Options: `EWCOptions`.
    """

    name = "ewc"
    description = "EWC: Fisher-weighted pull towards earlier tasks' parameters (coef 1e4)"
    Options: ClassVar[type[MethodOptions]] = EWCOptions
    options: EWCOptions

    def actor_floor(self) -> float:
        return self.options.fisher_clip

    def statistic(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.square()

    def actor_outputs(self, actor: GaussianActor, observations: torch.Tensor) -> torch.Tensor:
        """``[mu, sqrt(2) sigma] / sqrt(sigma^2 + eps)`` with the denominator held constant:
        the sum of the squared gradients of these is the Fisher above."""
        mean, log_std, _ = actor.get_action_dist_params(observations)
        std = log_std.exp()
        scale = (std.detach().square() + FISHER_EPS).rsqrt()
        return torch.cat([self.policy_mean(mean) * scale, math.sqrt(2.0) * std * scale], dim=1)

    def critic_outputs(
        self, critic: nn.Module, observations: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        return torch.cat(critic(observations, actions), dim=1)


@dataclass(frozen=True)
class MASOptions(SampledImportanceOptions):
    """Options of `MAS` (those of every sampled-importance regularizer)."""


class MAS(SampledImportanceRegularizer):
    """MAS: importance = mean over the task's states of ``|d ||output||_2^2 / d theta|``.

    The output is the actor's ``(mu, log_std)`` of the task's head, ``mu = tanh(mean)`` by
    default (``squash_mean``), as in Continual World (Aljundi et al. 2018: gradient of the
    squared L2 norm of the output, absolute value per sample, averaged). The critic's (with
    ``regularize_critic``): ``|d Q^2 / d theta|`` per Q-network.

    Options: `MASOptions`.
    """

    name = "mas"
    description = "MAS: output-sensitivity-weighted pull towards earlier tasks' parameters"
    Options: ClassVar[type[MethodOptions]] = MASOptions
    options: MASOptions

    def statistic(self, jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.abs()

    def actor_outputs(self, actor: GaussianActor, observations: torch.Tensor) -> torch.Tensor:
        mean, log_std, _ = actor.get_action_dist_params(observations)
        squared_norm = self.policy_mean(mean).square().sum(dim=1) + log_std.square().sum(dim=1)
        return squared_norm.unsqueeze(1)

    def critic_outputs(
        self, critic: nn.Module, observations: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        # Each Q-network's parameters reach only its own output, so summing |gradient| over
        # the outputs is |d Q_i^2 / d theta| per network.
        return torch.cat(critic(observations, actions), dim=1).square()


__all__ = [
    "EWC",
    "L2",
    "MAS",
    "EWCOptions",
    "L2Options",
    "MASOptions",
    "ParameterRegularizer",
    "RegularizerOptions",
    "SampledImportanceOptions",
    "SampledImportanceRegularizer",
    "mean_per_sample_statistic",
    "per_sample_jacobians",
    "task_masks",
]
