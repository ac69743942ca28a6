"""Critic-free RL (lecture 07): RLOO and GRPO, group baselines instead of a value head.

Both sample k completions per prompt and use the other completions of the same prompt
as the baseline, instead of a learned value head. Rewards come as a (P, k) matrix:
row p holds the k completions of prompt p (a batch of B = P * k completions, ordered
prompt by prompt: ``rewards.reshape(P, k)``, ``advantages.reshape(-1)``). RLOO's
sequence reward with the KL folded in is ``policy.kl_penalised_rewards``.
"""

import math

import torch

from .checks import _check_finite, _check_float, _check_loss, _check_mask, _check_positive, _check_same_shape
from .reductions import masked_mean, masked_sum

# ---------------------------------------------------------------------------
# Group advantages
# ---------------------------------------------------------------------------


def _check_groups(fn, rewards):
    _check_float(fn, "rewards", rewards, ndim=2, expected="(P, k): k completions per prompt")
    _check_finite(fn, "rewards", rewards)
    if rewards.shape[1] < 2:
        raise ValueError(
            f"{fn}: `rewards` has shape {tuple(rewards.shape)}: k = {rewards.shape[1]} completion(s) per "
            "prompt, but a group baseline needs k >= 2. Likely cause: the rewards of a flat batch were "
            "passed as (B, 1); reshape them to (P, k) with the k samples of each prompt in one row."
        )


def _tied(rewards):
    """(P, 1) True for the groups whose k rewards are all equal.

    Their advantages are set to exactly 0: in float32 the mean of eight 0.7s is not exactly
    0.7, and dividing that rounding error by (std + eps) = (~1e-8 + 1e-4) would hand every
    completion of the group a spurious advantage of ~6e-4 (TRL 1.16 does exactly that).
    """
    return (rewards == rewards[:, :1]).all(1, keepdim=True)


def rloo_advantages(rewards):
    """REINFORCE Leave-One-Out advantages (Ahmadian et al. 2024, "Back to Basics"; Kool et al. 2019).

    rewards: (P, k) the (KL-penalised) reward of each of the k completions of each of P prompts

        A_ij = r_ij - 1/(k-1) * sum_{l != j} r_il          = k/(k-1) * (r_ij - mean_l r_il)

    The baseline of completion j is the mean of the OTHER k - 1 rewards of its prompt, so it
    does not depend on y_ij and the policy gradient stays unbiased (a baseline that includes
    r_ij itself, the plain group mean, shrinks every advantage by (k-1)/k).
    Returns (P, k), no gradient. Each row sums to 0; a row of identical rewards gives 0.
    (TRL 1.16 RLOOTrainer, normalize_advantages=False.)
    """
    fn = "rloo_advantages"
    _check_groups(fn, rewards)
    rewards = rewards.detach()
    k = rewards.shape[1]
    baseline = (rewards.sum(1, keepdim=True) - rewards) / (k - 1)
    return torch.where(_tied(rewards), torch.zeros_like(rewards), rewards - baseline)


def group_advantages(rewards, scale="std", eps=1e-4):
    """GRPO's group-relative advantages (Shao et al. 2024, DeepSeekMath, sec. 4.1.2, outcome supervision).

    rewards: (P, k) the reward of each of the k completions of each of P prompts
    scale:   "std"  divide by the group's standard deviation (GRPO; TRL scale_rewards="group")
             "none" only subtract the group mean (Dr. GRPO, Liu et al. 2025: dividing by the std
                    up-weights prompts whose k rewards are nearly equal, i.e. too easy or too hard)
    eps:     added to the std (TRL uses 1e-4)

        A_ij = (r_ij - mean_l r_il) / (std_l r_il + eps)

    The std is the UNBIASED one (divides by k - 1), as torch.std and TRL's `nanstd` compute it.
    The same A_ij is then used for every token of completion j (see `grpo_loss`).
    Returns (P, k), no gradient. Each row sums to 0; a row of identical rewards gives exactly 0
    (0 / (0 + eps)), never NaN, even where float rounding would not (see `_tied`).
    """
    fn = "group_advantages"
    _check_groups(fn, rewards)
    if scale not in ("std", "none"):
        raise ValueError(f"{fn}: `scale` should be 'std' or 'none', got {scale!r}.")
    _check_positive(fn, "eps", eps)
    rewards = rewards.detach()
    centred = torch.where(_tied(rewards), torch.zeros_like(rewards), rewards - rewards.mean(1, keepdim=True))
    if scale == "none":
        return centred
    return centred / (rewards.std(1, unbiased=True, keepdim=True) + eps)


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------


