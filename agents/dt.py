"""Decision Transformer agent: offline training Transformer-XL style and online acting,
for continual runs (the model, its config and action tokens are in agents/dt_model.py).

`DecisionTransformerAgent` trains offline over whole episodes cut into consecutive segments,
memory and attention cache carried across segments (detached), and acts online one step at a
time with exactly the computation training used.

Training unit: one gradient update = one segment of ``context`` steps of ``batch_size``
episodes. A batch of episodes is sampled (the agent's generator), all rows start at step 0
together (shorter episodes are padded at the end, their padding masked out of the loss) and
the batch is consumed segment after segment by successive updates; the next update after
the longest episode ended samples a new batch with fresh memory. Consecutive updates thus
see consecutive phases of the same episodes, as in Transformer-XL language modelling. The
memory never passes gradient into what it stored (``memory/``), so what a later step must
recall has to be kept in the hidden states by the loss of the steps that wrote them; the
LSTM's gradient stops at segment boundaries too.

Random segments (``segment_sampling="random"``, only without memory: L2M's pretraining and
fine-tuning). Consecutive phases of the same episodes make successive updates strongly
correlated (every update of a sweep sees the same few episodes at the same timesteps), which
slows plain imitation down a lot. Here every update draws ``batch_size`` rows anew, each a
random segment of ``context`` steps of a random episode at its own timestep (steps are
weighted equally, the first and last included). The ``layers * (context - 1)`` steps before
the segment, the whole receptive field of its outputs, run first without gradient to fill the
cache, so each output is computed exactly as acting computes it at that step (padding before
an episode's start is masked out of attention, as if the episode started there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from crlgym.agents.dt_model import (
    ACTION,
    MEMORY_CHOICES,
    REWARD,
    RTG,
    SEGMENT_SAMPLINGS,
    STATE,
    Context,
    DecisionTransformer,
    DTConfig,
    detokenize_actions,
    tokenize_actions,
)
from crlgym.errors import ConfigError

# --- the agent -------------------------------------------------------------------------------


@dataclass
class _TaskData:
    """One task's episodes as tensors (states are the T observations acted on)."""

    states: list[Tensor]
    actions: list[Tensor]
    rewards: list[Tensor]
    returns_to_go: list[Tensor]


@dataclass
class _Batch:
    """A padded batch of whole episodes, consumed one segment per update."""

    episodes: Tensor  # (B,) indices into the task's episode list
    states: Tensor  # (B, L, obs)
    actions: Tensor  # (B, L, act)
    rewards: Tensor  # (B, L) scaled
    returns_to_go: Tensor  # (B, L) scaled
    valid: Tensor  # (B, L) bool, False on padding
    next_start: int = 0
    context: Context | None = None
    timesteps: Tensor | None = None  # (B, L) each row's own steps (random segments only)


