"""`kdnmt study` through the CLI: a 2×2 grid (student size × noise level) of tiny students
(methods word, seq, hybrid; greedy and beam 2) on tiny real data with the fixture teacher
adopted; stopped after four cells, one cell interrupted by hand, then finished without
retraining anything; study.csv, study.md and the plots checked against the runs."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import TINY_MODEL, assert_clean_error, no_temp_files, run_cli

STEPS = 10
SIZES = ("nano", "pico")
NOISE = ("0", "moderate")
METHODS = ("word", "seq", "hybrid")
TRAINING = {"batch_size": 512, "valid_steps": 10, "save_steps": 10, "report_every": 5,
            "learning_rate": 1.0, "warmup_steps": 20}


def grid_dict(trained_run: Path, corpus: dict[str, str]) -> dict:
    teacher = trained_run / "models" / "teacher"
    return {
        "src": "de", "tgt": "en",
        "data": {"train": corpus["train"], "valid": corpus["valid"], "test": corpus["test"],
                 "train_lines": 800},
        "teacher": {"checkpoint": str(teacher / "model_step_40.pt"),
                    "spm": str(trained_run / "spm.model"), "vocab": str(trained_run / "vocab.txt")},
        "students": {"nano": {"preset": "tiny", "model": TINY_MODEL},
                     "pico": {"preset": "tiny", "model": {**TINY_MODEL, "hidden_size": 16,
                                                          "ff_size": 32}}},
        "sizes": list(SIZES),
        "noise": [0, "moderate"],  # a bare 0 is read as the level "0"
        "methods": list(METHODS),
        "decoding": ["greedy", "beam2"],
        "budget": {"steps": STEPS, "max_minutes": 5},
        "student_config": "student.yaml",  # relative: resolved against the grid's directory
        "method_options": {"word": {"alpha": 0.5}},
        "generate": {"beam": 2, "soft_targets": 4, "max_length": 60},
        "advise": {"sample": 40},
    }


def write_grid(directory: Path, data: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "student.yaml").write_text(yaml.safe_dump({"training": TRAINING}))
    path = directory / "grid.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def digest(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def cell_files(run: Path, level: str, name: str) -> dict[str, tuple[str, int]]:
    model = run / f"noise-{level}" / "models" / name
    return {p.name: digest(p) for p in sorted(model.glob("*")) if p.suffix in (".pt", ".json")}


def finished(run: Path) -> set[tuple[str, str]]:
    return {(p.parent.parent.parent.name.removeprefix("noise-"), p.parent.name)
            for p in run.glob("noise-*/models/*/model.json") if p.parent.name != "teacher"}


@pytest.mark.slow
def test_study_grid_stops_resumes_and_reports(trained_run: Path, corpus: dict[str, str],
                                              tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "grid", grid_dict(trained_run, corpus))
    run = tmp_path / "study"

    # 1. the first four cells only (noise 0: nano word/seq/hybrid, pico word)
    result = run_cli("study", "--run", run, "--grid", grid, "--max-cells", "4")
    assert result.exit_code == 0, result.output
    assert "stopped after 4 trained cells" in result.stdout
    assert finished(run) == {("0", "nano-word"), ("0", "nano-seq"), ("0", "nano-hybrid"),
                             ("0", "pico-word")}
    assert not (run / "noise-moderate").exists()  # not reached: nothing prepared there
    with open(run / "study.csv", encoding="utf-8") as handle:
        partial = list(csv.DictReader(handle))
    assert len(partial) == 2 * (4 + 1)  # 4 cells and the teacher, 2 decodings each
    before = {name: cell_files(run, "0", name)
              for name in ("nano-word", "nano-seq", "nano-hybrid", "pico-word")}

    # 2. a cell interrupted after a first checkpoint: trained 5 steps by hand, model.json gone
    config = run / "configs" / "pico.yaml"
    assert yaml.safe_load(config.read_text())["model"]["hidden_size"] == 16
    result = run_cli("distill", "--run", run / "noise-0", "--name", "pico-seq", "--method",
                     "seq", "--config", config, "--steps", "5")
    assert result.exit_code == 0, result.output
    (run / "noise-0" / "models" / "pico-seq" / "model.json").unlink()
    # ... after 2 of its 5 minutes: the resumed session gets what is left of the budget
    state = run / "noise-0" / "study" / "pico-seq.json"
    state.write_text(json.dumps({"seconds": 120.0, "sessions": 1}))

    # 3. the rest: finished cells untouched, the interrupted one resumed
    result = run_cli("study", "--run", run, "--grid", grid)
    assert result.exit_code == 0, result.output
    assert "4 of 12 cells already finished" in result.stdout
    assert "study done: 12 of 12 cells (8 trained now" in result.stdout
    assert len(finished(run)) == 12
    for name, files in before.items():
        assert cell_files(run, "0", name) == files, name  # not retrained, not rewritten
    resumed = run / "noise-0" / "models" / "pico-seq"
    assert json.loads((resumed / "model.json").read_text())["step"] == STEPS
    assert "model_step_5.pt" in (resumed / "onmt.yaml").read_text()  # train_from
    assert yaml.safe_load((resumed / "config.yaml").read_text())["training"]["max_minutes"] == 3.0
    assert json.loads(state.read_text())["sessions"] == 2
    assert json.loads(state.read_text())["seconds"] >= 120.0
    for level in NOISE:
        for size in SIZES:
            for method in METHODS:
                info = json.loads((run / f"noise-{level}" / "models" / f"{size}-{method}"
                                   / "model.json").read_text())
                assert info["step"] == STEPS and info["method"] == method
                if method == "word":
                    assert info["hparams"]["alpha"] == 0.5
    # noise on the source side of train and test only; targets and valid are the clean ones
    clean, noisy = run / "input", run / "noise-moderate" / "input"
    assert len((clean / "train.de").read_text().splitlines()) == 800
    assert (noisy / "train.de").read_text() != (clean / "train.de").read_text()
    assert (noisy / "test.de").read_text() != (clean / "test.de").read_text()
    for name in ("train.en", "test.en", "valid.de", "valid.en"):
        assert (noisy / name).read_bytes() == (clean / name).read_bytes()
    assert (run / "noise-0" / "input" / "train.de").read_bytes() == (clean / "train.de").read_bytes()

    # 4. study.csv agrees with each run's eval.json and model.json
    with open(run / "study.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 2 * (2 * 3 + 1)  # noise × decoding × (sizes × methods + teacher)
    assert list(rows[0]) == ["noise", "size", "method", "decoding", "beam", "bleu", "chrf",
                             "ter", "tf_accuracy", "tf_perplexity", "steps", "minutes",
                             "params", "time_budget_hit", "model"]
    for row in rows:
        level_run = run / f"noise-{row['noise']}"
        name = "teacher" if row["method"] == "teacher" else f"{row['size']}-{row['method']}"
        evals = json.loads((level_run / "reports" / "eval.json").read_text())["results"]
        match = [r for r in evals if r["model"] == name and r["beam"] == int(row["beam"])]
        assert float(row["bleu"]) == match[-1]["bleu"]
        assert float(row["tf_accuracy"]) == match[-1]["tf_accuracy"]
        info = json.loads((level_run / "models" / name / "model.json").read_text())
        assert int(row["params"]) == info["parameters"]
        if name != "teacher":
            assert int(row["steps"]) == STEPS and float(row["minutes"]) >= 0
    params = {r["size"]: int(r["params"]) for r in rows if r["size"] in SIZES}
    assert params["pico"] < params["nano"]

    # 5. study.md: a table per scenario, Δ(seq − word), hybrid, advice; the plots
    md = (run / "study.md").read_text()
    for level in NOISE:
        for size in SIZES:
            assert f"### noise {level}, size {size}" in md
            assert f"| {size} | {level} |" in md  # its Δ row
    assert "Δ(sentence − token) = BLEU(seq) − BLEU(word)" in md
    assert "## Hybrid vs the best of word and seq" in md
    assert "## Advice vs the measured best" in md and "scenarios." in md
    for plot in ("bleu_vs_size", "bleu_vs_noise", "hybrid_gate"):
        data = (run / "plots" / f"{plot}.png").read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1024, plot
        assert f"(plots/{plot}.png)" in md
    assert no_temp_files(run) == []

    # 6. a third run trains nothing; --report-only rewrites the outputs alone
    everything = {(lvl, name): cell_files(run, lvl, name) for lvl, name in finished(run)}
    result = run_cli("study", "--run", run, "--grid", grid)
    assert result.exit_code == 0, result.output
    assert "12 of 12 cells already finished" in result.stdout
    assert {(lvl, name): cell_files(run, lvl, name) for lvl, name in finished(run)} == everything
    (run / "study.md").unlink()
    result = run_cli("study", "--run", run, "--grid", grid, "--report-only")
    assert result.exit_code == 0, result.output
    assert (run / "study.md").read_text() == md

    # 7. the same run with other settings is refused (its cells would not be comparable)
    changed = grid_dict(trained_run, corpus)
    changed["budget"]["steps"] = STEPS + 5
    other = write_grid(tmp_path / "other", changed)
    assert_clean_error(run_cli("study", "--run", run, "--grid", other), "budget", "other settings")


@pytest.mark.slow
def test_study_trains_its_own_teacher(corpus: dict[str, str], tiny_config: Path,
                                      tmp_path: Path) -> None:
    """teacher: {train: ...}: a teacher trained once on the clean data, adopted by every noise
    level's run (here only 'high', with baseline and seq-KD students)."""
    data = {"src": "de", "tgt": "en",
            "data": {"train": corpus["train"], "valid": corpus["valid"], "test": corpus["test"],
                     "train_lines": 500},
            "teacher": {"train": {"preset": "tiny", "steps": 20, "config": str(tiny_config),
                                  "vocab_size": 300}},
            "students": {"nano": {"preset": "tiny", "model": TINY_MODEL, "training": TRAINING}},
            "sizes": ["nano"], "noise": ["high"], "methods": ["ce", "seq"],
            "decoding": ["greedy"], "budget": {"steps": STEPS}, "advise": False}
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(data))
    run = tmp_path / "study"
    result = run_cli("study", "--run", run, "--grid", grid)
    assert result.exit_code == 0, result.output
    teacher = json.loads((run / "teacher" / "models" / "teacher" / "model.json").read_text())
    assert teacher["step"] == 20
    adopted = json.loads((run / "noise-high" / "models" / "teacher" / "model.json").read_text())
    assert adopted["imported_from"].endswith("model_step_20.pt")
    assert adopted["checkpoint_sha256"] == teacher["checkpoint_sha256"]
    assert finished(run) == {("high", "nano-ce"), ("high", "nano-seq")}
    assert not (run / "plots" / "hybrid_gate.png").exists()
    md = (run / "study.md").read_text()
    assert "no `hybrid` cell" in md and "does not run both `word` and `seq`" in md


