"""Policy-gradient RL with a KL to a reference (lectures 02 and 03): advantages, PPO's
losses, the KL coefficient, KL estimators, and the KL-shaped rewards.

    compute_gae                                advantages and returns (GAE)
    ppo_clip_loss, ppo_kl_penalty_loss         PPO's two surrogates (Schulman et al. 2017)
    ppo_kl_penalty_beta                        the PPO-KL penalty's beta, between updates
    value_loss_clipped, explained_variance     the value head's loss and fit
    AdaptiveKLController, FixedKLController    beta of the KL to pi_ref in the reward
    kl_k1, kl_k3                               per-token KL estimators (Schulman 2020)
    token_rewards                              score - beta * KL, per token (PPO)
    kl_penalised_rewards                       score - beta * KL, per sequence (RLOO)

All (B, T) tensors are per completion token, 0/1 ``mask`` marking the valid ones.
Step 0 (new policy == old policy == reference): every ratio is 1 and every KL 0.
"""

import math

import torch

from ..sampling import last_token_index
from .checks import _check_finite, _check_float, _check_loss, _check_mask, _check_positive, _check_same_shape
from .reductions import masked_mean, masked_sum

# ---------------------------------------------------------------------------
# Advantages, the PPO policy losses, the value loss
# ---------------------------------------------------------------------------


@torch.no_grad()
def compute_gae(rewards, values, mask, gamma=1.0, lam=0.95):
    """Generalized Advantage Estimation over a padded batch (Schulman et al. 2016, eq. 16).

    rewards: (B, T) per-token rewards (e.g. -kl_coef * KL per token, plus the score on the last token)
    values:  (B, T) value-head predictions V_t
    mask:    (B, T) 1 on valid completion tokens; in each row they form one contiguous run,
             which may start after column 0 (left padding) and end anywhere (right padding)
    gamma:   discount in [0, 1];  lam: GAE lambda in [0, 1]

        delta_t = r_t + gamma * m_{t+1} * V_{t+1} - V_t         (V after the last valid token is 0)
        A_t     = delta_t + gamma * lam * m_{t+1} * A_{t+1}
        returns = A + V                                           (the value-function targets)

    Vectorised over the batch, a Python loop over time only. Advantages and returns are 0 at
    padding positions, and rewards/values at padding positions never influence valid ones
    (they are replaced by 0 with torch.where, so even NaN there is harmless). No gradient flows
    through the result: advantages and returns are constants for the PPO update.

    Checks: lam = 0 gives the TD errors delta_t; lam = 1, gamma = 1 gives
    (sum of rewards from t to the end) - V_t.
    """
    fn = "compute_gae"
    _check_float(fn, "rewards", rewards, ndim=2, expected="(B, T)")
    valid = _check_mask(fn, mask, "rewards", rewards)
    _check_finite(fn, "rewards", rewards, where=valid)
    _check_float(fn, "values", values, ndim=2, expected="(B, T)")
    _check_same_shape(fn, "rewards", rewards, "values", values,
                      "values were computed on a different (e.g. unshifted, or prompt+completion) sequence.")
    _check_finite(fn, "values", values, where=valid)
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"{fn}: `gamma` and `lam` should be in [0, 1], got gamma={gamma}, lam={lam}.")
    m = valid.to(rewards.dtype)
    run_starts = (m[:, 1:] - m[:, :-1] == 1).sum(dim=1) + m[:, 0]
    if (run_starts > 1).any():
        row = int(torch.nonzero(run_starts > 1)[0])
        raise ValueError(
            f"{fn}: `mask` row {row} has holes: its valid tokens should form one contiguous run. "
            "Likely cause: the attention mask (prompt + completion) or a mask with padding inside "
            "the completion was passed instead of the completion mask."
        )

    zeros = torch.zeros_like(rewards)
    r = torch.where(valid, rewards, zeros)
    v = torch.where(valid, values, zeros)
    B, T = r.shape
    next_value = torch.zeros(B, dtype=r.dtype, device=r.device)
    next_mask = torch.zeros(B, dtype=r.dtype, device=r.device)
    next_adv = torch.zeros(B, dtype=r.dtype, device=r.device)
    advantages_reversed = []
    for t in reversed(range(T)):
        delta = r[:, t] + gamma * next_mask * next_value - v[:, t]
        adv = (delta + gamma * lam * next_mask * next_adv) * m[:, t]  # 0 at padding
        advantages_reversed.append(adv)
        next_value, next_mask, next_adv = v[:, t], m[:, t], adv
    advantages = torch.stack(advantages_reversed[::-1], dim=1)
    returns = torch.where(valid, advantages + v, zeros)
    return advantages, returns


