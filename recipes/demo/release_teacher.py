"""Release a trained teacher for the demo: float16 weights, no optimizer state, with its
SentencePiece model and vocabulary, so `prepare --teacher-checkpoint` can adopt it anywhere.

    python recipes/demo/release_teacher.py --run RUN --model teacher --out data/demo/teacher

Why: the demo teacher ships inside the repository. Half precision halves its size, tied
embeddings are stored once, and the sinusoidal position tables (pure functions of the options)
are left out; `prepare` adopts it back into float32 with the tables rebuilt. The BLEU of the
adopted teacher is measured in docs/demo.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

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
    args = parser.parse_args()

    run = RunDir(args.run)
    info = load_model_info(run, args.model)
    checkpoint = load_checkpoint(checkpoint_path(run, info))
    checkpoint.pop("optim", None)
    cast_floating(checkpoint, torch.float16)
    drop_position_tables(checkpoint)
    args.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(checkpoint, args.out / "teacher.pt")
    shutil.copyfile(run.spm_model, args.out / "spm.model")
    shutil.copyfile(run.vocab, args.out / "vocab.txt")
    summary = {k: info.get(k) for k in ("parameters", "step", "src", "tgt", "checkpoint_sha256")}
    (args.out / "released-from.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"released {args.model} (step {info.get('step')}) to {args.out}")


if __name__ == "__main__":
    main()
