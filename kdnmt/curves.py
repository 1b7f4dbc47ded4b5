"""Learning curves: greedy BLEU and chrF of a model's checkpoints during training, and the plot
of every model's curve in a run (`kdnmt plot`).

Validation perplexity says how well a student fits its targets, not how well it translates, and
sequence-level KD's main claim is faster convergence in BLEU. So at checkpoint saves the
trainer hands the checkpoint just published to :class:`CurveRecorder`, which converts it with
CTranslate2's converter (int8, a temporary directory inside the model directory, removed
afterwards), decodes the first ``training.bleu_sentences`` pairs of the run's valid split
greedily, scores them with sacrebleu as `kdnmt eval` does (BLEU with the target language's
tokenizer, chrF) and rewrites
``models/NAME/curve.csv`` atomically with the new row. It reads checkpoints from disk only,
never the model being trained or the random state, so training is unchanged by it.

A point is taken at the first checkpoint save at or after each multiple of
``training.bleu_every`` updates, and at the last checkpoint of a training session. A resumed
run drops the rows after its checkpoint's step and, when a kill fell between a checkpoint and
its point, scores that checkpoint first: the curve then has each step once.
"""

from __future__ import annotations

import csv
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdnmt.errors import KdnmtError, check
from kdnmt.fileio import TMP_PREFIX, atomic_open, atomic_path
from kdnmt.metrics import read_rows, truncate_after
from kdnmt.rundir import RunDir, check_name

CURVE_FILE = "curve.csv"
CURVE_COLUMNS = ("step", "bleu", "chrf", "sentences", "wall_s")
CURVES_PNG = "curves.png"


def valid_slice(run: RunDir, src: str, tgt: str, sentences: int) -> tuple[list[str], list[str]]:
    """The first ``sentences`` (source, reference) pairs of the run's cleaned valid split."""
    sources: list[str] = []
    references: list[str] = []
    src_path, tgt_path = run.text("valid", src), run.text("valid", tgt)
    check(src_path.is_file() and tgt_path.is_file(),
          f"the learning curve needs the valid split: {src_path} or {tgt_path} is missing "
          "(set training.bleu_every: 0 to train without it)")
    with open(src_path, encoding="utf-8") as fs, open(tgt_path, encoding="utf-8") as ft:
        for s, t in zip(fs, ft, strict=False):
            sources.append(s.rstrip("\n"))
            references.append(t.rstrip("\n"))
            if len(sources) >= sentences:
                break
    check(sources, f"the valid split {src_path} is empty: no learning curve can be scored")
    return sources, references


@dataclass
class CurvePoint:
    step: int
    bleu: float
    chrf: float
    sentences: int
    wall_s: float


