# %% [markdown]
# # Exercises 02: returns and GAE over a padded batch
#
# **Objectives.** Write, and check, the two functions that turn per-token rewards into the targets of a policy-gradient update:
# 1. `discounted_returns`: the reward-to-go $G_t$ of every token of a padded batch;
# 2. `compute_gae`: the generalized advantage estimates $\hat A_t$ and the value targets;
#
# then see how $\lambda$ carries a sequence-level score back to the early tokens, and what it costs in variance.
#
# **Prerequisites.** Lecture 02 (policy gradients, value head, GAE). PyTorch tensors and broadcasting.
#
# **Run time.** A few seconds on any machine: no model is trained.
#
# **How this notebook works.** Each exercise is a function; write its body where it says `# YOUR CODE HERE`. The cell after it runs hidden tests against the course's reference implementation and prints ✅, or ❌ with a hint about what is wrong. The last cell prints your score. Your instructor grades the functions as they are when the notebook ends, so keep their names.

# %%
import matplotlib.pyplot as plt
import torch

from alignlab.course.checks import check, ready, summary

# %% [markdown]
# ## 1. A padded batch
#
# In RLHF a "trajectory" is a sampled completion, one action per token. Completions have different lengths, so they are stored in a padded `(B, T)` batch with a **mask**: 1 on completion tokens, 0 on padding. Prompts are left-padded, and tokens after `<eos>` are padding too, so each row's valid tokens form one contiguous run that can start and end anywhere. The reward model's score arrives on the last valid token of each row:

# %%
mask = torch.tensor([[1, 1, 1, 1, 1, 1],
                     [0, 0, 1, 1, 1, 1],
                     [0, 1, 1, 1, 0, 0]]).float()
rewards = torch.zeros(3, 6)
rewards[0, 5], rewards[1, 5], rewards[2, 3] = 1.0, -1.0, 0.5   # the score, on each row's last valid token
print(mask)

# %% [markdown]
# ## 2. Exercise 1: discounted returns
#
# The return (reward-to-go) of token $t$ is the discounted sum of the rewards from $t$ to the end of its row:
#
# $$ G_t = r_t + \gamma\, G_{t+1}, \qquad G = 0 \text{ after the last valid token.} $$
#
# Write `discounted_returns(rewards, mask, gamma)`. It returns a `(B, T)` tensor, 0 at padding. Padding may hold any (finite) junk: it must neither count nor leak into valid positions. Vectorise over the batch; a Python loop over the time steps is fine (it must run **backwards**).

# %%
def discounted_returns(rewards, mask, gamma):
    """Reward-to-go of every token of a padded batch.

    rewards: (B, T) per-token rewards (junk at padding positions)
    mask:    (B, T) 1 on valid tokens (one contiguous run per row), 0 on padding
    gamma:   discount in [0, 1]
    Returns G: (B, T), G_t = r_t + gamma * G_{t+1} inside each row's run, 0 at padding.
    """
    ### BEGIN SOLUTION
    ### HINT: keep a running return per row (shape (B,)), loop t from T-1 down to 0, and multiply by mask[:, t] so padding adds nothing and stays 0.
    mask = mask.to(rewards.dtype)
    G = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for t in reversed(range(rewards.shape[1])):
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        G[:, t] = running
    return G
    ### END SOLUTION

# %%
check("discounted_returns", discounted_returns)

# %% [markdown]
# With $\gamma = 1$ every token of a row gets the row's final score: the whole completion shares the credit.

# %%
if ready("discounted_returns", discounted_returns):
    print(discounted_returns(rewards, mask, gamma=1.0))

# %% [markdown]
# ## 3. Exercise 2: generalized advantage estimation
#
# A value head predicts $V_t$, the expected return from token $t$. GAE (Schulman et al. 2016, arXiv:1506.02438, eq. 16) mixes TD errors with weights $(\gamma\lambda)^k$:
#
# $$ \delta_t = r_t + \gamma\, V_{t+1} - V_t, \qquad \hat A_t = \delta_t + \gamma \lambda\, \hat A_{t+1}, \qquad \text{returns}_t = \hat A_t + V_t, $$
#
# where $V$ and $\hat A$ after a row's last valid token are 0 (the episode has ended). The returns are the value head's regression targets.
#
# Write `compute_gae(rewards, values, mask, gamma, lam)` returning the pair `(advantages, returns)`, both `(B, T)` and 0 at padding. Both are **targets**: no gradient may flow through them, even when `values` comes straight from the value head with `requires_grad=True`.

