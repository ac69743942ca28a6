# %% [markdown]
# # Lecture 03: PPO-clip RLHF against a learned reward model
#
# **Objectives.** By the end of this notebook you can
# 1. state the RLHF objective $\max_\pi \mathbb{E}[r] - \beta\,\mathrm{KL}(\pi\,\|\,\pi_\text{ref})$ and say what the KL term protects against (reward hacking, mode collapse);
# 2. go from TRPO's constrained surrogate to the PPO paper's two first-order answers, the clipped objective (PPO-clip) and the KL-penalty objective (PPO-KL), and read the clip's plot for positive and negative advantages;
# 3. build every part of the PPO loop for a language model (rollouts, reward-model score, per-token KL penalty, value head and GAE, minibatch epochs, clipped policy and value losses, gradient clipping) and write its whole update step yourself, checked against the library's;
# 4. read PPO's health metrics (clip fraction, approximate KL, value loss, explained variance), and say where this lecture's critic sits and what it learns;
# 5. replace the fixed $\beta$ of the reward's KL penalty by Ziegler et al.'s adaptive controller on the KL to $\pi_\text{ref}$ (not to be confused with PPO-KL), and **watch reward hacking happen** when $\beta = 0$.
#
# **Prerequisites.** Lecture 01 (the Bradley-Terry reward model, cached) and lecture 02 (policy gradients, value head, GAE).
#
# **Run time.** `quick` profile (2-core CPU): about 47 s with the SFT and reward models cached (41 s measured under nbval on an idle 2-core machine before section 7's PPO-KL run was added, which adds about 6 s; lectures 00 and 01 cache the models, otherwise they are trained first, about 1.5 minutes more). Four PPO runs of 40 iterations and one of 20 take most of it. `full` profile (one GPU): not measured yet (no GPU was available when this course was built).

# %% [markdown]
# ## 1. Set-up
#
# We need three models: the SFT model, which is both the starting point of the policy and the frozen **reference** $\pi_\text{ref}$ (lecture 00); the **reward model** (RM) $r_\phi$ trained on noisy preference pairs in lecture 01; and the shared `Evaluator`, which scores policies with the **gold judge** on held-out prompts. PPO only ever sees the RM. The gold judge is our window on the truth.

# %%
import copy
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown

import alignlab
from alignlab import losses, metrics, world
from alignlab.course.widgets import interact
from alignlab.evaluation import Evaluator
from alignlab.methods import ppo, rl
from alignlab.methods.rm import load_reward_model
from alignlab.models import get_device, get_profile, seed_everything
from alignlab.pipeline import load_sft
from alignlab.plots import dashboard
from alignlab.training import epochs

t_start = time.time()
profile, device = get_profile(), get_device()
ref, tok = load_sft(profile, device=device)          # pi_ref, cached (lecture 00)
rm, _ = load_reward_model(profile, device=device)    # r_phi, cached (lecture 01)
rm_fn = ppo.rm_reward_fn(rm, tok)                    # (prompts, completions, finished) -> scores
evaluator = Evaluator(ref, tok, profile=profile)
print(f"profile={profile.name}  device={device}  eval prompts={len(evaluator.prompts)}")

# %% [markdown]
# ## 2. The RLHF objective, and why it has a KL term
#
# RLHF fine-tunes the policy $\pi_\theta$ to score well under the reward model, without drifting far from the reference:
#
# $$ \max_{\pi_\theta}\; \mathbb{E}_{x\sim D,\; y\sim\pi_\theta(\cdot|x)}\big[r_\phi(x, y)\big] \;-\; \beta\, \mathrm{KL}\big(\pi_\theta(\cdot|x)\,\|\,\pi_\text{ref}(\cdot|x)\big). $$
#
# Why not just maximise $r_\phi$? The RM is a **proxy**: it learned from pairs of SFT samples, so it is only right near the SFT distribution. Far from it, it can love text no human would. Look at what our RM thinks of a few reviews:

# %%
examples = [("the acting", "was really wonderful ."), ("the acting", "was great . the music was lovely ."),
            ("the acting", "was dull ."), ("the acting", "great great great great"),
            ("the acting", "beautiful beautiful"), ("the acting", "was wonderful wonderful .")]
ex_p, ex_c = [p for p, _ in examples], [c for _, c in examples]
ex_rm = rm_fn(ex_p, ex_c, [True] * len(examples))
for (p, c), r in zip(examples, ex_rm):
    print(f"RM {r:+.2f}   gold {world.gold_reward(p, c):+.2f}   {p} | {c}")
honest, dull, degen = ex_rm[:2], ex_rm[2], ex_rm[3:]
print(f"best degenerate {max(degen):+.2f} vs best honest praise {max(honest):+.2f}; worst degenerate {min(degen):+.2f} vs dull {dull:+.2f}")
assert max(degen) > max(honest) - 0.25 and min(degen) > dull + 1.0
assert all(world.gold_reward(p, c) == -1 for p, c in examples[3:])

# %% [markdown]
# The RM scores every degenerate string far above the dull review and its favourite one about as high as the best honest praise, or higher (printed above; asserted below); the gold judge gives them $-1$. A policy that maximises $r_\phi$ alone will find such strings: that is **reward hacking**. The KL term makes the policy pay for every nat it moves away from $\pi_\text{ref}$, which gives such strings almost no probability.
#
# The objective also has a closed-form optimum (derived in lecture 04): $\pi^*(y|x) = \pi_\text{ref}(y|x)\, e^{r(x,y)/\beta} / Z(x)$, with optimal value $\beta \log Z(x)$. As $\beta \to 0$ it puts all its mass on the RM's single favourite answer: **mode collapse**, whatever that answer is. Let us check both claims on a toy problem whose "answers" are the six reviews above, with $\pi_\text{ref}$ the SFT model's probabilities renormalised over them:

# %%
from alignlab.sampling import encode, sequence_logprobs

with torch.no_grad():
    log_ref = sequence_logprobs(ref, encode(tok, ex_p, ex_c, device=device)).cpu()
p_ref, r_toy = torch.softmax(log_ref, 0), torch.tensor(ex_rm)

def objective(p, beta):  # E_p[r] - beta * KL(p || p_ref)
    return (p * r_toy).sum(-1) - beta * (p * (p / p_ref).log()).sum(-1)

def optimum(beta):
    return torch.softmax(log_ref + r_toy / beta, 0)

# %% [markdown]
# The optimum beats 5,000 random distributions, and its value is $\beta\log Z$:

# %%
beta = 0.1
others = torch.distributions.Dirichlet(torch.ones(6)).sample((5000,))
best = objective(optimum(beta), beta)
log_Z = torch.logsumexp(log_ref.log_softmax(0) + r_toy / beta, 0)
print(f"optimum {best:.4f}   best random {objective(others, beta).max():.4f}   beta log Z {beta * log_Z:.4f}")
assert best >= objective(others, beta).max() and torch.isclose(best, beta * log_Z, atol=1e-5)

# %% [markdown]
# Turn $\beta$ down and watch the optimal policy leave the honest reviews for the RM's favourite degenerate string (right: the optimum's total mass on the three invalid strings, against $\beta$) (the slider is live in Jupyter; executed headless, `alignlab.course.widgets.interact` draws the default, $\beta = 0.1$):

# %%
labels, degenerate = [c[:22] for c in ex_c], [3, 4, 5]          # the last three are invalid
betas = np.logspace(-3, 1, 81)
hack_mass = [optimum(b)[degenerate].sum().item() for b in betas]

def show_optimum(log10_beta=-1.0):
    fig, axes = plt.subplots(1, 2, figsize=(10, 2.7), gridspec_kw={"width_ratios": [3, 2]})
    axes[0].bar(range(6), p_ref, width=0.4, label="π_ref (renormalised)")
    axes[0].bar(np.arange(6) + 0.4, optimum(10 ** log10_beta), width=0.4, label=f"π*, β={10 ** log10_beta:.3g}")
    axes[0].set_xticks(np.arange(6) + 0.2, labels, rotation=20, fontsize=7); axes[0].legend(fontsize=8)
    axes[1].semilogx(betas, hack_mass); axes[1].axvline(10 ** log10_beta, c="grey", ls="--")
    axes[1].set_xlabel("β"); axes[1].set_title("π* mass on the degenerate strings", fontsize=9)
    plt.tight_layout(); plt.show()

interact(show_optimum, log10_beta=widgets.FloatSlider(value=-1.0, min=-3.0, max=1.0, step=0.25));

# %% [markdown]
# ## 3. From TRPO to PPO-clip
#
# Lecture 02's policy gradient maximises $L^{PG}(\theta) = \hat{\mathbb{E}}_t[\log\pi_\theta(a_t|s_t)\,\hat A_t]$ with **one** gradient step per batch of samples: after the step the samples are off-policy. To reuse a batch for several steps, weight each token by the **probability ratio** to the policy that sampled it, $\rho_t(\theta) = \pi_\theta(a_t|s_t) / \pi_{\theta_\text{old}}(a_t|s_t)$. **TRPO** maximises this surrogate inside a trust region:
#
# $$ \max_\theta\; \hat{\mathbb{E}}_t\big[\rho_t(\theta)\,\hat A_t\big] \quad\text{subject to}\quad \hat{\mathbb{E}}_t\big[\mathrm{KL}\big(\pi_{\theta_\text{old}}(\cdot|s_t)\,\|\,\pi_\theta(\cdot|s_t)\big)\big] \le \delta. $$
#
# It works well but needs conjugate gradients and a line search. The PPO paper (Schulman et al. 2017, [arXiv:1707.06347](https://arxiv.org/abs/1707.06347)) gets a similar effect with first-order steps, in two ways. **PPO-clip** (its eq. 7, the one RLHF uses and this lecture trains) removes the incentive to push $\rho_t$ outside $[1-\epsilon, 1+\epsilon]$; **PPO-KL** (eq. 8) puts the KL to $\pi_{\theta_\text{old}}$ into the objective as a penalty instead (section 7):
#
# $$ L^{CLIP}(\theta) = \hat{\mathbb{E}}_t\Big[\min\big(\rho_t\,\hat A_t,\; \mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\,\hat A_t\big)\Big]. $$
#
# In code, per token:

# %%
def clipped_objective(ratio, adv, eps=0.2):
    return torch.minimum(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)

# %% [markdown]
# Plot it against the ratio. With $A > 0$ the objective stops growing at $1+\epsilon$ (no reason to make a good token *much* more likely in one go); with $A < 0$ it stops at $1-\epsilon$. On the other side it is *not* clipped: a step that made a good token less likely (or a bad one more likely) keeps the full gradient that pushes it back (nothing guarantees it is undone: the other tokens' gradients move the same weights). Where the line is flat the gradient is 0.

# %%
ratios = torch.linspace(0, 2, 201)

def plot_clip(eps=0.2):
    fig, axes = plt.subplots(1, 2, figsize=(8, 2.6), sharey=True)
    for ax, A in zip(axes, (1.0, -1.0)):
        ax.plot(ratios, ratios * A, "--", c="grey", label="ρ·A (TRPO surrogate)")
        ax.plot(ratios, clipped_objective(ratios, torch.tensor(A), eps), lw=2, label="min(ρA, clip(ρ)A)")
        ax.axvspan(1 - eps, 1 + eps, alpha=0.1); ax.set_title(f"A = {A:+.0f}"); ax.set_xlabel("ratio ρ = π/π_old")
    axes[0].legend(fontsize=8); plt.tight_layout(); plt.show()

interact(plot_clip, eps=widgets.FloatSlider(value=0.2, min=0.05, max=0.5, step=0.05));

# %% [markdown]
# The library's `losses.ppo_clip_loss` is minus the masked token mean of this objective. Check it on random tensors with padding:

# %%
B, T = 4, 7
logp_new, logp_old, adv = torch.randn(B, T) * 0.3 - 2, torch.randn(B, T) * 0.3 - 2, torch.randn(B, T)
mask = (torch.arange(T) >= torch.tensor([[0], [2], [3], [5]])).float()     # left padding
mine = -(clipped_objective(torch.exp(logp_new - logp_old), adv) * mask).sum() / mask.sum()
lib, _ = losses.ppo_clip_loss(logp_new, logp_old, adv, mask, clip_eps=0.2)
print(f"notebook {mine:.6f}   library {lib:.6f}")
assert torch.isclose(mine, lib, atol=1e-6)

# %% [markdown]
# ## 4. The PPO loop, one part at a time
#
# One PPO **iteration** is: a rollout, then advantages, then several epochs of minibatch updates. We build one iteration by hand with the library's pieces, then let `ppo.train_ppo` repeat it. Its settings live in one dataclass:

# %%
config = ppo.PPOConfig.for_profile(profile)
print(config)

# %% [markdown]
# ### 4.1 Rollout: sample from the policy
#
# The policy is a copy of the SFT model plus a **value head** (lecture 02's `PolicyWithValue`; the head starts at exactly 0). Where the head sits is `config.critic`: here `"shared"`, the head reads the policy's own last hidden state, so one transformer pass gives both the token log-probs and the values $V(s_t)$; lecture 02 chose `"separate"` (the head on its own copy of the SFT transformer; its reason: in its runs against the gold judge a shared-trunk critic stayed at explained variance $\approx 0$). Section 5 measures what this one learns. `rl.rollout` samples one completion per prompt, **left-padded** so that all prompts end in the same column, at `config.sampling_temperature`, and records without gradient everything an update needs. Every log-prob (the sampling policy's "old" ones, the reference's, and later the new ones) is computed at that **same temperature**: the ratio compares the distributions that actually produced the tokens.

