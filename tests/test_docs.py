"""The generated docs: in step with the committed results, stale when a result moves; the README's shape.

``alignlab.studies.docs`` makes every page that holds a number from the files in ``results/``
(and ``docs/metrics.md``, the code map and ``requirements.txt`` from the code). No training here:
the results are read back, and the stale checks run on a copy of the repository in a tmp folder.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest

from alignlab.studies import docs

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _copy(tmp_path: Path) -> Path:
    """What ``docs.pages`` reads, copied to ``tmp_path`` (a snapshot: the real tree is never written)."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("README.md", "pyproject.toml", "requirements.txt"):
        shutil.copy(ROOT / name, root / name)
    for name in ("results", "docs", "alignlab"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _outside_blocks(text: str) -> str:
    return docs.BLOCK.sub(lambda m: m.group(1) + m.group(4), text)


# --- in step with the committed results ---------------------------------------------------------


def test_every_generated_page_is_in_step_with_the_committed_results():
    stale = docs.stale()
    assert not stale, f"out of step with results/ and the code: {stale}; regenerate with `{docs.COMMAND}`"


def test_the_results_page_says_the_command_behind_every_table():
    text = docs.pages()[Path("docs/results.md")]
    sections = text.split("\n## ")[1:]
    assert len(sections) >= 4
    for section in sections:
        assert "python -m alignlab " in section, section.splitlines()[0]
        assert "|---|" in section, section.splitlines()[0]


def test_every_module_is_in_the_code_map():
    code_map = docs.code_map()
    for path in sorted((ROOT / "alignlab").rglob("*.py")):
        rel = path.relative_to(ROOT / "alignlab")
        if path.name == "__main__.py" or "__pycache__" in rel.parts:
            continue
        name = f"{rel.parent.as_posix()}/" if path.name == "__init__.py" and rel.parts[:-1] else rel.as_posix()
        assert f"| `{name}` |" in code_map, f"{name} missing from the code map"


# --- a change in a result makes its pages stale ------------------------------------------------


def test_a_changed_result_makes_its_pages_stale_and_write_fixes_only_those(tmp_path):
    root = _copy(tmp_path)
    docs.write(root)  # the copy in step, whatever the state of the working tree
    assert docs.stale(root) == []
    assert docs.write(root) == []  # nothing changed: nothing written
    readme_before = (root / "README.md").read_text()

    online = root / docs.ONLINE_FILE  # lecture 06: only docs/results.md shows it
    rows = [json.loads(line) for line in online.read_text().splitlines() if line.strip()]
    rows[0]["win_rate"] = 0.123456
    online.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert docs.stale(root) == ["docs/results.md"]

    seed_file = sorted((root / "results" / "seeds").glob("sft-*.json"))[0]  # a seed run: the README too
    record = json.loads(seed_file.read_text())
    record["result"]["valid_rate"] = 0.5
    seed_file.write_text(json.dumps(record))
    assert docs.stale(root) == ["docs/results.md", "README.md"]

    written = docs.write(root)
    assert written == [root / "docs" / "results.md", root / "README.md"]
    assert docs.stale(root) == []
    results = (root / "docs" / "results.md").read_text()
    assert "0.500 /" in results and "SFT model: valid rate" in results
    readme = (root / "README.md").read_text()
    assert readme != readme_before and _outside_blocks(readme) == _outside_blocks(readme_before)


def test_a_frontier_run_a_docstring_and_a_dependency_each_make_their_page_stale(tmp_path):
    root = _copy(tmp_path)
    docs.write(root)
    run = sorted((root / "results" / "frontier").glob("dpo-*.json"))[0]
    record = json.loads(run.read_text())
    record["result"]["evals"][0]["gold_reward"] = 5.0  # the step-0 point (KL 0): within every budget
    run.write_text(json.dumps(record))
    assert docs.stale(root) == ["docs/results.md", "README.md", "results/verdicts.json"]  # the DPO claim moved

    docs.write(root)
    module = root / "alignlab" / "world.py"
    module.write_text(module.read_text().replace('"""The review world', '"""The renamed world', 1))
    assert docs.stale(root) == ["docs/architecture.md"]

    docs.write(root)
    assert "The renamed world" in (root / "docs" / "architecture.md").read_text()
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"nbconvert>=7",', '"nbconvert>=7",\n  "rich>=13",', 1))
    assert docs.stale(root) == ["requirements.txt"]


def test_check_exits_1_naming_the_stale_pages_and_the_command(tmp_path, capsys):
    root = _copy(tmp_path)
    parser = argparse.ArgumentParser()
    docs.add_parser(parser.add_subparsers())
    (root / "requirements.txt").write_text("torch\n")
    args = parser.parse_args(["docs", "--check", "--root", str(root)])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert "requirements.txt" in err and docs.COMMAND in err
    args = parser.parse_args(["docs", "--root", str(root)])
    assert args.func(args) == 0
    assert "wrote requirements.txt" in capsys.readouterr().out
    args = parser.parse_args(["docs", "--check", "--root", str(root)])
    assert args.func(args) == 0


def test_a_page_without_its_generated_block_is_a_clear_error():
    with pytest.raises(ValueError, match="README.md has no generated block headline"):
        docs.fill("# a README without the block\n", {"headline": "x\n"}, "README.md")
    text = "a\n<!-- generated:one -->\nold\n<!-- /generated -->\nb\n<!-- generated:two -->\nkept\n<!-- /generated -->\n"
    assert docs.fill(text, {"one": "new\n"}) == text.replace("old", "new")


# --- requirements.txt and the README ------------------------------------------------------------


def test_requirements_txt_equals_pyprojects_dependencies():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    assert lines[0].startswith("# Install torch first")
    assert [ln for ln in lines if ln.strip() and not ln.startswith("#")] == deps
    assert "nbconvert>=7" in deps


def test_readme_is_short_and_keeps_the_two_commands_ci_runs():
    lines = README.read_text().splitlines()
    assert len(lines) <= 180, f"README.md has {len(lines)} lines; move detail to docs/"
    for marker, ends in (("<!-- course-command -->", "python -m alignlab course"),
                         ("<!-- test-command -->", "python -m pytest")):
        assert lines.count(marker) == 1, marker
        i = lines.index(marker)  # what .ci/run extracts: the marker, a bash fence, one command, the fence
        assert lines[i + 1] == "```bash" and lines[i + 3] == "```", marker
        command = lines[i + 2]
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install torch==")
        assert command.endswith(ends)


@pytest.mark.parametrize("page", [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "results" / "README.md"],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_at_a_file_that_exists(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"


def test_the_readme_links_every_docs_page():
    linked = {(ROOT / t).resolve() for t in LINK.findall(README.read_text())}
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"
