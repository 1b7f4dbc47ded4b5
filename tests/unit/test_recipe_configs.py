"""Every training config the recipes pass to `kdnmt train/distill --config` loads: a typo in a
recipe's YAML (or an `onmt:` option OpenNMT-py no longer accepts) would otherwise surface hours
into a results grid, when make reaches the step that reads it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdnmt.config import resolve_config

REPO = Path(__file__).resolve().parents[2]
#: The recipes' --config files (the study grids are `kdnmt study --grid` files, tested there).
TRAINING_CONFIGS = ["recipes/demo/teacher.yaml", "recipes/demo/bundled-teacher.yaml",
                    "recipes/demo/student.yaml", "recipes/demo/demo-student.yaml",
                    "recipes/debian-de-en/student.yaml",
                    "recipes/debian-de-en/finetune.yaml"]


@pytest.mark.parametrize("name", TRAINING_CONFIGS)
def test_recipe_config_loads(name: str) -> None:
    config = resolve_config("tiny", REPO / name)
    assert config.training.batch_size > 0


def test_every_recipe_config_is_listed() -> None:
    grids = {p.relative_to(REPO).as_posix() for p in REPO.glob("recipes/**/study-*.yaml")}
    found = {p.relative_to(REPO).as_posix() for p in REPO.glob("recipes/**/*.yaml")} - grids
    assert found == set(TRAINING_CONFIGS)


def test_finetune_config_holds_the_rate_the_grid_reached() -> None:
    """finetune.yaml continues a student of recipes/demo/student.yaml trained for the results
    recipe's RESULTS_STEPS updates, at the rate its noam schedule reached there, held constant:
    recompute it from the three files, so changing one without the others fails here."""
    makefile = (REPO / "recipes/debian-de-en/Makefile").read_text(encoding="utf-8")
    steps = int(re.search(r"^RESULTS_STEPS \?= (\d+)$", makefile, re.M).group(1))
    student = resolve_config("tiny", REPO / "recipes/demo/student.yaml")
    finetune = resolve_config("tiny", REPO / "recipes/debian-de-en/finetune.yaml")
    reached = (student.training.learning_rate * student.model.hidden_size ** -0.5
               * steps ** -0.5)
    assert finetune.onmt == {"decay_method": "none"}
    assert finetune.training.warmup_steps == 0
    assert finetune.training.learning_rate == pytest.approx(reached, rel=0.01)
    assert finetune.training.batch_size == student.training.batch_size
