"""Every generated docs page, made from the committed result files and the code: ``python -m alignlab docs``.

A number in the docs comes from a file in ``results/`` through this module, never from a
hand-edited table, so it cannot go stale: ``tests/test_docs.py`` fails while a page here
differs from what the committed files give. ``pages()`` maps each generated path to its text:

* ``docs/results.md`` (whole page): one ``run`` per method (``results/runs/``), each lecture's
  headline over SFT seeds (``results/seeds/``, through ``sweep``), lecture 06's online methods
  over seeds (``results/online/``), lecture 09's frontier with its costs
  (``results/frontier/``, through ``frontier``) and the tuning protocol's runs
  (``results/tuning/``, through ``tuning``), each table with the command that made its data;
* ``docs/metrics.md`` (whole page): ``metrics.markdown(REGISTRY.values())``, every logged metric
  defined once, and who logs it from the method records;
* ``docs/architecture.md``: its code map block, from each module's docstring;
* ``README.md``: its headline results block;
* ``requirements.txt``: ``pyproject.toml``'s ``[project] dependencies``.

Hand-written pages keep their generated parts between ``<!-- generated:NAME -->`` and
``<!-- /generated -->``; only those blocks are replaced.

    python -m alignlab docs            # rewrite the pages whose text changed
    python -m alignlab docs --check    # exit 1 naming the stale pages
"""

from __future__ import annotations

import ast
import json
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root (the folder with ``README.md``, ``results/`` and ``docs/``)."""
COMMAND = "python -m alignlab docs"
"""The command that rewrites every generated page."""

BLOCK = re.compile(r"(<!-- generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.S)
"""A generated block of a hand-written page: only its body is replaced."""

REQUIREMENTS_HEAD = "# Install torch first with `pip install torch==2.13.0` (CPU wheel); any 2.x >= 2.2 works."
"""The first line of ``requirements.txt``, kept as it was."""

SHARED_COLUMNS = ("method", "profile", "seed", "seconds", "gold_reward", "gold_reward_ci", "kl",
                  "win_rate", "win_rate_ci", "valid_rate", "evals")
"""Keys of a ``run --json`` line that the per-method table shows in its own columns (or leaves out)."""

ONLINE_FILE = "results/online/06_online_results.jsonl"
ONLINE_COMMAND = """\
for s in 0 1 2; do
  python -m alignlab run dpo --set n_pairs=1920 --set steps=40 --set batch_size=48 --seed $s --json
  python -m alignlab run online_dpo --seed $s --json
  for F in 2 10 40; do python -m alignlab run bpo --set phases=$F --seed $s --json; done
  python -m alignlab run vpo --seed $s --json               # alpha = 0.03, the default
  python -m alignlab run vpo --set alpha=0.1 --seed $s --json
  python -m alignlab run online_dpo --set labeller=reward_model --seed $s --json
done > results/online/06_online_results.jsonl"""
"""The loop that wrote lecture 06's results file (as the notebook shows it)."""

_CORE_ORDER = ("world", "data", "judge", "tokenizer", "models", "sampling", "pipeline", "training",
               "evaluation", "losses", "metrics", "plots", "cache", "config", "registry", "cli")
