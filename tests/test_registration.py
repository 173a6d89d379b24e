"""gymnasium.make("crlgym/<task>") for every task."""

from __future__ import annotations

import subprocess
import sys

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


def test_module_prefix_registers_without_importing_envs_first() -> None:
    code = "import gymnasium as g; e = g.make('envs:crlgym/toy-reach-0'); print(e.spec.id)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert output.stdout.strip() == "crlgym/toy-reach-0", output.stderr


@pytest.mark.slow
@pytest.mark.parametrize("task", envs.all_tasks())
def test_every_registered_task_builds_and_steps(task: str) -> None:
    env = gym.make(f"crlgym/{task}")
    observation, _ = env.reset(seed=0)
    assert np.all(np.isfinite(observation))
    env.step(env.action_space.sample())
    env.close()
