"""SAC for continual learning: stable-baselines3's SAC with Continual World's options.

Reads top to bottom:

1. `SACConfig`: every hyperparameter, defaults = the Continual World paper (brief section 1).
2. The networks: the CW trunk (Linear -> LayerNorm -> tanh, then Linear -> leaky ReLU) and
   multi-head outputs, one head per task. The task id rides at the end of the observation
   (a one-hot appended by the sequence) and is used only to pick the head, never as input.
3. `ContinualSACPolicy`: SB3's SACPolicy building those networks (any plain SB3
   ``policy_kwargs`` still work: ``net_arch``, ``activation_fn``, ...).
4. `ContinualSAC`: SB3's SAC with one entropy coefficient per task, uniform-random steps at
   the start of every task, updates that start ``update_after`` steps into each task, the
   named resets on a task change, and the hooks of `crlgym.agents.methods.ContinualMethod`
   (one extra batch per gradient step, auxiliary actor/critic losses, gradient
   adjustment, per-task state). SAC's losses themselves are `crlgym.agents.sac_losses`'s,
   shared with the methods and the plasticity probes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, ReplayBufferSamples
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN, Actor, SACPolicy
from torch import nn

from crlgym.agents import sac_losses
from crlgym.agents.methods import ContinualMethod, FineTuning
from crlgym.agents.plasticity import PlasticityConfig, reinitialize
from crlgym.agents.plasticity_control import PlasticityController, PlasticNetwork
from crlgym.errors import ConfigError


@dataclass
class SACConfig:
    """SAC hyperparameters; defaults are Continual World's (Wolczyk et al. 2021)."""

    hidden_sizes: tuple[int, ...] = (256, 256, 256, 256)
    """Hidden layer widths of actor and critic."""
    layer_norm_first: bool = True
    """First layer Linear -> LayerNorm -> tanh (CW); False: every layer uses leaky ReLU."""
    multi_head: bool = True
    """One output head per task, picked by the task id (which is never a network input)."""
    per_task_alpha: bool = True
    """One entropy coefficient per task."""
    learning_rate: float = 1e-3
    """Adam learning rate of actor, critic and entropy coefficient."""
    batch_size: int = 128
    """Transitions per gradient step."""
    gamma: float = 0.99
    """Discount factor."""
    polyak: float = 0.995
    """Target network averaging: target <- polyak * target + (1 - polyak) * critic."""
    buffer_size: int = 1_000_000
    """Replay capacity (FIFO)."""
    random_steps: int = 10_000
    """Uniform-random actions at the start of every task."""
    update_after: int = 1_000
    """Gradient updates start this many steps into every task."""
    update_every: int = 50
    """Env steps between update phases."""
    gradient_steps: int = 50
    """Gradient steps per update phase."""
    initial_alpha: float = 1.0
    """Initial entropy coefficient (learned, target entropy = -action_dim)."""
    reset_buffer: bool = True
    """Empty the replay buffer at each task change."""
    reset_optimizer: bool = True
    """Fresh Adam states at each task change."""
    reset_critic: bool = False
    """Re-initialize the critic (and its target) at each task change."""
    reset_actor: bool = False
    """Re-initialize the actor at each task change."""

    def __post_init__(self) -> None:
        positive = {
            "batch_size": self.batch_size,
            "buffer_size": self.buffer_size,
            "update_every": self.update_every,
            "gradient_steps": self.gradient_steps,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 <= self.polyak < 1.0 or not 0.0 < self.gamma <= 1.0:
            raise ConfigError("polyak must be in [0, 1) and gamma in (0, 1]")
        if self.random_steps < 0 or self.update_after < 0:
            raise ConfigError("random_steps and update_after must be >= 0")
        if not self.hidden_sizes:
            raise ConfigError("hidden_sizes needs at least one layer")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- networks ---------------------------------------------------------------------------


def cw_mlp(input_dim: int, hidden_sizes: Sequence[int], layer_norm_first: bool) -> nn.Sequential:
    """Continual World's trunk: Linear -> LayerNorm -> tanh, then Linear -> leaky ReLU."""
    layers: list[nn.Module] = [nn.Linear(input_dim, hidden_sizes[0])]
    if layer_norm_first:
        layers += [nn.LayerNorm(hidden_sizes[0]), nn.Tanh()]
    else:
        layers.append(nn.LeakyReLU())
    for width_in, width_out in itertools.pairwise(hidden_sizes):
        layers += [nn.Linear(width_in, width_out), nn.LeakyReLU()]
    return nn.Sequential(*layers)


def split_task_id(features: torch.Tensor, task_id_dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(network input without the one-hot task id, task index per sample)."""
    if task_id_dims == 0:
        return features, torch.zeros(features.shape[0], dtype=torch.long, device=features.device)
    return features[:, :-task_id_dims], features[:, -task_id_dims:].argmax(dim=1)


def select_head(outputs: torch.Tensor, task_index: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Pick each sample's head (``task_index`` per sample) from ``outputs`` of shape
    (batch, num_heads * width)."""
    if num_heads == 1:
        return outputs
    per_head = outputs.view(outputs.shape[0], num_heads, -1)
    return per_head[torch.arange(outputs.shape[0], device=outputs.device), task_index]


class ContinualActor(Actor):
    """SB3's squashed-Gaussian actor on the CW trunk with one (mean, log std) head per task."""

    def __init__(
        self,
        *args: Any,
        num_heads: int = 1,
        task_id_dims: int = 0,
        hidden_sizes: Sequence[int] = (256, 256),
        layer_norm_first: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.num_heads, self.task_id_dims = num_heads, task_id_dims
        self.hidden_sizes, self.layer_norm_first = tuple(hidden_sizes), layer_norm_first
        action_dim = get_action_dim(self.action_space)
        self.latent_pi = cw_mlp(self.features_dim - task_id_dims, hidden_sizes, layer_norm_first)
        # SB3's names (checkpoints key on them); SB3 types log_std as its gSDE Parameter.
        self.mu = nn.Linear(hidden_sizes[-1], action_dim * num_heads)
        self.add_module("log_std", nn.Linear(hidden_sizes[-1], action_dim * num_heads))

    def output_layers(self) -> dict[str, nn.Linear]:
        """The multi-head output layers by their (SB3) names: ``mu`` and ``log_std``."""
        return {"mu": cast(nn.Linear, self.mu), "log_std": cast(nn.Linear, self.log_std)}

    def get_action_dist_params(
        self, obs: PyTorchObs
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        features = self.extract_features(obs, self.features_extractor)
        inputs, task_index = split_task_id(features, self.task_id_dims)
        latent = self.latent_pi(inputs)
        mean = select_head(self.mu(latent), task_index, self.num_heads)
        log_std = select_head(cast(nn.Linear, self.log_std)(latent), task_index, self.num_heads)
        return mean, torch.clamp(log_std, LOG_STD_MIN, LOG_STD_MAX), {}

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            num_heads=self.num_heads,
            task_id_dims=self.task_id_dims,
            hidden_sizes=self.hidden_sizes,
            layer_norm_first=self.layer_norm_first,
        )
        return data


class ContinualCritic(ContinuousCritic):
    """Twin Q-networks on the CW trunk with one Q head per task."""

    def __init__(
        self,
        *args: Any,
        num_heads: int = 1,
        task_id_dims: int = 0,
        hidden_sizes: Sequence[int] = (256, 256),
        layer_norm_first: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.num_heads, self.task_id_dims = num_heads, task_id_dims
        input_dim = self.features_dim - task_id_dims + get_action_dim(self.action_space)
        self.q_networks = []
        for index in range(self.n_critics):
            q_net = nn.Sequential(
                cw_mlp(input_dim, hidden_sizes, layer_norm_first),
                nn.Linear(hidden_sizes[-1], num_heads),
            )
            self.add_module(f"qf{index}", q_net)  # replaces SB3's network of the same name
            self.q_networks.append(q_net)

    @property
    def features_dim(self) -> int:
        return int(self.features_extractor.features_dim)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.set_grad_enabled(not self.share_features_extractor):
            features = self.extract_features(obs, self.features_extractor)
        inputs, task_index = split_task_id(features, self.task_id_dims)
        q_input = torch.cat([inputs, actions], dim=1)
        return tuple(
            select_head(q_net(q_input), task_index, self.num_heads) for q_net in self.q_networks
        )

    def q1_forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.forward(obs, actions)[0]


class ContinualSACPolicy(SACPolicy):
    """SACPolicy whose actor and critic are `ContinualActor` / `ContinualCritic`.

    Extra keyword arguments (besides SB3's): ``num_heads``, ``task_id_dims`` (one-hot task
    id dimensions at the end of the observation), ``hidden_sizes``, ``layer_norm_first``.
    Without ``hidden_sizes`` the trunk follows SB3's ``net_arch``.
    """

    def __init__(
        self,
        *args: Any,
        num_heads: int = 1,
        task_id_dims: int = 0,
        hidden_sizes: Sequence[int] | None = None,
        layer_norm_first: bool = True,
        **kwargs: Any,
    ) -> None:
        net_arch = kwargs.get("net_arch") or [256, 256]
        sizes = tuple(hidden_sizes or (net_arch if isinstance(net_arch, list) else net_arch["pi"]))
        self.continual_kwargs: dict[str, Any] = {
            "num_heads": num_heads,
            "task_id_dims": task_id_dims,
            "hidden_sizes": sizes,
            "layer_norm_first": layer_norm_first,
        }
        super().__init__(*args, **kwargs)

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> ContinualActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return ContinualActor(**actor_kwargs, **self.continual_kwargs).to(self.device)

    def make_critic(
        self, features_extractor: BaseFeaturesExtractor | None = None
    ) -> ContinualCritic:
        critic_kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return ContinualCritic(**critic_kwargs, **self.continual_kwargs).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self.continual_kwargs)
        return data


# --- the agent --------------------------------------------------------------------------


class ContinualSAC(SAC):
    """SB3 SAC with task boundaries, per-task entropy coefficients and method hooks.

    Args:
        env: the first task's env (a `TaskSequence` env; spaces never change after).
        num_tasks: tasks in the sequence (heads and entropy coefficients).
        config: hyperparameters (`SACConfig`).
        method: the continual-learning method (default: fine-tuning).
        plasticity: replay ratio, resets and plasticity metrics (default: SAC's own fixed
            ratio, no resets, metrics every 10k steps).
        task_id_dims: one-hot task id dimensions at the end of observations (multi-head
            needs them; 0 otherwise).
        seed, device, tensorboard_log, verbose: as in SB3.
        policy_kwargs: extra SB3 policy keyword arguments.
    """

    policy: ContinualSACPolicy
    actor: ContinualActor
    critic: ContinualCritic
    critic_target: ContinualCritic
    # Always set once constructed (SB3 declares them optional):
    replay_buffer: ReplayBuffer
    log_ent_coef: torch.Tensor
    """log alpha, one per task (`SACConfig.per_task_alpha`) or one for all."""
    ent_coef_optimizer: torch.optim.Adam
    target_entropy: float

    def __init__(
        self,
        env: Any,
        num_tasks: int,
        config: SACConfig | None = None,
        method: ContinualMethod[Any] | None = None,
        plasticity: PlasticityConfig | None = None,
        *,
        task_id_dims: int = 0,
        seed: int | None = None,
        device: str = "cpu",
        tensorboard_log: str | None = None,
        verbose: int = 0,
        policy_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.config = config or SACConfig()
        if self.config.multi_head and task_id_dims != num_tasks:
            raise ConfigError(
                "multi_head needs the one-hot task id in observations "
                f"(task_id_dims={task_id_dims}, num_tasks={num_tasks}); "
                "build the sequence with EnvConfig(one_hot_task_id=True)"
            )
        self.num_tasks = num_tasks
        self.method = method or FineTuning()
        self.current_task = 0
        self.task_start_step = 0
        self.task_budget: int | None = None
        kwargs = {
            "num_heads": num_tasks if self.config.multi_head else 1,
            "task_id_dims": task_id_dims,
            "hidden_sizes": self.config.hidden_sizes,
            "layer_norm_first": self.config.layer_norm_first,
            **(policy_kwargs or {}),
        }
        super().__init__(
            ContinualSACPolicy,
            env,
            learning_rate=self.config.learning_rate,
            buffer_size=self.config.buffer_size,
            learning_starts=self.config.update_after,
            batch_size=self.config.batch_size,
            tau=1.0 - self.config.polyak,
            gamma=self.config.gamma,
            train_freq=(self.config.update_every, "step"),
            gradient_steps=self.config.gradient_steps,
            ent_coef=f"auto_{self.config.initial_alpha}",
            policy_kwargs=kwargs,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            seed=seed,
            device=device,
        )
        self.plasticity = self._make_plasticity_controller(plasticity or PlasticityConfig(), seed)

    def _setup_model(self) -> None:
        super()._setup_model()
        alphas = self.num_tasks if self.config.per_task_alpha else 1
        initial = torch.full(
            (alphas,), float(np.log(self.config.initial_alpha)), device=self.device
        )
        self.log_ent_coef = initial.requires_grad_(True)
        self.ent_coef_optimizer = torch.optim.Adam([initial], lr=self.lr_schedule(1))

    # -- task boundaries ------------------------------------------------------------------
    def on_task_start(self, task_index: int, budget: int | None = None) -> None:
        """Enter task ``task_index`` (``budget`` env steps, if known): named resets (not for
        the first task), then the method."""
        # Plasticity first: a ReDo or last-layer reset at the boundary still sees the finished
        # task's replay data, which the buffer reset below may empty.
        self.plasticity.on_task_start(
            task_index, self.num_timesteps, self.num_timesteps + self.config.update_after
        )
        if task_index > 0:
            if self.config.reset_buffer:
                self.reset_replay_buffer()
            if self.config.reset_actor:
                reinitialize(self.actor)
            if self.config.reset_critic:
                reinitialize(self.critic)
                self.critic_target.load_state_dict(self.critic.state_dict())
            if self.config.reset_optimizer or self.config.reset_actor or self.config.reset_critic:
                self.reset_optimizers()
        self.current_task = task_index
        self.task_start_step = self.num_timesteps
        self.task_budget = budget
        self.learning_starts = self.num_timesteps + self.config.update_after
        self.method.on_task_start(self, task_index)

    def on_task_end(self, task_index: int) -> None:
        """Leave task ``task_index``: the method consolidates (Fisher, masks, memories...)."""
        self.method.on_task_end(self, task_index)

    def reset_replay_buffer(self) -> None:
        assert self.replay_buffer is not None
        self.replay_buffer = ReplayBuffer(
            self.buffer_size,
            self.observation_space,
            self.action_space,
            device=self.device,
            n_envs=self.n_envs,
        )

    def reset_optimizers(self) -> None:
        """Fresh Adam states for actor, critic and the entropy coefficients."""
        self.actor.optimizer = self._fresh_optimizer(self.actor)
        self.critic.optimizer = self._fresh_optimizer(self.critic)
        self.ent_coef_optimizer = torch.optim.Adam([self.log_ent_coef], lr=self.lr_schedule(1))

    # -- acting ---------------------------------------------------------------------------
    def _sample_action(
        self, learning_starts: int, action_noise: Any = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        # Uniform-random actions for the first `random_steps` of every task, not only the run.
        random_until = self.task_start_step + self.config.random_steps
        return super()._sample_action(random_until, action_noise, n_envs)

    def task_index_of(self, observations: torch.Tensor) -> torch.Tensor:
        """Task of each sample: from the one-hot id when present, else the current task."""
        task_id_dims = self.policy.continual_kwargs["task_id_dims"]
        if task_id_dims:
            return observations[:, -task_id_dims:].argmax(dim=1)
        return torch.full((observations.shape[0],), self.current_task, device=self.device)

    def entropy_coefficients(self, observations: torch.Tensor) -> torch.Tensor:
        """log alpha of each sample's task, shape (batch, 1)."""
        if not self.config.per_task_alpha:
            return self.log_ent_coef.expand(observations.shape[0]).unsqueeze(1)
        return self.log_ent_coef[self.task_index_of(observations)].unsqueeze(1)

    # -- learning -------------------------------------------------------------------------
    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """One update phase (every ``update_every`` env steps): ``gradient_steps`` gradient
        steps (SB3 passes SAC's own number), or, when the replay ratio is set (a number or
        adaptive), as many as that ratio asks; then whatever plasticity work is due."""
        if self.plasticity.config.replay_ratio != "fixed":
            gradient_steps = self.plasticity.gradient_steps(self.config.update_every)
        if gradient_steps > 0:
            self._update(gradient_steps, batch_size)
        logged = self.plasticity.after_updates(self.num_timesteps)
        for key, value in logged.items():
            self.logger.record(f"plasticity/{key}", value)
        if any("/" in key for key in logged):
            self.logger.dump(self.num_timesteps)

    def _update(self, gradient_steps: int, batch_size: int) -> None:
        """SB3's SAC update with per-task alphas and the method's loss and gradient hooks."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(
            [self.actor.optimizer, self.critic.optimizer, self.ent_coef_optimizer]
        )
        logs: dict[str, list[float]] = {"actor_loss": [], "critic_loss": [], "ent_coef": []}
        logs["ent_coef_loss"] = []
        for gradient_step in range(gradient_steps):
            batch = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            actions_pi, log_prob = self.actor.action_log_prob(batch.observations)
            log_prob = log_prob.reshape(-1, 1)

            log_alpha = self.entropy_coefficients(batch.observations)
            alpha = log_alpha.detach().exp()
            alpha_loss = sac_losses.entropy_coefficient_loss(
                log_alpha, log_prob, self.target_entropy
            )
            self.ent_coef_optimizer.zero_grad()
            alpha_loss.backward()
            self.ent_coef_optimizer.step()

            critic_loss = sac_losses.critic_loss(self, batch, alpha)
            extra = self.method.sample_extra_batch(self)
            critic_extra = self.method.critic_aux_loss(self, batch, extra)
            if critic_extra is not None:
                critic_loss = critic_loss + critic_extra
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.method.adjust_gradients(self, "critic")
            self.critic.optimizer.step()

            actor_loss = sac_losses.actor_loss(
                self, batch.observations, actions_pi, log_prob, alpha
            )
            actor_extra = self.method.actor_aux_loss(self, batch, extra)
            if actor_extra is not None:
                actor_loss = actor_loss + actor_extra
            self.actor.optimizer.zero_grad()
            actor_loss.backward()
            self.method.adjust_gradients(self, "actor")
            self.actor.optimizer.step()

            if gradient_step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
            logs["actor_loss"].append(actor_loss.item())
            logs["critic_loss"].append(critic_loss.item())
            logs["ent_coef"].append(alpha.mean().item())
            logs["ent_coef_loss"].append(alpha_loss.item())

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for key, values in logs.items():
            self.logger.record(f"train/{key}", float(np.mean(values)))
        self.logger.record("train/active_task", self.current_task)

    # -- plasticity -----------------------------------------------------------------------
    def _make_plasticity_controller(
        self, config: PlasticityConfig, seed: int | None
    ) -> PlasticityController:
        def reset_critic() -> None:
            self.critic_target.load_state_dict(self.critic.state_dict())
            self.critic.optimizer = self._fresh_optimizer(self.critic)

        def reset_actor() -> None:
            self.actor.optimizer = self._fresh_optimizer(self.actor)

        def reset_temperature() -> None:
            with torch.no_grad():
                self.log_ent_coef.fill_(float(np.log(self.config.initial_alpha)))
            self.ent_coef_optimizer = torch.optim.Adam([self.log_ent_coef], lr=self.lr_schedule(1))

        networks = [
            PlasticNetwork(
                "actor",
                self.actor,
                forward=lambda batch: self.actor.get_action_dist_params(batch.observations),
                loss=lambda batch: sac_losses.sac_actor_loss(self, batch.observations),
                optimizers=lambda: [self.actor.optimizer],
                after_reset=reset_actor,
            ),
            PlasticNetwork(
                "critic",
                self.critic,
                forward=lambda batch: self.critic(batch.observations, batch.actions),
                loss=lambda batch: sac_losses.sac_critic_loss(self, batch),
                optimizers=lambda: [self.critic.optimizer],
                after_reset=reset_critic,
            ),
        ]
        return PlasticityController(
            config,
            networks,
            self._sample_plasticity_batch,
            reset_agent=reset_temperature,
            clear_buffer=self.reset_replay_buffer,
            base_ratio=self.config.gradient_steps / self.config.update_every,
            seed=0 if seed is None else seed,
            batch_to_state=lambda batch: batch._asdict(),
            batch_from_state=lambda state: ReplayBufferSamples(**state),
        )

    def _fresh_optimizer(self, network: nn.Module) -> torch.optim.Optimizer:
        """A new optimizer of the policy's class for ``network`` (no state)."""
        make: Callable[..., torch.optim.Optimizer] = self.policy.optimizer_class
        return make(network.parameters(), lr=self.lr_schedule(1), **self.policy.optimizer_kwargs)

    def _sample_plasticity_batch(
        self, size: int, generator: np.random.Generator
    ) -> ReplayBufferSamples | None:
        # Own generator: drawing probe batches must not move the training sampler's RNG.
        buffer = self.replay_buffer
        assert buffer is not None
        filled = buffer.buffer_size if buffer.full else buffer.pos
        if filled == 0:
            return None
        indices = generator.integers(0, filled, size=size)
        numpy_state = np.random.get_state()  # SB3 draws env indices from NumPy's global RNG
        try:
            return buffer._get_samples(indices, env=self._vec_normalize_env)
        finally:
            np.random.set_state(numpy_state)

    # -- state for checkpoints ------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        """Everything of the agent a resumed run needs (tensors and plain values)."""
        return {
            "policy": self.policy.state_dict(),
            "actor_optimizer": self.actor.optimizer.state_dict(),
            "critic_optimizer": self.critic.optimizer.state_dict(),
            "log_ent_coef": self.log_ent_coef.detach().clone(),
            "ent_coef_optimizer": self.ent_coef_optimizer.state_dict(),
            "method": self.method.state_dict(),
            "plasticity": self.plasticity.state_dict(),
            "num_timesteps": self.num_timesteps,
            "n_updates": self._n_updates,
            "episode_num": self._episode_num,
            "current_task": self.current_task,
            "task_start_step": self.task_start_step,
            "task_budget": self.task_budget,
            "learning_starts": self.learning_starts,
            "action_space_rng": self.action_space.np_random.bit_generator.state,
            "replay_buffer": _buffer_state(self.replay_buffer),
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore `training_state` (the networks' shapes must match)."""
        self.policy.load_state_dict(state["policy"])
        self.actor.optimizer.load_state_dict(state["actor_optimizer"])
        self.critic.optimizer.load_state_dict(state["critic_optimizer"])
        with torch.no_grad():
            self.log_ent_coef.copy_(state["log_ent_coef"])
        self.ent_coef_optimizer.load_state_dict(state["ent_coef_optimizer"])
        self.method.load_state_dict(state["method"])
        self.plasticity.load_state_dict(state["plasticity"])
        self.num_timesteps = state["num_timesteps"]
        self._n_updates = state["n_updates"]
        self._episode_num = state["episode_num"]
        self.current_task = state["current_task"]
        self.task_start_step = state["task_start_step"]
        self.task_budget = state["task_budget"]
        self.learning_starts = state["learning_starts"]
        self.action_space.np_random.bit_generator.state = state["action_space_rng"]
        _load_buffer_state(self.replay_buffer, state["replay_buffer"])


_BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _buffer_state(buffer: ReplayBuffer) -> dict[str, Any]:
    filled = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {
        name: torch.from_numpy(np.ascontiguousarray(getattr(buffer, name)[:filled]))
        for name in _BUFFER_ARRAYS
        if getattr(buffer, name, None) is not None
    }
    return {"pos": buffer.pos, "full": buffer.full, "arrays": arrays}


def _load_buffer_state(buffer: ReplayBuffer, state: dict[str, Any]) -> None:
    for name, tensor in state["arrays"].items():
        getattr(buffer, name)[: tensor.shape[0]] = tensor.numpy()
    buffer.pos, buffer.full = state["pos"], state["full"]


__all__ = [
    "ContinualActor",
    "ContinualCritic",
    "ContinualSAC",
    "ContinualSACPolicy",
    "SACConfig",
    "cw_mlp",
]
