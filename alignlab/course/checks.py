"""In-notebook checks for the exercises, and the hidden tests behind them.

An exercise notebook asks the student to write the few lines that define a method
(the Bradley-Terry loss, GAE, PPO's clipped losses, DPO, KTO). After each exercise
a check cell runs

    check("dpo_loss", dpo_loss)

which calls the student's function on hidden test cases (random inputs, padding,
extreme values, a batch of one, gradients) and compares every answer with the
reference implementation in ``alignlab.losses``, a module the student does not
edit. It prints one line, never a traceback:

    ✅ dpo_loss: all 6 tests passed (6/6 points)
    ❌ dpo_loss: 4/6 tests passed (4/6 points)
       • extreme values (|beta*h| = 500): the loss is inf ... use F.logsigmoid
    ⏳ dpo_loss: not attempted yet (the function still raises NotImplementedError)

When a test fails, the check compares the student's answer with the answers that
typical mistakes would give (sign flipped, sum instead of mean, mask ignored,
gradient not detached, naive overflow...) and names the mistake it recognises.

Points: one per test case. ``summary()`` prints the score table of the notebook.

Results are also *recorded*: kept in this module (for ``summary()``) and, when the
environment variable ``ALIGNLAB_GRADES_FILE`` names a file (the grader sets it),
appended to it as one JSON object per line. ``alignlab.course.grading`` reads that file.

Every check runs under a time limit (``ALIGNLAB_CHECK_TIMEOUT`` seconds, default 20;
POSIX only, via SIGALRM), so a student's infinite loop gives a failed check instead
of a frozen notebook.

Contents:
    EXERCISE_SETS  exercise set (= notebook) -> the exercises it contains
    CHECKS         exercise name -> fn(student_fn) -> (passed, points, hint)
    check(name, fn)          the in-notebook call: prints, records
    run_check(name, fn)      the same, returning a `Result` (for tests and the grader)
    summary(set_name)        prints the score table
    ready(name, fn)          guard for a cell that trains with the student's function
    grade_namespace(set, ns) what the grader's final cell runs
"""

from __future__ import annotations

import json
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

from .. import losses as L

EXERCISE_SETS: dict[str, tuple[str, ...]] = {
    "01_bradley_terry": ("bt_loss", "rm_accuracy"),
    "02_gae": ("discounted_returns", "compute_gae"),
    "03_ppo": ("ppo_clip_loss", "value_loss_clipped"),
    "04_dpo": ("dpo_loss",),
    "05_kto": ("kto_z0", "kto_loss"),
}
"""Which exercises each exercise notebook contains (the key is the notebook's stem)."""

GRADES_FILE_ENV = "ALIGNLAB_GRADES_FILE"
TIMEOUT_ENV = "ALIGNLAB_CHECK_TIMEOUT"
DEFAULT_TIMEOUT = 20.0


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass
class Result:
    """The outcome of one check."""

    name: str
    status: str
    """passed | failed | not attempted | timeout | missing"""
    points: int
    max_points: int
    hint: str = ""
    """Empty when passed; otherwise what went wrong, one bullet per failed test."""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def line(self) -> str:
        """The one line (plus hint bullets) that ``check`` prints."""
        pts = f"({self.points}/{self.max_points} points)"
        if self.status == "passed":
            return f"✅ {self.name}: all {self.max_points} tests passed {pts}"
        if self.status == "not attempted":
            return f"⏳ {self.name}: not attempted yet (the function still raises NotImplementedError)"
        if self.status in ("missing", "timeout"):
            return f"❌ {self.name}: {self.hint} {pts}"
        return f"❌ {self.name}: {self.points}/{self.max_points} tests passed {pts}\n{self.hint}"


_RESULTS: dict[str, Result] = {}


def _record(result: Result, source: str) -> None:
    _RESULTS[result.name] = result
    path = os.environ.get(GRADES_FILE_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({**asdict(result), "source": source}) + "\n")
            f.flush()


def results() -> dict[str, Result]:
    """The latest result of every exercise checked in this session."""
    return dict(_RESULTS)


