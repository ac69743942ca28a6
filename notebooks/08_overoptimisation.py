# %% [markdown]
# # Lecture 08: reward over-optimisation, measured
#
# **Objectives.** By the end of this notebook you can
# 1. build proxy reward models of several strengths and measure each against the truth;
# 2. estimate best-of-$n$ for every $n$ up to 256 from **one** pool of samples, without bias, and compute its KL to the reference;
# 3. plot gold and proxy reward against $d = \sqrt{\mathrm{KL}}$ for best-of-$n$ and for PPO, and fit Gao et al.'s functional forms to the gold curves;
# 4. test the paper's qualitative claims in this world and state plainly which hold;
# 5. use the practitioner's remedies (early stopping on a held-out judge, a KL penalty, a reward-model ensemble) and measure what each buys.
#
# **Prerequisites.** Lecture 01 (the reward model, best-of-N), lecture 03 (PPO, reward hacking at $\beta = 0$).
#
# **Run time.** `quick` profile (2-core CPU): 150 s under nbval in the fresh-clone test run (`.ci/run`), which includes training five small proxy reward models (lecture 01 caches the sixth); 112 s with them cached (`pytest notebooks/08_overoptimisation.ipynb`, one torch thread, another job on the other core). `full` profile (one GPU): not measured yet (no GPU was available when this lecture was written).

# %% [markdown]
# ## 1. Set-up: the truth and its proxies
#
# Gao, Schulman and Hilton (2022, "Scaling Laws for Reward Model Overoptimization") had to *simulate* a human: a large "gold" reward model labelled the data on which smaller proxy reward models were trained, and every policy was scored by both. Our world has that structure built in: the gold judge (lecture 00) labels, through the noisy Bradley-Terry annotator, the pairs on which a reward model learns (lecture 01). We train **proxies** of several strengths with the one reward-model path of lecture 01 (`rm.load_reward_model`, cached by their settings):
#
# * 512, 2048 and 8192 labelled comparisons (a 16-fold range; 8192 is lecture 01's reward model);
# * a **smaller** model: one transformer block instead of two, on the same 2048 comparisons;
# * two more seeds of the weakest proxy, for an ensemble in section 6.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown

import alignlab
from alignlab import cache
from alignlab.evaluation import Evaluator, gold_scores
from alignlab.methods import bon, ppo
from alignlab.methods.rm import rm_folder
from alignlab.models import get_device, get_profile
from alignlab.pipeline import load_sft
from alignlab.sampling import Batch, sample
from alignlab.studies import overopt

SEED = 0  # the SFT model (and the proxies trained on its samples); try 1 or 2
t_start = time.time()
profile, device = get_profile(), get_device()
ref, tok = load_sft(profile, SEED, device=device)
evaluator = Evaluator(ref, tok, profile=profile)
proxies, accuracy = {}, {}
for name in overopt.PROXIES:
    proxies[name], _ = overopt.load_proxy(name, profile, device, seed=SEED)
    accuracy[name] = cache.read_meta(rm_folder(profile, SEED, overopt.proxy_config(name, profile), progress=False))["eval_accuracy"]
rows = ["| proxy | comparisons | blocks | held-out accuracy vs gold |", "|---|---|---|---|"]
for name, cfg in ((n, overopt.proxy_config(n, profile)) for n in overopt.PROXIES):
    rows.append(f"| {name} | {cfg.n_pairs} | {cfg.n_layer or ref.config.n_layer} | {accuracy[name]:.3f} |")
print(f"set-up in {time.time() - t_start:.0f} s")
Markdown("\n".join(rows))

# %% [markdown]
# Held-out accuracy is lecture 01's: the fraction of fresh pairs (gold gap above 0.2) that the proxy orders as the gold judge does. More comparisons make a clearly better proxy; the one-block model is measured against its two-block twin on the same data. The three proxies we optimise below are the three data sizes:

# %%
MAIN = ["512 pairs", "2048 pairs", "8192 pairs"]
assert accuracy["512 pairs"] < accuracy["2048 pairs"] < accuracy["8192 pairs"]
colors = {name: f"C{i}" for i, name in enumerate(MAIN + ["2048 pairs, 1 layer"])}

