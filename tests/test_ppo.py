"""Tests for alignlab.methods.ppo on REAL rollouts of a tiny GPT-2.

The pure losses (clip table, gradients, value clipping) and the KL controller's direction
are tested in test_losses.py; here we test what the PPO loop adds around them: old and new
log-probs computed the same way, rewards in the right column, an update that moves the
policy, the adaptive beta, and repeatable runs.
"""

import math

import pytest
import torch

from alignlab import world
from alignlab.methods import ppo
from alignlab.methods.rl import PolicyWithValue, gold_reward_fn, rollout


def _config(**kw):
    base = dict(batch_size=12, minibatch=4, ppo_epochs=2, max_new_tokens=12, steps=2, eval_every=1)
    return ppo.PPOConfig(**{**base, **kw})


def _rollout(lm, tok, config, kl_coef=None, seed=1, policy=None):
    policy = policy or ppo.new_policy(lm)
    prompts = world.make_prompts(config.batch_size, "train", seed)
    ro = rollout(policy, lm, tok, prompts, gold_reward_fn, config, seed=seed, kl_coef=kl_coef)
    return policy, ro


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_first_minibatch_ratio_exactly_one(sft, temperature):
    lm, tok = sft
    config = _config(sampling_temperature=temperature)
    policy, ro = _rollout(lm, tok, config)
    adv, returns = ppo.advantages(ro, config)
    idx = torch.tensor([5, 0, 9, 2])  # a shuffled subset, as in a real minibatch
    _, stats = ppo.minibatch_loss(policy, ro, adv, returns, idx, config)
    assert stats["ratio_mean"] == 1.0 and stats["approx_kl"] == 0.0 and stats["clipfrac"] == 0.0
    # the same, from inside the real update loop (its first minibatch runs before any step)
    opt = ppo.make_optimizer(policy, config.lr, config.value_lr)
    first = ppo.ppo_update(policy, opt, ro, config, torch.Generator().manual_seed(0))[0]
    assert first["ratio_mean"] == 1.0 and first["approx_kl"] == 0.0 and first["clipfrac"] == 0.0


def test_mismatched_temperature_would_break_ratio_one(sft):
    """The check above is not vacuous: old log-probs at another temperature give ratio != 1."""
    lm, tok = sft
    config = _config(sampling_temperature=0.7)
    policy, ro = _rollout(lm, tok, config)
    adv, returns = ppo.advantages(ro, config)
    wrong = _config(sampling_temperature=1.0)
    _, stats = ppo.minibatch_loss(policy, ro, adv, returns, torch.arange(4), wrong)
    assert abs(stats["ratio_mean"] - 1.0) > 1e-3 and stats["approx_kl"] > 1e-4


def test_rewards_land_on_last_real_completion_token(sft):
    lm, tok = sft
    config = _config(batch_size=16, max_new_tokens=16)
    _, ro = _rollout(lm, tok, config, kl_coef=0.0, seed=3)
    lengths = ro.mask.sum(-1)
    assert len(set(lengths.tolist())) > 2, "need completions of different lengths"
    T = ro.mask.shape[1]
    for i in range(len(ro)):
        cols = ro.mask[i].nonzero().flatten()
        last = int(cols[-1])
        # left padding: the completion runs to the end of the row unless it is padded after
        nonzero = ro.rewards[i].nonzero().flatten().tolist()
        assert nonzero in ([last], []), (i, nonzero, last)
        assert ro.rewards[i, last].item() == pytest.approx(ro.scores[i].item())
        assert ro.batch.input_ids[i, last] == tok.eos_token_id or last == T - 1
        assert ro.rewards[i, last + 1:].abs().sum() == 0


