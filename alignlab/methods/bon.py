"""Best-of-N: the simplest policy that uses a reward model.

Sample N completions per prompt from the reference, keep the one the reward model
scores highest. No training at all; its KL to the reference has a closed form,
``log N - (N - 1) / N`` (Stiennon et al. 2020), exact when samples never tie and an
upper bound otherwise (Beirami et al. 2024). Lecture 01 uses it to show what a
reward model buys, lecture 08 to show what over-optimising one costs.

``sample_candidates`` draws nested sets of samples (draw j always uses seed
``seed + j``), so best-of-k for every k <= N is read from one pool. ``bon_weights``,
``bon_estimate`` and ``bon_kl_estimate`` estimate best-of-n's mean of any score, and its KL,
for every n <= m from one pool of m samples per prompt (lecture 08, through ``studies.overopt``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..models import Profile, get_profile
from ..registry import EVALUATOR_KEYS, Arm, Cost, Method, prepare
from ..sampling import Batch, sample
from ..training import History
from .rm import RMConfig, load_reward_model, score


def bon_kl(n: int) -> float:
    """Analytic KL(best-of-n || reference) = log n - (n - 1) / n (Stiennon et al. 2020).

    Exact when the n samples never tie; an upper bound otherwise (Beirami et al. 2024).
    """
    if n < 1:
        raise ValueError(f"bon_kl: n must be >= 1, got {n}")
    return math.log(n) - (n - 1) / n


@torch.no_grad()
def sample_candidates(policy, tok, prompts, n: int, seed: int = 0,
                      max_new_tokens: int = 32) -> Batch:
    """``n`` samples per prompt: draw ``j`` of prompt ``i`` is row ``j * len(prompts) + i``.

    Draw ``j`` always uses seed ``seed + j``, so the first ``k`` draws of a call with a larger
    ``n`` are the same samples: best-of-k for every k <= n comes from nested subsets of one
    set of samples (draw 0 is what ``sample(policy, ..., seed=seed)`` returns).
    """
    if n < 1:
        raise ValueError(f"best-of-n: n must be >= 1, got {n}")
    draws = [sample(policy, tok, list(prompts), max_new_tokens, seed=seed + j) for j in range(n)]
    return Batch.concat(draws, tok.pad_token_id)


def as_grid(values, n_prompts: int) -> torch.Tensor:
    """(n_prompts, n) view of per-candidate values in ``sample_candidates``' row order."""
    values = torch.as_tensor(values, dtype=torch.float).flatten().cpu()
    if len(values) % n_prompts:
        raise ValueError(f"as_grid: {len(values)} values do not split into {n_prompts} prompts")
    return values.view(-1, n_prompts).T


@torch.no_grad()
def score_candidates(rm, candidates: Batch, n_prompts: int, chunk: int = 1024) -> torch.Tensor:
    """(n_prompts, n) RM rewards of ``sample_candidates``' output."""
    device = next(rm.parameters()).device
    was_training = rm.training
    rm.eval()
    order = candidates.attention_mask.sum(-1).argsort(stable=True)  # similar lengths together
    rewards = torch.empty(len(candidates))
    for i in range(0, len(order), chunk):
        rows = order[i:i + chunk]
        rewards[rows] = score(rm, candidates.take(rows.tolist()).trim().to(device)).cpu()
    rm.train(was_training)
    return as_grid(rewards, n_prompts)


def select_best(candidates: Batch, rewards: torch.Tensor, n: int) -> tuple[Batch, torch.Tensor]:
    """Best-of-``n``: per prompt, the argmax of ``rewards`` (n_prompts, n_max) among its first
    ``n`` draws. Returns (one row per prompt, in prompt order; the kept rewards (n_prompts,))."""
    P, n_max = rewards.shape
    if not 1 <= n <= n_max:
        raise ValueError(f"select_best: n must be in 1..{n_max} (the draws sampled), got {n}")
    if len(candidates) != P * n_max:
        raise ValueError(f"select_best: {len(candidates)} candidates but rewards is {P} x {n_max}")
    best = rewards[:, :n].argmax(-1)
    rows = best * P + torch.arange(P)
    return candidates.take(rows.tolist()), rewards[torch.arange(P), best]


def best_of_n(policy, rm, tok, prompts, n: int, seed: int = 0, max_new_tokens: int = 32) -> Batch:
    """Best-of-``n``: sample ``n`` completions per prompt, keep the one ``rm`` scores highest."""
    candidates = sample_candidates(policy, tok, prompts, n, seed, max_new_tokens)
    return select_best(candidates, score_candidates(rm, candidates, len(prompts)), n)[0]


NS = (1, 2, 4, 8, 16, 32, 64)


