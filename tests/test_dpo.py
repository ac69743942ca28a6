"""Tests for alignlab.methods.dpo: the derivation on a discrete problem, and DPO on the real GPT-2.

The pure loss (equality with TRL, gradients, step-0 ln 2 on random tensors, finiteness for
huge gaps) is tested in test_losses.py; here: every step of the derivation checked on an
exact discrete problem, DPO recovering the closed-form optimum, the step-0 values on the
real SFT model, and what train_dpo adds around the loss.
"""

import copy
import math

import numpy as np
import pytest
import torch
from datasets import Dataset

from alignlab.config import override
from alignlab.losses import dpo_loss
from alignlab.methods import dpo
from alignlab.sampling import sequence_logprobs

# ---------------------------------------------------------------------------
# The derivation, on a discrete problem (one prompt, six responses)
# ---------------------------------------------------------------------------


@pytest.fixture(params=[(0.5, 0), (0.1, 1), (1.0, 2)], ids=lambda p: f"beta{p[0]}-seed{p[1]}")
def problem(request):
    beta, seed = request.param
    return dpo.discrete_problem(6, beta, seed)


def test_closed_form_optimum_beats_random_distributions(problem):
    pi_star = problem.optimum()
    assert pi_star.sum() == pytest.approx(1.0) and (pi_star > 0).all()
    best = problem.objective(pi_star)
    rng = np.random.default_rng(0)
    others = rng.dirichlet(np.ones(6) * 0.5, size=2000)
    assert max(problem.objective(p) for p in others) < best
    # ... and a small step away from pi* in any direction loses too (it is a maximum)
    for _ in range(20):
        q = pi_star * np.exp(0.05 * rng.normal(size=6))
        assert problem.objective(q / q.sum()) < best


def test_objective_is_beta_log_z_minus_beta_kl_to_optimum(problem):
    """The rewriting step: J(pi) = beta log Z - beta KL(pi || pi*), for every pi."""
    pi_star = problem.optimum()
    rng = np.random.default_rng(1)
    for pi in rng.dirichlet(np.ones(6), size=50):
        kl = float(np.sum(pi * np.log(pi / pi_star)))
        assert problem.objective(pi) == pytest.approx(
            problem.beta * problem.log_partition() - problem.beta * kl, abs=1e-9)
    assert problem.objective(pi_star) == pytest.approx(problem.beta * problem.log_partition())


def test_gradient_ascent_converges_to_the_closed_form(problem):
    path = dpo.gradient_ascent(problem, steps=800, lr=0.1)
    values = [problem.objective(p) for p in path]
    assert max(values) <= problem.objective(problem.optimum()) + 1e-12
    assert dpo.total_variation(path[-1], problem.optimum()) < 1e-3


def test_implicit_reward_is_reward_up_to_a_constant(problem):
    implicit = problem.beta * np.log(problem.optimum() / problem.pi_ref)
    shift = problem.r - implicit
    assert np.allclose(shift, shift[0]) and shift[0] == pytest.approx(problem.beta * problem.log_partition())


def test_partition_function_cancels_in_bradley_terry(problem):
    """sigmoid(r_i - r_j) equals sigmoid of the implicit-reward difference: Z is gone."""
    implicit = problem.beta * np.log(problem.optimum() / problem.pi_ref)
    bt_true = 1 / (1 + np.exp(-(problem.r[:, None] - problem.r[None, :])))
    bt_implicit = 1 / (1 + np.exp(-(implicit[:, None] - implicit[None, :])))
    assert np.allclose(bt_true, bt_implicit, atol=1e-9)


def test_discrete_dpo_loss_is_the_library_dpo_loss():
    """With equal weights on a list of pairs, the weighted discrete loss is losses.dpo_loss."""
    torch.manual_seed(0)
    logits, log_ref = torch.randn(5, dtype=torch.float64), torch.log_softmax(torch.randn(5, dtype=torch.float64), -1)
    pairs = [(0, 1), (2, 4), (3, 0), (1, 2)]
    w = torch.zeros(5, 5, dtype=torch.float64)
    for c, r in pairs:
        w[c, r] = 1.0
    ours = dpo.discrete_dpo_loss(logits, log_ref, w, beta=0.7)
    log_pi = torch.log_softmax(logits, -1)
    c, r = torch.tensor(pairs).T
    theirs, _, _ = dpo_loss(log_pi[c], log_pi[r], log_ref[c], log_ref[r], beta=0.7)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-12)


@pytest.mark.slow  # a few seconds each: exact discrete optimisation
def test_dpo_on_expected_preferences_recovers_the_optimum_exactly(problem):
    out = dpo.discrete_dpo_check(problem, n_pairs=None)
    assert out["tv_start"] > 0.1  # the check is not vacuous: pi_ref is far from pi*
    assert out["tv"] < 1e-3
    assert out["losses"][-1] < out["losses"][0]


