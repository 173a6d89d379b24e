"""Task sequences: the registry (CW10, CW20, MT40, DMC10, DMC6), custom lists, YAML files.

A `TaskSequence` knows its tasks, which one is being trained, the spaces every task shows
the agent (identical for all tasks, padded when they differ), and builds the env of any of
its tasks, for training or for evaluating earlier tasks.

YAML format (every key but ``tasks`` optional)::

    name: my-sequence
    steps_per_task: 100000        # default budget of each task
    repeats: 2                    # the task list is run this many times
    tasks:
      - hammer                    # a task name, or
      - {task: push-wall, steps: 50000}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import yaml

from crlgym.envs.goal_mask import split_masked_name
from crlgym.envs.make import EnvConfig, make_env
from crlgym.envs.padding import PaddedEnv, PaddedLayout, TaskIdEnv, build_layout
from crlgym.envs.tasks import (
    CW10,
    METAWORLD_TASKS,
    all_tasks,
    canonical_task_name,
    resolve_task,
    unknown_name_message,
)
from crlgym.errors import (
    ConfigError,
    SequenceFileError,
    SpaceMismatchError,
    UnknownSequenceError,
    UnknownTaskError,
)

# CW10 lives in envs.tasks (which names its goal-masked versions) and is re-exported here.

#: L2M's DMControl pretraining tasks.
DMC10: tuple[str, ...] = (
    "cartpole-balance", "finger-turn_easy", "finger-turn_hard", "fish-upright",
    "hopper-stand", "pendulum-swingup", "point_mass-easy", "reacher-hard", "walker-stand",
    "walker-run",
)  # fmt: skip
#: L2M's DMControl fine-tuning tasks.
DMC6: tuple[str, ...] = (
    "ball_in_cup-catch", "cartpole-swingup", "cheetah-run", "finger-spin", "reacher-hard",
    "walker-walk",
)  # fmt: skip

SEQUENCES: dict[str, tuple[str, ...]] = {
    "CW10": CW10,
    "CW20": CW10 + CW10,
    "MT40": tuple(t for t in METAWORLD_TASKS if t not in CW10),
    "DMC10": DMC10,
    "DMC6": DMC6,
}
SEQUENCE_DESCRIPTIONS: dict[str, str] = {
    "CW10": "Continual World: 10 Meta-World tasks (Wolczyk et al. 2021)",
    "CW20": "CW10 twice, to measure forgetting and transfer on revisits",
    "MT40": "Meta-World MT50 minus CW10 (L2M's Meta-World pretraining tasks)",
    "DMC10": "L2M's 10 DMControl pretraining tasks",
    "DMC6": "L2M's 6 DMControl fine-tuning tasks",
}


@dataclass(frozen=True)
class SequenceTask:
    """One entry of a sequence: a canonical task name and its step budget (None = default)."""

    task: str
    steps: int | None = None


class TaskSequence:
    """An ordered list of tasks that all present the same spaces to the agent.

    Args:
        name: display name (``CW10``, a file stem, ...).
        tasks: task names or `SequenceTask` entries, in training order.
        config: how every task env is built (episode length, rendering, one-hot id, padding).
        steps_per_task: budget of entries that do not set their own.

    Raises:
        UnknownTaskError: a task name is unknown (the message lists the closest names).
        SpaceMismatchError: tasks differ in spaces and ``config.padding == "never"``.
    """

    def __init__(
        self,
        name: str,
        tasks: Iterable[str | SequenceTask],
        config: EnvConfig | None = None,
        steps_per_task: int | None = None,
    ) -> None:
        entries = [t if isinstance(t, SequenceTask) else SequenceTask(t) for t in tasks]
        if not entries:
            raise UnknownSequenceError(f"sequence '{name}' has no tasks")
        if steps_per_task is not None and steps_per_task <= 0:
            raise ConfigError(f"steps per task must be positive, got {steps_per_task}")
        self.name = name
        self.tasks: tuple[SequenceTask, ...] = tuple(
            SequenceTask(canonical_task_name(e.task), e.steps or steps_per_task) for e in entries
        )
        self.config = config or EnvConfig()
        self.layout: PaddedLayout | None = self._choose_layout()
        observation_space, self.action_space = (
            (self.layout.observation_space, self.layout.action_space)
            if self.layout
            else native_spaces(self.task_names[0])
        )
        if self.config.one_hot_task_id:
            observation_space = TaskIdEnv.extend_space(observation_space, self.num_tasks)
        self.observation_space = observation_space

    # -- what the sequence is -------------------------------------------------------------
    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.task for t in self.tasks)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def steps_for(self, index: int, default: int) -> int:
        """Step budget of task ``index``: its own, else ``default``."""
        return self.tasks[index].steps or default

    def __len__(self) -> int:
        return self.num_tasks

    def __repr__(self) -> str:
        return f"TaskSequence({self.name!r}, {list(self.task_names)!r})"

    # -- building envs --------------------------------------------------------------------
    def make_env(
        self, index: int, *, seed: int | None = None, render_mode: str | None = None
    ) -> gym.Env:
        """The env of task ``index`` as the agent sees it (padded / with task id if set).

        ``render_mode`` overrides the sequence's config (e.g. a video env for evaluation).
        """
        config = self.config
        if render_mode is not None and render_mode != config.render_mode:
            config = EnvConfig(**{**config.__dict__, "render_mode": render_mode})
        task = self.tasks[index].task
        env = make_env(task, config, seed=seed)
        if self.layout is not None:
            env = PaddedEnv(env, task, self.layout)
        if self.config.one_hot_task_id:
            env = TaskIdEnv(env, index, self.num_tasks)
        if env.observation_space != self.observation_space or (
            env.action_space != self.action_space
        ):
            env.close()
            raise SpaceMismatchError(
                f"{task} built with observation {env.observation_space} / action "
                f"{env.action_space}, but the sequence expects {self.observation_space} / "
                f"{self.action_space}; regenerate envs/data/dmc_specs.json "
                "(python -m crlgym.envs.dmc_specs)."
            )
        return env

    def _choose_layout(self) -> PaddedLayout | None:
        padding = self.config.padding
        if padding == "always":
            return build_layout(list(self.task_names))
        # Grouped by exact spaces: tasks that differ only in bounds (a goal-masked Meta-World
        # task next to a plain one) cannot share one space either.
        groups: dict[tuple[Any, ...], list[str]] = {}
        descriptions: dict[tuple[Any, ...], str] = {}
        for task in dict.fromkeys(self.task_names):
            observation, action = native_spaces(task)
            key = _space_key(observation, action)
            groups.setdefault(key, []).append(task)
            descriptions[key] = describe_spaces(observation, action)
        if len(groups) == 1:
            return None
        if padding == "never":
            shared = [d for d in descriptions.values() if list(descriptions.values()).count(d) > 1]
            lines = "; ".join(
                f"{', '.join(ts)}: {descriptions[key]}"
                + (" (other bounds)" if descriptions[key] in shared else "")
                for key, ts in groups.items()
            )
            raise SpaceMismatchError(
                f"the tasks of sequence '{self.name}' present different spaces ({lines}). "
                "Use padding 'auto' or 'always' (--padding auto) to share one padded space."
            )
        return build_layout(list(self.task_names))

    # -- saving ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A YAML-ready description that `load_sequence` reads back to the same tasks."""
        tasks: list[Any] = [
            {"task": t.task, "steps": t.steps} if t.steps else t.task for t in self.tasks
        ]
        return {"name": self.name, "tasks": tasks}

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def native_spaces(task: str) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    """A task's own observation and action spaces, without building it (its family's
    `TaskFamily.spaces`)."""
    name, family = resolve_task(task)
    return family.spaces(name)


