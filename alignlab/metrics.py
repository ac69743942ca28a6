"""Every metric the course logs or reports, defined once: what it is, its formula, what healthy looks like.

``METRICS`` maps each key a method logs into its ``training.History`` (and each metric a
``python -m alignlab run`` JSON line reports) to one ``Metric``. This module holds only
definitions: who logs what is declared by each method (``METHOD.metrics``, ``METHOD.reports``
in ``alignlab.registry``) and derived from the registry where a page needs it
(``markdown(methods)``). ``docs/metrics.md`` is generated from both, the notebooks display rows
of the table (``table(keys)``), and the tests check that nothing is logged that is not defined
here (``undefined(keys)``).

    python -m alignlab docs   # rewrites docs/metrics.md (with the other generated pages)
    python -c "from alignlab import metrics; from alignlab.methods import REGISTRY; \
               print(metrics.table(REGISTRY['ppo'].metrics))"

A name ending in ``*`` is a prefix: ``grad_var_*`` defines ``grad_var_none``, ``grad_var_mean``
and ``grad_var_value``. The notation: pi the policy, pi_ref the SFT reference, pi_old the
policy that sampled a rollout, rho = pi / pi_old per token, A_t an advantage, R_t a value
target, V the value head, beta the KL strength, r* the gold judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SHARED = ("gold_reward", "kl", "win_rate", "valid_rate")
"""The dashboard: measured the same way for every method, by ``evaluation.Evaluator``."""

DOCS = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"
"""The generated reference page."""
REGENERATE = "python -m alignlab docs"
"""The command that rewrites ``DOCS`` from this module and the method records (``studies.docs``)."""


@dataclass(frozen=True)
class Metric:
    """One logged (or reported) number."""

    definition: str
    """What it is, with its formula (one paragraph, plain text)."""
    healthy: str
    """What a healthy run shows (values at step 0, typical ranges, what a bad value means)."""


METRICS: dict[str, Metric] = {
    # --- the shared evaluation (evaluation.Evaluator), on held-out prompts ---------------
    "gold_reward": Metric(
        "mean gold-judge score r*(x, y) of the policy's samples on the held-out prompts: VADER "
        "compound sentiment of the review if it is a finished review valid under the grammar, "
        "else -1",
        "rises during preference tuning; the SFT reference sits near the corpus average (about 0.1)"),
    "kl": Metric(
        "sequence-level KL(pi || pi_ref), estimated on y ~ pi as mean_y Σ_t [log pi(y_t | x, y_<t) "
        "- log pi_ref(y_t | x, y_<t)] (the unbiased \"k1\" estimator; both at the sampling "
        "temperature). Best-of-N reports the analytic bound log N - (N - 1)/N here (`kl_estimator`) and "
        "a tie-aware estimate beside it (`kl_estimate`)",
        "0 at step 0; grows with optimisation; a few nats is a modest change for 10-word "
        "reviews; a clearly negative mean means too few samples or a temperature mismatch"),
    "win_rate": Metric(
        "fraction of held-out prompts where the gold judge scores the policy's sample above the "
        "reference's sample for the same prompt; ties (e.g. both invalid) count 1/2",
        "1/2 for the reference against itself; above 1/2 means better than the SFT model"),
    "valid_rate": Metric(
        "fraction of samples that ended with `<eos>` and are valid under the grammar",
        ">= 0.95 for the SFT model; a fall means the policy is drifting off the language "
        "(reward hacking, too small a KL penalty)"),
    "gold_reward_ci": Metric(
        "half-width of the 95 % confidence interval of `gold_reward` over the held-out prompts: "
        "1.96 s / sqrt(n), s the standard deviation (ddof 1) of the n per-prompt gold scores "
        "(`evaluation.CI_METHOD`); the interval is gold_reward +- gold_reward_ci",
        "about 0.05-0.1 on `quick` (128 prompts); it is the evaluation's sampling noise only: "
        "runs from different SFT seeds differ by more, which is why the sweeps run seeds"),
    "win_rate_ci": Metric(
        "half-width of the 95 % confidence interval of `win_rate` over the held-out prompts: "
        "1.96 s / sqrt(n) of the per-prompt outcomes (1 win, 1/2 tie, 0 loss)",
        "at most 1.96 * 0.5 / sqrt(n) (0.087 for 128 prompts), smaller far from 1/2; two "
        "win-rates whose intervals overlap are not told apart by one evaluation"),
    "length": Metric(
        "mean completion length in words of the evaluator's samples",
        "near the SFT model's (about 9.5 words on `quick`); a steady rise while the reward "
        "rises is length hacking"),
    "perplexity": Metric(
        "perplexity of held-out reference reviews under the policy: exp of the mean negative "
        "log-likelihood per token, exp(-Σ log pi(y_t | x, y_<t) / N), over the N completion tokens "
        "(`<eos>` included, prompt tokens not scored) of one fresh grammar review per held-out "
        "prompt (`evaluation.reference_reviews`, fixed for the evaluator), at temperature 1",
        "the SFT model's at step 0 (5.81 on `quick`; the base model's 17.6, all of the excess from "
        "the `<eos>` it never learned); it measures fit to average reviews, not quality: DPO on "
        "`quick` rises gently while its gold reward climbs (5.81 to 6.62 in 60 steps, beta 0.3), "
        "a rise by a large factor means the policy has left the language (beta 0.02: 21.4, valid "
        "rate 0.11)"),
    # --- the shared loop (training.train) ------------------------------------------------
    "loss": Metric(
        "the training loss of the step's batch, what the optimiser minimises. sft: mean NLL per "
        "completion token; rm: `bt_loss + center_coef * center_loss`; pg: `pg_loss` (+ `vf_coef "
        "* vf_loss` with the `gae` baseline); ppo: `pg_loss + vf_coef * vf_loss`, mean over the "
        "iteration's minibatch steps; dpo: mean -log σ(β [log pi/pi_ref(y_w) - log "
        "pi/pi_ref(y_l)]); kto: mean over examples of λ_y (1 - σ(β (±)(r - z0))); offline_ppo: "
        "the clipped surrogate of `pg_loss` with pi_old = pi_ref and A = ±1",
        "finite (the shared loop stops with a clear error otherwise); step-0 values below "
        "(dpo and rm ln 2, kto mean(λ_y)/2, offline_ppo -mean(A)); for pg and ppo it is not a "
        "progress measure (the advantages change every batch)"),
    "grad_norm": Metric(
        "global L2 norm of the gradient of all trained parameters, before clipping to "
        "`max_grad_norm` (the value `torch.nn.utils.clip_grad_norm_` returns); ppo: mean over "
        "the iteration's minibatch steps",
        "finite and roughly steady; spikes come before loss blow-ups; staying far above "
        "`max_grad_norm` means the clip, not the learning rate, sets the step size"),
    # --- rm: the Bradley-Terry reward model ----------------------------------------------
    "bt_loss": Metric(
        "minibatch mean of softplus(r(x, y_rejected) - r(x, y_chosen)), the Bradley-Terry "
        "negative log-likelihood of the annotator's labels",
        "ln 2 = 0.693 at step 0, falls towards the label-noise floor (it cannot reach 0 with "
        "noisy annotators)"),
    "accuracy": Metric(
        "minibatch fraction of pairs with r_chosen > r_rejected, against the annotator's labels "
        "(ties count 1/2, unlike DPO's `rewards/accuracies`)",
        "1/2 at step 0, rises towards the annotator's own agreement with itself"),
    "margin": Metric(
        "minibatch mean of r_chosen - r_rejected",
        "0 at step 0; grows as the RM separates pairs"),
    "reward_mean": Metric(
        "minibatch mean of r over chosen and rejected completions",
        "the BT loss does not see it (it is shift-invariant): without centering it drifts "
        "anywhere; with `center_coef > 0` it stays near 0"),
    "center_loss": Metric(
        "minibatch mean of (r_chosen + r_rejected)^2, the centering term (Eisenstein et al. 2023)",
        "0 when rewards are centred on 0; small once `center_coef` acts"),
    "eval_accuracy": Metric(
        "held-out pairs (eval prompts) whose gold scores differ by more than `min_gap`: fraction "
        "the RM orders as the gold judge does (ties 1/2)",
        "about 1/2 at step 0; > 0.8 for a useful RM (0.90 on `quick`)"),
    "eval_label_acc": Metric(
        "all held-out pairs: fraction the RM orders as the (noisy) annotator did (ties 1/2)",
        "below `eval_accuracy`: the annotator's noise caps it (0.83 on `quick`)"),
    "eval_loss": Metric(
        "BT loss on all held-out pairs, against the annotator's labels",
        "ln 2 at step 0, falls; rising while `bt_loss` falls is overfitting"),
    "rm_accuracy": Metric(
        "`eval_accuracy` of the cached reward model at the end of its training",
        "> 0.8 (0.90 on `quick`)"),
    "rm_label_accuracy": Metric(
        "`eval_label_acc` of the cached reward model at the end of its training",
        "below `rm_accuracy` (0.83 on `quick`)"),
    # --- bon: best-of-N -------------------------------------------------------------------
    "n": Metric(
        "N of best-of-N: samples per prompt, of which the reward model keeps the best "
        "(`bon_sweep` logs it at step log2 N)",
        "a setting, not a measurement: KL grows as log N - (N - 1)/N"),
    "proxy_reward": Metric(
        "mean score, under the rewards that pick the winner (the RM, or any judge), of the kept "
        "samples",
        "rises with N faster than `gold_reward`: the gap is the proxy's over-optimisation"),
    "rm_reward": Metric(
        "mean learned-RM score of the policy's samples: in ppo's history, of the rollout (equals "
        "`score` when optimising the RM; scored by `rm_fn` otherwise); in the JSON of `run ppo` "
        "and `run bon`, of the final policy's samples on the held-out prompts",
        "rises; rising while `gold_reward` falls is reward hacking (over-optimising the RM)"),
    "kl_estimator": Metric(
        "how the JSON line's `kl` was computed when it is not the evaluator's k1 estimate",
        "best-of-N: analytic, log N - (N - 1)/N (exact without ties, an upper bound otherwise)"),
    "kl_estimate": Metric(
        "best-of-N's KL(pi_BoN || pi_ref) estimated from a pool of `kl_pool` x N draws per prompt "
        "scored by the RM (`bon.kl_estimate`): the exact KL of best-of-N drawn from the pool, minus "
        "that value's finite-pool overshoot for distinct scores, so that it sees ties",
        "equal to `kl` (the analytic bound) when no two draws of a prompt share a score; below it "
        "by the mass that duplicated completions keep; never far above it"),
    # --- pg and ppo: the RL machinery -------------------------------------------------------
    "pg_loss": Metric(
        "the policy-gradient term of the loss, a token mean over the completions. pg: "
        "-mean_t A_t log pi(a_t | s_t); ppo and offline_ppo: the clipped surrogate "
        "-mean_t min(rho_t A_t, clip(rho_t, 1 - ε, 1 + ε) A_t), whose gradient at rho = 1 is pg's",
        "not a progress measure: the advantages are re-estimated (and whitened) every batch; "
        "only its gradient matters"),
    "vf_loss": Metric(
        "the value head's regression loss 0.5 mean_t (V(s_t) - R_t)^2 on the completion tokens; "
        "ppo clips it: 0.5 mean_t max((V - R)^2, (V_clip - R)^2) with V_clip = V_old + "
        "clip(V - V_old, ±vf_clip); pg logs it with the `gae` baseline only",
        "falls as the value head learns (its scale is the reward's, squared)"),
    "explained_variance": Metric(
        "1 - Var(R - V_old) / Var(R) over the batch's completion tokens: how well the value "
        "head predicted the returns before the update (pg: `gae` baseline only)",
        "0 at the start (V = 0), rising towards 1 (about 0.16 at the end of pg on `quick`); "
        "near 0 or negative means the critic is no better than a constant"),
    "score": Metric(
        "mean `reward_fn` score of the training batch, what the method maximises (pg: the gold "
        "judge; ppo: the learned RM, or the gold judge with `reward=gold`)",
        "rises; in ppo, a growing gap to `rollout_gold` is the RM being over-optimised"),
    "rollout_kl": Metric(
        "mean over the training batch of the sequence KL Σ_t log pi(a_t | s_t)/pi_ref(a_t | s_t) "
        "(k1, at the sampling temperature): the training-batch twin of `kl`",
        "0 at step 1, then grows; PPO-KL steers it towards `kl_target`"),
    "kl_penalty": Metric(
        "kl_coef * rollout_kl: what the per-token KL penalty -β (log pi - log pi_ref) subtracts "
        "from the batch's mean return, per sequence",
        "a small fraction of `score`; climbing steadily while `valid_rate` falls is the KL "
        "running away (raise `kl_coef` or lower `lr`)"),
    "grad_var_*": Metric(
        "total variance (trace of the covariance) over the episodes of one batch of the "
        "per-episode gradient estimate Σ_t A_t ∇ log pi(a_t | s_t), on the last transformer "
        "block's weight matrices, with A_t unwhitened: `grad_var_none` A_t = G_t, `grad_var_mean` "
        "A_t = G_t - mean(G), `grad_var_value` A_t = G_t - V(s_t) (`gae` only). Measured every "
        "`grad_var_every` steps, on that step's batch",
        "each baseline lowers the variance without changing the expected gradient: none > mean, "
        "and value below both once the critic has learned"),
    "clipfrac": Metric(
        "fraction of completion tokens where the clipped term of the surrogate is the one "
        "selected (they get no gradient); ppo: mean over the iteration's minibatch steps",
        "exactly 0 at the first minibatch; then below about 0.2 (ppo ends near 0.02 on `quick`); "
        "above 0.3 the steps are too large for the clip (lower `lr` or `ppo_epochs`); "
        "offline_ppo: grows over training, since pi_old is the fixed reference"),
    "approx_kl": Metric(
        "k3 estimate of KL(pi_old || pi) per token: mean_t (rho_t - 1) - log rho_t, always >= 0 "
        "(offline_ppo: pi_old is the reference)",
        "exactly 0 at the first minibatch; then below about 0.02 (ppo ends near 0.002 on "
        "`quick`); well above 0.05 means the updates leave the trust region the clip assumes"),
    "ratio_mean": Metric(
        "mean_t rho_t = pi(a_t | s_t) / pi_old(a_t | s_t) over completion tokens",
        "exactly 1 at the first minibatch, then close to 1; on its own it can hide a mismatch "
        "(ratios above and below 1 average out): read `approx_kl`"),
    "vf_clipfrac": Metric(
        "fraction of completion tokens where the clipped value error (V_clip - R)^2 is strictly "
        "larger than the unclipped one, so it is the one selected",
        "0 at the first minibatch; large values mean the value head wants to move further than "
        "`vf_clip` per iteration"),
    "ppo_kl_beta": Metric(
        "PPO-KL only (`policy_loss=\"kl_penalty\"`, Schulman et al. 2017, eq. 8): the β of the "
        "penalty β·KL(pi_old || pi) inside the surrogate during this iteration's updates (not the "
        "β of the reward's KL to pi_ref: that is `kl_coef`)",
        "starts at `ppo_kl_beta`; halves after an iteration whose `ppo_kl_d` is below "
        "`ppo_kl_target` / 1.5, doubles after one above 1.5 x `ppo_kl_target`"),
    "ppo_kl_d": Metric(
        "PPO-KL only: d, the k3 estimate of KL(pi_old || pi) per token over the rollout, measured "
        "after the iteration's updates (what the x2 / /2 rule compares with `ppo_kl_target`)",
        "0 before any update; within a factor 1.5 of `ppo_kl_target` once β has settled",),
    "kl_coef": Metric(
        "β of the per-token KL penalty in this iteration's rewards (PPO-KL: set by the adaptive "
        "controller); the JSON line reports the final one",
        "fixed, or with `adaptive=True` rising while `rollout_kl` is above `kl_target` and "
        "falling below it"),
    "rollout_gold": Metric(
        "mean gold-judge score of the same rollout samples that `score` scores",
        "rises with `score` when the RM is a good proxy; falling while `score` rises is reward "
        "hacking"),
    "rollout_valid": Metric(
        "fraction of the rollout's samples that are finished, valid reviews",
        "stays near the SFT model's (>= 0.9)"),
    "rollout_len": Metric(
        "mean completion length of the rollout in tokens (`<eos>` included)",
        "near the SFT model's; a steady rise is length hacking"),
    # --- dpo (TRL's names) --------------------------------------------------------------
    "rewards/chosen": Metric(
        "batch mean of the implicit reward β (log pi(y_w | x) - log pi_ref(y_w | x)) of the "
        "chosen completions",
        "0 at step 0; may go negative while training works (see `logps/chosen`)"),
    "rewards/rejected": Metric(
        "the same for the rejected completions y_l",
        "0 at step 0, then falls faster than `rewards/chosen`"),
    "rewards/margins": Metric(
        "batch mean of rewards/chosen - rewards/rejected",
        "0 at step 0, then grows"),
    "dpo_loss": Metric(
        "with `sft_weight` > 0 only: the DPO part of `loss` (which is `dpo_loss` + `sft_weight` x "
        "`sft_loss`, TRL's `loss_type=[\"sigmoid\", \"sft\"]`)",
        "ln 2 at step 0, then falls"),
    "sft_loss": Metric(
        "with `sft_weight` > 0 only: mean negative log-likelihood per token of the batch's chosen "
        "completions under the policy (TRL's `\"sft\"` loss)",
        "starts at the SFT model's NLL of its own samples and stays near it; a steady rise means "
        "the chosen completions are being unlearned"),
    "rewards/accuracies": Metric(
        "fraction of the batch's pairs with chosen reward strictly above rejected (as TRL; exact "
        "ties count 0)",
        "rises towards 1; at step 0 it is float noise: read the margins, not the accuracy"),
    "logps/chosen": Metric(
        "batch mean of log pi(y_w | x) under the policy, summed over the completion's tokens "
        "(`<eos>` included)",
        "often falls while training works: DPO moves the margin, not the likelihood"),
    "logps/rejected": Metric(
        "the same for the rejected completions",
        "falls, faster than `logps/chosen`"),
    "reward_accuracy": Metric(
        "`rewards/accuracies` of the last training batch",
        "well above 1/2 (0.80 on `quick`)"),
    # --- kto ------------------------------------------------------------------------------
    "z0": Metric(
        "the reference point: max(0, mean_i log pi/pi_ref of the batch's mismatched (prompt_i, "
        "completion_{i-1}) pairs), without gradient; the JSON line reports the last batch's",
        "0 at step 0; with data from other sources it grows as the policy drifts from pi_ref; "
        "with data sampled from pi_ref it stays clamped at 0"),
    "z0/unclamped": Metric(
        "the same mean log-ratio before the clamp at 0",
        "the mismatched completions were sampled from pi_ref, so its expectation is about "
        "-KL(pi_ref || pi) <= 0: often negative, so z0 is clamped to 0"),
    "rewards/desirable": Metric(
        "mean implied reward β log pi(y | x)/pi_ref(y | x) over the batch's desirable examples "
        "(absent from a batch that has none)",
        "0 at step 0; stays above `rewards/undesirable`; it may dip below 0 (like DPO's chosen "
        "rewards)"),
    "rewards/undesirable": Metric(
        "the same over the batch's undesirable examples",
        "falls below 0, a few units; tens of units below 0 is collapse (check λ_D n_D / "
        "(λ_U n_U) and the valid rate)",),
    "desirable_fraction": Metric(
        "fraction of the examples labelled desirable: of the batch in the history (its mean over "
        "an epoch is the dataset's), of the data trained on in the JSON line",
        "what the annotator produced (0.46 on `quick`), or less after `desirable_keep`; keep "
        "λ_D n_D / (λ_U n_U) in [1, 4/3]",
),
    "n_examples": Metric(
        "examples KTO trained on: the labelled SFT samples left after dropping empty "
        "completions and, with `desirable_keep < 1`, desirable ones",
        "close to the `n_examples` setting times the kept share of desirable examples"),
}
"""Every logged or reported metric by name (a name ending in ``*`` is a prefix)."""


METRICS["completions"] = Metric(
    "completions sampled during training: prompts per step x k samples per prompt x steps (the "
    "sample budget lecture 07 holds equal to PPO's)",
    "fixed by the settings; compare methods at equal values")

# Online DPO, BPO and VPO (lecture 06) log DPO's per-batch metrics and the shared evaluation under
# the same definitions (for BPO the implicit rewards are measured against the behaviour snapshot),
# plus the entries below. RLOO and GRPO (lecture 07) log PPO's rollout and update metrics under
# the same definitions (for RLOO, clipfrac counts completions: its ratio is per sequence).
METRICS.update({
    "phase": Metric(
        "1-based collection phase of the step: the annotation budget is cut into F phases; at each "
        "phase start the policy is snapshotted (the behaviour policy), n_pairs / F pairs are sampled "
        "from it and labelled",
        "steps from 1 to F; BPO's loss is ln 2 at the first step of every phase (the reference was "
        "just replaced by the policy itself)"),
    "labelled_pairs": Metric(
        "labelled preference pairs collected so far (the annotation budget spent): phase x n_pairs / F",
        "reaches `n_pairs` at the last phase whatever F: compare methods at equal values"),
    "entropy": Metric(
        "mean entropy (nats) of the policy's next-word distribution over the completion positions of "
        "its own evaluation samples, -sum_w pi(w | context) log pi(w | context)",
        "the SFT model's value at step 0; a fall means the policy commits to "
        "fewer words (less exploration), a steep rise with a falling valid rate means it is "
        "scattering mass onto ungrammatical words"),
    "distinct_2": Metric(
        "distinct-2 of the evaluation samples: unique word bigrams / all word bigrams over the 128 "
        "completions",
        "the SFT model's value at step 0; falling means the samples repeat each other (mode "
        "collapse), rising with a falling valid rate means random text"),
    "vpo/regulariser": Metric(
        "VPO's term of the loss: sign x alpha x beta x batch mean of log pi(y | x) - log pi_ref(y | x) "
        "over samples y of pi_cal = pi_ref (sign +1 online, -1 offline)",
        "exactly 0 at step 0; online it goes negative as the policy moves mass off the reference's "
        "typical samples; a large negative value with a falling valid rate is alpha too large"),
})

def lookup(key: str) -> Metric | None:
    """The definition of ``key`` (directly, or through a ``prefix*`` entry), else None."""
    if key in METRICS:
        return METRICS[key]
    for name, metric in METRICS.items():
        if name.endswith("*") and key.startswith(name[:-1]):
            return metric
    return None


def undefined(keys) -> list[str]:
    """The keys among ``keys`` that ``METRICS`` does not define, sorted (empty: all defined)."""
    return sorted({k for k in keys if lookup(k) is None})


def names(keys) -> tuple[str, ...]:
    """The ``METRICS`` entries that define ``keys`` (a prefix entry once), in table order."""
    wanted = {id(lookup(k)) for k in keys}
    return tuple(name for name, m in METRICS.items() if id(m) in wanted)


# ---------------------------------------------------------------------------
# Tables: for the notebooks, the terminal and docs/metrics.md
# ---------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(names) -> str:
    return ", ".join(f"`{n}`" for n in names)


def table(keys, methods=None) -> str:
    """A markdown table (metric | definition | healthy) of ``keys``, in the given order.

    ``keys`` may name concrete keys of a prefix entry (``grad_var_none``); each definition is
    shown once. ``methods`` (``Method`` records, e.g. ``REGISTRY.values()``) adds a column of
    which of them log or report each metric. In a notebook:
    ``IPython.display.Markdown(metrics.table(["clipfrac", "approx_kl"]))``.
    """
    missing = undefined(keys)
    if missing:
        raise KeyError(f"metrics.table: {missing} not defined in alignlab.metrics.METRICS "
                       f"(defined: {sorted(METRICS)})")
    rows, seen = [], set()
    for key in keys:
        name = key if key in METRICS else next(n for n in METRICS if METRICS[n] is lookup(key))
        if name in seen:
            continue
        seen.add(name)
        m = METRICS[name]
        cells = [f"`{name}`"]
        if methods is not None:
            logs = [x.name for x in methods if name in names(x.metrics)]
            says = [x.name for x in methods if name in names(x.reports)]
            cells.append("; ".join([_code(logs)] * bool(logs) + ["JSON: " + _code(says)] * bool(says)))
        rows.append("| " + " | ".join(cells + [_cell(m.definition), _cell(m.healthy)]) + " |")
    head = ["metric", *(["logged by"] if methods is not None else []), "definition", "healthy"]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *rows])


_INTRO = f"""\
# Every logged metric, defined once

