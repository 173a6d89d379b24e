"""User-facing errors: the CLI prints their message (no traceback) and exits non-zero."""

from __future__ import annotations


class CrlgymError(Exception):
    """A mistake in what the user asked for; the message names the fix."""


class UnknownTaskError(CrlgymError, ValueError):
    """A task name that no domain knows."""


class UnknownSequenceError(CrlgymError, ValueError):
    """A sequence name that is neither registered, a task list, nor a YAML file."""


class SequenceFileError(CrlgymError, ValueError):
    """A YAML sequence file that cannot be read; the message names the line or field."""


class SpaceMismatchError(CrlgymError, ValueError):
    """Tasks of one sequence that would present different spaces to the agent."""


class ConfigError(CrlgymError, ValueError):
    """A configuration value out of its range."""
