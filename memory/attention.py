"""Multi-head attention of queries over stored raw hidden states, shared by the memories.

HCAM stores raw hidden states, so keys and values are projections of stored states computed
at read time. The full and window memories store the same raw states and read them the
same way, with this module, so that latency comparisons measure the memory structure and
not a difference in what is cached.

For few queries the key projection is folded into the query: ``(Wk_h x) . q_h =
x . (Wk_h^T q_h)``, and the value projection is applied after pooling: ``sum_s p_s Wv_h x_s
= Wv_h sum_s p_s x_s``. That is the same product, at O(H d) per stored state and query
instead of O(d^2) per stored state. When many queries share the same stored states
(training segments), projecting the keys once is cheaper; `attend` picks by cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn


class MultiHeadReadout(nn.Module):
    """Query/key/value/output projections (no biases) of multi-head memory attention.

    No biases so that a read with nothing to attend to is exactly zero, and so that the
    output projection commutes with HCAM's convex mixture over chunks.
    """

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.d_model, self.heads, self.head_dim = d_model, heads, d_model // heads
        self.query = nn.Linear(d_model, d_model, bias=False)
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.output = nn.Linear(d_model, d_model, bias=False)

    def split(self, projected: Tensor) -> Tensor:
        """(..., d) -> (..., H, d/H)."""
        return projected.unflatten(-1, (self.heads, self.head_dim))

    def folded_queries(self, queries: Tensor) -> Tensor:
        """(..., H, d/H) head queries -> (..., H, d): ``Wk_h^T q_h``, to dot with raw states."""
        weight = self.key.weight.view(self.heads, self.head_dim, self.d_model)
        return torch.einsum("...he,hed->...hd", queries, weight)

    def values_of_pooled(self, pooled: Tensor) -> Tensor:
        """(..., H, d) per-head pooled raw states -> (..., d): ``Wv_h`` per head, concatenated."""
        weight = self.value.weight.view(self.heads, self.head_dim, self.d_model)
        return torch.einsum("...hd,hed->...he", pooled, weight).flatten(-2)


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over the True entries of ``mask``; all-False rows give all zeros.

    Masked scores are set to the dtype's lowest finite value rather than -inf, so that rows
    with nothing visible produce finite (zero) outputs and finite gradients instead of NaN.
    """
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=dim) * mask


def attend(
    readout: MultiHeadReadout,
    queries: Tensor,
    sources: Sequence[tuple[Tensor, Tensor]],
    fold: bool | None = None,
) -> Tensor:
    """Multi-head attention of queries over several sources of raw states, one softmax.

    Args:
        readout: the projections.
        queries: (B, T, d) the hidden states that query (projected here by ``readout``).
        sources: pairs ``(states (B, N_i, d), visible (B, T, N_i) bool)``; the softmax of
            each query runs jointly over the visible states of all sources (this avoids
            concatenating a large stored buffer with the current segment).
        fold: fold the key projection into the queries; None picks the cheaper way
            (folding costs ~T*H*d per stored state, projecting ~d*d).

    Returns:
        (B, T, d) attention output after the output projection; zero for queries that see
        no state.
    """
    batch, steps, _ = queries.shape
    if fold is None:
        fold = steps * readout.heads < readout.d_model
    head_queries = readout.split(readout.query(queries))  # (B, T, H, e)
    scale = 1.0 / math.sqrt(readout.head_dim)
    if fold:
        folded = readout.folded_queries(head_queries)  # (B, T, H, d)
        scores = [torch.einsum("bthd,bnd->bthn", folded, states) for states, _ in sources]
    else:
        keys = [readout.split(readout.key(states)) for states, _ in sources]
        scores = [torch.einsum("bthe,bnhe->bthn", head_queries, key) for key in keys]
    sizes = [states.shape[1] for states, _ in sources]
    mask = torch.cat([visible for _, visible in sources], dim=-1).unsqueeze(2)  # (B,T,1,N)
    weights = masked_softmax(torch.cat(scores, dim=-1) * scale, mask).split(sizes, dim=-1)
    if fold:
        pooled = cast(
            Tensor,
            sum(
                torch.einsum("bthn,bnd->bthd", weight, states)
                for weight, (states, _) in zip(weights, sources, strict=True)
            ),
        )  # a sum of tensors (sources is not empty)
        out = readout.values_of_pooled(pooled)
    else:
        out = cast(
            Tensor,
            sum(
                torch.einsum("bthn,bnhe->bthe", weight, readout.split(readout.value(states)))
                for weight, (states, _) in zip(weights, sources, strict=True)
            ),
        ).flatten(-2)
    return readout.output(out.reshape(batch, steps, readout.d_model))


def full_attention(
    readout: MultiHeadReadout,
    queries: Tensor,
    states: Tensor,
    visible: Tensor | None = None,
    position: Tensor | None = None,
) -> Tensor:
    """Plain multi-head attention of ``queries`` (B, T, d) over ``states`` (B, N, d).

    The reference HCAM's read is compared against: with ``position`` (N, d) added to the
    states (HCAM's within-chunk encoding) and the same ``readout``, attention over one chunk
    equals HCAM's read of that chunk alone. ``visible`` (B, T, N) bool defaults to all.
    """
    if position is not None:
        states = states + position
    if visible is None:
        shape = (queries.shape[0], queries.shape[1], states.shape[1])
        visible = torch.ones(shape, dtype=torch.bool, device=queries.device)
    return attend(readout, queries, [(states, visible)])


def sinusoidal_positions(length: int, d_model: int) -> Tensor:
    """(length, d_model) fixed sine/cosine encodings (Vaswani et al. 2017)."""
    position = torch.arange(length, dtype=torch.float64)[:, None]
    frequency = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model)
    )
    table = torch.zeros(length, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : d_model // 2]
    return table.float()