# %% [markdown]
# ## 2. Best-of-$n$ for every $n$, from one pool
#
# Best-of-$n$ under a proxy: sample $n$ completions, keep the one the proxy scores highest. Gao et al. measure it up to large $n$ with a trick: sample a pool of $m \ge n$ completions **once**, sort it by the proxy, and average over all $\binom{m}{n}$ subsets of size $n$ at once. The $i$-th smallest of $m$ is the best of exactly $\binom{i}{n-1}$ of them, so
#
# $$ \mathbb{E}\big[f(\text{best of } n)\big] \approx \sum_{i=0}^{m-1} \frac{\binom{i}{n-1}}{\binom{m}{n}}\, f(y_{(i)}), $$
#
# an **unbiased** estimate for every $n \le m$, from one pool (`overopt.bon_weights`; `tests/test_overopt.py` checks it against enumerating the subsets). Its KL to the reference has the closed form $\log n - (n-1)/n$ when scores never tie (`bon.bon_kl`), an upper bound otherwise; `overopt.bon_kl_estimate` computes the KL of best-of-$n$ drawn from the pool itself, which sees the ties. We take $m = 256$ samples for each of 48 held-out prompts:

# %%
P, M = 48, 256
prompts = evaluator.prompts[:P]
t = time.time()
with torch.no_grad():  # 16 calls of 16 draws per prompt: row j * P + i is draw j of prompt i, as bon.as_grid reads it
    pool = Batch.concat([sample(ref, tok, list(prompts) * 16, evaluator.max_new_tokens, seed=7 + c) for c in range(M // 16)],
                        tok.pad_token_id)
gold = bon.as_grid(gold_scores(pool), P)                                     # (P, M)
print(f"{len(pool)} samples drawn and judged in {time.time() - t:.0f} s")
t = time.time()
scores = {name: bon.score_candidates(rm, pool, P) for name, rm in proxies.items()}
print(f"scored by {len(proxies)} proxies in {time.time() - t:.0f} s")

# %%
NS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]

def bon_curve(selector):
    out = {"n": np.array(NS), "kl": np.array([bon.bon_kl(n) for n in NS]),
           "kl_est": np.array([overopt.bon_kl_estimate(selector, n) for n in NS])}
    out["gold"] = np.array([overopt.bon_estimate(selector, gold, n) for n in NS])
    out["proxy"] = np.array([overopt.bon_estimate(selector, selector, n) for n in NS])
    return out

BON = MAIN + ["2048 pairs, 1 layer"]
bon_curves = {name: bon_curve(scores[name]) for name in BON}
for name, c in bon_curves.items():
    i = int(c["gold"].argmax())
    print(f"{name:19s} gold: n=1 {c['gold'][0]:+.3f}, best {c['gold'][i]:+.3f} at n={NS[i]}, n=256 {c['gold'][-1]:+.3f}")
c = bon_curves["8192 pairs"]
print("KL, formula:      ", np.round(c["kl"][[7, 11, 15]], 2), " (n = 16, 64, 256)")
print("KL, pool estimate:", np.round(c["kl_est"][[7, 11, 15]], 2))

# %% [markdown]
# Two readings. First, best-of-$n$ under every proxy ends far above $n = 1$, and it gets away from the reference only slowly, $\log n$ nats. Whether its gold score turns over within $n \le 256$ depends on the proxy and on the SFT model: where the printed best $n$ is below 256 it did, and then by little (lecture 01 saw no turn-over up to $n = 64$). Second, the pool estimate of the KL is within 5% of the formula up to $n = 64$: ties in the proxy's scores are too rare here to matter. At $n = m = 256$ it reads $\log 256$: a pool of 256 cannot show how far the tail of the reference goes, so the estimate is only good for $n$ well below $m$. We use the formula, as the paper does, for $d = \sqrt{\mathrm{KL}}$.

# %%
for name in BON:
    assert bon_curves[name]["gold"][-1] > bon_curves[name]["gold"][0] + 0.2        # best-of-256 is far better than n = 1
assert abs(c["kl_est"][11] / c["kl"][11] - 1) < 0.05 and abs(c["kl_est"][15] - np.log(M)) < 1e-6

# %% [markdown]
# ## 3. PPO under each proxy, checkpoint by checkpoint
#
# Lecture 03's PPO, with no KL penalty ($\beta = 0$), against each proxy; every 2 iterations the shared evaluator scores the policy on held-out prompts (gold reward, KL to $\pi_\text{ref}$), and `overopt.ProxyEvaluator` adds the proxy's mean score of the **same** samples. 28 iterations of 48 prompts (lecture 03 runs 40):

# %%
def run_ppo(proxy, beta=0.0, seed=0, steps=28):
    cfg = ppo.PPOConfig.for_profile(profile, kl_coef=beta, steps=steps, eval_every=2, seed=seed)
    ev = overopt.ProxyEvaluator(evaluator, tok, proxies[proxy])
    return ppo.fit(ref, tok, cfg, ev, ppo.rm_reward_fn(proxies[proxy], tok), name=f"PPO β={beta:g}, {proxy}",
                   progress=False)[1]

t = time.time()
ppo_runs = {name: run_ppo(name) for name in MAIN}
print(f"3 PPO runs in {time.time() - t:.0f} s")

def ppo_curve(h):
    steps, kl = h.series("kl")
    return {"step": np.array(steps), "kl": np.clip(kl, 0, None), "gold": np.array(h.series("gold_reward")[1]),
            "proxy": np.array(h.series("proxy_reward")[1]), "valid": np.array(h.series("valid_rate")[1])}

ppo_curves = {name: ppo_curve(h) for name, h in ppo_runs.items()}
for name, c in ppo_curves.items():
    i = int(c["gold"].argmax())
    print(f"{name:11s} gold: start {c['gold'][0]:+.3f}, best {c['gold'][i]:+.3f} at iteration {c['step'][i]}, "
          f"end {c['gold'][-1]:+.3f} (KL {c['kl'][-1]:.1f}, valid {c['valid'][-1]:.2f});  proxy {c['proxy'][0]:+.2f} -> {c['proxy'][-1]:+.2f}")
    assert c["gold"][-1] < c["gold"].max() - 0.05 and c["proxy"][-1] > c["proxy"][int(c["gold"].argmax())]

# %% [markdown]
# PPO without a KL penalty over-optimises under every proxy: the gold score rises for a few iterations (or not at all, under a weak proxy), then falls below the SFT model's while the proxy's score keeps climbing, and the text stops being valid reviews (lecture 03's reward hacking). The KL runs to tens of nats, where best-of-256 sits at 4.5.

# %% [markdown]
# ## 4. Gold and proxy against $\sqrt{\mathrm{KL}}$, and Gao et al.'s fits
#
# Gao et al. found that the **gold** gain $R$ over the reference follows, in $d = \sqrt{\mathrm{KL}}$,
#
# $$ R_\text{bon}(d) = d\,(\alpha_\text{bon} - \beta_\text{bon}\, d), \qquad R_\text{RL}(d) = d\,(\alpha_\text{RL} - \beta_\text{RL} \log d), $$
#
# rising, peaking and falling, while the proxy keeps rising. Both are linear in $(\alpha, \beta)$ after dividing by $d$, so a least-squares fit is one `lstsq` (`overopt.fit_bon`, `overopt.fit_rl`; the tests recover known coefficients from synthetic curves). The figure: gold (top) and proxy (bottom) against $d$, for best-of-$n$ (left) and PPO (right), points measured, lines fitted.

# %%
fits = {}
for name in BON:
    b = bon_curves[name]
    fits[("best-of-n", name)] = overopt.fit_bon(np.sqrt(b["kl"]), b["gold"] - b["gold"][0])
for name in MAIN:
    p = ppo_curves[name]
    fits[("PPO", name)] = overopt.fit_rl(np.sqrt(p["kl"]), p["gold"] - p["gold"][0])

fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex="col")
for col, (kind, curves, names) in enumerate((("best-of-n", bon_curves, BON), ("PPO", ppo_curves, MAIN))):
    for name in names:
        c = curves[name]
        d = np.sqrt(c["kl"])
        f = fits[(kind, name)]
        grid = np.linspace(0, d.max(), 100)
        form = overopt.bon_form if kind == "best-of-n" else overopt.rl_form
        axes[0, col].plot(d, c["gold"] - c["gold"][0], "o", c=colors[name], ms=4, label=f"{name} ({accuracy[name]:.2f})")
        axes[0, col].plot(grid, form(grid, f["alpha"], f["beta"]), "-", c=colors[name], lw=1)
        axes[1, col].plot(d, c["proxy"] - c["proxy"][0], "o-", c=colors[name], ms=3)
        axes[0, col].set_title(f"{kind}: gold gain over π_ref (points) and fit (lines)", fontsize=9)
        axes[1, col].set_title(f"{kind}: proxy gain (each proxy's own units)", fontsize=9)
        axes[1, col].set_xlabel("d = sqrt(KL(π ‖ π_ref))")
