"""Each OpenNMT-py compatibility shim, tested so that it fails loudly if it stops working.

If one of these fails after an upgrade of torch, OpenNMT-py or CTranslate2, read the comment of
the shim in kdnmt/onmt_bridge/shims.py before changing anything.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import sys
from pathlib import Path

import pytest
import torch

from kdnmt.errors import KdnmtError
from kdnmt.onmt_bridge import shims


class _Custom:
    """A class torch's safe loader does not know."""


def _import_transforms_in_child(queue) -> None:  # runs in a spawned process
    try:
        import onmt.transforms  # noqa: F401
        import onmt.transforms.clean  # noqa: F401
        import onmt.transforms.terminology  # noqa: F401

        queue.put("ok")
    except Exception as exc:  # pragma: no cover - reported to the parent
        queue.put(repr(exc))


def test_placeholders_let_onmt_transforms_import() -> None:
    shims.install()
    import onmt.transforms  # noqa: F401

    spacy = importlib.import_module("spacy")
    fasttext = importlib.import_module("fasttext")
    if getattr(spacy, "KDNMT_PLACEHOLDER", False):
        with pytest.raises(ImportError, match="spaCy is not installed"):
            spacy.load("de_core_news_sm")
    if getattr(fasttext, "KDNMT_PLACEHOLDER", False):
        with pytest.raises(ImportError, match="fastText is not installed"):
            fasttext.load_model("lid.176.ftz")
    # at the end of sys.path: a real installation would win
    assert sys.path[-1] == str(shims.PLACEHOLDER_DIR), sys.path


@pytest.mark.slow
def test_placeholders_work_in_spawned_workers() -> None:
    """OpenNMT-py's DataLoader uses multiprocessing_context='spawn'."""
    shims.install()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_import_transforms_in_child, args=(queue,))
    child.start()
    child.join(120)
    assert queue.get(timeout=5) == "ok"


def test_namespace_checkpoint_loads_safely_and_code_does_not(tmp_path: Path) -> None:
    from kdnmt.onmt_bridge.checkpoint import load_checkpoint

    shims.install()
    ok = tmp_path / "ok.pt"
    torch.save({"model": {}, "vocab": {}, "opt": argparse.Namespace(a=1)}, ok)
    assert load_checkpoint(ok)["opt"].a == 1

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "vocab": {}, "opt": Evil()}, evil)
    with pytest.raises(KdnmtError, match="cannot be loaded safely"):
        load_checkpoint(evil)


def test_torch_still_defaults_to_weights_only(tmp_path: Path) -> None:
    """If torch stops defaulting to safe loading, OpenNMT-py's own loads become unsafe."""
    path = tmp_path / "x.pt"
    torch.save({"x": _Custom()}, path)
    with pytest.raises(Exception):  # noqa: B017 - any refusal is fine, loading is not
        torch.load(path)


def test_onmt_default_attention_is_flash_and_we_override_it(tmp_path: Path) -> None:
    """OpenNMT-py 3.5.1 defaults to scaled-dot-flash, which CTranslate2 rejects."""
    from onmt.bin.train import _get_parser

    from kdnmt.onmt_bridge.options import SELF_ATTN_TYPE

    defaults = _get_parser().parse_known_args(["-data", "{}", "-src_vocab", "x"])[0]
    assert defaults.self_attn_type == "scaled-dot-flash"
    assert SELF_ATTN_TYPE == "scaled-dot"


def test_bucket_size_is_sized_from_the_corpus() -> None:
    from kdnmt.onmt_bridge.options import bucket_size_for

    assert bucket_size_for(1000) == 1000
    assert bucket_size_for(10_000_000) == 8192
    assert bucket_size_for(3) == 64


def test_model_saver_writes_atomically(tmp_path: Path) -> None:
    import onmt.models.model_saver as model_saver

    shims.patch_model_saver()
    assert isinstance(model_saver.torch, shims._AtomicTorch)
    assert model_saver.torch.nn is torch.nn  # everything else passes through
    target = tmp_path / "ckpt.pt"
    model_saver.torch.save({"a": torch.zeros(2)}, str(target))
    assert torch.load(target)["a"].shape == (2,)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        model_saver.torch.save({"a": Unpicklable()}, str(tmp_path / "bad.pt"))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_iterator_logging_no_longer_resets_handlers(tmp_path: Path) -> None:
    import logging

    import onmt.inputters.dynamic_iterator as dynamic_iterator

    log = tmp_path / "train.log"
    shims.log_to_file_only(str(log))
    dynamic_iterator.init_logger().info("from the iterator")
    for handler in logging.getLogger("onmt").handlers:
        handler.flush()
    assert "from the iterator" in log.read_text()


