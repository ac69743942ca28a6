"""The messages between the grader (the judge) and the student's process, over a pair of pipes.

A frame is ``MAGIC``, the length of a JSON header, the header, then the raw bytes of the
tensors it refers to. Nothing is ever unpickled: the judge rebuilds tensors from
(dtype, shape, bytes) with an allow-list of dtypes, checks every size, and caps a frame at
``MAX_FRAME`` bytes, so the student's process can send wrong answers but never objects.

Values (``encode`` / ``decode``): None, bool, int, float (inf and NaN included), str, lists,
tuples, str-keyed dicts, tensors (with their ``requires_grad``), numpy arrays; anything else
travels as its type name only (``Opaque``).
"""

from __future__ import annotations

import json
import os
import select
import struct
import time

MAGIC = b"ALF1"
MAX_FRAME = 64 * 2**20
MAX_DEPTH = 8

_DTYPES = ("float32", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")


class ChannelClosed(Exception):
    """The other side closed the channel (or died)."""


class ProtocolError(Exception):
    """A frame that is not one: garbage, too big, or inconsistent."""


class ChannelTimeout(Exception):
    """Nothing (complete) arrived before the deadline."""


class Opaque:
    """A value of a type that does not travel; only its type name does."""

    def __init__(self, type_name: str):
        self.type_name = type_name


def opaque(type_name: str):
    """An instance of a fresh class called ``type_name`` (so ``type(x).__name__`` reads right)."""
    name = "".join(c for c in str(type_name)[:60] if c.isalnum() or c == "_") or "object"
    return type(name, (Opaque,), {})(name)


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------


def encode(value, blobs: list, depth: int = 0):
    """A JSON-able form of ``value``; tensor bytes are appended to ``blobs``."""
    import torch

    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**62 else float(value)
    if isinstance(value, float):
        return {"$f": repr(value)} if value != value or value in (float("inf"), float("-inf")) else value
    if depth >= MAX_DEPTH:
        return {"$other": type(value).__name__}
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.layout != torch.strided or t.is_complex():
            return {"$other": type(value).__name__}
        if str(t.dtype).removeprefix("torch.") not in _DTYPES:
            t = t.double()
        t = t.contiguous()
        blobs.append(t.reshape(-1).numpy().tobytes() if t.numel() else b"")
        return {"$t": len(blobs) - 1, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                "rg": bool(value.requires_grad)}
    try:
        import numpy as np

        if isinstance(value, (np.ndarray, np.generic)):
            arr = np.asarray(value)
            if arr.dtype.name not in _DTYPES:
                arr = arr.astype(np.float64)
            blobs.append(np.ascontiguousarray(arr).tobytes())
            return {"$np": len(blobs) - 1, "dtype": arr.dtype.name, "shape": list(arr.shape)}
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, tuple):
        return {"$tuple": [encode(v, blobs, depth + 1) for v in value]}
    if isinstance(value, list):
        return [encode(v, blobs, depth + 1) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"$dict": {k: encode(v, blobs, depth + 1) for k, v in value.items()}}
    return {"$other": type(value).__name__}


def decode(obj, blobs: list, depth: int = 0):
    """The value ``encode`` described; raises ProtocolError on anything malformed."""
    if depth > MAX_DEPTH + 1:
        raise ProtocolError("nested too deep")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, list):
        return [decode(v, blobs, depth + 1) for v in obj]
    if not isinstance(obj, dict) or len(obj) == 0:
        raise ProtocolError("bad value")
    if "$f" in obj:
        if obj["$f"] not in ("inf", "-inf", "nan"):
            raise ProtocolError("bad float")
        return float(obj["$f"])
    if "$tuple" in obj:
        return tuple(decode(v, blobs, depth + 1) for v in _list(obj["$tuple"]))
    if "$dict" in obj:
        d = obj["$dict"]
        if not isinstance(d, dict):
            raise ProtocolError("bad dict")
        return {str(k): decode(v, blobs, depth + 1) for k, v in d.items()}
    if "$other" in obj:
        return opaque(obj["$other"])
    if "$t" in obj or "$np" in obj:
        import numpy as np

        dtype, shape = obj.get("dtype"), obj.get("shape")
        if dtype not in _DTYPES or not isinstance(shape, list) or not all(
                isinstance(n, int) and 0 <= n < 2**31 for n in shape) or len(shape) > 8:
            raise ProtocolError("bad tensor header")
        idx = obj.get("$t", obj.get("$np"))
        if not isinstance(idx, int) or not 0 <= idx < len(blobs):
            raise ProtocolError("bad tensor index")
        numel = 1
        for n in shape:
            numel *= n
        arr = np.frombuffer(blobs[idx], dtype=np.dtype(dtype))
        if arr.size != numel:
            raise ProtocolError("tensor size does not match its shape")
        arr = arr.reshape(shape).copy()
        if "$np" in obj:
            return arr
        import torch

        t = torch.from_numpy(arr)
        if obj.get("rg") is True and t.is_floating_point():
            t.requires_grad_(True)
        return t
    raise ProtocolError("unknown value")


def _list(x):
    if not isinstance(x, list):
        raise ProtocolError("bad list")
    return x


# ---------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------


def pack(message: dict) -> bytes:
    """``message`` (values inside encoded with `encode`) as one frame."""
    blobs: list = []
    body = encode(message, blobs)
    header = json.dumps({"m": body, "b": [len(b) for b in blobs]}).encode()
    return MAGIC + struct.pack(">I", len(header)) + header + b"".join(blobs)


def send(fd: int, message: dict) -> None:
    data = memoryview(pack(message))
    while data:
        try:
            n = os.write(fd, data)
        except BrokenPipeError as e:
            raise ChannelClosed("the other side closed the channel") from e
        data = data[n:]


class Reader:
    """Reads frames from ``fd`` with deadlines (so a silent or flooding sender cannot hang the judge)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = bytearray()

    def _fill(self, n: int, deadline: float | None) -> None:
        while len(self.buf) < n:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise ChannelTimeout()
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                raise ChannelTimeout()
            try:
                chunk = os.read(self.fd, max(65536, min(n - len(self.buf), 2**22)))
            except OSError as e:
                raise ChannelClosed(str(e)) from e
            if not chunk:
                raise ChannelClosed("the other side closed the channel")
            self.buf += chunk

    def _take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def recv(self, deadline: float | None = None) -> dict:
        self._fill(8, deadline)
        if bytes(self.buf[:4]) != MAGIC:
            raise ProtocolError("garbage on the channel")
        (hlen,) = struct.unpack(">I", bytes(self.buf[4:8]))
        if hlen > MAX_FRAME:
            raise ProtocolError("frame too big")
        self._fill(8 + hlen, deadline)
        self._take(8)
        try:
            header = json.loads(self._take(hlen))
            sizes = header["b"]
            if not isinstance(sizes, list) or not all(isinstance(s, int) and s >= 0 for s in sizes):
                raise ProtocolError("bad blob sizes")
        except (ValueError, KeyError, TypeError) as e:
            raise ProtocolError(f"bad header: {e}") from e
        if sum(sizes) + hlen > MAX_FRAME:
            raise ProtocolError("frame too big")
        self._fill(sum(sizes), deadline)
        blobs = [self._take(s) for s in sizes]
        message = decode(header["m"], blobs)
        if not isinstance(message, dict):
            raise ProtocolError("a message is a dict")
        return message
