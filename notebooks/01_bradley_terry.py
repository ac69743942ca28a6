# %% [markdown]
# # Lecture 01: preference data, the Bradley-Terry model and a reward model
#
# **Objectives.** By the end of this notebook you can
# 1. say why preference tuning collects **pairwise** labels rather than scores or rankings, and show it on simulated annotators;
# 2. state the **Bradley-Terry** model $P(y_1 \succ y_2 \mid x) = \sigma(r(x,y_1) - r(x,y_2))$ and derive its loss by maximum likelihood, in the form that never overflows: $\mathrm{softplus}(r_\text{rejected} - r_\text{chosen})$;
# 3. train a real GPT-2 **reward model** (`GPT2ForSequenceClassification` with one label, as TRL does) on preference pairs of the SFT model's own samples, read at the last real token;
# 4. judge it: held-out accuracy against the gold ordering, calibration, and what annotator noise and data size cost; and train on **graded** labels ("much better", "slightly better") with Llama 2's margin loss;
# 5. write its whole training step yourself (one batch, the loss, backward, clip, AdamW) and check it against the library's;
# 6. centre its rewards (the mean-zero trick), and use it in the simplest policy there is: **best-of-N**, with its exact KL.
#
# **Sources.** Stanford CME 295 (Transformers & Large Language Models, Autumn 2025), lecture 5, on preference tuning (syllabus: https://cme295.stanford.edu/syllabus/); Bradley & Terry 1952 (Biometrika 39); Christiano et al. 2017, *Deep RL from human preferences* (arXiv:1706.03741); Stiennon et al. 2020, *Learning to summarize from human feedback* (arXiv:2009.01325); Ouyang et al. 2022, *InstructGPT* (arXiv:2203.02155); Touvron et al. 2023, *Llama 2* (arXiv:2307.09288).
#
# **Prerequisites.** Lecture 00 (the review world, the gold judge, the SFT model $\pi_\text{ref}$, the shared evaluation). Logistic regression, log-likelihood, PyTorch autograd.
#
# **Run time.** `quick` profile (2-core CPU): about 61 s once the SFT model is cached (the first notebook you run trains it, about 35 s more); this includes training the course's reward model in the open, which is then cached for lecture 03. 57 s measured under nbval on an idle 2-core machine, plus about 4 s for sections 7.1 and 9.1 (estimated on a loaded machine). `full` profile (one GPU): not measured yet (no GPU was available when this course was built).

# %% [markdown]
# ## 1. Set-up

# %%
import copy

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

import alignlab
from alignlab import data, losses, pipeline, world
from alignlab.evaluation import Evaluator
from alignlab.methods import bon
from alignlab.methods import rm as R
from alignlab.models import get_device, get_profile, seed_everything
from alignlab.plots import dashboard

profile, device = get_profile(), get_device()
seed_everything(0)
sft, tok = pipeline.load_sft(profile, device=device)   # pi_ref, cached by lecture 00
config = R.RMConfig.for_profile(profile)
print(f"profile={profile.name}  device={device}\n{config}")

# %% [markdown]
# ## 2. Why preference data
#
# There are three ways to ask people about model outputs (the split CME 295's lecture 5 makes; InstructGPT's labellers ranked 4 to 9 outputs per prompt for the reward model and scored outputs from 1 to 7 for evaluation, Ouyang et al. 2022):
#
# * **pointwise**: "score this answer from 1 to 10". The scale is ambiguous: what is a 7? Each rater has their own offset and spread.
# * **pairwise**: "which of these two is better?" Fast, intuitive, no scale at all. Most RLHF data is collected this way.
# * **listwise**: "rank these K answers". Several comparisons at once, but harder work per task.
#
# Our world lets us *measure* the difference. Each simulated rater perceives a completion's quality as its gold score plus noise, $u = r^*(x, y) + \tau\,G$ with $G$ a standard Gumbel variable. Picking the larger of two perceptions is then **exactly** a Bradley-Terry choice with temperature $\tau$ (the Gumbel-max trick), and sorting $K$ perceptions is a Plackett-Luce ranking. A pointwise rater reports the same perception on their own 1-10 scale: $\mathrm{round}(5.5 + o_k + 3 s_k u)$, clipped to 1-10, with a personal offset $o_k$ and spread $s_k$.

# %%
rng = np.random.default_rng(0)
reviews = [world.split_review(r) for r in world.make_corpus(3000, seed=0)]
gold = np.array([world.gold_reward(p, c) for p, c in reviews])
tau, n_raters = 0.1, 50
offset, spread = rng.normal(0, 1.5, n_raters), rng.uniform(0.5, 1.5, n_raters)

def perceive(g):
    return g + tau * rng.gumbel(size=np.shape(g))

def pointwise(g, rater):
    return np.clip(np.round(5.5 + offset[rater] + 3 * spread[rater] * perceive(g)), 1, 10)

# %% [markdown]
# First, the Gumbel-max claim: on many pairs, how often the rater picks the first completion should match $\sigma((g_1 - g_2)/\tau)$, the annotator of `alignlab.data`.

# %%
a, b = rng.integers(0, len(gold), 200_000), rng.integers(0, len(gold), 200_000)
picks_a = perceive(gold[a]) > perceive(gold[b])
p_bt = data.bt_probability(gold[a], gold[b], tau)
bins = np.digitize(p_bt, np.linspace(0, 1, 11)[1:-1])
freq = [picks_a[bins == k].mean() for k in range(10)]
pred = [p_bt[bins == k].mean() for k in range(10)]
print("predicted:", np.round(pred, 2), "\nobserved: ", np.round(freq, 2))
assert np.max(np.abs(np.array(freq) - np.array(pred))) < 0.03

# %% [markdown]
# Now the label types, from the same raters, on the same pairs with a clear gold difference (gap > 0.2). Pointwise labels order a pair by comparing two scores. How the scores were collected matters, so we measure both designs: each item scored by a **different** crowd worker (the usual case when items are rated one at a time), or both items of a pair scored by the **same** rater. A listwise rater ranks four completions, which yields six pairs per task.

# %%
clear = np.abs(gold[a] - gold[b]) > 0.2
a, b = a[clear][:4000], b[clear][:4000]
truth = gold[a] > gold[b]
s_a = pointwise(gold[a], rng.integers(0, n_raters, len(a)))      # each item scored by a random rater
s_b = pointwise(gold[b], rng.integers(0, n_raters, len(b)))
same = rng.integers(0, n_raters, len(a))                          # or one rater scores both items
t_a, t_b = pointwise(gold[a], same), pointwise(gold[b], same)
acc = {"pointwise\n(different raters)": np.mean(np.where(s_a == s_b, 0.5, (s_a > s_b) == truth)),
       "pointwise\n(same rater)": np.mean(np.where(t_a == t_b, 0.5, (t_a > t_b) == truth)),
       "pairwise\n(one choice)": np.mean((perceive(gold[a]) > perceive(gold[b])) == truth)}
ties = {"different raters": np.mean(s_a == s_b), "same rater": np.mean(t_a == t_b)}