# ---------------------------------------------------------------------------
# Test-case machinery
# ---------------------------------------------------------------------------


class _Fail(Exception):
    """A test case failed; the message is the hint shown to the student."""


class CheckTimeout(BaseException):
    """Raised inside a check that ran past its time limit (a BaseException, so that a
    student's ``except Exception`` cannot swallow it)."""


@contextmanager
def _time_limit(seconds):
    usable = (seconds and seconds > 0 and hasattr(signal, "SIGALRM")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def _alarm(signum, frame):
        raise CheckTimeout()

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed)) * scale


def _leaf(x: torch.Tensor) -> torch.Tensor:
    """A fresh copy of ``x`` that requires grad."""
    return x.detach().clone().requires_grad_(True)


def _fmt(x: torch.Tensor) -> str:
    if x.dim() == 0:
        return f"{x.item():.5g}"
    flat = x.detach().flatten()[:6].tolist()
    more = ", ..." if x.numel() > 6 else ""
    return "[" + ", ".join(f"{v:.4g}" for v in flat) + more + f"] (shape {tuple(x.shape)})"


def _as_tensor(x, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().double()
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return torch.tensor(float(x), dtype=torch.float64)
    try:
        import numpy as np

        if isinstance(x, (np.ndarray, np.generic)):
            return torch.as_tensor(np.asarray(x, dtype=float))
    except ImportError:  # pragma: no cover
        pass
    if x is None:
        raise _Fail(f"{what} is None: did you forget the `return`?")
    raise _Fail(f"{what} should be a tensor (or a number), got {type(x).__name__}.")


def _close(a: torch.Tensor, b: torch.Tensor, rtol=1e-4, atol=1e-5) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol,
                                                       equal_nan=False))


def _candidate(thunk):
    """Evaluate a would-be-mistake answer; None if it cannot be computed."""
    try:
        with torch.no_grad():
            v = thunk()
        return v.detach().double() if isinstance(v, torch.Tensor) else torch.tensor(float(v)).double()
    except Exception:
        return None


def _expect(got, want: torch.Tensor, what: str, mistakes=(), shape_hint: str = "",
            nonfinite: str = "") -> None:
    """Compare one student answer with the reference; name the mistake if one matches.

    mistakes: (thunk, hint) pairs; thunk() computes the answer a typical mistake gives.
    nonfinite: the hint when the answer has NaN/inf where the reference is finite.
    """
    g = _as_tensor(got, what)
    w = want.detach().double()
    if g.dim() == 1 and g.numel() == 1 and w.dim() == 0:
        g = g.reshape(())  # a (1,) tensor for a scalar is fine
    if g.shape != w.shape:
        raise _Fail(f"{what} has shape {tuple(g.shape)}, expected {tuple(w.shape)}. {shape_hint}".strip())
    if _close(g, w):
        return
    for thunk, hint in mistakes:
        c = _candidate(thunk)
        if c is not None and c.shape == w.shape and torch.isfinite(c).all() and _close(g, c):
            raise _Fail(hint)
    if not torch.isfinite(g).all() and torch.isfinite(w).all():
        if nonfinite:
            raise _Fail(nonfinite)
        raise _Fail(f"{what} contains NaN or inf ({_fmt(g)}), expected finite values {_fmt(w)}.")
    raise _Fail(f"{what} is {_fmt(g)}, expected {_fmt(w)}.")


def _first(out, what: str, n: int | None = None):
    """Pick the loss out of a function result that may be a tuple (loss, ...)."""
    if n is not None:
        if not isinstance(out, (tuple, list)) or len(out) != n:
            kind = type(out).__name__ if not isinstance(out, (tuple, list)) else f"{len(out)} values"
            raise _Fail(f"{what} should return {n} values, got {kind}.")
        return out
    if isinstance(out, (tuple, list)):
        if not out:
            raise _Fail(f"{what} returned an empty tuple.")
        return out[0]
    return out


