"""L2M: a pool of modulators over a frozen pretrained transformer (brief section 3).

Learning to Modulate pre-trained models (Schmied et al. 2023) keeps a pretrained model
frozen and learns, for continual fine-tuning, a pool of small modulators. Each pool entry is a
learnable key (dimension = the model width) plus a modulator for every block. For every input
the entry whose key is most similar (cosine) to a query, the mean of the embedded state
tokens, modulates the whole model. Reads top to bottom:

1. `ModulationConfig`: every hyperparameter, defaults = L2M, and the constructors of the
   baselines that share the machinery (`ModulationConfig.single`, `ModulationConfig.per_task`).
2. `ModulationPool`: keys, modulators and usage counts; `select` (cosine top-k, usage
   penalty while training), `pull_loss`, `on_task_end`, `select_by_task`, and the selection that
   the next forward pass uses (`ModulationPool.selected`, `ModulationPool.active`).
3. `ModulatedLinear`: a frozen ``nn.Linear`` plus the selected entries' modulation.
4. `attach_pool`, `trainable_parameters`, `parameter_share`, `state_query`.

Modulators (``kind``):

- ``lora``: W x + b + (alpha / rank) B A x, A (rank x in) initialized like a Linear weight
  (uniform +-1/sqrt(in)), B (out x rank) initialized to zero, so a fresh pool leaves the
  model's outputs unchanged. Default sites: attention queries and values and both MLP
  Linears ("LoRA (rank 8) on attention q/v and the MLP").
- ``ia3``: (IA)^3 vectors, initialized to one, scaling the keys, the values and the MLP
  activations (the input of ``mlp.proj``). A vector scales its site's output, except at
  ``mlp.proj`` (`IA3_INPUT_SITES`) where it scales the input.

With ``top_k`` > 1 the modulations of the selected entries are averaged. Every sample of a
batch may use its own entries (gathered per sample, no loop over samples).

Selection (`ModulationPool.select`): s = cos(query, key) for every entry; while training with
``usage_penalty`` and once an earlier task has ended, s' = (s + 1) / 2 * w, with the usage
weights w = normalized 1 / (f + usage_epsilon), f = the entries' share of the selections of the
earlier tasks (each task weighted equally). With the default tiny epsilon an entry that an
earlier task used is practically never selected while training a new task, so new tasks train
fresh entries and cannot overwrite earlier ones; at evaluation plain cosine top-k picks among
all entries. Keys learn through `ModulationPool.pull_loss`, -pull_coef * mean
cos(query, chosen key), added to the training loss; only the keys move (the query is
detached), and only the chosen ones.

Baselines sharing this machinery:

- L2M-LoRA / L2M-(IA)^3: ``ModulationConfig()`` / ``ModulationConfig(kind="ia3")``.
- Single LoRA (or (IA)^3) fine-tuned across all tasks: ``ModulationConfig.single()``, one
  entry, no penalty, no pull loss; `ModulationPool.select` always returns entry 0 (the key
  is ignored), so the one modulator is trained on every task in turn (it forgets).
- Per-task LoRA with the true task id, an oracle upper bound:
  ``ModulationConfig.per_task(num_tasks)`` and `ModulationPool.select_by_task` instead of
  `ModulationPool.select` (keys unused).
- (L2P prompt pools and EWC on the transformer live elsewhere.)

What a model must expose: an ``nn.ModuleList`` ``blocks`` whose blocks hold the configured
sites as ``nn.Linear`` submodules named ``attn.q``, ``attn.k``, ``attn.v``, ``attn.out``,
``mlp.fc``, ``mlp.proj`` (``mlp.fc`` -> activation -> ``mlp.proj``), all applied to
batch-first inputs (B, ..., features); the query comes from the model's state embedding
(`state_query`). `attach_pool` replaces the Linears in place with `ModulatedLinear` modules
that share the original weight and bias Parameters, so the model's state_dict keys are
unchanged; the pool itself is registered as ``model.modulation_pool`` (its keys appear under
that prefix, it moves with ``model.to``). Load the pretrained weights before attaching.

Training loop (one task)::

    pool = ModulationPool.from_model(model, ModulationConfig())
    attach_pool(model, pool)
    optimizer = torch.optim.Adam(trainable_parameters(model))  # fresh for every task
    query = state_query(model.embed_state(states))
    indices = pool.select(query, training=True)
    with pool.selected(indices):
        loss = task_loss(model(...)) + pool.pull_loss(query, indices)
    ...
    pool.on_task_end()  # at the task's end: its usage now steers later tasks away

Use a fresh optimizer for every task and no weight decay on the pool: the pool's Parameters
stack all entries, so entries that the current task does not select get exact zero
gradients, and a fresh Adam then leaves them bit-identical; Adam moments carried over from an
earlier task (or weight decay) would keep moving that task's entries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from crlgym.errors import ConfigError

SITES: tuple[str, ...] = ("attn.q", "attn.k", "attn.v", "attn.out", "mlp.fc", "mlp.proj")
"""Linears of a block that a modulator can sit on, as submodule paths inside the block."""

DEFAULT_SITES: dict[str, tuple[str, ...]] = {
    "lora": ("attn.q", "attn.v", "mlp.fc", "mlp.proj"),
    "ia3": ("attn.k", "attn.v", "mlp.proj"),
}
"""L2M's sites per modulator kind: LoRA on queries, values and the MLP; (IA)^3 on keys,
values and the MLP activation (the input of ``mlp.proj``)."""

IA3_INPUT_SITES: frozenset[str] = frozenset({"mlp.proj"})
"""(IA)^3 sites whose vector scales the Linear's input (the MLP activation), not its output."""

