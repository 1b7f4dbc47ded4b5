"""`kdnmt plot`: every model's learning curve (greedy BLEU and chrF over training) in one plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdnmt.cli.common import RunOption, console, error_boundary


@error_boundary
def plot_command(
    run: RunOption,
    models: Annotated[str | None, typer.Option(
        help="Comma-separated model names (default: every model with a models/NAME/curve.csv).")]
        = None,
    out: Annotated[Path | None, typer.Option(
        help="Output file, .png, .svg or .pdf (default: RUN/reports/curves.png).")] = None,
) -> None:
    """Plot the learning curves written during training (training.bleu_every)."""
    from kdnmt.curves import CURVES_PNG, best_point, collect_curves, plot_curves, warm_start
    from kdnmt.rundir import RunDir

    rundir = RunDir(run)
    names = None if models is None else [m.strip() for m in models.split(",") if m.strip()]
    curves = collect_curves(rundir, names)
    dest = plot_curves(rundir, curves, out if out is not None else rundir.reports_dir / CURVES_PNG)
    for name, points in curves.items():
        best, last = best_point(points), points[-1]
        count = f"{len(points)} point" + ("s" if len(points) != 1 else "")
        start = warm_start(rundir, name)
        offset = start[1] if start is not None else 0
        since = f" (continues {start[0]} from step {start[1]})" if start is not None else ""
        console.print(f"{name}: {count}, last step {offset + last.step} BLEU {last.bleu:.2f}"
                      f", best BLEU {best.bleu:.2f} at step {offset + best.step}{since}",
                      soft_wrap=True)
    console.print(f"written: {dest}", soft_wrap=True)
