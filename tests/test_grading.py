"""The exercise generator (solutions/ -> exercises/) and the instructor's grader.

The slow tests grade folders of real submissions, each in its own process:

* five built from the 02 (GAE) exercise notebook, the one that trains no model: correct,
  partly wrong (a renamed function, a deleted check cell, a mask bug), not valid JSON,
  never terminating (after a syntax error), and the untouched stub (35 s limit each);
* hostile ones of set 04 (`fixtures/hostile.py`), inside the bubblewrap sandbox with small
  memory, disk and process caps, so that they cannot endanger the machine: they patch the
  checks or the reference, kill their parent, fork without end, allocate all memory, fill
  the disk, write to the CSV, close stdout, never return;
* two on a machine without bubblewrap (simulated), where the grader says so and still
  judges from outside the student's process.

Fast ones check what the sandbox gives from inside one short process (no capabilities,
read-only `/` and `/dev`, a full scratch, hidden folders, no network), the banner's
honesty about the process cap, the audit of file reads, and the CSV's order with two jobs.
`fixtures/grading_class.py` builds the 40 submissions timed in solutions/README.md.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import sys
import time
from pathlib import Path

import hostile
import nbformat
import pytest

from alignlab.course import exercises, grading
from alignlab.course.checks import EXERCISE_SETS, max_points, run_check
from alignlab.course.grading import authorship, protocol, sandbox

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

    def fake_grade(path, root, timeout, executed, force_set, **options):
        seen.append(out.read_text().count("\n"))  # rows already on disk when the next one starts
        return {c: "" for c in grading.COLUMNS} | {"submission": path.name, "points": 1, "max_points": 1}

    monkeypatch.setattr(grading.grade, "grade_notebook", fake_grade)
    grading.grade_folder(tmp_path / "subs", out, progress=False)
    assert seen == [1, 2, 3]  # header, then one more row each time


def test_parallel_rows_stay_in_submission_order_and_are_written_as_soon_as_they_can_be(tmp_path, monkeypatch):
    import threading

    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ["a.ipynb", "b.ipynb", "c.ipynb", "d.ipynb"]:
        (subs / name).write_text("{}")
    out = tmp_path / "grades.csv"
    a_may_finish, on_disk = threading.Event(), {}

    def fake_grade(path, root, timeout, executed, force_set, **options):
        if path.name == "a.ipynb":  # the first submission is the slowest
            assert a_may_finish.wait(10)
            on_disk["when a finished"] = out.read_text().count("\n")
        if path.name == "c.ipynb":
            a_may_finish.set()  # b and c are done (two jobs), a is not: nothing may be written yet
        return {c: "" for c in grading.COLUMNS} | {"submission": path.name, "points": 1, "max_points": 1}

    monkeypatch.setattr(grading.grade, "grade_notebook", fake_grade)
    rows = grading.grade_folder(subs, out, progress=False, jobs=2)
    assert [r["submission"] for r in rows] == ["a.ipynb", "b.ipynb", "c.ipynb", "d.ipynb"]
    assert on_disk["when a finished"] == 1  # only the header: b's row waits for a's
    with open(out, newline="") as f:
        assert [r["submission"] for r in csv.DictReader(f)] == ["a.ipynb", "b.ipynb", "c.ipynb", "d.ipynb"]


def test_the_sandbox_limits_and_csv_are_arguments_and_nothing_outlives_a_call(tmp_path, monkeypatch):
    from alignlab.course.grading import judge

    seen = []

    def fake_run(sources, set_name, timeout, box, limits, hide, workdir, reserve):
        seen.append((box, limits, hide))
        return judge.Run()

    monkeypatch.setattr(judge, "run_submission", fake_run)
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(_nb("x = 1"), subs / "a_dpo.ipynb")
    out, limits = tmp_path / "out" / "g.csv", sandbox.Limits(processes=7)
    grading.grade_folder(subs, out, progress=False, sandbox_choice="none", limits=limits)
    grading.grade_notebook(subs / "a_dpo.ipynb")  # a direct call: the defaults, not the folder's choices
    (box, used, hide), (_, default, hide_again) = seen
    assert box.kind == "none" and used is limits and default == sandbox.Limits()
    assert out.resolve() in hide and out.resolve() not in hide_again
    assert subs.resolve() in hide and subs.resolve() in hide_again


def test_the_banner_says_what_holds_and_what_does_not(monkeypatch):
    limits = sandbox.Limits(processes=24)
    box = sandbox.Sandbox("bwrap", "bubblewrap 0.8.0", cgroups=False)
    assert box.describe(limits).startswith("sandbox: bubblewrap 0.8.0 (no network, own PID namespace")
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 0)  # root: RLIMIT_NPROC does not bind it
    assert not box.process_cap and "NO cap on processes" in box.describe(limits)
    assert sandbox.Sandbox("bwrap", "b", cgroups=True).process_cap
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    assert box.process_cap and "24 processes of your user (RLIMIT_NPROC" in box.describe(limits)
    none = sandbox.Sandbox("none").describe(limits)
    assert none.startswith("WARNING: NO SANDBOX") and "apt-get install bubblewrap" in none


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
                                progress=False, jobs=2)
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


# ---------------------------------------------------------------------------
# The grader: authorship flags and the channel (no kernel)
# ---------------------------------------------------------------------------


def _code(folder: str, set_name: str) -> list[str]:
    nb = nbformat.read(ROOT / folder / f"{set_name}.ipynb", as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_authorship_flags_calls_of_the_library_and_reads_outside_the_folder():
    for set_name in EXERCISE_SETS:  # the solutions themselves need no review
        assert authorship.review_flags(_code("solutions", set_name), EXERCISE_SETS[set_name]) == [], set_name
    solution, _ = hostile.HOSTILE["calls_reference"]
    assert authorship.review_flags([hostile.IMPORTS, solution], ["dpo_loss"]) == [
        "`dpo_loss` uses alignlab.losses.dpo_loss"]
    sneaky = ("import alignlab.course.checks as c\nimport alignlab\n"
              "def helper(x):\n    return alignlab.losses.bt_loss(x, x)\n"
              "def bt_loss(a, b):\n    return helper(a)\n"
              "text = open('/work/solutions/01_bradley_terry.py').read()\n%timeit 1")
    flags = authorship.review_flags([sneaky], ["bt_loss", "rm_accuracy"])
    assert flags == ["`bt_loss` uses alignlab.losses.bt_loss", "reads /work/solutions/01_bradley_terry.py"]
    # a local variable named like an imported module is not that module; an alias of it still is
    shadow = ("from alignlab.methods import dpo\nimport alignlab.losses as losses\n"
              "def dpo_loss(a, b, c, d, beta):\n    dpo = a - b\n    return dpo.mean()\n"
              "def kto_loss(a, b):\n    f = losses.kto_loss\n    return f(a, b)")
    assert authorship.review_flags([shadow], ["dpo_loss", "kto_loss"]) == ["`kto_loss` uses alignlab.losses.kto_loss"]


AUDIT_PROBE = """
import json, os, sys
from alignlab.course.grading import student
class Client:
    flags = []
