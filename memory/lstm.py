"""Recurrent memory: an LSTM over the hidden sequence, as the non-attention baseline."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from crlgym.memory.base import MemoryLayer, MemoryState, check_bool, check_positive_int


@dataclass
class LSTMConfig:
    """Settings of `LSTMMemory`."""

    hidden_size: int | None = None
    """Width of the LSTM's (h, c); None = d_model."""
    mask_episodes: bool = True
    """Reset (h, c) to zero at each episode start, so nothing crosses episodes."""

    def __post_init__(self) -> None:
        if self.hidden_size is not None:
            check_positive_int("LSTMConfig", "hidden_size", self.hidden_size)
        check_bool("LSTMConfig", "mask_episodes", self.mask_episodes)


@dataclass
class LSTMState(MemoryState):
    """The LSTM's carried state."""

    h: Tensor
    """(B, hidden_size) hidden state after the last written step."""
    c: Tensor
    """(B, hidden_size) cell state after the last written step."""


class LSTMMemory(MemoryLayer[LSTMState]):
    """An LSTM run over the block's hidden states, its output projected to d_model.

    Step t's read is the projected LSTM output after consuming steps up to and including t
    (causal: never later steps). (h, c) is carried across segments detached, so the
    recurrent gradient is truncated at segment boundaries like the stored memory of the
    attention layers. With ``mask_episodes``, (h, c) is zeroed where an episode starts.
    The segment is run through the fused ``nn.LSTM`` in pieces split only at the steps
    where some stream starts an episode.
    """

    def __init__(self, d_model: int, config: LSTMConfig | None = None) -> None:
        config = config or LSTMConfig()
        super().__init__(d_model, config.mask_episodes)
        self.config = config
        self.hidden_size = config.hidden_size or d_model
        self.lstm = nn.LSTM(d_model, self.hidden_size, batch_first=True)
        self.output = nn.Linear(self.hidden_size, d_model, bias=False)

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
    ) -> LSTMState:
        """Zero (h, c); ``dtype`` defaults to the layer's weights'."""
        dtype = dtype or self.output.weight.dtype
        zeros = torch.zeros(batch_size, self.hidden_size, dtype=dtype, device=device)
        return LSTMState(h=zeros, c=zeros.clone())

    def forward(
        self, hidden: Tensor, state: LSTMState, episode_start: Tensor | None = None
    ) -> tuple[Tensor, LSTMState]:
        """Read for the T steps of ``hidden`` (B, T, d) and the state after them."""
        self._check(hidden, state.h.shape[0], episode_start)
        steps = hidden.shape[1]
        if steps == 0:
            return hidden.new_zeros(hidden.shape), state
        h, c = state.h.to(hidden.dtype), state.c.to(hidden.dtype)
        starts = [0]
        if self.mask_episodes and episode_start is not None:
            starts = sorted({0, *episode_start.any(dim=0).nonzero().flatten().tolist()})
        outputs = []
        for begin, end in zip(starts, [*starts[1:], steps], strict=True):
            if self.mask_episodes and episode_start is not None:
                keep = (~episode_start[:, begin, None]).to(h.dtype)
                h, c = h * keep, c * keep
            out, (h_n, c_n) = self.lstm(hidden[:, begin:end], (h[None], c[None]))
            h, c = h_n[0], c_n[0]
            outputs.append(out)
        return self.output(torch.cat(outputs, dim=1)), LSTMState(h=h.detach(), c=c.detach())
