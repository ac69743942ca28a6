"""A cache of trained artifacts (models, tokenizers), safe against crashes and races.

Each artifact is a folder ``<cache>/<kind>-<key>/`` where ``key`` hashes the
settings that produced it, so changing a setting never loads a stale model.
A folder is built in a temporary sibling and renamed into place only once it
is complete (a rename is atomic), under a file lock, so:

* a crash or a kill mid-write leaves at most a ``.tmp-*`` folder, never a
  folder that looks finished (the next build under the lock sweeps it away);
* two notebooks that need the same artifact at once train it once.

The cache lives in ``$ALIGNLAB_CACHE``, else ``~/.cache/alignlab``.
Weights are safetensors (never pickle), written by ``save_pretrained``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

CACHE_VERSION = 1  # bump when the format of any artifact changes
META = "alignlab.json"  # written last: its presence marks a finished artifact


class CacheError(RuntimeError):
    """The cache folder cannot be used (e.g. it is not writable)."""


def cache_root() -> Path:
    """The cache folder, created if needed; a clear error if it is not writable."""
    root = Path(os.environ.get("ALIGNLAB_CACHE") or Path.home() / ".cache" / "alignlab")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as e:
        raise CacheError(
            f"the alignlab cache folder {str(root)!r} is not writable ({e.strerror}). "
            "Point ALIGNLAB_CACHE at a folder you can write, e.g. "
            "`export ALIGNLAB_CACHE=/tmp/alignlab-cache`.") from None
    return root


def cache_key(kind: str, settings: dict) -> str:
    """A short hash of ``kind``, ``settings`` and the cache format version."""
    blob = json.dumps({"kind": kind, "v": CACHE_VERSION, "settings": settings},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON to ``path`` so that readers see the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_complete(folder: Path) -> bool:
    return (folder / META).is_file()


def read_meta(folder: Path) -> dict:
    return json.loads((folder / META).read_text())


def get_or_build(kind: str, settings: dict, build: Callable[[Path], dict | None]) -> Path:
    """The folder of the finished artifact for (kind, settings), building it once if needed.

    ``build(tmp_folder)`` writes the artifact's files into ``tmp_folder`` and may
    return a dict of extra metadata (e.g. training losses) stored beside it.
    """
    root = cache_root()
    key = cache_key(kind, settings)
    final = root / f"{kind}-{key}"
    if is_complete(final):
        return final
    with FileLock(str(root / f"{kind}-{key}.lock")):
        if is_complete(final):  # built by someone else while we waited
            return final
        for stale in root.glob(f".tmp-{kind}-{key}-*"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():  # a folder without its marker is not trusted
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{kind}-{key}-"))
        try:
            t0 = time.time()
            extra = build(tmp) or {}
            if not isinstance(extra, dict):
                raise TypeError(f"the build function of {kind!r} must return a dict of metadata "
                                f"or None, got {type(extra).__name__}")
            meta = {"kind": kind, "settings": settings, "seconds": round(time.time() - t0, 2),
                    **extra}
            write_json_atomic(tmp / META, meta)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final
