"""`kdnmt study`: the token- vs sentence-level KD grid, with progress over cells and steps."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from kdnmt.cli.common import console, error_boundary, limit_torch_threads
from kdnmt.cli.progress import Display, Eta
from kdnmt.study.run import StudyObserver


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class _Display(StudyObserver):
    """Cells done / left with an ETA (the mean time of the cells finished in this invocation
    times the cells left: earlier sessions ran under other loads, and skipped cells cost
    nothing), plus the current cell's training steps."""

    def __init__(self, progress: Display):
        self.progress = progress
        self.cells_task = progress.add("cells", total=None, info="")
        self.train_task: Any = None
        self.eta = Eta(None)
        self.durations: list[float] = []
        self.done = self.total = 0

    def _refresh(self, stage: str = "") -> None:
        left = self.total - self.done
        eta = (_minutes(sum(self.durations) / len(self.durations) * left)
               if self.durations and left else "—" if left else "0 s")
        info = f"{left} left · ETA {eta}" + (f" · {stage}" if stage else "")
        self.progress.update(self.cells_task, completed=self.done, total=self.total, info=info)

    # -- StudyObserver ------------------------------------------------------------------
    def stage(self, text: str) -> None:
        self._refresh(text)

    def cells(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if done:
            self.progress.print(f"{done} of {total} cells already finished: skipped")
        self._refresh()

    def cell_start(self, cell: Any, resume: bool) -> None:
        if self.train_task is not None:
            self.progress.remove(self.train_task)
        verb = "resuming" if resume else "training"
        self.train_task = self.progress.add(cell.label, total=None, info=verb)
        self._refresh(f"{verb} {cell.label}")

    def cell_end(self, cell: Any, seconds: float, trained: bool, info: dict[str, Any]) -> None:
        self.done += 1
        if trained:
            self.durations.append(seconds)
        if self.train_task is not None:
            self.progress.remove(self.train_task)
            self.train_task = None
        budget = " (time budget reached)" if info.get("stopped_by_time_budget") else ""
        what = f"step {info.get('step')}{budget}" if trained else "evaluated"
        self.progress.print(f"[green]done[/] {cell.label}: {what}, {_minutes(seconds)}")
        self._refresh()

    def train_start(self, config: Any, start_step: int) -> None:
        if self.train_task is None:  # the teacher, trained by the study
            self.train_task = self.progress.add("teacher", total=None, info="")
        self.eta = Eta(config.training.steps, config.training.max_minutes * 60)
        self.progress.update(self.train_task, total=config.training.steps, completed=start_step)

    def train_report(self, r: Any) -> None:
        if self.train_task is not None:
            extra = " ".join(f"{k} {v:.3f}" for k, v in r.extra.items())
            self.progress.update(self.train_task, completed=r.step,
                                 info=f"loss {r.loss:.3f} acc {r.accuracy:.1f}% {extra}"
                                      f" · {self.eta(r.step)}")

    def train_valid(self, v: Any) -> None:
        self.progress.print(f"  step {v.step}: valid loss {v.loss:.3f} "
                                    f"acc {v.accuracy:.1f}% ppl {v.perplexity:.1f}")


@error_boundary
def study_command(
    run: Annotated[Path, typer.Option("--run", help="Study directory (created if missing).")],
    grid: Annotated[Path, typer.Option(help="Grid file (YAML): see docs/study.md.")],
    max_cells: Annotated[int | None, typer.Option(
        help="Train at most N cells now, then write the reports and stop (rerun to go on).")]
        = None,
    report_only: Annotated[bool, typer.Option(
        help="Only rewrite study.csv, study.md and the plots from what is finished.")] = False,
) -> None:
    """Token- vs sentence-level KD over a grid: size × noise × method × decoding."""
    from kdnmt.study.grid import load_grid
    from kdnmt.study.report import write_reports
    from kdnmt.study.run import run_study

    spec = load_grid(grid)  # a bad grid fails before anything is written
    if report_only:
        from kdnmt.errors import check

        check((run / "study.json").is_file(), f"{run} holds no study (no study.json)")
        outputs = write_reports(spec, run)
        for path in outputs.values():
            console.print(f"written: {path}")
        return
    limit_torch_threads()
    start = time.monotonic()
    with Display(console) as progress:
        result = run_study(spec, run, observer=_Display(progress), max_cells=max_cells)
    elapsed = _minutes(time.monotonic() - start)
    if result.stopped_early:
        console.print(f"stopped after {result.trained} trained cells (--max-cells): "
                      f"{result.done} of {result.total} finished; rerun to go on")
    else:
        console.print(f"[green]study done[/]: {result.done} of {result.total} cells "
                      f"({result.trained} trained now, {elapsed})")
    for path in result.outputs.values():
        console.print(f"written: {path}")
