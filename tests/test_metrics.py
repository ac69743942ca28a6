"""One definition per metric: ``alignlab.metrics`` is the table every other place reads.

It holds definitions only: who logs and reports what is each method's declaration
(``Method.metrics``/``reports``), read from the registry; a key that no entry defines is caught
by ``metrics.undefined`` (``test_registry`` applies it to what every method really logs, and
``registry.check`` to what each declares); the shared-metric list has one source; notebooks
display rows of the table instead of restating definitions. docs/metrics.md is checked with the
other generated pages (``tests/test_docs.py``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from alignlab import metrics, plots, training
from alignlab.course import runner
from alignlab.methods import REGISTRY

ROOT = Path(__file__).resolve().parent.parent


def test_every_metric_says_what_healthy_is_and_is_used_by_a_method():
    used = {n for m in REGISTRY.values() for n in metrics.names((*m.metrics, *m.reports))}
    for key, m in metrics.METRICS.items():
        assert m.definition and m.healthy, key
        assert "\n" not in m.definition + m.healthy, f"{key}: one paragraph, one line per cell"
        assert key in used, f"{key}: neither logged nor reported by any registered method"


def test_metrics_holds_only_definitions():
    """Who logs what is declared by each Method record, not restated in the metrics table."""
    assert {f.name for f in dataclasses.fields(metrics.Metric)} == {"definition", "healthy"}
    assert not hasattr(metrics, "WHERE") and not hasattr(metrics, "logged_by")


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


def test_table_shows_each_definition_once_and_who_logs_it_from_the_registry():
    text = metrics.table(["clipfrac", "grad_var_none", "grad_var_mean"], REGISTRY.values())
    lines = text.splitlines()
    assert lines[0] == "| metric | logged by | definition | healthy |" and len(lines) == 4
    assert "`grad_var_*`" in lines[3] and \
        "`ppo`, `offline_ppo`, `rloo`, `grpo`; JSON: `ppo`, `offline_ppo`, `rloo`, `grpo`" in lines[2]


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
