"""The format of a resumable teacher release, shared by ``release_teacher.py --resumable``
(which writes it) and ``continue_teacher.py`` (which reads it back into a run).

Why a format at all: a teacher worth distilling needs more CPU hours than one sitting, and a
run directory does not travel. A release does: float16 weights, OpenNMT-py's step counters
(without the Adam moments, which are twice the weights) and the model directory's logs.
"""

from __future__ import annotations

from pathlib import Path

from kdnmt.onmt_bridge.checkpoint import trained_steps

#: Where a resumable release keeps the model directory's files that a resumed run reads.
TRAINING_DIR = "training"
TRAINING_FILES = ("config.yaml", "metrics.csv", "curve.csv")


def steps_only(optim: object, who: str) -> dict[str, int]:
    """OpenNMT-py's optimizer state without the Adam moments: its ``load_state_dict`` restores
    the step counters (schedule and numbering) and leaves fresh moments when these are all.
    Exits with one line, naming ``who`` complains, when there is no step to keep."""
    if not isinstance(optim, dict) or "training_step" not in optim:
        raise SystemExit(f"{who}: the checkpoint has no optimizer step counters "
                         "(a resumable release comes from a training checkpoint, "
                         "release_teacher.py --resumable)")
    return {key: int(optim[key]) for key in ("training_step", "decay_step") if key in optim}


def last_step(optim: object, who: str) -> int:
    """The update a release stopped after (the bridge's reading of OpenNMT-py's counter)."""
    steps_only(optim, who)  # one line and exit where there is no counter
    step = trained_steps(optim)
    assert step is not None
    return step


def check_release(release: Path, who: str) -> None:
    """A resumable release has its training config beside the weights; exit with one line if not."""
    if not (release / TRAINING_DIR / "config.yaml").is_file():
        raise SystemExit(f"{who}: {release / TRAINING_DIR} has no config.yaml "
                         "(not a resumable release: release_teacher.py --resumable)")
