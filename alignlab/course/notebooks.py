"""One source per notebook: the percent-format ``.py`` beside each ``.ipynb``.

``notebooks/NN_name.py`` and ``solutions/NN_name.py`` are the files people edit
(jupytext's percent format: ``# %%`` starts a code cell, ``# %% [markdown]`` a
markdown one). The paired ``.ipynb`` is generated from it by jupytext, stored
without outputs, with **stable cell ids**: a cell's id is a hash of its source
(plus a counter for repeated sources), so rebuilding an unchanged source gives
a byte-identical notebook and editing one cell changes one cell of the diff.

    python -m alignlab notebooks           # rebuild every .ipynb from its .py (and exercises/)
    python -m alignlab notebooks --check   # exit 1, naming the stale pairs, if any is out of step

``jupytext.toml`` in ``notebooks/`` and in ``solutions/`` pairs the two for JupyterLab users with
the jupytext extension: saving the notebook there writes the ``.py`` too; run
``python -m alignlab notebooks`` before committing so the ``.ipynb`` is the
canonical build of it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import jupytext
import nbformat

FOLDERS = ("notebooks", "solutions")
"""Folders whose ``NN_*.py`` sources are paired with an ``.ipynb``."""
FIX = "python -m alignlab notebooks"
"""The command that brings every pair back in step."""

_KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def _cell_ids(nb) -> None:
    seen: dict[str, int] = {}
    for cell in nb.cells:
        digest = hashlib.sha1(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:10]
        n = seen.get(digest, 0)
        seen[digest] = n + 1
        cell.id = digest if n == 0 else f"{digest}-{n}"


def build(source: Path):
    """The notebook (no outputs, stable ids, plain metadata) built from a percent ``.py``."""
    nb = jupytext.reads(Path(source).read_text(), fmt="py:percent")
    nb.metadata = nbformat.from_dict({"kernelspec": _KERNELSPEC, "language_info": {"name": "python"}})
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict({})
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    _cell_ids(nb)
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nb


def text(nb) -> str:
    """The bytes a notebook is stored as (nbformat's writer, one trailing newline)."""
    return nbformat.writes(nb) + "\n"


def sources(root: Path = Path(".")) -> list[Path]:
    """Every paired percent source under ``root``, in course order."""
    return [p for folder in FOLDERS for p in sorted((Path(root) / folder).glob("[0-9][0-9]_*.py"))]


def stale(root: Path = Path(".")) -> list[str]:
    """The ``.ipynb`` files that are missing or differ from a fresh build of their ``.py``."""
    out = []
    for src in sources(root):
        nb_path = src.with_suffix(".ipynb")
        if not nb_path.exists() or nb_path.read_text() != text(build(src)):
            out.append(str(nb_path.relative_to(root)))
    orphans = [p for folder in FOLDERS for p in sorted((Path(root) / folder).glob("[0-9][0-9]_*.ipynb"))
               if not p.with_suffix(".py").exists()]
    out += [f"{p.relative_to(root)} (has no .py source)" for p in orphans]
    return out


def write_all(root: Path = Path(".")) -> list[Path]:
    """Rebuild every ``.ipynb`` whose bytes would change; return the ones written."""
    written = []
    for src in sources(root):
        nb_path, new = src.with_suffix(".ipynb"), text(build(src))
        if not nb_path.exists() or nb_path.read_text() != new:
            tmp = nb_path.with_suffix(".ipynb.tmp")
            tmp.write_text(new)
            tmp.replace(nb_path)  # atomic: a reader never sees half a notebook
            written.append(nb_path)
    return written