# %% [markdown]
# Equal pointwise scores count as a coin flip. For listwise labels, a rater sorts four completions by perception; every one of the six pairs in the ranking is a label:

# %%
quad = rng.integers(0, len(gold), (20_000, 4))
ranks = np.argsort(np.argsort(-perceive(gold[quad]), axis=1), axis=1)   # 0 = ranked first
i, j = np.triu_indices(4, 1)
gi, gj = gold[quad][:, i], gold[quad][:, j]
ok = np.abs(gi - gj) > 0.2
wrong = (ranks[:, i] < ranks[:, j]) != (gi > gj)                       # (tasks, 6 pairs)
acc["listwise\n(6 pairs per task)"] = 1 - np.mean(wrong[ok])
print({k.replace("\n", " "): round(float(v), 3) for k, v in acc.items()})
print("ties (equal scores, counted as a coin flip):", {k: round(float(v), 3) for k, v in ties.items()})

# %% [markdown]
# The picture: accuracy of each label type against the gold ordering, and the spread of the pointwise scores that 50 raters give **one and the same** review.

# %%
one = int(np.argmin(np.abs(gold - 0.6)))
fig, axes = plt.subplots(1, 2, figsize=(10, 2.8))
axes[0].bar(list(acc), list(acc.values()), color=["C3", "C1", "C0", "C2"]); axes[0].set_ylim(0.5, 1)
axes[0].tick_params(axis="x", labelsize=7)
axes[0].set_title("agreement with the gold ordering (gap > 0.2)", fontsize=9)
axes[1].hist([pointwise(gold[one], k) for k in range(n_raters)], bins=np.arange(0.5, 11), rwidth=0.8)
axes[1].set_title(f"50 raters score one review (gold {gold[one]:+.2f})\n'{world.join(*reviews[one])}'", fontsize=8)
axes[1].set_xlabel("pointwise score (1-10)")
plt.tight_layout(); plt.show()
assert acc["pairwise\n(one choice)"] > acc["pointwise\n(different raters)"] + 0.05
assert acc["pointwise\n(different raters)"] + 0.05 < acc["pointwise\n(same rater)"] < acc["pairwise\n(one choice)"]

# %% [markdown]
# What the numbers say:
#
# * With **different raters**, the personal scales make pointwise labels much noisier than the choices the same raters make between two completions: in a comparison, the offset $o_k$ and the spread $s_k$ cancel.
# * With the **same rater** for both items, the offset cancels too, and what is left is the coarse scale: a score is the rater's perception rounded to one of 10 levels, so close pairs tie (the printed tie rate). An untied pair is ordered exactly as the rater's perceptions are. A crowd rarely gives you that design; exercise 1 asks what is left when different raters share one scale.
# * **Listwise** pairs are as accurate per pair as pairwise choices: sorting Gumbel perceptions orders each pair just as a choice between the two would, so the two accuracies agree up to sampling noise (asserted below). But the six pairs of one ranking are **not six independent labels**: they come from four perceptions, so one misperceived completion can flip several pairs at once (measured below), and a ranking of four is one of $4! = 24$ orders, at most $\log_2 24 \approx 4.6$ bits against 6 bits for six independent choices. InstructGPT met this: its $\binom{K}{2}$ comparisons per ranking were so correlated that shuffling them into one data set made the reward model overfit, so each ranking became one batch element (Ouyang et al. 2022).

# %%
share = [(p, q) for p in range(6) for q in range(p + 1, 6) if len({i[p], j[p], i[q], j[q]}) == 3]   # pairs of pairs with one completion in common
both = np.mean([np.mean((wrong[:, p] & wrong[:, q])[ok[:, p] & ok[:, q]]) for p, q in share])
indep = np.mean([np.mean(wrong[:, p][ok[:, p] & ok[:, q]]) * np.mean(wrong[:, q][ok[:, p] & ok[:, q]]) for p, q in share])
acc_list, acc_pair = acc["listwise\n(6 pairs per task)"], acc["pairwise\n(one choice)"]
print(f"accuracy per pair: listwise {acc_list:.3f}, pairwise {acc_pair:.3f}")
print(f"two pairs of one ranking that share a completion: both wrong {both:.5f}, {both / indep:.1f}x the {indep:.5f} of independent errors")
assert abs(acc_list - acc_pair) < 0.01 and both > 1.5 * indep

# %% [markdown]
# Listwise labels give more pairs per task, but ranking many items is slow and tiring for real people, and the pairs must be weighted as the correlated labels they are. The rest of the course uses pairwise data, in TRL's format: `prompt`, `chosen`, `rejected`.

# %% [markdown]
# ## 3. The Bradley-Terry model
#
# A reward model gives every (prompt, completion) a scalar score $r(x, y)$. Bradley and Terry (1952) turn two scores into a preference probability:
#
# $$ P(y_1 \succ y_2 \mid x) = \frac{e^{r(x,y_1)}}{e^{r(x,y_1)} + e^{r(x,y_2)}} = \sigma\big(r(x,y_1) - r(x,y_2)\big). $$
#
# Only the **difference** of the two rewards matters. Turn the knobs (executed headless, it draws the default):

# %%
def plot_bt(r1=1.0, r2=-0.5):
    d = np.linspace(-6, 6, 200)
    plt.figure(figsize=(4.2, 2.6)); plt.plot(d, 1 / (1 + np.exp(-d)))
    p = 1 / (1 + np.exp(-(r1 - r2)))
    plt.scatter([r1 - r2], [p], c="C3", zorder=3); plt.axhline(0.5, c="grey", lw=0.8, ls="--")
    plt.title(f"r1={r1:+.1f}, r2={r2:+.1f}:  P(y1 ≻ y2) = σ({r1 - r2:+.1f}) = {p:.3f}", fontsize=9)
    plt.xlabel("r(x, y1) - r(x, y2)"); plt.ylabel("P(y1 ≻ y2)"); plt.tight_layout(); plt.show()

widgets.interact(plot_bt, r1=widgets.FloatSlider(value=1.0, min=-4, max=4, step=0.1),
                 r2=widgets.FloatSlider(value=-0.5, min=-4, max=4, step=0.1));

# %% [markdown]
# Two facts, checked: the softmax form equals the sigmoid form, and adding the same constant $c$ to both rewards (or any $c(x)$ that depends only on the prompt) changes nothing. The second fact is why a reward model's offset is arbitrary, and why we will **centre** it in section 10.

# %%
r1, r2, c = torch.randn(1000), torch.randn(1000), 3.7
softmax_form = torch.exp(r1) / (torch.exp(r1) + torch.exp(r2))
torch.testing.assert_close(softmax_form, torch.sigmoid(r1 - r2))
torch.testing.assert_close(torch.sigmoid((r1 + c) - (r2 + c)), torch.sigmoid(r1 - r2))
print("softmax form == sigmoid form; shift-invariant: OK")

