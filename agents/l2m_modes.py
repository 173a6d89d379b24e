"""L2M fine-tuning modes by name (``--l2m-mode``): each a `FineTuningStrategy`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crlgym.agents.l2m_full import EWCFineTuning, FullFineTuning
from crlgym.agents.l2m_pool import OracleModulator, PoolStrategy, SharedModulator
from crlgym.agents.l2m_prompts import PromptStrategy
from crlgym.agents.l2m_strategy import FineTuningStrategy
from crlgym.errors import ConfigError

if TYPE_CHECKING:
    from crlgym.agents.l2m import L2MConfig

STRATEGIES: dict[str, type[FineTuningStrategy]] = {
    strategy.name: strategy
    for strategy in (
        PoolStrategy,
        SharedModulator,
        OracleModulator,
        FullFineTuning,
        EWCFineTuning,
        PromptStrategy,
    )
}
"""Valid `L2MConfig.l2m_mode` values and their strategies (a new mode: one entry here)."""


def check_mode(name: str) -> None:
    """Refuse an unknown mode in one line that lists the valid ones."""
    if name not in STRATEGIES:
        raise ConfigError(f"l2m_mode must be one of {', '.join(STRATEGIES)}, got {name!r}")


def make_strategy(config: L2MConfig) -> FineTuningStrategy:
    """The strategy of ``config.l2m_mode``, configured by ``config``."""
    check_mode(config.l2m_mode)
    return STRATEGIES[config.l2m_mode](config)


__all__ = ["STRATEGIES", "check_mode", "make_strategy"]
