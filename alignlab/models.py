"""Profiles, devices, seeds and the tiny GPT-2.

A *profile* fixes the size of everything: the model, the data, the number of
steps. ``quick`` is made for a 2-core laptop CPU; ``full`` for one modern GPU.
``get_profile()`` picks ``full`` when CUDA is there and ``quick`` otherwise;
``ALIGNLAB_PROFILE=quick|full`` forces one (``micro``: seconds-long runs for tests). ``get_device()`` tries CUDA, then
Apple MPS, then the CPU; ``ALIGNLAB_DEVICE`` forces one.

**Bring your own model.** ``ALIGNLAB_BASE_MODEL=/path/to/folder`` (or the profile field
``base_model``, e.g. ``dataclasses.replace(get_profile("quick"), base_model=folder)``) makes
any local Hugging Face causal-LM folder, with its tokenizer, the base model in place of the
course's pretrained tiny GPT-2: the course skips pretraining, SFTs that model on the review
world (with the profile's SFT settings) and every lecture starts from it. Nothing is
downloaded (``local_files_only``). The folder's content hash is part of the cache key of
everything built on it (``settings_dict``), so its models never mix with the course's.
``load_causal_lm`` loads it with dropout off (step-0 checks such as "the DPO loss is ln 2"
hold in train mode), in float32, with a plain generation config; ``tokenizer.adapt_tokenizer``
makes its tokenizer keep the course's contract. A folder that is missing, is not a causal
LM, or has no tokenizer is a ``ValueError`` that says so (one line on the command line).
The reward model and the value-head lectures use GPT-2's module names (``.transformer``,
``GPT2ForSequenceClassification``), so a GPT-2-architecture folder runs every lecture.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig, GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as _hf_logging

# The course loads and saves tiny local models many times: keep the output to what teaches.
_hf_logging.set_verbosity_error()
_hf_logging.disable_progress_bar()

BASE_MODEL_ENV = "ALIGNLAB_BASE_MODEL"
"""Environment variable: a local Hugging Face causal-LM folder to use as the base model."""


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
    base_model: str | None = None
    """A local Hugging Face causal-LM folder SFT starts from instead of the pretrained tiny
    GPT-2 (default: ``$ALIGNLAB_BASE_MODEL``); None: the course's own base model."""


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


def get_profile(name: Profile | str | None = None) -> Profile:
    """The profile called ``name`` (a ``Profile`` is returned as it is); by default
    ``$ALIGNLAB_PROFILE``, else by device."""
    if isinstance(name, Profile):
        return name
    name = name or os.environ.get("ALIGNLAB_PROFILE") or ("full" if torch.cuda.is_available()
                                                          else "quick")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)} "
                         "(set by the --profile flag or the ALIGNLAB_PROFILE variable)")
    folder = os.environ.get(BASE_MODEL_ENV)
    if folder:  # checked when first used (base_model_fingerprint), so --help always works
        return dataclasses.replace(PROFILES[name], base_model=str(Path(folder).expanduser()))
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
    """A dataclass as a plain dict, for cache keys and logs.

    A ``Profile``'s ``base_model`` becomes the folder's content hash (so a model replaced in
    the same folder retrains, and the course's own keys, without it, are unchanged).
    """
    d = dataclasses.asdict(obj)
    if isinstance(obj, Profile):
        if obj.base_model is None:
            del d["base_model"]
        else:
            d["base_model"] = base_model_fingerprint(obj.base_model)
    return d


# ---------------------------------------------------------------------------
# Bring your own model: a local Hugging Face causal-LM folder as the base model.
# ---------------------------------------------------------------------------

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model",
                   "spiece.model", "sentencepiece.bpe.model", "vocab.txt")
"""Any of these in a folder means it ships a tokenizer."""


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def check_model_folder(folder) -> Path:
    """``folder`` as a Path if it holds a causal LM and a tokenizer; else a ``ValueError``."""
    where = f"the base model folder {str(folder)!r} (${BASE_MODEL_ENV} or Profile.base_model)"
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"{where} does not exist or is not a folder; point it at a local "
                         "Hugging Face model folder (nothing is downloaded)")
    if not (folder / "config.json").is_file():
        raise ValueError(f"{where} has no config.json, so it is not a Hugging Face model folder "
                         "(save one with model.save_pretrained(folder))")
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as e:
        raise ValueError(f"{where}: transformers cannot read its config.json ({e})") from None
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    archs = list(getattr(config, "architectures", None) or [])
    if getattr(config, "is_encoder_decoder", False) or \
            config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or \
            (archs and not any(a in causal for a in archs)):
        what = ", ".join(archs) or config.model_type
        raise ValueError(f"{where} holds a {what} model, which is not a causal language model "
                         "(the course needs one AutoModelForCausalLM loads, e.g. GPT2LMHeadModel)")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(f"{where} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save "
                         "the model's tokenizer beside it with tokenizer.save_pretrained(folder)")
    return folder


@functools.lru_cache(maxsize=8)
def _fingerprint(folder: str, stats: tuple) -> str:
    h = hashlib.sha256()
    for name, _size, _mtime in stats:
        h.update(name.encode() + b"\0")
        with open(Path(folder) / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def base_model_fingerprint(folder) -> str:
    """A hash of every file in the base model folder (checked first: ``check_model_folder``).

    Computed once per process and folder state (names, sizes, modification times).
    """
    folder = check_model_folder(folder).resolve()
    stats = tuple((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in _files(folder))
    return _fingerprint(str(folder), stats)


def load_causal_lm(folder, tokenizer, max_len: int = 0):
    """The causal LM in ``folder`` (checked with ``check_model_folder``), ready for the course.

    float32 (the CPU trains in it), every dropout probability 0 (as the tiny GPT-2: the
    policy in train mode gives the reference's log-probs at step 0), a plain generation
    config and the bos/eos/pad ids of ``tokenizer`` (already adapted:
    ``tokenizer.adapt_tokenizer``); embeddings resized if the tokenizer gained tokens.
    ``max_len``: the longest sequence the course will feed it (an error if it has fewer
    positions).
    """
    folder = check_model_folder(folder)
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    for key, value in config.to_dict().items():
        if ("dropout" in key or key.endswith("pdrop")) and isinstance(value, float):
            setattr(config, key, 0.0)
    positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if positions and max_len and positions < max_len:
        raise ValueError(f"the base model in {str(folder)!r} has {positions} positions; the course "
                         f"feeds it sequences of up to {max_len} tokens")
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, config=config, local_files_only=True,
                                                     dtype=torch.float32)
    except Exception as e:
        raise ValueError(f"the base model in {str(folder)!r} cannot be loaded by "
                         f"AutoModelForCausalLM ({' '.join(str(e).split())[:300]})") from None
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    model.config.bos_token_id, model.config.eos_token_id = ids["bos_token_id"], ids["eos_token_id"]
    # the config's pad id is left alone: in many architectures it is the embedding's
    # padding_idx, whose row never learns, and the pad id may be the eos (GPT-2's way)
    model.generation_config = GenerationConfig(**ids)
    return model