# %% [markdown]
# ## 4. The loss, by maximum likelihood
#
# Given pairs $(x_i, y_{c,i}, y_{r,i})$ where the annotator chose $y_c$ over $y_r$, the likelihood of the labels is $\prod_i \sigma(r_\phi(x_i, y_{c,i}) - r_\phi(x_i, y_{r,i}))$. Maximising its log is minimising
#
# $$ \mathcal L(\phi) = -\frac1N \sum_i \log \sigma(r_{c,i} - r_{r,i}) = \frac1N \sum_i \mathrm{softplus}(r_{r,i} - r_{c,i}), $$
#
# because $-\log\sigma(z) = \log(1 + e^{-z}) = \mathrm{softplus}(-z)$. This is logistic regression on reward differences. The defining line, checked against the library's `losses.bt_loss` on random tensors:

# %%
def bt_loss(r_chosen, r_rejected):
    return F.softplus(r_rejected - r_chosen).mean()

r_c, r_r = torch.randn(64) * 3, torch.randn(64) * 3
torch.testing.assert_close(bt_loss(r_c, r_r), losses.bt_loss(r_c, r_r))
torch.testing.assert_close(bt_loss(r_c, r_r), -torch.log(torch.sigmoid(r_c - r_r)).mean())
print(f"step-0 value (equal rewards): {bt_loss(torch.zeros(8), torch.zeros(8)):.4f} = ln 2 = {np.log(2):.4f}")

# %% [markdown]
# Its gradient is $\partial \mathcal L / \partial r_c = -(1 - \sigma(r_c - r_r))/N$: pairs the model already orders confidently push little, mistakes push hard (at most $1/N$). Checked with autograd:

# %%
r_c.requires_grad_(True)
bt_loss(r_c, r_r).backward()
torch.testing.assert_close(r_c.grad, -(1 - torch.sigmoid(r_c.detach() - r_r)) / 64)
print("gradient matches -(1 - σ(r_c - r_r)) / N")

# %% [markdown]
# **Why softplus.** The textbook form $-\log(\sigma(z))$ computes $\sigma(z)$ first. For a confidently wrong pair, $z = r_c - r_r \approx -100$ or less, $\sigma(z)$ underflows to exactly 0 in float32, $\log 0 = -\infty$, and the gradient is NaN: one bad pair poisons the whole update. The softplus form never forms $\sigma(z)$:

# %%
for gap in [-10.0, -50.0, -100.0, -200.0]:
    z = torch.tensor([gap], requires_grad=True)
    naive = losses.bt_loss_naive(z, torch.zeros(1)); naive.backward(); g_naive = z.grad.item()
    z.grad = None
    stable = losses.bt_loss(z, torch.zeros(1)); stable.backward()
    print(f"r_c - r_r = {gap:7.1f}   naive: loss={naive.item():9.3f} grad={g_naive:6.3f}   "
          f"softplus: loss={stable.item():7.3f} grad={z.grad.item():6.3f}")

# %% [markdown]
# ## 5. Preference data from the SFT model
#
# A reward model must judge the outputs of the policy it will steer, so its data comes from the SFT model itself (the recipe of Stiennon et al. 2020 and Ouyang et al. 2022: sample from the model, then have people compare): two samples per **train** prompt, labelled by the Bradley-Terry annotator with temperature $\tau = 0.1$. The held-out set uses fresh samples on **eval** prompts, never seen in training. `R.preference_data` wraps `data.sample_pairs`.

# %%
train_ds = R.preference_data(sft, tok, config.n_pairs, "train", config.annotator_temperature, seed=config.seed,
                             max_new_tokens=profile.max_new_tokens)
eval_ds = R.preference_data(sft, tok, config.n_eval_pairs, "eval", config.annotator_temperature, seed=config.seed,
                            max_new_tokens=profile.max_new_tokens)
print(train_ds)
for row in train_ds.select(range(3)):
    print(f"{row['prompt']!r}\n  chosen   ({row['gold_chosen']:+.2f}) {row['chosen']}\n  rejected ({row['gold_rejected']:+.2f}) {row['rejected']}")

# %% [markdown]
# How hard is the task? Many pairs are near-ties for the judge itself (two mildly positive reviews); those are where the annotator's noise lives. Accuracy is reported on pairs whose gold scores differ by more than 0.2.

# %%
gap = np.abs(np.array(eval_ds["gold_chosen"]) - np.array(eval_ds["gold_rejected"]))
agree = np.array(eval_ds["gold_chosen"]) > np.array(eval_ds["gold_rejected"])
plt.figure(figsize=(4.2, 2.4)); plt.hist(gap, bins=30); plt.axvline(config.min_gap, c="C3")
plt.xlabel("|gold gap| of a held-out pair"); plt.tight_layout(); plt.show()
print(f"pairs with gap > {config.min_gap}: {np.mean(gap > config.min_gap):.0%};  "
      f"annotator agrees with gold on them: {agree[gap > config.min_gap].mean():.3f}")

# %% [markdown]
# ## 6. The reward model
#
# The reward model is the SFT model's transformer with a **scalar head**: `GPT2ForSequenceClassification` with `num_labels=1`, the form TRL's `RewardTrainer` trains. Starting from the SFT weights is standard: the model already reads the language of the completions it will judge. `new_reward_model` copies the transformer and adds a freshly initialised linear head.

# %%
rm = R.new_reward_model(sft, tok, seed=0)
print(type(rm).__name__, "| score head:", rm.score, "| num_labels =", rm.config.num_labels)
print("transformer copied from SFT:", torch.equal(rm.transformer.wte.weight, sft.transformer.wte.weight))

# %% [markdown]
# The score is read at the **last real token** of `<bos> prompt completion <eos>`, the only position that has seen the whole completion. Our batches are left-padded (best-of-N below even mixes left and right padding). HF's classifier takes the rightmost token that is not the pad id, and without position ids a left-padded row sees shifted positions; `R.score` finds the last token from the attention mask and passes position ids that skip the padding. The few lines that define it, checked against the library on a left-padded and a right-padded batch:

# %%
from alignlab.sampling import encode, position_ids


def my_score(rm, ids, mask):
    h = rm.transformer(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).last_hidden_state
    last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(-1)   # column of the last 1
    return rm.score(h[torch.arange(len(ids)), last]).squeeze(-1)

left = encode(tok, ["the acting", "i thought the plot"], ["was great .", "was dull , but the music was lovely ."], device=device)
n_pad = (left.attention_mask == 0).sum(1)

def to_right(x):   # roll each row's left padding round to its right end
    return torch.stack([row.roll(-int(n)) for row, n in zip(x, n_pad)])

right = {"input_ids": to_right(left.input_ids), "attention_mask": to_right(left.attention_mask)}

# %% [markdown]
# The library on both paddings and the few lines above must all agree:

# %%
with torch.no_grad():
    s_left, s_right = R.score(rm, left), R.score(rm, right)
    s_mine = my_score(rm, left.input_ids, left.attention_mask)
print("left:", s_left.tolist(), "\nright:", s_right.tolist())
torch.testing.assert_close(s_left, s_right, atol=1e-5, rtol=1e-5)
torch.testing.assert_close(s_left, s_mine, atol=1e-5, rtol=1e-5)

