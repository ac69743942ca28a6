# %% [markdown]
# # Lecture 00: the alignment pipeline, the review world and its judge
#
# **Objectives.** By the end of this notebook you can
# 1. name the three stages of the LLM training pipeline (pretraining, supervised fine-tuning, preference tuning) and what each one changes;
# 2. describe the *review world* every lecture trains in: a small grammar, review prompts, and a **gold judge** that plays the human;
# 3. train a real (tiny) `transformers` GPT-2 through pretraining and SFT, and see what each stage does to its samples;
# 4. use the one evaluation every later lecture uses: gold reward, KL to the reference, win-rate.
#
# **Prerequisites.** Python, PyTorch basics (tensors, `backward`), what a language model's next-token distribution is.
#
# **Run time.** `quick` profile (2-core CPU): 54 s on a fresh machine (it trains and caches the base and SFT models), 19 s afterwards (measured under nbval, `pytest notebooks/00_pipeline.ipynb`, on an idle 2-core machine). `full` profile (one GPU): not measured yet (no GPU was available when this course was built).

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
# A chat model is made in three stages (the lecture notes' *training pipeline*):
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
# A **prompt** is a review opening: an opener and a subject. The policy writes the rest. A quarter of the openings are held out for evaluation, so scores are measured on prompts no model trained on.

# %%
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


def judge(review="i thought the plot was clever but the ending was weak ."):
    words = review.split()
    i = words.index("the") + 2 if "the" in words else 0
    prompt, completion = " ".join(words[:i]), " ".join(words[i:])
    print(f"valid={world.is_valid(review)}  gold={world.gold_reward(prompt, completion):+.3f}")

interact(judge, review=widgets.Text(value="i thought the plot was clever but the ending was weak .", layout={"width": "600px"}));

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
from alignlab import pipeline

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
# ## 8. Sampling: base vs SFT
#
# `alignlab.sampling.sample` draws one completion per prompt with pure sampling (temperature 1, no top-k), batched with left padding. The base model rambles on to the length limit; the SFT model writes one review and stops.

# %%
from alignlab.sampling import sample

base_model, _ = pipeline.load_base(profile)
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
from alignlab.sampling import encode, sequence_logprobs

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
# * **valid rate**: the share of finished, grammatical reviews.
#
# Sanity values: the reference against itself has KL exactly 0 and a win-rate near 1/2.

# %%
from alignlab.evaluation import Evaluator

evaluator = Evaluator(sft_model, tok, profile=profile)
for name, model in [("base", base_model), ("SFT", sft_model)]:
    print(f"{name:5s}", {k: round(v, 3) for k, v in evaluator(model).items()})

# %% [markdown]
# ## 10. SFT, live, on the shared dashboard
#
# Every lecture trains with `alignlab.training.train`, which evaluates the policy along the way, and plots the run with `alignlab.plots.dashboard`. Here we repeat the SFT run from the cached base model. With the same seed, training is deterministic, so it ends on exactly the cached reference: KL back to 0, win-rate back to about 1/2.

# %%
from alignlab.plots import dashboard

student, _ = pipeline.load_base(profile)
history = pipeline.finetune(student, tok, profile, seed=0, evaluator=evaluator, eval_every=max(1, profile.sft_steps // 6))
dashboard(history, title="SFT from the base model (reference = cached SFT)"); plt.show()
print(history.final())

# %% [markdown]
# The SFT model is a *reference*, not a tuned model: its gold reward sits near the corpus average, because it imitates reviews good and bad alike.

# %%
corpus = world.make_corpus(2000, seed=1)
corpus_gold = sum(world.gold_reward(*world.split_review(r)) for r in corpus) / len(corpus)
sft_row = evaluator(sft_model)
print(f"corpus average gold = {corpus_gold:.3f}   SFT gold = {sft_row['gold_reward']:.3f}   SFT valid = {sft_row['valid_rate']:.3f}")
_ = alignlab.report(sft_row, notebook="00_pipeline")

# %% [markdown]
# ## 11. Summary
#
# * Pretraining teaches the language, SFT the format (answer, then stop). Neither knows what people *prefer*.
# * The review world gives us what real RLHF lacks: a **known truth**. The gold judge (VADER + a fluency gate) plays the human; annotators sample noisy Bradley-Terry preferences from it.
# * Every lecture is scored the same way: gold reward, KL to $\pi_\text{ref}$, win-rate, valid rate.
#
# **Pitfalls to watch for, and how to see them**
# * *Right padding for generation*: rows finish at different columns; use left padding. A wrong `position_ids` shows up as log-probs that change with the batch (section 8's check fails).
# * *A judge you can fool*: a sentiment-only reward loves `great great great`. In the logs, gold reward falls while valid rate collapses.
# * *Negative KL*: the k1 estimate of a single sample can be negative; its mean over many samples cannot be, in expectation. A clearly negative mean KL means too few samples or mismatched sampling temperatures.
#
# ## 12. Exercises
#
# 1. Raise the annotator temperature to 1.0 and rebuild `pairs`: what fraction of labels now disagree with the gold ordering? Predict first with the BT formula.
# 2. Sample from the SFT model at temperature 0.5 and 1.5 (`sample(..., temperature=...)`). How do the valid rate and the gold reward change? Why must log-probs then be computed at the same temperature?
# 3. Write a review that is valid but scores above 0.9. Then one that VADER loves but the grammar rejects.