def test_kl_penalty_on_every_token_and_sums_to_objective(sft):
    lm, tok = sft
    config = _config(batch_size=12, max_new_tokens=16)
    policy = ppo.new_policy(lm)
    with torch.no_grad():  # move the policy away from the reference
        for p in policy.lm.transformer.h[-1].parameters():
            p.add_(0.05 * torch.randn_like(p))
    beta = 0.3
    _, ro = _rollout(lm, tok, config, kl_coef=beta, policy=policy)
    kl_tok = (ro.logprobs - ro.ref_logprobs) * ro.mask
    assert kl_tok.abs().sum() > 0
    # every completion token but the last carries exactly -beta * (log pi - log pi_ref)
    last = ro.mask.shape[1] - 1 - ro.mask.flip(-1).argmax(-1)
    body = ro.mask.clone()
    body[torch.arange(len(ro)), last] = 0
    torch.testing.assert_close(ro.rewards * body, -beta * kl_tok * body)
    torch.testing.assert_close(ro.rewards.sum(-1), ro.scores - beta * ro.kl)
    assert (ro.rewards * (1 - ro.mask)).abs().sum() == 0


def test_one_update_changes_policy_and_stays_finite(tiny_lm):
    lm, tok = tiny_lm
    config = _config(batch_size=8, minibatch=4, ppo_epochs=1, max_new_tokens=8, lr=1e-2)
    policy, ro = _rollout(lm, tok, config)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    opt = ppo.make_optimizer(policy, config.lr, config.value_lr)
    stats = ppo.ppo_update(policy, opt, ro, config, torch.Generator().manual_seed(0))
    assert len(stats) == 2  # one epoch of 8 / 4 minibatches
    for s in stats:
        assert all(math.isfinite(v) for v in s.values()), s
    changed = [k for k, v in policy.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("lm.transformer") for k in changed)
    assert "value_head.weight" in changed  # the zero-init value head starts learning
    assert all(torch.isfinite(v).all() for v in policy.state_dict().values())
    # the second minibatch saw a moved policy: its ratio is no longer exactly 1
    assert stats[1]["approx_kl"] > 0
    # the update changed the policy's log-probs of the rollout's tokens
    with torch.no_grad():
        logp, _ = policy(ro.batch.input_ids, ro.batch.attention_mask, config.sampling_temperature)
    assert not torch.allclose(logp * ro.mask, ro.logprobs)


def test_train_ppo_trains_a_separate_critic_trunk(tiny_lm):
    """A critic on its own transformer (``new_policy(..., critic="separate")``) is trained too.

    The value head starts at 0, so the trunk under it gets no gradient at the first minibatch;
    from the second on it must move (it did not when PPO's optimiser held only the value head).
    """
    lm, tok = tiny_lm
    config = _config(batch_size=8, minibatch=4, ppo_epochs=1, max_new_tokens=8, steps=1,
                     value_lr=1e-2)
    policy = ppo.new_policy(lm, critic="separate")
    before = {k: v.clone() for k, v in policy.value_trunk.state_dict().items()}
    ppo.train_ppo(policy, lm, tok, gold_reward_fn, config, progress=False)
    changed = [k for k, v in policy.value_trunk.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("h.") for k in changed), "the critic's transformer was not trained"


def test_train_ppo_logs_every_metric_and_repeats(tiny_lm):
    lm, tok = tiny_lm
    config = _config(batch_size=8, minibatch=4, max_new_tokens=8, steps=2)

    def once():
        torch.manual_seed(0)
        policy = ppo.new_policy(lm)
        return ppo.train_ppo(policy, lm, tok, gold_reward_fn, config, progress=False)

    h1, h2 = once(), once()
    keys = {"loss", "pg_loss", "vf_loss", "clipfrac", "approx_kl", "ratio_mean",
            "explained_variance", "kl_coef", "kl_penalty", "rollout_kl", "score",
            "rollout_gold", "rollout_valid", "grad_norm"}
    assert keys <= set(h1.rows[1]) and keys <= set(h1.rows[2])
    assert h1.rows == h2.rows  # same seed, same numbers


