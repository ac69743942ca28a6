"""03 (second set) the KL-shaped reward and the adaptive KL coefficient: ``token_rewards``
(Ziegler et al. 2019, eq. 2: -beta * (log pi - log pi_ref) on every completion token, the score
on the last one) and ``adaptive_beta`` (their sec. 2.2: a proportional controller on the KL).

References: ``alignlab.losses.token_rewards`` and ``alignlab.losses.AdaptiveKLController``.
"""

from __future__ import annotations

import torch

from ... import losses as L
from ...sampling import last_token_index
from .harness import _as_tensor, _expect, _Fail, _garbage, _mask, _randn, exercise

SET = "03_rlhf_kl"

# ---------------------------------------------------------------------------
# token_rewards
# ---------------------------------------------------------------------------

_SHAPE = "One reward per token: shape (B, T) like `logprobs`."


def _first_token_index(mask):
    return mask.bool().long().argmax(-1)


def _reward_variant(score, lp, ref, mask, beta, kind):
    """Typical mistakes of the per-token reward (the correct one for kind="ok")."""
    valid = mask.bool()
    z = torch.zeros_like(lp)
    if kind == "k3":
        u = torch.where(valid, ref - lp, z)
        kl = torch.expm1(u) - u
    else:
        kl = torch.where(valid, lp - ref, z) if kind != "nomask" else lp - ref
    coef = {"plus": -beta, "no_beta": 1.0}.get(kind, beta)
    r = -coef * kl
    rows = torch.arange(len(score))
    last = last_token_index(mask)
    if kind == "seq_kl":
        r = torch.zeros_like(lp)
        r[rows, last] = score - beta * kl.sum(1)
    elif kind == "score_first":
        r[rows, _first_token_index(mask)] += score
    elif kind == "score_last_col":
        r[:, -1] += score
    elif kind == "score_at_length":
        r[rows, mask.long().sum(1) - 1] += score
    elif kind == "score_every":
        r = r + score[:, None] * valid
    elif kind == "replace":
        r[rows, last] = score
    elif kind != "no_score":
        r[rows, last] += score
    return r


def _reward_mistakes(score, lp, ref, mask, beta):
    def v(kind):
        return lambda: _reward_variant(score, lp, ref, mask, beta, kind)

    return [
        (v("plus"), "wrong sign: the KL term is a PENALTY, r_t = -beta * (log pi - log pi_ref); with + the "
                    "policy is paid for moving away from the reference."),
        (v("no_beta"), "the KL term is not scaled by kl_coef (beta)."),
        (v("k3"), "that per-token term is k3; the KL-shaped reward uses the plain log-ratio (k1), "
                  "log pi - log pi_ref, so that the rewards of a sample sum to score - beta * KL_k1."),
        (v("nomask"), "the padding pays a KL penalty: positions with mask == 0 (prompt, padding) get no "
                      "reward at all."),
        (v("score_first"), "the score is paid on the FIRST completion token: the reward model judges the "
                           "whole completion, so its score lands on the LAST one (the <eos>)."),
        (v("score_last_col"), "the score went to the last column of the tensor, which is padding in rows "
                              "that end earlier: find each row's last completion token from the mask."),
        (v("score_at_length"), "the score went to column (number of completion tokens - 1), which is the last "
                               "completion token only when the completion starts at column 0: the prompt (and "
                               "its left padding) comes first; find each row's last 1 in the mask."),
        (v("score_every"), "the score is paid on every token: it is paid once, on the last completion token."),
        (v("no_score"), "the score is missing: add it to the reward of the last completion token."),
        (v("replace"), "the last token lost its KL penalty: ADD the score to it (it pays the penalty too), "
                       "do not overwrite it."),
        (v("seq_kl"), "the whole sequence's KL sits on the last token (that is RLOO's sequence reward, "
                      "score - beta * KL): here each token pays its own penalty, where it was chosen."),
    ]


@exercise(SET, "token_rewards")
def _reward_cases(fn):
    def case(score, lp, ref, mask, beta):
        def run():
            want = L.token_rewards(score, lp, ref, mask, beta)
            got = fn(score.clone(), lp.clone(), ref.clone(), mask.clone(), beta)
            _expect(got, want, "the rewards", _reward_mistakes(score, lp, ref, mask, beta), _SHAPE)
        return run

    B, T = 4, 8
    left = _mask(B, T, [(3, 8), (5, 8), (2, 8), (6, 8)])       # left-padded prompt, completion to the end
    ragged = _mask(B, T, [(2, 5), (3, 8), (1, 4), (4, 6)])     # right padding too (Batch.concat)
    lp0 = _randn(B, T, seed=800) - 2
    lp = _garbage(_randn(B, T, seed=801) - 2, ragged, seed=802)
    ref = _garbage(lp + _randn(B, T, seed=803, scale=0.5), ragged, seed=804)
    return [
        ("step 0 (logprobs == ref_logprobs): only the score, on the last token",
         case(_randn(B, seed=805), lp0 * left, lp0 * left, left, 0.1)),
        ("policy moved: a KL penalty on every completion token",
         case(_randn(B, seed=806), (lp0 + _randn(B, T, seed=807, scale=0.5)) * left, lp0 * left, left, 0.2)),
        ("right padding (completions end before the last column), junk outside the mask",
         case(_randn(B, seed=808), lp, ref, ragged, 0.05)),
        ("kl_coef = 0: only the scores remain", case(_randn(B, seed=809), lp, ref, ragged.long(), 0.0)),
        ("a batch of one with a one-token completion",
         case(torch.tensor([1.5]), torch.tensor([[-1.0, -2.0, -0.3, 4.0]]),
              torch.tensor([[-1.5, -1.0, -0.9, 7.0]]), torch.tensor([[0.0, 0.0, 1.0, 0.0]]), 0.5)),
    ]


