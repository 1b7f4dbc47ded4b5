"""Run OpenNMT-py's trainer in-process, with kdnmt's progress, time budget and loss hook.

This follows ``onmt.train_single.main`` step for step (vocab, model, optimizer, saver,
trainer, iterators) and reuses every piece of it; it differs in three places that kdnmt needs:

- progress goes to a callback (:class:`TrainReport`) instead of OpenNMT-py's console log
  (and, with ``opt.tensorboard``, to OpenNMT-py's own TensorBoard writer, as ``onmt_train``);
- every checkpoint save is announced to ``on_checkpoint`` (the learning curve scores it);
- a wall-clock budget stops training cleanly (and saves) instead of only a step count;
- ``loss_factory`` may replace the training loss built by ``LossCompute.from_opts``: this is
  the hook where distillation losses plug in (issue "kdnmt distill").
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kdnmt.errors import KdnmtError
from kdnmt.onmt_bridge import shims
from kdnmt.onmt_bridge.devices import device_id as device_id_of

shims.install()


@dataclass
class TrainReport:
    """One progress report: training statistics since the previous report."""

    step: int
    total_steps: int
    loss: float
    accuracy: float
    perplexity: float
    tokens_per_second: float
    learning_rate: float
    elapsed: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class ValidReport:
    """Validation statistics at a step."""

    step: int
    loss: float
    accuracy: float
    perplexity: float
    elapsed: float = 0.0  # seconds since this training session started


#: ``on_checkpoint(step, path, final)``: called after each checkpoint save of rank 0, and once
#: more with ``final=True`` for the last checkpoint when training ends (same step possible).
#: What it returns is ignored (``CurveRecorder`` returns the point it scored).
CheckpointHook = Callable[[int, Path, bool], object]


def require_tensorboard() -> None:
    """``training.tensorboard`` uses OpenNMT-py's writer, ``torch.utils.tensorboard``, which
    needs the ``tensorboard`` package: say so before anything is written, not in a traceback
    from deep inside the trainer."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise KdnmtError("training.tensorboard needs the tensorboard package: pip install "
                         "'kdnmt[tensorboard]' (or set training.tensorboard: false)") from None


@dataclass
class TrainResult:
    """How a training run ended."""

    last_step: int
    stopped_by_budget: bool
    last_valid: ValidReport | None


LossFactory = Callable[[argparse.Namespace, Any, dict[str, Any]], Any]


def _report_manager_class() -> type:
    from onmt.utils.report_manager import ReportMgr

    class CallbackReportManager(ReportMgr):
        """Sends OpenNMT-py's statistics to kdnmt callbacks instead of its console, and to the
        TensorBoard writer OpenNMT-py built (``opt.tensorboard``) the way its ReportMgr does."""

        def __init__(self, report_every: int, on_report: Callable[[TrainReport], None],
                     on_valid: Callable[[ValidReport], None],
                     extra_stats: Callable[[], dict[str, float]] | None = None,
                     tensorboard_writer: Any = None):
            super().__init__(report_every, start_time=-1.0,
                             tensorboard_writer=tensorboard_writer)
            self.extra_stats = extra_stats
            self.on_report = on_report
            self.on_valid = on_valid
            self.last_valid: ValidReport | None = None

        def _report_training(self, step, num_steps, learning_rate, patience, report_stats):
            elapsed = max(report_stats.elapsed_time(), 1e-9)
            xent = report_stats.xent()
            if not math.isfinite(xent):
                raise KdnmtError(
                    f"training diverged at step {step}: the loss is {xent} "
                    "(the last good checkpoint is kept; lower training.learning_rate)"
                )
            report = TrainReport(
                step=step, total_steps=num_steps, loss=xent,
                accuracy=report_stats.accuracy(), perplexity=report_stats.ppl(),
                tokens_per_second=report_stats.n_words / elapsed,
                learning_rate=learning_rate, elapsed=time.time() - self.start_time,
                extra=self.extra_stats() if self.extra_stats else {},
            )
            # The run's train.log keeps the same figures the progress bar shows.
            self.log("Step %d/%d; loss %.4f; acc %.2f; ppl %.2f; %.0f tok/s; lr %.6f; %.2f s",
                     step, num_steps, report.loss, report.accuracy, report.perplexity,
                     report.tokens_per_second, learning_rate, report.elapsed)
            if report.extra:
                self.log("Step %d KD: %s", step,
                         "; ".join(f"{k} {v:.4f}" for k, v in report.extra.items()))
            self.maybe_log_tensorboard(report_stats, "progress", learning_rate, patience, step)
            if self.tensorboard_writer is not None:
                for key, value in report.extra.items():
                    self.tensorboard_writer.add_scalar(f"kd/{key}", value, step)
            self.on_report(report)

        def _report_step(self, lr, patience, step, valid_stats=None, train_stats=None):
            if valid_stats is not None:
                self.last_valid = ValidReport(step=step, loss=valid_stats.xent(),
                                              accuracy=valid_stats.accuracy(),
                                              perplexity=valid_stats.ppl(),
                                              elapsed=time.time() - self.start_time)
                self.log("Validation step %d; loss %.4f; acc %.2f; ppl %.2f", step,
                         self.last_valid.loss, self.last_valid.accuracy,
                         self.last_valid.perplexity)
                self.maybe_log_tensorboard(valid_stats, "valid", lr, patience, step)
                self.on_valid(self.last_valid)

    return CallbackReportManager


