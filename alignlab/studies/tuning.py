"""The tuning protocol: every setting a comparison depends on is chosen on seeds that are never reported.

A comparison is fair only if every method gets the same tuning effort, on data it is not
judged on. So:

* each frontier arm declares ``tune`` (``registry.Arm``): the configurations tried, each a dict
  of settings (learning rate, steps, the SFT weight, BPO's phases, VPO's alpha, ...), its first
  the method's default; every arm tries the same number (``BUDGET``), and the arm's knob is
  held at its middle value while tuning;
* ``python -m alignlab tune`` runs arm x configuration x tuning seed as one resumable sweep
  (``sweep.sweep``: one result file per run, one torch thread each, Ctrl-C safe) on the
  tuning SFT seeds ``TUNING_SEEDS``, which no lecture, table or verdict reports;
* ``score`` is one criterion for every arm: the most gold reward within ``KL_BUDGET`` nats along
  the run's evaluation checkpoints (lecture 09's largest budget), and ``choose`` picks, per arm,
  the configuration with the best mean score over the tuning seeds among those whose final valid
  rate is at least ``MIN_VALID`` on every tuning seed (the default when none is); a tie keeps the
  earlier configuration, so the default wins ties.

    python -m alignlab tune --jobs 2 --out results/tuning              # every arm, TUNING_SEEDS
    python -m alignlab tune --arms dpo,kto --seeds 100 --out runs/tune  # a part of it
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from . import frontier, sweep

TUNING_SEEDS = (100, 101)
"""SFT seeds used only for tuning: never reported (the lectures and tables use seeds 0-4)."""
BUDGET = 4
"""Configurations tried per arm: the same for every arm."""
KL_BUDGET = 4.0
"""Nats: a run is scored by the most gold reward it reaches within this KL (frontier.BUDGETS[-1])."""
MIN_VALID = 0.9
"""A configuration whose final valid rate falls below this on any tuning seed is not chosen."""


def middle(values: tuple):
    """The knob value an arm is tuned at: the middle of its values."""
    return values[len(values) // 2]


def specs(arms, seeds=TUNING_SEEDS, profile: str = "quick", threads: int = 1) -> list[sweep.RunSpec]:
    """Every run of the protocol: arm x configuration x seed, the knob at its middle value."""
    return [sweep.RunSpec.make(a.method, s, {**dict(a.fixed), a.knob: middle(a.values), **config},
                               threads, profile)
            for a in arms for config in a.tune for s in seeds]


def score(result: dict) -> float | None:
    """The most gold reward within ``KL_BUDGET`` along a run's checkpoints (None: none within it)."""
    rows = [{"kl": e["kl"] if "kl_estimate" not in e else e["kl_estimate"], "gold_reward": e["gold_reward"]}
            for e in result.get("evals") or [result]]
    return frontier.best_within(rows, KL_BUDGET)


def table(records: list[dict], arms) -> list[dict]:
    """One row per arm and configuration: its score on each tuning seed, their mean, the worst final
    valid rate, whether it is eligible, and whether it was chosen."""
    done = {(r["spec"]["method"], tuple(sorted((k, str(v)) for k, v in r["spec"]["settings"].items())),
             r["spec"]["seed"]): r for r in records if r.get("status") == "ok"}
    rows = []
    for a in arms:
        mine = []
        for i, config in enumerate(a.tune):
            settings = {**dict(a.fixed), a.knob: middle(a.values), **config}
            key = tuple(sorted((k, str(v)) for k, v in settings.items()))
            runs = {s: done[(a.method, key, s)]["result"] for s in sorted({k[2] for k in done})
                    if (a.method, key, s) in done}
            scores = {s: score(res) for s, res in runs.items()}
            vals = [v for v in scores.values() if v is not None]
            valid = min((res["valid_rate"] for res in runs.values()), default=None)
            mine.append({"arm": a.name, "label": a.label, "index": i, "config": config, "scores": scores,
                         "mean": statistics.fmean(vals) if vals else None, "min_valid": valid,
                         "seeds": len(runs), "eligible": bool(vals) and valid is not None and valid >= MIN_VALID,
                         "chosen": False})
        best = max((r for r in mine if r["eligible"]), key=lambda r: (r["mean"], -r["index"]), default=None)
        if mine:
            (best or mine[0])["chosen"] = True
        rows += mine
    return rows


def choose(records: list[dict], arms) -> dict[str, dict]:
    """Per arm name: the chosen configuration (the default, ``tune[0]``, when nothing is eligible)."""
    return {r["arm"]: r["config"] for r in table(records, arms) if r["chosen"]}


def markdown(rows: list[dict], seeds) -> str:
    """The tuning table: every configuration tried, its score per tuning seed, the choice."""
    head = ("| arm | configuration | " + " | ".join(f"seed {s}" for s in seeds)
            + f" | mean | min valid | chosen |\n|---|---|{'---|' * len(seeds)}---|---|---|")
    out = [head]
    for r in rows:
        cfg = ", ".join(f"{k}={v}" for k, v in r["config"].items()) or "the default"
        cells = [f"{r['scores'][s]:.3f}" if r["scores"].get(s) is not None else "–" for s in seeds]
        mean = f"{r['mean']:.3f}" if r["mean"] is not None else "–"
        valid = f"{r['min_valid']:.3f}" if r["min_valid"] is not None else "–"
        out.append(f"| {r['label']} | {cfg} | " + " | ".join(cells)
                   + f" | {mean} | {valid} | {'**yes**' if r['chosen'] else ''} |")
    return "\n".join(out)


def cmd_tune(args) -> int:
    chosen = [a for a in frontier.arms(args.arms) if a.tune]
    seeds = sweep.parse_ints(args.seeds)
    todo = specs(chosen, seeds, args.profile)
    t0 = time.time()
    records = sweep.sweep(todo, Path(args.out), jobs=args.jobs, retry_failed=args.retry_failed,
                          timeout=args.timeout)
    print(markdown(table(records, chosen), seeds))
    failed = [r for r in records if r.get("status") != "ok"]
    for r in failed:
        print(f"failed: {r['command']}: {r.get('error')}", file=sys.stderr)
    print(f"{len(records)} runs ({len(failed)} failed) in {args.out}; this call took {time.time() - t0:.0f} s")
    return 1 if failed else 0


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("tune", help="the tuning protocol: each arm's configurations on tuning seeds (a sweep)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", default="", help="arms to tune, comma-separated (default: every arm with a grid)")
    p.add_argument("--seeds", default=",".join(map(str, TUNING_SEEDS)),
                   help=f"tuning SFT seeds (default {','.join(map(str, TUNING_SEEDS))}; never reported)")
    p.add_argument("--profile", default="quick")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes, one torch thread each")
    p.add_argument("--out", default="runs/tuning", help="folder of per-run results (resumable)")
    p.add_argument("--retry-failed", action="store_true", help="run again the runs recorded as failed")
    p.add_argument("--timeout", type=float, default=None, help="seconds after which a run is recorded as failed")
    p.set_defaults(func=cmd_tune)
