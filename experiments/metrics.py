"""Continual-RL evaluation metrics (pure functions, numpy only).

Data model
----------
A run over a sequence of ``T`` tasks is described by an :class:`EvalMatrix`:

``success``
    float array of shape ``(E, T)``: ``success[e, j]`` is the success rate (in ``[0, 1]``; for
    DMControl a normalized score) of task ``j`` at evaluation ``e``. Evaluations are taken
    during the whole sequence, on every task (seen and unseen).
``eval_steps``
    int array of shape ``(E,)``: global environment step at which evaluation ``e`` was taken
    (non-decreasing, ``>= 0``, at most the end of the sequence).
``task_ends``
    int array of shape ``(T,)``: global environment step at which training of task ``i`` ends
    (strictly increasing, positive). Task ``i`` trains on steps
    ``[task_starts[i], task_ends[i])`` with ``task_starts = [0, task_ends[0], ...,
    task_ends[T-2]]``; ``task_ends[-1]`` is the end of the sequence.

An evaluation at step ``s`` belongs to the *training window* of task ``i`` if
``task_starts[i] < s <= task_ends[i]``: an evaluation taken exactly at a task end counts as the
end of that task, and an evaluation at step 0 (before any training) belongs to no window. The
task *being trained* at an evaluation is the task whose window contains it (task 0 for an
evaluation at step 0).

Metrics
-------
Continual World (Wolczyk et al., 2021):

* ``final`` value of task ``j`` at step ``s`` (``window = 5``): the mean success of task ``j``
  over the last ``window`` evaluations taken at steps ``<= s`` *inside the training window
  that contains* ``s``, i.e. at steps in ``(task_starts[k], s]`` with ``k`` the task whose
  window contains ``s`` (fewer than ``window`` if the window holds fewer; the latest
  evaluation alone if it holds none, see "own evaluation" below). Continual World's code
  takes the last 5 rows of the evaluation log instead; the two agree whenever the window
  holds at least ``window`` evaluations, e.g. under Continual World's schedule (1M steps per
  task, an evaluation every 20k steps: 50 per window). With sparse evaluations (one per task
  end) the last five rows would reach back into earlier tasks and mix in values from before
  task ``j`` was trained; the windowed definition does not.
* average performance: mean over tasks of the final value at the end of the sequence (the
  last evaluation, which must lie in the last task's training window).
* forgetting ``F_i = final_i(task_ends[i]) - final_i(end of sequence)``; the mean is over all
  ``T`` tasks (the last task has ``F = 0`` by construction), as in the paper.
* forward transfer ``FT_i = (AUC_i - AUC_i^b) / (1 - AUC_i^b)`` where ``AUC_i`` is the mean
  success of task ``i`` over the evaluations in its own training window (a discrete estimate
  of the normalized area under the curve for equally spaced evaluations) and ``AUC_i^b`` is the
  same quantity for a single-task reference run trained from scratch with the same budget.

Own evaluation. A task *has an own evaluation* if at least one evaluation lies in its
training window ``(task_starts[i], task_ends[i]]`` (:func:`tasks_without_own_evaluation`
lists those that do not). A value measured before a task was trained says nothing about how
well it was learned, so every metric that needs a task's own-window value leaves that task
out instead of reading an earlier evaluation: its forgetting and forward transfer are
``None`` (means over the other tasks). If the *last* task has no own evaluation, the end
of the sequence was never evaluated, and average performance, every task's forgetting and
the final WC-ACC are ``None``. (The runner evaluates at every task end, so its runs always
have own evaluations; this guards hand-made or imported matrices.)

Stability gap / continual evaluation (De Lange et al., 2023):

* min-ACC: mean over earlier tasks of the minimum success observed after they finished
  training, over the earlier tasks that have an evaluation after their end (as De Lange
  et al.'s code, which averages what it has); ``None`` when none has.
* WC-ACC: ``(1/k) * A(current task) + (1 - 1/k) * min-ACC``.
* windowed forgetting ``WF^w`` of task ``i``: largest drop ``A(m) - A(n)``, ``m < n``, within
  any window of ``w`` consecutive evaluations, counting only evaluations taken after task
  ``i``'s training started (steps ``> task_starts[i]``): a drop of a task not yet trained is
  not forgetting (De Lange et al.'s code skips unseen tasks, ``skip_unseen_tasks=True``; it
  also counts task 0's pre-update evaluation at step 0, which here is left out like every
  evaluation before training). ``None`` for a task with no such evaluation; the run's value
  is the mean over the other tasks.

Plus a percentile bootstrap confidence interval over seeds (:func:`bootstrap_ci`) and
:func:`summarize`, which gathers the scalar summaries in a JSON-serializable dict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "EvalMatrix",
    "ForgettingResult",
    "ForwardTransferResult",
    "WindowedForgettingResult",
    "auc_in_own_window",
    "average_performance",
    "bootstrap_ci",
    "final_value",
    "forgetting",
    "forward_transfer",
    "min_acc_at",
    "min_acc_final",
    "summarize",
    "tasks_without_own_evaluation",
    "training_task_at",
    "wc_acc_at",
    "wc_acc_final",
    "windowed_forgetting",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Forward-transfer references per task: a mapping task -> AUC, or one entry per task (a
#: sequence or array); None or NaN marks a task without a reference.
ReferenceAUC = Mapping[int, float | None] | Sequence[float | None] | npt.NDArray[np.floating] | None

#: ``1 - AUC^b`` at or below this value means the reference run is already perfect.
PERFECT_REFERENCE_TOL: float = 1e-12


def _as_int_array(values: npt.ArrayLike, name: str) -> IntArray:
    """Convert ``values`` to a read-only 1-D int64 array, rejecting non-integral numbers."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind not in "f" and arr.size > 0:
            raise ValueError(f"{name} must contain integers, got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must contain integer step counts")
    out = np.array(arr, dtype=np.int64)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False, init=False)
