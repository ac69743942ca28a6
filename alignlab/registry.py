"""What a method declares about itself, once: the ``Method`` record, and the one run recipe.

Each method module ends with one ``METHOD = Method(...)``; ``alignlab.methods.REGISTRY``
collects them. Everything else reads the record and nothing else:

* the CLI (``run`` choices, ``run METHOD --help``, ``--set`` validation);
* ``alignlab.metrics``' docs page (who logs and who reports each metric, from ``metrics`` and
  ``reports``);
* lecture 09's frontier (``arms``: the curves it draws, ``cost``: labels, samples and optimiser
  steps of a run) and the sweeps;
* the tests (``check`` below is the one list of what a record must satisfy).

A run is one recipe for every method: the CLI builds the settings once (``build_config``:
the profile's defaults, then ``--set``, then ``--seed``, the one seed door), and
``Method.run(profile, seed, config)`` starts from ``prepare`` (the SFT reference, its
tokenizer, the global RNG seeded with ``seed``, the shared evaluator) and ends with ``result``.
Adding a method is one module in ``alignlab/methods/`` and one line in its ``REGISTRY``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

from . import metrics as metrics_mod
from .metrics import SHARED

EVALUATOR_KEYS = (*SHARED, "gold_reward_ci", "win_rate_ci", "length", "perplexity")
"""What ``evaluation.Evaluator`` measures of a policy: the dashboard, the CIs, length, perplexity."""
TRAINED_KEYS = (*EVALUATOR_KEYS, "loss", "grad_norm")
"""What every method that trains a policy on the shared loop logs (``training.train``)."""
REPORTED_KEYS = (*SHARED, "gold_reward_ci", "win_rate_ci")
"""The metrics every ``run --json`` line reports: the last evaluation's dashboard and its 95 % CIs."""
SHARED_KEYS = ("method", "profile", "seed", "seconds", *SHARED)
"""Keys of every ``python -m alignlab run`` JSON line (the README promises them)."""


@dataclass(frozen=True)
class Arm:
    """One curve of lecture 09's frontier: the method with ``fixed`` settings, ``knob`` swept."""

    name: str
    """The arm's name on the command line (``frontier --methods``) and in the plots."""
    label: str
    """Its legend entry."""
    knob: str
    """The setting that makes the method more or less conservative (beta, a KL coefficient, N)."""
    values: tuple
    """At least three values of the knob, the method's default among them where it has one."""
    fixed: tuple = ()
    """(setting, value) pairs every run of the arm gets."""
    needs: str = ""
    """What the method needs besides the SFT model (for the verdicts)."""
    inert: str = ""
    """Why the knob does not move the run's final KL in one direction (empty: it must; a test reads
    the committed frontier)."""
    tune: tuple = dataclasses.field(default=(), hash=False)
    """The configurations the tuning protocol tries (``studies.tuning``), each a dict of settings,
    the default ``{}`` first; every arm tries the same number."""
    method: str = ""
    """The registered method (filled in by ``Method``)."""

    def settings(self, value) -> dict:
        return {**dict(self.fixed), self.knob: value}


@dataclass(frozen=True)
class Cost:
    """What one run spends, from its settings: the budgets a fair comparison holds equal."""

    samples: int
    """Completions sampled for training or selection."""
    labels: int
    """Labels used (preference pairs, thumbs, or true-reward calls)."""
    label_kind: str
    """What a label is."""
    steps: int
    """Optimiser steps of the policy (0: no training)."""


