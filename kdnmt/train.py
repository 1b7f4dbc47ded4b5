"""`kdnmt train`: a teacher or a baseline student with OpenNMT-py's trainer, in-process.

Resolves the configuration (preset, then ``--config``, then flags), writes it to the model
directory before training starts (so a crash still leaves a record), trains through the bridge
and, when training ends, writes ``model.json``: the marker that the model is complete, with its
checkpoint, step, parameter count and checksums.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kdnmt.config import ROLES, TrainConfig, config_from_dict, config_to_yaml, resolve_config
from kdnmt.errors import KdnmtError, check
from kdnmt.fileio import remove_stale_temps, sha256_file, write_json, write_text
from kdnmt.rundir import RunDir

#: The record of a warm start (``--init-from``) inside the model directory.
INIT_RECORD = "init_from.json"
#: One entry per sitting (a start or a resume): the step it started at and the machine it ran on.
SITTINGS_RECORD = "sittings.json"


def record_sitting(model_dir: Path, start_step: int, device: str,
                   precision: str) -> list[dict[str, Any]]:
    """Append this sitting to ``sittings.json`` and return every sitting so far. Sittings
    that started at or after ``start_step`` are dropped: a resume from an earlier checkpoint
    replaces what they trained. Why kept: the same command on another CPU computes other
    roundings and ends elsewhere, so model.json must say what each part ran on."""
    from kdnmt.devices import training_machine

    path = model_dir / SITTINGS_RECORD
    sittings: list[dict[str, Any]] = []
    if start_step > 0 and path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            loaded = []  # damaged by hand: the record restarts, training does not fail
        if isinstance(loaded, list):
            sittings = [x for x in loaded
                        if isinstance(x, dict) and int(x.get("start_step", 0)) < start_step]
    sittings.append({"start_step": start_step,
                     "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                     **training_machine(device, precision)})
    write_json(path, sittings)
    return sittings


@dataclass
class TrainOptions:
    run: Path
    name: str
    preset: str = "small"
    config_file: Path | None = None
    steps: int | None = None
    max_minutes: float | None = None
    resume: bool = False
    force: bool = False
    role: str | None = None  # teacher or student; None: see _role_of
    world_size: int = 1
    device: str = "cpu"
    init_from: str | None = None  # a model of the same run to warm-start from (its weights)
    precision: str | None = None  # training.precision from the command line


def _overrides(opts: TrainOptions) -> dict[str, Any]:
    training: dict[str, Any] = {}
    if opts.steps is not None:
        training["steps"] = opts.steps
    if opts.max_minutes is not None:
        training["max_minutes"] = opts.max_minutes
    if opts.precision is not None:
        training["precision"] = opts.precision
    return {"training": training} if training else {}


def prepare_model_dir(run: RunDir, opts: TrainOptions) -> tuple[TrainConfig, Path | None]:
    """Decide between a fresh start and a resume; returns the config and the checkpoint to
    resume from (or None)."""
    from kdnmt.onmt_bridge.checkpoint import list_checkpoints, load_checkpoint

    model_dir = run.model_dir(opts.name)
    remove_stale_temps(model_dir)  # a checkpoint write cut short by a kill
    checkpoints = list_checkpoints(model_dir) if model_dir.is_dir() else []
    saved_config = model_dir / "config.yaml"
    if opts.resume:
        check(saved_config.is_file(),
              f"nothing to resume: {model_dir} has no config.yaml (train without --resume)")
        try:
            data = yaml.safe_load(saved_config.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            raise KdnmtError(f"{saved_config} is not valid YAML") from None
        config = config_from_dict(data, str(saved_config))
        from kdnmt.config import apply_overrides

        apply_overrides(config, _overrides(opts), "command line")
        config.validate()
        _check_before_writing(config, opts.device)
        if not checkpoints:
            return config, None
        latest = checkpoints[-1]
        load_checkpoint(latest)  # a truncated checkpoint is a clear error, not a crash later
        return config, latest
    if model_dir.exists() and any(model_dir.iterdir()):
        if not opts.force:
            raise KdnmtError(
                f"model '{opts.name}' already exists in {run.root}; "
                "pass --resume to continue it or --force to start again"
            )
    config = resolve_config(opts.preset, opts.config_file, _overrides(opts))
    _check_before_writing(config, opts.device)  # before --force deletes anything
    if model_dir.exists() and any(model_dir.iterdir()):
        shutil.rmtree(model_dir)
    return config, None


def _role_of(opts: TrainOptions, model_dir: Path) -> str:
    """The role model.json records: the one asked for; else, on a resumed model, the one it
    recorded before; else teacher for a name starting with 'teacher' and student otherwise
    (the convention of the recipes, so most users never pass --role)."""
    if opts.role is not None:
        return opts.role
    if opts.resume and (model_dir / "model.json").is_file():
        recorded = json.loads((model_dir / "model.json").read_text(encoding="utf-8")).get("role")
        if recorded in ROLES:
            return str(recorded)
    return "teacher" if opts.name.startswith("teacher") else "student"


def _check_before_writing(config: TrainConfig, device: str) -> None:
    """Everything about the configuration that can be refused without training, checked
    before ``--force`` deletes the old model or a new directory is written: ``onmt:`` options
    OpenNMT-py refuses, what the device cannot run (``onmt.model_dtype``,
    ``training.precision``) and the optional packages the configuration asks for
    (training.tensorboard). Resolves ``training.precision: auto`` to what this machine runs
    first, so that the model's config.yaml records that."""
    from kdnmt.devices import resolve_precision
    from kdnmt.onmt_bridge.options import (
        check_passthrough,
        check_passthrough_device,
        check_precision,
    )

    if config.onmt:
        check_passthrough(config.onmt)
        check_passthrough_device(config.onmt, device)
    config.training.precision = resolve_precision(config.training.precision, device)
    check_precision(config.training.precision, device)
    if config.training.tensorboard:
        from kdnmt.onmt_bridge.training import require_tensorboard

        require_tensorboard()