class EvalMatrix:
    """Evaluation results of one run; see the module docstring for the data model.

    Inputs are copied into read-only numpy arrays (``success`` as float64, steps as int64), so
    plain lists are accepted too.

    Raises:
        ValueError: on bad shapes, non-finite success values, decreasing ``eval_steps``,
            non-increasing or non-positive ``task_ends``, or evaluations outside
            ``[0, task_ends[-1]]``.
    """

    success: FloatArray
    eval_steps: IntArray
    task_ends: IntArray

    def __init__(
        self, success: npt.ArrayLike, eval_steps: npt.ArrayLike, task_ends: npt.ArrayLike
    ) -> None:
        """Coerce the inputs to read-only arrays and validate them."""
        success = np.array(success, dtype=np.float64)
        if success.ndim != 2:
            raise ValueError(f"success must be 2-D with shape (E, T), got shape {success.shape}")
        n_evals, n_tasks = success.shape
        if n_evals < 1 or n_tasks < 1:
            raise ValueError(
                f"success needs at least one evaluation and one task, got {success.shape}"
            )
        if not np.all(np.isfinite(success)):
            raise ValueError("success must contain only finite values")
        success.setflags(write=False)

        eval_steps = _as_int_array(eval_steps, "eval_steps")
        if eval_steps.shape != (n_evals,):
            raise ValueError(
                f"eval_steps must have shape ({n_evals},) to match success {success.shape}, "
                f"got {eval_steps.shape}"
            )
        task_ends = _as_int_array(task_ends, "task_ends")
        if task_ends.shape != (n_tasks,):
            raise ValueError(
                f"task_ends must have shape ({n_tasks},) to match success {success.shape}, "
                f"got {task_ends.shape}"
            )
        if np.any(np.diff(eval_steps) < 0):
            bad = int(np.argmax(np.diff(eval_steps) < 0))
            raise ValueError(
                f"eval_steps must be non-decreasing, but eval_steps[{bad + 1}]="
                f"{eval_steps[bad + 1]} < eval_steps[{bad}]={eval_steps[bad]}"
            )
        if eval_steps[0] < 0:
            raise ValueError(f"eval_steps must be >= 0, got {eval_steps[0]}")
        if task_ends[0] <= 0:
            raise ValueError(f"task_ends[0] must be > 0 (task 0 starts at 0), got {task_ends[0]}")
        if np.any(np.diff(task_ends) <= 0):
            bad = int(np.argmax(np.diff(task_ends) <= 0))
            raise ValueError(
                f"task_ends must be strictly increasing, but task_ends[{bad + 1}]="
                f"{task_ends[bad + 1]} <= task_ends[{bad}]={task_ends[bad]}"
            )
        if eval_steps[-1] > task_ends[-1]:
            raise ValueError(
                f"evaluation at step {eval_steps[-1]} lies after the end of the sequence "
                f"(task_ends[-1]={task_ends[-1]})"
            )
        object.__setattr__(self, "success", success)
        object.__setattr__(self, "eval_steps", eval_steps)
        object.__setattr__(self, "task_ends", task_ends)

    @property
    def n_evals(self) -> int:
        """Number of evaluations ``E``."""
        return int(self.success.shape[0])

    @property
    def n_tasks(self) -> int:
        """Number of tasks ``T``."""
        return int(self.success.shape[1])

    @property
    def task_starts(self) -> IntArray:
        """Global step at which each task starts training: ``[0, task_ends[:-1]...]``."""
        return np.concatenate(([0], self.task_ends[:-1])).astype(np.int64)


