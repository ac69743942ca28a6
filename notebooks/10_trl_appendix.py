# %% [markdown]
# # Appendix (lecture 10): from alignlab to TRL
#
# **Objectives.** By the end of this notebook you can
# 1. train the course's tiny GPT-2 on the course's own data with [TRL](https://huggingface.co/docs/trl) 1.16's `RewardTrainer`, `DPOTrainer`, `KTOTrainer` and `GRPOTrainer`, the last with the gold judge as its reward function;
# 2. check that TRL computes what the course computes: at step 0 the DPO loss is $\ln 2$, and on the same batch TRL's log-probs, implicit rewards and KTO reference point are the course's, before and after training;
# 3. put TRL's run and the course's run of each method, at the same budget, on the one shared evaluation (win-rate, KL, gold reward);
# 4. say which of TRL's defaults must change on a CPU and for a model this small (bf16, gradient checkpointing, the learning rate, lengths, the prompt's text, GPT-2's positions), and what changes again for a real model (LoRA, bf16 on a GPU, several GPUs).
#
# **Prerequisites.** Lectures 01 (reward model), 04 (DPO), 05 (KTO) and 07 (GRPO): this notebook re-runs their methods and does not re-derive them. TRL is an optional extra of the package: `pip install -e ".[trl]"` (the test extra, `.[test]`, includes it). Without TRL 1.16 every TRL cell prints that it was skipped, the course's half of each comparison still runs, and the notebook finishes.
#
# **Run time.** `quick` profile (2-core CPU): about 100 s of CPU time with one torch thread once the SFT model is cached (measured on a shared 2-core machine under heavy load, where the wall time under nbval was 443 s; the last cell prints this run's own time). Eight training runs, each method once by the course and once by TRL, make most of it. `full` profile (one GPU): not measured yet (no GPU was available when this appendix was written).

# %% [markdown]
# ## 1. Set-up
#
# The first cell looks for TRL 1.16. Everything TRL does below sits behind `if trl_here():`, which prints why the cell did nothing when TRL is missing (or is another version, whose API may differ).

# %%
TRL_VERSION = "1.16"
try:
    import trl
    HAVE_TRL = trl.__version__.startswith(TRL_VERSION + ".")
    WHY = f"TRL {trl.__version__} is installed; this appendix is written for TRL {TRL_VERSION}.x"
except ImportError:
    HAVE_TRL, WHY = False, "TRL is not installed"
SKIP = f'skipped: {WHY}. Install it with  pip install -e ".[trl]"'


def trl_here() -> bool:
    """True when TRL 1.16 is installed; otherwise print why the cell does nothing."""
    if not HAVE_TRL:
        print(SKIP)
    return HAVE_TRL


print(f"TRL {trl.__version__}: the TRL cells will run" if HAVE_TRL else SKIP)

# %% [markdown]
# The course's side: the cached SFT model of this profile (lecture 00), its tokenizer, and the shared evaluation on held-out prompts. The SFT model against itself is the baseline every run below has to beat: a win-rate near 0.5 and a KL of 0.

# %%
import copy
import math
import shutil
import tempfile
import time
import warnings

import datasets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display
from transformers import GPT2Model, LlamaConfig, LlamaForCausalLM, PrinterCallback

import alignlab
from alignlab import losses, pipeline, world
from alignlab.evaluation import Evaluator
from alignlab.methods import dpo, grpo, kto, rl, rm
from alignlab.models import get_device, get_profile, seed_everything
from alignlab.plots import dashboard
from alignlab.sampling import encode, position_ids, sequence_logprobs
from alignlab.training import History

t_start = time.time()
OUT = tempfile.mkdtemp(prefix="alignlab-trl-")  # TRL wants an output_dir; nothing is saved in it
datasets.disable_progress_bars()  # TRL tokenises with datasets.map: no progress bar per map
# transformers 5.24 renames `gradient_checkpointing` to `activation_checkpointing`; TRL 1.16 still sets the old name
warnings.filterwarnings("ignore", message=".*deprecated and will be removed in v6", category=FutureWarning)
profile, device = get_profile(), get_device()
ref, tok = pipeline.load_sft(profile, device=device)
evaluator = Evaluator(ref, tok, profile=profile)
sft_metrics = evaluator(ref)
print(f"profile={profile.name}  device={device}  SFT model: {pipeline.sft_folder(profile, progress=False).name}")
print("SFT against itself:", {k: round(v, 3) for k, v in sft_metrics.items()})

# %% [markdown]
# ## 2. The course's data is already in TRL's format
#
# Lecture 04's preference pairs: two SFT samples per train prompt, labelled by the Bradley-Terry annotator (`data.annotate_pairs`). Their columns `prompt`, `chosen`, `rejected` are TRL's "standard preference" format, which `RewardTrainer` and `DPOTrainer` read as they are (the gold scores ride along for analysis; TRL drops columns it does not use). KTO's rows (section 6) come from the same pairs.

# %%
config = dpo.DPOConfig.for_profile(profile)  # lecture 04's settings
pairs = dpo.make_pairs(ref, tok, config)
print(pairs)
print(pairs[0])

# %% [markdown]
# One thing does differ: the text that gets tokenised. The course encodes `<bos> prompt completion <eos>` from token ids (`sampling.encode`). TRL joins **strings**, `prompt + chosen + eos_token`, and tokenises them with whatever special tokens the tokenizer adds itself; the course's word-level tokenizer adds none. Two consequences:
#
# * without a space, the prompt's last word and the completion's first word merge into one word the vocabulary does not have;
# * without `<bos>` in the text, TRL's sequences would start without the `<bos>` that every SFT sequence started with.
#
# So the prompt TRL sees is `<bos>` + prompt + a space. With it, TRL's tokens are exactly the course's:

# %%
def trl_prompt(prompt: str) -> str:
    """The prompt as TRL must see it here: the course's <bos> in front, a space behind."""
    return tok.bos_token + prompt + " "


p, c = pairs[0]["prompt"], pairs[0]["chosen"]
print("prompt + completion:     ", tok.tokenize(p + c))
print("trl_prompt + completion: ", tok.tokenize(trl_prompt(p) + c + tok.eos_token))
assert tok.unk_token in tok.tokenize(p + c)
assert tok(trl_prompt(p) + c + tok.eos_token)["input_ids"] == encode(tok, [p], [c]).input_ids[0].tolist()
trl_pairs = pairs.map(lambda row: {"prompt": trl_prompt(row["prompt"])})

