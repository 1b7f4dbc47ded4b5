"""Tests of kdnmt.losses against slow, direct, loop-based implementations of the contract.

The references below loop over positions and vocabulary ids in float64 and never share code
with the implementation; their gradients come from autograd through the loops.
"""

from __future__ import annotations

import inspect
import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from kdnmt.losses import (
    DEFAULT_THRESHOLD,
    LOSSES,
    METHODS,
    atkd,
    atkd_with_stats,
    dkd_terms,
    gate_objective,
    gate_target,
    hybrid,
    parse_threshold,
    self_evolution_kd,
    self_evolution_kd_stats,
    self_evolution_kd_with_stats,
    topk_to_logprobs,
    validate_hparams,
    word_kd,
)

torch.set_num_threads(1)

N, V = 7, 11
INF = math.inf


# --------------------------------------------------------------------------- helpers


def make_batch(seed: int, n: int = N, v: int = V, dtype=torch.float64):
    """Student logits (leaf, requires grad), teacher log-probs, targets."""
    g = torch.Generator().manual_seed(seed)
    s = (torch.randn(n, v, generator=g, dtype=torch.float64) * 2).to(dtype).requires_grad_()
    t = torch.log_softmax(torch.randn(n, v, generator=g, dtype=torch.float64) * 2, dim=-1)
    y = torch.randint(0, v, (n,), generator=g)
    return s, t.to(dtype), y


def make_topk_teacher(seed: int, n: int = N, v: int = V, k: int = 3):
    """A top-k teacher; row 0 keeps the gold id, row 1 does not (p(y) = 0)."""
    s, t_full, y = make_batch(seed, n, v)
    ids = t_full.topk(k, dim=1).indices
    rest = [i for i in range(v) if i not in ids[1].tolist()]
    y = y.clone()
    y[0] = ids[0, 0]
    y[1] = rest[0]
    t = topk_to_logprobs(ids, t_full.gather(1, ids), v)
    return s, t, y


def grad_of(loss: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(loss, s, retain_graph=True)
    return g


def row_softmax(z, temperature=1.0):
    """softmax(z / T) of a list of scalar tensors (entries may be -inf), as a list."""
    zs = [zi / temperature for zi in z]
    m = max(float(zi.detach()) for zi in zs)
    ex = [torch.exp(zi - m) for zi in zs]
    total = sum(ex)
    return [e / total for e in ex]


def kl_ref(a, b):
    """sum_i a_i log(a_i / b_i) with 0 log 0 = 0 (loops; a_i, b_i scalar tensors)."""
    out = torch.zeros((), dtype=torch.float64)
    for ai, bi in zip(a, b, strict=True):
        if float(ai) > 0:
            out = out + ai * (torch.log(ai) - torch.log(bi))
    return out


def teacher_probs(t_row, temperature=1.0):
    return row_softmax(list(t_row), temperature)


def student_probs(s_row, temperature=1.0):
    return row_softmax(list(s_row), temperature)


def ref_word_kd(s, t, y, alpha, temperature, ls):
    n, v = s.shape
    total = torch.zeros((), dtype=torch.float64)
    for i in range(n):
        q = student_probs(s[i])
        ce = torch.zeros((), dtype=torch.float64)
        for j in range(v):
            target = (1 - ls) * (1.0 if j == int(y[i]) else 0.0) + ls / v
            ce = ce - target * torch.log(q[j])
        kd = kl_ref(teacher_probs(t[i], temperature), student_probs(s[i], temperature))
        total = total + (1 - alpha) * ce + alpha * temperature**2 * kd
    return total


def ref_selfevo_rows(s, t, y, lam, beta, threshold):
    """Per-position (loss, difficulty, hard) lists."""
    rows, diffs, hards = [], [], []
    for i in range(s.shape[0]):
        q = student_probs(s[i])
        p = teacher_probs(t[i])
        yt = [(1 - lam) * (1.0 if j == int(y[i]) else 0.0) + lam * p[j] for j in range(len(q))]
        d = kl_ref(yt, q)
        hard = float(d.detach()) > threshold
        if hard:
            q_hat = [beta * q[j] + (1 - beta) * yt[j] for j in range(len(q))]
            rows.append(kl_ref(yt, q_hat))
        else:
            rows.append(d)
        diffs.append(float(d.detach()))
        hards.append(hard)
    return rows, diffs, hards


def ref_dkd_terms(s, t, y, temperature):
    tkd, dkd, unc = [], [], []
    for i in range(s.shape[0]):
        p = teacher_probs(t[i], temperature)
        q = student_probs(s[i], temperature)
        g = int(y[i])
        pt, qt = p[g], q[g]
        tkd.append(kl_ref([pt, 1 - pt], [qt, 1 - qt]))
        if float(1 - pt) > 0:
            p_rest = [p[j] / (1 - pt) for j in range(len(p)) if j != g]
            q_rest = [q[j] / (1 - qt) for j in range(len(q)) if j != g]
            dkd.append(kl_ref(p_rest, q_rest))
        else:
            dkd.append(torch.zeros((), dtype=torch.float64))
        unc.append(1 - pt)
    return tkd, dkd, unc


def ref_atkd(s, t, y, alpha, hard_ratio, temperature):
    tkd, dkd, unc = ref_dkd_terms(s, t, y, temperature)
    n = len(tkd)
    k = math.ceil(Fraction(str(hard_ratio)) * n)
    order = sorted(range(n), key=lambda i: -float(unc[i]))
    hard, easy = order[:k], order[k:]
    loss = torch.zeros((), dtype=torch.float64)
    if easy:
        loss = loss + alpha * sum(dkd[i] for i in easy) / len(easy)
    if hard:
        loss = loss + (1 - alpha) * sum(tkd[i] + dkd[i] for i in hard) / len(hard)
    return n * loss


def middle_threshold(diffs):
    """A threshold halfway between two sorted difficulties: both groups non-empty, no ties."""
    d = sorted(diffs)
    k = len(d) // 2
    assert d[k - 1] < d[k]
    return (d[k - 1] + d[k]) / 2


def assert_close(a, b, tol=1e-9):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# --------------------------------------------------------------------------- top-k


def test_topk_to_logprobs_renormalises_over_kept_ids():
    ids = torch.tensor([[3, 0, 5], [1, 4, -1]])
    lps = torch.tensor([[-0.5, -1.5, -2.0], [-0.2, -3.0, 123.0]], dtype=torch.float64)
    out = topk_to_logprobs(ids, lps, 6)
    assert out.shape == (2, 6)
    for row in range(2):
        kept = [(int(i), float(lp)) for i, lp in zip(ids[row], lps[row], strict=True) if i >= 0]
        norm = math.log(sum(math.exp(lp) for _, lp in kept))
        for j in range(6):
            expected = dict(kept).get(j)
            if expected is None:
                assert out[row, j] == -INF
            else:
                assert out[row, j].item() == pytest.approx(expected - norm, abs=1e-12)
    assert_close(out.exp().sum(1), torch.ones(2, dtype=torch.float64))


def test_topk_to_logprobs_rejects_bad_input():
    lp = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="distinct"):
        topk_to_logprobs(torch.tensor([[2, 2]]), lp, 5)
    with pytest.raises(ValueError, match="lie in"):
        topk_to_logprobs(torch.tensor([[0, 5]]), lp, 5)
    with pytest.raises(ValueError, match="at least one"):
        topk_to_logprobs(torch.tensor([[-1, -1]]), lp, 5)


