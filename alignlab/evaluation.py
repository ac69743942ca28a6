"""One evaluation for every method: gold reward, KL to the reference, win-rate, perplexity.

``Evaluator(reference, tokenizer)`` fixes a set of held-out prompts and one
reference sample per prompt. Calling it on a policy samples one completion
per prompt (same seed every time, so curves are not jittered by new draws)
and returns:

* ``gold_reward``: mean gold-judge score of the policy's samples.
* ``kl``: sequence-level KL(pi || pi_ref), estimated from the policy's own
  samples y ~ pi as mean_y sum_t [log pi(y_t|.) - log pi_ref(y_t|.)] (the
  unbiased "k1" estimator; its single samples can be negative, its mean not).
* ``win_rate``: fraction of prompts where the gold judge prefers the policy's
  sample to the reference's (ties, e.g. both invalid, count 1/2).
* ``valid_rate``: fraction of samples that are finished, valid reviews.
* ``gold_reward_ci`` / ``win_rate_ci``: half-widths of 95 % confidence intervals for the
  two means above, over the held-out prompts (``CI_METHOD``: mean +- 1.96 standard errors of
  the per-prompt values; per prompt the win-rate's value is 1, 1/2 or 0). They measure the
  evaluation's sampling noise for *this* policy; the spread over training seeds is a
  separate, usually larger, uncertainty (the sweeps measure it by running seeds).
* ``length``: mean completion length in words.
* ``perplexity``: exp of the mean negative log-likelihood per completion token of a fixed
  set of held-out reference reviews (``reference_reviews``: one fresh grammar review per
  held-out prompt, ``<eos>`` included; prompt tokens are not scored) under the policy, at
  temperature 1. It asks how well the policy still models average reviews, text it did not
  write (lecture 00 computes it by hand; ``docs/metrics.md`` says what healthy looks like).
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from . import world
from .models import get_profile
from .sampling import Batch, encode, sample, sequence_logprobs, token_logprobs

KL_ESTIMATOR = "k1: mean over y~π of Σ_t log π(y_t)/π_ref(y_t)"
CI_METHOD = "95% normal interval over held-out prompts: mean ± 1.96 · s / √n (s: sample std, ddof 1)"


def ci95(values) -> float:
    """Half-width of the 95 % normal confidence interval of the mean of ``values``
    (1.96 s / sqrt(n), s with ddof 1; 0 for fewer than two values). ``CI_METHOD``."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return 0.0
    return float(1.96 * v.std(ddof=1) / math.sqrt(v.size))


def win_rate(rewards: list[float], ref_rewards: list[float]) -> float:
    """Fraction of pairs where ``rewards`` beats ``ref_rewards`` (ties count 1/2)."""
    if len(rewards) != len(ref_rewards) or not rewards:
        raise ValueError(f"win_rate: need two equal, non-empty lists, got {len(rewards)} "
                         f"and {len(ref_rewards)} rewards")
    return float(np.mean(wins(rewards, ref_rewards)))


def wins(rewards: list[float], ref_rewards: list[float]) -> np.ndarray:
    """Per pair: 1 if ``rewards`` beats ``ref_rewards``, 1/2 for a tie, else 0."""
    a, b = np.asarray(rewards), np.asarray(ref_rewards)
    return (a > b) + 0.5 * (a == b)


def validity(batch: Batch) -> list[bool]:
    """For each sample: is it a finished review that is valid under the grammar?"""
    return [f and world.is_valid(world.join(p, c))
            for p, c, f in zip(batch.prompts, batch.completions, batch.finished)]


def gold_scores(batch: Batch) -> list[float]:
    """The gold judge's score of each sample in ``batch``."""
    return world.gold_rewards(batch.prompts, batch.completions, batch.finished)


def reference_reviews(prompts: list[str], seed: int = 0) -> list[str]:
    """One completion per prompt, from fresh grammar reviews: the held-out references of
    ``perplexity``. After the subject the grammar does not depend on the opening, so
    ``prompt_i + completion_i`` is a draw of a review that opens with ``prompt_i``."""
    rng = random.Random(f"reference-reviews-{seed}")
    return [world.split_review(world.sample_review(rng))[1] for _ in prompts]


