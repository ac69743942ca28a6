"""Run the course headless and collect each notebook's results.

A notebook publishes its headline numbers by calling ``alignlab.report(...)`` in its
last cell; that prints one line ``ALIGNLAB_RESULT {json}`` (``alignlab.report``). ``run_course``
executes every notebook in a folder with ``nbclient`` (a fresh kernel each),
times it, reads those lines back and prints one row per notebook.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..metrics import SHARED
from ..report import MARKER, report  # noqa: F401 (report re-exported)

COLUMNS = SHARED


def _results(nb) -> dict:
    found = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for line in out.get("text", "").splitlines():
                if line.startswith(MARKER):
                    found.update(json.loads(line[len(MARKER):]))
    return found


def run_notebook(path: Path, out_dir: Path, timeout: int = 900) -> dict:
    """Execute one notebook in a fresh kernel; return its wall time, status and results."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    t0 = time.time()
    status = "ok"
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except Exception as e:  # keep going: one failing notebook must not hide the others
        status = f"FAILED: {type(e).__name__}: {str(e).splitlines()[-1] if str(e) else ''}"[:120]
    seconds = time.time() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_dir / path.name)
    return {"notebook": path.name, "seconds": round(seconds, 1), "status": status, **_results(nb)}


def format_table(rows: list[dict]) -> str:
    head = ["notebook", "seconds", *COLUMNS, "status"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        cells = [r["notebook"], f"{r['seconds']:.1f}"]
        cells += [f"{r[c]:.3f}" if isinstance(r.get(c), (int, float)) else "-" for c in COLUMNS]
        lines.append(" | ".join(cells + [r["status"]]))
    return "\n".join(lines)


def run_course(notebooks: str = "notebooks", out: str = "runs", profile: str | None = None,
               timeout: int = 900) -> int:
    """Execute every ``*.ipynb`` in ``notebooks`` in order; print and save a results table."""
    if profile:
        os.environ["ALIGNLAB_PROFILE"] = profile  # inherited by the kernels
    os.environ.setdefault("ALIGNLAB_HEADLESS", "1")  # widgets draw their defaults statically
    paths = sorted(Path(notebooks).glob("[0-9]*.ipynb"))
    if not paths:
        raise SystemExit(f"no notebooks found in {notebooks!r} (run from the repository root)")
    rows = []
    for path in paths:
        print(f"running {path} ...", flush=True)
        rows.append(run_notebook(path, Path(out), timeout))
        print(f"  {rows[-1]['seconds']:.1f} s  {rows[-1]['status']}", flush=True)
    table = format_table(rows)
    print("\n" + table)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "results.md").write_text(table + "\n")
    (Path(out) / "results.json").write_text(json.dumps(rows, indent=1))
    return 0 if all(r["status"] == "ok" for r in rows) else 1
