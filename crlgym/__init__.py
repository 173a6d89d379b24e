"""crlgym: a continual reinforcement learning gym.

The package maps the repository's top-level folders to ``crlgym.agents``, ``crlgym.envs``,
``crlgym.memory`` and ``crlgym.experiments``. Importing it registers every task as a
gymnasium id ``crlgym/<task>`` with a string entry point, so nothing heavy (MuJoCo,
Meta-World, dm_control) is imported until an environment is made, and gymnasium's
module-prefix form ``gym.make("crlgym:crlgym/hammer-v3")`` works in a fresh interpreter.
"""

from crlgym.errors import (
    ConfigError,
    CrlgymError,
    SequenceFileError,
    SpaceMismatchError,
    UnknownSequenceError,
    UnknownTaskError,
)

__version__ = "0.1.0"

from crlgym.envs.registration import register_envs

register_envs()

__all__ = [
    "ConfigError",
    "CrlgymError",
    "SequenceFileError",
    "SpaceMismatchError",
    "UnknownSequenceError",
    "UnknownTaskError",
    "__version__",
]