def bon_sweep(evaluator, candidates: Batch, rewards: torch.Tensor, ns=NS,
              name: str = "best-of-N") -> History:
    """Best-of-N under ``rewards`` for every N in ``ns``, from nested subsets of ``candidates``.

    ``candidates``: ``sample_candidates(policy, tok, evaluator.prompts, max(ns))``;
    ``rewards``: (n_prompts, max(ns)) scores that pick the winner (RM or any judge).
    Returns a History whose *step is log2 N*, logging the evaluator's judge (gold_reward,
    win_rate, valid_rate, length), ``kl`` (analytic, ``bon_kl``), ``proxy_reward`` (mean
    of ``rewards`` over the kept samples) and ``n``. Plot: ``dashboard(h, x_label="log2 N")``.
    """
    history = History(name)
    for n in ns:
        batch, kept = select_best(candidates, rewards, n)
        history.log(int(round(math.log2(n))), **evaluator.judge(batch), kl=bon_kl(n),
                    proxy_reward=kept.mean().item(), n=n)
    return history



def bon_weights(m: int, n: int) -> torch.Tensor:
    """(m,) P(the i-th smallest of m pooled samples is the best of a uniform random n-subset).

        w_i = C(i, n - 1) / C(m, n),   i = 0 .. m - 1   (0 for i < n - 1; they sum to 1)

    so that sum_i w_i f(y_(i)) is an unbiased estimate of E[f(best of n)] when the pool is m
    i.i.d. samples sorted by the selecting score: every n-subset of the pool is an i.i.d.
    draw of n, and the subset's best is y_(i) in exactly C(i, n - 1) of the C(m, n) subsets.
    n = 1 gives the plain mean; n = m gives the pool's best. Computed with lgamma (m in the
    thousands is fine).
    """
    if not (isinstance(m, int) and isinstance(n, int) and 1 <= n <= m):
        raise ValueError(f"bon_weights: need integers 1 <= n <= m, got n={n!r}, m={m!r}")
    i = torch.arange(m, dtype=torch.float64)
    valid = i >= n - 1
    log_w = (torch.lgamma(i + 1) - torch.lgamma(i - n + 2).where(valid, torch.zeros(())) - math.lgamma(n)
             - (math.lgamma(m + 1) - math.lgamma(n + 1) - math.lgamma(m - n + 1)))
    return torch.where(valid, log_w.exp(), torch.zeros(())).float()


def _sorted_by(selector: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    selector, values = torch.as_tensor(selector, dtype=torch.float), torch.as_tensor(values, dtype=torch.float)
    if selector.dim() != 2 or selector.shape != values.shape:
        raise ValueError(f"bon_estimate: `selector` and `values` must both be (P, m) (P prompts, m pooled "
                         f"samples each), got {tuple(selector.shape)} and {tuple(values.shape)}")
    if not torch.isfinite(selector).all():
        raise ValueError("bon_estimate: `selector` has NaN or inf scores")
    order = torch.sort(selector, dim=1, stable=True).indices
    return values.gather(1, order)


def bon_estimate(selector, values, n: int) -> float:
    """Unbiased estimate of E_x E[values(best of n by selector)] from a (P, m) pool.

    selector: (P, m) the scores that pick the winner (a proxy RM's), m samples per prompt
    values:   (P, m) what to average over the winners (the gold score, or the proxy itself)
    Mean over prompts of sum_i w_i values_(i) (``bon_weights``; ties in the selector are broken
    by pool order, which is random).
    """
    v = _sorted_by(selector, values)
    return float((v * bon_weights(v.shape[1], n)).sum(1).mean())


def bon_kl_estimate(selector, n: int) -> float:
    """Plug-in estimate of KL(best-of-n || pi_ref) from a (P, m) pool of proxy scores.

    On each prompt, treat the pool as the reference distribution (each sample 1/m) and compute
    exactly the KL of best-of-n drawn from it: a distinct score v held by c_v of the m samples
    wins with probability p_v = [C(#<=v, n) - C(#<v, n)] / C(m, n), so

        KL_hat = mean over prompts of  sum_v p_v log(p_v / (c_v / m)).

    Unlike the analytic ``bon_kl(n) = log n - (n-1)/n``, it sees **ties**: duplicate
    completions share a score, and best-of-n then moves less mass than the formula assumes
    (Beirami et al. 2024: the formula is an upper bound). With distinct scores it is close to
    the formula for n << m and above it as n approaches m (at n = m it is log m).
    """
    s = torch.as_tensor(selector, dtype=torch.float64)
    if s.dim() != 2:
        raise ValueError(f"bon_kl_estimate: `selector` must be (P, m), got shape {tuple(s.shape)}")
    m = s.shape[1]
    if not 1 <= n <= m:
        raise ValueError(f"bon_kl_estimate: need 1 <= n <= m = {m}, got n = {n}")

    def log_comb(a):  # log C(a, n), -inf where a < n
        a = torch.as_tensor(a, dtype=torch.float64)
        ok = a >= n
        val = torch.lgamma(a + 1) - math.lgamma(n + 1) - torch.lgamma((a - n).clamp(min=0) + 1)
        return torch.where(ok, val, torch.full_like(a, -math.inf))

    total = log_comb(torch.tensor(float(m)))
    kls = []
    for row in s:
        _, counts = torch.unique_consecutive(row.sort().values, return_counts=True)
        upto = counts.cumsum(0).double()
        p = (log_comb(upto) - total).exp() - (log_comb(upto - counts) - total).exp()
        q = counts.double() / m
        keep = p > 0
        kls.append(float((p[keep] * (p[keep] / q[keep]).log()).sum()))
    return float(np.mean(kls))


def kl_estimate(scores, n: int) -> float:
    """An estimate of KL(best-of-n || reference) that sees ties, from a (P, m) pool of the
    selecting scores (m >= n draws per prompt; ``n`` of them make the best-of-n).

    ``bon_kl_estimate`` computes the KL of best-of-n drawn from the pool itself, which
    overshoots the true value for a finite pool (for m distinct scores it tends to
    ``bon_kl(n)`` only as m grows: 1.96 against 1.83 at n = 16, m = 64). That overshoot is
    a known function of (m, n), so it is subtracted: with no ties the estimate is exactly
    ``bon_kl(n)``; duplicated completions (which share a score) pull it below the bound.
    """
    scores = torch.as_tensor(scores, dtype=torch.float64)
    m = scores.shape[-1]
    distinct = torch.arange(m, dtype=torch.float64).unsqueeze(0)
    return bon_kl_estimate(scores, n) - (bon_kl_estimate(distinct, n) - bon_kl(n))


@dataclass
class BoNConfig(RMConfig):
    """Settings of ``run bon``: N, plus the settings of the reward model that picks the winner."""

    n: int = 16
    """Samples per prompt; the reward model keeps the best one."""
    kl_pool: int = 4
    """The KL estimate's pool: kl_pool x n draws per prompt are scored (the first n make the
    best-of-n); 1 skips the estimate (the pool would be the selection itself)."""

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"BoNConfig.n must be >= 1, got {self.n}")
        if self.kl_pool < 1:
            raise ValueError(f"BoNConfig.kl_pool must be >= 1, got {self.kl_pool}")

    def rm_config(self) -> RMConfig:
        """The reward model's part of these settings."""
        return RMConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(RMConfig)})