# ---------------------------------------------------------------------------
# adaptive_beta
# ---------------------------------------------------------------------------


def _beta_variant(beta, kl, target, n, horizon, kind):
    """One update of beta as a typical mistake makes it (the correct one for kind="ok")."""
    kl = float(kl)
    raw = {"absolute": lambda: kl - target, "inverted": lambda: target / kl - 1}.get(kind, lambda: kl / target - 1)()
    lo = -float("inf") if kind == "one_sided" else -0.2
    err = raw if kind == "noclip" else min(max(raw, lo), 0.2)
    step = err if kind == "no_horizon" else err * n / horizon
    if kind == "additive":
        return beta + step
    if kind == "exp":
        return beta * torch.tensor(step, dtype=torch.float64).exp().item()
    if kind == "sign":
        return beta * (1 - step)
    return beta * (1 + step)


_BETA_HINTS = {
    "noclip": "the error is not clipped (or not on both sides): e = clip(KL / target - 1, -0.2, 0.2) "
              "bounds how far one rollout can move beta (a single noisy KL estimate must not blow it up).",
    "one_sided": "the error is clipped on one side only: clip it to [-0.2, 0.2], below as well as above.",
    "absolute": "the error is relative: KL / target - 1 (a KL twice the target is an error of +1, "
                "clipped to +0.2), not KL - target.",
    "sign": "wrong sign: a KL ABOVE the target must make beta GROW (a stronger penalty pulls the policy "
            "back); below the target, beta shrinks.",
    "inverted": "the ratio is upside down: the error is KL / target - 1 (positive when the KL is too high).",
    "no_horizon": "the step ignores n_steps / horizon: beta moves by e * n_steps / horizon per update, so "
                  "that the horizon (in samples) sets how fast it adapts, whatever the batch size.",
    "additive": "beta is updated additively: the update is multiplicative, beta * (1 + e * n_steps / horizon).",
    "exp": "that is beta * exp(e * n_steps / horizon): close, but the controller multiplies by "
           "(1 + e * n_steps / horizon).",
}


def _beta_mistakes(steps):
    """``steps``: the (beta_0, kl, target, n, horizon) of each update; thunks replay a mistake over them."""
    def replay(kind):
        def thunk():
            out, b = [], steps[0][0]
            for _, kl, target, n, h in steps:
                b = _beta_variant(b, kl, target, n, h, kind)
                out.append(b)
            return torch.tensor(out, dtype=torch.float64) if len(out) > 1 else torch.tensor(out[0], dtype=torch.float64)
        return thunk

    return [(replay(k), hint) for k, hint in _BETA_HINTS.items()]


def _number(x, what):
    t = _as_tensor(x, what)
    if t.numel() != 1:
        raise _Fail(f"{what} should be one number (beta), got shape {tuple(t.shape)}.")
    return t.reshape(())


@exercise(SET, "adaptive_beta")
def _beta_cases(fn):
    def case(beta, kl, target, n, horizon):
        def run():
            want = torch.tensor(L.AdaptiveKLController(beta, target, horizon).update(kl, n), dtype=torch.float64)
            got = _number(fn(beta, kl.clone() if isinstance(kl, torch.Tensor) else kl, target, n, horizon),
                          "the new beta")
            _expect(got, want, "the new beta", _beta_mistakes([(beta, kl, target, n, horizon)]))
        return run

    def trajectory(beta, kls, target, n, horizon):
        def run():
            ctl = L.AdaptiveKLController(beta, target, horizon)
            want = torch.tensor([ctl.update(kl, n) for kl in kls], dtype=torch.float64)
            got, b = [], beta
            for kl in kls:
                b = fn(b, kl.clone(), target, n, horizon)
                got.append(_number(b, "the new beta"))
            steps = [(beta, kl, target, n, horizon) for kl in kls]
            _expect(torch.stack(got), want, "the betas of ten updates in a row", _beta_mistakes(steps))
        return run

    kls = [torch.tensor(v) for v in (9.0, 7.5, 6.2, 3.1, 2.0, 2.9, 3.0, 12.0, 0.5, 3.3)]
    return [
        ("KL 10 % above the target: beta grows by e * n_steps / horizon", case(0.1, 6.6, 6.0, 256, 10_000)),
        ("KL 10 times the target: the error is clipped at +0.2", case(0.1, 60.0, 6.0, 256, 10_000)),
        ("KL 0: the error is clipped at -0.2", case(0.05, 0.0, 3.0, 48, 100)),
        ("KL on target: beta does not move", case(0.2, 3.0, 3.0, 48, 100)),
        ("n_steps = horizon: one update moves beta by up to 20 %", case(0.05, 4.5, 3.0, 100, 100)),
        ("ten updates in a row, the KL given as a 0-dim tensor (as a rollout's mean)",
         trajectory(0.02, kls, 3.0, 48, 100)),
    ]
