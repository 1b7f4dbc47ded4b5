"""Teacher decoding with CTranslate2: n-best pseudo-targets for a chunk of source lines.

Sources arrive already as SentencePiece pieces (the run's ``train.sp.SRC``), so the output is
pieces too, exactly what the student trains on. One translator with one single-threaded replica
per core (``inter_threads``): on 2 cores this is ~4x faster than one replica with 2 threads. On
a GPU, one replica per GPU.

Every chunk's lines are grouped by their length cap (:func:`length_cap`) and each group goes to
CTranslate2 as the ``translate_batch`` calls ``translate_iterable`` would make of it (read
batches of 16 x the batch size, :func:`read_batches`), so the batches, and with them the
hypotheses, are those of one ``translate_iterable`` call per group. What differs from calling
``translate_iterable`` group after group is the waiting: :meth:`TeacherDecoder.decode_stream`
submits the next chunks' batches before collecting a chunk, so the replicas never drain at the
end of a group or a chunk (with few lines per group and many replicas, most of them idled
there), and the caller writes a chunk while the next ones decode.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from kdnmt.translation import load_translator

K = TypeVar("K")

#: Chunks submitted beyond the one being collected (:meth:`TeacherDecoder.decode_stream`).
AHEAD = 2


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


def read_batches(lengths: list[int], read_tokens: int) -> Iterator[tuple[int, int]]:
    """``[start, end)`` ranges of consecutive examples, split where ``translate_iterable``
    splits its input before each ``translate_batch`` call: when one more example would make
    ``(examples + 1) x longest`` exceed ``read_tokens`` (CTranslate2 4.x's ``_batch_iterator``
    with ``batch_type="tokens"``; tests/unit/test_teacher_decode.py compares the two)."""
    start, longest = 0, 0
    for i, length in enumerate(lengths):
        longest = max(longest, length)
        if i > start and (i - start + 1) * longest > read_tokens:
            yield start, i
            start, longest = i, length
    if start < len(lengths):
        yield start, len(lengths)


class TeacherDecoder:
    """CTranslate2 beam search over piece sequences; a context manager that frees the model."""

    def __init__(self, model_dir: Path, *, beam: int, nbest: int, batch_tokens: int = 2048,
                 max_length: int = 256, length_ratio: float = 0.0,
                 inter_threads: int | None = None, device: str = "cpu",
                 compute_type: str = "default", device_index: int | list[int] = 0):
        """``device``/``compute_type`` as checked and resolved by :mod:`kdnmt.devices`;
        ``device_index`` a list of GPUs to put one replica on each."""
        self._translator = load_translator(model_dir, device=device, compute_type=compute_type,
                                           device_index=device_index,
                                           inter_threads=inter_threads, what="teacher")
        #: what CTranslate2 computes with (``default`` resolved, e.g. ``int8_float32``)
        self.compute_type = str(self._translator.compute_type)
        self.device = device
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

    def _submit(self, lines: list[str]) -> list[tuple[int, Any]]:
        """Queue the decoding of ``lines`` without waiting: (line index, async result) pairs,
        from the ``translate_batch`` calls described in the module docstring."""
        tokens = [line.split() or ["<unk>"] for line in lines]
        groups: dict[int, list[int]] = {}
        for i, toks in enumerate(tokens):
            groups.setdefault(self.cap(len(toks)), []).append(i)
        read_tokens = self.batch_tokens * 16 if self.batch_tokens > 1 else self.batch_tokens
        pending: list[tuple[int, Any]] = []
        for cap, indices in groups.items():
            for start, end in read_batches([len(tokens[i]) for i in indices], read_tokens):
                part = indices[start:end]
                results = self._translator.translate_batch(
                    [tokens[i] for i in part], max_batch_size=self.batch_tokens,
                    batch_type="tokens", asynchronous=True, beam_size=self.beam,
                    num_hypotheses=self.nbest, return_scores=True, max_decoding_length=cap)
                pending.extend(zip(part, results, strict=True))
        return pending

    @staticmethod
    def _collect(count: int, pending: list[tuple[int, Any]]) -> list[Hypotheses]:
        out: list[Hypotheses | None] = [None] * count
        for i, future in pending:
            r = future.result()
            out[i] = Hypotheses([" ".join(h) for h in r.hypotheses],
                                [float(s) for s in r.scores])
        return out  # type: ignore[return-value]

    def decode(self, lines: list[str]) -> list[Hypotheses]:
        """n-best for each line (space-joined pieces), in input order."""
        return self._collect(len(lines), self._submit(lines))

    def decode_stream(self, parts: Iterable[tuple[K, list[str]]],
                      ahead: int = AHEAD) -> Iterator[tuple[K, list[Hypotheses]]]:
        """``(key, decode(lines))`` for each ``(key, lines)`` of ``parts``, in order, with the
        next ``ahead`` parts already queued while one is collected and while the caller
        handles it (the results are :meth:`decode`'s)."""
        queued: deque[tuple[K, int, list[tuple[int, Any]]]] = deque()
        for key, lines in parts:
            queued.append((key, len(lines), self._submit(lines)))
            if len(queued) > ahead:
                first, count, pending = queued.popleft()
                yield first, self._collect(count, pending)
        while queued:
            first, count, pending = queued.popleft()
            yield first, self._collect(count, pending)
