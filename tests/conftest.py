"""Shared fixtures: tiny slices of the real demo corpus, a prepared run, a trained tiny model.

Everything runs on one torch thread with models of a few ten thousand parameters, so each
training takes seconds. Session-scoped fixtures are read-only for tests: a test that changes a
run copies it first (``copy_run``).
"""

from __future__ import annotations

import lzma
import os
import shutil
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("KDNMT_THREADS", "1")
os.environ.setdefault("COLUMNS", "200")

import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from kdnmt.cli.app import app  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "data" / "demo" / "de-en"

TINY_MODEL = {"enc_layers": 1, "dec_layers": 1, "hidden_size": 32, "ff_size": 64, "heads": 2}
# bleu_sentences: the learning curve (one point at the last checkpoint of these short runs)
# stays on, scored on a few valid sentences so that it costs a fraction of a second.
TINY_TRAINING = {"batch_size": 512, "valid_steps": 10, "save_steps": 10, "report_every": 5,
                 "learning_rate": 1.0, "warmup_steps": 20, "bleu_sentences": 10}


def run_cli(*args: object, input: str | bytes | None = None):  # noqa: A002
    """Invoke the kdnmt CLI in-process; returns Typer's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)


def write_slice(dest: Path, split: str, lines: int, langs: tuple[str, str] = ("de", "en"),
                start: int = 0) -> str:
    """Write ``lines`` pairs of a demo split as plain text; returns the prefix."""
    dest.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        with lzma.open(DEMO / f"{split}.{lang}.xz", "rt", encoding="utf-8") as handle:
            chosen = handle.read().split("\n")[start:start + lines]
        (dest / f"{split}.{lang}").write_text("\n".join(chosen) + "\n", encoding="utf-8")
    return str(dest / split)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Prefixes of tiny real de-en slices: 1,500 train, 80 valid, 60 test pairs."""
    root = tmp_path_factory.mktemp("corpus")
    return {"train": write_slice(root, "train", 1500), "valid": write_slice(root, "valid", 80),
            "test": write_slice(root, "test", 60)}


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump({"model": TINY_MODEL, "training": TINY_TRAINING}))
    return path


@pytest.fixture(scope="session")
def prepared_run(tmp_path_factory: pytest.TempPathFactory, corpus: dict[str, str]) -> Path:
    run = tmp_path_factory.mktemp("runs") / "prepared"
    result = run_cli("prepare", "--run", run, "--src", "de", "--tgt", "en",
                     "--train", corpus["train"], "--valid", corpus["valid"],
                     "--test", corpus["test"], "--vocab-size", "500")
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, prepared_run: Path,
                tiny_config: Path) -> Path:
    """A prepared run with a tiny 'teacher' trained for 40 steps."""
    run = tmp_path_factory.mktemp("runs") / "trained"
    shutil.copytree(prepared_run, run)
    result = run_cli("train", "--run", run, "--name", "teacher", "--preset", "tiny",
                     "--config", tiny_config, "--steps", "40")
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture
def copy_run(tmp_path: Path):
    """Copy a session run so a test may modify it."""
    def _copy(run: Path) -> Path:
        dest = tmp_path / run.name
        shutil.copytree(run, dest)
        return dest
    return _copy


def no_temp_files(root: Path) -> list[Path]:
    """Temporary files kdnmt left behind under ``root`` (should be none)."""
    return [p for p in Path(root).rglob("*") if p.name.startswith(".kdnmt-tmp")]
