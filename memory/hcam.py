"""Hierarchical Chunk Attention Memory (Lampinen et al., NeurIPS 2021).

Past hidden states are cut into chunks of C steps, each stored with a summary (the mean of
its states). A query first scores every stored chunk by its summary, keeps the top k, and
attends in detail only inside those: a read touches M summaries and k*C states instead of
all M*C states (brief section 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from crlgym.errors import ConfigError
from crlgym.memory.attention import MultiHeadReadout, masked_softmax, sinusoidal_positions
from crlgym.memory.base import (
    MemoryLayer,
    MemoryState,
    check_bool,
    check_positive_int,
    segment_episodes,
)

POSITIONS = ("learned", "sinusoidal", "none")


@dataclass
class HCAMConfig:
    """Settings of `HCAMMemory`."""

    chunk_size: int = 16
    """Steps per chunk (C): the accumulated steps are closed into a stored chunk every C
    steps."""
    top_k: int = 4
    """Chunks a query attends to in detail (k); all of them when fewer are readable."""
    capacity: int = 64
    """Stored chunks kept (M); closing one more evicts the oldest. 64 x 16 = 1024 steps."""
    heads: int = 4
    """Attention heads of the within-chunk read; must divide d_model."""
    position: Literal["learned", "sinusoidal", "none"] = "learned"
    """Within-chunk positional encoding added to a chunk's states before the key and value
    projections (the query is not encoded): a learned (C, d) table (init N(0, 0.02)),
    fixed sine/cosine, or none."""
    mask_episodes: bool = True
    """No step reads anything stored before the start of its own episode."""

    def __post_init__(self) -> None:
        for name in ("chunk_size", "top_k", "capacity", "heads"):
            check_positive_int("HCAMConfig", name, getattr(self, name))
        check_bool("HCAMConfig", "mask_episodes", self.mask_episodes)
        if self.position not in POSITIONS:
            raise ConfigError(
                f"HCAMConfig.position must be one of {', '.join(POSITIONS)}, got {self.position!r}"
            )


@dataclass
class HCAMState(MemoryState):
    """Stored chunks (a ring buffer of M slots), their summaries, and the open chunk.

    Chunk g holds global steps [g*C, (g+1)*C); every stream of the batch advances by the
    same T steps per call, so chunk boundaries and slot indices are shared by the batch.
    """

    chunks: Tensor
    """(B, M, C, d) raw hidden states of the stored chunks (slot order, not age order)."""
    chunk_episodes: Tensor
    """(B, M, C) episode id of each stored step."""
    summaries: Tensor
    """(B, M, d) each chunk's summary: the mean of its states (with mask_episodes, of its
    states in the episode of its last step, the only ones a later query may read)."""
    chunk_index: Tensor
    """(M,) global index g of the chunk in each slot, -1 for an empty slot."""
    pending: Tensor
    """(B, C, d) the open chunk: its first ``step % C`` rows are filled."""
    pending_episodes: Tensor
    """(B, C) episode ids of the open chunk's steps."""
    episode: Tensor
    """(B,) episode id of the last written step."""
    step: int
    """Steps written so far."""


@dataclass
class HCAMReadInfo:
    """A read with which chunks it used, for tests and analysis."""

    read: Tensor
    """(B, T, d) the read added to the residual stream."""
    chunks: Tensor
    """(B, T, k) global index g of each selected chunk, -1 where fewer than k were
    readable."""
    weights: Tensor
    """(B, T, k) the chunk weights (softmax over the selected relevances; 0 for -1)."""


