"""Tests for alignlab.methods.rm: the GPT-2 reward model, its training, and best-of-N.

The Bradley-Terry loss itself (values, stability, agreement with TRL) is tested in
test_losses.py; here: where the score is read, what an untrained head does, that training
learns, that bad input fails clearly, and that best-of-N and its KL are right.
"""

import copy
import math

import pytest
import torch

from alignlab import data, world
from alignlab.losses import bt_loss
from alignlab.methods import bon
from alignlab.methods import rm as R
from alignlab.sampling import Batch, encode, sample


@pytest.fixture(scope="module")
def tiny_rm(tiny_lm):
    lm, tok = tiny_lm
    return R.new_reward_model(lm, tok, seed=0).eval(), tok


@pytest.fixture(scope="module")
def heldout(sft):
    """128 held-out preference pairs of SFT samples (eval prompts), noiseless labels."""
    lm, tok = sft
    return R.preference_data(lm, tok, 128, "eval", temperature=0.0, seed=3, max_new_tokens=24)


PROMPTS = ["the acting", "i thought the plot", "honestly , the music"]
COMPLETIONS = ["was great .", "was dull , but the ending was lovely . i loved it .", "felt long ."]


def _right_padded(batch: Batch, pad_id: int) -> Batch:
    """The same sequences as a left-padded batch, moved to the left edge (right padding)."""
    ids, mask = torch.full_like(batch.input_ids, pad_id), torch.zeros_like(batch.attention_mask)
    for i, m in enumerate(batch.attention_mask.bool()):
        n = int(m.sum())
        ids[i, :n], mask[i, :n] = batch.input_ids[i, m], 1
    return Batch(ids, mask, mask, batch.prompts, batch.completions, batch.finished)


# --- the model ------------------------------------------------------------------------------

def test_reward_model_is_trl_shaped_and_starts_from_the_sft_weights(tiny_lm, tiny_rm):
    lm, _ = tiny_lm
    rm, tok = tiny_rm
    assert type(rm).__name__ == "GPT2ForSequenceClassification" and rm.config.num_labels == 1
    assert rm.score.weight.shape == (1, lm.config.n_embd)
    assert rm.config.pad_token_id == tok.pad_token_id
    torch.testing.assert_close(rm.transformer.wte.weight, lm.transformer.wte.weight)
    torch.testing.assert_close(rm.transformer.h[0].mlp.c_fc.weight, lm.transformer.h[0].mlp.c_fc.weight)
    # the head is seeded: same seed, same head; another seed, another head
    again = R.new_reward_model(lm, tok, seed=0)
    other = R.new_reward_model(lm, tok, seed=1)
    torch.testing.assert_close(again.score.weight, rm.score.weight)
    assert not torch.allclose(other.score.weight, rm.score.weight)


def test_score_reads_the_last_real_token_left_or_right_padded(tiny_rm):
    rm, tok = tiny_rm
    left = encode(tok, PROMPTS, COMPLETIONS)
    right = _right_padded(left, tok.pad_token_id)
    assert (left.attention_mask[:, 0] == 0).any() and (right.attention_mask[:, -1] == 0).any()
    with torch.no_grad():
        s_left, s_right = R.score(rm, left), R.score(rm, right)
        alone = torch.cat([R.score(rm, encode(tok, [p], [c])) for p, c in zip(PROMPTS, COMPLETIONS)])
        # by hand: the head on the hidden state of each sequence's own last token (<eos>)
        by_hand = torch.stack([rm.score(rm.transformer(encode(tok, [p], [c]).input_ids)
                                        .last_hidden_state[0, -1])[0]
                               for p, c in zip(PROMPTS, COMPLETIONS)])
    assert s_left.shape == (3,)
    torch.testing.assert_close(s_left, s_right, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s_left, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s_left, by_hand, atol=1e-5, rtol=1e-5)
    # not vacuous: the scores differ between sequences, and reading a padded column instead
    # of the last real token (what a naive [:, -1] does on right padding) changes them
    assert s_left.std() > 1e-4
    with torch.no_grad():
        naive = rm.score(rm.transformer(input_ids=right.input_ids, attention_mask=right.attention_mask)
                         .last_hidden_state[:, -1]).squeeze(-1)
    assert not torch.allclose(naive, s_left, atol=1e-4)


