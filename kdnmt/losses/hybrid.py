"""Hybrid gated KD (Wei et al. 2024): per-sentence mix of word-level and sequence-level KD.

Two objectives, as the KD-losses contract fixes them. Taken literally (the gate minimising the
student's own loss), ``dL/dg = token_loss - sentence_loss`` does not depend on ``g``, so every
sentence's optimum is ``g = 0`` or ``g = 1`` and a learned gate saturates to a constant within a
few hundred updates (measured in this project). Hence:

- the student minimises :func:`hybrid` with the gate **detached**;
- the gate minimises :func:`gate_objective`, strictly convex in each ``g_b``, whose unique
  minimiser :func:`gate_target` leans towards whichever loss the student fits better per token,
  by how much, and stays interior.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _check_vectors(name: str, **vectors: Tensor) -> None:
    """Raise ``ValueError`` unless every tensor is 1-D and all have the same length."""
    shapes = {key: tuple(x.shape) for key, x in vectors.items()}
    if any(len(shape) != 1 for shape in shapes.values()) or len(set(shapes.values())) != 1:
        details = ", ".join(f"{key} {shape}" for key, shape in shapes.items())
        raise ValueError(f"{name} expects [B] vectors of the same length, got {details}")


def _check_prior_tau(prior: float, tau: float) -> None:
    if not (0.0 < prior < 1.0):
        raise ValueError(f"prior={prior:g} is out of range: expected 0 < prior < 1")
    if not (tau > 0.0 and math.isfinite(tau)):
        raise ValueError(f"tau={tau:g} is out of range: expected tau > 0")


def hybrid(token_loss: Tensor, sentence_loss: Tensor, gate: Tensor) -> Tensor:
    """The student's objective ``sum_b g_b * token_loss_b + (1 - g_b) * sentence_loss_b``.

    The gate is detached here: the student does not move the gate (the gate has its own
    objective, :func:`gate_objective`). Gradients reach ``token_loss`` and ``sentence_loss``.

    Args:
        token_loss: ``[B]`` word-level KD loss of each sentence (``word_kd`` summed over its
            reference positions, with the run's alpha, temperature and label smoothing).
        sentence_loss: ``[B]`` label-smoothed CE summed over each sentence's pseudo-target.
        gate: ``[B]`` gate values in [0, 1] (constant 0 or 1 gates serve as ablations).

    Returns:
        Scalar tensor, the sum over sentences.

    Raises:
        ValueError: if the inputs are not three 1-D tensors of the same length.
    """
    _check_vectors("hybrid", token_loss=token_loss, sentence_loss=sentence_loss, gate=gate)
    g = gate.detach()
    return (g * token_loss + (1.0 - g) * sentence_loss).sum()


def gate_target(token_rate: Tensor, sentence_rate: Tensor, *, prior: float = 0.5,
                tau: float = 1.0) -> Tensor:
    """``g*_b = sigmoid(logit(prior) + (c_b - a_b) / tau)``, the minimiser of
    :func:`gate_objective` (``a`` = ``token_rate``, ``c`` = ``sentence_rate``, detached).

    Useful for tests and for training the gate by binary cross-entropy towards it (same
    minimiser). ``tau -> 0`` recovers the literal, saturating 0/1 choice.
    """
    _check_vectors("gate_target", token_rate=token_rate, sentence_rate=sentence_rate)
    _check_prior_tau(prior, tau)
    logit_prior = math.log(prior) - math.log1p(-prior)
    return torch.sigmoid(logit_prior + (sentence_rate.detach() - token_rate.detach()) / tau)


def gate_objective(gate: Tensor, token_rate: Tensor, sentence_rate: Tensor, *,
                   prior: float = 0.5, tau: float = 1.0) -> Tensor:
    """The gate's own objective, differentiable with respect to ``gate`` only::

        J = sum_b g_b * a_b + (1 - g_b) * c_b + tau * KL(Bern(g_b) || Bern(prior))

    Why: the KL to a Bernoulli prior makes ``J`` strictly convex in each ``g_b`` (second
    derivative ``tau / (g (1 - g)) > 0``), so the optimum is interior
    (:func:`gate_target`) instead of the literal loss's 0/1 corner. The rates are per token
    (nats per target token, computed without label smoothing), which removes the length
    bias of summed losses; they are detached so the gate cannot move the student.

    Args:
        gate: ``[B]`` gate values in (0, 1).
        token_rate: ``[B]`` ``a_b``, the word-level KD term of sentence b per reference token.
        sentence_rate: ``[B]`` ``c_b``, the CE on its pseudo-target per pseudo-target token.
        prior: the Bernoulli prior's mean, in (0, 1).
        tau: the prior's weight, > 0.

    Returns:
        Scalar tensor, the sum over sentences.
    """
    _check_vectors("gate_objective", gate=gate, token_rate=token_rate,
                   sentence_rate=sentence_rate)
    _check_prior_tau(prior, tau)
    a, c = token_rate.detach(), sentence_rate.detach()
    # Clamped away from {0, 1} only inside the logs: a sigmoid gate never reaches them in
    # exact arithmetic, but float32 rounding can.
    eps = torch.finfo(gate.dtype).tiny
    g = gate
    kl = (g * (torch.log(g.clamp_min(eps)) - math.log(prior))
          + (1.0 - g) * (torch.log((1.0 - g).clamp_min(eps)) - math.log1p(-prior)))
    return (g * a + (1.0 - g) * c + tau * kl).sum()