@pytest.mark.slow
@pytest.mark.parametrize("edit, needles", [
    (lambda g: g.update(colour="blue"), ("unknown key 'colour'", "valid keys: src, tgt")),
    (lambda g: g["budget"].update(step=3), ("unknown key 'budget.step'", "valid keys: steps")),
    (lambda g: g.update(methods=["word", "magic"]), ("method 'magic' is unknown",)),
    (lambda g: g.update(noise=["0", "loud"]), ("noise level 'loud' is unknown",)),
    (lambda g: g.update(sizes=["huge"]), ("size 'huge' is neither a preset",)),
    (lambda g: g.update(decoding=["greedy", "beamy"]), ("decoding 'beamy'",)),
    (lambda g: g.update(methods=["word", "word"]), ("lists word more than once",)),
    (lambda g: g["budget"].update(steps=0), ("budget.steps must be >= 1",)),
    (lambda g: g["budget"].update(steps="many"), ("budget.steps: expected int",)),
    (lambda g: g["teacher"].update(checkpoint="missing.pt"), ("teacher.checkpoint", "does not exist")),
    (lambda g: g["data"].update(test="nowhere/test"), ("data.test", "missing file")),
    (lambda g: g.pop("budget"), ("missing key 'budget'",)),
    (lambda g: g.update(method_options={"seq": {"alpha": 0.5}}), ("method_options.seq",)),
    (lambda g: g["students"]["nano"].update(model={"heads": 3}), ("students.nano",)),
])
def test_bad_grid_is_one_clear_line(trained_run: Path, corpus: dict[str, str], tmp_path: Path,
                                    edit, needles) -> None:
    data = grid_dict(trained_run, corpus)
    edit(data)
    grid = write_grid(tmp_path / "grid", data)
    assert_clean_error(run_cli("study", "--run", tmp_path / "study", "--grid", grid), *needles)
    assert not (tmp_path / "study").exists()  # nothing written before the grid is checked


