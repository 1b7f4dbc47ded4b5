"""The teacher decoder's batching: the same read batches as CTranslate2's translate_iterable,
and the device / compute-type rules of kdnmt.devices."""

from __future__ import annotations

import random

import pytest

from kdnmt.devices import COMPUTE_TYPES, DEVICES, check_device_name, resolve
from kdnmt.errors import KdnmtError
from kdnmt.teacher.decode import read_batches
from kdnmt.translation import cpu_cores, default_threads


def ct2_read_batches(lengths: list[int], read_tokens: int) -> list[tuple[int, int]]:
    """CTranslate2's own split of an input stream before its translate_batch calls."""
    from ctranslate2.extensions import _batch_iterator

    ranges, start = [], 0
    for (batch,) in _batch_iterator(iter(["x"] * n for n in lengths), read_tokens,
                                    "tokens"):
        ranges.append((start, start + len(batch)))
        start += len(batch)
    return ranges


@pytest.mark.parametrize("read_tokens", [1, 7, 64, 2048 * 16])
def test_read_batches_split_as_translate_iterable(read_tokens: int) -> None:
    rng = random.Random(read_tokens)
    for _ in range(50):
        lengths = [rng.choice([1, 2, 3, 5, 8, 13, 40, 150]) for _ in range(rng.randint(0, 80))]
        assert list(read_batches(lengths, read_tokens)) == ct2_read_batches(lengths, read_tokens)


def test_read_batches_cover_every_example_once() -> None:
    lengths = [3, 100, 1, 1, 50, 2]
    ranges = list(read_batches(lengths, 120))
    assert [i for a, b in ranges for i in range(a, b)] == list(range(len(lengths)))
    assert all((b - a) * max(lengths[a:b]) <= 120 or b - a == 1 for a, b in ranges)


def test_unknown_device_and_compute_type_are_one_line() -> None:
    with pytest.raises(KdnmtError, match=r"--device must be one of cpu, cuda, got 'tpu'"):
        check_device_name("tpu")
    with pytest.raises(KdnmtError, match=r"--compute-type must be one of default, int8"):
        resolve("cpu", "int4", "int8")
    assert DEVICES == ("cpu", "cuda") and COMPUTE_TYPES[0] == "default"


def test_cpu_compute_types_follow_ctranslate2() -> None:
    import ctranslate2

    supported = ctranslate2.get_supported_compute_types("cpu")
    assert resolve("cpu", "default", "int8") == "default"  # the conversion's own type
    for compute_type in COMPUTE_TYPES[1:]:
        if compute_type in supported:
            assert resolve("cpu", compute_type, "int8") == compute_type
        else:
            with pytest.raises(KdnmtError, match=f"--compute-type {compute_type} is not "
                                                 "supported on cpu"):
                resolve("cpu", compute_type, "int8")


def test_threads_follow_the_affinity_mask_and_kdnmt_threads(monkeypatch) -> None:
    import os

    monkeypatch.delenv("KDNMT_THREADS", raising=False)
    assert cpu_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("KDNMT_THREADS", "3")
    assert default_threads("cpu") == (3, 1)
    assert default_threads("cuda") == (1, 1)
    monkeypatch.setenv("KDNMT_THREADS", "two")
    with pytest.raises(KdnmtError, match="KDNMT_THREADS must be a whole number"):
        cpu_cores()