for ax in axes.flat:
    ax.axhline(0, c="grey", lw=0.6); ax.grid(alpha=0.3)
axes[0, 0].legend(fontsize=8, title="proxy (accuracy)", title_fontsize=8)
plt.tight_layout(); plt.show()

# %% [markdown]
# The fitted coefficients, the $R^2$ of each fit on its points, and the peak each fit predicts ($d^* = \alpha/2\beta$ for best-of-$n$, $e^{\alpha/\beta - 1}$ for RL) against the peak measured:

# %%
def fitted_peak(kind, f):
    if f["beta"] <= 0:
        return float("inf")
    return f["alpha"] / (2 * f["beta"]) if kind == "best-of-n" else float(np.exp(f["alpha"] / f["beta"] - 1))

def measured_peak(kind, name):
    c = bon_curves[name] if kind == "best-of-n" else ppo_curves[name]
    return float(np.sqrt(c["kl"][int(c["gold"].argmax())]))

rows = ["| method | proxy (accuracy) | α | β | R² | fitted peak d* | measured peak d |", "|---|---|---|---|---|---|---|"]
for (kind, name), f in fits.items():
    rows.append(f"| {kind} | {name} ({accuracy[name]:.2f}) | {f['alpha']:.3f} | {f['beta']:.3f} | {f['r2']:.2f} | "
                f"{fitted_peak(kind, f):.2f} | {measured_peak(kind, name):.2f} |")
