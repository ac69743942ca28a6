"""Policy gradients on the tiny GPT-2: REINFORCE, baselines, and actor-critic with GAE.

Lecture 02 optimises the **gold reward directly**, on purpose: with a perfect reward,
everything that goes right or wrong is the RL machinery's doing. (Lecture 03 swaps in
a learned reward model and PPO's clipped update.)

One step (``pg_step``): sample a batch of completions (``rl.rollout``), turn the
per-token rewards into advantages A_t (``advantages``), and take ONE gradient step on

    L = -masked_mean_t( A_t * log pi(a_t|s_t) )  +  vf_coef * 0.5 * masked_mean_t( (V(s_t) - R_t)^2 )

(the policy-gradient loss L^PG = E_t[log pi(a_t|s_t) A_t] of Schulman et al. 2017, "Proximal
policy optimization algorithms", arXiv:1707.06347, eq. 2, negated for a minimiser; REINFORCE is
Williams 1992; the value term only for the ``gae`` baseline). One step per batch keeps
it on-policy, so no importance ratio is needed; that is what PPO adds.

Baselines (``PGConfig.baseline``):

==========  ====================================================================
``none``    A_t = G_t = sum_{k>=t} gamma^(k-t) r_k, the return-to-go (REINFORCE)
``mean``    A_t = G_t - b, b = mean of G over the batch's completion tokens (it includes
            the episode itself, so the expected gradient shrinks by about (B-1)/B: a bias
            of order 1/B; the leave-one-out mean, RLOO, would remove it)
``gae``     A_t = GAE(gamma, lambda) from the value head's TD errors, whitened;
            the value head regresses on R_t = A_t + V(s_t)
==========  ====================================================================

``train_pg`` logs ``METHOD.metrics`` (bottom of this module) beside the shared evaluation:
``loss``, ``pg_loss``, ``vf_loss`` and ``explained_variance`` (``gae`` only), the training
batch's ``score``, ``rollout_kl`` and ``kl_penalty``, and every ``grad_var_every`` steps the
gradient variance under each baseline, ``grad_var_none``/``grad_var_mean``/``grad_var_value``.
Each is defined once, with what healthy looks like, in ``alignlab.metrics``
(``print(metrics.table(METHOD.metrics))``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import world
from ..config import for_profile
from ..losses import compute_gae, explained_variance, masked_mean, whiten
from ..models import Profile
from ..registry import TRAINED_KEYS, Arm, Cost, Method, prepare, result
from ..sampling import token_logprobs
from ..training import History, check_trainable_copy, cycle, optimizer_step, train
from .rl import PolicyWithValue, Rollout, gold_reward_fn, make_optimizer, new_policy, rollout  # noqa: F401 (new_policy: re-exported for notebooks)

BASELINES = ("none", "mean", "gae")


@dataclass
class PGConfig:
    """Settings of a policy-gradient run (defaults: quick profile, GAE + KL)."""

    steps: int = 80
    """Optimiser steps; each samples a fresh batch (one update per batch: on-policy)."""
    batch_size: int = 48
    """Prompts (episodes) per step."""
    lr: float = 5e-4
    """AdamW learning rate of the language model."""
    value_lr: float = 3e-3
    """AdamW learning rate of the value head (it starts at 0 and must catch up fast)."""
    kl_coef: float = 0.05
    """beta of the per-token KL penalty -beta * (log pi - log pi_ref) in the reward."""
    gamma: float = 1.0
    """Discount; 1 because an episode is one short completion."""
    lam: float = 0.95
    """GAE lambda: 0 = one-step TD errors, 1 = Monte-Carlo return minus the value."""
    vf_coef: float = 0.5
    """Weight of the value loss in the total loss (``gae`` baseline only)."""
    baseline: str = "gae"
    """'none' (REINFORCE), 'mean' (batch-mean baseline) or 'gae' (value head + GAE)."""
    critic: str = "separate"
    """'shared': value head on the policy's trunk; 'separate': on its own GPT-2 copy."""
    whiten: bool = True
    """Whiten GAE advantages over the batch (``gae`` only: for REINFORCE it would be a baseline)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip of each update."""
    sampling_temperature: float = 1.0
    """Sampling temperature (log-probs are computed at the same one)."""
    max_new_tokens: int = 32
    """Longest completion sampled, in tokens."""
    eval_every: int = 20
    """Evaluate with the shared Evaluator every this many steps."""
    grad_var_every: int = 0
    """Measure ``grad_var_*`` every this many steps (0 = never; one pass per episode)."""
    lambda_prefixes: int = 16
    """Prefixes (one per prompt) in the lambda bias/variance experiment."""
    seed: int = 0
    """Seed of the training prompts and of each step's sampling (same seed, same run)."""

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides) -> PGConfig:
        """Defaults for ``profile`` (``full`` has a bigger model: more steps, larger batches)."""
        return for_profile(cls, profile, full=dict(steps=100, batch_size=128, lr=5e-4, eval_every=20,
                                                   lambda_prefixes=48), **overrides)

    def __post_init__(self):
        if self.baseline not in BASELINES:
            raise ValueError(f"PGConfig.baseline must be one of {BASELINES}, got {self.baseline!r}")
        for name in ("gamma", "lam"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"PGConfig.{name} must be in [0, 1], got {v}")
        for name in ("steps", "batch_size", "max_new_tokens", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"PGConfig.{name} must be >= 1, got {getattr(self, name)}")


