"""ATKD, adaptive token-wise KD (Zhong et al. 2024).

Forward KL at each position decouples exactly into a target-oriented part (TKD, a binary KL
on "gold id vs. the rest") and a diversity-oriented part (DKD, the KL between the
distributions renormalised over the non-target ids), weighted by the teacher uncertainty
``UNC = 1 - p(y)``::

    KL(p || q) = TKD + UNC * DKD

On tokens where the teacher is certain, UNC is small and plain KD hardly transfers the
teacher's knowledge about the non-target ids. ATKD therefore drops the UNC weight and treats
the most uncertain tokens (hard) and the rest (easy) differently.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from kdnmt.losses._common import NEG_INF, kl_rows, prepare, zero_loss


def _terms(s: Tensor, t: Tensor, y: Tensor, temperature: float) -> tuple[Tensor, Tensor, Tensor]:
    """TKD, DKD, UNC on already prepared inputs (see ``dkd_terms``)."""
    log_p = F.log_softmax(t / temperature, dim=-1)
    log_q = F.log_softmax(s / temperature, dim=-1)
    target = torch.zeros_like(log_p, dtype=torch.bool).scatter(1, y[:, None], True)

    log_p_rest = log_p.masked_fill(target, NEG_INF)
    log_q_rest = log_q.masked_fill(target, NEG_INF)
    # log(1 - p^t) as a logsumexp over the non-target ids: accurate even when p^t -> 1, and
    # exactly -inf when the teacher puts all its mass on the gold id.
    log_1mp = torch.logsumexp(log_p_rest, dim=-1)
    log_1mq = torch.logsumexp(log_q_rest, dim=-1)
    log_pt = log_p.gather(1, y[:, None]).squeeze(1)
    log_qt = log_q.gather(1, y[:, None]).squeeze(1)

    tkd = kl_rows(torch.stack([log_pt, log_1mp], dim=-1), torch.stack([log_qt, log_1mq], dim=-1))

    # DKD on the non-target renormalisations. If p^t = 1 the teacher's renormalisation is 0/0;
    # DKD is then defined as 0 (it is weighted by UNC = 0 in the identity anyway): the row's
    # teacher stays all -inf, and kl_rows gives exactly 0 with a zero gradient.
    certain = log_1mp == NEG_INF
    log_p_tilde = log_p_rest - torch.where(certain, torch.zeros_like(log_1mp), log_1mp)[:, None]
    log_q_tilde = F.log_softmax(log_q_rest, dim=-1)
    dkd = kl_rows(log_p_tilde, log_q_tilde)

    # UNC from whichever side is exact: 1 - p^t for small p^t (exactly 1 when the gold id is
    # outside a top-k support, so such ties rank deterministically by position), the
    # non-target mass for p^t near 1 (exactly 0 for a certain teacher).
    p_t = log_pt.exp()
    unc = torch.where(p_t < 0.5, 1.0 - p_t, log_1mp.exp())
    return tkd, dkd, unc


def dkd_terms(
    s: Tensor,
    t: Tensor,
    y: Tensor,
    *,
    temperature: float = 1.0,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-position decoupled KL terms ``(tkd, dkd, unc)``, each ``[N]`` (``[M]`` if masked).

    At temperature T, with ``p = softmax(t/T)``, ``q = softmax(s/T)``, ``p^t = p(y)``,
    ``q^t = q(y)``: ``tkd = KL([p^t, 1-p^t] || [q^t, 1-q^t])``, ``dkd = KL(p_\\y || q_\\y)``
    (both renormalised over the non-target ids), ``unc = 1 - p^t``, so that
    ``KL(p || q) = tkd + unc * dkd`` per position. Exposed separately so the trainer can log
    them and tests can check the identity. ``1 - p^t`` and ``1 - q^t`` are computed as
    log-sum-exps over the non-target ids, which is exact where ``p^t`` is close to 1 and well
    defined for top-k teachers whose support excludes the gold id (``p^t = 0``). ``dkd`` is 0
    where ``p^t = 1``. ``unc`` carries no gradient (teacher only); ``tkd``/``dkd`` are
    differentiable w.r.t. ``s``.

    With ``mask``, only the real positions (True) are returned, in order.
    """
    s, t, y = prepare(s, t, y, mask)
    return _terms(s, t, y, temperature)