@dataclass(frozen=True)
class ForgettingResult:
    """Continual World forgetting: per task (``None`` = unavailable, see the module doc) and
    the ``mean`` over the available tasks (``None`` if none)."""

    mean: float | None
    per_task: tuple[float | None, ...]


@dataclass(frozen=True)
class ForwardTransferResult:
    """Forward transfer per task (``None`` = no reference) and mean over available tasks."""

    mean: float | None
    per_task: tuple[float | None, ...]


@dataclass(frozen=True)
class WindowedForgettingResult:
    """Windowed forgetting ``WF^w``: per task (``None`` for a task with no evaluation after
    its training started), and its max and mean over the other tasks (``None`` if none)."""

    window: int
    max: float | None
    mean: float | None
    per_task: tuple[float | None, ...]


def _check_window(window: int) -> None:
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")


def _check_task(m: EvalMatrix, task: int) -> None:
    if not 0 <= task < m.n_tasks:
        raise ValueError(f"task must be in [0, {m.n_tasks}), got {task}")


def _eval_index(m: EvalMatrix, eval_index: int) -> int:
    """Normalize a (possibly negative) evaluation index, raising if out of range."""
    if not -m.n_evals <= eval_index < m.n_evals:
        raise ValueError(f"eval_index must be in [{-m.n_evals}, {m.n_evals}), got {eval_index}")
    return eval_index % m.n_evals


def training_task_at(m: EvalMatrix, eval_index: int) -> int:
    """0-based task being trained at evaluation ``eval_index``.

    That is the task ``i`` with ``task_starts[i] < step <= task_ends[i]``; task 0 for an
    evaluation at step 0.
    """
    step = m.eval_steps[_eval_index(m, eval_index)]
    return int(np.searchsorted(m.task_ends, step, side="left"))


def _own_window_mask(m: EvalMatrix, task: int) -> npt.NDArray[np.bool_]:
    """Evaluations in the training window ``(task_starts[task], task_ends[task]]``."""
    start, end = int(m.task_starts[task]), int(m.task_ends[task])
    return (m.eval_steps > start) & (m.eval_steps <= end)


def tasks_without_own_evaluation(m: EvalMatrix) -> tuple[int, ...]:
    """0-based tasks with no evaluation inside their own training window (the module doc).

    Their forgetting and forward transfer are unavailable; if the last task is among them, so
    are average performance, all forgetting values and the final WC-ACC.
    """
    return tuple(i for i in range(m.n_tasks) if not np.any(_own_window_mask(m, i)))


def _end_evaluated(m: EvalMatrix) -> bool:
    """Whether the last evaluation lies in the last task's window (the end was evaluated)."""
    return bool(m.eval_steps[-1] > m.task_starts[-1])


def _final_rows(m: EvalMatrix, step: int, window: int) -> slice:
    """The evaluations a final value at ``step`` averages: the last ``window`` at steps
    ``<= step`` inside the training window containing ``step`` (at least the latest one)."""
    end = int(np.searchsorted(m.eval_steps, step, side="right"))
    if end == 0:
        raise ValueError(f"no evaluation at or before step {step} (first is {m.eval_steps[0]})")
    containing = int(np.searchsorted(m.task_ends, step, side="left"))
    window_start = int(m.task_starts[min(containing, m.n_tasks - 1)]) if step > 0 else 0
    first_inside = int(np.searchsorted(m.eval_steps, window_start, side="right"))
    return slice(min(max(end - window, first_inside), end - 1), end)


