"""SIGKILL during `prepare`, `train`, `generate` and `distill`, then the same command again.

Each case runs the command as a real process (``python -m kdnmt``), kills it with SIGKILL at a
point chosen by a marker on disk (a chunk, a checkpoint, a temporary checkpoint being written)
plus, for the random cases, a delay drawn from a seeded RNG (``helpers.SEED``), reruns the same
command (with ``--resume`` for train and distill, as the CLI requires) and compares with an
uninterrupted run:

- prepare and generate: every output byte-identical (manifests up to their time stamp);
- train and distill: every checkpoint the killed process published equals the uninterrupted
  run's checkpoint of that step; the rerun ends at the final step with ``model.json``; and its
  final parameters and optimizer state equal those of a clean resume from the same step (an
  uninterrupted run's checkpoint of that step, resumed). They do *not* equal the uninterrupted
  run's own final parameters: OpenNMT-py 3.5.1 restarts its data iterator at the top of the
  corpus and reseeds its RNGs when it resumes (see docs/reliability.md). A kill before the
  first checkpoint resumes from scratch and does give the uninterrupted run's parameters.

Every run of a module trains or decodes at one path (``work``), because file paths end up in
SentencePiece models and checkpoints; finished runs are moved aside. No temporary file may be
left anywhere after the rerun.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from kdnmt.fileio import TMP_PREFIX
from kdnmt.onmt_bridge.checkpoint import checkpoint_step, list_checkpoints, load_checkpoint
from tests.faults.helpers import SEED, assert_same_tree, kill_at, temp_files
from tests.helpers import TINY_MODEL, TINY_TRAINING, kdnmt, run, run_cli

pytestmark = pytest.mark.slow

STEPS = 40  # checkpoints at 10, 20, 30, 40 (save_steps 10)


def _draw(case: str, low: float, high: float) -> float:
    return random.Random(f"{SEED}-{case}").uniform(low, high)


def kill_and_check(cmd: list[str], reset: Callable[[], None], ready: Callable[[], bool],
                   delay: float, log: Path, landed: Callable[[], bool] = lambda: True) -> float:
    """Kill ``cmd`` at ``ready`` + ``delay``; if it finished first (a fast machine), start over
    with half the delay. ``landed`` says whether the kill hit the state the case is about.
    Returns the delay used."""
    for _ in range(6):
        reset()
        if kill_at(cmd, ready, delay, log) and landed():
            return delay
        delay /= 2
    raise AssertionError(f"could not kill {' '.join(cmd)} at its kill point (seed {SEED}); "
                         f"see {log}")


# --------------------------------------------------------------------------- prepare


@dataclass
class PrepareCase:
    marker: str  # path relative to the run that must exist before the kill
    random_delay: bool


PREPARE_CASES = {
    "validating": PrepareCase("data", False),
    "random-point": PrepareCase("data", True),
    "after-sentencepiece": PrepareCase("spm.model", False),
}


@pytest.mark.parametrize("case", list(PREPARE_CASES))
def test_prepare_killed_then_rerun_is_byte_identical(case: str, corpus: dict[str, str],
                                                     tmp_path: Path) -> None:
    spec = PREPARE_CASES[case]
    work = tmp_path / "run"
    args = ("prepare", "--run", work, "--src", "de", "--tgt", "en", "--train", corpus["train"],
            "--valid", corpus["valid"], "--test", corpus["test"], "--vocab-size", "500")
    assert run_cli(*args).exit_code == 0
    reference = tmp_path / "uninterrupted"
    work.rename(reference)

    def reset() -> None:
        shutil.rmtree(work, ignore_errors=True)

    delay = _draw(f"prepare-{case}", 0.0, 0.6) if spec.random_delay else 0.0
    used = kill_and_check(kdnmt(*args), reset, lambda: (work / spec.marker).exists(), delay,
                          tmp_path / "killed.log",
                          landed=lambda: not (work / "manifest.json").exists())
    assert not (work / "manifest.json").exists()
    print(f"prepare/{case}, seed {SEED}, delay {used:.3f}s: left "
          f"{sorted(str(p.relative_to(work)) for p in work.rglob('*') if p.is_file())}")
    rerun = run(kdnmt(*args))
    assert rerun.returncode == 0, f"delay {used:.3f}s: {rerun.stderr}"
    assert not temp_files(work), temp_files(work)
    assert_same_tree(work, reference)


# --------------------------------------------------------------------------- train, distill


@dataclass
class Trainer:
    """One module-wide setup for `train` or `distill`: the path every run trains at, the
    uninterrupted run, and clean resumes from its checkpoints (cached by step)."""

    base: Path
    start: Path  # the run directory every case starts from (prepared, or with a teacher)
    args: tuple[Any, ...]  # the command after `--run work`
    name: str
    resumed: dict[int, Path]

    @property
    def work(self) -> Path:
        return self.base / "work"

    @property
    def uninterrupted(self) -> Path:
        return self.base / "uninterrupted"

    def command(self) -> tuple[Any, ...]:
        return (self.args[0], "--run", self.work, *self.args[1:])

    def checkpoint(self, run: Path, step: int) -> Path:
        return run / "models" / self.name / f"model_step_{step}.pt"

    def clean_resume(self, step: int) -> Path:
        """The final checkpoint of the uninterrupted run's step-``step`` checkpoint resumed
        (in-process, at the same path), as if training had stopped cleanly there."""
        if step not in self.resumed:
            assert not self.work.exists()
            shutil.copytree(self.uninterrupted, self.work)
            model_dir = self.work / "models" / self.name
            (model_dir / "model.json").unlink()
            for ckpt in list_checkpoints(model_dir):
                if checkpoint_step(ckpt) > step:
                    ckpt.unlink()
            result = run_cli(*self.command(), "--resume")
            assert result.exit_code == 0, result.output
            done = self.base / f"resumed-from-{step}"
            self.work.rename(done)
            self.resumed[step] = self.checkpoint(done, STEPS)
        return self.resumed[step]


def _trainer(base: Path, start: Path, args: tuple[Any, ...], name: str) -> Trainer:
    trainer = Trainer(base, start, args, name, {})
    shutil.copytree(start, trainer.work)
    result = run_cli(*trainer.command())
    assert result.exit_code == 0, result.output
    trainer.work.rename(trainer.uninterrupted)
    return trainer


@pytest.fixture(scope="module")
def fault_config(tmp_path_factory) -> Path:
    """The tiny model, keeping every checkpoint (so each step can be compared)."""
    path = tmp_path_factory.mktemp("fault-config") / "tiny.yaml"
    path.write_text(yaml.safe_dump({"model": TINY_MODEL,
                                    "training": {**TINY_TRAINING, "keep_checkpoint": -1}}))
    return path


@pytest.fixture(scope="module")
def train_setup(prepared_run: Path, fault_config: Path, tmp_path_factory) -> Trainer:
    return _trainer(tmp_path_factory.mktemp("kill-train"), prepared_run,
                    ("train", "--name", "teacher", "--preset", "tiny", "--config", fault_config,
                     "--steps", STEPS), "teacher")


@pytest.fixture(scope="module")
def distill_setup(trained_run: Path, fault_config: Path, tmp_path_factory) -> Trainer:
    """Word-level KD from the soft-target store of the session's tiny teacher."""
    base = tmp_path_factory.mktemp("kill-distill")
    start = base / "start"
    shutil.copytree(trained_run, start)
    result = run_cli("generate", "--run", start, "--beam", "2", "--soft-targets", "4",
                     "--lines-per-chunk", "500")
    assert result.exit_code == 0, result.output
    return _trainer(base, start, ("distill", "--name", "student", "--method", "word",
                                  "--alpha", "0.5", "--temperature", "2",
                                  "--config", fault_config, "--steps", STEPS), "student")


