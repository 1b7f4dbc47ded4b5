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
from typing import Any

from kdnmt.corpus.spm import Tokenizer
from kdnmt.errors import KdnmtError, check


def cpu_cores() -> int:
    """The cores this process may use: KDNMT_THREADS when set (the tests and side-by-side
    jobs), else the CPUs of its affinity mask (``taskset``, a container's cpuset), which
    ``os.cpu_count()`` ignores: it counts the machine's, and replicas beyond the cores the
    process may run on only take turns on them."""
    threads = os.environ.get("KDNMT_THREADS")
    if threads:
        check(threads.isdigit() and int(threads) >= 1,
              f"KDNMT_THREADS must be a whole number >= 1, got '{threads}'")
        return int(threads)
    return max(1, len(os.sched_getaffinity(0)))


def default_threads(device: str = "cpu") -> tuple[int, int]:
    """(inter_threads, intra_threads). On the CPU, for throughput, one single-threaded
    translator replica per core beats one multi-threaded replica (measured ~4x in int8 on 2
    cores, issue "kdnmt generate"); it is also what a bare CTranslate2 loop tuned for
    throughput does (bench/generate.py). On a GPU, one replica per GPU (``device_index``
    lists them); its CPU threads only feed it."""
    if device == "cuda":
        return 1, 1
    return cpu_cores(), 1


def load_translator(model_dir: Path, *, device: str, compute_type: str,
                    device_index: int | list[int] = 0, inter_threads: int | None = None,
                    intra_threads: int | None = None, what: str = "model") -> Any:
    """A ``ctranslate2.Translator`` on ``device`` with ``compute_type`` (as
    :func:`kdnmt.devices.resolve` gives it), or one clear error line."""
    import ctranslate2

    inter, intra = default_threads(device)
    try:
        return ctranslate2.Translator(
            str(model_dir), device=device, device_index=device_index,
            compute_type=compute_type, inter_threads=inter_threads or inter,
            intra_threads=intra_threads or intra)
    except (RuntimeError, ValueError) as exc:
        where = "" if (device, compute_type) == ("cpu", "default") else \
            f" on {device} ({compute_type})"
        raise KdnmtError(f"cannot load CTranslate2 {what} {model_dir}{where}: {exc}") from None


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
                 compute_type: str = "default", device: str = "cpu"):
        """``compute_type`` as :func:`kdnmt.devices.resolve` gives it for ``device`` (the
        caller checked the device, before any conversion); on ``cuda`` the first GPU."""
        check(beam >= 1, f"--beam must be >= 1, got {beam}")
        check(batch_tokens >= 1, f"--batch-size must be >= 1, got {batch_tokens}")
        check(max_length >= 1, f"--max-length must be >= 1, got {max_length}")
        model_dir = Path(model_dir)
        check((model_dir / "model.bin").is_file(),
              f"{model_dir} is not a CTranslate2 model directory (no model.bin)")
        self._translator = load_translator(model_dir, device=device, compute_type=compute_type,
                                           inter_threads=inter_threads,
                                           intra_threads=intra_threads)
        self.device = device
        #: what CTranslate2 computes with (``default`` resolved, e.g. ``int8_float32``)
        self.compute_type = str(self._translator.compute_type)
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
