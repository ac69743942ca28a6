"""Tests for alignlab.losses.

Where TRL has the same loss (reward model, DPO, KTO) we call TRL's own trainer code on a
stand-in `self` and a tiny fake model that returns the log-probs / rewards we choose, so the
comparison is against the installed TRL, not against a copy of its formula.
"""

import functools
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from alignlab import losses as L
from conftest import HAVE_TRL, TRL_VERSION, grad_leaf, needs_trl

# The live cross-checks call TRL's trainer internals (DPOTrainer._compute_loss,
# KTOTrainer._compute_loss, RewardTrainer.compute_loss), so they are pinned to the TRL
# version they were written against (conftest.TRL_VERSION); the test extra installs it.
# TRL's outputs on fixed inputs are also frozen in tests/fixtures/trl_1_16_reference.json,
# which the losses are compared with whatever TRL is installed (or none): those checks never skip.
if HAVE_TRL:
    import trl
    from trl.trainer import dpo_trainer as trl_dpo
    from trl.trainer import kto_trainer as trl_kto
    from trl.trainer import reward_trainer as trl_reward

pytestmark = pytest.mark.usefixtures("seeded")
REFERENCE = Path(__file__).parent / "fixtures" / "trl_1_16_reference.json"


# ---------------------------------------------------------------------------
# Stand-ins for TRL trainers: just the attributes their loss code reads
# ---------------------------------------------------------------------------


def _fake_trainer(**attrs):
    accelerator = SimpleNamespace(device=torch.device("cpu"), gather=lambda x: x, gather_for_metrics=lambda x: x)
    return SimpleNamespace(
        model=SimpleNamespace(training=False),
        accelerator=accelerator,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
        **attrs,
    )


def trl_reward_loss(rewards_chosen, rewards_rejected, margin=None):
    """TRL 1.x RewardTrainer.compute_loss; the fake model's logits are the rewards [chosen; rejected]."""
    logits = torch.cat([rewards_chosen, rewards_rejected]).unsqueeze(-1)  # (2B, 1)
    fake_self = _fake_trainer(args=SimpleNamespace(center_rewards_coefficient=None))
    inputs = {"input_ids": torch.zeros(len(logits), 2, dtype=torch.long),
              "attention_mask": torch.ones(len(logits), 2, dtype=torch.long)}
    if margin is not None:
        inputs["margin"] = margin
    return trl_reward.RewardTrainer.compute_loss(fake_self, lambda **kw: SimpleNamespace(logits=logits), inputs)


def trl_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    """TRL 1.x DPOTrainer._compute_loss, loss_type 'sigmoid', precomputed reference log-probs.

    Each sequence has one completion token whose log-prob is the sequence log-prob we pass in.
    """
    per_token = torch.cat([policy_chosen, policy_rejected]).unsqueeze(-1)  # (2B, 1)
    n = len(per_token)

    def model(**kwargs):
        return SimpleNamespace(log_probs=per_token, entropy=torch.zeros(n, 1), mean_logits=torch.zeros(n, 1),
                               is_top1=torch.zeros(n, 1, dtype=torch.bool))

    fake_self = _fake_trainer(aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True,
                              f_divergence_type="reverse_kl", loss_types=["sigmoid"], loss_weights=[1.0],
                              beta=beta, use_weighting=False)
    ones = torch.ones(n, 2, dtype=torch.long)
    inputs = {"input_ids": ones * 5, "attention_mask": ones, "completion_mask": ones,
              "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected}
    return trl_dpo.DPOTrainer._compute_loss(fake_self, model, inputs, return_outputs=False)


def trl_kto_loss(policy_logps, ref_logps, labels, policy_kl_logps, ref_kl_logps, beta, lambda_d, lambda_u):
    """TRL 1.x KTOTrainer._compute_loss, loss_type 'kto', precomputed reference log-probs.

    The fake model tells the KL batch (input ids 1) from the main batch (input ids 0).
    """
    n = len(policy_logps)

    def model(input_ids, **kwargs):
        logps = policy_kl_logps if bool(input_ids[0, 0] == 1) else policy_logps
        return SimpleNamespace(log_probs=logps.unsqueeze(-1), entropy=torch.zeros(n, 1),
                               mean_logits=torch.zeros(n, 1))

    fake_self = _fake_trainer(calculate_KL=True, aux_loss_enabled=False, precompute_ref_logps=True, loss_type="kto",
                              beta=beta, desirable_weight=lambda_d, undesirable_weight=lambda_u)
    fake_self._compute_kl_logps = functools.partial(trl_kto.KTOTrainer._compute_kl_logps, fake_self)
    ones = torch.ones(n, 2, dtype=torch.long)
    inputs = {"input_ids": ones * 0, "attention_mask": ones, "completion_mask": ones,
              "KL_input_ids": ones * 1, "KL_attention_mask": ones, "KL_completion_mask": ones,
              "label": labels, "ref_logps": ref_logps, "ref_KL_logps": ref_kl_logps}
    return trl_kto.KTOTrainer._compute_loss(fake_self, model, inputs, return_outputs=False)


# ---------------------------------------------------------------------------
# Bradley-Terry reward model loss
# ---------------------------------------------------------------------------


@needs_trl
@pytest.mark.parametrize("with_margin", [False, True])
def test_bt_loss_matches_trl_reward_trainer_and_gradients(with_margin):
    rc, rr = torch.randn(16) * 3, torch.randn(16) * 3
    margin = torch.rand(16) if with_margin else None
    ours_c, ours_r, trl_c, trl_r = grad_leaf(rc), grad_leaf(rr), grad_leaf(rc), grad_leaf(rr)

    ours = L.bt_loss(ours_c, ours_r, margin=margin)
    theirs = trl_reward_loss(trl_c, trl_r, margin=margin)
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours_c.grad, trl_c.grad)
    torch.testing.assert_close(ours_r.grad, trl_r.grad)
    # the margin really enters: a positive margin makes the loss larger
    if with_margin:
        assert ours > L.bt_loss(rc, rr)


