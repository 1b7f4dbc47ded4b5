"""`kdnmt doctor` through the CLI: a sound run passes, a damaged one is found out."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli


@pytest.mark.slow
def test_doctor_passes_a_sound_run_and_finds_damage(trained_run: Path, copy_run) -> None:
    result = run_cli("doctor", "--run", trained_run)
    assert result.exit_code == 0, result.output
    assert "model teacher" in result.stdout and "FAIL" not in result.stdout
    run = copy_run(trained_run)
    ckpt = run / "models" / "teacher" / "model_step_40.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:-10])
    data = run / "data" / "train.sp.en"
    data.write_text(data.read_text().replace("▁", "_", 1))
    result = run_cli("doctor", "--run", run)
    assert result.exit_code == 1
    assert result.stdout.count("FAIL") == 2
    assert "sha256 mismatch" in result.stdout


def test_doctor_without_a_run_checks_the_installation() -> None:
    result = run_cli("doctor")
    assert result.exit_code == 0, result.output
    assert "OpenNMT-py shims" in result.stdout and "ctranslate2 version" in result.stdout
    from kdnmt.devices import cpu_has_native_bf16

    assert ("bf16 trains faster" if cpu_has_native_bf16() else "train in fp32") in result.stdout
