"""The alignment pipeline's first two stages: pretraining, then SFT.

1. **Pretraining**: next-word prediction on a raw stream of reviews. The
   stream has no end-of-review token, so the base model writes fluent text
   but never stops: its samples run to the length limit.
2. **Supervised fine-tuning (SFT)**: ``<bos> prompt completion <eos>`` pairs,
   with the loss on the completion (and its ``<eos>``) only. The SFT model
   answers the prompt with one review and stops. It is ``pi_ref``, the
   reference policy of every later lecture.

``load_sft()`` returns the cached SFT model, training it (and the tokenizer
and base model) on first use.

**Your own base model.** With ``ALIGNLAB_BASE_MODEL=/path/to/folder`` (or
``Profile.base_model``; see ``alignlab.models``) stage 1 is skipped: the base artifact is
that folder's causal LM and tokenizer, made ready for the course (``models.load_causal_lm``,
``tokenizer.load_tokenizer``), and stage 2 fine-tunes it with the profile's SFT settings.
Every cache key downstream holds the folder's content hash.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from . import cache, world
from .models import (
    Profile,
    get_device,
    get_profile,
    load_causal_lm,
    new_lm,
    seed_everything,
    settings_dict,
)
from .sampling import encode, token_logprobs
from .tokenizer import load_tokenizer, train_tokenizer
from .training import History, cosine_schedule, cycle, make_optimizer, optimizer_step, train


def _optimizer(model, lr: float, steps: int):
    """AdamW (weight decay 0.01, beta2 0.95) with a 5% warm-up and cosine decay: both stages."""
    opt = make_optimizer(model, lr, weight_decay=0.01, betas=(0.9, 0.95))
    return opt, cosine_schedule(opt, steps)


def _settings(profile: Profile, seed: int) -> dict:
    return {"profile": settings_dict(profile), "seed": seed, "world": world.fingerprint()}


def pretrain(profile: Profile, seed: int = 0, device=None, progress: bool = True):
    """Train the tokenizer and the base model on the corpus, on the shared loop.

    Each step reads ``profile.batch_size`` random windows of the token stream. Returns
    (model, tokenizer, losses), one loss per step.
    """
    device = device or get_device()
    seed_everything(seed)
    corpus = world.make_corpus(profile.corpus_size, seed)
    tok = train_tokenizer(corpus)
    ids = tok(corpus, add_special_tokens=False)["input_ids"]
    stream = torch.tensor([i for review in ids for i in review])
    model = new_lm(profile, tok).to(device)
    opt, sched = _optimizer(model, profile.lr, profile.pretrain_steps)
    block = profile.n_positions - 1
    gen = torch.Generator().manual_seed(seed)

    def step_fn(step: int) -> dict:
        starts = torch.randint(0, len(stream) - block, (profile.batch_size,), generator=gen)
        x = torch.stack([stream[s:s + block] for s in starts.tolist()])
        x = torch.cat([torch.full((len(x), 1), tok.bos_token_id), x], 1).to(device)
        loss = -token_logprobs(model, x, torch.ones_like(x))[:, 1:].mean()
        grad_norm = optimizer_step(loss, opt, model, 1.0, sched)
        return {"loss": loss.item(), "grad_norm": grad_norm}

    history = train(model, step_fn, profile.pretrain_steps, history=History("pretrain"),
                    desc="pretrain", progress=progress)
    return model, tok, [round(v, 4) for v in history.series("loss")[1]]


def sft_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` (prompt, completion) pairs: grammar reviews split after their subject."""
    rng = random.Random(f"sft-{seed}")
    pairs = [world.split_review(world.sample_review(rng)) for _ in range(n)]
    return [p for p, _ in pairs], [c for _, c in pairs]


def sft_loss(model, batch) -> torch.Tensor:
    """Mean negative log-likelihood per completion token (prompt tokens are not scored)."""
    lp = token_logprobs(model, batch.input_ids, batch.attention_mask)
    mask = batch.completion_mask
    return -(lp * mask).sum() / mask.sum()