def test_bt_loss_step0_is_ln2():
    r = torch.randn(8)
    torch.testing.assert_close(L.bt_loss(r, r.clone()), torch.tensor(math.log(2)))


def test_bt_loss_finite_for_huge_gap_while_naive_overflows():
    rc = torch.tensor([-1e4, 1e4], requires_grad=True)  # one confidently wrong pair, one confidently right
    rr = torch.tensor([0.0, 0.0])
    loss = L.bt_loss(rc, rr)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, torch.tensor(1e4 / 2))
    loss.backward()
    assert torch.isfinite(rc.grad).all()
    assert torch.isinf(L.bt_loss_naive(rc.detach(), rr))


def test_pairwise_accuracy_counts_ties_as_half():
    acc = L.pairwise_accuracy(torch.tensor([1.0, 2.0, 3.0, 5.0]), torch.tensor([0.0, 2.0, 4.0, 1.0]))
    torch.testing.assert_close(acc, torch.tensor(2.5 / 4))


# ---------------------------------------------------------------------------
# DPO
# ---------------------------------------------------------------------------


@needs_trl
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_loss_and_gradients_match_trl(beta):
    pc, pr = torch.randn(8) * 5 - 20, torch.randn(8) * 5 - 20
    rc, rr = pc + torch.randn(8), pr + torch.randn(8)
    ours_c, ours_r, trl_c, trl_r = grad_leaf(pc), grad_leaf(pr), grad_leaf(pc), grad_leaf(pr)

    loss, chosen_rewards, rejected_rewards = L.dpo_loss(ours_c, ours_r, rc, rr, beta=beta)
    theirs = trl_dpo_loss(trl_c, trl_r, rc, rr, beta)
    torch.testing.assert_close(loss, theirs)
    loss.backward()
    theirs.backward()
    torch.testing.assert_close(ours_c.grad, trl_c.grad)
    torch.testing.assert_close(ours_r.grad, trl_r.grad)
    torch.testing.assert_close(chosen_rewards, beta * (pc - rc))
    torch.testing.assert_close(rejected_rewards, beta * (pr - rr))
    assert not chosen_rewards.requires_grad and not rejected_rewards.requires_grad
    assert chosen_rewards.shape == (8,)


