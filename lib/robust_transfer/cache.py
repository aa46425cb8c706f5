"""The on-disk cache: where it lives and how files get into it without ever being half-written.

Everything expensive (source checkpoints, frozen-prefix features, result rows) lives under
``cache_dir()`` = ``$RT_CACHE_DIR`` or ``~/.cache/robust_transfer``. Files are written to a
temporary name in the same directory, flushed and fsynced, then renamed into place, so a run
killed at any moment leaves either the old state or the new file, never a corrupt one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["key", "cache_dir", "atomic_path", "atomic_write_bytes", "atomic_write_text", "staged_dir",
           "sha256_file"]


def key(obj) -> str:
    """Stable 16-hex-digit sha256 of a JSON-able mapping, or of anything with ``to_dict()``
    (a ``Config``); key order is ignored. Every cache file and result row is named by one."""
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_dir(*parts: str) -> Path:
    """``$RT_CACHE_DIR`` (default ``~/.cache/robust_transfer``) joined with ``parts``, created."""
    root = Path(os.environ.get("RT_CACHE_DIR") or Path.home() / ".cache" / "robust_transfer")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    On any exception (or a kill) the temporary file is removed / left under a ``.tmp`` name that
    no reader looks at, and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def staged_dir(dest: str | os.PathLike, files=None):
    """Yield an empty staging folder for a download; move its content into place on success.

    ``files=None``: the staging folder is created beside ``dest`` and, when the block finishes,
    replaces ``dest`` as a whole (an old ``dest`` is removed first). ``files`` a callable: the
    staging folder is created inside ``dest`` (which may hold other things, e.g. every
    torchvision dataset) and ``files(staging)`` lists the finished files to move to the same
    relative paths under ``dest``; everything else is dropped. On any exception nothing is
    moved, so a killed download never leaves something that looks complete; the staging folder
    is always removed (a kill may leave a ``.partial-*`` folder that no reader looks at).
    """
    dest = Path(dest)
    parent = dest if files is not None else dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".partial-{dest.name}-", dir=parent))
    try:
        yield staging
        if files is None:
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(staging, dest)
        else:
            for f in files(staging):
                target = dest / Path(f).relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(f, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
