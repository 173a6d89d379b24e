"""L2M: continual fine-tuning of a pretrained multi-domain Decision Transformer (brief section 3).

Reads top to bottom:

1. Domains and spaces: per-domain reward scales (`reward_scale_of`), fitting a task into a
   pretrained checkpoint's padded layout (`fit_positions`, which refuses tasks the layout
   cannot hold), and `SpaceMap`, which moves observations from the space an env shows into
   the checkpoint's space.
2. `PretrainedModel`: what ``crl pretrain`` saves (tensors and plain values, loaded with
   ``weights_only=True``) and how it is read back.
3. `L2MConfig`: the fine-tuning options (they become ``crl train --agent l2m`` options).
4. L2P's `PromptPool` and `PromptedDecisionTransformer` (mode ``l2p``).
5. `L2MAgent`: a `DecisionTransformerAgent` built from a pretrained checkpoint whose training
   and acting go through a modulation pool (agents/modulation.py), in one of `MODES`; acting
   merges the held entry into a plain model's weights.

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

Modes (`MODES`): ``l2m`` the pool (30 entries, top-1, usage penalty, key pull loss),
``shared-lora`` one modulator trained on every task, ``oracle`` one modulator per task picked
by the task id, ``full`` full fine-tuning of every weight (the forgetting baseline), ``ewc``
full fine-tuning plus Elastic Weight Consolidation. Pool modes freeze everything outside the
pool and train it with a fresh Adam per task and no weight decay (entries another task selected
then stay bit-identical); ``full`` and ``ewc`` use AdamW as pretraining.

EWC (mode ``ewc``): at each task end the diagonal Fisher of the action-token cross-entropy is
estimated on that task's data, ``ewc_fisher_batches`` training batches drawn as training
draws them (the squared gradient of each batch's mean loss: a batch-level empirical Fisher,
cheaper than per-sample gradients and the usual approximation at this scale); Fishers add up
over tasks and the anchor is the weights at the last task end; the loss gains
ewc_coef * sum F (w - anchor)^2.

L2P (mode ``l2p``, Wang et al. 2022 as L2M's baseline): a pool of 100 prompts of 5 learned
tokens, each with a key; the same query picks the top 5 keys (cosine, no usage penalty) and
their 25 tokens are prepended to the input as a prefix that every token attends to at every
block (`PromptedDecisionTransformer`: the prefix rides in the Transformer-XL cache, so
agents/dt.py is unchanged); keys learn through the same pull loss; everything else frozen.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from crlgym.agents.dt import (
    Context,
    DecisionTransformer,
    DecisionTransformerAgent,
    DTConfig,
    _Batch,
)
from crlgym.agents.modulation import (
    ModulatedLinear,
    ModulationConfig,
    ModulationPool,
    attach_pool,
    parameter_share,
    state_query,
    trainable_parameters,
)
from crlgym.envs.dmc_specs import load_dmc_specs
from crlgym.envs.padding import RECALL_SLOT, TOY_SLOT, PaddedLayout
from crlgym.envs.tasks import canonical_task_name, task_domain
from torch import Tensor, nn
from torch.nn import functional as F

from crlgym.errors import ConfigError

# --- domains and spaces -----------------------------------------------------------------------

DOMAIN_REWARD_SCALES: dict[str, float] = {"metaworld": 200.0, "dmc": 100.0}
"""Returns and rewards are divided by these (L2M); other domains (toy, recall) use 1."""

MODES: tuple[str, ...] = ("l2m", "shared-lora", "oracle", "full", "ewc", "l2p")
"""Valid `L2MConfig.l2m_mode` values."""

CHECKPOINT_FORMAT = "crlgym-pretrained-dt-v1"


def reward_scale_of(task: str) -> float:
    """The reward scale of ``task``'s domain (`DOMAIN_REWARD_SCALES`, else 1)."""
    return DOMAIN_REWARD_SCALES.get(task_domain(task), 1.0)


