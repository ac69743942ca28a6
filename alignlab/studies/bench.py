"""``python -m alignlab bench``: how fast is the course, against TRL and against the floor?

Everything runs in one process, on the cached SFT model of a profile (``quick`` by
default), with the data and batch sizes of the methods' own settings:

1. **Seconds per optimiser step** of DPO, KTO and the reward model, three ways, each on
   the same model, data and batch size:

   * ``course``: the method's own training function (``train_dpo``, ``train_kto``,
     ``train_reward_model``), timed step by step on the shared loop (``alignlab.timing``);
   * ``trl``: TRL's ``DPOTrainer``, ``KTOTrainer`` and ``RewardTrainer`` on the CPU (no
     eval, no logging, no saving; bf16 and gradient checkpointing off, as on the course's
     side; DPO with ``precompute_ref_log_probs``, as the course does), timed from one
     optimiser step's end to the next with a ``TrainerCallback``;
   * ``floor``: one plain forward + backward + AdamW step of the same model on exactly the
     tokens the course's step trained on (captured from its forward passes), no method logic.
     ``forward`` is one no-grad forward on the same tokens: KTO's step needs three more
     (its KL batch and two reference passes), so its floor is not reachable.

   Warm-up steps are excluded; each number is the median of ``repeats`` steps.
2. **Sampling throughput**: completion tokens per second of ``sampling.sample`` against a
   bare ``model.generate`` with the same settings, on the same prompts.
3. **Where the time of each lecture goes**: each method's own run (what ``python -m
   alignlab run METHOD`` does; the reward model trained afresh) with ``alignlab.timing``
   on, split into sampling, scoring (the gold judge and the reward model), training (the
   steps, less the sampling and scoring inside them), evaluation (all of it) and other
   (loading, encoding, reference log-probs).

``--json``: the last line is one JSON object, ``{"dpo": {"course": s, "trl": s, "floor": s,
...}, "kto": {...}, "rm": {...}, "sampling": {...}, "lectures": {...}, ...}``.
Timings on a shared machine are noisy: run it on an idle one, and say which.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import os
import platform
import statistics
import tempfile
import time
import warnings

import numpy as np
import torch

from .. import world
from ..models import get_profile
from ..timing import phase, timing

LECTURES = ("rm", "ppo", "dpo", "kto", "grpo")
"""The methods whose lecture runs are split into phases by default."""

PHASES = ("sampling", "scoring", "training", "evaluation", "other")


def _median(xs) -> float:
    return float(statistics.median(xs))


# ---------------------------------------------------------------------------
# 1. The floor, and the tokens of the course's steps
# ---------------------------------------------------------------------------

@contextlib.contextmanager
def captured_batches(module):
    """Record (input_ids, attention_mask) of every forward of ``module`` that builds a graph."""
    seen = []

    def hook(_module, args, kwargs):
        if torch.is_grad_enabled():
            ids = kwargs.get("input_ids", args[0] if args else None)
            seen.append((ids.detach().clone(), kwargs["attention_mask"].detach().clone()))

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def floor_seconds(model, batches, lr: float, warmup: int) -> tuple[float, float]:
    """(seconds per plain step, seconds per no-grad forward): the median over ``batches``
    after ``warmup`` of them. The plain step is forward + backward + AdamW on the model's
    own loss (``labels=input_ids``); ``model`` is trained in place (pass a copy)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    steps, forwards = [], []
    for ids, mask in batches:
        t0 = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t1 = time.perf_counter()
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)
        steps.append(t1 - t0)
        forwards.append(time.perf_counter() - t1)
    return _median(steps[warmup:]), _median(forwards[warmup:])


def _course_steps(t, warmup: int) -> float:
    return _median(t.steps[warmup:])


def _tokens(batches) -> dict:
    return {"rows": int(batches[0][0].shape[0]),
            "tokens_per_row": round(float(np.mean([m.sum(-1).float().mean().item() for _, m in batches])), 1)}


# ---------------------------------------------------------------------------
# 2. TRL's trainers
# ---------------------------------------------------------------------------

