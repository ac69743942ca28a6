"""02 GAE: ``discounted_returns`` and ``compute_gae`` (padded batches, masks)."""

from __future__ import annotations

import torch

from ... import losses as L
from .harness import (
    _candidate,
    _close,
    _expect,
    _Fail,
    _first,
    _garbage,
    _leaf,
    _mask,
    _randn,
    exercise,
)

SET = "02_gae"

_LEAK = ("padding leaks in: positions with mask == 0 (prompt padding on the left, tokens after <eos> "
         "on the right) must not count. Zero their rewards/values with the mask, and treat the value "
         "after the last valid token as 0 (the episode has ended).")
_PAD_NONZERO = "the output must be 0 at padding positions (mask == 0): multiply by the mask at the end."


def _returns_ref(rewards, mask, gamma):
    return L.compute_gae(rewards, torch.zeros_like(rewards), mask, gamma, 1.0)[1]


def _forward_returns(rewards, mask, gamma):
    """A typical mistake: accumulate from the start instead of from the end."""
    out = torch.zeros_like(rewards)
    run = torch.zeros(rewards.shape[0])
    for t in range(rewards.shape[1]):
        run = gamma * run + rewards[:, t] * mask[:, t]
        out[:, t] = run * mask[:, t]
    return out


@exercise(SET, "discounted_returns")
def _returns_cases(fn):
    def mistakes(r, m, gamma):
        ones = torch.ones_like(m)
        return [
            (lambda: _forward_returns(r, m, gamma), "you accumulated from the START: the return at t sums the "
                                                    "rewards from t to the END, G_t = r_t + gamma * G_{t+1} "
                                                    "(loop backwards over t)."),
            (lambda: _returns_ref(r, m, 1.0), "gamma is ignored: G_t = r_t + gamma * G_{t+1}."),
            (lambda: _returns_ref(r, ones, gamma), _LEAK),
            (lambda: _returns_ref(r, ones, gamma) * m, _LEAK),
            (lambda: _returns_ref(r, m, gamma) - r * m, "off by one: G_t includes the reward of step t itself, "
                                                       "G_t = r_t + gamma * G_{t+1}."),
        ] + _leak_mistakes(lambda **kw: _gae_variant(r, torch.zeros_like(r), m, gamma, 1.0, **kw)[1], m,
                           _returns_ref(r, m, gamma))

    def case(r, m, gamma):
        def run():
            want = _returns_ref(r, m, gamma)
            got = fn(r.clone(), m.clone(), gamma)
            _expect(got, want, "the returns", mistakes(r, m, gamma),
                    "Return one value per token, shape (B, T) like `rewards`.")
        return run

    B, T = 4, 7
    m = _mask(B, T, [(0, 7), (2, 7), (1, 5), (3, 4)])
    r = _garbage(_randn(B, T, seed=31), m, seed=32)
    return [
        ("one row, no padding, gamma = 1", case(torch.tensor([[1.0, 0.0, 2.0, -1.0]]), torch.ones(1, 4), 1.0)),
        ("gamma = 0.9, no padding (B = 3, T = 5)", case(_randn(3, 5, seed=30), torch.ones(3, 5), 0.9)),
        ("padded batch (left and right padding, junk at padding)", case(r, m, 0.95)),
        ("a single token", case(torch.tensor([[0.7]]), torch.ones(1, 1), 0.9)),
    ]


def _gae_ref(rewards, values, mask, gamma, lam):
    return L.compute_gae(rewards, values, mask, gamma, lam)


def _gae_variant(rewards, values, mask, gamma, lam, mask_inputs=True, mask_next=True,
                 mask_out=True, bootstrap=True):
    """GAE with some of its masking (or its bootstrap) left out: the typical mistakes.

    mask_inputs: zero rewards/values at padding; mask_next: use m_{t+1} on V_{t+1}, A_{t+1};
    mask_out: zero A_t at padding; bootstrap: use V_{t+1} at all.
    """
    m = mask.to(rewards.dtype)
    r, v = (rewards * m, values * m) if mask_inputs else (rewards, values)
    adv = torch.zeros_like(r)
    next_v, next_a, next_m = (torch.zeros(r.shape[0]) for _ in range(3))
    for t in reversed(range(r.shape[1])):
        gate = next_m if mask_next else 1.0
        delta = r[:, t] + (gamma * gate * next_v if bootstrap else 0.0) - v[:, t]
        a = delta + gamma * lam * gate * next_a
        a = a * m[:, t] if mask_out else a
        adv[:, t] = a
        next_v, next_a, next_m = v[:, t], a, m[:, t]
    return adv, adv + v * m


