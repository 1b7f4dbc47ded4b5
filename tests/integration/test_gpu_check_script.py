"""bench/gpu_check.sh on a machine without a GPU: it says so at once and exits 3; simulated on
the CPU (cpu in place of cuda) every step of it runs, and a disagreement exits 1."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from kdnmt.devices import ct2_gpu_count
from tests.helpers import REPO

SCRIPT = REPO / "bench" / "gpu_check.sh"


def run_script(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600,
                          env={**os.environ, "TMPDIR": str(tmp_path), "KDNMT_THREADS": "1",
                               **env})


def test_without_a_gpu_it_says_so_and_exits_3(tmp_path: Path) -> None:
    if ct2_gpu_count():
        pytest.skip("CTranslate2 sees a GPU here")
    start = time.perf_counter()
    result = run_script(tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "no GPU visible to CTranslate2" in result.stdout
    assert "nothing checked" in result.stdout
    assert time.perf_counter() - start < 60
    assert not list(tmp_path.iterdir())  # it built nothing


@pytest.mark.slow
def test_simulated_on_the_cpu_every_step_runs_and_a_disagreement_exits_1(tmp_path: Path) -> None:
    # a BLEU tolerance no result can meet: the check must fail, the others pass
    result = run_script(tmp_path, "150", GPU_CHECK_SIMULATE_ON_CPU="1", GPU_CHECK_STEPS="10",
                        GPU_CHECK_TEST_LINES="60", GPU_CHECK_BLEU_TOL="-1")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "SIMULATED on the CPU" in out
    assert "CPU: " in out and "CTranslate2 " in out  # the machine is named
    assert re.search(r"generate float32: 1[0-9]{2} pseudo-targets, 0 differ", out), out
    assert "float32 on cpu - float32 on cpu: +0.00 BLEU" in out
    assert "soft targets: best token equal at" in out and "(100.0000%)" in out
    for name in ("word", "seq"):
        assert f"distill {name} --device cpu: step 10, loss" in out
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert failed and all("BLEU differs" in line for line in failed), failed
    assert not list(tmp_path.glob("kdnmt-gpu-check-*"))  # its work directory is removed