# %% [markdown]
# ## 3. TRL's defaults, and what changes here
#
# TRL's trainers are built for models of billions of weights on GPUs, and their defaults say so. Here they are, read from the installed TRL's config classes, beside what this notebook sets (every run below uses the right-hand column):

# %%
SETTINGS = [  # (TrainingArguments field, this notebook's value, why)
    ("bf16", "False", "3.1: the defaults refuse to start on a CPU; 5.3: bf16 moves the log-probs"),
    ("gradient_checkpointing", "False", "3.2: re-runs the forward in the backward, to save memory this model does not need"),
    ("learning_rate", "2e-3 / 1e-3 / 1e-3 / 3e-4", "the course's (lectures 01, 04, 05, 07); 5.4: at 1e-6 DPO barely moves"),
    ("per_device_train_batch_size", "64 / 64 / 64 / 24", "the course's (KTO: half of lecture 05's 128)"),
    ("max_length", "64", "3.3: the model has 64 positions; longer is an IndexError"),
    ("max_completion_length", "32", "GRPO's sampling limit: the course's max_new_tokens"),
    ("use_cpu", "device is the CPU", "train where the course's model is (get_device)"),
    ("report_to", "none", "no experiment tracker"),
    ("save_strategy", "no", "no checkpoints (output_dir: a temporary folder, deleted at the end)"),
    ("logging_steps", "1", "every step into the log history, plotted with the course's dashboard"),
    ("seed", "0", "the course's seed"),
]
if trl_here():
    CLASSES = (trl.RewardConfig, trl.DPOConfig, trl.KTOConfig, trl.GRPOConfig)
    DEFAULTS = [cls(output_dir=OUT, use_cpu=True) for cls in CLASSES]  # use_cpu, or bf16 refuses a CPU (3.1)
    head = "| setting | " + " | ".join(c.__name__ for c in CLASSES) + " | here | why (section) |"
    lines = [head, "|---" * (len(CLASSES) + 3) + "|"]
    for name, here, why in SETTINGS:
        values = [cls.__dataclass_fields__["use_cpu"].default if name == "use_cpu" else getattr(a, name, "-")
                  for cls, a in zip(CLASSES, DEFAULTS)]
        values = [getattr(v, "value", v) for v in values]  # enums (save_strategy): their value
        lines.append(f"| `{name}` | " + " | ".join(map(str, values)) + f" | {here} | {why} |")
    display(Markdown("\n".join(lines)))

# %% [markdown]
# The method-specific settings (beta, the schedules, GRPO's group size and loss) are set to the course's values in each section, and printed there.
#
# ### 3.1 bf16
#
# `bf16` defaults to `True` (whenever `fp16` is off). On a machine without a bf16-capable GPU the default configuration does not even start:

# %%
if trl_here():
    try:
        trl.DPOConfig(output_dir=OUT)
        print("DPOConfig() with its defaults starts on this machine (it has a bf16-capable GPU)")
    except ValueError as e:
        print("DPOConfig() with its defaults:", e)

# %% [markdown]
# With `use_cpu=True` it would run, in bfloat16 autocast; section 5.3 measures what that does to the log-probs. Every run here keeps float32, as the course does.
#
# ### 3.2 Gradient checkpointing
#
# Gradient checkpointing keeps fewer activations in the forward pass and recomputes them in the backward: memory for time. Count the forward passes of the first block's attention in one training step (forward and backward of 64 pairs), without and with it:

# %%
probe = copy.deepcopy(ref).train()
first_batch = dpo.encode_pairs(tok, pairs["prompt"][:64], pairs["chosen"][:64], pairs["rejected"][:64], device).trim()
calls = []
probe.transformer.h[0].attn.register_forward_hook(lambda *args: calls.append(1))


def block_forwards(model):
    """How often block 0's attention runs in one forward + backward of the summed log-probs of the first batch."""
    calls.clear()
    sequence_logprobs(model, first_batch).sum().backward()
    model.zero_grad()
    return len(calls)


plain = block_forwards(probe)
probe.gradient_checkpointing_enable()
ckpt = block_forwards(probe)
n_weights = sum(p.numel() for p in ref.parameters())
print(f"block 0's attention runs {plain}x per step, {ckpt}x with gradient checkpointing; the model has {n_weights:,} weights "
      f"({4 * n_weights / 2**20:.2f} MiB in float32)")
assert (plain, ckpt) == (1, 2)

# %% [markdown]
# With checkpointing the blocks' forward runs twice per step. A billion-weight model needs the memory it saves; one of 0.4 MiB does not.
#
# ### 3.3 Lengths
#
# TRL's `max_length` of 1024 tokens (and GRPO's `max_completion_length` of 512) are limits, not paddings, but the model must be able to read what they let through. GPT-2 has one learned embedding per position, 64 here; a 65th position does not exist:

# %%
lengths = first_batch.attention_mask.sum(-1)
try:
    copy.deepcopy(ref).cpu()(torch.zeros(1, profile.n_positions + 1, dtype=torch.long))
except IndexError as e:
    print(f"a sequence of {profile.n_positions + 1} tokens: IndexError: {e}")
print(f"longest sequence in the first 64 pairs: {int(lengths.max())} tokens; the model has {ref.config.n_positions} positions")
assert ref.config.n_positions == profile.n_positions and int(lengths.max()) <= profile.n_positions

# %% [markdown]
# Every TRL config below is built by one function from those settings, plus the method's own. `trl_trainer` builds a trainer on the course's tokenizer (it has its own `<pad>`, distinct from `<eos>`, so TRL does not substitute one) and removes TRL's per-step printout; `trl_history` turns TRL's log into a course `History`, since TRL's metric names are the course's (`rewards/margins`, `loss`, ...), so both runs share one dashboard.

# %%
def trl_args(config_cls, **method_settings):
    """A TRL config with what a CPU and a 110k-weight GPT-2 need (section 3), plus the method's settings."""
    settings = dict(output_dir=OUT, use_cpu=device.type == "cpu", bf16=False, gradient_checkpointing=False,
                    report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0,
                    prediction_loss_only=True)  # evaluate() returns the loss and TRL's metrics, no logits
    return config_cls(**{**settings, **method_settings})


