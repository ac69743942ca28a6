# %% [markdown]
# # Exercises 05: the KTO loss and its reference point z0
#
# **Objectives.** Write, and check, the two pieces of Kahneman-Tversky Optimization (Ethayarajh et al. 2024):
# 1. `kto_z0`: the reference point, a batch estimate of $\mathrm{KL}(\pi\,\|\,\pi_\text{ref})$;
# 2. `kto_loss`: the loss on unpaired thumbs-up / thumbs-down examples;
#
# then predict and measure how the reference point moves the loss, and which examples KTO learns most from.
#
# **Prerequisites.** Lecture 05 (prospect theory, HALOs, KTO). Exercises 04 (DPO). PyTorch autograd.
#
# **Run time.** A few seconds on any machine: no model is trained.
#
# **How this notebook works.** Write each exercise function's body where it says `# YOUR CODE HERE`. The cell after it runs hidden tests against the course's reference implementation and prints ✅, or ❌ with a hint about what is wrong. Later cells use your functions; they skip themselves until they are implemented. The last cell prints your score. Keep the functions' names: they are what gets graded.

# %%
import matplotlib.pyplot as plt
import torch

from alignlab.course.checks import check, ready, summary

# %% [markdown]
# ## 1. Exercise 1: the reference point z0
#
# KTO judges each completion against a reference point: how far the policy has drifted from the reference model overall. It estimates $\mathrm{KL}(\pi\,\|\,\pi_\text{ref})$ on **mismatched** pairs, each prompt $x_i$ of the batch with another example's completion $y_j$ (so the estimate is not the examples' own rewards):
#
# $$ z_0 = \max\Big(0,\; \operatorname{mean}_i \big[\log\pi(y_j|x_i) - \log\pi_\text{ref}(y_j|x_i)\big]\Big). $$
#
# It is clamped at 0 because a KL cannot be negative (its estimate can), and it is a **constant** baseline: no gradient flows through it (TRL computes it under `torch.no_grad()`).
#
# Write `kto_z0(policy_kl_logps, ref_kl_logps)`: two `(B,)` tensors of summed log-probs of the mismatched pairs in, a detached scalar out.

# %%
def kto_z0(policy_kl_logps, ref_kl_logps):
    """KTO reference point: max(0, mean(policy_kl_logps - ref_kl_logps)), detached.

    policy_kl_logps, ref_kl_logps: (B,) summed log-probs of mismatched (prompt, completion) pairs
    Returns a scalar tensor without gradient.
    """
    ### BEGIN SOLUTION
    ### HINT: a mean, then .clamp(min=0), then .detach().
    return (policy_kl_logps - ref_kl_logps).mean().clamp(min=0).detach()
    ### END SOLUTION

# %%
check("kto_z0", kto_z0)

# %% [markdown]
# ## 2. Exercise 2: the KTO loss
#
# Each example is one completion $y_i$ with a binary label: desirable (thumbs up) or undesirable. With the implicit reward's log-ratio $r_i = \log\pi(y_i|x_i) - \log\pi_\text{ref}(y_i|x_i)$, as in TRL's `KTOTrainer`,
#
# $$ \ell_i = \begin{cases} \lambda_D \big(1 - \sigma(\beta (r_i - z_0))\big) & y_i \text{ desirable} \\ \lambda_U \big(1 - \sigma(\beta (z_0 - r_i))\big) & y_i \text{ undesirable} \end{cases} \qquad \mathcal L = \operatorname{mean}_i \ell_i \text{ over the whole batch.} $$
#
# A desirable completion lowers its loss by rising above the reference point, an undesirable one by sinking below it.
#
# Write `kto_loss(policy_logps, ref_logps, labels, policy_kl_logps, ref_kl_logps, beta, lambda_d, lambda_u)`. Inputs: `(B,)` tensors (`labels` is bool or 0/1, True = desirable); use your `kto_z0`. Return the scalar loss (the library's version also returns z0 and the rewards; here the loss alone is enough).

# %%
def kto_loss(policy_logps, ref_logps, labels, policy_kl_logps, ref_kl_logps, beta, lambda_d, lambda_u):
    """KTO loss (Ethayarajh et al. 2024, as in TRL's KTOTrainer).

    policy_logps, ref_logps:       (B,) summed log-probs of each example's completion
    labels:                        (B,) bool or 0/1, True = desirable
    policy_kl_logps, ref_kl_logps: (B,) the mismatched pairs, for z0
    beta, lambda_d, lambda_u:      KL strength and the weights of desirable / undesirable examples
    Returns the scalar loss: the mean of the per-example losses over the whole batch.
    """
    ### BEGIN SOLUTION
    ### HINT: z0 = kto_z0(...); r = policy_logps - ref_logps; compute both per-example losses and pick with torch.where(labels.bool(), ...); then .mean().
    z0 = kto_z0(policy_kl_logps, ref_kl_logps)
    r = policy_logps - ref_logps
    desirable = lambda_d * (1 - torch.sigmoid(beta * (r - z0)))
    undesirable = lambda_u * (1 - torch.sigmoid(beta * (z0 - r)))
    return torch.where(labels.bool(), desirable, undesirable).mean()
    ### END SOLUTION

