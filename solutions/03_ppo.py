# %% [markdown]
# # Exercises 03: PPO's clipped policy loss and clipped value loss
#
# **Objectives.** Write, and check, the two losses of a PPO update over a padded batch of tokens:
# 1. `ppo_clip_loss`: the clipped surrogate policy loss;
# 2. `value_loss_clipped`: the clipped value-function loss;
#
# then see what clipping does, and does not do, when many gradient steps are taken on the same batch.
#
# **Prerequisites.** Lecture 03 (PPO-clip RLHF) and exercises 02 (GAE). PyTorch autograd.
#
# **Run time.** A few seconds on any machine: no model is trained.
#
# **How this notebook works.** Write each exercise function's body where it says `# YOUR CODE HERE`. The cell after it runs hidden tests against the course's reference implementation and prints ✅, or ❌ with a hint about what is wrong. Later cells use your functions; they skip themselves until they are implemented. The last cell prints your score. Keep the functions' names: they are what gets graded.

# %%
import matplotlib.pyplot as plt
import torch

from alignlab.course.checks import check, ready, summary

# %% [markdown]
# ## 1. Exercise 1: the clipped policy loss
#
# PPO (Schulman et al. 2017, eq. 7) reuses each batch of sampled tokens for several gradient steps. Token $t$ was sampled by the old policy; the new one makes it $\rho_t = \pi_\text{new}(a_t|s_t) / \pi_\text{old}(a_t|s_t)$ times as likely. The clipped surrogate objective is pessimistic: it takes the smaller of the plain and the clipped improvement,
#
# $$ L^\text{CLIP} = \operatorname{mean}_t \; \min\big(\rho_t \hat A_t,\; \operatorname{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\, \hat A_t\big), $$
#
# which PPO **maximises**; the loss to minimise is $-L^\text{CLIP}$.
#
# Write `ppo_clip_loss(logprobs, old_logprobs, advantages, mask, clip_eps)`. All tensors are `(B, T)`; `logprobs` carries the gradient, `old_logprobs` and `advantages` are constants from the rollout (detach them). Return a scalar: the mean over **valid tokens** (mask = 1) of the whole batch; padding positions may hold junk and must not count.

# %%
def ppo_clip_loss(logprobs, old_logprobs, advantages, mask, clip_eps):
    """PPO clipped surrogate loss (to minimise), token-level mean over valid tokens.

    logprobs:     (B, T) log pi_new of the sampled tokens (with gradient)
    old_logprobs: (B, T) log pi_old recorded at rollout time (a constant)
    advantages:   (B, T) advantage estimates (a constant)
    mask:         (B, T) 1 on valid tokens, 0 on padding
    clip_eps:     epsilon of the clip range [1 - eps, 1 + eps]
    Returns a scalar tensor.
    """
    ### BEGIN SOLUTION
    ### HINT: ratio = exp(logprobs - old_logprobs.detach()), computed only where mask is 1 (torch.where); per-token loss = max(-A * ratio, -A * clamp(ratio, 1 - eps, 1 + eps)); then sum(loss * mask) / mask.sum().
    valid = mask.bool()
    log_ratio = torch.where(valid, logprobs - old_logprobs.detach(), torch.zeros_like(logprobs))
    ratio = torch.exp(log_ratio)
    adv = torch.where(valid, advantages.detach(), torch.zeros_like(advantages))
    per_token = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps))
    return (per_token * mask).sum() / mask.sum()
    ### END SOLUTION

# %%
check("ppo_clip_loss", ppo_clip_loss)

# %% [markdown]
# ## 2. Exercise 2: the clipped value loss
#
# The value head is trained by regression on the returns $R_t$ of GAE, and PPO implementations clip it too (OpenAI baselines' `ppo2`, TRL's PPO trainer): the new prediction $V_t$ may not move further than $\epsilon$ from the prediction $V^\text{old}_t$ made at rollout time without the loss noticing,
#
# $$ V^\text{clip}_t = V^\text{old}_t + \operatorname{clip}(V_t - V^\text{old}_t, -\epsilon, \epsilon), \qquad \mathcal L^V = \tfrac12 \operatorname{mean}_t \max\big((V_t - R_t)^2, (V^\text{clip}_t - R_t)^2\big). $$
#
# Write `value_loss_clipped(values, old_values, returns, mask, clip_eps)`: `(B, T)` tensors, only `values` carries the gradient, a scalar out (the mean over valid tokens).

# %%
def value_loss_clipped(values, old_values, returns, mask, clip_eps):
    """Clipped value loss: 0.5 * mean over valid tokens of max((V - R)^2, (V_clip - R)^2).

    values:     (B, T) current value predictions (with gradient)
    old_values: (B, T) predictions recorded at rollout time (a constant)
    returns:    (B, T) regression targets (a constant)
    mask:       (B, T) 1 on valid tokens, 0 on padding
    clip_eps:   how far V may move from old_values
    Returns a scalar tensor.
    """
    ### BEGIN SOLUTION
    ### HINT: zero everything at padding first (torch.where); V_clip = old + clamp(V - old, -eps, eps); take the elementwise max of the two squared errors, then 0.5 * masked mean.
    valid = mask.bool()
    zeros = torch.zeros_like(values)
    v = torch.where(valid, values, zeros)
    old = torch.where(valid, old_values.detach(), zeros)
    ret = torch.where(valid, returns.detach(), zeros)
    v_clip = old + torch.clamp(v - old, -clip_eps, clip_eps)
    per_token = torch.max((v - ret) ** 2, (v_clip - ret) ** 2)
    return 0.5 * (per_token * mask).sum() / mask.sum()
    ### END SOLUTION

