"""Reward over-optimisation, measured: proxy reward models, best-of-n from a pool, Gao et al.'s fits.

Gao, Schulman and Hilton (2022, "Scaling Laws for Reward Model Overoptimization") had to build
synthetically what this course's world has: a gold reward, and proxy reward models trained on
its labels. Lecture 08 measures gold and proxy against d = sqrt(KL(pi || pi_ref)) for best-of-n
and for PPO, under proxies of several strengths, and fits their functional forms

    R_bon(d) = d (alpha - beta d)          R_RL(d) = d (alpha - beta log d)

to the gold curves (R: gold gain over the reference). Everything here is a pure function:

* ``bon_weights`` / ``bon_estimate`` (defined in ``methods.bon``, re-exported here): the unbiased
  estimator of E[f(best of n)] from a pool of m >= n samples per prompt, sorted by the proxy
  (Nakano et al. 2021, Gao et al. 2022 app. I);
* ``bon_kl_estimate`` (``methods.bon``, re-exported): a plug-in estimate of KL(best-of-n || pi_ref)
  from the same ranks, beside the analytic bound ``bon.bon_kl``;
* ``fit_bon`` / ``fit_rl``: least squares, linear in (alpha, beta) after dividing by d;
* ``ensemble``: the mean or the min of K reward models' scores;
* ``PROXIES`` / ``proxy_config`` / ``load_proxy``: the lecture's proxy RMs, through the one
  reward-model path and cache (``rm.load_reward_model``, keyed by their settings);
* ``ProxyEvaluator``: the shared ``Evaluator`` plus the proxies' mean score of the same samples.
"""

from __future__ import annotations

import numpy as np
import torch

from ..methods.bon import bon_estimate, bon_kl_estimate, bon_weights  # noqa: F401 (re-exported)
from ..methods.rm import RMConfig, load_reward_model, score_texts
from ..models import Profile, get_profile

# ---------------------------------------------------------------------------
# 1. Best-of-n from a pool: ``bon_weights``, ``bon_estimate`` and ``bon_kl_estimate`` live in
#    ``methods.bon`` with the rest of best-of-n, and are re-exported here for lecture 08.
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# 2. Gao et al.'s functional forms
# ---------------------------------------------------------------------------


def _fit(d, R, feature, name):
    d, R = np.asarray(d, dtype=float), np.asarray(R, dtype=float)
    if d.shape != R.shape or d.ndim != 1:
        raise ValueError(f"{name}: `d` and `R` must be 1-D and the same length, got {d.shape} and {R.shape}")
    keep = d > 0
    if keep.sum() < 2:
        raise ValueError(f"{name}: need at least two points with d > 0 (d = sqrt(KL)), got {int(keep.sum())}")
    if not (np.isfinite(d).all() and np.isfinite(R).all()):
        raise ValueError(f"{name}: `d` and `R` must be finite")
    d, R = d[keep], R[keep]
    X = np.stack([np.ones_like(d), -feature(d)], 1)          # R / d = alpha - beta * feature(d)
    (alpha, beta), *_ = np.linalg.lstsq(X, R / d, rcond=None)
    pred = d * (X @ np.array([alpha, beta]))
    ss = float(((R - R.mean()) ** 2).sum())
    r2 = 1 - float(((R - pred) ** 2).sum()) / ss if ss > 0 else float("nan")
    return {"alpha": float(alpha), "beta": float(beta), "r2": r2}


def fit_bon(d, R) -> dict:
    """Least-squares fit of R(d) = d (alpha - beta d) (Gao et al. 2022, eq. 1, best-of-n).

    d: sqrt(KL) of each point; R: gold gain over the reference (gold - gold at d = 0).
    Fits R / d = alpha - beta d on the points with d > 0 (linear in alpha, beta), as the paper
    does. Returns {"alpha", "beta", "r2"} (r2: of the fitted R against R, on those points).
    The curve peaks at d* = alpha / (2 beta) (for beta > 0).
    """
    return _fit(d, R, lambda x: x, "fit_bon")


def fit_rl(d, R) -> dict:
    """Least-squares fit of R(d) = d (alpha - beta log d) (Gao et al. 2022, eq. 2, RL).

    Same inputs and output as ``fit_bon``; linear in alpha, beta after dividing by d. The curve
    peaks at d* = exp(alpha / beta - 1) (for beta > 0).
    """
    return _fit(d, R, np.log, "fit_rl")


