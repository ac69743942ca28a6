# %% [markdown]
# # Lecture 02: policy gradients, value functions and GAE
#
# **Objectives.** By the end of this notebook you can
# 1. map reinforcement learning's state, action, policy, episode and reward onto a language model writing a completion;
# 2. derive the REINFORCE gradient estimator and train the tiny GPT-2 with it;
# 3. explain why a baseline lowers the variance of the gradient estimate without biasing it, and measure the drop;
# 4. add a value head to the GPT-2, compute TD errors and GAE($\gamma$, $\lambda$) from them, and check that $\lambda=0$ is one-step TD and $\lambda=1$ the Monte-Carlo return minus the value;
# 5. measure GAE's bias/variance trade-off on real rollouts against Monte-Carlo ground truth;
# 6. train an actor-critic with GAE advantages and a KL penalty to the reference, on the shared dashboard.
#
# **Prerequisites.** Lecture 00 (the review world, the gold judge, the shared evaluation). Expectations, gradients, `torch.autograd`.
#
# **Run time.** `quick` profile (2-core CPU, SFT model cached): 25 s (measured under nbval on an idle 2-core machine). `full` profile (one GPU): not measured yet (no GPU was available when this course was built).
#
# **On purpose**, this lecture optimises the **gold judge itself**. Real RLHF optimises a *learned* reward model (lecture 03); here the reward is perfect, so everything that goes right or wrong is the RL machinery's doing.

# %% [markdown]
# ## 1. Set-up
#
# The SFT model from lecture 00 is the reference policy $\pi_\text{ref}$ (trained and cached on first use). `PGConfig` holds every setting of this lecture, sized for the profile.

# %%
import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

import alignlab
from alignlab import world
from alignlab.evaluation import Evaluator
from alignlab.losses import compute_gae, masked_mean
from alignlab.methods import pg, rl
from alignlab.models import get_device, get_profile, seed_everything
from alignlab.pipeline import load_sft
from alignlab.plots import dashboard
from alignlab.sampling import token_logprobs

profile, device = get_profile(), get_device()
seed_everything(0)
ref, tok = load_sft(profile, device=device)  # pi_ref: frozen from here on
evaluator = Evaluator(ref, tok, profile=profile)
config = pg.PGConfig.for_profile(profile)
print(f"profile={profile.name} device={device}\n{config}")

# %% [markdown]
# ## 2. The language model as an RL agent
#
# The lecture notes map RL's vocabulary onto an LLM. In our review world:
#
# | RL | here |
# |---|---|
# | agent, policy $\pi_\theta(a \mid s)$ | the GPT-2's next-token distribution |
# | state $s_t$ | the prompt plus the completion tokens generated so far |
# | action $a_t$ | the next token (a word, `.`, or `<eos>`) |
# | transition | deterministic: $s_{t+1} = s_t \,\|\, a_t$ (append the token) |
# | episode | one completion, ending at `<eos>` (or cut off at the length limit) |
# | reward | the gold judge's $r^*(x, y)$, paid once, at the end of the completion |
#
# `rl.rollout` samples one completion per prompt and records, for every action, its log-probability, the reward and (later) the value. Here is one episode, action by action:

# %%
policy = pg.new_policy(ref, config.critic)  # a trainable copy of pi_ref (+ a value head, section 5)
prompts = world.make_prompts(8, "train", seed=1)
ro = rl.rollout(policy, ref, tok, prompts, rl.gold_reward_fn, config, seed=0)
i = 0
for t in ro.mask[i].nonzero().flatten().tolist():
    state = tok.decode(ro.batch.input_ids[i, :t][ro.batch.attention_mask[i, :t].bool()][1:])
    action = tok.convert_ids_to_tokens(int(ro.batch.input_ids[i, t]))
    print(f"s_t = {state[-40:]:>40} | a_t = {action:<7} log pi = {ro.logprobs[i, t]:6.2f}  r_t = {ro.rewards[i, t]:+.3f}")

