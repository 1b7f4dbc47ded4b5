"""The results recipe is rerun to resume a grid that takes several sittings: a finished student
must not be trained again because a step added to the run later (a soft-target pass) is newer
than it, and one stopped before the end must be resumed. Checked with `make -n` on a run
directory of empty marker files, so nothing is trained."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAKEFILE = REPO / "recipes/debian-de-en/Makefile"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _touch(path: Path, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}", encoding="utf-8")
    os.utime(path, (mtime, mtime))


def _planned(run: Path) -> str:
    result = subprocess.run(
        ["make", "-n", "-f", str(MAKEFILE), "students", f"RUN={run}", "KDNMT=kdnmt"],
        cwd=REPO, capture_output=True, text=True, check=True)
    return result.stdout


def test_finished_students_are_not_retrained_after_a_newer_generate_step(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _touch(run / "manifest.json", 1_000)
    for name in ("ce", "seq", "hybrid"):
        _touch(run / "models" / name / "model.json", 2_000)
    _touch(run / "models" / "word" / "config.yaml", 2_000)  # stopped part-way: no model.json
    _touch(run / "generated/teacher/soft-pseudo-targets/meta.json", 3_000)  # added later
    planned = _planned(run)
    assert "generate" not in planned
    for name in ("ce", "seq", "hybrid"):
        assert f"--name {name} " not in planned
    assert "--name word " in planned and "models/word/config.yaml && echo --resume" in planned
    assert "--name atkd " in planned
    assert "--name selfevo " in planned and "--init-from seq " in planned


def test_a_missing_generate_step_still_comes_first(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _touch(run / "manifest.json", 1_000)
    planned = _planned(run)
    assert planned.index("generate") < planned.index("distill")
