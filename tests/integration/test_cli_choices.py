"""Options that take one of a list are real choices, read from kdnmt's own lists: shell
completion offers exactly them, `--help` shows them, anything else is one `error:` line and exit
code 1 (in-process and as a real process). Renamed options keep working under their old,
hidden names, with a note."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdnmt.cli.app import app
from kdnmt.config import PRECISIONS, PRESETS, ROLES
from kdnmt.corpus.noise import NOISE_LEVELS
from kdnmt.distill import METHODS, TEACHER_MODES
from kdnmt.models import QUANTIZATIONS
from kdnmt.teacher.generate import ALONG_CHOICES, ENGINE_CHOICES, SELECT_CHOICES
from tests.helpers import assert_clean_error, run_cli

CHOICES = [
    ("distill", "--method", METHODS),
    ("distill", "--preset", PRESETS),
    ("distill", "--teacher-mode", TEACHER_MODES),
    ("train", "--preset", PRESETS),
    ("train", "--role", ROLES),
    ("train", "--precision", PRECISIONS),
    ("advise", "--student-preset", PRESETS),
    ("advise", "--quantization", QUANTIZATIONS),
    ("eval", "--quantization", QUANTIZATIONS),
    ("export", "--quantization", QUANTIZATIONS),
    ("generate", "--quantization", QUANTIZATIONS),
    ("generate", "--engine", ENGINE_CHOICES),
    ("generate", "--select", SELECT_CHOICES),
    ("generate", "--soft-along", ALONG_CHOICES),
    ("noise", "--level", NOISE_LEVELS),
]


def _complete(words: str) -> list[str]:
    """What bash completion offers after ``words`` (Typer's completion protocol)."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)  # the word completed
    env = {"_KDNMT_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    result = CliRunner().invoke(app, [], env=env, prog_name="kdnmt")
    assert result.exit_code == 0, result.output
    return result.stdout.split()


@pytest.mark.parametrize("command, option, names", CHOICES,
                         ids=[f"{c} {o}" for c, o, _ in CHOICES])
def test_completion_offers_exactly_the_choices(command: str, option: str, names) -> None:
    assert _complete(f"kdnmt {command} {option} ") == list(names)


def test_completion_completes_a_prefix() -> None:
    assert _complete("kdnmt distill --method se") == [m for m in METHODS if m.startswith("se")]


def test_help_shows_the_choices() -> None:
    text = run_cli("train", "--help").stdout
    assert f"<{'|'.join(PRESETS)}>" in text
    text = run_cli("generate", "--help").stdout
    assert f"<{'|'.join(ENGINE_CHOICES)}>" in text
    assert "Drop this % of pairs" in text and "%%" not in text


@pytest.mark.parametrize("args, needles", [
    (("distill", "--run", "r", "--name", "s", "--method", "magic"),
     ("--method", "'magic' is not one of", "'seq+word'")),
    (("train", "--run", "r", "--preset", "huge"), ("--preset", "'huge' is not one of 'tiny'")),
    (("export", "--run", "r", "--model", "m", "--quantization", "int4"),
     ("--quantization", "'int4' is not one of", "'int8_float32'")),
    (("generate", "--run", "r", "--engine", "spark"), ("--engine", "'local', 'ray'")),
])
def test_a_wrong_choice_is_one_error_line(args: tuple[str, ...], needles: tuple[str, ...],
                                          tmp_path: Path) -> None:
    result = run_cli(*args)
    assert_clean_error(result, *needles)
    assert "Value error" not in result.stderr
    assert not Path("r").exists()


@pytest.mark.slow
def test_a_wrong_choice_in_a_real_process() -> None:
    """The same line and exit code from the installed entry point as from the test runner."""
    from tests.helpers import assert_one_error_line, kdnmt, run

    result = run(kdnmt("distill", "--run", "r", "--name", "s", "--method", "magic"), timeout=60)
    assert result.returncode == 1, result.stderr
    line = assert_one_error_line(result.stderr, "distill: Invalid value for '--method'",
                                 "'magic' is not one of")
    assert line.endswith("distill --help)") and "Value error" not in line


@pytest.mark.slow
def test_old_option_names_are_hidden_aliases(corpus: dict[str, str], tmp_path: Path) -> None:
    prepare = ("prepare", "--src", "de", "--tgt", "en", "--train", corpus["train"],
               "--valid", corpus["valid"], "--test", corpus["test"], "--vocab-size", "500")
    result = run_cli(*prepare, "--run", tmp_path / "old", "--max-tokens", "20")
    assert result.exit_code == 0, result.output
    assert "--max-tokens is now --max-length" in result.stderr
    old = json.loads((tmp_path / "old" / "manifest.json").read_text())
    result = run_cli(*prepare, "--run", tmp_path / "new", "--max-length", "20")
    assert result.exit_code == 0 and not result.stderr.strip(), result.output
    new = json.loads((tmp_path / "new" / "manifest.json").read_text())
    assert old["settings"]["max_tokens"] == new["settings"]["max_tokens"] == 20
    assert old["splits"]["train"]["kept"] == new["splits"]["train"]["kept"]
    assert new["splits"]["train"]["dropped_too_long"] > 0  # 20 pieces is a real filter here

    assert_clean_error(run_cli(*prepare, "--run", tmp_path / "both", "--max-tokens", "20",
                               "--max-length", "30"), "--max-tokens is the old name of "
                                                      "--max-length")
    assert not (tmp_path / "both").exists()
    help_text = run_cli("prepare", "--help").stdout
    assert "--max-length" in help_text and "--max-tokens" not in help_text
    assert "--limit" in run_cli("eval", "--help").stdout
    assert "--max-sentences" not in run_cli("eval", "--help").stdout


@pytest.mark.slow
def test_eval_limit_and_its_old_name(trained_run: Path, copy_run) -> None:
    run = copy_run(trained_run)
    base = ("eval", "--run", run, "--models", "teacher", "--beam", "1", "--no-teacher-forced")
    result = run_cli(*base, "--max-sentences", "7")
    assert result.exit_code == 0, result.output
    assert "--max-sentences is now --limit" in result.stderr
    result = run_cli(*base, "--limit", "9")
    assert result.exit_code == 0, result.output
    from kdnmt.eval_report import load_rows

    assert sorted(r["sentences"] for r in load_rows(run / "reports" / "eval.json")) == [7, 9]
