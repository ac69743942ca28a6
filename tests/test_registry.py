"""The method registry and the command line built from it.

Every registered method runs end to end on the ``micro`` profile with its ``smoke``
settings, through ``cli.main`` as a user would call it, and its JSON line has the keys
the README promises; every key it logs is defined in ``alignlab.metrics``. Errors a user
can cause are one line on stderr with exit status 2. A throw-away method shows what
adding one takes: a ``Method`` record in the registry, nothing else.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from alignlab import cli, metrics, training
from alignlab.methods import REGISTRY
from alignlab.models import get_profile
from alignlab.registry import SHARED_KEYS, Method, field_docs


@pytest.fixture
def micro_cache(tmp_path_factory, monkeypatch):
    """One cache for the micro runs of this module (the SFT and RM are trained once)."""
    root = os.environ.get("ALIGNLAB_MICRO_CACHE") or str(tmp_path_factory.getbasetemp() / "micro-cache")
    monkeypatch.setenv("ALIGNLAB_CACHE", root)
    return root


def _run(capsys, *argv) -> dict:
    assert cli.main(["run", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


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
    out = _run(capsys, name, "--profile", "micro", "--seed", "0", *sets)
    missing = [k for k in (*SHARED_KEYS, *method.extra_keys) if k not in out]
    assert not missing, f"run {name}: JSON line lacks {missing}"
    assert out["method"] == name and out["profile"] == "micro" and out["seed"] == 0
    for k in ("gold_reward", "kl", "win_rate", "valid_rate"):
        assert isinstance(out[k], float) and math.isfinite(out[k]), (k, out[k])
    assert 0.0 <= out["win_rate"] <= 1.0 and 0.0 <= out["valid_rate"] <= 1.0
    assert 0.0 <= out["win_rate_ci"] <= 0.5 and out["gold_reward_ci"] >= 0.0
    if name not in ("sft", "rm"):  # every evaluation checkpoint, for lecture 09's frontier
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
        assert m.name == name and m.description and m.lecture, name
        assert callable(m.run)
        if m.config is not None:
            docs = field_docs(m.config)
            undocumented = [f for f, *_ in m.settings(get_profile("quick")) if not docs.get(f)]
            assert not undocumented, f"{name}: settings without a one-line doc: {undocumented}"
            cfg = m.config.for_profile(get_profile("micro"))
            for key in m.smoke:  # smoke settings name real settings
                assert hasattr(cfg, key), f"{name}: smoke setting {key!r} is not a setting"


def test_run_help_comes_from_the_registry(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for m in REGISTRY.values():
        assert f"{m.name:<6} {m.description}" in text
    with pytest.raises(SystemExit):
        cli.main(["run", "dpo", "--help"])
    text = capsys.readouterr().out
    defaults = REGISTRY["dpo"].config.for_profile(get_profile("quick"))
    doc = field_docs(REGISTRY["dpo"].config)["beta"]
    assert "beta" in text and f"= {defaults.beta!r}" in text and doc[:40] in " ".join(text.split())


def _cli(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "alignlab", *argv], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("argv, words", [
    (["run", "dpo", "--set", "nosuch=1"], "no setting 'nosuch'"),
    (["run", "dpo", "--set", "beta=abc"], "setting 'beta' expects float, got 'abc'"),
    (["run", "dpo", "--set", "beta"], "--set expects KEY=VALUE"),
    (["run", "sft", "--set", "steps=3"], "takes no --set options"),
    (["run", "dpo", "--profile", "huge"], "unknown profile 'huge'"),
])
def test_user_errors_are_one_line_and_exit_2(argv, words):
    r = _cli(*argv)
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert words in lines[0], lines[0]


@pytest.mark.slow
def test_an_unwritable_cache_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    r = _cli("run", "sft", "--profile", "micro", env={"ALIGNLAB_CACHE": str(blocker / "cache")})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "ALIGNLAB_CACHE" in r.stderr, r.stderr


def test_a_new_method_is_one_registry_entry(monkeypatch, capsys):
    """What a contributor adds for a (trivial) new method: a module with a config and run(),
    and one Method record in the registry. The CLI, --help and --set validation follow."""
    import dataclasses

    @dataclasses.dataclass
    class ToyConfig:
        """Settings of the toy method."""

        level: float = 0.5
        """The gold reward the toy reports."""

        @classmethod
        def for_profile(cls, profile):
            return cls()

    def run_toy(profile, seed, overrides):
        from alignlab.config import override

        cfg = override(ToyConfig.for_profile(profile), overrides)
        return {"gold_reward": cfg.level, "kl": 0.0, "win_rate": 0.5, "valid_rate": 1.0, "level": cfg.level}

    toy = Method(name="toy", description="a throw-away method for this test", config=ToyConfig, run=run_toy,
                 extra_keys=("level",), lecture="none")
    monkeypatch.setitem(REGISTRY, "toy", toy)
    out = _run(capsys, "toy", "--set", "level=0.25")
    assert out["gold_reward"] == 0.25 and out["method"] == "toy" and set(SHARED_KEYS) <= set(out)
    assert cli.main(["run", "toy", "--set", "nosuch=1"]) == 2
    assert "no setting 'nosuch'" in capsys.readouterr().err
