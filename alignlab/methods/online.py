"""Online preference learning: online DPO, BPO and VPO on one loop (lecture 06).

Offline DPO (lecture 04) labels pairs sampled ONCE from the SFT model and trains on them.
Online methods keep sampling from the policy as it trains: two completions per prompt from
the *current* policy, labelled as they come (``collect_pairs``), then DPO steps on them
(lecture 04's ``dpo.dpo_step``, the one step of all these methods).
One loop, ``train_online``, runs all of them; the settings say which:

* ``phases`` (F): how often pairs are collected. The annotation budget ``n_pairs`` is cut
  into F equal parts; at the start of phase f the policy is snapshotted (the *behaviour*
  policy pi_beh), n_pairs / F pairs are sampled from the snapshot and labelled, and the
  phase's ``steps / F`` optimiser steps train on them. F = 1 is offline DPO (the snapshot
  is the SFT model); F = steps collects fresh pairs for every step.
* ``reference``: ``"sft"`` keeps the SFT model as DPO's reference (online DPO);
  ``"behaviour"`` uses the phase's snapshot (BPO, Xu et al. 2024, arXiv 2406.12168:
  ``losses.bpo_loss``). The reference is frozen within a phase and replaced at its end.
* ``alpha`` > 0: VPO (Cen et al. 2024, arXiv 2405.19320: ``losses.vpo_loss``), the DPO loss
  plus sign * alpha * beta * mean log pi/pi_ref of samples of pi_cal = pi_ref. Online
  (sign +1) the samples are fresh SFT completions of the phase's prompts; offline (-1) they
  are the pairs' own completions (which the SFT model wrote).
* ``ensemble`` K > 1: BPO's stabiliser. The paper averages K LoRA copies that share one
  base model; here K full-weight copies start from the same SFT model, train on the same
  labelled pairs in different minibatch orders, and their exact weight average is the
  behaviour policy, the reference and the evaluated policy. (Averaging SFT models of
  different seeds is not used: they were pretrained from different initialisations, so their
  weights do not line up; ``average_models`` of them is measured in lecture 06.)

The annotation budget is the number of labelled pairs, the same whatever F: comparisons
between methods hold ``n_pairs``, ``steps`` and ``batch_size`` equal. KL is always the
shared evaluation's KL to the SFT model, whatever reference a method trains against.

Logged per step (``METHOD.metrics``): DPO's TRL names (``loss``, ``rewards/*``, ``logps/*``),
``grad_norm``, ``phase``, ``labelled_pairs``, ``vpo/regulariser`` (VPO only); at each
evaluation the shared metrics plus ``entropy`` and ``distinct_2`` (exploration).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset

from .. import data, world
from ..config import for_profile
from ..evaluation import Evaluator
from ..losses import VPO_MODES, bpo_loss
from ..models import Profile, seed_everything
from ..registry import EVALUATOR_KEYS, Arm, Cost, Method, prepare, result
from ..sampling import Batch, position_ids, sample, sequence_logprobs
from ..training import (
    History,
    check_trainable_copy,
    epochs,
    make_optimizer,
    train,
    warmup_then_decay,
)
from .dpo import dpo_step, encode_pairs, pair_batch, reference_logps
from .rm import load_reward_model, score_texts

# ---------------------------------------------------------------------------
# 1. Settings
# ---------------------------------------------------------------------------


@dataclass
class OnlineDPOConfig:
    """Settings of an online run (defaults: online DPO on the ``quick`` profile)."""

    beta: float = 0.3
    """Strength of the implicit KL penalty around the reference (SFT or behaviour policy)."""
    lr: float = 1e-3
    """Peak AdamW learning rate (linear warm-up over 10% of the steps, then linear decay)."""
    steps: int = 40
    """Optimiser steps in all (one batch of pairs each)."""
    batch_size: int = 48
    """Preference pairs per step."""
    n_pairs: int = 1920
    """Annotation budget: labelled pairs in all, split equally over the phases."""
    phases: int = 40
    """F, collection phases: 1 = offline (pairs from the SFT model), steps = fresh pairs every step."""
    reference: str = "sft"
    """DPO's reference: 'sft' (online DPO, VPO) or 'behaviour' (BPO: the phase's snapshot)."""
    alpha: float = 0.0
    """VPO's regulariser strength (0 = plain DPO loss)."""
    vpo_mode: str = "online"
    """VPO's sign: 'online' (+, optimism, SFT samples pushed down) or 'offline' (-, pessimism)."""
    ensemble: int = 1
    """K copies trained side by side; their exact weight average is the behaviour policy (BPO)."""
    labeller: str = "annotator"
    """Who labels: 'annotator' (noisy Bradley-Terry over the gold judge) or 'reward_model' (lecture 01's RM)."""
    annotator_temperature: float = 0.1
    """Noise of the Bradley-Terry annotator (0 = perfect)."""
    max_new_tokens: int = 32
    """Longest sampled completion when collecting pairs (words)."""
    max_grad_norm: float = 1.0
    """Gradient clipping (global norm)."""
    eval_every: int = 0
    """Evaluate every this many steps; 0 = four times over the run."""
    seed: int = 0
    """Seeds the prompts, the samples, the labels, the batch order and the evaluation."""

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides):
        """The defaults for ``profile`` (``quick``: 2-core CPU; ``full``: one GPU)."""
        return for_profile(cls, profile, full=dict(steps=80, batch_size=64, n_pairs=5120, **cls._full_phases()),
                           **overrides)

    @classmethod
    def _full_phases(cls) -> dict:
        return {"phases": 80}


