"""Verdicts with their uncertainty: a claim that compares two arms, as a paired difference over seeds.

A claim "A reaches more gold reward than B within KL <= budget" is tested seed by seed: on each
SFT seed both arms start from the same SFT model, so the difference of their envelopes at the
budget (``frontier.best_within``) is one paired observation. Over n seeds the verdict is the mean
difference with its Student-t interval at 95 %:

* **holds** when the whole interval is above 0;
* **fails** when the whole interval is below 0 (the opposite holds);
* **inconclusive** otherwise: the seeds do not decide it.

``CLAIMS`` lists the claims computed from the committed frontier sweep (``results/frontier/``);
``python -m alignlab docs`` writes them, with their numbers, to ``results/verdicts.json`` (one
machine-readable file the docs render) and ``tests/test_docs.py`` fails while it is stale.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101,
         19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042}
"""Two-sided 95 % quantiles of Student's t by degrees of freedom (beyond 30: the normal's 1.96)."""


def t_quantile(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom (a table value, rounded to 3)."""
    if df < 1:
        raise ValueError(f"t_quantile: need at least 1 degree of freedom, got {df}")
    if df in T_975:
        return T_975[df]
    return T_975[max(k for k in T_975 if k <= df)] if df <= 30 else 1.96


def paired(diffs) -> dict:
    """Mean of the paired differences ``diffs`` (claim side minus the other), its 95 % t interval and
    the outcome: "holds" (interval above 0), "fails" (below 0) or "inconclusive"."""
    diffs = [float(d) for d in diffs]
    if len(diffs) < 2:
        raise ValueError(f"paired: an interval needs at least 2 paired seeds, got {len(diffs)}")
    mean = statistics.fmean(diffs)
    half = t_quantile(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    lo, hi = mean - half, mean + half
    outcome = "holds" if lo > 0 else "fails" if hi < 0 else "inconclusive"
    return {"n": len(diffs), "mean": mean, "lo": lo, "hi": hi, "outcome": outcome}


@dataclass(frozen=True)
class Claim:
    """Arm ``a`` reaches more ``metric`` than arm ``b`` within KL <= ``budget`` nats."""

    id: str
    lecture: str
    source: str
    """Where the claim comes from (a paper and figure)."""
    a: str
    b: str
    budget: float
    metric: str = "gold_reward"


CLAIMS: tuple[Claim, ...] = tuple(
    Claim(f"dpo>{other}@{b:g}", "09_frontier", "Rafailov et al. 2023, fig. 2", "dpo", other, b)
    for other in ("ppo", "ppo_gt") for b in (1.0, 2.0, 4.0))
"""The claims computed from the committed frontier: the DPO paper's DPO-above-PPO, at each budget."""


def verdict(claim: Claim, pts: list[dict]) -> dict:
    """The claim's paired verdict over the seeds both arms have a point within the budget."""
    from .frontier import best_within

    def at(arm, seed):
        return best_within([p for p in pts if p["arm"] == arm and p["seed"] == seed], claim.budget, claim.metric)

    seeds = sorted({p["seed"] for p in pts if p["arm"] == claim.a} & {p["seed"] for p in pts if p["arm"] == claim.b})
    pairs = {s: (at(claim.a, s), at(claim.b, s)) for s in seeds}
    pairs = {s: v for s, v in pairs.items() if None not in v}
    out = {**asdict(claim), "seeds": sorted(pairs), "a_values": [pairs[s][0] for s in sorted(pairs)],
           "b_values": [pairs[s][1] for s in sorted(pairs)]}
    return {**out, **paired([pairs[s][0] - pairs[s][1] for s in sorted(pairs)])}


def compute(pts: list[dict], claims=CLAIMS) -> list[dict]:
    """Every claim's verdict, numbers rounded to 4 places (the content of ``results/verdicts.json``)."""
    rows = []
    for c in claims:
        v = verdict(c, pts)
        rows.append({k: ([round(x, 4) for x in val] if k in ("a_values", "b_values") else
                         round(val, 4) if isinstance(val, float) and k not in ("budget",) else val)
                     for k, val in v.items()})
    return rows


def markdown(rows: list[dict], labels: dict[str, str]) -> str:
    """The verdicts as a table: claim, per-seed values, the mean difference [95 % interval], outcome."""
    out = ["| claim | source | seeds | A per seed | B per seed | A - B, mean [95% CI] | verdict |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        claim = f"{labels.get(r['a'], r['a'])} above {labels.get(r['b'], r['b'])}, gold within KL ≤ {r['budget']:g}"
        vals = lambda xs: ", ".join(f"{x:.3f}" for x in xs)  # noqa: E731
        out.append(f"| {claim} | {r['source']} | {', '.join(map(str, r['seeds']))} | {vals(r['a_values'])} | "
                   f"{vals(r['b_values'])} | {r['mean']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] | {r['outcome']} |")
    return "\n".join(out)