student._audit_reads(Client, os.getcwd())
cell = compile(sys.argv[1], "<ipython-input-1-0>", "exec")
exec(cell, {})
print(json.dumps(Client.flags))
"""


def test_the_audit_notes_files_the_cells_read_not_files_libraries_read(tmp_path):
    """In a venv, site-packages lies inside the "platstdlib" folder: a library's reads are still its own."""
    import subprocess

    secret = tmp_path / "elsewhere.txt"
    secret.write_text("answers")
    nb, data = tmp_path / "nb.ipynb", tmp_path / "data.json"
    nbformat.write(_nb("x = 1"), nb)
    data.write_text("{}")
    (tmp_path / "work").mkdir()
    cell = (f"import nbformat, json\nnbformat.read({str(nb)!r}, as_version=4)\n"  # a library reads it
            f"json.load(open({str(data)!r}))\n"  # the cell reads it, through the standard library
            f"open({str(secret)!r}).read()\nopen('mine.txt', 'w').write('x')\nopen('mine.txt').read()")
    out = subprocess.run([sys.executable, "-c", AUDIT_PROBE, cell], cwd=tmp_path / "work", capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [f"reads {data.resolve()}", f"reads {secret.resolve()}"]


def test_the_channel_carries_values_never_objects():
    import torch

    x = torch.arange(6.0).reshape(2, 3).requires_grad_(True)
    frame = protocol.pack({"out": (x, 1.5, float("inf"), None, [True, "s"], {"k": 2}), "other": object()})
    r, w = __import__("os").pipe()
    __import__("os").write(w, frame)
    got = protocol.Reader(r).recv(time.monotonic() + 5)
    t, f, inf, none, lst, d = got["out"]
    assert torch.equal(t, x.detach()) and t.requires_grad and (f, inf, none, lst, d) == (
        1.5, float("inf"), None, [True, "s"], {"k": 2})
    assert type(got["other"]).__name__ == "object" and isinstance(got["other"], protocol.Opaque)
    for bad in [{"$t": 0, "dtype": "object", "shape": [1]}, {"$t": 0, "dtype": "float32", "shape": [3]},
                {"$pickle": "..."}]:
        with pytest.raises(protocol.ProtocolError):
            protocol.decode(bad, [b"\0" * 4])
    __import__("os").write(w, b"GARBAGE!" * 2)
    with pytest.raises(protocol.ProtocolError):
        protocol.Reader(r).recv(time.monotonic() + 5)


# ---------------------------------------------------------------------------
# The grader: hostile submissions, inside the sandbox with small caps
# ---------------------------------------------------------------------------

HOSTILE_LIMITS = sandbox.Limits(memory_mb=1536, processes=24, scratch_mb=32, file_mb=16)


def _honest_points(solution: str) -> int:
    ns: dict = {}
    exec(hostile.IMPORTS + "\n" + solution, ns)
    return run_check("dpo_loss", ns["dpo_loss"]).points


@pytest.fixture(scope="module")
def hostile_graded(tmp_path_factory):
    if not sandbox.detect("auto").isolated:
        pytest.skip("bubblewrap is not available here: hostile submissions are only run inside its sandbox "
                    "(apt-get install bubblewrap)")
    tmp = tmp_path_factory.mktemp("hostile")
    subs, out = tmp / "subs", tmp / "grades.csv"
    subs.mkdir()
    cases = dict(hostile.HOSTILE)
    if not sandbox.detect("auto").process_cap:  # root without a pids cgroup: nothing would bound it
        del cases["fork_bomb"]
    for name, (solution, attack) in cases.items():
        nbformat.write(hostile.notebook(solution, attack.replace("{csv!r}", repr(str(out)))), subs / f"{name}.ipynb")
    nbformat.write(hostile.notebook(hostile.CORRECT, "x = 1"), subs / "zz_honest.ipynb")
    printed = io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stdout(printed):
        rows = grading.grade_folder(subs, out, timeout=30, progress=True, jobs=2, limits=HOSTILE_LIMITS)
    return {Path(r["submission"]).stem: r for r in rows}, out, printed.getvalue(), time.monotonic() - t0


@pytest.mark.slow
def test_hostile_submissions_score_no_more_than_their_honest_solution(hostile_graded):
    rows, out, printed, seconds = hostile_graded
    print(f"graded {len(rows)} hostile submissions in {seconds:.1f} s")
    for name, row in rows.items():
        print(f"{name:18} {row['status']:12} {row['points']}/6 {row['seconds']:5} s  {row['error'][:110]}")
    assert printed.startswith("sandbox: bubblewrap")  # the sandbox in use, named in the grader's output
    honest = {name: _honest_points(solution) for name, (solution, _) in hostile.HOSTILE.items()}
    assert honest["full_marks"] == 0 and honest["patched_reference"] < 6 and honest["kill_parent"] == 6
    for name, row in rows.items():
        assert row["points"] <= honest.get(name, 6), (name, row)
    # the attacks on the judge change nothing: the points are the honest solution's
    assert rows["full_marks"]["points"] == 0
    assert rows["patched_reference"]["points"] == honest["patched_reference"]
    assert "reference is missing" in rows["patched_reference"]["feedback"]
    # the attacks on the machine cost at most that submission's own run
    for name in ("kill_parent", "closes_stdout", "disk_filler", "csv_writer", "fork_bomb", "zz_honest"):
        if name in rows:
            assert rows[name]["points"] == 6, (name, rows[name])
    assert rows["kill_parent"]["status"] == "ok" and rows["zz_honest"]["status"] == "ok"
    if "fork_bomb" in rows:  # held by the pids cgroup (root) or RLIMIT_NPROC (a user)
        assert "BlockingIOError" in rows["fork_bomb"]["error"] or "fork" in rows["fork_bomb"]["error"].lower()
    assert "No space left on device" in rows["disk_filler"]["error"]  # the private /tmp is full, not the disk
    assert rows["csv_writer"]["status"] == "cell errors"
    assert rows["memory_hog"]["status"] in ("cell errors", "kernel died") and (
        "MemoryError" in rows["memory_hog"]["error"] or "memory" in rows["memory_hog"]["error"])
    assert rows["never_returns"]["status"] == "killed" and rows["never_returns"]["points"] == 6  # its check cell
    assert rows["never_returns"]["seconds"] < 30 + grading.GRACE + 5
    # authorship: full points, but flagged
    assert rows["calls_reference"]["points"] == 6
    assert rows["calls_reference"]["review"] == "needs review: `dpo_loss` uses alignlab.losses.dpo_loss"
    assert all(not rows[n]["review"] for n in ("zz_honest", "kill_parent", "full_marks"))


@pytest.mark.slow
def test_hostile_submissions_leave_one_row_each_and_the_csv_untouched(hostile_graded):
    rows, out, _, _ = hostile_graded
    with open(out, newline="") as f:
        table = list(csv.DictReader(f))
    expected = [*hostile.HOSTILE, "zz_honest"]
    if not sandbox.detect("auto").process_cap:
        expected.remove("fork_bomb")
    assert [r["submission"] for r in table] == sorted(f"{n}.ipynb" for n in expected)
    assert "hostile.ipynb" not in out.read_text()


SANDBOX_PROBE = """
import errno, json, os, socket
def write(path, mb=0):
    try:
        with open(path, "wb") as f:
            f.write(b"x" * (mb * 2**20 or 1))
        return "written"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
r = {"cap_eff": int([l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0], 16)}
r["dev"], r["etc"], r["cgroup"] = write("/dev/x"), write("/etc/x"), write("/sys/fs/cgroup/pids/cgroup.procs")
r["hidden"] = os.listdir(HIDDEN)
r["home"], r["cache"] = sorted(os.listdir(HOME)), os.listdir(CACHE)
r["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
r["tmp"] = [write(f"/tmp/part{i}", 1) for i in range(12)][-1]
r["shm"] = [write(f"/dev/shm/part{i}", 1) for i in range(12)][-1]
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    r["net"] = "connected"
except OSError as e:
    r["net"] = errno.errorcode.get(e.errno, str(e))
print(json.dumps(r))
"""


def test_the_sandbox_drops_capabilities_and_bounds_every_place_it_can_write(tmp_path, monkeypatch):
    """What bubblewrap gives a submission (here as on CI): checked from inside, in one short process."""
    import subprocess

    box = sandbox.detect("auto")
    if not box.isolated:
        pytest.skip("bubblewrap is not available here (apt-get install bubblewrap)")
    secret = tmp_path / "submissions"
    secret.mkdir()
    (secret / "bob.ipynb").write_text("{}")
    home = tmp_path / "home"  # the grader's home: its keys hidden, its model cache bound back
    (home / ".cache" / "alignlab").mkdir(parents=True)
    (home / ".cache" / "alignlab" / "sft-model.safetensors").write_text("weights")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("secret key")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ALIGNLAB_CACHE", raising=False)
    limits = sandbox.Limits(scratch_mb=8)
    probe = (SANDBOX_PROBE.replace("HIDDEN", repr(str(secret))).replace("HOME", repr(str(home)))
             .replace("CACHE", repr(str(home / ".cache" / "alignlab"))))
    cmd = box.command([sys.executable, "-c", probe], [secret], limits)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["cap_eff"] == 0  # even when the grader runs as root: no remounting /, no raising its limits
    assert r["dev"] == r["etc"] == "EROFS" and r["cgroup"] in ("EROFS", "ENOENT", "EACCES")
    assert r["hidden"] == []  # the submissions folder is an empty tmpfs inside
    assert r["home"] == [".cache"] and r["cache"] == ["sft-model.safetensors"]  # no .ssh
    assert len(r["pids"]) <= 3  # its own PID namespace: bwrap's init and itself, not the grader
    assert r["tmp"] == r["shm"] == "ENOSPC"  # 12 MB do not fit in a scratch of 8 MB
    assert r["net"] == "ENETUNREACH"  # its own network namespace has no route anywhere


# ---------------------------------------------------------------------------
# The grader on a machine without bubblewrap (simulated)
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_without_a_sandbox_the_grader_says_so_once_and_still_judges_from_outside(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)  # no bwrap on this machine
    sandbox._detect.cache_clear()
    try:
        box = sandbox.detect()
        assert not box.isolated and "NO SANDBOX" in box.describe(HOSTILE_LIMITS)
        subs = tmp_path / "subs"
        subs.mkdir()
        for name in ("full_marks", "kill_parent"):
            solution, attack = hostile.HOSTILE[name]
            nbformat.write(hostile.notebook(solution, attack), subs / f"{name}.ipynb")
        rows = grading.grade_folder(subs, tmp_path / "g.csv", timeout=30, progress=False, jobs=2,
                                    limits=HOSTILE_LIMITS)
    finally:
        sandbox._detect.cache_clear()
    err = capsys.readouterr().err
    assert err.count("NO SANDBOX") == 1
    got = [(r["submission"], r["status"], r["points"]) for r in rows]
    assert got == [("full_marks.ipynb", "ok", 0), ("kill_parent.ipynb", "ok", 6)]  # its parent was a keeper