# %% [markdown]
# **Step-0 sanity.** An untrained head gives rewards close to 0, so the loss is about $\ln 2$ and the held-out accuracy is a coin flip:

# %%
step0 = R.rm_metrics(rm, tok, eval_ds, config.min_gap)
print({k: round(v, 3) for k, v in step0.items()}, " ln 2 =", round(np.log(2), 3))
assert abs(step0["eval_loss"] - np.log(2)) < 0.05 and abs(step0["eval_accuracy"] - 0.5) < 0.15

# %% [markdown]
# ## 7. Training the reward model
#
# `R.train_reward_model` runs the shared loop (`training.train`) with one step per minibatch of pairs: chosen and rejected go through the model in one batch, the loss is `bt_loss` plus a small centering term (section 10), then AdamW. Minibatches group pairs of similar length, which halves the padding the CPU computes. It logs `R.METHOD.metrics`, each defined once, with what healthy looks like, in `alignlab.metrics` (and `docs/metrics.md`); held-out accuracy is measured every `eval_every` steps.

# %% [markdown]
# ### 7.1 One step, written out
#
# Here is that step in full: the lines that make a reward model. Pair $i$'s chosen sequence sits in row $i$ of the tokenised data and its rejected one in row $n + i$; a minibatch of pair indices picks both halves, so **one** forward pass scores chosen and rejected together. Then the loss, backward, a clip of the global gradient norm at 1, and the AdamW step (and the learning-rate schedule: a 5% warm-up, then cosine decay). `margin` is for section 9.1.

# %%
from alignlab.training import make_optimizer


def my_rm_step(rm, opt, encoded, idx, center_coef, margin=0.0, sched=None):
    n = len(encoded.input_ids) // 2                                  # row i: pair i's chosen; row n + i: its rejected
    rows = torch.tensor(idx + [n + i for i in idx])                  # the chosen half, then the rejected half
    ids, mask = encoded.input_ids[rows], encoded.attention_mask[rows]
    first = int(mask.any(0).long().argmax())                         # drop columns that are padding in every row
    r = R.score(rm, {"input_ids": ids[:, first:].to(device), "attention_mask": mask[:, first:].to(device)})
    r_c, r_r = r[:len(idx)], r[len(idx):]
    loss = F.softplus(r_r - r_c + margin).mean() + center_coef * ((r_c + r_r) ** 2).mean()   # BT + centering (section 10)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
    opt.step()
    if sched is not None:
        sched.step()
    return loss.item()

# %% [markdown]
# The check: one step of it and one step of the library's `R.rm_step` (which `R.train_reward_model` calls on `R.pair_batch`), each on its own deep copy of the fresh reward model with its own fresh AdamW, on the same 32 pairs, must leave every parameter in the same place. (No schedule here: the warm-up starts at learning rate 0, so a first step with it would move nothing.)

# %%
sub = train_ds.select(range(64))
enc = encode(tok, list(sub["prompt"]) * 2, list(sub["chosen"]) + list(sub["rejected"]))
idx = list(range(0, 64, 2))
mine, lib = copy.deepcopy(rm), copy.deepcopy(rm)
loss_mine = my_rm_step(mine, make_optimizer(mine, config.lr), enc, idx, config.center_coef)
out = R.rm_step(lib, make_optimizer(lib, config.lr), R.pair_batch(enc, idx, device), config)
moved = max(float((p - q).detach().abs().max()) for p, q in zip(mine.parameters(), rm.parameters()))
assert all(torch.allclose(p, q, rtol=1e-6, atol=1e-8) for p, q in zip(mine.parameters(), lib.parameters()))
assert abs(loss_mine - out["loss"]) < 1e-6 and moved > 1e-4
print(f"loss {loss_mine:.6f} = library {out['loss']:.6f}; the step moved a parameter by up to {moved:.2e}; "
      f"all {sum(1 for _ in rm.parameters())} parameter tensors agree")
del mine, lib

# %% [markdown]
# Now the real run: `config.steps` such steps on minibatches of `config.batch_size` pairs (printed in section 1).

# %%
history = R.train_reward_model(rm, tok, train_ds, config, eval_fn=eval_ds)   # minibatch order: config.seed
R.save_reward_model(rm, tok, history, profile, seed=0, config=config)   # lecture 03 loads it from the cache
rm_acc = history.last("eval_accuracy")
print(f"held-out accuracy vs gold (gap > {config.min_gap}): {rm_acc:.3f}   vs labels: {history.last('eval_label_acc'):.3f}")

# %% [markdown]
# The curves: the training loss falls from $\ln 2$ towards the noise floor of the labels (it cannot reach 0: some labels are wrong), and held-out accuracy rises.

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 2.8))
steps, bt = history.series("bt_loss")
axes[0].plot(steps[19:], np.convolve(bt, np.ones(20) / 20, mode="valid"), label="train (mean of 20 steps)")
axes[0].plot(*history.series("eval_loss"), "o-", label="held-out"); axes[0].axhline(np.log(2), c="grey", ls="--")
axes[1].plot(*history.series("eval_accuracy"), "o-", label="vs gold (gap > 0.2)")
axes[1].plot(*history.series("eval_label_acc"), "o-", label="vs annotator labels")
axes[2].plot(*history.series("margin"), lw=0.6); axes[2].set_title("margin r_c - r_r (train)", fontsize=9)
axes[0].set_title("BT loss", fontsize=9); axes[1].set_title("held-out accuracy", fontsize=9)
for ax in axes: ax.set_xlabel("step"); ax.grid(alpha=0.3)
axes[0].legend(fontsize=8); axes[1].legend(fontsize=8); plt.tight_layout(); plt.show()

# %% [markdown]
# The headline number, asserted so that a regression fails the notebook (the course asks for at least 0.80):

# %%
print(f"reward model held-out pairwise accuracy vs gold ordering: {rm_acc:.4f}")
assert rm_acc >= 0.80

# %% [markdown]
# ## 8. Calibration
#
# Accuracy only asks whether the *sign* of $r_1 - r_2$ is right. A Bradley-Terry model also claims a *probability*: does "$\sigma(r_1 - r_2) = 0.8$" come true 80% of the time? We orient each held-out pair at random, bin the predicted probabilities, and compare with how often the annotator actually chose the first completion, and with the annotator's true probability $\sigma((g_1 - g_2)/\tau)$, which only our world can show.

# %%
prompts_e = list(eval_ds["prompt"])
r_ch = R.score_texts(rm, tok, prompts_e, list(eval_ds["chosen"]))
r_rej = R.score_texts(rm, tok, prompts_e, list(eval_ds["rejected"]))
flip = np.random.default_rng(1).random(len(r_ch)) < 0.5
pred = torch.sigmoid(torch.where(torch.tensor(flip), r_rej - r_ch, r_ch - r_rej)).numpy()
first_chosen = ~flip
g_ch, g_rej = np.array(eval_ds["gold_chosen"]), np.array(eval_ds["gold_rejected"])
true_p = data.bt_probability(np.where(flip, g_rej, g_ch), np.where(flip, g_ch, g_rej), config.annotator_temperature)