@needs_trl
@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_dpo_with_sft_term_matches_trl_sigmoid_plus_sft(weight):
    """``DPOConfig.sft_weight``: DPO + w * mean chosen-token NLL is TRL's loss_type=["sigmoid", "sft"]."""
    from alignlab.methods.dpo import chosen_token_nll

    B, T, beta = 4, 6, 0.3
    per_token = (torch.randn(2 * B, T) - 2).requires_grad_(True)
    mask = (torch.arange(T) < torch.randint(1, T + 1, (2 * B, 1))).long()  # padded completions
    ref = torch.randn(2 * B) * 3 - 10

    logps = (per_token * mask).sum(-1)
    loss, _, _ = L.dpo_loss(logps[:B], logps[B:], ref[:B], ref[B:], beta=beta)
    ours = loss + weight * chosen_token_nll(logps[:B], mask[:B])
    (g_ours,) = torch.autograd.grad(ours, per_token)

    theirs_input = grad_leaf(per_token)

    def model(**kwargs):
        n = 2 * B
        # TRL's fused head returns 0 at label -100 (outside the completion mask)
        return SimpleNamespace(log_probs=theirs_input * mask, entropy=torch.zeros(n, T), mean_logits=torch.zeros(n, T),
                               is_top1=torch.zeros(n, T, dtype=torch.bool))

    fake_self = _fake_trainer(aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True,
                              f_divergence_type="reverse_kl", loss_types=["sigmoid", "sft"],
                              loss_weights=[1.0, weight], beta=beta, use_weighting=False)
    ones = torch.ones(2 * B, T + 1, dtype=torch.long)
    inputs = {"input_ids": ones * 5, "attention_mask": ones,
              "completion_mask": torch.cat([torch.zeros(2 * B, 1, dtype=torch.long), mask], 1),
              "ref_chosen_logps": ref[:B], "ref_rejected_logps": ref[B:]}
    theirs = trl_dpo.DPOTrainer._compute_loss(fake_self, model, inputs, return_outputs=False)
    torch.testing.assert_close(ours, theirs)
    (g_theirs,) = torch.autograd.grad(theirs, theirs_input)
    torch.testing.assert_close(g_ours * mask, g_theirs * mask)


def test_dpo_step0_is_ln2_with_zero_rewards():
    pc, pr = torch.randn(4) - 10, torch.randn(4) - 10
    loss, cr, rj = L.dpo_loss(pc, pr, pc.clone(), pr.clone(), beta=0.1)
    torch.testing.assert_close(loss, torch.tensor(math.log(2)))
    assert torch.equal(cr, torch.zeros(4)) and torch.equal(rj, torch.zeros(4))


def test_dpo_finite_for_huge_logratio_gap():
    pc = torch.tensor([-1e4, 0.0], requires_grad=True)  # gap -1e4 (very wrong) and +1e4 (very right)
    pr = torch.tensor([0.0, -1e4])
    zeros = torch.zeros(2)
    loss, _, _ = L.dpo_loss(pc, pr, zeros, zeros, beta=1.0)
    torch.testing.assert_close(loss, torch.tensor(1e4 / 2))
    loss.backward()
    assert torch.isfinite(pc.grad).all()


# ---------------------------------------------------------------------------
# KTO
# ---------------------------------------------------------------------------


@needs_trl
@pytest.mark.parametrize("kl_offset", [0.7, -0.7], ids=["z0_positive", "z0_clamped"])
@pytest.mark.parametrize("lambdas", [(1.0, 1.0), (1.33, 0.8)])
def test_kto_loss_and_gradients_match_trl(kl_offset, lambdas):
    lambda_d, lambda_u = lambdas
    B = 10
    policy = torch.randn(B) * 4 - 30
    ref = policy + torch.randn(B) * 3
    labels = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0, 1, 1], dtype=torch.bool)
    ref_kl = torch.randn(B) - 30
    policy_kl = ref_kl + kl_offset + 0.1 * torch.randn(B)
    ours_p, trl_p, ours_kl = grad_leaf(policy), grad_leaf(policy), grad_leaf(policy_kl)

    loss, z0, rewards = L.kto_loss(ours_p, ref, labels, ours_kl, ref_kl, beta=0.2, lambda_d=lambda_d, lambda_u=lambda_u)
    theirs = trl_kto_loss(trl_p, ref, labels, policy_kl, ref_kl, 0.2, lambda_d, lambda_u)
    torch.testing.assert_close(loss, theirs)
    loss.backward()
    theirs.backward()
    torch.testing.assert_close(ours_p.grad, trl_p.grad)

    if kl_offset > 0:
        assert z0 > 0.5
        torch.testing.assert_close(z0, (policy_kl - ref_kl).mean())
    else:
        assert z0 == 0
    assert ours_kl.grad is None  # z0 is a constant: no gradient into the KL log-probs
    assert not z0.requires_grad and not rewards.requires_grad
    torch.testing.assert_close(rewards, 0.2 * (policy - ref))


