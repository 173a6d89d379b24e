"""The record of one training run: ``runs/<name>/results.json``, typed.

The runner writes it (:meth:`RunResults.write`, at every evaluation and at the end); the
report, the figures and the runner's search for forward-transfer references read it
(:func:`read`, :func:`load_run`). No other code parses results.json.

The JSON object holds, in this order::

    name, method, seed, sequence, tasks, steps_per_task, task_ends, eval_steps,
    score {stochastic, deterministic}, return {stochastic, deterministic}, reference_auc,
    single_task_auc, metrics, finished, wall_time_s, eval_time_s, videos, agent, step_unit,
    ...agent-specific entries (the learner's: plasticity, pretrain_retention, l2m_mode, ...)

``score`` and ``return`` are ``(evaluations, tasks)`` matrices: row ``e`` is the evaluation
after ``eval_steps[e]`` steps. ``task_ends[i]`` is the step at which task ``i`` ended; while
a run is training it lists only the tasks finished so far (:func:`read` with
``partial=True`` accepts such a record). Only ``name`` ... ``eval_steps`` and
``score.stochastic`` are required; the others may be absent from hand-made records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from crlgym.errors import CrlgymError
from crlgym.experiments.metrics import EvalMatrix

__all__ = [
    "RESULTS_FILE",
    "PolicyScores",
    "PretrainRetention",
    "ResultsError",
    "RunResults",
    "load_run",
    "read",
]

FloatArray = npt.NDArray[np.float64]

RESULTS_FILE = "results.json"
#: The runner's step units: SAC counts env steps, offline DT/L2M gradient updates.
STEP_UNITS = ("env steps", "updates")
_REQUIRED_KEYS = ("name", "method", "seed", "sequence", "tasks", "task_ends", "eval_steps")
#: Every key of :class:`RunResults` itself; any other key is an agent-specific entry.
_RECORD_KEYS = frozenset(
    {
        *_REQUIRED_KEYS,
        "steps_per_task",
        "score",
        "return",
        "reference_auc",
        "single_task_auc",
        "metrics",
        "finished",
        "wall_time_s",
        "eval_time_s",
        "videos",
        "agent",
        "step_unit",
    }
)


class ResultsError(CrlgymError):
    """A missing or corrupt results.json (the message names the file and what to do)."""


def _read_only(rows: object, shape: tuple[int, int]) -> FloatArray:
    array = np.array(rows, dtype=np.float64).reshape(shape)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class PolicyScores:
    """One ``(evaluations, tasks)`` matrix per policy mode: ``score`` or ``return``.

    ``deterministic`` is None when the record has none (e.g. a hand-made one).
    """

    stochastic: FloatArray
    deterministic: FloatArray | None = None

    def to_json(self) -> dict[str, Any]:
        deterministic = None if self.deterministic is None else self.deterministic.tolist()
        return {"stochastic": self.stochastic.tolist(), "deterministic": deterministic}

    @classmethod
    def from_rows(
        cls,
        stochastic: Sequence[Sequence[float]],
        deterministic: Sequence[Sequence[float]] | None,
        shape: tuple[int, int],
    ) -> PolicyScores:
        """From nested lists (e.g. an :class:`~crlgym.experiments.evaluation.EvalHistory`)."""
        return cls(
            _read_only(stochastic, shape),
            None if deterministic is None else _read_only(deterministic, shape),
        )


@dataclass(frozen=True, eq=False)
class PretrainRetention:
    """Scores of an L2M run on pretraining tasks it never fine-tuned on: row ``e`` of
    ``score`` and ``returns`` is the evaluation after ``steps[e]`` updates (row 0: the
    pretrained model, before the first task)."""

    tasks: tuple[str, ...]
    steps: tuple[int, ...]
    score: FloatArray
    """(evaluations, tasks) success rate (Meta-World) or normalized score (DMControl)."""
    returns: FloatArray
    """(evaluations, tasks) mean episode return."""

    @property
    def return_ratio(self) -> float | None:
        """Summed return at the last evaluation over the summed return before fine-tuning
        (None when the latter is not positive)."""
        before, after = float(self.returns[0].sum()), float(self.returns[-1].sum())
        return after / before if before > 0 else None


@dataclass(frozen=True, eq=False)
class RunResults:
    """The contents of one run's results.json (see the module docstring).

    ``metrics`` is the summary the run computed (``None`` when not recorded, ``{}`` before
    its first task ended); the report recomputes every metric from :attr:`matrix` instead.
    ``finished`` is the runner's flag for its final write. ``agent_results`` are the
    learner's agent-specific entries, kept as JSON and written verbatim after the others
    (an entry named like a field, e.g. ``agent``, replaces that field's value); the typed
    :attr:`plasticity` and :attr:`retention` are read from them. ``path`` is the file the
    record was read from (None for one built in memory).
    """

    name: str
    method: str
    seed: int
    sequence: str
    tasks: tuple[str, ...]
    task_ends: tuple[int, ...]
    eval_steps: tuple[int, ...]
    score: PolicyScores
    returns: PolicyScores | None = None
    steps_per_task: tuple[int, ...] | None = None
    reference_auc: tuple[float | None, ...] | None = None
    single_task_auc: float | None = None
    metrics: Mapping[str, float | None] | None = None
    finished: bool = False
    wall_time_s: float | None = None
    eval_time_s: float | None = None
    videos: tuple[str, ...] = ()
    agent: str | None = None
    step_unit: str = "env steps"
    agent_results: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    path: Path | None = None

    # -- derived ------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        """The run directory the record was read from (``.`` for one built in memory)."""
        return Path(".") if self.path is None else self.path.parent

    @property
    def evaluated_to_end(self) -> bool:
        """Whether the run was evaluated at the end of its sequence (what reports call
        finished: a record can be complete before the runner sets :attr:`finished`)."""
        ends, steps = self.task_ends, self.eval_steps
        return len(ends) == len(self.tasks) and bool(steps) and steps[-1] == ends[-1]

    @cached_property
    def matrix(self) -> EvalMatrix:
        """The :class:`EvalMatrix` of the stochastic scores, from which metrics are computed.

        Raises:
            ValueError: if a task has no end yet (a partial record) or the steps are invalid.
        """
        return EvalMatrix(self.score.stochastic, self.eval_steps, self.task_ends)

    @cached_property
    def plasticity(self) -> Mapping[str, Any] | None:
        """The run's plasticity record (metrics, resets, replay-ratio switches), if it has
        metrics."""
        plasticity = self.agent_results.get("plasticity")
        if not isinstance(plasticity, Mapping) or not plasticity.get("metrics"):
            return None
        return plasticity

    @cached_property
    def retention(self) -> PretrainRetention | None:
        """How an L2M run scored on a sample of its pretraining tasks before fine-tuning and
        at every task end (``crl train --agent l2m --pretrain-eval-tasks N``), if measured.

        Raises:
            ResultsError: if the ``pretrain_retention`` entry is malformed.
        """
        return _retention(self.agent_results, _Check(self.path))

    # -- writing ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The JSON object of results.json, keys in the documented order."""
        data: dict[str, Any] = {
            "name": self.name,
            "method": self.method,
            "seed": self.seed,
            "sequence": self.sequence,
            "tasks": list(self.tasks),
            "steps_per_task": None if self.steps_per_task is None else list(self.steps_per_task),
            "task_ends": list(self.task_ends),
            "eval_steps": list(self.eval_steps),
            "score": self.score.to_json(),
            "return": None if self.returns is None else self.returns.to_json(),
            "reference_auc": None if self.reference_auc is None else list(self.reference_auc),
            "single_task_auc": self.single_task_auc,
            "metrics": None if self.metrics is None else dict(self.metrics),
            "finished": self.finished,
            "wall_time_s": self.wall_time_s,
            "eval_time_s": self.eval_time_s,
            "videos": list(self.videos),
            "agent": self.agent,
            "step_unit": self.step_unit,
        }
        data.update(self.agent_results)
        return data

    def write(self, path: Path) -> Path:
        """Write the record to ``path`` atomically (temp file, then rename); returns path."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(tmp, path)
        return path

    # -- reading ------------------------------------------------------------------------------
    @classmethod
    def from_json(
        cls, data: object, path: Path | None = None, *, partial: bool = False
    ) -> RunResults:
        """Validate a parsed results.json object; see :func:`read`."""
        return _parse(data, _Check(path), partial=partial)


# ------------------------------------------------------------------------------------------------
# Reading and validation
# ------------------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Check:
    """Reads fields of one results.json, raising :class:`ResultsError` naming the file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def fail(self, problem: str) -> ResultsError:
        where = "results record" if self.path is None else str(self.path)
        return ResultsError(
            f"{where} is corrupt: {problem}. Re-run the training run that wrote it, or "
            f"leave this directory out of the report"
        )

    def string(self, data: Mapping[str, Any], key: str) -> str:
        value = data[key]
        if not isinstance(value, str) or not value:
            raise self.fail(f"'{key}' must be a non-empty string, got {value!r}")
        return value

    def int_list(
        self, data: Mapping[str, Any], key: str, length: int | None = None
    ) -> tuple[int, ...]:
        value = data[key]
        if not isinstance(value, list) or not all(_is_int(v) for v in value):
            raise self.fail(f"'{key}' must be a list of integers")
        if length is not None and len(value) != length:
            raise self.fail(f"'{key}' has {len(value)} entries, expected {length}")
        return tuple(value)

    def optional_number(self, data: Mapping[str, Any], key: str) -> float | None:
        value = data.get(key)
        if value is None:
            return None
        if not _is_number(value):
            raise self.fail(f"'{key}' must be a number or null, got {value!r}")
        return float(value)

    def matrix(
        self, parent: Mapping[str, Any], key: str, shape: tuple[int, int], where: str
    ) -> FloatArray:
        rows = parent[key]
        n_evals, n_tasks = shape
        name = f"'{where}.{key}'"
        if not isinstance(rows, list) or len(rows) != n_evals:
            found = f"{len(rows)} rows" if isinstance(rows, list) else type(rows).__name__
            raise self.fail(f"{name} must have one row per evaluation ({n_evals}), got {found}")
        for index, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != n_tasks:
                raise self.fail(f"{name}[{index}] must hold one number per task ({n_tasks})")
            if not all(_is_number(v) for v in row):
                raise self.fail(f"{name}[{index}] must contain only numbers")
        return _read_only(rows, shape)

    def policy_scores(
        self, data: Mapping[str, Any], key: str, shape: tuple[int, int]
    ) -> PolicyScores:
        scores = data[key]
        if not isinstance(scores, dict) or "stochastic" not in scores:
            raise self.fail(f"'{key}' must be an object with a 'stochastic' matrix")
        stochastic = self.matrix(scores, "stochastic", shape, key)
        deterministic = None
        if scores.get("deterministic") is not None:
            deterministic = self.matrix(scores, "deterministic", shape, key)
        return PolicyScores(stochastic, deterministic)


def _retention(entries: Mapping[str, Any], check: _Check) -> PretrainRetention | None:
    """The validated ``pretrain_retention`` entry, or None when absent or empty (no
    pretraining tasks were evaluated)."""
    record = entries.get("pretrain_retention")
    if record is None or (isinstance(record, dict) and not record.get("tasks")):
        return None
    if not isinstance(record, dict) or not all(
        key in record for key in ("tasks", "steps", "score", "return")
    ):
        raise check.fail("'pretrain_retention' must hold 'tasks', 'steps', 'score' and 'return'")
    tasks = record["tasks"]
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise check.fail("'pretrain_retention.tasks' must be a list of task names")
    steps = check.int_list(record, "steps")
    if not steps:
        return None  # declared, not evaluated yet
    shape = (len(steps), len(tasks))
    return PretrainRetention(
        tasks=tuple(tasks),
        steps=steps,
        score=check.matrix(record, "score", shape, "pretrain_retention"),
        returns=check.matrix(record, "return", shape, "pretrain_retention"),
    )


def _parse(data: object, check: _Check, *, partial: bool) -> RunResults:
    if not isinstance(data, dict):
        raise check.fail(f"expected a JSON object at the top level, got {type(data).__name__}")
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    score = data.get("score")
    if not isinstance(score, dict) or "stochastic" not in score:
        missing.append("score.stochastic")
    if missing:
        raise check.fail(f"missing key(s) {', '.join(repr(k) for k in missing)}")

    if not _is_int(data["seed"]):
        raise check.fail(f"'seed' must be an integer, got {data['seed']!r}")
    tasks = data["tasks"]
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise check.fail("'tasks' must be a non-empty list of task names")
    task_ends = check.int_list(data, "task_ends", length=None if partial else len(tasks))
    if len(task_ends) > len(tasks):
        raise check.fail(f"'task_ends' has {len(task_ends)} entries, expected {len(tasks)}")
    eval_steps = check.int_list(data, "eval_steps")
    if not eval_steps:
        raise check.fail("'eval_steps' is empty: the run has not been evaluated yet")
    shape = (len(eval_steps), len(tasks))
    scores = check.policy_scores(data, "score", shape)
    returns = None if data.get("return") is None else check.policy_scores(data, "return", shape)

    reference_auc = data.get("reference_auc")
    if reference_auc is not None:
        if not isinstance(reference_auc, list) or len(reference_auc) != len(tasks):
            raise check.fail(f"'reference_auc' must be null or a list of {len(tasks)} entries")
        if not all(ref is None or _is_number(ref) for ref in reference_auc):
            raise check.fail("'reference_auc' entries must be numbers or null")
        reference_auc = tuple(None if ref is None else float(ref) for ref in reference_auc)
    metrics = data.get("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        raise check.fail(f"'metrics' must be an object or null, got {type(metrics).__name__}")
    steps_per_task = None
    if data.get("steps_per_task") is not None:
        steps_per_task = check.int_list(data, "steps_per_task", length=len(tasks))
    videos = data.get("videos") or []
    if not isinstance(videos, list) or not all(isinstance(v, str) for v in videos):
        raise check.fail("'videos' must be a list of paths")
    finished = data.get("finished", False)
    if not isinstance(finished, bool):
        raise check.fail(f"'finished' must be true or false, got {finished!r}")
    agent = data.get("agent")
    if agent is not None and not isinstance(agent, str):
        raise check.fail(f"'agent' must be a string or null, got {agent!r}")

    results = RunResults(
        name=check.string(data, "name"),
        method=check.string(data, "method"),
        seed=data["seed"],
        sequence=check.string(data, "sequence"),
        tasks=tuple(tasks),
        task_ends=task_ends,
        eval_steps=eval_steps,
        score=scores,
        returns=returns,
        steps_per_task=steps_per_task,
        reference_auc=reference_auc,
        single_task_auc=check.optional_number(data, "single_task_auc"),
        metrics=None if metrics is None else MappingProxyType(metrics),
        finished=finished,
        wall_time_s=check.optional_number(data, "wall_time_s"),
        eval_time_s=check.optional_number(data, "eval_time_s"),
        videos=tuple(videos),
        agent=agent,
        step_unit="updates" if data.get("step_unit") == "updates" else "env steps",
        agent_results=MappingProxyType({k: v for k, v in data.items() if k not in _RECORD_KEYS}),
        path=check.path,
    )
    if len(task_ends) == len(tasks):
        try:
            results.matrix  # noqa: B018 - validates the steps now, not at first use
        except ValueError as error:
            raise check.fail(str(error)) from None
    results.retention  # noqa: B018 - validates the entry now, not at first use
    return results


def read(path: Path, *, partial: bool = False) -> RunResults:
    """Read and validate the results.json at ``path``.

    ``partial``: accept a record written while the run is training, whose ``task_ends``
    list only the tasks finished so far (by default every task must have ended).

    Raises:
        ResultsError: if the file cannot be read, is not valid JSON, lacks a required key, or
            has values of the wrong type or shape; the message names the file and what to do.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ResultsError(f"{path} is not UTF-8 text ({error}); re-run the training run") from None
    except OSError as error:
        raise ResultsError(f"cannot read {path} ({error.strerror or error})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultsError(
            f"{path} is not valid JSON ({error}); the run may have been interrupted while "
            f"writing it. Re-run it, or leave this directory out of the report"
        ) from None
    return RunResults.from_json(data, path, partial=partial)


def load_run(run_dir: Path) -> RunResults:
    """Read and validate ``run_dir/results.json`` of a run directory (see :func:`read`).

    Raises:
        ResultsError: if the directory or its results.json is missing or corrupt.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is not a directory" if run_dir.exists() else "does not exist"
        raise ResultsError(
            f"run directory {run_dir} {what}; pass directories written by a training run, "
            f"e.g. runs/<name>/"
        )
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        raise ResultsError(
            f"{run_dir} has no {RESULTS_FILE}; a run writes it at its first evaluation. Check "
            f"the path (it should be runs/<name>/) or wait until the run has evaluated once"
        )
    return read(path)