def _budgeted(iterator: Any, deadline: float | None, flag: dict[str, bool]) -> Iterator[Any]:
    """Stop yielding batches once the wall-clock deadline has passed."""
    for item in iterator:
        if deadline is not None and time.monotonic() >= deadline:
            flag["stopped"] = True
            return
        yield item


def _skip_batches(iterator: Any, count: int) -> Iterator[Any]:
    """Drop the first ``count`` batches. OpenNMT-py restarts its corpus iterator from the top
    (same seed, same order) when it resumes from a checkpoint, so a resumed run would train on
    the first batches again; skipping the ones the checkpoint already consumed gives it the data
    order of an uninterrupted run (tested in tests/faults/test_kill_resume.py)."""
    for index, item in enumerate(iterator):
        if index >= count:
            yield item


def _check_ranks_in_sync(model: Any) -> None:
    """Data-parallel ranks must end with identical parameters (gradients were all-reduced);
    a difference means the KD loss or the data split broke synchronisation."""
    import hashlib

    digest = hashlib.sha256()
    for param in model.parameters():
        digest.update(param.detach().cpu().numpy().tobytes())
    digests: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(digests, digest.hexdigest())
    if len(set(digests)) != 1:
        raise KdnmtError(f"data-parallel ranks ended with different parameters ({digests})")
    from onmt.utils.logging import logger

    logger.info("Data-parallel ranks in sync: parameters sha256 %s", digests[0][:16])


