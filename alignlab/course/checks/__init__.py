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

Results are also *recorded*: kept in this process (for ``summary()``) and, when the
environment variable ``ALIGNLAB_GRADES_FILE`` names a file, appended to it as one JSON
object per line. Inside the grader's sandbox (``alignlab.course.grading``), ``check``
instead asks the grader, outside the student's process, to run the tests: the grader
sends the inputs, the student's function only returns its outputs, and the grader
compares them with answers it computed itself.

Every check runs under a time limit (``ALIGNLAB_CHECK_TIMEOUT`` seconds, default 20;
POSIX only, via SIGALRM), so a student's infinite loop gives a failed check instead
of a frozen notebook.

Layout: ``harness`` (results, comparison, registry), one module per exercise set
(``bt``, ``gae``, ``ppo``, ``dpo``, ``kto``, ``online``, ``grpo``, ``logprobs``, ``kl``: each
declares its exercises with ``@exercise(set, name)``), and ``runner`` (the functions below).

Contents:
    EXERCISE_SETS  exercise set (= notebook) -> the exercises it contains (from the registrations)
    CHECKS         exercise name -> fn(student_fn) -> (passed, points, hint)
    check(name, fn)          the in-notebook call: prints, records
    run_check(name, fn)      the same, returning a `Result` (for tests and the grader)
    summary(set_name)        prints the score table
    ready(name, fn)          guard for a cell that trains with the student's function
    grade_namespace(set, ns) check every exercise of a set against the functions of a namespace
"""

# Importing the per-set modules registers their exercises; they come before `runner`, whose
# `CHECKS` lists the registered exercises.
from . import bt, dpo, gae, grpo, kl, kto, logprobs, online, ppo  # noqa: F401
from .harness import (
    _RESULTS,  # noqa: F401  (the recorded results: the tests clear them)
    DEFAULT_TIMEOUT,
    EXERCISE_SETS,
    GRADES_FILE_ENV,
    TIMEOUT_ENV,
    CheckTimeout,
    Result,
    max_points,
    results,
)
from .runner import CHECKS, all_passed, check, format_summary, grade_namespace, ready, run_check, score, summary

for _name, _exercises in sorted(EXERCISE_SETS.items()):  # in notebook order, whatever the import order
    del EXERCISE_SETS[_name]
    EXERCISE_SETS[_name] = _exercises

__all__ = ["CHECKS", "DEFAULT_TIMEOUT", "EXERCISE_SETS", "GRADES_FILE_ENV", "TIMEOUT_ENV", "CheckTimeout",
           "Result", "all_passed", "check", "format_summary", "grade_namespace", "max_points", "ready",
           "results", "run_check", "score", "summary"]