def bon_form(d, alpha, beta):
    """R_bon(d) = d (alpha - beta d)."""
    d = np.asarray(d, dtype=float)
    return d * (alpha - beta * d)


def rl_form(d, alpha, beta):
    """R_RL(d) = d (alpha - beta log d), with R(0) = 0."""
    d = np.asarray(d, dtype=float)
    return np.where(d > 0, d * (alpha - beta * np.log(np.where(d > 0, d, 1.0))), 0.0)


# ---------------------------------------------------------------------------
# 3. Ensembles and the proxy reward models
# ---------------------------------------------------------------------------

ENSEMBLES = ("mean", "min")


def ensemble(scores, how: str = "mean") -> torch.Tensor:
    """Combine K reward models' scores of the same samples: (K, ...) -> (...), their mean or min.

    "min" is the conservative ensemble (Coste et al. 2024, "Reward Model Ensembles Help Mitigate
    Overoptimization": worst-case optimisation); "mean" averages the members' errors away.
    """
    s = torch.as_tensor(scores, dtype=torch.float)
    if how not in ENSEMBLES:
        raise ValueError(f"ensemble: `how` must be one of {ENSEMBLES}, got {how!r}")
    if s.dim() < 1 or s.shape[0] < 1:
        raise ValueError(f"ensemble: `scores` must be (K, ...) with K >= 1 models, got shape {tuple(s.shape)}")
    return s.mean(0) if how == "mean" else s.min(0).values


PROXIES: dict[str, dict] = {
    "512 pairs": dict(n_pairs=512, steps=200),
    "2048 pairs": dict(n_pairs=2048, steps=200),
    "8192 pairs": dict(),
    "2048 pairs, 1 layer": dict(n_pairs=2048, steps=200, n_layer=1),
    "512 pairs, seed 1": dict(n_pairs=512, steps=200, seed=1),
    "512 pairs, seed 2": dict(n_pairs=512, steps=200, seed=2),
}
"""Lecture 08's proxy reward models, as ``RMConfig`` overrides: a 16-fold range of labelled
comparisons ("8192 pairs" is lecture 01's reward model itself, 500 steps; the smaller ones train
200 steps, which is already many epochs of their data), a one-block model on the same 2048
pairs, and two more seeds of the weakest, for a K = 3 ensemble."""


def proxy_config(name: str, profile: Profile | str | None = None) -> RMConfig:
    """The ``RMConfig`` of proxy ``name`` (a key of ``PROXIES``)."""
    if name not in PROXIES:
        raise KeyError(f"proxy_config: unknown proxy {name!r}; the proxies are {list(PROXIES)}")
    return RMConfig.for_profile(profile, **PROXIES[name])


def load_proxy(name: str, profile: Profile | str | None = None, device=None, progress: bool = False,
               seed: int = 0):
    """(reward model, tokenizer) of proxy ``name`` on the SFT model of ``seed``, from the cache
    (trained on first use)."""
    profile = get_profile(profile)
    return load_reward_model(profile, seed, device, proxy_config(name, profile), progress)


class ProxyEvaluator:
    """The shared ``Evaluator``'s metrics plus ``proxy_reward``: the mean score of the same samples
    under ``proxy`` (an RM), and ``proxy/<name>`` for each of ``others`` (name -> RM)."""

    def __init__(self, evaluator, tok, proxy, others: dict | None = None):
        self.evaluator, self.tok, self.proxy, self.others = evaluator, tok, proxy, dict(others or {})

    def _mean(self, rm, batch) -> float:
        return float(score_texts(rm, self.tok, batch.prompts, batch.completions, batch.finished).mean())

    def __call__(self, policy) -> dict:
        ev = self.evaluator
        batch = ev.sample(policy)  # the same draw as ev(policy): fixed seed
        row = {**ev.judge(batch), "kl": ev.kl(policy, batch), "perplexity": ev.perplexity(policy),
               "proxy_reward": self._mean(self.proxy, batch)}
        row.update({f"proxy/{k}": self._mean(rm, batch) for k, rm in self.others.items()})
        return row