def test_score_of_a_mixed_padding_batch_from_concat(tiny_rm):
    """Best-of-N stacks draws of different widths (right-padded): scores must not change."""
    rm, tok = tiny_rm
    a, b = encode(tok, PROMPTS[:1], COMPLETIONS[:1]), encode(tok, PROMPTS[1:], COMPLETIONS[1:])
    both = Batch.concat([a, b], tok.pad_token_id)
    assert both.input_ids.shape[1] == max(a.input_ids.shape[1], b.input_ids.shape[1])
    with torch.no_grad():
        torch.testing.assert_close(R.score(rm, both), torch.cat([R.score(rm, a), R.score(rm, b)]),
                                   atol=1e-5, rtol=1e-5)


def test_score_texts_handles_finished_and_cut_off_rows(tiny_rm):
    rm, tok = tiny_rm
    finished = [True, False, True]
    got = R.score_texts(rm, tok, PROMPTS, COMPLETIONS, finished, batch_size=2)
    with torch.no_grad():
        want = torch.cat([R.score(rm, encode(tok, [p], [c], add_eos=f))
                          for p, c, f in zip(PROMPTS, COMPLETIONS, finished)])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert got[1] != R.score_texts(rm, tok, PROMPTS[1:2], COMPLETIONS[1:2])[0]  # <eos> matters


def test_saved_reward_model_loads_back_identically(tiny_rm, tmp_path):
    from transformers import GPT2ForSequenceClassification

    rm, tok = tiny_rm
    rm.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "model.safetensors").is_file()
    back = GPT2ForSequenceClassification.from_pretrained(tmp_path).eval()
    batch = encode(tok, PROMPTS, COMPLETIONS)
    with torch.no_grad():
        torch.testing.assert_close(R.score(back, batch), R.score(rm, batch))


# --- step 0 and learning -------------------------------------------------------------------

def test_untrained_head_is_a_coin_flip_at_step_0(sft, heldout):
    """Fresh heads on the SFT transformer: accuracy ~1/2, BT loss ~ln 2 (rewards ~0)."""
    lm, tok = sft
    accs, losses = [], []
    for seed in range(4):
        rm = R.new_reward_model(lm, tok, seed=seed)
        r_c = R.score_texts(rm, tok, list(heldout["prompt"]), list(heldout["chosen"]))
        r_r = R.score_texts(rm, tok, list(heldout["prompt"]), list(heldout["rejected"]))
        accs.append(R.gold_agreement(r_c, r_r, heldout["gold_chosen"], heldout["gold_rejected"])[0])
        losses.append(bt_loss(r_c, r_r).item())
    assert abs(sum(accs) / len(accs) - 0.5) < 0.12, accs
    assert all(0.25 < a < 0.75 for a in accs), accs
    assert all(abs(v - math.log(2)) < 0.03 for v in losses), losses


def test_training_learns_the_gold_ordering(sft, heldout):
    lm, tok = sft
    train_ds = R.preference_data(lm, tok, 1024, "train", temperature=0.1, seed=4, max_new_tokens=24)
    rm = R.new_reward_model(lm, tok, seed=0)
    config = R.RMConfig(steps=200, batch_size=32, lr=2e-3, eval_every=200)
    h = R.train_reward_model(rm, tok, train_ds, config, eval_fn=heldout, progress=False)
    assert h.series("bt_loss")[0][0] == 1 and abs(h.series("bt_loss")[1][0] - math.log(2)) < 0.05
    steps, acc = h.series("eval_accuracy")
    assert steps == [0, 200]
    assert abs(acc[0] - 0.5) < 0.2 and acc[1] > 0.68, acc
    assert acc[1] == pytest.approx(R.pairwise_accuracy_on(rm, tok, heldout), abs=1e-6)
    assert not rm.training  # handed back in eval mode


