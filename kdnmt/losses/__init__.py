"""Distillation losses of kdnmt: pure torch functions, one module per loss.

The mathematics and the API are fixed by the KD-losses design contract: every loss takes
student logits ``s [N, V]``, teacher log-probs ``t [N, V]`` (``-inf`` allowed for top-k
teachers) and targets ``y [N]``, returns the **sum** over positions, and is differentiable
w.r.t. ``s`` only. An optional ``mask`` keyword (True = real token) lets callers pass padded
tensors; masked positions contribute exactly 0.
"""

from kdnmt.losses.atkd import atkd, atkd_with_stats, dkd_terms
from kdnmt.losses.hybrid import gate_objective, gate_target, hybrid
from kdnmt.losses.registry import LOSSES, HParam, LossSpec, get_spec, validate_hparams
from kdnmt.losses.self_evolution import (
    DEFAULT_THRESHOLD,
    parse_threshold,
    self_evolution_kd,
    self_evolution_kd_stats,
    self_evolution_kd_with_stats,
)
from kdnmt.losses.topk import topk_to_logprobs
from kdnmt.losses.word_kd import word_kd, word_kd_topk, word_kd_topk_rows

__all__ = [
    "DEFAULT_THRESHOLD",
    "LOSSES",
    "HParam",
    "LossSpec",
    "atkd",
    "atkd_with_stats",
    "dkd_terms",
    "gate_objective",
    "gate_target",
    "get_spec",
    "hybrid",
    "parse_threshold",
    "self_evolution_kd",
    "self_evolution_kd_stats",
    "self_evolution_kd_with_stats",
    "topk_to_logprobs",
    "validate_hparams",
    "word_kd",
    "word_kd_topk",
    "word_kd_topk_rows",
]