class HCAMMemory(MemoryLayer[HCAMState]):
    """Hierarchical Chunk Attention Memory over the block's past hidden states.

    Write: every step's hidden state is accumulated (detached); every C steps the open chunk
    is closed and stored with its summary s_j = mean of its C states, evicting the oldest
    chunk beyond ``capacity``.

    Read for the hidden state h_t of step t:

    1. relevance l_j = (Wq h_t) . (Wk s_j) / sqrt(d) for every readable chunk j;
    2. the top k chunks by relevance, weights w_j = softmax over those k relevances;
    3. inside each selected chunk, multi-head attention of h_t over the chunk's C states
       plus a within-chunk positional encoding: attn_j;
    4. read = Wo (sum_j w_j attn_j) (Wo is linear, so this equals sum_j w_j Wo attn_j).

    Readable chunks for step t are the last ``capacity`` chunks closed before step t,
    including chunks closed earlier in the same segment, so a read does not depend on how
    the episode is cut into segments. The open (not yet closed) chunk is never readable:
    the block's local self-attention covers the recent steps. With ``mask_episodes``, a
    chunk is unreadable (relevance -inf) unless it holds steps of the query's episode, and
    inside a chunk spanning an episode start the other episode's steps are masked. With
    fewer than k readable chunks the read uses those there are; with none it is zero.

    Wq, Wk are the within-chunk attention's query and key projections. Keys and values are
    projections of the stored raw states computed at read time, for the k selected chunks
    only; `FullAttentionMemory` reads its stored raw states the same way.
    """

    def __init__(self, d_model: int, config: HCAMConfig | None = None) -> None:
        config = config or HCAMConfig()
        super().__init__(d_model, config.mask_episodes)
        if d_model % config.heads:
            raise ConfigError(f"heads ({config.heads}) must divide d_model ({d_model})")
        self.config = config
        self.readout = MultiHeadReadout(d_model, config.heads)
        self.position: Tensor | None
        if config.position == "learned":
            self.position = nn.Parameter(0.02 * torch.randn(config.chunk_size, d_model))
        elif config.position == "sinusoidal":
            self.register_buffer(
                "position", sinusoidal_positions(config.chunk_size, d_model), persistent=False
            )
        else:
            self.position = None

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
    ) -> HCAMState:
        """Empty memory; ``dtype`` defaults to the layer's weights'."""
        dtype = dtype or self.readout.query.weight.dtype
        size, capacity, d = self.config.chunk_size, self.config.capacity, self.d_model
        return HCAMState(
            chunks=torch.zeros(batch_size, capacity, size, d, dtype=dtype, device=device),
            chunk_episodes=torch.zeros(batch_size, capacity, size, dtype=torch.long, device=device),
            summaries=torch.zeros(batch_size, capacity, d, dtype=dtype, device=device),
            chunk_index=torch.full((capacity,), -1, dtype=torch.long, device=device),
            pending=torch.zeros(batch_size, size, d, dtype=dtype, device=device),
            pending_episodes=torch.zeros(batch_size, size, dtype=torch.long, device=device),
            episode=torch.zeros(batch_size, dtype=torch.long, device=device),
            step=0,
        )

    def forward(
        self, hidden: Tensor, state: HCAMState, episode_start: Tensor | None = None
    ) -> tuple[Tensor, HCAMState]:
        """Read for the T steps of ``hidden`` (B, T, d), then write them; see the class."""
        return self.read(hidden, state, episode_start), self.write(hidden, state, episode_start)

    def read(self, hidden: Tensor, state: HCAMState, episode_start: Tensor | None = None) -> Tensor:
        """(B, T, d) read for the T steps of ``hidden``, without writing them."""
        return self.inspect(hidden, state, episode_start).read

    def inspect(
        self, hidden: Tensor, state: HCAMState, episode_start: Tensor | None = None
    ) -> HCAMReadInfo:
        """The read plus the chunks it selected and their weights."""
        self._check(hidden, state.episode.shape[0], episode_start)
        batch, steps, _ = hidden.shape
        size, capacity = self.config.chunk_size, self.config.capacity
        episodes = segment_episodes(state.episode, episode_start, steps)

        # Candidates: the stored chunks, then the chunks closed inside this segment before
        # its last step (later steps of the segment may read them).
        chunks, chunk_episodes = state.chunks.to(hidden.dtype), state.chunk_episodes
        summaries, index = state.summaries.to(hidden.dtype), state.chunk_index
        stored = chunks.shape[1]
        new = self._chunks_closed_inside(hidden, state, episodes)
        if new is not None:
            new_chunks, new_episodes, new_summaries, new_index = new
            summaries = torch.cat([summaries, new_summaries], dim=1)
            index = torch.cat([index, new_index])
            last_episode = torch.cat([chunk_episodes[..., -1], new_episodes[..., -1]], dim=1)
        else:
            last_episode = chunk_episodes[..., -1]

        time = state.step + torch.arange(steps, device=hidden.device)
        closed = (time // size)[:, None]  # chunks closed before each step
        readable = (index >= 0) & (index < closed) & (index >= closed - capacity)  # (T, N)
        readable = readable.expand(batch, -1, -1)
        if self.mask_episodes:
            readable = readable & (last_episode[:, None, :] == episodes[:, :, None])

        queries = self.readout.query(hidden)  # (B, T, d)
        # (Wq h) . (Wk s) = (Wk^T Wq h) . s: the summaries are never projected.
        relevance = torch.einsum("btd,bnd->btn", queries @ self.readout.key.weight, summaries)
        relevance = relevance / math.sqrt(self.d_model)
        k = min(self.config.top_k, relevance.shape[-1])
        top, selected = relevance.masked_fill(~readable, torch.finfo(relevance.dtype).min).topk(
            k, dim=-1
        )
        selected_readable = readable.gather(-1, selected)
        weights = masked_softmax(top, selected_readable)  # (B, T, k)

        rows = torch.arange(batch, device=hidden.device)[:, None, None]
        if new is None:
            states, state_episodes = chunks[rows, selected], chunk_episodes[rows, selected]
        else:
            from_stored = selected < stored
            old, fresh = selected.clamp(max=stored - 1), (selected - stored).clamp(min=0)
            states = torch.where(
                from_stored[..., None, None], chunks[rows, old], new_chunks[rows, fresh]
            )
            state_episodes = torch.where(
                from_stored[..., None], chunk_episodes[rows, old], new_episodes[rows, fresh]
            )
        if self.mask_episodes:
            key_visible = state_episodes == episodes[:, :, None, None]
        else:
            key_visible = torch.ones_like(state_episodes, dtype=torch.bool)

        head_queries = self.readout.folded_queries(self.readout.split(queries))  # (B,T,H,d)
        scores = torch.einsum("bthd,btjcd->btjhc", head_queries, states)
        # The encoding enters as q.(x + p) = q.x + q.p and sum a (x + p) = sum a x + sum a p:
        # adding it to the gathered (B, T, k, C, d) states would be one more pass over them.
        if self.position is not None:
            position = self.position.to(hidden.dtype)
            scores = scores + torch.einsum("bthd,cd->bthc", head_queries, position)[:, :, None]
        attention = masked_softmax(
            scores / math.sqrt(self.readout.head_dim), key_visible[:, :, :, None, :]
        )
        pooled = torch.einsum("btjhc,btjcd->btjhd", attention, states)
        if self.position is not None:
            pooled = pooled + torch.einsum("btjhc,cd->btjhd", attention, position)
        mixed = torch.einsum("btj,btjhd->bthd", weights, pooled)
        read = self.readout.output(self.readout.values_of_pooled(mixed))
        chosen = torch.where(selected_readable, index[selected], -1)
        return HCAMReadInfo(read=read, chunks=chosen, weights=weights)

    def write(
        self, hidden: Tensor, state: HCAMState, episode_start: Tensor | None = None
    ) -> HCAMState:
        """The state with the T steps of ``hidden`` written (detached); ``state`` is kept.

        The stored chunk buffer is copied only when a chunk closes, so writing costs
        O(C d) per step amortized over a chunk plus O(M C d) per closed chunk.
        """
        self._check(hidden, state.episode.shape[0], episode_start)
        steps = hidden.shape[1]
        size, capacity = self.config.chunk_size, self.config.capacity
        episodes = segment_episodes(state.episode, episode_start, steps)
        fill = state.step % size
        stream = torch.cat([state.pending[:, :fill], hidden.detach().to(state.pending.dtype)], 1)
        stream_episodes = torch.cat([state.pending_episodes[:, :fill], episodes], dim=1)
        closing = stream.shape[1] // size
        chunks, chunk_episodes = state.chunks, state.chunk_episodes
        summaries, chunk_index = state.summaries, state.chunk_index
        if closing:
            # A long write may close more chunks than fit: only the newest `capacity` stay.
            first = max(0, closing - capacity)
            new_chunks = stream[:, first * size : closing * size].unflatten(1, (-1, size))
            new_episodes = stream_episodes[:, first * size : closing * size].unflatten(
                1, (-1, size)
            )
            new_index = state.step // size + torch.arange(first, closing, device=chunk_index.device)
            slots = new_index % capacity
            chunks, chunk_episodes = chunks.clone(), chunk_episodes.clone()
            summaries, chunk_index = summaries.clone(), chunk_index.clone()
            chunks[:, slots] = new_chunks
            chunk_episodes[:, slots] = new_episodes
            summaries[:, slots] = self._summarize(new_chunks, new_episodes)
            chunk_index[slots] = new_index
        rest = stream.shape[1] - closing * size
        pending = torch.zeros_like(state.pending)
        pending[:, :rest] = stream[:, closing * size :]
        pending_episodes = torch.zeros_like(state.pending_episodes)
        pending_episodes[:, :rest] = stream_episodes[:, closing * size :]
        return HCAMState(
            chunks=chunks,
            chunk_episodes=chunk_episodes,
            summaries=summaries,
            chunk_index=chunk_index,
            pending=pending,
            pending_episodes=pending_episodes,
            episode=episodes[:, -1] if steps else state.episode,
            step=state.step + steps,
        )

    def _summarize(self, chunks: Tensor, episodes: Tensor) -> Tensor:
        """(B, n, C, d) chunks -> (B, n, d) summaries (see `HCAMState.summaries`)."""
        if not self.mask_episodes:
            return chunks.mean(dim=-2)
        # Only the steps of the chunk's last episode can ever be read by a later query
        # (episode ids only grow), so the summary must not depend on the others.
        same = (episodes == episodes[..., -1:]).to(chunks.dtype)
        return (chunks * same[..., None]).sum(dim=-2) / same.sum(dim=-1, keepdim=True)

    def _chunks_closed_inside(
        self, hidden: Tensor, state: HCAMState, episodes: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
        """Chunks closed by this segment's steps before its last step, or None.

        Returns (chunks (B, n, C, d), episodes (B, n, C), summaries (B, n, d), index (n,)).
        """
        size, steps = self.config.chunk_size, hidden.shape[1]
        fill = state.step % size
        count = (fill + steps - 1) // size
        if count <= 0:
            return None
        take = count * size - fill
        chunks = torch.cat([state.pending[:, :fill].to(hidden.dtype), hidden.detach()[:, :take]], 1)
        chunk_episodes = torch.cat([state.pending_episodes[:, :fill], episodes[:, :take]], 1)
        chunks = chunks.unflatten(1, (count, size))
        chunk_episodes = chunk_episodes.unflatten(1, (count, size))
        index = state.step // size + torch.arange(count, device=hidden.device)
        return chunks, chunk_episodes, self._summarize(chunks, chunk_episodes), index
