"""The judge: runs one submission in its own (sandboxed) process and scores it from outside.

The expected answers are computed here, in the grader's process, by the same hidden test
cases as the notebook's ``check(...)`` (`alignlab.course.checks`). The student's process
(`alignlab.course.grading.student`) only executes the notebook's cells and, when asked,
calls an exercise function on inputs sent from here and returns what it returned (values,
``requires_grad``, the gradients of the loss w.r.t. the inputs, or the exception it raised).
`RemoteFunction` makes that look like a local function to the test cases, gradients
included, so the cases are the very same code in both places.

Nothing the submission does to ``alignlab``, ``sys.modules``, its globals, a results file
or the channel can change an expected value or a recorded score: the worst it can do is
send wrong answers, or none (then it costs its own points, with a status saying why).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import select
import sys
import time
from pathlib import Path

import torch

from .. import checks
from ..checks import CheckTimeout, Result, max_points
from . import protocol
from .sandbox import Limits, Process, Sandbox, cache_dir

SLACK = 5.0
"""Seconds the student's process gets, past a time limit it was told about, to answer."""
START_TIMEOUT = 120.0


class SessionLost(Exception):
    """The student's process died, closed the channel, or sent garbage."""


class _Replay(torch.autograd.Function):
    """The student's loss, rebuilt here: its value, and the gradients their process computed."""

    @staticmethod
    def forward(ctx, value, grads, error, *inputs):
        ctx.grads, ctx.error = grads, error
        return value.clone()

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.error:
            raise RuntimeError(ctx.error)
        return (None, None, None, *[None if g is None else (grad_out * g).to(g.dtype) for g in ctx.grads])


_EXCEPTIONS: dict[str, type] = {}


def _exception(kind: str, type_name: str, msg: str) -> BaseException:
    if kind == "notimpl":
        return NotImplementedError(msg)
    if kind == "recursion":
        return RecursionError(msg)
    name = "".join(c for c in str(type_name)[:60] if c.isalnum() or c == "_") or "Exception"
    cls = _EXCEPTIONS.setdefault(name, type(name, (Exception,), {}))
    return cls(msg)


class Session:
    """One running submission: its process and the channel to it."""

    def __init__(self, sandbox: Sandbox, limits: Limits, timeout: float, hide: list[Path], workdir: Path):
        self.dead: str | None = None
        r_in, self.w = os.pipe()  # judge -> student
        self.r, w_out = os.pipe()  # student -> judge
        fcntl.fcntl(self.w, fcntl.F_SETFL, fcntl.fcntl(self.w, fcntl.F_GETFL) | os.O_NONBLOCK)
        inside = sandbox.isolated
        home = "/tmp/work" if inside else str(workdir)
        argv = [sys.executable, "-m", "alignlab.course.grading.student", "--fds", str(r_in), str(w_out),
                "--limits", json.dumps(limits.rlimits(timeout))] + ([] if inside else ["--keeper"])
        self.proc = Process(sandbox, argv, hide, limits, _student_env(home), (r_in, w_out), workdir.parent / "log",
                            cwd=workdir)
        os.close(r_in)
        os.close(w_out)
        self.reader = protocol.Reader(self.r)

    # -- channel ---------------------------------------------------------------

    def lose(self, why: str) -> None:
        if self.dead is None:
            self.dead = why
        self.close()

    def send(self, message: dict, deadline: float) -> None:
        if self.dead:
            raise SessionLost(self.dead)
        data = memoryview(protocol.pack(message))
        while data:
            left = deadline - time.monotonic()
            _, ready, _ = select.select([], [self.w], [], max(0.0, left))
            if not ready:
                self.lose("it stopped reading from the grader")
                raise SessionLost(self.dead)
            try:
                data = data[os.write(self.w, data):]
            except BlockingIOError:
                continue
            except OSError:
                self.lose("it closed the grader's channel")
                raise SessionLost(self.dead) from None

    def recv(self, deadline: float) -> dict:
        """The next message; ChannelTimeout at the deadline; SessionLost if the process is gone."""
        if self.dead:
            raise SessionLost(self.dead)
        try:
            return self.reader.recv(deadline)
        except protocol.ChannelClosed:
            why = "its process died (os._exit, a crash, a signal) or closed the grader's channel"
            if self.proc.out_of_memory():
                why = "its process ran out of memory (the sandbox's memory cap)"
            self.lose(why)
        except protocol.ProtocolError as e:
            self.lose(f"it sent something that is not an answer ({e})")
        raise SessionLost(self.dead)

    def close(self) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self.proc.kill()
        for fd in (self.w, self.r):
            try:
                os.close(fd)
            except OSError:
                pass


