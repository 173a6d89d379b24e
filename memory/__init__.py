"""Memories that agents store into and recall from.

Memory layers for transformer sequence policies, swappable through one interface
(`MemoryLayer`) and built by name with `make_memory` (``--memory hcam|window|full|lstm``):

- ``hcam``: `HCAMMemory`, Hierarchical Chunk Attention Memory (Lampinen et al. 2021);
- ``window``: `WindowMemory`, attention over the last W steps;
- ``full``: `FullAttentionMemory`, attention over every stored step;
- ``lstm``: `LSTMMemory`, a recurrent baseline.

This package is plain PyTorch and imports nothing from ``agents`` or ``experiments``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from crlgym.errors import ConfigError
from crlgym.memory.attention import MultiHeadReadout, full_attention
from crlgym.memory.base import MemoryLayer, MemoryState
from crlgym.memory.full import FullAttentionConfig, FullAttentionMemory, StepMemoryState
from crlgym.memory.hcam import HCAMConfig, HCAMMemory, HCAMReadInfo, HCAMState
from crlgym.memory.lstm import LSTMConfig, LSTMMemory, LSTMState
from crlgym.memory.window import WindowConfig, WindowMemory

__all__ = [
    "MEMORY_KINDS",
    "FullAttentionConfig",
    "FullAttentionMemory",
    "HCAMConfig",
    "HCAMMemory",
    "HCAMReadInfo",
    "HCAMState",
    "LSTMConfig",
    "LSTMMemory",
    "LSTMState",
    "MemoryLayer",
    "MemoryState",
    "MultiHeadReadout",
    "StepMemoryState",
    "WindowConfig",
    "WindowMemory",
    "full_attention",
    "make_memory",
]

_LAYERS: dict[str, tuple[type[MemoryLayer[Any]], type]] = {
    "hcam": (HCAMMemory, HCAMConfig),
    "window": (WindowMemory, WindowConfig),
    "full": (FullAttentionMemory, FullAttentionConfig),
    "lstm": (LSTMMemory, LSTMConfig),
}
MEMORY_KINDS: tuple[str, ...] = tuple(_LAYERS)
"""The names `make_memory` accepts."""


def make_memory(kind: str, d_model: int, **options: Any) -> MemoryLayer[Any]:
    """The memory layer ``kind`` for hidden states of width ``d_model``.

    ``options`` are fields of the kind's config dataclass (e.g. ``chunk_size=32`` for
    ``hcam``). Raises `ConfigError` naming the valid kinds or options, or the bad value.
    """
    if kind not in _LAYERS:
        raise ConfigError(f"unknown memory kind {kind!r}; valid kinds: {', '.join(MEMORY_KINDS)}")
    layer, config = _LAYERS[kind]
    valid = [field.name for field in dataclasses.fields(config)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for memory {kind!r}; "
            f"valid options: {', '.join(valid)}"
        )
    return layer(d_model, config(**options))
