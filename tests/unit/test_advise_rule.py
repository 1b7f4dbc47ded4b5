"""The rule of `kdnmt advise` on hand-made signals: every branch, every threshold side."""

from __future__ import annotations

import pytest

from kdnmt.study.advise import free_running_accuracy
from kdnmt.study.rule import (
    CAPACITY_LARGE,
    CAPACITY_SMALL,
    GAP_LARGE,
    GAP_SMALL,
    NOISE_HIGH,
    NOISE_LOW,
    UNC_HIGH,
    UNC_LOW,
    recommend,
    vote,
)

SIMPLE = {"capacity_ratio": 0.8, "unc_mean": 0.2, "noise_ratio": 0.9, "decoding_gap": 0.1}
COMPLEX = {"capacity_ratio": 0.05, "unc_mean": 0.8, "noise_ratio": 2.5, "decoding_gap": 0.6}
NEUTRAL = {"capacity_ratio": 0.4, "unc_mean": 0.45, "noise_ratio": 1.4, "decoding_gap": 0.3}


def test_thresholds_are_ordered() -> None:
    assert CAPACITY_SMALL < CAPACITY_LARGE
    assert UNC_LOW < UNC_HIGH and NOISE_LOW < NOISE_HIGH and GAP_SMALL < GAP_LARGE


def test_all_simple_gives_word() -> None:
    method, scenario, reasons, votes = recommend(SIMPLE)
    assert (method, scenario) == ("word", "simple")
    assert set(votes.values()) == {"simple"}
    assert len(reasons) == 5 and "token-level" in reasons[-1]


def test_all_complex_gives_seq() -> None:
    method, scenario, reasons, votes = recommend(COMPLEX)
    assert (method, scenario) == ("seq", "complex")
    assert set(votes.values()) == {"complex"}
    assert "sentence-level" in reasons[-1]


def test_disagreement_gives_hybrid() -> None:
    signals = {**SIMPLE, "noise_ratio": 3.0}
    method, scenario, reasons, votes = recommend(signals)
    assert (method, scenario) == ("hybrid", "mixed")
    assert votes["noise"] == "complex" and votes["capacity"] == "simple"
    assert "disagree" in reasons[-1] and "noise" in reasons[-1]


def test_no_clear_signal_gives_hybrid() -> None:
    method, scenario, reasons, votes = recommend(NEUTRAL)
    assert (method, scenario) == ("hybrid", "mixed")
    assert set(votes.values()) == {"neutral"}
    assert "no signal" in reasons[-1]
    method, scenario, _, votes = recommend({})
    assert (method, scenario) == ("hybrid", "mixed") and set(votes.values()) == {"missing"}


def test_neutral_and_missing_do_not_block_a_majority() -> None:
    signals = {**NEUTRAL, "capacity_ratio": 0.9, "unc_mean": None}
    method, scenario, reasons, votes = recommend(signals)
    assert (method, scenario) == ("word", "simple")
    assert votes["uncertainty"] == "missing" and "not measured" in reasons[1]
    method, _, _, _ = recommend({**NEUTRAL, "decoding_gap": 0.9, "noise_ratio": float("nan")})
    assert method == "seq"


@pytest.mark.parametrize(("value", "expected"), [
    (CAPACITY_LARGE, "simple"), (CAPACITY_SMALL, "complex"),
    ((CAPACITY_LARGE + CAPACITY_SMALL) / 2, "neutral"), (None, "missing")])
def test_capacity_votes_downwards(value, expected) -> None:
    assert vote(value, CAPACITY_LARGE, CAPACITY_SMALL, "down") == expected


@pytest.mark.parametrize(("value", "expected"), [
    (NOISE_LOW, "simple"), (NOISE_HIGH, "complex"), ((NOISE_LOW + NOISE_HIGH) / 2, "neutral")])
def test_noise_votes_upwards(value, expected) -> None:
    assert vote(value, NOISE_LOW, NOISE_HIGH, "up") == expected


def test_free_running_accuracy_is_positional() -> None:
    # hypothesis "a b c" vs reference "a b d": a, b match, c != d, </s> matches
    assert free_running_accuracy(["a b c"], ["a b d"]) == (3, 4)
    # an early insertion shifts every later token
    assert free_running_accuracy(["x a b"], ["a b"]) == (0, 3)
    assert free_running_accuracy(["", "a"], ["", "a b"]) == (1 + 1, 1 + 3)
