# %% [markdown]
# # Exercises 07: group baselines and the GRPO loss
#
# **Objectives.** Write, and check, the three pieces that make RL for LLMs critic-free:
# 1. `rloo_advantages`: RLOO's leave-one-out advantage;
# 2. `group_advantages`: GRPO's group-normalised advantage;
# 3. `grpo_loss`: GRPO's per-token clipped loss with the $k_3$ KL term, averaged per completion;
#
# then measure what leaving the sample out buys, and train the tiny GPT-2 with **your** functions.
#
# **Prerequisites.** Lecture 07 (RLOO and GRPO); exercises 03 (PPO's clipped loss). PyTorch autograd.
#
# **Run time.** `quick` profile (2-core CPU): about 15 s once the SFT model is cached (the first notebook you run trains it, about a minute).
#
# **How this notebook works.** Write each exercise function's body where it says `# YOUR CODE HERE`. The cell after it runs hidden tests against the course's reference implementation and prints ✅, or ❌ with a hint about what is wrong. Later cells use your functions; they skip themselves until they are implemented. The last cell prints your score. Keep the functions' names: they are what gets graded.

# %%
import matplotlib.pyplot as plt
import torch

from alignlab.course.checks import check, ready, summary

# %% [markdown]
# ## 1. Exercise 1: the leave-one-out advantage
#
# Rewards come as a $(P, k)$ matrix: row $p$ holds the scores of the $k$ completions sampled for prompt $p$. RLOO's baseline for completion $i$ is the mean reward of the **other** $k - 1$ completions of the same prompt:
#
# $$ A_{p,i} = r_{p,i} - \frac{1}{k-1}\sum_{j \ne i} r_{p,j}. $$
#
# Write `rloo_advantages(rewards)`: a $(P, k)$ tensor in, a $(P, k)$ tensor out, with no gradient (advantages are constant weights of $\log\pi$). A group whose $k$ rewards are all equal must get advantage 0.

# %%
def rloo_advantages(rewards):
    """Leave-one-out advantages.

    rewards: (P, k) the rewards of the k completions of each of P prompts
    Returns (P, k), detached: each reward minus the mean of the other k - 1 of its row.
    """
    ### BEGIN SOLUTION
    ### HINT: the sum of the OTHER rewards of a row is rewards.sum(1, keepdim=True) - rewards; divide by k - 1; detach the rewards first.
    r = rewards.detach()
    k = r.shape[1]
    return r - (r.sum(1, keepdim=True) - r) / (k - 1)
    ### END SOLUTION

# %%
check("rloo_advantages", rloo_advantages)

# %% [markdown]
# ## 2. Exercise 2: the group-normalised advantage
#
# GRPO (Shao et al. 2024) subtracts the group's mean and divides by the group's (unbiased) standard deviation:
#
# $$ A_{p,i} = \frac{r_{p,i} - \text{mean}_j\, r_{p,j}}{\text{std}_j\, r_{p,j} + \epsilon}. $$
#
# Write `group_advantages(rewards, eps)`: $(P, k)$ in, $(P, k)$ out, detached. Mind the tied groups: their std is 0, so the formula divides the float rounding error of their mean by $\epsilon$; they must get exactly 0, never NaN.

# %%
def group_advantages(rewards, eps):
    """GRPO advantages: (r - group mean) / (group std + eps), per row.

    rewards: (P, k) the rewards of the k completions of each of P prompts
    eps:     added to the std
    Returns (P, k), detached; 0 for a group whose rewards are all equal.
    """
    ### BEGIN SOLUTION
    ### HINT: mean and std over dim=1 with keepdim=True (torch.std is unbiased by default); then torch.where(tied, 0, A) with tied = (r == r[:, :1]).all(1, keepdim=True).
    r = rewards.detach()
    tied = (r == r[:, :1]).all(1, keepdim=True)
    centred = torch.where(tied, torch.zeros_like(r), r - r.mean(1, keepdim=True))
    return centred / (r.std(1, keepdim=True) + eps)
    ### END SOLUTION

