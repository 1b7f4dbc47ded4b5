"""Benchmark: teacher decoding speed at equal quality, side by side in one run.

Decodes the same N real validation sentences with the same teacher, beam 5, by
  1. onmt_translate (OpenNMT-py, PyTorch),
  2. bare CTranslate2 translate_iterable (int8, one replica per core),
  3. kdnmt generate, float32 and int8,
and prints tokens/s, the ratios and each output's BLEU against the references. Then measures
soft-target throughput (positions/s) and bytes per position of the store.

    .venv/bin/python bench/generate.py [--teacher-dir ../shared/teacher/de-en]
        [--data ../shared/data/de-en] [--sentences 1000]

Not a test: figures go to docs/benchmarks.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, kdnmt


def bleu(hyp_path: Path, ref_path: Path) -> float:
    from sacrebleu.metrics import BLEU

    hyps = hyp_path.read_text(encoding="utf-8").splitlines()
    refs = ref_path.read_text(encoding="utf-8").splitlines()
    return round(BLEU().corpus_score(hyps, [refs]).score, 2)


def count_tokens(path: Path) -> int:
    return sum(len(line.split()) for line in path.read_text(encoding="utf-8").splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher-dir", type=Path, default=REPO.parent / "shared/teacher/de-en")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/de-en")
    parser.add_argument("--src", default="de")
    parser.add_argument("--tgt", default="en")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--beam", type=int, default=5)
    args = parser.parse_args()
    for needed in (args.teacher_dir / "teacher.pt", args.teacher_dir / "spm.model",
                   args.data / f"valid.{args.src}"):
        if not needed.exists():
            sys.exit(f"error: {needed} not found (this benchmark needs a real teacher and data)")

    work = Path(tempfile.mkdtemp(prefix="kdnmt-bench-"))
    try:
        sl, tl = args.src, args.tgt
        for lang in (sl, tl):
            lines = (args.data / f"valid.{lang}").read_text(encoding="utf-8").splitlines()
            (work / f"bench.{lang}").write_text("\n".join(lines[: args.sentences]) + "\n")
        run = work / "run"
        # A run whose training split is the benchmark sentences, with the adopted teacher.
        kdnmt("prepare", "--run", run, "--src", sl, "--tgt", tl, "--train", work / "bench",
              "--valid", work / "bench", "--test", work / "bench", "--max-length", "100000",
              "--teacher-checkpoint", args.teacher_dir / "teacher.pt",
              "--teacher-spm", args.teacher_dir / "spm.model")
        src_pieces = run / "data" / f"train.sp.{sl}"
        refs = run / "data" / f"train.{tl}"
        threads = os.cpu_count() or 1
        rows = []

        # 1. onmt_translate (its own process: the timing includes its start-up and model load)
        out = work / "onmt.out"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kdnmt.onmt_bridge.onmt_translate",
                        "-model", str(run / "models/teacher/teacher.pt"), "-src", str(src_pieces),
                        "-output", str(out), "-beam_size", str(args.beam), "-batch_size", "2048",
                        "-batch_type", "tokens", "-max_length", "150", "-gpu", "-1"],
                       check=True, capture_output=True)
        seconds = time.perf_counter() - start
        detok = work / "onmt.detok"
        _detok(run / "spm.model", out, detok)
        rows.append(("onmt_translate (PyTorch)", count_tokens(out), seconds, bleu(detok, refs)))
        print(rows[-1], flush=True)

        # 2. bare CTranslate2
        import ctranslate2

        from kdnmt.onmt_bridge.convert import convert_checkpoint

        ct2_dir = work / "ct2-int8"
        convert_checkpoint(run / "models/teacher/teacher.pt", ct2_dir, "int8")
        sources = [line.split() for line in src_pieces.read_text().splitlines()]
        start = time.perf_counter()  # both engines are timed from loading the model
        translator = ctranslate2.Translator(str(ct2_dir), device="cpu", inter_threads=threads,
                                            intra_threads=1)
        results = list(translator.translate_iterable(
            iter(sources), max_batch_size=2048, batch_type="tokens", beam_size=args.beam,
            max_decoding_length=150))
        seconds = time.perf_counter() - start
        translator.unload_model()
        out = work / "ct2.out"
        out.write_text("\n".join(" ".join(r.hypotheses[0]) for r in results) + "\n")
        _detok(run / "spm.model", out, work / "ct2.detok")
        rows.append(("CTranslate2 translate_iterable int8", count_tokens(out), seconds,
                     bleu(work / "ct2.detok", refs)))

        # 3. kdnmt generate, in-process: from loading the teacher to the assembled, checksummed
        # outputs (the one-time conversion and Python's start-up are outside, as for the others)
        from kdnmt.generate import GenerateOptions, generate

        for quant in ("float32", "int8"):
            kdnmt("eval", "--run", run, "--models", "teacher", "--beam", "1",
                  "--quantization", quant, "--limit", "1")  # convert outside the timing
            start = time.perf_counter()
            generate(GenerateOptions(run=run, beam=args.beam, quantization=quant, force=True))
            seconds = time.perf_counter() - start
            gen = run / "generated" / "teacher"
            rows.append((f"kdnmt generate {quant}", count_tokens(gen / f"train.sp.{tl}"), seconds,
                         bleu(gen / f"train.{tl}", refs)))

        # 4. soft targets
        start = time.perf_counter()
        kdnmt("generate", "--run", run, "--beam", args.beam, "--soft-targets", "8")
        soft_seconds = time.perf_counter() - start
        meta = json.loads((run / "generated/teacher/soft-references/meta.json").read_text())
        store_bytes = sum(f["bytes"] for f in meta["files"].values()) \
            if isinstance(meta.get("files"), dict) else None

        base = rows[0][1] / rows[0][2]
        ct2 = rows[1][1] / rows[1][2]
        print(f"\n{args.sentences} validation sentences, beam {args.beam}, {threads} cores, "
              f"teacher {args.teacher_dir}")
        print("| engine | tokens/s | × onmt_translate | × bare CTranslate2 | BLEU |")
        print("|---|---|---|---|---|")
        for name, tokens, seconds, score in rows:
            rate = tokens / seconds
            print(f"| {name} | {rate:,.0f} | {rate / base:.2f} | {rate / ct2:.2f} | {score} |")
        positions = meta["positions"]
        print(f"\nsoft targets (top-8, along references, PyTorch teacher-forced): "
              f"{positions:,} positions in {soft_seconds:.1f} s = "
              f"{positions / soft_seconds:,.0f} positions/s (whole command, decoding skipped); "
              f"store {meta['k'] * 6} bytes per position"
              + (f", {store_bytes:,} bytes on disk" if store_bytes else ""))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _detok(spm_model: Path, pieces: Path, out: Path) -> None:
    import sentencepiece as spm

    proc = spm.SentencePieceProcessor(model_file=str(spm_model))
    lines = pieces.read_text(encoding="utf-8").splitlines()
    out.write_text("\n".join(proc.decode_pieces(line.split()) for line in lines) + "\n")


if __name__ == "__main__":
    main()
