"""07 RLOO and GRPO: ``rloo_advantages``, ``group_advantages`` and ``grpo_loss`` (per-sequence mean)."""

from __future__ import annotations

import torch

from ... import losses as L
from .harness import _expect, _Fail, _first, _garbage, _grad_case, _mask, _randn, exercise

SET = "07_rloo_grpo"

_SHAPE = "Advantages have the shape of the rewards: (P, k), one per completion."


def _rewards(P, k, seed, scale=1.0):
    return _randn(P, k, seed=seed, scale=scale)


def _group_mistakes(r, eps=None):
    """Typical mistakes of a group baseline, for rewards ``r`` of shape (P, k)."""
    k = r.shape[1]
    mean = r.mean(1, keepdim=True)
    loo = r - (r.sum(1, keepdim=True) - r) / (k - 1)
    out = [
        (lambda: r - mean, "your baseline is the group mean INCLUDING the completion itself: leave it out, "
                           "b_i = (sum of the group - r_i) / (k - 1); the plain mean shrinks A by (k-1)/k "
                           "and depends on r_i."),
        (lambda: r - r.mean(), "you took the mean over the whole batch: the baseline is per prompt, over "
                               "the k completions of the same row (dim=1)."),
        (lambda: r - r.mean(0, keepdim=True), "you averaged over dim 0 (the prompts): a group is one ROW "
                                              "of the (P, k) matrix, average over dim=1."),
        (lambda: r - (r.sum(1, keepdim=True) - r) / k, "the leave-one-out mean divides the other k - 1 "
                                                      "rewards by k - 1, not by k."),
        (lambda: (r.sum(1, keepdim=True) - r) / (k - 1) - r, "wrong sign: A_i = r_i - baseline."),
    ]
    if eps is not None:
        out += [
            (lambda: (r - mean) / (r.std() + eps), "you divided by the std of the whole batch: GRPO "
                                                   "normalises by each group's own std (dim=1)."),
            (lambda: (r - r.mean()) / (r.std() + eps), "that is whitening over the whole batch: GRPO "
                                                       "uses each group's mean and std (dim=1)."),
            (lambda: (r - mean) / (r.std(1, unbiased=False, keepdim=True) + eps),
             "you used the biased std (dividing by k): use the unbiased one, torch.std(..., dim=1) "
             "(unbiased=True, as TRL does)."),
            (lambda: loo / (r.std(1, keepdim=True) + eps), "you used the leave-one-out baseline: GRPO "
                                                           "subtracts the plain group mean."),
            (lambda: r - mean, "you did not divide by the group's std (that is Dr. GRPO, not GRPO): "
                               "A = (r - mean) / (std + eps)."),
            (lambda: (r - mean) / r.std(1, keepdim=True), "eps is missing: divide by (std + eps)."),
        ]
    return out


_TIES = ("A group whose k rewards are all equal must get advantage 0 (a prompt that every sample "
         "solves, or none does, teaches nothing). In float32 its mean is not exactly its value, and GRPO "
         "divides that rounding error by (0 + eps): set those groups to 0 explicitly, torch.where(tied, 0, A) "
         "with tied = (r == r[:, :1]).all(1, keepdim=True).")


def _adv_case(fn, ref, r, args=(), ties=False, eps=None):
    def run():
        want = ref(r)
        got = fn(r.clone(), *args)
        if isinstance(got, torch.Tensor) and got.requires_grad:
            raise _Fail("the advantages carry a gradient: they are constants of the loss; return them "
                        "detached (or compute them under torch.no_grad()).")
        if ties and isinstance(got, torch.Tensor) and got.shape == want.shape:
            tied_rows = got.detach()[(r == r[:, :1]).all(1)]
            if not torch.isfinite(tied_rows).all():
                raise _Fail("NaN or inf in a tied group: its std is 0; divide by (std + eps). " + _TIES)
            if (tied_rows.abs() > 1e-6).any():
                raise _Fail(_TIES)
        _expect(got, want, "the advantage matrix", _group_mistakes(r, eps), _SHAPE,
                nonfinite="NaN or inf: a tied group has std 0; divide by (std + eps), and give tied groups 0.")
    return run