@needs_trl
@pytest.mark.parametrize("all_label", [True, False])
def test_kto_single_class_batches_work_and_match_trl(all_label):
    B = 6
    policy, ref = torch.randn(B) - 5, torch.randn(B) - 5
    policy_kl, ref_kl = torch.randn(B) - 5, torch.randn(B) - 5
    labels = torch.full((B,), all_label)
    loss, _, _ = L.kto_loss(policy, ref, labels, policy_kl, ref_kl, lambda_d=1.5, lambda_u=0.5)
    theirs = trl_kto_loss(policy, ref, labels, policy_kl, ref_kl, 0.1, 1.5, 0.5)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, theirs)


def test_kto_step0_z0_zero_and_loss_is_half_lambda():
    B = 8
    policy, policy_kl = torch.randn(B) - 5, torch.randn(B) - 5
    lambda_d, lambda_u = 1.2, 0.9
    for labels, expected in [
        (torch.ones(B, dtype=torch.bool), lambda_d / 2),
        (torch.zeros(B, dtype=torch.bool), lambda_u / 2),
        (torch.tensor([1, 1, 1, 0, 0, 0, 0, 0]), (3 * lambda_d + 5 * lambda_u) / 2 / B),
    ]:
        loss, z0, rewards = L.kto_loss(policy, policy.clone(), labels, policy_kl, policy_kl.clone(),
                                       lambda_d=lambda_d, lambda_u=lambda_u)
        assert z0 == 0
        assert torch.equal(rewards, torch.zeros(B))
        torch.testing.assert_close(loss, torch.tensor(expected))


def test_kto_z0_is_clamped_mean_and_detached():
    p = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    assert L.kto_z0(p, torch.zeros(3)).item() == pytest.approx(2.0)
    assert L.kto_z0(p, torch.full((3,), 5.0)).item() == 0.0
    assert not L.kto_z0(p, torch.zeros(3)).requires_grad


def test_mismatched_indices_follow_trl_rotation():
    completions = ["y0", "y1", "y2", "y3", "y4"]
    idx = L.mismatched_indices(5)
    assert idx.tolist() == [4, 0, 1, 2, 3]
    # TRL (kto_trainer.py, add_kl_completion_ids): KL_completion_ids = [c[-1]] + c[:-1]
    assert [completions[i] for i in idx] == [completions[-1]] + completions[:-1]
    assert all(int(idx[i]) != i for i in range(5))  # every pair really is mismatched
    assert L.mismatched_indices(2).tolist() == [1, 0]


def test_mismatched_indices_batch_size_1_gives_clear_error():
    with pytest.raises(ValueError, match="at least 2"):
        L.mismatched_indices(1)


def test_kto_recommended_lambda_range():
    low, high = L.kto_recommended_lambda_d(n_desirable=100, n_undesirable=300)
    assert (low, high) == pytest.approx((3.0, 4.0))
    assert L.kto_lambdas_in_recommended_range(100, 300, lambda_d=3.5)
    assert not L.kto_lambdas_in_recommended_range(100, 300, lambda_d=1.0)
    assert L.kto_lambdas_in_recommended_range(50, 50, lambda_d=1.0)  # balanced data, default weights
    assert not L.kto_lambdas_in_recommended_range(50, 50, lambda_d=1.5)


# ---------------------------------------------------------------------------
# GAE and whitening
# ---------------------------------------------------------------------------


def gae_reference(rewards, values, mask, gamma, lam):
    """Slow, obviously correct GAE: one sequence at a time, one valid token at a time."""
    B, T = rewards.shape
    advantages = torch.zeros(B, T, dtype=torch.float64)
    returns = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        steps = [t for t in range(T) if mask[b, t] == 1]
        running = 0.0
        for k in reversed(range(len(steps))):
            t = steps[k]
            next_value = values[b, steps[k + 1]].item() if k + 1 < len(steps) else 0.0
            delta = rewards[b, t].item() + gamma * next_value - values[b, t].item()
            running = delta + gamma * lam * running
            advantages[b, t] = running
            returns[b, t] = running + values[b, t].item()
    return advantages, returns


