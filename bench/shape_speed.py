"""Benchmark: how fast could a student of a given shape decode, against its teacher, before
training it?

At a fixed output length the work of a decoder depends on its shape, not on its weights. So
each shape is built with fresh weights (the teacher checkpoint's vocabulary and options,
another depth and width), converted to CTranslate2 int8 as `kdnmt export` converts a student,
and it and the run's teacher translate the same first N test sentences with every output
forced to the same length (CTranslate2's ``min_decoding_length`` = ``max_decoding_length``;
default: the median reference length in pieces), same beam, batch size and threads,
interleaved --repeats times (medians). A trained student of the run (--student) is decoded the
same way, as a check that the untrained shape's figure is that student's. Printed: parameters,
source tokens/s and the ratio to the teacher, against the 5x target of
bench/student_vs_teacher.py, which measures trained students at their own output lengths.

    KDNMT_THREADS=1 .venv/bin/python bench/shape_speed.py --run RUN \
        --shapes 3+2:d128,3+1:d128,6+1:d128,3+1:d64:ff256:h2 [--student hybrid] \
        [--sentences 500] [--beam 5] [--repeats 3]

A shape is ENC+DEC:dHIDDEN[:ffFF][:hHEADS] (ff defaults to 4 x hidden, heads to hidden / 32,
at least 1) or a preset name (tiny, small, base, big). Not a test: figures go to
docs/benchmarks.md with the command that produced them.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import machine_header

_SHAPE = re.compile(r"^(\d+)\+(\d+):d(\d+)((?::(?:ff|h)\d+)*)$")


def parse_shape(text: str):  # -> kdnmt.config.ModelConfig
    """``3+1:d128:ff512:h4`` or a preset name -> a ModelConfig (or SystemExit with why)."""
    from kdnmt.config import PRESETS, ModelConfig, preset_config
    from kdnmt.errors import KdnmtError

    if text in PRESETS:
        return preset_config(text).model
    match = _SHAPE.match(text)
    if not match:
        raise SystemExit(f"error: shape '{text}' is not ENC+DEC:dHIDDEN[:ffFF][:hHEADS] "
                         f"or a preset ({', '.join(PRESETS)})")
    enc, dec, hidden = (int(match.group(i)) for i in (1, 2, 3))
    extra = dict(re.findall(r":(ff|h)(\d+)", match.group(4)))
    shape = ModelConfig(enc_layers=enc, dec_layers=dec, hidden_size=hidden,
                        ff_size=int(extra.get("ff", 4 * hidden)),
                        heads=int(extra.get("h", max(1, hidden // 32))))
    try:
        shape.validate()
    except KdnmtError as exc:
        raise SystemExit(f"error: shape '{text}': {exc}") from None
    return shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--teacher", default="teacher")
    parser.add_argument("--shapes", required=True, help="comma-separated shapes")
    parser.add_argument("--student", help="a trained student of the run, as a check")
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--length", type=int, help="forced output length in pieces")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from kdnmt.corpus.spm import Tokenizer
    from kdnmt.corpus.text import iter_parallel, normalise
    from kdnmt.models import checkpoint_path, ct2_model, load_model_info
    from kdnmt.onmt_bridge.checkpoint import count_parameters, load_checkpoint
    from kdnmt.onmt_bridge.convert import convert_checkpoint
    from kdnmt.onmt_bridge.model_size import untrained_like
    from kdnmt.rundir import RunDir
    from kdnmt.translation import cpu_cores, load_translator

    shapes = {text: parse_shape(text) for text in args.shapes.split(",") if text}
    run = RunDir(args.run)
    manifest = run.load_manifest()
    tokenizer = Tokenizer(run.spm_model)
    sources, targets = [], []
    for s, t in iter_parallel(run.text("test", manifest["src"]),
                              run.text("test", manifest["tgt"])):
        sources.append(tokenizer.pieces(normalise(s)) or [""])
        targets.append(len(tokenizer.pieces(normalise(t))))
        if len(sources) >= args.sentences:
            break
    length = args.length or int(statistics.median(targets))
    source_tokens = sum(len(p) for p in sources)

    teacher_info = load_model_info(run, args.teacher)
    teacher_checkpoint = load_checkpoint(checkpoint_path(run, teacher_info))
    models: dict[str, tuple[Path, int]] = {
        f"teacher '{args.teacher}'": (ct2_model(run, args.teacher, "int8"),
                                      count_parameters(teacher_checkpoint))}
    work = Path(tempfile.mkdtemp(prefix="kdnmt-shape-bench-"))
    try:
        for text, shape in shapes.items():
            checkpoint = untrained_like(teacher_checkpoint, shape)
            path = work / f"shape{len(models)}.pt"
            torch.save(checkpoint, path)
            convert_checkpoint(path, work / f"shape{len(models)}", "int8")
            models[f"{text} (untrained)"] = (work / f"shape{len(models)}",
                                             count_parameters(checkpoint))
        if args.student:
            info = load_model_info(run, args.student)
            models[f"student '{args.student}' (trained)"] = (
                ct2_model(run, args.student, "int8"),
                count_parameters(load_checkpoint(checkpoint_path(run, info))))
        del teacher_checkpoint

        threads = cpu_cores()
        timings: dict[str, list[float]] = {name: [] for name in models}
        compute_types: dict[str, str] = {}
        for _ in range(max(1, args.repeats)):
            for name, (model_dir, _) in models.items():
                translator = load_translator(model_dir, device="cpu", compute_type="int8",
                                             inter_threads=1, intra_threads=threads)
                compute_types[name] = str(translator.compute_type)
                start = time.perf_counter()
                translator.translate_batch(
                    sources, max_batch_size=2048, batch_type="tokens", beam_size=args.beam,
                    min_decoding_length=length, max_decoding_length=length)
                timings[name].append(time.perf_counter() - start)
                translator.unload_model()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(machine_header({"every model": next(iter(compute_types.values()))}))
    print(f"{len(sources):,} test sentences of {args.run} ({source_tokens:,} source pieces), "
          f"every output forced to {length} pieces, beam {args.beam}, {threads} thread(s), "
          f"medians of {args.repeats} interleaved runs")
    print("| model | parameters | src tok/s | / teacher |")
    print("|---|---|---|---|")
    teacher_rate = source_tokens / statistics.median(timings[next(iter(models))])
    for name, (_, parameters) in models.items():
        rate = source_tokens / statistics.median(timings[name])
        print(f"| {name} | {parameters:,} | {rate:,.0f} | {rate / teacher_rate:.2f}x |")


if __name__ == "__main__":
    from kdnmt.errors import KdnmtError

    try:
        main()
    except KdnmtError as exc:
        sys.exit(f"error: {exc}")
