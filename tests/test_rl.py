"""Tests for alignlab.methods.rl (shared by PG and PPO) and alignlab.methods.pg.

Fast: an untrained 1-layer GPT-2 (``tiny_lm``) and hand-made tensors. What is checked:
the value head starts at exactly 0; ``PolicyWithValue`` gives the same log-probs as
``sampling.token_logprobs`` of its LM on a left-padded batch; the score lands on the last
real completion token whatever the padding; the KL penalty vanishes when policy ==
reference; one REINFORCE / GAE update gives finite gradients that move the weights;
the variance helpers compute what they say; bad reward functions get clear errors.
"""

import copy
import math

import pytest
import torch

from alignlab import world
from alignlab.losses import compute_gae
from alignlab.methods import pg
from alignlab.methods.rl import (
    PolicyWithValue,
    Rollout,
    check_scores,
    gold_reward_fn,
    last_token_index,
    rollout,
    token_rewards,
)
from alignlab.sampling import encode, token_logprobs


def _cfg(**kw):
    return pg.PGConfig(**{**dict(batch_size=6, max_new_tokens=8, steps=2, eval_every=1), **kw})


@pytest.fixture
def policy(tiny_lm):
    torch.manual_seed(0)
    lm, _ = tiny_lm
    return PolicyWithValue(copy.deepcopy(lm))


@pytest.fixture
def batch(tiny_lm):
    _, tok = tiny_lm
    # three rows of different lengths: left padding differs per row
    return encode(tok, ["the acting", "i thought the plot", "the music"],
                  ["was great .", "was dull , but the music was lovely .", "felt long ."])


# ---------------------------------------------------------------- PolicyWithValue

def test_value_head_is_zero_at_init(policy, batch):
    assert torch.count_nonzero(policy.value_head.weight) == 0
    assert torch.count_nonzero(policy.value_head.bias) == 0
    _, values = policy(batch.input_ids, batch.attention_mask)
    assert values.shape == batch.input_ids.shape
    assert torch.count_nonzero(values) == 0


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_match_token_logprobs_left_padded(policy, batch, temperature):
    lp, _ = policy(batch.input_ids, batch.attention_mask, temperature)
    expected = token_logprobs(policy.lm, batch.input_ids, batch.attention_mask, temperature)
    assert lp.shape == expected.shape
    torch.testing.assert_close(lp, expected, atol=1e-5, rtol=1e-5)
    assert (lp[:, 0] == 0).all()
    # and the padded batch agrees with each row alone (position ids handle left padding)
    for i in range(len(batch)):
        n = int(batch.attention_mask[i].sum())
        alone, _ = policy(batch.input_ids[i:i + 1, -n:], batch.attention_mask[i:i + 1, -n:],
                          temperature)
        torch.testing.assert_close(lp[i, -n + 1:], alone[0, 1:], atol=1e-5, rtol=1e-5)


def test_values_are_for_the_state_before_each_action(policy, batch):
    """values[:, t] must use hidden states of tokens < t only (V(s_t), not V(s_{t+1}))."""
    torch.nn.init.normal_(policy.value_head.weight)
    _, v = policy(batch.input_ids, batch.attention_mask)
    ids = batch.input_ids.clone()
    ids[:, -1] = (ids[:, -1] + 1) % policy.lm.config.vocab_size  # change the last action
    _, v2 = policy(ids, batch.attention_mask)
    torch.testing.assert_close(v, v2)  # V(s_T) does not see a_T


def test_separate_critic_trunk_leaves_logprobs_alone(policy, batch):
    sep = PolicyWithValue(policy.lm, value_trunk=copy.deepcopy(policy.lm.transformer))
    lp1, _ = policy(batch.input_ids, batch.attention_mask)
    lp2, v2 = sep(batch.input_ids, batch.attention_mask)
    torch.testing.assert_close(lp1, lp2)
    assert torch.count_nonzero(v2) == 0
    v2.sum().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in sep.lm.parameters())


# ---------------------------------------------------------------- token rewards

