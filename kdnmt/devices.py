"""Devices and CTranslate2 compute types: one definition for every command.

Two engines run on a device. CTranslate2 decodes (`generate`, `eval`, `translate`, `export`'s
smoke test); PyTorch runs OpenNMT-py's trainer (`train`, `distill`) and the teacher-forced
forward passes (soft targets, `eval`'s teacher-forced columns). Each one has its own view of
the GPUs (a CPU build of torch sees none even where CTranslate2 sees several), so each side is
checked on its own, before anything is converted, written or deleted: ``--device cuda`` on a
machine without a usable GPU is one clear line instead of a CUDA error from deep inside.

Nothing is imported at module level: `kdnmt translate` must not pay for torch, and a
command that never touches the GPU must not pay for CTranslate2's CUDA probe either.
"""

from __future__ import annotations

import platform
from typing import Any

from kdnmt.errors import KdnmtError, check

DEVICES = ("cpu", "cuda")

#: CTranslate2's compute types (``auto`` left out: what it picks depends on the machine, and
#: kdnmt records what ran). ``default`` is kdnmt's per-device default, :func:`resolve`.
COMPUTE_TYPES = ("default", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
                 "float16", "bfloat16", "float32")

#: ``default`` on a GPU: the first of these that the GPU supports (half precision where the
#: conversion is int8 or float, float32 on a GPU without efficient half precision).
_CUDA_DEFAULTS = {"int8": ("int8_float16", "int8_float32", "float32"),
                  "float": ("float16", "float32")}


def check_device_name(device: str) -> str:
    """``device`` if it is one kdnmt knows; the one error line otherwise."""
    check(device in DEVICES, f"--device must be one of {', '.join(DEVICES)}, got '{device}'")
    return device


def torch_gpu_count() -> int:
    """GPUs torch can use here (0 with a CPU build of torch)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_torch_device(device: str, what: str) -> str:
    """``device`` if torch can run ``what`` (a forward pass) on it."""
    check_device_name(device)
    if device == "cuda":
        check(torch_gpu_count() >= 1,
              f"--device cuda: {what} runs on PyTorch, and torch sees no GPU (a CPU build of "
              "torch, or no visible GPU)")
    return device


def ct2_gpu_count() -> int:
    """GPUs CTranslate2 can use here (0 where its CUDA runtime finds no device or the driver
    is older than that runtime)."""
    import ctranslate2

    try:
        return int(ctranslate2.get_cuda_device_count())
    except RuntimeError:
        return 0


def check_ct2_device(device: str) -> str:
    """``device`` if CTranslate2 can decode on it here."""
    check_device_name(device)
    if device == "cuda":
        check(ct2_gpu_count() >= 1,
              "--device cuda: CTranslate2 sees no GPU (no visible CUDA device, or a driver "
              "older than its CUDA runtime)")
    return device


def supported_compute_types(device: str) -> set[str]:
    """What CTranslate2 computes efficiently on ``device`` here."""
    import ctranslate2

    try:
        return set(ctranslate2.get_supported_compute_types(device))
    except (RuntimeError, ValueError) as exc:
        raise KdnmtError(f"CTranslate2 cannot use {device} here: {exc}") from None


def check_compute_type_name(compute_type: str) -> str:
    check(compute_type in COMPUTE_TYPES,
          f"--compute-type must be one of {', '.join(COMPUTE_TYPES)}, got '{compute_type}'")
    return compute_type


def resolve(device: str, compute_type: str, quantization: str) -> str:
    """The CTranslate2 compute type to load a ``quantization`` conversion with on ``device``.

    ``default`` on the CPU is CTranslate2's own ``default`` (the conversion's type: int8 for
    kdnmt's int8 conversions, exactly as before devices were an option); on a GPU it is half
    precision (``int8_float16`` for an int8 conversion, ``float16`` otherwise) where the GPU
    supports it. An explicit type is checked against what CTranslate2 supports on the device,
    so float16 on a CPU is one clear line rather than CTranslate2's silent fallback."""
    check_compute_type_name(compute_type)
    if compute_type == "default" and device == "cpu":
        return "default"
    supported = supported_compute_types(device)
    if compute_type == "default":
        family = "int8" if quantization.startswith("int8") else "float"
        return next(c for c in _CUDA_DEFAULTS[family] if c in supported or c == "float32")
    if compute_type not in supported:
        import ctranslate2

        raise KdnmtError(f"--compute-type {compute_type} is not supported on {device} by "
                         f"CTranslate2 {ctranslate2.__version__} here (supported: "
                         f"{', '.join(sorted(supported))})")
    return compute_type


#: The CPU flags that decide which kernels CTranslate2 (oneDNN, its own GEMMs) and torch run:
#: two CPUs that differ in them compute other roundings, so training on them follows other
#: trajectories from the same seed (docs/results.md measured 1.6 BLEU between two such `ce`s).
KERNEL_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8",
                "amx_bf16", "avx_vnni", "neon", "asimd")


def cpu_identity(cpuinfo: str = "/proc/cpuinfo") -> dict[str, Any]:
    """This CPU's model name and the kernel-relevant flags it has (Linux's /proc/cpuinfo;
    the platform's processor name and no flags elsewhere)."""
    model: str = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open(cpuinfo, encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model") and model in (
                        "", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"cpu": model, "flags": [f for f in KERNEL_FLAGS if f in flags]}


def training_machine(device: str, precision: str) -> dict[str, Any]:
    """What a training sitting ran on, for model.json: the same command on another CPU (or
    torch, or thread count) computes other roundings and ends at another model, so a figure
    is only reproducible together with this."""
    import torch

    record: dict[str, Any] = {**cpu_identity(), "torch": torch.__version__,
                              "threads": torch.get_num_threads(), "device": device,
                              "precision": precision}
    if device == "cuda" and torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name(0)
    return record


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bfloat16 natively (avx512_bf16 or AMX): only then does
    ``training.precision: bf16`` make training faster; elsewhere oneDNN emulates it and it is
    slower than float32. Read from the kernel's CPU flags (Linux); False where they are not."""
    try:
        with open(cpuinfo, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: str, cpuinfo: str = "/proc/cpuinfo") -> str:
    """``training.precision`` as this machine will run it: ``auto`` is ``bf16`` when training
    on a CPU with native bfloat16 (where it is faster at the same loss: docs/benchmarks.md)
    and ``fp32`` otherwise (emulated bfloat16 is slower; a GPU has OpenNMT-py's own mixed
    precision). So recipes can ask for the fast path without reading /proc/cpuinfo."""
    if precision != "auto":
        return precision
    return "bf16" if device == "cpu" and cpu_has_native_bf16(cpuinfo) else "fp32"
