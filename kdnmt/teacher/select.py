"""Sequence-level interpolation (Kim & Rush, 2016): choose the n-best hypothesis to train on.

Plain sequence-level KD trains the student on the teacher's 1-best output, which may have
drifted from the reference. Seq-inter instead trains on the hypothesis of the teacher's n-best
list that is closest to the reference (by smoothed sentence BLEU): it is still something the
teacher finds likely, so easy for the student to fit, but it carries as much of the
reference's content as the teacher can offer.
"""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics import BLEU

from kdnmt.errors import KdnmtError, check

#: What ``sacrebleu.sentence_bleu`` builds on every call (13a tokenisation, 'exp' smoothing,
#: effective order); made once because n-best selection scores millions of sentences.
_SENTENCE_BLEU = BLEU(effective_order=True)


def sentence_bleu(hypothesis: str, reference: str) -> float:
    """Smoothed sentence BLEU of ``hypothesis`` against one reference, as sacrebleu scores it."""
    return _SENTENCE_BLEU.sentence_score(hypothesis, [reference]).score


def select_closest(hypotheses: list[str], reference: str, scores: list[float] | None = None) -> int:
    """Index of the hypothesis with the highest sentence BLEU against ``reference``.

    Ties (frequent for short sentences, or for scripts that 13a does not segment, where BLEU
    is 0 for every non-identical hypothesis) go to the higher teacher score when ``scores`` is
    given, then to the better rank (lower index), so the choice falls back to what plain
    sequence-level KD would pick and is deterministic.
    """
    if not hypotheses:
        raise KdnmtError("select_closest: the n-best list is empty, there is nothing to choose")
    if scores is not None:
        check(
            len(scores) == len(hypotheses),
            f"select_closest: {len(scores)} teacher scores for {len(hypotheses)} hypotheses",
        )
    return max(range(len(hypotheses)), key=lambda i: _rank_key(i, hypotheses, reference, scores))


def _rank_key(
    index: int, hypotheses: Sequence[str], reference: str, scores: Sequence[float] | None
) -> tuple[float, float, int]:
    """Sort key: BLEU first, teacher score second, earlier rank last (maximised)."""
    score = 0.0 if scores is None else float(scores[index])
    return (sentence_bleu(hypotheses[index], reference), score, -index)
