"""Tests for the critic-free losses of lecture 07 (RLOO and GRPO) in alignlab.losses.

The losses are compared with TRL 1.16's own trainer code: ``GRPOTrainer._compute_loss`` and
``RLOOTrainer._compute_loss`` run on a stand-in ``self`` whose log-prob function returns the
tensors we choose (as tests/test_losses.py does for DPO and KTO). TRL computes the group
advantages inline in ``_generate_and_score_completions`` (no callable of its own), so those
are checked against the same lines written out with TRL's own ``nanstd``. TRL's outputs on
fixed inputs are frozen in tests/fixtures/trl_1_16_grpo_reference.json, so the comparison
also runs (and never skips) without TRL; ``python tests/test_grpo.py --freeze`` rewrites it.
"""

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

if HAVE_TRL:
    import trl
    from trl.trainer import grpo_trainer as trl_grpo
    from trl.trainer import rloo_trainer as trl_rloo
    from trl.trainer.utils import nanstd as trl_nanstd

pytestmark = pytest.mark.usefixtures("seeded")
REFERENCE = Path(__file__).parent / "fixtures" / "trl_1_16_grpo_reference.json"

# aggregation here -> TRL 1.16 GRPOConfig.loss_type
TRL_LOSS_TYPE = {"sequence_mean": "grpo", "token_mean": "bnpo", "dr_grpo": "dr_grpo"}


# ---------------------------------------------------------------------------
# Stand-ins for TRL's trainers: just the attributes their loss code reads
# ---------------------------------------------------------------------------


def _fake_trainer(logprobs, **attrs):
    """A `self` for TRL's _compute_loss; its model returns `logprobs` as the per-token log-probs.

    The model is in eval mode, so TRL divides by no gradient-accumulation count.
    """
    accelerator = SimpleNamespace(device=torch.device("cpu"), gather=lambda x: x, gather_for_metrics=lambda x: x,
                                  reduce=lambda x, reduction="sum": x, num_processes=1)
    return SimpleNamespace(
        model=SimpleNamespace(training=False), accelerator=accelerator,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _get_per_token_logps_and_entropies=lambda *a, **k: (logprobs, torch.zeros_like(logprobs), None),
        aux_loss_enabled=False, current_gradient_accumulation_steps=1, **attrs)


def _trl_inputs(logprobs, mask):
    B, T = logprobs.shape
    return {"prompt_ids": torch.ones(B, 1, dtype=torch.long), "prompt_mask": torch.ones(B, 1, dtype=torch.long),
            "completion_ids": torch.ones(B, T, dtype=torch.long), "completion_mask": mask.long()}


def trl_grpo_loss(logprobs, old, ref, advantages, mask, clip_eps, beta, aggregation, max_tokens=None):
    """TRL 1.16 GRPOTrainer._compute_loss, token-level importance sampling, no vLLM, no entropy tricks."""
    fake = _fake_trainer(
        logprobs, top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token",
        beta=beta, loss_type=TRL_LOSS_TYPE[aggregation], epsilon_low=clip_eps, epsilon_high=clip_eps,
        use_vllm=False, vllm_importance_sampling_correction=False, max_completion_length=max_tokens,
        _entropy_bonus_enabled=False, args=SimpleNamespace(use_bias_correction_kl=False, delta=None))
    inputs = {**_trl_inputs(logprobs, mask), "advantages": advantages, "old_per_token_logps": old,
              "ref_per_token_logps": ref}
    return trl_grpo.GRPOTrainer._compute_loss(fake, None, inputs)


def trl_rloo_loss(logprobs, old, advantages, mask, clip_eps):
    """TRL 1.16 RLOOTrainer._compute_loss (sequence-level clipped ratio); old_logps are summed by TRL."""
    fake = _fake_trainer(logprobs, epsilon_low=clip_eps, epsilon_high=clip_eps)
    inputs = {**_trl_inputs(logprobs, mask), "advantages": advantages, "old_logps": (old * mask).sum(1)}
    return trl_rloo.RLOOTrainer._compute_loss(fake, None, inputs)


