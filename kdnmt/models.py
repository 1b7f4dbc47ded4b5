"""Finding a run's trained models and their CTranslate2 conversions.

A model is usable once ``models/NAME/model.json`` exists (written when training ends, or when
a teacher is imported). Conversions are cached in ``ct2/NAME-QUANT`` and redone when the
checkpoint's checksum changes, so `eval` after more training never scores a stale model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kdnmt.errors import KdnmtError, check
from kdnmt.fileio import sha256_file, write_json
from kdnmt.rundir import RunDir, check_file_name, check_name

#: CTranslate2 quantizations kdnmt converts to (eval, generate, advise, export). Here rather
#: than in the converter so that the CLI can offer them as choices without importing torch.
QUANTIZATIONS = ("int8", "int8_float32", "int16", "float32")


def load_model_info(run: RunDir, name: str) -> dict[str, Any]:
    """The ``model.json`` of model ``name``; a clear error if it is not (yet) there."""
    path = run.model_info_path(name)
    if not path.is_file():
        known = run.model_names()
        hint = f"models in this run: {', '.join(known)}" if known else "this run has no model yet"
        raise KdnmtError(f"unknown model '{name}' in {run.root} ({hint})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise KdnmtError(f"{path} is corrupt") from None


def checkpoint_path(run: RunDir, info: dict[str, Any]) -> Path:
    """The model's checkpoint, checked against the sha256 its ``model.json`` recorded: a
    teacher edited or damaged in place would otherwise decode or distil without a word."""
    name = check_name(str(info.get("name")))
    path = run.model_dir(name) / check_file_name(info.get("checkpoint"),
                                                 str(run.model_info_path(name)))
    check(path.is_file(), f"checkpoint {path} of model '{info['name']}' is missing")
    recorded = info.get("checkpoint_sha256")
    if recorded and sha256_file(path) != recorded:
        from kdnmt.onmt_bridge.checkpoint import load_checkpoint

        load_checkpoint(path)  # a truncated file is named as such
        raise KdnmtError(
            f"checkpoint {path} of model '{info['name']}' was changed after training: its "
            f"sha256 does not match {run.model_info_path(info['name'])} (restore it or train "
            "the model again)"
        )
    return path


def ct2_model(run: RunDir, name: str, quantization: str) -> Path:
    """The CTranslate2 conversion of model ``name``, converting (once) if needed."""
    info = load_model_info(run, name)
    if info.get("ct2_only"):
        return run.model_dir(name) / "ct2"
    out = run.ct2_dir(name, quantization)
    stamp = out / "kdnmt-source.json"
    if stamp.is_file():
        try:
            if json.loads(stamp.read_text())["checkpoint_sha256"] == info["checkpoint_sha256"]:
                return out
        except (json.JSONDecodeError, KeyError):
            pass
    # Imported here: a cached conversion must not pay for importing torch and OpenNMT-py.
    from kdnmt.onmt_bridge.convert import convert_checkpoint

    convert_checkpoint(checkpoint_path(run, info), out, quantization)
    write_json(stamp, {"checkpoint": info["checkpoint"],
                       "checkpoint_sha256": info["checkpoint_sha256"],
                       "quantization": quantization})
    return out