@dataclass(frozen=True)
class Method:
    """One trainable (or sampling) method of the course, declared once."""

    name: str
    """The name on the command line: ``python -m alignlab run NAME``."""
    description: str
    """One line for ``--help``."""
    config: type | None
    """The settings dataclass that ``--set KEY=VALUE`` overrides (None: no settings)."""
    run: Callable[..., dict]
    """``run(profile, seed, config) -> dict`` of the shared metrics plus ``extra_keys``
    (``config``: an instance of ``config`` built by ``build_config``, or None)."""
    trainer: str = ""
    """The function that trains it (and logs ``metrics``), e.g. ``methods.dpo.train_dpo``."""
    metrics: tuple[str, ...] = ()
    """The keys its training history logs (each defined once in ``alignlab.metrics``)."""
    extra_keys: tuple[str, ...] = ()
    """Keys its JSON line adds to ``SHARED_KEYS`` (metrics or echoed settings)."""
    lecture: str = ""
    """The lecture notebook that teaches it."""
    smoke: dict = dataclasses.field(default_factory=dict)
    """Settings that make a run on the ``micro`` profile take seconds (tests, smoke checks)."""
    arms: tuple[Arm, ...] = ()
    """Its curves on lecture 09's frontier (none: not on it)."""
    cost: Callable[..., Cost] | None = None
    """``cost(config, profile) -> Cost`` of one run with these settings (needed by ``arms``)."""

    def __post_init__(self):
        object.__setattr__(self, "arms", tuple(dataclasses.replace(a, method=self.name) for a in self.arms))

    @property
    def reports(self) -> tuple[str, ...]:
        """The keys of its ``run --json`` line beyond the method/profile/seed/seconds header."""
        return tuple(dict.fromkeys((*REPORTED_KEYS, *self.extra_keys)))

    def settings(self, profile=None) -> list[tuple[str, str, object, str]]:
        """(name, type, default for ``profile``, one-line doc) of each setting."""
        if self.config is None:
            return []
        defaults = self.config.for_profile(profile) if profile is not None else self.config()
        docs = field_docs(self.config)
        return [(f.name, getattr(f.type, "__name__", str(f.type)), getattr(defaults, f.name),
                 docs.get(f.name, "")) for f in dataclasses.fields(self.config)]


