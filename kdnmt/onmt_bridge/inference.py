"""A frozen OpenNMT-py model in this process: teacher-forced distributions for KD.

Used for soft targets (`kdnmt generate --soft-targets`), the online teacher of
`kdnmt distill --teacher-mode online`, the teacher-forced columns of `kdnmt eval` and the
signals of `kdnmt advise`. CTranslate2 decodes faster, but returns no logits under
beam search and is not faster at forced decoding here, so distributions come from PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kdnmt.errors import KdnmtError, check
from kdnmt.gate import GATE_PREFIX
from kdnmt.onmt_bridge import shims
from kdnmt.onmt_bridge.checkpoint import load_checkpoint, strip_keys

shims.install()

#: Teacher-forced scoring skips a pair with a side longer than this many pieces: the cap
#: CTranslate2 puts on decoding inputs (``max_input_length``), far below the 5,000 positions of
#: OpenNMT-py's positional encoding (beyond which the forward pass raises) and the memory a
#: quadratic attention over a 100,000-character line would take.
MAX_FORCED_LENGTH = 1024


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

    @property
    def device(self) -> torch.device:
        """Where the model's weights are: the batches of :func:`forced_log_probs` go there."""
        return next(self.model.parameters()).device


def load_frozen_model(checkpoint_path: Path, device: str = "cpu") -> FrozenModel:
    """Build the model of an OpenNMT-py checkpoint, frozen, on ``device`` ("cpu" or "cuda",
    checked by the caller with :func:`kdnmt.devices.check_torch_device`)."""
    from onmt.inputters.inputter import dict_to_vocabs
    from onmt.model_builder import build_model
    from onmt.utils.parse import ArgumentParser

    checkpoint = load_checkpoint(Path(checkpoint_path))
    strip_keys(checkpoint, GATE_PREFIX)  # a hybrid student used as a teacher
    model_opt = ArgumentParser.ckpt_model_opts(checkpoint["opt"])
    ArgumentParser.update_model_opts(model_opt)
    ArgumentParser.validate_model_opts(model_opt)
    # A model trained with --device cuda carries its GPU ranks in its options, and
    # build_model would put it on CUDA whatever device it is given: inference here is on CPU.
    model_opt.gpu_ranks, model_opt.gpu, model_opt.world_size = [], -1, 1
    vocabs = dict_to_vocabs(checkpoint["vocab"])
    model = build_model(model_opt, model_opt, vocabs, checkpoint, -1)
    if device != "cpu":
        model.to(device)
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
    device = frozen.device
    src_tensor = pad_batch(src, frozen.pad).to(device)
    src_len = torch.tensor([len(s) for s in src], dtype=torch.long).to(device)
    tgt_full = [[frozen.bos, *t, frozen.eos] for t in tgt]
    tgt_tensor = pad_batch(tgt_full, frozen.pad).to(device)
    from onmt.modules.embeddings import SequenceTooLongError

    try:
        dec_out, _ = frozen.model(src_tensor, tgt_tensor, src_len)
    except SequenceTooLongError:
        longest = max(src_tensor.size(1), tgt_tensor.size(1))
        raise KdnmtError(f"a sequence of {longest} pieces is longer than the model's positional "
                         "encoding: drop such pairs (prepare --max-length)") from None
    logits = frozen.model.generator(dec_out)
    mask = tgt_tensor[:, 1:, 0].ne(frozen.pad)
    return torch.log_softmax(logits.float(), dim=-1), mask


@dataclass
class ForcedStats:
    """Sums over the scored target positions of a corpus (every non-pad position, the final
    </s> included, as OpenNMT-py's loss counts them), teacher-forced, without label smoothing."""

    sentences: int = 0
    skipped: int = 0  # pairs with an empty source (an encoder over nothing has no meaning)
    #                   or a side longer than MAX_FORCED_LENGTH pieces
    tokens: int = 0
    correct: int = 0  # positions where the argmax is the reference token
    nll: float = 0.0  # sum of -log p(reference token)
    entropy: float = 0.0  # sum of the entropy (nats) of the predicted distribution
    unc: list[float] = field(default_factory=list)  # 1 - p(reference), per position, if kept

    @property
    def accuracy(self) -> float:
        return self.correct / self.tokens if self.tokens else float("nan")

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll / self.tokens) if self.tokens else float("nan")

    @property
    def mean_entropy(self) -> float:
        return self.entropy / self.tokens if self.tokens else float("nan")


