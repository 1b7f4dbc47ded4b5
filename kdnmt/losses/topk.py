"""Dense representation of a top-k teacher.

Storing a teacher's full distribution over V for every target token of a corpus is
prohibitive, so teachers are usually stored as their top-k ids and log-probs. The losses
take the dense form ``[N, V]``; this module builds it with ``-inf`` outside the kept ids and
renormalises over the kept ids, so that the result is again a proper distribution and every
KL term is well defined (``0 log 0 = 0`` for the dropped ids).
"""

from __future__ import annotations

import torch
from torch import Tensor

from kdnmt.losses._common import NEG_INF

PAD_ID = -1
"""Id used to pad rows that keep fewer than K ids; such slots are ignored."""


def topk_to_logprobs(ids: Tensor, logprobs: Tensor, vocab_size: int) -> Tensor:
    """Expand a top-k teacher ``(ids [N, K], logprobs [N, K])`` to dense log-probs ``[N, V]``.

    The kept log-probs are renormalised with ``logsumexp`` over each row (the top-k mass is
    below 1, and the contract defines a top-k teacher as the *renormalised* truncated
    distribution); every id that is not kept gets ``-inf``, i.e. probability exactly 0.

    Rows may keep fewer than K ids: pad ``ids`` with ``-1`` (``PAD_ID``); the matching
    ``logprobs`` entries are ignored whatever their value. A ``-inf`` log-prob also counts as
    not kept. Ids must be distinct within a row and lie in ``[0, vocab_size)``; every row must
    keep at least one id with a finite log-prob (otherwise it would not be a distribution).

    Raises:
        ValueError: on shape/dtype mismatch, out-of-range or duplicate ids, or an empty row.
    """
    if ids.dim() != 2 or logprobs.shape != ids.shape:
        raise ValueError(
            f"ids and logprobs must both be [N, K], got {tuple(ids.shape)} "
            f"and {tuple(logprobs.shape)}"
        )
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"ids must be an integer tensor, got {ids.dtype}")
    if not logprobs.dtype.is_floating_point:
        raise ValueError(f"logprobs must be a float tensor, got {logprobs.dtype}")
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    ids = ids.long()
    n = ids.shape[0]
    if ids.numel():
        if int(ids.max()) >= vocab_size or int(ids.min()) < PAD_ID:
            raise ValueError(
                f"ids must lie in [0, {vocab_size}) or be {PAD_ID} (padding), "
                f"got {int(ids.min())}..{int(ids.max())}"
            )
        kept_ids = ids.sort(dim=1).values
        dup = (kept_ids[:, 1:] == kept_ids[:, :-1]) & (kept_ids[:, 1:] >= 0)
        if bool(dup.any()):
            raise ValueError("ids must be distinct within each row")

    kept = ids >= 0
    lp = logprobs.masked_fill(~kept, NEG_INF)
    norm = torch.logsumexp(lp, dim=1, keepdim=True)
    if n and not bool(torch.isfinite(norm).all()):
        raise ValueError("every row must keep at least one id with a finite log-prob")
    lp = (lp - norm).masked_fill(~kept, NEG_INF)

    # Padded slots are scattered into an extra throw-away column V.
    out = torch.full((n, vocab_size + 1), NEG_INF, dtype=logprobs.dtype, device=logprobs.device)
    out.scatter_(1, ids.masked_fill(~kept, vocab_size), lp)
    return out[:, :vocab_size]
