"""Full attention over every stored step: the baseline HCAM approximates.

`full_attention` (re-exported here) is the plain attention function HCAM's read is checked
against, and `StepAttentionMemory.load_readout` copies HCAM's projections so the two
layers can be compared with the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from crlgym.errors import ConfigError
from crlgym.memory.attention import MultiHeadReadout, attend, full_attention
from crlgym.memory.base import (
    MemoryLayer,
    MemoryState,
    check_bool,
    check_positive_int,
    segment_episodes,
)

__all__ = [
    "FullAttentionConfig",
    "FullAttentionMemory",
    "StepAttentionMemory",
    "StepMemoryState",
    "full_attention",
]


@dataclass
class FullAttentionConfig:
    """Settings of `FullAttentionMemory`."""

    capacity: int = 1024
    """Stored steps kept; writing one more evicts the oldest. The default reaches as far
    back as HCAM's default (64 chunks of 16)."""
    heads: int = 4
    """Attention heads; must divide d_model."""
    mask_episodes: bool = True
    """No step reads anything stored before the start of its own episode."""

    def __post_init__(self) -> None:
        check_positive_int("FullAttentionConfig", "capacity", self.capacity)
        check_positive_int("FullAttentionConfig", "heads", self.heads)
        check_bool("FullAttentionConfig", "mask_episodes", self.mask_episodes)


@dataclass
class StepMemoryState(MemoryState):
    """Stored steps in a ring buffer of N slots (N = capacity or window).

    Every stream of the batch advances by the same T steps per call, so slot indices are
    shared by the batch.
    """

    states: Tensor
    """(B, N, d) raw hidden states of the stored steps (slot order, not age order)."""
    episodes: Tensor
    """(B, N) episode id of each stored step."""
    index: Tensor
    """(N,) global step index of the step in each slot, -1 for an empty slot."""
    episode: Tensor
    """(B,) episode id of the last written step."""
    step: int
    """Steps written so far."""


class StepAttentionMemory(MemoryLayer[StepMemoryState]):
    """Multi-head attention of each query over the last ``capacity`` steps before it.

    Step t of a segment reads the stored steps and the earlier steps of its own segment
    (never step t or later), at most ``capacity`` steps back, so a read does not depend on
    how the episode is cut into segments. Keys and values are projections of the stored
    raw hidden states computed at read time, exactly as `HCAMMemory` reads its chunks, so
    the two are compared on equal terms (see `crlgym.memory.attention`). With ``mask_episodes``,
    steps of earlier episodes are masked; a query that sees nothing reads zero.
    """

    def __init__(self, d_model: int, capacity: int, heads: int, mask_episodes: bool) -> None:
        super().__init__(d_model, mask_episodes)
        if d_model % heads:
            raise ConfigError(f"heads ({heads}) must divide d_model ({d_model})")
        self.capacity = capacity
        self.readout = MultiHeadReadout(d_model, heads)

    def load_readout(self, other: MemoryLayer[Any]) -> None:
        """Copy the projections of another attention memory (e.g. an `HCAMMemory`)."""
        readout = other.readout
        if not isinstance(readout, MultiHeadReadout):
            raise TypeError(f"{type(other).__name__} has no attention readout to copy")
        self.readout.load_state_dict(readout.state_dict())

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
    ) -> StepMemoryState:
        """Empty memory; ``dtype`` defaults to the layer's weights'."""
        dtype = dtype or self.readout.query.weight.dtype
        slots = self.capacity
        return StepMemoryState(
            states=torch.zeros(batch_size, slots, self.d_model, dtype=dtype, device=device),
            episodes=torch.zeros(batch_size, slots, dtype=torch.long, device=device),
            index=torch.full((slots,), -1, dtype=torch.long, device=device),
            episode=torch.zeros(batch_size, dtype=torch.long, device=device),
            step=0,
        )

    def forward(
        self, hidden: Tensor, state: StepMemoryState, episode_start: Tensor | None = None
    ) -> tuple[Tensor, StepMemoryState]:
        """Read for the T steps of ``hidden`` (B, T, d), then write them."""
        return self.read(hidden, state, episode_start), self.write(hidden, state, episode_start)

    def read(
        self, hidden: Tensor, state: StepMemoryState, episode_start: Tensor | None = None
    ) -> Tensor:
        """(B, T, d) read for the T steps of ``hidden``, without writing them."""
        self._check(hidden, state.episode.shape[0], episode_start)
        batch, steps, _ = hidden.shape
        episodes = segment_episodes(state.episode, episode_start, steps)
        time = (state.step + torch.arange(steps, device=hidden.device))[:, None]  # (T, 1)

        def visible(index: Tensor, key_episodes: Tensor) -> Tensor:
            seen = ((index >= 0) & (index < time) & (index >= time - self.capacity)).expand(
                batch, -1, -1
            )
            if self.mask_episodes:
                seen = seen & (key_episodes[:, None, :] == episodes[:, :, None])
            return seen

        sources = [(state.states.to(hidden.dtype), visible(state.index, state.episodes))]
        if steps > 1:  # earlier steps of this segment, as if already stored
            sources.append((hidden.detach(), visible(time[:, 0], episodes)))
        return attend(self.readout, hidden, sources)

    def write(
        self, hidden: Tensor, state: StepMemoryState, episode_start: Tensor | None = None
    ) -> StepMemoryState:
        """The state with the T steps of ``hidden`` written (detached); ``state`` is kept.

        Copies the ring buffer (O(N d)), the same order as a read of it.
        """
        self._check(hidden, state.episode.shape[0], episode_start)
        steps = hidden.shape[1]
        episodes = segment_episodes(state.episode, episode_start, steps)
        keep = min(steps, self.capacity)
        new_index = state.step + torch.arange(steps - keep, steps, device=state.index.device)
        slots = new_index % self.capacity
        states, step_episodes = state.states.clone(), state.episodes.clone()
        index = state.index.clone()
        states[:, slots] = hidden.detach()[:, steps - keep :].to(states.dtype)
        step_episodes[:, slots] = episodes[:, steps - keep :]
        index[slots] = new_index
        return StepMemoryState(
            states=states,
            episodes=step_episodes,
            index=index,
            episode=episodes[:, -1] if steps else state.episode,
            step=state.step + steps,
        )


class FullAttentionMemory(StepAttentionMemory):
    """Full attention over every stored step (up to ``capacity``); see `StepAttentionMemory`.

    A read costs O(N) in the N stored steps, against HCAM's O(N / C + k C).
    """

    def __init__(self, d_model: int, config: FullAttentionConfig | None = None) -> None:
        config = config or FullAttentionConfig()
        super().__init__(d_model, config.capacity, config.heads, config.mask_episodes)
        self.config = config
