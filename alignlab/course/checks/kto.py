"""05 KTO: ``kto_z0`` (the reference point) and ``kto_loss``."""

from __future__ import annotations

import torch

from ... import losses as L
from .harness import (
    SUM_HINT,
    _expect,
    _Fail,
    _first,
    _grad_case,
    _leaf,
    _randn,
    exercise,
)

SET = "05_kto"

@exercise(SET, "kto_z0")
def _z0_cases(fn):
    def mistakes(p, r):
        B = p.shape[0]
        return [
            (lambda: (p - r).mean(), "z0 must be clamped at 0 (a KL cannot be negative): "
                                     "z0 = max(0, mean(policy_kl_logps - ref_kl_logps))."),
            (lambda: L.kto_z0(p, r) * B, "you summed: z0 is a MEAN over the batch of mismatched pairs."),
            (lambda: (p - r).sum().clamp(min=0), "you summed: z0 is a MEAN over the batch of mismatched pairs."),
            (lambda: L.kto_z0(r, p), "wrong sign: z0 estimates KL(pi || ref), the mean of "
                                     "log pi - log ref."),
            (lambda: (p - r).abs().mean(), "clamp the MEAN at 0 (max(0, mean(...))), do not take "
                                           "absolute values of single terms."),
            (lambda: (p - r).clamp(min=0).mean(), "clamp the MEAN at 0 (max(0, mean(...))), not each term."),
        ]

    def case(p, r):
        def run():
            want = L.kto_z0(p, r)
            got = fn(p.clone(), r.clone())
            _expect(got, want, "z0", mistakes(p, r), "z0 is one number.")
        return run

    def detach_case():
        p, r = _leaf(_randn(6, seed=124) - 9), _leaf(_randn(6, seed=125) - 10)
        got = fn(p, r)
        if isinstance(got, torch.Tensor) and got.requires_grad:
            raise _Fail("z0 carries a gradient (forgot to detach): KTO treats the reference point as a "
                        "constant; return (...).detach() or compute it under torch.no_grad().")
        _expect(got, L.kto_z0(p, r), "z0", mistakes(p.detach(), r.detach()))

    return [
        ("random log-probs, positive mean gap", case(_randn(8, seed=120) - 9, _randn(8, seed=121) - 10)),
        ("negative mean gap: z0 = 0", case(_randn(8, seed=122) - 11, _randn(8, seed=123) - 10)),
        ("batch of one", case(torch.tensor([-4.0]), torch.tensor([-6.5]))),
        ("no gradient (z0 is a constant)", detach_case),
    ]


def _kto_ref(pl, rl, lab, pk, rk, beta, ld, lu):
    return L.kto_loss(pl, rl, lab, pk, rk, beta, ld, lu)[0]


@exercise(SET, "kto_loss")
def _kto_cases(fn):
    def mistakes(pl, rl, lab, pk, rk, beta, ld, lu):
        z0 = L.kto_z0(pk, rk)
        d = lab.bool()
        lr = pl - rl

        def both_desirable_form():
            return torch.where(d, ld * (1 - torch.sigmoid(beta * (lr - z0))),
                               lu * (1 - torch.sigmoid(beta * (lr - z0)))).mean()

        def separate_means():
            dl = ld * (1 - torch.sigmoid(beta * (lr - z0)))
            ul = lu * (1 - torch.sigmoid(beta * (z0 - lr)))
            return (dl[d].mean() if d.any() else 0) + (ul[~d].mean() if (~d).any() else 0)

        return [
            (lambda: _kto_ref(pl, rl, ~d, pk, rk, beta, ld, lu), "the labels are inverted: label True "
                                                                "(1) marks a DESIRABLE completion."),
            (lambda: _kto_ref(pl, rl, lab, pk, rk, beta, lu, ld), "lambda_d and lambda_u are swapped: "
                                                                 "lambda_d weighs desirable examples."),
            (lambda: _kto_ref(pl, rl, lab, pk, pk, beta, ld, lu), "the reference point z0 is missing: "
                                                                 "use r - z0 (desirable) and z0 - r "
                                                                 "(undesirable)."),
            (lambda: _kto_ref(pl, rl, lab, pk, rk, 1.0, ld, lu), "beta is missing: sigmoid(beta * (r - z0))."),
            (both_desirable_form, "undesirable examples use sigmoid(beta * (z0 - r)): the loss of a "
                                  "bad completion falls as its reward r goes DOWN."),
            (lambda: _kto_ref(pl, rl, lab, pk, rk, beta, ld, lu) * pl.shape[0], SUM_HINT),
            (separate_means, "take one mean over ALL examples of the batch, not a mean per class."),
            (lambda: _kto_ref(rl, pl, lab, rk, pk, beta, ld, lu),
             "wrong sign of the log-ratio: r = log pi(y|x) - log ref(y|x)."),
        ]

    def case(pl, rl, lab, pk, rk, beta=0.1, ld=1.0, lu=1.0):
        def run():
            want = _kto_ref(pl, rl, lab, pk, rk, beta, ld, lu)
            got = _first(fn(pl.clone(), rl.clone(), lab.clone(), pk.clone(), rk.clone(), beta, ld, lu),
                         "kto_loss")
            _expect(got, want, "the loss", mistakes(pl, rl, lab, pk, rk, beta, ld, lu),
                    "The loss is one number: the mean over the batch.")
        return run

    grad_case = _grad_case(
        fn, _kto_ref,
        (_randn(6, seed=140, scale=3) - 10, _randn(6, seed=141, scale=3) - 10,
         torch.tensor([True, False, True, True, False, False]),
         _randn(6, seed=142, scale=3) - 9, _randn(6, seed=143, scale=3) - 10, 0.5, 1.0, 1.0),
        [(3, "policy_kl_logps", False), (0, "policy_logps", True)], inputs="policy_logps",
        loss_of=lambda out: _first(out, "kto_loss"),
        constant_hints={"policy_kl_logps": "a gradient flows into z0 (through policy_kl_logps): the reference "
                                           "point is a constant in KTO; detach it (your kto_z0 should return "
                                           "a detached value)."})

    lab = torch.tensor([True, False, True, False, False, True, True, False])
    s = _randn(6, seed=130) - 15
    t = _randn(6, seed=131) - 15
    lab6 = torch.tensor([1, 0, 0, 1, 1, 0])
    return [
        ("step 0 (policy == reference): z0 = 0, loss = mean(lambda_y / 2)",
         case(s.clone(), s, lab6, t.clone(), t, 0.1, 1.0, 1.0)),
        ("random, mixed labels, lambda_d = 1.3, lambda_u = 0.7",
         case(_randn(8, seed=132, scale=4) - 12, _randn(8, seed=133, scale=4) - 12, lab,
              _randn(8, seed=134, scale=3) - 9, _randn(8, seed=135, scale=3) - 10, 0.5, 1.3, 0.7)),
        ("all desirable", case(_randn(5, seed=136, scale=4), _randn(5, seed=137, scale=4),
                               torch.ones(5, dtype=torch.bool), _randn(5, seed=138) + 1, _randn(5, seed=139), 0.3)),
        ("all undesirable", case(_randn(5, seed=144, scale=4), _randn(5, seed=145, scale=4),
                                 torch.zeros(5, dtype=torch.bool), _randn(5, seed=146) + 1, _randn(5, seed=147), 0.3)),
        ("gradients; z0 is a constant", grad_case),
    ]
