"""Grade a folder of submitted notebooks: `grade_folder` -> `grade_notebook` -> `judge.run_submission`.

The package's docstring (`alignlab.course.grading`) says what the grader does and what each
CSV column holds. Every input of a grading call is one of its arguments: the sandbox, the
limits and the CSV path that `grade_folder` chose go down the chain of calls, and nothing
is kept between two calls.
"""

from __future__ import annotations

import csv
import os
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..checks import EXERCISE_SETS, format_summary, max_points
from . import authorship, judge
from .sandbox import Limits, Sandbox
from .sandbox import detect as detect_sandbox

ALL_EXERCISES = [name for names in EXERCISE_SETS.values() for name in names]
COLUMNS = (["submission", "exercise_set", "status", "points", "max_points", "seconds"]
           + ALL_EXERCISES + ["feedback", "error", "review"])
GRADER_SOURCE = ("# added by the alignlab grader: every exercise checked (from outside the notebook's process)\n"
                 "# on the functions as the notebook left them\n"
                 "summary({set_name!r})")
GRACE = judge.SLACK
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
# Grading one notebook
# ---------------------------------------------------------------------------


def _grader_cell(set_name: str, text: str):
    import nbformat

    cell = nbformat.v4.new_code_cell(GRADER_SOURCE.format(set_name=set_name))
    cell.metadata["alignlab_grader"] = True
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
    return cell


def _is_grader(cell) -> bool:
    return bool(cell.get("metadata", {}).get("alignlab_grader"))


def _reserve(timeout: float) -> float:
    """Seconds kept for the grader's own pass out of a submission's time limit."""
    return min(60.0, max(10.0, 0.2 * timeout))


def _cell_errors(nb) -> list[str]:
    errors = []
    for i, cell in enumerate(nb.cells):
        if _is_grader(cell):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"cell {i}: {out.get('ename')}: {str(out.get('evalue', ''))[:80]}")
    return errors


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _feedback(set_name: str, results: dict) -> str:
    parts = []
    for name in EXERCISE_SETS[set_name]:
        r = results.get(name)
        if r is None:
            parts.append(f"{name}: not graded (the notebook never defined or checked it in time)")
        elif r.status != "passed":
            hint = r.hint or r.status
            parts.append(f"{name} ({r.points}/{r.max_points}): {_short(hint.lstrip(' •'))}")
    return " | ".join(parts)


def _hidden_paths(root: Path, executed, out) -> list[Path]:
    """What a sandboxed submission must not see: the submissions (``root``), the outputs (the CSV
    ``out``, the ``executed`` folder), the solutions."""
    import alignlab

    hide = [Path(root).resolve()]
    if out is not None:
        hide.append(Path(out).resolve())
    if executed is not None and Path(executed).exists():
        hide.append(Path(executed).resolve())
    solutions = Path(alignlab.__file__).resolve().parents[1] / "solutions"
    if solutions.is_dir():
        hide.append(solutions)
    return hide


def grade_notebook(path: Path, root: Path | None = None, timeout: float = 300.0,
                   executed: Path | None = None, force_set: str | None = None, *,
                   sandbox: Sandbox | None = None, limits: Limits | None = None, out: Path | None = None) -> dict:
    """Grade one submitted notebook; return its CSV row (a dict over ``COLUMNS``).

    root: the submissions folder (row names are relative to it; hidden from the submission),
    default the notebook's folder. executed: also save the executed notebook under this folder.
    force_set: its exercise set (default: `detect_set`). sandbox: a `sandbox.Sandbox` (default
    `sandbox.detect()`: bubblewrap when it works here, or $ALIGNLAB_SANDBOX). limits: a
    `sandbox.Limits` (default ``Limits()``). out: the grades CSV, hidden from the submission.
    """
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

    # A clean copy: code and markdown cells only, no outputs.
    cells = []
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell.outputs, cell.execution_count = [], None
            cells.append(cell)
        elif cell.get("cell_type") == "markdown":
            cells.append(cell)
    nb.cells = cells
    code = [c for c in cells if c.cell_type == "code"]
    sources = [c.source if isinstance(c.source, str) else "" for c in code]
    notes = authorship.review_flags(sources, exercises)

    box = sandbox if sandbox is not None else detect_sandbox()
    with tempfile.TemporaryDirectory(prefix="alignlab-grade-") as tmp:
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        run = judge.run_submission(sources, set_name, timeout, box, limits or Limits(),
                                   _hidden_paths(root, executed, out), workdir, _reserve(timeout))
    for i, cell in enumerate(code):
        cell.outputs = [nbformat.from_dict(o) for o in run.outputs.get(i, [])]
    results = run.results
    nb.cells.append(_grader_cell(set_name, format_summary(exercises, results)))

    errors = _cell_errors(nb)
    status, error = run.status, run.error
    if status == "ok" and (run.interrupted or run.skipped):
        status = "timeout"
        error = (f"time limit of {timeout:g} s reached: {run.interrupted} cell(s) interrupted"
                 + (f", {run.skipped} cell(s) not run" if run.skipped else ""))
    elif status == "ok" and errors:
        status = "cell errors"
    if errors and status not in ("killed", "timeout"):
        error = (error + "; " if error else "") + f"{len(errors)} cell(s) raised: " + "; ".join(errors)
    points = 0
    for name in exercises:
        r = results.get(name)
        row[name] = int(r.points) if r else 0
        points += row[name]
    notes += [f for f in run.flags if f not in notes]
    if executed is not None:
        saved = Path(executed) / row["submission"]
        saved.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, saved)
    return done(status=status, points=points, feedback=_feedback(set_name, results), error=_short(error, 300),
                review=_short("needs review: " + "; ".join(notes), 300) if notes else "")


def find_submissions(folder: Path) -> list[Path]:
    """Every notebook under ``folder`` (checkpoints excluded), in a stable order."""
    return sorted(p for p in Path(folder).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _write_csv(out: Path, rows: list[dict]) -> None:
    """Rewrite ``out`` with ``rows`` (atomically: a reader sees the old or the new table)."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)


class _Progress:
    """A progress bar on a terminal; one line per submission otherwise."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.done, self.t0 = total, enabled, 0, time.monotonic()
        self.tty = enabled and sys.stderr.isatty()
        self.lock = threading.Lock()

    def update(self, row: dict) -> None:
        if not self.enabled:
            return
        with self.lock:
            self.done += 1
            line = (f"{row['submission']}: {row['exercise_set'] or '?'} {row['points']}/{row['max_points']} "
                    f"points, {row['status']} ({row['seconds']} s)")
            if self.tty:
                width = 30
                fill = int(width * self.done / max(1, self.total))
                bar = "#" * fill + "." * (width - fill)
                sys.stderr.write(f"\r[{bar}] {self.done}/{self.total} {time.monotonic() - self.t0:5.0f} s  "
                                 f"{_short(line, 60):<60}")
                if self.done == self.total:
                    sys.stderr.write("\n")
                sys.stderr.flush()
            else:
                print(f"[{self.done}/{self.total}] {line}", flush=True)


def _safe_grade(path, folder, timeout, executed, force_set, sandbox, limits, out) -> dict:
    try:
        return grade_notebook(path, folder, timeout, executed, force_set, sandbox=sandbox, limits=limits, out=out)
    except Exception as e:  # a bug of the grader: the row says so, the run goes on
        row = {c: "" for c in COLUMNS}
        row.update(submission=Path(path).relative_to(folder).as_posix(), status="grader error", points=0,
                   max_points=0, seconds=0, error=_short(f"{type(e).__name__}: {e}", 300))
        return row


def grade_folder(folder, out="grades.csv", timeout: float = 300.0, executed=None,
                 force_set: str | None = None, progress: bool = True, jobs: int = 1,
                 sandbox_choice: str | None = None, limits: Limits | None = None) -> list[dict]:
    """Grade every notebook under ``folder``, ``jobs`` at a time; keep ``out`` up to date row by row.

    sandbox_choice: auto (default, or $ALIGNLAB_SANDBOX) | bwrap | none. limits: `sandbox.Limits`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"grade: {str(folder)!r} is not a folder of submitted notebooks")
    if force_set is not None and force_set not in EXERCISE_SETS:
        raise ValueError(f"grade: unknown exercise set {force_set!r}; the sets are {sorted(EXERCISE_SETS)}")
    paths = find_submissions(folder)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    limits = limits or Limits()
    box = detect_sandbox(sandbox_choice)
    message = box.describe(limits)
    if progress or not box.isolated:
        print(("\n" + "!" * 78 + "\n" + message + "\n" + "!" * 78 + "\n") if not box.isolated else message,
              file=sys.stderr if not box.isolated else sys.stdout, flush=True)
    rows: list[dict | None] = [None] * len(paths)
    written = 0
    _write_csv(out, [])
    bar = _Progress(len(paths), progress)
    jobs = max(1, int(jobs or 1))
    if jobs == 1:
        for i, path in enumerate(paths):
            rows[i] = _safe_grade(path, folder, timeout, executed, force_set, box, limits, out)
            _write_csv(out, rows[: i + 1])
            bar.update(rows[i])
    else:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="grade") as pool:
            futures = [pool.submit(_safe_grade, p, folder, timeout, executed, force_set, box, limits, out)
                       for p in paths]
            for i, fut in enumerate(futures):
                rows[i] = fut.result()
                bar.update(rows[i])
                # rows in submission order: write every finished row that follows the last written one
                while written < len(rows) and rows[written] is not None:
                    written += 1
                _write_csv(out, rows[:written])
    if progress:
        print(f"wrote {out} ({len(paths)} submission(s))")
    return rows


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def cmd_grade(args) -> int:
    limits = Limits(memory_mb=args.memory_mb, processes=args.max_processes, scratch_mb=args.scratch_mb)
    try:
        grade_folder(args.submissions, args.out, args.timeout, args.executed, args.set,
                     jobs=args.jobs, sandbox_choice=args.sandbox, limits=limits)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(e, file=sys.stderr)
        return 2
    return 0


def add_parser(sub) -> None:
    """Register ``grade`` on the ``python -m alignlab`` command line."""

    p = sub.add_parser("grade", help="grade a folder of submitted exercise notebooks into a CSV",
                       description="Run each submitted notebook in its own sandboxed process (bubblewrap) "
                                   "with a time limit, score it from outside that process, and write one CSV "
                                   "row of points per submission. Without bubblewrap, submissions run "
                                   "UNSANDBOXED (the grader says so): see `python -c 'import "
                                   "alignlab.course.grading as g; help(g)'` or solutions/README.md.")
    p.add_argument("submissions", help="folder of submitted .ipynb files (searched recursively)")
    p.add_argument("--out", default="grades.csv", help="CSV file to write (default grades.csv)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="time limit per submission in seconds (default 300)")
    p.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1,
                   help="submissions graded at a time (default: the number of CPU cores)")
    p.add_argument("--executed", default=None, help="also save each executed notebook under this folder")
    p.add_argument("--set", default=None, choices=sorted(EXERCISE_SETS),
                   help="exercise set of every submission (default: detect it per notebook)")
    p.add_argument("--sandbox", default=None, choices=["auto", "bwrap", "none"],
                   help="auto (default: bubblewrap when it works here), bwrap (required) or none")
    p.add_argument("--memory-mb", type=int, default=Limits.memory_mb, help="memory per submission (MB)")
    p.add_argument("--max-processes", type=int, default=Limits.processes, help="processes per submission")
    p.add_argument("--scratch-mb", type=int, default=Limits.scratch_mb, help="size of its private /tmp (MB)")
    p.set_defaults(func=cmd_grade)
