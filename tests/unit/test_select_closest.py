"""Tests of kdnmt.teacher.select: the seq-inter pick of the n-best hypothesis."""

from __future__ import annotations

import pytest
from sacrebleu import sentence_bleu

from kdnmt.errors import KdnmtError
from kdnmt.teacher.select import select_closest

REF = "the cat sat on the mat"


def test_picks_the_hypothesis_closest_to_the_reference() -> None:
    hyps = ["a dog stood in the garden", "the cat sat on a mat", "cat mat"]
    assert select_closest(hyps, REF) == 1
    assert select_closest(hyps, REF, scores=[-0.1, -9.0, -0.5]) == 1  # BLEU beats score


def test_agrees_with_sacrebleu_sentence_bleu() -> None:
    hyps = ["the cat sat", "on the mat the cat", "the cat sat on the hat", "sat"]
    bleus = [sentence_bleu(h, [REF]).score for h in hyps]
    assert select_closest(hyps, REF) == bleus.index(max(bleus))


def test_tie_goes_to_higher_score_then_to_lower_rank() -> None:
    hyps = ["zzz", "yyy", "xxx"]  # all BLEU 0
    assert select_closest(hyps, REF) == 0
    assert select_closest(hyps, REF, scores=[-3.0, -1.0, -2.0]) == 1
    assert select_closest(hyps, REF, scores=[-3.0, -1.0, -1.0]) == 1
    same = ["the cat sat on a mat"] * 3
    assert select_closest(same, REF, scores=[-2.0, -2.0, -1.0]) == 2
    assert select_closest(same, REF, scores=[-1.0, -1.0, -1.0]) == 0


@pytest.mark.parametrize(
    ("reference", "hyps", "expected"),
    [
        ("Die Katze saß auf der Matte .", ["Ein Hund lief weg .", "Die Katze saß auf Matte ."], 1),
        ("Кошка сидела на коврике .", ["Собака бежала .", "Кошка сидела на ковре ."], 1),
        ("猫 が マット の 上 に 座った", ["猫 が 座った", "犬 が 走った"], 0),
        ("", ["", "something"], 0),
    ],
)
def test_any_language(reference: str, hyps: list[str], expected: int) -> None:
    assert select_closest(hyps, reference) == expected


def test_errors() -> None:
    with pytest.raises(KdnmtError, match="empty"):
        select_closest([], REF)
    with pytest.raises(KdnmtError, match="2 teacher scores for 3 hypotheses"):
        select_closest(["a", "b", "c"], REF, scores=[0.0, 1.0])


@pytest.mark.slow
def test_select_closest_is_public_in_kdnmt_teacher_and_imported_lazily():
    import subprocess
    import sys

    code = ("import sys, kdnmt.teacher as t; assert 'sacrebleu' not in sys.modules; "
            "from kdnmt.teacher import select_closest; "
            "from kdnmt.teacher.select import select_closest as direct; "
            "assert select_closest is direct and 'sacrebleu' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
