"""What the fault tests share: running kdnmt as a real process, killing it with SIGKILL at a
chosen point, comparing run directories, and the one-clear-line error contract."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kdnmt.fileio import TMP_PREFIX
from tests.conftest import REPO

#: Every random kill point is drawn from ``random.Random(f"{SEED}-{case}")``; set
#: KDNMT_FAULT_SEED to explore other points (a failure message names the seed and delay).
SEED = int(os.environ.get("KDNMT_FAULT_SEED", "20240611"))

ENV = {**os.environ, "KDNMT_THREADS": "1", "PYTHONPATH": str(REPO), "COLUMNS": "200"}


def kdnmt(*args: object) -> list[str]:
    """The command line of ``python -m kdnmt ARGS`` (a real process, as a user runs it)."""
    return [sys.executable, "-m", "kdnmt", *(str(a) for a in args)]


def run(cmd: Sequence[str], timeout: float = 300, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a command to completion; stdout and stderr are captured as text."""
    return subprocess.run(list(cmd), env=ENV, capture_output=True, text=True, timeout=timeout,
                          **kwargs)


def kill_at(cmd: Sequence[str], ready: Callable[[], bool], delay: float,
            log: Path, timeout: float = 180) -> bool:
    """Start ``cmd``, wait until ``ready()`` (polled every millisecond), then ``delay`` more
    seconds, and SIGKILL it. Returns whether the kill landed (False: it finished first)."""
    with open(log, "ab") as err:
        proc = subprocess.Popen(list(cmd), env=ENV, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None and not ready():
                if time.monotonic() > deadline:
                    raise AssertionError(f"{' '.join(cmd)}: the kill point never came")
                time.sleep(0.001)
            if proc.poll() is None and delay > 0:
                try:
                    proc.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    pass
            if proc.poll() is not None:
                return False
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return proc.returncode == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def temp_files(root: Path) -> list[Path]:
    """Temporary files or directories (kdnmt.fileio's prefix) under ``root``."""
    return sorted(p for p in Path(root).rglob(TMP_PREFIX + "*"))


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root``, by relative path, with its bytes."""
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def without_created(data: bytes) -> dict[str, Any]:
    """A manifest without its creation time (the only field two identical runs differ in)."""
    manifest = json.loads(data)
    manifest.pop("created", None)
    return manifest


def assert_same_tree(got: Path, want: Path, manifests: Sequence[str] = ("manifest.json",)) -> None:
    """Byte-identical files, except that manifests are compared without their time stamp."""
    a, b = tree(got), tree(want)
    assert sorted(a) == sorted(b), (sorted(set(a) ^ set(b)))
    for name in a:
        if Path(name).name in manifests:
            assert without_created(a[name]) == without_created(b[name]), name
        else:
            assert a[name] == b[name], f"{name} differs from the uninterrupted run's"


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_one_error_line(stderr: str, *needles: str) -> str:
    """Exactly one non-empty line on stderr, 'error: ...', holding every needle; no traceback."""
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error:"), lines[0]
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