def trl_trainer(trainer_cls, args, **kwargs):
    """A TRL trainer on the course's tokenizer, without its printout of every logged step.

    Pass it copies (`copy.deepcopy(ref)`), never `ref` itself: TRL patches the models it is given (section 5.2)."""
    trainer = trainer_cls(args=args, processing_class=tok, **kwargs)
    trainer.remove_callback(PrinterCallback)
    assert tok.pad_token == "<pad>" and tok.padding_side == "left"  # TRL changed neither
    return trainer


def trl_history(trainer, name, per_step=1, rename=None):
    """TRL's logged metrics as a course History (`per_step` TRL steps make one step of the x axis)."""
    history = History(name)
    for row in trainer.state.log_history:
        history.log(row["step"] // per_step, **{(rename or {}).get(k, k): v for k, v in row.items()
                                                if isinstance(v, (int, float)) and k != "step"})
    return history


def evaluated(history, model, last_step, seconds):
    """`history` with the shared evaluation of the SFT model at step 0 and of `model` at `last_step`."""
    history.log(0, **sft_metrics)
    history.log(last_step, **evaluator(model), seconds=seconds)
    return history


def same_batch_table(rows):
    """Print (name, course, TRL) rows and return the largest |course - TRL|."""
    print(f"{'':18s} {'course':>10s} {'TRL':>10s}")
    for name, ours, theirs in rows:
        print(f"{name:18s} {ours:10.5f} {theirs:10.5f}")
    return max(abs(ours - theirs) for _, ours, theirs in rows)

# %% [markdown]
# ## 4. `RewardTrainer` on the preference pairs
#
# The model is the course's reward model before training, `rm.new_reward_model`: a `GPT2ForSequenceClassification` with the SFT model's transformer and a fresh score head, the class `RewardTrainer` expects. The course (`rm.train_reward_model`) and TRL each train one copy of it with lecture 01's settings, at the same budget of `RM_STEPS` steps of 64 pairs (lecture 01 trains 500 on four times as many pairs). Both are then scored by the same function, `rm.rm_metrics`, on fresh held-out pairs: `eval_accuracy` is the agreement with the gold judge on pairs whose gold scores differ by more than 0.2.

# %%
RM_STEPS = 100
rm_config = rm.RMConfig.for_profile(profile, steps=RM_STEPS)
held_out = rm.preference_data(ref, tok, 256, "eval", seed=0)
rm_init = rm.new_reward_model(ref, tok, seed=0)
t = time.time()
course_rm = copy.deepcopy(rm_init)
rm.train_reward_model(course_rm, tok, pairs, rm_config, progress=False)
rm_results = {"course": {**rm.rm_metrics(course_rm, tok, held_out), "seconds": time.time() - t}}
print(f"RM_STEPS={RM_STEPS}, batch {rm_config.batch_size}, lr {rm_config.lr}, centering {rm_config.center_coef}")
print("course:", {k: round(v, 3) for k, v in rm_results["course"].items()})

# %% [markdown]
# TRL's run: the same learning rate and cosine schedule with a 5% warm-up, the same centering term (`center_rewards_coefficient`, lecture 01's `center_coef`). `RewardTrainer` appends `<eos>` and scores the last token that is not padding, where the course's `rm.score` reads its reward too.

