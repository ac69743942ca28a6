"""06 online preference learning: ``vpo_loss`` (both signs) and ``bpo_reference`` (the swap)."""

from __future__ import annotations

import torch

from ... import losses as L
from .harness import OVERFLOW_HINT, SUM_HINT, _expect, _Fail, _first, _grad_case, _randn, exercise

SET = "06_online"

SIGN_HINT = ("wrong sign of the regulariser: online (optimism) ADDS + alpha * beta * mean(log pi - log ref) "
             "of the calibration samples, so minimising pushes the reference's samples DOWN; offline "
             "(pessimism) subtracts it.")
BETA_HINT = "the regulariser is not scaled by beta: it is alpha * beta * mean(cal_pc - cal_rc)."
RATIO_HINT = ("the regulariser needs the log-RATIO of the calibration samples, cal_pc - cal_rc (that is the XPO "
              "form, alpha * log pi alone); VPO's term is exactly 0 at step 0.")


@exercise(SET, "vpo_loss")
def _vpo_cases(fn):
    def value(pc, pr, rc, rr, cp, cr, beta, alpha, mode):
        return L.vpo_loss(pc, pr, rc, rr, cp, cr, beta, alpha, mode)[0]

    def mistakes(pc, pr, rc, rr, cp, cr, beta, alpha, mode):
        sign = L.VPO_MODES[mode]
        dpo = L.dpo_loss(pc, pr, rc, rr, beta)[0]
        ratio = (cp - cr).mean()
        return [
            (lambda: dpo - sign * alpha * beta * ratio, SIGN_HINT),
            (lambda: dpo + sign * alpha * ratio, BETA_HINT),
            (lambda: dpo + sign * alpha * beta * cp.mean(), RATIO_HINT),
            (lambda: dpo + sign * alpha * beta * (cp - cr).sum(), SUM_HINT.replace("pairs", "calibration samples")),
            (lambda: dpo, "the regulariser is missing: add sign * alpha * beta * mean(cal_pc - cal_rc) "
                          "(sign +1 for mode='online', -1 for 'offline')."),
            (lambda: L.dpo_loss(pr, pc, rr, rc, beta)[0] + sign * alpha * beta * ratio,
             "the DPO part has the wrong sign: it rewards the REJECTED completion."),
            (lambda: L.dpo_loss(pc, pr, rc, rr, beta)[0] * pc.shape[0] + sign * alpha * beta * ratio, SUM_HINT),
        ]

    def case(args, mode, beta=0.1, alpha=0.5):
        def run():
            want = value(*args, beta, alpha, mode)
            got = _first(fn(*[a.clone() for a in args], beta, alpha, mode), "vpo_loss")
            _expect(got, want, f"the loss (mode={mode!r})", mistakes(*args, beta, alpha, mode),
                    "The loss is one number.", nonfinite=OVERFLOW_HINT)
        return run

    def both_modes_differ():
        args = [_randn(5, seed=s) - 12 for s in (620, 621, 622, 623, 624, 625)]
        on = _first(fn(*[a.clone() for a in args], 0.2, 1.0, "online"), "vpo_loss")
        off = _first(fn(*[a.clone() for a in args], 0.2, 1.0, "offline"), "vpo_loss")
        _expect(on, value(*args, 0.2, 1.0, "online"), "the online loss", mistakes(*args, 0.2, 1.0, "online"))
        if torch.is_tensor(off) and torch.allclose(torch.as_tensor(on).double(), torch.as_tensor(off).double()):
            raise _Fail("mode='online' and mode='offline' give the same loss: the mode must flip the sign "
                        "of the regulariser (+1 online, -1 offline).")
        _expect(off, value(*args, 0.2, 1.0, "offline"), "the offline loss", mistakes(*args, 0.2, 1.0, "offline"))

    s, t, c = _randn(6, seed=600) - 20, _randn(6, seed=601) - 20, _randn(4, seed=602) - 15

    def step0():
        got = _first(fn(s.clone(), t.clone(), s.clone(), t.clone(), c.clone(), c.clone(), 0.1, 2.0, "online"),
                     "vpo_loss")
        _expect(got, torch.tensor(0.6931471805599453), "the step-0 loss",
                [(lambda: L.dpo_loss(s, t, s, t, 0.1)[0] + 2.0 * 0.1 * c.mean(), RATIO_HINT)],
                "The loss is one number.")

    def extreme():
        pc, pr = torch.tensor([-10.0, -5010.0]), torch.tensor([-5010.0, -10.0])
        rc = rr = torch.tensor([-10.0, -10.0])
        cp, cr = torch.tensor([-9.0, -11.0]), torch.tensor([-10.0, -10.0])
        want = value(pc, pr, rc, rr, cp, cr, 0.1, 0.5, "online")
        got = _first(fn(pc.clone(), pr.clone(), rc.clone(), rr.clone(), cp.clone(), cr.clone(), 0.1, 0.5, "online"),
                     "vpo_loss")
        _expect(got, want, "the loss", mistakes(pc, pr, rc, rr, cp, cr, 0.1, 0.5, "online"), nonfinite=OVERFLOW_HINT)

    grad_args = tuple(_randn(5, seed=sd) - 10 for sd in (630, 631, 632, 633)) + \
        (_randn(3, seed=634) - 8, _randn(3, seed=635) - 8, 0.3, 0.8, "online")
    grad_case = _grad_case(fn, lambda *a: value(*a), grad_args,
                           [(0, "pc", True), (1, "pr", True), (4, "cal_pc", True)],
                           inputs="the policy log-probs", loss_of=lambda out: _first(out, "vpo_loss"))
    return [
        ("step 0 (policy == reference): loss = ln 2, regulariser 0", step0),
        ("online, B = 8, M = 8", case([_randn(8, seed=603 + k, scale=3) - 20 for k in range(6)], "online")),
        ("offline, B = 6, M = 12 (the pairs' own completions)",
         case([_randn(6, seed=610 + k, scale=2) - 15 for k in range(4)]
              + [_randn(12, seed=615, scale=2) - 15, _randn(12, seed=616, scale=2) - 15], "offline", 0.3, 0.2)),
        ("the two modes have opposite signs", both_modes_differ),
        ("extreme values (|beta * h| = 500)", extreme),
        ("gradients (policy log-probs, calibration samples)", grad_case),
    ]


