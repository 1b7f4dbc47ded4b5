"""Hybrid gated KD (Wei et al. 2024): per-sentence mix of word-level and sequence-level KD."""

from __future__ import annotations

from torch import Tensor


def hybrid(token_loss: Tensor, sentence_loss: Tensor, gate: Tensor) -> Tensor:
    """``sum_b g_b * token_loss_b + (1 - g_b) * sentence_loss_b`` over the B sentences.

    Why per sentence: the gate ``g_b = g(x_b)`` looks at the source sentence and decides how
    much that sentence should learn from the teacher's token distributions (word-level KD)
    versus from the teacher's output sequence (sequence-level KD). All three inputs keep
    their gradients: the gate network is trained jointly with the student, so the gate must
    receive gradient from this loss.

    Args:
        token_loss: ``[B]`` word-level KD loss of each sentence (sum over its positions).
        sentence_loss: ``[B]`` sequence-level loss of each sentence (CE on its pseudo-target).
        gate: ``[B]`` gate values, normally in (0, 1) (values are not checked, so constant 0
            or 1 gates can be used for ablations).

    Returns:
        Scalar tensor, the sum over sentences.

    Raises:
        ValueError: if the inputs are not three 1-D tensors of the same length.
    """
    shapes = {
        name: tuple(x.shape)
        for name, x in (
            ("token_loss", token_loss),
            ("sentence_loss", sentence_loss),
            ("gate", gate),
        )
    }
    if any(len(shape) != 1 for shape in shapes.values()) or len(set(shapes.values())) != 1:
        details = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"hybrid expects three [B] vectors of the same length, got {details}")
    return (gate * token_loss + (1.0 - gate) * sentence_loss).sum()
