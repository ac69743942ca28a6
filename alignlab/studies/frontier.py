"""Every method on one reward-KL frontier, over seeds: the sweep behind lecture 09.

Rafailov et al. (2023, fig. 2) compare methods by plotting, for every checkpoint of every run,
the expected true reward against KL(pi || pi_ref): a method is better where its points reach
higher reward for the same KL. This module runs that comparison in the course's world, where
the true reward is known (the gold judge) and the KL is the shared evaluation's k1 estimate to
the SFT model on held-out prompts, the same for every method:

* ``ARMS``: each curve of the plot, as its method declares it (``Method.arms``): a registered
  method with fixed settings (PPO against the learned RM and PPO against the gold judge,
  "PPO-GT", are two arms of ``run ppo``) and the
  one setting that makes it more or less conservative (beta, the KL coefficient, N), swept
  over ``values`` (at least three each, the method's default among them where it has one);
* ``specs``: the grid as ``sweep.RunSpec`` (one ``python -m alignlab run`` each, one torch
  thread), run by ``sweep.sweep``: one result file per run, resumable, parallel with ``--jobs``,
  failures recorded and skipped;
* ``points``: every evaluation checkpoint of every finished run (``run --json``'s ``evals``),
  one row each, with the arm, setting and seed; best-of-N's points use ``kl_estimate`` (it
  sees ties) and keep the analytic bound as ``kl_bound``;
* ``envelope`` / ``best_within``: an arm's upper envelope (the most gold reward reached within
  each KL budget) and its value at fixed budgets, per seed, with mean and range over seeds;
* ``costs``: per arm, the run's wall time, and what it spends (``Method.cost`` of its settings:
  completions sampled, labels used and of what kind, optimiser steps).

    python -m alignlab frontier --jobs 2 --out results/frontier        # the committed grid
    python -m alignlab frontier --methods dpo,ppo_gt --seeds 0 --grid dpo.beta=0.1,1
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from ..cache import write_json_atomic
from ..config import override
from ..methods import REGISTRY
from ..models import get_profile
from ..registry import Arm
from . import sweep


def all_arms(registry: dict | None = None) -> tuple[Arm, ...]:
    """Every curve of the plot: the ``arms`` each registered method declares, in registry order."""
    return tuple(a for m in (REGISTRY if registry is None else registry).values() for a in m.arms)


ARMS: tuple[Arm, ...] = all_arms()
ARM = {a.name: a for a in ARMS}

BUDGETS = (1.0, 2.0, 4.0)
"""KL budgets (nats) of the table: the most gold reward each arm reaches within them."""


def arms(names: str = "", registry: dict | None = None) -> list[Arm]:
    """The arms named in ``names`` (comma-separated; empty: all), or a ValueError naming the unknown."""
    by_name = {a.name: a for a in all_arms(registry)}
    if not names:
        return list(by_name.values())
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ValueError(f"unknown frontier method(s) {unknown}; choose from {', '.join(by_name)}")
    return [by_name[n] for n in wanted]


def parse_grid(items: list[str], chosen: list[Arm]) -> dict[str, tuple]:
    """``["dpo.beta=0.1,0.3"]`` -> {"dpo": (0.1, 0.3)}: new values of an arm's knob.

    The knob must be the arm's own; the values are checked by the method's settings class
    (a wrong type is an error here, before anything runs)."""
    out = {}
    names = {a.name for a in chosen}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"--grid expects ARM.SETTING=V1,V2,..., e.g. dpo.beta=0.1,0.3; got {item!r}")
        key, vals = item.split("=", 1)
        name, knob = key.split(".", 1)
        if name not in ARM:
            raise ValueError(f"--grid {item!r}: unknown arm {name!r}; choose from {', '.join(ARM)}")
        if name not in names:
            raise ValueError(f"--grid {item!r}: arm {name!r} is not among --methods")
        arm = ARM[name]
        if knob != arm.knob:
            raise ValueError(f"--grid {item!r}: the {name} arm sweeps {arm.knob!r}, not {knob!r}")
        values = tuple(v.strip() for v in vals.split(",") if v.strip())
        if not values:
            raise ValueError(f"--grid {item!r}: no values")
        base = REGISTRY[arm.method].config.for_profile(get_profile("quick"))
        out[name] = tuple(getattr(override(base, {knob: v}), knob) for v in values)
    return out


def specs(chosen: list[Arm], seeds, profile: str = "quick", grid: dict | None = None,
          threads: int = 1, extra: dict | None = None) -> list[sweep.RunSpec]:
    """The runs of the grid: every arm x knob value x seed (one torch thread each by default);
    ``extra`` settings go to every run (``--set``, e.g. fewer steps for a smoke test)."""
    grid = grid or {}
    return [sweep.RunSpec.make(a.method, s, {**(extra or {}), **a.settings(v)}, threads, profile)
            for a in chosen for v in grid.get(a.name, a.values) for s in seeds]


def arm_of(spec_dict: dict, registry: dict | None = None) -> Arm | None:
    """The arm a record's spec belongs to (by method and fixed settings), or None."""
    settings = spec_dict.get("settings", {})
    for a in all_arms(registry):
        if a.method == spec_dict["method"] and all(str(settings.get(k)) == str(v) for k, v in a.fixed) \
                and a.knob in settings:
            return a
    return None


