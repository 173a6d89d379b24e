"""L2, EWC and MAS: penalties, importances against hand-computed values, checkpoints."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from crlgym.agents.methods import METHODS as BY_NAME
from crlgym.agents.methods import make_method, method_options
from crlgym.agents.methods.common import QuadraticAnchor
from crlgym.agents.methods.regularization import (
    EWC,
    L2,
    MAS,
    EWCOptions,
    L2Options,
    MASOptions,
    ParameterRegularizer,
    RegularizerOptions,
    SampledImportanceOptions,
)
from crlgym.agents.sac import select_head, split_task_id
from crlgym.errors import ConfigError
from tests.helpers import checkpoint_round_trip, make_sac_agent

IN_DIM, ACTION_DIM, STATES = 3, 2, 12

# --- a tiny agent-like setting where every gradient is known in closed form ---------------


class TinyActor(nn.Module):
    """Actor-like: linear multi-head mean and log std of the raw inputs (no trunk), so
    d mean_a / d mu.weight[a] = x and d log_std_a / d log_std.weight[a] = x."""

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.task_id_dims = num_heads, num_heads if num_heads > 1 else 0
        self.mu = nn.Linear(IN_DIM, ACTION_DIM * num_heads)
        self.log_std = nn.Linear(IN_DIM, ACTION_DIM * num_heads)
        with torch.no_grad():
            self.log_std.weight.mul_(0.2)  # keeps log std away from the clamp

    def get_action_dist_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        inputs, task = split_task_id(obs, self.task_id_dims)
        mean = select_head(self.mu(inputs), task, self.num_heads)
        log_std = select_head(self.log_std(inputs), task, self.num_heads)
        return mean, log_std.clamp(-20.0, 2.0), {}


class TinyCritic(nn.Module):
    """Critic-like: twin linear multi-head Q of (inputs, action)."""

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.task_id_dims = num_heads, num_heads if num_heads > 1 else 0
        self.q_networks = []
        for index in range(2):
            q_net = nn.Sequential(nn.Identity(), nn.Linear(IN_DIM + ACTION_DIM, num_heads))
            self.add_module(f"qf{index}", q_net)
            self.q_networks.append(q_net)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inputs, task = split_task_id(obs, self.task_id_dims)
        q_input = torch.cat([inputs, actions], dim=1)
        return tuple(select_head(q(q_input), task, self.num_heads) for q in self.q_networks)


class FixedBuffer:
    """Replay-buffer-like: every sample is the same fixed set of transitions, so averages
    over sampled batches are exact averages over these states."""

    def __init__(self, observations: torch.Tensor, actions: torch.Tensor) -> None:
        self.observations, self.actions = observations, actions
        self.pos, self.full = observations.shape[0], False

    def sample(self, batch_size: int, env: object = None) -> SimpleNamespace:
        return SimpleNamespace(observations=self.observations, actions=self.actions)


def tiny_agent(num_heads: int = 2, task: int = 0, inputs: torch.Tensor | None = None):
    torch.manual_seed(0)
    x = torch.randn(STATES, IN_DIM) if inputs is None else inputs
    one_hot = torch.eye(num_heads)[[task] * x.shape[0]] if num_heads > 1 else x[:, :0]
    buffer = FixedBuffer(torch.cat([x, one_hot], dim=1), torch.rand(x.shape[0], ACTION_DIM) * 2 - 1)
    return SimpleNamespace(
        actor=TinyActor(num_heads), critic=TinyCritic(num_heads), replay_buffer=buffer
    )


def perturb(module: nn.Module, scale: float = 0.1) -> None:
    with torch.no_grad():
        for param in module.parameters():
            param.add_(scale * torch.randn_like(param))


def distance(module: nn.Module, old: dict[str, torch.Tensor]) -> float:
    return sum(float((p.detach() - old[n]).square().sum()) for n, p in module.named_parameters())


def fast(cls: type[ParameterRegularizer], **kwargs) -> ParameterRegularizer:
    """A method with one sampled batch (FixedBuffer returns all its states anyway)."""
    if cls is L2:
        return cls(**kwargs)
    return cls(num_batches=1, **kwargs)


METHODS = [L2, EWC, MAS]


# --- the shared base ----------------------------------------------------------------------


@pytest.mark.parametrize("cls", METHODS)
def test_nothing_before_the_first_task_ends(cls: type[ParameterRegularizer]) -> None:
    method, agent = fast(cls, regularize_critic=True), tiny_agent()
    assert method.actor_aux_loss(agent, None, None) is None
    assert method.critic_aux_loss(agent, None, None) is None


def test_l2_penalty_is_coef_times_squared_distance() -> None:
    method, agent = L2(coef=3.0), tiny_agent(num_heads=1)
    assert L2().options.coef == 1e5 and EWC().options.coef == 1e4 and MAS().options.coef == 1e4
    old = {name: p.detach().clone() for name, p in agent.actor.named_parameters()}
    method.on_task_end(agent, 0)
    perturb(agent.actor)
    penalty = method.actor_aux_loss(agent, None, None)
    assert penalty is not None and penalty.item() > 0
    torch.testing.assert_close(penalty, torch.tensor(3.0 * distance(agent.actor, old)))


@pytest.mark.parametrize("cls", METHODS)
def test_one_sgd_step_on_the_penalty_pulls_parameters_back(
    cls: type[ParameterRegularizer],
) -> None:
    method, agent = fast(cls, coef=2.0), tiny_agent()
    method.on_task_end(agent, 0)
    old = method.old_params["actor"]
    perturb(agent.actor)
    before = distance(agent.actor, old)
    largest = max(float(w.max()) for w in method.importance["actor"].values())
    optimizer = torch.optim.SGD(agent.actor.parameters(), lr=0.5 / (2.0 * 2.0 * largest))
    method.actor_aux_loss(agent, None, None).backward()
    optimizer.step()
    assert distance(agent.actor, old) < before


@pytest.mark.parametrize("cls", METHODS)
def test_a_new_tasks_head_is_free_and_the_finished_one_keeps_its_importance(
    cls: type[ParameterRegularizer],
) -> None:
    method, agent = fast(cls), tiny_agent(num_heads=2, task=0)
    method.on_task_end(agent, 0)
    for name in ("mu.weight", "mu.bias", "log_std.weight", "log_std.bias"):
        per_head = method.importance["actor"][name].view(2, ACTION_DIM, -1)
        assert (per_head[0] > 0).all() and (per_head[1] == 0).all()
    with torch.no_grad():  # training task 1 moves only its head: no penalty
        agent.actor.mu.weight[ACTION_DIM:] += 1.0
    assert method.actor_aux_loss(agent, None, None).item() == 0.0


@pytest.mark.parametrize("cls", METHODS)
def test_importance_accumulates_over_tasks(cls: type[ParameterRegularizer]) -> None:
    method, agent = fast(cls), tiny_agent(num_heads=1)
    method.on_task_end(agent, 0)
    first = {name: w.clone() for name, w in method.importance["actor"].items()}
    method.on_task_end(agent, 0)  # the same task again: nothing changes
    method.on_task_end(agent, 1)  # same parameters and data: twice the importance
    for name, weight in method.importance["actor"].items():
        torch.testing.assert_close(weight, 2 * first[name])
    assert method.finished_tasks == [0, 1]


def test_only_the_actor_is_regularized_by_default() -> None:
    agent = tiny_agent(num_heads=1)
    default, with_critic = L2(coef=5.0), L2(coef=5.0, regularize_critic=True)
    default.on_task_end(agent, 0)
    with_critic.on_task_end(agent, 0)
    old = {name: p.detach().clone() for name, p in agent.critic.named_parameters()}
    perturb(agent.critic)
    assert "critic" not in default.importance
    assert default.critic_aux_loss(agent, None, None) is None
    torch.testing.assert_close(
        with_critic.critic_aux_loss(agent, None, None),
        torch.tensor(5.0 * distance(agent.critic, old)),
    )


# --- EWC and MAS against hand-computed values ---------------------------------------------


def linear_policy(agent: SimpleNamespace, task: int = 0):
    """(inputs x, pre-tanh mean m, log std s) of the tiny actor on the buffer's states."""
    x = agent.replay_buffer.observations[:, :IN_DIM]
    rows = slice(task * ACTION_DIM, (task + 1) * ACTION_DIM)
    actor = agent.actor
    with torch.no_grad():
        m = x @ actor.mu.weight[rows].T + actor.mu.bias[rows]
        s = x @ actor.log_std.weight[rows].T + actor.log_std.bias[rows]
    assert s.abs().max() < 2.0  # the clamp is inactive
    return x, m, s


