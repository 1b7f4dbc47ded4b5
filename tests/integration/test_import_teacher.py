"""Bring your own teacher: a tiny teacher trained in the test (with its own SentencePiece
model) is adopted by a new run; every incompatibility gives its one-line message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from kdnmt.corpus.spm import train_spm
from kdnmt.onmt_bridge.checkpoint import load_checkpoint
from tests.helpers import assert_clean_error, run_cli

pytestmark = pytest.mark.slow  # every test here trains or decodes with a trained model


@pytest.fixture(scope="module")
def teacher(trained_run: Path) -> dict[str, Path]:
    return {"ckpt": trained_run / "models" / "teacher" / "model_step_40.pt",
            "spm": trained_run / "spm.model", "vocab": trained_run / "vocab.txt"}


def prepare_with(run: Path, corpus: dict[str, str], *teacher_args: object):
    return run_cli("prepare", "--run", run, "--src", "de", "--tgt", "en",
                   "--train", corpus["train"], "--valid", corpus["valid"],
                   "--test", corpus["test"], *teacher_args)


def test_adopted_teacher_works_like_a_trained_one(teacher, corpus, tmp_path: Path,
                                                  tiny_config: Path) -> None:
    run = tmp_path / "byo"
    result = prepare_with(run, corpus, "--teacher-checkpoint", teacher["ckpt"],
                          "--teacher-spm", teacher["spm"], "--teacher-vocab", teacher["vocab"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "manifest.json").read_text())
    info = json.loads((run / "models" / "teacher" / "model.json").read_text())
    assert info["role"] == "teacher" and info["checkpoint"] == "teacher.pt"
    assert manifest["teacher"]["checkpoint_sha256"] == info["checkpoint_sha256"]
    assert (run / "spm.model").read_bytes() == teacher["spm"].read_bytes()
    # eval and export work on it exactly as on a teacher trained by `kdnmt train`
    assert run_cli("eval", "--run", run, "--models", "teacher", "--beam", "1").exit_code == 0
    assert run_cli("export", "--run", run, "--model", "teacher").exit_code == 0
    # generate and distill use it like a teacher trained in the run: a word-KD student
    # (online teacher) and a seq-KD student (its pseudo-targets)
    assert run_cli("generate", "--run", run, "--beam", "2", "--max-length", "60").exit_code == 0
    for method in ("word", "seq"):
        result = run_cli("distill", "--run", run, "--name", method, "--method", method,
                         "--config", tiny_config, "--steps", "10")
        assert result.exit_code == 0, result.output
        info = json.loads((run / "models" / method / "model.json").read_text())
        assert info["teacher_sha256"] == manifest["teacher"]["checkpoint_sha256"]
    # a student distilled in the run shares the teacher's vocabulary, id for id
    student = load_checkpoint(run / "models" / "word" / "model_step_10.pt")
    teacher_ckpt = load_checkpoint(run / "models" / "teacher" / "teacher.pt")
    assert student["vocab"]["src"] == teacher_ckpt["vocab"]["src"]
    assert student["vocab"]["tgt"] == teacher_ckpt["vocab"]["tgt"]


def test_spm_that_does_not_match_the_vocabulary(teacher, corpus, tmp_path: Path) -> None:
    other = tmp_path / "other.model"
    train_spm([Path(corpus["train"] + ".de")], other, vocab_size=300)
    result = prepare_with(tmp_path / "run", corpus, "--teacher-checkpoint", teacher["ckpt"],
                          "--teacher-spm", other)
    assert_clean_error(result, "does not match the SentencePiece model", "not pieces of it")
    assert not (tmp_path / "run" / "manifest.json").exists()


def _edited_checkpoint(teacher, tmp_path: Path, edit) -> Path:
    checkpoint = load_checkpoint(teacher["ckpt"])
    edit(checkpoint)
    path = tmp_path / "edited.pt"
    torch.save(checkpoint, path)
    return path


def test_layout_kdnmt_cannot_drive(teacher, corpus, tmp_path: Path) -> None:
    def rnn(c):
        c["opt"].encoder_type = "rnn"

    path = _edited_checkpoint(teacher, tmp_path, rnn)
    result = prepare_with(tmp_path / "run", corpus, "--teacher-checkpoint", path,
                          "--teacher-spm", teacher["spm"])
    assert_clean_error(result, "transformer encoder-decoder", "'rnn'")


def test_separate_vocabularies(teacher, corpus, tmp_path: Path) -> None:
    def split_vocab(c):
        c["vocab"]["tgt"] = list(c["vocab"]["tgt"])[:-1]

    path = _edited_checkpoint(teacher, tmp_path, split_vocab)
    result = prepare_with(tmp_path / "run", corpus, "--teacher-checkpoint", path,
                          "--teacher-spm", teacher["spm"])
    assert_clean_error(result, "vocabularies differ", "shared vocabulary")


def test_vocab_file_that_is_not_the_checkpoints(teacher, corpus, tmp_path: Path) -> None:
    lines = teacher["vocab"].read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    swapped = tmp_path / "vocab.txt"
    swapped.write_text("\n".join(lines) + "\n")
    result = prepare_with(tmp_path / "run", corpus, "--teacher-checkpoint", teacher["ckpt"],
                          "--teacher-spm", teacher["spm"], "--teacher-vocab", swapped)
    assert_clean_error(result, "is not the vocabulary stored in")


def test_flash_attention_checkpoint_is_accepted(teacher, corpus, tmp_path: Path) -> None:
    def flash(c):
        c["opt"].self_attn_type = "scaled-dot-flash"

    path = _edited_checkpoint(teacher, tmp_path, flash)
    run = tmp_path / "run"
    result = prepare_with(run, corpus, "--teacher-checkpoint", path, "--teacher-spm",
                          teacher["spm"])
    assert result.exit_code == 0, result.output
    assert "scaled-dot-flash" in result.stdout
    assert run_cli("eval", "--run", run, "--models", "teacher", "--beam", "1").exit_code == 0


def test_ct2_teacher_for_sequence_level_only(teacher, trained_run, corpus, tmp_path) -> None:
    from kdnmt.onmt_bridge.convert import convert_checkpoint

    ct2 = tmp_path / "ct2"
    convert_checkpoint(teacher["ckpt"], ct2, "int8")
    run = tmp_path / "run"
    result = prepare_with(run, corpus, "--teacher-ct2", ct2, "--teacher-spm", teacher["spm"])
    assert result.exit_code == 0, result.output
    assert "sequence-level methods only" in result.stdout
    assert json.loads((run / "models" / "teacher" / "model.json").read_text())["ct2_only"]
    assert run_cli("eval", "--run", run, "--models", "teacher", "--beam", "1").exit_code == 0
    # a CTranslate2 model with separate vocabularies cannot be a kdnmt teacher
    separate = tmp_path / "separate"
    shutil.copytree(ct2, separate)
    (separate / "shared_vocabulary.json").rename(separate / "source_vocabulary.json")
    result = prepare_with(tmp_path / "run2", corpus, "--teacher-ct2", separate,
                          "--teacher-spm", teacher["spm"])
    assert_clean_error(result, "shared source/target vocabulary")


def test_teacher_flags_need_their_partners(teacher, corpus, tmp_path: Path) -> None:
    assert_clean_error(prepare_with(tmp_path / "r", corpus, "--teacher-checkpoint",
                                    teacher["ckpt"]), "--teacher-spm is required")
    assert_clean_error(prepare_with(tmp_path / "r", corpus, "--teacher-spm", teacher["spm"]),
                       "exactly one of --teacher-checkpoint and --teacher-ct2")
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(teacher["ckpt"].read_bytes()[:1000])
    assert_clean_error(prepare_with(tmp_path / "r", corpus, "--teacher-checkpoint", truncated,
                                    "--teacher-spm", teacher["spm"]), "corrupt or truncated")


def test_released_float16_teacher_is_adopted_in_float32(trained_run, corpus, tmp_path) -> None:
    """recipes/demo/release_teacher.py ships a teacher in float16 without optimizer state;
    adopting it gives the run a float32 copy whose weights round-trip the release."""
    import subprocess
    import sys

    from tests.helpers import REPO

    released = tmp_path / "released"
    subprocess.run([sys.executable, str(REPO / "recipes" / "demo" / "release_teacher.py"),
                    "--run", str(trained_run), "--model", "teacher", "--out", str(released)],
                   check=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "KDNMT_THREADS": "1",
                                              "PATH": "/usr/bin:/bin"})
    shipped = load_checkpoint(released / "teacher.pt")
    assert "optim" not in shipped
    assert {t.dtype for t in shipped["model"].values() if t.is_floating_point()} == {torch.float16}
    run = tmp_path / "run"
    result = prepare_with(run, corpus, "--teacher-checkpoint", released / "teacher.pt",
                          "--teacher-spm", released / "spm.model",
                          "--teacher-vocab", released / "vocab.txt")
    assert result.exit_code == 0, result.output
    info = json.loads((run / "models" / "teacher" / "model.json").read_text())
    assert any("float16" in note for note in info["notes"])
    assert info["step"] is None  # no optimizer state: the release does not say
    # the release stores tied weights once and leaves out the sinusoidal position tables...
    assert not any(k.endswith(".pe.pe") for k in shipped["model"])
    tied = shipped["model"]["encoder.embeddings.make_embedding.emb_luts.0.weight"]
    assert shipped["generator"]["weight"].untyped_storage().data_ptr() == \
        tied.untyped_storage().data_ptr()
    # ...and adoption rebuilds them exactly as OpenNMT-py made them, in float32
    original = load_checkpoint(trained_run / "models" / "teacher" / "model_step_40.pt")
    adopted = load_checkpoint(run / "models" / "teacher" / "teacher.pt")
    assert adopted["model"].keys() == original["model"].keys()
    for key, tensor in adopted["model"].items():
        if not tensor.is_floating_point():
            continue
        assert tensor.dtype == torch.float32
        expected = original["model"][key] if key.endswith(".pe.pe") else shipped["model"][key].float()
        assert torch.equal(tensor, expected), key
    assert run_cli("eval", "--run", run, "--models", "teacher", "--beam", "1").exit_code == 0


def _recipe_script(name: str, *args: object) -> None:
    import subprocess
    import sys

    from tests.helpers import REPO

    subprocess.run([sys.executable, str(REPO / "recipes" / "demo" / name), *map(str, args)],
                   check=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "KDNMT_THREADS": "1",
                                              "PATH": "/usr/bin:/bin"})


def _metrics(model_dir: Path) -> dict[int, dict[str, str]]:
    with open(model_dir / "metrics.csv", encoding="utf-8") as handle:
        header = handle.readline().strip().split(",")
        rows = [dict(zip(header, line.strip().split(","), strict=True)) for line in handle]
    return {int(row["step"]): row for row in rows if row["split"] == "train"}


def test_resumable_release_trains_on_where_it_stopped(trained_run, corpus, tmp_path,
                                                      copy_run) -> None:
    """A teacher that needs several sittings: release_teacher.py --resumable keeps the step
    counters and the logs; continue_teacher.py puts it into another prepared run, and
    `kdnmt train --resume` goes on with the step numbering and learning-rate schedule of an
    uninterrupted run (only Adam's moments start afresh)."""
    released = tmp_path / "released"
    _recipe_script("release_teacher.py", "--run", trained_run, "--model", "teacher",
                   "--out", released, "--resumable")
    shipped = load_checkpoint(released / "teacher.pt")
    assert set(shipped["optim"]) == {"training_step", "decay_step"}  # no moments
    assert shipped["optim"]["training_step"] == 41
    assert (released / "training" / "config.yaml").is_file()
    run = tmp_path / "run"
    assert prepare_with(run, corpus, "--teacher-checkpoint", released / "teacher.pt",
                        "--teacher-spm", released / "spm.model",
                        "--teacher-vocab", released / "vocab.txt").exit_code == 0
    adopted = json.loads((run / "models" / "teacher" / "model.json").read_text())
    assert adopted["step"] == 40  # from the kept step counters: eval's step column
    _recipe_script("continue_teacher.py", "--release", released, "--run", run,
                   "--model", "next")
    result = run_cli("train", "--run", run, "--name", "next", "--resume", "--steps", "50")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "models" / "next" / "model.json").read_text())["step"] == 50

    uninterrupted = copy_run(trained_run)
    result = run_cli("train", "--run", uninterrupted, "--name", "teacher", "--resume",
                     "--steps", "50")
    assert result.exit_code == 0, result.output
    continued = _metrics(run / "models" / "next")
    expected = _metrics(uninterrupted / "models" / "teacher")
    assert sorted(continued) == sorted(expected)  # the earlier rows came with the release
    for step in (45, 50):
        assert continued[step]["lr"] == expected[step]["lr"], step
    for step in range(5, 41, 5):
        assert continued[step] == expected[step], step