def run_training(
    opt: argparse.Namespace,
    *,
    on_report: Callable[[TrainReport], None] = lambda r: None,
    on_valid: Callable[[ValidReport], None] = lambda r: None,
    on_checkpoint: CheckpointHook | None = None,
    max_seconds: float = 0.0,
    loss_factory: LossFactory | None = None,
    extra_stats: Callable[[], dict[str, float]] | None = None,
    extra_modules: dict[str, Callable[[Any], Any]] | None = None,
    rank: int = 0,
    world_size: int = 1,
    init_from: str | None = None,
    device: str = "cpu",
    precision: str = "fp32",
) -> TrainResult:
    """Train as ``onmt_train`` would, on the CPU (OpenNMT-py's device -1) or, with
    ``device="cuda"``, on GPU ``rank``; see the module docstring.

    With ``world_size > 1`` this is one rank of data-parallel training (see
    :mod:`.distributed`): it reads every ``world_size``-th example from ``rank`` on, and
    OpenNMT-py's trainer all-reduces gradients and statistics over the process group.
    ``init_from`` (a checkpoint path) warm-starts a fresh run from another model's weights
    (:func:`.checkpoint.load_initial_weights`). ``on_checkpoint`` runs in rank 0 only, between
    updates (the ranks wait for it at their next all-reduce); it must not touch the model or
    the random state, so that it changes nothing in training. ``precision="bf16"`` runs the
    forward and backward passes under CPU autocast (shim 9: bfloat16 products, float32 weights,
    optimizer state and losses; twice as fast as float32 where the CPU has avx512_bf16 or AMX).
    """
    from onmt.constants import CorpusTask
    from onmt.inputters.dynamic_iterator import build_dynamic_dataset_iter
    from onmt.model_builder import build_model
    from onmt.models import build_model_saver
    from onmt.train_single import _get_model_opts, _init_train, configure_process
    from onmt.trainer import build_trainer
    from onmt.utils.optimizers import Optimizer

    shims.patch_model_saver()
    shims.patch_empty_buckets()
    shims.patch_corpus_striding()
    device_id = device_id_of(device, rank)
    shims.log_to_file_only(opt.log_file if rank == 0 else f"{opt.log_file}.rank{rank}")
    configure_process(opt, device_id)
    checkpoint, vocabs, transforms_cls = _init_train(opt)
    model_opt = _get_model_opts(opt, checkpoint=checkpoint)
    rng_state = checkpoint.get(shims.RNG_STATE_KEY) if checkpoint is not None else None
    # Modules kdnmt adds to the student (the hybrid gate) are trained and checkpointed with it,
    # but OpenNMT-py's loader rejects keys it does not know: set them aside, load them after.
    saved_extra: dict[str, dict[str, torch.Tensor]] = {name: {} for name in extra_modules or {}}
    if checkpoint is not None:
        for key in list(checkpoint["model"]):
            for name in saved_extra:
                if key.startswith(name + "."):
                    saved_extra[name][key[len(name) + 1:]] = checkpoint["model"].pop(key)
    model = build_model(model_opt, opt, vocabs, checkpoint, device_id)
    if init_from is not None and checkpoint is None:
        from kdnmt.gate import GATE_PREFIX
        from kdnmt.onmt_bridge.checkpoint import load_checkpoint, load_initial_weights

        # The source's hybrid gate (if any) is training-only: never carried over.
        load_initial_weights(model, load_checkpoint(Path(init_from)),
                             skip_prefixes=(GATE_PREFIX,))
    for name, make in (extra_modules or {}).items():
        module = make(model).to(next(model.parameters()).device)
        if saved_extra[name]:
            module.load_state_dict(saved_extra[name])
        model.add_module(name, module)
    optim = Optimizer.from_opt(model, opt, checkpoint=checkpoint)
    del checkpoint
    model_saver = build_model_saver(model_opt, opt, model, vocabs, optim, device_id)
    trainer = build_trainer(opt, device_id, model, vocabs, optim, model_saver=model_saver)
    if world_size > 1 and device_id < 0:
        # build_trainer assumes GPUs for data parallelism; on CPU (gloo) we set the ranks.
        trainer.n_gpu, trainer.gpu_rank, trainer.parallel_mode = world_size, rank, "data_parallel"
    # build_trainer made OpenNMT-py's report manager, with its TensorBoard writer when
    # opt.tensorboard is set (a dated subdirectory of tensorboard_log_dir per session): keep
    # that writer, in rank 0 only (CPU ranks all look like rank -1 to OpenNMT-py).
    writer = getattr(trainer.report_manager, "tensorboard_writer", None)
    if writer is not None and rank != 0:
        writer.close()
        writer = None
    report_manager = _report_manager_class()(opt.report_every, on_report, on_valid,
                                             extra_stats, tensorboard_writer=writer)
    trainer.report_manager = report_manager
    if on_checkpoint is not None and rank == 0 and model_saver is not None:
        _announce_saves(model_saver, opt.save_model, on_checkpoint)
    if loss_factory is not None:
        trainer.train_loss = loss_factory(opt, model, vocabs)
        # Losses that change with training progress (scheduled gates) read the step here.
        trainer.train_loss.current_step = lambda: optim.training_step

    train_iter = build_dynamic_dataset_iter(opt, transforms_cls, vocabs, task=CorpusTask.TRAIN,
                                            copy=False, device_id=device_id,
                                            stride=world_size, offset=rank)
    valid_iter = build_dynamic_dataset_iter(opt, transforms_cls, vocabs, task=CorpusTask.VALID,
                                            copy=False, device_id=device_id)
    deadline = time.monotonic() + max_seconds if max_seconds > 0 else None
    flag = {"stopped": False}
    start_step = optim.training_step
    if opt.train_steps and start_step > opt.train_steps:
        return TrainResult(start_step - 1, False, None)
    # Every update before start_step consumed accum_count batches (kdnmt never schedules
    # accum_count, so the first value holds throughout).
    consumed = (start_step - 1) * opt.accum_count[0]
    if rng_state is not None and world_size == 1:
        # Dropout continues from the state the checkpoint was saved with (see shims); with
        # several ranks each has its own state and rank 0 alone saves: they start afresh.
        torch.set_rng_state(rng_state)
    if precision == "bf16":
        shims.autocast_each_update(trainer, torch.bfloat16)
    try:
        trainer.train(
            _budgeted(_skip_batches(train_iter, consumed), deadline, flag),
            opt.train_steps,
            save_checkpoint_steps=opt.save_checkpoint_steps,
            valid_iter=valid_iter,
            valid_steps=opt.valid_steps,
        )
    finally:
        if writer is not None:
            writer.close()  # flushes the events written since its last flush
    if world_size > 1:
        _check_ranks_in_sync(model)
    # Trainer.train saved the final checkpoint; optim.training_step is one past it.
    torch.set_grad_enabled(True)
    last_step = optim.training_step - 1
    final = Path(f"{opt.save_model}_step_{last_step}.pt")
    if on_checkpoint is not None and rank == 0 and final.is_file():
        on_checkpoint(last_step, final, True)
    return TrainResult(last_step, flag["stopped"], report_manager.last_valid)


def _announce_saves(model_saver: Any, save_model: str, hook: CheckpointHook) -> None:
    """Call ``hook`` after every checkpoint OpenNMT-py's saver publishes (it names them
    ``{save_model}_step_{step}.pt``; a save of an already saved step writes nothing)."""
    save = model_saver.save

    def save_and_announce(step: int, moving_average: Any = None) -> None:
        save(step, moving_average=moving_average)
        path = Path(f"{save_model}_step_{step}.pt")
        if path.is_file():
            hook(step, path, False)

    model_saver.save = save_and_announce
