"""Lecture 08's pure functions: best-of-n from a pool, the KL estimate, Gao et al.'s fits, ensembles,
and the smaller reward model."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from alignlab.methods import bon, rm
from alignlab.studies import overopt


def brute_force_bon(selector, values, n):
    """Mean over prompts of the exact average, over every n-subset of the pool, of the value of
    the subset's best sample (by selector)."""
    out = []
    for s, v in zip(selector.tolist(), values.tolist()):
        subsets = list(itertools.combinations(range(len(s)), n))
        out.append(np.mean([v[max(c, key=lambda i: s[i])] for c in subsets]))
    return float(np.mean(out))


@pytest.mark.parametrize("m,n", [(1, 1), (5, 1), (6, 3), (7, 7), (8, 2)])
def test_bon_weights_sum_to_one_and_match_counting(m, n):
    w = overopt.bon_weights(m, n)
    assert w.shape == (m,) and abs(float(w.sum()) - 1) < 1e-6 and (w >= 0).all()
    counts = torch.zeros(m)
    for c in itertools.combinations(range(m), n):
        counts[max(c)] += 1
    torch.testing.assert_close(w, counts / counts.sum(), atol=1e-6, rtol=0)


def test_bon_estimate_equals_brute_force_on_small_pools():
    g = torch.Generator().manual_seed(0)
    selector, values = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    for n in (1, 2, 3, 5, 8):
        assert abs(overopt.bon_estimate(selector, values, n) - brute_force_bon(selector, values, n)) < 1e-5


def test_bon_estimate_agrees_with_resampling():
    """Draw n samples with replacement... no: draw n-subsets at random and average their winners."""
    g = torch.Generator().manual_seed(1)
    selector, values = torch.randn(3, 12, generator=g), torch.randn(3, 12, generator=g)
    n, draws = 4, 20_000
    rng = np.random.default_rng(0)
    est = []
    for p in range(3):
        idx = np.array([rng.choice(12, n, replace=False) for _ in range(draws)])
        best = idx[np.arange(draws), selector[p].numpy()[idx].argmax(1)]
        est.append(values[p].numpy()[best].mean())
    assert abs(overopt.bon_estimate(selector, values, n) - float(np.mean(est))) < 0.02


def test_bon_kl_estimate_is_zero_at_one_near_the_formula_and_lower_with_ties():
    g = torch.Generator().manual_seed(0)
    distinct = torch.randn(8, 4096, generator=g)
    assert abs(overopt.bon_kl_estimate(distinct, 1)) < 1e-9
    for n in (2, 4, 16):
        assert abs(overopt.bon_kl_estimate(distinct, n) - bon.bon_kl(n)) < 0.02
    assert abs(overopt.bon_kl_estimate(distinct[:, :64], 64) - math.log(64)) < 1e-6   # n = m: log m
    tied = distinct[:, :256].clone()
    tied[:, :128] = 10.0                                # half the pool is one completion, the best
    assert overopt.bon_kl_estimate(tied, 16) <= math.log(2) + 1e-9 < bon.bon_kl(16)
    # by hand: best-of-2 of the pool [0, 1, 1] is always a 1 (mass 2/3 in the pool)
    assert abs(overopt.bon_kl_estimate(torch.tensor([[0.0, 1.0, 1.0]]), 2) - math.log(3 / 2)) < 1e-9


@pytest.mark.parametrize("noise", [0.0, 0.002])
def test_fits_recover_known_coefficients(noise):
    rng = np.random.default_rng(0)
    d = np.linspace(0, 3, 25)
    R = overopt.bon_form(d, 0.8, 0.2) + noise * rng.standard_normal(25)
    f = overopt.fit_bon(d, R)
    assert abs(f["alpha"] - 0.8) < 0.02 and abs(f["beta"] - 0.2) < 0.02 and f["r2"] > 0.99
    R = overopt.rl_form(d, 0.5, 0.3) + noise * rng.standard_normal(25)
    f = overopt.fit_rl(d, R)
    assert abs(f["alpha"] - 0.5) < 0.02 and abs(f["beta"] - 0.3) < 0.02 and f["r2"] > 0.99
    assert overopt.rl_form(np.array([0.0]), 0.5, 0.3)[0] == 0.0


def test_fits_reject_bad_input():
    with pytest.raises(ValueError, match="d > 0"):
        overopt.fit_bon([0.0, 0.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="same length"):
        overopt.fit_rl([1.0, 2.0], [1.0])


def test_ensemble_is_the_mean_or_the_min():
    s = torch.tensor([[1.0, -2.0, 3.0], [0.0, 1.0, 1.0], [2.0, 0.0, -1.0]])
    torch.testing.assert_close(overopt.ensemble(s, "mean"), torch.tensor([1.0, -1 / 3, 1.0]))
    torch.testing.assert_close(overopt.ensemble(s, "min"), torch.tensor([0.0, -2.0, -1.0]))
    with pytest.raises(ValueError, match="mean"):
        overopt.ensemble(s, "max")


def test_bon_estimate_checks_shapes():
    with pytest.raises(ValueError, match=r"\(P, m\)"):
        overopt.bon_estimate(torch.zeros(3, 4), torch.zeros(3, 5), 2)
    with pytest.raises(ValueError, match="1 <= n <= m"):
        overopt.bon_weights(4, 5)


def test_smaller_reward_model_keeps_the_first_blocks(tiny_lm):
    lm, tok = tiny_lm
    small = rm.new_reward_model(lm, tok, n_layer=1)
    assert len(small.transformer.h) == 1
    torch.testing.assert_close(small.transformer.h[0].attn.c_attn.weight, lm.transformer.h[0].attn.c_attn.weight)
    with pytest.raises(ValueError, match="n_layer"):
        rm.new_reward_model(lm, tok, n_layer=5)


def test_proxy_configs_differ_only_in_their_overrides_and_keep_the_default_cache_key():
    base = rm.RMConfig.for_profile("quick")
    for name, over in overopt.PROXIES.items():
        cfg = overopt.proxy_config(name, "quick")
        for f in ("lr", "batch_size", "annotator_temperature", "n_eval_pairs", "min_gap"):
            assert getattr(cfg, f) == getattr(base, f), (name, f)
        for k, v in over.items():
            assert getattr(cfg, k) == v
    assert overopt.proxy_config("8192 pairs", "quick") == base        # lecture 01's RM, from its cache
    key = rm.rm_settings("quick", 0, base)["config"]
    small = rm.rm_settings("quick", 0, overopt.proxy_config("2048 pairs, 1 layer", "quick"))["config"]
    assert "n_layer" not in key and small["n_layer"] == 1


def test_proxy_evaluator_adds_the_proxy_score_of_the_same_samples(tiny_lm):
    from alignlab.evaluation import Evaluator

    lm, tok = tiny_lm
    proxy = rm.new_reward_model(lm, tok).eval()
    ev = Evaluator(lm, tok, n_prompts=4, profile="quick", max_new_tokens=4)
    row = overopt.ProxyEvaluator(ev, tok, proxy, {"same": proxy})(lm)
    assert set(ev(lm)) <= set(row) and row["proxy_reward"] == row["proxy/same"]
    batch = ev.sample(lm)
    assert abs(row["proxy_reward"] - float(rm.score_texts(proxy, tok, batch.prompts, batch.completions,
                                                          batch.finished).mean())) < 1e-6
