"""Tests for the results record and `crl report` (results, aggregate, tables, plots, report)
on synthetic run directories (no training, no simulator)."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from crlgym.errors import CrlgymError
from crlgym.experiments import plots
from crlgym.experiments.aggregate import (
    METRICS,
    MethodSummary,
    MetricValue,
    ReportError,
    summarize_runs,
)
from crlgym.experiments.metrics import EvalMatrix, bootstrap_ci, summarize
from crlgym.experiments.plots import plot_curves, plot_heatmap
from crlgym.experiments.report import add_report_parser, write_report
from crlgym.experiments.results import PolicyScores, ResultsError, RunResults, load_run, read
from crlgym.experiments.tables import (
    markdown_table,
    md_table,
    render_table,
    retention_rows,
    table_note,
)

TASKS = ["hammer-v3", "push-wall-v3", "faucet-close-v3"]
TASK_ENDS = [1000, 2000, 3000]
EVAL_STEPS = list(range(0, 3001, 250))  # 13 evaluations, 4 per task window
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def success_matrix(method: str, seed: int) -> list[list[float]]:
    """Each task climbs to ~0.9 while trained; afterwards "finetune" drops to 0, "packnet" keeps
    it. Seed-dependent noise makes the seeds (and so the bootstrap CI) differ."""
    rng = np.random.default_rng(seed)
    success = np.zeros((len(EVAL_STEPS), len(TASKS)))
    for e, step in enumerate(EVAL_STEPS):
        for j, end in enumerate(TASK_ENDS):
            start = end - 1000
            if step <= start:
                value = 0.05
            elif step <= end:
                value = 0.9 * (step - start) / 1000
            else:
                value = 0.0 if method == "finetune" else 0.85
            success[e, j] = np.clip(value + rng.uniform(-0.05, 0.05), 0.0, 1.0)
    return success.round(4).tolist()


def results(method: str, seed: int, **overrides: Any) -> dict[str, Any]:
    """A results.json payload as a training run writes it."""
    success = success_matrix(method, seed)
    data: dict[str, Any] = {
        "name": f"cw3-{method}-s{seed}",
        "method": method,
        "seed": seed,
        "sequence": "CW3",
        "tasks": TASKS,
        "task_ends": TASK_ENDS,
        "eval_steps": EVAL_STEPS,
        "score": {"stochastic": success, "deterministic": success},
        "reference_auc": None,
        "metrics": {"performance": 123.0},  # deliberately wrong: the report must recompute
        "wall_time_s": 12.5,
        "eval_time_s": 1.5,
    }
    data.update(overrides)
    return data


def write_run(root: Path, data: dict[str, Any]) -> Path:
    run_dir = root / data["name"]
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps(data))
    return run_dir


@pytest.fixture
def run_dirs(tmp_path: Path) -> list[Path]:
    """2 methods x 3 seeds, interleaved so that "finetune" is seen first."""
    return [
        write_run(tmp_path / "runs", results(method, seed))
        for seed in (2, 0, 1)
        for method in ("finetune", "packnet")
    ]


def direct(method: str, key: str, reference_auc: list[float | None] | None = None) -> Any:
    """The expected aggregate: `summarize` per seed (sorted), then `bootstrap_ci` at 90%."""
    matrices = [EvalMatrix(success_matrix(method, s), EVAL_STEPS, TASK_ENDS) for s in (0, 1, 2)]
    values = [summarize(m, reference_auc)[key] for m in matrices]
    return bootstrap_ci([float(v) for v in values if v is not None], confidence=0.9)


def markdown_rows(summaries: list[MethodSummary]) -> dict[str, list[str]]:
    lines = markdown_table(summaries).splitlines()
    assert lines[0] == (
        "| method | seeds | performance | forgetting | forward transfer | min-ACC |"
    )
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: row[1:] for row in cells}


def test_load_run_builds_the_matrix_from_stochastic_scores(run_dirs: list[Path]) -> None:
    run = load_run(run_dirs[0])
    assert (run.name, run.method, run.seed, run.sequence) == (
        "cw3-finetune-s2",
        "finetune",
        2,
        "CW3",
    )
    assert run.tasks == tuple(TASKS) and run.task_ends == tuple(TASK_ENDS)
    assert run.matrix.success.shape == (len(EVAL_STEPS), len(TASKS))
    np.testing.assert_array_equal(run.matrix.success, success_matrix("finetune", 2))
    assert run.score.deterministic is not None
    np.testing.assert_array_equal(run.score.deterministic, run.matrix.success)
    assert run.evaluated_to_end and run.reference_auc is None and run.wall_time_s == 12.5


def test_table_numbers_equal_summarize_plus_bootstrap(run_dirs: list[Path]) -> None:
    summaries = summarize_runs([load_run(d) for d in run_dirs])
    assert [s.method for s in summaries] == ["finetune", "packnet"]  # first-seen order
    rows = markdown_rows(summaries)
    for summary in summaries:
        assert summary.seeds == (0, 1, 2)
        assert rows[summary.method][0] == "3"
        for key in METRICS:
            if key == "forward_transfer":
                continue
            mean, low, high = direct(summary.method, key)
            value = summary.metrics[key]
            assert value is not None and value.n == 3
            assert (value.mean, value.low, value.high) == pytest.approx((mean, low, high))
        columns = ("performance", "forgetting", None, "min_acc")
        for column, column_key in enumerate(columns, start=1):
            if column_key is not None:
                mean, low, high = direct(summary.method, column_key)
                expected = f"{mean:.2f} [{low:.2f}, {high:.2f}]".replace("-0.00", "0.00")
                assert rows[summary.method][column] == expected
    # The stored (wrong) metrics were ignored.
    performance = summaries[0].metrics["performance"]
    assert performance is not None and performance.mean < 1.0


def hand_forgetting(success: list[list[float]]) -> float:
    """Continual World forgetting of a fixture matrix, computed by hand: for each task, the
    mean success over the evaluations of its own training window (here 4 < the window of 5)
    minus the mean over the evaluations of the last window, averaged over all tasks."""
    matrix = np.asarray(success)
    steps = np.asarray(EVAL_STEPS)
    starts = [0, *TASK_ENDS[:-1]]
    own = [(steps > start) & (steps <= end) for start, end in zip(starts, TASK_ENDS, strict=True)]
    at_end = own[-1]
    per_task = [matrix[own[i], i].mean() - matrix[at_end, i].mean() for i in range(len(TASKS))]
    return float(np.mean(per_task))


def test_forgetting_column_is_the_published_formula(tmp_path: Path) -> None:
    """The report's forgetting cell of one finetune and one packnet run equals Continual
    World's forgetting computed by hand from the runs' matrices, so their order in the table
    is the order of the hand-computed values (finetune forgets, packnet does not)."""
    dirs = [write_run(tmp_path, results(method, 0)) for method in ("packnet", "finetune")]
    rows = markdown_rows(summarize_runs([load_run(d) for d in dirs]))
    expected = {m: hand_forgetting(success_matrix(m, 0)) for m in ("finetune", "packnet")}
    assert expected["finetune"] > 0.3 and expected["packnet"] < -0.1  # the fixture's design
    for method, value in expected.items():
        assert rows[method][2] == f"{value:.2f}"
    assert float(rows["finetune"][2]) > float(rows["packnet"][2])


def test_forgetting_over_seeds_is_the_mean_of_the_hand_values(run_dirs: list[Path]) -> None:
    summaries = {s.method: s for s in summarize_runs([load_run(d) for d in run_dirs])}
    for method, summary in summaries.items():
        hand = [hand_forgetting(success_matrix(method, seed)) for seed in (0, 1, 2)]
        assert summary.values["forgetting"] == pytest.approx(hand)
        value = summary.metrics["forgetting"]
        assert value is not None and value.mean == pytest.approx(np.mean(hand))
        assert markdown_rows(list(summaries.values()))[method][2].split()[0] == (
            f"{np.mean(hand):.2f}"
        )


def test_forward_transfer_is_na_without_references_and_a_number_with(tmp_path: Path) -> None:
    refs = [0.2, None, 0.4]
    dirs = [write_run(tmp_path, results("finetune", seed)) for seed in (0, 1, 2)]
    dirs += [write_run(tmp_path, results("packnet", s, reference_auc=refs)) for s in (0, 1, 2)]
    summaries = summarize_runs([load_run(d) for d in dirs])
    rows = markdown_rows(summaries)
    assert summaries[0].metrics["forward_transfer"] is None
    assert summaries[0].values["forward_transfer"] == ()
    assert rows["finetune"][3] == "n/a"
    mean, low, high = direct("packnet", "forward_transfer", refs)
    assert rows["packnet"][3] == f"{mean:.2f} [{low:.2f}, {high:.2f}]"

    console = Console(width=200, record=True)
    console.print(render_table(summaries))
    text = console.export_text()
    assert "forward transfer" in text and "min-ACC" in text
    finetune_line = next(line for line in text.splitlines() if "finetune" in line)
    assert "n/a" in finetune_line


def test_single_seed_has_no_interval(tmp_path: Path) -> None:
    summaries = summarize_runs([load_run(write_run(tmp_path, results("packnet", 0)))])
    value = summaries[0].metrics["performance"]
    assert value is not None and value.low is None and value.n == 1
    expected = summarize(EvalMatrix(success_matrix("packnet", 0), EVAL_STEPS, TASK_ENDS))
    assert markdown_rows(summaries)["packnet"][1] == f"{expected['performance']:.2f}"


def test_runs_that_cannot_be_pooled_are_refused_or_kept_apart(tmp_path: Path) -> None:
    a = load_run(write_run(tmp_path / "a", results("finetune", 0)))
    b = load_run(write_run(tmp_path / "b", results("finetune", 0)))
    with pytest.raises(ReportError, match=r"seed 0.*pass each run once"):
        summarize_runs([a, b])
    other = load_run(write_run(tmp_path / "c", results("finetune", 1, sequence="CW3-long")))
    labels = [s.label for s in summarize_runs([a, other])]
    assert labels == ["finetune (CW3)", "finetune (CW3-long)"]
    with pytest.raises(ReportError, match="no runs"):
        summarize_runs([])


def _corrupt(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("tasks", KeyError, "missing key.*'tasks'"),
        ("score.stochastic", KeyError, "missing key.*'score.stochastic'"),
        ("seed", "zero", "'seed' must be an integer"),
        ("task_ends", [1000, 2000], "'task_ends' has 2 entries, expected 3"),
        ("score.stochastic", [[0.5, 0.5, 0.5]], "one row per evaluation \\(13\\)"),
        ("eval_steps", list(range(0, 3001, 250))[::-1], "non-decreasing"),
        ("reference_auc", [0.1], "'reference_auc' must be null or a list of 3"),
    ],
)
def test_corrupt_results_raise_a_helpful_report_error(
    tmp_path: Path, path: str, value: Any, message: str
) -> None:
    run_dir = write_run(tmp_path, _corrupt(results("finetune", 0), path, value))
    with pytest.raises(ResultsError, match=message) as caught:
        load_run(run_dir)
    assert isinstance(caught.value, CrlgymError)
    assert str(run_dir / "results.json") in str(caught.value)
    assert "Re-run" in str(caught.value)


def test_ragged_score_rows_are_reported(tmp_path: Path) -> None:
    data = results("finetune", 0)
    data["score"]["stochastic"][3] = [0.1, 0.2]
    with pytest.raises(
        ResultsError, match=r"'score.stochastic'\[3\] must hold one number per task"
    ):
        load_run(write_run(tmp_path, data))


def test_missing_or_unparsable_results_json(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match=r"does not exist.*runs/<name>/"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match=r"has no results.json"):
        load_run(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text('{"name": "cw3", "tasks": [')
    with pytest.raises(ResultsError, match=r"not valid JSON.*interrupted"):
        load_run(broken)
    (broken / "results.json").write_text("[1, 2]")
    with pytest.raises(ResultsError, match="JSON object"):
        load_run(broken)


def _check_png(path: Path, figsize: tuple[float, float]) -> np.ndarray:
    """Valid, non-trivial PNG of the expected pixel size; returns its pixels."""
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size > 10_000
    pixels = matplotlib.image.imread(path)
    width, height = figsize
    assert pixels.shape[:2] == (round(height * plots.DPI), round(width * plots.DPI))
    assert pixels[..., :3].std() > 0.05  # not blank
    return pixels


@pytest.mark.integration  # writes reports with plots
def test_plots_are_valid_pngs_of_the_expected_shape(tmp_path: Path) -> None:
    from matplotlib import colormaps

    run = load_run(write_run(tmp_path, results("finetune", 0)))
    heatmap = plot_heatmap(run, tmp_path / "out" / "heatmap.png")
    pixels = _check_png(heatmap, plots._heatmap_figsize(3))
    assert pixels.shape[1] > 3 * pixels.shape[0]  # a wide strip for 3 tasks
    # Both ends of the viridis scale appear (untrained / forgotten cells and trained ones).
    rgb = pixels[..., :3].reshape(-1, 3)
    for level in (0.0, 0.85):
        colour = np.array(colormaps["viridis"](level)[:3])
        assert np.abs(rgb - colour).max(axis=1).min() < 0.08
    curves = plot_curves(run, tmp_path / "out" / "curves.png")
    pixels = _check_png(curves, plots._curves_figsize(3))
    assert plots._curves_figsize(10)[1] > plots._curves_figsize(3)[1]  # grows with tasks


@pytest.mark.integration  # writes reports with plots
def test_write_report_defaults_to_run_dir_and_keeps_foreign_files(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, results("packnet", 0))
    assert write_report([run_dir], None) == run_dir
    md = (run_dir / "report.md").read_text()
    assert "| packnet | 1 |" in md and "cw3-packnet-s0_heatmap.png" in md
    for suffix in ("heatmap", "curves"):
        assert (run_dir / f"cw3-packnet-s0_{suffix}.png").stat().st_size > 10_000
    assert write_report([run_dir], None) == run_dir  # its own artifacts may be overwritten

    other = tmp_path / "mine"
    other.mkdir()
    (other / "report.md").write_text("my notes\n")
    with pytest.raises(ReportError, match=r"refusing to overwrite.*--out"):
        write_report([run_dir], other)
    assert (other / "report.md").read_text() == "my notes\n"
    assert list(other.iterdir()) == [other / "report.md"]  # nothing written


@pytest.mark.integration  # writes reports with plots
def test_report_subcommand_end_to_end(
    run_dirs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="crl")
    add_report_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "out"
    args = parser.parse_args(["report", str(run_dirs[0]), str(run_dirs[1]), "--out", str(out)])
    args.run(args)
    printed = capsys.readouterr().out
    for text in ("finetune", "packnet", "n/a", "performance", "forgetting", "min-ACC"):
        assert text in printed
    expected = {"report.md", "methods.png"}
    expected |= {
        f"cw3-{m}-s2_{kind}.png" for m in ("finetune", "packnet") for kind in ("heatmap", "curves")
    }
    assert {p.name for p in out.iterdir()} == expected
    for name in expected:
        assert str(out / name) in printed

    args = parser.parse_args(["report", str(tmp_path / "missing")])
    with pytest.raises(ResultsError, match="does not exist"):
        args.run(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["report"])  # at least one run directory


def test_unfinished_run_is_flagged_and_undefined_metrics_are_na(tmp_path: Path) -> None:
    data = results("finetune", 0, metrics=None)
    data["eval_steps"] = EVAL_STEPS[:9]  # stopped at step 2000, during task 1's last eval
    data["score"] = {"stochastic": data["score"]["stochastic"][:9]}
    run = load_run(write_run(tmp_path, data))
    assert not run.evaluated_to_end and run.metrics is None and run.score.deterministic is None
    summaries = summarize_runs([run])
    assert summaries[0].unfinished == ("cw3-finetune-s0",)
    # Task 2's window (2000, 3000] holds no evaluation: the end of the sequence was never
    # evaluated, so performance, forgetting and WC-ACC are n/a, and forward transfer too.
    # min-ACC averages the earlier tasks that were evaluated after their training (De Lange et
    # al.): task 0 only (task 1 never was), finetune's 0.0 +- 0.05 noise clipped at 0 -> 0.00.
    assert summaries[0].metrics["min_acc"] == single_seed(0.0)
    assert summaries[0].metrics["performance"] is None
    assert summaries[0].metrics["wc_acc"] is None
    row = markdown_rows(summaries)["finetune *"]
    assert row[1:] == ["n/a", "n/a", "n/a", "0.00"]
    assert summaries[0].tasks_without_own_evaluation == {"cw3-finetune-s0": ("faucet-close-v3",)}
    note = table_note(summaries)
    assert "unfinished runs: cw3-finetune-s0" in note
    assert note.endswith(
        "; tasks never evaluated inside their own training window (left out of forgetting and "
        "forward transfer; a last task's makes performance and WC-ACC n/a too): "
        "cw3-finetune-s0 (faucet-close-v3)"
    )
    assert " ".join(note.split()) in printed_words(summaries)


def single_seed(mean: Any) -> MetricValue:
    """A single-seed metric value (no CI)."""
    return MetricValue(mean=mean, low=None, high=None, n=1)


def printed_words(summaries: list[MethodSummary]) -> str:
    """What the console table prints (caption included), whitespace collapsed."""
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(render_table(summaries))
    return " ".join(console.export_text().split())


def test_table_note_is_unchanged_when_every_task_has_its_own_evaluation(
    run_dirs: list[Path],
) -> None:
    summaries = summarize_runs([load_run(d) for d in run_dirs])
    assert all(s.tasks_without_own_evaluation == {} for s in summaries)
    assert table_note(summaries) == (
        "mean over seeds [90% bootstrap CI] with >= 2 seeds; n/a = not available (forward "
        "transfer needs single-task reference runs)"
    )


def test_report_names_a_middle_task_never_evaluated_in_its_own_window(tmp_path: Path) -> None:
    # Drop the evaluations at steps 1250..2000 (task 1's window (1000, 2000]): task 1 gets no
    # forgetting or forward transfer; the others keep theirs.
    keep = [e for e, step in enumerate(EVAL_STEPS) if not 1000 < step <= 2000]
    data = results("packnet", 0, metrics=None)
    data["eval_steps"] = [EVAL_STEPS[e] for e in keep]
    data["score"] = {"stochastic": [data["score"]["stochastic"][e] for e in keep]}
    data["reference_auc"] = [0.5, 0.5, 0.5]
    run = load_run(write_run(tmp_path, data))
    (summary,) = summarize_runs([run])
    assert summary.tasks_without_own_evaluation == {"cw3-packnet-s0": ("push-wall-v3",)}
    success = np.asarray(data["score"]["stochastic"])
    steps = np.asarray(data["eval_steps"])
    # Forgetting over tasks 0 and 2: own final (the evaluations of its window, at most 5)
    # minus the end value (the last 4 evaluations, 2250..3000); task 1 left out.
    end = success[steps > 2000].mean(axis=0)
    f0 = success[(steps > 0) & (steps <= 1000), 0][-5:].mean() - end[0]
    f2 = success[steps > 2000, 2].mean() - end[2]
    assert summary.metrics["forgetting"] == single_seed(pytest.approx((f0 + f2) / 2))
    assert summary.metrics["performance"] is not None
    assert "cw3-packnet-s0 (push-wall-v3)" in table_note(summaries=[summary])


@pytest.mark.integration  # writes reports with plots
def test_plasticity_plot_appears_only_for_runs_with_plasticity_metrics(tmp_path: Path) -> None:
    plain = write_run(tmp_path, results("finetune", 0))
    write_report([plain], None)
    assert not (plain / "plasticity.png").exists()
    records = [
        {"step": step, "task": 0, "net": net, "fau": 0.5 + step / 1e4, "dormant_ratio": 0.1,
         "effective_rank": 12.0, "weight_norm": 3.0, "grad_norm": 0.5}
        for step in (1000, 2000, 3000) for net in ("actor", "critic")
    ]  # fmt: skip
    plasticity = {"replay_ratio": "adaptive", "switch_steps": [2000], "rr_checks": [],
                  "metrics": records, "events": []}  # fmt: skip
    plastic = write_run(tmp_path, results("l2", 0, name="plastic", plasticity=plasticity))
    write_report([plastic], None)
    _check_png(plastic / "plasticity.png", (10, 6.5))


def retention(returns_after: float) -> dict[str, Any]:
    """A pretrain_retention record: 2 pretraining tasks, before fine-tuning and after each of
    the 3 tasks; the first task's return falls from 400 to ``returns_after``."""
    return {
        "tasks": ["assembly-v3", "window-open-v3"],
        "steps": [0, 1000, 2000, 3000],
        "score": [[1.0, 0.5], [1.0, 0.5], [0.5, 0.5], [0.0, 0.5]],
        "return": [[400.0, 100.0], [380.0, 100.0], [300.0, 100.0], [returns_after, 100.0]],
    }


