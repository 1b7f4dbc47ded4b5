"""`kdnmt advise` on the tiny trained run: signals measured, a recommendation, advice.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kdnmt.corpus.noise import noise_file
from kdnmt.study.advise import PROBE_NAME, advise
from kdnmt.study.rule import recommend
from tests.helpers import no_temp_files, run_cli

pytestmark = pytest.mark.slow  # every test here trains or decodes with a trained model


def _assert_clean_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_advise_cli_writes_consistent_advice(trained_run: Path, copy_run) -> None:
    run = copy_run(trained_run)
    result = run_cli("advise", "--run", run, "--student-preset", "tiny", "--sample", "40")
    assert result.exit_code == 0, result.output
    advice = json.loads((run / "reports" / "advice.json").read_text())
    assert advice["method"] in ("word", "seq", "hybrid")
    assert f"recommendation: {advice['method']}" in result.stdout
    assert "capacity ratio" in result.stdout and "decoding gap" in result.stdout
    s = advice["signals"]
    teacher = json.loads((run / "models" / "teacher" / "model.json").read_text())
    assert s["teacher_parameters"] == teacher["parameters"]
    assert abs(s["capacity_ratio"] - s["student_parameters"] / s["teacher_parameters"]) < 1e-3
    assert s["sample_sentences"] == 40
    for key in ("unc_mean", "unc_median", "unc_share_above_half", "tf_accuracy", "free_accuracy"):
        assert 0.0 <= s[key] <= 1.0, key
    assert s["teacher_entropy"] > 0 and s["ppl_data"] > 1 and s["ppl_valid"] > 1
    assert abs(s["noise_ratio"] - s["ppl_data"] / s["ppl_valid"]) < 1e-2
    assert abs(s["decoding_gap"] - (s["tf_accuracy"] - s["free_accuracy"])) < 1e-3
    # the recorded decision is the rule applied to the recorded signals
    method, scenario, reasons, votes = recommend(s)
    assert (advice["method"], advice["scenario"], advice["reasons"], advice["votes"]) == \
        (method, scenario, reasons, votes)
    assert advice["inputs"]["student_preset"] == "tiny"
    assert advice["inputs"]["thresholds"]["capacity"]["signal"] == "capacity_ratio"
    assert not no_temp_files(run)


def test_advise_on_noisy_data_with_a_probe(trained_run: Path, copy_run, corpus: dict[str, str],
                                           tmp_path: Path) -> None:
    from kdnmt.corpus.spm import Tokenizer
    from kdnmt.onmt_bridge.inference import teacher_forced_metrics

    run = copy_run(trained_run)
    noisy_prefix = tmp_path / "noisy"
    noise_file(Path(corpus["test"] + ".de"), Path(f"{noisy_prefix}.de"), "high", seed=1)
    shutil.copy(corpus["test"] + ".en", f"{noisy_prefix}.en")
    # --sample above the 60 test pairs: all of them are measured
    noisy = advise(run, "tiny", test_prefix=noisy_prefix, sample=100, probe_steps=2)
    assert "noisy" in noisy.inputs["data"] and noisy.signals["sample_sentences"] == 60
    # the data signals are the teacher's on the noised text (a 40-step teacher barely reads
    # its source, so noise moves its perplexity too little to test here; the real teacher's
    # figures are in docs/advise.md)
    tok = Tokenizer(run / "spm.model")
    lines = {lang: Path(f"{noisy_prefix}.{lang}").read_text(encoding="utf-8").splitlines()
             for lang in ("de", "en")}
    direct = teacher_forced_metrics(run / "models" / "teacher" / "model_step_40.pt",
                                    [" ".join(tok.pieces(x)) for x in lines["de"]],
                                    [" ".join(tok.pieces(x)) for x in lines["en"]])
    assert abs(noisy.signals["ppl_data"] - direct["tf_perplexity"]) < 1e-2
    assert abs(noisy.signals["tf_accuracy"] - direct["tf_accuracy"]) < 1e-3
    # the probe student was measured, then removed from the run
    assert "probe_tf_accuracy" in noisy.signals and "2 steps" in noisy.inputs["probe"]
    assert not (run / "models" / PROBE_NAME).exists()
    assert not list((run / "ct2").glob(f"{PROBE_NAME}-*"))


def test_advise_with_a_ct2_only_teacher(trained_run: Path, copy_run) -> None:
    from kdnmt.models import ct2_model
    from kdnmt.rundir import RunDir

    run = copy_run(trained_run)
    converted = ct2_model(RunDir(run), "teacher", "int8")
    (run / "models" / "ct2t").mkdir()
    shutil.copytree(converted, run / "models" / "ct2t" / "ct2")
    (run / "models" / "ct2t" / "model.json").write_text(json.dumps(
        {"name": "ct2t", "role": "teacher", "ct2_only": True, "checkpoint": None,
         "parameters": None, "checkpoint_sha256": "x"}))
    advice = advise(run, "tiny", teacher="ct2t", sample=20)
    assert advice.signals["unc_mean"] is None and advice.signals["decoding_gap"] is None
    assert advice.signals["capacity_ratio"] is None
    assert 0 <= advice.signals["free_accuracy"] <= 1
    assert advice.votes == {"capacity": "missing", "uncertainty": "missing", "noise": "missing",
                            "decoding": "missing"}
    assert advice.method == "hybrid"


def test_advise_bad_input(trained_run: Path, tmp_path: Path) -> None:
    _assert_clean_error(run_cli("advise", "--run", trained_run, "--student-preset", "huge"),
                        "'huge' is not one of 'tiny'")
    _assert_clean_error(run_cli("advise", "--run", trained_run, "--student-preset", "tiny",
                                "--teacher", "nobody"), "unknown model 'nobody'")
    _assert_clean_error(run_cli("advise", "--run", trained_run, "--student-preset", "tiny",
                                "--sample", "0"), "--sample must be >= 1")
    _assert_clean_error(run_cli("advise", "--run", tmp_path / "none", "--student-preset", "tiny"),
                        "does not exist")
    _assert_clean_error(run_cli("advise", "--run", trained_run, "--student-preset", "tiny",
                                "--test", tmp_path / "missing"), "missing file")
    assert not (trained_run / "reports" / "advice.json").exists()