def final_value(m: EvalMatrix, task: int, step: int, window: int = 5) -> float:
    """Mean success of ``task`` over the last ``window`` evaluations taken at steps ``<= step``
    inside the training window that contains ``step`` (the module doc).

    Fewer evaluations are averaged if fewer exist.

    Raises:
        ValueError: if no evaluation was taken at or before ``step``.
    """
    _check_window(window)
    _check_task(m, task)
    return float(np.mean(m.success[_final_rows(m, step, window), task]))


def _end_rows(m: EvalMatrix, window: int) -> slice:
    """The evaluations "the end of the sequence" averages (see `_final_rows`)."""
    return _final_rows(m, int(m.eval_steps[-1]), window)


def average_performance(m: EvalMatrix, window: int = 5) -> float | None:
    """Mean over tasks of the final success at the end of the sequence (last ``window`` evals
    inside the last training window); ``None`` if the last task has no own evaluation (the
    end of the sequence was never evaluated)."""
    _check_window(window)
    if not _end_evaluated(m):
        return None
    return float(np.mean(m.success[_end_rows(m, window), :]))


def forgetting(m: EvalMatrix, window: int = 5) -> ForgettingResult:
    """Continual World forgetting.

    ``F_i = final_i(task_ends[i]) - final_i(end of sequence)``, where "end of sequence" means
    the last ``window`` evaluations of the run. Positive values mean performance was lost. The
    mean is over all ``T`` tasks (the last task contributes ``F = 0`` when the run reaches the
    end of the sequence), leaving out tasks with ``F_i = None``: a task without an evaluation
    in its own training window (:func:`tasks_without_own_evaluation`), or every task when the
    last one has none (the end of the sequence was never evaluated).
    """
    _check_window(window)
    lacking = set(tasks_without_own_evaluation(m))
    per_task: list[float | None] = [None] * m.n_tasks
    if _end_evaluated(m):
        end_final = np.mean(m.success[_end_rows(m, window), :], axis=0)
        for i in range(m.n_tasks):
            if i not in lacking:
                own = final_value(m, i, int(m.task_ends[i]), window)
                per_task[i] = own - float(end_final[i])
    available = [f for f in per_task if f is not None]
    mean = float(np.mean(available)) if available else None
    return ForgettingResult(mean=mean, per_task=tuple(per_task))


def auc_in_own_window(m: EvalMatrix, task: int) -> float:
    """Mean success of ``task`` over the evaluations in its own training window.

    Uses evaluations with ``task_starts[task] < step <= task_ends[task]`` (the evaluation at
    step 0 is excluded: it measures the untrained policy). For a single-task reference run
    (``T = 1``) call ``auc_in_own_window(reference, 0)`` to obtain ``AUC^b``.

    Raises:
        ValueError: if no evaluation lies inside the task's training window.
    """
    _check_task(m, task)
    start, end = int(m.task_starts[task]), int(m.task_ends[task])
    mask = _own_window_mask(m, task)
    if not np.any(mask):
        raise ValueError(
            f"no evaluation inside the training window ({start}, {end}] of task {task}"
        )
    return float(np.mean(m.success[mask, task]))


def _reference_list(reference_auc: ReferenceAUC, n_tasks: int) -> list[float | None]:
    """Turn any accepted reference format into a length-``n_tasks`` list (``None`` = missing)."""
    if reference_auc is None:
        return [None] * n_tasks
    if isinstance(reference_auc, Mapping):
        refs: list[float | None] = [None] * n_tasks
        for key, value in reference_auc.items():
            if not 0 <= int(key) < n_tasks:
                raise ValueError(f"reference_auc has task {key}, outside [0, {n_tasks})")
            refs[int(key)] = value
    else:
        refs = list(reference_auc)
        if len(refs) != n_tasks:
            raise ValueError(f"reference_auc has {len(refs)} entries, expected {n_tasks}")
    out: list[float | None] = []
    for ref in refs:
        if ref is None or math.isnan(float(ref)):
            out.append(None)
        elif math.isinf(float(ref)):
            raise ValueError(f"reference AUC must be finite, got {ref}")
        else:
            out.append(float(ref))
    return out


