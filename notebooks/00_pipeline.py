# %% [markdown]
# # Lecture 00: the alignment pipeline, the review world and its judge
#
# **Objectives.** By the end of this notebook you can
# 1. name the three stages of the LLM training pipeline (pretraining, supervised fine-tuning, preference tuning) and what each one changes;
# 2. describe the *review world* every lecture trains in: a small grammar, review prompts, and a **gold judge** that plays the human;
# 3. train a real (tiny) `transformers` GPT-2 through pretraining and SFT, and see what each stage does to its samples;
# 4. write the SFT training step (completion-only loss, backward, clip, step) and check it against the library's;
# 5. use the one evaluation every later lecture uses: gold reward, KL to the reference, win-rate, valid rate, and the perplexity of held-out reviews, each computed by hand once;
# 6. measure why this course's learning rates (1e-3) are a thousand times those quoted for large models (1e-6);
# 7. train a small **learned judge** (a stand-in for LLM-as-a-judge), measure it against the gold judge, and expose its position bias by swapping the answers.
#
# **Prerequisites.** Python, PyTorch basics (tensors, `backward`), what a language model's next-token distribution is.
#
# **Sources.** Stanford CME 295 (Transformers & Large Language Models, Autumn 2025), lecture 5, for the pipeline and the evaluation methods (syllabus: https://cme295.stanford.edu/syllabus/); Ouyang et al. 2022, *Training language models to follow instructions with human feedback* (InstructGPT, arXiv:2203.02155), for the three stages; Hutto & Gilbert 2014, *VADER* (ICWSM), for the sentiment analyser; Zheng et al. 2023, *Judging LLM-as-a-judge with MT-Bench and Chatbot Arena* (arXiv:2306.05685), for judges and position bias; Rafailov et al. 2023, *Direct Preference Optimization* (arXiv:2305.18290, appendix B: learning rate 1e-6); Brown et al. 2020, *Language models are few-shot learners* (arXiv:2005.14165, table 2.1: model widths); Yang et al. 2022, *Tensor Programs V* (arXiv:2203.03466), for learning rates that depend on width; Schulman 2020, *Approximating KL divergence* (http://joschu.net/blog/kl-approx.html), for the k1 estimator.
#
# **Run time.** `quick` profile (2-core CPU): 54 s on a fresh machine (it trains and caches the base and SFT models), 19 s afterwards (measured under nbval, `pytest notebooks/00_pipeline.ipynb`, on an idle 2-core machine, before sections 7.1, 7.2 and 11 and the perplexity were added; they add about 14 s of CPU time, measured with one thread on a busy machine: the learned judge about half of it). `full` profile (one GPU): not measured yet (no GPU was available when this course was built).

# %% [markdown]
# ## 1. Set-up
#
# `alignlab` picks the device (CUDA, then Apple MPS, then CPU) and a *profile* of sizes: `quick` for a laptop CPU, `full` for a GPU. Set `ALIGNLAB_PROFILE=quick` before starting Jupyter to force one.

# %%
import matplotlib.pyplot as plt
import torch

import alignlab
from alignlab import data, world
from alignlab.models import get_device, get_profile, seed_everything

profile, device = get_profile(), get_device()
seed_everything(0)
print(f"profile={profile.name}  device={device}  torch={torch.__version__}")

# %% [markdown]
# ## 2. The pipeline
#
# A chat model is made in three stages (InstructGPT's recipe, Ouyang et al. 2022; CME 295 lecture 5 opens with it):
#
# | stage | data | what it teaches | here |
# |---|---|---|---|
# | **pretraining** | lots of raw text | the language: which words follow which | a stream of reviews from the grammar |
# | **SFT** (supervised fine-tuning) | prompt -> good answer pairs | the *format*: answer the prompt, then stop | review openings -> one review + `<eos>` |
# | **preference tuning** (RLHF, DPO, KTO...) | which of two answers a human prefers | *what people like*, beyond imitation | lectures 01-05 |
#
# SFT can only imitate its demonstrations. Preference tuning uses a cheaper and richer signal, comparisons, and can push the model beyond the average demonstration. The SFT model becomes the **reference policy** $\pi_\text{ref}$: every later method is scored against it, and most are kept close to it with a KL penalty.

# %% [markdown]
# ## 3. The review world
#
# Real preference data is expensive and its truth unknown. We replace it with a small, fully synthetic world where **the truth is known**. Its language is a weighted context-free grammar, stored as plain data you can read:

# %%
for name in ["REVIEW", "FIRST", "SENT", "PRED", "ADJ"]:
    print(f"{name:7s} ->", " | ".join(" ".join(exp) or "(empty)" for _, exp in world.GRAMMAR[name]))
print("POS_ADJ ->", ", ".join(world.LEXICON["POS_ADJ"][:8]), "...")
print("vocabulary:", len(world.vocabulary()), "words")

# %% [markdown]
# Sampling from the grammar gives the corpus. Every model in the course learns from text like this:

# %%
import random

rng = random.Random(0)
for _ in range(5):
    print("*", world.sample_review(rng))

# %% [markdown]
# A **prompt** is a review opening: an opener and a subject. The policy writes the rest. About a quarter of the openings are held out for evaluation: no preference-tuning method ever trains on them. Pretraining and SFT do see them, since the grammar draws openings freely (the cell counts how often):

# %%
from alignlab import pipeline

eval_openings = set(world.make_prompts(4000, "eval"))     # every held-out opening, drawn many times over
sft_prompts_all, sft_completions_all = pipeline.sft_pairs(profile.sft_steps * profile.batch_size, seed=0)
print(f"{len(eval_openings)} of {len(world.all_prompts())} openings held out")
print(f"SFT pairs that open with a held-out opening: {sum(p in eval_openings for p in sft_prompts_all) / len(sft_prompts_all):.3f}")
print("train prompts:", world.make_prompts(4, "train"))
print("eval prompts: ", world.make_prompts(4, "eval"))

# %% [markdown]
# ## 4. The fluency rule and the gold judge
#
# Because the grammar is data, "is this a valid review?" has an exact answer (`world.is_valid`, a small recogniser). The **gold judge** is our simulated human:
#
# $$ r^*(x, y) = \begin{cases} \text{VADER}(x\,y) & \text{if } x\,y \text{ is a valid, finished review} \\ -1 & \text{otherwise} \end{cases} $$
#
# VADER is a real, third-party sentiment analyser (the `vaderSentiment` package) scoring in $[-1, 1]$. The fluency gate matters: a sentiment-only judge loves `great great great great`, our human does not. That string is a classic **reward hack**, and we will meet it again in lecture 03.

# %%
examples = [
    ("the acting", "was really wonderful ."),
    ("the acting", "was not good , but the music was great ."),
    ("i thought the plot", "was dull . i would not recommend it ."),
    ("the acting", "great great great great"),          # reward hack: loved by sentiment, not fluent
    ("the acting", "was wonderful wonderful ."),        # almost right is still wrong
]
for prompt, completion in examples:
    text = world.join(prompt, completion)
    print(f"valid={world.is_valid(text)!s:5}  sentiment={world.sentiment(text):+.3f}  "
          f"gold={world.gold_reward(prompt, completion):+.3f}  | {text}")

# %% [markdown]
# The hack must score below an honest positive review, and it does. Let us assert it, since every later lecture relies on it:

# %%
assert world.gold_reward("the acting", "great great great great") < world.gold_reward("the acting", "was really wonderful .")
assert world.sentiment("the acting great great great great") > world.sentiment("the acting was really wonderful .")

# %% [markdown]
# Try your own review. In JupyterLab the box is live; executed headless (`python -m alignlab course`, the tests) `alignlab.course.widgets.interact` shows the default once, so the page still reads well:

# %%
import ipywidgets as widgets

from alignlab.course.widgets import interact


def score_review(review="i thought the plot was clever but the ending was weak ."):
    words = review.split()
    i = words.index("the") + 2 if "the" in words else 0
    prompt, completion = " ".join(words[:i]), " ".join(words[i:])
    print(f"valid={world.is_valid(review)}  gold={world.gold_reward(prompt, completion):+.3f}")

interact(score_review, review=widgets.Text(value="i thought the plot was clever but the ending was weak .", layout={"width": "600px"}));

# %% [markdown]
# ## 5. Annotators: from a judge to preference data
#
# Humans are noisy. Our annotators pick completion $a$ over $b$ with the **Bradley-Terry** probability
#
# $$ P(a \succ b) = \sigma\!\left(\frac{r^*(x,a) - r^*(x,b)}{\tau}\right) $$
#
# where the temperature $\tau$ is the noise knob: $\tau \to 0$ is a perfect annotator, large $\tau$ a coin flip. Binary thumbs-up/down labels (for KTO, lecture 05) come from the same judge. Data comes out as a `datasets.Dataset` with TRL's column names.

