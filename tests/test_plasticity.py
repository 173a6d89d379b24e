"""Plasticity tools: tracing, metrics, resets, ReDo and the adaptive replay ratio."""

from __future__ import annotations

import ast
import copy
import inspect
import itertools
import json
import math

import pytest
import torch
from torch import nn

from crlgym.agents.plasticity import (
    AdaptiveReplayRatio,
    PlasticityConfig,
    UnitLayer,
    dormant_mask,
    dormant_ratio,
    effective_rank,
    fraction_active_units,
    gradient_norm,
    linear_depths,
    network_metrics,
    record_activations,
    recycle_dormant,
    redo,
    reinitialize,
    reset_last_layers,
    shrink_perturb,
    trace_unit_layers,
    weight_norm,
)
from crlgym.agents.sac import ContinualSAC
from crlgym.errors import ConfigError
from tests.helpers import checkpoint_round_trip, make_sac_agent

# --- a network whose active and dormant units are known by hand ---------------------------

# Inputs x (4 samples, 2 features). Layer 1: h1 = act(x W1^T) with W1 rows (1, 0), (0, 1),
# (-1, -1): unit 2 is never positive. Layer 2: h2 = act(h1 W2^T) with W2 rows (1, 1, 0) and
# (0.01, 0, 0): unit 1 is small (dormant at tau 0.025, not at 0.01).
X = torch.tensor([[1.0, 2.0], [3.0, -1.0], [-1.0, 1.0], [2.0, 2.0]])
W1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
W2 = torch.tensor([[1.0, 1.0, 0.0], [0.01, 0.0, 0.0]])