KINDS: tuple[str, ...] = ("lora", "ia3")
"""Valid `ModulationConfig.kind` values."""

POOL_ATTRIBUTE = "modulation_pool"
"""Name under which `attach_pool` registers the pool on the model."""


# --- configuration ----------------------------------------------------------------------------


@dataclass
class ModulationConfig:
    """Modulation pool hyperparameters; defaults are L2M's (Schmied et al. 2023)."""

    kind: str = "lora"
    """Modulator: ``lora`` (low-rank weight update) or ``ia3`` (learned scaling vectors)."""
    pool_size: int = 30
    """Entries in the pool, each a key plus a modulator for every block."""
    top_k: int = 1
    """Entries selected per sample; their modulations are averaged."""
    lora_rank: int = 8
    """LoRA rank r."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator: the update is (alpha / r) B A x."""
    sites: tuple[str, ...] = ()
    """Modulated Linears of every block (`SITES`); empty = the kind's `DEFAULT_SITES`."""
    usage_penalty: bool = True
    """While training, multiply similarities by normalized inverse usage of earlier tasks."""
    usage_epsilon: float = 1e-6
    """Added to usage shares before inverting; tiny = used entries are practically excluded."""
    pull_coef: float = 0.5
    """Weight of the key pull loss, -pull_coef * mean cos(query, chosen key)."""
    key_init_range: float = 1.0
    """Keys start uniform in [-key_init_range, key_init_range]."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        self.sites = tuple(self.sites) if self.sites else DEFAULT_SITES[self.kind]
        unknown = [site for site in self.sites if site not in SITES]
        if unknown:
            raise ConfigError(f"unknown sites {unknown}; choose from {', '.join(SITES)}")
        if len(set(self.sites)) != len(self.sites):
            raise ConfigError(f"sites repeat: {self.sites}")
        if self.pool_size < 1:
            raise ConfigError(f"pool_size must be >= 1, got {self.pool_size}")
        if not 1 <= self.top_k <= self.pool_size:
            raise ConfigError(f"top_k must be in [1, pool_size={self.pool_size}], got {self.top_k}")
        if self.lora_rank < 1 or self.lora_alpha <= 0:
            raise ConfigError("lora_rank must be >= 1 and lora_alpha positive")
        if self.usage_epsilon <= 0 or self.pull_coef < 0 or self.key_init_range <= 0:
            raise ConfigError("usage_epsilon and key_init_range must be positive, pull_coef >= 0")

    @classmethod
    def single(cls, kind: str = "lora", **overrides: Any) -> ModulationConfig:
        """The single-modulator baseline: one entry shared by every task (no keys, no penalty)."""
        return cls(kind=kind, pool_size=1, top_k=1, usage_penalty=False, pull_coef=0.0, **overrides)

    @classmethod
    def per_task(cls, num_tasks: int, kind: str = "lora", **overrides: Any) -> ModulationConfig:
        """The oracle baseline: one entry per task, picked by `ModulationPool.select_by_task`."""
        return cls(
            kind=kind, pool_size=num_tasks, top_k=1, usage_penalty=False, pull_coef=0.0, **overrides
        )

    @property
    def lora_scaling(self) -> float:
        """alpha / r."""
        return self.lora_alpha / self.lora_rank

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the pool ---------------------------------------------------------------------------------


def _param_name(site: str) -> str:
    """ParameterDict key of a site (dots are not allowed there)."""
    return site.replace(".", "_")


def _blocks(model: nn.Module) -> nn.ModuleList:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        raise ConfigError("the model needs its transformer blocks in an nn.ModuleList `blocks`")
    return blocks


def _site_linear(block: nn.Module, site: str, block_index: int) -> nn.Linear:
    try:
        module = block.get_submodule(site)
    except AttributeError as error:
        raise ConfigError(f"block {block_index} has no submodule {site!r}") from error
    if not isinstance(module, nn.Linear):
        raise ConfigError(f"blocks.{block_index}.{site} is {type(module).__name__}, not nn.Linear")
    return module


class ModulationPool(nn.Module):
    """Keys, per-entry modulators for every block and site, and usage counts.

    Parameters (every one has the pool entries as its first dimension):

    - ``keys`` (pool_size, d_model);
    - LoRA: ``lora_a[site]`` (pool_size, layers, rank, in), ``lora_b[site]``
      (pool_size, layers, out, rank);
    - (IA)^3: ``ia3[site]`` (pool_size, layers, features), features = out, or in at
      `IA3_INPUT_SITES`.

    Buffers: ``task_counts`` (selections while training the current task), ``usage`` (the sum
    over ended tasks of each task's selection shares), ``tasks_ended``.

    The selection that wrapped Linears apply is `active` ((B, k) or (1, k) entry indices; set it
    directly or with `selected`); `disabled` runs the bare frozen model.
    """

    task_counts: Tensor
    usage: Tensor
    tasks_ended: Tensor

    def __init__(
        self,
        config: ModulationConfig,
        num_layers: int,
        d_model: int,
        site_shapes: Mapping[str, tuple[int, int]],
        generator: torch.Generator | None = None,
    ) -> None:
        """
        Args:
            config: the hyperparameters.
            num_layers: transformer blocks to modulate.
            d_model: query and key width.
            site_shapes: (in_features, out_features) of every configured site's Linear.
            generator: random source for the initialization (default: torch's global one).
        """
        super().__init__()
        missing = [site for site in config.sites if site not in site_shapes]
        if missing:
            raise ConfigError(f"site_shapes lacks the configured sites {missing}")
        self.config, self.num_layers, self.d_model = config, num_layers, d_model
        self.site_shapes = {site: tuple(site_shapes[site]) for site in config.sites}
        size, rank = config.pool_size, config.lora_rank

        def uniform(shape: tuple[int, ...], bound: float) -> nn.Parameter:
            values = torch.rand(shape, generator=generator) * (2 * bound) - bound
            return nn.Parameter(values)

        self.keys = uniform((size, d_model), config.key_init_range)
        self.lora_a = nn.ParameterDict()
        self.lora_b = nn.ParameterDict()
        self.ia3 = nn.ParameterDict()
        for site, (width_in, width_out) in self.site_shapes.items():
            name = _param_name(site)
            if config.kind == "lora":
                # Kaiming-uniform with a = sqrt(5), nn.Linear's default: bound 1 / sqrt(fan_in).
                bound = 1 / math.sqrt(width_in)
                self.lora_a[name] = uniform((size, num_layers, rank, width_in), bound)
                self.lora_b[name] = nn.Parameter(torch.zeros(size, num_layers, width_out, rank))
            else:
                width = width_in if site in IA3_INPUT_SITES else width_out
                self.ia3[name] = nn.Parameter(torch.ones(size, num_layers, width))
        self.register_buffer("task_counts", torch.zeros(size, dtype=torch.long))
        self.register_buffer("usage", torch.zeros(size))
        self.register_buffer("tasks_ended", torch.zeros((), dtype=torch.long))
        self._active: Tensor | None = None
        self.enabled = True

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        config: ModulationConfig,
        generator: torch.Generator | None = None,
    ) -> ModulationPool:
        """A pool shaped for ``model``: layers = len(model.blocks), widths from the sites' Linears.

        d_model = ``in_features`` of the first block's ``attn.q``. Every block must have the
        same site shapes (GPT-style).
        """
        blocks = _blocks(model)
        shapes = {}
        for site in config.sites:
            found = {
                (linear.in_features, linear.out_features)
                for linear in (_site_linear(block, site, i) for i, block in enumerate(blocks))
            }
            if len(found) != 1:
                raise ConfigError(f"blocks differ in the shape of {site}: {sorted(found)}")
            shapes[site] = found.pop()
        d_model = _site_linear(blocks[0], "attn.q", 0).in_features
        return cls(config, len(blocks), d_model, shapes, generator=generator)

    # --- selection ------------------------------------------------------------------------

    def similarity(self, query: Tensor) -> Tensor:
        """(B, pool_size) cosine similarity of queries (B, d_model) to the keys."""
        if query.dim() != 2 or query.shape[1] != self.d_model:
            raise ValueError(f"query must be (B, {self.d_model}), got {tuple(query.shape)}")
        return F.normalize(query, dim=-1) @ F.normalize(self.keys, dim=-1).T

    def usage_weights(self) -> Tensor:
        """(pool_size,) normalized inverse usage shares of the ended tasks (sum 1)."""
        total = self.usage.sum().clamp(min=1e-12)
        inverse = 1.0 / (self.usage / total + self.config.usage_epsilon)
        return inverse / inverse.sum()

    def select(self, query: Tensor, training: bool) -> Tensor:
        """(B, top_k) entry indices for queries (B, d_model), best first.

        Training: cosine similarity times the usage weights (`usage_weights`, when
        ``usage_penalty`` is on and an ended task used the pool), and the selections are
        counted for this task. Evaluation: plain cosine top-k, nothing counted. A one-entry
        pool always selects entry 0.
        """
        with torch.no_grad():
            if self.config.pool_size == 1:
                if query.dim() != 2:
                    raise ValueError(f"query must be (B, {self.d_model}), got {tuple(query.shape)}")
                indices = torch.zeros(query.shape[0], 1, dtype=torch.long, device=query.device)
            else:
                scores = self.similarity(query)
                if training and self.config.usage_penalty and bool(self.usage.sum() > 0):
                    scores = (scores + 1) / 2 * self.usage_weights()
                indices = scores.topk(self.config.top_k, dim=1).indices
            if training:
                self.record_usage(indices)
        return indices

    def select_by_task(self, task_index: int, batch_size: int = 1) -> Tensor:
        """(batch_size, 1) indices all = ``task_index``: the oracle baseline, keys bypassed."""
        if not 0 <= task_index < self.config.pool_size:
            raise ValueError(f"task {task_index} has no entry in a pool of {self.config.pool_size}")
        return torch.full((batch_size, 1), task_index, dtype=torch.long, device=self.keys.device)

    def record_usage(self, indices: Tensor) -> None:
        """Count selections (any shape of entry indices) for the current task."""
        counts = torch.bincount(indices.reshape(-1), minlength=self.config.pool_size)
        self.task_counts += counts.to(self.task_counts.device)

    def on_task_end(self) -> None:
        """Fold the current task's selection shares into ``usage``; start counting afresh."""
        total = self.task_counts.sum()
        if total > 0:
            self.usage += self.task_counts.to(self.usage.dtype) / total
        self.task_counts.zero_()
        self.tasks_ended += 1

    def pull_loss(self, query: Tensor, indices: Tensor) -> Tensor:
        """-pull_coef * mean over samples and selections of cos(query, key[chosen]).

        The query is detached: only the chosen keys move (toward their queries).
        """
        queries = F.normalize(query.detach(), dim=-1)[:, None]  # (B, 1, d)
        chosen = F.normalize(self.keys[indices], dim=-1)  # (B, k, d)
        return -self.config.pull_coef * (chosen * queries).sum(-1).mean()

    # --- the selection the next forward uses --------------------------------------------------

    @property
    def active(self) -> Tensor | None:
        """(B, k) or (1, k) entry indices that wrapped Linears apply; None = none set."""
        return self._active

    @active.setter
    def active(self, indices: Tensor | None) -> None:
        if indices is not None:
            if indices.dim() != 2 or indices.dtype != torch.long or indices.shape[1] < 1:
                got = f"{indices.dtype} {tuple(indices.shape)}"
                raise ValueError(f"indices must be a long (B, k) tensor, got {got}")
            if bool((indices < 0).any() | (indices >= self.config.pool_size).any()):
                raise ValueError(f"indices out of range for a pool of {self.config.pool_size}")
        self._active = indices

    @contextmanager
    def selected(self, indices: Tensor) -> Iterator[None]:
        """Apply entries ``indices`` ((B, k), or (1, k) for the whole batch) inside the block."""
        previous, self.active = self._active, indices
        try:
            yield
        finally:
            self._active = previous

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """Run the bare frozen model (no modulation) inside the block."""
        previous, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = previous

    def indices_for(self, batch_size: int) -> Tensor:
        """The active (batch_size, k) indices; a (1, k) selection is broadcast."""
        indices = self._active
        if indices is None:
            raise RuntimeError(
                "no pool entries selected: wrap the forward in `pool.selected(indices)` "
                "(or `pool.disabled()` for the bare model)"
            )
        if indices.shape[0] == batch_size:
            return indices
        if indices.shape[0] == 1:
            return indices.expand(batch_size, -1)
        raise ValueError(f"selection for {indices.shape[0]} samples, input has {batch_size}")

    # --- modulations ----------------------------------------------------------------------

    def lora_delta(self, layer: int, site: str, x: Tensor, indices: Tensor) -> Tensor:
        """(alpha / r) * mean over the k selections of B A x, per sample: x (B, ..., in)."""
        name = _param_name(site)
        a = self.lora_a[name][:, layer][indices]  # (B, k, r, in)
        b = self.lora_b[name][:, layer][indices]  # (B, k, out, r)
        flat = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, N, in)
        low = torch.einsum("bni,bkri->bnkr", flat, a)
        scaling = self.config.lora_scaling / indices.shape[1]  # the mean over the k selections
        delta = torch.einsum("bnkr,bkor->bno", low, b) * scaling
        return delta.reshape(*x.shape[:-1], delta.shape[-1])

    def ia3_scale(self, layer: int, site: str, indices: Tensor, dims: int) -> Tensor:
        """(B, 1, ..., features) mean of the selected (IA)^3 vectors, for a ``dims``-D input."""
        vectors = self.ia3[_param_name(site)][:, layer][indices].mean(1)  # (B, features)
        return vectors.reshape(vectors.shape[0], *([1] * (dims - 2)), vectors.shape[1])

    def entry_parameter_count(self) -> int:
        """Parameters of one pool entry: its key plus its modulators in every block."""
        return sum(parameter[0].numel() for parameter in self.parameters())

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"kind={c.kind}, pool_size={c.pool_size}, top_k={c.top_k}, layers={self.num_layers}, "
            f"d_model={self.d_model}, sites={list(c.sites)}"
        )


