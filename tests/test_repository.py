"""Repository hygiene: notebooks stored without outputs and in step with their drafts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))


def _draft_for(nb: Path) -> Path:
    prefix = nb.name.split("_")[0]
    name = f"solutions_{prefix}.py" if nb.parent.name == "solutions" else f"{prefix}.py"
    return ROOT / "tools" / "drafts" / name


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_has_no_outputs(nb):
    cells = json.loads(nb.read_text())["cells"]
    assert not [c for c in cells if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_matches_its_draft(nb):
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    from pct2nb import convert

    draft = _draft_for(nb)
    assert draft.exists(), f"{nb.name} has no draft {draft.relative_to(ROOT)} (write notebooks as drafts)"
    want = [(c.cell_type, c.source) for c in convert(draft.read_text()).cells]
    have = [(c["cell_type"], "".join(c["source"])) for c in json.loads(nb.read_text())["cells"]]
    assert have == want, f"{nb.name} differs from {draft.name}: rebuild with tools/pct2nb.py"


def test_every_lecture_notebook_reports_its_results():
    for nb in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        code = [("".join(c["source"])) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        assert any("report(" in c for c in code[-2:]), f"{nb.name} must end with alignlab.report(...)"
