"""Per-model CSV logs of training: ``metrics.csv`` (train and valid figures at every report)
and the resume rule every step-keyed log of a model directory follows.

OpenNMT-py only writes its figures as text (``train.log``) or to TensorBoard; kdnmt keeps them
as CSV as well, one row per report, so that a run can be plotted or compared without parsing
logs. A row is appended (and flushed) as soon as OpenNMT-py reports it. A resumed run goes back
to its checkpoint's step, so :func:`truncate_after` first drops the rows written after that
step by the session that was stopped: the log of a resumed run then holds every step once, as
an uninterrupted run's would.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

from kdnmt.fileio import atomic_open

METRICS_FILE = "metrics.csv"
METRICS_COLUMNS = ("step", "split", "loss", "accuracy", "ppl", "lr", "tokens_per_s",
                   "elapsed_s", "wall_time")


def truncate_after(path: Path, step: int) -> int:
    """Keep the header and the rows of ``path`` (a CSV whose first column is ``step``) up to
    ``step``; rows after it, and a last line cut short by a kill, are dropped. The file is
    rewritten atomically, and only when something is dropped. Returns the rows dropped.

    A file whose header does not start with ``step`` is not a step log: left as it is."""
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or not rows[0] or rows[0][0] != "step":
        return 0
    header, body = rows[0], rows[1:]
    kept = []
    for row in body:
        row_step = _step_of(row, len(header))
        if row_step is not None and row_step <= step:
            kept.append(row)
    dropped = len(body) - len(kept)
    if dropped:
        with atomic_open(path) as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(kept)
    return dropped


def _step_of(row: list[str], width: int) -> int | None:
    """The step of a well-formed row, None for a row cut short (or otherwise damaged)."""
    if len(row) != width:
        return None
    try:
        return int(row[0])
    except ValueError:
        return None


def append_row(path: Path, columns: tuple[str, ...], values: dict[str, Any]) -> None:
    """Append one row (writing the header first if the file is new) and flush it, so that a
    kill loses at most the row being written (which :func:`truncate_after` then drops)."""
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    try:
        with open(path, "a", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            if new:
                writer.writerow(columns)
            writer.writerow([_cell(values.get(c)) for c in columns])
    except OSError as exc:  # a full disk: name the file (write() errors carry none)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.7g}"  # seven significant digits: a learning rate of 3.5e-06 too
    return str(value)


class MetricsLog:
    """Writes ``models/NAME/metrics.csv``: a ``train`` row at every report (loss, accuracy,
    perplexity, learning rate, target tokens per second) and a ``valid`` row at every
    validation, both with the seconds since this training session started and the wall-clock
    time (Unix seconds, as TensorBoard records it)."""

    def __init__(self, model_dir: Path, start_step: int):
        self.path = Path(model_dir) / METRICS_FILE
        truncate_after(self.path, start_step)

    def train(self, report: Any) -> None:
        """A :class:`kdnmt.onmt_bridge.training.TrainReport`."""
        append_row(self.path, METRICS_COLUMNS, {
            "step": report.step, "split": "train", "loss": report.loss,
            "accuracy": report.accuracy, "ppl": report.perplexity, "lr": report.learning_rate,
            "tokens_per_s": report.tokens_per_second, "elapsed_s": report.elapsed,
            "wall_time": f"{time.time():.3f}"})

    def valid(self, report: Any) -> None:
        """A :class:`kdnmt.onmt_bridge.training.ValidReport`."""
        append_row(self.path, METRICS_COLUMNS, {
            "step": report.step, "split": "valid", "loss": report.loss,
            "accuracy": report.accuracy, "ppl": report.perplexity,
            "elapsed_s": report.elapsed, "wall_time": f"{time.time():.3f}"})


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV log as dictionaries (empty if the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))
