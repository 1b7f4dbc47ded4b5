"""Strict reading of user-written values: one set of rules for every configuration kdnmt reads
(training YAML, study grids, KD hyper-parameters from the command line).

Why one module: the same YAML value must be accepted or refused the same way wherever it
appears (``3`` is a fine float, ``true`` is not an integer, ``.inf`` is not a number), and a file
with several mistakes should name all of them at once, as CTranslate2's converter does, instead
of one per run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kdnmt.errors import KdnmtError


def coerce(value: Any, kind: type, where: str) -> Any:
    """``value`` checked against ``kind`` (int, float, str, bool): ints are accepted for
    floats, a bool is never an integer, floats must be finite. ``KdnmtError`` names ``where``."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        raise KdnmtError(f"{where}: expected an integer, got {value!r}")
    if not isinstance(value, kind):
        raise KdnmtError(f"{where}: expected {kind.__name__}, got {value!r}")
    if kind is float and isinstance(value, float) and not math.isfinite(value):  # YAML's .inf, .nan
        raise KdnmtError(f"{where}: expected a finite number, got {value!r}")
    return value


def as_number(name: str, value: Any) -> float:
    """A number given as int, float or numeric text (command-line values); ``ValueError``
    for bools and anything else. Non-finite values pass: range checks name them."""
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"{name}={value!r} is not a number")


class Problems:
    """Collects the problems of one file so that all of them are reported together.

    ``with problems.collect(): ...`` records a :class:`KdnmtError` raised inside instead of
    propagating it; :meth:`raise_if_any` then raises one error whose line lists every problem
    (a single problem keeps its message unchanged).
    """

    def __init__(self, source: str):
        self.source = source
        self.messages: list[str] = []

    @contextmanager
    def collect(self) -> Iterator[None]:
        try:
            yield
        except KdnmtError as exc:
            self.messages.append(str(exc))

    def raise_if_any(self) -> None:
        if not self.messages:
            return
        if len(self.messages) == 1:
            raise KdnmtError(self.messages[0])
        prefix = f"{self.source}: "
        parts = [m[len(prefix):] if m.startswith(prefix) else m for m in self.messages]
        raise KdnmtError(f"{self.source}: {len(parts)} problems: " + "; ".join(parts))
