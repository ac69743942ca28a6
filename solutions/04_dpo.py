# %% [markdown]
# # Exercises 04: the DPO loss and its implicit rewards
#
# **Objectives.** Write, and check, the DPO loss with its implicit rewards; then
# 1. predict and measure what β does to the distance from the reference, on a problem small enough to solve exactly;
# 2. train a copy of the tiny GPT-2 with **your** loss and watch it learn on the shared dashboard.
#
# **Prerequisites.** Lecture 04 (the DPO derivation). Lecture 01's Bradley-Terry model. PyTorch autograd.
#
# **Run time.** `quick` profile (2-core CPU): about 35 s once the SFT model is cached (the first notebook you run trains it, about a minute). `full` profile (one GPU): not measured yet (no GPU was available when this course was built).
#
# **How this notebook works.** Write the body of the exercise function where it says `# YOUR CODE HERE`. The cell after it runs hidden tests against the course's reference implementation and prints ✅, or ❌ with a hint about what is wrong. Later cells use your function; they skip themselves until it is implemented. The last cell prints your score. Keep the function's name: it is what gets graded.

# %%
import copy

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from alignlab.course.checks import check, ready, summary

# %% [markdown]
# ## 1. Exercise: the DPO loss
#
# For a prompt $x$ with a chosen completion $y_c$ and a rejected one $y_r$, DPO (Rafailov et al. 2023, eq. 7) compares how much more likely the policy makes each completion than the reference does:
#
# $$ h = \big[\log\pi(y_c|x) - \log\pi_\text{ref}(y_c|x)\big] - \big[\log\pi(y_r|x) - \log\pi_\text{ref}(y_r|x)\big], \qquad \mathcal L = \operatorname{mean}_i \; -\log\sigma(\beta\, h_i). $$
#
# The bracketed terms times β are the **implicit rewards** $\hat r(x, y) = \beta \log\frac{\pi(y|x)}{\pi_\text{ref}(y|x)}$: DPO is a Bradley-Terry reward model whose reward is written with the policy.
#
# Write `dpo_loss(pc, pr, rc, rr, beta)`. The inputs are `(B,)` tensors of **summed** log-probs of whole completions: `pc`, `pr` under the policy (with gradient), `rc`, `rr` under the reference. Return a triple:
# * `loss`: a scalar tensor, the mean over the batch, that stays finite even when $|\beta h|$ is in the hundreds;
# * `chosen_rewards`, `rejected_rewards`: `(B,)` implicit rewards, **detached** (they are for logging; no gradient may flow through them).

# %%
def dpo_loss(pc, pr, rc, rr, beta):
    """DPO loss (Rafailov et al. 2023, eq. 7).

    pc, pr: (B,) summed log-probs of the chosen / rejected completions under the policy
    rc, rr: (B,) the same under the frozen reference
    beta:   strength of the implicit KL penalty
    Returns (loss, chosen_rewards, rejected_rewards): a scalar, and two detached (B,) tensors.
    """
    ### BEGIN SOLUTION
    ### HINT: compute the two log-ratios pc - rc and pr - rr; -log sigmoid(x) must be written -F.logsigmoid(x) to stay finite; .detach() the rewards.
    chosen_logratios = pc - rc
    rejected_logratios = pr - rr
    loss = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios)).mean()
    return loss, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()
    ### END SOLUTION

# %%
check("dpo_loss", dpo_loss)

# %% [markdown]
# Sanity number: at step 0 the policy *is* the reference, so $h = 0$, the loss is $\ln 2 \approx 0.693$ and both rewards are 0.

# %%
if ready("dpo_loss", dpo_loss):
    logps = torch.randn(4) - 20
    print(dpo_loss(logps, logps - 3, logps, logps - 3, beta=0.1))

# %% [markdown]
# ## 2. Question: what does β do?
#
# Take a problem small enough to solve exactly: one prompt, six possible responses, a reference distribution $\pi_\text{ref}$ and a gold reward $r$. Annotators compare two responses drawn from $\pi_\text{ref}$ with the Bradley-Terry probability $\sigma(r_a - r_b)$. The policy is a free softmax over the six responses, trained with your `dpo_loss` on 2000 such pairs.
#
# **Predict** before running: as β shrinks from 1 to 0.05, does $\mathrm{KL}(\pi\,\|\,\pi_\text{ref})$ of the trained policy grow or shrink? And its expected gold reward?

# %%
K, N = 6, 2000
g = torch.Generator().manual_seed(0)
log_ref = torch.log_softmax(torch.randn(K, generator=g), -1)
reward = torch.randn(K, generator=g)
a, b = (torch.multinomial(log_ref.exp(), N, replacement=True, generator=g) for _ in range(2))
a_wins = torch.rand(N, generator=g) < torch.sigmoid(reward[a] - reward[b])
chosen, rejected = torch.where(a_wins, a, b), torch.where(a_wins, b, a)