def sft_step(model, batch, opt, sched=None, max_norm: float = 1.0) -> dict:
    """One SFT update on ``batch``: ``sft_loss``, then ``optimizer_step`` (zero-grad, backward,
    clip to ``max_norm``, step, schedule). Returns the step's ``loss`` and ``grad_norm``."""
    loss = sft_loss(model, batch)
    grad_norm = optimizer_step(loss, opt, model, max_norm, sched)
    return {"loss": loss.item(), "grad_norm": grad_norm}


def finetune(model, tok, profile: Profile, seed: int = 0, progress: bool = True,
             evaluator=None, eval_every: int = 50) -> History:
    """Supervised fine-tuning of ``model`` in place, on the shared loop. Returns its history."""
    device = next(model.parameters()).device
    seed_everything(seed + 1)
    prompts, completions = sft_pairs(profile.sft_steps * profile.batch_size, seed)
    opt, sched = _optimizer(model, profile.lr, profile.sft_steps)
    model.train()
    B = profile.batch_size

    def step_fn(step: int) -> dict:
        batch = encode(tok, cycle(prompts, B, step), cycle(completions, B, step), device=device)
        return sft_step(model, batch, opt, sched)

    return train(model, step_fn, profile.sft_steps, evaluator, eval_every, History("sft"),
                 desc="sft", progress=progress)


def _save(folder: Path, model, tok) -> None:
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)


def import_base(folder, profile: Profile, seed: int = 0):
    """(model, tokenizer) of a base model folder of your own, ready for SFT (CPU, train mode).

    The tokenizer is adapted to the course's contract and the model loaded with dropout off
    (``models.load_causal_lm``); errors name what is wrong with the folder.
    """
    tok = load_tokenizer(folder)
    seed_everything(seed)  # new embedding rows, if the tokenizer gained a token
    model = load_causal_lm(folder, tok, max_len=profile.n_positions)
    return model.train(), tok


def load_model(folder: Path, device=None):
    """Load a cached (model, tokenizer) pair in eval mode on ``device``."""
    model = AutoModelForCausalLM.from_pretrained(folder).to(device or get_device())
    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    tok.padding_side = "left"
    return model.eval(), tok


def base_folder(profile: Profile | str | None = None, seed: int = 0, progress=True) -> Path:
    """The cache folder of the pretrained base model (trained on first use).

    With ``profile.base_model`` set: that model, imported (``import_base``; one for all seeds).
    """
    profile = get_profile(profile)

    if profile.base_model is not None:  # your own model: imported, not pretrained
        def build(tmp: Path):
            model, tok = import_base(profile.base_model, profile)
            _save(tmp, model, tok)
            return {"losses": [], "base_model": profile.base_model}

        return cache.get_or_build("base", _settings(profile, 0), build)

    def build(tmp: Path):
        model, tok, losses = pretrain(profile, seed, progress=progress)
        _save(tmp, model.cpu(), tok)
        return {"losses": losses}

    return cache.get_or_build("base", _settings(profile, seed), build)


def sft_folder(profile: Profile | str | None = None, seed: int = 0, progress=True) -> Path:
    """The cache folder of the SFT model (trained, with its base model, on first use)."""
    profile = get_profile(profile)

    def build(tmp: Path):
        model, tok = load_model(base_folder(profile, seed, progress))
        model.train()
        history = finetune(model, tok, profile, seed, progress=progress)
        _save(tmp, model.cpu(), tok)
        return {"losses": [round(v, 4) for v in history.series("loss")[1]]}

    return cache.get_or_build("sft", _settings(profile, seed), build)


def load_base(profile=None, seed: int = 0, device=None, progress=True):
    """(base model, tokenizer): pretrained, not fine-tuned. Cached."""
    return load_model(base_folder(profile, seed, progress), device)


def load_sft(profile=None, seed: int = 0, device=None, progress=True):
    """(SFT model, tokenizer): the reference policy ``pi_ref`` of the course. Cached."""
    return load_model(sft_folder(profile, seed, progress), device)
