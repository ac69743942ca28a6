"""Reward modelling: a Bradley-Terry reward model on the tiny GPT-2.

The reward model (RM) is ``GPT2ForSequenceClassification`` with one label, the
form TRL's ``RewardTrainer`` uses: the SFT model's transformer with a linear
*score head* on top, read at the **last real token** of ``<bos> prompt
completion <eos>``. It learns from preference pairs (``prompt/chosen/rejected``)
with the Bradley-Terry loss (Ouyang et al. 2022, eq. 1; ``losses.bt_loss``)

    loss = mean softplus(r(x, y_rejected) - r(x, y_chosen))  [+ center_coef * mean (r_c + r_r)^2]

where the optional second term (Eisenstein et al. 2023, "Helping or herding?";
TRL's ``center_rewards_coefficient``) pins the free offset of the rewards near 0.

``load_reward_model()`` returns the cached RM of a profile, training it on first
use on pairs sampled from the SFT model on *train* prompts. Lecture 03 (PPO)
optimises against it; ``methods.bon`` (best-of-N) is the simplest policy that uses it.

``train_reward_model`` logs ``METHOD.metrics`` (bottom of this module): the minibatch's
``loss``, ``bt_loss``, ``accuracy``, ``margin``, ``reward_mean``, ``center_loss`` and, on
held-out pairs, ``eval_accuracy`` (vs the gold judge: the headline), ``eval_label_acc``,
``eval_loss``. Each is defined once, with what healthy looks like, in ``alignlab.metrics``
(``print(metrics.table(METHOD.metrics))``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    PreTrainedTokenizerFast,
)

from .. import cache, data, world
from ..config import for_profile
from ..losses import bt_loss, pairwise_accuracy
from ..models import Profile, get_device, get_profile, seed_everything, settings_dict
from ..pipeline import load_sft, sft_folder
from ..registry import Method, prepare
from ..sampling import encode, last_token_index, position_ids
from ..training import History, cosine_schedule, epochs, make_optimizer, optimizer_step, train


@dataclass
class RMConfig:
    """Settings of reward-model training (data, optimiser, centering, evaluation)."""

    n_pairs: int = 8192
    """Training preference pairs: two SFT samples per train prompt, labelled by the annotator."""
    annotator_temperature: float = 0.1
    """Annotator noise: P(a > b) = sigmoid((gold_a - gold_b) / temperature); 0 = noiseless."""
    steps: int = 500
    """Optimiser steps."""
    batch_size: int = 64
    """Preference pairs per step (each pair is two sequences)."""
    lr: float = 2e-3
    """Peak AdamW learning rate (cosine decay after a 5% warm-up)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    center_coef: float = 0.01
    """Weight of the auxiliary centering loss mean (r_c + r_r)^2 (0 switches it off;
    0.01 is the value Eisenstein et al. 2023 and TRL's docs suggest)."""
    n_eval_pairs: int = 512
    """Held-out pairs (eval prompts, fresh samples) for accuracy and calibration."""
    eval_every: int = 100
    """Evaluate on the held-out pairs every this many steps (and at step 0 and the end)."""
    min_gap: float = 0.2
    """Held-out accuracy counts pairs whose gold scores differ by more than this."""
    seed: int = 0
    """Seeds the preference pairs, the score head's initialisation and the minibatch order."""
    n_layer: int = 0
    """Keep only the SFT transformer's first n_layer blocks (a smaller reward model); 0 keeps all."""

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides) -> RMConfig:
        """The defaults for ``profile`` (``quick``: these; ``full``: more data and steps)."""
        return for_profile(cls, profile, full=dict(n_pairs=16384, steps=1000, lr=1e-3,
                                                   n_eval_pairs=2048, eval_every=200), **overrides)


# ---------------------------------------------------------------------------
# 1. The model: the SFT transformer with a scalar head, read at the last real token.
# ---------------------------------------------------------------------------

