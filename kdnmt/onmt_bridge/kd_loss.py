"""The KD training loss inside OpenNMT-py's trainer.

``Trainer`` builds its loss with ``LossCompute.from_opts``; :func:`kd_loss_factory` returns a
subclass whose ``forward`` computes the student's logits as usual and then one of the losses
of :mod:`kdnmt.losses` (the maths lives there, in pure functions) against teacher
distributions from either

- the soft-target store (``cache``): the top-k rows of each example, looked up by its corpus
  line (OpenNMT-py carries ``cid_line_number`` in every batch), memory-mapped; or
- the frozen teacher in the same process (``online``): a forward pass per batch, no grad.

Validation keeps OpenNMT-py's plain cross-entropy, so validation perplexities of students
trained with different methods compare directly.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from kdnmt.errors import KdnmtError, check
from kdnmt.onmt_bridge import shims

shims.install()


@dataclass
class TeacherSource:
    """Where teacher distributions come from: a store (cache) or a frozen model (online)."""

    mode: str
    store: Any = None  # kdnmt.teacher.store.SoftTargetStore
    frozen: Any = None  # kdnmt.onmt_bridge.inference.FrozenModel


@dataclass
class RunningStats:
    """Method-specific figures averaged between two progress reports."""

    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0
    extremes: dict[str, float] = field(default_factory=dict)

    def add(self, values: dict[str, float], reduce: dict[str, str] | None = None) -> None:
        """Add one batch's figures: averaged over the interval, except the keys of ``reduce``,
        kept as their ``"min"`` or ``"max"`` over the interval's batches."""
        reduce = reduce or {}
        for key, value in values.items():
            if key in reduce:
                pick = min if reduce[key] == "min" else max
                self.extremes[key] = pick(self.extremes.get(key, float(value)), float(value))
            else:
                self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += 1

    def drain(self) -> dict[str, float]:
        out = {k: v / self.count for k, v in self.sums.items()} if self.count else {}
        out.update(self.extremes)
        self.sums, self.count, self.extremes = {}, 0, {}
        return out


LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]


def method_loss(method: str, hparams: dict[str, Any]) -> LossFn:
    """The token-level loss of ``method`` as ``(s, t, y) -> (sum over positions, stats)``,
    from its registry entry: the figures named by ``spec.stats`` come from its stats variant."""
    from kdnmt.losses.registry import get_spec

    spec = get_spec(method)
    if spec.loss is None:
        raise KdnmtError(f"method '{method}' has no token-level loss")
    if spec.stats_loss is None:
        function = spec.function
        return lambda s, t, y: (function(s, t, y, **hparams), {})  # type: ignore[misc]
    with_stats = spec.stats_function

    def loss_with_stats(s, t, y):
        loss, figures = with_stats(s, t, y, **hparams)
        return loss, {name: figures[name] for name in spec.stats}
    return loss_with_stats


