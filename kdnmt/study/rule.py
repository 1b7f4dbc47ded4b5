"""The rule of `kdnmt advise`: measured signals -> word, seq or hybrid, with reasons.

Kept apart from the measurement (:mod:`kdnmt.study.advise`) so that the thresholds can be read,
tested and moved on their own: they are this project's heuristics, to be validated by
`kdnmt study` (Wei et al. 2024 publish none in this form).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

# -- thresholds ----------------------------------------------------------------------------
# Each pair is (at or beyond this: simple, at or beyond this: complex). They are heuristics
# to be validated by `kdnmt study`, chosen as follows.

#: Student/teacher parameter ratio. Wei et al. shrink the student to make the scenario harder;
#: with kdnmt's presets under a `big` (48M) teacher, `base` (0.75) counts as a large student,
#: `small` (0.19) and `tiny` (0.05) as small ones.
CAPACITY_LARGE = 0.5
CAPACITY_SMALL = 0.25

#: Mean UNC (1 - p(reference)) of the teacher, teacher-forced on the sample. A teacher trained
#: with label smoothing 0.1 rarely goes below ~0.15 on its own training data; above one half,
#: the teacher puts most of its mass off the reference on average and its token distributions
#: are a noisy target for a small student.
UNC_LOW = 0.35
UNC_HIGH = 0.55

#: Teacher perplexity on the sample over its perplexity on the valid split. The valid split is
#: carved from the same corpus as train, so clean training data reads at or below 1 (the
#: teacher has seen it); `kdnmt noise --level moderate` on the sources is meant to land past
#: NOISE_HIGH.
NOISE_LOW = 1.2
NOISE_HIGH = 1.6

#: Teacher-forced minus free-running token accuracy (positional, so one early insertion shifts
#: every later token: the gap is large by construction and only its size matters).
GAP_SMALL = 0.20
GAP_LARGE = 0.40

#: Name of the probe student trained when ``probe_steps`` > 0; removed after measuring.

METHODS = {"simple": "word", "complex": "seq", "mixed": "hybrid"}

#: (signal key, thresholds, direction): "up" means larger values are more complex.
RULES: tuple[tuple[str, str, float, float, str], ...] = (
    ("capacity_ratio", "capacity", CAPACITY_LARGE, CAPACITY_SMALL, "down"),
    ("unc_mean", "uncertainty", UNC_LOW, UNC_HIGH, "up"),
    ("noise_ratio", "noise", NOISE_LOW, NOISE_HIGH, "up"),
    ("decoding_gap", "decoding", GAP_SMALL, GAP_LARGE, "up"),
)


@dataclass
class Advice:
    """A recommendation and what it rests on (``RUN/reports/advice.json``)."""

    method: str  # "word", "seq" or "hybrid"
    signals: dict[str, Any]
    reasons: list[str]
    scenario: str  # "simple", "complex" or "mixed"
    votes: dict[str, str] = field(default_factory=dict)  # signal group -> simple/complex/...
    inputs: dict[str, Any] = field(default_factory=dict)  # what was measured, and how

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def vote(value: float | None, simple_at: float, complex_at: float, direction: str) -> str:
    """"simple", "complex", "neutral" (between the thresholds) or "missing" (not measured)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if direction == "up":
        return "simple" if value <= simple_at else "complex" if value >= complex_at else "neutral"
    return "simple" if value >= simple_at else "complex" if value <= complex_at else "neutral"


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def recommend(signals: Mapping[str, Any]) -> tuple[str, str, list[str], dict[str, str]]:
    """The rule: ``(method, scenario, reasons, votes)`` from measured signals.

    Signals that are missing (None) do not vote. Only simple votes: ``word``; only complex
    votes: ``seq``; both, or neither: ``hybrid`` (scenario "mixed").
    """
    votes: dict[str, str] = {}
    reasons: list[str] = []
    for key, group, simple_at, complex_at, direction in RULES:
        value = signals.get(key)
        verdict = vote(value, simple_at, complex_at, direction)
        votes[group] = verdict
        if verdict == "missing":
            reasons.append(f"{group}: not measured ({key} unavailable), no vote")
            continue
        assert value is not None  # vote() says "missing" for an unmeasured signal
        to_simple, to_complex = ("<=", ">=") if direction == "up" else (">=", "<=")
        side = "neither" if verdict == "neutral" else verdict
        reasons.append(f"{group}: {key} = {_fmt(value)} -> {side} (simple if {to_simple} "
                       f"{_fmt(simple_at)}, complex if {to_complex} {_fmt(complex_at)})")
    simple = [g for g, v in votes.items() if v == "simple"]
    complex_ = [g for g, v in votes.items() if v == "complex"]
    if simple and not complex_:
        scenario = "simple"
        reasons.append(f"simple scenario ({', '.join(simple)}), nothing complex: token-level KD "
                       "(word) suits it (Wei et al. 2024)")
    elif complex_ and not simple:
        scenario = "complex"
        reasons.append(f"complex scenario ({', '.join(complex_)}), nothing simple: "
                       "sentence-level KD (seq) suits it (Wei et al. 2024)")
    else:
        scenario = "mixed"
        why = (f"signals disagree (simple: {', '.join(simple)}; complex: {', '.join(complex_)})"
               if simple else "no signal is clearly simple or complex")
        reasons.append(f"{why}: the hybrid method's per-sentence gate mixes both")
    return METHODS[scenario], scenario, reasons, votes