def trl_group_advantages(rewards, scale):
    """GRPOTrainer._generate_and_score_completions, 'sum_then_normalize' with one reward function:
    TRL's lines for the advantages, on a flat (P * k,) reward vector, with TRL's nanstd."""
    k = rewards.shape[1]
    flat = rewards.reshape(-1)
    mean = torch.nanmean(flat.view(-1, k), dim=1).repeat_interleave(k, dim=0)
    std = trl_nanstd(flat.view(-1, k), dim=1).repeat_interleave(k, dim=0)
    adv = flat - mean
    if scale != "none":
        adv = adv / (std + 1e-4)
    return torch.nan_to_num(adv, nan=0.0).view(-1, k)


def trl_rloo_advantages(rewards):
    """RLOOTrainer._generate_and_score_completions: TRL's leave-one-out lines, normalize_advantages=False."""
    k = rewards.shape[1]
    counts = (~torch.isnan(rewards)).sum(dim=1, keepdim=True)
    baselines = (torch.nansum(rewards, dim=1, keepdim=True) - rewards) / (counts - 1)
    return torch.nan_to_num(rewards.reshape(-1) - baselines.view(-1), nan=0.0).view(-1, k)


# ---------------------------------------------------------------------------
# Fixed inputs: a padded batch of P prompts x k completions, policy moved off old and ref
# ---------------------------------------------------------------------------


def _batch(P=3, k=4, T=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = P * k
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T  # one full-width row
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()  # right padding, as TRL's completions
    old = -torch.rand(B, T, generator=g) * 3 - 0.1
    logp = old + torch.randn(B, T, generator=g) * 0.3  # ratios both inside and outside [0.8, 1.2]
    ref = old + torch.randn(B, T, generator=g) * 0.2
    rewards = torch.randn(P, k, generator=g)
    rewards[1] = 0.5  # a group of identical rewards
    return {"logp": logp * mask, "old": old * mask, "ref": ref * mask, "mask": mask, "rewards": rewards}


def _reference_cases() -> dict:
    cases = {}
    for agg in L.AGGREGATIONS:
        for beta in (0.0, 0.04):
            cases[f"grpo_{agg}_beta{beta}"] = {"loss": "grpo", "aggregation": agg, "beta": beta, "seed": 1}
    cases["grpo_sequence_mean_beta0.04_clip0.1"] = {"loss": "grpo", "aggregation": "sequence_mean", "beta": 0.04,
                                                    "clip_eps": 0.1, "seed": 2}
    cases["rloo_clip0.2"] = {"loss": "rloo", "seed": 1}
    cases["rloo_clip0.05"] = {"loss": "rloo", "clip_eps": 0.05, "seed": 3}
    return cases


def _loss_and_grads(case: dict, use_trl: bool) -> dict:
    """The loss, the gradient w.r.t. the new log-probs, and the advantages, by our code or TRL's."""
    x = _batch(seed=case["seed"])
    eps, T = case.get("clip_eps", 0.2), x["mask"].shape[1]
    leaf = grad_leaf(x["logp"])
    if case["loss"] == "grpo":
        adv = (trl_group_advantages(x["rewards"], "std") if use_trl else L.group_advantages(x["rewards"])).reshape(-1)
        args = (x["old"], x["ref"], adv, x["mask"])
        if use_trl:
            loss = trl_grpo_loss(leaf, *args, eps, case["beta"], case["aggregation"], max_tokens=T + 3)
        else:
            loss = L.grpo_loss(leaf, *args, clip_eps=eps, beta=case["beta"], aggregation=case["aggregation"],
                               max_tokens=T + 3)[0]
    else:
        adv = (trl_rloo_advantages(x["rewards"]) if use_trl else L.rloo_advantages(x["rewards"])).reshape(-1)
        loss = trl_rloo_loss(leaf, x["old"], adv, x["mask"], eps) if use_trl else \
            L.rloo_loss(leaf, x["old"], adv, x["mask"], clip_eps=eps)[0]
    loss.backward()
    return {"loss": loss.item(), "grad": leaf.grad.flatten().tolist(), "advantages": adv.tolist()}


# ---------------------------------------------------------------------------
# Against the installed TRL
# ---------------------------------------------------------------------------


@needs_trl
@pytest.mark.parametrize("name", list(_reference_cases()))
def test_losses_and_gradients_match_installed_trl(name):
    case = _reference_cases()[name]
    ours, theirs = _loss_and_grads(case, use_trl=False), _loss_and_grads(case, use_trl=True)
    assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-5, abs=1e-7)
    assert ours["grad"] == pytest.approx(theirs["grad"], rel=1e-5, abs=1e-8)
    assert ours["advantages"] == pytest.approx(theirs["advantages"], rel=1e-6, abs=1e-7)
    assert any(g != 0 for g in ours["grad"])  # the comparison is not vacuous


