"""`kdnmt generate`: the teacher's pseudo-targets (seq-KD), n-best picks (seq-inter) and top-k
soft targets (word-KD), resumable and checked.

Decoding is the most expensive step of a distillation pipeline, so it works in chunks of lines:
each chunk is written to a temporary file and renamed, a rerun skips finished chunks, and the
assembled outputs are byte-identical to an uninterrupted run. ``--shard I/N`` lets N machines
each decode every N-th chunk; ``--merge`` then assembles the collected chunks with the same
checks. The manifest records the source sha256 and the teacher checksum, and `distill` refuses
pseudo-targets that do not match the run's source.

Layout, in ``RUN/generated/TEACHER/``::

    settings.json             what the chunks were made with (a rerun with other settings is refused)
    compute-type.json         what CTranslate2 resolved --compute-type to (checked on resume)
    chunks/NNNNNN.jsonl       n-best pieces and scores of lines [N*chunk, (N+1)*chunk)
    shard-I-of-N.json         checksums of the chunks a shard made (for --merge)
    train.sp.SRC, train.sp.TGT    sources and best hypotheses (pieces): the seq-KD corpus
    train.TGT                 the best hypotheses detokenized
    seqinter.sp.TGT           with --select closest: the n-best pick closest to the reference
    nbest.jsonl               with --nbest K > 1: every hypothesis and its score
    soft-references/, soft-pseudo-targets/   top-k soft-target stores (kdnmt.teacher.store)
    manifest.json             checksums, counts, settings, what --filter-ce dropped
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kdnmt import __version__
from kdnmt.corpus.spm import Tokenizer
from kdnmt.devices import (
    check_compute_type_name,
    check_ct2_device,
    check_device_name,
    check_torch_device,
    ct2_gpu_count,
    resolve,
)
from kdnmt.errors import KdnmtError, check
from kdnmt.fileio import atomic_open, remove_stale_temps, sha256_file, write_json
from kdnmt.models import ct2_model, load_model_info
from kdnmt.rundir import RunDir, check_file_name

SELECT_CHOICES = ("closest",)
ALONG_CHOICES = ("references", "pseudo-targets")
ENGINE_CHOICES = ("local", "ray")


@dataclass
class GenerateOptions:
    run: Path
    teacher: str = "teacher"
    beam: int = 5
    nbest: int = 1
    select: str | None = None
    soft_targets: int = 0
    soft_along: str = "references"
    filter_ce: float = 0.0
    shard: str | None = None
    merge: bool = False
    quantization: str = "int8"
    batch_tokens: int = 2048
    lines_per_chunk: int = 1000
    #: Pseudo-targets longer than the students' training max_length would be dropped at
    #: training time anyway; capping decoding there also stops a weak teacher's run-on output.
    max_length: int = 150
    #: Cap each hypothesis at ``ratio * source length + 10`` pieces (0 = only max_length).
    length_ratio: float = 3.0
    force: bool = False
    #: "local" (this machine) or "ray" (kdnmt.teacher.ray_engine). Not part of settings(): both
    #: write the same chunks, so a run may resume with the other engine.
    engine: str = "local"
    ray_address: str | None = None
    ray_actors: int = 0
    #: Where CTranslate2 decodes ("cpu" or "cuda": every visible GPU, or with --engine ray one
    #: GPU per actor) and the soft targets' forward pass runs; and CTranslate2's compute type
    #: ("default": kdnmt.devices.resolve). Both are part of settings(): another device or
    #: compute type may choose other hypotheses, and chunks are never mixed.
    device: str = "cpu"
    compute_type: str = "default"
    #: False (``--no-decode``): only the soft targets along the references, with no beam
    #: search. Word-level KD reads nothing else, and decoding a real corpus costs hours on a
    #: CPU, far more than the teacher-forced pass the store needs.
    decode: bool = True


#: The decoding settings a settings.json written before devices were options was made with.
LEGACY_SETTINGS = {"device": "cpu", "compute_type": "default"}
#: What CTranslate2 resolved the requested compute type to (``default`` -> ``int8_float32``
#: on a CPU, say), written when decoding first starts and checked by every later process.
COMPUTE_TYPE_FILE = "compute-type.json"


@dataclass
class Progress:
    """What a progress display needs."""

    stage: str
    done: int
    total: int
    tokens: int = 0


ProgressFn = Callable[[Progress], None]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'I/N' -> (I, N) with 0 <= I < N."""
    if text is None:
        return None
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise KdnmtError(f"--shard must look like I/N (e.g. 0/4), got '{text}'") from None
    check(count >= 1 and 0 <= index < count,
          f"--shard {text} is out of range: expected 0 <= I < N")
    return index, count