# %%
corpus_pairs = [world.split_review(world.sample_review(rng)) for _ in range(400)]
prompts = [p for p, _ in corpus_pairs]
a = [c for _, c in corpus_pairs]
b = [world.split_review(world.sample_review(rng))[1] for _ in corpus_pairs]
pairs = data.annotate_pairs(prompts, a, b, temperature=0.1, seed=0)
print(pairs)
print(pairs[0])

# %% [markdown]
# Does the noise behave as the temperature says? The fraction of pairs where the annotator agrees with the gold ordering should fall from 1 towards 1/2 as $\tau$ grows:

# %%
temps = [0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0]
agree = []
for t in temps:
    ds = data.annotate_pairs(prompts, a, b, temperature=t, seed=1)
    decided = [(gc, gr) for gc, gr in zip(ds["gold_chosen"], ds["gold_rejected"]) if gc != gr]
    agree.append(sum(gc > gr for gc, gr in decided) / len(decided))
plt.figure(figsize=(4, 2.6)); plt.semilogx([max(t, 0.01) for t in temps], agree, "o-")
plt.axhline(0.5, ls="--", c="grey"); plt.xlabel("annotator temperature τ (0 drawn at 0.01)")
plt.ylabel("agreement with gold"); plt.tight_layout(); plt.show()
print(dict(zip(temps, [round(x, 3) for x in agree])))

# %% [markdown]
# Unpaired binary feedback (thumbs up/down), in TRL's `prompt/completion/label` format:

# %%
feedback = data.annotate_binary(prompts[:200], a[:200], temperature=0.1, seed=0)
print(feedback, "\ndesirable fraction:", sum(feedback["label"]) / len(feedback))

# %% [markdown]
# ## 6. A tokenizer for the world
#
# The world's text is words separated by spaces, so a **word-level** tokenizer trained with the `tokenizers` library is exact. It is wrapped as a `transformers` `PreTrainedTokenizerFast` with distinct `<pad>`, `<bos>` and `<eos>` tokens, and it pads on the **left**, the side a decoder-only model needs for batched generation.

