"""`kdnmt generate --engine ray` on a local Ray instance with 2 CPUs: the same bytes as the
local engine, resume with either engine (and over a Ray address, from another process), clean
errors."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdnmt.errors import KdnmtError
from kdnmt.rundir import RunDir
from kdnmt.teacher.generate import load_generated
from tests.helpers import REPO, assert_clean_error, no_temp_files, run_cli

ray = pytest.importorskip("ray")  # a guard only: requirements/dev.txt installs it

OUTPUTS = ("train.sp.de", "train.sp.en", "train.en", "nbest.jsonl", "seqinter.sp.en")
GEN_ARGS = ("--beam", "3", "--nbest", "2", "--select", "closest", "--lines-per-chunk", "300")
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}


def generated(run: Path) -> dict[str, bytes]:
    """The assembled outputs, the chunks and the settings of a run's generated data."""
    gen = run / "generated" / "teacher"
    out = {name: (gen / name).read_bytes() for name in (*OUTPUTS, "settings.json")}
    out.update({f"chunks/{p.name}": p.read_bytes() for p in sorted((gen / "chunks").iterdir())})
    return out


def kdnmt_process(*args: object, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own (a Ray driver of its own)."""
    return subprocess.run([sys.executable, "-m", "kdnmt", *map(str, args)], cwd=REPO,
                          env={**env, "KDNMT_THREADS": "1"}, capture_output=True, text=True,
                          timeout=180)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance with 2 CPUs in this process; yields its address."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in RAY_ENV.items():
            mp.setenv(name, value)
        mp.delenv("RAY_ADDRESS", raising=False)
        for name in ("RAY_AUTH_MODE", "PYTHONBREAKPOINT"):  # Ray sets them: restored afterwards
            mp.delenv(name, raising=False)
        context = ray.init(address="local", num_cpus=2, include_dashboard=False,
                           log_to_driver=False)
        try:
            yield context.address_info["gcs_address"]
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def local_run(trained_run: Path, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("local") / "run"
    shutil.copytree(trained_run, run)
    result = run_cli("generate", "--run", run, *GEN_ARGS)
    assert result.exit_code == 0, result.output
    return run


@pytest.fixture(scope="module")
def ray_run(trained_run: Path, tmp_path_factory, ray_cluster: str) -> Path:
    """Generated with --engine ray in this process: it uses the running Ray instance."""
    run = tmp_path_factory.mktemp("ray") / "run"
    shutil.copytree(trained_run, run)
    result = run_cli("generate", "--run", run, *GEN_ARGS, "--engine", "ray")
    assert result.exit_code == 0, result.output
    return run


@pytest.mark.slow
def test_ray_engine_is_byte_identical_to_local(local_run: Path, ray_run: Path) -> None:
    ray_files, local_files = generated(ray_run), generated(local_run)
    assert sorted(ray_files) == sorted(local_files)
    assert len([n for n in ray_files if n.startswith("chunks/")]) == 5  # 1,500 lines / 300
    for name, data in local_files.items():
        assert ray_files[name] == data, name
    load_generated(RunDir(ray_run), "teacher")  # the manifest's checksums hold
    assert not no_temp_files(ray_run)
    # the actors are gone: both CPUs free again
    deadline = time.monotonic() + 20
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ray.available_resources().get("CPU", 0) == 2


@pytest.mark.slow
def test_resume_with_either_engine(local_run: Path, ray_run: Path, ray_cluster: str,
                                   copy_run) -> None:
    run = copy_run(ray_run)
    chunks = run / "generated" / "teacher" / "chunks"
    expected = generated(local_run)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # over the cluster's address, from another process (a driver that only connects)
    for name in ("000001.jsonl", "000003.jsonl"):
        (chunks / name).unlink()
    result = kdnmt_process("generate", "--run", run, *GEN_ARGS, "--engine", "ray",
                           "--ray-address", ray_cluster, env=env)
    assert result.returncode == 0, result.stderr
    assert generated(run) == expected
    # locally, chunks that Ray made
    (chunks / "000004.jsonl").unlink()
    result = run_cli("generate", "--run", run, *GEN_ARGS)
    assert result.exit_code == 0, result.output
    assert generated(run) == expected
    # a private Ray instance that the command starts and stops itself
    (chunks / "000000.jsonl").unlink()
    result = kdnmt_process("generate", "--run", run, *GEN_ARGS, "--engine", "ray",
                           "--ray-actors", "1", env=env)
    assert result.returncode == 0, result.stderr
    assert generated(run) == expected
    assert not no_temp_files(run)


@pytest.mark.slow
@pytest.mark.parametrize("args, needles", [
    (("--engine", "spark"), ("--engine", "'local', 'ray'", "spark")),
    (("--ray-actors", "2"), ("need --engine ray",)),
    (("--engine", "ray", "--ray-actors", "-1"), ("--ray-actors must be >= 0",)),
])
def test_bad_engine_arguments(trained_run: Path, copy_run, args, needles) -> None:
    run = copy_run(trained_run)
    assert_clean_error(run_cli("generate", "--run", run, *GEN_ARGS, *args), *needles)


@pytest.mark.slow
def test_more_actors_than_cpus(ray_run: Path, copy_run) -> None:
    run = copy_run(ray_run)
    (run / "generated" / "teacher" / "chunks" / "000002.jsonl").unlink()
    result = run_cli("generate", "--run", run, *GEN_ARGS, "--engine", "ray", "--ray-actors", "3")
    assert_clean_error(result, "--ray-actors 3", "2 CPUs")
    assert ray.available_resources().get("CPU", 0) == 2


@pytest.mark.slow
def test_without_ray_installed(ray_run: Path, copy_run, monkeypatch) -> None:
    run = copy_run(ray_run)
    (run / "generated" / "teacher" / "chunks" / "000002.jsonl").unlink()
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = run_cli("generate", "--run", run, *GEN_ARGS, "--engine", "ray")
    assert_clean_error(result, "--engine ray needs Ray: pip install 'kdnmt[ray]'")
    # nothing to decode: no Ray needed
    (run / "generated" / "teacher" / "chunks" / "000002.jsonl").write_bytes(
        (ray_run / "generated" / "teacher" / "chunks" / "000002.jsonl").read_bytes())
    assert run_cli("generate", "--run", run, *GEN_ARGS, "--engine", "ray").exit_code == 0


def test_an_unreachable_address_fails_fast() -> None:
    from kdnmt.teacher.ray_engine import _check_reachable

    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(KdnmtError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        _check_reachable(f"127.0.0.1:{port}")
    assert time.monotonic() - start < 15  # Ray itself would retry for many minutes
    _check_reachable("auto")  # left to Ray


def test_ray_failures_read_as_one_line() -> None:
    from kdnmt.teacher.ray_engine import failure_message

    report = ("The actor died because of an error raised in its creation task, \x1b[36mray::"
              "ChunkDecoder.__init__()\x1b[39m (pid=1)\n   ^^^^\nRuntimeError: The actor with name "
              "ChunkDecoder failed to import on the worker.\n\nModuleNotFoundError: No module "
              "named 'kdnmt'")
    message = failure_message(RuntimeError(report))
    assert message.startswith("decoding on Ray failed: ModuleNotFoundError: No module named "
                              "'kdnmt' (every Ray node needs kdnmt")
    assert "\n" not in message and "\x1b" not in message and "rerun to resume" in message
    assert "node died" in failure_message(RuntimeError("node died"))
