"""Sliding-window memory: attention over the last W steps (a Transformer-XL style cache)."""

from __future__ import annotations

from dataclasses import dataclass

from crlgym.memory.base import check_bool, check_positive_int
from crlgym.memory.full import StepAttentionMemory


@dataclass
class WindowConfig:
    """Settings of `WindowMemory`."""

    window: int = 64
    """W: each step reads the W steps before it (stored or earlier in its segment)."""
    heads: int = 4
    """Attention heads; must divide d_model."""
    mask_episodes: bool = True
    """No step reads anything stored before the start of its own episode."""

    def __post_init__(self) -> None:
        check_positive_int("WindowConfig", "window", self.window)
        check_positive_int("WindowConfig", "heads", self.heads)
        check_bool("WindowConfig", "mask_episodes", self.mask_episodes)


class WindowMemory(StepAttentionMemory):
    """Attention of step t over steps t-W .. t-1 only, from a cache of the last W steps.

    The same read as `FullAttentionMemory` (raw states stored, projected at read time)
    with the capacity set to the window, so memory and read cost stay O(W).
    """

    def __init__(self, d_model: int, config: WindowConfig | None = None) -> None:
        config = config or WindowConfig()
        super().__init__(d_model, config.window, config.heads, config.mask_episodes)
        self.config = config
