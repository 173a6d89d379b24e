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
from typing import TYPE_CHECKING, Any

import torch
from crlgym.agents.methods.base import ContinualMethod, Network
from torch import nn
from torch.func import functional_call, jacrev, vmap

if TYPE_CHECKING:
    from crlgym.agents.sac import ContinualSAC
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

ParameterTensors = dict[str, torch.Tensor]
"""One tensor per parameter, keyed by its ``named_parameters()`` name."""

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
    return [network.mu, network.log_std]


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


class ParameterRegularizer(ContinualMethod):
    """Quadratic pull towards the parameters of the latest finished task, weighted by a
    per-parameter importance summed over the finished tasks.

    Subclasses define `task_importance` (and `importance_data` when it needs data).

    Args:
        coef: strength of the penalty (Continual World's ``cl_reg_coef``).
        regularize_critic: also regularize the critic (its own importance and penalty,
            added to the critic loss); Continual World regularizes only the actor.
    """

    name = "regularizer"
    description = "quadratic pull towards earlier tasks' parameters (base of l2/ewc/mas)"

    def __init__(self, *, coef: float = 1.0, regularize_critic: bool = False) -> None:
        self.coef = float(coef)
        self.regularize_critic = bool(regularize_critic)
        self.old_params: dict[str, ParameterTensors] = {}
        """Per network name ("actor", "critic"): parameters at the end of the latest task."""
        self.importance: dict[str, ParameterTensors] = {}
        """Per network name: importance summed over the finished tasks."""
        self.finished_tasks: list[int] = []
        """Tasks already consolidated (`on_task_end` is idempotent per task)."""

    def networks(self) -> tuple[Network, ...]:
        """The networks this method regularizes."""
        return ("actor", "critic") if self.regularize_critic else ("actor",)

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
            total = self.importance.get(network, {})
            self.importance[network] = {
                name: new[name].detach() * masks[name] + total.get(name, 0.0) for name in masks
            }
            self.old_params[network] = {
                name: param.detach().clone() for name, param in module.named_parameters()
            }
        self.finished_tasks.append(task_index)

    def actor_aux_loss(
        self, agent: ContinualSAC, batch: ReplayBufferSamples
    ) -> torch.Tensor | None:
        return self.penalty(agent, "actor")

    def critic_aux_loss(
        self, agent: ContinualSAC, batch: ReplayBufferSamples
    ) -> torch.Tensor | None:
        return self.penalty(agent, "critic") if self.regularize_critic else None

    def penalty(self, agent: ContinualSAC, network: Network) -> torch.Tensor | None:
        """``coef * sum_p sum(importance_p * (p - p_old)^2)``; None before any task ended."""
        if network not in self.old_params:
            return None
        params = dict(getattr(agent, network).named_parameters())
        old, importance = self._placed(network, next(iter(params.values())).device)
        terms = [(importance[name] * (params[name] - old[name]).square()).sum() for name in old]
        return self.coef * torch.stack(terms).sum()

    def _placed(
        self, network: str, device: torch.device
    ) -> tuple[ParameterTensors, ParameterTensors]:
        """The stored tensors of ``network``, moved once to ``device`` (after a CPU load)."""
        for store in (self.old_params, self.importance):
            if any(t.device != device for t in store[network].values()):
                store[network] = {name: t.to(device) for name, t in store[network].items()}
        return self.old_params[network], self.importance[network]

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Anchors, importances and finished tasks (tensors and plain values only)."""
        return {
            "old_params": _clone(self.old_params),
            "importance": _clone(self.importance),
            "finished_tasks": list(self.finished_tasks),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.old_params = _clone(state["old_params"])
        self.importance = _clone(state["importance"])
        self.finished_tasks = [int(task) for task in state["finished_tasks"]]


def _clone(tensors: dict[str, ParameterTensors]) -> dict[str, ParameterTensors]:
    return {
        network: {name: t.detach().clone() for name, t in per_param.items()}
        for network, per_param in tensors.items()
    }


class L2(ParameterRegularizer):
    """L2: every parameter is equally important (importance 1 per finished task).

    Args:
        coef: penalty strength (default 1e5, Continual World's CW20 setting).
        regularize_critic: also regularize the critic (default False).
    """

    name = "l2"
    description = "L2 pull towards earlier tasks' parameters (Continual World, coef 1e5)"

    def __init__(self, *, coef: float = 1e5, regularize_critic: bool = False) -> None:
        super().__init__(coef=coef, regularize_critic=regularize_critic)

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


class SampledImportanceRegularizer(ParameterRegularizer):
    """Base of `EWC` and `MAS`: importance is a mean over the finished task's transitions of
    a per-sample gradient statistic of the actor's (and critic's) outputs.

    Args:
        coef, regularize_critic: as in `ParameterRegularizer`.
        num_batches, batch_size: transitions sampled from the replay buffer at the end of a
            task (Continual World: 10 batches of 256).
        squash_mean: use the action mean after tanh (Continual World's actor returns
            ``tanh(mu)``; the action scale is 1 on Meta-World); False: the pre-tanh mean.
    """

    statistic: Callable[[torch.Tensor], torch.Tensor]
    actor_floor: float = 0.0

    def __init__(
        self,
        *,
        coef: float,
        regularize_critic: bool = False,
        num_batches: int = 10,
        batch_size: int = 256,
        squash_mean: bool = True,
    ) -> None:
        super().__init__(coef=coef, regularize_critic=regularize_critic)
        if num_batches <= 0 or batch_size <= 0:
            raise ValueError("num_batches and batch_size must be positive")
        self.num_batches, self.batch_size = int(num_batches), int(batch_size)
        self.squash_mean = bool(squash_mean)

    def actor_outputs(self, actor: nn.Module, observations: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def critic_outputs(
        self, critic: nn.Module, observations: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError

    def policy_mean(self, mean: torch.Tensor) -> torch.Tensor:
        """The action mean the importance is taken of (`squash_mean`)."""
        return torch.tanh(mean) if self.squash_mean else mean

    def importance_data(self, agent: ContinualSAC) -> list[ReplayBufferSamples]:
        buffer = agent.replay_buffer
        if buffer is None or (buffer.pos == 0 and not buffer.full):
            raise RuntimeError(
                f"{self.name}: the replay buffer is empty at the end of the task; the "
                "importance is estimated on the task's own transitions"
            )
        env = getattr(agent, "_vec_normalize_env", None)
        return [buffer.sample(self.batch_size, env=env) for _ in range(self.num_batches)]

    def task_importance(
        self,
        agent: ContinualSAC,
        network: Network,
        data: Sequence[ReplayBufferSamples],
    ) -> ParameterTensors:
        if network == "actor":
            inputs = [(batch.observations,) for batch in data]
            return mean_per_sample_statistic(
                agent.actor, self.actor_outputs, inputs, self.statistic, self.actor_floor
            )
        inputs = [(batch.observations, batch.actions) for batch in data]
        return mean_per_sample_statistic(agent.critic, self.critic_outputs, inputs, self.statistic)


FISHER_EPS = 1e-6
"""Added to the variance in the Fisher's denominator (Continual World)."""


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

    Args:
        coef: penalty strength (default 1e4, Continual World's CW20 setting).
        regularize_critic: also regularize the critic (default False).
        num_batches, batch_size: replay transitions the Fisher is averaged over (10 x 256).
        squash_mean: Fisher of ``tanh(mean)`` (Continual World, default) or of the mean.
        fisher_clip: lower bound of each sample's Fisher (Continual World clips at 1e-5, so
            every shared parameter keeps a small importance); 0 for none.
    """

    name = "ewc"
    description = "EWC: Fisher-weighted pull towards earlier tasks' parameters (coef 1e4)"

    def __init__(
        self,
        *,
        coef: float = 1e4,
        regularize_critic: bool = False,
        num_batches: int = 10,
        batch_size: int = 256,
        squash_mean: bool = True,
        fisher_clip: float = 1e-5,
    ) -> None:
        super().__init__(
            coef=coef,
            regularize_critic=regularize_critic,
            num_batches=num_batches,
            batch_size=batch_size,
            squash_mean=squash_mean,
        )
        self.fisher_clip = self.actor_floor = float(fisher_clip)

    @staticmethod
    def statistic(jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.square()

    def actor_outputs(self, actor: nn.Module, observations: torch.Tensor) -> torch.Tensor:
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


class MAS(SampledImportanceRegularizer):
    """MAS: importance = mean over the task's states of ``|d ||output||_2^2 / d theta|``.

    The output is the actor's ``(mu, log_std)`` of the task's head, ``mu = tanh(mean)`` by
    default (``squash_mean``), as in Continual World (Aljundi et al. 2018: gradient of the
    squared L2 norm of the output, absolute value per sample, averaged). The critic's (with
    ``regularize_critic``): ``|d Q^2 / d theta|`` per Q-network.

    Args:
        coef: penalty strength (default 1e4, Continual World's CW20 setting).
        regularize_critic: also regularize the critic (default False).
        num_batches, batch_size: replay transitions the importance is averaged over (10 x 256).
        squash_mean: norm of ``tanh(mean)`` (Continual World, default) or of the mean.
    """

    name = "mas"
    description = "MAS: output-sensitivity-weighted pull towards earlier tasks' parameters"

    def __init__(
        self,
        *,
        coef: float = 1e4,
        regularize_critic: bool = False,
        num_batches: int = 10,
        batch_size: int = 256,
        squash_mean: bool = True,
    ) -> None:
        super().__init__(
            coef=coef,
            regularize_critic=regularize_critic,
            num_batches=num_batches,
            batch_size=batch_size,
            squash_mean=squash_mean,
        )

    @staticmethod
    def statistic(jacobian: torch.Tensor) -> torch.Tensor:
        return jacobian.abs()

    def actor_outputs(self, actor: nn.Module, observations: torch.Tensor) -> torch.Tensor:
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
    "ParameterRegularizer",
    "SampledImportanceRegularizer",
    "mean_per_sample_statistic",
    "per_sample_jacobians",
    "task_masks",
]