def _leak_mistakes(ref_fn, m, want):
    """(thunk, hint) for every way of half-applying the mask (see `_gae_variant`)."""
    out = []
    for mi in (True, False):
        for mn in (True, False):
            for mo in (True, False):
                if mi and mn and mo:
                    continue
                def thunk(mi=mi, mn=mn, mo=mo):
                    return ref_fn(mask_inputs=mi, mask_next=mn, mask_out=mo)

                c = _candidate(thunk)
                same_where_valid = c is not None and _close(c * m, want * m)
                out.append((thunk, _PAD_NONZERO if same_where_valid else _LEAK))
    return out


@exercise(SET, "compute_gae")
def _gae_cases(fn):
    def adv_mistakes(r, v, m, gamma, lam):
        ones = torch.ones_like(m)
        return [
            (lambda: _gae_ref(r, v, m, lam, gamma)[0], "gamma and lam are swapped: delta_t is discounted by "
                                                       "gamma, and A_t = delta_t + gamma * lam * A_{t+1}."),
            (lambda: _gae_ref(r, v, m, gamma, 1.0)[0], "lam is ignored: A_t = delta_t + gamma * lam * A_{t+1}."),
            (lambda: _gae_ref(r, v, m, 1.0, lam)[0], "gamma is ignored: delta_t = r_t + gamma V_{t+1} - V_t and "
                                                    "A_t = delta_t + gamma * lam * A_{t+1}."),
            (lambda: _gae_variant(r, v, m, gamma, lam, bootstrap=False)[0],
             "the TD error needs the NEXT value: delta_t = r_t + gamma * V_{t+1} - V_t."),
            (lambda: _gae_ref(r, v, ones, gamma, lam)[0], _LEAK),
            (lambda: _gae_ref(r, v, ones, gamma, lam)[0] * m, _LEAK),
        ] + _leak_mistakes(lambda **kw: _gae_variant(r, v, m, gamma, lam, **kw)[0], m,
                           _gae_ref(r, v, m, gamma, lam)[0])

    def ret_mistakes(r, v, m, gamma, lam):
        a, ret = _gae_ref(r, v, m, gamma, lam)
        vm = torch.where(m.bool(), v, torch.zeros_like(v))
        return [
            (lambda: a - vm, "returns = advantages + values (you subtracted the values)."),
            (lambda: a, "the returns (value targets) are advantages + values, not the advantages."),
            (lambda: a + v, "the returns must be 0 at padding: returns = (advantages + values) * mask."),
            (lambda: _returns_ref(r, m, gamma), "the returns of GAE are advantages + values (the "
                                                "lambda-return), not the plain discounted reward-to-go."),
        ]

    def case(r, v, m, gamma, lam):
        def run():
            want_a, want_r = _gae_ref(r, v, m, gamma, lam)
            out = _first(fn(r.clone(), v.clone(), m.clone(), gamma, lam), "compute_gae", n=2)
            _expect(out[0], want_a, "the advantages", adv_mistakes(r, v, m, gamma, lam),
                    "One advantage per token: shape (B, T).")
            _expect(out[1], want_r, "the returns", ret_mistakes(r, v, m, gamma, lam),
                    "One return per token: shape (B, T).")
        return run

    def no_grad_case():
        r, m = _randn(2, 5, seed=45), torch.ones(2, 5)
        v = _leaf(_randn(2, 5, seed=46))
        out = _first(fn(r, v, m, 0.9, 0.8), "compute_gae", n=2)
        for what, x in zip(("advantages", "returns"), out):
            if isinstance(x, torch.Tensor) and x.requires_grad:
                raise _Fail(f"the {what} carry a gradient (forgot to detach): they are targets, "
                            "constants for the PPO update. Compute them under torch.no_grad() or "
                            "detach the values first; otherwise the value loss back-propagates "
                            "through its own target.")

    B, T = 4, 8
    m = _mask(B, T, [(0, 8), (3, 8), (1, 6), (4, 5)])
    r = _garbage(_randn(B, T, seed=43), m, seed=44)
    v = _garbage(_randn(B, T, seed=41), m, seed=42)
    return [
        ("lam = 0 gives the TD errors", case(_randn(2, 5, seed=40), _randn(2, 5, seed=47), torch.ones(2, 5), 0.9, 0.0)),
        ("gamma = lam = 1: A_t = (rewards from t on) - V_t",
         case(_randn(2, 5, seed=48), _randn(2, 5, seed=49), torch.ones(2, 5), 1.0, 1.0)),
        ("gamma = 0.9, lam = 0.8, no padding",
         case(_randn(3, 6, seed=50), _randn(3, 6, seed=51), torch.ones(3, 6), 0.9, 0.8)),
        ("padded batch (left and right padding, junk at padding)", case(r, v, m, 0.95, 0.9)),
        ("a single token", case(torch.tensor([[0.5]]), torch.tensor([[0.2]]), torch.ones(1, 1), 0.9, 0.9)),
        ("no gradient flows through advantages and returns", no_grad_case),
    ]
