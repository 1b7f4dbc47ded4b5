"""What the benchmarks share: the repository root on sys.path, running the kdnmt CLI, and the
description of the machine every benchmark prints first (figures from different CPUs, or
CTranslate2 builds, are never compared)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing


def kdnmt(*args: object) -> None:
    """Run one kdnmt command in a child process (as a user would), quietly."""
    subprocess.run([sys.executable, "-m", "kdnmt", *map(str, args)], check=True,
                   stdout=subprocess.DEVNULL, cwd=REPO)


def cpu_description() -> dict[str, Any]:
    """The CPU model, the kernel-relevant flags it has, and the cores this process may use."""
    from kdnmt.devices import cpu_identity

    return {**cpu_identity(), "cores": len(os.sched_getaffinity(0)),
            "machine_cpus": os.cpu_count(), "kdnmt_threads": os.environ.get("KDNMT_THREADS")}


def machine_header(compute_types: dict[str, str] | None = None) -> str:
    """Lines naming this machine, CTranslate2, torch and (``compute_types``: what ran ->
    CTranslate2's resolved compute type) what each decoder computed with."""
    import ctranslate2
    import torch

    cpu = cpu_description()
    lines = [f"CPU: {cpu['cpu']}; flags: {' '.join(cpu['flags']) or '-'}; cores usable: "
             f"{cpu['cores']} of {cpu['machine_cpus']} (KDNMT_THREADS="
             f"{cpu['kdnmt_threads'] or 'unset'})",
             f"CTranslate2 {ctranslate2.__version__} (CPU compute types: "
             f"{', '.join(sorted(ctranslate2.get_supported_compute_types('cpu')))}; "
             f"GPUs it sees: {_ct2_gpus()}); torch {torch.__version__} "
             f"(threads {torch.get_num_threads()})"]
    for what, compute_type in (compute_types or {}).items():
        lines.append(f"compute type: {what}: {compute_type}")
    return "\n".join(lines)


def _ct2_gpus() -> int:
    import ctranslate2

    try:
        return int(ctranslate2.get_cuda_device_count())
    except RuntimeError:
        return 0


def prepare_demo_slice(work: Path, data: Path, teacher_dir: Path, train_lines: int,
                       valid_lines: int = 300) -> Path:
    """A run in ``work/run`` on the first ``train_lines`` training and ``valid_lines``
    validation pairs of the demo data (``data``: ``{split}.{de,en}.xz``; the validation pairs
    double as the test split), adopting ``teacher_dir``'s SentencePiece model and vocabulary,
    so no SentencePiece training is timed or varies between runs."""
    import lzma

    for split, n in (("train", train_lines), ("valid", valid_lines)):
        for lang in ("de", "en"):
            with lzma.open(data / f"{split}.{lang}.xz", "rt", encoding="utf-8") as handle:
                lines = handle.read().split("\n")[:n]
            (work / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = work / "run"
    kdnmt("prepare", "--run", run, "--src", "de", "--tgt", "en", "--train", work / "train",
          "--valid", work / "valid", "--test", work / "valid",
          "--teacher-checkpoint", teacher_dir / "teacher.pt",
          "--teacher-spm", teacher_dir / "spm.model")
    return run


def kdnmt_measured(*args: object, env: dict[str, str] | None = None) -> dict[str, float]:
    """Run one kdnmt command in a child process; its wall-clock seconds, CPU seconds and peak
    resident memory (MB), from the child's own resource usage."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "kdnmt", *map(str, args)], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.stderr:
        child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"kdnmt {' '.join(map(str, args))} failed:\n{stderr}")
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024}


def self_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