# %%
if trl_here():
    rm_args = trl_args(trl.RewardConfig, max_steps=RM_STEPS, per_device_train_batch_size=rm_config.batch_size,
                       learning_rate=rm_config.lr, lr_scheduler_type="cosine", warmup_steps=max(1, RM_STEPS // 20),
                       center_rewards_coefficient=rm_config.center_coef, max_length=profile.n_positions)
    t = time.time()
    trl_rm = copy.deepcopy(rm_init)
    trl_trainer(trl.RewardTrainer, rm_args, model=trl_rm, train_dataset=trl_pairs).train()
    rm_results["TRL"] = {**rm.rm_metrics(trl_rm, tok, held_out), "seconds": time.time() - t}
    print("TRL:   ", {k: round(v, 3) for k, v in rm_results["TRL"].items()})

# %% [markdown]
# Both reward models order held-out pairs the way the gold judge does far more often than a coin (0.5), and about equally often. "About": the two runs see the pairs in different orders (TRL's random batches, the course's batches of similar lengths), and after 100 steps a reward model is still learning (lecture 01 trains 500), so two runs that differ only in the order of their batches need not agree closely. The assert allows 0.15:

# %%
for who, r in rm_results.items():
    assert r["eval_accuracy"] > 0.65, (who, r)
if HAVE_TRL:
    gap = abs(rm_results["TRL"]["eval_accuracy"] - rm_results["course"]["eval_accuracy"])
    print(f"accuracy vs the gold judge: course {rm_results['course']['eval_accuracy']:.3f}, "
          f"TRL {rm_results['TRL']['eval_accuracy']:.3f} (difference {gap:.3f})")
    assert gap < 0.15

# %% [markdown]
# ## 5. `DPOTrainer`
#
# ### 5.1 Step 0, on the same batch
#
# Lecture 04's sanity numbers: with the policy equal to the reference, every implicit reward $\beta\log\frac{\pi_\theta}{\pi_\text{ref}}$ is 0 and the loss is $-\log\sigma(0) = \ln 2$. The course computes them with `losses.dpo_loss` on summed log-probs of the first batch of pairs:

# %%
B = config.batch_size
first = pairs.select(range(B))
batch = dpo.encode_pairs(tok, first["prompt"], first["chosen"], first["rejected"], device)
KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected")


def course_dpo_numbers(policy) -> dict:
    """The course's DPO loss and TRL-named metrics of `policy` on the first batch (losses.dpo_loss)."""
    with torch.no_grad():
        lp, lp_ref = sequence_logprobs(policy, batch), sequence_logprobs(ref, batch)
    loss, rc, rr = losses.dpo_loss(lp[:B], lp[B:], lp_ref[:B], lp_ref[B:], config.beta)
    return dpo.dpo_metrics(loss, rc, rr, lp[:B], lp[B:])


course_step0 = course_dpo_numbers(copy.deepcopy(ref))
print({k: round(course_step0[k], 4) for k in KEYS}, f" ln 2 = {math.log(2):.4f}")

# %% [markdown]
# TRL's `DPOTrainer` with lecture 04's settings (beta, learning rate, 10% linear warm-up then linear decay, batch, steps, clipping) and the frozen SFT model as `ref_model`. `evaluate()` on the same 64 pairs, before any step, gives TRL's numbers for the same batch (one evaluation batch of 64, so TRL's means are over the same rows):

# %%
if trl_here():
    dpo_settings = dict(beta=config.beta, learning_rate=config.lr, max_steps=config.steps, per_device_train_batch_size=B,
                        per_device_eval_batch_size=B, lr_scheduler_type="linear", warmup_steps=config.steps // 10,
                        max_grad_norm=config.max_grad_norm, max_length=profile.n_positions, dataloader_drop_last=True)
    dpo_args = trl_args(trl.DPOConfig, **dpo_settings)
    trl_policy = copy.deepcopy(ref)
    dpo_trainer = trl_trainer(trl.DPOTrainer, dpo_args, model=trl_policy, ref_model=copy.deepcopy(ref),
                              train_dataset=trl_pairs)
    trl_step0 = dpo_trainer.evaluate(trl_pairs.select(range(B)))
    worst = same_batch_table([(k, course_step0[k], trl_step0[f"eval_{k}"]) for k in KEYS])
    assert abs(trl_step0["eval_loss"] - math.log(2)) < 1e-6 and abs(trl_step0["eval_rewards/margins"]) < 1e-6
    assert worst < 1e-4, worst
    print(f"largest difference {worst:.1e}")

# %% [markdown]
# Equal log-probs (summed over each completion) mean TRL sees the same tokens, the same completion mask and the same `<eos>` as the course. The step-0 loss alone would not show that: policy and reference always see the same input, so the loss is $\ln 2$ whatever the text. Section 2's two mistakes, on the same batch:

# %%
if trl_here():
    for mistake, text in (("no space", tok.bos_token + "{}"), ("no <bos>", "{} ")):
        m = dpo_trainer.evaluate(pairs.select(range(B)).map(lambda row, t=text: {"prompt": t.format(row["prompt"])}))
        print(f"{mistake}: loss {m['eval_loss']:.4f}, logps/chosen {m['eval_logps/chosen']:8.3f} "
              f"(the course's: {course_step0['logps/chosen']:.3f})")
        assert abs(m["eval_loss"] - math.log(2)) < 1e-6
        assert abs(m["eval_logps/chosen"] - course_step0["logps/chosen"]) > 1e-3

# %% [markdown]
# Both losses are $\ln 2$; the log-probs differ. Without the space the prompt's last word and the completion's first become one unknown token, and the sums move by whole nats (TRL notices this one: it warns above that the tokenized prompt is not a prefix of the tokenized prompt + completion). Without `<bos>` they move by little on this model, and nothing warns; the comparison with the course's numbers catches both.

# %% [markdown]
# ### 5.2 TRL patches the models it is given
#
# TRL 1.16 gives every model it trains, and its reference, a fused LM head: it replaces the model's `forward` by a wrapper around the original one. The wrapper keeps a handle on the **original model's** forward, and `copy.deepcopy` does not copy functions. So a deep copy of a model TRL has patched still runs the original's weights. The reference the DPO trainer holds, copied, and every weight of the copy changed:

# %%
if trl_here():
    patched = dpo_trainer.ref_model
    clone = copy.deepcopy(patched)
    with torch.no_grad():
        for w in clone.parameters():
            w.add_(torch.randn_like(w))
        same = torch.equal(sequence_logprobs(clone, batch), sequence_logprobs(patched, batch))
    print("the clone, all of its weights changed, computes the original's log-probs:", same)
    assert same and type(patched).forward is not patched.forward

# %% [markdown]
# Hence the rule of `trl_trainer`: hand TRL copies of the SFT model, and make every copy from the course's own `ref`, which no trainer ever sees. Copy a patched model and train the copy with the course's loop, and it silently trains nothing (the gradients go to the original).
#
# ### 5.3 What bf16 would do to the same numbers
#
# With `bf16=True`, Accelerate runs the training forward under bfloat16 autocast. bfloat16 keeps 8 bits of mantissa, so every matrix product is rounded. The same autocast around the course's log-probs of the first batch:

# %%
with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
    lp_bf16 = sequence_logprobs(ref, batch)
with torch.no_grad():
    lp_fp32 = sequence_logprobs(ref, batch)
drift = (lp_bf16 - lp_fp32).abs()
loss_bf16 = losses.dpo_loss(lp_bf16[:B], lp_bf16[B:], lp_bf16[:B], lp_bf16[B:], config.beta)[0].item()
print(f"|log π(y|x) in bf16 - in float32|: mean {drift.mean():.3f}, max {drift.max():.3f} nats; "
      f"step-0 loss in bf16 {loss_bf16:.4f}")

# %% [markdown]
# Policy and reference computed the same way still give $\ln 2$ at step 0, so bf16 passes the sanity check. What it costs is precision in the log-ratios DPO learns from. On a large model on a GPU that is the usual trade (section 9); on this model, on a CPU, there is no memory to save.
#
# ### 5.4 The learning rate
#
# TRL's DPO default learning rate, $10^{-6}$, is for fine-tuning billions of weights that already write well. The course's GPT-2 has 110 thousand and learns at $10^{-3}$ (lecture 04). Ten steps at TRL's default, on the first ten batches:

# %%
if trl_here():
    slow_args = trl_args(trl.DPOConfig, **{**dpo_settings, "learning_rate": 1e-6, "max_steps": 10})
    slow_trainer = trl_trainer(trl.DPOTrainer, slow_args,
                               model=copy.deepcopy(ref), ref_model=copy.deepcopy(ref), train_dataset=trl_pairs.select(range(10 * B)))
    slow_trainer.train()
    slow = trl_history(slow_trainer, "lr 1e-6")
    print(f"rewards/margins after 10 steps at lr 1e-6: {slow.last('rewards/margins'):+.5f}")

# %% [markdown]
# The margins barely leave 0. Compare them with the run of section 5.5 at step 10, below.
#
# ### 5.5 Training, and the same batch after training
#
# Now the full run, and lecture 04's run with the same pairs, steps and settings:

# %%
if trl_here():
    t = time.time()
    dpo_trainer.train()
    trl_dpo = evaluated(trl_history(dpo_trainer, "TRL DPOTrainer"), trl_policy, config.steps, time.time() - t)
    print(f"TRL: {time.time() - t:.0f} s;  rewards/margins at step 10: {trl_dpo.series('rewards/margins')[1][9]:+.4f} "
          f"(lr {config.lr:g}) against {slow.last('rewards/margins'):+.5f} at lr 1e-6")
t = time.time()
course_policy = copy.deepcopy(ref)
course_dpo = dpo.train_dpo(course_policy, ref, tok, pairs, config, progress=False, name="course train_dpo")
course_dpo = evaluated(course_dpo, course_policy, config.steps, time.time() - t)
print(f"course: {time.time() - t:.0f} s")

# %% [markdown]
# After training the implicit rewards are no longer 0, so the same-batch check now tests something: TRL's trained policy, scored on the first batch by TRL (`evaluate`) and by the course's `losses.dpo_loss`:

# %%
if trl_here():
    trl_after = dpo_trainer.evaluate(trl_pairs.select(range(B)))
    course_after = course_dpo_numbers(trl_policy)
    worst = same_batch_table([(k, course_after[k], trl_after[f"eval_{k}"]) for k in KEYS])
    assert abs(course_after["rewards/margins"]) > 0.05 and worst < 1e-4, worst
    print(f"largest difference {worst:.1e}")

# %% [markdown]
# The two runs on the shared dashboard (the shared metrics at step 0 and at the end; the training curves every step):

# %%
if trl_here():
    dashboard(course_dpo, trl_dpo, title=f"DPO, β = {config.beta}: the course's loop and TRL's", extra=("loss", "rewards/margins"))
    plt.show()

# %% [markdown]
# ## 6. `KTOTrainer`
#
# KTO trains on thumbs-up/down rows: each pair becomes two rows, the chosen completion desirable and the rejected one undesirable (`kto.pairs_to_unpaired`, as the KTO paper does to compare with DPO). TRL's `KTOTrainer` reads its data **in order** (`train_sampling_strategy="sequential"`), because it builds the mismatched completions of its KL estimate once, by rotating each batch by one row: row $i$ borrows the completion of row $i-1$. In the pairs' order (chosen, rejected, chosen, ...) every rejected row would borrow its own pair's chosen completion, an answer to its own prompt, and the "mismatched" estimate would not be mismatched. So shuffle first; the course's `train_kto` draws its own random batches from the same rows.

# %%
def own_prompt_share(ds, batch_size):
    """Share of rows whose borrowed KL completion (TRL's rotation within each batch) answers the same prompt."""
    prompts = ds["prompt"][: len(ds) // batch_size * batch_size]
    return np.mean([prompts[i] == prompts[i - 1 if i % batch_size else i + batch_size - 1] for i in range(len(prompts))])


unpaired = kto.pairs_to_unpaired(pairs).shuffle(seed=0)
kto_config = kto.KTOConfig.for_profile(profile, batch_size=64, lambda_d=round(kto.balanced_lambda_d(unpaired), 3))
trl_unpaired = unpaired.map(lambda row: {"prompt": trl_prompt(row["prompt"])})
print(kto_config)
print(unpaired)
print(f"KL rows that borrow an answer to their own prompt: {own_prompt_share(kto.pairs_to_unpaired(pairs), 64):.3f} in the "
      f"pairs' order, {own_prompt_share(unpaired, 64):.3f} shuffled")

# %% [markdown]
# The same-batch check, on the first batch of rows: TRL's loss and its KL estimate `kl` (the course's reference point $z_0$, lecture 05) against `kto.kto_step`, which uses the same rotation (`losses.mismatched_indices`). At step 0 the policy is the reference: $z_0 = 0$ and every row's loss is $\lambda_y(1 - \sigma(0)) = \lambda_y/2$.

# %%
KB = kto_config.batch_size
first_rows = unpaired.select(range(KB))
kto_batch = encode(tok, first_rows["prompt"], first_rows["completion"], device=device)
kto_labels = torch.tensor(first_rows["label"], device=device)


def course_kto_numbers(policy) -> dict:
    """The course's KTO loss and z0 of `policy` on the first batch of rows (kto.kto_step)."""
    with torch.no_grad():
        loss, m = kto.kto_step(policy, ref, tok, kto_batch, kto_labels, kto_config)
    return {"loss": loss.item(), "kl": m["z0"], "z0/unclamped": m["z0/unclamped"]}


kto_step0 = course_kto_numbers(copy.deepcopy(ref))
expected = np.mean([kto_config.lambda_d / 2 if y else kto_config.lambda_u / 2 for y in first_rows["label"]])
print({k: round(v, 5) for k, v in kto_step0.items()}, f"  mean of λ_y/2: {expected:.5f}")
assert abs(kto_step0["loss"] - expected) < 1e-6 and kto_step0["kl"] == 0

# %%
if trl_here():
    kto_args = trl_args(trl.KTOConfig, beta=kto_config.beta, desirable_weight=kto_config.lambda_d,
                        undesirable_weight=kto_config.lambda_u, learning_rate=kto_config.lr, max_steps=kto_config.steps,
                        per_device_train_batch_size=KB, per_device_eval_batch_size=KB, lr_scheduler_type="linear",
                        warmup_steps=kto_config.warmup_steps, max_grad_norm=kto_config.max_grad_norm,
                        max_length=profile.n_positions)
    trl_kto_policy = copy.deepcopy(ref)
    kto_trainer = trl_trainer(trl.KTOTrainer, kto_args, model=trl_kto_policy, ref_model=copy.deepcopy(ref),
                              train_dataset=trl_unpaired)
    m = kto_trainer.evaluate(trl_unpaired.select(range(KB)))
    worst = same_batch_table([(k, kto_step0[k], m[f"eval_{k}"]) for k in ("loss", "kl")])
    assert worst < 1e-5, worst

# %% [markdown]
# Train both, at lecture 05's settings (`beta` = 1, the course's, against TRL's default 0.1; $\lambda_D$ from the data) with half its batch, 64 rows a step, then the same batch again with TRL's trained policy. TRL's `kl`, like the course's $z_0$, is clamped at 0 (lecture 05); the unclamped estimate is printed beside it:

# %%
if trl_here():
    t = time.time()
    kto_trainer.train()
    trl_kto = evaluated(trl_history(kto_trainer, "TRL KTOTrainer"), trl_kto_policy, kto_config.steps, time.time() - t)
    print(f"TRL: {time.time() - t:.0f} s")
    m = kto_trainer.evaluate(trl_unpaired.select(range(KB)))
    after = course_kto_numbers(trl_kto_policy)
    worst = same_batch_table([(k, after[k], m[f"eval_{k}"]) for k in ("loss", "kl")])
    print(f"z0 before the clamp: {after['z0/unclamped']:+.4f}")
    assert abs(after["loss"] - kto_step0["loss"]) > 0.01 and worst < 1e-4, worst
t = time.time()
course_kto_policy = copy.deepcopy(ref)
course_kto = kto.train_kto(course_kto_policy, ref, tok, unpaired, kto_config, progress=False, name="course train_kto")
course_kto = evaluated(course_kto, course_kto_policy, kto_config.steps, time.time() - t)
print(f"course: {time.time() - t:.0f} s")

# %%
if trl_here():
    dashboard(course_kto, trl_kto, title=f"KTO, β = {kto_config.beta:g}: the course's loop and TRL's", extra=("loss",))
    plt.show()

# %% [markdown]
# ## 7. `GRPOTrainer`, with the gold judge as the reward function
#
# ### 7.1 The reward function
#
# TRL calls a reward function with the prompts, the decoded completions and their token ids, plus every other column of the dataset by name, and wants one float per completion. The gold judge needs the course's prompt (without `<bos>`: a dataset column, `review_prompt`) and whether the review finished (it did if its ids hold `<eos>`; TRL cuts the ids after the first one). Check it against the evaluation's own scoring of the SFT model's held-out samples:

# %%
def gold_reward(prompts, completions, completion_ids, review_prompt, **kwargs):
    """The gold judge (rl.gold_reward_fn) with TRL's reward-function signature: one float per completion."""
    finished = [tok.eos_token_id in ids for ids in completion_ids]  # cut off at the length limit: invalid, -1
    return rl.gold_reward_fn(review_prompt, completions, finished)


ref_batch = evaluator.ref_batch
ids = [row[mask.bool()].tolist() for row, mask in zip(ref_batch.input_ids, ref_batch.completion_mask)]
scores = gold_reward([trl_prompt(p) for p in ref_batch.prompts], ref_batch.completions, ids, review_prompt=ref_batch.prompts)
assert scores == evaluator.ref_rewards
print(f"{len(scores)} held-out samples: the same gold scores as the evaluation (mean {np.mean(scores):+.3f})")

# %% [markdown]
# ### 7.2 GPT-2's positions under left padding
#
# GRPO samples: prompts are padded on the **left**, so that every row generates from the same column. The course computes positions from the attention mask (`sampling.position_ids`: 0 at each row's first real token), and `generate` does the same. TRL's GRPO then scores the sampled tokens with a forward pass that passes no position ids, and GPT-2 then counts positions from column 0, padding included. GPT-2's position embeddings are absolute, so a padded row is scored as if it sat further right. On the evaluation's own left-padded samples:

# %%
def logps_without_positions(model, b):
    """(B,) summed completion log-probs from a forward pass without position ids."""
    with torch.no_grad():
        logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits[:, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, b.input_ids[:, 1:, None]).squeeze(-1)
    return (lp * b.completion_mask[:, 1:]).sum(-1)


with torch.no_grad():
    right = sequence_logprobs(ref, ref_batch)
left_pads = (ref_batch.attention_mask.cumsum(-1) == 0).sum(-1)
gap = (logps_without_positions(ref, ref_batch) - right).abs()
print(f"rows with left padding: {int((left_pads > 0).sum())} of {len(left_pads)}; |Δ log π(y|x)| without position ids: "
      f"max {gap.max():.3f}, mean {gap[left_pads > 0].mean():.3f} nats (rows without padding: max {gap[left_pads == 0].max():.1e})")

# %% [markdown]
# That is a different model from the one that sampled. Models with rotary position embeddings (Llama, Qwen) depend only on relative positions, so shifting a whole row's positions changes nothing; a randomly initialised one-layer Llama shows it:

# %%
torch.manual_seed(0)
llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=2)).eval()
x = torch.randint(0, len(tok), (1, 12))
with torch.no_grad():
    shift = (llama(x, position_ids=torch.arange(12)[None]).logits - llama(x, position_ids=torch.arange(12)[None] + 5).logits).abs().max()
