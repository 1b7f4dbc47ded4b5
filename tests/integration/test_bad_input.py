"""Bad input through the CLI: one clear error line naming the problem, exit code 1, no
traceback, nothing half-written."""

from __future__ import annotations

import json
import lzma
import shutil
from pathlib import Path

import pytest

from tests.helpers import assert_clean_error, no_temp_files, run_cli


def copy_corpus(corpus: dict[str, str], dest: Path) -> dict[str, str]:
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix in corpus.items():
        for lang in ("de", "en"):
            shutil.copy(f"{prefix}.{lang}", dest / f"{split}.{lang}")
        out[split] = str(dest / split)
    return out


def prepare(run: Path, corpus: dict[str, str], *extra: str):
    return run_cli("prepare", "--run", run, "--src", "de", "--tgt", "en", "--train",
                   corpus["train"], "--valid", corpus["valid"], "--vocab-size", "500", *extra)


def test_line_count_mismatch(corpus, tmp_path: Path) -> None:
    c = copy_corpus(corpus, tmp_path / "c")
    lines = Path(c["train"] + ".en").read_text().splitlines()
    Path(c["train"] + ".en").write_text("\n".join(lines[:-3]) + "\n")
    result = prepare(tmp_path / "run", c)
    assert_clean_error(result, "line counts differ", "1500", "1497", "train.de", "train.en")
    assert not (tmp_path / "run" / "manifest.json").exists()
    assert not no_temp_files(tmp_path)


def test_invalid_utf8_names_file_and_line(corpus, tmp_path: Path) -> None:
    c = copy_corpus(corpus, tmp_path / "c")
    path = Path(c["train"] + ".de")
    data = path.read_bytes().split(b"\n")
    data[16] = data[16] + b" \xff\xfe"
    path.write_bytes(b"\n".join(data))
    result = prepare(tmp_path / "run", c)
    assert_clean_error(result, "train.de:17", "invalid UTF-8")
    assert not no_temp_files(tmp_path)


def test_nul_byte(corpus, tmp_path: Path) -> None:
    c = copy_corpus(corpus, tmp_path / "c")
    path = Path(c["valid"] + ".en")
    path.write_bytes(path.read_bytes().replace(b"\n", b"\x00\n", 1))
    assert_clean_error(prepare(tmp_path / "run", c), "valid.en:1", "NUL")


@pytest.mark.parametrize("problem", ["missing", "empty", "directory"])
def test_missing_empty_or_directory(corpus, tmp_path: Path, problem: str) -> None:
    c = copy_corpus(corpus, tmp_path / "c")
    path = Path(c["valid"] + ".de")
    path.unlink()
    if problem == "empty":
        path.write_text("")
    elif problem == "directory":
        path.mkdir()
    needle = {"missing": "missing file", "empty": "is empty", "directory": "is a directory"}
    assert_clean_error(prepare(tmp_path / "run", c), needle[problem], "valid.de")


@pytest.mark.slow
def test_crlf_and_blank_and_long_lines_are_cleaned_not_errors(corpus, tmp_path: Path) -> None:
    c = copy_corpus(corpus, tmp_path / "c")
    for lang in ("de", "en"):
        path = Path(c["train"] + f".{lang}")
        lines = path.read_text().splitlines()
        lines[3] = ""  # a blank pair side
        lines[5] = "wort " * 400  # over --max-length
        path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    result = prepare(tmp_path / "run", c)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    train = manifest["splits"]["train"]
    assert train["dropped_empty"] == 1 and train["dropped_too_long"] >= 1
    assert "\r" not in (tmp_path / "run" / "data" / "train.de").read_text()


@pytest.mark.slow
def test_xz_input_is_read(corpus, tmp_path: Path) -> None:
    c = copy_corpus(corpus, tmp_path / "c")
    for lang in ("de", "en"):
        path = Path(c["train"] + f".{lang}")
        with lzma.open(str(path) + ".xz", "wb") as handle:
            handle.write(path.read_bytes())
        path.unlink()
    result = prepare(tmp_path / "run", c)
    assert result.exit_code == 0, result.output