# ---------------------------------------------------------------------------
# Reading the results
# ---------------------------------------------------------------------------


def points(records: list[dict], registry: dict | None = None) -> list[dict]:
    """One row per evaluation checkpoint of every finished run of an arm.

    Keys: arm, label, value (the knob's), seed, step, gold_reward, kl, win_rate, valid_rate,
    the CI half-widths. A checkpoint that reports a tie-aware ``kl_estimate`` (best-of-N) is placed
    by it, its ``kl`` kept as ``kl_bound`` (the analytic KL). A run without ``evals`` (an older
    record) gives its final metrics as its one point."""
    rows = []
    for rec in records:
        if rec.get("status") != "ok":
            continue
        arm = arm_of(rec["spec"], registry)
        if arm is None:
            continue
        result = rec["result"]
        evals = result.get("evals") or [{"step": 0, **result}]
        for ev in evals:
            row = {"arm": arm.name, "label": arm.label, "value": rec["spec"]["settings"][arm.knob],
                   "seed": rec["spec"]["seed"], "step": ev["step"]}
            for k in ("gold_reward", "kl", "win_rate", "valid_rate", "gold_reward_ci", "win_rate_ci"):
                if k in ev:
                    row[k] = float(ev[k])
            if "kl_estimate" in ev:
                row["kl_bound"], row["kl"] = row["kl"], float(ev["kl_estimate"])
            rows.append(row)
    return rows


def knob_direction(records: list[dict], arm: Arm) -> str | None:
    """"decreasing" or "increasing" when, on every seed, the arm's final KL moves one way as its knob
    grows (the same way on all seeds), else None. Best-of-N's final KL is its tie-aware estimate."""
    finals: dict[int, dict[float, float]] = {}
    for r in records:
        if r.get("status") == "ok" and arm_of(r["spec"]) is arm:
            res = r["result"]
            finals.setdefault(r["spec"]["seed"], {})[float(r["spec"]["settings"][arm.knob])] = \
                float(res.get("kl_estimate", res["kl"]))
    ways = set()
    for by_value in finals.values():
        kls = [by_value[v] for v in sorted(by_value)]
        steps = [b - a for a, b in zip(kls, kls[1:])]
        ways.add("increasing" if steps and all(s >= 0 for s in steps) else
                 "decreasing" if steps and all(s <= 0 for s in steps) else None)
    return ways.pop() if len(ways) == 1 else None


def envelope(kl, y) -> tuple[np.ndarray, np.ndarray]:
    """The upper envelope of points (kl, y): the staircase of the most y reached within each KL.

    Returns the points where the running maximum (points sorted by KL) rises: for any budget
    B, the envelope's value at B is the last of them with KL <= B."""
    kl, y = np.asarray(kl, float), np.asarray(y, float)
    if kl.shape != y.shape:
        raise ValueError(f"envelope: kl and y differ in shape, {kl.shape} vs {y.shape}")
    order = np.lexsort((-y, kl))
    xs, ys, best = [], [], -np.inf
    for i in order:
        if y[i] > best:
            best = y[i]
            xs.append(kl[i])
            ys.append(y[i])
    return np.asarray(xs), np.asarray(ys)


def best_within(rows: list[dict], budget: float, metric: str = "gold_reward") -> float | None:
    """The most ``metric`` among ``rows`` with KL <= ``budget`` (None: no such row)."""
    got = [r[metric] for r in rows if r["kl"] <= budget and metric in r]
    return max(got) if got else None


def best_within_mean(pts: list[dict], arm: str, budget: float, metric: str = "gold_reward") -> float:
    """Mean over seeds of an arm's best ``metric`` within ``budget`` (``budget_table``'s mean)."""
    mine = [p for p in pts if p["arm"] == arm]
    vals = [best_within([p for p in mine if p["seed"] == s], budget, metric) for s in sorted({p["seed"] for p in mine})]
    vals = [v for v in vals if v is not None]
    return statistics.fmean(vals) if vals else float("nan")


def budget_table(pts: list[dict], budgets=BUDGETS, metric: str = "gold_reward") -> list[dict]:
    """Per arm and budget: the arm's best ``metric`` within the budget on each seed (its
    envelope over all its settings, one seed at a time), then mean, std, min and max over seeds,
    and the largest KL the arm reached on any seed (``reach``)."""
    out = []
    for a in ARMS:
        mine = [p for p in pts if p["arm"] == a.name]
        if not mine:
            continue
        seeds = sorted({p["seed"] for p in mine})
        for b in budgets:
            per_seed = {s: best_within([p for p in mine if p["seed"] == s], b, metric) for s in seeds}
            vals = [v for v in per_seed.values() if v is not None]
            out.append({"arm": a.name, "label": a.label, "budget": b, "metric": metric, "per_seed": per_seed,
                        "mean": statistics.fmean(vals) if vals else None,
                        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                        "min": min(vals) if vals else None, "max": max(vals) if vals else None,
                        "reach": max(p["kl"] for p in mine), "n_seeds": len(vals)})
    return out


