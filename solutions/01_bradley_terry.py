# %% [markdown]
# # Exercises 01: the Bradley-Terry loss and reward-model accuracy
#
# **Objectives.** Write, and check,
# 1. `bt_loss`: the Bradley-Terry loss every reward model is trained with, in a form that never overflows;
# 2. `rm_accuracy`: the pairwise accuracy every reward model is judged by;
#
# then train a small reward model with **your** loss and find out what a model that only counts words cannot learn.
#
# **Prerequisites.** Lecture 01 (preference data, the Bradley-Terry model). PyTorch autograd.
#
# **Run time.** About 15 s on a 2-core CPU, any profile: the reward model here is tiny and needs no GPT-2.
#
# **How this notebook works.** Write each exercise function's body where it says `# YOUR CODE HERE`. The cell after it runs hidden tests against the course's reference implementation and prints ✅, or ❌ with a hint about what is wrong. Later cells use your functions; they skip themselves until they are implemented. The last cell prints your score. Keep the functions' names: they are what gets graded.

# %%
import random

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from alignlab.course.checks import check, ready, summary

# %% [markdown]
# ## 1. Exercise 1: the Bradley-Terry loss
#
# A reward model $r_\phi(x, y)$ gives each completion a score. Bradley-Terry says a human prefers $y_c$ to $y_r$ with probability $\sigma(r_c - r_r)$, so the reward model is fit by maximum likelihood on preference pairs (Ouyang et al. 2022, arXiv:2203.02155, eq. 1):
#
# $$ \mathcal L = \operatorname{mean}_i \; -\log \sigma\big(r_\phi(x_i, y_{c,i}) - r_\phi(x_i, y_{r,i})\big). $$
#
# Write `bt_loss(r_chosen, r_rejected)`: the inputs are `(B,)` rewards (with gradient), the output a scalar tensor, the mean over the pairs. It must stay finite (and keep a finite gradient) for any reward gap, even $-200$.

# %%
def bt_loss(r_chosen, r_rejected):
    """Bradley-Terry loss: mean_i -log sigmoid(r_chosen_i - r_rejected_i).

    r_chosen, r_rejected: (B,) rewards of the preferred and of the other completion
    Returns a scalar tensor (keep it in the autograd graph).
    """
    ### BEGIN SOLUTION
    ### HINT: one line; -log(sigmoid(x)) overflows for very negative x, but -F.logsigmoid(x) does not.
    return -F.logsigmoid(r_chosen - r_rejected).mean()
    ### END SOLUTION

# %%
check("bt_loss", bt_loss)

# %% [markdown]
# ## 2. Question: why not write `-torch.log(torch.sigmoid(x))`?
#
# **Predict** before running: in float32, what do the textbook formula and your `bt_loss` give for a pair the reward model gets badly wrong, $r_c - r_r = -200$? And their gradients?
#
# <!-- ### BEGIN SOLUTION -->
# *Answer.* The exact loss is $-\log\sigma(-200) = \log(1 + e^{200}) \approx 200$ with gradient $-1$. In float32, $\sigma(-200) = e^{-200}/(1 + e^{-200})$ underflows to exactly 0, so the textbook formula returns $-\log 0 = \infty$ and a NaN gradient, which would poison every weight at the next optimiser step. `F.logsigmoid` (like `F.softplus(-x)`) computes $-\log(1 + e^{-x})$ in a way that never forms the tiny number, so it returns 200 and a gradient of $-1$.
# <!-- ### END SOLUTION -->

# %%
gap = torch.tensor([-200.0], requires_grad=True)
naive = -torch.log(torch.sigmoid(gap)).mean()
naive.backward()
print(f"textbook formula: loss = {naive.item()}, gradient = {gap.grad.item()}")
if ready("bt_loss", bt_loss):
    gap.grad = None
    yours = bt_loss(gap, torch.zeros(1))
    yours.backward()
    print(f"your bt_loss:     loss = {yours.item()}, gradient = {gap.grad.item()}")

