"""RL machinery shared by policy gradients (lecture 02) and PPO (lecture 03).

The language model as an RL agent:

* **state** s_t: the prompt plus the completion tokens generated so far;
* **action** a_t: the next token;
* **episode**: one completion, ending at ``<eos>`` (or cut off at the length limit);
* **reward**: a score of the whole completion (the gold judge, or a learned reward
  model), paid on the completion's last token, plus an optional per-token KL
  penalty ``-kl_coef * (log pi(a_t|s_t) - log pi_ref(a_t|s_t))`` that keeps the
  policy near the reference.

Four pieces live here:

``PolicyWithValue``
    a ``GPT2LMHeadModel`` plus a zero-initialised scalar value head; one forward
    pass gives the token log-probs and the values V(s_t).
``Rollout`` / ``rollout(...)``
    sample completions, score them, and record everything an update needs
    (log-probs at the sampling temperature, reference log-probs, values, per-token
    rewards, the completion mask), all without gradient.
``token_rewards(...)``
    the per-token reward: KL penalty on every completion token, plus the sequence
    score on the last real completion token (a pure function of ``alignlab.losses``,
    imported here).
``new_policy(...)`` / ``make_optimizer(...)``
    the trainable policy (a copy of the SFT model with a value head, optionally on its
    own transformer) and its optimiser, one learning rate for the actor, one for the critic.

Alignment of every (B, T) tensor (one left-padded row; ``lp`` = log-prob)::

    column t         0      1      2       3       4       5       6      7
    input_ids      <pad>  <bos>   the    acting   was    great     .    <eos>
    attention_mask   0      1      1       1       1       1       1      1
    completion_mask  0      0      0       0       1       1       1      1   <- actions a_t
    logprobs[:, t]   0      .      .       .    lp(was  lp(great lp(.   lp(<eos>
                                                 |<=3)   |<=4)    |<=5)  |<=6)
    values[:, t]     0      .      .       .    V(s_4)  V(s_5)   V(s_6)  V(s_7)
                                                 = v(h_3) = v(h_4) ...   = v(h_6)
    rewards[:, t]    0      0      0       0     -b*kl   -b*kl   -b*kl  -b*kl + score

Column t holds everything about the action a_t = input_ids[:, t] taken in the state
s_t = input_ids[:, :t]: its log-prob (as in ``sampling.token_logprobs``), the value
of s_t (the value head applied to the hidden state of column t - 1, the last token
the model has seen before choosing a_t) and its reward. The sequence score lands on
the last column where ``completion_mask`` is 1 (here the ``<eos>``; a row whose
completion is shorter has padding after it, and its score lands before the padding).
Everything outside the completion mask is 0. ``losses.compute_gae(rewards, values,
mask)`` then takes the value after the last real token to be 0 (the episode ended).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import world
from ..losses import token_rewards  # pure, so it lives with the losses; re-exported here as rl.token_rewards
from ..sampling import Batch, last_token_index, position_ids, sample, token_logprobs  # noqa: F401 (re-exported)
from ..training import make_optimizer as adamw

# ---------------------------------------------------------------------------
# 1. The policy with a value head
# ---------------------------------------------------------------------------

class PolicyWithValue(nn.Module):
    """A causal LM (``.lm``, a ``GPT2LMHeadModel``) plus a scalar value head.

    ``forward(input_ids, attention_mask, temperature)`` returns ``(logprobs, values)``,
    both (B, T) and aligned as in the module docstring, from ONE transformer pass:
    the last hidden state feeds both the LM head (log-probs) and the value head.

    The value head is ``nn.Linear(n_embd, 1)`` with weight and bias set to 0, so at
    initialisation every value is exactly 0 and the first advantages are the plain
    returns (the "implementation details" literature, e.g. Huang et al. 2022, "The 37
    implementation details of PPO", recommends a small or zero init for this head).

    ``PolicyWithValue`` is NOT itself a language model: wherever a plain causal LM is
    expected (``sampling.sample``, ``sampling.token_logprobs``, the shared
    ``Evaluator``, ``training.train``), pass ``policy.lm``. Both share the same
    weights, so training one trains the other.

    ``detach_value``: if True, the value loss trains only the value head, not the
    transformer under it (a "stop-gradient" critic). False (the default) is the usual
    shared-trunk set-up of RLHF code.

    ``value_trunk``: None (default) puts the value head on the policy's own last hidden
    state (one pass, shared trunk). A ``GPT2Model`` (e.g. ``copy.deepcopy(lm.transformer)``)
    gives the critic its own transformer: two passes, but value updates can no longer
    disturb the policy and vice versa (the set-up of TRL's current PPOTrainer).
    """

    def __init__(self, lm: nn.Module, detach_value: bool = False,
                 value_trunk: nn.Module | None = None):
        super().__init__()
        self.lm = lm
        self.detach_value = detach_value
        self.value_trunk = value_trunk
        self.value_head = nn.Linear(lm.config.n_embd, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                temperature: float = 1.0, return_logits: bool = False):
        """(logprobs, values), each (B, T); column 0 of both is 0.

        ``logprobs[:, t]`` = log pi(a_t | s_t) at ``temperature`` (it must be the one the
        tokens were sampled with); ``values[:, t]`` = V(s_t). With ``return_logits``, the
        (B, T, V) logits (before the temperature, column t predicting token t + 1) come
        third, e.g. for an entropy bonus.
        """
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"PolicyWithValue: `temperature` must be a number > 0, got "
                             f"{temperature!r}")
        hidden = self.lm.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                     position_ids=position_ids(attention_mask)).last_hidden_state
        logits = self.lm.lm_head(hidden)
        logp = F.log_softmax(logits[:, :-1].float() / temperature, dim=-1)
        lp = F.pad(logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1), (1, 0))
        if self.value_trunk is not None:  # a separate critic: its own transformer pass
            hidden = self.value_trunk(input_ids=input_ids, attention_mask=attention_mask,
                                      position_ids=position_ids(attention_mask)).last_hidden_state
        h = hidden[:, :-1].detach() if self.detach_value else hidden[:, :-1]
        values = F.pad(self.value_head(h).squeeze(-1).float(), (1, 0))
        return (lp, values, logits) if return_logits else (lp, values)


# ---------------------------------------------------------------------------
# 2. Rollouts
# ---------------------------------------------------------------------------

@dataclass
class Rollout:
    """One batch of sampled episodes and everything an update needs (no gradient).

    All (B, T) tensors follow the alignment of the module docstring and are 0 outside
    ``mask``.
    """

    batch: Batch
    """The sampled, left-padded prompt + completion sequences."""
    logprobs: torch.Tensor
    """(B, T) log pi(a_t|s_t) at the sampling temperature, when sampled ("old" log-probs)."""
    ref_logprobs: torch.Tensor
    """(B, T) log pi_ref(a_t|s_t) of the same tokens, same temperature."""
    values: torch.Tensor
    """(B, T) V(s_t) from the value head when sampled ("old" values)."""
    scores: torch.Tensor
    """(B,) sequence scores from ``reward_fn``."""
    rewards: torch.Tensor
    """(B, T) per-token rewards (``token_rewards``)."""
    mask: torch.Tensor
    """(B, T) float completion mask: 1 on the actions (``<eos>`` included)."""

    def __len__(self) -> int:
        return len(self.batch)

    @property
    def kl(self) -> torch.Tensor:
        """(B,) sequence KL estimate sum_t log pi/pi_ref (k1) of each sample."""
        return ((self.logprobs - self.ref_logprobs) * self.mask).sum(-1)

    def stats(self) -> dict:
        """Batch means for logging: score, kl (k1 per sequence), length in tokens."""
        return {"score": self.scores.mean().item(), "rollout_kl": self.kl.mean().item(),
                "rollout_len": self.mask.sum(-1).mean().item()}


def check_scores(scores, n: int, who: str = "reward_fn") -> torch.Tensor:
    """``scores`` as a (n,) float tensor; a clear error if the count or a value is wrong."""
    try:
        out = torch.as_tensor(list(scores), dtype=torch.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{who} must return a list of {n} numbers, got "
                         f"{type(scores).__name__} ({e})") from None
    if out.shape != (n,):
        raise ValueError(f"{who} returned {out.numel()} scores (shape {tuple(out.shape)}) for "
                         f"{n} completions; it must return exactly one number per completion")
    if not torch.isfinite(out).all():
        bad = (~torch.isfinite(out)).nonzero().flatten().tolist()
        raise ValueError(f"{who} returned non-finite scores (NaN/inf) at positions {bad[:5]}; "
                         "every completion needs a finite score (score invalid text low, "
                         "e.g. -1, instead of NaN)")
    return out


@torch.no_grad()
def rollout(policy: PolicyWithValue, ref, tok, prompts: list[str], reward_fn, config,
            seed: int | None = None, kl_coef: float | None = None) -> Rollout:
    """Sample one completion per prompt from ``policy`` and record a ``Rollout``.

    policy:    a ``PolicyWithValue`` (its ``.lm`` samples)
    ref:       the frozen reference LM pi_ref (a plain causal LM)
    reward_fn: ``reward_fn(prompts, completions, finished) -> list[float]``, one score
               per completion (the gold judge here, a learned reward model in PPO)
    config:    any object with ``max_new_tokens``, ``sampling_temperature`` and ``kl_coef``
               (e.g. ``pg.PGConfig``); ``kl_coef`` given here overrides it (adaptive KL)
    seed:      seed of the sampling draw (repeatable runs)
    """
    if not isinstance(policy, PolicyWithValue):
        raise TypeError(f"rollout: `policy` must be a PolicyWithValue, got "
                        f"{type(policy).__name__}; wrap the LM with PolicyWithValue(lm)")
    kl_coef = config.kl_coef if kl_coef is None else kl_coef
    temperature = config.sampling_temperature
    was_training = policy.training
    policy.eval()
    batch = sample(policy.lm, tok, list(prompts), config.max_new_tokens, temperature, seed=seed)
    scores = check_scores(reward_fn(batch.prompts, batch.completions, batch.finished),
                          len(batch)).to(batch.input_ids.device)
    logprobs, values = policy(batch.input_ids, batch.attention_mask, temperature)
    ref_logprobs = token_logprobs(ref, batch.input_ids, batch.attention_mask, temperature)
    policy.train(was_training)
    mask = batch.completion_mask.float()
    rewards = token_rewards(scores, logprobs, ref_logprobs, mask, kl_coef)
    return Rollout(batch, logprobs * mask, ref_logprobs * mask, values * mask, scores,
                   rewards, mask)


def gold_reward_fn(prompts: list[str], completions: list[str], finished: list[bool]) -> list[float]:
    """The gold judge as a ``reward_fn`` (lecture 02 optimises it directly, on purpose)."""

    return world.gold_rewards(prompts, completions, finished)


def new_policy(sft_lm, critic: str = "shared") -> PolicyWithValue:
    """A trainable copy of the SFT model with a fresh (zero) value head.

    ``critic``: "shared" (the value head on the policy's trunk) or "separate" (the value
    head on its own copy of the SFT transformer).
    """
    if critic not in ("shared", "separate"):
        raise ValueError(f"new_policy: `critic` must be 'shared' or 'separate', got {critic!r}")
    lm = copy.deepcopy(sft_lm)
    lm.train()
    for p in lm.parameters():
        p.requires_grad_(True)
    trunk = copy.deepcopy(lm.transformer) if critic == "separate" else None
    return PolicyWithValue(lm, value_trunk=trunk).to(next(sft_lm.parameters()).device).train()


def make_optimizer(policy: PolicyWithValue, lr: float, value_lr: float) -> torch.optim.Optimizer:
    """AdamW (betas 0.9/0.95, no weight decay) with learning rate ``lr`` for the policy's LM
    and ``value_lr`` for its critic: the value head and, for a separate critic
    (``new_policy(..., critic="separate")``), the critic's own transformer."""
    critic = list(policy.value_head.parameters())
    if policy.value_trunk is not None:
        critic += list(policy.value_trunk.parameters())
    return adamw([{"params": list(policy.lm.parameters()), "lr": lr},
                  {"params": critic, "lr": value_lr}], lr, betas=(0.9, 0.95))
