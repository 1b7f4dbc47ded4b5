"""`kdnmt distill` through the CLI: every method trains a tiny student on tiny real data with
its loss decreasing, then evaluates and exports; cache and online teachers; resume; bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.helpers import TINY_MODEL, assert_clean_error, run_cli

pytestmark = pytest.mark.slow  # every test here trains or decodes with a trained model

STEPS = 40


@pytest.fixture(scope="module")
def kd_run(trained_run: Path, tmp_path_factory) -> Path:
    """The trained tiny teacher plus pseudo-targets, seq-inter picks and both stores."""
    run = tmp_path_factory.mktemp("kd") / "run"
    shutil.copytree(trained_run, run)
    base = ("generate", "--run", run, "--beam", "3", "--nbest", "2", "--select", "closest",
            "--max-length", "60")
    assert run_cli(*base, "--soft-targets", "8").exit_code == 0
    result = run_cli(*base, "--soft-targets", "8", "--soft-along", "pseudo-targets")
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture(scope="module")
def student_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "student.yaml"
    path.write_text(yaml.safe_dump({
        "model": TINY_MODEL,
        "training": {"batch_size": 512, "valid_steps": 20, "save_steps": 20, "report_every": 5,
                     "learning_rate": 2.0, "warmup_steps": 10}}))
    return path


def reported_losses(log: Path) -> list[float]:
    return [float(m) for m in re.findall(r"Step \d+/\d+; loss ([\d.]+);", log.read_text())]


@pytest.mark.parametrize("method, extra", [
    ("ce", ()),
    ("word", ("--alpha", "0.7", "--temperature", "2")),
    ("seq", ()),
    ("seqinter", ()),
    ("seq+word", ("--alpha", "0.5")),
    ("selfevo", ("--lam", "0.3", "--beta", "0.5", "--init-from", "teacher")),
    ("atkd", ("--alpha", "0.2", "--hard-ratio", "0.5")),
    ("hybrid", ("--alpha", "0.5")),
])
def test_method_trains_evaluates_exports(kd_run: Path, student_config: Path, method: str,
                                         extra: tuple[str, ...], tmp_path: Path) -> None:
    name = "s-" + method.replace("+", "_")
    result = run_cli("distill", "--run", kd_run, "--name", name, "--method", method,
                     "--config", student_config, "--steps", str(STEPS), *extra)
    assert result.exit_code == 0, result.output
    model_dir = kd_run / "models" / name
    info = json.loads((model_dir / "model.json").read_text())
    assert info["method"] == method and info["role"] == "student" and info["step"] == STEPS
    if method != "ce":
        teacher = json.loads((kd_run / "models" / "teacher" / "model.json").read_text())
        assert info["teacher_sha256"] == teacher["checkpoint_sha256"]
    if method in ("word", "seq+word", "hybrid"):
        assert info["teacher_mode"] == "cache"  # the store exists: it is used
    if method in ("selfevo", "atkd"):
        # they read the teacher's whole distribution: online unless a cache is asked for
        assert info["teacher_mode"] == "online" and "approximation" not in info
    losses = reported_losses(model_dir / "train.log")
    assert len(losses) == STEPS // 5
    assert sum(losses[-2:]) < sum(losses[:2]), losses  # the loss goes down
    if method == "selfevo":
        assert "hard_tokens" in (model_dir / "train.log").read_text()
    if method == "atkd":
        log = (model_dir / "train.log").read_text()
        assert re.search(r"KD: unc [\d.]+; tkd [\d.]+; dkd [\d.]+", log)
    assert run_cli("eval", "--run", kd_run, "--models", name, "--beam", "1",
                   "--limit", "20").exit_code == 0
    out = tmp_path / "export"
    assert run_cli("export", "--run", kd_run, "--model", name, "--output", out).exit_code == 0
    assert json.loads((out / "kdnmt.json").read_text())["role"] == "student"


def test_online_teacher_agrees_with_the_cache(kd_run: Path, student_config: Path) -> None:
    """The store holds exactly the top-k of the distributions the online teacher computes,
    and both modes train."""
    import torch

    from kdnmt.onmt_bridge.inference import forced_log_probs, load_frozen_model
    from kdnmt.teacher.store import SoftTargetStore

    frozen = load_frozen_model(kd_run / "models" / "teacher" / "model_step_40.pt")
    store = SoftTargetStore.open(kd_run / "generated" / "teacher" / "soft-references")
    src = (kd_run / "data" / "train.sp.de").read_text().splitlines()
    tgt = (kd_run / "data" / "train.sp.en").read_text().splitlines()
    for line in (0, 11):
        logp, mask = forced_log_probs(frozen, [frozen.ids(src[line].split())],
                                      [frozen.ids(tgt[line].split())])
        top_lp, top_ids = torch.topk(logp[0, : int(mask.sum())], store.k, dim=-1)
        ids, lps = store[line]
        assert (torch.from_numpy(ids.astype("int64"))[:, 0] == top_ids[:, 0]).all()
        assert torch.allclose(torch.from_numpy(lps.astype("float32")), top_lp, atol=2e-2)
    for method, mode in (("word", "cache"), ("word", "online"), ("hybrid", "online"),
                         ("selfevo", "cache"), ("atkd", "cache")):
        name = f"{method}-{mode}"
        init = ("--init-from", "teacher") if method == "selfevo" else ()
        result = run_cli("distill", "--run", kd_run, "--name", name, "--method", method,
                         "--config", student_config, "--steps", "10", "--teacher-mode", mode,
                         *init)
        assert result.exit_code == 0, result.output
        info = json.loads((kd_run / "models" / name / "model.json").read_text())
        assert info["teacher_mode"] == mode
        if method in ("selfevo", "atkd"):
            # a top-k cache for a full-teacher method: allowed, with one warning line that
            # names the approximation, recorded in model.json
            warnings = [line for line in result.stderr.splitlines() if "warning:" in line]
            assert len(warnings) == 1 and "UNC" in warnings[0] and "kept k" in warnings[0]
            assert "UNC" in info["approximation"]
        else:
            assert "warning:" not in result.stderr
        losses = reported_losses(kd_run / "models" / name / "train.log")
        assert len(losses) == 2 and losses[1] < losses[0], (name, losses)


def test_resume_a_distilled_student(kd_run: Path, student_config: Path) -> None:
    args = ("distill", "--run", kd_run, "--name", "resumed", "--method", "word",
            "--config", student_config)
    assert run_cli(*args, "--steps", "20").exit_code == 0
    result = run_cli(*args, "--steps", "30", "--resume")
    assert result.exit_code == 0, result.output
    info = json.loads((kd_run / "models" / "resumed" / "model.json").read_text())
    assert info["step"] == 30 and info["method"] == "word"


def test_divergence_stops_with_a_clear_message(kd_run: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "explode.yaml"
    cfg.write_text(yaml.safe_dump({"model": TINY_MODEL, "training": {
        "batch_size": 512, "learning_rate": 1.0e12, "warmup_steps": 1, "report_every": 1,
        "save_steps": 1000, "valid_steps": 1000}}))
    result = run_cli("distill", "--run", kd_run, "--name", "boom", "--method", "word",
                     "--config", cfg, "--steps", "30")
    assert_clean_error(result, "diverged")
    assert not (kd_run / "models" / "boom" / "model.json").exists()


@pytest.mark.parametrize("args, needle", [
    (("--method", "magic"), "'magic' is not one of 'ce', 'word'"),
    (("--method", "word", "--alpha", "1.5"), "alpha=1.5 is out of range"),
    (("--method", "word", "--temperature", "-1"), "temperature"),
    (("--method", "word", "--lam", "0.5"), "--lam does not apply"),
    (("--method", "seq", "--alpha", "0.5"), "--alpha does not apply to method 'seq'"),
    (("--method", "word", "--teacher", "nobody"), "unknown model 'nobody'"),
    (("--method", "word", "--teacher-mode", "magic"), "--teacher-mode"),
    (("--method", "word", "--device", "tpu"), "--device must be one of cpu, cuda"),
    (("--method", "word", "--init-from", "nobody"), "unknown model 'nobody'"),
    (("--method", "word", "--init-from", "bad"), "cannot start from itself"),
    (("--method", "word", "--init-from", "teacher", "--resume"), "--init-from starts a new"),
])
def test_bad_distill_arguments(kd_run: Path, args, needle) -> None:
    assert_clean_error(run_cli("distill", "--run", kd_run, "--name", "bad", *args), needle)


def test_cache_requested_but_missing_and_seqinter_without_picks(trained_run: Path,
                                                                copy_run) -> None:
    run = copy_run(trained_run)
    assert_clean_error(run_cli("distill", "--run", run, "--name", "x", "--method", "word",
                               "--teacher-mode", "cache"), "no soft-target store")
    assert_clean_error(run_cli("distill", "--run", run, "--name", "x", "--method", "seq"),
                       "no generated data")
    assert run_cli("generate", "--run", run, "--beam", "2", "--max-length", "60").exit_code == 0
    assert_clean_error(run_cli("distill", "--run", run, "--name", "x", "--method", "seqinter"),
                       "--select closest")


def test_edited_pseudo_targets_are_refused(kd_run: Path, copy_run) -> None:
    run = copy_run(kd_run)
    path = run / "generated" / "teacher" / "train.sp.en"
    path.write_text(path.read_text().replace("▁", "▁▁", 1))
    assert_clean_error(run_cli("distill", "--run", run, "--name", "x", "--method", "seq"),
                       "changed or truncated")


def test_store_from_another_teacher_is_refused(kd_run: Path, copy_run) -> None:
    run = copy_run(kd_run)
    info_path = run / "models" / "teacher" / "model.json"
    info = json.loads(info_path.read_text())
    info["checkpoint_sha256"] = "f" * 64
    info_path.write_text(json.dumps(info))
    assert_clean_error(run_cli("distill", "--run", run, "--name", "x", "--method", "word",
                               "--teacher-mode", "cache"), "another teacher")


def test_hybrid_gate_is_logged_checkpointed_resumed_and_stripped(kd_run: Path,
                                                                  student_config: Path) -> None:
    import torch

    from kdnmt.onmt_bridge.checkpoint import load_checkpoint

    args = ("distill", "--run", kd_run, "--name", "hy", "--method", "hybrid",
            "--config", student_config)
    # a large tau keeps this tiny run's gate interior (its c - a is several nats per token)
    assert run_cli(*args, "--steps", "20", "--gate-prior", "0.6", "--gate-tau", "4"
                   ).exit_code == 0
    model_dir = kd_run / "models" / "hy"
    rows = (model_dir / "kd_stats.csv").read_text().splitlines()
    assert rows[0] == ("step,gate_mean,gate_std,gate_p10,gate_p90,c_minus_a,gate_min,gate_max")
    assert len(rows) == 1 + 20 // 5
    for row in rows[1:]:
        _, mean, std, p10, p90, _, low, high = (float(v) for v in row.split(","))
        assert all(0.0 < v < 1.0 for v in (mean, p10, p90, low, high))
        assert p10 <= mean <= p90 or abs(p90 - p10) < 1e-3
        assert p10 <= p90 and std >= 0
    log = (model_dir / "train.log").read_text()
    assert "gate_mean" in log and "c_minus_a" in log
    info = json.loads((model_dir / "model.json").read_text())
    assert info["gate_objective"] == {"prior": 0.6, "tau": 4.0}
    ckpt = load_checkpoint(model_dir / "model_step_20.pt")
    gate_weight = ckpt["model"]["kd_gate.linear.weight"].clone()
    assert gate_weight.abs().sum() > 0  # trained jointly with the student (starts at zero)
    result = run_cli(*args, "--steps", "30", "--resume", "--gate-prior", "0.6", "--gate-tau",
                     "4")
    assert result.exit_code == 0, result.output
    info = json.loads((model_dir / "model.json").read_text())
    assert info["step"] == 30 and info["gate"] == "learned"
    # the parameter count and the export leave the gate out
    resumed = load_checkpoint(model_dir / "model_step_30.pt")
    assert not torch.equal(resumed["model"]["kd_gate.linear.weight"], torch.zeros_like(gate_weight))
    ce_info = json.loads((kd_run / "models" / "s-ce" / "model.json").read_text()) \
        if (kd_run / "models" / "s-ce" / "model.json").exists() else None
    if ce_info:
        assert info["parameters"] == ce_info["parameters"]


@pytest.mark.parametrize("gate", ["fixed:0.3", "schedule:0.2:0.8"])
def test_hybrid_gate_ablations(kd_run: Path, student_config: Path, gate: str) -> None:
    from kdnmt.onmt_bridge.checkpoint import load_checkpoint

    name = "hy-" + gate.split(":")[0]
    result = run_cli("distill", "--run", kd_run, "--name", name, "--method", "hybrid",
                     "--gate", gate, "--config", student_config, "--steps", "20")
    assert result.exit_code == 0, result.output
    rows = (kd_run / "models" / name / "kd_stats.csv").read_text().splitlines()[1:]
    means = [float(r.split(",")[1]) for r in rows]
    if gate.startswith("fixed"):
        assert means == pytest.approx([0.3] * 4)
    else:
        assert means == sorted(means) and means[0] < means[-1]
        assert 0.2 <= means[0] and means[-1] <= 0.8
    # no learned gate, so no gate parameters in the checkpoint
    ckpt = load_checkpoint(kd_run / "models" / name / "model_step_20.pt")
    assert not any(k.startswith("kd_gate") for k in ckpt["model"])


@pytest.mark.parametrize("args, needle", [
    (("--method", "hybrid", "--gate", "sometimes"), "--gate must be"),
    (("--method", "hybrid", "--gate", "fixed:1.5"), "[0, 1]"),
    (("--method", "word", "--gate", "fixed:0.5"), "--gate applies to method 'hybrid' only"),
    (("--method", "hybrid", "--gate-tau", "0"), "--gate-tau must be > 0, got 0"),
    (("--method", "hybrid", "--gate-tau", "-1"), "--gate-tau must be > 0, got -1"),
    (("--method", "hybrid", "--gate-prior", "0"), "--gate-prior must be in (0, 1), got 0"),
    (("--method", "hybrid", "--gate-prior", "1.5"), "--gate-prior must be in (0, 1), got 1.5"),
    (("--method", "hybrid", "--gate", "fixed:0.5", "--gate-prior", "0.5"),
     "do not apply to --gate fixed:0.5"),
    (("--method", "word", "--gate-tau", "2"), "apply to method 'hybrid' only"),
    (("--method", "selfevo", "--init-from", "teacher", "--threshold", "quantile:1.5"),
     "quantile:Q with 0 <= Q <= 1"),
    (("--method", "selfevo", "--init-from", "teacher", "--threshold", "quantile:abc"),
     "not quantile:Q with a number Q"),
    (("--method", "selfevo", "--init-from", "teacher", "--threshold", "often"),
     "neither a number of nats nor quantile:Q"),
])
def test_bad_gate(kd_run: Path, args, needle) -> None:
    assert_clean_error(run_cli("distill", "--run", kd_run, "--name", "bad", *args), needle)
    assert not (kd_run / "models" / "bad").exists()


def test_selfevo_fine_tunes_with_a_quantile_threshold(kd_run: Path, student_config: Path) -> None:
    """--threshold quantile:Q makes a share 1 - Q of each batch's tokens hard; the share and
    the threshold in nats are logged per report."""
    result = run_cli("distill", "--run", kd_run, "--name", "se-q", "--method", "selfevo",
                     "--init-from", "teacher", "--threshold", "quantile:0.8",
                     "--config", student_config, "--steps", "10")
    assert result.exit_code == 0, result.output
    model_dir = kd_run / "models" / "se-q"
    info = json.loads((model_dir / "model.json").read_text())
    assert info["hparams"]["threshold"] == "quantile:0.8" and info["init_from"]["name"] == "teacher"
    rows = (model_dir / "kd_stats.csv").read_text().splitlines()
    assert rows[0] == "step,hard_tokens,threshold" and len(rows) == 3
    for row in rows[1:]:
        _, hard, threshold = (float(v) for v in row.split(","))
        assert abs(hard - 0.2) < 0.02 and threshold > 0


def test_two_process_data_parallel(kd_run: Path, student_config: Path) -> None:
    """OpenNMT-py's data-parallel training on CPU: 2 processes, gloo, with the KD loss."""
    result = run_cli("distill", "--run", kd_run, "--name", "ddp", "--method", "word",
                     "--teacher-mode", "cache", "--config", student_config, "--steps", "10",
                     "--world-size", "2")
    assert result.exit_code == 0, result.output
    model_dir = kd_run / "models" / "ddp"
    info = json.loads((model_dir / "model.json").read_text())
    assert info["world_size"] == 2 and info["step"] == 10
    # both ranks trained, with the store lookups right (a wrong line would stop training),
    # and ended with identical parameters
    for log in ("train.log", "train.log.rank1"):
        text = (model_dir / log).read_text()
        assert "Data-parallel ranks in sync" in text
    assert "Step 10/10" in (model_dir / "train.log").read_text()
    assert_clean_error(run_cli("distill", "--run", kd_run, "--name", "ddp2", "--method", "ce",
                               "--world-size", "2", "--max-minutes", "1"),
                       "--max-minutes cannot be combined with --world-size")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is visible here")
