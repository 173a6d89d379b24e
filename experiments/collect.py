"""``crl collect``: record offline datasets (Minari) of expert rollouts with action noise.

For every task an expert acts from the task's native observation:

* Meta-World, toy (and any task `crlgym.envs.expert_policy` knows): the scripted expert. One
  expert object per task; when it has a ``reset()`` (experts that remember within an
  episode), it is called at the start of every episode.
* DMControl (no scripted experts): a SAC expert trained first on the task alone
  (``dmc_expert_steps`` env steps), saved next to the dataset as
  ``crlgym/<task>/sac-expert-seed<S>-<N>steps.pt`` and reused when that file exists.

Every action is ``clip(expert(obs) + std * N(0, I), -1, 1)``. Most episodes use
``std = action_noise``; a share ``noisy_share`` of them, spread evenly over the episode
indices, use ``noisy_noise``, so returns vary as offline RL and return-conditioned models
need. Episode ``i`` of task ``t`` is fully determined by ``(seed, t, i)``: its env seed is
`episode_seed` and its noise comes from `noise_generator`; rerunning gives the same data.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import os
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from crlgym import envs
from crlgym.errors import ConfigError
from crlgym.memory.datasets import (
    DEFAULT_KIND,
    DatasetExistsError,
    DatasetInfo,
    DatasetWriter,
    dataset_exists,
    dataset_id,
    dataset_info,
    resolve_data_dir,
)

if TYPE_CHECKING:
    from crlgym.agents.sac import SACConfig

Expert = Callable[[np.ndarray], np.ndarray]

#: Episodes held in RAM before they are written (2M-step tasks do not fit in RAM as lists).
EPISODES_PER_WRITE = 50

#: Packages whose versions decide what the stored data looks like, per domain.
_REQUIREMENTS = {
    "metaworld": ("metaworld", "mujoco"),
    "dmc": ("dm-control", "mujoco"),
}


# -- the noise and seeding scheme ------------------------------------------------------------


def _task_key(task: str) -> int:
    # A stable number per task (Python's hash() changes between processes).
    return zlib.crc32(envs.canonical_task_name(task).encode())


def episode_seed(seed: int, task: str, episode: int) -> int:
    """The env seed of episode ``episode`` of ``task`` in a collection seeded ``seed``."""
    return int(np.random.SeedSequence([seed, _task_key(task), episode]).generate_state(1)[0])


def noise_generator(seed: int, task: str, episode: int) -> np.random.Generator:
    """The generator of that episode's action noise (a stream apart from the env's)."""
    return np.random.default_rng([seed, _task_key(task), episode, 1])


def is_noisy_episode(episode: int, noisy_share: float) -> bool:
    """Whether episode ``episode`` gets the larger noise: exactly ``noisy_share`` of every
    run of episodes (up to rounding), spread evenly rather than drawn at random."""
    # The epsilon keeps exact products such as 5 * 0.2 from landing just below an integer.
    return math.floor((episode + 1) * noisy_share + 1e-9) > math.floor(episode * noisy_share + 1e-9)


def noisy_action(action: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """``clip(action + std * N(0, I), -1, 1)`` as float32 (noise is drawn even at std 0,
    so every episode consumes its noise stream the same way)."""
    action = np.asarray(action, dtype=np.float64)
    noise = rng.standard_normal(action.shape)
    return np.clip(action + std * noise, -1.0, 1.0).astype(np.float32)


def rollout_episode(
    env: gym.Env, expert: Expert, *, env_seed: int, std: float, rng: np.random.Generator
) -> dict[str, Any]:
    """One episode of ``expert`` with Gaussian action noise, as arrays.

    Returns ``observations`` (T+1 rows), ``actions``, ``rewards``, ``terminations``,
    ``truncations``, ``success`` (T rows) and ``final_info`` (the last step's info).
    """
    reset = getattr(expert, "reset", None)
    if callable(reset):
        reset()
    observation, _ = env.reset(seed=env_seed)
    observations, actions, rewards = [observation], [], []
    terminations, truncations, success = [], [], []
    info: dict[str, Any] = {}
    done = False
    while not done:
        action = noisy_action(expert(observation), std, rng)
        observation, reward, terminated, truncated, info = env.step(action)
        observations.append(observation)
        actions.append(action)
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated))
        success.append(bool(info.get("success", False)))
        done = terminated or truncated
    return {
        "observations": np.asarray(observations, dtype=np.float32),
        "actions": np.asarray(actions, dtype=np.float32),
        "rewards": np.asarray(rewards, dtype=np.float64),
        "terminations": np.asarray(terminations, dtype=bool),
        "truncations": np.asarray(truncations, dtype=bool),
        "success": np.asarray(success, dtype=bool),
        "final_info": info,
    }


# -- which tasks ------------------------------------------------------------------------------


def resolve_tasks(specs: Sequence[str] | str) -> list[str]:
    """Canonical task names from sequence names (``MT40``), task lists (``a,b``), YAML
    files or task names, in order, each once.

    Raises:
        UnknownTaskError / UnknownSequenceError: a name that is neither.
    """
    specs = [specs] if isinstance(specs, str) else list(specs)
    if not specs:
        raise ConfigError("no tasks given; e.g. --tasks MT40 or --tasks reach,push")
    registered = {name.lower() for name in envs.SEQUENCES}
    tasks: list[str] = []
    for spec in specs:
        text = spec.strip()
        is_sequence = text.lower() in registered or "," in text or text.endswith((".yaml", ".yml"))
        if is_sequence:
            tasks.extend(envs.load_sequence(text).task_names)
        else:
            tasks.append(envs.canonical_task_name(text))  # the one-line unknown-task error
    return list(dict.fromkeys(tasks))


# -- DMControl experts ------------------------------------------------------------------------


def expert_weights_path(
    data_dir: str | os.PathLike[str] | None, task: str, seed: int, steps: int
) -> Path:
    """Where the SAC expert of a DMControl task is saved (next to its datasets)."""
    name = envs.canonical_task_name(task)
    return resolve_data_dir(data_dir) / "crlgym" / name / f"sac-expert-seed{seed}-{steps}steps.pt"


def _sac_config(steps: int) -> SACConfig:
    from crlgym.agents.sac import SACConfig

    # Continual World's SAC on one task with one head; warm-up and replay scale down with
    # small budgets so that a short (test) budget still learns after its random phase.
    return SACConfig(
        multi_head=False,
        per_task_alpha=False,
        random_steps=min(10_000, steps // 10),
        update_after=min(1_000, steps // 20),
        buffer_size=max(1, min(1_000_000, steps)),
    )


def sac_expert(
    task: str,
    *,
    steps: int,
    seed: int,
    data_dir: str | os.PathLike[str] | None,
    episode_length: int | None = None,
    progress: Progress | None = None,
) -> tuple[Expert, Path, bool]:
    """The SAC expert of a DMControl task: trained for ``steps`` env steps and saved, or
    loaded when saved before with the same seed and budget.

    Returns the deterministic policy (observation -> action in [-1, 1]), the weights file,
    and whether it was reused.
    """
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from crlgym.agents.sac import ContinualSAC, SACConfig
    from crlgym.envs.wrappers import EpisodeSeeding

    path = expert_weights_path(data_dir, task, seed, steps)
    sequence = envs.load_sequence(task, envs.EnvConfig(episode_length=episode_length))
    reused = path.is_file()
    saved = torch.load(path, weights_only=True) if reused else None
    if saved is not None:
        # Only fields SACConfig still has: a file saved by an older crlgym stays loadable.
        known = {f.name for f in dataclasses.fields(SACConfig)}
        stored = {k: v for k, v in saved["sac_config"].items() if k in known}
        config = SACConfig(**{**stored, "hidden_sizes": tuple(stored["hidden_sizes"])})
    else:
        config = _sac_config(steps)
    env = EpisodeSeeding(sequence.make_env(0), base_seed=seed)
    agent = ContinualSAC(env, num_tasks=1, config=config, seed=seed, device="cpu")
    if saved is not None:
        agent.policy.load_state_dict(saved["policy"])
    else:
        bar = (
            progress.add_task(f"train SAC expert {task}", total=steps, latest="")
            if progress is not None
            else None
        )

        class _Report(BaseCallback):
            def _on_step(self) -> bool:
                if progress is not None and bar is not None and self.num_timesteps % 250 == 0:
                    episodes = self.model.ep_info_buffer
                    latest = f"return {episodes[-1]['r']:.0f}" if episodes else ""
                    progress.update(bar, completed=self.num_timesteps, latest=latest)
                return True

        agent.on_task_start(0, steps)
        agent.learn(steps, callback=_Report())
        agent.on_task_end(0)
        if progress is not None and bar is not None:
            progress.remove_task(bar)
        path.parent.mkdir(parents=True, exist_ok=True)
        sac_config = {**config.to_dict(), "hidden_sizes": list(config.hidden_sizes)}
        temporary = path.with_name(f".{path.name}.tmp")
        torch.save(
            {
                "policy": agent.policy.state_dict(),
                "sac_config": sac_config,
                "task": sequence.task_names[0],
                "steps": steps,
                "seed": seed,
            },
            temporary,
        )
        os.replace(temporary, path)
    env.close()
    agent.policy.set_training_mode(False)

    def act(observation: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            tensor = torch.as_tensor(observation, dtype=torch.float32).unsqueeze(0)
            return agent.policy._predict(tensor, deterministic=True)[0].numpy()

    return act, path, reused


# -- collection -------------------------------------------------------------------------------


def _env_spec(task: str, episode_length: int | None) -> Any:
    env_id = f"crlgym/{task}"
    if env_id not in gym.registry:
        return None
    spec = gym.spec(env_id)
    if episode_length is None:
        return spec
    return dataclasses.replace(spec, kwargs={**spec.kwargs, "episode_length": episode_length})


def _requirements(domain: str) -> list[str]:
    packages = ("crlgym", "gymnasium", *_REQUIREMENTS.get(domain, ()))
    found = []
    for package in packages:
        try:
            found.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _validate(
    episodes: int,
    seed: int,
    action_noise: float,
    noisy_share: float,
    noisy_noise: float,
    dmc_expert_steps: int,
) -> None:
    if episodes <= 0:
        raise ConfigError(f"episodes must be positive, got {episodes}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if action_noise < 0 or noisy_noise < 0:
        raise ConfigError(f"noise std must be >= 0, got {action_noise} and {noisy_noise}")
    if not 0.0 <= noisy_share <= 1.0:
        raise ConfigError(f"noisy share must be in [0, 1], got {noisy_share}")
    if dmc_expert_steps <= 0:
        raise ConfigError(f"dmc expert steps must be positive, got {dmc_expert_steps}")


def collect(
    tasks: Sequence[str] | str,
    episodes: int = 100,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    action_noise: float = 0.1,
    noisy_share: float = 0.2,
    noisy_noise: float = 0.5,
    dmc_expert_steps: int = 100_000,
    overwrite: bool = False,
    *,
    kind: str = DEFAULT_KIND,
    episode_length: int | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> list[DatasetInfo]:
    """Record ``episodes`` noisy expert episodes of every task as one Minari dataset each.

    Args:
        tasks: sequence names (``MT40``), task lists (``"reach,push"``), task names.
        episodes: episodes per task.
        data_dir: the data directory (default `DEFAULT_DATA_DIR`, ``data/datasets``).
        seed: the collection seed; episode ``i`` of a task depends on ``(seed, task, i)``.
        action_noise: Gaussian action noise std of most episodes.
        noisy_share: share of episodes collected with ``noisy_noise`` instead.
        noisy_noise: noise std of those episodes.
        dmc_expert_steps: SAC training budget of a DMControl task's expert.
        overwrite: replace existing datasets (otherwise they stop the collection before
            anything is written).
        kind: the dataset kind in the id ``crlgym/<task>/<kind>-v0``.
        episode_length: steps per episode; None = the domain's default.
        progress: show rich progress bars.
        console: where progress and summaries go (default: stderr).

    Returns:
        The `DatasetInfo` of each dataset written.

    Raises:
        UnknownTaskError / UnknownSequenceError: an unknown name (nothing is written).
        DatasetExistsError: a dataset exists and ``overwrite`` is False (nothing is written).
        ConfigError: a setting out of range, or a task without an expert.
    """
    _validate(episodes, seed, action_noise, noisy_share, noisy_noise, dmc_expert_steps)
    names = resolve_tasks(tasks)
    ids = [dataset_id(task, kind) for task in names]
    if episode_length is not None and episode_length <= 0:
        raise ConfigError(f"episode_length must be positive, got {episode_length}")
    existing = [i for i in ids if dataset_exists(i, data_dir)]
    if existing and not overwrite:
        raise DatasetExistsError(
            f"{len(existing)} dataset(s) already exist in {resolve_data_dir(data_dir)} "
            f"({', '.join(existing[:3])}{', ...' if len(existing) > 3 else ''}); pass "
            "--overwrite to replace them"
        )
    console = console or Console(stderr=True)
    bars = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[latest]}"),
        console=console,
        disable=not progress,
    )
    infos: list[DatasetInfo] = []
    with bars:
        for number, (task, name) in enumerate(zip(names, ids, strict=True), start=1):
            info = _collect_task(
                task,
                name,
                label=f"{number}/{len(names)} {task}",
                episodes=episodes,
                data_dir=data_dir,
                seed=seed,
                action_noise=action_noise,
                noisy_share=noisy_share,
                noisy_noise=noisy_noise,
                dmc_expert_steps=dmc_expert_steps,
                overwrite=overwrite,
                kind=kind,
                episode_length=episode_length,
                bars=bars,
            )
            infos.append(info)
            success = "" if info.success_rate is None else f", success {info.success_rate:.2f}"
            speed = info.collection["episodes_per_s"]
            console.print(
                f"{task}: {info.episodes} episodes, {info.steps} steps, return "
                f"{info.return_mean:.1f} ± {info.return_std:.1f}{success} "
                f"({speed:.1f} episodes/s) -> {escape(str(info.path))}"
            )
    return infos


def _collect_task(
    task: str,
    name: str,
    *,
    label: str,
    episodes: int,
    data_dir: str | os.PathLike[str] | None,
    seed: int,
    action_noise: float,
    noisy_share: float,
    noisy_noise: float,
    dmc_expert_steps: int,
    overwrite: bool,
    kind: str,
    episode_length: int | None,
    bars: Progress,
) -> DatasetInfo:
    domain = envs.task_domain(task)
    settings: dict[str, Any] = {
        "seed": seed,
        "episodes": episodes,
        "noise": action_noise,
        "noisy_share": noisy_share,
        "noisy_noise": noisy_noise,
        "episode_length": episode_length,
        "seeding": "env seed = SeedSequence([seed, crc32(task), episode]); noise = "
        "default_rng([seed, crc32(task), episode, 1])",
    }
    if domain == "dmc":
        expert, path, reused = sac_expert(
            task,
            steps=dmc_expert_steps,
            seed=seed,
            data_dir=data_dir,
            episode_length=episode_length,
            progress=bars,
        )
        settings.update(
            expert="sac",
            expert_weights=str(path),
            expert_reused=reused,
            dmc_expert_steps=dmc_expert_steps,
        )
        algorithm = f"SAC expert ({dmc_expert_steps} steps) + Gaussian action noise"
    else:
        expert = envs.expert_policy(task)
        settings["expert"] = "scripted"
        algorithm = "scripted expert + Gaussian action noise"
    references: dict[str, float] = {}
    if domain == "dmc":
        from crlgym.envs.dmc_env import load_reference_returns

        reference = load_reference_returns().get(task)
        if reference is not None:
            references = {
                "ref_min_score": reference["random"],
                "ref_max_score": reference["expert"],
            }

    env = envs.make_env(task, envs.EnvConfig(episode_length=episode_length))
    has_success = domain != "dmc"
    bar = bars.add_task(label, total=episodes, latest="")
    returns: list[float] = []
    successes: list[bool] = []
    longest = 0
    started = time.perf_counter()
    try:
        with DatasetWriter(
            name,
            data_dir,
            observation_space=env.observation_space,
            action_space=env.action_space,
            env_spec=_env_spec(task, episode_length),
            overwrite=overwrite,
            flush_every=EPISODES_PER_WRITE,
            description=f"{task}: {algorithm} (crl collect)",
            algorithm_name=algorithm,
            requirements=_requirements(domain),
            **references,
        ) as writer:
            for episode in range(episodes):
                noisy = is_noisy_episode(episode, noisy_share)
                std = noisy_noise if noisy else action_noise
                env_seed = episode_seed(seed, task, episode)
                data = rollout_episode(
                    env,
                    expert,
                    env_seed=env_seed,
                    std=std,
                    rng=noise_generator(seed, task, episode),
                )
                total = float(data["rewards"].sum())
                succeeded = bool(data["success"].any())
                metadata: dict[str, Any] = {
                    "task": task,
                    "episode_index": episode,
                    "return": total,
                    "success": succeeded,
                    "noise_std": std,
                    "noisy": noisy,
                }
                if "normalized_score" in data["final_info"]:
                    metadata["normalized_score"] = float(data["final_info"]["normalized_score"])
                writer.add_episode(
                    data["observations"],
                    data["actions"],
                    data["rewards"],
                    data["terminations"],
                    data["truncations"],
                    data["success"],
                    seed=env_seed,
                    metadata=metadata,
                )
                returns.append(total)
                successes.append(succeeded)
                longest = max(longest, len(data["rewards"]))
                latest = f"return {np.mean(returns):.1f}"
                if has_success:
                    latest += f" success {np.mean(successes):.2f}"
                bars.update(bar, completed=episode + 1, latest=latest)
            seconds = time.perf_counter() - started
            settings.update(
                # What the env did (the domain's or the task's own default when unset).
                episode_length=episode_length or longest,
                seconds=round(seconds, 3),
                episodes_per_s=round(episodes / seconds, 3),
                steps_per_s=round(writer.steps / seconds, 1),
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            )
            writer.finish(
                {
                    "task": task,
                    "domain": domain,
                    "kind": kind,
                    "has_success": has_success,
                    "collection": settings,
                }
            )
    finally:
        env.close()
        bars.remove_task(bar)
    return dataset_info(name, data_dir)


__all__ = [
    "EPISODES_PER_WRITE",
    "collect",
    "episode_seed",
    "expert_weights_path",
    "is_noisy_episode",
    "noise_generator",
    "noisy_action",
    "resolve_tasks",
    "rollout_episode",
    "sac_expert",
]