def _validate(opts: GenerateOptions) -> None:
    check(opts.beam >= 1, f"--beam must be >= 1, got {opts.beam}")
    check(1 <= opts.nbest <= opts.beam, f"--nbest must be between 1 and --beam ({opts.beam})")
    check(opts.select in (None, *SELECT_CHOICES), f"--select must be one of {SELECT_CHOICES}")
    check(opts.select is None or opts.nbest > 1,
          "--select closest needs n-best hypotheses: pass --nbest K with K > 1")
    check(opts.soft_targets >= 0, "--soft-targets must be >= 0")
    check(opts.soft_along in ALONG_CHOICES, f"--soft-along must be one of {ALONG_CHOICES}")
    check(0.0 <= opts.filter_ce < 100.0, f"--filter-ce must be in [0, 100), got {opts.filter_ce}")
    check(opts.lines_per_chunk >= 1, "--lines-per-chunk must be >= 1")
    check(opts.max_length >= 1, "--max-length must be >= 1")
    check(opts.length_ratio >= 0, "--length-ratio must be >= 0")
    check(not (opts.merge and opts.shard), "--merge and --shard do not go together")
    check(opts.engine in ENGINE_CHOICES,
          f"--engine must be one of {', '.join(ENGINE_CHOICES)}, got '{opts.engine}'")
    check(opts.ray_actors >= 0, f"--ray-actors must be >= 0, got {opts.ray_actors}")
    check(opts.engine == "ray" or (opts.ray_address is None and not opts.ray_actors),
          "--ray-address and --ray-actors need --engine ray")
    check_device_name(opts.device)
    check_compute_type_name(opts.compute_type)
    if not opts.decode:
        _validate_no_decode(opts)


def _validate_no_decode(opts: GenerateOptions) -> None:
    """--no-decode makes soft targets along the references and nothing else: refuse the
    options that only mean something with decoded hypotheses."""
    check(opts.soft_targets > 0, "--no-decode computes soft targets only: pass --soft-targets K")
    check(opts.soft_along == "references",
          "--no-decode: soft targets along pseudo-targets need the pseudo-targets (decode first)")
    for flag, used in (("--select", opts.select is not None), ("--filter-ce", opts.filter_ce > 0),
                       ("--shard", opts.shard is not None), ("--merge", opts.merge),
                       ("--engine ray", opts.engine != "local")):
        check(not used, f"--no-decode: {flag} applies to decoding, which --no-decode skips")


def _check_devices(opts: GenerateOptions) -> None:
    """The device can run what this command will run on it (before --force deletes
    anything or a conversion starts). With --engine ray the GPUs are the cluster's, checked
    there by each actor."""
    if opts.engine == "local" and not opts.merge and opts.decode:
        check_ct2_device(opts.device)
        resolve(opts.device, opts.compute_type, opts.quantization)
    if opts.soft_targets:
        check_torch_device(opts.device, "the soft targets' forward pass")