@pytest.mark.integration  # writes reports with plots
def test_retention_of_pretraining_is_reported_per_run(tmp_path: Path, capsys: Any) -> None:
    plain = write_run(tmp_path, results("finetune", 0))
    kept = write_run(
        tmp_path,
        results("l2m-l2m-lora", 0, pretrain_retention=retention(150.0), step_unit="updates"),
    )
    run = load_run(kept)
    assert run.retention is not None and load_run(plain).retention is None
    assert (run.step_unit, load_run(plain).step_unit) == ("updates", "env steps")
    assert run.retention.return_ratio == pytest.approx(250.0 / 500.0)
    assert retention_rows([load_run(plain), run]) == [
        ["cw3-l2m-l2m-lora-s0", "l2m-l2m-lora", "0", "2", "0.75", "0.25", "500", "250", "0.50x"]
    ]
    out = tmp_path / "out"
    write_report([plain, kept], out)
    text = (out / "report.md").read_text()
    assert "## Retention of pretraining" in text
    assert "| cw3-l2m-l2m-lora-s0 | assembly-v3 | 1.00 1.00 0.50 0.00 |" in text
    parser = argparse.ArgumentParser()
    add_report_parser(parser.add_subparsers())
    args = parser.parse_args(["report", str(plain), str(kept), "--out", str(tmp_path / "o2")])
    args.run(args)
    assert "retention of pretraining" in capsys.readouterr().out