def _needs_grad(loss, inputs: str):
    if not isinstance(loss, torch.Tensor):
        raise _Fail(f"the loss is a {type(loss).__name__}, not a tensor, so no gradient can flow: "
                    "do not call .item() or float() on it.")
    if not loss.requires_grad:
        raise _Fail(f"no gradient reaches {inputs}: the loss was cut from the graph "
                    "(a .detach(), .item(), torch.no_grad() or torch.tensor(...) on the inputs?).")
    if loss.dim() != 0 and loss.numel() != 1:
        raise _Fail(f"the loss should be a scalar, got shape {tuple(loss.shape)}: take the mean.")


def _expect_grad(x: torch.Tensor, want, name: str, mistakes=()) -> None:
    """want None: ``x`` must get no gradient (a constant); else x.grad must equal ``want``."""
    if want is None:
        if x.grad is not None and x.grad.abs().sum() > 0:
            raise _Fail(f"a gradient flows into `{name}`, which must be a constant: "
                        f"use `{name}.detach()` (or compute it under torch.no_grad()).")
        return
    if x.grad is None:
        if not want.abs().sum() > 0:
            return
        raise _Fail(f"no gradient reaches `{name}`: was it detached, or not used?")
    _expect(x.grad, want, f"the gradient w.r.t. `{name}`", mistakes)


def _mask(B: int, T: int, spans) -> torch.Tensor:
    """A (B, T) float mask with ones on [start, end) of each row."""
    m = torch.zeros(B, T)
    for i, (a, b) in enumerate(spans):
        m[i, a:b] = 1
    return m


def _garbage(x: torch.Tensor, mask: torch.Tensor, seed: int, scale: float = 5.0) -> torch.Tensor:
    """``x`` with random junk written at padding positions (mask == 0)."""
    junk = 3.0 + _randn(*x.shape, seed=seed).abs() * scale
    return torch.where(mask.bool(), x, junk)


_CASES: dict[str, object] = {}


def _cases(name: str):
    def deco(fn):
        _CASES[name] = fn
        return fn
    return deco


def max_points(name: str) -> int:
    """How many points exercise ``name`` is worth (one per hidden test case)."""
    return len(_CASES[name](None))


# ---------------------------------------------------------------------------
# 01 Bradley-Terry: bt_loss, rm_accuracy
# ---------------------------------------------------------------------------

_SIGN_BT = ("wrong sign: your loss is the one with chosen and rejected swapped. The loss must "
            "fall as r_chosen rises above r_rejected: loss = -log sigmoid(r_chosen - r_rejected).")
_SUM = "you summed over the batch: take the mean over the pairs instead (the loss should not grow with B)."
_OVERFLOW = ("overflow: for a large reward gap sigmoid(...) rounds to 0 and log(0) = -inf. Write "
             "-log sigmoid(x) as -F.logsigmoid(x) (or F.softplus(-x)), which never takes the log of 0.")


@_cases("bt_loss")
def _bt_loss_cases(fn):
    def bt_mistakes(rc, rr):
        B = rc.shape[0]
        return [
            (lambda: L.bt_loss(rr, rc), _SIGN_BT),
            (lambda: L.bt_loss(rc, rr) * B, _SUM),
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
                    "The loss is one number: the mean over the batch.", nonfinite=_OVERFLOW)
        return run

    def grad_case():
        rc, rr = _randn(7, seed=13), _randn(7, seed=14)
        a, b = _leaf(rc), _leaf(rr)
        L.bt_loss(a, b).backward()
        x, y = _leaf(rc), _leaf(rr)
        loss = fn(x, y)
        _needs_grad(loss, "the rewards")
        loss.backward()
        _expect_grad(x, a.grad, "r_chosen")
        _expect_grad(y, b.grad, "r_rejected")

    same = _randn(6, seed=10)
    return [
        ("equal rewards: loss = ln 2", value_case(same, same.clone())),
        ("random rewards (B = 8)", value_case(_randn(8, seed=11, scale=2), _randn(8, seed=12, scale=2))),
        ("batch of one", value_case(torch.tensor([0.3]), torch.tensor([1.1]))),
        ("extreme gap (r_c - r_r = -200)", value_case(torch.tensor([-100.0, 2.0]), torch.tensor([100.0, 1.0]))),
        ("gradients w.r.t. both rewards", grad_case),
    ]


