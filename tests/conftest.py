"""Shared fixtures of the unit tests (the root conftest.py times the notebooks)."""

from __future__ import annotations

import os

import pytest


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
