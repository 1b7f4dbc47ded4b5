"""`make help` is the first thing a user runs: it must list every target they can run and the
demo's variables, and every name declared ``.PHONY`` must be a real target (a ``.PHONY`` entry
naming a target that does not exist, like the old ``clean-demo``, hides a typo)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP = [ROOT / "Makefile", ROOT / "recipes" / "demo" / "demo.mk"]
RECIPES = sorted((ROOT / "recipes").glob("*/Makefile"))


def _phony(path: Path) -> set[str]:
    names: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(".PHONY:"):
            names.update(line.split(":", 1)[1].split())
    return names


def _targets(path: Path) -> set[str]:
    """Names on the left of a rule's first colon (``a b: c``, ``study-a study-b: study-%:``)."""
    names: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.%$()/ -]+?)\s*:(?!=)", line)
        if match and not line.startswith((".PHONY", "\t")):
            names.update(match.group(1).split())
    return names


def _help_text() -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True,
                            check=True)
    return result.stdout


@pytest.mark.parametrize("path", TOP + RECIPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_phony_name_is_a_target(path: Path) -> None:
    missing = _phony(path) - _targets(path)
    assert not missing, f"{path.name}: .PHONY names without a rule: {sorted(missing)}"


def test_help_lists_every_top_level_target() -> None:
    text = _help_text()
    listed = set(re.findall(r"^\s*make ([a-z][a-z-]*)\b", text, flags=re.M))
    phony = set().union(*(_phony(p) for p in TOP)) - {"help"}
    assert phony <= listed, f"not in `make help`: {sorted(phony - listed)}"


def test_help_lists_every_demo_variable() -> None:
    text = _help_text()
    demo_mk = (ROOT / "recipes" / "demo" / "demo.mk").read_text(encoding="utf-8")
    variables = set(re.findall(r"^(DEMO_[A-Z_]+) \?=", demo_mk, flags=re.M))
    assert variables, "demo.mk declares no DEMO_* variable: the parser is out of date"
    assert {v for v in variables if not re.search(rf"\b{v}=", text)} == set()


def test_help_lists_every_recipe_entry_point() -> None:
    text = _help_text()
    for path in RECIPES:
        rel = str(path.relative_to(ROOT))
        lines = [line for line in text.splitlines() if f"make -f {rel} " in line]
        assert lines, f"`make help` does not mention {rel}"
        words = set(re.findall(r"[a-z][a-z-]*", " ".join(lines)))
        missing = _phony(path) - words
        assert not missing, f"`make help` does not list {rel} targets {sorted(missing)}"