def assert_same_state(got: dict[str, Any], want: dict[str, Any], what: str) -> None:
    """Same parameters, optimizer step and Adam moments, bit for bit."""
    for part in ("model", "generator"):
        assert got[part].keys() == want[part].keys()
        for key in got[part]:
            assert torch.equal(got[part][key], want[part][key]), f"{what}: {part}.{key} differs"
    assert got["optim"]["training_step"] == want["optim"]["training_step"], what
    state_a = got["optim"]["optimizer"]["state"]
    state_b = want["optim"]["optimizer"]["state"]
    assert state_a.keys() == state_b.keys()
    for index in state_a:
        for key, value in state_a[index].items():
            other = state_b[index][key]
            same = torch.equal(value, other) if torch.is_tensor(value) else value == other
            assert same, f"{what}: optimizer state {index}.{key} differs"


@dataclass
class TrainCase:
    ready: Callable[[Path], bool]  # on the model directory
    delay: tuple[float, float] | None  # random delay range after ready, or None
    while_saving: bool  # the kill must leave a half-written temporary checkpoint


def _saving(model_dir: Path, after: int) -> bool:
    """A checkpoint after step ``after`` is being written (its temporary file exists)."""
    if after and not (model_dir / f"model_step_{after}.pt").exists():
        return False
    try:
        return any(n.startswith(TMP_PREFIX + "ckpt") for n in
                   (e.name for e in model_dir.iterdir()))
    except FileNotFoundError:
        return False


