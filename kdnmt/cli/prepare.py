"""`kdnmt prepare`: validate a parallel corpus, train the joint SentencePiece model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kdnmt.cli.common import RunOption, console, error_boundary, renamed


@error_boundary
def prepare_command(
    run: RunOption,
    src: Annotated[str, typer.Option(help="Source language code (file suffix), e.g. de.")],
    tgt: Annotated[str, typer.Option(help="Target language code (file suffix), e.g. en.")],
    train: Annotated[str, typer.Option(help="Training prefix: PREFIX.SRC and PREFIX.TGT (or .xz).")],
    valid: Annotated[str, typer.Option(help="Validation prefix.")],
    test: Annotated[str | None, typer.Option(help="Test prefix (optional; `eval` uses it).")] = None,
    vocab_size: Annotated[int, typer.Option(help="SentencePiece vocabulary size (joint).")] = 8000,
    max_length: Annotated[int, typer.Option(
        help="Drop train/valid pairs with a side longer than this many SentencePiece pieces "
             "(a length filter, like training.max_length).")] = 150,
    max_tokens: Annotated[int | None, typer.Option(
        "--max-tokens", hidden=True, help="Old name of --max-length.")] = None,
    character_coverage: Annotated[float, typer.Option(
        help="SentencePiece character coverage (0.9995 for CJK scripts).")] = 1.0,
    force: Annotated[bool, typer.Option(help="Prepare again over an existing run.")] = False,
    teacher_checkpoint: Annotated[Path | None, typer.Option(
        help="Adopt this OpenNMT-py teacher checkpoint (bring your own teacher).")] = None,
    teacher_ct2: Annotated[Path | None, typer.Option(
        help="Adopt this CTranslate2 teacher directory (sequence-level KD only).")] = None,
    teacher_spm: Annotated[Path | None, typer.Option(
        help="The teacher's SentencePiece model (required with a teacher).")] = None,
    teacher_vocab: Annotated[Path | None, typer.Option(
        help="The teacher's OpenNMT-py vocab file, checked against the checkpoint.")] = None,
    teacher_name: Annotated[str, typer.Option(help="Model name of the adopted teacher.")] = "teacher",
) -> None:
    """Validate a parallel corpus and build the run's SentencePiece model and vocabulary."""
    from kdnmt.import_teacher import TeacherSource
    from kdnmt.prepare import PrepareOptions, prepare

    teacher = TeacherSource.from_flags(teacher_spm, teacher_checkpoint, teacher_ct2,
                                       teacher_vocab, teacher_name)
    opts = PrepareOptions(run=run, src=src, tgt=tgt, train=train, valid=valid, test=test,
                          vocab_size=vocab_size,
                          max_tokens=renamed("--max-tokens", "--max-length", max_tokens,
                                             max_length, 150),
                          character_coverage=character_coverage, force=force, teacher=teacher)
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
    if "teacher" in manifest:
        teacher_info = manifest["teacher"]
        console.print(f"teacher '{teacher_info['name']}' adopted from "
                      f"{teacher_info['imported_from']}")
        for note in teacher_info["notes"]:
            console.print(f"  note: {note}")
