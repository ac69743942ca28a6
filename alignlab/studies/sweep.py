"""Many ``python -m alignlab run`` invocations as one resumable sweep.

A sweep is a list of ``RunSpec`` (method, seed, settings, torch threads, profile). Each
run is a subprocess of the CLI's ``run`` command (so it is exactly what a user would run),
and its result is one JSON file in the sweep's folder, written atomically when the run
ends. Running the same sweep again skips every run whose file says it finished: a killed
sweep resumes where it stopped and a finished run is never trained again (a run killed by a
signal, e.g. Ctrl-C, leaves no file and runs again). A run that
fails (a non-zero exit, a NaN loss, no JSON line) is recorded as failed, with the last line
of its error, and the sweep goes on; ``retry_failed=True`` runs those again.

Torch threads matter: on the CPU, one thread and two threads train different SFT models
(and every model downstream of them). Runs with ``threads=T`` therefore use their own model
cache, ``<cache root>/threads-T``, so a table over thread counts never mixes their models.
With ``jobs > 1`` independent runs go in parallel processes; give them one thread each
(``jobs * threads`` should not exceed the cores).

``python -m alignlab seeds`` is a sweep: each lecture's headline over SFT seeds and thread
counts (``HEADLINES`` below), printed as a table of mean, min and max.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from ..cache import cache_root, write_json_atomic


@dataclass(frozen=True)
class RunSpec:
    """One ``python -m alignlab run METHOD --seed SEED --set K=V ...`` under ``threads`` threads."""

    method: str
    seed: int = 0
    settings: tuple = ()
    """(name, value) pairs passed as ``--set name=value``, sorted."""
    threads: int = 1
    profile: str = "quick"

    @classmethod
    def make(cls, method: str, seed: int = 0, settings: dict | None = None, threads: int = 1,
             profile: str = "quick") -> RunSpec:
        return cls(method, int(seed), tuple(sorted((settings or {}).items())), int(threads), profile)

    @property
    def name(self) -> str:
        """A file name that says what the run is and cannot collide with another run's."""
        sets = "".join(f"-{k}={v}" for k, v in self.settings)
        digest = hashlib.sha1(json.dumps(dataclasses.asdict(self), sort_keys=True,
                                         default=str).encode()).hexdigest()[:8]
        return f"{self.method}-{self.profile}-s{self.seed}-t{self.threads}{sets}-{digest}"[:150]

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "alignlab", "run", self.method, "--profile", self.profile,
               "--seed", str(self.seed), "--json"]
        for k, v in self.settings:
            cmd += ["--set", f"{k}={v}"]
        return cmd


def thread_cache(threads: int) -> Path:
    """The model cache of runs with ``threads`` torch threads (their own: see the module doc)."""
    return cache_root() / f"threads-{threads}"