"""Reading order of the core in the code map; a module not named here comes after, by name."""
_GROUPS = (("methods", "Methods (`alignlab/methods/`): one module each, declared in `REGISTRY`"),
           ("studies", "Studies (`alignlab/studies/`): sweeps, the frontier, the benchmark, these docs"),
           ("course", "Course machinery (`alignlab/course/`): runner, notebooks, exercises, checks, grading"))


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def _f(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _range_text(ints) -> str:
    """``[0, 1, 2, 3, 4]`` -> ``"0-4"``; ``[1, 2]`` -> ``"1-2"``; ``[0, 2]`` -> ``"0,2"``."""
    ints = sorted(set(ints))
    if len(ints) > 1 and ints == list(range(ints[0], ints[-1] + 1)):
        return f"{ints[0]}-{ints[-1]}"
    return ",".join(map(str, ints))


def _rst_to_md(text: str) -> str:
    return text.replace("``", "`")


def _read_json_line(path: Path) -> dict:
    """The last line of ``path`` that is a JSON object (what ``run --json`` prints last)."""
    from .sweep import last_json

    got = last_json(path.read_text())
    if got is None:
        raise ValueError(f"{path}: no JSON object on any line; expected the last line of "
                         f"`python -m alignlab run METHOD --json`")
    return got


def _tomllib():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise RuntimeError(f"`{COMMAND}` reads pyproject.toml with tomllib (Python 3.11+) "
                               "or the tomli package on Python 3.10: pip install tomli") from None
    return tomllib


# ---------------------------------------------------------------------------
# requirements.txt
# ---------------------------------------------------------------------------


def dependencies(root: Path = ROOT) -> list[str]:
    """``pyproject.toml``'s ``[project] dependencies``, in order."""
    with open(Path(root) / "pyproject.toml", "rb") as f:
        return list(_tomllib().load(f)["project"]["dependencies"])


def requirements(root: Path = ROOT) -> str:
    """The text of ``requirements.txt``: pyproject's dependencies, one a line."""
    return "\n".join([REQUIREMENTS_HEAD,
                      f"# Generated from pyproject.toml's [project] dependencies by `{COMMAND}`: edit those.",
                      *dependencies(root)]) + "\n"


# ---------------------------------------------------------------------------
# The code map (docs/architecture.md)
# ---------------------------------------------------------------------------


SUMMARY_CHARS = 160
"""A code-map entry longer than this is cut at a word and ends in an ellipsis."""


def summary_line(path: Path) -> str | None:
    """The first paragraph of a module's docstring, on one line, at most ``SUMMARY_CHARS``
    long (None: no docstring)."""
    doc = ast.get_docstring(ast.parse(Path(path).read_text()))
    if not doc:
        return None
    text = _rst_to_md(" ".join(doc.strip().split("\n\n")[0].split()))
    if len(text) > SUMMARY_CHARS:
        text = text[:SUMMARY_CHARS].rsplit(" ", 1)[0]
        if text.count("`") % 2:  # never cut inside a code span
            text = text[:text.rfind("`")]
        text = text.rstrip(" ,;:(") + " …"
    return text


def code_map(root: Path = ROOT) -> str:
    """Every module of ``alignlab/`` with the first paragraph of its docstring, grouped by layer."""
    pkg = Path(root) / "alignlab"
    files = [p for p in sorted(pkg.rglob("*.py")) if p.name != "__main__.py" and "__pycache__" not in p.parts]

    def group(p: Path) -> str:
        rel = p.relative_to(pkg)
        return rel.parts[0] if len(rel.parts) > 1 and rel.parts[0] in dict(_GROUPS) else "core"

    def core_key(p: Path):
        rel = p.relative_to(pkg)
        top = rel.parts[0].removesuffix(".py")
        rank = _CORE_ORDER.index(top) if top in _CORE_ORDER else len(_CORE_ORDER)
        return (rel.parts[0] != "__init__.py", rank, top, rel.name != "__init__.py", str(rel))

    def name(p: Path) -> str:
        rel = p.relative_to(pkg)
        return f"{rel.parent.as_posix()}/" if rel.name == "__init__.py" and rel.parts[:-1] else rel.as_posix()

    def table(paths) -> list[str]:
        rows = ["| module | what it is (its docstring's first paragraph) |", "|---|---|"]
        for p in paths:
            rows.append(f"| `{name(p)}` | {_cell(summary_line(p) or '*no module docstring*')} |")
        return rows

    out = [f"Generated by `{COMMAND}` from each module's docstring: edit the docstring, not this table.",
           "", "Core (`alignlab/*.py`): the world, the model, the loop, the evaluation", ""]
    out += table(sorted((p for p in files if group(p) == "core"), key=core_key))
    for key, title in _GROUPS:
        out += ["", title, ""]
        out += table(sorted((p for p in files if group(p) == key),
                            key=lambda p: (p.relative_to(pkg).parent.parts, p.name != "__init__.py", p.name)))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# The results (docs/results.md and the README's block)
# ---------------------------------------------------------------------------


def _registry():
    from ..methods import REGISTRY

    return REGISTRY


def _with_ci(r: dict, key: str) -> str:
    """``r[key]``, and ``± r[key_ci]`` when the run reports its confidence half-width."""
    return _f(r.get(key)) + (f" ± {r[key + '_ci']:.3f}" if key + "_ci" in r else "")


def _mean(rows: list[dict], key: str) -> float | None:
    return statistics.fmean(r[key] for r in rows) if rows else None


def runs_section(root: Path = ROOT) -> list[str]:
    """One ``run --json`` line per registered method, from ``results/runs/METHOD.json``."""
    folder = Path(root) / "results" / "runs"
    lines = [_read_json_line(p) for p in sorted(folder.glob("*.json"))]
    by_method = {r["method"]: r for r in lines}
    registry = _registry()
    order = [m for m in registry if m in by_method] + sorted(m for m in by_method if m not in registry)
    out = ["## Every method, one run each", "",
           "One line per registered method, each the last line of",
           "", "```bash", "python -m alignlab run METHOD --profile quick --seed 0 --json", "```", "",
           "stored as `results/runs/METHOD.json`. SFT seed 0, `quick` profile, the method's default "
           "settings; gold reward and win-rate with their 95% half-widths over the held-out prompts, "
           "KL in nats (best-of-N: the analytic bound). `seconds` is the run's wall time on the machine "
           "that made the file, with its models cached or not: not a benchmark.", "",
           "| method | lecture | seconds | gold reward | KL | win-rate | valid rate | method-specific |",
           "|---|---|---|---|---|---|---|---|"]
    for m in order:
        r = by_method[m]
        extra = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
                          if k not in SHARED_COLUMNS and isinstance(v, (int, float, str, bool)))
        lecture = registry[m].lecture if m in registry else ""
        out.append(f"| `{m}` | {_cell(lecture)} | {r.get('seconds', '–')} | {_with_ci(r, 'gold_reward')} | "
                   f"{_f(r.get('kl'), 2)} | {_with_ci(r, 'win_rate')} | {_f(r.get('valid_rate'))} | {_cell(extra)} |")
    missing = [m for m in registry if m not in by_method]
    if missing:
        out += ["", "No committed run yet for: " + ", ".join(f"`{m}`" for m in missing) + "."]
    return out


