"""`kdnmt generate --engine ray`: the teacher's decoding on a Ray cluster.

Only the decoding runs on Ray. The driver (the machine running ``kdnmt generate``) keeps
everything else: which chunks are missing, the chunk files, resume and the checks
(:meth:`kdnmt.teacher.generate.Generation.decode_chunks`). Here:

- the CTranslate2 model directory is read into a dict ``relative path -> bytes`` and put into
  Ray's object store once, so a cluster without a shared filesystem works;
- N actors (``--ray-actors``, default: the CPUs Ray reports, or with ``--device cuda`` its GPUs)
  each write those files to a private temporary directory, load one
  :class:`~kdnmt.teacher.decode.TeacherDecoder` with one single-threaded replica (one CPU per
  actor), or with ``--device cuda`` one translator on the one GPU Ray gives the actor
  (``num_gpus=1``: Ray sets its ``CUDA_VISIBLE_DEVICES``), and remove the directory again
  (CTranslate2 holds the model in memory). The compute type is resolved on the actor, where
  the GPU is: the driver needs none;
- the driver sends each missing chunk's source lines to an actor (two in flight per actor) and
  hands the hypotheses back as they arrive; the driver writes the chunk file. Every chunk goes
  through the same ``TeacherDecoder.decode`` call as with the local engine, so the outputs are
  byte-identical, and a run may resume with either engine.

Ray is an optional dependency (``pip install 'kdnmt[ray]'``). Every node needs kdnmt and the
same CTranslate2 version as the driver (checked before decoding).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from kdnmt import __version__
from kdnmt.devices import check_ct2_device, resolve
from kdnmt.errors import KdnmtError, check
from kdnmt.teacher.decode import Hypotheses, TeacherDecoder

#: In flight per actor: one decoding, one queued, so an actor never waits for the driver.
IN_FLIGHT = 2


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`KdnmtError` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise KdnmtError("--engine ray needs Ray: pip install 'kdnmt[ray]'") from None
    return ray


def read_model_files(model_dir: Path) -> dict[str, bytes]:
    """Every file under ``model_dir``, keyed by its path relative to it (POSIX)."""
    model_dir = Path(model_dir)
    files = {p.relative_to(model_dir).as_posix(): p.read_bytes()
             for p in sorted(model_dir.rglob("*")) if p.is_file()}
    check(files, f"the CTranslate2 model directory {model_dir} is empty")
    return files


def write_model_files(files: dict[str, bytes], dest: Path) -> None:
    """Write what :func:`read_model_files` read into ``dest``."""
    for name, data in files.items():
        path = dest / name
        check(dest in path.resolve().parents, f"model file name {name!r} leaves the model dir")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class ChunkDecoder:
    """One Ray actor: one CTranslate2 translator (one replica, one thread).

    A plain class, wrapped with ``ray.remote`` at run time because Ray is optional. A model that
    cannot be loaded does not fail the constructor (Ray would report it as a dead actor with a
    traceback): :meth:`hello` returns the message.
    """

    def __init__(self, files: dict[str, bytes], decoder_args: dict[str, Any]):
        self.error: str | None = None
        self.decoder: TeacherDecoder | None = None
        args = dict(decoder_args)
        requested = args.pop("compute_type", "default")
        quantization = args.pop("quantization", "int8")
        tmp = Path(tempfile.mkdtemp(prefix="kdnmt-ray-model-")).resolve()
        try:
            device = check_ct2_device(args.get("device", "cpu"))
            compute_type = resolve(device, requested, quantization)
            write_model_files(files, tmp)
            self.decoder = TeacherDecoder(tmp, inter_threads=1, compute_type=compute_type,
                                          **args)
        except (KdnmtError, OSError) as exc:
            self.error = str(exc)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def hello(self) -> dict[str, Any]:
        """Where this actor runs, with which versions, and whether its model loaded."""
        import ctranslate2

        return {"host": socket.gethostname(), "kdnmt": __version__,
                "ctranslate2": ctranslate2.__version__, "error": self.error,
                "compute_type": self.decoder.compute_type if self.decoder else None}

    def decode(self, chunk: int, lines: list[str]) -> tuple[int, list[Hypotheses]]:
        assert self.decoder is not None, self.error
        return chunk, self.decoder.decode(lines)


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """A HOST:PORT address answers: Ray itself retries an unreachable one for many minutes."""
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return  # "auto", a ray:// client address, or a malformed one: Ray reports it
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise KdnmtError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}): "
                         "is `ray start --head` running there, on that port?") from None


def _init(ray: Any, address: str | None, actors: int) -> None:
    """Connect to the cluster at ``address`` (or RAY_ADDRESS), else start a local instance."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        _check_reachable(address)
    common: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.WARNING}
    try:
        if address is None:
            # "local": a private instance on this machine, even if another one runs here
            # (Ray would otherwise join the last one started with `ray start`).
            ray.init(address="local", num_cpus=actors or None, **common)
        else:
            ray.init(address=address, **common)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise KdnmtError(f"cannot connect to {where}: {exc}") from None