def last_json(stdout: str) -> dict | None:
    """The last line of ``stdout`` that parses as a JSON object, or None."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def _is_finite(result: dict) -> bool:
    return all(math.isfinite(v) for v in result.values() if isinstance(v, float))


def run_one(spec: RunSpec, timeout: float | None = None) -> dict:
    """Run ``spec`` in a subprocess; a record with ``status`` "ok" or "failed" (and ``error``)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(spec.threads), "MKL_NUM_THREADS": str(spec.threads),
           "ALIGNLAB_CACHE": str(thread_cache(spec.threads))}
    env.pop("ALIGNLAB_DEBUG", None)  # errors as one line, which is what the record keeps
    record = {"spec": {**dataclasses.asdict(spec), "settings": dict(spec.settings)},
              "command": " ".join(spec.command()), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    t0 = time.time()
    try:
        proc = subprocess.run(spec.command(), capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**record, "status": "failed", "seconds": round(time.time() - t0, 1),
                "error": f"timed out after {timeout} s"}
    record["seconds"] = round(time.time() - t0, 1)
    if proc.returncode < 0 or proc.returncode == 130:  # killed by a signal (Ctrl-C, kill): not a result
        return {**record, "status": "interrupted", "error": f"killed (exit status {proc.returncode})"}
    result = last_json(proc.stdout)
    if proc.returncode != 0 or result is None:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        error = lines[-1] if lines else f"exit status {proc.returncode} and no JSON line"
        return {**record, "status": "failed", "error": error[:500]}
    if not _is_finite(result):
        bad = sorted(k for k, v in result.items() if isinstance(v, float) and not math.isfinite(v))
        return {**record, "status": "failed", "error": f"non-finite result: {', '.join(bad)}", "result": result}
    return {**record, "status": "ok", "result": result}


def load(out: Path, spec: RunSpec) -> dict | None:
    """The stored record of ``spec`` in folder ``out``, or None (absent or unreadable)."""
    path = Path(out) / f"{spec.name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def load_records(out: Path | str) -> list[dict]:
    """Every readable run record in sweep folder ``out`` (finished and failed runs), by file name;
    other JSON files there (a sweep's ``manifest.json``) are not records."""
    records = []
    for path in sorted(Path(out).glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a torn file is a run that did not finish: the next sweep runs it again
        if isinstance(rec, dict) and "spec" in rec and "status" in rec:  # not e.g. manifest.json
            records.append(rec)
    return records


def sweep(specs: list[RunSpec], out: Path | str, jobs: int = 1, retry_failed: bool = False,
          progress: bool = True, timeout: float | None = None, runner=run_one) -> list[dict]:
    """Run every spec not already finished in ``out``; return all records, in ``specs`` order.

    Each record is written to ``out/<spec.name>.json`` atomically as soon as its run ends,
    so killing the sweep loses at most the runs in flight.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs = list(dict.fromkeys(specs))  # the same run asked twice is run once
    records: dict[RunSpec, dict] = {}
    todo = []
    for spec in specs:
        rec = load(out, spec)
        if rec is not None and (rec.get("status") == "ok" or (rec.get("status") == "failed" and not retry_failed)):
            records[spec] = rec
        else:
            todo.append(spec)
    bar = tqdm(total=len(specs), initial=len(specs) - len(todo), desc="sweep", unit="run",
               disable=not progress)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))  # threads wait on subprocesses
    try:
        futures = {pool.submit(runner, spec, timeout): spec for spec in todo}
        for fut in as_completed(futures):
            spec = futures[fut]
            rec = fut.result()
            if rec["status"] != "interrupted":  # an interrupted run is run again next time
                write_json_atomic(out / f"{spec.name}.json", rec)
            records[spec] = rec
            bar.set_postfix_str(f"{spec.method} s{spec.seed} t{spec.threads}: {rec['status']}")
            bar.update()
    except BaseException:  # Ctrl-C: the runs in flight got it too; the queued ones never start
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        bar.close()
    pool.shutdown()
    return [records[s] for s in specs]


# --- each lecture's headline, over seeds ------------------------------------------------------

@dataclass(frozen=True)
class Headline:
    """A lecture's headline claim: ``metric`` of ``run method`` is at least ``target``."""

    lecture: str
    label: str
    method: str
    metric: str
    target: float
    settings: dict = field(default_factory=dict)


HEADLINES = (
    Headline("00", "SFT model: valid rate", "sft", "valid_rate", 0.93),
    Headline("01", "reward model: accuracy vs gold", "rm", "rm_accuracy", 0.80),
    Headline("01", "best-of-16 under the RM: win-rate", "bon", "win_rate", 0.70),
    Headline("02", "policy gradient (GAE + KL, gold): win-rate", "pg", "win_rate", 0.70),
    Headline("02", "policy gradient: valid rate", "pg", "valid_rate", 0.90),
    Headline("03", "PPO vs the learned RM: win-rate", "ppo", "win_rate", 0.70),
    Headline("03", "PPO vs the learned RM: valid rate", "ppo", "valid_rate", 0.85),
    Headline("04", "DPO: win-rate", "dpo", "win_rate", 0.70),
    Headline("04", "DPO: valid rate", "dpo", "valid_rate", 0.85),
    Headline("04", "DPO + SFT term (sft_weight = 1, 120 steps): win-rate", "dpo", "win_rate", 0.70,
             {"sft_weight": 1.0, "steps": 120}),
    Headline("04", "DPO + SFT term: valid rate", "dpo", "valid_rate", 0.90, {"sft_weight": 1.0, "steps": 120}),
    Headline("05", "KTO: win-rate", "kto", "win_rate", 0.70),
    Headline("05", "KTO: valid rate", "kto", "valid_rate", 0.85),
)


def headline_specs(seeds, threads, profile: str = "quick", headlines=HEADLINES) -> list[RunSpec]:
    return list(dict.fromkeys(RunSpec.make(h.method, s, h.settings, t, profile)
                              for h in headlines for t in threads for s in seeds))


def headline_table(records: list[dict], seeds, threads, headlines=HEADLINES) -> list[dict]:
    """One row per (headline, threads): values by seed, mean, min, max, seeds meeting the target."""
    by_spec = {}
    for rec in records:
        s = rec["spec"]
        by_spec[RunSpec.make(s["method"], s["seed"], s["settings"], s["threads"], s["profile"])] = rec
    rows = []
    for h in headlines:
        for t in threads:
            values = {}
            for seed in seeds:
                rec = next((r for sp, r in by_spec.items() if sp.method == h.method and sp.seed == seed
                            and sp.threads == t and dict(sp.settings) == h.settings), None)
                if rec is not None and rec.get("status") == "ok" and h.metric in rec["result"]:
                    values[seed] = float(rec["result"][h.metric])
            got = list(values.values())
            rows.append({"lecture": h.lecture, "headline": h.label, "threads": t, "target": h.target,
                         "values": values, "mean": sum(got) / len(got) if got else None,
                         "min": min(got) if got else None, "max": max(got) if got else None,
                         "met": sum(v >= h.target for v in got), "n": len(got), "missing": len(seeds) - len(got)})
    return rows


def _num(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def markdown(rows: list[dict], seeds) -> str:
    """The headline table as markdown."""
    head = "| lecture | headline (target) | threads | " + " / ".join(f"s{s}" for s in seeds) + \
           " | mean | min | max | seeds meeting it |"
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        vals = " / ".join(f"{r['values'][s]:.3f}" if s in r["values"] else "–" for s in seeds)
        lines.append(f"| {r['lecture']} | {r['headline']} (≥ {r['target']:.2f}) | {r['threads']} | {vals} | "
                     f"{_num(r['mean'])} | {_num(r['min'])} | {_num(r['max'])} | {r['met']} of {r['n']} |")
    return "\n".join(lines)


def parse_ints(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"1,2"`` -> [1, 2]; a malformed list is a ValueError."""
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                out += list(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(f"expected a list like 0-4 or 1,2; got {text!r}") from None
    if not out:
        raise ValueError(f"expected a list like 0-4 or 1,2; got {text!r}")
    return out


def cmd_seeds(args) -> int:
    seeds, threads = parse_ints(args.seeds), parse_ints(args.threads)
    headlines = [h for h in HEADLINES if not args.lectures or h.lecture in args.lectures.split(",")]
    if not headlines:
        raise ValueError(f"no headline for lectures {args.lectures!r}; lectures: "
                         f"{sorted({h.lecture for h in HEADLINES})}")
    specs = headline_specs(seeds, threads, args.profile, headlines)
    t0 = time.time()
    records = sweep(specs, Path(args.out), jobs=args.jobs, retry_failed=args.retry_failed)
    rows = headline_table(records, seeds, threads, headlines)
    failed = [r for r in records if r.get("status") != "ok"]
    print(markdown(rows, seeds))
    for r in failed:
        print(f"failed: {r['command']}: {r.get('error')}", file=sys.stderr)
    print(f"{len(records)} runs ({len(failed)} failed) in {args.out}; this call took {time.time() - t0:.0f} s")
    if args.json:
        print(json.dumps({"rows": rows, "failed": len(failed)}))
    return 1 if failed else 0


def add_parser(sub) -> None:
    p = sub.add_parser("seeds", help="each lecture's headline over SFT seeds and thread counts (a resumable sweep)",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0-4", help="SFT seeds, e.g. 0-4 or 0,2 (default 0-4)")
    p.add_argument("--threads", default="1,2", help="torch thread counts, e.g. 1,2 (default 1,2)")
    p.add_argument("--lectures", default="", help="only these lectures, e.g. 04,05 (default all)")
    p.add_argument("--profile", default="quick")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (mind threads x jobs <= cores)")
    p.add_argument("--out", default="runs/seeds", help="folder of per-run results (resumable)")
    p.add_argument("--retry-failed", action="store_true", help="run again the runs recorded as failed")
    p.add_argument("--json", action="store_true", help="also print the table as one JSON line")
    p.set_defaults(func=cmd_seeds)
