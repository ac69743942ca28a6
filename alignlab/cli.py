"""Command line: ``python -m alignlab {run,course,...}``.

    python -m alignlab run sft --profile quick --seed 0 --json
    python -m alignlab run dpo --set beta=0.05 --json
    python -m alignlab course            # execute every lecture notebook, print a table

``run`` trains (or loads from the cache) one method, evaluates it with the
shared evaluation, and prints as its last line one JSON object with at least
method, profile, seed, seconds, gold_reward, kl, win_rate, valid_rate.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

# method name -> "module:function". Each function is run(profile, seed, overrides) -> dict.
METHODS = {
    "sft": "alignlab.pipeline:run_sft",
    "rm": "alignlab.rm:run_rm",
    "bon": "alignlab.rm:run_bon",
    "pg": "alignlab.pg:run",
    "ppo": "alignlab.ppo:run",
    "dpo": "alignlab.dpo:run",
    "kto": "alignlab.kto:run",
}

DESCRIPTIONS = {
    "sft": "pretrain + supervised fine-tune the tiny GPT-2 (the reference policy)",
    "rm": "train the Bradley-Terry reward model on preference pairs (adds rm_accuracy)",
    "bon": "best-of-N sampling under the learned reward model (adds n; --set n=16)",
    "pg": "policy gradient with a value head and GAE against the gold reward",
    "ppo": "PPO-clip RLHF against the learned reward model (adds rm_reward)",
    "dpo": "direct preference optimisation (adds beta)",
    "kto": "Kahneman-Tversky optimisation from binary feedback (adds desirable_fraction)",
}


def _method(name: str):
    module, func = METHODS[name].split(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as e:
        raise SystemExit(f"method {name!r} is not available in this version of alignlab ({e})")


def _parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def cmd_run(args) -> int:
    from .models import get_profile

    try:
        profile = get_profile(args.profile)
    except ValueError as e:
        raise SystemExit(str(e))
    run = _method(args.method)
    t0 = time.time()
    result = run(profile, args.seed, _parse_sets(args.set))
    out = {"method": args.method, "profile": profile.name, "seed": args.seed,
           "seconds": round(time.time() - t0, 1), **result}
    if not args.json:
        for k, v in out.items():
            print(f"{k:>14}: {v}")
    print(json.dumps(out))
    return 0


def cmd_course(args) -> int:
    from .course import run_course

    return run_course(args.notebooks, args.out, args.profile, args.timeout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alignlab",
        description="alignlab: train and evaluate tiny GPT-2 policies in the review world.",
        epilog="Profiles: 'quick' (2-core CPU) and 'full' (one GPU); the default is 'full' with "
               "CUDA and 'quick' without, or $ALIGNLAB_PROFILE. The cache of trained models is "
               "in $ALIGNLAB_CACHE (default ~/.cache/alignlab).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    methods = "\n".join(f"  {k:<5} {v}" for k, v in DESCRIPTIONS.items())
    p = sub.add_parser("run", help="train/evaluate one method; last line is JSON",
                       description=f"methods:\n{methods}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", choices=sorted(METHODS))
    p.add_argument("--profile", default=None, help="quick or full (default: by device)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of the method's config, e.g. --set beta=0.05")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("course", help="execute every lecture notebook headless; print a table")
    p.add_argument("--notebooks", default="notebooks", help="folder of notebooks to run")
    p.add_argument("--out", default="runs", help="where executed copies are written")
    p.add_argument("--profile", default=None, help="quick or full (default: by device)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per notebook")
    p.set_defaults(func=cmd_course)

    for extra in ("grading",):  # commands added by later modules register themselves
        try:
            importlib.import_module(f"alignlab.{extra}").add_commands(sub)
        except ImportError:
            pass

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
