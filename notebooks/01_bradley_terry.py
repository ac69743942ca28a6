# %% [markdown]
# # Lecture 01: preference data, the Bradley-Terry model and a reward model
#
# **Objectives.** By the end of this notebook you can
# 1. say why preference tuning collects **pairwise** labels rather than scores or rankings, and show it on simulated annotators;
# 2. state the **Bradley-Terry** model $P(y_1 \succ y_2 \mid x) = \sigma(r(x,y_1) - r(x,y_2))$ and derive its loss by maximum likelihood, in the form that never overflows: $\mathrm{softplus}(r_\text{rejected} - r_\text{chosen})$;
# 3. train a real GPT-2 **reward model** (`GPT2ForSequenceClassification` with one label, as TRL does) on preference pairs of the SFT model's own samples, read at the last real token;
# 4. judge it: held-out accuracy against the gold ordering, calibration, and what annotator noise and data size cost;
# 5. centre its rewards (the mean-zero trick), and use it in the simplest policy there is: **best-of-N**, with its exact KL.
#
# **Prerequisites.** Lecture 00 (the review world, the gold judge, the SFT model $\pi_\text{ref}$, the shared evaluation). Logistic regression, log-likelihood, PyTorch autograd.
#
# **Run time.** `quick` profile (2-core CPU): 57 s once the SFT model is cached (the first notebook you run trains it, about 35 s more); this includes training the course's reward model in the open, which is then cached for lecture 03. Measured under nbval on an idle 2-core machine. `full` profile (one GPU): not measured yet (no GPU was available when this course was built).

# %% [markdown]
# ## 1. Set-up

# %%
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
# The lecture notes list three ways to ask people about model outputs:
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
# Now the three label types, from the same raters, on the same pairs with a clear gold difference (gap > 0.2). Pointwise labels order a pair by comparing two scores, as you must when each item was scored by a different crowd worker; a listwise rater ranks four completions, which yields six pairs per task.

# %%
clear = np.abs(gold[a] - gold[b]) > 0.2
a, b = a[clear][:4000], b[clear][:4000]
truth = gold[a] > gold[b]
s_a = pointwise(gold[a], rng.integers(0, n_raters, len(a)))      # each item scored by a random rater
s_b = pointwise(gold[b], rng.integers(0, n_raters, len(b)))
acc = {"pointwise\n(different raters)": np.mean(np.where(s_a == s_b, 0.5, (s_a > s_b) == truth)),
       "pairwise\n(one choice)": np.mean((perceive(gold[a]) > perceive(gold[b])) == truth)}

# %% [markdown]
# Equal pointwise scores count as a coin flip. For listwise labels, a rater sorts four completions by perception; every one of the six pairs in the ranking is a label:

# %%
quad = rng.integers(0, len(gold), (2000, 4))
ranks = np.argsort(np.argsort(-perceive(gold[quad]), axis=1), axis=1)   # 0 = ranked first
i, j = np.triu_indices(4, 1)
gi, gj = gold[quad][:, i], gold[quad][:, j]
ok = np.abs(gi - gj) > 0.2
acc["listwise\n(6 pairs per task)"] = np.mean(((ranks[:, i] < ranks[:, j]) == (gi > gj))[ok])
print({k.split()[0]: round(float(v), 3) for k, v in acc.items()})

# %% [markdown]
# The picture: accuracy of each label type against the gold ordering, and the spread of the pointwise scores that 50 raters give **one and the same** review.

# %%
one = int(np.argmin(np.abs(gold - 0.6)))
fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
axes[0].bar(list(acc), list(acc.values()), color=["C3", "C0", "C2"]); axes[0].set_ylim(0.5, 1)
axes[0].set_title("agreement with the gold ordering (gap > 0.2)", fontsize=9)
axes[1].hist([pointwise(gold[one], k) for k in range(n_raters)], bins=np.arange(0.5, 11), rwidth=0.8)
axes[1].set_title(f"50 raters score one review (gold {gold[one]:+.2f})\n'{world.join(*reviews[one])}'", fontsize=8)
axes[1].set_xlabel("pointwise score (1-10)")
plt.tight_layout(); plt.show()
assert acc["pairwise\n(one choice)"] > acc["pointwise\n(different raters)"] + 0.05

