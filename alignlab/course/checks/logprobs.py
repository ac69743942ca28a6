"""00 log-probabilities from logits: ``token_logprobs`` (shift, log-softmax, gather, mask) and
``sequence_logprobs`` (the sum over the completion, not the mean).

The reference is the library's own path, ``alignlab.sampling``: its ``token_logprobs`` runs on
a stand-in model whose forward returns the test's logits, and ``sequence_logprobs`` sums them
over a ``Batch``'s completion mask. Conventions (those of the library): column ``t`` of the
(B, T) output holds log pi(input_ids[t] | input_ids[:t]); column 0 is 0 (nothing predicts the
first token); ``mask`` is aligned with ``input_ids`` (1 on the completion tokens).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F

from ... import sampling
from .harness import _expect, _Fail, _grad_case, _mask, _randn, exercise

SET = "00_logprobs"

_ALIGN = ("Return one log-prob per token, shape (B, T) like `input_ids`: column t holds "
          "log pi(input_ids[:, t] | input_ids[:, :t]) and column 0 (the first token, which nothing "
          "predicts) is 0.")


def _stand_in(logits):
    """A "model" whose forward returns ``logits``, so the library's code runs on them unchanged."""
    return lambda **inputs: SimpleNamespace(logits=logits)


def _lib_token_logprobs(logits, ids):
    """(B, T) unmasked log-probs from ``alignlab.sampling.token_logprobs`` (column 0 is 0)."""
    return sampling.token_logprobs(_stand_in(logits), ids, torch.ones_like(ids))


def _token_ref(logits, ids, mask):
    lp = _lib_token_logprobs(logits, ids)
    return torch.where(mask.bool(), lp, torch.zeros_like(lp))


def _token_mistakes(logits, ids, mask):
    """Typical mistakes of ``token_logprobs``, each with its hint."""
    x = logits.detach().float()
    m = mask.to(x.dtype)

    def gather(table, targets):
        return table.gather(-1, targets[..., None]).squeeze(-1)

    def front(lp):  # (B, T-1) -> (B, T), the library's alignment
        return F.pad(lp, (1, 0))

    logp = F.log_softmax(x, dim=-1)
    shifted = gather(logp[:, :-1], ids[:, 1:])
    return [
        (lambda: gather(logp, ids) * m,
         "no shift: the logits at column t are the model's prediction for the NEXT token (t + 1), so "
         "token t's log-prob comes from the logits at column t - 1."),
        (lambda: front(gather(logp[:, 1:], ids[:, :-1])) * m,
         "shifted the wrong way: the logits at column t predict token t + 1 (logits[:, :-1] go with "
         "input_ids[:, 1:])."),
        (lambda: F.pad(shifted, (0, 1)) * m,
         "off by one column: the padding goes at the FRONT (column 0, the first token, has no "
         "prediction), so that column t holds token t's log-prob."),
        (lambda: front(shifted * mask[:, :-1].to(x.dtype)),
         "the mask is applied one column off: `mask` is aligned with `input_ids` (token t), so it goes "
         "with the targets input_ids[:, 1:], i.e. mask[:, 1:] before padding (or the whole mask after)."),
        (lambda: front(gather(x[:, :-1], ids[:, 1:])) * m,
         "these are raw logits, not log-probabilities: normalise over the vocabulary first (log-softmax)."),
        (lambda: front(gather(torch.softmax(x, -1)[:, :-1], ids[:, 1:])) * m,
         "these are probabilities, not LOG-probabilities: use the log-softmax."),
        (lambda: front(gather(F.log_softmax(x, dim=1)[:, :-1], ids[:, 1:])) * m,
         "the softmax runs over the wrong dimension: normalise over the vocabulary (the last one, dim=-1), "
         "not over the positions."),
        (lambda: -front(shifted) * m,
         "wrong sign: that is the negative log-likelihood (the cross-entropy); return log pi, which is <= 0."),
        (lambda: front(shifted),
         "the mask is ignored: positions with mask == 0 (the prompt and the padding) must be 0."),
    ]


def _targets(B, T, V, seed):
    return torch.randint(3, V, (B, T), generator=torch.Generator().manual_seed(seed))


