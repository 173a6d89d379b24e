"""L2M: continual fine-tuning of a pretrained multi-domain Decision Transformer (brief section 3).

Reads top to bottom:

1. Domains: per-domain reward scales (`reward_scale_of`, `scale_episodes`). Fitting a task
   into a pretrained checkpoint's padded layout and moving observations into it are about
   tasks' spaces and live in envs/padding.py (`fit_positions`, `SpaceMap`,
   `layout_episodes`).
2. `PretrainedModel`: what ``crl pretrain`` saves (tensors and plain values, loaded with
   ``weights_only=True``) and how it is read back.
3. `L2MConfig`: the fine-tuning options (they become ``crl train --agent l2m`` options).
4. `L2MAgent`: a `DecisionTransformerAgent` built from a pretrained checkpoint that trains and
   acts through its fine-tuning mode, a `FineTuningStrategy` (agents/l2m_strategy.py) chosen
   by name from `STRATEGIES` (agents/l2m_modes.py).

Reward scales. Returns-to-go and rewards of every task are divided by that task's domain scale
(Meta-World 200, DMControl 100, others 1) before they reach the model, so one model sees all
domains at comparable magnitudes. The agent applies the scale itself (to the episodes it
trains on, and to every reward `observe_reward` gets), and runs the Decision Transformer with
``reward_scale`` 1, so that nothing in agents/dt.py had to change.

Selection (modes ``l2m``): L2M's query is the mean of the embedded state tokens (the raw
``embed_state`` output, no timestep embedding) of the *first* ``context`` steps of an episode.
An episode row of a training batch selects its entry once, from its first ``context`` states
(padding masked), and holds it for the whole episode; the usage penalty counts one selection
per episode. Acting selects again after each of the first ``context`` steps from the states
seen so far (the first ``context`` states are not known before they happen), and holds the
selection from step ``context - 1`` on, the one training used. Why the episode start and not
the running window: the Transformer-XL cache holds block inputs computed under the earlier
selection, so a selection that changed every step would make acting differ from training at
every step; holding it makes them agree after the first ``context`` steps.

Modes (`STRATEGIES`): ``l2m`` the pool (30 entries, top-1, usage penalty, key pull loss),
``shared-lora`` one modulator trained on every task, ``oracle`` one modulator per task picked
by the task id (agents/l2m_pool.py); ``full`` full fine-tuning of every weight (the forgetting
baseline), ``ewc`` full fine-tuning plus Elastic Weight Consolidation (agents/l2m_full.py);
``l2p`` L2P's prompt pool (agents/l2m_prompts.py). Pool and prompt modes freeze everything
outside what they add and train it with a fresh Adam per task and no weight decay (entries
another task selected then stay bit-identical); ``full`` and ``ewc`` use AdamW as pretraining.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from crlgym.agents.dt import DecisionTransformerAgent, DTConfig, _Batch
from crlgym.agents.l2m_modes import STRATEGIES, check_mode, make_strategy
from crlgym.agents.l2m_pool import PoolStrategy
from crlgym.agents.l2m_strategy import FineTuningStrategy
from crlgym.agents.modulation import ModulationPool
from crlgym.envs.padding import PaddedLayout
from crlgym.envs.tasks import task_domain
from crlgym.errors import ConfigError

# --- domains ----------------------------------------------------------------------------------

DOMAIN_REWARD_SCALES: dict[str, float] = {"metaworld": 200.0, "dmc": 100.0}
"""Returns and rewards are divided by these (L2M); other domains (toy, recall) use 1."""

CHECKPOINT_FORMAT = "crlgym-pretrained-dt-v1"


def reward_scale_of(task: str) -> float:
    """The reward scale of ``task``'s domain (`DOMAIN_REWARD_SCALES`, else 1)."""
    return DOMAIN_REWARD_SCALES.get(task_domain(task), 1.0)