# %% [markdown]
# The raters' personal scales make pointwise labels much noisier than the choices the **same** raters make between two completions: in a comparison, the offset $o_k$ and the spread $s_k$ cancel. Listwise labels are as accurate per pair and give more pairs per task, but ranking many items is slow and tiring for real people. The rest of the course uses pairwise data, in TRL's format: `prompt`, `chosen`, `rejected`.

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
# A reward model must judge the outputs of the policy it will steer, so its data comes from the SFT model itself (the notes' "generate with the model, then have humans compare"): two samples per **train** prompt, labelled by the Bradley-Terry annotator with temperature $\tau = 0.1$. The held-out set uses fresh samples on **eval** prompts, never seen in training. `R.preference_data` wraps `data.sample_pairs`.

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

# %% [markdown]
# Noise and scarcity both cost accuracy, in the same currency: a noisier annotator carries less information per label, so it needs more labels for the same reward model. Bradley-Terry's maximum likelihood is still *consistent* under noise (its labels are exactly BT-distributed), so more data can buy the accuracy back; a biased annotator would not be fixed by more data. Note that the short runs are weaker than the main one (fewer steps and pairs), that small data sets are seen many times over (100 steps of 32 pairs is 50 passes over 64 pairs), and that two runs differ by a few points from the seed alone: 400 held-out pairs measure accuracy to about ±0.02.

# %% [markdown]
# ## 10. Reward centering
#
# Section 3 showed that Bradley-Terry is blind to an offset: $r$ and $r + c(x)$ give the same preferences and the same loss. So the offset is whatever initialisation and training left it at, yet later stages see it: a PPO reward of $+3$ on every sample looks like good news that is not. The RLHF/DPO notes record the convention: choose the offset so that $\mathbb E_{y \sim \pi_\text{ref}}[r(x, y)] = 0$ for every prompt. Two ways:
#
# * **during training**: add $\lambda\,\mathbb E[(r_c + r_r)^2]$ to the loss (Eisenstein et al. 2023; TRL's `center_rewards_coefficient`), which pulls the mean towards 0 without touching the differences. Our main run used $\lambda$ = `config.center_coef`;
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
# A controlled experiment: shift every reward of a fresh model by $+2$ (through the final layer-norm's bias, along the head's direction), then train 40 steps with $\lambda \in \{0, 0.01, 0.1\}$. The logged `reward_mean` shows what each does with the offset:

# %%
def shifted_run(coef, steps=40):
    model = R.new_reward_model(sft, tok, seed=0)
    with torch.no_grad():
        w = model.score.weight[0]
        model.transformer.ln_f.bias += 2.0 * w / w.dot(w)      # every reward +2
    cfg = R.RMConfig.for_profile(profile, steps=steps, batch_size=32, center_coef=coef)
    return R.train_reward_model(model, tok, train_ds, cfg, progress=False, name=f"λ = {coef}")

plt.figure(figsize=(4.4, 2.6))
for coef in (0.0, 0.01, 0.1):
    plt.plot(*shifted_run(coef).series("reward_mean"), label=f"λ = {coef}")
plt.axhline(0, c="grey", ls="--"); plt.xlabel("step"); plt.ylabel("reward_mean (minibatch)")
plt.legend(fontsize=8); plt.tight_layout(); plt.show()