@needs_trl
@pytest.mark.parametrize("scale", ["std", "none"])
def test_group_advantages_match_trl_lines_and_std_is_unbiased(scale):
    r = torch.randn(5, 6)
    r[2] = -1.0
    torch.testing.assert_close(L.group_advantages(r, scale=scale), trl_group_advantages(r, scale))
    torch.testing.assert_close(L.rloo_advantages(r), trl_rloo_advantages(r))
    if scale == "std":
        ours = L.group_advantages(r)
        torch.testing.assert_close(ours, (r - r.mean(1, keepdim=True)) / (r.std(1, unbiased=True, keepdim=True) + 1e-4))


@needs_trl
def test_frozen_reference_is_what_the_installed_trl_computes():
    frozen = json.loads(REFERENCE.read_text())["cases"]
    for name, case in _reference_cases().items():
        live = _loss_and_grads(case, use_trl=True)
        for key in ("loss", "grad", "advantages"):
            assert live[key] == pytest.approx(frozen[name][key], rel=1e-5, abs=1e-7), (name, key)


@pytest.mark.parametrize("name", list(_reference_cases()))
def test_losses_match_frozen_trl_reference_numbers(name):
    frozen = json.loads(REFERENCE.read_text())
    assert frozen["trl_version"].startswith(TRL_VERSION + "."), frozen["trl_version"]
    ours = _loss_and_grads(_reference_cases()[name], use_trl=False)
    ref = frozen["cases"][name]
    assert ours["loss"] == pytest.approx(ref["loss"], rel=1e-5, abs=1e-7)
    assert ours["grad"] == pytest.approx(ref["grad"], rel=1e-4, abs=1e-8)
    assert ours["advantages"] == pytest.approx(ref["advantages"], rel=1e-5, abs=1e-7)


# ---------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------


def test_rloo_advantages_by_hand():
    r = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
    # completion 0: 1 - (2 + 3 + 6) / 3 = -8/3; completion 3: 6 - (1 + 2 + 3) / 3 = 4
    torch.testing.assert_close(L.rloo_advantages(r), torch.tensor([[-8 / 3, -4 / 3, 0.0, 4.0]]))
    # = k / (k - 1) * (r - group mean): leave-one-out is the group mean, rescaled
    torch.testing.assert_close(L.rloo_advantages(r), 4 / 3 * L.group_advantages(r, scale="none"))


def test_group_advantages_by_hand():
    r = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    a = 1 / (math.sqrt(2) + 1e-4)  # mean 1, unbiased std sqrt(2) (the biased std would be 1)
    torch.testing.assert_close(L.group_advantages(r), torch.tensor([[-a, a], [0.0, 0.0]]))
    torch.testing.assert_close(L.group_advantages(r, scale="none"), torch.tensor([[-1.0, 1.0], [0.0, 0.0]]))