# ---------------------------------------------------------------------------
# 1. Advantages
# ---------------------------------------------------------------------------

def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """(B, T) G_t = sum_{k>=t} gamma^(k-t) r_k over each completion (0 outside ``mask``).

    It is GAE with V = 0 and lambda = 1, so we reuse ``compute_gae``.
    """
    return compute_gae(rewards, torch.zeros_like(rewards), mask, gamma, 1.0)[0]


def advantages(ro: Rollout, baseline: str, gamma: float = 1.0, lam: float = 0.95,
               values: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, value targets), each (B, T), for a ``baseline`` of ``BASELINES``.

    ``values`` defaults to the rollout's values (the value head when sampled). Not
    whitened: ``pg_step`` whitens the ``gae`` ones if its config says so.
    """
    if baseline == "none":
        g = returns_to_go(ro.rewards, ro.mask, gamma)
        return g, g
    if baseline == "mean":
        g = returns_to_go(ro.rewards, ro.mask, gamma)
        return (g - masked_mean(g, ro.mask)) * ro.mask, g
    if baseline == "gae":
        return compute_gae(ro.rewards, ro.values if values is None else values, ro.mask,
                           gamma, lam)
    raise ValueError(f"advantages: `baseline` must be one of {BASELINES}, got {baseline!r}")


# ---------------------------------------------------------------------------
# 2. One update
# ---------------------------------------------------------------------------

def pg_losses(policy: PolicyWithValue, ro: Rollout, config: PGConfig) -> dict:
    """The loss of one update on rollout ``ro`` (with gradient) and its parts."""
    logp, values = policy(ro.batch.input_ids, ro.batch.attention_mask, config.sampling_temperature)
    adv, returns = advantages(ro, config.baseline, config.gamma, config.lam)
    if config.baseline == "gae" and config.whiten:
        adv = whiten(adv, ro.mask)
    pg_loss = -masked_mean(adv * logp, ro.mask)
    out = {"pg_loss": pg_loss, "loss": pg_loss}
    if config.baseline == "gae":
        vf_loss = 0.5 * masked_mean((values - returns) ** 2, ro.mask)
        out.update(vf_loss=vf_loss, loss=pg_loss + config.vf_coef * vf_loss,
                   explained_variance=explained_variance(ro.values, returns, ro.mask))
    return out


def pg_step(policy: PolicyWithValue, opt, ro: Rollout, config: PGConfig) -> dict:
    """One gradient step on rollout ``ro`` (``opt``: ``make_optimizer(policy, config.lr,
    config.value_lr)``); returns the metrics to log."""
    parts = pg_losses(policy, ro, config)
    grad_norm = optimizer_step(parts["loss"], opt, policy, config.max_grad_norm)
    stats = ro.stats()
    metrics = {k: float(v.detach()) for k, v in parts.items()}
    metrics["grad_norm"] = grad_norm
    metrics.update(score=stats["score"], rollout_kl=stats["rollout_kl"],
                   kl_penalty=config.kl_coef * stats["rollout_kl"])
    return metrics


# ---------------------------------------------------------------------------
# 3. The variance of the gradient estimate
# ---------------------------------------------------------------------------

def default_grad_params(policy: PolicyWithValue) -> list[torch.nn.Parameter]:
    """The weight matrices of the last transformer block: a small, telling subset."""
    block = policy.lm.transformer.h[-1]
    return [p for n, p in block.named_parameters() if p.dim() == 2]


def per_episode_grads(policy: PolicyWithValue, ro: Rollout, weights: dict,
                      params=None, temperature: float = 1.0, max_episodes: int = 64) -> dict:
    """{name: (n, P) matrix}: row i is episode i's gradient estimate for weighting ``name``.

    ``weights``: {name: (B, T) advantages}; row i of the result is
    g_i = sum_t A_it * grad log pi(a_it|s_it) over ``params`` (default: the last block's
    weight matrices), flattened, for the first n = min(B, ``max_episodes``) episodes.
    One forward pass per episode, one backward per weighting; ``temperature`` must be
    the sampling one.
    """
    params = params or default_grad_params(policy)
    out = {name: [] for name in weights}
    for i in range(min(len(ro), max_episodes)):
        ids, attn = ro.batch.input_ids[i:i + 1], ro.batch.attention_mask[i:i + 1]
        logp = token_logprobs(policy.lm, ids, attn, temperature)
        for j, (name, w) in enumerate(weights.items()):
            obj = (logp[0] * (w[i] * ro.mask[i]).detach()).sum()
            grads = torch.autograd.grad(obj, params, retain_graph=j < len(weights) - 1,
                                        allow_unused=True)
            out[name].append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                                        for g, p in zip(grads, params)]))
    return {name: torch.stack(rows) for name, rows in out.items()}


def total_variance(grads: torch.Tensor) -> float:
    """Trace of the covariance of the rows of ``grads`` (B, P): sum over coordinates of
    the (unbiased) variance across episodes."""
    return grads.var(0, unbiased=True).sum().item()


def gradient_variance(policy: PolicyWithValue, ro: Rollout, baselines=("none", "mean", "gae"),
                      gamma: float = 1.0, lam: float = 1.0, params=None,
                      temperature: float = 1.0) -> dict:
    """{baseline: total variance of the per-episode gradient estimate} on one rollout.

    Advantages are NOT whitened here, so every baseline is measured on the reward's scale.
    ``gae`` uses the rollout's values with ``lam`` (1 by default: G_t - V(s_t)).
    """
    weights = {b: advantages(ro, b, gamma, lam)[0] for b in baselines}
    grads = per_episode_grads(policy, ro, weights, params, temperature)
    return {b: total_variance(g) for b, g in grads.items()}


# ---------------------------------------------------------------------------
# 4. The loop
# ---------------------------------------------------------------------------

def train_pg(policy: PolicyWithValue, ref, tok, prompts: list[str], config: PGConfig,
             evaluator=None, reward_fn=gold_reward_fn, progress: bool = True,
             name: str | None = None) -> History:
    """Train ``policy`` in place with ``config.baseline`` on the shared loop.

    prompts:  the training prompts; step s uses ``config.batch_size`` of them, cycling
    evaluator: the shared ``Evaluator`` (on ``policy.lm``), or None
    reward_fn: the sequence score (default: the gold judge)
    """
    if len(prompts) < config.batch_size:
        raise ValueError(f"train_pg: need at least config.batch_size={config.batch_size} prompts, got "
                         f"{len(prompts)}")
    check_trainable_copy(policy, ref, "train_pg")
    opt = make_optimizer(policy, config.lr, config.value_lr)

    def step_fn(step: int) -> dict:
        ro = rollout(policy, ref, tok, cycle(prompts, config.batch_size, step), reward_fn, config,
                     seed=config.seed * 100_003 + step)
        metrics = {}
        if config.grad_var_every and (step == 1 or step % config.grad_var_every == 0):
            kinds = ("none", "mean", "gae") if config.baseline == "gae" else ("none", "mean")
            var = gradient_variance(policy, ro, kinds, config.gamma, lam=1.0,
                                    temperature=config.sampling_temperature)
            metrics.update({f"grad_var_{'value' if k == 'gae' else k}": v for k, v in var.items()})
        metrics.update(pg_step(policy, opt, ro, config))
        return metrics

    history = History(name or f"pg-{config.baseline}")
    return train(policy.lm, step_fn, config.steps, evaluator, config.eval_every, history,
                 desc=history.name, progress=progress)


# ---------------------------------------------------------------------------
# 5. Bias and variance of GAE(lambda), measured against Monte-Carlo
# ---------------------------------------------------------------------------

@torch.no_grad()
def lambda_experiment(policy: PolicyWithValue, ref, tok, prompts: list[str], config: PGConfig,
                      lams=(0.0, 0.5, 0.9, 0.95, 1.0), n_truth: int = 64, n_est: int = 32,
                      reward_fn=gold_reward_fn, seed: int = 0, progress: bool = True) -> dict:
    """Bias and variance of the GAE advantage of one real (state, action) per prompt.

    For each prompt: sample one completion, pick a token a_t in it (not the last one),
    then sample ``n_truth + n_est`` continuations of the prefix s_{t+1} = s_t + a_t.

    * ground truth: A* = r_t + mean over the ``n_truth`` continuations of their return
      G_{t+1} - V(s_t), i.e. Q(s_t, a_t) - V(s_t) by Monte-Carlo. (Subtracting the
      critic's V(s_t), a function of the state only, does not change the expected
      policy gradient; it is the target GAE's "bias" is measured against in
      Schulman et al. 2016.)
    * estimates: for each of the ``n_est`` other continuations,
      A_lambda = delta_t + gamma * lambda * GAE_lambda(continuation)[first token],
      built from the same value head and rewards as training.

    Returns {"lams", "variance" (mean over prompts of the variance across
    continuations), "bias2" (mean over prompts of (mean estimate - A*)^2), "noise2" (the
    expected value of bias2 from Monte-Carlo noise alone, if there were no bias:
    Var(G)/n_truth + Var(estimate)/n_est), "mse" (bias2 + variance), "n_prefixes",
    "mean_abs_value_error" (|V(s_{t+1}) - its Monte-Carlo value| averaged over prefixes)}.
    All lists follow ``lams``.
    """
    g = config.gamma
    policy.eval()
    first = rollout(policy, ref, tok, prompts, reward_fn, config, seed=seed)
    rng = np.random.default_rng(seed)
    var = {lam: [] for lam in lams}
    bias2 = {lam: [] for lam in lams}
    noise2 = {lam: [] for lam in lams}
    value_err = []
    n = n_truth + n_est
    for i in tqdm(range(len(prompts)), desc="lambda experiment", disable=not progress):
        cols = first.mask[i].nonzero().flatten().tolist()
        if len(cols) < 2:
            continue  # a one-token completion has no state after its first action
        k = int(rng.integers(0, len(cols) - 1))  # a_t = token k of the completion, not the last
        t = cols[k]
        real = first.batch.attention_mask[i, : t + 1].bool()
        prefix = tok.decode(first.batch.input_ids[i, : t + 1][real][1:])  # s_{t+1}, <bos> dropped
        budget = config.max_new_tokens - (k + 1)
        cont_cfg = copy.copy(config)
        cont_cfg.max_new_tokens = budget
        cont = rollout(policy, ref, tok, [prefix] * n, reward_fn, cont_cfg,
                       seed=seed * 7919 + i + 1)
        r_t, v_t = first.rewards[i, t].item(), first.values[i, t].item()
        c0 = cont.mask.argmax(-1)  # first continuation column: the state s_{t+1}
        rows = torch.arange(n)
        v_next = cont.values[rows, c0]
        G = (cont.rewards * cont.mask).sum(-1)  # gamma = 1 return of each continuation
        if g != 1.0:
            G = returns_to_go(cont.rewards, cont.mask, g)[rows, c0]
        truth = r_t + g * G[:n_truth].mean().item() - v_t
        value_err.append(abs(v_next[0].item() - G[:n_truth].mean().item()))
        est_rows = rows[n_truth:]
        delta_t = r_t + g * v_next[est_rows] - v_t
        for lam in lams:
            a_cont = compute_gae(cont.rewards, cont.values, cont.mask, g, lam)[0][rows, c0]
            est = delta_t + g * lam * a_cont[est_rows]
            var[lam].append(est.var(unbiased=True).item())
            bias2[lam].append((est.mean().item() - truth) ** 2)
            # what (mean estimate - A*)^2 would be from sampling noise alone, with no bias
            noise2[lam].append(G[:n_truth].var(unbiased=True).item() * g ** 2 / n_truth
                               + var[lam][-1] / n_est)
    policy.train()
    out = {"lams": list(lams), "n_prefixes": len(value_err),
           "variance": [float(np.mean(var[lam])) for lam in lams],
           "bias2": [float(np.mean(bias2[lam])) for lam in lams],
           "noise2": [float(np.mean(noise2[lam])) for lam in lams],
           "mean_abs_value_error": float(np.mean(value_err))}
    out["mse"] = [b + v for b, v in zip(out["bias2"], out["variance"])]
    return out


# ---------------------------------------------------------------------------
# 6. Command line: python -m alignlab run pg
# ---------------------------------------------------------------------------

def run(profile: Profile, seed: int = 0, config: PGConfig | None = None) -> dict:
    """CLI entry: train a policy with GAE + KL against the gold judge; shared metrics."""
    config = config or PGConfig.for_profile(profile, seed=seed)
    r = prepare(profile, seed)
    policy = new_policy(r.ref, config.critic)
    prompts = world.make_prompts(config.steps * config.batch_size, "train", config.seed)
    history = train_pg(policy, r.ref, r.tok, prompts, config, r.evaluator, progress=False)
    extra = {"explained_variance": round(history.last("explained_variance"), 4)} if config.baseline == "gae" else {}
    return result(history, score=round(history.last("score"), 4), baseline=config.baseline,
                  kl_coef=config.kl_coef, lam=config.lam, steps=config.steps, **extra)


def cost(config: PGConfig, profile) -> Cost:
    """One true-reward call per sampled completion; one optimiser step per batch."""
    n = config.steps * config.batch_size
    return Cost(n, n, "true-reward scores, online", config.steps)


METHOD = Method(
    name="pg", description="policy gradient with a value head and GAE against the gold reward",
    config=PGConfig, run=run, trainer="methods.pg.train_pg",
    extra_keys=("score", "baseline", "kl_coef", "lam", "steps"),
    metrics=(*TRAINED_KEYS, "pg_loss",
             "vf_loss", "explained_variance", "score", "rollout_kl", "kl_penalty", "grad_var_none",
             "grad_var_mean", "grad_var_value"),
    lecture="02_policy_gradients",
    smoke=dict(steps=2, eval_every=1),
    arms=(Arm("pg", "PG (gold)", "kl_coef", (0.02, 0.05, 0.15),
              needs="the true reward, queried for every sample (online)",
              tune=({}, {"lr": 2.5e-4}, {"lr": 1e-3}, {"lr": 2e-3})),),
    cost=cost)