def test_adaptive_beta_moves_with_the_rollout_kl(tiny_lm):
    lm, tok = tiny_lm
    # the first rollout has KL 0 (policy == reference), far below target: beta must shrink
    config = _config(batch_size=8, minibatch=4, max_new_tokens=8, steps=2, adaptive=True,
                     kl_coef=0.1, kl_target=5.0, kl_horizon=40)
    h = ppo.train_ppo(ppo.new_policy(lm), lm, tok, gold_reward_fn, config, progress=False)
    assert h.rows[1]["kl_coef"] == 0.1 and h.rows[1]["rollout_kl"] == 0.0
    assert h.rows[2]["kl_coef"] == pytest.approx(0.1 * (1 - 0.2 * 8 / 40))
    fixed = ppo.train_ppo(ppo.new_policy(lm), lm, tok, gold_reward_fn,
                          _config(batch_size=8, minibatch=4, max_new_tokens=8, kl_coef=0.1),
                          progress=False)
    assert fixed.rows[2]["kl_coef"] == 0.1


def test_rm_reward_fn_scores_the_sampled_sequence_at_its_end(sft):
    """Re-encoding the texts gives the same RM score as scoring the sampled tokens."""
    from alignlab.methods.rm import new_reward_model, score

    lm, tok = sft
    rm = new_reward_model(lm, tok, seed=0).eval()
    config = _config(batch_size=10, max_new_tokens=10)  # short: some rows are cut off, no <eos>
    _, ro = _rollout(lm, tok, config, seed=5)
    b = ro.batch
    assert not all(b.finished) and any(b.finished)
    got = torch.tensor(ppo.rm_reward_fn(rm, tok)(b.prompts, b.completions, b.finished))
    with torch.no_grad():
        direct = score(rm, b)
    torch.testing.assert_close(got, direct, atol=1e-5, rtol=1e-5)


def test_config_errors_teach():
    with pytest.raises(ValueError, match="reward must be one of"):
        ppo.PPOConfig(reward="vader")
    with pytest.raises(ValueError, match="minibatch .* must be <= batch"):
        ppo.PPOConfig(batch_size=8, minibatch=16)
    with pytest.raises(ValueError, match="adaptive=True needs kl_coef > 0"):
        ppo.PPOConfig(adaptive=True, kl_coef=0.0)


def test_train_ppo_rejects_a_plain_lm(tiny_lm):
    lm, tok = tiny_lm
    with pytest.raises(TypeError, match="PolicyWithValue"):
        ppo.train_ppo(lm, lm, tok, gold_reward_fn, _config(), progress=False)
    assert isinstance(ppo.new_policy(lm), PolicyWithValue)


def test_ppo_config_critic_setting():
    from alignlab.methods import ppo

    assert ppo.PPOConfig().critic == "shared"
    with pytest.raises(ValueError, match="critic"):
        ppo.PPOConfig(critic="both")


# ---------------------------------------------------------------------------
# PPO-KL, the PPO paper's KL-penalty variant (Schulman et al. 2017, eq. 8)
# ---------------------------------------------------------------------------

def _random_rollout_tensors(seed=0, B=5, T=9):
    g = torch.Generator().manual_seed(seed)
    logp = (torch.randn(B, T, generator=g) * 0.3 - 2).requires_grad_()
    old = torch.randn(B, T, generator=g) * 0.3 - 2
    adv = torch.randn(B, T, generator=g)
    mask = (torch.arange(T) >= torch.tensor([[0], [2], [4], [1], [6]])).float()  # left padding
    return logp, old, adv, mask


def test_ppo_kl_penalty_loss_is_eq8_on_random_tensors():
    from alignlab import losses

    logp, old, adv, mask = _random_rollout_tensors()
    beta = 0.7
    # junk in the padding must not leak
    old_junk = torch.where(mask.bool(), old, torch.full_like(old, float("nan")))
    loss, stats = losses.ppo_kl_penalty_loss(logp, old_junk, adv, mask, beta)
    ratio = torch.exp(logp - old)
    kl = ratio - 1 - torch.log(ratio)                     # k3 of KL(pi_old || pi_theta)
    surrogate = ratio * adv - beta * kl                    # L^KLPEN, maximised
    expected = -(surrogate * mask).sum() / mask.sum()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(stats["approx_kl"], (kl * mask).sum() / mask.sum())
    g1, = torch.autograd.grad(loss, logp)
    g2, = torch.autograd.grad(expected, logp)
    torch.testing.assert_close(g1, g2)
    assert (g1 * (1 - mask)).abs().sum() == 0             # no gradient into padding
    # the KL it reports is the one ppo_clip_loss reports
    _, clip_stats = losses.ppo_clip_loss(logp, old, adv, mask, 0.2)
    torch.testing.assert_close(stats["approx_kl"], clip_stats["approx_kl"])


