"""Plasticity of any torch network: metrics, resets, ReDo and the adaptive replay ratio.

Agent-agnostic (plain torch, any ``nn.Module``); `crlgym.agents.plasticity_control` schedules these
pieces during SAC training. Reads top to bottom:

1. `PlasticityConfig`: the ``crl train`` plasticity options (brief section 5).
2. Tracing: `trace_unit_layers` runs the network once under forward hooks and finds each
   hidden activation's producing Linear (optionally through a LayerNorm) and the Linears
   that read it; `linear_depths` groups Linears by depth from the input.
3. Metrics: fraction of active units (FAU, Ma et al. 2024), dormant ratio (Sokar et al.
   2023), effective rank of the penultimate features, weight and gradient norms.
4. Resets: full re-initialization, last layers, shrink-and-perturb (Ash & Adams 2020,
   Nikishin et al. 2022) and ReDo (recycling dormant units, Sokar et al. 2023).
5. `AdaptiveReplayRatio`: low replay ratio until the critic's FAU stabilizes, then high
   (Ma et al., ICLR 2024).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from crlgym.errors import ConfigError

RESET_KINDS = ("none", "full", "last-layers", "shrink-perturb", "redo")
RESET_NETWORKS = ("actor", "critic", "both")

#: Activation modules whose outputs are hidden units. All are 0 at 0 and positive exactly
#: for positive inputs, so "active" (> 0) means the same for each (Ma et al.'s FAU).
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,  # also ReLU6
    nn.Tanh,
    nn.Softsign,
)


# --- configuration ------------------------------------------------------------------------


@dataclass
class PlasticityConfig:
    """Replay ratio, resets and plasticity metrics (brief section 5)."""

    replay_ratio: str = "fixed"
    """Gradient steps per env step: fixed (SAC's gradient_steps/update_every), adaptive (low
    until the critic's FAU stabilizes, then high; Ma et al. 2024), or a number like 0.5."""
    rr_low: float = 0.5
    """Adaptive replay ratio: ratio before the switch."""
    rr_high: float = 2.0
    """Adaptive replay ratio: ratio after the switch."""
    rr_check_every: int = 50_000
    """Adaptive replay ratio: env steps between checks of the critic's FAU."""
    rr_tolerance: float = 0.001
    """Adaptive replay ratio: switch when |FAU_t - FAU_(t - rr_check_every)| <= this."""
    rr_restart_each_task: bool = True
    """Adaptive replay ratio: start again at rr_low at every task start."""
    reset: str = "none"
    """Reset kind: none, full, last-layers, shrink-perturb or redo."""
    reset_every: int | None = None
    """Env steps between resets (None: no periodic reset)."""
    reset_at_task_start: bool = False
    """Also reset at every task start (not before the first task)."""
    reset_networks: str = "both"
    """Networks to reset: actor, critic or both (full also resets the entropy temperature)."""
    reset_last_layers: int = 1
    """last-layers: how many last layers (Linear depths) are re-initialized."""
    shrink: float = 0.4
    """shrink-perturb: theta <- shrink * theta + perturb * theta_fresh."""
    perturb: float = 0.1
    """shrink-perturb: weight of the freshly initialized parameters."""
    redo_tau: float = 0.025
    """ReDo: a unit is dormant if its mean |activation| over its layer's mean is <= this."""
    reset_clear_buffer: bool = False
    """Empty the replay buffer at each reset (kept by default)."""
    metrics_every: int | None = 10_000
    """Env steps between plasticity metrics (None: no metrics)."""
    dormant_tau: float = 0.025
    """Dormancy threshold of the logged dormant ratio."""
    probe_batch_size: int = 256
    """Transitions in the fixed probe batch the metrics are measured on."""

    def __post_init__(self) -> None:
        if isinstance(self.replay_ratio, int | float) and not isinstance(self.replay_ratio, bool):
            self.replay_ratio = str(self.replay_ratio)  # YAML gives numbers as numbers
        if self.replay_ratio not in ("fixed", "adaptive"):
            ratio = _parse_ratio(self.replay_ratio)
            if ratio is None or not ratio > 0 or math.isinf(ratio):
                raise ConfigError(
                    "replay_ratio must be fixed, adaptive or a positive number, "
                    f"got {self.replay_ratio!r}"
                )
        if self.reset not in RESET_KINDS:
            raise ConfigError(f"reset must be one of {', '.join(RESET_KINDS)}, got {self.reset!r}")
        if self.reset_networks not in RESET_NETWORKS:
            raise ConfigError(
                f"reset_networks must be one of {', '.join(RESET_NETWORKS)}, "
                f"got {self.reset_networks!r}"
            )
        positive = {
            "rr_low": self.rr_low,
            "rr_high": self.rr_high,
            "rr_check_every": self.rr_check_every,
            "reset_last_layers": self.reset_last_layers,
            "probe_batch_size": self.probe_batch_size,
            "reset_every": self.reset_every,
            "metrics_every": self.metrics_every,
        }
        for name, value in positive.items():
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        non_negative = {
            "rr_tolerance": self.rr_tolerance,
            "shrink": self.shrink,
            "perturb": self.perturb,
            "redo_tau": self.redo_tau,
            "dormant_tau": self.dormant_tau,
        }
        for name, value in non_negative.items():
            if not value >= 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        scheduled = self.reset_every is not None or self.reset_at_task_start
        if self.reset != "none" and not scheduled:
            raise ConfigError(
                f"reset={self.reset} needs a schedule: set reset_every and/or reset_at_task_start"
            )
        if self.reset == "none" and scheduled:
            raise ConfigError(
                "reset_every/reset_at_task_start need a reset kind: "
                f"set reset to one of {', '.join(RESET_KINDS[1:])}"
            )

    def ratio_value(self) -> float | None:
        """The fixed replay ratio when ``replay_ratio`` is a number, else None."""
        return _parse_ratio(self.replay_ratio)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse_ratio(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# --- tracing ------------------------------------------------------------------------------


@dataclass
class UnitLayer:
    """One layer of hidden units: an activation module call and the Linears around it.

    Attributes:
        name: the activation's qualified name in the traced network; ``name#k`` for its
            k-th call (k >= 1) when one module object is called several times.
        activation: the activation module.
        incoming: the Linear producing the pre-activation (unit i = output row i).
        norm: the LayerNorm between ``incoming`` and the activation, if any.
        outgoing: the Linears reading this activation's output directly (unit i = input
            column i), e.g. both ``mu`` and ``log_std`` of SB3's SAC actor.
        call_index: which call of ``activation`` in the traced forward this layer is.
    """

    name: str
    activation: nn.Module
    incoming: nn.Linear
    norm: nn.LayerNorm | None
    outgoing: list[nn.Linear]
    call_index: int = 0

    @property
    def width(self) -> int:
        return self.incoming.out_features


@dataclass
class _Call:
    """One call of a traced module during the forward."""

    module: nn.Module
    name: str
    index: int
    source: _Call | None  # the traced call that produced this call's input, if any
    output: Tensor


@dataclass
class _Trace:
    layers: list[UnitLayer]
    depths: list[list[nn.Linear]]
    activations: dict[str, Tensor]


def _trace(
    network: nn.Module,
    forward: Callable[[], Any],
    activation_types: tuple[type[nn.Module], ...] = ACTIVATION_TYPES,
) -> _Trace:
    names = {module: name for name, module in network.named_modules()}
    traced: tuple[type[nn.Module], ...] = (nn.Linear, nn.LayerNorm, *activation_types)
    producer: dict[int, _Call] = {}
    calls: list[_Call] = []
    call_counts: dict[nn.Module, int] = {}
    # Tensor ids are only unique among live tensors: keep every traced tensor alive.
    alive: list[Tensor] = []

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not args or not isinstance(args[0], Tensor) or not isinstance(output, Tensor):
            return
        index = call_counts.get(module, 0)
        call_counts[module] = index + 1
        # Looked up before registering the output: an in-place activation returns its input.
        call = _Call(module, names[module], index, producer.get(id(args[0])), output)
        calls.append(call)
        producer[id(output)] = call
        alive.extend((args[0], output))

    handles = [m.register_forward_hook(hook) for m in names if isinstance(m, traced)]
    try:
        with torch.no_grad():
            forward()
    finally:
        for handle in handles:
            handle.remove()

    for module, count in call_counts.items():
        if count > 1 and isinstance(module, nn.Linear | nn.LayerNorm):
            raise ValueError(
                f"forward() called {type(module).__name__} {names[module]!r} {count} times; "
                "tracing needs each Linear and LayerNorm called once (pass a forward that "
                "runs the network once, without weight sharing)"
            )

    depth: dict[int, int] = {}  # id(call) -> depth of the last Linear at or before it

    def depth_of(call: _Call | None) -> int:
        return 0 if call is None else depth[id(call)]

    readers: dict[int, list[_Call]] = {}
    for call in calls:  # calls are in execution order: sources come first
        is_linear = isinstance(call.module, nn.Linear)
        depth[id(call)] = depth_of(call.source) + (1 if is_linear else 0)
        if call.source is not None:
            readers.setdefault(id(call.source), []).append(call)

    by_depth: dict[int, list[nn.Linear]] = {}
    for call in calls:
        if isinstance(call.module, nn.Linear):
            by_depth.setdefault(depth[id(call)], []).append(call.module)
    depths = [by_depth[d] for d in sorted(by_depth)]

    layers: list[UnitLayer] = []
    activations: dict[str, Tensor] = {}
    for call in calls:
        if not isinstance(call.module, activation_types):
            continue
        source, norm = call.source, None
        if source is not None and isinstance(source.module, nn.LayerNorm):
            norm, source = source.module, source.source
        # Hidden units only: fed by a Linear and read by another traced module (an output
        # squashing such as TD3's final tanh is read by nothing).
        if source is None or not isinstance(source.module, nn.Linear):
            continue
        if id(call) not in readers:
            continue
        outgoing = [r.module for r in readers[id(call)] if isinstance(r.module, nn.Linear)]
        name = call.name if call.index == 0 else f"{call.name}#{call.index}"
        layer = UnitLayer(name, call.module, source.module, norm, outgoing, call.index)
        layers.append(layer)
        activations[name] = _as_units(call.output)
    return _Trace(layers, depths, activations)


def _as_units(output: Tensor) -> Tensor:
    return output.detach().reshape(-1, output.shape[-1]).clone()


def trace_unit_layers(
    network: nn.Module,
    forward: Callable[[], Any],
    activation_types: tuple[type[nn.Module], ...] = ACTIVATION_TYPES,
) -> list[UnitLayer]:
    """The hidden unit layers of ``network``, ordered from input to output.

    Runs ``forward()`` once (under ``torch.no_grad``) with forward hooks on the network's
    Linear, LayerNorm and activation modules and follows output tensors by identity: an
    activation is a unit layer when its input is a Linear's output, directly or through a
    LayerNorm, and its output is read by another traced module. Tensors rebuilt between
    modules (``torch.cat``, slicing, functional activations such as ``F.relu``) break the
    chain, so such activations are not found; outgoing Linears must read the activation's
    output tensor itself. Each Linear and LayerNorm must be called once in ``forward``
    (ValueError otherwise); an activation module called several times gives one layer per
    call (``name``, ``name#1``, ...).
    """
    return _trace(network, forward, activation_types).layers


def linear_depths(network: nn.Module, forward: Callable[[], Any]) -> list[list[nn.Linear]]:
    """The network's Linears called by ``forward()``, grouped by depth from the input.

    A Linear's depth is one more than that of the last Linear upstream of its input (through
    LayerNorms and activations, by tensor identity as in `trace_unit_layers`); a Linear whose
    input comes from outside the traced modules has depth 1. Twin networks evaluated in one
    forward (the two Q nets) share depths; SB3 SAC's ``mu`` and ``log_std`` share the last.
    """
    return _trace(network, forward).depths


def record_activations(layers: list[UnitLayer], forward: Callable[[], Any]) -> dict[str, Tensor]:
    """Each layer's activation output during ``forward()``, shape (samples, units).

    Leading dimensions are flattened into samples. ``forward`` must call the activations
    in the same pattern as the forward the layers were traced with.
    """
    wanted = {(id(layer.activation), layer.call_index): layer.name for layer in layers}
    counts: dict[int, int] = {}
    recorded: dict[str, Tensor] = {}

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        index = counts.get(id(module), 0)
        counts[id(module)] = index + 1
        name = wanted.get((id(module), index))
        if name is not None and isinstance(output, Tensor):
            recorded[name] = _as_units(output)

    modules = {id(layer.activation): layer.activation for layer in layers}
    handles = [module.register_forward_hook(hook) for module in modules.values()]
    try:
        with torch.no_grad():
            forward()
    finally:
        for handle in handles:
            handle.remove()
    missing = [layer.name for layer in layers if layer.name not in recorded]
    if missing:
        raise ValueError(f"forward() did not call the activations of {missing}")
    return recorded


# --- metrics ------------------------------------------------------------------------------


def fraction_active_units(activations: dict[str, Tensor]) -> float:
    """Share of (sample, unit) pairs with activation > 0 over all layers (FAU)."""
    if not activations:
        raise ValueError("no unit layers to measure")
    active = sum(int((a > 0).sum()) for a in activations.values())
    total = sum(a.numel() for a in activations.values())
    return active / total


def dormant_mask(activation: Tensor, tau: float) -> Tensor:
    """Boolean (units,) mask of the layer's tau-dormant units (Sokar et al. 2023).

    A unit's score is its mean |activation| over samples divided by the mean of that over
    the layer's units; dormant if score <= tau. A layer whose activations are all 0 is
    entirely dormant.
    """
    per_unit = activation.detach().reshape(-1, activation.shape[-1]).abs().double().mean(dim=0)
    layer_mean = per_unit.mean()
    if layer_mean == 0:
        return torch.ones_like(per_unit, dtype=torch.bool)
    return per_unit / layer_mean <= tau


def dormant_ratio(activations: dict[str, Tensor], tau: float) -> float:
    """Share of tau-dormant units over all units of all layers."""
    if not activations:
        raise ValueError("no unit layers to measure")
    masks = [dormant_mask(a, tau) for a in activations.values()]
    return sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


def effective_rank(features: Tensor) -> float:
    """exp of the entropy of the normalized singular values of (samples, units) features.

    Between 1 (rank one) and min(samples, units) (equal singular values); 0 for all-zero
    features.
    """
    values = torch.linalg.svdvals(features.detach().reshape(-1, features.shape[-1]).double())
    total = values.sum()
    if total == 0:
        return 0.0
    p = values / total
    p = p[p > 0]  # 0 log 0 = 0
    return float(torch.exp(-(p * p.log()).sum()))


def weight_norm(module: nn.Module) -> float:
    """L2 norm over all parameters of ``module``."""
    squares = [p.detach().double().pow(2).sum() for p in module.parameters()]
    return float(torch.stack(squares).sum().sqrt()) if squares else 0.0


def gradient_norm(module: nn.Module, loss: Tensor, retain_graph: bool = True) -> float:
    """L2 norm of d loss / d parameters of ``module``.

    Computed with ``torch.autograd.grad``: ``.grad`` is never touched, so optimizers are
    not disturbed. Parameters the loss does not reach count as 0. ``retain_graph`` keeps
    the graph for a later backward of the same loss.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    if not params or not loss.requires_grad:
        return 0.0
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    squares = [g.detach().double().pow(2).sum() for g in grads if g is not None]
    return float(torch.stack(squares).sum().sqrt()) if squares else 0.0


def network_metrics(
    network: nn.Module,
    forward: Callable[[], Any],
    loss_fn: Callable[[], Tensor] | None,
    dormant_tau: float,
) -> dict[str, float]:
    """Plasticity metrics of ``network`` on the batch ``forward`` runs it on.

    Keys: ``fau``, ``dormant_ratio`` (both over all hidden unit layers), ``effective_rank``
    (of the penultimate features: the unit layers read by a last-depth Linear, averaged if
    several, e.g. twin Q nets), ``weight_norm`` and ``grad_norm`` (of ``loss_fn()``, left
    out when ``loss_fn`` is None). Parameters and their ``.grad`` are left untouched.
    """
    trace = _trace(network, forward)
    if not trace.layers:
        raise ValueError(f"no hidden unit layers found in {type(network).__name__}")
    last = {id(linear) for linear in trace.depths[-1]}
    penultimate = [
        layer for layer in trace.layers if any(id(m) in last for m in layer.outgoing)
    ] or trace.layers[-1:]
    ranks = [effective_rank(trace.activations[layer.name]) for layer in penultimate]
    metrics = {
        "fau": fraction_active_units(trace.activations),
        "dormant_ratio": dormant_ratio(trace.activations, dormant_tau),
        "effective_rank": sum(ranks) / len(ranks),
        "weight_norm": weight_norm(network),
    }
    if loss_fn is not None:
        with torch.enable_grad():
            metrics["grad_norm"] = gradient_norm(network, loss_fn(), retain_graph=False)
    return metrics


# --- resets -------------------------------------------------------------------------------


def _fresh_linear(
    linear: nn.Linear, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor | None]:
    """New (weight, bias) for ``linear`` drawn as ``nn.Linear.reset_parameters`` does."""
    weight = torch.empty_like(linear.weight)
    # a = sqrt(5): PyTorch's default, uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    if linear.bias is None:
        return weight, None
    fan_in = weight.shape[1]
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    bias = torch.empty_like(linear.bias).uniform_(-bound, bound, generator=generator)
    return weight, bias


def reinitialize(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """``reset_parameters()`` of ``module`` and every submodule that has one.

    With ``generator``, Linears draw from it (same distribution as their default init);
    other modules always use their own ``reset_parameters`` (LayerNorm: weight 1, bias 0).
    """
    for layer in module.modules():
        if generator is not None and isinstance(layer, nn.Linear):
            weight, bias = _fresh_linear(layer, generator)
            with torch.no_grad():
                layer.weight.copy_(weight)
                if bias is not None:
                    layer.bias.copy_(bias)
        elif callable(reset := getattr(layer, "reset_parameters", None)):
            reset()


def reset_last_layers(network: nn.Module, forward: Callable[[], Any], n: int) -> list[nn.Linear]:
    """Re-initialize the Linears of the last ``n`` depths and the LayerNorms right after
    them; returns those Linears (by depth, input side first)."""
    trace = _trace(network, forward)
    if not 1 <= n <= len(trace.depths):
        raise ConfigError(
            f"reset_last_layers must be between 1 and {len(trace.depths)} (the network's "
            f"Linear depths), got {n}"
        )
    linears = [linear for depth in trace.depths[-n:] for linear in depth]
    chosen = {id(linear) for linear in linears}
    norms = {
        id(layer.norm): layer.norm
        for layer in trace.layers
        if layer.norm is not None and id(layer.incoming) in chosen
    }
    for module in [*linears, *norms.values()]:
        reinitialize(module)
    return linears


def shrink_perturb(
    module: nn.Module, shrink: float, perturb: float, generator: torch.Generator | None = None
) -> None:
    """theta <- shrink * theta + perturb * theta_fresh for every parameter, in place.

    theta_fresh: a deep copy of ``module`` re-initialized with `reinitialize` (and
    ``generator``). Parameters of modules without ``reset_parameters`` have theta_fresh =
    theta.
    """
    fresh = copy.deepcopy(module)
    reinitialize(fresh, generator)
    with torch.no_grad():
        for param, fresh_param in zip(module.parameters(), fresh.parameters(), strict=True):
            param.mul_(shrink).add_(fresh_param, alpha=perturb)


def _zero_moments(
    optimizers: list[torch.optim.Optimizer], param: Tensor, index: tuple[Any, ...]
) -> None:
    """Zero the optimizer state entries ``[index]`` of ``param`` in every optimizer."""
    for optimizer in optimizers:
        state = optimizer.state.get(param)
        if not state:
            continue
        for key, value in state.items():
            # Per-entry states (Adam's exp_avg, exp_avg_sq, max_exp_avg_sq, SGD momentum...)
            # have the parameter's shape; Adam's scalar step does not.
            if key != "step" and isinstance(value, Tensor) and value.shape == param.shape:
                value[index] = 0.0


def redo(
    layers: list[UnitLayer],
    activations: dict[str, Tensor],
    tau: float,
    optimizers: Iterable[torch.optim.Optimizer],
    generator: torch.Generator | None = None,
) -> dict[str, int]:
    """Recycle dormant units (ReDo, Sokar et al. 2023); returns recycled counts per layer.

    For each layer (input side first), its tau-dormant units (`dormant_mask` of
    ``activations[layer.name]``) get fresh incoming weight rows and bias entries (default
    ``nn.Linear`` init, from ``generator`` if given), LayerNorm weight 1 / bias 0, and zero
    outgoing weight columns in every outgoing Linear; the optimizer states of exactly those
    entries are zeroed in every optimizer holding the parameters. A later layer's fresh
    rows overwrite an earlier layer's zeroed columns where both are recycled, as in the
    reference implementation. Output layers (no activation) are never recycled; every other
    parameter and state entry stays as it was.
    """
    optimizers = list(optimizers)
    counts: dict[str, int] = {}
    with torch.no_grad():
        for layer in layers:
            if layer.name not in activations:
                raise KeyError(f"no recorded activations for unit layer {layer.name!r}")
            mask = dormant_mask(activations[layer.name], tau).to(layer.incoming.weight.device)
            if mask.numel() != layer.width:
                raise ValueError(
                    f"{layer.name}: {mask.numel()} recorded units, {layer.width} expected"
                )
            counts[layer.name] = int(mask.sum())
            if not mask.any():
                continue
            rows = mask.nonzero().squeeze(1)
            incoming = layer.incoming
            weight, bias = _fresh_linear(incoming, generator)
            incoming.weight[rows] = weight[rows]
            _zero_moments(optimizers, incoming.weight, (rows,))
            if incoming.bias is not None and bias is not None:
                incoming.bias[rows] = bias[rows]
                _zero_moments(optimizers, incoming.bias, (rows,))
            norm = layer.norm
            if norm is not None and norm.weight is not None:
                norm.weight[rows] = 1.0
                _zero_moments(optimizers, norm.weight, (rows,))
            if norm is not None and norm.bias is not None:
                norm.bias[rows] = 0.0
                _zero_moments(optimizers, norm.bias, (rows,))
            for outgoing in layer.outgoing:
                outgoing.weight[:, rows] = 0.0
                _zero_moments(optimizers, outgoing.weight, (slice(None), rows))
    return counts


def recycle_dormant(
    network: nn.Module,
    forward: Callable[[], Any],
    tau: float,
    optimizers: Iterable[torch.optim.Optimizer],
    generator: torch.Generator | None = None,
) -> dict[str, int]:
    """`redo` on the unit layers and activations of one traced ``forward()``."""
    trace = _trace(network, forward)
    return redo(trace.layers, trace.activations, tau, optimizers, generator)


# --- adaptive replay ratio ----------------------------------------------------------------


class AdaptiveReplayRatio:
    """Low replay ratio until the critic's FAU stabilizes, then high for good (Ma et al.).

    Checks are due every ``check_every`` env steps after the (re)start. At each check the
    critic's FAU is compared with the previous check's (none at the first check after a
    (re)start); a change of at most ``tolerance`` switches the ratio from ``low`` to
    ``high``. After the switch no more checks are due until `restart`.
    """

    def __init__(
        self,
        low: float = 0.5,
        high: float = 2.0,
        check_every: int = 50_000,
        tolerance: float = 0.001,
    ) -> None:
        if not low > 0 or not high > 0 or not check_every > 0 or not tolerance >= 0:
            raise ConfigError(
                "adaptive replay ratio: low, high and check_every must be positive and "
                f"tolerance >= 0 (got {low}, {high}, {check_every}, {tolerance})"
            )
        self.low, self.high = low, high
        self.check_every, self.tolerance = check_every, tolerance
        self.history: list[tuple[int, float]] = []
        """(env step, critic FAU) of every check, across restarts."""
        self.restart(0)

    @property
    def ratio(self) -> float:
        """Gradient steps per env step now."""
        return self.low if self.switch_step is None else self.high

    def restart(self, step: int) -> None:
        """Back to ``low`` at env step ``step``; the next check is ``check_every`` later."""
        self.restart_step = step
        self.switch_step: int | None = None
        self.previous_fau: float | None = None
        self.next_check = step + self.check_every

    def due(self, step: int) -> bool:
        """Whether a check is due at env step ``step`` (restart + k * check_every, k >= 1;
        a missed check stays due until observed). Never after the switch."""
        return self.switch_step is None and step >= self.next_check

    def observe(self, step: int, fau: float) -> bool:
        """Record the critic's FAU at a check; True exactly when the ratio switches now."""
        self.history.append((step, fau))
        checks_done = (step - self.restart_step) // self.check_every
        self.next_check = self.restart_step + (checks_done + 1) * self.check_every
        if self.switch_step is not None:
            return False
        previous, self.previous_fau = self.previous_fau, fau
        if previous is not None and abs(fau - previous) <= self.tolerance:
            self.switch_step = step
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        """Plain Python values (checkpoint-safe)."""
        return {
            "restart_step": self.restart_step,
            "switch_step": self.switch_step,
            "previous_fau": self.previous_fau,
            "next_check": self.next_check,
            "history": [[step, fau] for step, fau in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict` (the constructor's low/high/interval/tolerance are kept)."""
        self.restart_step = int(state["restart_step"])
        self.switch_step = None if state["switch_step"] is None else int(state["switch_step"])
        self.previous_fau = None if state["previous_fau"] is None else float(state["previous_fau"])
        self.next_check = int(state["next_check"])
        self.history = [(int(step), float(fau)) for step, fau in state["history"]]


__all__ = [
    "ACTIVATION_TYPES",
    "RESET_KINDS",
    "RESET_NETWORKS",
    "AdaptiveReplayRatio",
    "PlasticityConfig",
    "UnitLayer",
    "dormant_mask",
    "dormant_ratio",
    "effective_rank",
    "fraction_active_units",
    "gradient_norm",
    "linear_depths",
    "network_metrics",
    "record_activations",
    "recycle_dormant",
    "redo",
    "reinitialize",
    "reset_last_layers",
    "shrink_perturb",
    "weight_norm",
]
