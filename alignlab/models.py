"""Profiles, devices, seeds and the tiny GPT-2.

A *profile* fixes the size of everything: the model, the data, the number of
steps. ``quick`` is made for a 2-core laptop CPU; ``full`` for one modern GPU.
``get_profile()`` picks ``full`` when CUDA is there and ``quick`` otherwise;
``ALIGNLAB_PROFILE=quick|full`` forces one (``micro``: seconds-long runs for tests). ``get_device()`` tries CUDA, then
Apple MPS, then the CPU; ``ALIGNLAB_DEVICE`` forces one.
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel


@dataclass(frozen=True)
class Profile:
    """Sizes for one machine class. Every field has a default for ``quick``."""

    name: str = "quick"
    n_layer: int = 2
    """Transformer blocks."""
    n_head: int = 2
    """Attention heads per block."""
    n_embd: int = 64
    """Width of the residual stream."""
    n_positions: int = 64
    """Longest sequence (prompt + completion, in words) the model sees."""
    corpus_size: int = 20_000
    """Reviews drawn from the grammar for pretraining."""
    pretrain_steps: int = 600
    """Optimiser steps of next-word prediction on the raw corpus."""
    sft_steps: int = 400
    """Optimiser steps of supervised fine-tuning on prompt/completion pairs."""
    batch_size: int = 64
    """Sequences per optimiser step in pretraining and SFT."""
    lr: float = 3e-3
    """Peak AdamW learning rate of pretraining and SFT."""
    eval_prompts: int = 128
    """Held-out prompts the shared evaluation samples from."""
    max_new_tokens: int = 32
    """Longest completion sampled, in words (reviews are at most ~28)."""


PROFILES: dict[str, Profile] = {
    "quick": Profile(),
    "full": Profile(name="full", n_layer=4, n_head=4, n_embd=128, corpus_size=60_000,
                    pretrain_steps=1500, sft_steps=600, batch_size=128, lr=1e-3,
                    eval_prompts=512),
    # Seconds-long runs for the test suite and smoke checks: the code paths of the course,
    # not its results (the model is too small and too briefly trained to learn much).
    "micro": Profile(name="micro", n_layer=1, n_head=2, n_embd=48, corpus_size=4_000,
                     pretrain_steps=300, sft_steps=200, batch_size=32, eval_prompts=16,
                     max_new_tokens=24),
}


def get_profile(name: str | None = None) -> Profile:
    """The profile called ``name``; by default ``$ALIGNLAB_PROFILE``, else by device."""
    name = name or os.environ.get("ALIGNLAB_PROFILE") or ("full" if torch.cuda.is_available()
                                                          else "quick")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)} "
                         "(set by the --profile flag or the ALIGNLAB_PROFILE variable)")
    return PROFILES[name]


def _mps_works() -> bool:
    try:
        return bool(torch.backends.mps.is_available()) and \
            torch.ones(1, device="mps").add(1).item() == 2
    except Exception:  # MPS present but broken: fall back quietly
        return False


def get_device(name: str | None = None) -> torch.device:
    """CUDA, then Apple MPS where it works, then the CPU; ``$ALIGNLAB_DEVICE`` overrides."""
    name = name or os.environ.get("ALIGNLAB_DEVICE")
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_works():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so a run repeats exactly on the CPU."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def gpt2_config(profile: Profile, tokenizer) -> GPT2Config:
    """A small ``GPT2Config`` for ``profile`` (no dropout: runs are exactly repeatable)."""
    return GPT2Config(
        vocab_size=len(tokenizer), n_positions=profile.n_positions, n_embd=profile.n_embd,
        n_layer=profile.n_layer, n_head=profile.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def new_lm(profile: Profile, tokenizer) -> GPT2LMHeadModel:
    """A freshly initialised ``GPT2LMHeadModel`` of the profile's size."""
    return GPT2LMHeadModel(gpt2_config(profile, tokenizer))


def settings_dict(obj) -> dict:
    """A dataclass as a plain dict, for cache keys and logs."""
    return dataclasses.asdict(obj)