@_cases("rm_accuracy")
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


# ---------------------------------------------------------------------------
# 02 GAE: discounted_returns, compute_gae
# ---------------------------------------------------------------------------

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


@_cases("discounted_returns")
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
                thunk = (lambda mi=mi, mn=mn, mo=mo: ref_fn(mask_inputs=mi, mask_next=mn, mask_out=mo))
                c = _candidate(thunk)
                same_where_valid = c is not None and _close(c * m, want * m)
                out.append((thunk, _PAD_NONZERO if same_where_valid else _LEAK))
    return out


@_cases("compute_gae")
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
        ("gamma = 0.9, lam = 0.8, no padding", case(_randn(3, 6, seed=50), _randn(3, 6, seed=51), torch.ones(3, 6), 0.9, 0.8)),
        ("padded batch (left and right padding, junk at padding)", case(r, v, m, 0.95, 0.9)),
        ("a single token", case(torch.tensor([[0.5]]), torch.tensor([[0.2]]), torch.ones(1, 1), 0.9, 0.9)),
        ("no gradient flows through advantages and returns", no_grad_case),
    ]


# ---------------------------------------------------------------------------
# 03 PPO: ppo_clip_loss, value_loss_clipped
# ---------------------------------------------------------------------------


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


@_cases("ppo_clip_loss")
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

    def grad_case():
        m = _mask(3, 6, [(0, 6), (2, 6), (1, 4)])
        old = _randn(3, 6, seed=66) - 2
        lp = old + _randn(3, 6, seed=67, scale=0.3)
        adv = _randn(3, 6, seed=68)
        a, o, d = _leaf(lp), _leaf(old), _leaf(adv)
        L.ppo_clip_loss(a, o, d, m, 0.2)[0].backward()
        x, y, z = _leaf(lp), _leaf(old), _leaf(adv)
        loss = _first(fn(x, y, z, m.clone(), 0.2), "ppo_clip_loss")
        _needs_grad(loss, "logprobs")
        loss.backward()
        _expect_grad(x, a.grad, "logprobs")
        _expect_grad(y, None, "old_logprobs")
        _expect_grad(z, None, "advantages")

    B, T = 4, 7
    m = _mask(B, T, [(0, 7), (2, 7), (1, 5), (3, 4)])
    old = _garbage(_randn(B, T, seed=60) - 2, m, seed=61)
    lp = _garbage(old + _randn(B, T, seed=62, scale=0.5), m, seed=63)
    adv = _garbage(_randn(B, T, seed=64), m, seed=65)
    full = torch.ones(3, 5)
    o2 = _randn(3, 5, seed=70) - 2
    return [
        ("step 0 (logprobs == old_logprobs): loss = -mean(A)", case(o2.clone(), o2, _randn(3, 5, seed=71), full, 0.2)),
        ("small policy change, no clipping", case(o2 + _randn(3, 5, seed=72, scale=0.05), o2, _randn(3, 5, seed=73), full, 0.2)),
        ("large policy change (clipping active)", case(o2 + _randn(3, 5, seed=74), o2, _randn(3, 5, seed=75), full, 0.2)),
        ("padded batch (junk at padding)", case(lp, old, adv, m, 0.2)),
        ("batch of one", case(torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]]), torch.tensor([[1.0, -0.5]]), torch.ones(1, 2), 0.1)),
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