@dataclass
class BPOConfig(OnlineDPOConfig):
    """Settings of a BPO run: online DPO with the behaviour policy as the reference."""

    phases: int = 40
    """F, collection phases: the reference is the policy's snapshot at each phase start (40: best of 2, 10, 40)."""
    reference: str = "behaviour"
    """DPO's reference: 'behaviour' (BPO) or 'sft' (online DPO)."""

    @classmethod
    def _full_phases(cls) -> dict:
        return {"phases": 80}


@dataclass
class VPOConfig(OnlineDPOConfig):
    """Settings of a VPO run: online DPO plus the value-incentivised regulariser."""

    alpha: float = 0.03
    """VPO's regulariser strength: the loss adds sign * alpha * beta * mean log pi/pi_ref of SFT samples."""


def _check_config(config: OnlineDPOConfig) -> None:
    who = type(config).__name__
    if config.reference not in ("sft", "behaviour"):
        raise ValueError(f"{who}: reference must be 'sft' or 'behaviour', got {config.reference!r}")
    if config.labeller not in ("annotator", "reward_model"):
        raise ValueError(f"{who}: labeller must be 'annotator' or 'reward_model', got {config.labeller!r}")
    if config.vpo_mode not in VPO_MODES:
        raise ValueError(f"{who}: vpo_mode must be one of {sorted(VPO_MODES)}, got {config.vpo_mode!r}")
    if not 1 <= config.phases <= config.steps or config.steps % config.phases:
        raise ValueError(f"{who}: phases={config.phases} must divide steps={config.steps} "
                         "(each phase gets the same number of optimiser steps)")
    if config.n_pairs % config.phases or config.n_pairs // config.phases < config.batch_size:
        raise ValueError(f"{who}: n_pairs={config.n_pairs} must split into {config.phases} equal phases "
                         f"of at least batch_size={config.batch_size} pairs; raise n_pairs or lower phases")
    if config.ensemble < 1:
        raise ValueError(f"{who}: ensemble must be >= 1, got {config.ensemble}")


# ---------------------------------------------------------------------------
# 2. Collecting pairs online: sample two, label, TRL rows
# ---------------------------------------------------------------------------

Labeller = Callable[[list, list, list], "np.ndarray | torch.Tensor"]
"""A reward function ``(prompts, completions, finished) -> (N,) scores``: higher is preferred."""


def reward_model_labeller(rm, tok) -> Labeller:
    """Lecture 01's reward model as a labeller: scores with ``rm.score_texts``."""
    def label(prompts, completions, finished):
        return score_texts(rm, tok, prompts, completions, finished).numpy()

    return label