# --------------------------------------------------------------------------- word KD


@pytest.mark.parametrize(
    ("alpha", "temperature", "ls"),
    [(0.5, 1.0, 0.0), (0.3, 2.0, 0.1), (0.0, 1.5, 0.2), (1.0, 3.0, 0.1), (0.7, 0.5, 0.0)],
)
def test_word_kd_matches_reference(alpha, temperature, ls):
    s, t, y = make_batch(1)
    got = word_kd(s, t, y, alpha=alpha, temperature=temperature, label_smoothing=ls)
    ref = ref_word_kd(s, t, y, alpha, temperature, ls)
    assert_close(got, ref)
    assert_close(grad_of(got, s), grad_of(ref, s))


def test_word_kd_alpha_edges():
    s, t, y = make_batch(2)
    ce = word_kd(s, t, y, alpha=0.0, temperature=2.0, label_smoothing=0.1)
    onmt_criterion = torch.nn.CrossEntropyLoss(reduction="sum", label_smoothing=0.1)
    assert_close(ce, onmt_criterion(s, y))
    kd = word_kd(s, t, y, alpha=1.0, temperature=2.0, label_smoothing=0.1)
    kl = sum(kl_ref(teacher_probs(t[i], 2.0), student_probs(s[i], 2.0)) for i in range(s.shape[0]))
    assert_close(kd, 4.0 * kl)
    # alpha = 1 ignores the targets entirely
    assert_close(word_kd(s, t, (y + 1) % V, alpha=1.0, temperature=2.0), kd)


def test_word_kd_temperature_scaling():
    """At alpha=1: loss_T(s, t) = T^2 * loss_1(s / T, log_softmax(t / T))."""
    s, t, y = make_batch(3)
    temperature = 2.5
    got = word_kd(s, t, y, alpha=1.0, temperature=temperature)
    rescaled = word_kd(s / temperature, torch.log_softmax(t / temperature, -1), y, alpha=1.0)
    assert_close(got, temperature**2 * rescaled)
    assert not torch.allclose(got, word_kd(s, t, y, alpha=1.0))


