"""The student's side of grading: the program that runs one submission inside the sandbox.

    python -m alignlab.course.grading.student --fds IN OUT --limits JSON [--keeper]

It is started by the judge (`alignlab.course.grading.judge`), which sends it the notebook's
cells one at a time over a pipe, and then asks it to call the exercise functions on test
inputs. It runs each cell in an IPython shell (magics, tracebacks) under a time limit
(SIGALRM, then KeyboardInterrupt), captures what the cell prints and displays, and returns
*outputs* only: it never decides a score. ``check(...)`` cells are answered by the judge
(`alignlab.course.checks` is pointed at this process's `Client`), so even their results
are computed outside the student's reach.

Everything here is under the student's control once their first cell has run: the judge
trusts none of it beyond "this is what the function returned".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import time

from . import protocol

_MAIN_PID = os.getpid()
MAX_TEXT = 100_000
"""Characters kept of one cell's stdout (and of stderr, and of each display)."""


class _CallTimeout(BaseException):
    """The alarm fired while the student's function ran for the judge."""


def _short(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:300] if lines else ""


def apply_limits(limits: dict) -> None:
    """Set this process's hard and soft resource limits (inherited by whatever it starts)."""
    table = {"memory_bytes": resource.RLIMIT_AS, "processes": resource.RLIMIT_NPROC,
             "cpu_seconds": resource.RLIMIT_CPU, "file_bytes": resource.RLIMIT_FSIZE,
             "core_bytes": resource.RLIMIT_CORE}
    for key, which in table.items():
        value = limits.get(key)
        if value is None:
            continue
        try:
            resource.setrlimit(which, (int(value), int(value)))
        except (ValueError, OSError):
            pass


def cache_view() -> None:
    """Make ``$ALIGNLAB_CACHE`` (in the scratch folder) a writable view of the grader's model cache.

    The grader's cache (``$ALIGNLAB_CACHE_READONLY``) is read-only here, and `alignlab.cache`
    wants a folder it can write (its locks): the view links every finished artifact of it, and
    what the notebook builds anyway lands in the scratch folder, lost with it.
    """
    src, view = os.environ.get("ALIGNLAB_CACHE_READONLY"), os.environ.get("ALIGNLAB_CACHE")
    if not src or not view:
        return
    try:
        os.makedirs(view, exist_ok=True)
        for name in sorted(os.listdir(src)):
            if os.path.isfile(os.path.join(src, name, "alignlab.json")):  # finished artifacts only
                os.symlink(os.path.join(src, name), os.path.join(view, name))
    except OSError:  # no cache yet, or no room: the notebook builds what it needs (or says why not)
        pass