# --- the wrapped Linear ---------------------------------------------------------------------


class ModulatedLinear(nn.Linear):
    """A frozen Linear plus the modulation of the pool entries selected for each sample.

    Shares ``weight`` and ``bias`` (the same Parameter objects) with the Linear it replaces, so
    state_dict keys stay those of the unwrapped model. The pool is referenced, not registered
    as a submodule (it is registered once, on the model, by `attach_pool`).
    """

    _pool: ModulationPool

    def __init__(self, base: nn.Linear, pool: ModulationPool, block_index: int, site: str) -> None:
        nn.Module.__init__(self)
        if site not in pool.site_shapes:
            raise ConfigError(f"the pool has no modulators for site {site!r}")
        if (base.in_features, base.out_features) != pool.site_shapes[site]:
            raise ConfigError(
                f"blocks.{block_index}.{site} is {base.in_features}->{base.out_features}, "
                f"the pool expects {pool.site_shapes[site]}"
            )
        if not 0 <= block_index < pool.num_layers:
            raise ConfigError(f"block {block_index} outside the pool's {pool.num_layers} layers")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.register_parameter("bias", base.bias)
        self.block_index, self.site = block_index, site
        self.scales_input = pool.config.kind == "ia3" and site in IA3_INPUT_SITES
        object.__setattr__(self, "_pool", pool)  # a plain reference: not a submodule

    @property
    def pool(self) -> ModulationPool:
        return self._pool

    def forward(self, x: Tensor) -> Tensor:
        pool = self._pool
        if not pool.enabled:
            return F.linear(x, self.weight, self.bias)
        if x.dim() < 2:
            raise ValueError("modulated Linears need batch-first inputs (B, ..., features)")
        indices = pool.indices_for(x.shape[0])
        if pool.config.kind == "lora":
            out = F.linear(x, self.weight, self.bias)
            return out + pool.lora_delta(self.block_index, self.site, x, indices)
        scale = pool.ia3_scale(self.block_index, self.site, indices, x.dim())
        if self.scales_input:
            return F.linear(x * scale, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias) * scale

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, block={self.block_index}, site={self.site}"