def field_docs(cls) -> dict[str, str]:
    """The docstring written under each field of dataclass ``cls`` (first line), by name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for prev, node in zip(body, body[1:]):
            if isinstance(prev, ast.AnnAssign) and isinstance(prev.target, ast.Name) and \
                    isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and \
                    isinstance(node.value.value, str):
                docs[prev.target.id] = " ".join(node.value.value.split())
    return docs


def check(method: Method, profile="micro") -> list[str]:
    """Everything a record must satisfy, as a list of problems (empty: complete).

    Its settings are documented and sized by ``for_profile``; its smoke settings are settings;
    every metric it logs or reports is defined in ``alignlab.metrics`` (or echoes a setting);
    each frontier arm sweeps a real setting with at least three values that the settings class
    accepts, and a method with arms has a cost model that returns a ``Cost``.
    """
    from .config import override
    from .models import get_profile

    problems = []
    if not (method.name and method.description and method.lecture and method.trainer):
        problems.append("name, description, lecture and trainer must all be set")
    if method.metrics and metrics_mod.undefined(method.metrics):
        problems.append(f"logs metrics not defined in alignlab.metrics: {metrics_mod.undefined(method.metrics)}")
    fields = {f.name for f in dataclasses.fields(method.config)} if method.config else set()
    odd = [k for k in method.extra_keys if metrics_mod.lookup(k) is None and k not in fields]
    if odd:
        problems.append(f"reports keys that are neither defined metrics nor settings: {odd}")
    if method.config is None:
        if method.smoke or method.arms:
            problems.append("smoke settings or frontier arms without a settings class")
        return problems
    docs = field_docs(method.config)
    undocumented = sorted(fields - {k for k, v in docs.items() if v})
    if undocumented:
        problems.append(f"settings without a one-line doc: {undocumented}")
    prof = get_profile(profile)
    try:
        cfg = method.config.for_profile(prof)
    except Exception as e:  # noqa: BLE001 (reported, not raised)
        return problems + [f"{method.config.__name__}.for_profile({prof.name!r}) fails: {e}"]
    problems += [f"smoke setting {k!r} is not a setting" for k in method.smoke if k not in fields]
    for arm in method.arms:
        if arm.knob not in fields or any(k not in fields for k, _ in arm.fixed):
            problems.append(f"arm {arm.name!r} names a setting {method.config.__name__} lacks")
            continue
        if len(arm.values) < 3:
            problems.append(f"arm {arm.name!r} sweeps fewer than three values")
        try:
            for v in arm.values:
                override(cfg, arm.settings(v))
            for config in arm.tune:
                override(cfg, {**arm.settings(arm.values[0]), **config})
        except ValueError as e:
            problems.append(f"arm {arm.name!r}: {e}")
        if arm.tune and (arm.tune[0] != {} or len({repr(c) for c in arm.tune}) != len(arm.tune)):
            problems.append(f"arm {arm.name!r}: its tuning grid must start with the default {{}} and not repeat")
    if method.arms:
        if method.cost is None:
            problems.append("frontier arms without a cost model (Method.cost)")
        else:
            for arm in method.arms:
                got = method.cost(override(cfg, arm.settings(arm.values[0])), prof)
                if not isinstance(got, Cost) or min(got.samples, got.labels, got.steps) < 0:
                    problems.append(f"cost of arm {arm.name!r} is not a Cost of counts: {got!r}")
    return problems


# ---------------------------------------------------------------------------
# The one run recipe
# ---------------------------------------------------------------------------


def build_config(method: Method, profile, seed: int, sets: dict | None = None):
    """The settings of one run, built once: ``method.config``'s defaults for ``profile``, then
    ``sets`` (``--set KEY=VALUE`` strings, converted and checked), then ``seed``.

    ``--seed`` is the one seed door: a ``seed`` among ``sets`` is an error that says so.
    Returns None for a method without settings (``sets`` must then be empty)."""
    sets = dict(sets or {})
    if "seed" in sets:
        raise ValueError(f"set the seed with --seed {sets['seed']}, not --set seed=: one seed picks the SFT "
                         "model, the data, the batch order and the evaluation of a run")
    if method.config is None:
        if sets:
            raise ValueError(f"run {method.name} takes no --set options (got {sorted(sets)}); "
                             "its sizes come from the profile")
        return None
    config = method.config.for_profile(profile, **sets)
    if any(f.name == "seed" for f in dataclasses.fields(config)):
        config = dataclasses.replace(config, seed=seed)
    return config


@dataclass
class Run:
    """What every method's run starts from (``prepare``)."""

    profile: object
    """The ``models.Profile``."""
    seed: int
    """Picks the SFT model, seeds the global RNG, the data and the evaluation prompts."""
    ref: object
    """The SFT model, the frozen reference ``pi_ref`` (a fresh load: its own copy)."""
    tok: object
    """Its tokenizer."""
    evaluator: object
    """The shared ``evaluation.Evaluator`` on held-out prompts, seeded with ``seed``."""

    @property
    def device(self):
        return next(self.ref.parameters()).device


def prepare(profile, seed: int) -> Run:
    """Load the SFT model, seed everything with ``seed``, build the evaluator.

    The same for every method, in this order, so one ``--seed`` means the same thing everywhere.
    A method that needs other cached models (a reward model) loads them before calling this, so
    that the global RNG is seeded after every load."""
    from .evaluation import Evaluator
    from .models import get_device, get_profile, seed_everything
    from .pipeline import load_sft

    profile = get_profile(profile)
    ref, tok = load_sft(profile, seed, device=get_device(), progress=False)
    seed_everything(seed)
    return Run(profile, seed, ref, tok, Evaluator(ref, tok, seed=seed, profile=profile))


def result(history, **extra) -> dict:
    """A run's JSON payload: the last evaluation (``History.final``), then ``extra``, then every
    evaluation checkpoint as ``evals`` (the points of lecture 09's frontier)."""
    return {**history.final(), **extra, "evals": history.checkpoints()}
