# %% [markdown]
# # Exercises 03, second set: the KL-shaped reward and the adaptive $\beta$
#
# **Objectives.** Write, and check, the two pieces of RLHF's KL control that sit around PPO's loss:
# 1. `token_rewards`: the per-token reward PPO maximises (Ziegler et al. 2019, eq. 2; InstructGPT): $-\beta(\log\pi - \log\pi_\text{ref})$ on every completion token, plus the reward model's score on the last one;
# 2. `adaptive_beta`: Ziegler et al.'s proportional controller (their section 2.2), which moves $\beta$ so that the KL stays near a target;
#
# then apply the first to a real sample, and drive the second on a problem whose KL is known exactly.
#
# **Prerequisites.** Lecture 02 (section 2.1, the per-token reward) and lecture 03 (sections 2, 4.2 and 6); exercises 00 (token log-probs).
#
# **Run time.** `quick` profile (2-core CPU): under 30 s once the SFT model is cached (measured on a heavily loaded machine; about a third is importing torch), no training. The first notebook you run trains the SFT model, about a minute.
#
# **How this notebook works.** Write each exercise function's body where it says `# YOUR CODE HERE`. The cell after it runs hidden tests against the course's reference implementation and prints ✅, or ❌ with a hint about what is wrong. Later cells use your functions; they skip themselves until they are implemented. The last cell prints your score. Keep the functions' names: they are what gets graded.

# %%
import math

import matplotlib.pyplot as plt
import torch

from alignlab.course.checks import check, ready, summary

# %% [markdown]
# ## 1. Exercise 1: the KL-shaped reward
#
# The RLHF objective of one sample, $r_\phi(x, y) - \beta\,\mathrm{KL}$, is handed to PPO as one reward per token. With $a_t$ the token chosen at column $t$,
#
# $$ r_t = -\beta\,\big(\log\pi(a_t \mid s_t) - \log\pi_\text{ref}(a_t \mid s_t)\big) \quad\text{on every completion token,} \qquad + \; r_\phi(x, y) \quad\text{on the last one,} $$
#
# so the rewards of a sample sum to $r_\phi(x, y) - \beta\,\mathrm{KL}_{k1}(y)$, where $\mathrm{KL}_{k1}$ is the sum of the log-ratios. Each token pays its own penalty where it was chosen, and the score, which judges the whole completion, comes at its end (its `<eos>`, or the last token of a cut-off completion).
#
# Write `token_rewards(score, logprobs, ref_logprobs, mask, kl_coef)`. `logprobs` and `ref_logprobs` are $(B, T)$ constants from sampling time; `mask` is 1 on the completion tokens. Prompts are left-padded and a batch stacked from rows of different widths is right-padded, so a completion need not end in the last column, and the log-probs outside the mask may hold anything. Positions with mask 0 get reward 0.

# %%
def token_rewards(score, logprobs, ref_logprobs, mask, kl_coef):
    """Per-token rewards of the KL-regularised objective.

    score:        (B,) the reward model's (or judge's) score of each completion
    logprobs:     (B, T) log pi(a_t|s_t) of the sampled tokens
    ref_logprobs: (B, T) log pi_ref(a_t|s_t) of the same tokens
    mask:         (B, T) 1 on completion tokens, 0 on prompt and padding
    kl_coef:      beta >= 0
    Returns (B, T): -beta * (logprobs - ref_logprobs) on the completion tokens, plus the score on
    each row's last completion token; 0 where mask is 0.
    """
    ### BEGIN SOLUTION
    ### HINT: the penalty is per token and only where the mask is 1 (what lies outside may be junk); the score is added once per row, at the position of the row's LAST 1 in the mask, which is not always the last column; write into a fresh tensor, not into your inputs.
    valid = mask.bool()
    rewards = -kl_coef * torch.where(valid, logprobs - ref_logprobs, torch.zeros_like(logprobs))
    last = mask.shape[1] - 1 - valid.long().flip(-1).argmax(-1)
    rewards[torch.arange(len(score)), last] += score
    return rewards
    ### END SOLUTION

# %%
check("token_rewards", token_rewards)

# %% [markdown]
# ## 2. On a real sample: how far did fine-tuning move, token by token?
#
# No RL run is needed to see the reward at work. Let the SFT model play the policy and the pretrained base model (the one SFT started from) the reference: the KL penalty then measures how far supervised fine-tuning moved each token. Sample 48 completions from the SFT model, score them with the gold judge, and take $\beta = 0.1$:

# %%
from alignlab import sampling, world
from alignlab.methods import rl
from alignlab.models import get_profile
from alignlab.pipeline import load_base, load_sft

profile = get_profile()
sft, tok = load_sft(profile)
base, _ = load_base(profile)
batch = sampling.sample(sft, tok, world.make_prompts(48, seed=0), max_new_tokens=profile.max_new_tokens, seed=0)
with torch.no_grad():
    lp = sampling.token_logprobs(sft, batch.input_ids, batch.attention_mask)
    lp_ref = sampling.token_logprobs(base, batch.input_ids, batch.attention_mask)