print(f"Llama (rotary): largest change of a logit when every position moves by 5: {shift:.1e}")
assert shift < 1e-4

# %% [markdown]
# GPT-2 does care. The fix is the course's rule in GPT-2's transformer: when no position ids come, count them from the attention mask. `count_positions_from_mask` applies it to a model (to the policy here, and in section 7.3 to the reference TRL loads for its KL term), and it changes nothing where positions are given, as they are in sampling:

# %%
class MaskPositions(GPT2Model):
    """GPT-2's transformer, counting positions from the attention mask when it is given none (as `sampling` does)."""

    def forward(self, *args, **kwargs):
        input_ids = args[0] if args else kwargs.get("input_ids")
        mask = kwargs.get("attention_mask")
        if kwargs.get("position_ids") is None and mask is not None and input_ids is not None and mask.shape == input_ids.shape:
            kwargs["position_ids"] = position_ids(mask)
        return super().forward(*args, **kwargs)


def count_positions_from_mask(lm):
    """`lm` (a GPT-2 LM) with the MaskPositions transformer; returns it."""
    assert isinstance(lm.transformer, GPT2Model), "only GPT-2's absolute positions need this"
    lm.transformer.__class__ = MaskPositions
    return lm


fixed = count_positions_from_mask(copy.deepcopy(ref))
assert torch.allclose(logps_without_positions(fixed, ref_batch), right, atol=1e-4)
print("with the fix, a forward pass without position ids gives the course's log-probs")

