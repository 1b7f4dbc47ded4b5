"""Typed training configuration: presets, YAML in and out, unknown keys rejected.

OpenNMT-py parses its options with ``parse_known_args``, so a typo in one of its configs is
silently ignored. kdnmt's own configuration is small and strict instead: every key is known,
typed and range-checked here, in one place, and a mistake names the key and the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from kdnmt.errors import KdnmtError, check
from kdnmt.strict import Problems, coerce


@dataclass
class ModelConfig:
    """Transformer shape. Embeddings are shared between encoder, decoder and generator."""

    enc_layers: int = 3
    dec_layers: int = 3
    hidden_size: int = 256
    ff_size: int = 1024
    heads: int = 4
    dropout: float = 0.1
    attention_dropout: float = 0.1

    def validate(self) -> None:
        for name in ("enc_layers", "dec_layers", "hidden_size", "ff_size", "heads"):
            check(getattr(self, name) >= 1, f"model.{name} must be >= 1, got {getattr(self, name)}")
        check(
            self.hidden_size % self.heads == 0,
            f"model.hidden_size ({self.hidden_size}) must be divisible by model.heads ({self.heads})",
        )
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            check(0.0 <= value < 1.0, f"model.{name} must be in [0, 1), got {value}")


#: What a model of a run is for (model.json's role; `kdnmt train --role`).
ROLES = ("teacher", "student")
#: training.precision's values (see TrainingConfig).
PRECISIONS = ("fp32", "bf16", "auto")


@dataclass
class TrainingConfig:
    """Optimisation and bookkeeping. Steps count optimizer updates, as in OpenNMT-py."""

    steps: int = 2000
    batch_size: int = 4096
    accum_count: int = 1
    learning_rate: float = 0.4  # noam scale: peak = lr * hidden^-0.5 * warmup^-0.5
    warmup_steps: int = 400
    label_smoothing: float = 0.1
    max_length: int = 150
    valid_steps: int = 500
    save_steps: int = 500
    keep_checkpoint: int = 3
    report_every: int = 10
    seed: int = 1
    num_workers: int = 0
    max_minutes: float = 0.0
    # TensorBoard event files under models/NAME/tensorboard (OpenNMT-py's writer; needs the
    # kdnmt[tensorboard] extra). kdnmt's own metrics.csv is written either way.
    tensorboard: bool = False
    # The learning curve (models/NAME/curve.csv): greedy CTranslate2 BLEU/chrF of the first
    # bleu_sentences valid pairs at the first checkpoint save at or after every bleu_every
    # updates, and at the last one; 0 = no curve.
    bleu_every: int = 500
    bleu_sentences: int = 300
    # Arithmetic of the forward and backward passes on the CPU: fp32, or bf16 (torch's CPU
    # autocast; the weights, optimizer and losses stay float32). bf16 pays on CPUs with native
    # bfloat16 (avx512_bf16 or AMX): measured in docs/benchmarks.md. auto = bf16 on a CPU
    # with native bfloat16, fp32 elsewhere (resolved when training starts).
    precision: str = "fp32"

    def validate(self) -> None:
        for name in ("steps", "batch_size", "accum_count", "max_length", "valid_steps",
                     "save_steps", "report_every"):
            check(getattr(self, name) >= 1, f"training.{name} must be >= 1, got {getattr(self, name)}")
        check(self.warmup_steps >= 0, f"training.warmup_steps must be >= 0, got {self.warmup_steps}")
        check(self.learning_rate > 0, f"training.learning_rate must be > 0, got {self.learning_rate}")
        check(
            0.0 <= self.label_smoothing < 1.0,
            f"training.label_smoothing must be in [0, 1), got {self.label_smoothing}",
        )
        check(self.keep_checkpoint >= 1 or self.keep_checkpoint == -1,
              f"training.keep_checkpoint must be >= 1 or -1 (keep all), got {self.keep_checkpoint}")
        check(self.save_steps % self.report_every == 0,
              f"training.save_steps ({self.save_steps}) must be a multiple of "
              f"training.report_every ({self.report_every}), so that a diverged loss is caught "
              "before a checkpoint is saved")
        check(self.num_workers >= 0, f"training.num_workers must be >= 0, got {self.num_workers}")
        check(self.max_minutes >= 0, f"training.max_minutes must be >= 0, got {self.max_minutes}")
        check(self.bleu_every >= 0,
              f"training.bleu_every must be >= 0 (0 = no learning curve), got {self.bleu_every}")
        check(self.bleu_sentences >= 1,
              f"training.bleu_sentences must be >= 1, got {self.bleu_sentences}")
        check(self.precision in PRECISIONS,
              f"training.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


@dataclass
class TrainConfig:
    """Everything `kdnmt train` needs: a model shape and a training schedule."""

    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    #: OpenNMT-py trainer options passed through as they are (the ``onmt:`` section), for
    #: what kdnmt's own keys do not cover: checkpoint averaging, early stopping, fp16 on a
    #: GPU. Checked against OpenNMT-py's own parser when applied (see :func:`_apply_onmt`).
    onmt: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        self.model.validate()
        self.training.validate()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if not data["onmt"]:
            del data["onmt"]  # the config.yaml of a model without pass-through stays as it was
        return data


#: Presets, smallest first. Parameter counts (8k shared vocabulary) are in docs/train.md and
#: are checked against the built OpenNMT-py model by tests/unit/test_config.py.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # ~2.4M: the smallest useful student; fast enough for the demo on 2 CPU cores.
    "tiny": {
        "model": {"enc_layers": 3, "dec_layers": 2, "hidden_size": 128, "ff_size": 512, "heads": 4},
        "training": {"batch_size": 4096, "learning_rate": 0.4, "warmup_steps": 400},
    },
    # ~8.9M: deep encoder, shallow decoder (the decoder dominates decoding time).
    "small": {
        "model": {"enc_layers": 6, "dec_layers": 2, "hidden_size": 256, "ff_size": 1024, "heads": 4},
        "training": {"batch_size": 4096, "learning_rate": 0.4, "warmup_steps": 800},
    },
    # ~36M: transformer-base width, six encoder and three decoder layers.
    "base": {
        "model": {"enc_layers": 6, "dec_layers": 3, "hidden_size": 512, "ff_size": 2048, "heads": 8},
        "training": {"batch_size": 4096, "learning_rate": 2.0, "warmup_steps": 4000},
    },
    # ~48M: transformer-base (Vaswani et al. 2017), the usual teacher.
    "big": {
        "model": {"enc_layers": 6, "dec_layers": 6, "hidden_size": 512, "ff_size": 2048, "heads": 8},
        "training": {"batch_size": 8192, "learning_rate": 2.0, "warmup_steps": 8000},
    },
}


def _apply(section_obj: Any, values: Any, section: str, source: str,
           problems: Problems) -> None:
    check(isinstance(values, dict), f"{source}: section '{section}' must be a mapping")
    known = {f.name: f for f in fields(section_obj)}
    for key, value in values.items():
        with problems.collect():
            if key not in known:
                raise KdnmtError(
                    f"{source}: unknown key '{section}.{key}' "
                    f"(valid keys: {', '.join(sorted(known))})"
                )
            kind = {"int": int, "float": float, "str": str, "bool": bool}[str(known[key].type)]
            setattr(section_obj, key, coerce(value, kind, f"{source}: {section}.{key}"))


def apply_overrides(config: TrainConfig, overrides: dict[str, Any], source: str) -> TrainConfig:
    """Apply a nested ``{"model": {...}, "training": {...}}`` mapping onto ``config``; every
    unknown key and wrongly typed value of the mapping is reported at once."""
    check(isinstance(overrides, dict), f"{source}: the configuration must be a mapping")
    sections = {"model": config.model, "training": config.training}
    problems = Problems(source)
    for name, values in overrides.items():
        with problems.collect():
            if name == "onmt":
                _apply_onmt(config, values, source)
                continue
            if name not in sections:
                raise KdnmtError(
                    f"{source}: unknown section '{name}' "
                    f"(valid sections: {', '.join(sections)}, onmt)"
                )
            _apply(sections[name], values, name, source, problems)
    problems.raise_if_any()
    return config


def _apply_onmt(config: TrainConfig, values: Any, source: str) -> None:
    """Merge an ``onmt:`` section (OpenNMT-py option name -> value) into ``config.onmt``.

    OpenNMT-py itself ignores a name it does not know; here every name and value is checked
    with its own parser, and the options kdnmt sets itself are refused
    (:func:`kdnmt.onmt_bridge.options.check_passthrough`)."""
    check(isinstance(values, dict), f"{source}: section 'onmt' must be a mapping of "
                                    "OpenNMT-py option names to values")
    scalar = (bool, int, float, str)
    for key, value in values.items():
        check(isinstance(key, str), f"{source}: onmt: option names are text, got {key!r}")
        check(isinstance(value, scalar) or (isinstance(value, list) and value and all(
            isinstance(v, scalar) for v in value)),
            f"{source}: onmt.{key} must be a number, text, true/false or a list of them, "
            f"got {value!r}")
        check(not isinstance(value, float) or math.isfinite(value),
              f"{source}: onmt.{key}: expected a finite number, got {value!r}")
    if values:
        # Only the bridge imports OpenNMT-py; a configuration without `onmt:` never loads it.
        from kdnmt.onmt_bridge.options import check_passthrough

        check_passthrough(values, f"{source}: onmt")
    config.onmt.update(values)


def preset_config(preset: str) -> TrainConfig:
    """The configuration of a named preset."""
    if preset not in PRESETS:
        raise KdnmtError(f"unknown preset '{preset}' (valid presets: {', '.join(PRESETS)})")
    return apply_overrides(TrainConfig(), PRESETS[preset], f"preset {preset}")


def load_yaml(path: Path) -> Any:
    """Read a YAML file or raise a clear error naming it."""
    path = Path(path)
    check(path.exists(), f"config file {path} does not exist")
    check(not path.is_dir(), f"config file {path} is a directory, expected a YAML file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise KdnmtError(f"config file {path} is not valid YAML ({first})") from None
    except OSError as exc:
        raise KdnmtError(f"config file {path} cannot be read ({exc.strerror or exc})") from None


def resolve_config(preset: str, config_file: Path | None = None,
                   overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Preset, then the user's YAML file, then command-line overrides; validated."""
    config = preset_config(preset)
    if config_file is not None:
        apply_overrides(config, load_yaml(config_file), str(config_file))
    if overrides:
        apply_overrides(config, overrides, "command line")
    config.validate()
    return config


def config_to_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def config_from_dict(data: dict[str, Any], source: str) -> TrainConfig:
    """Rebuild a resolved configuration written by :func:`config_to_yaml`."""
    config = apply_overrides(TrainConfig(), data, source)
    config.validate()
    return config