@torch.no_grad()
def perplexity(model, batch: Batch) -> float:
    """exp(total NLL / total tokens) over the completion tokens of ``batch`` (``<eos>``
    included) under ``model`` at temperature 1: a token-weighted mean, as corpus perplexity is."""
    was_training = model.training
    model.eval()
    batch = batch.to(next(model.parameters()).device)
    lp = token_logprobs(model, batch.input_ids, batch.attention_mask)
    model.train(was_training)
    mask = batch.completion_mask.to(lp.dtype)
    return math.exp(-(lp * mask).sum().item() / mask.sum().item())


class Evaluator:
    """Scores any policy against the reference on the same held-out prompts.

    ``reference``: the frozen SFT model; ``n_prompts`` defaults to the profile's
    ``eval_prompts``; ``temperature`` is the sampling temperature for both.
    """

    def __init__(self, reference, tokenizer, n_prompts: int | None = None, seed: int = 0,
                 temperature: float = 1.0, max_new_tokens: int | None = None, profile=None):
        profile = get_profile(profile)
        self.reference, self.tokenizer, self.seed = reference, tokenizer, seed
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens or profile.max_new_tokens
        self.prompts = world.make_prompts(n_prompts or profile.eval_prompts, "eval", seed)
        self.ref_batch = self.sample(reference, seed=seed + 10_000)
        self.ref_rewards = gold_scores(self.ref_batch)
        self.reference_completions = reference_reviews(self.prompts, seed)
        self.references = encode(tokenizer, self.prompts, self.reference_completions,
                                 device=next(reference.parameters()).device).trim()
        """The held-out reference reviews (``self.prompts`` + ``self.reference_completions``)
        that ``perplexity`` scores, encoded once."""

    def sample(self, policy, seed: int | None = None) -> Batch:
        """One sample per held-out prompt from ``policy``."""
        return sample(policy, self.tokenizer, self.prompts, self.max_new_tokens,
                      self.temperature, seed=self.seed if seed is None else seed)

    def judge(self, batch: Batch) -> dict:
        """Gold reward, win-rate (each with its 95 % CI half-width), valid rate and length of
        samples for ``self.prompts``."""
        if batch.prompts != self.prompts:
            raise ValueError("Evaluator.judge: the batch must answer the evaluator's own "
                             "prompts, in order (use evaluator.prompts)")
        rewards = gold_scores(batch)
        won = wins(rewards, self.ref_rewards)
        return {
            "gold_reward": float(np.mean(rewards)),
            "gold_reward_ci": ci95(rewards),
            "win_rate": win_rate(rewards, self.ref_rewards),
            "win_rate_ci": ci95(won),
            "valid_rate": float(np.mean(validity(batch))),
            "length": float(np.mean([len(c.split()) for c in batch.completions])),
        }

    @torch.no_grad()
    def kl(self, policy, batch: Batch) -> float:
        """Sequence-level KL(policy || reference) on samples from the policy (k1)."""
        was_training = policy.training
        policy.eval()
        lp = sequence_logprobs(policy, batch, self.temperature)
        lp_ref = sequence_logprobs(self.reference, batch, self.temperature)
        policy.train(was_training)
        kl = (lp - lp_ref).mean().item()
        if not math.isfinite(kl):
            raise FloatingPointError("Evaluator.kl: the KL estimate is not finite; the policy "
                                     "has probably diverged (NaN weights after a NaN loss?)")
        return kl

    def perplexity(self, policy) -> float:
        """Perplexity of the held-out reference reviews (``self.references``) under ``policy``."""
        ppl = perplexity(policy, self.references)
        if not math.isfinite(ppl):
            raise FloatingPointError("Evaluator.perplexity: not finite; the policy gives a "
                                     "reference token probability 0, or its weights are NaN")
        return ppl

    def __call__(self, policy) -> dict:
        """All shared metrics for ``policy`` (a causal LM)."""
        batch = self.sample(policy)
        return {**self.judge(batch), "kl": self.kl(policy, batch), "perplexity": self.perplexity(policy)}
