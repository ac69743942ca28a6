"""Shared fixtures, and a per-notebook timing table at the end of the run.

nbval turns each notebook cell into a test item; ``--durations`` then lists
cells. The table below adds them up per notebook, which is the number the
course's time budgets are about.
"""

from __future__ import annotations

import collections
import os

import pytest

# Kernels started by nbval inherit this: widgets draw their default statically (alignlab.widgets).
os.environ.setdefault("ALIGNLAB_HEADLESS", "1")

_NOTEBOOK_SECONDS: dict[str, float] = collections.defaultdict(float)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _NOTEBOOK_SECONDS[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _NOTEBOOK_SECONDS:
        return
    terminalreporter.section("notebook wall time (sum of cells, setup included)")
    for path, seconds in sorted(_NOTEBOOK_SECONDS.items()):
        terminalreporter.write_line(f"{seconds:8.1f} s  {path}")


@pytest.fixture(scope="session")
def profile():
    from alignlab.models import get_profile

    return get_profile(os.environ.get("ALIGNLAB_PROFILE", "quick"))


@pytest.fixture(scope="session")
def sft(profile):
    """(model, tokenizer) of the cached SFT model (trained on first use)."""
    from alignlab import pipeline

    return pipeline.load_sft(profile, seed=0, progress=False)


@pytest.fixture(scope="session")
def tiny_lm():
    """An untrained 1-layer GPT-2 and the world's tokenizer: fast, for mask/shape tests."""
    import dataclasses

    import torch

    from alignlab import world
    from alignlab.models import PROFILES, new_lm
    from alignlab.tokenizer import train_tokenizer

    torch.manual_seed(0)
    tok = train_tokenizer(world.make_corpus(500, seed=0))
    p = dataclasses.replace(PROFILES["quick"], n_layer=1, n_embd=32, n_head=2)
    return new_lm(p, tok).eval(), tok
