"""`kdnmt export`: a self-contained CTranslate2 model directory for deployment.

The directory holds the converted model, the SentencePiece model and a model card
(:mod:`kdnmt.model_card`), so `kdnmt translate --model DIR` (or any CTranslate2 user) needs
nothing else from the run. An
existing directory is never replaced without ``--force``, and the export is only moved into
place once complete and once a smoke translation has run on it.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdnmt import __version__
from kdnmt.errors import KdnmtError, check
from kdnmt.eval_report import load_rows
from kdnmt.fileio import atomic_dir, dir_size, write_json, write_text
from kdnmt.model_card import card_data, render
from kdnmt.models import checkpoint_path, load_model_info
from kdnmt.rundir import RunDir
from kdnmt.translation import Translator

SPM_NAME = "spm.model"
CARD_NAME = "kdnmt.json"


@dataclass
class ExportOptions:
    run: Path
    model: str
    quantization: str = "int8"
    output: Path | None = None
    force: bool = False
    licence: str | None = None


def export(opts: ExportOptions) -> dict[str, Any]:
    """Run `kdnmt export`; returns the model card data (with ``smoke`` translation)."""
    from kdnmt.onmt_bridge.convert import convert_checkpoint

    run = RunDir(Path(opts.run))
    manifest = run.load_manifest()
    info = load_model_info(run, opts.model)
    output = Path(opts.output) if opts.output else run.export_dir(opts.model, opts.quantization)
    if output.exists() and not opts.force:
        raise KdnmtError(f"{output} already exists; pass --force to overwrite it")
    check(not output.exists() or output.is_dir(), f"{output} exists and is not a directory")
    check(opts.licence is None or (opts.licence.strip() and "\n" not in opts.licence),
          "--licence must be one non-empty line (an SPDX identifier such as CC-BY-4.0, or a "
          "short statement)")
    load_rows(run.eval_json)  # a damaged eval report fails before any conversion
    smoke_source = _smoke_sentence(run, manifest)
    with atomic_dir(output) as tmp:
        if info.get("ct2_only"):
            shutil.copytree(run.model_dir(opts.model) / "ct2", tmp, dirs_exist_ok=True)
        else:
            convert_checkpoint(checkpoint_path(run, info), tmp / "model", opts.quantization)
            for item in (tmp / "model").iterdir():
                item.rename(tmp / item.name)
            (tmp / "model").rmdir()
        shutil.copyfile(run.spm_model, tmp / SPM_NAME)
        card = {
            "name": opts.model,
            "role": info.get("role", "?"),
            "src": manifest["src"],
            "tgt": manifest["tgt"],
            "quantization": opts.quantization,
            "parameters": info.get("parameters"),
            "step": info.get("step"),
            "source_checkpoint": info.get("checkpoint"),
            "checkpoint_sha256": info.get("checkpoint_sha256", ""),
            "spm_sha256": manifest["sentencepiece"]["sha256"],
            "teacher": info.get("teacher"),
            "kdnmt_version": __version__,
            "exported": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            **card_data(run, manifest, info, opts.quantization,
                        opts.licence.strip() if opts.licence else None),
        }
        card["size_bytes"] = dir_size(tmp)
        with Translator(tmp, tmp / SPM_NAME, beam=1) as translator:
            smoke = translator.translate([smoke_source])[0]
        # An undertrained model may answer with an empty line: the smoke test is that the
        # exported directory loads and translates, not that the model is good.
        card["smoke"] = {"source": smoke_source, "translation": smoke}
        write_json(tmp / CARD_NAME, card)
        write_text(tmp / "README.md", render(card))
    card["output"] = str(output)
    return card


def _smoke_sentence(run: RunDir, manifest: dict[str, Any]) -> str:
    """A real source sentence of the run (the first validation line) to translate once."""
    with open(run.text("valid", manifest["src"]), encoding="utf-8") as handle:
        return handle.readline().strip()
