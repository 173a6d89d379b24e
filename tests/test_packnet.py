"""PackNet: owners, pruning schedule, frozen weights, per-task evaluation masks, state."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

import crlgym
from crlgym import envs
from crlgym.agents.methods.packnet import FREE, PackNet
from crlgym.agents.sac import ContinualSAC
from tests.helpers import TOY_PAIR, checkpoint_round_trip, make_sac_agent

pytestmark = pytest.mark.integration  # trains agents

SMALL = {
    "hidden_sizes": (32, 32),
    "random_steps": 100,
    "update_after": 50,
    "update_every": 1,
    "gradient_steps": 1,
    "batch_size": 32,
    "buffer_size": 5_000,
    "learning_rate": 3e-3,
}
BUDGET, RETRAIN = 300, 100


def make_agent(
    tasks: str = TOY_PAIR,
    method: PackNet | None = None,
    policy_kwargs: dict[str, Any] | None = None,
    **overrides: Any,
) -> tuple[ContinualSAC, envs.TaskSequence]:
    return make_sac_agent(
        tasks,
        method=method or PackNet(retrain_steps=RETRAIN),
        policy_kwargs=policy_kwargs,
        silent_logger=True,
        **{**SMALL, **overrides},
    )


def start_task(agent: ContinualSAC, sequence: envs.TaskSequence, task: int, budget: int) -> None:
    if task > 0:
        agent.set_env(sequence.make_env(task, seed=task))
    agent.on_task_start(task, budget)


def train_task(agent: ContinualSAC, sequence: envs.TaskSequence, task: int, budget: int) -> None:
    start_task(agent, sequence, task, budget)
    agent.learn(budget, reset_num_timesteps=False)
    agent.on_task_end(task)


def snapshot(method: PackNet, agent: ContinualSAC) -> dict[str, torch.Tensor]:
    return {slot.name: slot.param.detach().clone() for slot in method.all_slots(agent)}


def owners(method: PackNet) -> dict[str, torch.Tensor]:
    return {name: owner.clone() for name, owner in method.owners.items()}


def observation(sequence: envs.TaskSequence, task: int) -> torch.Tensor:
    return torch.as_tensor(sequence.make_env(task).reset(seed=3)[0])[None]


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    """Two tasks of BUDGET steps, snapshots taken along the way."""
    method = PackNet(retrain_steps=RETRAIN)
    agent, sequence = make_agent(method=method)
    start_task(agent, sequence, 0, BUDGET)
    agent.learn(BUDGET - RETRAIN - 1, reset_num_timesteps=False)
    record: dict[str, Any] = {"packed_before_window": method.packed_task}
    agent.learn(1, reset_num_timesteps=False)  # the first update of the retraining window
    record.update(after_prune=snapshot(method, agent), owners_0=owners(method))
    agent.learn(RETRAIN, reset_num_timesteps=False)
    agent.on_task_end(0)
    record.update(end_0=snapshot(method, agent), owners_end_0=owners(method))
    train_task(agent, sequence, 1, BUDGET)
    record.update(agent=agent, sequence=sequence, method=method, end_1=snapshot(method, agent))
    return record


def test_pruning_starts_the_retraining_window_and_zeroes_the_pruned(trained) -> None:
    slots = list(trained["method"].all_slots(trained["agent"]))
    assert trained["packed_before_window"] == FREE
    for name, owner in trained["owners_0"].items():  # retraining claims nothing more
        assert torch.equal(owner, trained["owners_end_0"][name])
    for slot in slots:
        owner = trained["owners_0"][slot.name]
        if slot.kind == "weight":  # half kept (one task left), the rest zero and free
            free = owner == FREE
            assert int(free.sum()) == owner.numel() // 2
            assert not trained["after_prune"][slot.name][free].any()
            assert not trained["end_0"][slot.name][free].any()  # still zero after retraining
        elif slot.kind == "shared":
            assert (owner == 0).all()
        else:  # multi-head output: head 0's rows are task 0's, head 1's still free
            rows = slot.rows_per_head
            assert (owner[:rows] == 0).all() and (owner[rows:] == FREE).all()
    retrained = [
        not torch.equal(trained["after_prune"][s.name], trained["end_0"][s.name]) for s in slots
    ]
    assert any(retrained)


def test_task_0_weights_are_bit_identical_after_task_1(trained) -> None:
    agent, method = trained["agent"], trained["method"]
    assert agent.config.reset_optimizer  # task 1 ran with a fresh Adam
    changed = False
    for slot in method.all_slots(agent):
        kept = trained["owners_end_0"][slot.name] == 0
        before, after = trained["end_0"][slot.name], trained["end_1"][slot.name]
        assert torch.equal(before[kept], after[kept]), slot.name
        if slot.kind == "shared":  # biases and LayerNorm: frozen after the first task
            assert torch.equal(before, after), slot.name
        changed |= not torch.equal(before[~kept], after[~kept])
    assert changed  # task 1 did train its free weights
    final = method.owners
    for slot in method.all_slots(agent):  # the last task keeps everything left
        assert (final[slot.name] != FREE).all() or slot.kind == "head"


def test_adam_moments_and_weight_decay_cannot_move_frozen_weights() -> None:
    method = PackNet(retrain_steps=50, clipnorm=None)
    agent, sequence = make_agent(
        method=method,
        reset_optimizer=False,  # task 0's Adam moments carry over into task 1
        policy_kwargs={"optimizer_kwargs": {"weight_decay": 0.5}},
    )
    train_task(agent, sequence, 0, 200)
    assert agent.actor.optimizer.state
    before, kept = snapshot(method, agent), owners(method)
    train_task(agent, sequence, 1, 150)
    after = snapshot(method, agent)
    for name, owner in kept.items():
        assert torch.equal(before[name][owner == 0], after[name][owner == 0]), name


def test_the_prune_schedule_gives_every_task_an_equal_share() -> None:
    method = PackNet()
    agent, sequence = make_agent("toy-reach-0,toy-reach-4,toy-reach-2", method=method)
    weights = [s for s in method.all_slots(agent) if s.kind == "weight"]
    assert [method.fraction_to_prune(t, 3) for t in range(3)] == [2 / 3, 1 / 2, 0.0]
    left = {s.name: s.param.numel() for s in weights}
    for task in range(3):
        start_task(agent, sequence, task, budget=None)  # unknown budget: prune at the end
        with torch.no_grad():  # stand-in for training: fresh values for the free weights
            for slot in weights:
                free = method.owners[slot.name] == FREE
                slot.param[free] = torch.randn(int(free.sum()))
        before = snapshot(method, agent)
        agent.on_task_end(task)
        fraction = method.fraction_to_prune(task, 3)
        for slot in weights:
            owner, n = method.owners[slot.name], left[slot.name]
            assert int((owner == task).sum()) == n - int(n * fraction)
            left[slot.name] = int((owner == FREE).sum())
            assert not slot.param[owner == FREE].any()  # pruned: zero
            kept = before[slot.name][owner == task].abs()
            pruned = before[slot.name][(owner == FREE)].abs()
            if pruned.numel():  # the largest magnitudes are the ones kept
                assert kept.min() >= pruned.max()
        for slot in method.all_slots(agent):
            owner = method.owners[slot.name]
            if slot.kind == "head":
                rows = slice(task * slot.rows_per_head, (task + 1) * slot.rows_per_head)
                assert (owner[rows] == task).all()
            elif slot.kind == "shared":
                assert (owner == 0).all()
    for slot in weights:  # each task got a third of every matrix (up to rounding)
        counts = [int((method.owners[slot.name] == t).sum()) for t in range(3)]
        assert max(counts) - min(counts) <= 2 and sum(counts) == slot.param.numel()


def test_a_fixed_prune_fraction() -> None:
    method = PackNet(prune_fraction=0.5)
    agent, sequence = make_agent("toy-reach-0,toy-reach-4,toy-reach-2", method=method)
    assert [method.fraction_to_prune(t, 3) for t in range(3)] == [0.5, 0.5, 0.0]
    slot = next(s for s in method.all_slots(agent) if s.kind == "weight")
    n = slot.param.numel()
    for task in range(3):
        start_task(agent, sequence, task, budget=None)
        agent.on_task_end(task)
    counts = [int((method.owners[slot.name] == t).sum()) for t in range(3)]
    assert counts == [n - n // 2, n // 2 - n // 4, n // 4]


def masked_copy(agent: ContinualSAC, method: PackNet, task: int) -> torch.nn.Module:
    """The actor with every weight that task ``task`` did not see set to zero."""
    actor = copy.deepcopy(agent.actor)
    params = dict(actor.named_parameters())
    with torch.no_grad():
        for name, owner in method.owners.items():
            visible = (owner >= 0) & (owner <= task)
            params[name.removeprefix("actor.")].masked_fill_(~visible, 0.0)
    return actor


def test_evaluating_uses_only_the_tasks_weights_and_restores_them(trained) -> None:
    agent, method, sequence = trained["agent"], trained["method"], trained["sequence"]
    before = [p.detach().clone() for p in agent.actor.parameters()]
    reference = masked_copy(agent, method, 0)
    obs = observation(sequence, 0)
    full_mean = agent.actor.get_action_dist_params(obs)[0]
    with method.evaluating(agent, 0):
        for ours, theirs in zip(agent.actor.parameters(), reference.parameters(), strict=True):
            assert torch.equal(ours, theirs)
        mean, log_std, _ = agent.actor.get_action_dist_params(obs)
    expected_mean, expected_log_std, _ = reference.get_action_dist_params(obs)
    assert torch.equal(mean, expected_mean) and torch.equal(log_std, expected_log_std)
    assert not torch.equal(mean, full_mean)  # task 1's weights do matter
    for old, new in zip(before, agent.actor.parameters(), strict=True):
        assert torch.equal(old, new)
    with method.evaluating(agent, 1):  # the current (last) task sees every weight
        for old, new in zip(before, agent.actor.parameters(), strict=True):
            assert torch.equal(old, new)


def test_evaluating_during_a_task_counts_free_weights_as_the_current_tasks() -> None:
    method = PackNet()
    agent, sequence = make_agent(method=method)
    train_task(agent, sequence, 0, 150)  # no budget to retrain in: prune at the end
    start_task(agent, sequence, 1, BUDGET)
    with torch.no_grad():
        for slot in method.all_slots(agent):
            slot.param.add_(1.0)  # stand-in for task 1's training: free weights non-zero
    before = [p.detach().clone() for p in agent.actor.parameters()]
    with method.evaluating(agent, 1):
        for old, new in zip(before, agent.actor.parameters(), strict=True):
            assert torch.equal(old, new)
    with method.evaluating(agent, 0):
        for slot in method.all_slots(agent):
            assert not slot.param[method.owners[slot.name] == FREE].any()
    for old, new in zip(before, agent.actor.parameters(), strict=True):
        assert torch.equal(old, new)


def test_state_round_trip_through_a_weights_only_checkpoint(trained) -> None:
    agent, method, sequence = trained["agent"], trained["method"], trained["sequence"]
    state = checkpoint_round_trip(agent.training_state())
    clone, _ = make_agent(method=PackNet(retrain_steps=RETRAIN))
    clone.load_training_state(state)
    assert clone.method.packed_task == method.packed_task == 1
    assert clone.method.owners.keys() == method.owners.keys()
    for name, owner in method.owners.items():
        assert torch.equal(clone.method.owners[name], owner)
    obs = observation(sequence, 0)
    with method.evaluating(agent, 0):
        expected = agent.actor.get_action_dist_params(obs)[:2]
    with clone.method.evaluating(clone, 0):
        got = clone.actor.get_action_dist_params(obs)[:2]
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    # Training on after the restore still leaves task 0's weights alone.
    before = snapshot(clone.method, clone)
    clone.train(gradient_steps=5, batch_size=32)
    after = snapshot(clone.method, clone)
    for name, owner in clone.method.owners.items():
        assert torch.equal(before[name][owner == 0], after[name][owner == 0]), name
    assert any(not torch.equal(before[name], after[name]) for name in before)


def test_regularize_critic_packs_the_critics_too() -> None:
    method = PackNet(retrain_steps=0, regularize_critic=True)
    agent, sequence = make_agent(method=method, reset_buffer=False)
    train_task(agent, sequence, 0, 120)
    critic_names = [s.name for s in method.slots(agent)["critic"]]
    assert any(name.startswith("critic.qf1.0") for name in critic_names)
    before, kept = snapshot(method, agent), owners(method)
    start_task(agent, sequence, 1, BUDGET)
    agent.train(gradient_steps=10, batch_size=32)
    after = snapshot(method, agent)
    for name in critic_names:
        frozen = kept[name] == 0
        assert frozen.any() and torch.equal(before[name][frozen], after[name][frozen]), name
    assert any(not torch.equal(before[name], after[name]) for name in critic_names)


def test_options_are_checked() -> None:
    with pytest.raises(crlgym.ConfigError, match="prune_fraction"):
        PackNet(prune_fraction=1.0)
    with pytest.raises(crlgym.ConfigError, match="retrain_steps"):
        PackNet(retrain_steps=-1)
    agent, _ = make_agent(reset_actor=True)
    with pytest.raises(crlgym.ConfigError, match="reset_actor"):
        agent.on_task_start(0, BUDGET)
