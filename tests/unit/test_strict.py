"""kdnmt.strict: one set of rules for user-written values, and every problem of a file at once."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kdnmt.config import resolve_config
from kdnmt.errors import KdnmtError
from kdnmt.strict import Problems, as_number, coerce


@pytest.mark.parametrize("value, kind, expected", [
    (3, float, 3.0), (2.5, float, 2.5), (4, int, 4), ("x", str, "x"), (True, bool, True)])
def test_coerce_accepts(value, kind, expected) -> None:
    got = coerce(value, kind, "where")
    assert got == expected and type(got) is kind


@pytest.mark.parametrize("value, kind, needle", [
    (True, int, "expected an integer, got True"), (1.5, int, "expected int, got 1.5"),
    ("fast", float, "expected float, got 'fast'"), (math.inf, float, "expected a finite number"),
    (math.nan, float, "expected a finite number"), (1, str, "expected str, got 1")])
def test_coerce_refuses(value, kind, needle) -> None:
    with pytest.raises(KdnmtError, match=f"^where: {needle}"):
        coerce(value, kind, "where")


def test_as_number() -> None:
    assert as_number("a", "2.5") == 2.5 and as_number("a", 3) == 3.0
    for bad in (True, "high", None):
        with pytest.raises(ValueError, match="is not a number"):
            as_number("a", bad)


def test_problems_keep_one_message_and_list_several() -> None:
    one = Problems("f.yaml")
    with one.collect():
        raise KdnmtError("f.yaml: first")
    with pytest.raises(KdnmtError, match=r"^f.yaml: first$"):
        one.raise_if_any()
    Problems("f.yaml").raise_if_any()  # nothing collected: nothing raised


def test_a_config_file_names_every_problem_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  heads: two\n  layerz: 3\ntraining:\n  stepz: 3\n"
                    "  learning_rate: .inf\n")
    with pytest.raises(KdnmtError) as info:
        resolve_config("tiny", path)
    message = str(info.value)
    assert message.startswith(f"{path}: 4 problems: ") and "\n" not in message
    for needle in ("model.heads: expected int, got 'two'", "unknown key 'model.layerz'",
                   "unknown key 'training.stepz'",
                   "training.learning_rate: expected a finite number"):
        assert needle in message