class Client:
    """This process's end of the channel; also what ``checks.check`` calls in here."""

    def __init__(self, fd_in: int, fd_out: int, shell):
        self.reader = protocol.Reader(fd_in)
        self.fd_out = fd_out
        self.shell = shell
        self.cell_deadline: float | None = None
        self.in_call = False
        self.checking = False
        self.flags: list[str] = []

    # -- the channel ---------------------------------------------------------

    def send(self, message: dict) -> None:
        if os.getpid() != _MAIN_PID:  # a process the student forked: it has no say
            os._exit(0)
        protocol.send(self.fd_out, message)

    def recv(self) -> dict:
        return self.reader.recv()

    # -- time limits -----------------------------------------------------------

    def _alarm(self, signum, frame):
        if self.in_call:
            raise _CallTimeout()
        raise KeyboardInterrupt("the grader's time limit was reached")

    def _arm(self, deadline: float | None) -> None:
        signal.signal(signal.SIGALRM, self._alarm)
        if deadline is None:
            signal.setitimer(signal.ITIMER_REAL, 0)
        else:
            signal.setitimer(signal.ITIMER_REAL, max(0.001, deadline - time.monotonic()))

    # -- calling the student's function for the judge ------------------------------

    def serve_call(self, msg: dict, fn) -> None:
        import torch

        args = msg.get("args") or []
        reply: dict
        self.in_call = True
        try:
            self._arm(time.monotonic() + float(msg.get("limit", 1.0)))
            if fn is None:
                raise NameError(f"name {msg.get('target')!r} is not defined")
            with torch.random.fork_rng():  # the checks leave the notebook's random state alone
                out = fn(*args)
            loss = out
            if isinstance(out, (tuple, list)) and out:
                loss = out[0]
            leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
            grads, bw_error = None, None
            if leaves and isinstance(loss, torch.Tensor) and loss.requires_grad and loss.numel() == 1:
                try:
                    loss.backward()
                except Exception as e:
                    bw_error = f"{type(e).__name__}: {_short(e)}"
                grads = [a.grad for a in leaves]
            reply = {"out": out, "grads": grads, "bw_error": bw_error}
        except _CallTimeout:
            reply = {"error": {"kind": "timeout"}}
        except NotImplementedError as e:
            reply = {"error": {"kind": "notimpl", "type": type(e).__name__, "msg": _short(e)}}
        except RecursionError as e:
            reply = {"error": {"kind": "recursion", "type": type(e).__name__, "msg": _short(e)}}
        except BaseException as e:  # noqa: BLE001 - whatever the student's code raises is reported
            reply = {"error": {"kind": "other", "type": type(e).__name__, "msg": _short(e)}}
        finally:
            self.in_call = False
            self._arm(None if self.checking else self.cell_deadline)
        try:
            self.send(reply)
        except (TypeError, ValueError, RecursionError):
            self.send({"error": {"kind": "other", "type": "TypeError", "msg": "the result could not be sent"}})

    def check(self, name: str, fn):
        """``check(name, fn)`` inside the sandbox: the judge runs the tests; returns its reply."""
        self.checking = True
        self._arm(None)  # the judge keeps the time while it runs the check
        try:
            self.send({"ev": "check", "name": str(name), "callable": callable(fn), "type": type(fn).__name__})
            while True:
                msg = self.recv()
                op = msg.get("op")
                if op == "call":
                    self.serve_call(msg, fn)
                elif op == "check_result":
                    return msg
                else:
                    raise protocol.ProtocolError(f"unexpected {op!r} during a check")
        finally:
            self.checking = False
            self._arm(self.cell_deadline)

    # -- cells -----------------------------------------------------------------

    def run_cell(self, msg: dict) -> None:
        from IPython.utils.capture import capture_output

        src = str(msg.get("src", ""))
        self.cell_deadline = time.monotonic() + float(msg.get("limit", 1.0))
        result, outputs = None, []
        cap = None
        try:
            with capture_output() as cap:
                self._arm(self.cell_deadline)
                try:
                    result = self.shell.run_cell(src, store_history=False)
                finally:
                    self.cell_deadline = None
                    self._arm(None)
        except KeyboardInterrupt:  # the alarm fired outside the student's code
            pass
        if os.getpid() != _MAIN_PID:
            os._exit(0)
        outputs = _outputs(cap)
        error = None
        if result is not None:
            error = result.error_before_exec or result.error_in_exec
        else:
            error = KeyboardInterrupt("the grader's time limit was reached")
        if error is not None:
            outputs.append({"output_type": "error", "ename": type(error).__name__, "evalue": _short(error),
                            "traceback": []})
        self.send({"ev": "cell_done", "outputs": outputs,
                   "interrupted": isinstance(error, KeyboardInterrupt)})

    def describe(self, names) -> None:
        ns = self.shell.user_ns
        out = {}
        for name in names:
            present = name in ns
            fn = ns.get(name)
            out[str(name)] = {"present": present, "callable": callable(fn), "type": type(fn).__name__}
        self.send({"ev": "described", "names": out})

    def loop(self) -> None:
        while True:
            msg = self.recv()
            op = msg.get("op")
            if op == "cell":
                self.run_cell(msg)
            elif op == "describe":
                self.describe(msg.get("names") or [])
            elif op == "call":
                self.serve_call(msg, self.shell.user_ns.get(str(msg.get("target"))))
            elif op == "flags":
                self.send({"ev": "flags", "flags": self.flags[:20]})
            elif op == "bye":
                return


