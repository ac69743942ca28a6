"""Where a submission runs: a bubblewrap sandbox when the machine has one, else a plain process.

With bubblewrap (``bwrap``, packaged by Debian, Ubuntu, Fedora...), every submission gets:

* no network (its own, empty, network namespace) and its own PID namespace (it cannot see
  or signal the grader, nor the other submissions);
* a read-only view of the file system, in which the submissions folder, the CSV, the
  executed copies, the solutions and the grader's home folder are hidden (what the student's
  Python needs from there, the venv or the model cache, is bound back read-only), and
  ``/tmp`` (its working folder) and ``/dev/shm`` are private tmpfs of ``scratch_mb`` each;
* no capabilities (``--cap-drop ALL``: run by root, bwrap would keep them all inside), and
  a read-only ``/dev`` (bwrap's own is an unsized tmpfs);
* resource limits: address space (``memory_mb`` per process), processes (``processes``),
  CPU time, file size; and, when the grader may create cgroups (root, or a delegated
  cgroup v2 tree), a memory and a process cap on the whole sandbox. Linux does not apply
  RLIMIT_NPROC to root: run as root without cgroups, nothing caps the processes (the
  grader's banner says so) and only the time limit ends a fork bomb.

Without it, the submission runs as a plain process with the same resource limits and in
its own session, behind a disposable "keeper" parent; the grader says so, loudly, once.
The judge (the expected answers, the scores) stays outside the student's process either way.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

SANDBOX_ENV = "ALIGNLAB_SANDBOX"
"""``auto`` (default), ``bwrap`` (fail if unavailable) or ``none`` (no sandbox)."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits of one submission."""

    memory_mb: int = 4096
    """Address space per process (RLIMIT_AS) and, with cgroups, memory of the whole sandbox."""
    processes: int = 64
    """Processes (and threads) the submission may run at once."""
    scratch_mb: int = 256
    """Size of its private /tmp (and of /dev/shm)."""
    file_mb: int = 64
    """Largest file it may write."""
    cpu_seconds: int | None = None
    """CPU time per process; default: the submission's time limit plus a minute."""

    def rlimits(self, timeout: float) -> dict:
        cpu = self.cpu_seconds if self.cpu_seconds is not None else int(timeout) + 60
        return {"memory_bytes": self.memory_mb * 2**20, "processes": self.processes, "cpu_seconds": cpu,
                "file_bytes": self.file_mb * 2**20, "core_bytes": 0}


# ---------------------------------------------------------------------------
# cgroups (optional: a cap on the whole sandbox, not only per process)
# ---------------------------------------------------------------------------


def _own_cgroup(controller: str) -> str | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controller in controllers.split(",") or (controllers == "" and controller == ""):
                return path
    except OSError:
        pass
    return None


class Cgroup:
    """A memory and pids cgroup for one sandbox (v1 or v2), or nothing where none can be made."""

    def __init__(self, dirs: list[Path]):
        self.dirs = dirs

    @classmethod
    def create(cls, limits: Limits) -> Cgroup | None:
        name = f"alignlab-{uuid.uuid4().hex[:12]}"
        made = []
        try:
            v1 = {c: Path("/sys/fs/cgroup") / c for c in ("memory", "pids")}
            if all((p / "cgroup.procs").exists() for p in v1.values()):
                for c, root in v1.items():
                    d = root / (_own_cgroup(c) or "/").lstrip("/") / name
                    d.mkdir()
                    made.append(d)
                    if c == "pids":
                        (d / "pids.max").write_text(str(limits.processes))
                    else:
                        (d / "memory.limit_in_bytes").write_text(str(limits.memory_mb * 2**20))
                        try:
                            (d / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_mb * 2**20))
                        except OSError:
                            pass
                return cls(made)
            own = _own_cgroup("")
            root = Path("/sys/fs/cgroup")
            if own is not None and (root / "cgroup.controllers").exists():
                d = root / own.lstrip("/") / name
                d.mkdir()
                made.append(d)
                (d / "pids.max").write_text(str(limits.processes))
                (d / "memory.max").write_text(str(limits.memory_mb * 2**20))
                (d / "memory.swap.max").write_text("0")
                return cls(made)
        except OSError:
            for d in reversed(made):
                try:
                    d.rmdir()
                except OSError:
                    pass
        return None

    def join_script(self) -> str:
        """A shell script that moves the shell into the cgroup, then execs its arguments."""
        joins = " && ".join(f"echo $$ > {shlex.quote(str(d / 'cgroup.procs'))}" for d in self.dirs)
        return f'{joins} && exec "$@"'


    def out_of_memory(self) -> bool:
        for d in self.dirs:
            for name, key in (("memory.oom_control", "oom_kill "), ("memory.events", "oom_kill ")):
                try:
                    for line in (d / name).read_text().splitlines():
                        if line.startswith(key) and int(line.split()[1]) > 0:
                            return True
                except (OSError, ValueError, IndexError):
                    pass
            try:
                if int((d / "memory.failcnt").read_text()) > 0:
                    return True
            except (OSError, ValueError):
                pass
        return False

    def destroy(self) -> None:
        for d in self.dirs:
            for _ in range(50):
                try:
                    for pid in (d / "cgroup.procs").read_text().split():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except (ProcessLookupError, ValueError):
                            pass
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