@exercise(SET, "bpo_reference")
def _bpo_cases(fn):
    def call(step, S, policy, reference):
        out = fn(step, S, policy.clone().requires_grad_(True), reference.clone())
        if not isinstance(out, torch.Tensor):
            raise _Fail(f"bpo_reference should return a tensor (the reference weights), got {type(out).__name__}"
                        + (": did you forget the `return`?" if out is None else "."))
        if out.shape != policy.shape:
            raise _Fail(f"the reference weights have shape {tuple(out.shape)}, expected {tuple(policy.shape)}.")
        return out

    def swap_case(step, S):
        def run():
            policy, reference = _randn(7, seed=700 + step), _randn(7, seed=800 + step)
            out = call(step, S, policy, reference)
            if torch.allclose(out, reference) and not torch.allclose(out, policy):
                late = " (one step late?)" if step > 1 else ""
                raise _Fail(f"step {step} starts a phase (steps_per_phase = {S}) but the old reference was kept"
                            f"{late}. Phase f (0-based) starts at step f * steps_per_phase + 1, steps count from 1; "
                            "a reference that never changes is online DPO with the SFT reference, not BPO.")
            if not torch.allclose(out, policy):
                raise _Fail(f"at the start of a phase the reference becomes a copy of the policy's weights; "
                            f"got something else ({out[:3].tolist()}...).")
            if out.requires_grad:
                raise _Fail("the reference is not frozen: it still requires grad (gradient would flow into the "
                            "reference and it would move with the policy). Return policy_weights.detach().clone().")
        return run

    def keep_case(step, S):
        def run():
            policy, reference = _randn(7, seed=710 + step), _randn(7, seed=810 + step)
            out = call(step, S, policy, reference)
            if torch.allclose(out, policy):
                at_end = step % S == 0
                raise _Fail(f"step {step} is inside a phase but the reference was replaced by the policy"
                            + (" (one step early? phases start at steps 1, S + 1, 2S + 1, ...)" if at_end else "")
                            + ". A reference taken from the current policy makes the DPO loss exactly ln 2 at "
                              "every step: BPO's reference is frozen for the whole phase.")
            if not torch.allclose(out, reference):
                raise _Fail("inside a phase the reference must stay what it was (return reference_weights).")
        return run

    def whole_run():
        S, n = 3, 9
        policy, reference = _randn(5, seed=900), _randn(5, seed=901)
        swaps = []
        for step in range(1, n + 1):
            out = call(step, S, policy, reference)
            if torch.allclose(out, policy) and not torch.allclose(reference, policy):
                swaps.append(step)
            reference = out.detach().clone()
            policy = policy + 0.1 * _randn(5, seed=902 + step)  # the optimiser moves the policy
        if swaps != [1, 4, 7]:
            raise _Fail(f"over 9 steps with steps_per_phase = 3 the reference should be replaced at steps "
                        f"[1, 4, 7]; yours was replaced at {swaps}.")

    return [
        ("step 1 starts phase 0: reference = a frozen copy of the policy", swap_case(1, 4)),
        ("step 5 starts phase 1 (steps_per_phase = 4)", swap_case(5, 4)),
        ("step 2 is inside phase 0: keep the reference", keep_case(2, 4)),
        ("step 4 ends phase 0: keep the reference", keep_case(4, 4)),
        ("F = 1 (steps_per_phase = steps): never replaced after step 1", keep_case(30, 40)),
        ("a whole run: 9 steps, 3 phases", whole_run),
    ]
