"""Paired significance of a BLEU/chrF difference between two systems, with sacrebleu's tests.

`kdnmt eval --baseline NAME` compares every other model with the baseline on the same test
sentences, beam size and quantization. The p-values are sacrebleu's own paired tests
(:class:`sacrebleu.significance.PairedTest`): paired bootstrap resampling (Koehn 2004, as
Moses' ``bootstrap-hypothesis-difference-significance.pl``) and approximate randomization
(Riezler and Maxwell 2005, as multeval). Both are two-sided tests of "no difference".

sacrebleu reports a 95% confidence interval for each system's score, not for the difference.
The interval of the difference is read off the very resamples sacrebleu's paired bootstrap
draws (same seed, same index matrix: ``numpy.random.default_rng(seed).choice``), scored with
the metric's own ``_compute_score_from_stats``; a test checks that these resamples reproduce
the system interval sacrebleu reports, so the two cannot drift apart silently.

The seed is fixed (:data:`SEED`) and recorded with the resample counts, so a rerun on the same
hypotheses gives the same numbers. A difference is called significant only when it is not 0
and both tests give p < :data:`ALPHA`; otherwise it is reported as not significant.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

#: sacrebleu's own default seed; recorded in every comparison and in the signatures.
SEED = 12345
#: Significance level: "not significant" at p >= ALPHA.
ALPHA = 0.05
BOOTSTRAP_DEFAULT = 1000
AR_DEFAULT = 10000


@dataclass(frozen=True)
class PairedSettings:
    bootstrap: int = BOOTSTRAP_DEFAULT
    ar_trials: int = AR_DEFAULT
    seed: int = SEED


@contextlib.contextmanager
def _sacrebleu_seed(seed: int) -> Iterator[None]:
    """sacrebleu reads its seed from ``SACREBLEU_SEED`` when a PairedTest is built."""
    old = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = old


def bootstrap_indices(n_sentences: int, n_samples: int, seed: int) -> Any:
    """The index matrix sacrebleu's paired bootstrap draws for ``seed`` (its first and only
    draw from a fresh generator, ``_paired_bs_test``)."""
    import numpy as np

    return np.random.default_rng(seed).choice(n_sentences, size=(n_samples, n_sentences),
                                              replace=True)


def resampled_scores(metric: Any, hypotheses: Sequence[str], references: Sequence[str],
                     idxs: Any) -> Any:
    """The metric's corpus score on each bootstrap resample ``idxs`` (one row per resample)."""
    import numpy as np

    stats = np.array(metric._extract_corpus_statistics(hypotheses, [references]),
                     dtype="float32")
    return np.array([metric._compute_score_from_stats(s.sum(0)).score for s in stats[idxs]])


def _interval(values: Any) -> list[float]:
    """The 95% interval with sacrebleu's index rule (``estimate_ci``: 1/40 from each end)."""
    import numpy as np

    ordered = np.sort(values)
    lower = len(ordered) // 40
    return [float(ordered[lower]), float(ordered[len(ordered) - lower - 1])]


def _metrics(make_metrics: Any) -> dict[str, Any]:
    """Fresh BLEU and chrF instances (sacrebleu metrics cache references between calls)."""
    bleu, chrf = make_metrics()
    return {"bleu": bleu, "chrf": chrf}


def compare(baseline: Sequence[str], system: Sequence[str], references: Sequence[str],
            make_metrics: Any, settings: PairedSettings) -> dict[str, Any]:
    """``system`` against ``baseline`` on the same references: per metric the observed
    difference (system - baseline), its 95% paired-bootstrap interval and both p-values.

    ``make_metrics`` returns new (BLEU, chrF) objects configured as the eval scores them (the
    target language's tokenizer), so the tested score is the reported one."""
    from sacrebleu.significance import PairedTest

    out: dict[str, Any] = {"seed": settings.seed, "bootstrap_resamples": settings.bootstrap,
                           "ar_trials": settings.ar_trials, "alpha": ALPHA}
    if list(baseline) == list(system):
        # Both tests give p = 1/(n+1) for identical outputs (every resampled difference is 0
        # and none exceeds the observed 0): the output is the same, there is nothing to test.
        for key in ("bleu", "chrf"):
            out[key] = {"delta": 0.0, "ci95": [0.0, 0.0], "p_bootstrap": None, "p_ar": None,
                        "significant": False, "note": "identical output"}
        return out
    named: list[tuple[str, Sequence[str]]] = [("baseline", list(baseline)),
                                              ("system", list(system))]
    results: dict[tuple[str, str], Any] = {}  # (metric key, test type) -> sacrebleu's column
    signatures: dict[str, str] = {}
    with _sacrebleu_seed(settings.seed):
        for test_type, n in (("bs", settings.bootstrap), ("ar", settings.ar_trials)):
            metrics = _metrics(make_metrics)
            sigs, scores = PairedTest(named, {m.__class__.__name__: m for m in metrics.values()},
                                      [list(references)], test_type=test_type, n_samples=n)()
            # sacrebleu names its rows after the metric's score name ('BLEU', 'chrF2').
            for (key, _), (name, column) in zip(metrics.items(), list(scores.items())[1:],
                                                strict=True):
                results[(key, test_type)] = column
                signatures[f"{key}_{test_type}"] = str(sigs[name])
    idxs = bootstrap_indices(len(references), settings.bootstrap, settings.seed)
    for key, metric in _metrics(make_metrics).items():
        bs_base, bs_sys = results[(key, "bs")]
        _, ar_sys = results[(key, "ar")]
        diffs = (resampled_scores(metric, system, references, idxs)
                 - resampled_scores(metric, baseline, references, idxs))
        p_bs, p_ar = float(bs_sys.p_value), float(ar_sys.p_value)
        delta = float(bs_sys.score - bs_base.score)
        out[key] = {
            "delta": round(delta, 2),
            "ci95": [round(v, 2) for v in _interval(diffs)],
            "p_bootstrap": round(p_bs, 4),
            "p_ar": round(p_ar, 4),
            "significant": delta != 0 and p_bs < ALPHA and p_ar < ALPHA,
            "system_mean": round(float(bs_sys.mean), 2),
            "system_ci": round(float(bs_sys.ci), 2),
        }
        if delta == 0:
            # The same degenerate case with different outputs (say both score 0): every
            # resampled difference is 0 as well, and sacrebleu's p is again 1/(n+1).
            out[key]["note"] = "no difference"
    out["signatures"] = signatures
    return out


def verdict(result: dict[str, Any]) -> str:
    """'significant' or 'not significant' (with why, for identical outputs)."""
    if result.get("note"):
        return f"not significant ({result['note']})"
    return "significant" if result.get("significant") else "not significant"
