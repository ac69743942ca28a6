# %% [markdown]
# # Exercises 06: VPO's regulariser and BPO's reference swap
#
# **Objectives.** Write, and check, the two pieces that turn online DPO into the methods of lecture 06:
# 1. `vpo_loss`: the DPO loss plus VPO's value-incentivised regulariser, with its **two signs** (optimism online, pessimism offline);
# 2. `bpo_reference`: BPO's reference swap: a frozen snapshot of the policy at the start of each collection phase, kept for the whole phase;
#
# then train the tiny GPT-2 with both and watch the step-0 numbers the lecture promised.
#
# **Prerequisites.** Lecture 06 (online DPO, BPO, VPO). Exercises 04 (the DPO loss). PyTorch autograd.
#
# **Run time.** `quick` profile (2-core CPU): 10 s once the SFT model is cached (measured under nbval on a 2-core machine shared with another training job). `full` profile (one GPU): not measured.
#
# **How this notebook works.** Write each exercise function's body where it says `# YOUR CODE HERE`. The cell after it runs hidden tests against the course's reference implementation and prints ✅, or ❌ with a hint about what is wrong. Later cells use your functions; they skip themselves until they are implemented. The last cell prints your score. Keep the functions' names: they are what gets graded.

# %%
import copy
import math

import torch
import torch.nn.functional as F

from alignlab.course.checks import check, ready, summary

# %% [markdown]
# ## 1. Exercise 1: the VPO loss
#
# VPO (Cen et al. 2024) regularises DPO's reward fit by the value the fitted reward promises. With DPO's reparameterisation that becomes a term on samples $y_j$ of a calibration policy $\pi_\text{cal}$ (here $\pi_\text{ref}$ itself):
#
# $$ \mathcal L_\text{VPO} = \underbrace{\operatorname{mean}_i -\log\sigma(\beta h_i)}_{\text{DPO}} \;+\; s\,\alpha\,\beta\,\operatorname{mean}_j\big[\log\pi(y_j|x_j) - \log\pi_\text{ref}(y_j|x_j)\big], \qquad s = \begin{cases} +1 & \text{online (optimism)}\\ -1 & \text{offline (pessimism)}\end{cases} $$
#
# with $h_i = [\log\pi(y_{c}) - \log\pi_\text{ref}(y_{c})] - [\log\pi(y_{r}) - \log\pi_\text{ref}(y_{r})]$ as in exercise 04. Online, minimising $+\alpha\beta\log\pi(y_\text{ref})$ pushes the reference's typical samples **down**: the policy explores. Offline, the minus sign pulls the data's completions **up**, like an SFT term.
#
# Write `vpo_loss(pc, pr, rc, rr, cal_pc, cal_rc, beta, alpha, mode)`. `pc, pr, rc, rr`: `(B,)` summed log-probs of the pairs (policy, then reference); `cal_pc, cal_rc`: `(M,)` summed log-probs of the calibration samples under the policy and the reference; `mode` is `"online"` or `"offline"`. Return the scalar loss (finite even when $|\beta h|$ is in the hundreds).

# %%
def vpo_loss(pc, pr, rc, rr, cal_pc, cal_rc, beta, alpha, mode):
    """VPO: DPO + sign * alpha * beta * mean(log pi - log pi_ref) over calibration samples.

    pc, pr, rc, rr: (B,) summed log-probs (policy chosen/rejected, reference chosen/rejected)
    cal_pc, cal_rc: (M,) summed log-probs of samples of pi_cal under the policy / the reference
    mode: "online" (sign +1) or "offline" (sign -1)
    Returns the loss, a scalar tensor.
    """
    ### BEGIN SOLUTION
    ### HINT: the DPO part is exercise 04's loss (use F.logsigmoid); sign = +1 if mode == "online" else -1; the term is sign * alpha * beta * (cal_pc - cal_rc).mean().
    dpo = -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()
    sign = 1.0 if mode == "online" else -1.0
    return dpo + sign * alpha * beta * (cal_pc - cal_rc).mean()
    ### END SOLUTION

# %%
check("vpo_loss", vpo_loss)

# %% [markdown]
# Sanity numbers: at step 0 the policy *is* the reference, so every log-ratio is 0: the DPO part is $\ln 2 \approx 0.693$ and the regulariser is exactly 0, whatever $\alpha$. Only its **gradient** is non-zero: $s\,\alpha\beta/M$ on each calibration sample's log-prob.

# %%
if ready("vpo_loss", vpo_loss):
    lp, cal = torch.randn(4) - 20, (torch.randn(3) - 15).requires_grad_(True)
    loss = vpo_loss(lp, lp - 3, lp, lp - 3, cal, cal.detach(), beta=0.1, alpha=2.0, mode="online")
    loss.backward()
    print(f"loss {loss.item():.4f} (ln 2 = {math.log(2):.4f});  d loss / d log pi(y_cal) = {cal.grad.tolist()}")

# %% [markdown]
# ## 2. Exercise 2: BPO's reference swap
#
# BPO (Xu et al. 2024) collects pairs in $F$ phases. At the first step of each phase the policy is snapshotted; the snapshot samples the phase's pairs **and** is DPO's reference for the whole phase. Write the swap on the model's weights as one flat vector (`torch.nn.utils.parameters_to_vector`):
#
# `bpo_reference(step, steps_per_phase, policy_weights, reference_weights)` with `step` counted from 1: at the first step of a phase ($(\text{step} - 1)$ a multiple of `steps_per_phase`) return a **frozen** copy of `policy_weights` (no gradient, not the same tensor); at every other step return `reference_weights` unchanged.

