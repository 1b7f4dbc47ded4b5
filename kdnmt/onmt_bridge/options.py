"""Translate a kdnmt :class:`~kdnmt.config.TrainConfig` into OpenNMT-py training options.

kdnmt validates its own small configuration strictly (:mod:`kdnmt.config`); this module is the
one place that knows OpenNMT-py's option names. The resolved options are also written as
``onmt.yaml`` in the model directory so a run can be inspected or replayed with ``onmt_train``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from kdnmt.config import TrainConfig
from kdnmt.onmt_bridge import shims

shims.install()

#: OpenNMT-py 3.5.1 defaults ``self_attn_type`` to ``scaled-dot-flash``, which CTranslate2's
#: converter rejects. ``scaled-dot`` has the same weights and is faster on CPU.
SELF_ATTN_TYPE = "scaled-dot"


def bucket_size_for(train_pairs: int) -> int:
    """OpenNMT-py's default bucket (262,144 examples) must fill before the first batch, which
    takes ~17 s on a small corpus; a bucket of at most 8,192 examples (or the whole corpus if
    smaller) starts at once and still sorts enough examples by length to pad little."""
    return max(64, min(8192, train_pairs))


def onmt_train_options(
    config: TrainConfig,
    *,
    train_src: Path,
    train_tgt: Path,
    valid_src: Path,
    valid_tgt: Path,
    vocab: Path,
    vocab_entries: int,
    model_dir: Path,
    train_pairs: int,
    train_from: Path | None = None,
    device: str = "cpu",
    world_size: int = 1,
) -> dict[str, Any]:
    """The OpenNMT-py option dictionary for one training run.

    On ``cuda``, ``world_size`` and ``gpu_ranks`` are OpenNMT-py's own (one GPU per rank:
    its trainer then all-reduces over NCCL); on the CPU they stay 1 and empty, because
    OpenNMT-py reads ``gpu_ranks`` as "use CUDA" and kdnmt sets the CPU ranks itself.
    """
    m, t = config.model, config.training
    opts: dict[str, Any] = {
        "save_data": str(model_dir / "onmt"),
        "src_vocab": str(vocab),
        "tgt_vocab": str(vocab),
        "share_vocab": True,
        "src_vocab_size": vocab_entries,
        "tgt_vocab_size": vocab_entries,
        "data": {
            "corpus_1": {"path_src": str(train_src), "path_tgt": str(train_tgt),
                         "transforms": ["filtertoolong"], "weight": 1},
            "valid": {"path_src": str(valid_src), "path_tgt": str(valid_tgt),
                      "transforms": ["filtertoolong"]},
        },
        "src_seq_length": t.max_length,
        # filtertoolong counts <s> and </s> on the target side: max_length means pieces.
        "tgt_seq_length": t.max_length + 2,
        "encoder_type": "transformer",
        "decoder_type": "transformer",
        "enc_layers": m.enc_layers,
        "dec_layers": m.dec_layers,
        "hidden_size": m.hidden_size,
        "word_vec_size": m.hidden_size,
        "transformer_ff": m.ff_size,
        "heads": m.heads,
        "position_encoding": True,
        "self_attn_type": SELF_ATTN_TYPE,
        "dropout": [m.dropout],
        "attention_dropout": [m.attention_dropout],
        "share_decoder_embeddings": True,
        "share_embeddings": True,
        "save_model": str(model_dir / "model"),
        "save_checkpoint_steps": t.save_steps,
        "keep_checkpoint": t.keep_checkpoint,
        "train_steps": t.steps,
        "valid_steps": t.valid_steps,
        "report_every": t.report_every,
        "batch_type": "tokens",
        "batch_size": t.batch_size,
        "valid_batch_size": t.batch_size,
        "accum_count": [t.accum_count],
        "accum_steps": [0],
        "optim": "adam",
        "learning_rate": t.learning_rate,
        "decay_method": "noam",
        "warmup_steps": t.warmup_steps,
        "adam_beta2": 0.998,
        "max_grad_norm": 0.0,
        "label_smoothing": t.label_smoothing,
        "param_init": 0.0,
        "param_init_glorot": True,
        "normalization": "tokens",
        "seed": t.seed,
        "num_workers": t.num_workers,
        "bucket_size": bucket_size_for(train_pairs),
        "log_file": str(model_dir / "train.log"),
        "world_size": world_size if device == "cuda" else 1,
        "gpu_ranks": list(range(world_size)) if device == "cuda" else [],
    }
    if train_from is not None:
        opts["train_from"] = str(train_from)
    return opts


def write_onmt_yaml(opts: dict[str, Any], path: Path) -> None:
    """Write options in the YAML form ``onmt_train -config`` reads."""
    from kdnmt.fileio import write_text

    write_text(path, yaml.safe_dump(opts, sort_keys=False))


def parse_train_options(config_path: Path) -> argparse.Namespace:
    """Parse an ``onmt.yaml`` with OpenNMT-py's own parser and validators.

    Going through OpenNMT-py's parser (rather than building a Namespace by hand) gives every
    option it knows its default, exactly as ``onmt_train -config`` would.
    """
    from onmt.bin.train import _get_parser
    from onmt.utils.parse import ArgumentParser

    parser = _get_parser()
    opt, unknown = parser.parse_known_args(["-config", str(config_path)])
    if unknown:
        raise ValueError(f"OpenNMT-py did not understand: {' '.join(unknown)}")
    ArgumentParser.validate_train_opts(opt)
    ArgumentParser.update_model_opts(opt)
    ArgumentParser.validate_model_opts(opt)
    return opt


def known_onmt_options() -> set[str]:
    """Every option name OpenNMT-py's trainer accepts (for validating pass-through keys)."""
    from onmt.bin.train import _get_parser

    return {action.dest for action in _get_parser()._actions}
