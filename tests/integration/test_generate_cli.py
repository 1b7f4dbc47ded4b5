"""`kdnmt generate` through the CLI on a tiny teacher and tiny real data: outputs aligned and
checked, n-best and seq-inter, soft targets, resume after kill -9, shards and merge."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kdnmt.errors import KdnmtError
from kdnmt.rundir import RunDir
from kdnmt.teacher.generate import load_generated
from kdnmt.teacher.store import SoftTargetStore
from tests.helpers import TINY_MODEL, assert_clean_error, no_temp_files, run_cli

pytestmark = pytest.mark.slow  # every test here trains or decodes with a trained model

OUTPUTS = ("train.sp.de", "train.sp.en", "train.en", "nbest.jsonl", "seqinter.sp.en")
GEN_ARGS = ("--beam", "3", "--nbest", "2", "--select", "closest", "--lines-per-chunk", "300")


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def generated_run(trained_run: Path, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("gen") / "run"
    shutil.copytree(trained_run, run)
    result = run_cli("generate", "--run", run, *GEN_ARGS, "--soft-targets", "5")
    assert result.exit_code == 0, result.output
    return run


def test_pseudo_targets_are_aligned_and_recorded(generated_run: Path) -> None:
    gen = generated_run / "generated" / "teacher"
    manifest = json.loads((gen / "manifest.json").read_text())
    n = manifest["source"]["lines"]
    assert lines(gen / "train.sp.de") == lines(generated_run / "data" / "train.sp.de")
    for name in OUTPUTS[1:]:
        assert len(lines(gen / name)) == n, name
    nbest = [json.loads(line) for line in lines(gen / "nbest.jsonl")]
    assert all(len(r["h"]) == 2 and len(r["s"]) == 2 for r in nbest)
    assert [r["h"][0] for r in nbest] == lines(gen / "train.sp.en")
    # every seq-inter pick is one of that line's n-best
    for pick, record in zip(lines(gen / "seqinter.sp.en"), nbest, strict=True):
        assert pick in record["h"]
    assert manifest["settings"]["teacher_sha256"] == json.loads(
        (generated_run / "models" / "teacher" / "model.json").read_text())["checkpoint_sha256"]
    load_generated(RunDir(generated_run), "teacher")  # checksums hold
    assert not no_temp_files(generated_run)


def test_soft_target_store_matches_the_references(generated_run: Path) -> None:
    manifest = json.loads((generated_run / "manifest.json").read_text())
    store = SoftTargetStore.open(generated_run / "generated" / "teacher" / "soft-references",
                                 expect_vocab_sha256=manifest["vocab"]["sha256"])
    refs = lines(generated_run / "data" / "train.sp.en")
    assert store.num_lines == len(refs) and store.k == 5
    for i in (0, 7, len(refs) - 1):
        ids, logprobs = store[i]
        assert ids.shape == (len(refs[i].split()) + 1, 5)  # every piece, then </s>
        assert (logprobs[:, :-1] >= logprobs[:, 1:]).all()  # best first
        assert (logprobs <= 0).all()


def test_rerun_is_a_no_op_and_other_settings_are_refused(generated_run: Path, copy_run) -> None:
    run = copy_run(generated_run)
    before = {n: (run / "generated" / "teacher" / n).read_bytes() for n in OUTPUTS}
    assert run_cli("generate", "--run", run, *GEN_ARGS).exit_code == 0
    after = {n: (run / "generated" / "teacher" / n).read_bytes() for n in OUTPUTS}
    assert before == after
    result = run_cli("generate", "--run", run, "--beam", "4", "--lines-per-chunk", "300")
    assert_clean_error(result, "other settings", "beam 3 vs 4", "--force")


def test_edited_or_truncated_pseudo_targets_are_caught(generated_run: Path, copy_run) -> None:
    run = copy_run(generated_run)
    path = run / "generated" / "teacher" / "train.sp.en"
    data = lines(path)
    data[3] = data[3] + " ▁x"
    path.write_text("\n".join(data) + "\n")
    with pytest.raises(KdnmtError, match="changed or truncated"):
        load_generated(RunDir(run), "teacher")
    (run / "data" / "train.sp.de").write_text("other\n")
    with pytest.raises(KdnmtError, match="another source"):
        load_generated(RunDir(run), "teacher")


def test_filter_ce_drops_the_worst_scores(trained_run: Path, copy_run) -> None:
    run = copy_run(trained_run)
    result = run_cli("generate", "--run", run, "--beam", "2", "--filter-ce", "10",
                     "--lines-per-chunk", "500")
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "generated" / "teacher" / "manifest.json").read_text())
    assert manifest["filter_ce"]["dropped"] == manifest["lines"] // 10
    assert len(lines(run / "generated" / "teacher" / "train.sp.en")) == manifest["kept"]
    assert "dropped" in result.stdout


def test_shards_then_merge_equal_one_run(generated_run: Path, trained_run: Path, copy_run,
                                         tmp_path: Path) -> None:
    a = tmp_path / "a"
    b = tmp_path / "b"
    shutil.copytree(trained_run, a)
    shutil.copytree(trained_run, b)
    assert run_cli("generate", "--run", a, *GEN_ARGS, "--shard", "0/2").exit_code == 0
    assert run_cli("generate", "--run", b, *GEN_ARGS, "--shard", "1/2").exit_code == 0
    merge = run_cli("generate", "--run", a, *GEN_ARGS, "--merge")
    assert_clean_error(merge, "chunks are missing")
    for item in (b / "generated" / "teacher").iterdir():
        if item.name == "chunks":
            for chunk in item.iterdir():
                shutil.copy(chunk, a / "generated" / "teacher" / "chunks" / chunk.name)
        elif item.name.startswith("shard-"):
            shutil.copy(item, a / "generated" / "teacher" / item.name)
    merge = run_cli("generate", "--run", a, *GEN_ARGS, "--merge")
    assert merge.exit_code == 0, merge.output
    for name in OUTPUTS:
        assert (a / "generated" / "teacher" / name).read_bytes() == \
            (generated_run / "generated" / "teacher" / name).read_bytes(), name


@pytest.mark.parametrize("args, needle", [
    (("--teacher", "nobody"), "unknown model 'nobody'"),
    (("--select", "closest"), "--nbest K with K > 1"),
    (("--shard", "2/2"), "out of range"),
    (("--shard", "x"), "I/N"),
    (("--nbest", "6", "--beam", "5"), "--nbest"),
    (("--filter-ce", "100"), "--filter-ce"),
    (("--engine", "spark"), "--engine"),
])
def test_bad_arguments(trained_run: Path, copy_run, args, needle) -> None:
    run = copy_run(trained_run)
    assert_clean_error(run_cli("generate", "--run", run, *args), needle)


def test_teacher_from_another_vocabulary(trained_run: Path, copy_run) -> None:
    run = copy_run(trained_run)
    info_path = run / "models" / "teacher" / "model.json"
    info = json.loads(info_path.read_text())
    info["vocab_sha256"] = "0" * 64
    info_path.write_text(json.dumps(info))
    assert_clean_error(run_cli("generate", "--run", run), "another vocabulary")


def test_kill_dash_nine_then_resume_is_byte_identical(generated_run: Path, trained_run: Path,
                                                      tmp_path: Path) -> None:
    run = tmp_path / "killed"
    shutil.copytree(trained_run, run)
    env = {**os.environ, "KDNMT_THREADS": "1"}
    cmd = [sys.executable, "-m", "kdnmt", "generate", "--run", str(run), *GEN_ARGS,
           "--lines-per-chunk", "100"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    chunks = run / "generated" / "teacher" / "chunks"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if chunks.is_dir() and len(list(chunks.glob("*.jsonl"))) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(chunks.glob("*.jsonl")))
    assert not (run / "generated" / "teacher" / "manifest.json").exists()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert done_before >= 2
    # same settings but for the chunk size: compare with a fresh uninterrupted run of it
    fresh = tmp_path / "fresh"
    shutil.copytree(trained_run, fresh)
    result = run_cli("generate", "--run", fresh, *GEN_ARGS, "--lines-per-chunk", "100")
    assert result.exit_code == 0
    for name in OUTPUTS:
        assert (run / "generated" / "teacher" / name).read_bytes() == \
            (fresh / "generated" / "teacher" / name).read_bytes(), name
    assert not no_temp_files(run)


def test_pseudo_targets_respect_the_length_caps(generated_run: Path) -> None:
    from kdnmt.teacher.decode import length_cap

    assert length_cap(5, 150, 3.0) == 34 and length_cap(100, 150, 3.0) == 150
    assert length_cap(5, 150, 0.0) == 150
    gen = generated_run / "generated" / "teacher"
    for src, hyp in zip(lines(gen / "train.sp.de"), lines(gen / "train.sp.en"), strict=True):
        assert len(hyp.split()) <= length_cap(len(src.split()), 150, 3.0)


def test_no_decode_computes_only_the_reference_store(generated_run: Path, trained_run: Path,
                                                     copy_run, tmp_path: Path) -> None:
    """--no-decode: the same store as after decoding (byte for byte), nothing decoded, and
    word-level KD trains from it as its cache."""
    run = copy_run(trained_run)
    result = run_cli("generate", "--run", run, "--no-decode", "--soft-targets", "5",
                     "--lines-per-chunk", "300")
    assert result.exit_code == 0, result.output
    assert "nothing decoded" in result.output
    gen = run / "generated" / "teacher"
    assert sorted(p.name for p in gen.iterdir()) == ["soft-references"]  # no chunks, manifest
    made, reference = gen / "soft-references", generated_run / "generated" / "teacher" / "soft-references"
    assert sorted(p.name for p in made.iterdir()) == sorted(p.name for p in reference.iterdir())
    for path in reference.iterdir():
        assert (made / path.name).read_bytes() == path.read_bytes(), path.name
    config = tmp_path / "student.yaml"
    config.write_text(yaml.safe_dump({"model": TINY_MODEL, "training": {
        "batch_size": 512, "valid_steps": 5, "save_steps": 5, "report_every": 5}}))
    result = run_cli("distill", "--run", run, "--name", "w", "--method", "word",
                     "--config", config, "--steps", "5")
    assert result.exit_code == 0, result.output
    info = json.loads((run / "models" / "w" / "model.json").read_text())
    assert info["teacher_mode"] == "cache"
    # sequence-level methods still need decoding, and say so
    assert_clean_error(run_cli("distill", "--run", run, "--name", "s", "--method", "seq"),
                       "no generated data")
    assert not no_temp_files(run)


@pytest.mark.parametrize("args, needle", [
    ((), "pass --soft-targets K"),
    (("--soft-targets", "4", "--soft-along", "pseudo-targets"), "need the pseudo-targets"),
    (("--soft-targets", "4", "--nbest", "2", "--select", "closest"), "--select applies"),
    (("--soft-targets", "4", "--shard", "0/2"), "--shard applies"),
])
def test_no_decode_refuses_decoding_options(trained_run: Path, copy_run, args, needle) -> None:
    run = copy_run(trained_run)
    assert_clean_error(run_cli("generate", "--run", run, "--no-decode", *args), needle)
    assert not (run / "generated").exists()
