"""Pure loss functions for preference alignment: reward models, DPO, KTO and PPO.

Tensors in, tensors out: no hidden state, no nn.Module, no optimiser. Every function
says which equation of which paper it implements and what it returns at step 0
(policy == reference, or new policy == old policy), so a first training step can be
checked by hand.

Shape names used throughout:
    B   batch size (number of examples, or of preference pairs)
    T   number of completion tokens in a padded batch
    mask (B, T): 1 on valid completion tokens, 0 on padding (and prompt) positions.

Bad input raises ValueError naming the function, the argument, what was expected,
what came, and the most likely cause.
"""

import math

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# Input checks (shared by every function below)
# ---------------------------------------------------------------------------


def _check_float(fn, name, x, ndim=None, expected=""):
    """Raise ValueError unless `x` is a floating-point tensor (with `ndim` dims if given)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(
            f"{fn}: `{name}` should be a torch.Tensor {expected}, got {type(x).__name__}. "
            "Likely cause: a Python list or number was passed; wrap it with torch.tensor(...)."
        )
    if not x.is_floating_point():
        raise ValueError(
            f"{fn}: `{name}` should be a floating-point tensor {expected}, got dtype {x.dtype}. "
            "Likely cause: token ids or a mask were passed where log-probs, rewards or values "
            "were expected (if integers are really meant, call .float() first)."
        )
    if ndim is not None and x.dim() != ndim:
        if ndim == 1:
            cause = ("per-token values were passed where per-sequence sums were expected (sum over "
                     "the completion first), or a trailing dim of size 1 was not squeezed.")
        else:
            cause = ("per-sequence values were passed where per-token (B, T) values were expected, "
                     "or the batch dim is missing (use .unsqueeze(0) for a single sequence).")
        raise ValueError(
            f"{fn}: `{name}` should have {ndim} dimension(s) {expected}, got shape {tuple(x.shape)}. "
            f"Likely cause: {cause}"
        )


def _check_finite(fn, name, x, where=None):
    """Raise ValueError if `x` has NaN or inf entries (only entries where `where` is True count).

    Masked functions pass where=mask: padding positions may hold anything.
    """
    values = x if where is None else x[where]
    if not torch.isfinite(values).all():
        n_nan = int(torch.isnan(values).sum())
        n_inf = int(torch.isinf(values).sum())
        at = "" if where is None else " at valid (mask == 1) positions"
        raise ValueError(
            f"{fn}: `{name}` contains {n_nan} NaN and {n_inf} inf value(s){at}. "
            "Likely cause: training already diverged (learning rate too high), a log of 0 "
            "(e.g. log-prob of a token the model gives probability 0), or fp16 overflow. "
            "Find the first step where it appeared."
        )


def _check_same_shape(fn, name_a, a, name_b, b, cause):
    if a.shape != b.shape:
        raise ValueError(
            f"{fn}: `{name_b}` has shape {tuple(b.shape)} but `{name_a}` has shape {tuple(a.shape)}; "
            f"they must have the same shape. Likely cause: {cause}"
        )


def _check_mask(fn, mask, x_name, x):
    """Check `mask` is a 0/1 (or bool) tensor with the shape of `x`; return it as bool."""
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{fn}: `mask` should be a torch.Tensor, got {type(mask).__name__}.")
    if mask.shape != x.shape:
        raise ValueError(
            f"{fn}: `mask` has shape {tuple(mask.shape)} but `{x_name}` has shape {tuple(x.shape)}; "
            "they must match. Likely cause: the mask covers prompt + completion while the tensor "
            "covers only the completion, or one of them was shifted by one token (logits[:, :-1])."
        )
    if mask.dtype != torch.bool and not ((mask == 0) | (mask == 1)).all():
        raise ValueError(
            f"{fn}: `mask` should contain only 0 and 1, got values {torch.unique(mask)[:5].tolist()}... "
            "Likely cause: token ids or weights were passed instead of the completion mask."
        )
    return mask.bool()


def _check_positive(fn, name, value):
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{fn}: `{name}` should be a finite number > 0, got {value!r}.")


def _check_loss(fn, loss):
    if not torch.isfinite(loss).all():
        raise ValueError(
            f"{fn}: the loss came out {loss.detach().flatten()[:3].tolist()} although the inputs "
            "were finite. Likely cause: an extreme hyper-parameter (beta, margin, clip) or an "
            "overflow in low precision; try float32 inputs."
        )


# ---------------------------------------------------------------------------
# Masked reductions
# ---------------------------------------------------------------------------


def masked_sum(x, mask, dim=None):
    """Sum of `x` over valid positions only.

    x:    (...) any float tensor, e.g. (B, T) per-token values
    mask: same shape as x, 1 = valid, 0 = padding
    dim:  None (sum everything, returns a scalar) or the dim to sum over

    Padding entries are replaced by 0 with torch.where (not multiplied by 0), so NaN
    or inf sitting in padding cannot leak into the result.
    """
    fn = "masked_sum"
    _check_float(fn, "x", x)  # type and dtype
    valid = _check_mask(fn, mask, "x", x)
    _check_finite(fn, "x", x, where=valid)  # finite where it counts
    x = torch.where(valid, x, torch.zeros_like(x))
    return x.sum() if dim is None else x.sum(dim)


def masked_mean(x, mask, dim=None):
    """Mean of `x` over valid positions only: sum(x * mask) / sum(mask).

    x:    (...) any float tensor, e.g. (B, T) per-token losses
    mask: same shape as x, 1 = valid, 0 = padding
    dim:  None (mean over all valid entries, a scalar) or the dim to average over

    This is a *token-level* mean: a long completion weighs more than a short one.
    Raises ValueError if there is nothing to average (no valid entry in a slice).
    """
    fn = "masked_mean"
    _check_float(fn, "x", x)  # type and dtype
    valid = _check_mask(fn, mask, "x", x)
    _check_finite(fn, "x", x, where=valid)  # finite where it counts
    count = valid.sum() if dim is None else valid.sum(dim)
    if (count == 0).any():
        raise ValueError(
            "masked_mean: `mask` has no valid (1) entry to average over"
            + ("" if dim is None else f" in some slice along dim {dim}")
            + ". Likely cause: an empty completion, or a mask that marks the prompt instead of the completion."
        )
    x = torch.where(valid, x, torch.zeros_like(x))
    total = x.sum() if dim is None else x.sum(dim)
    return total / count


def whiten(x, mask, shift_mean=True, eps=1e-8):
    """Normalise `x` to mean 0 and std 1 over the valid entries of the whole batch.

    x:    (B, T) e.g. per-token advantages
    mask: (B, T) 1 = valid, 0 = padding
    shift_mean: if False, the original mean is added back (only the scale changes)
    eps:  added to the variance before the square root

        x_hat = (x - mean) / sqrt(var + eps)       over entries with mask == 1

    The variance is the *unbiased* one (divides by n - 1), as in `masked_whiten` of TRL's
    PPO code (TRL < 1.0), so `x_hat[mask.bool()].std()` (also unbiased) is 1.
    Needs at least 2 valid entries.
    Padding positions are returned as 0 and never influence the statistics.
    """
    fn = "whiten"
    _check_float(fn, "x", x)
    valid = _check_mask(fn, mask, "x", x)
    _check_finite(fn, "x", x, where=valid)
    n = valid.sum()
    if n < 2:
        raise ValueError(
            f"{fn}: need at least 2 valid entries to estimate a variance, got {int(n)}. "
            "Likely cause: a batch with a single one-token completion; whiten over a larger batch."
        )
    x = torch.where(valid, x, torch.zeros_like(x))
    mean = x.sum() / n
    centered = torch.where(valid, x - mean, torch.zeros_like(x))
    var = (centered**2).sum() / (n - 1)  # unbiased (Bessel's correction)
    out = centered * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(valid, out, torch.zeros_like(out))


# ---------------------------------------------------------------------------
# Reward model: Bradley-Terry
# ---------------------------------------------------------------------------


def _check_pair(fn, rewards_chosen, rewards_rejected, names=("rewards_chosen", "rewards_rejected")):
    _check_float(fn, names[0], rewards_chosen, ndim=1, expected="(B,)")
    _check_float(fn, names[1], rewards_rejected, ndim=1, expected="(B,)")
    _check_finite(fn, names[0], rewards_chosen)
    _check_finite(fn, names[1], rewards_rejected)
    _check_same_shape(
        fn, names[0], rewards_chosen, names[1], rewards_rejected,
        "chosen and rejected were built from batches of different sizes; each preference pair "
        "needs exactly one chosen and one rejected entry.",
    )


def bt_loss(rewards_chosen, rewards_rejected, margin=None):
    """Bradley-Terry reward-model loss (Ouyang et al. 2022, eq. 1).

    rewards_chosen:   (B,) scalar reward r(x, y_c) of the preferred completion
    rewards_rejected: (B,) scalar reward r(x, y_r) of the other completion
    margin:           None, a float, or (B,) how much better y_c is known to be
                      (Touvron et al. 2023 "Llama 2", eq. 2; the `margin` column of TRL's RewardTrainer)

        loss = mean_i  -log sigmoid(r_c - r_r - m)  =  mean_i softplus(r_r - r_c + m)

    The softplus form never computes sigmoid then log, so it stays finite for any reward
    gap (compare `bt_loss_naive`). Step 0 (r_c == r_r, no margin): ln 2 ~= 0.693.
    """
    fn = "bt_loss"
    _check_pair(fn, rewards_chosen, rewards_rejected)
    if margin is None:
        margin = 0.0
    elif isinstance(margin, torch.Tensor):
        _check_float(fn, "margin", margin, ndim=1, expected="(B,)")
        _check_finite(fn, "margin", margin)
        _check_same_shape(fn, "rewards_chosen", rewards_chosen, "margin", margin,
                          "one margin per preference pair is needed.")
    loss = F.softplus(rewards_rejected - rewards_chosen + margin).mean()
    _check_loss(fn, loss)
    return loss


def bt_loss_naive(rewards_chosen, rewards_rejected):
    """The textbook form -log(sigmoid(r_c - r_r)), kept ONLY to show why it is not used.

    rewards_chosen, rewards_rejected: (B,)

    For a gap r_c - r_r of about -100 or less (float32), sigmoid underflows to exactly 0
    and log(0) = -inf, so the loss is inf and its gradient NaN. `bt_loss` is the fix.
    """
    _check_pair("bt_loss_naive", rewards_chosen, rewards_rejected)
    return -torch.log(torch.sigmoid(rewards_chosen - rewards_rejected)).mean()


def pairwise_accuracy(rewards_chosen, rewards_rejected):
    """Fraction of pairs the reward model orders correctly: mean(r_c > r_r), ties count 1/2.

    rewards_chosen, rewards_rejected: (B,)
    Returns a float scalar tensor in [0, 1], without gradient. Step 0 with a reward model
    that outputs a constant: 0.5 (all ties). (TRL's `accuracy` metric counts a tie as 0.)
    """
    _check_pair("pairwise_accuracy", rewards_chosen, rewards_rejected)
    with torch.no_grad():
        wins = (rewards_chosen > rewards_rejected).float()
        ties = (rewards_chosen == rewards_rejected).float()
        return (wins + 0.5 * ties).mean()


# ---------------------------------------------------------------------------
# DPO
# ---------------------------------------------------------------------------


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1):
    """Direct Preference Optimization, "sigmoid" loss (Rafailov et al. 2023, eq. 7).

    policy_chosen_logps:   (B,) summed log-probs log pi(y_c|x) of the chosen completion under the policy
    policy_rejected_logps: (B,) summed log-probs log pi(y_r|x) of the rejected completion under the policy
    ref_chosen_logps:      (B,) same for the frozen reference model (no gradient needed)
    ref_rejected_logps:    (B,)
    beta:                  strength of the implicit KL penalty (TRL default 0.1)

        h    = [log pi(y_c) - log ref(y_c)] - [log pi(y_r) - log ref(y_r)]
        loss = mean_i  -log sigmoid(beta * h)

    (h is also (pi_c - pi_r) - (ref_c - ref_r); TRL computes it the first way.)

    Returns (loss, chosen_rewards, rejected_rewards): the implicit rewards
    beta * (log pi - log ref), shape (B,), detached (for logging only).
    Step 0 (policy == reference): loss = ln 2 ~= 0.693 and both rewards are 0.
    """
    fn = "dpo_loss"
    _check_pair(fn, policy_chosen_logps, policy_rejected_logps, ("policy_chosen_logps", "policy_rejected_logps"))
    for name, x in [("ref_chosen_logps", ref_chosen_logps), ("ref_rejected_logps", ref_rejected_logps)]:
        _check_float(fn, name, x, ndim=1, expected="(B,)")
        _check_finite(fn, name, x)
        _check_same_shape(fn, "policy_chosen_logps", policy_chosen_logps, name, x,
                          "the reference log-probs were computed on a different batch than the policy's.")
    _check_positive(fn, "beta", beta)

    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    losses = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))
    loss = losses.mean()
    _check_loss(fn, loss)

    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return loss, chosen_rewards, rejected_rewards


# ---------------------------------------------------------------------------
# KTO
# ---------------------------------------------------------------------------


def kto_z0(policy_kl_logps, ref_kl_logps):
    """KTO reference point z0: a batch estimate of KL(pi || ref) (Ethayarajh et al. 2024, eq. 7).

    policy_kl_logps: (B,) summed log-probs of MISMATCHED pairs (x_i, y_j), j != i, under the policy
    ref_kl_logps:    (B,) same pairs under the reference model
    (see `mismatched_indices` for how the pairs are built)

        z0 = max(0, mean_i [log pi(y_j|x_i) - log ref(y_j|x_i)])       no gradient

    Clamped at 0 because a KL cannot be negative (the estimate can be), and detached
    because the paper treats z0 as a constant baseline (TRL computes it under no_grad).
    Step 0 (policy == reference): 0.
    """
    fn = "kto_z0"
    _check_float(fn, "policy_kl_logps", policy_kl_logps, ndim=1, expected="(B,)")
    _check_float(fn, "ref_kl_logps", ref_kl_logps, ndim=1, expected="(B,)")
    _check_finite(fn, "policy_kl_logps", policy_kl_logps)
    _check_finite(fn, "ref_kl_logps", ref_kl_logps)
    _check_same_shape(fn, "policy_kl_logps", policy_kl_logps, "ref_kl_logps", ref_kl_logps,
                      "the reference KL log-probs were computed on a different batch than the policy's.")
    if policy_kl_logps.numel() == 0:
        raise ValueError(f"{fn}: `policy_kl_logps` is empty; the KL estimate needs at least one mismatched pair.")
    return (policy_kl_logps - ref_kl_logps).mean().clamp(min=0).detach()


def kto_loss(policy_logps, ref_logps, labels, policy_kl_logps, ref_kl_logps, beta=0.1, lambda_d=1.0, lambda_u=1.0):
    """Kahneman-Tversky Optimization loss, as in TRL's KTOTrainer (Ethayarajh et al. 2024, eq. 7).

    policy_logps:    (B,) summed log-probs log pi(y_i|x_i) of each example's completion
    ref_logps:       (B,) same under the frozen reference model
    labels:          (B,) bool or 0/1; True (1) = desirable, False (0) = undesirable
    policy_kl_logps: (B,) summed policy log-probs of mismatched pairs, for z0 (see `kto_z0`)
    ref_kl_logps:    (B,) same under the reference model
    beta:            KL strength; lambda_d / lambda_u: weights of desirable / undesirable examples

        r_i    = log pi(y_i|x_i) - log ref(y_i|x_i)
        loss_i = lambda_d * (1 - sigmoid(beta * (r_i - z0)))   if y_i desirable
                 lambda_u * (1 - sigmoid(beta * (z0 - r_i)))   if y_i undesirable
        loss   = mean over all B examples

    (The paper writes lambda_y - v(x, y) with v = lambda_y * sigmoid(...): the same thing.)
    TRL concatenates the weighted desirable and undesirable losses and takes their
    nanmean; with the finite inputs checked here that is exactly this mean.
    Works for all-desirable and all-undesirable batches.

    Returns (loss, z0, rewards): z0 scalar (detached), rewards = beta * r_i (B,) detached.
    Step 0 (policy == reference): z0 = 0 and every example's loss is lambda_y / 2.

    (Equation numbers for KTO follow the ones TRL's kto_trainer.py cites: eq. 7 for the
    loss, eq. 8 for the lambda recommendation; other arXiv versions may number differently.)
    """
    fn = "kto_loss"
    _check_float(fn, "policy_logps", policy_logps, ndim=1, expected="(B,)")
    _check_float(fn, "ref_logps", ref_logps, ndim=1, expected="(B,)")
    _check_finite(fn, "policy_logps", policy_logps)
    _check_finite(fn, "ref_logps", ref_logps)
    _check_same_shape(fn, "policy_logps", policy_logps, "ref_logps", ref_logps,
                      "the reference log-probs were computed on a different batch than the policy's.")
    if not isinstance(labels, torch.Tensor) or labels.shape != policy_logps.shape:
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(
            f"{fn}: `labels` should be a (B,) tensor like `policy_logps` {tuple(policy_logps.shape)}, got {got}. "
            "Likely cause: labels of the whole dataset, or of the KL batch, were passed."
        )
    if labels.dtype != torch.bool and not ((labels == 0) | (labels == 1)).all():
        raise ValueError(
            f"{fn}: `labels` should be bool or 0/1 (1 = desirable), got values {torch.unique(labels)[:5].tolist()}. "
            "Likely cause: scores or ratings were passed instead of binary labels."
        )
    if policy_logps.numel() == 0:
        raise ValueError(f"{fn}: the batch is empty.")
    _check_positive(fn, "beta", beta)
    _check_positive(fn, "lambda_d", lambda_d)
    _check_positive(fn, "lambda_u", lambda_u)

    desirable = labels.bool()
    z0 = kto_z0(policy_kl_logps, ref_kl_logps)
    logratios = policy_logps - ref_logps
    desirable_losses = lambda_d * (1 - torch.sigmoid(beta * (logratios - z0)))
    undesirable_losses = lambda_u * (1 - torch.sigmoid(beta * (z0 - logratios)))
    losses = torch.where(desirable, desirable_losses, undesirable_losses)
    loss = losses.mean()
    _check_loss(fn, loss)

    rewards = beta * logratios.detach()
    return loss, z0, rewards


def mismatched_indices(batch_size):
    """Which completion each prompt is paired with for the KTO KL estimate.

    Returns a (batch_size,) LongTensor `idx`: prompt i is paired with completion idx[i] = (i - 1) mod B,
    i.e. torch.roll(arange(B), 1) = [B-1, 0, 1, ..., B-2]. This is TRL's convention: it rotates
    the completions by one within each batch, (x_1, y_n), (x_2, y_1), ..., (x_n, y_{n-1}).
    Use as `kl_completions = completions[idx]`.

    batch_size 1 raises ValueError (documented behaviour): the only pairing is (x_1, y_1),
    which is not mismatched, so the "KL" would just be the example's own reward
    (TRL refuses per-device batch size 1 for the same reason).
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool):
        raise ValueError(f"mismatched_indices: `batch_size` should be an int, got {type(batch_size).__name__}.")
    if batch_size < 2:
        raise ValueError(
            f"mismatched_indices: `batch_size` should be at least 2, got {batch_size}. A mismatched "
            "(prompt, completion) pair needs at least 2 examples: with 1 the completion would be paired "
            "with its own prompt and z0 would equal that example's reward. Use a batch size >= 2."
        )
    return torch.roll(torch.arange(batch_size), shifts=1)


def kto_recommended_lambda_d(n_desirable, n_undesirable, lambda_u=1.0):
    """Range of lambda_d recommended by the KTO paper for a given class balance (Ethayarajh et al. 2024, eq. 8).

    n_desirable, n_undesirable: number of desirable / undesirable examples in the dataset
    lambda_u: weight of undesirable examples

        lambda_d * n_D / (lambda_u * n_U)  in  [1, 4/3]

    Returns (low, high): lambda_d in [lambda_u * n_U / n_D, 4/3 * lambda_u * n_U / n_D].
    Balanced data with lambda_u = 1 gives (1.0, 1.333...).
    """
    fn = "kto_recommended_lambda_d"
    _check_positive(fn, "n_desirable", n_desirable)
    _check_positive(fn, "n_undesirable", n_undesirable)
    _check_positive(fn, "lambda_u", lambda_u)
    low = lambda_u * n_undesirable / n_desirable
    return low, low * 4.0 / 3.0


def kto_lambdas_in_recommended_range(n_desirable, n_undesirable, lambda_d=1.0, lambda_u=1.0):
    """True if lambda_d * n_D / (lambda_u * n_U) lies in [1, 4/3] (Ethayarajh et al. 2024, eq. 8).

    TRL's KTOTrainer logs a warning when this does not hold (it uses 1.33 for 4/3).
    """
    fn = "kto_lambdas_in_recommended_range"
    for name, value in [("n_desirable", n_desirable), ("n_undesirable", n_undesirable),
                        ("lambda_d", lambda_d), ("lambda_u", lambda_u)]:
        _check_positive(fn, name, value)
    ratio = lambda_d * n_desirable / (lambda_u * n_undesirable)
    return 1.0 <= ratio <= 4.0 / 3.0


# ---------------------------------------------------------------------------
# PPO: advantages, policy loss, value loss
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
# Critic-free RL: RLOO and GRPO (lecture 07)
#
# Both sample k completions per prompt and use the other completions of the same prompt
# as the baseline, instead of a learned value head. Rewards come as a (P, k) matrix:
# row p holds the k completions of prompt p (a batch of B = P * k completions, ordered
# prompt by prompt: ``rewards.reshape(P, k)``, ``advantages.reshape(-1)``).
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


# ---------------------------------------------------------------------------
# Online preference learning: BPO, VPO and XPO (lecture 06)
#
# Online DPO is ``dpo_loss`` itself, on pairs sampled from the current policy and labelled
# as they come. BPO changes which model is the reference; VPO and XPO add a term on
# samples of a "calibration" policy (here pi_ref) to the DPO loss. All log-probs are
# SUMMED over the completion's tokens, as in ``dpo_loss``.
# ---------------------------------------------------------------------------

VPO_MODES = {"online": 1.0, "offline": -1.0}
"""VPO's sign: +1 online (optimism: push the calibration samples DOWN, explore), -1 offline
(pessimism: pull them UP, an SFT-like regulariser on the data)."""


def _check_dpo_inputs(fn, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                      ref_rejected_logps, ref_names=("ref_chosen_logps", "ref_rejected_logps")):
    _check_pair(fn, policy_chosen_logps, policy_rejected_logps, ("policy_chosen_logps", "policy_rejected_logps"))
    for name, x in zip(ref_names, (ref_chosen_logps, ref_rejected_logps)):
        _check_float(fn, name, x, ndim=1, expected="(B,)")
        _check_finite(fn, name, x)
        _check_same_shape(fn, "policy_chosen_logps", policy_chosen_logps, name, x,
                          "the reference log-probs were computed on a different batch than the policy's.")


def _dpo_terms(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    """(B,) per-pair DPO losses and the two (B,) implicit rewards (with gradient)."""
    chosen = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected = beta * (policy_rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(chosen - rejected), chosen, rejected


def bpo_loss(policy_chosen_logps, policy_rejected_logps, behaviour_chosen_logps, behaviour_rejected_logps,
             beta=0.1):
    """BPO: DPO with the behaviour LLM as the reference (Xu et al. 2024, arXiv 2406.12168, sec. 4).

    policy_chosen_logps:      (B,) summed log pi_theta(y_c|x) under the policy being trained
    policy_rejected_logps:    (B,) the same for y_r
    behaviour_chosen_logps:   (B,) summed log pi_beh(y_c|x) under the BEHAVIOUR policy: the frozen
                              snapshot that sampled this pair (not the SFT model)
    behaviour_rejected_logps: (B,)
    beta:                     strength of the trust region around pi_beh

        loss = mean_i -log sigmoid( beta [log pi_theta/pi_beh (y_c) - log pi_theta/pi_beh (y_r)] )

    The formula is ``dpo_loss``'s; what changes is where the reference comes from. Online DPO
    keeps pi_ref = pi_SFT while the data comes from ever newer policies, so its trust region
    is centred far from the data; BPO centres it on the policy that produced the data. With
    F collection phases, pi_beh is frozen within a phase and replaced at each phase boundary
    by a snapshot of the policy: F = 1 is offline DPO (pi_beh = pi_SFT), F = steps is fully
    on-policy (a fresh reference every step).

    Returns (loss, chosen_rewards, rejected_rewards), the implicit rewards
    beta (log pi_theta - log pi_beh), (B,), detached. Step 0 OF EVERY PHASE (the policy is
    the snapshot it was just copied to): loss = ln 2 ~= 0.693, rewards 0. A loss that is ln 2
    at EVERY step while F < steps means the reference is the current policy, not a frozen
    snapshot (then it is a new reference each step, and the F phases are lost).
    """
    fn = "bpo_loss"
    _check_dpo_inputs(fn, policy_chosen_logps, policy_rejected_logps, behaviour_chosen_logps,
                      behaviour_rejected_logps, ("behaviour_chosen_logps", "behaviour_rejected_logps"))
    _check_positive(fn, "beta", beta)
    losses, chosen, rejected = _dpo_terms(policy_chosen_logps, policy_rejected_logps,
                                          behaviour_chosen_logps.detach(), behaviour_rejected_logps.detach(), beta)
    loss = losses.mean()
    _check_loss(fn, loss)
    return loss, chosen.detach(), rejected.detach()


def vpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             policy_cal_logps, ref_cal_logps, beta=0.1, alpha=0.1, mode="online"):
    """VPO: the DPO loss plus the value-incentivised regulariser (Cen et al. 2024, arXiv 2405.19320).

    policy_chosen_logps, policy_rejected_logps: (B,) summed log-probs of the pair under the policy
    ref_chosen_logps, ref_rejected_logps:       (B,) the same under the frozen reference pi_ref
    policy_cal_logps: (M,) summed log pi_theta(y|x) of M samples y ~ pi_cal (the "calibration"
                      policy; here pi_cal = pi_ref: one fresh SFT sample per prompt online, the
                      data's own SFT completions offline)
    ref_cal_logps:    (M,) summed log pi_ref(y|x) of the same samples (constant)
    beta:             DPO's beta;  alpha: strength of the regulariser (>= 0)
    mode:             "online" (sign +1, optimism) or "offline" (sign -1, pessimism)

    VPO fits the reward by maximum likelihood regularised by the best value it promises,
    -ell(r) +/- alpha max_pi J(r, pi); with DPO's reparameterisation r = beta log pi/pi_ref
    (+ const) that value becomes a term on samples of pi_cal, and the loss is

        loss = dpo_loss + sign * alpha * beta * mean_j [log pi_theta(y_j|x_j) - log pi_ref(y_j|x_j)]

    Online (+): lowering the likelihood of the reference's typical samples moves mass to
    responses pi_ref rarely writes: exploration. Offline (-): raising it keeps the policy on
    the data's support, an SFT-like pessimistic regulariser. Its gradient is
    sign * alpha * beta * mean grad log pi_theta(y_j|x_j): the same as XPO's bonus with
    alpha_XPO = alpha * beta (``xpo_loss``); the two losses differ by a constant.

    Returns (loss, chosen_rewards, rejected_rewards, regulariser): the implicit rewards
    (B,) detached, and the regulariser term as added to the loss (a detached scalar).
    Step 0 (policy == reference): loss = ln 2, rewards 0, regulariser exactly 0 (each
    log-ratio is 0), whatever alpha: only its gradient is non-zero.
    """
    fn = "vpo_loss"
    _check_dpo_inputs(fn, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    _check_float(fn, "policy_cal_logps", policy_cal_logps, ndim=1, expected="(M,)")
    _check_float(fn, "ref_cal_logps", ref_cal_logps, ndim=1, expected="(M,)")
    _check_finite(fn, "policy_cal_logps", policy_cal_logps)
    _check_finite(fn, "ref_cal_logps", ref_cal_logps)
    _check_same_shape(fn, "policy_cal_logps", policy_cal_logps, "ref_cal_logps", ref_cal_logps,
                      "the calibration samples were scored on different batches by the policy and the reference.")
    _check_positive(fn, "beta", beta)
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"{fn}: `alpha` should be a finite number >= 0, got {alpha!r}. The sign comes "
                         "from `mode`, not from alpha.")
    if mode not in VPO_MODES:
        raise ValueError(f"{fn}: `mode` should be one of {sorted(VPO_MODES)}, got {mode!r}.")
    losses, chosen, rejected = _dpo_terms(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                          ref_rejected_logps, beta)
    regulariser = VPO_MODES[mode] * alpha * beta * (policy_cal_logps - ref_cal_logps.detach()).mean()
    loss = losses.mean() + regulariser
    _check_loss(fn, loss)
    return loss, chosen.detach(), rejected.detach(), regulariser.detach()


def xpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             policy_refsample_logps, beta=0.1, alpha=1e-5):
    """XPO's loss as TRL's XPOTrainer computed it up to TRL 1.13 (Xie et al. 2024, arXiv 2405.21046).

    policy_chosen_logps, ..., ref_rejected_logps: (B,) as in ``dpo_loss``; in XPO each pair is
                     one policy sample and one reference sample, ranked by a judge
    policy_refsample_logps: (B,) summed log pi_theta(y_ref|x) of the REFERENCE's sample of each
                     prompt, with gradient
    beta: DPO's beta;  alpha: the exploration bonus (TRL's default 1e-5)

        loss = mean_i [ -log sigmoid(beta h_i) + alpha * log pi_theta(y_ref,i | x_i) ]

    Minimising alpha * log pi_theta(y_ref) pushes the reference's samples down: VPO online
    with pi_cal = pi_ref and alpha_VPO = alpha / beta has the same gradient (``vpo_loss``);
    XPO's term is the summed log-prob itself, not a log-ratio, so it is not 0 at step 0.

    Returns (loss, chosen_rewards, rejected_rewards, bonus), the bonus alpha *
    mean log pi_theta(y_ref) detached. Step 0: the DPO part is ln 2; bonus = alpha *
    mean log pi_ref(y_ref) (negative).
    """
    fn = "xpo_loss"
    _check_dpo_inputs(fn, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    _check_float(fn, "policy_refsample_logps", policy_refsample_logps, ndim=1, expected="(B,)")
    _check_finite(fn, "policy_refsample_logps", policy_refsample_logps)
    _check_positive(fn, "beta", beta)
    losses, chosen, rejected = _dpo_terms(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                          ref_rejected_logps, beta)
    bonus = alpha * policy_refsample_logps
    loss = (losses + bonus).mean() if bonus.shape == losses.shape else losses.mean() + bonus.mean()
    _check_loss(fn, loss)
    return loss, chosen.detach(), rejected.detach(), bonus.mean().detach()
