"""Benchmark: what draining CTranslate2 at every length-cap group and chunk costs on N cores.

kdnmt decodes each chunk's lines in length-cap groups (kdnmt.teacher.decode). Before commit
51f318c it called translate_iterable once per group and waited for each to finish, so at the end
of every group (and chunk) the replicas idled until the last batch of the group was done; a bare
loop makes one translate_iterable call over the whole corpus and never drains. On a machine
with one free core the drain costs nothing (one replica never waits for another), so it cannot
be timed here; this benchmark measures what it depends on and computes what it costs:

1. the batches CTranslate2 makes of kdnmt's translate_batch calls (and of one bare
   translate_iterable call): each call's sentences sorted by decreasing length and cut where
   one more would make (sentences x longest) exceed the batch size, as CTranslate2's batch
   reader does (an approximation of its C++ rebatching: the batch durations are what matters);
   each batch is then decoded alone, with one replica, and timed;
2. the makespan of those batches on N replicas (CTranslate2's queue is first in, first out:
   each batch goes to the first free replica), for N = 1, 2, 4, 8, 16: the bare loop's
   batches without a drain; kdnmt's with a drain after every group (before) and without (now,
   the pipelined decode_stream).

It prints, per N, the predicted decoding time of each relative to the bare loop. A model, not a
measurement on N cores: replicas that slow each other down (memory bandwidth, shared caches)
and the main thread's own work are not in it; the header names the CPU the batch durations were
measured on.

    KDNMT_THREADS=1 taskset -c 1 .venv/bin/python bench/decode_overlap.py [--lines 2000]
        [--teacher-dir data/demo/teacher] [--data data/demo/de-en]

Not a test: figures go to docs/benchmarks.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import heapq
import lzma
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO, kdnmt, machine_header

BATCH_TOKENS = 2048
CHUNK = 1000


def sub_batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Indices of one translate_batch call's examples, in the batches CTranslate2 cuts them
    into (longest first; a batch grows while (examples + 1) x longest <= max_tokens)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    for i in order:
        if out and (len(out[-1]) + 1) * lengths[out[-1][0]] <= max_tokens:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def timed_batches(translator: Any, calls: list[tuple[int, list[list[str]], int]],
                  beam: int) -> list[tuple[int, float]]:
    """(drain group, seconds) of every batch of ``calls`` ((group, sentences, length cap)),
    each batch decoded alone by one replica."""
    out = []
    for group, sentences, cap in calls:
        for batch in sub_batches([len(s) for s in sentences], BATCH_TOKENS):
            part = [sentences[i] for i in batch]
            start = time.perf_counter()
            translator.translate_batch(part, max_batch_size=len(part), beam_size=beam,
                                       max_decoding_length=cap)
            out.append((group, time.perf_counter() - start))
    return out


def makespan(work: list[tuple[int, float]], replicas: int, drain: bool) -> float:
    """Time to run ``work`` (group, duration) first in first out on ``replicas``; with
    ``drain``, a group's batches wait until every batch of the groups before has finished."""
    free = [0.0] * replicas
    heapq.heapify(free)
    barrier = 0.0
    finish = 0.0
    current = None
    for group, duration in work:
        if drain and group != current:
            barrier, current = finish, group
        start = max(heapq.heappop(free), barrier)
        end = start + duration
        finish = max(finish, end)
        heapq.heappush(free, end)
    return finish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher-dir", type=Path, default=REPO / "data/demo/teacher")
    parser.add_argument("--data", type=Path, default=REPO / "data/demo/de-en")
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--beam", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kdnmt-overlap-"))
    try:
        for lang in ("de", "en"):
            with lzma.open(args.data / f"train.{lang}.xz", "rt", encoding="utf-8") as handle:
                lines = handle.read().split("\n")[: args.lines]
            (work / f"train.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        run = work / "run"
        kdnmt("prepare", "--run", run, "--src", "de", "--tgt", "en", "--train", work / "train",
              "--valid", work / "train", "--test", work / "train",
              "--teacher-checkpoint", args.teacher_dir / "teacher.pt",
              "--teacher-spm", args.teacher_dir / "spm.model")
        from kdnmt.models import ct2_model
        from kdnmt.rundir import RunDir
        from kdnmt.teacher.decode import TeacherDecoder, read_batches

        model = ct2_model(RunDir(run), "teacher", "int8")
        sources = (run / "data" / "train.sp.de").read_text(encoding="utf-8").splitlines()
        tokens = [line.split() or ["<unk>"] for line in sources]
        read_tokens = BATCH_TOKENS * 16
        with TeacherDecoder(model, beam=args.beam, nbest=1, batch_tokens=BATCH_TOKENS,
                            max_length=150, length_ratio=3.0, inter_threads=1) as decoder:
            translator = decoder._translator
            # the bare loop: translate_iterable's calls over the whole corpus, no drain
            calls = [(0, tokens[a:b], 150)
                     for a, b in read_batches([len(t) for t in tokens], read_tokens)]
            bare = timed_batches(translator, calls, args.beam)
            # kdnmt's calls: per chunk, per length-cap group; a drain group per (chunk, cap)
            calls, group = [], 0
            for c in range(0, len(tokens), CHUNK):
                caps: dict[int, list[int]] = {}
                for i in range(c, min(c + CHUNK, len(tokens))):
                    caps.setdefault(decoder.cap(len(tokens[i])), []).append(i)
                for cap, indices in caps.items():
                    for a, b in read_batches([len(tokens[i]) for i in indices], read_tokens):
                        calls.append((group, [tokens[i] for i in indices[a:b]], cap))
                    group += 1
            grouped = timed_batches(translator, calls, args.beam)
        print()
        print(machine_header({"teacher": decoder.compute_type}))
        print(f"{len(tokens):,} training sentences, beam {args.beam}, batches of {BATCH_TOKENS} "
              f"tokens, chunks of {CHUNK} lines: bare {len(bare)} batches "
              f"({sum(d for _, d in bare):.1f} s on one replica), kdnmt {len(grouped)} batches in "
              f"{group} groups ({sum(d for _, d in grouped):.1f} s)")
        print("| replicas | bare loop | kdnmt, drained per group (before) | kdnmt, pipelined "
              "(now) |")
        print("|---|---|---|---|")
        for n in (1, 2, 4, 8, 16):
            base = makespan(bare, n, drain=False)
            before = makespan(grouped, n, drain=True)
            now = makespan(grouped, n, drain=False)
            print(f"| {n} | {base:.1f} s (1.00) | {before:.1f} s ({base / before:.2f}x bare) | "
                  f"{now:.1f} s ({base / now:.2f}x bare) |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
