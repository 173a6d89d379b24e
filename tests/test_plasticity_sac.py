"""Plasticity in the SAC agent: replay ratio, resets, metrics and their checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crlgym.agents.plasticity import PlasticityConfig
from crlgym.agents.sac import ContinualSAC
from crlgym.errors import ConfigError
from crlgym.experiments.config import build_config
from tests.helpers import make_sac_agent

pytestmark = pytest.mark.integration  # trains agents

SMALL = {
    "hidden_sizes": (32, 32),
    "random_steps": 100,
    "update_after": 100,
    "update_every": 10,
    "gradient_steps": 10,
    "batch_size": 32,
    "buffer_size": 5_000,
}


def make_agent(plasticity: PlasticityConfig, **sac: object) -> tuple[ContinualSAC, object]:
    return make_sac_agent(plasticity=plasticity, **{**SMALL, **sac})


def run_task(agent: ContinualSAC, sequence, task: int, steps: int) -> None:
    if task > 0:
        agent.set_env(sequence.make_env(task, seed=task))
    agent.on_task_start(task, steps)
    agent.learn(steps, reset_num_timesteps=False)
    agent.on_task_end(task)


def parameters(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def buffer_contents(agent: ContinualSAC) -> tuple[int, np.ndarray]:
    buffer = agent.replay_buffer
    return buffer.pos, buffer.observations[: buffer.pos].copy()


@pytest.mark.parametrize("kind", ["full", "last-layers", "shrink-perturb", "redo"])
def test_every_reset_keeps_the_replay_buffer_and_changes_the_networks(kind: str) -> None:
    agent, sequence = make_agent(PlasticityConfig(reset=kind, reset_every=200, metrics_every=None))
    run_task(agent, sequence, 0, 190)
    before_actor, before_critic = parameters(agent.actor), parameters(agent.critic)
    position, observations = buffer_contents(agent)
    event = agent.plasticity.reset(agent.num_timesteps, reason="test")
    assert event.kind == f"reset-{kind}"
    after_position, after_observations = buffer_contents(agent)
    assert after_position == position
    np.testing.assert_array_equal(after_observations, observations)
    changed_actor = any(
        not torch.equal(a, b) for a, b in zip(before_actor, parameters(agent.actor), strict=True)
    )
    changed_critic = any(
        not torch.equal(a, b) for a, b in zip(before_critic, parameters(agent.critic), strict=True)
    )
    if kind == "redo":
        # ReDo changes only dormant units; a young network may have none.
        assert changed_actor or changed_critic or event.details["recycled_total"] == 0
    else:
        assert changed_actor and changed_critic


def test_reset_clears_the_buffer_only_when_asked() -> None:
    config = PlasticityConfig(reset="full", reset_every=200, reset_clear_buffer=True)
    agent, sequence = make_agent(config)
    run_task(agent, sequence, 0, 190)
    agent.plasticity.reset(agent.num_timesteps, reason="test")
    assert agent.replay_buffer.pos == 0 and not agent.replay_buffer.full


def test_full_reset_reinitializes_target_and_temperature() -> None:
    agent, sequence = make_agent(PlasticityConfig(reset="full", reset_every=1000))
    run_task(agent, sequence, 0, 300)
    assert not torch.allclose(agent.log_ent_coef, torch.zeros(2))
    agent.plasticity.reset(agent.num_timesteps, reason="test")
    torch.testing.assert_close(agent.log_ent_coef.detach(), torch.zeros(2))  # log(initial_alpha=1)
    for online, target in zip(
        agent.critic.parameters(), agent.critic_target.parameters(), strict=True
    ):
        assert torch.equal(online, target)


def test_periodic_and_task_start_resets_are_logged_when_due() -> None:
    config = PlasticityConfig(reset="redo", reset_every=200, reset_at_task_start=True)
    agent, sequence = make_agent(config)
    run_task(agent, sequence, 0, 400)
    run_task(agent, sequence, 1, 200)
    events = [(e.step, e.task_index, e.details["reason"]) for e in agent.plasticity.events]
    assert events == [(200, 0, "periodic"), (400, 0, "periodic"), (400, 1, "task-start"),
                      (600, 1, "periodic")]  # fmt: skip


def test_fixed_replay_ratios_set_the_number_of_gradient_steps() -> None:
    for ratio, expected in (("0.5", 5), ("2", 20), ("fixed", 10)):
        agent, sequence = make_agent(PlasticityConfig(replay_ratio=ratio, metrics_every=None))
        run_task(agent, sequence, 0, 300)
        phases = (300 - 100) // 10  # update phases after update_after, one per update_every
        assert agent._n_updates == phases * expected, ratio


def test_adaptive_replay_ratio_switches_once_the_critic_fau_is_stable() -> None:
    # A tolerance of 1.0 counts any FAU as stable, so the switch comes at the second check.
    config = PlasticityConfig(
        replay_ratio="adaptive", rr_check_every=100, rr_tolerance=1.0, metrics_every=None
    )
    agent, sequence = make_agent(config)
    run_task(agent, sequence, 0, 400)
    summary = agent.plasticity.summary()
    assert summary["switch_steps"] == [300]
    assert [check[0] for check in summary["rr_checks"]] == [200, 300]  # none after the switch
    # Phases 110..300 at ratio 0.5 (5 steps), 310..400 at ratio 2 (20 steps).
    assert agent._n_updates == 20 * 5 + 10 * 20


def test_adaptive_rule_restarts_at_each_task_unless_told_not_to() -> None:
    for restart, expected_ratio in ((True, 0.5), (False, 2.0)):
        config = PlasticityConfig(
            replay_ratio="adaptive",
            rr_check_every=100,
            rr_tolerance=1.0,
            rr_restart_each_task=restart,
            metrics_every=None,
        )
        agent, sequence = make_agent(config)
        run_task(agent, sequence, 0, 400)
        agent.set_env(sequence.make_env(1, seed=1))
        agent.on_task_start(1, 100)
        assert agent.plasticity.replay_ratio == expected_ratio


def test_metrics_are_recorded_for_actor_and_critic_without_changing_training() -> None:
    agents = []
    for every in (100, None):
        agent, sequence = make_agent(PlasticityConfig(metrics_every=every))
        run_task(agent, sequence, 0, 400)
        agents.append(agent)
    measured, silent = agents
    for a, b in zip(measured.policy.parameters(), silent.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    records = measured.plasticity.records
    assert sorted({(r["step"], r["net"]) for r in records}) == [
        (step, net) for step in (200, 300, 400) for net in ("actor", "critic")
    ]
    for record in records:
        assert 0.0 <= record["fau"] <= 1.0 and 0.0 <= record["dormant_ratio"] <= 1.0
        assert record["effective_rank"] >= 1.0 and record["weight_norm"] > 0
        assert record["grad_norm"] > 0


def test_plasticity_state_survives_a_checkpoint(tmp_path) -> None:
    config = PlasticityConfig(
        replay_ratio="adaptive", rr_check_every=100, rr_tolerance=1e-9, metrics_every=100
    )
    agent, sequence = make_agent(config)
    run_task(agent, sequence, 0, 300)
    path = tmp_path / "state.pt"
    torch.save(agent.training_state(), path)
    restored, _ = make_agent(config)
    restored.load_training_state(torch.load(path, weights_only=True))
    assert restored.plasticity.summary() == agent.plasticity.summary()
    assert restored.plasticity.state_dict()["rule"] == agent.plasticity.state_dict()["rule"]
    for a, b in zip(restored.plasticity.probe, agent.plasticity.probe, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


def test_config_accepts_flat_and_nested_plasticity_options() -> None:
    flat = build_config({"replay_ratio": "adaptive", "reset": "redo", "reset_every": 1000})
    nested = build_config({"plasticity": {"replay_ratio": "adaptive", "reset": "redo",
                                          "reset_every": 1000}})  # fmt: skip
    assert flat.plasticity == nested.plasticity
    assert flat.plasticity.reset == "redo"


@pytest.mark.parametrize(
    "values",
    [
        {"reset": "sometimes"},
        {"reset": "redo"},  # no reset_every, no reset_at_task_start: when?
        {"replay_ratio": "lots"},
        {"metrics_every": 1234},  # not a multiple of update_every
        {"plasticity": {"bogus": 1}},
    ],
)
def test_bad_plasticity_options_are_refused(values: dict) -> None:
    with pytest.raises(ConfigError):
        build_config(values)


def test_reports_tell_plasticity_settings_apart() -> None:
    assert build_config({}).method_label == "finetune"
    assert build_config({"replay_ratio": "adaptive"}).method_label == "finetune+rradaptive"
    labelled = build_config({"method": "l2", "reset": "redo", "reset_every": 1000})
    assert labelled.method_label == "l2+redo"