# %%
seed_everything(0)
policy = ppo.new_policy(ref, config.critic)
prompts = world.make_prompts(config.batch_size, "train", seed=0)
ro = rl.rollout(policy, ref, tok, prompts, rm_fn, config, seed=1)
print("input_ids", tuple(ro.batch.input_ids.shape), "| completion tokens per row:", ro.mask.sum(-1)[:8].int().tolist(), "...")
for p, c, s in list(zip(ro.batch.prompts, ro.batch.completions, ro.scores))[:3]:
    print(f"RM {s:+.2f}  {p} | {c}")

# %% [markdown]
# ### 4.2 The reward: RM score at the end, KL penalty on every token
#
# The RM scores the whole review once, so its score is paid on the **last real completion token** (the `<eos>`, or the last token of a cut-off completion). Every completion token also pays the KL penalty $-\beta(\log\pi(a_t|s_t) - \log\pi_\text{ref}(a_t|s_t))$, so the rewards of one sample sum to $r_\phi(x,y) - \beta\,\mathrm{KL}_{k1}(y)$. Written out:

# %%
def per_token_rewards(score, logp, logp_ref, mask, beta):
    rewards = -beta * (logp - logp_ref) * mask
    last = mask.shape[1] - 1 - mask.flip(-1).argmax(-1)        # column of the last 1 in each row
    rewards[torch.arange(len(score)), last] += score
    return rewards

# %% [markdown]
# One row of the rollout, column by column (column $t$ holds the action $a_t$, its log-prob, the value of the state before it, and its reward). At iteration 0 the policy *is* the reference, so every KL term is exactly 0 and only the score remains:

# %%
i = int(ro.mask.sum(-1).argmin())                               # the shortest completion: padding on both sides
on = ro.mask[i].nonzero().flatten()
cols = range(int(on[0]) - 2, min(int(on[-1]) + 3, ro.mask.shape[1]))
print(f"{'token':>10} {'mask':>4} {'logp':>7} {'logp_ref':>8} {'value':>6} {'reward':>7}")
for t in cols:
    print(f"{tok.convert_ids_to_tokens(int(ro.batch.input_ids[i, t])):>10} {int(ro.mask[i, t]):>4} "
          f"{ro.logprobs[i, t]:7.3f} {ro.ref_logprobs[i, t]:8.3f} {ro.values[i, t]:6.2f} {ro.rewards[i, t]:7.3f}")

# %% [markdown]
# Check the notebook's version against the library's `rl.token_rewards` on this rollout's masks, with random log-probs so the KL terms are not 0:

# %%
lp, lp_ref = torch.randn_like(ro.logprobs) - 2, torch.randn_like(ro.logprobs) - 2
mine = per_token_rewards(ro.scores, lp, lp_ref, ro.mask, beta=0.1)
lib = rl.token_rewards(ro.scores, lp, lp_ref, ro.mask, kl_coef=0.1)
assert torch.allclose(mine, lib, atol=1e-6)
assert torch.allclose(ro.rewards.sum(-1), ro.scores)           # iteration 0: KL = 0, rewards = score
print("max |notebook - library| =", (mine - lib).abs().max().item())

# %% [markdown]
# ### 4.3 Advantages: GAE from the value head, then whitening
#
# Lecture 02's GAE turns rewards and values into advantages, $\delta_t = r_t + \gamma V(s_{t+1}) - V(s_t)$ and $\hat A_t = \sum_k (\gamma\lambda)^k \delta_{t+k}$, and value targets $R_t = \hat A_t + V(s_t)$. PPO then **whitens** the advantages (mean 0, standard deviation 1 over the batch's tokens), so that the step size does not depend on the reward's scale. The value head still regresses on the unwhitened $R_t$. With the zero-initialised head, $V = 0$ at iteration 0, so $\delta_t = r_t$ and the advantages are the rewards-to-go discounted by $\gamma\lambda$.

# %%
adv, returns = ppo.advantages(ro, config)                       # compute_gae, then whiten
valid = ro.mask.bool()
print(f"whitened advantages: mean {adv[valid].mean():+.2e}, std {adv[valid].std():.4f}")
assert abs(adv[valid].mean()) < 1e-5 and abs(adv[valid].std() - 1) < 1e-4
assert torch.allclose(returns[:, -1], ro.rewards[:, -1])       # last column: R = r (V = 0, episode over)

# %% [markdown]
# ### 4.4 One minibatch: clipped policy loss + clipped value loss
#
# A minibatch runs the policy on its rows (same padded columns, same temperature) and computes the ratio. **Before any update the ratio must be exactly 1**: a ratio that is not 1 at the first minibatch means the old log-probs were computed differently (another temperature, mask, dropout or padding), and PPO would then clip noise.

# %%
idx = torch.arange(config.minibatch)
logp, values = policy(ro.batch.input_ids[idx], ro.batch.attention_mask[idx], config.sampling_temperature)
ratio = torch.exp(logp - ro.logprobs[idx])[ro.mask[idx].bool()]
print(f"first minibatch: ratio min {ratio.min().item()}, max {ratio.max().item()}")
assert (ratio == 1).all()

# %% [markdown]
# The value head's loss is clipped the same way (OpenAI baselines, and most RLHF code): a new value may not move more than `vf_clip` from its rollout value "for free". (Engstrom et al. 2020 found this clip does not clearly help; it is here because you will meet it everywhere.)
#
# $$ L^{V} = \tfrac12\, \hat{\mathbb{E}}_t \max\big((V_t - R_t)^2,\; (\mathrm{clip}(V_t, V^\text{old}_t - \epsilon_v, V^\text{old}_t + \epsilon_v) - R_t)^2\big) $$

# %%
def clipped_value_loss(v, v_old, R, mask, eps=0.2):
    v_clip = torch.clamp(v, v_old - eps, v_old + eps)
    per_token = 0.5 * torch.maximum((v - R) ** 2, (v_clip - R) ** 2)
    return (per_token * mask).sum() / mask.sum()

v, v_old, R = torch.randn(B, T), torch.randn(B, T), torch.randn(B, T)
lib, _ = losses.value_loss_clipped(v, v_old, R, mask, clip_eps=0.2)
assert torch.isclose(clipped_value_loss(v, v_old, R, mask), lib, atol=1e-6)

