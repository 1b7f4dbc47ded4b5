"""Training logs through the CLI on tiny real data: metrics.csv, the learning curve
(curve.csv, `kdnmt plot`), TensorBoard, resume without duplicated rows, and the plain progress
lines printed when standard output is not a terminal (CliRunner's is not)."""

from __future__ import annotations

import csv
import math
import re
import sys
from pathlib import Path

import pytest
import yaml

from kdnmt.curves import CURVE_COLUMNS
from kdnmt.metrics import METRICS_COLUMNS
from tests.helpers import TINY_MODEL, TINY_TRAINING, no_temp_files, run_cli

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, **training: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"model": TINY_MODEL,
                                    "training": {**TINY_TRAINING, **training}}))
    return path


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _steps(rows: list[dict[str, str]], split: str) -> list[int]:
    return [int(r["step"]) for r in rows if r["split"] == split]


@pytest.fixture(scope="module")
def curved_run(prepared_run: Path, tmp_path_factory) -> Path:
    """A prepared run with model 'ce' trained 40 steps, a curve point every 20."""
    import shutil

    base = tmp_path_factory.mktemp("curved")
    run = base / "run"
    shutil.copytree(prepared_run, run)
    result = run_cli("train", "--run", run, "--name", "ce", "--preset", "tiny",
                     "--config", _config(base, bleu_every=20), "--steps", "40")
    assert result.exit_code == 0, result.output
    return run


def test_metrics_csv_has_every_report_and_validation(curved_run: Path) -> None:
    model = curved_run / "models" / "ce"
    header, rows = _rows(model / "metrics.csv")
    assert tuple(header) == METRICS_COLUMNS
    assert _steps(rows, "train") == list(range(5, 41, 5))  # report_every 5
    assert _steps(rows, "valid") == [10, 20, 30, 40]  # valid_steps 10
    for row in rows:
        assert float(row["loss"]) > 0 and float(row["ppl"]) > 1
        assert 0 <= float(row["accuracy"]) <= 100
        assert math.isclose(float(row["ppl"]), math.exp(min(float(row["loss"]), 100)),
                            rel_tol=1e-3)
        assert float(row["wall_time"]) > 1.7e9 and float(row["elapsed_s"]) > 0
        if row["split"] == "train":
            assert float(row["lr"]) > 0 and float(row["tokens_per_s"]) > 0
        else:
            assert row["lr"] == "" and row["tokens_per_s"] == ""
    elapsed = [float(r["elapsed_s"]) for r in rows]
    assert elapsed == sorted(elapsed)
    # the last validation row is the one model.json records
    import json

    info = json.loads((model / "model.json").read_text())
    last_valid = [r for r in rows if r["split"] == "valid"][-1]
    assert math.isclose(float(last_valid["loss"]), info["valid"]["loss"], rel_tol=1e-6)
    assert not no_temp_files(curved_run)


def test_curve_matches_an_independent_eval(curved_run: Path, copy_run) -> None:
    """The point at the last step is what `kdnmt eval` gives for the same model, greedy, on
    the same first valid sentences: the curve scores the real checkpoint."""
    header, rows = _rows(curved_run / "models" / "ce" / "curve.csv")
    assert tuple(header) == CURVE_COLUMNS
    assert [int(r["step"]) for r in rows] == [20, 40]
    sentences = TINY_TRAINING["bleu_sentences"]
    for row in rows:
        assert int(row["sentences"]) == sentences
        assert 0 <= float(row["bleu"]) <= 100 and 0 <= float(row["chrf"]) <= 100
        assert float(row["wall_s"]) > 0
    assert float(rows[-1]["chrf"]) > 0  # 40 updates: some characters right already
    run = copy_run(curved_run)
    result = run_cli("eval", "--run", run, "--models", "ce", "--beam", "1",
                     "--test", run / "data" / "valid", "--limit", sentences,
                     "--no-teacher-forced")
    assert result.exit_code == 0, result.output
    import json

    report = json.loads((run / "reports" / "eval.json").read_text())["results"]
    assert report[0]["bleu"] == pytest.approx(float(rows[-1]["bleu"]), abs=0.01)
    assert report[0]["chrf"] == pytest.approx(float(rows[-1]["chrf"]), abs=0.01)


