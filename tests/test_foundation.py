"""The review world, tokenizer, masks, cache, evaluation and CLI (issue: course foundation)."""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from alignlab import cache, data, world
from alignlab.evaluation import Evaluator, win_rate
from alignlab.models import get_profile
from alignlab.sampling import encode, sample, sequence_logprobs, token_logprobs
from conftest import run_cli

# --- grammar and fluency ---------------------------------------------------


def test_grammar_samples_are_valid_and_parsable():
    rng = random.Random(0)
    reviews = [world.sample_review(rng) for _ in range(500)]
    assert all(world.is_valid(r) for r in reviews)
    assert len(set(reviews)) > 400  # a real distribution, not a handful of strings


@pytest.mark.parametrize("text", [
    "",
    "the acting was",                          # unfinished clause
    "the acting was great",                    # no full stop
    "great great great great",                 # degenerate repetition
    "the acting was great . .",                # stray punctuation
    "the acting was great great .",            # repeated adjective
    "the acting was not not good .",           # double negation is not in the grammar
    "the acting was great . " * 4,             # more sentences than a review has
])
def test_fluency_rule_rejects_invalid_text(text):
    assert not world.is_valid(text.strip())


def test_fluency_rule_accepts_each_construction():
    for text in ["the acting was great .",
                 "i thought the plot felt not very dull .",
                 "honestly , the music was dull , but the cast seemed lovely .",
                 "the film was okay . i would not recommend it .",
                 "the ending was weak . sadly the lead was bad . what a waste of time ."]:
        assert world.is_valid(text), text


def test_prompt_split_is_disjoint_and_every_prompt_opens_a_review():
    train, heldout = set(world.make_prompts(2000, "train")), set(world.make_prompts(2000, "eval"))
    assert train and heldout and not train & heldout
    assert all(world.is_valid(p + " was good .") for p in train | heldout)


# --- the gold judge --------------------------------------------------------


def test_gold_judge_prefers_fluent_positive_over_degenerate_hack():
    hack = world.gold_reward("the acting", "great great great great great")
    fluent = world.gold_reward("the acting", "was really wonderful .")
    assert world.sentiment("the acting great great great great great") > 0.9  # VADER loves it
    assert hack == world.INVALID_REWARD == -1.0
    assert fluent > 0.5 > hack


def test_gold_judge_uses_sentiment_and_the_end_token():
    good = world.gold_reward("the plot", "was brilliant .")
    bad = world.gold_reward("the plot", "was terrible .")
    assert good > 0.3 and bad < -0.3
    assert world.gold_reward("the plot", "was brilliant .", finished=False) == -1.0
    with pytest.raises(ValueError, match="pair up"):
        world.gold_rewards(["a"], ["b", "c"])


# --- annotators ------------------------------------------------------------


def _corpus_pairs(n=3000, seed=0):
    rng = random.Random(seed)
    prompts, a, b = [], [], []
    for _ in range(n):
        p, c = world.split_review(world.sample_review(rng))
        prompts.append(p)
        a.append(c)
        b.append(world.split_review(world.sample_review(rng))[1])
    return prompts, a, b


@pytest.mark.parametrize("temperature", [0.05, 0.2, 1.0])
def test_label_noise_follows_the_bradley_terry_temperature(temperature):
    prompts, a, b = _corpus_pairs()
    ds = data.annotate_pairs(prompts, a, b, temperature=temperature, seed=1)
    g_c, g_r = np.array(ds["gold_chosen"]), np.array(ds["gold_rejected"])
    decided = g_c != g_r
    observed = np.mean(g_c[decided] > g_r[decided])
    # what BT says the agreement should be: E[sigmoid(|gap| / T)]
    expected = np.mean(data.bt_probability(np.abs(g_c - g_r)[decided], 0.0, temperature))
    assert abs(observed - expected) < 0.03, (observed, expected)


def test_annotator_extremes_and_columns():
    prompts, a, b = _corpus_pairs(1000)
    exact = data.annotate_pairs(prompts, a, b, temperature=0.0, seed=0)
    assert exact.column_names[:3] == ["prompt", "chosen", "rejected"]
    assert all(c >= r for c, r in zip(exact["gold_chosen"], exact["gold_rejected"]))
    coin = data.annotate_pairs(prompts, a, b, temperature=100.0, seed=0)
    agree = np.mean(np.array(coin["gold_chosen"]) > np.array(coin["gold_rejected"]))
    assert 0.42 < agree < 0.58
    fb = data.annotate_binary(prompts, a, temperature=0.0)
    assert fb.column_names[:3] == ["prompt", "completion", "label"]
    assert all(lab == (g > 0) for lab, g in zip(fb["label"], fb["gold"]) if g != 0)


