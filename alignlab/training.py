"""The one training loop every method shares, its plumbing, and the history it logs.

A method contributes a ``step_fn(step) -> dict`` that does one update and returns its own
metrics; everything around the loss is written once, here:

1. **The update**: ``make_optimizer`` (AdamW), the two schedules (``cosine_schedule``,
   ``warmup_then_decay``) and ``optimizer_step`` (zero-grad, backward, clip, step, schedule;
   it returns the ``grad_norm`` every method logs).
2. **Batches**: ``epochs`` (minibatches of indices, a fresh permutation each epoch) and
   ``cycle`` (consecutive slices of a list, starting over at the end).
3. **The reference**: ``check_trainable_copy`` (the policy is a trainable copy, the
   reference is frozen).
4. **The loop**: ``train`` runs ``step_fn`` with a progress bar, checks the loss is finite,
   and evaluates the model with an evaluator (the shared ``Evaluator`` for a policy, any
   ``model -> dict`` for a reward model) at step 0, every ``eval_every`` steps and at the end,
   so every method's curves are comparable. ``History`` holds what it logs.
5. **Where the time goes**: ``train`` marks its "training" and "evaluation" phases for
   ``alignlab.timing`` (``with timing() as t:``), which the benchmark reads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from .metrics import SHARED
from .timing import _TIMINGS, Timings, phase, timing  # noqa: F401 (re-exported)

# ---------------------------------------------------------------------------
# 1. The update
# ---------------------------------------------------------------------------


def _parameters(params):
    return params.parameters() if isinstance(params, torch.nn.Module) else params


def make_optimizer(params, lr: float, weight_decay: float = 0.0,
                   betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW, the optimiser of every method.

    ``params``: a model, an iterable of its tensors, or param groups (dicts with their own
    ``lr``, as ``methods.rl.make_optimizer`` builds for the policy and its critic).
    ``weight_decay`` is 0 unless asked (AdamW's own default is 0.01).
    """
    return torch.optim.AdamW(_parameters(params), lr=lr, weight_decay=weight_decay, betas=betas)


def cosine_schedule(opt, steps: int):
    """Linear warm-up over the first 5% of ``steps``, then cosine decay to 0 at ``steps``
    (HF's ``get_cosine_schedule_with_warmup``): pretraining, SFT and the reward model."""
    return get_cosine_schedule_with_warmup(opt, max(1, steps // 20), steps)


def warmup_then_decay(opt, warmup: int, steps: int):
    """Linear warm-up over ``warmup`` steps, then linear decay to 0 at ``steps`` (TRL's default).

    The multiplier of step s (0-based) is min((s + 1) / warmup, (steps - s) / (steps - warmup + 1)).
    """
    w = max(1, warmup)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / w, max(0.0, (steps - s) / max(1, steps - w + 1))))


def optimizer_step(loss: torch.Tensor, opt, params, max_norm: float, sched=None) -> float:
    """One update on ``loss``: zero the gradients, backpropagate, clip the global gradient norm
    of ``params`` (a model or its tensors) to ``max_norm``, step ``opt`` and, if given, the
    learning-rate schedule ``sched``.

    Returns the gradient norm BEFORE clipping (the ``grad_norm`` every method logs).
    """
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(_parameters(params), max_norm)
    opt.step()
    if sched is not None:
        sched.step()
    return float(norm)


# ---------------------------------------------------------------------------
# 2. Batches
# ---------------------------------------------------------------------------


def permutation(n: int, rng=None) -> list[int]:
    """A random order of range(n) drawn from ``rng``: a ``torch.Generator`` (``torch.randperm``),
    a ``numpy.random.Generator`` (its ``permutation``) or None (torch's global generator)."""
    if isinstance(rng, np.random.Generator):
        return rng.permutation(n).tolist()
    return torch.randperm(n, generator=rng).tolist()


def epochs(n: int, batch_size: int, rng=0, drop_last: bool = True,
           lengths=None, group: int = 50) -> Iterator[list[int]]:
    """Endless minibatches of row indices into ``n`` rows, epoch after epoch.

    Each epoch draws a fresh ``permutation`` of range(n) from ``rng`` (a seed for a new
    ``torch.Generator``, a ``torch.Generator``, a ``numpy.random.Generator``, or None for
    torch's global one) when it starts, and cuts it into consecutive slices of
    ``batch_size``; ``drop_last`` drops the shorter last slice, so every batch is full.

    ``lengths``: per row, its length in tokens. Then each epoch groups rows of similar
    length (less padding to compute; HF Trainer's "group by length"): the permutation is
    cut into spans of ``group`` minibatches, each span sorted by length and cut into
    minibatches, and the minibatches of the epoch come in a second random order.
    """
    if batch_size < 1 or n < (batch_size if drop_last else 1):
        raise ValueError(f"epochs: cannot cut {n} rows into batches of {batch_size}"
                         f"{' (drop_last needs n >= batch_size)' if drop_last else ''}")
    gen = torch.Generator().manual_seed(rng) if isinstance(rng, int) else rng
    while True:
        order = permutation(n, gen)
        if lengths is None:
            batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        else:
            span, batches = batch_size * group, []
            for s in range(0, n, span):
                chunk = sorted(order[s:s + span], key=lambda i: lengths[i])
                batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
            # served last-first: the order the reward model has always been trained in
            batches = [batches[k] for k in reversed(permutation(len(batches), gen))]
        yield from (b for b in batches if len(b) == batch_size or not drop_last)


