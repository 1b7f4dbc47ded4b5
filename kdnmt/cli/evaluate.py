"""`kdnmt eval`: BLEU/chrF/TER, speed and size of a run's models."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from kdnmt.cli.common import (
    ComputeTypeOption,
    DecodeDeviceOption,
    RunOption,
    choices,
    console,
    error_boundary,
    limit_torch_threads,
    renamed,
)
from kdnmt.eval_report import delta_cell, p_cell
from kdnmt.evaluate import TERMINAL_COLUMNS, EvalOptions, evaluate, format_cell, parse_beams
from kdnmt.models import QUANTIZATIONS
from kdnmt.significance import AR_DEFAULT, BOOTSTRAP_DEFAULT, SEED, verdict


@error_boundary
def eval_command(
    run: RunOption,
    models: Annotated[str, typer.Option(help="Comma-separated model names, e.g. teacher,ce.")] = "teacher",
    test: Annotated[str | None, typer.Option(
        help="Test prefix (PREFIX.SRC, PREFIX.TGT); default: the run's prepared test split.")] = None,
    beam: Annotated[str, typer.Option(help="Comma-separated beam sizes.")] = "1,5",
    quantization: Annotated[choices(QUANTIZATIONS), typer.Option(  # type: ignore[valid-type]
        help="CTranslate2 quantization.")] = "int8",
    batch_size: Annotated[int, typer.Option(help="Decoding batch size in tokens.")] = 2048,
    limit: Annotated[int, typer.Option(
        help="Evaluate on the first N test pairs only (0 = all).")] = 0,
    max_sentences: Annotated[int | None, typer.Option(
        "--max-sentences", hidden=True, help="Old name of --limit.")] = None,
    teacher_forced: Annotated[bool, typer.Option(
        "--teacher-forced/--no-teacher-forced",
        help="Also score each PyTorch model teacher-forced (tf acc, tf ppl).")] = True,
    baseline: Annotated[str | None, typer.Option(
        help="Compare every other model with this one (added to --models if missing): BLEU "
             "and chrF difference, 95% interval and p-values of sacrebleu's paired tests.")] = None,
    bootstrap: Annotated[int, typer.Option(
        help=f"Paired bootstrap resamples for --baseline (seed {SEED}).")] = BOOTSTRAP_DEFAULT,
    ar_trials: Annotated[int, typer.Option(
        help="Approximate randomization trials for --baseline.")] = AR_DEFAULT,
    bleu_tokenize: Annotated[str | None, typer.Option(
        help="sacrebleu BLEU tokenizer (default: chosen by the target language, as "
             "sacrebleu -tl: zh, ja-mecab, ko-mecab, else 13a).")] = None,
    device: DecodeDeviceOption = "cpu",
    compute_type: ComputeTypeOption = "default",
) -> None:
    """Translate the test set with each model and beam size; score, time and size them."""
    limit_torch_threads()
    names = [m.strip() for m in models.split(",") if m.strip()]
    opts = EvalOptions(run=run, models=names, test=test, beams=parse_beams(beam),
                       quantization=quantization, batch_tokens=batch_size,
                       max_sentences=renamed("--max-sentences", "--limit", max_sentences,
                                             limit, 0),
                       teacher_forced=teacher_forced,
                       baseline=baseline, bootstrap=bootstrap, ar_trials=ar_trials,
                       bleu_tokenize=bleu_tokenize, device=device, compute_type=compute_type)
    with console.status("evaluating") as status:
        rows = evaluate(opts, on_progress=lambda msg: status.update(msg))
    table = compact_table(f"eval: {rows[0]['test']}, {rows[0]['sentences']} sentences"
                   if rows else "eval", [h for _, h in TERMINAL_COLUMNS])
    for row in rows:
        table.add_row(*(format_cell(k, row.get(k)) for k, _ in TERMINAL_COLUMNS))
    console.print(table)
    compared = [r for r in rows if r.get("significance")]
    if compared:
        sig_table = compact_table(f"paired tests against {baseline}: Δ = model − {baseline}, "
                           "significant only when both p < 0.05",
                           ["model", "beam", "metric", "Δ [95% CI]", "p bs / ar", "verdict"])
        for row in compared:
            for key, label in (("bleu", "BLEU"), ("chrf", "chrF")):
                result = row["significance"][key]
                sig_table.add_row(row["model"], str(row["beam"]), label, delta_cell(result),
                                  p_cell(result), verdict(result))
        console.print(sig_table)
    console.print(f"BLEU signature: {rows[0]['bleu_signature']}")
    console.print(f"written: {run / 'reports' / 'eval.json'} and eval.md")


def compact_table(title: str, headers: list[str]) -> Table:
    """A borderless table: the columns fit 80 characters."""
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False,
                  pad_edge=False)
    for header in headers:
        table.add_column(header, justify="left" if header in ("model", "metric", "verdict")
                         else "right", no_wrap=header != "verdict")
    return table
