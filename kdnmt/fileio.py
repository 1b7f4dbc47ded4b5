"""Atomic writes and checksums: an output either exists whole or not at all.

Every artefact kdnmt writes goes to a temporary name in the destination directory and is
renamed into place, so a crash, a kill or a full disk never leaves a half-written file that a
later step would trust.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

#: Prefix of every temporary file or directory kdnmt creates next to its outputs.
TMP_PREFIX = ".kdnmt-tmp-"

#: errno values of a write that failed for lack of room: disk full, quota, file size limit.
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _name_destination(exc: OSError, dest: Path, tmp: Path) -> OSError | None:
    """A failed write for lack of room, renamed after ``dest`` (the output the user knows)
    instead of the temporary name, or of nothing (``write()`` errors carry no file name);
    None when ``exc`` is another error or already names another file."""
    if exc.errno not in NO_ROOM:
        return None
    if exc.filename is not None and not str(exc.filename).startswith(str(tmp)):
        return None
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(dest))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_mode(path: Path, directory: bool = False) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; give outputs the usual mode."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; rename it onto ``dest`` if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + dest.name + ".", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _publish_mode(tmp_path)
        os.replace(tmp_path, dest)
    except OSError as exc:
        named = _name_destination(exc, dest, tmp_path)
        if named is None:
            raise
        raise named from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


class _NamedWriter(io.FileIO):
    """The raw file under a temporary name; a write that fails for lack of room names the
    destination (``write()`` errors carry no file name, and with several outputs open at
    once the innermost ``atomic_path`` would otherwise be blamed)."""

    def __init__(self, path: Path, dest: Path) -> None:
        super().__init__(path, "w")
        self.dest = dest

    def write(self, data: Any, /) -> int:
        try:
            return super().write(data)
        except OSError as exc:
            if exc.errno not in NO_ROOM:
                raise
            raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno),
                          str(self.dest)) from exc


@contextlib.contextmanager
def atomic_open(dest: Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file for writing and rename it onto ``dest`` when closed cleanly.

    ``mode`` is ``"w"`` (text, ``\\n`` line ends) or ``"wb"``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', not {mode!r}")
    with atomic_path(dest) as tmp:
        buffered = io.BufferedWriter(_NamedWriter(tmp, Path(dest)))
        handle: IO[Any] = buffered if mode == "wb" else io.TextIOWrapper(
            buffered, encoding=encoding, newline="\n")
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a temporary directory next to ``dest``; move it onto ``dest`` on success.

    An existing ``dest`` is replaced only after the new one is complete.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + dest.name + ".", dir=dest.parent))
    try:
        yield tmp
        _publish_mode(tmp, directory=True)
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "old.", dir=dest.parent))
            os.replace(dest, old / dest.name)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except OSError as exc:
        named = _name_destination(exc, dest, tmp)
        if named is None:
            raise
        raise named from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(dest: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_open(dest) as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False, sort_keys=False)
        handle.write("\n")


def write_text(dest: Path, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_open(dest) as handle:
        handle.write(text)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (what the manifest records for every input)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dir_size(path: Path) -> int:
    """Total bytes of the regular files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def remove_stale_temps(directory: Path, recursive: bool = True) -> int:
    """Delete temporary files a killed kdnmt process left in ``directory`` (and, if
    ``recursive``, its subdirectories). Call it only where no other kdnmt process works on
    the same directory; returns how many were removed."""
    removed = 0
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    found = directory.rglob(TMP_PREFIX + "*") if recursive else directory.glob(TMP_PREFIX + "*")
    for path in list(found):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed
