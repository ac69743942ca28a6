"""Grade a folder of submitted exercise notebooks into a CSV.

    python -m alignlab grade SUBMISSIONS_DIR --out grades.csv [--timeout 300] [--executed DIR]

Every ``*.ipynb`` under ``SUBMISSIONS_DIR`` (sub-folders included, checkpoints skipped)
is one submission. For each, in turn:

1. **Which exercise set?** ``metadata.alignlab.exercise_set`` (written into every
   generated exercise notebook), else the file name (``02_gae``, ``gae`` or ``02`` as a
   word in it), else the ``check("...")`` calls in its cells. ``--set`` forces one.
2. **Run it** in a fresh kernel (``nbclient``), with a copy of the environment plus
   ``ALIGNLAB_GRADES_FILE`` (where ``checks.check`` appends its results as JSON lines)
   and ``ALIGNLAB_CHECK_TIMEOUT``. Cells that raise do not stop the run. The grader
   appends one cell of its own, ``checks.grade_namespace(set, globals())``, which runs
   every check of the set on the functions *as the notebook left them*: a deleted check
   cell changes nothing, a deleted or renamed function scores 0.
3. **Time limit** (``--timeout`` seconds, default 300, for the whole submission, kernel
   start included): the student's cells get the time minus a reserve for the grader's
   cell (20 %, between 10 and 60 s). A cell still running when that time is up is
   interrupted, and the remaining student cells are skipped; the grader's cell still
   runs. A submission that ignores the interrupt is killed at the limit (plus a few
   seconds' grace) and keeps the points its check cells had recorded.
4. **Score** each exercise: the grader cell's result, else the last result a check cell
   recorded, else 0. One point per hidden test case (``checks.max_points``).
5. **Write one CSV row** at once (the file is flushed after every row, so a crash or a
   Ctrl-C keeps the rows already graded).

A broken submission costs its author points, never the run: a file that is not valid
JSON, a syntax error, an infinite loop, a deleted cell or a renamed function gives a
row with the points earned (often 0), a ``status`` and an ``error``.

CSV columns: ``submission`` (path relative to the folder), ``exercise_set``, ``status``
(``ok`` | ``cell errors`` | ``timeout`` | ``killed`` | ``kernel died`` | ``invalid notebook``
| ``unknown exercise set``), ``points``, ``max_points``, ``seconds``, one column of points
per exercise of every set (blank when not in the submission's set), ``feedback`` (the
hint of every exercise not passed) and ``error`` (what went wrong with the run).

Security: submissions are run UNSANDBOXED
------------------------------------------
A submission is arbitrary Python code, executed with the grader's user, files and
network. Grade untrusted submissions inside a throw-away container without network,
for example (an image with alignlab installed, and the model cache mounted so that
notebooks that need the SFT model do not retrain it)::

    docker run --rm --network none --cpus 2 --memory 4g \\
        -v "$PWD/submissions:/submissions:ro" -v "$PWD/out:/out" \\
        -v "$HOME/.cache/alignlab:/cache" -e ALIGNLAB_CACHE=/cache \\
        alignlab python -m alignlab grade /submissions --out /out/grades.csv

Inside one container, submissions can still read each other's files; for isolation
between students run one container per submission (one sub-folder each) and
concatenate the CSVs. The checks test behaviour, not authorship: a student who calls
the library's own function passes (review the code if that matters to you).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

from .checks import EXERCISE_SETS, GRADES_FILE_ENV, TIMEOUT_ENV, max_points

ALL_EXERCISES = [name for names in EXERCISE_SETS.values() for name in names]
COLUMNS = (["submission", "exercise_set", "status", "points", "max_points", "seconds"]
           + ALL_EXERCISES + ["feedback", "error"])
GRADER_SOURCE = ("# added by the alignlab grader: check the functions as the notebook left them\n"
                 "from alignlab.course.checks import grade_namespace as _alignlab_grade_namespace\n"
                 "_alignlab_grade_namespace({set_name!r}, globals())")
GRACE = 15.0
"""Seconds past the time limit before a submission that ignores interrupts is killed."""


# ---------------------------------------------------------------------------
# Which exercise set?
# ---------------------------------------------------------------------------


def _words(text: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", text.lower())) - {""}


def detect_set(nb, path: Path) -> str | None:
    """The exercise set of a submission: from its metadata, its file name, or its checks."""
    if nb is not None:
        meta = (nb.get("metadata") or {}).get("alignlab") or {}
        if meta.get("exercise_set") in EXERCISE_SETS:
            return meta["exercise_set"]
    stem = path.stem.lower()
    for name in EXERCISE_SETS:  # "02_gae" anywhere in the name
        if name in stem:
            return name
    words, flat = _words(stem), "_".join(re.split(r"[^a-z0-9]+", stem))
    for name in EXERCISE_SETS:  # "gae", "bradley_terry" or "02" as words
        number, topic = name.split("_", 1)
        if re.search(rf"(^|_){topic}(_|$)", flat) or number in words:
            return name
    if nb is not None:
        source = "\n".join(c.get("source", "") for c in nb.get("cells", []) if c.get("cell_type") == "code")
        for name in EXERCISE_SETS:
            if f"summary({name!r})" in source or f'summary("{name}")' in source:
                return name
        checked = set(re.findall(r"check\(\s*['\"](\w+)['\"]", source))
        for name, exercises in EXERCISE_SETS.items():
            if checked & set(exercises):
                return name
    return None


# ---------------------------------------------------------------------------
# Running one notebook
# ---------------------------------------------------------------------------


def _grader_cell(set_name: str):
    import nbformat

    cell = nbformat.v4.new_code_cell(GRADER_SOURCE.format(set_name=set_name))
    cell.metadata["alignlab_grader"] = True
    return cell


def _is_grader(cell) -> bool:
    return bool(cell.get("metadata", {}).get("alignlab_grader"))


def _client_class():
    from nbclient import NotebookClient

    class GradingClient(NotebookClient):
        """Skips the student's cells once their time is up; the grader's cell always runs."""

        student_deadline: float = float("inf")
        skipped: int = 0
        interrupted: int = 0

        async def _async_handle_timeout(self, timeout, cell=None):
            self.interrupted += 1
            return await super()._async_handle_timeout(timeout, cell)

        async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
            if (cell.cell_type == "code" and not _is_grader(cell)
                    and time.monotonic() >= self.student_deadline):
                import nbformat

                self.skipped += 1
                cell.outputs = [nbformat.v4.new_output(
                    "stream", name="stderr", text="[grader] not run: the time limit was reached\n")]
                return cell
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)

    return GradingClient


def _reserve(timeout: float) -> float:
    """Seconds kept for the grader's own cell out of a submission's time limit."""
    return min(60.0, max(10.0, 0.2 * timeout))


async def _execute(nb, set_name: str, timeout: float, workdir: Path, env: dict) -> dict:
    """Run ``nb`` (with the grader cell appended) in place; return run facts."""
    from nbclient.exceptions import DeadKernelError

    reserve = _reserve(timeout)
    n_checks = len(EXERCISE_SETS[set_name])
    env = {**env, TIMEOUT_ENV: f"{max(1.0, reserve / (n_checks + 1)):.1f}"}
    start = time.monotonic()
    client = _client_class()(
        nb, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout={"ename": "TimeoutError", "evalue": "the grader's time limit was reached",
                          "traceback": []},
        shutdown_kernel="immediate", startup_timeout=max(30, int(timeout)), iopub_timeout=2,
        record_timing=False, extra_arguments=["--IPKernelApp.log_level=ERROR"])
    client.student_deadline = start + timeout - reserve
    end = start + timeout
    client.timeout_func = lambda cell: max(1.0, (end if _is_grader(cell) else client.student_deadline)
                                           - time.monotonic())
    facts = {"status": "ok", "error": ""}
    try:
        await asyncio.wait_for(client.async_execute(env=env, cwd=str(workdir)), timeout + GRACE)
    except asyncio.TimeoutError:
        facts.update(status="killed", error=f"still running after {timeout + GRACE:.0f} s "
                     "(ignored the interrupt?): the kernel was killed")
    except DeadKernelError:
        facts.update(status="kernel died", error="the kernel died (os._exit, a crash, or out of memory?)")
    except Exception as e:  # e.g. the kernel did not start
        facts.update(status="kernel died", error=f"{type(e).__name__}: {str(e)[:200]}")
    facts["skipped"], facts["interrupted"] = client.skipped, client.interrupted
    return facts


def _run_in_fresh_loop(coro):
    """asyncio.run, also from code that already has a running loop (e.g. Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box = {}
    thread = threading.Thread(target=lambda: box.update(out=asyncio.run(coro)))
    thread.start()
    thread.join()
    return box["out"]


def _cell_errors(nb) -> list[str]:
    errors = []
    for i, cell in enumerate(nb.cells):
        if _is_grader(cell):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"cell {i}: {out.get('ename')}: {str(out.get('evalue', ''))[:80]}")
    return errors


def _read_results(path: Path) -> dict[str, dict]:
    """Per exercise: the grader cell's last result, else the last one a check cell recorded."""
    grader, cells = {}, {}
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            (grader if rec.get("source") == "grader" else cells)[rec.get("name")] = rec
    return {**cells, **grader}


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _feedback(set_name: str, results: dict) -> str:
    parts = []
    for name in EXERCISE_SETS[set_name]:
        r = results.get(name)
        if r is None:
            parts.append(f"{name}: not graded (the notebook never defined or checked it in time)")
        elif r.get("status") != "passed":
            hint = r.get("hint") or r.get("status", "")
            parts.append(f"{name} ({r.get('points', 0)}/{r.get('max_points', '?')}): {_short(hint.lstrip(' •'))}")
    return " | ".join(parts)


def grade_notebook(path: Path, root: Path | None = None, timeout: float = 300.0,
                   executed: Path | None = None, force_set: str | None = None) -> dict:
    """Grade one submitted notebook; return its CSV row (a dict over ``COLUMNS``)."""
    import nbformat

    path = Path(path)
    root = Path(root) if root is not None else path.parent
    t0 = time.monotonic()
    row = {c: "" for c in COLUMNS}
    row["submission"] = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    row.update(points=0, max_points=0)

    def done(**kw):
        row.update(kw)
        row["seconds"] = round(time.monotonic() - t0, 1)
        return row

    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8", errors="replace"), as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("no 'cells' list")
    except Exception as e:
        set_name = force_set or detect_set(None, path)
        if set_name:
            row.update(exercise_set=set_name, max_points=sum(max_points(n) for n in EXERCISE_SETS[set_name]),
                       **{n: 0 for n in EXERCISE_SETS[set_name]})
        return done(status="invalid notebook", error=_short(f"not a valid notebook: {type(e).__name__}: {e}"))

    set_name = force_set or detect_set(nb, path)
    if set_name is None:
        return done(status="unknown exercise set",
                    error="could not tell which exercise set this is (no metadata, no known name); use --set")
    exercises = EXERCISE_SETS[set_name]
    row.update(exercise_set=set_name, max_points=sum(max_points(n) for n in exercises))

    # A clean copy: code and markdown cells only, no outputs, plus the grader's cell.
    cells = []
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell.outputs, cell.execution_count = [], None
            cells.append(cell)
        elif cell.get("cell_type") == "markdown":
            cells.append(cell)
    nb.cells = cells + [_grader_cell(set_name)]

    with tempfile.TemporaryDirectory(prefix="alignlab-grade-") as tmp:
        results_file = Path(tmp) / "results.jsonl"
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        env = {**os.environ, GRADES_FILE_ENV: str(results_file)}
        facts = _run_in_fresh_loop(_execute(nb, set_name, timeout, workdir, env))
        results = _read_results(results_file)

    errors = _cell_errors(nb)
    status, error = facts["status"], facts["error"]
    if status == "ok" and (facts["interrupted"] or facts["skipped"]):
        status = "timeout"
        error = (f"time limit of {timeout:g} s reached: {facts['interrupted']} cell(s) interrupted"
                 + (f", {facts['skipped']} cell(s) not run" if facts["skipped"] else ""))
    elif status == "ok" and errors:
        status = "cell errors"
    if errors and status not in ("killed", "timeout"):
        error = (error + "; " if error else "") + f"{len(errors)} cell(s) raised: " + "; ".join(errors)
    points = 0
    for name in exercises:
        r = results.get(name)
        row[name] = int(r.get("points", 0)) if r else 0
        points += row[name]
    if executed is not None:
        out = Path(executed) / row["submission"]
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out)
    return done(status=status, points=points, feedback=_feedback(set_name, results), error=_short(error, 300))


def find_submissions(folder: Path) -> list[Path]:
    """Every notebook under ``folder`` (checkpoints excluded), in a stable order."""
    return sorted(p for p in Path(folder).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def grade_folder(folder, out="grades.csv", timeout: float = 300.0, executed=None,
                 force_set: str | None = None, progress: bool = True) -> list[dict]:
    """Grade every notebook under ``folder``; write ``out`` one flushed row at a time."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"grade: {str(folder)!r} is not a folder of submitted notebooks")
    if force_set is not None and force_set not in EXERCISE_SETS:
        raise ValueError(f"grade: unknown exercise set {force_set!r}; the sets are {sorted(EXERCISE_SETS)}")
    paths = find_submissions(folder)
    rows = []
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        f.flush()
        for i, path in enumerate(paths, 1):
            row = grade_notebook(path, folder, timeout, executed, force_set)
            writer.writerow(row)
            f.flush()
            rows.append(row)
            if progress:
                print(f"[{i}/{len(paths)}] {row['submission']}: {row['exercise_set'] or '?'} "
                      f"{row['points']}/{row['max_points']} points, {row['status']} ({row['seconds']} s)",
                      flush=True)
    if progress:
        print(f"wrote {out} ({len(rows)} submission(s))")
    return rows


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def cmd_grade(args) -> int:
    try:
        grade_folder(args.submissions, args.out, args.timeout, args.executed, args.set)
    except (FileNotFoundError, ValueError) as e:
        print(e, file=sys.stderr)
        return 2
    return 0


def add_parser(sub) -> None:
    """Register ``grade`` on the ``python -m alignlab`` command line."""

    p = sub.add_parser("grade", help="grade a folder of submitted exercise notebooks into a CSV",
                       description="Run each submitted notebook in a fresh kernel with a time limit "
                                   "and write one CSV row of points per submission. Submissions run "
                                   "UNSANDBOXED: see `python -c 'import alignlab.course.grading as g; "
                                   "help(g)'` or solutions/README.md for running it in a container.")
    p.add_argument("submissions", help="folder of submitted .ipynb files (searched recursively)")
    p.add_argument("--out", default="grades.csv", help="CSV file to write (default grades.csv)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="time limit per submission in seconds (default 300)")
    p.add_argument("--executed", default=None, help="also save each executed notebook under this folder")
    p.add_argument("--set", default=None, choices=sorted(EXERCISE_SETS),
                   help="exercise set of every submission (default: detect it per notebook)")
    p.set_defaults(func=cmd_grade)
