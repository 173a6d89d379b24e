"""When plasticity metrics, resets and replay-ratio checks happen during training.

`crlgym.agents.plasticity` holds the pieces (metrics, resets, ReDo, the adaptive replay-ratio
rule); this module schedules them for any agent that describes its networks as
`PlasticNetwork` entries and can draw batches from its replay data:

- metrics on a fixed probe batch every ``metrics_every`` env steps (the batch is drawn once
  per task, so a curve within a task moves only because the network does);
- the adaptive replay ratio, checked on the critic's FAU every ``rr_check_every`` steps;
- the reset chosen by ``reset`` every ``reset_every`` steps and/or at task starts.

Probe and ReDo batches are drawn with the controller's own random generator and torch's
random state is restored after every measurement, so turning metrics on changes nothing
about training.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from crlgym.agents.plasticity import (
    AdaptiveReplayRatio,
    PlasticityConfig,
    fraction_active_units,
    network_metrics,
    record_activations,
    recycle_dormant,
    reinitialize,
    reset_last_layers,
    shrink_perturb,
    trace_unit_layers,
)

Batch = Any
"""Whatever the agent's forward and loss functions take (SB3: ReplayBufferSamples)."""


@dataclass
class PlasticNetwork:
    """One network of an agent, as the plasticity tools need to see it.

    Args:
        name: key in logs (``plasticity/<name>/fau``); e.g. ``actor``, ``critic``.
        module: the network.
        forward: runs the network on a batch (activations are recorded from this call).
        loss: the network's training loss on a batch (for the gradient norm).
        optimizers: the optimizers currently holding the module's parameters (ReDo zeroes
            their moments of recycled weights).
        after_reset: called after the module was re-initialized, shrunk or cut back (e.g.
            copy the critic into its target network, give it a fresh optimizer).
    """

    name: str
    module: nn.Module
    forward: Callable[[Batch], Any]
    loss: Callable[[Batch], torch.Tensor]
    optimizers: Callable[[], list[torch.optim.Optimizer]]
    after_reset: Callable[[], None] = lambda: None


@dataclass
class PlasticityEvent:
    """One reset or replay-ratio switch, for the results file."""

    step: int
    task_index: int
    kind: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "task": self.task_index, "kind": self.kind, **self.details}


