"""`kdnmt train`: a teacher or a baseline student, with live progress."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdnmt.cli.common import (
    DeviceOption,
    InitFromOption,
    PrecisionOption,
    RunOption,
    WorldSizeOption,
    choices,
    error_boundary,
)
from kdnmt.cli.progress import run_with_progress
from kdnmt.config import PRESETS, ROLES


@error_boundary
def train_command(
    run: RunOption,
    name: Annotated[str, typer.Option(help="Model name inside the run (e.g. teacher, ce).")] = "teacher",
    preset: Annotated[choices(PRESETS), typer.Option(  # type: ignore[valid-type]
        help="Model size (see docs/train.md).")] = "small",
    steps: Annotated[int | None, typer.Option(help="Training steps (overrides the preset).")] = None,
    max_minutes: Annotated[float | None, typer.Option(
        help="Stop cleanly (and save) after this many minutes; 0 = no limit.")] = None,
    config: Annotated[Path | None, typer.Option(
        help="YAML with `model:`, `training:` (and `onmt:`) keys overriding the preset.")]
        = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False,
    world_size: WorldSizeOption = 1,
    device: DeviceOption = "cpu",
    init_from: InitFromOption = None,
    precision: PrecisionOption = None,
    role: Annotated[choices(ROLES) | None, typer.Option(  # type: ignore[valid-type]
        help="What the model is for, recorded in model.json and shown by eval and export "
             "[default: teacher for a name starting with 'teacher', else student].")] = None,
    force: Annotated[bool, typer.Option(help="Delete an existing model of this name first.")] = False,
) -> None:
    """Train a transformer (teacher or baseline student) with OpenNMT-py's trainer."""
    from functools import partial

    from kdnmt.config import preset_config
    from kdnmt.onmt_bridge.devices import check_device
    from kdnmt.train import TrainOptions, train

    preset_config(preset)  # an unknown preset fails before anything else
    check_device(device, world_size)  # so does a device this machine lacks
    opts = TrainOptions(run=run, name=name, preset=preset, config_file=config, steps=steps,
                        max_minutes=max_minutes, resume=resume, force=force, role=role,
                        world_size=world_size, device=device, init_from=init_from,
                        precision=precision)
    run_with_progress(partial(train, opts), f"train {name}")