def seeds_data(root: Path = ROOT):
    """(records, seeds, threads, rows) of the seed sweep in ``results/seeds/``."""
    from . import sweep

    records = sweep.load_records(Path(root) / "results" / "seeds")
    seeds = sorted({r["spec"]["seed"] for r in records})
    threads = sorted({r["spec"]["threads"] for r in records})
    return records, seeds, threads, sweep.headline_table(records, seeds, threads)


def seeds_command(seeds, threads) -> str:
    return f"python -m alignlab seeds --seeds {_range_text(seeds)} --threads {','.join(map(str, threads))} " \
           "--out results/seeds"


def _misses(rows) -> list[str]:
    return [f"{r['headline']} with {r['threads']} thread{'s' if r['threads'] > 1 else ''}: {r['met']} of {r['n']} "
            f"(range {_f(r['min'])} to {_f(r['max'])})" for r in rows if r["n"] and r["met"] < r["n"]]


def seeds_section(root: Path = ROOT) -> list[str]:
    from . import sweep

    records, seeds, threads, rows = seeds_data(root)
    failed = sum(r.get("status") != "ok" for r in records)
    out = ["## Each lecture's headline over SFT seeds and thread counts", "",
           "Every lecture's headline claim (its asserted threshold is the target), run with "
           "`python -m alignlab run METHOD --seed S --json` on each SFT seed (a different SFT model each) "
           "and torch thread count (on the CPU, different thread counts train different SFT models), "
           "`quick` profile. The sweep is resumable and writes one file per run into `results/seeds/` "
           "(its settings, the exact command, its wall time and its JSON line); with the files there, "
           "this command only reads them back and prints the table:", "",
           "```bash", seeds_command(seeds, threads), "```", "",
           f"{len(records)} runs ({failed} failed), SFT seeds {_range_text(seeds)}, "
           f"threads {', '.join(map(str, threads))}. The runs shared the machine with other jobs, "
           "so their wall times are not timings of the methods.", "",
           sweep.markdown(rows, seeds), ""]
    misses = _misses(rows)
    if misses:
        out += ["Headlines that miss their target on some seeds:", ""] + [f"* {m}" for m in misses]
    else:
        out += ["Every headline meets its target on every seed and thread count."]
    out += ["", "Lecture 04 shows the DPO rows (section 5.8) and teaches the fix for plain DPO's fragility: "
            "TRL's SFT term on the chosen completions (`--set sft_weight=1.0 --set steps=120`, TRL's "
            '`loss_type=["sigmoid", "sft"]`).']
    return out


