# %% [markdown]
# # Lecture 06: Online preference learning: online DPO, BPO and VPO
#
# **Objectives.** By the end of this notebook you can
# 1. say what makes a direct-alignment method *online*: pairs sampled from the **current** policy and labelled as training goes, instead of once from the SFT model;
# 2. run online DPO, BPO (the behaviour policy as DPO's reference, Xu et al. 2024) and VPO (a value-incentivised regulariser, Cen et al. 2024) on one loop, at an **equal annotation budget**, and read their step-0 values ($\ln 2$ at every BPO phase start, a VPO regulariser of exactly 0);
# 3. explain what the number of collection phases $F$ does (F = 1 is offline DPO, F = T is on-policy) and what VPO's sign does (optimism online, pessimism offline), and relate online VPO to XPO;
# 4. say which of the papers' claims hold in this world, over three SFT seeds, and which do not.
#
# **Prerequisites.** Lecture 04 (DPO, its loss and its logs), lecture 01 (the Bradley-Terry annotator and the learned reward model).
#
# **Run time.** `quick` profile (2-core CPU): 104 s under nbval with the SFT model cached (measured in the fresh-clone test run, `.ci/run`). Eight online runs of 40 steps make most of it. `full` profile (one GPU): not measured (no GPU was available when this lecture was built).

# %% [markdown]
# ## 1. Set-up

# %%
import copy
import dataclasses
import json
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Markdown

import alignlab
from alignlab import losses, metrics, pipeline
from alignlab.evaluation import Evaluator
from alignlab.methods import online
from alignlab.models import get_profile, seed_everything
from alignlab.plots import dashboard

profile = get_profile()
seed_everything(0)
print(f"profile={profile.name}")

# %% [markdown]
# ## 2. Offline and online
#
# Lecture 04's DPO is **offline**: the pairs were sampled once from the SFT model, labelled once, and the policy trained on them. As the policy moves, those pairs describe the SFT model's text, no longer its own. An **online** method keeps asking: every so often it samples two completions per prompt from the *current* policy, has them labelled, and takes DPO steps on them. One function does that step for every method of this lecture (and later ones): `online.collect_pairs`. With no labeller it is the course's noisy Bradley-Terry annotator over the gold judge (temperature 0.1), as in lectures 01 and 04; the rows come out in TRL's `prompt` / `chosen` / `rejected` format.

# %%
ref, tok = pipeline.load_sft(profile)
pairs = online.collect_pairs(ref, tok, ["the acting", "i thought the plot", "the ending"], seed=0)
for row in pairs:
    print(f"{row['prompt']!r}: {row['chosen']!r} [{row['gold_chosen']:+.2f}]  ≻  {row['rejected']!r} [{row['gold_rejected']:+.2f}]")

# %% [markdown]
# ## 3. The losses
#
# **Online DPO** is lecture 04's loss on these fresh pairs, with the SFT model as the reference. **BPO** keeps the formula and changes the reference: the model that *generated* the pair, a frozen snapshot $\pi_\text{beh}$ of the policy taken when the pairs were collected. Its implicit reward $\beta\log\pi_\theta/\pi_\text{beh}$ measures how far the policy moved since the data was sampled, a trust region around the data rather than around the SFT model:
#
# $$\mathcal L_\text{BPO} = -\operatorname{mean}_i \log\sigma\Big(\beta\big[\log\tfrac{\pi_\theta(y_c|x)}{\pi_\text{beh}(y_c|x)} - \log\tfrac{\pi_\theta(y_r|x)}{\pi_\text{beh}(y_r|x)}\big]\Big).$$
#
# **VPO** adds to the DPO loss a term on samples $y_j$ of a calibration policy, here $\pi_\text{ref}$ itself, with a sign that depends on the setting: $+$ online (optimism: push the reference's typical samples down, explore), $-$ offline (pessimism: pull the data up, like SFT):
#
# $$\mathcal L_\text{VPO} = \mathcal L_\text{DPO} \pm \alpha\,\beta\,\operatorname{mean}_j\big[\log\pi_\theta(y_j|x_j) - \log\pi_\text{ref}(y_j|x_j)\big].$$
#
# In a few lines, checked against the library on random tensors:

# %%
def bpo_loss(pc, pr, bc, br, beta):                      # b*: the behaviour snapshot's log-probs
    return -F.logsigmoid(beta * ((pc - bc) - (pr - br))).mean()

def vpo_loss(pc, pr, rc, rr, cal_pc, cal_rc, beta, alpha, mode):
    sign = {"online": 1.0, "offline": -1.0}[mode]
    return bpo_loss(pc, pr, rc, rr, beta) + sign * alpha * beta * (cal_pc - cal_rc).mean()

a = [torch.randn(16) * 4 - 20 for _ in range(6)]
assert torch.allclose(bpo_loss(*a[:4], 0.3), losses.bpo_loss(*a[:4], 0.3)[0])
for mode in ("online", "offline"):
    assert torch.allclose(vpo_loss(*a, 0.3, 0.5, mode), losses.vpo_loss(*a, 0.3, 0.5, mode)[0])
print("our lines == losses.bpo_loss and losses.vpo_loss (both signs)")

# %% [markdown]
# **Step-0 values.** When the policy equals its reference, every log-ratio is 0: the BPO loss is $\ln 2$ (and it is $\ln 2$ again at the start of **every** phase, when the reference is replaced by the policy itself), and the VPO regulariser is exactly 0 whatever $\alpha$; only its gradient, $\pm\alpha\beta/M$ per calibration sample, is not.
#
# **XPO.** TRL's XPOTrainer (up to TRL 1.13; 1.16 no longer ships it) added $\alpha_\text{XPO}\log\pi_\theta(y_\text{ref}|x)$, the summed log-prob of the reference's sample, to the DPO loss. Online VPO with $\pi_\text{cal} = \pi_\text{ref}$ has the same gradient when $\alpha_\text{XPO} = \alpha\beta$; the two losses differ by the constant $\alpha\beta\log\pi_\text{ref}(y_\text{ref})$, so XPO's bonus is not 0 at step 0:

# %%
s, t, y_ref = torch.randn(8) - 20, torch.randn(8) - 20, torch.randn(8) - 15
l_bpo = losses.bpo_loss(s, t, s.clone(), t.clone(), 0.3)[0]
l_vpo, *_, reg = losses.vpo_loss(s, t, s.clone(), t.clone(), y_ref, y_ref.clone(), 0.3, 0.5)
cal_v, cal_x = y_ref.clone().requires_grad_(True), y_ref.clone().requires_grad_(True)
losses.vpo_loss(s, t, s, t, cal_v, y_ref, 0.3, 0.5)[0].backward()
l_xpo, *_, bonus = losses.xpo_loss(s, t, s, t, cal_x, 0.3, alpha=0.5 * 0.3)
l_xpo.backward()
print(f"step 0: BPO {l_bpo:.4f}  VPO {l_vpo:.4f} (regulariser {reg:.1f})  XPO bonus {bonus:+.3f}   ln 2 = {math.log(2):.4f}")
assert abs(l_bpo - math.log(2)) < 1e-6 and abs(l_vpo - math.log(2)) < 1e-6 and reg == 0
assert torch.allclose(cal_v.grad, cal_x.grad) and bonus < 0

# %% [markdown]
# ## 4. One loop, one budget
#
# `online.train_online` runs all of them. The **annotation budget** is the number of labelled pairs, `n_pairs`; it is cut into $F$ collection phases. At the start of phase $f$ the policy is snapshotted, `n_pairs / F` pairs are sampled from the snapshot and labelled, and the phase's `steps / F` optimiser steps train on them, each pair once. `reference="sft"` is online DPO; `reference="behaviour"` is BPO; `alpha > 0` is VPO. $F = 1$ collects everything from the SFT model before training: offline DPO (`tests/test_online.py` checks that it is lecture 04's `train_dpo` on the same pairs, step for step). Every run below uses the same budget, steps, batch, $\beta$ and learning rate:

# %%
base = online.OnlineDPOConfig.for_profile(profile)
print(f"budget: {base.n_pairs} labelled pairs, {base.steps} steps of {base.batch_size} pairs, "
      f"beta {base.beta}, lr {base.lr}")
evaluator = online.ExplorationEvaluator(Evaluator(ref, tok, profile=profile))

def run(**settings):
    config = dataclasses.replace(base, **settings)
    return online.train_online(copy.deepcopy(ref), ref, tok, config, evaluator, progress=False)

# %% [markdown]
# ### 4.1 Offline DPO and online DPO

# %%
runs = {"offline DPO (F=1)": run(phases=1), "online DPO (F=T)": run(phases=base.steps)}
dashboard(*runs.values(), title="offline vs online DPO (same budget)", extra=("loss",)); plt.show()
for name, h in runs.items():
    print(f"{name:20s}", h.final())

# %% [markdown]
# ### 4.2 BPO: $F$ phases, the behaviour snapshot as the reference
#
# $F = 2$, $F = 10$ and $F = T = 40$, at the same budget:

# %%
for F_ in (2, 10, base.steps):
    runs[f"BPO F={F_}"] = run(phases=F_, reference="behaviour")
dashboard(*[runs[k] for k in runs if k.startswith("BPO")], runs["online DPO (F=T)"],
          title="BPO over F (online DPO for comparison)"); plt.show()

# %% [markdown]
# The loss at the first step of each phase is $\ln 2$: the reference has just been replaced by the policy. For $F = 10$ those are steps 1, 5, 9, ...; inside a phase the policy moves away from its frozen reference and the loss leaves $\ln 2$ (mostly below it; on a fresh batch one step can also land above). Online DPO's reference never moves, so after step 1 its loss is not $\ln 2$:

# %%
loss10 = dict(zip(*runs["BPO F=10"].series("loss")))
starts = list(range(1, base.steps + 1, base.steps // 10))
print("BPO F=10, loss at phase starts:", [round(loss10[s_], 4) for s_ in starts])
print("BPO F=10, loss one step later: ", [round(loss10[s_ + 1], 4) for s_ in starts])
assert all(abs(loss10[s_] - math.log(2)) < 1e-4 for s_ in starts)
assert all(abs(loss10[s_ + 1] - math.log(2)) > 1e-6 for s_ in starts)
assert np.mean([loss10[s_ + 3] for s_ in starts]) < math.log(2)        # by a phase's last step, below ln 2 on average
print("online DPO, loss at the same steps:", [round(dict(zip(*runs["online DPO (F=T)"].series("loss")))[s_], 4) for s_ in starts])

# %% [markdown]
# ### 4.3 The ensemble of the paper, K = 3
#
# The BPO paper stabilises the behaviour model by averaging several LoRA copies, all started from one base model. With a tiny model we can average full weights **exactly**. The copies must share their starting point, as the paper's LoRA copies share their base: the SFT models of different seeds were pretrained from different random initialisations, and nothing makes hidden unit 7 of one play the role of unit 7 of another (exercise 5: average them and evaluate).
#
# So the ensemble follows the paper's construction: K = 3 full-weight copies of the **same** SFT model, trained side by side on the same labelled pairs in different minibatch orders (the pairs are the budget: the ensemble costs three times the compute, not three times the labels); their exact average is the behaviour policy, the reference and the evaluated policy.

# %%
runs["BPO F=10, K=3"] = run(phases=10, reference="behaviour", ensemble=3)
dashboard(runs["BPO F=10"], runs["BPO F=10, K=3"], title="BPO F=10: one copy vs the average of three"); plt.show()
print({k: runs[k].final() for k in ("BPO F=10", "BPO F=10, K=3")})

# %% [markdown]
# On this seed the average of three copies ends a little behind the single copy in win-rate, with a little less KL (the numbers above); a difference of about 0.05 on 128 prompts is at the tie line, and the ensemble was run on seed 0 only. The paper's stabiliser is not needed here to keep BPO's text valid: the single copy's valid rate is already above 0.95.

# %% [markdown]
# ### 4.4 VPO: the sign and the size of $\alpha$
#
# Online VPO adds $+\alpha\beta\,\operatorname{mean}\log\pi/\pi_\text{ref}$ of one fresh SFT sample per prompt. Exploration is measured on the evaluation samples: the entropy of the policy's next-word distribution (`entropy`) and the share of distinct word bigrams (`distinct_2`):

# %%
Markdown(metrics.table(["entropy", "distinct_2", "vpo/regulariser"]))

# %% [markdown]
# An $\alpha$ sweep, $\alpha = 0$ being online DPO itself:

# %%
alphas = (0.1, 1.0)
for al in alphas:
    runs[f"VPO α={al:g}"] = run(alpha=al)
sweep = {0.0: runs["online DPO (F=T)"], **{al: runs[f"VPO α={al:g}"] for al in alphas}}
dashboard(*sweep.values(), title="VPO α sweep (online)", extra=("entropy", "distinct_2")); plt.show()
for al, h in sweep.items():
    print(f"α={al:<4g}", {k: round(h.last(k), 3) for k in ("win_rate", "kl", "valid_rate", "entropy", "distinct_2")})

# %% [markdown]
# The regulariser starts at exactly 0 (step 1 is computed before any update) and goes negative as the reference's typical samples lose probability:

# %%
for al in alphas:
    reg_ = runs[f"VPO α={al:g}"].series("vpo/regulariser")[1]
    print(f"α={al:g}: vpo/regulariser at steps 1, 10, 20, 40:", [round(reg_[i], 3) for i in (0, 9, 19, 39)])
    assert abs(reg_[0]) < 1e-5 and reg_[-1] < 0

# %% [markdown]
# **When $\alpha$ is too large.** At $\alpha = 1$ the exploration term wins over the preference term. Pushing the SFT model's samples down does not say where the mass should go, and here it goes to text the grammar rejects: the valid rate and the gold reward collapse while the KL runs into the tens of nats; the entropy falls, so the policy is not "exploring" any more, it has settled on a few degenerate outputs:

# %%
big, ok = runs["VPO α=1"], runs["online DPO (F=T)"]
print(f"α=1: valid {big.last('valid_rate'):.3f}, KL {big.last('kl'):.1f}, entropy {big.last('entropy'):.3f}"
      f"   (α=0: valid {ok.last('valid_rate'):.3f}, KL {ok.last('kl'):.1f}, entropy {ok.last('entropy'):.3f})")
assert big.last("valid_rate") < 0.5 and big.last("kl") > 5 * ok.last("kl") and big.last("entropy") < ok.last("entropy")

# %% [markdown]
# ## 5. Over three seeds, at an equal annotation budget
#
# One seed is an anecdote. The table below comes from the command line, one run per method and SFT seed (0, 1, 2), each with the budget above (1920 labelled pairs, 40 steps of 48 pairs, $\beta = 0.3$), lecture 04's `dpo` given the same budget:
#
# ```bash
# for s in 0 1 2; do
#   python -m alignlab run dpo --set n_pairs=1920 --set steps=40 --set batch_size=48 --seed $s --json
#   python -m alignlab run online_dpo --seed $s --json
#   for F in 2 10 40; do python -m alignlab run bpo --set phases=$F --seed $s --json; done
#   python -m alignlab run vpo --seed $s --json               # alpha = 0.03, the default
#   python -m alignlab run vpo --set alpha=0.1 --seed $s --json
#   python -m alignlab run online_dpo --set labeller=reward_model --seed $s --json
# done > results/online/06_online_results.jsonl
# ```
#
# (On the 2-core CPU each run takes 10-25 s; the lines are stored in `results/online/06_online_results.jsonl`.) Each cell is the mean over the three seeds and, after ±, half the range (max - min) / 2:

# %%
from alignlab.studies.docs import ONLINE_FILE, ROOT, online_label  # the committed file and its row names

rows = [json.loads(line) for line in (ROOT / ONLINE_FILE).read_text().splitlines() if line.strip()]
table = {}
for r in rows:
    table.setdefault(online_label(r), []).append(r)
keys = ("win_rate", "gold_reward", "kl", "valid_rate")
stats = {name: {k: (np.mean([r[k] for r in rs]), (max(r[k] for r in rs) - min(r[k] for r in rs)) / 2) for k in keys}
         for name, rs in table.items()}
assert all(len(rs) == 3 for rs in table.values()) and {r["seed"] for r in rows} == {0, 1, 2}
Markdown("| method | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys) + "\n" + "\n".join(
    f"| {name} | " + " | ".join(f"{m:.3f} ± {h:.3f}" for m, h in st.values()) + " |" for name, st in stats.items()))

# %% [markdown]
# The same numbers as a picture: win-rate against KL to the SFT model, each seed a dot, the mean a cross:

# %%
fig, ax = plt.subplots(figsize=(7, 4))
for i, (name, rs) in enumerate(table.items()):
    ax.scatter([r["kl"] for r in rs], [r["win_rate"] for r in rs], c=f"C{i}", alpha=0.4)
    ax.scatter(stats[name]["kl"][0], stats[name]["win_rate"][0], c=f"C{i}", marker="X", s=90, label=name)
ax.set_xlabel("KL(π ‖ π_SFT), nats (k1)"); ax.set_ylabel("gold win-rate vs SFT"); ax.axhline(0.5, c="grey", lw=0.8)
ax.legend(fontsize=7, loc="lower right"); plt.tight_layout(); plt.show()

# %% [markdown]
# ## 6. Which claims hold here
#
# Each line below is computed from the table (means over the three seeds; a win-rate has a standard error of about 0.04 on 128 prompts, so differences under about 0.05 are ties):

# %%
def m(name, k="win_rate"):
    return stats[name][k][0]

best_F = max((n for n in stats if n.startswith("BPO")), key=m)
claims = {
    "online DPO beats offline DPO at the same budget": m("online DPO") > m("offline DPO") + 0.05,
    f"BPO (best F: {best_F}) beats online DPO": m(best_F) > m("online DPO") + 0.05,
    "BPO with F=2 already beats online DPO": m("BPO F=2") > m("online DPO") + 0.05,
    "BPO gets better as F grows (F=2 < F=10 < F=40)": m("BPO F=2") < m("BPO F=10") < m("BPO F=40"),
    "BPO moves further from the SFT model than online DPO (KL)": m(best_F, "kl") > m("online DPO", "kl"),
    "VPO (default α = 0.03) beats online DPO": m("VPO α=0.03") > m("online DPO") + 0.05,
    "online DPO with RM labels is within 0.05 of gold-judge labels": abs(m("online DPO, RM labels") - m("online DPO")) <= 0.05,
}
for claim, holds in claims.items():
    print(f"{'HOLDS   ' if holds else 'FAILS   '} {claim}")
print({n: round(m(n), 3) for n in stats}, "\nKL:", {n: round(m(n, "kl"), 2) for n in stats})
# the prose below says exactly this; if the results file changes, this cell says the prose is stale
assert list(claims.values()) == [True, True, False, True, True, False, True], claims

# %% [markdown]
# What the three seeds say, in the order of the lines above:
#
# * **Online beats offline, clearly.** At the same 1920 labelled pairs, online DPO's mean win-rate is 0.76 against offline DPO's 0.53. With one pass over pairs sampled once from the SFT model, offline DPO at these settings drifts off the grammar on two of the three seeds (valid rates 0.66 and 0.69, KL 3-4 nats); online DPO, whose pairs keep coming from the policy, keeps a valid rate of 0.98 at a KL of about 1 nat.
# * **BPO helps, at a price in KL, and only with many phases.** The best F of {2, 10, 40} is F = T = 40 (0.82, just above the tie line over online DPO's 0.76), and BPO's win-rate rises with F. But its KL to the SFT model is about 4 nats against online DPO's 1.1: a reference that follows the policy lets it travel further. The paper's observation that a few phases already bring most of the gain does **not** hold here: F = 2 (0.70) is below online DPO.
# * **VPO does not beat online DPO here.** With α = 0.03 it ties (0.74 against 0.76); α = 0.1 wins on two seeds and collapses on the third (KL 18 nats). In this small world the SFT model's samples are already close to what the annotator likes, so pushing them down is more risk than exploration.
# * **Labels from lecture 01's reward model** instead of the noisy annotator over the gold judge change little at this budget: online DPO's mean win-rate is 0.77 with RM labels against 0.76, at a KL of 1.5 against 1.1 nats and a valid rate of 0.95 against 0.98. The policy drifts a little further from the SFT model when a learned model, not the judge, says which text is better.
#
# ## 7. Summary
#
# * An online method samples its pairs from the policy it is training; `online.collect_pairs` (sample two, label, TRL rows) is that step for every method here. The annotation budget is the number of labelled pairs, and the comparisons hold it equal.
# * BPO is DPO with the behaviour snapshot as the reference: its loss is $\ln 2$ at every phase start (asserted above). $F = 1$ is offline DPO, $F = T$ is on-policy.
# * VPO adds $\pm\alpha\beta\,\mathbb E_{\pi_\text{ref}}[\log\pi/\pi_\text{ref}]$ to DPO: 0 at step 0, $+$ online (explore), $-$ offline (stay on the data); online it has XPO's gradient with $\alpha_\text{XPO} = \alpha\beta$ (checked above). Too large an $\alpha$ breaks the text.
#
# **Pitfalls, and how to see them in the logs**
# * *The reference is the current policy* (not a frozen snapshot): `loss` is $\ln 2$ at **every** step, not only at phase starts; the phases are gone.
# * *The reference is not frozen* (a shallow copy, or gradients flowing into it): it moves with the policy inside a phase, and the trust region with it (exercise set 06 checks the swap for this).
# * *Comparing at different budgets*: check `labelled_pairs` at the last step; it must be the same for every method.
# * *Reading BPO's `rewards/*` as lecture 04's*: they are measured against the behaviour snapshot and restart at 0 each phase; the KL to the SFT model is the dashboard's `kl`.
# * *VPO's $\alpha$ too large*: `vpo/regulariser` plunges, `valid_rate` and `entropy` fall, `kl` runs away (section 4.4).
#
# ## 8. Exercises
#
# 1. Run BPO with $F = 10$ and the SFT model as the reference (`reference="sft"`): that is online DPO collected in 10 phases. Which of the two changes (the phases, the reference) makes BPO's numbers?
# 2. Run offline VPO (`vpo_mode="offline"`, `phases=1`). Does the pessimistic sign keep the valid rate of offline DPO higher? At which $\alpha$?
# 3. Lower the annotator's noise to 0 (`annotator_temperature=0`). Does online DPO's lead over offline DPO grow or shrink?
# 4. The exercise notebook `exercises/06_online.ipynb`: write VPO's loss with both signs and BPO's reference swap.
# 5. Average the SFT models of seeds 0, 1 and 2 (`online.average_models([pipeline.load_sft(profile, seed=s)[0] for s in (0, 1, 2)])`) and evaluate the average with `evaluator`. What happens to its valid rate, and why is the average of three trained copies of one model (section 4.3) different?

# %% [markdown]
# The headline numbers of this lecture, for `python -m alignlab course`:

# %%
alignlab.report(runs["online DPO (F=T)"], notebook="06_online_preferences",
                offline_win=runs["offline DPO (F=1)"].last("win_rate"), bpo_F10_win=runs["BPO F=10"].last("win_rate"),
                bpo_FT_win=runs[f"BPO F={base.steps}"].last("win_rate"), vpo_big_alpha_valid=big.last("valid_rate"))
