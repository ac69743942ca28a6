"""Kahneman-Tversky Optimization (lecture 05): the loss, its reference point z0, the
mismatched pairs z0 is estimated on, and the recommended class weights.

KTO learns from single completions labelled desirable or undesirable, not from pairs.
Step 0 (policy == reference): z0 = 0 and every example's loss is lambda_y / 2.
"""

import torch

from .checks import _check_loss, _check_positive, _check_vectors


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
    _check_vectors(fn, "policy_kl_logps", policy_kl_logps, "ref_kl_logps", ref_kl_logps,
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
    _check_vectors(fn, "policy_logps", policy_logps, "ref_logps", ref_logps,
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
