"""Translating raw text with a CTranslate2 model and the run's SentencePiece model.

Used by `eval`, `translate` and `export`'s smoke test. CTranslate2 does the batching
(``translate_iterable`` with token-based batches, results in input order); we only tokenize,
detokenize and count.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from kdnmt.corpus.spm import Tokenizer
from kdnmt.errors import KdnmtError, check


def default_threads() -> tuple[int, int]:
    """(inter_threads, intra_threads). For throughput on few cores, one single-threaded
    translator replica per core beats one multi-threaded replica (measured ~4x in int8 on 2
    cores, issue "kdnmt generate")."""
    cores = os.cpu_count() or 1
    return max(1, min(cores, 8)), 1


@dataclass
class TranslationStats:
    sentences: int = 0
    output_tokens: int = 0


class Translator:
    """A CTranslate2 translator plus tokenizer; use as a context manager so CTranslate2's
    resources are released before interpreter exit (an abort at exit was seen otherwise)."""

    def __init__(self, model_dir: Path, spm_model: Path, *, beam: int = 5,
                 batch_tokens: int = 2048, max_length: int = 256,
                 inter_threads: int | None = None, intra_threads: int | None = None,
                 compute_type: str = "default"):
        import ctranslate2

        check(beam >= 1, f"--beam must be >= 1, got {beam}")
        check(batch_tokens >= 1, f"--batch-size must be >= 1, got {batch_tokens}")
        check(max_length >= 1, f"--max-length must be >= 1, got {max_length}")
        model_dir = Path(model_dir)
        check((model_dir / "model.bin").is_file(),
              f"{model_dir} is not a CTranslate2 model directory (no model.bin)")
        inter, intra = default_threads()
        try:
            self._translator = ctranslate2.Translator(
                str(model_dir), device="cpu", compute_type=compute_type,
                inter_threads=inter_threads or inter, intra_threads=intra_threads or intra,
            )
        except (RuntimeError, ValueError) as exc:
            raise KdnmtError(f"cannot load CTranslate2 model {model_dir}: {exc}") from None
        self.tokenizer = Tokenizer(spm_model)
        self.beam = beam
        self.batch_tokens = batch_tokens
        self.max_length = max_length
        self.stats = TranslationStats()

    def __enter__(self) -> Translator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        translator = getattr(self, "_translator", None)
        if translator is not None:
            translator.unload_model()
            self._translator = None

    def translate_iter(self, lines: Iterable[str]) -> Iterator[str]:
        """Translate lines lazily, in order; empty lines come back empty."""
        def pieces() -> Iterator[list[str]]:
            for line in lines:
                self.stats.sentences += 1
                yield self.tokenizer.pieces(line) or [""]

        results = self._translator.translate_iterable(
            pieces(), max_batch_size=self.batch_tokens, batch_type="tokens",
            beam_size=self.beam, max_decoding_length=self.max_length,
        )
        for result in results:
            hypothesis = [p for p in result.hypotheses[0] if p]
            self.stats.output_tokens += len(hypothesis)
            yield self.tokenizer.detokenize(hypothesis)

    def translate(self, lines: list[str]) -> list[str]:
        return list(self.translate_iter(lines))
