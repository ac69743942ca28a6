# %% [markdown]
# # Exercises 00: log-probabilities from logits
#
# **Objectives.** Write, and check, the two functions that every method of the course stands on:
# 1. `token_logprobs`: the log-probability of each token of a batch, from the model's logits (shift by one, log-softmax, gather, mask);
# 2. `sequence_logprobs`: $\log\pi(y \mid x)$ of each completion, the **sum** of its token log-probs;
#
# then run them on the SFT GPT-2 against the library, and measure why it must be the sum and not the mean.
#
# **Prerequisites.** Lecture 00 (sampling, left padding). PyTorch: `log_softmax`, `gather`.
#
# **Run time.** `quick` profile (2-core CPU): under 30 s once the SFT model is cached (measured on a heavily loaded machine; about a third is importing torch), no training. The first notebook you run trains the SFT model, about a minute.
#
# **How this notebook works.** Write each exercise function's body where it says `# YOUR CODE HERE`. The cell after it runs hidden tests against the course's reference implementation and prints ✅, or ❌ with a hint about what is wrong. Later cells use your functions; they skip themselves until they are implemented. The last cell prints your score. Keep the functions' names: they are what gets graded.

# %%
import torch
import torch.nn.functional as F

from alignlab.course.checks import check, ready, summary

# %% [markdown]
# ## 1. Exercise 1: token log-probs from logits
#
# A causal language model reads `input_ids` $(B, T)$ and returns logits $(B, T, V)$, one row of $V$ scores per column. The scores at column $t$ are its prediction for the token at column $t + 1$. So the log-probability of token $x_t$ given the tokens before it is
#
# $$ \log\pi(x_t \mid x_{<t}) = z_{t-1}[x_t] - \log\sum_{v=1}^{V} e^{z_{t-1}[v]}, \qquad z = \text{logits}. $$
#
# The course's conventions (those of `alignlab.sampling`):
# * the output is $(B, T)$, aligned with `input_ids`: column $t$ holds $\log\pi(x_t \mid x_{<t})$;
# * column 0 is 0, since nothing predicts the first token (`<bos>`);
# * `mask` is $(B, T)$, 1 on the completion tokens (their `<eos>` included), 0 on prompt and padding; the output is 0 wherever `mask` is 0.
#
# Prompts are left-padded and sampled completions are right-padded after their `<eos>`, so the mask can start and stop anywhere in a row. The gradient must reach the logits: every loss of the course differentiates these numbers.
#
# Write `token_logprobs(logits, input_ids, mask)`.

# %%
def token_logprobs(logits, input_ids, mask):
    """Per-token log-probs of the tokens of ``input_ids`` under the model that produced ``logits``.

    logits:    (B, T, V) the model's output; column t scores the token at column t + 1
    input_ids: (B, T) the tokens (int64)
    mask:      (B, T) 1 on the tokens whose log-prob is wanted (the completion), 0 elsewhere
    Returns (B, T): column t holds log pi(input_ids[:, t] | input_ids[:, :t]) where mask is 1, else 0;
    column 0 is 0. Differentiable with respect to ``logits``.
    """
    ### BEGIN SOLUTION
    ### HINT: normalise the scores with a numerically safe log-softmax over the vocabulary; the scores of column t - 1 belong to token t (shift one side by one, and put the missing column back where column 0 is); pick each token's entry with gather; zero what the mask excludes.
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    lp = F.pad(logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1), (1, 0))
    return torch.where(mask.bool(), lp, torch.zeros_like(lp))
    ### END SOLUTION

# %%
check("token_logprobs", token_logprobs)

# %% [markdown]
# ## 2. Exercise 2: the log-probability of a completion
#
# By the chain rule, $\pi(y \mid x) = \prod_t \pi(y_t \mid x, y_{<t})$, so
#
# $$ \log\pi(y \mid x) = \sum_{t \in y} \log\pi(y_t \mid x, y_{<t}). $$
#
# This is the number DPO, KTO and every policy-gradient method of the course feed on. Write `sequence_logprobs(token_logps, mask)`. `token_logps` is $(B, T)$ as the library's `sampling.token_logprobs` returns them: **unmasked**, so the prompt's columns hold the prompt tokens' own (real, nonzero) log-probs, which are not part of $\log\pi(y \mid x)$.

# %%
def sequence_logprobs(token_logps, mask):
    """log pi(y|x) of each completion.

    token_logps: (B, T) per-token log-probs (column t: log pi(token t | tokens < t)); unmasked
    mask:        (B, T) 1 on the completion's tokens, 0 on prompt and padding
    Returns (B,).
    """
    ### BEGIN SOLUTION
    ### HINT: one number per row; only the completion's tokens count; the log of a product of conditional probabilities (the chain rule) is not an average of their logs.
    return (token_logps * mask.to(token_logps.dtype)).sum(-1)
    ### END SOLUTION

# %%
check("sequence_logprobs", sequence_logprobs)

# %% [markdown]
# ## 3. Your functions on the SFT GPT-2
#
# Sample 64 completions from the SFT model (left-padded prompts, right padding after each `<eos>`), run the model once with the position ids that ignore the left padding, and compare your two functions with the library's `sampling.sequence_logprobs`:

# %%
from alignlab import sampling, world
from alignlab.models import get_profile
from alignlab.pipeline import load_sft

profile = get_profile()
sft, tok = load_sft(profile)
batch = sampling.sample(sft, tok, world.make_prompts(64, seed=0), max_new_tokens=profile.max_new_tokens, seed=0)


def model_logits(model, input_ids, attention_mask):
    return model(input_ids=input_ids, attention_mask=attention_mask,
                 position_ids=sampling.position_ids(attention_mask)).logits


