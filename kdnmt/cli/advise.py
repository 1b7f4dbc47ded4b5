"""`kdnmt advise`: which KD method (word, seq, hybrid) suits this run, and why."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kdnmt.cli.common import RunOption, choices, console, error_boundary, limit_torch_threads
from kdnmt.config import PRESETS
from kdnmt.models import QUANTIZATIONS

#: (signal key, label, format) in display order.
SIGNAL_ROWS = (
    ("capacity_ratio", "capacity ratio (student / teacher params)", "{:.3f}"),
    ("student_parameters", "student parameters", "{:,}"),
    ("teacher_parameters", "teacher parameters", "{:,}"),
    ("teacher_entropy", "teacher entropy (nats / token)", "{:.3f}"),
    ("unc_mean", "UNC mean (1 - p(reference))", "{:.3f}"),
    ("unc_median", "UNC median", "{:.3f}"),
    ("unc_share_above_half", "UNC share > 0.5", "{:.1%}"),
    ("ppl_data", "teacher ppl on the data", "{:.2f}"),
    ("ppl_valid", "teacher ppl on valid", "{:.2f}"),
    ("noise_ratio", "noise ratio (ppl data / valid)", "{:.3f}"),
    ("tf_accuracy", "teacher-forced accuracy", "{:.1%}"),
    ("probe_tf_accuracy", "probe teacher-forced accuracy", "{:.1%}"),
    ("free_accuracy", "free-running accuracy", "{:.1%}"),
    ("decoding_gap", "decoding gap (tf - free)", "{:.3f}"),
)
VOTED = {"capacity_ratio": "capacity", "unc_mean": "uncertainty", "noise_ratio": "noise",
         "decoding_gap": "decoding"}
METHOD_COLOUR = {"word": "cyan", "seq": "magenta", "hybrid": "yellow"}


@error_boundary
def advise_command(
    run: RunOption,
    student_preset: Annotated[choices(PRESETS), typer.Option(  # type: ignore[valid-type]
        help="Preset of the student to distil (docs/train.md).")],
    teacher: Annotated[str, typer.Option(help="Teacher model name inside the run.")] = "teacher",
    test: Annotated[Path | None, typer.Option(
        help="Measure on PREFIX.SRC/PREFIX.TGT (raw text) instead of the training split.")] = None,
    sample: Annotated[int, typer.Option(help="Sentence pairs to measure on.")] = 500,
    probe_steps: Annotated[int, typer.Option(
        help="Train a probe student this many steps for the decoding gap (0 = use the teacher).")] = 0,
    quantization: Annotated[choices(QUANTIZATIONS), typer.Option(  # type: ignore[valid-type]
        help="CTranslate2 quantization for greedy decoding.")] = "int8",
    batch_size: Annotated[int, typer.Option(help="Batch size in tokens.")] = 2048,
) -> None:
    """Measure scenario complexity before training a student; recommend word, seq or hybrid KD."""
    from kdnmt.study.advise import advise, write_advice

    limit_torch_threads()
    with console.status("measuring") as status:
        advice = advise(run, student_preset, teacher=teacher, test_prefix=test, sample=sample,
                        probe_steps=probe_steps, batch_tokens=batch_size,
                        quantization=quantization, on_progress=lambda m: status.update(m))
    path = write_advice(run, advice)
    table = Table(title=f"advise: {student_preset} student from {teacher} "
                        f"({advice.inputs['data']})")
    table.add_column("signal", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("vote", no_wrap=True)
    for key, label, fmt in SIGNAL_ROWS:
        if key not in advice.signals:
            continue
        value = advice.signals[key]
        table.add_row(label, "-" if value is None else fmt.format(value),
                      advice.votes.get(VOTED.get(key, ""), ""))
    console.print(table)
    colour = METHOD_COLOUR[advice.method]
    console.print(f"recommendation: [bold {colour}]{advice.method}[/] "
                  f"({advice.scenario} scenario; decoding gap from {advice.inputs['probe']})")
    for reason in advice.reasons:
        console.print(f"  - {reason}")
    console.print(f"written: {path}")