# %% [markdown]
# The reliability diagram: a perfectly calibrated model lies on the diagonal. The title gives the ECE (expected calibration error: the mean distance from the diagonal, weighted by the pairs in each bin). With 512 held-out pairs a bin holds a few dozen pairs, so wiggles of about ±0.05 are noise.

# %%
edges = np.linspace(0, 1, 9)
k = np.clip(np.digitize(pred, edges) - 1, 0, 7)
rows = [(pred[k == b].mean(), first_chosen[k == b].mean(), true_p[k == b].mean(), (k == b).sum())
        for b in range(8) if (k == b).sum() >= 5]
mp, emp, tp, cnt = map(np.array, zip(*rows))
ece = float(np.sum(cnt * np.abs(mp - emp)) / cnt.sum())
plt.figure(figsize=(3.8, 3.4)); plt.plot([0, 1], [0, 1], c="grey", ls="--")
plt.plot(mp, emp, "o-", label="annotator's choices (empirical)"); plt.plot(mp, tp, "s--", label="annotator's true P")
plt.xlabel("predicted σ(r1 - r2)"); plt.ylabel("P(first is chosen)"); plt.title(f"calibration, ECE = {ece:.3f}", fontsize=9)
plt.legend(fontsize=7); plt.tight_layout(); plt.show()

# %% [markdown]
# ## 9. Annotator noise and data size
#
# How much do noisy labels and few labels cost? We re-label the **same** training completions with annotators of temperature 0.1, 0.3 and 1.0 (at 1.0, a gold gap of 0.2 is chosen correctly only 55% of the time), and train on 64, 256 and 1024 pairs. Each run is short: 100 steps of 32 pairs, the same for all.

# %%
def short_run(ds, name):
    model = R.new_reward_model(sft, tok, seed=0)
    cfg = R.RMConfig.for_profile(profile, steps=100, batch_size=32)
    R.train_reward_model(model, tok, ds, cfg, progress=False, name=name)
    return model, R.rm_metrics(model, tok, eval_ds, config.min_gap)["eval_accuracy"]

def relabel(n, temperature):
    sub = train_ds.select(range(n))
    return data.annotate_pairs(list(sub["prompt"]), list(sub["chosen"]), list(sub["rejected"]), temperature, seed=1)

# %% [markdown]
# Five runs (the point at $\tau = 0.1$, 1024 pairs is shared by both sweeps):

# %%
from tqdm.auto import tqdm

temps, sizes = (0.1, 0.3, 1.0), (64, 256, 1024)
runs = {(t, n): None for t, n in [(t, 1024) for t in temps] + [(0.1, n) for n in sizes[:2]]}
for t, n in tqdm(list(runs), desc="sweep"):
    runs[(t, n)] = short_run(relabel(n, t), f"tau={t}, n={n}")
fig, axes = plt.subplots(1, 2, figsize=(8, 2.8))
for ax, xs, ys, label in [(axes[0], temps, [runs[(t, 1024)][1] for t in temps], "annotator temperature τ (1024 pairs)"),
                          (axes[1], sizes, [runs[(0.1, n)][1] for n in sizes], "training pairs (τ = 0.1)")]:
    ax.plot(xs, ys, "o-"); ax.set_xscale("log"); ax.set_xticks(xs, [str(x) for x in xs]); ax.minorticks_off()
    ax.set_xlabel(label); ax.set_ylabel("held-out accuracy vs gold"); ax.axhline(0.5, c="grey", ls="--"); ax.grid(alpha=0.3)
plt.tight_layout(); plt.show()
print({f"tau={t}, n={n}": round(acc, 3) for (t, n), (_, acc) in runs.items()})
n_counted = int((np.abs(g_ch - g_rej) > config.min_gap).sum())
se = float(np.sqrt(runs[(0.1, 1024)][1] * (1 - runs[(0.1, 1024)][1]) / n_counted))
print(f"{n_counted} held-out pairs count: one accuracy is measured to about ±{se:.3f} (one standard error)")
assert runs[(1.0, 1024)][1] < runs[(0.1, 1024)][1] - se and runs[(0.1, 64)][1] < runs[(0.1, 1024)][1] - se

# %% [markdown]
# At the extremes, noise and scarcity both cost accuracy (asserted: $\tau = 1.0$ and 64 pairs each lose more than a standard error against $\tau = 0.1$ with 1024 pairs). In between, compare the printed differences with the standard error before reading anything into them. They are the same currency: a noisier annotator carries less information per label, so it needs more labels for the same reward model. Bradley-Terry's maximum likelihood is *consistent* under this noise (the labels are exactly BT-distributed), so in principle more data buys the accuracy back (exercise 3 tries it); a biased annotator would not be fixed by more data (exercise 4). The short runs are weaker than the main one (fewer steps and pairs), and small data sets are seen many times over (100 steps of 32 pairs is 50 passes over 64 pairs).

# %% [markdown]
# ### 9.1 How much better: graded labels and a margin
#
# A choice says *which* completion is better, not by how much. Llama 2's annotators also said how much, on a four-point scale from "negligibly better / unsure" to "significantly better", and its reward model turned the grade into a **margin** in the loss (Touvron et al. 2023, arXiv:2307.09288, eq. 2):
#
# $$ \mathcal L = -\log\sigma\big(r_c - r_r - m(\text{grade})\big) = \mathrm{softplus}\big(r_r - r_c + m(\text{grade})\big), $$
#
# so a pair marked "much better" keeps pushing until the chosen reward leads by at least $m$. TRL's `RewardTrainer` reads the margin from an optional `margin` column, and so does `R.train_reward_model` (`tests/test_rm.py` checks the loss against TRL's on random tensors).
#
# Our annotator grades with the same noisy perception it chooses with: it perceives the difference $d = (g_a - g_b) + \tau L$ with $L$ a standard logistic draw (the difference of two Gumbel draws: exactly section 2's Bradley-Terry choice), picks the side $d$ points to, and reports $|d|$ on a three-point scale: 1 = slightly better ($|d| \le 0.2$), 2 = better, 3 = much better ($|d| > 0.5$). `data.annotate_graded` uses the same random draws as `data.annotate_pairs`, so on section 9's 1024 pairs it gives the same chosen and rejected as the $\tau = 0.1$ run there: only the grades are new.

# %%
sub = train_ds.select(range(1024))
graded = data.annotate_graded(list(sub["prompt"]), list(sub["chosen"]), list(sub["rejected"]), 0.1, seed=1)
assert graded["chosen"] == relabel(1024, 0.1)["chosen"]             # section 9's labels, plus a grade
grade = np.array(graded["grade"])
gold_gap = np.array(graded["gold_chosen"]) - np.array(graded["gold_rejected"])   # > 0: the label agrees with gold
for k, word in enumerate(["slightly better", "better", "much better"], 1):
    print(f"grade {k} ({word:15s}): {np.mean(grade == k):4.0%} of pairs, mean |gold gap| {np.abs(gold_gap[grade == k]).mean():.2f}, "
          f"label agrees with gold {np.mean(gold_gap[grade == k] > 0):.3f}")