def _check_rollout(fn, logprobs, old_logprobs, advantages, mask):
    """The checks shared by the PPO surrogates: (B, T) float tensors of one shape, finite where
    ``mask`` is 1; returns the boolean mask."""
    _check_float(fn, "logprobs", logprobs, ndim=2, expected="(B, T)")
    valid = _check_mask(fn, mask, "logprobs", logprobs)
    for name, x in [("old_logprobs", old_logprobs), ("advantages", advantages)]:
        _check_float(fn, name, x, ndim=2, expected="(B, T)")
        _check_same_shape(fn, "logprobs", logprobs, name, x,
                          "tensors of the rollout and of the update were cut to different lengths.")
    for name, x in [("logprobs", logprobs), ("old_logprobs", old_logprobs), ("advantages", advantages)]:
        _check_finite(fn, name, x, where=valid)
    return valid


def ppo_clip_loss(logprobs, old_logprobs, advantages, mask, clip_eps=0.2):
    """PPO clipped surrogate policy loss (Schulman et al. 2017, eq. 7), per token.

    logprobs:     (B, T) log pi_new(a_t|s_t) of the sampled tokens, with gradient
    old_logprobs: (B, T) log pi_old(a_t|s_t) recorded at rollout time (treated as a constant)
    advantages:   (B, T) e.g. from `compute_gae`, usually whitened (treated as a constant)
    mask:         (B, T) 1 on valid completion tokens
    clip_eps:     epsilon of the clip range [1 - eps, 1 + eps]

        ratio_t = exp(logprobs_t - old_logprobs_t)
        loss    = masked_mean( max(-A_t * ratio_t, -A_t * clip(ratio_t, 1 - eps, 1 + eps)) )

    (the max of the negatives is the minus of the paper's min, since we minimise).

    Returns (loss, stats) with stats of detached scalars:
      clipfrac:  fraction of valid tokens where the clipped term is strictly larger, i.e. the
                 one selected, so the token gets no gradient
                 (TRL < 1.0 PPOTrainer: `(pg_losses2 > pg_losses)`)
      approx_kl: k3 estimate of KL(pi_old || pi_new), mean of (ratio - 1) - log(ratio)
                 (Schulman 2020, "Approximating KL divergence"); always >= 0
      ratio_mean: mean ratio over valid tokens
    Step 0 (logprobs == old_logprobs): ratio exactly 1, approx_kl 0, clipfrac 0, loss = -mean(A).
    """
    fn = "ppo_clip_loss"
    valid = _check_rollout(fn, logprobs, old_logprobs, advantages, mask)
    _check_positive(fn, "clip_eps", clip_eps)

    zeros = torch.zeros_like(logprobs)
    log_ratio = torch.where(valid, logprobs - old_logprobs.detach(), zeros)  # 0 at padding: ratio 1, no overflow
    ratio = torch.exp(log_ratio)
    advantages = torch.where(valid, advantages.detach(), zeros)
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = masked_mean(torch.maximum(pg_losses, pg_losses_clipped), mask)
    _check_loss(fn, loss)

    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((pg_losses_clipped > pg_losses).float(), mask),
            "approx_kl": masked_mean((ratio - 1) - log_ratio, mask),
            "ratio_mean": masked_mean(ratio, mask),
        }
    return loss, stats