def _check_rl_inputs(fn, logprobs, old_logprobs, advantages, mask, clip_eps):
    _check_float(fn, "logprobs", logprobs, ndim=2, expected="(B, T)")
    valid = _check_mask(fn, mask, "logprobs", logprobs)
    _check_float(fn, "old_logprobs", old_logprobs, ndim=2, expected="(B, T)")
    _check_same_shape(fn, "logprobs", logprobs, "old_logprobs", old_logprobs,
                      "tensors of the rollout and of the update were cut to different lengths.")
    _check_float(fn, "advantages", advantages, ndim=1, expected="(B,): one advantage per completion")
    if advantages.shape[0] != logprobs.shape[0]:
        raise ValueError(
            f"{fn}: `advantages` has {advantages.shape[0]} entries but `logprobs` has {logprobs.shape[0]} rows. "
            "Likely cause: the (P, k) advantages were not flattened with .reshape(-1), or the prompts were "
            "not repeated k times in the same order as the rewards were grouped."
        )
    for name, x in [("logprobs", logprobs), ("old_logprobs", old_logprobs)]:
        _check_finite(fn, name, x, where=valid)
    _check_finite(fn, "advantages", advantages)
    if not valid.any(1).all():
        row = int((~valid.any(1)).nonzero()[0])
        raise ValueError(f"{fn}: `mask` row {row} has no completion token. Likely cause: the prompt mask "
                         "was passed instead of the completion mask.")
    _check_positive(fn, "clip_eps", clip_eps)
    return valid


AGGREGATIONS = ("sequence_mean", "token_mean", "dr_grpo")


def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, clip_eps=0.2, beta=0.04,
              aggregation="sequence_mean", max_tokens=None):
    """GRPO loss: per-token PPO-clip on group advantages plus a k3 KL term (Shao et al. 2024, eq. 3).

    logprobs:     (B, T) log pi_theta(o_t | q, o_<t) of the sampled tokens, with gradient
    old_logprobs: (B, T) the same at sampling time (constant); equal to logprobs on the first step
    ref_logprobs: (B, T) log pi_ref of the same tokens (constant); may be None when beta == 0
    advantages:   (B,) one advantage per completion (e.g. `group_advantages(...).reshape(-1)`),
                  used for every one of its tokens (constant)
    mask:         (B, T) 1 on completion tokens
    clip_eps:     epsilon of the clip range [1 - eps, 1 + eps]
    beta:         weight of the KL term (0.04 in DeepSeekMath; 0, no KL at all, is TRL 1.16's default)
    aggregation:  how per-token losses l_it become one number (o_i = completion i, |o_i| its length):
                  "sequence_mean" mean_i (1/|o_i|) sum_t l_it   (the paper's eq. 3; TRL loss_type="grpo")
                  "token_mean"    sum_it l_it / sum_i |o_i|      (TRL "bnpo", and "dapo" on one device)
                  "dr_grpo"       sum_it l_it / (B * max_tokens) (Liu et al. 2025: a constant, so no
                                  length bias; TRL "dr_grpo" with max_tokens = max_completion_length)
    max_tokens:   the completion length limit (max_new_tokens); needed (only) for "dr_grpo"

        ratio_it = exp(logprobs_it - old_logprobs_it)
        l_it     = -min(ratio_it * A_i, clip(ratio_it, 1 - eps, 1 + eps) * A_i)  +  beta * k3_it
        k3_it    = exp(ref_it - logprobs_it) - (ref_it - logprobs_it) - 1     (>= 0; `kl_k3`)

    The KL is a term of the loss, estimated on each sampled token, not a penalty in the reward.
    "sequence_mean" divides each completion by its own length: at equal advantage, a short
    completion's tokens get larger gradients than a long one's (the length bias Dr. GRPO removes).

    Returns (loss, stats), stats detached scalars:
      clipfrac:   fraction of tokens in the clipped region (ratio < 1 - eps with A < 0, or
                  ratio > 1 + eps with A > 0; TRL's clip_ratio/region_mean)
      kl:         mean k3 over tokens (TRL's `kl`; 0 when beta == 0 and no reference was given)
      ratio_mean: mean ratio over tokens
    Step 0 (logprobs == old_logprobs == ref_logprobs): ratio exactly 1, k3 exactly 0, clipfrac 0,
    and the loss is minus the aggregated advantage (0 for group advantages of equal-length
    completions, whose group sums to 0).
    """
    fn = "grpo_loss"
    valid = _check_rl_inputs(fn, logprobs, old_logprobs, advantages, mask, clip_eps)
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"{fn}: `aggregation` should be one of {AGGREGATIONS}, got {aggregation!r}.")
    if aggregation == "dr_grpo":
        longest = int(valid.sum(1).max())
        if not (isinstance(max_tokens, int) and max_tokens >= longest):
            raise ValueError(
                f"{fn}: aggregation='dr_grpo' needs `max_tokens`, an int >= the longest completion ({longest} "
                f"tokens): the length limit of sampling, e.g. max_new_tokens; got {max_tokens!r}.")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"{fn}: `beta` should be a finite number >= 0, got {beta!r}.")
    if ref_logprobs is None and beta != 0:
        raise ValueError(f"{fn}: `ref_logprobs` is None but beta = {beta}; the KL term needs the "
                         "reference log-probs (pass beta=0 to train without any KL).")

    zeros = torch.zeros_like(logprobs)
    log_ratio = torch.where(valid, logprobs - old_logprobs.detach(), zeros)  # 0 at padding: ratio 1
    ratio = torch.exp(log_ratio)
    adv = advantages.detach()[:, None]
    per_token = -torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    kl = zeros
    if ref_logprobs is not None:
        _check_float(fn, "ref_logprobs", ref_logprobs, ndim=2, expected="(B, T)")
        _check_same_shape(fn, "logprobs", logprobs, "ref_logprobs", ref_logprobs,
                          "policy and reference log-probs were computed on different batches.")
        _check_finite(fn, "ref_logprobs", ref_logprobs, where=valid)
        log_r = torch.where(valid, ref_logprobs.detach() - logprobs, zeros)  # k3 with r = pi_ref / pi
        kl = torch.expm1(log_r) - log_r
        per_token = per_token + beta * kl
    per_token = torch.where(valid, per_token, zeros)
    lengths = valid.sum(1).to(logprobs.dtype)
    if aggregation == "sequence_mean":
        loss = (per_token.sum(1) / lengths).mean()
    elif aggregation == "token_mean":
        loss = per_token.sum() / lengths.sum()
    else:
        loss = per_token.sum() / (logprobs.shape[0] * max_tokens)
    _check_loss(fn, loss)
    with torch.no_grad():
        clipped = ((ratio < 1 - clip_eps) & (adv < 0)) | ((ratio > 1 + clip_eps) & (adv > 0))
        stats = {"clipfrac": masked_mean(clipped.float(), valid), "kl": masked_mean(kl, valid),
                 "ratio_mean": masked_mean(ratio, valid)}
    return loss, stats