def hand_net(activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    net = nn.Sequential(
        nn.Linear(2, 3), activation(), nn.Linear(3, 2), activation(), nn.Linear(2, 1)
    )
    with torch.no_grad():
        net[0].weight.copy_(W1)
        net[0].bias.zero_()
        net[2].weight.copy_(W2)
        net[2].bias.zero_()
    return net


def test_fau_and_dormant_ratio_of_a_hand_built_relu_network() -> None:
    net = hand_net()
    layers = trace_unit_layers(net, lambda: net(X))
    activations = record_activations(layers, lambda: net(X))
    # h1 = [[1,2,0],[3,0,0],[0,1,0],[2,2,0]]: 6 of 12 active.
    # h2 = [[3,.01],[3,.03],[1,0],[4,.02]]: 7 of 8 active.
    assert torch.allclose(
        activations["1"], torch.tensor([[1, 2, 0], [3, 0, 0], [0, 1, 0], [2, 2, 0.0]])
    )
    assert fraction_active_units(activations) == pytest.approx(13 / 20)
    # Layer 1 unit means (1.5, 1.25, 0): unit 2 scores 0. Layer 2 unit means (2.75, 0.015):
    # unit 1 scores 0.015 / 1.3825 = 0.0108.
    assert dormant_mask(activations["1"], 0.025).tolist() == [False, False, True]
    assert dormant_mask(activations["3"], 0.025).tolist() == [False, True]
    assert dormant_mask(activations["3"], 0.01).tolist() == [False, False]
    assert dormant_ratio(activations, 0.025) == pytest.approx(2 / 5)
    assert dormant_ratio(activations, 0.01) == pytest.approx(1 / 5)
    assert dormant_ratio(activations, 0.0) == pytest.approx(1 / 5)  # score 0 <= 0


def test_fau_and_dormant_ratio_with_leaky_relu() -> None:
    net = hand_net(lambda: nn.LeakyReLU(0.1))
    activations = record_activations(trace_unit_layers(net, lambda: net(X)), lambda: net(X))
    # Same signs as with ReLU (h2 unit 1 on sample 3 is 0.01 * -0.1 < 0): 13 of 20 active.
    assert fraction_active_units(activations) == pytest.approx(13 / 20)
    # Layer 1 unit means (1.525, 1.275, 0.225): nothing dormant. Layer 2 unit means
    # (2.7, 0.01525): unit 1 scores 0.01525 / 1.357625 = 0.0112.
    assert dormant_mask(activations["1"], 0.025).tolist() == [False, False, False]
    assert dormant_mask(activations["3"], 0.025).tolist() == [False, True]
    assert dormant_ratio(activations, 0.025) == pytest.approx(1 / 5)


def test_dormant_mask_of_an_all_zero_layer_is_all_dormant() -> None:
    assert dormant_mask(torch.zeros(5, 4), 0.025).tolist() == [True] * 4
    assert dormant_mask(torch.zeros(5, 4), 0.0).tolist() == [True] * 4
    # Leading dimensions are samples.
    assert dormant_mask(torch.ones(2, 3, 4), 0.5).shape == (4,)


def test_tracing_the_hand_built_network() -> None:
    net = hand_net()
    layers = trace_unit_layers(net, lambda: net(X))
    assert [layer.name for layer in layers] == ["1", "3"]
    assert layers[0].incoming is net[0] and layers[0].outgoing == [net[2]]
    assert layers[1].incoming is net[2] and layers[1].outgoing == [net[4]]
    assert all(layer.norm is None for layer in layers)
    depths = linear_depths(net, lambda: net(X))
    assert depths == [[net[0]], [net[2]], [net[4]]]


def test_tracing_layer_norm_in_place_activation_and_output_squashing() -> None:
    net = nn.Sequential(
        nn.Linear(2, 4),
        nn.LayerNorm(4),
        nn.Tanh(),
        nn.Linear(4, 3),
        nn.ReLU(inplace=True),
        nn.Linear(3, 2),
        nn.Tanh(),  # output squashing: no hidden units
    )
    layers = trace_unit_layers(net, lambda: net(X))
    assert [layer.name for layer in layers] == ["2", "4"]
    assert layers[0].incoming is net[0] and layers[0].norm is net[1]
    assert layers[0].outgoing == [net[3]]
    assert layers[1].incoming is net[3] and layers[1].outgoing == [net[5]]
    activations = record_activations(layers, lambda: net(X))
    with torch.no_grad():
        expected = torch.relu(net[3](torch.tanh(net[1](net[0](X)))))
    assert torch.allclose(activations["4"], expected)


class ReusedReLU(nn.Module):
    """One ReLU object called after both hidden layers."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second, self.head = nn.Linear(2, 3), nn.Linear(3, 3), nn.Linear(3, 1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.second(self.relu(self.first(x)))))


def test_an_activation_called_twice_gives_two_named_layers() -> None:
    net = ReusedReLU()
    layers = trace_unit_layers(net, lambda: net(X))
    assert [(layer.name, layer.call_index) for layer in layers] == [("relu", 0), ("relu#1", 1)]
    assert layers[0].incoming is net.first and layers[0].outgoing == [net.second]
    assert layers[1].incoming is net.second and layers[1].outgoing == [net.head]
    activations = record_activations(layers, lambda: net(X))
    with torch.no_grad():
        first = torch.relu(net.first(X))
        second = torch.relu(net.second(first))
    assert torch.equal(activations["relu"], first) and torch.equal(activations["relu#1"], second)


def test_a_linear_called_twice_is_refused() -> None:
    net = hand_net()
    with pytest.raises(ValueError, match="called Linear '0' 2 times"):
        trace_unit_layers(net, lambda: (net(X), net(X)))


# --- SAC's networks -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sac() -> tuple[ContinualSAC, torch.Tensor, torch.Tensor]:
    agent, sequence = make_sac_agent(
        "toy-reach-0,toy-mirror-0", hidden_sizes=(16, 16, 16, 16), random_steps=10, update_after=10
    )
    generator = torch.Generator().manual_seed(0)
    observations = torch.randn(64, sequence.observation_space.shape[0], generator=generator)
    actions = torch.rand(64, sequence.action_space.shape[0], generator=generator) * 2 - 1
    return agent, observations, actions


def test_tracing_the_sac_actor(sac) -> None:
    agent, observations, _ = sac
    actor = agent.actor
    forward = lambda: actor.get_action_dist_params(observations)  # noqa: E731
    layers = trace_unit_layers(actor, forward)
    trunk = actor.latent_pi
    assert [layer.name for layer in layers] == [f"latent_pi.{i}" for i in (2, 4, 6, 8)]
    assert layers[0].incoming is trunk[0] and layers[0].norm is trunk[1]
    assert isinstance(layers[0].activation, nn.Tanh)
    assert [layer.incoming for layer in layers[1:]] == [trunk[3], trunk[5], trunk[7]]
    assert [layer.outgoing for layer in layers[:3]] == [[trunk[3]], [trunk[5]], [trunk[7]]]
    assert layers[3].outgoing == [actor.mu, actor.log_std]
    depths = linear_depths(actor, forward)
    assert depths == [[trunk[0]], [trunk[3]], [trunk[5]], [trunk[7]], [actor.mu, actor.log_std]]


def test_tracing_the_sac_critic(sac) -> None:
    agent, observations, actions = sac
    critic = agent.critic
    forward = lambda: critic(observations, actions)  # noqa: E731
    layers = trace_unit_layers(critic, forward)
    assert len(layers) == 8
    for q, q_layers in zip(critic.q_networks, (layers[:4], layers[4:]), strict=True):
        trunk, head = q[0], q[1]
        assert [layer.incoming for layer in q_layers] == [trunk[0], trunk[3], trunk[5], trunk[7]]
        assert q_layers[0].norm is trunk[1]
        assert q_layers[-1].outgoing == [head]
    depths = linear_depths(critic, forward)
    qf0, qf1 = critic.q_networks
    assert depths == [[qf0[0][i], qf1[0][i]] for i in (0, 3, 5, 7)] + [[qf0[1], qf1[1]]]


def test_network_metrics_of_the_sac_critic(sac) -> None:
    agent, observations, actions = sac
    critic = agent.critic
    forward = lambda: critic(observations, actions)  # noqa: E731
    before = copy.deepcopy(critic.state_dict())
    metrics = network_metrics(critic, forward, lambda: sum(q.mean() for q in forward()), 0.025)
    activations = record_activations(trace_unit_layers(critic, forward), forward)
    assert metrics["fau"] == pytest.approx(fraction_active_units(activations))
    assert metrics["dormant_ratio"] == pytest.approx(dormant_ratio(activations, 0.025))
    penultimate = [effective_rank(activations[f"qf{i}.0.8"]) for i in (0, 1)]
    assert metrics["effective_rank"] == pytest.approx(sum(penultimate) / 2)
    assert metrics["weight_norm"] == pytest.approx(weight_norm(critic))
    assert metrics["grad_norm"] > 0
    assert all(p.grad is None for p in critic.parameters())
    for key, value in critic.state_dict().items():
        assert torch.equal(value, before[key])


def test_network_metrics_of_the_hand_built_network() -> None:
    net = hand_net()
    metrics = network_metrics(net, lambda: net(X), None, 0.025)
    assert set(metrics) == {"fau", "dormant_ratio", "effective_rank", "weight_norm"}
    assert metrics["fau"] == pytest.approx(13 / 20)
    assert metrics["dormant_ratio"] == pytest.approx(2 / 5)
    with torch.no_grad():
        penultimate = torch.relu(net[2](torch.relu(net[0](X))))
    assert metrics["effective_rank"] == pytest.approx(effective_rank(penultimate))
    manual = math.sqrt(sum(float((p.detach() ** 2).sum()) for p in net.parameters()))
    assert metrics["weight_norm"] == pytest.approx(manual)


def test_reset_last_layers_of_the_sac_actor(sac) -> None:
    agent, observations, _ = sac
    for n, changed in ((1, {"mu", "log_std"}), (2, {"mu", "log_std", "latent_pi.7"})):
        actor = copy.deepcopy(agent.actor)
        before = copy.deepcopy(actor.state_dict())
        reset = reset_last_layers(actor, lambda a=actor: a.get_action_dist_params(observations), n)
        names = {module: name for name, module in actor.named_modules()}
        assert {names[linear] for linear in reset} == changed
        for key, value in actor.state_dict().items():
            assert torch.equal(value, before[key]) == (key.rsplit(".", 1)[0] not in changed), key
    with pytest.raises(ConfigError, match="between 1 and 5"):
        reset_last_layers(actor, lambda: actor.get_action_dist_params(observations), 6)


def test_reset_last_layers_resets_the_layer_norm_after_a_reset_linear() -> None:
    net = nn.Sequential(nn.Linear(2, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 1))
    with torch.no_grad():
        net[1].weight.fill_(3.0)
        net[1].bias.fill_(-1.0)
    reset_last_layers(net, lambda: net(X), 1)
    assert torch.equal(net[1].weight, torch.full((4,), 3.0))
    reset = reset_last_layers(net, lambda: net(X), 2)
    assert reset == [net[0], net[3]]
    assert torch.equal(net[1].weight, torch.ones(4)) and torch.equal(net[1].bias, torch.zeros(4))


# --- ReDo ---------------------------------------------------------------------------------


def adam_trained_net() -> tuple[nn.Sequential, torch.optim.Adam, torch.Tensor]:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    with torch.no_grad():  # positive biases: every unit starts active on most inputs
        net[0].bias.fill_(0.5)
        net[2].bias.fill_(0.5)
    # amsgrad: the max_exp_avg_sq moment must be handled too.
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, amsgrad=True)
    inputs = torch.randn(64, 3)
    targets = torch.randn(64, 2)
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.mse_loss(net(inputs), targets).backward()
        optimizer.step()
    return net, optimizer, inputs


def test_redo_recycles_exactly_the_dormant_units() -> None:
    net, optimizer, inputs = adam_trained_net()
    layers = trace_unit_layers(net, lambda: net(inputs))
    healthy = record_activations(layers, lambda: net(inputs))
    assert not any(dormant_mask(a, 0.025).any() for a in healthy.values())
    # Plant dormant units after training, so their Adam moments are not zero.
    with torch.no_grad():
        for module, units in ((net[0], [1, 4]), (net[2], [2])):
            module.weight[units] = 0.0
            module.bias[units] = 0.0
    outputs = net(inputs).detach()
    params = {name: p.detach().clone() for name, p in net.named_parameters()}
    moments = {
        name: {key: value.clone() for key, value in optimizer.state[p].items()}
        for name, p in net.named_parameters()
    }

    activations = record_activations(layers, lambda: net(inputs))
    counts = redo(layers, activations, 0.025, [optimizer], torch.Generator().manual_seed(3))
    assert counts == {"1": 2, "3": 1}

    # Fresh values = a new nn.Linear of the same shape (default init, same random stream).
    torch.manual_seed(3)
    fresh0, fresh2 = nn.Linear(3, 6), nn.Linear(6, 5)
    fresh = {"0.weight": fresh0.weight, "0.bias": fresh0.bias}
    fresh.update({"2.weight": fresh2.weight, "2.bias": fresh2.bias})
    # (parameter, index) -> expected: "fresh", "zero", or unchanged.
    recycled_rows = {"0.weight": [1, 4], "0.bias": [1, 4], "2.weight": [2], "2.bias": [2]}
    for name, p in net.named_parameters():
        expected = params[name].clone()
        touched = torch.zeros_like(expected, dtype=torch.bool)
        if name == "2.weight":  # outgoing columns of layer 1's recycled units
            expected[:, [1, 4]] = 0.0
            touched[:, [1, 4]] = True
        if name == "4.weight":  # outgoing column of layer 2's recycled unit
            expected[:, 2] = 0.0
            touched[:, 2] = True
        if name in recycled_rows:  # later layers' fresh rows win over zeroed columns
            rows = recycled_rows[name]
            expected[rows] = fresh[name].detach()[rows]
            touched[rows] = True
        assert torch.equal(p.detach(), expected), name
        state = optimizer.state[p]
        assert torch.equal(state["step"], moments[name]["step"])
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            assert (moments[name][key][touched] != 0).all(), (name, key)  # a real test
            assert (state[key][touched] == 0).all(), (name, key)
            assert torch.equal(state[key][~touched], moments[name][key][~touched]), (name, key)
    # The output layer's bias (no activation) is never touched; recycling keeps the output.
    assert torch.allclose(net(inputs), outputs, atol=1e-6)


def test_redo_on_a_layer_norm_and_on_both_sac_actor_heads(sac) -> None:
    net = nn.Sequential(nn.Linear(2, 4), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 1))
    with torch.no_grad():
        net[1].weight[1] = 0.0  # tanh(0 * normalized + 0) = 0: unit 1 dormant
        net[1].bias[1] = 0.0
        net[1].weight[2] = 2.0
    counts = recycle_dormant(net, lambda: net(X), 0.025, [])
    assert counts == {"2": 1}
    assert net[1].weight.tolist() == [1.0, 1.0, 2.0, 1.0]
    assert net[3].weight[0, 1] == 0.0 and (net[3].weight[0, [0, 2, 3]] != 0).all()

    agent, observations, _ = sac
    actor = copy.deepcopy(agent.actor)
    with torch.no_grad():
        actor.latent_pi[7].weight[[0, 5]] = 0.0
        actor.latent_pi[7].bias[[0, 5]] = 0.0
    counts = recycle_dormant(
        actor, lambda: actor.get_action_dist_params(observations), 0.025, [actor.optimizer]
    )
    assert counts["latent_pi.8"] >= 2
    for head in (actor.mu, actor.log_std):
        assert (head.weight[:, [0, 5]] == 0).all()


# --- resets -------------------------------------------------------------------------------


def layer_norm_net() -> nn.Sequential:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 2))
    with torch.no_grad():
        net[1].weight.uniform_(0.5, 2.0)
        net[1].bias.uniform_(-1.0, 1.0)
    return net


def test_shrink_perturb_with_a_generator() -> None:
    net = layer_norm_net()
    before = [p.detach().clone() for p in net.parameters()]
    shrink_perturb(net, 0.4, 0.1, generator=torch.Generator().manual_seed(5))
    # The fresh module by hand: Linears in module order from the same stream, LayerNorm 1/0.
    generator = torch.Generator().manual_seed(5)
    fresh = []
    for fan_in, fan_out in ((4, 8), (8, 2)):
        weight = torch.empty(fan_out, fan_in)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(fan_in)
        fresh.append((weight, torch.empty(fan_out).uniform_(-bound, bound, generator=generator)))
    fresh_params = [*fresh[0], torch.ones(8), torch.zeros(8), *fresh[1]]
    for param, old, new in zip(net.parameters(), before, fresh_params, strict=True):
        assert torch.allclose(param, 0.4 * old + 0.1 * new)


def test_shrink_perturb_without_a_generator_matches_a_deep_copy_reset() -> None:
    net = layer_norm_net()
    torch.manual_seed(7)
    fresh = copy.deepcopy(net)
    for module in fresh.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    expected = [
        0.4 * p + 0.1 * f for p, f in zip(net.parameters(), fresh.parameters(), strict=True)
    ]
    torch.manual_seed(7)
    shrink_perturb(net, 0.4, 0.1)
    for param, value in zip(net.parameters(), expected, strict=True):
        assert torch.allclose(param, value)


def test_shrink_perturb_and_reinitialize_keep_the_sac_actor_optimizer(sac) -> None:
    agent, _, _ = sac
    actor = copy.deepcopy(agent.actor)
    before = copy.deepcopy(actor.state_dict())
    shrink_perturb(actor, 1.0, 0.0)  # identity
    for key, value in actor.state_dict().items():
        assert torch.equal(value, before[key])
    held = {id(p) for group in actor.optimizer.param_groups for p in group["params"]}
    assert held == {id(p) for p in actor.parameters()}
    reinitialize(actor)
    assert not torch.equal(actor.mu.weight, before["mu.weight"])
    assert torch.equal(actor.latent_pi[1].weight, torch.ones(16))


# --- other metrics ------------------------------------------------------------------------


def test_effective_rank() -> None:
    generator = torch.Generator().manual_seed(0)
    u, v = torch.randn(20, 1, generator=generator), torch.randn(1, 6, generator=generator)
    assert effective_rank(u @ v) == pytest.approx(1.0, abs=1e-6)
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=generator, dtype=torch.float64))
    features = torch.cat([3.0 * q[:, :5], torch.zeros(20, 3, dtype=torch.float64)], dim=1)
    assert effective_rank(features) == pytest.approx(5.0)
    assert effective_rank(torch.eye(7)) == pytest.approx(7.0)
    assert effective_rank(torch.zeros(4, 3)) == 0.0


def test_gradient_norm_matches_backward_and_leaves_grads_alone() -> None:
    net = hand_net()
    unused = nn.Linear(2, 2)
    module = nn.ModuleDict({"net": net, "unused": unused})
    loss = (net(X) ** 2).mean()
    norm = gradient_norm(module, loss)
    assert all(p.grad is None for p in module.parameters())
    loss.backward()  # the graph was retained
    manual = math.sqrt(sum(float((p.grad**2).sum()) for p in net.parameters()))
    assert norm == pytest.approx(manual)
    assert norm > 0 and unused.weight.grad is None


# --- adaptive replay ratio ----------------------------------------------------------------


def drive(rule: AdaptiveReplayRatio, faus: dict[int, float], steps: range) -> list[int]:
    """Run env steps; observe the FAU of ``faus`` whenever a check is due; switch steps."""
    switches = []
    for step in steps:
        if rule.due(step) and rule.observe(step, faus[step]):
            switches.append(step)
    return switches


def test_adaptive_replay_ratio_switches_once_when_the_fau_stabilizes() -> None:
    rule = AdaptiveReplayRatio(low=0.5, high=2.0, check_every=10, tolerance=0.01)
    faus = {10: 0.9, 20: 0.7, 30: 0.6, 40: 0.55, 50: 0.545, 60: 0.3, 70: 0.31}
    assert rule.ratio == 0.5 and not rule.due(9) and rule.due(10)
    assert drive(rule, faus, range(1, 80)) == [50]
    assert rule.switch_step == 50 and rule.ratio == 2.0
    assert rule.history == [(10, 0.9), (20, 0.7), (30, 0.6), (40, 0.55), (50, 0.545)]
    assert not rule.due(60)
    assert rule.observe(60, 0.3) is False and rule.observe(70, 0.3) is False
    assert rule.ratio == 2.0 and rule.switch_step == 50

    rule.restart(100)
    assert rule.ratio == 0.5 and rule.switch_step is None
    assert not rule.due(105) and rule.due(110)
    assert rule.observe(110, 0.3) is False  # first check after a restart: nothing to compare
    assert rule.observe(120, 0.3) is True and rule.ratio == 2.0


def test_adaptive_replay_ratio_tolerance_is_inclusive_and_missed_checks_stay_due() -> None:
    rule = AdaptiveReplayRatio(check_every=100, tolerance=2**-10)
    assert not rule.due(99) and rule.due(130)
    assert rule.observe(130, 0.5) is False
    assert not rule.due(199) and rule.due(200)
    assert rule.observe(200, 0.5 + 2**-10) is True


def test_adaptive_replay_ratio_state_round_trip_resumes_identically() -> None:
    faus = {step: 0.8 * 0.5 ** (step // 10) for step in range(10, 200, 10)}
    steady = {step: fau if step < 60 else 0.1 for step, fau in faus.items()}
    original = AdaptiveReplayRatio(check_every=10, tolerance=0.01)
    assert drive(original, steady, range(1, 45)) == []
    state = original.state_dict()
    json.dumps(state)  # plain Python values only
    resumed = AdaptiveReplayRatio(check_every=10, tolerance=0.01)
    resumed.load_state_dict(checkpoint_round_trip(state))
    assert drive(original, steady, range(45, 150)) == drive(resumed, steady, range(45, 150))
    assert resumed.switch_step == original.switch_step == 70
    assert resumed.history == original.history and resumed.ratio == original.ratio == 2.0


# --- configuration ------------------------------------------------------------------------


def test_plasticity_config_values() -> None:
    assert PlasticityConfig().ratio_value() is None
    assert PlasticityConfig(replay_ratio="adaptive").ratio_value() is None
    assert PlasticityConfig(replay_ratio="0.5").ratio_value() == 0.5
    assert PlasticityConfig(replay_ratio=2).ratio_value() == 2.0  # type: ignore[arg-type]
    PlasticityConfig(reset="redo", reset_every=1000)
    PlasticityConfig(reset="full", reset_at_task_start=True, metrics_every=None)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replay_ratio": "often"}, "fixed, adaptive or a positive number"),
        ({"replay_ratio": "0"}, "fixed, adaptive or a positive number"),
        ({"replay_ratio": "-1"}, "fixed, adaptive or a positive number"),
        ({"replay_ratio": "nan"}, "fixed, adaptive or a positive number"),
        ({"replay_ratio": "inf"}, "fixed, adaptive or a positive number"),
        ({"reset": "sometimes"}, "none, full, last-layers, shrink-perturb, redo"),
        ({"reset": "full"}, "set reset_every and/or reset_at_task_start"),
        ({"reset_every": 1000}, "need a reset kind"),
        ({"reset_at_task_start": True}, "need a reset kind"),
        ({"reset": "full", "reset_every": 0}, "reset_every must be positive"),
        ({"reset_networks": "policy"}, "actor, critic, both"),
        ({"reset_last_layers": 0}, "reset_last_layers must be positive"),
        ({"rr_low": 0.0}, "rr_low must be positive"),
        ({"rr_high": -2.0}, "rr_high must be positive"),
        ({"rr_check_every": 0}, "rr_check_every must be positive"),
        ({"rr_tolerance": -0.1}, "rr_tolerance must be >= 0"),
        ({"shrink": -0.4}, "shrink must be >= 0"),
        ({"perturb": -0.1}, "perturb must be >= 0"),
        ({"redo_tau": -0.01}, "redo_tau must be >= 0"),
        ({"dormant_tau": -0.01}, "dormant_tau must be >= 0"),
        ({"metrics_every": 0}, "metrics_every must be positive"),
        ({"probe_batch_size": 0}, "probe_batch_size must be positive"),
    ],
)
def test_plasticity_config_refuses_bad_values(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PlasticityConfig(**values)


def test_every_plasticity_option_has_help_text() -> None:
    body = ast.parse(inspect.getsource(PlasticityConfig)).body[0].body  # type: ignore[attr-defined]
    documented = {
        node.target.id
        for node, following in itertools.pairwise(body)
        if isinstance(node, ast.AnnAssign)
        and isinstance(following, ast.Expr)
        and isinstance(following.value, ast.Constant)
    }
    assert documented == set(PlasticityConfig.__dataclass_fields__)


def test_unit_layer_width() -> None:
    layer = UnitLayer("relu", nn.ReLU(), nn.Linear(3, 7), None, [])
    assert layer.width == 7 and layer.call_index == 0
