"""A learned judge: a small model that reads two reviews and says which one the gold judge prefers.

The course's stand-in for **LLM-as-a-judge** (Zheng et al. 2023, "Judging LLM-as-a-judge with
MT-Bench and Chatbot Arena", arXiv:2306.05685). A reward model scores each answer on its own;
a judge reads the prompt and *both* answers in one context and gives a verdict:

    <bos> prompt completion_A <eos> prompt completion_B <eos>   ->   logit of P(A preferred to B)

The model (``PairJudge``) is the SFT transformer with a linear head over the concatenated
hidden states at the two ``<eos>`` tokens, [h_A; h_B] (h_B has read A too: the model is causal),
trained with the binary cross-entropy of the gold judge's verdicts on pairs of grammar
reviews, each pair shown in a random order.

Reading both answers in one context has a price: nothing in the model forces
J(A, B) = 1 - J(B, A), so the verdict can depend on which answer comes first (Zheng et al.
section 3.3, *position bias*). ``swap_test`` measures it by asking twice, once in each order
(``swap_stats`` turns the two verdicts into numbers); ``symmetric`` is the usual fix, the mean
of the two orders.

    pairs = judge_pairs(2048, "train"); referee = new_judge(sft, tok, n_layer=1)
    train_judge(referee, tok, pairs, JudgeConfig())
    swap_test(referee, tok, judge_pairs(512, "eval", seed=1))
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import world
from .sampling import Batch, encode, last_token_index, position_ids
from .training import History, cosine_schedule, epochs, make_optimizer, optimizer_step, train


@dataclass
class JudgeConfig:
    """Settings of the learned judge's training (seconds on a laptop CPU)."""

    steps: int = 200
    """Optimiser steps."""
    batch_size: int = 32
    """Pairs per step."""
    lr: float = 3e-3
    """Peak AdamW learning rate (5% warm-up, then cosine decay)."""
    seed: int = 0
    """Seeds the minibatch order and the order of each pair (``new_judge`` seeds the head)."""
    winner_first: float = 0.5
    """Probability that a training pair is shown with the gold judge's winner first: 0.5 is a
    random order; 1.0 is the leak of data stored as chosen-then-rejected and never shuffled."""


# ---------------------------------------------------------------------------
# 1. Data: pairs of reviews with the gold judge's verdict
# ---------------------------------------------------------------------------

def judge_pairs(n: int, split: str = "train", seed: int = 0) -> dict[str, list]:
    """``n`` pairs of grammar reviews for one prompt each, with their gold scores.

    Prompts come from the ``split`` openings; the two completions are fresh grammar draws (after
    the subject the grammar does not depend on the opening, so both are valid answers). Pairs that
    the gold judge scores exactly equal are skipped (they have no verdict). Returns a dict of
    lists: ``prompt``, ``a``, ``b``, ``gold_a``, ``gold_b``.
    """
    rng = random.Random(f"judge-{split}-{seed}")
    prompts = world.make_prompts(4 * n, split, seed)
    out = {"prompt": [], "a": [], "b": [], "gold_a": [], "gold_b": []}
    for p in prompts:
        a, b = (world.split_review(world.sample_review(rng))[1] for _ in range(2))
        g_a, g_b = world.gold_reward(p, a), world.gold_reward(p, b)
        if g_a != g_b:
            for key, value in zip(out, (p, a, b, g_a, g_b)):
                out[key].append(value)
            if len(out["prompt"]) == n:
                return out
    raise ValueError(f"judge_pairs: found only {len(out['prompt'])} untied pairs for n={n}")


def encode_pairs(tok, prompts, first, second, device=None) -> Batch:
    """``<bos> prompt first <eos> prompt second <eos>`` rows, left-padded (a ``sampling.Batch``)."""
    texts = [f"{x} {tok.eos_token} {p} {y}" for p, x, y in zip(prompts, first, second)]
    return encode(tok, list(prompts), texts, device=device)


# ---------------------------------------------------------------------------
# 2. The model and its verdicts
# ---------------------------------------------------------------------------