# %% [markdown]
# ## 3. Exercise 2: pairwise accuracy
#
# A reward model is judged by how often it orders a held-out pair the way the label says: the fraction of pairs with $r_c > r_r$. A **tie** ($r_c = r_r$, e.g. a constant reward model) is a coin flip and counts 1/2, so an untrained model scores exactly 0.5.
#
# Write `rm_accuracy(r_chosen, r_rejected)`: `(B,)` rewards in (they may require grad), one number in $[0, 1]$ out (a Python float or a 0-d tensor).

# %%
def rm_accuracy(r_chosen, r_rejected):
    """Fraction of pairs ordered correctly, r_chosen > r_rejected; a tie counts 1/2.

    r_chosen, r_rejected: (B,) rewards
    Returns a float (or 0-d tensor) in [0, 1].
    """
    ### BEGIN SOLUTION
    ### HINT: compare under torch.no_grad(): wins = (r_chosen > r_rejected).float(), ties = (r_chosen == r_rejected).float(); average wins + ties / 2.
    with torch.no_grad():
        wins = (r_chosen > r_rejected).float()
        ties = (r_chosen == r_rejected).float()
        return (wins + 0.5 * ties).mean().item()
    ### END SOLUTION

# %%
check("rm_accuracy", rm_accuracy)

# %% [markdown]
# ## 4. Train a reward model with your loss
#
# The simplest reward model that can learn sentiment gives every word of the review world a learned score and averages the scores of the completion's words: a **bag of words** (`torch.nn.EmbeddingBag` with one output). No GPT-2 is needed, so it trains in a second.
#
# The data: 2500 pairs of reviews from the world's grammar, labelled by the course's noisy Bradley-Terry annotator (temperature 0.1), 2000 to train and 500 held out.

# %%
from alignlab import data, world
from alignlab.training import History, train

rng = random.Random(0)
reviews = [world.split_review(world.sample_review(rng)) for _ in range(5000)]
prompts, first, second = [p for p, _ in reviews[:2500]], [c for _, c in reviews[:2500]], [c for _, c in reviews[2500:]]
pairs = data.annotate_pairs(prompts, first, second, temperature=0.1, seed=0)
print(pairs[0])

# %% [markdown]
# Each completion becomes a bag of word ids; the reward is the mean learned score of its words. All scores start at 0.

# %%
vocab = {word: i for i, word in enumerate(world.vocabulary())}
torch.manual_seed(0)
reward_model = torch.nn.EmbeddingBag(len(vocab), 1, mode="mean")
torch.nn.init.zeros_(reward_model.weight)

bags = {}                                                   # completion -> its word ids, made once

def rewards(completions):
    """(B,) rewards of a list of completions."""
    ids = [bags.setdefault(c, torch.tensor([vocab[w] for w in c.split()])) for c in completions]
    offsets = torch.tensor([0] + [len(x) for x in ids[:-1]]).cumsum(0)
    return reward_model(torch.cat(ids), offsets).squeeze(-1)

# %% [markdown]
# The training step uses **your** `bt_loss` on a batch of 256 training pairs; every 10 steps it measures, with **your** `rm_accuracy`, the held-out accuracy against the annotator's labels and against the gold judge (on pairs the judge separates by more than 0.2). The shared `train` loop runs it.

# %%
cols = pairs.to_dict()                                       # plain Python lists: fast to index
C, R, gold_c, gold_r = cols["chosen"], cols["rejected"], cols["gold_chosen"], cols["gold_rejected"]
test = range(2000, 2500)
clear = [i for i in test if abs(gold_c[i] - gold_r[i]) > 0.2]               # the gold judge decides these
gold_win = [C[i] if gold_c[i] > gold_r[i] else R[i] for i in clear]
gold_lose = [R[i] if gold_c[i] > gold_r[i] else C[i] for i in clear]
opt, gen = torch.optim.Adam(reward_model.parameters(), lr=0.05), torch.Generator().manual_seed(0)