def test_grpo_loss_by_hand():
    # one completion of 2 tokens (a third column is padding), A = 1, eps = 0.2
    old = torch.tensor([[-1.0, -2.0, 0.0]])
    logp = grad_leaf(old + torch.tensor([[0.1, 0.5, 0.0]]))  # ratios e^0.1 (inside), e^0.5 (clipped to 1.2)
    ref = old.clone()
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, stats = L.grpo_loss(logp, old, ref, torch.tensor([1.0]), mask, clip_eps=0.2, beta=0.5)
    k3 = [math.exp(-d) + d - 1 for d in (0.1, 0.5)]  # r = ref / pi = e^-d
    expected = (-math.exp(0.1) - 1.2 + 0.5 * (k3[0] + k3[1])) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert stats["clipfrac"].item() == pytest.approx(0.5)
    assert stats["kl"].item() == pytest.approx(sum(k3) / 2, rel=1e-6)
    loss.backward()
    # the clipped token gets only the KL gradient: d/dlogp of beta * k3 / 2 = beta * (1 - e^-d) / 2
    assert logp.grad[0, 1].item() == pytest.approx(0.5 * (1 - math.exp(-0.5)) / 2, rel=1e-5)
    assert logp.grad[0, 2].item() == 0.0


def test_rloo_loss_by_hand_and_reinforce_gradient_at_step0():
    logp = grad_leaf(torch.tensor([[-1.0, -2.0], [-0.5, 0.0]]))
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([2.0, -2.0])
    loss, stats = L.rloo_loss(logp, logp.detach().clone(), adv, mask)
    assert loss.item() == 0.0 and stats["ratio_mean"].item() == 1.0 and stats["clipfrac"].item() == 0.0
    loss.backward()
    # REINFORCE: d loss / d logp_it = -A_i / B on every completion token, 0 on padding
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.0, -1.0], [1.0, 0.0]]))


