"""Bad input to every command: one clear error line naming the problem and where, exit code 1,
no traceback, nothing half-written.

This extends tests/integration/test_bad_input.py (whose cases are not repeated here) to the
other commands and to the inputs it does not cover: NUL bytes, CRLF and 100k-character lines
outside `prepare`, unreadable files, directories where files are expected, wrong config types,
out-of-range hyper-parameters, another vocabulary, damaged checkpoints, stores, pseudo-targets
and records, and a full disk (a file size limit, and a real full tmpfs where one can be
mounted). Each case is one row of docs/reliability.md.

In-process cases use Typer's CliRunner, which keeps stderr apart from stdout (`result.stderr`);
the disk-full cases run a real process and read its real stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kdnmt.fileio import TMP_PREFIX
from tests.faults.helpers import temp_files
from tests.helpers import ENV, assert_one_error_line, kdnmt, run_cli

pytestmark = pytest.mark.slow  # every test here trains or decodes with a trained model

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def kd_run(trained_run: Path, tmp_path_factory) -> Path:
    """The session's tiny teacher with pseudo-targets, seq-inter picks and a top-4 store."""
    run = tmp_path_factory.mktemp("matrix") / "kd"
    shutil.copytree(trained_run, run)
    result = run_cli("generate", "--run", run, "--beam", "2", "--nbest", "2", "--select",
                     "closest", "--soft-targets", "4", "--lines-per-chunk", "500")
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture(scope="module")
def exported(trained_run: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("matrix-export") / "teacher-int8"
    run = tmp_path_factory.mktemp("matrix-export-run") / "run"
    shutil.copytree(trained_run, run)
    result = run_cli("export", "--run", run, "--model", "teacher", "--output", out)
    assert result.exit_code == 0, result.output
    return out


@dataclass
class Ctx:
    """What a case may start from; every run or file it changes is a fresh copy."""

    tmp: Path
    corpus_src: dict[str, str]
    prepared_src: Path
    trained_src: Path
    kd_src: Path
    exported_src: Path
    tiny_config: Path

    def corpus(self) -> dict[str, str]:
        dest = self.tmp / "corpus"
        if not dest.exists():
            dest.mkdir()
            for prefix in self.corpus_src.values():
                for lang in ("de", "en"):
                    shutil.copy(f"{prefix}.{lang}", dest)
        return {split: str(dest / split) for split in self.corpus_src}

    def _copy(self, src: Path, name: str) -> Path:
        dest = self.tmp / name
        shutil.copytree(src, dest)
        return dest

    def prepared(self) -> Path:
        return self._copy(self.prepared_src, "prepared")

    def trained(self) -> Path:
        run = self._copy(self.trained_src, "trained")
        shutil.rmtree(run / "ct2", ignore_errors=True)  # no cached conversion
        return run

    def kd(self) -> Path:
        return self._copy(self.kd_src, "kd")

    def exported(self) -> Path:
        return self._copy(self.exported_src, "exported")

    def file(self, name: str, data: str | bytes) -> Path:
        path = self.tmp / name
        if isinstance(data, str):
            data = data.encode()
        path.write_bytes(data)
        return path


@dataclass
class Call:
    """A command line, what its one error line must say, and what must not be there after."""

    args: tuple[object, ...]
    needles: tuple[str, ...]
    absent: tuple[Path, ...] = ()
    unchanged: tuple[Path, ...] = ()  # files that must keep their bytes
    input: str | bytes | None = None
    clean: tuple[Path, ...] = ()  # directories that must hold no temporary file


@pytest.fixture
def ctx(tmp_path: Path, corpus, prepared_run, trained_run, kd_run, exported,
        tiny_config) -> Ctx:
    return Ctx(tmp_path, corpus, prepared_run, trained_run, kd_run, exported, tiny_config)


CASES: dict[str, Callable[[Ctx], Call]] = {}


def case(name: str) -> Callable[[Callable[[Ctx], Call]], Callable[[Ctx], Call]]:
    def register(fn: Callable[[Ctx], Call]) -> Callable[[Ctx], Call]:
        assert name not in CASES
        CASES[name] = fn
        return fn
    return register


def edit_lines(path: Path, edit: Callable[[list[bytes]], list[bytes]]) -> None:
    path.write_bytes(b"\n".join(edit(path.read_bytes().split(b"\n"))))


def flip_bytes(path: Path, count: int = 64) -> None:
    """Change bytes in the middle of a file, keeping its size (an edit, not a truncation)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, min(middle + count, len(data))):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float = 0.5) -> None:
    os.truncate(path, int(path.stat().st_size * keep))


def prepare_args(run: Path, c: dict[str, str], *extra: object) -> tuple[object, ...]:
    return ("prepare", "--run", run, "--src", "de", "--tgt", "en", "--train", c["train"],
            "--valid", c["valid"], "--test", c["test"], "--vocab-size", "500", *extra)


# --------------------------------------------------------------------------- prepare


@case("prepare/NUL byte in the test split")
def _(ctx: Ctx) -> Call:
    c = ctx.corpus()
    edit_lines(Path(c["test"] + ".en"), lambda ls: [ls[0], ls[1] + b"\x00", *ls[2:]])
    run = ctx.tmp / "run"
    return Call(prepare_args(run, c), ("test.en:2", "NUL byte"), (run / "manifest.json",),
                clean=(ctx.tmp,))


@case("prepare/line counts differ in the test split")
def _(ctx: Ctx) -> Call:
    c = ctx.corpus()
    edit_lines(Path(c["test"] + ".de"), lambda ls: ls[:-3] + [b""])
    run = ctx.tmp / "run"
    return Call(prepare_args(run, c), ("line counts differ", "test.de", "test.en"),
                (run / "manifest.json",), clean=(ctx.tmp,))


@case("prepare/--run is a file")
def _(ctx: Ctx) -> Call:
    run = ctx.file("run", "not a directory\n")
    return Call(prepare_args(run, ctx.corpus()), ("exists and is not a directory",))


@case("prepare/--max-length 0")
def _(ctx: Ctx) -> Call:
    run = ctx.tmp / "run"
    return Call(prepare_args(run, ctx.corpus(), "--max-length", "0"), ("--max-length",),
                (run,))


@case("prepare/--vocab-size 5")
def _(ctx: Ctx) -> Call:
    run = ctx.tmp / "run"
    args = list(prepare_args(run, ctx.corpus()))
    args[args.index("--vocab-size") + 1] = "5"
    return Call(tuple(args), ("--vocab-size", "at least 16"),
                (run / "manifest.json", run / "spm.model"), clean=(ctx.tmp,))


@case("prepare/--character-coverage 2")
def _(ctx: Ctx) -> Call:
    run = ctx.tmp / "run"
    # the message holds "[0.9, 1]", which must print as text, not be read as Rich markup
    return Call(prepare_args(run, ctx.corpus(), "--character-coverage", "2"),
                ("--character-coverage must be in [0.9, 1], got 2",),
                (run / "manifest.json", run / "spm.model"), clean=(ctx.tmp,))


@case("prepare/language code with a slash")
def _(ctx: Ctx) -> Call:
    c = ctx.corpus()
    run = ctx.tmp / "run"
    args = list(prepare_args(run, c))
    args[args.index("--src") + 1] = "../de"
    return Call(tuple(args), ("--src '../de' is not a language code",), (run,))


# --------------------------------------------------------------------------- train


def train_args(run: Path, *extra: object, steps: int = 2) -> tuple[object, ...]:
    return ("train", "--run", run, "--name", "x", "--preset", "tiny", "--steps", steps, *extra)


def _config_case(name: str, text: str | bytes, *needles: str) -> None:
    @case(f"train/config: {name}")
    def _(ctx: Ctx) -> Call:
        run = ctx.prepared()
        cfg = ctx.file("bad.yaml", text)
        return Call(train_args(run, "--config", cfg), (str(cfg), *needles),
                    (run / "models" / "x" / "model.json",))


_config_case("not a mapping", "- 1\n- 2\n", "the configuration must be a mapping")
_config_case("section not a mapping", "model: 5\n", "section 'model' must be a mapping")
_config_case("bool for an int", "training:\n  steps: true\n", "training.steps",
             "expected an integer")
_config_case("float for an int", "training:\n  steps: 1.5\n", "training.steps", "expected int")
_config_case("string for a float", "training:\n  learning_rate: fast\n",
             "training.learning_rate", "expected float")
_config_case("infinite learning rate", "training:\n  learning_rate: .inf\n",
             "training.learning_rate", "expected a finite number")
_config_case("NaN dropout", "model:\n  dropout: .nan\n", "model.dropout",
             "expected a finite number")
_config_case("invalid UTF-8", b"training:\n  steps: \xff\n", "not valid YAML")
_config_case("NUL byte", b"training:\n  steps: 2\x00\n", "not valid YAML")
_config_case("OpenNMT-py option", "training:\n  train_from: ../../x.pt\n",
             "unknown key 'training.train_from'")


@case("train/config: negative bleu_every")
def _(ctx: Ctx) -> Call:
    run = ctx.prepared()
    cfg = ctx.file("bad.yaml", "training:\n  bleu_every: -5\n")
    return Call(train_args(run, "--config", cfg), ("training.bleu_every must be >= 0",),
                (run / "models",))


@case("train/config: a directory")
def _(ctx: Ctx) -> Call:
    run = ctx.prepared()
    return Call(train_args(run, "--config", ctx.tmp), (str(ctx.tmp), "is a directory"))


@case("train/config: missing")
def _(ctx: Ctx) -> Call:
    run = ctx.prepared()
    missing = ctx.tmp / "nope.yaml"
    return Call(train_args(run, "--config", missing), (str(missing), "does not exist"),
                (run / "models",))


@case("train/--steps 0")
def _(ctx: Ctx) -> Call:
    run = ctx.prepared()
    return Call(("train", "--run", run, "--name", "x", "--preset", "tiny", "--steps", "0"),
                ("training.steps must be >= 1, got 0",), (run / "models",))


@case("train/--max-minutes -1")
def _(ctx: Ctx) -> Call:
    run = ctx.prepared()
    return Call(train_args(run, "--max-minutes", "-1"), ("training.max_minutes must be >= 0",),
                (run / "models",))


@case("train/--world-size 0")
def _(ctx: Ctx) -> Call:
    run = ctx.prepared()
    return Call(train_args(run, "--world-size", "0"), ("--world-size must be >= 1",),
                (run / "models",))


@case("train/--device tpu")
def _(ctx: Ctx) -> Call:
    run = ctx.prepared()
    return Call(train_args(run, "--device", "tpu"), ("--device must be one of cpu, cuda",),
                (run / "models",))


@case("train/--device cuda with no GPU")
def _(ctx: Ctx) -> Call:
    run = ctx.prepared()
    if __import__("torch").cuda.is_available():
        pytest.skip("a GPU is visible here")
    return Call(train_args(run, "--device", "cuda"), ("--device cuda needs 1 GPU(s)",),
                (run / "models",))


@case("train/--init-from an unknown model")
def _(ctx: Ctx) -> Call:
    run = ctx.trained()
    return Call(train_args(run, "--init-from", "nobody"), ("unknown model 'nobody'",),
                (run / "models" / "x",))


@case("train/--init-from another architecture")
def _(ctx: Ctx) -> Call:
    run = ctx.trained()  # its teacher has the tests' tiny shape, not the tiny preset's
    return Call(train_args(run, "--init-from", "teacher"), ("--init-from teacher has another "
                                                            "architecture", "there"),
                (run / "models" / "x",))


@case("train/--run is a file")
def _(ctx: Ctx) -> Call:
    run = ctx.file("run", "x\n")
    return Call(train_args(run), (str(run), "is a file, not a directory"))


@case("train/run manifest truncated")
def _(ctx: Ctx) -> Call:
    run = ctx.prepared()
    truncate(run / "manifest.json")
    return Call(train_args(run), ("manifest.json is corrupt",), (run / "models",))


@case("train/--resume with nothing to resume")
def _(ctx: Ctx) -> Call:
    run = ctx.prepared()
    return Call(train_args(run, "--resume"), ("nothing to resume", "train without --resume"),
                (run / "models" / "x" / "model.json",))


# --------------------------------------------------------------------------- generate


def _generate(run: Path, *extra: object) -> tuple[object, ...]:
    return ("generate", "--run", run, "--beam", "2", *extra)


@case("generate/--soft-targets larger than the vocabulary, with --force")
def _(ctx: Ctx) -> Call:
    run = ctx.kd()
    gen = run / "generated" / "teacher"
    # checked before --force discards the generated data: nothing is lost to a typo
    return Call(_generate(run, "--soft-targets", "100000", "--force"),
                ("--soft-targets 100000 is larger than the vocabulary",),
                unchanged=(gen / "manifest.json", gen / "train.sp.en",
                           gen / "soft-references" / "ids.bin"))


for _option, _value, _needle in [("--soft-targets", "-1", "--soft-targets must be >= 0"),
                                 ("--lines-per-chunk", "0", "--lines-per-chunk must be >= 1"),
                                 ("--length-ratio", "-1", "--length-ratio must be >= 0"),
                                 ("--max-length", "0", "--max-length must be >= 1"),
                                 ("--beam", "0", "--beam must be >= 1")]:
    def _make(option: str = _option, value: str = _value, needle: str = _needle):
        @case(f"generate/{option} {value}")
        def _(ctx: Ctx) -> Call:
            run = ctx.trained()
            return Call(("generate", "--run", run, option, value), (needle,),
                        (run / "generated",))
    _make()


@case("generate/teacher checkpoint truncated")
def _(ctx: Ctx) -> Call:
    run = ctx.trained()
    truncate(run / "models" / "teacher" / "model_step_40.pt")
    return Call(_generate(run), ("model_step_40.pt", "corrupt or truncated"),
                (run / "generated" / "teacher" / "manifest.json",), clean=(run,))


@case("generate/teacher checkpoint edited in place")
def _(ctx: Ctx) -> Call:
    run = ctx.trained()
    flip_bytes(run / "models" / "teacher" / "model_step_40.pt", 4096)
    return Call(_generate(run), ("model_step_40.pt", "changed after training", "model.json"),
                (run / "generated" / "teacher" / "manifest.json", run / "ct2"), clean=(run,))


@case("generate/teacher model.json truncated")
def _(ctx: Ctx) -> Call:
    run = ctx.trained()
    truncate(run / "models" / "teacher" / "model.json")
    return Call(_generate(run), ("model.json is corrupt",), (run / "generated",))


@case("generate/a decoded chunk edited")
def _(ctx: Ctx) -> Call:
    run = ctx.kd()
    gen = run / "generated" / "teacher"
    (gen / "manifest.json").unlink()  # as if killed before assembling
    edit_lines(gen / "chunks" / "000001.jsonl", lambda ls: [ls[0][:20], *ls[1:]])
    return Call(("generate", "--run", run, "--beam", "2", "--nbest", "2", "--select", "closest",
                 "--soft-targets", "4", "--lines-per-chunk", "500"),
                ("000001.jsonl is corrupt",), (gen / "manifest.json",), clean=(run,))


def _no_ct2_gpu() -> None:
    from kdnmt.devices import ct2_gpu_count

    if ct2_gpu_count():
        pytest.skip("CTranslate2 sees a GPU here")


def _cpu_lacks_float16() -> None:
    import ctranslate2

    if "float16" in ctranslate2.get_supported_compute_types("cpu"):
        pytest.skip("CTranslate2 computes float16 on this CPU")


@case("generate/--device cuda with no GPU")
def _(ctx: Ctx) -> Call:
    _no_ct2_gpu()
    run = ctx.trained()
    return Call(_generate(run, "--device", "cuda"), ("--device cuda: CTranslate2 sees no GPU",),
                (run / "generated", run / "ct2"))


@case("generate/--device tpu")
def _(ctx: Ctx) -> Call:
    run = ctx.trained()
    return Call(_generate(run, "--device", "tpu"), ("'tpu' is not one of", "'cuda'"),
                (run / "generated",))


@case("generate/--compute-type float16 on the CPU")
def _(ctx: Ctx) -> Call:
    _cpu_lacks_float16()
    run = ctx.trained()
    return Call(_generate(run, "--compute-type", "float16"),
                ("--compute-type float16 is not supported on cpu", "supported: "),
                (run / "generated", run / "ct2"))


@case("generate/--compute-type int4")
def _(ctx: Ctx) -> Call:
    run = ctx.trained()
    return Call(_generate(run, "--compute-type", "int4"), ("'int4' is not one of", "'float16'"),
                (run / "generated",))


@case("generate/soft targets on cuda with a CPU build of torch, with --force")
def _(ctx: Ctx) -> Call:
    if __import__("torch").cuda.is_available():
        pytest.skip("a GPU is visible to torch here")
    run = ctx.kd()
    gen = run / "generated" / "teacher"
    # --engine ray: the GPUs would be the cluster's, so only the torch side is checked here,
    # before --force discards anything
    return Call(_generate(run, "--engine", "ray", "--device", "cuda", "--soft-targets", "4",
                          "--force"),
                ("the soft targets' forward pass runs on PyTorch", "torch sees no GPU"),
                unchanged=(gen / "manifest.json", gen / "train.sp.en"))


# --------------------------------------------------------------------------- distill


def distill_args(run: Path, method: str = "word", *extra: object,
                 steps: int = 2) -> tuple[object, ...]:
    return ("distill", "--run", run, "--name", "s", "--method", method, "--steps", steps, *extra)


def _student(run: Path) -> Path:
    return run / "models" / "s" / "model.json"


for _method, _extra, _needle in [
    ("seq+word", ("--alpha", "1.5"), "alpha=1.5 is out of range"),
    ("atkd", ("--temperature", "-1"), "temperature=-1"),
    ("hybrid", ("--temperature", "-0.5"), "temperature=-0.5"),
    ("selfevo", ("--init-from", "teacher", "--lam", "1.5"), "lam=1.5 is out of range"),
    ("word", ("--alpha", "nan"), "alpha=nan is out of range"),
    ("hybrid", ("--gate-tau", "0"), "--gate-tau must be > 0, got 0"),
    ("hybrid", ("--gate-tau", "-0.5"), "--gate-tau must be > 0, got -0.5"),
    ("hybrid", ("--gate-prior", "1"), "--gate-prior must be in (0, 1), got 1"),
    ("hybrid", ("--gate-prior", "-0.2"), "--gate-prior must be in (0, 1), got -0.2"),
    ("selfevo", (), "selfevo is a fine-tuning stage"),
    ("selfevo", ("--init-from", "teacher", "--threshold", "quantile:1.5"),
     "expected quantile:Q with 0 <= Q <= 1"),
    ("selfevo", ("--init-from", "teacher", "--threshold", "quantile:abc"),
     "is not quantile:Q with a number Q"),
]:
    def _make_hp(method: str = _method, extra: tuple[str, ...] = _extra, needle: str = _needle):
        @case(f"distill/{method} {' '.join(extra)}".rstrip())
        def _(ctx: Ctx) -> Call:
            return Call(distill_args(ctx.kd_src, method, *extra), (needle,),
                        (_student(ctx.kd_src),))
    _make_hp()


@case("distill/selfevo --init-from a model of another shape")
def _(ctx: Ctx) -> Call:
    cfg = ctx.file("wide.yaml", "model:\n  enc_layers: 1\n  dec_layers: 1\n  hidden_size: 32\n"
                   "  ff_size: 128\n  heads: 2\n")
    return Call(distill_args(ctx.kd_src, "selfevo", "--init-from", "teacher", "--config", cfg),
                ("--init-from teacher has another architecture", "ff_size"),
                (_student(ctx.kd_src),))


@case("distill/config: unknown key")
def _(ctx: Ctx) -> Call:
    cfg = ctx.file("bad.yaml", "training:\n  stepz: 3\n")
    return Call(distill_args(ctx.kd_src, "word", "--config", cfg),
                ("unknown key 'training.stepz'", "steps"), (_student(ctx.kd_src),))


@case("distill/config: wrong type")
def _(ctx: Ctx) -> Call:
    cfg = ctx.file("bad.yaml", "model:\n  heads: two\n")
    return Call(distill_args(ctx.kd_src, "word", "--config", cfg),
                ("model.heads", "expected int"), (_student(ctx.kd_src),))


@case("distill/config: a directory")
def _(ctx: Ctx) -> Call:
    return Call(distill_args(ctx.kd_src, "word", "--config", ctx.tmp), ("is a directory",),
                (_student(ctx.kd_src),))


@case("distill/teacher of another vocabulary")
def _(ctx: Ctx) -> Call:
    run = ctx.kd()
    info_path = run / "models" / "teacher" / "model.json"
    info = json.loads(info_path.read_text())
    info["vocab_sha256"] = "0" * 64
    info_path.write_text(json.dumps(info))
    return Call(distill_args(run), ("teacher 'teacher'", "another vocabulary"), (_student(run),))


def _store(run: Path) -> Path:
    return run / "generated" / "teacher" / "soft-references"


@case("distill/soft-target store truncated")
def _(ctx: Ctx) -> Call:
    run = ctx.kd()
    truncate(_store(run) / "logprobs.bin", 0.9)
    return Call(distill_args(run), (str(_store(run)), "is truncated", "logprobs.bin"),
                (_student(run),))


@case("distill/soft-target store edited in place")
def _(ctx: Ctx) -> Call:
    run = ctx.kd()
    flip_bytes(_store(run) / "ids.bin")
    return Call(distill_args(run), (str(_store(run)), "ids.bin", "changed after it was written"),
                (_student(run),))


@case("distill/soft-target store without its ids")
def _(ctx: Ctx) -> Call:
    run = ctx.kd()
    (_store(run) / "ids.bin").unlink()
    return Call(distill_args(run), ("is incomplete", "ids.bin is missing"), (_student(run),))


@case("distill/soft-target store meta.json truncated")
def _(ctx: Ctx) -> Call:
    run = ctx.kd()
    truncate(_store(run) / "meta.json")
    return Call(distill_args(run), (str(_store(run)), "cannot read meta.json"), (_student(run),))


def _pseudo(run: Path, name: str = "train.sp.en") -> Path:
    return run / "generated" / "teacher" / name


def swap_first_different(lines: list[bytes]) -> list[bytes]:
    """Swap line 1 with the first line that differs from it (what a bad merge step does)."""
    j = next(i for i, line in enumerate(lines) if line != lines[0])
    lines[0], lines[j] = lines[j], lines[0]
    return lines


@case("distill/pseudo-targets misaligned (two lines swapped)")
def _(ctx: Ctx) -> Call:
    run = ctx.kd()
    edit_lines(_pseudo(run), swap_first_different)
    return Call(distill_args(run, "seq"), ("train.sp.en", "changed or truncated"),
                (_student(run),))


@case("distill/pseudo-targets truncated")
def _(ctx: Ctx) -> Call:
    run = ctx.kd()
    edit_lines(_pseudo(run), lambda ls: ls[:100])
    return Call(distill_args(run, "seq"), ("train.sp.en", "changed or truncated"),
                (_student(run),))


@case("distill/seq-inter picks edited")
def _(ctx: Ctx) -> Call:
    run = ctx.kd()
    edit_lines(_pseudo(run, "seqinter.sp.en"), lambda ls: [b"\xe2\x96\x81x", *ls[1:]])
    return Call(distill_args(run, "seqinter"), ("seqinter.sp.en", "changed or truncated"),
                (_student(run),))


@case("distill/generated manifest truncated")
def _(ctx: Ctx) -> Call:
    run = ctx.kd()
    truncate(_pseudo(run, "manifest.json"))
    return Call(distill_args(run, "seq"), ("manifest.json is corrupt",), (_student(run),))


@case("distill/run source changed after generate")
def _(ctx: Ctx) -> Call:
    run = ctx.kd()
    edit_lines(run / "data" / "train.sp.de", swap_first_different)
    return Call(distill_args(run, "seq"), ("another source",), (_student(run),))


@case("distill/online teacher checkpoint truncated")
def _(ctx: Ctx) -> Call:
    run = ctx.trained()
    truncate(run / "models" / "teacher" / "model_step_40.pt")
    return Call(distill_args(run, "word", "--teacher-mode", "online"),
                ("model_step_40.pt", "corrupt or truncated"), (_student(run),))


@case("distill/online teacher checkpoint edited in place")
def _(ctx: Ctx) -> Call:
    run = ctx.trained()
    flip_bytes(run / "models" / "teacher" / "model_step_40.pt", 4096)
    return Call(distill_args(run, "word", "--teacher-mode", "online"),
                ("model_step_40.pt", "changed after training"), (_student(run),))


# --------------------------------------------------------------------------- export


@case("export/--output is a file, with --force")
def _(ctx: Ctx) -> Call:
    out = ctx.file("out", "keep me\n")
    return Call(("export", "--run", ctx.trained_src, "--model", "teacher", "--output", out,
                 "--force"), (str(out), "exists and is not a directory"), unchanged=(out,))


@case("export/checkpoint edited in place")
def _(ctx: Ctx) -> Call:
    run = ctx.trained()
    flip_bytes(run / "models" / "teacher" / "model_step_40.pt", 4096)
    out = ctx.tmp / "out"
    return Call(("export", "--run", run, "--model", "teacher", "--output", out),
                ("changed after training",), (out,), clean=(ctx.tmp,))


@case("export/unknown quantization")
def _(ctx: Ctx) -> Call:
    out = ctx.tmp / "out"
    return Call(("export", "--run", ctx.trained_src, "--model", "teacher", "--quantization",
                 "int4", "--output", out), ("'int4' is not one of", "'int8'"), (out,))


# --------------------------------------------------------------------------- eval


def _eval_test(ctx: Ctx, edit_de: Callable[[Path], None] | None = None,
               edit_en: Callable[[Path], None] | None = None) -> str:
    c = ctx.corpus()
    if edit_de:
        edit_de(Path(c["test"] + ".de"))
    if edit_en:
        edit_en(Path(c["test"] + ".en"))
    return c["test"]


def eval_args(ctx: Ctx, test: str | Path, *extra: object) -> tuple[object, ...]:
    return ("eval", "--run", ctx.trained_src, "--models", "teacher", "--beam", "1",
            "--test", test, *extra)


@case("eval/--test with a NUL byte")
def _(ctx: Ctx) -> Call:
    test = _eval_test(ctx, lambda p: edit_lines(p, lambda ls: [b"a\x00b", *ls[1:]]))
    return Call(eval_args(ctx, test), ("test.de:1", "NUL byte"))


@case("eval/--test with invalid UTF-8")
def _(ctx: Ctx) -> Call:
    test = _eval_test(ctx, edit_en=lambda p: edit_lines(p, lambda ls: [*ls[:4], b"\xc3(",
                                                                        *ls[5:]]))
    return Call(eval_args(ctx, test), ("test.en:5", "invalid UTF-8"))


@case("eval/--test line counts differ")
def _(ctx: Ctx) -> Call:
    test = _eval_test(ctx, edit_en=lambda p: edit_lines(p, lambda ls: ls[10:]))
    return Call(eval_args(ctx, test), ("line counts differ", "60", "50"))


@case("eval/--test empty")
def _(ctx: Ctx) -> Call:
    test = _eval_test(ctx, lambda p: p.write_bytes(b""), lambda p: p.write_bytes(b""))
    return Call(eval_args(ctx, test), ("test.de is empty",))


@case("eval/--test missing")
def _(ctx: Ctx) -> Call:
    return Call(eval_args(ctx, ctx.tmp / "nope"), ("missing file", "nope.de"))


@case("eval/--test side is a directory")
def _(ctx: Ctx) -> Call:
    test = _eval_test(ctx, lambda p: (p.unlink(), p.mkdir()))
    return Call(eval_args(ctx, test), ("test.de is a directory",))


@case("eval/--limit -1")
def _(ctx: Ctx) -> Call:
    return Call(eval_args(ctx, ctx.corpus()["test"], "--limit", "-1"),
                ("--limit must be >= 0",))


@case("eval/checkpoint edited in place")
def _(ctx: Ctx) -> Call:
    run = ctx.trained()
    flip_bytes(run / "models" / "teacher" / "model_step_40.pt", 4096)
    return Call(("eval", "--run", run, "--models", "teacher", "--beam", "1"),
                ("changed after training",), (run / "reports", run / "ct2"), clean=(run,))


@case("eval/--baseline is the only model")
def _(ctx: Ctx) -> Call:
    return Call(("eval", "--run", ctx.trained_src, "--models", "teacher", "--baseline",
                 "teacher"), ("--baseline teacher needs another model",),
                (ctx.trained_src / "reports",))


@case("eval/--bootstrap 10")
def _(ctx: Ctx) -> Call:
    return Call(("eval", "--run", ctx.trained_src, "--models", "teacher", "--baseline", "x",
                 "--bootstrap", "10"), ("--bootstrap must be >= 100",),
                (ctx.trained_src / "reports",))


@case("eval/--bleu-tokenize unknown")
def _(ctx: Ctx) -> Call:
    return Call(("eval", "--run", ctx.trained_src, "--models", "teacher", "--bleu-tokenize",
                 "nope"), ("--bleu-tokenize must be one of", "13a"),
                (ctx.trained_src / "reports",))


def _damaged_report(ctx: Ctx) -> tuple[Path, Path]:
    run = ctx.trained()
    report = run / "reports" / "eval.json"
    report.parent.mkdir()
    report.write_text('{"results": [{"model": "teacher", "be')
    return run, report


@case("eval/--device cuda with no GPU")
def _(ctx: Ctx) -> Call:
    _no_ct2_gpu()
    run = ctx.trained()
    return Call(("eval", "--run", run, "--models", "teacher", "--device", "cuda"),
                ("--device cuda: CTranslate2 sees no GPU",), (run / "reports", run / "ct2"))


@case("eval/--compute-type float16 on the CPU")
def _(ctx: Ctx) -> Call:
    _cpu_lacks_float16()
    run = ctx.trained()
    return Call(("eval", "--run", run, "--models", "teacher", "--compute-type", "float16"),
                ("--compute-type float16 is not supported on cpu",),
                (run / "reports", run / "ct2"))


@case("eval/reports/eval.json truncated")
def _(ctx: Ctx) -> Call:
    run, report = _damaged_report(ctx)
    return Call(("eval", "--run", run, "--models", "teacher", "--beam", "1"),
                ("eval.json is corrupt (not valid JSON)", "move it away"),
                (run / "reports" / "eval.md", run / "ct2"), unchanged=(report,))


@case("export/reports/eval.json truncated")
def _(ctx: Ctx) -> Call:
    run, report = _damaged_report(ctx)
    out = ctx.tmp / "out"
    return Call(("export", "--run", run, "--model", "teacher", "--output", out),
                ("eval.json is corrupt (not valid JSON)",), (out,), unchanged=(report,))


@case("export/--licence empty")
def _(ctx: Ctx) -> Call:
    out = ctx.tmp / "out"
    return Call(("export", "--run", ctx.trained_src, "--model", "teacher", "--output", out,
                 "--licence", " "), ("--licence must be one non-empty line",), (out,))


# --------------------------------------------------------------------------- compare
# (cases that need evaluated models: tests/integration/test_compare_cli.py)


@case("compare/one model")
def _(ctx: Ctx) -> Call:
    return Call(("compare", "--run", ctx.trained_src, "--models", "teacher,teacher"),
                ("needs at least two different models",), (ctx.trained_src / "reports",))


@case("compare/--bootstrap 10")
def _(ctx: Ctx) -> Call:
    return Call(("compare", "--run", ctx.trained_src, "--models", "teacher,x", "--bootstrap",
                 "10"), ("--bootstrap must be >= 100",), (ctx.trained_src / "reports",))


@case("compare/no eval yet")
def _(ctx: Ctx) -> Call:
    return Call(("compare", "--run", ctx.trained_src, "--models", "teacher,x"),
                ("eval.json does not exist", "run `kdnmt eval` first"),
                (ctx.trained_src / "reports",))


# --------------------------------------------------------------------------- plot


@case("plot/no model has a curve")
def _(ctx: Ctx) -> Call:
    run = ctx.prepared()
    return Call(("plot", "--run", run), ("has a learning curve", "bleu_every"),
                (run / "reports",))


@case("plot/--models names an unknown model")
def _(ctx: Ctx) -> Call:
    run = ctx.trained()
    return Call(("plot", "--run", run, "--models", "teacher,nobody"), ("unknown model 'nobody'",),
                (run / "reports",))


@case("plot/--out of an unknown format")
def _(ctx: Ctx) -> Call:
    run = ctx.trained()
    out = ctx.tmp / "curves.jpg"
    return Call(("plot", "--run", run, "--out", out), (".png, .svg or .pdf",), (out,),
                clean=(ctx.tmp,))


# --------------------------------------------------------------------------- translate


@case("translate/NUL byte on stdin")
def _(ctx: Ctx) -> Call:
    return Call(("translate", "--model", ctx.exported_src), ("standard input line 2", "NUL"),
                input=b"gut\nja\x00\n")


@case("translate/--max-length 0")
def _(ctx: Ctx) -> Call:
    return Call(("translate", "--model", ctx.exported_src, "--max-length", "0"),
                ("--max-length must be >= 1",), input="gut\n")


@case("translate/--model is a file")
def _(ctx: Ctx) -> Call:
    model = ctx.file("model.bin", b"\x00" * 10)
    return Call(("translate", "--model", model), (str(model), "is not a directory"), input="")


@case("translate/--model without model.bin")
def _(ctx: Ctx) -> Call:
    model = ctx.exported()
    (model / "model.bin").unlink()
    return Call(("translate", "--model", model), ("no model.bin",), input="gut\n")


@case("translate/model.bin truncated")
def _(ctx: Ctx) -> Call:
    model = ctx.exported()
    truncate(model / "model.bin")
    return Call(("translate", "--model", model), ("cannot load CTranslate2 model",),
                input="gut\n")


@case("translate/--device cuda with no GPU")
def _(ctx: Ctx) -> Call:
    _no_ct2_gpu()
    return Call(("translate", "--model", ctx.exported_src, "--device", "cuda"),
                ("--device cuda: CTranslate2 sees no GPU",), input="gut\n")


@case("translate/--compute-type float16 on the CPU")
def _(ctx: Ctx) -> Call:
    _cpu_lacks_float16()
    return Call(("translate", "--model", ctx.exported_src, "--compute-type", "float16"),
                ("--compute-type float16 is not supported on cpu",), input="gut\n")


# --------------------------------------------------------------------------- the matrix


def _digest(paths: tuple[Path, ...]) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, ctx: Ctx) -> None:
    call = CASES[name](ctx)
    before = _digest(call.unchanged)
    result = run_cli(*call.args, input=call.input)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    line = assert_one_error_line(result.stderr, *call.needles)
    print(f"{name} -> {line}")  # the observed line, for docs/reliability.md (-s)
    for path in call.absent:
        assert not path.exists(), f"{path} was written"
    assert _digest(call.unchanged) == before
    for directory in call.clean:
        assert not temp_files(directory), temp_files(directory)


# --------------------------------------------------------------------------- not errors


def test_crlf_test_set_scores_like_lf(ctx: Ctx) -> None:
    """CRLF line ends are normalised by eval and translate (not errors)."""
    run = ctx.trained()
    c = ctx.corpus()
    lf = run_cli("eval", "--run", run, "--models", "teacher", "--beam", "1", "--test", c["test"])
    assert lf.exit_code == 0, lf.output
    scores = json.loads((run / "reports" / "eval.json").read_text())["results"][0]
    crlf = ctx.tmp / "crlf"
    for lang in ("de", "en"):
        Path(f"{crlf}.{lang}").write_bytes(Path(f"{c['test']}.{lang}").read_bytes()
                                           .replace(b"\n", b"\r\n"))
    result = run_cli("eval", "--run", run, "--models", "teacher", "--beam", "1", "--test", crlf)
    assert result.exit_code == 0, result.output
    rows = json.loads((run / "reports" / "eval.json").read_text())["results"]
    assert rows[-1]["bleu"] == scores["bleu"] and rows[-1]["chrf"] == scores["chrf"]
    sources = Path(c["test"] + ".de").read_text().splitlines()[:5]
    plain = run_cli("translate", "--model", ctx.exported_src, "--beam", "1",
                    input="\n".join(sources) + "\n")
    windows = run_cli("translate", "--model", ctx.exported_src, "--beam", "1",
                      input="\r\n".join(sources) + "\r\n")
    assert plain.exit_code == windows.exit_code == 0
    assert windows.stdout == plain.stdout and "\r" not in windows.stdout


LONG = ("Donaudampfschifffahrt" * 5 + " ") * 950  # about 100,000 characters


def test_100k_character_lines(ctx: Ctx) -> None:
    """prepare drops an over-long train/valid pair and counts it (docs/prepare.md); the test
    split keeps it; eval and translate take it (CTranslate2 cuts the input at 1,024 pieces)."""
    assert 99_000 < len(LONG) < 101_000
    c = ctx.corpus()
    baseline = ctx.tmp / "baseline"
    assert run_cli(*prepare_args(baseline, c)).exit_code == 0
    for split in ("train", "valid", "test"):
        lines = Path(c[split] + ".de").read_bytes().split(b"\n")
        # the shortest non-empty line: the pair it belongs to was kept by the baseline
        shortest = min(range(len(lines) - 1),
                       key=lambda i, ls=lines: (not ls[i].strip(), len(ls[i])))
        lines[shortest] = LONG.encode()
        Path(c[split] + ".de").write_bytes(b"\n".join(lines))
    run = ctx.tmp / "run"
    result = run_cli(*prepare_args(run, c))
    assert result.exit_code == 0, result.output
    before = json.loads((baseline / "manifest.json").read_text())["splits"]
    after = json.loads((run / "manifest.json").read_text())["splits"]
    for split in ("train", "valid"):
        assert after[split]["dropped_too_long"] == before[split]["dropped_too_long"] + 1
        assert after[split]["kept"] == before[split]["kept"] - 1
        assert LONG.strip() not in (run / "data" / f"{split}.de").read_text()
    assert after["test"]["kept"] == before["test"]["kept"]
    assert LONG.strip() in (run / "data" / "test.de").read_text().splitlines()
    result = run_cli("eval", "--run", ctx.trained(), "--models", "teacher", "--beam", "1",
                     "--test", c["test"], "--limit", "3")
    assert result.exit_code == 0, result.output
    result = run_cli("translate", "--model", ctx.exported_src, "--beam", "1",
                     input="gut\n" + LONG + "\nja\n")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3


def test_empty_stdin_translates_to_nothing(ctx: Ctx) -> None:
    result = run_cli("translate", "--model", ctx.exported_src, input="")
    assert result.exit_code == 0 and result.stdout == ""


# --------------------------------------------------------------------------- doctor


@pytest.mark.parametrize("problem, needle", [
    ("missing", "does not exist"),
    ("file", "is a file, not a directory"),
    ("manifest", "corrupt (not valid JSON)"),
    ("store", "is truncated"),
])
def test_doctor_reports_damage_in_its_table(ctx: Ctx, problem: str, needle: str) -> None:
    """doctor reports problems as FAIL rows of its table (exit 1), not as one error line."""
    if problem == "missing":
        run = ctx.tmp / "nope"
    elif problem == "file":
        run = ctx.file("run", "x\n")
    else:
        run = ctx.kd()
        if problem == "manifest":
            truncate(run / "manifest.json")
        else:
            truncate(_store(run) / "ids.bin", 0.9)
    result = run_cli("doctor", "--run", run)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "FAIL" in result.stdout
    assert needle in " ".join(result.stdout.split()).replace("│ ", "").replace(" │", ""), \
        result.stdout


# --------------------------------------------------------------------------- unreadable

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.mark.skipif(ROOT, reason="running as root: chmod 000 does not stop root from reading")
@pytest.mark.parametrize("what", ["corpus", "config", "test set"])
def test_unreadable_file(ctx: Ctx, what: str) -> None:
    c = ctx.corpus()
    if what == "corpus":
        path = Path(c["train"] + ".de")
        run = ctx.tmp / "run"
        args: tuple[object, ...] = prepare_args(run, c)
    elif what == "config":
        path = ctx.file("cfg.yaml", "training:\n  steps: 2\n")
        args = train_args(ctx.prepared(), "--config", path)
    else:
        path = Path(c["test"] + ".en")
        args = eval_args(ctx, c["test"])
    path.chmod(0)
    try:
        result = run_cli(*args)
    finally:
        path.chmod(0o644)
    assert result.exit_code == 1, result.output
    assert_one_error_line(result.stderr, path.name)
    assert "permission denied" in result.stderr


# --------------------------------------------------------------------------- disk full


def _run_with_file_limit(cmd: list[str], limit: int) -> subprocess.CompletedProcess:
    """Run ``cmd`` unable to write a file beyond ``limit`` bytes: writes fail with EFBIG
    (SIGXFSZ, which would kill the process, is ignored), as on a full disk."""
    def child() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300,
                          preexec_fn=child)


def _full_prepare(ctx: Ctx) -> tuple[tuple[object, ...], Path, list[Path]]:
    run = ctx.tmp / "run"
    return (prepare_args(run, ctx.corpus()), run / "data" / "train.de",
            [run / "manifest.json", run / "spm.model"])


def _full_train(ctx: Ctx) -> tuple[tuple[object, ...], Path, list[Path]]:
    run = ctx.prepared()
    model = run / "models" / "x"
    return (train_args(run, "--config", ctx.tiny_config, steps=20),
            model / "model_step_10.pt", [model / "model.json"])


def _full_generate(ctx: Ctx) -> tuple[tuple[object, ...], Path, list[Path]]:
    run = ctx.trained()
    return (_generate(run), run / "ct2" / "teacher-int8",
            [run / "generated" / "teacher" / "manifest.json"])


def _full_generate_chunks(ctx: Ctx) -> tuple[tuple[object, ...], Path, list[Path]]:
    run = ctx.trained()
    from kdnmt.models import ct2_model
    from kdnmt.rundir import RunDir

    ct2_model(RunDir(run), "teacher", "int8")  # converted already: the chunk is what fails
    return (_generate(run, "--lines-per-chunk", "1000"),
            run / "generated" / "teacher" / "chunks" / "000000.jsonl",
            [run / "generated" / "teacher" / "manifest.json"])


def _full_distill(ctx: Ctx) -> tuple[tuple[object, ...], Path, list[Path]]:
    run = ctx.kd()
    model = run / "models" / "s"
    return (distill_args(run, "word", "--config", ctx.tiny_config, steps=20),
            model / "model_step_10.pt", [model / "model.json"])


def _full_export(ctx: Ctx) -> tuple[tuple[object, ...], Path, list[Path]]:
    out = ctx.tmp / "out"
    return ("export", "--run", ctx.trained(), "--model", "teacher", "--output", out), out, [out]


def _full_eval(ctx: Ctx) -> tuple[tuple[object, ...], Path, list[Path]]:
    run = ctx.trained()
    return (("eval", "--run", run, "--models", "teacher", "--beam", "1"),
            run / "ct2" / "teacher-int8", [run / "reports" / "eval.json"])


#: command -> (its arguments, the file the error must name, files it must not leave; the file
#: size limit in bytes)
DISK_FULL = {
    "prepare": (_full_prepare, 60_000),
    "train": (_full_train, 50_000),
    "generate (conversion)": (_full_generate, 30_000),
    "generate (chunk)": (_full_generate_chunks, 50_000),
    "distill": (_full_distill, 50_000),
    "export": (_full_export, 30_000),
    "eval": (_full_eval, 30_000),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(DISK_FULL))
def test_disk_full(ctx: Ctx, command: str) -> None:
    make, limit = DISK_FULL[command]
    args, writing, absent = make(ctx)
    result = _run_with_file_limit(kdnmt(*args), limit)
    assert result.returncode == 1, result.stderr
    line = assert_one_error_line(result.stderr, "file too large while writing", str(writing))
    print(f"disk full/{command} -> {line}")
    for path in absent:
        assert not path.exists(), f"{path} was written"
    assert not temp_files(ctx.tmp), temp_files(ctx.tmp)


@contextlib.contextmanager
def small_tmpfs(where: Path, kib: int) -> Iterator[Path]:
    """A tmpfs of ``kib`` KiB at ``where`` (needs root and mount rights), or skip."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.mark.slow
@pytest.mark.skipif(not ROOT or not shutil.which("mount"), reason="mounting a tmpfs needs root")
@pytest.mark.parametrize("room_kib", [0, 8, 64])
def test_train_on_a_full_tmpfs(ctx: Ctx, prepared_run: Path, room_kib: int) -> None:
    """A real ENOSPC, on a tmpfs holding the prepared run and ``room_kib`` KiB more (tmpfs
    counts 4 KiB pages): 0 fills it at config.yaml; 8 after config.yaml and onmt.yaml, so
    that train.log cannot be written either (OpenNMT-py's logging must not print a traceback
    per record) and the first checkpoint fails; 64 at the first checkpoint."""
    pages = sum(-(-p.stat().st_size // 4096) for p in prepared_run.rglob("*") if p.is_file())
    with small_tmpfs(ctx.tmp / "disk", pages * 4 + room_kib) as disk:
        run = disk / "run"
        shutil.copytree(prepared_run, run)
        result = subprocess.run(kdnmt(*train_args(run, "--config", ctx.tiny_config, steps=20)),
                                env=ENV, capture_output=True, text=True, timeout=300)
        assert result.returncode == 1, result.stderr
        line = assert_one_error_line(result.stderr, "disk full while writing", str(run / "models"))
        print(f"tmpfs/{room_kib} KiB -> {line}")
        assert not (run / "models" / "x" / "model.json").exists()
        assert not list((run / "models" / "x").glob("*.pt"))
        assert not temp_files(run), temp_files(run)
        assert not any(p.name.startswith(TMP_PREFIX) for p in disk.rglob("*"))
