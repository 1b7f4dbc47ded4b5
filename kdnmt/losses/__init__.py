"""Distillation losses of kdnmt: pure torch functions, one module per loss, and the method
registry (:mod:`kdnmt.losses.registry`, which imports no torch).

The mathematics and the API are fixed by the KD-losses design contract: every loss takes
student logits ``s [N, V]``, teacher log-probs ``t [N, V]`` (``-inf`` allowed for top-k
teachers) and targets ``y [N]``, returns the **sum** over positions, and is differentiable
w.r.t. ``s`` only. An optional ``mask`` keyword (True = real token) lets callers pass padded
tensors; masked positions contribute exactly 0.

Names are imported on first use (PEP 562), so that reading the method registry, as the CLI does
at start-up, does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the submodule that defines it
_HOMES = {
    "atkd": "atkd", "atkd_with_stats": "atkd", "dkd_terms": "atkd",
    "gate_objective": "hybrid", "gate_target": "hybrid", "hybrid": "hybrid",
    "LOSSES": "registry", "METHODS": "registry", "HParam": "registry", "LossSpec": "registry",
    "get_spec": "registry", "validate_hparams": "registry",
    "DEFAULT_THRESHOLD": "thresholds", "parse_threshold": "thresholds",
    "self_evolution_kd": "self_evolution", "self_evolution_kd_stats": "self_evolution",
    "self_evolution_kd_with_stats": "self_evolution",
    "topk_to_logprobs": "topk",
    "word_kd": "word_kd", "word_kd_topk": "word_kd", "word_kd_topk_rows": "word_kd",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kdnmt.losses' has no attribute {name!r}")
    module = importlib.import_module(f"kdnmt.losses.{home}")
    # Bind every public name of that submodule at once: importing it made the package attribute
    # of its own name (``atkd``, ``hybrid``, ``word_kd``) the submodule, which the function of
    # the same name must replace, as the eager imports of this package used to do.
    for public, where in _HOMES.items():
        if where == home:
            globals()[public] = getattr(module, public)
    return globals()[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
