"""03 PPO: ``ppo_clip_loss`` and ``value_loss_clipped`` (token-level means over valid tokens)."""

from __future__ import annotations

import torch

from ... import losses as L
from .harness import (
    _expect,
    _first,
    _garbage,
    _grad_case,
    _mask,
    _randn,
    exercise,
)

SET = "03_ppo"

def _ppo_ref(lp, old, adv, m, eps):
    return L.ppo_clip_loss(lp, old, adv, m, eps)[0]


def _ppo_variant(lp, old, adv, m, eps, kind):
    """Typical mistakes in the PPO clipped loss."""
    ratio = torch.exp(torch.where(m.bool(), lp - old, torch.zeros_like(lp)))
    a = torch.where(m.bool(), adv, torch.zeros_like(adv))
    unclipped, clipped = -a * ratio, -a * torch.clamp(ratio, 1 - eps, 1 + eps)
    per_tok = {"min": torch.minimum(unclipped, clipped), "noclip": unclipped, "cliponly": clipped,
               "plus": torch.maximum(a * ratio, a * torch.clamp(ratio, 1 - eps, 1 + eps))}.get(kind)
    if per_tok is not None:
        return L.masked_mean(per_tok, m)
    per_tok = torch.maximum(unclipped, clipped)
    if kind == "sum":
        return L.masked_sum(per_tok, m)
    if kind == "numel":
        return (per_tok * m).sum() / m.numel()
    if kind == "seqmean":
        return (L.masked_sum(per_tok, m, dim=1) / m.sum(1)).mean()
    raise ValueError(kind)


_MASK_MEAN = ("average over the VALID tokens only: sum(loss * mask) / mask.sum() "
              "(a token-level mean over the whole batch).")


def _masked_loss_mistakes(ref, variant, x, eps, m):
    """Mistakes shared by the two PPO losses: ``x`` their (B, T) inputs, ``m`` the mask."""
    ones = torch.ones_like(m)
    return [
        (lambda: ref(*x, ones, eps), "the mask is ignored: padding positions (mask == 0) must not count; "
                                     "average over valid tokens only."),
        (lambda: variant(*x, m, eps, "sum"), "you summed over tokens: take the mean over valid tokens, "
                                             "sum(loss * mask) / mask.sum()."),
        (lambda: variant(*x, m, eps, "numel"), "you divided by B*T (all positions): " + _MASK_MEAN),
        (lambda: variant(*x, m, eps, "seqmean"), "you took a mean per sequence, then over sequences: "
                                                 "this course uses the token-level mean, " + _MASK_MEAN),
    ]


@exercise(SET, "ppo_clip_loss")
def _ppo_cases(fn):
    def mistakes(lp, old, adv, m, eps):
        x = (lp, old, adv)
        return [
            (lambda: -_ppo_ref(*x, m, eps), "wrong sign: you return the objective min(r A, clip(r) A), "
                                           "which PPO MAXIMISES; the loss to minimise is its negative."),
            (lambda: _ppo_variant(*x, m, eps, "plus"), "wrong sign: PPO MAXIMISES ratio * A, so the loss to "
                                                      "minimise is -ratio * A (and its clipped twin)."),
            (lambda: _ppo_variant(*x, m, eps, "min"), "you took the min of the two loss terms: the clipped "
                                                     "objective is the pessimistic min(r A, clip(r) A), i.e. "
                                                     "the MAX of the negated terms -r A and -clip(r) A."),
            (lambda: _ppo_variant(*x, m, eps, "noclip"), "the clipping is missing: use the max of -r A and "
                                                        "-clip(r, 1 - eps, 1 + eps) A."),
            (lambda: _ppo_variant(*x, m, eps, "cliponly"), "only the clipped term: take the max of the "
                                                          "unclipped -r A and the clipped -clip(r) A."),
            (lambda: _ppo_ref(old, lp, adv, m, eps), "the ratio is upside down: ratio = exp(logprobs - "
                                                    "old_logprobs) = pi_new / pi_old."),
        ] + _masked_loss_mistakes(_ppo_ref, _ppo_variant, x, eps, m)

    def case(lp, old, adv, m, eps):
        def run():
            want = _ppo_ref(lp, old, adv, m, eps)
            got = _first(fn(lp.clone(), old.clone(), adv.clone(), m.clone(), eps), "ppo_clip_loss")
            _expect(got, want, "the loss", mistakes(lp, old, adv, m, eps),
                    "The loss is one number: a mean over valid tokens.")
        return run

    m6 = _mask(3, 6, [(0, 6), (2, 6), (1, 4)])
    old6 = _randn(3, 6, seed=66) - 2
    lp6 = old6 + _randn(3, 6, seed=67, scale=0.3)
    grad_case = _grad_case(fn, _ppo_ref, (lp6, old6, _randn(3, 6, seed=68), m6, 0.2),
                           [(0, "logprobs", True), (1, "old_logprobs", False), (2, "advantages", False)],
                           inputs="logprobs", loss_of=lambda out: _first(out, "ppo_clip_loss"))

    B, T = 4, 7
    m = _mask(B, T, [(0, 7), (2, 7), (1, 5), (3, 4)])
    old = _garbage(_randn(B, T, seed=60) - 2, m, seed=61)
    lp = _garbage(old + _randn(B, T, seed=62, scale=0.5), m, seed=63)
    adv = _garbage(_randn(B, T, seed=64), m, seed=65)
    full = torch.ones(3, 5)
    o2 = _randn(3, 5, seed=70) - 2
    return [
        ("step 0 (logprobs == old_logprobs): loss = -mean(A)",
         case(o2.clone(), o2, _randn(3, 5, seed=71), full, 0.2)),
        ("small policy change, no clipping",
         case(o2 + _randn(3, 5, seed=72, scale=0.05), o2, _randn(3, 5, seed=73), full, 0.2)),
        ("large policy change (clipping active)",
         case(o2 + _randn(3, 5, seed=74), o2, _randn(3, 5, seed=75), full, 0.2)),
        ("padded batch (junk at padding)", case(lp, old, adv, m, 0.2)),
        ("batch of one", case(torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]]), torch.tensor([[1.0, -0.5]]),
                              torch.ones(1, 2), 0.1)),
        ("gradients: to logprobs only", grad_case),
    ]


