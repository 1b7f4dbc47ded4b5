"""Teacher decoding with CTranslate2: n-best pseudo-targets for a chunk of source lines.

Sources arrive already as SentencePiece pieces (the run's ``train.sp.SRC``), so the output is
pieces too, exactly what the student trains on. One translator with one single-threaded replica
per core (``inter_threads``): on 2 cores this is ~4x faster than one replica with 2 threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from kdnmt.errors import KdnmtError
from kdnmt.translation import default_threads


@dataclass
class Hypotheses:
    """The n-best of one source line: pieces (space-joined) and length-normalised scores."""

    pieces: list[str]
    scores: list[float]


def length_cap(source_length: int, max_length: int, ratio: float) -> int:
    """Longest hypothesis allowed for a source of this many pieces: ``max_length``, and with
    ``ratio`` > 0 also ``ratio * length + 10`` (the length rounded up to a band of 8 pieces, so
    that lines share few distinct caps and batch together). A weak teacher's run-on output
    then stops near a plausible length instead of at ``max_length``, where it would dominate
    the decoding time."""
    if ratio <= 0:
        return max_length
    band = -(-max(source_length, 1) // 8) * 8
    return min(max_length, int(ratio * band) + 10)


class TeacherDecoder:
    """CTranslate2 beam search over piece sequences; a context manager that frees the model."""

    def __init__(self, model_dir: Path, *, beam: int, nbest: int, batch_tokens: int = 2048,
                 max_length: int = 256, length_ratio: float = 0.0,
                 inter_threads: int | None = None):
        import ctranslate2

        inter, intra = default_threads()
        try:
            self._translator = ctranslate2.Translator(
                str(model_dir), device="cpu", inter_threads=inter_threads or inter,
                intra_threads=intra)
        except (RuntimeError, ValueError) as exc:
            raise KdnmtError(f"cannot load CTranslate2 teacher {model_dir}: {exc}") from None
        self.beam, self.nbest = beam, nbest
        self.batch_tokens, self.max_length = batch_tokens, max_length
        self.length_ratio = length_ratio

    def __enter__(self) -> TeacherDecoder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._translator is not None:
            self._translator.unload_model()
            self._translator = None

    def cap(self, source_length: int) -> int:
        return length_cap(source_length, self.max_length, self.length_ratio)

    def decode(self, lines: list[str]) -> list[Hypotheses]:
        """n-best for each line (space-joined pieces), in input order."""
        tokens = [line.split() or ["<unk>"] for line in lines]
        groups: dict[int, list[int]] = {}
        for i, toks in enumerate(tokens):
            groups.setdefault(self.cap(len(toks)), []).append(i)
        out: list[Hypotheses | None] = [None] * len(lines)
        for cap, indices in groups.items():
            results = self._translator.translate_iterable(
                (tokens[i] for i in indices), max_batch_size=self.batch_tokens,
                batch_type="tokens", beam_size=self.beam, num_hypotheses=self.nbest,
                return_scores=True, max_decoding_length=cap,
            )
            for i, r in zip(indices, results, strict=True):
                out[i] = Hypotheses([" ".join(h) for h in r.hypotheses],
                                    [float(s) for s in r.scores])
        return out  # type: ignore[return-value]
