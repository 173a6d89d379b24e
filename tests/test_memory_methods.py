"""Memory-based methods: A-GEM, perfect-memory replay (reservoir), ClonEx (behaviour cloning)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crlgym import envs
from crlgym.agents.methods.agem import AGEM, agem_project
from crlgym.agents.methods.base import ContinualMethod
from crlgym.agents.methods.common import ReservoirMemory, Transitions, task_transitions
from crlgym.agents.methods.replay import ClonEx, Replay
from crlgym.agents.sac import ContinualSAC
from crlgym.agents.sac_losses import sac_actor_loss, sac_critic_loss
from tests.helpers import assert_same_state, checkpoint_round_trip, make_sac_agent, train_task

SMALL = {
    "hidden_sizes": (32, 32),
    "buffer_size": 2_000,
    "update_every": 1,
    "gradient_steps": 1,
    "batch_size": 64,
    "learning_rate": 3e-3,
}
NO_UPDATES = {"random_steps": 10_000, "update_after": 10_000}  # only collect data


def make_agent(
    method: ContinualMethod | None = None, **overrides
) -> tuple[ContinualSAC, envs.TaskSequence]:
    """A tiny two-task agent on the toy tasks."""
    return make_sac_agent(method=method, **{**SMALL, **overrides})


def after_first_task(method: ContinualMethod, task_1_steps: int = 100, **overrides):
    """An agent that finished task 0 (300 steps) and collected ``task_1_steps`` of task 1."""
    agent, sequence = make_agent(method=method, **{**NO_UPDATES, **overrides})
    train_task(agent, sequence, 0, 300)
    agent.set_env(sequence.make_env(1, seed=1))
    agent.on_task_start(1)
    agent.learn(task_1_steps, reset_num_timesteps=False)
    return agent, sequence


def task_ids(observations: torch.Tensor) -> torch.Tensor:
    return observations[:, -2:].argmax(dim=1)


def flat_grad(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in module.parameters()])


def set_flat_grad(module: torch.nn.Module, gradient: torch.Tensor) -> None:
    chunks = gradient.split([p.numel() for p in module.parameters()])
    for p, chunk in zip(module.parameters(), chunks, strict=True):
        p.grad = chunk.view_as(p).clone()


def current_actor_backward(agent: ContinualSAC) -> None:
    batch = agent.replay_buffer.sample(64)
    agent.actor.optimizer.zero_grad()
    agent.critic.optimizer.zero_grad()
    sac_actor_loss(agent, batch.observations).backward()


# --- A-GEM ------------------------------------------------------------------------------


def test_agem_projects_a_conflicting_gradient_exactly() -> None:
    g = torch.tensor([1.0, 2.0, -1.0, 0.5], dtype=torch.float64)
    g_ref = torch.tensor([-1.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    dot = torch.dot(g, g_ref)
    assert dot < 0
    projected = agem_project(g, g_ref)
    torch.testing.assert_close(projected, g - dot / torch.dot(g_ref, g_ref) * g_ref)
    assert abs(torch.dot(projected, g_ref).item()) < 1e-12


def test_agem_keeps_a_non_conflicting_gradient() -> None:
    g = torch.tensor([1.0, 2.0, -1.0])
    for g_ref in (torch.tensor([1.0, 0.0, 0.5]), torch.tensor([0.0, 0.5, 1.0]), torch.zeros(3)):
        assert agem_project(g, g_ref) is g  # positive, zero dot product, empty memory


def test_agem_memory_holds_samples_per_task_of_each_task() -> None:
    method = AGEM(samples_per_task=50)
    agent, _ = after_first_task(method)
    assert method.memory.task_sizes() == {0: 50}
    task_0 = method.memory.of_task(0)
    assert set(task_0) == {"observations", "actions", "next_observations", "dones", "rewards"}
    assert (task_ids(task_0["observations"]) == 0).all()
    assert len(torch.unique(task_0["actions"], dim=0)) == 50  # drawn without replacement
    assert task_0["rewards"].shape == task_0["dones"].shape == (50, 1)
    agent.on_task_end(1)
    assert method.memory.task_sizes() == {0: 50, 1: 50}
    assert (task_ids(method.memory.of_task(1)["observations"]) == 1).all()


def test_memories_take_only_the_tasks_own_transitions() -> None:
    method = AGEM(samples_per_task=10_000)  # more than a task has: everything is kept
    agent, _ = after_first_task(method, reset_buffer=False)
    agent.on_task_end(1)
    assert method.memory.task_sizes() == {0: 300, 1: 100}
    assert (task_ids(method.memory.of_task(1)["observations"]) == 1).all()
    # the buffer really held both tasks: the memory picked task 1's part
    assert agent.replay_buffer.pos == 400


def test_agem_does_nothing_before_the_first_task_ends() -> None:
    method = AGEM()
    agent, _ = make_agent(method=method, **NO_UPDATES)
    agent.on_task_start(0)
    agent.learn(100, reset_num_timesteps=False)
    current_actor_backward(agent)
    before = flat_grad(agent.actor).clone()
    method.adjust_gradients(agent, "actor")
    assert torch.equal(flat_grad(agent.actor), before)
    assert method.adjustments == {"actor": 0, "critic": 0}


@pytest.mark.parametrize("network", ["actor", "critic"])
def test_agem_adjusted_gradient_never_conflicts_with_the_reference(network: str) -> None:
    method = AGEM(samples_per_task=100, episodic_batch_size=64)
    agent, _ = after_first_task(method)
    module = agent.actor if network == "actor" else agent.critic
    other = agent.critic if network == "actor" else agent.actor
    current_actor_backward(agent)  # gives both networks gradients
    for p in other.parameters():
        p.grad = torch.randn_like(p)
    other_before = flat_grad(other).clone()

    torch.manual_seed(7)
    reference = method.reference_gradient(agent, network)
    # a gradient that conflicts with the memory: projected onto the reference's normal plane
    gradient = -reference + 0.1 * torch.randn_like(reference)
    set_flat_grad(module, gradient)
    torch.manual_seed(7)  # the same memory batch and action samples as `reference`
    method.adjust_gradients(agent, network)
    adjusted = flat_grad(module)
    expected = (
        gradient - torch.dot(gradient, reference) / torch.dot(reference, reference) * reference
    )
    torch.testing.assert_close(adjusted, expected)
    assert abs(torch.dot(adjusted, reference)) <= 1e-4 * adjusted.norm() * reference.norm()
    assert method.projections[network] == 1
    assert torch.equal(flat_grad(other), other_before)  # no reference gradient left anywhere

    # the agent's own gradient: after adjustment it agrees (or is orthogonal) with g_ref
    current_actor_backward(agent)
    if network == "critic":
        batch = agent.replay_buffer.sample(64)
        agent.critic.optimizer.zero_grad()
        sac_critic_loss(agent, batch).backward()
    torch.manual_seed(8)
    method.adjust_gradients(agent, network)
    torch.manual_seed(8)
    reference = method.reference_gradient(agent, network)
    adjusted = flat_grad(module)
    assert torch.dot(adjusted, reference) >= -1e-4 * adjusted.norm() * reference.norm()


def test_agem_critic_is_left_alone_unless_regularized() -> None:
    method = AGEM(samples_per_task=100, regularize_critic=False)
    agent, _ = after_first_task(method)
    current_actor_backward(agent)
    set_flat_grad(agent.critic, torch.randn_like(flat_grad(agent.critic)))
    before = flat_grad(agent.critic).clone()
    method.adjust_gradients(agent, "critic")
    assert torch.equal(flat_grad(agent.critic), before)


# --- reservoir and replay ---------------------------------------------------------------


def tagged(task: int, count: int, first: int) -> dict[str, torch.Tensor]:
    """``count`` samples of ``task``, with a unique running id."""
    return {
        "task": torch.full((count, 1), float(task)),
        "id": torch.arange(first, first + count, dtype=torch.float32)[:, None],
    }


def test_reservoir_keeps_capacity_and_is_uniform_over_tasks() -> None:
    torch.manual_seed(0)
    reservoir = ReservoirMemory(capacity=3_000)
    reservoir.add(tagged(0, 1_000, 0))
    assert len(reservoir) == 1_000  # room left: everything kept
    reservoir.add(tagged(0, 2_000, 1_000))
    assert len(reservoir) == 3_000 and reservoir.seen == 3_000
    for task in (1, 2):
        reservoir.add(tagged(task, 3_000, 3_000 * task))
    assert len(reservoir) == 3_000 and reservoir.seen == 9_000
    assert len(torch.unique(reservoir.data["id"])) == 3_000  # no sample is kept twice
    shares = torch.bincount(reservoir.data["task"][:, 0].long(), minlength=3) / 3_000
    torch.testing.assert_close(shares, torch.full((3,), 1 / 3), atol=0.04, rtol=0)


def test_reservoir_add_in_one_batch_is_uniform() -> None:
    torch.manual_seed(1)
    reservoir = ReservoirMemory(capacity=2_000)
    reservoir.add(tagged(0, 20_000, 0))
    ids = reservoir.data["id"][:, 0]
    assert len(torch.unique(ids)) == 2_000
    deciles = torch.bincount((ids / 2_000).long(), minlength=10) / 2_000
    torch.testing.assert_close(deciles, torch.full((10,), 0.1), atol=0.03, rtol=0)


def test_replay_losses_use_old_tasks_with_their_own_ids() -> None:
    method = Replay(batch_size=32)
    agent, _ = make_agent(method=method, **NO_UPDATES)
    assert method.sample_extra_batch(agent) is None  # nothing remembered yet
    assert method.critic_aux_loss(agent, None, None) is None  # the current batch is not used
    assert method.actor_aux_loss(agent, None, None) is None
    agent, _ = after_first_task(method)
    assert len(method.memory) == 300
    assert (task_ids(method.memory.data["observations"]) == 0).all()
    extra = method.sample_extra_batch(agent)
    critic_loss = method.critic_aux_loss(agent, None, extra)
    actor_loss = method.actor_aux_loss(agent, None, extra)
    for loss in (critic_loss, actor_loss):
        assert loss is not None and loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad
    agent.on_task_end(1)
    assert len(method.memory) == 400 and method.memory.seen == 400


def test_sac_critic_loss_of_terminal_transitions_is_the_reward_regression() -> None:
    agent, _ = make_agent(**NO_UPDATES)
    observations = torch.cat(
        [torch.rand(8, 2), torch.eye(2)[torch.zeros(8, dtype=torch.long)]], dim=1
    )
    actions, rewards = torch.rand(8, 2) * 2 - 1, torch.randn(8, 1)
    batch = Transitions(observations, actions, observations, torch.ones(8, 1), rewards)
    q1, q2 = agent.critic(observations, actions)
    expected = 0.5 * (((q1 - rewards) ** 2).mean() + ((q2 - rewards) ** 2).mean())
    torch.testing.assert_close(sac_critic_loss(agent, batch), expected)


# --- ClonEx -----------------------------------------------------------------------------


def test_clonex_kl_is_zero_for_the_unchanged_policy_and_grows_with_perturbation() -> None:
    method = ClonEx(states_per_task=200, batch_size=64, critic_coef=1.0)
    agent, _ = after_first_task(method)
    assert method.memory.task_sizes() == {0: 200}
    stored = method.memory.data
    for name in ("mean", "log_std", "q_values"):
        assert not stored[name].requires_grad and stored[name].grad_fn is None
    assert stored["mean"].shape == stored["log_std"].shape == (200, 2)
    assert stored["q_values"].shape == (200, 2)
    assert (task_ids(stored["observations"]) == 0).all()

    assert method.kl(agent, stored).item() < 1e-6
    extra = method.sample_extra_batch(agent)
    assert method.actor_aux_loss(agent, None, extra).item() < 1e-6
    assert method.critic_aux_loss(agent, None, extra).item() < 1e-10
    loss = method.actor_aux_loss(agent, None, extra)
    assert loss.requires_grad

    original = [p.detach().clone() for p in agent.actor.parameters()]
    kls = []
    for scale in (0.01, 0.1):
        with torch.no_grad():
            for p, p0 in zip(agent.actor.parameters(), original, strict=True):
                p.copy_(p0 + scale * torch.randn_like(p0))
        kls.append(method.kl(agent, stored).item())
    assert 0 < kls[0] < kls[1]


def test_clonex_critic_regularizer_is_off_by_default() -> None:
    method = ClonEx(states_per_task=50)
    agent, _ = after_first_task(method)
    extra = method.sample_extra_batch(agent)
    assert method.critic_aux_loss(agent, None, extra) is None
    assert method.actor_aux_loss(agent, None, extra) is not None


# --- through the agent and checkpoints --------------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        AGEM(samples_per_task=100, episodic_batch_size=32),
        Replay(capacity=500, batch_size=32),
        ClonEx(states_per_task=100, batch_size=32, critic_coef=1.0),
    ],
    ids=["agem", "replay", "clonex"],
)
@pytest.mark.integration  # trains agents
def test_methods_train_with_the_agent(method: ContinualMethod) -> None:
    agent, sequence = make_agent(method=method, random_steps=50, update_after=50)
    train_task(agent, sequence, 0, 100)
    before = [p.detach().clone() for p in agent.actor.parameters()]
    train_task(agent, sequence, 1, 100)
    assert all(np.isfinite(p.detach().numpy()).all() for p in agent.actor.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, agent.actor.parameters(), strict=True))
    if isinstance(method, AGEM):
        assert method.adjustments == {"actor": 50, "critic": 50}


@pytest.mark.parametrize(
    "make",
    [
        lambda: AGEM(samples_per_task=60),
        lambda: Replay(capacity=250),
        lambda: ClonEx(states_per_task=60),
    ],
    ids=["agem", "replay", "clonex"],
)
def test_memories_survive_a_weights_only_checkpoint(make) -> None:
    method = make()
    agent, _ = after_first_task(method)
    agent.on_task_end(1)
    state = method.state_dict()
    clone = make()
    clone.load_state_dict(checkpoint_round_trip(state))
    assert_same_state(clone.state_dict(), state)
    assert len(clone.memory) == len(method.memory) > 0
    # the storage RNG is restored too: the same next decisions
    agent.on_task_end(1)
    clone.on_task_end(agent, 1)
    assert_same_state(clone.state_dict(), method.state_dict())


def test_task_transitions_match_the_buffer() -> None:
    agent, _ = after_first_task(ContinualMethod(), task_1_steps=40)
    data = task_transitions(agent)
    buffer = agent.replay_buffer
    assert len(data["observations"]) == 40
    np.testing.assert_array_equal(data["observations"].numpy(), buffer.observations[:40, 0])
    np.testing.assert_array_equal(data["actions"].numpy(), buffer.actions[:40, 0])
    np.testing.assert_array_equal(
        data["next_observations"].numpy(), buffer.next_observations[:40, 0]
    )
    assert data["dones"].sum() == 0  # toy episodes only end by time limit: no true dones


# --- one extra batch per gradient step, handed to both losses ------------------------------


def recording(cls: type[ContinualMethod]) -> type[ContinualMethod]:
    """``cls`` that records, per hook call, the extra batch it was given or returned."""

    class Recording(cls):
        def __init__(self, **options) -> None:
            super().__init__(**options)
            self.calls: list[tuple[str, object]] = []

        def sample_extra_batch(self, agent):
            extra = super().sample_extra_batch(agent)
            self.calls.append(("sample", extra))
            return extra

        def critic_aux_loss(self, agent, batch, extra):
            self.calls.append(("critic", extra))
            return super().critic_aux_loss(agent, batch, extra)

        def actor_aux_loss(self, agent, batch, extra):
            self.calls.append(("actor", extra))
            return super().actor_aux_loss(agent, batch, extra)

    return Recording


@pytest.mark.integration  # trains agents
@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (Replay, {"capacity": 500, "batch_size": 16}),
        (ClonEx, {"states_per_task": 60, "batch_size": 16, "critic_coef": 1.0}),
        (ClonEx, {"states_per_task": 60, "batch_size": 16}),
        (ContinualMethod, {}),
    ],
    ids=["replay", "clonex", "clonex-actor-only", "finetune"],
)
def test_each_gradient_step_hands_one_extra_batch_to_both_losses(cls, options) -> None:
    method = recording(cls)(**options)
    agent, sequence = make_agent(method=method, random_steps=20, update_after=20)
    train_task(agent, sequence, 0, 40)
    steps_0 = agent._n_updates
    train_task(agent, sequence, 1, 40)
    steps = agent._n_updates
    assert steps_0 > 0 and steps > steps_0
    assert [kind for kind, _ in method.calls] == ["sample", "critic", "actor"] * steps
    triples = [method.calls[i : i + 3] for i in range(0, len(method.calls), 3)]
    for index, ((_, sampled), (_, critic), (_, actor)) in enumerate(triples):
        assert critic is sampled and actor is sampled  # the very same object
        if cls is ContinualMethod or index < steps_0:
            assert sampled is None  # no method batch, or nothing remembered yet
        else:
            assert sampled is not None
    if cls is not ContinualMethod:
        extras = [sampled for _, sampled in method.calls[3 * steps_0 :: 3]]
        first = extras[0].observations if cls is Replay else extras[0]["observations"]
        second = extras[1].observations if cls is Replay else extras[1]["observations"]
        assert (task_ids(first) == 0).all() and not torch.equal(first, second)  # fresh per step


def test_memory_losses_use_the_extra_batch_they_are_given() -> None:
    method = ClonEx(states_per_task=100, batch_size=32, critic_coef=2.0)
    agent, _ = after_first_task(method)
    extra = method.sample_extra_batch(agent)
    stored = extra["q_values"]
    q1, q2 = agent.critic(extra["observations"], extra["actions"])
    expected = 2.0 * 0.5 * (((q1 - stored[:, :1]) ** 2).mean() + ((q2 - stored[:, 1:]) ** 2).mean())
    torch.testing.assert_close(method.critic_aux_loss(agent, None, extra), expected)
    torch.testing.assert_close(method.actor_aux_loss(agent, None, extra), method.kl(agent, extra))
    assert method.critic_aux_loss(agent, None, None) is None
    assert method.actor_aux_loss(agent, None, None) is None
    off = ClonEx(states_per_task=100, coef=0.0)
    off.memory = method.memory
    assert off.sample_extra_batch(agent) is None  # neither loss would use it: nothing drawn
    replay = Replay(capacity=500, batch_size=8)
    replay.memory.add(task_transitions(agent))
    batch = replay.sample_extra_batch(agent)
    assert isinstance(batch, Transitions) and batch.observations.shape[0] == 8
    torch.manual_seed(3)
    given = replay.actor_aux_loss(agent, None, batch)
    torch.manual_seed(3)
    torch.testing.assert_close(given, sac_actor_loss(agent, batch.observations))
    torch.manual_seed(3)
    critic = replay.critic_aux_loss(agent, None, batch)
    torch.manual_seed(3)
    torch.testing.assert_close(critic, sac_critic_loss(agent, batch))
