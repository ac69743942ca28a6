# %% [markdown]
# # Lecture 02: policy gradients, value functions and GAE
#
# **Objectives.** By the end of this notebook you can
# 1. map reinforcement learning's state, action, policy, episode and reward onto a language model writing a completion;
# 2. derive the REINFORCE gradient estimator and train the tiny GPT-2 with it;
# 3. explain why a baseline lowers the variance of the gradient estimate without biasing it, and measure the drop;
# 4. add a value head to the GPT-2, compute TD errors and GAE($\gamma$, $\lambda$) from them, and check that $\lambda=0$ is one-step TD and $\lambda=1$ the Monte-Carlo return minus the value;
# 5. measure GAE's bias/variance trade-off on real rollouts against Monte-Carlo ground truth;
# 6. write the actor-critic's whole update step yourself (rollout, GAE, whitening, the loss, backward, clip, AdamW), check it against the library's, and train it with a KL penalty to the reference, on the shared dashboard;
# 7. see what a reward that leaks length does to a policy.
#
# **Prerequisites.** Lecture 00 (the review world, the gold judge, the shared evaluation). Expectations, gradients, `torch.autograd`.
#
# **Run time.** `quick` profile (2-core CPU, SFT model cached): about 30 s (25 s measured under nbval on an idle 2-core machine, plus about 5 s for the checks of sections 4-7 and the run of section 8, estimated on a loaded machine). `full` profile (one GPU): not measured yet (no GPU was available when this course was built).
#
# **Sources.** Williams 1992, *Simple statistical gradient-following algorithms for connectionist reinforcement learning* (Machine Learning 8), for REINFORCE; Schulman et al. 2016, *High-dimensional continuous control using generalized advantage estimation* (arXiv:1506.02438), for GAE; Ziegler et al. 2019, *Fine-tuning language models from human preferences* (arXiv:1909.08593), for the per-token KL penalty; Stanford CME 295 (Transformers & Large Language Models, Autumn 2025), lecture 5, for RL's vocabulary applied to an LLM (syllabus: https://cme295.stanford.edu/syllabus/).
#
# **On purpose**, this lecture optimises the **gold judge itself**. Real RLHF optimises a *learned* reward model (lecture 03); here the reward is perfect, so everything that goes right or wrong is the RL machinery's doing.

# %% [markdown]
# ## 1. Set-up
#
# The SFT model from lecture 00 is the reference policy $\pi_\text{ref}$ (trained and cached on first use). `PGConfig` holds every setting of this lecture, sized for the profile.

# %%
import copy
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
# CME 295's lecture 5 maps RL's vocabulary onto an LLM. In our review world:
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
# The RLHF objective keeps the policy near the reference: $\max_\pi \mathbb{E}[r^*(x,y)] - \beta\,\mathrm{KL}(\pi \,\|\, \pi_\text{ref})$. Its per-token form (Ziegler et al. 2019, arXiv:1909.08593) pays a penalty on every action and the score once:
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
# We want to maximise $J(\theta) = \mathbb{E}_{y \sim \pi_\theta}[R(y)]$. The **log-derivative trick** $\nabla\pi = \pi\,\nabla\log\pi$ turns its gradient into an expectation we can sample (REINFORCE, Williams 1992; the PPO paper writes the estimator as $\hat g = \hat{\mathbb{E}}_t[\nabla\log\pi_\theta(a_t \mid s_t)\hat A_t]$, Schulman et al. 2017, arXiv:1707.06347, eq. 1):
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
# Now train with it. Each step samples a fresh batch of completions and takes **one** gradient step on it (on-policy; PPO in lecture 03 reuses a batch for several steps). All runs in this notebook but one (section 8) optimise the same KL-regularised reward, so only the advantage estimator differs between them. `grad_var_every` also measures the variance of the gradient estimate on some batches (section 4).

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
# But it changes the **variance**: each sample's gradient is $\nabla\log\pi \cdot (G - b)$, so a reward that is, say, always around $+0.7$ pushes up every sampled completion and relies on the noise to cancel out. The simplest baseline is the batch mean of the returns. Checked first on the bandit with a baseline fixed in advance (the mean over all 200,000 draws, which no single draw moves): same mean, smaller spread.

