"""The one progress display of the long commands: `train`, `distill`, `generate`, `study`.

On a terminal it is a set of rich bars. When standard output is not a terminal (nohup, Slurm,
CI, a pipe, the tests' CliRunner) a bar would only be drawn once, at the end, cut to 80
columns; the display prints plain lines instead: the first update of each bar, then at most one
line per bar every ``KDNMT_PROGRESS_EVERY`` seconds (default 30; 0 = every update), and the
last state of each bar when the command ends.

ETAs come from the rate measured in this session (a resumed run's earlier steps cost nothing
now) and, for training, are capped by the time budget (``--max-minutes``): training stops at
whichever comes first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kdnmt.cli.common import console as default_console
from kdnmt.cli.common import limit_torch_threads
from kdnmt.devices import cpu_has_native_bf16

DEFAULT_EVERY = 30.0


def plain_every() -> float:
    """Seconds between two plain lines of one bar (``KDNMT_PROGRESS_EVERY``)."""
    value = os.environ.get("KDNMT_PROGRESS_EVERY")
    if value is None:
        return DEFAULT_EVERY
    try:
        return max(0.0, float(value))
    except ValueError:
        return DEFAULT_EVERY


def clock(seconds: float) -> str:
    """``1:02:03`` or ``2:03``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Eta:
    """Time left for ``total`` units from the rate seen since the first update, capped by a
    wall-clock budget counted from when the object was made (0 = none)."""

    def __init__(self, total: int | None, budget_seconds: float = 0.0):
        self.total = total
        self.started = time.monotonic()
        self.deadline = self.started + budget_seconds if budget_seconds > 0 else None
        self._first: tuple[int, float] | None = None

    def __call__(self, done: int) -> str:
        now = time.monotonic()
        if self._first is None:
            self._first = (done, now)
        first_done, first_time = self._first
        left: float | None = None
        if self.total and done >= self.total:
            left = 0.0
        elif self.total and done > first_done and now > first_time:
            left = (self.total - done) * (now - first_time) / (done - first_done)
        if self.deadline is not None:
            budget_left = max(0.0, self.deadline - now)
            if left is None or budget_left < left:
                return f"ETA {clock(budget_left)} (time budget)"
        return f"ETA {clock(left)}" if left is not None else "ETA —"


@dataclass
class _Bar:
    description: str
    total: int | None
    completed: int
    info: str
    printed: float | None = None  # monotonic time of its last plain line
    dirty: bool = True  # changed since its last plain line


class Display:
    """Bars on a terminal, plain lines elsewhere; use as a context manager."""

    def __init__(self, console: Console | None = None, every: float | None = None):
        self.console = console or default_console
        self.live = self.console.is_terminal
        self.every = plain_every() if every is None else every
        self._bars: dict[int, _Bar] = {}
        self._next = 0
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
            console=self.console, transient=False) if self.live else None

    def __enter__(self) -> Display:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
            return
        for bar in self._bars.values():  # where each bar ended, if not printed yet
            if bar.dirty:
                self._line(bar)

    def add(self, description: str, total: int | None = None, completed: int = 0,
            info: str = "") -> int:
        if self._progress is not None:
            return int(self._progress.add_task(escape(description), total=total,
                                               completed=completed, info=info))
        task = self._next
        self._next += 1
        self._bars[task] = _Bar(description, total, completed, info)
        return task

    def update(self, task: int, *, completed: int | None = None, total: int | None = None,
               info: str | None = None) -> None:
        if self._progress is not None:
            fields: dict[str, Any] = {} if info is None else {"info": info}
            self._progress.update(task, completed=completed, total=total, **fields)  # type: ignore[arg-type]
            return
        bar = self._bars[task]
        finished_before = bar.total is not None and bar.completed >= bar.total
        if completed is not None:
            bar.completed = completed
        if total is not None:
            bar.total = total
        if info is not None:
            bar.info = info
        bar.dirty = True
        now = time.monotonic()
        finished = bar.total is not None and bar.completed >= bar.total and not finished_before
        if bar.printed is None or finished or now - bar.printed >= self.every:
            self._line(bar)

    def remove(self, task: int) -> None:
        if self._progress is not None:
            self._progress.remove_task(task)  # type: ignore[arg-type]
            return
        bar = self._bars.pop(task)
        if bar.dirty and bar.printed is not None:
            self._line(bar)

    def print(self, text: str) -> None:
        """A line above the bars (rich markup allowed)."""
        target = self._progress.console if self._progress is not None else self.console
        target.print(text, soft_wrap=True)

    def _line(self, bar: _Bar) -> None:
        count = f"{bar.completed}/{bar.total}" if bar.total is not None else f"{bar.completed}"
        info = f" · {bar.info}" if bar.info else ""
        self.console.print(f"{bar.description}: {count}{info}", markup=False, highlight=False,
                           soft_wrap=True)
        bar.printed = time.monotonic()
        bar.dirty = False


def run_with_progress(runner: Callable[..., dict[str, Any]], description: str) -> dict[str, Any]:
    """Call ``runner(on_report=, on_valid=, on_start=, on_curve=)`` (:func:`kdnmt.train.train`
    or :func:`kdnmt.distill.distill` with their options bound) under the display."""
    limit_torch_threads()
    with Display() as display:
        task = display.add(description, total=None, info="starting")
        state: dict[str, Any] = {"eta": Eta(None)}

        def on_start(config: Any, start_step: int) -> None:
            state["eta"] = Eta(config.training.steps, config.training.max_minutes * 60)
            display.update(task, total=config.training.steps, completed=start_step,
                           info="resuming" if start_step else "starting")
            if config.training.precision == "bf16" and not cpu_has_native_bf16():
                display.print("[yellow]warning:[/] this CPU has no native bfloat16 (avx512_bf16 "
                              "or AMX): bf16 training is emulated here and slower than fp32")

        def on_report(r: Any) -> None:
            extra = "".join(f" {k} {v:.3f}" for k, v in r.extra.items())
            display.update(task, completed=r.step, info=(
                f"loss {r.loss:.3f} acc {r.accuracy:.1f}% ppl {r.perplexity:.1f} "
                f"{r.tokens_per_second:,.0f} tok/s{extra} · {state['eta'](r.step)}"))

        def on_valid(v: Any) -> None:
            display.print(f"  step {v.step}: valid loss {v.loss:.3f} "
                          f"acc {v.accuracy:.1f}% ppl {v.perplexity:.1f}")

        def on_curve(p: Any) -> None:
            display.print(f"  step {p.step}: greedy BLEU {p.bleu:.2f} chrF {p.chrf:.2f} "
                          f"({p.sentences} valid sentences, {p.wall_s:.1f} s)")

        info = runner(on_report=on_report, on_valid=on_valid, on_start=on_start,
                      on_curve=on_curve)
    ended = "time budget reached" if info["stopped_by_time_budget"] else "done"
    display.console.print(f"[green]{info['name']}[/]: {ended} at step {info['step']}, "
                          f"{info['parameters']:,} parameters, checkpoint {info['checkpoint']}")
    return info