def label_with_scores(prompts, completions_a, completions_b, scores_a, scores_b,
                      finished_a=None, finished_b=None) -> Dataset:
    """TRL rows from two scored completions per prompt: the higher score is chosen.

    Ties go to ``a`` (TRL's OnlineDPOTrainer: ``first_half >= second_half``). The gold scores
    are kept beside (``gold_chosen``/``gold_rejected``), and ``label_agrees_with_gold``
    says per pair whether the labeller ranked it as the gold judge would (ties count 1/2).
    """
    sa, sb = np.asarray(scores_a, float), np.asarray(scores_b, float)
    ga = np.asarray(world.gold_rewards(prompts, completions_a, finished_a))
    gb = np.asarray(world.gold_rewards(prompts, completions_b, finished_b))
    a_wins = sa >= sb
    pick = lambda x, y: [u if w else v for w, u, v in zip(a_wins, x, y)]  # noqa: E731
    agree = np.where(ga == gb, 0.5, (ga > gb) == a_wins)
    return Dataset.from_dict({
        "prompt": list(prompts), "chosen": pick(completions_a, completions_b),
        "rejected": pick(completions_b, completions_a),
        "gold_chosen": pick(ga.tolist(), gb.tolist()), "gold_rejected": pick(gb.tolist(), ga.tolist()),
        "score_chosen": pick(sa.tolist(), sb.tolist()), "score_rejected": pick(sb.tolist(), sa.tolist()),
        "label_agrees_with_gold": agree.astype(float).tolist()})


def collect_pairs(policy, tok, prompts, seed: int = 0, labeller: Labeller | None = None,
                  temperature: float = 0.1, max_new_tokens: int = 32) -> Dataset:
    """The online step of every online method: two samples per prompt from ``policy``, labelled.

    ``policy`` is the model that samples (the current policy, or its frozen snapshot);
    samples use ``sampling.sample`` with seeds ``seed`` and ``seed + 1``. ``labeller``:
    None for the course's noisy Bradley-Terry annotator over the gold judge with noise
    ``temperature`` (``data.annotate_pairs``, exactly ``data.sample_pairs``), or a reward
    function (``reward_model_labeller``) whose higher score wins (``label_with_scores``).
    Returns a ``datasets.Dataset`` in TRL's paired format (prompt/chosen/rejected, plus
    gold scores for analysis). A completion may be empty (the policy wrote ``<eos>`` at once):
    it is kept, encoded as ``<eos>`` alone, so the budget stays exact.
    """
    prompts = list(prompts)
    a = sample(policy, tok, prompts, max_new_tokens, seed=seed)
    b = sample(policy, tok, prompts, max_new_tokens, seed=seed + 1)
    if labeller is None:
        return data.annotate_pairs(prompts, a.completions, b.completions, temperature, seed,
                                   a.finished, b.finished)
    return label_with_scores(prompts, a.completions, b.completions,
                             labeller(prompts, a.completions, a.finished),
                             labeller(prompts, b.completions, b.finished), a.finished, b.finished)


# ---------------------------------------------------------------------------
# 3. Snapshots, weight averages, exploration
# ---------------------------------------------------------------------------


def snapshot(model):
    """A frozen copy of ``model``: eval mode, no gradient (the behaviour policy of a phase)."""
    frozen = copy.deepcopy(model).eval()
    frozen.requires_grad_(False)
    return frozen


@torch.no_grad()
def average_models(models, into=None):
    """The exact average of the weights of ``models`` (same architecture), written into ``into``
    (default: a new copy of the first). Buffers that are not floating point are copied."""
    into = into if into is not None else copy.deepcopy(models[0])
    states = [m.state_dict() for m in models]
    for name, value in into.state_dict().items():
        if value.is_floating_point():
            value.copy_(torch.stack([s[name].to(value.dtype) for s in states]).mean(0))
    return into


@torch.no_grad()
def next_token_entropy(model, batch: Batch) -> float:
    """Mean entropy (nats) of the model's next-word distribution over the completion positions
    of ``batch`` (the model's own samples): how spread out its choices are."""
    was_training = model.training
    model.eval()
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   position_ids=position_ids(batch.attention_mask)).logits[:, :-1].float()
    logp = torch.log_softmax(logits, -1)
    entropy = -(logp.exp() * logp).sum(-1)
    mask = batch.completion_mask[:, 1:].to(entropy.dtype)
    model.train(was_training)
    return float((entropy * mask).sum() / mask.sum().clamp(min=1))


