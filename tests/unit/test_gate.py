"""The hybrid gate network: it reads detached encoder states and starts at its prior."""

from __future__ import annotations

import math

import pytest
import torch

from kdnmt.errors import KdnmtError
from kdnmt.gate import SourceGate, check_gate_prior_tau
from kdnmt.losses import gate_objective


@pytest.mark.parametrize("prior", [0.2, 0.5, 0.85])
def test_gate_starts_at_its_prior(prior: float) -> None:
    gate = SourceGate(8, prior=prior)
    g = gate(torch.randn(3, 5, 8), torch.tensor([5, 2, 1]))
    assert torch.allclose(g, torch.full((3,), prior), atol=1e-6)


def test_gate_objective_trains_the_gate_and_never_the_encoder() -> None:
    """The gate's objective reaches the gate's parameters only: no gradient flows into the
    encoder states it pools (the student's encoder) nor into the rates (the student's losses)."""
    torch.manual_seed(0)
    encoder = torch.nn.Linear(8, 8)
    enc_out = encoder(torch.randn(4, 6, 8))
    gate = SourceGate(8, prior=0.5)
    a = torch.rand(4, requires_grad=True)
    c = torch.rand(4, requires_grad=True)
    g = gate(enc_out, torch.tensor([6, 3, 2, 1]))
    gate_objective(g, a, c, prior=0.5, tau=1.0).backward()
    assert gate.linear.weight.grad is not None and gate.linear.weight.grad.abs().sum() > 0
    assert encoder.weight.grad is None and a.grad is None and c.grad is None


@pytest.mark.parametrize("prior, tau, needle", [
    (0.0, 1.0, "--gate-prior"), (1.0, 1.0, "--gate-prior"), (math.nan, 1.0, "--gate-prior"),
    (0.5, 0.0, "--gate-tau"), (0.5, -2.0, "--gate-tau"), (0.5, math.inf, "--gate-tau"),
])
def test_gate_option_refusals(prior: float, tau: float, needle: str) -> None:
    with pytest.raises(KdnmtError, match=needle):
        check_gate_prior_tau(prior, tau)
