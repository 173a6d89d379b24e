"""Static facts about every DeepMind Control Suite task, shipped as ``data/dmc_specs.json``.

Loading a DMControl task costs 50-500 ms, and building a padded space for a sequence needs
the observation layout of many tasks, so the layout facts are read from a table instead.
``python -m crlgym.envs.dmc_specs`` regenerates the table from dm_control itself, and a test checks
it against the installed dm_control.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, TypedDict

import numpy as np


class DMCSpec(TypedDict):
    """Observation keys with their flat sizes (in dm_control's order) and action facts."""

    observation: list[tuple[str, int]]
    action_dim: int
    action_low: list[float]
    action_high: list[float]
    control_timestep: float
    episode_steps: int


SPEC_FILE = "dmc_specs.json"


@lru_cache(maxsize=1)
def load_dmc_specs() -> dict[str, DMCSpec]:
    """All suite tasks' specs keyed by ``domain-task`` name."""
    text = resources.files("crlgym.envs").joinpath(f"data/{SPEC_FILE}").read_text()
    raw: dict[str, Any] = json.loads(text)
    for spec in raw.values():
        spec["observation"] = [(key, int(size)) for key, size in spec["observation"]]
    specs: dict[str, DMCSpec] = raw  # the JSON holds exactly DMCSpec records
    return specs


def inspect_task(domain: str, task: str) -> DMCSpec:
    """Read a task's spec from dm_control (slow: loads the task)."""
    from dm_control import suite

    env = suite.load(domain, task, task_kwargs={"random": 0})
    obs_spec = env.observation_spec()
    action_spec = env.action_spec()
    timestep = float(env.control_timestep())
    steps = env._step_limit
    episode_steps = int(steps) if np.isfinite(steps) else 0
    return DMCSpec(
        observation=[(key, int(np.prod(spec.shape))) for key, spec in obs_spec.items()],
        action_dim=int(action_spec.shape[0]),
        action_low=[float(v) for v in np.broadcast_to(action_spec.minimum, action_spec.shape)],
        action_high=[float(v) for v in np.broadcast_to(action_spec.maximum, action_spec.shape)],
        control_timestep=timestep,
        episode_steps=episode_steps,
    )


def generate_specs() -> dict[str, DMCSpec]:
    """Inspect every task of ``dm_control.suite.ALL_TASKS``."""
    from dm_control import suite

    return {f"{domain}-{task}": inspect_task(domain, task) for domain, task in suite.ALL_TASKS}


def main() -> None:
    """Regenerate the shipped table from the installed dm_control."""
    from crlgym.envs import headless

    headless.configure_headless_rendering()
    target = Path(__file__).with_name("data") / SPEC_FILE
    target.write_text(json.dumps(generate_specs(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
