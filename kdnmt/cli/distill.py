"""`kdnmt distill`: a student trained with a KD method."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kdnmt.cli.common import (
    DeviceOption,
    InitFromOption,
    PrecisionOption,
    RunOption,
    WorldSizeOption,
    choices,
    console,
    err_console,
    error_boundary,
)
from kdnmt.cli.progress import run_with_progress
from kdnmt.config import PRESETS
from kdnmt.distill import METHODS, TEACHER_MODES


@error_boundary
def distill_command(
    run: RunOption,
    name: Annotated[str, typer.Option(help="Student name inside the run.")],
    method: Annotated[choices(METHODS), typer.Option(help="KD method (docs/distill.md).")],  # type: ignore[valid-type]
    preset: Annotated[choices(PRESETS), typer.Option(  # type: ignore[valid-type]
        help="Student size (docs/train.md).")] = "tiny",
    teacher: Annotated[str, typer.Option(help="Teacher model name in the run.")] = "teacher",
    teacher_mode: Annotated[choices(TEACHER_MODES) | None, typer.Option(  # type: ignore[valid-type]
        help="cache (soft-target store; default when it exists) or online (teacher forward "
             "pass in this process).")] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps.")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Wall-clock budget.")] = None,
    config: Annotated[Path | None, typer.Option(
        help="YAML overriding the preset (`model:`, `training:`, `onmt:`).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False,
    world_size: WorldSizeOption = 1,
    device: DeviceOption = "cpu",
    init_from: InitFromOption = None,
    precision: PrecisionOption = None,
    force: Annotated[bool, typer.Option(help="Delete an existing student of this name.")] = False,
    alpha: Annotated[float | None, typer.Option(
        help="word/seq+word: KD weight; atkd: easy-token weight.")] = None,
    temperature: Annotated[float | None, typer.Option(help="word, seq+word, atkd: temperature.")] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="word, seq+word: CE smoothing.")] = None,
    lam: Annotated[float | None, typer.Option(help="selfevo: teacher share of the target.")] = None,
    beta: Annotated[float | None, typer.Option(help="selfevo: student share of the proxy.")] = None,
    threshold: Annotated[str | None, typer.Option(
        help="selfevo: hard-token threshold in nats, or quantile:Q (the Q-quantile of each "
             "batch's difficulties: a share 1-Q of tokens is hard).")] = None,
    hard_ratio: Annotated[float | None, typer.Option(help="atkd: share of hard tokens.")] = None,
    gate: Annotated[str, typer.Option(
        help="hybrid: learned, fixed:V or schedule:START:END.")] = "learned",
    gate_prior: Annotated[float | None, typer.Option(
        help="hybrid, learned gate: the prior of its objective, in (0, 1) [default: 0.5].")] = None,
    gate_tau: Annotated[float | None, typer.Option(
        help="hybrid, learned gate: weight of the prior, > 0 [default: 1.0]; smaller follows "
             "the two losses more sharply.")] = None,
) -> None:
    """Train a student with a knowledge-distillation method (see docs/distill.md)."""
    from kdnmt.config import preset_config
    from kdnmt.distill import DistillOptions, check_method, distill, distill_warning
    from kdnmt.onmt_bridge.devices import check_device

    preset_config(preset)  # an unknown preset fails before anything else
    check_device(device, world_size)  # so does a device this machine lacks
    given = {"alpha": alpha, "temperature": temperature, "label_smoothing": label_smoothing,
             "lam": lam, "beta": beta, "threshold": threshold, "hard_ratio": hard_ratio}
    opts = DistillOptions(run=run, name=name, method=method, preset=preset, teacher=teacher,
                          teacher_mode=teacher_mode, steps=steps, max_minutes=max_minutes,
                          config_file=config, resume=resume, force=force,
                          hparams={k: v for k, v in given.items() if v is not None}, gate=gate,
                          gate_prior=gate_prior, gate_tau=gate_tau,
                          world_size=world_size, device=device, init_from=init_from,
                          precision=precision)
    check_method(opts)  # bad method options fail before the progress display starts
    warning = distill_warning(opts)
    if warning:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    info = run_with_progress(partial(distill, opts), f"distill {name} ({method})")
    if info.get("teacher_mode"):
        console.print(f"teacher: {info['teacher']} ({info['teacher_mode']})")