def test_ppo_kl_penalty_loss_step0_equals_the_clip_loss():
    from alignlab import losses

    logp, _, adv, mask = _random_rollout_tensors(seed=1)
    old = logp.detach().clone()
    loss, stats = losses.ppo_kl_penalty_loss(logp, old, adv, mask, beta=3.0)
    clip, _ = losses.ppo_clip_loss(logp, old, adv, mask, 0.2)
    assert stats["approx_kl"] == 0.0 and stats["ratio_mean"] == 1.0
    torch.testing.assert_close(loss, -(adv * mask).sum() / mask.sum())
    g_kl, = torch.autograd.grad(loss, logp)
    g_clip, = torch.autograd.grad(clip, logp)
    torch.testing.assert_close(g_kl, g_clip)              # the penalty's gradient is 0 at rho = 1


def test_ppo_kl_penalty_estimates_the_true_kl_and_its_gradient():
    """Tokens drawn from pi_old: the mean penalty is KL(pi_old || pi_theta), and so is its gradient."""
    from alignlab import losses

    g = torch.Generator().manual_seed(0)
    old_logits, new_logits = torch.randn(6, generator=g), torch.randn(6, generator=g)
    new_logits.requires_grad_()
    log_old, log_new = old_logits.log_softmax(-1), new_logits.log_softmax(-1)
    exact = (log_old.exp() * (log_old - log_new)).sum()
    actions = torch.multinomial(log_old.exp(), 400_000, replacement=True, generator=g).view(400, 1000)
    lp = log_new[actions]
    loss, stats = losses.ppo_kl_penalty_loss(lp, log_old[actions], torch.zeros(400, 1000),
                                             torch.ones(400, 1000), beta=1.0)
    assert abs(loss.item() - exact.item()) < 0.01 * exact.item() + 1e-3
    g_est, = torch.autograd.grad(loss, new_logits, retain_graph=True)
    g_true, = torch.autograd.grad(exact, new_logits)
    torch.testing.assert_close(g_est, g_true, atol=5e-3, rtol=0)


def test_ppo_kl_penalty_beta_doubles_and_halves():
    from alignlab import losses

    assert losses.ppo_kl_penalty_beta(1.0, 0.001, target=0.01) == 0.5    # d < d_targ / 1.5
    assert losses.ppo_kl_penalty_beta(1.0, 0.02, target=0.01) == 2.0     # d > 1.5 d_targ
    for d in (0.007, 0.01, 0.0149):                                       # inside the band
        assert losses.ppo_kl_penalty_beta(1.0, d, target=0.01) == 1.0
    with pytest.raises(ValueError, match="kl"):
        losses.ppo_kl_penalty_beta(1.0, float("nan"), target=0.01)
    with pytest.raises(ValueError, match="beta"):
        losses.ppo_kl_penalty_beta(0.0, 0.01, target=0.01)


def test_train_ppo_kl_penalty_adapts_its_beta(tiny_lm):
    lm, tok = tiny_lm
    config = _config(batch_size=8, minibatch=4, max_new_tokens=8, steps=3, lr=1e-2,
                     policy_loss="kl_penalty", ppo_kl_beta=1.0, ppo_kl_target=0.01)
    h = ppo.train_ppo(ppo.new_policy(lm), lm, tok, gold_reward_fn, config, progress=False)
    assert "clipfrac" not in h.rows[1]
    for s in (1, 2):
        d, b = h.rows[s]["ppo_kl_d"], h.rows[s]["ppo_kl_beta"]
        assert d > 0
        expected = b / 2 if d < 0.01 / 1.5 else b * 2 if d > 0.015 else b
        assert h.rows[s + 1]["ppo_kl_beta"] == pytest.approx(expected)
    assert h.rows[1]["ppo_kl_beta"] == 1.0
    with pytest.raises(ValueError, match="policy_loss"):
        ppo.PPOConfig(policy_loss="trpo")