# %%
def compute_gae(rewards, values, mask, gamma, lam):
    """GAE over a padded batch.

    rewards, values: (B, T) (junk at padding positions); mask: (B, T) 1 on valid tokens
    gamma, lam: discount and GAE lambda, in [0, 1]
    Returns (advantages, returns): (B, T) each, 0 at padding, without gradient.
    """
    ### BEGIN SOLUTION
    ### HINT: work under torch.no_grad(); zero rewards and values at padding first; loop t backwards carrying next_value and next_advantage (both (B,)); multiply each A_t by mask[:, t].
    with torch.no_grad():
        m = mask.to(rewards.dtype)
        r, v = rewards * m, values * m
        advantages = torch.zeros_like(r)
        next_value = torch.zeros(r.shape[0], dtype=r.dtype)
        next_adv = torch.zeros(r.shape[0], dtype=r.dtype)
        for t in reversed(range(r.shape[1])):
            delta = r[:, t] + gamma * next_value - v[:, t]
            next_adv = (delta + gamma * lam * next_adv) * m[:, t]
            advantages[:, t] = next_adv
            next_value = v[:, t]
        return advantages, (advantages + v) * m
    ### END SOLUTION

# %%
check("compute_gae", compute_gae)

# %% [markdown]
# ## 4. Question: how far back does the final score reach?
#
# In RLHF the reward model scores the whole completion, so the only reward sits on the **last** token. At the start of training the value head knows nothing ($V = 0$).
#
# **Predict** before running the next cell: with $\gamma = 1$ and $V = 0$, which tokens of a 12-token completion get a non-zero advantage when $\lambda = 0$? When $\lambda = 1$? When $\lambda = 0.9$?
#
# <!-- ### BEGIN SOLUTION -->
# *Answer.* With $\lambda = 0$ the advantage is the one-step TD error $r_t + V_{t+1} - V_t$, which is 0 everywhere except on the last token: the early tokens learn nothing until the value head has learned to predict the score. With $\lambda = 1$ the advantage is the Monte-Carlo return minus $V$, so every token gets the full score at once. In between, the credit decays like $\lambda^{k}$ with the distance $k$ to the end ($0.9^{11} \approx 0.31$ for the first token).
# <!-- ### END SOLUTION -->

# %%
T = 12
final_score = torch.zeros(1, T)
final_score[0, -1] = 1.0
if ready("compute_gae", compute_gae):
    for lam in [0.0, 0.5, 0.9, 1.0]:
        adv, _ = compute_gae(final_score, torch.zeros(1, T), torch.ones(1, T), gamma=1.0, lam=lam)
        plt.plot(adv[0], "o-", label=f"λ = {lam}")
    plt.xlabel("token t"); plt.ylabel("advantage Â_t"); plt.legend(); plt.title("a score of 1 on the last token, V = 0")
    plt.show()

# %% [markdown]
# ## 5. Question: what does a large λ cost?
#
# Rewards in RLHF are noisy on every token (the per-token KL penalty is a random quantity). Take 4000 completions of 16 tokens whose per-token rewards are pure noise, $r_t \sim \mathcal N(0, 0.3^2)$, so the exact value function is $V = 0$ and the true advantage is 0.
#
# **Predict:** how does the spread (standard deviation) of the first token's advantage $\hat A_0$ change as $\lambda$ goes from 0 to 1?
#
# <!-- ### BEGIN SOLUTION -->
# *Answer.* It grows. $\hat A_0 = \sum_k (\gamma\lambda)^k \delta_k$ sums more and more noisy TD errors as $\lambda \to 1$: here its variance is $0.3^2 \sum_k \lambda^{2k}$, so its standard deviation (the plotted quantity) is $0.3\,(\sum_k \lambda^{2k})^{1/2}$: from $0.3$ at $\lambda = 0$ to $0.3 \sqrt{16} = 1.2$ at $\lambda = 1$. A small $\lambda$ trades this variance for bias: it trusts the value head, which is wrong early in training (section 4). $\lambda \approx 0.95$ is the usual compromise.
# <!-- ### END SOLUTION -->

# %%
noise = 0.3 * torch.randn(4000, 16, generator=torch.Generator().manual_seed(0))
lams = [0.0, 0.25, 0.5, 0.75, 0.9, 1.0]
if ready("compute_gae", compute_gae):
    spread = [compute_gae(noise, torch.zeros_like(noise), torch.ones_like(noise), 1.0, lam)[0][:, 0].std().item()
              for lam in lams]
    theory = [0.3 * sum(lam ** (2 * k) for k in range(16)) ** 0.5 for lam in lams]
    plt.plot(lams, spread, "o-", label="measured"); plt.plot(lams, theory, "k--", label="0.3·sqrt(Σ λ^2k)")
    plt.xlabel("λ"); plt.ylabel("std of Â_0"); plt.legend(); plt.show()

# %% [markdown]
# ## 6. Your score
#
# Run this last cell to see where you stand (every check cell above must have run).

# %%
summary("02_gae")
### BEGIN HIDDEN TESTS
from alignlab.course.checks import all_passed

assert all_passed("02_gae"), "a reference solution fails its own check"
assert abs(spread[0] - theory[0]) < 0.02 and abs(spread[-1] - theory[-1]) < 0.1, (spread, theory)
### END HIDDEN TESTS
