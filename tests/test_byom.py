"""Bring your own model: a local Hugging Face causal LM as the course's base model.

A small GPT-2 with a byte-level BPE tokenizer (trained here, on review-world text, with no
pad and no bos token, and the default dropout of 0.1) is saved to a temporary folder; the
course imports it with ``ALIGNLAB_BASE_MODEL``, SFTs it and runs DPO on it through the CLI.
A folder that is missing, not a causal LM, or without a tokenizer is one line and exit 2.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, PreTrainedTokenizerFast

from alignlab import cache, cli, pipeline, world
from alignlab.methods import REGISTRY
from alignlab.models import BASE_MODEL_ENV, base_model_fingerprint, get_profile, load_causal_lm, settings_dict
from alignlab.sampling import encode, sample, sequence_logprobs
from alignlab.tokenizer import adapt_tokenizer, load_tokenizer
from conftest import run_json

EOT = "<|endoftext|>"


def bpe_tokenizer(special=(EOT,), vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE trained on grammar reviews; eos only (no pad, no bos)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(world.make_corpus(2000, seed=1), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=special[0] if special else None)


def tiny_gpt2(tok, cls=GPT2LMHeadModel):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    return cls(config)  # GPT-2's default dropout (0.1): the course must switch it off


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("my-gpt2")
    tok = bpe_tokenizer()
    tiny_gpt2(tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_the_tokenizer_is_adapted_to_the_course(model_folder):
    tok = load_tokenizer(model_folder)
    assert tok.pad_token_id == tok.bos_token_id == tok.eos_token_id is not None  # GPT-2's way
    assert tok.padding_side == "left"
    prompts, completions = zip(*(world.split_review(r) for r in world.make_corpus(32, seed=5)))
    batch = encode(tok, list(prompts), list(completions))
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids = batch.input_ids[i][batch.attention_mask[i].bool()]
        comp = batch.input_ids[i][batch.completion_mask[i].bool()]
        assert ids[0] == tok.bos_token_id and comp[-1] == tok.eos_token_id
        assert tok.decode(ids[1:-1]) == f"{p} {c}"  # no "the moviewas": prefix space per piece
        assert tok.decode(comp[:-1]) == c
    # the raw byte-level tokenizer breaks the contract that the adapted one keeps
    raw = bpe_tokenizer()
    joined = raw("the plot", add_special_tokens=False)["input_ids"] + \
        raw("was dull .", add_special_tokens=False)["input_ids"]
    assert raw.decode(joined) == "the plotwas dull ."


def test_a_tokenizer_without_eos_gains_one_and_the_model_grows(tmp_path):
    raw = bpe_tokenizer(special=())
    assert raw.eos_token is None
    tok = adapt_tokenizer(raw)
    assert tok.eos_token == "<eos>" and len(tok) == len(raw) + 1
    tiny_gpt2(raw).save_pretrained(tmp_path)
    raw.save_pretrained(tmp_path)
    model = load_causal_lm(tmp_path, tok)
    assert model.get_input_embeddings().num_embeddings == len(tok)
    assert model.config.eos_token_id == model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id


def test_the_model_loads_without_dropout_and_samples(model_folder):
    tok = load_tokenizer(model_folder)
    model = load_causal_lm(model_folder, tok)
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    batch = sample(model, tok, world.make_prompts(8, "eval"), max_new_tokens=6, seed=0)
    ref = copy.deepcopy(model).eval()
    model.train()  # a policy in train mode gives the reference's log-probs: DPO's ln 2 at step 0
    assert torch.equal(sequence_logprobs(model, batch), sequence_logprobs(ref, batch))


def test_the_cache_key_holds_the_folder_content(model_folder, tmp_path, monkeypatch):
    course = settings_dict(get_profile("micro"))
    assert "base_model" not in course  # the course's own keys are unchanged
    monkeypatch.setenv(BASE_MODEL_ENV, str(model_folder))
    profile = get_profile("micro")
    assert profile.base_model == str(model_folder)
    mine = settings_dict(profile)
    assert mine["base_model"] == base_model_fingerprint(model_folder)
    assert cache.cache_key("sft", {"profile": mine}) != cache.cache_key("sft", {"profile": course})
    other = tmp_path / "other"
    tok = bpe_tokenizer()
    model = tiny_gpt2(tok)
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1.0  # one weight differs: another model
    model.save_pretrained(other)
    tok.save_pretrained(other)
    assert base_model_fingerprint(other) != base_model_fingerprint(model_folder)


def _cli_error(capsys, monkeypatch, folder) -> str:
    monkeypatch.setenv(BASE_MODEL_ENV, str(folder))
    assert cli.main(["run", "sft", "--profile", "micro", "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("alignlab: error: "), err
    return err


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ALIGNLAB_DEBUG", raising=False)


def test_a_missing_folder_is_one_line(tmp_path, capsys, monkeypatch, empty_cache):
    err = _cli_error(capsys, monkeypatch, tmp_path / "nowhere")
    assert "does not exist" in err and BASE_MODEL_ENV in err


def test_a_model_that_is_not_a_causal_lm_is_one_line(tmp_path, capsys, monkeypatch, empty_cache):
    tok = bpe_tokenizer()
    tiny_gpt2(tok, GPT2ForSequenceClassification).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    err = _cli_error(capsys, monkeypatch, tmp_path)
    assert "GPT2ForSequenceClassification" in err and "not a causal language model" in err


def test_a_folder_without_a_tokenizer_is_one_line(tmp_path, capsys, monkeypatch, empty_cache):
    tiny_gpt2(bpe_tokenizer()).save_pretrained(tmp_path)
    err = _cli_error(capsys, monkeypatch, tmp_path)
    assert "has no tokenizer" in err


@pytest.mark.slow
def test_sft_and_dpo_run_on_your_own_model_through_the_cli(model_folder, capsys, monkeypatch,
                                                           empty_cache):
    monkeypatch.setenv(BASE_MODEL_ENV, str(model_folder))
    sft = run_json(capsys, "sft", "--profile", "micro", "--seed", "0")
    dpo = run_json(capsys, "dpo", "--profile", "micro", "--seed", "0",
                   *[f"--set={k}={v}" for k, v in REGISTRY["dpo"].smoke.items()])
    for out, name in ((sft, "sft"), (dpo, "dpo")):
        assert out["method"] == name and out["profile"] == "micro"
        for k in ("gold_reward", "kl", "win_rate", "valid_rate"):
            assert isinstance(out[k], float) and math.isfinite(out[k]), (name, k, out[k])
        print(json.dumps(out))
    assert sft["kl"] == 0.0  # the reference against itself
    profile = get_profile("micro")
    base, sft_dir = pipeline.base_folder(profile), pipeline.sft_folder(profile)
    assert cache.read_meta(base)["base_model"] == str(model_folder)
    losses = cache.read_meta(sft_dir)["losses"]
    assert len(losses) == profile.sft_steps and losses[-1] < 0.5 * losses[0]  # SFT learned
    model, tok = pipeline.load_sft(profile)
    assert model.get_input_embeddings().num_embeddings == len(tok) == len(load_tokenizer(model_folder))
