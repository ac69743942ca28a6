"""Critic-free RL: RLOO and GRPO, k completions per prompt and the others as the baseline.

Lecture 02 found that a value head on the policy's own trunk explains almost nothing of the
return here, and lecture 03 paid for it with a second loss, a second learning rate and GAE.
Both methods below drop the critic. Each **step** (``group_step``):

1. **Rollout** (``group_rollout``): ``batch_size`` prompts, each repeated ``k`` times, through
   the one rollout path (``rl.rollout`` -> ``sampling.sample``), scored by ``reward_fn`` (the
   gold judge by default), with the old and the reference log-probs recorded. Rows come prompt
   by prompt, so ``scores.view(batch_size, k)`` puts each prompt's group in one row.
2. **Advantages** (``advantages``), one number per completion, from the pure functions in
   ``alignlab.losses``:
   * RLOO (Ahmadian et al. 2024): the KL is folded into the reward,
     R_i = score_i - beta * sum_t log pi/pi_ref (``kl_penalised_rewards``), and
     A_i = R_i - mean of the other k - 1 rewards of its prompt (``rloo_advantages``);
   * GRPO (Shao et al. 2024): A_i = (score_i - group mean) / (group std + eps)
     (``group_advantages``; ``scale="none"`` is Dr. GRPO's fix), with no KL in the reward.
3. **Updates**: ``epochs`` passes over the batch in shuffled minibatches of ``minibatch``
   completions, one AdamW step each (``training.optimizer_step``), on
   * RLOO: ``losses.rloo_loss``, the clipped SEQUENCE ratio (REINFORCE on the first minibatch);
   * GRPO: ``losses.grpo_loss``, per-token PPO-clip plus beta * k3 KL to pi_ref in the loss,
     aggregated as ``aggregation`` says (the paper's per-sequence mean, a token mean, Dr. GRPO's
     constant normaliser).

The policy is ``rl.new_policy(sft)``: the LM with the value head ``rl.rollout`` expects. The
head is never trained nor read here (the optimiser holds the LM's weights only).

Logged per step (each key defined once in ``alignlab.metrics``): ``loss``, ``clipfrac``,
``approx_kl``, ``ratio_mean`` and ``grad_norm`` (means over the step's minibatch updates), and the
rollout's ``score``, ``rollout_gold``, ``rollout_valid``, ``rollout_len``, ``rollout_kl``,
``kl_coef`` (beta) and ``kl_penalty`` (beta * rollout_kl).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import world
from ..config import for_profile
from ..evaluation import gold_scores, validity
from ..losses import AGGREGATIONS, group_advantages, grpo_loss, kl_penalised_rewards, rloo_advantages, rloo_loss
from ..models import Profile
from ..registry import TRAINED_KEYS, Arm, Cost, Method, prepare, result
from ..training import History, check_trainable_copy, cycle, epochs, make_optimizer, optimizer_step, train
from .rl import PolicyWithValue, Rollout, gold_reward_fn, new_policy, rollout

SCALES = ("std", "none")


@dataclass
class RLOOConfig:
    """Settings of an RLOO run against the gold reward (defaults: quick profile)."""

    steps: int = 40
    """Rollouts; each samples batch_size * k completions (the budget is steps * batch_size * k)."""
    batch_size: int = 12
    """Prompts per rollout."""
    k: int = 4
    """Completions sampled per prompt (the group; TRL's num_generations); k >= 2."""
    epochs: int = 2
    """Passes over each rollout (the first minibatch is on-policy: ratio 1)."""
    minibatch: int = 24
    """Completions per gradient step; batch_size * k / minibatch steps per pass."""
    lr: float = 3e-4
    """AdamW learning rate of the language model."""
    clip_eps: float = 0.2
    """epsilon of the clip on the policy ratio (the sequence ratio for RLOO, per token for GRPO)."""
    beta: float = 0.05
    """KL coefficient: RLOO subtracts beta * (summed k1 KL) from each reward (TRL's default 0.05)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip of each update."""
    sampling_temperature: float = 1.0
    """Sampling temperature; every log-prob (old, new, reference) is computed at it too."""
    seed: int = 0
    """Seed of the rollouts and the minibatch order (same seed, same run)."""
    max_new_tokens: int = 32
    """Longest completion sampled, in tokens."""
    eval_every: int = 10
    """Evaluate with the shared Evaluator every this many steps."""

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides):
        """Defaults for ``profile`` (``full``: a bigger model, more prompts per step, a smaller lr)."""
        return for_profile(cls, profile, full=dict(batch_size=32, minibatch=64, lr=2e-4), **overrides)

    @property
    def completions(self) -> int:
        """Sampled completions over the run: steps * batch_size * k (the budget compared across methods)."""
        return self.steps * self.batch_size * self.k

    def __post_init__(self):
        name = type(self).__name__
        for f in ("steps", "batch_size", "epochs", "minibatch", "max_new_tokens", "eval_every"):
            if getattr(self, f) < 1:
                raise ValueError(f"{name}.{f} must be >= 1, got {getattr(self, f)}")
        if self.k < 2:
            raise ValueError(f"{name}.k must be >= 2 (a group baseline needs other samples), got {self.k}")
        if self.minibatch > self.batch_size * self.k:
            raise ValueError(f"{name}.minibatch ({self.minibatch}) must be <= batch_size * k "
                             f"({self.batch_size * self.k}): a minibatch is a slice of one rollout")
        for f in ("clip_eps", "lr", "sampling_temperature", "max_grad_norm"):
            if not getattr(self, f) > 0:
                raise ValueError(f"{name}.{f} must be > 0, got {getattr(self, f)}")
        if not self.beta >= 0:
            raise ValueError(f"{name}.beta must be >= 0, got {self.beta}")


