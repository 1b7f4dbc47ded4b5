"""Compatibility shims that let OpenNMT-py 3.5.1 run on torch 2.13.

OpenNMT-py is unmaintained and pins torch<2.3. Every workaround kdnmt needs lives here, each
one commented with why, and ``tests/unit/test_onmt_shims.py`` fails loudly if one stops
working. Nothing outside :mod:`kdnmt.onmt_bridge` imports ``onmt``; call :func:`install` (the
bridge modules do) before importing it.

1. Placeholder ``spacy`` and ``fasttext`` modules. ``onmt/transforms/__init__.py`` imports
   every transform, and two of them import these at module level. We put a directory of
   placeholder packages at the *end* of ``sys.path`` (a real installation still wins) rather than
   in ``sys.modules``: OpenNMT-py's data loader uses ``multiprocessing_context="spawn"``, and a
   spawned worker inherits the parent's ``sys.path`` but not its ``sys.modules``.
2. Safe checkpoint loading. torch >= 2.6 defaults ``torch.load`` to ``weights_only=True``.
   OpenNMT-py checkpoints hold an ``argparse.Namespace`` (the options); we allow exactly that
   class with ``torch.serialization.add_safe_globals`` and keep safe loading on, so a checkpoint
   can never run code. CTranslate2's OpenNMT-py converter calls ``torch.load(weights_only=True)``
   itself, so it is called in-process (:mod:`kdnmt.onmt_bridge.convert`) under this allowance.
3. OpenNMT-py's own ``torch.load`` calls (``model_saver.load_checkpoint``) pass no
   ``weights_only`` and so get torch's safe default: with (2) they work unchanged.
4. Atomic checkpoints. ``ModelSaver._save`` calls ``torch.save(checkpoint, path)`` straight onto
   the final name, so a kill during a save leaves a truncated checkpoint that ``--resume`` would
   pick up. The ``torch`` name inside ``onmt.models.model_saver`` is replaced by a proxy whose
   ``save`` writes to a temporary file and renames it (:func:`patch_model_saver`). The same
   proxy adds the torch random state to each checkpoint, and ``run_training`` restores it and
   skips the batches already consumed (OpenNMT-py reseeds and rereads its corpus from the top
   on resume), so a resumed run ends bit-identical to an uninterrupted one.
5. Logging. OpenNMT-py logs every step to the console, and its data iterator calls
   ``init_logger()`` again at every epoch, which drops the file handler. kdnmt shows its own
   progress, so :func:`log_to_file_only` keeps OpenNMT-py's log in the run directory (warnings
   still reach the console) and pins the iterator's ``init_logger`` to that logger. A log
   record that cannot be written (full disk) is dropped silently rather than printing a
   traceback.
6. Empty buckets. When every example of a bucket is filtered out (``filtertoolong``),
   ``onmt.inputters.dynamic_iterator.process`` returns None and the iterator crashes with
   ``TypeError: 'NoneType' object is not iterable``; :func:`patch_empty_buckets` makes it an
   empty bucket, which the iterator then skips.
7. Data-parallel striding. ``ParallelCorpus.load(offset, stride)`` gives rank ``offset`` the
   lines with ``(i // stride) % stride == offset`` (blocks of ``stride`` lines), but numbers
   them ``j * stride + offset``, so ``cid_line_number`` is wrong as soon as ``stride > 1`` and a
   soft-target lookup by line would read another sentence's targets.
   :func:`patch_corpus_striding` selects ``i % stride == offset``, which those numbers match.
8. Noise: OpenNMT-py triggers torch ``FutureWarning``s (``custom_fwd``/``custom_bwd``,
   ``torch.cuda.amp.autocast``) on every import and step; they are filtered here, by module.
9. bfloat16 on the CPU (``training.precision: bf16``). OpenNMT-py's mixed precision is CUDA's.
   One ``torch.autocast("cpu")`` around the whole training loop does not work: the trainer's
   own ``torch.cuda.amp.autocast(enabled=False)`` inside it switches autocast's cast cache on
   (a flag shared by every device), and the cache is only cleared when the outermost context
   exits, so every forward pass would keep reading the bfloat16 copies of the first step's
   weights and the model would not learn. :func:`autocast_each_update` enters the context per
   update (``Trainer._gradient_accumulation``: forward, loss, backward and optimizer step) and
   per validation, so the cache lives for one update.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

PLACEHOLDER_DIR = Path(__file__).resolve().parent / "placeholders"

_installed = False


def install() -> None:
    """Apply every shim once; safe to call many times."""
    global _installed
    if _installed:
        return
    placeholder_dir = str(PLACEHOLDER_DIR)
    if placeholder_dir not in sys.path:
        sys.path.append(placeholder_dir)
    torch.serialization.add_safe_globals([argparse.Namespace])
    for module in ("onmt", "torch.cuda.amp", "torch.amp"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
    warnings.filterwarnings("ignore", message=".*torch.cuda.amp.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*custom_(fwd|bwd).*", category=FutureWarning)
    _installed = True


#: Checkpoint key of the torch random state saved with each training checkpoint.
RNG_STATE_KEY = "kdnmt_rng_state"


class _AtomicTorch:
    """Stands in for ``torch`` inside ``onmt.models.model_saver``: atomic ``save``, rest as is."""

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(f, str | os.PathLike):
            torch.save(obj, f, *args, **kwargs)
            return
        if isinstance(obj, dict) and "optim" in obj:
            # The random state the next update starts from (dropout): resuming restores it,
            # so a resumed run continues exactly as an uninterrupted one would.
            obj = {**obj, RNG_STATE_KEY: torch.get_rng_state()}
        directory = os.path.dirname(os.fspath(f)) or "."
        fd, tmp = tempfile.mkstemp(prefix=".kdnmt-tmp-ckpt.", dir=directory)
        os.close(fd)
        try:
            # Through a Python file object: a failed write (full disk, file size limit) then
            # surfaces as the OSError it is, instead of torch's opaque RuntimeError.
            with open(tmp, "wb") as handle:
                torch.save(obj, handle, *args, **kwargs)
            os.replace(tmp, f)
        except (RuntimeError, OSError) as exc:
            cause = _write_error(exc)
            if cause is None:
                raise
            raise OSError(cause.errno, cause.strerror, os.fspath(f)) from exc
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _write_error(exc: BaseException) -> OSError | None:
    """The OSError with an errno behind a failed ``torch.save`` (torch wraps it in a
    RuntimeError, its ``__context__``), or None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def patch_model_saver() -> None:
    """Make OpenNMT-py's checkpoint writes atomic (shim 4). Imports ``onmt``."""
    install()
    import onmt.models.model_saver as model_saver

    if not isinstance(model_saver.torch, _AtomicTorch):
        model_saver.torch = _AtomicTorch()