def rloo_loss(logprobs, old_logprobs, advantages, mask, clip_eps=0.2):
    """RLOO loss: REINFORCE with the leave-one-out baseline, a sequence-level clipped ratio
    (Ahmadian et al. 2024; TRL 1.16 RLOOTrainer).

    logprobs:     (B, T) log pi_theta of the sampled tokens, with gradient
    old_logprobs: (B, T) the same at sampling time (constant)
    advantages:   (B,) `rloo_advantages` of the KL-penalised rewards (`kl_penalised_rewards`),
                  flattened (constant): the KL is already in the reward, not in the loss
    mask:         (B, T) 1 on completion tokens
    clip_eps:     epsilon of the clip on the SEQUENCE ratio

        rho_i = exp( sum_t (logprobs_it - old_logprobs_it) )        = pi_theta(y_i|x) / pi_old(y_i|x)
        loss  = mean_i -min(rho_i * A_i, clip(rho_i, 1 - eps, 1 + eps) * A_i)

    On the first step after sampling rho = 1 and the gradient is REINFORCE's,
    -mean_i A_i * grad log pi_theta(y_i|x); the clip only matters when a batch is reused.
    Returns (loss, stats): clipfrac (fraction of completions in the clipped region) and
    ratio_mean (mean rho), detached. Step 0: rho exactly 1, clipfrac 0, loss = -mean(A)
    (0 for leave-one-out advantages, which sum to 0 in every group).
    """
    fn = "rloo_loss"
    valid = _check_rl_inputs(fn, logprobs, old_logprobs, advantages, mask, clip_eps)
    log_ratio = masked_sum(logprobs - old_logprobs.detach(), valid, dim=1)
    ratio = torch.exp(log_ratio)
    adv = advantages.detach()
    loss = (-torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)).mean()
    _check_loss(fn, loss)
    with torch.no_grad():
        clipped = ((ratio < 1 - clip_eps) & (adv < 0)) | ((ratio > 1 + clip_eps) & (adv > 0))
        stats = {"clipfrac": clipped.float().mean(), "ratio_mean": ratio.mean()}
    return loss, stats