def fit_positions(layout: PaddedLayout, task: str) -> np.ndarray:
    """Index of each native observation dimension of ``task`` in ``layout``'s vector.

    Raises:
        ConfigError: the layout has no slot for the task's domain or keys, a slot is too
            narrow for the task, or the task's actions are wider than the layout's.
    """
    from crlgym.envs.sequences import native_spaces

    name = canonical_task_name(task)
    domain = task_domain(name)
    observation_space, action_space = native_spaces(name)
    native_obs, native_act = int(observation_space.shape[0]), int(action_space.shape[0])
    slot_names = [slot for slot, _start, _width in layout.slots]
    problem = None
    if native_act > layout.action_dim:
        problem = f"{native_act}-d actions, the layout has {layout.action_dim}"
    elif domain == "dmc":
        for key, size in load_dmc_specs()[name]["observation"]:
            if key not in slot_names:
                problem = f"observation key {key!r} has no slot"
            elif size > layout.slot(key)[1]:
                problem = f"observation key {key!r} is {size}-d, its slot {layout.slot(key)[1]}"
    elif domain == "toy":
        if TOY_SLOT not in slot_names:
            problem = "no toy slot"
        elif layout.slot(TOY_SLOT)[1] != native_obs:
            problem = f"{native_obs}-d observations, the toy slot is {layout.slot(TOY_SLOT)[1]}"
    elif domain == "recall":
        if RECALL_SLOT not in slot_names:
            problem = "no recall slot"
        elif (native_obs - 3) // 2 > (layout.slot(RECALL_SLOT)[1] - 3) // 2:
            problem = "more cues than the recall slot holds"
    if problem is None:
        positions = layout.positions(name)
        if len(positions) == native_obs and positions.max() < layout.observation_dim:
            return positions
        problem = "its observation does not map onto the layout"
    raise ConfigError(
        f"task {task} does not fit the pretrained model's padded layout ({problem}); "
        "fine-tune on tasks whose domains the pretraining data covered, or pretrain with them"
    )


def layout_to_dict(layout: PaddedLayout) -> dict[str, Any]:
    """Plain lists and numbers (weights_only-loadable)."""
    return {
        "slots": [[name, start, width] for name, start, width in layout.slots],
        "action_dim": layout.action_dim,
        "slot_low": list(layout.slot_low),
        "slot_high": list(layout.slot_high),
    }


def layout_from_dict(data: Mapping[str, Any]) -> PaddedLayout:
    return PaddedLayout(
        slots=tuple((str(n), int(s), int(w)) for n, s, w in data["slots"]),
        action_dim=int(data["action_dim"]),
        slot_low=tuple(float(x) for x in data["slot_low"]),
        slot_high=tuple(float(x) for x in data["slot_high"]),
    )


class SpaceMap:
    """Moves one task's observations from the space its env shows into a layout, and cuts the
    layout-wide actions back to the env's width.

    Args:
        task: the task's name.
        layout: the pretrained model's layout (the target).
        source: the layout the env pads into (a mixed sequence's), or None for native
            observations.
        env_action_dim: the width of actions the env takes.
    """

    def __init__(
        self, task: str, layout: PaddedLayout, source: PaddedLayout | None, env_action_dim: int
    ) -> None:
        self.target = fit_positions(layout, task)
        self.source = (
            np.arange(len(self.target)) if source is None else source.positions(task)
        ).astype(np.int64)
        self.observation_dim = layout.observation_dim
        self.env_action_dim = env_action_dim

    def observations(self, observations: np.ndarray) -> np.ndarray:
        """(..., env obs) -> (..., layout obs), zeros outside the task's slots."""
        observations = np.asarray(observations, dtype=np.float32)
        out = np.zeros((*observations.shape[:-1], self.observation_dim), dtype=np.float32)
        out[..., self.target] = observations[..., self.source]
        return out

    def action(self, action: np.ndarray) -> np.ndarray:
        return np.asarray(action)[: self.env_action_dim]


