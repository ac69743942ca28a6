"""The static site (``python -m alignlab site``) on a made-up folder of two tiny notebooks.

One prints a number, draws a plot and reports results as a lecture does; the other fails.
No training: the two kernels take a few seconds.
"""

from __future__ import annotations

import json
import os
import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from alignlab.course import site

GOOD = [new_markdown_cell("# 00. A tiny lecture\n\nIt prints a number and draws a plot."),
        new_code_cell("print('the answer is', 6 * 7)"),
        new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1, 4, 9]); plt.title('squares'); plt.show()"),
        new_code_cell("from alignlab.course.runner import report\n"
                      "_ = report({'gold_reward': 0.5, 'kl': 1.25, 'win_rate': 0.75, 'valid_rate': 1.0}, n=16)")]
BAD = [new_markdown_cell("# 01. A lecture that fails"), new_code_cell("x = 1"),
       new_code_cell("raise ValueError('the reward model is missing')"), new_code_cell("print('never')")]


def fake_run(path, folder, timeout):
    """What ``runner.run_notebook`` does, without a kernel: copy the notebook, return a row."""
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.read(path, as_version=4), folder / path.name)
    return {"notebook": path.name, "seconds": 0.1, "status": "ok", "win_rate": 0.5}


@pytest.fixture(autouse=True)
def _keep_environment(monkeypatch):
    """``site.build`` sets variables for its kernels (profile, backend): put them back after each test."""
    for name in ("ALIGNLAB_PROFILE", "ALIGNLAB_HEADLESS", "MPLBACKEND"):
        value = os.environ.get(name)
        monkeypatch.setenv(name, value or "")
        if value is None:
            monkeypatch.delenv(name)


@pytest.fixture
def lectures(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name, cells in (("00_good.ipynb", GOOD), ("01_bad.ipynb", BAD)):
        nbformat.write(new_notebook(cells=cells), folder / name)
    return folder


@pytest.mark.slow  # starts two kernels
def test_site_builds_pages_and_an_index_even_when_a_notebook_fails(lectures, tmp_path, capsys, monkeypatch):
    from alignlab import cli

    monkeypatch.setenv("MPLBACKEND", "Agg")  # as in a headless shell: the plots must still reach the page

    before = {p.name: p.read_bytes() for p in lectures.iterdir()}
    out = tmp_path / "site"
    status = cli.main(["site", "--folder", str(lectures), "--out", str(out), "--jobs", "2"])
    assert status == 1  # a notebook failed: the site is built, the command says so
    assert "01_bad.ipynb" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["00_good.html", "01_bad.html", "index.html",
                                                     "results.json", "results.md"]
    assert {p.name: p.read_bytes() for p in lectures.iterdir()} == before  # sources keep no outputs

    good = (out / "00_good.html").read_text()
    assert "<pre>the answer is 42" in good  # printed numbers
    assert re.search(r'<img[^>]+src="data:image/png;base64,', good)  # the plot, embedded
    assert 'href="index.html"' in good
    bad = (out / "01_bad.html").read_text()
    assert "the reward model is missing" in bad and "<pre>never" not in bad  # the outputs up to the error

    index = (out / "index.html").read_text()
    assert 'href="00_good.html"' in index and 'href="01_bad.html"' in index
    assert "A tiny lecture" in index  # each page's title
    row = index[index.index('href="00_good.html"'):].split("</tr>")[0]
    assert all(v in row for v in ("0.500", "1.250", "0.750", "1.000", "n = 16", ">ok<"))
    failed = index[index.index('href="01_bad.html"'):].split("</tr>")[0]
    assert "FAILED: code cell 2: ValueError: the reward model is missing" in failed
    assert "\x1b" not in index  # no terminal colour codes
    assert "1 of 2 notebooks failed to execute: 01_bad" in index

    rows = json.loads((out / "results.json").read_text())
    assert [r["notebook"] for r in rows] == ["00_good.ipynb", "01_bad.ipynb"]
    assert rows[0]["win_rate"] == 0.75 and rows[0]["n"] == 16 and rows[0]["status"] == "ok"
    assert "win_rate" in (out / "results.md").read_text()


def test_select_by_prefix(lectures):
    assert [p.name for p in site.select(lectures)] == ["00_good.ipynb", "01_bad.ipynb"]
    assert [p.name for p in site.select(lectures, "01")] == ["01_bad.ipynb"]
    with pytest.raises(FileNotFoundError, match="starts with 07"):
        site.select(lectures, "00,07")


def test_a_crashed_build_leaves_the_old_site_and_no_temporary_folder(lectures, tmp_path, monkeypatch):
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("the previous site")
    monkeypatch.setattr(site, "run_notebook", fake_run)
    monkeypatch.setattr(site, "to_html", lambda nb: 1 / 0)  # crash half-way, after the executions
    with pytest.raises(ZeroDivisionError):
        site.build(out, lectures, log=lambda s: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notebooks", "site"]
    assert (out / "index.html").read_text() == "the previous site"


def test_a_finished_build_replaces_the_old_site(lectures, tmp_path, monkeypatch):
    out = tmp_path / "site"
    out.mkdir()
    (out / "stale.html").write_text("from an older build")

    monkeypatch.setattr(site, "run_notebook", fake_run)
    rows = site.build(out, lectures, "00", log=lambda s: None)
    assert [r["notebook"] for r in rows] == ["00_good.ipynb"]
    assert sorted(p.name for p in out.iterdir()) == ["00_good.html", "index.html", "results.json", "results.md"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # readable as any folder made here, not private
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notebooks", "site"]