# --- bad preference data gets a clear error --------------------------------


def test_validate_preferences_names_the_problem():
    from datasets import Dataset

    ok = Dataset.from_dict({"prompt": ["the plot"], "chosen": ["was good ."], "rejected": ["was bad ."]})
    assert data.validate_preferences(ok) is ok
    with pytest.raises(ValueError, match=r"missing column\(s\) \['rejected'\]"):
        data.validate_preferences(Dataset.from_dict({"prompt": ["x"], "chosen": ["y"]}))
    with pytest.raises(ValueError, match="row 0, column 'chosen' is an empty completion"):
        data.validate_preferences({"prompt": ["x"], "chosen": [" "], "rejected": ["y"]})
    with pytest.raises(ValueError, match="column 'rejected' must be a string, got int"):
        data.validate_preferences({"prompt": ["x"], "chosen": ["y"], "rejected": [3]})
    with pytest.raises(ValueError, match="label"):
        data.validate_preferences({"prompt": ["x"], "completion": ["y"], "label": ["yes"]},
                                  kind="unpaired")
    with pytest.raises(ValueError, match="empty"):
        data.validate_preferences({"prompt": [], "chosen": [], "rejected": []})


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown profile 'huge'; choose one of \['full', 'micro', 'quick'\]"):
        get_profile("huge")


# --- tokenizer, left padding, masks ----------------------------------------


def test_tokenizer_round_trip_and_special_tokens(tiny_lm):
    _, tok = tiny_lm
    for text in world.make_corpus(50, seed=3):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
        assert tok.unk_token_id not in ids
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id}) == 3
    assert tok.padding_side == "left"


def test_encode_masks_mark_completion_and_eos_only(tiny_lm):
    _, tok = tiny_lm
    b = encode(tok, ["the plot", "i thought the acting"], ["was good .", "was bad , but the cast was fine ."])
    assert b.input_ids.shape == b.attention_mask.shape == b.completion_mask.shape
    assert b.completion_mask.sum(1).tolist() == [3 + 1, 9 + 1]  # words + <eos>
    assert (b.input_ids[:, -1] == tok.eos_token_id).all()
    assert b.attention_mask[0, :4].sum() == 0  # row 0 is left-padded
    assert ((b.completion_mask == 1) <= (b.attention_mask == 1)).all()
    with pytest.raises(TypeError, match="completions must be a str"):
        encode(tok, ["the plot"], [None])


def test_left_padded_logprobs_equal_each_sequence_alone(tiny_lm):
    model, tok = tiny_lm
    prompts = ["the plot", "in my opinion the acting", "the cast"]
    comps = ["was good .", "was dull .", "felt very clumsy , and the lead was lovely . i loved it ."]
    with torch.no_grad():
        batch = sequence_logprobs(model, encode(tok, prompts, comps))
        alone = torch.cat([sequence_logprobs(model, encode(tok, [p], [c])) for p, c in zip(prompts, comps)])
        # and the mistake this guards against: ignoring position ids changes the answer
        b = encode(tok, prompts, comps)
        wrong = model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
    assert torch.allclose(batch, alone, atol=1e-5)
    wrong_lp = torch.log_softmax(wrong[:, :-1], -1).gather(-1, b.input_ids[:, 1:, None]).squeeze(-1)
    wrong_seq = (torch.nn.functional.pad(wrong_lp, (1, 0)) * b.completion_mask).sum(-1)
    assert not torch.allclose(wrong_seq, alone, atol=1e-3)


def test_sample_masks_stop_at_first_eos(tiny_lm):
    model, tok = tiny_lm
    b = sample(model, tok, world.make_prompts(16, "eval"), max_new_tokens=8, seed=0)
    n_prompt = encode(tok, b.prompts, [""] * len(b), add_eos=False).input_ids.shape[1]
    comp = b.input_ids[:, n_prompt:]
    for row, mask, done in zip(comp, b.completion_mask[:, n_prompt:], b.finished):
        eos = (row == tok.eos_token_id).nonzero()
        n = int(eos[0]) + 1 if len(eos) else len(row)
        assert mask.tolist() == [1] * n + [0] * (len(row) - n)
        assert done == bool(len(eos))
    again = sample(model, tok, b.prompts, max_new_tokens=8, seed=0)
    assert torch.equal(again.input_ids, b.input_ids)  # seeded sampling repeats