def test_cuda_without_a_gpu_is_a_clear_error(kd_run: Path) -> None:
    """GPU ranks are exposed (--device cuda): asking for them where torch sees no GPU is one
    error line, before anything is built."""
    for command in ("distill", "train"):
        args = ["--method", "ce"] if command == "distill" else []
        result = run_cli(command, "--run", kd_run, "--name", "gpu", *args, "--device", "cuda",
                         "--world-size", "2")
        assert_clean_error(result, "--device cuda needs 2 GPU(s)", "torch sees 0")
        assert not (kd_run / "models" / "gpu").exists()


def _first_report(log: Path) -> tuple[float, float]:
    """(loss, accuracy) of the first progress report in a train.log."""
    match = re.search(r"Step \d+/\d+; loss ([\d.]+); acc ([\d.]+);", log.read_text())
    assert match, log.read_text()[-2000:]
    return float(match.group(1)), float(match.group(2))


def test_init_from_warm_starts_a_student(kd_run: Path, student_config: Path,
                                         tmp_path: Path) -> None:
    """--init-from begins a new student with another model's weights (a `ce` student continued
    by ce here; selfevo, a fine-tuning stage, requires it), recorded in model.json, kept on
    resume; another architecture is refused."""
    base = run_cli("distill", "--run", kd_run, "--name", "warm-base", "--method", "ce",
                   "--config", student_config, "--steps", "40")
    assert base.exit_code == 0, base.output
    base_info = json.loads((kd_run / "models" / "warm-base" / "model.json").read_text())
    # selfevo is a fine-tuning stage: a cold start is refused, with what to do
    result = run_cli("distill", "--run", kd_run, "--name", "cold", "--method", "selfevo",
                     "--config", student_config, "--steps", "10")
    assert_clean_error(result, "selfevo is a fine-tuning stage", "--init-from")
    assert not (kd_run / "models" / "cold").exists()
    for name, init in (("cold", ()), ("warm", ("--init-from", "warm-base"))):
        result = run_cli("distill", "--run", kd_run, "--name", name, "--method", "ce",
                         "--config", student_config, "--steps", "10", *init)
        assert result.exit_code == 0, result.output
    cold_loss, cold_acc = _first_report(kd_run / "models" / "cold" / "train.log")
    warm_loss, warm_acc = _first_report(kd_run / "models" / "warm" / "train.log")
    # the warm student starts where 40 updates of ce left off, the cold one at random
    assert warm_acc > 1.5 * cold_acc and warm_loss < cold_loss, (warm_loss, warm_acc,
                                                                 cold_loss, cold_acc)
    info = json.loads((kd_run / "models" / "warm" / "model.json").read_text())
    assert info["init_from"] == {"name": "warm-base", "step": 40,
                                 "checkpoint_sha256": base_info["checkpoint_sha256"]}
    assert "init_from" not in json.loads((kd_run / "models" / "cold" / "model.json").read_text())
    # a resumed warm student keeps its record
    resumed = run_cli("distill", "--run", kd_run, "--name", "warm", "--method", "ce",
                      "--config", student_config, "--steps", "20", "--resume")
    assert resumed.exit_code == 0, resumed.output
    info = json.loads((kd_run / "models" / "warm" / "model.json").read_text())
    assert info["step"] == 20 and info["init_from"]["name"] == "warm-base"
    # another shape: one clear line naming the tensor
    wide = tmp_path / "wide.yaml"
    wide.write_text(yaml.safe_dump({"model": {**TINY_MODEL, "ff_size": TINY_MODEL["ff_size"] * 2},
                                    "training": {"batch_size": 512}}))
    result = run_cli("distill", "--run", kd_run, "--name", "wide", "--method", "ce",
                     "--config", wide, "--steps", "5", "--init-from", "warm-base")
    assert_clean_error(result, "has another architecture", "model.ff_size is 64 there, 128 here")
    assert not (kd_run / "models" / "wide").exists()
    # ... and refused before --force deletes the model it would replace
    result = run_cli("distill", "--run", kd_run, "--name", "cold", "--method", "ce", "--force",
                     "--config", wide, "--steps", "5", "--init-from", "warm-base")
    assert_clean_error(result, "has another architecture")
    assert (kd_run / "models" / "cold" / "model.json").is_file()


def test_a_model_trained_on_gpu_ranks_loads_on_the_cpu(kd_run: Path, tmp_path: Path) -> None:
    """OpenNMT-py saves the training options with the model, GPU ranks included; kdnmt's
    PyTorch inference (soft targets, eval, advise, online teachers) must still build it on the
    CPU, not on CUDA."""
    import torch

    from kdnmt.onmt_bridge.checkpoint import load_checkpoint, save_checkpoint
    from kdnmt.onmt_bridge.inference import load_frozen_model

    checkpoint = load_checkpoint(kd_run / "models" / "teacher" / "model_step_40.pt")
    checkpoint["opt"].gpu_ranks, checkpoint["opt"].world_size = [0, 1], 2
    save_checkpoint(checkpoint, tmp_path / "gpu.pt")
    frozen = load_frozen_model(tmp_path / "gpu.pt")
    assert {p.device for p in frozen.model.parameters()} == {torch.device("cpu")}