def costs(records: list[dict], profile: str = "quick", registry: dict | None = None) -> list[dict]:
    """Per arm and knob value: median wall seconds of a run (over seeds), and what one run spends
    (``Method.cost`` of its settings): completions sampled, labels used and their kind, optimiser
    steps."""
    registry = REGISTRY if registry is None else registry
    prof = get_profile(profile)
    groups: dict[tuple, list[dict]] = {}
    for rec in records:
        arm = arm_of(rec["spec"], registry)
        if arm is not None and rec.get("status") == "ok":
            groups.setdefault((arm, rec["spec"]["settings"][arm.knob]), []).append(rec)
    out = []
    for (arm, value), recs in groups.items():
        method = registry[arm.method]
        cost = method.cost(override(method.config.for_profile(prof), recs[0]["spec"]["settings"]), prof)
        out.append({"arm": arm.name, "label": arm.label, "value": value, "runs": len(recs),
                    "seconds": statistics.median(r["seconds"] for r in recs),
                    "samples": cost.samples, "labels": cost.labels, "label_kind": cost.label_kind,
                    "steps": cost.steps})
    order = {a.name: i for i, a in enumerate(all_arms(registry))}
    return sorted(out, key=lambda r: (order[r["arm"]], float(r["value"])))


def load(out: str | Path = "results/frontier") -> list[dict]:
    """The records of a frontier sweep folder (see ``sweep.load_records``)."""
    return sweep.load_records(out)


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------


def environment() -> dict:
    """Where a sweep ran: the versions and the machine, for the manifest."""
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "cuda": torch.cuda.is_available()}


def summary(pts: list[dict], budgets=BUDGETS) -> str:
    """The budget table as text: arm, then mean [min, max] of gold reward within each budget."""
    table = budget_table(pts, budgets)
    lines = [f"{'arm':<16}" + "".join(f"{'gold @ KL<=' + format(b, 'g'):>22}" for b in budgets) + f"{'max KL':>8}"]
    for a in ARMS:
        rows = [r for r in table if r["arm"] == a.name]
        if not rows:
            continue
        cells = "".join(f"{r['mean']:>8.3f} [{r['min']:.2f}, {r['max']:.2f}]" if r["mean"] is not None
                        else f"{'-':>22}" for r in rows)
        lines.append(f"{a.label:<16}{cells}{rows[0]['reach']:>8.2f}")
    return "\n".join(lines)


def cmd_frontier(args) -> int:
    chosen = arms(args.methods)
    seeds = sweep.parse_ints(args.seeds)
    grid = parse_grid(args.grid, chosen)
    extra = {}
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = (s.strip() for s in item.split("=", 1))
        for a in chosen:  # a name every chosen method has, with a value its type accepts
            override(REGISTRY[a.method].config.for_profile(get_profile(args.profile)), {k: v})
        extra[k] = v
    todo = specs(chosen, seeds, args.profile, grid, extra=extra)
    out = Path(args.out)
    t0 = time.time()
    records = sweep.sweep(todo, out, jobs=args.jobs, retry_failed=args.retry_failed, timeout=args.timeout)
    wall = round(time.time() - t0, 1)
    failed = [r for r in records if r.get("status") != "ok"]
    print(summary(points(records)))
    for r in failed:
        print(f"failed: {r['command']}: {r.get('error')}", file=sys.stderr)
    manifest_path = out / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        manifest = {"calls": []}
    command = (f"python -m alignlab frontier --seeds {args.seeds} --profile {args.profile} --jobs {args.jobs} "
               f"--out {args.out}" + (f" --methods {args.methods}" if args.methods else "")
               + "".join(f" --grid {g}" for g in args.grid) + "".join(f" --set {s}" for s in args.set))
    manifest["calls"].append({"command": command, "jobs": args.jobs,
                              "runs": len(records), "failed": len(failed), "wall_seconds": wall,
                              "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "environment": environment()})
    write_json_atomic(manifest_path, manifest)
    print(f"{len(records)} runs ({len(failed)} failed) in {out}; this call took {wall:.0f} s")
    return 1 if failed else 0


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("frontier", help="every method over its conservativeness settings and seeds: "
                       "the reward-KL frontier of lecture 09 (a resumable sweep)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="", help=f"arms to run, comma-separated (default all: {','.join(ARM)})")
    p.add_argument("--seeds", default="0-2", help="SFT seeds, e.g. 0-2 or 0,3 (default 0-2)")
    p.add_argument("--grid", action="append", default=[], metavar="ARM.SETTING=V1,V2",
                   help="replace an arm's values, e.g. dpo.beta=0.1,0.3 (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting for every run (every chosen method must have it), e.g. steps=4")
    p.add_argument("--profile", default="quick")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes, one torch thread each")
    p.add_argument("--out", default="runs/frontier", help="folder of per-run results (resumable)")
    p.add_argument("--retry-failed", action="store_true", help="run again the runs recorded as failed")
    p.add_argument("--timeout", type=float, default=None, help="seconds after which a run is recorded as failed")
    p.set_defaults(func=cmd_frontier)
