"""PPO-clip RLHF: fine-tune the policy against a learned reward model, near the reference.

The RLHF objective (Ziegler et al. 2019; Ouyang et al. 2022, eq. 2)

    max_pi  E_{x, y ~ pi}[ r(x, y) ]  -  beta * KL( pi(.|x) || pi_ref(.|x) )

is optimised with PPO (Schulman et al. 2017). One PPO **iteration** (``ppo_iteration``):

1. **Rollout** (``rl.rollout``): sample one completion per prompt at ``sampling_temperature``; score
   it with ``reward_fn`` (the learned reward model, or the gold judge for "PPO-GT"); record,
   without gradient and in eval mode, the "old" log-probs and values and the reference
   log-probs, all at the same temperature. Per-token rewards (``rl.token_rewards``):
   ``-beta * (log pi - log pi_ref)`` on every completion token, plus the score on the last.
2. **Advantages** (``advantages``): GAE(gamma, lambda) from the rewards and the old values,
   whitened over the batch; value targets R_t = A_t + V_old(s_t) (before whitening).
3. **Updates**: ``ppo_epochs`` passes over the rollout in shuffled minibatches; each
   minibatch takes one AdamW step on (``minibatch_loss``)

       loss = ppo_clip_loss(log pi, log pi_old, A, clip_eps) + vf_coef * value_loss_clipped(V, V_old, R, vf_clip)

   with the gradient norm clipped to ``max_grad_norm``.
4. **KL controller**: beta of the reward's KL-to-pi_ref penalty for the next rollout, from
   ``FixedKLController`` or, with ``adaptive=True``, Ziegler et al.'s ``AdaptiveKLController``
   (beta grows when the rollout's KL to pi_ref is above ``kl_target``).

``policy_loss="kl_penalty"`` swaps the clipped surrogate for the PPO paper's other variant,
PPO-KL (Schulman et al. 2017, eq. 8; ``losses.ppo_kl_penalty_loss``): no clip, a penalty
``ppo_kl_beta * KL(pi_old || pi_theta)`` inside the surrogate, and after each iteration's
updates the x2 / /2 rule (``losses.ppo_kl_penalty_beta``) on the measured KL ``d``
(``policy_kl``) against ``ppo_kl_target``. That KL is to the policy that sampled the rollout (a trust region per
update), not the KL to pi_ref of step 4: a run can use both.

``train_ppo`` logs ``METHOD.metrics`` (bottom of this module) beside the shared evaluation:
per iteration, the means over its minibatch steps of ``loss``, ``pg_loss``, ``vf_loss``,
``clipfrac``, ``approx_kl``, ``ratio_mean``, ``vf_clipfrac`` and ``grad_norm``; the value
head's ``explained_variance`` before the update; and the rollout's ``score``, ``rm_reward``,
``rollout_gold``, ``rollout_valid``, ``rollout_len``, ``rollout_kl``, ``kl_coef`` and
``kl_penalty``; with ``policy_loss="kl_penalty"`` also ``ppo_kl_beta`` and ``ppo_kl_d`` (and
no ``clipfrac``). Each is defined once, with what healthy looks like, in ``alignlab.metrics``
(``print(metrics.table(METHOD.metrics))``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import world
from ..config import for_profile
from ..evaluation import gold_scores, validity
from ..losses import (
    AdaptiveKLController,
    FixedKLController,
    compute_gae,
    explained_variance,
    kl_k3,
    masked_mean,
    ppo_clip_loss,
    ppo_kl_penalty_beta,
    ppo_kl_penalty_loss,
    value_loss_clipped,
    whiten,
)
from ..models import Profile, get_device, seed_everything
from ..registry import TRAINED_KEYS, Arm, Cost, Method, prepare, result
from ..training import History, check_trainable_copy, cycle, epochs, optimizer_step, train
from .rl import PolicyWithValue, Rollout, gold_reward_fn, make_optimizer, new_policy, rollout  # noqa: F401 (new_policy re-exported)
from .rm import RMConfig, load_reward_model, score_texts

REWARDS = ("rm", "gold")
POLICY_LOSSES = ("clip", "kl_penalty")


@dataclass
class PPOConfig:
    """Settings of a PPO-clip RLHF run (defaults: quick profile, fixed beta, learned RM)."""

    steps: int = 40
    """PPO iterations; each is one rollout followed by ``ppo_epochs`` passes of updates."""
    batch_size: int = 48
    """Prompts per rollout (one completion each)."""
    ppo_epochs: int = 4
    """Passes over each rollout (the samples are reused: that is what the clip protects)."""
    minibatch: int = 16
    """Completions per gradient step; ``batch_size / minibatch`` steps per epoch."""
    lr: float = 3e-4
    """AdamW learning rate of the language model (1e-3 already clips ~20% of tokens)."""
    value_lr: float = 3e-3
    """AdamW learning rate of the value head (it starts at 0 and must catch up fast)."""
    clip_eps: float = 0.2
    """epsilon of the policy clip: the ratio pi/pi_old is clipped to [1 - eps, 1 + eps]."""
    vf_clip: float = 0.2
    """How far a value prediction may move from its rollout value before clipping."""
    vf_coef: float = 0.5
    """Weight of the value loss in the total loss."""
    critic: str = "shared"
    """'shared': value head on the policy's trunk; 'separate': on its own copy of the SFT transformer."""
    gamma: float = 1.0
    """Discount; 1 because an episode is one short completion."""
    lam: float = 0.95
    """GAE lambda: 0 = one-step TD errors, 1 = Monte-Carlo return minus the value."""
    kl_coef: float = 0.1
    """beta of the per-token KL penalty (the initial beta when ``adaptive``)."""
    adaptive: bool = False
    """PPO-KL: adapt beta towards ``kl_target`` (Ziegler et al. 2019) instead of keeping it fixed."""
    kl_target: float = 3.0
    """Target sequence KL(pi || pi_ref) in nats for the adaptive controller."""
    kl_horizon: int = 100
    """Adaptive controller horizon, in samples: beta moves by at most a factor
    (1 +- 0.2 * batch_size / kl_horizon) per iteration."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip of each update."""
    policy_loss: str = "clip"
    """'clip': PPO-clip (eq. 7); 'kl_penalty': the PPO paper's PPO-KL (eq. 8), no clip, a penalty
    on KL(pi_old || pi_theta) adapted by the x2 / /2 rule (``clip_eps`` is then unused)."""
    ppo_kl_beta: float = 1.0
    """PPO-KL only: the initial coefficient of the KL(pi_old || pi_theta) penalty."""
    ppo_kl_target: float = 0.01
    """PPO-KL only: d_targ, the per-token KL(pi_old || pi_theta) an iteration's updates should reach."""
    sampling_temperature: float = 1.0
    """Sampling temperature; every log-prob (old, new, reference) is computed at it too."""
    reward: str = "rm"
    """What PPO maximises: 'rm' (the learned reward model) or 'gold' (the judge: "PPO-GT")."""
    seed: int = 0
    """Seed of the rollouts and the minibatch order (same seed, same run)."""
    max_new_tokens: int = 32
    """Longest completion sampled, in tokens."""
    eval_every: int = 10
    """Evaluate with the shared Evaluator every this many iterations."""

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides) -> PPOConfig:
        """Defaults for ``profile`` (``full``: a bigger model, larger batches, a smaller lr)."""
        return for_profile(cls, profile, full=dict(steps=40, batch_size=128, minibatch=32, lr=2e-4,
                                                   kl_horizon=256), **overrides)

    def __post_init__(self):
        if self.critic not in ("shared", "separate"):
            raise ValueError(f"PPOConfig.critic must be 'shared' or 'separate', got {self.critic!r}")
        if self.policy_loss not in POLICY_LOSSES:
            raise ValueError(f"PPOConfig.policy_loss must be one of {POLICY_LOSSES}, got {self.policy_loss!r}")
        if self.reward not in REWARDS:
            raise ValueError(f"PPOConfig.reward must be one of {REWARDS}, got {self.reward!r}")
        for name in ("gamma", "lam"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"PPOConfig.{name} must be in [0, 1], got {v}")
        for name in ("steps", "batch_size", "ppo_epochs", "minibatch", "max_new_tokens", "eval_every",
                     "kl_horizon"):
            if getattr(self, name) < 1:
                raise ValueError(f"PPOConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.minibatch > self.batch_size:
            raise ValueError(f"PPOConfig.minibatch ({self.minibatch}) must be <= batch_size "
                             f"({self.batch_size}): a minibatch is a slice of one rollout")
        for name in ("clip_eps", "vf_clip", "sampling_temperature", "lr", "kl_target",
                     "ppo_kl_beta", "ppo_kl_target"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PPOConfig.{name} must be > 0, got {getattr(self, name)}")
        if not self.kl_coef >= 0:
            raise ValueError(f"PPOConfig.kl_coef must be >= 0, got {self.kl_coef}")
        if self.adaptive and self.kl_coef == 0:
            raise ValueError("PPOConfig: adaptive=True needs kl_coef > 0 (the controller "
                             "multiplies beta, so it would stay 0 forever)")


# ---------------------------------------------------------------------------
# 1. Policy, reward functions, controller
# ---------------------------------------------------------------------------

def rm_reward_fn(rm, tok):
    """The learned reward model as a ``reward_fn(prompts, completions, finished) -> list``.

    It scores ``<bos> prompt completion [<eos>]`` at the last real token (``rm.score_texts``),
    in eval mode, without gradient.
    """

    def reward_fn(prompts, completions, finished):
        return score_texts(rm, tok, prompts, completions, finished).tolist()

    return reward_fn


def kl_controller(config: PPOConfig):
    """``AdaptiveKLController`` (PPO-KL) or ``FixedKLController`` as ``config`` says."""
    if config.adaptive:
        return AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon)
    return FixedKLController(config.kl_coef)


# ---------------------------------------------------------------------------
# 2. Advantages and the loss of one minibatch
# ---------------------------------------------------------------------------

def advantages(ro: Rollout, config: PPOConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(whitened advantages, value targets), each (B, T), from the rollout's old values.

    Whitening (mean 0, std 1 over the batch's tokens) happens after the returns are
    formed, so the value head still regresses on the reward's own scale.
    """
    adv, returns = compute_gae(ro.rewards, ro.values, ro.mask, config.gamma, config.lam)
    return whiten(adv, ro.mask), returns


def minibatch_loss(policy: PolicyWithValue, ro: Rollout, adv: torch.Tensor,
                   returns: torch.Tensor, idx: torch.Tensor, config: PPOConfig,
                   ppo_kl_beta: float | None = None) -> tuple:
    """(loss, stats) of the rows ``idx`` of rollout ``ro``, with gradient.

    The new log-probs and values come from the same forward pass (``PolicyWithValue``) at the
    same temperature, on the same padded rows and columns as the old ones, so before any
    update the ratio is exactly 1. ``ppo_kl_beta``: the current PPO-KL coefficient when
    ``config.policy_loss == "kl_penalty"`` (default ``config.ppo_kl_beta``).
    """
    batch = ro.batch
    logp, values = policy(batch.input_ids[idx], batch.attention_mask[idx], config.sampling_temperature)
    mask = ro.mask[idx]
    if config.policy_loss == "kl_penalty":
        beta = config.ppo_kl_beta if ppo_kl_beta is None else ppo_kl_beta
        pg_loss, pg_stats = ppo_kl_penalty_loss(logp, ro.logprobs[idx], adv[idx], mask, beta)
    else:
        pg_loss, pg_stats = ppo_clip_loss(logp, ro.logprobs[idx], adv[idx], mask, config.clip_eps)
    vf_loss, vf_stats = value_loss_clipped(values, ro.values[idx], returns[idx], mask,
                                           config.vf_clip)
    loss = pg_loss + config.vf_coef * vf_loss
    stats = {"loss": loss.detach(), "pg_loss": pg_loss.detach(), "vf_loss": vf_loss.detach(),
             **pg_stats, **vf_stats}
    return loss, {k: float(v) for k, v in stats.items()}


def ppo_update(policy: PolicyWithValue, opt, ro: Rollout, config: PPOConfig,
               generator: torch.Generator | None = None,
               ppo_kl_beta: float | None = None) -> list[dict]:
    """``ppo_epochs`` passes of shuffled minibatch steps on ``ro``; the stats of every step.

    ``opt``: ``make_optimizer(policy, config.lr, config.value_lr)``; ``generator`` draws each
    epoch's order (None: torch's global generator). Returns one dict per minibatch step, in
    order (the first one is taken before any update, so its ratio_mean is 1, approx_kl and
    clipfrac 0). ``ppo_kl_beta``: PPO-KL's current coefficient (``minibatch_loss``).
    """
    adv, returns = advantages(ro, config)
    policy.train()
    out = []
    batches = epochs(len(ro), config.minibatch, generator)  # full minibatches, a fresh order each epoch
    for _ in range(config.ppo_epochs * (len(ro) // config.minibatch)):
        idx = torch.tensor(next(batches), device=ro.mask.device)
        loss, stats = minibatch_loss(policy, ro, adv, returns, idx, config, ppo_kl_beta)
        stats["grad_norm"] = optimizer_step(loss, opt, policy, config.max_grad_norm)
        out.append(stats)
    out[0]["explained_variance"] = float(explained_variance(ro.values, returns, ro.mask))
    return out


@torch.no_grad()
def policy_kl(policy: PolicyWithValue, ro: Rollout, config: PPOConfig) -> float:
    """d of PPO-KL: mean per-token k3 estimate of KL(pi_old || pi_theta) over the rollout's
    completion tokens, after the update (pi_old: the policy that sampled ``ro``)."""
    b = ro.batch
    logp, _ = policy(b.input_ids, b.attention_mask, config.sampling_temperature)
    return float(masked_mean(kl_k3(ro.logprobs, logp * ro.mask), ro.mask))


# ---------------------------------------------------------------------------
# 3. One iteration and the loop
# ---------------------------------------------------------------------------

def rollout_metrics(ro: Rollout, beta: float, rm_fn=None, config: PPOConfig | None = None) -> dict:
    """Means over one rollout's samples: score, rm_reward, gold, valid rate, KL, length."""
    b = ro.batch
    gold, valid = gold_scores(b), validity(b)
    stats = ro.stats()
    out = {"score": stats["score"], "rollout_gold": float(np.mean(gold)),
           "rollout_valid": float(np.mean(valid)), "rollout_kl": stats["rollout_kl"],
           "rollout_len": stats["rollout_len"], "kl_coef": beta,
           "kl_penalty": beta * stats["rollout_kl"]}
    if rm_fn is not None:
        out["rm_reward"] = float(np.mean(rm_fn(b.prompts, b.completions, b.finished)))
    elif config is not None and config.reward == "rm":
        out["rm_reward"] = stats["score"]
    return out


def train_ppo(policy: PolicyWithValue, ref, tok, reward_fn, config: PPOConfig, evaluator=None,
              prompts: list[str] | None = None, rm_fn=None, progress: bool = True,
              name: str | None = None, kl_ctl=None) -> History:
    """Train ``policy`` in place with PPO-clip on the shared loop; returns its ``History``.

    ref:       the frozen reference LM pi_ref (the SFT model)
    reward_fn: ``reward_fn(prompts, completions, finished) -> list[float]``: ``rm_reward_fn``
               for RLHF, ``rl.gold_reward_fn`` for PPO-GT
    evaluator: the shared ``Evaluator`` (called on ``policy.lm``), or None
    prompts:   training prompts (default: ``steps * batch_size`` train prompts from ``config.seed``);
               iteration s uses the s-th slice of ``config.batch_size``, cycling
    rm_fn:     an extra scorer logged as ``rm_reward`` (e.g. the RM during a PPO-GT run)
    kl_ctl:    the KL controller (default ``kl_controller(config)``); pass your own to read
               the beta it ends on (``kl_ctl.beta``; ``kl_coef`` logs the beta of each iteration)
    """
    if not isinstance(policy, PolicyWithValue):
        raise TypeError(f"train_ppo: `policy` must be a PolicyWithValue, got "
                        f"{type(policy).__name__}; build it with ppo.new_policy(sft_model)")
    if not callable(reward_fn):
        raise TypeError(f"train_ppo: `reward_fn` must be callable (prompts, completions, "
                        f"finished) -> scores, got {type(reward_fn).__name__}")
    if prompts is None:
        prompts = world.make_prompts(config.steps * config.batch_size, "train", config.seed)
    if len(prompts) < config.batch_size:
        raise ValueError(f"train_ppo: need at least config.batch_size={config.batch_size} prompts, got "
                         f"{len(prompts)}")
    check_trainable_copy(policy, ref, "train_ppo")  # pi_ref is frozen: rollout() runs it under no_grad
    opt = make_optimizer(policy, config.lr, config.value_lr)
    ctl = kl_ctl or kl_controller(config)
    gen = torch.Generator().manual_seed(config.seed)
    penalty = {"beta": config.ppo_kl_beta}  # PPO-KL's coefficient, adapted after each iteration

    def step_fn(step: int) -> dict:
        beta = ctl.beta
        ro = rollout(policy, ref, tok, cycle(prompts, config.batch_size, step), reward_fn, config,
                     seed=config.seed * 100_003 + step, kl_coef=beta)
        if config.policy_loss == "kl_penalty":
            updates = ppo_update(policy, opt, ro, config, gen, ppo_kl_beta=penalty["beta"])
        else:
            updates = ppo_update(policy, opt, ro, config, gen)
        metrics = {k: float(np.mean([u[k] for u in updates])) for k in updates[-1]}
        metrics["explained_variance"] = updates[0]["explained_variance"]
        metrics.update(rollout_metrics(ro, beta, rm_fn, config))
        if config.policy_loss == "kl_penalty":
            d = policy_kl(policy, ro, config)
            metrics.update(ppo_kl_beta=penalty["beta"], ppo_kl_d=d)
            penalty["beta"] = ppo_kl_penalty_beta(penalty["beta"], d, config.ppo_kl_target)
        ctl.update(ro.kl.mean().item(), len(ro))
        return metrics

    history = History(name or f"ppo-{config.reward}")
    return train(policy.lm, step_fn, config.steps, evaluator, config.eval_every, history,
                 desc=history.name, progress=progress)


# ---------------------------------------------------------------------------
# 4. Command line: python -m alignlab run ppo
# ---------------------------------------------------------------------------

def fit(ref, tok, config: PPOConfig, evaluator=None, rm_fn=None, name: str | None = None,
        progress: bool = True, kl_ctl=None):
    """The recipe of every PPO run (``run`` and the notebooks): seed with ``config.seed``, a fresh
    policy with its value head (``config.critic``), then ``train_ppo``. Returns (policy, history).

    The reward is ``rm_fn`` (a learned reward model's ``rm_reward_fn``) when ``config.reward`` is
    ``"rm"``, else the gold judge; a gold run still logs ``rm_fn``'s opinion of its samples when given.
    """
    if config.reward == "rm" and rm_fn is None:
        raise ValueError("ppo.fit: config.reward is 'rm' but no rm_fn was given (rm_reward_fn(rm, tok))")
    seed_everything(config.seed)
    policy = new_policy(ref, config.critic)
    reward_fn = rm_fn if config.reward == "rm" else gold_reward_fn
    history = train_ppo(policy, ref, tok, reward_fn, config, evaluator, rm_fn=None if config.reward == "rm" else rm_fn,
                        name=name, progress=progress, kl_ctl=kl_ctl)
    return policy, history


def run(profile: Profile, seed: int = 0, config: PPOConfig | None = None) -> dict:
    """CLI entry: PPO against the cached reward model (or the gold judge, ``--set reward=gold``).

    Returns the shared metrics plus ``rm_reward``: the learned RM's mean score of the
    evaluator's samples of the final policy (the proxy the run maximised).
    """
    config = config or PPOConfig.for_profile(profile, seed=seed)
    rm, _ = load_reward_model(profile, seed, device=get_device(), progress=False)
    r = prepare(profile, seed)
    rm_fn = rm_reward_fn(rm, r.tok)
    ctl = kl_controller(config)
    policy, history = fit(r.ref, r.tok, config, r.evaluator, rm_fn, progress=False, kl_ctl=ctl)
    batch = r.evaluator.sample(policy.lm)
    return result(history, rm_reward=round(float(np.mean(rm_fn(batch.prompts, batch.completions,
                                                                batch.finished))), 4),
                  reward=config.reward, kl_coef=round(ctl.beta, 4), adaptive=config.adaptive, steps=config.steps,
                  clipfrac=round(history.last("clipfrac"), 4) if config.policy_loss == "clip" else None,
                  approx_kl=round(history.last("approx_kl"), 5))


def cost(config: PPOConfig, profile) -> Cost:
    """Completions sampled; labels: the reward model's pairs (``reward=rm``) or one true-reward call
    per completion (``reward=gold``); optimiser steps: epochs x minibatches per rollout."""
    n = config.steps * config.batch_size
    steps = config.steps * config.ppo_epochs * math.ceil(config.batch_size / config.minibatch)
    if config.reward == "rm":
        return Cost(n, RMConfig.for_profile(profile).n_pairs, "offline pairs (the RM's)", steps)
    return Cost(n, n, "true-reward scores, online", steps)


_TUNE = ({}, {"lr": 1e-4}, {"lr": 1e-3}, {"ppo_epochs": 2})
"""The tuning protocol's configurations (``studies.tuning``), the same for both PPO arms."""

METHOD = Method(
    name="ppo", description="PPO-clip RLHF against the learned reward model (adds rm_reward; --set reward=gold)",
    config=PPOConfig, run=run,
    extra_keys=("rm_reward", "reward", "kl_coef", "adaptive", "steps", "clipfrac", "approx_kl"),
    trainer="methods.ppo.train_ppo",
    metrics=(*TRAINED_KEYS, "pg_loss", "vf_loss", "clipfrac", "approx_kl", "ratio_mean", "vf_clipfrac",
             "explained_variance", "score", "rm_reward", "rollout_gold", "rollout_valid", "rollout_len", "rollout_kl",
             "kl_coef", "kl_penalty", "ppo_kl_beta", "ppo_kl_d"),
    lecture="03_ppo_rlhf",
    smoke=dict(steps=2, eval_every=1),
    arms=(Arm("ppo", "PPO (RM)", "kl_coef", (0.03, 0.1, 0.3), (("reward", "rm"),),
              needs="a reward model (offline pairs), a critic, online samples", tune=_TUNE),
          Arm("ppo_gt", "PPO-GT (gold)", "kl_coef", (0.03, 0.1, 0.3), (("reward", "gold"),),
              needs="the true reward, queried for every sample (online), a critic", tune=_TUNE)),
    cost=cost)