<!-- Generated from alignlab/metrics.py (METRICS) and the method registry (each METHOD's
     metrics and reports): edit those, then run `{REGENERATE}`. The tests fail while this
     page is stale. -->

Every key a method logs into its training history, and every metric a
`python -m alignlab run` JSON line reports, is defined once, in `alignlab.metrics.METRICS`:
this page is generated from it, the notebooks display its rows, and the tests check that no
method logs a key it does not define. In a notebook:
`IPython.display.Markdown(metrics.table(["clipfrac", "approx_kl"]))`; in a terminal:
`print(metrics.table(REGISTRY["ppo"].metrics, REGISTRY.values()))`.

All shared metrics are measured by `alignlab.evaluation.Evaluator` on held-out prompts (a
quarter of the review openings, never trained on), one sample per prompt, with a fixed
sampling seed so that curves move because the policy moved, not because of new draws.
"""

_SHARED_PROSE = """\
## Shared by every notebook (the dashboard)

`gold_reward`, `kl`, `win_rate` and `valid_rate` (`alignlab.metrics.SHARED`) are the
dashboard's panels (`plots.dashboard`), the columns of the course's results table and the
keys of every `python -m alignlab run` line. `length` and `perplexity` come from the same
evaluation (`perplexity` scores held-out reference reviews, not the policy's samples: best-of-N,
which is no model, and lecture 06's evaluator, which reuses only its judge and KL, leave it
out); `loss` and `grad_norm` are logged by every method that trains, through the shared loop.
"""

_METHODS_PROSE = """\
## Method-specific metrics

