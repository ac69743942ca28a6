"""Tests of the KTO loop pieces (the loss itself is tested against TRL in test_losses.py).

- the mismatched (prompt_i, completion_{i-1}) batch behind z0, on real encoded batches;
- step 0 on the real SFT GPT-2: policy = copy of ref -> z0 = 0, loss = mean(lambda_y) / 2;
- data bookkeeping: pairs -> unpaired, one completion per prompt, dropping desirable
  examples, the desirable fraction logged by the loop;
- bad unpaired data is rejected with an error that says what is wrong.
"""

from __future__ import annotations

import copy

import pytest
import torch
from datasets import Dataset

from alignlab.losses import mismatched_indices
from alignlab.methods import kto
from alignlab.sampling import encode, sequence_logprobs

PROMPTS = ["the acting", "i thought the plot", "honestly , the music", "the film"]
COMPLETIONS = ["was great .", "was dull , but the music was lovely .", "seemed fine .",
               "was not good . i hated it ."]


def _rows(batch, i):
    """(prompt tokens with <bos>, completion tokens with <eos>) of row i, padding removed."""
    attn, comp = batch.attention_mask[i].bool(), batch.completion_mask[i].bool()
    return batch.input_ids[i][attn & ~comp].tolist(), batch.input_ids[i][comp].tolist()


def _unpaired(n_good, n_bad, prompt="the acting"):
    labels = [True] * n_good + [False] * n_bad
    comps = [f"was {'great' if y else 'dull'} ." for y in labels]
    return Dataset.from_dict({"prompt": [prompt] * len(labels), "completion": comps,
                              "label": labels})


# ---------------------------------------------------------------------------
# The KL batch
# ---------------------------------------------------------------------------


def test_kl_batch_pairs_prompt_i_with_completion_i_minus_1(tiny_lm):
    _, tok = tiny_lm
    batch = encode(tok, PROMPTS, COMPLETIONS)
    kl = kto.kl_batch(batch, tok.pad_token_id)
    B = len(PROMPTS)
    assert kl.completions == [COMPLETIONS[(i - 1) % B] for i in range(B)]
    assert kl.prompts == PROMPTS
    for i in range(B):
        head, _ = _rows(batch, i)
        _, tail = _rows(batch, (i - 1) % B)
        assert _rows(kl, i) == (head, tail)  # prompt of row i, completion of row i-1
        assert tail[-1] == tok.eos_token_id and head[0] == tok.bos_token_id


def test_kl_batch_masks_are_left_padded_and_nested(tiny_lm):
    _, tok = tiny_lm
    kl = kto.kl_batch(encode(tok, PROMPTS, COMPLETIONS), tok.pad_token_id)
    attn, comp = kl.attention_mask, kl.completion_mask
    assert attn.shape == comp.shape == kl.input_ids.shape
    assert bool((attn[:, -1] == 1).all())  # left padding: every row ends in the last column
    assert bool((attn.diff(dim=1) >= 0).all()) and bool((comp.diff(dim=1) >= 0).all())  # one run each
    assert bool(((comp == 1) <= (attn == 1)).all())  # completion inside the attended tokens
    assert bool((kl.input_ids[attn == 0] == tok.pad_token_id).all())
    # Same layout as encoding the rotated texts directly (no column is all padding either).
    idx = mismatched_indices(len(PROMPTS)).tolist()
    direct = encode(tok, PROMPTS, [COMPLETIONS[j] for j in idx])
    assert torch.equal(kl.input_ids, direct.input_ids)
    assert torch.equal(kl.attention_mask, direct.attention_mask)
    assert torch.equal(kl.completion_mask, direct.completion_mask)