def _vf_ref(v, old, ret, m, eps):
    return L.value_loss_clipped(v, old, ret, m, eps)[0]


def _vf_variant(v, old, ret, m, eps, kind):
    mm = m.bool()
    z = torch.zeros_like(v)
    v, old, ret = torch.where(mm, v, z), torch.where(mm, old, z), torch.where(mm, ret, z)
    vc = torch.clamp(v, old - eps, old + eps)
    e1, e2 = (v - ret) ** 2, (vc - ret) ** 2
    per_tok = {"min": torch.minimum(e1, e2), "noclip": e1, "cliponly": e2}.get(kind, torch.maximum(e1, e2))
    if kind == "sum":
        return 0.5 * L.masked_sum(per_tok, m)
    if kind == "numel":
        return 0.5 * (per_tok * m).sum() / m.numel()
    if kind == "seqmean":
        return 0.5 * (L.masked_sum(per_tok, m, dim=1) / m.sum(1)).mean()
    if kind == "nohalf":
        return L.masked_mean(per_tok, m)
    if kind == "abs":
        return 0.5 * L.masked_mean(torch.maximum((v - ret).abs(), (vc - ret).abs()), m)
    return 0.5 * L.masked_mean(per_tok, m)


@exercise(SET, "value_loss_clipped")
def _vf_cases(fn):
    def mistakes(v, old, ret, m, eps):
        x = (v, old, ret)
        return [
            (lambda: _vf_variant(*x, m, eps, "nohalf"), "the factor 0.5 is missing: loss = 0.5 * mean(max(...))."),
            (lambda: _vf_variant(*x, m, eps, "min"), "take the MAX of the two squared errors (the pessimistic "
                                                    "one), not the min."),
            (lambda: _vf_variant(*x, m, eps, "noclip"), "the clipping is missing, or has no effect (clipping V "
                                                       "around the returns never changes the max): clip around "
                                                       "the old values, V_clip = old_values + clamp(values - "
                                                       "old_values, -eps, eps), and the loss uses "
                                                       "max((V - R)^2, (V_clip - R)^2)."),
            (lambda: _vf_variant(*x, m, eps, "cliponly"), "only the clipped error: take the max of (V - R)^2 "
                                                         "and (V_clip - R)^2."),
            (lambda: _vf_variant(*x, m, eps, "abs"), "use squared errors, (V - R)^2, not absolute ones."),
        ] + _masked_loss_mistakes(_vf_ref, _vf_variant, x, eps, m)

    def case(v, old, ret, m, eps):
        def run():
            want = _vf_ref(v, old, ret, m, eps)
            got = _first(fn(v.clone(), old.clone(), ret.clone(), m.clone(), eps), "value_loss_clipped")
            _expect(got, want, "the loss", mistakes(v, old, ret, m, eps),
                    "The loss is one number: a mean over valid tokens.")
        return run

    m6 = _mask(3, 6, [(0, 6), (2, 6), (1, 4)])
    old6 = _randn(3, 6, seed=86)
    v6 = old6 + _randn(3, 6, seed=87, scale=0.4)
    grad_case = _grad_case(fn, _vf_ref, (v6, old6, _randn(3, 6, seed=88), m6, 0.2),
                           [(0, "values", True), (1, "old_values", False), (2, "returns", False)],
                           inputs="values", loss_of=lambda out: _first(out, "value_loss_clipped"))

    B, T = 4, 7
    m = _mask(B, T, [(0, 7), (2, 7), (1, 5), (3, 4)])
    old = _garbage(_randn(B, T, seed=80), m, seed=81)
    v = _garbage(old + _randn(B, T, seed=82, scale=0.5), m, seed=83)
    ret = _garbage(_randn(B, T, seed=84), m, seed=85)
    full = torch.ones(3, 5)
    o2 = _randn(3, 5, seed=90)
    return [
        ("step 0 (values == old_values): 0.5 * mean((V - R)^2)",
         case(o2.clone(), o2, _randn(3, 5, seed=91), full, 0.2)),
        ("values far from old_values (clipping active)",
         case(o2 + _randn(3, 5, seed=92), o2, _randn(3, 5, seed=93), full, 0.2)),
        ("padded batch (junk at padding)", case(v, old, ret, m, 0.2)),
        ("batch of one", case(torch.tensor([[0.5, -0.3]]), torch.tensor([[0.1, 0.2]]), torch.tensor([[1.0, -1.0]]),
                              torch.ones(1, 2), 0.1)),
        ("gradients: to values only", grad_case),
    ]
