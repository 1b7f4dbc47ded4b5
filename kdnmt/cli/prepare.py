"""`kdnmt prepare`: validate a parallel corpus, train the joint SentencePiece model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kdnmt.cli.common import RunOption, console, error_boundary


@error_boundary
def prepare_command(
    run: RunOption,
    src: Annotated[str, typer.Option(help="Source language code (file suffix), e.g. de.")],
    tgt: Annotated[str, typer.Option(help="Target language code (file suffix), e.g. en.")],
    train: Annotated[str, typer.Option(help="Training prefix: PREFIX.SRC and PREFIX.TGT (or .xz).")],
    valid: Annotated[str, typer.Option(help="Validation prefix.")],
    test: Annotated[str | None, typer.Option(help="Test prefix (optional; `eval` uses it).")] = None,
    vocab_size: Annotated[int, typer.Option(help="SentencePiece vocabulary size (joint).")] = 8000,
    max_tokens: Annotated[int, typer.Option(
        help="Drop train/valid pairs with a side longer than this many pieces.")] = 150,
    character_coverage: Annotated[float, typer.Option(
        help="SentencePiece character coverage (0.9995 for CJK scripts).")] = 1.0,
    force: Annotated[bool, typer.Option(help="Prepare again over an existing run.")] = False,
) -> None:
    """Validate a parallel corpus and build the run's SentencePiece model and vocabulary."""
    from kdnmt.prepare import PrepareOptions, prepare

    opts = PrepareOptions(run=run, src=src, tgt=tgt, train=train, valid=valid, test=test,
                          vocab_size=vocab_size, max_tokens=max_tokens,
                          character_coverage=character_coverage, force=force)
    with console.status("preparing") as status:
        manifest = prepare(opts, on_stage=lambda stage: status.update(stage))
    table = Table(title=f"prepared {run} ({src} → {tgt})")
    for column in ("split", "lines", "kept", "dropped empty", "dropped too long"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split, entry in manifest["splits"].items():
        table.add_row(split, f"{entry['lines']:,}", f"{entry['kept']:,}",
                      f"{entry['dropped_empty']:,}", f"{entry['dropped_too_long']:,}")
    console.print(table)
    console.print(f"vocabulary: {manifest['vocab']['entries']:,} entries "
                  f"(SentencePiece {Path(manifest['sentencepiece']['model'])})")