def scale_episodes(episodes: list[dict[str, Any]], scale: float) -> list[dict[str, Any]]:
    """Copies of ``episodes`` with rewards (and returns-to-go) divided by ``scale``."""
    scaled = []
    for episode in episodes:
        episode = dict(episode, rewards=np.asarray(episode["rewards"], dtype=np.float64) / scale)
        if episode.get("returns_to_go") is not None:
            episode["returns_to_go"] = np.asarray(episode["returns_to_go"]) / scale
        scaled.append(episode)
    return scaled


# --- the pretrained checkpoint ------------------------------------------------------------------


@dataclass
class PretrainedModel:
    """A pretrained multi-domain Decision Transformer, as ``crl pretrain`` saves it."""

    config: DTConfig
    """The model's hyperparameters (memory none, reward tokens, reward_scale 1)."""
    layout: PaddedLayout
    """The padded space of observations and actions."""
    tasks: list[str]
    """Pretraining tasks."""
    target_returns: list[float]
    """Per pretraining task, the best return in its data, already divided by its scale."""
    state_dict: dict[str, Tensor]
    """The model's weights."""
    updates: int = 0
    """Gradient updates of pretraining."""
    preset: str = ""
    """The model size preset (small, paper) or empty."""

    def to_dict(self) -> dict[str, Any]:
        config = self.config.to_dict()
        return {
            "format": CHECKPOINT_FORMAT,
            "config": config,
            "layout": self.layout.to_dict(),
            "tasks": list(self.tasks),
            "target_returns": [float(x) for x in self.target_returns],
            "model": self.state_dict,
            "updates": int(self.updates),
            "preset": self.preset,
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically (a temporary file renamed over ``path``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        torch.save(self.to_dict(), temporary)
        os.replace(temporary, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> PretrainedModel:
        """Read a checkpoint (``weights_only=True``: tensors and plain values only)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no pretrained checkpoint at {path}; make one with crl pretrain")
        data = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"{path} is not a crl pretrain checkpoint")
        return cls(
            config=DTConfig(**data["config"]),
            layout=PaddedLayout.from_dict(data["layout"]),
            tasks=list(data["tasks"]),
            target_returns=[float(x) for x in data["target_returns"]],
            state_dict=data["model"],
            updates=int(data["updates"]),
            preset=str(data["preset"]),
        )


# --- fine-tuning options ----------------------------------------------------------------------


@dataclass
class L2MConfig:
    """Continual fine-tuning of a pretrained model (``crl train --agent l2m``)."""

    pretrained: str = ""
    """Checkpoint of crl pretrain (its .pt file) to fine-tune (agent l2m)."""
    modulator: str = "lora"
    """Pool modulator: lora (rank 8, alpha 16) or ia3."""
    l2m_mode: str = "l2m"
    """l2m (modulation pool), shared-lora (one modulator for all tasks), oracle (one modulator
    per task picked by task id), full (full fine-tuning, nothing frozen), ewc (full
    fine-tuning with Elastic Weight Consolidation) or l2p (prompt pool, prefix prompts)."""
    pool_size: int = 30
    """Entries of the modulation pool (mode l2m)."""
    pool_top_k: int = 1
    """Pool entries selected per episode (mode l2m); their modulations are averaged (L2M:
    1)."""
    pretrain_eval_tasks: int = 0
    """Pretraining tasks (an even sample) also evaluated before fine-tuning and at every task
    end, to measure retention of pretraining (results.json pretrain_retention)."""
    l2m_learning_rate: float = 1e-3
    """Peak learning rate of fine-tuning (Adam without weight decay for pools and prompts;
    AdamW in modes full and ewc)."""
    l2m_batch_size: int = 16
    """Rows per fine-tuning batch (episodes, or random segments when the pretrained model
    trained on random segments)."""
    l2m_warmup: int = 100
    """Updates of linear learning-rate warmup from each task's fresh optimizer."""
    ewc_coef: float = 1e4
    """EWC penalty weight (mode ewc): loss + ewc_coef * sum F (w - w_previous_tasks)^2."""
    ewc_fisher_batches: int = 20
    """Training batches whose squared gradients estimate a task's Fisher (mode ewc)."""
    prompt_pool_size: int = 100
    """Prompts in the L2P pool (mode l2p)."""
    prompt_length: int = 5
    """Tokens per L2P prompt (mode l2p)."""
    prompt_top_k: int = 5
    """L2P prompts selected per episode and prepended together (mode l2p)."""

    def __post_init__(self) -> None:
        if self.modulator not in ("lora", "ia3"):
            raise ConfigError(f"modulator must be lora or ia3, got {self.modulator!r}")
        check_mode(self.l2m_mode)
        if self.pool_size < 1 or self.pretrain_eval_tasks < 0 or self.l2m_batch_size < 1:
            raise ConfigError("pool_size and l2m_batch_size must be >= 1, pretrain_eval_tasks >= 0")
        if not 1 <= self.pool_top_k <= self.pool_size:
            raise ConfigError(
                f"pool_top_k must be in [1, pool_size={self.pool_size}], got {self.pool_top_k}"
            )
        if not self.l2m_learning_rate > 0 or self.l2m_warmup < 0:
            raise ConfigError("l2m_learning_rate must be positive and l2m_warmup >= 0")
        if min(self.prompt_pool_size, self.prompt_length, self.prompt_top_k) < 1:
            raise ConfigError("prompt_pool_size, prompt_length and prompt_top_k must be >= 1")
        if self.prompt_top_k > self.prompt_pool_size:
            raise ConfigError("prompt_top_k must not exceed prompt_pool_size")
        if self.ewc_coef < 0 or self.ewc_fisher_batches < 1:
            raise ConfigError("ewc_coef must be >= 0 and ewc_fisher_batches >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the agent --------------------------------------------------------------------------------


class L2MAgent(DecisionTransformerAgent):
    """A pretrained Decision Transformer fine-tuned continually through its mode's strategy.

    Same interface as `DecisionTransformerAgent` (``on_task_start``, ``learn_updates``,
    ``start_episode``/``act``/``observe_reward``, ``training_state``), in the pretrained
    layout's space: observations and actions of every task must already be in it
    (`crlgym.envs.padding.layout_episodes`, `crlgym.envs.padding.SpaceMap`). What the mode
    trains, adds to the loss, selects and acts with is its `strategy`'s
    (`FineTuningStrategy`); the agent only calls its hooks.

    Args:
        pretrained: the checkpoint.
        num_tasks: task indices the agent trains or acts on; indices from ``pool_tasks`` on
            are acted on only (retention of pretraining tasks): the oracle has no entry for
            them and runs the bare pretrained model.
        pool_tasks: tasks that are fine-tuned (the oracle's pool size); default num_tasks.
        config: the fine-tuning options.
        episodes_of: task index -> its episodes in the layout's space, rewards unscaled.
        reward_scales: per task index, its domain's scale (`reward_scale_of`).
        target_returns: returns to act for (already divided by the task's scale, as
            `PretrainedModel.target_returns`), for tasks whose data is not at hand.
        seed, device: as `DecisionTransformerAgent`.
    """

    def __init__(
        self,
        pretrained: PretrainedModel,
        num_tasks: int,
        config: L2MConfig,
        episodes_of: Callable[[int], list[dict]],
        reward_scales: Sequence[float],
        target_returns: Mapping[int, float] | None = None,
        pool_tasks: int | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        if len(reward_scales) != num_tasks:
            raise ConfigError(f"{len(reward_scales)} reward scales for {num_tasks} tasks")
        self.l2m = config
        self.reward_scales = [float(s) for s in reward_scales]
        self.pool_tasks = num_tasks if pool_tasks is None else pool_tasks
        self._raw_episodes_of = episodes_of
        self.strategy: FineTuningStrategy = make_strategy(config)
        self._attached = False  # the base agent's optimizer comes before the strategy's
        dt_config = replace(
            pretrained.config,
            reward_scale=1.0,  # applied per task by this agent
            target_return=None,
            learning_rate=config.l2m_learning_rate,
            batch_size=config.l2m_batch_size,
            warmup=config.l2m_warmup,
            reset_optimizer=True,
        )
        super().__init__(
            pretrained.layout.observation_dim,
            pretrained.layout.action_dim,
            num_tasks,
            dt_config,
            episodes_of=self._scaled_episodes,
            seed=seed,
            device=device,
        )
        self.strategy.attach(self, pretrained.state_dict, seed)
        self._attached = True
        self.optimizer = self._fresh_optimizer()
        for task_index, value in (target_returns or {}).items():
            self._target_returns[int(task_index)] = float(value)
        self._restoring = False

    # -- pieces ----------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.l2m.l2m_mode

    @property
    def pool(self) -> ModulationPool | None:
        """The modulation pool of the pool modes (l2m, shared-lora, oracle); None otherwise."""
        strategy = self.strategy
        return strategy.pool if isinstance(strategy, PoolStrategy) else None

    def _scaled_episodes(self, task_index: int) -> list[dict]:
        return scale_episodes(self._raw_episodes_of(task_index), self.reward_scales[task_index])

    def _fresh_optimizer(self) -> torch.optim.Optimizer:
        if not self._attached:
            return super()._fresh_optimizer()
        return self.strategy.optimizer(self)

    def entry_share(self) -> float | None:
        """Trainable parameters per task (one pool entry; L2P: the top_k selected prompts and
        their keys) / parameters of the base model; None when every weight trains."""
        return self.strategy.entry_share(self)

    # -- training ----------------------------------------------------------------------------
    def on_task_start(self, task_index: int, budget: int | None = None) -> None:
        super().on_task_start(task_index, budget)
        self.strategy.on_task_start(self, task_index)

    def on_task_end(self, task_index: int) -> None:
        """The strategy's task end (EWC: the task's Fisher; pools: usage), then drop the
        task's data."""
        self.strategy.on_task_end(self, task_index)
        super().on_task_end(task_index)

    def _sample_batch(self, episodes: Tensor | None = None) -> _Batch:
        batch = super()._sample_batch(episodes)
        if not self._restoring:  # a restored batch keeps the selection it was given
            self.strategy.on_batch(self, batch)
        return batch

    def _update(self) -> None:
        self.strategy.before_update(self)
        super()._update()

    def _loss(self, outputs: Tensor, actions: Tensor, valid: Tensor) -> tuple[Tensor, float | None]:
        loss, accuracy = super()._loss(outputs, actions, valid)
        term = self.strategy.loss_term(self)
        if term is not None:
            loss = loss + term
        return loss, accuracy

    # -- acting ------------------------------------------------------------------------------
    def start_episode(self, task_index: int) -> None:
        super().start_episode(task_index)
        self.strategy.on_episode_start(self, task_index)

    def observe_reward(self, reward: float) -> None:
        """The env's reward of the last action (unscaled; divided by the task's scale here)."""
        super().observe_reward(float(reward) / self.reward_scales[self._act_task])

    @torch.no_grad()
    def _advance(self, observation: np.ndarray) -> Tensor:
        with self.strategy.acting(self, observation):
            return super()._advance(observation)

    def acting_entry(self) -> int | None:
        """The learned entry the running episode acts with (top-1), None for the bare model."""
        return self.strategy.acting_entry()

    # -- checkpoints -------------------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        state = super().training_state()
        state["l2m"] = self.strategy.state_dict()
        return state

    def load_training_state(self, state: dict[str, Any]) -> None:
        self._restoring = True  # the batch in progress keeps the entries it was given
        try:
            super().load_training_state(state)
        finally:
            self._restoring = False
        self.strategy.load_state_dict(state["l2m"])


__all__ = [
    "DOMAIN_REWARD_SCALES",
    "STRATEGIES",
    "FineTuningStrategy",
    "L2MAgent",
    "L2MConfig",
    "PretrainedModel",
    "reward_scale_of",
    "scale_episodes",
]