def new_reward_model(sft_model_or_profile=None, tok=None, seed: int = 0, n_layer: int = 0):
    """A ``GPT2ForSequenceClassification(num_labels=1)`` whose transformer is the SFT model's.

    ``sft_model_or_profile``: a ``GPT2LMHeadModel`` (usually the SFT model), or a
    profile / profile name / None, in which case the cached SFT model is loaded.
    ``tok``: the tokenizer (its pad id goes into the config; loaded with a profile).
    The score head is freshly initialised (normal, std 0.02) from ``seed``. ``n_layer`` > 0
    keeps only the first ``n_layer`` transformer blocks (a smaller RM; 0 keeps them all).
    Returns the RM on the SFT model's device, in train mode.
    """

    if not hasattr(sft_model_or_profile, "transformer"):
        sft, sft_tok = load_sft(sft_model_or_profile, progress=False)
        tok = tok or sft_tok
    else:
        sft = sft_model_or_profile
    if tok is None:
        raise ValueError("new_reward_model: pass the tokenizer `tok` with an SFT model (its pad "
                         "token id goes into the reward model's config)")
    config = GPT2Config.from_dict(sft.config.to_dict())
    if not 0 <= n_layer <= config.n_layer:
        raise ValueError(f"new_reward_model: n_layer must be in 0..{config.n_layer} (the SFT model's "
                         f"blocks; 0 keeps all), got {n_layer}")
    config.n_layer = n_layer or config.n_layer
    config.num_labels = 1
    config.pad_token_id = tok.pad_token_id
    config.architectures = ["GPT2ForSequenceClassification"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rm = GPT2ForSequenceClassification(config)
    keep = {k: v for k, v in sft.transformer.state_dict().items()
            if not k.startswith("h.") or int(k.split(".")[1]) < config.n_layer}
    rm.transformer.load_state_dict(keep)
    return rm.to(next(sft.parameters()).device).train()


def _ids_and_mask(batch):
    if isinstance(batch, dict):
        return batch["input_ids"], batch["attention_mask"]
    return batch.input_ids, batch.attention_mask


def score(rm, batch) -> torch.Tensor:
    """(B,) reward of each sequence: the score head on the hidden state of its last real token.

    ``batch``: a ``sampling.Batch`` or a dict with ``input_ids`` and ``attention_mask`` (B, T).
    Padding may be on the left, on the right or both: the last real token is found from the
    attention mask (not from HF's pad-token heuristic), and positions skip left padding.
    Gradients flow (wrap in ``torch.no_grad()`` to score only).
    """
    ids, mask = _ids_and_mask(batch)
    if ids.dim() != 2 or ids.shape != mask.shape:
        raise ValueError(f"score: `input_ids` {tuple(ids.shape)} and `attention_mask` "
                         f"{tuple(mask.shape)} must both be (B, T) and equal in shape")
    empty = (mask.sum(-1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"score: row(s) {empty[:5]} have no real token (attention_mask all 0); "
                         "every sequence needs at least <bos>")
    hidden = rm.transformer(input_ids=ids, attention_mask=mask,
                            position_ids=position_ids(mask)).last_hidden_state
    last = last_token_index(mask)
    rewards = rm.score(hidden[torch.arange(len(ids), device=ids.device), last]).squeeze(-1)
    if not torch.isfinite(rewards).all():
        bad = (~torch.isfinite(rewards)).nonzero().flatten().tolist()
        raise FloatingPointError(f"score: the reward model returned NaN/inf for row(s) {bad[:5]}; "
                                 "its weights have probably diverged (learning rate too high?)")
    return rewards.float()


@torch.no_grad()
def score_texts(rm, tok, prompts, completions, finished=None, batch_size: int = 512) -> torch.Tensor:
    """(N,) rewards of (prompt, completion) texts, scored in chunks, in eval mode.

    ``finished``: per row, whether the completion ended with ``<eos>`` (default: all did).
    """
    prompts, completions = list(prompts), list(completions)
    if len(prompts) != len(completions):
        raise ValueError(f"score_texts: {len(prompts)} prompts but {len(completions)} completions")
    finished = [True] * len(prompts) if finished is None else list(finished)
    device = next(rm.parameters()).device
    was_training = rm.training
    rm.eval()
    # chunks of similar length (less padding to compute), each all finished or all cut off
    order = sorted(range(len(prompts)), key=lambda j: (finished[j], len(prompts[j].split())
                                                       + len(completions[j].split())))
    out = torch.empty(len(prompts))
    for i in range(0, len(order), batch_size):
        for eos in (True, False):  # encode adds <eos> to all rows of a call, or to none
            rows = [j for j in order[i:i + batch_size] if finished[j] == eos]
            if rows:
                b = encode(tok, [prompts[j] for j in rows], [completions[j] for j in rows],
                           add_eos=eos, device=device)
                out[rows] = score(rm, b).cpu()
    rm.train(was_training)
    return out


# ---------------------------------------------------------------------------
# 2. Accuracy against the gold judge.
# ---------------------------------------------------------------------------

def gold_agreement(r_a, r_b, g_a, g_b, min_gap: float = 0.2) -> tuple[float, int]:
    """(accuracy, n_pairs): how often the RM orders pairs as the gold judge does.

    ``r_a, r_b``: (N,) RM rewards of the two completions; ``g_a, g_b``: (N,) their gold scores.
    Only pairs with |g_a - g_b| > ``min_gap`` count (smaller gaps are near-ties even for the
    judge). A tie of the RM counts 1/2.
    """
    r_a, r_b = torch.as_tensor(r_a, dtype=torch.float), torch.as_tensor(r_b, dtype=torch.float)
    g_a, g_b = torch.as_tensor(g_a, dtype=torch.float), torch.as_tensor(g_b, dtype=torch.float)
    shapes = {name: tuple(x.shape) for name, x in
              (("r_a", r_a), ("r_b", r_b), ("g_a", g_a), ("g_b", g_b))}
    if len(set(shapes.values())) != 1 or r_a.dim() != 1:
        raise ValueError(f"gold_agreement: rewards and gold scores must be four (N,) tensors of "
                         f"one length, got shapes {shapes}")
    for name, x in (("r_a", r_a), ("r_b", r_b), ("g_a", g_a), ("g_b", g_b)):
        if not torch.isfinite(x).all():
            raise ValueError(f"gold_agreement: `{name}` contains NaN/inf; the reward model (or "
                             "the judge) produced a non-finite score")
    keep = (g_a - g_b).abs() > min_gap
    if not keep.any():
        raise ValueError(f"gold_agreement: no pair has a gold gap above min_gap={min_gap}")
    sign = torch.sign(g_a - g_b)[keep]
    diff = (r_a - r_b)[keep] * sign  # > 0 where the RM agrees with the judge
    return float(pairwise_accuracy(diff, torch.zeros_like(diff))), int(keep.sum())


def pairwise_accuracy_on(rm, tok, ds, min_gap: float = 0.2) -> float:
    """Accuracy of ``rm`` against the gold ordering on preference data ``ds``.

    ``ds`` needs prompt/chosen/rejected and gold_chosen/gold_rejected (``data.annotate_pairs``).
    """
    return rm_metrics(rm, tok, ds, min_gap)["eval_accuracy"]


def rm_metrics(rm, tok, ds, min_gap: float = 0.2) -> dict:
    """Held-out metrics of ``rm`` on ``ds``: eval_accuracy (vs gold), eval_label_acc, eval_loss."""
    for col in ("gold_chosen", "gold_rejected"):
        if col not in ds.column_names:
            raise ValueError(f"rm_metrics: the dataset has no {col!r} column (it has "
                             f"{ds.column_names}); build it with data.annotate_pairs")
    r_c = score_texts(rm, tok, list(ds["prompt"]), list(ds["chosen"]))
    r_r = score_texts(rm, tok, list(ds["prompt"]), list(ds["rejected"]))
    acc, _ = gold_agreement(r_c, r_r, list(ds["gold_chosen"]), list(ds["gold_rejected"]), min_gap)
    return {"eval_accuracy": acc, "eval_label_acc": float(pairwise_accuracy(r_c, r_r)),
            "eval_loss": float(bt_loss(r_c, r_r))}


# ---------------------------------------------------------------------------
# 3. Data and training.
# ---------------------------------------------------------------------------

def preference_data(sft, tok, n_pairs: int, split: str = "train", temperature: float = 0.1,
                    seed: int = 0, max_new_tokens: int = 32):
    """``n_pairs`` pairs of SFT samples on ``split`` prompts, labelled by a BT annotator."""
    prompts = world.make_prompts(n_pairs, split, seed)
    offset = 0 if split == "train" else 50_000  # held-out samples never share a seed
    return data.sample_pairs(sft, tok, prompts, temperature, seed + offset, max_new_tokens)


def pair_batch(encoded, idx: list[int], device=None) -> dict:
    """The minibatch of preference pairs ``idx`` from ``encoded``, ready for ``rm_step``.

    ``encoded``: a ``sampling.Batch`` (or dict) of 2n rows, the n chosen sequences then their
    n rejected ones (``encode(tok, prompts + prompts, chosen + rejected)``); ``idx``: pair
    indices in 0..n-1. Returns {input_ids, attention_mask} of 2 * len(idx) rows, chosen rows
    first, with the columns that are padding in every row dropped (less to compute).
    """
    ids, mask = _ids_and_mask(encoded)
    n = len(ids) // 2
    rows = torch.tensor(list(idx) + [n + i for i in idx])
    ids, mask = ids[rows], mask[rows]
    first = int(mask.any(0).long().argmax())  # drop columns that are padding in every row
    return {"input_ids": ids[:, first:].to(device), "attention_mask": mask[:, first:].to(device)}


def rm_loss(r_c, r_r, center_coef: float = 0.0, margin=None):
    """(loss, bt part, centering part) of a batch of rewards, each a scalar tensor.

    ``r_c, r_r``: (B,) rewards of the chosen and rejected completions; ``margin``: None or
    (B,) Llama 2 margins. loss = bt_loss(r_c, r_r, margin) + center_coef * mean (r_c + r_r)^2,
    TRL's ``RewardTrainer.compute_loss`` with a ``margin`` column and ``center_rewards_coefficient``.
    """
    loss_bt = bt_loss(r_c, r_r, margin)
    center = ((r_c + r_r) ** 2).mean()
    return loss_bt + center_coef * center, loss_bt, center


def rm_step(rm, opt, batch, config: RMConfig, sched=None, margin=None) -> dict:
    """One reward-model update on ``batch`` (``pair_batch``: chosen rows, then rejected rows).

    Chosen and rejected go through the model in ONE pass; the loss is ``rm_loss``:
    ``bt_loss(r_c, r_r, margin) + config.center_coef * mean (r_c + r_r)^2``; then zero_grad,
    backward, gradient-norm clip at 1.0, AdamW step (``opt``) and the schedule (``sched``).
    ``margin``: None or (B,) Llama 2 margins m (loss softplus(r_r - r_c + m)), one per pair.
    Returns the metrics ``train_reward_model`` logs.
    """
    r = score(rm, batch)
    k = len(r) // 2
    r_c, r_r = r[:k], r[k:]
    loss, loss_bt, center = rm_loss(r_c, r_r, config.center_coef, margin)
    grad_norm = optimizer_step(loss, opt, rm, 1.0, sched)
    return {"loss": loss.item(), "grad_norm": grad_norm, "bt_loss": loss_bt.item(),
            "accuracy": float(pairwise_accuracy(r_c, r_r)),
            "margin": (r_c - r_r).mean().item(), "reward_mean": r.mean().item(),
            "center_loss": center.item()}


def train_reward_model(rm, tok, train_ds, config: RMConfig | None = None, eval_fn=None,
                       progress: bool = True, name: str = "rm") -> History:
    """Train ``rm`` in place with the Bradley-Terry loss, on the shared loop. Returns its History.

    ``train_ds``: prompt/chosen/rejected pairs; an optional ``margin`` column (floats, as in
    TRL's ``RewardTrainer``) enters the loss as Llama 2's margin. ``eval_fn``: None, a
    held-out dataset (scored with ``rm_metrics``), or a callable ``rm -> dict``; it runs at
    step 0, every ``config.eval_every`` steps and at the end. ``config.seed`` fixes the
    minibatch order. Each step is ``rm_step`` on ``pair_batch``.
    """
    config = config or RMConfig()
    data.validate_preferences(train_ds, "paired")
    if eval_fn is not None and not callable(eval_fn):
        eval_ds = eval_fn
        eval_fn = lambda model: rm_metrics(model, tok, eval_ds, config.min_gap)  # noqa: E731
    device = next(rm.parameters()).device
    prompts, chosen, rejected = (list(train_ds[c]) for c in ("prompt", "chosen", "rejected"))
    margins = None
    if "margin" in train_ds.column_names:
        margins = torch.tensor(list(train_ds["margin"]), dtype=torch.float)
    n, B = len(prompts), min(config.batch_size, len(prompts))
    encoded = encode(tok, prompts + prompts, chosen + rejected)  # tokenise once: rows i and n + i
    lengths = torch.maximum(encoded.attention_mask[:n].sum(-1), encoded.attention_mask[n:].sum(-1))
    # every epoch in minibatches of pairs of similar lengths (less padding to compute)
    batches = epochs(n, B, config.seed, drop_last=False, lengths=lengths.tolist())
    opt = make_optimizer(rm, config.lr, weight_decay=config.weight_decay)
    sched = cosine_schedule(opt, config.steps)
    rm.train()

    def step_fn(step: int) -> dict:
        idx = next(batches)  # a short last batch (drop_last=False) too
        margin = None if margins is None else margins[idx].to(device)
        return rm_step(rm, opt, pair_batch(encoded, idx, device), config, sched, margin)

    history = train(rm, step_fn, config.steps, eval_fn, config.eval_every, History(name),
                    desc=name, progress=progress)
    rm.eval()
    return history


# ---------------------------------------------------------------------------
# 4. The cached reward model of the course.
# ---------------------------------------------------------------------------

def _resolve(profile) -> Profile:
    return get_profile(profile)


def rm_settings(profile, seed: int = 0, config: RMConfig | None = None) -> dict:
    """The cache key's settings: profile, seed, RM config and the SFT model it starts from."""

    profile = _resolve(profile)
    config = config or RMConfig.for_profile(profile, seed=seed)
    settings = dataclasses.asdict(config)
    if not settings["n_layer"]:
        del settings["n_layer"]  # the full-size RM keeps the cache key it had before the option
    return {"profile": settings_dict(profile), "seed": seed, "config": settings,
            "sft": sft_folder(profile, seed, progress=False).name}


def build_reward_model(profile=None, seed: int = 0, config: RMConfig | None = None, device=None,
                       progress: bool = True):
    """Sample pairs from the SFT model and train a reward model on them (no cache).

    Returns (rm, tok, history, train_ds, eval_ds). ``load_reward_model`` caches this.
    ``seed`` picks the SFT model; ``config.seed`` (default: ``seed``) the RM's own randomness.
    """

    profile = _resolve(profile)
    config = config or RMConfig.for_profile(profile, seed=seed)
    sft, tok = load_sft(profile, seed, device, progress)
    seed_everything(config.seed)
    train_ds = preference_data(sft, tok, config.n_pairs, "train", config.annotator_temperature,
                               config.seed, profile.max_new_tokens)
    eval_ds = preference_data(sft, tok, config.n_eval_pairs, "eval", config.annotator_temperature,
                              config.seed, profile.max_new_tokens)
    rm = new_reward_model(sft, tok, config.seed, config.n_layer)
    history = train_reward_model(rm, tok, train_ds, config, eval_ds, progress)
    return rm, tok, history, train_ds, eval_ds


def save_reward_model(rm, tok, history: History, profile=None, seed: int = 0,
                      config: RMConfig | None = None) -> Path:
    """Put a trained RM into the cache under (profile, seed, config), unless one is there.

    Only meaningful for an RM trained exactly as ``build_reward_model`` trains it (the
    lecture 01 notebook trains it in the open, then stores it for lecture 03).
    """
    profile = _resolve(profile)

    def build(tmp: Path):
        rm.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        meta = {"losses": [round(v, 4) for v in history.series("bt_loss")[1]]}
        for key in ("eval_accuracy", "eval_label_acc", "eval_loss"):
            if history.series(key)[0]:
                meta[key] = round(history.last(key), 4)
        return meta

    return cache.get_or_build("rm", rm_settings(profile, seed, config), build)


def rm_folder(profile=None, seed: int = 0, config: RMConfig | None = None,
              progress: bool = True) -> Path:
    """The cache folder of the reward model (trained on first use)."""
    profile = _resolve(profile)

    def build(tmp: Path):
        rm, tok, history, _, _ = build_reward_model(profile, seed, config, progress=progress)
        rm.cpu().save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        meta = {"losses": [round(v, 4) for v in history.series("bt_loss")[1]]}
        for key in ("eval_accuracy", "eval_label_acc", "eval_loss"):
            meta[key] = round(history.last(key), 4)
        return meta

    return cache.get_or_build("rm", rm_settings(profile, seed, config), build)


def load_reward_model(profile=None, seed: int = 0, device=None, config: RMConfig | None = None,
                      progress: bool = True):
    """(reward model, tokenizer): the course's cached RM, in eval mode. Trained on first use.

    Score sequences with ``score(rm, batch)`` (or ``score_texts``); the cache folder's
    ``alignlab.json`` holds its held-out accuracy (``cache.read_meta(rm_folder(...))``).
    """
    folder = rm_folder(profile, seed, config, progress)
    rm = GPT2ForSequenceClassification.from_pretrained(folder).to(device or get_device())
    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    tok.padding_side = "left"
    return rm.eval(), tok


# ---------------------------------------------------------------------------
# 5. Command line: python -m alignlab run rm
# ---------------------------------------------------------------------------

def run_rm(profile: Profile, seed: int = 0, config: RMConfig | None = None) -> dict:
    """CLI entry: train or load the RM; report its held-out accuracy and the reference's metrics.

    The RM is not a policy, so gold_reward/kl/win_rate/valid_rate are those of the SFT
    reference (KL 0, win-rate ~1/2); ``rm_accuracy`` is the headline (vs the gold ordering,
    pairs with gold gap > min_gap), ``rm_label_accuracy`` is against the annotator's labels.
    """
    config = config or RMConfig.for_profile(profile, seed=seed)
    meta = cache.read_meta(rm_folder(profile, seed, config, progress=False))
    r = prepare(profile, seed)
    return {**{k: round(v, 4) for k, v in r.evaluator(r.ref).items()},
            "rm_accuracy": meta["eval_accuracy"], "rm_label_accuracy": meta["eval_label_acc"],
            "min_gap": config.min_gap}


METHOD = Method(
    name="rm", description="train the Bradley-Terry reward model on preference pairs (adds rm_accuracy)",
    config=RMConfig, run=run_rm, trainer="methods.rm.train_reward_model",
    extra_keys=("length", "perplexity", "rm_accuracy", "rm_label_accuracy", "min_gap"),
    metrics=("loss", "grad_norm", "bt_loss", "accuracy", "margin", "reward_mean", "center_loss",
             "eval_accuracy", "eval_label_acc", "eval_loss"),
    lecture="01_bradley_terry",
    smoke=dict(n_pairs=64, steps=4, batch_size=16, n_eval_pairs=32, eval_every=2))
