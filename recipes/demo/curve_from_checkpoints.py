"""Score the saved checkpoints of a model into its learning curve (models/NAME/curve.csv).

`kdnmt train` scores a curve point at checkpoint saves as it trains (training.bleu_every). This
script does the same afterwards, for every checkpoint a model kept (`keep_checkpoint: -1`), e.g.
for a teacher whose training started before a curve was configured. Points already in the
curve are kept; the scoring is kdnmt's own (greedy CTranslate2 int8, the first N validation
pairs, BLEU and chrF as `kdnmt eval` computes them).

    .venv/bin/python recipes/demo/curve_from_checkpoints.py --run RUN --model NAME [--sentences 300]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--max-length", type=int, default=250)
    args = parser.parse_args(argv)

    from kdnmt.cli.common import limit_torch_threads
    from kdnmt.curves import CurveRecorder
    from kdnmt.errors import KdnmtError
    from kdnmt.onmt_bridge.checkpoint import checkpoint_step, list_checkpoints
    from kdnmt.rundir import RunDir

    limit_torch_threads()
    try:
        run = RunDir(args.run)
        manifest = run.load_manifest()
        model_dir = run.model_dir(args.model)
        checkpoints = list_checkpoints(model_dir)
        if not checkpoints:
            raise KdnmtError(f"model '{args.model}' of {args.run} has no checkpoint")
        last = max(checkpoint_step(c) for c in checkpoints)
        recorder = CurveRecorder(run, model_dir, every=1, sentences=args.sentences,
                                 max_length=args.max_length, start_step=last,
                                 src=manifest["src"], tgt=manifest["tgt"])
        for checkpoint in checkpoints:
            point = recorder(checkpoint_step(checkpoint), checkpoint, final=True)
            if point is not None:
                print(f"step {point.step}: BLEU {point.bleu:.2f} chrF {point.chrf:.2f} "
                      f"({point.sentences} sentences, {point.wall_s:.0f} s)", flush=True)
    except KdnmtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
