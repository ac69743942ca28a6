"""Command line: ``python -m alignlab {run,course,notebooks,exercises,grade}``.

    python -m alignlab run sft --profile quick --seed 0 --json
    python -m alignlab run dpo --set beta=0.05 --json
    python -m alignlab run dpo --help     # the method's settings, their docs and defaults
    python -m alignlab course             # execute every lecture notebook, print a table
    python -m alignlab notebooks --check  # every .ipynb in step with its percent .py source

``run`` trains (or loads from the cache) one method of ``alignlab.methods.REGISTRY``,
evaluates it with the shared evaluation, and prints as its last line one JSON object
with at least ``registry.SHARED_KEYS``.

An error a user can cause (a wrong ``--set`` name or value, a bad profile, an
unwritable cache folder, a missing folder) prints one line on stderr and exits 2;
``ALIGNLAB_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from . import config as config_mod
from . import metrics
from .course import exercises, grading, notebooks, site
from .course.runner import run_course
from .methods import REGISTRY
from .models import PROFILES, get_profile
from .registry import Method
from .studies import frontier, sweep
from .studies.bench import add_parser as add_bench_parser


class UserError(Exception):
    """An error in what the user asked for: printed as one line, exit status 2."""


def parse_sets(items: list[str]) -> dict[str, str]:
    """``["beta=0.1", ...]`` -> ``{"beta": "0.1"}``; a malformed item is a ``UserError``."""
    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def cmd_run(args) -> int:
    method: Method = REGISTRY[args.method]
    profile = get_profile(args.profile)
    sets = parse_sets(args.set)
    if method.config is None and sets:
        raise UserError(f"run {method.name} takes no --set options (got {sorted(sets)})")
    if method.config is not None:  # check names and values before any training starts
        config_mod.override(method.config.for_profile(profile), sets)
    t0 = time.time()
    result = method.run(profile, args.seed, sets)
    out = {"method": method.name, "profile": profile.name, "seed": args.seed,
           "seconds": round(time.time() - t0, 1), **result}
    if not args.json:
        for k, v in out.items():
            print(f"{k:>20}: {f'{len(v)} checkpoints (in the JSON line)' if k == 'evals' else v}")
    print(json.dumps(out))
    return 0


def cmd_course(args) -> int:
    return run_course(args.notebooks, args.out, args.profile, args.timeout)


def cmd_notebooks(args) -> int:
    if args.check:
        stale = notebooks.stale() + [f"exercises/{p}" for p in exercises.stale()]
        if metrics.DOCS.exists() and metrics.DOCS.read_text() != metrics.markdown():
            stale.append("docs/metrics.md")
        if stale:
            print("out of step with their sources: " + ", ".join(stale) + f"; fix with `{notebooks.FIX}`",
                  file=sys.stderr)
            return 1
        print(f"{len(notebooks.sources())} notebooks in step with their .py sources")
        return 0
    written = notebooks.write_all() + exercises.write()
    if metrics.DOCS.read_text() != metrics.markdown():
        written.append(metrics.write_docs())
    for p in written:
        print(f"wrote {p}")
    print(f"{len(written)} notebook(s) rebuilt")
    return 0


def _settings_help(method: Method) -> str:
    rows = method.settings(get_profile("quick"))
    if not rows:
        return "This method has no settings (its sizes come from the profile)."
    width = max(len(n) for n, *_ in rows)
    lines = ["settings (--set KEY=VALUE; defaults of the quick profile):"]
    for name, kind, default, doc in rows:
        lines.append(f"  {name:<{width}}  {kind} = {default!r}\n  {'':<{width}}  {doc}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m alignlab",
        description="alignlab: train and evaluate tiny GPT-2 policies in the review world.",
        epilog=f"Profiles: {', '.join(sorted(PROFILES))}; the default is 'full' with CUDA and "
               "'quick' without, or $ALIGNLAB_PROFILE. The cache of trained models is in "
               "$ALIGNLAB_CACHE (default ~/.cache/alignlab).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    listing = "\n".join(f"  {m.name:<6} {m.description}" for m in REGISTRY.values())
    run = sub.add_parser("run", help="train/evaluate one method; last line is JSON",
                         description=f"methods:\n{listing}\n\n`run METHOD --help` lists its settings.",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    methods = run.add_subparsers(dest="method", required=True, metavar="METHOD")
    for m in REGISTRY.values():
        p = methods.add_parser(m.name, help=m.description, description=m.description,
                               epilog=_settings_help(m), formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--profile", default=None, help="quick or full (default: by device)")
        p.add_argument("--seed", type=int, default=0, help="seed of the SFT model, data and evaluation")
        p.add_argument("--json", action="store_true", help="print only the JSON line")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting (listed below), e.g. --set beta=0.05")
        p.set_defaults(func=cmd_run)

    p = sub.add_parser("course", help="execute every lecture notebook headless; print a table")
    p.add_argument("--notebooks", default="notebooks", help="folder of notebooks to run")
    p.add_argument("--out", default="runs", help="where executed copies are written")
    p.add_argument("--profile", default=None, help="quick or full (default: by device)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per notebook")
    p.set_defaults(func=cmd_course)

    p = sub.add_parser("notebooks", help="rebuild every .ipynb from its percent .py source, exercises/ "
                                         "and docs/metrics.md")
    p.add_argument("--check", action="store_true", help="only check; exit 1 naming the stale notebooks")
    p.set_defaults(func=cmd_notebooks)

    exercises.add_parser(sub)
    grading.add_parser(sub)
    sweep.add_parser(sub)
    frontier.add_parser(sub)
    site.add_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("alignlab: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one line for the user; the traceback on request
        if os.environ.get("ALIGNLAB_DEBUG"):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"alignlab: error: {message} (ALIGNLAB_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