# --- plugging a pool into a model -------------------------------------------------------------


def attach_pool(model: nn.Module, pool: ModulationPool) -> list[str]:
    """Freeze ``model`` and modulate it with ``pool``, in place.

    Every parameter of the model is frozen (requires_grad False); each configured site Linear of
    every block becomes a `ModulatedLinear`; the pool is registered as ``model.modulation_pool``
    (trainable) and moved to the model's device.

    Returns:
        The wrapped modules' names, e.g. ``blocks.0.attn.q``.
    """
    if hasattr(model, POOL_ATTRIBUTE):
        raise ConfigError(f"the model already has a pool ({POOL_ATTRIBUTE})")
    blocks = _blocks(model)
    if len(blocks) != pool.num_layers:
        raise ConfigError(f"the model has {len(blocks)} blocks, the pool {pool.num_layers} layers")
    targets = []
    for index, block in enumerate(blocks):
        for site in pool.config.sites:
            linear = _site_linear(block, site, index)
            if isinstance(linear, ModulatedLinear):
                raise ConfigError(f"blocks.{index}.{site} is already modulated")
            targets.append((index, block, site, linear))
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    names = []
    for index, block, site, linear in targets:
        parent_path, _, leaf = site.rpartition(".")
        parent = block.get_submodule(parent_path) if parent_path else block
        setattr(parent, leaf, ModulatedLinear(linear, pool, index, site))
        names.append(f"blocks.{index}.{site}")
    first = next(iter(model.parameters()), None)
    if first is not None:
        pool.to(first.device)
    model.add_module(POOL_ATTRIBUTE, pool)
    return names


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that still learn (after `attach_pool`: the pool's)."""
    return [parameter for parameter in model.parameters() if parameter.requires_grad]


def _count(parameters: Iterable[nn.Parameter]) -> int:
    return sum(parameter.numel() for parameter in parameters)


def parameter_share(pool: ModulationPool, model: nn.Module) -> float:
    """Parameters of one pool entry (key + modulators) / parameters of the base model.

    The base model's count excludes the pool, whether or not it is attached.
    """
    in_pool = {id(parameter) for parameter in pool.parameters()}
    base = _count(p for p in model.parameters() if id(p) not in in_pool)
    if base == 0:
        raise ValueError("the model has no parameters outside the pool")
    return pool.entry_parameter_count() / base


def state_query(embedded_states: Tensor, mask: Tensor | None = None) -> Tensor:
    """L2M's query: the mean of the embedded state tokens of the context.

    Args:
        embedded_states: (B, T, d_model) state-token embeddings.
        mask: optional (B, T) bool, True where a token is real (padding excluded).

    Returns:
        (B, d_model).
    """
    if mask is None:
        return embedded_states.mean(dim=1)
    weights = mask.to(embedded_states.dtype)[..., None]
    return (embedded_states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