@functools.cache
def cgroups_available() -> bool:
    cg = Cgroup.create(Limits())
    if cg is None:
        return False
    cg.destroy()
    return True


# ---------------------------------------------------------------------------
# The sandbox
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sandbox:
    """How submissions are started: ``kind`` is ``bwrap`` or ``none``."""

    kind: str
    version: str = ""
    cgroups: bool = False

    @property
    def isolated(self) -> bool:
        return self.kind == "bwrap"

    @property
    def process_cap(self) -> bool:
        """Whether the cap on processes holds: a pids cgroup, or RLIMIT_NPROC (which Linux ignores for root)."""
        return self.cgroups or os.geteuid() != 0

    def describe(self, limits: Limits) -> str:
        if self.cgroups:
            procs = f"{limits.processes} processes"
        elif self.process_cap:
            procs = f"{limits.processes} processes of your user (RLIMIT_NPROC, shared with all your processes)"
        else:
            procs = ("NO cap on processes (run as root, whom RLIMIT_NPROC does not bind, and no pids cgroup "
                     "could be made: a fork bomb runs until its time limit)")
        caps = (f"memory {limits.memory_mb} MB per process, {procs}, files up to {limits.file_mb} MB"
                + (f"; cgroup caps on the whole sandbox: memory {limits.memory_mb} MB, {limits.processes} processes"
                   if self.cgroups else ""))
        if self.isolated:
            return (f"sandbox: {self.version} (no network, own PID namespace, read-only file system, "
                    f"private /tmp of {limits.scratch_mb} MB; {caps})")
        return ("WARNING: NO SANDBOX: bubblewrap (bwrap) is not available, so submissions run as plain "
                "processes with your user, files and network (resource limits still apply: "
                f"{caps}; the scores are still computed outside the student's process). "
                "Install it (Debian/Ubuntu: apt-get install bubblewrap) to isolate them.")

    def command(self, argv: list[str], hide: list[Path], limits: Limits) -> list[str]:
        """The command line that runs ``argv`` in this sandbox."""
        if not self.isolated:
            return argv
        # --cap-drop ALL: run by root, bwrap keeps every capability inside (remount /, raise rlimits...);
        # --remount-ro /dev: bwrap's /dev is an unsized tmpfs, a way round the scratch's size.
        cmd = ["bwrap", "--die-with-parent", "--new-session", "--unshare-all", "--cap-drop", "ALL",
               "--ro-bind", "/", "/", "--dev", "/dev", "--remount-ro", "/dev", "--proc", "/proc",
               "--size", str(limits.scratch_mb * 2**20), "--tmpfs", "/tmp",
               "--size", str(limits.scratch_mb * 2**20), "--tmpfs", "/dev/shm",
               "--dir", "/tmp/work", "--chdir", "/tmp/work"]
        home = _home()
        if home is not None:  # the grader's home (keys, tokens, notes): an empty folder inside
            cmd += ["--tmpfs", str(home)]
        runtime = _runtime_paths_under([Path("/tmp"), Path("/dev/shm")] + ([home] if home else []))
        for path in runtime:  # e.g. a clone and its venv under /tmp, the model cache under ~/.cache
            cmd += ["--ro-bind", str(path), str(path)]
        for path in hide:
            path = path.resolve()
            if home is not None and path.is_relative_to(home) and not any(path.is_relative_to(r) for r in runtime):
                continue  # hidden with the home folder already
            if path.is_dir():
                cmd += ["--tmpfs", str(path)]
            elif path.exists():
                cmd += ["--ro-bind", "/dev/null", str(path)]
        return cmd + ["--"] + argv