# %% [markdown]
# The grades carry what the choice lacks: "much better" pairs have large gold gaps and labels that are almost never wrong, "slightly better" pairs are near-ties, often mislabelled. We give the grades margins of 0, 1 and 2 reward units and train the same short run as section 9 on the same pairs; the run without margins is section 9's $\tau = 0.1$, 1024-pair point. On the held-out pairs we measure accuracy against the gold ordering, the rank correlation between the reward model's gap $r_c - r_r$ and the gold gap (does it know *how much* better?), the mean size of its gap $|r_c - r_r|$ in three bands of the gold gap, and its Bradley-Terry loss against the annotator's labels.

# %%
with_margin = graded.add_column("margin", [float(k - 1) for k in graded["grade"]])   # m = 0, 1, 2
rm_margin, acc_margin = short_run(with_margin, "tau=0.1, n=1024, margin")

def rank_corr(x, y):
    return float(np.corrcoef(np.argsort(np.argsort(x)), np.argsort(np.argsort(y)))[0, 1])

band = np.digitize(np.abs(g_ch - g_rej), [0.2, 0.5])             # held-out gold gap: 0 below 0.2, 1 up to 0.5, 2 above
graded_res = {}
for name, (model, acc_) in {"without margin": runs[(0.1, 1024)], "with margin": (rm_margin, acc_margin)}.items():
    rc_, rr_ = R.score_texts(model, tok, prompts_e, list(eval_ds["chosen"])), R.score_texts(model, tok, prompts_e, list(eval_ds["rejected"]))
    d = (rc_ - rr_).numpy()
    graded_res[name] = dict(acc=acc_, corr=rank_corr(d, g_ch - g_rej), gap=float(np.abs(d).mean()),
                            bands=[float(np.abs(d[band == k]).mean()) for k in range(3)], loss=float(losses.bt_loss(rc_, rr_)))
    print(f"{name:15s} accuracy vs gold {acc_:.3f} | rank corr. of gaps {graded_res[name]['corr']:.3f} | mean |r_c - r_r| "
          f"{graded_res[name]['gap']:.2f}, by gold gap band {np.round(graded_res[name]['bands'], 2).tolist()} | BT loss {graded_res[name]['loss']:.3f}")
print(f"accuracy change with the margin {acc_margin - runs[(0.1, 1024)][1]:+.3f}; one accuracy is measured to about ±{se:.3f}")
assert graded_res["with margin"]["gap"] > 1.2 * graded_res["without margin"]["gap"]

# %% [markdown]
# What the margin does, measured: it **spreads the reward scale by grade**. The held-out reward gaps grow (asserted: the mean $|r_c - r_r|$ by more than 20%; the printed bands show where). Whether it buys accuracy against the gold ordering is printed above with the standard error of one measurement; do not read a change of one or two standard errors from a single pair of runs as a gain. There is a reason to expect little: at $\tau = 0.1$ the choice on clearly different pairs is already almost always right (section 5), so the grade adds *magnitude*, which accuracy does not measure, more than *order*. And one cost: under the margin loss the model of a label is $\sigma(r_c - r_r - m)$, so the plain $\sigma(r_c - r_r)$ is no longer the reward model's probability that $y_c$ wins; compare the two printed Bradley-Terry losses before using such a model's rewards as calibrated probabilities (section 8).

# %% [markdown]
# ## 10. Reward centering
#
# Section 3 showed that Bradley-Terry is blind to an offset: $r$ and $r + c(x)$ give the same preferences and the same loss. So the offset is whatever initialisation and training left it at, yet later stages see it: a PPO reward of $+3$ on every sample looks like good news that is not. Stiennon et al. 2020 and Ouyang et al. 2022 remove it after training, with a bias that gives reference outputs (human-written summaries; the labellers' demonstrations) a mean reward of 0. With the SFT model's samples as the reference, the convention reads $\mathbb E_{y \sim \pi_\text{ref}}[r(x, y)] = 0$, overall or for every prompt. Two ways:
#
# * **during training**: add $\lambda\,\mathbb E[(r_c + r_r)^2]$ to the loss (Eisenstein et al. 2023, arXiv:2312.09244; TRL's `center_rewards_coefficient`), which pulls the mean towards 0 without touching the differences. Our main run used $\lambda$ = `config.center_coef`;
# * **post hoc**: subtract the mean reward of reference samples (overall, or per prompt).
#
# The auxiliary term, written out: the BT loss cannot see a shift of every reward by 5, the centering term can.

# %%
def centering_loss(r_chosen, r_rejected):
    return ((r_chosen + r_rejected) ** 2).mean()

torch.testing.assert_close(bt_loss(r_ch + 5.0, r_rej + 5.0), bt_loss(r_ch, r_rej))
print(f"held-out pairs: centering loss {centering_loss(r_ch, r_rej):.3f} -> {centering_loss(r_ch + 5, r_rej + 5):.3f} "
      f"after a +5 shift; BT loss {bt_loss(r_ch, r_rej):.3f} either way")

# %% [markdown]
# A controlled experiment: shift every reward of a fresh model by $+2$, then train 40 steps with $\lambda \in \{0, 0.01, 0.1\}$. The logged `reward_mean` shows what each does with the offset.
#
# How to shift every reward by exactly 2: the score is $r = w^\top h$ (the head has no bias), and $h = \gamma \odot \hat x + \beta$ is the output of the final layer norm `ln_f`, with $\hat x$ the normalised input. Adding $\delta$ to the layer norm's bias $\beta$ adds $w^\top\delta$ to every score, whatever the input; $\delta = 2w/(w^\top w)$ makes that exactly $+2$. Checked on the two sequences of section 6:

# %%
def shift_rewards(model, c):
    with torch.no_grad():
        w = model.score.weight[0]
        model.transformer.ln_f.bias += c * w / w.dot(w)        # w . delta = c for every input

shifted = R.new_reward_model(sft, tok, seed=0)
with torch.no_grad():
    before = R.score(shifted, left); shift_rewards(shifted, 2.0); after = R.score(shifted, left)
print("rewards before:", before.tolist(), "\nafter +2:      ", after.tolist())
torch.testing.assert_close(after - before, torch.full_like(before, 2.0), atol=1e-5, rtol=0)

# %%
def shifted_run(coef, steps=40):
    model = R.new_reward_model(sft, tok, seed=0)
    shift_rewards(model, 2.0)
    cfg = R.RMConfig.for_profile(profile, steps=steps, batch_size=32, center_coef=coef)
    return R.train_reward_model(model, tok, train_ds, cfg, progress=False, name=f"λ = {coef}")

plt.figure(figsize=(4.4, 2.6))
offsets = {}
for coef in (0.0, 0.01, 0.1):
    steps_c, mean_c = shifted_run(coef).series("reward_mean")
    plt.plot(steps_c, mean_c, label=f"λ = {coef}")
    offsets[coef] = (mean_c[0], float(np.mean(mean_c[-10:])))