def online_label(r: dict) -> str:
    """The name of a row of ``ONLINE_FILE`` (one run's JSON line), as lecture 06 and its table use it."""
    if r["method"] == "dpo":
        return "offline DPO"
    if r["method"] == "bpo":
        return f"BPO F={r['phases']}"
    if r["method"] == "vpo":
        return f"VPO α={r['alpha']:g}"
    return "online DPO" + (", RM labels" if r.get("labeller") == "reward_model" else "")


def online_section(root: Path = ROOT) -> list[str]:
    path = Path(root) / ONLINE_FILE
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(online_label(r), []).append(r)
    keys = ("win_rate", "gold_reward", "kl", "valid_rate")
    seeds = sorted({r["seed"] for r in rows})
    out = ["## Lecture 06: online preference learning over SFT seeds", "",
           f"Each line of `{ONLINE_FILE}` is one run's JSON line; the file was written by", "",
           "```bash", ONLINE_COMMAND, "```", "",
           f"SFT seeds {_range_text(seeds)}, `quick` profile, every method at the same budget of labelled "
           "pairs (offline DPO given the online methods' budget). Each cell is the mean over the seeds and, "
           "after ±, half the range (max - min) / 2, as lecture 06 shows it.", "",
           "| method | runs | " + " | ".join(k.replace("_", " ") for k in keys) + " |",
           "|---|---|" + "---|" * len(keys)]
    for label, rs in groups.items():
        cells = []
        for k in keys:
            vals = [r[k] for r in rs]
            cells.append(f"{statistics.fmean(vals):.3f} ± {(max(vals) - min(vals)) / 2:.3f}")
        out.append(f"| {label} | {len(rs)} | " + " | ".join(cells) + " |")
    return out


def frontier_data(root: Path = ROOT):
    """(records, points, budget table) of the frontier sweep in ``results/frontier/``."""
    from . import frontier

    records = frontier.load(Path(root) / "results" / "frontier")
    pts = frontier.points(records)
    return records, pts, frontier.budget_table(pts)


def budget_markdown(table: list[dict], ranges: bool = True) -> list[str]:
    """Per arm: best gold reward within each KL budget, mean over seeds (and [min, max])."""
    budgets = list(dict.fromkeys(r["budget"] for r in table))
    arms = list(dict.fromkeys(r["arm"] for r in table))
    head = "| arm | " + " | ".join(f"gold within KL ≤ {b:g}" for b in budgets) + " | max KL |"
    out = [head, "|---|" + "---|" * (len(budgets) + 1)]
    for arm in arms:
        rows = [r for r in table if r["arm"] == arm]
        cells = [f"{_f(r['mean'])} [{r['min']:.2f}, {r['max']:.2f}]" if ranges and r["mean"] is not None
                 else _f(r["mean"]) for r in rows]
        out.append(f"| {rows[0]['label']} | " + " | ".join(cells) + f" | {rows[0]['reach']:.1f} |")
    return out


def _above(table: list[dict], a: str, b: str) -> list[str]:
    """Per budget: on how many seeds arm ``a`` reaches more gold than arm ``b``."""
    out = []
    for budget in dict.fromkeys(r["budget"] for r in table):
        ra = next((r for r in table if r["arm"] == a and r["budget"] == budget), None)
        rb = next((r for r in table if r["arm"] == b and r["budget"] == budget), None)
        if ra is None or rb is None:
            return []
        seeds = [s for s in ra["per_seed"] if ra["per_seed"][s] is not None and rb["per_seed"].get(s) is not None]
        above = sum(ra["per_seed"][s] > rb["per_seed"][s] for s in seeds)
        out.append(f"KL ≤ {budget:g}: {above} of {len(seeds)}")
    return out


