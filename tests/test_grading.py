"""The exercise generator (solutions/ -> exercises/) and the instructor's grader.

The slow test grades a folder of five submissions built from the 02 (GAE) exercise
notebook, the one that trains no model: correct, partly wrong (a renamed function, a
deleted check cell, a mask bug), not valid JSON, never terminating (after a syntax
error), and the untouched stub. It runs real kernels with a 35 s limit per submission.
"""

from __future__ import annotations

import copy
import csv
import json
import time
from pathlib import Path

import nbformat
import pytest

from alignlab.course import exercises, grading
from alignlab.course.checks import EXERCISE_SETS, max_points

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------


def test_exercises_folder_is_up_to_date_with_solutions():
    stale = exercises.stale(ROOT / "solutions", ROOT / "exercises")
    assert not stale, f"exercises/ is out of date for {stale}: run `python -m alignlab exercises`"


def test_generated_cells_raise_not_implemented_with_a_hint_and_hide_the_answers():
    for path in sorted((ROOT / "exercises").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        text = "\n".join(c.source for c in nb.cells)
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and "all_passed" not in text
        stubs = [c.source for c in nb.cells if c.cell_type == "code" and "YOUR CODE HERE" in c.source]
        assert len(stubs) == len(EXERCISE_SETS[path.stem]), path.name
        assert all('raise NotImplementedError("Hint: ' in s for s in stubs)
        assert nb.metadata["alignlab"]["exercise_set"] == path.stem
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(s[3:]) if s.startswith("md:") else nbformat.v4.new_code_cell(s)
                for s in cells]
    return nb


def test_generator_replaces_regions_at_their_indentation():
    nb = _nb("def f(x):\n    '''doc'''\n    ### BEGIN SOLUTION\n    ### HINT: square it\n    return x * x\n"
             "    ### END SOLUTION\n\ny = 1",
             "md:Q?\n<!-- ### BEGIN SOLUTION -->\nthe answer\n<!-- ### END SOLUTION -->",
             "### BEGIN HIDDEN TESTS\nassert f(2) == 4\n### END HIDDEN TESTS",
             "print(f(3))\n### BEGIN HIDDEN TESTS\nassert True\n### END HIDDEN TESTS")
    out = exercises.exercise_notebook(nb, "99_demo")
    assert [c.source for c in out.cells] == [
        "def f(x):\n    '''doc'''\n    # YOUR CODE HERE\n    raise NotImplementedError(\"Hint: square it\")\n\ny = 1",
        "Q?\n*YOUR ANSWER HERE*",
        "print(f(3))",
    ]
    assert [c.id for c in out.cells] == [nb.cells[0].id, nb.cells[1].id, nb.cells[3].id]
    assert out.metadata["alignlab"]["exercise_set"] == "99_demo"


@pytest.mark.parametrize("source,message", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without a"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "cannot nest"),
])
def test_generator_rejects_broken_markers(source, message):
    with pytest.raises(exercises.MarkerError, match=message):
        exercises.exercise_notebook(_nb(source), "99_demo")


