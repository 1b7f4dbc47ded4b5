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

from resumable_release import TRAINING_DIR, check_release, last_step

from kdnmt.onmt_bridge.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    to_training_form,
)
from kdnmt.rundir import RunDir

WHO = "continue_teacher"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()

    checkpoint = load_checkpoint(args.release / "teacher.pt")
    step = last_step(checkpoint.get("optim"), WHO)
    check_release(args.release, WHO)
    run = RunDir(args.run)
    if not run.manifest_path.is_file():
        raise SystemExit(f"continue_teacher: {args.run} is not prepared (kdnmt prepare first)")
    model_dir = run.model_dir(args.model)
    if model_dir.exists() and list_checkpoints(model_dir):
        raise SystemExit(f"continue_teacher: {model_dir} has checkpoints already: "
                         "resume it with kdnmt train --resume")
    to_training_form(checkpoint)
    model_dir.mkdir(parents=True, exist_ok=True)
    for source in sorted((args.release / TRAINING_DIR).iterdir()):
        shutil.copyfile(source, model_dir / source.name)
    save_checkpoint(checkpoint, model_dir / f"model_step_{step}.pt")
    print(f"{args.model}: step {step} restored into {model_dir}; continue it with "
          f"kdnmt train --run {args.run} --name {args.model} --resume --steps N")


if __name__ == "__main__":
    main()