"Logged by" names the methods whose training history holds the metric (`offline_ppo` is
lecture 05's baseline, `methods.kto.train_offline_ppo`), as each declares in its `METHOD.metrics`;
"JSON" the methods whose
`python -m alignlab run` line reports it (the other keys of those lines echo settings, e.g.
`beta`, `lam`, `steps`, documented in each method's config: `python -m alignlab run NAME --help`).
"""

_SANITY = """\
## Step-0 sanity values (asserted in the tests and the notebooks)

With the policy equal to the reference: the DPO loss is ln 2 and its margins are 0; the BT
loss of equal rewards is ln 2 and an untrained reward head is right half the time; the PPO
ratio is exactly 1 at the first minibatch, its approx KL and clip fraction are 0; the KTO
reference point z0 is 0 and each example's loss is lambda_y / 2; the evaluation's KL of a
policy against itself is exactly 0 and its win-rate is 1/2 within sampling error.
"""

_DASHBOARD = (*SHARED, "length", "perplexity", "loss", "grad_norm")


def markdown(methods) -> str:
    """The text of ``docs/metrics.md``, from ``METRICS`` and ``methods`` (the registry's records,
    in lecture order): who logs and who reports what is read from the records."""
    methods = list(methods)
    who = ["| method | logged by | metrics |", "|---|---|---|"]
    for x in methods:
        lecture = f" (lecture {x.lecture[:2]})" if x.lecture[:2].isdigit() else ""
        who.append(f"| `{x.name}` | `{x.trainer}`{lecture} | {_code(names(x.metrics))} |")
    rest = [name for name in METRICS if name not in _DASHBOARD]
    return "\n".join([
        _INTRO, _SHARED_PROSE, table(_DASHBOARD), "", _METHODS_PROSE, table(rest, methods), "",
        "### Which method logs what", "", *who, "", _SANITY])
