"""`kdnmt distill`: a student trained with one of the KD methods, on OpenNMT-py's trainer.

Each method is a choice of training data and of loss, declared once in the method registry
(:data:`kdnmt.losses.registry.METHODS`; the losses themselves are the pure functions of
:mod:`kdnmt.losses`). Token-level teachers come from the `generate --soft-targets` store
(``cache``, used when it exists) or from the frozen teacher in this process (``online``).
Methods that read the teacher's whole distribution (ATKD, Self-Evolution KD) default to
``online`` and use a top-k cache only when asked for, with a warning
(:func:`distill_warning`). Fine-tuning methods (Self-Evolution KD) start from a trained student
(``--init-from``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from kdnmt.errors import KdnmtError, check
from kdnmt.fileio import sha256_file
from kdnmt.losses.registry import METHODS, LossSpec
from kdnmt.models import checkpoint_path, load_model_info
from kdnmt.rundir import RunDir, check_name
from kdnmt.train import TrainOptions, train

TEACHER_MODES = ("cache", "online")

__all__ = ["METHODS", "TEACHER_MODES", "DistillOptions", "check_method", "distill",
           "distill_warning"]


@dataclass
class DistillOptions:
    run: Path
    name: str
    method: str
    preset: str = "tiny"
    teacher: str = "teacher"
    teacher_mode: str | None = None
    steps: int | None = None
    max_minutes: float | None = None
    config_file: Path | None = None
    resume: bool = False
    force: bool = False
    hparams: Mapping[str, float | str] = field(default_factory=dict)  # --threshold: also 'quantile:Q'
    gate: str = "learned"
    gate_prior: float | None = None
    gate_tau: float | None = None
    world_size: int = 1
    device: str = "cpu"
    init_from: str | None = None
    precision: str | None = None  # training.precision from the command line


def method_spec(opts: DistillOptions) -> LossSpec:
    """The registry entry of ``opts.method``, or one line naming the methods."""
    if opts.method not in METHODS:
        raise KdnmtError(f"unknown method '{opts.method}' (methods: {', '.join(METHODS)})")
    return METHODS[opts.method]


def check_method(opts: DistillOptions) -> tuple[str, str | None, dict[str, Any]]:
    """(training data, token-level loss or None, hyper-parameters completed with defaults),
    after refusing every option that does not fit the method, with one line."""
    spec = method_spec(opts)
    gate_options = opts.gate_prior is not None or opts.gate_tau is not None
    if spec.trainer == "hybrid":
        from kdnmt.gate import GateSpec, check_gate_prior_tau

        gate = GateSpec.parse(opts.gate)
        check(gate.kind == "learned" or not gate_options,
              "--gate-prior and --gate-tau shape the learned gate's objective: they do not "
              f"apply to --gate {opts.gate}")
        objective = gate_objective_of(opts)
        check_gate_prior_tau(objective.prior, objective.tau)
    else:
        check(opts.gate == "learned", "--gate applies to method 'hybrid' only")
        check(not gate_options, "--gate-prior and --gate-tau apply to method 'hybrid' only")
    if spec.fine_tuning:
        check(opts.init_from is not None,
              f"{spec.name} is a fine-tuning stage: start it from a trained student of this run "
              "with --init-from NAME (from a cold start its hard-token gradient is hundreds of "
              "times weaker than CE's and the student collapses; see docs/distill.md)")
    if spec.loss is None:
        if opts.hparams:
            raise KdnmtError(f"--{next(iter(opts.hparams)).replace('_', '-')} does not apply to "
                             f"method '{opts.method}' (it has no token-level loss)")
        return spec.data, None, {}
    from kdnmt.losses.registry import validate_hparams

    try:
        return spec.data, spec.loss, validate_hparams(spec.name, opts.hparams)
    except ValueError as exc:
        message = str(exc)
        if message.startswith("unknown hyper-parameter"):
            name = next(k for k in opts.hparams if repr(k) in message)
            valid = message.rsplit("expected one of ", 1)[-1]
            message = (f"--{name.replace('_', '-')} does not apply "
                       f"(its options: {valid.replace('_', '-')})")
        raise KdnmtError(f"method '{opts.method}': {message}") from None


def gate_objective_of(opts: DistillOptions) -> Any:
    """The learned gate's objective options, with the contract's defaults (prior 0.5, tau 1)."""
    from kdnmt.gate import GateObjective

    default = GateObjective()
    return GateObjective(prior=default.prior if opts.gate_prior is None else opts.gate_prior,
                         tau=default.tau if opts.gate_tau is None else opts.gate_tau)


def distill_warning(opts: DistillOptions) -> str | None:
    """The warning line for a full-teacher method (atkd, selfevo) asked to read a top-k cache,
    else None. Such a run is allowed, as an explicit, recorded approximation."""
    if not method_spec(opts).full_teacher or opts.teacher_mode != "cache":
        return None
    return (f"{opts.method} on a top-k cache is an approximation: UNC = 1 - p(gold) is 1 "
            "wherever the gold id is outside the kept k, and the non-target distribution has at "
            "most k - 1 ids; --teacher-mode online (the default) reads the full teacher")


def _training_data(run: RunDir, manifest: dict[str, Any], data: str,
                   teacher: str) -> tuple[Path, Path] | None:
    """The (source, target) piece files a method trains on; None = the run's references."""
    if data == "references":
        return None
    from kdnmt.teacher.generate import load_generated

    outputs = load_generated(run, teacher)["outputs"]
    source = run.generated_file(teacher, outputs["source"]["path"])
    if data == "seqinter":
        check("seqinter" in outputs,
              f"no seq-inter picks for teacher '{teacher}': run `kdnmt generate --nbest K "
              "--select closest` first")
        return source, run.generated_file(teacher, outputs["seqinter"]["path"])
    return source, run.generated_file(teacher, outputs["pseudo"]["path"])


