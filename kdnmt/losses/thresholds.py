"""Self-Evolution KD's hard-token threshold: a fixed number of nats or a per-batch quantile.

Kept free of torch so that the method registry (and with it the CLI) can validate a threshold
without importing it.
"""

from __future__ import annotations

import math

DEFAULT_THRESHOLD = math.log(2.0)
"""Default difficulty threshold in nats: ``ln 2 ~= 0.693``.

With ``lam = 0`` the difficulty is ``KL(onehot(y) || q) = -log q(y)``, so ``d > ln 2`` means
exactly ``q(y) < 1/2``: the student gives the gold token less than half its mass and is not
guaranteed to rank it first. With the default ``lam = 0.5`` and a confident teacher the same
value still separates roughly "gold token below one half" from "gold token well predicted"
(e.g. teacher ``p(y)=0.9``, student equal to the teacher: ``d ~= 0.02``; student ``q(y)=0.3``:
``d ~= 1``). The paper splits tokens by a learning-difficulty threshold but its setting
(LLM students) differs from ours; ``ln 2`` is scale-free (independent of V and of the
corpus) and gives a hard fraction that starts near 1 (a fresh student has ``d ~= log V``)
and shrinks as training converges. The hard fraction is logged, so the value can be tuned.
"""


QUANTILE_PREFIX = "quantile:"


def parse_threshold(threshold: float | str) -> tuple[str, float]:
    """``("nats", value)`` for a fixed threshold, ``("quantile", Q)`` for ``"quantile:Q"``.

    Why a dynamic threshold: a fixed one in nats makes nearly every token hard for a student
    far from its targets and nearly none for a converged one; the Q-quantile of the batch's
    difficulties keeps a share ``1 - Q`` of tokens hard at every stage (the paper leaves the
    choice open). Raises ``ValueError`` with a one-line message for anything else.
    """
    if isinstance(threshold, str):
        text = threshold.strip()
        if text.startswith(QUANTILE_PREFIX):
            try:
                q = float(text[len(QUANTILE_PREFIX):])
            except ValueError:
                raise ValueError(f"threshold={threshold!r} is not quantile:Q with a number Q"
                                 ) from None
            if not (math.isfinite(q) and 0.0 <= q <= 1.0):
                raise ValueError(f"threshold={threshold!r} is out of range: expected "
                                 "quantile:Q with 0 <= Q <= 1")
            return "quantile", q
        try:
            threshold = float(text)
        except ValueError:
            raise ValueError(f"threshold={threshold!r} is neither a number of nats nor "
                             "quantile:Q") from None
    if isinstance(threshold, bool) or not math.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold={threshold!r} is out of range: expected threshold >= 0 "
                         "(nats) or quantile:Q")
    return "nats", float(threshold)