def _trl():
    try:
        import trl
    except ImportError:
        return None
    return trl


def _trl_args(cls, out: str, batch_size: int, steps: int, lr: float, seed: int, **kw):
    """TRL settings for a timing run: the CPU, fp32, no checkpointing, eval, logging or saving."""
    return cls(output_dir=out, per_device_train_batch_size=batch_size, max_steps=steps,
               learning_rate=lr, seed=seed, data_seed=seed, use_cpu=True, bf16=False, fp16=False,
               gradient_checkpointing=False, eval_strategy="no", save_strategy="no",
               logging_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0,
               max_grad_norm=1.0, **kw)


@contextlib.contextmanager
def _quiet():
    """No progress bars, info logs or printed metrics from datasets, transformers and TRL."""
    import datasets
    import transformers

    bars = datasets.is_progress_bar_enabled()
    level = transformers.logging.get_verbosity()
    datasets.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers.logging.set_verbosity(level)
        if bars:
            datasets.enable_progress_bar()


def _trl_train(trainer_cls, warmup: int, **kwargs) -> float:
    """Train a TRL trainer; the median seconds from one optimiser step's end to the next."""
    from transformers import TrainerCallback

    ends: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if not ends:
                ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            ends.append(time.perf_counter())

    with _quiet():
        trainer = trainer_cls(callbacks=[StepTimer()], **kwargs)
        trainer.train()
    return _median(np.diff(ends)[warmup:])


def _bos(tok, prompts):
    """Prompts as TRL tokenizes them into the course's ids: ``<bos>`` first (TRL adds none)."""
    return [f"{tok.bos_token} {p}" for p in prompts]


def _spaced(completions):
    """Completions as TRL appends them to the prompt's text: after a space."""
    return [f" {c}" for c in completions]


# ---------------------------------------------------------------------------
# 3. Per-step benchmarks: DPO, KTO, the reward model
# ---------------------------------------------------------------------------

