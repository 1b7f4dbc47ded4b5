"""Top-k soft targets of the teacher, on disk and memory-mapped, for token-level KD.

Word-level KD needs, for every target position of every training pair, the teacher's top-K
token ids and log-probabilities. Recomputing them every epoch costs a teacher forward pass per
batch; keeping them in RAM costs ``positions * K * 6`` bytes, which for a real corpus is more
than the machine has. So they are computed once and stored as fixed-size records that the
trainer memory-maps: reading corpus line ``i`` touches only that line's pages, and resident
memory does not grow with the corpus.

Layout of a store directory (format version 1, all little-endian, no pickle anywhere)::

    ids.bin        int32   [positions, K]   top-K token ids, best first
    logprobs.bin   float16 [positions, K]   their log-probabilities
    offsets.bin    int64   [num_lines + 1]  line i is rows offsets[i]:offsets[i+1]
    meta.json      sizes, K, hashes of the vocabulary / SentencePiece model / teacher / target
                   file it was computed along, and the sha256 of each .bin file

Ids and log-probs are two files rather than one structured array so that a line's slice is a
plain contiguous ``int32``/``float16`` array the trainer can hand to torch without a copy.
float16 keeps the store at 6 bytes per (position, k); its ~3 significant digits are far finer
than the differences KD losses are sensitive to. The raw files have no header because their
length is only known when the last line is written; ``meta.json`` carries shapes and dtypes.

Stores are written whole or not at all (a temporary directory renamed into place). A long
teacher pass can be cut into shards (``SoftTargetWriter(..., first_line=, corpus_lines=)``),
each one an atomic store directory of its own: after a crash the finished shards are kept, the
unfinished one was never published, and :func:`finalize` concatenates the shards into a store
byte-identical to one written in one go.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from kdnmt.errors import check, fail
from kdnmt.fileio import atomic_dir, sha256_file, write_json

FORMAT = "kdnmt-soft-targets"
FORMAT_VERSION = 1
ALONG = ("references", "pseudo-targets")
#: meta.json keys that tie a store to the run inputs it was computed from.
PROVENANCE_KEYS = ("vocab_sha256", "spm_sha256", "teacher_sha256", "along", "target_sha256")

IDS_FILE = "ids.bin"
LOGPROBS_FILE = "logprobs.bin"
OFFSETS_FILE = "offsets.bin"
META_FILE = "meta.json"

IDS_DTYPE = np.dtype("<i4")
LOGPROBS_DTYPE = np.dtype("<f2")
OFFSETS_DTYPE = np.dtype("<i8")

_INT32_MAX = np.iinfo(np.int32).max
_COPY_CHUNK = 1 << 22  # bytes per read when concatenating shards
_OFFSETS_CHUNK = 1 << 16  # offsets per block when shifting a shard's index


# --------------------------------------------------------------------------- metadata


def _short(digest: str) -> str:
    """First 12 hex digits: enough to tell hashes apart in an error message."""
    return digest[:12] + "…" if len(digest) > 12 else digest


def _build_meta(
    *,
    k: int,
    num_lines: int,
    positions: int,
    provenance: dict[str, str],
    files: dict[str, dict[str, Any]],
    shard: dict[str, int] | None,
) -> dict[str, Any]:
    """The meta.json content; one function so that sharded and direct builds agree byte-wise."""
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "k": k,
        "num_lines": num_lines,
        "positions": positions,
        **provenance,
        "byte_order": "little",
        "dtypes": {
            "ids": IDS_DTYPE.name,
            "logprobs": LOGPROBS_DTYPE.name,
            "offsets": OFFSETS_DTYPE.name,
        },
        "files": files,
    }
    if shard is not None:
        meta["shard"] = shard
    return meta


def _provenance(
    vocab_sha256: str, spm_sha256: str, teacher_sha256: str, along: str, target_sha256: str
) -> dict[str, str]:
    """Validated hashes that tie a store to the run it may be used with."""
    named = {
        "vocab_sha256": vocab_sha256,
        "spm_sha256": spm_sha256,
        "teacher_sha256": teacher_sha256,
        "target_sha256": target_sha256,
    }
    for key, value in named.items():
        check(isinstance(value, str) and value, f"soft-target store: {key} must be a hash string")
    check(along in ALONG, f"soft-target store: along must be one of {ALONG}, not {along!r}")
    return _provenance_of({**named, "along": along})


def _provenance_of(meta: dict[str, Any]) -> dict[str, str]:
    """The provenance entries of ``meta``, in meta.json order."""
    return {key: meta[key] for key in PROVENANCE_KEYS}


def _expected_sizes(meta: dict[str, Any]) -> dict[str, int]:
    """Byte size of each data file implied by meta.json."""
    rows = meta["positions"] * meta["k"]
    return {
        IDS_FILE: rows * IDS_DTYPE.itemsize,
        LOGPROBS_FILE: rows * LOGPROBS_DTYPE.itemsize,
        OFFSETS_FILE: (meta["num_lines"] + 1) * OFFSETS_DTYPE.itemsize,
    }


def _read_meta(directory: Path) -> dict[str, Any]:
    """Parse and sanity-check meta.json (format, version, dtypes, required keys)."""
    path = directory / META_FILE
    check(directory.is_dir(), f"soft-target store {directory} does not exist")
    check(path.is_file(), f"soft-target store {directory} has no {META_FILE} (not a store?)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        fail(f"soft-target store {directory}: cannot read {META_FILE}: {error}")
    check(
        isinstance(meta, dict) and meta.get("format") == FORMAT,
        f"soft-target store {directory}: {META_FILE} is not a {FORMAT} description",
    )
    version = meta.get("format_version")
    check(
        version == FORMAT_VERSION,
        f"soft-target store {directory} has format version {version}; this kdnmt reads "
        f"version {FORMAT_VERSION} (recompute the soft targets)",
    )
    required = ("k", "num_lines", "positions", "files", "dtypes", *PROVENANCE_KEYS)
    missing = [key for key in required if key not in meta]
    check(not missing, f"soft-target store {directory}: {META_FILE} lacks {', '.join(missing)}")
    dtypes = {"ids": IDS_DTYPE.name, "logprobs": LOGPROBS_DTYPE.name, "offsets": OFFSETS_DTYPE.name}
    check(
        meta["dtypes"] == dtypes and meta.get("byte_order") == "little",
        f"soft-target store {directory}: unexpected dtypes {meta['dtypes']} (expected {dtypes})",
    )
    for key in ("k", "num_lines", "positions"):
        value = meta[key]
        check(
            isinstance(value, int) and value >= (1 if key == "k" else 0),
            f"soft-target store {directory}: bad {key} {value!r} in {META_FILE}",
        )
    return meta


def _check_files(directory: Path, meta: dict[str, Any], verify: bool) -> None:
    """Sizes always (cheap, catches truncation); sha256 too when ``verify`` (reads once)."""
    for name, expected in _expected_sizes(meta).items():
        path = directory / name
        check(path.is_file(), f"soft-target store {directory} is incomplete: {name} is missing")
        size = path.stat().st_size
        recorded = meta["files"].get(name, {})
        check(
            size >= expected,
            f"soft-target store {directory} is truncated: {name} has {size} bytes, "
            f"{META_FILE} expects {expected}; recompute it",
        )
        check(
            size == expected and recorded.get("bytes") == expected,
            f"soft-target store {directory} is damaged: {name} has {size} bytes, "
            f"{META_FILE} expects {expected}; recompute it",
        )
    if verify:
        for name in _expected_sizes(meta):
            actual = sha256_file(directory / name)
            recorded = meta["files"][name].get("sha256")
            check(
                actual == recorded,
                f"soft-target store {directory} is corrupt: sha256 of {name} is "
                f"{_short(actual)}, {META_FILE} records {_short(str(recorded))} (the file was "
                "changed after it was written); recompute it",
            )


def _check_expected(
    directory: Path, meta: dict[str, Any], what: str, key: str, expected: str | None
) -> None:
    """Refuse a store made with another vocabulary / SentencePiece model than the run's."""
    if expected is None or meta[key] == expected:
        return
    fail(
        f"soft-target store {directory} was computed with another {what} "
        f"(store {what} sha256 {_short(meta[key])}, run {what} {_short(expected)}); "
        "recompute the soft targets with the run's teacher inputs"
    )