plt.axhline(0, c="grey", ls="--"); plt.xlabel("step"); plt.ylabel("reward_mean (minibatch)")
plt.legend(fontsize=8); plt.tight_layout(); plt.show()
print({f"λ = {c}": f"step 1 {a:+.2f} -> last 10 steps {b:+.2f}" for c, (a, b) in offsets.items()})

# %% [markdown]
# Without the term, nothing in the loss pulls the offset back; the term removes it at a speed set by $\lambda$. The printed line is the measurement; what it asserts:

# %%
assert offsets[0.0][1] > 1.0                                        # no term: most of the +2 is still there
assert abs(offsets[0.1][1]) < 0.5 * abs(offsets[0.0][1])            # the strongest term removes at least half of it

# %% [markdown]
# Now the post-hoc way, on reference samples: 64 SFT samples for each of the evaluator's held-out prompts (best-of-N in section 11 reuses them).

# %%
evaluator = Evaluator(sft, tok, profile=profile)
P = len(evaluator.prompts)
candidates = bon.sample_candidates(sft, tok, evaluator.prompts, 64, seed=0, max_new_tokens=profile.max_new_tokens)
rewards = bon.score_candidates(rm, candidates, P)                       # (prompts, 64)
print(f"main reward model: mean reward on SFT samples {rewards.mean():+.3f}, std {rewards.std():.3f}")

# %% [markdown]
# With $\lambda = 0.01$ the main model's overall mean is already close to 0. What remains is a per-prompt offset $c(x)$: part real (some openings lead to better reviews), part arbitrary, and Bradley-Terry cannot tell which. Per-prompt centering removes it and leaves every comparison between completions of one prompt unchanged, so best-of-N's choice does not move:

# %%
centred = rewards - rewards.mean(dim=1, keepdim=True)
plt.figure(figsize=(4.2, 2.4)); plt.hist(rewards.mean(1).numpy(), bins=20)
plt.xlabel("mean reward of a prompt's 64 SFT samples"); plt.title("the per-prompt offset c(x)", fontsize=9)
plt.tight_layout(); plt.show()
assert torch.equal(centred.argmax(1), rewards.argmax(1))
print(f"after centering: overall mean {centred.mean():+.1e}, every prompt's mean 0; argmax unchanged")

# %% [markdown]
# ## 11. Best-of-N: the simplest policy that uses a reward model
#
# Sample $N$ completions from $\pi_\text{ref}$, keep the one the reward model likes best. No training at all, and a KL to the reference known in closed form (Stiennon et al. 2020, arXiv:2009.01325, appendix):
#
# $$ \mathrm{KL}(\pi_{\text{BoN}} \,\|\, \pi_\text{ref}) = \log N - \frac{N-1}{N}. $$
#
# It is exact when the $N$ samples never tie, and an upper bound otherwise (Beirami et al. 2024, arXiv:2401.01879). Our short reviews do repeat now and then (the share is printed in the next cell but one), so the true KL is a little smaller than the formula. Derivation check: with $M$ equally likely, distinct outcomes, the one of rank $i$ is kept with probability $(i/M)^N - ((i-1)/M)^N$, and the exact KL of that distribution matches the formula.

# %%
M = 100_000
rank = torch.arange(1, M + 1, dtype=torch.float64)
for n in (2, 16, 64):
    p = (rank / M) ** n - ((rank - 1) / M) ** n
    exact = float((p * torch.log(p * M).nan_to_num(0.0)).sum())
    print(f"N={n:3d}  exact KL = {exact:.4f}   log N - (N-1)/N = {bon.bon_kl(n):.4f}")
    assert abs(exact - bon.bon_kl(n)) < 1e-3

# %% [markdown]
# The selection rule itself is one line: per prompt, the argmax of the reward over the first $N$ draws. Checked against `bon.select_best`, on the 64 reward-model scores per prompt of section 10:

# %%
best = rewards[:, :16].argmax(1)                                  # best-of-16, per prompt
torch.testing.assert_close(rewards[torch.arange(P), best], bon.select_best(candidates, rewards, 16)[1])
texts = [[candidates.completions[j * P + i] for j in range(64)] for i in range(P)]   # draw j of prompt i: row j * P + i
repeats = np.mean([1 - len(set(t)) / len(t) for t in texts])
print(f"best-of-16 keeps the argmax; {repeats:.1%} of a prompt's 64 draws repeat an earlier one")

# %% [markdown]
# One set of 64 samples serves every $N \in \{1, 2, 4, \dots, 64\}$: best-of-$N$ looks at the first $N$ draws of each prompt. We score the winners with the gold judge and compare three selectors on the shared dashboard: our reward model, a weak sweep model (256 pairs), and the gold judge itself (an oracle, the best any reward model could do). The x-axis is $\log_2 N$; the KL panel is the analytic formula.

# %%
gold_grid = bon.as_grid(world.gold_rewards(candidates.prompts, candidates.completions, candidates.finished), P)
bon = {"RM (main)": bon.bon_sweep(evaluator, candidates, rewards, name="best-of-N, reward model"),
       "RM (256 pairs)": bon.bon_sweep(evaluator, candidates, bon.score_candidates(runs[(0.1, 256)][0], candidates, P),
                                     name="best-of-N, weak RM (256 pairs)"),
       "gold": bon.bon_sweep(evaluator, candidates, gold_grid, name="best-of-N, gold judge (oracle)")}
dashboard(*bon.values(), title="best-of-N from the SFT model (KL: analytic)", extra=("proxy_reward",), x_label="log2 N")
plt.show()

# %% [markdown]
# The numbers of the main reward model:

# %%
h = bon["RM (main)"]
for s in sorted(h.rows):
    row = h.rows[s]
    print(f"N={int(row['n']):3d}  KL={row['kl']:.3f}  proxy (RM)={row['proxy_reward']:+.3f}  gold={row['gold_reward']:+.3f}  "
          f"win-rate={row['win_rate']:.3f}  valid={row['valid_rate']:.3f}")
bon16 = {k: h.rows[4][k] for k in ("gold_reward", "kl", "win_rate", "valid_rate")}
assert bon16["win_rate"] >= 0.70, bon16

# %% [markdown]
# **Do proxy and gold part ways?** Over-optimisation of a learned reward (Gao et al. 2023, arXiv:2210.10760) shows up as a proxy reward that keeps climbing with $N$ while the gold reward flattens or falls. Plotting one against the other makes it visible:

# %%
plt.figure(figsize=(4.4, 3.0))
for name, hist in list(bon.items())[:2]:
    plt.plot(hist.series("proxy_reward")[1], hist.series("gold_reward")[1], "o-", label=name)
