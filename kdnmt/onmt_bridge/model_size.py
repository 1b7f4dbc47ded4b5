"""Models of a given shape built by OpenNMT-py itself, without training them.

Parameter counts (not a formula): the test suite rebuilds each preset and compares with
docs/train.md. Untrained checkpoints of a student shape in its teacher's vocabulary: decoding
speed at a fixed length depends only on the shape (bench/shape_speed.py).
"""

from __future__ import annotations

import argparse
from typing import Any

from kdnmt.config import ModelConfig, TrainConfig
from kdnmt.onmt_bridge import shims

shims.install()


def count_parameters_for(config: TrainConfig, vocab_entries: int) -> int:
    """Trainable parameters of the transformer ``config`` describes, with a shared vocabulary
    of ``vocab_entries`` entries (OpenNMT-py specials included)."""
    import pyonmttok
    from onmt.bin.train import _get_parser
    from onmt.model_builder import build_model
    from onmt.utils.parse import ArgumentParser

    from kdnmt.onmt_bridge.options import SELF_ATTN_TYPE

    m = config.model
    parser = _get_parser()
    opt = parser.parse_known_args(["-data", "{}", "-src_vocab", "x"])[0]
    for key, value in {
        "encoder_type": "transformer", "decoder_type": "transformer",
        "enc_layers": m.enc_layers, "dec_layers": m.dec_layers, "hidden_size": m.hidden_size,
        "word_vec_size": m.hidden_size, "transformer_ff": m.ff_size, "heads": m.heads,
        "position_encoding": True, "self_attn_type": SELF_ATTN_TYPE, "share_embeddings": True,
        "share_decoder_embeddings": True, "share_vocab": True,
        "dropout": [m.dropout], "attention_dropout": [m.attention_dropout],
    }.items():
        setattr(opt, key, value)
    ArgumentParser.update_model_opts(opt)
    specials = ["<unk>", "<blank>", "<s>", "</s>"]
    vocab = pyonmttok.build_vocab_from_tokens(
        specials + [f"p{i}" for i in range(vocab_entries - len(specials))])
    vocabs = {"src": vocab, "tgt": vocab, "data_task": "seq2seq", "decoder_start_token": "<s>"}
    model = build_model(opt, opt, vocabs, None, -1)
    seen: set[int] = set()
    total = 0
    for param in model.parameters():
        if id(param) not in seen:
            seen.add(id(param))
            total += param.numel()
    return total


def untrained_like(checkpoint: dict[str, Any], shape: ModelConfig) -> dict[str, Any]:
    """A checkpoint with ``checkpoint``'s vocabulary and options but the transformer ``shape``
    and freshly initialised weights.

    What for: decoding speed at a fixed output length depends on the shape, not on the weights,
    so a student shape's speed against its teacher can be measured before hours of training
    (bench/shape_speed.py). Only ``model``, ``generator``, ``vocab`` and ``opt`` are filled:
    enough for CTranslate2's converter, not for resuming training.
    """
    import copy

    import torch
    from onmt.inputters.inputter import dict_to_vocabs
    from onmt.model_builder import build_base_model

    shape.validate()
    opt = copy.deepcopy(checkpoint["opt"])
    for key, value in {
        "enc_layers": shape.enc_layers, "dec_layers": shape.dec_layers,
        "hidden_size": shape.hidden_size, "enc_hid_size": shape.hidden_size,
        "dec_hid_size": shape.hidden_size, "word_vec_size": shape.hidden_size,
        "src_word_vec_size": shape.hidden_size, "tgt_word_vec_size": shape.hidden_size,
        "transformer_ff": shape.ff_size, "heads": shape.heads, "layers": -1,
    }.items():
        setattr(opt, key, value)
    model = build_base_model(opt, dict_to_vocabs(checkpoint["vocab"]))
    # OpenNMT-py builds its modules without initialising them (build_model does that after):
    # the Glorot initialisation a new training run uses, norms at one, biases at zero.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1:
                torch.nn.init.xavier_uniform_(param)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.fill_(1.0)
    state = {k: v for k, v in model.state_dict().items() if "generator" not in k}
    return {"model": state, "generator": model.generator.state_dict(),
            "vocab": checkpoint["vocab"], "opt": opt, "optim": None}


def main() -> None:  # pragma: no cover - a helper for writing docs/train.md
    from kdnmt.config import PRESETS, preset_config

    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab-entries", type=int, default=8003)
    args = parser.parse_args()
    for name in PRESETS:
        print(name, f"{count_parameters_for(preset_config(name), args.vocab_entries):,}")


if __name__ == "__main__":  # pragma: no cover
    main()
