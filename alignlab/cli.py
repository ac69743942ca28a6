"""Command line: ``python -m alignlab COMMAND``.

    python -m alignlab run sft --profile quick --seed 0 --json
    python -m alignlab run dpo --set beta=0.05 --json
    python -m alignlab run dpo --help     # the method's settings, their docs and defaults
    python -m alignlab course             # execute every lecture notebook, print a table
    python -m alignlab notebooks --check  # every .ipynb in step with its percent .py source
    python -m alignlab docs --check       # every generated docs page in step with results/

``run`` trains (or loads from the cache) one method of ``alignlab.methods.REGISTRY``,
evaluates it with the shared evaluation, and prints as its last line one JSON object
with at least ``registry.SHARED_KEYS``. Its settings are built once (``registry.build_config``);
``--seed`` is the one seed door.

Each subcommand's module is imported only when that subcommand runs (``COMMANDS``), so
``--help`` and ``notebooks --check`` start in a fraction of a second, without torch.

An error a user can cause (a wrong ``--set`` name or value, a bad profile, an
unwritable cache folder, a missing folder) prints one line on stderr and exits 2;
``ALIGNLAB_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

PROFILES = ("micro", "quick", "full")
"""The profiles' names (``alignlab.models.PROFILES``; a test holds the two equal)."""

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("alignlab.cli", "train/evaluate one method; last line is JSON"),
    "course": ("alignlab.cli", "execute every lecture notebook headless; print a table"),
    "notebooks": ("alignlab.cli", "rebuild every .ipynb from its percent .py source, and exercises/"),
    "exercises": ("alignlab.course.exercises", "generate exercises/ (student notebooks) from solutions/"),
    "grade": ("alignlab.course.grading", "grade a folder of submitted exercise notebooks into a CSV"),
    "site": ("alignlab.course.site", "execute the lecture notebooks and build a static HTML site of them"),
    "seeds": ("alignlab.studies.sweep", "each lecture's headline over SFT seeds and thread counts (a sweep)"),
    "frontier": ("alignlab.studies.frontier", "every method's arms on lecture 09's reward-KL frontier (a sweep)"),
    "tune": ("alignlab.studies.tuning", "the tuning protocol: each arm's configurations on tuning seeds (a sweep)"),
    "bench": ("alignlab.studies.bench", "seconds per step of the course's methods against the floor"),
    "docs": ("alignlab.studies.docs", "regenerate docs/ pages and tables from the committed results"),
}
"""Every subcommand: the module whose ``add_parser(sub)`` defines it, and its one-line help."""


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


# ---------------------------------------------------------------------------
# run, course, notebooks
# ---------------------------------------------------------------------------


def cmd_run(args) -> int:
    from .methods import REGISTRY
    from .models import get_profile
    from .registry import build_config

    method = REGISTRY[args.method]
    profile = get_profile(args.profile)
    config = build_config(method, profile, args.seed, parse_sets(args.set))  # checked before training
    t0 = time.time()
    result = method.run(profile, args.seed, config)
    out = {"method": method.name, "profile": profile.name, "seed": args.seed,
           "seconds": round(time.time() - t0, 1), **result}
    if not args.json:
        for k, v in out.items():
            print(f"{k:>20}: {f'{len(v)} checkpoints (in the JSON line)' if k == 'evals' else v}")
    print(json.dumps(out))
    return 0


def _settings_help(method) -> str:
    from .models import get_profile

    rows = method.settings(get_profile("quick"))
    if not rows:
        return "This method has no settings (its sizes come from the profile)."
    width = max(len(n) for n, *_ in rows)
    lines = ["settings (--set KEY=VALUE; defaults of the quick profile; the seed is --seed):"]
    for name, kind, default, doc in rows:
        if name != "seed":
            lines.append(f"  {name:<{width}}  {kind} = {default!r}\n  {'':<{width}}  {doc}")
    return "\n".join(lines)


def _add_run(sub) -> None:
    from .methods import REGISTRY

    listing = "\n".join(f"  {m.name:<11} {m.description}" for m in REGISTRY.values())
    run = sub.add_parser("run", help=COMMANDS["run"][1],
                         description=f"methods:\n{listing}\n\n`run METHOD --help` lists its settings.",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    methods = run.add_subparsers(dest="method", required=True, metavar="METHOD")
    for m in REGISTRY.values():
        p = methods.add_parser(m.name, help=m.description, description=m.description,
                               epilog=_settings_help(m), formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--profile", default=None, help="micro, quick or full (default: by device)")
        p.add_argument("--seed", type=int, default=0,
                       help="the one seed: picks the SFT model, seeds the data, the batch order and the evaluation")
        p.add_argument("--json", action="store_true", help="print only the JSON line")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting (listed below), e.g. --set beta=0.05")
        p.set_defaults(func=cmd_run)


def cmd_course(args) -> int:
    from .course.runner import run_course

    return run_course(args.notebooks, args.out, args.profile, args.timeout)


def _add_course(sub) -> None:
    p = sub.add_parser("course", help=COMMANDS["course"][1])
    p.add_argument("--notebooks", default="notebooks", help="folder of notebooks to run")
    p.add_argument("--out", default="runs", help="where executed copies are written")
    p.add_argument("--profile", default=None, help="quick or full (default: by device)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per notebook")
    p.set_defaults(func=cmd_course)


def cmd_notebooks(args) -> int:
    from .course import exercises, notebooks

    if args.check:
        stale = notebooks.stale() + [f"exercises/{p}" for p in exercises.stale()]
        if stale:
            print("out of step with their sources: " + ", ".join(stale) + f"; fix with `{notebooks.FIX}`",
                  file=sys.stderr)
            return 1
        print(f"{len(notebooks.sources())} notebooks in step with their .py sources")
        return 0
    written = notebooks.write_all() + exercises.write()
    for p in written:
        print(f"wrote {p}")
    print(f"{len(written)} notebook(s) rebuilt")
    return 0


def _add_notebooks(sub) -> None:
    p = sub.add_parser("notebooks", help=COMMANDS["notebooks"][1])
    p.add_argument("--check", action="store_true", help="only check; exit 1 naming the stale notebooks")
    p.set_defaults(func=cmd_notebooks)


_HERE = {"run": _add_run, "course": _add_course, "notebooks": _add_notebooks}


# ---------------------------------------------------------------------------
# The parser: only the chosen subcommand's module is imported
# ---------------------------------------------------------------------------


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; ``argv`` picks which subcommand is built in full (the others get a stub that
    only carries their help line). Without ``argv`` every subcommand is built (slow: imports all)."""
    parser = argparse.ArgumentParser(
        prog="python -m alignlab",
        description="alignlab: train and evaluate tiny GPT-2 policies in the review world.",
        epilog=f"Profiles: {', '.join(PROFILES)}; the default is 'full' with CUDA and "
               "'quick' without, or $ALIGNLAB_PROFILE. The cache of trained models is in "
               "$ALIGNLAB_CACHE (default ~/.cache/alignlab). `COMMAND --help` shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    for name, (module, help_line) in COMMANDS.items():
        if argv is not None and name != chosen:
            sub.add_parser(name, help=help_line, add_help=False)
        elif name in _HERE:
            _HERE[name](sub)
        else:
            importlib.import_module(module).add_parser(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(argv).parse_args(argv)
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