class Generation:
    """Paths and checks of one teacher's generated data inside a run."""

    def __init__(self, opts: GenerateOptions):
        _validate(opts)
        self.opts = opts
        self.run = RunDir(Path(opts.run))
        self.manifest = self.run.load_manifest()
        self.src, self.tgt = self.manifest["src"], self.manifest["tgt"]
        self.info = load_model_info(self.run, opts.teacher)
        check(
            self.info.get("vocab_sha256") == self.manifest["vocab"]["sha256"],
            f"teacher '{opts.teacher}' was trained with another vocabulary than run "
            f"{self.run.root} (vocab sha256 {str(self.info.get('vocab_sha256'))[:12]}… vs "
            f"{self.manifest['vocab']['sha256'][:12]}…)",
        )
        # checked here, before --force discards the earlier generated data
        entries = int(self.manifest["vocab"]["entries"])
        check(opts.soft_targets <= entries, f"--soft-targets {opts.soft_targets} is larger than "
              f"the vocabulary ({entries} entries)")
        check(not (opts.soft_targets and self.info.get("ct2_only")),
              f"teacher '{opts.teacher}' is a CTranslate2 model: soft targets (token-level KD) "
              "need its PyTorch checkpoint")
        _check_devices(opts)
        self.dir = self.run.generated_dir(opts.teacher)
        self.chunks_dir = self.dir / "chunks"
        self.source_path = self.run.pieces("train", self.src)
        self.reference_path = self.run.pieces("train", self.tgt)

    # -- settings -------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        return {
            "teacher": self.opts.teacher,
            "teacher_sha256": self.info["checkpoint_sha256"],
            "source_sha256": sha256_file(self.source_path),
            "beam": self.opts.beam,
            "nbest": self.opts.nbest,
            "max_length": self.opts.max_length,
            "length_ratio": self.opts.length_ratio,
            "quantization": self.opts.quantization,
            "lines_per_chunk": self.opts.lines_per_chunk,
            "device": self.opts.device,
            "compute_type": self.opts.compute_type,
        }

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Refuse to mix chunks made with other settings; --force starts over."""
        path = self.dir / "settings.json"
        remove_stale_temps(self.dir)  # left by a killed run; finished chunks are kept
        if self.opts.force and self.dir.exists() and not self.opts.merge:
            shutil.rmtree(self.dir)
        if path.is_file():
            old = {**LEGACY_SETTINGS, **json.loads(path.read_text(encoding="utf-8"))}
            diff = [f"{k} {old.get(k)!r} vs {v!r}" for k, v in settings.items() if old.get(k) != v]
            if diff:
                raise KdnmtError(
                    f"{self.dir} was generated with other settings ({'; '.join(diff)}); "
                    "pass --force to start over"
                )
        else:
            write_json(path, settings)

    # -- decoding ------------------------------------------------------------------------

    def count_source_lines(self) -> int:
        with open(self.source_path, encoding="utf-8") as handle:
            return sum(1 for _ in handle)

    def chunk_lines(self, n_lines: int, chunk: int) -> int:
        """How many source lines chunk ``chunk`` holds."""
        size = self.opts.lines_per_chunk
        return max(0, min(size, n_lines - chunk * size))

    def source_chunks(self, wanted: set[int]) -> Iterator[tuple[int, list[str]]]:
        """``(chunk, its source lines)`` for the chunks in ``wanted``, in order, read as they
        are needed: memory holds a few chunks, not the corpus."""
        size = self.opts.lines_per_chunk
        with open(self.source_path, encoding="utf-8") as handle:
            chunk = 0
            while True:
                lines = [line.rstrip("\n") for line in itertools.islice(handle, size)]
                if not lines:
                    return
                if chunk in wanted:
                    yield chunk, lines
                chunk += 1

    def chunk_path(self, index: int) -> Path:
        return self.chunks_dir / f"{index:06d}.jsonl"

    def decode_chunks(self, n_lines: int, chunk_ids: list[int], progress: ProgressFn) -> int:
        """Decode the missing chunks among ``chunk_ids`` of a source of ``n_lines`` lines;
        returns how many were decoded.

        Either engine only decodes: the chunk files are written here, as results come back."""
        from kdnmt.teacher.decode import Hypotheses, TeacherDecoder

        todo = [c for c in chunk_ids if not self.chunk_path(c).is_file()]
        total = sum(self.chunk_lines(n_lines, c) for c in chunk_ids)
        done = total - sum(self.chunk_lines(n_lines, c) for c in todo)
        if not todo:
            progress(Progress("decoding", done, total))
            return 0
        if self.opts.engine == "ray":
            from kdnmt.teacher.ray_engine import decode_on_ray, import_ray

            import_ray()  # before a conversion: fail fast where Ray is not installed
        model_dir = ct2_model(self.run, self.opts.teacher, self.opts.quantization)
        decoder_args: dict[str, Any] = {"beam": self.opts.beam, "nbest": self.opts.nbest,
                                        "batch_tokens": self.opts.batch_tokens,
                                        "max_length": self.opts.max_length,
                                        "length_ratio": self.opts.length_ratio,
                                        "device": self.opts.device}
        tokens = 0

        def finished(chunk: int, results: list[Hypotheses]) -> None:
            nonlocal done, tokens
            expected = self.chunk_lines(n_lines, chunk)
            check(len(results) == expected,
                  f"chunk {chunk}: {len(results)} hypotheses for {expected} lines")
            with atomic_open(self.chunk_path(chunk)) as handle:
                for r in results:
                    handle.write(json.dumps({"h": r.pieces, "s": r.scores},
                                            ensure_ascii=False) + "\n")
            done += len(results)
            tokens += sum(len(r.pieces[0].split()) for r in results)
            progress(Progress("decoding", done, total, tokens))

        if self.opts.engine == "ray":
            progress(Progress("decoding", done, total))
            decode_on_ray(model_dir, self.source_chunks(set(todo)), len(todo), finished,
                          {**decoder_args, "compute_type": self.opts.compute_type,
                           "quantization": self.opts.quantization},
                          address=self.opts.ray_address, actors=self.opts.ray_actors,
                          on_ready=self.record_compute_type)
            return len(todo)
        compute_type = resolve(self.opts.device, self.opts.compute_type, self.opts.quantization)
        gpus = list(range(ct2_gpu_count())) if self.opts.device == "cuda" else 0
        with TeacherDecoder(model_dir, compute_type=compute_type, device_index=gpus,
                            **decoder_args) as decoder:
            self.record_compute_type({decoder.compute_type})
            progress(Progress("decoding", done, total))
            for chunk, results in decoder.decode_stream(self.source_chunks(set(todo))):
                finished(chunk, results)
        return len(todo)

    def chunk_records(self, n_lines: int) -> Iterator[list[dict[str, Any]]]:
        """Each chunk's records ({"h": n-best pieces, "s": scores}), in order, checked: every
        chunk is there first, then each holds as many lines as the source has for it."""
        n_chunks = math.ceil(n_lines / self.opts.lines_per_chunk)
        missing = [c for c in range(n_chunks) if not self.chunk_path(c).is_file()]
        if missing:
            shown = ", ".join(str(c) for c in missing[:5])
            raise KdnmtError(
                f"{len(missing)} of {n_chunks} chunks are missing in {self.chunks_dir} "
                f"(e.g. {shown}): decode them (or copy them from the shard machines) first"
            )
        for c in range(n_chunks):
            with open(self.chunk_path(c), encoding="utf-8") as handle:
                try:
                    records = [json.loads(line) for line in handle]
                except json.JSONDecodeError:
                    raise KdnmtError(f"{self.chunk_path(c)} is corrupt") from None
            check(len(records) == self.chunk_lines(n_lines, c),
                  f"{self.chunk_path(c)} holds {len(records)} lines but the source has "
                  f"{self.chunk_lines(n_lines, c)} for it")
            yield records

    # -- the compute type that ran -------------------------------------------------------

    def recorded_compute_type(self) -> str | None:
        """The CTranslate2 compute type the chunks here were decoded with, if recorded."""
        path = self.dir / COMPUTE_TYPE_FILE
        if not path.is_file():
            return None
        try:
            value = json.loads(path.read_text(encoding="utf-8"))["ctranslate2_compute_type"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise KdnmtError(f"{path} is corrupt: pass --force to start over") from None
        check(isinstance(value, str), f"{path} is corrupt: pass --force to start over")
        return value

    def record_compute_type(self, used: set[str]) -> None:
        """Before decoding: the same requested settings can resolve to another compute type
        on another machine (a GPU without half precision, say), and chunks decoded with two
        are not mixed."""
        what = f"--compute-type {self.opts.compute_type} on {self.opts.device}"
        check(len(used) == 1, f"{what} resolved to {', '.join(sorted(used))} on different "
              "Ray actors: give an explicit --compute-type that all of them support")
        (value,) = used
        old = self.recorded_compute_type()
        if old is None:
            write_json(self.dir / COMPUTE_TYPE_FILE, {"ctranslate2_compute_type": value})
        else:
            check(old == value, f"the chunks in {self.chunks_dir} were decoded with CTranslate2 "
                  f"compute type {old}, but {what} is {value} here: pass --force to start "
                  f"over, or --compute-type {old}")

    def write_shard_manifest(self, shard: tuple[int, int], chunk_ids: list[int]) -> Path:
        path = self.dir / f"shard-{shard[0]}-of-{shard[1]}.json"
        write_json(path, {"settings": self.settings(), "shard": list(shard),
                          "chunks": {str(c): sha256_file(self.chunk_path(c)) for c in chunk_ids},
                          "ctranslate2_compute_type": self.recorded_compute_type()})
        return path

    def verify_shard_manifests(self) -> int:
        """--merge: every chunk named by a shard manifest still has its checksum."""
        count = 0
        for path in sorted(self.dir.glob("shard-*-of-*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            check({**LEGACY_SETTINGS, **data["settings"]} == self.settings(),
                  f"{path.name} was made with other settings than this run's")
            theirs = data.get("ctranslate2_compute_type")
            if theirs is not None:
                self.record_compute_type({theirs})  # one compute type for every shard
            for chunk, digest in data["chunks"].items():
                chunk_path = self.chunk_path(int(chunk))
                check(chunk_path.is_file(), f"chunk {chunk_path.name} of {path.name} is missing")
                check(sha256_file(chunk_path) == digest,
                      f"chunk {chunk_path.name} does not match the checksum in {path.name}")
            count += 1
        return count


def _keep_mask(scores: list[float], percent: float) -> list[bool]:
    """Drop the ``percent``% of lines with the worst (lowest) length-normalised score; ties
    broken by line order so the result is deterministic."""
    drop = math.floor(len(scores) * percent / 100.0)
    order = sorted(range(len(scores)), key=lambda i: (scores[i], i))
    dropped = set(order[:drop])
    return [i not in dropped for i in range(len(scores))]


def _assemble(gen: Generation, n_lines: int, progress: ProgressFn) -> dict[str, Any]:
    """Write the seq-KD corpus (and seq-inter picks, n-best) from the decoded chunks, a chunk
    at a time: resident memory does not grow with the corpus (with --filter-ce, the best
    scores are read in a first pass, a float per line)."""
    from kdnmt.teacher.select import select_closest

    opts, src, tgt = gen.opts, gen.src, gen.tgt
    tokenizer = Tokenizer(gen.run.spm_model)
    best_scores: list[float] = []
    if opts.filter_ce > 0:
        for records in gen.chunk_records(n_lines):
            best_scores.extend(r["s"][0] if r["s"] else float("-inf") for r in records)
        keep = _keep_mask(best_scores, opts.filter_ce)
    else:
        keep = [True] * n_lines
    outputs: dict[str, Path] = {
        "source": gen.dir / f"train.sp.{src}",
        "pseudo": gen.dir / f"train.sp.{tgt}",
        "pseudo_text": gen.dir / f"train.{tgt}",
    }
    if opts.nbest > 1:
        outputs["nbest"] = gen.dir / "nbest.jsonl"
    picks_changed = 0
    if opts.select == "closest":
        outputs["seqinter"] = gen.dir / f"seqinter.sp.{tgt}"
        with open(gen.run.text("train", tgt), encoding="utf-8") as handle:
            check(sum(1 for _ in handle) == n_lines,
                  "--select closest needs the references of every source line, and the run's "
                  f"{gen.run.text('train', tgt).name} does not have them")
    with contextlib.ExitStack() as stack:
        out = {name: stack.enter_context(atomic_open(path)) for name, path in outputs.items()}
        sources = stack.enter_context(open(gen.source_path, encoding="utf-8"))
        references = (stack.enter_context(open(gen.run.text("train", tgt), encoding="utf-8"))
                      if opts.select == "closest" else None)
        i = 0
        for records in gen.chunk_records(n_lines):
            texts = tokenizer.detokenize_batch([r["h"][0].split() for r in records])
            for record, text in zip(records, texts, strict=True):
                line = next(sources).rstrip("\n")
                reference = next(references).rstrip("\n") if references is not None else ""
                if keep[i]:
                    out["source"].write(line + "\n")
                    out["pseudo"].write(record["h"][0] + "\n")
                    out["pseudo_text"].write(text + "\n")
                    if "nbest" in out:
                        out["nbest"].write(json.dumps(record, ensure_ascii=False) + "\n")
                    if "seqinter" in out:
                        hyps = tokenizer.detokenize_batch([h.split() for h in record["h"]])
                        pick = select_closest(hyps, reference, record["s"])
                        picks_changed += pick != 0
                        out["seqinter"].write(record["h"][pick] + "\n")
                if "seqinter" in out and i % 1000 == 0:
                    progress(Progress("selecting", i, n_lines))
                i += 1
    if opts.select == "closest":
        progress(Progress("selecting", n_lines, n_lines))  # the bar ends full
    dropped = [i for i, k in enumerate(keep) if not k]
    return {
        "outputs": {name: {"path": p.name, "sha256": sha256_file(p)} for name, p in outputs.items()},
        "lines": n_lines,
        "kept": n_lines - len(dropped),
        "filter_ce": {"percent": opts.filter_ce, "dropped": len(dropped),
                      "dropped_lines_head": dropped[:20],
                      "score_threshold": (max(best_scores[i] for i in dropped)
                                          if dropped else None)},
        "seqinter_picks_not_top1": picks_changed if opts.select == "closest" else None,
    }


def _soft_targets(gen: Generation, progress: ProgressFn) -> dict[str, Any]:
    """Top-k teacher distributions along references or pseudo-targets, in resumable shards."""
    from kdnmt.models import checkpoint_path
    from kdnmt.teacher.soft import compute_store

    check(not gen.info.get("ct2_only"),
          f"teacher '{gen.opts.teacher}' is a CTranslate2 model: soft targets (token-level KD) "
          "need its PyTorch checkpoint")
    if gen.opts.soft_along == "references":
        src_path, tgt_path = gen.source_path, gen.reference_path
    else:
        src_path, tgt_path = gen.dir / f"train.sp.{gen.src}", gen.dir / f"train.sp.{gen.tgt}"
        check(tgt_path.is_file(), "soft targets along pseudo-targets need the pseudo-targets")
    store_dir = gen.run.soft_store(gen.opts.teacher, gen.opts.soft_along)
    compute_store(
        checkpoint=checkpoint_path(gen.run, gen.info), src_path=src_path, tgt_path=tgt_path,
        store_dir=store_dir, k=gen.opts.soft_targets, along=gen.opts.soft_along,
        vocab_sha256=gen.manifest["vocab"]["sha256"],
        spm_sha256=gen.manifest["sentencepiece"]["sha256"],
        teacher_sha256=gen.info["checkpoint_sha256"], lines_per_shard=gen.opts.lines_per_chunk,
        force=gen.opts.force, progress=lambda d, t: progress(Progress("soft targets", d, t)),
        device=gen.opts.device,
    )
    return {"path": store_dir.name, "k": gen.opts.soft_targets, "along": gen.opts.soft_along,
            "device": gen.opts.device}


def _decoding(gen: Generation) -> dict[str, Any]:
    """Where the chunks were decoded: the requested device and compute type (also in the
    settings) and what CTranslate2 resolved it to (None for chunks decoded before kdnmt
    recorded it). Not the engine: a run may resume with the other one."""
    return {"device": gen.opts.device, "compute_type": gen.opts.compute_type,
            "ctranslate2_compute_type": gen.recorded_compute_type()}


def generate(opts: GenerateOptions, progress: ProgressFn = lambda p: None) -> dict[str, Any]:
    """Run `kdnmt generate`; returns its manifest (or, for one shard, the shard's summary)."""
    gen = Generation(opts)
    if not opts.decode:
        # the store records its own checksums (teacher, vocabulary, target): no chunk settings
        # or generate manifest, which describe decoded data, are written or touched
        return {"decoded": False, "lines": gen.count_source_lines(),
                "soft_targets": _soft_targets(gen, progress)}
    settings = gen.settings()
    gen.check_settings(settings)
    n_lines = gen.count_source_lines()
    n_chunks = math.ceil(n_lines / opts.lines_per_chunk)
    shard = parse_shard(opts.shard)
    if shard is not None:
        chunk_ids = [c for c in range(n_chunks) if c % shard[1] == shard[0]]
        decoded = gen.decode_chunks(n_lines, chunk_ids, progress)
        path = gen.write_shard_manifest(shard, chunk_ids)
        return {"shard": opts.shard, "chunks": len(chunk_ids), "decoded": decoded,
                "shard_manifest": str(path), "decoding": _decoding(gen)}
    if opts.merge:
        shards = gen.verify_shard_manifests()
        check(shards > 0, f"--merge found no shard-I-of-N.json in {gen.dir}")
    else:
        gen.decode_chunks(n_lines, list(range(n_chunks)), progress)
    summary = _assemble(gen, n_lines, progress)
    manifest: dict[str, Any] = {
        "kdnmt_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "settings": {**settings, **{k: v for k, v in asdict(opts).items()
                                    if k in ("select", "filter_ce", "soft_targets", "soft_along")}},
        "source": {"path": str(gen.source_path.relative_to(gen.run.root)),
                   "sha256": settings["source_sha256"], "lines": n_lines},
        "decoding": _decoding(gen),
        **summary,
    }
    if opts.soft_targets:
        write_json(gen.dir / "manifest.json", manifest)  # soft targets along pseudo need it
        manifest["soft_targets"] = _soft_targets(gen, progress)
    write_json(gen.dir / "manifest.json", manifest)
    return manifest


def load_generated(run: RunDir, teacher: str) -> dict[str, Any]:
    """The manifest of a finished `generate`, checked against the run's current source."""
    path = run.generated_dir(teacher) / "manifest.json"
    check(path.is_file(), f"no generated data for teacher '{teacher}' in {run.root} "
          f"(run `kdnmt generate --run {run.root} --teacher {teacher}`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        check(isinstance(manifest, dict) and isinstance(manifest.get("outputs"), dict)
              and isinstance(manifest.get("source"), dict), f"{path} is not a generate manifest")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KdnmtError(f"{path} is corrupt (not valid JSON): generate again with --force") \
            from None
    run_manifest = run.load_manifest()
    source = run.pieces("train", run_manifest["src"])
    check(sha256_file(source) == manifest["source"].get("sha256"),
          f"the pseudo-targets in {path.parent} were generated from another source than "
          f"{source} (checksum mismatch): generate again with --force")
    for name, entry in manifest["outputs"].items():
        out = path.parent / check_file_name(entry.get("path") if isinstance(entry, dict) else None,
                                            f"{path} ({name})")
        check(out.is_file() and sha256_file(out) == entry["sha256"],
              f"{out} was changed or truncated after `kdnmt generate` ({name} checksum mismatch)")
    return manifest
