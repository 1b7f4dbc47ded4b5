"""`training.precision: bf16` (`--precision bf16`): torch's CPU autocast around each update of
OpenNMT-py's trainer (shim 9). The weights stay float32, so a bf16 run must learn like a
float32 one; the first implementation, one autocast context around the whole loop, kept the
bfloat16 copies of the first step's weights and did not learn at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import assert_clean_error, run_cli

pytestmark = pytest.mark.slow


def _train_losses(model_dir: Path) -> dict[int, float]:
    with open(model_dir / "metrics.csv", encoding="utf-8") as handle:
        header = handle.readline().strip().split(",")
        rows = [dict(zip(header, line.strip().split(","), strict=True)) for line in handle]
    return {int(r["step"]): float(r["loss"]) for r in rows if r["split"] == "train"}


def test_bf16_training_learns_like_fp32(prepared_run: Path, tiny_config: Path, copy_run) -> None:
    run = copy_run(prepared_run)
    for name, precision in (("fp", "fp32"), ("bf", "bf16")):
        result = run_cli("train", "--run", run, "--name", name, "--preset", "tiny",
                         "--config", tiny_config, "--steps", "30", "--precision", precision)
        assert result.exit_code == 0, result.output
    fp32, bf16 = _train_losses(run / "models" / "fp"), _train_losses(run / "models" / "bf")
    assert sorted(fp32) == sorted(bf16) == [5, 10, 15, 20, 25, 30]
    assert fp32[30] < fp32[5] - 0.3  # it learns: a model that did not would fail below
    for step, loss in fp32.items():
        assert bf16[step] == pytest.approx(loss, rel=0.02), step
    info = json.loads((run / "models" / "bf" / "model.json").read_text())
    assert info["config"]["training"]["precision"] == "bf16"
    # a resumed run keeps its precision unless the command line says otherwise
    result = run_cli("train", "--run", run, "--name", "bf", "--resume", "--steps", "35")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((run / "models" / "bf" / "config.yaml").read_text())[
        "training"]["precision"] == "bf16"


def test_bad_precision_is_one_line(prepared_run: Path, tmp_path: Path) -> None:
    config = tmp_path / "half.yaml"
    config.write_text(yaml.safe_dump({"training": {"precision": "half"}}))
    assert_clean_error(run_cli("train", "--run", prepared_run, "--name", "x", "--preset", "tiny",
                               "--config", config, "--steps", "1"),
                       "training.precision must be one of fp32, bf16", "'half'")
    assert not (prepared_run / "models" / "x").exists()
    result = run_cli("train", "--run", prepared_run, "--name", "x", "--precision", "fp16")
    assert result.exit_code == 1
    assert "fp16" in result.stderr and "Traceback" not in result.output


def test_bf16_distillation_with_an_online_teacher(trained_run: Path, tiny_config: Path,
                                                  copy_run) -> None:
    """The KD losses take bfloat16 logits from the student and the teacher under autocast and
    compute in float32: word-level KD learns as in float32."""
    run = copy_run(trained_run)
    for name, precision in (("wfp", "fp32"), ("wbf", "bf16")):
        result = run_cli("distill", "--run", run, "--name", name, "--method", "word",
                         "--teacher-mode", "online", "--config", tiny_config, "--steps", "20",
                         "--precision", precision)
        assert result.exit_code == 0, result.output
    fp32, bf16 = _train_losses(run / "models" / "wfp"), _train_losses(run / "models" / "wbf")
    assert sorted(fp32) == sorted(bf16) == [5, 10, 15, 20]
    for step, loss in fp32.items():
        assert bf16[step] == pytest.approx(loss, rel=0.02), step


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_records_what_ran(prepared_run: Path, tiny_config: Path, copy_run,
                                         monkeypatch, native: bool, expected: str) -> None:
    """--precision auto (what the recipes pass) trains in bf16 only where the CPU has it, and
    the model records the precision it ran with, not 'auto'."""
    import kdnmt.devices

    monkeypatch.setattr(kdnmt.devices, "cpu_has_native_bf16", lambda *_: native)
    run = copy_run(prepared_run)
    result = run_cli("train", "--run", run, "--name", "a", "--preset", "tiny",
                     "--config", tiny_config, "--steps", "5", "--precision", "auto")
    assert result.exit_code == 0, result.output
    assert "no native bfloat16" not in result.output
    info = json.loads((run / "models" / "a" / "model.json").read_text())
    assert info["config"]["training"]["precision"] == expected
