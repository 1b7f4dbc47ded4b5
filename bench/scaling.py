"""Benchmark: `generate` and a `distill` epoch against corpus size, side by side in one run.

For each size (default 2,000 and 20,000 lines of the demo training slice, with the bundled
teacher adopted by `prepare --teacher-checkpoint`), in that order:

  generate           pseudo-targets (beam 5), in a child process of its own: seconds of the
                     generate() call (conversion and imports outside, done before), peak RSS;
  generate --soft-targets 8   the top-8 store along the references (decoding already done):
                     seconds of the call, peak RSS;
  distill word (cache)        one epoch of a `tiny` student: as many updates as the corpus has
                     batches of training.batch_size tokens (sum over pairs of max(source,
                     target + 2) pieces, padding ignored); seconds of the training loop from
                     train.log, and the whole command's peak RSS (learning curve off, no
                     validation or checkpoint before the last update).

It prints seconds per 1,000 lines for each size, the ratio of the largest size's to the
smallest's (linear: 1.0; target <= 1.2) and the ratio of their peak resident memory (target:
flat). The header names the CPU, its flags and CTranslate2's compute type.

    KDNMT_THREADS=1 taskset -c 1 .venv/bin/python bench/scaling.py [--sizes 2000,20000]
        [--teacher-dir data/demo/teacher] [--data data/demo/de-en]

Not a test: figures go to docs/benchmarks.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import json
import lzma
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from _common import REPO, kdnmt, kdnmt_measured, machine_header

#: Runs one generate() call in a child process and prints its seconds and peak RSS: the child
#: converts the teacher first (outside the timing), so the seconds are decoding, checks and
#: assembly only, and ru_maxrss is that process's own peak.
CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from kdnmt.cli.common import limit_torch_threads
from kdnmt.teacher.generate import GenerateOptions, generate
from kdnmt.models import ct2_model
from kdnmt.rundir import RunDir
limit_torch_threads()
run, soft = Path(sys.argv[2]), int(sys.argv[3])
ct2_model(RunDir(run), "teacher", "int8")
start, cpu = time.perf_counter(), time.process_time()
manifest = generate(GenerateOptions(run=run, beam=int(sys.argv[4]), soft_targets=soft))
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "compute_type":
                  manifest["decoding"]["ctranslate2_compute_type"],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def generate_child(run: Path, soft: int, beam: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(run), str(soft),
                          str(beam)], check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def read_xz(path: Path, n: int) -> list[str]:
    """The first ``n`` lines of ``path`` (``NAME.xz``), or of ``NAME`` when only the
    uncompressed file exists (a corpus directory may hold either)."""
    plain = path.with_suffix("")
    if not path.is_file() and plain.is_file():
        with open(plain, encoding="utf-8") as handle:
            lines = handle.read().split("\n")[:n]
    else:
        with lzma.open(path, "rt", encoding="utf-8") as handle:
            lines = handle.read().split("\n")[:n]
    if len(lines) < n:
        sys.exit(f"error: {path} has {len(lines)} lines, fewer than {n}")
    return lines


def epoch_updates(run: Path, src: str, tgt: str, batch_tokens: int, max_length: int) -> int:
    """Updates in one pass over the run's training pairs (what OpenNMT-py counts per example
    in a token batch: max(source, target + 2) pieces; padding ignored)."""
    tokens = 0
    with open(run / "data" / f"train.sp.{src}", encoding="utf-8") as fs, \
            open(run / "data" / f"train.sp.{tgt}", encoding="utf-8") as ft:
        for s, t in zip(fs, ft, strict=True):
            ls, lt = len(s.split()), len(t.split())
            if ls <= max_length and lt <= max_length:
                tokens += max(ls, lt + 2)
    return math.ceil(tokens / batch_tokens)


def loop_seconds(log: Path) -> float:
    """Seconds of the training loop: the elapsed time of the last step line of train.log."""
    found = re.findall(r"Step (\d+)/\d+; .*?; ([\d.]+) s$", log.read_text(), flags=re.M)
    if not found:
        sys.exit(f"error: no step line in {log}")
    return float(found[-1][1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2000,20000")
    parser.add_argument("--teacher-dir", type=Path, default=REPO / "data/demo/teacher")
    parser.add_argument("--data", type=Path, default=REPO / "data/demo/de-en")
    parser.add_argument("--src", default="de")
    parser.add_argument("--tgt", default="en")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="Keep the runs (printed).")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    sl, tl = args.src, args.tgt
    work = Path(tempfile.mkdtemp(prefix="kdnmt-scaling-"))
    results: dict[int, dict[str, dict[str, float]]] = {}
    compute_type = "?"
    try:
        valid = {lang: read_xz(args.data / f"valid.{lang}.xz", 500) for lang in (sl, tl)}
        for lang in (sl, tl):
            (work / f"valid.{lang}").write_text("\n".join(valid[lang]) + "\n", encoding="utf-8")
        config = work / "student.yaml"
        config.write_text(yaml.safe_dump({"training": {
            "valid_steps": 100000, "save_steps": 100000, "report_every": 1,
            "bleu_every": 0}}))
        for n in sizes:
            for lang in (sl, tl):
                lines = read_xz(args.data / f"train.{lang}.xz", n)
                (work / f"train{n}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
            run = work / f"run{n}"
            kdnmt("prepare", "--run", run, "--src", sl, "--tgt", tl, "--train", work / f"train{n}",
                  "--valid", work / "valid", "--test", work / "valid",
                  "--teacher-checkpoint", args.teacher_dir / "teacher.pt",
                  "--teacher-spm", args.teacher_dir / "spm.model")
            lines = json.loads((run / "manifest.json").read_text())["splits"]["train"]["kept"]
            row: dict[str, dict[str, float]] = {}
            gen = generate_child(run, 0, args.beam)
            compute_type = str(gen.pop("compute_type"))
            row["generate"] = gen
            row["generate --soft-targets 8"] = generate_child(run, 8, args.beam)
            updates = epoch_updates(run, sl, tl, 4096, 150)
            measured = kdnmt_measured("distill", "--run", run, "--name", "word",
                                      "--method", "word", "--teacher-mode", "cache",
                                      "--preset", "tiny", "--config", config,
                                      "--steps", updates)
            measured["loop_seconds"] = loop_seconds(run / "models" / "word" / "train.log")
            measured["updates"] = updates
            row["distill word, one epoch"] = measured
            row["lines"] = {"kept": lines}
            results[n] = row
            print(n, json.dumps(row), flush=True)
        print()
        print(machine_header({"kdnmt generate int8": compute_type}))
        small, large = sizes[0], sizes[-1]
        print(f"sizes {small:,} and {large:,} lines (kept by prepare: "
              f"{results[small]['lines']['kept']:,} and {results[large]['lines']['kept']:,}), "
              f"beam {args.beam}")
        print("| step | s / 1k lines, small | s / 1k lines, large | × linear | CPU s / 1k "
              "lines, small | large | × | peak RSS MB, small | large | × |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for step in ("generate", "generate --soft-targets 8", "distill word, one epoch"):
            key = "loop_seconds" if step.startswith("distill") else "seconds"
            per = [results[n][step][key] / results[n]["lines"]["kept"] * 1000
                   for n in (small, large)]
            cpu = [results[n][step]["cpu_seconds"] / results[n]["lines"]["kept"] * 1000
                   for n in (small, large)]
            rss = [results[n][step]["rss_mb"] for n in (small, large)]
            print(f"| {step} | {per[0]:.2f} | {per[1]:.2f} | {per[1] / per[0]:.2f} | "
                  f"{cpu[0]:.2f} | {cpu[1]:.2f} | {cpu[1] / cpu[0]:.2f} | "
                  f"{rss[0]:,.0f} | {rss[1]:,.0f} | {rss[1] / rss[0]:.2f} |")
        print("(distill: seconds of the training loop; CPU seconds of the whole command, its "
              "start-up included)")
        for n in (small, large):
            d = results[n]["distill word, one epoch"]
            print(f"distill at {n:,} lines: {d['updates']:.0f} updates, loop {d['loop_seconds']:.1f}"
                  f" s, whole command {d['seconds']:.1f} s")
        if args.keep:
            print(f"runs kept in {work}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