# %% [markdown]
# Without the term, nothing in the loss pulls the offset back, and it stays wherever it started (or drifts); the term removes it at a speed set by $\lambda$. Now the post-hoc way, on reference samples: 64 SFT samples for each of the evaluator's held-out prompts (best-of-N in section 11 reuses them).

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
# Sample $N$ completions from $\pi_\text{ref}$, keep the one the reward model likes best. No training at all, and a KL to the reference known in closed form (Stiennon et al. 2020):
#
# $$ \mathrm{KL}(\pi_{\text{BoN}} \,\|\, \pi_\text{ref}) = \log N - \frac{N-1}{N}. $$
#
# It is exact when the $N$ samples never tie, and an upper bound otherwise (Beirami et al. 2024). Our short reviews do repeat now and then, so the true KL is a little smaller than the formula. Derivation check: with $M$ equally likely, distinct outcomes, the one of rank $i$ is kept with probability $(i/M)^N - ((i-1)/M)^N$, and the exact KL of that distribution matches the formula.

# %%
M = 100_000
rank = torch.arange(1, M + 1, dtype=torch.float64)
for n in (2, 16, 64):
    p = (rank / M) ** n - ((rank - 1) / M) ** n
    exact = float((p * torch.log(p * M).nan_to_num(0.0)).sum())
    print(f"N={n:3d}  exact KL = {exact:.4f}   log N - (N-1)/N = {bon.bon_kl(n):.4f}")
    assert abs(exact - bon.bon_kl(n)) < 1e-3

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
# **Do proxy and gold part ways?** Over-optimisation of a learned reward (Gao et al. 2023) shows up as a proxy reward that keeps climbing with $N$ while the gold reward flattens or falls. Plotting one against the other makes it visible:

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
# What the quick profile shows, honestly (check the printed lines for your profile):
#
# * Under the **main reward model** (held-out accuracy about 0.88), best-of-N improves the gold reward at every step up to $N = 64$. Proxy and gold climb together: **no over-optimisation at this scale**. What does grow with $N$ is the distance to the oracle, because the model's ranking errors matter more the harder we select.
# * The **weak model** (256 pairs, accuracy about 0.66) shows how they part ways: its own scores of the winners are as high as the main model's, or higher, while their gold reward is far lower, and each doubling of $N$ buys it much less gold per unit of proxy. Its gold reward still rises up to $N = 64$ in this run, slowly; a real downturn would need more selection pressure or a worse proxy.
#
# Over-optimisation needs optimisation pressure, and 6 bits of selection ($N = 64$, KL 3.2 nats) is not much. Lecture 03 applies far more, with PPO against this same reward model.
#
# The course's headline numbers for this lecture: best-of-16 under the learned reward model (gold reward, analytic KL, win-rate and valid rate against $\pi_\text{ref}$) and the reward model's held-out accuracy.

# %%
alignlab.report(bon16, n=16, rm_accuracy=round(rm_acc, 4), ece=round(ece, 4), notebook="01_bradley_terry")

# %% [markdown]
# ## 12. Summary
#
# * Preference data is collected **pairwise** because comparisons cancel each rater's personal scale: from the same noisy raters, pairwise labels agreed with the gold ordering far more often than pointwise scores did.
# * **Bradley-Terry**: $P(y_1 \succ y_2) = \sigma(r_1 - r_2)$; its maximum-likelihood loss is $\mathrm{softplus}(r_r - r_c)$, which stays finite where $-\log\sigma$ overflows. Step 0: loss $\ln 2$, accuracy 1/2.
# * The **reward model** is the SFT transformer plus a scalar head read at the last real token. Trained on pairs of the SFT model's own samples, it orders held-out pairs as the gold judge does most of the time (accuracy printed above) and is roughly calibrated.
# * Label noise and small data cost accuracy; noise can be paid for with more data.
# * BT fixes rewards only up to an offset: **centre** them (post hoc on reference samples, or with the auxiliary term).
# * **Best-of-N** turns a reward model into a policy with a known KL, $\log N - (N-1)/N$. Under our reward model it helps at every $N$ up to 64, with no over-optimisation at this scale; a weak reward model scores its winners as highly but buys far less gold reward with them.
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
