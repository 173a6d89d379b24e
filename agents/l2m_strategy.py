"""How an L2M fine-tuning mode plugs into `crlgym.agents.l2m.L2MAgent`.

A mode (``--l2m-mode``) is a `FineTuningStrategy`: the agent (a Decision Transformer built
from a pretrained checkpoint) calls these named hooks and nothing mode-specific lives in the
agent. Every hook has a default, so a mode overrides only what it changes; the defaults are
a frozen base model trained by nothing but what `attach` made trainable, with a fresh Adam per
task (`FullFineTuning` in agents/l2m_full.py overrides `optimizer` to train every weight).

Modes register by name in agents/l2m_modes.py (`STRATEGIES`), as the SAC side's continual
methods do in agents/methods/__init__.py: a new mode is one new class.

`SelectingStrategy` is the shared part of the modes that pick learned entries per episode
from a query (L2M's modulation pool, L2P's prompts): the query is the mean embedded state of
the first ``context`` steps of an episode (`crlgym.agents.modulation.state_query`), a
training row holds its selection for its whole episode, and acting selects again after each
of the first ``context`` steps and holds the selection from step ``context - 1`` on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from crlgym.agents.modulation import state_query, trainable_parameters

if TYPE_CHECKING:
    from crlgym.agents.dt import _Batch
    from crlgym.agents.l2m import L2MAgent, L2MConfig


class FineTuningStrategy:
    """Base class of L2M fine-tuning modes (hooks the agent calls, in the order it calls them).

    Args:
        config: the fine-tuning options (each mode reads its own).
    """

    name: ClassVar[str] = ""
    """The ``l2m_mode`` that selects this strategy."""
    description: ClassVar[str] = ""
    """One line for help texts."""

    def __init__(self, config: L2MConfig) -> None:
        self.config = config

    def attach(self, agent: L2MAgent, weights: Mapping[str, Tensor], seed: int) -> None:
        """Load the pretrained ``weights`` into ``agent.model`` and add (or swap in) what this
        mode trains; called once, at the end of the agent's construction. Default: the weights
        only, every one trainable."""
        agent.model.load_state_dict(weights)

    def optimizer(self, agent: L2MAgent) -> torch.optim.Optimizer:
        """A fresh optimizer (each task start). Default: Adam without weight decay over the
        trainable parameters (entries another task selected then stay bit-identical)."""
        return torch.optim.Adam(trainable_parameters(agent.model), lr=agent.config.learning_rate)

    def on_task_start(self, agent: L2MAgent, task_index: int) -> None:
        """After the agent loaded the task's data and made its fresh optimizer."""

    def on_batch(self, agent: L2MAgent, batch: _Batch) -> None:
        """A training batch was drawn (not on a restore, which restores `state_dict`): set what
        its forwards use, e.g. pool entries per row."""

    def before_update(self, agent: L2MAgent) -> None:
        """Before each gradient update (e.g. forget caches of the weights it changes)."""

    def loss_term(self, agent: L2MAgent) -> Tensor | None:
        """A term added to the training loss of the batch in progress; None for nothing."""
        return None

    def on_task_end(self, agent: L2MAgent, task_index: int) -> None:
        """The task's budget is spent; its data is still loaded (the agent drops it after)."""

    def on_episode_start(self, agent: L2MAgent, task_index: int) -> None:
        """An acting episode on ``task_index`` starts."""

    @contextmanager
    def acting(self, agent: L2MAgent, observation: np.ndarray) -> Iterator[None]:
        """Context of one acting step's forward (``agent._act_step`` is the step); must leave
        the agent's model and selections for training as it found them."""
        yield

    def acting_entry(self) -> int | None:
        """The learned entry the running episode acts with (top-1), None for none."""
        return None

    def entry_share(self, agent: L2MAgent) -> float | None:
        """Trainable parameters per task / parameters of the base model; None when every
        weight trains."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """What a restored agent needs beyond the model's and optimizer's state (tensors and
        plain values, ``weights_only``-loadable)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned (or what older versions saved)."""


class SelectingStrategy(FineTuningStrategy):
    """A mode that selects learned entries per episode from a query (see the module doc).

    Subclasses say how entries are chosen (`choose`) and how a training selection reaches the
    model (`apply`), and act with ``act_selection`` in `acting`.
    """

    def __init__(self, config: L2MConfig) -> None:
        super().__init__(config)
        self.selection: Tensor | None = None
        """(B, k) entries of the training batch's rows."""
        self.query: Tensor | None = None
        """(B, d) their queries (for the pull loss)."""
        self.act_states: list[Tensor] = []
        """States of the running acting episode's first ``context`` steps."""
        self.act_selection: Tensor | None = None
        """(1, k) entries the running acting episode uses; None for the bare model."""

    def choose(
        self, agent: L2MAgent, query: Tensor, task_index: int, training: bool
    ) -> Tensor | None:
        """(B, k) entries for queries (B, d) on ``task_index``; None for the bare model."""
        raise NotImplementedError

    def apply(self, selection: Tensor | None) -> None:
        """Make ``selection`` the one training forwards use."""
        raise NotImplementedError

    @torch.no_grad()
    def query_of(self, agent: L2MAgent, states: Tensor, mask: Tensor | None) -> Tensor:
        """(B, d) queries of states (B, T, observation_dim), padding masked out."""
        return state_query(agent.model.embed_state(states), mask)

    def on_batch(self, agent: L2MAgent, batch: _Batch) -> None:
        assert agent.current_task is not None
        self.query = self.query_of(agent, *agent._episode_openings(batch))
        self.selection = self.choose(agent, self.query, agent.current_task, training=True)
        self.apply(self.selection)

    def on_task_end(self, agent: L2MAgent, task_index: int) -> None:
        self.selection, self.query = None, None

    def on_episode_start(self, agent: L2MAgent, task_index: int) -> None:
        self.act_states, self.act_selection = [], None

    def select_for_acting(self, agent: L2MAgent, observation: np.ndarray) -> None:
        """Update ``act_selection`` from the states seen so far during the first ``context``
        steps; from step ``context - 1`` on it is held (the one training used)."""
        if agent._act_step < agent.config.context:
            state = torch.as_tensor(np.asarray(observation), dtype=torch.float32)
            self.act_states.append(state.to(agent.device))
            query = self.query_of(agent, torch.stack(self.act_states)[None], None)
            self.act_selection = self.choose(agent, query, agent._act_task, training=False)

    def acting_entry(self) -> int | None:
        selection = self.act_selection
        return None if selection is None else int(selection[0, 0])

    def state_dict(self) -> dict[str, Any]:
        return {"selection": self.selection, "query": self.query}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.selection, self.query = state["selection"], state["query"]
        self.apply(self.selection)


__all__ = ["FineTuningStrategy", "SelectingStrategy"]
