"""Session setup, pytest fixtures and the test-group markers.

Helper functions are in `tests/helpers.py` (``from tests.helpers import ...``).

Groups (registered in pyproject.toml):
- ``integration``: trains agents, runs ``crl`` or other subprocesses (seconds to a minute
  each). Declared per module (``pytestmark = pytest.mark.integration``) or per test.
- ``slow``: long runs left out of the default suite (``pytest -m slow`` runs them).
- ``unit``: everything else, given here to every test that is neither integration nor
  slow, so a new test is a unit test unless it says otherwise (``pytest -m unit``).
"""

from __future__ import annotations

import pytest
import torch

from crlgym import envs  # noqa: F401 - sets MUJOCO_GL before anything imports mujoco

# Small test networks run fastest on one thread, and several threads spin-wait badly when
# the 2 cores are shared with other processes.
torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not (item.get_closest_marker("integration") or item.get_closest_marker("slow")):
            item.add_marker(pytest.mark.unit)