def test_resume_keeps_each_step_once(prepared_run: Path, trained_run: Path, copy_run,
                                     tmp_path: Path) -> None:
    """A session stopped after its step-20 checkpoint (its rows for steps 25 and 30 written,
    the curve point of step 20 not yet) resumes to 40: every step once, and the same figures
    as the session's uninterrupted tiny teacher (trained_run: same data, seed and schedule)."""
    run = copy_run(prepared_run)
    config = _config(tmp_path, bleu_every=20)
    args = ("train", "--run", run, "--name", "ce", "--preset", "tiny", "--config", config)
    assert run_cli(*args, "--steps", "30").exit_code == 0
    model = run / "models" / "ce"
    (model / "model_step_30.pt").unlink()
    (model / "model.json").unlink()
    header, curve = _rows(model / "curve.csv")
    assert [r["step"] for r in curve] == ["20", "30"]
    with open(model / "curve.csv", "w", encoding="utf-8") as handle:  # killed before point 20
        handle.write(",".join(header) + "\n")
    with open(model / "metrics.csv", "a", encoding="utf-8") as handle:
        handle.write("35,train,4.1")  # and a row cut short by the kill
    result = run_cli("train", "--run", run, "--name", "ce", "--resume", "--steps", "40")
    assert result.exit_code == 0, result.output
    _, rows = _rows(model / "metrics.csv")
    assert _steps(rows, "train") == list(range(5, 41, 5))
    assert _steps(rows, "valid") == [10, 20, 30, 40]
    _, curve = _rows(model / "curve.csv")
    assert [int(r["step"]) for r in curve] == [20, 40]
    _, reference = _rows(trained_run / "models" / "teacher" / "metrics.csv")
    for ours, theirs in zip(rows, reference, strict=True):
        assert (ours["step"], ours["split"], ours["loss"], ours["accuracy"]) == \
            (theirs["step"], theirs["split"], theirs["loss"], theirs["accuracy"])
    _, teacher_curve = _rows(trained_run / "models" / "teacher" / "curve.csv")
    assert teacher_curve[-1]["step"] == "40"  # the default bleu_every: the last step only
    assert (curve[-1]["bleu"], curve[-1]["chrf"]) == (teacher_curve[-1]["bleu"],
                                                      teacher_curve[-1]["chrf"])


def test_distill_student_has_a_curve_and_plot_draws_every_model(trained_run: Path, copy_run,
                                                                tmp_path: Path) -> None:
    run = copy_run(trained_run)
    result = run_cli("distill", "--run", run, "--name", "student", "--method", "ce",
                     "--config", _config(tmp_path, bleu_every=10), "--steps", "20")
    assert result.exit_code == 0, result.output
    assert "greedy BLEU" in result.stdout
    _, curve = _rows(run / "models" / "student" / "curve.csv")
    assert [int(r["step"]) for r in curve] == [10, 20]
    result = run_cli("plot", "--run", run)
    assert result.exit_code == 0, result.output
    png = run / "reports" / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert re.search(r"^student: 2 points, last step 20", result.stdout, re.M)
    assert re.search(r"^teacher: 1 point, last step 40", result.stdout, re.M)
    svg = tmp_path / "plots" / "student.svg"
    result = run_cli("plot", "--run", run, "--models", "student", "--out", svg)
    assert result.exit_code == 0, result.output
    assert "<svg" in svg.read_text() and "teacher:" not in result.stdout
    assert not no_temp_files(run) and not no_temp_files(tmp_path)


