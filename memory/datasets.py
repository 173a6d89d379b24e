"""Offline datasets of crlgym tasks, stored as Minari datasets (HDF5), and their samplers.

A dataset holds the episodes of one task collected by one kind of policy; its id is
``crlgym/<task>/<kind>-v0`` (``crlgym/reach-v3/expert-v0``), and it lives in
``<data_dir>/crlgym/<task>/<kind>-v0/data/`` (``main_data.hdf5`` + ``metadata.json``), the
layout Minari itself uses, so ``MINARI_DATASETS_PATH=<data_dir> minari list local`` and
``minari.load_dataset`` see the same datasets. The data directory defaults to
``data/datasets`` under the current directory, never ``~/.minari``.

Every episode stores, Minari style, ``observations`` (T+1 rows: the reset observation and
every next observation), ``actions``, ``rewards``, ``terminations``, ``truncations`` (T
rows) and ``infos["success"]`` (T+1 rows, row 0 for the reset); its attributes hold the
env seed, the return, whether it succeeded and the action noise it was collected with.
The dataset metadata holds the task, its domain, the kind, and the collection settings
(``metadata["collection"]``).

For training, `load_episodes` reads a dataset into RAM once, as plain numpy arrays with
returns-to-go and timesteps added, and `sample_segments` draws reproducible fixed-length
windows (Decision Transformer batches) from them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from crlgym.envs.tasks import canonical_task_name
from crlgym.errors import ConfigError, CrlgymError

if TYPE_CHECKING:
    import gymnasium as gym
    from gymnasium.envs.registration import EnvSpec
    from minari import MinariDataset

#: Namespace of every crlgym dataset id.
NAMESPACE = "crlgym"
#: Where datasets live unless told otherwise (relative to the current directory).
DEFAULT_DATA_DIR = Path("data/datasets")
#: The kind of data `crl collect` records by default.
DEFAULT_KIND = "expert"
#: Version suffix of the dataset ids crlgym writes.
DATASET_VERSION = 0

_KIND_RE = re.compile(r"[a-z0-9_]+(?:-[a-z0-9_]+)*")
_STAGING_PREFIX = ".staging-"

__all__ = [
    "DATASET_VERSION",
    "DEFAULT_DATA_DIR",
    "DEFAULT_KIND",
    "NAMESPACE",
    "DatasetExistsError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DatasetWriter",
    "dataset_exists",
    "dataset_id",
    "dataset_info",
    "dataset_path",
    "list_datasets",
    "load_dataset",
    "load_episodes",
    "load_task_dataset",
    "minari_datasets_path",
    "require_datasets",
    "resolve_data_dir",
    "resolve_dataset_id",
    "returns_to_go",
    "sample_segments",
]


class DatasetNotFoundError(CrlgymError, FileNotFoundError):
    """A dataset that is not in the data directory; the message says how to collect it."""


class DatasetExistsError(CrlgymError, FileExistsError):
    """A dataset that would be overwritten without ``overwrite=True``."""


# -- names and places -------------------------------------------------------------------------


def dataset_id(task: str, kind: str = DEFAULT_KIND, version: int = DATASET_VERSION) -> str:
    """The Minari id of a task's dataset: ``crlgym/<canonical task>/<kind>-v<version>``.

    Raises:
        UnknownTaskError: the task name is unknown.
        ConfigError: ``kind`` is not lowercase words joined by ``-``.
    """
    if not _KIND_RE.fullmatch(kind) or re.search(r"-v\d+$", kind):
        raise ConfigError(
            f"dataset kind '{kind}' must be lowercase letters, digits and '_' joined by '-' "
            "(e.g. expert, medium-replay), without a -v<N> suffix"
        )
    return f"{NAMESPACE}/{canonical_task_name(task)}/{kind}-v{version}"


def resolve_dataset_id(name: str, kind: str = DEFAULT_KIND) -> str:
    """A dataset id from a task name (``reach``) or a full dataset id (kept as given)."""
    name = name.strip()
    if "/" not in name:
        return dataset_id(name, kind)
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(name)
    except ValueError:
        raise ConfigError(
            f"'{name}' is neither a task name nor a dataset id like "
            f"{NAMESPACE}/reach-v3/{DEFAULT_KIND}-v{DATASET_VERSION}"
        ) from None
    return name


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data directory as an absolute path (default `DEFAULT_DATA_DIR` under the cwd)."""
    return Path(DEFAULT_DATA_DIR if data_dir is None else data_dir).expanduser().absolute()


