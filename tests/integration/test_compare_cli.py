"""`kdnmt compare`: paired tests between every pair of evaluated models, through the CLI, from
the translations eval wrote; checked against sacrebleu's own tests; bad input refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from kdnmt.significance import SEED, _sacrebleu_seed
from tests.helpers import assert_clean_error, run_cli

pytestmark = pytest.mark.slow  # trains and decodes

ARGS = ("--bootstrap", "200", "--ar-trials", "300")


@pytest.fixture(scope="module")
def evaluated(trained_run: Path, tiny_config: Path, tmp_path_factory) -> Path:
    """teacher (40 updates), short (20 updates) and twin (a copy of teacher), evaluated at
    beams 1 and 2 on the first 40 test pairs."""
    run = tmp_path_factory.mktemp("compare") / "run"
    shutil.copytree(trained_run, run)
    result = run_cli("train", "--run", run, "--name", "short", "--preset", "tiny",
                     "--config", tiny_config, "--steps", "20")
    assert result.exit_code == 0, result.output
    shutil.copytree(run / "models" / "teacher", run / "models" / "twin")
    info = json.loads((run / "models" / "twin" / "model.json").read_text())
    (run / "models" / "twin" / "model.json").write_text(json.dumps({**info, "name": "twin"}))
    result = run_cli("eval", "--run", run, "--models", "teacher,short,twin", "--beam", "1,2",
                     "--limit", "40", "--no-teacher-forced")
    assert result.exit_code == 0, result.output
    return run


def eval_rows(run: Path) -> list[dict]:
    return json.loads((run / "reports" / "eval.json").read_text())["results"]


def hypotheses(run: Path, model: str, beam: int) -> list[str]:
    row = next(r for r in eval_rows(run) if r["model"] == model and r["beam"] == beam)
    return (run / "reports" / row["hypotheses"]).read_text(encoding="utf-8").splitlines()


def test_every_pair_matches_sacrebleu(evaluated: Path, copy_run) -> None:
    run = copy_run(evaluated)
    eval_before = (run / "reports" / "eval.json").read_bytes()
    result = run_cli("compare", "--run", run, "--models", "short,teacher,twin", *ARGS)
    assert result.exit_code == 0, result.output
    assert "Δ = A − B" in result.stdout
    report = json.loads((run / "reports" / "compare.json").read_text())
    got = [(c["a"], c["b"], c["beam"]) for c in report["comparisons"]]
    assert got == [("short", "teacher", 1), ("short", "twin", 1), ("teacher", "twin", 1),
                   ("short", "teacher", 2), ("short", "twin", 2), ("teacher", "twin", 2)]
    assert (run / "reports" / "eval.json").read_bytes() == eval_before  # eval is not touched
    references = (run / "data" / "test.en").read_text(encoding="utf-8").splitlines()[:40]
    rows = eval_rows(run)
    for comp in report["comparisons"]:
        a, b = comp["a"], comp["b"]
        row_a = next(r for r in rows if r["model"] == a and r["beam"] == comp["beam"])
        row_b = next(r for r in rows if r["model"] == b and r["beam"] == comp["beam"])
        assert (comp["a_bleu"], comp["b_bleu"], comp["sentences"]) == (row_a["bleu"],
                                                                      row_b["bleu"], 40)
        assert comp["bleu"]["delta"] == pytest.approx(row_a["bleu"] - row_b["bleu"], abs=0.011)
        assert comp["chrf"]["delta"] == pytest.approx(row_a["chrf"] - row_b["chrf"], abs=0.011)
        hyp_a, hyp_b = hypotheses(run, a, comp["beam"]), hypotheses(run, b, comp["beam"])
        if hyp_a == hyp_b:  # twin and teacher decode the same
            assert comp["bleu"]["note"] == "identical output"
            assert not comp["bleu"]["significant"]
            continue
        # sacrebleu's own tests, B as its baseline, give the same p-values
        named = [(b, hyp_b), (a, hyp_a)]
        for test_type, n, key in (("bs", 200, "p_bootstrap"), ("ar", 300, "p_ar")):
            with _sacrebleu_seed(SEED):
                _, scores = PairedTest(named, {"BLEU": BLEU(trg_lang="en"), "chrF": CHRF()},
                                       [references], test_type=test_type, n_samples=n)()
            assert comp["bleu"][key] == round(scores["BLEU"][1].p_value, 4)
            assert comp["chrf"][key] == round(scores["chrF2"][1].p_value, 4)
    assert ("teacher", "twin") in {(c["a"], c["b"]) for c in report["comparisons"]
                                   if c["bleu"].get("note") == "identical output"}
    md = (run / "reports" / "compare.md").read_text(encoding="utf-8")
    assert "| short (step 20) | teacher (step 40) | 1 | 40 |" in md
    assert "not significant (identical output)" in md

    # one beam, one pair again: replaces that comparison, keeps the others
    result = run_cli("compare", "--run", run, "--models", "short,teacher", "--beam", "2",
                     "--bootstrap", "150", "--ar-trials", "300")
    assert result.exit_code == 0, result.output
    again = json.loads((run / "reports" / "compare.json").read_text())["comparisons"]
    assert len(again) == 6
    assert [c["bootstrap_resamples"] for c in again if c["beam"] == 2
            and (c["a"], c["b"]) == ("short", "teacher")] == [150]


def test_tampered_translations_are_refused(evaluated: Path, copy_run) -> None:
    run = copy_run(evaluated)
    row = next(r for r in eval_rows(run) if r["model"] == "short" and r["beam"] == 1)
    path = run / "reports" / row["hypotheses"]
    path.write_text(path.read_text(encoding="utf-8") + "extra\n", encoding="utf-8")
    assert_clean_error(run_cli("compare", "--run", run, "--models", "teacher,short",
                               "--beam", "1", *ARGS),
                       "translations of 'short' changed since eval scored them")
    assert not (run / "reports" / "compare.json").exists()


@pytest.mark.parametrize("args, needle", [
    (("--models", "teacher"), "at least two different models"),
    (("--models", "teacher,ce"), "no eval of model 'ce'"),
    (("--models", "teacher,short", "--beam", "5"), "no eval of teacher, short at beam 5"),
    (("--models", "teacher,../x"), "name"),
])
def test_bad_arguments(evaluated: Path, args: tuple[str, ...], needle: str) -> None:
    assert_clean_error(run_cli("compare", "--run", evaluated, *args), needle)
    assert not (evaluated / "reports" / "compare.json").exists()


def test_latest_shared_setting_is_used(evaluated: Path, copy_run) -> None:
    """A later quick eval of one model (30 sentences) does not hide the 40-sentence rows both
    models share; where they share none, compare refuses."""
    run = copy_run(evaluated)
    assert run_cli("eval", "--run", run, "--models", "short", "--beam", "1", "--limit", "30",
                   "--no-teacher-forced").exit_code == 0
    result = run_cli("compare", "--run", run, "--models", "teacher,short", "--beam", "1", *ARGS)
    assert result.exit_code == 0, result.output
    (comp,) = json.loads((run / "reports" / "compare.json").read_text())["comparisons"]
    short40 = next(r for r in eval_rows(run) if r["model"] == "short" and r["beam"] == 1
                   and r["sentences"] == 40)
    assert (comp["sentences"], comp["b_hypotheses_sha256"]) == (40, short40["hypotheses_sha256"])
    # both at 40 later: the newest shared setting wins
    assert run_cli("eval", "--run", run, "--models", "teacher,short", "--beam", "1", "--limit",
                   "30", "--no-teacher-forced").exit_code == 0
    assert run_cli("compare", "--run", run, "--models", "teacher,short", "--beam", "1",
                   *ARGS).exit_code == 0
    rows = json.loads((run / "reports" / "compare.json").read_text())["comparisons"]
    assert sorted(r["sentences"] for r in rows) == [30, 40]
    # beam 3: teacher on 20 sentences, short on 30: nothing shared
    for name, limit in (("teacher", "20"), ("short", "30")):
        assert run_cli("eval", "--run", run, "--models", name, "--beam", "3", "--limit", limit,
                       "--no-teacher-forced").exit_code == 0
    before = (run / "reports" / "compare.json").read_bytes()
    assert_clean_error(run_cli("compare", "--run", run, "--models", "teacher,short",
                               "--beam", "3", *ARGS), "never evaluated with the same sentence")
    assert (run / "reports" / "compare.json").read_bytes() == before


def test_missing_or_rescored_translations_are_refused(evaluated: Path, copy_run) -> None:
    run = copy_run(evaluated)
    report = json.loads((run / "reports" / "eval.json").read_text())
    row = next(r for r in report["results"] if r["model"] == "short" and r["beam"] == 1)
    row["bleu"] += 1.5
    (run / "reports" / "eval.json").write_text(json.dumps(report))
    assert_clean_error(run_cli("compare", "--run", run, "--models", "teacher,short",
                               "--beam", "1", *ARGS), "its eval row says")
    (run / "reports" / row["hypotheses"]).unlink()
    assert_clean_error(run_cli("compare", "--run", run, "--models", "teacher,short",
                               "--beam", "1", *ARGS), "translations of 'short' are missing")
    assert not (run / "reports" / "compare.json").exists()


@pytest.mark.parametrize("content, needle", [
    ("{not json", "is damaged"),
    ('{"format": 1, "comparisons": {"a": 1}}', "is damaged"),
    ('{"format": 1, "comparisons": [{"a": "x"}]}', "is damaged"),
    ('[1]', "is damaged"),
    ('{"format": 99, "comparisons": []}', "written by a newer kdnmt"),
])
def test_damaged_report_is_refused_before_the_tests(evaluated: Path, copy_run, content: str,
                                                    needle: str) -> None:
    run = copy_run(evaluated)
    (run / "reports" / "compare.json").write_text(content)
    assert_clean_error(run_cli("compare", "--run", run, "--models", "teacher,short", *ARGS),
                       needle)
    assert (run / "reports" / "compare.json").read_text() == content
    assert not (run / "reports" / "compare.md").exists()


@pytest.mark.parametrize("signature, tokenizer", [
    ("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.4.3", "13a"),
    ("nrefs:1|case:mixed|eff:no|tok:ja-mecab-0.996-IPA|smooth:exp|version:2.4.3", "ja-mecab"),
    ("nrefs:1|case:mixed|eff:no|tok:ko-mecab-0.996/ko-0.9.2-KO|smooth:exp|version:2.4.3",
     "ko-mecab"),
    ("nrefs:1|case:mixed|eff:no|tok:zh|smooth:exp|version:2.4.3", "zh"),
])
def test_bleu_tokenizer_from_signature(signature: str, tokenizer: str) -> None:
    from kdnmt.compare import bleu_tokenizer

    assert bleu_tokenizer({"model": "m", "bleu_signature": signature}) == tokenizer
