"""The machinery shared by every exercise set's checks.

* `Result` and the recording of results (kept here for ``summary()``; appended as JSON lines
  to the file ``ALIGNLAB_GRADES_FILE`` names, when it is set);
* `_Fail` (a failed test case; its message is the hint) and the time limit (`CheckTimeout`);
* `_expect` (compare one answer with the reference, name the mistake it matches),
  `_expect_grad`, `_needs_grad`, `_grad_case` (the gradient test every loss has);
* the registry: ``@exercise(set_name, name)`` declares the hidden test cases of one exercise;
  `EXERCISE_SETS` and `max_points` are derived from it.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

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


# ---------------------------------------------------------------------------
# Shared test cases and hints
# ---------------------------------------------------------------------------

SUM_HINT = "you summed over the batch: take the mean over the pairs instead (the loss should not grow with B)."
OVERFLOW_HINT = ("overflow: for a large reward gap sigmoid(...) rounds to 0 and log(0) = -inf. Write "
                 "-log sigmoid(x) as -F.logsigmoid(x) (or F.softplus(-x)), which never takes the log of 0.")


def _grad_case(fn, ref, args, checked, *, inputs: str, loss_of: Callable | None = None,
               before_backward: Callable | None = None, constant_hints: dict | None = None):
    """A test case comparing the gradients of the student's loss with the reference's.

    ``ref(*args)`` and ``fn(*args)`` return the loss (``loss_of`` picks it out of ``fn``'s
    result). ``checked`` lists ``(index, name, wants_grad)`` in the order they are checked:
    the argument at ``index`` becomes a leaf that requires grad; with ``wants_grad`` its
    gradient must equal the reference's, else it must get none (it is a constant; a hint
    from ``constant_hints[name]`` replaces the generic one). Other tensor arguments are
    passed as copies. ``before_backward(out)`` may check the raw output first.
    """
    def copy(x):
        return x.clone() if isinstance(x, torch.Tensor) else x

    def run():
        want = {i: _leaf(args[i]) for i, _, _ in checked}
        ref(*[want.get(i, a) for i, a in enumerate(args)]).backward()
        got = {i: _leaf(args[i]) for i, _, _ in checked}
        out = fn(*[got[i] if i in got else copy(a) for i, a in enumerate(args)])
        loss = loss_of(out) if loss_of else out
        _needs_grad(loss, inputs)
        if before_backward:
            before_backward(out)
        loss.backward()
        for i, name, wants_grad in checked:
            x = got[i]
            hint = (constant_hints or {}).get(name)
            if not wants_grad and hint:
                if x.grad is not None and x.grad.abs().sum() > 0:
                    raise _Fail(hint)
                continue
            _expect_grad(x, want[i].grad if wants_grad else None, name)
    return run


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------

Cases = list[tuple[str, Callable[[], None]]]
"""(title, run) for every hidden test case of an exercise; run() raises `_Fail` with the hint."""

_CASES: dict[str, Callable[[object], Cases]] = {}
"""exercise name -> fn(student_fn) -> its cases, in registration order."""

EXERCISE_SETS: dict[str, tuple[str, ...]] = {}
"""Which exercises each exercise notebook contains (the key is the notebook's stem), filled by
``@exercise`` as the per-set modules are imported."""


def exercise(set_name: str, name: str):
    """Register the function that builds the hidden test cases of exercise ``name`` of ``set_name``."""
    def deco(build):
        if name in _CASES:
            raise ValueError(f"exercise {name!r} is registered twice")
        _CASES[name] = build
        EXERCISE_SETS[set_name] = (*EXERCISE_SETS.get(set_name, ()), name)
        return build
    return deco


@functools.cache
def max_points(name: str) -> int:
    """How many points exercise ``name`` is worth (one per hidden test case).

    The cases are built once per process (with a placeholder function, never called)."""
    return len(_CASES[name](None))
