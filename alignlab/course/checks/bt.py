"""01 Bradley-Terry: ``bt_loss`` and ``rm_accuracy``."""

from __future__ import annotations

import torch

from ... import losses as L
from .harness import (
    OVERFLOW_HINT,
    SUM_HINT,
    _expect,
    _grad_case,
    _leaf,
    _randn,
    exercise,
)

SET = "01_bradley_terry"

_SIGN_BT = ("wrong sign: your loss is the one with chosen and rejected swapped. The loss must "
            "fall as r_chosen rises above r_rejected: loss = -log sigmoid(r_chosen - r_rejected).")



@exercise(SET, "bt_loss")
def _bt_loss_cases(fn):
    def bt_mistakes(rc, rr):
        B = rc.shape[0]
        return [
            (lambda: L.bt_loss(rr, rc), _SIGN_BT),
            (lambda: L.bt_loss(rc, rr) * B, SUM_HINT),
            (lambda: -L.bt_loss(rc, rr), "the loss is the NEGATIVE log-likelihood: "
                                        "loss = -log sigmoid(r_c - r_r) (you dropped the minus)."),
            (lambda: (1 - torch.sigmoid(rc - rr)).mean(), "you return 1 - sigmoid(...), not the negative "
                                                         "log-likelihood -log sigmoid(r_c - r_r)."),
        ]

    def value_case(rc, rr):
        def run():
            want = L.bt_loss(rc, rr)
            got = fn(rc.clone(), rr.clone())
            _expect(got, want, "the loss", bt_mistakes(rc, rr),
                    "The loss is one number: the mean over the batch.", nonfinite=OVERFLOW_HINT)
        return run

    grad_case = _grad_case(fn, L.bt_loss, (_randn(7, seed=13), _randn(7, seed=14)),
                           [(0, "r_chosen", True), (1, "r_rejected", True)], inputs="the rewards")

    same = _randn(6, seed=10)
    return [
        ("equal rewards: loss = ln 2", value_case(same, same.clone())),
        ("random rewards (B = 8)", value_case(_randn(8, seed=11, scale=2), _randn(8, seed=12, scale=2))),
        ("batch of one", value_case(torch.tensor([0.3]), torch.tensor([1.1]))),
        ("extreme gap (r_c - r_r = -200)", value_case(torch.tensor([-100.0, 2.0]), torch.tensor([100.0, 1.0]))),
        ("gradients w.r.t. both rewards", grad_case),
    ]


@exercise(SET, "rm_accuracy")
def _rm_accuracy_cases(fn):
    def mistakes(rc, rr):
        B = rc.shape[0]
        return [
            (lambda: L.pairwise_accuracy(rr, rc), "reversed: you count the pairs where the REJECTED "
                                                 "completion scores higher; a pair is right when r_c > r_r."),
            (lambda: L.pairwise_accuracy(rc, rr) * B, "you return the number of correct pairs: return the "
                                                     "fraction (a mean), a number in [0, 1]."),
            (lambda: (rc > rr).float().mean(), "ties count as 0 in your accuracy: here a tie (r_c == r_r) "
                                               "counts 1/2, like a coin flip."),
            (lambda: (rc >= rr).float().mean(), "ties count as 1 in your accuracy (you used >=): here a tie "
                                                "(r_c == r_r) counts 1/2."),
        ]

    def value_case(rc, rr, grad=False):
        def run():
            want = L.pairwise_accuracy(rc, rr)
            a, b = (_leaf(rc), _leaf(rr)) if grad else (rc.clone(), rr.clone())
            got = fn(a, b)
            _expect(got, want, "the accuracy", mistakes(rc, rr), "The accuracy is one number.")
        return run

    ties_c = torch.tensor([1.0, 0.5, -0.2, 0.0, 2.0, 0.3])
    ties_r = torch.tensor([0.0, 0.5, 0.1, 0.0, 2.0, -0.3])
    return [
        ("random rewards (B = 10)", value_case(_randn(10, seed=20), _randn(10, seed=21))),
        ("ties count 1/2", value_case(ties_c, ties_r)),
        ("batch of one", value_case(torch.tensor([0.2]), torch.tensor([0.7]))),
        ("rewards that require grad (straight from a model)",
         value_case(_randn(9, seed=22), _randn(9, seed=23), grad=True)),
    ]