# %%
check("kto_loss", kto_loss)

# %% [markdown]
# Sanity number: at step 0 the policy *is* the reference, so $z_0 = 0$, $r_i = 0$ and every example's loss is $\lambda_y / 2$.

# %%
if ready("kto_loss", kto_loss):
    logps, kl_logps = torch.randn(6) - 10, torch.randn(6) - 12
    labels = torch.tensor([True, True, True, False, False, False])
    print(kto_loss(logps, logps, labels, kl_logps, kl_logps, beta=0.1, lambda_d=1.0, lambda_u=1.0))

# %% [markdown]
# ## 3. Question: what does the reference point do?
#
# Take two completions whose log-ratio stays fixed at $r = 1$, one desirable and one undesirable, while the policy as a whole drifts away from the reference, so $z_0$ grows from 0 to 3 ($\beta = 1$).
#
# **Predict** before running: does the desirable example's loss go up or down? The undesirable one's?
#
# <!-- ### BEGIN SOLUTION -->
# *Answer.* The desirable example's loss goes **up**, the undesirable one's **down**. The reference point is the bar a completion is judged against: once the whole policy has drifted by $z_0$, being $r = 1$ above the reference is no longer a gain but a loss relative to the policy's typical drift. This is what keeps KTO from raising every log-ratio at once: a desirable completion must beat the *average* drift, much as DPO's chosen completion must beat the rejected one. In lecture 05's runs the mechanism is inactive: on data sampled from the SFT model the mismatched estimate turns negative as soon as the policy moves, the clamp holds $z_0$ at 0, and what keeps those runs stable is the balance of $\lambda_D n_D$ against $\lambda_U n_U$. It acts when the estimate is positive, as it is on the policy's own samples (lecture 05, section 5.6).
# <!-- ### END SOLUTION -->

# %%
z0s = torch.linspace(0, 3, 13)

def loss_at(label, r, z0, beta=1.0):
    """Your kto_loss for one example with log-ratio r, when the KL pairs give the reference point z0."""
    return kto_loss(torch.tensor([r]), torch.tensor([0.0]), torch.tensor([label]),
                    torch.tensor([float(z0)]), torch.tensor([0.0]), beta, 1.0, 1.0).item()

if ready("kto_loss", kto_loss) and ready("kto_z0", kto_z0):
    for label, name in [(True, "desirable, r = 1"), (False, "undesirable, r = 1")]:
        plt.plot(z0s, [loss_at(label, 1.0, z) for z in z0s], "o-", label=name)
    plt.xlabel("reference point z0"); plt.ylabel("per-example loss"); plt.legend(); plt.show()

# %% [markdown]
# ## 4. Question: which examples does KTO learn from?
#
# **Predict** before running: a desirable completion already far above the reference point ($r - z_0 = 8$, $\beta = 1$) and one right at it ($r - z_0 = 0$). Which one gets the larger gradient on its log-prob?
#
# <!-- ### BEGIN SOLUTION -->
# *Answer.* The one at the reference point. The gradient of $1 - \sigma(\beta(r - z_0))$ is $-\beta\,\sigma'(\cdot)$, largest at 0 and vanishing as the sigmoid saturates: an example the policy already gets very right (or hopelessly wrong) barely moves it. This is KTO's value function from prospect theory (concave for gains, saturating), and it makes KTO robust to a few noisy or extreme labels, at the price of learning little from them.
# <!-- ### END SOLUTION -->

# %%
if ready("kto_loss", kto_loss) and ready("kto_z0", kto_z0):
    r = torch.linspace(-8, 8, 33, requires_grad=True)
    loss = kto_loss(r, torch.zeros(33), torch.ones(33, dtype=torch.bool), torch.zeros(33), torch.zeros(33), 1.0, 1.0, 1.0)
    loss.backward()
    per_example_grad = -r.grad * 33                                   # undo the mean over the batch
    plt.plot(r.detach(), per_example_grad, "o-"); plt.xlabel("r - z0 (desirable example)")
    plt.ylabel("-d loss / d log π(y|x)"); plt.show()
    print(f"gradient at r - z0 = 0: {per_example_grad[16]:.3f}   at r - z0 = 8: {per_example_grad[-1]:.5f}")

# %%
### BEGIN HIDDEN TESTS
assert abs(per_example_grad[16] - 0.25) < 1e-4 and per_example_grad[-1] < 1e-3
assert loss_at(True, 1.0, 3.0) > loss_at(True, 1.0, 0.0) and loss_at(False, 1.0, 3.0) < loss_at(False, 1.0, 0.0)
### END HIDDEN TESTS

# %% [markdown]
# ## 5. Your score

# %%
summary("05_kto")
### BEGIN HIDDEN TESTS
from alignlab.course.checks import all_passed

assert all_passed("05_kto"), "a reference solution fails its own check"
### END HIDDEN TESTS