score = torch.tensor(world.gold_rewards(batch.prompts, batch.completions, batch.finished))
mask = batch.completion_mask.float()

# %% [markdown]
# Each row of your rewards must sum to score $- \beta\,\mathrm{KL}_{k1}$, and the whole tensor must equal the library's `rl.token_rewards`; then one completion, column by column:

# %%
if ready("token_rewards", token_rewards):
    rewards = token_rewards(score, lp, lp_ref, mask, 0.1)
    kl_k1 = ((lp - lp_ref) * mask).sum(1)
    print(f"max |row sum - (score - 0.1 KL)| = {(rewards.sum(1) - (score - 0.1 * kl_k1)).abs().max():.2e}")
    print(f"max |yours - rl.token_rewards|  = {(rewards - rl.token_rewards(score, lp, lp_ref, mask, 0.1)).abs().max():.2e}")
    print(f"mean sequence KL (k1) of SFT from the base model: {kl_k1.mean():.2f} nats; mean score {score.mean():+.2f}")
    eos_share = (((lp - lp_ref) * mask)[batch.input_ids == tok.eos_token_id].sum() / kl_k1.sum()).item()
    print(f"share of that KL paid on the <eos> tokens: {eos_share:.0%}")
    i = int(mask.sum(1).argmin())
    print(f"\n{'token':>10} {'logp':>7} {'logp_ref':>8} {'reward':>7}")
    for t in mask[i].nonzero().flatten().tolist():
        print(f"{tok.convert_ids_to_tokens(int(batch.input_ids[i, t])):>10} {lp[i, t]:7.2f} {lp_ref[i, t]:8.2f} {rewards[i, t]:+7.3f}")

# %%
### BEGIN HIDDEN TESTS
assert torch.allclose(rewards.sum(1), score - 0.1 * kl_k1, atol=1e-5)
assert torch.allclose(rewards, rl.token_rewards(score, lp, lp_ref, mask, 0.1), atol=1e-6)
assert kl_k1.mean() > 0 and eos_share > 0.5
### END HIDDEN TESTS

# %% [markdown]
# Most of the penalty is paid on one token, the `<eos>` (the printed share). The base model was pretrained on a stream of reviews with no `<eos>` between them (`pipeline.pretrain`), so it gives stopping almost no probability; SFT taught the model to stop. A PPO run with this base model as its reference would be taxed mostly for ending its reviews; RLHF takes the SFT model itself as $\pi_\text{ref}$ (as InstructGPT does), so that the penalty measures what RL changes, not what SFT already did.

# %% [markdown]
# ## 3. Exercise 2: the adaptive KL coefficient
#
# A fixed $\beta$ is hard to choose: the KL it allows depends on the reward's scale and on the task. Ziegler et al. (2019) instead pick a target KL and adjust $\beta$ after each rollout of $n$ samples whose measured KL (per sequence) is $\mathrm{KL}$:
#
# $$ e = \mathrm{clip}\Big(\frac{\mathrm{KL}}{\mathrm{KL}_\text{target}} - 1,\; -0.2,\; 0.2\Big), \qquad \beta \leftarrow \beta\,\Big(1 + e\,\frac{n}{\text{horizon}}\Big). $$
#
# Write `adaptive_beta(beta, kl, target, n_steps, horizon)`: one update, returning the new $\beta$. `kl` may be a Python number or a 0-dim tensor (a rollout's mean KL).

# %%
def adaptive_beta(beta, kl, target, n_steps, horizon):
    """One step of the adaptive KL controller (Ziegler et al. 2019, sec. 2.2).

    beta:    the current KL coefficient (> 0)
    kl:      the KL measured on the last rollout (number or 0-dim tensor)
    target:  the KL the controller aims for (> 0)
    n_steps: samples in that rollout; horizon: samples over which beta may change by about 20 %
    Returns the new beta.
    """
    ### BEGIN SOLUTION
    ### HINT: the error is relative to the target and bounded on both sides; the step is proportional to the error and to n_steps / horizon; the update multiplies beta.
    err = min(max(float(kl) / target - 1.0, -0.2), 0.2)
    return beta * (1.0 + err * n_steps / horizon)
    ### END SOLUTION

# %%
check("adaptive_beta", adaptive_beta)

# %% [markdown]
# ## 4. The controller on a problem whose KL is known
#
# Take one prompt and 256 completions the SFT model samples for it as the possible answers: $\pi_\text{ref}$ is the SFT model's probability of each (renormalised over the 256), the reward the gold judge's. For every $\beta$ the KL-regularised optimum is known in closed form (lecture 03, section 2), $\pi_\beta \propto \pi_\text{ref}\,e^{r/\beta}$, and so is its KL to $\pi_\text{ref}$. Suppose the policy reached that optimum within each rollout (a PPO that optimises instantly; a real one lags behind $\beta$, which makes the KL overshoot, as lecture 03's PPO-KL run shows). Start from $\beta = 0.01$, aim for a KL of 1 nat, with lecture 03's $n = 48$ samples per rollout and a horizon of 100.
#
# **Predict** before running: at least how many rollouts does it take $\beta$ to reach the $\beta^*$ whose KL is the target?