def ppo_kl_penalty_loss(logprobs, old_logprobs, advantages, mask, beta):
    """PPO's KL-penalty surrogate, "PPO-KL" (Schulman et al. 2017, eq. 8), per token: no clip.

    logprobs:     (B, T) log pi_theta(a_t|s_t) of the sampled tokens, with gradient
    old_logprobs: (B, T) log pi_old(a_t|s_t) recorded at rollout time (treated as a constant)
    advantages:   (B, T) e.g. from `compute_gae`, usually whitened (treated as a constant)
    mask:         (B, T) 1 on valid completion tokens
    beta:         >= 0, weight of the penalty; the paper adapts it between policy updates
                  (`ppo_kl_penalty_beta`)

        L^KLPEN = E_t[ rho_t A_t - beta * KL(pi_old(.|s_t) || pi_theta(.|s_t)) ]   (maximised)
        loss    = masked_mean( -A_t * rho_t + beta * k3_t ),  k3_t = (rho_t - 1) - log rho_t

    with rho_t = exp(logprobs_t - old_logprobs_t). The paper's KL is over the whole next-token
    distribution; here it is estimated from the sampled token alone with k3 (Schulman 2020,
    "Approximating KL divergence"). Since a_t ~ pi_old, k3 is unbiased for KL(pi_old || pi_theta)
    and its gradient (rho_t - 1) grad log pi_theta(a_t|s_t) is unbiased for the KL's gradient.
    This penalises the KL to the policy that SAMPLED the rollout (a trust region per update):
    not the KL to pi_ref of the RLHF reward (`kl_penalised_rewards`, Ziegler et al. 2019).

    Returns (loss, stats) with stats of detached scalars:
      approx_kl:  mean k3 over valid tokens (the same number as `ppo_clip_loss`'s approx_kl);
                  the paper's d, compared with d_targ by `ppo_kl_penalty_beta`
      ratio_mean: mean ratio over valid tokens
    Step 0 (logprobs == old_logprobs): ratio exactly 1, approx_kl 0, loss = -mean(A), and the
    gradient equals `ppo_clip_loss`'s (the penalty's gradient is 0 at rho = 1).
    """
    fn = "ppo_kl_penalty_loss"
    valid = _check_rollout(fn, logprobs, old_logprobs, advantages, mask)
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"{fn}: `beta` should be a finite number >= 0, got {beta!r}.")

    zeros = torch.zeros_like(logprobs)
    log_ratio = torch.where(valid, logprobs - old_logprobs.detach(), zeros)  # 0 at padding: ratio 1
    ratio = torch.exp(log_ratio)
    advantages = torch.where(valid, advantages.detach(), zeros)
    k3 = (ratio - 1) - log_ratio
    loss = masked_mean(-advantages * ratio + beta * k3, mask)
    _check_loss(fn, loss)
    with torch.no_grad():
        stats = {"approx_kl": masked_mean(k3, mask), "ratio_mean": masked_mean(ratio, mask)}
    return loss, stats


def ppo_kl_penalty_beta(beta, kl, target):
    """The PPO paper's adaptive penalty coefficient (Schulman et al. 2017, sec. 4), one update.

    beta:   the coefficient used in the policy update that just ended (> 0)
    kl:     d, the measured mean KL(pi_old || pi_theta) after that update (per token here)
    target: d_targ, the KL per update the penalty should allow (> 0)

        d < d_targ / 1.5  ->  beta / 2   (the update was too timid: penalise less)
        d > d_targ * 1.5  ->  beta * 2   (it went too far: penalise more)
        otherwise         ->  beta

    Returns the beta of the next policy update. (Compare `AdaptiveKLController`: a
    proportional controller on the KL to pi_ref of the RLHF reward, not this trust region.)
    """
    fn = "ppo_kl_penalty_beta"
    _check_positive(fn, "beta", beta)
    _check_positive(fn, "target", target)
    kl = float(kl)
    if not math.isfinite(kl):
        raise ValueError(f"{fn}: `kl` should be finite, got {kl}. Likely cause: the policy update "
                         "diverged (a learning rate too high).")
    if kl < target / 1.5:
        return beta / 2
    if kl > target * 1.5:
        return beta * 2
    return float(beta)