@pytest.mark.parametrize("squash_mean", [True, False])
def test_ewc_fisher_is_the_closed_form_gaussian_fisher(squash_mean: bool) -> None:
    method = EWC(num_batches=2, squash_mean=squash_mean, regularize_critic=True)
    torch.manual_seed(0)
    inputs = torch.randn(STATES, IN_DIM) * torch.tensor([0.0, 1.0, 1.0])  # input 0: always 0
    agent = tiny_agent(num_heads=2, inputs=inputs)
    method.on_task_end(agent, 0)
    x, m, s = linear_policy(agent)
    # d mu/d theta: x for the weights, 1 for the bias (times 1 - tanh^2 after tanh).
    dmu = 1 - torch.tanh(m) ** 2 if squash_mean else torch.ones_like(m)
    variance = torch.exp(2 * s) + 1e-6
    mu_term = dmu**2 / variance  # (state, action)
    std_term = 2 * torch.exp(2 * s) / variance  # (d sigma/d theta)^2 = sigma^2 (d log sigma)^2
    expected = {
        "mu.weight": (mu_term[:, :, None] * x[:, None, :] ** 2).clamp_min(1e-5).mean(0),
        "mu.bias": mu_term.clamp_min(1e-5).mean(0),
        "log_std.weight": (std_term[:, :, None] * x[:, None, :] ** 2).clamp_min(1e-5).mean(0),
        "log_std.bias": std_term.clamp_min(1e-5).mean(0),
    }
    importance = method.importance["actor"]
    for name, value in expected.items():
        torch.testing.assert_close(importance[name][:ACTION_DIM], value, rtol=1e-5, atol=1e-10)
        assert (importance[name][ACTION_DIM:] == 0).all()  # task 1's head
    # Weights reading the always-0 input have no Fisher: clipped from below, as in CW.
    torch.testing.assert_close(importance["mu.weight"][:ACTION_DIM, 0], torch.full((2,), 1e-5))
    # The critic's: E[(dQ/d theta)^2] with dQ/dW = (x, action), dQ/db = 1, on task 0's row.
    z = torch.cat([x, agent.replay_buffer.actions], dim=1)
    critic = method.importance["critic"]
    for index in range(2):
        torch.testing.assert_close(critic[f"qf{index}.1.weight"][0], (z**2).mean(0))
        torch.testing.assert_close(critic[f"qf{index}.1.bias"][0], torch.tensor(1.0))
        assert (critic[f"qf{index}.1.weight"][1] == 0).all()


