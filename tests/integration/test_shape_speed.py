"""A student shape built untrained from its teacher's checkpoint (kdnmt.onmt_bridge.model_size.
untrained_like), as bench/shape_speed.py measures it: the shape asked for, the teacher's
vocabulary, convertible by CTranslate2, and decoding to the forced length."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kdnmt.config import ModelConfig, TrainConfig

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "shape_speed.py"


def test_untrained_shape_converts_and_decodes(trained_run: Path, tmp_path: Path) -> None:
    import ctranslate2
    import torch

    from kdnmt.onmt_bridge.checkpoint import count_parameters, load_checkpoint
    from kdnmt.onmt_bridge.convert import convert_checkpoint
    from kdnmt.onmt_bridge.model_size import count_parameters_for, untrained_like

    teacher = load_checkpoint(next((trained_run / "models" / "teacher").glob("model_step_*.pt")))
    shape = ModelConfig(enc_layers=2, dec_layers=1, hidden_size=48, ff_size=96, heads=3)
    checkpoint = untrained_like(teacher, shape)
    vocab_entries = len(teacher["vocab"]["src"])
    assert count_parameters(checkpoint) == count_parameters_for(TrainConfig(model=shape),
                                                                vocab_entries)
    assert checkpoint["vocab"] == teacher["vocab"]
    opt = checkpoint["opt"]
    assert (opt.enc_layers, opt.dec_layers, opt.hidden_size, opt.transformer_ff, opt.heads) == \
        (2, 1, 48, 96, 3)
    assert teacher["opt"].hidden_size != 48  # the teacher's own options are left as they were
    weights = [t for t in checkpoint["model"].values() if t.dim() == 2]
    assert all(bool((w.abs().amax(dim=1) > 0).all()) for w in weights)  # initialised
    torch.save(checkpoint, tmp_path / "shape.pt")
    convert_checkpoint(tmp_path / "shape.pt", tmp_path / "ct2", "int8")
    translator = ctranslate2.Translator(str(tmp_path / "ct2"), intra_threads=1)
    results = translator.translate_batch([["▁Haus"], ["▁ein", "▁Test"]], beam_size=2,
                                         min_decoding_length=7, max_decoding_length=7)
    assert [len(r.hypotheses[0]) for r in results] == [7, 7]


def test_bench_prints_each_shape_against_the_teacher(trained_run: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--run", str(trained_run), "--shapes", "1+1:d32:h2,2+1:d64",
         "--student", "teacher", "--sentences", "6", "--repeats", "1", "--beam", "2"],
        capture_output=True, text=True, check=True)
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert [r.split(" | ")[0] for r in rows] == [
        "| teacher 'teacher'", "| 1+1:d32:h2 (untrained)", "| 2+1:d64 (untrained)",
        "| student 'teacher' (trained)"]
    assert rows[0].endswith("| 1.00x |")
    assert all(float(r.split(" | ")[-1].rstrip("x |")) > 0 for r in rows)


@pytest.mark.parametrize("shape", ["3x1:d128", "3+1:d130:h4", "3+1"])
def test_bench_refuses_a_bad_shape(trained_run: Path, shape: str) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--run", str(trained_run),
                           "--shapes", shape], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.startswith("error:")
    assert len(done.stderr.strip().splitlines()) == 1
