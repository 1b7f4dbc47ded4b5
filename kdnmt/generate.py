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

import datetime as _dt
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kdnmt import __version__
from kdnmt.corpus.spm import Tokenizer
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
        self.dir = self.run.root / "generated" / opts.teacher
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
        }

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Refuse to mix chunks made with other settings; --force starts over."""
        path = self.dir / "settings.json"
        remove_stale_temps(self.dir)  # left by a killed run; finished chunks are kept
        if self.opts.force and self.dir.exists() and not self.opts.merge:
            shutil.rmtree(self.dir)
        if path.is_file():
            old = json.loads(path.read_text(encoding="utf-8"))
            diff = [f"{k} {old.get(k)!r} vs {v!r}" for k, v in settings.items() if old.get(k) != v]
            if diff:
                raise KdnmtError(
                    f"{self.dir} was generated with other settings ({'; '.join(diff)}); "
                    "pass --force to start over"
                )
        else:
            write_json(path, settings)

    # -- decoding ------------------------------------------------------------------------

    def read_source(self) -> list[str]:
        with open(self.source_path, encoding="utf-8") as handle:
            return [line.rstrip("\n") for line in handle]

    def chunk_path(self, index: int) -> Path:
        return self.chunks_dir / f"{index:06d}.jsonl"

    def decode_chunks(self, lines: list[str], chunk_ids: list[int], progress: ProgressFn) -> int:
        """Decode the missing chunks among ``chunk_ids``; returns how many were decoded.

        Either engine only decodes: the chunk files are written here, as results come back."""
        from kdnmt.teacher.decode import Hypotheses, TeacherDecoder

        size = self.opts.lines_per_chunk
        todo = [c for c in chunk_ids if not self.chunk_path(c).is_file()]
        total = sum(len(lines[c * size:(c + 1) * size]) for c in chunk_ids)
        done = total - sum(len(lines[c * size:(c + 1) * size]) for c in todo)
        if not todo:
            progress(Progress("decoding", done, total))
            return 0
        if self.opts.engine == "ray":
            from kdnmt.teacher.ray_engine import decode_on_ray, import_ray

            import_ray()  # before a conversion: fail fast where Ray is not installed
        model_dir = ct2_model(self.run, self.opts.teacher, self.opts.quantization)
        decoder_args = {"beam": self.opts.beam, "nbest": self.opts.nbest,
                        "batch_tokens": self.opts.batch_tokens,
                        "max_length": self.opts.max_length,
                        "length_ratio": self.opts.length_ratio}
        parts = {c: lines[c * size:(c + 1) * size] for c in todo}
        tokens = 0

        def finished(chunk: int, results: list[Hypotheses]) -> None:
            nonlocal done, tokens
            check(len(results) == len(parts[chunk]),
                  f"chunk {chunk}: {len(results)} hypotheses for {len(parts[chunk])} lines")
            with atomic_open(self.chunk_path(chunk)) as handle:
                for r in results:
                    handle.write(json.dumps({"h": r.pieces, "s": r.scores},
                                            ensure_ascii=False) + "\n")
            done += len(results)
            tokens += sum(len(r.pieces[0].split()) for r in results)
            progress(Progress("decoding", done, total, tokens))

        if self.opts.engine == "ray":
            progress(Progress("decoding", done, total))
            decode_on_ray(model_dir, parts, finished, decoder_args,
                          address=self.opts.ray_address, actors=self.opts.ray_actors)
            return len(todo)
        with TeacherDecoder(model_dir, **decoder_args) as decoder:
            progress(Progress("decoding", done, total))
            for chunk, part in parts.items():
                finished(chunk, decoder.decode(part))
        return len(todo)

    def read_chunks(self, n_chunks: int, n_lines: int) -> list[dict[str, Any]]:
        missing = [c for c in range(n_chunks) if not self.chunk_path(c).is_file()]
        if missing:
            shown = ", ".join(str(c) for c in missing[:5])
            raise KdnmtError(
                f"{len(missing)} of {n_chunks} chunks are missing in {self.chunks_dir} "
                f"(e.g. {shown}): decode them (or copy them from the shard machines) first"
            )
        records = []
        for c in range(n_chunks):
            with open(self.chunk_path(c), encoding="utf-8") as handle:
                try:
                    records.extend(json.loads(line) for line in handle)
                except json.JSONDecodeError:
                    raise KdnmtError(f"{self.chunk_path(c)} is corrupt") from None
        check(len(records) == n_lines,
              f"the chunks hold {len(records)} lines but the source has {n_lines}")
        return records

    def write_shard_manifest(self, shard: tuple[int, int], chunk_ids: list[int]) -> Path:
        path = self.dir / f"shard-{shard[0]}-of-{shard[1]}.json"
        write_json(path, {"settings": self.settings(), "shard": list(shard),
                          "chunks": {str(c): sha256_file(self.chunk_path(c)) for c in chunk_ids}})
        return path

    def verify_shard_manifests(self) -> int:
        """--merge: every chunk named by a shard manifest still has its checksum."""
        count = 0
        for path in sorted(self.dir.glob("shard-*-of-*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            check(data["settings"] == self.settings(),
                  f"{path.name} was made with other settings than this run's")
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


def _assemble(gen: Generation, sources: list[str], records: list[dict[str, Any]],
              progress: ProgressFn) -> dict[str, Any]:
    """Write the seq-KD corpus (and seq-inter picks, n-best) from the decoded chunks."""
    from kdnmt.teacher.select import select_closest

    opts, src, tgt = gen.opts, gen.src, gen.tgt
    tokenizer = Tokenizer(gen.run.spm_model)
    best_scores = [r["s"][0] if r["s"] else float("-inf") for r in records]
    keep = _keep_mask(best_scores, opts.filter_ce)
    outputs: dict[str, Path] = {
        "source": gen.dir / f"train.sp.{src}",
        "pseudo": gen.dir / f"train.sp.{tgt}",
        "pseudo_text": gen.dir / f"train.{tgt}",
    }
    with atomic_open(outputs["source"]) as f_src, atomic_open(outputs["pseudo"]) as f_tgt, \
            atomic_open(outputs["pseudo_text"]) as f_txt:
        for line, record, k in zip(sources, records, keep, strict=True):
            if k:
                f_src.write(line + "\n")
                f_tgt.write(record["h"][0] + "\n")
                f_txt.write(tokenizer.detokenize(record["h"][0].split()) + "\n")
    if opts.nbest > 1:
        outputs["nbest"] = gen.dir / "nbest.jsonl"
        with atomic_open(outputs["nbest"]) as handle:
            for record, k in zip(records, keep, strict=True):
                if k:
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    picks_changed = None
    if opts.select == "closest":
        outputs["seqinter"] = gen.dir / f"seqinter.sp.{tgt}"
        with open(gen.run.text("train", tgt), encoding="utf-8") as handle:
            references = [line.rstrip("\n") for line in handle]
        check(len(references) == len(records),
              "--select closest needs the references of every source line, and the run's "
              f"{gen.run.text('train', tgt).name} does not have them")
        picks_changed = 0
        with atomic_open(outputs["seqinter"]) as handle:
            for i, (record, k) in enumerate(zip(records, keep, strict=True)):
                if not k:
                    continue
                texts = [tokenizer.detokenize(h.split()) for h in record["h"]]
                pick = select_closest(texts, references[i], record["s"])
                picks_changed += pick != 0
                handle.write(record["h"][pick] + "\n")
                if i % 1000 == 0:
                    progress(Progress("selecting", i, len(records)))
        progress(Progress("selecting", len(records), len(records)))  # the bar ends full
    dropped = [i for i, k in enumerate(keep) if not k]
    return {
        "outputs": {name: {"path": p.name, "sha256": sha256_file(p)} for name, p in outputs.items()},
        "lines": len(records),
        "kept": len(records) - len(dropped),
        "filter_ce": {"percent": opts.filter_ce, "dropped": len(dropped),
                      "dropped_lines_head": dropped[:20],
                      "score_threshold": (max(best_scores[i] for i in dropped)
                                          if dropped else None)},
        "seqinter_picks_not_top1": picks_changed,
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
    store_dir = gen.dir / f"soft-{gen.opts.soft_along}"
    compute_store(
        checkpoint=checkpoint_path(gen.run, gen.info), src_path=src_path, tgt_path=tgt_path,
        store_dir=store_dir, k=gen.opts.soft_targets, along=gen.opts.soft_along,
        vocab_sha256=gen.manifest["vocab"]["sha256"],
        spm_sha256=gen.manifest["sentencepiece"]["sha256"],
        teacher_sha256=gen.info["checkpoint_sha256"], lines_per_shard=gen.opts.lines_per_chunk,
        force=gen.opts.force, progress=lambda d, t: progress(Progress("soft targets", d, t)),
    )
    return {"path": store_dir.name, "k": gen.opts.soft_targets, "along": gen.opts.soft_along}


def generate(opts: GenerateOptions, progress: ProgressFn = lambda p: None) -> dict[str, Any]:
    """Run `kdnmt generate`; returns its manifest (or, for one shard, the shard's summary)."""
    gen = Generation(opts)
    settings = gen.settings()
    gen.check_settings(settings)
    sources = gen.read_source()
    n_chunks = math.ceil(len(sources) / opts.lines_per_chunk)
    shard = parse_shard(opts.shard)
    if shard is not None:
        chunk_ids = [c for c in range(n_chunks) if c % shard[1] == shard[0]]
        decoded = gen.decode_chunks(sources, chunk_ids, progress)
        path = gen.write_shard_manifest(shard, chunk_ids)
        return {"shard": opts.shard, "chunks": len(chunk_ids), "decoded": decoded,
                "shard_manifest": str(path)}
    if opts.merge:
        shards = gen.verify_shard_manifests()
        check(shards > 0, f"--merge found no shard-I-of-N.json in {gen.dir}")
    else:
        gen.decode_chunks(sources, list(range(n_chunks)), progress)
    records = gen.read_chunks(n_chunks, len(sources))
    summary = _assemble(gen, sources, records, progress)
    manifest: dict[str, Any] = {
        "kdnmt_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "settings": {**settings, **{k: v for k, v in asdict(opts).items()
                                    if k in ("select", "filter_ce", "soft_targets", "soft_along")}},
        "source": {"path": str(gen.source_path.relative_to(gen.run.root)),
                   "sha256": settings["source_sha256"], "lines": len(sources)},
        **summary,
    }
    if opts.soft_targets:
        write_json(gen.dir / "manifest.json", manifest)  # soft targets along pseudo need it
        manifest["soft_targets"] = _soft_targets(gen, progress)
    write_json(gen.dir / "manifest.json", manifest)
    return manifest


def load_generated(run: RunDir, teacher: str) -> dict[str, Any]:
    """The manifest of a finished `generate`, checked against the run's current source."""
    path = run.root / "generated" / teacher / "manifest.json"
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
