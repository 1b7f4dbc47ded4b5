"""The trust model of docs/security.md: checkpoints and stores are data (nothing in them can
run code), and nothing read from a configuration or from a run's own records can point
outside the run directory."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

from kdnmt.config import ModelConfig, TrainingConfig
from tests.helpers import REPO, assert_one_error_line, run_cli


@pytest.fixture(scope="module")
def kd_run(trained_run: Path, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("security") / "kd"
    shutil.copytree(trained_run, run)
    result = run_cli("generate", "--run", run, "--beam", "2", "--soft-targets", "4",
                     "--lines-per-chunk", "500")
    assert result.exit_code == 0, result.output
    return run


def refused(result, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, result.output
    assert_one_error_line(result.stderr, *needles)


# --------------------------------------------------------------------------- paths


#: The configuration's str keys: each takes one of a closed list of names, never a path.
CHOICE_KEYS = {"training.precision"}


def test_configuration_holds_no_paths() -> None:
    """kdnmt's configuration has no key that takes a path (every one is a number, a flag or one
    of a closed list of names), so a --config file cannot point anywhere. A new str key must
    come with a check that it stays inside the run directory (and a test here)."""
    from kdnmt.errors import KdnmtError

    for section in (ModelConfig, TrainingConfig):
        for f in dataclasses.fields(section):
            key = f"{'model' if section is ModelConfig else 'training'}.{f.name}"
            if key in CHOICE_KEYS:
                config = section()
                setattr(config, f.name, "../../../tmp/elsewhere")
                with pytest.raises(KdnmtError, match=f"{key} must be one of"):
                    config.validate()
                continue
            assert f.type in ("int", "float", "bool"), f"{section.__name__}.{f.name}: {f.type}"


@pytest.mark.parametrize("key", ["training.save_model", "training.train_from", "training.data",
                                 "training.log_file", "model.src_vocab", "training.save_data"])
def test_opennmt_path_options_are_not_accepted_from_a_config(prepared_run: Path, copy_run,
                                                               tmp_path: Path, key: str) -> None:
    run = copy_run(prepared_run)
    section, name = key.split(".")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"{section}:\n  {name}: ../../../tmp/elsewhere\n")
    refused(run_cli("train", "--run", run, "--name", "x", "--preset", "tiny", "--config", cfg),
            f"unknown key '{key}'")
    assert not (run / "models").exists()


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ("train", "--name", "../escape"),
    ("train", "--name", ".hidden"),
    ("distill", "--name", "../../escape", "--method", "seq"),
    ("distill", "--name", "s", "--method", "seq", "--teacher", "../teacher"),
    ("generate", "--teacher", "../../models/teacher"),
    ("eval", "--models", "teacher,../teacher"),
    ("export", "--model", "a/b"),
])
def test_model_names_cannot_hold_paths(trained_run: Path, command: tuple[str, ...]) -> None:
    args = (command[0], "--run", trained_run, *command[1:])
    refused(run_cli(*args), "invalid model name")


def test_prepare_teacher_name_cannot_hold_a_path(corpus, tmp_path: Path) -> None:
    refused(run_cli("prepare", "--run", tmp_path / "run", "--src", "de", "--tgt", "en",
                    "--train", corpus["train"], "--valid", corpus["valid"],
                    "--teacher-checkpoint", tmp_path / "t.pt", "--teacher-spm", tmp_path / "s",
                    "--teacher-name", "../t"), "invalid model name")


@pytest.mark.slow
def test_an_edited_model_record_cannot_point_outside_the_run(trained_run: Path, copy_run,
                                                            tmp_path: Path) -> None:
    """model.json names its checkpoint; a '../' there (sha256 made to match) is refused."""
    run = copy_run(trained_run)
    outside = tmp_path / "outside.pt"
    shutil.copy(run / "models" / "teacher" / "model_step_40.pt", outside)
    info_path = run / "models" / "teacher" / "model.json"
    info = json.loads(info_path.read_text())
    info["checkpoint"] = os.path.relpath(outside, run / "models" / "teacher")
    assert info["checkpoint"].startswith("..")
    info_path.write_text(json.dumps(info))
    shutil.rmtree(run / "ct2", ignore_errors=True)
    for args in (("generate", "--run", run, "--beam", "1"),
                 ("export", "--run", run, "--model", "teacher", "--output", tmp_path / "out"),
                 ("distill", "--run", run, "--name", "s", "--method", "word", "--teacher-mode",
                  "online", "--steps", "1")):
        refused(run_cli(*args), "is not a plain file name", "model.json")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("output", ["pseudo", "source"])
def test_an_edited_generate_manifest_cannot_point_outside_the_run(kd_run: Path, copy_run,
                                                                 tmp_path: Path,
                                                                 output: str) -> None:
    run = copy_run(kd_run)
    outside = tmp_path / "outside.txt"
    outside.write_text("anything\n")
    path = run / "generated" / "teacher" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["outputs"][output] = {
        "path": os.path.relpath(outside, path.parent),
        "sha256": hashlib.sha256(outside.read_bytes()).hexdigest()}
    path.write_text(json.dumps(manifest))
    refused(run_cli("distill", "--run", run, "--name", "s", "--method", "seq", "--steps", "1"),
            "is not a plain file name", f"({output})")
    assert not (run / "models" / "s" / "model.json").exists()


# --------------------------------------------------------------------------- code in data


class _RunsCode:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_a_checkpoint_that_would_run_code_is_refused(trained_run: Path, copy_run,
                                                     tmp_path: Path) -> None:
    """Even with its sha256 recorded in model.json (someone who can write the run)."""
    run = copy_run(trained_run)
    marker = tmp_path / "code-ran"
    ckpt = run / "models" / "teacher" / "model_step_40.pt"
    torch.save({"model": {}, "vocab": {}, "opt": _RunsCode(marker)}, ckpt)
    info_path = run / "models" / "teacher" / "model.json"
    info = json.loads(info_path.read_text())
    info["checkpoint_sha256"] = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    info_path.write_text(json.dumps(info))
    shutil.rmtree(run / "ct2", ignore_errors=True)
    refused(run_cli("generate", "--run", run, "--beam", "1"), "model_step_40.pt",
            "cannot be loaded safely")
    refused(run_cli("train", "--run", run, "--name", "teacher", "--resume"),
            "cannot be loaded safely")
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("pad", [False, True])
def test_a_store_of_pickles_is_refused_and_never_unpickled(kd_run: Path, copy_run,
                                                           tmp_path: Path, pad: bool) -> None:
    """Stores are raw arrays memory-mapped by size: a pickle in their place is data of the
    wrong size (or, padded to size, of the wrong sha256), refused before training."""
    run = copy_run(kd_run)
    marker = tmp_path / "code-ran"
    store = run / "generated" / "teacher" / "soft-references"
    payload = pickle.dumps(_RunsCode(marker))
    for name in ("ids.bin", "logprobs.bin", "offsets.bin"):
        size = (store / name).stat().st_size
        (store / name).write_bytes(payload + b"\0" * (size - len(payload)) if pad else payload)
    needle = "changed after it was written" if pad else "is truncated"
    refused(run_cli("distill", "--run", run, "--name", "s", "--method", "word", "--steps", "1"),
            str(store), needle)
    (store / "meta.json").write_bytes(payload)
    refused(run_cli("distill", "--run", run, "--name", "s", "--method", "word", "--steps", "1"),
            "cannot read meta.json")
    assert not marker.exists()
    assert not (run / "models" / "s" / "model.json").exists()


def test_a_yaml_config_cannot_construct_objects(prepared_run: Path, copy_run,
                                                tmp_path: Path) -> None:
    run = copy_run(prepared_run)
    marker = tmp_path / "code-ran"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"training:\n  steps: !!python/object/apply:os.system ['touch {marker}']\n")
    refused(run_cli("train", "--run", run, "--name", "x", "--preset", "tiny", "--config", cfg),
            "not valid YAML")
    assert not marker.exists()


def test_no_unsafe_loader_in_the_code() -> None:
    """Every loader kdnmt itself calls is a safe one: no pickle, no numpy allow_pickle, no
    yaml.load / unsafe_load, torch.load only with weights_only=True."""
    unsafe = re.compile(r"\bpickle\.loads?\(|allow_pickle\s*=\s*True|\byaml\.(unsafe_)?load\(|"
                        r"\bmarshal\.loads?\(|\bshelve\.open\(")
    found = []
    for path in sorted((REPO / "kdnmt").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if unsafe.search(code) or ("torch.load(" in code and "weights_only=True" not in code
                                       and "``" not in line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, found
