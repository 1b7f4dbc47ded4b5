"""Translate a kdnmt :class:`~kdnmt.config.TrainConfig` into OpenNMT-py training options.

kdnmt validates its own small configuration strictly (:mod:`kdnmt.config`); this module is the
one place that knows OpenNMT-py's option names. The resolved options are also written as
``onmt.yaml`` in the model directory, the record of exactly what OpenNMT-py was given.

What kdnmt's configuration does not cover (checkpoint averaging, early stopping, fp16 on a
GPU, ...) goes through the ``onmt:`` section of a training YAML unchanged: its names and values
are checked with OpenNMT-py's own parser (:func:`check_passthrough`), and the options kdnmt
sets itself are refused, so that a run directory stays what kdnmt's other commands expect.
"""

from __future__ import annotations

import argparse
import difflib
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from kdnmt.config import ModelConfig, TrainConfig, TrainingConfig
from kdnmt.errors import KdnmtError
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
        # OpenNMT-py's own TensorBoard writer (training.tensorboard, the kdnmt[tensorboard]
        # extra); it adds a dated subdirectory per training session.
        "tensorboard": t.tensorboard,
        "tensorboard_log_dir": str(model_dir / "tensorboard"),
        "world_size": world_size if device == "cuda" else 1,
        "gpu_ranks": list(range(world_size)) if device == "cuda" else [],
    }
    if train_from is not None:
        opts["train_from"] = str(train_from)
    if config.onmt:
        check_passthrough(config.onmt)
        check_passthrough_device(config.onmt, device)
        opts.update(config.onmt)
    return opts


def check_passthrough_device(values: dict[str, Any], device: str) -> None:
    """Refuse ``onmt:`` options the chosen device cannot run (called before a model
    directory is written)."""
    if values.get("model_dtype") == "fp16" and device != "cuda":
        raise KdnmtError("onmt.model_dtype fp16 trains on a GPU only (OpenNMT-py's mixed "
                         "precision is CUDA's): add --device cuda, or drop it")


def check_precision(precision: str, device: str) -> None:
    """``training.precision: bf16`` is torch's CPU autocast around OpenNMT-py's trainer. On a
    GPU the trainer's own ``torch.cuda.amp.autocast(enabled=...)`` decides and would switch it
    off silently, so it is refused there in favour of OpenNMT-py's mixed precision."""
    if precision == "bf16" and device != "cpu":
        raise KdnmtError("training.precision bf16 is for CPU training; on a GPU use "
                         "OpenNMT-py's mixed precision (onmt: {model_dtype: fp16})")


def write_onmt_yaml(opts: dict[str, Any], path: Path) -> None:
    """Write options in the YAML form ``onmt_train -config`` reads."""
    from kdnmt.fileio import write_text

    write_text(path, yaml.safe_dump(opts, sort_keys=False))


def parse_train_options(config_path: Path) -> argparse.Namespace:
    """Parse an ``onmt.yaml`` with OpenNMT-py's own parser and validators.

    Going through OpenNMT-py's parser (rather than building a Namespace by hand) gives every
    option it knows its default, exactly as ``onmt_train -config`` would.
    """
    from onmt.utils.parse import ArgumentParser

    parser = _strict_parser()
    opt, unknown = parser.parse_known_args(["-config", str(config_path)])
    if unknown:
        raise ValueError(f"OpenNMT-py did not understand: {' '.join(unknown)}")
    try:
        # Its cross-option checks are assertions; with `onmt:` options they are bad input.
        ArgumentParser.validate_train_opts(opt)
        ArgumentParser.update_model_opts(opt)
        ArgumentParser.validate_model_opts(opt)
    except AssertionError as exc:
        raise KdnmtError(f"OpenNMT-py refused the options of {config_path}: {exc}") from None
    return opt


def _strict_parser() -> Any:
    """OpenNMT-py's trainer parser, raising a KdnmtError where argparse would print its usage
    and exit with status 2."""
    from onmt.bin.train import _get_parser

    parser = _get_parser()

    def error(message: str) -> None:
        raise KdnmtError(f"OpenNMT-py: {message}")

    parser.error = error
    return parser


def known_onmt_options() -> set[str]:
    """Every option name OpenNMT-py's trainer accepts (its YAML keys are these names)."""
    from onmt.bin.train import _get_parser

    return {action.dest for action in _get_parser()._actions if action.dest != "help"}


