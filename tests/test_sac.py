"""ContinualSAC: learning, multi-head networks, per-task alphas, resets, hooks, state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import crlgym
from crlgym import envs
from crlgym.agents.methods import ContinualMethod
from crlgym.agents.sac import ContinualSAC, SACConfig
from tests.helpers import TOY_PAIR, make_sac_agent, train_task

pytestmark = pytest.mark.integration  # trains agents

SMALL = {
    "hidden_sizes": (64, 64),
    "random_steps": 300,
    "update_after": 100,
    "update_every": 1,
    "gradient_steps": 1,
    "batch_size": 64,
    "buffer_size": 20_000,
    "learning_rate": 3e-3,
}


def make_agent(
    tasks: str = TOY_PAIR, method: ContinualMethod | None = None, **overrides
) -> tuple[ContinualSAC, envs.TaskSequence]:
    return make_sac_agent(tasks, method=method, **{**SMALL, **overrides})


def success_rate(agent: ContinualSAC, env, episodes: int = 10) -> float:
    successes = []
    for episode in range(episodes):
        observation, _ = env.reset(seed=1000 + episode)
        done, info = False, {}
        while not done:
            action, _ = agent.predict(observation, deterministic=True)
            observation, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        successes.append(info["is_success"])
    return float(np.mean(successes))


def test_sac_learns_a_toy_task() -> None:
    agent, sequence = make_agent("toy-reach-2", multi_head=False)
    assert success_rate(agent, sequence.make_env(0)) < 0.5
    # Measured (seeds 0-4, success over these 10 episodes): 1.0 after 750 and 1000 steps,
    # 0.0-1.0 after 500; 1000 (the first 300 random) leaves a margin.
    train_task(agent, sequence, 0, 1000)
    assert success_rate(agent, sequence.make_env(0)) >= 0.9


def test_task_id_picks_the_head_and_is_not_a_network_input() -> None:
    agent, sequence = make_agent()
    observation_dim = sequence.observation_space.shape[0]
    assert agent.actor.latent_pi[0].in_features == observation_dim - 2
    assert agent.critic.qf0[0][0].in_features == observation_dim - 2 + 2
    position = torch.tensor([[0.3, -0.2]])
    as_task = {t: torch.cat([position, torch.eye(2)[t : t + 1]], dim=1) for t in (0, 1)}
    latent = agent.actor.latent_pi(position)
    for task, observation in as_task.items():
        mean, _, _ = agent.actor.get_action_dist_params(observation)
        expected = agent.actor.mu(latent).view(1, 2, 2)[0, task]
        torch.testing.assert_close(mean[0], expected)


def test_one_entropy_coefficient_per_task() -> None:
    agent, sequence = make_agent()
    assert agent.log_ent_coef.shape == (2,)
    train_task(agent, sequence, 0, 600)
    assert agent.log_ent_coef[0].item() != 0.0
    assert agent.log_ent_coef[1].item() == 0.0  # task 1 has not been trained


def test_random_actions_at_the_start_of_every_task(monkeypatch: pytest.MonkeyPatch) -> None:
    agent, sequence = make_agent(random_steps=200, update_after=100)
    train_task(agent, sequence, 0, 400)
    agent.set_env(sequence.make_env(1, seed=1))
    agent.on_task_start(1)
    calls = []
    original_predict = agent.predict
    monkeypatch.setattr(
        agent, "predict", lambda *a, **k: calls.append(1) or original_predict(*a, **k)
    )
    agent.learn(200, reset_num_timesteps=False)
    assert not calls  # 200 uniform-random steps: the policy was never asked
    agent.learn(50, reset_num_timesteps=False)
    assert len(calls) == 50


def test_task_change_resets_follow_the_options() -> None:
    agent, sequence = make_agent(reset_critic=True)
    train_task(agent, sequence, 0, 400)
    actor_before = [p.clone() for p in agent.actor.parameters()]
    critic_before = [p.clone() for p in agent.critic.parameters()]
    assert agent.replay_buffer.pos > 0 and agent.actor.optimizer.state
    agent.set_env(sequence.make_env(1, seed=1))
    agent.on_task_start(1)
    assert agent.replay_buffer.pos == 0 and not agent.replay_buffer.full
    assert not agent.actor.optimizer.state and not agent.critic.optimizer.state
    for before, after in zip(actor_before, agent.actor.parameters(), strict=True):
        assert torch.equal(before, after)  # reset_actor is off
    assert any(
        not torch.equal(b, a) for b, a in zip(critic_before, agent.critic.parameters(), strict=True)
    )
    for critic, target in zip(
        agent.critic.parameters(), agent.critic_target.parameters(), strict=True
    ):
        assert torch.equal(critic, target)


def test_nothing_is_reset_when_the_options_are_off() -> None:
    agent, sequence = make_agent(reset_buffer=False, reset_optimizer=False)
    train_task(agent, sequence, 0, 400)
    filled = agent.replay_buffer.pos
    agent.set_env(sequence.make_env(1, seed=1))
    agent.on_task_start(1)
    assert agent.replay_buffer.pos == filled and agent.actor.optimizer.state


class RecordingMethod(ContinualMethod):
    """Records hook calls and pulls the actor's weights to zero with a huge penalty."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.gradient_calls = {"actor": 0, "critic": 0}

    def on_task_start(self, agent: ContinualSAC, task_index: int) -> None:
        self.events.append(f"start {task_index}")

    def on_task_end(self, agent: ContinualSAC, task_index: int) -> None:
        self.events.append(f"end {task_index}")

    def actor_aux_loss(self, agent: ContinualSAC, batch: object, extra: None) -> torch.Tensor:
        return 1e3 * sum((p**2).sum() for p in agent.actor.latent_pi.parameters())

    def adjust_gradients(self, agent: ContinualSAC, network: str) -> None:
        self.gradient_calls[network] += 1

    def state_dict(self) -> dict:
        return {"events": list(self.events)}

    def load_state_dict(self, state: dict) -> None:
        self.events = list(state["events"])