# %%
pool = sampling.sample(sft, tok, [world.make_prompts(1, seed=3)[0]] * 256, max_new_tokens=profile.max_new_tokens, seed=3)
with torch.no_grad():
    log_ref = sampling.sequence_logprobs(sft, pool).double().log_softmax(0)
r_pool = torch.tensor(world.gold_rewards(pool.prompts, pool.completions, pool.finished), dtype=torch.float64)


def kl_at(beta):
    """KL(pi_beta || pi_ref) of the optimum at beta, in nats."""
    log_p = (log_ref + r_pool / beta).log_softmax(0)
    return (log_p.exp() * (log_p - log_ref)).sum().item()


lo, hi = 1e-4, 1e3                       # the KL falls as beta grows: bisect (in log beta) for the target
for _ in range(100):
    mid = math.sqrt(lo * hi)
    lo, hi = (mid, hi) if kl_at(mid) > 1.0 else (lo, mid)
beta_star = math.sqrt(lo * hi)
print(f"KL at beta = 0.01: {kl_at(0.01):.2f} nats;  beta* = {beta_star:.4f} (KL {kl_at(beta_star):.4f})")

# %%
if ready("adaptive_beta", adaptive_beta):
    n, horizon, target, betas, kls = 48, 100, 1.0, [0.01], []
    for _ in range(80):
        kls.append(kl_at(betas[-1]))
        betas.append(float(adaptive_beta(betas[-1], kls[-1], target, n, horizon)))
    fig, axes = plt.subplots(1, 2, figsize=(8, 2.6))
    axes[0].semilogy(betas); axes[0].axhline(beta_star, c="grey", ls="--", lw=0.8, label="β*")
    axes[1].plot(kls); axes[1].axhline(target, c="grey", ls="--", lw=0.8, label="target")
    axes[0].set_title("β"); axes[1].set_title("KL of the policy (nats)")
    for ax in axes: ax.set_xlabel("rollout"); ax.legend(fontsize=8)
    plt.tight_layout(); plt.show()
    bound = math.log(beta_star / 0.01) / math.log(1 + 0.2 * n / horizon)
    first = next((i for i, kl in enumerate(kls) if abs(kl / target - 1) < 0.05), None)
    steps = [b / a for a, b in zip(betas, betas[1:])]
    print(f"fewest rollouts the clip allows: {bound:.1f};  first rollout within 5 % of the target: "
          f"{'never' if first is None else first}")
    print(f"largest factor of one update: {max(steps):.4f} (1 + 0.2 n / horizon = {1 + 0.2 * n / horizon:.4f})")
    print(f"after {len(kls)} rollouts: beta = {betas[-1]:.4f} (beta* = {beta_star:.4f}), KL = {kls[-1]:.3f}")

# %%
### BEGIN HIDDEN TESTS
assert max(steps) <= 1 + 0.2 * n / horizon + 1e-12 and min(steps) >= 1 - 0.2 * n / horizon - 1e-12
assert first is not None and first >= bound and abs(kls[-1] / target - 1) < 0.01 and abs(betas[-1] / beta_star - 1) < 0.02
### END HIDDEN TESTS

# %% [markdown]
# <!-- ### BEGIN SOLUTION -->
# *Answer.* While the KL is more than 20 % above the target, the error is clipped at 0.2 and every update multiplies $\beta$ by exactly $1 + 0.2 \cdot 48/100 = 1.096$; so reaching $\beta^*$ from 0.01 takes at least $\ln(\beta^*/0.01)/\ln 1.096$ rollouts (printed), and the controller takes more (printed): near the target the error, and so the step, shrinks in proportion. That is the controller's design: the horizon (in samples) sets how fast $\beta$ may move, whatever the batch size, and $\beta$ settles where the KL equals the target.
# <!-- ### END SOLUTION -->

# %% [markdown]
# ## 5. Why clip the error: one bad estimate
#
# A rollout's KL is an estimate from $n$ samples; one rollout can read far too high (a few samples that the policy likes and the reference does not). Suppose one reads 10 times the target. Compare your update with the same rule without the clip:

# %%
if ready("adaptive_beta", adaptive_beta):
    clipped = float(adaptive_beta(0.1, 10.0, 1.0, 48, 100)) / 0.1
    unclipped = 1 + (10.0 / 1.0 - 1) * 48 / 100
    print(f"beta multiplied by {clipped:.3f} with the clip, by {unclipped:.2f} without it")

# %% [markdown]
# With the clip one outlier moves $\beta$ by at most 9.6 %; without it, it would multiply it by 5.3, and the next rollouts would pay a KL penalty five times too strong until the controller walked it back down at 9.6 % a step at best.

# %% [markdown]
# ## 6. Your score

# %%
summary("03_rlhf_kl")
### BEGIN HIDDEN TESTS
from alignlab.course.checks import all_passed

assert all_passed("03_rlhf_kl"), "a reference solution fails its own check"
### END HIDDEN TESTS