def bench_dpo(ref, tok, profile, seed, warmup, repeats, trl, overrides=None) -> dict:
    from datasets import Dataset

    from ..methods import dpo

    steps = warmup + repeats
    config = dpo.DPOConfig.for_profile(profile, **{"seed": seed, **(overrides or {})})
    config = dataclasses.replace(config, steps=steps, n_pairs=config.batch_size * steps)
    pairs = dpo.make_pairs(ref, tok, config)
    policy = copy.deepcopy(ref)
    with timing() as t, captured_batches(policy) as batches:
        dpo.train_dpo(policy, ref, tok, pairs, config, progress=False)
    out = {"course": _course_steps(t, warmup), "batch_size": config.batch_size, **_tokens(batches)}
    out["floor"], out["forward"] = floor_seconds(copy.deepcopy(ref), batches, config.lr, warmup)
    if trl is not None:
        ds = Dataset.from_dict({"prompt": _bos(tok, pairs["prompt"]), "chosen": _spaced(pairs["chosen"]),
                                "rejected": _spaced(pairs["rejected"])})
        with tempfile.TemporaryDirectory() as tmp:
            args = _trl_args(trl.DPOConfig, tmp, config.batch_size, steps, config.lr, seed,
                             beta=config.beta, precompute_ref_log_probs=True,
                             warmup_steps=max(1, steps // 10))
            out["trl"] = _trl_train(trl.DPOTrainer, warmup, model=copy.deepcopy(ref),
                                    ref_model=copy.deepcopy(ref), args=args, train_dataset=ds,
                                    processing_class=tok)
    return out


def bench_kto(ref, tok, profile, seed, warmup, repeats, trl, overrides=None) -> dict:
    from datasets import Dataset

    from ..methods import kto

    steps = warmup + repeats
    config = kto.KTOConfig.for_profile(profile, **{"seed": seed, **(overrides or {})})
    config = dataclasses.replace(config, steps=steps, n_examples=config.batch_size * steps,
                                 warmup_steps=1, desirable_keep=1.0)
    ds = kto.make_feedback(ref, tok, config, profile.max_new_tokens)
    config = dataclasses.replace(config, lambda_d=round(kto.balanced_lambda_d(ds, config.lambda_u), 3))
    policy = copy.deepcopy(ref)
    with timing() as t, captured_batches(policy) as batches:
        kto.train_kto(policy, ref, tok, ds, config, progress=False)
    out = {"course": _course_steps(t, warmup), "batch_size": config.batch_size, **_tokens(batches)}
    out["floor"], out["forward"] = floor_seconds(copy.deepcopy(ref), batches, config.lr, warmup)
    if trl is not None:
        data = Dataset.from_dict({"prompt": _bos(tok, ds["prompt"]), "completion": _spaced(ds["completion"]),
                                  "label": ds["label"]})
        with tempfile.TemporaryDirectory() as tmp:
            args = _trl_args(trl.KTOConfig, tmp, config.batch_size, steps, config.lr, seed,
                             beta=config.beta, desirable_weight=config.lambda_d,
                             undesirable_weight=config.lambda_u, warmup_steps=1)
            out["trl"] = _trl_train(trl.KTOTrainer, warmup, model=copy.deepcopy(ref),
                                    ref_model=copy.deepcopy(ref), args=args, train_dataset=data,
                                    processing_class=tok)
    return out


def bench_rm(ref, tok, profile, seed, warmup, repeats, trl, overrides=None) -> dict:
    from datasets import Dataset

    from ..methods import rm as rm_mod

    steps = warmup + repeats
    config = rm_mod.RMConfig.for_profile(profile, **{"seed": seed, **(overrides or {})})
    config = dataclasses.replace(config, steps=steps, n_pairs=config.batch_size * steps)
    train_ds = rm_mod.preference_data(ref, tok, config.n_pairs, "train", config.annotator_temperature,
                                      seed, profile.max_new_tokens)
    model = rm_mod.new_reward_model(ref, tok, seed)
    fresh = copy.deepcopy(model)
    with timing() as t, captured_batches(model.transformer) as batches:
        rm_mod.train_reward_model(model, tok, train_ds, config, progress=False)
    out = {"course": _course_steps(t, warmup), "batch_size": config.batch_size, **_tokens(batches)}
    # the floor: the reward model's own forward (score head at HF's last non-pad token)
    floor = copy.deepcopy(fresh).train()
    opt = torch.optim.AdamW(floor.parameters(), lr=config.lr)
    times, fwd = [], []
    for ids, mask in batches:
        t0 = time.perf_counter()
        loss = floor(input_ids=ids, attention_mask=mask, labels=torch.zeros(len(ids))).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t1 = time.perf_counter()
        with torch.no_grad():
            floor(input_ids=ids, attention_mask=mask)
        times.append(t1 - t0)
        fwd.append(time.perf_counter() - t1)
    out["floor"], out["forward"] = _median(times[warmup:]), _median(fwd[warmup:])
    if trl is not None:
        texts = {k: [f"{tok.bos_token} {world.join(p, c)}" for p, c in zip(train_ds["prompt"], train_ds[k])]
                 for k in ("chosen", "rejected")}
        with tempfile.TemporaryDirectory() as tmp:
            args = _trl_args(trl.RewardConfig, tmp, config.batch_size, steps, config.lr, seed,
                             center_rewards_coefficient=config.center_coef,
                             lr_scheduler_type="cosine", warmup_steps=max(1, steps // 20))
            out["trl"] = _trl_train(trl.RewardTrainer, warmup, model=copy.deepcopy(fresh), args=args,
                                    train_dataset=Dataset.from_dict(texts), processing_class=tok)
    return out


STEP_BENCHES = {"dpo": bench_dpo, "kto": bench_kto, "rm": bench_rm}


# ---------------------------------------------------------------------------
# 4. Sampling throughput
# ---------------------------------------------------------------------------

def bench_sampling(ref, tok, profile, seed, warmup, repeats) -> dict:
    """Completion tokens per second: ``sampling.sample`` against a bare ``model.generate``."""
    from ..sampling import encode, sample

    prompts = world.make_prompts(max(64, profile.eval_prompts), "eval", seed)
    n_new = profile.max_new_tokens
    course, bare = [], []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        batch = sample(ref, tok, prompts, n_new, seed=seed + i)
        dt = time.perf_counter() - t0
        course.append(batch.completion_mask.sum().item() / dt)
        t0 = time.perf_counter()
        enc = encode(tok, prompts, [""] * len(prompts), add_eos=False)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + i)
            out = ref.generate(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                               do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                               max_new_tokens=n_new, pad_token_id=tok.pad_token_id,
                               eos_token_id=tok.eos_token_id)
        dt = time.perf_counter() - t0
        new = out[:, enc.input_ids.shape[1]:]
        is_eos = new == tok.eos_token_id
        n = ((is_eos.long().cumsum(-1) - is_eos.long()) == 0).sum().item()  # up to the first <eos>
        bare.append(n / dt)
    return {"course": _median(course[warmup:]), "generate": _median(bare[warmup:]),
            "prompts": len(prompts), "max_new_tokens": n_new}


# ---------------------------------------------------------------------------
# 5. Where the time of each lecture goes
# ---------------------------------------------------------------------------

@contextlib.contextmanager
def scoring_marked():
    """Count the gold judge and the reward model's scoring as the "scoring" phase."""
    from ..methods import ppo
    from ..methods import rm as rm_mod

    targets = [(world, "gold_rewards"), (rm_mod, "score_texts"), (ppo, "score_texts")]
    originals = [getattr(m, name) for m, name in targets]

    def marked(fn):
        def wrapper(*args, **kwargs):
            with phase("scoring"):
                return fn(*args, **kwargs)
        return wrapper

    for (m, name), fn in zip(targets, originals):
        setattr(m, name, marked(fn))
    try:
        yield
    finally:
        for (m, name), fn in zip(targets, originals):
            setattr(m, name, fn)


def lecture_phases(name: str, profile, seed: int, overrides: dict | None = None) -> dict:
    """Seconds per phase of method ``name``'s run (the reward model: trained, not loaded)."""
    from ..methods import REGISTRY, dpo
    from ..methods import rm as rm_mod
    from ..registry import build_config

    dpo.clear_pairs_cache()  # its pairs are sampled inside the run, as in a fresh process
    t0 = time.perf_counter()
    with timing() as t, scoring_marked():
        if name == "rm":
            config = rm_mod.RMConfig.for_profile(profile, **{"seed": seed, **(overrides or {})})
            rm_mod.build_reward_model(profile, seed, config, progress=False)
        else:
            method = REGISTRY[name]
            method.run(profile, seed, build_config(method, profile, seed, overrides))
    total = time.perf_counter() - t0
    out = {k: t.seconds.get(k, 0.0) for k in PHASES[:-1]}
    out["other"] = max(0.0, total - sum(out.values()))
    out["total"] = total
    out["steps"] = len(t.steps)
    return out


# ---------------------------------------------------------------------------
# 6. The whole benchmark, its table and the command
# ---------------------------------------------------------------------------

def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def run_bench(profile=None, seed: int = 0, warmup: int = 3, repeats: int = 10,
              methods=tuple(STEP_BENCHES), lectures=LECTURES, smoke: bool = False,
              use_trl: bool = True, log=print) -> dict:
    """The benchmark as a dict (the ``--json`` line). ``smoke``: the methods' smoke settings
    (``Method.smoke``: tiny data, for tests) in every run."""
    from ..methods import REGISTRY
    from ..pipeline import load_sft

    profile = get_profile(profile)
    trl = _trl() if use_trl else None
    if use_trl and trl is None:
        log("TRL is not installed (pip install -e \".[trl]\"): its column is skipped")
    ref, tok = load_sft(profile, seed, device=torch.device("cpu"), progress=False)
    result = {"profile": profile.name, "seed": seed, "warmup": warmup, "repeats": repeats,
              "machine": machine(), "trl": getattr(trl, "__version__", None)}

    def smoke_of(name: str) -> dict:
        if not smoke:
            return {}
        keep = ("batch_size", "n_pairs", "n_examples", "n_eval_pairs", "steps", "eval_every",
                "warmup_steps")
        return {k: v for k, v in REGISTRY[name].smoke.items() if k in keep}

    for name in methods:
        over = {k: v for k, v in smoke_of(name).items() if k == "batch_size"}
        result[name] = STEP_BENCHES[name](ref, tok, profile, seed, warmup, repeats, trl, over)
        result[name].setdefault("trl", None)
    result["sampling"] = bench_sampling(ref, tok, profile, seed, warmup, repeats)
    result["lectures"] = {name: lecture_phases(name, profile, seed, smoke_of(name))
                          for name in lectures}
    return result


def table(result: dict) -> str:
    """The benchmark as a Markdown table (milliseconds per step; ratios)."""
    lines = [f"profile {result['profile']}, torch threads {result['machine']['torch_threads']}, "
             f"load average {result['machine']['load_average']}, median of {result['repeats']} "
             f"steps after {result['warmup']} warm-up",
             "",
             "| step | batch | course ms | TRL ms | floor ms | fwd ms | course/floor | TRL/course |",
             "|---|---|---|---|---|---|---|---|"]
    for name in STEP_BENCHES:
        if name not in result:
            continue
        r = result[name]
        trl = f"{1000 * r['trl']:.1f}" if r["trl"] else "n/a"
        speedup = f"{r['trl'] / r['course']:.2f}x" if r["trl"] else "n/a"
        lines.append(f"| {name} | {r['rows']} rows | {1000 * r['course']:.1f} | {trl} | "
                     f"{1000 * r['floor']:.1f} | {1000 * r['forward']:.1f} | "
                     f"{r['course'] / r['floor']:.2f}x | {speedup} |")
    s = result["sampling"]
    lines += ["", f"sampling ({s['prompts']} prompts, up to {s['max_new_tokens']} tokens): course "
              f"{s['course']:.0f} tokens/s, bare generate {s['generate']:.0f} tokens/s "
              f"({s['course'] / s['generate']:.2f}x)"]
    if result["lectures"]:
        lines += ["", "| lecture run | " + " | ".join(PHASES) + " | total s |",
                  "|---|" + "---|" * (len(PHASES) + 1)]
        for name, r in result["lectures"].items():
            cells = " | ".join(f"{r[k]:.1f} ({100 * r[k] / r['total']:.0f}%)" for k in PHASES)
            lines.append(f"| {name} | {cells} | {r['total']:.1f} |")
    return "\n".join(lines)


def _rounded(obj):
    if isinstance(obj, float):
        return round(obj, 5)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    return obj


def cmd_bench(args) -> int:
    lectures = LECTURES if args.lectures is None else tuple(x for x in args.lectures.split(",") if x)
    unknown = [x for x in lectures if x not in LECTURES]
    if unknown:
        raise ValueError(f"bench --lectures: unknown {unknown}; choose from {list(LECTURES)}")
    result = run_bench(args.profile, args.seed, args.warmup, args.repeats, lectures=lectures,
                       smoke=args.smoke, use_trl=not args.no_trl)
    print(table(result))
    if args.json:
        print(json.dumps(_rounded(result)))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="seconds per step: the course vs TRL vs the floor; sampling; "
                                     "where each lecture's time goes",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default=None, help="quick or full (default: by device)")
    p.add_argument("--seed", type=int, default=0, help="seed of the SFT model and the data")
    p.add_argument("--warmup", type=int, default=3, help="steps (or draws) left out of the timing")
    p.add_argument("--repeats", type=int, default=10, help="steps (or draws) timed; the median is shown")
    p.add_argument("--lectures", default=None, metavar="A,B",
                   help=f"lecture runs to split into phases (default: {','.join(LECTURES)}; '' for none)")
    p.add_argument("--smoke", action="store_true", help="tiny data in every run (the methods' smoke settings)")
    p.add_argument("--no-trl", action="store_true", help="skip TRL's trainers")
    p.add_argument("--json", action="store_true", help="also print the result as one JSON line, last")
    p.set_defaults(func=cmd_bench)
