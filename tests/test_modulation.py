"""L2M modulation pool (agents/modulation.py) on a small stand-in transformer.

The stand-in has the Decision Transformer's naming convention (blocks in ``blocks``, Linears
``attn.q/k/v/out`` and ``mlp.fc/proj``, a state embedding ``embed_state``) but none of its
machinery. Two synthetic regression tasks have inputs from two well separated clusters (so
their queries differ) and task-specific targets.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from crlgym.agents.modulation import (
    DEFAULT_SITES,
    ModulatedLinear,
    ModulationConfig,
    ModulationPool,
    attach_pool,
    parameter_share,
    state_query,
    trainable_parameters,
)
from crlgym.errors import ConfigError

OBS, D_MODEL, STEPS, OUTPUTS = 8, 32, 5, 4
TRAIN_STEPS = 200
"""Adam steps per task in the two-task runs."""


# --- the stand-in transformer -------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        def split(t: Tensor) -> Tensor:
            return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

        y = F.scaled_dot_product_attention(
            split(self.q(x)), split(self.k(x)), split(self.v(x)), is_causal=True
        )
        return self.out(y.transpose(1, 2).flatten(-2))


class MLP(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.proj = nn.Linear(4 * d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.ln_attn, self.ln_mlp = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn, self.mlp = Attention(d_model, heads), MLP(d_model)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_attn(x))
        return x + self.mlp(self.ln_mlp(x))


class TinyTransformer(nn.Module):
    """States (B, T, obs) -> embed_state -> blocks -> head on the last token (B, outputs)."""

    def __init__(
        self,
        obs_dim: int = OBS,
        d_model: int = D_MODEL,
        layers: int = 2,
        outputs: int = OUTPUTS,
        heads: int = 4,
    ) -> None:
        super().__init__()
        self.embed_state = nn.Linear(obs_dim, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads) for _ in range(layers))
        self.ln_out = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, outputs)

    def query(self, states: Tensor) -> Tensor:
        return state_query(self.embed_state(states))

    def forward(self, states: Tensor) -> Tensor:
        x = self.embed_state(states)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_out(x[:, -1]))


def make_model(seed: int = 0, **kwargs: int) -> TinyTransformer:
    torch.manual_seed(seed)
    return TinyTransformer(**kwargs)


def modulated(
    config: ModulationConfig, seed: int = 0, pool_seed: int = 1
) -> tuple[TinyTransformer, TinyTransformer, ModulationPool]:
    """(modulated model, an unmodulated copy of its base, its pool)."""
    model = make_model(seed)
    base = copy.deepcopy(model)
    pool = ModulationPool.from_model(model, config, torch.Generator().manual_seed(pool_seed))
    attach_pool(model, pool)
    return model, base, pool


# --- two synthetic tasks --------------------------------------------------------------------------

_task_generator = torch.Generator().manual_seed(0)
CENTERS = torch.zeros(2, OBS)
CENTERS[0, : OBS // 2] = 4.0
CENTERS[1, OBS // 2 :] = 4.0
OFFSETS = torch.randn(2, OUTPUTS, generator=_task_generator)
MAPS = 0.5 * torch.randn(2, OBS, OUTPUTS, generator=_task_generator)


def sample(task: int, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """States (n, T, obs) around the task's cluster center, targets (n, outputs)."""
    states = CENTERS[task] + 0.5 * torch.randn(n, STEPS, OBS, generator=generator)
    targets = OFFSETS[task] + (states[:, -1] - CENTERS[task]) @ MAPS[task]
    return states, targets


EVAL_SETS = [sample(task, 200, torch.Generator().manual_seed(100 + task)) for task in range(2)]


def evaluate(model: TinyTransformer, pool: ModulationPool, task: int) -> tuple[Tensor, Tensor]:
    """(outputs, selected indices) on the task's evaluation set, plain cosine selection."""
    states, _ = EVAL_SETS[task]
    with torch.no_grad():
        indices = pool.select(model.query(states), training=False)
        with pool.selected(indices):
            return model(states), indices


def eval_loss(model: TinyTransformer, pool: ModulationPool, task: int) -> float:
    outputs, _ = evaluate(model, pool, task)
    return F.mse_loss(outputs, EVAL_SETS[task][1]).item()


