"""Benchmark: `kdnmt train` against OpenNMT-py's own trainer on the same configuration and data.

"Bare" here is OpenNMT-py 3.5.1's own `onmt_train` entry point, ``onmt.bin.train.main()``, run
in a child process on the very ``onmt.yaml`` kdnmt wrote for its run (paths moved to another
directory), with one thing of kdnmt's before it: ``kdnmt.onmt_bridge.shims.install()``. Without
it ``onmt_train`` cannot start on torch 2.13 at all (OpenNMT-py imports spacy and fasttext at
import time, and torch >= 2.6 refuses its checkpoints' ``argparse.Namespace``); it patches
nothing in the training loop. Everything else kdnmt adds is measured: its own training loop
(progress callbacks, the time budget, resume bookkeeping, atomic checkpoints, the random state
in checkpoints, metrics.csv), the configuration checks, model.json, and with the default
configuration the learning-curve point at the final checkpoint.

Both train the same preset for the same updates, same seed and batches, on one corpus;
interleaved, --repeats times. Printed: OpenNMT-py's own throughput figure (target tokens per
second of the training loop, from each log's last step line: n_words / elapsed), the whole
command's wall and CPU seconds, and the ratios (target: kdnmt's training-loop tokens/s >= 0.95x
bare). The final step's loss of both logs must agree: the same work was done.

    KDNMT_THREADS=1 taskset -c 1 .venv/bin/python bench/train_overhead.py [--lines 8000]
        [--steps 100] [--preset tiny] [--repeats 3]

Not a test: figures go to docs/benchmarks.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import REPO, kdnmt_measured, machine_header, prepare_demo_slice

#: OpenNMT-py's own trainer, with kdnmt's import-time shims only (see the module docstring).
BARE = """
import os, sys
sys.path.insert(0, sys.argv[1])
from kdnmt.onmt_bridge import shims
shims.install()
import torch
if os.environ.get("KDNMT_THREADS"):
    torch.set_num_threads(int(os.environ["KDNMT_THREADS"]))  # as kdnmt's limit_torch_threads
from onmt.bin.train import main
sys.argv = ["onmt_train", "-config", sys.argv[2]]
main()
"""


def run_bare(config: Path, console: Path) -> dict[str, float]:
    """Run the bare trainer; its console (where OpenNMT-py logs the steps once its data
    iterator has re-initialised the logger without the file handler) goes to ``console``."""
    start = time.perf_counter()
    with open(console, "wb") as out:
        child = subprocess.Popen([sys.executable, "-c", BARE, str(REPO), str(config)],
                                 cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"error: bare OpenNMT-py training failed:\n{console.read_text()[-3000:]}")
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024}


def kdnmt_last_step(log: Path) -> tuple[float, float, float]:
    """(loss, target tokens/s, elapsed s) of kdnmt's last step line."""
    found = re.findall(r"Step \d+/\d+; loss ([\d.]+); .*?; (\d+) tok/s; .*?; ([\d.]+) s$",
                       log.read_text(), flags=re.M)
    loss, rate, elapsed = found[-1]
    return float(loss), float(rate), float(elapsed)


def bare_last_step(log: Path) -> tuple[float, float, float]:
    """(xent, target tokens/s, elapsed s) of OpenNMT-py's last step line."""
    found = re.findall(r"Step +\d+/ *\d+; .*?xent: ([\d.]+); .*? (\d+)/ *(\d+) tok/s; +(\d+) sec",
                       log.read_text(), flags=re.M)
    if not found:
        sys.exit(f"error: no step line in {log}")
    xent, _, rate, elapsed = found[-1]
    return float(xent), float(rate), float(elapsed)


