"""How a continual-learning method plugs into the agent.

A method sees the agent only through these named hooks; nothing method-specific lives in
the agent or the runner. Every hook has a no-op default, so `FineTuning` (no protection,
the lower bound) is the base class itself.

Options. Each method declares its options once, as a frozen dataclass (`MethodOptions` and
its subclasses, one docstring per field as its help), named by the class attribute
``Options``; a method that extends another's options subclasses that dataclass.
``Method(**values)`` builds ``Method.Options(**values)`` (validated in ``__post_init__``)
and keeps it as ``method.options``; `crlgym.agents.methods.make_method` and whatever lists
a method's options read them from `option_fields`.

One gradient step of the agent calls, in this order::

    extra = method.sample_extra_batch(agent)              # once per gradient step
    critic loss += method.critic_aux_loss(agent, batch, extra)
    method.adjust_gradients(agent, "critic")              # after backward
    actor loss  += method.actor_aux_loss(agent, batch, extra)
    method.adjust_gradients(agent, "actor")

so both networks of one step see the same extra batch (e.g. a memory batch), handed over
explicitly.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, fields
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, NamedTuple, TypeVar

import torch

if TYPE_CHECKING:
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    from crlgym.agents.sac import ContinualSAC

Network = Literal["actor", "critic"]

Extra = TypeVar("Extra")
"""What a method's `ContinualMethod.sample_extra_batch` returns (e.g. a memory batch)."""


# --- options ----------------------------------------------------------------------------

_COERCE: dict[str, Callable[[Any], Any]] = {"float": float, "int": int, "bool": bool}
"""Declared field types whose values are converted on construction (so YAML's ``1e4``, a
string, or an integer for a float, give the declared type)."""


@dataclass(frozen=True)
class MethodOptions:
    """A method's options (none here). Subclasses add fields, each with a docstring (its
    help), and check their values in ``__post_init__`` after calling ``super()``'s."""

    def __post_init__(self) -> None:
        for field in fields(self):
            declared = str(field.type).removesuffix(" | None")
            value = getattr(self, field.name)
            if declared in _COERCE and value is not None:
                object.__setattr__(self, field.name, _COERCE[declared](value))


class OptionField(NamedTuple):
    """One method option, for listings and help."""

    name: str
    default: Any
    help: str


def option_fields(options: type[MethodOptions]) -> list[OptionField]:
    """The options of an options dataclass in declaration order, with their defaults and
    docstrings (a subclass's docstring of a redeclared field wins)."""
    docs: dict[str, str] = {}
    for cls in reversed(options.__mro__):
        if cls is not object:
            docs.update(_attribute_docs(cls))
    listed = []
    for field in fields(options):
        default = field.default if field.default is not MISSING else None
        listed.append(OptionField(field.name, default, docs.get(field.name, "")))
    return listed


@cache
def _attribute_docs(cls: type) -> dict[str, str]:
    """The string right under each annotated attribute of ``cls``'s own body."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0]
    if not isinstance(body, ast.ClassDef):
        return {}
    docs = {}
    for node, following in itertools.pairwise(body.body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
        ):
            docs[node.target.id] = " ".join(str(following.value.value).split())
    return docs


# --- the hooks --------------------------------------------------------------------------


class ContinualMethod(Generic[Extra]):
    """Base class of continual-learning methods (fine-tuning when nothing is overridden).

    ``Extra`` is the type of the per-gradient-step extra batch (`sample_extra_batch`);
    methods that draw none leave it unused.
    """

    name: ClassVar[str] = "finetune"
    description: ClassVar[str] = "fine-tuning: no protection against forgetting (the lower bound)"
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    """The method's options dataclass."""

    options: MethodOptions

    def __init__(self, options: MethodOptions | None = None, /, **values: Any) -> None:
        """``Method(**values)`` with the ``Options`` fields as keywords, or
        ``Method(options)`` with a ready ``Options`` instance."""
        if options is None:
            options = self.Options(**values)
        elif values or not isinstance(options, self.Options):
            raise TypeError(f"{self.name} takes one {self.Options.__name__} or keywords")
        self.options = options

    def on_task_start(self, agent: ContinualSAC, task_index: int) -> None:
        """Called after the agent applied its own task-change resets."""

    def on_task_end(self, agent: ContinualSAC, task_index: int) -> None:
        """Called when the task's step budget is spent, before evaluation of the next task."""

    def sample_extra_batch(self, agent: ContinualSAC) -> Extra | None:
        """Called once per gradient step, after the current batch's critic loss and before
        `critic_aux_loss`: data of the method's own (e.g. a memory batch) that the step's
        `critic_aux_loss` and `actor_aux_loss` both receive as ``extra``; None for none."""
        return None

    def critic_aux_loss(
        self, agent: ContinualSAC, batch: ReplayBufferSamples, extra: Extra | None
    ) -> torch.Tensor | None:
        """A term added to the critic loss; None for nothing. ``batch``: the step's replay
        batch; ``extra``: what `sample_extra_batch` returned for this step."""
        return None

    def actor_aux_loss(
        self, agent: ContinualSAC, batch: ReplayBufferSamples, extra: Extra | None
    ) -> torch.Tensor | None:
        """A term added to the actor loss (e.g. a regularizer); None for nothing. Arguments
        as in `critic_aux_loss` (the same ``extra`` in one gradient step)."""
        return None

    def adjust_gradients(self, agent: ContinualSAC, network: Network) -> None:
        """Change ``network``'s gradients after backward, before the optimizer step."""

    @contextmanager
    def evaluating(self, agent: ContinualSAC, task_index: int) -> Iterator[None]:
        """Context in which the agent acts on task ``task_index`` during evaluation (e.g.
        PackNet applies that task's masks); must leave the agent as it found it."""
        yield

    def state_dict(self) -> dict[str, Any]:
        """Per-task state to keep in checkpoints (tensors, numbers, lists, dicts)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


class FineTuning(ContinualMethod[None]):
    """No protection: the agent simply keeps training on each new task."""


__all__ = [
    "ContinualMethod",
    "Extra",
    "FineTuning",
    "MethodOptions",
    "Network",
    "OptionField",
    "option_fields",
]
