"""A frozen OpenNMT-py model in this process: teacher-forced distributions for KD.

Used for soft targets (`kdnmt generate --soft-targets`) and, later, for the online teacher of
`kdnmt distill --teacher-mode online`. CTranslate2 decodes faster, but returns no logits under
beam search and is not faster at forced decoding here, so distributions come from PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdnmt.gate import GATE_PREFIX
from kdnmt.onmt_bridge import shims
from kdnmt.onmt_bridge.checkpoint import load_checkpoint, strip_keys

shims.install()


@dataclass
class FrozenModel:
    """An OpenNMT-py model in eval mode with its vocabulary; never optimised."""

    model: Any
    vocab: Any  # pyonmttok.Vocab, shared by source and target
    bos: int
    eos: int
    pad: int

    def ids(self, pieces: list[str]) -> list[int]:
        return [self.vocab[p] for p in pieces]

    @property
    def tokens(self) -> list[str]:
        return list(self.vocab.ids_to_tokens)


def load_frozen_model(checkpoint_path: Path) -> FrozenModel:
    """Build the model of an OpenNMT-py checkpoint on CPU, frozen."""
    from onmt.inputters.inputter import dict_to_vocabs
    from onmt.model_builder import build_model
    from onmt.utils.parse import ArgumentParser

    checkpoint = load_checkpoint(Path(checkpoint_path))
    strip_keys(checkpoint, GATE_PREFIX)  # a hybrid student used as a teacher
    model_opt = ArgumentParser.ckpt_model_opts(checkpoint["opt"])
    ArgumentParser.update_model_opts(model_opt)
    ArgumentParser.validate_model_opts(model_opt)
    vocabs = dict_to_vocabs(checkpoint["vocab"])
    model = build_model(model_opt, model_opt, vocabs, checkpoint, -1)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    vocab = vocabs["tgt"]
    return FrozenModel(model=model, vocab=vocab, bos=vocab["<s>"], eos=vocab["</s>"],
                       pad=vocab["<blank>"])


def pad_batch(sequences: list[list[int]], pad: int) -> torch.Tensor:
    """[B, L, 1] long tensor, OpenNMT-py's batch layout."""
    length = max(len(s) for s in sequences)
    out = torch.full((len(sequences), length, 1), pad, dtype=torch.long)
    for i, seq in enumerate(sequences):
        out[i, : len(seq), 0] = torch.tensor(seq, dtype=torch.long)
    return out


@torch.no_grad()
def forced_log_probs(frozen: FrozenModel, src: list[list[int]],
                     tgt: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities [B, T+1, V] of each target (plus </s>) given its source, and the mask
    [B, T+1] of real positions. Position j predicts tgt[j] (and the last, </s>), exactly the
    positions OpenNMT-py's loss scores."""
    src_tensor = pad_batch(src, frozen.pad)
    src_len = torch.tensor([len(s) for s in src], dtype=torch.long)
    tgt_full = [[frozen.bos, *t, frozen.eos] for t in tgt]
    tgt_tensor = pad_batch(tgt_full, frozen.pad)
    dec_out, _ = frozen.model(src_tensor, tgt_tensor, src_len)
    logits = frozen.model.generator(dec_out)
    mask = tgt_tensor[:, 1:, 0].ne(frozen.pad)
    return torch.log_softmax(logits.float(), dim=-1), mask
