"""kdnmt's own configuration: presets, strict keys, types, ranges, YAML round trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdnmt.config import (
    PRESETS,
    config_from_dict,
    config_to_yaml,
    preset_config,
    resolve_config,
)
from kdnmt.errors import KdnmtError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "train.md"


def test_every_preset_is_valid_and_ordered_by_size() -> None:
    widths = []
    for name in PRESETS:
        config = preset_config(name)
        config.validate()
        widths.append(config.model.hidden_size * (config.model.enc_layers + config.model.dec_layers))
    assert widths == sorted(widths)


def test_overrides_apply_in_order(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  hidden_size: 64\ntraining:\n  steps: 7\n  learning_rate: 1\n")
    config = resolve_config("tiny", cfg, {"training": {"steps": 9}})
    assert config.model.hidden_size == 64
    assert config.training.steps == 9  # command line wins over the file
    assert config.training.learning_rate == 1.0 and isinstance(config.training.learning_rate, float)
    assert config.model.enc_layers == PRESETS["tiny"]["model"]["enc_layers"]


def test_yaml_round_trip() -> None:
    import yaml

    config = preset_config("small")
    again = config_from_dict(yaml.safe_load(config_to_yaml(config)), "x")
    assert again == config


@pytest.mark.parametrize("overrides, needle", [
    ({"model": {"layers": 2}}, "unknown key 'model.layers'"),
    ({"model": {"heads": True}}, "expected an integer"),
    ({"training": {"steps": 0}}, "training.steps must be >= 1"),
    ({"model": {"dropout": 1.0}}, "model.dropout must be in [0, 1)"),
    ({"training": {"max_minutes": -1}}, "max_minutes must be >= 0"),
])
def test_rejections(overrides: dict, needle: str) -> None:
    with pytest.raises(KdnmtError) as err:
        resolve_config("tiny", None, overrides)
    assert needle in str(err.value)


@pytest.mark.slow
def test_documented_parameter_counts_match_built_models() -> None:
    """docs/train.md states each preset's size; build each model and compare exactly."""
    from kdnmt.onmt_bridge.model_size import count_parameters_for

    text = DOCS.read_text()
    for name in PRESETS:
        match = re.search(rf"^\| `{name}` \|.*\| ([\d,]+) \|$", text, flags=re.M)
        assert match, f"docs/train.md has no row for preset {name}"
        documented = int(match.group(1).replace(",", ""))
        assert count_parameters_for(preset_config(name), vocab_entries=8003) == documented


@pytest.mark.parametrize("device, world_size, ranks", [
    ("cpu", 1, []), ("cpu", 2, []), ("cuda", 1, [0]), ("cuda", 2, [0, 1])])
def test_onmt_options_of_each_device(tmp_path: Path, device: str, world_size: int,
                                     ranks: list[int]) -> None:
    """On cuda, OpenNMT-py's own GPU ranks (one GPU per rank); on the CPU none, since
    OpenNMT-py reads any gpu_ranks as "use CUDA" (kdnmt sets the CPU ranks itself)."""
    from kdnmt.onmt_bridge.options import onmt_train_options

    paths = {k: tmp_path / k for k in ("train_src", "train_tgt", "valid_src", "valid_tgt",
                                       "vocab")}
    opts = onmt_train_options(preset_config("tiny"), **paths, vocab_entries=100,
                              model_dir=tmp_path, train_pairs=10, device=device,
                              world_size=world_size)
    assert opts["gpu_ranks"] == ranks
    assert opts["world_size"] == (world_size if device == "cuda" else 1)