@_cases("value_loss_clipped")
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

    def grad_case():
        m = _mask(3, 6, [(0, 6), (2, 6), (1, 4)])
        old = _randn(3, 6, seed=86)
        v = old + _randn(3, 6, seed=87, scale=0.4)
        ret = _randn(3, 6, seed=88)
        a, o, r = _leaf(v), _leaf(old), _leaf(ret)
        L.value_loss_clipped(a, o, r, m, 0.2)[0].backward()
        x, y, z = _leaf(v), _leaf(old), _leaf(ret)
        loss = _first(fn(x, y, z, m.clone(), 0.2), "value_loss_clipped")
        _needs_grad(loss, "values")
        loss.backward()
        _expect_grad(x, a.grad, "values")
        _expect_grad(y, None, "old_values")
        _expect_grad(z, None, "returns")

    B, T = 4, 7
    m = _mask(B, T, [(0, 7), (2, 7), (1, 5), (3, 4)])
    old = _garbage(_randn(B, T, seed=80), m, seed=81)
    v = _garbage(old + _randn(B, T, seed=82, scale=0.5), m, seed=83)
    ret = _garbage(_randn(B, T, seed=84), m, seed=85)
    full = torch.ones(3, 5)
    o2 = _randn(3, 5, seed=90)
    return [
        ("step 0 (values == old_values): 0.5 * mean((V - R)^2)", case(o2.clone(), o2, _randn(3, 5, seed=91), full, 0.2)),
        ("values far from old_values (clipping active)", case(o2 + _randn(3, 5, seed=92), o2, _randn(3, 5, seed=93), full, 0.2)),
        ("padded batch (junk at padding)", case(v, old, ret, m, 0.2)),
        ("batch of one", case(torch.tensor([[0.5, -0.3]]), torch.tensor([[0.1, 0.2]]), torch.tensor([[1.0, -1.0]]), torch.ones(1, 2), 0.1)),
        ("gradients: to values only", grad_case),
    ]


# ---------------------------------------------------------------------------
# 04 DPO: dpo_loss
# ---------------------------------------------------------------------------


