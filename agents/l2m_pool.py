"""L2M's modulation-pool modes: ``l2m`` (the pool), ``shared-lora`` (one modulator for every
task) and ``oracle`` (one modulator per task, picked by the task id).

Each freezes the pretrained model and trains a `ModulationPool` (agents/modulation.py)
attached to its Linear layers, with a fresh Adam per task and no weight decay (entries another
task selected then stay bit-identical). Training rows select their entries once per episode
(`SelectingStrategy`); acting merges the held entries into a plain model's weights, so it
costs what the frozen base costs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from crlgym.agents.dt import DecisionTransformer
from crlgym.agents.l2m_strategy import SelectingStrategy
from crlgym.agents.modulation import (
    ModulatedLinear,
    ModulationConfig,
    ModulationPool,
    attach_pool,
    parameter_share,
)

if TYPE_CHECKING:
    from crlgym.agents.l2m import L2MAgent, L2MConfig

MergedWeights = dict[str, tuple[Tensor, Tensor | None]]
"""Per modulated Linear (module name), its weight and bias with entries folded in."""


class PoolStrategy(SelectingStrategy):
    """A frozen base model modulated by pool entries selected per episode (mode ``l2m``).

    Subclasses change the pool's shape (`modulation`) and how entries are chosen (`choose`).
    """

    name = "l2m"
    description = "modulation pool: top-k entries selected per episode, usage penalty"

    def __init__(self, config: L2MConfig) -> None:
        super().__init__(config)
        self._pool: ModulationPool | None = None
        self.merge_for_acting = True
        """Act with the selected entry merged into a plain model's weights (False: the
        per-sample modulation training uses; same outputs up to float rounding)."""
        self.merged_cache = 4
        """Entries whose merged weights are kept (most recently used)."""
        self.merged: dict[tuple[int, ...] | None, MergedWeights] = {}
        """Merged weights by selected entries (None: the bare model), most recent last."""
        self._acting_model: DecisionTransformer | None = None
        self._acting_key: tuple[int, ...] | None = ()  # () = nothing merged yet
        self._modulated: list[tuple[str, ModulatedLinear]] | None = None

    @property
    def pool(self) -> ModulationPool:
        if self._pool is None:
            raise RuntimeError("the strategy is not attached to an agent yet")
        return self._pool

    def modulation(self, agent: L2MAgent) -> ModulationConfig:
        """The pool's configuration."""
        config = self.config
        return ModulationConfig(
            kind=config.modulator, pool_size=config.pool_size, top_k=config.pool_top_k
        )

    def attach(self, agent: L2MAgent, weights: Mapping[str, Tensor], seed: int) -> None:
        agent.model.load_state_dict(weights)
        generator = torch.Generator().manual_seed(seed)
        self._pool = ModulationPool.from_model(
            agent.model, self.modulation(agent), generator=generator
        )
        attach_pool(agent.model, self._pool)

    def choose(
        self, agent: L2MAgent, query: Tensor, task_index: int, training: bool
    ) -> Tensor | None:
        return self.pool.select(query, training=training)

    def apply(self, selection: Tensor | None) -> None:
        self.pool.active = selection

    def loss_term(self, agent: L2MAgent) -> Tensor | None:
        if self.pool.config.pull_coef > 0 and self.selection is not None:
            assert self.query is not None
            return self.pool.pull_loss(self.query, self.selection)
        return None

    def on_task_end(self, agent: L2MAgent, task_index: int) -> None:
        """Fold the task's pool usage into the usage penalty."""
        self.pool.on_task_end()
        super().on_task_end(agent, task_index)

    def entry_share(self, agent: L2MAgent) -> float | None:
        return parameter_share(self.pool, agent.model)

    # -- acting ------------------------------------------------------------------------------
    def before_update(self, agent: L2MAgent) -> None:
        self.forget_merged()

    @contextmanager
    def acting(self, agent: L2MAgent, observation: np.ndarray) -> Iterator[None]:
        self.select_for_acting(agent, observation)
        selection = self.act_selection
        key = None if selection is None else tuple(int(i) for i in selection[0].tolist())
        held = agent._act_step >= agent.config.context - 1  # the selection is final
        if self.merge_for_acting and (held or key == self._acting_key or key in self.merged):
            # One plain model with the selected entry folded into its weights: acting costs
            # what the frozen base costs. Preliminary selections (the first context - 1
            # steps, which may change every step) merge only when already merged once.
            model, agent.model = agent.model, self._acting_model_for(agent, selection)
            try:
                yield
            finally:
                agent.model = model
        elif selection is None:
            with self.pool.disabled():
                yield
        else:
            with self.pool.selected(selection):
                yield

    def _acting_model_for(self, agent: L2MAgent, selection: Tensor | None) -> DecisionTransformer:
        """The plain acting model with ``selection``'s (1, k) entries merged into its weights
        (None: the bare pretrained weights); merged weights of the last few entries are kept
        until the pool changes."""
        key = None if selection is None else tuple(int(i) for i in selection[0].tolist())
        model = self._acting_model
        if model is None:
            model = DecisionTransformer(agent.observation_dim, agent.action_dim, agent.config)
            base = {k: v for k, v in agent.model.state_dict().items()
                    if not k.startswith("modulation_pool.")}  # fmt: skip
            model.load_state_dict(base)
            self._acting_model, self._acting_key = model.to(agent.device).eval(), ()
        if key == self._acting_key:
            return model
        weights = self.merged.pop(key, None)
        if weights is None:
            weights = self._merge(agent, key)
        self.merged[key] = weights  # most recently used last
        while len(self.merged) > self.merged_cache:
            self.merged.pop(next(iter(self.merged)))
        for name, (weight, bias) in weights.items():
            linear = model.get_submodule(name)
            assert isinstance(linear, nn.Linear)
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
        self._acting_key = key
        return model

    def _merge(self, agent: L2MAgent, key: tuple[int, ...] | None) -> MergedWeights:
        """Weight and bias of every modulated Linear with entries ``key`` folded in: LoRA
        W + (alpha / r) mean_k B_k A_k; (IA)^3 rows (output sites, and the bias) or columns
        (input sites) scaled by the mean of the selected vectors. Same function as the
        per-sample modulation up to float rounding. ``key`` None: the frozen base weights."""
        pool = self.pool
        if self._modulated is None:
            self._modulated = [
                (name, module)
                for name, module in agent.model.named_modules()
                if isinstance(module, ModulatedLinear)
            ]
        merged: MergedWeights = {}
        if key is None:
            for name, module in self._modulated:
                merged[name] = (module.weight, module.bias)
            return merged
        index = torch.tensor(key, device=agent.device)
        # One op per site for all layers at once: (layers, out, in) deltas or (layers, width)
        # scales.
        per_site: dict[str, Tensor] = {}
        for site in pool.config.sites:
            name = site.replace(".", "_")
            if pool.config.kind == "lora":
                scaling = pool.config.lora_scaling / len(key)
                b, a = pool.lora_b[name][index], pool.lora_a[name][index]
                per_site[site] = torch.einsum("klor,klri->loi", b, a) * scaling
            else:
                per_site[site] = pool.ia3[name][index].mean(0)
        for name, module in self._modulated:
            change = per_site[module.site][module.block_index].detach()
            weight: Tensor = module.weight.detach()
            bias: Tensor | None = None if module.bias is None else module.bias.detach()
            if pool.config.kind == "lora":
                weight = weight + change
            elif module.scales_input:
                weight = weight * change[None, :]
            else:
                weight = weight * change[:, None]
                bias = None if bias is None else bias * change
            merged[name] = (weight, bias)
        return merged

    def forget_merged(self) -> None:
        """The pool (or the model) changed: merged acting weights are stale."""
        self.merged.clear()
        self._acting_key = ()

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        super().load_state_dict(state)
        self._acting_model = None  # rebuilt from the restored weights
        self.forget_merged()


class SharedModulator(PoolStrategy):
    """One modulator trained on every task (a pool of one entry)."""

    name = "shared-lora"
    description = "one modulator (LoRA or (IA)^3) trained on every task"

    def modulation(self, agent: L2MAgent) -> ModulationConfig:
        return ModulationConfig.single(self.config.modulator)


class OracleModulator(PoolStrategy):
    """One modulator per fine-tuned task, picked by the task id (keys bypassed); tasks from
    ``agent.pool_tasks`` on (pretraining tasks evaluated for retention) run the bare model."""

    name = "oracle"
    description = "one modulator per task, picked by the task id"

    def modulation(self, agent: L2MAgent) -> ModulationConfig:
        return ModulationConfig.per_task(agent.pool_tasks, self.config.modulator)

    def choose(
        self, agent: L2MAgent, query: Tensor, task_index: int, training: bool
    ) -> Tensor | None:
        if task_index >= agent.pool_tasks:
            return None
        return self.pool.select_by_task(task_index, query.shape[0])


__all__ = ["OracleModulator", "PoolStrategy", "SharedModulator"]