def _teacher_source(opts: DistillOptions, run: RunDir, manifest: dict[str, Any],
                    info: dict[str, Any], target: Path) -> Any:
    """The cache store or the online frozen teacher for a token-level method."""
    from kdnmt.onmt_bridge.kd_loss import TeacherSource
    from kdnmt.teacher.store import SoftTargetStore

    along = _soft_along(opts)
    store_dir = run.soft_store(opts.teacher, along)
    mode = _teacher_mode(opts, run)
    if mode == "cache":
        check(store_dir.is_dir(),
              f"no soft-target store along {along} for teacher '{opts.teacher}': run "
              f"`kdnmt generate --soft-targets K --soft-along {along}` or use "
              "--teacher-mode online")
        store = SoftTargetStore.open(store_dir,
                                     expect_vocab_sha256=manifest["vocab"]["sha256"],
                                     expect_spm_sha256=manifest["sentencepiece"]["sha256"])
        check(store.meta.get("teacher_sha256") == info["checkpoint_sha256"],
              f"the soft-target store {store_dir} was computed by another teacher checkpoint")
        check(store.meta.get("target_sha256") == sha256_file(target),
              f"the soft-target store {store_dir} was computed along other data than {target}: "
              "generate it again")
        return TeacherSource(mode="cache", store=store), mode
    check(not info.get("ct2_only"),
          f"teacher '{opts.teacher}' is a CTranslate2 model: token-level methods need its "
          "PyTorch checkpoint (sequence-level methods: seq, seqinter)")
    from kdnmt.corpus.spm import ONMT_SPECIALS, read_onmt_vocab
    from kdnmt.onmt_bridge.inference import load_frozen_model

    frozen = load_frozen_model(checkpoint_path(run, info))
    run_tokens = list(ONMT_SPECIALS) + read_onmt_vocab(run.vocab)
    check(frozen.tokens[: len(run_tokens)] == run_tokens,
          f"teacher '{opts.teacher}' has another vocabulary than the student of run {run.root}")
    return TeacherSource(mode="online", frozen=frozen), mode


def _soft_along(opts: DistillOptions) -> str:
    """Along what a token-level method reads the teacher's distributions."""
    along = method_spec(opts).soft_along
    check(along is not None, f"method '{opts.method}' reads no teacher distributions")
    return along  # type: ignore[return-value]


def _teacher_mode(opts: DistillOptions, run: RunDir) -> str:
    """``--teacher-mode``, or the method's default: its store when one exists and the method
    does not need the whole distribution, else the online teacher."""
    spec = method_spec(opts)
    store = run.soft_store(opts.teacher, _soft_along(opts))
    default = "cache" if spec.uses_cache_by_default() and store.is_dir() else "online"
    mode = opts.teacher_mode or default
    check(mode in TEACHER_MODES, f"--teacher-mode must be one of {TEACHER_MODES}")
    return mode


@dataclass
class _Plan:
    """What a distillation run trains on and records, checked before anything is loaded."""

    run: RunDir
    manifest: dict[str, Any]
    data: str
    loss: str | None
    hparams: dict[str, float]
    extra: dict[str, Any]
    files: tuple[Path, Path] | None
    info: dict[str, Any] | None


