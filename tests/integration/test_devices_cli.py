"""--device and --compute-type of `generate`, `eval` and `translate` through the CLI, on the CPU
(what runs here), with the GPU paths up to the point a GPU is needed: the pipelined decoder
gives translate_iterable's hypotheses, the compute type is recorded and checked on resume, a
GPU that one engine sees and the other does not is one clear line, Ray's GPU actors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import kdnmt.devices as devices
from kdnmt.models import ct2_model
from kdnmt.rundir import RunDir
from kdnmt.teacher.decode import Hypotheses, TeacherDecoder
from tests.helpers import assert_clean_error, run_cli

GEN = ("--beam", "2", "--lines-per-chunk", "400")


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def generated(trained_run: Path, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("devices") / "run"
    shutil.copytree(trained_run, run)
    result = run_cli("generate", "--run", run, *GEN)
    assert result.exit_code == 0, result.output
    return run


def reference_decode(decoder: TeacherDecoder, part: list[str]) -> list[Hypotheses]:
    """How kdnmt decoded a chunk before the pipelined decoder: translate_iterable per group."""
    tokens = [line.split() or ["<unk>"] for line in part]
    groups: dict[int, list[int]] = {}
    for i, toks in enumerate(tokens):
        groups.setdefault(decoder.cap(len(toks)), []).append(i)
    out: list[Hypotheses | None] = [None] * len(part)
    for cap, indices in groups.items():
        results = decoder._translator.translate_iterable(
            (tokens[i] for i in indices), max_batch_size=decoder.batch_tokens,
            batch_type="tokens", beam_size=decoder.beam, num_hypotheses=decoder.nbest,
            return_scores=True, max_decoding_length=cap)
        for i, r in zip(indices, results, strict=True):
            out[i] = Hypotheses([" ".join(h) for h in r.hypotheses], [float(s) for s in r.scores])
    return out  # type: ignore[return-value]


@pytest.mark.slow
@pytest.mark.parametrize("batch_tokens", [64, 2048])
def test_pipelined_decoding_equals_translate_iterable_per_group(trained_run: Path,
                                                                batch_tokens: int) -> None:
    model = ct2_model(RunDir(trained_run), "teacher", "int8")
    sources = lines(trained_run / "data" / "train.sp.de")[:600]
    parts = [(c, sources[c * 150:(c + 1) * 150]) for c in range(4)]
    with TeacherDecoder(model, beam=3, nbest=2, batch_tokens=batch_tokens, max_length=60,
                        length_ratio=1.5, inter_threads=2) as decoder:
        streamed = list(decoder.decode_stream(iter(parts), ahead=2))
        expected = [(c, reference_decode(decoder, part)) for c, part in parts]
    assert [c for c, _ in streamed] == [0, 1, 2, 3]
    assert streamed == expected


@pytest.mark.slow
def test_generate_records_the_device_and_compute_type(generated: Path, copy_run) -> None:
    gen = generated / "generated" / "teacher"
    manifest = json.loads((gen / "manifest.json").read_text())
    assert manifest["settings"]["device"] == "cpu"
    assert manifest["settings"]["compute_type"] == "default"
    import ctranslate2

    model = ct2_model(RunDir(generated), "teacher", "int8")
    expected = ctranslate2.Translator(str(model), device="cpu").compute_type
    assert manifest["decoding"] == {"device": "cpu", "compute_type": "default",
                                    "ctranslate2_compute_type": expected}
    assert json.loads((gen / "compute-type.json").read_text()) == {
        "ctranslate2_compute_type": expected}
    # int8 named explicitly is what the default is for an int8 conversion: the same targets
    run = copy_run(generated)
    shutil.rmtree(run / "generated")
    result = run_cli("generate", "--run", run, *GEN, "--device", "cpu", "--compute-type", "int8")
    assert result.exit_code == 0, result.output
    assert "decoded on cpu (CTranslate2 compute type" in result.stdout
    assert lines(run / "generated" / "teacher" / "train.sp.en") == lines(gen / "train.sp.en")


@pytest.mark.slow
def test_another_compute_type_is_other_settings(generated: Path, copy_run) -> None:
    run = copy_run(generated)
    assert_clean_error(run_cli("generate", "--run", run, *GEN, "--compute-type", "float32"),
                       "other settings", "compute_type 'default' vs 'float32'", "--force")


@pytest.mark.slow
def test_chunks_of_another_resolved_compute_type_are_not_mixed(generated: Path,
                                                               copy_run) -> None:
    run = copy_run(generated)
    gen = run / "generated" / "teacher"
    (gen / "compute-type.json").write_text(json.dumps({"ctranslate2_compute_type": "float16"}))
    (gen / "chunks" / "000001.jsonl").unlink()  # a chunk left to decode on "another machine"
    before = lines(gen / "train.sp.en")
    assert_clean_error(run_cli("generate", "--run", run, *GEN),
                       "decoded with CTranslate2 compute type float16", "--force")
    assert lines(gen / "train.sp.en") == before
    assert not (gen / "chunks" / "000001.jsonl").exists()


@pytest.mark.slow
def test_settings_written_before_devices_still_resume(generated: Path, copy_run) -> None:
    run = copy_run(generated)
    gen = run / "generated" / "teacher"
    settings = json.loads((gen / "settings.json").read_text())
    for key in ("device", "compute_type"):
        del settings[key]
    (gen / "settings.json").write_text(json.dumps(settings))
    (gen / "compute-type.json").unlink()
    (gen / "chunks" / "000000.jsonl").unlink()
    result = run_cli("generate", "--run", run, *GEN)
    assert result.exit_code == 0, result.output
    assert lines(gen / "train.sp.en") == lines(generated / "generated/teacher/train.sp.en")


@pytest.mark.slow
def test_eval_rows_of_two_compute_types_stand_side_by_side(trained_run: Path,
                                                           copy_run) -> None:
    run = copy_run(trained_run)
    common = ("eval", "--run", run, "--models", "teacher", "--beam", "1", "--limit", "20",
              "--no-teacher-forced")
    assert run_cli(*common).exit_code == 0
    result = run_cli(*common, "--compute-type", "float32")
    assert result.exit_code == 0, result.output
    rows = json.loads((run / "reports" / "eval.json").read_text())["results"]
    assert sorted((r["device"], r["compute_type"]) for r in rows) == [
        ("cpu", "default"), ("cpu", "float32")]
    assert {r["ctranslate2_compute_type"] for r in rows if r["compute_type"] == "float32"} == {
        "float32"}
    assert len({r["hypotheses"] for r in rows}) == 2  # neither overwrote the other's output
    again = run_cli(*common)  # a rerun replaces its own row only
    assert again.exit_code == 0
    assert len(json.loads((run / "reports" / "eval.json").read_text())["results"]) == 2


@pytest.mark.slow
def test_translate_with_an_explicit_compute_type(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    assert run_cli("export", "--run", trained_run, "--model", "teacher",
                   "--output", out).exit_code == 0
    text = "Die Datei konnte nicht geöffnet werden.\nHallo Welt\n"
    result = run_cli("translate", "--model", out, "--compute-type", "float32", input=text)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2


def test_gpu_defaults_follow_what_the_gpu_supports(monkeypatch) -> None:
    supported = {"float32", "int8", "int8_float32", "float16", "int8_float16"}
    monkeypatch.setattr(devices, "supported_compute_types", lambda device: supported)
    assert devices.resolve("cuda", "default", "int8") == "int8_float16"
    assert devices.resolve("cuda", "default", "float32") == "float16"
    assert devices.resolve("cuda", "float16", "int8") == "float16"
    old_gpu = {"float32", "int8", "int8_float32"}  # no efficient half precision
    monkeypatch.setattr(devices, "supported_compute_types", lambda device: old_gpu)
    assert devices.resolve("cuda", "default", "int8") == "int8_float32"
    assert devices.resolve("cuda", "default", "float16") == "float32"
    with pytest.raises(devices.KdnmtError, match="--compute-type float16 is not supported on "
                                                 "cuda"):
        devices.resolve("cuda", "float16", "int8")


@pytest.mark.slow
def test_a_gpu_ctranslate2_sees_but_torch_does_not(trained_run: Path, copy_run,
                                                   monkeypatch) -> None:
    """The machine where the pip wheel of CTranslate2 finds a GPU and torch is a CPU build:
    the PyTorch side is named, and what fails to load on the GPU is one line too."""
    if devices.torch_gpu_count():
        pytest.skip("torch sees a GPU here")
    real_gpus = devices.ct2_gpu_count()
    monkeypatch.setattr(devices, "ct2_gpu_count", lambda: 1)
    monkeypatch.setattr(devices, "supported_compute_types",
                        lambda device: {"float32", "int8_float16", "float16"})
    run = copy_run(trained_run)
    assert_clean_error(run_cli("eval", "--run", run, "--beam", "1", "--device", "cuda"),
                       "teacher-forced scoring runs on PyTorch", "--no-teacher-forced")
    assert_clean_error(run_cli("generate", "--run", run, "--device", "cuda",
                               "--soft-targets", "4"),
                       "the soft targets' forward pass runs on PyTorch")
    assert not (run / "generated").exists()
    if real_gpus:
        return  # the model would load on that GPU
    result = run_cli("eval", "--run", run, "--beam", "1", "--device", "cuda",
                     "--no-teacher-forced")
    assert_clean_error(result, "cannot load CTranslate2 model", "on cuda (int8_float16)")


@pytest.mark.slow
def test_ray_gpu_actors_need_gpus(trained_run: Path, copy_run, monkeypatch) -> None:
    ray = pytest.importorskip("ray")
    for name, value in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    run = copy_run(trained_run)
    # a cluster without GPUs (the local instance kdnmt starts itself)
    assert_clean_error(run_cli("generate", "--run", run, *GEN, "--engine", "ray",
                               "--device", "cuda", "--ray-actors", "1"),
                       "the Ray cluster reports no GPU")
    # a cluster that declares a GPU its node's CTranslate2 cannot use: the actor says so
    if devices.ct2_gpu_count():
        pytest.skip("CTranslate2 sees a GPU here")
    for name in ("RAY_AUTH_MODE", "PYTHONBREAKPOINT"):
        monkeypatch.delenv(name, raising=False)
    ray.init(address="local", num_cpus=1, num_gpus=1, include_dashboard=False,
             log_to_driver=False)
    try:
        assert_clean_error(run_cli("generate", "--run", run, *GEN, "--engine", "ray",
                                   "--device", "cuda"),
                           "a Ray actor on", "CTranslate2 sees no GPU")
    finally:
        ray.shutdown()
    assert not list((run / "generated" / "teacher" / "chunks").glob("*.jsonl"))
