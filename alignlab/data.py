"""Annotators: the gold judge turned into the data that methods train on.

* ``annotate_pairs``: a noisy human picks one of two completions with the
  Bradley-Terry probability P(a > b) = sigmoid((g_a - g_b) / temperature),
  where g is the gold reward. ``temperature -> 0`` is a perfect annotator;
  a large temperature is a coin flip. Output columns follow TRL:
  ``prompt``, ``chosen``, ``rejected`` (plus the gold scores, for analysis).
* ``annotate_binary``: thumbs-up / thumbs-down for one completion, desirable
  with probability sigmoid((g - threshold) / temperature). Columns follow TRL's
  unpaired format: ``prompt``, ``completion``, ``label`` (True = desirable).

``validate_preferences`` checks a dataset before training and says exactly
what is wrong with it.
"""

from __future__ import annotations

import numpy as np
from datasets import Dataset

from . import world
from .sampling import sample

PAIRED_COLUMNS = ("prompt", "chosen", "rejected")
UNPAIRED_COLUMNS = ("prompt", "completion", "label")


def bt_probability(g_a, g_b, temperature: float):
    """P(a preferred to b) under Bradley-Terry with gold rewards scaled by 1/temperature."""
    diff = np.asarray(g_a, dtype=float) - np.asarray(g_b, dtype=float)
    if temperature <= 0:
        return np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
    return 1.0 / (1.0 + np.exp(-diff / temperature))


def annotate_pairs(prompts, completions_a, completions_b, temperature: float = 0.1,
                   seed: int = 0, finished_a=None, finished_b=None) -> Dataset:
    """Preference pairs labelled by a Bradley-Terry annotator with noise ``temperature``."""
    g_a = world.gold_rewards(prompts, completions_a, finished_a)
    g_b = world.gold_rewards(prompts, completions_b, finished_b)
    p = bt_probability(g_a, g_b, temperature)
    a_wins = np.random.default_rng(seed).random(len(p)) < p
    rows = {"prompt": list(prompts), "chosen": [], "rejected": [], "gold_chosen": [],
            "gold_rejected": []}
    for win, ca, cb, ga, gb in zip(a_wins, completions_a, completions_b, g_a, g_b):
        rows["chosen"].append(ca if win else cb)
        rows["rejected"].append(cb if win else ca)
        rows["gold_chosen"].append(ga if win else gb)
        rows["gold_rejected"].append(gb if win else ga)
    return Dataset.from_dict(rows)


def annotate_graded(prompts, completions_a, completions_b, temperature: float = 0.1,
                    seed: int = 0, thresholds=(0.2, 0.5), finished_a=None,
                    finished_b=None) -> Dataset:
    """``annotate_pairs`` plus a ``grade``: how much better the chosen completion looked.

    The annotator perceives the difference d = (g_a - g_b) + temperature * L, L a standard
    logistic draw, and picks a when d > 0: P(a) = sigmoid((g_a - g_b) / temperature), the
    Bradley-Terry annotator, with the SAME draws as ``annotate_pairs(..., seed)`` (same
    chosen and rejected). The grade reads the perceived gap |d| on a nuanced scale:
    1 = slightly better (|d| <= thresholds[0]), 2 = better, 3 = much better (|d| > thresholds[1]).
    """
    if len(thresholds) != 2 or not 0 <= thresholds[0] <= thresholds[1]:
        raise ValueError(f"annotate_graded: thresholds must be two increasing gaps (slightly | "
                         f"better | much better), got {thresholds}")
    g_a = np.asarray(world.gold_rewards(prompts, completions_a, finished_a), dtype=float)
    g_b = np.asarray(world.gold_rewards(prompts, completions_b, finished_b), dtype=float)
    u = np.random.default_rng(seed).random(len(g_a))  # the draws annotate_pairs compares with P(a)
    with np.errstate(divide="ignore"):
        noise = temperature * np.log1p(-u) - temperature * np.log(u) if temperature > 0 else 0.0
    perceived = np.abs(g_a - g_b + noise)  # d > 0 exactly when u < P(a): the same choice
    grade = 1 + (perceived > thresholds[0]).astype(int) + (perceived > thresholds[1]).astype(int)
    ds = annotate_pairs(prompts, completions_a, completions_b, temperature, seed, finished_a,
                        finished_b)
    return ds.add_column("grade", [int(g) for g in grade])


def annotate_binary(prompts, completions, temperature: float = 0.1, threshold: float = 0.0,
                    seed: int = 0, finished=None) -> Dataset:
    """Thumbs-up/down labels: desirable with probability sigmoid((g - threshold)/temperature)."""
    g = world.gold_rewards(prompts, completions, finished)
    p = bt_probability(g, [threshold] * len(g), temperature)
    label = np.random.default_rng(seed).random(len(p)) < p
    return Dataset.from_dict({"prompt": list(prompts), "completion": list(completions),
                              "label": [bool(x) for x in label], "gold": g})


def sample_pairs(model, tokenizer, prompts, temperature: float = 0.1, seed: int = 0,
                 max_new_tokens: int = 32) -> Dataset:
    """Two samples from ``model`` per prompt, labelled by a noisy BT annotator."""
    a = sample(model, tokenizer, prompts, max_new_tokens, seed=seed)
    b = sample(model, tokenizer, prompts, max_new_tokens, seed=seed + 1)
    return annotate_pairs(prompts, a.completions, b.completions, temperature, seed,
                          a.finished, b.finished)


def validate_preferences(ds, kind: str = "paired"):
    """Raise ``ValueError`` naming the problem if ``ds`` is not usable training data.

    ``kind="paired"``: columns prompt/chosen/rejected, all non-empty strings.
    ``kind="unpaired"``: columns prompt/completion (non-empty strings)/label (bool).
    Returns ``ds`` unchanged when it is fine.
    """
    if kind not in ("paired", "unpaired"):
        raise ValueError(f"validate_preferences: kind must be 'paired' or 'unpaired', got {kind!r}")
    need = PAIRED_COLUMNS if kind == "paired" else UNPAIRED_COLUMNS
    original = ds
    if hasattr(ds, "to_dict"):  # one Arrow -> Python conversion; per-item access is slow
        ds = ds.to_dict()
    have = list(ds.keys())
    missing = [c for c in need if c not in have]
    if missing:
        raise ValueError(f"{kind} preference data is missing column(s) {missing}; it has "
                         f"{have}. TRL's {kind} format needs {list(need)}.")
    if len(ds[need[0]]) == 0:
        raise ValueError(f"{kind} preference data is empty: there is nothing to train on")
    text_cols = need[:-1] if kind == "unpaired" else need
    for col in text_cols:
        for i, value in enumerate(ds[col]):
            if not isinstance(value, str):
                raise ValueError(f"{kind} preference data: row {i}, column {col!r} must be a "
                                 f"string, got {type(value).__name__} ({value!r})")
            if col != "prompt" and not value.strip():
                raise ValueError(f"{kind} preference data: row {i}, column {col!r} is an empty "
                                 "completion; a completion needs at least one word")
    if kind == "unpaired":
        for i, value in enumerate(ds["label"]):
            if not isinstance(value, (bool, np.bool_)) and value not in (0, 1):
                raise ValueError(f"unpaired preference data: row {i}, column 'label' must be "
                                 f"True/False (desirable or not), got {value!r}")
    if kind == "paired":
        same = sum(c == r for c, r in zip(ds["chosen"], ds["rejected"]))
        if same == len(ds["chosen"]):
            raise ValueError("paired preference data: every chosen completion equals its "
                             "rejected one, so there is no preference to learn")
    return original