plt.xlabel("proxy reward (the selector's own score)"); plt.ylabel("gold reward")
plt.title("as N grows 1 → 64", fontsize=9); plt.legend(fontsize=8); plt.grid(alpha=0.3); plt.tight_layout(); plt.show()
for name, hist in list(bon.items())[:2]:
    g, p = hist.series("gold_reward")[1], hist.series("proxy_reward")[1]
    print(f"{name:15s} N=16 -> 64: proxy {p[4]:+.3f} -> {p[6]:+.3f}, gold {g[4]:+.3f} -> {g[6]:+.3f}; "
          f"gold peaks at N={2 ** int(np.argmax(g))}; oracle minus selector at N=64: {bon['gold'].rows[6]['gold_reward'] - g[6]:.3f}")

# %% [markdown]
# The two selectors side by side, with their held-out accuracies (section 7 and section 9's sweep): does the gold reward rise at every doubling of $N$, how much gold does each unit of the selector's own score buy, and how far is each from the oracle?

# %%
verdict = {}
for name, acc_ in [("RM (main)", rm_acc), ("RM (256 pairs)", runs[(0.1, 256)][1])]:
    g, p = bon[name].series("gold_reward")[1], bon[name].series("proxy_reward")[1]
    oracle = [bon["gold"].rows[k]["gold_reward"] - g[k] for k in range(len(g))]
    verdict[name] = dict(gold_1=g[0], gold_64=g[-1], proxy_64=p[-1], per_proxy=(g[-1] - g[0]) / (p[-1] - p[0]), oracle=oracle)
    print(f"{name:15s} held-out accuracy {acc_:.3f} | gold N=1 {g[0]:+.3f} -> N=64 {g[-1]:+.3f}, rises at every doubling: "
          f"{bool(np.all(np.diff(g) > 0))} | proxy at N=64 {p[-1]:+.3f} | gold per unit of proxy {verdict[name]['per_proxy']:.2f} | "
          f"oracle minus selector, N=1..64: {np.round(oracle, 2).tolist()}")
main, weak = verdict["RM (main)"], verdict["RM (256 pairs)"]
assert main["gold_64"] > main["gold_1"] + 0.3 and main["gold_64"] > weak["gold_64"] and main["per_proxy"] > weak["per_proxy"]
assert main["oracle"][0] == 0 and main["oracle"][-1] > main["oracle"][0]   # N = 1: every selector keeps draw 0

# %% [markdown]
# What the lines say (the assertions hold the first and the last points; the rest is for you to read on your run):
#
# * Under the **main reward model**, best-of-64 is far better than one sample on the gold judge. Whether the gold reward rose at *every* doubling and where it peaked is printed: if it peaks at $N = 64$, proxy and gold climbed together and selection up to 64 did not over-optimise. What grows with $N$ is the distance to the oracle: at $N = 1$ every selector keeps the same draw, and the model's ranking errors matter more the harder we select.
# * The **weak model** (256 pairs, 100 steps) shows how proxy and gold part ways: each unit of its own score buys less gold than under the main model (asserted), and its best-of-64 is worse on the gold judge. Compare the two proxies at $N = 64$ on your run: a weak reward model can score its winners about as highly as a good one.
#
# Over-optimisation needs optimisation pressure, and 6 bits of selection ($N = 64$, KL 3.2 nats) is not much. Lecture 03 applies far more, with PPO against this same reward model, and lecture 08 measures the proxy-gold gap directly.
#
# The course's headline numbers for this lecture: best-of-16 under the learned reward model (gold reward, analytic KL, win-rate and valid rate against $\pi_\text{ref}$) and the reward model's held-out accuracy.

# %%
alignlab.report(bon16, n=16, rm_accuracy=round(rm_acc, 4), ece=round(ece, 4), notebook="01_bradley_terry")

# %% [markdown]
# ## 12. Summary
#
# * Preference data is collected **pairwise** because comparisons cancel each rater's personal scale: from the same noisy raters, pairwise labels agreed with the gold ordering far more often than pointwise scores from different raters, and more often than one rater's scores on a 10-point scale (ties). A ranking of $K$ gives $\binom{K}{2}$ pairs, correlated ones.
# * **Bradley-Terry**: $P(y_1 \succ y_2) = \sigma(r_1 - r_2)$; its maximum-likelihood loss is $\mathrm{softplus}(r_r - r_c)$, which stays finite where $-\log\sigma$ overflows. Step 0: loss $\ln 2$, accuracy 1/2.
# * The **reward model** is the SFT transformer plus a scalar head read at the last real token. Its training step is a dozen lines (section 7.1: chosen and rejected in one pass, BT loss plus centering, backward, clip, AdamW), checked against the library's. Trained on pairs of the SFT model's own samples, it orders held-out pairs as the gold judge does most of the time (accuracy printed above); its calibration error is printed in section 8.
# * Heavy label noise and very small data cost accuracy (measured at $\tau = 1$ and 64 pairs); under Bradley-Terry noise, more data can pay for it. Graded labels feed the loss a margin (section 9.1: its measured effect is printed there).
# * BT fixes rewards only up to an offset: **centre** them (post hoc on reference samples, or with the auxiliary term).
# * **Best-of-N** turns a reward model into a policy with a known KL, $\log N - (N-1)/N$. Under our reward model best-of-64 beats one sample by far on the gold judge; a weak reward model buys less gold per unit of its own score.
#
# **Pitfalls, and how to see them in the logs**
# * *Reading the wrong token.* With padding, `hidden[:, -1]` is a pad position for some rows. Symptom: scores change with the batch a sequence is in; section 6's check fails.
# * *Overflowing loss.* `-log(sigmoid(z))` gives `inf`/NaN on confidently wrong pairs; the shared loop stops with "the loss became nan". Use softplus (or `F.logsigmoid`).
# * *Reading train accuracy as quality.* Train accuracy against noisy labels is capped by the noise and inflated by overfitting (many epochs on few pairs): watch `eval_accuracy` on held-out prompts against the gold ordering.
# * *Drifting offset.* Without centering, `reward_mean` wanders; downstream it looks like a reward that is always good (or bad). Watch `reward_mean` and `center_loss`.
# * *Trusting the proxy.* A rising RM score is not a rising gold score; compare with a held-out judge (here: the gold judge), as in section 11.
#
# ## 13. Exercises
#
# 1. Give the pointwise raters of section 2 no offsets and equal spreads (`offset[:] = 0; spread[:] = 1`). How close do pointwise labels come to pairwise ones? What is left that still makes them worse?
# 2. Run `shifted_run(0.0, steps=300)`: does the +2 offset ever go away by itself? Make `shifted_run` return its model too and compare `R.rm_metrics` for $\lambda = 0$ and $0.1$: does the accuracy care about the offset?
# 3. Can data buy back noise? Train on all of `train_ds` relabelled at $\tau = 1.0$ with the main run's settings (`config`), and compare its held-out accuracy with the main model's.
# 4. Change the annotator to *biased*: label with the judge's score plus 0.3 for every review longer than 10 words (edit the gold scores before `data.annotate_pairs`). Does more data fix the reward model now? Check best-of-N's length and gold reward.
# 5. Best-of-N at sampling temperature 0.7 (`sample_candidates` calls `sampling.sample`): is the analytic KL to the temperature-1 reference still $\log N - (N-1)/N$? Why not?
