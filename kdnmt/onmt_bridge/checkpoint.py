"""Loading and inspecting OpenNMT-py checkpoints safely.

Checkpoints are loaded with ``weights_only=True`` (see :mod:`.shims`): a checkpoint is data and
must never run code. A truncated or foreign file becomes one clear :class:`KdnmtError`.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdnmt.errors import KdnmtError, check
from kdnmt.onmt_bridge import shims

shims.install()

_STEP_RE = re.compile(r"_step_(\d+)\.pt$")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load an OpenNMT-py checkpoint on CPU, safely, or raise a clear error."""
    path = Path(path)
    check(path.is_file(), f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KdnmtError(
            f"checkpoint {path} is corrupt or truncated and cannot be loaded ({first[:160]})"
        ) from None
    except Exception as exc:  # pickle.UnpicklingError for disallowed globals, among others
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KdnmtError(
            f"checkpoint {path} cannot be loaded safely ({first[:160]})"
        ) from None
    check(
        isinstance(checkpoint, dict) and {"model", "vocab", "opt"} <= set(checkpoint),
        f"{path} is not an OpenNMT-py checkpoint (expected keys model, vocab, opt)",
    )
    return checkpoint


def checkpoint_step(path: Path) -> int:
    """Training step encoded in an OpenNMT-py checkpoint file name (``..._step_N.pt``)."""
    match = _STEP_RE.search(Path(path).name)
    return int(match.group(1)) if match else -1


def trained_steps(optim: object) -> int | None:
    """Updates a checkpoint was trained for, read from its optimizer state (``checkpoint
    ["optim"]``: a training checkpoint, or a resumable release that keeps the step counters);
    None where the optimizer state was dropped. OpenNMT-py saves the step it will take next,
    and names its checkpoint after the last one taken."""
    if isinstance(optim, dict) and isinstance(optim.get("training_step"), int):
        return int(optim["training_step"]) - 1
    return None


def list_checkpoints(model_dir: Path) -> list[Path]:
    """Checkpoints saved by OpenNMT-py in ``model_dir``, oldest step first."""
    found = [p for p in Path(model_dir).glob("*_step_*.pt") if checkpoint_step(p) >= 0]
    return sorted(found, key=checkpoint_step)


@dataclass(frozen=True)
class CheckpointInfo:
    """What kdnmt needs to know about a checkpoint without building the model."""

    src_vocab: list[str]
    tgt_vocab: list[str]
    self_attn_type: str
    encoder_type: str
    decoder_type: str
    hidden_size: int
    enc_layers: int
    dec_layers: int
    parameters: int
    trained_steps: int | None  # None where the optimizer state was dropped


def inspect_checkpoint(checkpoint: dict[str, Any]) -> CheckpointInfo:
    """Summarise a loaded checkpoint: vocabularies, layout and parameter count."""
    opt = checkpoint["opt"]
    vocab = checkpoint["vocab"]
    return CheckpointInfo(
        src_vocab=list(vocab.get("src", [])),
        tgt_vocab=list(vocab.get("tgt", [])),
        self_attn_type=str(getattr(opt, "self_attn_type", "scaled-dot")),
        encoder_type=str(getattr(opt, "encoder_type", "?")),
        decoder_type=str(getattr(opt, "decoder_type", "?")),
        hidden_size=int(getattr(opt, "hidden_size", 0) or 0),
        enc_layers=int(getattr(opt, "enc_layers", 0) or 0),
        dec_layers=int(getattr(opt, "dec_layers", 0) or 0),
        parameters=count_parameters(checkpoint),
        trained_steps=trained_steps(checkpoint.get("optim")),
    )


#: Parameters tied to another one when these OpenNMT-py options are set.
_TIED = {
    "share_embeddings": "model:decoder.embeddings.make_embedding.emb_luts.0.weight",
    "share_decoder_embeddings": "generator:weight",
}


def count_parameters(checkpoint: dict[str, Any]) -> int:
    """Trainable parameters in a checkpoint, excluding buffers, training-only modules and
    tied duplicates (by storage, and by OpenNMT-py's sharing options: a checkpoint gathered
    from data-parallel ranks holds tied tensors as separate copies)."""
    opt = checkpoint.get("opt")
    skip = {key for option, key in _TIED.items() if getattr(opt, option, False)}
    seen: set[int] = set()
    total = 0
    tensors = [(f"model:{k}", v) for k, v in checkpoint["model"].items()]
    tensors += [(f"generator:{k}", v) for k, v in (checkpoint.get("generator") or {}).items()]
    for name, tensor in tensors:
        if (name in skip or name.endswith(".pe.pe") or name.startswith("model:kd_gate.")
                or not tensor.is_floating_point()):
            continue
        key = tensor.untyped_storage().data_ptr()
        if key in seen:
            continue
        seen.add(key)
        total += tensor.numel()
    return total


def strip_keys(checkpoint: dict[str, Any], prefix: str) -> bool:
    """Remove training-only parameters (e.g. the hybrid gate) from a loaded checkpoint, so
    exported and released models hold only the translation model. Returns whether any were."""
    keys = [k for k in checkpoint["model"] if k.startswith(prefix)]
    for key in keys:
        del checkpoint["model"][key]
    return bool(keys)


def cast_floating(checkpoint: dict[str, Any], dtype: torch.dtype) -> int:
    """Cast every floating-point tensor of the model and generator to ``dtype`` in place;
    returns how many changed. Tensors that share storage (tied embeddings and generator) stay
    shared, so the file does not grow by a copy per tie. Released teachers are stored in
    float16 (half the bytes to ship); runs and OpenNMT-py's trainer work in float32."""
    changed = 0
    cast: dict[int, torch.Tensor] = {}
    for part in ("model", "generator"):
        tensors = checkpoint.get(part) or {}
        for key, tensor in tensors.items():
            if tensor.is_floating_point() and tensor.dtype != dtype:
                storage = tensor.untyped_storage().data_ptr()
                if storage not in cast:
                    cast[storage] = tensor.to(dtype)
                tensors[key] = cast[storage]
                changed += 1
    return changed


#: The sinusoidal position tables OpenNMT-py keeps as buffers (5,000 x d_model each): pure
#: functions of the options, so a release leaves them out and adoption rebuilds them.
_POSITION_TABLES = ("encoder.embeddings.make_embedding.pe.pe",
                    "decoder.embeddings.make_embedding.pe.pe")


def drop_position_tables(checkpoint: dict[str, Any]) -> int:
    """Remove the sinusoidal position tables (rebuilt by :func:`rebuild_position_tables`)."""
    dropped = [k for k in _POSITION_TABLES if checkpoint["model"].pop(k, None) is not None]
    return len(dropped)


def rebuild_position_tables(checkpoint: dict[str, Any]) -> int:
    """Recreate missing position tables with OpenNMT-py's own ``PositionalEncoding`` (the
    CTranslate2 converter reads them from the checkpoint). Returns how many were rebuilt."""
    from onmt.modules.embeddings import PositionalEncoding

    opt = checkpoint["opt"]
    if not getattr(opt, "position_encoding", False):
        return 0
    kind = getattr(opt, "position_encoding_type", "SinusoidalInterleaved")
    rebuilt = 0
    for key in _POSITION_TABLES:
        if key in checkpoint["model"]:
            continue
        scope = key.split(".", 1)[0]
        embedding = checkpoint["model"][f"{scope}.embeddings.make_embedding.emb_luts.0.weight"]
        checkpoint["model"][key] = PositionalEncoding(embedding.shape[1], kind).pe
        rebuilt += 1
    return rebuilt


def has_half_tensors(checkpoint: dict[str, Any]) -> bool:
    """Whether a checkpoint stores float16/bfloat16 weights (a released, shrunk checkpoint)."""
    return any(t.dtype in (torch.float16, torch.bfloat16)
               for part in ("model", "generator")
               for t in (checkpoint.get(part) or {}).values())


def to_training_form(checkpoint: dict[str, Any]) -> bool:
    """Undo what a release did to shrink a checkpoint (float16 weights, no position tables):
    float32 with the tables rebuilt, the form OpenNMT-py trains in and the CTranslate2
    converter reads. In place; returns False, touching nothing, for a checkpoint already in
    that form (an ordinary training checkpoint)."""
    half = has_half_tensors(checkpoint)
    rebuilt = rebuild_position_tables(checkpoint)
    if not half and not rebuilt:
        return False
    cast_floating(checkpoint, torch.float32)
    return True


def save_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    """Write a checkpoint atomically (temporary name, then rename)."""
    from kdnmt.fileio import atomic_path

    with atomic_path(Path(path)) as tmp:
        torch.save(checkpoint, tmp)


#: kdnmt's model settings and the OpenNMT-py options that hold them in a checkpoint.
_SHAPE_OPTIONS = {"enc_layers": "enc_layers", "dec_layers": "dec_layers",
                  "hidden_size": "hidden_size", "ff_size": "transformer_ff", "heads": "heads"}


def shape_mismatch(checkpoint: dict[str, Any], model: dict[str, int]) -> str | None:
    """How a checkpoint's architecture differs from kdnmt model settings ``model`` (keys of
    :class:`kdnmt.config.ModelConfig`), or None. kdnmt always ties the embeddings and the
    generator, so a checkpoint that does not is another architecture too."""
    opt = checkpoint["opt"]
    for key, option in _SHAPE_OPTIONS.items():
        there = getattr(opt, option, None)
        if there != model[key]:
            return f"model.{key} is {there} there, {model[key]} here"
    for option in ("share_embeddings", "share_decoder_embeddings"):
        if not getattr(opt, option, False):
            return f"it was trained without {option}, kdnmt's models tie them"
    return None


def load_initial_weights(model: torch.nn.Module, checkpoint: dict[str, Any],
                         skip_prefixes: tuple[str, ...] = ()) -> int:
    """Copy the weights of a loaded ``checkpoint`` into a freshly built ``model`` (a warm
    start: ``--init-from``); returns how many tensors were copied.

    Why not OpenNMT-py's ``train_from`` with ``reset_optim: all``: it builds the model from the
    *checkpoint's* options, so a student asked for with another shape would silently get the
    old one. Here the new run keeps its own configuration (callers check it first with
    :func:`shape_mismatch`) and every tensor must match in name and shape, both ways, so no
    parameter can silently keep its random initialisation. Training-only modules of the
    source (``skip_prefixes``, e.g. the hybrid gate) are left out; the optimizer, step counter
    and RNG state start afresh.
    """
    def is_table(key: str) -> bool:  # sinusoidal position tables: functions of the shape
        return key.endswith(".pe.pe")

    source = {f"model:{k}": v for k, v in checkpoint["model"].items()
              if not k.startswith(skip_prefixes)}
    source.update({f"generator:{k}": v for k, v in (checkpoint.get("generator") or {}).items()})
    state = model.state_dict()
    target = {f"model:{k}": v for k, v in state.items()
              if not k.startswith(("generator.", *skip_prefixes))}
    target.update({f"generator:{k[len('generator.'):]}": v
                   for k, v in state.items() if k.startswith("generator.")})
    for side, keys in (("lacks", set(target) - set(source)), ("has extra", set(source) - set(target))):
        differ = sorted(k for k in keys if not is_table(k))
        check(not differ, f"--init-from: the checkpoint {side} {len(differ)} tensor(s) of this model, "
                          f"e.g. {differ[0].split(':', 1)[1] if differ else ''}: another architecture")
    for key, tensor in target.items():
        if key in source and tuple(source[key].shape) != tuple(tensor.shape):
            raise KdnmtError(
                f"--init-from: another architecture: {key.split(':', 1)[1]} is "
                f"{tuple(source[key].shape)} there, {tuple(tensor.shape)} in this model")
    copied = 0
    with torch.no_grad():
        for key, tensor in target.items():
            if key in source:
                tensor.copy_(source[key].to(tensor.dtype))
                copied += 1
    return copied
