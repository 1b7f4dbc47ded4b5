"""`kdnmt eval --baseline`: paired significance through the CLI, checked against sacrebleu's
own tests on the hypothesis files eval wrote; reproducible; stale comparisons dropped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from kdnmt.significance import SEED, _sacrebleu_seed
from tests.helpers import assert_clean_error, run_cli

pytestmark = pytest.mark.slow  # every test here trains or decodes with a trained model


@pytest.fixture(scope="module")
def two_models(trained_run: Path, tiny_config: Path, tmp_path_factory) -> Path:
    """The trained tiny teacher and a second, shorter-trained model 'short'."""
    run = tmp_path_factory.mktemp("sig") / "run"
    shutil.copytree(trained_run, run)
    result = run_cli("train", "--run", run, "--name", "short", "--preset", "tiny",
                     "--config", tiny_config, "--steps", "20")
    assert result.exit_code == 0, result.output
    return run


def rows_of(run: Path) -> list[dict]:
    return json.loads((run / "reports" / "eval.json").read_text())["results"]


def lines(run: Path, row: dict) -> list[str]:
    return (run / "reports" / row["hypotheses"]).read_text(encoding="utf-8").splitlines()


ARGS = ("--bootstrap", "200", "--ar-trials", "300", "--no-teacher-forced")


def test_baseline_comparison_matches_sacrebleu(two_models: Path, copy_run) -> None:
    run = copy_run(two_models)
    # the baseline is not in --models: it is added (and evaluated first)
    result = run_cli("eval", "--run", run, "--models", "teacher", "--baseline", "short",
                     "--beam", "1,2", *ARGS)
    assert result.exit_code == 0, result.output
    assert "paired tests against short" in result.stdout
    rows = rows_of(run)
    assert [(r["model"], r["beam"]) for r in rows] == [("short", 1), ("short", 2),
                                                       ("teacher", 1), ("teacher", 2)]
    references = (run / "data" / "test.en").read_text(encoding="utf-8").splitlines()
    for row in rows:
        if row["model"] == "short":
            assert "significance" not in row
            continue
        sig = row["significance"]
        base = next(r for r in rows if r["model"] == "short" and r["beam"] == row["beam"])
        assert sig["baseline"] == "short" and sig["seed"] == SEED
        assert (sig["bootstrap_resamples"], sig["ar_trials"]) == (200, 300)
        assert sig["baseline_checkpoint_sha256"] == base["checkpoint_sha256"]
        assert sig["bleu"]["delta"] == pytest.approx(row["bleu"] - base["bleu"], abs=0.011)
        assert sig["chrf"]["delta"] == pytest.approx(row["chrf"] - base["chrf"], abs=0.011)
        # sacrebleu's own tests on the files eval wrote give the same p-values
        named = [("short", lines(run, base)), ("teacher", lines(run, row))]
        for test_type, n, key in (("bs", 200, "p_bootstrap"), ("ar", 300, "p_ar")):
            with _sacrebleu_seed(SEED):
                _, scores = PairedTest(named, {"BLEU": BLEU(trg_lang="en"), "chrF": CHRF()},
                                       [references], test_type=test_type, n_samples=n)()
            assert sig["bleu"][key] == round(scores["BLEU"][1].p_value, 4)
            assert sig["chrf"][key] == round(scores["chrF2"][1].p_value, 4)
        for metric in ("bleu", "chrf"):
            low, high = sig[metric]["ci95"]
            assert low <= sig[metric]["delta"] <= high
            both = sig[metric]["p_bootstrap"] < 0.05 and sig[metric]["p_ar"] < 0.05
            # an observed difference of 0 (both tiny models may score BLEU 0) is never one
            assert sig[metric]["significant"] == (both and sig[metric]["delta"] != 0)
            if sig[metric].get("note"):
                assert sig[metric]["note"] == "no difference" and sig[metric]["delta"] == 0
    md = (run / "reports" / "eval.md").read_text(encoding="utf-8")
    assert "## Paired significance against the baseline" in md
    teacher1 = next(r for r in rows if r["model"] == "teacher" and r["beam"] == 1)
    s = teacher1["significance"]["bleu"]
    verdict = "significant" if s["significant"] else "not significant"
    if s.get("note"):
        verdict += f" ({s['note']})"
    assert (f"| teacher (step 40) | short (step 20) | 1 | 60 | {s['delta']:+.2f} [{s['ci95'][0]:+.2f}, "
            f"{s['ci95'][1]:+.2f}] | {s['p_bootstrap']:.3f} / {s['p_ar']:.3f} | {verdict} |") in md
    assert "- BLEU, paired bootstrap: `nrefs:1|bs:200|seed:12345|" in md
    assert "- chrF, approximate randomization: `nrefs:1|ar:300|seed:12345|" in md

    # reproducible: the same call gives the same comparison
    before = {(r["model"], r["beam"]): r.get("significance") for r in rows}
    assert run_cli("eval", "--run", run, "--models", "teacher", "--baseline", "short",
                   "--beam", "1,2", *ARGS).exit_code == 0
    assert {(r["model"], r["beam"]): r.get("significance") for r in rows_of(run)} == before

    # re-evaluating the teacher without --baseline keeps its comparison (same output) ...
    assert run_cli("eval", "--run", run, "--models", "teacher", "--beam", "1",
                   "--no-teacher-forced").exit_code == 0
    kept = next(r for r in rows_of(run) if r["model"] == "teacher" and r["beam"] == 1)
    assert kept["significance"] == before[("teacher", 1)]
    # ... and names the baseline's step once the baseline is retrained and evaluated again
    assert run_cli("train", "--run", run, "--name", "short", "--resume",
                   "--steps", "30").exit_code == 0
    assert run_cli("eval", "--run", run, "--models", "teacher", "--baseline", "short",
                   "--beam", "1", *ARGS).exit_code == 0
    md = (run / "reports" / "eval.md").read_text(encoding="utf-8")
    table = md.split("## Paired significance")[1].split("\n\n")[1]
    assert "| teacher (step 40) | short (step 30) | 1 |" in table
    assert "| teacher (step 40) | short (step 20) | 2 |" in table
    assert "| teacher (step 40) | short (step 20) | 1 |" not in table  # replaced
    # a comparison whose baseline output is no longer the one tested is left out
    report = json.loads((run / "reports" / "eval.json").read_text())
    for row in report["results"]:
        if row["model"] == "short" and row["beam"] == 2:
            row["hypotheses_sha256"] = "0" * 64
    (run / "reports" / "eval.json").write_text(json.dumps(report))
    assert run_cli("eval", "--run", run, "--models", "teacher", "--beam", "1",
                   "--no-teacher-forced").exit_code == 0
    table = (run / "reports" / "eval.md").read_text().split("## Paired significance")[1]
    assert "| 2 | 60 |" not in table.split("\n\n")[1]


def test_identical_models_are_not_significant(two_models: Path, copy_run) -> None:
    """A copy of the teacher under another name decodes the same output: no difference."""
    run = copy_run(two_models)
    shutil.copytree(run / "models" / "teacher", run / "models" / "twin")
    info = json.loads((run / "models" / "twin" / "model.json").read_text())
    info["name"] = "twin"
    (run / "models" / "twin" / "model.json").write_text(json.dumps(info))
    result = run_cli("eval", "--run", run, "--models", "teacher,twin", "--baseline", "teacher",
                     "--beam", "1", *ARGS)
    assert result.exit_code == 0, result.output
    twin = next(r for r in rows_of(run) if r["model"] == "twin")
    assert twin["significance"]["bleu"]["delta"] == 0
    assert not twin["significance"]["bleu"]["significant"]
    assert "not significant (identical output)" in (run / "reports" / "eval.md").read_text()


@pytest.mark.parametrize("args, needle", [
    (("--models", "teacher", "--baseline", "teacher"), "needs another model"),
    (("--models", "teacher", "--baseline", "nope"), "unknown model 'nope'"),
    (("--models", "teacher", "--baseline", "short", "--bootstrap", "10"),
     "--bootstrap must be >= 100"),
    (("--models", "teacher", "--baseline", "short", "--ar-trials", "0"),
     "--ar-trials must be >= 100"),
])
def test_bad_baseline_arguments(two_models: Path, args: tuple[str, ...], needle: str) -> None:
    assert_clean_error(run_cli("eval", "--run", two_models, "--beam", "1", *args), needle)
    assert not (two_models / "reports").exists()