@pytest.mark.integration  # writes reports with plots
def test_reports_without_retention_have_no_retention_section(tmp_path: Path) -> None:
    plain = write_run(tmp_path, results("finetune", 0, pretrain_retention={"tasks": []}))
    assert load_run(plain).retention is None
    write_report([plain], None)
    assert "Retention" not in (plain / "report.md").read_text()


@pytest.mark.parametrize(
    "record",
    [
        {"tasks": ["assembly-v3"]},
        {"tasks": ["assembly-v3"], "steps": [0], "score": [[1.0, 0.0]], "return": [[1.0]]},
        {"tasks": ["assembly-v3"], "steps": [0, 1], "score": [[1.0]], "return": [[1.0], [1.0]]},
        "not a record",
    ],
)
def test_corrupt_retention_records_are_refused_by_name(tmp_path: Path, record: Any) -> None:
    run_dir = write_run(tmp_path, results("finetune", 0, pretrain_retention=record))
    with pytest.raises(ResultsError, match="pretrain_retention"):
        load_run(run_dir)


# --------------------------------------------------------------------------------------------
# The results record (experiments/results.py)
# --------------------------------------------------------------------------------------------


def runner_payload() -> dict[str, Any]:
    """A results.json payload with every field the runner writes, in its order, plus
    agent-specific entries."""
    success = success_matrix("finetune", 0)
    returns = (np.asarray(success) * 100.0 - 3.25).tolist()
    return {
        "name": "cw3-finetune-s0",
        "method": "finetune",
        "seed": 0,
        "sequence": "CW3",
        "tasks": TASKS,
        "steps_per_task": [1000, 1000, 1000],
        "task_ends": TASK_ENDS,
        "eval_steps": EVAL_STEPS,
        "score": {"stochastic": success, "deterministic": success},
        "return": {"stochastic": returns, "deterministic": returns},
        "reference_auc": [0.25, None, 0.1],
        "single_task_auc": None,
        "metrics": {"performance": 0.2, "forward_transfer": None},
        "finished": True,
        "wall_time_s": 12.345678,
        "eval_time_s": 1.5,
        "videos": ["videos/cw3/hammer-v3/step_1000.mp4"],
        "agent": "l2m",
        "step_unit": "updates",
        "l2m_mode": "lora",
        "pretrain_retention": retention(150.0),
        "plasticity": {"metrics": [{"step": 1000, "net": "critic", "fau": 0.5}]},
    }


