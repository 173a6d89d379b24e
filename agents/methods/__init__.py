"""Continual-learning methods, by name (``crl list`` shows them)."""

from __future__ import annotations

import inspect
from typing import Any

from crlgym.agents.methods.agem import AGEM
from crlgym.agents.methods.base import ContinualMethod, FineTuning
from crlgym.agents.methods.packnet import PackNet
from crlgym.agents.methods.regularization import EWC, L2, MAS
from crlgym.agents.methods.replay import ClonEx, Replay
from crlgym.envs.tasks import unknown_name_message

from crlgym.errors import ConfigError

METHODS: dict[str, type[ContinualMethod]] = {
    method.name: method for method in (FineTuning, L2, EWC, MAS, PackNet, AGEM, Replay, ClonEx)
}


def make_method(name: str, **options: Any) -> ContinualMethod:
    """The method called ``name`` with its ``options``; mistakes name the valid choices."""
    if name not in METHODS:
        raise ConfigError(unknown_name_message("method", name, tuple(METHODS), "crl list"))
    cls = METHODS[name]
    accepted = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) or "none"
        raise ConfigError(f"method {name} has no option {', '.join(unknown)} (options: {valid})")
    try:
        return cls(**options)
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
    "PackNet",
    "Replay",
    "make_method",
]