def test_word_kd_float32_close_to_float64_reference():
    s, t, y = make_batch(4, dtype=torch.float32)
    got = word_kd(s, t, y, alpha=0.5, temperature=2.0, label_smoothing=0.1)
    assert got.dtype == torch.float32
    s64 = s.detach().double().requires_grad_()
    ref = ref_word_kd(s64, t.double(), y, 0.5, 2.0, 0.1)
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_of(got, s).double(), grad_of(ref, s64), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- self-evolution


@pytest.mark.parametrize(("lam", "beta"), [(0.5, 0.5), (0.3, 0.8), (0.0, 0.4), (1.0, 0.6)])
def test_self_evolution_matches_reference(lam, beta):
    s, t, y = make_batch(5, n=10)
    _, diffs, _ = ref_selfevo_rows(s.detach(), t, y, lam, beta, 0.0)
    threshold = middle_threshold(diffs)
    rows, _, hards = ref_selfevo_rows(s, t, y, lam, beta, threshold)
    ref = sum(rows)
    got, frac = self_evolution_kd_with_stats(s, t, y, lam=lam, beta=beta, threshold=threshold)
    assert 0 < sum(hards) < len(hards)
    assert frac == pytest.approx(sum(hards) / len(hards))
    assert_close(got, ref)
    assert_close(grad_of(got, s), grad_of(ref, s))
    plain = self_evolution_kd(s, t, y, lam=lam, beta=beta, threshold=threshold)
    assert_close(plain, got)


@pytest.mark.parametrize("q", [0.0, 0.3, 0.5, 0.9, 1.0])
def test_self_evolution_quantile_threshold_is_the_batch_quantile(q):
    """quantile:Q is the fixed threshold at the Q-quantile of the batch's difficulties (direct
    order statistic below), so a share of about 1 - Q of the tokens is hard."""
    s, t, y = make_batch(8, n=21)
    _, diffs, _ = ref_selfevo_rows(s.detach(), t, y, 0.5, 0.5, 0.0)
    ordered = sorted(diffs)
    position = q * (len(ordered) - 1)  # torch.quantile's linear interpolation
    low = int(math.floor(position))
    value = ordered[low] + (position - low) * (ordered[min(low + 1, len(ordered) - 1)]
                                               - ordered[low])
    got, stats = self_evolution_kd_stats(s, t, y, threshold=f"quantile:{q}")
    assert stats["threshold"] == pytest.approx(value)
    expected_hard = sum(d > value for d in diffs) / len(diffs)
    assert stats["hard_tokens"] == pytest.approx(expected_hard)
    assert abs(stats["hard_tokens"] - (1 - q)) <= 1 / len(diffs) + 1e-9
    rows, _, _ = ref_selfevo_rows(s, t, y, 0.5, 0.5, value)
    assert_close(got, sum(rows))


@pytest.mark.parametrize("bad", ["quantile:1.5", "quantile:-0.1", "quantile:abc", "quantile:",
                                 "often", -1.0, float("nan")])
def test_self_evolution_threshold_rejects(bad):
    with pytest.raises(ValueError, match="threshold"):
        parse_threshold(bad)
    with pytest.raises(ValueError, match="threshold"):
        validate_hparams("selfevo", {"threshold": bad})


def test_self_evolution_threshold_validation_keeps_both_forms():
    assert validate_hparams("selfevo", {"threshold": "quantile:0.7"})["threshold"] == "quantile:0.7"
    assert validate_hparams("selfevo", {"threshold": "0.25"})["threshold"] == 0.25
    assert validate_hparams("selfevo", {"threshold": 1})["threshold"] == 1.0


def test_self_evolution_lam_edges():
    s, t, y = make_batch(6)
    # lam = 0: y~ is one-hot, KL(y~ || q) = CE; beta = 1 makes q^ = q for hard tokens too.
    ce = F.cross_entropy(s, y, reduction="sum")
    assert_close(self_evolution_kd(s, t, y, lam=0.0, beta=1.0, threshold=0.0), ce)
    # lam = 1: y~ = p, the loss is plain forward KL to the teacher.
    kl = F.kl_div(torch.log_softmax(s, -1), t, log_target=True, reduction="sum")
    assert_close(self_evolution_kd(s, t, y, lam=1.0, beta=1.0, threshold=0.0), kl)


def test_self_evolution_beta_edges():
    s, t, y = make_batch(7, n=10)
    _, diffs, hards = ref_selfevo_rows(s.detach(), t, y, 0.5, 1.0, 0.0)
    threshold = middle_threshold(diffs)
    hard = torch.tensor(diffs) > threshold
    # beta = 1: q^ = q, so the split does not matter: sum of difficulties.
    got1 = self_evolution_kd(s, t, y, lam=0.5, beta=1.0, threshold=threshold)
    assert_close(got1, torch.tensor(sum(diffs), dtype=torch.float64))
    # beta = 0: q^ = y~, hard tokens contribute 0 and get no gradient.
    got0 = self_evolution_kd(s, t, y, lam=0.5, beta=0.0, threshold=threshold)
    easy_sum = sum(d for d, h in zip(diffs, hard.tolist(), strict=True) if not h)
    assert_close(got0, torch.tensor(easy_sum, dtype=torch.float64))
    g = grad_of(got0, s)
    assert torch.isfinite(g).all()
    assert (g[hard] == 0).all() and (g[~hard].abs().sum(1) > 0).all()


