"""recipes/demo/curve_from_checkpoints.py: a model's kept checkpoints scored into curve.csv."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "recipes" / "demo" / "curve_from_checkpoints.py"


def test_every_kept_checkpoint_gets_a_point(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    model_dir = run / "models" / "teacher"
    (model_dir / "curve.csv").unlink(missing_ok=True)
    steps = sorted(int(p.stem.rsplit("_", 1)[1]) for p in model_dir.glob("model_step_*.pt"))
    assert len(steps) >= 2
    args = [sys.executable, str(SCRIPT), "--run", str(run), "--model", "teacher",
            "--sentences", "8"]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    assert done.stdout.count("BLEU") == len(steps)
    rows = list(csv.DictReader((model_dir / "curve.csv").open()))
    assert [int(r["step"]) for r in rows] == steps
    assert all(int(r["sentences"]) == 8 and 0 <= float(r["bleu"]) <= 100 for r in rows)
    # a second run keeps the points and scores nothing again
    again = subprocess.run(args, capture_output=True, text=True, check=True)
    assert "BLEU" not in again.stdout
    missing = subprocess.run([*args[:4], "--model", "nobody"], capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.startswith("error:")
