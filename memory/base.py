"""The interface every memory layer shares, and its state container.

A transformer sequence policy processes an episode in segments of T steps. In each block,
after causal self-attention inside the segment, a memory layer reads from hidden states
stored earlier and its read is added to the residual stream::

    read, state = memory(hidden, state, episode_start)   # hidden, read: (B, T, d)

The layers are functional: ``forward`` never changes the state it is given (a caller may
run the same state twice, e.g. to recompute a segment), it returns a new one. Stored
memory is always written detached, so gradients reach only the current segment's queries
and the layer's own weights, never the stored states (truncation at segment boundaries).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor, nn

from crlgym.errors import ConfigError

StateT = TypeVar("StateT", bound="MemoryState")


@dataclass
class MemoryState:
    """A memory layer's state: tensors (batch first unless a field says otherwise) and ints.

    Subclasses only declare fields; saving, loading, detaching and moving are generic.
    ``to_dict`` holds nothing but tensors and ints, so a checkpoint of it loads with
    ``torch.load(weights_only=True)``.
    """

    def to_dict(self) -> dict[str, Tensor | int]:
        """The fields by name (tensors and ints), for ``torch.save``."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[StateT], values: dict[str, Any]) -> StateT:
        """The state ``to_dict`` produced; refuses missing or unknown fields."""
        names = {field.name for field in dataclasses.fields(cls)}
        missing, unknown = names - values.keys(), values.keys() - names
        if missing or unknown:
            raise ValueError(
                f"{cls.__name__}.from_dict: missing fields {sorted(missing)}, "
                f"unknown fields {sorted(unknown)}"
            )
        return cls(**values)

    def detach(self: StateT) -> StateT:
        """A copy whose tensors are cut from any autograd graph (shares their storage)."""
        return self._map(lambda tensor: tensor.detach())

    def to(self: StateT, device: torch.device | str) -> StateT:
        """A copy with every tensor on ``device``."""
        return self._map(lambda tensor: tensor.to(device))

    def _map(self: StateT, function: Any) -> StateT:
        values = {
            name: function(value) if isinstance(value, Tensor) else value
            for name, value in self.to_dict().items()
        }
        return type(self)(**values)


class MemoryLayer(nn.Module, Generic[StateT]):
    """A memory read/write, swappable inside a transformer block (``--memory`` option).

    Attributes:
        d_model: width of the hidden states read and written.
        mask_episodes: when True, no step reads anything stored before the start of its own
            episode (``episode_start`` marks the starts).
    """

    d_model: int
    mask_episodes: bool

    def __init__(self, d_model: int, mask_episodes: bool) -> None:
        super().__init__()
        if not isinstance(d_model, int) or isinstance(d_model, bool) or d_model < 1:
            raise ConfigError(f"d_model must be a positive int, got {d_model!r}")
        self.d_model = d_model
        self.mask_episodes = mask_episodes

    def initial_state(
        self, batch_size: int, device: torch.device | str = "cpu"
    ) -> StateT:  # pragma: no cover - abstract
        """An empty memory for ``batch_size`` parallel streams (episodes) on ``device``."""
        raise NotImplementedError

    def forward(
        self, hidden: Tensor, state: StateT, episode_start: Tensor | None = None
    ) -> tuple[Tensor, StateT]:  # pragma: no cover - abstract
        """Read for T new steps, then write them.

        Args:
            hidden: (B, T, d) the block's hidden states of T new steps.
            state: the memory before these steps (not modified).
            episode_start: (B, T) bool, True where a new episode begins at that step.

        Returns:
            ``(read, new_state)``: read (B, T, d) to add to the residual stream; step t of
            it depends only on steps before t (and on step t itself for the LSTM), never on
            later ones. ``new_state`` has the T steps written (detached).
        """
        raise NotImplementedError

    def _check(self, hidden: Tensor, batch_size: int, episode_start: Tensor | None) -> None:
        if hidden.dim() != 3 or hidden.shape[-1] != self.d_model:
            raise ValueError(f"hidden must be (B, T, {self.d_model}), got {tuple(hidden.shape)}")
        if hidden.shape[0] != batch_size:
            raise ValueError(
                f"hidden has batch {hidden.shape[0]} but the state was made for {batch_size}"
            )
        if episode_start is not None and (
            episode_start.shape != hidden.shape[:2] or episode_start.dtype != torch.bool
        ):
            raise ValueError(
                f"episode_start must be a bool tensor of shape {tuple(hidden.shape[:2])}, "
                f"got {episode_start.dtype} {tuple(episode_start.shape)}"
            )


def segment_episodes(episode: Tensor, episode_start: Tensor | None, steps: int) -> Tensor:
    """(B, T) episode id of each new step, from the id of the last stored step (B,).

    Ids only need to tell episodes of one stream apart: each start increments the id.
    """
    if episode_start is None:
        return episode[:, None].expand(-1, steps)
    return episode[:, None] + episode_start.long().cumsum(dim=1)


def check_positive_int(owner: str, name: str, value: object) -> None:
    """Raise `ConfigError` unless ``value`` is an int >= 1 (bools refused)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{owner}.{name} must be a positive int, got {value!r}")


def check_bool(owner: str, name: str, value: object) -> None:
    """Raise `ConfigError` unless ``value`` is a bool."""
    if not isinstance(value, bool):
        raise ConfigError(f"{owner}.{name} must be True or False, got {value!r}")