def test_kl_penalised_rewards_by_hand():
    lp = torch.tensor([[-1.0, -1.0, 9.0]])
    ref = torch.tensor([[-1.5, -2.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    out = L.kl_penalised_rewards(torch.tensor([1.0]), lp, ref, mask, beta=0.1)
    torch.testing.assert_close(out, torch.tensor([1.0 - 0.1 * 1.5]))
    step0 = L.kl_penalised_rewards(torch.tensor([1.0]), lp, lp.clone(), mask, 0.1)
    torch.testing.assert_close(step0, torch.tensor([1.0]))


# ---------------------------------------------------------------------------
# Step-0 values, identical rewards, padding
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("aggregation", L.AGGREGATIONS)
def test_grpo_step0_ratio_one_kl_zero_advantages_sum_to_zero(aggregation):
    x = _batch()
    adv = L.group_advantages(x["rewards"])
    torch.testing.assert_close(adv.sum(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(L.rloo_advantages(x["rewards"]).sum(1), torch.zeros(3), atol=1e-5, rtol=0)
    logp = grad_leaf(x["old"])
    loss, stats = L.grpo_loss(logp, x["old"], x["old"], adv.reshape(-1), x["mask"], beta=0.04,
                              aggregation=aggregation, max_tokens=10)
    assert stats["ratio_mean"].item() == 1.0 and stats["kl"].item() == 0.0 and stats["clipfrac"].item() == 0.0
    # loss = - aggregated advantage; with equal lengths in a group that is 0
    eq = torch.ones(4, 5)
    loss_eq, _ = L.grpo_loss(grad_leaf(torch.zeros(4, 5)), torch.zeros(4, 5), torch.zeros(4, 5),
                             L.group_advantages(torch.randn(1, 4)).reshape(-1), eq, aggregation=aggregation,
                             max_tokens=5)
    assert abs(loss_eq.item()) < 1e-6


def test_identical_rewards_give_zero_advantage_and_no_nan():
    r = torch.full((2, 8), 0.7)
    for adv in (L.group_advantages(r), L.group_advantages(r, scale="none"), L.rloo_advantages(r)):
        assert torch.equal(adv, torch.zeros(2, 8))
    x = _batch(P=2, k=8)
    logp = grad_leaf(x["logp"])
    loss, _ = L.grpo_loss(logp, x["old"], x["ref"], L.group_advantages(r).reshape(-1), x["mask"], beta=0.0)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logp.grad, torch.zeros_like(logp))  # nothing to learn, no NaN
    logp = grad_leaf(x["logp"])
    loss, _ = L.rloo_loss(logp, x["old"], L.rloo_advantages(r).reshape(-1), x["mask"])
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logp.grad).all()


@pytest.mark.parametrize("aggregation", L.AGGREGATIONS)
def test_padding_garbage_and_padding_side_do_not_matter(aggregation):
    x = _batch()
    adv = L.group_advantages(x["rewards"]).reshape(-1)
    kw = dict(beta=0.04, aggregation=aggregation, max_tokens=12)
    base = L.grpo_loss(x["logp"], x["old"], x["ref"], adv, x["mask"], **kw)[0]
    pad = x["mask"] == 0
    noisy = [torch.where(pad, torch.full_like(t, v), t) for t, v in
             ((x["logp"], float("nan")), (x["old"], 50.0), (x["ref"], -float("inf")))]
    assert L.grpo_loss(*noisy[:2], noisy[2], adv, x["mask"], **kw)[0].item() == pytest.approx(base.item(), rel=1e-6)
    # left padding (as alignlab's batches are) instead of right padding: the same loss
    lengths = x["mask"].sum(1).long()
    T = x["mask"].shape[1]

    def left(t):
        return torch.stack([torch.roll(row, int(T - n)) for row, n in zip(t, lengths)])

    got = L.grpo_loss(left(x["logp"]), left(x["old"]), left(x["ref"]), adv, left(x["mask"]), **kw)[0]
    assert got.item() == pytest.approx(base.item(), rel=1e-6)
    rloo = L.rloo_loss(x["logp"], x["old"], adv, x["mask"])[0]
    assert L.rloo_loss(left(x["logp"]), left(x["old"]), adv, left(x["mask"]))[0].item() == pytest.approx(rloo.item())


def test_aggregations_differ_by_length_as_dr_grpo_says():
    # two completions, same advantage +1, lengths 1 and 4; step 0
    mask = torch.tensor([[1.0, 0, 0, 0], [1.0, 1, 1, 1]])
    adv = torch.tensor([1.0, 1.0])
    grads = {}
    for agg in L.AGGREGATIONS:
        logp = grad_leaf(torch.zeros(2, 4))
        L.grpo_loss(logp, torch.zeros(2, 4), None, adv, mask, beta=0.0, aggregation=agg, max_tokens=4)[0].backward()
        grads[agg] = logp.grad
    # sequence_mean: each completion weighs 1/B, spread over its tokens: the short one's token gets 4x
    torch.testing.assert_close(grads["sequence_mean"][:, 0], torch.tensor([-0.5, -0.125]))
    # token_mean and dr_grpo: every token the same weight (1 / 5 tokens, 1 / (B * max_tokens) = 1/8)
    torch.testing.assert_close(grads["token_mean"][:, 0], torch.tensor([-0.2, -0.2]))
    torch.testing.assert_close(grads["dr_grpo"][:, 0], torch.tensor([-0.125, -0.125]))


def test_clip_only_stops_the_gradient_in_the_direction_of_the_advantage():
    old = torch.zeros(2, 1)
    logp = grad_leaf(torch.tensor([[0.5], [0.5]]))  # ratio e^0.5 > 1.2 for both
    L.grpo_loss(logp, old, None, torch.tensor([1.0, -1.0]), torch.ones(2, 1), beta=0.0)[0].backward()
    assert logp.grad[0, 0].item() == 0.0       # A > 0, ratio above 1 + eps: clipped, no gradient
    assert logp.grad[1, 0].item() > 0          # A < 0: the unclipped branch is the min, still pushed down


@needs_trl
def test_a_tied_group_is_exactly_zero_where_trl_leaves_rounding_noise():
    r = torch.full((1, 8), 0.7)  # float32: the mean of eight 0.7s is not exactly 0.7
    assert trl_group_advantages(r, "std").abs().max() > 1e-4  # TRL: rounding error / (0 + 1e-4)
    assert torch.equal(L.group_advantages(r), torch.zeros(1, 8))


# ---------------------------------------------------------------------------
# The methods (alignlab.methods.grpo) on a tiny untrained model
# ---------------------------------------------------------------------------


def _tiny_run(tiny_lm, cls, **kw):
    from alignlab.methods import grpo, rl

    lm, tok = tiny_lm
    config = cls(**{"steps": 2, "batch_size": 3, "k": 4, "minibatch": 6, "epochs": 1, "max_new_tokens": 8, **kw})
    policy = rl.new_policy(lm)
    return grpo, policy, lm, tok, config


@pytest.mark.parametrize("which", ["rloo", "grpo"])
def test_group_rollout_groups_by_prompt_and_first_ratio_is_one(tiny_lm, which):
    from alignlab.methods import grpo

    grpo_, policy, lm, tok, config = _tiny_run(tiny_lm, grpo.GRPOConfig if which == "grpo" else grpo.RLOOConfig)
    prompts = ["the acting", "the plot", "i thought the music"]
    ro = grpo_.group_rollout(policy, lm, tok, prompts, config, seed=0)
    assert ro.batch.prompts == [p for p in prompts for _ in range(4)]
    adv = grpo_.advantages(ro, config)
    assert adv.shape == (12,)
    torch.testing.assert_close(adv.view(3, 4).sum(1), torch.zeros(3), atol=1e-4, rtol=0)
    idx = torch.arange(6)
    loss, stats = grpo_.minibatch_loss(policy, ro, adv, idx, config)
    assert stats["ratio_mean"] == 1.0 and stats["approx_kl"] == 0.0 and stats["clipfrac"] == 0.0
    assert math.isfinite(loss.item())


def test_train_group_logs_defined_metrics_and_changes_the_policy(tiny_lm):
    from alignlab import metrics
    from alignlab.methods import grpo

    for cls in (grpo.RLOOConfig, grpo.GRPOConfig):
        grpo_, policy, lm, tok, config = _tiny_run(tiny_lm, cls, epochs=2)
        before = [p.detach().clone() for p in policy.lm.parameters()]
        # the untrained model's text is all invalid (one gold score for all: zero advantages), so
        # score by length instead, which varies within a group
        history = grpo_.train_group(policy, lm, tok, config, progress=False,
                                    reward_fn=lambda p, c, f: [float(len(x.split())) for x in c])
        keys = set(history.rows[1])
        assert not metrics.undefined(keys), metrics.undefined(keys)
        assert {"loss", "clipfrac", "rollout_kl", "score", "grad_norm"} <= keys
        assert any(not torch.equal(a, b) for a, b in zip(before, policy.lm.parameters()))
        assert all(torch.equal(p, torch.zeros_like(p)) for p in policy.value_head.parameters())  # never trained
        assert config.completions == 2 * 3 * 4


def test_exercise_hooks_reproduce_the_library_run_exactly(tiny_lm):
    """train_group(advantage_fn=, loss_fn=) with the library's own functions is the same run,
    and a wrong loss (sign flipped) gives a different one: the hooks are really used."""
    from alignlab import losses
    from alignlab.methods import grpo

    def score(p, c, f):
        return [float(len(x.split())) for x in c]

    def run(**hooks):
        grpo_, policy, lm, tok, config = _tiny_run(tiny_lm, grpo.GRPOConfig, epochs=2)
        torch.manual_seed(0)
        h = grpo_.train_group(policy, lm, tok, config, progress=False, reward_fn=score, **hooks)
        return h, [p.detach().clone() for p in policy.lm.parameters()]

    h0, w0 = run()
    h1, w1 = run(advantage_fn=lambda r: losses.group_advantages(r, "std", 1e-4),
                 loss_fn=lambda *a: losses.grpo_loss(*a)[0])
    assert h0.rows == h1.rows and all(torch.equal(a, b) for a, b in zip(w0, w1))
    h2, w2 = run(loss_fn=lambda *a: -losses.grpo_loss(*a)[0])
    assert any(not torch.equal(a, b) for a, b in zip(w0, w2))


def test_configs_check_their_settings():
    from alignlab.methods import grpo

    with pytest.raises(ValueError, match="k must be >= 2"):
        grpo.GRPOConfig(k=1)
    with pytest.raises(ValueError, match="minibatch"):
        grpo.RLOOConfig(batch_size=2, k=2, minibatch=8)
    with pytest.raises(ValueError, match="aggregation"):
        grpo.GRPOConfig(aggregation="sum")
    with pytest.raises(ValueError, match="scale"):
        grpo.GRPOConfig(scale="batch")
    # the quick defaults sample no more completions than lecture 03's PPO (40 x 48)
    from alignlab.methods.ppo import PPOConfig

    ppo = PPOConfig.for_profile("quick")
    for cls in (grpo.RLOOConfig, grpo.GRPOConfig):
        assert cls.for_profile("quick").completions <= ppo.steps * ppo.batch_size


# ---------------------------------------------------------------------------
# Errors that teach
# ---------------------------------------------------------------------------


def test_errors_name_the_argument_and_the_cause():
    x = _batch()
    with pytest.raises(ValueError, match="k >= 2"):
        L.group_advantages(torch.randn(6, 1))
    with pytest.raises(ValueError, match="rewards.*dimension"):
        L.rloo_advantages(torch.randn(6))
    with pytest.raises(ValueError, match="advantages.*dimension"):
        L.grpo_loss(x["logp"], x["old"], x["ref"], torch.zeros_like(x["logp"]), x["mask"])
    with pytest.raises(ValueError, match="reshape"):
        L.grpo_loss(x["logp"], x["old"], x["ref"], torch.zeros(3), x["mask"])
    with pytest.raises(ValueError, match="max_tokens"):
        L.grpo_loss(x["logp"], x["old"], x["ref"], torch.zeros(12), x["mask"], aggregation="dr_grpo")
    with pytest.raises(ValueError, match="ref_logprobs.*None"):
        L.grpo_loss(x["logp"], x["old"], None, torch.zeros(12), x["mask"], beta=0.1)
    with pytest.raises(ValueError, match="aggregation"):
        L.grpo_loss(x["logp"], x["old"], x["ref"], torch.zeros(12), x["mask"], aggregation="mean")
    with pytest.raises(ValueError, match="scale"):
        L.group_advantages(torch.randn(2, 3), scale="batch")
    bad = x["mask"].clone()
    bad[3] = 0
    with pytest.raises(ValueError, match="row 3 has no completion token"):
        L.rloo_loss(x["logp"], x["old"], torch.zeros(12), bad)


if __name__ == "__main__" and "--freeze" in sys.argv:  # python tests/test_grpo.py --freeze
    assert HAVE_TRL, f"freezing needs TRL {TRL_VERSION}.x installed"
    cases = {name: _loss_and_grads(c, use_trl=True) for name, c in _reference_cases().items()}
    REFERENCE.write_text(json.dumps({"trl_version": trl.__version__, "cases": cases}, indent=1) + "\n")
    print(f"wrote {REFERENCE} from TRL {trl.__version__}")