def train_task(
    model: TinyTransformer,
    pool: ModulationPool,
    task: int,
    steps: int = TRAIN_STEPS,
    oracle: bool = False,
) -> Tensor:
    """Adam (fresh, as for every task) on the task; returns its selection counts; ends it."""
    optimizer = torch.optim.Adam(trainable_parameters(model), lr=1e-2)
    generator = torch.Generator().manual_seed(task)
    for _ in range(steps):
        states, targets = sample(task, 32, generator)
        query = model.query(states)
        if oracle:
            indices = pool.select_by_task(task, states.shape[0])
        else:
            indices = pool.select(query, training=True)
        with pool.selected(indices):
            loss = F.mse_loss(model(states), targets) + pool.pull_loss(query, indices)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    counts = pool.task_counts.clone()
    pool.on_task_end()
    return counts


def pool_entry(pool: ModulationPool, entry: int) -> dict[str, Tensor]:
    return {name: p[entry].detach().clone() for name, p in pool.named_parameters()}


def same_entry(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return all(torch.equal(a[name], b[name]) for name in a)


@dataclass
class TwoTaskRun:
    model: TinyTransformer
    base: TinyTransformer
    pool: ModulationPool
    before: dict[str, Tensor]
    """Every model parameter before training (cloned)."""
    initial_loss: list[float]
    counts: list[Tensor]
    """Training-time selection counts per task."""
    task0_outputs_after_task0: Tensor
    task0_entries_after_task0: dict[int, dict[str, Tensor]]


@pytest.fixture(scope="module", params=["lora", "ia3"])
def two_task_run(request: pytest.FixtureRequest) -> TwoTaskRun:
    """L2M trained on task 0, then task 1 (default config of the given kind)."""
    model, base, pool = modulated(ModulationConfig(kind=request.param))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    initial = [eval_loss(model, pool, task) for task in range(2)]
    counts = [train_task(model, pool, 0)]
    outputs0, _ = evaluate(model, pool, 0)
    entries0 = {int(e): pool_entry(pool, int(e)) for e in counts[0].nonzero().flatten()}
    counts.append(train_task(model, pool, 1))
    return TwoTaskRun(model, base, pool, before, initial, counts, outputs0, entries0)


# --- tests ----------------------------------------------------------------------------------------


def test_config_defaults_and_validation() -> None:
    lora, ia3 = ModulationConfig(), ModulationConfig(kind="ia3")
    assert (lora.pool_size, lora.top_k, lora.lora_rank, lora.lora_alpha) == (30, 1, 8, 16.0)
    assert lora.sites == ("attn.q", "attn.v", "mlp.fc", "mlp.proj") == DEFAULT_SITES["lora"]
    assert ia3.sites == ("attn.k", "attn.v", "mlp.proj")
    assert lora.usage_penalty and lora.pull_coef == 0.5 and lora.lora_scaling == 2.0
    single = ModulationConfig.single()
    assert (single.pool_size, single.usage_penalty, single.pull_coef) == (1, False, 0.0)
    assert ModulationConfig.per_task(10, kind="ia3").pool_size == 10
    for bad in (
        {"kind": "adapter"},
        {"sites": ("attn.x",)},
        {"sites": ("attn.q", "attn.q")},
        {"pool_size": 0},
        {"top_k": 31},
        {"lora_rank": 0},
        {"usage_epsilon": 0.0},
        {"pull_coef": -1.0},
    ):
        with pytest.raises(ConfigError):
            ModulationConfig(**bad)


@pytest.mark.parametrize("kind", ["lora", "ia3"])
def test_fresh_pool_leaves_outputs_unchanged(kind: str) -> None:
    model, base, pool = modulated(ModulationConfig(kind=kind, top_k=2))
    states, _ = EVAL_SETS[0]
    indices = torch.randint(0, 30, (states.shape[0], 2), generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), pool.selected(indices):
        assert torch.allclose(model(states), base(states), atol=1e-6)
    with torch.no_grad(), pool.disabled():
        assert torch.allclose(model(states), base(states), atol=1e-6)


def test_attach_wraps_sites_freezes_model_and_keeps_state_dict_keys() -> None:
    model, base, pool = modulated(ModulationConfig())
    assert [n for n, m in model.named_modules() if isinstance(m, ModulatedLinear)] == [
        f"blocks.{i}.{site}" for i in range(2) for site in DEFAULT_SITES["lora"]
    ]
    pool_ids = {id(p) for p in pool.parameters()}
    assert {id(p) for p in trainable_parameters(model)} == pool_ids
    for name, parameter in model.named_parameters():
        assert parameter.requires_grad == name.startswith("modulation_pool.")
    # The wrapped Linears share the base Parameters: checkpoint keys are unchanged.
    pool_keys = {f"modulation_pool.{key}" for key in pool.state_dict()}
    assert set(model.state_dict()) == set(base.state_dict()) | pool_keys
    assert "modulation_pool.task_counts" in pool_keys and "modulation_pool.usage" in pool_keys
    with pytest.raises(ConfigError, match="already has a pool"):
        attach_pool(model, pool)
    with pytest.raises(RuntimeError, match="no pool entries selected"):
        model(EVAL_SETS[0][0])


@pytest.mark.integration  # trains a model
def test_two_tasks_leave_every_base_parameter_bit_identical(two_task_run: TwoTaskRun) -> None:
    run = two_task_run
    pool_names = {f"modulation_pool.{name}" for name, _ in run.pool.named_parameters()}
    changed_pool = False
    for name, parameter in run.model.named_parameters():
        if name in pool_names:
            changed_pool |= not torch.equal(parameter, run.before[name])
        else:
            assert torch.equal(parameter, run.before[name]), name
    assert changed_pool
    for task in range(2):  # the modulation did learn each task
        assert eval_loss(run.model, run.pool, task) < 0.6 * run.initial_loss[task]


@pytest.mark.integration  # trains a model
def test_tasks_train_different_entries_and_evaluation_routes_by_task(
    two_task_run: TwoTaskRun,
) -> None:
    run = two_task_run
    used = [set(counts.nonzero().flatten().tolist()) for counts in run.counts]
    assert used[0] and used[1] and not used[0] & used[1]
    for task in range(2):
        _, indices = evaluate(run.model, run.pool, task)
        hits = torch.tensor([int(i) in used[task] for i in indices[:, 0]])
        assert hits.float().mean().item() >= 0.95, (task, indices[:, 0].tolist())
    # Task 1 never selected task 0's entries, so with a fresh optimizer they did not move
    # and task 0's evaluation outputs are exactly those at the end of task 0.
    for entry, values in run.task0_entries_after_task0.items():
        assert same_entry(values, pool_entry(run.pool, entry))
    assert torch.equal(evaluate(run.model, run.pool, 0)[0], run.task0_outputs_after_task0)


def test_usage_penalty_steers_a_new_task_to_an_unused_entry() -> None:
    model, _, pool = modulated(ModulationConfig())
    no_penalty_pool = copy.deepcopy(pool)
    no_penalty_pool.config = ModulationConfig(usage_penalty=False)
    states0, _ = EVAL_SETS[0]
    query0 = model.query(states0).detach()
    entry = int(pool.select(query0, training=False)[:, 0].mode().values)
    # Task 0 uses entry e heavily; its key is moved onto task 0's mean query.
    with torch.no_grad():
        for candidate in (pool, no_penalty_pool):
            candidate.keys[entry] = query0.mean(0)
    for _ in range(5):
        assert (pool.select(query0, training=True) == entry).all()
        no_penalty_pool.select(query0, training=True)
    assert pool.task_counts[entry] == 5 * len(query0) == pool.task_counts.sum()
    pool.on_task_end()
    no_penalty_pool.on_task_end()
    assert pool.task_counts.sum() == 0 and pool.usage[entry] == 1.0 and pool.tasks_ended == 1
    # Task 1's queries lie close to entry e's key.
    noise = 0.05 * torch.randn(query0.shape, generator=torch.Generator().manual_seed(5))
    query1 = query0 + noise * query0.norm(dim=1, keepdim=True)
    assert (F.cosine_similarity(query1, pool.keys[entry].detach()[None]) > 0.9).all()
    assert (pool.select(query1, training=False)[:, 0] == entry).all()
    assert (no_penalty_pool.select(query1, training=True)[:, 0] == entry).all()
    penalized = pool.select(query1, training=True)[:, 0]
    assert (penalized != entry).all()
    # Among the unused entries, still the most similar key wins.
    similarity = pool.similarity(query1)
    similarity[:, entry] = -2.0
    assert torch.equal(penalized, similarity.argmax(dim=1))


def test_first_task_selection_has_no_penalty_and_counts_only_while_training() -> None:
    model, _, pool = modulated(ModulationConfig())
    query = model.query(EVAL_SETS[0][0]).detach()
    evaluation = pool.select(query, training=False)
    assert pool.task_counts.sum() == 0
    assert torch.equal(pool.select(query, training=True), evaluation)
    assert pool.task_counts.sum() == len(query)


@pytest.mark.parametrize("kind", ["lora", "ia3"])
def test_batched_per_sample_selection_equals_a_loop_and_top2_averages(kind: str) -> None:
    model, _, pool = modulated(ModulationConfig(kind=kind, top_k=2))
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():  # a trained-looking pool: non-trivial modulations
        for name, parameter in pool.named_parameters():
            if name.startswith("lora_b"):
                parameter.normal_(0.0, 0.1, generator=generator)
            elif name.startswith("ia3"):
                parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
    states = EVAL_SETS[0][0][:6]
    for k in (1, 2):
        indices = torch.randint(0, 30, (6, k), generator=generator)
        with torch.no_grad():
            with pool.selected(indices):
                batched = model(states)
            looped = []
            for i in range(6):
                with pool.selected(indices[i : i + 1]):
                    looped.append(model(states[i : i + 1]))
        assert torch.allclose(batched, torch.cat(looped), atol=1e-5)
        if k == 1:
            with torch.no_grad(), pool.selected(indices[:1]):
                assert not torch.allclose(model(states[:1]), batched[1:2], atol=1e-3)
    # top_k = 2: each modulated Linear applies the mean of the two entries' modulations.
    a, b = 3, 17
    for linear in (m for m in model.modules() if isinstance(m, ModulatedLinear)):
        x = torch.randn(4, STEPS, linear.in_features, generator=generator)
        with torch.no_grad():
            outputs = {}
            for pair in ((a,), (b,), (a, b)):
                with pool.selected(torch.tensor([pair])):
                    outputs[pair] = linear(x)
        assert torch.allclose(outputs[(a, b)], (outputs[(a,)] + outputs[(b,)]) / 2, atol=1e-5)
    # select with top_k = 2: the two most similar keys, best first.
    query = model.query(states).detach()
    expected = F.cosine_similarity(query[:, None], pool.keys.detach()[None], dim=-1).topk(2).indices
    assert torch.equal(pool.select(query, training=False), expected)


@pytest.mark.integration  # trains a model
def test_oracle_per_task_entries() -> None:
    model, _, pool = modulated(ModulationConfig.per_task(2))
    assert torch.equal(pool.select_by_task(1, 4), torch.ones(4, 1, dtype=torch.long))
    with pytest.raises(ValueError):
        pool.select_by_task(2)
    initial = [pool_entry(pool, entry) for entry in range(2)]
    losses = [eval_loss(model, pool, 0)]
    counts = train_task(model, pool, 0, steps=100, oracle=True)
    assert counts.tolist() == [0, 0]  # the oracle bypasses select: nothing is counted
    after0 = [pool_entry(pool, entry) for entry in range(2)]
    assert not same_entry(after0[0], initial[0]) and same_entry(after0[1], initial[1])
    losses.append(eval_loss(model, pool, 0))
    train_task(model, pool, 1, steps=100, oracle=True)
    assert same_entry(pool_entry(pool, 0), after0[0])
    assert not same_entry(pool_entry(pool, 1), initial[1])
    states, targets = EVAL_SETS[0]
    with torch.no_grad(), pool.selected(pool.select_by_task(0)):  # (1, 1) broadcast to the batch
        assert F.mse_loss(model(states), targets).item() == pytest.approx(losses[1])
    assert losses[1] < 0.5 * losses[0]


@pytest.mark.integration  # trains a model
def test_single_shared_lora_is_trained_by_every_task() -> None:
    model, _, pool = modulated(ModulationConfig.single())
    query = torch.randn(10, D_MODEL)
    assert torch.equal(pool.select(query, training=False), torch.zeros(10, 1, dtype=torch.long))
    initial = pool_entry(pool, 0)
    losses = [eval_loss(model, pool, 1)]
    counts0 = train_task(model, pool, 0, steps=100)
    after0 = pool_entry(pool, 0)
    counts1 = train_task(model, pool, 1, steps=100)
    assert counts0.tolist() == counts1.tolist() == [100 * 32]
    assert not same_entry(after0, initial) and not same_entry(pool_entry(pool, 0), after0)
    assert torch.equal(pool.keys[0], initial["keys"])  # pull_coef 0: the key is unused
    losses.append(eval_loss(model, pool, 1))
    assert losses[1] < 0.5 * losses[0]


@pytest.mark.integration  # trains a model
def test_pool_state_dict_round_trip(two_task_run: TwoTaskRun, tmp_path) -> None:
    trained = copy.deepcopy(two_task_run.model)
    pool = trained.modulation_pool
    assert all(m.pool is pool for m in trained.modules() if isinstance(m, ModulatedLinear))
    path = tmp_path / "pool.pt"
    torch.save(pool.state_dict(), path)
    restored = copy.deepcopy(two_task_run.base)
    fresh = ModulationPool.from_model(restored, pool.config, torch.Generator().manual_seed(99))
    attach_pool(restored, fresh)
    assert not torch.equal(fresh.keys, pool.keys)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(fresh.usage, pool.usage) and int(fresh.tasks_ended) == 2
    for task in range(2):
        outputs, indices = evaluate(trained, pool, task)
        restored_outputs, restored_indices = evaluate(restored, fresh, task)
        assert torch.equal(indices, restored_indices)
        assert torch.allclose(outputs, restored_outputs, atol=1e-6)
        query = trained.query(EVAL_SETS[task][0]).detach()
        assert torch.equal(pool.select(query, training=True), fresh.select(query, training=True))
    assert torch.equal(pool.task_counts, fresh.task_counts)


def test_pull_loss_moves_only_the_chosen_keys_toward_their_queries() -> None:
    model, _, pool = modulated(ModulationConfig())
    query = model.query(EVAL_SETS[0][0][:8]).detach().requires_grad_(True)
    indices = torch.tensor([[2]] * 4 + [[5]] * 4)
    loss = pool.pull_loss(query, indices)
    expected = -0.5 * F.cosine_similarity(query, pool.keys[indices[:, 0]], dim=-1).mean()
    assert torch.allclose(loss, expected)
    loss.backward()
    moved = pool.keys.grad.abs().sum(dim=1).nonzero().flatten().tolist()
    assert moved == [2, 5]
    assert query.grad is None  # the query is detached: only keys move
    before = F.cosine_similarity(query, pool.keys[indices[:, 0]], dim=-1).mean()
    with torch.no_grad():
        pool.keys -= 1.0 * pool.keys.grad
    after = F.cosine_similarity(query, pool.keys[indices[:, 0]], dim=-1).mean()
    assert after > before


def test_parameter_share_of_the_paper_model() -> None:
    """6 layers, d = 768 (L2M's ~40M-parameter DT); only shapes are built (meta device)."""
    d, layers, obs, outputs, rank = 768, 6, 39, 6 * 64, 8
    with torch.device("meta"):
        model = TinyTransformer(obs, d, layers, outputs, heads=12)
        pools = {
            kind: ModulationPool.from_model(model, ModulationConfig(kind=kind))
            for kind in ("lora", "ia3")
        }
    per_block = 2 * 2 * d + 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    base = (obs * d + d) + layers * per_block + 2 * d + (d * outputs + outputs)
    assert sum(p.numel() for p in model.parameters()) == base
    # One entry: its key (d) plus, per layer, LoRA r(in + out) on q (d->d), v (d->d),
    # fc (d->4d), proj (4d->d); (IA)^3: k (d), v (d), the MLP activation (4d).
    lora_entry = d + layers * rank * (2 * d + 2 * d + 5 * d + 5 * d)
    ia3_entry = d + layers * (d + d + 4 * d)
    assert (lora_entry, ia3_entry) == (516_864, 28_416)
    assert pools["lora"].entry_parameter_count() == lora_entry
    assert pools["ia3"].entry_parameter_count() == ia3_entry
    shares = {kind: parameter_share(pool, model) for kind, pool in pools.items()}
    assert shares["lora"] == pytest.approx(lora_entry / base, rel=1e-12)
    assert shares["ia3"] == pytest.approx(ia3_entry / base, rel=1e-12)
    assert shares["lora"] < 0.015 and shares["ia3"] < 0.001
    print(
        f"\nbase {base:,} parameters; per entry: LoRA r8 {lora_entry:,} "
        f"({100 * shares['lora']:.3f}%), (IA)^3 {ia3_entry:,} ({100 * shares['ia3']:.4f}%); "
        f"pool of 30: LoRA {30 * 100 * shares['lora']:.1f}%, (IA)^3 {30 * 100 * shares['ia3']:.2f}%"
    )
