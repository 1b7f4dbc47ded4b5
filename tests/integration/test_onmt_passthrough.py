"""The `onmt:` section of a training YAML through the CLI: OpenNMT-py options kdnmt's own
configuration does not cover reach the options OpenNMT-py's trainer runs with, are recorded in
the model's config.yaml and onmt.yaml and survive --resume; unknown names, kdnmt's own options,
bad values and fp16 on the CPU are refused with one line before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers import TINY_MODEL, TINY_TRAINING, assert_clean_error, run_cli


def _config(tmp_path: Path, onmt: object) -> Path:
    path = tmp_path / "with-onmt.yaml"
    path.write_text(yaml.safe_dump({"model": TINY_MODEL, "training": TINY_TRAINING,
                                    "onmt": onmt}))
    return path


def _train(run: Path, config: Path, steps: int, *extra: str):
    return run_cli("train", "--run", run, "--name", "m", "--preset", "tiny", "--config", config,
                   "--steps", steps, *extra)


@pytest.mark.slow
def test_passthrough_reaches_the_trainer_and_is_recorded(prepared_run: Path, copy_run,
                                                         tmp_path: Path) -> None:
    from kdnmt.onmt_bridge.checkpoint import list_checkpoints, load_checkpoint

    run = copy_run(prepared_run)
    passed = {"early_stopping": 3, "average_decay": 0.0005, "max_grad_norm": 1.0}
    result = _train(run, _config(tmp_path, passed), 20)
    assert result.exit_code == 0, result.output
    model_dir = run / "models" / "m"
    assert yaml.safe_load((model_dir / "config.yaml").read_text())["onmt"] == passed
    onmt_yaml = yaml.safe_load((model_dir / "onmt.yaml").read_text())
    assert {k: onmt_yaml[k] for k in passed} == passed
    # the Namespace OpenNMT-py trained with is saved in each checkpoint
    opt = load_checkpoint(list_checkpoints(model_dir)[-1])["opt"]
    assert (opt.early_stopping, opt.average_decay, opt.max_grad_norm) == (3, 0.0005, 1.0)

    # --resume rebuilds the configuration from config.yaml, pass-through included
    result = run_cli("train", "--run", run, "--name", "m", "--steps", "30", "--resume")
    assert result.exit_code == 0, result.output
    opt = load_checkpoint(list_checkpoints(model_dir)[-1])["opt"]
    assert opt.early_stopping == 3 and opt.average_decay == 0.0005
    assert "step 30" in result.stdout


@pytest.mark.slow
def test_distill_takes_the_same_section(trained_run: Path, copy_run, tmp_path: Path) -> None:
    from kdnmt.onmt_bridge.checkpoint import list_checkpoints, load_checkpoint

    run = copy_run(trained_run)
    result = run_cli("distill", "--run", run, "--name", "s", "--method", "ce", "--preset", "tiny",
                     "--config", _config(tmp_path, {"early_stopping": 2}), "--steps", "10")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(list_checkpoints(run / "models" / "s")[-1])["opt"].early_stopping == 2
    result = run_cli("distill", "--run", run, "--name", "t", "--method", "ce", "--preset", "tiny",
                     "--config", _config(tmp_path, {"heads": 2}), "--steps", "10")
    assert_clean_error(result, "onmt.heads cannot be passed through", "model.heads")


@pytest.mark.parametrize("onmt, needles", [
    ({"early_stoping": 2}, ("onmt.early_stoping is not an option of OpenNMT-py's trainer",
                            "did you mean early_stopping")),
    ({"batch_size": 64}, ("onmt.batch_size cannot be passed through", "training.batch_size")),
    ({"enc_layers": 9}, ("onmt.enc_layers cannot be passed through", "model.enc_layers")),
    ({"save_model": "/tmp/elsewhere"}, ("onmt.save_model cannot be passed through",)),
    ({"train_from": "x.pt"}, ("onmt.train_from", "--resume or --init-from")),
    ({"early_stopping": "soon"}, ("onmt.early_stopping", "invalid int value: 'soon'")),
    ({"model_dtype": "fp8"}, ("onmt.model_dtype", "invalid choice: 'fp8'")),
    ({"model_dtype": "fp16"}, ("onmt.model_dtype fp16 trains on a GPU only", "--device cuda")),
    ({"early_stopping": {"patience": 2}}, ("onmt.early_stopping must be a number",)),
    (["early_stopping"], ("section 'onmt' must be a mapping",)),
])
def test_passthrough_refusals(prepared_run: Path, copy_run, tmp_path: Path, onmt: object,
                              needles: tuple[str, ...]) -> None:
    run = copy_run(prepared_run)
    config = _config(tmp_path, onmt)
    result = _train(run, config, 10)
    assert_clean_error(result, *needles)
    assert not (run / "models" / "m").exists(), "a refused configuration wrote the model"


def test_owned_and_tunable_names_are_opennmt_options(tmp_path: Path) -> None:
    """A misspelt name in the bridge's lists would refuse or allow nothing: each must be an
    option of OpenNMT-py's trainer, and each tunable default one the bridge really sets."""
    from kdnmt.config import preset_config
    from kdnmt.onmt_bridge.options import (
        TUNABLE_DEFAULTS,
        known_onmt_options,
        onmt_train_options,
        owned_options,
    )

    known = known_onmt_options()
    assert set(owned_options()) <= known, set(owned_options()) - known
    built = onmt_train_options(preset_config("tiny"), train_src=tmp_path, train_tgt=tmp_path,
                               valid_src=tmp_path, valid_tgt=tmp_path, vocab=tmp_path,
                               vocab_entries=8, model_dir=tmp_path, train_pairs=8)
    assert TUNABLE_DEFAULTS <= set(built) and not TUNABLE_DEFAULTS & set(owned_options())


@pytest.mark.slow
def test_a_refused_force_keeps_the_old_model(prepared_run: Path, copy_run,
                                            tmp_path: Path) -> None:
    """--force deletes the old model only once the new configuration is known to run: a
    refusal (a bad onmt option, fp16 on the CPU) leaves the model that was there."""
    run = copy_run(prepared_run)
    result = _train(run, _config(tmp_path, {}), 5)
    assert result.exit_code == 0, result.output
    before = sorted(p.name for p in (run / "models" / "m").iterdir())
    for onmt, needle in (({"early_stoping": 2}, "did you mean early_stopping"),
                         ({"model_dtype": "fp16"}, "onmt.model_dtype fp16 trains on a GPU only")):
        assert_clean_error(_train(run, _config(tmp_path, onmt), 5, "--force"), needle)
        assert sorted(p.name for p in (run / "models" / "m").iterdir()) == before