# %%
pi = theta.softmax(0).detach()
score_fn = F.one_hot(arms, 3) - pi                 # grad of log softmax(theta)[a], one row per sample
assert torch.allclose(score_fn[0], torch.autograd.grad(theta.log_softmax(0)[arms[0]], theta)[0])
for b in (0.0, float(r_arm[arms].mean())):
    g = score_fn * (r_arm[arms] - b)[:, None]      # per-sample gradient estimates
    print(f"b = {b:+.3f}: mean gradient {g.mean(0).numpy().round(4)}, total variance {g.var(0).sum():.4f}")

# %% [markdown]
# **A batch mean is not quite free.** The argument above needs $b$ not to depend on the action. The mean of a batch of $B$ returns *includes the episode's own return*, so it does depend on the episode's actions: since $\mathbb{E}[\nabla\log\pi(a_i)\, \overline{G}] = \frac1B \nabla J$, the estimate shrinks to $\frac{B-1}{B}\nabla J$, a bias of order $1/B$ (about 2% at our $B = 48$). The library's mean is moreover taken over the tokens of the batch, so long episodes weigh more in it. The **leave-one-out** mean of the *other* $B - 1$ returns removes the bias exactly (Kool et al. 2019, *Buy 4 REINFORCE samples, get a baseline for free!*; RLOO in Ahmadian et al. 2024, arXiv:2402.14740; exercise 2 and lecture 07). On the bandit, in batches of $B = 4$:

# %%
r4, s4 = r_arm[arms].view(-1, 4), score_fn.view(-1, 4, 3)          # 50,000 batches of 4 draws
own = r4.mean(1, keepdim=True)                                     # batch mean, own return included
loo = (r4.sum(1, keepdim=True) - r4) / 3                           # mean of the other 3
scale = {name: float((s4 * (r4 - b4)[..., None]).mean((0, 1)) @ exact / exact.dot(exact))
         for name, b4 in [("batch mean", own), ("leave-one-out", loo)]}
print({k: round(v, 3) for k, v in scale.items()}, "(1 = unbiased; (B-1)/B = 0.75)")
assert abs(scale["batch mean"] - 0.75) < 0.03 and abs(scale["leave-one-out"] - 1.0) < 0.03

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
# To measure the variance of the gradient *estimate*, we compute one gradient per episode, $g_i = \sum_t A_{i,t}\nabla\log\pi(a_{i,t}\mid s_{i,t})$, on the weight matrices of the last transformer block, and add up the variances of its coordinates across the episodes of a batch (the trace of the covariance). The REINFORCE run above did this every few steps for both $A = G$ and $A = G - \overline G$ **on the same batches**. Both pieces, written out: one forward pass and one `autograd.grad` per episode, then the sum of the per-coordinate variances; checked against `pg.per_episode_grads` and `pg.total_variance` on four episodes of a fresh batch of the trained REINFORCE policy:

# %%
def my_per_episode_grads(policy, ro, adv, params, n):
    rows = []
    for i in range(n):
        logp = token_logprobs(policy.lm, ro.batch.input_ids[i:i + 1], ro.batch.attention_mask[i:i + 1])[0]
        g = torch.autograd.grad((logp * adv[i] * ro.mask[i]).sum(), params)   # g_i = sum_t A_it grad log pi(a_it | s_it)
        rows.append(torch.cat([x.flatten() for x in g]))
    return torch.stack(rows)                                                     # (n episodes, P coordinates)

def my_total_variance(grads):
    return grads.var(0).sum().item()                                             # trace of the covariance across episodes

ro_fixed = rl.rollout(pi_none, ref, tok, world.make_prompts(config.batch_size, "train", seed=3), rl.gold_reward_fn, config, seed=3)
G_fixed = pg.returns_to_go(ro_fixed.rewards, ro_fixed.mask)
params = pg.default_grad_params(pi_none)
mine = my_per_episode_grads(pi_none, ro_fixed, G_fixed, params, 4)
lib = pg.per_episode_grads(pi_none, ro_fixed, {"G": G_fixed}, params, max_episodes=4)["G"]
assert torch.allclose(mine, lib, atol=1e-6) and np.isclose(my_total_variance(mine), pg.total_variance(lib), rtol=1e-5)
print(f"{mine.shape[1]:,} gradient coordinates per episode (the last block's weight matrices); per-episode gradients and their total variance match")

