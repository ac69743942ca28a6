"""Masked reductions over padded (B, T) batches: sum, mean and whitening.

Only positions with mask == 1 count. Padding is replaced by 0 with torch.where (never
multiplied by 0), so NaN or inf sitting in padding cannot leak into a result.
"""

import torch

from .checks import _check_finite, _check_float, _check_mask


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
