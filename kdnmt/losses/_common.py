"""Shared input checks and numerically safe helpers for the KD losses.

Kept private: the public functions live one per module (``word_kd``, ``self_evolution_kd``,
``atkd``...). Everything here exists so that each loss handles the same edge cases the same
way: padding masks, a detached teacher, mixed-precision inputs, and ``0 * log 0 = 0`` for
teachers with ``-inf`` entries (top-k teachers).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

NEG_INF = -math.inf


def safe_log(x: float) -> float:
    """``log(x)`` for a scalar weight, with ``log(0) = -inf`` instead of a ``ValueError``.

    Mixture weights such as ``lam`` or ``beta`` may legitimately be 0 or 1; in log space the
    corresponding component simply vanishes, which ``-inf`` expresses exactly.
    """
    return math.log(x) if x > 0 else NEG_INF


def prepare(s: Tensor, t: Tensor, y: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Validate ``(s, t, y, mask)`` and return the real positions only.

    Why: every loss is defined on N unpadded positions. Selecting the rows (rather than
    multiplying by the mask) guarantees that padded positions contribute exactly 0 to the
    value *and* to the gradient even when their logits or teacher rows are garbage (e.g. a
    teacher row that is all ``-inf``). The teacher is detached so no gradient can reach it,
    and the computation is done in at least float32 so fp16/bf16 inputs stay accurate.
    """
    if s.dim() != 2:
        raise ValueError(f"student logits must be [N, V], got shape {tuple(s.shape)}")
    if t.shape != s.shape:
        raise ValueError(
            f"teacher log-probs must have the student's shape {tuple(s.shape)}, "
            f"got {tuple(t.shape)}"
        )
    if y.dim() != 1 or y.shape[0] != s.shape[0]:
        raise ValueError(f"targets must be [N] with N={s.shape[0]}, got shape {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"targets must be an integer tensor, got {y.dtype}")
    if mask is not None:
        if mask.dtype != torch.bool or mask.shape != y.shape:
            raise ValueError(
                f"mask must be a bool tensor of shape {tuple(y.shape)}, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        s, t, y = s[mask], t[mask], y[mask]
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= s.shape[1]):
        raise ValueError(f"target ids must lie in [0, {s.shape[1]}), got {y.min()}..{y.max()}")
    dtype = torch.promote_types(s.dtype, torch.float32)
    return s.to(dtype), t.detach().to(dtype), y.long()


def kl_rows(log_a: Tensor, log_b: Tensor) -> Tensor:
    """Row-wise ``KL(a || b) = sum_i a_i (log a_i - log b_i)`` with ``0 log 0 = 0``.

    ``log_a`` may contain ``-inf`` (a top-k teacher, a one-hot target, a renormalised
    distribution with the target removed). A naive ``a * (log_a - log_b)`` then evaluates
    ``0 * (-inf)`` = NaN, and autograd propagates NaN even through ``torch.where``'s unused
    branch if that branch itself is NaN. Both logs are therefore replaced by 0 where
    ``a_i = 0`` *before* the product, so no NaN ever appears in values or gradients.
    """
    support = log_a > NEG_INF
    la = torch.where(support, log_a, torch.zeros_like(log_a))
    lb = torch.where(support, log_b, torch.zeros_like(log_b))
    terms = torch.where(support, la.exp() * (la - lb), torch.zeros_like(la))
    return terms.sum(dim=-1)


def zero_loss(s: Tensor) -> Tensor:
    """A scalar 0 still attached to ``s``'s graph (for empty batches), so ``backward`` works."""
    return s.sum() * 0.0
