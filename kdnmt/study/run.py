"""`kdnmt study`: Wei et al.'s token- vs sentence-level comparison, rerun on the user's data.

Wei et al. (2024, "Sentence-level or token-level? A comprehensive study on knowledge
distillation", arXiv 2404.14827) find token-level KD better in *simple* scenarios (large
student, clean text, teacher-forced decoding) and sentence-level KD better in *complex* ones
(small student, noisy text, beam search). A study runs that comparison as a grid, student size
× source noise × method × decoding (:mod:`kdnmt.study.grid`), through the same Python APIs the
commands use, so every cell is an ordinary model in an ordinary run directory::

    RUN/study.json                 the grid's fingerprint (a rerun with other settings is refused)
    RUN/grid.yaml                  the grid file of the last invocation
    RUN/input/                     the clean splits, cut to data.*_lines
    RUN/configs/SIZE.yaml          the training overrides of each student size
    RUN/teacher/                   a normal run with the teacher, when the study trains it
    RUN/noise-LEVEL/               a normal run: `prepare` (teacher adopted) of the splits with
        input/                     noise on the source side of train and test (valid stays
        generated/teacher/         clean: it is the clean reference `advise` compares against),
        models/SIZE-METHOD/        `generate` as the methods need, one student per cell,
        reports/eval.json          `eval` of the teacher and of every cell
        study/                     per-cell wall-clock, cached advice, noise counts
    RUN/study.csv, study.md, plots/    the outputs (kdnmt.study.report)

Reruns are cheap: a cell whose ``model.json`` exists and whose eval rows match its step is
skipped; an interrupted cell resumes from its last checkpoint with what is left of its time
budget; every step before the cells (noise, prepare, generate, teacher eval, advice) is skipped
when its output exists.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdnmt import __version__
from kdnmt.errors import KdnmtError, check, fail
from kdnmt.fileio import atomic_open, atomic_path, write_json, write_text
from kdnmt.rundir import SPLITS, RunDir
from kdnmt.study.grid import GridSpec, dump_yaml, stores_needed, student_overrides
from kdnmt.study.layout import (
    TEACHER,
    Cell,
    StudyDir,
    cells_of,
    eval_rows,
    has_eval,
    read_json,
)

#: A resumed cell whose time budget is (nearly) spent still gets this long, so that it can
#: save a final checkpoint and write its model.json instead of failing to finish.
MIN_RESUME_MINUTES = 0.1
#: How often (seconds) a training cell records its wall-clock, so a kill loses little of it.
STATE_EVERY = 15.0


class StudyObserver:
    """What a progress display hears; every method is a no-op here."""

    def stage(self, text: str) -> None:
        """A step outside the cells (noise, prepare, generate, eval, advice)."""

    def cells(self, done: int, total: int) -> None:
        """At the start: how many cells are already finished."""

    def cell_start(self, cell: Cell, resume: bool) -> None:
        """A cell starts training (``resume``: from its checkpoint)."""

    def cell_end(self, cell: Cell, seconds: float, trained: bool, info: dict[str, Any]) -> None:
        """A cell is finished (trained and evaluated, or only evaluated) in this invocation."""

    def train_start(self, config: Any, start_step: int) -> None:
        """Training of a cell (or of the teacher) begins at ``start_step``."""

    def train_report(self, report: Any) -> None:
        """A training report (kdnmt.onmt_bridge.training.TrainReport)."""

    def train_valid(self, report: Any) -> None:
        """A validation report."""


@dataclass
class StudyResult:
    total: int
    done: int
    trained: int
    stopped_early: bool
    outputs: dict[str, Path] = field(default_factory=dict)


# -- settings -------------------------------------------------------------------------------

def _check_settings(spec: GridSpec, root: Path) -> None:
    """Record the grid's fingerprint on the first run; refuse a rerun that changes it."""
    path = root / "study.json"
    fingerprint = spec.fingerprint()
    old = read_json(path) if path.exists() else None
    if path.exists():
        if not (isinstance(old, dict) and "fingerprint" in old):
            fail(f"{path} is corrupt: delete it only if the grid did not change")
        diff = [key for key in sorted(set(fingerprint) | set(old["fingerprint"]))
                if fingerprint.get(key) != old["fingerprint"].get(key)]
        check(not diff,
              f"{root} holds a study run with other settings ({', '.join(diff)} differ from "
              f"{path.name}): its finished cells would not be comparable; restore the grid "
              "or use another --run (sizes, noise, methods and decoding may change)")
    else:
        root.mkdir(parents=True, exist_ok=True)
        write_json(path, {"kdnmt_version": __version__,
                          "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                          "grid": str(spec.path.resolve()), "fingerprint": fingerprint})
    with atomic_path(root / "grid.yaml") as tmp:
        shutil.copyfile(spec.path, tmp)


# -- inputs -----------------------------------------------------------------------------------

def _clean_inputs(spec: GridSpec, root: Path) -> Path:
    """The clean splits cut to ``data.*_lines``, once; returns the directory."""
    from kdnmt.corpus.text import iter_parallel, resolve_side

    out = root / "input"
    for split in SPLITS:
        dest = {lang: out / f"{split}.{lang}" for lang in (spec.src, spec.tgt)}
        if all(p.is_file() for p in dest.values()):
            continue
        prefix = getattr(spec.data, split)
        limit = getattr(spec.data, f"{split}_lines")
        pairs = iter_parallel(resolve_side(prefix, spec.src), resolve_side(prefix, spec.tgt))
        with atomic_open(dest[spec.src]) as fs, atomic_open(dest[spec.tgt]) as ft:
            for number, (s, t) in enumerate(pairs):
                if limit and number >= limit:
                    break
                fs.write(s + "\n")
                ft.write(t + "\n")
    return out


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


class _Vocabulary:
    """The replacement words of the noise (the clean training source's words), read once."""

    def __init__(self, train_src: Path):
        self.path = train_src
        self.words: list[str] | None = None

    def get(self) -> list[str]:
        if self.words is None:
            from kdnmt.corpus.noise import words_of
            from kdnmt.corpus.text import iter_lines

            self.words = words_of(iter_lines(self.path))
        return self.words


def _noisy_inputs(spec: GridSpec, root: Path, level: str, clean: Path,
                  vocabulary: _Vocabulary, observer: StudyObserver) -> Path:
    """The splits of one noise level: noise on the source side of train and test (the same
    seed and replacement vocabulary for both, so `kdnmt noise --seed SEED` reproduces them);
    valid and every target side are copies of the clean ones."""
    from kdnmt.corpus.noise import NOISE_LEVELS, NoiseSpec, noise_file

    out = StudyDir(root).noise_run(level) / "input"
    report_path = StudyDir(root).noise_run(level) / "study" / "noise.json"
    report = read_json(report_path) or {}
    identity = NOISE_LEVELS[level] == NoiseSpec()
    for split in SPLITS:
        for lang in (spec.src, spec.tgt):
            dest = out / f"{split}.{lang}"
            if dest.is_file():
                continue
            source = clean / f"{split}.{lang}"
            if lang == spec.src and split != "valid" and not identity:
                observer.stage(f"noise {level}: noising {split}.{lang}")
                report[split] = noise_file(source, dest, level, spec.seed, vocabulary.get())
                write_json(report_path, report)
            else:
                _copy(source, dest)
    return out


# -- teacher, prepare, generate -------------------------------------------------------------

def _train_callbacks(observer: StudyObserver) -> dict[str, Any]:
    return {"on_start": observer.train_start, "on_report": observer.train_report,
            "on_valid": observer.train_valid}


def _teacher_source(spec: GridSpec, root: Path, clean: Path, observer: StudyObserver) -> Any:
    """The teacher every noise run adopts: the grid's, or one trained here on clean data."""
    from kdnmt.import_teacher import TeacherSource

    if spec.teacher.train is None:
        assert spec.teacher.spm is not None
        return TeacherSource(spm=spec.teacher.spm, checkpoint=spec.teacher.checkpoint,
                             vocab=spec.teacher.vocab, name=TEACHER)
    from kdnmt.models import checkpoint_path, load_model_info
    from kdnmt.prepare import PrepareOptions, prepare
    from kdnmt.train import TrainOptions, train

    wanted = spec.teacher.train
    run = RunDir(root / "teacher")
    if not run.manifest_path.is_file():
        prepare(PrepareOptions(run=run.root, src=spec.src, tgt=spec.tgt,
                               train=str(clean / "train"), valid=str(clean / "valid"),
                               test=str(clean / "test"), vocab_size=wanted.vocab_size),
                on_stage=lambda s: observer.stage(f"teacher run: {s}"))
    if not run.model_info_path(TEACHER).is_file():
        resume = (run.model_dir(TEACHER) / "config.yaml").is_file()
        observer.stage(f"training the teacher ({wanted.preset}, {wanted.steps} steps)")
        train(TrainOptions(run=run.root, name=TEACHER, preset=wanted.preset,
                           config_file=wanted.config, steps=wanted.steps,
                           max_minutes=wanted.max_minutes, resume=resume,
                           force=not resume and run.model_dir(TEACHER).exists(), role="teacher"),
              **_train_callbacks(observer))
    info = load_model_info(run, TEACHER)
    return TeacherSource(spm=run.spm_model, checkpoint=checkpoint_path(run, info),
                         vocab=run.vocab, name=TEACHER)


def _prepare_level(spec: GridSpec, run: Path, inputs: Path, teacher: Any,
                   observer: StudyObserver, level: str) -> None:
    from kdnmt.prepare import PrepareOptions, prepare

    if RunDir(run).manifest_path.is_file():
        return
    prepare(PrepareOptions(run=run, src=spec.src, tgt=spec.tgt, train=str(inputs / "train"),
                           valid=str(inputs / "valid"), test=str(inputs / "test"),
                           teacher=teacher),
            on_stage=lambda s: observer.stage(f"noise {level}: {s}"))


def _generate_level(spec: GridSpec, run: Path, observer: StudyObserver, level: str) -> None:
    """Pseudo-targets and the soft-target stores the grid's methods need, once."""
    if not spec.needs_generate():
        return
    from kdnmt.teacher.generate import GenerateOptions, generate

    gen_dir = RunDir(run).generated_dir(TEACHER)
    nbest = spec.nbest()
    base: dict[str, Any] = {"run": run, "teacher": TEACHER, "beam": spec.generate.beam,
                            "nbest": nbest, "select": "closest" if nbest > 1 else None,
                            "max_length": spec.generate.max_length}
    stores = stores_needed(spec.methods)
    along_refs, along_pseudo = "references" in stores, "pseudo-targets" in stores

    def progress(p: Any) -> None:
        observer.stage(f"noise {level}: generate, {p.stage} {p.done:,}/{p.total:,}")

    if not (gen_dir / "manifest.json").is_file() or (
            along_refs and not (gen_dir / "soft-references" / "meta.json").is_file()):
        generate(GenerateOptions(**base, soft_targets=spec.generate.soft_targets if along_refs
                                 else 0, soft_along="references"), progress)
    if along_pseudo and not (gen_dir / "soft-pseudo-targets" / "meta.json").is_file():
        generate(GenerateOptions(**base, soft_targets=spec.generate.soft_targets,
                                 soft_along="pseudo-targets"), progress)


def _evaluate(spec: GridSpec, run: Path, name: str, observer: StudyObserver) -> None:
    from kdnmt.evaluate import EvalOptions, evaluate
    from kdnmt.models import load_model_info

    info = load_model_info(RunDir(run), name)
    if has_eval(eval_rows(run), name, spec.beams, info.get("step")):
        return
    evaluate(EvalOptions(run=run, models=[name], beams=tuple(spec.beams)),
             on_progress=observer.stage)


def _advise_level(spec: GridSpec, root: Path, level: str, observer: StudyObserver) -> None:
    """`kdnmt advise` once per (noise level, student preset), cached: what the study then
    checks against the measured best method."""
    if not spec.advise.enabled:
        return
    try:
        from kdnmt.study.advise import advise
    except ImportError:  # an installation without the advise command
        return
    for preset in dict.fromkeys(spec.preset_of(s) for s in spec.sizes):
        path = StudyDir(root).advice_cache(level, preset)
        if path.is_file():
            continue
        observer.stage(f"noise {level}: advice for a {preset} student")
        try:
            advice = advise(StudyDir(root).noise_run(level), preset, teacher=TEACHER,
                            sample=spec.advise.sample, probe_steps=spec.advise.probe_steps,
                            on_progress=observer.stage)
            data: dict[str, Any] = advice.to_dict()
        except KdnmtError as exc:  # advice is a by-product: record why, go on with the grid
            data = {"method": None, "error": str(exc)}
        write_json(path, data)


# -- cells ----------------------------------------------------------------------------------

def cell_status(spec: GridSpec, root: Path, cell: Cell,
                rows: dict[str, list[dict[str, Any]]] | None = None) -> str:
    """'done' (trained and evaluated at its step), 'eval' (trained) or 'train'."""
    run = StudyDir(root).noise_run(cell.noise)
    info = read_json(RunDir(run).model_info_path(cell.name))
    if not isinstance(info, dict):
        return "train"
    found = rows.get(cell.noise) if rows is not None else None
    if found is None:
        found = eval_rows(run)
        if rows is not None:
            rows[cell.noise] = found
    return "done" if has_eval(found, cell.name, spec.beams, info.get("step")) else "eval"


def _student_config(spec: GridSpec, root: Path, size: str) -> Path:
    path = root / "configs" / f"{size}.yaml"
    text = dump_yaml(student_overrides(spec, size))
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_text(path, text)
    return path


def _train_cell(spec: GridSpec, root: Path, cell: Cell, observer: StudyObserver) -> None:
    """Distil one cell, resuming it if it was interrupted, within its time budget."""
    from kdnmt.distill import DistillOptions, distill

    run = RunDir(StudyDir(root).noise_run(cell.noise))
    model_dir = run.model_dir(cell.name)
    resume = (model_dir / "config.yaml").is_file()
    state_path = StudyDir(root).cell_state(cell)
    state = read_json(state_path) or {}
    spent = float(state.get("seconds", 0.0))
    sessions = int(state.get("sessions", 0))
    max_minutes = spec.budget.max_minutes
    if max_minutes:
        max_minutes = max(max_minutes - spent / 60.0, MIN_RESUME_MINUTES)
    opts = DistillOptions(run=run.root, name=cell.name, method=cell.method,
                          preset=spec.preset_of(cell.size), teacher=TEACHER,
                          steps=spec.budget.steps, max_minutes=max_minutes,
                          config_file=_student_config(spec, root, cell.size), resume=resume,
                          force=not resume and model_dir.exists(),
                          hparams=dict(spec.method_options.get(cell.method, {})))
    start = time.monotonic()
    saved = [start]

    def save() -> None:
        saved[0] = time.monotonic()
        write_json(state_path, {"seconds": round(spent + saved[0] - start, 1),
                                "sessions": sessions + 1, "budget": {
                                    "steps": spec.budget.steps,
                                    "max_minutes": spec.budget.max_minutes}})

    def on_report(report: Any) -> None:
        if time.monotonic() - saved[0] >= STATE_EVERY:
            save()
        observer.train_report(report)

    observer.cell_start(cell, resume)
    try:
        distill(opts, on_report=on_report, on_valid=observer.train_valid,
                on_start=observer.train_start)
    finally:
        save()


def _scenario_levels(spec: GridSpec) -> Iterator[tuple[str, list[Cell]]]:
    for level in spec.noise:
        yield level, [c for c in cells_of(spec) if c.noise == level]


def run_study(spec: GridSpec, root: Path, observer: StudyObserver | None = None,
              max_cells: int | None = None) -> StudyResult:
    """Run (or continue) the study of ``spec`` in ``root``; writes the reports at the end.

    ``max_cells``: train at most this many cells in this invocation (then stop cleanly, with
    the reports of what is finished): a study can be spread over several sessions."""
    from kdnmt.study.report import write_reports

    check(max_cells is None or max_cells >= 0, f"--max-cells must be >= 0, got {max_cells}")
    observer = observer or StudyObserver()
    root = Path(root)
    check(not root.exists() or root.is_dir(), f"{root} exists and is not a directory")
    _check_settings(spec, root)
    all_cells = cells_of(spec)
    rows: dict[str, list[dict[str, Any]]] = {}
    status = {c: cell_status(spec, root, c, rows) for c in all_cells}
    done = sum(s == "done" for s in status.values())
    observer.cells(done, len(all_cells))
    trained = 0
    stopped = False
    teacher = None
    clean: Path | None = None
    vocabulary: _Vocabulary | None = None
    for level, cells in _scenario_levels(spec):
        if max_cells is not None and trained >= max_cells and any(
                status[c] == "train" for c in cells):
            stopped = True
            break
        run = StudyDir(root).noise_run(level)
        if clean is None:
            observer.stage("cutting the clean splits")
            clean = _clean_inputs(spec, root)
            vocabulary = _Vocabulary(clean / f"train.{spec.src}")
        if teacher is None:
            teacher = _teacher_source(spec, root, clean, observer)
        assert vocabulary is not None
        inputs = _noisy_inputs(spec, root, level, clean, vocabulary, observer)
        _prepare_level(spec, run, inputs, teacher, observer, level)
        if any(status[c] == "train" for c in cells):
            _generate_level(spec, run, observer, level)
        observer.stage(f"noise {level}: evaluating the teacher")
        _evaluate(spec, run, TEACHER, observer)
        _advise_level(spec, root, level, observer)
        for cell in cells:
            if status[cell] == "done":
                continue
            if status[cell] == "train":
                if max_cells is not None and trained >= max_cells:
                    stopped = True
                    break
            start = time.monotonic()
            needs_training = status[cell] == "train"
            if needs_training:
                _train_cell(spec, root, cell, observer)
                trained += 1
            observer.stage(f"{cell.label}: evaluating")
            _evaluate(spec, run, cell.name, observer)
            status[cell] = "done"
            done += 1
            info = read_json(RunDir(run).model_info_path(cell.name)) or {}
            observer.cell_end(cell, time.monotonic() - start, needs_training, info)
        if stopped:
            break
    observer.stage("writing study.csv, study.md and the plots")
    outputs = write_reports(spec, root)
    return StudyResult(total=len(all_cells), done=done, trained=trained, stopped_early=stopped,
                       outputs=outputs)