def _text(s) -> str:
    s = s if isinstance(s, str) else ""
    return s if len(s) <= MAX_TEXT else s[:MAX_TEXT] + "\n[... output cut by the grader]\n"


def _outputs(cap) -> list[dict]:
    """nbformat outputs of a captured cell (stream text and displays, size-capped)."""
    if cap is None:
        return []
    outputs = []
    for name in ("stdout", "stderr"):
        try:
            text = getattr(cap, name)
        except Exception:  # the student closed or replaced the stream
            text = ""
        if text:
            outputs.append({"output_type": "stream", "name": name, "text": _text(text)})
    try:
        displays = list(cap.outputs)[:20]
    except Exception:
        displays = []
    for d in displays:
        data = {k: _text(v) for k, v in (getattr(d, "data", None) or {}).items()
                if k in ("text/plain", "text/html", "image/png", "text/markdown") and isinstance(v, str)}
        if data:
            outputs.append({"output_type": "display_data", "data": data, "metadata": {}})
    return outputs


def _audit_reads(client: Client, scratch: str):
    """An audit hook noting files that the notebook's own code reads outside its scratch folder."""
    import site
    import sysconfig

    def both(paths):
        return tuple({q for p in paths if p for q in (p, os.path.realpath(p))})

    paths = sysconfig.get_paths()
    stdlib = both([paths["stdlib"], paths["platstdlib"]])
    # in a venv, platstdlib is the venv's lib/pythonX.Y, which holds site-packages: those are libraries
    libraries = both([paths["purelib"], paths["platlib"], *site.getsitepackages(), site.getusersitepackages()])
    scratch = os.path.realpath(scratch)

    def from_cell() -> bool:
        f = sys._getframe(2)  # 0: here, 1: the hook, 2: what called open()
        while f is not None:
            name = f.f_code.co_filename
            if name.startswith("<ipython-input") or "/ipykernel_" in name:
                return True
            if name.startswith("<frozen importlib") or "/importlib/" in name:
                return False  # an import statement, not a read
            if name != __file__ and (name.startswith(libraries) or not (
                    name.startswith("<frozen") or name.startswith(stdlib))):
                return False  # a library read it (torch, matplotlib, alignlab...): not the student's doing
            f = f.f_back
        return False

    def hook(event, args):
        if event not in ("open", "os.listdir", "os.scandir", "glob.glob") or len(client.flags) >= 20:
            return
        try:
            path = args[0]
            if isinstance(path, int) or path is None:
                return
            path = os.path.realpath(os.fsdecode(path))
            if event == "open" and len(args) > 1 and isinstance(args[1], str) and "r" not in args[1] \
                    and "+" not in args[1]:
                return
            if (path == scratch or path.startswith(scratch + os.sep) or path.startswith("/dev/")
                    or not from_cell()):
                return
            note = f"reads {path}"
            if note not in client.flags:
                client.flags.append(note)
        except Exception:
            pass

    sys.addaudithook(hook)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fds", nargs=2, type=int, required=True)
    ap.add_argument("--limits", default="{}")
    ap.add_argument("--keeper", action="store_true",
                    help="fork first, so that the student's parent is a disposable keeper, not the grader")
    args = ap.parse_args(argv)
    fd_in, fd_out = args.fds
    apply_limits(json.loads(args.limits))
    global _MAIN_PID
    if args.keeper:
        pid = os.fork()
        if pid:
            os.close(fd_in)
            os.close(fd_out)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _, status = os.waitpid(pid, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    _MAIN_PID = os.getpid()
    scratch = os.getcwd()
    cache_view()

    import torch  # noqa: F401  (imported before the student's code, as a kernel would)
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from alignlab.course.checks import runner

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "NoColor"
    shell = InteractiveShell.instance(config=config)
    client = Client(fd_in, fd_out, shell)
    runner._REMOTE = client  # `check(...)` in the notebook now asks the grader
    _audit_reads(client, scratch)
    client.send({"ev": "hello", "python": sys.version.split()[0]})
    try:
        client.loop()
    except (protocol.ChannelClosed, protocol.ProtocolError):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
