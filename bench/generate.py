"""Benchmark: teacher decoding speed at equal quality, side by side in one run.

Decodes the same N real validation sentences with the same teacher, beam 5, by
  1. onmt_translate (OpenNMT-py, PyTorch),
  2. bare CTranslate2: one translate_iterable call over every sentence (int8, one replica per
     core: as many replicas as kdnmt uses, kdnmt.translation.default_threads),
  3. kdnmt's decoder alone (no files): translate_iterable group after group (how it decoded
     before it was pipelined) and TeacherDecoder.decode_stream (now), the same batches,
  4. kdnmt generate, float32 and int8 (from loading the model to the checksummed outputs),
and prints tokens/s (wall clock, and per CPU second: every thread's CPU time, which a busy
machine disturbs less), the ratios and each output's BLEU against the references. Bare
CTranslate2 and kdnmt generate int8 run --repeats times, interleaved; medians are shown. Then
measures soft-target throughput (positions/s) and bytes per position of the store. The header
names the CPU, its kernel flags and CTranslate2's compute types: figures from different CPUs are
never compared.

    .venv/bin/python bench/generate.py [--teacher-dir data/demo/teacher]
        [--data data/demo/de-en] [--sentences 1000] [--repeats 3]

Not a test: figures go to docs/benchmarks.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, kdnmt, machine_header


def bleu(hyp_path: Path, ref_path: Path) -> float:
    from sacrebleu.metrics import BLEU

    hyps = hyp_path.read_text(encoding="utf-8").splitlines()
    refs = ref_path.read_text(encoding="utf-8").splitlines()
    return round(BLEU().corpus_score(hyps, [refs]).score, 2)


def count_tokens(path: Path) -> int:
    return sum(len(line.split()) for line in path.read_text(encoding="utf-8").splitlines())


def read_split(data: Path, split: str, lang: str) -> list[str]:
    """``DATA/SPLIT.LANG`` or its ``.xz`` (the demo slice is compressed)."""
    plain = data / f"{split}.{lang}"
    if plain.exists():
        return plain.read_text(encoding="utf-8").splitlines()
    with lzma.open(f"{plain}.xz", "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


class Timer:
    """Wall-clock and CPU seconds (every thread of this process) of a block."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def per_group_translate_iterable(decoder, lines: list[str]) -> list:  # type: ignore[no-untyped-def]
    """kdnmt's decoding of a chunk before it was pipelined: one translate_iterable call per
    length-cap group, each drained before the next starts."""
    from kdnmt.teacher.decode import Hypotheses

    tokens = [line.split() or ["<unk>"] for line in lines]
    groups: dict[int, list[int]] = {}
    for i, toks in enumerate(tokens):
        groups.setdefault(decoder.cap(len(toks)), []).append(i)
    out = [None] * len(lines)
    for cap, indices in groups.items():
        results = decoder._translator.translate_iterable(
            (tokens[i] for i in indices), max_batch_size=decoder.batch_tokens,
            batch_type="tokens", beam_size=decoder.beam, num_hypotheses=decoder.nbest,
            return_scores=True, max_decoding_length=cap)
        for i, r in zip(indices, results, strict=True):
            out[i] = Hypotheses([" ".join(h) for h in r.hypotheses], [float(s) for s in r.scores])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher-dir", type=Path, default=REPO / "data/demo/teacher")
    parser.add_argument("--data", type=Path, default=REPO / "data/demo/de-en")
    parser.add_argument("--src", default="de")
    parser.add_argument("--tgt", default="en")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3,
                        help="Interleaved runs of bare CTranslate2 and kdnmt generate int8.")
    args = parser.parse_args()
    for needed in (args.teacher_dir / "teacher.pt", args.teacher_dir / "spm.model"):
        if not needed.exists():
            sys.exit(f"error: {needed} not found (this benchmark needs a real teacher and data)")

    work = Path(tempfile.mkdtemp(prefix="kdnmt-bench-"))
    try:
        sl, tl = args.src, args.tgt
        for lang in (sl, tl):
            lines = read_split(args.data, "valid", lang)
            (work / f"bench.{lang}").write_text("\n".join(lines[: args.sentences]) + "\n")
        run = work / "run"
        # A run whose training split is the benchmark sentences, with the adopted teacher.
        kdnmt("prepare", "--run", run, "--src", sl, "--tgt", tl, "--train", work / "bench",
              "--valid", work / "bench", "--test", work / "bench", "--max-length", "100000",
              "--teacher-checkpoint", args.teacher_dir / "teacher.pt",
              "--teacher-spm", args.teacher_dir / "spm.model")
        src_pieces = run / "data" / f"train.sp.{sl}"
        refs = run / "data" / f"train.{tl}"
        from kdnmt.translation import default_threads

        threads = default_threads()[0]
        rows: list[tuple[str, int, float, float, float]] = []  # name, tokens, wall, cpu, BLEU
        compute_types: dict[str, str] = {}

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
        rows.append(("onmt_translate (PyTorch)", count_tokens(out), seconds, float("nan"),
                     bleu(detok, refs)))
        print(rows[-1], flush=True)

        import ctranslate2

        from kdnmt.models import ct2_model
        from kdnmt.rundir import RunDir
        from kdnmt.teacher.decode import TeacherDecoder
        from kdnmt.teacher.generate import GenerateOptions, generate

        for quant in ("float32", "int8"):
            ct2_model(RunDir(run), "teacher", quant)  # converted outside every timing
        ct2_dir = ct2_model(RunDir(run), "teacher", "int8")
        sources = [line.split() for line in src_pieces.read_text().splitlines()]

        def bare() -> tuple[Timer, Path]:
            with Timer() as timer:  # timed from loading the model, as kdnmt generate
                translator = ctranslate2.Translator(str(ct2_dir), device="cpu",
                                                    inter_threads=threads, intra_threads=1)
                results = list(translator.translate_iterable(
                    iter(sources), max_batch_size=2048, batch_type="tokens",
                    beam_size=args.beam, max_decoding_length=150))
            compute_types["bare CTranslate2"] = translator.compute_type
            translator.unload_model()
            out = work / "ct2.out"
            out.write_text("\n".join(" ".join(r.hypotheses[0]) for r in results) + "\n")
            return timer, out

        def kdnmt_generate(quant: str) -> Timer:
            with Timer() as timer:
                manifest = generate(GenerateOptions(run=run, beam=args.beam, quantization=quant,
                                                    force=True))
            compute_types[f"kdnmt generate {quant}"] = \
                manifest["decoding"]["ctranslate2_compute_type"]
            return timer

        gen = run / "generated" / "teacher"
        timer = kdnmt_generate("float32")
        float32 = ("kdnmt generate float32", count_tokens(gen / f"train.sp.{tl}"), timer.wall,
                   timer.cpu, bleu(gen / f"train.{tl}", refs))

        # 2. and 4. int8, interleaved: bare, kdnmt, bare, kdnmt, ... (the last run leaves the
        # int8 settings for the soft targets below)
        timings: dict[str, list[Timer]] = {"bare": [], "int8": []}
        for _ in range(max(1, args.repeats)):
            timer, bare_out = bare()
            timings["bare"].append(timer)
            timings["int8"].append(kdnmt_generate("int8"))
        _detok(run / "spm.model", bare_out, work / "ct2.detok")
        int8 = (count_tokens(gen / f"train.sp.{tl}"), bleu(gen / f"train.{tl}", refs))

        def median(name: str, attr: str) -> float:
            return statistics.median(getattr(t, attr) for t in timings[name])

        rows.append(("CTranslate2 translate_iterable int8 (one call)", count_tokens(bare_out),
                     median("bare", "wall"), median("bare", "cpu"),
                     bleu(work / "ct2.detok", refs)))

        # 3. kdnmt's decoder alone, int8: the same batches, drained group by group or pipelined
        chunks = [(c, [" ".join(s) for s in sources[c * 1000:(c + 1) * 1000]])
                  for c in range((len(sources) + 999) // 1000)]
        with TeacherDecoder(ct2_dir, beam=args.beam, nbest=1, max_length=150,
                            length_ratio=3.0) as decoder:
            with Timer() as before:
                old = [per_group_translate_iterable(decoder, part) for _, part in chunks]
            with Timer() as now:
                new = [hyps for _, hyps in decoder.decode_stream(iter(chunks))]
        assert old == new, "the pipelined decoder gave other hypotheses"
        decoded = sum(len(h.pieces[0].split()) for part in new for h in part)
        rows.append(("kdnmt decoder: translate_iterable per length-cap group (before)", decoded,
                     before.wall, before.cpu, float("nan")))
        rows.append(("kdnmt decoder: pipelined, decode_stream (now)", decoded, now.wall,
                     now.cpu, float("nan")))

        rows.append(float32)
        rows.append(("kdnmt generate int8", int8[0], median("int8", "wall"),
                     median("int8", "cpu"), int8[1]))
        pair_ratios = [(int8[0] / k.wall) / (rows[1][1] / b.wall)
                       for b, k in zip(timings["bare"], timings["int8"], strict=True)]

        # 4. soft targets
        start = time.perf_counter()
        kdnmt("generate", "--run", run, "--beam", args.beam, "--soft-targets", "8")
        soft_seconds = time.perf_counter() - start
        meta = json.loads((run / "generated/teacher/soft-references/meta.json").read_text())
        store_bytes = sum(f["bytes"] for f in meta["files"].values()) \
            if isinstance(meta.get("files"), dict) else None

        base = rows[0][1] / rows[0][2]
        ct2, ct2_cpu = rows[1][1] / rows[1][2], rows[1][1] / rows[1][3]
        print()
        print(machine_header(compute_types))
        print(f"{args.sentences} validation sentences, beam {args.beam}, {threads} CTranslate2 "
              f"replica(s) for both, teacher {args.teacher_dir}; medians of {args.repeats} "
              "interleaved runs for the int8 rows of bare CTranslate2 and kdnmt generate")
        print("| engine | tokens/s | × onmt_translate | × bare CTranslate2 | tokens per CPU s "
              "| × bare (CPU) | BLEU |")
        print("|---|---|---|---|---|---|---|")
        for name, tokens, seconds, cpu, score in rows:
            rate, per_cpu = tokens / seconds, tokens / cpu if cpu == cpu else float("nan")
            print(f"| {name} | {rate:,.0f} | {rate / base:.2f} | {rate / ct2:.2f} | "
                  f"{per_cpu:,.0f} | {per_cpu / ct2_cpu:.2f} | {score} |")
        print(f"kdnmt generate int8 / bare, per interleaved pair: "
              f"{', '.join(f'{r:.3f}' for r in pair_ratios)}")
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