def _store_rows(store: Any, batch: dict[str, Any], mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The store's top-k ids and log-probs [B, T, K] for each example's corpus line (ids -1
    at padding), checked against the batch's target lengths."""
    batch_size, length = mask.shape
    ids = torch.full((batch_size, length, store.k), -1, dtype=torch.long)
    logprobs = torch.zeros((batch_size, length, store.k), dtype=torch.float32)
    for b, (cid, line) in enumerate(zip(batch["cid"], batch["cid_line_number"], strict=True)):
        check(cid == "corpus_1", f"soft targets exist only for the training corpus, not '{cid}'")
        row_ids, row_lp = store[int(line)]
        n = int(mask[b].sum())
        if row_ids.shape[0] != n:
            raise KdnmtError(
                f"the soft-target store does not match the training data at line {line} "
                f"({row_ids.shape[0]} positions stored, {n} in the batch): regenerate it"
            )
        ids[b, :n] = torch.from_numpy(row_ids.astype("int64"))
        logprobs[b, :n] = torch.from_numpy(row_lp.astype("float32"))
    return ids.to(mask.device), logprobs.to(mask.device)


def _dense(ids: torch.Tensor, logprobs: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Dense teacher log-probs [..., V] of real positions (rows with any kept id)."""
    from kdnmt.losses import topk_to_logprobs

    flat_ids, flat_lp = ids.reshape(-1, ids.shape[-1]), logprobs.reshape(-1, ids.shape[-1])
    dense = torch.full((flat_ids.shape[0], vocab_size), float("-inf"), device=ids.device)
    keep = (flat_ids >= 0).any(dim=1)
    if keep.any():
        dense[keep] = topk_to_logprobs(flat_ids[keep], flat_lp[keep], vocab_size)
    return dense.view(*ids.shape[:-1], vocab_size)


@torch.no_grad()
def _online_logits(frozen: Any, batch: dict[str, Any], mask: torch.Tensor) -> torch.Tensor:
    """The frozen teacher's logits [N, V] at the batch's real target positions (``mask``).

    Why logits and only real positions: every token-level loss renormalises its teacher
    (``log_softmax(t / T)``), so unnormalised scores give the same loss as log-probs (tested in
    tests/unit/test_losses.py) and spare a log-softmax over [N, V]; and the generator's
    [d, V] projection is not spent on padding, nor is a masked copy of a dense [B, T, V] made.
    """
    dec_out, _ = frozen.model(batch["src"], batch["tgt"], batch["srclen"])
    return frozen.model.generator(dec_out[mask]).float()


def _build_loss(cls: type, opt: argparse.Namespace, model: Any, vocabs: dict[str, Any]) -> Any:
    """An instance of a LossCompute subclass with OpenNMT-py's criterion and generator."""
    from onmt.utils.loss import LossCompute

    base = LossCompute.from_opts(opt, model, vocabs["tgt"])
    return cls(base.criterion, base.generator, tgt_shift_index=1, vocab=vocabs["tgt"])


def _teacher_on_device_of(teacher: TeacherSource, model: Any) -> None:
    """An online teacher computes where the student does (CPU, or the rank's GPU)."""
    if teacher.frozen is not None:
        teacher.frozen.model.to(next(model.parameters()).device)


def kd_loss_factory(method: str, hparams: dict[str, float], teacher: TeacherSource,
                    running: RunningStats) -> Callable[[argparse.Namespace, Any, dict], Any]:
    """A ``loss_factory`` for :func:`kdnmt.onmt_bridge.training.run_training`."""
    from onmt.utils.loss import LossCompute

    from kdnmt.losses.registry import get_spec

    loss_fn = method_loss(method, hparams)
    topk_loss = get_spec(method).topk_function

    class KDLossCompute(LossCompute):
        """OpenNMT-py's LossCompute with a KD term in place of the label-smoothed CE."""

        def forward(self, batch, output, attns, trunc_start=0, trunc_size=None):
            check(trunc_start == 0 and (trunc_size is None or
                                        trunc_size >= batch["tgt"].size(1)),
                  "KD losses do not support truncated BPTT")
            target = batch["tgt"][:, 1:, 0]
            scores = self.generator(output)  # [B, T, V] logits
            vocab_size = scores.size(-1)
            mask = target.ne(self.padding_idx)
            flat_mask = mask.view(-1)
            s = scores.view(-1, vocab_size)[flat_mask].float()
            y = target.reshape(-1)[flat_mask]
            if teacher.mode == "cache" and topk_loss is not None:
                # Sparse top-k form: no dense [N, V] teacher (e.g. word_kd_topk).
                ids, lp = _store_rows(teacher.store, batch, mask)
                k = ids.shape[-1]
                loss = topk_loss(s, ids.view(-1, k)[flat_mask], lp.view(-1, k)[flat_mask], y,
                                 **hparams)
                extra: dict[str, float] = {}
            else:
                if teacher.mode == "cache":
                    t = _dense(*_store_rows(teacher.store, batch, mask), vocab_size)
                    t = t.view(-1, vocab_size)[flat_mask]
                else:
                    t = _online_logits(teacher.frozen, batch, mask)
                loss, extra = loss_fn(s, t, y)
            running.add(extra)
            n_sents = len(batch["srclen"])
            stats = self._stats(n_sents, loss.item(), scores.view(-1, vocab_size),
                                target.reshape(-1))
            return loss, stats

    def factory(opt: argparse.Namespace, model: Any, vocabs: dict[str, Any]) -> Any:
        _teacher_on_device_of(teacher, model)
        return _build_loss(KDLossCompute, opt, model, vocabs)

    return factory


class PseudoTargets:
    """The teacher's pseudo-target of each training line, as vocabulary ids (hybrid needs the
    reference *and* the pseudo-target of every sentence in a batch)."""

    def __init__(self, lines: list[str], vocab: Any):
        self.lines = lines
        self.vocab = vocab

    def batch(self, line_numbers: list[int], bos: int, eos: int, pad: int) -> torch.Tensor:
        rows = [[bos, *(self.vocab[p] for p in self.lines[int(n)].split()), eos]
                for n in line_numbers]
        length = max(len(r) for r in rows)
        out = torch.full((len(rows), length, 1), pad, dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row), 0] = torch.tensor(row)
        return out


def _gate_stats(gate: torch.Tensor, margin: torch.Tensor) -> dict[str, float]:
    """The gate's figures of one batch: mean, spread (std, 10% and 90% quantiles), its extremes,
    and the mean of ``c - a`` (sentence rate minus token rate, nats per token)."""
    g = gate.detach().float()
    quantiles = torch.quantile(g, torch.tensor([0.1, 0.9], device=g.device))
    return {"gate_mean": float(g.mean()),
            "gate_std": float(g.std()) if g.numel() > 1 else 0.0,
            "gate_p10": float(quantiles[0]), "gate_p90": float(quantiles[1]),
            "gate_min": float(g.min()), "gate_max": float(g.max()),
            "c_minus_a": float(margin.detach().float().mean())}


#: How the gate's extremes are reduced over a report interval: the *largest* per-batch minimum
#: and the *smallest* per-batch maximum, so ``gate_min < 0.95`` in a logged row means every batch
#: of that interval had a sentence below 0.95 (and ``gate_max > 0.05`` likewise).
GATE_REDUCERS: dict[str, str] = {"gate_min": "max", "gate_max": "min"}


def hybrid_loss_factory(hparams: dict[str, float], teacher: TeacherSource, gate_spec: Any,
                        pseudo_lines: list[str], running: RunningStats,
                        total_steps: int, objective: Any = None,
                        ) -> Callable[[argparse.Namespace, Any, dict], Any]:
    """Wei et al. 2024 with the contract's two objectives.

    Student: per sentence ``g·token_loss + (1-g)·sentence_loss`` with ``g`` detached.
    ``token_loss_b`` is word-level KD along the reference (the batch's target), summed over the
    sentence; ``sentence_loss_b`` is label-smoothed CE on the teacher's pseudo-target, from a
    second decoder pass over the same source. Gate (``kd_gate``, learned only): its own
    objective over the per-token rates of the same two terms without label smoothing,
    ``a_b = token_loss_b / |y_b|`` and ``c_b = CE_b / |y^_b|``, detached. Both objectives are
    summed into one backward pass: their gradients touch disjoint parameters (the gate reads
    detached encoder states), so this equals two separate updates. Fixed and scheduled gates
    are constants and have no objective.
    """
    import torch.nn.functional as F
    from onmt.utils.loss import LossCompute

    from kdnmt.gate import GateObjective
    from kdnmt.losses import gate_objective, hybrid, word_kd, word_kd_topk_rows

    objective = objective or GateObjective()

    class HybridLossCompute(LossCompute):
        def forward(self, batch, output, attns, trunc_start=0, trunc_size=None):
            model = self.student
            target = batch["tgt"][:, 1:, 0]
            scores = self.generator(output)
            batch_size, length, vocab_size = scores.shape
            mask = target.ne(self.padding_idx)
            real_scores, real_target = scores[mask].float(), target[mask]
            if teacher.mode == "cache":
                # One vectorised pass over every real position, summed per sentence.
                ids, lp = _store_rows(teacher.store, batch, mask)
                ids, lp = ids[mask], lp[mask]
                sentence_of = torch.arange(batch_size, device=mask.device)[:, None]
                sentence_of = sentence_of.expand_as(mask)[mask]

                def token_losses(options: dict[str, Any]) -> torch.Tensor:
                    rows = word_kd_topk_rows(real_scores, ids, lp, real_target, **options)
                    return rows.new_zeros(batch_size).index_add(0, sentence_of, rows)
            else:
                counts = mask.sum(dim=1).tolist()
                teacher_logits = _online_logits(teacher.frozen, batch, mask)

                def token_losses(options: dict[str, Any]) -> torch.Tensor:
                    return torch.stack([
                        word_kd(s_b, t_b, y_b, **options) for s_b, t_b, y_b in zip(
                            real_scores.split(counts), teacher_logits.split(counts),
                            real_target.split(counts), strict=True)])
            token_loss = token_losses(hparams)
            # Second pass: the same sources, the teacher's pseudo-targets.
            pseudo = self.pseudo.batch(batch["cid_line_number"], self.bos, self.eos,
                                       self.padding_idx).to(scores.device)
            enc_out, enc_final_hs, src_len = model.encoder(batch["src"], batch["srclen"])
            model.decoder.init_state(batch["src"], enc_out, enc_final_hs)
            dec_out, _ = model.decoder(pseudo[:, :-1, :], enc_out, src_len=src_len)
            pseudo_scores = self.generator(dec_out).float().transpose(1, 2)
            pseudo_target = pseudo[:, 1:, 0]
            ce = F.cross_entropy(pseudo_scores, pseudo_target, ignore_index=self.padding_idx,
                                 reduction="none", label_smoothing=self.label_smoothing)
            sentence_loss = ce.sum(dim=1)
            # The gate's rates: per token, without label smoothing, detached.
            with torch.no_grad():
                ref_tokens = mask.sum(dim=1).clamp_min(1)
                pseudo_tokens = pseudo_target.ne(self.padding_idx).sum(dim=1).clamp_min(1)
                token_rate = (token_loss if hparams.get("label_smoothing", 0.0) == 0.0
                              else token_losses({**hparams, "label_smoothing": 0.0}))
                token_rate = token_rate.detach() / ref_tokens
                sentence_rate = (ce.detach() if self.label_smoothing == 0.0 else
                                 F.cross_entropy(pseudo_scores, pseudo_target,
                                                 ignore_index=self.padding_idx,
                                                 reduction="none")).sum(dim=1) / pseudo_tokens
            if gate_spec.kind == "learned":
                gate = model.kd_gate(enc_out, src_len)
                gate_loss = gate_objective(gate, token_rate, sentence_rate,
                                           prior=objective.prior, tau=objective.tau)
            else:
                value = gate_spec.value(self.current_step(), total_steps)
                gate = torch.full((batch_size,), value, device=scores.device)
                gate_loss = None
            loss = hybrid(token_loss, sentence_loss, gate)
            running.add(_gate_stats(gate, sentence_rate - token_rate), reduce=GATE_REDUCERS)
            # The reported loss is the student's; the gate's objective only adds its gradient.
            stats = self._stats(len(batch["srclen"]), loss.item(), scores.view(-1, vocab_size),
                                target.reshape(-1))
            return (loss if gate_loss is None else loss + gate_loss), stats

    def factory(opt: argparse.Namespace, model: Any, vocabs: dict[str, Any]) -> Any:
        _teacher_on_device_of(teacher, model)
        loss = _build_loss(HybridLossCompute, opt, model, vocabs)
        loss.__dict__["student"] = model  # a reference, not a registered submodule
        loss.pseudo = PseudoTargets(pseudo_lines, vocabs["tgt"])
        loss.bos, loss.eos = vocabs["tgt"]["<s>"], vocabs["tgt"]["</s>"]
        loss.label_smoothing = opt.label_smoothing
        loss.current_step = lambda: 1
        return loss

    return factory
