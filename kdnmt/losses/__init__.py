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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker sees (`X as X`: re-exported); at run time __getattr__
    # below imports each name on first use
    from kdnmt.losses.atkd import atkd as atkd
    from kdnmt.losses.atkd import atkd_with_stats as atkd_with_stats
    from kdnmt.losses.atkd import dkd_terms as dkd_terms
    from kdnmt.losses.hybrid import gate_objective as gate_objective
    from kdnmt.losses.hybrid import gate_target as gate_target
    from kdnmt.losses.hybrid import hybrid as hybrid
    from kdnmt.losses.registry import LOSSES as LOSSES
    from kdnmt.losses.registry import METHODS as METHODS
    from kdnmt.losses.registry import HParam as HParam
    from kdnmt.losses.registry import LossSpec as LossSpec
    from kdnmt.losses.registry import get_spec as get_spec
    from kdnmt.losses.registry import validate_hparams as validate_hparams
    from kdnmt.losses.self_evolution import self_evolution_kd as self_evolution_kd
    from kdnmt.losses.self_evolution import self_evolution_kd_stats as self_evolution_kd_stats
    from kdnmt.losses.self_evolution import self_evolution_kd_with_stats as self_evolution_kd_with_stats
    from kdnmt.losses.thresholds import DEFAULT_THRESHOLD as DEFAULT_THRESHOLD
    from kdnmt.losses.thresholds import parse_threshold as parse_threshold
    from kdnmt.losses.topk import topk_to_logprobs as topk_to_logprobs
    from kdnmt.losses.word_kd import word_kd as word_kd
    from kdnmt.losses.word_kd import word_kd_topk as word_kd_topk
    from kdnmt.losses.word_kd import word_kd_topk_rows as word_kd_topk_rows

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