def test_continue_teacher_refuses_what_it_cannot_resume(trained_run, corpus, tmp_path) -> None:
    """A plain release (no step counters) and a model that already has checkpoints are refused
    with one line and exit code 1, before anything is written into the run."""
    import subprocess
    import sys

    from tests.helpers import REPO

    def continue_into(release: Path, run: Path, model: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(REPO / "recipes" / "demo" / "continue_teacher.py"),
             "--release", str(release), "--run", str(run), "--model", model],
            cwd=REPO, capture_output=True, text=True,
            env={"PYTHONPATH": str(REPO), "KDNMT_THREADS": "1", "PATH": "/usr/bin:/bin"})

    plain = tmp_path / "plain"
    _recipe_script("release_teacher.py", "--run", trained_run, "--model", "teacher", "--out", plain)
    run = tmp_path / "run"
    assert prepare_with(run, corpus, "--teacher-checkpoint", plain / "teacher.pt",
                        "--teacher-spm", plain / "spm.model",
                        "--teacher-vocab", plain / "vocab.txt").exit_code == 0
    refused = continue_into(plain, run, "next")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "continue_teacher: the checkpoint has no optimizer step counters (a resumable release "
        "comes from a training checkpoint, release_teacher.py --resumable)"]
    assert not (run / "models" / "next").exists()

    resumable = tmp_path / "resumable"
    _recipe_script("release_teacher.py", "--run", trained_run, "--model", "teacher",
                   "--out", resumable, "--resumable")
    refused = continue_into(resumable, trained_run, "teacher")
    assert refused.returncode == 1
    assert "has checkpoints already" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