# %%
check("group_advantages", group_advantages)

# %% [markdown]
# Sanity values: every group's advantages sum to 0 (for both), and a tied group gets 0:

# %%
if ready("rloo_advantages", rloo_advantages) and ready("group_advantages", group_advantages):
    r = torch.tensor([[0.1, 0.9, 0.4, 0.6], [0.7, 0.7, 0.7, 0.7]])
    print("RLOO:", rloo_advantages(r), "\nGRPO:", group_advantages(r, 1e-4))
    print("row sums:", rloo_advantages(r).sum(1), group_advantages(r, 1e-4).sum(1))

# %% [markdown]
# ## 3. Question: what does leaving the sample out buy?
#
# Take one prompt whose answers are a single coin flip: reward 1 with probability $p$, else 0, under a policy with one parameter $\theta$, $p = \sigma(\theta)$. The true gradient of $\mathbb{E}[r]$ is $p(1-p)$, and $\nabla_\theta\log\pi(y) = y - p$. Estimate it with $k$ samples and the advantages of your `rloo_advantages`, and with the plain group mean as the baseline (the sample included).
#
# **Predict** before running: which estimator is unbiased, and by what factor is the other one off?

# %%
def coin_gradient(advantage, k, p=0.3, draws=200_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(draws, k, generator=g) < p).float()
    return (advantage(y) * (y - p)).mean(1).mean().item()

if ready("rloo_advantages", rloo_advantages):
    ks, p = [2, 3, 4, 8, 16], 0.3
    loo = [coin_gradient(rloo_advantages, k) / (p * (1 - p)) for k in ks]
    incl = [coin_gradient(lambda y: y - y.mean(1, keepdim=True), k) / (p * (1 - p)) for k in ks]
    plt.figure(figsize=(4.5, 3))
    plt.plot(ks, loo, "o-", label="leave-one-out (yours)"); plt.plot(ks, incl, "s-", label="group mean incl. itself")
    plt.plot(ks, [(k - 1) / k for k in ks], "k:", label="(k - 1) / k")
    plt.xlabel("k"); plt.ylabel("E[estimate] / true gradient"); plt.legend(fontsize=8); plt.tight_layout(); plt.show()
    print("leave-one-out:", [round(x, 3) for x in loo], "\nincluding itself:", [round(x, 3) for x in incl])

# %% [markdown]
# <!-- ### BEGIN SOLUTION -->
# *Answer.* Leave-one-out is unbiased at every $k$ (ratio 1): its baseline does not depend on the sample it judges, so $\mathbb{E}[b\,\nabla\log\pi(y)] = 0$. With the sample included, $r_i - \bar r = \frac{k-1}{k}\big(r_i - \bar r_{-i}\big)$, so the estimate is RLOO's shrunk by exactly $(k-1)/k$: half the gradient at $k = 2$. The direction is right, so a larger learning rate would absorb it, but the factor changes with $k$, and "the same learning rate" then means different steps for different group sizes.
# <!-- ### END SOLUTION -->

# %% [markdown]
# ## 4. Exercise 3: the GRPO loss
#
# GRPO applies PPO's clip **per token**, with the completion's advantage $A_i$ on each of its tokens, and adds the KL to the reference as a $k_3$ term in the loss: with $u_{i,t} = \log\pi_\text{ref} - \log\pi_\theta$ at token $t$ of completion $i$, $k_3 = e^{u} - u - 1$. The per-token losses are averaged over each completion's own tokens, then over completions:
#
# $$ \mathcal L = \frac1B\sum_i \frac{1}{|o_i|}\sum_{t \in o_i}\Big[-\min\big(\rho_{i,t}A_i,\ \mathrm{clip}(\rho_{i,t}, 1-\epsilon, 1+\epsilon)A_i\big) + \beta\,k_3(i,t)\Big], \qquad \rho_{i,t} = e^{\log\pi_\theta - \log\pi_\text{old}}. $$
#
# Write `grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, clip_eps, beta)`. `logprobs`, `old_logprobs`, `ref_logprobs` and `mask` are $(B, T)$ (mask 1 on completion tokens; padding may hold junk), `advantages` is $(B,)$; only `logprobs` carries the gradient. Return a scalar.