@exercise(SET, "token_logprobs")
def _token_cases(fn):
    def case(logits, ids, mask, *, grad=False):
        def run():
            want = _token_ref(logits, ids, mask)
            x = logits.clone().requires_grad_(True) if grad else logits.clone()
            got = fn(x, ids.clone(), mask.clone())
            if grad and isinstance(got, torch.Tensor) and not got.requires_grad:
                raise _Fail("no gradient reaches the logits: the log-probs are what the losses "
                            "differentiate, so do not .detach() them, call .item() or run under "
                            "torch.no_grad().")
            _expect(got, want, "the token log-probs", _token_mistakes(logits, ids, mask), _ALIGN,
                    nonfinite="-inf or NaN: exp of a large logit overflows, or a small probability "
                              "underflows to 0 and log(0) = -inf. log(softmax(x)) is not safe: use "
                              "F.log_softmax, which never takes the log of 0 (and mask with torch.where "
                              "or a multiplication only once the values are finite).")
        return run

    V = 11
    B, T = 4, 9
    left = _mask(B, T, [(5, 9), (3, 9), (6, 9), (2, 9)])          # prompt, then the completion to the end
    ragged = _mask(B, T, [(3, 6), (5, 9), (2, 4), (4, 8)])        # right padding too (Batch.concat)
    big = _randn(2, 6, V, seed=3) * 200.0
    ids_big = _targets(2, 6, V, seed=4)
    ids_big[:, 1:] = big[:, :-1].argmin(-1)                      # the least likely token: exp underflows
    return [
        ("no padding: B = 2, T = 5, vocabulary of 7, the completion after a 2-token prompt",
         case(_randn(2, 5, 7, seed=0), _targets(2, 5, 7, seed=1), _mask(2, 5, [(2, 5), (2, 5)]))),
        ("left-padded batch, prompts of different lengths, integer (long) mask as `encode` gives",
         case(_randn(B, T, V, seed=5, scale=3), _targets(B, T, V, seed=6), left.long())),
        ("right padding after the completion (rows of different widths, stacked)",
         case(_randn(B, T, V, seed=7, scale=3), _targets(B, T, V, seed=8), ragged)),
        ("extreme logits (|logit| ~ 500): no overflow, no log(0)",
         case(big, ids_big, _mask(2, 6, [(1, 6), (3, 6)]))),
        ("a batch of one, a one-token completion", case(_randn(1, 3, V, seed=9), _targets(1, 3, V, seed=10),
                                                        _mask(1, 3, [(2, 3)]).bool())),
        ("the gradient reaches the logits",
         case(_randn(3, 6, V, seed=11), _targets(3, 6, V, seed=12), _mask(3, 6, [(2, 6), (4, 6), (1, 5)]),
              grad=True)),
    ]


# ---------------------------------------------------------------------------
# sequence_logprobs
# ---------------------------------------------------------------------------

_SEQ_SHAPE = "One log-prob per sequence: shape (B,), summed over dim -1 (the positions)."
_MEAN = ("you averaged over the completion's tokens: log pi(y|x) is the SUM of its token log-probs (the "
         "log of the product of the conditional probabilities, by the chain rule). The mean is a "
         "length-normalised score, not a log-probability: a loss fed with it (DPO, KTO) optimises "
         "something else, and no check on those losses can tell, since their inputs arrive already summed.")


def _seq_inputs(B, T, V, spans, seed):
    """(token log-probs as the library computes them, unmasked: the prompt's are real numbers; mask; Batch)."""
    logits = _randn(B, T, V, seed=seed, scale=2)
    ids = _targets(B, T, V, seed=seed + 1)
    mask = _mask(B, T, spans).long()
    lp = _lib_token_logprobs(logits, ids)
    batch = sampling.Batch(ids, torch.ones_like(ids), mask, [""] * B, [""] * B, [True] * B)
    want = sampling.sequence_logprobs(_stand_in(logits), batch)
    return lp, mask, want


def _seq_ref(lp, mask):
    return (lp * mask.to(lp.dtype)).sum(-1)


def _seq_mistakes(lp, mask):
    m = mask.to(lp.dtype)
    return [
        (lambda: (lp * m).sum(-1) / m.sum(-1), _MEAN),
        (lambda: (lp * m).mean(-1), "you took .mean(-1), which divides by T (every column, padding "
                                    "included): log pi(y|x) is the SUM over the completion's tokens."),
        (lambda: lp.sum(-1), "the mask is ignored: the log-probs of the prompt (and of the padding) must not "
                             "count; sum only where mask == 1."),
    ]


@exercise(SET, "sequence_logprobs")
def _seq_cases(fn):
    def case(lp, mask, want):
        def run():
            got = fn(lp.clone(), mask.clone())
            _expect(got, want, "the sequence log-probs", _seq_mistakes(lp, mask), _SEQ_SHAPE)
        return run

    spans = [(3, 8), (5, 8), (6, 7), (2, 5)]
    one = _seq_inputs(1, 6, 9, [(2, 6)], seed=40)
    grad = _grad_case(fn, _seq_ref, one[:2], [(0, "token_logps", True)], inputs="token_logps")
    return [
        ("completions of different lengths (4, 3, 1 and 3 tokens)", case(*_seq_inputs(4, 8, 9, spans, seed=20))),
        ("prompt tokens carry real log-probs: only the completion counts",
         case(*_seq_inputs(3, 10, 9, [(6, 10), (2, 10), (8, 10)], seed=30))),
        ("right padding after the completion",
         case(*_seq_inputs(3, 7, 9, [(1, 3), (2, 7), (4, 6)], seed=35))),
        ("a batch of one: the value", case(*one)),
        ("a batch of one: the gradient is 1 on each completion token, 0 elsewhere", grad),
    ]