TRAIN_CASES = {
    "train/writing-first-checkpoint": TrainCase(lambda d: _saving(d, 0), None, True),
    "train/writing-third-checkpoint": TrainCase(lambda d: _saving(d, 20), None, True),
    "train/random-point": TrainCase(lambda d: (d / "model_step_10.pt").exists(),
                                    (0.0, 1.2), False),
    "distill/writing-second-checkpoint": TrainCase(lambda d: _saving(d, 10), None, True),
    "distill/random-point": TrainCase(lambda d: (d / "model_step_10.pt").exists(),
                                      (0.0, 1.2), False),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_training_killed_then_resumed(case: str, request, tmp_path: Path) -> None:
    spec = TRAIN_CASES[case]
    trainer: Trainer = request.getfixturevalue(f"{case.split('/')[0]}_setup")
    work = trainer.work
    model_dir = work / "models" / trainer.name
    cmd = kdnmt(*trainer.command())

    def reset() -> None:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(trainer.start, work)

    def landed() -> bool:
        if (model_dir / "model.json").exists():
            return False
        return not spec.while_saving or bool(temp_files(model_dir))

    delay = _draw(case, *spec.delay) if spec.delay else 0.0
    try:
        used = kill_and_check(cmd, reset, lambda: spec.ready(model_dir), delay,
                              tmp_path / "killed.log", landed)
        where = f"{case}, seed {SEED}, delay {used:.3f}s"
        published = list_checkpoints(model_dir)
        killed_at = checkpoint_step(published[-1]) if published else 0
        print(f"{where}: last checkpoint step {killed_at}, temporary files "
              f"{[p.name for p in temp_files(model_dir)]}")  # for docs/reliability.md (-s)
        # what the killed process published is sound: each checkpoint equals the
        # uninterrupted run's of the same step
        for ckpt in published:
            assert_same_state(load_checkpoint(ckpt),
                              load_checkpoint(trainer.checkpoint(trainer.uninterrupted,
                                                                 checkpoint_step(ckpt))),
                              f"{where}: {ckpt.name} published by the killed run")
        rerun = run([*cmd, "--resume"])
        assert rerun.returncode == 0, f"{where}: {rerun.stderr}"
        assert not temp_files(work), (where, temp_files(work))
        info = json.loads((model_dir / "model.json").read_text())
        final = trainer.checkpoint(work, STEPS)
        assert info["step"] == STEPS and info["checkpoint"] == final.name, where
        assert [checkpoint_step(p) for p in list_checkpoints(model_dir)] == [10, 20, 30, 40]
        state = load_checkpoint(final)
        assert state["optim"]["training_step"] == STEPS + 1, where
        if killed_at == 0:  # nothing to resume from: a fresh start, the uninterrupted run
            reference = trainer.checkpoint(trainer.uninterrupted, STEPS)
        else:
            shutil.rmtree(work)  # the path is needed for the clean resume
            reference = trainer.clean_resume(killed_at)
        assert_same_state(state, load_checkpoint(reference),
                          f"{where}: resumed from step {killed_at}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- generate

def gen_args(k: int = 4) -> tuple[str, ...]:
    return ("--beam", "2", "--nbest", "2", "--select", "closest", "--soft-targets", str(k),
            "--lines-per-chunk", "100")


@dataclass
class GenerateSetup:
    start: Path  # the trained run, its teacher already converted to CTranslate2
    uninterrupted: Path
    chunks: int  # of 100 lines: also the number of soft-target shards

    @property
    def work(self) -> Path:
        return self.uninterrupted.parent / "work"


@pytest.fixture(scope="module")
def generate_setup(trained_run: Path, tmp_path_factory) -> GenerateSetup:
    """The teacher's CTranslate2 conversion is made first, so that every kill lands in
    generate's own work."""
    base = tmp_path_factory.mktemp("kill-generate")
    start = base / "start"
    shutil.copytree(trained_run, start)
    from kdnmt.models import ct2_model
    from kdnmt.rundir import RunDir

    ct2_model(RunDir(start), "teacher", "int8")
    work = base / "work"
    shutil.copytree(start, work)
    result = run_cli("generate", "--run", work, *gen_args())
    assert result.exit_code == 0, result.output
    work.rename(base / "uninterrupted")
    lines = len((start / "data" / "train.sp.de").read_text(encoding="utf-8").splitlines())
    return GenerateSetup(start, base / "uninterrupted", -(-lines // 100))


def _count(directory: Path, pattern: str) -> int:
    try:
        return sum(1 for _ in directory.glob(pattern))
    except OSError:
        return 0


def _generated(work: Path) -> Path:
    return work / "generated" / "teacher"


def _chunks(g: Path) -> int:
    return _count(g / "chunks", "*.jsonl")


def _shards(g: Path) -> int:
    return _count(g / "soft-references.shards", "0*")


#: kill points (marker on RUN/generated/teacher, random delay range) of successive attempts;
#: the rerun after the last one completes. n = the number of chunks.
GENERATE_CASES: dict[str, list[tuple[Callable[[Path, int], bool], tuple[float, float] | None]]] = {
    "decoding": [(lambda g, n: _chunks(g) >= 1, (0.0, 1.0))],
    "assembling": [(lambda g, n: _chunks(g) == n, None)],
    "soft-targets": [(lambda g, n: _shards(g) >= 1, (0.0, 0.5))],
    "twice": [(lambda g, n: _chunks(g) >= 3, (0.0, 0.5)),
              (lambda g, n: _shards(g) >= 2, (0.0, 0.3))],
}


def _started_from(setup: GenerateSetup) -> None:
    shutil.rmtree(setup.work, ignore_errors=True)
    shutil.copytree(setup.start, setup.work)


@pytest.mark.parametrize("case", list(GENERATE_CASES))
def test_generate_killed_then_rerun_is_byte_identical(case: str, generate_setup: GenerateSetup,
                                                      tmp_path: Path) -> None:
    setup = generate_setup
    work = setup.work
    cmd = kdnmt("generate", "--run", work, *gen_args())
    _started_from(setup)
    snapshot = tmp_path / "before-kill"
    try:
        for attempt, (ready, delay_range) in enumerate(GENERATE_CASES[case]):
            # each attempt starts from what the previous kill left
            shutil.rmtree(snapshot, ignore_errors=True)
            shutil.copytree(work, snapshot)

            def reset(snap: Path = snapshot) -> None:
                shutil.rmtree(work, ignore_errors=True)
                shutil.copytree(snap, work)

            delay = _draw(f"generate-{case}-{attempt}", *delay_range) if delay_range else 0.0
            used = kill_and_check(cmd, reset, lambda r=ready: r(_generated(work), setup.chunks),
                                  delay, tmp_path / "killed.log",
                                  landed=lambda: not (_generated(work) / "soft-references")
                                  .exists())
            print(f"generate/{case} kill {attempt + 1}, seed {SEED}, delay {used:.3f}s: "
                  f"{_chunks(_generated(work))} chunks, {_shards(_generated(work))} shards, "
                  f"temporary files {[p.name for p in temp_files(work)]}")
        rerun = run(cmd)
        assert rerun.returncode == 0, rerun.stderr
        assert not temp_files(work), temp_files(work)
        assert_same_tree(_generated(work), _generated(setup.uninterrupted))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_generate_rerun_with_another_k_discards_the_killed_runs_shards(
        generate_setup: GenerateSetup, tmp_path: Path) -> None:
    """Killed while computing top-2 soft targets, rerun asking for top-4: the shards of the
    killed run are neither mixed into nor mistaken for the top-4 store."""
    setup = generate_setup
    work = setup.work
    shards = _generated(work) / "soft-references.shards"
    try:
        kill_and_check(kdnmt("generate", "--run", work, *gen_args(k=2)),
                       lambda: _started_from(setup), lambda: _shards(_generated(work)) >= 2,
                       0.0, tmp_path / "killed.log",
                       landed=lambda: not (_generated(work) / "soft-references").exists())
        assert _shards(_generated(work)) >= 2
        rerun = run(kdnmt("generate", "--run", work, *gen_args(k=4)))
        assert rerun.returncode == 0, rerun.stderr
        assert not shards.exists() and not temp_files(work)
        assert_same_tree(_generated(work), _generated(setup.uninterrupted))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_generate_removes_shards_left_after_the_store_was_published(
        generate_setup: GenerateSetup) -> None:
    """A kill between publishing the store and deleting its shards leaves the shards."""
    setup = generate_setup
    work = setup.work
    shutil.copytree(setup.uninterrupted, work)
    try:
        shard = _generated(work) / "soft-references.shards" / "000000000"
        shutil.copytree(_generated(work) / "soft-references", shard)
        result = run_cli("generate", "--run", work, *gen_args())
        assert result.exit_code == 0, result.output
        assert not shard.parent.exists()
        assert_same_tree(_generated(work), _generated(setup.uninterrupted))
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------ resume = uninterrupted

@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_resumed_training_ends_as_an_uninterrupted_run(dropout: float, prepared_run: Path,
                                                       tmp_path: Path) -> None:
    """OpenNMT-py restarts its corpus iterator from the top and reseeds on resume; kdnmt skips
    the batches the checkpoint already consumed and restores the random state saved with it.
    Stopping at step 10 and resuming must then end bit-identical to never stopping, with and
    without dropout (training the first batches again, or other dropout masks, would not)."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "model": {**TINY_MODEL, "dropout": dropout, "attention_dropout": dropout},
        "training": {**TINY_TRAINING, "keep_checkpoint": -1}}))
    args = ("--name", "m", "--preset", "tiny", "--config", config, "--steps", 20)
    straight = tmp_path / "straight"
    shutil.copytree(prepared_run, straight)
    assert run_cli("train", "--run", straight, *args).exit_code == 0
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    model_dir = resumed / "models" / "m"
    (model_dir / "model.json").unlink()
    (model_dir / "model_step_20.pt").unlink()
    result = run_cli("train", "--run", resumed, *args, "--resume")
    assert result.exit_code == 0, result.output
    assert_same_state(load_checkpoint(model_dir / "model_step_20.pt"),
                      load_checkpoint(straight / "models" / "m" / "model_step_20.pt"),
                      f"resumed at step 10 (dropout {dropout})")
    # model.json says what each sitting ran on: one sitting straight, two when resumed
    straight_info = json.loads((straight / "models" / "m" / "model.json").read_text())
    resumed_info = json.loads((model_dir / "model.json").read_text())
    assert [x["start_step"] for x in straight_info["sittings"]] == [0]
    assert [x["start_step"] for x in resumed_info["sittings"]] == [0, 10]
    for sitting in resumed_info["sittings"]:
        assert sitting["cpu"] and sitting["torch"] and sitting["threads"] >= 1
        assert sitting["device"] == "cpu" and sitting["precision"] == "fp32"
