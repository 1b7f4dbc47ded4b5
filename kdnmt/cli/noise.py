"""`kdnmt noise`: reproducible source-side noise (word dropout, swaps, replacement, characters)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdnmt.cli.common import choices, console, error_boundary
from kdnmt.corpus.noise import NOISE_LEVELS, OPERATIONS


@error_boundary
def noise_command(
    in_: Annotated[Path, typer.Option("--in", help="Input text, one sentence a line (.xz ok).")],
    out: Annotated[Path, typer.Option("--out", help="Output file (.xz: compressed); never the input.")],
    level: Annotated[choices(NOISE_LEVELS), typer.Option(  # type: ignore[valid-type]
        help="Noise level (see docs/noise.md).")],
    seed: Annotated[int, typer.Option(help="Seed: same input, level and seed, same bytes.")] = 1,
    vocab: Annotated[Path | None, typer.Option(
        help="Replacement words, one a line (default: the input's own words).")] = None,
) -> None:
    """Inject deterministic noise into source text; line count always preserved."""
    from kdnmt.corpus.noise import level_spec, noise_file, read_vocabulary

    level_spec(level)  # an unknown level fails before reading anything
    vocabulary = read_vocabulary(vocab) if vocab is not None else None
    with console.status(f"noising {in_} ({level})"):
        report = noise_file(in_, out, level, seed, vocabulary)
    done = ", ".join(f"{op.replace('_', ' ')} {report[op]:,}" for op in OPERATIONS)
    console.print(f"[green]written[/] {out}: {report['lines']:,} lines, "
                  f"{report['changed_lines']:,} changed; {report['words']:,} words: {done}")
