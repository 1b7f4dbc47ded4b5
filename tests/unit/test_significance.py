"""kdnmt.significance against sacrebleu's own paired tests, on real sentences."""

from __future__ import annotations

import lzma
import random

import numpy as np
import pytest
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from kdnmt.significance import (
    SEED,
    PairedSettings,
    _sacrebleu_seed,
    bootstrap_indices,
    compare,
    resampled_scores,
    verdict,
)
from tests.helpers import DEMO


@pytest.fixture(scope="module")
def references() -> list[str]:
    with lzma.open(DEMO / "test.en.xz", "rt", encoding="utf-8") as handle:
        return handle.read().split("\n")[:200]


def drop_words(lines: list[str], rate: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(w for w in line.split() if rng.random() >= rate) for line in lines]


def metrics() -> tuple[BLEU, CHRF]:
    return BLEU(), CHRF()


SMALL = PairedSettings(bootstrap=300, ar_trials=400)


def test_our_resamples_are_sacrebleus(references: list[str]) -> None:
    """The interval of the difference is read off resamples that must be exactly those of
    sacrebleu's paired bootstrap: they reproduce the system mean and 95% CI it reports."""
    baseline, system = drop_words(references, 0.3, 1), drop_words(references, 0.2, 2)
    with _sacrebleu_seed(SEED):
        _, scores = PairedTest([("b", baseline), ("s", system)], {"BLEU": BLEU()},
                               [references], test_type="bs", n_samples=300)()
    reported = scores["BLEU"][1]
    ours = resampled_scores(BLEU(), system, references,
                            bootstrap_indices(len(references), 300, SEED))
    assert float(np.mean(ours)) == pytest.approx(reported.mean, abs=1e-9)
    ordered = np.sort(ours)
    assert 0.5 * (ordered[300 - 7 - 1] - ordered[7]) == pytest.approx(reported.ci, abs=1e-9)


@pytest.mark.slow
def test_compare_reports_sacrebleus_p_values(references: list[str]) -> None:
    baseline, system = drop_words(references, 0.3, 1), drop_words(references, 0.28, 2)
    result = compare(baseline, system, references, metrics, SMALL)
    for test_type, n, key in (("bs", 300, "p_bootstrap"), ("ar", 400, "p_ar")):
        with _sacrebleu_seed(SEED):
            _, scores = PairedTest([("b", baseline), ("s", system)],
                                   {"BLEU": BLEU(), "chrF": CHRF()}, [references],
                                   test_type=test_type, n_samples=n)()
        assert result["bleu"][key] == round(scores["BLEU"][1].p_value, 4)
        assert result["chrf"][key] == round(scores["chrF2"][1].p_value, 4)
    delta = BLEU().corpus_score(system, [references]).score - \
        BLEU().corpus_score(baseline, [references]).score
    assert result["bleu"]["delta"] == round(delta, 2)
    low, high = result["bleu"]["ci95"]
    assert low <= result["bleu"]["delta"] <= high
    assert result["signatures"]["bleu_bs"].startswith("nrefs:1|bs:300|seed:12345|")
    assert result["signatures"]["chrf_ar"].startswith("nrefs:1|ar:400|seed:12345|")
    # reproducible: the same numbers on a second call
    assert compare(baseline, system, references, metrics, SMALL) == result


@pytest.mark.slow
def test_clear_and_unsupported_differences(references: list[str]) -> None:
    """Half the words dropped against a tenth: significant both ways. Two equally damaged
    outputs: the tests do not support a difference, and the verdict says so."""
    clear = compare(drop_words(references, 0.5, 1), drop_words(references, 0.1, 2),
                    references, metrics, SMALL)
    assert clear["bleu"]["delta"] > 0 and clear["bleu"]["ci95"][0] > 0
    assert clear["bleu"]["significant"] and verdict(clear["bleu"]) == "significant"
    same = compare(drop_words(references, 0.2, 3), drop_words(references, 0.2, 4),
                   references, metrics, SMALL)
    for key in ("bleu", "chrf"):
        assert not same[key]["significant"], same
        assert verdict(same[key]) == "not significant"
        assert same[key]["ci95"][0] < 0 < same[key]["ci95"][1]
        assert max(same[key]["p_bootstrap"], same[key]["p_ar"]) >= 0.05


def test_identical_output_is_not_significant(references: list[str]) -> None:
    """sacrebleu gives p = 1/(n+1) for identical systems; kdnmt does not call that a
    difference."""
    out = drop_words(references, 0.2, 5)
    result = compare(out, list(out), references, metrics, SMALL)
    assert result["bleu"]["delta"] == 0 and not result["bleu"]["significant"]
    assert verdict(result["chrf"]) == "not significant (identical output)"


def test_no_observed_difference_is_not_significant(references: list[str]) -> None:
    """Two different outputs that both score BLEU 0: sacrebleu's p is again 1/(n+1) (every
    resampled difference is 0); kdnmt reports no difference."""
    result = compare(["qqq"] * len(references), ["zzz"] * len(references), references,
                     metrics, SMALL)
    assert result["bleu"]["delta"] == 0 and result["bleu"]["p_bootstrap"] < 0.05
    assert verdict(result["bleu"]) == "not significant (no difference)"