class DecisionTransformerAgent:
    """An offline-trained, online-acting Decision Transformer for continual runs.

    Args:
        observation_dim, action_dim: sizes of observations and actions (every task's).
        num_tasks: tasks of the run (indices 0 .. num_tasks-1).
        config: hyperparameters.
        episodes_of: task index -> that task's offline episodes, dicts as
            `crlgym.memory.datasets.load_episodes` returns (``observations`` (T+1, obs),
            ``actions`` (T, act), ``rewards`` (T,), optionally ``returns_to_go`` (T,)).
            Called at a task's start, on a restore, and once per task to find the acting
            target return when ``config.target_return`` is None.
        seed: seeds the weights and the agent's two generators (batch sampling; sampled
            actions), so runs are reproducible and evaluation never shifts training.
        device: torch device.

    Acting contract (the runner's evaluation loop already follows it):
    ``start_episode(task_index)``, then per step ``action = act(observation, deterministic)``,
    ``env.step(action)``, ``observe_reward(reward)``. `act` refuses to run before the
    previous step's reward was observed, since every later return-to-go depends on it.
    """

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        num_tasks: int,
        config: DTConfig,
        episodes_of: Callable[[int], list[dict]],
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        for name, value in (("observation_dim", observation_dim), ("action_dim", action_dim)):
            if value < 1:
                raise ConfigError(f"{name} must be positive, got {value}")
        if num_tasks < 1:
            raise ConfigError(f"num_tasks must be positive, got {num_tasks}")
        self.observation_dim, self.action_dim, self.num_tasks = (
            observation_dim,
            action_dim,
            num_tasks,
        )
        self.config, self.episodes_of, self.device = config, episodes_of, torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = DecisionTransformer(observation_dim, action_dim, config).to(self.device)
        self.optimizer = self._fresh_optimizer()
        self._train_generator = torch.Generator().manual_seed(seed)
        self._act_generator = torch.Generator().manual_seed(seed + 1)
        self.logger: Any = None
        self.num_timesteps = 0
        """Gradient updates done so far (the run's step axis)."""
        self.current_task: int | None = None
        self._optimizer_updates = 0  # drives the warmup
        self._data: _TaskData | None = None
        self._batch: _Batch | None = None
        self._target_returns: dict[int, float] = {}
        # Acting state of the running episode.
        self._acting: Context | None = None
        self._act_task = 0
        self._act_step = 0
        self._return_to_go = 0.0
        self._last_action: Tensor | None = None
        self._last_reward: float | None = None

    # -- bookkeeping --------------------------------------------------------------------------
    def set_logger(self, logger: Any) -> None:
        """Record ``train/*`` values to this stable-baselines3 ``Logger`` (the runner dumps)."""
        self.logger = logger

    def parameter_count(self) -> int:
        """Trainable parameters of the model."""
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def _fresh_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.model.parameters(),
            lr=self.config.learning_rate,
            weight_decay=self.config.weight_decay,
        )

    def _check_task(self, task_index: int) -> None:
        if not 0 <= task_index < self.num_tasks:
            raise ValueError(f"task index {task_index} outside 0..{self.num_tasks - 1}")

    def _load_task(self, task_index: int) -> _TaskData:
        episodes = self.episodes_of(task_index)
        if not episodes:
            raise ValueError(f"task {task_index} has no offline episodes")
        data = _TaskData([], [], [], [])
        scale = self.config.reward_scale
        for number, episode in enumerate(episodes):
            actions = torch.as_tensor(np.asarray(episode["actions"]), dtype=torch.float32)
            steps = actions.shape[0]
            states = torch.as_tensor(np.asarray(episode["observations"]), dtype=torch.float32)
            if states.shape[1:] != (self.observation_dim,) or actions.shape[1:] != (
                self.action_dim,
            ):
                raise ValueError(
                    f"task {task_index} episode {number}: observations {tuple(states.shape)} "
                    f"and actions {tuple(actions.shape)} do not match observation_dim "
                    f"{self.observation_dim} and action_dim {self.action_dim}"
                )
            if self.config.action_bins:
                # Acting feeds back bin centres, so training feeds them too (same bins).
                actions = detokenize_actions(
                    tokenize_actions(actions, self.config.action_bins), self.config.action_bins
                )
            rewards = torch.as_tensor(np.asarray(episode["rewards"]), dtype=torch.float64)
            rtg = episode.get("returns_to_go")
            rtg = rewards.flip(0).cumsum(0).flip(0) if rtg is None else torch.as_tensor(rtg)
            data.states.append(states[:steps])
            data.actions.append(actions)
            data.rewards.append((rewards / scale).float())
            data.returns_to_go.append((rtg.double() / scale).float())
        self._target_returns.setdefault(
            task_index, max(float(np.sum(episode["rewards"])) for episode in episodes)
        )
        return data

    def target_return(self, task_index: int) -> float:
        """The (unscaled) return acted for on ``task_index``."""
        if self.config.target_return is not None:
            return float(self.config.target_return)
        if task_index not in self._target_returns:
            episodes = self.episodes_of(task_index)
            if not episodes:
                raise ValueError(f"task {task_index} has no offline episodes")
            self._target_returns[task_index] = max(float(np.sum(e["rewards"])) for e in episodes)
        return self._target_returns[task_index]

    # -- continual hooks ----------------------------------------------------------------------
    def on_task_start(self, task_index: int, budget: int | None = None) -> None:
        """Train on ``task_index``'s episodes from now on.

        ``budget`` (updates the task will get) is accepted for interface parity with SAC and
        not needed: the warmup is fixed in updates.
        """
        del budget
        self._check_task(task_index)
        self.current_task = task_index
        self._data = self._load_task(task_index)
        self._batch = None
        if self.config.reset_optimizer:
            self.optimizer = self._fresh_optimizer()
            self._optimizer_updates = 0

    def on_task_end(self, task_index: int) -> None:
        """Drop the task's batch and episodes (the data of one task can be large)."""
        del task_index
        self._batch, self._data = None, None

    # -- training -----------------------------------------------------------------------------
    def learn_updates(self, updates: int, callback: Callable[[int], None] | None = None) -> None:
        """Do ``updates`` gradient updates on the current task; ``callback(num_timesteps)``
        after each (the runner evaluates and checkpoints from it)."""
        if self.current_task is None:
            raise RuntimeError("call on_task_start before learn_updates")
        for _ in range(updates):
            self._update()
            if callback is not None:
                callback(self.num_timesteps)

    def _sample_batch(self, episodes: Tensor | None = None) -> _Batch:
        if self.config.segment_sampling == "random":
            return self._sample_segments()
        data = self._data
        assert data is not None
        count = len(data.states)
        if episodes is None:
            size = self.config.batch_size
            episodes = (
                torch.randperm(count, generator=self._train_generator)[:size]
                if count >= size
                else torch.randint(count, (size,), generator=self._train_generator)
            )
        lengths = [data.actions[i].shape[0] for i in episodes.tolist()]
        batch, length = len(lengths), max(lengths)

        def pad(parts: list[Tensor]) -> Tensor:
            out = parts[0].new_zeros((batch, length, *parts[0].shape[1:]))
            for row, part in enumerate(parts):
                out[row, : part.shape[0]] = part
            return out.to(self.device)

        rows = episodes.tolist()
        valid = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]
        return _Batch(
            episodes=episodes,
            states=pad([data.states[i] for i in rows]),
            actions=pad([data.actions[i] for i in rows]),
            rewards=pad([data.rewards[i] for i in rows]),
            returns_to_go=pad([data.returns_to_go[i] for i in rows]),
            valid=valid.to(self.device),
        )

    def _sample_segments(self) -> _Batch:
        """``batch_size`` random segments (``segment_sampling="random"``): per row a random
        episode (with replacement) and a segment start s uniform over -(context-1) ..
        length-1, so that every step lies in exactly ``context`` possible segments; the rows
        hold steps s - receptive_steps .. s + context - 1, padded (and zeroed) outside the
        episode."""
        data, config = self._data, self.config
        assert data is not None
        size, context = config.batch_size, config.context
        rows = torch.randint(len(data.states), (size,), generator=self._train_generator)
        lengths = torch.tensor([data.actions[i].shape[0] for i in rows.tolist()])
        draws = torch.rand(size, generator=self._train_generator, dtype=torch.float64)
        starts = (draws * (lengths + context - 1)).long() - (context - 1)
        span = config.receptive_steps + context
        timesteps = starts[:, None] - config.receptive_steps + torch.arange(span)[None, :]
        valid = (timesteps >= 0) & (timesteps < lengths[:, None])
        index = torch.minimum(timesteps.clamp(min=0), lengths[:, None] - 1)

        def gather(parts: list[Tensor]) -> Tensor:
            picked = torch.stack([parts[i][index[row]] for row, i in enumerate(rows.tolist())])
            keep = valid.reshape(*valid.shape, *([1] * (picked.dim() - 2)))
            return (picked * keep.to(picked.dtype)).to(self.device)

        return _Batch(
            episodes=rows,
            states=gather(data.states),
            actions=gather(data.actions),
            rewards=gather(data.rewards),
            returns_to_go=gather(data.returns_to_go),
            valid=valid.to(self.device),
            timesteps=timesteps.clamp(min=0).to(self.device),
        )

    def _episode_openings(self, batch: _Batch) -> tuple[Tensor, Tensor]:
        """(B, context, observation_dim) states of the first ``context`` steps of each row's
        episode and their (B, context) validity (L2M selects pool entries from them)."""
        first = slice(0, self.config.context)
        if batch.timesteps is None:  # sequential batches start at every episode's step 0
            return batch.states[:, first], batch.valid[:, first]
        data = self._data
        assert data is not None
        states = torch.zeros(len(batch.episodes), self.config.context, self.observation_dim)
        valid = torch.zeros(len(batch.episodes), self.config.context, dtype=torch.bool)
        for row, episode in enumerate(batch.episodes.tolist()):
            opening = data.states[episode][first]
            states[row, : len(opening)] = opening
            valid[row, : len(opening)] = True
        return states.to(self.device), valid.to(self.device)

    def _segment_outputs(self, batch: _Batch) -> tuple[Tensor, Tensor, Tensor]:
        """Head outputs of a random-segment batch's last ``context`` steps, their actions and
        validity; the steps before run first, without gradient, to fill the cache."""
        assert batch.timesteps is not None, "a random-segment batch"
        before = self.config.receptive_steps
        context = self.model.initial_context(batch.valid.shape[0], self.device)
        self.model.train()
        if before:
            prefix = slice(0, before)
            with torch.no_grad():
                _, context = self.model.segment(
                    batch.returns_to_go[:, prefix], batch.states[:, prefix],
                    batch.actions[:, prefix], batch.rewards[:, prefix], 0, context,
                    timesteps=batch.timesteps[:, prefix], valid=batch.valid[:, prefix],
                )  # fmt: skip
        window = slice(before, None)
        outputs, _ = self.model.segment(
            batch.returns_to_go[:, window], batch.states[:, window], batch.actions[:, window],
            batch.rewards[:, window], before, context,
            timesteps=batch.timesteps[:, window], valid=batch.valid[:, window],
        )  # fmt: skip
        return outputs, batch.actions[:, window], batch.valid[:, window]

    def _update(self) -> None:
        if self._data is None:
            assert self.current_task is not None
            self._data = self._load_task(self.current_task)
        config = self.config
        if config.segment_sampling == "random":
            self._batch = None  # nothing carries over from one update to the next
            outputs, actions, valid = self._segment_outputs(self._sample_batch())
            loss, accuracy = self._loss(outputs, actions, valid)
            context = None
        else:
            if self._batch is None or self._batch.next_start >= self._batch.valid.shape[1]:
                self._batch = self._sample_batch()
            batch = self._batch
            start = batch.next_start
            window = slice(start, start + config.context)
            if batch.context is None:
                batch.context = self.model.initial_context(batch.valid.shape[0], self.device)
            self.model.train()
            outputs, context = self.model.segment(
                batch.returns_to_go[:, window],
                batch.states[:, window],
                batch.actions[:, window],
                batch.rewards[:, window],
                start,
                batch.context,
            )
            loss, accuracy = self._loss(outputs, batch.actions[:, window], batch.valid[:, window])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parameters = list(self.model.parameters())
        if config.grad_clip > 0:
            grad_norm = float(nn.utils.clip_grad_norm_(parameters, config.grad_clip))
        else:
            grads = [p.grad.norm() for p in parameters if p.grad is not None]
            grad_norm = float(torch.stack(grads).norm())
        learning_rate = config.learning_rate * min(
            1.0, (self._optimizer_updates + 1) / max(1, config.warmup)
        )
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        self.optimizer.step()
        self._optimizer_updates += 1
        self.num_timesteps += 1
        if context is not None and self._batch is not None:
            self._batch.context = context.detach()
            self._batch.next_start += config.context
        if self.logger is not None:
            self.logger.record_mean("train/loss", float(loss.detach()))
            if accuracy is not None:
                self.logger.record_mean("train/action_accuracy", accuracy)
            self.logger.record_mean("train/grad_norm", grad_norm)
            self.logger.record("train/learning_rate", learning_rate)
            self.logger.record("train/active_task", self.current_task)
            self.logger.record("train/n_updates", self.num_timesteps, exclude="tensorboard")

    def _loss(self, outputs: Tensor, actions: Tensor, valid: Tensor) -> tuple[Tensor, float | None]:
        """Masked mean loss over every valid action dimension, and the bin accuracy."""
        weight = valid.to(outputs.dtype)[..., None].expand_as(actions)
        total = weight.sum().clamp(min=1.0)
        bins = self.config.action_bins
        if not bins:
            error = (torch.tanh(outputs) - actions).square()
            return (error * weight).sum() / total, None
        logits = outputs.unflatten(-1, (self.action_dim, bins))
        targets = tokenize_actions(actions, bins)
        loss = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction="none")
        hits = (logits.argmax(-1) == targets).to(weight.dtype)
        accuracy = float((hits * weight).sum() / total)
        return (loss * weight.flatten()).sum() / total, accuracy

    # -- acting -------------------------------------------------------------------------------
    def start_episode(self, task_index: int) -> None:
        """Forget the running episode; the next `act` is the first step of ``task_index``."""
        self._check_task(task_index)
        self._act_task = task_index
        self._acting = self.model.initial_context(1, self.device)
        self._act_step = 0
        self._return_to_go = self.target_return(task_index)
        self._last_action, self._last_reward = None, None

    def act(self, observation: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """The action for ``observation``, the next step of the running episode.

        Deterministic: the centre of each dimension's most likely bin (or the continuous
        head's output). Stochastic: bins sampled from the softmax (the continuous head has no
        distribution and acts the same both ways).
        """
        outputs = self._advance(observation)
        bins = self.config.action_bins
        if not bins:
            action = torch.tanh(outputs)
        else:
            logits = outputs.unflatten(-1, (self.action_dim, bins))
            if deterministic:
                tokens = logits.argmax(-1)
            else:
                probabilities = torch.softmax(logits.double(), -1).cpu()
                tokens = torch.multinomial(probabilities, 1, generator=self._act_generator)
                tokens = tokens[:, 0].to(self.device)
            action = detokenize_actions(tokens, bins)
        self._last_action = action
        return action.cpu().numpy().astype(np.float32)

    __call__ = act

    def observe_reward(self, reward: float) -> None:
        """The reward the last `act`'s action earned (call once after every step)."""
        if self._last_action is None or self._last_reward is not None:
            raise RuntimeError("observe_reward must follow an act call, once per step")
        self._last_reward = float(reward)
        self._return_to_go -= self._last_reward

    def replay(self, observation: np.ndarray, action: np.ndarray, reward: float) -> Tensor:
        """A teacher-forced step: the head outputs `act` would compute for ``observation``,
        then ``action`` and ``reward`` recorded as if taken (``action`` is quantized to bin
        centres, as training quantizes recorded actions).

        Returns:
            (action_dim * action_bins,) logits, or (action_dim,) pre-tanh outputs.
        """
        outputs = self._advance(observation)
        taken = torch.as_tensor(np.asarray(action), dtype=torch.float32, device=self.device)
        bins = self.config.action_bins
        self._last_action = (
            detokenize_actions(tokenize_actions(taken, bins), bins) if bins else taken
        )
        self.observe_reward(reward)
        return outputs

    @torch.no_grad()
    def _advance(self, observation: np.ndarray) -> Tensor:
        """Feed the last step's action (and reward) and this step's rtg and state; returns
        the head outputs (action_dim * bins,) for this step."""
        if self._acting is None:
            raise RuntimeError("call start_episode before act")
        t, k, model = self._act_step, self.config.tokens_per_step, self.model
        if t > 0 and self._last_reward is None:
            raise RuntimeError("observe_reward(reward) of the previous step is missing")
        state = torch.as_tensor(np.asarray(observation), dtype=torch.float32, device=self.device)
        if state.shape != (self.observation_dim,):
            raise ValueError(
                f"observation has shape {tuple(state.shape)}, expected ({self.observation_dim},)"
            )
        model.eval()
        scale = self.config.reward_scale
        here = torch.tensor([t], device=self.device)
        rtg = torch.full((1, 1, 1), self._return_to_go / scale, device=self.device)
        tokens = [
            model.embed(RTG, rtg, here),
            model.embed(STATE, state[None, None], here),
        ]
        positions = [t * k + RTG, t * k + STATE]
        steps = [t, t]
        if t > 0:
            assert self._last_action is not None and self._last_reward is not None
            before = here - 1
            previous = [model.embed(ACTION, self._last_action[None, None], before)]
            positions[:0] = [(t - 1) * k + ACTION]
            if self.config.reward_tokens:
                reward = torch.full((1, 1, 1), self._last_reward / scale, device=here.device)
                previous.append(model.embed(REWARD, reward, before))
                positions[1:1] = [(t - 1) * k + REWARD]
            tokens[:0] = previous
            steps[:0] = [t - 1] * len(previous)
        index = torch.tensor([len(tokens) - 1], device=self.device)
        outputs, self._acting = model.run(
            torch.cat(tokens, dim=1),
            torch.tensor(steps, device=self.device),
            torch.tensor(positions, device=self.device),
            index,
            self._acting,
            torch.tensor([[t == 0]], device=self.device),
        )
        self._act_step = t + 1
        self._last_action, self._last_reward = None, None
        return outputs[0, 0]

    # -- checkpoints --------------------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        """Everything a resumed run needs (tensors and plain values; weights_only-loadable).

        The batch in progress is kept (its episode indices, position and context), so the
        next update after a restore is the one that would have come. A running acting
        episode is not kept. With dropout > 0 the global torch RNG (the runner saves it)
        also matters.
        """
        batch = None
        if self._batch is not None:
            batch = {
                "episodes": self._batch.episodes.clone(),
                "next_start": self._batch.next_start,
                "context": None if self._batch.context is None else self._batch.context.to_dict(),
            }
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_generator": self._train_generator.get_state(),
            "act_generator": self._act_generator.get_state(),
            "num_timesteps": self.num_timesteps,
            "optimizer_updates": self._optimizer_updates,
            "current_task": self.current_task,
            "target_returns": dict(self._target_returns),
            "batch": batch,
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore `training_state` (same config and dimensions)."""
        self.model.load_state_dict(state["model"])
        self.optimizer = self._fresh_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self._train_generator.set_state(state["train_generator"])
        self._act_generator.set_state(state["act_generator"])
        self.num_timesteps = int(state["num_timesteps"])
        self._optimizer_updates = int(state["optimizer_updates"])
        self.current_task = state["current_task"]
        self._target_returns = {int(k): float(v) for k, v in state["target_returns"].items()}
        self._data, self._batch, self._acting = None, None, None
        if self.current_task is not None:
            self._data = self._load_task(self.current_task)
        if state["batch"] is not None:
            self._batch = self._sample_batch(state["batch"]["episodes"])
            self._batch.next_start = int(state["batch"]["next_start"])
            if state["batch"]["context"] is not None:
                self._batch.context = self.model.context_from_dict(
                    state["batch"]["context"], self.device
                )


__all__ = [
    "MEMORY_CHOICES",
    "SEGMENT_SAMPLINGS",
    "Context",
    "DTConfig",
    "DecisionTransformer",
    "DecisionTransformerAgent",
    "detokenize_actions",
    "tokenize_actions",
]
