"""What the test modules share, other than fixtures (those stay in conftest.py, which imports
these): paths, the tiny model and training settings, running the CLI in-process or as a real
process, and the one-clear-error-line contract.

A test module imports from here, never from another test module or from conftest.py (which
pytest loads itself, and advises against importing): a helper kept in a test module ties every
file that uses it to that module's fate. conftest.py sets KDNMT_THREADS and the torch thread
count before it imports this module, and pytest loads conftest.py before any test module.
"""

from __future__ import annotations

import lzma
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from kdnmt.cli.app import app

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "data" / "demo" / "de-en"

TINY_MODEL = {"enc_layers": 1, "dec_layers": 1, "hidden_size": 32, "ff_size": 64, "heads": 2}
# bleu_sentences: the learning curve (one point at the last checkpoint of these short runs)
# stays on, scored on a few valid sentences so that it costs a fraction of a second.
TINY_TRAINING = {"batch_size": 512, "valid_steps": 10, "save_steps": 10, "report_every": 5,
                 "learning_rate": 1.0, "warmup_steps": 20, "bleu_sentences": 10}

#: The environment of a real kdnmt process: one thread, this checkout importable.
ENV = {**os.environ, "KDNMT_THREADS": "1", "PYTHONPATH": str(REPO), "COLUMNS": "200"}


def run_cli(*args: object, input: str | bytes | None = None):  # noqa: A002
    """Invoke the kdnmt CLI in-process; returns Typer's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


def write_slice(dest: Path, split: str, lines: int, langs: tuple[str, str] = ("de", "en"),
                start: int = 0) -> str:
    """Write ``lines`` pairs of a demo split as plain text; returns the prefix."""
    dest.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        with lzma.open(DEMO / f"{split}.{lang}.xz", "rt", encoding="utf-8") as handle:
            chosen = handle.read().split("\n")[start:start + lines]
        (dest / f"{split}.{lang}").write_text("\n".join(chosen) + "\n", encoding="utf-8")
    return str(dest / split)


def no_temp_files(root: Path) -> list[Path]:
    """Temporary files kdnmt left behind under ``root`` (should be none)."""
    return [p for p in Path(root).rglob("*") if p.name.startswith(".kdnmt-tmp")]


def assert_clean_error(result, *needles: str) -> None:
    """An in-process CLI result that is bad input done right: exit code 1, exactly one
    non-empty stderr line, 'error: ...', holding every needle; no traceback."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def kdnmt(*args: object) -> list[str]:
    """The command line of ``python -m kdnmt ARGS`` (a real process, as a user runs it)."""
    return [sys.executable, "-m", "kdnmt", *(str(a) for a in args)]


def run(cmd: Sequence[str], timeout: float = 300, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a command to completion; stdout and stderr are captured as text."""
    return subprocess.run(list(cmd), env=ENV, capture_output=True, text=True, timeout=timeout,
                          **kwargs)


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