# %%
def bpo_reference(step, steps_per_phase, policy_weights, reference_weights):
    """The reference weights to use at optimiser step ``step`` (1-based) of a BPO run.

    policy_weights: (P,) the policy's weights now (they require grad)
    reference_weights: (P,) the reference used at the previous step
    Returns (P,) weights: a frozen copy of the policy at a phase start, else reference_weights.
    """
    ### BEGIN SOLUTION
    ### HINT: phase starts are steps 1, S + 1, 2S + 1, ...: (step - 1) % steps_per_phase == 0; freeze with .detach().clone().
    if (step - 1) % steps_per_phase == 0:
        return policy_weights.detach().clone()
    return reference_weights
    ### END SOLUTION

# %%
check("bpo_reference", bpo_reference)

# %% [markdown]
# ## 3. Both, on the tiny GPT-2
#
# The SFT model of lecture 00 is the start and the first reference. Each phase samples fresh pairs from the current policy with the lecture's collection function (`online.collect_pairs`: two samples per prompt, the noisy Bradley-Terry annotator), and your `bpo_reference` decides when the reference changes. Three phases of three steps, 32 pairs a step:

# %%
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from alignlab import pipeline, world
from alignlab.methods import dpo, online
from alignlab.models import get_profile
from alignlab.sampling import sequence_logprobs

profile = get_profile()
sft, tok = pipeline.load_sft(profile)
policy, reference = copy.deepcopy(sft).train(), online.snapshot(sft)
opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
prompts = world.make_prompts(9 * 32, "train", seed=0)

# %% [markdown]
# One loop: swap (or keep) the reference, collect the phase's pairs from it at a phase start, then one DPO step against it. Predict the loss printed at steps 1, 4 and 7.

# %%
losses, S = [], 3
if ready("bpo_reference", bpo_reference):
    ref_w = parameters_to_vector(sft.parameters()).detach()
    for step in range(1, 10):
        ref_w = bpo_reference(step, S, parameters_to_vector(policy.parameters()), ref_w)
        vector_to_parameters(ref_w, reference.parameters())
        if (step - 1) % S == 0:
            pairs = online.collect_pairs(reference, tok, prompts[(step - 1) * 32:(step + 2) * 32], seed=step)
        batch = dpo.encode_pairs(tok, *(pairs[k][(step - 1) % S * 32:][:32] for k in ("prompt", "chosen", "rejected")))
        with torch.no_grad():
            lr_ = sequence_logprobs(reference, batch)
        lp = sequence_logprobs(policy, batch)
        loss = -F.logsigmoid(0.3 * ((lp[:32] - lr_[:32]) - (lp[32:] - lr_[32:]))).mean()
        opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())
    print([round(v, 4) for v in losses])

# %% [markdown]
# <!-- ### BEGIN SOLUTION -->
# *Answer.* Steps 1, 4 and 7 start a phase: the reference has just become the policy, every log-ratio is 0, and the loss is exactly $\ln 2 = 0.6931$. Inside a phase the policy has moved away from its frozen reference, so the loss is no longer $\ln 2$ (each step sees new pairs, so it can land a little above or below). A reference taken from the current policy at **every** step would print 0.6931 nine times (and still train, since the gradient at $h = 0$ is not 0, but with a trust region that moves every step).
# <!-- ### END SOLUTION -->

# %%
### BEGIN HIDDEN TESTS
assert all(abs(losses[i] - math.log(2)) < 1e-5 for i in (0, 3, 6)), losses
assert all(abs(losses[i] - math.log(2)) > 1e-6 for i in (1, 2, 4, 5, 7, 8)), losses
### END HIDDEN TESTS

# %% [markdown]
# Now VPO on the library's loop (`online.train_online`, lecture 06's settings, with **your** loss): a short online run with $\alpha = 0.1$. The logged `vpo/regulariser` starts at exactly 0 and goes negative as the policy moves mass off the reference's typical samples.

# %%
if ready("vpo_loss", vpo_loss):
    cfg = online.VPOConfig.for_profile(profile, steps=8, n_pairs=256, batch_size=32, phases=8)
    history = online.train_online(copy.deepcopy(sft), sft, tok, cfg, None, loss_fn=vpo_loss, progress=False)
    steps, reg = history.series("vpo/regulariser")
    print("vpo/regulariser by step:", [round(v, 4) for v in reg])
    print("loss at step 1:", round(history.rows[1]["loss"], 4))

# %%
### BEGIN HIDDEN TESTS
assert abs(reg[0]) < 1e-5 and abs(history.rows[1]["loss"] - math.log(2)) < 1e-4
assert reg[-1] < 0, reg
### END HIDDEN TESTS

# %% [markdown]
# ## 4. Your score

# %%
summary("06_online")
### BEGIN HIDDEN TESTS
from alignlab.course.checks import all_passed

assert all_passed("06_online"), "a reference solution fails its own check"
### END HIDDEN TESTS