def dataset_path(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Folder of a dataset (task name or dataset id); Minari's files are in its ``data/``."""
    return resolve_data_dir(data_dir) / resolve_dataset_id(name)


def dataset_exists(name: str, data_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether a dataset (task name or dataset id) is in the data directory."""
    return (dataset_path(name, data_dir) / "data" / "metadata.json").is_file()


def require_datasets(
    tasks: Iterable[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    episodes: int | None = None,
) -> None:
    """Refuse, in one line, tasks whose dataset is not in the data directory.

    Args:
        tasks: task names (repeats are named once).
        data_dir: where to look (default `DEFAULT_DATA_DIR`).
        episodes: put ``--episodes N`` in the suggested ``crl collect`` command.

    Raises:
        ConfigError: some datasets are missing; the message names them and the ``crl
            collect`` command that records them.
    """
    missing = [task for task in dict.fromkeys(tasks) if not dataset_exists(task, data_dir)]
    if missing:
        where = DEFAULT_DATA_DIR if data_dir is None else data_dir
        count = "" if episodes is None else f" --episodes {episodes}"
        raise ConfigError(
            f"no offline dataset for {', '.join(missing)} in {where}; record them with "
            f"'crl collect --tasks {','.join(missing)}{count} --data-dir {where}'"
        )


@contextmanager
def minari_datasets_path(data_dir: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Point Minari's functions (``minari.load_dataset``, ``list_local_datasets``, ...) at a
    data directory for the duration of the block; the previous value comes back after.

    Minari reads ``MINARI_DATASETS_PATH`` on every call and falls back to ``~/.minari``,
    so crlgym sets it only around its own Minari calls instead of for the whole process.
    """
    root = resolve_data_dir(data_dir)
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield root
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


# -- loading ----------------------------------------------------------------------------------


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> MinariDataset:
    """Open a dataset by task name (kind ``expert``) or dataset id.

    Raises:
        DatasetNotFoundError: not collected yet (the message gives the ``crl collect`` line).
    """
    from minari import MinariDataset

    path = dataset_path(name, data_dir)
    if not (path / "data" / "metadata.json").is_file():
        root = resolve_data_dir(data_dir)
        task = resolve_dataset_id(name).split("/")[1]
        raise DatasetNotFoundError(
            f"no dataset {resolve_dataset_id(name)} in {root}; record it with "
            f"'crl collect --tasks {task} --data-dir {root}' (or list what is there with "
            f"'crl data list --data-dir {root}')"
        )
    return MinariDataset(path / "data")


def load_task_dataset(
    task: str, data_dir: str | os.PathLike[str] | None = None, kind: str = DEFAULT_KIND
) -> MinariDataset:
    """Open the dataset of ``kind`` recorded for ``task`` (any spelling of the task name)."""
    return load_dataset(dataset_id(task, kind), data_dir)


def list_datasets(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Ids of every Minari dataset in the data directory, sorted (empty if it is missing)."""
    root = resolve_data_dir(data_dir)
    if not root.is_dir():
        return []
    from minari import list_local_datasets

    with minari_datasets_path(root):
        return list(list_local_datasets())


def returns_to_go(rewards: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """``rtg[t] = sum_{k >= t} gamma^(k-t) r_k`` (undiscounted by default, as in the DT)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if gamma == 1.0:
        return np.cumsum(rewards[::-1])[::-1].copy()
    out = np.empty_like(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def _open(source: MinariDataset | str, data_dir: str | os.PathLike[str] | None) -> MinariDataset:
    return load_dataset(source, data_dir) if isinstance(source, str) else source


def load_episodes(
    source: MinariDataset | str,
    data_dir: str | os.PathLike[str] | None = None,
    episode_indices: Iterable[int] | None = None,
) -> list[dict[str, Any]]:
    """Read episodes into RAM as numpy arrays (load once, then sample many batches).

    Args:
        source: an open `MinariDataset`, a task name or a dataset id.
        data_dir: where to look when ``source`` is a name.
        episode_indices: which episodes (default: all, in order).

    Returns:
        One dict per episode of length T: ``observations`` (T+1, obs_dim) float32,
        ``actions`` (T, act_dim) float32, ``rewards`` (T,) float64, ``returns_to_go``
        (T,) float64, ``timesteps`` (T,) int64, ``terminations``, ``truncations``,
        ``success`` (T,) bool (success after each step), plus ``id``, ``task``, ``seed``,
        ``return``, ``noise_std`` (NaN when not recorded) and ``noisy``.
    """
    dataset = _open(source, data_dir)
    indices = (
        np.asarray(dataset.episode_indices)
        if episode_indices is None
        else np.asarray(list(episode_indices), dtype=np.int64)
    )
    task = str(dataset.storage.metadata.get("task", dataset.id.split("/")[-2]))
    metadata = list(dataset.storage.get_episode_metadata(indices))
    episodes: list[dict[str, Any]] = []
    for data, attrs in zip(dataset.iterate_episodes(indices), metadata, strict=True):
        rewards = np.asarray(data.rewards, dtype=np.float64)
        steps = len(rewards)
        infos = data.infos or {}
        success = (
            np.asarray(infos["success"], dtype=bool)[1:]
            if "success" in infos
            else np.zeros(steps, dtype=bool)
        )
        episodes.append(
            {
                "id": int(data.id),
                "task": task,
                "seed": attrs.get("seed"),
                "observations": np.asarray(data.observations, dtype=np.float32),
                "actions": np.asarray(data.actions, dtype=np.float32),
                "rewards": rewards,
                "returns_to_go": returns_to_go(rewards),
                "timesteps": np.arange(steps, dtype=np.int64),
                "terminations": np.asarray(data.terminations, dtype=bool),
                "truncations": np.asarray(data.truncations, dtype=bool),
                "success": success,
                "return": float(rewards.sum()),
                "noise_std": float(attrs.get("noise_std", np.nan)),
                "noisy": bool(attrs.get("noisy", False)),
            }
        )
    return episodes


# -- sampling ---------------------------------------------------------------------------------

#: Per-step arrays that `sample_segments` cuts windows from.
_SEGMENT_KEYS = ("actions", "rewards", "returns_to_go", "terminations", "truncations", "success")


def sample_segments(
    source: MinariDataset | str | Sequence[Mapping[str, Any]],
    batch_size: int,
    length: int,
    rng: np.random.Generator | int | None = None,
    *,
    pad: Literal["left", "right"] = "left",
) -> dict[str, np.ndarray]:
    """A batch of ``length``-step windows for sequence models (Decision Transformer).

    Every timestep of every episode is an equally likely window start (so episodes are
    drawn in proportion to their length, as in the DT paper); a window that runs past its
    episode's end is shorter and padded with zeros, ``mask`` 0 there. Left padding (the
    default) keeps the last position real, which a causal model predicts from.

    Args:
        source: episodes from `load_episodes` (fast: sample many batches from one load), or
            a `MinariDataset`, task name or dataset id (read in full on every call).
        batch_size: windows per batch.
        length: steps per window (the context length).
        rng: a numpy Generator or a seed; the same seed gives the same batch.
        pad: where the padding of short windows goes.

    Returns:
        ``observations`` (B, L, obs_dim) float32, ``actions`` (B, L, act_dim) float32,
        ``rewards``, ``returns_to_go`` (B, L) float64, ``timesteps`` (B, L) int64,
        ``mask`` (B, L) float32, ``terminations``, ``truncations``, ``success`` (B, L) bool,
        ``episode`` (B,) index into ``source`` and ``start`` (B,) first step of the window.
    """
    if batch_size <= 0 or length <= 0:
        raise ConfigError(f"batch_size and length must be positive, got {batch_size}, {length}")
    if pad not in ("left", "right"):
        raise ConfigError(f"pad must be 'left' or 'right', got {pad!r}")
    episodes: Sequence[Mapping[str, Any]] = (
        cast("Sequence[Mapping[str, Any]]", source)  # episodes, not a dataset or its name
        if isinstance(source, Sequence) and not isinstance(source, str)
        else load_episodes(source)
    )
    if not episodes:
        raise ConfigError("cannot sample segments from zero episodes")
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    lengths = np.array([len(e["rewards"]) for e in episodes], dtype=np.int64)
    obs_shapes = {np.shape(e["observations"])[1:] for e in episodes}
    act_shapes = {np.shape(e["actions"])[1:] for e in episodes}
    if len(obs_shapes) > 1 or len(act_shapes) > 1:
        raise ConfigError(
            f"episodes differ in observation {sorted(obs_shapes)} or action "
            f"{sorted(act_shapes)} shapes; pad them to one space first"
        )
    ends = np.cumsum(lengths)
    flat = generator.integers(0, int(ends[-1]), size=batch_size)
    chosen = np.searchsorted(ends, flat, side="right")
    starts = flat - (ends[chosen] - lengths[chosen])

    (obs_shape,), (act_shape,) = obs_shapes, act_shapes
    batch: dict[str, np.ndarray] = {
        "observations": np.zeros((batch_size, length, *obs_shape), dtype=np.float32),
        "actions": np.zeros((batch_size, length, *act_shape), dtype=np.float32),
        "rewards": np.zeros((batch_size, length), dtype=np.float64),
        "returns_to_go": np.zeros((batch_size, length), dtype=np.float64),
        "timesteps": np.zeros((batch_size, length), dtype=np.int64),
        "mask": np.zeros((batch_size, length), dtype=np.float32),
        "terminations": np.zeros((batch_size, length), dtype=bool),
        "truncations": np.zeros((batch_size, length), dtype=bool),
        "success": np.zeros((batch_size, length), dtype=bool),
    }
    for row, (index, start) in enumerate(zip(chosen, starts, strict=True)):
        episode = episodes[int(index)]
        stop = min(int(start) + length, int(lengths[index]))
        n = stop - int(start)
        where = slice(length - n, length) if pad == "left" else slice(0, n)
        window = slice(int(start), stop)
        batch["observations"][row, where] = episode["observations"][window]
        for key in _SEGMENT_KEYS:
            if key == "returns_to_go" and key not in episode:
                values = returns_to_go(episode["rewards"])[window]
            elif key == "success" and key not in episode:
                continue
            else:
                values = np.asarray(episode[key])[window]
            batch[key][row, where] = values
        batch["timesteps"][row, where] = np.arange(int(start), stop)
        batch["mask"][row, where] = 1.0
    batch["episode"] = chosen.astype(np.int64)
    batch["start"] = starts.astype(np.int64)
    return batch


# -- summaries --------------------------------------------------------------------------------


@dataclass
class DatasetInfo:
    """What a dataset holds; `dataset_info` builds it."""

    dataset_id: str
    task: str
    kind: str
    path: Path
    episodes: int
    steps: int
    return_mean: float
    return_std: float
    return_min: float
    return_max: float
    success_rate: float | None
    """Share of episodes with a success at any step; None for tasks without success."""
    noisy_episodes: int
    """Episodes collected with the larger action noise (``noisy_noise``)."""
    observation_space: str
    action_space: str
    size_bytes: int
    collection: dict[str, Any] = field(default_factory=dict)
    """The settings the data was collected with (seed, noise, expert, timings...)."""

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path)}


def dataset_info(
    source: MinariDataset | str, data_dir: str | os.PathLike[str] | None = None
) -> DatasetInfo:
    """Episodes, steps, return statistics, success rate, spaces and collection settings.

    Reads per-episode attributes where crlgym wrote them and the rewards otherwise, so it
    also describes Minari datasets that other tools wrote.
    """
    dataset = _open(source, data_dir)
    metadata = dataset.storage.metadata
    indices = np.asarray(dataset.episode_indices)
    attrs = list(dataset.storage.get_episode_metadata(indices))
    if attrs and all("return" in a for a in attrs):
        returns = np.array([float(a["return"]) for a in attrs])
        flags = [a.get("success") for a in attrs]
    else:
        totals: list[float] = []
        flags = []
        for episode in dataset.iterate_episodes(indices):
            totals.append(float(np.sum(episode.rewards)))
            infos = episode.infos or {}
            flags.append(bool(np.any(infos["success"])) if "success" in infos else None)
        returns = np.asarray(totals, dtype=np.float64)
    collection = dict(metadata.get("collection", {}))
    has_success = bool(metadata.get("has_success", any(f is not None for f in flags)))
    success_rate = float(np.mean([bool(f) for f in flags])) if has_success and len(flags) else None
    noisy = sum(1 for a in attrs if bool(a.get("noisy", False)))
    data_path = Path(dataset.storage.data_path)
    size = sum(f.stat().st_size for f in data_path.rglob("*") if f.is_file())
    empty = len(returns) == 0
    return DatasetInfo(
        dataset_id=dataset.id,
        task=str(metadata.get("task", dataset.id.split("/")[-2])),
        kind=str(metadata.get("kind", dataset.spec.dataset_name)),
        path=data_path.parent,
        episodes=int(dataset.total_episodes),
        steps=int(dataset.total_steps),
        return_mean=float("nan") if empty else float(returns.mean()),
        return_std=float("nan") if empty else float(returns.std()),
        return_min=float("nan") if empty else float(returns.min()),
        return_max=float("nan") if empty else float(returns.max()),
        success_rate=success_rate,
        noisy_episodes=noisy,
        observation_space=_describe_space(dataset.observation_space),
        action_space=_describe_space(dataset.action_space),
        size_bytes=size,
        collection=collection,
    )


def _describe_space(space: gym.Space) -> str:
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        low, high = float(np.min(space.low)), float(np.max(space.high))
        return f"Box{tuple(space.shape)} {space.dtype} in [{low:g}, {high:g}]"
    return str(space)


# -- writing ----------------------------------------------------------------------------------


class DatasetWriter:
    """Writes one dataset episode by episode; it appears under its id only when finished.

    Episodes go to a hidden staging folder inside the data directory (in batches of
    ``flush_every``, so RAM holds a batch, not the dataset); `finish` moves the complete
    dataset into place, replacing an old one only then, so an interrupted collection
    leaves the previous dataset (or none) rather than half a dataset. Use it as a context
    manager: an exception discards the staging folder.

    Args:
        dataset_id: ``crlgym/<task>/<kind>-v0`` (see `dataset_id`).
        data_dir: the data directory.
        observation_space, action_space: the spaces of the stored data.
        env_spec: the gymnasium spec that rebuilds the env (``dataset.recover_environment()``).
        overwrite: replace an existing dataset; otherwise `DatasetExistsError` right away.
        flush_every: episodes kept in RAM before they are written.
        description, algorithm_name, requirements, ref_min_score, ref_max_score: Minari's
            dataset metadata (reference scores feed ``minari.get_normalized_score``).
    """

    def __init__(
        self,
        dataset_id: str,
        data_dir: str | os.PathLike[str] | None,
        *,
        observation_space: gym.Space,
        action_space: gym.Space,
        env_spec: EnvSpec | None = None,
        overwrite: bool = False,
        flush_every: int = 50,
        description: str | None = None,
        algorithm_name: str | None = None,
        requirements: list[str] | None = None,
        ref_min_score: float | None = None,
        ref_max_score: float | None = None,
    ) -> None:
        self.dataset_id = resolve_dataset_id(dataset_id)
        self.root = resolve_data_dir(data_dir)
        self.final_path = self.root / self.dataset_id
        if (self.final_path / "data").exists() and not overwrite:
            raise DatasetExistsError(
                f"dataset {self.dataset_id} already exists in {self.root}; pass --overwrite "
                "to replace it"
            )
        self.overwrite = overwrite
        self.flush_every = max(1, flush_every)
        self._spaces = (observation_space, action_space)
        self._env_spec = env_spec
        self._create_kwargs = {
            "description": description,
            "algorithm_name": algorithm_name,
            "requirements": requirements,
            "ref_min_score": ref_min_score,
            "ref_max_score": ref_max_score,
        }
        self._pending: list[Any] = []
        self._pending_metadata: list[dict[str, Any]] = []
        self._dataset: MinariDataset | None = None
        self.episodes = 0
        self.steps = 0
        created_root = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        if created_root:
            # Datasets reach gigabytes: keep a fresh data directory out of version control.
            (self.root / ".gitignore").write_text("*\n")
        self.staging = self.root / f"{_STAGING_PREFIX}{secrets.token_hex(4)}"
        self.staging.mkdir()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self.abort()

    def add_episode(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminations: np.ndarray,
        truncations: np.ndarray,
        success: np.ndarray,
        *,
        seed: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue one episode of T steps (``observations`` has T+1 rows, ``success`` T).

        ``metadata`` (scalars and strings) becomes the episode's HDF5 attributes.
        """
        from minari.data_collector import EpisodeBuffer

        steps = len(rewards)
        if len(observations) != steps + 1 or not (
            len(actions) == len(terminations) == len(truncations) == len(success) == steps
        ):
            raise ValueError(
                f"episode arrays disagree: {len(observations)} observations (want T+1), "
                f"{len(actions)} actions, {steps} rewards, {len(success)} success flags"
            )
        self._pending.append(
            EpisodeBuffer(
                seed=seed,
                observations=np.asarray(observations),
                actions=np.asarray(actions),
                rewards=np.asarray(rewards, dtype=np.float64),
                terminations=np.asarray(terminations, dtype=bool),
                truncations=np.asarray(truncations, dtype=bool),
                # Minari aligns infos with observations: row 0 belongs to the reset.
                infos={"success": np.concatenate([[False], np.asarray(success, dtype=bool)])},
            )
        )
        self._pending_metadata.append(dict(metadata or {}))
        self.episodes += 1
        self.steps += steps
        if len(self._pending) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write the queued episodes to the staging dataset."""
        if not self._pending:
            return
        first = 0 if self._dataset is None else self._dataset.total_episodes
        if self._dataset is None:
            import minari

            observation_space, action_space = self._spaces
            with minari_datasets_path(self.staging), warnings.catch_warnings():
                # Minari nags about optional metadata (author e-mail), and building the env
                # for its spec trips gymnasium's checker on unbounded spaces: not defects.
                warnings.simplefilter("ignore")
                self._dataset = minari.create_dataset_from_buffers(
                    self.dataset_id,
                    self._pending,
                    env=self._env_spec,
                    eval_env=self._env_spec,
                    observation_space=observation_space,
                    action_space=action_space,
                    author="crlgym",
                    code_permalink="crlgym: experiments/collect.py",
                    **self._create_kwargs,
                )
        else:
            self._dataset.update_dataset_from_buffer(self._pending)
        indices = range(first, first + len(self._pending))
        self._dataset.storage.update_episode_metadata(self._pending_metadata, indices)
        self._pending, self._pending_metadata = [], []

    def finish(self, metadata: Mapping[str, Any] | None = None) -> MinariDataset:
        """Write what is queued, add ``metadata`` to the dataset's, and move it into place."""
        from minari import MinariDataset

        if self.episodes == 0:
            raise ConfigError(f"dataset {self.dataset_id} has no episodes")
        self.flush()
        assert self._dataset is not None
        if metadata:
            self._dataset.storage.update_metadata(json.loads(json.dumps(dict(metadata))))
        staged = self.staging / self.dataset_id
        self.final_path.parent.mkdir(parents=True, exist_ok=True)
        if self.final_path.exists():
            # Swap, then delete: the old dataset is gone only once the new one is in place.
            os.replace(self.final_path, self.staging / "replaced")
        os.replace(staged, self.final_path)
        self._copy_namespace_metadata()
        shutil.rmtree(self.staging, ignore_errors=True)
        return MinariDataset(self.final_path / "data")

    def abort(self) -> None:
        """Discard everything written so far (an existing dataset stays as it was)."""
        shutil.rmtree(self.staging, ignore_errors=True)

    def _copy_namespace_metadata(self) -> None:
        # Minari marks namespaces with a namespace_metadata.json in each level's folder.
        parts = self.dataset_id.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            relative = Path(*parts[:depth]) / "namespace_metadata.json"
            source, target = self.staging / relative, self.root / relative
            if source.is_file() and not target.is_file():
                shutil.copyfile(source, target)