def log_to_file_only(log_file: str) -> None:
    """Send OpenNMT-py's log to ``log_file``; only warnings reach the console (shim 5)."""
    import logging

    install()
    import onmt.inputters.dynamic_iterator as dynamic_iterator
    from onmt.utils.logging import init_logger

    logger = init_logger(log_file)
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            # On a full disk the log cannot be written either: without this, logging prints
            # a traceback per record to stderr, burying the one error line kdnmt reports
            # (the checkpoint write that failed).
            handler.handleError = lambda record: None  # type: ignore[method-assign]
        else:
            handler.setLevel(logging.WARNING)
    dynamic_iterator.init_logger = lambda *args, **kwargs: logging.getLogger("onmt")


def patch_empty_buckets() -> None:
    """A bucket whose examples were all filtered is empty, not a crash (shim 6)."""
    install()
    import onmt.inputters.dynamic_iterator as dynamic_iterator

    original = dynamic_iterator.process
    if getattr(original, "_kdnmt_patched", False):
        return

    def process(task: Any, bucket: Any, **kwargs: Any) -> Any:
        result = original(task, bucket, **kwargs)
        return [] if result is None else result

    process._kdnmt_patched = True  # type: ignore[attr-defined]
    dynamic_iterator.process = process


def patch_corpus_striding() -> None:
    """Rank ``offset`` of ``stride`` reads lines ``offset, offset + stride, ...`` (shim 7)."""
    install()
    from onmt.inputters.text_corpus import ParallelCorpus

    original = ParallelCorpus.load
    if getattr(original, "_kdnmt_patched", False):
        return

    def load(self: Any, offset: int = 0, stride: int = 1) -> Any:
        for i, example in enumerate(original(self, offset=0, stride=1)):
            if i % stride == offset:
                yield example

    load._kdnmt_patched = True  # type: ignore[attr-defined]
    ParallelCorpus.load = load


def autocast_each_update(trainer: Any, dtype: torch.dtype) -> None:
    """Run each update and each validation of OpenNMT-py's ``trainer`` under CPU autocast to
    ``dtype`` (shim 9); the weights, the optimizer and the losses stay float32."""
    for name in ("_gradient_accumulation", "validate"):
        method = getattr(trainer, name, None)
        if method is None:
            raise RuntimeError(f"OpenNMT-py's Trainer has no {name}: shim 9 "
                               "(training.precision bf16) needs updating")

        def in_autocast(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            with torch.autocast("cpu", dtype=dtype):
                return _method(*args, **kwargs)

        setattr(trainer, name, in_autocast)


def check_all() -> str:
    """Install every shim and import what needs them (`kdnmt doctor`'s check): raises if one
    no longer applies to the installed OpenNMT-py or torch; returns what was applied."""
    install()
    import onmt.transforms  # noqa: F401  (needs the spaCy/fastText placeholders)

    patch_model_saver()
    patch_empty_buckets()
    patch_corpus_striding()
    return "placeholders, safe loading, atomic checkpoints, buckets, striding"
