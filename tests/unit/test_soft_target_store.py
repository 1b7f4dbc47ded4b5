"""Tests of kdnmt.teacher.store: the memory-mapped top-k soft-target store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kdnmt.errors import KdnmtError
from kdnmt.fileio import TMP_PREFIX
from kdnmt.teacher.store import (
    IDS_FILE,
    LOGPROBS_FILE,
    META_FILE,
    OFFSETS_FILE,
    SoftTargetStore,
    SoftTargetWriter,
    finalize,
    shard_ranges,
)

K = 4
HASHES = {
    "vocab_sha256": "a" * 64,
    "spm_sha256": "b" * 64,
    "teacher_sha256": "c" * 64,
    "along": "references",
    "target_sha256": "d" * 64,
}


def make_lines(seed: int = 0, n: int = 9) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random lines of 0..6 positions (line 0 and others empty), float32 log-probs."""
    rng = np.random.default_rng(seed)
    lengths = [0, *rng.integers(0, 7, size=n - 1).tolist()]
    lines = []
    for t in lengths:
        ids = rng.integers(0, 32000, size=(t, K), dtype=np.int64)
        logprobs = -rng.exponential(3.0, size=(t, K)).astype(np.float32)
        lines.append((ids, logprobs))
    return lines


def writer(directory: Path, num_lines: int, **kwargs) -> SoftTargetWriter:
    return SoftTargetWriter(directory, K, num_lines, **HASHES, **kwargs)


def build(directory: Path, lines, first_line: int = 0, **kwargs) -> Path:
    with writer(directory, len(lines), first_line=first_line, **kwargs) as out:
        for offset, (ids, logprobs) in enumerate(lines):
            out.write(first_line + offset, ids, logprobs)
    return directory


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_round_trip(tmp_path: Path) -> None:
    lines = make_lines()
    store = SoftTargetStore.open(
        build(tmp_path / "st", lines), expect_vocab_sha256="a" * 64, expect_spm_sha256="b" * 64
    )
    assert store.num_lines == len(store) == len(lines)
    assert store.k == K and store.bytes_per_position == K * 6
    assert store.total_positions == sum(ids.shape[0] for ids, _ in lines)
    for i, (ids, logprobs) in enumerate(lines):
        got_ids, got_lp = store[i]
        assert store.positions(i) == ids.shape[0]
        assert got_ids.dtype == np.int32 and got_lp.dtype == np.float16
        assert got_ids.shape == got_lp.shape == (ids.shape[0], K)
        np.testing.assert_array_equal(got_ids, ids)
        np.testing.assert_array_equal(got_lp, logprobs.astype(np.float16))
    assert store.positions(0) == 0
    with pytest.raises(IndexError):
        store[len(lines)]
    meta = json.loads((tmp_path / "st" / META_FILE).read_text())
    assert meta["along"] == "references" and meta["teacher_sha256"] == "c" * 64
    assert set(meta["files"]) == {IDS_FILE, LOGPROBS_FILE, OFFSETS_FILE}
    assert leftovers(tmp_path) == []


def test_lines_are_memory_mapped_and_read_only(tmp_path: Path) -> None:
    lines = [(np.ones((3, K), np.int32), np.zeros((3, K), np.float32))] * 2
    store = SoftTargetStore.open(build(tmp_path / "st", lines), verify=False)
    for array in store[1]:
        assert isinstance(array, np.memmap) or isinstance(array.base, np.memmap)
        assert not array.flags.writeable


def test_sharded_build_is_byte_identical(tmp_path: Path) -> None:
    lines = make_lines(seed=1, n=11)
    whole = build(tmp_path / "whole", lines)
    ranges = shard_ranges(len(lines), 4)
    assert ranges == [(0, 4), (4, 4), (8, 3)]
    shards = [
        build(tmp_path / f"shard{i}", lines[a : a + n], first_line=a, corpus_lines=len(lines))
        for i, (a, n) in enumerate(ranges)
    ]
    with pytest.raises(KdnmtError, match="shard"):
        SoftTargetStore.open(shards[0])
    with pytest.raises(KdnmtError, match="lines 4..7 are in no shard"):
        finalize(tmp_path / "bad", [shards[0], shards[2]])
    merged = finalize(tmp_path / "merged", list(reversed(shards)))
    assert files_of(merged) == files_of(whole)
    assert leftovers(tmp_path) == []


def test_exception_inside_the_block_leaves_nothing(tmp_path: Path) -> None:
    lines = make_lines()
    with pytest.raises(RuntimeError, match="teacher died"):
        with writer(tmp_path / "st", len(lines)) as out:
            out.write(0, *lines[0])
            out.write(1, *lines[1])
            raise RuntimeError("teacher died")
    assert list(tmp_path.iterdir()) == []


def test_incomplete_store_is_not_published(tmp_path: Path) -> None:
    lines = make_lines()
    with pytest.raises(KdnmtError, match="only 2 of 9 lines"):
        _write_first(tmp_path / "st", lines, 2)
    assert list(tmp_path.iterdir()) == []


def _write_first(directory: Path, lines, count: int) -> None:
    with writer(directory, len(lines)) as out:
        for i in range(count):
            out.write(i, *lines[i])


def test_lines_out_of_order_and_bad_shapes(tmp_path: Path) -> None:
    lines = make_lines()
    with pytest.raises(KdnmtError, match="line 2 written, expected line 1"):
        with writer(tmp_path / "st", len(lines)) as out:
            out.write(0, *lines[0])
            out.write(2, *lines[2])
    with pytest.raises(KdnmtError, match=r"must both be \[positions, 4\]"):
        with writer(tmp_path / "st", 1) as out:
            out.write(0, np.zeros((2, 3), np.int32), np.zeros((2, 3), np.float32))
    with pytest.raises(KdnmtError, match="NaN"):
        with writer(tmp_path / "st", 1) as out:
            out.write(0, np.zeros((1, K), np.int32), np.full((1, K), np.nan, np.float32))
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    build(tmp_path / "st", make_lines())
    with pytest.raises(KdnmtError, match="already exists"):
        build(tmp_path / "st", make_lines())


def test_truncated_data_file(tmp_path: Path) -> None:
    directory = build(tmp_path / "st", make_lines())
    path = directory / LOGPROBS_FILE
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(KdnmtError, match=r"soft-target store .* is truncated"):
        SoftTargetStore.open(directory, verify=False)


def test_edited_byte_is_caught_by_verify(tmp_path: Path) -> None:
    directory = build(tmp_path / "st", make_lines())
    path = directory / IDS_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    SoftTargetStore.open(directory, verify=False)  # same size: only the hash can tell
    with pytest.raises(KdnmtError, match=f"corrupt: sha256 of {IDS_FILE}"):
        SoftTargetStore.open(directory)


def test_vocabulary_and_spm_mismatch(tmp_path: Path) -> None:
    directory = build(tmp_path / "st", make_lines())
    with pytest.raises(KdnmtError, match=r"another vocabulary \(store vocab.*aaaa.*run.*eeee"):
        SoftTargetStore.open(directory, expect_vocab_sha256="e" * 64)
    with pytest.raises(KdnmtError, match="another SentencePiece model"):
        SoftTargetStore.open(directory, expect_spm_sha256="e" * 64)


def test_format_version_is_checked(tmp_path: Path) -> None:
    directory = build(tmp_path / "st", make_lines())
    meta_path = directory / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(KdnmtError, match="format version 99"):
        SoftTargetStore.open(directory)
