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
                    "recipes/debian-de-en/finetune.yaml",
                    "recipes/debian-de-en/finetune-demo-student.yaml"]


@pytest.mark.parametrize("name", TRAINING_CONFIGS)
def test_recipe_config_loads(name: str) -> None:
    config = resolve_config("tiny", REPO / name)
    assert config.training.batch_size > 0


def test_every_recipe_config_is_listed() -> None:
    grids = {p.relative_to(REPO).as_posix() for p in REPO.glob("recipes/**/study-*.yaml")}
    found = {p.relative_to(REPO).as_posix() for p in REPO.glob("recipes/**/*.yaml")} - grids
    assert found == set(TRAINING_CONFIGS)


#: Each student schedule of the results recipe and the fine-tuning config that continues it.
FINETUNE_OF = [("recipes/demo/student.yaml", "recipes/debian-de-en/finetune.yaml"),
               ("recipes/demo/demo-student.yaml",
                "recipes/debian-de-en/finetune-demo-student.yaml")]


@pytest.mark.parametrize(("student_file", "finetune_file"), FINETUNE_OF)
def test_finetune_config_holds_the_rate_the_grid_reached(student_file: str,
                                                         finetune_file: str) -> None:
    """A finetune config continues a student of its schedule trained for the results recipe's
    RESULTS_STEPS updates, at the rate its noam schedule reached there, held constant, with the
    student's own dropout: recompute it from the three files, so changing one without the
    others fails here."""
    makefile = (REPO / "recipes/debian-de-en/Makefile").read_text(encoding="utf-8")
    steps = int(re.search(r"^RESULTS_STEPS \?= (\d+)$", makefile, re.M).group(1))
    student = resolve_config("tiny", REPO / student_file)
    finetune = resolve_config("tiny", REPO / finetune_file)
    reached = (student.training.learning_rate * student.model.hidden_size ** -0.5
               * steps ** -0.5)
    assert finetune.onmt == {"decay_method": "none"}
    assert finetune.training.warmup_steps == 0
    assert finetune.training.learning_rate == pytest.approx(reached, rel=0.01)
    assert finetune.training.batch_size == student.training.batch_size
    assert finetune.model.dropout == student.model.dropout
    assert finetune.model.attention_dropout == student.model.attention_dropout


def test_results_recipe_pairs_each_schedule_with_its_finetune_config() -> None:
    """The results target passes RESULTS_FINETUNE_CONFIG, which follows RESULTS_CONFIG: a grid
    rerun with the other schedule must not fine-tune at the first one's rate."""
    makefile = (REPO / "recipes/debian-de-en/Makefile").read_text(encoding="utf-8")
    assert "FINETUNE_CONFIG=$(RESULTS_FINETUNE_CONFIG)" in makefile
    for student_file, finetune_file in FINETUNE_OF:
        assert f"{student_file},{finetune_file}" in makefile
