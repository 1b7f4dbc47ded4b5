"""Computing the teacher's top-k soft targets into a store, shard by shard (resumable).

Teacher-forced with the PyTorch teacher (see :mod:`kdnmt.onmt_bridge.inference`), on the CPU
or a GPU (``device``; the top-k is taken there and only it is copied back). Each shard
of lines is an atomic store directory of its own under ``STORE.shards/``: after a kill, the
finished shards are kept and the next run starts at the first missing one; at the end the
shards are joined into one store byte-identical to a store written in one go.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from kdnmt.errors import check
from kdnmt.fileio import sha256_file
from kdnmt.teacher.store import (
    META_FILE,
    SoftTargetStore,
    SoftTargetWriter,
    finalize,
    shard_ranges,
)


def _count_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as handle:
        return sum(1 for _ in handle)


def _shard_lines(path: Path, ranges: list[tuple[int, int]]) -> Iterator[list[str]]:
    """The lines of each ``(first, count)`` range in turn, reading the file once: only one
    shard's lines are in memory at a time, so resident memory does not grow with the corpus."""
    with open(path, encoding="utf-8") as handle:
        for _first, count in ranges:
            yield [line.rstrip("\n") for line in islice(handle, count)]


def _batches(order: list[int], lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Group line indices (sorted by length) into batches of about ``batch_tokens`` tokens."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        longest = max(longest, lengths[i])
        if current and longest * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest = [], lengths[i]
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _shard_matches(shard_dir: Path, expected: dict[str, object]) -> bool:
    """Whether a finished shard left by an earlier run was made with these settings."""
    try:
        meta = json.loads((shard_dir / META_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and all(meta.get(key) == value
                                          for key, value in expected.items())


def compute_store(*, checkpoint: Path, src_path: Path, tgt_path: Path, store_dir: Path, k: int,
                  along: str, vocab_sha256: str, spm_sha256: str, teacher_sha256: str,
                  lines_per_shard: int = 1000, batch_tokens: int = 4096, force: bool = False,
                  progress: Callable[[int, int], None] = lambda d, t: None,
                  device: str = "cpu") -> Path:
    """Write the top-``k`` store of the teacher along ``tgt_path`` (pieces, line-aligned with
    ``src_path``) into ``store_dir``; returns it. An existing complete store is kept unless
    ``force``."""
    from kdnmt.onmt_bridge.inference import forced_log_probs, load_frozen_model

    target_sha = sha256_file(tgt_path)
    shards_root = store_dir.parent / (store_dir.name + ".shards")
    if store_dir.is_dir() and not force:
        store = SoftTargetStore.open(store_dir, expect_vocab_sha256=vocab_sha256, verify=False)
        if (store.meta.get("target_sha256") == target_sha and store.k == k
                and store.meta.get("teacher_sha256") == teacher_sha256):
            # a run killed between publishing the store and removing its shards left them
            shutil.rmtree(shards_root, ignore_errors=True)
            return store_dir
    if force and store_dir.exists():
        shutil.rmtree(store_dir)
    num_lines, num_targets = _count_lines(src_path), _count_lines(tgt_path)
    check(num_lines == num_targets,
          f"{src_path} and {tgt_path} differ in length ({num_lines} vs {num_targets})")
    frozen = load_frozen_model(checkpoint, device)
    check(k <= len(frozen.tokens), f"--soft-targets {k} is larger than the vocabulary")
    shard_dirs = []
    done = 0
    ranges = shard_ranges(num_lines, lines_per_shard)
    shards = zip(ranges, _shard_lines(src_path, ranges), _shard_lines(tgt_path, ranges),
                 strict=True)
    for (first, count), sources, targets in shards:
        shard_dir = shards_root / f"{first:09d}"
        shard_dirs.append(shard_dir)
        if shard_dir.is_dir():
            expected = {"k": k, "num_lines": count, "vocab_sha256": vocab_sha256,
                        "spm_sha256": spm_sha256, "teacher_sha256": teacher_sha256,
                        "along": along, "target_sha256": target_sha,
                        "shard": {"first_line": first, "corpus_lines": num_lines}}
            if _shard_matches(shard_dir, expected):
                done += count
                progress(done, num_lines)
                continue
            # left by a killed run with other settings (another --soft-targets K): redo it
            shutil.rmtree(shard_dir)
        src_ids = [frozen.ids(line.split()) for line in sources]
        tgt_ids = [frozen.ids(line.split()) for line in targets]
        lengths = [max(len(s), len(t) + 1) for s, t in zip(src_ids, tgt_ids, strict=True)]
        order = sorted(range(count), key=lambda i: lengths[i])
        results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for batch in _batches(order, lengths, batch_tokens):
            logp, mask = forced_log_probs(frozen, [src_ids[i] for i in batch],
                                          [tgt_ids[i] for i in batch])
            top_lp, top_ids = (t.cpu() for t in torch.topk(logp, k, dim=-1))
            lengths_kept = mask.sum(-1).tolist()
            for row, i in enumerate(batch):
                n = int(lengths_kept[row])
                results[i] = (top_ids[row, :n].numpy().astype(np.int32),
                              top_lp[row, :n].numpy().astype(np.float16))
        with SoftTargetWriter(shard_dir, k, count, vocab_sha256, spm_sha256, teacher_sha256,
                              along, target_sha, first_line=first,
                              corpus_lines=num_lines) as writer:
            for i in range(count):
                writer.write(first + i, *results[i])
        done += count
        progress(done, num_lines)
    finalize(store_dir, shard_dirs, overwrite=True)
    shutil.rmtree(shards_root, ignore_errors=True)
    return store_dir