def _detached_case(fn, args=()):
    def run():
        r = _rewards(3, 4, seed=720).requires_grad_(True)
        got = fn(r, *args)
        if isinstance(got, torch.Tensor) and got.requires_grad:
            raise _Fail("the advantages carry a gradient back into the rewards: detach them "
                        "(rewards.detach()); an advantage is a constant weight of log pi.")
    return run


@exercise(SET, "rloo_advantages")
def _rloo_cases(fn):
    ref = L.rloo_advantages
    tied = torch.tensor([[0.7] * 8, [0.1, 0.5, 0.3, 0.9, 0.2, 0.4, 0.8, 0.6], [-1.0] * 8])
    return [
        ("4 prompts x k = 4", _adv_case(fn, ref, _rewards(4, 4, seed=700))),
        ("k = 2: A = +-(r1 - r2)", _adv_case(fn, ref, _rewards(5, 2, seed=701))),
        ("one prompt, k = 8, rewards on another scale", _adv_case(fn, ref, _rewards(1, 8, seed=702, scale=30) + 100)),
        ("tied groups: exactly 0, no NaN", _adv_case(fn, ref, tied, ties=True)),
        ("no gradient into the rewards", _detached_case(fn)),
    ]


@exercise(SET, "group_advantages")
def _group_cases(fn):
    eps = 1e-4

    def ref(r):
        return L.group_advantages(r, "std", eps)

    tied = torch.tensor([[0.7] * 8, [0.1, 0.5, 0.3, 0.9, 0.2, 0.4, 0.8, 0.6], [-1.0] * 8])
    return [
        ("4 prompts x k = 4", _adv_case(fn, ref, _rewards(4, 4, seed=710), (eps,), eps=eps)),
        ("groups of very different spread",
         _adv_case(fn, ref, _rewards(3, 6, seed=711) * torch.tensor([[0.01], [1.0], [10.0]]), (eps,), eps=eps)),
        ("k = 2", _adv_case(fn, ref, _rewards(5, 2, seed=712), (eps,), eps=eps)),
        ("tied groups: exactly 0, no NaN", _adv_case(fn, ref, tied, (eps,), ties=True, eps=eps)),
        ("no gradient into the rewards", _detached_case(fn, (eps,))),
    ]


def _grpo_ref(lp, old, ref_lp, adv, m, eps, beta):
    return L.grpo_loss(lp, old, ref_lp, adv, m, eps, beta, "sequence_mean")[0]


def _grpo_variant(lp, old, ref_lp, adv, m, eps, beta, kind):
    """Typical mistakes in the GRPO loss (per-sequence mean of per-token PPO-clip + beta * k3)."""
    valid = m.bool()
    z = torch.zeros_like(lp)
    ratio = torch.exp(torch.where(valid, (old - lp) if kind == "ratio_inv" else (lp - old), z))
    a = adv[:, None]
    clipped = torch.clamp(ratio, 1 - eps, 1 + eps)
    pg = {"noclip": -ratio * a, "sign": torch.minimum(ratio * a, clipped * a)}.get(
        kind, -torch.minimum(ratio * a, clipped * a))
    u = torch.where(valid, ref_lp - lp, z)
    kl = {"k3_inverted": torch.expm1(-u) + u, "k1": -u}.get(kind, torch.expm1(u) - u)
    per_tok = pg + {"no_beta": 1.0, "kl_minus": -beta, "no_kl": 0.0}.get(kind, beta) * kl
    per_tok = torch.where(valid, per_tok, z) if kind != "nomask" else per_tok
    if kind == "nomask":
        return per_tok.mean(1).mean()
    if kind == "token_mean":
        return per_tok.sum() / m.sum()
    if kind == "batch_first":
        return (per_tok.sum(0) / m.sum(0).clamp(min=1)).mean()
    if kind == "numel":
        return (per_tok.sum(1) / m.shape[1]).mean()
    if kind == "sum":
        return per_tok.sum(1).mean()
    return (per_tok.sum(1) / m.sum(1)).mean()