# %%
check("value_loss_clipped", value_loss_clipped)

# %% [markdown]
# Sanity numbers at the first minibatch of an update, when the new policy is still the old one: $\rho = 1$ everywhere, so the policy loss is $-\operatorname{mean}(\hat A)$, and the value loss is plain $\frac12 \operatorname{mean}(V - R)^2$.

# %%
if ready("ppo_clip_loss", ppo_clip_loss) and ready("value_loss_clipped", value_loss_clipped):
    lp, adv, v, ret = torch.randn(2, 5) - 3, torch.randn(2, 5), torch.randn(2, 5), torch.randn(2, 5)
    ones = torch.ones(2, 5)
    print(ppo_clip_loss(lp, lp, adv, ones, 0.2).item(), -adv.mean().item())
    print(value_loss_clipped(v, v, ret, ones, 0.2).item(), 0.5 * ((v - ret) ** 2).mean().item())

# %% [markdown]
# ## 3. Question: does clipping stop the policy from moving?
#
# A tiny "policy": 32 tokens, each sampled from its own softmax over 5 actions, each with an advantage of $+1$ or $-1$. We take 40 gradient steps on this **one** batch with your `ppo_clip_loss` and follow the ratio $\rho$ of the sampled tokens.
#
# **Predict** before running: with plain gradient descent and $\epsilon = 0.2$, where does the mean ratio of the $+1$ tokens end up? Of the $-1$ tokens? And without clipping? Then the twist: what changes with Adam, the optimiser every PPO implementation uses?
#
# <!-- ### BEGIN SOLUTION -->
# *Answer.* With gradient descent and clipping, the ratios stop just past $1 + \epsilon = 1.2$ and $1 - \epsilon = 0.8$: once a token's ratio leaves the clip range on the side its advantage favours, the clipped term wins the max and its gradient is exactly 0. Without clipping nothing stops them. With Adam they overshoot well past the range: clipping only **zeroes the gradient**, it does not pull the policy back, and Adam's momentum keeps moving it for a while. This is why PPO logs `clipfrac` and `approx_kl` and stops an update early (or uses few epochs and a small learning rate): the clip is not a hard trust region (lecture 03 compares it with TRPO's).
# <!-- ### END SOLUTION -->

# %%
g = torch.Generator().manual_seed(0)
init_logits = torch.randn(4, 8, 5, generator=g)                       # (B, T, actions)
actions = torch.multinomial(init_logits.softmax(-1).view(-1, 5), 1, generator=g).view(4, 8)
advantages, mask = torch.randn(4, 8, generator=g).sign(), torch.ones(4, 8)
old_logprobs = torch.log_softmax(init_logits, -1).gather(-1, actions[..., None]).squeeze(-1)

def ratios_during_training(clip_eps, optimizer, lr, steps=40):
    logits = init_logits.clone().requires_grad_(True)
    opt = optimizer([logits], lr=lr)
    up, down = [], []
    for _ in range(steps):
        logprobs = torch.log_softmax(logits, -1).gather(-1, actions[..., None]).squeeze(-1)
        loss = ppo_clip_loss(logprobs, old_logprobs, advantages, mask, clip_eps)
        opt.zero_grad(); loss.backward(); opt.step()
        ratio = (logprobs - old_logprobs).exp().detach()
        up.append(ratio[advantages > 0].mean().item()); down.append(ratio[advantages < 0].mean().item())
    return up, down

# %%
runs = {"SGD, ε = 0.2": (0.2, torch.optim.SGD, 1.0), "SGD, no clipping (ε = 100)": (100.0, torch.optim.SGD, 1.0),
        "Adam, ε = 0.2": (0.2, torch.optim.Adam, 0.05)}
if ready("ppo_clip_loss", ppo_clip_loss):
    results = {name: ratios_during_training(*args) for name, args in runs.items()}
    for name, (up, down) in results.items():
        line, = plt.plot(up, label=name)
        plt.plot(down, color=line.get_color())
    for y in (0.8, 1.2):
        plt.axhline(y, ls="--", c="grey", lw=0.8)
    plt.xlabel("gradient step on the same batch"); plt.ylabel("mean ratio (A = +1 above, A = -1 below)")
    plt.legend(); plt.show()
    print({name: (round(up[-1], 2), round(down[-1], 2)) for name, (up, down) in results.items()})

# %%
### BEGIN HIDDEN TESTS
up, down = results["SGD, ε = 0.2"]
assert 1.2 <= up[-1] < 1.3 and 0.7 < down[-1] <= 0.8, (up[-1], down[-1])
assert results["SGD, no clipping (ε = 100)"][0][-1] > 2 and results["Adam, ε = 0.2"][0][-1] > 1.5
### END HIDDEN TESTS

# %% [markdown]
# ## 4. Your score

# %%
summary("03_ppo")
### BEGIN HIDDEN TESTS
from alignlab.course.checks import all_passed

assert all_passed("03_ppo"), "a reference solution fails its own check"
### END HIDDEN TESTS