# %% [markdown]
# ### 7.3 Training
#
# Lecture 07's GRPO: each rollout samples $k = 4$ completions of 12 prompts, then two epochs of minibatches of 24 completions, each an AdamW step ($\beta_2 = 0.95$, constant learning rate); per-token clipped loss with $\beta\,k_3$ KL, averaged per completion then over completions (TRL's `loss_type="grpo"`), advantages normalised by each group's std (`scale_rewards="group"`). In TRL's terms a rollout is one generation batch of 48 (`steps_per_generation=2` minibatches, `num_iterations=2` passes), so TRL's optimiser steps are 4 per rollout. Same prompts in the same order (`shuffle_dataset=False`), same sampling (temperature 1, no top-k or top-p):

# %%
grpo_config = grpo.GRPOConfig.for_profile(profile)
per_rollout = grpo_config.epochs * grpo_config.batch_size * grpo_config.k // grpo_config.minibatch
grpo_prompts = world.make_prompts(grpo_config.steps * grpo_config.batch_size, "train", grpo_config.seed)
prompt_ds = datasets.Dataset.from_dict({"prompt": [trl_prompt(p) for p in grpo_prompts], "review_prompt": grpo_prompts})
print(grpo_config)
print(f"{grpo_config.steps} rollouts x {grpo_config.batch_size * grpo_config.k} completions = {grpo_config.completions} "
      f"sampled completions; {per_rollout} optimiser steps per rollout")

