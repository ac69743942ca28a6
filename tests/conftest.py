"""Shared fixtures and helpers of the unit tests (the root conftest.py times the notebooks).

Helpers, imported by the test modules (``from conftest import needs_trl``: pytest puts
``tests/`` on ``sys.path``):

    TRL_VERSION, HAVE_TRL, needs_trl   the TRL release the cross-checks are pinned to; a skip marker
    grad_leaf(x)                       a fresh copy of ``x`` that is a leaf and records gradients
    run_cli(*argv, env=None, timeout=600)   ``python -m alignlab ARGV`` in a subprocess
    run_json(capsys, *argv)            ``alignlab run ARGV --json`` in this process: the JSON row it prints

Fixtures: ``seeded`` (torch seed 0: ``pytestmark = pytest.mark.usefixtures("seeded")``),
``micro_cache``, ``profile``, ``sft``, ``tiny_lm``.

``tests/fixtures`` is put on ``sys.path`` too: ``import hostile``, ``from wrong import WRONG``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))

TRL_VERSION = "1.16"
"""The TRL release whose trainer code the cross-checks call (the test extra installs it)."""
try:
    import trl

    HAVE_TRL = trl.__version__.startswith(TRL_VERSION + ".")
except ImportError:
    HAVE_TRL = False
needs_trl = pytest.mark.skipif(not HAVE_TRL, reason=f"needs TRL {TRL_VERSION}.x (pip install -e '.[test]')")


def grad_leaf(x):
    """A copy of tensor ``x``, detached from its graph, that records gradients."""
    return x.detach().clone().requires_grad_(True)


def run_cli(*argv: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m alignlab ARGV`` (``env`` added to this environment); stdout and stderr as text."""
    return subprocess.run([sys.executable, "-m", "alignlab", *argv], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def run_json(capsys, *argv: str) -> dict:
    """Run ``alignlab run ARGV --json`` in this process; the JSON row it printed last."""
    from alignlab import cli

    assert cli.main(["run", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture
def seeded():
    """Seed torch's generator with 0 before the test."""
    import torch

    torch.manual_seed(0)


@pytest.fixture
def micro_cache(tmp_path_factory, monkeypatch):
    """``ALIGNLAB_CACHE`` for micro-profile runs, one per session (``$ALIGNLAB_MICRO_CACHE`` if set):
    the micro SFT model and RM are trained once."""
    root = os.environ.get("ALIGNLAB_MICRO_CACHE") or str(tmp_path_factory.getbasetemp() / "micro-cache")
    monkeypatch.setenv("ALIGNLAB_CACHE", root)
    return root


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
