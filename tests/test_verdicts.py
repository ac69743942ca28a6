"""Verdicts as paired differences over seeds with a 95 % Student-t interval (``alignlab.studies.verdicts``)."""

from __future__ import annotations

import math

import pytest

from alignlab.studies import verdicts


def test_paired_interval_is_the_student_t_one():
    v = verdicts.paired([1.0, 2.0, 3.0])  # mean 2, sd 1, n 3: half-width 4.303 / sqrt(3)
    assert v["n"] == 3 and v["mean"] == 2.0
    assert math.isclose(v["hi"] - v["mean"], 4.303 / math.sqrt(3)) and v["outcome"] == "inconclusive"
    assert verdicts.paired([0.3, 0.31, 0.29])["outcome"] == "holds"
    assert verdicts.paired([-0.3, -0.31, -0.29])["outcome"] == "fails"
    assert verdicts.t_quantile(4) == 2.776 and verdicts.t_quantile(27) == 2.060 and verdicts.t_quantile(99) == 1.96
    with pytest.raises(ValueError, match="at least 2 paired seeds"):
        verdicts.paired([0.5])


def test_a_verdict_pairs_the_arms_seed_by_seed_within_the_budget():
    pts = [{"arm": arm, "seed": s, "kl": kl, "gold_reward": g}
           for s, base in ((0, 0.1), (1, 0.3), (2, 0.2))
           for arm, kl, g in (("dpo", 0.5, base + 0.2), ("dpo", 3.0, 0.9), ("ppo", 0.8, base))]
    claim = verdicts.Claim("x", "09", "test", "dpo", "ppo", 1.0)
    v = verdicts.verdict(claim, pts)
    assert v["seeds"] == [0, 1, 2] and v["b_values"] == [0.1, 0.3, 0.2]
    assert all(math.isclose(a - b, 0.2) for a, b in zip(v["a_values"], v["b_values"]))  # 0.9 is beyond 1 nat
    assert v["outcome"] == "holds" and math.isclose(v["mean"], 0.2)
    assert "| dpo above ppo, gold within KL ≤ 1 |" in verdicts.markdown(verdicts.compute(pts, [claim]), {})