class CurveRecorder:
    """Scores checkpoints into ``curve.csv`` (the ``on_checkpoint`` hook of the bridge)."""

    def __init__(self, run: RunDir, model_dir: Path, *, every: int, sentences: int,
                 max_length: int, start_step: int, src: str, tgt: str,
                 on_point: Callable[[CurvePoint], None] = lambda p: None):
        self.run = run
        self.on_point = on_point
        self.model_dir = Path(model_dir)
        self.path = self.model_dir / CURVE_FILE
        self.every = every
        self.max_length = max_length
        self.sources, self.references = valid_slice(run, src, tgt, sentences)
        from kdnmt.evaluate import metric_factory

        # BLEU as `kdnmt eval` scores it (the target language's tokenizer), checked before
        # training starts rather than at the first checkpoint.
        self.metrics = metric_factory(tgt)
        truncate_after(self.path, start_step)
        self.steps = {int(row["step"]) for row in read_rows(self.path)}

    def due(self, step: int, final: bool) -> bool:
        """Whether ``step`` gets a point: not scored yet, and the last checkpoint of a session
        or the first save at or after a multiple of ``every``."""
        if step in self.steps or step <= 0:
            return False
        last = max((s for s in self.steps if s < step), default=0)
        return final or step // self.every > last // self.every

    def __call__(self, step: int, checkpoint: Path, final: bool) -> CurvePoint | None:
        if not self.due(step, final):
            return None
        point = self.score(step, checkpoint)
        self._write(point)
        self.on_point(point)
        return point

    def score(self, step: int, checkpoint: Path) -> CurvePoint:
        from kdnmt.onmt_bridge.convert import convert_checkpoint
        from kdnmt.translation import Translator, cpu_cores

        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=TMP_PREFIX + "curve.",
                                         dir=self.model_dir) as scratch:
            ct2_dir = Path(scratch) / "ct2"
            convert_checkpoint(checkpoint, ct2_dir, "int8")
            with Translator(ct2_dir, self.run.spm_model, beam=1, max_length=self.max_length,
                            # one replica on every core this process may use: the trainer's
                            # threads are idle while the point is scored
                            inter_threads=1, intra_threads=cpu_cores()) as translator:
                hypotheses = translator.translate(self.sources)
        bleu_metric, chrf_metric = self.metrics()
        bleu = bleu_metric.corpus_score(hypotheses, [self.references]).score
        chrf = chrf_metric.corpus_score(hypotheses, [self.references]).score
        return CurvePoint(step, round(float(bleu), 2), round(float(chrf), 2),
                          len(self.sources), round(time.perf_counter() - start, 3))

    def _write(self, point: CurvePoint) -> None:
        rows: list[dict[str, Any]] = [r for r in read_rows(self.path)
                                      if int(r["step"]) != point.step]
        rows.append({"step": point.step, "bleu": point.bleu, "chrf": point.chrf,
                     "sentences": point.sentences, "wall_s": point.wall_s})
        rows.sort(key=lambda r: int(r["step"]))
        with atomic_open(self.path) as handle:
            writer = csv.DictWriter(handle, fieldnames=CURVE_COLUMNS, lineterminator="\n",
                                    extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        self.steps.add(point.step)


# -- reading and plotting ---------------------------------------------------------------------

def read_curve(path: Path) -> list[CurvePoint]:
    """The points of a ``curve.csv``, by step; a damaged file is a clear error."""
    points = []
    for number, row in enumerate(read_rows(path), start=2):
        try:
            points.append(CurvePoint(int(row["step"]), float(row["bleu"]), float(row["chrf"]),
                                     int(row["sentences"]), float(row["wall_s"])))
        except (KeyError, TypeError, ValueError):
            raise KdnmtError(f"{path} line {number} is not a curve row "
                             f"({', '.join(CURVE_COLUMNS)})") from None
    return sorted(points, key=lambda p: p.step)


def _model_info(run: RunDir, name: str) -> dict[str, Any]:
    """The model's model.json, or {} while it is still training (no model.json yet)."""
    import json

    try:
        info = json.loads(run.model_info_path(name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def warm_start(run: RunDir, name: str) -> tuple[str, int] | None:
    """(parent, its step) when ``name`` started from another model of the run (`--init-from`):
    its updates continue the parent's, so its curve is drawn from the parent's step on. Read
    from model.json, or from the ``init_from.json`` record while it is still training."""
    import json

    from kdnmt.train import INIT_RECORD

    record = _model_info(run, name).get("init_from")
    if not isinstance(record, dict):
        try:
            record = json.loads((run.model_dir(name) / INIT_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
    parent, step = (record.get("name"), record.get("step")) if isinstance(record, dict) \
        else (None, None)
    return (parent, step) if isinstance(parent, str) and isinstance(step, int) else None


def _label(run: RunDir, name: str) -> str:
    """The model name, with its KD method when it has one that the name does not say, and the
    model it continues."""
    method = _model_info(run, name).get("method")
    label = f"{name} ({method})" if method and method != name else name
    start = warm_start(run, name)
    return label if start is None else f"{label}, from {start[0]} at {start[1]:,}"


def plotted_series(run: RunDir, curves: dict[str, list[CurvePoint]]
                   ) -> dict[str, tuple[list[int], list[float], list[float]]]:
    """label -> (updates, BLEU, chrF) as drawn: a warm-started model's steps are counted from
    its parent's, so a fine-tuning stage continues the curve of the model it started from."""
    series = {}
    for name, points in curves.items():
        start = warm_start(run, name)
        offset = start[1] if start is not None else 0
        series[_label(run, name)] = ([offset + p.step for p in points], [p.bleu for p in points],
                                     [p.chrf for p in points])
    return series


def collect_curves(run: RunDir, models: list[str] | None) -> dict[str, list[CurvePoint]]:
    """Every model's curve (or the named models', in their order); errors when none has one,
    or when a named model has none."""
    run.load_manifest()
    if models is None:
        names = sorted(p.parent.name for p in run.models_dir.glob(f"*/{CURVE_FILE}")) \
            if run.models_dir.is_dir() else []
    else:
        check(models, "--models is empty")
        names = []
        for name in models:
            check_name(name)
            check(run.model_dir(name).is_dir(), f"unknown model '{name}' in {run.root}")
            check((run.model_dir(name) / CURVE_FILE).is_file(),
                  f"model '{name}' has no learning curve ({run.model_dir(name) / CURVE_FILE}): "
                  "it was trained with training.bleu_every: 0, or before its first checkpoint")
            check(name not in names, f"--models names '{name}' twice")
            names.append(name)
    curves = {name: read_curve(run.model_dir(name) / CURVE_FILE) for name in names}
    if models is not None:
        empty = [name for name, points in curves.items() if not points]
        check(not empty, f"model '{empty[0] if empty else ''}' has no learning-curve point yet "
                         "(its first checkpoint is still to come)")
    curves = {name: points for name, points in curves.items() if points}
    check(curves, f"no model of {run.root} has a learning curve (models/NAME/{CURVE_FILE}): "
                  "train or distill with training.bleu_every > 0 first")
    return curves


def plot_curves(run: RunDir, curves: dict[str, list[CurvePoint]], dest: Path) -> Path:
    """BLEU and chrF against training updates, one line per model, written atomically.
    The format follows the file name (.png, .svg or .pdf)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fmt = dest.suffix.lower().lstrip(".")
    check(fmt in ("png", "svg", "pdf"), f"--out {dest}: the plot is written as .png, .svg or "
                                        f".pdf, not '{dest.suffix or 'no extension'}'")
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    sentences: set[int] = set()
    for label, (steps, bleu, chrf) in plotted_series(run, curves).items():
        axes[0].plot(steps, bleu, marker="o", label=label)
        axes[1].plot(steps, chrf, marker="o", label=label)
    for points in curves.values():
        sentences.update(p.sentences for p in points)
    for ax, metric in zip(axes, ("BLEU", "chrF"), strict=True):
        ax.set_xlabel("training updates\n(a warm-started model's counted from its parent's)"
                      if any(warm_start(run, n) for n in curves) else "training updates")
        ax.set_ylabel(f"{metric} (greedy)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    counts = ", ".join(str(n) for n in sorted(sentences))
    fig.suptitle(f"Learning curves of {run.root.name}: first {counts} valid sentences")
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format=fmt, dpi=110)
    return dest


def best_point(points: list[CurvePoint]) -> CurvePoint:
    """The point with the highest BLEU (the earliest of equal ones)."""
    return max(points, key=lambda p: (p.bleu, -p.step))
