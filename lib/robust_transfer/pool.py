"""Independent cached jobs (sources to train, influence studies) in spawned worker processes of
one torch thread each: a job writes its result into the cache, where the caller then loads it.
(The transfer sweep has its own executors, with retries and failure records: ``sweep``.) Also
the environment child processes inherit: :func:`environ`, :func:`restore_environ`, and the
start of every worker process: :func:`worker_init`."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

from .progress import bar

__all__ = ["worker_count", "run", "worker_init", "terminate", "environ", "restore_environ"]

_WATCH = 0.5  # seconds between a worker's looks at its parent


def worker_count(workers: int | None, jobs: int) -> int:
    """Processes to start for ``jobs`` jobs: ``workers`` (None: every core), at most one per
    job. ValueError for ``workers`` < 1."""
    if workers is not None and workers < 1:
        raise ValueError(f"workers={workers} is not allowed; give an integer >= 1 or None")
    return min(workers or os.cpu_count() or 1, jobs)


def run(fn, calls: list[tuple], workers: int, *, desc: str, progress: bool = True) -> None:
    """``fn(*args)`` for each ``args`` of ``calls`` in ``workers`` spawned processes, each set to
    one torch thread, in order of submission; re-raises the first job's error. ``fn`` must be
    importable (a module-level function)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=worker_init, initargs=(os.getpid(),)) as ex:
        futs = [ex.submit(fn, *args) for args in calls]
        try:
            for fut in bar(as_completed(futs), total=len(futs), disable=not progress,
                           desc=f"{desc} ({workers} processes)"):
                fut.result()
        except KeyboardInterrupt:
            terminate(ex)
            raise


def worker_init(parent: int) -> None:
    """The start of a worker process of ``parent`` (its pid): one torch thread; Ctrl-C ignored
    (the terminal sends it to the whole process group: the parent stops the pool, see
    :func:`terminate`); and exit as soon as the parent is gone, even when it was killed (a
    watchdog thread looks every 0.5 s whether the process has been handed to another parent)."""
    import torch
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while os.getppid() == parent:
            time.sleep(_WATCH)
        os._exit(1)
    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def terminate(ex) -> None:
    """Stop the process pool ``ex`` now: its queued jobs cancelled, its worker processes
    terminated (their runs in progress lost; finished ones are in the cache)."""
    processes = list((getattr(ex, "_processes", None) or {}).values())  # not public API
    ex.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        p.terminate()


@contextlib.contextmanager
def environ(env: dict):
    """``os.environ`` updated with ``env`` inside the block (what processes started there
    inherit), restored after it."""
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        restore_environ(before)


def restore_environ(before: dict) -> None:
    """Set the variables of ``before`` back (None: remove it)."""
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
