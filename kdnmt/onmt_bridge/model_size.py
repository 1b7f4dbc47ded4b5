"""Parameter counts of a configuration, by building the OpenNMT-py model (not a formula).

Used to document the presets truthfully: the test suite rebuilds each preset and compares
with docs/train.md.
"""

from __future__ import annotations

import argparse

from kdnmt.config import TrainConfig
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


def main() -> None:  # pragma: no cover - a helper for writing docs/train.md
    from kdnmt.config import PRESETS, preset_config

    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab-entries", type=int, default=8003)
    args = parser.parse_args()
    for name in PRESETS:
        print(name, f"{count_parameters_for(preset_config(name), args.vocab_entries):,}")


if __name__ == "__main__":  # pragma: no cover
    main()
