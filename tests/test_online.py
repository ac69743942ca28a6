"""Tests for lecture 06: online DPO, BPO and VPO (alignlab.losses, alignlab.methods.online).

* The new losses (``bpo_loss``, ``vpo_loss``, ``xpo_loss``) against hand computations, their
  step-0 values (ln 2; VPO's regulariser exactly 0) and their gradients; online VPO with
  pi_cal = pi_ref has XPO's gradient with alpha_XPO = alpha * beta.
* Online DPO against TRL 1.16's own code: ``OnlineDPOTrainer.training_step`` (in
  ``trl.experimental.online_dpo``) runs on a stand-in ``self`` whose generator, log-prob
  function and reward function return tensors we choose; our labelling rule
  (``online.label_with_scores``) plus ``dpo_loss`` must give its loss and gradient. TRL's
  numbers on fixed inputs are frozen in tests/fixtures/trl_1_16_online_dpo_reference.json, so
  the comparison also runs without TRL; ``python tests/test_online.py --freeze`` rewrites it.
  (TRL 1.16 no longer ships XPO; ``xpo_loss`` is checked against the formula TRL <= 1.13 used.)
* The loop: BPO's reference is a frozen snapshot, unchanged within a phase and replaced by the
  policy at each phase boundary, so the loss is ln 2 at the first step of every phase and
  only there; F = 1 is offline DPO on the same pairs, step for step (slow: the SFT model).
"""

import copy
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from alignlab import losses as L
from alignlab.methods import online
from conftest import HAVE_TRL, TRL_VERSION, grad_leaf, needs_trl

if HAVE_TRL:
    import trl
    from trl.experimental.online_dpo import online_dpo_trainer as trl_online

pytestmark = pytest.mark.usefixtures("seeded")
REFERENCE = Path(__file__).parent / "fixtures" / "trl_1_16_online_dpo_reference.json"
LN2 = math.log(2)


# ---------------------------------------------------------------------------
# The losses, by hand
# ---------------------------------------------------------------------------


def test_bpo_loss_by_hand_and_at_each_phase_start():
    pc, pr = torch.tensor([-10.0, -12.0]), torch.tensor([-11.0, -9.0])
    bc, br = torch.tensor([-10.5, -12.0]), torch.tensor([-10.0, -9.5])
    loss, rc, rr = L.bpo_loss(pc, pr, bc, br, beta=0.5)
    # pair 0: h = 0.5 - (-1) = 1.5; pair 1: h = 0 - 0.5 = -0.5
    want = (math.log1p(math.exp(-0.75)) + math.log1p(math.exp(0.25))) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)
    torch.testing.assert_close(rc, torch.tensor([0.25, 0.0]))
    torch.testing.assert_close(rr, torch.tensor([-0.5, 0.25]))
    # the formula is DPO's with the behaviour policy as the reference
    assert loss.item() == pytest.approx(L.dpo_loss(pc, pr, bc, br, 0.5)[0].item(), rel=1e-7)
    # phase start: the policy IS the behaviour snapshot -> ln 2, rewards 0
    s, t = torch.randn(6) - 20, torch.randn(6) - 20
    loss0, rc0, rr0 = L.bpo_loss(s, t, s.clone(), t.clone(), beta=0.1)
    assert loss0.item() == pytest.approx(LN2, abs=1e-7) and rc0.abs().max() == 0 and rr0.abs().max() == 0


def test_bpo_loss_gradient_flows_to_the_policy_only():
    pc, pr, bc, br = (grad_leaf(torch.randn(4) - 5) for _ in range(4))
    loss, *_ = L.bpo_loss(pc, pr, bc, br, beta=0.3)
    loss.backward()
    assert bc.grad is None and br.grad is None  # the behaviour policy is frozen
    h = (pc - bc) - (pr - br)
    torch.testing.assert_close(pc.grad, -0.3 * torch.sigmoid(-0.3 * h).detach() / 4)
    torch.testing.assert_close(pr.grad, 0.3 * torch.sigmoid(-0.3 * h).detach() / 4)


