"""`kdnmt eval`'s teacher-forced columns: present, sane, and equal to a direct computation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.helpers import run_cli

pytestmark = pytest.mark.slow  # every test here trains or decodes with a trained model


def _pieces(run: Path, split: str, lang: str, n: int) -> list[str]:
    return (run / "data" / f"{split}.sp.{lang}").read_text(encoding="utf-8").splitlines()[:n]


def test_eval_reports_teacher_forced_metrics(trained_run: Path, copy_run) -> None:
    run = copy_run(trained_run)
    result = run_cli("eval", "--run", run, "--models", "teacher", "--beam", "1,2",
                     "--limit", "12")
    assert result.exit_code == 0, result.output
    assert "tf acc" in result.stdout and "tf ppl" in result.stdout
    rows = json.loads((run / "reports" / "eval.json").read_text())["results"]
    assert len(rows) == 2
    for row in rows:
        assert 0.0 <= row["tf_accuracy"] <= 1.0
        assert row["tf_perplexity"] > 1.0
        assert row["tf_sentences"] == 12 and row["tf_tokens"] > 12
    assert rows[0]["tf_accuracy"] == rows[1]["tf_accuracy"]  # one value per model
    md = (run / "reports" / "eval.md").read_text()
    assert "| tf acc | tf ppl |" in md and f"{100 * rows[0]['tf_accuracy']:.1f}%" in md

    # a direct computation, one sentence at a time (no batching, no padding)
    from kdnmt.onmt_bridge.inference import forced_log_probs, load_frozen_model

    frozen = load_frozen_model(run / "models" / "teacher" / "model_step_40.pt")
    correct = tokens = 0
    nll = 0.0
    for s, t in zip(_pieces(run, "test", "de", 12), _pieces(run, "test", "en", 12), strict=True):
        gold = frozen.ids(t.split()) + [frozen.eos]
        logp, mask = forced_log_probs(frozen, [frozen.ids(s.split())], [frozen.ids(t.split())])
        assert bool(mask.all()) and logp.shape[1] == len(gold)
        for j, g in enumerate(gold):
            correct += int(int(logp[0, j].argmax()) == g)
            nll -= float(logp[0, j, g])
            tokens += 1
    assert rows[0]["tf_tokens"] == tokens
    assert abs(rows[0]["tf_accuracy"] - correct / tokens) < 1e-4
    assert math.isclose(rows[0]["tf_perplexity"], math.exp(nll / tokens), rel_tol=1e-3)

    # --no-teacher-forced: the columns stay empty
    result = run_cli("eval", "--run", run, "--models", "teacher", "--beam", "1",
                     "--limit", "12", "--no-teacher-forced")
    assert result.exit_code == 0, result.output
    rows = json.loads((run / "reports" / "eval.json").read_text())["results"]
    beam1 = next(r for r in rows if r["beam"] == 1)
    assert "tf_accuracy" not in beam1


def test_teacher_forced_metrics_ignore_the_hybrid_gate(trained_run: Path, tmp_path: Path) -> None:
    from kdnmt.onmt_bridge.inference import teacher_forced_metrics

    ckpt = trained_run / "models" / "teacher" / "model_step_40.pt"
    src, tgt = _pieces(trained_run, "valid", "de", 10), _pieces(trained_run, "valid", "en", 10)
    plain = teacher_forced_metrics(ckpt, src, tgt, batch_tokens=64)
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    hidden = checkpoint["opt"].hidden_size
    checkpoint["model"]["kd_gate.linear.weight"] = torch.zeros(1, hidden)
    checkpoint["model"]["kd_gate.linear.bias"] = torch.ones(1)
    gated = tmp_path / "hybrid.pt"
    torch.save(checkpoint, gated)
    src_file, tgt_file = tmp_path / "v.de", tmp_path / "v.en"
    src_file.write_text("\n".join(src) + "\n", encoding="utf-8")
    tgt_file.write_text("\n".join(tgt) + "\n", encoding="utf-8")
    # same numbers from piece files, another batch size and a gated checkpoint
    assert teacher_forced_metrics(gated, src_file, tgt_file, batch_tokens=4096) == plain
