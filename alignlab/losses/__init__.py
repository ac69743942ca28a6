"""Pure loss functions for preference alignment, one module per family of methods.

    checks       argument checks shared by every loss (private helpers)
    reductions   masked_sum, masked_mean, whiten: reductions over padded (B, T) batches
    preference   the Bradley-Terry reward model, DPO, and online DPO's BPO, VPO and XPO
    kto          KTO: its loss, the reference point z0, the recommended class weights
    policy       policy-gradient RL: GAE, PPO's losses, KL coefficients and estimators,
                 and the KL-shaped rewards (per token for PPO, per sequence for RLOO)
    group        critic-free RL: RLOO and GRPO advantages and losses

Everything is re-exported here: ``from alignlab.losses import dpo_loss`` and
``losses.dpo_loss`` work whichever module a function lives in.

Tensors in, tensors out: no hidden state, no nn.Module, no optimiser. Every function
says which equation of which paper it implements and what it returns at step 0
(policy == reference, or new policy == old policy), so a first training step can be
checked by hand.

Shape names used throughout:
    B   batch size (number of examples, or of preference pairs)
    T   number of completion tokens in a padded batch
    mask (B, T): 1 on valid completion tokens, 0 on padding (and prompt) positions.

Bad input raises ValueError naming the function, the argument, what was expected,
what came, and the most likely cause.
"""

from .group import AGGREGATIONS, group_advantages, grpo_loss, rloo_advantages, rloo_loss
from .kto import kto_lambdas_in_recommended_range, kto_loss, kto_recommended_lambda_d, kto_z0, mismatched_indices
from .policy import (
    AdaptiveKLController,
    FixedKLController,
    compute_gae,
    explained_variance,
    kl_k1,
    kl_k3,
    kl_penalised_rewards,
    ppo_clip_loss,
    ppo_kl_penalty_beta,
    ppo_kl_penalty_loss,
    token_rewards,
    value_loss_clipped,
)
from .preference import VPO_MODES, bpo_loss, bt_loss, bt_loss_naive, dpo_loss, pairwise_accuracy, vpo_loss, xpo_loss
from .reductions import masked_mean, masked_sum, whiten

__all__ = [
    # reductions
    "masked_sum", "masked_mean", "whiten",
    # preference
    "bt_loss", "bt_loss_naive", "pairwise_accuracy", "dpo_loss", "VPO_MODES", "bpo_loss", "vpo_loss", "xpo_loss",
    # kto
    "kto_z0", "kto_loss", "mismatched_indices", "kto_recommended_lambda_d", "kto_lambdas_in_recommended_range",
    # policy
    "compute_gae", "ppo_clip_loss", "ppo_kl_penalty_loss", "ppo_kl_penalty_beta", "value_loss_clipped",
    "explained_variance", "AdaptiveKLController", "FixedKLController", "kl_k1", "kl_k3",
    "token_rewards", "kl_penalised_rewards",
    # group
    "rloo_advantages", "group_advantages", "AGGREGATIONS", "grpo_loss", "rloo_loss",
]