def step_fn(step):
    rows = torch.randint(0, 2000, (256,), generator=gen).tolist()
    loss = bt_loss(rewards([C[i] for i in rows]), rewards([R[i] for i in rows]))
    opt.zero_grad(); loss.backward(); opt.step()
    if step % 10 and step > 1:
        return {"loss": loss.item()}
    with torch.no_grad():
        heldout = rm_accuracy(rewards([C[i] for i in test]), rewards([R[i] for i in test]))
        gold = rm_accuracy(rewards(gold_win), rewards(gold_lose))
    return {"loss": loss.item(), "heldout_accuracy": float(heldout), "gold_accuracy": float(gold)}

# %%
if ready("bt_loss", bt_loss) and ready("rm_accuracy", rm_accuracy):
    history = train(reward_model, step_fn, n_steps=150, history=History("bag of words"), desc="reward model")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    axes[0].plot(*history.series("loss")); axes[0].axhline(0.6931, ls="--", c="grey"); axes[0].set_title("bt_loss (train batches)")
    for key in ["heldout_accuracy", "gold_accuracy"]:
        axes[1].plot(*history.series(key), "o-", label=key)
    axes[1].axhline(0.5, ls="--", c="grey"); axes[1].legend(); axes[1].set_title("accuracy (held-out pairs)")
    for ax in axes: ax.set_xlabel("step")
    plt.tight_layout(); plt.show()
    print({k: round(history.last(k), 3) for k in ["loss", "heldout_accuracy", "gold_accuracy"]})

# %% [markdown]
# The words it learned to like and dislike: sentiment words at both ends, with no one telling it which words carry sentiment.

# %%
if ready("bt_loss", bt_loss):
    words, scores = list(vocab), reward_model.weight.detach().squeeze(-1)
    order = scores.argsort()
    print("most liked:   ", [words[i] for i in order[-8:].flip(0)])
    print("most disliked:", [words[i] for i in order[:8]])

# %% [markdown]
# ## 5. Question: what can a bag of words not learn?
#
# **Predict** before running: the gold judge scores *"was not bad ."* above *"was not good ."*. Does our reward model? Can any bag-of-words model get both pairs, (*good* ≻ *bad*) and (*not bad* ≻ *not good*), right?
#
# <!-- ### BEGIN SOLUTION -->
# *Answer.* No. A bag of words scores *"was not bad ."* minus *"was not good ."* as $w_\text{bad} - w_\text{good}$, exactly what it scores *"was bad ."* minus *"was good ."*, so it gets one of the two pairs wrong whatever its weights. Negation is about word **order** and context: that is why real reward models are transformers (lecture 01 trains the GPT-2 one), and why our held-out accuracy against the gold judge stays well below 1.
# <!-- ### END SOLUTION -->

# %%
tests = ["was good .", "was bad .", "was not good .", "was not bad ."]
if ready("bt_loss", bt_loss):
    with torch.no_grad():
        scores = rewards(tests)
    for text, s in zip(tests, scores):
        print(f"{text:16s} reward model {s.item():+.3f}   gold judge {world.gold_reward('the acting', text):+.3f}")

# %%
### BEGIN HIDDEN TESTS
assert history.last("gold_accuracy") >= 0.7 and history.last("heldout_accuracy") >= 0.62, history.rows[150]
assert abs(history.rows[1]["loss"] - 0.6931) < 1e-4  # step 1: every review scores 0
### END HIDDEN TESTS

# %% [markdown]
# ## 6. Your score

# %%
summary("01_bradley_terry")
### BEGIN HIDDEN TESTS
from alignlab.course.checks import all_passed

assert all_passed("01_bradley_terry"), "a reference solution fails its own check"
### END HIDDEN TESTS