for kind in ("best-of-n", "PPO"):
    r2 = [f["r2"] for (k, _), f in fits.items() if k == kind]
    print(f"{kind}: R^2 from {min(r2):.2f} to {max(r2):.2f}")
Markdown("\n".join(rows))

# %% [markdown]
# How to read the fits (the $R^2$ range is printed above the table). For best-of-$n$ the gold curves only rise and flatten over the range we can sample, so $R_\text{bon}$ fits a concave rise, and its "peak" $d^*$ is an extrapolation beyond $n = 256$, not a measurement. For PPO the curves rise and then collapse steeply; two parameters summarise that shape less well, and the fitted peak can sit away from the measured one (compare the last two columns). With so few points per curve, the coefficients are descriptions of these runs, not scaling laws.
#
# ## 5. The paper's claims, tested here
#
# Each verdict below is computed from the curves above, not written in advance, for this SFT model (`SEED` in section 1); exercise 1 asks which of them change on another one.

# %%
def interp_kl_for_gain(c, gain):
    """Smallest KL at which the gold gain of curve c first reaches `gain` (linear interpolation)."""
    g = c["gold"] - c["gold"][0]
    for j in range(1, len(g)):
        if g[j] >= gain:
            return float(np.interp(gain, [g[j - 1], g[j]], [c["kl"][j - 1], c["kl"][j]]))
    return float("inf")

verdicts = {}
# (a) gold peaks and then falls while the proxy keeps rising
for kind, curves in (("best-of-n", bon_curves), ("PPO", ppo_curves)):
    for name in MAIN:
        c = curves[name]
        i = int(c["gold"].argmax())
        falls = c["gold"][-1] < c["gold"][i] - 0.05
        verdicts[f"(a) {kind}, {name}: gold peaks then falls by > 0.05 while the proxy rises"] = bool(
            falls and c["proxy"][-1] > c["proxy"][i])
# (b) RL spends more KL than best-of-n for the same gold gain
for name in MAIN:
    gain = 0.5 * min((bon_curves[name]["gold"] - bon_curves[name]["gold"][0]).max(),
                     (ppo_curves[name]["gold"] - ppo_curves[name]["gold"][0]).max())
    kb, kr = interp_kl_for_gain(bon_curves[name], gain), interp_kl_for_gain(ppo_curves[name], gain)
    verdicts[f"(b) {name}: PPO needs more KL than best-of-n for a gold gain of {gain:.2f} ({kr:.2f} vs {kb:.2f} nats)"] = \
        (kr > kb) if gain >= 0.02 else None          # None: PPO never gained, nothing to compare
# (c) a stronger proxy delays the turn-over (testable only where the gold curve turns over)
for kind, curves in (("best-of-n", bon_curves), ("PPO", ppo_curves)):
    peaks = [measured_peak(kind, name) for name in MAIN]
    turned = [int(curves[name]["gold"].argmax()) < len(curves[name]["gold"]) - 1 for name in MAIN]
    key = f"(c) {kind}: the gold peak moves right as the proxy gets stronger (peak d = {', '.join(f'{p:.2f}' for p in peaks)})"
    verdicts[key] = bool(peaks[0] < peaks[1] < peaks[2]) if all(turned) else None
