"""KTO: alignment from thumbs-up / thumbs-down (Ethayarajh et al. 2024).

Paired preferences ("y_c is better than y_r for x") are expensive; a binary
signal ("this answer is good" / "this one is bad") is what products collect
for free. KTO trains on such *unpaired* data, in TRL's format: columns
``prompt``, ``completion``, ``label`` (True = desirable).

The method, in the order the module defines it:

1. ``make_feedback``: SFT samples on training prompts, labelled by the world's
   judge through ``data.annotate_binary`` (the noisy thumbs-up/down human).
   ``pairs_to_unpaired`` turns preference pairs into the same format
   (chosen -> desirable, rejected -> undesirable), as the paper does to
   compare KTO with DPO on the same data. ``keep_desirable`` drops desirable
   examples to make the data imbalanced.
2. ``kl_batch``: the mismatched (prompt_i, completion_{i-1}) pairs of a batch,
   whose log-ratio averaged over the batch estimates KL(pi || pi_ref): the
   reference point z0 (``losses.kto_z0``). It is an approximation:
   completion_{i-1} was written for prompt_{i-1}, it is not a sample of
   pi(.|prompt_i). When the data were sampled from pi_ref, and if completions
   depend little on their prompt, E[log pi(y') - log pi_ref(y')] over such
   y' is approximately -KL(pi_ref || pi) <= 0, and the clamp holds z0 at 0 once pi has moved
   (lecture 05 measures both estimates, section 5.6); on samples of the
   policy itself the estimate is positive.
3. ``train_kto``: the KTO update (``losses.kto_loss``) on the shared loop.
4. ``train_offline_ppo``: a simplified version of the baseline the paper starts
   from: PPO-clip on fixed data with the reference as the old policy and the
   +1/-1 label as the advantage of every completion token (``losses.ppo_clip_loss``),
   with no critic (the authors' HALOs version estimates advantages with a value
   head and GAE, and adds a KL term).

``train_kto`` logs ``METHOD.metrics`` (bottom of this module) beside the shared evaluation:
``loss``, ``z0``, ``z0/unclamped``, ``rewards/desirable``, ``rewards/undesirable``,
``desirable_fraction`` and ``grad_norm``; ``train_offline_ppo`` logs ``loss``, ``clipfrac``,
``approx_kl`` and ``ratio_mean`` (``OFFLINE_PPO_METHOD.metrics``; ``run offline_ppo``). Each is defined once,
with what healthy looks like, in ``alignlab.metrics`` (``print(metrics.table(METHOD.metrics))``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset

from .. import data, world
from ..config import for_profile
from ..losses import (
    kto_lambdas_in_recommended_range,
    kto_loss,
    kto_recommended_lambda_d,
    mismatched_indices,
    ppo_clip_loss,
)
from ..models import Profile, seed_everything
from ..registry import TRAINED_KEYS, Arm, Cost, Method, prepare, result
from ..sampling import Batch, encode, sample, sequence_logprobs, token_logprobs
from ..training import (
    History,
    check_trainable_copy,
    epochs,
    make_optimizer,
    optimizer_step,
    train,
    warmup_then_decay,
)


@dataclass
class KTOConfig:
    """Settings of one KTO run (quick-profile defaults; ``for_profile`` adapts them)."""

    beta: float = 1.0
    """Scale of the implied reward beta * log pi/pi_ref inside the sigmoid (TRL default 0.1)."""
    lambda_d: float = 1.3
    """Weight of desirable examples; keep lambda_d n_D / (lambda_u n_U) in [1, 4/3] (``balanced_lambda_d``)."""
    lambda_u: float = 1.0
    """Weight of undesirable examples."""
    lr: float = 1e-3
    """Peak AdamW learning rate."""
    warmup_steps: int = 10
    """Steps of linear warm-up from 0 to ``lr`` (then linear decay to 0, TRL's default)."""
    steps: int = 60
    """Optimiser steps."""
    batch_size: int = 128
    """Examples per step (at least 2: the KL estimate pairs each prompt with another completion)."""
    max_grad_norm: float = 1.0
    """Gradient clipping (global norm)."""
    n_examples: int = 4096
    """SFT samples labelled by the annotator in ``make_feedback``."""
    annotator_temperature: float = 0.1
    """Annotator noise: desirable with probability sigmoid((gold - threshold) / temperature)."""
    threshold: float = 0.3
    """Gold reward above which the annotator tends to give a thumbs-up (a clearly positive review)."""
    desirable_keep: float = 1.0
    """Fraction of desirable examples kept for training (1.0 = all; 0.1 drops 90%)."""
    eval_every: int = 15
    """Steps between evaluations (the shared loop also evaluates at 0 and at the end)."""
    balance_lambda_d: bool = True
    """``run kto`` only: replace lambda_d by the middle of the paper's range for the data it made
    (``balanced_lambda_d``); ``for_profile`` turns it off when lambda_d is given (``--set lambda_d=5``)."""
    seed: int = 0
    """Seed of sampling, labelling, dropping and batch order."""

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides) -> KTOConfig:
        """Defaults for ``profile`` (the ``full`` profile has more data and steps)."""
        overrides.setdefault("balance_lambda_d", "lambda_d" not in overrides)
        return for_profile(cls, profile, full=dict(n_examples=8192, steps=120, eval_every=30), **overrides)