@pytest.mark.parametrize("mode, sign", [("online", 1.0), ("offline", -1.0)])
def test_vpo_loss_by_hand_both_signs(mode, sign):
    pc, pr, rc, rr = torch.tensor([-8.0]), torch.tensor([-9.0]), torch.tensor([-8.5]), torch.tensor([-8.5])
    cal_p, cal_r = torch.tensor([-6.0, -7.0, -9.0]), torch.tensor([-6.5, -7.0, -8.0])
    beta, alpha = 0.2, 0.7
    loss, c, r, reg = L.vpo_loss(pc, pr, rc, rr, cal_p, cal_r, beta, alpha, mode)
    dpo = math.log1p(math.exp(-0.2 * 1.0))  # h = 0.5 - (-0.5) = 1
    mean_ratio = (0.5 + 0.0 - 1.0) / 3
    assert reg.item() == pytest.approx(sign * alpha * beta * mean_ratio, rel=1e-6)
    assert loss.item() == pytest.approx(dpo + sign * alpha * beta * mean_ratio, rel=1e-6)
    torch.testing.assert_close(c, torch.tensor([0.1])) and torch.testing.assert_close(r, torch.tensor([-0.1]))


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_vpo_step0_regulariser_is_zero_and_its_gradient_has_the_sign_of_the_mode(mode):
    s, t, cal = torch.randn(5) - 20, torch.randn(5) - 20, torch.randn(7) - 15
    cal_p = grad_leaf(cal)
    loss, c, r, reg = L.vpo_loss(s, t, s.clone(), t.clone(), cal_p, cal.clone(), beta=0.1, alpha=3.0, mode=mode)
    assert loss.item() == pytest.approx(LN2, abs=1e-6) and reg.item() == 0.0
    loss.backward()
    # d loss / d log pi(y_cal) = sign * alpha * beta / M: online pushes the SFT samples DOWN
    sign = L.VPO_MODES[mode]
    torch.testing.assert_close(cal_p.grad, torch.full((7,), sign * 3.0 * 0.1 / 7))


def test_vpo_with_alpha_zero_is_dpo():
    args = [torch.randn(6) * 3 - 10 for _ in range(4)]
    cal = torch.randn(6) - 10
    v = L.vpo_loss(*args, cal, cal - 1.0, beta=0.4, alpha=0.0)
    d = L.dpo_loss(*args, beta=0.4)
    assert v[0].item() == pytest.approx(d[0].item(), rel=1e-7) and v[3].item() == 0.0


def test_xpo_by_hand_and_online_vpo_has_its_gradient():
    pc, pr, rc, rr = (torch.randn(4) * 2 - 10 for _ in range(4))
    y_ref_pol, y_ref_ref = torch.randn(4) - 12, torch.randn(4) - 12
    beta, alpha = 0.25, 0.4
    # TRL <= 1.13 XPOTrainer: loss = (dpo_losses + alpha * model_logprobs_ref_data_sum).mean()
    h = (pc - rc) - (pr - rr)
    by_hand = (-torch.nn.functional.logsigmoid(beta * h) + alpha * beta * y_ref_pol).mean()
    x_leaf, v_leaf = grad_leaf(y_ref_pol), grad_leaf(y_ref_pol)
    xpo, *_, bonus = L.xpo_loss(pc, pr, rc, rr, x_leaf, beta=beta, alpha=alpha * beta)
    vpo, *_, reg = L.vpo_loss(pc, pr, rc, rr, v_leaf, y_ref_ref, beta=beta, alpha=alpha, mode="online")
    assert xpo.item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert bonus.item() == pytest.approx(alpha * beta * y_ref_pol.mean().item(), rel=1e-6)
    # the two losses differ by a constant, alpha * beta * mean log pi_ref(y_ref) ...
    assert (xpo - vpo).item() == pytest.approx(alpha * beta * y_ref_ref.mean().item(), rel=1e-5)
    xpo.backward()
    vpo.backward()
    torch.testing.assert_close(x_leaf.grad, v_leaf.grad)  # ... so their gradients are equal