for k, v in verdicts.items():
    print({True: "HOLDS  ", False: "FAILS  ", None: "N/A    "}[v], k)

# %% [markdown]
# Verdicts (a) and (b) are about the shape of whole curves. Verdict (c) compares three peaks, each read off evaluations two iterations apart on 128 prompts, so it is the most fragile of the three: change `SEED` and see (exercise 1). "N/A" marks a claim the data cannot test: where best-of-$n$ does not turn over within $n \le 256$ there is no peak to move, and where PPO never gained there is no gain to compare.

# %% [markdown]
# ### 5.1 A KL penalty: a better frontier, or early stopping?
#
# Gao et al. found that a KL penalty in RL did not move the gold-vs-KL frontier: it only stopped the run earlier along it, like early stopping. Run PPO under the weakest proxy with lecture 03's $\beta = 0.1$, and compare both runs at equal KL:

# %%
h_kl = run_ppo("512 pairs", beta=0.1)
c0, c1 = ppo_curves["512 pairs"], ppo_curve(h_kl)
fig, ax = plt.subplots(figsize=(5, 3.2))
for c, label in ((c0, "β = 0"), (c1, "β = 0.1")):
    ax.plot(np.sqrt(c["kl"]), c["gold"], "o-", ms=3, label=label)
ax.set_xlabel("d = sqrt(KL)"); ax.set_ylabel("gold reward (held-out)"); ax.set_title("PPO under the 512-pair proxy", fontsize=9)
ax.legend(fontsize=8); ax.grid(alpha=0.3); plt.tight_layout(); plt.show()
on_frontier = np.interp(np.sqrt(c1["kl"][-1]), np.sqrt(c0["kl"]), c0["gold"])
print(f"beta = 0.1 ends at KL {c1['kl'][-1]:.2f}, gold {c1['gold'][-1]:+.3f};  the beta = 0 run at the same KL: gold {on_frontier:+.3f}")
print(f"best gold along the beta = 0 run: {c0['gold'].max():+.3f} (iteration {c0['step'][int(c0['gold'].argmax())]}), at its end {c0['gold'][-1]:+.3f}")
assert c1["gold"][-1] > on_frontier + 0.1

# %% [markdown]
# Here the paper's finding does **not** hold: at the KL where the penalised run ends, it has a clearly higher gold score than the unpenalised run had when it passed the same KL (the two numbers above). The KL penalty does not just stop PPO earlier along the same path; it takes a different path, one that keeps the text valid. (In Gao et al. the policies were large and the proxies strong; with a weak proxy and a tiny policy, the direction the policy moves in matters as much as how far.)

# %% [markdown]
# ## 6. What a practitioner does about it
#
# **Early stopping on a held-out judge.** Keep the checkpoint whose *held-out* gold score is best (in practice: human ratings or a stronger judge on a held-out set), not the last one, which the proxy likes most. Along each $\beta = 0$ run above, what that is worth:

# %%
for name, c in ppo_curves.items():
    i = int(c["gold"].argmax())
    print(f"{name:11s} last checkpoint {c['gold'][-1]:+.3f} (proxy {c['proxy'][-1]:+.2f});  best held-out checkpoint {c['gold'][i]:+.3f} "
          f"at iteration {c['step'][i]} (proxy {c['proxy'][i]:+.2f})")
    assert c["gold"][i] > c["gold"][-1] + 0.3

# %% [markdown]
# **A KL penalty** (section 5.1) holds the policy where the proxy is still right, at the price of the gold the run could have reached at a larger KL.
#
# **A reward-model ensemble.** Three proxies trained on the same 512 comparisons from different seeds make different mistakes; best-of-$n$ under their mean, or their minimum (the conservative choice of Coste et al. 2024), is harder to fool than under any one member:

# %%
members = ["512 pairs", "512 pairs, seed 1", "512 pairs, seed 2"]
stack = torch.stack([scores[m] for m in members])
ens_curves = {m: bon_curve(scores[m]) for m in members}
ens_curves["mean of 3"] = bon_curve(overopt.ensemble(stack, "mean"))
ens_curves["min of 3"] = bon_curve(overopt.ensemble(stack, "min"))
fig, ax = plt.subplots(figsize=(5.5, 3.2))
for name, c in ens_curves.items():
    ax.plot(np.sqrt(c["kl"]), c["gold"], "o-" if "of 3" in name else ":", ms=3, label=name)
