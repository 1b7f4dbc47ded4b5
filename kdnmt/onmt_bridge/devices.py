"""Where training runs: ``cpu`` (the default, gloo between ranks) or ``cuda`` (one GPU per
rank, NCCL), the two ways OpenNMT-py's trainer can be driven.

The checks happen before anything is built, so ``--device cuda`` on a machine without enough
GPUs is one clear error instead of a CUDA traceback from deep inside OpenNMT-py.
"""

from __future__ import annotations

from kdnmt.devices import DEVICES, check_device_name, torch_gpu_count
from kdnmt.errors import KdnmtError

__all__ = ["DEVICES", "backend", "check_device", "device_id"]


def check_device(device: str, world_size: int) -> str:
    """``device`` if it can run ``world_size`` ranks here; a :class:`KdnmtError` otherwise.
    The device names and the GPU count are :mod:`kdnmt.devices`', shared with the commands
    that decode."""
    check_device_name(device)
    if device == "cuda":
        available = torch_gpu_count()
        if available < world_size:
            raise KdnmtError(
                f"--device cuda needs {world_size} GPU(s) (one per rank, --world-size), but "
                f"torch sees {available}" + ("" if available else
                                             " (a CPU build of torch, or no visible GPU)"))
    return device


def device_id(device: str, rank: int) -> int:
    """OpenNMT-py's ``device_id``: the GPU ordinal of ``rank``, or -1 for the CPU."""
    return rank if device == "cuda" else -1


def backend(device: str) -> str:
    """The torch.distributed backend between ranks on ``device``."""
    return "nccl" if device == "cuda" else "gloo"