@pytest.mark.slow  # a few seconds each: exact discrete optimisation
def test_dpo_on_sampled_preferences_recovers_the_optimum(problem):
    """The issue's tolerance: 200k Bradley-Terry-sampled pairs give TV(pi_dpo, pi*) < 0.02."""
    out = dpo.discrete_dpo_check(problem, n_pairs=200_000, seed=0)
    assert out["tv"] < 0.02, out
    implicit = out["implicit_reward"]
    assert np.ptp((problem.r - implicit)[problem.pi_ref > 0.01]) < 0.1 * np.ptp(problem.r) + 0.05


@pytest.mark.slow  # a few seconds each: exact discrete optimisation
def test_too_few_pairs_is_visibly_worse():
    problem = dpo.discrete_problem(6, 0.5, 0)
    few = dpo.discrete_dpo_check(problem, n_pairs=50, seed=0)["tv"]
    many = dpo.discrete_dpo_check(problem, n_pairs=200_000, seed=0)["tv"]
    assert few > 3 * many


def test_bt_counts_follow_the_bradley_terry_model():
    problem = dpo.discrete_problem(4, 1.0, 3)
    counts = dpo.bt_preference_counts(problem, 100_000, seed=0)
    assert counts.sum() == pytest.approx(100_000) and np.trace(counts) == 0
    expected = dpo.bt_expected_weights(problem) * 100_000
    assert np.allclose(counts, expected, rtol=0.1, atol=60)


def test_discrete_problem_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_responses"):
        dpo.discrete_problem(1)
    with pytest.raises(ValueError, match="beta"):
        dpo.discrete_problem(4, beta=0.0)


# ---------------------------------------------------------------------------
# DPO on the real tiny GPT-2
# ---------------------------------------------------------------------------

PAIRS = Dataset.from_dict({
    "prompt": ["the acting", "i thought the plot", "the music", "honestly , the cast"] * 2,
    "chosen": ["was really wonderful .", "was clever . i loved it .", "was lovely .",
               "seemed great and the ending was superb ."] * 2,
    "rejected": ["was awful .", "was dull , but the music was great .", "felt boring . i hated it .",
                 "seemed bad ."] * 2,
})


def test_step0_on_the_sft_model_gives_ln2_and_zero_margins(sft):
    ref, tok = sft
    policy = copy.deepcopy(ref).eval()
    batch = dpo.encode_pairs(tok, PAIRS["prompt"], PAIRS["chosen"], PAIRS["rejected"])
    with torch.no_grad():
        lp, lp_ref = sequence_logprobs(policy, batch), sequence_logprobs(ref, batch)
    n = len(PAIRS)
    loss, rc, rr = dpo_loss(lp[:n], lp[n:], lp_ref[:n], lp_ref[n:], beta=0.3)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5)
    m = dpo.dpo_metrics(loss, rc, rr, lp[:n], lp[n:])
    assert abs(m["rewards/margins"]) < 1e-5 and abs(m["rewards/chosen"]) < 1e-5
    assert m["rewards/accuracies"] == 0.0  # ties are not counted as correct (as TRL)
    assert m["logps/chosen"] < 0 and m["logps/rejected"] < 0
    # the precomputed reference log-probs agree whatever the batching (left padding handled)
    ref_c, ref_r = dpo.reference_logps(ref, tok, PAIRS, batch_size=3)
    assert torch.allclose(torch.cat([ref_c, ref_r]), lp_ref, atol=1e-4)


def test_completion_logps_sum_and_mean(tiny_lm):
    lm, tok = tiny_lm
    batch = dpo.encode_pairs(tok, PAIRS["prompt"][:2], PAIRS["chosen"][:2], PAIRS["rejected"][:2])
    with torch.no_grad():
        total = sequence_logprobs(lm, batch)
        mean = sequence_logprobs(lm, batch, average=True)
    n_tokens = batch.completion_mask.sum(-1).float()
    assert torch.allclose(mean * n_tokens, total, atol=1e-4)
    # the completion tokens are the words plus <eos>
    words = [len(c.split()) + 1 for c in PAIRS["chosen"][:2] + PAIRS["rejected"][:2]]
    assert n_tokens.tolist() == words


def test_a_few_dpo_steps_raise_the_margin(sft):
    ref, tok = sft
    policy = copy.deepcopy(ref)
    before = torch.cat(dpo.reference_logps(ref, tok, PAIRS))
    config = dpo.DPOConfig(steps=6, batch_size=8, lr=1e-3, beta=0.3)
    history = dpo.train_dpo(policy, ref, tok, PAIRS, config, progress=False)
    steps, margins = history.series("rewards/margins")
    assert steps == list(range(1, 7))
    assert abs(margins[0]) < 1e-5  # step 1 is computed before any update
    assert history.series("loss")[1][0] == pytest.approx(math.log(2), abs=1e-5)
    assert margins[-1] > 0.1 and history.last("loss") < math.log(2)
    assert history.last("rewards/accuracies") == 1.0
    # the reference did not move; the policy did
    assert torch.equal(torch.cat(dpo.reference_logps(ref, tok, PAIRS)), before)
    assert not torch.allclose(torch.cat(dpo.reference_logps(policy, tok, PAIRS)), before, atol=1e-2)


