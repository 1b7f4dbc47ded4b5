"""One joint SentencePiece model per run, so the teacher and every student share a vocabulary.

Token-level distillation compares teacher and student distributions position by position,
which only means something when both index the same pieces; hence one model trained on source
and target text together, and an OpenNMT-py vocabulary derived from it (not from counting).
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm

from kdnmt.errors import KdnmtError, check
from kdnmt.fileio import atomic_open

#: OpenNMT-py's special tokens, in the order it puts them at the head of a vocabulary.
ONMT_SPECIALS = ("<unk>", "<blank>", "<s>", "</s>")


def train_spm(
    inputs: list[Path],
    model_path: Path,
    vocab_size: int,
    character_coverage: float = 1.0,
    max_sentences: int = 2_000_000,
    threads: int = 2,
    seed: int = 1,
) -> None:
    """Train a unigram SentencePiece model on ``inputs``; writes ``model_path`` and ``.vocab``.

    ``max_sentences`` samples at most that many lines (SentencePiece's own sampler, seeded) so
    memory stays bounded on big corpora.
    """
    check(vocab_size >= 16, f"--vocab-size must be at least 16, got {vocab_size}")
    check(0.9 <= character_coverage <= 1.0,
          f"--character-coverage must be in [0.9, 1], got {character_coverage}")
    spm.set_random_generator_seed(seed)
    model_path = Path(model_path)
    vocab_path = model_path.with_suffix(".vocab")
    model_buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            input=[str(p) for p in inputs],
            model_writer=model_buffer,
            vocab_size=vocab_size,
            model_type="unigram",
            character_coverage=character_coverage,
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            num_threads=threads,
            minloglevel=2,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
        )
    except RuntimeError as exc:
        message = str(exc).strip().splitlines()[-1]
        if "Vocabulary size" in message:
            raise KdnmtError(
                f"the corpus is too small for --vocab-size {vocab_size} ({message.strip()}); "
                "use a smaller --vocab-size"
            ) from None
        raise KdnmtError(f"SentencePiece training failed: {message}") from None
    # Each file is written atomically, one after the other, through atomic_open (so a full
    # disk names the file it happened to); `prepare` is not finished until its manifest is.
    processor = spm.SentencePieceProcessor(model_proto=model_buffer.getvalue())
    with atomic_open(model_path, "wb") as handle:
        handle.write(model_buffer.getvalue())
    with atomic_open(vocab_path) as handle:
        for i in range(processor.get_piece_size()):
            handle.write(f"{processor.id_to_piece(i)}\t{processor.get_score(i)}\n")


class Tokenizer:
    """Text <-> space-joined SentencePiece pieces, the form OpenNMT-py and CTranslate2 read."""

    def __init__(self, model_path: Path):
        model_path = Path(model_path)
        check(model_path.is_file(), f"SentencePiece model {model_path} does not exist")
        try:
            self.processor = spm.SentencePieceProcessor(model_file=str(model_path))
        except (RuntimeError, OSError):
            raise KdnmtError(f"{model_path} is not a valid SentencePiece model") from None
        self.path = model_path

    def pieces(self, line: str) -> list[str]:
        return self.processor.encode(line, out_type=str)

    def pieces_batch(self, lines: list[str]) -> list[list[str]]:
        return self.processor.encode(lines, out_type=str)

    def detokenize(self, pieces: list[str]) -> str:
        return self.processor.decode_pieces(pieces)

    def detokenize_batch(self, lines: list[list[str]]) -> list[str]:
        """:meth:`detokenize` of each line, in one call into SentencePiece (about half the
        time of a Python loop over :meth:`detokenize`, same text)."""
        return list(self.processor.decode_pieces(lines)) if lines else []

    def vocabulary(self) -> list[str]:
        """Every piece of the model except the control and unknown symbols."""
        proc = self.processor
        return [
            proc.id_to_piece(i)
            for i in range(proc.get_piece_size())
            if not (proc.is_control(i) or proc.is_unknown(i))
        ]


def write_onmt_vocab(tokenizer: Tokenizer, piece_files: Iterable[Path], dest: Path) -> int:
    """Write the OpenNMT-py vocabulary (``piece<TAB>count``) for ``tokenizer``'s pieces.

    Every piece of the SentencePiece model is listed, most frequent in ``piece_files`` first,
    so that no piece the tokenizer can emit maps to ``<unk>``. Returns the number of entries
    OpenNMT-py will have, specials included.
    """
    counts: Counter[str] = Counter()
    for path in piece_files:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                counts.update(line.split())
    pieces = tokenizer.vocabulary()
    order = sorted(range(len(pieces)), key=lambda i: (-counts[pieces[i]], i))
    with atomic_open(dest) as handle:
        for i in order:
            handle.write(f"{pieces[i]}\t{counts[pieces[i]]}\n")
    return len(pieces) + len(ONMT_SPECIALS)


def read_onmt_vocab(path: Path) -> list[str]:
    """Tokens of an OpenNMT-py vocabulary file, in order (specials not included)."""
    tokens = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            token = line.rstrip("\n").split("\t")[0]
            if token:
                tokens.append(token)
    return tokens


def encode_lines(tokenizer: Tokenizer, lines: Iterable[str], batch: int = 2048) -> Iterator[str]:
    """Space-joined pieces for each line, encoded in batches (SentencePiece's fast path)."""
    buffer: list[str] = []
    for line in lines:
        buffer.append(line)
        if len(buffer) >= batch:
            yield from (" ".join(p) for p in tokenizer.pieces_batch(buffer))
            buffer = []
    if buffer:
        yield from (" ".join(p) for p in tokenizer.pieces_batch(buffer))
