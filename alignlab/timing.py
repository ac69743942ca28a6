"""Where the time goes: phases of a run, measured only when asked.

Inside ``with timing() as t:``, ``t.seconds`` adds up the seconds of each phase
(``training.train`` marks "training" and "evaluation", ``sampling.sample`` marks "sampling";
``phase(name)`` marks any other) and ``t.steps`` lists each step's seconds. Outside
``timing()`` the marks cost one list check; nothing is ever timed unless asked
(``python -m alignlab bench`` asks).
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager


class Timings:
    """What ``timing()`` measured: ``seconds`` per phase, and ``steps``, each step's seconds.

    A phase's seconds exclude the phases nested in it (sampling inside a PPO step counts as
    sampling, not training), except "evaluation", which keeps everything run inside it.
    """

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.steps: list[float] = []
        self._stack: list[list] = []  # [name, start, seconds of nested phases]


_TIMINGS: list[Timings] = []  # the active ``timing()`` blocks, innermost last


@contextmanager
def timing():
    """Measure where the time goes in the block: ``with timing() as t: ...; t.seconds``."""
    t = Timings()
    _TIMINGS.append(t)
    try:
        yield t
    finally:
        _TIMINGS.remove(t)


@contextmanager
def phase(name: str):
    """Count the block's seconds as phase ``name`` in every active ``timing()``."""
    active = [t for t in _TIMINGS if not (t._stack and t._stack[-1][0] == "evaluation")]
    if not active:
        yield
        return
    start = time.perf_counter()
    for t in active:
        t._stack.append([name, start, 0.0])
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        for t in active:
            _, _, nested = t._stack.pop()
            t.seconds[name] += elapsed - nested
            if t._stack:
                t._stack[-1][2] += elapsed