def test_score_lands_on_last_real_completion_token():
    # rows: completion in columns 2..5, 3..4 (padding after it), 1..5
    mask = torch.tensor([[0, 0, 1, 1, 1, 1],
                         [0, 0, 0, 1, 1, 0],
                         [0, 1, 1, 1, 1, 1]], dtype=torch.float)
    assert last_token_index(mask).tolist() == [5, 4, 5]
    lp = torch.randn(3, 6)
    r = token_rewards([1.0, 2.0, -3.0], lp, lp.clone(), mask, kl_coef=0.1)
    expected = torch.zeros(3, 6)
    expected[0, 5], expected[1, 4], expected[2, 5] = 1.0, 2.0, -3.0
    torch.testing.assert_close(r, expected)  # policy == reference: no KL penalty at all


def test_kl_penalty_on_every_completion_token():
    mask = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 0]], dtype=torch.float)
    lp, ref = torch.full((2, 4), -1.0), torch.full((2, 4), -1.5)
    r = token_rewards(torch.tensor([0.5, 0.0]), lp, ref, mask, kl_coef=0.2)
    pen = -0.2 * 0.5
    torch.testing.assert_close(r, torch.tensor([[0, pen, pen, pen + 0.5], [0, 0, pen, 0]]))
    assert r.sum().item() == pytest.approx(0.5 + 4 * pen)  # score - beta * sum of k1


def test_rollout_rewards_and_zero_kl_at_start(policy, tiny_lm):
    lm, tok = tiny_lm
    prompts = world.make_prompts(6, "train", 0)
    ro = rollout(policy, lm, tok, prompts, gold_reward_fn, _cfg(kl_coef=0.3), seed=0)
    assert isinstance(ro, Rollout) and len(ro) == 6
    assert ro.kl.abs().max() == 0  # policy == reference
    last = last_token_index(ro.mask)
    rows = torch.arange(6)
    torch.testing.assert_close(ro.rewards[rows, last], ro.scores)
    assert ro.rewards.sum().item() == pytest.approx(ro.scores.sum().item(), abs=1e-5)
    assert (ro.values == 0).all() and (ro.logprobs[ro.mask == 0] == 0).all()


# ---------------------------------------------------------------- errors

def test_reward_fn_errors_are_clear(policy, tiny_lm):
    lm, tok = tiny_lm
    prompts = world.make_prompts(4, "train", 0)
    with pytest.raises(ValueError, match=r"returned 3 scores .* for 4 completions"):
        rollout(policy, lm, tok, prompts, lambda p, c, f: [0.0] * 3, _cfg(), seed=0)
    with pytest.raises(ValueError, match=r"non-finite scores .* positions \[1\]"):
        rollout(policy, lm, tok, prompts, lambda p, c, f: [0.0, math.nan, 0.0, 0.0],
                _cfg(), seed=0)
    with pytest.raises(ValueError, match="list of 2 numbers"):
        check_scores(None, 2)
    with pytest.raises(TypeError, match="PolicyWithValue"):
        rollout(lm, lm, tok, prompts, gold_reward_fn, _cfg(), seed=0)


def test_token_rewards_errors():
    mask = torch.ones(2, 3)
    lp = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="one number per row"):
        token_rewards([1.0, 2.0, 3.0], lp, lp, mask, 0.1)
    with pytest.raises(ValueError, match="NaN/inf at rows \\[0\\]"):
        token_rewards([math.nan, 1.0], lp, lp, mask, 0.1)
    with pytest.raises(ValueError, match="kl_coef"):
        token_rewards([0.0, 1.0], lp, lp, mask, -1.0)
    with pytest.raises(ValueError, match="row 1 has no 1"):
        token_rewards([0.0, 1.0], lp, lp, torch.tensor([[1.0, 1, 1], [0, 0, 0]]), 0.1)
    with pytest.raises(ValueError, match="baseline"):
        pg.PGConfig(baseline="median")


# ---------------------------------------------------------------- pg: advantages and updates

def test_advantages_of_each_baseline():
    mask = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]], dtype=torch.float)
    rewards = torch.tensor([[0, 0.1, 0.2, 1.0], [0, 0, -0.1, -1.0]])
    values = torch.tensor([[0, 0.5, 0.4, 0.3], [0, 0, 0.2, 0.1]])
    ro = Rollout(None, None, None, values, None, rewards, mask)
    g, _ = pg.advantages(ro, "none")
    torch.testing.assert_close(g, torch.tensor([[0, 1.3, 1.2, 1.0], [0, 0, -1.1, -1.0]]))
    a, _ = pg.advantages(ro, "mean")
    b = (1.3 + 1.2 + 1.0 - 1.1 - 1.0) / 5
    torch.testing.assert_close(a, (g - b) * mask)
    for lam in (0.0, 1.0):
        a, ret = pg.advantages(ro, "gae", lam=lam)
        torch.testing.assert_close(a, compute_gae(rewards, values, mask, 1.0, lam)[0])
    a1, _ = pg.advantages(ro, "gae", lam=1.0)
    torch.testing.assert_close(a1, (g - values) * mask)  # lambda = 1: MC return minus value