def random_padded_batch(B=7, T=12, left_offsets=True):
    """Random rewards/values and a mask whose valid run starts at `start` and has random length."""
    mask = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        start = int(torch.randint(0, 4, ())) if left_offsets else 0
        length = int(torch.randint(1, T - start + 1, ()))
        mask[b, start : start + length] = 1
    mask[0, :] = 1  # one full row
    mask[1, :] = 0
    mask[1, :3] = 1  # one short right-padded row
    rewards = torch.randn(B, T, dtype=torch.float64)
    values = torch.randn(B, T, dtype=torch.float64)
    return rewards, values, mask


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (1.0, 1.0), (0.99, 0.0)])
@pytest.mark.parametrize("left_offsets", [False, True])
def test_gae_matches_reference_loop(gamma, lam, left_offsets):
    rewards, values, mask = random_padded_batch(left_offsets=left_offsets)
    adv, ret = L.compute_gae(rewards, values, mask, gamma=gamma, lam=lam)
    ref_adv, ref_ret = gae_reference(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(adv, ref_adv)
    torch.testing.assert_close(ret, ref_ret)
    assert (adv[mask == 0] == 0).all() and (ret[mask == 0] == 0).all()


def test_gae_lambda1_gamma1_is_returns_to_go_minus_values():
    rewards, values, mask = random_padded_batch()
    adv, ret = L.compute_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    r = rewards * mask
    to_go = r.flip(1).cumsum(1).flip(1) * mask  # sum_{t' >= t} r_t' over valid tokens
    torch.testing.assert_close(ret, to_go)
    torch.testing.assert_close(adv, (to_go - values) * mask)


def test_gae_lambda0_is_td_error():
    rewards, values, mask = random_padded_batch()
    gamma = 0.9
    adv, _ = L.compute_gae(rewards, values, mask, gamma=gamma, lam=0.0)
    m = mask.double()
    next_values = torch.cat([values[:, 1:] * m[:, 1:], torch.zeros(len(values), 1, dtype=values.dtype)], dim=1)
    td = (rewards + gamma * next_values - values) * m
    torch.testing.assert_close(adv, td)


def test_gae_padding_garbage_does_not_leak():
    rewards, values, mask = random_padded_batch()
    adv, ret = L.compute_gae(rewards, values, mask)
    pad = mask == 0
    for garbage in [1e9, float("nan"), float("inf")]:
        adv2, ret2 = L.compute_gae(rewards.masked_fill(pad, garbage), values.masked_fill(pad, -garbage), mask)
        assert torch.equal(adv, adv2) and torch.equal(ret, ret2)


def test_gae_rejects_mask_with_holes():
    rewards = torch.randn(2, 5)
    mask = torch.tensor([[1, 1, 0, 1, 0], [1, 1, 1, 0, 0]])
    with pytest.raises(ValueError, match="contiguous"):
        L.compute_gae(rewards, rewards.clone(), mask)


def test_whiten_uses_valid_tokens_only():
    x = torch.randn(5, 9, dtype=torch.float64) * 3 + 2
    _, _, mask = random_padded_batch(B=5, T=9)
    valid = mask.bool()
    out = L.whiten(x, mask)
    assert abs(out[valid].mean().item()) < 1e-10
    assert out[valid].std().item() == pytest.approx(1.0, abs=1e-6)  # unbiased std, like the unbiased var used
    assert (out[~valid] == 0).all()
    out2 = L.whiten(x.masked_fill(~valid, 1e9), mask)
    torch.testing.assert_close(out, out2)
    kept = L.whiten(x, mask, shift_mean=False)
    assert kept[valid].mean().item() == pytest.approx(x[valid].mean().item())
    assert (kept[~valid] == 0).all()


def test_masked_mean_and_sum():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, float("nan"), 50.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert L.masked_sum(x, mask).item() == 6.0
    assert L.masked_mean(x, mask).item() == 2.0
    torch.testing.assert_close(L.masked_mean(x, mask, dim=1), torch.tensor([1.5, 3.0]))
    torch.testing.assert_close(L.masked_sum(x, mask, dim=1), torch.tensor([3.0, 3.0]))
    with pytest.raises(ValueError, match="no valid"):
        L.masked_mean(x, torch.zeros(2, 3))


# ---------------------------------------------------------------------------
# PPO policy and value losses
# ---------------------------------------------------------------------------


def test_ppo_step0_ratio_one_kl_zero_clipfrac_zero():
    logprobs = torch.randn(4, 6) - 2
    adv = torch.randn(4, 6)
    mask = torch.ones(4, 6)
    mask[2, 4:] = 0
    loss, stats = L.ppo_clip_loss(logprobs, logprobs.clone(), adv, mask)
    assert stats["ratio_mean"].item() == 1.0
    assert stats["approx_kl"].item() == 0.0
    assert stats["clipfrac"].item() == 0.0
    torch.testing.assert_close(loss, -L.masked_mean(adv, mask))


RATIOS = [0.5, 0.9, 1.0, 1.1, 1.5]
# per-token loss max(-A r, -A clip(r, 0.8, 1.2)) worked out by hand for eps = 0.2
HAND_TABLE = {
    +1.0: [-0.5, -0.9, -1.0, -1.1, -1.2],  # A > 0: gain capped at 1.2, no cap below
    -1.0: [0.8, 0.9, 1.0, 1.1, 1.5],  # A < 0: floor at 0.8, no cap above
}
HAND_CLIPPED = {+1.0: [0, 0, 0, 0, 1], -1.0: [1, 0, 0, 0, 0]}


@pytest.mark.parametrize("adv", [+1.0, -1.0])
def test_ppo_clip_loss_hand_table(adv):
    for ratio, expected, clipped in zip(RATIOS, HAND_TABLE[adv], HAND_CLIPPED[adv]):
        logprobs = torch.tensor([[math.log(ratio)]], dtype=torch.float64)
        old = torch.zeros(1, 1, dtype=torch.float64)
        loss, stats = L.ppo_clip_loss(logprobs, old, torch.tensor([[adv]], dtype=torch.float64), torch.ones(1, 1))
        assert loss.item() == pytest.approx(expected), (ratio, adv)
        assert stats["clipfrac"].item() == clipped, (ratio, adv)


def test_ppo_gradient_zero_exactly_where_clip_is_active():
    pairs = [(r, a) for a in (+1.0, -1.0) for r in RATIOS]
    logprobs = torch.tensor([[math.log(r) for r, _ in pairs]], dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([[a for _, a in pairs]], dtype=torch.float64)
    loss, stats = L.ppo_clip_loss(logprobs, torch.zeros_like(adv), adv, torch.ones_like(adv), clip_eps=0.2)
    loss.backward()
    for (r, a), g in zip(pairs, logprobs.grad[0].tolist()):
        active = (r > 1.2 and a > 0) or (r < 0.8 and a < 0)
        assert (g == 0) == active, (r, a, g)
    assert stats["clipfrac"].item() == pytest.approx(2 / 10)


def test_ppo_padding_gets_no_gradient_even_with_garbage():
    logprobs = torch.randn(2, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    garbage_lp = grad_leaf(logprobs.masked_fill(mask == 0, 1e4))
    adv = torch.randn(2, 4, dtype=torch.float64).masked_fill(mask == 0, float("nan"))
    loss, _ = L.ppo_clip_loss(garbage_lp, logprobs - 0.1, adv, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert (garbage_lp.grad[mask == 0] == 0).all() and (garbage_lp.grad[mask == 1] != 0).all()


def test_approx_kl_is_k3_and_nonnegative():
    logprobs, old = torch.randn(3, 5), torch.randn(3, 5)
    _, stats = L.ppo_clip_loss(logprobs, old, torch.randn(3, 5), torch.ones(3, 5))
    log_ratio = logprobs - old
    torch.testing.assert_close(stats["approx_kl"], ((log_ratio.exp() - 1) - log_ratio).mean())
    assert stats["approx_kl"] > 0


def test_value_loss_clipped_hand_checked():
    # token 0: V moved 0 -> 0.5 towards R = 1; clipped V = 0.2 is worse: (0.2-1)^2 = 0.64 is used
    # token 1: V moved 1 -> 1.5 away from R = 0; unclipped error 2.25 is larger and is used
    # token 2: V moved 0 -> 0.1 within the clip range: (0.1 - 1)^2 = 0.81
    values = torch.tensor([[0.5, 1.5, 0.1, float("nan")]], requires_grad=True)  # last token is padding
    old = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    returns = torch.tensor([[1.0, 0.0, 1.0, -7.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, stats = L.value_loss_clipped(values, old, returns, mask, clip_eps=0.2)
    assert loss.item() == pytest.approx(0.5 * (0.64 + 2.25 + 0.81) / 3)
    assert stats["vf_clipfrac"].item() == pytest.approx(1 / 3)
    loss.backward()
    assert values.grad[0, 0] == 0 and values.grad[0, 1] != 0 and values.grad[0, 3] == 0


def test_explained_variance():
    returns = torch.randn(4, 6)
    mask = torch.ones(4, 6)
    mask[1, 3:] = 0
    garbage_values = returns.masked_fill(mask == 0, 1e6)
    assert L.explained_variance(garbage_values, returns, mask).item() == pytest.approx(1.0)
    mean_only = torch.full_like(returns, returns[mask.bool()].mean().item())
    assert L.explained_variance(mean_only, returns, mask).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------
# KL controllers and estimators
# ---------------------------------------------------------------------------


def test_adaptive_kl_controller_moves_beta_towards_target():
    ctl = L.AdaptiveKLController(init_beta=0.1, target=6.0, horizon=10000)
    ctl.update(current_kl=12.0, n_steps=1000)  # error clipped to +0.2
    assert ctl.beta == pytest.approx(0.1 * (1 + 0.2 * 0.1))
    before = ctl.beta
    ctl.update(current_kl=5.4, n_steps=1000)  # error -0.1
    assert ctl.beta == pytest.approx(before * (1 - 0.1 * 0.1))
    before = ctl.beta
    ctl.update(current_kl=6.0, n_steps=1000)
    assert ctl.beta == before
    fixed = L.FixedKLController(0.05)
    fixed.update(100.0, 1000)
    assert fixed.beta == 0.05


def test_kl_estimators():
    p = torch.distributions.Categorical(logits=torch.randn(10))
    q = torch.distributions.Categorical(logits=torch.randn(10))
    x = p.sample((200_000,))
    logp, logq = p.log_prob(x), q.log_prob(x)
    true_kl = torch.distributions.kl_divergence(p, q)
    k1, k3 = L.kl_k1(logp, logq), L.kl_k3(logp, logq)
    assert k1.mean().item() == pytest.approx(true_kl.item(), abs=0.02)
    assert k3.mean().item() == pytest.approx(true_kl.item(), abs=0.02)
    assert (k3 >= 0).all() and (k1 < 0).any()
    assert torch.equal(L.kl_k3(logp, logp), torch.zeros_like(logp))


# ---------------------------------------------------------------------------
# Errors that teach
# ---------------------------------------------------------------------------


def test_mismatched_batch_sizes_name_the_argument():
    with pytest.raises(ValueError, match="rewards_rejected.*shape"):
        L.bt_loss(torch.randn(4), torch.randn(3))
    with pytest.raises(ValueError, match="policy_rejected_logps"):
        L.dpo_loss(torch.randn(4), torch.randn(5), torch.randn(4), torch.randn(4))
    with pytest.raises(ValueError, match="ref_chosen_logps"):
        L.dpo_loss(torch.randn(4), torch.randn(4), torch.randn(2), torch.randn(4))
    with pytest.raises(ValueError, match="labels"):
        L.kto_loss(torch.randn(4), torch.randn(4), torch.ones(3), torch.randn(4), torch.randn(4))
    with pytest.raises(ValueError, match="mask"):
        L.compute_gae(torch.randn(2, 5), torch.randn(2, 5), torch.ones(2, 4))


def test_nan_and_bad_dtype_inputs_name_the_argument():
    with pytest.raises(ValueError, match="rewards_chosen.*NaN"):
        L.bt_loss(torch.tensor([0.0, float("nan")]), torch.zeros(2))
    with pytest.raises(ValueError, match="ref_logps.*inf"):
        L.kto_loss(torch.zeros(2), torch.tensor([0.0, -float("inf")]), torch.ones(2), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="rewards.*NaN.*valid"):
        L.compute_gae(torch.tensor([[float("nan"), 0.0]]), torch.zeros(1, 2), torch.ones(1, 2))
    with pytest.raises(ValueError, match="policy_chosen_logps.*floating-point"):
        L.dpo_loss(torch.tensor([1, 2]), torch.zeros(2), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="policy_chosen_logps.*dimension"):
        L.dpo_loss(torch.zeros(2, 5), torch.zeros(2), torch.zeros(2), torch.zeros(2))


# ---------------------------------------------------------------------------
# Frozen TRL 1.16 reference numbers: the losses agree with them without TRL installed
# ---------------------------------------------------------------------------


def _reference_cases() -> dict[str, dict]:
    """Fixed inputs (plain lists) of each frozen case, drawn from a seeded generator."""
    g = torch.Generator().manual_seed(1234)

    def randn(n, scale=1.0, shift=0.0):
        return (torch.randn(n, generator=g) * scale + shift).tolist()

    pc, pr = randn(8, 5, -20), randn(8, 5, -20)
    policy = randn(10, 4, -30)
    ref_kl = randn(10, 1, -30)
    return {
        "bt": {"rc": randn(16, 3), "rr": randn(16, 3)},
        "bt_margin": {"rc": randn(16, 3), "rr": randn(16, 3), "margin": torch.rand(16, generator=g).tolist()},
        "dpo_beta0.1": {"pc": pc, "pr": pr, "rc": [a + b for a, b in zip(pc, randn(8))],
                        "rr": [a + b for a, b in zip(pr, randn(8))], "beta": 0.1},
        "kto_z0_positive": {"policy": policy, "ref": [a + b for a, b in zip(policy, randn(10, 3))],
                            "labels": [1, 0, 1, 1, 0, 0, 1, 0, 1, 1], "ref_kl": ref_kl,
                            "policy_kl": [a + 0.7 + b for a, b in zip(ref_kl, randn(10, 0.1))],
                            "beta": 0.2, "lambda_d": 1.33, "lambda_u": 0.8},
    }


def _loss_and_grads(name: str, x: dict, use_trl: bool) -> dict:
    """The loss and the gradient of its first input, by our code or by TRL's."""
    t = {k: torch.tensor(v) for k, v in x.items() if isinstance(v, list)}
    if name.startswith("bt"):
        leaf = grad_leaf(t["rc"])
        fn = trl_reward_loss if use_trl else L.bt_loss
        loss = fn(leaf, t["rr"], margin=t.get("margin"))
    elif name.startswith("dpo"):
        leaf = grad_leaf(t["pc"])
        loss = trl_dpo_loss(leaf, t["pr"], t["rc"], t["rr"], x["beta"]) if use_trl else \
            L.dpo_loss(leaf, t["pr"], t["rc"], t["rr"], beta=x["beta"])[0]
    else:
        leaf, labels = grad_leaf(t["policy"]), t["labels"].bool()
        args = (x["beta"], x["lambda_d"], x["lambda_u"])
        loss = trl_kto_loss(leaf, t["ref"], labels, t["policy_kl"], t["ref_kl"], *args) if use_trl else \
            L.kto_loss(leaf, t["ref"], labels, t["policy_kl"], t["ref_kl"], beta=args[0], lambda_d=args[1],
                       lambda_u=args[2])[0]
    loss.backward()
    return {"loss": loss.item(), "grad": leaf.grad.tolist()}


@pytest.mark.parametrize("name", list(_reference_cases()))
def test_losses_match_frozen_trl_reference_numbers(name):
    frozen = json.loads(REFERENCE.read_text())
    assert frozen["trl_version"].startswith(TRL_VERSION + "."), frozen["trl_version"]
    ours = _loss_and_grads(name, _reference_cases()[name], use_trl=False)
    assert ours["loss"] == pytest.approx(frozen["cases"][name]["loss"], rel=1e-5, abs=1e-6)
    assert ours["grad"] == pytest.approx(frozen["cases"][name]["grad"], rel=1e-4, abs=1e-7)


@needs_trl
def test_frozen_reference_is_what_the_installed_trl_computes():
    frozen = json.loads(REFERENCE.read_text())["cases"]
    for name, x in _reference_cases().items():
        live = _loss_and_grads(name, x, use_trl=True)
        assert live["loss"] == pytest.approx(frozen[name]["loss"], rel=1e-5, abs=1e-6), name
        assert live["grad"] == pytest.approx(frozen[name]["grad"], rel=1e-4, abs=1e-7), name


if __name__ == "__main__" and "--freeze" in sys.argv:  # python tests/test_losses.py --freeze
    assert HAVE_TRL, f"freezing needs TRL {TRL_VERSION}.x installed"
    cases = {name: _loss_and_grads(name, x, use_trl=True) for name, x in _reference_cases().items()}
    REFERENCE.write_text(json.dumps({"trl_version": trl.__version__, "cases": cases}, indent=1) + "\n")
    print(f"wrote {REFERENCE} from TRL {trl.__version__}")
