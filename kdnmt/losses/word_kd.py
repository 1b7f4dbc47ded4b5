"""Word-level knowledge distillation (Kim & Rush 2016)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdnmt.losses._common import kl_rows, prepare, zero_loss


def word_kd(
    s: Tensor,
    t: Tensor,
    y: Tensor,
    *,
    alpha: float = 0.5,
    temperature: float = 1.0,
    label_smoothing: float = 0.0,
    mask: Tensor | None = None,
) -> Tensor:
    """Interpolate label-smoothed CE on ``y`` with ``T^2``-scaled KL to the teacher.

    ``sum_n (1-alpha) CE_ls(y_n, q_n) + alpha T^2 KL(softmax_T(t_n) || softmax_T(s_n))``

    Why this form: the KL pulls the student towards the teacher's whole distribution at each
    position (word-level KD), while the CE term keeps it anchored to the references. The
    ``T^2`` factor keeps the KD gradient magnitude independent of the temperature (Hinton et
    al. 2015), so ``alpha`` means the same thing at every ``T``.

    ``CE_ls`` is exactly OpenNMT-py 3.5.1's criterion, ``torch.nn.CrossEntropyLoss(
    reduction="sum", label_smoothing=ls)``: mass ``ls`` is spread uniformly over all V ids
    (the gold id included), so runs with ``alpha=0`` reproduce plain OpenNMT-py training.

    Args:
        s: student logits ``[N, V]``.
        t: teacher log-probs ``[N, V]``; ``-inf`` allowed (top-k teacher). The teacher is
            re-softmaxed at temperature T (``softmax(t / T)``), which also renormalises it.
        y: gold or pseudo-target ids ``[N]``.
        alpha: weight of the KD term; ``alpha=1`` is pure distillation, 0 is plain CE.
        temperature: T > 0, applied to both student and teacher in the KD term only.
        label_smoothing: OpenNMT-py label smoothing of the CE term.
        mask: optional ``[N]`` bool, True for real tokens; other rows contribute exactly 0.

    Returns:
        Scalar tensor, the sum over positions (the trainer divides by the token count).
        Differentiable w.r.t. ``s`` only.
    """
    s, t, y = prepare(s, t, y, mask)
    loss = zero_loss(s)
    log_q = F.log_softmax(s, dim=-1)  # shared by CE and (at T = 1) the KD term
    # Terms with weight 0 are skipped, so the edge cases are exactly CE or exactly KD.
    if alpha != 1.0:
        loss = loss + (1.0 - alpha) * _smoothed_ce_rows(log_q, y, label_smoothing).sum()
    if alpha != 0.0:
        log_p = F.log_softmax(t / temperature, dim=-1)
        log_q_t = log_q if temperature == 1.0 else F.log_softmax(s / temperature, dim=-1)
        if bool(torch.isfinite(log_p).all()):
            # A full teacher: one fused kernel instead of kl_rows' masked temporaries.
            kd = F.kl_div(log_q_t, log_p, log_target=True, reduction="sum")
        else:
            kd = kl_rows(log_p, log_q_t).sum()
        loss = loss + alpha * temperature**2 * kd
    return loss


def _smoothed_ce_rows(log_q: Tensor, y: Tensor, label_smoothing: float) -> Tensor:
    """Per-position ``F.cross_entropy(s, y, reduction="none", label_smoothing=ls)`` from
    ``log_softmax(s)`` (torch's definition: ``(1 - ls) * NLL + ls * mean over V of -log q``),
    so the student's softmax over V is computed once per step, not once per term."""
    nll = -log_q.gather(1, y.long()[:, None]).squeeze(1)
    if label_smoothing == 0.0:
        return nll
    return (1.0 - label_smoothing) * nll - label_smoothing * log_q.mean(dim=1)


def word_kd_topk(
    s: Tensor,
    ids: Tensor,
    logprobs: Tensor,
    y: Tensor,
    *,
    alpha: float = 0.5,
    temperature: float = 1.0,
    label_smoothing: float = 0.0,
) -> Tensor:
    """:func:`word_kd` for a top-k teacher given sparsely: equal to
    ``word_kd(s, topk_to_logprobs(ids, logprobs, V), y, ...)``, without building the dense
    ``[N, V]`` teacher.

    Why: with a soft-target store the teacher has K (e.g. 8) entries per position; expanding
    them to V (e.g. 8,000) columns costs more than the student's own softmax. Here the KL is
    a sum over the K kept ids only: ``p = softmax(logprobs / T)`` over the kept ids (the
    renormalisation of ``topk_to_logprobs`` cancels inside the softmax), and the student's
    ``log_softmax(s / T)`` is gathered at those ids.

    Args:
        s: student logits ``[N, V]`` (real positions only).
        ids: teacher's kept ids ``[N, K]``; ``-1`` marks an unused slot.
        logprobs: their log-probabilities ``[N, K]`` (ignored where ``ids`` is -1).
        y: target ids ``[N]``.
    """
    return word_kd_topk_rows(s, ids, logprobs, y, alpha=alpha, temperature=temperature,
                             label_smoothing=label_smoothing).sum()


def word_kd_topk_rows(
    s: Tensor,
    ids: Tensor,
    logprobs: Tensor,
    y: Tensor,
    *,
    alpha: float = 0.5,
    temperature: float = 1.0,
    label_smoothing: float = 0.0,
) -> Tensor:
    """The per-position terms ``[N]`` of :func:`word_kd_topk` (which is their sum).

    Why: the hybrid method weighs each *sentence's* token-level loss by its gate; summing
    these rows per sentence does that for a whole batch in one pass.
    """
    if ids.shape != logprobs.shape or ids.dim() != 2 or ids.shape[0] != s.shape[0]:
        raise ValueError(f"ids and logprobs must be [N, K] with N={s.shape[0]}, got "
                         f"{tuple(ids.shape)} and {tuple(logprobs.shape)}")
    s = s.float()
    rows = s.new_zeros(s.shape[0]) + zero_loss(s)
    log_q_full = F.log_softmax(s, dim=-1)
    if alpha != 1.0:
        rows = rows + (1.0 - alpha) * _smoothed_ce_rows(log_q_full, y, label_smoothing)
    if alpha != 0.0:
        kept = ids >= 0
        safe_ids = ids.long().clamp_min(0)
        teacher = logprobs.detach().float().masked_fill(~kept, float("-inf"))
        log_p = F.log_softmax(teacher / temperature, dim=-1)
        log_q_t = (log_q_full if temperature == 1.0
                   else F.log_softmax(s / temperature, dim=-1))
        rows = rows + alpha * temperature**2 * kl_rows(log_p, log_q_t.gather(1, safe_ids))
    return rows
