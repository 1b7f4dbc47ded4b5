"""OpenNMT-py checkpoint -> CTranslate2 model, with CTranslate2's own converter.

The converter is called in-process, not as ``ct2-opennmt-py-converter``: it loads the
checkpoint with ``torch.load(weights_only=True)``, which needs the ``argparse.Namespace``
allowance that :mod:`.shims` registers in this process.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from kdnmt.errors import KdnmtError
from kdnmt.fileio import atomic_dir
from kdnmt.gate import GATE_PREFIX
from kdnmt.models import QUANTIZATIONS
from kdnmt.onmt_bridge import shims
from kdnmt.onmt_bridge.checkpoint import load_checkpoint, strip_keys

shims.install()


def convert_checkpoint(checkpoint: Path, output: Path, quantization: str = "int8") -> None:
    """Write a CTranslate2 model for ``checkpoint`` to ``output`` (atomically, replacing it).

    Training-only parameters (the hybrid gate, ``kd_gate.*``) are stripped. A checkpoint
    trained with ``self_attn_type: scaled-dot-flash`` (OpenNMT-py 3.5's default)
    has the same weights as ``scaled-dot``, but the converter rejects the option; such a
    checkpoint is converted from a temporary copy with the option rewritten.
    """
    from ctranslate2.converters import OpenNMTPyConverter

    if quantization not in QUANTIZATIONS:
        raise KdnmtError(
            f"unknown quantization '{quantization}' (valid: {', '.join(QUANTIZATIONS)})"
        )
    loaded = load_checkpoint(checkpoint)
    with tempfile.TemporaryDirectory(prefix=".kdnmt-tmp-conv.") as scratch:
        source = Path(checkpoint)
        rewrite = strip_keys(loaded, GATE_PREFIX)  # the hybrid gate is not part of the model
        if getattr(loaded["opt"], "self_attn_type", "scaled-dot") == "scaled-dot-flash":
            loaded["opt"].self_attn_type = "scaled-dot"
            rewrite = True
        if rewrite:
            source = Path(scratch) / "checkpoint.pt"
            torch.save(loaded, source)
        del loaded
        with atomic_dir(output) as tmp:
            try:
                OpenNMTPyConverter(str(source)).convert(str(tmp), quantization=quantization,
                                                         force=True)
            except (ValueError, NotImplementedError, KeyError) as exc:
                raise KdnmtError(
                    f"CTranslate2 cannot convert {checkpoint}: {str(exc).splitlines()[0]}"
                ) from None
