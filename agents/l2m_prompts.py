"""L2P (Wang et al. 2022, L2M's baseline), mode ``l2p``: a pool of prompts selected per episode
and prepended to the frozen model's input.

A pool of 100 prompts of 5 learned tokens, each with a key; the same query as L2M's pool picks
the top 5 keys (cosine, no usage penalty) and their 25 tokens are prepended to the input as a
prefix that every token attends to at every block (`PromptedDecisionTransformer`: the prefix
rides in the Transformer-XL cache, so agents/dt.py is unchanged); keys learn through a pull
loss; everything else is frozen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from crlgym.agents.dt import Context, DecisionTransformer, DTConfig
from crlgym.agents.l2m_strategy import SelectingStrategy

if TYPE_CHECKING:
    from crlgym.agents.l2m import L2MAgent, L2MConfig


class PromptPool(nn.Module):
    """L2P's prompts: ``keys`` (size, d) and ``prompts`` (size, length, d), uniform in [-1, 1]
    (block inputs are LayerNorm outputs, of that order)."""

    def __init__(
        self, size: int, length: int, top_k: int, d_model: int, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.top_k, self.pull_coef = top_k, 0.5
        self.keys = nn.Parameter(torch.rand(size, d_model, generator=generator) * 2 - 1)
        self.prompts = nn.Parameter(torch.rand(size, length, d_model, generator=generator) * 2 - 1)

    def select(self, query: Tensor) -> Tensor:
        """(B, top_k) prompts whose keys are most similar (cosine) to queries (B, d)."""
        with torch.no_grad():
            scores = F.normalize(query, dim=-1) @ F.normalize(self.keys, dim=-1).T
            return scores.topk(self.top_k, dim=1).indices

    def tokens(self, indices: Tensor) -> Tensor:
        """(B, top_k * length, d) the selected prompts' tokens, in selection order."""
        return self.prompts[indices].flatten(1, 2)

    def pull_loss(self, query: Tensor, indices: Tensor) -> Tensor:
        """-pull_coef * mean cos(query, chosen keys); only the keys move."""
        chosen = F.normalize(self.keys[indices], dim=-1)
        return (
            -self.pull_coef * (chosen * F.normalize(query.detach(), dim=-1)[:, None]).sum(-1).mean()
        )


class PromptedDecisionTransformer(DecisionTransformer):
    """A Decision Transformer whose every forward sees a prefix of prompt tokens.

    The selected prompts (``prompt_selection``, (B, k) or (1, k) indices into
    ``prompt_pool``) are the block-0 inputs of the prefix; the prefix's inputs to later blocks
    come from running it through the earlier blocks (it attends to itself only). They enter
    `DecisionTransformer.run` as extra cached tokens at position -1 and a far-future step, so
    the causal and local masks let every token attend to them, and are stripped from the
    context `run` returns (each call prepends them afresh, with the current prompts).
    """

    def __init__(self, observation_dim: int, action_dim: int, config: DTConfig) -> None:
        super().__init__(observation_dim, action_dim, config)
        self.prompt_pool: PromptPool | None = None  # becomes a submodule once assigned
        self.prompt_selection: Tensor | None = None

    def run(
        self,
        tokens: Tensor,
        steps: Tensor,
        positions: Tensor,
        state_index: Tensor,
        context: Context,
        episode_start: Tensor | None,
        valid: Tensor | None = None,
    ) -> tuple[Tensor, Context]:
        pool, selection = self.prompt_pool, self.prompt_selection
        if pool is None or selection is None:
            return super().run(tokens, steps, positions, state_index, context, episode_start, valid)
        prompts = pool.tokens(selection).expand(tokens.shape[0], -1, -1)
        n, device = prompts.shape[1], tokens.device
        everything = torch.ones(n, n, dtype=torch.bool, device=device)
        no_states = torch.zeros(0, dtype=torch.long, device=device)
        inputs, x = [], prompts
        for index, block in enumerate(self.blocks):
            inputs.append(x)
            if index + 1 < len(self.blocks):
                x, _ = block(x, x[:, :0], everything, no_states, None, None)
        far = int(steps.max()) + self.config.context  # inside every query's local window
        prefixed = Context(
            caches=[torch.cat([p, c], dim=1) for p, c in zip(inputs, context.caches, strict=True)],
            positions=torch.cat([positions.new_full((n,), -1), context.positions]),
            steps=torch.cat([steps.new_full((n,), far), context.steps]),
            memories=context.memories,
            valid=None
            if context.valid is None
            else torch.cat([context.valid.new_ones(tokens.shape[0], n), context.valid], dim=1),
        )
        outputs, new = super().run(
            tokens, steps, positions, state_index, prefixed, episode_start, valid
        )
        stripped = Context(
            caches=[cache[:, n:] for cache in new.caches],
            positions=new.positions[n:],
            steps=new.steps[n:],
            memories=new.memories,
            valid=None if new.valid is None else new.valid[:, n:],
        )
        return outputs, stripped


class PromptStrategy(SelectingStrategy):
    """The frozen pretrained model behind a `PromptPool` whose selected prompts are prepended
    to every forward."""

    name = "l2p"
    description = "L2P: a pool of prompts selected per episode, prepended as a prefix"

    def __init__(self, config: L2MConfig) -> None:
        super().__init__(config)
        self._model: PromptedDecisionTransformer | None = None

    @property
    def model(self) -> PromptedDecisionTransformer:
        if self._model is None:
            raise RuntimeError("the strategy is not attached to an agent yet")
        return self._model

    @property
    def prompts(self) -> PromptPool:
        pool = self.model.prompt_pool
        assert pool is not None
        return pool

    def attach(self, agent: L2MAgent, weights: Mapping[str, Tensor], seed: int) -> None:
        """Swap in a `PromptedDecisionTransformer` with the pretrained weights, frozen, and
        its prompt pool (a submodule: in state_dict and checkpoints)."""
        model = PromptedDecisionTransformer(agent.observation_dim, agent.action_dim, agent.config)
        model.load_state_dict(weights)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        generator = torch.Generator().manual_seed(seed)
        config = self.config
        model.prompt_pool = PromptPool(
            config.prompt_pool_size, config.prompt_length, config.prompt_top_k,
            agent.config.d_model, generator,
        )  # fmt: skip
        self._model = model.to(agent.device)
        agent.model = self._model

    def choose(
        self, agent: L2MAgent, query: Tensor, task_index: int, training: bool
    ) -> Tensor | None:
        return self.prompts.select(query)

    def apply(self, selection: Tensor | None) -> None:
        self.model.prompt_selection = selection

    def loss_term(self, agent: L2MAgent) -> Tensor | None:
        if self.selection is None:
            return None
        assert self.query is not None
        return self.prompts.pull_loss(self.query, self.selection)

    @contextmanager
    def acting(self, agent: L2MAgent, observation: np.ndarray) -> Iterator[None]:
        self.select_for_acting(agent, observation)
        model = self.model
        training_selection, model.prompt_selection = model.prompt_selection, self.act_selection
        try:
            yield
        finally:
            model.prompt_selection = training_selection

    def entry_share(self, agent: L2MAgent) -> float | None:
        """The top_k selected prompts and their keys / parameters of the base model."""
        prompts = self.prompts
        base = sum(p.numel() for n, p in self.model.named_parameters()
                   if not n.startswith("prompt_pool."))  # fmt: skip
        per_prompt = prompts.prompts[0].numel() + prompts.keys[0].numel()
        return prompts.top_k * per_prompt / base


__all__ = ["PromptPool", "PromptStrategy", "PromptedDecisionTransformer"]
