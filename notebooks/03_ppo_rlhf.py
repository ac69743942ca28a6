# %% [markdown]
# # Lecture 03: PPO-clip RLHF against a learned reward model
#
# **Objectives.** By the end of this notebook you can
# 1. state the RLHF objective $\max_\pi \mathbb{E}[r] - \beta\,\mathrm{KL}(\pi\,\|\,\pi_\text{ref})$ and say what the KL term protects against (reward hacking, mode collapse);
# 2. go from TRPO's constrained surrogate to PPO's clipped objective, and read its plot for positive and negative advantages;
# 3. build every part of the PPO loop for a language model: rollouts, reward-model score, per-token KL penalty, value head and GAE, minibatch epochs, clipped policy and value losses, gradient clipping;
# 4. read PPO's health metrics (clip fraction, approximate KL, value loss, explained variance);
# 5. replace the fixed $\beta$ by an adaptive controller (PPO-KL), and **watch reward hacking happen** when $\beta = 0$.
#
# **Prerequisites.** Lecture 01 (the Bradley-Terry reward model, cached) and lecture 02 (policy gradients, value head, GAE).
#
# **Run time.** `quick` profile (2-core CPU): 41 s with the SFT and reward models cached (measured under nbval on an idle 2-core machine; lectures 00 and 01 cache them, otherwise they are trained first, about 1.5 minutes more). Four PPO runs of 40 iterations take most of it. `full` profile (one GPU): not measured yet (no GPU was available when this course was built).

# %% [markdown]
# ## 1. Set-up
#
# We need three models: the SFT model, which is both the starting point of the policy and the frozen **reference** $\pi_\text{ref}$ (lecture 00); the **reward model** (RM) $r_\phi$ trained on noisy preference pairs in lecture 01; and the shared `Evaluator`, which scores policies with the **gold judge** on held-out prompts. PPO only ever sees the RM. The gold judge is our window on the truth.

# %%
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

# %% [markdown]
# The RM scores the degenerate strings as high as, or higher than, honest praise; the gold judge gives them $-1$. A policy that maximises $r_\phi$ alone will find such strings: that is **reward hacking**. The KL term makes the policy pay for every nat it moves away from $\pi_\text{ref}$, which gives such strings almost no probability.
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
# It works well but needs conjugate gradients and a line search. **PPO-clip** (Schulman et al. 2017, eq. 7) gets a similar effect with first-order steps, by removing the incentive to push $\rho_t$ outside $[1-\epsilon, 1+\epsilon]$:
#
# $$ L^{CLIP}(\theta) = \hat{\mathbb{E}}_t\Big[\min\big(\rho_t\,\hat A_t,\; \mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\,\hat A_t\big)\Big]. $$
#
# In code, per token:

# %%
def clipped_objective(ratio, adv, eps=0.2):
    return torch.minimum(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)

# %% [markdown]
# Plot it against the ratio. With $A > 0$ the objective stops growing at $1+\epsilon$ (no reason to make a good token *much* more likely in one go); with $A < 0$ it stops at $1-\epsilon$. On the other side it is *not* clipped: a step that made a good token less likely (or a bad one more likely) is always undone. Where the line is flat the gradient is 0.

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
# The policy is a copy of the SFT model plus a **value head** (lecture 02's `PolicyWithValue`: one transformer pass gives both the token log-probs and the values $V(s_t)$; the head starts at exactly 0). `rl.rollout` samples one completion per prompt, **left-padded** so that all prompts end in the same column, at `config.sampling_temperature`, and records without gradient everything an update needs. Every log-prob (the sampling policy's "old" ones, the reference's, and later the new ones) is computed at that **same temperature**: the ratio compares the distributions that actually produced the tokens.

# %%
seed_everything(0)
policy = ppo.new_policy(ref)
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
# ### 4.5 Several epochs over minibatches, with gradient clipping
#
# `ppo.ppo_update` shuffles the rollout into minibatches, takes one AdamW step per minibatch (gradient norm clipped to `max_grad_norm`) and repeats for `ppo_epochs` passes. Within one iteration the policy moves away from $\pi_\text{old}$: watch `approx_kl` and `clipfrac` grow from exactly 0, and the clip start to hold the ratio back.

