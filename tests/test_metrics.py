"""One definition per metric: ``alignlab.metrics`` is the table every other place reads.

docs/metrics.md is generated from it; every method's ``METHOD.metrics`` is defined in it and
matches its ``logged_by``; a key that no entry defines is caught by ``metrics.undefined``
(``test_registry`` applies it to what every method really logs); the shared-metric list has
one source; notebooks display rows of the table instead of restating definitions.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from alignlab import metrics, plots, training
from alignlab.course import runner
from alignlab.methods import REGISTRY

ROOT = Path(__file__).resolve().parent.parent


def test_docs_page_is_generated_from_the_table():
    assert metrics.DOCS == ROOT / "docs" / "metrics.md"
    assert metrics.DOCS.read_text() == metrics.markdown(), \
        f"docs/metrics.md is stale: regenerate it with {metrics.REGENERATE}"


def test_every_method_declares_defined_metrics_that_match_the_table():
    for name, method in REGISTRY.items():
        assert method.metrics, f"{name}: METHOD.metrics is empty"
        assert not metrics.undefined(method.metrics), \
            f"{name} declares metrics not defined in alignlab.metrics: {metrics.undefined(method.metrics)}"
        declared = {n for n in metrics.METRICS for k in method.metrics if metrics.lookup(k) is metrics.METRICS[n]}
        assert declared == set(metrics.logged_by(name)), \
            (f"{name}: METHOD.metrics and METRICS[...].logged_by disagree: only in METHOD.metrics "
             f"{sorted(declared - set(metrics.logged_by(name)))}, only in METRICS "
             f"{sorted(set(metrics.logged_by(name)) - declared)}")


def test_every_metric_names_real_methods_and_says_what_healthy_is():
    known = set(REGISTRY) | {"offline_ppo"}
    assert set(metrics.WHERE) == known
    for key, m in metrics.METRICS.items():
        assert m.definition and m.healthy, key
        assert m.logged_by or m.reported_by, f"{key}: neither logged nor reported by any method"
        assert set(m.logged_by) <= known and set(m.reported_by) <= set(REGISTRY), key
        assert "\n" not in m.definition + m.healthy, f"{key}: one paragraph, one line per cell"


def test_every_json_key_is_a_defined_metric_or_a_setting():
    for name, method in REGISTRY.items():
        fields = {f.name for f in dataclasses.fields(method.config)} if method.config else set()
        for key in method.extra_keys:
            m = metrics.lookup(key)
            assert (m is not None and name in m.reported_by) or key in fields, \
                f"run {name} reports {key!r}: neither a metric it reports (alignlab.metrics) nor a setting"


def test_a_logged_key_that_is_not_defined_is_caught():
    def step_fn(step):  # the old names of pg's metrics, renamed to ppo's
        return {"loss": 1.0, "value_loss": 0.5, "explained_var": 0.1, "grad_var_none": 2.0}

    history = training.train(None, step_fn, 2, progress=False)
    logged = {k for row in history.rows.values() for k in row}
    assert metrics.undefined(logged) == ["explained_var", "value_loss"]
    assert metrics.undefined(["gold_reward", "grad_var_mean", "rewards/margins"]) == []
    assert metrics.lookup("grad_var_value") is metrics.METRICS["grad_var_*"]
    with pytest.raises(KeyError, match="value_loss"):
        metrics.table(["vf_loss", "value_loss"])


def test_table_shows_each_definition_once():
    text = metrics.table(["clipfrac", "grad_var_none", "grad_var_mean"], who=True)
    lines = text.splitlines()
    assert lines[0] == "| metric | logged by | definition | healthy |" and len(lines) == 4
    assert "`grad_var_*`" in lines[3] and \
        "`ppo`, `offline_ppo`, `rloo`, `grpo`; JSON: `ppo`, `rloo`, `grpo`" in lines[2]


def test_the_shared_metrics_have_one_source():
    assert metrics.SHARED == ("gold_reward", "kl", "win_rate", "valid_rate")
    assert runner.COLUMNS == metrics.SHARED
    assert tuple(key for key, _ in plots.PANELS) == metrics.SHARED
    history = training.History()
    history.log(1, **{k: 0.5 for k in (*metrics.SHARED, "length")})
    assert tuple(history.final()) == metrics.SHARED


def test_notebooks_do_not_restate_metric_definitions():
    for source in sorted((ROOT / "notebooks").glob("[0-9]*.py")):
        tables = [i for i, line in enumerate(source.read_text().splitlines(), 1)
                  if line.replace(" ", "").startswith("#|metric|")]
        assert not tables, (f"{source.name}:{tables}: a table of metric definitions; display "
                            "alignlab.metrics.table([...]) instead, so the two cannot drift")