def test_online_losses_reject_bad_input_with_a_named_cause():
    x = torch.randn(4)
    with pytest.raises(ValueError, match="vpo_loss: `mode`"):
        L.vpo_loss(x, x, x, x, x, x, mode="optimistic")
    with pytest.raises(ValueError, match="`alpha` should be a finite number >= 0.*sign comes from `mode`"):
        L.vpo_loss(x, x, x, x, x, x, alpha=-1.0)
    with pytest.raises(ValueError, match="ref_cal_logps"):
        L.vpo_loss(x, x, x, x, x, torch.randn(3))
    with pytest.raises(ValueError, match="bpo_loss: `behaviour_rejected_logps`"):
        L.bpo_loss(x, x, x, torch.randn(5))
    with pytest.raises(ValueError, match="xpo_loss: `policy_refsample_logps` should have 1 dimension"):
        L.xpo_loss(x, x, x, x, torch.randn(4, 3))


# ---------------------------------------------------------------------------
# Online DPO against TRL 1.16's OnlineDPOTrainer.training_step
# ---------------------------------------------------------------------------


def _online_batch(seed: int, B: int = 5, T: int = 6) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (2 * B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()  # right padding, as TRL's completions
    logp = -torch.rand(2 * B, T, generator=g) * 3 - 0.1
    ref = logp + torch.randn(2 * B, T, generator=g) * 0.5
    rewards = torch.randn(2 * B, generator=g)
    rewards[B + 1] = rewards[1]  # a tie: TRL picks the first sample
    return {"logp": logp * mask, "ref": ref * mask, "mask": mask, "rewards": rewards, "B": B}


def _reference_cases() -> dict:
    return {"beta0.1": {"beta": 0.1, "seed": 1}, "beta0.5": {"beta": 0.5, "seed": 2},
            "beta0.05_B8": {"beta": 0.05, "seed": 3, "B": 8}}


def trl_online_dpo_loss(x: dict, leaf, beta: float):
    """TRL's training_step on a stand-in self: our tensors as its samples, log-probs and rewards."""
    B = x["B"]
    policy_model, ref_model = SimpleNamespace(train=lambda: None), object()
    prompt_ids = torch.ones(2 * B, 2, dtype=torch.long)
    completion_ids = x["mask"] * 7  # any ids: the log-probs come from _forward
    accelerator = SimpleNamespace(gather_for_metrics=lambda t: t, backward=lambda loss, **k: loss.backward())
    fake = SimpleNamespace(
        args=SimpleNamespace(use_vllm=False, missing_eos_penalty=None, loss_type="sigmoid",
                             torch_empty_cache_steps=None, optim="adamw_torch", n_gpu=1,
                             gradient_accumulation_steps=1),
        _generate=lambda model, prompts, images: (prompt_ids, torch.ones_like(prompt_ids), completion_ids,
                                                  x["mask"], None),
        _forward=lambda model, *a: leaf if model is policy_model else x["ref"],
        ref_model=ref_model, eos_token_ids=[0], beta=beta, reward_funcs=[None],
        processing_class=SimpleNamespace(batch_decode=lambda ids, skip_special_tokens: ["w"] * len(ids)),
        _calculate_rewards_from_functions=lambda **kw: x["rewards"].clone(),
        stats=defaultdict(list), accelerator=accelerator, state=SimpleNamespace(global_step=1))
    loss = trl_online.OnlineDPOTrainer.training_step(fake, policy_model, {"prompt": ["p"] * B})
    return loss, dict(fake.stats)


def ours_online_dpo_loss(x: dict, leaf, beta: float):
    """Ours: label each prompt's two samples with label_with_scores, then dpo_loss on the summed log-probs."""
    B = x["B"]
    a, b = [f"a{i}" for i in range(B)], [f"b{i}" for i in range(B)]
    rows = online.label_with_scores(["p"] * B, a, b, x["rewards"][:B], x["rewards"][B:])
    index = {name: i for i, name in enumerate(a + b)}
    ci = [index[c] for c in rows["chosen"]]
    ri = [index[r] for r in rows["rejected"]]
    summed, ref_summed = (leaf * x["mask"]).sum(1), (x["ref"] * x["mask"]).sum(1)
    loss, rc, rr = L.dpo_loss(summed[ci], summed[ri], ref_summed[ci], ref_summed[ri], beta)
    loss.backward()
    return loss, {"rewards/margins": [(rc - rr).mean().item()]}


def _loss_and_grad(name: str, use_trl: bool) -> dict:
    case = _reference_cases()[name]
    x = _online_batch(case["seed"], B=case.get("B", 5))
    leaf = grad_leaf(x["logp"])
    loss, stats = (trl_online_dpo_loss if use_trl else ours_online_dpo_loss)(x, leaf, case["beta"])
    return {"loss": loss.item(), "grad": leaf.grad.flatten().tolist(), "margin": stats["rewards/margins"][0]}


@needs_trl
@pytest.mark.parametrize("name", list(_reference_cases()))
def test_online_dpo_matches_installed_trl(name):
    ours, theirs = _loss_and_grad(name, use_trl=False), _loss_and_grad(name, use_trl=True)
    assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-6)
    assert ours["grad"] == pytest.approx(theirs["grad"], rel=1e-5, abs=1e-9)
    assert ours["margin"] == pytest.approx(theirs["margin"], rel=1e-5)
    assert any(g != 0 for g in ours["grad"])  # not vacuous