# %%
def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, clip_eps, beta):
    """GRPO loss: per-token PPO-clip on the completion's advantage + beta * k3, per-completion mean.

    logprobs:     (B, T) log pi_theta of the sampled tokens (with gradient)
    old_logprobs: (B, T) log pi_old at sampling time (a constant)
    ref_logprobs: (B, T) log pi_ref (a constant)
    advantages:   (B,) one advantage per completion (a constant)
    mask:         (B, T) 1 on completion tokens, 0 on padding
    clip_eps:     epsilon of the clip; beta: weight of the k3 term
    Returns a scalar tensor.
    """
    ### BEGIN SOLUTION
    ### HINT: zero the padding with torch.where(mask.bool(), ..., 0) before exp; ratio = exp(logprobs - old.detach()); u = ref.detach() - logprobs; per token -min(ratio*A, clamp(ratio)*A) + beta*(exp(u) - u - 1) with A = advantages[:, None]; then (per_token * mask).sum(1) / mask.sum(1), and the mean.
    valid = mask.bool()
    zeros = torch.zeros_like(logprobs)
    ratio = torch.exp(torch.where(valid, logprobs - old_logprobs.detach(), zeros))
    adv = advantages.detach()[:, None]
    policy_term = -torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    u = torch.where(valid, ref_logprobs.detach() - logprobs, zeros)
    per_token = torch.where(valid, policy_term + beta * (torch.exp(u) - u - 1), zeros)
    return (per_token.sum(1) / mask.sum(1)).mean()
    ### END SOLUTION

# %%
check("grpo_loss", grpo_loss)

# %% [markdown]
# ## 5. Train the tiny GPT-2 with your functions
#
# Lecture 07's loop (`grpo.train_group`: 12 prompts a step, $k = 4$ completions each, scored by the gold judge, two passes of minibatch updates) takes the advantage and the loss as arguments. Here they are **yours**. 20 steps, 960 sampled completions:

# %%
from alignlab.evaluation import Evaluator
from alignlab.methods import grpo, rl
from alignlab.models import get_profile, seed_everything
from alignlab.pipeline import load_sft
from alignlab.plots import dashboard

profile = get_profile()
sft, tok = load_sft(profile)
config = grpo.GRPOConfig.for_profile(profile, steps=20)
if ready("group_advantages", group_advantages) and ready("grpo_loss", grpo_loss):
    seed_everything(0)
    policy = rl.new_policy(sft)
    evaluator = Evaluator(sft, tok, profile=profile)
    history = grpo.train_group(policy, sft, tok, config, evaluator, name="GRPO with your functions",
                               advantage_fn=lambda r: group_advantages(r, config.eps), loss_fn=grpo_loss)
    dashboard(history, extra=("clipfrac",)); plt.show()
    print({k: round(history.rows[0][k], 3) for k in history.final()}, "->", history.final())

# %% [markdown]
# A correct pair learns within a few steps: gold reward and win-rate rise, and the KL grows from 0. A wrong sign makes the curves fall; an advantage that includes the sample in its baseline learns more slowly; a KL term with the wrong sign lets the KL run away.

# %%
### BEGIN HIDDEN TESTS
assert history.last("win_rate") >= 0.65, history.final()
assert history.last("gold_reward") >= history.rows[0]["gold_reward"] + 0.3, history.final()
assert history.rows[1]["ratio_mean"] > 0.99 and history.rows[1]["clipfrac"] < 0.05
### END HIDDEN TESTS

# %% [markdown]
# ## 6. Your score

# %%
summary("07_rloo_grpo")
### BEGIN HIDDEN TESTS
from alignlab.course.checks import all_passed

assert all_passed("07_rloo_grpo"), "a reference solution fails its own check"
### END HIDDEN TESTS
