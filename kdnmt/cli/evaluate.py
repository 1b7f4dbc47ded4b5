"""`kdnmt eval`: BLEU/chrF/TER, speed and size of a run's models."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from kdnmt.cli.common import RunOption, console, error_boundary, limit_torch_threads
from kdnmt.evaluate import TERMINAL_COLUMNS, EvalOptions, evaluate, format_cell, parse_beams


@error_boundary
def eval_command(
    run: RunOption,
    models: Annotated[str, typer.Option(help="Comma-separated model names, e.g. teacher,ce.")] = "teacher",
    test: Annotated[str | None, typer.Option(
        help="Test prefix (PREFIX.SRC, PREFIX.TGT); default: the run's prepared test split.")] = None,
    beam: Annotated[str, typer.Option(help="Comma-separated beam sizes.")] = "1,5",
    quantization: Annotated[str, typer.Option(help="CTranslate2 quantization.")] = "int8",
    batch_size: Annotated[int, typer.Option(help="Decoding batch size in tokens.")] = 2048,
    max_sentences: Annotated[int, typer.Option(help="Evaluate on the first N pairs only (0 = all).")] = 0,
    teacher_forced: Annotated[bool, typer.Option(
        "--teacher-forced/--no-teacher-forced",
        help="Also score each PyTorch model teacher-forced (tf acc, tf ppl).")] = True,
) -> None:
    """Translate the test set with each model and beam size; score, time and size them."""
    limit_torch_threads()
    names = [m.strip() for m in models.split(",") if m.strip()]
    opts = EvalOptions(run=run, models=names, test=test, beams=parse_beams(beam),
                       quantization=quantization, batch_tokens=batch_size,
                       max_sentences=max_sentences, teacher_forced=teacher_forced)
    with console.status("evaluating") as status:
        rows = evaluate(opts, on_progress=lambda msg: status.update(msg))
    table = Table(title=f"eval: {rows[0]['test']}" if rows else "eval")
    for _, header in TERMINAL_COLUMNS:
        table.add_column(header, justify="left" if header == "model" else "right",
                         no_wrap=True)
    for row in rows:
        table.add_row(*(format_cell(k, row.get(k)) for k, _ in TERMINAL_COLUMNS))
    console.print(table)
    console.print(f"BLEU signature: {rows[0]['bleu_signature']}")
    console.print(f"written: {run / 'reports' / 'eval.json'} and eval.md")
