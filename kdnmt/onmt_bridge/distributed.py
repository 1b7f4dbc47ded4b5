"""Data-parallel training: N processes, OpenNMT-py's own gradient all-reduce.

OpenNMT-py's multi-process training assumes one GPU per process (NCCL, ``torch.cuda`` byte
buffers in ``all_gather_list``). kdnmt runs its ranks on CPU (gloo) by default, or one per GPU
(``device="cuda"``, NCCL): rank 0 in this process (so the progress display works), ranks
1..N-1 spawned; each builds its own loss (a KD loss holds a store or a frozen teacher, which
cannot be pickled) from a picklable ``setup`` callable. ``all_gather_list`` is replaced by a
version over ``all_gather_object`` (shim; works on both backends), and the trainer's ranks are
set by :func:`kdnmt.onmt_bridge.training.run_training`. Checkpoints are written by rank 0.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Callable
from typing import Any

import torch

from kdnmt.errors import KdnmtError
from kdnmt.onmt_bridge import shims

shims.install()

#: ``setup()`` -> (loss_factory, extra_stats, extra_modules); must be picklable.
RankSetup = Callable[[], tuple[Any, Any, Any]]


def patch_all_gather_list() -> None:
    """OpenNMT-py's ``all_gather_list`` allocates ``torch.cuda.ByteTensor``s; on CPU use
    ``all_gather_object`` over the gloo group instead (same result: one item per rank)."""
    import onmt.utils.distributed as distributed

    def all_gather_list(data: Any, max_size: int = 4096) -> list[Any]:
        out: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(out, data)
        return out

    distributed.all_gather_list = all_gather_list


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_rank(*args: Any) -> None:
    """A spawned rank: train, then leave without the interpreter's teardown, which was seen
    to abort (SIGABRT) in torch/gloo after a finished run."""
    _rank_main(*args)
    os._exit(0)


def _rank_main(rank: int, world_size: int, port: int, opt: argparse.Namespace,
               setup: RankSetup | None, callbacks: dict[str, Any] | None,
               training: dict[str, Any]) -> Any:
    from kdnmt.onmt_bridge.devices import backend
    from kdnmt.onmt_bridge.training import run_training

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    device = training.get("device", "cpu")
    if device == "cuda":
        torch.cuda.set_device(rank)
    torch.distributed.init_process_group(backend(device), rank=rank, world_size=world_size)
    try:
        patch_all_gather_list()
        loss_factory, extra_stats, extra_modules = setup() if setup else (None, None, None)
        result = run_training(opt, loss_factory=loss_factory, extra_stats=extra_stats,
                              extra_modules=extra_modules, rank=rank, world_size=world_size,
                              **training, **(callbacks or {}))
        # Every rank is done before any closes its connections (gloo aborts otherwise).
        torch.distributed.barrier()
        return result
    finally:
        torch.distributed.destroy_process_group()


def run_data_parallel(opt: argparse.Namespace, world_size: int, setup: RankSetup | None,
                      training: dict[str, Any] | None = None, **callbacks: Any) -> Any:
    """Train with ``world_size`` processes; returns rank 0's result. ``training`` holds the
    keyword arguments of :func:`run_training` every rank gets (``device``, ``init_from``)."""
    training = training or {}
    port = _free_port()
    context = torch.multiprocessing.get_context("spawn")
    children = [context.Process(target=_child_rank,
                                args=(rank, world_size, port, opt, setup, None, training),
                                daemon=True)
                for rank in range(1, world_size)]
    for child in children:
        child.start()
    try:
        result = _rank_main(0, world_size, port, opt, setup, callbacks, training)
    except BaseException:
        for child in children:
            child.terminate()
        raise
    for child in children:
        child.join()
        if child.exitcode != 0:
            raise KdnmtError(f"data-parallel rank {children.index(child) + 1} failed "
                             f"(exit code {child.exitcode}); see its train.log.rankN")
    return result
