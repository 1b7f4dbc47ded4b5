"""`kdnmt translate`: raw text in on stdin, translations out on stdout, streaming."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from kdnmt.cli.common import ComputeTypeOption, DecodeDeviceOption, error_boundary
from kdnmt.errors import KdnmtError, check


def _stdin_lines(stream: BinaryIO) -> Iterator[str]:
    for number, raw in enumerate(stream, start=1):
        if b"\x00" in raw:  # as in `prepare`: binary data is an error, not a sentence
            raise KdnmtError(f"standard input line {number}: contains a NUL byte")
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise KdnmtError(f"standard input line {number}: invalid UTF-8") from None


def _quantization(model: Path) -> str:
    """The quantization its model card names (what --compute-type default follows on a GPU);
    int8, `kdnmt export`'s default, for a directory without a readable card."""
    from kdnmt.export import CARD_NAME

    try:
        value = json.loads((model / CARD_NAME).read_text(encoding="utf-8")).get("quantization")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return "int8"
    return value if isinstance(value, str) else "int8"


@error_boundary
def translate_command(
    model: Annotated[Path, typer.Option(help="Directory written by `kdnmt export`.")],
    beam: Annotated[int, typer.Option(help="Beam size (1 = greedy).")] = 5,
    batch_size: Annotated[int, typer.Option(help="Batch size in tokens.")] = 1024,
    max_length: Annotated[int, typer.Option(help="Maximum output length in pieces.")] = 256,
    device: DecodeDeviceOption = "cpu",
    compute_type: ComputeTypeOption = "default",
) -> None:
    """Translate stdin to stdout with an exported model, one line in, one line out."""
    from kdnmt.devices import check_ct2_device, resolve
    from kdnmt.export import SPM_NAME
    from kdnmt.translation import Translator

    check(model.is_dir(), f"{model} is not a directory (expected a `kdnmt export` output)")
    check((model / SPM_NAME).is_file(),
          f"{model} has no {SPM_NAME}: is it a `kdnmt export` directory?")
    check_ct2_device(device)
    compute_type = resolve(device, compute_type, _quantization(model))
    out = sys.stdout
    with Translator(model, model / SPM_NAME, beam=beam, batch_tokens=batch_size,
                    max_length=max_length, device=device,
                    compute_type=compute_type) as translator:
        for line in translator.translate_iter(_stdin_lines(sys.stdin.buffer)):
            out.write(line + "\n")
            out.flush()
