"""The runner of the checks: what a notebook calls (`check`, `ready`, `summary`), and what
the tests and the grader call (`run_check`, `grade_namespace`).

`run_check` runs the hidden test cases of one exercise (registered by the per-set modules
with ``@exercise``, see `harness`) on the student's function, under a time limit, and turns
every failure into a hint, never a traceback. `check` prints its one line and records it;
inside the grader's sandbox it asks the grader instead (``_REMOTE``, set by
`alignlab.course.grading.student`). The package's ``__init__`` imports every per-set module
before this one, so `CHECKS` lists every exercise.
"""

from __future__ import annotations

import os

import torch

from .harness import (
    _CASES,
    _RESULTS,
    DEFAULT_TIMEOUT,
    EXERCISE_SETS,
    TIMEOUT_ENV,
    CheckTimeout,
    Result,
    _Fail,
    _record,
    _time_limit,
    max_points,
)

_REMOTE = None
"""Inside the grader's sandbox: the client that runs ``check`` in the grader (see `check`)."""

def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    msg = msg[0] if msg else ""
    return f"{type(e).__name__}: {msg[:200]}" if msg else type(e).__name__


def _default_timeout():
    try:
        return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def run_check(name: str, fn, timeout: float | None = None, alarm: bool = True) -> Result:
    """Run every hidden test of exercise ``name`` on ``fn``; return a `Result` (prints nothing).

    alarm: enforce ``timeout`` with SIGALRM (the grader's remote functions keep time themselves
    and raise `CheckTimeout`)."""
    if name not in _CASES:
        raise KeyError(f"no check named {name!r}; the checks are {sorted(_CASES)}")
    cases = _CASES[name](fn)
    total = len(cases)
    if not callable(fn):
        return Result(name, "missing", 0, total, f"`{name}` is not a function (got {type(fn).__name__}).")
    timeout = _default_timeout() if timeout is None else timeout
    passed, hints = 0, []
    try:
        with _time_limit(timeout if alarm else None):
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
    if _REMOTE is not None:  # inside the grader's sandbox: the grader runs the tests
        reply = _REMOTE.check(name, fn)
        if reply.get("unknown"):
            print(f"❌ {reply['unknown']}")
            return
        result = Result(**reply["result"])
        _RESULTS[result.name] = result
        print(result.line())
        return
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


def format_summary(names, results: dict) -> str:
    """The score table of exercises ``names`` given their ``results`` (name -> Result)."""
    rows, got, total = [], 0, 0
    for n in names:
        r = results.get(n)
        mp = max_points(n)
        if r is None:
            rows.append((n, f"0/{mp}", "· not checked yet (run its check cell)"))
        else:
            mark = {"passed": "✅ passed", "not attempted": "⏳ not attempted"}.get(r.status, f"❌ {r.status}")
            rows.append((n, f"{r.points}/{r.max_points}", mark))
            got += r.points
        total += mp
    width = max([len(n) for n in names] + [8])
    lines = [f"{'exercise':<{width}}  points  status"]
    lines += [f"{n:<{width}}  {pts:>6}  {mark}" for n, pts, mark in rows]
    lines.append(f"{'total':<{width}}  {f'{got}/{total}':>6}")
    return "\n".join(lines)


def summary(set_name: str | None = None) -> None:
    """Print the score table (the exercises of ``set_name``, else every one checked so far)."""
    names = list(EXERCISE_SETS.get(set_name, ())) if set_name else list(_RESULTS)
    print(format_summary(names, _RESULTS))


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