# %% [markdown]
# The total minibatch loss is $L^{CLIP}$'s negative plus `vf_coef` times $L^V$; `ppo.minibatch_loss` computes it with the library's pure functions and returns the statistics PPO is judged by. Every logged metric is defined once, in `alignlab.metrics` (the same table generates `docs/metrics.md`); these are the ones to watch:

# %%
Markdown(metrics.table(["clipfrac", "approx_kl", "ratio_mean", "vf_loss", "explained_variance"]))

# %% [markdown]
# (`metrics.table(ppo.METHOD.metrics)` lists everything `train_ppo` logs.) At the first minibatch the sanity numbers are exact:

# %%
loss, stats = ppo.minibatch_loss(policy, ro, adv, returns, idx, config)
print({k: round(v, 5) for k, v in stats.items()})
assert stats["ratio_mean"] == 1.0 and stats["approx_kl"] == 0.0 and stats["clipfrac"] == 0.0

# %% [markdown]
# **Pitfall, seen in the numbers.** Compute the new log-probs at another temperature than the one the tokens were sampled at, and PPO already "sees" a KL and clips tokens before it has taken a single step:

# %%
wrong = ppo.PPOConfig.for_profile(profile, sampling_temperature=0.7)
_, bad = ppo.minibatch_loss(policy, ro, adv, returns, idx, wrong)
print(f"temperature mismatch, first minibatch: approx_kl {bad['approx_kl']:.3f}, clipfrac {bad['clipfrac']:.3f}")
assert bad["approx_kl"] > 0.01 and bad["clipfrac"] > 0.05

# %% [markdown]
# ### 4.5 The update step: several epochs over minibatches, with gradient clipping
#
# This is PPO's whole training step, what runs after every rollout: the advantages once (4.3), then `ppo_epochs` passes over the rollout, each in a fresh random order cut into minibatches of `config.minibatch` completions; each minibatch gives the loss of 4.4 and one AdamW step, its gradient norm clipped to `max_grad_norm`. Written out:

# %%
def my_ppo_update(policy, opt, ro, config, generator):
    adv, returns = ppo.advantages(ro, config)                  # GAE, whitened (4.3): once per rollout
    policy.train()
    order = epochs(len(ro), config.minibatch, generator)       # minibatches of row indices, reshuffled every epoch
    for _ in range(config.ppo_epochs * (len(ro) // config.minibatch)):
        idx = torch.tensor(next(order), device=ro.mask.device)
        logp, values = policy(ro.batch.input_ids[idx], ro.batch.attention_mask[idx], config.sampling_temperature)
        m = ro.mask[idx]
        pg_loss, _ = losses.ppo_clip_loss(logp, ro.logprobs[idx], adv[idx], m, config.clip_eps)
        vf_loss, _ = losses.value_loss_clipped(values, ro.values[idx], returns[idx], m, config.vf_clip)
        loss = pg_loss + config.vf_coef * vf_loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
        opt.step()

# %% [markdown]
# `ppo.ppo_update` is the library's version (it also returns the statistics of every minibatch step). One update of each, on two copies of this policy, from the same rollout and the same shuffling seed: every parameter (the value head's included) must land in the same place. The optimiser has one learning rate for the LM and one for the value head:

# %%
mine = copy.deepcopy(policy)
my_ppo_update(mine, ppo.make_optimizer(mine, config.lr, config.value_lr), ro, config, torch.Generator().manual_seed(0))
before = copy.deepcopy(policy)
opt = ppo.make_optimizer(policy, config.lr, config.value_lr)
steps = ppo.ppo_update(policy, opt, ro, config, torch.Generator().manual_seed(0))   # the library's step, in place
moved = max((p - q).abs().max().item() for p, q in zip(policy.parameters(), before.parameters()))
gap = max((p - q).abs().max().item() for p, q in zip(mine.parameters(), policy.parameters()))
print(f"largest weight change {moved:.2e}; largest difference between the two updates {gap:.1e}")
assert moved > 1e-4 and all(torch.allclose(p, q, rtol=0, atol=1e-7) for p, q in zip(mine.parameters(), policy.parameters()))

# %% [markdown]
# Within one iteration the policy moves away from $\pi_\text{old}$: watch `approx_kl` and `clipfrac` grow from exactly 0 over the minibatch steps (dashed lines: epoch boundaries), and the clip start to hold the ratio back.

# %%
fig, axes = plt.subplots(1, 3, figsize=(10, 2.5))
for ax, key in zip(axes, ["approx_kl", "clipfrac", "grad_norm"]):
    ax.plot([s[key] for s in steps], "o-"); ax.set_title(key); ax.set_xlabel("minibatch step")
for ax in axes[:2]:
    for e in range(1, config.ppo_epochs):
        ax.axvline(e * config.batch_size // config.minibatch - 0.5, c="grey", lw=0.6, ls="--")
plt.tight_layout(); plt.show()
print(f"{len(steps)} minibatch steps; approx_kl {steps[0]['approx_kl']} -> {steps[-1]['approx_kl']:.4f}, "
      f"clipfrac {steps[0]['clipfrac']} -> {steps[-1]['clipfrac']:.3f}; explained variance before the update: {steps[0]['explained_variance']:.3f}")
assert steps[0]["approx_kl"] == 0 and steps[-1]["approx_kl"] > 0 and steps[-1]["clipfrac"] > 0

# %% [markdown]
# **Which tokens count as clipped?** Our `clipfrac` (as TRL's older `PPOTrainer`) counts the tokens where the clip is *active*: ratio above $1+\epsilon$ with $A > 0$, or below $1-\epsilon$ with $A < 0$ (those get no gradient). CleanRL counts every token with $|\rho - 1| > \epsilon$, on either side, so its number is larger, and healthy ranges quoted for it are not ours. Both, on this rollout after the update:

# %%
with torch.no_grad():
    logp_after, _ = policy(ro.batch.input_ids, ro.batch.attention_mask, config.sampling_temperature)
on = ro.mask.bool()
rho, a = torch.exp(logp_after - ro.logprobs)[on], ppo.advantages(ro, config)[0][on]
ours = (((a > 0) & (rho > 1 + config.clip_eps)) | ((a < 0) & (rho < 1 - config.clip_eps))).float().mean().item()
cleanrl = ((rho - 1).abs() > config.clip_eps).float().mean().item()
print(f"after one update: clip active on {ours:.3f} of the tokens (our clipfrac), |ρ - 1| > ε on {cleanrl:.3f} (CleanRL's)")
assert cleanrl >= ours

# %% [markdown]
# ## 5. PPO against the reward model, with a fixed $\beta$
#
# `ppo.train_ppo` repeats the iteration on the shared training loop (`training.train`): each iteration is one rollout of `config.batch_size` fresh prompts and `ppo_epochs` passes of minibatch updates; the shared `Evaluator` measures gold reward, KL and win-rate against $\pi_\text{ref}$ on held-out prompts every `eval_every` iterations. One helper runs each configuration of this notebook:

# %%
def run_ppo(name, **overrides):  # ppo.fit: seed, a fresh policy + value head, train_ppo (what `run ppo` does)
    return ppo.fit(ref, tok, ppo.PPOConfig.for_profile(profile, **overrides), evaluator, rm_fn, name=name)

# %% [markdown]
# A sensible $\beta$ (`kl_coef`) and the other defaults printed in section 4: `steps` iterations, each a rollout of `batch_size` prompts and `ppo_epochs` epochs of minibatches of `minibatch` completions:

# %%
pol_fixed, h_fixed = run_ppo(f"PPO β={config.kl_coef:g}")
dashboard(h_fixed, title=f"PPO-clip against the learned RM (β = {config.kl_coef:g})", extra=("rm_reward",), figsize_per_panel=3.0); plt.show()
print(h_fixed.final())

# %% [markdown]
# PPO's own health metrics for the same run, one point per iteration (means over its minibatch steps; definitions in section 4.4):

# %%
fig, axes = plt.subplots(1, 4, figsize=(12, 2.5))
for ax, key in zip(axes, ["clipfrac", "approx_kl", "vf_loss", "explained_variance"]):
    ax.plot(*h_fixed.series(key)); ax.set_title(key); ax.set_xlabel("PPO iteration"); ax.grid(alpha=0.3)
plt.tight_layout(); plt.show()

# %% [markdown]
# What healthy looks like, in numbers (means over the first and the last 10 iterations): the clip fraction and the approximate KL stay small, inside the ranges of the metric table of section 4.4 (clipfrac below about 0.2, approx_kl below about 0.02: each iteration's change stays inside the trust region); the value loss falls, and the explained variance climbs from 0 as the value head learns:

# %%
def ends(h, key, k=5):  # means of the first k and of the last k logged values
    v = h.series(key)[1]
    return float(np.mean(v[:k])), float(np.mean(v[-k:]))

for key in ("clipfrac", "approx_kl", "vf_loss", "explained_variance"):
    (first, last), v = ends(h_fixed, key, 10), h_fixed.series(key)[1]
    print(f"{key:20s} first 10 iterations {first:+.4f}   last 10 {last:+.4f}   max {max(v):.4f}   median {np.median(v):.4f}")
(vf0, vf1), (ev0, ev1) = ends(h_fixed, "vf_loss", 10), ends(h_fixed, "explained_variance", 10)
assert max(h_fixed.series("clipfrac")[1]) < 0.2 and np.median(h_fixed.series("approx_kl")[1]) < 0.02
assert vf1 < 0.5 * vf0 and ev1 > ev0 + 0.05, (vf0, vf1, ev0, ev1)

# %% [markdown]
# **The critic.** This run's value head shares the policy's trunk (`critic="shared"`): it adds only the head's weights, where `"separate"` adds a whole transformer, and one pass serves both. Against the learned RM it does learn something (the explained variance above); section 9 measures the same head against the gold judge, lecture 02's reward. Switching is one setting, `run_ppo(..., critic="separate")` (exercise 6).

# %%
assert config.critic == "shared"                                 # what this section describes
n_head, n_trunk = sum(p.numel() for p in pol_fixed.value_head.parameters()), sum(p.numel() for p in ref.transformer.parameters())
print(f"critic weights: shared {n_head:,}; separate {n_head + n_trunk:,} (the policy itself has {sum(p.numel() for p in ref.parameters()):,})")

# %% [markdown]
# The learned reward went up, and with it the **gold** reward and the win-rate against the SFT model, at a KL of a few nats, with samples that stay valid reviews. The target for this lecture is a win-rate of at least 0.75 with at least 90% valid samples; the assert sits a little below it so that a real regression fails:

# %%
fixed = h_fixed.final()
assert fixed["win_rate"] >= 0.7 and fixed["valid_rate"] >= 0.85, fixed
fb = evaluator.sample(pol_fixed.lm)
for p, c in list(zip(fb.prompts, fb.completions))[:4]:
    print(f"  {p} | {c}")

# %% [markdown]
# ## 6. Adaptive KL to the reference (Ziegler et al. 2019)
#
# A fixed $\beta$ is hard to pick: the KL it allows depends on the reward's scale and on the task. Ziegler et al. (2019, [arXiv:1909.08593](https://arxiv.org/abs/1909.08593), section 2.2) pick a target KL **to the reference** instead, and adapt the $\beta$ of the reward's KL penalty with a proportional controller: after each rollout, with the measured sequence KL to $\pi_\text{ref}$ and $n$ the samples in the rollout,
#
# $$ e = \mathrm{clip}\Big(\frac{\mathrm{KL}}{\mathrm{KL}_\text{target}} - 1,\, -0.2,\, 0.2\Big), \qquad \beta \leftarrow \beta\,\Big(1 + e\,\frac{n}{\text{horizon}}\Big). $$

# %%
def adaptive_beta(beta, kl, target, n, horizon):
    err = min(max(kl / target - 1, -0.2), 0.2)
    return beta * (1 + err * n / horizon)

ctl, b = losses.AdaptiveKLController(init_beta=0.05, target=3.0, horizon=100), 0.05
for kl in [0.0, 1.0, 3.0, 5.0, 50.0]:           # below target: beta shrinks; above: it grows
    b = adaptive_beta(b, kl, target=3.0, n=48, horizon=100)
    assert abs(ctl.update(kl, 48) - b) < 1e-12
    print(f"KL {kl:5.1f} -> beta {b:.4f}")

# %% [markdown]
# This is not the PPO paper's KL variant (section 7): that one penalises the KL to the policy that *sampled the rollout*, inside the surrogate, as a trust region for each update; this one shapes the *reward* with the KL to the SFT model, and PPO-clip optimises it as before. Start from a $\beta$ that is too small (0.02) and ask for a KL of 3 nats:

# %%
pol_adapt, h_adapt = run_ppo("adaptive β (Ziegler)", kl_coef=0.02, adaptive=True, kl_target=3.0, kl_horizon=100)
fig, axes = plt.subplots(1, 2, figsize=(8, 2.6))
for h in (h_fixed, h_adapt):
    axes[0].plot(*h.series("kl_coef"), label=h.name); axes[1].plot(*h.series("rollout_kl"), label=h.name)
axes[0].set_title("β used at each iteration"); axes[1].set_title("rollout KL (k1, nats per sequence)")
axes[1].axhline(3.0, c="grey", ls="--", lw=0.8, label="target"); axes[1].legend(fontsize=8)
for ax in axes: ax.set_xlabel("PPO iteration")
plt.tight_layout(); plt.show()

# %% [markdown]
# The controller raises $\beta$ while the KL is above target. It can only move $\beta$ by a bounded factor per iteration (at most $1 \pm 0.2\,n/\text{horizon}$), so it reacts with a lag: while $\beta$ is still small the KL overshoots the target and the valid rate dips (the first steps of reward hacking, section 8), until the larger penalty pulls the policy back. In numbers:

# %%
kl_series, valid_series = h_adapt.series("rollout_kl")[1], h_adapt.series("rollout_valid")[1]
peak = int(np.argmax(kl_series))
print(f"rollout KL: peak {kl_series[peak]:.1f} nats at iteration {peak + 1} (target 3), mean of the last 5 {np.mean(kl_series[-5:]):.1f}; "
      f"rollout valid rate: first {valid_series[0]:.2f}, lowest {min(valid_series):.2f}, last 5 {np.mean(valid_series[-5:]):.2f}")
assert kl_series[peak] > 1.5 * 3.0 and np.mean(kl_series[-5:]) < 0.75 * kl_series[peak]   # overshoot, then pulled back
assert min(valid_series) < valid_series[0] - 0.1                                                # the valid rate dips

# %% [markdown]
# Both runs on the shared dashboard:

# %%
dashboard(h_fixed, h_adapt, title="fixed β vs adaptive β (Ziegler et al.)", extra=("rm_reward",)); plt.show()
print("fixed:   ", h_fixed.final(), "\nadaptive:", h_adapt.final(), f" last β = {h_adapt.last('kl_coef'):.3f}")

# %% [markdown]
# ## 7. PPO-KL: the PPO paper's KL penalty instead of the clip
#
# The PPO paper's other way to approximate TRPO's trust region (Schulman et al. 2017, section 4, eq. 8) drops the clip and puts the KL to the policy that sampled the rollout **into the surrogate**, as a penalty:
#
# $$ L^{KLPEN}(\theta) = \hat{\mathbb{E}}_t\Big[\rho_t(\theta)\,\hat A_t \;-\; \beta\,\mathrm{KL}\big(\pi_{\theta_\text{old}}(\cdot|s_t)\,\|\,\pi_\theta(\cdot|s_t)\big)\Big], $$
#
# and adapts $\beta$ after every policy update from the measured $d = \hat{\mathbb{E}}_t[\mathrm{KL}(\pi_{\theta_\text{old}}\|\pi_\theta)]$ and a target $d_\text{targ}$: if $d < d_\text{targ}/1.5$, $\beta \leftarrow \beta/2$; if $d > 1.5\,d_\text{targ}$, $\beta \leftarrow 2\beta$. The three mechanisms of this lecture, side by side:
#
# | | what it does | KL to | when $\beta$ moves |
# |---|---|---|---|
# | PPO-clip (section 3) | no gradient for a token whose ratio left $[1-\epsilon, 1+\epsilon]$ on the side its advantage pushes | $\pi_\text{old}$, implicitly | no $\beta$ |
# | PPO-KL (this section) | a penalty $\beta\,\mathrm{KL}(\pi_\text{old}\|\pi_\theta)$ inside the surrogate, no clip | $\pi_\text{old}$: the policy that sampled the rollout | after every update: $\times 2$ or $/2$ around $d_\text{targ}$ |
# | adaptive KL to the reference (section 6) | the reward pays $-\beta(\log\pi - \log\pi_\text{ref})$ per token | $\pi_\text{ref}$, the SFT model | after every rollout: by at most $\pm 0.2\,n/\text{horizon}$ |
#
# We only see the sampled token $a_t \sim \pi_\text{old}$, not the whole next-token distribution, so the KL is estimated per token with $k_3 = (\rho_t - 1) - \log\rho_t$: unbiased for $\mathrm{KL}(\pi_\text{old}\|\pi_\theta)$ under $\pi_\text{old}$'s samples, and the same number as the `approx_kl` we log. Per token, and checked against `losses.ppo_kl_penalty_loss` on random tensors; the $\times 2 / {/2}$ rule against `losses.ppo_kl_penalty_beta`:

# %%
def klpen_objective(ratio, adv, beta):
    return ratio * adv - beta * ((ratio - 1) - torch.log(ratio))      # rho A - beta k3

def klpen_beta(beta, d, d_targ):
    return beta / 2 if d < d_targ / 1.5 else beta * 2 if d > 1.5 * d_targ else beta

lp_new, lp_old, a = torch.randn(B, T) * 0.3 - 2, torch.randn(B, T) * 0.3 - 2, torch.randn(B, T)
mine = -(klpen_objective(torch.exp(lp_new - lp_old), a, 0.5) * mask).sum() / mask.sum()
lib, st = losses.ppo_kl_penalty_loss(lp_new, lp_old, a, mask, beta=0.5)
print(f"notebook {mine:.6f}   library {lib:.6f}   (k3 KL per token {st['approx_kl']:.4f})")
assert torch.isclose(mine, lib, atol=1e-6)
for d in (0.001, 0.008, 0.012, 0.05):
    assert klpen_beta(1.0, d, 0.01) == losses.ppo_kl_penalty_beta(1.0, d, 0.01)
print({d: klpen_beta(1.0, d, 0.01) for d in (0.001, 0.008, 0.012, 0.05)})

# %% [markdown]
# `PPOConfig(policy_loss="kl_penalty")` trains with it: the same loop, the same reward (with this lecture's KL to $\pi_\text{ref}$, $\beta$ = `kl_coef`), but no clip, a penalty starting at `ppo_kl_beta` = 1, and $d$ measured on the rollout after each iteration's updates (logged as `ppo_kl_d`, with the $\beta$ used as `ppo_kl_beta`). A short run, half the iterations of the others, with $d_\text{targ}$ = `ppo_kl_target` = 0.01 per token:

# %%
pol_klpen, h_klpen = run_ppo("PPO-KL (no clip)", policy_loss="kl_penalty", steps=config.steps // 2, eval_every=config.steps // 2)
d, b = h_klpen.series("ppo_kl_d")[1], h_klpen.series("ppo_kl_beta")[1]
fig, axes = plt.subplots(1, 2, figsize=(9, 2.6))
axes[0].semilogy(range(1, len(d) + 1), d, "o-", label="d: KL(π_old‖π_θ) per token after the update")
axes[0].axhspan(0.01 / 1.5, 0.01 * 1.5, alpha=0.15, label="d_targ / 1.5 .. 1.5 d_targ"); axes[0].legend(fontsize=7)
axes[1].semilogy(range(1, len(b) + 1), b, "o-"); axes[1].set_title("β of the penalty (×2 or /2 per update)", fontsize=9)
for ax in axes: ax.set_xlabel("PPO iteration")
plt.tight_layout(); plt.show()
same = max(s for s in h_fixed.series("win_rate")[0] if s <= len(d))            # PPO-clip's evaluation at that point
print(h_klpen.final(), f"\nPPO-clip at iteration {same}: win-rate {h_fixed.rows[same]['win_rate']:.3f}")

# %% [markdown]
# Every $\beta$ the run used follows from the $d$ before it by the rule, and the penalty keeps each update's KL near its target without any clip (printed and asserted):

# %%
assert all(b[i + 1] == klpen_beta(b[i], d[i], 0.01) for i in range(len(d) - 1))
in_band = np.mean([(0.01 / 3 <= x <= 0.01 * 3) for x in d])
print(f"d within a factor 3 of d_targ in {in_band:.0%} of the iterations; median d {np.median(d):.4f}")
assert np.median(d) < 0.01 * 3 and in_band >= 0.5

# %% [markdown]
# ## 8. Reward hacking, live: $\beta = 0$
#
# Now remove the KL term and change nothing else. The RM still loves degenerate strings (section 2), and nothing keeps the policy near the text the RM was trained on:

# %%
pol_hack, h_hack = run_ppo("PPO β=0", kl_coef=0.0)

# %% [markdown]
# Proxy (the learned RM's score of the training rollouts) against truth (the gold judge's score of the *same* samples), iteration by iteration, for both runs:

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 2.8))
for ax, h in zip(axes, (h_hack, h_fixed)):
    ax.plot(*h.series("rm_reward"), label="learned RM (proxy)"); ax.plot(*h.series("rollout_gold"), label="gold judge (truth)")
    ax.set_title(h.name); ax.set_xlabel("PPO iteration"); ax.axhline(0, c="grey", lw=0.6); ax.legend(fontsize=8)
for h in (h_hack, h_fixed):
    axes[2].plot(*h.series("rollout_valid"), label=h.name)
axes[2].set_title("valid-review rate of the rollouts"); axes[2].set_xlabel("PPO iteration"); axes[2].legend(fontsize=8)
plt.tight_layout(); plt.show()

# %% [markdown]
# With $\beta = 0$ the proxy keeps climbing while the gold reward and the valid-text rate fall (the numbers are printed and asserted below): the policy has found what the RM likes and the judge hates. What does it write? And how diverse is it? (distinct-2: the fraction of distinct word bigrams among all bigrams of the held-out samples; low means the same phrases over and over.)

# %%
def distinct_2(batch):  # distinct word bigrams / all word bigrams, over all completions
    grams = [tuple(w[j:j + 2]) for w in (c.split() for c in batch.completions) for j in range(len(w) - 1)]
    return len(set(grams)) / max(1, len(grams))

hack_batch = evaluator.sample(pol_hack.lm)
for p, c in list(zip(hack_batch.prompts, hack_batch.completions))[:5]:
    print(f"  {p} | {c}")
d2_hack, d2_fixed, d2_sft = distinct_2(hack_batch), distinct_2(fb), distinct_2(evaluator.ref_batch)
print(f"distinct-2: β=0 {d2_hack:.2f}   β={config.kl_coef:g} {d2_fixed:.2f}   SFT {d2_sft:.2f}")
assert d2_hack < d2_fixed < d2_sft

# %% [markdown]
# RL fine-tuning cost some diversity here (the policy concentrates on what scores well: the run with the KL term also sits below the SFT model), but at $\beta = 0$ the text collapses into the same few phrases glued together, and stops being a review at all.
#
# The end values of both curves, averaged over the last 5 iterations to smooth the noise of a rollout, against the first 5:

# %%
for h in (h_hack, h_fixed):
    (rm0, rm1), (g0, g1), (v0, v1) = (ends(h, k) for k in ("rm_reward", "rollout_gold", "rollout_valid"))
    print(f"{h.name:10s} RM {rm0:+.2f} -> {rm1:+.2f}   gold {g0:+.2f} -> {g1:+.2f}   valid {v0:.2f} -> {v1:.2f}")
(rm0, rm1), (g0, g1), (v0, v1) = (ends(h_hack, k) for k in ("rm_reward", "rollout_gold", "rollout_valid"))
assert rm1 > rm0 and g1 < g0 and v1 < v0, "expected the beta = 0 run to hack the RM: proxy up, gold and valid rate down"

# %% [markdown]
# ## 9. PPO against the gold reward itself ("PPO-GT")
#
# How much do we lose by optimising a learned proxy instead of the truth? Run the same PPO against the gold judge (the RM's score is still logged, as `rm_reward`, to see whether the RM agrees).
#
# One adjustment keeps the comparison fair: $\beta$ trades reward against nats of KL, so the same $\beta$ means a different trade-off for a reward on another scale. The RM's scores spread wider than the gold judge's; we scale $\beta$ by the ratio of their standard deviations on the reference's samples:

# %%
ref_b = evaluator.ref_batch
rm_ref = torch.tensor(rm_fn(ref_b.prompts, ref_b.completions, ref_b.finished))
beta_gt = round(0.1 * float(np.std(evaluator.ref_rewards) / rm_ref.std()), 3)
print(f"std on SFT samples: RM {rm_ref.std():.2f}, gold {np.std(evaluator.ref_rewards):.2f}  ->  PPO-GT beta = {beta_gt}")

# %%
pol_gt, h_gt = run_ppo("PPO-GT (gold reward)", reward="gold", kl_coef=beta_gt)
dashboard(h_fixed, h_adapt, h_klpen, h_hack, h_gt, title="all runs on held-out prompts", extra=("rm_reward",), figsize_per_panel=3.0); plt.show()
for h in (h_fixed, h_adapt, h_klpen, h_hack, h_gt):
    print(f"{h.name:22s}", h.final())

# %% [markdown]
# How close do the learned-RM runs with a KL penalty get to PPO-GT? A win-rate on the 128 held-out prompts has a standard error of about 0.04:

# %%
for h in (h_fixed, h_adapt):
    print(f"{h.name:22s} win-rate {h.last('win_rate') - h_gt.last('win_rate'):+.3f}, gold reward {h.last('gold_reward') - h_gt.last('gold_reward'):+.3f} against PPO-GT")
assert abs(h_fixed.last("win_rate") - h_gt.last("win_rate")) < 0.1

# %% [markdown]
# Within 0.1 of the win-rate of optimising the truth itself: at this scale the RM is good enough near the SFT distribution (it orders this fraction of held-out pairs as the judge does):

# %%
from alignlab import cache
from alignlab.methods.rm import rm_folder

print("RM held-out accuracy vs gold:", cache.read_meta(rm_folder(profile, progress=False))["eval_accuracy"])

# %% [markdown]
# And the critic (section 5): the same shared-trunk value head, trained against the gold judge instead of the RM, explains less of the returns (means of the last 10 iterations):

# %%
ev_rm, ev_gold = ends(h_fixed, "explained_variance", 10)[1], ends(h_gt, "explained_variance", 10)[1]
print(f"explained variance, last 10 iterations: against the RM {ev_rm:+.3f}, against the gold judge {ev_gold:+.3f}")
assert ev_gold < ev_rm

# %% [markdown]
# Without the KL term, the same proxy is a disaster. Finally, the RM score of the final sensible policy's held-out samples (the number `python -m alignlab run ppo` reports as `rm_reward`), and the notebook's headline numbers:

# %%
rm_reward = float(np.mean(rm_fn(fb.prompts, fb.completions, fb.finished)))
print(f"notebook ran in {time.time() - t_start:.0f} s")
alignlab.report(h_fixed, notebook="03_ppo_rlhf", rm_reward=rm_reward,
                clipfrac=h_fixed.last("clipfrac"), approx_kl=h_fixed.last("approx_kl"),
                adaptive_win_rate=h_adapt.last("win_rate"), gt_win_rate=h_gt.last("win_rate"),
                hack_rm_start=rm0, hack_rm_end=rm1, hack_gold_start=g0, hack_gold_end=g1,
                hack_valid_end=v1)

# %% [markdown]
# ## 10. Summary
#
# * RLHF maximises the learned reward minus $\beta\,\mathrm{KL}(\pi\,\|\,\pi_\text{ref})$. The KL term is what keeps a **proxy** reward honest: at $\beta = 0$ our policy found strings the RM loves and the judge scores $-1$, and its diversity collapsed.
# * TRPO keeps each update in a KL trust region around $\pi_\text{old}$. **PPO-clip** approximates it by clipping the ratio $\pi/\pi_\text{old}$ to $[1-\epsilon, 1+\epsilon]$ in a pessimistic $\min$, so a batch can be reused for several epochs of minibatch steps; **PPO-KL** instead penalises $\beta\,\mathrm{KL}(\pi_\text{old}\|\pi_\theta)$ in the surrogate and doubles or halves $\beta$ around a target after each update.
# * The loop: rollout (left padding, one temperature everywhere) → RM score on the last token + per-token KL penalty → GAE with the value head, whitened → epochs of minibatches with the clipped policy loss, the clipped value loss and gradient clipping (the update step, written out in 4.5) → update the reward's $\beta$ (fixed, or adaptive towards a KL to $\pi_\text{ref}$, Ziegler et al.).
# * With a fixed $\beta$, PPO against a learned RM reaches a high win-rate against the SFT model with valid text, within 0.1 of PPO against the truth; its shared-trunk critic learns something against the RM and less against the gold judge.
#
# **Pitfalls, and how to see them in the logs**
# * *Old and new log-probs computed differently* (another temperature, dropout on in one pass, different padding): the ratio is not exactly 1 token by token, so `approx_kl` and `clipfrac` are not 0 at the first minibatch (section 4.4; `ratio_mean` alone can hide it, since ratios above and below 1 average out).
# * *Reward hacking*: `rm_reward` keeps rising while `rollout_gold`, the evaluator's `gold_reward` and `valid_rate` fall, and KL shoots up. Only an independent judge shows it: the proxy alone looks like success.
# * *Step too large* (lr, epochs): `clipfrac` above about 0.3 and `approx_kl` well above 0.05 for many iterations (the healthy ranges of the metric table in section 4.4: below about 0.2 and 0.02); the KL to $\pi_\text{ref}$ jumps between iterations. Ranges quoted for CleanRL's `clipfrac` (both sides of the clip) are larger than ours (section 4.5).
# * *Value head not learning*: `explained_variance` stays near 0 or negative; advantages are then noisy (whitening hides their scale, not their noise).
# * *Adaptive β with a slow horizon*: the KL overshoots the target for many iterations before β catches up (section 6).
#
# ## 11. Exercises
#
# 1. Re-run section 8 with $\beta = 0.01$ and $\beta = 0.03$. At which $\beta$ does hacking start within 30 iterations? Plot the final gold reward against $\beta$ (a tiny reward-KL frontier).
# 2. Set `clip_eps=10` (effectively no clipping) and `ppo_epochs=8`. What happens to `approx_kl`, `clipfrac` and the stability of the KL curve?
# 3. Switch off advantage whitening (`ppo.advantages = lambda ro, c: losses.compute_gae(ro.rewards, ro.values, ro.mask, c.gamma, c.lam)`) and compare the learning speed. Why does the scale of the RM's scores now matter?
# 4. Make the adaptive controller faster (`kl_horizon=50`) or slower (`kl_horizon=2000`) and describe the KL curve. What is the trade-off?
# 5. Give the $\beta = 0$ run the *gold* reward instead (`reward="gold", kl_coef=0`). Does it still degenerate? What does that tell you about where reward hacking comes from?
# 6. Train the fixed-$\beta$ run with `critic="separate"` (the value head on its own transformer, as in lecture 02). Compare its `explained_variance` curve, its win-rate and its run time with section 5's shared-trunk run.
# 7. Run PPO-KL (section 7) for all 40 iterations with `ppo_kl_target=0.003` and with `0.03`. How do `ppo_kl_d`, `ppo_kl_beta` and the KL to $\pi_\text{ref}$ respond? Compare with exercise 2's PPO-clip without a working clip.
#
# ## 12. References
#
# * Schulman, Wolski, Dhariwal, Radford, Klimov (2017). *Proximal Policy Optimization Algorithms.* [arXiv:1707.06347](https://arxiv.org/abs/1707.06347): PPO-clip (eq. 7), PPO-KL and the adaptive penalty (section 4, eq. 8).
# * Schulman, Levine, Moritz, Jordan, Abbeel (2015). *Trust Region Policy Optimization.* [arXiv:1502.05477](https://arxiv.org/abs/1502.05477).
# * Ziegler, Stiennon, Wu, Brown, Radford, Amodei, Christiano, Irving (2019). *Fine-Tuning Language Models from Human Preferences.* [arXiv:1909.08593](https://arxiv.org/abs/1909.08593): the KL-shaped reward and the adaptive controller (section 2.2).
# * Ouyang et al. (2022). *Training language models to follow instructions with human feedback* (InstructGPT). [arXiv:2203.02155](https://arxiv.org/abs/2203.02155): the RLHF objective (eq. 2).
# * Stanford CME 295, lecture 5 (preference tuning and RLHF): [cme295.stanford.edu](https://cme295.stanford.edu/).
