"""`kdnmt train`: a teacher or a baseline student, with live progress."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from kdnmt.cli.common import (
    DeviceOption,
    InitFromOption,
    RunOption,
    WorldSizeOption,
    console,
    error_boundary,
    limit_torch_threads,
)
from kdnmt.config import PRESETS


def training_progress() -> Progress:
    """The progress display shared by `train` and `distill`."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=console, transient=False,
    )


def run_with_progress(runner, description: str) -> dict:  # type: ignore[no-untyped-def]
    """Call ``runner(on_report=, on_valid=, on_start=)`` (:func:`kdnmt.train.train` or
    :func:`kdnmt.distill.distill` with their options bound) under a rich progress bar."""
    limit_torch_threads()
    with training_progress() as progress:
        task = progress.add_task(description, total=None, stats="starting")

        def on_start(config, start_step):  # type: ignore[no-untyped-def]
            progress.update(task, total=config.training.steps, completed=start_step)

        def on_report(r):  # type: ignore[no-untyped-def]
            extra = " ".join(f"{k} {v:.3f}" for k, v in r.extra.items())
            progress.update(task, completed=r.step, stats=(
                f"loss {r.loss:.3f} acc {r.accuracy:.1f}% ppl {r.perplexity:.1f} "
                f"{r.tokens_per_second:,.0f} tok/s {extra}"))

        def on_valid(v):  # type: ignore[no-untyped-def]
            progress.console.print(f"  step {v.step}: valid loss {v.loss:.3f} "
                                   f"acc {v.accuracy:.1f}% ppl {v.perplexity:.1f}")

        info = runner(on_report=on_report, on_valid=on_valid, on_start=on_start)
    ended = "time budget reached" if info["stopped_by_time_budget"] else "done"
    console.print(f"[green]{info['name']}[/]: {ended} at step {info['step']}, "
                  f"{info['parameters']:,} parameters, checkpoint {info['checkpoint']}")
    return info


@error_boundary
def train_command(
    run: RunOption,
    name: Annotated[str, typer.Option(help="Model name inside the run (e.g. teacher, ce).")] = "teacher",
    preset: Annotated[str, typer.Option(
        help=f"Model size: {', '.join(PRESETS)} (see docs/train.md).")] = "small",
    steps: Annotated[int | None, typer.Option(help="Training steps (overrides the preset).")] = None,
    max_minutes: Annotated[float | None, typer.Option(
        help="Stop cleanly (and save) after this many minutes; 0 = no limit.")] = None,
    config: Annotated[Path | None, typer.Option(
        help="YAML with `model:` and `training:` keys overriding the preset.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False,
    world_size: WorldSizeOption = 1,
    device: DeviceOption = "cpu",
    init_from: InitFromOption = None,
    force: Annotated[bool, typer.Option(help="Delete an existing model of this name first.")] = False,
) -> None:
    """Train a transformer (teacher or baseline student) with OpenNMT-py's trainer."""
    from functools import partial

    from kdnmt.config import preset_config
    from kdnmt.onmt_bridge.devices import check_device
    from kdnmt.train import TrainOptions, train

    preset_config(preset)  # an unknown preset fails before anything else
    check_device(device, world_size)  # so does a device this machine lacks
    role = "teacher" if name.startswith("teacher") else "student"
    opts = TrainOptions(run=run, name=name, preset=preset, config_file=config, steps=steps,
                        max_minutes=max_minutes, resume=resume, force=force, role=role,
                        world_size=world_size, device=device, init_from=init_from)
    run_with_progress(partial(train, opts), f"train {name}")