#: Options :func:`onmt_train_options` sets to a value of its choosing that ``onmt:`` may
#: change; every other option it sets is kdnmt's own.
TUNABLE_DEFAULTS = frozenset({"optim", "adam_beta2", "max_grad_norm", "decay_method",
                              "param_init", "param_init_glorot", "bucket_size"})

#: kdnmt's own options that :func:`onmt_train_options` does not always set, with the reason.
ALSO_OWNED = {
    "layers": "use model.enc_layers and model.dec_layers",
    "enc_hid_size": "use model.hidden_size", "dec_hid_size": "use model.hidden_size",
    "src_word_vec_size": "use model.hidden_size", "tgt_word_vec_size": "use model.hidden_size",
    "model_type": "kdnmt trains text transformers",
    "train_from": "use --resume or --init-from", "reset_optim": "use --resume or --init-from",
    "update_vocab": "the vocabulary is the run's, from kdnmt prepare",
    "vocab_size_multiple": "the vocabulary is the run's, from kdnmt prepare",
    "config": "kdnmt writes onmt.yaml itself", "save_config": "kdnmt writes onmt.yaml itself",
    "overwrite": "from the run directory", "n_sample": "kdnmt trains, it does not dump samples",
    "dump_transforms": "kdnmt trains, it does not dump samples",
    "transforms": "kdnmt prepare tokenizes; the data are the run's",
}

#: kdnmt's name for an option it sets, where it is not ``model.NAME`` / ``training.NAME``.
_KDNMT_NAME = {
    "word_vec_size": "model.hidden_size", "transformer_ff": "model.ff_size",
    "train_steps": "training.steps (or --steps)", "valid_batch_size": "training.batch_size",
    "src_seq_length": "training.max_length", "tgt_seq_length": "training.max_length",
    "save_checkpoint_steps": "training.save_steps", "world_size": "--world-size",
    "gpu_ranks": "--device and --world-size",
}


def owned_options() -> dict[str, str]:
    """The OpenNMT-py options kdnmt sets itself, each with what to use instead. Derived from
    :func:`onmt_train_options`, so that an option it starts to set is refused in ``onmt:``."""
    here = Path("x")
    built = onmt_train_options(TrainConfig(), train_src=here, train_tgt=here, valid_src=here,
                               valid_tgt=here, vocab=here, vocab_entries=8, model_dir=here,
                               train_pairs=8, train_from=here, device="cuda", world_size=2)
    sections = {f.name: "model" for f in fields(ModelConfig)}
    sections.update({f.name: "training" for f in fields(TrainingConfig)})
    owned = {}
    for name in set(built) - TUNABLE_DEFAULTS:
        if name in _KDNMT_NAME:
            owned[name] = f"use {_KDNMT_NAME[name]}"
        elif name in sections:
            owned[name] = f"use {sections[name]}.{name}"
        else:
            owned[name] = "from the run directory, the model's name and kdnmt's architecture"
    owned.update(ALSO_OWNED)
    return owned


def _as_config_text(value: Any) -> Any:
    """A YAML value as OpenNMT-py's YAML config reader hands it to its parser: text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [_as_config_text(item) for item in value]
    return str(value)


def check_passthrough(values: dict[str, Any], where: str = "onmt") -> None:
    """Refuse an ``onmt:`` option OpenNMT-py's trainer does not know (naming close matches),
    one kdnmt sets itself (naming kdnmt's own), or a value OpenNMT-py's parser rejects.

    Values go through OpenNMT-py's own parser, converted as its YAML config reader converts
    them, so what passes here is what ``parse_train_options`` will accept."""
    parser = _strict_parser()
    for action in parser._actions:
        action.required = False  # one option at a time, without the data and vocabularies
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    owned = owned_options()
    for key, value in values.items():
        if key not in actions:
            close = difflib.get_close_matches(str(key), list(actions), n=3, cutoff=0.6)
            hint = (f"did you mean {', '.join(close)}?" if close
                    else "see OpenNMT-py 3.5.1's training options")
            raise KdnmtError(f"{where}.{key} is not an option of OpenNMT-py's trainer ({hint})")
        if key in owned:
            raise KdnmtError(f"{where}.{key} cannot be passed through: kdnmt sets it "
                             f"({owned[key]})")
        try:
            argv = parser.convert_item_to_command_line_arg(actions[key], key,
                                                           _as_config_text(value))
            parser.parse_known_args(argv)
        except (KdnmtError, ValueError) as exc:
            message = str(exc).removeprefix("OpenNMT-py: ")
            raise KdnmtError(f"{where}.{key}: {value!r} refused by OpenNMT-py ({message})") \
                from None
