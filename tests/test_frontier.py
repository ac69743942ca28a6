"""Lecture 09's frontier: the grid, the reading of checkpoints, envelopes, budgets, costs, and a
real sweep that is killed, resumed, and survives a NaN setting."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from alignlab import evaluation
from alignlab.studies import frontier, sweep
from alignlab.training import History


def record(arm, value, seed, evals, seconds=10.0, status="ok"):
    spec = frontier.specs([arm], [seed], grid={arm.name: (value,)})[0]
    return {"spec": {"method": spec.method, "seed": seed, "settings": dict(spec.settings), "threads": 1,
                     "profile": "quick"}, "command": " ".join(spec.command()), "status": status,
            "seconds": seconds, "result": {"evals": evals}}


def test_the_grid_covers_every_arm_with_three_settings():
    assert {a.method for a in frontier.ARMS} >= {"bon", "pg", "ppo", "dpo", "kto", "online_dpo", "bpo", "vpo",
                                                   "rloo", "grpo"}
    assert all(len(a.values) >= 3 for a in frontier.ARMS)
    specs = frontier.specs(frontier.arms(), range(3))
    assert len(specs) == len(set(s.name for s in specs)) == 3 * sum(len(a.values) for a in frontier.ARMS)
    gt = [s for s in specs if dict(s.settings).get("reward") == "gold"]
    assert gt and all(s.method == "ppo" and s.threads == 1 for s in gt)


def test_records_map_back_to_their_arm():
    ppo, gt = frontier.ARM["ppo"], frontier.ARM["ppo_gt"]
    assert frontier.arm_of(record(ppo, 0.1, 0, [])["spec"]) is ppo
    assert frontier.arm_of(record(gt, 0.1, 0, [])["spec"]) is gt
    assert frontier.arm_of({"method": "dpo", "settings": {}}) is None  # not a grid run


def test_parse_grid_checks_arm_knob_and_type():
    chosen = frontier.arms("dpo,bon")
    assert frontier.parse_grid(["dpo.beta=0.1,1", "bon.n=4"], chosen) == {"dpo": (0.1, 1.0), "bon": (4,)}
    for bad, match in (("dpo.lr=1", "sweeps 'beta'"), ("kto.beta=1", "not among"), ("dpo.beta=x", "expects float"),
                       ("beta=1", "ARM.SETTING"), ("nope.beta=1", "unknown arm")):
        with pytest.raises(ValueError, match=match):
            frontier.parse_grid([bad], chosen)
    with pytest.raises(ValueError, match="unknown frontier method"):
        frontier.arms("dpo,sft")


def test_envelope_is_the_running_best_within_each_budget():
    kl = [0.0, 1.0, 0.5, 2.0, 3.0, 2.5]
    y = [0.1, 0.3, 0.4, 0.35, 0.6, 0.6]
    xs, ys = frontier.envelope(kl, y)
    assert xs.tolist() == [0.0, 0.5, 2.5] and ys.tolist() == [0.1, 0.4, 0.6]
    assert np.all(np.diff(ys) > 0)
    with pytest.raises(ValueError, match="shape"):
        frontier.envelope([0.0], [1.0, 2.0])


def test_budget_table_is_per_seed_then_over_seeds():
    dpo = frontier.ARM["dpo"]
    recs = [record(dpo, 0.1, 0, [{"step": 0, "gold_reward": 0.1, "kl": 0.0, "win_rate": 0.5, "valid_rate": 1},
                                 {"step": 60, "gold_reward": 0.5, "kl": 1.5, "win_rate": 0.8, "valid_rate": 1}]),
            record(dpo, 1.0, 0, [{"step": 60, "gold_reward": 0.3, "kl": 0.8, "win_rate": 0.7, "valid_rate": 1}]),
            record(dpo, 0.1, 1, [{"step": 60, "gold_reward": 0.7, "kl": 3.0, "win_rate": 0.9, "valid_rate": 1}]),
            record(dpo, 1.0, 1, [], status="failed")]
    pts = frontier.points(recs)
    assert len(pts) == 4 and {p["value"] for p in pts} == {0.1, 1.0}
    rows = {r["budget"]: r for r in frontier.budget_table(pts, (1.0, 2.0, 4.0))}
    assert rows[1.0]["per_seed"] == {0: 0.3, 1: None} and rows[1.0]["n_seeds"] == 1
    assert rows[2.0]["per_seed"] == {0: 0.5, 1: None}
    assert rows[4.0]["per_seed"] == {0: 0.5, 1: 0.7} and rows[4.0]["mean"] == pytest.approx(0.6)
    assert rows[4.0]["min"] == 0.5 and rows[4.0]["max"] == 0.7 and rows[4.0]["reach"] == 3.0
    assert "DPO" in frontier.summary(pts)


def test_best_of_n_points_use_the_estimate_and_keep_the_bound():
    bon = frontier.ARM["bon"]
    rec = record(bon, 8, 0, [{"step": 8, "n": 8, "gold_reward": 0.4, "kl": 1.2, "kl_estimate": 1.1,
                              "win_rate": 0.8, "valid_rate": 1.0}])
    p, = frontier.points([rec])
    assert p["kl"] == 1.1 and p["kl_bound"] == 1.2


def test_costs_read_the_methods_settings():
    recs = [record(frontier.ARM["dpo"], 0.3, s, [], seconds=10.0 + s) for s in range(3)]
    recs += [record(frontier.ARM["ppo_gt"], 0.1, 0, [], seconds=30.0)]
    rows = {r["arm"]: r for r in frontier.costs(recs)}
    assert rows["dpo"]["seconds"] == 11.0 and rows["dpo"]["runs"] == 3
    assert rows["dpo"]["labels"] == 2048 and rows["dpo"]["samples"] == 4096
    assert rows["ppo_gt"]["samples"] == rows["ppo_gt"]["labels"] == 40 * 48


def test_history_checkpoints_are_the_evaluations():
    h = History("x")
    h.log(0, gold_reward=0.1, kl=0.0, win_rate=0.5, valid_rate=1.0, win_rate_ci=0.08, length=9.0)
    h.log(1, loss=0.6)
    h.log(2, gold_reward=0.3, kl=1.0, win_rate=0.6, valid_rate=0.9, win_rate_ci=0.07, loss=0.5)
    assert h.checkpoints() == [
        {"step": 0, "gold_reward": 0.1, "kl": 0.0, "win_rate": 0.5, "valid_rate": 1.0, "win_rate_ci": 0.08,
         "length": 9.0},
        {"step": 2, "gold_reward": 0.3, "kl": 1.0, "win_rate": 0.6, "valid_rate": 0.9, "win_rate_ci": 0.07}]
    assert h.final() == {"gold_reward": 0.3, "kl": 1.0, "win_rate": 0.6, "valid_rate": 0.9, "win_rate_ci": 0.07}


def test_ci95_is_the_normal_interval_of_the_mean():
    v = np.random.default_rng(0).normal(size=400)
    assert evaluation.ci95(v) == pytest.approx(1.96 * v.std(ddof=1) / 20)
    assert evaluation.ci95([1.0]) == 0.0
    won = evaluation.wins([1.0, 0.0, 0.5, 0.2], [0.0, 1.0, 0.5, 0.1])
    assert won.tolist() == [1.0, 0.0, 0.5, 1.0]
    assert evaluation.win_rate([1.0, 0.0, 0.5, 0.2], [0.0, 1.0, 0.5, 0.1]) == 0.625


def _wait_for(predicate, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_a_killed_sweep_resumes_and_a_nan_setting_is_recorded(tmp_path):
    """Real subprocesses on the micro profile: beta = nan fails alone and the sweep goes on; a sweep
    stopped part-way (finished, then Ctrl-C'd whenever the signal lands) resumes without running
    any recorded run again."""
    env = {**os.environ, "ALIGNLAB_CACHE": os.environ.get("ALIGNLAB_MICRO_CACHE") or str(tmp_path / "cache")}
    out = tmp_path / "runs"

    def cmd(seeds):
        return [sys.executable, "-m", "alignlab", "frontier", "--profile", "micro", "--methods", "dpo", "--seeds",
                seeds, "--grid", "dpo.beta=nan,0.3", "--set", "steps=2", "--set", "n_pairs=32", "--set",
                "batch_size=16", "--out", str(out)]

    specs = frontier.specs([frontier.ARM["dpo"]], [0, 1], "micro", {"dpo": (float("nan"), 0.3)},
                           extra={"steps": "2", "n_pairs": "32", "batch_size": "16"})
    files = {s.seed * 10 + (dict(s.settings)["beta"] == 0.3): out / f"{s.name}.json" for s in specs}
    first = subprocess.run(cmd("0"), env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 1 and "2 runs (1 failed)" in first.stdout, first.stderr
    nan0 = json.loads(files[0].read_text())
    assert nan0["status"] == "failed" and "beta" in nan0["error"] and "nan" in nan0["error"]
    assert json.loads(files[1].read_text())["status"] == "ok"
    # the wider sweep, interrupted with Ctrl-C once it is under way (wherever it has got to)
    log = open(tmp_path / "second-call.log", "w")
    proc = subprocess.Popen(cmd("0,1"), env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        _wait_for(lambda: files[10].exists() or proc.poll() is not None, 300)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    assert proc.returncode in (1, 130), (tmp_path / "second-call.log").read_text()[-500:]
    before = {k: json.loads(f.read_text()) for k, f in files.items() if f.exists()}
    assert before[0]["started"] == nan0["started"] and len(before) >= 3
    done = subprocess.run(cmd("0,1"), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # 1: the failed runs are reported, the sweep finished
    assert "4 runs (2 failed)" in done.stdout and "failed:" in done.stderr
    after = {k: json.loads(f.read_text()) for k, f in files.items()}
    for k, rec in before.items():  # recorded runs (finished or failed) were not run again
        assert after[k]["started"] == rec["started"]
    assert [after[k]["status"] for k in (0, 1, 10, 11)] == ["failed", "ok", "failed", "ok"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["calls"][-1]["runs"] == 4 and manifest["calls"][-1]["environment"]["torch"]
    assert len(frontier.points(sweep.load_records(out))) >= 2


def test_every_arms_knob_moves_its_final_kl_one_way_or_the_arm_says_why_not():
    """On the committed grid, each arm's final KL moves one way as its knob grows, on every seed;
    an arm whose knob does not (BPO at F = T) says why, and the note goes once the knob works."""
    records = frontier.load(Path(__file__).resolve().parent.parent / "results" / "frontier")
    for arm in frontier.ARMS:
        way = frontier.knob_direction(records, arm)
        if arm.inert:
            assert way is None, f"{arm.name}: its knob now moves the KL {way}: drop Arm.inert"
        else:
            assert way in ("increasing", "decreasing"), f"{arm.name}: {arm.knob} does not move the final KL one way"
    assert frontier.knob_direction(records, frontier.ARM["bon"]) == "increasing"
    assert frontier.knob_direction(records, frontier.ARM["dpo"]) == "decreasing"
