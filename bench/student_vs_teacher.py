"""Benchmark: an exported int8 student against its teacher, speed and size, side by side.

The student is exported as a user would (`kdnmt export`, int8, into a temporary directory); the
teacher is the run's CTranslate2 conversion as `kdnmt generate` decodes it (int8 unless
--teacher-quantization). Both translate the same first N sentences of the run's test split
with the same beam, batch size and threads (one replica per core) through kdnmt's Translator,
interleaved --repeats times; medians are shown. Printed: source and output tokens/s, BLEU, size
on disk and the ratios against the targets: the student >= 5x the teacher's tokens/s (source
tokens/s: both read the same pieces, while a student that runs on would look fast by output
tokens) and <= 1/8 of its size on disk (the CTranslate2 model files of both, same
quantization: model.bin, config and vocabulary, not the tokenizer and model card an export adds;
the teacher's PyTorch checkpoint is shown too). The header names the CPU, its
flags and the compute types.

    KDNMT_THREADS=1 taskset -c 1 .venv/bin/python bench/student_vs_teacher.py --run RUN \
        [--teacher teacher] --student seq [--sentences 1000] [--beam 5] [--repeats 3]

Not a test: figures go to docs/benchmarks.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import kdnmt, machine_header


def model_bytes(model_dir: Path) -> int:
    """Bytes of a CTranslate2 model's own files in ``model_dir`` (an export also holds the
    SentencePiece model, its model card and README, which the teacher's conversion has not)."""
    from kdnmt.export import CARD_NAME, SPM_NAME

    return sum(p.stat().st_size for p in model_dir.iterdir()
               if p.is_file() and p.name not in (SPM_NAME, CARD_NAME, "README.md"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--teacher", default="teacher")
    parser.add_argument("--student", required=True)
    parser.add_argument("--teacher-quantization", default="int8")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from kdnmt.corpus.text import iter_parallel, normalise
    from kdnmt.evaluate import score
    from kdnmt.export import SPM_NAME
    from kdnmt.models import checkpoint_path, ct2_model, load_model_info
    from kdnmt.rundir import RunDir
    from kdnmt.translation import Translator, default_threads

    run = RunDir(args.run)
    manifest = run.load_manifest()
    src, tgt = manifest["src"], manifest["tgt"]
    sources, references = [], []
    for s, t in iter_parallel(run.text("test", src), run.text("test", tgt)):
        sources.append(normalise(s))
        references.append(normalise(t))
        if len(sources) >= args.sentences:
            break
    teacher_info = load_model_info(run, args.teacher)
    teacher_dir = ct2_model(run, args.teacher, args.teacher_quantization)
    work = Path(tempfile.mkdtemp(prefix="kdnmt-student-bench-"))
    try:
        export = work / "student-int8"
        kdnmt("export", "--run", args.run, "--model", args.student, "--output", export)
        models = {"teacher": (teacher_dir, run.spm_model), "student": (export, export / SPM_NAME)}
        timings: dict[str, list[float]] = {name: [] for name in models}
        out: dict[str, tuple[list[str], int, int, str]] = {}
        for _ in range(max(1, args.repeats)):
            for name, (model_dir, spm) in models.items():
                with Translator(model_dir, spm, beam=args.beam) as translator:
                    source_tokens = sum(len(p) for p in
                                        translator.tokenizer.pieces_batch(sources))
                    start = time.perf_counter()
                    hypotheses = translator.translate(sources)
                    timings[name].append(time.perf_counter() - start)
                    out[name] = (hypotheses, source_tokens, translator.stats.output_tokens,
                                 translator.compute_type)
        rows = {}
        for name, (model_dir, _) in models.items():
            hypotheses, source_tokens, output_tokens, _ = out[name]
            seconds = statistics.median(timings[name])
            rows[name] = {"src_rate": source_tokens / seconds, "out_rate": output_tokens / seconds,
                          "bleu": score(hypotheses, references, tgt)["bleu"],
                          "size": model_bytes(model_dir)}
        checkpoint_bytes = checkpoint_path(run, teacher_info).stat().st_size
        print()
        print(machine_header({f"{n} ({models[n][0].name})": out[n][3] for n in models}))
        print(f"{len(sources):,} test sentences of {args.run}, beam {args.beam}, "
              f"{default_threads()[0]} replica(s) each, medians of {args.repeats} interleaved "
              f"runs; teacher '{args.teacher}' ({args.teacher_quantization}), student "
              f"'{args.student}' (exported int8)")
        print("| model | src tok/s | out tok/s | BLEU | size on disk |")
        print("|---|---|---|---|---|")
        for name, row in rows.items():
            print(f"| {name} | {row['src_rate']:,.0f} | {row['out_rate']:,.0f} | {row['bleu']} | "
                  f"{row['size'] / 1e6:.2f} MB |")
        t, s = rows["teacher"], rows["student"]
        speed = s["src_rate"] / t["src_rate"]
        size = s["size"] / t["size"]
        print(f"student / teacher: {speed:.2f}x source tokens/s (target >= 5: "
              f"{'met' if speed >= 5 else 'missed'}), {s['out_rate'] / t['out_rate']:.2f}x "
              f"output tokens/s; size {size:.3f} of the teacher's CTranslate2 "
              f"{args.teacher_quantization} directory (target <= 0.125: "
              f"{'met' if size <= 0.125 else 'missed'}), {s['size'] / checkpoint_bytes:.3f} of "
              f"its PyTorch checkpoint ({checkpoint_bytes / 1e6:.2f} MB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