def _space_key(observation: gym.spaces.Box, action: gym.spaces.Box) -> tuple[Any, ...]:
    return tuple(
        part
        for space in (observation, action)
        for part in (space.shape, space.low.tobytes(), space.high.tobytes())
    )


def describe_spaces(observation: gym.spaces.Box, action: gym.spaces.Box) -> str:
    bounds = "" if np.all(np.isinf(observation.low)) else f" bounded {observation.low.min():.2f}.."
    return f"observation {observation.shape}{bounds}, action {action.shape}"


def _is_file(text: str) -> bool:
    """Whether ``text`` names an existing file; a long task list is no path at all (the OS
    refuses names over its limit instead of answering no)."""
    try:
        return Path(text).is_file()
    except OSError:
        return False


def load_sequence(
    spec: str | Sequence[str],
    config: EnvConfig | None = None,
    *,
    steps_per_task: int | None = None,
) -> TaskSequence:
    """Build a sequence from a registered name, ``a,b,c``, a task name or a YAML file.

    Args:
        spec: ``"CW10"`` (case-insensitive), ``"hammer,push-wall"``, ``"hammer"``,
            ``"path/to/sequence.yaml"``, or a list of task names.
        config: env options for every task.
        steps_per_task: budget for tasks that do not set their own.
    """
    if not isinstance(spec, str):
        return TaskSequence("custom", spec, config, steps_per_task)
    text = spec.strip()
    registered = {k.lower(): k for k in SEQUENCES}
    if text.lower() in registered:
        key = registered[text.lower()]
        return TaskSequence(key, SEQUENCES[key], config, steps_per_task)
    if text.endswith((".yaml", ".yml")) or _is_file(text):
        return load_sequence_file(text, config, steps_per_task=steps_per_task)
    if "," in text:
        names = [p.strip() for p in text.split(",")]
        if not all(names):
            raise UnknownSequenceError(
                f"sequence '{text}' has an empty task name; remove the extra comma"
            )
        return TaskSequence(text, names, config, steps_per_task)
    try:
        return TaskSequence(text, [text], config, steps_per_task)
    except UnknownTaskError as error:
        if text.startswith("recall") or split_masked_name(text) is not None:
            # Clearly meant as a task of a parsed family: its own message says what is wrong.
            raise UnknownSequenceError(str(error)) from None
        valid = tuple(SEQUENCES) + all_tasks()
        raise UnknownSequenceError(
            unknown_name_message("sequence or task", text, valid, "crl list")
        ) from None