@pytest.mark.parametrize("squash_mean", [True, False])
def test_mas_importance_is_the_mean_absolute_gradient_of_the_squared_norm(
    squash_mean: bool,
) -> None:
    method, agent = MAS(num_batches=1, squash_mean=squash_mean), tiny_agent(num_heads=2)
    method.on_task_end(agent, 0)
    x, m, s = linear_policy(agent)
    # ||(mu, s)||^2 with mu = tanh(m) or m: d/dm = 2 mu mu', d/ds = 2 s.
    mu_grad = 2 * torch.tanh(m) * (1 - torch.tanh(m) ** 2) if squash_mean else 2 * m
    expected = {
        "mu.weight": (mu_grad[:, :, None] * x[:, None, :]).abs().mean(0),
        "mu.bias": mu_grad.abs().mean(0),
        "log_std.weight": (2 * s[:, :, None] * x[:, None, :]).abs().mean(0),
        "log_std.bias": (2 * s).abs().mean(0),
    }
    for name, value in expected.items():
        torch.testing.assert_close(method.importance["actor"][name][:ACTION_DIM], value)
        assert (method.importance["actor"][name][ACTION_DIM:] == 0).all()


@pytest.mark.parametrize("cls", [EWC, MAS])
def test_unimportant_parameters_are_not_pulled_and_important_ones_harder(
    cls: type[ParameterRegularizer],
) -> None:
    torch.manual_seed(1)
    # Input 0 is always 0, input 1 small, input 2 large: the weights reading them matter
    # not at all, a little, a lot.
    inputs = torch.randn(STATES, IN_DIM) * torch.tensor([0.0, 0.1, 3.0])
    method = cls(num_batches=1, **({"fisher_clip": 0.0} if cls is EWC else {}))
    agent = tiny_agent(num_heads=1, inputs=inputs)
    method.on_task_end(agent, 0)
    with torch.no_grad():
        agent.actor.mu.weight.add_(0.1)  # the same displacement everywhere
    method.actor_aux_loss(agent, None, None).backward()
    pull = agent.actor.mu.weight.grad.abs()
    assert (pull[:, 0] == 0).all()
    assert (pull[:, 1] > 0).all() and (pull[:, 2] > 10 * pull[:, 1]).all()


def test_ewc_needs_the_tasks_data() -> None:
    agent = tiny_agent()
    agent.replay_buffer.pos = 0
    with pytest.raises(RuntimeError, match="replay buffer is empty"):
        EWC().on_task_end(agent, 0)