@dataclass
class OfflinePPOConfig:
    """Settings of offline PPO with +1/-1 rewards (the KTO paper's starting point)."""

    lr: float = 1e-3
    """Peak AdamW learning rate."""
    warmup_steps: int = 10
    """Steps of linear warm-up from 0 to ``lr`` (then linear decay to 0)."""
    steps: int = 60
    """Optimiser steps."""
    batch_size: int = 128
    """Examples per step."""
    max_grad_norm: float = 1.0
    """Gradient clipping (global norm)."""
    clip_eps: float = 0.5
    """PPO clip range: the per-token ratio pi/pi_ref is clipped to [1 - eps, 1 + eps] (HALOs: [0.5, 2])."""
    eval_every: int = 15
    """Steps between evaluations."""
    seed: int = 0
    """Seed of the batch order."""

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides) -> OfflinePPOConfig:
        """Defaults for ``profile`` (the ``full`` profile has more steps)."""
        return for_profile(cls, profile, full=dict(steps=120, eval_every=30), **overrides)


# ---------------------------------------------------------------------------
# 1. Data: thumbs-up / thumbs-down in TRL's unpaired format
# ---------------------------------------------------------------------------


def make_feedback(ref, tok, config: KTOConfig, max_new_tokens: int = 32) -> Dataset:
    """``config.n_examples`` SFT samples on training prompts, each labelled desirable or not.

    Columns: prompt, completion, label (True = thumbs-up), gold (the judge's score,
    for analysis only: training never reads it). Empty completions (the model
    stopped at once) are dropped: there is nothing to label.
    """
    prompts = world.make_prompts(config.n_examples, "train", seed=config.seed)
    batch = sample(ref, tok, prompts, max_new_tokens, seed=config.seed + 1)
    keep = [i for i, c in enumerate(batch.completions) if c.strip()]
    ds = data.annotate_binary([prompts[i] for i in keep], [batch.completions[i] for i in keep],
                              temperature=config.annotator_temperature, threshold=config.threshold,
                              seed=config.seed + 2, finished=[batch.finished[i] for i in keep])
    return ds


def pairs_to_unpaired(pairs: Dataset) -> Dataset:
    """Split preference pairs into unpaired examples: chosen -> desirable, rejected -> undesirable.

    ``pairs``: columns prompt/chosen/rejected (TRL's paired format). Returns 2 * len(pairs)
    rows with columns prompt/completion/label (and gold, when the pairs carry gold scores),
    the chosen example of pair i at row 2i and its rejected one at row 2i + 1.
    """
    data.validate_preferences(pairs, "paired")
    has_gold = "gold_chosen" in pairs.column_names and "gold_rejected" in pairs.column_names
    rows = {"prompt": [], "completion": [], "label": [], **({"gold": []} if has_gold else {})}
    for row in pairs:
        for key, label in (("chosen", True), ("rejected", False)):
            rows["prompt"].append(row["prompt"])
            rows["completion"].append(row[key])
            rows["label"].append(label)
            if has_gold:
                rows["gold"].append(row[f"gold_{key}"])
    return Dataset.from_dict(rows)