if ready("token_logprobs", token_logprobs) and ready("sequence_logprobs", sequence_logprobs):
    with torch.no_grad():
        logits = model_logits(sft, batch.input_ids, batch.attention_mask)
        mine = sequence_logprobs(token_logprobs(logits, batch.input_ids, batch.completion_mask), batch.completion_mask)
        lib = sampling.sequence_logprobs(sft, batch)
    print("log pi(y|x), yours:  ", [round(v, 2) for v in mine[:6].tolist()])
    print("log pi(y|x), library:", [round(v, 2) for v in lib[:6].tolist()])
    print(f"largest difference over the 64 completions: {(mine - lib).abs().max().item():.2e}")

# %%
### BEGIN HIDDEN TESTS
assert (mine - lib).abs().max() < 1e-4
### END HIDDEN TESTS

# %% [markdown]
# ## 4. Question: the sum or the mean?
#
# The mean of the token log-probs looks harmless: it is on the same scale whatever the length. Lecture 04's DPO check could not tell either one from the other, because `dpo_loss` receives the log-probs already reduced to one number per completion.
#
# **Predict** before running:
# 1. Sum $\pi(y \mid x)$ over **every** two-token continuation $y$ of one prompt ($V^2$ of them). What must the total be, and what do you get if each $\log\pi(y \mid x)$ is replaced by its mean per token?
# 2. For two completions of the same prompt and of different lengths, how often do the sum and the mean disagree on which one the model finds more likely?

# %%
def all_two_token_continuations(prompt):
    """Every (prompt, a, b) for a, b in the vocabulary: input_ids (V*V, L + 2) and the mask of a and b."""
    prefix = sampling.encode(tok, [prompt], [""], add_eos=False).input_ids[0]
    V = len(tok)
    pairs = torch.cartesian_prod(torch.arange(V), torch.arange(V))
    ids = torch.cat([prefix.expand(V * V, -1), pairs], 1)
    mask = torch.zeros_like(ids)
    mask[:, -2:] = 1
    return ids, mask


if ready("token_logprobs", token_logprobs) and ready("sequence_logprobs", sequence_logprobs):
    ids, mask = all_two_token_continuations(batch.prompts[0])
    with torch.no_grad():
        tok_lp = torch.cat([token_logprobs(model_logits(sft, i, torch.ones_like(i)), i, m)
                            for i, m in zip(ids.split(2048), mask.split(2048))])
    total = sequence_logprobs(tok_lp, mask)
    mean = total / mask.sum(-1)
    print(f"{len(ids)} continuations of {batch.prompts[0]!r}")
    print(f"sum over y of exp(sum of token log-probs):  {total.logsumexp(0).exp().item():.6f}")
    print(f"sum over y of exp(mean of token log-probs): {mean.logsumexp(0).exp().item():.3f}")

# %% [markdown]
# For 2: the 64 samples of section 3 come from 64 prompts; sample 16 completions for each of 8 prompts and compare, pair by pair within a prompt, the order the sum gives with the order the mean gives:

# %%
if ready("token_logprobs", token_logprobs) and ready("sequence_logprobs", sequence_logprobs):
    group = sampling.sample(sft, tok, [p for p in world.make_prompts(8, seed=1) for _ in range(16)],
                            max_new_tokens=profile.max_new_tokens, seed=1)
    with torch.no_grad():
        lp = token_logprobs(model_logits(sft, group.input_ids, group.attention_mask), group.input_ids,
                            group.completion_mask)
    s = sequence_logprobs(lp, group.completion_mask).view(8, 16)
    n = group.completion_mask.sum(-1).view(8, 16).float()
    m = s / n
    differ = (s[:, :, None] > s[:, None, :]) != (m[:, :, None] > m[:, None, :])
    longer = (n[:, :, None] != n[:, None, :])
    flips = (differ & longer).sum().item() / longer.sum().item()
    corr_sum = torch.corrcoef(torch.stack([s.flatten(), n.flatten()]))[0, 1].item()
    corr_mean = torch.corrcoef(torch.stack([m.flatten(), n.flatten()]))[0, 1].item()
    print(f"pairs of different lengths whose order the mean reverses: {flips:.1%}")
    print(f"correlation with the length (tokens): sum {corr_sum:+.2f}, mean {corr_mean:+.2f}")

# %%
### BEGIN HIDDEN TESTS
assert abs(total.logsumexp(0).item()) < 1e-3                # the sum is a log-probability
assert mean.logsumexp(0).exp().item() > 2                    # the mean is not
assert corr_sum < -0.8 and abs(corr_mean) < 0.4 and 0.2 < flips < 0.7
### END HIDDEN TESTS

# %% [markdown]
# <!-- ### BEGIN SOLUTION -->
# *Answer.* 1. The probabilities of all $V^2$ continuations add up to exactly 1 with the sum (it is a log-probability: the chain rule), while the means "add up" to far more than 1: $e^{\text{mean}}$ is a geometric mean of per-token probabilities, not the probability of anything. 2. Often: the printed share of the pairs of different lengths. The sum falls with every token added (each adds a negative number): its correlation with the length is close to -1, so between two lengths it mostly prefers the shorter completion, while the mean is nearly uncorrelated with the length and reverses a large part of those verdicts. A DPO or KTO loss fed with means optimises a length-normalised score (as SimPO does on purpose), not the KL-regularised objective whose optimum DPO's derivation assumes; the losses' checks cannot see it, because the reduction happened before their inputs were made. It has to be caught here.
# <!-- ### END SOLUTION -->

# %% [markdown]
# ## 5. Your score

# %%
summary("00_logprobs")
### BEGIN HIDDEN TESTS
from alignlab.course.checks import all_passed

assert all_passed("00_logprobs"), "a reference solution fails its own check"
### END HIDDEN TESTS
