"""`kdnmt generate`: teacher pseudo-targets, n-best picks and soft targets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from kdnmt.cli.common import (
    ComputeTypeOption,
    DecodeDeviceOption,
    RunOption,
    choices,
    console,
    error_boundary,
    limit_torch_threads,
)
from kdnmt.cli.progress import Display, Eta
from kdnmt.models import QUANTIZATIONS
from kdnmt.teacher.generate import ALONG_CHOICES, ENGINE_CHOICES, SELECT_CHOICES, GenerateOptions

#: The defaults of every option are GenerateOptions' own (one place to change them).
_DEFAULT = GenerateOptions(run=Path("."))


@error_boundary
def generate_command(
    run: RunOption,
    teacher: Annotated[str, typer.Option(help="Teacher model name in the run.")] = _DEFAULT.teacher,
    beam: Annotated[int, typer.Option(help="Beam size of the teacher's search.")] = _DEFAULT.beam,
    nbest: Annotated[int, typer.Option(help="Hypotheses kept per sentence (<= beam).")] = _DEFAULT.nbest,
    select: Annotated[choices(SELECT_CHOICES) | None, typer.Option(  # type: ignore[valid-type]
        help="'closest': per sentence, the n-best hypothesis closest to the reference "
             "(sentence BLEU), for seq-inter.")] = None,
    soft_targets: Annotated[int, typer.Option(
        help="Store the teacher's top-K token distributions (0 = none).")] = _DEFAULT.soft_targets,
    soft_along: Annotated[choices(ALONG_CHOICES), typer.Option(  # type: ignore[valid-type]
        help="Soft targets along 'references' (word-KD) or 'pseudo-targets' (seq+word).")]
        = _DEFAULT.soft_along,
    filter_ce: Annotated[float, typer.Option(
        help="Drop this % of pairs with the worst length-normalised teacher score.")] = _DEFAULT.filter_ce,
    shard: Annotated[str | None, typer.Option(
        help="I/N: decode only every N-th chunk starting at I (one of N machines).")] = None,
    merge: Annotated[bool, typer.Option(help="Assemble chunks decoded by --shard runs.")] = _DEFAULT.merge,
    engine: Annotated[choices(ENGINE_CHOICES), typer.Option(  # type: ignore[valid-type]
        help="Decoding engine: 'local' (this machine) or 'ray' (a Ray cluster; needs "
             "pip install 'kdnmt\\[ray]').")] = _DEFAULT.engine,
    ray_address: Annotated[str | None, typer.Option(
        help="--engine ray: the cluster's address (HOST:6379, 'auto' for the one started on "
             "this machine). Default: RAY_ADDRESS, else a private local Ray instance.")] = None,
    ray_actors: Annotated[int, typer.Option(
        help="--engine ray: number of decoding actors, one CPU each, or with --device cuda "
             "one GPU each (0 = every CPU, or GPU, Ray reports).")] = _DEFAULT.ray_actors,
    quantization: Annotated[choices(QUANTIZATIONS), typer.Option(  # type: ignore[valid-type]
        help="CTranslate2 quantization of the teacher.")] = _DEFAULT.quantization,
    batch_size: Annotated[int, typer.Option(help="Decoding batch size in tokens.")] = _DEFAULT.batch_tokens,
    lines_per_chunk: Annotated[int, typer.Option(
        help="Lines per resumable chunk.")] = _DEFAULT.lines_per_chunk,
    max_length: Annotated[int, typer.Option(
        help="Maximum pseudo-target length in pieces (the students' max_length).")] = _DEFAULT.max_length,
    length_ratio: Annotated[float, typer.Option(
        help="Also cap each pseudo-target at RATIO x source length + 10 pieces (0 = off).")]
        = _DEFAULT.length_ratio,
    force: Annotated[bool, typer.Option(help="Discard earlier generated data and start over.")]
        = _DEFAULT.force,
    device: DecodeDeviceOption = _DEFAULT.device,
    compute_type: ComputeTypeOption = _DEFAULT.compute_type,
    decode: Annotated[bool, typer.Option(
        "--decode/--no-decode",
        help="--no-decode: skip the beam search and compute only the soft targets along the "
             "references (all word-level KD needs).")] = _DEFAULT.decode,
) -> None:
    """Decode the training sources with the teacher (CTranslate2), resumably."""
    from kdnmt.teacher.generate import generate

    limit_torch_threads()
    opts = GenerateOptions(run=run, teacher=teacher, beam=beam, nbest=nbest, select=select,
                           soft_targets=soft_targets, soft_along=soft_along, filter_ce=filter_ce,
                           shard=shard, merge=merge, quantization=quantization,
                           batch_tokens=batch_size, lines_per_chunk=lines_per_chunk,
                           max_length=max_length, length_ratio=length_ratio, force=force,
                           engine=engine, ray_address=ray_address, ray_actors=ray_actors,
                           device=device, compute_type=compute_type, decode=decode)
    start = time.perf_counter()
    with Display(console) as bar:
        tasks: dict[str, int] = {}
        stage_start: dict[str, float] = {}
        etas: dict[str, Eta] = {}

        def on_progress(p) -> None:
            if p.stage not in tasks:
                tasks[p.stage] = bar.add(p.stage, total=p.total, completed=p.done)
                stage_start[p.stage] = time.perf_counter()
                etas[p.stage] = Eta(p.total)
            elapsed = max(time.perf_counter() - stage_start[p.stage], 1e-9)
            etas[p.stage].total = p.total
            rate = f"{p.tokens / elapsed:,.0f} tok/s · " if p.tokens else ""
            bar.update(tasks[p.stage], completed=p.done, total=p.total,
                       info=rate + etas[p.stage](p.done))

        result = generate(opts, progress=on_progress)
    seconds = time.perf_counter() - start
    if result.get("decoded") is False:
        st = result["soft_targets"]
        console.print(f"[green]soft targets[/]: top-{st['k']} along {st['along']} of "
                      f"{result['lines']:,} lines in {seconds:.0f} s, nothing decoded → "
                      f"{run}/generated/{teacher}/{st['path']}/")
        return
    if "shard" in result:
        console.print(f"shard {result['shard']}: {result['chunks']} chunks "
                      f"({result['decoded']} decoded now) in {seconds:.0f} s; collect every "
                      "shard's chunks/ in one run and rerun with --merge")
        return
    console.print(f"[green]generated[/] {result['kept']:,} pseudo-targets "
                  f"({result['lines']:,} lines) in {seconds:.0f} s → {run}/generated/{teacher}/")
    decoding = result["decoding"]
    if decoding["ctranslate2_compute_type"]:
        console.print(f"decoded on {decoding['device']} (CTranslate2 compute type "
                      f"{decoding['ctranslate2_compute_type']})")
    dropped = result["filter_ce"]["dropped"]
    if dropped:
        console.print(f"--filter-ce dropped {dropped:,} pairs (score <= "
                      f"{result['filter_ce']['score_threshold']:.3f})")
    if result.get("seqinter_picks_not_top1") is not None:
        console.print(f"seq-inter: {result['seqinter_picks_not_top1']:,} picks differ from the "
                      "teacher's best")
    if "soft_targets" in result:
        st = result["soft_targets"]
        console.print(f"soft targets: top-{st['k']} along {st['along']} → {st['path']}/")
