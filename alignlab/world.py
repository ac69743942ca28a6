"""The review world: a tiny language of movie reviews with a known truth.

Everything the course trains on is generated here, offline, from a seed:

* ``GRAMMAR`` is a weighted context-free grammar, stored as plain data, so that
  "is this text valid?" has an exact answer (``is_valid``).
* ``sample_review`` draws reviews from it; ``make_prompts`` lists the review
  openings ("the acting", "i thought the plot") that every policy completes.
* ``gold_reward`` is the simulated human: VADER sentiment (a real, third-party
  analyser) when the review is valid, and the worst score, -1, when it is not.
  That is what makes "great great great great" score badly even though a
  sentiment-only scorer loves it.

Text is always lower-case words separated by single spaces, punctuation
included as words (``"the plot was dull , but the music was great ."``), so the
word-level tokenizer round-trips it exactly.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections.abc import Iterable, Sequence

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

# ---------------------------------------------------------------------------
# 1. The grammar, as data.
#    Non-terminals are UPPER CASE; anything else is a word. Each rule is a list
#    of (weight, expansion) alternatives; weights only matter for sampling.
# ---------------------------------------------------------------------------

LEXICON: dict[str, list[str]] = {
    "NOUN": ["acting", "plot", "music", "film", "movie", "ending", "cast", "script",
             "story", "dialogue", "pacing", "soundtrack", "direction", "humor", "lead",
             "editing"],
    "POS_ADJ": ["good", "great", "wonderful", "excellent", "brilliant", "fun", "charming",
                "beautiful", "superb", "lovely", "enjoyable", "clever", "moving", "delightful"],
    "NEG_ADJ": ["bad", "boring", "dull", "awful", "terrible", "weak", "poor", "bland",
                "messy", "painful", "horrible", "lame", "dreadful", "clumsy"],
    "NEU_ADJ": ["okay", "fine", "long", "short", "simple", "loud", "quiet", "slow",
                "familiar", "average"],
    "INTENS": ["very", "really", "quite", "so", "truly", "rather", "extremely"],
    "VERB": ["was", "felt", "seemed"],
    "CONJ": ["but", "and", "although", "while"],
    "ADVERB": ["overall", "still", "sadly", "luckily", "honestly"],
}

# Review openers that end a prompt just before the subject's verb phrase.
OPENERS: list[str] = ["", "i thought", "i felt", "honestly ,", "to be fair ,", "i think",
                      "in my opinion", "overall"]

GRAMMAR: dict[str, list[tuple[float, list[str]]]] = {
    # A full review: a first sentence, then up to two more.
    "REVIEW": [(0.55, ["FIRST"]), (0.30, ["FIRST", "SENT"]), (0.15, ["FIRST", "SENT", "SENT"])],
    "FIRST": [(1.0, ["OPEN", "CLAUSE", "."]), (0.4, ["OPEN", "CLAUSE", "CONJ", "CLAUSE", "."]),
              (0.3, ["OPEN", "CLAUSE", ",", "CONJ", "CLAUSE", "."])],
    "OPEN": [(4.0, [])] + [(1.0, o.split()) for o in OPENERS if o],
    "SENT": [(1.0, ["CLAUSE", "."]), (1.0, ["ADVERB", "CLAUSE", "."]), (0.6, ["CLOSER", "."])],
    "CLOSER": [(1.0, ["i", "would", "recommend", "it"]), (1.0, ["i", "would", "not", "recommend", "it"]),
               (1.0, ["i", "loved", "it"]), (1.0, ["i", "hated", "it"]),
               (1.0, ["what", "a", "waste", "of", "time"]), (1.0, ["it", "was", "worth", "watching"])],
    "CLAUSE": [(1.0, ["SUBJ", "VERB", "PRED"])],
    "SUBJ": [(1.0, ["the", "NOUN"])],
    "PRED": [(1.0, ["ADJ"]), (0.6, ["INTENS", "ADJ"]), (0.3, ["not", "ADJ"]),
             (0.2, ["not", "INTENS", "ADJ"])],
    "ADJ": [(1.0, ["POS_ADJ"]), (1.0, ["NEG_ADJ"]), (0.5, ["NEU_ADJ"])],
}
for _name, _words in LEXICON.items():
    GRAMMAR[_name] = [(1.0, [w]) for w in _words]

START = "REVIEW"


def fingerprint() -> str:
    """A short hash of the grammar: part of every cache key, so editing the world retrains."""
    blob = json.dumps([GRAMMAR, OPENERS], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def vocabulary() -> list[str]:
    """Every word the grammar can produce, sorted (the tokenizer's word list)."""
    words = {w for rules in GRAMMAR.values() for _, exp in rules for w in exp
             if w not in GRAMMAR}
    return sorted(words)


# ---------------------------------------------------------------------------
# 2. Sampling reviews and prompts.
# ---------------------------------------------------------------------------

def _expand(symbol: str, rng: random.Random, out: list[str]) -> None:
    if symbol not in GRAMMAR:
        out.append(symbol)
        return
    weights, expansions = zip(*GRAMMAR[symbol])
    for s in rng.choices(expansions, weights=weights)[0]:
        _expand(s, rng, out)


def sample_review(rng: random.Random) -> str:
    """One review drawn from the grammar, e.g. ``"i thought the plot was dull ."``."""
    out: list[str] = []
    _expand(START, rng, out)
    return " ".join(out)


def make_corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` reviews drawn from the grammar with a seeded generator."""
    rng = random.Random(seed)
    return [sample_review(rng) for _ in range(n)]


def all_prompts() -> list[str]:
    """Every review opening: an opener and a subject, e.g. ``"i thought the plot"``."""
    return [f"{o} the {n}".strip() for o in OPENERS for n in LEXICON["NOUN"]]


def _is_heldout(prompt: str) -> bool:
    # A stable 25% split that does not depend on Python's hash seed.
    return hashlib.sha1(prompt.encode()).digest()[0] < 64


def make_prompts(n: int, split: str = "train", seed: int = 0) -> list[str]:
    """``n`` prompts drawn with replacement from the ``train`` or held-out ``eval`` openings."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    pool = [p for p in all_prompts() if _is_heldout(p) == (split == "eval")]
    rng = random.Random(f"{split}-{seed}")
    return [rng.choice(pool) for _ in range(n)]


def split_review(review: str) -> tuple[str, str]:
    """Split a review into (prompt, completion) right after its first subject."""
    words = review.split()
    i = words.index("the") + 2  # opener words, "the", NOUN
    return " ".join(words[:i]), " ".join(words[i:])


# ---------------------------------------------------------------------------
# 3. The fluency rule: an exact recogniser for the grammar.
# ---------------------------------------------------------------------------

def _ends(symbol: str, words: Sequence[str], i: int, memo: dict) -> frozenset[int]:
    """All positions j such that ``symbol`` derives ``words[i:j]``."""
    key = (symbol, i)
    if key in memo:
        return memo[key]
    if symbol not in GRAMMAR:
        result = frozenset([i + 1]) if i < len(words) and words[i] == symbol else frozenset()
    else:
        found: set[int] = set()
        for _, expansion in GRAMMAR[symbol]:
            positions = {i}
            for s in expansion:
                positions = {j for p in positions for j in _ends(s, words, p, memo)}
                if not positions:
                    break
            found |= positions
        result = frozenset(found)
    memo[key] = result
    return result


@functools.lru_cache(maxsize=200_000)
def is_valid(text: str) -> bool:
    """True when ``text`` is exactly one complete review of the grammar."""
    words = text.split()
    if not words or len(words) > 60:
        return False
    return len(words) in _ends(START, words, 0, {})


# ---------------------------------------------------------------------------
# 4. The gold judge: VADER sentiment, gated by fluency.
# ---------------------------------------------------------------------------

INVALID_REWARD = -1.0


@functools.lru_cache(maxsize=1)
def _vader() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


@functools.lru_cache(maxsize=200_000)
def sentiment(text: str) -> float:
    """VADER's compound sentiment score of ``text``, in [-1, 1]."""
    return float(_vader().polarity_scores(text)["compound"])


def join(prompt: str, completion: str) -> str:
    """The full review text of a prompt and its completion."""
    return f"{prompt} {completion}".strip()


def gold_reward(prompt: str, completion: str, finished: bool = True) -> float:
    """The simulated human's score of one completion, in [-1, 1].

    ``sentiment(review)`` if the review is valid under the grammar and finished
    (the model emitted its end token), else ``INVALID_REWARD`` (-1).
    """
    text = join(prompt, completion)
    if not finished or not is_valid(text):
        return INVALID_REWARD
    return sentiment(text)


def gold_rewards(prompts: Iterable[str], completions: Iterable[str],
                 finished: Iterable[bool] | None = None) -> list[float]:
    """``gold_reward`` for each (prompt, completion) pair."""
    prompts, completions = list(prompts), list(completions)
    if len(prompts) != len(completions):
        raise ValueError(f"gold_rewards: got {len(prompts)} prompts but {len(completions)} "
                         "completions; they must pair up one to one")
    finished = [True] * len(prompts) if finished is None else list(finished)
    return [gold_reward(p, c, f) for p, c, f in zip(prompts, completions, finished)]