# %% [markdown]
#
# Because $g_i(G + c) = g_i(G) + c\, g_i(1)$, two per-episode gradients also give the variance for *any* constant shift $c$ of the reward: the right panel takes the trained REINFORCE policy and asks what the variance would be had the judge's scores been shifted by $c$ (as if every answer earned a bonus $c$).

# %%
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
# Where is the minimum? The total variance of $g_i(G) + c\,g_i(1)$ is $V_G + 2c\,C + c^2 V_1$, with $V_G$ and $V_1$ the total variances of the two per-episode gradients and $C$ the sum of their per-coordinate covariances, so the best constant baseline is $b^* = -c^* = C / V_1$ **on this batch**. Since $g_i(1) = s_i = \sum_t \nabla\log\pi(a_{i,t}\mid s_{i,t})$, this is *approximately* $b^* \approx \mathbb{E}[\|s\|^2 G]/\mathbb{E}[\|s\|^2]$, a mean of the returns **weighted by the score function's size**: exact only if $G_t$ were constant within an episode (here the KL penalty makes it vary by token) and up to the batch's sample means. All three, with the plain mean:

# %%
dG, d1 = grads["G"] - grads["G"].mean(0), grads["one"] - grads["one"].mean(0)
b_star = float((dG * d1).sum() / (d1 * d1).sum())                               # C / V_1
s2 = (grads["one"] ** 2).sum(1)                                                  # ||s_i||^2
G_episode = (ro_fixed.rewards * ro_fixed.mask).sum(-1)                            # G at the first action
b_weighted = float((s2 * G_episode).sum() / s2.sum())
print(f"b* = C / V_1 = {b_star:+.3f} (the grid's minimum at c = {c_best:+.1f});  weighted mean of the returns {b_weighted:+.3f};  "
      f"plain token mean of the returns {masked_mean(G_fixed, ro_fixed.mask):+.3f}")
assert abs(-b_star - c_best) <= 0.05 + 1e-9                                      # the parabola's vertex is the grid's minimum

# %% [markdown]
# What the measurements say:
#
# * The no-baseline variance is a parabola in the shift $c$, the baseline's is flat: a baseline makes the estimator blind to the reward's offset.
# * The parabola's minimum is the best constant baseline $b^*$ of this batch, printed above with the plain mean and the weighted mean it approximates. On one batch the plain mean can sit far from $b^*$; if it sits farther than $|b^*|$ from it, the mean baseline *raises* that batch's variance (compare the two printed variances).
# * How much a baseline helps depends on where the rewards sit. The next cell prints the variance ratio on the first logged batch (the SFT model, mean gold reward near 0) and on average over the logged batches of the second half of training (a better policy, higher rewards: the ratio is asserted above 1 there), with the batch mean scores, and the final numbers of the two runs: with Adam normalising the step size, a lower variance need not show as a faster learning curve in 40 steps of a tiny model.

