"""`kdnmt export`: a deployable CTranslate2 directory with its tokenizer and model card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdnmt.cli.common import RunOption, choices, console, error_boundary
from kdnmt.models import QUANTIZATIONS


@error_boundary
def export_command(
    run: RunOption,
    model: Annotated[str, typer.Option(help="Model name inside the run.")],
    quantization: Annotated[choices(QUANTIZATIONS), typer.Option(  # type: ignore[valid-type]
        help="CTranslate2 quantization of the exported model.")] = "int8",
    output: Annotated[Path | None, typer.Option(
        help="Destination directory (default RUN/export/MODEL-QUANT).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing destination.")] = False,
    licence: Annotated[str | None, typer.Option(
        help="The licence the model is released under (e.g. an SPDX id), for the model card; "
             "the training data's terms decide what is allowed.")] = None,
) -> None:
    """Convert a trained model to CTranslate2, add the SentencePiece model and a model card."""
    from kdnmt.export import ExportOptions, export

    with console.status(f"exporting {model}"):
        card = export(ExportOptions(run=run, model=model, quantization=quantization,
                                    output=output, force=force, licence=licence))
    console.print(f"[green]exported[/] {model} → {card['output']} "
                  f"({card['size_bytes'] / 1e6:.1f} MB, {card['quantization']})")
    console.print(f"smoke test: {card['smoke']['source']!r} → {card['smoke']['translation']!r}")