@needs_trl
def test_frozen_reference_is_what_the_installed_trl_computes():
    frozen = json.loads(REFERENCE.read_text())["cases"]
    for name in _reference_cases():
        live = _loss_and_grad(name, use_trl=True)
        for key in ("loss", "grad", "margin"):
            assert live[key] == pytest.approx(frozen[name][key], rel=1e-6, abs=1e-9), (name, key)


@pytest.mark.parametrize("name", list(_reference_cases()))
def test_online_dpo_matches_frozen_trl_numbers(name):
    frozen = json.loads(REFERENCE.read_text())
    assert frozen["trl_version"].startswith(TRL_VERSION + "."), frozen["trl_version"]
    ours, ref = _loss_and_grad(name, use_trl=False), frozen["cases"][name]
    assert ours["loss"] == pytest.approx(ref["loss"], rel=1e-6)
    assert ours["grad"] == pytest.approx(ref["grad"], rel=1e-5, abs=1e-9)


def test_label_with_scores_ties_go_to_the_first_sample_and_agreement_is_against_gold():
    prompts = ["the acting"] * 3
    a = ["was great .", "was bad .", "was fine ."]
    b = ["was bad .", "was great .", "was fine ."]
    rows = online.label_with_scores(prompts, a, b, [1.0, 1.0, 0.0], [0.0, 1.0, 0.0])
    assert rows["chosen"] == ["was great .", "was bad .", "was fine ."]  # second and third: ties -> a
    assert rows["label_agrees_with_gold"][0] == 1.0 and rows["label_agrees_with_gold"][1] == 0.0
    assert rows["label_agrees_with_gold"][2] == 0.5  # both completions score the same in gold
    assert rows["gold_chosen"][0] > rows["gold_rejected"][0]


# ---------------------------------------------------------------------------
# Helpers: weight averages, snapshots, exploration measures
# ---------------------------------------------------------------------------