def _check_actors(ray: Any, pool: list[Any]) -> set[str]:
    """Every actor loaded the model, with the driver's kdnmt and CTranslate2 versions; returns
    the compute types CTranslate2 resolved on them."""
    import ctranslate2

    mine = {"kdnmt": __version__, "ctranslate2": ctranslate2.__version__}
    compute_types = set()
    for info in ray.get([actor.hello.remote() for actor in pool]):
        check(info["error"] is None, f"a Ray actor on {info['host']}: {info['error']}")
        theirs = {k: info[k] for k in mine}
        check(theirs == mine,
              f"the Ray node {info['host']} runs kdnmt {theirs['kdnmt']} with CTranslate2 "
              f"{theirs['ctranslate2']}, this machine kdnmt {mine['kdnmt']} with CTranslate2 "
              f"{mine['ctranslate2']}: install the same versions on every node (the outputs "
              "would not be identical otherwise)")
        compute_types.add(info["compute_type"])
    return compute_types


def failure_message(exc: BaseException) -> str:
    """One line for a Ray failure (a lost node or actor, an actor that could not start): the
    innermost error of Ray's report, which buries it under tracebacks and colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"\w+(Error|Exception)\b", line)]
    reason = errors[-1] if errors else (lines[0] if lines else type(exc).__name__)
    if "No module named" in reason:
        reason += " (every Ray node needs kdnmt and its dependencies installed)"
    return (f"decoding on Ray failed: {reason}; the chunks finished so far are kept: "
            "rerun to resume")


def decode_on_ray(model_dir: Path, parts: Iterable[tuple[int, list[str]]], chunks: int,
                  on_chunk: Callable[[int, list[Hypotheses]], None],
                  decoder_args: dict[str, Any], *, address: str | None = None,
                  actors: int = 0,
                  on_ready: Callable[[set[str]], None] = lambda types: None) -> None:
    """Decode each of the ``chunks`` chunks of ``parts`` (``(chunk id, source lines)``, read
    lazily: only the chunks in flight are in memory) on Ray; call ``on_chunk`` on the driver
    with each chunk's hypotheses as it arrives (in completion order), and ``on_ready`` before
    the first with the compute types the actors' CTranslate2 resolved.

    ``decoder_args``: :class:`TeacherDecoder`'s, with ``device``, the requested
    ``compute_type`` and the conversion's ``quantization`` (resolved on each actor).
    Reuses a Ray connection this process already has; otherwise connects (``address``) or
    starts a local instance, and shuts that down at the end. Actors are always removed.
    """
    if chunks < 1:
        return
    ray = import_ray()
    from ray.exceptions import RayError, RayTaskError

    owned = not ray.is_initialized()
    if owned:
        _init(ray, address, actors)
    pool: list[Any] = []
    try:
        resources = ray.cluster_resources()
        cpus = int(resources.get("CPU", 0))
        check(cpus >= 1, "the Ray cluster reports no CPU (each actor needs one)")
        on_gpus = decoder_args.get("device", "cpu") == "cuda"
        if on_gpus:
            gpus = int(resources.get("GPU", 0))
            check(gpus >= 1, "--device cuda: the Ray cluster reports no GPU (one per actor): "
                  "start its nodes with their GPUs, or decode with --device cpu")
            count = actors or gpus
            check(count <= gpus, f"--ray-actors {count} is more than the {gpus} GPUs of the "
                  "Ray cluster (one GPU per actor with --device cuda)")
        else:
            count = actors or cpus
            check(count <= cpus, f"--ray-actors {count} is more than the {cpus} CPUs of the "
                  "Ray cluster (one CPU per actor)")
        count = min(count, chunks)  # each actor loads the model: no idle ones
        files = ray.put(read_model_files(model_dir))
        # No restarts: a lost actor fails the run, and a rerun resumes from the chunks written.
        actor_class = ray.remote(num_cpus=1, num_gpus=1 if on_gpus else 0)(ChunkDecoder)
        pool = [actor_class.options(scheduling_strategy="SPREAD").remote(files, decoder_args)
                for _ in range(count)]
        del files  # the actors hold it while they need it
        on_ready(_check_actors(ray, pool))
        queue = iter(parts)
        pending: dict[Any, Any] = {}

        def submit(actor: Any) -> None:
            part = next(queue, None)
            if part is not None:
                pending[actor.decode.remote(*part)] = actor

        for _ in range(IN_FLIGHT):
            for actor in pool:
                submit(actor)
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            actor = pending.pop(ref)
            chunk, results = ray.get(ref)
            submit(actor)  # before writing: the actor goes on meanwhile
            on_chunk(chunk, results)
    except RayTaskError as exc:
        if isinstance(exc.cause, KdnmtError):
            raise KdnmtError(str(exc.cause)) from None
        raise  # a bug: keep Ray's traceback
    except RayError as exc:  # a lost node or actor, an unreachable object
        raise KdnmtError(failure_message(exc)) from None
    finally:
        for actor in pool:
            ray.kill(actor, no_restart=True)
        if owned:
            ray.shutdown()
