"""`kdnmt distill`: a student trained with a KD method."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from kdnmt.cli.common import (
    DeviceOption,
    InitFromOption,
    RunOption,
    WorldSizeOption,
    console,
    error_boundary,
)
from kdnmt.cli.progress import run_with_progress
from kdnmt.config import PRESETS
from kdnmt.distill import METHODS


@error_boundary
def distill_command(
    run: RunOption,
    name: Annotated[str, typer.Option(help="Student name inside the run.")],
    method: Annotated[str, typer.Option(help=f"KD method: {', '.join(METHODS)}.")],
    preset: Annotated[str, typer.Option(help=f"Student size: {', '.join(PRESETS)}.")] = "tiny",
    teacher: Annotated[str, typer.Option(help="Teacher model name in the run.")] = "teacher",
    teacher_mode: Annotated[str | None, typer.Option(
        help="cache (soft-target store; default when it exists) or online (teacher forward "
             "pass in this process).")] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps.")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Wall-clock budget.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML overriding the preset.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False,
    world_size: WorldSizeOption = 1,
    device: DeviceOption = "cpu",
    init_from: InitFromOption = None,
    force: Annotated[bool, typer.Option(help="Delete an existing student of this name.")] = False,
    alpha: Annotated[float | None, typer.Option(
        help="word/seq+word: KD weight; atkd: easy-token weight.")] = None,
    temperature: Annotated[float | None, typer.Option(help="word, seq+word, atkd: temperature.")] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="word, seq+word: CE smoothing.")] = None,
    lam: Annotated[float | None, typer.Option(help="selfevo: teacher share of the target.")] = None,
    beta: Annotated[float | None, typer.Option(help="selfevo: student share of the proxy.")] = None,
    threshold: Annotated[float | None, typer.Option(help="selfevo: hard-token threshold (nats).")] = None,
    hard_ratio: Annotated[float | None, typer.Option(help="atkd: share of hard tokens.")] = None,
    gate: Annotated[str, typer.Option(
        help="hybrid: learned, fixed:V or schedule:START:END.")] = "learned",
) -> None:
    """Train a student with a knowledge-distillation method (see docs/distill.md)."""
    from kdnmt.config import preset_config
    from kdnmt.distill import DistillOptions, check_method, distill
    from kdnmt.onmt_bridge.devices import check_device

    preset_config(preset)  # an unknown preset fails before anything else
    check_device(device, world_size)  # so does a device this machine lacks
    given = {"alpha": alpha, "temperature": temperature, "label_smoothing": label_smoothing,
             "lam": lam, "beta": beta, "threshold": threshold, "hard_ratio": hard_ratio}
    opts = DistillOptions(run=run, name=name, method=method, preset=preset, teacher=teacher,
                          teacher_mode=teacher_mode, steps=steps, max_minutes=max_minutes,
                          config_file=config, resume=resume, force=force,
                          hparams={k: v for k, v in given.items() if v is not None}, gate=gate,
                          world_size=world_size, device=device, init_from=init_from)
    check_method(opts)  # bad method options fail before the progress display starts
    info = run_with_progress(partial(distill, opts), f"distill {name} ({method})")
    if info.get("teacher_mode"):
        console.print(f"teacher: {info['teacher']} ({info['teacher_mode']})")
