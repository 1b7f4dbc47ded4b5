"""`kdnmt compare`: paired significance between evaluated models, from eval's translations."""

from __future__ import annotations

from typing import Annotated

import typer

from kdnmt.cli.common import RunOption, console, error_boundary
from kdnmt.significance import AR_DEFAULT, BOOTSTRAP_DEFAULT, SEED


@error_boundary
def compare_command(
    run: RunOption,
    models: Annotated[str, typer.Option(
        help="Comma-separated model names, at least two: every pair in this order (A,B,C: "
             "A − B, A − C, B − C).")],
    test: Annotated[str | None, typer.Option(
        help="Test prefix the models were evaluated on (as for eval); default: the run's "
             "prepared test split.")] = None,
    beam: Annotated[str | None, typer.Option(
        help="Comma-separated beam sizes (default: every beam size all the models were "
             "evaluated with).")] = None,
    bootstrap: Annotated[int, typer.Option(
        help=f"Paired bootstrap resamples (seed {SEED}).")] = BOOTSTRAP_DEFAULT,
    ar_trials: Annotated[int, typer.Option(
        help="Approximate randomization trials.")] = AR_DEFAULT,
) -> None:
    """Paired tests (sacrebleu's bootstrap and approximate randomization) between every pair
    of models, on the translations their latest `kdnmt eval` wrote: no decoding."""
    from kdnmt.cli.evaluate import compact_table
    from kdnmt.compare import CompareOptions, compare_models
    from kdnmt.eval_report import delta_cell, p_cell
    from kdnmt.evaluate import parse_beams
    from kdnmt.significance import verdict

    names = [m.strip() for m in models.split(",") if m.strip()]
    opts = CompareOptions(run=run, models=names, test=test,
                          beams=None if beam is None else parse_beams(beam),
                          bootstrap=bootstrap, ar_trials=ar_trials)
    with console.status("comparing") as status:
        rows = compare_models(opts, on_progress=lambda msg: status.update(msg))
    counts = sorted({row["sentences"] for row in rows})
    table = compact_table(f"paired tests on {'/'.join(map(str, counts))} sentences: Δ = A − B, "
                          "significant only when both p < 0.05",
                          ["A", "B", "beam", "metric", "Δ [95% CI]", "p bs / ar", "verdict"])
    for row in rows:
        for key, label in (("bleu", "BLEU"), ("chrf", "chrF")):
            table.add_row(row["a"], row["b"], str(row["beam"]), label, delta_cell(row[key]),
                          p_cell(row[key]), verdict(row[key]))
    console.print(table)
    console.print(f"written: {run / 'reports' / 'compare.json'} and compare.md", soft_wrap=True)
