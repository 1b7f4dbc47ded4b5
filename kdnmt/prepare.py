"""`kdnmt prepare`: validate a parallel corpus and make it ready to train on.

Turns ``PREFIX.src``/``PREFIX.tgt`` files (plain or .xz) into a run directory: cleaned text,
one joint SentencePiece model, the OpenNMT-py vocabulary and a manifest that records what was
read (sha256, line counts) and what was dropped, so every later step can check it trains on
exactly this data.
"""

from __future__ import annotations

import datetime as _dt
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdnmt import RUN_FORMAT, __version__
from kdnmt.corpus.spm import Tokenizer, encode_lines, train_spm, write_onmt_vocab
from kdnmt.corpus.text import iter_parallel, normalise, resolve_side
from kdnmt.errors import KdnmtError, check
from kdnmt.fileio import atomic_open, remove_stale_temps, sha256_file, write_json
from kdnmt.import_teacher import TeacherSource, adopt_teacher, register_teacher, write_teacher_vocab
from kdnmt.rundir import RunDir

_LANG_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@dataclass
class PrepareOptions:
    """What `kdnmt prepare` was asked to do."""

    run: Path
    src: str
    tgt: str
    train: str
    valid: str
    test: str | None = None
    vocab_size: int = 8000
    max_tokens: int = 150
    character_coverage: float = 1.0
    force: bool = False
    teacher: TeacherSource | None = None


def check_lang(code: str, option: str) -> str:
    check(
        bool(code) and set(code) <= _LANG_OK and len(code) <= 16,
        f"{option} '{code}' is not a language code (letters, digits, '_' or '-')",
    )
    return code


def _clean_split(split: str, prefix: str, opts: PrepareOptions, run: RunDir) -> dict[str, Any]:
    """Validate one split and write its cleaned text; returns its manifest entry."""
    src_path = resolve_side(prefix, opts.src)
    tgt_path = resolve_side(prefix, opts.tgt)
    lines = kept = dropped_empty = 0
    with atomic_open(run.text(split, opts.src)) as out_src, \
            atomic_open(run.text(split, opts.tgt)) as out_tgt:
        for src_line, tgt_line in iter_parallel(src_path, tgt_path):
            lines += 1
            src_line, tgt_line = normalise(src_line), normalise(tgt_line)
            if not src_line or not tgt_line:
                dropped_empty += 1
                continue
            out_src.write(src_line + "\n")
            out_tgt.write(tgt_line + "\n")
            kept += 1
    check(kept > 0, f"{split} split {prefix}: no pair left after dropping empty lines")
    return {
        "inputs": {
            opts.src: {"path": str(src_path.resolve()), "sha256": sha256_file(src_path)},
            opts.tgt: {"path": str(tgt_path.resolve()), "sha256": sha256_file(tgt_path)},
        },
        "lines": lines,
        "dropped_empty": dropped_empty,
    }


def _encode_split(split: str, entry: dict[str, Any], opts: PrepareOptions, run: RunDir,
                  tokenizer: Tokenizer, filter_long: bool) -> None:
    """Write the piece files of a split, dropping pairs longer than ``max_tokens`` pieces."""
    src_text, tgt_text = run.text(split, opts.src), run.text(split, opts.tgt)
    with open(src_text, encoding="utf-8") as fs, open(tgt_text, encoding="utf-8") as ft:
        src_lines = [line.rstrip("\n") for line in fs]
        tgt_lines = [line.rstrip("\n") for line in ft]
    src_pieces = list(encode_lines(tokenizer, src_lines))
    tgt_pieces = list(encode_lines(tokenizer, tgt_lines))
    keep = [
        not filter_long or (
            s.count(" ") + 1 <= opts.max_tokens and t.count(" ") + 1 <= opts.max_tokens
        )
        for s, t in zip(src_pieces, tgt_pieces, strict=True)
    ]
    for lang, texts, pieces in ((opts.src, src_lines, src_pieces),
                                (opts.tgt, tgt_lines, tgt_pieces)):
        if filter_long:
            with atomic_open(run.text(split, lang)) as handle:
                handle.writelines(t + "\n" for t, k in zip(texts, keep, strict=True) if k)
        with atomic_open(run.pieces(split, lang)) as handle:
            handle.writelines(p + "\n" for p, k in zip(pieces, keep, strict=True) if k)
    kept = sum(keep)
    check(kept > 0, f"{split} split: every pair is longer than --max-length {opts.max_tokens}")
    entry["dropped_too_long"] = len(keep) - kept
    entry["kept"] = kept
    for lang in (opts.src, opts.tgt):
        entry.setdefault("outputs", {})[lang] = {
            "text": run.text(split, lang).name,
            "pieces": run.pieces(split, lang).name,
            "sha256": sha256_file(run.pieces(split, lang)),
        }


