"""The hybrid gate of Wei et al. 2024: how much of each sentence's loss is token-level KD.

``g(x) = sigmoid(w · mean_pool(encoder states of x) + b)`` in (0, 1), one value per source
sentence. The student minimises ``sum_b g_b * token_loss_b + (1 - g_b) * sentence_loss_b``
with the gate detached (:func:`kdnmt.losses.hybrid`); the gate minimises its own strictly
convex objective (:func:`kdnmt.losses.gate_objective`), reading **detached** encoder states so
that it cannot train the encoder either. The paper reports the gate's mean moving from about
0.72 towards 1 during training; here it follows the two losses, and the trainer logs its mean,
spread and the mean of ``c - a``. Ablations replace the learned gate by a constant
(``fixed:0.5``) or a linear schedule over training steps (``schedule:0.2:0.9``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kdnmt.errors import KdnmtError

#: Parameter-name prefix of the gate inside the student; stripped from exported models.
GATE_PREFIX = "kd_gate."


class SourceGate(nn.Module):
    """Sigmoid over a linear map of the mean-pooled, detached encoder states."""

    def __init__(self, hidden_size: int, prior: float = 0.5):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        # Starts at the prior of its objective, for every sentence.
        nn.init.constant_(self.linear.bias, math.log(prior) - math.log1p(-prior))

    def forward(self, enc_out: Tensor, src_len: Tensor) -> Tensor:
        """``enc_out [B, S, d]``, ``src_len [B]`` -> ``g [B]`` in (0, 1).

        The encoder states are detached: the gate is trained on its own objective and must
        not move the student's encoder (tested)."""
        enc_out = enc_out.detach()
        positions = torch.arange(enc_out.size(1), device=enc_out.device)
        mask = (positions[None, :] < src_len[:, None]).to(enc_out.dtype)
        pooled = (enc_out * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0)
        return torch.sigmoid(self.linear(pooled)).squeeze(-1)


@dataclass(frozen=True)
class GateObjective:
    """The learned gate's objective options (:func:`kdnmt.losses.gate_objective`), with the
    contract's defaults."""

    prior: float = 0.5
    tau: float = 1.0


@dataclass(frozen=True)
class GateSpec:
    """``learned``, ``fixed:V`` or ``schedule:START:END`` (linear over the training steps)."""

    kind: str
    start: float = 0.0
    end: float = 0.0

    @classmethod
    def parse(cls, text: str) -> GateSpec:
        parts = text.split(":")
        try:
            if parts == ["learned"]:
                return cls("learned")
            if parts[0] == "fixed" and len(parts) == 2:
                value = float(parts[1])
                spec = cls("fixed", value, value)
            elif parts[0] == "schedule" and len(parts) == 3:
                spec = cls("schedule", float(parts[1]), float(parts[2]))
            else:
                raise ValueError
        except ValueError:
            raise KdnmtError(f"--gate must be learned, fixed:V or schedule:START:END, "
                             f"got '{text}'") from None
        if not (0.0 <= spec.start <= 1.0 and 0.0 <= spec.end <= 1.0):
            raise KdnmtError(f"--gate values must be in [0, 1], got '{text}'")
        return spec

    def value(self, step: int, total_steps: int) -> float:
        """The constant gate at ``step`` (fixed and schedule gates)."""
        if self.kind == "fixed" or total_steps <= 1:
            return self.start
        frac = min(max((step - 1) / (total_steps - 1), 0.0), 1.0)
        return self.start + frac * (self.end - self.start)


def check_gate_prior_tau(prior: float, tau: float) -> None:
    """One-line refusals for the gate objective's options (before anything is written)."""
    if not (0.0 < prior < 1.0) or not math.isfinite(prior):
        raise KdnmtError(f"--gate-prior must be in (0, 1), got {prior:g}")
    if not (tau > 0.0) or not math.isfinite(tau):
        raise KdnmtError(f"--gate-tau must be > 0, got {tau:g} (tau -> 0 is the literal, "
                         "saturating gate; use --gate fixed:V for a constant)")