def test_method_hooks_are_called_and_shape_learning() -> None:
    method = RecordingMethod()
    agent, sequence = make_agent(method=method)
    norm_before = sum(p.norm() for p in agent.actor.latent_pi.parameters())
    train_task(agent, sequence, 0, 300)
    train_task(agent, sequence, 1, 300)
    assert method.events == ["start 0", "end 0", "start 1", "end 1"]
    updates = agent._n_updates
    assert method.gradient_calls == {"actor": updates, "critic": updates}
    assert sum(p.norm() for p in agent.actor.latent_pi.parameters()) < 0.5 * norm_before


def test_training_state_round_trip() -> None:
    agent, sequence = make_agent(method=RecordingMethod())
    train_task(agent, sequence, 0, 400)
    state = agent.training_state()
    clone, _ = make_agent(method=RecordingMethod())
    clone.load_training_state(state)
    observation = torch.as_tensor(sequence.make_env(0).reset(seed=3)[0])[None]
    torch.testing.assert_close(
        clone.policy._predict(observation, deterministic=True),
        agent.policy._predict(observation, deterministic=True),
    )
    assert clone.replay_buffer.pos == agent.replay_buffer.pos
    np.testing.assert_array_equal(
        clone.replay_buffer.observations[: agent.replay_buffer.pos],
        agent.replay_buffer.observations[: agent.replay_buffer.pos],
    )
    assert clone.method.events == ["start 0", "end 0"]
    assert clone.num_timesteps == agent.num_timesteps and clone.current_task == 0


def test_multi_head_without_task_id_is_refused() -> None:
    sequence = envs.load_sequence("toy-reach-0,toy-reach-4")
    with pytest.raises(crlgym.ConfigError, match="one_hot_task_id"):
        ContinualSAC(sequence.make_env(0), num_tasks=2, config=SACConfig(**SMALL))


def test_plain_sb3_policy_kwargs_still_work() -> None:
    sequence = envs.load_sequence("toy-reach-0")
    agent = ContinualSAC(
        sequence.make_env(0),
        num_tasks=1,
        config=SACConfig(**SMALL, multi_head=False),
        policy_kwargs={"net_arch": [32, 32], "hidden_sizes": None, "n_critics": 3},
    )
    assert agent.actor.latent_pi[0].out_features == 32
    assert len(agent.critic.q_networks) == 3