@_cases("dpo_loss")
def _dpo_cases(fn):
    def loss_mistakes(pc, pr, rc, rr, beta):
        B = pc.shape[0]
        ref = lambda *a, b=beta: L.dpo_loss(*a, beta=b)[0]  # noqa: E731
        return [
            (lambda: ref(pr, pc, rr, rc), "wrong sign: your loss rewards the REJECTED completion. "
                                         "h = (log pi(y_c) - log ref(y_c)) - (log pi(y_r) - log ref(y_r))."),
            (lambda: ref(pc, pr, rc, rr, b=1.0), "beta is missing: loss = -log sigmoid(beta * h)."),
            (lambda: ref(pc, pr, rc, rr) * B, _SUM),
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

    def grad_case():
        pc, pr = _randn(5, seed=105) - 10, _randn(5, seed=106) - 10
        rc, rr = _randn(5, seed=107) - 10, _randn(5, seed=108) - 10
        a, b = _leaf(pc), _leaf(pr)
        L.dpo_loss(a, b, rc, rr, 0.5)[0].backward()
        x, y = _leaf(pc), _leaf(pr)
        out = _first(fn(x, y, rc.clone(), rr.clone(), 0.5), "dpo_loss", n=3)
        _needs_grad(out[0], "the policy log-probs")
        for what, r in zip(("chosen_rewards", "rejected_rewards"), out[1:]):
            if isinstance(r, torch.Tensor) and r.requires_grad:
                raise _Fail(f"{what} carry a gradient (forgot to detach): the implicit rewards are for "
                            "logging only; return beta * (logp - ref_logp).detach().")
        out[0].backward()
        _expect_grad(x, a.grad, "policy_chosen_logps")
        _expect_grad(y, b.grad, "policy_rejected_logps")

    def extreme_case():
        pc, pr = torch.tensor([-10.0, -5010.0]), torch.tensor([-5010.0, -10.0])
        rc, rr = torch.tensor([-10.0, -10.0]), torch.tensor([-10.0, -10.0])
        want = L.dpo_loss(pc, pr, rc, rr, 0.1)[0]
        out = _first(fn(pc.clone(), pr.clone(), rc.clone(), rr.clone(), 0.1), "dpo_loss", n=3)
        _expect(out[0], want, "the loss", loss_mistakes(pc, pr, rc, rr, 0.1), nonfinite=_OVERFLOW)

    s = _randn(6, seed=100) - 20
    t = _randn(6, seed=101) - 20
    return [
        ("step 0 (policy == reference): loss = ln 2, rewards 0", case(s.clone(), t.clone(), s, t, 0.1)),
        ("random log-probs (B = 8, beta = 0.1)",
         case(_randn(8, seed=102, scale=3) - 20, _randn(8, seed=103, scale=3) - 20,
              _randn(8, seed=104, scale=3) - 20, _randn(8, seed=109, scale=3) - 20, 0.1)),
        ("beta = 0.5, implicit rewards", case(_randn(6, seed=110) - 5, _randn(6, seed=111) - 5,
                                              _randn(6, seed=112) - 5, _randn(6, seed=113) - 5, 0.5)),
        ("batch of one", case(torch.tensor([-3.0]), torch.tensor([-4.0]), torch.tensor([-3.5]), torch.tensor([-3.0]), 0.2)),
        ("extreme values (|beta * h| = 500)", extreme_case),
        ("gradients; rewards detached", grad_case),
    ]


# ---------------------------------------------------------------------------
# 05 KTO: kto_z0, kto_loss
# ---------------------------------------------------------------------------


@_cases("kto_z0")
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


@_cases("kto_loss")
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
            (lambda: _kto_ref(pl, rl, lab, pk, rk, beta, ld, lu) * pl.shape[0], _SUM),
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

    def grad_case():
        pl, rl = _randn(6, seed=140, scale=3) - 10, _randn(6, seed=141, scale=3) - 10
        pk, rk = _randn(6, seed=142, scale=3) - 9, _randn(6, seed=143, scale=3) - 10
        lab = torch.tensor([True, False, True, True, False, False])
        a, k = _leaf(pl), _leaf(pk)
        L.kto_loss(a, rl, lab, k, rk, 0.5, 1.0, 1.0)[0].backward()
        x, y = _leaf(pl), _leaf(pk)
        loss = _first(fn(x, rl.clone(), lab.clone(), y, rk.clone(), 0.5, 1.0, 1.0), "kto_loss")
        _needs_grad(loss, "policy_logps")
        loss.backward()
        if y.grad is not None and y.grad.abs().sum() > 0:
            raise _Fail("a gradient flows into z0 (through policy_kl_logps): the reference point is a "
                        "constant in KTO; detach it (your kto_z0 should return a detached value).")
        _expect_grad(x, a.grad, "policy_logps")

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


# ---------------------------------------------------------------------------
# Running checks
# ---------------------------------------------------------------------------


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    msg = msg[0] if msg else ""
    return f"{type(e).__name__}: {msg[:200]}" if msg else type(e).__name__


def _default_timeout():
    try:
        return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def run_check(name: str, fn, timeout: float | None = None) -> Result:
    """Run every hidden test of exercise ``name`` on ``fn``; return a `Result` (prints nothing)."""
    if name not in _CASES:
        raise KeyError(f"no check named {name!r}; the checks are {sorted(_CASES)}")
    cases = _CASES[name](fn)
    total = len(cases)
    if not callable(fn):
        return Result(name, "missing", 0, total, f"`{name}` is not a function (got {type(fn).__name__}).")
    timeout = _default_timeout() if timeout is None else timeout
    passed, hints = 0, []
    try:
        with _time_limit(timeout):
            for i, (title, run) in enumerate(cases):
                try:
                    with torch.random.fork_rng():  # the student's code may draw random numbers
                        run()
                    passed += 1
                except NotImplementedError:
                    if i == 0:
                        return Result(name, "not attempted", 0, total,
                                      "not attempted yet (the function still raises NotImplementedError)")
                    hints.append(f"   • {title}: raised NotImplementedError")
                except _Fail as e:
                    hints.append(f"   • {title}: {e}")
                except RecursionError as e:
                    hints.append(f"   • {title}: {_short(e)} (does the function call itself?)")
                except (Exception, SystemExit) as e:  # the student's code crashed: report it, never re-raise
                    hints.append(f"   • {title}: your function raised {_short(e)}")
    except CheckTimeout:
        return Result(name, "timeout", passed, total,
                      f"did not finish within {timeout:g} s (an infinite loop?); {passed} test(s) passed before")
    status = "passed" if passed == total else "failed"
    return Result(name, status, passed, total, "\n".join(hints))


def _make_check(name):
    def check_fn(student_fn):
        r = run_check(name, student_fn)
        return r.passed, r.points, r.hint
    check_fn.__name__ = f"check_{name}"
    check_fn.__doc__ = f"Run the hidden tests of `{name}`: returns (passed, points, hint)."
    return check_fn


CHECKS = {name: _make_check(name) for name in _CASES}
"""exercise name -> fn(student_fn) -> (passed: bool, points: int, hint: str)."""


def check(name: str, fn) -> None:
    """Test the student's ``fn`` for exercise ``name``; print a pass or a hint; record the result."""
    try:
        result = run_check(name, fn)
    except KeyError as e:
        print(f"❌ {e.args[0]}")
        return
    except KeyboardInterrupt:  # stopped by the user or by the grader's time limit
        _record(Result(name, "timeout", 0, max_points(name), "interrupted (time limit?)"), "cell")
        raise
    _record(result, "cell")
    print(result.line())


def ready(name: str, fn) -> bool:
    """Should a cell that trains with the student's ``fn`` run? Prints why not.

    False (skip) while ``fn`` is not implemented; True otherwise, with a warning if its
    check has not passed (training a wrong loss is allowed: it shows what goes wrong).
    """
    result = _RESULTS.get(name)
    if result is None:
        result = run_check(name, fn)
    if result.status in ("not attempted", "missing", "timeout"):
        print(f"⏭  skipped: `{name}` is not implemented yet ({result.status}). "
              "Solve the exercise above, run its check, then this cell.")
        return False
    if not result.passed:
        print(f"⚠  `{name}` has not passed all its checks ({result.points}/{result.max_points}): "
              "training with it anyway, expect odd curves.")
    return True


def score(set_name: str | None = None) -> dict:
    """{"points", "max_points", "passed": [names]} for the exercises of ``set_name``
    (else every exercise checked so far)."""
    names = list(EXERCISE_SETS.get(set_name, ())) if set_name else list(_RESULTS)
    got = sum(_RESULTS[n].points for n in names if n in _RESULTS)
    return {"points": got, "max_points": sum(max_points(n) for n in names),
            "passed": [n for n in names if n in _RESULTS and _RESULTS[n].passed]}


def summary(set_name: str | None = None) -> None:
    """Print the score table (the exercises of ``set_name``, else every one checked so far)."""
    names = list(EXERCISE_SETS.get(set_name, ())) if set_name else list(_RESULTS)
    rows, got, total = [], 0, 0
    for n in names:
        r = _RESULTS.get(n)
        mp = max_points(n)
        if r is None:
            rows.append((n, f"0/{mp}", "· not checked yet (run its check cell)"))
        else:
            mark = {"passed": "✅ passed", "not attempted": "⏳ not attempted"}.get(r.status, f"❌ {r.status}")
            rows.append((n, f"{r.points}/{r.max_points}", mark))
            got += r.points
        total += mp
    width = max([len(n) for n in names] + [8])
    print(f"{'exercise':<{width}}  points  status")
    for n, pts, mark in rows:
        print(f"{n:<{width}}  {pts:>6}  {mark}")
    print(f"{'total':<{width}}  {f'{got}/{total}':>6}")


def all_passed(set_name: str) -> bool:
    """True when every exercise of ``set_name`` has passed its check in this session."""
    return all(n in _RESULTS and _RESULTS[n].passed for n in EXERCISE_SETS[set_name])


def grade_namespace(set_name: str, namespace: dict, timeout: float | None = None) -> None:
    """Check every exercise of ``set_name`` against the functions found in ``namespace``.

    This is what ``alignlab.course.grading`` runs in a last cell it appends to each submission:
    it grades the functions as they are at the end of the notebook, whether or not the
    student kept the check cells. A missing (deleted or renamed) function scores 0.
    """
    for name in EXERCISE_SETS[set_name]:
        fn = namespace.get(name)
        if fn is None:
            r = Result(name, "missing", 0, max_points(name),
                       f"no function named `{name}` in the notebook (renamed or deleted?)")
        else:
            try:
                r = run_check(name, fn, timeout)
            except KeyboardInterrupt:
                r = Result(name, "timeout", 0, max_points(name), "interrupted (time limit)")
                _record(r, "grader")
                raise
        _record(r, "grader")
    summary(set_name)
