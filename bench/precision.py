"""Benchmark: `kdnmt train --precision bf16` against float32, side by side on one machine.

bf16 is torch's CPU autocast around each update (shim 9 in kdnmt/onmt_bridge/shims.py): matrix
products in bfloat16, weights, optimizer and losses in float32. It pays only where the CPU
multiplies bfloat16 natively (avx512_bf16 or AMX; the flags are printed first); elsewhere
oneDNN emulates it. Both precisions train the same model for the same updates, same seed and
batches, interleaved, --repeats times; printed are the median tokens/s of the report intervals
(kdnmt's train.log, the first interval left out as warm-up), the loss at the last update (the
two must stay close: the same training, done in another arithmetic) and the ratio.

    .venv/bin/python bench/precision.py [--config recipes/demo/bundled-teacher.yaml]
        [--preset tiny] [--lines 20000] [--steps 60] [--repeats 2]

Not a test: figures go to docs/benchmarks.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

import yaml
from _common import REPO, kdnmt_measured, machine_header, prepare_demo_slice
from train_overhead import interval_rates, kdnmt_last_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher-dir", type=Path, default=REPO / "data/demo/teacher",
                        help="Only its SentencePiece model is used (the run's vocabulary).")
    parser.add_argument("--data", type=Path, default=REPO / "data/demo/de-en")
    parser.add_argument("--config", type=Path, default=None,
                        help="model/training YAML over the preset (e.g. a teacher's shape)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kdnmt-precision-"))
    try:
        run = prepare_demo_slice(work, args.data, args.teacher_dir, args.lines)
        config = yaml.safe_load(args.config.read_text()) if args.config else {}
        training = config.setdefault("training", {})
        # report every 10 updates; no validation, checkpoint or curve point but the last
        training.update(report_every=10, valid_steps=args.steps * 10, save_steps=args.steps * 10,
                        bleu_every=0)
        config_path = work / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        rows: dict[str, list[dict[str, float]]] = {"fp32": [], "bf16": []}
        for repeat in range(args.repeats):
            for precision in rows:
                measured = kdnmt_measured("train", "--run", run, "--name", precision,
                                          "--preset", args.preset, "--config", config_path,
                                          "--steps", args.steps, "--precision", precision,
                                          "--force")
                log = run / "models" / precision / "train.log"
                loss, _, elapsed = kdnmt_last_step(log)
                measured.update(loss=loss, elapsed=elapsed, rate=statistics.median(
                    interval_rates(log, r"; (\d+) tok/s;")))
                rows[precision].append(measured)
                print(repeat, precision, measured, flush=True)

        def med(name: str, key: str) -> float:
            return statistics.median(r[key] for r in rows[name])

        print()
        print(machine_header())
        shape = f"preset {args.preset}" + (f" with {args.config}" if args.config else "")
        print(f"{args.lines:,} training lines, {shape}, {args.steps} updates, medians of "
              f"{args.repeats} interleaved runs")
        print("| precision | loss at the last update | target tokens/s (median interval) | "
              "training loop s | command wall s |")
        print("|---|---|---|---|---|")
        for name in rows:
            print(f"| {name} | {rows[name][-1]['loss']:.4f} | {med(name, 'rate'):,.0f} | "
                  f"{med(name, 'elapsed'):.1f} | {med(name, 'seconds'):.1f} |")
        print(f"bf16 / fp32: tokens/s {med('bf16', 'rate') / med('fp32', 'rate'):.2f}x, "
              f"training loop time {med('bf16', 'elapsed') / med('fp32', 'elapsed'):.2f}x; "
              f"last loss {rows['bf16'][-1]['loss']:.4f} vs {rows['fp32'][-1]['loss']:.4f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