def one_per_prompt(ds: Dataset, seed: int = 0) -> Dataset:
    """From unpaired data made of pairs (rows 2i, 2i+1, as ``pairs_to_unpaired`` writes them),
    keep ONE completion per pair, picked at random: half the data, and no prompt ever has
    both a desirable and an undesirable answer (the paper's "one y per x" setting).
    """
    n = len(ds)
    if n % 2 or ds["prompt"][0::2] != ds["prompt"][1::2]:
        raise ValueError("one_per_prompt: `ds` should hold pairs of rows (2i, 2i+1) with the same "
                         "prompt, as `pairs_to_unpaired` returns; got rows that do not pair up")
    pick = np.random.default_rng(seed).integers(0, 2, n // 2)
    return ds.select([2 * i + int(p) for i, p in enumerate(pick)])


def keep_desirable(ds: Dataset, keep: float, seed: int = 0) -> Dataset:
    """Keep a random ``keep`` fraction of the desirable rows (rounded), all undesirable rows.

    ``keep=0.1`` drops 90% of the thumbs-up examples: the imbalance experiment.
    Row order is otherwise preserved.
    """
    if not (0.0 < keep <= 1.0):
        raise ValueError(f"keep_desirable: `keep` should be in (0, 1], got {keep!r} "
                         "(it is the fraction of desirable examples kept)")
    labels = list(ds["label"])
    good = [i for i, y in enumerate(labels) if y]
    n_keep = round(keep * len(good))
    if good and n_keep == 0:
        raise ValueError(f"keep_desirable: keeping {keep} of {len(good)} desirable examples "
                         "leaves none; KTO needs at least one desirable example")
    rng = np.random.default_rng(seed)
    kept = set(rng.choice(good, size=n_keep, replace=False).tolist()) if good else set()
    return ds.select([i for i, y in enumerate(labels) if not y or i in kept])


def desirable_fraction(ds: Dataset) -> float:
    """Fraction of rows labelled desirable (n_D / (n_D + n_U))."""
    labels = ds["label"]
    return sum(bool(y) for y in labels) / len(labels)


def lambda_ratio(ds: Dataset, lambda_d: float, lambda_u: float) -> float:
    """lambda_d * n_D / (lambda_u * n_U): the KTO paper recommends a value in [1, 4/3]."""
    n_d = sum(bool(y) for y in ds["label"])
    n_u = len(ds) - n_d
    return lambda_d * n_d / (lambda_u * n_u) if n_u else math.inf


def balanced_lambda_d(ds: Dataset, lambda_u: float = 1.0) -> float:
    """lambda_d in the middle of the paper's range: lambda_d n_D / (lambda_u n_U) = 7/6.

    (``losses.kto_recommended_lambda_d`` gives the range [1, 4/3] * lambda_u n_U / n_D.)
    """
    n_d = sum(bool(y) for y in ds["label"])
    low, high = kto_recommended_lambda_d(n_d, len(ds) - n_d, lambda_u)
    return (low + high) / 2


def check_unpaired(ds, batch_size: int) -> None:
    """Raise ValueError, saying what is wrong, if ``ds`` cannot train KTO with ``batch_size``."""
    if not isinstance(ds, Dataset):
        raise ValueError(f"KTO data should be a datasets.Dataset with columns prompt/completion/"
                         f"label, got {type(ds).__name__}. Build it with make_feedback or "
                         "pairs_to_unpaired.")
    if "chosen" in ds.column_names and "completion" not in ds.column_names:
        raise ValueError("KTO data should be unpaired (prompt/completion/label), got paired "
                         "columns prompt/chosen/rejected. Use pairs_to_unpaired(pairs) first.")
    data.validate_preferences(ds, "unpaired")
    if not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(f"KTO `batch_size` should be an int >= 2, got {batch_size!r}: the KL "
                         "estimate pairs each prompt with another example's completion")
    if len(ds) < batch_size:
        raise ValueError(f"KTO data has {len(ds)} rows, fewer than one batch of "
                         f"{batch_size}; lower batch_size or add data")


# ---------------------------------------------------------------------------
# 2. The KL batch: mismatched (prompt_i, completion_{i-1}) pairs
# ---------------------------------------------------------------------------


def kl_batch(batch: Batch, pad_token_id: int = 0) -> Batch:
    """The batch's prompts paired with the completion of the previous row (TRL's rotation).

    Row i of the result is ``<bos> prompt_i completion_{idx[i]}`` with
    ``idx = losses.mismatched_indices(B)`` = [B-1, 0, 1, ..., B-2], built from the
    token ids (no re-tokenisation), left-padded with ``pad_token_id`` (padding is masked
    out, so its value never matters). ``completion_mask`` marks the borrowed completion.
    Its log-ratio log pi/pi_ref, averaged over rows, is the KL estimate behind z0 (an
    approximation of KL(pi || pi_ref): row i's completion was not sampled for prompt i; see
    the module docstring).
    """
    idx = mismatched_indices(len(batch)).tolist()
    ids, attn, comp = batch.input_ids, batch.attention_mask.bool(), batch.completion_mask.bool()
    heads = [ids[i][attn[i] & ~comp[i]] for i in range(len(batch))]  # <bos> + prompt tokens
    tails = [ids[i][comp[i]] for i in range(len(batch))]  # completion tokens (+ <eos>)
    rows = [(heads[i], tails[j]) for i, j in enumerate(idx)]
    T = max(len(h) + len(t) for h, t in rows)
    new_ids = torch.full((len(rows), T), pad_token_id, dtype=ids.dtype, device=ids.device)
    new_attn = torch.zeros((len(rows), T), dtype=batch.attention_mask.dtype, device=ids.device)
    new_comp = torch.zeros_like(new_attn)
    for r, (h, t) in enumerate(rows):
        new_ids[r, T - len(h) - len(t):] = torch.cat([h, t])
        new_attn[r, T - len(h) - len(t):] = 1
        new_comp[r, T - len(t):] = 1
    return Batch(new_ids, new_attn, new_comp, list(batch.prompts),
                 [batch.completions[j] for j in idx], [batch.finished[j] for j in idx])


# ---------------------------------------------------------------------------
# 3. Training
# ---------------------------------------------------------------------------


def optimizer(policy, config):
    """(AdamW of ``policy``, its schedule): what ``train_kto`` and ``train_offline_ppo`` step with
    (``config.warmup_steps`` of warm-up, then linear decay)."""
    opt = make_optimizer(policy, config.lr)
    return opt, warmup_then_decay(opt, config.warmup_steps, config.steps)


def _setup(policy, ref, n: int, config, who: str):
    """(optimiser, schedule, batches) of a KTO or offline-PPO run on ``n`` examples."""
    check_trainable_copy(policy, ref, who)
    opt, sched = optimizer(policy, config)
    # every epoch a fresh order from numpy's generator (the order KTO has always used)
    batches = epochs(n, config.batch_size, np.random.default_rng(config.seed))
    return opt, sched, batches


def _encode_rows(tok, ds, rows, device) -> tuple[Batch, torch.Tensor]:
    sel = ds[rows]
    batch = encode(tok, sel["prompt"], sel["completion"], device=device)
    labels = torch.tensor([bool(y) for y in sel["label"]], device=device)
    return batch, labels


def kto_step(policy, ref, tok, batch: Batch, labels: torch.Tensor, config: KTOConfig):
    """KTO loss of one encoded batch (no optimiser step). Returns (loss, metrics)."""
    kl = kl_batch(batch, tok.pad_token_id)
    with torch.no_grad():
        ref_logps = sequence_logprobs(ref, batch)
        ref_kl_logps = sequence_logprobs(ref, kl)
        policy_kl_logps = sequence_logprobs(policy, kl)  # z0 is detached: no graph needed
    policy_logps = sequence_logprobs(policy, batch)
    loss, z0, rewards = kto_loss(policy_logps, ref_logps, labels, policy_kl_logps,
                                 ref_kl_logps, config.beta, config.lambda_d, config.lambda_u)
    d = labels.bool()
    metrics = {
        "loss": loss.item(), "z0": z0.item(),
        "z0/unclamped": (policy_kl_logps - ref_kl_logps).mean().item(),
        "rewards/desirable": rewards[d].mean().item() if d.any() else None,
        "rewards/undesirable": rewards[~d].mean().item() if (~d).any() else None,
        "desirable_fraction": d.float().mean().item(),
    }
    return loss, metrics


def train_kto(policy, ref, tok, ds: Dataset, config: KTOConfig, evaluator=None,
              eval_every: int | None = None, progress: bool = True,
              name: str = "KTO") -> History:
    """Train ``policy`` (a copy of ``ref``) with KTO on unpaired data ``ds``.

    ``config.desirable_keep < 1`` first drops that share of desirable rows
    (``keep_desirable``). Returns the shared ``History`` (metrics in the module doc).
    """
    check_unpaired(ds, config.batch_size)
    if config.desirable_keep < 1.0:
        ds = keep_desirable(ds, config.desirable_keep, seed=config.seed)
        check_unpaired(ds, config.batch_size)
    n_d = sum(bool(y) for y in ds["label"])
    if 0 < n_d < len(ds) and not kto_lambdas_in_recommended_range(
            n_d, len(ds) - n_d, config.lambda_d, config.lambda_u):
        low, high = kto_recommended_lambda_d(n_d, len(ds) - n_d, config.lambda_u)
        warnings.warn(
            f"KTO: lambda_d * n_D / (lambda_u * n_U) = {lambda_ratio(ds, config.lambda_d, config.lambda_u):.2f} "
            f"with n_D={n_d}, n_U={len(ds) - n_d}; the paper recommends [1, 4/3], i.e. lambda_d in "
            f"[{low:.2f}, {high:.2f}] (balanced_lambda_d gives {(low + high) / 2:.2f}). Far below it, the "
            "undesirable examples dominate and the policy can collapse.", stacklevel=2)
    seed_everything(config.seed)
    device = next(policy.parameters()).device
    opt, sched, batches = _setup(policy, ref, len(ds), config, "train_kto")

    def step_fn(step: int) -> dict:
        batch, labels = _encode_rows(tok, ds, next(batches), device)
        loss, metrics = kto_step(policy, ref, tok, batch, labels, config)
        metrics["grad_norm"] = optimizer_step(loss, opt, policy, config.max_grad_norm, sched)
        return metrics

    return train(policy, step_fn, config.steps, evaluator, eval_every or config.eval_every,
                 History(name), desc=name, progress=progress)


def offline_ppo_step(policy, ref, batch: Batch, labels: torch.Tensor, clip_eps: float):
    """Offline PPO loss of one batch: old policy = reference, advantage +1 / -1 on every
    completion token of a desirable / undesirable example. Returns (loss, metrics)."""
    with torch.no_grad():
        old_logp = token_logprobs(ref, batch.input_ids, batch.attention_mask)
    logp = token_logprobs(policy, batch.input_ids, batch.attention_mask)
    mask = batch.completion_mask
    reward = labels.float() * 2 - 1  # +1 desirable, -1 undesirable
    advantages = reward[:, None] * mask.float()
    loss, stats = ppo_clip_loss(logp, old_logp, advantages, mask, clip_eps)
    return loss, {"loss": loss.item(), **{k: float(v) for k, v in stats.items()}}


def train_offline_ppo(policy, ref, tok, ds: Dataset, config: OfflinePPOConfig, evaluator=None,
                      eval_every: int | None = None, progress: bool = True,
                      name: str = "offline PPO") -> History:
    """Offline PPO with +1/-1 rewards on the fixed unpaired data ``ds`` (no sampling, no value head)."""
    check_unpaired(ds, config.batch_size)
    seed_everything(config.seed)
    device = next(policy.parameters()).device
    opt, sched, batches = _setup(policy, ref, len(ds), config, "train_offline_ppo")

    def step_fn(step: int) -> dict:
        batch, labels = _encode_rows(tok, ds, next(batches), device)
        loss, metrics = offline_ppo_step(policy, ref, batch, labels, config.clip_eps)
        metrics["grad_norm"] = optimizer_step(loss, opt, policy, config.max_grad_norm, sched)
        return metrics

    return train(policy, step_fn, config.steps, evaluator, eval_every or config.eval_every,
                 History(name), desc=name, progress=progress)


# ---------------------------------------------------------------------------
# 4. Command line: python -m alignlab run kto --set desirable_keep=0.1 --set lambda_d=5
# ---------------------------------------------------------------------------


def run(profile: Profile, seed: int = 0, config: KTOConfig | None = None) -> dict:
    """CLI entry (``python -m alignlab run kto``): KTO from the SFT model on fresh binary feedback.

    ``seed`` picks the SFT model (as for ``run dpo``/``run ppo``), the feedback, the batch
    order and the evaluation prompts. Returns the shared metrics plus
    ``desirable_fraction`` (of the data trained on), ``z0`` (last batch), beta, the lambdas
    and the number of examples. With ``balance_lambda_d`` (unless ``lambda_d`` was given),
    lambda_d is set from the data (after ``desirable_keep``) to the middle of the paper's range.
    """
    config = config or KTOConfig.for_profile(profile, seed=seed)
    r = prepare(profile, seed)
    ds = make_feedback(r.ref, r.tok, config, r.profile.max_new_tokens)
    if config.desirable_keep < 1.0:
        ds = keep_desirable(ds, config.desirable_keep, seed=config.seed)
    if config.balance_lambda_d:
        config = dataclasses.replace(config, lambda_d=round(balanced_lambda_d(ds, config.lambda_u), 3))
    history = train_kto(copy.deepcopy(r.ref), r.ref, r.tok, ds, dataclasses.replace(config, desirable_keep=1.0),
                        r.evaluator, progress=False)
    return result(history, desirable_fraction=round(desirable_fraction(ds), 4), z0=round(history.last("z0"), 4),
                  beta=config.beta, lambda_d=config.lambda_d, lambda_u=config.lambda_u, n_examples=len(ds))


def run_offline_ppo(profile: Profile, seed: int = 0, config: OfflinePPOConfig | None = None) -> dict:
    """CLI entry (``python -m alignlab run offline_ppo``): lecture 05's baseline, offline PPO with
    +1/-1 rewards on the same thumbs-up/down feedback ``run kto`` makes (``KTOConfig``'s data
    settings for the profile), from the SFT model."""
    config = config or OfflinePPOConfig.for_profile(profile, seed=seed)
    r = prepare(profile, seed)
    ds = make_feedback(r.ref, r.tok, KTOConfig.for_profile(r.profile, seed=seed), r.profile.max_new_tokens)
    history = train_offline_ppo(copy.deepcopy(r.ref), r.ref, r.tok, ds, config, r.evaluator, progress=False)
    return result(history, clipfrac=round(history.last("clipfrac"), 4), n_examples=len(ds))


def cost(config: KTOConfig, profile) -> Cost:
    """One SFT sample per thumbs-up/down label, made once before training; one step per batch."""
    return Cost(config.n_examples, config.n_examples, "offline thumbs up/down", config.steps)


METHOD = Method(
    name="kto", description="Kahneman-Tversky optimisation from binary feedback (adds desirable_fraction)",
    config=KTOConfig, run=run, trainer="methods.kto.train_kto",
    extra_keys=("desirable_fraction", "z0", "beta", "lambda_d", "lambda_u", "n_examples"), lecture="05_kto",
    metrics=(*TRAINED_KEYS, "z0",
             "z0/unclamped", "rewards/desirable", "rewards/undesirable", "desirable_fraction"),
    smoke=dict(steps=3, n_examples=128, batch_size=32, eval_every=2, warmup_steps=1),
    arms=(Arm("kto", "KTO", "beta", (0.3, 1.0, 3.0), needs="offline thumbs-up/down labels",
              tune=({}, {"lr": 3e-4}, {"lr": 1e-4}, {"lr": 3e-3})),),
    cost=cost)
OFFLINE_PPO_METHOD = Method(
    name="offline_ppo", description="offline PPO with +1/-1 rewards on KTO's thumbs (lecture 05's baseline)",
    config=OfflinePPOConfig, run=run_offline_ppo, trainer="methods.kto.train_offline_ppo",
    extra_keys=("clipfrac", "n_examples"), lecture="05_kto",
    metrics=(*TRAINED_KEYS, "clipfrac", "approx_kl", "ratio_mean"),
    smoke=dict(steps=3, batch_size=32, eval_every=2, warmup_steps=1))
