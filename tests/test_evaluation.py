"""The shared evaluation's perplexity, the learned judge and its swap test, and the SFT step.

Fast tests use an untrained 1-layer GPT-2 (``tiny_lm``); the one that trains a judge uses the
cached SFT model and is marked slow by its fixture.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from alignlab import evaluation, judge, pipeline, world
from alignlab.evaluation import Evaluator
from alignlab.sampling import encode, token_logprobs
from alignlab.training import make_optimizer


@pytest.fixture(scope="module")
def tiny_eval(tiny_lm):
    model, tok = tiny_lm
    return Evaluator(model, tok, n_prompts=12, profile="micro", max_new_tokens=6)


def test_evaluator_reports_perplexity_with_the_other_keys(tiny_lm, tiny_eval):
    model, _ = tiny_lm
    row = tiny_eval(model)
    assert set(row) == {"gold_reward", "gold_reward_ci", "win_rate", "win_rate_ci", "valid_rate", "length", "kl",
                        "perplexity"}
    assert row["kl"] == 0.0 and math.isfinite(row["perplexity"]) and row["perplexity"] > 1
    # the intervals are 1.96 standard errors of the per-prompt values the means average
    batch = tiny_eval.sample(model)
    gold = evaluation.gold_scores(batch)
    won = evaluation.wins(gold, tiny_eval.ref_rewards)
    n = len(gold)
    assert row["gold_reward_ci"] == evaluation.ci95(gold) >= 0
    assert math.isclose(row["win_rate_ci"], 1.96 * float(np.std(won, ddof=1)) / math.sqrt(n))


def test_perplexity_is_exp_of_the_mean_nll_of_completion_tokens(tiny_lm, tiny_eval):
    model, tok = tiny_lm
    refs = encode(tok, tiny_eval.prompts, tiny_eval.reference_completions)
    with torch.no_grad():
        lp = token_logprobs(model, refs.input_ids, refs.attention_mask)
    mask = refs.completion_mask.float()
    assert mask.sum() == sum(len(c.split()) + 1 for c in tiny_eval.reference_completions)  # + <eos>
    expected = math.exp(-(lp * mask).sum().item() / mask.sum().item())
    assert math.isclose(tiny_eval.perplexity(model), expected, rel_tol=1e-5)
    # prompt tokens are not scored: the per-token mean over all real tokens differs
    with_prompt = (refs.attention_mask * (refs.input_ids != tok.bos_token_id)).float()
    assert not math.isclose(expected, math.exp(-(lp * with_prompt).sum().item() / with_prompt.sum().item()),
                            rel_tol=1e-3)


def test_a_uniform_model_has_perplexity_equal_to_the_vocabulary(tiny_lm, tiny_eval):
    model, _ = tiny_lm
    uniform = copy.deepcopy(model)
    with torch.no_grad():
        uniform.transformer.wte.weight.zero_()
        uniform.lm_head.weight.zero_()  # every logit is 0
    assert math.isclose(tiny_eval.perplexity(uniform), uniform.config.vocab_size, rel_tol=1e-5)


def test_perplexity_leaves_the_model_in_its_mode_and_raises_on_nan(tiny_lm, tiny_eval):
    model, _ = tiny_lm
    model.train()
    tiny_eval.perplexity(model)
    assert model.training
    model.eval()
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.lm_head.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="perplexity"):
        tiny_eval.perplexity(broken)


def test_reference_reviews_are_fixed_valid_and_one_per_prompt():
    prompts = world.make_prompts(50, "eval", seed=0)
    refs = evaluation.reference_reviews(prompts, seed=0)
    assert refs == evaluation.reference_reviews(prompts, seed=0)
    assert refs != evaluation.reference_reviews(prompts, seed=1)
    assert len(refs) == len(prompts) and all(world.is_valid(world.join(p, c)) for p, c in zip(prompts, refs))


def test_sft_step_moves_a_copy_as_the_written_step_does(tiny_lm):
    model, tok = tiny_lm
    prompts, completions = pipeline.sft_pairs(8, seed=0)
    mine, lib = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    opt_m, opt_l = make_optimizer(mine, 1e-3), make_optimizer(lib, 1e-3)
    batch = encode(tok, prompts, completions)
    lp = token_logprobs(mine, batch.input_ids, batch.attention_mask)
    loss = -(lp * batch.completion_mask).sum() / batch.completion_mask.sum()
    opt_m.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(mine.parameters(), 1.0)
    opt_m.step()
    out = pipeline.sft_step(lib, batch, opt_l)
    assert math.isclose(out["loss"], loss.item(), rel_tol=1e-6) and out["grad_norm"] > 0
    assert max((p - q).abs().max().item() for p, q in zip(lib.parameters(), model.parameters())) > 1e-4
    assert all(torch.allclose(p, q, rtol=0, atol=1e-7) for p, q in zip(mine.parameters(), lib.parameters()))


# ---------------------------------------------------------------------------
# The learned judge
# ---------------------------------------------------------------------------


def test_judge_pairs_have_a_gold_verdict_and_a_split():
    pairs = judge.judge_pairs(64, "eval", seed=3)
    assert all(len(v) == 64 for v in pairs.values())
    assert all(g_a != g_b for g_a, g_b in zip(pairs["gold_a"], pairs["gold_b"]))
    assert set(pairs["prompt"]) <= set(world.make_prompts(4000, "eval"))
    assert pairs == judge.judge_pairs(64, "eval", seed=3)


def test_encode_pairs_reads_prompt_a_eos_prompt_b_eos(tiny_lm):
    _, tok = tiny_lm
    b = judge.encode_pairs(tok, ["the plot", "i thought the acting"], ["was great .", "was dull ."],
                           ["was bad .", "felt really fun ."])
    row = b.input_ids[0][b.attention_mask[0].bool()].tolist()
    assert row[0] == tok.bos_token_id and row.count(tok.eos_token_id) == 2 and row[-1] == tok.eos_token_id
    assert tok.decode(row[1:-1]).split() == "the plot was great . <eos> the plot was bad .".split()


class _Constant(torch.nn.Module):
    """A fake judge that always gives the first answer the logit ``z``."""

    def __init__(self, z):
        super().__init__()
        self.z = torch.nn.Parameter(torch.tensor(float(z)))

    def forward(self, batch):
        return self.z.expand(len(batch))


def test_swap_test_on_a_judge_that_always_picks_the_first_answer(tiny_lm):
    _, tok = tiny_lm
    pairs = judge.judge_pairs(40, "eval", seed=0)
    out = judge.swap_test(_Constant(3.0), tok, pairs)
    a_wins = sum(g_a > g_b for g_a, g_b in zip(pairs["gold_a"], pairs["gold_b"])) / 40
    assert out["consistent"] == 0.0 and out["first_both"] == 1.0 and out["second_both"] == 0.0
    assert math.isclose(out["p_first"], 1 / (1 + math.exp(-3.0)), rel_tol=1e-6)
    assert math.isclose(out["agreement"], a_wins, rel_tol=1e-6)
    assert math.isclose(out["agreement_swapped"], 1 - a_wins, rel_tol=1e-6)
    sym = judge.symmetric(_Constant(3.0), tok, pairs["prompt"], pairs["a"], pairs["b"])
    assert torch.allclose(sym, torch.full_like(sym, 0.5))  # averaging the orders removes the bias


def test_a_trained_judge_beats_a_coin_and_its_average_is_order_free(sft):
    model, tok = sft
    referee = judge.new_judge(model, tok, n_layer=1)
    assert len(referee.transformer.h) == 1 and len(model.transformer.h) == model.config.n_layer
    history = judge.train_judge(referee, tok, judge.judge_pairs(1024, "train"),
                                judge.JudgeConfig(steps=80), progress=False)
    assert history.last("loss") < math.log(2)
    test = judge.judge_pairs(256, "eval", seed=1)
    out = judge.swap_test(referee, tok, test)
    assert out["agreement_clear"] > 0.6
    s_ab = judge.symmetric(referee, tok, test["prompt"], test["a"], test["b"])
    s_ba = judge.symmetric(referee, tok, test["prompt"], test["b"], test["a"])
    assert torch.allclose(s_ab + s_ba, torch.ones_like(s_ab), atol=1e-6)