def test_self_evolution_default_threshold_is_ln2_and_splits_on_gold_prob():
    """lam = 0: hard <=> -log q(y) > ln 2 <=> q(y) < 1/2."""
    assert DEFAULT_THRESHOLD == pytest.approx(math.log(2))
    s = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    t = torch.log_softmax(torch.zeros(2, 3), -1)
    y = torch.tensor([0, 0])
    _, frac = self_evolution_kd_with_stats(s, t, y, lam=0.0)
    assert frac == 0.5  # q(y) = 0.91 is easy, q(y) = 1/3 is hard


def test_selfevo_hard_tokens_starve_a_cold_student():
    """Why selfevo degenerates from a random student (docs/distill.md): for a hard token far
    from its target, the proxy q^ ~ (1 - beta) y~ makes the loss nearly constant, and its
    gradient on the logits scales with q itself (1 / V here), hundreds of times weaker than
    cross-entropy's at V = 8,000 (1/600 with this teacher); the same token treated as easy gets
    the full gradient of KL(y~ || q)."""
    torch.manual_seed(0)
    vocab = 8000
    s = torch.zeros(1, vocab, requires_grad=True)  # a cold student: uniform q = 1 / V
    t = torch.log_softmax(torch.randn(1, vocab) * 3, -1)  # a confident teacher
    y = torch.tensor([int(t.argmax())])
    hard_loss, frac = self_evolution_kd_with_stats(s, t, y, lam=0.5, beta=0.5)
    assert frac == 1.0
    assert 0.4 < hard_loss.item() <= math.log(2) + 1e-6  # at most -log(1 - beta)
    (g_hard,) = torch.autograd.grad(hard_loss, s)
    easy_loss = self_evolution_kd(s, t, y, lam=0.5, beta=0.5, threshold=1e9)
    (g_easy,) = torch.autograd.grad(easy_loss, s)
    (g_ce,) = torch.autograd.grad(F.cross_entropy(s, y, reduction="sum"), s)
    ratio = float(g_hard.norm() / g_ce.norm())
    assert ratio < 0.01, ratio
    assert float(g_easy.norm() / g_ce.norm()) > 0.3


# --------------------------------------------------------------------------- ATKD


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_dkd_terms_match_reference_and_identity(temperature):
    s, t, y = make_batch(8)
    tkd, dkd, unc = dkd_terms(s, t, y, temperature=temperature)
    r_tkd, r_dkd, r_unc = (torch.stack(x) for x in ref_dkd_terms(s, t, y, temperature))
    assert_close(tkd, r_tkd)
    assert_close(dkd, r_dkd)
    assert_close(unc, r_unc)
    assert_close(grad_of(tkd.sum() + 2 * dkd.sum(), s), grad_of(r_tkd.sum() + 2 * r_dkd.sum(), s))
    log_p = torch.log_softmax(t / temperature, -1)
    log_q = torch.log_softmax(s / temperature, -1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    assert_close(kl, tkd + unc * dkd)


def test_dkd_identity_with_topk_and_certain_teacher():
    s, t, y = make_topk_teacher(9)
    t = t.clone()
    t[2] = -INF
    t[2, y[2]] = 0.0  # teacher certain: p^t = 1, DKD's renormalisation is 0/0
    tkd, dkd, unc = dkd_terms(s, t, y, temperature=1.5)
    assert unc[2] == 0 and dkd[2] == 0
    assert unc[1] == 1  # gold id outside the top-k support
    log_q = torch.log_softmax(s / 1.5, -1)
    log_p = torch.log_softmax(t / 1.5, -1)
    p = log_p.exp()
    kl = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)
    assert_close(kl, tkd + unc * dkd)
    g = grad_of(tkd.sum() + dkd.sum(), s)
    assert torch.isfinite(g).all()
    r_tkd, r_dkd, _ = (torch.stack(x) for x in ref_dkd_terms(s, t, y, 1.5))
    assert_close(tkd, r_tkd)
    assert_close(dkd, r_dkd)