@dataclass
class GRPOConfig(RLOOConfig):
    """Settings of a GRPO run against the gold reward (defaults: quick profile)."""

    beta: float = 0.04
    """Weight of the k3 KL term in the loss (DeepSeekMath's 0.04; TRL 1.16's default is 0: no KL)."""
    scale: str = "std"
    """Advantage scale: 'std' divides by the group's std (GRPO), 'none' does not (Dr. GRPO)."""
    aggregation: str = "sequence_mean"
    """Per-token losses to one number: 'sequence_mean' (GRPO), 'token_mean', 'dr_grpo' (constant)."""
    eps: float = 1e-4
    """Added to the group std before dividing (TRL's 1e-4)."""

    def __post_init__(self):
        super().__post_init__()
        if self.scale not in SCALES:
            raise ValueError(f"GRPOConfig.scale must be one of {SCALES}, got {self.scale!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"GRPOConfig.aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if not self.eps > 0:
            raise ValueError(f"GRPOConfig.eps must be > 0, got {self.eps}")


# ---------------------------------------------------------------------------
# 1. k completions per prompt, and their advantages
# ---------------------------------------------------------------------------

def group_rollout(policy: PolicyWithValue, ref, tok, prompts: list[str], config: RLOOConfig,
                  reward_fn=gold_reward_fn, seed: int | None = None) -> Rollout:
    """``config.k`` completions of each prompt, prompt by prompt (rows p*k .. p*k + k - 1 answer
    ``prompts[p]``), through the shared ``rl.rollout``; no KL in its per-token rewards."""
    repeated = [p for p in prompts for _ in range(config.k)]
    return rollout(policy, ref, tok, repeated, reward_fn, config, seed=seed, kl_coef=0.0)


def advantages(ro: Rollout, config: RLOOConfig, advantage_fn=None) -> torch.Tensor:
    """(B,) one advantage per completion: RLOO's leave-one-out of the KL-penalised rewards, or
    GRPO's group-normalised scores (a ``GRPOConfig``).

    advantage_fn: replaces ``rloo_advantages`` / ``group_advantages``: (P, k) rewards -> (P, k)
                  advantages (an exercise's own function)."""
    k = config.k
    if isinstance(config, GRPOConfig):
        fn = advantage_fn or (lambda r: group_advantages(r, config.scale, config.eps))
        return torch.as_tensor(fn(ro.scores.view(-1, k))).detach().reshape(-1)
    rewards = kl_penalised_rewards(ro.scores, ro.logprobs, ro.ref_logprobs, ro.mask, config.beta)
    return torch.as_tensor((advantage_fn or rloo_advantages)(rewards.view(-1, k))).detach().reshape(-1)


def minibatch_loss(policy: PolicyWithValue, ro: Rollout, adv: torch.Tensor, idx: torch.Tensor,
                   config: RLOOConfig, loss_fn=None) -> tuple[torch.Tensor, dict]:
    """(loss, stats) of rows ``idx`` of ``ro``, with gradient; the new log-probs come from the same
    forward pass as the rollout's old ones, so on the first minibatch the ratio is exactly 1.

    loss_fn: GRPO only, replaces ``grpo_loss`` for the gradient (an exercise's own function,
             ``loss_fn(logprobs, old, ref, advantages, mask, clip_eps, beta) -> loss``); the
             logged statistics still come from ``grpo_loss``."""
    b = ro.batch
    logp, _ = policy(b.input_ids[idx], b.attention_mask[idx], config.sampling_temperature)
    mask = ro.mask[idx]
    old = ro.logprobs[idx]
    if isinstance(config, GRPOConfig):
        loss, stats = grpo_loss(logp, old, ro.ref_logprobs[idx], adv[idx], mask, config.clip_eps, config.beta,
                                config.aggregation, config.max_new_tokens)
        stats.pop("kl")  # the k3 term; the rollout's k1 KL is logged as rollout_kl
        if loss_fn is not None:
            loss = loss_fn(logp, old, ro.ref_logprobs[idx], adv[idx], mask, config.clip_eps, config.beta)
            loss = loss[0] if isinstance(loss, (tuple, list)) else loss
    else:
        loss, stats = rloo_loss(logp, old, adv[idx], mask, config.clip_eps)
    with torch.no_grad():
        log_ratio = (logp - old) * mask
        approx_kl = ((torch.expm1(log_ratio) - log_ratio) * mask).sum() / mask.sum()
    return loss, {"loss": float(loss.detach()), "approx_kl": float(approx_kl),
                  **{k: float(v) for k, v in stats.items()}}


def rollout_metrics(ro: Rollout, beta: float) -> dict:
    """Means over one rollout's samples: score, gold, valid rate, length, KL and its penalty."""
    stats = ro.stats()
    return {"score": stats["score"], "rollout_gold": float(np.mean(gold_scores(ro.batch))),
            "rollout_valid": float(np.mean(validity(ro.batch))), "rollout_len": stats["rollout_len"],
            "rollout_kl": stats["rollout_kl"], "kl_coef": beta, "kl_penalty": beta * stats["rollout_kl"]}


def group_step(policy: PolicyWithValue, opt, ro: Rollout, config: RLOOConfig,
               generator: torch.Generator | None = None, advantage_fn=None, loss_fn=None) -> dict:
    """``config.epochs`` passes of shuffled minibatch updates on ``ro``; the step's metrics
    (means over its updates, then the rollout's). ``advantage_fn``, ``loss_fn``: see
    ``advantages`` and ``minibatch_loss``."""
    adv = advantages(ro, config, advantage_fn)
    policy.train()
    batches = epochs(len(ro), config.minibatch, generator)
    updates = []
    for _ in range(config.epochs * (len(ro) // config.minibatch)):
        idx = torch.tensor(next(batches), device=ro.mask.device)
        loss, stats = minibatch_loss(policy, ro, adv, idx, config, loss_fn)
        stats["grad_norm"] = optimizer_step(loss, opt, policy.lm, config.max_grad_norm)
        updates.append(stats)
    metrics = {k: float(np.mean([u[k] for u in updates])) for k in updates[0]}
    metrics.update(rollout_metrics(ro, config.beta))
    return metrics


# ---------------------------------------------------------------------------
# 2. The loop
# ---------------------------------------------------------------------------

def train_group(policy: PolicyWithValue, ref, tok, config: RLOOConfig, evaluator=None,
                prompts: list[str] | None = None, reward_fn=gold_reward_fn, progress: bool = True,
                name: str | None = None, advantage_fn=None, loss_fn=None) -> History:
    """Train ``policy`` in place with RLOO (an ``RLOOConfig``) or GRPO (a ``GRPOConfig``) on the
    shared loop; returns its ``History``.

    prompts:   training prompts (default: steps * batch_size train prompts from ``config.seed``);
               step s uses the s-th slice of ``config.batch_size``, cycling, k samples each
    reward_fn: the sequence score (default: the gold judge)
    advantage_fn, loss_fn: replace the library's advantages / GRPO loss (exercise set 07 trains
               with the student's functions; see ``advantages`` and ``minibatch_loss``)
    """
    if not isinstance(policy, PolicyWithValue):
        raise TypeError(f"train_group: `policy` must be a PolicyWithValue, got {type(policy).__name__}; "
                        "build it with rl.new_policy(sft_model)")
    if prompts is None:
        prompts = world.make_prompts(config.steps * config.batch_size, "train", config.seed)
    if len(prompts) < config.batch_size:
        raise ValueError(f"train_group: need at least config.batch_size={config.batch_size} prompts, "
                         f"got {len(prompts)}")
    check_trainable_copy(policy, ref, "train_group")
    opt = make_optimizer(policy.lm, config.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(config.seed)

    def step_fn(step: int) -> dict:
        ro = group_rollout(policy, ref, tok, cycle(prompts, config.batch_size, step), config, reward_fn,
                           seed=config.seed * 100_003 + step)
        return group_step(policy, opt, ro, config, gen, advantage_fn, loss_fn)

    history = History(name or ("grpo" if isinstance(config, GRPOConfig) else "rloo"))
    return train(policy.lm, step_fn, config.steps, evaluator, config.eval_every, history,
                 desc=history.name, progress=progress)


# ---------------------------------------------------------------------------
# 3. Command line: python -m alignlab run rloo | grpo
# ---------------------------------------------------------------------------

def run(profile: Profile, seed: int, config: RLOOConfig) -> dict:
    """CLI entry (``run rloo``, ``run grpo``: the class of ``config`` picks the method) against the
    gold judge; shared metrics plus the sample budget."""
    r = prepare(profile, seed)
    history = train_group(new_policy(r.ref), r.ref, r.tok, config, r.evaluator, progress=False)
    return result(history, beta=config.beta, k=config.k, steps=config.steps, completions=config.completions,
                  clipfrac=round(history.last("clipfrac"), 4))


def cost(config: RLOOConfig, profile) -> Cost:
    """k samples per prompt, each scored by the true reward; optimiser steps: epochs x minibatches."""
    steps = config.steps * config.epochs * math.ceil(config.batch_size * config.k / config.minibatch)
    return Cost(config.completions, config.completions, "true-reward scores, online", steps)


_METRICS = (*TRAINED_KEYS, "clipfrac",
            "approx_kl", "ratio_mean", "score", "rollout_gold", "rollout_valid", "rollout_len", "rollout_kl",
            "kl_coef", "kl_penalty")
_EXTRA = ("beta", "k", "steps", "completions", "clipfrac")

_TUNE = ({}, {"lr": 1e-4}, {"lr": 1e-3}, {"epochs": 1})
"""The tuning protocol's configurations (``studies.tuning``), the same for RLOO and GRPO."""

RLOO_METHOD = Method(
    name="rloo", description="RLOO: k samples per prompt, leave-one-out baseline, KL in the reward (gold judge)",
    config=RLOOConfig, run=run, metrics=_METRICS, extra_keys=_EXTRA, lecture="07_rloo_grpo",
    trainer="methods.grpo.train_group", smoke=dict(steps=2, batch_size=4, k=2, minibatch=8, eval_every=1),
    arms=(Arm("rloo", "RLOO (gold)", "beta", (0.02, 0.05, 0.15),
              needs="the true reward, queried for every sample (online); no critic", tune=_TUNE),),
    cost=cost)

METHOD = GRPO_METHOD = Method(
    name="grpo", description="GRPO: k samples per prompt, group-normalised advantages, k3 KL in the loss (gold judge)",
    config=GRPOConfig, run=run, metrics=_METRICS, extra_keys=_EXTRA, lecture="07_rloo_grpo",
    trainer="methods.grpo.train_group", smoke=dict(steps=2, batch_size=4, k=2, minibatch=8, eval_every=1),
    arms=(Arm("grpo", "GRPO (gold)", "beta", (0.01, 0.04, 0.15),
              needs="the true reward, queried for every sample (online); no critic", tune=_TUNE),),
    cost=cost)
