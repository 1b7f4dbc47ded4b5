"""The method registry: one entry per distillation method, the only place a method name is
dispatched.

Each :class:`LossSpec` says what a method trains on, which loss of :mod:`kdnmt.losses` it uses
(by name: the registry imports no torch, so the CLI and its help stay cheap), whether it reads
teacher distributions and along what, its hyper-parameters with their valid ranges, and the
figures it logs. ``kdnmt distill``, its CLI help and choices, the OpenNMT-py bridge and the study
read it. Adding a method is one loss module and one entry below (fairseq's criterion registry
and sacrebleu's metric classes are the models). A bad hyper-parameter is rejected with a
one-line message before any training starts instead of silently producing a meaningless loss
(e.g. a negative CE weight for ``alpha > 1``).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kdnmt.losses.thresholds import DEFAULT_THRESHOLD, parse_threshold
from kdnmt.strict import as_number

#: What a method trains on: the references, the teacher's beam outputs, or seq-inter's picks.
TRAINING_DATA = ("references", "pseudo-targets", "seqinter")


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
    """A distillation method.

    ``loss`` names its token-level loss in :mod:`kdnmt.losses` (``None``: OpenNMT-py's own
    label-smoothed CE on ``data``); ``stats_loss`` a variant returning ``(loss, figures)``
    whose ``stats`` are logged; ``topk_loss`` its sparse form for a top-k store (same value,
    no dense ``[N, V]`` teacher). ``soft_along`` is where it reads teacher distributions
    (``None``: nowhere); ``full_teacher`` methods read the whole distribution, so they default
    to the online teacher and a top-k store is an approximation. ``fine_tuning`` methods start
    from a trained student (``--init-from``). ``trainer`` is ``"hybrid"`` for the two-pass,
    gated loss of :func:`kdnmt.onmt_bridge.kd_loss.hybrid_loss_factory`.
    """

    name: str
    summary: str
    data: str = "references"
    loss: str | None = None
    hparams: tuple[HParam, ...] = ()
    stats_loss: str | None = None
    topk_loss: str | None = None
    stats: tuple[str, ...] = ()
    soft_along: str | None = None
    full_teacher: bool = False
    needs_teacher: bool = True
    fine_tuning: bool = False
    trainer: str = "token"

    @property
    def function(self) -> Callable[..., Any] | None:
        """The loss function itself (imports torch on first use)."""
        return _resolve(self.loss)

    @property
    def stats_function(self) -> Callable[..., Any] | None:
        """The variant returning ``(loss, figures)``, or None."""
        return _resolve(self.stats_loss)

    @property
    def topk_function(self) -> Callable[..., Any] | None:
        """The sparse top-k form ``(s, ids, logprobs, y, **hparams)``, or None."""
        return _resolve(self.topk_loss)

    def defaults(self) -> dict[str, Any]:
        """Default value of every hyper-parameter."""
        return {h.name: h.default for h in self.hparams}

    def uses_cache_by_default(self) -> bool:
        """Whether a top-k store, when it exists, is this method's default teacher."""
        return self.soft_along is not None and not self.full_teacher


def _resolve(name: str | None) -> Callable[..., Any] | None:
    return None if name is None else getattr(importlib.import_module("kdnmt.losses"), name)


def _threshold_value(raw: Any) -> float | str:
    """selfevo's threshold: nats (a number) or ``quantile:Q`` (kept as its text)."""
    kind, value = parse_threshold(raw if isinstance(raw, str) else as_number("threshold", raw))
    return value if kind == "nats" else f"quantile:{value:g}"


_WORD_HPARAMS = (
    HParam("alpha", 0.5, 0.0, 1.0),
    HParam("temperature", 1.0, 0.0, None, low_inclusive=False),
    HParam("label_smoothing", 0.0, 0.0, 1.0),
)

#: Every method, in the order the CLI lists them.
METHODS: dict[str, LossSpec] = {spec.name: spec for spec in (
    LossSpec("ce", "label-smoothed CE on the references, no teacher (the baseline)",
             needs_teacher=False, trainer="ce"),
    LossSpec("word", "word-level KD along the references (Kim & Rush 2016)",
             loss="word_kd", hparams=_WORD_HPARAMS, topk_loss="word_kd_topk",
             soft_along="references"),
    LossSpec("seq", "CE on the teacher's beam outputs: sequence-level KD (Kim & Rush 2016)",
             data="pseudo-targets", trainer="ce"),
    LossSpec("seqinter", "CE on the n-best pick closest to the reference: sequence-level "
             "interpolation", data="seqinter", trainer="ce"),
    LossSpec("seq+word", "word-level KD along the teacher's beam outputs",
             data="pseudo-targets", loss="word_kd", hparams=_WORD_HPARAMS,
             topk_loss="word_kd_topk", soft_along="pseudo-targets"),
    LossSpec("selfevo", "Self-Evolution KD (Song et al. 2024), a fine-tuning stage",
             loss="self_evolution_kd", stats_loss="self_evolution_kd_stats",
             stats=("hard_tokens", "threshold"), soft_along="references", full_teacher=True,
             fine_tuning=True, hparams=(
                 HParam("lam", 0.5, 0.0, 1.0),
                 HParam("beta", 0.5, 0.0, 1.0),
                 HParam("threshold", DEFAULT_THRESHOLD, 0.0, None, parse=_threshold_value),
             )),
    LossSpec("atkd", "adaptive token-wise KD (Zhong et al. 2024)",
             loss="atkd", stats_loss="atkd_with_stats", stats=("unc", "tkd", "dkd"),
             soft_along="references", full_teacher=True, hparams=(
                 HParam("alpha", 0.2, 0.0, 1.0),
                 HParam("hard_ratio", 0.5, 0.0, 1.0, low_inclusive=False),
                 HParam("temperature", 1.0, 0.0, None, low_inclusive=False),
             )),
    LossSpec("hybrid", "per-sentence gate between word-level KD on the reference and CE on "
             "the pseudo-target (Wei et al. 2024)", loss="word_kd", hparams=_WORD_HPARAMS,
             soft_along="references", trainer="hybrid",
             stats=("gate_mean", "gate_std", "gate_p10", "gate_p90", "c_minus_a", "gate_min",
                    "gate_max")),
)}
#: The methods with a token-level loss of their own (the others train with OpenNMT-py's CE).
LOSSES: dict[str, LossSpec] = {name: spec for name, spec in METHODS.items() if spec.loss}


def get_spec(method: str) -> LossSpec:
    """The ``LossSpec`` of ``method``; ``ValueError`` naming the known methods otherwise."""
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(
            f"unknown KD method {method!r}: expected one of {', '.join(METHODS)}"
        ) from None


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
        value = as_number(name, raw)
        if not known[name].contains(value):
            raise ValueError(f"{name}={value:g} is out of range: expected {known[name].describe()}")
        result[name] = value
    return result