@pytest.mark.parametrize(
    ("alpha", "hard_ratio", "temperature"),
    [
        (0.2, 0.5, 1.0),
        (0.6, 0.3, 2.0),
        (0.0, 0.5, 1.0),
        (1.0, 0.5, 1.0),
        (0.2, 1.0, 1.0),
        (0.5, 0.1, 1.0),
    ],
)
def test_atkd_matches_reference(alpha, hard_ratio, temperature):
    s, t, y = make_batch(10, n=10)
    got = atkd(s, t, y, alpha=alpha, hard_ratio=hard_ratio, temperature=temperature)
    ref = ref_atkd(s, t, y, alpha, hard_ratio, temperature)
    assert_close(got, ref)
    assert_close(grad_of(got, s), grad_of(ref, s))


def test_atkd_alpha_edges_select_groups():
    # 0.28 * 25 == 7.000000000000001 in floating point: the hard group must still be 7 = ceil
    # of the exact product, not 8.
    s, t, y = make_batch(11, n=25, v=5)
    _, _, unc = dkd_terms(s, t, y)
    hard = torch.zeros(25, dtype=torch.bool)
    hard[unc.argsort(descending=True)[:7]] = True
    g_easy = grad_of(atkd(s, t, y, alpha=1.0, hard_ratio=0.28), s)
    assert (g_easy[hard] == 0).all() and (g_easy[~hard].abs().sum(1) > 0).all()
    g_hard = grad_of(atkd(s, t, y, alpha=0.0, hard_ratio=0.28), s)
    assert (g_hard[~hard] == 0).all() and (g_hard[hard].abs().sum(1) > 0).all()


def test_atkd_stats_are_batch_means():
    s, t, y = make_batch(12)
    loss, stats = atkd_with_stats(s, t, y, alpha=0.3)
    tkd, dkd, unc = dkd_terms(s, t, y)
    assert_close(loss, atkd(s, t, y, alpha=0.3))
    assert stats["unc"] == pytest.approx(unc.mean().item())
    assert stats["tkd"] == pytest.approx(tkd.mean().item())
    assert stats["dkd"] == pytest.approx(dkd.mean().item())


# --------------------------------------------------------------------------- top-k teachers


def test_losses_with_topk_teacher_match_references_and_are_finite():
    s, t, y = make_topk_teacher(13)
    assert torch.isinf(t).any()
    cases = [
        (
            word_kd(s, t, y, alpha=0.6, temperature=2.0, label_smoothing=0.1),
            ref_word_kd(s, t, y, 0.6, 2.0, 0.1),
        ),
        (
            self_evolution_kd(s, t, y, lam=0.5, beta=0.5, threshold=1.0),
            sum(ref_selfevo_rows(s, t, y, 0.5, 0.5, 1.0)[0]),
        ),
        (
            atkd(s, t, y, alpha=0.2, hard_ratio=0.5, temperature=2.0),
            ref_atkd(s, t, y, 0.2, 0.5, 2.0),
        ),
    ]
    for got, ref in cases:
        assert torch.isfinite(got)
        assert_close(got, ref)
        g = grad_of(got, s)
        assert torch.isfinite(g).all()
        assert_close(g, grad_of(ref, s))


def test_self_evolution_topk_beta_zero_has_finite_gradients():
    """beta = 0 with zeros in y~ is where a naive logaddexp(-inf, -inf) backward gives NaN."""
    s, t, y = make_topk_teacher(14)
    loss = self_evolution_kd(s, t, y, lam=0.5, beta=0.0, threshold=0.0)
    assert loss.item() == 0.0  # every token hard, q^ = y~
    assert torch.isfinite(grad_of(loss, s)).all()


# --------------------------------------------------------------------------- padding


def padded(s, t, y, seed=15):
    """Insert padding rows with garbage (NaN teacher rows, huge logits); return mask too."""
    n, v = s.shape
    mask = torch.ones(n + 3, dtype=torch.bool)
    mask[[0, 3, n + 2]] = False
    g = torch.Generator().manual_seed(seed)
    sp = torch.randn(n + 3, v, generator=g, dtype=s.dtype) * 1e4
    tp = torch.full((n + 3, v), math.nan, dtype=t.dtype)
    yp = torch.zeros(n + 3, dtype=y.dtype)
    sp[mask], tp[mask], yp[mask] = s.detach(), t, y
    return sp.requires_grad_(), tp, yp, mask


LOSS_CALLS = {
    "word": lambda s, t, y, m: word_kd(
        s, t, y, alpha=0.4, temperature=2.0, label_smoothing=0.1, mask=m
    ),
    "selfevo": lambda s, t, y, m: self_evolution_kd(s, t, y, threshold=1.0, mask=m),
    "atkd": lambda s, t, y, m: atkd(s, t, y, hard_ratio=0.4, temperature=1.5, mask=m),
    "dkd": lambda s, t, y, m: sum(x.sum() for x in dkd_terms(s, t, y, temperature=2.0, mask=m)),
}