# %%
if trl_here():
    grpo_args = trl_args(trl.GRPOConfig, learning_rate=grpo_config.lr, adam_beta2=0.95, lr_scheduler_type="constant",
                         max_steps=grpo_config.steps * per_rollout, per_device_train_batch_size=grpo_config.minibatch,
                         steps_per_generation=grpo_config.batch_size * grpo_config.k // grpo_config.minibatch,
                         num_iterations=grpo_config.epochs, num_generations=grpo_config.k, beta=grpo_config.beta,
                         max_completion_length=grpo_config.max_new_tokens, epsilon=grpo_config.clip_eps,
                         loss_type="grpo", scale_rewards="group", max_grad_norm=grpo_config.max_grad_norm,
                         temperature=grpo_config.sampling_temperature, top_k=0, top_p=1.0, shuffle_dataset=False,
                         logging_steps=per_rollout)
    trl_grpo_policy = count_positions_from_mask(copy.deepcopy(ref))
    grpo_trainer = trl_trainer(trl.GRPOTrainer, grpo_args, model=trl_grpo_policy, reward_funcs=gold_reward,
                               train_dataset=prompt_ds)
    count_positions_from_mask(grpo_trainer.accelerator.unwrap_model(grpo_trainer.ref_model))  # TRL loads it from the folder
    t = time.time()
    grpo_trainer.train()
    trl_grpo = evaluated(trl_history(grpo_trainer, "TRL GRPOTrainer", per_rollout, rename={"reward": "score"}),
                         trl_grpo_policy, grpo_config.steps, time.time() - t)
    print(f"TRL: {time.time() - t:.0f} s")

# %%
t = time.time()
seed_everything(grpo_config.seed)
course_grpo_policy = rl.new_policy(ref)
course_grpo = grpo.train_group(course_grpo_policy, ref, tok, grpo_config, prompts=grpo_prompts, progress=False,
                               name="course train_group")
course_grpo = evaluated(course_grpo, course_grpo_policy.lm, grpo_config.steps, time.time() - t)
print(f"course: {time.time() - t:.0f} s")
if trl_here():
    dashboard(course_grpo, trl_grpo, title=f"GRPO, β = {grpo_config.beta}, k = {grpo_config.k}: the course's loop and TRL's",
              extra=("score",), x_label="rollout")
    plt.show()

# %% [markdown]
# (`score` is the mean gold score of each rollout's samples: TRL logs it as `reward`.)
#
# ## 8. Side by side
#
# Each method, trained by the course and by TRL at the same budget, on the one shared evaluation: 128 held-out prompts, one sample each, against the SFT model's samples. A win-rate on 128 prompts has a standard error of about 0.04, so two runs 0.05 apart are not different.

# %%
runs = {"DPO": [course_dpo], "KTO": [course_kto], "GRPO": [course_grpo]}
if HAVE_TRL:
    for method, history in (("DPO", trl_dpo), ("KTO", trl_kto), ("GRPO", trl_grpo)):
        runs[method].append(history)
keys = ("win_rate", "kl", "gold_reward", "valid_rate", "seconds")
print(f"{'':34s}" + "".join(f"{k:>12s}" for k in keys))
print(f"{'SFT model':34s}" + "".join(f"{sft_metrics.get(k, float('nan')):12.3f}" for k in keys))
for method, histories in runs.items():
    for h in histories:
        print(f"{method + ': ' + h.name:34s}" + "".join(f"{h.last(k):12.3f}" for k in keys))

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3))
for ax, key in zip(axes, ("win_rate", "kl", "gold_reward")):
    for i, histories in enumerate(runs.values()):
        for j, h in enumerate(histories):
            ax.bar(i + 0.4 * j - 0.2, h.last(key), 0.38, color=f"C{j}", label=("course", "TRL")[j] if i == 0 else None)
    ax.axhline(sft_metrics[key], color="grey", ls="--", lw=1, label="SFT model")
    ax.set_xticks(range(len(runs)), list(runs)); ax.set_title(key)
axes[0].legend(fontsize=8); plt.tight_layout(); plt.show()

# %% [markdown]
# What the numbers above say, asserted so that a regression fails the notebook (the margins leave room for the standard error of the win-rate and for other SFT models):
#
# * every run, the course's and TRL's, beats the SFT model: a win-rate of at least 0.6 with at least 85% valid reviews;
# * TRL's run of each method lands within 0.15 of the course's run on the win-rate.

# %%
for method, histories in runs.items():
    for h in histories:
        assert h.last("win_rate") >= 0.6 and h.last("valid_rate") >= 0.85, (method, h.name, h.final())
if HAVE_TRL:
    gaps = {method: abs(hs[1].last("win_rate") - hs[0].last("win_rate")) for method, hs in runs.items()}
    print("|win-rate TRL - course|:", {k: round(v, 3) for k, v in gaps.items()})
    assert max(gaps.values()) <= 0.15, gaps

