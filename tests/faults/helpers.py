"""What the fault tests share beyond tests/helpers.py (which runs kdnmt as a real process and
holds the one-clear-line error contract): killing a process with SIGKILL at a chosen point and
comparing run directories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kdnmt.fileio import TMP_PREFIX
from tests.helpers import ENV

#: Every random kill point is drawn from ``random.Random(f"{SEED}-{case}")``; set
#: KDNMT_FAULT_SEED to explore other points (a failure message names the seed and delay).
SEED = int(os.environ.get("KDNMT_FAULT_SEED", "20240611"))


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