def interval_rates(log: Path, pattern: str) -> list[float]:
    """Target tokens/s of every report interval after the first (warm-up)."""
    return [float(x) for x in re.findall(pattern, log.read_text(), flags=re.M)][1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher-dir", type=Path, default=REPO / "data/demo/teacher",
                        help="Only its SentencePiece model is used (the run's vocabulary).")
    parser.add_argument("--data", type=Path, default=REPO / "data/demo/de-en")
    parser.add_argument("--lines", type=int, default=8000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kdnmt-train-overhead-"))
    try:
        run = prepare_demo_slice(work, args.data, args.teacher_dir, args.lines)
        # report every 10 updates; validation and checkpoints at the end only, in both
        config = work / "config.yaml"
        config.write_text(yaml.safe_dump({"training": {
            "report_every": 10, "valid_steps": args.steps, "save_steps": args.steps * 10}}))
        rows: dict[str, list[dict[str, float]]] = {"kdnmt": [], "bare": []}
        for repeat in range(args.repeats):
            measured = kdnmt_measured("train", "--run", run, "--name", "k", "--preset",
                                      args.preset, "--config", config, "--steps", args.steps,
                                      "--force")
            model_dir = run / "models" / "k"
            loss, rate, elapsed = kdnmt_last_step(model_dir / "train.log")
            measured.update(loss=loss, rate=rate, elapsed=elapsed, median_rate=statistics.median(
                interval_rates(model_dir / "train.log", r"; (\d+) tok/s;")))
            rows["kdnmt"].append(measured)
            bare_dir = work / "bare"
            shutil.rmtree(bare_dir, ignore_errors=True)
            bare_dir.mkdir()
            opts = yaml.safe_load((model_dir / "onmt.yaml").read_text())
            opts.update(save_data=str(bare_dir / "onmt"), save_model=str(bare_dir / "model"),
                        log_file=str(bare_dir / "train.log"),
                        tensorboard_log_dir=str(bare_dir / "tensorboard"))
            (bare_dir / "onmt.yaml").write_text(yaml.safe_dump(opts, sort_keys=False))
            measured = run_bare(bare_dir / "onmt.yaml", bare_dir / "console.log")
            xent, rate, elapsed = bare_last_step(bare_dir / "console.log")
            measured.update(loss=xent, rate=rate, elapsed=elapsed, median_rate=statistics.median(
                interval_rates(bare_dir / "console.log", r"/ *(\d+) tok/s;")))
            rows["bare"].append(measured)
            print(repeat, {k: v[-1] for k, v in rows.items()}, flush=True)

        def med(name: str, key: str) -> float:
            return statistics.median(r[key] for r in rows[name])

        print()
        print(machine_header())
        print(f"{args.lines:,} training lines, preset {args.preset}, {args.steps} updates, "
              f"medians of {args.repeats} interleaved runs; bare = onmt.bin.train.main() on "
              "kdnmt's onmt.yaml with kdnmt's import shims")
        print("| trainer | loss at the last step | tokens/s (last report) | tokens/s (median "
              "interval) | loop s | command wall s | command CPU s | peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|")
        for name in ("bare", "kdnmt"):
            print(f"| {name} | {rows[name][-1]['loss']:.4f} | {med(name, 'rate'):,.0f} | "
                  f"{med(name, 'median_rate'):,.0f} | {med(name, 'elapsed'):.1f} | "
                  f"{med(name, 'seconds'):.1f} | {med(name, 'cpu_seconds'):.1f} | "
                  f"{med(name, 'rss_mb'):,.0f} |")
        print(f"kdnmt / bare: tokens/s (median interval) "
              f"{med('kdnmt', 'median_rate') / med('bare', 'median_rate'):.3f}, training loop "
              f"time {med('kdnmt', 'elapsed') / med('bare', 'elapsed'):.3f}, whole command "
              f"{med('kdnmt', 'seconds') / med('bare', 'seconds'):.3f} (wall), "
              f"{med('kdnmt', 'cpu_seconds') / med('bare', 'cpu_seconds'):.3f} (CPU)")
        same = {round(r["loss"], 1) for r in rows["kdnmt"] + rows["bare"]}  # bare logs 1 dp
        print("same work: the last step's loss agrees" if len(same) == 1 else
              f"WARNING: the last step's loss differs between runs: {sorted(same)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