def _home() -> Path | None:
    """The grader's home folder, hidden in the sandbox; None where hiding it would hide too much."""
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError, OSError):
        return None
    if not home.is_dir() or len(home.parts) < 2 or home in (Path("/tmp"), Path("/dev/shm")):
        return None
    return home


def cache_dir() -> Path:
    """The model cache the student's process reads (as `alignlab.cache` finds it)."""
    return Path(os.environ.get("ALIGNLAB_CACHE") or Path.home() / ".cache" / "alignlab").expanduser().resolve()


def _runtime_paths_under(hidden: list[Path]) -> list[Path]:
    """Folders the student's Python needs (interpreter, venv, the alignlab source, the model
    cache) that lie under ``hidden`` (``/tmp``, ``/dev/shm``, the home folder), which the sandbox
    replaces with empty tmpfs; they are bound back read-only. Nested ones are covered by their
    outermost folder."""
    import alignlab

    candidates = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent,
                  Path(alignlab.__file__).resolve().parents[1], cache_dir()}
    candidates |= {Path(p) for p in sys.path if p and Path(p) != Path.cwd()}  # not the grader's folder
    found = sorted({c.resolve() for c in candidates if c.exists()
                    and any(c.resolve().is_relative_to(s) and c.resolve() != s for s in hidden)})
    return [p for p in found if not any(p != q and p.is_relative_to(q) for q in found)]


def _bwrap_version() -> str | None:
    exe = shutil.which("bwrap")
    if exe is None:
        return None
    try:
        probe = subprocess.run([exe, "--die-with-parent", "--unshare-all", "--cap-drop", "ALL", "--ro-bind", "/", "/",
                                "--dev", "/dev", "--remount-ro", "/dev", "--proc", "/proc",
                                "--size", str(2**20), "--tmpfs", "/tmp", "--", "true"],
                               capture_output=True, timeout=20)
        if probe.returncode != 0:
            return None
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        return out or "bubblewrap"
    except (OSError, subprocess.SubprocessError):
        return None


def detect(choice: str | None = None) -> Sandbox:
    """The sandbox to use: ``choice`` (or $ALIGNLAB_SANDBOX): auto | bwrap | none."""
    choice = (choice or os.environ.get(SANDBOX_ENV) or "auto").lower()
    if choice not in ("auto", "bwrap", "none"):
        raise ValueError(f"unknown sandbox {choice!r}: use auto, bwrap or none")
    return _detect(choice)


@functools.cache
def _detect(choice: str) -> Sandbox:
    cgroups = cgroups_available() if sys.platform.startswith("linux") else False
    if choice == "none":
        return Sandbox("none", cgroups=cgroups)
    version = _bwrap_version() if sys.platform.startswith("linux") else None
    if version is None:
        if choice == "bwrap":
            raise RuntimeError("bubblewrap was asked for (--sandbox bwrap) but `bwrap` is missing or does not "
                               "work here (user namespaces disabled?)")
        return Sandbox("none", cgroups=cgroups)
    return Sandbox("bwrap", version, cgroups)


class Process:
    """One started submission process (the sandbox, or the keeper) and its cgroup."""

    def __init__(self, sandbox: Sandbox, argv: list[str], hide: list[Path], limits: Limits, env: dict,
                 pass_fds: tuple, log_path: Path, cwd: Path):
        self.cgroup = Cgroup.create(limits) if sandbox.cgroups else None
        cmd = sandbox.command(argv, hide, limits)
        if self.cgroup is not None:  # a shell joins the cgroup, then becomes the sandbox (no preexec_fn in threads)
            cmd = ["/bin/sh", "-c", self.cgroup.join_script(), "sh", *cmd]
        self.log = open(log_path, "wb")
        self.popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                      pass_fds=pass_fds, env=env, start_new_session=True, cwd=str(cwd))

    def kill(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.kill()
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.cgroup is not None:
            self.cgroup.destroy()
        self.log.close()

    def out_of_memory(self) -> bool:
        return self.cgroup is not None and self.cgroup.out_of_memory()