def test_a_warm_started_model_continues_its_parents_curve(trained_run: Path, copy_run,
                                                         tmp_path: Path) -> None:
    """`--init-from teacher` (40 updates): the student's points are drawn at 40 + its own
    steps, labelled with the model it continues; its curve.csv keeps its own steps."""
    from kdnmt.curves import collect_curves, plotted_series
    from kdnmt.rundir import RunDir

    run = copy_run(trained_run)
    result = run_cli("distill", "--run", run, "--name", "tuned", "--method", "ce",
                     "--config", _config(tmp_path, bleu_every=10), "--steps", "20",
                     "--init-from", "teacher")
    assert result.exit_code == 0, result.output
    _, curve = _rows(run / "models" / "tuned" / "curve.csv")
    assert [int(r["step"]) for r in curve] == [10, 20]
    series = plotted_series(RunDir(run), collect_curves(RunDir(run), ["teacher", "tuned"]))
    assert series["teacher"][0] == [40]
    assert series["tuned (ce), from teacher at 40"][0] == [50, 60]
    result = run_cli("plot", "--run", run, "--models", "teacher,tuned")
    assert result.exit_code == 0, result.output
    assert re.search(r"^tuned: 2 points, last step 60 .* \(continues teacher from step 40\)$",
                     result.stdout, re.M)


@pytest.mark.parametrize("problem", ["no curve", "unknown model", "model without curve",
                                     "curve without points", "named twice", "bad extension"])
def test_plot_bad_input(problem: str, prepared_run: Path, trained_run: Path, copy_run,
                        tmp_path: Path) -> None:
    if problem == "no curve":
        run = prepared_run
        args: tuple[object, ...] = ()
        needle = "has a learning curve"
    elif problem == "unknown model":
        run = trained_run
        args = ("--models", "teacher,nope")
        needle = "unknown model 'nope'"
    elif problem == "model without curve":
        run = copy_run(trained_run)
        (run / "models" / "teacher" / "curve.csv").unlink()
        args = ("--models", "teacher")
        needle = "model 'teacher' has no learning curve"
    elif problem == "curve without points":
        run = copy_run(trained_run)
        curve = run / "models" / "teacher" / "curve.csv"
        curve.write_text(curve.read_text().splitlines()[0] + "\n")
        args = ("--models", "teacher")
        needle = "no learning-curve point yet"
    elif problem == "named twice":
        run = trained_run
        args = ("--models", "teacher,teacher")
        needle = "names 'teacher' twice"
    else:
        run = trained_run
        args = ("--out", tmp_path / "curves.txt")
        needle = ".png, .svg or .pdf"
    result = run_cli("plot", "--run", run, *args)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines
    assert not (run / "reports" / "curves.png").exists()
    assert not list(tmp_path.glob("curves.*"))


def test_bleu_every_zero_writes_no_curve(prepared_run: Path, copy_run, tmp_path: Path) -> None:
    run = copy_run(prepared_run)
    result = run_cli("train", "--run", run, "--name", "x", "--preset", "tiny",
                     "--config", _config(tmp_path, bleu_every=0), "--steps", "10")
    assert result.exit_code == 0, result.output
    assert not (run / "models" / "x" / "curve.csv").exists()
    assert (run / "models" / "x" / "metrics.csv").is_file()


def test_plain_progress_lines_when_not_a_terminal(prepared_run: Path, copy_run, tmp_path: Path,
                                                  monkeypatch) -> None:
    run = copy_run(prepared_run)
    config = _config(tmp_path)
    monkeypatch.setenv("KDNMT_PROGRESS_EVERY", "0")  # a line at every report
    result = run_cli("train", "--run", run, "--name", "x", "--preset", "tiny", "--config",
                     config, "--steps", "20")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("train x: ")]
    assert [line.split()[2] for line in lines] == ["0/20", "5/20", "10/20", "15/20", "20/20"]
    assert all("…" not in line for line in result.stdout.splitlines())
    assert "loss" in lines[1] and "tok/s" in lines[1] and "ETA" in lines[-1]
    assert lines[-1].endswith("ETA 0:00")
    # by default at most one line per bar every 30 s: the start and the end here
    monkeypatch.delenv("KDNMT_PROGRESS_EVERY")
    result = run_cli("train", "--run", run, "--name", "y", "--preset", "tiny", "--config",
                     config, "--steps", "20")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("train y: ")]
    assert [line.split()[2] for line in lines] == ["0/20", "20/20"]