def distinct_n(completions, n: int = 2) -> float:
    """Distinct-n: unique n-grams / all n-grams over the completions (1 = no n-gram repeats)."""
    grams = [tuple(w[i:i + n]) for c in completions for w in [c.split()] for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


class ExplorationEvaluator:
    """The shared ``Evaluator``'s metrics plus ``entropy`` and ``distinct_2`` of the same samples."""

    def __init__(self, evaluator: Evaluator):
        self.evaluator = evaluator

    def __call__(self, policy) -> dict:
        ev = self.evaluator
        batch = ev.sample(policy)  # the same draw as ev(policy): fixed seed
        return {**ev.judge(batch), "kl": ev.kl(policy, batch), "entropy": next_token_entropy(policy, batch),
                "distinct_2": distinct_n(batch.completions, 2)}


# ---------------------------------------------------------------------------
# 4. The loop
# ---------------------------------------------------------------------------


def phase_seed(seed: int, phase: int) -> int:
    """Sampling seed of phase ``phase`` (0-based): phase 0 uses ``seed`` itself, so that F = 1
    collects exactly ``dpo.make_pairs``'s pairs; each phase draws two samples per prompt."""
    return seed + 2 * phase


@dataclass
class Phase:
    """What one collection phase trains on, made once at its start (``collect_phase``)."""

    index: int
    """The phase, 0-based."""
    behaviour: torch.nn.Module
    """The frozen snapshot of the policy that sampled the pairs (BPO's reference)."""
    pairs: Dataset
    """The phase's labelled pairs, in TRL's paired format (prompt/chosen/rejected)."""
    encoded: Batch
    """``encode_pairs`` of all of them; ``dpo.pair_batch`` takes a step's rows."""
    ref_chosen: torch.Tensor
    """(N,) summed reference log-probs of the chosen completions (SFT model or behaviour policy)."""
    ref_rejected: torch.Tensor
    """(N,) the same for the rejected ones."""
    batches: list
    """Per ensemble member, its endless minibatch order over the N pairs (``training.epochs``)."""
    calibration: Batch | None = None
    """Online VPO only: one fresh SFT sample per prompt, the samples of pi_cal = pi_ref."""
    ref_calibration: torch.Tensor | None = None
    """(N,) their summed SFT log-probs."""


def collect_phase(f: int, behaviour, ref, tok, prompts, config: OnlineDPOConfig,
                  labeller: Labeller | None = None) -> Phase:
    """Phase ``f`` on ``prompts``: two samples per prompt from ``behaviour``, labelled (``collect_pairs``),
    encoded and scored by the reference once; online VPO also samples pi_cal = pi_ref once per prompt."""
    seed = phase_seed(config.seed, f)
    pairs = collect_pairs(behaviour, tok, prompts, seed, labeller, config.annotator_temperature,
                          config.max_new_tokens)
    encoded = encode_pairs(tok, pairs["prompt"], pairs["chosen"], pairs["rejected"],
                           next(behaviour.parameters()).device)
    reference = behaviour if config.reference == "behaviour" else ref
    ref_chosen, ref_rejected = reference_logps(reference, tok, pairs, encoded=encoded)
    cal = cal_ref = None
    if config.alpha > 0 and config.vpo_mode == "online":  # pi_cal = pi_ref: one fresh SFT sample per prompt
        cal = sample(ref, tok, prompts, config.max_new_tokens, seed=seed + 10_007)
        with torch.no_grad():
            cal_ref = torch.cat([sequence_logprobs(ref, cal.take(range(i, min(len(cal), i + 128))).trim())
                                 for i in range(0, len(cal), 128)])
    batches = [epochs(len(prompts), config.batch_size, config.seed + 1000 * f + k) for k in range(config.ensemble)]
    return Phase(f, behaviour, pairs, encoded, ref_chosen, ref_rejected, batches, cal, cal_ref)


def member_step(model, opt, sched, batches, phase: Phase, config: OnlineDPOConfig, loss_fn=None) -> dict:
    """One ``dpo.dpo_step`` of an ensemble member on its next minibatch (``batches``) of the phase's
    pairs: with ``losses.bpo_loss`` when the reference is the behaviour policy, and with VPO's
    calibration samples when ``config.alpha`` > 0 (``losses.vpo_loss``)."""
    idx = next(batches)
    batch = pair_batch(phase.encoded, idx, len(phase.pairs))
    calibration = None
    if config.alpha > 0:  # VPO: fresh SFT samples online; offline, the pairs' own (SFT-written) completions
        calibration = ("pairs" if phase.calibration is None
                       else (phase.calibration.take(idx).trim(), phase.ref_calibration[idx]))
    elif config.reference == "behaviour":
        loss_fn = loss_fn or bpo_loss
    return dpo_step(model, batch, phase.ref_chosen[idx], phase.ref_rejected[idx], opt, config, sched, loss_fn,
                    calibration=calibration)


def train_online(policy, ref, tok, config: OnlineDPOConfig | None = None, evaluator=None,
                 labeller: Labeller | None = None, progress: bool = True, name: str | None = None,
                 loss_fn=None, on_phase: Callable | None = None) -> History:
    """Train ``policy`` in place with online DPO / BPO / VPO (``config`` says which); its History.

    ``policy``: a trainable copy of the SFT model ``ref`` (frozen, eval mode). ``evaluator``:
    the shared ``Evaluator`` (wrapped in ``ExplorationEvaluator`` to add entropy and
    distinct-2), or any ``model -> dict``. ``labeller``: None for the annotator, or a reward
    function (needed when ``config.labeller == 'reward_model'``).
    ``loss_fn``: replaces the loss; called as ``loss_fn(pc, pr, rc, rr, beta)`` (DPO's
    signature) or, for VPO, ``loss_fn(pc, pr, rc, rr, cal_pc, cal_rc, beta, alpha, mode)``;
    it returns the loss, alone or first in a tuple (the logged rewards and VPO's regulariser
    are computed by ``dpo.dpo_step`` from their definitions, so a student's loss is logged the same way).
    ``on_phase(phase, behaviour, pairs)`` is called at each phase start (tests, notebooks).

    Each step: at a phase start, snapshot the policy and collect the phase's pairs
    (``collect_phase``); then each ensemble member takes one ``member_step`` on them.
    """
    config = config or OnlineDPOConfig()
    _check_config(config)
    if config.labeller == "reward_model" and labeller is None:
        raise ValueError("train_online: labeller='reward_model' needs the `labeller` argument "
                         "(online.reward_model_labeller(rm, tok))")
    check_trainable_copy(policy, ref, "train_online")
    K, F = config.ensemble, config.phases
    per_phase, steps_per_phase = config.n_pairs // F, config.steps // F
    all_prompts = world.make_prompts(config.n_pairs, "train", config.seed)
    seed_everything(config.seed)
    members = [policy] + [copy.deepcopy(policy) for _ in range(K - 1)]
    opts = [make_optimizer(m, config.lr) for m in members]
    scheds = [warmup_then_decay(o, config.steps // 10, config.steps) for o in opts]
    average = copy.deepcopy(policy) if K > 1 else policy  # the evaluated policy: the members' weight average
    every = config.eval_every or max(1, config.steps // 4)
    phase: Phase | None = None

    def step_fn(step: int) -> dict:
        nonlocal phase
        f = (step - 1) // steps_per_phase
        if phase is None or phase.index != f:  # a new phase: the behaviour policy is the policy's snapshot
            behaviour = snapshot(average_models(members, into=average) if K > 1 else policy)
            phase = collect_phase(f, behaviour, ref, tok, all_prompts[f * per_phase:(f + 1) * per_phase], config,
                                  labeller)
            if on_phase is not None:
                on_phase(f, behaviour, phase.pairs)
        rows = [member_step(model, opt, sched, batches, phase, config, loss_fn)
                for model, opt, sched, batches in zip(members, opts, scheds, phase.batches)]
        out = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
        if K > 1 and (step % every == 0 or step == config.steps):
            average_models(members, into=average)
        return {**out, "phase": f + 1, "labelled_pairs": (f + 1) * per_phase}

    history = History(name or _default_name(config))
    history = train(average, step_fn, config.steps, evaluator, every, history, desc=history.name,
                    progress=progress)
    if K > 1:
        policy.load_state_dict(average.state_dict())
    return history


def _default_name(config: OnlineDPOConfig) -> str:
    if config.alpha > 0:
        return f"VPO ({config.vpo_mode}) α={config.alpha:g}"
    kind = "BPO" if config.reference == "behaviour" else "online DPO"
    ens = f", K={config.ensemble}" if config.ensemble > 1 else ""
    return f"{kind} F={config.phases}{ens}"


# ---------------------------------------------------------------------------
# 5. The CLI and the registry
# ---------------------------------------------------------------------------


def run(profile: Profile, seed: int, config: OnlineDPOConfig) -> dict:
    """CLI entry (``run online_dpo``, ``run bpo``, ``run vpo``: the class of ``config`` picks the
    method): pairs sampled from the policy as it trains, labelled by the annotator (or the RM)."""
    rm = load_reward_model(profile, seed, progress=False)[0] if config.labeller == "reward_model" else None
    r = prepare(profile, seed)
    labeller = reward_model_labeller(rm, r.tok) if rm is not None else None
    history = train_online(copy.deepcopy(r.ref), r.ref, r.tok, config, ExplorationEvaluator(r.evaluator),
                           labeller, progress=False)
    return result(history, beta=config.beta, phases=config.phases, alpha=config.alpha, n_pairs=config.n_pairs,
                  labeller=config.labeller, ensemble=config.ensemble,
                  entropy=round(history.last("entropy"), 4), distinct_2=round(history.last("distinct_2"), 4))


def cost(config: OnlineDPOConfig, profile) -> Cost:
    """Two policy samples per labelled pair, collected over the run's phases; each of the
    ``ensemble`` members takes one optimiser step per step."""
    return Cost(2 * config.n_pairs, config.n_pairs, "pairs labelled online", config.steps * config.ensemble)


_LOGS = (*EVALUATOR_KEYS[:-1], "loss", "grad_norm", "rewards/chosen",
         "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected",
         "phase", "labelled_pairs", "entropy", "distinct_2")
_EXTRA = ("beta", "phases", "alpha", "n_pairs", "labeller", "ensemble", "entropy",
          "distinct_2")
_SMOKE = dict(steps=4, n_pairs=64, batch_size=16)

METHOD = Method(
    name="online_dpo", description="online DPO: fresh policy pairs labelled every step (adds phases)",
    config=OnlineDPOConfig, run=run, metrics=_LOGS, extra_keys=_EXTRA, smoke={**_SMOKE, "phases": 4},
    arms=(Arm("online_dpo", "online DPO", "beta", (0.1, 0.3, 1.0),
              needs="pairs labelled online, as the policy trains",
              tune=({}, {"lr": 3e-4}, {"lr": 1e-4}, {"lr": 3e-3})),),
    trainer="methods.online.train_online",
    lecture="06_online_preferences", cost=cost)
BPO_METHOD = Method(
    name="bpo", description="BPO: online DPO with the behaviour policy as reference (adds phases, ensemble)",
    config=BPOConfig, run=run, metrics=_LOGS, extra_keys=_EXTRA, smoke={**_SMOKE, "phases": 2, "ensemble": 2},
    arms=(Arm("bpo", "BPO", "beta", (0.1, 0.3, 1.0), needs="pairs labelled online, as the policy trains",
              inert="with F = T phases (the default) the reference is reset to the policy before every step, "
                    "so the loss is ln 2 at every step and gradient clipping plus Adam cancel beta",
              tune=({}, {"phases": 2}, {"phases": 10}, {"lr": 3e-4})),),
    trainer="methods.online.train_online",
    lecture="06_online_preferences", cost=cost)
VPO_METHOD = Method(
    name="vpo", description="VPO: online DPO + alpha*beta*E_ref[log pi/pi_ref] (optimism; adds alpha)",
    config=VPOConfig, run=run, metrics=(*_LOGS, "vpo/regulariser"), extra_keys=_EXTRA, smoke={**_SMOKE, "phases": 4},
    arms=(Arm("vpo", "VPO", "beta", (0.1, 0.3, 1.0), needs="pairs labelled online, as the policy trains",
              tune=({}, {"alpha": 0.01}, {"alpha": 0.1}, {"lr": 3e-4})),),
    trainer="methods.online.train_online",
    lecture="06_online_preferences", cost=cost)