# %% [markdown]
# ## 9. What changes for a real model
#
# Everything above is the workflow for a real model too: TRL-format datasets, a reward function with TRL's signature, the step-0 check on one batch, one evaluation that the training loop does not see. What changes is the scale, and with it most of section 3's table flips back to TRL's defaults. These are the commands; none of them was run for this notebook (there was no GPU), so there are no measurements here.
#
# **LoRA (PEFT).** Train a few million adapter weights instead of the whole model: `pip install peft`, then pass a `peft_config` to any of the trainers. With an adapter and no `ref_model`, TRL's DPO, KTO and GRPO trainers use the model with its adapter switched off as the reference, so there is no second copy in memory. Adapters learn at a larger learning rate than full fine-tuning; start from TRL's documentation for your model size, not from the $10^{-3}$ of this notebook.
#
# ```python
# from peft import LoraConfig
# from trl import DPOConfig, DPOTrainer
#
# peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
# args = DPOConfig(output_dir="dpo-lora", beta=0.1, per_device_train_batch_size=8, gradient_accumulation_steps=8,
#                  max_length=1024, report_to="none")          # bf16 and gradient checkpointing: TRL's defaults, on
# trainer = DPOTrainer(model="path/or/hub-id/of/a/causal-lm", args=args, train_dataset=pairs,  # TRL's columns
#                      peft_config=peft_config)
# trainer.train()
# ```
#
# **bf16 on a GPU.** On an Ampere or newer NVIDIA GPU, `bf16=True` (TRL's default) halves the memory of activations and runs the matrix products on tensor cores; keep it. Gradient checkpointing (also on by default) trades about one extra forward pass per step for the activations' memory: keep it when the model or the batch does not fit, switch it off when it does. Redo section 5.1's step-0 check in the precision you train in.
#
# **Several GPUs.** The same script runs data-parallel on every GPU of a machine through [🤗 Accelerate](https://huggingface.co/docs/accelerate): each GPU takes `per_device_train_batch_size` rows, so the effective batch is that times the number of GPUs times `gradient_accumulation_steps`.
#
# ```bash
# accelerate config                                   # once: answer the questions (GPUs, DeepSpeed/FSDP or not)
# accelerate launch --num_processes 4 train_dpo.py    # 4 GPUs, one process each
# accelerate launch --config_file examples/accelerate_configs/deepspeed_zero3.yaml --num_processes 8 train_grpo.py  # shard it
# ```
#
# TRL's repository ships ready-made Accelerate configs under `examples/accelerate_configs/` (`multi_gpu.yaml`, `deepspeed_zero1.yaml` to `deepspeed_zero3.yaml`, `fsdp2.yaml`). For GRPO on large models, generation dominates; TRL can hand it to a vLLM server (`use_vllm=True`).
#
# ## 10. Summary
#
# * The course's datasets are TRL's formats; its reward model is TRL's model class; its losses are TRL's losses. With the prompt written as TRL must see it (`<bos>`, a space) TRL's log-probs, implicit rewards and KTO reference point equal the course's on the same batch, at step 0 (DPO loss $\ln 2$, margins 0) and after training.
# * At the same budget, TRL's reward model, DPO, KTO and GRPO runs land where the course's runs land on the shared evaluation, all well above the SFT model.
# * TRL's defaults are for billion-weight models on GPUs: on a CPU with a 110k-weight GPT-2, switch off bf16 and gradient checkpointing, raise the learning rate ($10^{-6} \to 10^{-3}$ for DPO and KTO), cap lengths at the model's 64 positions, and write the prompt as the tokenizer needs it.
#
# **Pitfalls, and how to see them**
# * *Prompt and completion glued without a space*: unknown tokens at the boundary; the tokenizer's output shows it (section 2).
# * *No `<bos>` where the model was trained with one*: the step-0 loss is still $\ln 2$; only the log-probs against the course's (or the SFT loss) reveal it (section 5.1).
# * *bf16 on by default*: on a CPU the config refuses to start; where it starts, log-probs shift by rounding, and the step-0 check still passes (section 5.3).
# * *A deep copy of a model TRL has trained or used as a reference*: it still runs the original's weights through TRL's patched `forward`; the copy's loss does not fall and its gradients are `None`. Copy from a model TRL never saw (section 5.2).
# * *Learning rate $10^{-6}$ on a tiny model*: `rewards/margins` stay near 0 for many steps (section 5.4).
# * *KTO data in a structured order*: TRL reads rows in order and rotates each batch for its KL estimate; shuffle the rows first (section 6).
# * *Left padding with absolute positions (GPT-2) in GRPO*: the training forward scores tokens at shifted positions; compare a padded row's log-probs with and without position ids (section 7.2).
#
# ## 11. Exercises
#
# 1. Train TRL's DPO with `bf16=True` (and `use_cpu=True`) for the full run. Where do the win-rate and KL land, against section 5.5's float32 run?
# 2. Run section 7.3 without `count_positions_from_mask` (on the policy and the reference). Does TRL's GRPO still reach the course's win-rate? Which logged metric shows the mismatch at step 0?
# 3. Give TRL's `KTOTrainer` the unshuffled rows (`kto.pairs_to_unpaired(pairs)`), half of whose KL rows answer their own prompt (section 6). What happens to `kl` during training, and to the win-rate?
# 4. Set `beta=0.0` in both GRPO runs (TRL's default). How far do the KLs go, and does the win-rate gain justify it?
# 5. Train TRL's `DPOTrainer` with `loss_type="ipo"` and the course's $\beta$. Why does IPO need a different scale of $\beta$? (Hint: TRL's IPO averages log-probs per token.)

# %% [markdown]
# The headline numbers of this appendix (collected by `python -m alignlab course`): TRL's DPO run on the shared columns, and every comparison beside it.

# %%
shutil.rmtree(OUT, ignore_errors=True)
print(f"notebook ran in {time.time() - t_start:.0f} s")
extra = {f"course_{m.lower()}_win_rate": hs[0].last("win_rate") for m, hs in runs.items()}
extra["course_rm_accuracy"] = rm_results["course"]["eval_accuracy"]
if HAVE_TRL:
    extra.update({f"trl_{m.lower()}_win_rate": hs[1].last("win_rate") for m, hs in runs.items()},
                 trl_rm_accuracy=rm_results["TRL"]["eval_accuracy"], step0_loss=trl_step0["eval_loss"])
alignlab.report(trl_dpo if HAVE_TRL else course_dpo, notebook="10_trl_appendix", trl=trl.__version__ if HAVE_TRL else None, **extra)
