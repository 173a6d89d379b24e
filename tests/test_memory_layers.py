"""Memory layers: HCAM's read against full attention, masks, causality, eviction, state."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from crlgym.errors import ConfigError
from crlgym.memory import (
    MEMORY_KINDS,
    FullAttentionMemory,
    HCAMMemory,
    LSTMMemory,
    MemoryLayer,
    MemoryState,
    WindowMemory,
    full_attention,
    make_memory,
)
from tests.helpers import checkpoint_round_trip

D = 16
HEADS = 4
# Small settings under which every kind's read depends on several stored steps.
OPTIONS = {
    "hcam": {"chunk_size": 4, "top_k": 2, "capacity": 5, "heads": HEADS},
    "window": {"window": 6, "heads": HEADS},
    "full": {"capacity": 64, "heads": HEADS},
    "lstm": {},
}


def build(kind: str, seed: int = 0, **overrides: object) -> MemoryLayer:
    torch.manual_seed(seed)
    return make_memory(kind, D, **{**OPTIONS[kind], **overrides})


def run(
    layer: MemoryLayer,
    hidden: Tensor,
    starts: Tensor | None = None,
    segment: int | None = None,
    state: MemoryState | None = None,
) -> tuple[Tensor, MemoryState]:
    """Reads of the whole sequence fed in segments of ``segment`` steps, and the last state."""
    state = state if state is not None else layer.initial_state(hidden.shape[0])
    segment = segment or hidden.shape[1]
    reads = []
    for begin in range(0, hidden.shape[1], segment):
        part = None if starts is None else starts[:, begin : begin + segment]
        read, state = layer(hidden[:, begin : begin + segment], state, part)
        reads.append(read)
    return torch.cat(reads, dim=1), state


def episode_starts(length: int, *positions: int) -> Tensor:
    """(len(positions), length): stream b starts episodes at step 0 and at positions[b]."""
    starts = torch.zeros(len(positions), length, dtype=torch.bool)
    starts[:, 0] = True
    for row, position in enumerate(positions):
        starts[row, position] = True
    return starts


def hand_relevance(hcam: HCAMMemory, queries: Tensor, summaries: Tensor) -> Tensor:
    """(B, T, n): (Wq h) . (Wk s_j) / sqrt(d), computed the textbook way."""
    q = hcam.readout.query(queries)
    k = hcam.readout.key(summaries)
    return torch.einsum("btd,bnd->btn", q, k) / math.sqrt(D)


def hand_chunk_reads(hcam: HCAMMemory, queries: Tensor, chunks: Tensor) -> Tensor:
    """(B, T, n, d): full attention of the queries over each chunk alone (+ positions)."""
    return torch.stack(
        [
            full_attention(hcam.readout, queries, chunks[:, j], position=hcam.position)
            for j in range(chunks.shape[1])
        ],
        dim=2,
    )


# --- HCAM against full attention -------------------------------------------------------


@pytest.mark.parametrize("position", ["none", "learned", "sinusoidal"])
def test_hcam_with_one_chunk_equals_full_attention(position: str) -> None:
    hcam = build("hcam", chunk_size=8, capacity=1, top_k=1, position=position)
    if position == "learned":  # large enough that a missing encoding would show
        torch.nn.init.normal_(hcam.position)
    chunk, queries = torch.randn(3, 8, D), torch.randn(3, 5, D)
    _, state = run(hcam, chunk)
    read = hcam.read(queries, state)
    expected = full_attention(hcam.readout, queries, chunk, position=hcam.position)
    torch.testing.assert_close(read, expected, rtol=1e-5, atol=1e-6)
    assert read.abs().mean() > 0.01
    if position == "none":  # the layer itself, with copied weights, reads the same
        full = make_memory("full", D, capacity=8, heads=HEADS)
        assert isinstance(full, FullAttentionMemory)
        full.load_readout(hcam)
        _, full_state = run(full, chunk)
        torch.testing.assert_close(
            full.read(queries[:, :1], full_state), read[:, :1], rtol=1e-5, atol=1e-6
        )
    else:  # the encoding matters: without it the read differs
        plain = full_attention(hcam.readout, queries, chunk)
        assert not torch.allclose(read, plain, atol=1e-4)


def test_hcam_with_k_covering_all_chunks_is_the_relevance_weighted_mixture() -> None:
    hcam = build("hcam", chunk_size=4, capacity=5, top_k=5, position="sinusoidal")
    steps, queries = torch.randn(2, 20, D), torch.randn(2, 3, D)
    _, state = run(hcam, steps, segment=7)
    info = hcam.inspect(queries, state)

    chunks = steps.unflatten(1, (5, 4))
    weights = torch.softmax(hand_relevance(hcam, queries, chunks.mean(dim=2)), dim=-1)
    expected = torch.einsum("btn,btnd->btd", weights, hand_chunk_reads(hcam, queries, chunks))
    torch.testing.assert_close(info.read, expected, rtol=1e-5, atol=1e-6)
    order = info.chunks.argsort(dim=-1)
    assert info.chunks.sort(dim=-1).values.tolist() == [[[0, 1, 2, 3, 4]] * 3] * 2
    torch.testing.assert_close(info.weights.gather(-1, order), weights)


def test_hcam_with_k_below_chunks_reads_exactly_the_top_k() -> None:
    hcam = build("hcam", chunk_size=4, capacity=6, top_k=2)
    steps, queries = torch.randn(3, 24, D), torch.randn(3, 4, D)
    _, state = run(hcam, steps, segment=5)
    info = hcam.inspect(queries, state)

    chunks = steps.unflatten(1, (6, 4))
    relevance = hand_relevance(hcam, queries, chunks.mean(dim=2))
    top, chosen = relevance.topk(2, dim=-1)
    per_chunk = hand_chunk_reads(hcam, queries, chunks)  # (B, T, 6, d)
    picked = per_chunk.gather(2, chosen[..., None].expand(-1, -1, -1, D))
    expected = torch.einsum("btk,btkd->btd", torch.softmax(top, dim=-1), picked)
    torch.testing.assert_close(info.read, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(info.chunks.sort(dim=-1).values, chosen.sort(dim=-1).values)
    # and it is not the all-chunk mixture
    everything = torch.einsum("btn,btnd->btd", torch.softmax(relevance, dim=-1), per_chunk)
    assert not torch.allclose(info.read, everything, atol=1e-4)


def test_hcam_top_k_picks_the_planted_chunk() -> None:
    hcam = build("hcam", chunk_size=4, capacity=8, top_k=1)
    batch, planted = 4, torch.tensor([5, 0, 3, 7])
    queries = torch.randn(batch, 1, D)
    # The summary direction that maximizes (Wq h) . (Wk s) is Wk^T Wq h.
    with torch.no_grad():
        direction = hcam.readout.query(queries[:, 0]) @ hcam.readout.key.weight
        direction = direction / direction.norm(dim=-1, keepdim=True)
    steps = 0.3 * torch.randn(batch, 32, D)
    for row, chunk in enumerate(planted.tolist()):
        steps[row, 4 * chunk : 4 * chunk + 4] += 3.0 * direction[row]
    _, state = run(hcam, steps, segment=6)
    info = hcam.inspect(queries, state)
    assert info.chunks[:, 0, 0].tolist() == planted.tolist()
    assert torch.equal(info.weights, torch.ones(batch, 1, 1))
    alone = torch.stack([steps[row, 4 * c : 4 * c + 4] for row, c in enumerate(planted.tolist())])
    expected = full_attention(hcam.readout, queries, alone, position=hcam.position)
    torch.testing.assert_close(info.read, expected, rtol=1e-5, atol=1e-6)


def test_hcam_with_fewer_chunks_than_k_uses_those_there_are_and_none_reads_zero() -> None:
    hcam = build("hcam", chunk_size=4, capacity=8, top_k=4)
    queries = torch.randn(2, 3, D)
    empty = hcam.inspect(queries, hcam.initial_state(2))
    assert torch.equal(empty.read, torch.zeros(2, 3, D))
    assert (empty.chunks == -1).all() and torch.equal(empty.weights, torch.zeros(2, 3, 4))

    steps = torch.randn(2, 10, D)  # two closed chunks, an open one of 2 steps
    _, state = run(hcam, steps)
    queries = queries[:, :2]  # steps 10 and 11: chunk 2 closes after step 11
    info = hcam.inspect(queries, state)
    assert info.chunks.sort(dim=-1).values.tolist() == [[[-1, -1, 0, 1]] * 2] * 2
    chunks = steps[:, :8].unflatten(1, (2, 4))
    weights = torch.softmax(hand_relevance(hcam, queries, chunks.mean(dim=2)), dim=-1)
    expected = torch.einsum("btn,btnd->btd", weights, hand_chunk_reads(hcam, queries, chunks))
    torch.testing.assert_close(info.read, expected, rtol=1e-5, atol=1e-6)


def test_hcam_open_chunk_is_not_readable_and_closed_chunks_are_read_within_the_segment() -> None:
    hcam = build("hcam", chunk_size=4, capacity=8, top_k=8)
    steps = torch.randn(1, 12, D)
    reads, _ = run(hcam, steps)
    # Steps 0-4 see no closed chunk (chunk 0 closes after step 3, read from step 4 on).
    assert torch.equal(reads[:, :4], torch.zeros(1, 4, D))
    assert reads[:, 4:].abs().amin(dim=-1).gt(0).all()
    changed = steps.clone()
    changed[:, 4:7] += 5.0  # in the chunk of steps 4-7, open until step 7 is written
    other, _ = run(hcam, changed)
    assert torch.equal(other[:, 7], reads[:, 7])  # step 7's query is unchanged
    assert not torch.allclose(other[:, 8:], reads[:, 8:], atol=1e-4)


# --- properties every kind must have ---------------------------------------------------


@pytest.mark.parametrize("kind", MEMORY_KINDS)
def test_no_gradient_reaches_stored_memory(kind: str) -> None:
    layer = build(kind)
    first = torch.randn(2, 16, D, requires_grad=True)
    second = torch.randn(2, 8, D, requires_grad=True)
    _, state = layer(first, layer.initial_state(2))
    for name, value in state.to_dict().items():
        if isinstance(value, Tensor):
            assert not value.requires_grad and value.grad_fn is None, name
    read, _ = layer(second, state)
    read.pow(2).sum().backward()
    assert first.grad is None
    assert second.grad is not None and second.grad.abs().sum() > 0
    weights = [p for p in layer.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert len(weights) == len(list(layer.parameters()))


@pytest.mark.parametrize("kind", ["hcam", "full", "window"])
def test_attention_reads_take_gradient_only_through_their_queries(kind: str) -> None:
    layer = build(kind, chunk_size=2) if kind == "hcam" else build(kind)
    hidden = torch.randn(2, 12, D, requires_grad=True)
    reads, _ = layer(hidden, layer.initial_state(2))
    reads[:, -1].sum().backward()
    assert hidden.grad is not None
    assert torch.equal(hidden.grad[:, :-1], torch.zeros(2, 11, D))  # earlier keys: detached
    assert hidden.grad[:, -1].abs().sum() > 0


@pytest.mark.parametrize("kind", MEMORY_KINDS)
def test_episode_mask_hides_everything_before_the_episode_start(kind: str) -> None:
    length, new_starts = 30, (13, 21)
    starts = episode_starts(length, *new_starts)
    hidden = torch.randn(2, length, D)
    changed = hidden.clone()
    for row, start in enumerate(new_starts):
        changed[row, :start] = 3.0 * torch.randn(start, D)
    for mask in (True, False):
        layer = build(kind, mask_episodes=mask)
        reads, _ = run(layer, hidden, starts, segment=5)
        other, _ = run(layer, changed, starts, segment=5)
        for row, start in enumerate(new_starts):
            if mask:
                torch.testing.assert_close(other[row, start:], reads[row, start:])
            else:  # the mask is what hides them
                assert not torch.allclose(other[row, start:], reads[row, start:], atol=1e-3)


@pytest.mark.parametrize("kind", MEMORY_KINDS)
def test_a_step_never_changes_earlier_reads(kind: str) -> None:
    # Every stored chunk read (top_k = capacity), so a change shows wherever it can.
    layer = build(kind, top_k=5) if kind == "hcam" else build(kind)
    hidden = torch.randn(2, 24, D)
    reads, _ = run(layer, hidden, segment=7)
    for step in (3, 10, 17):
        changed = hidden.clone()
        changed[:, step] += 4.0
        other, _ = run(layer, changed, segment=7)
        assert torch.equal(other[:, :step], reads[:, :step]), step
        visible_from = step if kind == "lstm" else step + 1  # hcam: once its chunk closes
        if kind == "hcam":
            visible_from = (step // 4 + 1) * 4
        assert not torch.allclose(other[:, visible_from:], reads[:, visible_from:], atol=1e-4)


@pytest.mark.parametrize("segment", [1, 3, 8])
@pytest.mark.parametrize("kind", MEMORY_KINDS)
def test_reads_do_not_depend_on_segment_length(kind: str, segment: int) -> None:
    layer = build(kind)
    hidden, starts = torch.randn(2, 26, D), episode_starts(26, 9, 17)
    whole, whole_state = run(layer, hidden, starts)
    pieces, state = run(layer, hidden, starts, segment=segment)
    torch.testing.assert_close(pieces, whole, rtol=1e-5, atol=1e-6)
    for name, value in whole_state.to_dict().items():
        if isinstance(value, Tensor):
            torch.testing.assert_close(state.to_dict()[name], value, rtol=1e-5, atol=1e-6)
        else:
            assert state.to_dict()[name] == value


# --- capacity, window, LSTM resets -----------------------------------------------------


def test_hcam_capacity_keeps_the_newest_chunks() -> None:
    hcam = build("hcam", chunk_size=4, capacity=3, top_k=3)
    hidden = torch.randn(2, 26, D)  # 6 closed chunks and 2 open steps
    _, state = run(hcam, hidden, segment=5)
    order = state.chunk_index.argsort()
    assert state.chunk_index[order].tolist() == [3, 4, 5]
    torch.testing.assert_close(state.chunks[:, order], hidden[:, 12:24].unflatten(1, (3, 4)))
    torch.testing.assert_close(
        state.summaries[:, order], hidden[:, 12:24].unflatten(1, (3, 4)).mean(dim=2)
    )
    queries = torch.randn(2, 1, D)
    changed = hidden.clone()
    changed[:, :12] = torch.randn(2, 12, D)  # evicted chunks
    read = hcam.read(queries, state)
    assert torch.equal(hcam.read(queries, run(hcam, changed, segment=5)[1]), read)
    changed[:, 12] += 3.0  # the oldest kept chunk
    assert not torch.allclose(hcam.read(queries, run(hcam, changed, segment=5)[1]), read)


def test_full_attention_capacity_keeps_the_newest_steps() -> None:
    full = build("full", capacity=10)
    hidden, queries = torch.randn(2, 24, D), torch.randn(2, 1, D)
    _, state = run(full, hidden, segment=7)
    order = state.index.argsort()
    assert state.index[order].tolist() == list(range(14, 24))
    assert torch.equal(state.states[:, order], hidden[:, 14:])
    expected = full_attention(full.readout, queries, hidden[:, 14:])
    torch.testing.assert_close(full.read(queries, state), expected, rtol=1e-5, atol=1e-6)


def test_window_reads_exactly_the_last_w_steps() -> None:
    window = build("window", window=5, mask_episodes=False)
    hidden = torch.randn(2, 20, D)
    reads, state = run(window, hidden, segment=6)
    assert torch.equal(reads[:, 0], torch.zeros(2, D))
    for step in range(1, 20):
        expected = full_attention(
            window.readout, hidden[:, step : step + 1], hidden[:, max(0, step - 5) : step]
        )
        torch.testing.assert_close(reads[:, step : step + 1], expected, rtol=1e-5, atol=1e-6)
    assert sorted(state.index.tolist()) == list(range(15, 20))


def test_lstm_state_resets_at_episode_starts_when_masked() -> None:
    hidden, starts = torch.randn(2, 20, D), episode_starts(20, 7, 12)
    for mask in (True, False):
        lstm = build("lstm", mask_episodes=mask)
        reads, _ = run(lstm, hidden, starts, segment=5)
        for row, start in enumerate((7, 12)):
            fresh, _ = run(lstm, hidden[row : row + 1, start:])
            same = torch.allclose(reads[row : row + 1, start:], fresh, rtol=1e-5, atol=1e-6)
            assert same == mask


# --- state, dtype, factory -------------------------------------------------------------


@pytest.mark.parametrize("kind", MEMORY_KINDS)
def test_state_survives_a_weights_only_checkpoint(kind: str) -> None:
    layer = build(kind)
    hidden, starts = torch.randn(2, 23, D), episode_starts(23, 5, 19)
    _, state = run(layer, hidden[:, :13], starts[:, :13], segment=4)
    loaded = type(state).from_dict(checkpoint_round_trip(state.to_dict()))
    before = layer(hidden[:, 13:], state, starts[:, 13:])[0]
    after = layer(hidden[:, 13:], loaded, starts[:, 13:])[0]
    assert torch.equal(before, after) and before.abs().sum() > 0
    with pytest.raises(ValueError, match="missing fields"):
        type(state).from_dict({})


@pytest.mark.parametrize("kind", MEMORY_KINDS)
def test_layers_follow_the_hidden_dtype(kind: str) -> None:
    layer = build(kind).double()
    hidden = torch.randn(2, 9, D, dtype=torch.float64)
    state = layer.initial_state(2)
    read, state = layer(hidden, state)
    read, state = layer(hidden, state)
    assert read.dtype == torch.float64 and read.abs().sum() > 0
    tensors = [value for value in state.to_dict().values() if isinstance(value, Tensor)]
    assert all(tensor.dtype in (torch.float64, torch.long) for tensor in tensors)


def test_make_memory_builds_each_kind_with_its_options() -> None:
    expected = {
        "hcam": HCAMMemory,
        "window": WindowMemory,
        "full": FullAttentionMemory,
        "lstm": LSTMMemory,
    }
    assert set(MEMORY_KINDS) == set(expected)
    for kind, cls in expected.items():
        assert type(make_memory(kind, 32)) is cls
    hcam = make_memory("hcam", 32, chunk_size=8, top_k=3, capacity=10, heads=2)
    assert isinstance(hcam, HCAMMemory)
    assert (hcam.config.chunk_size, hcam.config.top_k, hcam.config.capacity) == (8, 3, 10)
    assert hcam.initial_state(1).chunks.shape == (1, 10, 8, 32)
    lstm = make_memory("lstm", 32, hidden_size=12)
    assert lstm.initial_state(3).h.shape == (3, 12)


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("transformer", {}, "valid kinds: hcam, window, full, lstm"),
        ("hcam", {"chunks": 4}, "valid options: chunk_size, top_k, capacity, heads"),
        ("window", {"capacity": 4}, "valid options: window, heads, mask_episodes"),
        ("hcam", {"top_k": 0}, "top_k must be a positive int"),
        ("hcam", {"position": "rope"}, "learned, sinusoidal, none"),
        ("full", {"heads": 5}, "heads \\(5\\) must divide d_model \\(16\\)"),
        ("full", {"mask_episodes": "yes"}, "mask_episodes must be True or False"),
        ("lstm", {"hidden_size": 2.5}, "hidden_size must be a positive int"),
    ],
)
def test_make_memory_refuses_unknown_kinds_options_and_bad_values(
    kind: str, options: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_memory(kind, D, **options)