def test_results_record_round_trips_byte_for_byte(tmp_path: Path) -> None:
    data = runner_payload()
    text = json.dumps(data, indent=1)  # what the runner writes
    path = tmp_path / "results.json"
    path.write_text(text)
    record = read(path)
    assert record.path == path and record.run_dir == tmp_path
    assert record.to_json() == data and list(record.to_json()) == list(data)
    copy = record.write(tmp_path / "copy.json")
    assert copy.read_text() == text
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write cleaned up
    # Typed views of the agent-specific entries.
    assert record.retention is not None and record.retention.tasks == (
        "assembly-v3",
        "window-open-v3",
    )
    assert record.plasticity is not None and record.agent_results["l2m_mode"] == "lora"
    assert record.returns is not None and record.returns.stochastic.shape == (13, 3)
    assert record.steps_per_task == (1000, 1000, 1000) and record.finished
    assert record.reference_auc == (0.25, None, 0.1) and record.step_unit == "updates"


def test_record_built_in_memory_reads_back_equal(tmp_path: Path) -> None:
    success = success_matrix("packnet", 1)
    record = RunResults(
        name="r", method="packnet", seed=1, sequence="CW3", tasks=tuple(TASKS),
        task_ends=tuple(TASK_ENDS[:2]), eval_steps=tuple(EVAL_STEPS),
        score=PolicyScores.from_rows(success, success, (len(EVAL_STEPS), len(TASKS))),
        metrics={}, agent_results={"memory": "hcam"},
    )  # fmt: skip
    path = record.write(tmp_path / "results.json")
    with pytest.raises(ResultsError, match="'task_ends' has 2 entries, expected 3"):
        read(path)  # a run still training: its last task has not ended
    again = read(path, partial=True)
    assert again.to_json() == record.to_json()
    assert again.path == path and record.path is None
    assert not again.evaluated_to_end and again.agent_results == {"memory": "hcam"}
    with pytest.raises(ValueError, match="task_ends"):
        _ = again.matrix


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("name", "", "'name' must be a non-empty string"),
        ("method", 3, "'method' must be a non-empty string"),
        ("tasks", [], "'tasks' must be a non-empty list of task names"),
        ("task_ends", [1000, 2000.5, 3000], "'task_ends' must be a list of integers"),
        ("eval_steps", [], "'eval_steps' is empty"),
        ("score", [[0.1]], "missing key.*'score.stochastic'"),
        ("score.deterministic", [[0.5, 0.5, 0.5]], "'score.deterministic' must have one row"),
        ("reference_auc", [0.1, "x", None], "'reference_auc' entries must be numbers or null"),
        ("metrics", [1], "'metrics' must be an object or null"),
        ("wall_time_s", "long", "'wall_time_s' must be a number or null"),
        ("single_task_auc", True, "'single_task_auc' must be a number or null"),
        ("return", {"deterministic": []}, "'return' must be an object with a 'stochastic'"),
        ("return.stochastic", [[1.0, 2.0]], "'return.stochastic' must have one row"),
        ("steps_per_task", [1000], "'steps_per_task' has 1 entries, expected 3"),
        ("videos", [1], "'videos' must be a list of paths"),
        ("agent", 5, "'agent' must be a string or null"),
        ("finished", "yes", "'finished' must be true or false"),
    ],
)
def test_each_corrupt_field_is_named(tmp_path: Path, path: str, value: Any, message: str) -> None:
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps(_corrupt(runner_payload(), path, value)))
    with pytest.raises(ResultsError, match=message) as caught:
        read(results_file)
    assert str(caught.value).startswith(f"{results_file} is corrupt: ")
    assert "\n" not in str(caught.value)


def test_partial_records_still_refuse_more_task_ends_than_tasks(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(runner_payload() | {"task_ends": [1, 2, 3, 4]}))
    with pytest.raises(ResultsError, match="'task_ends' has 4 entries, expected 3"):
        read(path, partial=True)


def test_unreadable_results_files(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="cannot read"):
        read(tmp_path / "missing.json")
    binary = tmp_path / "results.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ResultsError, match="not UTF-8"):
        read(binary)


def test_md_table_escapes_and_aligns() -> None:
    table = md_table(["a", "b|c", "d"], [["x|y", "1", "z"]], "lr")
    assert table.splitlines() == [
        "| a | b\\|c | d |",
        "| --- | ---: | --- |",
        "| x\\|y | 1 | z |",
    ]
