"""Tests for experiments.metrics against small hand-computed matrices."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from crlgym.experiments.metrics import (
    EvalMatrix,
    ForgettingResult,
    auc_in_own_window,
    average_performance,
    bootstrap_ci,
    final_value,
    forgetting,
    forward_transfer,
    min_acc_at,
    min_acc_final,
    summarize,
    tasks_without_own_evaluation,
    training_task_at,
    wc_acc_at,
    wc_acc_final,
    windowed_forgetting,
)

# The 3-task example used throughout. Tasks train on steps [0,10), [10,20), [20,30):
#
#   e  step | task0 task1 task2 | trained task (window task_start < s <= task_end)
#   0     0 |  0.0   0.0   0.0  | 0 (step 0: before training, in no window)
#   1     5 |  0.5   0.0   0.1  | 0
#   2    10 |  0.9   0.1   0.0  | 0 (end of task 0)
#   3    15 |  0.6   0.5   0.2  | 1
#   4    20 |  0.4   0.9   0.3  | 1 (end of task 1)
#   5    25 |  0.7   0.3   0.6  | 2
#   6    30 |  0.5   0.2   1.0  | 2 (end of task 2 = end of sequence)
SUCCESS = [
    [0.0, 0.0, 0.0],
    [0.5, 0.0, 0.1],
    [0.9, 0.1, 0.0],
    [0.6, 0.5, 0.2],
    [0.4, 0.9, 0.3],
    [0.7, 0.3, 0.6],
    [0.5, 0.2, 1.0],
]
STEPS = [0, 5, 10, 15, 20, 25, 30]
ENDS = [10, 20, 30]


@pytest.fixture
def m3() -> EvalMatrix:
    return EvalMatrix(np.array(SUCCESS), np.array(STEPS), np.array(ENDS))


def test_training_task_and_starts(m3: EvalMatrix) -> None:
    # step 0 -> task 0; 5, 10 -> 0; 15, 20 -> 1; 25, 30 -> 2.
    assert [training_task_at(m3, e) for e in range(7)] == [0, 0, 0, 1, 1, 2, 2]
    assert list(m3.task_starts) == [0, 10, 20]
    assert (m3.n_evals, m3.n_tasks) == (7, 3)


def test_average_performance(m3: EvalMatrix) -> None:
    # window=2 -> evals 5, 6: task0 (0.7+0.5)/2=0.6, task1 (0.3+0.2)/2=0.25,
    # task2 (0.6+1.0)/2=0.8; mean (0.6+0.25+0.8)/3 = 1.65/3 = 0.55.
    assert average_performance(m3, window=2) == pytest.approx(0.55)
    # window=5 (default): only evals inside the last task's window (20, 30] count, evals 5
    # and 6, so the same 0.55; evals 2..4 were taken while earlier tasks trained.
    assert average_performance(m3) == pytest.approx(0.55)


def test_final_value_uses_fewer_evals_when_fewer_exist(m3: EvalMatrix) -> None:
    # task 0 up to step 10: its window (0, 10] holds evals 1, 2 only: (0.5+0.9)/2 = 0.7.
    assert final_value(m3, 0, 10, window=5) == pytest.approx(0.7)
    # step 12 lies in task 1's window, which has no evaluation yet: the latest alone (0.9).
    assert final_value(m3, 0, 12, window=2) == pytest.approx(0.9)
    # step 0: the evaluation before training.
    assert final_value(m3, 0, 0) == pytest.approx(0.0)


def test_final_value_never_reaches_into_an_earlier_task() -> None:
    """One evaluation per task end (a sparse schedule): the final value at a task end is that
    evaluation, not an average with values from before the task trained."""
    sparse = EvalMatrix(
        np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), np.array([0, 10, 20]), np.array([10, 20])
    )
    assert final_value(sparse, 1, 20) == pytest.approx(1.0)
    assert forgetting(sparse).per_task == pytest.approx((1.0, 0.0))
    assert average_performance(sparse) == pytest.approx(0.5)


def test_forgetting_window_2(m3: EvalMatrix) -> None:
    # task0: final at end of training (step 10 -> evals 1,2) = (0.5+0.9)/2 = 0.7;
    #        at end of sequence (evals 5,6) = 0.6  -> F0 = 0.7-0.6 = 0.1
    # task1: final at step 20 (evals 3,4) = (0.5+0.9)/2 = 0.7; end = 0.25 -> F1 = 0.45
    # task2: trained last -> F2 = 0.8-0.8 = 0
    # mean over all 3 tasks: (0.1+0.45+0)/3 = 0.55/3
    result = forgetting(m3, window=2)
    assert result.per_task == pytest.approx((0.1, 0.45, 0.0))
    assert result.mean == pytest.approx(0.55 / 3)


def test_forgetting_default_window(m3: EvalMatrix) -> None:
    # Window 5, but each final value only averages its own training window's evals (two
    # here), so the values of window 2: F = (0.1, 0.45, 0), mean 0.55/3.
    result = forgetting(m3)
    assert result.per_task == pytest.approx((0.1, 0.45, 0.0))
    assert result.mean == pytest.approx(0.55 / 3)


def test_auc_in_own_window_excludes_step_zero(m3: EvalMatrix) -> None:
    # task0: evals with 0 < s <= 10 -> e1, e2: (0.5+0.9)/2 = 0.7 (e0 at step 0 excluded)
    # task1: 10 < s <= 20 -> e3, e4: (0.5+0.9)/2 = 0.7
    # task2: 20 < s <= 30 -> e5, e6: (0.6+1.0)/2 = 0.8
    assert auc_in_own_window(m3, 0) == pytest.approx(0.7)
    assert auc_in_own_window(m3, 1) == pytest.approx(0.7)
    assert auc_in_own_window(m3, 2) == pytest.approx(0.8)


def test_auc_of_single_task_reference_run() -> None:
    # Reference run of one task: evals at 0, 10, 20 (step 0 excluded) -> (0.4+0.6)/2 = 0.5.
    ref = EvalMatrix([[0.0], [0.4], [0.6]], [0, 10, 20], [20])
    assert auc_in_own_window(ref, 0) == pytest.approx(0.5)


def test_forward_transfer_hand_computed(m3: EvalMatrix) -> None:
    # reference AUC^b: task0 0.5, task1 0.8, task2 unavailable.
    # FT0 = (0.7-0.5)/(1-0.5) = 0.4; FT1 = (0.7-0.8)/(1-0.8) = -0.5; FT2 = None
    # mean over available tasks = (0.4-0.5)/2 = -0.05
    for refs in ({0: 0.5, 1: 0.8}, [0.5, 0.8, None], np.array([0.5, 0.8, np.nan])):
        result = forward_transfer(m3, refs)
        assert result.per_task[0] == pytest.approx(0.4)
        assert result.per_task[1] == pytest.approx(-0.5)
        assert result.per_task[2] is None
        assert result.mean == pytest.approx(-0.05)


def test_forward_transfer_without_reference_is_none(m3: EvalMatrix) -> None:
    result = forward_transfer(m3)
    assert result.per_task == (None, None, None)
    assert result.mean is None
    assert forward_transfer(m3, {}).mean is None


def test_forward_transfer_perfect_reference_rule(m3: EvalMatrix) -> None:
    # 1 - AUC^b == 0 -> FT = AUC - AUC^b (unnormalized shortfall):
    # task2 AUC = 0.8 vs perfect reference -> FT2 = 0.8 - 1.0 = -0.2
    result = forward_transfer(m3, {2: 1.0})
    assert result.per_task[2] == pytest.approx(-0.2)
    assert result.mean == pytest.approx(-0.2)
    # A learner that is perfect as well gets exactly 0 (not a division by zero).
    perfect = EvalMatrix([[0.0], [1.0], [1.0]], [0, 5, 10], [10])
    assert forward_transfer(perfect, [1.0]).per_task == (0.0,)


def test_forward_transfer_bad_reference(m3: EvalMatrix) -> None:
    with pytest.raises(ValueError, match="outside"):
        forward_transfer(m3, {3: 0.5})
    with pytest.raises(ValueError, match="expected 3"):
        forward_transfer(m3, [0.5, 0.5])


def test_min_acc_at(m3: EvalMatrix) -> None:
    # e0..e2: task 0 is being trained, no earlier task -> None
    assert [min_acc_at(m3, e) for e in range(3)] == [None, None, None]
    # e3 (step 15, task1 trained): task0 evals with 10 < s <= 15: {0.6} -> 0.6
    assert min_acc_at(m3, 3) == pytest.approx(0.6)
    # e4 (step 20): task0 over e3,e4: min(0.6, 0.4) = 0.4 (eval at step 10 is not "after")
    assert min_acc_at(m3, 4) == pytest.approx(0.4)
    # e5 (step 25, task2): task0 min(0.6,0.4,0.7)=0.4; task1 (s > 20): {0.3} -> (0.4+0.3)/2
    assert min_acc_at(m3, 5) == pytest.approx(0.35)
    # e6 (step 30): task0 min(0.6,0.4,0.7,0.5)=0.4; task1 min(0.3,0.2)=0.2 -> 0.3
    assert min_acc_at(m3, 6) == pytest.approx(0.3)
    assert min_acc_at(m3, -1) == pytest.approx(0.3)
    assert min_acc_final(m3) == pytest.approx(0.3)


def test_wc_acc(m3: EvalMatrix) -> None:
    # k = 1 -> current accuracy: e0 task0 = 0.0, e1 task0 = 0.5
    assert wc_acc_at(m3, 0) == pytest.approx(0.0)
    assert wc_acc_at(m3, 1) == pytest.approx(0.5)
    # e3: k=2, A(task1)=0.5, min-ACC=0.6 -> 0.5*0.5 + 0.5*0.6 = 0.55
    assert wc_acc_at(m3, 3) == pytest.approx(0.55)
    # e5: k=3, A(task2)=0.6, min-ACC=0.35 -> 0.6/3 + (2/3)*0.35 = 0.2 + 0.7/3
    assert wc_acc_at(m3, 5) == pytest.approx(0.2 + 0.7 / 3)
    # e6 / final: k=3, A(task2)=1.0, min-ACC=0.3 -> 1/3 + (2/3)*0.3 = 1/3 + 0.2
    assert wc_acc_at(m3, 6) == pytest.approx(1 / 3 + 0.2)
    assert wc_acc_final(m3) == pytest.approx(1 / 3 + 0.2)


def test_min_acc_and_wc_acc_undefined_or_single_task() -> None:
    # Run stopped at step 10 (end of task 0 of 2): no eval after task 0 ended.
    truncated = EvalMatrix([[0.0, 0.0], [0.8, 0.1]], [0, 10], [10, 20])
    assert min_acc_final(truncated) is None
    assert wc_acc_final(truncated) is None
    single = EvalMatrix([[0.0], [0.7]], [0, 10], [10])
    assert min_acc_final(single) is None
    assert wc_acc_final(single) == pytest.approx(0.7)


def test_windowed_forgetting_hand_computed(m3: EvalMatrix) -> None:
    # Only evaluations after the task's training started count (steps > task_starts[i]), and
    # fewer than 10 of them remain, so one window holds them all: largest A(a)-A(b), a<b:
    # task0 (s > 0)  .5,.9,.6,.4,.7,.5 -> 0.9-0.4 = 0.5
    # task1 (s > 10) .5,.9,.3,.2       -> 0.9-0.2 = 0.7
    # task2 (s > 20) .6,1              -> 0 (the 0.1 -> 0.0 drop at steps 5 -> 10 came before
    #                                       task 2 was trained: not forgetting; it was 0.1)
    wf = windowed_forgetting(m3, 10)
    assert wf.per_task == pytest.approx((0.5, 0.7, 0.0))
    assert wf.max == pytest.approx(0.7)
    assert wf.mean == pytest.approx(1.2 / 3)  # was 1.3/3 counting task 2's untrained drop
    # w=2 (adjacent pairs only): task0 0.9->0.6 = 0.3; task1 0.9->0.3 = 0.6; task2 0
    wf2 = windowed_forgetting(m3, 2)
    assert wf2.per_task == pytest.approx((0.3, 0.6, 0.0))
    assert wf2.mean == pytest.approx(0.9 / 3)


def test_windowed_forgetting_skips_evaluations_before_the_task_was_trained() -> None:
    # Tasks train on [0,10), [10,20):
    #   step | task0 task1
    #      0 |  0.0   0.7   task 1 not trained yet (e.g. transfer or noise)...
    #      5 |  0.6   0.0   ...drops by 0.7: not forgetting
    #     10 |  0.8   0.1   end of task 0
    #     15 |  0.5   0.9   task 1 trained
    #     20 |  0.6   0.6   end
    # task0 (s > 0): .6,.8,.5,.6 -> 0.8-0.5 = 0.3
    # task1 (s > 10): .9,.6 -> 0.3 (counting every evaluation: 0.7-0.0 = 0.7)
    # WF^10 mean (0.3+0.3)/2 = 0.3 (it was (0.3+0.7)/2 = 0.5).
    m = EvalMatrix(
        [[0.0, 0.7], [0.6, 0.0], [0.8, 0.1], [0.5, 0.9], [0.6, 0.6]], [0, 5, 10, 15, 20], [10, 20]
    )
    wf = windowed_forgetting(m, 10)
    assert wf.per_task == pytest.approx((0.3, 0.3))
    assert wf.mean == pytest.approx(0.3)
    assert wf.max == pytest.approx(0.3)
    assert summarize(m)["wf10"] == pytest.approx(0.3)
    assert summarize(m)["wf100"] == pytest.approx(0.3)
    # A task with no evaluation after its start has no WF (None), left out of max and mean:
    # task 1 below is only evaluated at steps 0, 5, 10 (before it trained); task 0 .5,.9 -> 0.
    early = EvalMatrix([[0.0, 0.9], [0.5, 0.2], [0.9, 0.4]], [0, 5, 10], [10, 20])
    wf_early = windowed_forgetting(early, 10)
    assert wf_early.per_task == (0.0, None)  # was (0.0, 0.7)
    assert (wf_early.max, wf_early.mean) == (0.0, 0.0)  # were 0.7 and 0.35


def test_windowed_forgetting_window_width() -> None:
    # 60 evals. Task 0 declines by 0.01 per eval from 1.0 to 0.5 over evals 0..50, then flat:
    # the 0.5 drop is spread over 50 evals, wider than w=10, so WF^10 only sees 9 steps of
    # 0.01 = 0.09, while WF^100 (one window of all 60 evals) sees the full 0.5.
    # Task 1 is flat at 0.8 with one sharp drop to 0.3 at eval 30: both windows see 0.5.
    # Task 2 only increases: 0.
    n = 60
    task0 = np.concatenate([1.0 - 0.01 * np.arange(51), np.full(n - 51, 0.5)])
    task1 = np.full(n, 0.8)
    task1[30:] = 0.3
    task2 = np.linspace(0.0, 1.0, n)
    # Evaluations at steps 10..600 (none at step 0, which task 0's WF would leave out).
    m = EvalMatrix(
        np.stack([task0, task1, task2], axis=1), np.arange(1, n + 1) * 10, [200, 400, 600]
    )
    wf10 = windowed_forgetting(m, 10)
    assert wf10.per_task == pytest.approx((0.09, 0.5, 0.0))
    assert wf10.max == pytest.approx(0.5)
    wf100 = windowed_forgetting(m, 100)
    assert wf100.per_task == pytest.approx((0.5, 0.5, 0.0))
    with pytest.raises(ValueError, match="w must be"):
        windowed_forgetting(m, 1)


def test_summarize_is_json_serializable(m3: EvalMatrix) -> None:
    # Values from the tests above (window 5): performance 0.55, forgetting 0.55/3,
    # FT -0.05, min-ACC 0.3, WC-ACC 1/3+0.2, WF10 = WF100 = 1.2/3 (E=7 < 10).
    summary = summarize(m3, {0: 0.5, 1: 0.8})
    assert summary == pytest.approx(
        {
            "performance": 0.55,
            "forgetting": 0.55 / 3,
            "forward_transfer": -0.05,
            "min_acc": 0.3,
            "wc_acc": 1 / 3 + 0.2,
            "wf10": 1.2 / 3,
            "wf100": 1.2 / 3,
        }
    )
    assert all(type(v) is float for v in summary.values())
    json.dumps(summary)
    no_ref = summarize(m3)
    assert no_ref["forward_transfer"] is None
    assert json.loads(json.dumps(no_ref))["forward_transfer"] is None


@pytest.mark.parametrize(
    ("success", "steps", "ends", "match"),
    [
        ([0.1, 0.2], [0, 1], [1], "success must be 2-D"),
        ([[0.1], [0.2]], [0], [10], r"eval_steps must have shape \(2,\)"),
        ([[0.1, 0.2]], [0], [10], r"task_ends must have shape \(2,\)"),
        ([[0.1], [0.2], [0.3]], [0, 5, 3], [10], "non-decreasing"),
        ([[0.1, 0.2]], [0], [10, 10], "strictly increasing"),
        ([[0.1]], [0], [0], "task_ends\\[0\\] must be > 0"),
        ([[0.1]], [-1], [10], ">= 0"),
        ([[0.1]], [11], [10], "after the end of the sequence"),
        ([[float("nan")]], [0], [10], "finite"),
        ([[0.1]], [0.5], [10], "integer"),
        (np.zeros((0, 1)), [], [10], "at least one evaluation"),
    ],
)
def test_validation_errors(success: Any, steps: Any, ends: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EvalMatrix(success, steps, ends)


def test_matrix_is_read_only_and_bad_arguments(m3: EvalMatrix) -> None:
    with pytest.raises(ValueError):
        m3.success[0, 0] = 1.0
    with pytest.raises(ValueError, match="eval_index"):
        min_acc_at(m3, 7)
    with pytest.raises(ValueError, match="window"):
        average_performance(m3, window=0)
    with pytest.raises(ValueError, match="task"):
        auc_in_own_window(m3, 3)
    # No evaluation in task 1's window (10, 20] -> AUC undefined.
    gap = EvalMatrix(np.zeros((3, 3)), [0, 10, 30], [10, 20, 30])
    with pytest.raises(ValueError, match="no evaluation inside"):
        auc_in_own_window(gap, 1)


def test_bootstrap_ci() -> None:
    # One value -> degenerate interval.
    assert bootstrap_ci([0.7]) == (0.7, 0.7, 0.7)
    # Values {0, 1}: resampled means are 0, 0.5, 1 with prob 1/4, 1/2, 1/4, so the 5% and
    # 95% quantiles are 0 and 1; the mean is 0.5.
    assert bootstrap_ci([0.0, 1.0]) == pytest.approx((0.5, 0.0, 1.0))
    values = [0.2, 0.5, 0.4, 0.9, 0.6]
    mean, low, high = bootstrap_ci(values, seed=3)
    assert mean == pytest.approx(0.52)  # (0.2+0.5+0.4+0.9+0.6)/5 = 2.6/5
    assert low < mean < high
    assert bootstrap_ci(values, seed=3) == (mean, low, high)  # reproducible
    # Adding agreeing values (all equal to the mean) narrows the interval.
    _, low2, high2 = bootstrap_ci(values + [0.52] * 20, seed=3)
    assert high2 - low2 < high - low
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([0.1, 0.2], confidence=1.0)


# A 3-task run on [0,10), [10,20), [20,30) whose task 1 was never evaluated inside its own
# training window (10, 20]:
#
#   e  step | task0 task1 task2
#   0     0 |  0.0   0.0   0.0
#   1     5 |  0.6   0.1   0.0
#   2    10 |  0.8   0.7   0.1   end of task 0 (task 1 not trained yet)
#   3    25 |  0.5   0.3   0.6
#   4    30 |  0.4   0.2   0.9   end of task 2 = end of the sequence
GAP = EvalMatrix(
    [[0.0, 0.0, 0.0], [0.6, 0.1, 0.0], [0.8, 0.7, 0.1], [0.5, 0.3, 0.6], [0.4, 0.2, 0.9]],
    [0, 5, 10, 25, 30],
    [10, 20, 30],
)


def test_task_without_own_evaluation_is_left_out_of_forgetting_and_transfer() -> None:
    assert tasks_without_own_evaluation(GAP) == (1,)
    # End of the sequence: window (20, 30] -> e3, e4: task0 0.45, task1 0.25, task2 0.75.
    # F0 = final at 10 (e1, e2: 0.7) - 0.45 = 0.25; F2 = (0.6+0.9)/2 - 0.75 = 0.
    # F1 would read e2 (0.7, taken before task 1 trained): 0.7 - 0.25 = 0.45; now None.
    # Mean over the available tasks (0.25 + 0)/2 = 0.125 (it was (0.25+0.45+0)/3 = 0.7/3).
    result = forgetting(GAP)
    assert result.per_task == (pytest.approx(0.25), None, pytest.approx(0.0))
    assert result.mean == pytest.approx(0.125)
    # FT with AUC^b = 0.5 everywhere: AUC0 = (0.6+0.8)/2 = 0.7 -> (0.7-0.5)/0.5 = 0.4;
    # AUC2 = 0.75 -> 0.5; task 1 has no AUC (it raised ValueError before) -> None.
    transfer = forward_transfer(GAP, [0.5, 0.5, 0.5])
    assert transfer.per_task == (pytest.approx(0.4), None, pytest.approx(0.5))
    assert transfer.mean == pytest.approx(0.45)
    with pytest.raises(ValueError, match="no evaluation inside"):
        auc_in_own_window(GAP, 1)
    # Metrics that do not need task 1's own-window value are unchanged:
    # performance (0.45+0.25+0.75)/3; min-ACC: task0 min(0.5, 0.4) = 0.4, task1 (s > 20)
    # min(0.3, 0.2) = 0.2 -> 0.3; WC-ACC 0.9/3 + (2/3)*0.3 = 0.5; WF10 task0 (s > 0)
    # .6,.8,.5,.4 -> 0.4, task1 (s > 10) .3,.2 -> 0.1, task2 (s > 20) .6,.9 -> 0: mean 0.5/3.
    summary = summarize(GAP, [0.5, 0.5, 0.5])
    assert summary == pytest.approx(
        {
            "performance": 1.45 / 3,
            "forgetting": 0.125,
            "forward_transfer": 0.45,
            "min_acc": 0.3,
            "wc_acc": 0.5,
            "wf10": 0.5 / 3,
            "wf100": 0.5 / 3,
        }
    )
    assert tasks_without_own_evaluation(EvalMatrix(SUCCESS, STEPS, ENDS)) == ()


def test_last_task_without_own_evaluation_means_the_end_was_never_evaluated() -> None:
    # Tasks on [0,10), [10,20); evaluations only at steps 0, 5, 10, so task 1 never trained
    # when last evaluated:
    #   step | task0 task1
    #      0 |  0.0   0.0
    #      5 |  0.5   0.2
    #     10 |  0.9   0.4
    m = EvalMatrix([[0.0, 0.0], [0.5, 0.2], [0.9, 0.4]], [0, 5, 10], [10, 20])
    assert tasks_without_own_evaluation(m) == (1,)
    # Before: performance = mean of e1, e2 = (0.7 + 0.3)/2 = 0.5; F1 = 0.4 - 0.3 = 0.1 from
    # an evaluation before task 1 trained, F0 = 0, mean 0.05. Now all unavailable.
    assert average_performance(m) is None
    assert forgetting(m) == ForgettingResult(mean=None, per_task=(None, None))
    assert wc_acc_final(m) is None
    # FT0 = ((0.5+0.9)/2 - 0.5)/0.5 = 0.4; FT1 None (it raised ValueError before).
    transfer = forward_transfer(m, [0.5, 0.5])
    assert transfer.per_task == (pytest.approx(0.4), None)
    assert summarize(m, [0.5, 0.5]) == pytest.approx(
        {
            "performance": None,
            "forgetting": None,
            "forward_transfer": 0.4,
            "min_acc": None,  # task 0 has no evaluation after step 10
            "wc_acc": None,
            "wf10": 0.0,  # task 0 (s > 0): .5, .9 -> 0; task 1: None, left out
            "wf100": 0.0,
        }
    )


def test_min_acc_averages_over_tasks_with_a_later_evaluation() -> None:
    # The first five rows of the 3-task example (run evaluated up to step 20 = end of task 1):
    # task0 after step 10: e3 0.6, e4 0.4 -> min 0.4; task1 has no evaluation after step 20.
    # De Lange et al. average over the tasks that have one: min-ACC = 0.4 (it was None).
    m = EvalMatrix(SUCCESS[:5], STEPS[:5], ENDS)
    assert min_acc_final(m) == pytest.approx(0.4)
    # WC-ACC at the end needs the last task's accuracy after it trained: unavailable.
    assert wc_acc_final(m) is None
    # At evaluation e4 (step 20, task 1 trained) min-ACC is over task 0 alone: 0.4.
    assert min_acc_at(m, 4) == pytest.approx(0.4)
    # Both tasks with later evaluations are averaged as before (the 3-task example: 0.3).
    assert min_acc_final(EvalMatrix(SUCCESS, STEPS, ENDS)) == pytest.approx(0.3)


def test_windowed_final_value_equals_continual_worlds_last_five_rows() -> None:
    """Under Continual World's schedule (1M steps per task, an evaluation every 20k steps, so
    50 per training window) the windowed "final" value equals CW's mean of the last 5 rows of
    the evaluation log, for every task at every task end, so performance and forgetting agree."""
    n_tasks, per_task, every = 10, 1_000_000, 20_000
    steps = np.arange(0, n_tasks * per_task + 1, every)
    ends = np.arange(1, n_tasks + 1) * per_task
    success = np.random.default_rng(0).uniform(size=(steps.size, n_tasks))
    m = EvalMatrix(success, steps, ends)

    def last_five_rows(task: int, step: int) -> float:
        row = int(np.flatnonzero(steps == step)[0])
        return float(np.mean(success[row - 4 : row + 1, task]))

    for end in ends:
        for task in range(n_tasks):
            assert final_value(m, task, int(end)) == pytest.approx(last_five_rows(task, int(end)))
    end = int(ends[-1])
    cw_performance = np.mean([last_five_rows(j, end) for j in range(n_tasks)])
    cw_forgetting = [last_five_rows(i, int(ends[i])) - last_five_rows(i, end) for i in range(10)]
    assert average_performance(m) == pytest.approx(cw_performance)
    assert forgetting(m).per_task == pytest.approx(cw_forgetting)
    assert forgetting(m).mean == pytest.approx(np.mean(cw_forgetting))