def load_sequence_file(
    path: str | Path, config: EnvConfig | None = None, *, steps_per_task: int | None = None
) -> TaskSequence:
    """Read a YAML sequence file; errors name the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise SequenceFileError(f"sequence file {path} does not exist")
    try:
        root = yaml.compose(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(error, "problem", error)
        raise SequenceFileError(f"{where}: not valid YAML ({problem})") from None
    if not isinstance(root, yaml.MappingNode):
        line = root.start_mark.line + 1 if root else 1
        raise SequenceFileError(f"{path}:{line}: expected a mapping with a 'tasks' list")
    fields = {key.value: value for key, value in root.value}

    def fail(node: yaml.Node, message: str) -> SequenceFileError:
        return SequenceFileError(f"{path}:{node.start_mark.line + 1}: {message}")

    def positive_int(node: yaml.Node, field: str) -> int:
        value = yaml.safe_load(yaml.serialize(node))
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise fail(node, f"'{field}' must be a positive integer, got {node.value!r}")
        return value

    allowed = {"name", "tasks", "steps_per_task", "repeats"}
    for key, _ in root.value:
        if key.value not in allowed:
            raise fail(key, f"unknown field '{key.value}' (allowed: {', '.join(sorted(allowed))})")
    if "tasks" not in fields:
        raise fail(root, "missing field 'tasks' (a list of task names)")
    tasks_node = fields["tasks"]
    if not isinstance(tasks_node, yaml.SequenceNode) or not tasks_node.value:
        raise fail(tasks_node, "'tasks' must be a non-empty list of task names")
    default_steps = (
        positive_int(fields["steps_per_task"], "steps_per_task")
        if ("steps_per_task" in fields)
        else steps_per_task
    )
    repeats = positive_int(fields["repeats"], "repeats") if "repeats" in fields else 1
    entries: list[SequenceTask] = []
    for item in tasks_node.value:
        if isinstance(item, yaml.ScalarNode):
            name, steps = item.value, None
        elif isinstance(item, yaml.MappingNode):
            item_fields = {k.value: v for k, v in item.value}
            extra = set(item_fields) - {"task", "steps"}
            if "task" not in item_fields or extra:
                raise fail(item, "a task entry is a name or {task: NAME, steps: N}")
            name = item_fields["task"].value
            steps = positive_int(item_fields["steps"], "steps") if "steps" in item_fields else None
        else:
            raise fail(item, "a task entry is a name or {task: NAME, steps: N}")
        try:
            canonical = canonical_task_name(str(name))
        except UnknownTaskError as error:
            raise fail(item, str(error)) from None
        entries.append(SequenceTask(canonical, steps))
    name_node = fields.get("name")
    name = str(name_node.value) if name_node is not None else path.stem
    return TaskSequence(name, entries * repeats, config, default_steps)