def forward_transfer(
    m: EvalMatrix,
    reference_auc: ReferenceAUC = None,
) -> ForwardTransferResult:
    """Continual World forward transfer ``FT_i = (AUC_i - AUC_i^b) / (1 - AUC_i^b)``.

    ``AUC_i`` is :func:`auc_in_own_window` of this run, ``AUC_i^b`` the same for a single-task
    reference run from scratch with the same budget, given as a mapping ``task -> AUC^b`` or a
    length-``T`` sequence. A task without reference (missing key, ``None`` or NaN) or without
    an evaluation in its own training window (:func:`tasks_without_own_evaluation`) gets
    ``FT_i = None`` (unavailable, not zero); the mean is over available tasks, ``None`` if none.

    Perfect-reference rule: if ``1 - AUC_i^b <= PERFECT_REFERENCE_TOL`` the normalization is
    undefined (no room to improve), and ``FT_i = AUC_i - AUC_i^b`` is used instead, i.e. the
    unnormalized difference: ``0`` when the continual learner is perfect as well and negative,
    in ``[-1, 0]``, by exactly the shortfall otherwise. This never rewards and never blows up.
    """
    refs = _reference_list(reference_auc, m.n_tasks)
    lacking = set(tasks_without_own_evaluation(m))
    per_task: list[float | None] = []
    for task, ref in enumerate(refs):
        if ref is None or task in lacking:
            per_task.append(None)
            continue
        auc = auc_in_own_window(m, task)
        headroom = 1.0 - ref
        if headroom <= PERFECT_REFERENCE_TOL:
            per_task.append(auc - ref)
        else:
            per_task.append((auc - ref) / headroom)
    available = [ft for ft in per_task if ft is not None]
    mean = float(np.mean(available)) if available else None
    return ForwardTransferResult(mean=mean, per_task=tuple(per_task))


def _min_acc(m: EvalMatrix, tasks: range, step: int) -> float | None:
    """Mean over ``tasks`` of their minimum success over evals in ``(task_ends[i], step]``,
    over the tasks that have such an evaluation (``None`` if none has)."""
    minima: list[float] = []
    for i in tasks:
        mask = (m.eval_steps > m.task_ends[i]) & (m.eval_steps <= step)
        if np.any(mask):
            minima.append(float(np.min(m.success[mask, i])))
    return float(np.mean(minima)) if minima else None


def min_acc_at(m: EvalMatrix, eval_index: int) -> float | None:
    """min-ACC "now", at evaluation ``eval_index`` (De Lange et al., 2023).

    With ``k`` the 0-based task being trained at that evaluation (:func:`training_task_at`), the
    mean over earlier tasks ``i < k`` of the minimum success of task ``i`` over all evaluations
    with ``task_ends[i] < step <= current step``, averaged over the earlier tasks that have
    such an evaluation (as De Lange et al.'s code). ``None`` while no earlier task has one.
    """
    e = _eval_index(m, eval_index)
    k = training_task_at(m, e)
    return _min_acc(m, range(k), int(m.eval_steps[e]))


def min_acc_final(m: EvalMatrix) -> float | None:
    """min-ACC at the end of the run over tasks ``0 .. T-2``.

    Averaged over those of tasks ``0 .. T-2`` that have an evaluation after their training
    ended; ``None`` if ``T == 1`` or none has.
    """
    return _min_acc(m, range(m.n_tasks - 1), int(m.eval_steps[-1]))


def wc_acc_at(m: EvalMatrix, eval_index: int) -> float:
    """Worst-case accuracy at evaluation ``eval_index`` (De Lange et al., 2023).

    ``WC-ACC = (1/k) * A(current task, now) + (1 - 1/k) * min-ACC`` with ``k`` the 1-based
    number of the task being trained; for ``k = 1`` this is the current accuracy.
    """
    e = _eval_index(m, eval_index)
    task = training_task_at(m, e)
    current = float(m.success[e, task])
    min_acc = min_acc_at(m, e)
    if min_acc is None:  # only when task == 0
        return current
    k = task + 1
    return current / k + (1.0 - 1.0 / k) * min_acc