# %%
opt = ppo.make_optimizer(policy, config.lr, config.value_lr)   # one lr for the LM, one for the value head
steps = ppo.ppo_update(policy, opt, ro, config, torch.Generator().manual_seed(0))
fig, axes = plt.subplots(1, 3, figsize=(10, 2.5))
for ax, key in zip(axes, ["approx_kl", "clipfrac", "grad_norm"]):
    ax.plot([s[key] for s in steps], "o-"); ax.set_title(key); ax.set_xlabel("minibatch step")
for ax in axes[:2]:
    for e in range(1, config.ppo_epochs):
        ax.axvline(e * config.batch_size // config.minibatch - 0.5, c="grey", lw=0.6, ls="--")
plt.tight_layout(); plt.show()
print(f"{len(steps)} minibatch steps; explained variance before the update: {steps[0]['explained_variance']:.3f}")

# %% [markdown]
# ## 5. PPO against the reward model, with a fixed $\beta$
#
# `ppo.train_ppo` repeats the iteration on the shared training loop (`training.train`): each iteration is one rollout of `config.batch_size` fresh prompts and `ppo_epochs` passes of minibatch updates; the shared `Evaluator` measures gold reward, KL and win-rate against $\pi_\text{ref}$ on held-out prompts every `eval_every` iterations. One helper runs each configuration of this notebook:

# %%
def run_ppo(name, **overrides):
    cfg = ppo.PPOConfig.for_profile(profile, **overrides)
    seed_everything(cfg.seed)
    pol = ppo.new_policy(ref)
    reward_fn = rm_fn if cfg.reward == "rm" else rl.gold_reward_fn
    extra_rm = None if cfg.reward == "rm" else rm_fn     # also log the RM's opinion of a PPO-GT run
    history = ppo.train_ppo(pol, ref, tok, reward_fn, cfg, evaluator, rm_fn=extra_rm, name=name)
    return pol, history

# %% [markdown]
# A sensible $\beta = 0.1$ and the other defaults printed above: 40 iterations, each a rollout of 48 prompts and 4 epochs of minibatches of 16, `lr = 3e-4`:

# %%
pol_fixed, h_fixed = run_ppo("PPO β=0.1")
dashboard(h_fixed, title="PPO-clip against the learned RM (β = 0.1)", extra=("rm_reward",), figsize_per_panel=3.0); plt.show()
print(h_fixed.final())

# %% [markdown]
# PPO's own health metrics for the same run, one point per iteration (means over its minibatch steps; definitions in section 4.4):

# %%
fig, axes = plt.subplots(1, 4, figsize=(12, 2.5))
for ax, key in zip(axes, ["clipfrac", "approx_kl", "vf_loss", "explained_variance"]):
    ax.plot(*h_fixed.series(key)); ax.set_title(key); ax.set_xlabel("PPO iteration"); ax.grid(alpha=0.3)
plt.tight_layout(); plt.show()

# %% [markdown]
# The clip fraction and the approximate KL stay small (each iteration's policy change is inside the trust region), the value loss falls and the explained variance climbs from 0 as the value head learns. The learned reward went up, and with it the **gold** reward and the win-rate against the SFT model, at a KL of a few nats, with samples that stay valid reviews. The target for this lecture is a win-rate of at least 0.75 with at least 90% valid samples; the assert sits a little below it so that a real regression fails:

# %%
fixed = h_fixed.final()
assert fixed["win_rate"] >= 0.7 and fixed["valid_rate"] >= 0.85, fixed
fb = evaluator.sample(pol_fixed.lm)
for p, c in list(zip(fb.prompts, fb.completions))[:4]:
    print(f"  {p} | {c}")

# %% [markdown]
# ## 6. PPO-KL: an adaptive $\beta$
#
# A fixed $\beta$ is hard to pick: the KL it allows depends on the reward's scale and on the task. The PPO paper's second variant, **PPO-KL**, adapts the penalty coefficient to hit a target KL instead. RLHF uses the proportional controller of Ziegler et al. (2019) on the KL to $\pi_\text{ref}$: after each rollout, with the measured sequence KL and $n$ the samples in the rollout,
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
# Start from a $\beta$ that is too small (0.02) and ask for a KL of 3 nats:

# %%
pol_adapt, h_adapt = run_ppo("PPO-KL (adaptive β)", kl_coef=0.02, adaptive=True, kl_target=3.0, kl_horizon=100)
fig, axes = plt.subplots(1, 2, figsize=(8, 2.6))
for h in (h_fixed, h_adapt):
    axes[0].plot(*h.series("kl_coef"), label=h.name); axes[1].plot(*h.series("rollout_kl"), label=h.name)
axes[0].set_title("β used at each iteration"); axes[1].set_title("rollout KL (k1, nats per sequence)")
axes[1].axhline(3.0, c="grey", ls="--", lw=0.8, label="target"); axes[1].legend(fontsize=8)
for ax in axes: ax.set_xlabel("PPO iteration")
plt.tight_layout(); plt.show()

# %% [markdown]
# The controller raises $\beta$ while the KL is above target. It can only move $\beta$ by a bounded factor per iteration (at most $1 \pm 0.2\,n/\text{horizon}$), so it reacts with a lag: while $\beta$ is still small the KL overshoots the target and the valid rate dips (the first steps of reward hacking, section 7), until the larger penalty pulls the policy back. Both runs on the shared dashboard:

# %%
dashboard(h_fixed, h_adapt, title="fixed β vs adaptive β (PPO-KL)", extra=("rm_reward",)); plt.show()
print("fixed:   ", h_fixed.final(), "\nadaptive:", h_adapt.final(), f" last β = {h_adapt.last('kl_coef'):.3f}")

# %% [markdown]
# ## 7. Reward hacking, live: $\beta = 0$
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
# With $\beta = 0$ the proxy keeps climbing while the gold reward and the valid-text rate fall: the policy has found what the RM likes and the judge hates. What does it write? And how diverse is it? (distinct-2: the fraction of distinct word bigrams among all bigrams of the held-out samples; low means the same phrases over and over.)

# %%
def distinct_2(batch):  # distinct word bigrams / all word bigrams, over all completions
    grams = [tuple(w[j:j + 2]) for w in (c.split() for c in batch.completions) for j in range(len(w) - 1)]
    return len(set(grams)) / max(1, len(grams))

hack_batch = evaluator.sample(pol_hack.lm)
for p, c in list(zip(hack_batch.prompts, hack_batch.completions))[:5]:
    print(f"  {p} | {c}")
print(f"distinct-2: β=0 {distinct_2(hack_batch):.2f}   β=0.1 {distinct_2(fb):.2f}   SFT {distinct_2(evaluator.ref_batch):.2f}")

# %% [markdown]
# Any RL fine-tuning costs some diversity (the policy concentrates on what scores well, and β = 0.1 also sits below the SFT model), but at β = 0 the text collapses into the same few phrases glued together, and stops being a review at all.
#
# The end values of both curves, averaged over the last 5 iterations to smooth the noise of a 48-sample rollout, against the first 5:

# %%
def ends(h, key, k=5):
    v = h.series(key)[1]
    return float(np.mean(v[:k])), float(np.mean(v[-k:]))

for h in (h_hack, h_fixed):
    (rm0, rm1), (g0, g1), (v0, v1) = (ends(h, k) for k in ("rm_reward", "rollout_gold", "rollout_valid"))
    print(f"{h.name:10s} RM {rm0:+.2f} -> {rm1:+.2f}   gold {g0:+.2f} -> {g1:+.2f}   valid {v0:.2f} -> {v1:.2f}")
(rm0, rm1), (g0, g1), (v0, v1) = (ends(h_hack, k) for k in ("rm_reward", "rollout_gold", "rollout_valid"))
assert rm1 > rm0 and (g1 < g0 or v1 < v0), "expected the beta = 0 run to hack the RM"

# %% [markdown]
# ## 8. PPO against the gold reward itself ("PPO-GT")
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
dashboard(h_fixed, h_adapt, h_hack, h_gt, title="all runs on held-out prompts", extra=("rm_reward",), figsize_per_panel=3.0); plt.show()
for h in (h_fixed, h_adapt, h_hack, h_gt):
    print(f"{h.name:22s}", h.final())

# %% [markdown]
# The learned-RM runs with a KL penalty get close to PPO-GT: at this scale the RM is good enough near the SFT distribution (it orders this fraction of held-out pairs as the judge does):

# %%
from alignlab import cache
from alignlab.methods.rm import rm_folder

print("RM held-out accuracy vs gold:", cache.read_meta(rm_folder(profile, progress=False))["eval_accuracy"])

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
# ## 9. Summary
#
# * RLHF maximises the learned reward minus $\beta\,\mathrm{KL}(\pi\,\|\,\pi_\text{ref})$. The KL term is what keeps a **proxy** reward honest: at $\beta = 0$ our policy found strings the RM loves and the judge scores $-1$, and its diversity collapsed.
# * TRPO keeps each update in a KL trust region; **PPO-clip** approximates it by clipping the ratio $\pi/\pi_\text{old}$ to $[1-\epsilon, 1+\epsilon]$ in a pessimistic $\min$, so a batch can be reused for several epochs of minibatch steps.
# * The loop: rollout (left padding, one temperature everywhere) → RM score on the last token + per-token KL penalty → GAE with the value head, whitened → epochs of minibatches with the clipped policy loss, the clipped value loss and gradient clipping → update $\beta$ (fixed, or adaptive in **PPO-KL**).
# * With $\beta = 0.1$, PPO against a learned RM reaches a high win-rate against the SFT model with valid text, close to PPO against the truth.
#
# **Pitfalls, and how to see them in the logs**
# * *Old and new log-probs computed differently* (another temperature, dropout on in one pass, different padding): the ratio is not exactly 1 token by token, so `approx_kl` and `clipfrac` are not 0 at the first minibatch (section 4.4; `ratio_mean` alone can hide it, since ratios above and below 1 average out).
# * *Reward hacking*: `rm_reward` keeps rising while `rollout_gold`, the evaluator's `gold_reward` and `valid_rate` fall, and KL shoots up. Only an independent judge shows it: the proxy alone looks like success.
# * *Step too large* (lr, epochs): `clipfrac` above ~0.3 and `approx_kl` above ~0.1 for many iterations; the KL to $\pi_\text{ref}$ jumps between iterations.
# * *Value head not learning*: `explained_variance` stays near 0 or negative; advantages are then noisy (whitening hides their scale, not their noise).
# * *Adaptive β with a slow horizon*: the KL overshoots the target for many iterations before β catches up (section 6).
#
# ## 10. Exercises
#
# 1. Re-run section 7 with $\beta = 0.01$ and $\beta = 0.03$. At which $\beta$ does hacking start within 30 iterations? Plot the final gold reward against $\beta$ (a tiny reward-KL frontier).
# 2. Set `clip_eps=10` (effectively no clipping) and `ppo_epochs=8`. What happens to `approx_kl`, `clipfrac` and the stability of the KL curve?
# 3. Switch off advantage whitening (`ppo.advantages = lambda ro, c: losses.compute_gae(ro.rewards, ro.values, ro.mask, c.gamma, c.lam)`) and compare the learning speed. Why does the scale of the RM's scores now matter?
# 4. Make the adaptive controller faster (`kl_horizon=50`) or slower (`kl_horizon=2000`) and describe the KL curve. What is the trade-off?
# 5. Give the $\beta = 0$ run the *gold* reward instead (`reward="gold", kl_coef=0`). Does it still degenerate? What does that tell you about where reward hacking comes from?
