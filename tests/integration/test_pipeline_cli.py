"""The spine end to end through the CLI on tiny real data: prepare, train, eval, export,
translate; resume and the time budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import no_temp_files, run_cli


def test_prepare_writes_manifest_spm_vocab(prepared_run: Path, corpus: dict[str, str]) -> None:
    manifest = json.loads((prepared_run / "manifest.json").read_text())
    assert manifest["src"] == "de" and manifest["tgt"] == "en"
    train = manifest["splits"]["train"]
    assert train["lines"] == 1500
    assert train["kept"] + train["dropped_empty"] + train["dropped_too_long"] == 1500
    assert len(train["inputs"]["de"]["sha256"]) == 64
    assert manifest["splits"]["test"]["kept"] == 60
    assert (prepared_run / "spm.model").is_file()
    pieces = (prepared_run / "data" / "train.sp.de").read_text().splitlines()
    assert len(pieces) == train["kept"]
    vocab = (prepared_run / "vocab.txt").read_text().splitlines()
    # every SentencePiece piece but <unk> is in the vocabulary (+4 OpenNMT-py specials)
    assert manifest["vocab"]["entries"] == len(vocab) + 4 == 500 - 1 + 4
    assert not no_temp_files(prepared_run)


@pytest.mark.slow
def test_train_writes_model_info_and_config(trained_run: Path) -> None:
    info = json.loads((trained_run / "models" / "teacher" / "model.json").read_text())
    assert info["step"] == 40
    assert info["checkpoint"] == "model_step_40.pt"
    assert info["parameters"] > 10_000
    assert info["valid"]["perplexity"] > 1
    saved = (trained_run / "models" / "teacher" / "config.yaml").read_text()
    assert "hidden_size: 32" in saved
    onmt = (trained_run / "models" / "teacher" / "onmt.yaml").read_text()
    assert "self_attn_type: scaled-dot\n" in onmt
    kept = json.loads((trained_run / "manifest.json").read_text())["splits"]["train"]["kept"]
    assert f"bucket_size: {kept}\n" in onmt  # sized from the small corpus, not 262144
    log = (trained_run / "models" / "teacher" / "train.log").read_text()
    assert "Saving checkpoint" in log


@pytest.mark.slow
def test_eval_reports_scores_speed_size(trained_run: Path, copy_run) -> None:
    run = copy_run(trained_run)
    result = run_cli("eval", "--run", run, "--models", "teacher", "--beam", "1,2")
    assert result.exit_code == 0, result.output
    report = json.loads((run / "reports" / "eval.json").read_text())["results"]
    assert [(r["model"], r["beam"]) for r in report] == [("teacher", 1), ("teacher", 2)]
    for row in report:
        assert row["bleu_signature"].startswith("nrefs:1|")
        assert row["sentences"] == 60
        assert row["tokens_per_second"] > 0
        assert row["size_bytes"] > 10_000
        assert 0 <= row["chrf"] <= 100
        hyps = (run / "reports" / row["hypotheses"]).read_text().splitlines()
        assert len(hyps) == 60
    md = (run / "reports" / "eval.md").read_text()
    assert "| teacher |" in md and "nrefs:1" in md
    # a second eval of one beam replaces that row, keeps the other
    result = run_cli("eval", "--run", run, "--models", "teacher", "--beam", "1")
    report = json.loads((run / "reports" / "eval.json").read_text())["results"]
    assert sorted(r["beam"] for r in report) == [1, 2]


@pytest.mark.slow
def test_export_translate_roundtrip(trained_run: Path, copy_run, tmp_path: Path,
                                    corpus: dict[str, str]) -> None:
    run = copy_run(trained_run)
    out = tmp_path / "exported"
    result = run_cli("export", "--run", run, "--model", "teacher", "--output", out)
    assert result.exit_code == 0, result.output
    assert {"model.bin", "spm.model", "kdnmt.json", "README.md"} <= {p.name for p in out.iterdir()}
    card = json.loads((out / "kdnmt.json").read_text())
    assert card["quantization"] == "int8" and card["src"] == "de"
    assert card["smoke"]["translation"]
    assert "parameters" in (out / "README.md").read_text()
    # refuses to overwrite without --force, then overwrites with it
    result = run_cli("export", "--run", run, "--model", "teacher", "--output", out)
    assert result.exit_code == 1 and "--force" in result.stderr
    result = run_cli("export", "--run", run, "--model", "teacher", "--output", out,
                     "--quantization", "float32", "--force")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "kdnmt.json").read_text())["quantization"] == "float32"
    sources = Path(corpus["test"] + ".de").read_text().splitlines()[:7]
    result = run_cli("translate", "--model", out, "--beam", "2", input="\n".join(sources) + "\n")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 7
    assert not no_temp_files(tmp_path)


@pytest.mark.slow
def test_resume_continues_from_last_checkpoint(prepared_run: Path, copy_run,
                                               tiny_config: Path) -> None:
    run = copy_run(prepared_run)
    args = ("train", "--run", run, "--name", "ce", "--preset", "tiny", "--config", tiny_config)
    assert run_cli(*args, "--steps", "20").exit_code == 0
    # same name again without --resume/--force is refused
    again = run_cli(*args, "--steps", "20")
    assert again.exit_code == 1 and "--resume" in again.stderr
    result = run_cli("train", "--run", run, "--name", "ce", "--resume", "--steps", "30")
    assert result.exit_code == 0, result.output
    info = json.loads((run / "models" / "ce" / "model.json").read_text())
    assert info["step"] == 30 and info["checkpoint"] == "model_step_30.pt"
    log = (run / "models" / "ce" / "train.log").read_text()
    assert "Loading checkpoint" in log or "model_step_20.pt" in log


@pytest.mark.slow
def test_time_budget_stops_and_saves(prepared_run: Path, copy_run, tiny_config: Path) -> None:
    run = copy_run(prepared_run)
    result = run_cli("train", "--run", run, "--name", "budget", "--preset", "tiny",
                     "--config", tiny_config, "--steps", "100000", "--max-minutes", "0.02")
    assert result.exit_code == 0, result.output
    info = json.loads((run / "models" / "budget" / "model.json").read_text())
    assert info["stopped_by_time_budget"] is True
    assert 0 < info["step"] < 100000
    assert (run / "models" / "budget" / info["checkpoint"]).is_file()
