"""Release a trained teacher for the demo: float16 weights, no optimizer state, with its
SentencePiece model and vocabulary, so `prepare --teacher-checkpoint` can adopt it anywhere.

    python recipes/demo/release_teacher.py --run RUN --model teacher --out data/demo/teacher
    python recipes/demo/release_teacher.py --run RUN --model t384 --out DIR --resumable

Why: the demo teacher ships inside the repository. Half precision halves its size, tied
embeddings are stored once, and the sinusoidal position tables (pure functions of the options)
are left out; `prepare` adopts it back into float32 with the tables rebuilt. The BLEU of the
adopted teacher is measured in docs/demo.md.

``--resumable``: a teacher that needs more hours than one sitting is released where it got to
and trained on elsewhere (recipes/demo/continue_teacher.py puts it back into a run for
``kdnmt train --resume``). The release then also keeps the optimizer's step counters (not its
moments: they would triple the file, and Adam re-estimates them within a few hundred updates),
so the learning-rate schedule and the step numbering go on where they stopped, and the model's
config.yaml and its logs (metrics.csv, curve.csv) under ``training/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from resumable_release import TRAINING_DIR, TRAINING_FILES, steps_only

from kdnmt.models import checkpoint_path, load_model_info
from kdnmt.onmt_bridge.checkpoint import (
    cast_floating,
    drop_position_tables,
    load_checkpoint,
    save_checkpoint,
)
from kdnmt.rundir import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--model", default="teacher")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--resumable", action="store_true",
                        help="keep the step counters and the training logs (see above)")
    args = parser.parse_args()

    run = RunDir(args.run)
    info = load_model_info(run, args.model)
    checkpoint = load_checkpoint(checkpoint_path(run, info))
    optim = checkpoint.pop("optim", None)
    if args.resumable:
        checkpoint["optim"] = steps_only(optim, "release_teacher")
    cast_floating(checkpoint, torch.float16)
    drop_position_tables(checkpoint)
    args.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(checkpoint, args.out / "teacher.pt")
    shutil.copyfile(run.spm_model, args.out / "spm.model")
    shutil.copyfile(run.vocab, args.out / "vocab.txt")
    if args.resumable:
        training = args.out / TRAINING_DIR
        training.mkdir(exist_ok=True)
        for name in TRAINING_FILES:
            if (run.model_dir(args.model) / name).is_file():
                shutil.copyfile(run.model_dir(args.model) / name, training / name)
    summary = {k: info.get(k) for k in ("parameters", "step", "src", "tgt", "checkpoint_sha256")}
    (args.out / "released-from.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"released {args.model} (step {info.get('step')}) to {args.out}")


if __name__ == "__main__":
    main()