def test_average_models_is_the_exact_mean_of_the_weights(tiny_lm):
    model, _ = tiny_lm
    copies = [copy.deepcopy(model) for _ in range(3)]
    with torch.no_grad():
        for k, m in enumerate(copies):
            for p in m.parameters():
                p.add_(float(k))
    avg = online.average_models(copies)
    for (name, p), p0 in zip(avg.named_parameters(), model.parameters()):
        torch.testing.assert_close(p, p0 + 1.0, msg=name)  # mean of +0, +1, +2


def test_snapshot_is_a_frozen_copy(tiny_lm):
    model, _ = tiny_lm
    snap = online.snapshot(model)
    assert snap is not model and not snap.training
    assert not any(p.requires_grad for p in snap.parameters())
    assert all(torch.equal(a, b) for a, b in zip(snap.parameters(), model.parameters()))


def test_distinct_n():
    assert online.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert online.distinct_n(["a b", "a b"], 2) == 0.5 and online.distinct_n(["a"], 2) == 0.0


def test_configs_refuse_budgets_that_do_not_split():
    with pytest.raises(ValueError, match="phases=3 must divide steps=40"):
        online._check_config(online.BPOConfig(phases=3))
    with pytest.raises(ValueError, match="n_pairs=1920 must split into 40 equal phases of at least batch_size=64"):
        online._check_config(online.OnlineDPOConfig(batch_size=64))
    with pytest.raises(ValueError, match="reference must be 'sft' or 'behaviour'"):
        online._check_config(online.OnlineDPOConfig(reference="policy"))


def test_method_defaults_are_what_their_names_say():
    o, b, v = online.OnlineDPOConfig(), online.BPOConfig(), online.VPOConfig()
    assert o.phases == o.steps and o.reference == "sft" and o.alpha == 0
    assert b.reference == "behaviour" and 1 < b.phases <= b.steps and b.alpha == 0
    assert v.alpha > 0 and v.reference == "sft" and v.vpo_mode == "online"
    assert o.n_pairs == b.n_pairs == v.n_pairs  # one annotation budget
    for c in (o, b, v):
        online._check_config(c)


# ---------------------------------------------------------------------------
# The loop (a tiny untrained GPT-2: seconds)
# ---------------------------------------------------------------------------


def _tiny_run(tiny_lm, **settings):
    ref, tok = tiny_lm
    config = online.OnlineDPOConfig(**{"steps": 6, "batch_size": 4, "n_pairs": 24, "phases": 3,
                                       "max_new_tokens": 6, **settings})
    captured = []

    def on_phase(f, behaviour, pairs):
        captured.append({"f": f, "behaviour": behaviour, "len": len(pairs),
                         "weights": [p.detach().clone() for p in behaviour.parameters()]})

    policy = copy.deepcopy(ref)
    history = online.train_online(policy, ref, tok, config, None, progress=False, on_phase=on_phase)
    return policy, history, captured


def test_bpo_reference_is_frozen_within_a_phase_and_replaced_at_its_boundaries(tiny_lm):
    ref, _ = tiny_lm
    policy, history, phases = _tiny_run(tiny_lm, reference="behaviour", lr=1e-2)
    assert [p["f"] for p in phases] == [0, 1, 2] and all(p["len"] == 8 for p in phases)
    for p in phases:  # frozen: its weights never moved while the phase trained
        assert not any(w.requires_grad for w in p["behaviour"].parameters())
        assert all(torch.equal(a, b) for a, b in zip(p["weights"], p["behaviour"].parameters()))
    # replaced at each boundary: phase 0's snapshot is the SFT model, later ones differ from it
    assert all(torch.equal(a, b) for a, b in zip(phases[0]["weights"], ref.parameters()))
    for prev, cur in zip(phases, phases[1:]):
        assert any(not torch.equal(a, b) for a, b in zip(prev["weights"], cur["weights"]))
    loss = dict(zip(*history.series("loss")))
    for step in (1, 3, 5):  # first step of each phase: the policy equals its new reference
        assert loss[step] == pytest.approx(LN2, abs=1e-5), (step, loss)
    for step in (2, 4, 6):
        assert abs(loss[step] - LN2) > 1e-4, (step, loss)
    assert dict(zip(*history.series("phase"))) == {1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 6: 3}
    assert history.last("labelled_pairs") == 24


