"""The one training loop every method shares, and the history it logs.

A method contributes a ``step_fn(step) -> dict`` that does one update (sample
or read a batch, compute its loss, step the optimiser) and returns its own
metrics. ``train`` runs it with a progress bar, checks the loss is finite,
and evaluates the policy with the shared ``Evaluator`` at step 0, every
``eval_every`` steps and at the end, so every method's curves are comparable.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm


def warmup_then_decay(opt, warmup: int, steps: int):
    """Linear warm-up over ``warmup`` steps, then linear decay to 0 at ``steps`` (TRL's default).

    The multiplier of step s (0-based) is min((s + 1) / warmup, (steps - s) / (steps - warmup + 1)).
    """
    w = max(1, warmup)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / w, max(0.0, (steps - s) / max(1, steps - w + 1))))


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

    def final(self, keys=("gold_reward", "kl", "win_rate", "valid_rate")) -> dict:
        """The last value of each shared metric, rounded for a table."""
        return {k: round(self.last(k), 4) for k in keys}


def train(policy, step_fn: Callable[[int], dict], n_steps: int, evaluator=None,
          eval_every: int = 10, history: History | None = None, desc: str = "train",
          progress: bool = True) -> History:
    """Run ``step_fn`` for steps 1..n_steps, evaluating ``policy`` along the way."""
    history = history or History(desc)
    if evaluator is not None:
        history.log(0, **evaluator(policy))
    bar = tqdm(range(1, n_steps + 1), desc=desc, disable=not progress)
    for step in bar:
        metrics = step_fn(step) or {}
        loss = metrics.get("loss")
        if loss is not None and not math.isfinite(loss):
            raise FloatingPointError(
                f"{desc}: the loss became {loss} at step {step}. Likely causes: a learning "
                "rate too high, log-probs of -inf (a token the model gives probability 0), "
                "or NaN inputs. The last finite metrics are in the history.")
        history.log(step, **metrics)
        if evaluator is not None and (step % eval_every == 0 or step == n_steps):
            row = evaluator(policy)
            history.log(step, **row)
            bar.set_postfix({k: f"{row[k]:.3f}" for k in ("gold_reward", "kl") if k in row})
    return history
