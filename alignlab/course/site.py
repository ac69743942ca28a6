"""A static site of the executed lecture notebooks, with the results table as its front page.

    python -m alignlab site                      # every lecture -> site/index.html
    python -m alignlab site --notebooks 00,04    # only these lectures (by number prefix)
    python -m alignlab site --jobs 2 --out /tmp/site

Each notebook is executed headless by the course runner (``runner.run_notebook``: a fresh
kernel, the same ``report(...)`` results ``python -m alignlab course`` collects), then
converted to one self-contained HTML page by nbconvert (plots are embedded as images).
``index.html`` is the course runner's results table with a link to each page; a notebook
that failed to execute still gets its page (the outputs up to the failing cell) and a one-line
reason in the table, and the command exits 1.

The site is built in a temporary sibling folder and renamed into place, so an interrupted
or crashed build leaves the previous site (or none), never half of one. Notebooks in the
repository are never written to: they stay without outputs.
"""

from __future__ import annotations

import concurrent.futures
import html
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .runner import COLUMNS, format_table, run_notebook

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
"""Terminal colour codes, which IPython puts into error messages."""
_ROW_KEYS = {"notebook", "seconds", "status", *COLUMNS}
INLINE = "module://matplotlib_inline.backend_inline"
"""The kernels' matplotlib backend: Jupyter's default, which puts each figure into the outputs."""


