"""Continual-learning methods, by name (``crl list`` shows them)."""

from __future__ import annotations

from typing import Any

from crlgym.agents.methods.agem import AGEM
from crlgym.agents.methods.base import (
    ContinualMethod,
    FineTuning,
    MethodOptions,
    OptionField,
    option_fields,
)
from crlgym.agents.methods.packnet import PackNet
from crlgym.agents.methods.regularization import EWC, L2, MAS
from crlgym.agents.methods.replay import ClonEx, Replay
from crlgym.envs.tasks import unknown_name_message
from crlgym.errors import ConfigError

METHODS: dict[str, type[ContinualMethod[Any]]] = {
    method.name: method for method in (FineTuning, L2, EWC, MAS, PackNet, AGEM, Replay, ClonEx)
}


def method_options(name: str) -> list[OptionField]:
    """The options of the method called ``name`` (name, default, help), in order."""
    if name not in METHODS:
        raise ConfigError(unknown_name_message("method", name, tuple(METHODS), "crl list"))
    return option_fields(METHODS[name].Options)


def make_method(name: str, **options: Any) -> ContinualMethod[Any]:
    """The method called ``name`` with its ``options`` (fields of its ``Options``
    dataclass); mistakes name the valid choices."""
    accepted = [option.name for option in method_options(name)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) or "none"
        raise ConfigError(f"method {name} has no option {', '.join(unknown)} (options: {valid})")
    try:
        return METHODS[name](**options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"bad option for method {name}: {error}") from None


__all__ = [
    "AGEM",
    "EWC",
    "L2",
    "MAS",
    "METHODS",
    "ClonEx",
    "ContinualMethod",
    "FineTuning",
    "MethodOptions",
    "OptionField",
    "PackNet",
    "Replay",
    "make_method",
    "method_options",
    "option_fields",
]
