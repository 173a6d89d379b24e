"""gymnasium.make("crlgym/<task>") for every task."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from crlgym import envs


def test_every_task_is_registered() -> None:
    registered = {env_id for env_id in gym.registry if env_id.startswith("crlgym/")}
    assert registered == {f"crlgym/{task}" for task in envs.all_tasks()}
    assert len(registered) == 50 + 51 + 16 + 5 + 11  # + recall-d{0,10,50,200,1000}, masked10-*


@pytest.mark.parametrize("env_id", ["crlgym/hammer-v3", "crlgym/cheetah-run", "crlgym/toy-reach-3"])
def test_make_and_step(env_id: str) -> None:
    env = gym.make(env_id, seed=0)
    observation, _ = env.reset()
    assert observation in env.observation_space
    env.step(env.action_space.sample())
    env.close()


def test_short_metaworld_id_resolves_to_v3() -> None:
    with pytest.warns(UserWarning, match="latest versioned environment"):
        env = gym.make("crlgym/hammer")
    assert env.spec.id == "crlgym/hammer-v3"


def test_make_passes_config_fields() -> None:
    env = gym.make(
        "crlgym/reach-v3", episode_length=5, render_mode="rgb_array", width=32, height=32
    )
    env.reset(seed=0)
    truncated = [env.step(env.action_space.sample())[3] for _ in range(5)]
    assert truncated[-1] and not any(truncated[:-1])
    assert env.render().shape == (32, 32, 3)
    env.close()


# --- the installed namespace, each in a fresh interpreter -----------------------------------
# cwd=tmp_path and no PYTHONPATH keep the repository root (and its bare folders) off
# sys.path, as for a user of the installed package.


def run_fresh(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env
    )


@pytest.mark.integration  # a fresh interpreter importing torch or Meta-World
def test_subpackages_import_from_the_installed_namespace(tmp_path: Path) -> None:
    code = "import crlgym.agents, crlgym.envs, crlgym.memory, crlgym.experiments"
    result = run_fresh(code, tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("bare", ["agents", "envs", "memory", "experiments"])
def test_bare_folder_names_are_not_importable(bare: str, tmp_path: Path) -> None:
    code = (
        f"try:\n    import {bare}\nexcept ModuleNotFoundError as error:\n    print(error.name)\n"
        f"else:\n    print('imported', {bare}.__file__)"
    )
    result = run_fresh(code, tmp_path)
    assert result.stdout.strip() == bare, result.stdout + result.stderr


@pytest.mark.integration  # a fresh interpreter importing torch or Meta-World
def test_module_prefix_registers_without_importing_crlgym_first(tmp_path: Path) -> None:
    code = (
        "import sys, gymnasium\n"
        "assert 'crlgym' not in sys.modules\n"
        "env = gymnasium.make('crlgym:crlgym/hammer-v3')\n"
        "env.reset(seed=0)\n"
        "print(env.spec.id)"
    )
    result = run_fresh(code, tmp_path)
    assert result.stdout.strip() == "crlgym/hammer-v3", result.stderr


@pytest.mark.integration  # a fresh interpreter importing torch or Meta-World
def test_metrics_and_memory_do_not_import_the_simulators(tmp_path: Path) -> None:
    code = (
        "import sys, crlgym.experiments.metrics, crlgym.memory\n"
        "print(sorted({name.split('.')[0] for name in sys.modules}"
        " & {'mujoco', 'metaworld', 'dm_control'}))"
    )
    result = run_fresh(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
@pytest.mark.parametrize("task", envs.all_tasks())
def test_every_registered_task_builds_and_steps(task: str) -> None:
    env = gym.make(f"crlgym/{task}")
    observation, _ = env.reset(seed=0)
    assert np.all(np.isfinite(observation))
    env.step(env.action_space.sample())
    env.close()