def select(folder: str | Path = "notebooks", wanted: str | None = None) -> list[Path]:
    """The lecture notebooks (``NN_*.ipynb``) in ``folder``; ``wanted`` = ``"00,04"`` keeps those prefixes."""
    paths = sorted(Path(folder).glob("[0-9]*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no notebooks (NN_name.ipynb) in {str(folder)!r}; run from the repository root")
    if not wanted:
        return paths
    prefixes = [w.strip() for w in wanted.split(",") if w.strip()]
    unknown = [w for w in prefixes if not any(p.name.startswith(w) for p in paths)]
    if unknown:
        raise FileNotFoundError(f"--notebooks {wanted!r}: no notebook in {str(folder)!r} starts with "
                                f"{', '.join(unknown)} (have {', '.join(p.stem for p in paths)})")
    return [p for p in paths if any(p.name.startswith(w) for w in prefixes)]


def title(nb) -> str:
    """The notebook's first markdown heading (``# 04. DPO ...``), without the ``#``."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def failure(nb, status: str) -> str:
    """One line saying why a notebook failed: the first cell with an error and the error."""
    if status == "ok":
        return ""
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code_cells, 1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return ANSI.sub("", f"code cell {i}: {out.get('ename', '')}: {out.get('evalue', '')}")[:200]
    return ANSI.sub("", status.removeprefix("FAILED: "))[:200]  # a timeout or a dead kernel


def to_html(nb, back: str = "index.html") -> str:
    """One executed notebook as a self-contained HTML page, headed by a link back to the index."""
    import copy

    import nbformat
    from nbconvert import HTMLExporter

    nb = copy.deepcopy(nb)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"[&larr; all lectures and their results]({back})"))
    body, _ = HTMLExporter(embed_images=True).from_notebook_node(nb)
    return body


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))


def index_html(pages: list[dict], meta: dict) -> str:
    """The front page: one row per notebook (the course runner's columns, plus links and extras)."""
    head = ["notebook", "seconds", *COLUMNS, "other results", "status"]
    rows = []
    for p in pages:
        r = p["row"]
        cells = [f'<a href="{html.escape(p["html"])}">{html.escape(p["stem"])}</a>'
                 f'<br><small>{html.escape(p["title"])}</small>',
                 f"{r['seconds']:.1f}"]
        cells += [f"{r[c]:.3f}" if isinstance(r.get(c), (int, float)) else "-" for c in COLUMNS]
        extras = {k: v for k, v in r.items() if k not in _ROW_KEYS}
        cells.append("<br>".join(f"{html.escape(k)} = {_fmt(v)}" for k, v in extras.items()) or "-")
        cells.append("ok" if r["status"] == "ok" else f'<span class="failed">FAILED: {html.escape(p["why"])}</span>')
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    failed = [p["stem"] for p in pages if p["row"]["status"] != "ok"]
    verdict = (f'<p class="failed">{len(failed)} of {len(pages)} notebooks failed to execute: '
               f'{html.escape(", ".join(failed))}.</p>' if failed else
               f"<p>All {len(pages)} notebooks executed without error.</p>")
    about = ", ".join(f"{html.escape(k)} {html.escape(str(v))}" for k, v in meta.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>alignlab: the lectures, executed</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.4 }}
table {{ border-collapse: collapse; width: 100% }}
th, td {{ border: 1px solid #ccc; padding: .35rem .5rem; text-align: left; vertical-align: top }}
th {{ background: #f3f3f3 }} td small {{ color: #555 }} .failed {{ color: #b00020 }}
</style></head><body>
<h1>alignlab: the lectures, executed</h1>
<p>Every lecture notebook of the course, executed headless by <code>python -m alignlab site</code>;
each page shows the notebook with its plots and printed numbers. The table has the numbers each
notebook reports in its last cell, on held-out prompts against the SFT reference (KL: sequence-level
k1 estimate, in nats), as printed by <code>python -m alignlab course</code>.</p>
{verdict}
<table><thead><tr>{"".join(f"<th>{h.replace('_', ' ')}</th>" for h in head)}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<p><small>Built {about}. <a href="results.md">results.md</a> and <a href="results.json">results.json</a>
hold the same table.</small></p>
</body></html>
"""


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` to ``out``; an existing ``out`` is swapped out, then removed."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build(out: str | Path = "site", notebooks: str | Path = "notebooks", wanted: str | None = None,
          jobs: int = 1, profile: str | None = None, timeout: int = 900, log=print) -> list[dict]:
    """Execute the lectures, write the site to ``out`` atomically; return one row per notebook."""
    import nbformat

    from ..models import get_profile

    paths = select(notebooks, wanted)
    profile = get_profile(profile).name  # an unknown profile fails here, before any kernel starts
    os.environ["ALIGNLAB_PROFILE"] = profile  # inherited by the kernels, as in run_course
    os.environ.setdefault("ALIGNLAB_HEADLESS", "1")  # widgets draw their defaults statically
    os.environ["MPLBACKEND"] = INLINE  # plots become outputs even where MPLBACKEND=Agg is set
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's folder is private; a site is to be read
    try:
        executed = tmp / "_executed"
        t0 = time.time()

        def one(path: Path) -> dict:
            log(f"running {path} ...")
            row = run_notebook(path, executed, timeout)
            row["notebook"] = path.name  # a report(notebook=...) key must not rename the row
            log(f"  {path.name}: {row['seconds']:.1f} s  {ANSI.sub('', row['status'])}")
            return row

        with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
            rows = list(pool.map(one, paths))  # each notebook gets its own kernel process
        pages = []
        for path, row in zip(paths, rows):
            nb = nbformat.read(executed / path.name, as_version=4)
            row["status"] = "ok" if row["status"] == "ok" else "FAILED: " + failure(nb, row["status"])
            name = path.stem + ".html"
            (tmp / name).write_text(to_html(nb), encoding="utf-8")
            pages.append({"stem": path.stem, "title": title(nb), "html": name, "row": row,
                          "why": row["status"].removeprefix("FAILED: ")})
        shutil.rmtree(executed)
        meta = {"on": time.strftime("%Y-%m-%d %H:%M"), "profile": profile,
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"), "jobs": jobs,
                "python": platform.python_version(), "in": f"{time.time() - t0:.0f} s"}
        (tmp / "index.html").write_text(index_html(pages, meta), encoding="utf-8")
        (tmp / "results.md").write_text(format_table(rows) + "\n", encoding="utf-8")
        (tmp / "results.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return rows


def cmd_site(args) -> int:
    rows = build(args.out, args.folder, args.notebooks, args.jobs, args.profile, args.timeout,
                 log=lambda s: print(s, flush=True))
    print("\n" + format_table(rows))
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(f"\nwrote {Path(args.out) / 'index.html'} ({len(rows)} pages, {size / 1e6:.1f} MB); "
          f"open it in a browser, or serve it: python -m http.server -d {args.out}")
    failed = [r["notebook"] for r in rows if r["status"] != "ok"]
    if failed:
        print(f"{len(failed)} notebook(s) failed to execute: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("site", help="execute the lecture notebooks and build a static HTML site of them",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="site", help="folder of the site (replaced atomically; default: site)")
    p.add_argument("--notebooks", default=None, metavar="NN,NN",
                   help="only the notebooks with these number prefixes, e.g. 00,04 (default: all)")
    p.add_argument("--folder", default="notebooks", help="folder of the lecture notebooks")
    p.add_argument("--jobs", type=int, default=1, help="notebooks executed at a time (default 1)")
    p.add_argument("--profile", default=None, help="quick or full (default: by device)")
    p.add_argument("--timeout", type=int, default=900, help="seconds a cell may run (default 900, as in `course`)")
    p.set_defaults(func=cmd_site)