def run_bon(profile: Profile, seed: int = 0, config: BoNConfig | None = None) -> dict:
    """CLI entry: best-of-n (``--set n=16``, default 16) under the cached RM, vs the SFT reference.

    ``kl`` is the analytic bound ``bon_kl(n)`` (``kl_estimator`` says so); ``kl_estimate`` is
    ``kl_estimate`` on a pool of ``kl_pool * n`` draws per prompt. ``evals`` holds best-of-k for
    k = 1, 2, 4, ... up to n (nested subsets of the same draws): the points lecture 09 plots.
    Other ``--set`` keys are the reward model's (a different RM is trained and cached).
    """
    config = config or BoNConfig.for_profile(profile, seed=seed)
    n = config.n
    rm, _ = load_reward_model(profile, seed, config=config.rm_config(), progress=False)
    r = prepare(profile, seed)
    sft, tok, evaluator = r.ref, r.tok, r.evaluator
    P = len(evaluator.prompts)
    pool = n * config.kl_pool
    candidates = sample_candidates(sft, tok, evaluator.prompts, pool, seed, evaluator.max_new_tokens)
    scores = score_candidates(rm, candidates, P)
    evals = []
    for k in sorted({*(2 ** i for i in range(int(math.log2(n)) + 1)), n}):
        batch, proxy = select_best(candidates, scores, k)
        point = {**evaluator.judge(batch), "kl": bon_kl(k), "rm_reward": proxy.mean().item()}
        if config.kl_pool > 1:
            point["kl_estimate"] = kl_estimate(scores, k)
        evals.append({"step": k, "n": k, **{key: round(float(v), 4) for key, v in point.items()}})
    final = {key: v for key, v in evals[-1].items() if key not in ("step", "n")}
    return {**final, "n": n, "kl_estimator": "analytic: log N - (N-1)/N", "evals": evals}

def cost(config: BoNConfig, profile) -> Cost:
    """N samples per evaluation prompt; the labels are the reward model's pairs; no training."""
    return Cost(config.n * get_profile(profile).eval_prompts, config.n_pairs,
                "offline pairs (the RM's), + N RM calls per prompt", 0)


METHOD = Method(
    name="bon", description="best-of-N sampling under the learned reward model (adds n; --set n=16)",
    config=BoNConfig, run=run_bon, trainer="methods.bon.bon_sweep",
    extra_keys=("length", "n", "rm_reward", "kl_estimator", "kl_estimate"),
    metrics=(*EVALUATOR_KEYS[:-1], "proxy_reward", "n"),
    lecture="01_bradley_terry",
    smoke=dict(n=4, n_pairs=64, steps=4, batch_size=16, n_eval_pairs=32, eval_every=2),
    arms=(Arm("bon", "best-of-N (RM)", "n", (2, 8, 32),
              needs="a reward model (offline pairs) and N samples per prompt at inference",
              tune=({}, {"lr": 1e-3}, {"lr": 4e-3}, {"steps": 250})),),
    cost=cost)