def cycle(items, batch_size: int, step: int):
    """The slice of ``items`` for 1-based ``step``: consecutive slices of ``batch_size``,
    starting over after the last full one (a shorter remainder is never used)."""
    n_batches = len(items) // batch_size
    if n_batches < 1:
        raise ValueError(f"cycle: need at least batch_size={batch_size} items, got {len(items)}")
    i = ((step - 1) % n_batches) * batch_size
    return items[i:i + batch_size]


# ---------------------------------------------------------------------------
# 3. The reference
# ---------------------------------------------------------------------------


def check_trainable_copy(policy, ref, who: str = "train") -> None:
    """Check that ``policy`` is a trainable copy of the frozen reference ``ref``, and set both up.

    ``policy`` (a causal LM, or a ``PolicyWithValue`` whose ``.lm`` is one) must not be
    ``ref`` itself, or the reference would move with it. ``ref`` goes to eval mode (its
    log-probs are only ever computed under ``torch.no_grad``); ``policy`` is made trainable
    (a deepcopy of a frozen model is frozen too) and put in train mode.
    """
    if policy is ref or getattr(policy, "lm", None) is ref:
        raise ValueError(f"{who}: `policy` and `ref` are the same object; the policy must be a "
                         "copy (copy.deepcopy(ref)), or the reference would move with it")
    ref.eval()
    policy.requires_grad_(True)
    policy.train()


# ---------------------------------------------------------------------------
# 4. The loop and its history
# ---------------------------------------------------------------------------


CHECKPOINT_EXTRAS = ("gold_reward_ci", "win_rate_ci", "length", "perplexity", "kl_estimate", "n")
"""Keys a checkpoint (``History.checkpoints``) carries besides the shared metrics, when logged."""


class History:
    """Rows of metrics keyed by step; ``series(name)`` gives a curve to plot."""

    def __init__(self, name: str = "run"):
        self.name = name
        self.rows: dict[int, dict] = {}

    def log(self, step: int, **metrics) -> None:
        self.rows.setdefault(int(step), {}).update(
            {k: float(v) for k, v in metrics.items() if v is not None})

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of ``key`` over training, for the steps that logged it."""
        steps = [s for s in sorted(self.rows) if key in self.rows[s]]
        return steps, [self.rows[s][key] for s in steps]

    def last(self, key: str) -> float:
        """The most recent value of ``key``."""
        steps, values = self.series(key)
        if not values:
            raise KeyError(f"History {self.name!r} has no metric {key!r}; it has "
                           f"{sorted({k for r in self.rows.values() for k in r})}")
        return values[-1]

    def final(self, keys=SHARED) -> dict:
        """The last value of each shared metric (``metrics.SHARED``), rounded for a table, plus
        the confidence-interval half-widths of the last evaluation when it has them."""
        out = {k: round(self.last(k), 4) for k in keys}
        last = next((self.rows[s] for s in sorted(self.rows, reverse=True) if keys[0] in self.rows[s]), {})
        out.update({k: round(last[k], 4) for k in ("gold_reward_ci", "win_rate_ci") if k in last and k not in out})
        return out

    def checkpoints(self, keys=SHARED) -> list[dict]:
        """Every evaluation of the run: ``{"step": s, **shared metrics, **CHECKPOINT_EXTRAS}``
        for each step that logged all of ``keys`` (what ``run --json`` reports as ``evals``:
        the points of lecture 09's reward-KL frontier), rounded to 4 decimals."""
        points = []
        for s in sorted(self.rows):
            row = self.rows[s]
            if all(k in row for k in keys):
                points.append({"step": s, **{k: round(row[k], 4) for k in (*keys, *CHECKPOINT_EXTRAS)
                                             if k in row}})
        return points


def train(model, step_fn: Callable[[int], dict], n_steps: int, evaluator=None,
          eval_every: int = 10, history: History | None = None, desc: str = "train",
          progress: bool = True, eval_at_start: bool = True) -> History:
    """Run ``step_fn`` for steps 1..n_steps, evaluating ``model`` along the way; return the History.

    ``evaluator``: None, or any callable ``evaluator(model) -> dict`` of metrics: the shared
    ``evaluation.Evaluator`` for a policy (pass the causal LM, e.g. ``policy.lm``), the
    held-out metrics for a reward model. It runs at step 0 (unless ``eval_at_start`` is
    False), every ``eval_every`` steps and at the last step; ``model`` is handed back to
    ``step_fn`` in the train/eval mode it was in.
    """
    history = history or History(desc)

    def evaluate(step: int) -> dict:
        was_training = model.training
        with phase("evaluation"):
            row = evaluator(model)
        model.train(was_training)
        history.log(step, **row)
        return row

    if evaluator is not None and eval_at_start:
        evaluate(0)
    bar = tqdm(range(1, n_steps + 1), desc=desc, disable=not progress)
    for step in bar:
        start = time.perf_counter()
        with phase("training"):
            metrics = step_fn(step) or {}
        for t in _TIMINGS:
            t.steps.append(time.perf_counter() - start)
        loss = metrics.get("loss")
        if loss is not None and not math.isfinite(loss):
            raise FloatingPointError(
                f"{desc}: the loss became {loss} at step {step}. Likely causes: a learning "
                "rate too high, log-probs of -inf (a token the model gives probability 0), "
                "or NaN inputs. The last finite metrics are in the history.")
        history.log(step, **metrics)
        if evaluator is not None and (step % eval_every == 0 or step == n_steps):
            row = evaluate(step)
            bar.set_postfix({k: f"{row[k]:.3f}" for k in ("gold_reward", "kl") if k in row})
    return history