def test_loss_hook_point_exists() -> None:
    """distill plugs its KD loss where the Trainer's loss is built."""
    import inspect

    import onmt.trainer
    from onmt.utils.loss import LossCompute

    assert hasattr(LossCompute, "from_opts")
    assert "LossCompute.from_opts" in inspect.getsource(onmt.trainer.build_trainer)


@pytest.mark.slow
def test_converter_accepts_flash_checkpoints_via_rewrite(trained_run: Path, tmp_path) -> None:
    """CTranslate2 rejects scaled-dot-flash; convert_checkpoint rewrites the option."""
    from ctranslate2.converters import OpenNMTPyConverter

    from kdnmt.onmt_bridge.checkpoint import load_checkpoint
    from kdnmt.onmt_bridge.convert import convert_checkpoint

    checkpoint = load_checkpoint(trained_run / "models" / "teacher" / "model_step_40.pt")
    checkpoint["opt"].self_attn_type = "scaled-dot-flash"
    flash = tmp_path / "flash.pt"
    torch.save(checkpoint, flash)
    with pytest.raises(ValueError, match="scaled-dot"):
        OpenNMTPyConverter(str(flash)).convert(str(tmp_path / "direct"), force=True)
    convert_checkpoint(flash, tmp_path / "ct2", "int8")
    assert (tmp_path / "ct2" / "model.bin").is_file()


def test_data_parallel_striding_matches_line_numbers(tmp_path: Path) -> None:
    """Rank `offset` of `stride` must read exactly the lines its cid_line_number claims."""
    from onmt.inputters.text_corpus import ParallelCorpus

    shims.patch_corpus_striding()
    src, tgt = tmp_path / "s", tmp_path / "t"
    src.write_text("".join(f"s{i}\n" for i in range(7)))
    tgt.write_text("".join(f"t{i}\n" for i in range(7)))
    corpus = ParallelCorpus("c", str(src), str(tgt))
    for offset in (0, 1):
        lines = [ex["src"].strip() for ex in corpus.load(offset=offset, stride=2)]
        assert lines == [f"s{i}" for i in range(offset, 7, 2)]


def test_empty_bucket_is_not_a_crash() -> None:
    import onmt.inputters.dynamic_iterator as dynamic_iterator

    shims.patch_empty_buckets()
    assert dynamic_iterator.process("train", []) == []


def test_autocast_wraps_each_update_not_the_loop() -> None:
    """Shim 9: OpenNMT-py's Trainer still runs an update in _gradient_accumulation and a
    validation in validate; wrapped, each runs under CPU autocast, and leaves it when done
    (so autocast's cast cache, which holds bfloat16 copies of the weights, lives one update)."""
    import onmt.trainer

    from kdnmt.onmt_bridge.shims import autocast_each_update

    assert callable(onmt.trainer.Trainer._gradient_accumulation)
    assert callable(onmt.trainer.Trainer.validate)

    class Trainer:
        def _gradient_accumulation(self, *args: object) -> tuple[bool, torch.dtype]:
            return torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")

        def validate(self, *args: object) -> tuple[bool, torch.dtype]:
            return self._gradient_accumulation()

    trainer = Trainer()
    autocast_each_update(trainer, torch.bfloat16)
    assert trainer._gradient_accumulation(1, 2) == (True, torch.bfloat16)
    assert trainer.validate() == (True, torch.bfloat16)
    assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(RuntimeError, match="shim 9"):
        autocast_each_update(object(), torch.bfloat16)


def test_bf16_is_refused_on_a_gpu() -> None:
    from kdnmt.onmt_bridge.options import check_precision

    check_precision("bf16", "cpu")
    check_precision("fp32", "cuda")
    with pytest.raises(KdnmtError, match="onmt: {model_dtype: fp16}"):
        check_precision("bf16", "cuda")