def test_kl_batch_logps_equal_the_mismatched_pairs_scored_alone(tiny_lm):
    model, tok = tiny_lm
    kl = kto.kl_batch(encode(tok, PROMPTS, COMPLETIONS), tok.pad_token_id)
    with torch.no_grad():
        together = sequence_logprobs(model, kl)
        alone = torch.cat([sequence_logprobs(model, encode(tok, [p], [c]))
                           for p, c in zip(kl.prompts, kl.completions)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_kl_batch_of_one_is_refused(tiny_lm):
    _, tok = tiny_lm
    with pytest.raises(ValueError, match="at least 2"):
        kto.kl_batch(encode(tok, PROMPTS[:1], COMPLETIONS[:1]), tok.pad_token_id)


# ---------------------------------------------------------------------------
# Step 0 on the real SFT GPT-2
# ---------------------------------------------------------------------------


def test_step0_on_sft_gpt2_z0_zero_loss_half_lambda(sft):
    ref, tok = sft
    policy = copy.deepcopy(ref)
    labels = torch.tensor([True, False, True, False])
    config = kto.KTOConfig(beta=0.7, lambda_d=1.3, lambda_u=0.6)
    loss, m = kto.kto_step(policy, ref, tok, encode(tok, PROMPTS, COMPLETIONS), labels, config)
    assert m["z0"] == 0.0 and m["z0/unclamped"] == 0.0
    assert m["rewards/desirable"] == 0.0 and m["rewards/undesirable"] == 0.0
    expected = (2 * 1.3 / 2 + 2 * 0.6 / 2) / 4  # mean of lambda_y / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert m["desirable_fraction"] == 0.5
    loss.backward()  # the loss reaches the policy's weights ...
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())
    assert all(p.grad is None for p in ref.parameters())  # ... and never the reference's


def test_offline_ppo_step0_ratio_one_loss_minus_mean_advantage(sft):
    ref, tok = sft
    policy = copy.deepcopy(ref)
    batch = encode(tok, PROMPTS, COMPLETIONS)
    labels = torch.tensor([True, True, True, False])
    loss, m = kto.offline_ppo_step(policy, ref, batch, labels, clip_eps=0.2)
    n_tok = batch.completion_mask.sum(-1).float()
    mean_adv = ((labels.float() * 2 - 1) * n_tok).sum() / n_tok.sum()  # token-level mean of +-1
    assert loss.item() == pytest.approx(-mean_adv.item(), abs=1e-6)
    assert m["ratio_mean"] == pytest.approx(1.0) and m["clipfrac"] == 0.0
    assert m["approx_kl"] == pytest.approx(0.0, abs=1e-7)


# ---------------------------------------------------------------------------
# Data bookkeeping
# ---------------------------------------------------------------------------


def _pairs():
    return Dataset.from_dict({"prompt": ["a", "b", "c"], "chosen": ["x1", "y1", "z1"],
                              "rejected": ["x0", "y0", "z0"], "gold_chosen": [0.5, 0.6, 0.7],
                              "gold_rejected": [-0.5, -0.6, -0.7]})


def test_pairs_to_unpaired_and_one_per_prompt():
    ds = kto.pairs_to_unpaired(_pairs())
    assert ds["prompt"] == ["a", "a", "b", "b", "c", "c"]
    assert ds["completion"] == ["x1", "x0", "y1", "y0", "z1", "z0"]
    assert ds["label"] == [True, False] * 3
    assert ds["gold"] == [0.5, -0.5, 0.6, -0.6, 0.7, -0.7]
    one = kto.one_per_prompt(ds, seed=0)
    assert one["prompt"] == ["a", "b", "c"]  # one row per pair, order kept
    assert all(c[0] == p.replace("a", "x").replace("b", "y").replace("c", "z")
               for p, c in zip(one["prompt"], one["completion"]))
    with pytest.raises(ValueError, match="pairs of rows"):
        kto.one_per_prompt(ds.select([0, 2, 3]))


def test_keep_desirable_counts_and_fraction():
    ds = _unpaired(60, 40)
    kept = kto.keep_desirable(ds, 0.1, seed=0)
    assert sum(kept["label"]) == 6 and len(kept) - sum(kept["label"]) == 40
    assert kto.desirable_fraction(kept) == pytest.approx(6 / 46)
    assert kto.lambda_ratio(kept, lambda_d=7.0, lambda_u=1.0) == pytest.approx(7 * 6 / 40)
    assert kto.keep_desirable(ds, 1.0)["label"] == ds["label"]
    assert kto.keep_desirable(ds, 0.1, seed=0)["completion"] == kept["completion"]  # seeded
    with pytest.raises(ValueError, match="keep"):
        kto.keep_desirable(ds, 0.0)
    with pytest.raises(ValueError, match="leaves none"):
        kto.keep_desirable(_unpaired(3, 40), 0.1)


def test_train_kto_logs_the_desirable_fraction_it_trains_on(tiny_lm):
    ref, tok = tiny_lm
    ds = _unpaired(10, 15)  # desirable_keep=0.5 keeps 5 of the 10: 5 of 20 rows are desirable
    config = kto.KTOConfig(batch_size=4, steps=10, lr=1e-5, desirable_keep=0.5, lambda_d=3.5)
    history = kto.train_kto(copy.deepcopy(ref), ref, tok, ds, config, progress=False)
    steps, fractions = history.series("desirable_fraction")
    assert steps == list(range(1, 11))
    assert all(f * 4 == int(f * 4) for f in fractions)  # each batch: a count out of 4
    # 5 batches of 4 are exactly one epoch (a fresh permutation each): the mean is exact.
    assert sum(fractions[:5]) / 5 == pytest.approx(5 / 20)
    assert sum(fractions[5:]) / 5 == pytest.approx(5 / 20)
    d_steps, _ = history.series("rewards/desirable")
    u_steps, _ = history.series("rewards/undesirable")
    assert set(d_steps) == {s for s, f in zip(steps, fractions) if f > 0}  # logged only when present
    assert set(u_steps) == {s for s, f in zip(steps, fractions) if f < 1}


# ---------------------------------------------------------------------------
# Bad data
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("ds, match", [
    (_pairs(), "pairs_to_unpaired"),
    (Dataset.from_dict({"prompt": ["a"], "completion": ["b"]}), "missing column.*label"),
    (Dataset.from_dict({"prompt": ["a", "a"], "completion": ["b", "c"], "label": [0.7, 1.0]}),
     "True/False"),
    (Dataset.from_dict({"prompt": ["a", "a"], "completion": ["b", ""], "label": [True, False]}),
     "empty completion"),
    ({"prompt": ["a"], "completion": ["b"], "label": [True]}, "datasets.Dataset"),
])
def test_bad_unpaired_data_is_rejected_with_a_clear_error(tiny_lm, ds, match):
    ref, tok = tiny_lm
    with pytest.raises(ValueError, match=match):
        kto.train_kto(copy.deepcopy(ref), ref, tok, ds, kto.KTOConfig(batch_size=2, steps=1),
                      progress=False)


def test_batch_size_one_and_too_little_data_are_rejected(tiny_lm):
    ref, tok = tiny_lm
    with pytest.raises(ValueError, match="batch_size.*>= 2"):
        kto.train_kto(copy.deepcopy(ref), ref, tok, _unpaired(2, 2), kto.KTOConfig(batch_size=1),
                      progress=False)
    with pytest.raises(ValueError, match="fewer than one batch"):
        kto.train_kto(copy.deepcopy(ref), ref, tok, _unpaired(2, 2), kto.KTOConfig(batch_size=8),
                      progress=False)


def test_policy_must_be_a_copy_of_the_reference(tiny_lm):
    ref, tok = tiny_lm
    with pytest.raises(ValueError, match="deepcopy"):
        kto.train_kto(ref, ref, tok, _unpaired(4, 4), kto.KTOConfig(batch_size=4, steps=1),
                      progress=False)


def test_imbalanced_weights_warn_like_trl(tiny_lm):
    ref, tok = tiny_lm
    with pytest.warns(UserWarning, match=r"recommends \[1, 4/3\]"):
        kto.train_kto(copy.deepcopy(ref), ref, tok, _unpaired(2, 14),
                      kto.KTOConfig(batch_size=4, steps=1, lr=1e-5, lambda_d=1.0), progress=False)
    assert kto.balanced_lambda_d(_unpaired(2, 14)) == pytest.approx(14 / 2 * 7 / 6)
