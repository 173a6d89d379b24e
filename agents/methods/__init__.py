"""Continual-learning methods, by name (``crl list`` shows them)."""

from __future__ import annotations

from agents.methods.base import ContinualMethod, FineTuning
from envs.errors import ConfigError
from envs.tasks import unknown_name_message

METHODS: dict[str, type[ContinualMethod]] = {"finetune": FineTuning}


def make_method(name: str) -> ContinualMethod:
    """The method called ``name``; unknown names list the closest valid ones."""
    if name not in METHODS:
        raise ConfigError(unknown_name_message("method", name, tuple(METHODS), "crl list"))
    return METHODS[name]()


__all__ = ["METHODS", "ContinualMethod", "FineTuning", "make_method"]
