"""Reading parallel text strictly, with errors that name the file and the line.

Corpora arrive as ``PREFIX.<lang>`` or ``PREFIX.<lang>.xz``. Every line is decoded as strict
UTF-8; a NUL byte, a stray byte sequence or a source/target count mismatch stops the run with
the file and line, because training on silently misaligned pairs is the most expensive way a
distillation pipeline fails. CRLF line ends are normalised, not errors.
"""

from __future__ import annotations

import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from kdnmt.errors import KdnmtError, check


def resolve_side(prefix: str | Path, lang: str) -> Path:
    """``PREFIX.lang`` if it exists, else ``PREFIX.lang.xz``; a clear error if neither does."""
    plain = Path(f"{prefix}.{lang}")
    packed = Path(f"{prefix}.{lang}.xz")
    for candidate in (plain, packed):
        if candidate.exists():
            check(not candidate.is_dir(), f"{candidate} is a directory, expected a text file")
            return candidate
    raise KdnmtError(f"missing file: neither {plain} nor {packed} exists")


def _open_binary(path: Path) -> IO[bytes]:
    check(path.exists(), f"missing file: {path} does not exist")
    check(not path.is_dir(), f"{path} is a directory, expected a text file")
    try:
        if path.suffix == ".xz":
            return lzma.open(path, "rb")
        return open(path, "rb")
    except PermissionError:
        raise KdnmtError(f"{path} cannot be read (permission denied)") from None
    except OSError as exc:
        raise KdnmtError(f"{path} cannot be read ({exc.strerror or exc})") from None


def iter_lines(path: Path) -> Iterator[str]:
    """Yield decoded lines of ``path`` without their line end, validating each one."""
    path = Path(path)
    handle = _open_binary(path)
    number = 0
    try:
        with handle:
            for raw in handle:
                number += 1
                if raw.endswith(b"\n"):
                    raw = raw[:-1]
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                if b"\x00" in raw:
                    raise KdnmtError(f"{path}:{number}: contains a NUL byte")
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise KdnmtError(
                        f"{path}:{number}: invalid UTF-8 (byte 0x{raw[exc.start]:02x} at "
                        f"column {exc.start + 1})"
                    ) from None
    except PermissionError:
        raise KdnmtError(f"{path} cannot be read (permission denied)") from None
    except (lzma.LZMAError, EOFError) as exc:
        raise KdnmtError(f"{path}: not a valid or complete .xz file ({exc})") from None
    check(number > 0, f"{path} is empty")


def count_lines(path: Path) -> int:
    """Number of lines (validated) in a text file."""
    return sum(1 for _ in iter_lines(path))


def iter_parallel(src: Path, tgt: Path) -> Iterator[tuple[str, str]]:
    """Yield aligned (source, target) lines; a count mismatch is an error naming both counts."""
    src_lines = iter_lines(src)
    tgt_lines = iter_lines(tgt)
    number = 0
    while True:
        s = next(src_lines, None)
        t = next(tgt_lines, None)
        if s is None and t is None:
            return
        if s is None or t is None:
            src_count = number + (0 if s is None else 1 + sum(1 for _ in src_lines))
            tgt_count = number + (0 if t is None else 1 + sum(1 for _ in tgt_lines))
            raise KdnmtError(
                f"line counts differ: {src} has {src_count} lines but {tgt} has {tgt_count}"
            )
        number += 1
        yield s, t


def normalise(line: str) -> str:
    """Collapse runs of whitespace (tabs included) to one space and strip the ends."""
    return " ".join(line.split())