ax.set_xlabel("d = sqrt(KL), best-of-n"); ax.set_ylabel("gold reward"); ax.legend(fontsize=7); ax.grid(alpha=0.3)
plt.tight_layout(); plt.show()
for name, c in ens_curves.items():
    print(f"{name:18s} gold at n=256 {c['gold'][-1]:+.3f}   best {c['gold'].max():+.3f} at n={NS[int(c['gold'].argmax())]}")
members_mean = np.mean([ens_curves[m]["gold"][-1] for m in members])
assert ens_curves["mean of 3"]["gold"][-1] > members_mean and ens_curves["min of 3"]["gold"][-1] > members_mean

# %% [markdown]
# At $n = 256$ both ensembles pick better completions than their members do on average (asserted): each member's mistakes are partly its own, and a completion that fools one of three proxies rarely fools all three. A single weak member is where best-of-$n$ turns over most readily (a member whose best $n$ is below 256 in the printout). The ensemble's price is three reward models to train and to run.

# %% [markdown]
# The headline numbers (collected by `python -m alignlab course`):

# %%
print(f"notebook ran in {time.time() - t_start:.0f} s")
alignlab.report({"gold_reward": float(ppo_curves["8192 pairs"]["gold"][-1]), "kl": float(ppo_curves["8192 pairs"]["kl"][-1]),
                 "win_rate": ppo_runs["8192 pairs"].last("win_rate"), "valid_rate": ppo_runs["8192 pairs"].last("valid_rate")},
                notebook="08_overoptimisation",
                **{f"acc_{n.split()[0]}": accuracy[n] for n in MAIN},
                **{f"bon256_gold_{n.split()[0]}": round(float(bon_curves[n]["gold"][-1]), 4) for n in MAIN},
                **{f"ppo_peak_gold_{n.split()[0]}": round(float(ppo_curves[n]["gold"].max()), 4) for n in MAIN},
                claims_holding=sum(v is True for v in verdicts.values()),
                claims_tested=sum(v is not None for v in verdicts.values()))

# %% [markdown]
# ## 7. Summary
#
# * A proxy reward model is right near the data it was trained on and wrong elsewhere; the more comparisons it saw, the more often it agrees with the truth on held-out pairs (section 1's table).
# * **Best-of-$n$** moves little probability: its KL grows like $\log n$, and from one pool of 256 samples per prompt the unbiased estimator gives every $n \le 256$ at once.
# * **RL without a KL penalty** moves far and fast; under every proxy here its gold reward rose, peaked and fell below the SFT model's while the proxy kept rising: Goodhart's law, with a known truth.
# * Gao et al.'s forms, $d(\alpha - \beta d)$ and $d(\alpha - \beta\log d)$, are two-parameter summaries of these curves; the table says how well they fit here.
# * Remedies, measured: keeping the checkpoint that a held-out judge likes best, a KL penalty, and an ensemble of reward models.
#
# **Pitfalls**
# * *Judging a run by its proxy*: the proxy keeps rising through the collapse (section 3). Always keep an independent judge, on held-out prompts.
# * *Best-of-$n$ from separate draws per $n$*: noisy and $n$ times more sampling; sort one pool and use the weights $\binom{i}{n-1}/\binom{m}{n}$ (never simply the best of the first $n$ of one pool, which is one noisy draw).
# * *Trusting $\log n - (n-1)/n$ with ties*: duplicate completions make it an upper bound; and a pool of $m$ cannot estimate the KL of best-of-$n$ for $n$ close to $m$.
# * *Fitting the forms to a few points*: two parameters fit almost any rise; check where the fitted peak lands against the measured one.
#
# ## 8. Exercises
#
# 1. Re-run the notebook with `SEED = 1` (a different SFT model; the proxies are trained on its samples). Which verdicts of section 5 change?
# 2. Fit $R_\text{bon}$ to the PPO curves and $R_\text{RL}$ to the best-of-$n$ curves. Which form fits which method better here?
# 3. Run PPO under the ensemble's mean (`lambda p, c, f: overopt.ensemble(torch.tensor([ppo.rm_reward_fn(proxies[m], tok)(p, c, f) for m in members])).tolist()` as the reward function of `ppo.train_ppo`). Does it delay the collapse?
# 4. Raise the pool to $m = 1024$ for a few prompts and compare the KL estimate with the formula at $n = 256$.
# 5. Train a proxy with noiseless labels (`annotator_temperature=0`, via `overopt.PROXIES`) on 512 pairs. Is label noise or data size the bigger limit?
