"""Root pytest configuration: applies to unit tests and to the notebooks nbval runs.

* Kernels started by nbval inherit ``ALIGNLAB_HEADLESS=1``: widgets draw their
  default statically (``alignlab.course.widgets``).
* Notebook cells and tests that use the trained SFT model (the ``sft`` fixture) are
  marked ``slow``, so ``python -m pytest -m "not slow"`` is a quick loop.
* nbval turns each notebook cell into a test item, so ``--durations`` lists cells;
  the table printed at the end adds them up per notebook, the number the course's
  time budgets are about.
"""

from __future__ import annotations

import collections
import os

os.environ.setdefault("ALIGNLAB_HEADLESS", "1")

_NOTEBOOK_SECONDS: dict[str, float] = collections.defaultdict(float)


SLOW_FIXTURES = {"sft", "sitting", "graded"}
"""Fixtures that train models or start kernels: a test using one is slow."""


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if item.nodeid.split("::")[0].endswith(".ipynb") or \
                SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _NOTEBOOK_SECONDS[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _NOTEBOOK_SECONDS:
        return
    terminalreporter.section("notebook wall time (sum of its cells, kernel start included)")
    for path, seconds in sorted(_NOTEBOOK_SECONDS.items()):
        terminalreporter.write_line(f"{seconds:8.1f} s  {path}")
