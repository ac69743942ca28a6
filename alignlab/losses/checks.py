"""Argument checks shared by every loss in this package.

Each one raises ValueError naming the function, the argument, what was expected, what
came, and the most likely cause (a list instead of a tensor, token ids instead of
log-probs, a mask of the wrong length, NaN from a diverged run). They return nothing,
except ``_check_mask``, which returns the mask as bool.
"""

import math

import torch


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


def _check_vectors(fn, name_a, a, name_b, b, cause, expected="(B,)"):
    """Two 1-D float tensors (`expected` their shape), finite, of the same shape: e.g. a pair of log-probs."""
    _check_float(fn, name_a, a, ndim=1, expected=expected)
    _check_float(fn, name_b, b, ndim=1, expected=expected)
    _check_finite(fn, name_a, a)
    _check_finite(fn, name_b, b)
    _check_same_shape(fn, name_a, a, name_b, b, cause)


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
