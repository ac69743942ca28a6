"""Pairwise preference losses: a reward model (Bradley-Terry), DPO, and online DPO's variants.

Every loss here takes one chosen and one rejected completion per prompt, as SUMMED
log-probs (B,) or scalar rewards (B,), and at step 0 (policy == reference, or equal
rewards) gives ln 2 ~= 0.693:

    bt_loss, bt_loss_naive, pairwise_accuracy   the reward model (lecture 01)
    dpo_loss                                    Direct Preference Optimization (lecture 04)
    bpo_loss, vpo_loss, xpo_loss                online preference learning (lecture 06)
"""

import math

import torch
import torch.nn.functional as F

from .checks import _check_finite, _check_float, _check_loss, _check_positive, _check_same_shape, _check_vectors

# ---------------------------------------------------------------------------
# Reward model: Bradley-Terry
# ---------------------------------------------------------------------------


def _check_pair(fn, rewards_chosen, rewards_rejected, names=("rewards_chosen", "rewards_rejected")):
    _check_vectors(fn, names[0], rewards_chosen, names[1], rewards_rejected,
                   "chosen and rejected were built from batches of different sizes; each preference pair "
                   "needs exactly one chosen and one rejected entry.")


def bt_loss(rewards_chosen, rewards_rejected, margin=None):
    """Bradley-Terry reward-model loss (Ouyang et al. 2022, eq. 1).

    rewards_chosen:   (B,) scalar reward r(x, y_c) of the preferred completion
    rewards_rejected: (B,) scalar reward r(x, y_r) of the other completion
    margin:           None, a float, or (B,) how much better y_c is known to be
                      (Touvron et al. 2023 "Llama 2", eq. 2; the `margin` column of TRL's RewardTrainer)

        loss = mean_i  -log sigmoid(r_c - r_r - m)  =  mean_i softplus(r_r - r_c + m)

    The softplus form never computes sigmoid then log, so it stays finite for any reward
    gap (compare `bt_loss_naive`). Step 0 (r_c == r_r, no margin): ln 2 ~= 0.693.
    """
    fn = "bt_loss"
    _check_pair(fn, rewards_chosen, rewards_rejected)
    if margin is None:
        margin = 0.0
    elif isinstance(margin, torch.Tensor):
        _check_float(fn, "margin", margin, ndim=1, expected="(B,)")
        _check_finite(fn, "margin", margin)
        _check_same_shape(fn, "rewards_chosen", rewards_chosen, "margin", margin,
                          "one margin per preference pair is needed.")
    loss = F.softplus(rewards_rejected - rewards_chosen + margin).mean()
    _check_loss(fn, loss)
    return loss


def bt_loss_naive(rewards_chosen, rewards_rejected):
    """The textbook form -log(sigmoid(r_c - r_r)), kept ONLY to show why it is not used.

    rewards_chosen, rewards_rejected: (B,)

    For a gap r_c - r_r of about -100 or less (float32), sigmoid underflows to exactly 0
    and log(0) = -inf, so the loss is inf and its gradient NaN. `bt_loss` is the fix.
    """
    _check_pair("bt_loss_naive", rewards_chosen, rewards_rejected)
    return -torch.log(torch.sigmoid(rewards_chosen - rewards_rejected)).mean()


def pairwise_accuracy(rewards_chosen, rewards_rejected):
    """Fraction of pairs the reward model orders correctly: mean(r_c > r_r), ties count 1/2.

    rewards_chosen, rewards_rejected: (B,)
    Returns a float scalar tensor in [0, 1], without gradient. Step 0 with a reward model
    that outputs a constant: 0.5 (all ties). (TRL's `accuracy` metric counts a tie as 0.)
    """
    _check_pair("pairwise_accuracy", rewards_chosen, rewards_rejected)
    with torch.no_grad():
        wins = (rewards_chosen > rewards_rejected).float()
        ties = (rewards_chosen == rewards_rejected).float()
        return (wins + 0.5 * ties).mean()


# ---------------------------------------------------------------------------
# DPO
# ---------------------------------------------------------------------------