def test_grid_file_missing_or_not_yaml(tmp_path: Path) -> None:
    assert_clean_error(run_cli("study", "--run", tmp_path / "s", "--grid", tmp_path / "no.yaml"),
                       "does not exist")
    bad = tmp_path / "bad.yaml"
    bad.write_text("src: [de\n")
    assert_clean_error(run_cli("study", "--run", tmp_path / "s", "--grid", bad), "not valid YAML")


def test_study_tables_read_only_rows_of_the_whole_prepared_test(prepared_run: Path,
                                                               tmp_path: Path) -> None:
    """An `eval --limit` row (or one of another --test set) in the same report must not stand in
    for the cell's full-test row (it used to: rows were matched on model, beam and step)."""
    import shutil

    from kdnmt.evaluate import prepared_test_identity
    from kdnmt.rundir import RunDir
    from kdnmt.study.layout import eval_rows

    run = tmp_path / "run"
    shutil.copytree(prepared_run, run)
    test_id, sentences = prepared_test_identity(RunDir(run))
    rows = [{"model": "m", "beam": 1, "step": 5, "test_id": test_id, "sentences": sentences,
             "bleu": 1.0},
            {"model": "m", "beam": 1, "step": 5, "test_id": test_id, "sentences": 5,
             "bleu": 9.0},
            {"model": "m", "beam": 1, "step": 5, "test_id": "other-123", "sentences": sentences,
             "bleu": 7.0},
            {"model": "old", "beam": 1, "step": 5, "bleu": 2.0}]
    (run / "reports").mkdir(exist_ok=True)
    (run / "reports" / "eval.json").write_text(json.dumps({"results": rows}))
    assert [r["bleu"] for r in eval_rows(run)] == [1.0, 2.0]