def test_train_dpo_is_repeatable(sft):
    ref, tok = sft
    config = dpo.DPOConfig(steps=3, batch_size=4, seed=5)
    runs = [dpo.train_dpo(copy.deepcopy(ref), ref, tok, PAIRS, config, progress=False).series("loss")
            for _ in range(2)]
    assert runs[0] == runs[1]


def test_train_dpo_errors_teach(sft):
    ref, tok = sft
    with pytest.raises(ValueError, match="copy"):
        dpo.train_dpo(ref, ref, tok, PAIRS, dpo.DPOConfig(steps=1), progress=False)
    bad = Dataset.from_dict({"prompt": ["the acting"], "chosen": ["was great ."]})
    with pytest.raises(ValueError, match="rejected"):
        dpo.train_dpo(copy.deepcopy(ref), ref, tok, bad, dpo.DPOConfig(steps=1), progress=False)


def test_config_profiles_and_overrides():
    quick, full = dpo.DPOConfig.for_profile("quick"), dpo.DPOConfig.for_profile("full")
    assert quick.beta == full.beta and full.steps >= quick.steps and full.n_pairs > quick.n_pairs
    assert quick.sft_weight == 0.0 and full.sft_weight == 1.0  # plain DPO breaks the full-size model
    changed = override(quick, {"beta": "0.05", "average_logps": "true"})
    assert changed.beta == 0.05 and changed.average_logps is True
    with pytest.raises(ValueError, match="valid settings"):
        override(quick, {"betta": "0.1"})


def test_select_rows_matches_a_fresh_encoding(sft):
    """Tokenizing all pairs once and slicing minibatches gives the log-probs of encoding them anew."""
    ref, tok = sft
    full = dpo.encode_pairs(tok, PAIRS["prompt"], PAIRS["chosen"], PAIRS["rejected"])
    idx = [3, 0]
    sub = full.take([3, 0, 8 + 3, 8 + 0]).trim()
    fresh = dpo.encode_pairs(tok, [PAIRS["prompt"][i] for i in idx], [PAIRS["chosen"][i] for i in idx],
                             [PAIRS["rejected"][i] for i in idx])
    assert sub.input_ids.shape[1] <= full.input_ids.shape[1] and sub.completions == fresh.completions
    with torch.no_grad():
        assert torch.allclose(sequence_logprobs(ref, sub), sequence_logprobs(ref, fresh), atol=1e-4)


def test_dpo_step_is_the_one_step_of_dpo_and_the_online_methods(tiny_lm):
    """``dpo_step`` (lecture 06's online DPO, BPO and VPO take it too): a loss returning the loss alone
    takes the same step and logs the same rewards (from their definition); ``calibration="pairs"``
    is offline VPO's step (``vpo_loss`` on the batch's own completions)."""
    from types import SimpleNamespace

    from alignlab.losses import vpo_loss

    lm, tok = tiny_lm
    full = dpo.encode_pairs(tok, PAIRS["prompt"], PAIRS["chosen"], PAIRS["rejected"])
    idx = [3, 0, 5]
    batch = dpo.pair_batch(full, idx, len(PAIRS))
    assert batch.completions == [PAIRS["chosen"][i] for i in idx] + [PAIRS["rejected"][i] for i in idx]
    with torch.no_grad():
        lp = sequence_logprobs(lm, batch)
    rc, rr = lp[:3] - 0.5, lp[3:] + 0.2  # a reference a little off the policy: the rewards are not 0

    def step(config, loss_fn=None, **kw):
        policy = copy.deepcopy(lm)
        opt = torch.optim.SGD(policy.parameters(), lr=0.1)
        stats = dpo.dpo_step(policy, batch, rc, rr, opt, config, None, loss_fn, **kw)
        return stats, torch.cat([p.detach().flatten() for p in policy.parameters()])

    config = dpo.DPOConfig(beta=0.3)
    stats, weights = step(config)
    bare_stats, bare_weights = step(config, lambda *a: dpo_loss(*a)[0])
    assert bare_stats == stats and torch.equal(bare_weights, weights)
    assert stats["rewards/chosen"] == pytest.approx(0.3 * 0.5, abs=1e-5)
    assert stats["rewards/rejected"] == pytest.approx(0.3 * -0.2, abs=1e-5)

    vpo_config = SimpleNamespace(beta=0.3, max_grad_norm=1.0, alpha=0.5, vpo_mode="offline")
    vpo_stats, _ = step(vpo_config, calibration="pairs")
    loss, *_, regulariser = vpo_loss(lp[:3], lp[3:], rc, rr, lp, torch.cat([rc, rr]), 0.3, 0.5, "offline")
    assert vpo_stats["loss"] == pytest.approx(loss.item(), abs=1e-6)
    assert vpo_stats["vpo/regulariser"] == pytest.approx(regulariser.item(), abs=1e-6)
    assert vpo_stats["vpo/regulariser"] == pytest.approx(-0.5 * 0.3 * (3 * 0.5 - 3 * 0.2) / 6, abs=1e-5)
    with pytest.raises(ValueError, match="calibration"):
        step(vpo_config, calibration="pair")
