"""Bring your own teacher: adopt an existing OpenNMT-py (or CTranslate2) teacher in a run.

Most users distil a teacher trained elsewhere, with its own SentencePiece model and vocabulary.
Token-level KD compares teacher and student distributions id by id, so the run must adopt the
teacher's SentencePiece model *and* its vocabulary in the teacher's order; `prepare` then
encodes the corpus with it and every student trained in the run shares the teacher's ids.

Checks made up front, each a one-line error: the vocabulary must be made of the SentencePiece
model's pieces; source and target vocabularies must be one shared vocabulary; the model must be
an encoder-decoder transformer. A checkpoint saved with ``scaled-dot-flash`` attention is
accepted: it has the same weights as ``scaled-dot``, and conversion rewrites the option.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdnmt.corpus.spm import ONMT_SPECIALS, Tokenizer, read_onmt_vocab
from kdnmt.errors import KdnmtError, check
from kdnmt.fileio import atomic_path, sha256_file, write_json
from kdnmt.rundir import RunDir, check_name

#: OpenNMT-py pads vocabularies to a multiple of 8 with tokens named like this.
PAD_TOKEN_PREFIX = "averyunlikelytoken"
#: CTranslate2 vocabularies list these specials (no <blank>).
CT2_SPECIALS = ("<unk>", "<s>", "</s>", "<blank>")
#: Share of the SentencePiece pieces the vocabulary must contain (the reference teacher's
#: vocabulary leaves out its rarest piece).
MIN_PIECE_COVERAGE = 0.98


@dataclass
class TeacherSource:
    """What the user pointed `prepare` (or a study grid) at: a SentencePiece model and exactly
    one of an OpenNMT-py checkpoint and a CTranslate2 directory. Checked when made, so every
    caller refuses the same combinations with the same line."""

    spm: Path
    checkpoint: Path | None = None
    ct2_dir: Path | None = None
    vocab: Path | None = None
    name: str = "teacher"

    def __post_init__(self) -> None:
        check((self.checkpoint is None) != (self.ct2_dir is None),
              "give exactly one of --teacher-checkpoint and --teacher-ct2")
        check(self.vocab is None or self.checkpoint is not None,
              "--teacher-vocab goes with --teacher-checkpoint")
        check_name(self.name)

    @classmethod
    def from_flags(cls, spm: Path | None, checkpoint: Path | None, ct2_dir: Path | None,
                   vocab: Path | None, name: str) -> TeacherSource | None:
        """The teacher of `prepare`'s ``--teacher-*`` flags, or None when none is given."""
        if not (checkpoint or ct2_dir or spm or vocab):
            return None
        check(spm is not None, "--teacher-spm is required with a teacher "
                               "(the run must use the teacher's SentencePiece model)")
        return cls(spm=spm, checkpoint=checkpoint, ct2_dir=ct2_dir,  # type: ignore[arg-type]
                   vocab=vocab, name=name)


@dataclass
class CheckedTeacher:
    """A teacher that passed the compatibility checks."""

    tokens: list[str]  # vocabulary in the teacher's id order, without OpenNMT-py specials
    parameters: int | None
    step: int | None = None  # updates it was trained for, where its checkpoint says
    notes: list[str] = field(default_factory=list)
    opt_summary: dict[str, Any] = field(default_factory=dict)


def _check_tokens_match_spm(tokens: list[str], tokenizer: Tokenizer, what: str) -> None:
    pieces = set(tokenizer.vocabulary())
    real = [t for t in tokens if not t.startswith(PAD_TOKEN_PREFIX)]
    foreign = [t for t in real if t not in pieces]
    if foreign:
        examples = ", ".join(repr(t) for t in foreign[:3])
        raise KdnmtError(
            f"{what} does not match the SentencePiece model {tokenizer.path}: {len(foreign)} of "
            f"{len(real)} tokens are not pieces of it (e.g. {examples})"
        )
    coverage = len(set(real)) / max(1, len(pieces))
    check(
        coverage >= MIN_PIECE_COVERAGE,
        f"{what} covers only {coverage:.0%} of the pieces of {tokenizer.path}: "
        "they were not built together",
    )


def check_checkpoint_teacher(source: TeacherSource, tokenizer: Tokenizer) -> CheckedTeacher:
    """Load an OpenNMT-py teacher checkpoint and check kdnmt can drive it with this spm."""
    from kdnmt.onmt_bridge.checkpoint import inspect_checkpoint, load_checkpoint

    assert source.checkpoint is not None
    info = inspect_checkpoint(load_checkpoint(source.checkpoint))
    ckpt = source.checkpoint
    check(
        info.encoder_type == "transformer" and info.decoder_type == "transformer",
        f"{ckpt}: kdnmt drives transformer encoder-decoder models; this checkpoint has "
        f"encoder '{info.encoder_type}' and decoder '{info.decoder_type}'",
    )
    check(info.src_vocab and info.tgt_vocab, f"{ckpt}: the checkpoint holds no vocabulary")
    check(
        info.src_vocab == info.tgt_vocab,
        f"{ckpt}: source and target vocabularies differ; kdnmt needs one shared vocabulary "
        "(teacher and students share one SentencePiece model)",
    )
    check(
        list(info.src_vocab[: len(ONMT_SPECIALS)]) == list(ONMT_SPECIALS),
        f"{ckpt}: the vocabulary does not start with OpenNMT-py's specials {ONMT_SPECIALS}",
    )
    tokens = list(info.src_vocab[len(ONMT_SPECIALS):])
    _check_tokens_match_spm(tokens, tokenizer, f"the vocabulary of {ckpt}")
    if source.vocab is not None:
        given = read_onmt_vocab(source.vocab)
        given = [t for t in given if t not in ONMT_SPECIALS]
        stored = [t for t in tokens if not t.startswith(PAD_TOKEN_PREFIX)]
        # OpenNMT-py truncates the file to src_vocab_size, so the checkpoint may hold a prefix.
        check(
            given[: len(stored)] == stored,
            f"{source.vocab} is not the vocabulary stored in {ckpt} (same tokens in the same "
            "order); leave out --teacher-vocab to use the checkpoint's",
        )
    notes = []
    if info.self_attn_type == "scaled-dot-flash":
        notes.append("saved with self_attn_type scaled-dot-flash: same weights as scaled-dot; "
                     "kdnmt rewrites the option when converting to CTranslate2")
    return CheckedTeacher(
        tokens=tokens, parameters=info.parameters, step=info.trained_steps, notes=notes,
        opt_summary={"hidden_size": info.hidden_size, "enc_layers": info.enc_layers,
                     "dec_layers": info.dec_layers, "self_attn_type": info.self_attn_type},
    )