def value_loss_clipped(values, old_values, returns, mask, clip_eps=0.2):
    """Clipped value-function loss of PPO (OpenAI baselines ppo2; TRL < 1.0 PPOTrainer).

    values:     (B, T) current value predictions, with gradient
    old_values: (B, T) value predictions recorded at rollout time (constant)
    returns:    (B, T) targets, e.g. from `compute_gae` (constant)
    mask:       (B, T) 1 on valid completion tokens
    clip_eps:   how far V may move from old_values before the clipped branch takes over

        V_clip = clip(V, V_old - eps, V_old + eps)
        loss   = 0.5 * masked_mean( max((V - R)^2, (V_clip - R)^2) )

    This is not in the PPO paper; Engstrom et al. 2020 ("Implementation matters") found it
    does not clearly help, but most RLHF code uses it.
    Returns (loss, stats) with stats["vf_clipfrac"]: fraction of valid tokens where the
    clipped error is strictly larger (TRL < 1.0: `(vf_losses2 > vf_losses1)`).
    Step 0 (values == old_values): loss = 0.5 * masked_mean((V - R)^2), vf_clipfrac 0.
    """
    fn = "value_loss_clipped"
    _check_float(fn, "values", values, ndim=2, expected="(B, T)")
    valid = _check_mask(fn, mask, "values", values)
    for name, x in [("old_values", old_values), ("returns", returns)]:
        _check_float(fn, name, x, ndim=2, expected="(B, T)")
        _check_same_shape(fn, "values", values, name, x,
                          "tensors of the rollout and of the update were cut to different lengths.")
    for name, x in [("values", values), ("old_values", old_values), ("returns", returns)]:
        _check_finite(fn, name, x, where=valid)
    _check_positive(fn, "clip_eps", clip_eps)

    zeros = torch.zeros_like(values)
    old_values = torch.where(valid, old_values.detach(), zeros)
    returns = torch.where(valid, returns.detach(), zeros)
    values = torch.where(valid, values, zeros)
    values_clipped = torch.clamp(values, old_values - clip_eps, old_values + clip_eps)
    vf_losses = (values - returns) ** 2
    vf_losses_clipped = (values_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(vf_losses, vf_losses_clipped), mask)
    _check_loss(fn, loss)
    with torch.no_grad():
        stats = {"vf_clipfrac": masked_mean((vf_losses_clipped > vf_losses).float(), mask)}
    return loss, stats


def explained_variance(values, returns, mask):
    """How much of the variance of the returns the value head explains, over valid tokens.

    values, returns, mask: (B, T)

        EV = 1 - Var[R - V] / Var[R]

    1 = perfect predictions, 0 = no better than predicting the mean, < 0 = worse than that.
    Returns a detached scalar; NaN if Var[R] is 0 (as in CleanRL / Stable-Baselines3).
    """
    fn = "explained_variance"
    _check_float(fn, "values", values, ndim=2, expected="(B, T)")
    valid = _check_mask(fn, mask, "values", values)
    _check_float(fn, "returns", returns, ndim=2, expected="(B, T)")
    _check_same_shape(fn, "values", values, "returns", returns, "values and returns come from different batches.")
    _check_finite(fn, "values", values, where=valid)
    _check_finite(fn, "returns", returns, where=valid)
    with torch.no_grad():
        r = returns[valid]
        var_r = r.var(unbiased=False)
        if var_r == 0:
            return torch.tensor(float("nan"), dtype=returns.dtype)
        return 1 - (r - values[valid]).var(unbiased=False) / var_r


