"""``python -m alignlab bench`` and the timing hooks of the shared loop it reads.

The hooks are checked on sleeps (what is counted where); the bench
itself runs on the ``micro`` profile with the methods' smoke settings and few repeats,
through the CLI, and its JSON line has the promised keys.
"""

from __future__ import annotations

import json
import math
import time

import pytest

from alignlab import cli, training
from alignlab.training import History, phase, timing


def test_phases_nest_and_evaluation_keeps_what_runs_inside_it():
    with timing() as t:
        with phase("training"):
            time.sleep(0.01)
            with phase("sampling"):  # sampling inside a step is sampling, not training
                time.sleep(0.2)
        with phase("evaluation"):
            with phase("sampling"):  # evaluation's own sampling is evaluation
                time.sleep(0.2)
    assert 0.01 <= t.seconds["training"] < 0.2
    assert 0.2 <= t.seconds["sampling"] < 0.4
    assert 0.2 <= t.seconds["evaluation"]
    assert set(t.seconds) == {"training", "sampling", "evaluation"}
    before = dict(t.seconds)
    with phase("training"):  # outside timing(): nothing is recorded anywhere
        time.sleep(0.01)
    assert t.seconds == before


def test_train_times_each_step_and_its_evaluations():
    def step_fn(step):
        time.sleep(0.005)
        return {"loss": 1.0}

    def evaluator(model):
        time.sleep(0.01)
        return {"gold_reward": 0.0}

    import torch

    with timing() as t:
        history = training.train(torch.nn.Linear(1, 1), step_fn, 4, evaluator, eval_every=2,
                                 history=History("t"), progress=False)
    assert len(t.steps) == 4 and all(s >= 0.005 for s in t.steps)
    assert t.seconds["evaluation"] >= 3 * 0.01  # steps 0, 2 and 4
    assert history.series("loss")[1] == [1.0] * 4  # what train logs is unchanged


@pytest.mark.slow
def test_bench_runs_on_micro_and_prints_the_json(micro_cache, capsys):
    argv = ["bench", "--profile", "micro", "--smoke", "--warmup", "1", "--repeats", "2",
            "--lectures", "dpo", "--json"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    out = json.loads(lines[-1])
    assert any(line.startswith("| dpo |") for line in lines)
    try:
        import trl  # noqa: F401
        has_trl = True
    except ImportError:
        has_trl = False
    for name in ("dpo", "kto", "rm"):
        keys = ("course", "trl", "floor") if has_trl else ("course", "floor")
        for k in keys:
            assert isinstance(out[name][k], float) and 0 < out[name][k] < 60, (name, k, out[name])
        assert out[name]["rows"] >= 2
    s = out["sampling"]
    assert s["course"] > 0 and s["generate"] > 0
    lecture = out["lectures"]["dpo"]
    parts = sum(lecture[k] for k in ("sampling", "scoring", "training", "evaluation", "other"))
    assert math.isclose(parts, lecture["total"], rel_tol=1e-3)
    assert lecture["training"] > 0 and lecture["evaluation"] > 0 and lecture["steps"] >= 1


@pytest.mark.parametrize("batch_size", [1, 3, 17, 64])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_unpadded_sampler_draws_what_generate_draws(tiny_lm, batch_size, temperature):
    """``generate_unpadded`` (the CPU sampler) against ``model.generate``: the same tokens,
    bit for bit, and the same random numbers consumed, while rows finish at different steps."""
    import copy

    import torch
    from transformers import GenerationConfig

    from alignlab import world
    from alignlab.sampling import MIN_ROWS, encode, generate_unpadded

    model, tok = tiny_lm
    model = copy.deepcopy(model)
    with torch.no_grad():  # make <eos> likely, so that rows finish early and are dropped
        eos = model.transformer.wte.weight[tok.eos_token_id]
        model.transformer.ln_f.bias.copy_(2.0 * eos / eos.norm() ** 2)  # its logit + 2
    enc = encode(tok, world.make_prompts(batch_size, "train", batch_size), [""] * batch_size, add_eos=False)
    config = GenerationConfig(do_sample=True, temperature=temperature, top_k=0, top_p=1.0, max_new_tokens=24,
                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                              bos_token_id=tok.bos_token_id)
    torch.manual_seed(batch_size)
    ref = model.generate(input_ids=enc.input_ids, attention_mask=enc.attention_mask, generation_config=config)
    ref, after_ref = ref[:, enc.input_ids.shape[1]:], torch.rand(1)
    rows = []  # rows computed at each step
    model.register_forward_pre_hook(lambda m, a, k: rows.append(len(k["input_ids"])), with_kwargs=True)
    torch.manual_seed(batch_size)
    new = generate_unpadded(model, enc.input_ids, enc.attention_mask, 24, temperature, tok.eos_token_id,
                            tok.pad_token_id)
    assert new.shape == ref.shape and torch.equal(new, ref)
    assert torch.equal(torch.rand(1), after_ref)  # the same random numbers were drawn
    assert min(rows) >= min(batch_size, MIN_ROWS)
    if batch_size == 64:  # finished rows were dropped along the way
        assert rows[0] == 64 and min(rows) < 32