def _init_source(run: RunDir, manifest: dict[str, Any],
                 opts: TrainOptions) -> tuple[Path | None, dict[str, Any] | None]:
    """The checkpoint to warm-start from and the record of ``--init-from MODEL`` (a finished
    model of this run, so its vocabulary is the run's), or None for either.

    A resumed run continues its own checkpoint and only keeps the record; when it was stopped
    before its first checkpoint, it needs the model its ``init_from.json`` names, unchanged."""
    from kdnmt.models import checkpoint_path, load_model_info
    from kdnmt.onmt_bridge.checkpoint import list_checkpoints

    name = opts.init_from
    model_dir = run.model_dir(opts.name)
    recorded: dict[str, Any] | None = None
    if opts.resume:
        check(name is None, "--init-from starts a new model; --resume continues one from its "
                            "own checkpoint (give one of them)")
        if not (model_dir / INIT_RECORD).is_file():
            return None, None
        recorded = json.loads((model_dir / INIT_RECORD).read_text(encoding="utf-8"))
        if list_checkpoints(model_dir):
            return None, recorded
        name = recorded["name"]
    if name is None:
        return None, None
    check(name != opts.name, f"--init-from {name}: a model cannot start from itself")
    source = load_model_info(run, name)
    check(source.get("vocab_sha256") == manifest["vocab"]["sha256"],
          f"--init-from {name}: that model has another vocabulary than run {run.root}")
    check(not source.get("ct2_only"),
          f"--init-from {name}: a CTranslate2-only model has no PyTorch weights")
    check(recorded is None or recorded["checkpoint_sha256"] == source["checkpoint_sha256"],
          f"model '{name}' was trained again after '{opts.name}' started from it: start "
          f"'{opts.name}' again with --force")
    return checkpoint_path(run, source), {"name": name, "step": source.get("step"),
                                          "checkpoint_sha256": source["checkpoint_sha256"]}


def _check_init_shape(path: Path, name: str, config: TrainConfig) -> None:
    """Refuse a warm start from another architecture before anything is written or deleted
    (the weight copy checks every tensor again)."""
    from dataclasses import asdict

    from kdnmt.onmt_bridge.checkpoint import load_checkpoint, shape_mismatch

    problem = shape_mismatch(load_checkpoint(path), asdict(config.model))
    check(problem is None, f"--init-from {name} has another architecture: {problem} (use the "
                           "same preset and model settings)")