def layout_episodes(
    episodes: list[dict[str, Any]], task: str, layout: PaddedLayout
) -> list[dict[str, Any]]:
    """Native episodes of ``task`` (`crlgym.memory.datasets.load_episodes`) in ``layout``'s space:
    observations in the task's slots, actions zero-padded to the layout's width."""
    space = SpaceMap(task, layout, None, layout.action_dim)
    out = []
    for episode in episodes:
        actions = np.zeros((episode["actions"].shape[0], layout.action_dim), dtype=np.float32)
        actions[:, : episode["actions"].shape[1]] = episode["actions"]
        out.append(
            {
                **episode,
                "observations": space.observations(episode["observations"]),
                "actions": actions,
            }
        )
    return out


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
            "layout": layout_to_dict(self.layout),
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
            layout=layout_from_dict(data["layout"]),
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
        if self.l2m_mode not in MODES:
            raise ConfigError(f"l2m_mode must be one of {', '.join(MODES)}, got {self.l2m_mode!r}")
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

    def modulation(self, num_tasks: int) -> ModulationConfig | None:
        """The pool's configuration for a run of ``num_tasks`` tasks; None in modes full, ewc
        and l2p (which has a prompt pool instead)."""
        if self.l2m_mode in ("full", "ewc", "l2p"):
            return None
        if self.l2m_mode == "shared-lora":
            return ModulationConfig.single(self.modulator)
        if self.l2m_mode == "oracle":
            return ModulationConfig.per_task(num_tasks, self.modulator)
        return ModulationConfig(
            kind=self.modulator, pool_size=self.pool_size, top_k=self.pool_top_k
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- L2P: a prompt pool ------------------------------------------------------------------------


class PromptPool(nn.Module):
    """L2P's prompts: ``keys`` (size, d) and ``prompts`` (size, length, d), uniform in [-1, 1]
    (block inputs are LayerNorm outputs, of that order)."""

    def __init__(
        self, size: int, length: int, top_k: int, d_model: int, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.top_k, self.pull_coef = top_k, 0.5
        self.keys = nn.Parameter(torch.rand(size, d_model, generator=generator) * 2 - 1)
        self.prompts = nn.Parameter(torch.rand(size, length, d_model, generator=generator) * 2 - 1)

    def select(self, query: Tensor) -> Tensor:
        """(B, top_k) prompts whose keys are most similar (cosine) to queries (B, d)."""
        with torch.no_grad():
            scores = F.normalize(query, dim=-1) @ F.normalize(self.keys, dim=-1).T
            return scores.topk(self.top_k, dim=1).indices

    def tokens(self, indices: Tensor) -> Tensor:
        """(B, top_k * length, d) the selected prompts' tokens, in selection order."""
        return self.prompts[indices].flatten(1, 2)

    def pull_loss(self, query: Tensor, indices: Tensor) -> Tensor:
        """-pull_coef * mean cos(query, chosen keys); only the keys move."""
        chosen = F.normalize(self.keys[indices], dim=-1)
        return (
            -self.pull_coef * (chosen * F.normalize(query.detach(), dim=-1)[:, None]).sum(-1).mean()
        )


class PromptedDecisionTransformer(DecisionTransformer):
    """A Decision Transformer whose every forward sees a prefix of prompt tokens.

    The selected prompts (``prompt_selection``, (B, k) or (1, k) indices into
    ``prompt_pool``) are the block-0 inputs of the prefix; the prefix's inputs to later blocks
    come from running it through the earlier blocks (it attends to itself only). They enter
    `DecisionTransformer.run` as extra cached tokens at position -1 and a far-future step, so
    the causal and local masks let every token attend to them, and are stripped from the
    context `run` returns (each call prepends them afresh, with the current prompts).
    """

    def __init__(self, observation_dim: int, action_dim: int, config: DTConfig) -> None:
        super().__init__(observation_dim, action_dim, config)
        self.prompt_pool: PromptPool | None = None  # becomes a submodule once assigned
        self.prompt_selection: Tensor | None = None

    def run(
        self,
        tokens: Tensor,
        steps: Tensor,
        positions: Tensor,
        state_index: Tensor,
        context: Context,
        episode_start: Tensor | None,
        valid: Tensor | None = None,
    ) -> tuple[Tensor, Context]:
        pool, selection = self.prompt_pool, self.prompt_selection
        if pool is None or selection is None:
            return super().run(tokens, steps, positions, state_index, context, episode_start, valid)
        prompts = pool.tokens(selection).expand(tokens.shape[0], -1, -1)
        n, device = prompts.shape[1], tokens.device
        everything = torch.ones(n, n, dtype=torch.bool, device=device)
        no_states = torch.zeros(0, dtype=torch.long, device=device)
        inputs, x = [], prompts
        for index, block in enumerate(self.blocks):
            inputs.append(x)
            if index + 1 < len(self.blocks):
                x, _ = block(x, x[:, :0], everything, no_states, None, None)
        far = int(steps.max()) + self.config.context  # inside every query's local window
        prefixed = Context(
            caches=[torch.cat([p, c], dim=1) for p, c in zip(inputs, context.caches, strict=True)],
            positions=torch.cat([positions.new_full((n,), -1), context.positions]),
            steps=torch.cat([steps.new_full((n,), far), context.steps]),
            memories=context.memories,
            valid=None
            if context.valid is None
            else torch.cat([context.valid.new_ones(tokens.shape[0], n), context.valid], dim=1),
        )
        outputs, new = super().run(
            tokens, steps, positions, state_index, prefixed, episode_start, valid
        )
        stripped = Context(
            caches=[cache[:, n:] for cache in new.caches],
            positions=new.positions[n:],
            steps=new.steps[n:],
            memories=new.memories,
            valid=None if new.valid is None else new.valid[:, n:],
        )
        return outputs, stripped


# --- the agent --------------------------------------------------------------------------------


class L2MAgent(DecisionTransformerAgent):
    """A pretrained Decision Transformer fine-tuned continually through a modulation pool.

    Same interface as `DecisionTransformerAgent` (``on_task_start``, ``learn_updates``,
    ``start_episode``/``act``/``observe_reward``, ``training_state``), in the pretrained
    layout's space: observations and actions of every task must already be in it
    (`layout_episodes`, `SpaceMap`).

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
        full = config.l2m_mode in ("full", "ewc")
        dt_config = replace(
            pretrained.config,
            reward_scale=1.0,  # applied per task by this agent
            target_return=None,
            learning_rate=config.l2m_learning_rate,
            batch_size=config.l2m_batch_size,
            warmup=config.l2m_warmup,
            weight_decay=pretrained.config.weight_decay if full else 0.0,
            reset_optimizer=True,
        )
        self.pool: ModulationPool | None = None
        self.prompts: PromptPool | None = None
        super().__init__(
            pretrained.layout.observation_dim,
            pretrained.layout.action_dim,
            num_tasks,
            dt_config,
            episodes_of=self._scaled_episodes,
            seed=seed,
            device=device,
        )
        if config.l2m_mode == "l2p":
            model = PromptedDecisionTransformer(self.observation_dim, self.action_dim, dt_config)
            model.load_state_dict(pretrained.state_dict)
            for parameter in model.parameters():
                parameter.requires_grad_(False)
            generator = torch.Generator().manual_seed(seed)
            self.prompts = PromptPool(
                config.prompt_pool_size, config.prompt_length, config.prompt_top_k,
                dt_config.d_model, generator,
            )  # fmt: skip
            model.prompt_pool = self.prompts  # a submodule: in state_dict and checkpoints
            self.model = model.to(self.device)
        self.model.load_state_dict(pretrained.state_dict, strict=self.prompts is None)
        modulation = config.modulation(self.pool_tasks)
        if modulation is not None:
            generator = torch.Generator().manual_seed(seed)
            self.pool = ModulationPool.from_model(self.model, modulation, generator=generator)
            attach_pool(self.model, self.pool)
        self.optimizer = self._fresh_optimizer()
        for task, value in (target_returns or {}).items():
            self._target_returns[int(task)] = float(value)
        self._selection: Tensor | None = None  # (B, k) entries of the training batch's rows
        self._query: Tensor | None = None  # (B, d) their queries (for the pull loss)
        self._restoring = False
        self._act_states: list[Tensor] = []
        self._act_selection: Tensor | None = None
        self.merge_for_acting = True
        """Act with the selected entry merged into a plain model's weights (False: the
        per-sample modulation training uses; same outputs up to float rounding)."""
        self.merged_cache = 4
        """Entries whose merged weights are kept (most recently used)."""
        self._acting_model: DecisionTransformer | None = None
        self._acting_key: tuple[int, ...] | None = ()  # () = nothing merged yet
        self._merged: dict[tuple[int, ...] | None, dict[str, tuple[Tensor, Tensor | None]]] = {}
        self._modulated: list[tuple[str, ModulatedLinear]] | None = None
        self._fisher: dict[str, Tensor] | None = None  # EWC: summed diagonal Fishers
        self._anchor: dict[str, Tensor] | None = None  # EWC: weights at the last task end

    # -- pieces ----------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.l2m.l2m_mode

    def _scaled_episodes(self, task: int) -> list[dict]:
        return scale_episodes(self._raw_episodes_of(task), self.reward_scales[task])

    def _fresh_optimizer(self) -> torch.optim.Optimizer:
        frozen_base = getattr(self, "pool", None) is not None
        if not frozen_base and getattr(self, "prompts", None) is None:
            return super()._fresh_optimizer()  # full fine-tuning, or before any pool exists
        return torch.optim.Adam(trainable_parameters(self.model), lr=self.config.learning_rate)

    def entry_share(self) -> float | None:
        """Trainable parameters per task (one pool entry; L2P: the top_k selected prompts and
        their keys) / parameters of the base model; None when every weight trains."""
        if self.prompts is not None:
            prompts = self.prompts
            base = sum(p.numel() for n, p in self.model.named_parameters()
                       if not n.startswith("prompt_pool."))  # fmt: skip
            per_prompt = prompts.prompts[0].numel() + prompts.keys[0].numel()
            return prompts.top_k * per_prompt / base
        return None if self.pool is None else parameter_share(self.pool, self.model)

    @torch.no_grad()
    def _query_of(self, states: Tensor, mask: Tensor | None) -> Tensor:
        return state_query(self.model.embed_state(states), mask)

    def _select(self, query: Tensor, task: int, training: bool) -> Tensor | None:
        """(B, k) entries for queries (B, d) on ``task``; None = the bare model."""
        assert self.pool is not None
        batch = query.shape[0]
        if self.mode == "oracle":
            if task >= self.pool_tasks:
                return None
            return self.pool.select_by_task(task, batch)
        return self.pool.select(query, training=training)

    # -- training ----------------------------------------------------------------------------
    def on_task_end(self, task_index: int) -> None:
        """Fold the task's pool usage into the usage penalty (EWC: its Fisher into the
        penalty); drop its data."""
        if self.mode == "ewc":
            self._consolidate()
        super().on_task_end(task_index)
        if self.pool is not None:
            self.pool.on_task_end()
        self._selection, self._query = None, None

    def _sample_batch(self, episodes: Tensor | None = None) -> _Batch:
        batch = super()._sample_batch(episodes)
        if self.prompts is not None and not self._restoring:
            self._query = self._query_of(*self._episode_openings(batch))
            self._selection = self.prompts.select(self._query)
            self._prompted().prompt_selection = self._selection
        if self.pool is not None and not self._restoring:
            assert self.current_task is not None
            self._query = self._query_of(*self._episode_openings(batch))
            self._selection = self._select(self._query, self.current_task, training=True)
            self.pool.active = self._selection
        return batch

    def _consolidate(self) -> None:
        """Add the current task's diagonal Fisher to the EWC penalty; anchor at the weights."""
        params = dict(self.model.named_parameters())
        fisher = {name: torch.zeros_like(p) for name, p in params.items()}
        batches, context = self.l2m.ewc_fisher_batches, self.config.context
        batch, start, state = None, 0, None
        self.model.train()
        for _ in range(batches):
            if self.config.segment_sampling == "random":
                outputs, actions, valid = self._segment_outputs(self._sample_batch())
            else:
                if batch is None or start >= batch.valid.shape[1]:
                    batch, start = self._sample_batch(), 0
                    state = self.model.initial_context(batch.valid.shape[0], self.device)
                assert state is not None
                window = slice(start, start + context)
                outputs, state = self.model.segment(
                    batch.returns_to_go[:, window], batch.states[:, window],
                    batch.actions[:, window], batch.rewards[:, window], start, state,
                )  # fmt: skip
                state = state.detach()
                actions, valid = batch.actions[:, window], batch.valid[:, window]
                start += context
            # The task loss alone, without the penalty of earlier tasks.
            loss, _ = DecisionTransformerAgent._loss(self, outputs, actions, valid)
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for name, grad in zip(params, grads, strict=True):
                if grad is not None:
                    fisher[name] += grad.detach().square() / batches
        if self._fisher is not None:
            fisher = {name: value + self._fisher[name] for name, value in fisher.items()}
        self._fisher = fisher
        self._anchor = {name: p.detach().clone() for name, p in params.items()}

    def ewc_penalty(self) -> Tensor | None:
        """ewc_coef * sum F (w - anchor)^2 over every weight; None before the first task end."""
        if self._fisher is None or self._anchor is None:
            return None
        total = sum(
            (self._fisher[name] * (p - self._anchor[name]).square()).sum()
            for name, p in self.model.named_parameters()
        )
        return self.l2m.ewc_coef * total  # type: ignore[return-value]

    def _loss(self, outputs: Tensor, actions: Tensor, valid: Tensor) -> tuple[Tensor, float | None]:
        loss, accuracy = super()._loss(outputs, actions, valid)
        penalty = self.ewc_penalty() if self.mode == "ewc" else None
        if penalty is not None:
            loss = loss + penalty
        pool = self.pool
        if pool is not None and pool.config.pull_coef > 0 and self._selection is not None:
            assert self._query is not None
            loss = loss + pool.pull_loss(self._query, self._selection)
        if self.prompts is not None and self._selection is not None:
            assert self._query is not None
            loss = loss + self.prompts.pull_loss(self._query, self._selection)
        return loss, accuracy

    def _prompted(self) -> PromptedDecisionTransformer:
        assert isinstance(self.model, PromptedDecisionTransformer)
        return self.model

    # -- acting ------------------------------------------------------------------------------
    def start_episode(self, task_index: int) -> None:
        super().start_episode(task_index)
        self._act_states, self._act_selection = [], None

    def observe_reward(self, reward: float) -> None:
        """The env's reward of the last action (unscaled; divided by the task's scale here)."""
        super().observe_reward(float(reward) / self.reward_scales[self._act_task])

    @torch.no_grad()
    def _advance(self, observation: np.ndarray) -> Tensor:
        if self.prompts is not None:
            if self._act_step < self.config.context:
                state = torch.as_tensor(np.asarray(observation), dtype=torch.float32)
                self._act_states.append(state.to(self.device))
                query = self._query_of(torch.stack(self._act_states)[None], None)
                self._act_selection = self.prompts.select(query)
            model = self._prompted()
            training_selection, model.prompt_selection = model.prompt_selection, self._act_selection
            try:
                return super()._advance(observation)
            finally:
                model.prompt_selection = training_selection
        pool = self.pool
        if pool is None:
            return super()._advance(observation)
        if self._act_step < self.config.context:
            state = torch.as_tensor(np.asarray(observation), dtype=torch.float32)
            self._act_states.append(state.to(self.device))
            query = self._query_of(torch.stack(self._act_states)[None], None)
            self._act_selection = self._select(query, self._act_task, training=False)
        selection = self._act_selection
        key = None if selection is None else tuple(int(i) for i in selection[0].tolist())
        held = self._act_step >= self.config.context - 1  # the selection is final
        if self.merge_for_acting and (held or key == self._acting_key or key in self._merged):
            # One plain model with the selected entry folded into its weights: acting costs
            # what the frozen base costs. Preliminary selections (the first context - 1
            # steps, which may change every step) merge only when already merged once.
            model, self.model = self.model, self._acting_model_for(self._act_selection)
            try:
                return super()._advance(observation)
            finally:
                self.model = model
        if self._act_selection is None:
            with pool.disabled():
                return super()._advance(observation)
        with pool.selected(self._act_selection):
            return super()._advance(observation)

    def _acting_model_for(self, selection: Tensor | None) -> DecisionTransformer:
        """The plain acting model with ``selection``'s (1, k) entries merged into its weights
        (None: the bare pretrained weights); merged weights of the last few entries are kept
        until the pool changes."""
        key = None if selection is None else tuple(int(i) for i in selection[0].tolist())
        model = self._acting_model
        if model is None:
            model = DecisionTransformer(self.observation_dim, self.action_dim, self.config)
            base = {k: v for k, v in self.model.state_dict().items()
                    if not k.startswith("modulation_pool.")}  # fmt: skip
            model.load_state_dict(base)
            self._acting_model, self._acting_key = model.to(self.device).eval(), ()
        if key == self._acting_key:
            return model
        weights = self._merged.pop(key, None)
        if weights is None:
            weights = self._merge(key)
        self._merged[key] = weights  # most recently used last
        while len(self._merged) > self.merged_cache:
            self._merged.pop(next(iter(self._merged)))
        for name, (weight, bias) in weights.items():
            linear = model.get_submodule(name)
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
        self._acting_key = key
        return model

    def _merge(self, key: tuple[int, ...] | None) -> dict[str, tuple[Tensor, Tensor | None]]:
        """Weight and bias of every modulated Linear with entries ``key`` folded in: LoRA
        W + (alpha / r) mean_k B_k A_k; (IA)^3 rows (output sites, and the bias) or columns
        (input sites) scaled by the mean of the selected vectors. Same function as the
        per-sample modulation up to float rounding. ``key`` None: the frozen base weights."""
        pool = self.pool
        assert pool is not None
        if self._modulated is None:
            self._modulated = [
                (name, module)
                for name, module in self.model.named_modules()
                if isinstance(module, ModulatedLinear)
            ]
        merged: dict[str, tuple[Tensor, Tensor | None]] = {}
        if key is None:
            for name, module in self._modulated:
                merged[name] = (module.weight, module.bias)
            return merged
        index = torch.tensor(key, device=self.device)
        # One op per site for all layers at once: (layers, out, in) deltas or (layers, width)
        # scales.
        per_site = {}
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
            weight, bias = module.weight.detach(), module.bias
            bias = None if bias is None else bias.detach()
            if pool.config.kind == "lora":
                weight = weight + change
            elif module.scales_input:
                weight = weight * change[None, :]
            else:
                weight = weight * change[:, None]
                bias = None if bias is None else bias * change
            merged[name] = (weight, bias)
        return merged

    def _forget_merged(self) -> None:
        """The pool (or the model) changed: merged acting weights are stale."""
        self._merged.clear()
        self._acting_key = ()

    def _update(self) -> None:
        self._forget_merged()
        super()._update()

    def acting_entry(self) -> int | None:
        """The pool entry the running episode acts with (top-1), None for the bare model."""
        selection = self._act_selection
        return None if selection is None else int(selection[0, 0])

    # -- checkpoints -------------------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        state = super().training_state()
        state["l2m"] = {
            "selection": self._selection,
            "query": self._query,
            "fisher": self._fisher,
            "anchor": self._anchor,
        }
        return state

    def load_training_state(self, state: dict[str, Any]) -> None:
        self._restoring = True  # the batch in progress keeps the entries it was given
        try:
            super().load_training_state(state)
        finally:
            self._restoring = False
        self._selection, self._query = state["l2m"]["selection"], state["l2m"]["query"]
        self._fisher, self._anchor = state["l2m"].get("fisher"), state["l2m"].get("anchor")
        if self.prompts is not None:
            self._prompted().prompt_selection = self._selection
        self._acting_model = None  # rebuilt from the restored weights
        self._forget_merged()
        if self.pool is not None:
            self.pool.active = self._selection


__all__ = [
    "DOMAIN_REWARD_SCALES",
    "MODES",
    "L2MAgent",
    "L2MConfig",
    "PretrainedModel",
    "SpaceMap",
    "fit_positions",
    "layout_episodes",
    "reward_scale_of",
    "scale_episodes",
]
