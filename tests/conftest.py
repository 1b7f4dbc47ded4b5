"""Shared fixtures: tiny slices of the real demo corpus, a prepared run, a trained tiny model.

Everything runs on one torch thread with models of a few ten thousand parameters, so each
training takes seconds. Session-scoped fixtures are read-only for tests: a test that changes a
run copies it first (``copy_run``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("KDNMT_THREADS", "1")
os.environ.setdefault("COLUMNS", "200")

import torch  # noqa: E402

torch.set_num_threads(1)

# The shared helpers (tests/helpers.py) import the CLI: only after the thread settings above.
from tests.helpers import TINY_MODEL, TINY_TRAINING, run_cli, write_slice  # noqa: E402


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs ``trained_run`` trains a model (once per session, seconds): mark it slow
    even where its module forgot, so that ``make test-fast`` (``-m "not slow"``) stays fast."""
    for item in items:
        if "trained_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def copy_run(tmp_path: Path):
    """Copy a session run so a test may modify it."""
    def _copy(run: Path) -> Path:
        dest = tmp_path / run.name
        shutil.copytree(run, dest)
        return dest
    return _copy
