"""Evidence that the continual-learning methods work: on three conflicting toy tasks,
fine-tuning forgets the first task and every protecting method forgets clearly less;
every method's per-task state survives a checkpoint round trip."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch

from crlgym import envs
from crlgym.agents.methods import METHODS, make_method
from crlgym.agents.sac import ContinualSAC, SACConfig
from tests.helpers import assert_same_state, checkpoint_round_trip, make_sac_agent

pytestmark = pytest.mark.integration  # trains agents

# Goals at 0, 180 and 90 degrees; the goal is hidden, so the tasks conflict and only the
# task id (multi-head, as in Continual World) tells them apart.
SEQUENCE = "toy-reach-0,toy-reach-4,toy-reach-2"
# Measured (every method, seeds 0 and 1): after 1000 steps per task every method learns each
# task (success 1.0 on task 0 after task 0 and on the last task), fine-tuning forgets task 0
# completely and no protecting method forgets anything; after 750 the assertions still hold
# (seed 0), but the regularizers reach only 0.4-0.8 on the last task. 1500 gave the same
# scores as 1000 at 1.6x the time.
STEPS_PER_TASK = 1000
CONFIG = SACConfig(
    hidden_sizes=(64, 64),
    random_steps=300,
    update_after=100,
    batch_size=64,
    buffer_size=20_000,
    learning_rate=3e-3,
)
# Options that fit the toy budget (the defaults are sized for 1M-step Continual World tasks).
TOY_OPTIONS = {
    "packnet": {"retrain_steps": 500},
    "agem": {"samples_per_task": 1000},
    "clonex": {"states_per_task": 1000},
    "replay": {"capacity": 10_000},
}
PROTECTING = [name for name in METHODS if name != "finetune"]


def make_agent(method: str, seed: int = 0) -> tuple[ContinualSAC, envs.TaskSequence]:
    options = TOY_OPTIONS.get(method, {})
    return make_sac_agent(SEQUENCE, config=CONFIG, method=make_method(method, **options), seed=seed)


def success(agent: ContinualSAC, sequence: envs.TaskSequence, task: int) -> float:
    env = sequence.make_env(task)
    results = []
    with agent.method.evaluating(agent, task), torch.no_grad():
        for episode in range(10):
            observation, _ = env.reset(seed=10_000 + episode)
            done, info = False, {}
            while not done:
                action, _ = agent.predict(observation, deterministic=True)
                observation, _, terminated, truncated, info = env.step(action)
                done = terminated or truncated
            results.append(info["is_success"])
    return float(np.mean(results))


@cache
def first_task_scores(method: str) -> tuple[float, float, float]:
    """(success on task 0 after task 0, after the sequence, last task after the sequence)."""
    agent, sequence = make_agent(method)
    after_first = 0.0
    for task in range(sequence.num_tasks):
        if task:
            agent.set_env(sequence.make_env(task, seed=task))
        agent.on_task_start(task, STEPS_PER_TASK)
        agent.learn(STEPS_PER_TASK, reset_num_timesteps=False)
        agent.on_task_end(task)
        if task == 0:
            after_first = success(agent, sequence, 0)
    return after_first, success(agent, sequence, 0), success(agent, sequence, 2)


def test_finetune_forgets_the_first_task() -> None:
    learned, final, _ = first_task_scores("finetune")
    assert learned >= 0.8
    assert learned - final >= 0.5


@pytest.mark.parametrize("method", PROTECTING)
def test_protecting_methods_forget_clearly_less(method: str) -> None:
    learned, final, _ = first_task_scores(method)
    finetune_learned, finetune_final, _ = first_task_scores("finetune")
    assert learned >= 0.5, f"{method} did not learn the first task ({learned})"
    forgetting = learned - final
    assert forgetting <= (finetune_learned - finetune_final) - 0.3, (
        f"{method} forgot {forgetting:.2f}, fine-tuning {finetune_learned - finetune_final:.2f}"
    )


def test_packnet_forgets_at_most_005() -> None:
    learned, final, _ = first_task_scores("packnet")
    assert learned - final <= 0.05


@pytest.mark.parametrize("method", list(METHODS))
def test_method_state_survives_a_checkpoint(method: str) -> None:
    agent, sequence = make_agent(method)
    agent.on_task_start(0, 400)
    agent.learn(400, reset_num_timesteps=False)
    agent.on_task_end(0)
    batch = agent.replay_buffer.sample(16)  # task 0's data, before task 1 empties the buffer
    agent.set_env(sequence.make_env(1, seed=1))
    agent.on_task_start(1, 400)
    state = checkpoint_round_trip(agent.training_state())
    clone, _ = make_agent(method, seed=1)
    clone.load_training_state(state)
    assert_same_state(agent.method.state_dict(), clone.method.state_dict())
    for hook in ("actor_aux_loss", "critic_aux_loss"):
        losses = []
        for subject in (agent, clone):
            torch.manual_seed(0)  # memory-based methods draw their own batches
            np.random.seed(0)
            extra = subject.method.sample_extra_batch(subject)
            losses.append(getattr(subject.method, hook)(subject, batch, extra))
        mine, theirs = losses
        if mine is None:
            assert theirs is None
        else:
            assert torch.allclose(mine, theirs)