def test_truncated_xz(corpus, tmp_path: Path) -> None:
    c = copy_corpus(corpus, tmp_path / "c")
    path = Path(c["train"] + ".en")
    packed = lzma.compress(path.read_bytes())
    Path(str(path) + ".xz").write_bytes(packed[: len(packed) // 2])
    path.unlink()
    assert_clean_error(prepare(tmp_path / "run", c), "train.en.xz", ".xz")


def test_prepare_refuses_existing_run_without_force(prepared_run: Path, corpus, copy_run) -> None:
    run = copy_run(prepared_run)
    assert_clean_error(prepare(run, corpus), "already prepared", "--force")


def test_vocab_too_big_for_corpus(corpus, tmp_path: Path) -> None:
    result = run_cli("prepare", "--run", tmp_path / "run", "--src", "de", "--tgt", "en",
                     "--train", corpus["valid"], "--valid", corpus["valid"],
                     "--vocab-size", "50000")
    assert_clean_error(result, "--vocab-size")


def test_unknown_preset(prepared_run: Path, copy_run) -> None:
    run = copy_run(prepared_run)
    result = run_cli("train", "--run", run, "--name", "x", "--preset", "huge")
    assert_clean_error(result, "'huge' is not one of 'tiny', 'small', 'base', 'big'")


def test_unknown_config_key_lists_valid_keys(prepared_run: Path, copy_run, tmp_path) -> None:
    run = copy_run(prepared_run)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model:\n  hiden_size: 64\n")
    result = run_cli("train", "--run", run, "--name", "x", "--preset", "tiny", "--config", cfg)
    assert_clean_error(result, "unknown key 'model.hiden_size'", "hidden_size")
    assert not (run / "models" / "x" / "model.json").exists()


@pytest.mark.parametrize("text, needle", [
    ("training:\n  steps: many\n", "training.steps: expected int"),
    ("training:\n  label_smoothing: 1.5\n", "training.label_smoothing must be in [0, 1)"),
    ("model:\n  hidden_size: 30\n  heads: 4\n", "divisible"),
    ("optimizer: {}\n", "unknown section 'optimizer'"),
    ("model: [1, 2\n", "not valid YAML"),
])
def test_bad_config_values(prepared_run: Path, copy_run, tmp_path, text, needle) -> None:
    run = copy_run(prepared_run)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    result = run_cli("train", "--run", run, "--name", "x", "--preset", "tiny", "--config", cfg)
    assert_clean_error(result, needle)


def test_unprepared_and_incompatible_run(prepared_run: Path, copy_run, tmp_path) -> None:
    assert_clean_error(run_cli("train", "--run", tmp_path / "nope", "--name", "x"),
                       "does not exist")
    run = copy_run(prepared_run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["run_format"] = 99
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert_clean_error(run_cli("train", "--run", run, "--name", "x", "--preset", "tiny"),
                       "incompatible", "run format 99")


@pytest.mark.slow
def test_truncated_checkpoint(trained_run: Path, copy_run, tmp_path) -> None:
    run = copy_run(trained_run)
    ckpt = run / "models" / "teacher" / "model_step_40.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 3])
    # model.json still points at it: eval, export and resume all refuse it clearly
    assert_clean_error(run_cli("export", "--run", run, "--model", "teacher"),
                       "corrupt or truncated", "model_step_40.pt")
    assert_clean_error(run_cli("eval", "--run", run, "--models", "teacher"),
                       "corrupt or truncated")
    assert_clean_error(run_cli("train", "--run", run, "--name", "teacher", "--resume"),
                       "corrupt or truncated")
    assert not (run / "export").exists() or not any((run / "export").iterdir())
    assert not no_temp_files(run)


@pytest.mark.slow
def test_unknown_model_and_bad_beam(trained_run: Path) -> None:
    assert_clean_error(run_cli("eval", "--run", trained_run, "--models", "student"),
                       "unknown model 'student'", "teacher")
    assert_clean_error(run_cli("eval", "--run", trained_run, "--beam", "0"), "--beam")
    assert_clean_error(run_cli("export", "--run", trained_run, "--model", "../x"),
                       "invalid model name")


@pytest.mark.slow
def test_translate_bad_model_dir_and_bad_stdin(trained_run: Path, copy_run, tmp_path) -> None:
    assert_clean_error(run_cli("translate", "--model", tmp_path), "spm.model")
    run = copy_run(trained_run)
    out = tmp_path / "exp"
    assert run_cli("export", "--run", run, "--model", "teacher", "--output", out).exit_code == 0
    result = run_cli("translate", "--model", out, input=b"gut\n\xff\n")
    assert_clean_error(result, "standard input line 2", "invalid UTF-8")
