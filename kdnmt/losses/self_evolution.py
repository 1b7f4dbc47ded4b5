"""Self-Evolution KD (Song et al. 2024, arXiv 2412.15303).

Tokens the student already fits well ("easy") are distilled as usual towards the mixed
target ``y~ = (1-lam) onehot(y) + lam p``. For tokens it fits badly ("hard"), the student's
own distribution is blended with the target into a proxy ``q^ = beta q + (1-beta) y~``, so
the loss on hard tokens is smaller and smoother: the prior knowledge in ``y~`` is handed to
the student instead of forcing it to jump straight to a target it is far from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdnmt.losses._common import NEG_INF, kl_rows, prepare, safe_log, zero_loss
from kdnmt.losses.thresholds import DEFAULT_THRESHOLD, parse_threshold

__all__ = ["DEFAULT_THRESHOLD", "parse_threshold", "self_evolution_kd", "self_evolution_kd_stats",
           "self_evolution_kd_with_stats"]

def _self_evolution_rows(
    s: Tensor, t: Tensor, y: Tensor, lam: float, beta: float, threshold: float | str
) -> tuple[Tensor, Tensor, float]:
    """Per-position losses ``[N]``, the hard-token mask ``[N]`` and the threshold used (nats)
    (inputs already prepared)."""
    log_q = F.log_softmax(s, dim=-1)
    log_p = F.log_softmax(t, dim=-1)  # no-op for proper log-probs; defensive renormalisation
    log_onehot = torch.full_like(log_p, NEG_INF).scatter(1, y[:, None], 0.0)
    # y~ in log space: ids outside both the gold id and the teacher's support are exactly -inf.
    log_yt = torch.logaddexp(safe_log(1.0 - lam) + log_onehot, safe_log(lam) + log_p)

    difficulty = kl_rows(log_yt, log_q)
    kind, value = parse_threshold(threshold)
    if kind == "quantile":
        value = float(torch.quantile(difficulty.detach().double(), value))
    hard = difficulty.detach() > value

    # Where y~ = 0 the value of log q^ is irrelevant (weighted by 0 in the KL); using a finite
    # stand-in keeps logaddexp away from (-inf, -inf), whose backward is NaN (beta = 0).
    log_yt_safe = torch.where(log_yt > NEG_INF, log_yt, torch.zeros_like(log_yt))
    log_q_hat = torch.logaddexp(safe_log(beta) + log_q, safe_log(1.0 - beta) + log_yt_safe)
    proxy = kl_rows(log_yt, log_q_hat)
    return torch.where(hard, proxy, difficulty), hard, value


def self_evolution_kd_stats(
    s: Tensor,
    t: Tensor,
    y: Tensor,
    *,
    lam: float = 0.5,
    beta: float = 0.5,
    threshold: float | str = DEFAULT_THRESHOLD,
    mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """``self_evolution_kd`` plus ``{"hard_tokens": share of hard positions, "threshold":
    the threshold used, in nats}`` (the quantile's value in this batch for ``quantile:Q``).

    The contract asks for the hard share to be logged; the figures are returned separately
    (Python floats; an empty batch gives 0.0 and the fixed threshold) so the plain loss keeps
    the common signature.
    """
    s, t, y = prepare(s, t, y, mask)
    if y.numel() == 0:
        kind, value = parse_threshold(threshold)
        return zero_loss(s), {"hard_tokens": 0.0,
                              "threshold": value if kind == "nats" else 0.0}
    rows, hard, value = _self_evolution_rows(s, t, y, lam, beta, threshold)
    return rows.sum(), {"hard_tokens": float(hard.float().mean()), "threshold": value}


def self_evolution_kd_with_stats(
    s: Tensor,
    t: Tensor,
    y: Tensor,
    *,
    lam: float = 0.5,
    beta: float = 0.5,
    threshold: float | str = DEFAULT_THRESHOLD,
    mask: Tensor | None = None,
) -> tuple[Tensor, float]:
    """``self_evolution_kd`` plus the share of hard tokens among the real positions."""
    loss, stats = self_evolution_kd_stats(s, t, y, lam=lam, beta=beta, threshold=threshold,
                                          mask=mask)
    return loss, stats["hard_tokens"]


def self_evolution_kd(
    s: Tensor,
    t: Tensor,
    y: Tensor,
    *,
    lam: float = 0.5,
    beta: float = 0.5,
    threshold: float | str = DEFAULT_THRESHOLD,
    mask: Tensor | None = None,
) -> Tensor:
    """Self-Evolution KD loss, summed over positions.

    ::

        y~_n = (1 - lam) onehot(y_n) + lam p_n        d_n = KL(y~_n || q_n)
        hard = d_n > threshold                         q^_n = beta q_n + (1 - beta) y~_n
        loss = sum_{hard} KL(y~_n || q^_n) + sum_{easy} d_n

    ``q^`` is computed in log space with ``logaddexp`` so zeros of ``y~`` (ids outside a
    top-k teacher's support and not gold) stay exact zeros. The hard/easy split is a
    non-differentiable selection computed from ``d`` (detached); gradients flow through
    ``q`` in both branches, including through ``q`` inside ``q^``. Edge cases: ``beta = 1``
    gives ``q^ = q`` (plain ``KL(y~ || q)`` everywhere); ``beta = 0`` gives ``q^ = y~``, so
    hard tokens contribute 0; ``lam = 0`` is CE on ``y``; ``lam = 1`` is ``KL(p || q)``.

    Args:
        s: student logits ``[N, V]``.
        t: teacher log-probs ``[N, V]``, ``-inf`` allowed (top-k teacher); never modified.
        y: target ids ``[N]``.
        lam: weight of the teacher in the target mixture, in ``[0, 1]``.
        beta: weight of the student in the proxy distribution, in ``[0, 1]``.
        threshold: difficulty threshold in nats (see ``DEFAULT_THRESHOLD`` for the choice),
            or ``"quantile:Q"``: the Q-quantile of the batch's difficulties, so that a share
            ``1 - Q`` of the tokens is hard (:func:`parse_threshold`).
        mask: optional ``[N]`` bool, True for real tokens; other rows contribute exactly 0.

    Returns:
        Scalar tensor (sum over positions), differentiable w.r.t. ``s`` only.
    """
    loss, _ = self_evolution_kd_with_stats(
        s, t, y, lam=lam, beta=beta, threshold=threshold, mask=mask
    )
    return loss
