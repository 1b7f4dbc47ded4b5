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


class TeacherDecoder:
    """CTranslate2 beam search over piece sequences; a context manager that frees the model."""

    def __init__(self, model_dir: Path, *, beam: int, nbest: int, batch_tokens: int = 2048,
                 max_length: int = 256, inter_threads: int | None = None):
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

    def __enter__(self) -> TeacherDecoder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._translator is not None:
            self._translator.unload_model()
            self._translator = None

    def decode(self, lines: list[str]) -> list[Hypotheses]:
        """n-best for each line (space-joined pieces), in input order."""
        results = self._translator.translate_iterable(
            (line.split() or ["<unk>"] for line in lines),
            max_batch_size=self.batch_tokens, batch_type="tokens", beam_size=self.beam,
            num_hypotheses=self.nbest, return_scores=True,
            max_decoding_length=self.max_length,
        )
        return [Hypotheses([" ".join(h) for h in r.hypotheses], [float(s) for s in r.scores])
                for r in results]
