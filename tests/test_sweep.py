"""The resumable sweep (``alignlab.studies.sweep``) and ``python -m alignlab seeds``."""

import json
import os
import subprocess
import sys

import pytest

from alignlab.studies import sweep
from alignlab.studies.sweep import RunSpec


def fake_runner(calls, fail=()):
    def run(spec, timeout=None):
        calls.append(spec)
        if spec.seed in fail:
            return {"spec": {**spec.__dict__, "settings": dict(spec.settings)}, "command": "x",
                    "status": "failed", "error": "boom"}
        return {"spec": {**spec.__dict__, "settings": dict(spec.settings)}, "command": "x", "status": "ok",
                "result": {"win_rate": 0.5 + spec.seed / 10, "valid_rate": 1.0}}
    return run


def test_resume_skips_finished_and_keeps_failures(tmp_path):
    specs = [RunSpec.make("dpo", s, {"beta": 0.1}) for s in range(4)]
    calls = []
    sweep.sweep(specs[:2], tmp_path, runner=fake_runner(calls, fail={1}), progress=False)
    assert len(calls) == 2
    calls.clear()
    recs = sweep.sweep(specs, tmp_path, runner=fake_runner(calls), progress=False)
    assert [c.seed for c in calls] == [2, 3] or sorted(c.seed for c in calls) == [2, 3]  # 0 and 1 not rerun
    assert [r["status"] for r in recs] == ["ok", "failed", "ok", "ok"]
    calls.clear()
    recs = sweep.sweep(specs, tmp_path, runner=fake_runner(calls), retry_failed=True, progress=False)
    assert [c.seed for c in calls] == [1] and recs[1]["status"] == "ok"


def test_a_corrupt_record_is_run_again(tmp_path):
    spec = RunSpec.make("kto", 0)
    (tmp_path / f"{spec.name}.json").write_text('{"status": "ok", "res')  # a torn write
    calls = []
    rec, = sweep.sweep([spec], tmp_path, runner=fake_runner(calls), progress=False)
    assert calls == [spec] and rec["status"] == "ok"


def test_names_differ_by_settings_threads_and_seed():
    names = {RunSpec.make("dpo", s, st, t).name for s in (0, 1) for t in (1, 2)
             for st in ({}, {"beta": 0.1}, {"beta": 0.3})}
    assert len(names) == 12


def test_headline_table_counts_targets():
    specs = sweep.headline_specs([0, 1, 2], [1])
    recs = [{"spec": {**s.__dict__, "settings": dict(s.settings)}, "status": "ok",
             "result": {"win_rate": 0.6 + 0.1 * s.seed, "valid_rate": 0.95, "rm_accuracy": 0.9}} for s in specs]
    rows = {(r["headline"], r["threads"]): r for r in sweep.headline_table(recs, [0, 1, 2], [1])}
    dpo = rows[("DPO: win-rate", 1)]
    assert dpo["met"] == 2 and dpo["min"] == pytest.approx(0.6) and dpo["mean"] == pytest.approx(0.7)
    table = sweep.markdown(list(rows.values()), [0, 1, 2])
    assert "| 04 | DPO: win-rate (≥ 0.70) | 1 | 0.600 / 0.700 / 0.800 |" in table


def test_parse_ints():
    assert sweep.parse_ints("0-4") == [0, 1, 2, 3, 4] and sweep.parse_ints("1,2") == [1, 2]
    with pytest.raises(ValueError, match="0-4"):
        sweep.parse_ints("a")


@pytest.mark.slow
def test_real_runs_a_nan_run_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """Real subprocesses on the micro profile: a setting that makes the loss NaN fails alone."""
    monkeypatch.setenv("ALIGNLAB_CACHE", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    specs = [RunSpec.make("dpo", 0, {"lr": "nan", "steps": 2}, profile="micro"),
             RunSpec.make("dpo", 0, profile="micro")]  # the run `seeds --lectures 04` asks for
    bad, good = sweep.sweep(specs, runs, progress=False)
    assert bad["status"] == "failed" and "nan" in bad["error"].lower(), bad
    assert good["status"] == "ok" and 0 <= good["result"]["win_rate"] <= 1, good
    assert sorted(p.name for p in runs.iterdir()) == sorted(f"{s.name}.json" for s in specs)
    # the CLI reads the finished run back instead of training it again, and prints its table
    cmd = [sys.executable, "-m", "alignlab", "seeds", "--seeds", "0", "--threads", "1", "--lectures", "04",
           "--profile", "micro", "--out", str(runs), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert out.returncode == 0, out.stderr
    assert "runs (0 failed)" in out.stdout
    rows = {r["headline"]: r for r in json.loads(out.stdout.strip().splitlines()[-1])["rows"]}
    assert rows["DPO: win-rate"]["values"] == {"0": good["result"]["win_rate"]}
    assert json.loads((runs / f"{specs[1].name}.json").read_text())["started"] == good["started"]


def test_an_interrupted_run_leaves_no_record_and_runs_again(tmp_path):
    spec = RunSpec.make("dpo", 0)

    def killed(spec, timeout=None):
        return {"spec": {}, "command": "x", "status": "interrupted", "error": "killed (exit status -2)"}

    sweep.sweep([spec], tmp_path, runner=killed, progress=False)
    assert not list(tmp_path.iterdir())
    calls = []
    rec, = sweep.sweep([spec], tmp_path, runner=fake_runner(calls), progress=False)
    assert calls == [spec] and rec["status"] == "ok"
