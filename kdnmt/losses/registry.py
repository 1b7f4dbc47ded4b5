"""Method name -> loss function and its hyper-parameters, with range validation.

The CLI (``kdnmt distill --method ...``) and the OpenNMT-py bridge look losses up here, so a
bad hyper-parameter is rejected with a one-line message before any training starts instead
of silently producing a meaningless loss (e.g. a negative CE weight for ``alpha > 1``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from kdnmt.losses.atkd import atkd
from kdnmt.losses.self_evolution import DEFAULT_THRESHOLD, parse_threshold, self_evolution_kd
from kdnmt.losses.word_kd import word_kd


@dataclass(frozen=True)
class HParam:
    """One hyper-parameter: default and valid range (``None`` = unbounded on that side)."""

    name: str
    default: float
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    #: Accepts text values beyond a number (e.g. selfevo's ``quantile:Q``): returns the value
    #: to use or raises ``ValueError`` with a one-line message. ``None`` = numbers only.
    parse: Callable[[Any], Any] | None = None

    def describe(self) -> str:
        """The valid range as text, e.g. ``0 <= alpha <= 1`` or ``temperature > 0``."""
        lo = None if self.low is None else f"{self.low:g} {'<=' if self.low_inclusive else '<'} "
        hi = None if self.high is None else f" {'<=' if self.high_inclusive else '<'} {self.high:g}"
        if lo and hi:
            return f"{lo}{self.name}{hi}"
        if lo:
            return f"{self.name} {'>=' if self.low_inclusive else '>'} {self.low:g}"
        if hi:
            return f"{self.name}{hi}"
        return f"{self.name} finite"

    def contains(self, value: float) -> bool:
        """Whether ``value`` is finite and inside the range."""
        if not math.isfinite(value):
            return False
        if self.low is not None and (
            value < self.low or (value == self.low and not self.low_inclusive)
        ):
            return False
        return self.high is None or not (
            value > self.high or (value == self.high and not self.high_inclusive)
        )


@dataclass(frozen=True)
class LossSpec:
    """A distillation method: its loss function and keyword hyper-parameters."""

    name: str
    function: Callable[..., Tensor]
    hparams: tuple[HParam, ...]

    def defaults(self) -> dict[str, float]:
        """Default value of every hyper-parameter."""
        return {h.name: h.default for h in self.hparams}


def _threshold_value(raw: Any) -> float | str:
    """selfevo's threshold: nats (a number) or ``quantile:Q`` (kept as its text)."""
    kind, value = parse_threshold(raw if isinstance(raw, str) else _as_number("threshold", raw))
    return value if kind == "nats" else f"quantile:{value:g}"


LOSSES: dict[str, LossSpec] = {
    "word": LossSpec(
        "word",
        word_kd,
        (
            HParam("alpha", 0.5, 0.0, 1.0),
            HParam("temperature", 1.0, 0.0, None, low_inclusive=False),
            HParam("label_smoothing", 0.0, 0.0, 1.0),
        ),
    ),
    "selfevo": LossSpec(
        "selfevo",
        self_evolution_kd,
        (
            HParam("lam", 0.5, 0.0, 1.0),
            HParam("beta", 0.5, 0.0, 1.0),
            HParam("threshold", DEFAULT_THRESHOLD, 0.0, None, parse=_threshold_value),
        ),
    ),
    "atkd": LossSpec(
        "atkd",
        atkd,
        (
            HParam("alpha", 0.2, 0.0, 1.0),
            HParam("hard_ratio", 0.5, 0.0, 1.0, low_inclusive=False),
            HParam("temperature", 1.0, 0.0, None, low_inclusive=False),
        ),
    ),
}


def get_spec(method: str) -> LossSpec:
    """The ``LossSpec`` of ``method``; ``ValueError`` naming the known methods otherwise."""
    try:
        return LOSSES[method]
    except KeyError:
        raise ValueError(
            f"unknown KD method {method!r}: expected one of {', '.join(sorted(LOSSES))}"
        ) from None


def _as_number(name: str, value: Any) -> float:
    """Accept ints, floats and numeric strings (CLI values); reject bools and the rest."""
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


def validate_hparams(method: str, hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Check ``hparams`` for ``method`` and return them completed with the defaults.

    Raises ``ValueError`` with a one-line message naming the offending parameter and its
    valid range, e.g. ``alpha=1.5 is out of range: expected 0 <= alpha <= 1``, for unknown
    methods, unknown keys, non-numbers, non-finite and out-of-range values.
    """
    spec = get_spec(method)
    known = {h.name: h for h in spec.hparams}
    result = spec.defaults()
    for name, raw in (hparams or {}).items():
        if name not in known:
            raise ValueError(
                f"unknown hyper-parameter {name!r} for method {method!r}: "
                f"expected one of {', '.join(known)}"
            )
        parse = known[name].parse
        if parse is not None:
            result[name] = parse(raw)
            continue
        value = _as_number(name, raw)
        if not known[name].contains(value):
            raise ValueError(f"{name}={value:g} is out of range: expected {known[name].describe()}")
        result[name] = value
    return result
