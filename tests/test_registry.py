"""The method registry and the command line built from it.

Every registered method runs end to end on the ``micro`` profile with its ``smoke``
settings, through ``cli.main`` as a user would call it, and its JSON line has the keys
the README promises; every key it logs is defined in ``alignlab.metrics``. Errors a user
can cause are one line on stderr with exit status 2. A throw-away method shows what
adding one takes: its module and one line in the registry, nothing patched.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest

from alignlab import cli, metrics, training
from alignlab.config import override
from alignlab.methods import REGISTRY
from alignlab.models import get_profile
from alignlab.registry import SHARED_KEYS, Arm, Cost, Method, build_config, check, field_docs
from alignlab.studies import frontier
from conftest import run_cli, run_json


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_method_runs_and_reports_the_promised_keys(name, micro_cache, capsys, monkeypatch):
    method = REGISTRY[name]
    logged: set[str] = set()
    log = training.History.log

    def recording_log(self, step, **values):
        logged.update(values)
        return log(self, step, **values)

    monkeypatch.setattr(training.History, "log", recording_log)
    sets = [f"--set={k}={v}" for k, v in method.smoke.items()]
    out = run_json(capsys, name, "--profile", "micro", "--seed", "0", *sets)
    missing = [k for k in (*SHARED_KEYS, *method.reports) if k not in out]
    assert not missing, f"run {name}: JSON line lacks {missing}"
    assert out["method"] == name and out["profile"] == "micro" and out["seed"] == 0
    for k in ("gold_reward", "kl", "win_rate", "valid_rate"):
        assert isinstance(out[k], float) and math.isfinite(out[k]), (k, out[k])
    assert 0.0 <= out["win_rate"] <= 1.0 and 0.0 <= out["valid_rate"] <= 1.0
    assert 0.0 <= out["win_rate_ci"] <= 0.5 and out["gold_reward_ci"] >= 0.0
    if method.arms or "evals" in out:  # every evaluation checkpoint: the points of lecture 09's frontier
        evals = out["evals"]
        assert len(evals) >= 2 and evals[0]["kl"] == 0.0, evals[:1]  # the SFT model itself first
        assert [e["step"] for e in evals] == sorted({e["step"] for e in evals})
        assert {k: evals[-1][k] for k in ("gold_reward", "kl", "win_rate")} == \
            {k: out[k] for k in ("gold_reward", "kl", "win_rate")}
    assert not metrics.undefined(logged), f"{name} logs keys not defined in alignlab.metrics: " \
                                          f"{metrics.undefined(logged)}"
    assert not metrics.undefined(method.metrics)


def test_every_method_declares_itself_completely():
    for name, m in REGISTRY.items():
        assert m.name == name, name
        assert check(m) == [], f"{name}: {check(m)}"


def test_every_frontier_arm_has_a_cost_and_an_owner():
    assert frontier.ARMS == frontier.all_arms(REGISTRY) and len({a.name for a in frontier.ARMS}) == len(frontier.ARMS)
    for arm in frontier.ARMS:
        method = REGISTRY[arm.method]
        cost = method.cost(method.config.for_profile(get_profile("quick")), get_profile("quick"))
        assert isinstance(cost, Cost) and cost.labels > 0 and cost.samples > 0, (arm.name, cost)


def test_run_help_comes_from_the_registry(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for m in REGISTRY.values():
        assert f"{m.name:<11} {m.description}"[:60] in text
    with pytest.raises(SystemExit):
        cli.main(["run", "dpo", "--help"])
    text = capsys.readouterr().out
    defaults = REGISTRY["dpo"].config.for_profile(get_profile("quick"))
    doc = field_docs(REGISTRY["dpo"].config)["beta"]
    assert "beta" in text and f"= {defaults.beta!r}" in text and doc[:40] in " ".join(text.split())


@pytest.mark.slow
@pytest.mark.parametrize("argv, words", [
    (["run", "dpo", "--set", "nosuch=1"], "no setting 'nosuch'"),
    (["run", "dpo", "--set", "beta=abc"], "setting 'beta' expects float, got 'abc'"),
    (["run", "dpo", "--set", "beta"], "--set expects KEY=VALUE"),
    (["run", "sft", "--set", "steps=3"], "takes no --set options"),
    (["run", "dpo", "--set", "seed=3"], "set the seed with --seed 3, not --set seed="),
    (["run", "dpo", "--profile", "huge"], "unknown profile 'huge'"),
])
def test_user_errors_are_one_line_and_exit_2(argv, words):
    r = run_cli(*argv)
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert words in lines[0], lines[0]


@pytest.mark.slow
def test_an_unwritable_cache_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    r = run_cli("run", "sft", "--profile", "micro", env={"ALIGNLAB_CACHE": str(blocker / "cache")})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "ALIGNLAB_CACHE" in r.stderr, r.stderr


@dataclasses.dataclass
class ToyConfig:
    """Settings of the throw-away method of the test below."""

    level: float = 0.5
    """The gold reward the toy reports."""
    seed: int = 0
    """Set from --seed."""

    @classmethod
    def for_profile(cls, profile=None, **overrides):
        return override(cls(), overrides)


def run_toy(profile, seed, config: ToyConfig) -> dict:
    return {"gold_reward": config.level, "kl": config.level / 10, "win_rate": 0.5, "valid_rate": 1.0,
            "level": config.level, "seed_seen": config.seed}


TOY = Method(name="toy", description="a throw-away method", config=ToyConfig, run=run_toy,
             trainer="tests.test_registry.run_toy", metrics=("gold_reward", "kl", "loss"),
             extra_keys=("level",), lecture="none",
             arms=(Arm("toy", "Toy", "level", (0.1, 0.2, 0.4), needs="nothing"),),
             cost=lambda config, profile: Cost(int(100 * config.level), 7, "toy labels", 3))


def test_a_new_method_is_one_module_and_one_registry_line():
    """What a contributor writes for a new method: its module (here: ToyConfig, run_toy and the
    TOY record above) and one line in ``REGISTRY``. Nothing is patched: every check the real
    methods pass, the docs row, the frontier arm and its cost, and the run recipe, read the record."""
    registry = {**REGISTRY, "toy": TOY}  # the one registry line
    assert check(TOY) == []
    assert TOY.arms[0].method == "toy" and TOY.reports == (*metrics.SHARED, "gold_reward_ci", "win_rate_ci", "level")
    page = metrics.markdown(registry.values())
    assert "| `toy` | `tests.test_registry.run_toy` | `gold_reward`, `kl`, `loss` |" in page
    assert "`toy`" not in metrics.markdown(REGISTRY.values())
    (arm,) = frontier.arms("toy", registry)
    specs = frontier.specs([arm], seeds=[0, 1])
    assert [dict(s.settings) for s in specs][:2] == [{"level": 0.1}] * 2 and len(specs) == 6
    records = [{"status": "ok", "seconds": 2.0, "spec": {"method": "toy", "seed": s, "settings": {"level": 0.2}},
                "result": run_toy(None, s, ToyConfig(level=0.2))} for s in (0, 1)]
    assert frontier.points(records, registry)[0]["arm"] == "toy"
    (row,) = frontier.costs(records, registry=registry)
    assert (row["samples"], row["labels"], row["steps"], row["runs"]) == (20, 7, 3, 2)
    config = build_config(TOY, get_profile("micro"), 5, {"level": "0.25"})
    assert TOY.run(None, 5, config) == {**run_toy(None, 5, ToyConfig(0.25, 5))} and config.seed == 5
    with pytest.raises(ValueError, match="--seed"):
        build_config(TOY, get_profile("micro"), 0, {"seed": "3"})
    with pytest.raises(ValueError, match="no setting 'nosuch'"):
        build_config(TOY, get_profile("micro"), 0, {"nosuch": "1"})
    broken = dataclasses.replace(TOY, cost=None, arms=(Arm("t", "T", "nosuch", (1, 2)),))
    assert {p.split(" ")[0] for p in check(broken)} >= {"arm", "frontier"}


@pytest.mark.parametrize("argv", [["--help"], ["notebooks", "--check"], ["run", "--help"]])
def test_the_cli_imports_torch_only_for_commands_that_train(argv):
    code = (f"import sys\nfrom alignlab import cli\ntry:\n    cli.main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == ("TORCH" if argv[0] == "run" else "NO-TORCH"), r.stdout + r.stderr