def test_cli_exercises_check_and_grade_help(capsys):
    from alignlab.cli import main

    assert main(["exercises", "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["grade", "--help"])
    assert e.value.code == 0
    assert "UNSANDBOXED" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# The grader: fast paths (no kernel)
# ---------------------------------------------------------------------------


def test_detect_set_from_metadata_filename_or_checks(tmp_path):
    stub = nbformat.read(ROOT / "exercises" / "04_dpo.ipynb", as_version=4)
    assert grading.detect_set(stub, tmp_path / "anything.ipynb") == "04_dpo"
    plain = _nb("x = 1")
    assert grading.detect_set(plain, tmp_path / "alice_02_gae.ipynb") == "02_gae"
    assert grading.detect_set(plain, tmp_path / "Bob-KTO-final.ipynb") == "05_kto"
    assert grading.detect_set(plain, tmp_path / "hw03.ipynb") is None  # "03" is not a word here
    assert grading.detect_set(plain, tmp_path / "hw 03.ipynb") == "03_ppo"
    assert grading.detect_set(_nb('check("bt_loss", bt_loss)'), tmp_path / "x.ipynb") == "01_bradley_terry"
    assert grading.detect_set(plain, tmp_path / "megaeffort.ipynb") is None  # no "gae" word in it


def test_rows_are_written_and_flushed_one_at_a_time(tmp_path, monkeypatch):
    for name in ["a.ipynb", "b.ipynb", "c.ipynb"]:
        (tmp_path / "subs").mkdir(exist_ok=True)
        (tmp_path / "subs" / name).write_text("{}")
    out = tmp_path / "grades.csv"
    seen = []

    def fake_grade(path, root, timeout, executed, force_set):
        seen.append(out.read_text().count("\n"))  # rows already on disk when the next one starts
        return {c: "" for c in grading.COLUMNS} | {"submission": path.name, "points": 1, "max_points": 1}

    monkeypatch.setattr(grading, "grade_notebook", fake_grade)
    grading.grade_folder(tmp_path / "subs", out, progress=False)
    assert seen == [1, 2, 3]  # header, then one more row each time


def test_a_folder_of_broken_files_gives_rows_not_crashes(tmp_path):
    subs = tmp_path / "subs"
    (subs / "nested").mkdir(parents=True)
    (subs / "nested" / "zed_dpo.ipynb").write_text("{ not json")
    (subs / "mystery.ipynb").write_text(nbformat.writes(_nb("x = 1")))
    (subs / ".ipynb_checkpoints").mkdir()
    (subs / ".ipynb_checkpoints" / "zed_dpo-checkpoint.ipynb").write_text("{}")
    rows = grading.grade_folder(subs, tmp_path / "g.csv", progress=False)
    assert [(r["submission"], r["exercise_set"], r["status"], r["points"], r["max_points"]) for r in rows] == [
        ("mystery.ipynb", "", "unknown exercise set", 0, 0),
        ("nested/zed_dpo.ipynb", "04_dpo", "invalid notebook", 0, max_points("dpo_loss")),
    ]
    assert "not a valid notebook" in rows[1]["error"] and rows[1]["dpo_loss"] == 0


# ---------------------------------------------------------------------------
# The grader: real kernels, five submissions
# ---------------------------------------------------------------------------


def _submissions(folder: Path) -> None:
    """Five submissions made from the 02 exercise notebook, as students would hand them in."""
    stub = nbformat.read(ROOT / "exercises" / "02_gae.ipynb", as_version=4)
    solution = {c.id: c for c in nbformat.read(ROOT / "solutions" / "02_gae.ipynb", as_version=4).cells}
    solved = copy.deepcopy(stub)
    for cell in solved.cells:
        if cell.cell_type == "code" and "YOUR CODE HERE" in cell.source:
            cell.source = solution[cell.id].source  # the student's answer: the solution
    folder.mkdir()
    nbformat.write(solved, folder / "alice.ipynb")

    bob = copy.deepcopy(solved)  # partly wrong, and untidy
    del bob.metadata["alignlab"]  # the set must come from the file name
    for cell in bob.cells:
        cell.source = cell.source.replace("def discounted_returns(", "def discounted_return(")  # renamed
        cell.source = cell.source.replace("r, v = rewards * m, values * m", "r, v = rewards, values")  # mask bug
    bob.cells = [c for c in bob.cells if c.source != 'check("compute_gae", compute_gae)']  # deleted check cell
    nbformat.write(bob, folder / "bob_02_gae.ipynb")

    (folder / "carol-gae.ipynb").write_text(nbformat.writes(solved)[:400])  # truncated upload: not JSON

    dave = copy.deepcopy(solved)  # a syntax error, then a loop that even ignores interrupts
    at = next(i for i, c in enumerate(dave.cells) if "def compute_gae" in c.source)
    dave.cells[at:at] = [nbformat.v4.new_code_cell("def oops(:\n    pass"),
                         nbformat.v4.new_code_cell("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                                   "while True:\n    pass")]
    nbformat.write(dave, folder / "dave.ipynb")

    nbformat.write(stub, folder / "erin.ipynb")  # handed in untouched


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grading")
    _submissions(tmp / "subs")
    t0 = time.monotonic()
    rows = grading.grade_folder(tmp / "subs", tmp / "grades.csv", timeout=35, executed=tmp / "executed",
                                progress=False)
    return rows, tmp, time.monotonic() - t0


def test_grader_gives_the_expected_scores(graded):
    rows, tmp, seconds = graded
    got = [(r["submission"], r["exercise_set"], r["status"], r["discounted_returns"], r["compute_gae"],
            r["points"], r["max_points"]) for r in rows]
    assert got == [
        ("alice.ipynb", "02_gae", "ok", 4, 6, 10, 10),
        ("bob_02_gae.ipynb", "02_gae", "cell errors", 0, 5, 5, 10),
        ("carol-gae.ipynb", "02_gae", "invalid notebook", 0, 0, 0, 10),
        ("dave.ipynb", "02_gae", "timeout", 4, 0, 4, 10),
        ("erin.ipynb", "02_gae", "ok", 0, 0, 0, 10),
    ], json.dumps(rows, indent=1)
    print(f"graded 5 submissions in {seconds:.1f} s")
    assert seconds < 180


def test_grader_feedback_and_errors_say_what_happened(graded):
    rows, tmp, _ = graded
    alice, bob, carol, dave, erin = rows
    assert alice["feedback"] == "" and alice["error"] == ""
    assert "no function named `discounted_returns`" in bob["feedback"]
    assert "padding leaks in" in bob["feedback"]
    assert "NameError" in bob["error"]
    assert "not a valid notebook" in carol["error"]
    assert "time limit of 35 s reached" in dave["error"]
    assert "compute_gae" in dave["feedback"]
    assert "not attempted" in erin["feedback"]
    assert erin["error"] == ""  # the untouched stub runs without a single cell error
    assert dave["seconds"] < 35 + grading.GRACE


def test_grader_csv_matches_the_rows_and_executed_copies_are_kept(graded):
    rows, tmp, _ = graded
    with open(tmp / "grades.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["submission"] for r in table] == [r["submission"] for r in rows]
    assert list(table[0]) == grading.COLUMNS
    assert [r["points"] for r in table] == ["10", "5", "0", "4", "0"]
    assert table[0]["bt_loss"] == ""  # not in this set
    executed = nbformat.read(tmp / "executed" / "alice.ipynb", as_version=4)
    summary = json.dumps(executed.cells[-1].outputs, ensure_ascii=False)
    assert "compute_gae" in summary and "6/6  ✅ passed" in summary