def _hard_count(hard_ratio: float, n: int) -> int:
    """``ceil(hard_ratio * n)`` robust to float noise (``0.3 * 10 = 3.0000000000000004``)."""
    if n == 0:
        return 0
    return min(n, max(1, math.ceil(round(hard_ratio * n, 9))))


def atkd_with_stats(
    s: Tensor,
    t: Tensor,
    y: Tensor,
    *,
    alpha: float = 0.2,
    hard_ratio: float = 0.5,
    temperature: float = 1.0,
    mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """``atkd`` plus the batch means of UNC, TKD and DKD over the real positions, for logging.

    Returns ``(loss, {"unc": ..., "tkd": ..., "dkd": ...})``; the means are 0.0 for an empty
    batch.
    """
    s, t, y = prepare(s, t, y, mask)
    n = y.shape[0]
    if n == 0:
        return zero_loss(s), {"unc": 0.0, "tkd": 0.0, "dkd": 0.0}
    tkd, dkd, unc = _terms(s, t, y, temperature)

    k = _hard_count(hard_ratio, n)
    # Stable sort: ties in UNC are broken by position, so the split is deterministic.
    order = torch.argsort(unc, descending=True, stable=True)
    hard = torch.zeros(n, dtype=torch.bool, device=unc.device)
    hard[order[:k]] = True
    easy = ~hard

    loss = zero_loss(s)
    if k < n:  # an empty group contributes 0
        loss = loss + alpha * dkd[easy].mean()
    if k > 0:
        loss = loss + (1.0 - alpha) * (tkd[hard] + dkd[hard]).mean()
    stats = {
        "unc": float(unc.mean()),
        "tkd": float(tkd.detach().mean()),
        "dkd": float(dkd.detach().mean()),
    }
    return n * loss, stats


def atkd(
    s: Tensor,
    t: Tensor,
    y: Tensor,
    *,
    alpha: float = 0.2,
    hard_ratio: float = 0.5,
    temperature: float = 1.0,
    mask: Tensor | None = None,
) -> Tensor:
    """Adaptive token-wise KD, as a sum over positions.

    The ``ceil(hard_ratio * N)`` positions with the largest teacher uncertainty UNC are hard,
    the rest easy::

        loss = N * (alpha * mean_easy DKD + (1 - alpha) * mean_hard (TKD + DKD))

    Why: on easy (teacher-certain) tokens the student is taught only the teacher's ranking of
    the alternatives (DKD, no longer down-weighted by a tiny UNC); on hard tokens it learns
    both the target and the alternatives. The factor N turns the paper's batch mean into the
    contract's "sum over positions" (the trainer divides by N again). No ``T^2`` factor is
    applied (the contract does not have one). A group with no positions contributes 0.

    Args:
        s: student logits ``[N, V]``.
        t: teacher log-probs ``[N, V]``, ``-inf`` allowed (top-k teacher); never modified.
        y: target ids ``[N]``.
        alpha: weight of the easy group, in ``[0, 1]``.
        hard_ratio: fraction of hard positions, in ``(0, 1]``.
        temperature: T > 0 for both distributions.
        mask: optional ``[N]`` bool, True for real tokens; other rows are neither counted in
            N nor ranked, and contribute exactly 0.

    Returns:
        Scalar tensor, differentiable w.r.t. ``s`` only.
    """
    loss, _ = atkd_with_stats(
        s, t, y, alpha=alpha, hard_ratio=hard_ratio, temperature=temperature, mask=mask
    )
    return loss