class PlasticityController:
    """Schedules metrics, resets and the adaptive replay ratio (see the module docstring).

    Args:
        config: what to do and when.
        networks: the agent's networks; the adaptive rule reads the one named ``critic``.
        sample_batch: ``(size, generator) -> batch`` drawn from the agent's replay data, or
            None when there is none yet (metrics and batch-based resets then wait/skip).
        reset_agent: extra work of a ``full`` reset beyond re-initializing every network
            (e.g. SAC's entropy temperature).
        clear_buffer: empties the replay data (only with ``reset_clear_buffer``).
        base_ratio: the agent's own replay ratio, used when ``replay_ratio`` is ``fixed``.
        seed: seeds the probe/ReDo batch generator.
        batch_to_state, batch_from_state: turn a batch into checkpointable tensors and back
            (the probe batch is kept in checkpoints).
    """

    def __init__(
        self,
        config: PlasticityConfig,
        networks: Iterable[PlasticNetwork],
        sample_batch: Callable[[int, np.random.Generator], Batch | None],
        *,
        reset_agent: Callable[[], None] = lambda: None,
        clear_buffer: Callable[[], None] = lambda: None,
        base_ratio: float = 1.0,
        seed: int = 0,
        batch_to_state: Callable[[Batch], Any] = lambda batch: batch,
        batch_from_state: Callable[[Any], Batch] = lambda state: state,
    ) -> None:
        self.config = config
        self.networks = {network.name: network for network in networks}
        self.sample_batch = sample_batch
        self.reset_agent = reset_agent
        self.clear_buffer = clear_buffer
        self.base_ratio = base_ratio
        self.batch_to_state = batch_to_state
        self.batch_from_state = batch_from_state
        self.rng = np.random.default_rng(seed)
        self.rule: AdaptiveReplayRatio | None = None
        if config.replay_ratio == "adaptive":
            if "critic" not in self.networks:
                raise ValueError("the adaptive replay ratio reads a network named 'critic'")
            self.rule = AdaptiveReplayRatio(
                config.rr_low, config.rr_high, config.rr_check_every, config.rr_tolerance
            )
        self.task_index = 0
        self.probe: Batch | None = None
        self.records: list[dict[str, Any]] = []
        self.events: list[PlasticityEvent] = []
        self._update_credit = 0.0

    # -- replay ratio -----------------------------------------------------------------------
    @property
    def replay_ratio(self) -> float:
        """Gradient steps per env step now."""
        if self.rule is not None:
            return self.rule.ratio
        fixed = self.config.ratio_value()
        return self.base_ratio if fixed is None else fixed

    def gradient_steps(self, env_steps: int) -> int:
        """Gradient steps owed for ``env_steps`` new env steps at the current ratio; the
        fractional remainder carries over (ratio 0.3 with 10-step phases: 3, 3, 3, ...)."""
        self._update_credit += self.replay_ratio * env_steps
        steps = int(np.floor(self._update_credit + 1e-9))
        self._update_credit -= steps
        return steps

    # -- task boundaries --------------------------------------------------------------------
    def on_task_start(self, task_index: int, step: int, updates_start: int | None = None) -> None:
        """New task at env step ``step``: draw a new probe batch later, restart the rule
        (when configured), and apply the task-start reset (not before the first task).

        The rule's clock starts at ``updates_start`` (the step the task's gradient updates
        begin, default ``step``): the FAU of a network that has not been trained on the
        task yet says nothing about whether training has settled."""
        self.task_index = task_index
        self.probe = None
        if self.rule is not None and (task_index == 0 or self.config.rr_restart_each_task):
            self.rule.restart(step if updates_start is None else updates_start)
        if task_index > 0 and self.config.reset != "none" and self.config.reset_at_task_start:
            self.reset(step, reason="task-start")

    # -- after each update phase ------------------------------------------------------------
    def after_updates(self, step: int) -> dict[str, float]:
        """Run whatever is due at env step ``step``; returns the scalars to log."""
        logged: dict[str, float] = {}
        config = self.config
        if config.metrics_every and step % config.metrics_every == 0:
            logged.update(self.measure(step))
        if self.rule is not None and self.rule.due(step) and self._probe() is not None:
            fau = self._critic_fau()
            if self.rule.observe(step, fau):
                self.events.append(
                    PlasticityEvent(step, self.task_index, "replay-ratio-switch", {"fau": fau})
                )
            logged["replay_ratio/check_fau"] = fau
        if config.reset != "none" and config.reset_every and step % config.reset_every == 0:
            self.reset(step, reason="periodic")
        logged["replay_ratio"] = self.replay_ratio
        return logged

    def measure(self, step: int) -> dict[str, float]:
        """Metrics of every network on the task's probe batch (recorded and returned)."""
        probe = self._probe()
        logged: dict[str, float] = {}
        if probe is None:
            return logged
        with torch.random.fork_rng(devices=[]):
            for name, network in self.networks.items():
                values = network_metrics(
                    network.module,
                    functools.partial(network.forward, probe),
                    functools.partial(network.loss, probe),
                    self.config.dormant_tau,
                )
                self.records.append({"step": step, "task": self.task_index, "net": name, **values})
                logged.update({f"{name}/{key}": value for key, value in values.items()})
        return logged

    def _probe(self) -> Batch | None:
        if self.probe is None:
            self.probe = self.sample_batch(self.config.probe_batch_size, self.rng)
        return self.probe

    def _critic_fau(self) -> float:
        critic = self.networks["critic"]
        probe = self._probe()
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            layers = trace_unit_layers(critic.module, lambda: critic.forward(probe))
            activations = record_activations(layers, lambda: critic.forward(probe))
        return fraction_active_units(activations)

    # -- resets -----------------------------------------------------------------------------
    def reset(self, step: int, reason: str) -> PlasticityEvent:
        """Apply the configured reset now (``reason``: periodic or task-start)."""
        config = self.config
        targets = self._reset_targets()
        details: dict[str, Any] = {"reason": reason, "networks": [n.name for n in targets]}
        if config.reset == "full":
            targets = list(self.networks.values())
            details["networks"] = list(self.networks)
            for network in targets:
                reinitialize(network.module)
                network.after_reset()
            self.reset_agent()
        elif (
            config.reset in ("last-layers", "redo")
            and (batch := self.sample_batch(self.config.probe_batch_size, self.rng)) is None
        ):
            details["skipped"] = "no replay data to trace the networks on"
        elif config.reset == "last-layers":
            for network in targets:
                with torch.no_grad():
                    reset_last_layers(
                        network.module,
                        functools.partial(network.forward, batch),
                        config.reset_last_layers,
                    )
                network.after_reset()
        elif config.reset == "shrink-perturb":
            for network in targets:
                shrink_perturb(network.module, config.shrink, config.perturb)
                network.after_reset()
        elif config.reset == "redo":
            recycled: dict[str, int] = {}
            for network in targets:
                with torch.random.fork_rng(devices=[]):
                    counts = recycle_dormant(
                        network.module,
                        functools.partial(network.forward, batch),
                        config.redo_tau,
                        network.optimizers(),
                    )
                recycled.update({f"{network.name}/{k}": v for k, v in counts.items()})
            details["recycled"] = recycled
            details["recycled_total"] = int(sum(recycled.values()))
        if config.reset_clear_buffer:
            self.clear_buffer()
            self.probe = None
        event = PlasticityEvent(step, self.task_index, f"reset-{config.reset}", details)
        self.events.append(event)
        return event

    def _reset_targets(self) -> list[PlasticNetwork]:
        chosen = self.config.reset_networks
        if chosen == "both":
            return list(self.networks.values())
        return [self.networks[chosen]] if chosen in self.networks else []

    # -- results and checkpoints ------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """What results.json keeps: metric records, events, the replay-ratio checks."""
        return {
            "replay_ratio": self.config.replay_ratio,
            "switch_steps": [e.step for e in self.events if e.kind == "replay-ratio-switch"],
            "rr_checks": [] if self.rule is None else [list(c) for c in self.rule.history],
            "metrics": self.records,
            "events": [event.to_dict() for event in self.events],
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "rule": None if self.rule is None else self.rule.state_dict(),
            "task": self.task_index,
            "probe": None if self.probe is None else self.batch_to_state(self.probe),
            "records": self.records,
            "events": [event.to_dict() for event in self.events],
            "update_credit": self._update_credit,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.rule is not None and state["rule"] is not None:
            self.rule.load_state_dict(state["rule"])
        self.task_index = state["task"]
        self.probe = None if state["probe"] is None else self.batch_from_state(state["probe"])
        self.records = list(state["records"])
        self.events = [
            PlasticityEvent(
                e["step"],
                e["task"],
                e["kind"],
                {k: v for k, v in e.items() if k not in ("step", "task", "kind")},
            )
            for e in state["events"]
        ]
        self._update_credit = state["update_credit"]
        self.rng.bit_generator.state = state["rng"]


__all__ = ["PlasticNetwork", "PlasticityController", "PlasticityEvent"]