def _check_trainable(onmt_opts: dict[str, Any], max_length: int) -> None:
    """OpenNMT-py crashes on an empty bucket when every pair is over max_length; say so."""
    corpus = onmt_opts["data"]["corpus_1"]
    with open(corpus["path_src"], encoding="utf-8") as fs, \
            open(corpus["path_tgt"], encoding="utf-8") as ft:
        for src, tgt in zip(fs, ft, strict=False):
            if len(src.split()) <= max_length and len(tgt.split()) <= max_length:
                return
    raise KdnmtError(f"no training pair of {corpus['path_tgt']} fits training.max_length "
                     f"({max_length} pieces)")


def train(
    opts: TrainOptions,
    on_report: Callable[[Any], None] = lambda r: None,
    on_valid: Callable[[Any], None] = lambda r: None,
    on_start: Callable[[TrainConfig, int], None] = lambda c, s: None,
    on_curve: Callable[[Any], None] = lambda p: None,
    loss_factory: Any = None,
    extra_info: dict[str, Any] | None = None,
    extra_stats: Any = None,
    data: tuple[Path, Path] | None = None,
    extra_modules: dict[str, Any] | None = None,
    rank_setup: Any = None,
) -> dict[str, Any]:
    """Train model ``opts.name`` of run ``opts.run``; returns its ``model.json`` content.

    Besides checkpoints and ``model.json`` it writes ``metrics.csv`` (every report and
    validation) and, with ``training.bleu_every``, ``curve.csv`` (:mod:`kdnmt.curves`;
    ``on_curve`` gets each new point)."""
    from kdnmt.onmt_bridge.checkpoint import (
        count_parameters,
        list_checkpoints,
        load_checkpoint,
    )
    from kdnmt.onmt_bridge.devices import check_device
    from kdnmt.onmt_bridge.options import (
        onmt_train_options,
        parse_train_options,
        write_onmt_yaml,
    )
    from kdnmt.onmt_bridge.training import run_training

    run = RunDir(Path(opts.run))
    manifest = run.load_manifest()
    check(opts.world_size >= 1, f"--world-size must be >= 1, got {opts.world_size}")
    check(opts.world_size == 1 or not opts.max_minutes,
          "--max-minutes cannot be combined with --world-size > 1 (the ranks would stop at "
          "different steps): give --steps")
    check_device(opts.device, opts.world_size)
    init_checkpoint, init_info = _init_source(run, manifest, opts)
    if init_checkpoint is not None and init_info is not None and not opts.resume:
        # Before prepare_model_dir, which deletes the old model on --force. (A resumed run
        # was checked when it started, against the same, unchanged source.)
        _check_init_shape(init_checkpoint, init_info["name"],
                          resolve_config(opts.preset, opts.config_file, _overrides(opts)))
    config, train_from = prepare_model_dir(run, opts)
    src, tgt = manifest["src"], manifest["tgt"]
    model_dir = run.model_dir(opts.name)
    model_dir.mkdir(parents=True, exist_ok=True)
    write_text(model_dir / "config.yaml", config_to_yaml(config))
    # Where a warm-started model began, kept beside its config so a resumed run records it too.
    init_record = model_dir / INIT_RECORD
    if init_info is not None:
        write_json(init_record, init_info)
    onmt_opts = onmt_train_options(
        config,
        train_src=data[0] if data else run.pieces("train", src),
        train_tgt=data[1] if data else run.pieces("train", tgt),
        valid_src=run.pieces("valid", src), valid_tgt=run.pieces("valid", tgt),
        vocab=run.vocab, vocab_entries=int(manifest["vocab"]["entries"]),
        model_dir=model_dir, train_pairs=int(manifest["splits"]["train"]["kept"]),
        train_from=train_from, device=opts.device, world_size=opts.world_size,
    )
    _check_trainable(onmt_opts, config.training.max_length)
    onmt_yaml = model_dir / "onmt.yaml"
    write_onmt_yaml(onmt_opts, onmt_yaml)
    opt = parse_train_options(onmt_yaml)
    start_step = 0
    if train_from is not None:
        from kdnmt.onmt_bridge.checkpoint import checkpoint_step

        start_step = checkpoint_step(train_from)
    # Step-keyed logs go back to the checkpoint a resumed run continues from (a fresh start
    # has none): rows a stopped session wrote after its last checkpoint would repeat.
    from kdnmt.metrics import MetricsLog, truncate_after

    metrics = MetricsLog(model_dir, start_step)
    stats_csv = model_dir / "kd_stats.csv"
    truncate_after(stats_csv, start_step)
    curve = None
    if config.training.bleu_every > 0:
        from kdnmt.curves import CurveRecorder

        curve = CurveRecorder(run, model_dir, every=config.training.bleu_every,
                              sentences=config.training.bleu_sentences,
                              max_length=config.training.max_length, start_step=start_step,
                              src=src, tgt=tgt, on_point=on_curve)
    sittings = record_sitting(model_dir, start_step, opts.device, config.training.precision)
    on_start(config, start_step)
    if curve is not None and train_from is not None:
        curve(start_step, train_from, False)  # a kill between a checkpoint and its point
    # A warm start applies to a fresh run only: a resumed one continues its own checkpoint.
    training: dict[str, Any] = {"device": opts.device,
                                "precision": config.training.precision, "init_from": (
        str(init_checkpoint) if init_checkpoint is not None and train_from is None else None)}

    def report(r: Any) -> None:
        if r.extra:  # method figures (gate mean/spread, hard tokens, UNC...) over training
            new = not stats_csv.exists()
            try:
                with open(stats_csv, "a", encoding="utf-8") as handle:
                    if new:
                        handle.write(",".join(["step", *r.extra]) + "\n")
                    handle.write(",".join([str(r.step),
                                           *(f"{v:.6f}" for v in r.extra.values())]) + "\n")
            except OSError as exc:  # a full disk: name the file (write() errors carry none)
                raise OSError(exc.errno, exc.strerror, str(stats_csv)) from exc
        metrics.train(r)
        on_report(r)

    def valid(v: Any) -> None:
        metrics.valid(v)
        on_valid(v)

    if opts.world_size > 1:
        from kdnmt.onmt_bridge.distributed import run_data_parallel

        result = run_data_parallel(opt, opts.world_size, rank_setup, training=training,
                                   on_report=report, on_valid=valid, on_checkpoint=curve)
    else:
        result = run_training(opt, on_report=report, on_valid=valid, on_checkpoint=curve,
                              max_seconds=config.training.max_minutes * 60,
                              loss_factory=loss_factory, extra_stats=extra_stats,
                              extra_modules=extra_modules, **training)
    checkpoints = list_checkpoints(model_dir)
    check(checkpoints, f"training of '{opts.name}' saved no checkpoint")
    final = checkpoints[-1]
    checkpoint = load_checkpoint(final)
    info: dict[str, Any] = {
        "name": opts.name,
        "role": _role_of(opts, model_dir),
        "preset": opts.preset,
        "checkpoint": final.name,
        "checkpoint_sha256": sha256_file(final),
        "step": result.last_step,
        "target_steps": config.training.steps,
        "stopped_by_time_budget": result.stopped_by_budget,
        "world_size": opts.world_size,
        "device": opts.device,
        "parameters": count_parameters(checkpoint),
        "spm_sha256": manifest["sentencepiece"]["sha256"],
        "vocab_sha256": manifest["vocab"]["sha256"],
        "src": src,
        "tgt": tgt,
        "config": config.to_dict(),
        "sittings": sittings,
    }
    if result.last_valid is not None:
        info["valid"] = {"step": result.last_valid.step, "loss": result.last_valid.loss,
                         "accuracy": result.last_valid.accuracy,
                         "perplexity": result.last_valid.perplexity}
    if init_info is not None:
        info["init_from"] = init_info
    if extra_info:
        info.update(extra_info)
    write_json(run.model_info_path(opts.name), info)
    return info