@pytest.mark.parametrize("name", sorted(LOSS_CALLS))
def test_teacher_logits_give_the_loss_of_its_log_probs(name):
    """Every loss renormalises its teacher, so the online teacher may pass logits (one
    log-softmax over [N, V] fewer per step, kdnmt.onmt_bridge.kd_loss._online_logits)."""
    fn = LOSS_CALLS[name]
    s, t, y = make_batch(16)
    logits = t + torch.randn(t.shape[0], 1, dtype=t.dtype) * 5  # a per-row shift
    assert_close(fn(s, logits, y, None), fn(s, t, y, None))


@pytest.mark.parametrize("name", sorted(LOSS_CALLS))
def test_padding_never_contributes(name):
    fn = LOSS_CALLS[name]
    s, t, y = make_batch(16)
    sp, tp, yp, mask = padded(s, t, y)
    got = fn(sp, tp, yp, mask)
    ref = fn(s, t, y, None)
    assert_close(got, ref)
    g = grad_of(got, sp)
    assert (g[~mask] == 0).all()
    assert_close(g[mask], grad_of(ref, s))


def test_all_padding_gives_zero_with_a_graph():
    s, t, y = make_batch(17)
    none = torch.zeros(N, dtype=torch.bool)
    for fn in LOSS_CALLS.values():
        loss = fn(s, t, y, none)
        assert loss.item() == 0.0
        assert (grad_of(loss, s) == 0).all()
    assert self_evolution_kd_with_stats(s, t, y, mask=none)[1] == 0.0


# --------------------------------------------------------------------------- teacher safety


@pytest.mark.parametrize("name", sorted(LOSS_CALLS))
def test_teacher_unchanged_and_gets_no_gradient(name):
    s, t, y = make_batch(18)
    t = t.clone().requires_grad_()
    before = t.detach().clone()
    LOSS_CALLS[name](s, t, y, None).backward()
    assert t.grad is None
    assert torch.equal(t.detach(), before)
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_shape_errors():
    s, t, y = make_batch(19)
    with pytest.raises(ValueError, match="teacher"):
        word_kd(s, t[:, :-1], y)
    with pytest.raises(ValueError, match="targets"):
        atkd(s, t, y[:-1])
    with pytest.raises(ValueError, match="mask"):
        self_evolution_kd(s, t, y, mask=torch.ones(N))
    with pytest.raises(ValueError, match="target ids"):
        word_kd(s, t, torch.full((N,), V))


# --------------------------------------------------------------------------- hybrid


def test_hybrid_value_and_gradients_with_the_gate_detached():
    g = torch.Generator().manual_seed(20)
    tok = torch.rand(5, generator=g, dtype=torch.float64, requires_grad=True)
    sent = torch.rand(5, generator=g, dtype=torch.float64, requires_grad=True)
    gate = torch.rand(5, generator=g, dtype=torch.float64, requires_grad=True)
    got = hybrid(tok, sent, gate)
    ref = sum(gate[b].detach() * tok[b] + (1 - gate[b].detach()) * sent[b] for b in range(5))
    assert_close(got, ref)
    for x in (tok, sent):
        assert_close(grad_of(got, x), grad_of(ref, x))
    assert_close(grad_of(got, tok), gate.detach())
    # The student's objective does not move the gate.
    (none,) = torch.autograd.grad(got, gate, allow_unused=True)
    assert none is None


def direct_gate_objective(gate, a, c, prior, tau):
    """J = sum_b g a + (1 - g) c + tau KL(Bern(g) || Bern(prior)), one sentence at a time."""
    total = 0.0
    for b in range(gate.shape[0]):
        g_b = gate[b]
        kl = g_b * torch.log(g_b / prior) + (1 - g_b) * torch.log((1 - g_b) / (1 - prior))
        total = total + g_b * float(a[b]) + (1 - g_b) * float(c[b]) + tau * kl
    return total


@pytest.mark.parametrize("prior,tau", [(0.5, 1.0), (0.2, 0.3), (0.9, 4.0)])
def test_gate_objective_value_and_gradient_against_direct(prior, tau):
    g = torch.Generator().manual_seed(21)
    gate = (torch.rand(6, generator=g, dtype=torch.float64) * 0.98 + 0.01).requires_grad_()
    a = (torch.rand(6, generator=g, dtype=torch.float64) * 5).requires_grad_()
    c = (torch.rand(6, generator=g, dtype=torch.float64) * 5).requires_grad_()
    got = gate_objective(gate, a, c, prior=prior, tau=tau)
    ref = direct_gate_objective(gate, a, c, prior, tau)
    assert_close(got, ref)
    assert_close(grad_of(got, gate), grad_of(ref, gate))
    # The rates are detached: no gradient reaches the student's losses through the gate.
    assert torch.autograd.grad(got, (a, c), allow_unused=True) == (None, None)