def check_ct2_teacher(source: TeacherSource, tokenizer: Tokenizer) -> CheckedTeacher:
    """Check a CTranslate2 teacher directory (sequence-level KD only)."""
    assert source.ct2_dir is not None
    directory = source.ct2_dir
    check(directory.is_dir() and (directory / "model.bin").is_file(),
          f"{directory} is not a CTranslate2 model directory (no model.bin)")
    shared = directory / "shared_vocabulary.json"
    if not shared.is_file():
        raise KdnmtError(
            f"{directory}: kdnmt needs one shared source/target vocabulary "
            "(shared_vocabulary.json), this model has separate ones"
        )
    try:
        vocabulary = json.loads(shared.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise KdnmtError(f"{shared} is corrupt") from None
    tokens = [t for t in vocabulary if t not in CT2_SPECIALS]
    _check_tokens_match_spm(tokens, tokenizer, f"the vocabulary of {directory}")
    return CheckedTeacher(
        tokens=tokens, parameters=None,
        notes=["CTranslate2 teacher: sequence-level methods only (seq, seqinter); token-level "
               "methods (word, seq+word, hybrid, selfevo, atkd) need the PyTorch checkpoint"],
    )


def adopt_teacher(source: TeacherSource, run: RunDir) -> CheckedTeacher:
    """Check the teacher, then copy its SentencePiece model and vocabulary into the run."""
    tokenizer = Tokenizer(source.spm)
    check((source.checkpoint is None) != (source.ct2_dir is None),
          "give exactly one of --teacher-checkpoint and --teacher-ct2")
    checked = (check_checkpoint_teacher(source, tokenizer) if source.checkpoint
               else check_ct2_teacher(source, tokenizer))
    run.root.mkdir(parents=True, exist_ok=True)
    with atomic_path(run.spm_model) as tmp:
        shutil.copyfile(source.spm, tmp)
    return checked


def write_teacher_vocab(checked: CheckedTeacher, piece_files: list[Path], dest: Path) -> int:
    """The run's vocabulary is the teacher's, in its id order (counts from the corpus)."""
    from collections import Counter

    counts: Counter[str] = Counter()
    for path in piece_files:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                counts.update(line.split())
    with atomic_path(dest) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for token in checked.tokens:
            handle.write(f"{token}\t{counts[token]}\n")
    return len(checked.tokens) + len(ONMT_SPECIALS)


def _copy_as_float32(checkpoint: Path, target: Path) -> bool:
    """A released teacher (float16, without its sinusoidal position tables: see
    recipes/demo/release_teacher.py) is copied into the run in float32 with the tables rebuilt.
    Returns False (nothing written) for an ordinary checkpoint, which is copied byte for byte
    instead."""
    from kdnmt.onmt_bridge.checkpoint import load_checkpoint, save_checkpoint, to_training_form

    loaded = load_checkpoint(checkpoint)
    if not to_training_form(loaded):
        return False
    save_checkpoint(loaded, target)
    return True


def register_teacher(source: TeacherSource, checked: CheckedTeacher, run: RunDir,
                     manifest: dict[str, Any]) -> dict[str, Any]:
    """Copy the teacher into ``models/NAME`` and write its ``model.json`` (with the updates it
    was trained for where its checkpoint still says so, for eval's step column)."""
    model_dir = run.model_dir(source.name)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    info: dict[str, Any] = {
        "name": source.name,
        "role": "teacher",
        "imported_from": str((source.checkpoint or source.ct2_dir).resolve()),  # type: ignore[union-attr]
        "parameters": checked.parameters,
        "step": checked.step,
        "spm_sha256": manifest["sentencepiece"]["sha256"],
        "vocab_sha256": manifest["vocab"]["sha256"],
        "src": manifest["src"],
        "tgt": manifest["tgt"],
        "notes": checked.notes,
        **checked.opt_summary,
    }
    if source.checkpoint is not None:
        target = model_dir / "teacher.pt"
        if not _copy_as_float32(source.checkpoint, target):
            with atomic_path(target) as tmp:
                shutil.copyfile(source.checkpoint, tmp)
        else:
            info["notes"] = [*checked.notes, "a released (float16) checkpoint: the run holds a float32 copy"]
        info.update(checkpoint=target.name, checkpoint_sha256=sha256_file(target))
    else:
        shutil.copytree(source.ct2_dir, model_dir / "ct2")  # type: ignore[arg-type]
        info.update(ct2_only=True, checkpoint=None,
                    checkpoint_sha256=sha256_file(model_dir / "ct2" / "model.bin"))
    write_json(run.model_info_path(source.name), info)
    return info