@pytest.mark.parametrize("baseline", ["none", "mean", "gae"])
def test_one_update_gives_finite_gradients_and_moves_policy(policy, tiny_lm, baseline):
    lm, tok = tiny_lm
    config = _cfg(baseline=baseline, lr=1e-2, value_lr=1e-2)
    ro = rollout(policy, lm, tok, world.make_prompts(6, "train", 1),
                 lambda p, c, f: [float(i % 3 - 1) for i in range(len(p))], config, seed=1)
    parts = pg.pg_losses(policy, ro, config)
    parts["loss"].backward()
    grads = [p.grad for p in policy.lm.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    if baseline == "gae":  # the value head learns from the value loss even at zero init
        assert policy.value_head.weight.grad.abs().sum() > 0
    before = [p.detach().clone() for p in policy.lm.parameters()]
    opt = pg.make_optimizer(policy, config.lr, config.value_lr)
    metrics = pg.pg_step(policy, opt, ro, config)
    assert all(math.isfinite(v) for v in metrics.values())
    assert any((a != b).any() for a, b in zip(before, policy.lm.parameters()))


def test_per_episode_grads_are_linear_in_the_weights(policy, tiny_lm):
    """g_i(G - b) = g_i(G) - b * g_i(1): the identity the baseline argument rests on."""
    lm, tok = tiny_lm
    config = _cfg()
    ro = rollout(policy, lm, tok, world.make_prompts(5, "train", 2), gold_reward_fn, config,
                 seed=2)
    g = pg.returns_to_go(ro.rewards, ro.mask)
    grads = pg.per_episode_grads(policy, ro, {"G": g, "one": ro.mask, "shift": g - 0.3})
    assert grads["G"].shape[0] == 5
    torch.testing.assert_close(grads["shift"], grads["G"] - 0.3 * grads["one"],
                               atol=1e-5, rtol=1e-4)
    x = torch.randn(7, 4)
    assert pg.total_variance(x) == pytest.approx(x.var(0).sum().item(), rel=1e-6)


def test_train_pg_logs_metrics_and_grad_variance(policy, tiny_lm):
    lm, tok = tiny_lm
    config = _cfg(baseline="gae", grad_var_every=1, steps=2)
    h = pg.train_pg(policy, lm, tok, world.make_prompts(12, "train", 3), config,
                    progress=False)
    for key in ("loss", "pg_loss", "vf_loss", "explained_variance", "score", "rollout_kl", "kl_penalty",
                "grad_var_none", "grad_var_mean", "grad_var_value"):
        assert len(h.series(key)[1]) == 2, key
    assert h.series("rollout_kl")[1][0] == 0.0  # step 1: the policy is still the reference


def test_lambda_experiment_limits(policy, tiny_lm):
    """lambda = 0 is deterministic given (s_t, a_t): zero variance; lambda = 1 is noisier."""
    lm, tok = tiny_lm
    torch.nn.init.normal_(policy.value_head.weight, std=0.5)  # a (wrong) critic: TD has a bias
    config = _cfg(max_new_tokens=6, kl_coef=0.1)
    by_length = lambda p, c, f: [float(len(x) % 5) for x in c]  # noqa: E731 (varies)
    res = pg.lambda_experiment(policy, lm, tok, world.make_prompts(3, "train", 4), config,
                               lams=(0.0, 1.0), n_truth=8, n_est=8, reward_fn=by_length,
                               seed=0, progress=False)
    assert res["lams"] == [0.0, 1.0] and res["n_prefixes"] == 3
    assert res["variance"][0] == pytest.approx(0.0, abs=1e-10)
    assert res["variance"][1] > 0.01
    assert all(len(res[k]) == 2 for k in ("bias2", "noise2", "mse"))
    assert res["mse"][1] == pytest.approx(res["bias2"][1] + res["variance"][1])