def test_online_dpo_keeps_the_sft_reference_so_later_phases_do_not_start_at_ln2(tiny_lm):
    _, history, _ = _tiny_run(tiny_lm, reference="sft", lr=1e-2)
    loss = dict(zip(*history.series("loss")))
    assert loss[1] == pytest.approx(LN2, abs=1e-5)
    assert abs(loss[3] - LN2) > 1e-4 and abs(loss[5] - LN2) > 1e-4


def test_vpo_regulariser_is_zero_at_step_one_then_moves(tiny_lm):
    _, history, _ = _tiny_run(tiny_lm, alpha=1.0, lr=1e-2)
    reg = history.series("vpo/regulariser")[1]
    assert reg[0] == pytest.approx(0.0, abs=1e-6) and any(abs(r) > 1e-5 for r in reg[1:])


def test_ensemble_policy_is_the_average_of_its_members(tiny_lm, monkeypatch):
    seen = {}
    real = online.average_models

    def spy(models, into=None):  # keep copies of the members as they were at the last average
        seen["members"] = [copy.deepcopy(m) for m in models]
        return real(models, into)

    monkeypatch.setattr(online, "average_models", spy)
    policy, history, phases = _tiny_run(tiny_lm, reference="behaviour", ensemble=3, lr=1e-2)
    members = seen["members"]
    assert len(members) == 3
    avg = real(members)
    assert all(torch.allclose(a, b) for a, b in zip(policy.parameters(), avg.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(members[1].parameters(), members[2].parameters()))
    # phase 0's behaviour policy is the average of three copies of the start: the start, up to rounding
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(phases[0]["weights"], tiny_lm[0].parameters()))


# ---------------------------------------------------------------------------
# With the SFT model (slow)
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_f1_is_offline_dpo_on_the_same_pairs(sft, profile):
    from alignlab.methods import dpo

    ref, tok = sft
    cfg = online.BPOConfig.for_profile(profile, phases=1, steps=6, n_pairs=128, batch_size=32)
    dcfg = dpo.DPOConfig.for_profile(profile, steps=6, n_pairs=128, batch_size=32, beta=cfg.beta, lr=cfg.lr)
    got = {}
    a = copy.deepcopy(ref)
    h_online = online.train_online(a, ref, tok, cfg, None, progress=False,
                                   on_phase=lambda f, b, pairs: got.update(pairs=pairs))
    pairs = dpo.make_pairs(ref, tok, dcfg)
    assert got["pairs"]["chosen"] == pairs["chosen"] and got["pairs"]["rejected"] == pairs["rejected"]
    b = copy.deepcopy(ref)
    h_dpo = dpo.train_dpo(b, ref, tok, pairs, dcfg, None, progress=False)
    # the same losses step for step and the same weights, up to float rounding (the reference log-probs
    # come from a snapshot copy of the SFT model; Adam amplifies 1e-7 differences a little)
    assert h_online.series("loss")[1] == pytest.approx(h_dpo.series("loss")[1], rel=1e-5)
    assert max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters())) < 1e-3


if __name__ == "__main__" and "--freeze" in sys.argv:  # python tests/test_online.py --freeze
    assert HAVE_TRL, f"freezing needs TRL {TRL_VERSION}.x installed"
    cases = {name: _loss_and_grad(name, use_trl=True) for name in _reference_cases()}
    REFERENCE.write_text(json.dumps({"trl_version": trl.__version__, "cases": cases}, indent=1) + "\n")
    print(f"wrote {REFERENCE} from TRL {trl.__version__}")