def _check_dpo_inputs(fn, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                      ref_rejected_logps, ref_names=("ref_chosen_logps", "ref_rejected_logps")):
    _check_pair(fn, policy_chosen_logps, policy_rejected_logps, ("policy_chosen_logps", "policy_rejected_logps"))
    for name, x in zip(ref_names, (ref_chosen_logps, ref_rejected_logps)):
        _check_float(fn, name, x, ndim=1, expected="(B,)")
        _check_finite(fn, name, x)
        _check_same_shape(fn, "policy_chosen_logps", policy_chosen_logps, name, x,
                          "the reference log-probs were computed on a different batch than the policy's.")


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1):
    """Direct Preference Optimization, "sigmoid" loss (Rafailov et al. 2023, eq. 7).

    policy_chosen_logps:   (B,) summed log-probs log pi(y_c|x) of the chosen completion under the policy
    policy_rejected_logps: (B,) summed log-probs log pi(y_r|x) of the rejected completion under the policy
    ref_chosen_logps:      (B,) same for the frozen reference model (no gradient needed)
    ref_rejected_logps:    (B,)
    beta:                  strength of the implicit KL penalty (TRL default 0.1)

        h    = [log pi(y_c) - log ref(y_c)] - [log pi(y_r) - log ref(y_r)]
        loss = mean_i  -log sigmoid(beta * h)

    (h is also (pi_c - pi_r) - (ref_c - ref_r); TRL computes it the first way.)

    Returns (loss, chosen_rewards, rejected_rewards): the implicit rewards
    beta * (log pi - log ref), shape (B,), detached (for logging only).
    Step 0 (policy == reference): loss = ln 2 ~= 0.693 and both rewards are 0.
    """
    fn = "dpo_loss"
    _check_dpo_inputs(fn, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    _check_positive(fn, "beta", beta)

    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    losses = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))
    loss = losses.mean()
    _check_loss(fn, loss)

    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return loss, chosen_rewards, rejected_rewards


# ---------------------------------------------------------------------------
# Online preference learning: BPO, VPO and XPO (lecture 06)
#
# Online DPO is ``dpo_loss`` itself, on pairs sampled from the current policy and labelled
# as they come. BPO changes which model is the reference; VPO and XPO add a term on
# samples of a "calibration" policy (here pi_ref) to the DPO loss. All log-probs are
# SUMMED over the completion's tokens, as in ``dpo_loss``.
# ---------------------------------------------------------------------------


VPO_MODES = {"online": 1.0, "offline": -1.0}
"""VPO's sign: +1 online (optimism: push the calibration samples DOWN, explore), -1 offline
(pessimism: pull them UP, an SFT-like regulariser on the data)."""