@exercise(SET, "grpo_loss")
def _grpo_cases(fn):
    def mistakes(*x):
        v = lambda kind: (lambda: _grpo_variant(*x, kind))  # noqa: E731
        return [
            (v("k3_inverted"), "k3 with the ratio inverted: use u = log pi_ref - log pi (ref_logprobs - logprobs), "
                               "k3 = exp(u) - u - 1; with u the other way round it estimates KL(pi_ref || pi)."),
            (v("k1"), "that KL term is k1 (log pi - log pi_ref), which can be negative per token: GRPO uses "
                      "k3 = exp(u) - u - 1 with u = ref_logprobs - logprobs."),
            (v("kl_minus"), "the KL term has the wrong sign: the loss ADDS beta * k3 (it penalises moving away)."),
            (v("no_beta"), "the KL term is not scaled by beta: add beta * k3."),
            (v("no_kl"), "the KL term is missing: per token, add beta * k3 to the clipped policy loss."),
            (v("sign"), "wrong sign: the loss is MINUS the clipped objective, -min(ratio * A, clip(ratio) * A)."),
            (v("noclip"), "the clipping is missing: -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)."),
            (v("ratio_inv"), "the ratio is upside down: ratio = exp(logprobs - old_logprobs) = pi / pi_old."),
            (v("nomask"), "the padding counts: mask out padding positions (mask == 0) before averaging, and "
                          "divide each completion by its own number of tokens, mask.sum(1)."),
            (v("numel"), "you divided each completion by T (all columns): divide by its own length, mask.sum(1)."),
            (v("token_mean"), "that is a mean over all tokens of the batch (TRL's 'bnpo'): GRPO first averages "
                              "each completion over ITS tokens, then over completions."),
            (v("batch_first"), "you averaged over the batch before the tokens: first each completion over its own "
                               "tokens (sum over dim 1 / mask.sum(1)), then the mean over completions."),
            (v("sum"), "you summed each completion's tokens: divide by its length, mask.sum(1)."),
        ]

    def case(lp, old, ref_lp, adv, m, eps=0.2, beta=0.04):
        def run():
            want = _grpo_ref(lp, old, ref_lp, adv, m, eps, beta)
            got = _first(fn(lp.clone(), old.clone(), ref_lp.clone(), adv.clone(), m.clone(), eps, beta), "grpo_loss")
            _expect(got, want, "the loss", mistakes(lp, old, ref_lp, adv, m, eps, beta),
                    "The loss is one number: the mean over completions of each one's mean over its tokens.")
        return run

    B, T = 4, 7
    m = _mask(B, T, [(0, 7), (2, 7), (1, 5), (3, 4)])
    old = _garbage(_randn(B, T, seed=730) - 2, m, seed=731)
    lp = _garbage(old + _randn(B, T, seed=732, scale=0.4), m, seed=733)
    ref_lp = _garbage(old + _randn(B, T, seed=734, scale=0.6), m, seed=735)
    adv = _randn(B, seed=736)
    full = torch.ones(3, 5)
    o = _randn(3, 5, seed=740) - 2
    grad_case = _grad_case(fn, lambda *a: _grpo_ref(*a), (lp, old, ref_lp, adv, m, 0.2, 0.1),
                           [(0, "logprobs", True), (1, "old_logprobs", False), (2, "ref_logprobs", False),
                            (3, "advantages", False)], inputs="logprobs",
                           loss_of=lambda out: _first(out, "grpo_loss"))
    return [
        ("step 0 (logprobs == old == ref): loss = -mean(A)",
         case(o.clone(), o, o.clone(), _randn(3, seed=741), full)),
        ("policy moved, no KL (beta = 0)",
         case(o + _randn(3, 5, seed=742, scale=0.05), o, o.clone(), _randn(3, seed=743), full, beta=0.0)),
        ("large policy change (clipping active) with the KL",
         case(o + _randn(3, 5, seed=744), o, o + _randn(3, 5, seed=745), _randn(3, seed=746), full)),
        ("padded batch, junk at padding, completions of different lengths", case(lp, old, ref_lp, adv, m, beta=0.1)),
        ("gradients: to logprobs only", grad_case),
    ]
