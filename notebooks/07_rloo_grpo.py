# %% [markdown]
# # Lecture 07: critic-free RL for LLMs: RLOO and GRPO
#
# **Objectives.** By the end of this notebook you can
# 1. say what PPO's critic costs for a language model, and replace it by a **group baseline**: sample $k$ completions of each prompt and judge each one against the others;
# 2. write **RLOO**'s leave-one-out advantage, and measure why it keeps the policy gradient unbiased where the plain group mean does not;
# 3. write **GRPO**'s group-normalised advantage, its per-token clipped loss and its $k_3$ KL term, and check their step-0 values;
# 4. measure the biases Dr. GRPO points out (dividing by the group's standard deviation, normalising by length), and what TRL's default $\beta = 0$ does;
# 5. compare PPO (with a critic), RLOO and GRPO at an **equal number of sampled completions**, over seeds.
#
# **Prerequisites.** Lecture 02 (REINFORCE, baselines, GAE) and lecture 03 (PPO-clip, the KL penalty).
#
# **Run time.** `quick` profile (2-core CPU): 138 s under nbval with the SFT model cached (measured in the fresh-clone test run, `.ci/run`; lecture 00 caches the model, otherwise it is trained first, about 1 minute more). Eleven training runs of 1,920 sampled completions each take most of it. `full` profile (one GPU): not measured yet (no GPU was available when this lecture was written).

# %% [markdown]
# ## 1. Set-up
#
# Every run in this lecture optimises the **gold judge** itself (as lecture 02 and lecture 03's PPO-GT did), so that the methods differ only in how they estimate the advantage and in how they use it, not in the quality of a learned reward model. The shared `Evaluator` scores each policy on held-out prompts against the SFT reference $\pi_\text{ref}$.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown

import alignlab
from alignlab import losses, world
from alignlab.evaluation import Evaluator, gold_scores
from alignlab.methods import grpo, ppo, rl
from alignlab.models import get_device, get_profile, seed_everything
from alignlab.pipeline import load_sft
from alignlab.plots import dashboard
from alignlab.sampling import sample

t_start = time.time()
profile, device = get_profile(), get_device()
ref, tok = load_sft(profile, device=device)          # pi_ref, cached (lecture 00)
evaluator = Evaluator(ref, tok, profile=profile)
print(f"profile={profile.name}  device={device}  eval prompts={len(evaluator.prompts)}")

# %% [markdown]
# ## 2. What the critic costs
#
# PPO estimates each token's advantage with a learned value $V(s_t)$ (lecture 02's GAE). For a language model that critic is a second network as large as the policy: lecture 02 found that a value head on the policy's own trunk explains almost nothing of the return in this world, and put the head on its **own copy** of the transformer (`critic="separate"`, as TRL's `PPOTrainer` does). We give PPO that critic here. Count the weights it trains against those the policy alone has:

# %%
def n_params(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

ppo_policy = rl.new_policy(ref, critic="separate")
print(f"policy LM {n_params(ppo_policy.lm):,} weights;  PPO trains {n_params(ppo_policy):,} "
      f"({n_params(ppo_policy) / n_params(ppo_policy.lm):.2f}x): the critic is a second transformer")
assert n_params(ppo_policy) > 1.9 * n_params(ppo_policy.lm)

# %% [markdown]
# It is also a second thing to get right. Run PPO against the gold judge at the budget of lecture 03: 40 iterations of 48 prompts, one completion each, **1,920 sampled completions** in all, with $\beta = 0.05$ (the objective RLOO will optimise below: gold score minus $0.05\,\mathrm{KL}$). Watch the critic's `explained_variance`: the fraction of the returns' variance its values explain (1 perfect, 0 no better than a constant).

# %%
BETA = 0.05

def run_ppo(seed, **overrides):
    cfg = ppo.PPOConfig.for_profile(profile, reward="gold", kl_coef=BETA, critic="separate", seed=seed, **overrides)
    t = time.time()
    pol, h = ppo.fit(ref, tok, cfg, evaluator, name="PPO (critic)", progress=False)   # `run ppo`'s recipe
    h.seconds, h.completions = time.time() - t, cfg.steps * cfg.batch_size
    return pol, h

pol_ppo, h_ppo = run_ppo(0)
ev = h_ppo.series("explained_variance")[1]
print(f"{h_ppo.completions} completions in {h_ppo.seconds:.0f} s;  explained variance: first 10 iterations "
      f"{np.mean(ev[:10]):+.2f}, last 10 {np.mean(ev[-10:]):+.2f}")
print(h_ppo.final())
assert np.mean(ev) < 0.5

# %% [markdown]
# PPO learns (its win-rate against the SFT model is printed above), but its critic explains only a small part of the return's variance all along: its values are little better than a constant baseline, which is in effect what whitening the advantages gives PPO. We paid for a second transformer and got a mean. The rest of this lecture asks: can we get a good baseline **without** a critic?

# %% [markdown]
# ## 3. $k$ completions per prompt: the group is the baseline
#
# For a prompt $x$, sample $k$ completions $y_1, \dots, y_k$ from the current policy and score them: $r_1, \dots, r_k$. A completion is good *for this prompt* if it beats the others. That is the whole idea; RLOO and GRPO differ in how they turn "beats the others" into a number.
#
# `grpo.group_rollout` repeats each prompt $k$ times and samples them through the one rollout path of lectures 02 and 03 (`rl.rollout`), so that rows $pk, \dots, pk + k - 1$ answer prompt $p$, and `scores.view(P, k)` puts each prompt's group in one row:

# %%
rloo_cfg = grpo.RLOOConfig.for_profile(profile)
print(rloo_cfg)
seed_everything(0)
policy = rl.new_policy(ref)
prompts = world.make_prompts(rloo_cfg.batch_size, "train", seed=0)
ro = grpo.group_rollout(policy, ref, tok, prompts, rloo_cfg, seed=1)
scores = ro.scores.view(-1, rloo_cfg.k)                          # (P, k)
print(f"{len(ro)} completions = {scores.shape[0]} prompts x k = {scores.shape[1]}")
for c, s in zip(ro.batch.completions[:rloo_cfg.k], scores[0]):
    print(f"  gold {s:+.2f}  {ro.batch.prompts[0]} | {c}")

# %% [markdown]
# ### 3.1 RLOO: leave one out
#
# RLOO (Ahmadian et al. 2024, "Back to Basics"; after Kool et al. 2019) uses as the baseline of completion $i$ the mean reward of the **other** $k - 1$ completions of its prompt:
#
# $$ A_i = r_i - \frac{1}{k-1}\sum_{j\ne i} r_j \;=\; \frac{k}{k-1}\big(r_i - \bar r\big). $$
#
# In code, for the whole $(P, k)$ matrix at once:

# %%
def leave_one_out(r):
    k = r.shape[1]
    return r - (r.sum(1, keepdim=True) - r) / (k - 1)

A = leave_one_out(scores)
assert torch.allclose(A, losses.rloo_advantages(scores), atol=1e-6)
print("advantages of prompt 0:", A[0].numpy().round(3), "  row sums:", A.sum(1)[:4].numpy().round(6))
assert torch.allclose(A.sum(1), torch.zeros(len(A)), atol=1e-5)  # every group's advantages sum to 0

# %% [markdown]
# Two step-0 facts to check in any implementation: the advantages of a group sum to 0, and a group whose $k$ rewards are all equal gets advantage exactly 0 (a prompt every sample solves, or none does, teaches nothing), with no NaN anywhere, even for GRPO, which divides by the group's standard deviation (0 here):

# %%
tied = torch.tensor([[0.7] * 8, [-1.0] * 8, [0.1, 0.5, 0.3, 0.9, 0.2, 0.4, 0.8, 0.6]])
print("RLOO:", losses.rloo_advantages(tied)[:2].abs().max().item(),
      "  GRPO:", losses.group_advantages(tied)[:2].abs().max().item())
assert (losses.rloo_advantages(tied)[:2] == 0).all() and (losses.group_advantages(tied)[:2] == 0).all()
assert torch.isfinite(losses.group_advantages(tied)).all()

# %% [markdown]
# ## 4. Why *leave one out*? A bandit where the true gradient is known
#
# A baseline must not depend on the sample it judges: $\mathbb{E}[b\,\nabla\log\pi(y)] = b\,\mathbb{E}[\nabla\log\pi(y)] = 0$ whenever $b$ does not depend on $y$ (a function of the prompt and of other, independent samples). The plain group mean $\bar r$ **includes** $r_i$, so it breaks this; leave-one-out does not. GRPO goes further and divides by the group's standard deviation, which also depends on $r_i$.
#
# Measure it where the exact gradient is known: two "prompts", each with four possible answers, a softmax policy over them, and fixed rewards. Prompt 0 is *easy* (three good answers, small spread), prompt 1 is *hard* (rewards from $-1$ to $+1$). The true gradient of $J = \text{mean}_x\,\mathbb{E}_{y\sim\pi(\cdot|x)}[r(x,y)]$ with respect to the logits is $\pi(y|x)\,(r(x,y) - \mathbb{E}_\pi[r|x]) / 2$. Each estimator samples $k$ answers per prompt, forms advantages, and averages $A_i\,\nabla\log\pi(y_i)$ (with $\nabla_\text{logits}\log\pi(y) = \text{onehot}(y) - \pi$); we average it over 100,000 independent draws:

# %%
R_toy = torch.tensor([[1.0, 0.9, 0.8, 0.0], [1.0, 0.0, -1.0, -0.5]])
pi_toy = torch.tensor([[1.0, 0.5, 0.5, -1.0], [0.0, 0.0, 0.5, 0.5]]).softmax(-1)
true_grad = pi_toy * (R_toy - (pi_toy * R_toy).sum(-1, keepdim=True)) / 2

ESTIMATORS = {"no baseline": lambda r: r, "leave-one-out (RLOO)": losses.rloo_advantages,
              "group mean incl. itself": lambda r: r - r.mean(1, keepdim=True),
              "mean / std (GRPO)": losses.group_advantages}

def toy_gradients(advantage, k, draws=100_000, seed=0):
    """(draws, 2, 4) one gradient estimate per draw of k answers per prompt."""
    g = torch.Generator().manual_seed(seed)
    y = torch.stack([torch.multinomial(pi_toy[x], draws * k, replacement=True, generator=g).view(draws, k)
                     for x in range(2)], 1)                                  # (draws, 2, k)
    A = advantage(R_toy.gather(1, y.permute(1, 0, 2).reshape(2, -1)).view(2, draws, k).permute(1, 0, 2).reshape(-1, k))
    score = torch.nn.functional.one_hot(y, 4).float() - pi_toy[None, :, None, :]   # grad log pi
    return (A.view(draws, 2, k, 1) * score).mean(2) / 2

def bias_table(k):
    rows = {}
    for name, adv in ESTIMATORS.items():
        g = toy_gradients(adv, k)
        m = g.mean(0)
        rows[name] = dict(rel_bias=float((m - true_grad).norm() / true_grad.norm()),
                          scale=float((m * true_grad).sum() / (true_grad ** 2).sum()),
                          cosine=float(torch.nn.functional.cosine_similarity(m.flatten(), true_grad.flatten(), 0)),
                          variance=float(g.flatten(1).var(0).sum()))
    return rows

toy = bias_table(k=4)
print(f"k = 4      {'|E[g] - grad| / |grad|':>22} {'scale':>6} {'cosine':>7} {'variance':>9}")
for name, r in toy.items():
    print(f"{name:24s} {r['rel_bias']:15.3f} {r['scale']:13.3f} {r['cosine']:7.3f} {r['variance']:9.4f}")

# %% [markdown]
# Read the table row by row (the Monte-Carlo error of these means is below 0.01):
#
# * **No baseline** and **leave-one-out** are unbiased: their average gradient is the true one.
# * The **group mean including the sample** points the right way (cosine 1) but is too short by exactly $(k-1)/k$: since $r_i - \bar r = \frac{k-1}{k}A_i^\text{RLOO}$, it is RLOO scaled down. A learning rate absorbs a constant factor, so this bias is harmless in practice; it is still a bias, and it depends on $k$.
# * **Dividing by the group's std** changes the *direction* (cosine well below 1): each prompt's gradient is scaled by $1/\sigma_x$, so the easy prompt, whose rewards barely differ, weighs as much as the hard one. This is the first bias Dr. GRPO (Liu et al. 2025) points out.

# %%
k = 4
assert toy["leave-one-out (RLOO)"]["rel_bias"] < 0.02 and toy["no baseline"]["rel_bias"] < 0.02
assert abs(toy["group mean incl. itself"]["scale"] - (k - 1) / k) < 0.02 and toy["group mean incl. itself"]["cosine"] > 0.999
assert toy["mean / std (GRPO)"]["cosine"] < 0.95

# %% [markdown]
# ## 5. How noisy is a group baseline? Variance against $k$
#
# An advantage estimate $\hat A_i = r_i - b_i$ is off from the true advantage $r_i - V(x)$ by $V(x) - b_i$. Its mean squared size is the noise a baseline adds. We sample 48 completions for each of 48 prompts, use 32 of them to pin down $V(x)$ and the other 16 to form baselines:
#
# * lecture 02's **no baseline** ($b = 0$) and **batch mean** ($b$ = the mean reward of a rollout of 48 completions, all prompts mixed: the constant a critic that explains nothing falls back to);
# * the **group** baselines for $k = 2, 4, 8, 16$: leave-one-out over the other $k - 1$ samples of the same prompt.

# %%
def baseline_noise(model, n_prompts=48, n_samples=48, ks=(2, 4, 8, 16), seed=123):
    ps = world.make_prompts(n_prompts, "train", seed=seed)
    r = torch.tensor(gold_scores(sample(model, tok, [p for p in ps for _ in range(n_samples)], seed=seed))).view(n_prompts, -1)
    groups, held = r[:, :16], r[:, 16:]
    V = held.mean(1, keepdim=True)                                    # V(x), from 32 other samples
    out = {"within": float(groups.var(1).mean()), "between": float(V.var()),
           "floor": float((held.var(1) / held.shape[1]).mean()), "none": float((V ** 2).mean())}
    batch = groups[:, :4].reshape(-1, 48).mean(1)                      # rollouts of 12 prompts x 4
    out["batch mean"] = float(((batch.repeat_interleave(12)[:, None] - V) ** 2).mean())
    for kk in ks:
        g = groups[:, :kk]
        out[f"k={kk}"] = float((((g.sum(1, keepdim=True) - g) / (kk - 1) - V) ** 2).mean())
    return out

noise_sft = baseline_noise(ref)
print({k: round(v, 4) for k, v in noise_sft.items()})
print(f"variance of the gold score within a prompt / between prompts' means: {noise_sft['within'] / noise_sft['between']:.0f}x")

# %% [markdown]
# How to read it (`floor` is the noise of our own estimate of $V(x)$, in every number):
#
# * The leave-one-out baseline averages $k - 1$ samples of the same prompt, so its noise is the within-prompt variance divided by $k - 1$: it falls as $1/(k-1)$ (the asserts below check the rate).
# * The batch mean averages 48 samples, but of all prompts mixed: it is off by how much prompts differ in difficulty, the **between**-prompt variance of $V(x)$. In this world prompts barely differ (the ratio printed above), so the batch mean beats the group baseline at $k = 4$, and even $k = 16$ only comes close.
# * No baseline at all is off by $V(x)^2$: small for the SFT model, whose mean gold score is near 0, and large once the policy is good (section 8).
#
# On tasks whose prompts range from trivial to impossible (maths problems, code: the setting GRPO was made for), the between-prompt variance dominates and a group baseline wins at small $k$. Here, what the group baseline buys is that it needs no critic, not a lower noise.

# %%
def plot_noise(*named):
    fig, ax = plt.subplots(figsize=(5, 3))
    ks = [2, 4, 8, 16]
    for (label, nz), c in zip(named, ("C0", "C1")):
        ax.plot(ks, [nz[f"k={k}"] for k in ks], "o-", c=c, label=f"leave-one-out ({label})")
        ax.axhline(nz["batch mean"], c=c, ls="--", lw=1, label=f"batch mean ({label})")
        ax.axhline(nz["none"], c=c, ls=":", lw=1, label=f"no baseline ({label})")
    ax.set_xscale("log", base=2); ax.set_yscale("log"); ax.set_xlabel("group size k")
    ax.set_ylabel("mean (V(x) - b)^2"); ax.legend(fontsize=7); plt.tight_layout(); plt.show()

plot_noise(("SFT", noise_sft))
assert noise_sft["k=16"] < noise_sft["k=4"] < noise_sft["k=2"]                # falls with k
assert abs(noise_sft["k=2"] * 1 / (noise_sft["k=8"] * 7) - 1) < 0.35           # ~ within / (k - 1)
assert noise_sft["batch mean"] < noise_sft["k=4"] and noise_sft["between"] < 0.25 * noise_sft["within"]

# %% [markdown]
# ## 6. RLOO: the KL in the reward, one ratio per sequence
#
# RLOO optimises the same KL-regularised objective as PPO. It folds the KL into each completion's reward, $R_i = r_i - \beta\sum_t(\log\pi - \log\pi_\text{ref})_{i,t}$ (`losses.kl_penalised_rewards`), takes leave-one-out advantages of $R$, and treats the **whole completion as one action**. The paper's RLOO (Ahmadian et al. 2024) is plain REINFORCE: no ratio, no clip, one update per batch. TRL's, which we follow, adds a PPO-style clip on the sequence ratio so that a batch can be reused (here, 2 passes), $\rho_i = \pi_\theta(y_i|x)/\pi_\text{old}(y_i|x)$,
#
# $$ \mathcal L^\text{RLOO} = -\frac1B\sum_i \min\big(\rho_i A_i,\ \mathrm{clip}(\rho_i, 1-\epsilon, 1+\epsilon)\,A_i\big). $$
#
# At step 0 the policy is the reference, so every KL is 0 and $R = r$; on the first minibatch $\rho = 1$, and the loss is $-\text{mean}(A) = 0$ on whole groups:

# %%
R = losses.kl_penalised_rewards(ro.scores, ro.logprobs, ro.ref_logprobs, ro.mask, rloo_cfg.beta)
assert torch.equal(R, ro.scores)
adv = grpo.advantages(ro, rloo_cfg)
loss, stats = grpo.minibatch_loss(policy, ro, adv, torch.arange(len(ro)), rloo_cfg)
print({k: round(v, 6) for k, v in stats.items()})
assert stats["ratio_mean"] == 1.0 and stats["clipfrac"] == 0.0 and abs(stats["loss"]) < 1e-6

# %% [markdown]
# `grpo.train_group` runs the loop on the shared trainer: each step samples `batch_size` = 12 prompts $\times$ $k$ = 4, so 48 completions a step and 1,920 over 40 steps, PPO's budget exactly; two passes of minibatch updates reuse each rollout (the clip protects the second one). One helper runs every critic-free configuration of this notebook:

# %%
def run_group(config_cls, seed=0, name=None, **overrides):
    cfg = config_cls.for_profile(profile, seed=seed, **overrides)
    seed_everything(seed)
    pol = rl.new_policy(ref)
    t = time.time()
    h = grpo.train_group(pol, ref, tok, cfg, evaluator, progress=False,
                         name=name or ("GRPO" if config_cls is grpo.GRPOConfig else "RLOO"))
    h.seconds, h.completions = time.time() - t, cfg.completions
    return pol, h

pol_rloo, h_rloo = run_group(grpo.RLOOConfig)
dashboard(h_ppo, h_rloo, title="PPO (critic) vs RLOO, gold judge, β = 0.05, 48 completions a step"); plt.show()
print(f"RLOO: {h_rloo.completions} completions in {h_rloo.seconds:.0f} s (PPO {h_ppo.seconds:.0f} s)", h_rloo.final())

# %% [markdown]
# ## 7. GRPO
#
# GRPO (Shao et al. 2024, DeepSeekMath) changes three things:
#
# 1. **advantages normalised by the group**: $A_i = (r_i - \text{mean}(r)) / (\text{std}(r) + \epsilon)$, the same $A_i$ on every token of completion $i$;
# 2. **PPO-clip per token**, as in lecture 03, with ratio $\rho_{i,t} = \pi_\theta(o_{i,t}|q, o_{i,<t}) / \pi_\text{old}(\cdot)$;
# 3. the **KL to the reference in the loss**, not in the reward, estimated per token with Schulman's $k_3$: with $u = \log\pi_\text{ref} - \log\pi_\theta$, $k_3 = e^{u} - u - 1 \ge 0$, an unbiased estimate of $\mathrm{KL}(\pi_\theta\|\pi_\text{ref})$ that is never negative. Its *value* is unbiased; as a *loss term* its gradient is $(1 - \pi_\text{ref}/\pi_\theta)\nabla\log\pi_\theta$ per token, in expectation the gradient of the per-token *reverse* $\mathrm{KL}(\pi_\text{ref}\|\pi_\theta)$, with no credit to earlier tokens: a different regulariser from RLOO's and PPO's $k_1$ in the reward, which is the score-function gradient of the sequence-level $\mathrm{KL}(\pi_\theta\|\pi_\text{ref})$:
#
# $$ \mathcal L^\text{GRPO} = \frac1G\sum_i \frac{1}{|o_i|}\sum_t \Big[-\min\big(\rho_{i,t}A_i,\ \mathrm{clip}(\rho_{i,t}, 1\pm\epsilon)A_i\big) + \beta\,k_3(i,t)\Big]. $$

# %%
def k3(logp, logp_ref):
    u = logp_ref - logp
    return torch.exp(u) - u - 1

lp, lp_ref = torch.randn(4, 6) - 2, torch.randn(4, 6) - 2
assert torch.allclose(k3(lp, lp_ref), losses.kl_k3(lp, lp_ref), atol=1e-6) and (k3(lp, lp_ref) >= 0).all()
assert (k3(lp, lp) == 0).all()
print("k3 >= 0 on random log-probs, and exactly 0 where pi = pi_ref")

# %% [markdown]
# At step 0, on the same rollout, the per-token ratio is exactly 1, $k_3$ is exactly 0 and nothing is clipped:

# %%
grpo_cfg = grpo.GRPOConfig.for_profile(profile)
g_adv = grpo.advantages(ro, grpo_cfg)
logp, _ = policy(ro.batch.input_ids, ro.batch.attention_mask, grpo_cfg.sampling_temperature)
loss, st = losses.grpo_loss(logp, ro.logprobs, ro.ref_logprobs, g_adv, ro.mask, grpo_cfg.clip_eps, grpo_cfg.beta)
print(f"step 0: ratio {st['ratio_mean']:.6f}  k3 {st['kl']:.2e}  clipfrac {st['clipfrac']}  loss {loss:.4f}")
assert st["ratio_mean"] == 1.0 and st["kl"] == 0.0 and st["clipfrac"] == 0.0
assert torch.allclose(g_adv.view(-1, grpo_cfg.k).sum(1), torch.zeros(len(prompts)), atol=1e-4)

# %% [markdown]
# The loss is 0 here because of how the tokens are aggregated: the paper's `sequence_mean` averages each completion's tokens first, so at ratio 1 it is $-\text{mean}_i(A_i) = 0$. A mean over all tokens of the batch weights completion $i$ by its length $|o_i|$, and the same step-0 loss is then not 0 (a first sign of the length effects of section 7.2):

# %%
tm, _ = losses.grpo_loss(logp, ro.logprobs, ro.ref_logprobs, g_adv, ro.mask, grpo_cfg.clip_eps, grpo_cfg.beta, "token_mean")
print(f"step-0 loss: sequence_mean {loss.item():+.2e}   token_mean {tm.item():+.4f}")
assert abs(loss.item()) < 1e-5 and abs(tm.item()) > 1e-3

# %% [markdown]
# Train GRPO with DeepSeekMath's $\beta = 0.04$:

# %%
pol_grpo, h_grpo = run_group(grpo.GRPOConfig)
print(h_grpo.final())

# %% [markdown]
# ### 7.1 TRL's default: $\beta = 0$, no KL at all
#
# TRL 1.16's `GRPOTrainer` defaults to `beta=0.0`: no reference model, no KL term (following reports that reasoning RL does not need it). Nothing then holds the policy near $\pi_\text{ref}$ except the clip of each step:

# %%
pol_b0, h_b0 = run_group(grpo.GRPOConfig, beta=0.0, name="GRPO β=0")
dashboard(h_grpo, h_b0, title="GRPO with β = 0.04 and with TRL's default β = 0"); plt.show()
for h in (h_grpo, h_b0):
    print(f"{h.name:14s}", h.final())
b0_batch = evaluator.sample(pol_b0.lm)
for p, c in list(zip(b0_batch.prompts, b0_batch.completions))[:4]:
    print(f"  {p} | {c}")

# %% [markdown]
# Against the gold judge, which scores any non-review $-1$, there is nothing to hack, and the samples stay valid reviews (the valid rate above). The surprise is how little the KL term did: GRPO with $\beta = 0.04$ ends almost as far from $\pi_\text{ref}$ as with no KL term at all, and much further than RLOO with $\beta = 0.05$:

# %%
b_kl, b0_kl = h_grpo.last("kl"), h_b0.last("kl")
print(f"KL to pi_ref: RLOO beta = 0.05 {h_rloo.last('kl'):.2f} nats;  GRPO beta = 0.04 {b_kl:.2f};  GRPO beta = 0 {b0_kl:.2f}")
print(f"mean |advantage| at step 0: RLOO {adv.abs().mean():.3f}   GRPO {g_adv.abs().mean():.3f}")
assert b0_kl < 1.5 * b_kl and h_rloo.last("kl") < b_kl

# %% [markdown]
# One reason is the scale. GRPO normalises the advantages to a standard deviation of 1 whatever the reward's spread, while the $k_3$ term keeps its size; RLOO's advantages are on the reward's own scale (printed: smaller), and its KL penalty is part of the reward itself, so it shrinks the advantages it competes with. Removing the std from GRPO (Dr. GRPO, next) brings its KL down to RLOO's. The same nominal $\beta$ is a much weaker pull in GRPO. With a learned reward model, a weak or absent KL term is the regime of lecture 03's reward hacking; with a verifiable reward (a maths answer checker, the setting of TRL's default) it can be a fair trade.

# %% [markdown]
# ### 7.2 The two biases of Dr. GRPO, in numbers
#
# Liu et al. (2025, "Understanding R1-Zero-Like Training", Dr. GRPO) point out two normalisations in GRPO's loss that are not in the policy gradient:
#
# 1. **the group std** in the advantage: a prompt whose $k$ rewards are nearly equal (too easy, or too hard) gets its differences blown up by $1/\sigma_x$ (section 4's bandit: the gradient's direction changes);
# 2. **the length** $1/|o_i|$: at equal advantage, each token of a short completion gets a larger gradient than a token of a long one. For a positive advantage that favours short answers; for a negative one it punishes long wrong answers *less*, per token, than short ones.
#
# How large are these weights on a real rollout (the SFT model's, above)?

# %%
sd = scores.std(1, unbiased=True)
w_std = 1 / (sd + grpo_cfg.eps)
lengths = ro.mask.sum(1)
print(f"group std across the 12 prompts: {sd.min():.3f} .. {sd.max():.3f}  ->  1/std weights differ {w_std.max() / w_std.min():.1f}x")
print(f"completion lengths: {int(lengths.min())} .. {int(lengths.max())} tokens  ->  per-token weights 1/|o| differ {lengths.max() / lengths.min():.1f}x")

# %% [markdown]
# Dr. GRPO removes both: `scale="none"` (only subtract the group mean) and `aggregation="dr_grpo"` (divide the summed token losses by a constant, the batch size times `max_new_tokens`, instead of by each length). Same learning rate, same $\beta$, same budget:

# %%
pol_dr, h_dr = run_group(grpo.GRPOConfig, scale="none", aggregation="dr_grpo", name="Dr. GRPO")
dashboard(h_grpo, h_dr, title="GRPO vs Dr. GRPO (no std, no length normalisation)"); plt.show()
print(f"SFT samples: {h_grpo.rows[0]['length']:.1f} tokens")
for h in (h_grpo, h_dr):
    print(f"{h.name:9s} length {h.last('length'):5.1f} tokens", h.final())
assert h_dr.last("kl") < h_grpo.last("kl")

# %% [markdown]
# Removing the two normalisations moves the run along the reward-KL trade-off: Dr. GRPO ends much closer to $\pi_\text{ref}$, at a lower win-rate. Adam rescales the whole gradient, so what matters is the balance of the loss's two terms: without the std, the advantages are on the reward's scale (section 7.1) and the same $\beta\,k_3$ weighs more against them. The completion lengths, printed above, are this run's; exercise 3 separates the two changes and asks which one moves what.

# %% [markdown]
# ## 8. PPO vs RLOO vs GRPO at an equal budget, over seeds
#
# The headline comparison: every method gets **1,920 sampled completions** (40 steps $\times$ 48), the gold judge, and the settings above (PPO and RLOO: $\beta = 0.05$ in the reward; GRPO: $\beta = 0.04$ in the loss). Three training seeds each (the seed changes the prompts, the samples and the minibatch order); seed 0 is already done:

# %%
runs = {"PPO (critic)": [h_ppo], "RLOO": [h_rloo], "GRPO": [h_grpo]}
for seed in (1, 2):
    runs["PPO (critic)"].append(run_ppo(seed)[1])
    runs["RLOO"].append(run_group(grpo.RLOOConfig, seed=seed)[1])
    runs["GRPO"].append(run_group(grpo.GRPOConfig, seed=seed)[1])

summary = {}
for name, hs in runs.items():
    summary[name] = {k: (float(np.mean([h.last(k) for h in hs])), float(np.std([h.last(k) for h in hs])))
                     for k in ("win_rate", "valid_rate", "gold_reward", "kl")}
    summary[name]["seconds"] = (float(np.mean([h.seconds for h in hs])), float(np.std([h.seconds for h in hs])))
rows = ["| method | win-rate | valid | gold reward | KL (nats) | seconds per run |", "|---|---|---|---|---|---|"]
for name, s in summary.items():
    rows.append(f"| {name} | " + " | ".join(f"{m:.3f} ± {sd:.3f}" if key != "seconds" else f"{m:.1f} ± {sd:.1f}"
                                             for key, (m, sd) in s.items()) + " |")
Markdown("Mean ± standard deviation over 3 seeds, 1,920 completions each:\n\n" + "\n".join(rows))

# %% [markdown]
# All nine runs on the shared dashboard (one colour per method, one line per seed):

# %%
dashboard(*[h for hs in runs.values() for h in hs], title="equal budget: 1,920 sampled completions, 3 seeds",
          colors={name: f"C{i}" for i, name in enumerate(runs)}); plt.show()

# %% [markdown]
# What the table says, as asserted below:
#
# * At PPO's budget, and without a second network, both critic-free methods reach a gold win-rate of at least 0.8 over the SFT model with at least 90% valid samples, on average over the seeds.
# * RLOO and PPO optimise the same objective (gold score $- 0.05\,\mathrm{KL}$) and land close together.
# * GRPO wins more often, at more than one and a half times their KL: the weak pull of its KL term (section 7.1).
# * An RLOO run takes less time than a PPO run, for two reasons this comparison does not separate: the critic doubles every forward and backward pass, and PPO takes more optimiser steps per iteration, `ppo_epochs` × ⌈`batch_size` / `minibatch`⌉ = 4 × 3 = 12 against RLOO's `epochs` × ⌈`batch_size` · k / `minibatch`⌉ = 2 × 2 = 4 (the times include the evaluations; `Method.cost` counts the steps of every method).

# %%
for name in ("RLOO", "GRPO"):
    assert summary[name]["win_rate"][0] >= 0.8 and summary[name]["valid_rate"][0] >= 0.9, (name, summary[name])
assert abs(summary["RLOO"]["win_rate"][0] - summary["PPO (critic)"]["win_rate"][0]) < 0.1
assert summary["GRPO"]["kl"][0] > 1.5 * max(summary["RLOO"]["kl"][0], summary["PPO (critic)"]["kl"][0])
assert summary["RLOO"]["seconds"][0] < summary["PPO (critic)"]["seconds"][0]
print({name: round(s["win_rate"][0], 3) for name, s in summary.items()})

# %% [markdown]
# Finally, section 5's measurement again, on the trained RLOO policy (seed 0):

# %%
noise_rloo = baseline_noise(pol_rloo.lm)
print({k: round(v, 4) for k, v in noise_rloo.items()})
plot_noise(("SFT", noise_sft), ("after RLOO", noise_rloo))
assert noise_rloo["none"] > 5 * noise_sft["none"]
assert noise_rloo["batch mean"] < noise_rloo["k=4"]

# %% [markdown]
# The trained policy's mean reward is high, so **no** baseline is now far off (`none` grew more than fivefold): the regime where lecture 02's baselines pay. Prompts still barely differ in difficulty, and the batch mean is still the least noisy baseline in this world.

# %% [markdown]
# The headline numbers of this notebook (collected by `python -m alignlab course`):

# %%
print(f"notebook ran in {time.time() - t_start:.0f} s")
alignlab.report(h_rloo, notebook="07_rloo_grpo",
                **{f"{n.split()[0].lower()}_win_rate_mean": round(s["win_rate"][0], 4) for n, s in summary.items()},
                **{f"{n.split()[0].lower()}_kl_mean": round(s["kl"][0], 4) for n, s in summary.items()},
                grpo_beta0_kl=round(b0_kl, 4), dr_grpo_win_rate=round(h_dr.last("win_rate"), 4),
                toy_grpo_cosine=round(toy["mean / std (GRPO)"]["cosine"], 3))

# %% [markdown]
# ## 9. Summary
#
# * A critic for an LLM is a second network the size of the policy, and a noisy one. **RLOO** and **GRPO** drop it: sample $k$ completions per prompt and use the others as the baseline.
# * **RLOO**: $A_i = R_i - \text{mean}_{j\ne i}R_j$ with the KL folded into $R$; REINFORCE (TRL adds a clipped sequence ratio to reuse a batch). Leaving the sample out keeps the estimator unbiased; the plain group mean shrinks it by $(k-1)/k$ (section 4).
# * **GRPO**: $A_i = (r_i - \bar r)/(\sigma + \epsilon)$ on every token, PPO-clip per token, $\beta\,k_3$ KL in the loss. Dividing by $\sigma$ changes the gradient's direction (prompts with small spread weigh more), and averaging per completion weights tokens by $1/|o_i|$; **Dr. GRPO** removes both.
# * A group baseline's noise falls as $1/(k-1)$; whether it beats a batch mean depends on how much prompts differ in difficulty (section 5).
#
# **Pitfalls, and how to see them**
# * *Group mean including the sample itself*: advantages shrink by $(k-1)/k$, and for $k = 2$ by half.
# * *Std over the whole batch instead of the group*: then it is batch whitening, not GRPO; a group of tied rewards no longer gets exactly 0.
# * *Rows not grouped by prompt*: `scores.view(P, k)` is only right if the prompts were repeated `k` times in a row (`[p for p in prompts for _ in range(k)]`), not tiled (`prompts * k`).
# * *$k_3$ with the ratio inverted* ($u = \log\pi - \log\pi_\text{ref}$): still $\ge 0$ and 0 at step 0, so the sanity values do not catch it; on samples from $\pi$ its mean is $\chi^2(\pi\|\pi_\text{ref}) - \mathrm{KL}(\pi\|\pi_\text{ref})$, which is neither KL, and only a check on $\pi \ne \pi_\text{ref}$ catches it.
# * *Padding in the loss*: the mean over tokens must count completion tokens only; a per-sequence mean needs each row's own length.
# * *Ties*: in float32 the mean of eight 0.7s is not exactly 0.7; dividing the rounding error by $(0 + \epsilon)$ gives a tied group spurious advantages unless ties are set to 0 explicitly.
#
# ## 10. Exercises
#
# 1. Run section 4 with $k = 2, 8$ and $16$. How do the scale of the group-mean estimator and the cosine of GRPO's change with $k$?
# 2. Run RLOO with $k = 2$ and $k = 8$ at the same budget (`batch_size` 24 and 6). Which learns faster here, and does section 5 predict it?
# 3. Train GRPO with only `scale="none"`, then with only `aggregation="dr_grpo"`. Which change moves the KL, and which the completion length? Relate it to the mean $|A|$ of section 7.1.
# 4. Train GRPO with $\beta = 0$ against lecture 01's learned reward model instead of the gold judge (`reward_fn=ppo.rm_reward_fn(rm, tok)`). Does it hack the reward, as PPO did in lecture 03?
# 5. Make the group tiled instead of consecutive (`grpo.group_rollout` with prompts `prompts * k`, keeping `scores.view(P, k)`). What happens to the advantages, and to training?