def frontier_section(root: Path = ROOT) -> list[str]:
    from . import frontier

    records, pts, table = frontier_data(root)
    manifest_path = Path(root) / "results" / "frontier" / "manifest.json"
    calls = json.loads(manifest_path.read_text()).get("calls", []) if manifest_path.exists() else []
    seeds = sorted({p["seed"] for p in pts})
    out = ["## Lecture 09: every method on one frontier, over SFT seeds", "",
           "Every arm (a method with fixed settings) at three values of its conservativeness knob, "
           f"SFT seeds {_range_text(seeds)}, `quick` profile, one torch thread per run: one file per run "
           "in `results/frontier/`, each with its settings, the exact `python -m alignlab run ...` command, "
           "its wall time and its JSON line, whose `evals` list holds every evaluation checkpoint. Made with", "",
           "```bash"] + list(dict.fromkeys(c["command"] for c in calls)) + ["```", "",
           "Each call of the command, as `results/frontier/manifest.json` records it:", ""]
    for i, c in enumerate(calls, 1):
        env = c.get("environment", {})
        out.append(f"* call {i}: {c['runs']} runs, {c['failed']} failed, {c['wall_seconds']:.0f} s wall time "
                   f"with `--jobs {c.get('jobs', '?')}`, {env.get('cpus', '?')} CPUs, CUDA {env.get('cuda', '?')}, "
                   f"Python {env.get('python', '?')}, torch {env.get('torch', '?')}, "
                   f"transformers {env.get('transformers', '?')}.")
    out += ["", "Best gold reward of any checkpoint within each KL budget (k1 KL to the SFT model; best-of-N: "
            "the tie-aware estimate), the arm's envelope over its settings on each seed, then the mean over "
            "the seeds [min, max]; max KL is the largest KL the arm reached on any seed:", ""]
    out += budget_markdown(table)
    vs = [(b, _above(table, "dpo", b)) for b in ("ppo", "ppo_gt")]
    if all(v for _, v in vs):
        labels = {r["arm"]: r["label"] for r in table}
        out += ["", "The DPO paper's claim, DPO's frontier above PPO's, seed by seed: the seeds on which DPO "
                "reaches more gold reward than each PPO arm within the budget.", "",
                "| DPO above | " + " | ".join(v.split(":")[0] for v in vs[0][1]) + " |",
                "|---|" + "---|" * len(vs[0][1])]
        for b, v in vs:
            out.append(f"| {labels[b]} | " + " | ".join(x.split(": ")[1] for x in v) + " |")
    # costs and the last checkpoint, per arm and knob value
    knob = {a.name: a.knob for a in frontier.ARMS}
    last: dict[tuple, dict] = {}
    for p in pts:
        key = (p["arm"], str(p["value"]), p["seed"])
        if key not in last or p["step"] > last[key]["step"]:
            last[key] = p
    out += ["", "Costs and the last checkpoint, per arm and setting: median wall seconds of a run over the "
            "seeds (the first run of each seed also trained that seed's models, so some medians include "
            "it), completions sampled, labels used and their kind (`frontier.costs`), and the last "
            "checkpoint's win-rate, gold reward and KL, mean over the seeds:", "",
            "| arm | setting | runs | seconds | samples | labels | label kind | win-rate | gold reward | KL |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for c in frontier.costs(records):
        ends = [p for (arm, value, _), p in last.items() if arm == c["arm"] and value == str(c["value"])]
        out.append(f"| {c['label']} | {knob.get(c['arm'], 'knob')} = {c['value']} | {c['runs']} | {c['seconds']:.1f} | "
                   f"{c['samples']} | {c['labels']} | {_cell(c['label_kind'])} | {_f(_mean(ends, 'win_rate'))} | "
                   f"{_f(_mean(ends, 'gold_reward'))} | {_f(_mean(ends, 'kl'), 2)} |")
    out += ["", "Lecture 09 shows the plots, the win-rate table, the costs and a verdict per method. Only the "
            "`quick` profile's grid is committed."]
    return out


def verdict_rows(root: Path = ROOT) -> list[dict]:
    """The verdicts of ``studies.verdicts.CLAIMS`` on the committed frontier (``results/verdicts.json``)."""
    from . import verdicts

    _, pts, _ = frontier_data(root)
    return verdicts.compute(pts)


def verdicts_section(root: Path = ROOT) -> list[str]:
    """The comparative verdicts as paired differences over seeds, from ``results/verdicts.json``'s rows."""
    from . import frontier, verdicts

    labels = {a.name: a.label for a in frontier.ARMS}
    return ["## Verdicts: paired differences over seeds", "",
            "Each claim compares two arms seed by seed (the same SFT model for both): the difference of their "
            "most gold reward within the budget, its mean over the seeds and its 95% Student-t interval. It "
            "*holds* when the interval is above 0, *fails* when it is below 0, and is *inconclusive* otherwise "
            "(`alignlab.studies.verdicts`). Computed from `results/frontier/` (written by "
            "`python -m alignlab frontier --jobs 2 --out results/frontier`) into `results/verdicts.json` by "
            f"`{COMMAND}`:", "", verdicts.markdown(verdict_rows(root), labels)]


def tuning_section(root: Path = ROOT) -> list[str]:
    """The tuning protocol's table (``results/tuning/``): every configuration tried, per tuning seed."""
    from . import frontier, sweep, tuning

    records = sweep.load_records(root / "results" / "tuning") if (root / "results" / "tuning").exists() else []
    out = ["## The tuning protocol", "",
           f"Every setting a comparison depends on is chosen on the tuning SFT seeds "
           f"{', '.join(map(str, tuning.TUNING_SEEDS))}, which nothing else reports (`alignlab.studies.tuning`). "
           f"Each frontier arm tries {tuning.BUDGET} configurations (its default first), its knob at its middle "
           f"value; a run scores the most gold reward it reaches within KL <= {tuning.KL_BUDGET:g} nats, and the "
           f"chosen configuration has the best mean score among those whose final valid rate is at least "
           f"{tuning.MIN_VALID:g} on every tuning seed.", ""]
    if not records:
        return out + ["No tuning run is committed yet: `python -m alignlab tune --jobs 2 --out results/tuning`."]
    seeds = sorted({r["spec"]["seed"] for r in records})
    arms = [a for a in frontier.ARMS if a.tune and any(r["spec"]["method"] == a.method for r in records)]
    ok = sum(r.get("status") == "ok" for r in records)
    return out + [f"`python -m alignlab tune --jobs 2 --out results/tuning`: {ok} finished runs of "
                  f"{len(tuning.specs(arms, seeds))} in `results/tuning/` (the sweep resumes):", "",
                  tuning.markdown(tuning.table(records, arms), seeds)]


def results_page(root: Path = ROOT) -> str:
    """The text of ``docs/results.md``."""
    out = ["# Results", "",
           f"<!-- Generated by `{COMMAND}` from the files in results/: do not edit. "
           "tests/test_docs.py fails while this page is out of step with them. -->", "",
           "Every table on this page is generated from committed result files and says the command that "
           "made them. All runs are on the `quick` profile on a CPU; numbers are on held-out prompts against "
           "the SFT reference, KL is the sequence-level k1 estimate in nats (see [metrics.md](metrics.md)). "
           "On the CPU the same seed and thread count give the same numbers; another thread count trains "
           "another SFT model. A measurement that has no committed result file (timings of the test suite, "
           "the benchmark, the `full` profile) is not kept here: run its command to see it "
           "([performance.md](performance.md)).", ""]
    for section in (runs_section, seeds_section, online_section, frontier_section, verdicts_section,
                    tuning_section):
        out += section(root) + [""]
    return "\n".join(out).rstrip("\n") + "\n"


def headline_block(root: Path = ROOT) -> str:
    """The README's results block: the frontier at each budget, and the seed sweep in one line."""
    _, _, table = frontier_data(root)
    records, seeds, threads, rows = seeds_data(root)
    met, n = sum(r["met"] for r in rows), sum(r["n"] for r in rows)
    frontier_seeds = sorted({s for r in table for s in r["per_seed"]})
    out = [f"<!-- generated by `{COMMAND}` from results/; do not edit -->",
           f"Every method on one gold-reward-vs-KL frontier (lecture 09): the most gold reward reached within "
           f"each KL budget (nats), mean over SFT seeds {_range_text(frontier_seeds)}, `quick` profile, "
           "from `results/frontier/`:", ""]
    out += budget_markdown(table, ranges=False)
    lectures = sorted({r["lecture"] for r in rows})
    miss = list(dict.fromkeys(r["headline"] for r in rows if r["met"] < r["n"]))
    out += ["", f"Each lecture's headline claim ({lectures[0]}-{lectures[-1]}) over SFT seeds {_range_text(seeds)} "
            f"with {' and '.join(map(str, threads))} torch threads: {met} of {n} runs meet their target"
            + (f"; the misses are in: {'; '.join(miss)}." if miss else ".")
            + " Every table, with its command: [docs/results.md](docs/results.md)."]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# The pages
# ---------------------------------------------------------------------------


def fill(text: str, blocks: dict[str, str], where: str = "page") -> str:
    """``text`` with each ``<!-- generated:NAME -->`` block's body replaced by ``blocks[NAME]``."""
    found = {m.group("name") for m in BLOCK.finditer(text)}
    missing = sorted(set(blocks) - found)
    if missing:
        raise ValueError(f"{where} has no generated block {', '.join(missing)}: it needs the lines "
                         f"'<!-- generated:{missing[0]} -->' and '<!-- /generated -->' around it")

    def sub(m):
        name = m.group("name")
        return m.group(1) + blocks[name] + m.group(4) if name in blocks else m.group(0)

    return BLOCK.sub(sub, text)


def _metrics_markdown() -> str:
    from .. import metrics

    return metrics.markdown(_registry().values())


def pages(root: Path = ROOT) -> dict[Path, str]:
    """Every generated page: path relative to ``root`` -> its full text."""
    root = Path(root)
    readme, arch = Path("README.md"), Path("docs/architecture.md")
    return {
        Path("docs/results.md"): results_page(root),
        Path("docs/metrics.md"): _metrics_markdown(),
        arch: fill((root / arch).read_text(), {"codemap": code_map(root)}, str(arch)),
        readme: fill((root / readme).read_text(), {"headline": headline_block(root)}, str(readme)),
        Path("requirements.txt"): requirements(root),
        Path("results/verdicts.json"): json.dumps(verdict_rows(root), indent=1) + "\n",
    }


def _differs(path: Path, text: str) -> bool:
    try:
        return path.read_text() != text
    except FileNotFoundError:
        return True


def stale(root: Path = ROOT) -> list[str]:
    """The generated pages (relative paths) whose file differs from what ``pages()`` gives."""
    root = Path(root)
    return [p.as_posix() for p, text in pages(root).items() if _differs(root / p, text)]


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` so that a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(root: Path = ROOT) -> list[Path]:
    """Rewrite the generated pages whose text changed; return their paths (under ``root``)."""
    root = Path(root)
    written = []
    for p, text in pages(root).items():
        if _differs(root / p, text):
            write_text_atomic(root / p, text)
            written.append(root / p)
    return written


def cmd_docs(args) -> int:
    root = Path(args.root)
    if args.check:
        bad = stale(root)
        if bad:
            print(f"out of step with the committed results and code: {', '.join(bad)}; fix with `{COMMAND}`",
                  file=sys.stderr)
            return 1
        print(f"{len(pages(root))} generated pages in step")
        return 0
    written = write(root)
    for p in written:
        print(f"wrote {p.relative_to(root) if p.is_relative_to(root) else p}")
    print(f"{len(written)} page(s) rewritten")
    return 0


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser("docs", help="regenerate the docs pages made from results/ and the code "
                                    "(docs/results.md, docs/metrics.md, ...)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only check; exit 1 naming the stale pages")
    p.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_docs)