def dpo_toy(beta, steps=300):
    """Train softmax logits on the pairs with your dpo_loss; return log pi."""
    logits = log_ref.clone().requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(steps):
        logp = torch.log_softmax(logits, -1)
        loss, _, _ = dpo_loss(logp[chosen], logp[rejected], log_ref[chosen], log_ref[rejected], beta)
        opt.zero_grad(); loss.backward(); opt.step()
    return torch.log_softmax(logits.detach(), -1)

# %% [markdown]
# The DPO derivation says where training should land: the optimum of the KL-regularised objective, $\pi^*(y) \propto \pi_\text{ref}(y)\, e^{r(y)/\beta}$. We plot both.

# %%
def kl(logp):
    return (logp.exp() * (logp - log_ref)).sum().item()

betas = [1.0, 0.5, 0.2, 0.1, 0.05]
if ready("dpo_loss", dpo_loss):
    trained = [dpo_toy(beta) for beta in betas]
    optimum = [torch.log_softmax(log_ref + reward / beta, -1) for beta in betas]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for logps, style, label in [(trained, "o-", "DPO with your loss"), (optimum, "k--", "π* (closed form)")]:
        axes[0].plot(betas, [kl(lp) for lp in logps], style, label=label)
        axes[1].plot(betas, [(lp.exp() * reward).sum().item() for lp in logps], style, label=label)
    for ax, title in zip(axes, ["KL(π ‖ π_ref)", "expected gold reward"]):
        ax.set_xscale("log"); ax.set_xlabel("β"); ax.set_title(title); ax.legend()
    plt.tight_layout(); plt.show()

# %% [markdown]
# <!-- ### BEGIN SOLUTION -->
# *Answer.* Both grow as β shrinks. β is the price of moving away from the reference: the optimum $\pi^* \propto \pi_\text{ref} e^{r/\beta}$ is the reference itself as $\beta \to \infty$ and puts all its mass on the best response as $\beta \to 0$. DPO never sees the reward, only preferences, yet lands on $\pi^*$: the implicit reward $\beta \log \pi/\pi_\text{ref}$ has learned $r$ up to a constant. On a real model, a small β lets the policy drift far (large KL), which is where over-optimisation and degenerate text live.
# <!-- ### END SOLUTION -->

# %% [markdown]
# ## 3. Train the tiny GPT-2 with your loss
#
# Now the real thing. The reference is the SFT model; the policy starts as a copy of it. Preference pairs are two SFT samples per training prompt, labelled by the course's noisy Bradley-Terry annotator, exactly as in lecture 04 (`dpo.make_pairs`).

# %%
from alignlab import pipeline
from alignlab.evaluation import Evaluator
from alignlab.methods import dpo
from alignlab.models import get_profile
from alignlab.plots import dashboard

profile = get_profile()
sft, tok = pipeline.load_sft(profile)
config = dpo.DPOConfig.for_profile(profile)  # lecture 04's defaults
pairs = dpo.make_pairs(sft, tok, config)
print(len(pairs), "pairs; e.g.", pairs[0]["prompt"], "|", pairs[0]["chosen"], "≻", pairs[0]["rejected"])

# %% [markdown]
# Lecture 04's training loop (`dpo.train_dpo`: reference log-probs computed once, batches of 64 pairs, warm-up and decay, gradient clipping) takes the loss function as an argument. Here it gets **yours**. The shared `train` loop evaluates the policy on held-out prompts along the way.

# %%
if ready("dpo_loss", dpo_loss):
    policy = copy.deepcopy(sft)
    evaluator = Evaluator(sft, tok, profile=profile)
    history = dpo.train_dpo(policy, sft, tok, pairs, config, evaluator, eval_every=10, loss_fn=dpo_loss,
                            name=f"DPO with your loss, β = {config.beta:g}")
    dashboard(history, extra=("loss", "rewards/margins")); plt.show()
    print({k: round(history.rows[0][k], 3) for k in history.final()}, "->", history.final())

# %% [markdown]
# A correct loss learns within a few dozen steps: gold reward and win-rate rise while the KL grows from 0. The valid-review rate usually dips a little: DPO pushes rejected completions down without saying where the probability mass should go, and some of it lands on text the grammar rejects (lecture 04 discusses this failure mode). A wrong sign makes the curves go the other way. A loss without β changes where the sigmoid saturates (lecture 04, section 6), and so what the policy learns. A batch sum instead of a mean only multiplies the gradient by the batch size, which AdamW's per-parameter normalisation all but cancels (lecture 04, section 7): the step barely changes, which is why the hidden tests check the loss's value, not just the training curves.

# %%
### BEGIN HIDDEN TESTS
assert history.last("win_rate") >= 0.6, history.final()
assert history.last("gold_reward") >= history.rows[0]["gold_reward"] + 0.1, history.final()
assert abs(history.rows[1]["loss"] - 0.6931) < 1e-3  # step 1: the policy is still the reference
### END HIDDEN TESTS

# %% [markdown]
# ## 4. Your score

# %%
summary("04_dpo")
### BEGIN HIDDEN TESTS
from alignlab.course.checks import all_passed

assert all_passed("04_dpo"), "a reference solution fails its own check"
### END HIDDEN TESTS