def test_centering_loss_pulls_the_reward_mean_to_zero(tiny_lm):
    """BT is shift-invariant; the auxiliary (r_c + r_r)^2 term fixes the offset near 0."""
    lm, tok = tiny_lm
    ds = data.annotate_pairs(["the acting"] * 64, ["was great ."] * 64, ["was awful ."] * 64, 0.0)
    means = {}
    for coef in (0.0, 1.0):
        rm = R.new_reward_model(lm, tok, seed=0)
        with torch.no_grad():  # start every reward 2.0 too high: a pure offset
            w = rm.score.weight[0]
            rm.transformer.ln_f.bias.copy_(2.0 * w / w.dot(w))
        h = R.train_reward_model(rm, tok, ds, R.RMConfig(steps=40, batch_size=16, lr=3e-3,
                                                         center_coef=coef), progress=False)
        means[coef] = h.series("reward_mean")[1]
    assert means[0.0][0] == pytest.approx(means[1.0][0]) and means[0.0][0] > 1.9
    assert abs(means[1.0][-1]) < 0.2 < 1.5 < means[0.0][-1], means


# --- errors that teach ---------------------------------------------------------------------

def test_bad_inputs_get_clear_errors(tiny_rm):
    rm, tok = tiny_rm
    with pytest.raises(ValueError, match="same shape"):
        bt_loss(torch.zeros(4), torch.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        bt_loss(torch.tensor([0.0, float("nan")]), torch.zeros(2))
    with pytest.raises(ValueError, match="one length"):
        R.gold_agreement(torch.zeros(4), torch.zeros(3), [0.5] * 4, [0.0] * 4)
    with pytest.raises(ValueError, match="`r_a` contains NaN"):
        R.gold_agreement(torch.tensor([float("nan"), 1.0]), torch.zeros(2), [1.0, 0.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="no pair has a gold gap"):
        R.gold_agreement(torch.zeros(2), torch.ones(2), [0.1, 0.1], [0.0, 0.0])
    batch = encode(tok, PROMPTS, COMPLETIONS)
    with pytest.raises(ValueError, match="equal in shape"):
        R.score(rm, {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask[:2]})
    mask = batch.attention_mask.clone()
    mask[1] = 0
    with pytest.raises(ValueError, match=r"row\(s\) \[1\] have no real token"):
        R.score(rm, {"input_ids": batch.input_ids, "attention_mask": mask})
    with pytest.raises(ValueError, match="2 prompts but 3 completions"):
        R.score_texts(rm, tok, PROMPTS[:2], COMPLETIONS)


def test_nan_weights_and_bad_data_are_caught(tiny_rm):
    rm, tok = tiny_rm
    broken = copy.deepcopy(rm)
    with torch.no_grad():
        broken.score.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN/inf"):
        R.score(broken, encode(tok, PROMPTS, COMPLETIONS))
    bad = data.annotate_pairs(PROMPTS, COMPLETIONS, COMPLETIONS, 0.1).remove_columns("rejected")
    with pytest.raises(ValueError, match="missing column"):
        R.train_reward_model(copy.deepcopy(rm), tok, bad, R.RMConfig(steps=1), progress=False)
    no_gold = data.annotate_pairs(PROMPTS, COMPLETIONS, COMPLETIONS[::-1], 0.1).remove_columns("gold_chosen")
    with pytest.raises(ValueError, match="no 'gold_chosen' column"):
        R.rm_metrics(rm, tok, no_gold)


def test_config_profiles_and_overrides():
    quick, full = R.RMConfig.for_profile("quick"), R.RMConfig.for_profile("full")
    assert full.n_pairs > quick.n_pairs and full.steps > quick.steps
    assert R.RMConfig.for_profile("quick", lr=1e-4).lr == 1e-4
    with pytest.raises(ValueError, match="has no setting 'betta'"):
        R.RMConfig.for_profile("quick", betta=1)


# --- best-of-N -----------------------------------------------------------------------------

def test_bon_kl_formula_matches_the_exact_kl_of_a_fine_discrete_policy():
    """For M equally likely outcomes with distinct rewards, best-of-n picks rank i with
    probability (i/M)^n - ((i-1)/M)^n; its KL to uniform tends to log n - (n-1)/n."""
    M = 200_000
    i = torch.arange(1, M + 1, dtype=torch.float64)
    for n in (1, 2, 4, 16, 64):
        p = (i / M) ** n - ((i - 1) / M) ** n
        kl = float((p * torch.log(p * M).nan_to_num(0.0)).sum())
        assert kl == pytest.approx(bon.bon_kl(n), abs=1e-3)
    assert bon.bon_kl(1) == 0.0
    with pytest.raises(ValueError, match="n must be >= 1"):
        bon.bon_kl(0)


def test_best_of_n_keeps_the_argmax_from_nested_draws(tiny_lm, tiny_rm):
    lm, tok = tiny_lm
    rm, _ = tiny_rm
    prompts = world.make_prompts(5, "eval", seed=1)
    cands = bon.sample_candidates(lm, tok, prompts, 4, seed=7, max_new_tokens=6)
    rewards = bon.score_candidates(rm, cands, len(prompts))
    assert rewards.shape == (5, 4) and len(cands) == 20
    # draw j of prompt i sits at row j * P + i, and draw 0 is an ordinary seeded sample
    first = sample(lm, tok, prompts, 6, seed=7)
    assert cands.completions[:5] == first.completions
    assert cands.prompts[5:10] == prompts
    # nested: the first 2 draws of a 4-draw call are a 2-draw call
    two = bon.sample_candidates(lm, tok, prompts, 2, seed=7, max_new_tokens=6)
    assert two.completions == cands.completions[:10]
    # the kept sample is the argmax of the first n draws, for every n
    for n in (1, 2, 4):
        batch, kept = bon.select_best(cands, rewards, n)
        assert batch.prompts == prompts
        torch.testing.assert_close(kept, rewards[:, :n].max(-1).values)
        torch.testing.assert_close(R.score_texts(rm, tok, batch.prompts, batch.completions,
                                                 batch.finished), kept, atol=1e-5, rtol=1e-5)
    assert bon.best_of_n(lm, rm, tok, prompts, 4, seed=7, max_new_tokens=6).completions == \
        bon.select_best(cands, rewards, 4)[0].completions
    with pytest.raises(ValueError, match=r"n must be in 1..4"):
        bon.select_best(cands, rewards, 8)


def test_bon_sweep_logs_log2_n_and_the_analytic_kl(sft):
    from alignlab.evaluation import Evaluator

    lm, tok = sft
    evaluator = Evaluator(lm, tok, n_prompts=16, max_new_tokens=24)
    cands = bon.sample_candidates(lm, tok, evaluator.prompts, 4, max_new_tokens=24)
    gold = bon.as_grid(world.gold_rewards(cands.prompts, cands.completions, cands.finished), 16)
    h = bon.bon_sweep(evaluator, cands, gold, ns=(1, 2, 4), name="oracle")
    assert sorted(h.rows) == [0, 1, 2]
    assert [h.rows[s]["n"] for s in (0, 1, 2)] == [1, 2, 4]
    assert h.rows[2]["kl"] == pytest.approx(math.log(4) - 0.75)
    # selecting by the gold judge itself: the kept gold reward can only go up with n
    g = h.series("gold_reward")[1]
    assert g[0] <= g[1] <= g[2] and g[2] > g[0]
    assert h.series("proxy_reward")[1] == pytest.approx(g, abs=1e-5)


# --- graded preferences: the Llama 2 margin (lecture 01, section 9.1) -----------------------

def _trl_reward_loss(r_c, r_r, margin, center_coef):
    """TRL's RewardTrainer.compute_loss on a stand-in trainer whose model returns [r_c; r_r]."""
    from collections import defaultdict
    from types import SimpleNamespace

    from trl.trainer import reward_trainer

    logits = torch.cat([r_c, r_r]).unsqueeze(-1)
    fake_self = SimpleNamespace(
        model=SimpleNamespace(training=False), _total_train_tokens=0, _tp_size=1,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        accelerator=SimpleNamespace(gather=lambda x: x, gather_for_metrics=lambda x: x),
        args=SimpleNamespace(center_rewards_coefficient=center_coef))
    inputs = {"input_ids": torch.zeros(len(logits), 2, dtype=torch.long),
              "attention_mask": torch.ones(len(logits), 2, dtype=torch.long), "margin": margin}
    return reward_trainer.RewardTrainer.compute_loss(
        fake_self, lambda **kw: SimpleNamespace(logits=logits), inputs)


@pytest.mark.parametrize("center_coef", [None, 0.01])
def test_graded_margin_loss_matches_trl_reward_trainer(center_coef):
    """rm_loss with Llama 2 margins from 1-3 grades equals TRL's loss with a `margin` column."""
    pytest.importorskip("trl")
    gen = torch.Generator().manual_seed(0)
    r_c, r_r = torch.randn(32, generator=gen) * 3, torch.randn(32, generator=gen) * 3
    grades = torch.randint(1, 4, (32,), generator=gen)
    margin = (grades - 1).float()  # lecture 01's m(grade): 0, 1, 2
    ours_c, ours_r = r_c.clone().requires_grad_(True), r_r.clone().requires_grad_(True)
    trl_c, trl_r = r_c.clone().requires_grad_(True), r_r.clone().requires_grad_(True)
    ours, _, _ = R.rm_loss(ours_c, ours_r, center_coef or 0.0, margin)
    theirs = _trl_reward_loss(trl_c, trl_r, margin, center_coef)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours_c.grad, trl_c.grad, atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(ours_r.grad, trl_r.grad, atol=1e-7, rtol=1e-6)
    # the margin really enters: at equal rewards a margin m gives softplus(m), not ln 2
    zero = torch.zeros(32)
    torch.testing.assert_close(R.rm_loss(zero, zero, 0.0, margin)[0],
                               torch.nn.functional.softplus(margin).mean())


def test_annotate_graded_keeps_the_labels_and_grades_the_perceived_gap():
    prompts = ["the acting", "i thought the plot", "honestly , the music"] * 40
    good = ["was great .", "was lovely , and the ending was great .", "felt fun ."] * 40
    bad = ["was awful .", "was dull .", "felt long ."] * 40
    for temperature in (0.0, 0.1, 1.0):
        graded = data.annotate_graded(prompts, good, bad, temperature, seed=5)
        plain = data.annotate_pairs(prompts, good, bad, temperature, seed=5)
        assert graded["chosen"] == plain["chosen"] and graded["rejected"] == plain["rejected"]
        assert set(graded["grade"]) <= {1, 2, 3}
    # noiseless: the grade is the gold gap on the scale (0.2, 0.5]
    graded = data.annotate_graded(prompts, good, bad, 0.0, thresholds=(0.2, 0.5))
    gap = [abs(c - r) for c, r in zip(graded["gold_chosen"], graded["gold_rejected"])]
    assert graded["grade"] == [1 + (g > 0.2) + (g > 0.5) for g in gap]
    with pytest.raises(ValueError, match="thresholds"):
        data.annotate_graded(prompts, good, bad, 0.1, thresholds=(0.5, 0.2))


def test_train_reward_model_reads_a_margin_column(tiny_lm):
    """A `margin` column enters the loss: step 1 (weights untouched so far) logs the margin loss."""
    lm, tok = tiny_lm
    ds = data.annotate_pairs(PROMPTS * 4, ["was great ."] * 12, ["was awful ."] * 12, 0.0)
    ds = ds.add_column("margin", [1.5] * len(ds))
    rm = R.new_reward_model(lm, tok, seed=0)
    r_c = R.score_texts(rm, tok, list(ds["prompt"]), list(ds["chosen"]))
    r_r = R.score_texts(rm, tok, list(ds["prompt"]), list(ds["rejected"]))
    expected = bt_loss(r_c, r_r, torch.full((len(ds),), 1.5)).item()
    h = R.train_reward_model(rm, tok, ds, R.RMConfig(steps=1, batch_size=len(ds)), progress=False)
    assert h.series("bt_loss")[1][0] == pytest.approx(expected, abs=1e-5)
    assert expected > math.log(2) + 0.5  # and it is not the plain BT loss (about ln 2 here)
