"""Repository hygiene: notebooks stored without outputs and in step with their percent sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignlab.course import notebooks as N

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_has_no_outputs(nb):
    cells = json.loads(nb.read_text())["cells"]
    assert not [c for c in cells if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]


def test_every_notebook_is_in_step_with_its_source():
    stale = N.stale(ROOT)
    assert not stale, f"out of step with their .py sources: {stale}; fix with `{N.FIX}`"


def test_every_source_has_its_notebook():
    assert [p.with_suffix(".ipynb") for p in N.sources(ROOT)] == \
        [p for p in NOTEBOOKS if p.with_suffix(".py").exists()]
    assert len(N.sources(ROOT)) == len(NOTEBOOKS)


def test_rebuild_is_byte_identical_and_an_edit_is_a_small_diff(tmp_path):
    import difflib

    src = ROOT / "notebooks" / "04_dpo.py"
    first, second = N.text(N.build(src)), N.text(N.build(src))
    assert first == second  # stable cell ids: nothing random in a build
    edited = tmp_path / "04_dpo.py"
    lines = src.read_text().split("\n")
    k = next(i for i, line in enumerate(lines) if line.startswith("# ## 2."))  # a markdown heading
    lines[k + 2] = lines[k + 2] + " (edited)"
    edited.write_text("\n".join(lines))
    diff = [d for d in difflib.unified_diff(first.split("\n"), N.text(N.build(edited)).split("\n"), n=0)
            if d[:1] in "+-" and d[:3] not in ("+++", "---")]
    assert 0 < len(diff) <= 4, diff  # the edited line and that cell's id, nothing else


def test_stale_names_an_edited_pair(tmp_path):
    (tmp_path / "notebooks").mkdir()
    src = tmp_path / "notebooks" / "00_x.py"
    src.write_text("# %% [markdown]\n# # Title\n\n# %%\nx = 1\n")
    assert N.stale(tmp_path) == ["notebooks/00_x.ipynb"]
    assert N.write_all(tmp_path) == [tmp_path / "notebooks" / "00_x.ipynb"]
    assert N.stale(tmp_path) == [] and N.write_all(tmp_path) == []
    src.write_text(src.read_text() + "y = 2\n")
    assert N.stale(tmp_path) == ["notebooks/00_x.ipynb"]


def test_every_lecture_notebook_reports_its_results():
    for nb in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        code = [("".join(c["source"])) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        assert any("alignlab.report(" in c or c.lstrip().startswith("report(") for c in code[-2:]), \
            f"{nb.name} must end with alignlab.report(...)"


def test_no_tab_characters_in_notebook_sources():
    """A TAB inside a formula is a broken ``\\t`` escape (``\\text`` written in a plain string):
    it renders as a gap in the formula. None may be in a lecture or solution source."""
    bad = [f"{p.name}:{i}" for folder in ("notebooks", "solutions") for p in sorted((ROOT / folder).glob("*.py"))
           for i, line in enumerate(p.read_text().splitlines(), 1) if "\t" in line]
    assert not bad, f"TAB characters in {bad}"