def _student_env(home: str) -> dict:
    """A minimal environment for the student's process (not the grader's: no tokens, no secrets)."""
    import alignlab

    package_root = str(Path(alignlab.__file__).resolve().parents[1])
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "TMPDIR": home,
           "IPYTHONDIR": f"{home}/.ipython", "MPLCONFIGDIR": f"{home}/.matplotlib", "MPLBACKEND": "Agg",
           "ALIGNLAB_HEADLESS": "1", "ALIGNLAB_CACHE": f"{home}/.alignlab-cache",
           "ALIGNLAB_CACHE_READONLY": str(cache_dir()),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([package_root] + [p for p in os.environ.get("PYTHONPATH", "").split(
               os.pathsep) if p]),
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8", "LANG": "C.UTF-8"}
    for key in ("ALIGNLAB_PROFILE", "VIRTUAL_ENV"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


class RemoteFunction:
    """Calls the student's function in their process; looks local to the test cases."""

    def __init__(self, session: Session, target: str, deadline: float):
        self.session, self.target, self.deadline = session, target, deadline

    def __call__(self, *args):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise CheckTimeout()
        if self.session.dead:
            raise SessionLost(f"the submission's process is gone: {self.session.dead}")
        s = self.session
        s.send({"op": "call", "target": self.target, "args": list(args), "limit": left}, time.monotonic() + SLACK)
        try:
            reply = s.recv(time.monotonic() + left + SLACK)
        except protocol.ChannelTimeout:
            s.lose("it ignored the time limit of a check: the sandbox was killed")
            raise CheckTimeout() from None
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {}
            if err.get("kind") == "timeout":
                raise CheckTimeout()
            raise _exception(str(err.get("kind")), str(err.get("type")), str(err.get("msg", ""))[:300])
        if "out" not in reply:
            s.lose("it answered a call with something else")
            raise SessionLost(s.dead)
        leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        grads = reply.get("grads")
        if not (isinstance(grads, list) and len(grads) == len(leaves)):
            grads = [None] * len(leaves)
        grads = [g.detach().to(x.dtype) if isinstance(g, torch.Tensor) and g.shape == x.shape else None
                 for g, x in zip(grads, leaves)]
        error = reply.get("bw_error") if isinstance(reply.get("bw_error"), str) else None

        def rebuild(x, is_loss):
            if not (isinstance(x, torch.Tensor) and x.requires_grad):
                return x
            x = x.detach()
            if is_loss and leaves and x.numel() == 1:
                return _Replay.apply(x, grads, error, *leaves)
            return x.requires_grad_(True)

        out = reply["out"]
        if isinstance(out, (tuple, list)):
            items = [rebuild(v, i == 0) for i, v in enumerate(out)]
            return tuple(items) if isinstance(out, tuple) else items
        return rebuild(out, True)


def remote_check(session: Session, name: str, target: str, info: dict, timeout: float) -> Result:
    """The hidden tests of ``name`` on the student's function ``target`` (described by ``info``)."""
    if not info.get("present", True):
        return Result(name, "missing", 0, max_points(name),
                      f"no function named `{name}` in the notebook (renamed or deleted?)")
    if not info.get("callable"):
        return Result(name, "missing", 0, max_points(name),
                      f"`{name}` is not a function (got {str(info.get('type'))[:40]}).")
    fn = RemoteFunction(session, target, time.monotonic() + timeout)
    return checks.run_check(name, fn, timeout, alarm=False)


@dataclasses.dataclass
class Run:
    """What running one submission gave."""

    status: str = "ok"
    error: str = ""
    interrupted: int = 0
    skipped: int = 0
    cell_results: dict = dataclasses.field(default_factory=dict)
    grader_results: dict = dataclasses.field(default_factory=dict)
    outputs: dict = dataclasses.field(default_factory=dict)
    """code cell index -> nbformat outputs"""
    flags: list = dataclasses.field(default_factory=list)

    @property
    def results(self) -> dict:
        return {**self.cell_results, **self.grader_results}


def _outputs(raw) -> list[dict]:
    """The student's cell outputs, kept to the fields and types nbformat allows."""
    out = []
    for o in raw if isinstance(raw, list) else []:
        if not isinstance(o, dict):
            continue
        kind = o.get("output_type")
        if kind == "stream" and o.get("name") in ("stdout", "stderr") and isinstance(o.get("text"), str):
            out.append({"output_type": "stream", "name": o["name"], "text": o["text"]})
        elif kind == "error":
            out.append({"output_type": "error", "ename": str(o.get("ename", ""))[:100],
                        "evalue": str(o.get("evalue", ""))[:300], "traceback": []})
        elif kind == "display_data" and isinstance(o.get("data"), dict):
            data = {k: v for k, v in o["data"].items() if isinstance(k, str) and isinstance(v, str)}
            if data:
                out.append({"output_type": "display_data", "data": data, "metadata": {}})
    return out[:50]


def run_submission(sources: list[str], set_name: str, timeout: float, sandbox: Sandbox, limits: Limits,
                   hide: list[Path], workdir: Path, reserve: float) -> Run:
    """Run the code cells ``sources`` of one submission, then score every exercise of ``set_name``."""
    run = Run()
    exercises = checks.EXERCISE_SETS[set_name]
    check_timeout = max(1.0, reserve / (len(exercises) + 1))
    start = time.monotonic()
    student_deadline, end = start + timeout - reserve, start + timeout
    session = Session(sandbox, limits, timeout, hide, workdir)
    try:
        try:
            hello = session.recv(min(end, start + START_TIMEOUT))
            if hello.get("ev") != "hello":
                raise SessionLost("it did not start properly")
        except protocol.ChannelTimeout:
            session.lose("did not start in time")
            raise SessionLost(session.dead) from None
        for i, src in enumerate(sources):
            if time.monotonic() >= student_deadline:
                run.skipped += 1
                run.outputs[i] = [{"output_type": "stream", "name": "stderr",
                                   "text": "[grader] not run: the time limit was reached\n"}]
                continue
            session.send({"op": "cell", "src": src, "limit": student_deadline - time.monotonic()},
                         time.monotonic() + SLACK)
            while True:
                try:
                    msg = session.recv(student_deadline + SLACK)
                except protocol.ChannelTimeout:
                    run.status = "killed"
                    run.error = (f"still running {SLACK:.0f} s after its time limit (ignored the interrupt?): "
                                 "the sandbox was killed")
                    session.lose("killed")
                    raise SessionLost("killed") from None
                ev = msg.get("ev")
                if ev == "check":
                    _answer_check(session, msg, run, min(check_timeout, student_deadline - time.monotonic()))
                elif ev == "cell_done":
                    run.outputs[i] = _outputs(msg.get("outputs"))
                    if msg.get("interrupted") is True:
                        run.interrupted += 1
                    break
                else:
                    session.lose(f"it sent an unexpected message ({str(ev)[:40]})")
                    raise SessionLost(session.dead)
        # The grader's own pass: every exercise, on the functions as the notebook left them.
        session.send({"op": "describe", "names": list(exercises)}, time.monotonic() + SLACK)
        described = _expect_event(session, "described", end + SLACK).get("names")
        described = described if isinstance(described, dict) else {}
        for name in exercises:
            info = described.get(name) if isinstance(described.get(name), dict) else {"present": False}
            left = end - time.monotonic()
            run.grader_results[name] = remote_check(session, name, name, info, max(0.001, min(check_timeout, left)))
            if session.dead:
                break  # the exercises left keep what their check cells recorded
        session.send({"op": "flags"}, time.monotonic() + SLACK)
        flags = _expect_event(session, "flags", time.monotonic() + SLACK).get("flags")
        run.flags = [str(f)[:200] for f in flags][:20] if isinstance(flags, list) else []
        session.send({"op": "bye"}, time.monotonic() + SLACK)
    except SessionLost:
        if run.status == "ok":
            run.status = "kernel died"
            run.error = f"the submission's process stopped: {session.dead}"
    except protocol.ChannelTimeout:
        if run.status == "ok":
            run.status = "killed"
            run.error = "it stopped answering the grader: the sandbox was killed"
    finally:
        session.close()
    return run


def _expect_event(session: Session, ev: str, deadline: float) -> dict:
    msg = session.recv(deadline)
    if msg.get("ev") != ev:
        session.lose(f"it sent {str(msg.get('ev'))[:40]!r} instead of {ev!r}")
        raise SessionLost(session.dead)
    return msg


def _answer_check(session: Session, msg: dict, run: Run, timeout: float) -> None:
    """A ``check(name, fn)`` cell: run the tests from here, record the result, send it back to print."""
    name = msg.get("name")
    if not any(name in names for names in checks.EXERCISE_SETS.values()):
        session.send({"op": "check_result",
                      "unknown": f"no check named {str(name)[:60]!r}; the checks are {sorted(checks.CHECKS)}"},
                     time.monotonic() + SLACK)
        return
    info = {"present": True, "callable": msg.get("callable") is True, "type": msg.get("type")}
    result = remote_check(session, name, "check", info, max(0.001, timeout))
    run.cell_results[name] = result
    session.send({"op": "check_result", "result": dataclasses.asdict(result)}, time.monotonic() + SLACK)