def test_token_logprobs_temperature_changes_distribution(tiny_lm):
    model, tok = tiny_lm
    b = encode(tok, ["the plot"], ["was good ."])
    with torch.no_grad():
        t1 = token_logprobs(model, b.input_ids, b.attention_mask, 1.0)
        t2 = token_logprobs(model, b.input_ids, b.attention_mask, 2.0)
    assert t1[0, 0] == 0 and not torch.allclose(t1, t2)


# --- the shared evaluation ---------------------------------------------------


def test_win_rate_counts_ties_as_half():
    assert win_rate([1, 0, -1, 0.5], [0, 0, 1, 0.5]) == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    with pytest.raises(ValueError):
        win_rate([1], [])


def test_kl_of_a_policy_against_itself_is_zero(tiny_lm):
    model, tok = tiny_lm
    ev = Evaluator(model, tok, n_prompts=16, profile="quick")
    assert ev(copy.deepcopy(model))["kl"] == 0.0  # another object with the same weights


def test_k1_kl_agrees_with_the_exact_per_token_kl(tiny_lm):
    """The evaluator's k1 estimate of KL(pi || pi_ref) against the chain rule's exact form.

    E_{y~pi}[sum_t KL(pi(.|x,y<t) || pi_ref(.|x,y<t))] is the same sequence KL with far
    less variance; a sign, direction or temperature bug in ``Evaluator.kl`` breaks the match.
    """
    import torch.nn.functional as F

    from alignlab.sampling import position_ids

    ref, tok = tiny_lm
    policy = copy.deepcopy(ref)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(3.0 * p.std() * torch.randn_like(p))
    ev = Evaluator(ref, tok, n_prompts=256, profile="quick", max_new_tokens=6)
    batch = ev.sample(policy)
    k1 = ev.kl(policy, batch)
    with torch.no_grad():
        kw = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                  position_ids=position_ids(batch.attention_mask))
        lp = F.log_softmax(policy(**kw).logits[:, :-1].float(), -1)
        lq = F.log_softmax(ref(**kw).logits[:, :-1].float(), -1)
        per_token = (lp.exp() * (lp - lq)).sum(-1) * batch.completion_mask[:, 1:]
        exact_rows = per_token.sum(-1)
        k1_rows = ((lp - lq).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
                   * batch.completion_mask[:, 1:]).sum(-1)
    se = float(k1_rows.std() / len(k1_rows) ** 0.5)
    assert k1 == pytest.approx(float(k1_rows.mean()), abs=1e-4)
    assert float(exact_rows.mean()) > 0.05
    assert abs(k1 - float(exact_rows.mean())) < 4 * se, (k1, float(exact_rows.mean()), se)
    assert float(exact_rows.mean()) > 4 * se  # so a flipped sign (-k1) could not pass


def test_sft_reference_quality_and_self_win_rate(sft, profile):
    model, tok = sft
    ev = Evaluator(model, tok, n_prompts=512, profile=profile)
    row = ev(model)
    assert row["valid_rate"] >= 0.95, row
    assert row["kl"] == 0.0
    assert abs(row["win_rate"] - 0.5) < 0.06, row  # policy vs itself: 1/2 within sampling error
    corpus = world.make_corpus(3000, seed=5)
    corpus_gold = np.mean([world.gold_reward(*world.split_review(r)) for r in corpus])
    assert abs(row["gold_reward"] - corpus_gold) < 0.1, (row, corpus_gold)


def test_benchmark_warm_start(benchmark, sft, profile):
    """How long a warm start takes (reported by pytest-benchmark, never asserted: a shared
    machine's timings are not a test). ``--benchmark-skip`` leaves it out."""
    from alignlab import pipeline

    model, _ = benchmark.pedantic(pipeline.load_sft, args=(profile,), kwargs={"progress": False},
                                  rounds=3, iterations=1)
    assert model.config.n_layer == profile.n_layer


def test_warm_start_loads_the_sft_model_without_training(sft, profile, monkeypatch):
    from alignlab import pipeline

    def no_training(*args, **kwargs):
        raise AssertionError("a warm start must not train")

    monkeypatch.setattr(pipeline, "pretrain", no_training)
    monkeypatch.setattr(pipeline, "finetune", no_training)
    model, _ = pipeline.load_sft(profile, progress=False)
    assert torch.equal(model.lm_head.weight.cpu(), sft[0].lm_head.weight.cpu())


# --- the cache -----------------------------------------------------------------