def _memmap(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Read-only memory map; numpy cannot map an empty file, so those get an empty array."""
    if int(np.prod(shape)) == 0:
        empty = np.zeros(shape, dtype=dtype)
        empty.flags.writeable = False
        return empty
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)


# --------------------------------------------------------------------------- reader


class SoftTargetStore:
    """Read-only, memory-mapped view of a finished store; ``store[line] -> (ids, logprobs)``."""

    def __init__(self, directory: Path, meta: dict[str, Any]) -> None:
        """Map the files of an already validated store; use :meth:`open`."""
        self.directory = directory
        self.meta = meta
        k, positions, lines = meta["k"], meta["positions"], meta["num_lines"]
        self._ids = _memmap(directory / IDS_FILE, IDS_DTYPE, (positions, k))
        self._logprobs = _memmap(directory / LOGPROBS_FILE, LOGPROBS_DTYPE, (positions, k))
        self._offsets = _memmap(directory / OFFSETS_FILE, OFFSETS_DTYPE, (lines + 1,))
        check(
            int(self._offsets[0]) == 0 and int(self._offsets[-1]) == positions,
            f"soft-target store {directory} is damaged: its line index does not span "
            f"{positions} positions; recompute it",
        )

    @classmethod
    def open(
        cls,
        directory: Path,
        expect_vocab_sha256: str | None = None,
        expect_spm_sha256: str | None = None,
        verify: bool = True,
    ) -> SoftTargetStore:
        """Validate and map a store.

        Sizes are always checked against meta.json (a truncated copy fails here rather than
        with a bus error mid-training); ``verify`` also re-hashes every file, one streaming
        read, to catch a file edited in place. The expected hashes refuse a store computed
        with another vocabulary or SentencePiece model, whose ids would mean other tokens.
        """
        directory = Path(directory)
        meta = _read_meta(directory)
        check(
            "shard" not in meta,
            f"soft-target store {directory} is one shard of a store; finalize the shards first",
        )
        _check_files(directory, meta, verify=False)
        _check_expected(directory, meta, "vocabulary", "vocab_sha256", expect_vocab_sha256)
        _check_expected(directory, meta, "SentencePiece model", "spm_sha256", expect_spm_sha256)
        if verify:
            _check_files(directory, meta, verify=True)
        return cls(directory, meta)

    @property
    def num_lines(self) -> int:
        """Number of corpus lines (training pairs) the store covers."""
        return int(self.meta["num_lines"])

    @property
    def k(self) -> int:
        """Number of teacher candidates kept per position."""
        return int(self.meta["k"])

    @property
    def total_positions(self) -> int:
        """Target positions over all lines."""
        return int(self.meta["positions"])

    @property
    def bytes_per_position(self) -> int:
        """Disk bytes one target position takes (ids plus log-probs)."""
        return self.k * (IDS_DTYPE.itemsize + LOGPROBS_DTYPE.itemsize)

    def __len__(self) -> int:
        return self.num_lines

    def _span(self, line: int) -> tuple[int, int]:
        if not 0 <= line < self.num_lines:
            raise IndexError(f"line {line} outside soft-target store of {self.num_lines} lines")
        start, end = int(self._offsets[line]), int(self._offsets[line + 1])
        check(
            0 <= start <= end <= self.total_positions,
            f"soft-target store {self.directory} is damaged: bad offsets for line {line}",
        )
        return start, end

    def positions(self, line: int) -> int:
        """Number of target positions stored for corpus line ``line``."""
        start, end = self._span(line)
        return end - start

    def __getitem__(self, line: int) -> tuple[np.ndarray, np.ndarray]:
        """Read-only ``(ids int32 [T, K], logprobs float16 [T, K])`` views into the mapped files."""
        start, end = self._span(line)
        return self._ids[start:end], self._logprobs[start:end]


# --------------------------------------------------------------------------- writer


class _HashingFile:
    """A binary file being written whose sha256 and size are computed on the way."""

    def __init__(self, path: Path) -> None:
        self.handle: IO[bytes] = open(path, "wb")
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()

    def abort(self) -> None:
        self.handle.close()

    def record(self) -> dict[str, Any]:
        return {"bytes": self.size, "sha256": self.digest.hexdigest()}


class _StoreFiles:
    """The three data files of a store under construction, plus its meta once complete."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ids = _HashingFile(tmp / IDS_FILE)
        self.logprobs = _HashingFile(tmp / LOGPROBS_FILE)
        self.offsets = _HashingFile(tmp / OFFSETS_FILE)
        self.positions = 0
        self.offsets.write(np.zeros(1, OFFSETS_DTYPE).tobytes())

    def append_rows(self, ids: np.ndarray, logprobs: np.ndarray) -> None:
        self.ids.write(np.ascontiguousarray(ids, dtype=IDS_DTYPE).tobytes())
        with np.errstate(over="ignore"):  # below float16's range is -inf: probability 0 anyway
            half = np.ascontiguousarray(logprobs, dtype=LOGPROBS_DTYPE)
        self.logprobs.write(half.tobytes())

    def end_line(self, rows: int) -> None:
        self.positions += rows
        self.offsets.write(np.array([self.positions], OFFSETS_DTYPE).tobytes())

    def close(self) -> dict[str, dict[str, Any]]:
        for part in (self.ids, self.logprobs, self.offsets):
            part.close()
        return {
            IDS_FILE: self.ids.record(),
            LOGPROBS_FILE: self.logprobs.record(),
            OFFSETS_FILE: self.offsets.record(),
        }

    def abort(self) -> None:
        for part in (self.ids, self.logprobs, self.offsets):
            part.abort()


@contextlib.contextmanager
def _atomic_store(directory: Path, overwrite: bool) -> Iterator[Path]:
    """atomic_dir, refusing to replace an existing store unless asked to."""
    check(
        overwrite or not directory.exists(),
        f"soft-target store {directory} already exists; remove it or pass overwrite",
    )
    with atomic_dir(directory) as tmp:
        yield tmp


class SoftTargetWriter:
    """Write a store (or one shard of it) line by line; it appears only when complete.

    Use as a context manager. Lines ``first_line .. first_line + num_lines - 1`` must be
    written in order, each exactly once; leaving the block early, by an exception or with
    lines missing, publishes nothing. With ``first_line``/``corpus_lines`` the writer makes a
    shard of a ``corpus_lines``-line store, to be joined by :func:`finalize`.
    """

    def __init__(
        self,
        directory: Path,
        k: int,
        num_lines: int,
        vocab_sha256: str,
        spm_sha256: str,
        teacher_sha256: str,
        along: str,
        target_sha256: str,
        *,
        first_line: int = 0,
        corpus_lines: int | None = None,
        overwrite: bool = False,
    ) -> None:
        self.directory = Path(directory)
        check(isinstance(k, int) and k >= 1, f"soft-target store: k must be >= 1, not {k!r}")
        check(num_lines >= 0, f"soft-target store: negative num_lines {num_lines}")
        self.k = k
        self.num_lines = num_lines
        self.first_line = first_line
        self._provenance = _provenance(
            vocab_sha256, spm_sha256, teacher_sha256, along, target_sha256
        )
        self._shard = _shard_info(first_line, num_lines, corpus_lines)
        self._overwrite = overwrite
        self._next = first_line
        self._stack: contextlib.ExitStack | None = None
        self._files: _StoreFiles | None = None

    def __enter__(self) -> SoftTargetWriter:
        check(self._stack is None, f"soft-target writer for {self.directory} already used")
        stack = contextlib.ExitStack()
        tmp = stack.enter_context(_atomic_store(self.directory, self._overwrite))
        try:
            self._files = _StoreFiles(tmp)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def write(self, line_index: int, ids: np.ndarray, logprobs: np.ndarray) -> None:
        """Append the top-K ``ids`` [T, K] and their ``logprobs`` [T, K] of one corpus line."""
        check(self._files is not None, "soft-target writer: write() outside its `with` block")
        end = self.first_line + self.num_lines
        check(
            line_index == self._next,
            f"soft-target store {self.directory}: line {line_index} written, expected "
            + (f"line {self._next}" if self._next < end else f"none (all {end} lines written)"),
        )
        ids, logprobs = self._validated(line_index, ids, logprobs)
        assert self._files is not None
        self._files.append_rows(ids, logprobs)
        self._files.end_line(ids.shape[0])
        self._next += 1

    def _validated(
        self, line: int, ids: np.ndarray, logprobs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Shapes [T, K], integral in-range ids, real log-probs (``-inf`` allowed, NaN not)."""
        ids, logprobs = np.asarray(ids), np.asarray(logprobs)
        where = f"soft-target store {self.directory}, line {line}"
        check(
            ids.ndim == 2 and ids.shape[1] == self.k and logprobs.shape == ids.shape,
            f"{where}: ids {ids.shape} and logprobs {logprobs.shape} must both be "
            f"[positions, {self.k}]",
        )
        check(np.issubdtype(ids.dtype, np.integer), f"{where}: ids have dtype {ids.dtype}")
        check(
            np.issubdtype(logprobs.dtype, np.floating),
            f"{where}: logprobs have dtype {logprobs.dtype}",
        )
        if ids.size:
            check(
                int(ids.min()) >= 0 and int(ids.max()) <= _INT32_MAX,
                f"{where}: token ids outside [0, {_INT32_MAX}]",
            )
            check(
                not np.isnan(logprobs).any() and not np.isposinf(logprobs).any(),
                f"{where}: logprobs contain NaN or +inf",
            )
        return ids, logprobs

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._stack is not None and self._files is not None
        stack, files = self._stack, self._files
        self._files = None
        if exc_type is None:
            try:
                self._publish(files)
            except BaseException as error:
                files.abort()
                stack.__exit__(type(error), error, error.__traceback__)
                raise
        else:
            files.abort()
        return bool(stack.__exit__(exc_type, exc, tb))

    def _publish(self, files: _StoreFiles) -> None:
        """Close the data files and write meta.json; refuse an incomplete store."""
        written = self._next - self.first_line
        check(
            written == self.num_lines,
            f"soft-target store {self.directory}: only {written} of {self.num_lines} lines "
            "were written; nothing was saved",
        )
        records = files.close()
        meta = _build_meta(
            k=self.k,
            num_lines=self.num_lines,
            positions=files.positions,
            provenance=self._provenance,
            files=records,
            shard=self._shard,
        )
        write_json(files.tmp / META_FILE, meta)


def _shard_info(first_line: int, num_lines: int, corpus_lines: int | None) -> dict[str, int] | None:
    """Shard coordinates for meta.json, or None for a whole store."""
    if corpus_lines is None:
        check(first_line == 0, "soft-target store: a shard (first_line > 0) needs corpus_lines")
        return None
    check(
        0 <= first_line and first_line + num_lines <= corpus_lines,
        f"soft-target shard: lines {first_line}..{first_line + num_lines - 1} are outside a "
        f"corpus of {corpus_lines} lines",
    )
    return {"first_line": first_line, "corpus_lines": corpus_lines}


# --------------------------------------------------------------------------- shards


def shard_ranges(num_lines: int, lines_per_shard: int) -> list[tuple[int, int]]:
    """``(first_line, num_lines)`` of each shard when cutting a corpus into equal pieces."""
    check(lines_per_shard >= 1, f"lines_per_shard must be >= 1, not {lines_per_shard}")
    return [
        (start, min(lines_per_shard, num_lines - start))
        for start in range(0, num_lines, lines_per_shard)
    ]


def _load_shards(shard_dirs: Sequence[Path], verify: bool) -> list[tuple[Path, dict[str, Any]]]:
    """Validated shards sorted by first line, checked to tile the corpus exactly once."""
    check(shard_dirs, "finalize: no shards given")
    shards = []
    for shard_dir in map(Path, shard_dirs):
        meta = _read_meta(shard_dir)
        check("shard" in meta, f"finalize: {shard_dir} is a whole store, not a shard")
        _check_files(shard_dir, meta, verify=verify)
        shards.append((shard_dir, meta))
    shards.sort(key=lambda item: item[1]["shard"]["first_line"])
    first_dir, first = shards[0]
    expected_next = 0
    for shard_dir, meta in shards:
        same = meta["k"] == first["k"] and _provenance_of(meta) == _provenance_of(first)
        same = same and meta["shard"]["corpus_lines"] == first["shard"]["corpus_lines"]
        check(same, f"finalize: shards {first_dir} and {shard_dir} come from different runs")
        start = meta["shard"]["first_line"]
        check(
            start == expected_next,
            f"finalize: lines {expected_next}..{start - 1} are in no shard"
            if start > expected_next
            else f"finalize: shard {shard_dir} overlaps the lines before line {expected_next}",
        )
        expected_next = start + meta["num_lines"]
    corpus = first["shard"]["corpus_lines"]
    check(
        expected_next == corpus,
        f"finalize: shards end at line {expected_next}, the corpus has {corpus} lines",
    )
    return shards


def _copy_into(source: Path, target: _HashingFile) -> None:
    with open(source, "rb") as handle:
        while block := handle.read(_COPY_CHUNK):
            target.write(block)


def _append_offsets(source: Path, count: int, base: int, target: _HashingFile) -> None:
    """Append a shard's offsets[1:] shifted by ``base``, a block at a time."""
    offsets = _memmap(source, OFFSETS_DTYPE, (count + 1,))
    for start in range(1, count + 1, _OFFSETS_CHUNK):
        block = np.asarray(offsets[start : start + _OFFSETS_CHUNK], dtype=OFFSETS_DTYPE) + base
        target.write(block.astype(OFFSETS_DTYPE).tobytes())


def finalize(
    directory: Path,
    shard_dirs: Sequence[Path],
    *,
    verify: bool = True,
    overwrite: bool = False,
) -> Path:
    """Concatenate shards into one store at ``directory``, atomically; returns its path.

    The shards must tile the corpus (any order is accepted) and share K and provenance; with
    ``verify`` each is re-hashed first. The result is byte-identical to a store written in one
    go. The shards are left in place for the caller to remove.
    """
    directory = Path(directory)
    shards = _load_shards(shard_dirs, verify=verify)
    first = shards[0][1]
    with _atomic_store(directory, overwrite) as tmp:
        files = _StoreFiles(tmp)
        try:
            for shard_dir, meta in shards:
                _copy_into(shard_dir / IDS_FILE, files.ids)
                _copy_into(shard_dir / LOGPROBS_FILE, files.logprobs)
                _append_offsets(
                    shard_dir / OFFSETS_FILE, meta["num_lines"], files.positions, files.offsets
                )
                files.positions += meta["positions"]
            records = files.close()
        except BaseException:
            files.abort()
            raise
        meta = _build_meta(
            k=first["k"],
            num_lines=first["shard"]["corpus_lines"],
            positions=files.positions,
            provenance=_provenance_of(first),
            files=records,
            shard=None,
        )
        write_json(tmp / META_FILE, meta)
    return directory
