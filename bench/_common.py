"""What the benchmarks share: the repository root on sys.path and running the kdnmt CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing


def kdnmt(*args: object) -> None:
    """Run one kdnmt command in a child process (as a user would), quietly."""
    subprocess.run([sys.executable, "-m", "kdnmt", *map(str, args)], check=True,
                   stdout=subprocess.DEVNULL, cwd=REPO)