def length_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped, shortest first, into batches of at most ``batch_tokens`` padded tokens
    (a longer single item is a batch of its own)."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if current and max(longest, lengths[i]) * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, lengths[i])
    if current:
        batches.append(current)
    return batches


@torch.no_grad()
def forced_statistics(frozen: FrozenModel, sources: Sequence[Sequence[str]],
                      targets: Sequence[Sequence[str]], *, batch_tokens: int = 4096,
                      keep_unc: bool = False) -> ForcedStats:
    """Teacher-forced accuracy, NLL, entropy (and per-position UNC) of ``frozen`` on piece
    sequences, in length-sorted batches on torch's current threads."""
    check(len(sources) == len(targets),
          f"{len(sources)} sources but {len(targets)} targets for teacher-forced scoring")
    check(batch_tokens >= 1, f"batch size must be >= 1, got {batch_tokens}")
    stats = ForcedStats()
    pairs = [(frozen.ids(list(s)), frozen.ids(list(t)))
             for s, t in zip(sources, targets, strict=True)
             if len(s) and max(len(s), len(t) + 1) <= MAX_FORCED_LENGTH]
    stats.skipped = len(sources) - len(pairs)
    lengths = [max(len(s), len(t) + 1) for s, t in pairs]
    for batch in length_batches(lengths, batch_tokens):
        logp, mask = forced_log_probs(frozen, [pairs[i][0] for i in batch],
                                      [pairs[i][1] for i in batch])
        gold = pad_batch([[*pairs[i][1], frozen.eos] for i in batch],
                         frozen.pad)[:, :, 0].to(logp.device)
        gold = gold[:, : logp.size(1)]
        gold_lp = logp.gather(-1, gold.unsqueeze(-1)).squeeze(-1)[mask]
        stats.correct += int(logp.argmax(-1).eq(gold)[mask].sum())
        stats.nll -= float(gold_lp.double().sum())
        stats.entropy += float(torch.special.entr(logp.exp()).sum(-1)[mask].double().sum())
        stats.tokens += int(mask.sum())
        if keep_unc:
            stats.unc.extend((1.0 - gold_lp.exp()).tolist())
    stats.sentences = len(pairs)
    return stats


def _piece_lines(source: Path | Sequence[str]) -> list[list[str]]:
    if isinstance(source, str | Path):
        with open(source, encoding="utf-8") as handle:
            return [line.split() for line in handle]
    return [line.split() for line in source]


def teacher_forced_metrics(checkpoint: Path, src: Path | Sequence[str],
                           tgt: Path | Sequence[str], batch_tokens: int = 4096,
                           device: str = "cpu") -> dict[str, Any]:
    """Teacher-forced token accuracy and perplexity of an OpenNMT-py checkpoint on references.

    ``src``/``tgt``: piece files (``test.sp.SRC``, ``test.sp.TGT``) or lists of space-joined
    piece lines. Accuracy counts positions whose argmax is the reference token (the final </s>
    included); perplexity is exp of the mean NLL without label smoothing (the validation
    perplexity OpenNMT-py logs uses the label-smoothed loss, so it reads higher). A hybrid
    student's gate parameters are ignored (:func:`load_frozen_model`)."""
    sources, targets = _piece_lines(src), _piece_lines(tgt)
    check(len(sources) == len(targets),
          f"teacher-forced scoring: {len(sources)} source lines but {len(targets)} references")
    frozen = load_frozen_model(Path(checkpoint), device)
    stats = forced_statistics(frozen, sources, targets, batch_tokens=batch_tokens)
    check(stats.tokens > 0, "teacher-forced scoring: no pair with a non-empty source")
    return {"tf_accuracy": round(stats.accuracy, 5), "tf_perplexity": round(stats.perplexity, 4),
            "tf_tokens": stats.tokens, "tf_sentences": stats.sentences}