def wc_acc_final(m: EvalMatrix) -> float | None:
    """WC-ACC at the end of the run.

    Uses the last success of the last task with ``k = T`` and :func:`min_acc_final`; ``None``
    where min-ACC is undefined (for ``T > 1``) or the last task has no own evaluation (the
    last evaluation would then measure it before it was trained).
    """
    if not _end_evaluated(m):
        return None
    current = float(m.success[-1, -1])
    if m.n_tasks == 1:
        return current
    min_acc = min_acc_final(m)
    if min_acc is None:
        return None
    k = m.n_tasks
    return current / k + (1.0 - 1.0 / k) * min_acc


def windowed_forgetting(m: EvalMatrix, w: int = 10) -> WindowedForgettingResult:
    """Windowed forgetting ``WF^w`` (De Lange et al., 2023).

    For each task ``i``, only the evaluations taken after its training started count (steps
    ``> task_starts[i]``; see the module doc): the maximum over all windows of ``w``
    consecutive evaluations among them (one window of all of them if fewer than ``w``) of the
    largest drop ``A(a) - A(b)`` with ``a < b`` inside the window; ``0`` if it never drops (or
    only one evaluation counts), ``None`` if none counts. Equivalently the largest
    ``A(a) - A(b)`` with ``0 < b - a <= w - 1`` among the counted evaluations. Also returns
    max and mean over the tasks with a value (``None`` if none has).
    """
    if w < 2:
        raise ValueError(f"w must be >= 2 (a window needs two evaluations), got {w}")
    per_task: list[float | None] = []
    for i in range(m.n_tasks):
        seen = m.success[m.eval_steps > m.task_starts[i], i]
        if seen.size == 0:
            per_task.append(None)
            continue
        largest = 0.0
        for lag in range(1, min(w, seen.size)):
            largest = max(largest, float(np.max(seen[:-lag] - seen[lag:])))
        per_task.append(largest)
    available = [v for v in per_task if v is not None]
    return WindowedForgettingResult(
        window=w,
        max=max(available) if available else None,
        mean=float(np.mean(available)) if available else None,
        per_task=tuple(per_task),
    )


def bootstrap_ci(
    values: Sequence[float], confidence: float = 0.9, resamples: int = 4000, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile bootstrap CI of the mean, e.g. over seeds: ``(mean, low, high)``.

    Resamples ``values`` with replacement ``resamples`` times using
    ``numpy.random.default_rng(seed)`` (so results are reproducible) and takes the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled means.
    A single value ``v`` gives ``(v, v, v)``.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("values must be a non-empty 1-D sequence")
    if not np.all(np.isfinite(arr)):
        raise ValueError("values must be finite")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    mean = float(arr.mean())
    if arr.size == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(resamples, arr.size))
    means = arr[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return mean, float(low), float(high)


def summarize(
    m: EvalMatrix,
    reference_auc: ReferenceAUC = None,
    window: int = 5,
) -> dict[str, float | None]:
    """All scalar summaries of a run as plain, JSON-serializable floats / ``None``.

    Keys: ``performance`` (:func:`average_performance`), ``forgetting`` (mean),
    ``forward_transfer`` (mean over tasks with a reference, else ``None``), ``min_acc``
    (:func:`min_acc_final`), ``wc_acc`` (:func:`wc_acc_final`), ``wf10`` and ``wf100`` (mean
    over tasks of :func:`windowed_forgetting` with ``w = 10`` and ``w = 100``). Which tasks
    lack an own evaluation (and so are left out of some of these) is
    :func:`tasks_without_own_evaluation`.
    """
    return {
        "performance": average_performance(m, window),
        "forgetting": forgetting(m, window).mean,
        "forward_transfer": forward_transfer(m, reference_auc).mean,
        "min_acc": min_acc_final(m),
        "wc_acc": wc_acc_final(m),
        "wf10": windowed_forgetting(m, 10).mean,
        "wf100": windowed_forgetting(m, 100).mean,
    }