@pytest.mark.slow
@pytest.mark.parametrize("prior,tau", [(0.5, 1.0), (0.3, 0.7), (0.8, 3.0)])
def test_gate_objective_minimiser_is_gate_target_and_interior(prior, tau):
    g = torch.Generator().manual_seed(22)
    a = torch.rand(8, generator=g, dtype=torch.float64) * 3
    c = torch.rand(8, generator=g, dtype=torch.float64) * 3
    target = gate_target(a, c, prior=prior, tau=tau)
    logit_prior = math.log(prior / (1 - prior))
    for b in range(8):  # the closed form, written out
        expected = 1 / (1 + math.exp(-(logit_prior + (float(c[b]) - float(a[b])) / tau)))
        assert abs(float(target[b]) - expected) < 1e-12
    # Gradient descent on the gate's logit, from a saturated start, ends at the target.
    logit = torch.full((8,), 6.0, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([logit], lr=0.5)
    for _ in range(3000):
        optimizer.zero_grad()
        gate_objective(torch.sigmoid(logit), a, c, prior=prior, tau=tau).backward()
        optimizer.step()
    final = torch.sigmoid(logit).detach()
    assert_close(final, target, tol=1e-6)
    assert bool(((final > 0.0) & (final < 1.0)).all())
    # The gradient of J vanishes at the target and J is larger anywhere else.
    at = target.clone().requires_grad_()
    assert_close(grad_of(gate_objective(at, a, c, prior=prior, tau=tau), at),
                 torch.zeros(8, dtype=torch.float64), tol=1e-9)
    for shift in (-0.05, 0.05):
        moved = (target + shift).clamp(1e-6, 1 - 1e-6)
        assert float(gate_objective(moved, a, c, prior=prior, tau=tau)) > float(
            gate_objective(target, a, c, prior=prior, tau=tau))


def test_gate_target_tends_to_the_literal_choice_as_tau_shrinks():
    a = torch.tensor([1.0, 3.0], dtype=torch.float64)
    c = torch.tensor([3.0, 1.0], dtype=torch.float64)
    assert_close(gate_target(a, c, tau=1e-3), torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert_close(gate_target(a, a, prior=0.3), torch.tensor([0.3, 0.3], dtype=torch.float64))


@pytest.mark.parametrize("kwargs,needle", [({"prior": 0.0}, "prior"), ({"prior": 1.0}, "prior"),
                                           ({"tau": 0.0}, "tau"), ({"tau": -1.0}, "tau")])
def test_gate_objective_rejects_bad_prior_and_tau(kwargs, needle):
    x = torch.full((3,), 0.5)
    with pytest.raises(ValueError, match=needle):
        gate_objective(x, x, x, **kwargs)
    with pytest.raises(ValueError, match=needle):
        gate_target(x, x, **kwargs)


def test_hybrid_rejects_bad_shapes():
    a = torch.zeros(4)
    with pytest.raises(ValueError, match=r"gate \(3,\)"):
        hybrid(a, a, torch.zeros(3))
    with pytest.raises(ValueError, match="same length"):
        hybrid(torch.zeros(4, 1), torch.zeros(4, 1), torch.zeros(4, 1))


# --------------------------------------------------------------------------- registry


def test_registry_defaults_match_function_signatures():
    assert list(METHODS) == ["ce", "word", "seq", "seqinter", "seq+word", "selfevo", "atkd",
                             "hybrid"]
    assert set(LOSSES) == {"word", "seq+word", "selfevo", "atkd", "hybrid"}
    for name, spec in LOSSES.items():
        for function in (spec.function, spec.stats_function, spec.topk_function):
            if function is None:
                continue
            params = inspect.signature(function).parameters
            for hp in spec.hparams:
                assert params[hp.name].default == hp.default, (name, hp.name, function)
                assert hp.contains(hp.default)
        assert validate_hparams(name, {}) == spec.defaults()
    for name, spec in METHODS.items():
        assert spec.data in ("references", "pseudo-targets", "seqinter"), name
        assert spec.soft_along in (None, "references", "pseudo-targets"), name
        assert (spec.loss is None) == (spec.soft_along is None) == (spec.trainer == "ce"), name
        assert spec.needs_teacher == (name != "ce")


def test_registry_stats_are_what_the_stats_functions_return():
    s, t, y = make_batch(30)
    for spec in METHODS.values():
        if spec.stats_function is not None:
            _, figures = spec.stats_function(s, t, y)
            assert set(spec.stats) <= set(figures), spec.name


@pytest.mark.slow
def test_reading_the_registry_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; from kdnmt.losses import METHODS, validate_hparams; "
            "validate_hparams('selfevo', {'threshold': 'quantile:0.5'}); "
            "assert METHODS['word'].loss == 'word_kd'; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_type_checkers_see_every_lazy_name_from_its_home():
    """kdnmt.losses binds its names on first use (__getattr__); its TYPE_CHECKING imports are
    what mypy sees instead, and must name the same names from the same submodules."""
    import ast

    import kdnmt.losses as package

    tree = ast.parse(inspect.getsource(package))
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and ast.unparse(node.test) == "TYPE_CHECKING")
    seen = {alias.name: node.module.removeprefix("kdnmt.losses.") for node in block.body
            if isinstance(node, ast.ImportFrom) and node.module for alias in node.names}
    assert seen == package._HOMES


def test_validate_hparams_completes_and_converts():
    assert validate_hparams("word", {"alpha": 1, "temperature": "2.5"}) == {
        "alpha": 1.0,
        "temperature": 2.5,
        "label_smoothing": 0.0,
    }
    assert validate_hparams("atkd", {"hard_ratio": 1.0})["hard_ratio"] == 1.0
    assert validate_hparams("selfevo", {"lam": 0, "beta": 1})["beta"] == 1.0


@pytest.mark.parametrize(
    ("method", "hparams", "message"),
    [
        ("word", {"alpha": 1.5}, "alpha=1.5 is out of range: expected 0 <= alpha <= 1"),
        ("word", {"temperature": 0}, "temperature=0 is out of range: expected temperature > 0"),
        (
            "word",
            {"label_smoothing": -0.1},
            "label_smoothing=-0.1 is out of range: expected 0 <= label_smoothing <= 1",
        ),
        ("selfevo", {"lam": 2}, "lam=2 is out of range: expected 0 <= lam <= 1"),
        ("selfevo", {"beta": -1}, "beta=-1 is out of range: expected 0 <= beta <= 1"),
        ("selfevo", {"threshold": -0.5},
         "threshold=-0.5 is out of range: expected threshold >= 0 (nats) or quantile:Q"),
        ("atkd", {"hard_ratio": 0.0}, "hard_ratio=0 is out of range: expected 0 < hard_ratio <= 1"),
        ("atkd", {"alpha": math.nan}, "alpha=nan is out of range: expected 0 <= alpha <= 1"),
        (
            "atkd",
            {"lam": 0.5},
            "unknown hyper-parameter 'lam' for method 'atkd': "
            "expected one of alpha, hard_ratio, temperature",
        ),
        ("word", {"alpha": True}, "alpha=True is not a number"),
        ("word", {"alpha": "high"}, "alpha='high' is not a number"),
        ("seqkd", {}, "unknown KD method 'seqkd': expected one of ce, word, seq, seqinter, "
                      "seq+word, selfevo, atkd, hybrid"),
    ],
)
def test_validate_hparams_messages(method, hparams, message):
    with pytest.raises(ValueError) as info:
        validate_hparams(method, hparams)
    assert str(info.value) == message


@pytest.mark.parametrize("alpha, temperature", [(0.5, 1.0), (1.0, 2.0), (0.0, 1.0), (0.3, 0.5)])
def test_word_kd_topk_equals_dense_word_kd(alpha: float, temperature: float) -> None:
    """The sparse top-k form gives the dense form's value and gradient."""
    from kdnmt.losses import topk_to_logprobs, word_kd_topk

    torch.manual_seed(3)
    n, v, k = 9, 30, 5
    s = torch.randn(n, v, requires_grad=True)
    full = torch.log_softmax(torch.randn(n, v), -1)
    lp, ids = full.topk(k, dim=-1)
    ids[2, -2:] = -1  # a row that keeps fewer ids
    y = torch.randint(0, v, (n,))
    dense = word_kd(s, topk_to_logprobs(ids, lp, v), y, alpha=alpha, temperature=temperature,
                    label_smoothing=0.1)
    (g_dense,) = torch.autograd.grad(dense, s)
    sparse = word_kd_topk(s, ids, lp, y, alpha=alpha, temperature=temperature,
                          label_smoothing=0.1)
    (g_sparse,) = torch.autograd.grad(sparse, s)
    assert torch.allclose(dense, sparse, atol=1e-5)
    assert torch.allclose(g_dense, g_sparse, atol=1e-6)


def test_word_kd_topk_rows_sum_to_the_loss_per_position() -> None:
    from kdnmt.losses import word_kd_topk, word_kd_topk_rows

    torch.manual_seed(5)
    n, v, k = 7, 20, 4
    s = torch.randn(n, v)
    lp, ids = torch.log_softmax(torch.randn(n, v), -1).topk(k, dim=-1)
    y = torch.randint(0, v, (n,))
    kwargs = {"alpha": 0.4, "temperature": 1.5, "label_smoothing": 0.1}
    rows = word_kd_topk_rows(s, ids, lp, y, **kwargs)
    assert rows.shape == (n,)
    assert torch.allclose(rows.sum(), word_kd_topk(s, ids, lp, y, **kwargs), atol=1e-5)
    for i in (0, 3):  # each row is the loss of that position alone
        alone = word_kd_topk(s[i:i + 1], ids[i:i + 1], lp[i:i + 1], y[i:i + 1], **kwargs)
        assert torch.allclose(rows[i], alone, atol=1e-5)