# ---------------------------------------------------------------------------
# KL penalty coefficient and KL estimators
# ---------------------------------------------------------------------------


class AdaptiveKLController:
    """Adaptive KL coefficient of Ziegler et al. 2019 ("Fine-Tuning LMs from Human Preferences", sec. 2.2).

        err   = clip(KL / target - 1, -0.2, 0.2)
        beta <- beta * (1 + err * n_steps / horizon)

    KL above target -> beta grows (stronger penalty); below -> beta shrinks.
    The clip bounds how fast beta can move per update.
    """

    def __init__(self, init_beta=0.1, target=6.0, horizon=10000):
        fn = "AdaptiveKLController"
        _check_positive(fn, "init_beta", init_beta)
        _check_positive(fn, "target", target)
        _check_positive(fn, "horizon", horizon)
        self.beta = float(init_beta)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl, n_steps):
        """current_kl: measured KL(pi || ref) (float or scalar tensor); n_steps: samples seen since last update."""
        current_kl = float(current_kl)
        if not math.isfinite(current_kl):
            raise ValueError(
                f"AdaptiveKLController.update: `current_kl` should be finite, got {current_kl}. "
                "Likely cause: the policy already diverged; updating beta would poison it."
            )
        err = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + err * n_steps / self.horizon
        return self.beta


class FixedKLController:
    """A constant KL coefficient with the same interface as AdaptiveKLController."""

    def __init__(self, beta):
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
            raise ValueError(f"FixedKLController: `beta` should be a finite number >= 0, got {beta!r}.")
        self.beta = float(beta)

    def update(self, current_kl, n_steps):
        return self.beta


def _check_logp_pair(fn, logp, logp_ref):
    for name, x in [("logp", logp), ("logp_ref", logp_ref)]:
        _check_float(fn, name, x)
        _check_finite(fn, name, x)
    _check_same_shape(fn, "logp", logp, "logp_ref", logp_ref,
                      "policy and reference log-probs were computed on different batches.")


def kl_k1(logp, logp_ref):
    """Per-token k1 estimator of KL(pi || ref) for tokens sampled from pi: log pi - log ref.

    logp, logp_ref: (...) log-probs of the sampled tokens under the policy and the reference.
    Unbiased but high variance, and single values can be negative. Elementwise: mask/sum it
    yourself. (Schulman 2020, "Approximating KL divergence", http://joschu.net/blog/kl-approx.html)
    Step 0 (pi == ref): 0.
    """
    _check_logp_pair("kl_k1", logp, logp_ref)
    return logp - logp_ref


def kl_k3(logp, logp_ref):
    """Per-token k3 estimator of KL(pi || ref) for tokens sampled from pi: (r - 1) - log r, r = ref/pi.

    logp, logp_ref: (...) log-probs of the sampled tokens under the policy and the reference.
    Unbiased, lower variance than k1, and every value is >= 0. Elementwise.
    (Schulman 2020, "Approximating KL divergence", http://joschu.net/blog/kl-approx.html)
    Step 0 (pi == ref): 0.
    """
    _check_logp_pair("kl_k3", logp, logp_ref)
    log_r = logp_ref - logp
    return torch.expm1(log_r) - log_r


# ---------------------------------------------------------------------------
# KL-shaped rewards: the RLHF objective score - beta * KL, per token or per sequence
# ---------------------------------------------------------------------------


