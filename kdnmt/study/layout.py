"""The layout of a study directory, and what the runner and the reports share: the cells of a
grid, their paths (:class:`StudyDir`), and the eval rows a study reads back."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdnmt.errors import KdnmtError
from kdnmt.rundir import RunDir
from kdnmt.study.grid import GridSpec

#: Name of the teacher inside every run of a study.
TEACHER = "teacher"


@dataclass(frozen=True)
class Cell:
    """One student of the grid."""

    noise: str
    size: str
    method: str

    @property
    def name(self) -> str:
        """The model name inside its noise run ('+' is not allowed in model names)."""
        return f"{self.size}-{self.method.replace('+', '_')}"

    @property
    def label(self) -> str:
        return f"noise {self.noise} · {self.size} · {self.method}"


def cells_of(spec: GridSpec) -> list[Cell]:
    """Every cell, noise outermost, so each noise level is prepared only when reached."""
    return [Cell(n, s, m) for n in spec.noise for s in spec.sizes for m in spec.methods]


@dataclass(frozen=True)
class StudyDir:
    """Paths inside one study directory, as :class:`kdnmt.rundir.RunDir` names a run's::

        STUDY/settings.json, grid.yaml        what the study was started with
        STUDY/noise-LEVEL/                    one run directory per noise level
        STUDY/noise-LEVEL/study/CELL.json     a cell's state (time spent, finished)
        STUDY/noise-LEVEL/study/advice-P.json `kdnmt advise`'s measurement for preset P
        STUDY/study.csv, study.md, plots/     the reports

    Creating the object touches nothing on disk."""

    root: Path

    def noise_run(self, level: str) -> Path:
        return Path(self.root) / f"noise-{level}"

    def cell_state(self, cell: Cell) -> Path:
        return self.noise_run(cell.noise) / "study" / f"{cell.name}.json"

    def advice_cache(self, level: str, preset: str) -> Path:
        return self.noise_run(level) / "study" / f"advice-{preset}.json"


def read_json(path: Path) -> Any:
    """A JSON file the study wrote, or None if it is missing or unreadable (then redone)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def eval_rows(run: Path) -> list[dict[str, Any]]:
    """The eval rows of ``run`` that score the whole prepared test split: the study's tables
    compare cells on those only, never on a `--limit` subset or another `--test` set that the
    same report may also hold (rows of reports written before rows carried their test set and
    sentence count are taken as they are)."""
    run_dir = RunDir(Path(run))
    data = read_json(run_dir.reports_dir / "eval.json")
    rows = data.get("results") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        return []
    identity = _prepared_test(run_dir)
    return [r for r in rows if isinstance(r, dict) and (
        "test_id" not in r or identity is None
        or (r.get("test_id"), r.get("sentences")) == identity)]


def _prepared_test(run: RunDir) -> tuple[str, int] | None:
    """(test id, sentences) of eval on the whole prepared test split, or None if unknown."""
    from kdnmt.evaluate import prepared_test_identity

    try:
        return prepared_test_identity(run)
    except (KdnmtError, OSError):
        return None


def has_eval(rows: list[dict[str, Any]], name: str, beams: list[int], step: Any) -> bool:
    """Every beam of the grid is scored for model ``name`` at its current step."""
    return all(any(r.get("model") == name and r.get("beam") == b and r.get("step") == step
                   for r in rows) for b in beams)


# -- rows the report and the plots share ----------------------------------------------

def index_rows(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    return {(r["noise"], r["size"], r["method"], r["decoding"]): r for r in rows}


def size_order(spec: GridSpec, rows: list[dict[str, Any]]) -> list[str]:
    """Sizes smallest first (by the parameters of their trained students), grid order for ties
    and for sizes without a finished cell."""
    params: dict[str, int] = {}
    for r in rows:
        if r["size"] in spec.sizes and r.get("params"):
            params.setdefault(r["size"], r["params"])
    return sorted(spec.sizes, key=lambda s: (params.get(s, math.inf), spec.sizes.index(s)))


def params_text(value: Any) -> str:
    return "—" if value is None else f"{value / 1e6:.2f}M"