# --- checkpoints ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", METHODS)
def test_state_dict_round_trips_through_a_weights_only_checkpoint(
    cls: type[ParameterRegularizer],
) -> None:
    method, agent = fast(cls, regularize_critic=True), tiny_agent()
    method.on_task_end(agent, 0)
    perturb(agent.actor)
    perturb(agent.critic)
    restored = fast(cls, regularize_critic=True)
    restored.load_state_dict(checkpoint_round_trip(method.state_dict()))
    assert restored.finished_tasks == [0]
    for network in ("actor", "critic"):
        expected, actual = method.penalty(agent, network), restored.penalty(agent, network)
        assert expected is not None and expected.item() > 0
        assert torch.equal(expected, actual)


# --- on the real agent ----------------------------------------------------------------------


@pytest.mark.parametrize("cls", METHODS)
@pytest.mark.integration  # trains an agent
def test_on_a_continual_sac_agent(cls: type[ParameterRegularizer]) -> None:
    method = cls(coef=1.0) if cls is L2 else cls(coef=1.0, num_batches=2, batch_size=32)
    agent, sequence = make_sac_agent(
        method=method,
        hidden_sizes=(16, 16),
        random_steps=100,
        update_after=100,
        update_every=1,
        gradient_steps=1,
        batch_size=32,
        buffer_size=1_000,
    )
    agent.on_task_start(0)
    agent.learn(120, reset_num_timesteps=False)
    agent.on_task_end(0)
    importance = method.importance["actor"]
    assert set(importance) == {name for name, _ in agent.actor.named_parameters()}
    assert all(torch.isfinite(w).all() for w in importance.values())
    assert importance["latent_pi.0.weight"].sum() > 0
    assert (importance["mu.weight"].view(2, -1)[1] == 0).all()  # task 1's head is free
    agent.set_env(sequence.make_env(1, seed=1))
    agent.on_task_start(1)
    agent.learn(120, reset_num_timesteps=False)
    penalty = method.actor_aux_loss(agent, None, None)
    assert penalty is not None and torch.isfinite(penalty) and penalty.item() > 0


# --- the shared quadratic anchor ------------------------------------------------------------


def anchored(importance: dict, parameters: dict) -> QuadraticAnchor:
    anchor = QuadraticAnchor()
    anchor.consolidate(parameters, importance)
    return anchor


def test_quadratic_anchor_penalty_by_hand() -> None:
    anchor = QuadraticAnchor()
    assert anchor.empty and anchor.penalty({"w": torch.ones(2)}) is None
    anchor = anchored(
        {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([3.0])},
        {"w": torch.zeros(2), "b": torch.tensor([1.0])},
    )
    assert not anchor.empty
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    penalty = anchor.penalty({"w": w, "b": torch.tensor([3.0])})
    assert penalty is not None and penalty.item() == 1 * 1 + 2 * 4 + 3 * 4  # no coefficient
    penalty.backward()
    torch.testing.assert_close(w.grad, torch.tensor([2.0, 8.0]))  # 2 importance (w - anchor)


def test_quadratic_anchor_consolidate_accumulates_and_detaches() -> None:
    w = nn.Parameter(torch.tensor([1.0, -1.0]))
    importance = torch.tensor([1.0, 2.0], requires_grad=True)
    anchor = anchored({"w": importance * 1.0}, {"w": w})
    with torch.no_grad():
        w.add_(1.0)  # the anchor is a copy, not the parameter
    assert torch.equal(anchor.anchor["w"], torch.tensor([1.0, -1.0]))
    anchor.consolidate({"w": w}, {"w": torch.tensor([0.5, 0.5])})
    assert torch.equal(anchor.importance["w"], torch.tensor([1.5, 2.5]))
    assert torch.equal(anchor.anchor["w"], torch.tensor([2.0, 0.0]))
    assert not anchor.importance["w"].requires_grad and not anchor.anchor["w"].requires_grad
    assert anchor.penalty({"w": w.detach()}).item() == 0.0
    v = torch.tensor([3.0])
    anchor.consolidate({"w": w, "v": v}, {"v": torch.tensor([2.0])})  # no new importance of w
    assert torch.equal(anchor.importance["w"], torch.tensor([1.5, 2.5]))  # w's total is kept
    assert anchor.penalty({"w": w.detach() + 1.0, "v": v + 1.0}).item() == 1.5 + 2.5 + 2.0