def token_rewards(score, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                  mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """(B, T) per-token rewards of the KL-regularised objective (Ziegler et al. 2019, eq. 2).

    score:        (B,) sequence scores (tensor or list): the judge's or the reward model's
    logprobs:     (B, T) log pi(a_t|s_t) of the sampled tokens (no gradient needed)
    ref_logprobs: (B, T) log pi_ref(a_t|s_t) of the same tokens
    mask:         (B, T) completion mask (1 on the actions, ``<eos>`` included)
    kl_coef:      beta >= 0, the weight of the KL penalty

        r_t = -beta * (log pi(a_t|s_t) - log pi_ref(a_t|s_t))        on every completion token
            + score                                                   on the last one

    The sum over t is score - beta * KL_k1(sequence), the RLHF objective of one sample.
    Step 0 (policy == reference): only the score remains.
    """
    fn = "token_rewards"
    for name, x in (("logprobs", logprobs), ("ref_logprobs", ref_logprobs)):
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise ValueError(f"{fn}: `{name}` must be a (B, T) tensor, got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
    if logprobs.shape != ref_logprobs.shape or mask.shape != logprobs.shape:
        raise ValueError(f"{fn}: `logprobs` {tuple(logprobs.shape)}, `ref_logprobs` "
                         f"{tuple(ref_logprobs.shape)} and `mask` {tuple(mask.shape)} must have "
                         "the same shape. Likely cause: one was computed on another batch.")
    score = torch.as_tensor(score, dtype=torch.float32, device=logprobs.device)
    if score.shape != logprobs.shape[:1]:
        raise ValueError(f"{fn}: `score` must hold one number per row, shape "
                         f"({logprobs.shape[0]},), got {tuple(score.shape)}")
    if not torch.isfinite(score).all():
        raise ValueError(f"{fn}: `score` has NaN/inf at rows "
                         f"{(~torch.isfinite(score)).nonzero().flatten().tolist()[:5]}; the "
                         "reward function must return finite numbers")
    if not (isinstance(kl_coef, (int, float)) and math.isfinite(kl_coef) and kl_coef >= 0):
        raise ValueError(f"{fn}: `kl_coef` must be a finite number >= 0, got {kl_coef!r}")
    m = mask.float()
    kl = torch.where(m.bool(), logprobs.float() - ref_logprobs.float(), torch.zeros_like(m))
    rewards = -kl_coef * kl
    rows = torch.arange(len(score), device=rewards.device)
    rewards[rows, last_token_index(m)] += score
    return rewards


def kl_penalised_rewards(scores, logprobs, ref_logprobs, mask, beta):
    """Sequence rewards with the KL folded in, as RLOO uses them (Ahmadian et al. 2024; TRL RLOOTrainer).

    scores:       (B,) the judge's (or reward model's) score of each completion
    logprobs:     (B, T) log pi(a_t|s_t) of the sampled tokens at sampling time (constant)
    ref_logprobs: (B, T) log pi_ref(a_t|s_t) of the same tokens
    mask:         (B, T) 1 on completion tokens
    beta:         KL coefficient >= 0

        R_i = score_i - beta * sum_t (log pi - log pi_ref)_it          (k1, summed over the completion)

    Returns (B,), no gradient. Step 0 (pi == pi_ref): R = score.
    """
    fn = "kl_penalised_rewards"
    _check_float(fn, "scores", scores, ndim=1, expected="(B,)")
    _check_finite(fn, "scores", scores)
    _check_float(fn, "logprobs", logprobs, ndim=2, expected="(B, T)")
    valid = _check_mask(fn, mask, "logprobs", logprobs)
    _check_float(fn, "ref_logprobs", ref_logprobs, ndim=2, expected="(B, T)")
    _check_same_shape(fn, "logprobs", logprobs, "ref_logprobs", ref_logprobs,
                      "policy and reference log-probs were computed on different batches.")
    if scores.shape[0] != logprobs.shape[0]:
        raise ValueError(f"{fn}: `scores` has {scores.shape[0]} rows but `logprobs` has {logprobs.shape[0]}; "
                         "one score per completion is needed.")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"{fn}: `beta` should be a finite number >= 0, got {beta!r}.")
    kl = masked_sum((logprobs - ref_logprobs).detach(), valid, dim=1)
    return scores.detach() - beta * kl