def _plan(opts: DistillOptions) -> _Plan:
    check_name(opts.name)  # before any teacher or store is loaded
    data, loss, hparams = check_method(opts)
    check(opts.world_size >= 1, f"--world-size must be >= 1, got {opts.world_size}")
    run = RunDir(Path(opts.run))
    manifest = run.load_manifest()
    extra: dict[str, Any] = {"method": opts.method, "hparams": hparams, "data": data}
    files = info = None
    if method_spec(opts).needs_teacher:
        info = load_model_info(run, opts.teacher)
        check(info.get("vocab_sha256") == manifest["vocab"]["sha256"],
              f"teacher '{opts.teacher}' was trained with another vocabulary than run {run.root}")
        extra.update(teacher=opts.teacher, teacher_sha256=info["checkpoint_sha256"])
        files = _training_data(run, manifest, data, opts.teacher)
        if loss is not None:
            extra["teacher_mode"] = _teacher_mode(opts, run)
            approximation = distill_warning(opts)
            if approximation:
                extra["approximation"] = approximation
        if method_spec(opts).trainer == "hybrid":
            extra["gate"] = opts.gate
            from kdnmt.gate import GateSpec

            if GateSpec.parse(opts.gate).kind == "learned":
                objective = gate_objective_of(opts)
                extra["gate_objective"] = {"prior": objective.prior, "tau": objective.tau}
    return _Plan(run, manifest, data, loss, hparams, extra, files, info)


def _components(opts: DistillOptions, plan: _Plan) -> tuple[Any, Any, Any]:
    """(loss_factory, extra_stats, extra_modules) of a token-level method: loads the store or
    the frozen teacher, so each data-parallel rank builds its own."""
    if plan.loss is None or plan.info is None:
        return None, None, None
    from kdnmt.onmt_bridge.kd_loss import RunningStats, kd_loss_factory

    run, manifest = plan.run, plan.manifest
    target = plan.files[1] if plan.files else run.pieces("train", manifest["tgt"])
    source, _ = _teacher_source(opts, run, manifest, plan.info, target)
    running = RunningStats()
    if method_spec(opts).trainer == "hybrid":
        loss_factory, extra_modules = _hybrid(opts, run, plan.hparams, source, running)
        return loss_factory, running.drain, extra_modules
    return kd_loss_factory(opts.method, plan.hparams, source, running), running.drain, None


def rank_components(opts: DistillOptions) -> tuple[Any, Any, Any]:
    """The loss of one data-parallel rank (module-level so that it pickles)."""
    return _components(opts, _plan(opts))


def distill(opts: DistillOptions, **callbacks: Callable[..., Any]) -> dict[str, Any]:
    """Run `kdnmt distill`; returns the student's ``model.json`` content."""
    plan = _plan(opts)
    setup = None
    if opts.world_size > 1:
        loss_factory = extra_stats = extra_modules = None
        if plan.loss is not None:
            setup = partial(rank_components, opts)
    else:
        loss_factory, extra_stats, extra_modules = _components(opts, plan)
    train_opts = TrainOptions(run=plan.run.root, name=opts.name, preset=opts.preset,
                              config_file=opts.config_file, steps=opts.steps,
                              max_minutes=opts.max_minutes, resume=opts.resume, force=opts.force,
                              role="student", world_size=opts.world_size,
                              device=opts.device, init_from=opts.init_from,
                              precision=opts.precision)
    return train(train_opts, loss_factory=loss_factory, extra_info=plan.extra,
                 extra_stats=extra_stats, data=plan.files, extra_modules=extra_modules,
                 rank_setup=setup, **callbacks)


def _hybrid(opts: DistillOptions, run: RunDir, hparams: dict[str, float], source: Any,
            running: Any) -> tuple[Any, dict[str, Any] | None]:
    """Loss factory and gate module of the hybrid method (Wei et al. 2024)."""
    from kdnmt.config import resolve_config
    from kdnmt.gate import GATE_PREFIX, GateSpec, SourceGate
    from kdnmt.onmt_bridge.kd_loss import hybrid_loss_factory
    from kdnmt.teacher.generate import load_generated

    spec = GateSpec.parse(opts.gate)
    generated = load_generated(run, opts.teacher)
    check(generated["kept"] == generated["lines"],
          "hybrid needs a pseudo-target for every training line: generate without --filter-ce")
    pseudo_path = run.generated_file(opts.teacher, generated["outputs"]["pseudo"]["path"])
    pseudo_lines = pseudo_path.read_text(encoding="utf-8").splitlines()
    steps = opts.steps or resolve_config(opts.preset, opts.config_file).training.steps
    objective = gate_objective_of(opts)
    factory = hybrid_loss_factory(hparams, source, spec, pseudo_lines, running, steps,
                                  objective=objective)
    modules = None
    if spec.kind == "learned":
        name = GATE_PREFIX.rstrip(".")
        modules = {name: lambda model: SourceGate(model.generator.weight.shape[1],
                                                  prior=objective.prior)}
    return factory, modules