def test_quadratic_anchor_state_round_trip_and_device() -> None:
    anchor = anchored({"w": torch.rand(3, 2)}, {"w": torch.randn(3, 2)})
    state = checkpoint_round_trip(anchor.state_dict())
    assert set(state) == {"anchor", "importance"}
    restored = QuadraticAnchor()
    restored.load_state_dict(state)
    moved = {"w": torch.randn(3, 2)}
    assert torch.equal(restored.penalty(moved), anchor.penalty(moved))
    on_meta = restored.penalty({"w": torch.empty(3, 2, device="meta")})
    assert on_meta.device.type == "meta"  # the stored tensors followed the parameters
    assert restored.anchor["w"].device.type == restored.importance["w"].device.type == "meta"
    assert anchor.anchor["w"].device.type == "cpu"  # state_dict copies, not shares


def test_regularizer_penalty_is_coef_times_the_anchor_penalty_bit_for_bit() -> None:
    method, agent = fast(EWC, coef=7.0, regularize_critic=True), tiny_agent()
    method.on_task_end(agent, 0)
    perturb(agent.actor)
    perturb(agent.critic)
    for network in ("actor", "critic"):
        params = dict(getattr(agent, network).named_parameters())
        old, importance = method.old_params[network], method.importance[network]
        terms = [(importance[name] * (params[name] - old[name]).square()).sum() for name in old]
        expected = 7.0 * torch.stack(terms).sum()
        assert torch.equal(method.penalty(agent, network), expected)
        assert torch.equal(
            method.penalty(agent, network), 7.0 * method.anchors[network].penalty(params)
        )


# --- options: one frozen dataclass per method ----------------------------------------------


def test_method_options_are_declared_once_with_defaults_and_help() -> None:
    assert [(o.name, o.default) for o in method_options("ewc")] == [
        ("coef", 1e4),
        ("regularize_critic", False),
        ("num_batches", 10),
        ("batch_size", 256),
        ("squash_mean", True),
        ("fisher_clip", 1e-5),
    ]
    assert [(o.name, o.default) for o in method_options("l2")] == [
        ("coef", 1e5),
        ("regularize_critic", False),
    ]
    assert method_options("finetune") == []
    assert issubclass(EWCOptions, SampledImportanceOptions)
    assert issubclass(MASOptions, SampledImportanceOptions)
    assert issubclass(SampledImportanceOptions, RegularizerOptions)
    assert issubclass(L2Options, RegularizerOptions)
    for name, method in BY_NAME.items():
        assert make_method(name).options == method.Options()  # the defaults
        for option in method_options(name):
            assert option.help, f"{name}.{option.name} has no docstring"
    assert "CW20" in {o.name: o.help for o in method_options("l2")}["coef"]  # its own doc
    assert "Continual World regularizes only the actor" in method_options("ewc")[1].help
    options = EWCOptions(coef=2.0)
    with pytest.raises(AttributeError):
        options.coef = 3.0  # type: ignore[misc]  # frozen: the test checks it is refused
    assert EWC(options).options is options
    with pytest.raises(TypeError):
        EWC(L2Options())


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("l2", {"foo": 1}, "method l2 has no option foo (options: coef, regularize_critic)"),
        ("finetune", {"coef": 3}, "method finetune has no option coef (options: none)"),
        (
            "replay",
            {"capacity": 0},
            "bad option for method replay: capacity must be positive, got 0",
        ),
        ("clonex", {"coef": -1.0}, "bad option for method clonex: coef must be >= 0, got -1.0"),
        (
            "ewc",
            {"num_batches": 0},
            "bad option for method ewc: num_batches and batch_size must be positive",
        ),
        (
            "packnet",
            {"prune_fraction": 1.5},
            "bad option for method packnet: prune_fraction must be in [0, 1), got 1.5",
        ),
        (
            "agem",
            {"episodic_batch_size": -2},
            "bad option for method agem: episodic_batch_size must be positive, got -2",
        ),
    ],
)
def test_method_option_mistakes_are_one_line_config_errors(name, options, message) -> None:
    with pytest.raises(ConfigError) as error:
        make_method(name, **options)
    assert str(error.value) == message


def test_method_option_values_take_the_declared_type() -> None:
    method = make_method("ewc", coef="1e3", num_batches=2.0, squash_mean=0)  # e.g. from YAML
    assert method.options.coef == 1000.0 and isinstance(method.options.coef, float)
    assert method.options.num_batches == 2 and isinstance(method.options.num_batches, int)
    assert method.options.squash_mean is False
    assert make_method("packnet", clipnorm=None).options.clipnorm is None
    assert make_method("packnet", prune_fraction=0).options.prune_fraction == 0.0