# %%
late = [s for s in h_none.series("grad_var_none")[0] if s >= reinforce_cfg.steps // 2]
ratio = np.mean([h_none.rows[s]["grad_var_none"] / h_none.rows[s]["grad_var_mean"] for s in late])
first_ratio = h_none.rows[1]["grad_var_none"] / h_none.rows[1]["grad_var_mean"]
print(f"variance without / with baseline: first batch {first_ratio:.2f} (mean score {h_none.rows[1]['score']:+.2f}); "
      f"logged batches of the second half {ratio:.2f} (mean score {np.mean([h_none.rows[s]['score'] for s in late]):+.2f}; noisy: few batches)")
print(f"final gold reward / win-rate: REINFORCE {h_none.last('gold_reward'):+.3f} / {h_none.last('win_rate'):.3f}, "
      f"with the mean baseline {h_mean.last('gold_reward'):+.3f} / {h_mean.last('win_rate'):.3f}")
assert ratio > 1  # second half of training: on average the mean baseline lowers the variance

# %% [markdown]
# ## 5. A value head, TD errors and GAE
#
# A batch mean is the same baseline for every state. The natural state-dependent baseline is the **value** $V^\pi(s_t) = \mathbb{E}[G_t \mid s_t]$, and with it the **advantage** $A(s,a) = Q(s,a) - V(s)$: how much better action $a$ is than the policy's average in state $s$.
#
# `rl.PolicyWithValue` adds a scalar **value head** `nn.Linear(n_embd, 1)` to the GPT-2. One forward pass returns the token log-probs and the values $V(s_t)$, column-aligned. Following the "implementation details" literature (Huang et al. 2022, *The 37 implementation details of PPO*, ICLR blog track), the head starts at **zero** (weights and bias), so at step 0 every value is 0 and the first advantages are the plain returns.
#
# *Which hidden state feeds the head?* In big models, the policy's own last hidden state (a shared trunk, one pass). How much does the SFT model's last hidden state know about the return? A linear read-out, fitted by least squares on the states of 128 sampled episodes and scored on 128 others (the SFT model's return is its gold score: the KL penalty is 0 there):

# %%
from alignlab.sampling import position_ids, sample

probe = sample(ref, tok, world.make_prompts(256, "train", seed=11), config.max_new_tokens, seed=11)
score_probe = torch.tensor(world.gold_rewards(probe.prompts, probe.completions, probe.finished))
with torch.no_grad():
    hid = ref.transformer(input_ids=probe.input_ids, attention_mask=probe.attention_mask,
                          position_ids=position_ids(probe.attention_mask)).last_hidden_state
states = probe.completion_mask[:, 1:].bool()                          # V(s_t) reads the hidden state before action t
X = torch.cat([hid[:, :-1][states], torch.ones(int(states.sum()), 1)], 1)
y = score_probe[:, None].expand_as(states)[states]
fit = torch.arange(len(probe))[:, None].expand_as(states)[states] < 128   # episodes 0-127 fit, 128-255 score
w = torch.linalg.lstsq(X[fit], y[fit, None]).solution.squeeze(-1)
r2 = float(1 - ((X[~fit] @ w - y[~fit]) ** 2).mean() / y[~fit].var())
print(f"linear read-out of the SFT model's last hidden state: held-out R^2 = {r2:+.3f} on {int((~fit).sum())} states")
assert r2 < 0.1

# %% [markdown]
# Next to nothing: our 2-layer, 64-wide GPT-2 keeps next to no information about the review's score in its last hidden state, so a value head on the shared trunk has to reshape the policy's own features to learn anything (exercise 1 trains one and compares its `explained_variance`). So by default (`config.critic = "separate"`) the head sits on its own copy of the SFT transformer, as in TRL's current `PPOTrainer`: two passes, but actor and critic cannot disturb each other, and the critic's trunk can learn its own features.

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
# which is low-variance (only one random action) but biased whenever $V$ is wrong. Summing $k$ of them telescopes into the $k$-step estimate $r_t + \dots + \gamma^{k-1}r_{t+k-1} + \gamma^k V(s_{t+k}) - V(s_t)$: more real rewards, fewer guesses. **GAE** (Schulman et al. 2016, eq. 16) averages all of them with weights $(1-\lambda)\lambda^{k-1}$, which works out to
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
#
# The whole update, written out. The rollout (section 2) is already sampled: it holds the tokens, their log-probs and values when sampled, and the per-token rewards. One step recomputes log-probs and values **with** gradient, builds the advantages from the rollout's values, and takes one AdamW step (two learning rates: `config.lr` for the policy, `config.value_lr` for the critic):

# %%
from alignlab.losses import whiten


def my_pg_step(policy, opt, ro, config):
    logp, values = policy(ro.batch.input_ids, ro.batch.attention_mask, config.sampling_temperature)   # with gradient
    adv, returns = compute_gae(ro.rewards, ro.values, ro.mask, config.gamma, config.lam)           # from the values when sampled
    adv = whiten(adv, ro.mask)                                                  # mean 0, std 1 over the batch's tokens
    pg_loss = -masked_mean(adv * logp, ro.mask)
    vf_loss = 0.5 * masked_mean((values - returns) ** 2, ro.mask)               # regress V(s_t) on the lambda-returns
    loss = pg_loss + config.vf_coef * vf_loss
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
    opt.step()
    return loss.item()

# %% [markdown]
# The check: one step of it and one of the library's `pg.pg_step` (what `pg.train_pg` runs after each rollout), on deep copies of the untrained policy of section 2, each with its own fresh optimiser from `pg.make_optimizer`, on the same rollout `ro`, must leave every parameter in the same place:

# %%
mine, lib = copy.deepcopy(policy), copy.deepcopy(policy)
loss_mine = my_pg_step(mine, pg.make_optimizer(mine, config.lr, config.value_lr), ro, config)
out = pg.pg_step(lib, pg.make_optimizer(lib, config.lr, config.value_lr), ro, config)
moved = max(float((p - q).detach().abs().max()) for p, q in zip(mine.parameters(), policy.parameters()))
assert all(torch.allclose(p, q, rtol=1e-6, atol=1e-8) for p, q in zip(mine.parameters(), lib.parameters()))
assert abs(loss_mine - out["loss"]) < 1e-6 and moved > 1e-4
print(f"loss {loss_mine:.6f} = library {out['loss']:.6f}; the step moved a parameter by up to {moved:.2e}; "
      f"all {sum(1 for _ in policy.parameters())} parameter tensors agree")
del mine, lib

# %% [markdown]
# Now `config.steps` such steps, each on a fresh rollout:

# %%
seed_everything(0)
policy = pg.new_policy(ref, config.critic)
h_gae = pg.train_pg(policy, ref, tok, train_prompts, config, evaluator, name="GAE actor-critic + KL")
dashboard(h_none, h_mean, h_gae, extra=("score", "explained_variance"), title="policy gradients on the gold reward"); plt.show()
final = h_gae.final()
print(final)
print(f"the critic's explained variance: step 1 {h_gae.rows[1]['explained_variance']:+.3f}, last step {h_gae.last('explained_variance'):+.3f}")

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
#
# The four steps for **one** prefix, written out with $\lambda \in \{0, 1\}$ and fewer continuations (16 for the truth, 8 estimates), and checked against `pg.lambda_experiment` run on the same prompt with the same seed:

# %%
prompt_one, s1, n_truth, n_est = world.make_prompts(1, "train", seed=30), 30, 16, 8
first = rl.rollout(policy, ref, tok, prompt_one, rl.gold_reward_fn, config, seed=s1)     # step 1: one completion ...
cols = first.mask[0].nonzero().flatten().tolist()
k = int(np.random.default_rng(s1).integers(0, len(cols) - 1)); t = cols[k]               # ... and its token a_t, not the last
prefix = tok.decode(first.batch.input_ids[0, :t + 1][first.batch.attention_mask[0, :t + 1].bool()][1:])   # s_{t+1}, as text
cont = rl.rollout(policy, ref, tok, [prefix] * (n_truth + n_est), rl.gold_reward_fn,
                  dataclasses.replace(config, max_new_tokens=config.max_new_tokens - k - 1), seed=s1 * 7919 + 1)
r_t, v_t, c0, rows = first.rewards[0, t], first.values[0, t], cont.mask.argmax(-1), torch.arange(n_truth + n_est)
G_cont = (cont.rewards * cont.mask).sum(-1)                                           # gamma = 1 returns from s_{t+1}
truth = r_t + G_cont[:n_truth].mean() - v_t                                            # step 2: A* = Q(s_t, a_t) - V(s_t)
mine = {}
for lam in (0.0, 1.0):                                                                 # step 3: GAE along the other continuations
    a_next = compute_gae(cont.rewards, cont.values, cont.mask, 1.0, lam)[0][rows, c0]
    est = (r_t + cont.values[rows, c0] - v_t + lam * a_next)[n_truth:]                 # delta_t + gamma * lambda * A_{t+1}
    mine[lam] = (est.var().item(), (est.mean() - truth).item() ** 2)                   # step 4: variance, squared bias
lib = pg.lambda_experiment(policy, ref, tok, prompt_one, config, lams=(0.0, 1.0), n_truth=n_truth, n_est=n_est, seed=s1, progress=False)
assert config.gamma == 1.0 and np.allclose([mine[0.0], mine[1.0]], list(zip(lib["variance"], lib["bias2"])), rtol=1e-4, atol=1e-6)
print(f"prefix '{prefix}': (variance, bias^2) at lambda 0 {np.round(mine[0.0], 4)}, at lambda 1 {np.round(mine[1.0], 4)}: as the library")

# %% [markdown]
# The same, averaged over `config.lambda_prefixes` prompts and five values of $\lambda$, with 64 continuations for the truth and 32 estimates:

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
# ## 8. Length as a hack
#
# Everything so far optimised the gold judge. Real RLHF optimises a *learned* reward, and learned rewards leak; the best-documented leak is **length**: reward models tend to prefer longer answers, and RL then makes answers longer rather than better (Singhal et al. 2023, *A long way to go: investigating length correlations in RLHF*, arXiv:2310.03716). We break our reward on purpose, paying $c = 0.1$ per word on top of the gold score,
#
# $$ r_\text{leaky}(x, y) = r^*(x, y) + c \cdot \text{words}(y), $$
#
# and rerun section 4's REINFORCE with the mean baseline (same seed, same prompts, same steps) on it. The evaluation still uses the gold judge.

# %%
leak = 0.1

def leaky_reward_fn(prompts, completions, finished):                 # the gold judge + c per word
    gold = rl.gold_reward_fn(prompts, completions, finished)
    return [g + leak * len(c.split()) for g, c in zip(gold, completions)]

seed_everything(0)
pi_leak = pg.new_policy(ref, "shared")
h_leak = pg.train_pg(pi_leak, ref, tok, train_prompts, mean_cfg, evaluator, reward_fn=leaky_reward_fn,
                     name=f"same, reward + {leak} per word")
dashboard(h_mean, h_leak, extra=("score", "length"), title="an honest and a leaky reward (score: the reward each run optimised)"); plt.show()

# %% [markdown]
# The two runs at their last step, on the held-out prompts (the gold judge), and two of the leaky policy's reviews:

# %%
for name, h in [("honest", h_mean), (f"leaky (+{leak}/word)", h_leak)]:
    print(f"{name:18s} reward it optimised {h.last('score'):+.3f} | length {h.last('length'):5.1f} words | gold {h.last('gold_reward'):+.3f} | "
          f"valid {h.last('valid_rate'):.3f} | win-rate {h.last('win_rate'):.3f} | KL {h.last('kl'):.2f}")
b_leak = evaluator.sample(pi_leak.lm)
print("\n".join(f"  {p} {c}" for p, c in zip(b_leak.prompts[:2], b_leak.completions[:2])))
assert h_leak.last("length") > h_mean.last("length") + 3 and h_leak.last("score") > h_mean.last("score")
assert h_leak.last("gold_reward") < h_mean.last("gold_reward") - 0.05

# %% [markdown]
# The leaky run ends with the higher reward of the two, by its own measure, its reviews grow longer, and the gold judge likes them less than the honest run's (asserted: higher training reward, longer by more than 3 words, gold lower by more than 0.05). Its training log shows a reward going up; only a judge that does not share the leak shows the damage. Lecture 03 meets reward hacking with a learned reward model, where the leak is not planted but found by the policy. Defences in the literature: a reward model trained on length-balanced pairs or with a length penalty (Singhal et al. 2023), the KL penalty to the reference, and, in evaluation, length-controlled win-rates (Dubois et al. 2024, arXiv:2404.04475).

# %% [markdown]
# ## 9. Results
#
# The headline numbers, for `python -m alignlab course` (the same run from the command line: `python -m alignlab run pg --profile quick`):

# %%
alignlab.report(h_gae, notebook="02_policy_gradients", score=round(h_gae.last("score"), 4),
                reinforce_win_rate=round(h_none.last("win_rate"), 4), mean_baseline_win_rate=round(h_mean.last("win_rate"), 4),
                grad_var_ratio=round(var_shift[15] / var_baseline, 3), logged_grad_var_ratio=round(float(ratio), 3), lambda_variance=[round(x, 4) for x in v], lambda_bias2=[round(x, 4) for x in b2])

# %% [markdown]
# ## 10. Summary
#
# * An LLM is an RL agent whose state is the text so far, whose action is the next token, and whose episode is one completion; the reward arrives at the end (plus a per-token KL penalty that keeps it near $\pi_\text{ref}$).
# * REINFORCE: $\nabla J = \mathbb{E}[\sum_t \nabla\log\pi(a_t\mid s_t)\,G_t]$, one forward/backward on sampled completions. Unbiased, noisy.
# * A baseline $b(s)$ that does not depend on the action keeps the gradient unbiased and removes the part of the noise that comes from the reward's offset; it matters most once the rewards are far from 0. A batch mean includes each episode's own return, which shrinks the gradient by $(B-1)/B$ (measured on the bandit); the leave-one-out mean (RLOO) does not.
# * A value head gives the state-dependent baseline $V(s_t)$, TD errors $\delta_t$, and GAE: $\hat A_t = \sum_l (\gamma\lambda)^l\delta_{t+l}$, from one-step TD ($\lambda=0$: no variance here, biased by the critic) to Monte-Carlo minus the value ($\lambda=1$: unbiased, noisiest).
# * With GAE($\lambda{=}0.95$), whitening and $\beta = 0.05$, the tiny GPT-2 beats the SFT reference on most held-out prompts while staying valid. The whole update is a dozen lines (section 6), checked against the library's step.
# * A reward that pays for length gets length: the same REINFORCE run on gold + 0.1 per word wrote longer reviews that the gold judge liked less.
#
# **Pitfalls, and how to see them in the logs**
# * *Off-by-one between log-probs and values.* If column $t$ held $V(s_{t+1})$, a value that has already seen $a_t$, the baseline would cancel the very action it is meant to judge. Symptom: `explained_variance` looks good but the policy barely improves. `rl`'s diagram and `test_values_are_for_the_state_before_each_action` pin the alignment.
# * *Reward on the last column instead of the last real token.* With padding, short completions would be scored on a pad token. Symptom: `score` and the sum of rewards disagree; the test `test_score_lands_on_last_real_completion_token` catches it.
# * *Log-probs at another temperature than sampling.* They then belong to another distribution than the one that produced the tokens: the gradient and the KL penalty are silently wrong. `rl.rollout` computes both at `config.sampling_temperature`; lecture 03's step-0 check (PPO ratio exactly 1) catches a mismatch.
# * *Whitening REINFORCE's returns* is a baseline in disguise (it subtracts the mean): compare estimators with it switched off.
# * *A critic that learns nothing.* `explained_variance` near 0 or negative. Small $\lambda$ then gives advantages that are mostly the critic's noise; keep $\lambda$ near 1 (or give the critic its own trunk, as here).
# * *KL running away.* `rollout_kl` and `kl_penalty` climbing steadily, valid rate falling: raise `kl_coef` or lower `lr`.
# * *A reward that leaks length.* `length` climbing with the training `score` while the gold reward (or any held-out judge that does not share the leak) stalls or falls: section 8.
#
# ## 11. Exercises
#
# 1. Train with `critic="shared"` (`dataclasses.replace(config, critic="shared")`). Compare `explained_variance` and the $\lambda$ experiment. Why does a 2-layer model's last hidden state not know the review's sentiment?
# 2. Implement the leave-one-out baseline $b_i = \frac{1}{B-1}\sum_{j\ne i} G_j$ (RLOO) with `pg.per_episode_grads` and compare its variance with the batch mean and with the optimal constant $b^*$ of section 4.
# 3. Set `kl_coef` to 0 and to 0.2. How do the final KL, win-rate and valid rate move? Where would you stop?
# 4. Use $\gamma = 0.9$. Which reviews does the policy now prefer, and why (hint: how does a reward at the end reach the first token)?
# 5. Re-run the $\lambda$ experiment with the critic of step 0 (all zeros). Predict the bias at $\lambda = 0$ before you look.