def test_eta_follows_the_time_budget(prepared_run: Path, copy_run, tmp_path: Path,
                                     monkeypatch) -> None:
    """100,000 steps in 3 seconds: the ETA is what is left of the budget, not of the steps."""
    run = copy_run(prepared_run)
    monkeypatch.setenv("KDNMT_PROGRESS_EVERY", "0")
    result = run_cli("train", "--run", run, "--name", "x", "--preset", "tiny", "--config",
                     _config(tmp_path, bleu_every=0), "--steps", "100000",
                     "--max-minutes", "0.05")
    assert result.exit_code == 0, result.output
    etas = re.findall(r"ETA (\d+):(\d\d) \(time budget\)", result.stdout)
    assert etas, result.stdout
    assert all(int(m) * 60 + int(s) <= 3 for m, s in etas)
    assert "time budget reached" in result.stdout


def test_generate_selecting_ends_full(trained_run: Path, copy_run, monkeypatch) -> None:
    run = copy_run(trained_run)
    monkeypatch.setenv("KDNMT_PROGRESS_EVERY", "0")
    result = run_cli("generate", "--run", run, "--beam", "2", "--nbest", "2", "--select",
                     "closest")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    total = len((run / "data" / "train.sp.de").read_text().splitlines())
    assert f"selecting: {total}/{total}" in "\n".join(lines)
    assert any(line.startswith(f"decoding: {total}/{total}") for line in lines)


def test_tensorboard_missing_package_is_one_error_line(prepared_run: Path, copy_run,
                                                       tmp_path: Path, monkeypatch) -> None:
    run = copy_run(prepared_run)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    result = run_cli("train", "--run", run, "--name", "x", "--preset", "tiny", "--config",
                     _config(tmp_path, tensorboard=True), "--steps", "10")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "kdnmt[tensorboard]" in lines[0], lines
    assert not (run / "models" / "x").exists()


def test_tensorboard_events(prepared_run: Path, copy_run, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = copy_run(prepared_run)
    result = run_cli("train", "--run", run, "--name", "x", "--preset", "tiny", "--config",
                     _config(tmp_path, tensorboard=True, bleu_every=0), "--steps", "20")
    assert result.exit_code == 0, result.output
    sessions = list((run / "models" / "x" / "tensorboard").iterdir())
    assert len(sessions) == 1
    events = EventAccumulator(str(sessions[0]))
    events.Reload()
    assert [e.step for e in events.Scalars("progress/xent")] == [5, 10, 15, 20]
    assert [e.step for e in events.Scalars("valid/ppl")] == [10, 20]
    _, rows = _rows(run / "models" / "x" / "metrics.csv")
    valid = [r for r in rows if r["split"] == "valid"]
    assert [round(e.value, 3) for e in events.Scalars("valid/xent")] == \
        [round(float(r["loss"]), 3) for r in valid]


def test_role_is_recorded_and_kept_on_resume(prepared_run: Path, copy_run,
                                             tmp_path: Path) -> None:
    """model.json's role (shown by eval and export): --role when given, kept by a resume that
    does not give it, else inferred from the name."""
    import json

    run = copy_run(prepared_run)
    config = _config(tmp_path)
    args = ("train", "--run", run, "--preset", "tiny", "--config", config)
    assert run_cli(*args, "--name", "t384", "--role", "teacher", "--steps", "5").exit_code == 0
    result = run_cli("train", "--run", run, "--name", "t384", "--resume", "--steps", "10")
    assert result.exit_code == 0, result.output
    info = json.loads((run / "models" / "t384" / "model.json").read_text())
    assert (info["role"], info["step"]) == ("teacher", 10)
    assert run_cli(*args, "--name", "base", "--steps", "5").exit_code == 0
    assert json.loads((run / "models" / "base" / "model.json").read_text())["role"] == "student"
