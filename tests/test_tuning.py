"""The tuning protocol (``alignlab.studies.tuning``): equal effort per arm, on seeds never reported."""

from __future__ import annotations

from pathlib import Path

from alignlab.registry import Arm
from alignlab.studies import frontier, sweep, tuning


def test_every_arm_tries_the_same_number_of_configurations_the_default_first():
    for arm in frontier.ARMS:
        assert len(arm.tune) == tuning.BUDGET, f"{arm.name}: {len(arm.tune)} configurations, not {tuning.BUDGET}"
        assert arm.tune[0] == {} and arm.knob not in {k for c in arm.tune for k in c}, arm.name


def test_tuning_seeds_are_never_the_reported_ones():
    reported = set(range(5))  # lectures, seed tables and the frontier use SFT seeds 0-4
    assert not set(tuning.TUNING_SEEDS) & reported
    root = Path(__file__).resolve().parent.parent / "results"
    recorded = {r["spec"]["seed"] for folder in ("frontier", "seeds") for r in sweep.load_records(root / folder)}
    assert recorded and not set(tuning.TUNING_SEEDS) & recorded


def test_the_grid_holds_the_knob_at_its_middle_value():
    arm = Arm("x", "X", "beta", (0.1, 0.3, 1.0), (("reward", "gold"),), tune=({}, {"lr": 1e-4}), method="dpo")
    specs = tuning.specs([arm], seeds=(100, 101))
    assert len(specs) == 4 and {s.seed for s in specs} == {100, 101}
    assert dict(specs[2].settings) == {"beta": 0.3, "reward": "gold", "lr": 1e-4}


def _record(arm, config, seed, evals, valid=0.95):
    spec = tuning.specs([Arm(arm.name, arm.label, arm.knob, arm.values, arm.fixed, tune=(config,),
                             method=arm.method)], seeds=(seed,))[0]
    return {"status": "ok", "spec": {"method": spec.method, "seed": seed, "settings": dict(spec.settings)},
            "result": {"valid_rate": valid, "evals": evals}}


def test_choose_takes_the_best_mean_score_within_the_kl_budget_among_valid_configurations():
    arm = Arm("dpo", "DPO", "beta", (0.1, 0.3, 1.0), tune=({}, {"lr": 3e-4}, {"lr": 3e-3}, {"lr": 1e-4}),
              method="dpo")
    ev = lambda *points: [{"kl": k, "gold_reward": g} for k, g in points]  # noqa: E731
    records = []
    for s in (100, 101):
        records.append(_record(arm, {}, s, ev((0, 0.1), (2, 0.4))))
        records.append(_record(arm, {"lr": 3e-4}, s, ev((0, 0.1), (3, 0.5), (9, 0.9))))  # 0.9 is beyond 4 nats
        records.append(_record(arm, {"lr": 3e-3}, s, ev((0, 0.1), (1, 0.8)), valid=0.5 if s == 101 else 0.95))
        records.append(_record(arm, {"lr": 1e-4}, s, ev((0, 0.1), (2, 0.5))))  # ties lr=3e-4: the earlier wins
    rows = tuning.table(records, [arm])
    assert [r["mean"] for r in rows] == [0.4, 0.5, 0.8, 0.5]
    assert [r["eligible"] for r in rows] == [True, True, False, True]
    assert tuning.choose(records, [arm]) == {"dpo": {"lr": 3e-4}}
    text = tuning.markdown(rows, (100, 101))
    assert "| DPO | lr=0.0003 | 0.500 | 0.500 | 0.500 | 0.950 | **yes** |" in text
    assert tuning.score({"evals": ev((0, 0.1), (5, 0.9))}) == 0.1


def test_nothing_eligible_keeps_the_default():
    arm = Arm("kto", "KTO", "beta", (0.3, 1.0, 3.0), tune=({}, {"lr": 1e-4}), method="kto")
    ev = [{"kl": 0, "gold_reward": 0.1}, {"kl": 1, "gold_reward": 0.3}]
    records = [_record(arm, c, 100, ev, valid=0.2) for c in arm.tune]
    assert tuning.choose(records, [arm]) == {"kto": {}}


def test_specs_are_sweep_runs_with_one_thread():
    (spec, *_) = tuning.specs(frontier.arms("kto"))
    assert isinstance(spec, sweep.RunSpec) and spec.threads == 1 and spec.method == "kto"
