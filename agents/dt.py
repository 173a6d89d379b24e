"""Decision Transformer with a pluggable long-term memory, trained offline Transformer-XL style.

Reads top to bottom:

1. `DTConfig`: every hyperparameter (they become ``crl train`` options).
2. Action tokens: each action dimension cut into ``action_bins`` bins over [-1, 1] (L2M,
   brief section 3), `tokenize_actions` / `detokenize_actions`.
3. The model, GPT-2 style (pre-LayerNorm): per timestep the tokens [return-to-go, state,
   action] (+ reward with ``reward_tokens``), each embedded linearly plus a learned timestep
   embedding. Every block runs causal self-attention over the recent tokens, then its memory
   layer (``memory/``, one per block), then the MLP. Actions are predicted from the state
   token, so a_t is predicted from rtg_t, s_t and the past only.
4. `DecisionTransformerAgent`: offline training over whole episodes cut into consecutive
   segments, memory and attention cache carried across segments (detached), and online
   acting one step at a time with exactly the computation training used.

Local attention. Token i of step t attends to the tokens before it (in token order) of
steps t-context+1 .. t. Inside a training segment the earlier steps of that window come from
a cache of the previous segment's block inputs (Transformer-XL: the keys and values of
cached tokens are recomputed from those inputs with the current weights, no gradient flows
into them). At acting time the same cache holds the last ``context`` steps, so training and
acting compute the same function of the episode whatever the segment length: every action
always sees a full window of ``context`` steps, and anything older only through the memory.

Memory granularity: one memory entry per timestep, not per token. In each block the memory
reads and writes the state token's hidden state (after the block's attention, through its
own LayerNorm), and its read is added to the state token only. Why: that hidden state
already mixes rtg_t, s_t and (through local attention) the recent actions and rewards, and
it never contains a_t, so no read can leak the action being predicted (the LSTM's read of
step t includes step t itself); memory sizes (HCAM ``chunk_size`` and ``capacity``, the
window) count environment steps. Cost against token granularity with K tokens per step
(K = 3, or 4 with rewards): K times fewer stored states and queries, so a full-attention
read over an episode is K^2 times cheaper and HCAM's K times cheaper.

Training unit: one gradient update = one segment of ``context`` steps of ``batch_size``
episodes. A batch of episodes is sampled (the agent's generator), all rows start at step 0
together (shorter episodes are padded at the end, their padding masked out of the loss) and
the batch is consumed segment after segment by successive updates; the next update after
the longest episode ended samples a new batch with fresh memory. Consecutive updates thus
see consecutive phases of the same episodes, as in Transformer-XL language modelling. The
memory never passes gradient into what it stored (``memory/``), so what a later step must
recall has to be kept in the hidden states by the loss of the steps that wrote them; the
LSTM's gradient stops at segment boundaries too.

Random segments (``segment_sampling="random"``, only without memory: L2M's pretraining and
fine-tuning). Consecutive phases of the same episodes make successive updates strongly
correlated (every update of a sweep sees the same few episodes at the same timesteps), which
slows plain imitation down a lot. Here every update draws ``batch_size`` rows anew, each a
random segment of ``context`` steps of a random episode at its own timestep (steps are
weighted equally, the first and last included). The ``layers * (context - 1)`` steps before
the segment, the whole receptive field of its outputs, run first without gradient to fill the
cache, so each output is computed exactly as acting computes it at that step (padding before
an episode's start is masked out of attention, as if the episode started there).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from crlgym.memory import MEMORY_KINDS, MemoryLayer, MemoryState, make_memory
from torch import Tensor, nn
from torch.nn import functional as F

from crlgym.errors import ConfigError

MEMORY_CHOICES: tuple[str, ...] = (*MEMORY_KINDS, "none")
"""Valid `DTConfig.memory` values; ``none`` is a plain Decision Transformer."""

SEGMENT_SAMPLINGS: tuple[str, ...] = ("sequential", "random")
"""Valid `DTConfig.segment_sampling` values."""

# Token kinds, in their order inside a timestep.
RTG, STATE, ACTION, REWARD = 0, 1, 2, 3


@dataclass
class DTConfig:
    """Decision Transformer hyperparameters (defaults: a small model for CPU runs; L2M used
    d_model 768, 6 layers, 12 heads, context 5, reward tokens)."""

    d_model: int = 64
    """Width of the token embeddings and hidden states."""
    layers: int = 2
    """Transformer blocks."""
    heads: int = 4
    """Attention heads of the local self-attention; must divide d_model."""
    context: int = 16
    """Timesteps of local attention (each token sees the tokens of the last ``context``
    steps) and of one training segment."""
    memory: str = "hcam"
    """Memory layer of every block: hcam, window, full, lstm, or none (a plain DT)."""
    memory_options: dict[str, Any] = field(default_factory=dict)
    """Options of the memory layer (its config's fields, e.g. chunk_size, top_k, window);
    sizes count timesteps (one memory entry per step)."""
    action_bins: int = 64
    """Bins per action dimension over [-1, 1], trained with cross-entropy; 0 = a
    continuous tanh head trained with mean squared error."""
    reward_tokens: bool = False
    """Add a reward token after each action ([rtg, state, action, reward], as L2M)."""
    reward_scale: float = 1.0
    """Returns-to-go and rewards are divided by this before embedding (L2M: 200 Meta-World,
    100 DMControl)."""
    learning_rate: float = 1e-4
    """AdamW peak learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay (all parameters, as the original DT)."""
    batch_size: int = 16
    """Rows per batch: episodes, each update training one segment of each (sequential), or
    random segments drawn anew every update (random)."""
    warmup: int = 1000
    """Updates of linear learning-rate warmup, counted from each fresh optimizer."""
    grad_clip: float = 0.25
    """Global gradient-norm clip; 0 disables clipping."""
    target_return: float | None = None
    """Return acted for online (unscaled); None = the highest return in the task's data."""
    dropout: float = 0.0
    """Dropout on embeddings, attention weights and residual branches (training only)."""
    max_timestep: int = 1024
    """Size of the timestep embedding table; later steps share its last row."""
    reset_optimizer: bool = True
    """Fresh AdamW state and warmup at every task start (False: one optimizer throughout)."""
    segment_sampling: str = "sequential"
    """sequential: each batch of episodes is consumed segment by segment in order (needed by
    memory); random: every update draws random segments of random episodes, their earlier
    steps replayed without gradient (memory none only; the module doc)."""

    def __post_init__(self) -> None:
        positive = ("d_model", "layers", "heads", "context", "batch_size", "max_timestep")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"DTConfig.{name} must be a positive int, got {value!r}")
        if self.d_model % self.heads:
            raise ConfigError(f"heads ({self.heads}) must divide d_model ({self.d_model})")
        if self.memory not in MEMORY_CHOICES:
            raise ConfigError(f"unknown memory {self.memory!r}; valid: {', '.join(MEMORY_CHOICES)}")
        if not isinstance(self.memory_options, dict):
            raise ConfigError(f"memory_options must be a dict, got {self.memory_options!r}")
        if self.memory == "none" and self.memory_options:
            raise ConfigError("memory_options given but memory is 'none'")
        if self.memory != "none":
            make_memory(self.memory, self.d_model, **self.memory_options)  # validates them
        if self.action_bins == 1 or self.action_bins < 0:
            raise ConfigError(f"action_bins must be 0 or >= 2, got {self.action_bins}")
        if not self.reward_scale > 0:
            raise ConfigError(f"reward_scale must be positive, got {self.reward_scale}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.weight_decay < 0 or self.warmup < 0 or self.grad_clip < 0:
            raise ConfigError("weight_decay, warmup and grad_clip must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.target_return is not None and not math.isfinite(self.target_return):
            raise ConfigError(f"target_return must be finite or None, got {self.target_return}")
        if self.segment_sampling not in SEGMENT_SAMPLINGS:
            raise ConfigError(
                f"unknown segment_sampling {self.segment_sampling!r}; "
                f"valid: {', '.join(SEGMENT_SAMPLINGS)}"
            )
        if self.segment_sampling == "random" and self.memory != "none":
            raise ConfigError(
                "segment_sampling 'random' needs memory 'none': a memory must read whole "
                "episodes in order (use segment_sampling 'sequential')"
            )

    @property
    def receptive_steps(self) -> int:
        """Steps before a token's own that its final hidden state can depend on through local
        attention (each block reaches ``context - 1`` steps further back)."""
        return self.layers * (self.context - 1)

    @property
    def tokens_per_step(self) -> int:
        """K: 3 tokens per timestep, 4 with reward tokens."""
        return 4 if self.reward_tokens else 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- action tokens ----------------------------------------------------------------------------


def tokenize_actions(actions: Tensor, bins: int) -> Tensor:
    """Bin index (long) of every action value; values are clipped to [-1, 1] first.

    Bin i covers [-1 + i w, -1 + (i+1) w) with w = 2 / bins (the last bin includes 1), so
    `detokenize_actions` returns values within w / 2 of the input.
    """
    scaled = (actions.clamp(-1.0, 1.0) + 1.0) * (bins / 2.0)
    return scaled.floor().long().clamp(0, bins - 1)


def detokenize_actions(tokens: Tensor, bins: int) -> Tensor:
    """Bin centre (float32) of every bin index."""
    return (tokens.float() + 0.5) * (2.0 / bins) - 1.0


# --- the model -------------------------------------------------------------------------------


@dataclass
class Context:
    """What the model carries from one call to the next within a batch of episodes."""

    caches: list[Tensor]
    """Per block, (B, N, d) the block inputs of the cached tokens (detached)."""
    positions: Tensor
    """(N,) token index of each cached token in its episode (step * K + kind)."""
    steps: Tensor
    """(N,) timestep of each cached token."""
    memories: list[MemoryState | None]
    """Per block, the memory layer's state (None without memory)."""
    valid: Tensor | None = None
    """(B, N) False on cached padding tokens (random segments before an episode's start),
    which no real token attends to; None: every cached token is real."""

    def detach(self) -> Context:
        return Context(
            caches=[cache.detach() for cache in self.caches],
            positions=self.positions,
            steps=self.steps,
            memories=[None if state is None else state.detach() for state in self.memories],
            valid=self.valid,
        )

    def to_dict(self) -> dict[str, Any]:
        """Tensors and ints only (for ``torch.load(weights_only=True)``)."""
        return {
            "caches": list(self.caches),
            "positions": self.positions,
            "steps": self.steps,
            "memories": [None if state is None else state.to_dict() for state in self.memories],
            "valid": self.valid,
        }


class CausalSelfAttention(nn.Module):
    """Multi-head attention of new tokens over cached plus new tokens, under a given mask.

    ``q``, ``k``, ``v``, ``out`` are plain ``nn.Linear`` so that modulators (LoRA, (IA)^3)
    can wrap them.
    """

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, queries: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        """queries (B, Nq, d), keys (B, Nk, d) (already normalized), mask (Nq, Nk) bool."""

        def split(x: Tensor) -> Tensor:
            return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, H, N, d/H)

        out = F.scaled_dot_product_attention(
            split(self.q(queries)),
            split(self.k(keys)),
            split(self.v(keys)),
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(out.transpose(1, 2).flatten(-2))


class MLP(nn.Module):
    """GPT-2's position-wise MLP (``fc``, GELU, ``proj``)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.proj = nn.Linear(4 * d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """Pre-LayerNorm block: local causal attention, memory read (state tokens), MLP."""

    def __init__(self, config: DTConfig) -> None:
        super().__init__()
        d = config.d_model
        self.ln_attn = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, config.heads, config.dropout)
        self.memory: MemoryLayer | None = None
        if config.memory != "none":
            self.ln_memory = nn.LayerNorm(d)
            self.memory = make_memory(config.memory, d, **config.memory_options)
        self.ln_mlp = nn.LayerNorm(d)
        self.mlp = MLP(d)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        cache: Tensor,
        mask: Tensor,
        state_index: Tensor,
        memory_state: MemoryState | None,
        episode_start: Tensor | None,
    ) -> tuple[Tensor, MemoryState | None]:
        """x (B, N, d) new tokens; cache (B, Nc, d) earlier block inputs; mask (N, Nc + N)."""
        normalized = self.ln_attn(torch.cat([cache, x], dim=1))
        x = x + self.drop(self.attn(normalized[:, cache.shape[1] :], normalized, mask))
        if self.memory is not None:
            assert memory_state is not None
            hidden = self.ln_memory(x[:, state_index])
            read, memory_state = self.memory(hidden, memory_state, episode_start)
            x = x.index_add(1, state_index, self.drop(read))
        x = x + self.drop(self.mlp(self.ln_mlp(x)))
        return x, memory_state


class DecisionTransformer(nn.Module):
    """The sequence model: embeddings, blocks, and the action head on state tokens.

    Every row of a batch is at the same step of its own episode (rows start together), so
    token positions and the attention mask are shared by the batch.
    """

    def __init__(self, observation_dim: int, action_dim: int, config: DTConfig) -> None:
        super().__init__()
        self.config, self.action_dim = config, action_dim
        d = config.d_model
        self.embed_return = nn.Linear(1, d)
        self.embed_state = nn.Linear(observation_dim, d)
        self.embed_action = nn.Linear(action_dim, d)
        self.embed_reward = nn.Linear(1, d) if config.reward_tokens else None
        self.embed_timestep = nn.Embedding(config.max_timestep, d)
        self.ln_embed = nn.LayerNorm(d)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln_out = nn.LayerNorm(d)
        outputs = action_dim * config.action_bins if config.action_bins else action_dim
        self.head = nn.Linear(d, outputs)
        # PyTorch's default N(0, 1) rows would drown the state embedding (entries of order
        # 1/sqrt(observation_dim)) in the timestep signal. The other layers keep PyTorch's
        # defaults: with GPT-2's N(0, 0.02) everywhere, Adam's first steps shrink whatever
        # the loss does not need yet, and what memory stores gets no gradient (stop-gradient)
        # to bring it back, so a cue to be recalled later fades from the stored states.
        nn.init.normal_(self.embed_timestep.weight, std=0.02)

    def initial_context(self, batch_size: int, device: torch.device | str) -> Context:
        """Nothing cached, empty memories: the context at the start of a batch of episodes."""
        d = self.config.d_model
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return Context(
            caches=[torch.zeros(batch_size, 0, d, device=device) for _ in self.blocks],
            positions=empty,
            steps=empty.clone(),
            memories=[
                None if block.memory is None else block.memory.initial_state(batch_size, device)
                for block in self.blocks
            ],
        )

    def context_from_dict(self, values: dict[str, Any], device: torch.device | str) -> Context:
        """The `Context` that ``Context.to_dict`` produced."""
        memories: list[MemoryState | None] = []
        for block, state in zip(self.blocks, values["memories"], strict=True):
            if block.memory is None:
                memories.append(None)
            else:
                kind = type(block.memory.initial_state(1, device))
                memories.append(kind.from_dict(state).to(device))
        return Context(
            caches=[cache.to(device) for cache in values["caches"]],
            positions=values["positions"].to(device),
            steps=values["steps"].to(device),
            memories=memories,
            valid=None if values.get("valid") is None else values["valid"].to(device),
        )

    def embed(self, kind: int, values: Tensor, steps: Tensor) -> Tensor:
        """(B, n, d) tokens of one kind: values (B, n, width) at timesteps ``steps`` (n,), or
        (B, n) when rows are at different timesteps."""
        modules = {RTG: self.embed_return, STATE: self.embed_state, ACTION: self.embed_action}
        module = self.embed_reward if kind == REWARD else modules[kind]
        assert module is not None
        position = self.embed_timestep(steps.clamp(max=self.config.max_timestep - 1))
        return module(values) + position

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
        """Process new embedded tokens after ``context``.

        Args:
            tokens: (B, N, d) embedded tokens, in token order, following the context's.
            steps, positions: (N,) their timesteps and token indices (step * K + kind); only
                their differences matter, so rows at different timesteps can share them.
            state_index: (S,) which of the N tokens are state tokens (memory and outputs).
            context: what earlier calls left.
            episode_start: (B, S) bool for the memory layers, True at an episode's first step.
            valid: (B, N) False on padding tokens, which real tokens never attend to (None:
                all real).

        Returns:
            (head outputs at the state tokens (B, S, outputs), the new context).
        """
        key_steps = torch.cat([context.steps, steps])
        key_positions = torch.cat([context.positions, positions])
        mask = (key_positions[None, :] <= positions[:, None]) & (
            key_steps[None, :] > steps[:, None] - self.config.context
        )
        key_valid = None
        if valid is not None or context.valid is not None:
            rows, old = tokens.shape[0], context.positions.shape[0]
            ones = torch.ones(rows, max(old, tokens.shape[1]), dtype=torch.bool, device=mask.device)
            cached = ones[:, :old] if context.valid is None else context.valid
            new = ones[:, : tokens.shape[1]] if valid is None else valid
            key_valid = torch.cat([cached, new], dim=1)
            # Padding queries may look at anything their mask allows (their outputs are never
            # used), so that no row of the mask is empty.
            mask = (mask[None] & (key_valid[:, None, :] | ~new[:, :, None]))[:, None]
        # The next call's earliest token (the action of the last step here) looks back
        # `context` steps from the last step: older tokens are never needed again.
        keep = key_steps > steps[-1] - self.config.context
        x = self.drop(self.ln_embed(tokens))
        caches, memories = [], []
        for block, cache, state in zip(self.blocks, context.caches, context.memories, strict=True):
            caches.append(torch.cat([cache, x.detach()], dim=1)[:, keep])
            x, state = block(x, cache, mask, state_index, state, episode_start)
            memories.append(state)
        outputs = self.head(self.ln_out(x[:, state_index]))
        new_context = Context(
            caches,
            key_positions[keep],
            key_steps[keep],
            memories,
            None if key_valid is None else key_valid[:, keep],
        )
        return outputs, new_context

    def segment(
        self,
        returns_to_go: Tensor,
        states: Tensor,
        actions: Tensor,
        rewards: Tensor,
        start: int,
        context: Context,
        timesteps: Tensor | None = None,
        valid: Tensor | None = None,
    ) -> tuple[Tensor, Context]:
        """Head outputs for T consecutive steps start .. start+T-1 of B episodes.

        Args:
            returns_to_go, rewards: (B, T) already divided by ``reward_scale``.
            states: (B, T, observation_dim); actions: (B, T, action_dim) in [-1, 1].
            start: the timestep of the first step (0 = the episodes start here).
            context: what the previous segment left (`initial_context` at start 0).
            timesteps: (B, T) each row's own timesteps for the timestep embedding, when rows
                are at different points of their episodes (``start`` then only orders the
                tokens; no memory); None: ``start`` ..
            valid: (B, T) False on padding steps (see `run`); None: all real.

        Returns:
            (outputs (B, T, outputs) at the state tokens, the new context).
        """
        batch, length = returns_to_go.shape
        k = self.config.tokens_per_step
        steps = torch.arange(start, start + length, device=states.device)
        embedded_steps = steps if timesteps is None else timesteps
        tokens = [
            self.embed(RTG, returns_to_go[..., None], embedded_steps),
            self.embed(STATE, states, embedded_steps),
            self.embed(ACTION, actions, embedded_steps),
        ]
        if self.config.reward_tokens:
            tokens.append(self.embed(REWARD, rewards[..., None], embedded_steps))
        stacked = torch.stack(tokens, dim=2).flatten(1, 2)  # (B, T*K, d), step-major
        token_steps = steps.repeat_interleave(k)
        positions = token_steps * k + torch.arange(k, device=states.device).repeat(length)
        state_index = torch.arange(length, device=states.device) * k + STATE
        episode_start = None
        if start == 0 and timesteps is None:
            episode_start = torch.zeros(batch, length, dtype=torch.bool, device=states.device)
            episode_start[:, 0] = True
        token_valid = None if valid is None else valid.repeat_interleave(k, dim=1)
        return self.run(
            stacked, token_steps, positions, state_index, context, episode_start, token_valid
        )


# --- the agent -------------------------------------------------------------------------------


@dataclass
class _TaskData:
    """One task's episodes as tensors (states are the T observations acted on)."""

    states: list[Tensor]
    actions: list[Tensor]
    rewards: list[Tensor]
    returns_to_go: list[Tensor]


@dataclass
class _Batch:
    """A padded batch of whole episodes, consumed one segment per update."""

    episodes: Tensor  # (B,) indices into the task's episode list
    states: Tensor  # (B, L, obs)
    actions: Tensor  # (B, L, act)
    rewards: Tensor  # (B, L) scaled
    returns_to_go: Tensor  # (B, L) scaled
    valid: Tensor  # (B, L) bool, False on padding
    next_start: int = 0
    context: Context | None = None
    timesteps: Tensor | None = None  # (B, L) each row's own steps (random segments only)


class DecisionTransformerAgent:
    """An offline-trained, online-acting Decision Transformer for continual runs.

    Args:
        observation_dim, action_dim: sizes of observations and actions (every task's).
        num_tasks: tasks of the run (indices 0 .. num_tasks-1).
        config: hyperparameters.
        episodes_of: task index -> that task's offline episodes, dicts as
            `crlgym.memory.datasets.load_episodes` returns (``observations`` (T+1, obs),
            ``actions`` (T, act), ``rewards`` (T,), optionally ``returns_to_go`` (T,)).
            Called at a task's start, on a restore, and once per task to find the acting
            target return when ``config.target_return`` is None.
        seed: seeds the weights and the agent's two generators (batch sampling; sampled
            actions), so runs are reproducible and evaluation never shifts training.
        device: torch device.

    Acting contract (the runner's evaluation loop already follows it):
    ``start_episode(task)``, then per step ``action = act(observation, deterministic)``,
    ``env.step(action)``, ``observe_reward(reward)``. `act` refuses to run before the
    previous step's reward was observed, since every later return-to-go depends on it.
    """

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        num_tasks: int,
        config: DTConfig,
        episodes_of: Callable[[int], list[dict]],
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        for name, value in (("observation_dim", observation_dim), ("action_dim", action_dim)):
            if value < 1:
                raise ConfigError(f"{name} must be positive, got {value}")
        if num_tasks < 1:
            raise ConfigError(f"num_tasks must be positive, got {num_tasks}")
        self.observation_dim, self.action_dim, self.num_tasks = (
            observation_dim,
            action_dim,
            num_tasks,
        )
        self.config, self.episodes_of, self.device = config, episodes_of, torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = DecisionTransformer(observation_dim, action_dim, config).to(self.device)
        self.optimizer = self._fresh_optimizer()
        self._train_generator = torch.Generator().manual_seed(seed)
        self._act_generator = torch.Generator().manual_seed(seed + 1)
        self.logger: Any = None
        self.num_timesteps = 0
        """Gradient updates done so far (the run's step axis)."""
        self.current_task: int | None = None
        self._optimizer_updates = 0  # drives the warmup
        self._data: _TaskData | None = None
        self._batch: _Batch | None = None
        self._target_returns: dict[int, float] = {}
        # Acting state of the running episode.
        self._acting: Context | None = None
        self._act_task = 0
        self._act_step = 0
        self._return_to_go = 0.0
        self._last_action: Tensor | None = None
        self._last_reward: float | None = None

    # -- bookkeeping --------------------------------------------------------------------------
    def set_logger(self, logger: Any) -> None:
        """Record ``train/*`` values to this stable-baselines3 ``Logger`` (the runner dumps)."""
        self.logger = logger

    def parameter_count(self) -> int:
        """Trainable parameters of the model."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def _fresh_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.model.parameters(),
            lr=self.config.learning_rate,
            weight_decay=self.config.weight_decay,
        )

    def _check_task(self, task_index: int) -> None:
        if not 0 <= task_index < self.num_tasks:
            raise ValueError(f"task index {task_index} outside 0..{self.num_tasks - 1}")

    def _load_task(self, task_index: int) -> _TaskData:
        episodes = self.episodes_of(task_index)
        if not episodes:
            raise ValueError(f"task {task_index} has no offline episodes")
        data = _TaskData([], [], [], [])
        scale = self.config.reward_scale
        for number, episode in enumerate(episodes):
            actions = torch.as_tensor(np.asarray(episode["actions"]), dtype=torch.float32)
            steps = actions.shape[0]
            states = torch.as_tensor(np.asarray(episode["observations"]), dtype=torch.float32)
            if states.shape[1:] != (self.observation_dim,) or actions.shape[1:] != (
                self.action_dim,
            ):
                raise ValueError(
                    f"task {task_index} episode {number}: observations {tuple(states.shape)} "
                    f"and actions {tuple(actions.shape)} do not match observation_dim "
                    f"{self.observation_dim} and action_dim {self.action_dim}"
                )
            if self.config.action_bins:
                # Acting feeds back bin centres, so training feeds them too (same bins).
                actions = detokenize_actions(
                    tokenize_actions(actions, self.config.action_bins), self.config.action_bins
                )
            rewards = torch.as_tensor(np.asarray(episode["rewards"]), dtype=torch.float64)
            rtg = episode.get("returns_to_go")
            rtg = rewards.flip(0).cumsum(0).flip(0) if rtg is None else torch.as_tensor(rtg)
            data.states.append(states[:steps])
            data.actions.append(actions)
            data.rewards.append((rewards / scale).float())
            data.returns_to_go.append((rtg.double() / scale).float())
        self._target_returns.setdefault(
            task_index, max(float(np.sum(episode["rewards"])) for episode in episodes)
        )
        return data

    def target_return(self, task_index: int) -> float:
        """The (unscaled) return acted for on ``task_index``."""
        if self.config.target_return is not None:
            return float(self.config.target_return)
        if task_index not in self._target_returns:
            episodes = self.episodes_of(task_index)
            if not episodes:
                raise ValueError(f"task {task_index} has no offline episodes")
            self._target_returns[task_index] = max(float(np.sum(e["rewards"])) for e in episodes)
        return self._target_returns[task_index]

    # -- continual hooks ----------------------------------------------------------------------
    def on_task_start(self, task_index: int, budget: int | None = None) -> None:
        """Train on ``task_index``'s episodes from now on.

        ``budget`` (updates the task will get) is accepted for interface parity with SAC and
        not needed: the warmup is fixed in updates.
        """
        del budget
        self._check_task(task_index)
        self.current_task = task_index
        self._data = self._load_task(task_index)
        self._batch = None
        if self.config.reset_optimizer:
            self.optimizer = self._fresh_optimizer()
            self._optimizer_updates = 0

    def on_task_end(self, task_index: int) -> None:
        """Drop the task's batch and episodes (the data of one task can be large)."""
        del task_index
        self._batch, self._data = None, None

    # -- training -----------------------------------------------------------------------------
    def learn_updates(self, updates: int, callback: Callable[[int], None] | None = None) -> None:
        """Do ``updates`` gradient updates on the current task; ``callback(num_timesteps)``
        after each (the runner evaluates and checkpoints from it)."""
        if self.current_task is None:
            raise RuntimeError("call on_task_start before learn_updates")
        for _ in range(updates):
            self._update()
            if callback is not None:
                callback(self.num_timesteps)

    def _sample_batch(self, episodes: Tensor | None = None) -> _Batch:
        if self.config.segment_sampling == "random":
            return self._sample_segments()
        data = self._data
        assert data is not None
        count = len(data.states)
        if episodes is None:
            size = self.config.batch_size
            episodes = (
                torch.randperm(count, generator=self._train_generator)[:size]
                if count >= size
                else torch.randint(count, (size,), generator=self._train_generator)
            )
        lengths = [data.actions[i].shape[0] for i in episodes.tolist()]
        batch, length = len(lengths), max(lengths)

        def pad(parts: list[Tensor]) -> Tensor:
            out = parts[0].new_zeros((batch, length, *parts[0].shape[1:]))
            for row, part in enumerate(parts):
                out[row, : part.shape[0]] = part
            return out.to(self.device)

        rows = episodes.tolist()
        valid = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]
        return _Batch(
            episodes=episodes,
            states=pad([data.states[i] for i in rows]),
            actions=pad([data.actions[i] for i in rows]),
            rewards=pad([data.rewards[i] for i in rows]),
            returns_to_go=pad([data.returns_to_go[i] for i in rows]),
            valid=valid.to(self.device),
        )

    def _sample_segments(self) -> _Batch:
        """``batch_size`` random segments (``segment_sampling="random"``): per row a random
        episode (with replacement) and a segment start s uniform over -(context-1) ..
        length-1, so that every step lies in exactly ``context`` possible segments; the rows
        hold steps s - receptive_steps .. s + context - 1, padded (and zeroed) outside the
        episode."""
        data, config = self._data, self.config
        assert data is not None
        size, context = config.batch_size, config.context
        rows = torch.randint(len(data.states), (size,), generator=self._train_generator)
        lengths = torch.tensor([data.actions[i].shape[0] for i in rows.tolist()])
        draws = torch.rand(size, generator=self._train_generator, dtype=torch.float64)
        starts = (draws * (lengths + context - 1)).long() - (context - 1)
        span = config.receptive_steps + context
        timesteps = starts[:, None] - config.receptive_steps + torch.arange(span)[None, :]
        valid = (timesteps >= 0) & (timesteps < lengths[:, None])
        index = torch.minimum(timesteps.clamp(min=0), lengths[:, None] - 1)

        def gather(parts: list[Tensor]) -> Tensor:
            picked = torch.stack([parts[i][index[row]] for row, i in enumerate(rows.tolist())])
            keep = valid.reshape(*valid.shape, *([1] * (picked.dim() - 2)))
            return (picked * keep.to(picked.dtype)).to(self.device)

        return _Batch(
            episodes=rows,
            states=gather(data.states),
            actions=gather(data.actions),
            rewards=gather(data.rewards),
            returns_to_go=gather(data.returns_to_go),
            valid=valid.to(self.device),
            timesteps=timesteps.clamp(min=0).to(self.device),
        )

    def _episode_openings(self, batch: _Batch) -> tuple[Tensor, Tensor]:
        """(B, context, observation_dim) states of the first ``context`` steps of each row's
        episode and their (B, context) validity (L2M selects pool entries from them)."""
        first = slice(0, self.config.context)
        if batch.timesteps is None:  # sequential batches start at every episode's step 0
            return batch.states[:, first], batch.valid[:, first]
        data = self._data
        assert data is not None
        states = torch.zeros(len(batch.episodes), self.config.context, self.observation_dim)
        valid = torch.zeros(len(batch.episodes), self.config.context, dtype=torch.bool)
        for row, episode in enumerate(batch.episodes.tolist()):
            opening = data.states[episode][first]
            states[row, : len(opening)] = opening
            valid[row, : len(opening)] = True
        return states.to(self.device), valid.to(self.device)

    def _segment_outputs(self, batch: _Batch) -> tuple[Tensor, Tensor, Tensor]:
        """Head outputs of a random-segment batch's last ``context`` steps, their actions and
        validity; the steps before run first, without gradient, to fill the cache."""
        before = self.config.receptive_steps
        context = self.model.initial_context(batch.valid.shape[0], self.device)
        self.model.train()
        if before:
            prefix = slice(0, before)
            with torch.no_grad():
                _, context = self.model.segment(
                    batch.returns_to_go[:, prefix], batch.states[:, prefix],
                    batch.actions[:, prefix], batch.rewards[:, prefix], 0, context,
                    timesteps=batch.timesteps[:, prefix], valid=batch.valid[:, prefix],
                )  # fmt: skip
        window = slice(before, None)
        outputs, _ = self.model.segment(
            batch.returns_to_go[:, window], batch.states[:, window], batch.actions[:, window],
            batch.rewards[:, window], before, context,
            timesteps=batch.timesteps[:, window], valid=batch.valid[:, window],
        )  # fmt: skip
        return outputs, batch.actions[:, window], batch.valid[:, window]

    def _update(self) -> None:
        if self._data is None:
            assert self.current_task is not None
            self._data = self._load_task(self.current_task)
        config = self.config
        if config.segment_sampling == "random":
            self._batch = None  # nothing carries over from one update to the next
            outputs, actions, valid = self._segment_outputs(self._sample_batch())
            loss, accuracy = self._loss(outputs, actions, valid)
            context = None
        else:
            if self._batch is None or self._batch.next_start >= self._batch.valid.shape[1]:
                self._batch = self._sample_batch()
            batch = self._batch
            start = batch.next_start
            window = slice(start, start + config.context)
            if batch.context is None:
                batch.context = self.model.initial_context(batch.valid.shape[0], self.device)
            self.model.train()
            outputs, context = self.model.segment(
                batch.returns_to_go[:, window],
                batch.states[:, window],
                batch.actions[:, window],
                batch.rewards[:, window],
                start,
                batch.context,
            )
            loss, accuracy = self._loss(outputs, batch.actions[:, window], batch.valid[:, window])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parameters = list(self.model.parameters())
        if config.grad_clip > 0:
            grad_norm = float(nn.utils.clip_grad_norm_(parameters, config.grad_clip))
        else:
            grads = [p.grad.norm() for p in parameters if p.grad is not None]
            grad_norm = float(torch.stack(grads).norm())
        learning_rate = config.learning_rate * min(
            1.0, (self._optimizer_updates + 1) / max(1, config.warmup)
        )
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        self.optimizer.step()
        self._optimizer_updates += 1
        self.num_timesteps += 1
        if context is not None and self._batch is not None:
            self._batch.context = context.detach()
            self._batch.next_start += config.context
        if self.logger is not None:
            self.logger.record_mean("train/loss", float(loss.detach()))
            if accuracy is not None:
                self.logger.record_mean("train/action_accuracy", accuracy)
            self.logger.record_mean("train/grad_norm", grad_norm)
            self.logger.record("train/learning_rate", learning_rate)
            self.logger.record("train/active_task", self.current_task)
            self.logger.record("train/n_updates", self.num_timesteps, exclude="tensorboard")

    def _loss(self, outputs: Tensor, actions: Tensor, valid: Tensor) -> tuple[Tensor, float | None]:
        """Masked mean loss over every valid action dimension, and the bin accuracy."""
        weight = valid.to(outputs.dtype)[..., None].expand_as(actions)
        total = weight.sum().clamp(min=1.0)
        bins = self.config.action_bins
        if not bins:
            error = (torch.tanh(outputs) - actions).square()
            return (error * weight).sum() / total, None
        logits = outputs.unflatten(-1, (self.action_dim, bins))
        targets = tokenize_actions(actions, bins)
        loss = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction="none")
        hits = (logits.argmax(-1) == targets).to(weight.dtype)
        accuracy = float((hits * weight).sum() / total)
        return (loss * weight.flatten()).sum() / total, accuracy

    # -- acting -------------------------------------------------------------------------------
    def start_episode(self, task_index: int) -> None:
        """Forget the running episode; the next `act` is the first step of ``task_index``."""
        self._check_task(task_index)
        self._act_task = task_index
        self._acting = self.model.initial_context(1, self.device)
        self._act_step = 0
        self._return_to_go = self.target_return(task_index)
        self._last_action, self._last_reward = None, None

    def act(self, observation: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """The action for ``observation``, the next step of the running episode.

        Deterministic: the centre of each dimension's most likely bin (or the continuous
        head's output). Stochastic: bins sampled from the softmax (the continuous head has no
        distribution and acts the same both ways).
        """
        outputs = self._advance(observation)
        bins = self.config.action_bins
        if not bins:
            action = torch.tanh(outputs)
        else:
            logits = outputs.unflatten(-1, (self.action_dim, bins))
            if deterministic:
                tokens = logits.argmax(-1)
            else:
                probabilities = torch.softmax(logits.double(), -1).cpu()
                tokens = torch.multinomial(probabilities, 1, generator=self._act_generator)
                tokens = tokens[:, 0].to(self.device)
            action = detokenize_actions(tokens, bins)
        self._last_action = action
        return action.cpu().numpy().astype(np.float32)

    __call__ = act

    def observe_reward(self, reward: float) -> None:
        """The reward the last `act`'s action earned (call once after every step)."""
        if self._last_action is None or self._last_reward is not None:
            raise RuntimeError("observe_reward must follow an act call, once per step")
        self._last_reward = float(reward)
        self._return_to_go -= self._last_reward

    def replay(self, observation: np.ndarray, action: np.ndarray, reward: float) -> Tensor:
        """A teacher-forced step: the head outputs `act` would compute for ``observation``,
        then ``action`` and ``reward`` recorded as if taken (``action`` is quantized to bin
        centres, as training quantizes recorded actions).

        Returns:
            (action_dim * action_bins,) logits, or (action_dim,) pre-tanh outputs.
        """
        outputs = self._advance(observation)
        taken = torch.as_tensor(np.asarray(action), dtype=torch.float32, device=self.device)
        bins = self.config.action_bins
        self._last_action = (
            detokenize_actions(tokenize_actions(taken, bins), bins) if bins else taken
        )
        self.observe_reward(reward)
        return outputs

    @torch.no_grad()
    def _advance(self, observation: np.ndarray) -> Tensor:
        """Feed the last step's action (and reward) and this step's rtg and state; returns
        the head outputs (action_dim * bins,) for this step."""
        if self._acting is None:
            raise RuntimeError("call start_episode before act")
        t, k, model = self._act_step, self.config.tokens_per_step, self.model
        if t > 0 and self._last_reward is None:
            raise RuntimeError("observe_reward(reward) of the previous step is missing")
        state = torch.as_tensor(np.asarray(observation), dtype=torch.float32, device=self.device)
        if state.shape != (self.observation_dim,):
            raise ValueError(
                f"observation has shape {tuple(state.shape)}, expected ({self.observation_dim},)"
            )
        model.eval()
        scale = self.config.reward_scale
        here = torch.tensor([t], device=self.device)
        rtg = torch.full((1, 1, 1), self._return_to_go / scale, device=self.device)
        tokens = [
            model.embed(RTG, rtg, here),
            model.embed(STATE, state[None, None], here),
        ]
        positions = [t * k + RTG, t * k + STATE]
        steps = [t, t]
        if t > 0:
            assert self._last_action is not None and self._last_reward is not None
            before = here - 1
            previous = [model.embed(ACTION, self._last_action[None, None], before)]
            positions[:0] = [(t - 1) * k + ACTION]
            if self.config.reward_tokens:
                reward = torch.full((1, 1, 1), self._last_reward / scale, device=here.device)
                previous.append(model.embed(REWARD, reward, before))
                positions[1:1] = [(t - 1) * k + REWARD]
            tokens[:0] = previous
            steps[:0] = [t - 1] * len(previous)
        index = torch.tensor([len(tokens) - 1], device=self.device)
        outputs, self._acting = model.run(
            torch.cat(tokens, dim=1),
            torch.tensor(steps, device=self.device),
            torch.tensor(positions, device=self.device),
            index,
            self._acting,
            torch.tensor([[t == 0]], device=self.device),
        )
        self._act_step = t + 1
        self._last_action, self._last_reward = None, None
        return outputs[0, 0]

    # -- checkpoints --------------------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        """Everything a resumed run needs (tensors and plain values; weights_only-loadable).

        The batch in progress is kept (its episode indices, position and context), so the
        next update after a restore is the one that would have come. A running acting
        episode is not kept. With dropout > 0 the global torch RNG (the runner saves it)
        also matters.
        """
        batch = None
        if self._batch is not None:
            batch = {
                "episodes": self._batch.episodes.clone(),
                "next_start": self._batch.next_start,
                "context": None if self._batch.context is None else self._batch.context.to_dict(),
            }
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_generator": self._train_generator.get_state(),
            "act_generator": self._act_generator.get_state(),
            "num_timesteps": self.num_timesteps,
            "optimizer_updates": self._optimizer_updates,
            "current_task": self.current_task,
            "target_returns": dict(self._target_returns),
            "batch": batch,
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore `training_state` (same config and dimensions)."""
        self.model.load_state_dict(state["model"])
        self.optimizer = self._fresh_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self._train_generator.set_state(state["train_generator"])
        self._act_generator.set_state(state["act_generator"])
        self.num_timesteps = int(state["num_timesteps"])
        self._optimizer_updates = int(state["optimizer_updates"])
        self.current_task = state["current_task"]
        self._target_returns = {int(k): float(v) for k, v in state["target_returns"].items()}
        self._data, self._batch, self._acting = None, None, None
        if self.current_task is not None:
            self._data = self._load_task(self.current_task)
        if state["batch"] is not None:
            self._batch = self._sample_batch(state["batch"]["episodes"])
            self._batch.next_start = int(state["batch"]["next_start"])
            if state["batch"]["context"] is not None:
                self._batch.context = self.model.context_from_dict(
                    state["batch"]["context"], self.device
                )