# %% [markdown]
# Every row's tensors are aligned by column: column $t$ holds the action $a_t$, its log-prob $\log\pi(a_t \mid s_t)$, the value $V(s_t)$ of the state *before* it, and its reward $r_t$. With left padding and completions of different lengths, the sequence score must land on the **last real completion token** of each row, not on the last column (the diagram in `rl`'s docstring shows the layout).
#
# ### 2.1 The per-token reward with a KL penalty
#
# The RLHF objective keeps the policy near the reference: $\max_\pi \mathbb{E}[r^*(x,y)] - \beta\,\mathrm{KL}(\pi \,\|\, \pi_\text{ref})$. Its per-token form (Ziegler et al. 2019) pays a penalty on every action and the score once:
#
# $$ r_t = -\beta\,\big(\log\pi(a_t\mid s_t) - \log\pi_\text{ref}(a_t\mid s_t)\big) + [t = T]\; r^*(x, y). $$
#
# The defining lines, checked against the library on random tensors with ragged masks:

# %%
def my_token_rewards(score, logp, ref_logp, mask, beta):
    r = -beta * (logp - ref_logp) * mask                    # KL penalty on every action
    last = mask.shape[1] - 1 - mask.flip(1).argmax(1)       # column of the last real token
    r[torch.arange(len(score)), last] += score              # the judge's score, once
    return r

B, T, cols = 6, 10, torch.arange(10)
mask = ((cols >= torch.randint(1, 4, (B, 1))) & (cols < torch.randint(5, 11, (B, 1)))).float()
args = (torch.randn(B), torch.randn(B, T), torch.randn(B, T), mask, 0.1)
assert torch.allclose(my_token_rewards(*args), rl.token_rewards(*args))

# %% [markdown]
# Sanity numbers at step 0: the policy *is* the reference, so the KL penalty is exactly 0 and each episode's rewards add up to its score.

# %%
assert ro.kl.abs().max() == 0
assert torch.allclose(ro.rewards.sum(-1), ro.scores)
print("scores of the first batch:", [round(s, 2) for s in ro.scores.tolist()])

# %% [markdown]
# ## 3. REINFORCE
#
# We want to maximise $J(\theta) = \mathbb{E}_{y \sim \pi_\theta}[R(y)]$. The **log-derivative trick** $\nabla\pi = \pi\,\nabla\log\pi$ turns its gradient into an expectation we can sample (the policy-gradient estimator of the RLHF/DPO notes, $\hat g = \hat{\mathbb{E}}_t[\nabla\log\pi_\theta(a_t \mid s_t)\hat A_t]$):
#
# $$ \nabla_\theta J = \mathbb{E}_{y\sim\pi_\theta}\Big[\sum_t \nabla_\theta \log\pi_\theta(a_t\mid s_t)\; G_t\Big], \qquad G_t = \sum_{k \ge t} \gamma^{k-t} r_k . $$
#
# Only the **return-to-go** $G_t$ multiplies $\nabla\log\pi(a_t\mid s_t)$: rewards paid before $t$ cannot depend on $a_t$, so they only add noise. First, check the trick itself on a 3-armed bandit, where the exact gradient is known:

# %%
theta = torch.tensor([0.5, -0.2, 0.1], requires_grad=True)
r_arm = torch.tensor([1.0, -0.5, 0.3])
exact, = torch.autograd.grad((theta.softmax(0) * r_arm).sum(), theta)
arms = torch.multinomial(theta.softmax(0).detach(), 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
estimate, = torch.autograd.grad((theta.log_softmax(0)[arms] * r_arm[arms]).mean(), theta)
print("exact:", exact.numpy().round(4), " REINFORCE estimate:", estimate.numpy().round(4))
assert torch.allclose(exact, estimate, atol=0.01)

# %% [markdown]
# On the LM, the returns-to-go of a padded batch (with $\gamma = 1$) are a reversed cumulative sum, and the REINFORCE loss is minus the mean over completion tokens of $G_t \log\pi(a_t\mid s_t)$: autograd's gradient of it is the estimator above (averaged over tokens). Both lines, checked against `pg`:

# %%
G = (ro.rewards * ro.mask).flip(1).cumsum(1).flip(1) * ro.mask     # returns-to-go, gamma = 1
assert torch.allclose(G, pg.returns_to_go(ro.rewards, ro.mask))
logp, _ = policy(ro.batch.input_ids, ro.batch.attention_mask)
loss = -masked_mean(G * logp, ro.mask)                              # REINFORCE
none_cfg = dataclasses.replace(config, baseline="none")
assert torch.allclose(loss, pg.pg_losses(policy, ro, none_cfg)["loss"])

# %% [markdown]
# Now train with it. Each step samples a fresh batch of completions and takes **one** gradient step on it (on-policy; PPO in lecture 03 reuses a batch for several steps). All runs in this notebook optimise the same KL-regularised reward, so only the advantage estimator differs between them. `grad_var_every` also measures the variance of the gradient estimate on some batches (section 4).

# %%
reinforce_cfg = dataclasses.replace(config, baseline="none", critic="shared", steps=config.steps // 2, grad_var_every=5)
train_prompts = world.make_prompts(config.steps * config.batch_size, "train", seed=0)
seed_everything(0)
pi_none = pg.new_policy(ref, "shared")
h_none = pg.train_pg(pi_none, ref, tok, train_prompts, reinforce_cfg, evaluator, name="REINFORCE")

# %% [markdown]
# ## 4. Baselines and the variance of the gradient estimate
#
# Subtracting any $b(s_t)$ that does not depend on the action leaves the expected gradient unchanged, because the score function has mean zero:
#
# $$ \mathbb{E}_{a\sim\pi}\big[\nabla\log\pi(a\mid s)\, b(s)\big] = b(s)\sum_a \nabla\pi(a\mid s) = b(s)\,\nabla \sum_a \pi(a\mid s) = b(s)\,\nabla 1 = 0 . $$
#
# But it changes the **variance**: each sample's gradient is $\nabla\log\pi \cdot (G - b)$, so a reward that is, say, always around $+0.7$ pushes up every sampled completion and relies on the noise to cancel out. The simplest baseline is the batch mean of the returns. Checked first on the bandit: same mean, smaller spread.

# %%
pi = theta.softmax(0).detach()
score_fn = F.one_hot(arms, 3) - pi                 # grad of log softmax(theta)[a], one row per sample
assert torch.allclose(score_fn[0], torch.autograd.grad(theta.log_softmax(0)[arms[0]], theta)[0])
for b in (0.0, float(r_arm[arms].mean())):
    g = score_fn * (r_arm[arms] - b)[:, None]      # per-sample gradient estimates
    print(f"b = {b:+.3f}: mean gradient {g.mean(0).numpy().round(4)}, total variance {g.var(0).sum():.4f}")

# %% [markdown]
# The same run with the mean baseline, $A_t = G_t - \overline{G}$:

# %%
seed_everything(0)
pi_mean = pg.new_policy(ref, "shared")
mean_cfg = dataclasses.replace(reinforce_cfg, baseline="mean", grad_var_every=0)
h_mean = pg.train_pg(pi_mean, ref, tok, train_prompts, mean_cfg, evaluator, name="REINFORCE + mean baseline")
dashboard(h_none, h_mean, extra=("score",), title="REINFORCE, without and with a baseline"); plt.show()

# %% [markdown]
# ### 4.1 Measuring the variance
#
# To measure the variance of the gradient *estimate*, we compute one gradient per episode, $g_i = \sum_t A_{i,t}\nabla\log\pi(a_{i,t}\mid s_{i,t})$, on the weight matrices of the last transformer block, and add up the variances of its coordinates across the episodes of a batch (the trace of the covariance, `pg.total_variance`). The REINFORCE run above did this every few steps for both $A = G$ and $A = G - \overline G$ **on the same batches**.
#
# Because $g_i(G + c) = g_i(G) + c\, g_i(1)$, two per-episode gradients also give the variance for *any* constant shift $c$ of the reward: the right panel takes the trained REINFORCE policy and asks what the variance would be had the judge's scores been shifted by $c$ (as if every answer earned a bonus $c$).

# %%
ro_fixed = rl.rollout(pi_none, ref, tok, world.make_prompts(config.batch_size, "train", seed=3), rl.gold_reward_fn, config, seed=3)
G_fixed = pg.returns_to_go(ro_fixed.rewards, ro_fixed.mask)
grads = pg.per_episode_grads(pi_none, ro_fixed, {"G": G_fixed, "one": ro_fixed.mask})
shifts = np.linspace(-1.5, 1.5, 31)
var_shift = [pg.total_variance(grads["G"] + c * grads["one"]) for c in shifts]
var_baseline = pg.total_variance(grads["G"] - masked_mean(G_fixed, ro_fixed.mask) * grads["one"])

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
for key, label in [("grad_var_none", "A = G (no baseline)"), ("grad_var_mean", "A = G - mean(G)")]:
    axes[0].plot(*h_none.series(key), "o-", label=label)
ax2 = axes[0].twinx(); ax2.plot(*h_none.series("score"), color="grey", alpha=0.4); ax2.set_ylabel("batch mean score", color="grey")
axes[0].set(xlabel="REINFORCE step", ylabel="total variance of g_i", title="same batches, two estimators"); axes[0].legend(fontsize=8)
axes[1].plot(shifts, var_shift, label="no baseline, reward + c"); axes[1].axhline(var_baseline, color="C1", ls="--", label="mean baseline (any c)")
axes[1].axvline(0, color="grey", lw=0.8); axes[1].set(xlabel="shift c added to every score", title=f"one batch of the trained policy (mean score {ro_fixed.scores.mean():.2f})"); axes[1].legend(fontsize=8)
plt.tight_layout(); plt.show()
c_best = shifts[int(np.argmin(var_shift))]
print(f"at c = 0: variance without baseline {var_shift[15]:.2f}, with the mean baseline {var_baseline:.2f} (ratio {var_shift[15] / var_baseline:.1f});"
      f"  lowest no-baseline variance {min(var_shift):.2f} at c = {c_best:+.1f}, batch mean score {ro_fixed.scores.mean():+.2f}")

# %% [markdown]
# What the measurements say:
#
# * The no-baseline variance is a parabola in the shift $c$, the baseline's is flat: a baseline makes the estimator blind to the reward's offset.
# * The parabola's minimum marks the best constant baseline, $b^* = \mathbb{E}[\|s\|^2 G]/\mathbb{E}[\|s\|^2]$ with $s = \sum_t\nabla\log\pi$: a mean of the returns **weighted by the score function's size**, not the plain mean. On one batch the two can be far apart (printed above: where the minimum sits, against the batch's mean score), and then the plain-mean baseline can even raise the variance of that batch.
# * How much a baseline helps depends on where the rewards sit. The SFT model's mean gold reward is close to 0, so early in training the two estimators are about as noisy. Once the policy is good and its rewards sit around $+0.6$, the no-baseline estimator is noisier on average over the logged batches (the ratio printed below), though not on every batch. At this scale, with Adam normalising the step size, the learning curves of the two runs stay close: 40 steps of a tiny model do not turn the variance drop into a visible speed-up.

# %%
late = [s for s in h_none.series("grad_var_none")[0] if s >= reinforce_cfg.steps // 2]
ratio = np.mean([h_none.rows[s]["grad_var_none"] / h_none.rows[s]["grad_var_mean"] for s in late])
print(f"logged batches, second half of training: variance without / with baseline = {ratio:.2f} (noisy: few batches)")
assert ratio > 1  # second half of training: on average the mean baseline lowers the variance

# %% [markdown]
# ## 5. A value head, TD errors and GAE
#
# A batch mean is the same baseline for every state. The best state-dependent baseline is the **value** $V^\pi(s_t) = \mathbb{E}[G_t \mid s_t]$, and with it the **advantage** of the lecture notes, $A(s,a) = Q(s,a) - V(s)$: how much better action $a$ is than the policy's average in state $s$.
#
# `rl.PolicyWithValue` adds a scalar **value head** `nn.Linear(n_embd, 1)` to the GPT-2. One forward pass returns the token log-probs and the values $V(s_t)$, column-aligned. Following the "implementation details" literature, the head starts at **zero** (weights and bias), so at step 0 every value is 0 and the first advantages are the plain returns.
#
# *Which hidden state feeds the head?* In big models, the policy's own last hidden state (a shared trunk, one pass). Our 2-layer, 64-wide GPT-2 keeps no sentiment information there: a linear read-out of it predicts the return with held-out $R^2 \approx 0$, and a shared-trunk critic stayed at explained variance $\approx 0$ in our runs (try it: exercise 1). So by default (`config.critic = "separate"`) the head sits on its own copy of the SFT transformer, as in TRL's current `PPOTrainer`: two passes, but actor and critic cannot disturb each other.

# %%
logp_pv, values = policy(ro.batch.input_ids, ro.batch.attention_mask)
assert torch.count_nonzero(values) == 0                                        # zero init
assert torch.allclose(logp_pv, token_logprobs(policy.lm, ro.batch.input_ids, ro.batch.attention_mask))
n_critic = sum(p.numel() for p in policy.parameters()) - sum(p.numel() for p in policy.lm.parameters())
print(f"policy: {sum(p.numel() for p in policy.lm.parameters()):,} parameters; critic: {n_critic:,} ({config.critic})")

# %% [markdown]
# ### 5.1 From TD errors to GAE
#
# With a value function, one step of experience already gives an advantage estimate, the **TD error**
#
# $$ \delta_t = r_t + \gamma V(s_{t+1}) - V(s_t) \qquad (V = 0 \text{ after the last token}), $$
#
# which is low-variance (only one random action) but biased whenever $V$ is wrong. Summing $k$ of them telescopes into the $k$-step estimate $r_t + \dots + \gamma^{k-1}r_{t+k-1} + \gamma^k V(s_{t+k}) - V(s_t)$: more real rewards, fewer guesses. **GAE** (Schulman et al. 2016) averages all of them with weights $(1-\lambda)\lambda^{k-1}$, which works out to
#
# $$ \hat A_t^{\text{GAE}(\gamma,\lambda)} = \sum_{l \ge 0} (\gamma\lambda)^l\, \delta_{t+l} = \delta_t + \gamma\lambda\,\hat A_{t+1}. $$
#
# $\lambda = 0$ gives the one-step TD error; $\lambda = 1$ telescopes to $G_t - V(s_t)$, the Monte-Carlo return minus the value. Written out (one reversed loop over time, vectorised over the batch) and checked against `losses.compute_gae`:

# %%
def my_gae(rewards, values, mask, gamma, lam):
    m_next = F.pad(mask[:, 1:], (0, 1))                        # is s_{t+1} still inside the episode?
    delta = (rewards + gamma * F.pad(values[:, 1:], (0, 1)) * m_next - values) * mask   # TD errors
    adv, running = torch.zeros_like(delta), torch.zeros(len(delta))
    for t in reversed(range(delta.shape[1])):
        running = delta[:, t] + gamma * lam * m_next[:, t] * running
        adv[:, t] = running * mask[:, t]
    return adv

# %% [markdown]
# On random rewards and values with ragged masks, for several $(\gamma, \lambda)$, and the two limits:

# %%
rewards, values_rand = torch.randn(B, T) * mask, torch.randn(B, T) * mask
for gamma, lam in [(1.0, 0.0), (1.0, 0.5), (0.9, 0.95), (1.0, 1.0)]:
    assert torch.allclose(my_gae(rewards, values_rand, mask, gamma, lam), compute_gae(rewards, values_rand, mask, gamma, lam)[0], atol=1e-5)
td = (rewards + F.pad(values_rand[:, 1:], (0, 1)) * F.pad(mask[:, 1:], (0, 1)) - values_rand) * mask
assert torch.allclose(compute_gae(rewards, values_rand, mask, 1.0, 0.0)[0], td, atol=1e-6)                          # lambda = 0: TD error
assert torch.allclose(compute_gae(rewards, values_rand, mask, 1.0, 1.0)[0], (pg.returns_to_go(rewards, mask) - values_rand) * mask, atol=1e-5)  # lambda = 1: G - V
print("GAE checks passed")

# %% [markdown]
# ## 6. The actor-critic: GAE advantages and a KL penalty
#
# Each step: roll out `config.batch_size` prompts, compute per-token rewards (score + KL penalty, $\beta$ = `config.kl_coef`), GAE($\gamma{=}1$, $\lambda{=}0.95$) advantages from the critic's values, whiten them over the batch, and take one step on
#
# $$ L = -\,\overline{\hat A_t \log\pi_\theta(a_t\mid s_t)} \;+\; c_v \cdot \tfrac12\,\overline{\big(V_\phi(s_t) - \hat R_t\big)^2}, \qquad \hat R_t = \hat A_t + V(s_t), $$
#
# (bars: means over completion tokens). The value targets $\hat R_t$ are the $\lambda$-returns. `explained_variance` (logged) says how much of the returns' variance the critic explains: 1 perfect, 0 no better than a constant.

# %%
seed_everything(0)
policy = pg.new_policy(ref, config.critic)
h_gae = pg.train_pg(policy, ref, tok, train_prompts, config, evaluator, name="GAE actor-critic + KL")
dashboard(h_none, h_mean, h_gae, extra=("score", "explained_variance"), title="policy gradients on the gold reward"); plt.show()
final = h_gae.final()
print(final)

# %% [markdown]
# The headline claim of this lecture: optimising the gold reward with GAE and a KL penalty, the policy beats the SFT reference on at least 70% of held-out prompts while its reviews stay at least 90% valid.

# %%
assert final["win_rate"] >= 0.70, final
assert final["valid_rate"] >= 0.90, final
for name, model in [("SFT", ref), ("GAE", policy.lm)]:
    b = evaluator.sample(model)
    print(f"--- {name}: " + " | ".join(f"{p} {c}" for p, c in zip(b.prompts[:3], b.completions[:3])))

# %% [markdown]
# ## 7. GAE's bias/variance trade-off, measured
#
# Theory says: small $\lambda$ leans on the critic (low variance, biased when $V$ is wrong); $\lambda = 1$ uses only real rewards (unbiased, high variance). We measure both on real rollouts of the trained policy, with its trained critic:
#
# 1. for each of `config.lambda_prefixes` prompts, sample a completion and pick one of its tokens $a_t$ (not the last);
# 2. **ground truth** by Monte-Carlo: sample 64 continuations of $s_{t+1} = s_t\|a_t$; $Q(s_t, a_t) \approx r_t + \text{mean return}$; the target is $A^* = Q(s_t,a_t) - V(s_t)$ (subtracting the critic's $V(s_t)$, a function of the state only, leaves the policy gradient unchanged, so this is the quantity whose bias matters);
# 3. **estimates**: 32 *other* continuations each give $\hat A^{\text{GAE}(\lambda)}_t = \delta_t + \gamma\lambda\,\hat A^{\text{GAE}(\lambda)}_{t+1}$ along their own future;
# 4. per prefix: the variance of the 32 estimates, and the squared bias $(\text{their mean} - A^*)^2$; then averaged over prefixes.
#
# Part of the measured bias² is just Monte-Carlo noise (finite samples on both sides); `noise2` is its expected size if there were no bias at all.

# %%
lam_res = pg.lambda_experiment(policy, ref, tok, world.make_prompts(config.lambda_prefixes, "train", seed=7), config, seed=7)
lams, root = lam_res["lams"], lambda key: np.sqrt(lam_res[key])
fig, ax = plt.subplots(figsize=(5.5, 3.4))
ax.plot(lams, root("variance"), "o-", label="std of the estimates (noise)")
ax.plot(lams, root("bias2"), "s-", label="|bias| vs Monte-Carlo truth (rms)")
ax.plot(lams, root("noise2"), ":", color="grey", label="|bias| expected from MC noise alone")
ax.set(xlabel="λ", ylabel="advantage units", title=f"GAE(γ=1, λ) on {lam_res['n_prefixes']} real prefixes"); ax.legend(fontsize=8)
plt.tight_layout(); plt.show()

# %% [markdown]
# Reading the plot. With $\lambda = 0$ the estimate is $\delta_t = r_t + V(s_{t+1}) - V(s_t)$: in a text MDP the next state is fixed once the token is chosen, so its variance is exactly **zero**, and its whole error is the critic's error at $s_{t+1}$. Raising $\lambda$ mixes in more real rewards: the noise grows and the bias shrinks, down to the Monte-Carlo noise floor at $\lambda = 1$. The critic is far from perfect (below: its average error per state, against Monte-Carlo), which is why the bias at small $\lambda$ is so large, and why RLHF code uses $\lambda$ close to 1. The assertion checks the direction of both trends on this measurement:

# %%
v, b2 = lam_res["variance"], lam_res["bias2"]
print(f"variance: lambda=0 {v[0]:.4f} -> lambda=1 {v[-1]:.4f};  bias^2: lambda=0 {b2[0]:.4f} -> lambda=1 {b2[-1]:.4f} (noise floor {lam_res['noise2'][-1]:.4f})")
print(f"critic's mean |V(s) - Monte-Carlo value| on these states: {lam_res['mean_abs_value_error']:.3f}")
assert v[-1] > v[0] and b2[0] > b2[-1]

# %% [markdown]
# ### 7.1 Credit assignment, token by token
#
# Turn the knob: for one episode of the trained policy, the critic's values, the TD errors and the GAE advantage of each token. At $\lambda = 0$ each token is judged by the critic's change of mind; at $\lambda = 1$ every token shares the episode's return minus its value. (Executed headless, `alignlab.course.widgets.interact` draws the plot once, at $\lambda = 0.95$.)

# %%
import ipywidgets as widgets

from alignlab.course.widgets import interact

ro_one = rl.rollout(policy, ref, tok, world.make_prompts(4, "eval", seed=2), rl.gold_reward_fn, config, seed=5)
cols1 = ro_one.mask[0].bool()
words = tok.convert_ids_to_tokens(ro_one.batch.input_ids[0, cols1].tolist())

def show_credit(lam=0.95):
    adv = compute_gae(ro_one.rewards, ro_one.values, ro_one.mask, 1.0, lam)[0][0, cols1]
    delta = compute_gae(ro_one.rewards, ro_one.values, ro_one.mask, 1.0, 0.0)[0][0, cols1]
    x = np.arange(len(words))
    plt.figure(figsize=(8, 2.8)); plt.bar(x - 0.2, delta, 0.4, label="TD error δ_t"); plt.bar(x + 0.2, adv, 0.4, label=f"GAE λ={lam:.2f}")
    plt.plot(x, ro_one.values[0, cols1], "k.-", label="V(s_t)"); plt.xticks(x, words, rotation=45); plt.axhline(0, color="grey", lw=0.8)
    plt.title(f"{ro_one.batch.prompts[0]} ... (score {ro_one.scores[0]:+.2f})"); plt.legend(fontsize=7); plt.tight_layout(); plt.show()

interact(show_credit, lam=widgets.FloatSlider(value=0.95, min=0.0, max=1.0, step=0.05));

# %% [markdown]
# ## 8. Results
#
# The headline numbers, for `python -m alignlab course` (the same run from the command line: `python -m alignlab run pg --profile quick`):

# %%
alignlab.report(h_gae, notebook="02_policy_gradients", score=round(h_gae.last("score"), 4),
                reinforce_win_rate=round(h_none.last("win_rate"), 4), mean_baseline_win_rate=round(h_mean.last("win_rate"), 4),
                grad_var_ratio=round(var_shift[15] / var_baseline, 3), logged_grad_var_ratio=round(float(ratio), 3), lambda_variance=[round(x, 4) for x in v], lambda_bias2=[round(x, 4) for x in b2])

# %% [markdown]
# ## 9. Summary
#
# * An LLM is an RL agent whose state is the text so far, whose action is the next token, and whose episode is one completion; the reward arrives at the end (plus a per-token KL penalty that keeps it near $\pi_\text{ref}$).
# * REINFORCE: $\nabla J = \mathbb{E}[\sum_t \nabla\log\pi(a_t\mid s_t)\,G_t]$, one forward/backward on sampled completions. Unbiased, noisy.
# * A baseline $b(s)$ keeps the gradient unbiased and removes the part of the noise that comes from the reward's offset. It matters most once the rewards are far from 0.
# * A value head gives the state-dependent baseline $V(s_t)$, TD errors $\delta_t$, and GAE: $\hat A_t = \sum_l (\gamma\lambda)^l\delta_{t+l}$, from one-step TD ($\lambda=0$: no variance here, biased by the critic) to Monte-Carlo minus the value ($\lambda=1$: unbiased, noisiest).
# * With GAE($\lambda{=}0.95$), whitening and $\beta = 0.05$, the tiny GPT-2 beats the SFT reference on most held-out prompts while staying valid.
#
# **Pitfalls, and how to see them in the logs**
# * *Off-by-one between log-probs and values.* If column $t$ held $V(s_{t+1})$, a value that has already seen $a_t$, the baseline would cancel the very action it is meant to judge. Symptom: `explained_variance` looks good but the policy barely improves. `rl`'s diagram and `test_values_are_for_the_state_before_each_action` pin the alignment.
# * *Reward on the last column instead of the last real token.* With padding, short completions would be scored on a pad token. Symptom: `score` and the sum of rewards disagree; the test `test_score_lands_on_last_real_completion_token` catches it.
# * *Log-probs at another temperature than sampling.* They then belong to another distribution than the one that produced the tokens: the gradient and the KL penalty are silently wrong. `rl.rollout` computes both at `config.sampling_temperature`; lecture 03's step-0 check (PPO ratio exactly 1) catches a mismatch.
# * *Whitening REINFORCE's returns* is a baseline in disguise (it subtracts the mean): compare estimators with it switched off.
# * *A critic that learns nothing.* `explained_variance` near 0 or negative. Small $\lambda$ then gives advantages that are mostly the critic's noise; keep $\lambda$ near 1 (or give the critic its own trunk, as here).
# * *KL running away.* `rollout_kl` and `kl_penalty` climbing steadily, valid rate falling: raise `kl_coef` or lower `lr`.
#
# ## 10. Exercises
#
# 1. Train with `critic="shared"` (`dataclasses.replace(config, critic="shared")`). Compare `explained_variance` and the $\lambda$ experiment. Why does a 2-layer model's last hidden state not know the review's sentiment?
# 2. Implement the leave-one-out baseline $b_i = \frac{1}{B-1}\sum_{j\ne i} G_j$ (RLOO) with `pg.per_episode_grads` and compare its variance with the batch mean and with the optimal constant $b^*$ of section 4.
# 3. Set `kl_coef` to 0 and to 0.2. How do the final KL, win-rate and valid rate move? Where would you stop?
# 4. Use $\gamma = 0.9$. Which reviews does the policy now prefer, and why (hint: how does a reward at the end reach the first token)?
# 5. Re-run the $\lambda$ experiment with the critic of step 0 (all zeros). Predict the bias at $\lambda = 0$ before you look.
