"""The on-disk cache: where it lives and how files get into it without ever being half-written.

Everything expensive (source checkpoints, frozen-prefix features, result rows) lives under
``cache_dir()`` = ``$RT_CACHE_DIR`` or ``~/.cache/robust_transfer``. Files are written to a
temporary name in the same directory, flushed and fsynced, then renamed into place, so a run
killed at any moment leaves either the old state or the new file, never a corrupt one.

Concurrent workers (local processes, Dask workers on one machine or a cluster sharing the
directory) may all write into the same cache: atomic renames keep every reader safe, and
:func:`file_lock` serialises what must happen once (making a source checkpoint, recording a
download's hash in ``downloads/pins.json``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: O_EXCL lock files (see file_lock)
    fcntl = None

__all__ = ["key", "cache_dir", "atomic_path", "atomic_write_bytes", "atomic_write_text", "staged_dir",
           "sha256_file", "file_lock", "LOCK_FILE_TIMEOUT"]

#: seconds :func:`file_lock` waits for an O_EXCL lock file (platforms without ``fcntl``) when
#: no ``timeout`` is given; a lock file left by a killed process is never released by itself
LOCK_FILE_TIMEOUT = 600.0


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


@contextmanager
def file_lock(path: str | os.PathLike, *, timeout: float | None = None, poll: float = 0.05):
    """Hold an exclusive lock on ``path`` shared by every process (and thread) using this cache.

    The lock is the file ``<path>.lock`` (``path`` itself is never touched); the block runs
    while no other holder is inside a ``file_lock`` of the same ``path``; yields the lock
    file's path. Where ``fcntl`` exists (Linux, macOS) it is an ``flock`` on that file: the
    kernel releases it when its holder exits or is killed, so waiting is safe without a timeout
    (``timeout`` seconds, if given, raise ``TimeoutError``). On shared file systems ``flock``
    must reach every node (NFS does; Lustre / GPFS may need the ``flock`` mount option). The
    lock file stays in place afterwards: deleting it could let a waiter lock a stale copy.

    Without ``fcntl`` the lock is the creation of ``<path>.lock`` with ``O_EXCL`` (removed on
    release); a holder that was killed leaves it behind, so waiting stops after ``timeout``
    (default :data:`LOCK_FILE_TIMEOUT`) with a ``TimeoutError`` naming the file to delete.
    Not re-entrant: a second ``file_lock`` of the same ``path`` in the same thread waits forever.
    """
    lock = Path(f"{os.fspath(path)}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    if fcntl is not None:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if deadline is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise TimeoutError(f"could not lock {lock} within {timeout} s "
                                               f"(another process holds it)") from None
                        time.sleep(poll)
            yield lock
        finally:
            os.close(fd)  # closing the descriptor releases the flock
        return
    deadline = deadline if deadline is not None else time.monotonic() + LOCK_FILE_TIMEOUT
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            break
        except FileExistsError:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"could not lock {lock} within {timeout or LOCK_FILE_TIMEOUT} s; if no "
                    f"process is using this cache, a killed one left it behind: delete it") from None
            time.sleep(poll)
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield lock
    finally:
        try:
            os.unlink(lock)
        except FileNotFoundError:
            pass
