"""The study's plots (PNG, matplotlib without pyplot): BLEU against student size and against
source noise per method, and the hybrid gate's mean with its quantile band over training."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from kdnmt.fileio import atomic_path
from kdnmt.rundir import RunDir
from kdnmt.study.grid import GridSpec
from kdnmt.study.layout import TEACHER, StudyDir, cells_of, index_rows, params_text, size_order


def _figure(rows: int, cols: int) -> Any:
    """A Figure on the Agg canvas, without pyplot: no display, no global backend change."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * cols + 0.6, 3.2 * rows + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _save(fig: Any, dest: Path) -> Path:
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return dest


def _plot_lines(ax: Any, xs: list[int], series: dict[str, list[float | None]]) -> None:
    for method, ys in series.items():
        points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)


def plot_bleu_vs_size(spec: GridSpec, rows: list[dict[str, Any]], dest: Path) -> Path | None:
    index = index_rows(rows)
    sizes = size_order(spec, rows)
    methods = [m for m in spec.methods if any(r["method"] == m for r in rows)]
    if not methods:
        return None
    fig, axes = _figure(len(spec.decoding), len(spec.noise))
    for i, d in enumerate(spec.decoding):
        for j, level in enumerate(spec.noise):
            ax = axes[i][j]
            _plot_lines(ax, list(range(len(sizes))), {
                m: [index[(level, s, m, d)]["bleu"] if (level, s, m, d) in index else None
                    for s in sizes] for m in methods})
            labels = []
            for s in sizes:
                params = next((r["params"] for r in rows if r["size"] == s and r.get("params")),
                              None)
                labels.append(f"{s}\n{params_text(params)}")
            ax.set_xticks(range(len(sizes)), labels)
            ax.set_xlim(-0.5, len(sizes) - 0.5)
            ax.set_title(f"noise {level} · {d}")
            ax.set_ylabel("BLEU")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.suptitle("BLEU vs student size")
    return _save(fig, dest)


def plot_bleu_vs_noise(spec: GridSpec, rows: list[dict[str, Any]], dest: Path) -> Path | None:
    index = index_rows(rows)
    sizes = size_order(spec, rows)
    methods = [m for m in spec.methods if any(r["method"] == m for r in rows)]
    if not methods:
        return None
    fig, axes = _figure(len(spec.decoding), len(sizes))
    xs = list(range(len(spec.noise)))
    for i, d in enumerate(spec.decoding):
        for j, size in enumerate(sizes):
            ax = axes[i][j]
            _plot_lines(ax, xs, {m: [index[(lvl, size, m, d)]["bleu"]
                                     if (lvl, size, m, d) in index else None
                                     for lvl in spec.noise] for m in methods})
            teacher = [index[(lvl, TEACHER, TEACHER, d)]["bleu"]
                       if (lvl, TEACHER, TEACHER, d) in index else None for lvl in spec.noise]
            points = [(x, y) for x, y in zip(xs, teacher, strict=True) if y is not None]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], linestyle="--",
                        color="grey", label="teacher")
            ax.set_xticks(xs, spec.noise)
            ax.set_xlim(-0.5, len(xs) - 0.5)
            ax.set_xlabel("noise level")
            ax.set_title(f"size {size} · {d}")
            ax.set_ylabel("BLEU")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.suptitle("BLEU vs source noise")
    return _save(fig, dest)


def read_gate(path: Path) -> list[tuple[int, float, float | None, float | None]]:
    """(step, gate mean, 10% quantile, 90% quantile) from a hybrid student's kd_stats.csv; the
    quantiles are None in files written before they were logged. A resumed run appends the
    steps after its last checkpoint again: the later value of a step wins."""
    if not path.is_file():
        return []
    by_step: dict[int, tuple[float, float | None, float | None]] = {}

    def number(record: dict[str, str], key: str) -> float | None:
        try:
            return float(record[key])
        except (KeyError, TypeError, ValueError):
            return None

    with open(path, encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            try:
                step = int(record["step"])
            except (KeyError, TypeError, ValueError):
                continue
            mean = number(record, "gate_mean")
            if mean is not None:
                by_step[step] = (mean, number(record, "gate_p10"), number(record, "gate_p90"))
    return [(step, *values) for step, values in sorted(by_step.items())]


def plot_hybrid_gate(spec: GridSpec, root: Path, dest: Path) -> Path | None:
    """The gate's mean over training per hybrid cell, with the band between its 10% and 90%
    quantiles (the spread across sentences: a saturated gate has none)."""
    curves = []
    for cell in cells_of(spec):
        if cell.method != "hybrid":
            continue
        points = read_gate(RunDir(StudyDir(root).noise_run(cell.noise)).model_dir(cell.name)
                           / "kd_stats.csv")
        if points:
            curves.append((f"{cell.size} · noise {cell.noise}", points))
    if not curves:
        return None
    fig, axes = _figure(1, 1)
    ax = axes[0][0]
    for label, points in curves:
        (line,) = ax.plot([p[0] for p in points], [p[1] for p in points], label=label)
        band = [p for p in points if p[2] is not None and p[3] is not None]
        if band:
            ax.fill_between([p[0] for p in band], [p[2] for p in band], [p[3] for p in band],
                            color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("training step")
    ax.set_ylabel("gate g (share of token-level loss)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("hybrid: the gate's mean, and its 10-90% quantile band, over training")
    return _save(fig, dest)
