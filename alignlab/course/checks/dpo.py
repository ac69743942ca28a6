"""04 DPO: ``dpo_loss`` (with the implicit rewards)."""

from __future__ import annotations

import torch

from ... import losses as L
from .harness import (
    OVERFLOW_HINT,
    SUM_HINT,
    _expect,
    _Fail,
    _first,
    _grad_case,
    _randn,
    exercise,
)

SET = "04_dpo"

@exercise(SET, "dpo_loss")
def _dpo_cases(fn):
    def loss_mistakes(pc, pr, rc, rr, beta):
        B = pc.shape[0]
        def ref(*a, b=beta):
            return L.dpo_loss(*a, beta=b)[0]

        return [
            (lambda: ref(pr, pc, rr, rc), "wrong sign: your loss rewards the REJECTED completion. "
                                         "h = (log pi(y_c) - log ref(y_c)) - (log pi(y_r) - log ref(y_r))."),
            (lambda: ref(pc, pr, rc, rr, b=1.0), "beta is missing: loss = -log sigmoid(beta * h)."),
            (lambda: ref(pc, pr, rc, rr) * B, SUM_HINT),
            (lambda: ref(pc, pr, torch.zeros_like(rc), torch.zeros_like(rr)),
             "the reference is missing: subtract the reference log-probs, "
             "h = (pc - rc) - (pr - rr)."),
            (lambda: ref(pc, pr, rr, rc), "the reference log-probs are swapped: chosen with chosen "
                                          "(pc - rc), rejected with rejected (pr - rr)."),
            (lambda: -ref(pc, pr, rc, rr), "the loss is the NEGATIVE log-likelihood: -log sigmoid(beta * h)."),
        ]

    def reward_mistakes(pol, ref_, other_pol, other_ref, beta):
        return [
            (lambda: pol - ref_, "the implicit reward needs beta: r = beta * (log pi - log ref)."),
            (lambda: beta * (other_pol - other_ref), "chosen and rejected rewards are swapped."),
            (lambda: beta * (ref_ - pol), "wrong sign: the implicit reward is beta * (log pi - log ref)."),
            (lambda: beta * pol, "subtract the reference: r = beta * (log pi - log ref)."),
        ]

    def case(pc, pr, rc, rr, beta, rewards=True):
        def run():
            want, want_c, want_r = L.dpo_loss(pc, pr, rc, rr, beta)
            out = _first(fn(pc.clone(), pr.clone(), rc.clone(), rr.clone(), beta), "dpo_loss", n=3)
            _expect(out[0], want, "the loss", loss_mistakes(pc, pr, rc, rr, beta),
                    "The loss is one number: the mean over pairs.")
            if rewards:
                _expect(out[1], want_c, "chosen_rewards", reward_mistakes(pc, rc, pr, rr, beta),
                        "One reward per pair: shape (B,).")
                _expect(out[2], want_r, "rejected_rewards", reward_mistakes(pr, rr, pc, rc, beta),
                        "One reward per pair: shape (B,).")
        return run

    def rewards_detached(out):
        for what, r in zip(("chosen_rewards", "rejected_rewards"), out[1:]):
            if isinstance(r, torch.Tensor) and r.requires_grad:
                raise _Fail(f"{what} carry a gradient (forgot to detach): the implicit rewards are for "
                            "logging only; return beta * (logp - ref_logp).detach().")

    grad_case = _grad_case(
        fn, lambda *a: L.dpo_loss(*a)[0],
        (_randn(5, seed=105) - 10, _randn(5, seed=106) - 10, _randn(5, seed=107) - 10, _randn(5, seed=108) - 10, 0.5),
        [(0, "policy_chosen_logps", True), (1, "policy_rejected_logps", True)], inputs="the policy log-probs",
        loss_of=lambda out: _first(out, "dpo_loss", n=3)[0], before_backward=rewards_detached)

    def extreme_case():
        pc, pr = torch.tensor([-10.0, -5010.0]), torch.tensor([-5010.0, -10.0])
        rc, rr = torch.tensor([-10.0, -10.0]), torch.tensor([-10.0, -10.0])
        want = L.dpo_loss(pc, pr, rc, rr, 0.1)[0]
        out = _first(fn(pc.clone(), pr.clone(), rc.clone(), rr.clone(), 0.1), "dpo_loss", n=3)
        _expect(out[0], want, "the loss", loss_mistakes(pc, pr, rc, rr, 0.1), nonfinite=OVERFLOW_HINT)

    s = _randn(6, seed=100) - 20
    t = _randn(6, seed=101) - 20
    return [
        ("step 0 (policy == reference): loss = ln 2, rewards 0", case(s.clone(), t.clone(), s, t, 0.1)),
        ("random log-probs (B = 8, beta = 0.1)",
         case(_randn(8, seed=102, scale=3) - 20, _randn(8, seed=103, scale=3) - 20,
              _randn(8, seed=104, scale=3) - 20, _randn(8, seed=109, scale=3) - 20, 0.1)),
        ("beta = 0.5, implicit rewards", case(_randn(6, seed=110) - 5, _randn(6, seed=111) - 5,
                                              _randn(6, seed=112) - 5, _randn(6, seed=113) - 5, 0.5)),
        ("batch of one", case(torch.tensor([-3.0]), torch.tensor([-4.0]), torch.tensor([-3.5]),
                              torch.tensor([-3.0]), 0.2)),
        ("extreme values (|beta * h| = 500)", extreme_case),
        ("gradients; rewards detached", grad_case),
    ]