def prepare(opts: PrepareOptions, on_stage: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run `kdnmt prepare`; returns the manifest it wrote."""
    check_lang(opts.src, "--src")
    check_lang(opts.tgt, "--tgt")
    check(opts.src != opts.tgt, f"--src and --tgt are both '{opts.src}'")
    check(opts.max_tokens >= 1, f"--max-length must be >= 1, got {opts.max_tokens}")
    run = RunDir(Path(opts.run))
    if run.manifest_path.exists() and not opts.force:
        raise KdnmtError(f"{run.root} is already prepared; pass --force to prepare it again")
    check(not run.root.exists() or run.root.is_dir(), f"{run.root} exists and is not a directory")
    # Fail on a missing input before any work.
    prefixes = {"train": opts.train, "valid": opts.valid}
    if opts.test:
        prefixes["test"] = opts.test
    for prefix in prefixes.values():
        resolve_side(prefix, opts.src)
        resolve_side(prefix, opts.tgt)
    if run.manifest_path.exists():
        run.manifest_path.unlink()  # --force: the run is not 'prepared' until we finish
    # What a killed earlier `prepare` left half-written (its own files only: the run's top
    # level and data/, not models/ or generated/).
    remove_stale_temps(run.root, recursive=False)
    remove_stale_temps(run.data_dir)
    checked = None
    if opts.teacher is not None:
        on_stage("checking the teacher")
        checked = adopt_teacher(opts.teacher, run)  # incompatible teachers fail before any work
    run.data_dir.mkdir(parents=True, exist_ok=True)

    splits: dict[str, Any] = {}
    for split, prefix in prefixes.items():
        on_stage(f"validating {split}")
        splits[split] = _clean_split(split, prefix, opts, run)

    if checked is None:
        on_stage("training SentencePiece")
        train_spm(
            [run.text("train", opts.src), run.text("train", opts.tgt)],
            run.spm_model,
            vocab_size=opts.vocab_size,
            character_coverage=opts.character_coverage,
        )
    tokenizer = Tokenizer(run.spm_model)
    for split in prefixes:
        on_stage(f"encoding {split}")
        _encode_split(split, splits[split], opts, run, tokenizer, filter_long=split != "test")

    on_stage("building the vocabulary")
    train_pieces = [run.pieces("train", opts.src), run.pieces("train", opts.tgt)]
    if checked is None:
        vocab_entries = write_onmt_vocab(tokenizer, train_pieces, run.vocab)
    else:
        vocab_entries = write_teacher_vocab(checked, train_pieces, run.vocab)
    manifest: dict[str, Any] = {
        "run_format": RUN_FORMAT,
        "kdnmt_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "src": opts.src,
        "tgt": opts.tgt,
        "settings": {
            "vocab_size": opts.vocab_size,
            "max_tokens": opts.max_tokens,
            "character_coverage": opts.character_coverage,
        },
        "sentencepiece": {"model": run.spm_model.name, "sha256": sha256_file(run.spm_model),
                          "adopted_from": str(opts.teacher.spm.resolve()) if opts.teacher else None},
        "vocab": {"path": run.vocab.name, "entries": vocab_entries,
                  "sha256": sha256_file(run.vocab)},
        "splits": splits,
    }
    if opts.teacher is not None and checked is not None:
        on_stage("registering the teacher")
        info = register_teacher(opts.teacher, checked, run, manifest)
        manifest["teacher"] = {"name": info["name"], "imported_from": info["imported_from"],
                               "checkpoint_sha256": info["checkpoint_sha256"],
                               "ct2_only": bool(info.get("ct2_only")), "notes": checked.notes}
        manifest["settings"]["vocab_size"] = vocab_entries - 4
    write_json(run.manifest_path, manifest)
    return manifest