def _dpo_terms(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    """(B,) per-pair DPO losses and the two (B,) implicit rewards (with gradient)."""
    chosen = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected = beta * (policy_rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(chosen - rejected), chosen, rejected


def bpo_loss(policy_chosen_logps, policy_rejected_logps, behaviour_chosen_logps, behaviour_rejected_logps,
             beta=0.1):
    """BPO: DPO with the behaviour LLM as the reference (Xu et al. 2024, arXiv 2406.12168, sec. 4).

    policy_chosen_logps:      (B,) summed log pi_theta(y_c|x) under the policy being trained
    policy_rejected_logps:    (B,) the same for y_r
    behaviour_chosen_logps:   (B,) summed log pi_beh(y_c|x) under the BEHAVIOUR policy: the frozen
                              snapshot that sampled this pair (not the SFT model)
    behaviour_rejected_logps: (B,)
    beta:                     strength of the trust region around pi_beh

        loss = mean_i -log sigmoid( beta [log pi_theta/pi_beh (y_c) - log pi_theta/pi_beh (y_r)] )

    The formula is ``dpo_loss``'s; what changes is where the reference comes from. Online DPO
    keeps pi_ref = pi_SFT while the data comes from ever newer policies, so its trust region
    is centred far from the data; BPO centres it on the policy that produced the data. With
    F collection phases, pi_beh is frozen within a phase and replaced at each phase boundary
    by a snapshot of the policy: F = 1 is offline DPO (pi_beh = pi_SFT), F = steps is fully
    on-policy (a fresh reference every step).

    Returns (loss, chosen_rewards, rejected_rewards), the implicit rewards
    beta (log pi_theta - log pi_beh), (B,), detached. Step 0 OF EVERY PHASE (the policy is
    the snapshot it was just copied to): loss = ln 2 ~= 0.693, rewards 0. A loss that is ln 2
    at EVERY step while F < steps means the reference is the current policy, not a frozen
    snapshot (then it is a new reference each step, and the F phases are lost).
    """
    fn = "bpo_loss"
    _check_dpo_inputs(fn, policy_chosen_logps, policy_rejected_logps, behaviour_chosen_logps,
                      behaviour_rejected_logps, ("behaviour_chosen_logps", "behaviour_rejected_logps"))
    _check_positive(fn, "beta", beta)
    losses, chosen, rejected = _dpo_terms(policy_chosen_logps, policy_rejected_logps,
                                          behaviour_chosen_logps.detach(), behaviour_rejected_logps.detach(), beta)
    loss = losses.mean()
    _check_loss(fn, loss)
    return loss, chosen.detach(), rejected.detach()


def vpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             policy_cal_logps, ref_cal_logps, beta=0.1, alpha=0.1, mode="online"):
    """VPO: the DPO loss plus the value-incentivised regulariser (Cen et al. 2024, arXiv 2405.19320).

    policy_chosen_logps, policy_rejected_logps: (B,) summed log-probs of the pair under the policy
    ref_chosen_logps, ref_rejected_logps:       (B,) the same under the frozen reference pi_ref
    policy_cal_logps: (M,) summed log pi_theta(y|x) of M samples y ~ pi_cal (the "calibration"
                      policy; here pi_cal = pi_ref: one fresh SFT sample per prompt online, the
                      data's own SFT completions offline)
    ref_cal_logps:    (M,) summed log pi_ref(y|x) of the same samples (constant)
    beta:             DPO's beta;  alpha: strength of the regulariser (>= 0)
    mode:             "online" (sign +1, optimism) or "offline" (sign -1, pessimism)

    VPO fits the reward by maximum likelihood regularised by the best value it promises,
    -ell(r) +/- alpha max_pi J(r, pi); with DPO's reparameterisation r = beta log pi/pi_ref
    (+ const) that value becomes a term on samples of pi_cal, and the loss is

        loss = dpo_loss + sign * alpha * beta * mean_j [log pi_theta(y_j|x_j) - log pi_ref(y_j|x_j)]

    Online (+): lowering the likelihood of the reference's typical samples moves mass to
    responses pi_ref rarely writes: exploration. Offline (-): raising it keeps the policy on
    the data's support, an SFT-like pessimistic regulariser. Its gradient is
    sign * alpha * beta * mean grad log pi_theta(y_j|x_j): the same as XPO's bonus with
    alpha_XPO = alpha * beta (``xpo_loss``); the two losses differ by a constant.

    Returns (loss, chosen_rewards, rejected_rewards, regulariser): the implicit rewards
    (B,) detached, and the regulariser term as added to the loss (a detached scalar).
    Step 0 (policy == reference): loss = ln 2, rewards 0, regulariser exactly 0 (each
    log-ratio is 0), whatever alpha: only its gradient is non-zero.
    """
    fn = "vpo_loss"
    _check_dpo_inputs(fn, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    _check_vectors(fn, "policy_cal_logps", policy_cal_logps, "ref_cal_logps", ref_cal_logps,
                   "the calibration samples were scored on different batches by the policy and the reference.",
                   expected="(M,)")
    _check_positive(fn, "beta", beta)
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"{fn}: `alpha` should be a finite number >= 0, got {alpha!r}. The sign comes "
                         "from `mode`, not from alpha.")
    if mode not in VPO_MODES:
        raise ValueError(f"{fn}: `mode` should be one of {sorted(VPO_MODES)}, got {mode!r}.")
    losses, chosen, rejected = _dpo_terms(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                          ref_rejected_logps, beta)
    regulariser = VPO_MODES[mode] * alpha * beta * (policy_cal_logps - ref_cal_logps.detach()).mean()
    loss = losses.mean() + regulariser
    _check_loss(fn, loss)
    return loss, chosen.detach(), rejected.detach(), regulariser.detach()


def xpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             policy_refsample_logps, beta=0.1, alpha=1e-5):
    """XPO's loss as TRL's XPOTrainer computed it up to TRL 1.13 (Xie et al. 2024, arXiv 2405.21046).

    policy_chosen_logps, ..., ref_rejected_logps: (B,) as in ``dpo_loss``; in XPO each pair is
                     one policy sample and one reference sample, ranked by a judge
    policy_refsample_logps: (B,) summed log pi_theta(y_ref|x) of the REFERENCE's sample of each
                     prompt, with gradient
    beta: DPO's beta;  alpha: the exploration bonus (TRL's default 1e-5)

        loss = mean_i [ -log sigmoid(beta h_i) + alpha * log pi_theta(y_ref,i | x_i) ]

    Minimising alpha * log pi_theta(y_ref) pushes the reference's samples down: VPO online
    with pi_cal = pi_ref and alpha_VPO = alpha / beta has the same gradient (``vpo_loss``);
    XPO's term is the summed log-prob itself, not a log-ratio, so it is not 0 at step 0.

    Returns (loss, chosen_rewards, rejected_rewards, bonus), the bonus alpha *
    mean log pi_theta(y_ref) detached. Step 0: the DPO part is ln 2; bonus = alpha *
    mean log pi_ref(y_ref) (negative).
    """
    fn = "xpo_loss"
    _check_dpo_inputs(fn, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    _check_float(fn, "policy_refsample_logps", policy_refsample_logps, ndim=1, expected="(B,)")
    _check_finite(fn, "policy_refsample_logps", policy_refsample_logps)
    _check_positive(fn, "beta", beta)
    losses, chosen, rejected = _dpo_terms(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                          ref_rejected_logps, beta)
    bonus = alpha * policy_refsample_logps
    loss = (losses + bonus).mean() if bonus.shape == losses.shape else losses.mean() + bonus.mean()
    _check_loss(fn, loss)
    return loss, chosen.detach(), rejected.detach(), bonus.mean().detach()
