"""Teacher-side artefacts for distillation.

``select`` picks the n-best hypothesis closest to the reference (sequence-level interpolation);
``store`` keeps the teacher's top-k soft targets on disk, memory-mapped, for token-level KD.
Nothing heavy is imported here so that importing a submodule stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["select_closest"]


def __getattr__(name: str) -> Any:
    """``kdnmt.teacher.select_closest``, the public API of seq-inter selection, imported on
    first use so that ``import kdnmt.teacher`` does not load sacrebleu."""
    if name == "select_closest":
        from kdnmt.teacher.select import select_closest

        return select_closest
    raise AttributeError(f"module 'kdnmt.teacher' has no attribute {name!r}")
