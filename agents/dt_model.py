"""The Decision Transformer's model: hyperparameters, action tokens and the sequence model
with a pluggable long-term memory (agents/dt.py trains it offline and acts with it).

Reads top to bottom:

1. `DTConfig`: every hyperparameter (they become ``crl train`` options).
2. Action tokens: each action dimension cut into ``action_bins`` bins over [-1, 1] (L2M,
   brief section 3), `tokenize_actions` / `detokenize_actions`.
3. The model, GPT-2 style (pre-LayerNorm): per timestep the tokens [return-to-go, state,
   action] (+ reward with ``reward_tokens``), each embedded linearly plus a learned timestep
   embedding. Every block runs causal self-attention over the recent tokens, then its memory
   layer (``memory/``, one per block), then the MLP. Actions are predicted from the state
   token, so a_t is predicted from rtg_t, s_t and the past only.

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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from crlgym.errors import ConfigError
from crlgym.memory import MEMORY_KINDS, MemoryLayer, MemoryState, make_memory

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
        self.memory: MemoryLayer[Any] | None = None
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

    @property
    def typed_blocks(self) -> list[Block]:
        """``blocks`` as the `Block` list it is (``nn.ModuleList`` items are plain Modules)."""
        return cast("list[Block]", list(self.blocks))

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
                for block in self.typed_blocks
            ],
        )

    def context_from_dict(self, values: dict[str, Any], device: torch.device | str) -> Context:
        """The `Context` that ``Context.to_dict`` produced."""
        memories: list[MemoryState | None] = []
        for block, state in zip(self.typed_blocks, values["memories"], strict=True):
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


__all__ = [
    "ACTION",
    "MEMORY_CHOICES",
    "MLP",
    "REWARD",
    "RTG",
    "SEGMENT_SAMPLINGS",
    "STATE",
    "Block",
    "CausalSelfAttention",
    "Context",
    "DTConfig",
    "DecisionTransformer",
    "detokenize_actions",
    "tokenize_actions",
]