# %%
sft_model, tok = pipeline.load_sft(profile)   # trains base + SFT on first use, then loads from the cache
text = "honestly , the plot was dull , but the music was great ."
ids = tok(text, add_special_tokens=False)["input_ids"]
print(len(tok), "tokens;", "pad/bos/eos =", tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
print(ids, "\nround trip ok:", tok.decode(ids) == text)

# %% [markdown]
# ## 7. Pretraining and SFT
#
# `load_sft` above trained (or loaded) two models, both real `transformers.GPT2LMHeadModel`s:
#
# * **base**: next-word prediction on a raw stream of reviews. The stream has no end-of-review token, so the base model never learns to stop.
# * **SFT**: the base model fine-tuned on `<bos> prompt completion <eos>` pairs, with the loss on the completion only.
#
# Their loss curves were stored beside the cached weights:

# %%
import json

sizes = sum(p.numel() for p in sft_model.parameters())
print(f"GPT-2 with {profile.n_layer} layers, width {profile.n_embd}: {sizes / 1e3:.0f}k parameters")
meta = {k: json.loads((pipeline.__dict__[f"{k}_folder"](profile) / "alignlab.json").read_text()) for k in ("base", "sft")}
fig, axes = plt.subplots(1, 2, figsize=(8, 2.6))
for ax, k in zip(axes, meta):
    ax.plot(meta[k]["losses"]); ax.set_title(f"{k}: loss per token"); ax.set_xlabel("step"); ax.set_yscale("log")
plt.tight_layout(); plt.show()

# %% [markdown]
# ### 7.1 The SFT step, in the open
#
# `pipeline.finetune` repeats one step 400 times. Here it is whole: encode a batch as `<bos> prompt completion <eos>`, take the log-probability of every token given the ones before it, average the negative log-likelihood over the **completion tokens only** (`completion_mask` is 1 on the completion and its `<eos>`, 0 on the prompt and the padding), then zero the gradients, backpropagate, clip the gradient norm to 1 and step AdamW.

# %%
from alignlab.sampling import encode, token_logprobs
from alignlab.training import make_optimizer


def my_sft_step(model, opt, prompts, completions, max_norm=1.0):
    batch = encode(tok, prompts, completions, device=device)          # left-padded, <eos> appended
    lp = token_logprobs(model, batch.input_ids, batch.attention_mask)   # (B, T) log p(token | before)
    mask = batch.completion_mask                                        # 1 on completion + <eos>
    loss = -(lp * mask).sum() / mask.sum()                              # mean NLL per completion token
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    opt.step()
    return {"loss": loss.item(), "grad_norm": float(grad_norm)}

# %% [markdown]
# `pipeline.sft_step` is the step `finetune` takes (there, the optimiser's learning rate also follows a warm-up and cosine schedule). One step of each, on two copies of the base model, from the same batch and with the same optimiser settings (AdamW, weight decay 0.01, betas 0.9 and 0.95, the profile's peak learning rate): every parameter must land in the same place.

# %%
import copy


def new_opt(model, lr=profile.lr):   # the optimiser settings of pipeline.finetune
    return make_optimizer(model, lr, weight_decay=0.01, betas=(0.9, 0.95))


base_model, _ = pipeline.load_base(profile)
sft_prompts, sft_completions = pipeline.sft_pairs(10 * profile.batch_size, seed=0)
P, C = sft_prompts[:profile.batch_size], sft_completions[:profile.batch_size]
mine, lib = copy.deepcopy(base_model).train(), copy.deepcopy(base_model).train()
ours = my_sft_step(mine, new_opt(mine), P, C)
theirs = pipeline.sft_step(lib, encode(tok, P, C, device=device), new_opt(lib))
moved = max((p - q).abs().max().item() for p, q in zip(lib.parameters(), base_model.parameters()))
gap = max((p - q).abs().max().item() for p, q in zip(mine.parameters(), lib.parameters()))
print(f"loss {ours['loss']:.6f} vs {theirs['loss']:.6f}; largest weight change {moved:.2e}, largest difference between the two {gap:.1e}")
assert moved > 1e-4 and all(torch.allclose(p, q, rtol=0, atol=1e-7) for p, q in zip(mine.parameters(), lib.parameters()))

# %% [markdown]
# ### 7.2 Why 1e-3 here, and 1e-6 for large models
#
# Large models are preference-tuned at learning rates near 1e-6 (the DPO paper's default, Rafailov et al. 2023, appendix B; CME 295's lecture 5 quotes the same starting point); this course's are printed below. Both are right for their models. Ten steps of the SFT step above from the base model, at four learning rates, measured on a fixed batch of 256 other SFT pairs, and by how far the weights move ($\lVert \Delta W\rVert / \lVert W\rVert$ over all parameters):

# %%
import math

held_out = encode(tok, *pipeline.sft_pairs(256, seed=99), device=device)


def weight_norm(tensors):
    return math.sqrt(sum(t.pow(2).sum().item() for t in tensors))


def ten_steps(lr, B=profile.batch_size):
    model = copy.deepcopy(base_model).train()
    opt, w0 = new_opt(model, lr), [p.detach().clone() for p in model.parameters()]
    for i in range(10):
        my_sft_step(model, opt, sft_prompts[i * B:(i + 1) * B], sft_completions[i * B:(i + 1) * B])
        if i == 0:   # after one step: the median |Δw| of a single weight, in units of lr
            first = torch.cat([(p - q).flatten() for p, q in zip(model.parameters(), w0)]).abs().median().item() / lr
    with torch.no_grad():
        loss = pipeline.sft_loss(model, held_out).item()
    return loss, weight_norm([p - q for p, q in zip(model.parameters(), w0)]) / weight_norm(w0), first

# %%
from alignlab.methods import dpo, kto, ppo

course_lrs = {"sft": profile.lr, "dpo": dpo.DPOConfig.for_profile(profile).lr,
              "kto": kto.KTOConfig.for_profile(profile).lr, "ppo": ppo.PPOConfig.for_profile(profile).lr}
print("this course's learning rates:", course_lrs)
with torch.no_grad():
    loss0, loss_sft = (pipeline.sft_loss(m, held_out).item() for m in (base_model, sft_model))
lr_rows = {lr: ten_steps(lr) for lr in (1e-6, 1e-5, 1e-4, 1e-3)}
print(f"held-out SFT loss: base model {loss0:.4f}, SFT model {loss_sft:.4f} nats per completion token")
for lr, (loss, rel, first) in lr_rows.items():
    print(f"lr {lr:.0e}: loss after 10 steps {loss:.4f} (change {loss - loss0:+.4f})   ||ΔW||/||W|| {rel:.1e}   "
          f"first step: median |Δw| = {first:.3f} x lr")
assert lr_rows[1e-3][0] < loss0 - 0.5 * (loss0 - loss_sft) and abs(lr_rows[1e-6][0] - loss0) < 0.01
assert all(0.95 < first < 1.05 for _, _, first in lr_rows.values())

# %% [markdown]
# At 1e-6 ten steps leave the loss where it was; at 1e-3 they take it most of the way to the SFT model's. The last column is why: **Adam moves every weight by about `lr` per step**, whatever the size of its gradient (its update is $m/\sqrt v$, which is $\pm 1$ at the first step). So the step size per weight is set by the learning rate alone, and what a step does to the *function* depends on how many weights move together. A wider layer sums more moved weights into each output. One step at a fixed learning rate (1e-4), from a fresh initialisation, for GPT-2s of our depth and growing width, measured as the mean change of the log-probability of the batch's completion tokens:

# %%
import dataclasses

import numpy as np

from alignlab.models import new_lm

probe = encode(tok, P[:16], C[:16], device=device)
widths, shifts = [32, 64, 128, 256, 512], []
for width in widths:
    torch.manual_seed(0)
    model = new_lm(dataclasses.replace(profile, n_embd=width), tok).to(device).train()
    with torch.no_grad():
        before = token_logprobs(model, probe.input_ids, probe.attention_mask)
    my_sft_step(model, new_opt(model, 1e-4), P[:16], C[:16])
    with torch.no_grad():
        after = token_logprobs(model, probe.input_ids, probe.attention_mask)
    shifts.append(((after - before).abs() * probe.completion_mask).sum().item() / probe.completion_mask.sum().item())
    print(f"width {width:4d}: {sum(p.numel() for p in model.parameters()):>9,} parameters, mean |Δ log p| per step {shifts[-1]:.4f}")

# %% [markdown]
# The change grows faster than the width. A straight line through the log-log points gives the exponent; *if* the trend held all the way (a strong assumption: depth, data and the starting point differ too), a model 4096 wide (Llama 2 7B, Touvron et al. 2023, arXiv:2307.09288) and one 12288 wide (GPT-3 175B, Brown et al. 2020) would take the same size of step as ours at 1e-3 with a learning rate this much smaller:

# %%
slope = np.polyfit(np.log(widths), np.log(shifts), 1)[0]
print(f"mean |Δ log p| grows as width^{slope:.2f} (x{2 ** slope:.1f} per doubling)")
for big in (4096, 12288):
    print(f"width {big}: same step as ours at lr 1e-3 with lr ≈ {1e-3 * (profile.n_embd / big) ** slope:.0e}")
assert all(a < b for a, b in zip(shifts, shifts[1:])) and slope > 1

# %% [markdown]
# ## 8. Sampling: base vs SFT
#
# `alignlab.sampling.sample` draws one completion per prompt with pure sampling (temperature 1, no top-k), batched with left padding. The base model rambles on to the length limit; the SFT model writes one review and stops.

# %%
from alignlab.sampling import sample

eval_prompts = world.make_prompts(6, "eval", seed=3)
for name, model in [("base", base_model), ("SFT", sft_model)]:
    batch = sample(model, tok, eval_prompts, profile.max_new_tokens, seed=0)
    print(f"--- {name}")
    for p, c, f in zip(batch.prompts[:3], batch.completions[:3], batch.finished[:3]):
        print(f"[{'stopped' if f else 'cut off'}] {p} | {c}")

# %% [markdown]
# ### Left padding, done right
#
# With left padding, a token's *position* is not its column. `sampling.token_logprobs` passes `position_ids = cumsum(attention_mask) - 1`; without them, the same review would get different log-probabilities alone and in a padded batch. Check it:

# %%
from alignlab.sampling import sequence_logprobs

ps, cs = ["the acting", "i thought the plot"], ["was great .", "was dull , but the music was lovely ."]
with torch.no_grad():
    together = sequence_logprobs(sft_model, encode(tok, ps, cs, device=device))
    alone = torch.cat([sequence_logprobs(sft_model, encode(tok, [p], [c], device=device)) for p, c in zip(ps, cs)])
print("padded batch:", together.tolist(), "\none by one:  ", alone.tolist())
assert torch.allclose(together, alone, atol=1e-4)

# %% [markdown]
# ## 9. One evaluation for every method
#
# Every lecture reports the same numbers on held-out prompts, against the SFT reference:
#
# * **gold reward**: mean $r^*$ of the policy's samples;
# * **KL**: $\mathrm{KL}(\pi\,\|\,\pi_\text{ref}) \approx \frac1N\sum_i \sum_t \log\frac{\pi(y_{i,t}\mid\cdot)}{\pi_\text{ref}(y_{i,t}\mid\cdot)}$ over samples $y_i \sim \pi$ (the "k1" estimator);
# * **win-rate**: how often the judge prefers the policy's sample to the reference's for the same prompt (ties count 1/2);
# * **valid rate**: the share of finished, grammatical reviews;
# * **length**: mean completion length in words;
# * **perplexity**: $\exp\big(-\frac1N \sum \log \pi(y_t \mid \cdot)\big)$ over the $N$ completion tokens of a fixed set of held-out reference reviews (one fresh grammar review per held-out prompt): how well the policy still models the language, judged on text it did not write. CME 295's lecture 5 lists it with win-rate, reward and KL.
#
# Each is defined once, with what healthy looks like, in `alignlab.metrics` (generated into `docs/metrics.md`). Sanity values: the reference against itself has KL exactly 0 and a win-rate near 1/2.

# %%
from IPython.display import Markdown

from alignlab import metrics
from alignlab.evaluation import Evaluator

evaluator = Evaluator(sft_model, tok, profile=profile)
rows = {name: evaluator(model) for name, model in [("base", base_model), ("SFT", sft_model)]}
for name, row in rows.items():
    print(f"{name:5s}", {k: round(v, 3) for k, v in row.items()})
Markdown(metrics.table(["kl", "perplexity"]))

# %% [markdown]
# ### 9.1 The KL estimate, by hand
#
# The evaluator samples $y \sim \pi$ and averages the summed log-ratio of the completion tokens, both models at the sampling temperature. Three lines reproduce it for the base model:

# %%
batch = evaluator.sample(base_model)                      # the evaluator's draw: fixed seed
with torch.no_grad():
    log_ratio = sequence_logprobs(base_model, batch) - sequence_logprobs(sft_model, batch)   # (N,)
print(f"k1 by hand {log_ratio.mean().item():.4f}   evaluator {evaluator.kl(base_model, batch):.4f}")
assert abs(log_ratio.mean().item() - evaluator.kl(base_model, batch)) < 1e-4

# %% [markdown]
# ### 9.2 Perplexity, by hand
#
# The reference reviews are encoded once (`evaluator.references`); one forward pass scores them. The base model pays for the `<eos>` it never learned to write: without that token the two models' perplexities are within a few per cent of each other (the cell asserts within 10 %).

# %%
refs = evaluator.references
no_eos = refs.completion_mask * (refs.input_ids != tok.eos_token_id)
ppls = {}
for name, model in [("base", base_model), ("SFT", sft_model)]:
    with torch.no_grad():
        lp = token_logprobs(model, refs.input_ids, refs.attention_mask)
    ppls[name] = [math.exp(-(lp * m).sum().item() / m.sum().item()) for m in (refs.completion_mask, no_eos)]
    print(f"{name:5s} perplexity {ppls[name][0]:.3f} (evaluator {evaluator.perplexity(model):.3f}), without <eos> {ppls[name][1]:.3f}")
    assert math.isclose(ppls[name][0], evaluator.perplexity(model), rel_tol=1e-5)
seen = set(zip(sft_prompts_all, sft_completions_all))
print(f"reference reviews also among the SFT pairs, word for word: "
      f"{sum((p, c) in seen for p, c in zip(evaluator.prompts, evaluator.reference_completions)) / len(refs):.3f}")
assert ppls["SFT"][0] < ppls["base"][0] and abs(ppls["base"][1] / ppls["SFT"][1] - 1) < 0.1

# %% [markdown]
# Perplexity measures fit to average reviews, not quality (the gold judge decides that). Lectures 02-05 log it beside the gold reward in every history; `docs/metrics.md` says what healthy looks like.

# %% [markdown]
# ## 10. SFT, live, on the shared dashboard
#
# Every lecture trains with `alignlab.training.train`, which evaluates the policy along the way, and plots the run with `alignlab.plots.dashboard`. Here we repeat the SFT run from the cached base model, with the same seed. On the same hardware with the same number of CPU threads as the cached model was trained with, the run repeats bit for bit and ends on the cached reference: KL exactly 0. With another thread count (or on a GPU, whose kernels need not be deterministic), floating-point sums are taken in another order, so the weights end slightly apart and the KL is small but not 0. The cell after the dashboard measures which case you are in.

# %%
from alignlab.plots import dashboard

student, _ = pipeline.load_base(profile)
history = pipeline.finetune(student, tok, profile, seed=0, evaluator=evaluator, eval_every=max(1, profile.sft_steps // 6))
dashboard(history, title="SFT from the base model (reference = cached SFT)"); plt.show()
print(history.final())

# %%
apart = max((p - q).abs().max().item() for p, q in zip(student.parameters(), sft_model.parameters()))
replay_kl = history.last("kl")
print(f"largest weight difference to the cached SFT model {apart:.2e}; KL {replay_kl:+.4f}; win-rate {history.last('win_rate'):.3f}")
assert replay_kl == 0.0 if apart == 0.0 else abs(replay_kl) < 0.05

# %% [markdown]
# The SFT model is a *reference*, not a tuned model: its gold reward sits near the corpus average, because it imitates reviews good and bad alike.

# %%
corpus = world.make_corpus(2000, seed=1)
corpus_gold = sum(world.gold_reward(*world.split_review(r)) for r in corpus) / len(corpus)
sft_row = evaluator(sft_model)
print(f"corpus average gold = {corpus_gold:.3f}   SFT gold = {sft_row['gold_reward']:.3f}   SFT valid = {sft_row['valid_rate']:.3f}")

# %% [markdown]
# ## 11. A learned judge: LLM-as-a-judge in miniature
#
# CME 295's lecture 5 lists four ways to evaluate answers: **human ratings** (our annotators of section 5), **LLM-as-a-judge** (a strong model is shown the prompt and two answers and asked which is better: fast, cheap, scalable, and biased), **rule-based metrics** (our gold judge is one, a lexicon plus a grammar) and a **nuanced scale** (lecture 01, section 9.1). Here is the second, in miniature: a small model trained to read a prompt and two reviews and say which one the gold judge prefers. It is the SFT transformer (its first block only, to keep it fast) with a linear head on the hidden states at the two `<eos>` tokens:
#
# `<bos> prompt review_A <eos> prompt review_B <eos>`  →  logit of P(A preferred to B)
#
# It trains on 2048 pairs of grammar reviews for training prompts, each shown in a random order, with the binary cross-entropy of the gold verdict (`alignlab.judge`).

# %%
from alignlab import judge

judge_train, judge_test = judge.judge_pairs(2048, "train"), judge.judge_pairs(512, "eval", seed=1)
referee = judge.new_judge(sft_model, tok, n_layer=1)
judge_history = judge.train_judge(referee, tok, judge_train, judge.JudgeConfig())
acc = judge_history.series("accuracy")[1]
print(f"{sum(p.numel() for p in referee.parameters()):,} parameters; training accuracy, "
      f"first 20 steps {np.mean(acc[:20]):.3f}, last 20 {np.mean(acc[-20:]):.3f}")

# %% [markdown]
# **Against the gold judge, and the swap test.** Zheng et al. (2023) found that LLM judges change their verdict when the two answers swap places (*position bias*). Nothing in our judge forces $J(A, B) = 1 - J(B, A)$ either: it reads the answers in order, and B's hidden state has seen A. So ask about every held-out pair twice, once in each order:

# %%
p_ab = judge.p_first(referee, tok, judge_test["prompt"], judge_test["a"], judge_test["b"])   # J(A, B): A first
p_ba = judge.p_first(referee, tok, judge_test["prompt"], judge_test["b"], judge_test["a"])   # J(B, A): B first
swap = judge.swap_stats(p_ab, p_ba, judge_test)
print(f"held-out pairs {swap['pairs']} ({swap['clear_pairs']} with a gold gap above 0.2)")
print(f"agreement with the gold judge: {swap['agreement']:.3f} (asked A-B), {swap['agreement_swapped']:.3f} (asked B-A), "
      f"{swap['agreement_symmetric']:.3f} (both orders averaged); clear pairs {swap['agreement_clear']:.3f}, close pairs {swap['agreement_close']:.3f}")
print(f"P(first answer wins), averaged over both orders: {swap['p_first']:.3f}")
print(f"same winner in both orders: {swap['consistent']:.3f} (clear pairs {swap['consistent_clear']:.3f}, close {swap['consistent_close']:.3f}); "
      f"first position wins both times {swap['first_both']:.3f}, second {swap['second_both']:.3f}")

# %% [markdown]
# A consistent judge would put every point of the plot below on the diagonal $J(A,B) = 1 - J(B,A)$; the distance from it is the position effect, pair by pair. The usual fix (`judge.symmetric`) asks in both orders and averages, $\bar J(A, B) = \frac12\big(J(A, B) + 1 - J(B, A)\big)$, which satisfies $\bar J(A, B) + \bar J(B, A) = 1$ by construction.

# %%
plt.figure(figsize=(3.4, 3.2)); plt.scatter(p_ab, 1 - p_ba, s=5, alpha=0.5); plt.plot([0, 1], [0, 1], "k--", lw=1)
plt.xlabel("J(A, B): A asked first"); plt.ylabel("1 - J(B, A): A asked second"); plt.title("the same question, two orders")
plt.tight_layout(); plt.show()
assert 0.65 < swap["agreement_clear"] < 0.95 and swap["consistent"] < 0.95
assert swap["consistent_close"] < swap["consistent_clear"]
assert swap["agreement_symmetric"] >= min(swap["agreement"], swap["agreement_swapped"])

# %% [markdown]
# What the numbers say. The learned judge agrees with the gold judge far more often than a coin, and far less often than the gold judge agrees with itself: it is a cheap, imperfect instrument, as LLM judges are (Zheng et al. measure theirs against human votes). Its verdict depends on the order for a share of the pairs (printed above), more often for close pairs than for clear ones. Which position it leans to when it does is printed, not assumed: it is a property of the judge (Zheng et al. report it judge by judge). Averaging the two orders removes the position effect by construction, and the averaged verdict agrees with the gold judge at least as often as the worse of the two orders (the last assert). Before a learned judge scores a policy, measure its agreement with whatever plays the human, on the kind of answers it will judge: this one saw only grammatical reviews, and has never met a reward hack.

# %% [markdown]
# The reference's row of the course's results table (`python -m alignlab course` collects it), with the learned judge's agreement on clear pairs beside it:

# %%
_ = alignlab.report(sft_row, notebook="00_pipeline", judge_agreement=swap["agreement_clear"])

# %% [markdown]
# ## 12. Summary
#
# * Pretraining teaches the language, SFT the format (answer, then stop). Neither knows what people *prefer*.
# * The review world gives us what real RLHF lacks: a **known truth**. The gold judge (VADER + a fluency gate) plays the human; annotators sample noisy Bradley-Terry preferences from it.
# * Every lecture is scored the same way: gold reward, KL to $\pi_\text{ref}$, win-rate, valid rate, and the perplexity of held-out reviews.
# * The SFT step is five lines around one loss: the mean NLL of the completion tokens; the library's step moves the weights exactly as the written one (section 7.1).
# * Adam moves each weight by about the learning rate per step, so a wider model changes more per step at the same rate: 1e-3 suits a 64-wide, 0.1M-parameter model; models thousands wide need rates near 1e-6 or below (section 7.2, measured here on widths 32-512, then extrapolated).
# * A learned judge is a cheap evaluator with its own errors: measure its agreement with the gold judge, and swap the answers to see its position bias (section 11).
#
# **Pitfalls to watch for, and how to see them**
# * *Right padding for generation*: rows finish at different columns; use left padding. A wrong `position_ids` shows up as log-probs that change with the batch (section 8's check fails).
# * *A judge you can fool*: a sentiment-only reward loves `great great great`. In the logs, gold reward falls while valid rate collapses.
# * *Negative KL*: the k1 estimate of a single sample can be negative; its mean over many samples cannot be, in expectation. A clearly negative mean KL means too few samples or mismatched sampling temperatures.
# * *A large-model learning rate on a small model* (or the reverse): at 1e-6 nothing moves here; check `||ΔW||/||W||` and the loss after a few steps before blaming the method.
# * *Trusting a judge in one order*: a verdict that changes when the answers swap is noise; average both orders, and report the judge's agreement with humans (here: the gold judge).
#
# ## 13. Exercises
#
# 1. Raise the annotator temperature to 1.0 and rebuild `pairs`: what fraction of labels now disagree with the gold ordering? Predict first with the BT formula.
# 2. Sample from the SFT model at temperature 0.5 and 1.5 (`sample(..., temperature=...)`). How do the valid rate and the gold reward change? Why must log-probs then be computed at the same temperature?
# 3. Write a review that is valid but scores above 0.9. Then one that VADER loves but the grammar rejects.
# 4. Train the learned judge on pairs listed preferred-first 80 % of the time (`judge.JudgeConfig(winner_first=0.8)`; at 1.0 it is the way TRL's `chosen`/`rejected` columns come, if you forget to shuffle). What do `p_first`, the agreement and the swap test show now? Which of them would you notice without the swap test?
# 5. Run `ten_steps` at 1e-2 and 3e-2. Where does the loss stop improving, and what does `grad_norm` do? Repeat the width sweep at 1e-3: which width is the first whose step is too large?