def test_cache_builds_once_and_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNLAB_CACHE", str(tmp_path))
    calls = []

    def build(folder):
        calls.append(1)
        (folder / "weights.txt").write_text("w")
        return {"note": "hi"}

    f1 = cache.get_or_build("thing", {"a": 1}, build)
    f2 = cache.get_or_build("thing", {"a": 1}, build)
    f3 = cache.get_or_build("thing", {"a": 2}, build)
    assert f1 == f2 != f3 and len(calls) == 2
    assert cache.read_meta(f1)["note"] == "hi"


_KILLED_WRITER = """
import os, sys, time
from alignlab import cache
def build(folder):
    (folder / "model.safetensors").write_bytes(b"half a model")
    open(sys.argv[1], "w").close()   # tell the test we are mid-write
    time.sleep(60)
cache.get_or_build("thing", {"a": 1}, build)
"""


def test_killed_write_leaves_no_usable_looking_artifact(tmp_path):
    root = tmp_path / "cache"
    flag = tmp_path / "mid-write"
    env = {**os.environ, "ALIGNLAB_CACHE": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(flag)], env=env)
    try:
        for _ in range(300):
            if flag.exists():
                break
            time.sleep(0.1)
        assert flag.exists(), "the writer never started"
        proc.kill()
        proc.wait(10)
    finally:
        proc.kill()
    final = root / f"thing-{cache.cache_key('thing', {'a': 1})}"
    assert not final.exists()  # only a .tmp-* folder may remain
    os.environ["ALIGNLAB_CACHE"], old = str(root), os.environ.get("ALIGNLAB_CACHE")
    try:
        folder = cache.get_or_build("thing", {"a": 1},
                                    lambda f: (f / "model.safetensors").write_bytes(b"ok") and None)
    finally:
        if old is None:
            del os.environ["ALIGNLAB_CACHE"]
        else:
            os.environ["ALIGNLAB_CACHE"] = old
    assert (folder / "model.safetensors").read_bytes() == b"ok"
    assert not list(root.glob(".tmp-*"))  # the rebuild swept the killed write away


_RACER = """
import sys, time
from alignlab import cache
def build(folder):
    with open(sys.argv[1], "a") as f:
        f.write("built\\n")
    time.sleep(1.0)
    (folder / "x").write_text("x")
cache.get_or_build("race", {"a": 1}, build)
"""


def test_parallel_builders_train_once(tmp_path):
    log = tmp_path / "builds.log"
    env = {**os.environ, "ALIGNLAB_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(log)], env=env) for _ in range(3)]
    assert all(p.wait(60) == 0 for p in procs)
    assert log.read_text().count("built") == 1


def test_unwritable_cache_folder_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ALIGNLAB_CACHE", str(blocker / "cache"))
    with pytest.raises(cache.CacheError, match="is not writable.*ALIGNLAB_CACHE"):
        cache.cache_root()


# --- determinism and the CLI ----------------------------------------------------


def test_same_seed_same_training_numbers(tmp_path):
    import dataclasses

    from alignlab import pipeline
    from alignlab.models import PROFILES

    p = dataclasses.replace(PROFILES["quick"], n_layer=1, n_embd=32, corpus_size=500, pretrain_steps=5,
                            batch_size=8)
    runs = [pipeline.pretrain(p, seed=3, device="cpu", progress=False)[2] for _ in range(2)]
    other = pipeline.pretrain(p, seed=4, device="cpu", progress=False)[2]
    assert runs[0] == runs[1] and runs[0] != other


def test_cli_run_sft_prints_json_and_repeats_exactly(sft):
    rows = []
    for _ in range(2):
        out = run_cli("run", "sft", "--profile", "quick", "--seed", "0", "--json")
        assert out.returncode == 0, out.stderr
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for key in ("method", "profile", "seed", "seconds", "gold_reward", "kl", "win_rate", "valid_rate"):
        assert key in rows[0]
    rows[0].pop("seconds"), rows[1].pop("seconds")
    assert rows[0] == rows[1]
    assert rows[0]["method"] == "sft" and rows[0]["kl"] == 0.0


def test_cli_help_lists_every_command():
    from alignlab import cli

    commands = cli.build_parser()._subparsers._group_actions[0].choices
    assert set(commands) == set(cli.COMMANDS) == {"run", "course", "notebooks", "exercises", "grade", "seeds", "site",
                                                  "bench", "frontier", "docs", "tune"}
    from alignlab.models import PROFILES

    assert set(cli.PROFILES) == set(PROFILES)
