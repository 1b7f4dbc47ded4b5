"""Benchmark: the cost of a KD training step, side by side in one run.

Trains the same student (same seed, same batches) for a few dozen steps with
  ce                 (no teacher),
  word, cache        (soft targets from the memory-mapped store),
  word, online       (frozen teacher forward pass in the same process),
and prints the median step time of each, the ratios against the targets
(cache <= 1.15 x ce; online <= 1.1 x (ce + a bare teacher forward)), and the peak resident
memory of a cache-mode run on a small and on a 4x larger corpus (it must not grow with it).

    .venv/bin/python bench/distill_step.py [--teacher-dir ../shared/teacher/de-en]
        [--data data/demo/de-en] [--lines 40000] [--steps 40]

Not a test: figures go to docs/benchmarks.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import lzma
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import REPO, kdnmt, machine_header


def peak_rss_mb(*args: object) -> float:
    """Run kdnmt in a child and return its peak resident memory (ru_maxrss of the child)."""
    code = ("import resource,runpy,sys;sys.argv=['kdnmt']+sys.argv[1:];"
            "exec('try:\\n runpy.run_module(\"kdnmt\", run_name=\"__main__\")\\n"
            "except SystemExit:\\n pass');"
            "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], check=True,
                         capture_output=True, text=True).stdout
    return int(re.search(r"RSS (\d+)", out).group(1)) / 1024


def step_times(log: Path) -> list[float]:
    elapsed = [float(x) for x in re.findall(r"Step \d+/\d+; .*?; ([\d.]+) s$", log.read_text(),
                                            flags=re.M)]
    return [b - a for a, b in zip(elapsed, elapsed[1:], strict=False)][3:]  # skip warm-up


def read_xz(path: Path, n: int) -> list[str]:
    with lzma.open(path, "rt", encoding="utf-8") as handle:
        return handle.read().split("\n")[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher-dir", type=Path, default=REPO.parent / "shared/teacher/de-en")
    parser.add_argument("--data", type=Path, default=REPO / "data/demo/de-en")
    parser.add_argument("--lines", type=int, default=40000)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    teacher = args.teacher_dir / "teacher.pt"
    if not teacher.exists():
        sys.exit(f"error: {teacher} not found (this benchmark needs a real teacher)")
    work = Path(tempfile.mkdtemp(prefix="kdnmt-bench-"))
    try:
        sizes = {"small": args.lines // 4, "large": args.lines}
        runs = {}
        for label, n in sizes.items():
            for lang in ("de", "en"):
                (work / f"{label}.{lang}").write_text(
                    "\n".join(read_xz(args.data / f"train.{lang}.xz", n)) + "\n")
                (work / f"valid.{lang}").write_text(
                    "\n".join(read_xz(args.data / f"valid.{lang}.xz", 200)) + "\n")
            run = work / label
            kdnmt("prepare", "--run", run, "--src", "de", "--tgt", "en", "--train", work / label,
                  "--valid", work / "valid", "--teacher-checkpoint", teacher,
                  "--teacher-spm", args.teacher_dir / "spm.model")
            start = time.perf_counter()
            kdnmt("generate", "--run", run, "--beam", "1", "--soft-targets", "8",
                  "--lines-per-chunk", "5000")
            print(f"{label}: {n} lines, generate + soft targets in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
            runs[label] = run
        cfg = work / "student.yaml"
        cfg.write_text(yaml.safe_dump({"training": {
            "report_every": 1, "valid_steps": 100000, "save_steps": 100000, "seed": 1}}))
        run = runs["large"]
        medians = {}
        for name, extra in (("ce", ("--method", "ce")),
                            ("word-cache", ("--method", "word", "--teacher-mode", "cache")),
                            ("word-online", ("--method", "word", "--teacher-mode", "online"))):
            kdnmt("distill", "--run", run, "--name", name, *extra, "--preset", "small",
                  "--config", cfg, "--steps", args.steps)
            medians[name] = statistics.median(step_times(run / "models" / name / "train.log"))
        # a bare teacher forward over the same kind of batches, timed in-process
        teacher_fwd = _teacher_forward_median(run, args.steps)
        ce = medians["ce"]
        print()
        print(machine_header())
        print(f"student preset small, {args.steps} steps, same seed and batches, "
              f"teacher {args.teacher_dir}")
        print("| mode | median step (s) | ratio | target |")
        print("|---|---|---|---|")
        print(f"| ce | {ce:.3f} | 1.00 | |")
        print(f"| word, cache (top-8 store) | {medians['word-cache']:.3f} | "
              f"{medians['word-cache'] / ce:.2f} × ce | ≤ 1.15 × ce |")
        print(f"| word, online | {medians['word-online']:.3f} | "
              f"{medians['word-online'] / (ce + teacher_fwd):.2f} × (ce + teacher forward "
              f"{teacher_fwd:.3f} s) | ≤ 1.1 |")
        rss = {label: peak_rss_mb("distill", "--run", r, "--name", "rss", "--method", "word",
                                  "--teacher-mode", "cache", "--preset", "small", "--config",
                                  cfg, "--steps", 10, "--force")
               for label, r in runs.items()}
        print(f"\npeak RSS, word with the cache, 10 steps: {sizes['small']:,} lines "
              f"{rss['small']:.0f} MB, {sizes['large']:,} lines {rss['large']:.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _teacher_forward_median(run: Path, steps: int) -> float:
    """Median time of the teacher's forward pass on batches of the student's batch size."""
    from kdnmt.onmt_bridge.inference import forced_log_probs, load_frozen_model

    frozen = load_frozen_model(run / "models" / "teacher" / "teacher.pt")
    src = (run / "data" / "train.sp.de").read_text().splitlines()
    tgt = (run / "data" / "train.sp.en").read_text().splitlines()
    # Length-sorted batches of ~4,096 padded tokens, as OpenNMT-py's bucketing makes them.
    order = sorted(range(len(src)), key=lambda j: len(tgt[j].split()))
    times, i = [], len(order) // 2
    for _ in range(steps):
        batch: list[int] = []
        while i < len(order):
            j = order[i]
            longest = max(len(src[j].split()), len(tgt[j].split()) + 1)
            if batch and longest * (len(batch) + 1) > 4096:
                break
            batch.append(j)
            i += 1
        start = time.perf_counter()
        forced_log_probs(frozen, [frozen.ids(src[j].split()) for j in batch],
                         [frozen.ids(tgt[j].split()) for j in batch])
        if i >= len(order):
            i = 0
        times.append(time.perf_counter() - start)
    return statistics.median(times[3:])


if __name__ == "__main__":
    main()