class PairJudge(torch.nn.Module):
    """A transformer trunk and a linear head on [h at the first <eos>; h at the last token]."""

    def __init__(self, transformer, eos_token_id: int):
        super().__init__()
        self.transformer, self.eos_token_id = transformer, eos_token_id
        self.head = torch.nn.Linear(2 * transformer.config.n_embd, 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        """(B,) logit of P(first preferred to second) for rows of ``encode_pairs``."""
        ids, mask = batch.input_ids, batch.attention_mask
        hidden = self.transformer(input_ids=ids, attention_mask=mask,
                                  position_ids=position_ids(mask)).last_hidden_state
        rows = torch.arange(len(ids), device=ids.device)
        end_a = (ids == self.eos_token_id).long().argmax(-1)  # the first <eos>: the end of A
        h = torch.cat([hidden[rows, end_a], hidden[rows, last_token_index(mask)]], -1)
        return self.head(h).squeeze(-1)


def new_judge(sft, tok, seed: int = 0, n_layer: int = 0) -> PairJudge:
    """A judge initialised from the SFT model: a copy of its transformer (its first ``n_layer``
    blocks; 0 keeps all) plus a fresh head (normal, std 0.02, from ``seed``), on the SFT model's
    device, in train mode."""
    trunk = copy.deepcopy(sft.transformer)
    if n_layer:
        trunk.h = trunk.h[:n_layer]
        trunk.config.n_layer = n_layer
    judge = PairJudge(trunk, tok.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.nn.init.normal_(judge.head.weight, std=0.02)
        torch.nn.init.zeros_(judge.head.bias)
    return judge.to(next(sft.parameters()).device).train()


def logits(judge, tok, prompts, first, second) -> torch.Tensor:
    """(N,) logit of P(first preferred to second), with gradients."""
    return judge(encode_pairs(tok, prompts, first, second, device=next(judge.parameters()).device))


@torch.no_grad()
def p_first(judge, tok, prompts, first, second, batch_size: int = 512) -> torch.Tensor:
    """(N,) the judge's P(first preferred to second), in eval mode, in chunks."""
    was_training = judge.training
    judge.eval()
    out = torch.cat([torch.sigmoid(logits(judge, tok, prompts[i:i + batch_size],
                                          first[i:i + batch_size], second[i:i + batch_size])).cpu()
                     for i in range(0, len(prompts), batch_size)])
    judge.train(was_training)
    return out


def symmetric(judge, tok, prompts, a, b) -> torch.Tensor:
    """(N,) P(a preferred to b) averaged over both orders: (J(a, b) + 1 - J(b, a)) / 2."""
    return (p_first(judge, tok, prompts, a, b) + 1 - p_first(judge, tok, prompts, b, a)) / 2


# ---------------------------------------------------------------------------
# 3. Training
# ---------------------------------------------------------------------------

def train_judge(judge, tok, pairs: dict, config: JudgeConfig | None = None,
                progress: bool = True) -> History:
    """Train ``judge`` in place on ``pairs`` (``judge_pairs``) to predict the gold verdict.

    Each step takes a minibatch of pairs, shows each with the gold winner first with probability
    ``config.winner_first`` (a coin per pair; 1/2: a random order) and minimises the binary
    cross-entropy of "the first is the gold judge's choice". Logs ``loss``, ``grad_norm`` and
    ``accuracy`` (the minibatch's verdicts that match the gold judge's).
    """
    config = config or JudgeConfig()
    n = len(pairs["prompt"])
    batches = epochs(n, min(config.batch_size, n), config.seed)
    coins = torch.Generator().manual_seed(config.seed + 1)
    opt = make_optimizer(judge, config.lr)
    sched = cosine_schedule(opt, config.steps)
    judge.train()

    def step_fn(step: int) -> dict:
        idx = next(batches)
        winner_first = torch.rand(len(idx), generator=coins) < config.winner_first
        a_wins = [pairs["gold_a"][i] > pairs["gold_b"][i] for i in idx]
        a_first = [bool(w) == bool(a) for w, a in zip(winner_first.tolist(), a_wins)]
        first = [pairs["a" if f else "b"][i] for i, f in zip(idx, a_first)]
        second = [pairs["b" if f else "a"][i] for i, f in zip(idx, a_first)]
        z = logits(judge, tok, [pairs["prompt"][i] for i in idx], first, second)
        label = winner_first.float().to(z.device)
        loss = F.binary_cross_entropy_with_logits(z, label)
        grad_norm = optimizer_step(loss, opt, judge, 1.0, sched)
        return {"loss": loss.item(), "grad_norm": grad_norm,
                "accuracy": ((z > 0).float() == label).float().mean().item()}

    history = train(judge, step_fn, config.steps, history=History("judge"), desc="judge",
                    progress=progress)
    judge.eval()
    return history


# ---------------------------------------------------------------------------
# 4. Against the gold judge, and the swap test
# ---------------------------------------------------------------------------

def swap_test(judge, tok, pairs: dict, min_gap: float = 0.2) -> dict:
    """Ask the judge about each pair twice, in both orders, and compare with the gold judge:
    ``swap_stats`` of J(a, b) and J(b, a) (two batched passes over ``pairs``)."""
    prompts, a, b = pairs["prompt"], pairs["a"], pairs["b"]
    return swap_stats(p_first(judge, tok, prompts, a, b), p_first(judge, tok, prompts, b, a),
                      pairs, min_gap)


def swap_stats(p_ab: torch.Tensor, p_ba: torch.Tensor, pairs: dict, min_gap: float = 0.2) -> dict:
    """The swap test's numbers from the two verdicts of each pair.

    ``p_ab``: (N,) J(a, b), the judge's P(a preferred to b) with a shown first; ``p_ba``: (N,)
    J(b, a), with b shown first; ``pairs``: the ``judge_pairs`` they answer (for the gold scores).

    * ``agreement``: fraction of pairs where J(a, b)'s verdict (> 1/2) matches the gold judge's;
      ``agreement_swapped`` the same asked as J(b, a); ``agreement_symmetric`` with the mean of
      the two orders (``symmetric``); ``agreement_clear``: ``agreement`` on the pairs whose gold
      scores differ by more than ``min_gap``, ``agreement_close`` on the others.
    * ``p_first``: mean of J over both orders, (J(a, b) + J(b, a)) / 2 averaged over pairs;
      exactly 1/2 for a judge without position bias, above 1/2 for one that prefers the first.
    * ``consistent``: fraction of pairs whose winner does not change with the order (the verdict
      flips when the answers are swapped); ``first_both`` / ``second_both``: fractions where the
      first (second) position wins in both orders, whichever answer sits there.
      ``consistent_clear`` / ``consistent_close``: ``consistent`` on the two kinds of pairs.
    """
    p_ab, p_ba = torch.as_tensor(p_ab, dtype=torch.float), torch.as_tensor(p_ba, dtype=torch.float)
    g_a, g_b = torch.tensor(pairs["gold_a"]), torch.tensor(pairs["gold_b"])
    if not p_ab.shape == p_ba.shape == g_a.shape:
        raise ValueError(f"swap_stats: p_ab {tuple(p_ab.shape)}, p_ba {tuple(p_ba.shape)} and the "
                         f"{len(g_a)} pairs must match, one verdict per pair and order")
    gold, clear = g_a > g_b, (g_a - g_b).abs() > min_gap
    v_ab, v_ba = p_ab > 0.5, p_ba > 0.5  # "a wins" asked first; "b wins" asked second
    consistent = v_ab != v_ba

    def frac(x, where=None):
        x = x.float() if where is None else x[where].float()
        return float(x.mean()) if len(x) else float("nan")

    return {
        "pairs": len(g_a), "clear_pairs": int(clear.sum()),
        "agreement": frac(v_ab == gold), "agreement_swapped": frac(~v_ba == gold),
        "agreement_symmetric": frac(((p_ab + 1 - p_ba) / 2 > 0.5) == gold),
        "agreement_clear": frac(v_ab == gold, clear), "agreement_close": frac(v_ab == gold, ~clear),
        "p_first": float(((p_ab + p_ba) / 2).mean()),
        "consistent": frac(consistent), "first_both": frac(v_ab & v_ba),
        "second_both": frac(~v_ab & ~v_ba),
        "consistent_clear": frac(consistent, clear), "consistent_close": frac(consistent, ~clear),
    }
