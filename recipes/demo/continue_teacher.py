"""Put a resumable teacher release back into a run, so that training goes on where it stopped:

    python recipes/demo/release_teacher.py --run OLD --model t384 --out DIR --resumable
    # ... on another machine, another day:
    kdnmt prepare --run NEW ...        # the same data and vocabulary as OLD
    python recipes/demo/continue_teacher.py --release DIR --run NEW --model t384
    kdnmt train --run NEW --name t384 --resume --steps N

Why: a teacher worth distilling needs more CPU hours than one sitting, and the run directory
of a sitting does not travel (its checkpoints carry the optimizer's moments, three times the
weights). The release does: float16 weights, the step counters and the training logs (see
``release_teacher.py --resumable``). Here they become the model's latest checkpoint again, in
float32 with the position tables rebuilt, and ``--resume`` continues its learning-rate schedule
and step numbering; only the Adam moments start afresh. The data order is that of a resumed
run: the batches before the step are skipped.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from kdnmt.onmt_bridge.checkpoint import (
    cast_floating,
    list_checkpoints,
    load_checkpoint,
    rebuild_position_tables,
    save_checkpoint,
)
from kdnmt.rundir import RunDir

TRAINING_DIR = "training"  # as in release_teacher.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()

    checkpoint = load_checkpoint(args.release / "teacher.pt")
    optim = checkpoint.get("optim")
    if not isinstance(optim, dict) or "training_step" not in optim:
        raise SystemExit(f"continue_teacher: {args.release} is not a resumable release "
                         "(release_teacher.py --resumable)")
    if not (args.release / TRAINING_DIR / "config.yaml").is_file():
        raise SystemExit(f"continue_teacher: {args.release / TRAINING_DIR} has no config.yaml")
    run = RunDir(args.run)
    if not run.manifest_path.is_file():
        raise SystemExit(f"continue_teacher: {args.run} is not prepared (kdnmt prepare first)")
    model_dir = run.model_dir(args.model)
    if model_dir.exists() and list_checkpoints(model_dir):
        raise SystemExit(f"continue_teacher: {model_dir} has checkpoints already: "
                         "resume it with kdnmt train --resume")
    # OpenNMT-py saves the step it will take next; its checkpoint is named after the last one.
    step = int(optim["training_step"]) - 1
    rebuild_position_tables(checkpoint)
    cast_floating(checkpoint, torch.float32)
    model_dir.mkdir(parents=True, exist_ok=True)
    for source in sorted((args.release / TRAINING_DIR).iterdir()):
        shutil.copyfile(source, model_dir / source.name)
    save_checkpoint(checkpoint, model_dir / f"model_step_{step}.pt")
    print(f"{args.model}: step {step} restored into {model_dir}; continue it with "
          f"kdnmt train --run {args.run} --name {args.model} --resume --steps N")


if __name__ == "__main__":
    main()
