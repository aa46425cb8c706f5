"""Expand a configuration into transfer runs and run the ones the store does not hold yet.

``grid(cfg)`` holds every run of ``cells(cfg)``: the main grid (sources x targets x
unfrozen_blocks x n_values x seeds in ``cfg.recipe``, with the seed schedule and the full-set
runs), the head-only runs out to each target's whole pool (``cfg.head_to_pool``), the other
recipe's runs beside it (``cfg.compare_recipe``) and the block-count runs
(``cfg.block_counts``). Each run is a dict with the fields that change its result
(``transfer.recipe_fields`` of its recipe), so its store key (``cache.key(run)``) changes
whenever any of them does.

Tasks. ``tasks(cfg, store)`` cuts the runs missing from the store into one :class:`Task` per
(source, unfrozen_blocks, target, seed): the missing runs of that target-subset seed, in
increasing n (they share the frozen-prefix features cached on the first run), heaviest tasks
first (more unfrozen blocks, then more images), sources alternating so that parallel workers
start on different sources. The mini preset's 2,448 runs make 414 tasks of at most 10 runs; the
paper grid's 7,776 runs make 960 tasks of at most 10.

Executors. ``run(cfg, store, executor=...)`` runs the tasks and returns how many runs finished:

- ``"serial"`` (default; ``workers > 1`` defaults to ``"processes"``): in this process.
- ``"processes"``: a spawned ``concurrent.futures.ProcessPoolExecutor`` of ``workers`` processes
  (default: every core), one torch thread each, at most ``workers`` tasks in flight.
- ``"dask"``: ``dask.distributed``: a ``Client(scheduler)`` when a scheduler address (or a
  cluster object) is given, else a ``LocalCluster(n_workers=workers, threads_per_worker=1,
  processes=True)``; what ``run`` creates it closes. Every worker runs one torch thread.
- ``client=``: an existing Dask client or ``concurrent.futures`` executor (not closed).

Each worker process loads a source once (a per-process cache of ``zoo.load`` results) and
writes one row per finished run itself (``store`` rows are single atomic files, so concurrent
writers are safe); a killed sweep or worker loses at most the run in progress, and a task run
again skips the rows already written.

Failures. A task that raises is run again up to ``retries`` times (Dask also reschedules the
task of a worker that died; a process pool whose worker died is replaced and its in-flight
tasks are charged one attempt each). A task that still fails leaves a failure record, never a
row, in ``<store>/failed/<task key>.json`` (see :meth:`Task.key`) with: ``source``,
``unfrozen_blocks``, ``target``, ``seed``, ``n`` (the task's n values), ``runs`` (their store
keys), ``error`` (exception type), ``message``, ``traceback`` (its tail), ``attempts``,
``executor``, ``host`` and ``time`` (UTC ISO). The sweep goes on with the other tasks, ``run``
returns normally and warns with a summary (the returned count also has ``.failed``, the
records of this call); a later successful run of the task removes its record.
``status(cfg, store)`` tells, per (source, target), how many runs there are, are done, are
missing, and have failed.

The shared cache. Workers read sources, features and data from ``cache_dir()`` =
``$RT_CACHE_DIR`` (default ``~/.cache/robust_transfer``) and write rows into the store: every
worker must see the same directory (one machine, or a shared file system on a cluster) — set
``RT_CACHE_DIR`` to it in each worker's environment (and in the process that calls ``run``, so
that ``Store(cfg.preset)`` lives there too). Concurrent workers are safe there: files are
written atomically and a missing source is made by one worker while the others wait
(``cache.file_lock``; on a cluster file system ``flock`` must work across nodes).

Dask's nannies start workers with ``MALLOC_TRIM_THRESHOLD_=65536``; with it, transfer runs of
the small CPU models ran 1.8x slower here, so ``run``'s LocalCluster unsets it (and undoes the
variables the nannies write into this process's environment). For a cluster of your own, set
``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_: null`` in its Dask configuration
(e.g. ``~/.config/dask/distributed.yaml``).

SLURM through dask-jobqueue (``pip install dask-jobqueue``; run where ``sbatch`` works)::

    import os
    os.environ["RT_CACHE_DIR"] = "/shared/rt_cache"            # before importing the package
    from dask_jobqueue import SLURMCluster
    from robust_transfer import config, sweep
    from robust_transfer.store import Store

    cluster = SLURMCluster(cores=8, processes=8, memory="32GB", walltime="04:00:00",
                           job_script_prologue=["export RT_CACHE_DIR=/shared/rt_cache"])
    # GPU runs (the paper preset): one single-threaded worker per GPU, e.g.
    # SLURMCluster(cores=1, processes=1, job_cpu=8, memory="64GB", walltime="24:00:00",
    #              job_extra_directives=["--gres=gpu:1"], job_script_prologue=[...])
    cluster.scale(jobs=4)                                      # 4 jobs x 8 workers
    cfg = config.resolve("mini")
    done = sweep.run(cfg, Store(cfg.preset), executor="dask",
                     scheduler=cluster.scheduler_address)
    print(sweep.status(cfg, Store(cfg.preset)))                # done / missing / failed
    cluster.close()
"""
from __future__ import annotations

import dataclasses
import functools
import os
import signal
import socket
import threading
import time
import traceback
import warnings
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone

import torch

from . import data, pool, transfer, zoo
from .cache import key as cache_key
from .progress import bar
from .store import Store

__all__ = ["EXECUTORS", "Task", "SweepResult", "cells", "grid", "tasks", "run", "status",
           "full_n", "pool_n_values"]

EXECUTORS = ("serial", "processes", "dask")
_WAKE = 1.0  # at most this many seconds between looks at a parallel sweep's rows (progress)


def _wanted(cfg, source: str, k: int, n: int) -> bool:
    """Runs with k > 0 only for ``cfg.finetune_sources`` (() = all) and n <= ``finetune_max_n``."""
    if k == 0:
        return True
    return ((not cfg.finetune_sources or source in cfg.finetune_sources)
            and (not cfg.finetune_max_n or n <= cfg.finetune_max_n))


def full_n(cfg, target: str) -> int:
    """The "full training set" n of ``target``: its whole training pool after the validation
    split (``val_size`` images fewer than the authors' full set, which had no validation)."""
    return data.info(target).train_size - cfg.val_size


def pool_n_values(cfg, target: str) -> list[int]:
    """The n of ``target``'s head-only runs beyond ``cfg.n_values`` when ``cfg.head_to_pool``
    (else []): the doublings of the largest n below the target's whole pool (:func:`full_n`),
    then the pool itself; [] for a target of unknown size (``folder:`` datasets)."""
    if not cfg.head_to_pool or data.info(target).train_size is None:
        return []
    pool, n = full_n(cfg, target), max(cfg.n_values)
    out = []
    while 2 * n < pool:
        n *= 2
        out.append(n)
    return out + [pool] if pool > max(cfg.n_values) else out


def _seeds(cfg, n: int) -> tuple[int, ...]:
    """The subset seeds of the runs at ``n``: the first ``seed_counts[i]`` for ``n_values[i]``
    when ``seed_counts`` is given (Section 2's authors' grid: 3, 2, 1, 1), else all, or the
    first ``few_seeds`` above ``few_seeds_n`` (the paper: 10 seeds up to 6,400 images, 5
    above)."""
    if cfg.seed_counts and n in cfg.n_values:
        return cfg.seeds[:cfg.seed_counts[cfg.n_values.index(n)]]
    return cfg.seeds[:cfg.few_seeds] if cfg.few_seeds and n > cfg.few_seeds_n else cfg.seeds


def cells(cfg) -> list[dict]:
    """The (source, target, unfrozen_blocks, n, seed, recipe) of every run of ``cfg``, without
    the weights' and data's hashes (which need the sources and the target data on this machine).

    1. the main grid, ``cfg.recipe``: sources x targets x unfrozen_blocks x n_values x seeds,
       runs with unfrozen_blocks > 0 limited to ``finetune_sources`` and ``finetune_max_n``,
       seeds by the schedule (``seed_counts`` per n, or ``few_seeds`` above ``few_seeds_n``),
       plus with ``full_set`` one run (the first seed) at :func:`full_n` per source, target
       and block count;
    2. with ``head_to_pool``, head-only runs of every source on every target at
       :func:`pool_n_values` (every scheduled seed below the pool, the first at the pool);
    3. ``compare_recipe`` (if any): the fine-tuned sources at ``main_blocks`` and
       ``compare_n_values`` (() = n_values) on ``cfg.compared_targets()``;
    4. Fig. 4: the fine-tuned sources at every ``block_counts`` on ``block_targets`` (() =
       targets) and ``block_n_values`` (() = n_values), in ``cfg.recipe``.
    Fine-tuned noise-trained sources (controls: ``zoo.MATCHED_NOISE``) are in the main grid
    only, not in 3 and 4. A run listed twice is kept once, at its first place.
    """
    tuned = [s for s in cfg.sources if not cfg.finetune_sources or s in cfg.finetune_sources]
    out = [dict(source=s, target=t, unfrozen_blocks=k, n=n, seed=seed, recipe=cfg.recipe)
           for s in cfg.sources for t in cfg.targets for k in cfg.unfrozen_blocks
           for n in cfg.n_values for seed in _seeds(cfg, n) if _wanted(cfg, s, k, n)]
    if cfg.full_set:
        out += [dict(source=s, target=t, unfrozen_blocks=k, n=full_n(cfg, t), seed=cfg.seeds[0],
                     recipe=cfg.recipe)
                for s in cfg.sources for t in cfg.targets for k in cfg.unfrozen_blocks
                if data.info(t).train_size is not None and (k == 0 or s in tuned)]
    out += [dict(source=s, target=t, unfrozen_blocks=0, n=n, seed=seed, recipe=cfg.recipe)
            for s in cfg.sources for t in cfg.targets for n in pool_n_values(cfg, t)
            for seed in (_seeds(cfg, n) if n < full_n(cfg, t) else cfg.seeds[:1])]
    tuned = [s for s in tuned if zoo.spec(s).norm != "noise"]
    if cfg.compare_recipe:
        out += [dict(source=s, target=t, unfrozen_blocks=cfg.main_blocks, n=n, seed=seed,
                     recipe=cfg.compare_recipe)
                for s in tuned for t in cfg.compared_targets()
                for n in cfg.compare_n_values or cfg.n_values for seed in _seeds(cfg, n)]
    out += [dict(source=s, target=t, unfrozen_blocks=k, n=n, seed=seed, recipe=cfg.recipe)
            for s in tuned for t in cfg.block_targets or cfg.targets for k in cfg.block_counts
            for n in cfg.block_n_values or cfg.n_values for seed in _seeds(cfg, n)]
    seen, unique = set(), []
    for c in out:
        key = tuple(c.values())
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


def grid(cfg) -> list[dict]:
    """All runs of ``cfg`` (one dict per run: source, its weights' revision, target, its data's
    content hash, unfrozen_blocks, n, seed + ``transfer.recipe_fields`` of its recipe), in
    :func:`cells` order."""
    fields = {r: transfer.recipe_fields(cfg, r) for r in {cfg.recipe, cfg.compare_recipe} if r}
    revisions = {s: zoo.revision(s) for s in cfg.sources}
    targets = {c["target"] for c in cells(cfg)}
    # the content hash of each target's images and labels: a changed dataset (e.g. a
    # folder:<path> whose files changed) never reuses old rows
    data_hashes = {t: transfer.target_arrays(t, cfg.allow_download)[5] for t in targets}
    return [dict(source=c["source"], source_revision=revisions[c["source"]], target=c["target"],
                 target_revision=data_hashes[c["target"]], unfrozen_blocks=c["unfrozen_blocks"],
                 n=c["n"], seed=c["seed"], **fields[c["recipe"]]) for c in cells(cfg)]


# ----------------------------------------------------------------------------- tasks

@dataclass(frozen=True)
class Task:
    """The missing runs of one (source, unfrozen_blocks, target, seed, recipe) cell, in
    increasing n."""

    source: str
    unfrozen_blocks: int
    target: str
    seed: int
    recipe: str
    runs: tuple  # of run dicts (``grid`` entries)

    @property
    def key(self) -> str:
        """16 hex digits naming the cell: ``cache.key`` of its runs' common fields (every field
        but n), so the same cell of the same recipe has the same key whichever runs are left."""
        return cache_key({k: v for k, v in self.runs[0].items() if k != "n"})

    @property
    def n_values(self) -> list[int]:
        """The n of its runs (increasing)."""
        return [r["n"] for r in self.runs]

    def label(self) -> str:
        """A short readable name: ``<source> k=<k> <target> seed=<seed> <recipe>``."""
        return (f"{self.source} k={self.unfrozen_blocks} {self.target} seed={self.seed} "
                f"{self.recipe}")


def tasks(cfg, store: Store) -> list[Task]:
    """The runs of ``grid(cfg)`` missing from ``store``, as one :class:`Task` per (source,
    unfrozen_blocks, target, seed, recipe) with runs in increasing n; heaviest first (the
    authors' recipe, which has no cached-prefix path, then more unfrozen blocks, then more
    target images in total), ties ordered by seed, target, then source."""
    cells: dict[tuple, list[dict]] = {}
    for r in store.missing(grid(cfg)):
        cells.setdefault((r["source"], r["unfrozen_blocks"], r["target"], r["seed"],
                          r["recipe"]), []).append(r)
    src = {s: i for i, s in enumerate(cfg.sources)}
    tgt = {t: i for i, t in enumerate(dict.fromkeys(key[2] for key in cells))}
    out = [Task(s, k, t, seed, recipe, tuple(sorted(runs, key=lambda r: r["n"])))
           for (s, k, t, seed, recipe), runs in cells.items()]
    return sorted(out, key=lambda c: (c.recipe != "authors", -c.unfrozen_blocks,
                                      -sum(c.n_values), c.seed, tgt[c.target], src[c.source]))


# ----------------------------------------------------------------------------- one task

@functools.lru_cache(maxsize=16)  # tasks alternate sources: hold every source of a preset
def _cached_source(load_fn, source: str, allow_download: bool, revision, root):
    return load_fn(source, allow_download=allow_download, progress=False)[0]


def _source_model(load_fn, source: str, allow_download: bool):
    """The model of ``source``, loaded once per process (per weights revision and cache)."""
    try:
        revision = zoo.revision(source)
    except ValueError:
        revision = None
    return _cached_source(load_fn, source, allow_download, revision,
                          os.environ.get("RT_CACHE_DIR"))


def _run_task(task: Task, cfg, store_path: str, run_fn=None, load_fn=None,
              threads: int | None = None, on_row=None) -> int:
    """Run the runs of ``task`` that have no row yet and write their rows; returns how many."""
    if threads is not None:
        torch.set_num_threads(threads)
    store = Store(store_path)
    todo = [r for r in task.runs if r not in store]  # a retried task skips finished runs
    if not todo:
        return 0
    run_fn = run_fn or transfer.run
    model = _source_model(load_fn or zoo.load, task.source, cfg.allow_download)
    if task.recipe != cfg.recipe:
        cfg = dataclasses.replace(cfg, recipe=task.recipe)
    for r in todo:
        t0 = time.perf_counter()
        metrics = run_fn(r["source"], r["target"], r["n"], r["unfrozen_blocks"], r["seed"], cfg,
                         model=model)
        store.add(r, metrics, time.perf_counter() - t0)
        if on_row is not None:
            on_row()
    return len(todo)


# ----------------------------------------------------------------------------- the sweep

class SweepResult(int):
    """The number of runs a :func:`run` call finished (an ``int``); ``failed`` holds the failure
    records of the tasks that failed in that call ([] if none)."""

    failed: list

    def __new__(cls, ran: int, failed=()):
        self = super().__new__(cls, ran)
        self.failed = list(failed)
        return self


def _failure(task: Task, store: Store, err: BaseException, attempts: int, executor: str) -> dict:
    """The failure record of ``task`` (its runs still without a row) after ``err``."""
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    runs = [r for r in task.runs if r not in store] or list(task.runs)
    return dict(source=task.source, unfrozen_blocks=task.unfrozen_blocks, target=task.target,
                seed=task.seed, recipe=task.recipe, n=[r["n"] for r in runs], runs=[Store.key(r) for r in runs],
                error=type(err).__name__, message=str(err)[:2000], traceback=tb[-4000:],
                attempts=attempts, executor=executor, host=socket.gethostname(),
                time=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def _prune_failures(store: Store) -> None:
    """Remove failure records whose runs all have rows now."""
    done = store.keys()
    for rec in store.failures():
        if set(rec.get("runs", ())) <= done:
            store.clear_failure(rec["key"])


def _check(executor, workers, scheduler, retries, client) -> str:
    if executor is None:
        executor = "dask" if scheduler is not None else (
            "processes" if (workers or 1) > 1 else "serial")
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} is not allowed; allowed: {list(EXECUTORS)}")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool)
                                or workers < 1):
        raise ValueError(f"workers={workers!r} is not allowed; give a positive integer or None "
                         f"(every core)")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries={retries!r} is not allowed; give an integer >= 0")
    if scheduler is not None and executor != "dask":
        raise ValueError(f"scheduler={scheduler!r} needs executor='dask' (got {executor!r})")
    if client is not None and scheduler is not None:
        raise ValueError("give either client= (an existing executor) or scheduler=, not both")
    transfer.feature_cache_bytes()   # a bad $RT_FEATURE_CACHE_MB stops here, before any run
    return executor


def run(cfg, store: Store, *, executor: str | None = None, workers: int | None = None,
        scheduler=None, retries: int = 2, progress: bool = True, run_fn=None, load_fn=None,
        client=None, out=None) -> SweepResult:
    """Run the runs of ``grid(cfg)`` missing from ``store``; returns how many finished.

    ``executor``: ``"serial"``, ``"processes"`` or ``"dask"`` (see the module docstring;
    default serial, or processes when ``workers > 1``, or dask when ``scheduler`` is given).
    ``workers``: processes / LocalCluster workers (default: every core). ``scheduler``: a Dask
    scheduler address or cluster to use instead of a LocalCluster. ``client``: an existing Dask
    client or ``concurrent.futures`` executor to submit to (kept open). ``retries``: extra
    attempts of a failing task before its failure record is written. ``run_fn`` (default
    :func:`transfer.run`) and ``load_fn`` (default ``zoo.load``) are replaceable for tests
    (picklable when run in other processes). ``out`` (e.g. ``print``) is told what the sweep
    does before its bar starts (runs, tasks, executor; the Dask dashboard's address). The result
    is an ``int`` with ``.failed``. Ctrl-C (``KeyboardInterrupt``) stops every executor's
    workers and propagates; the rows written stay, so the same call resumes.
    """
    defaulted = executor is None
    executor = _check(executor, workers, scheduler, retries, client)
    _prune_failures(store)
    todo = tasks(cfg, store)
    todo_keys = {Store.key(r) for t in todo for r in t.runs}
    out = out or (lambda text: None)
    # nothing to do, or a single task for the default pool: no processes to start
    in_process = client is None and (executor == "serial" or not todo
                                     or (defaulted and executor == "processes" and len(todo) < 2))
    if todo:
        n = workers or os.cpu_count() or 1
        how = ("in this process" if in_process else f"on {type(client).__name__}"
               if client is not None else f"on the Dask scheduler {scheduler}"
               if scheduler is not None else f"in {n} worker processes"
               if executor == "processes" else f"on a local Dask cluster of {n} workers")
        out(f"running {len(todo_keys):,} missing runs in {len(todo):,} tasks {how}")
    pbar = bar(total=len(todo_keys), desc="transfer runs", disable=not progress or not todo)
    failed: list[dict] = []
    try:
        if in_process:
            failed = _serial(todo, cfg, store, retries, run_fn, load_fn, pbar)
        else:
            failed = _parallel(todo, cfg, store, executor, client, workers, scheduler, retries,
                               run_fn, load_fn, pbar, todo_keys, out)
    finally:
        pbar.close()
        if in_process or client is not None:
            _cached_source.cache_clear()  # models loaded in this process: free them
    ran = len(todo_keys & store.keys())
    if failed:
        missing = sum(len(f["runs"]) for f in failed)
        warnings.warn(f"{len(failed)} of {len(todo)} sweep tasks failed after "
                      f"{retries + 1} attempt(s) ({missing} runs have no row); records in "
                      f"{store.failed_path}; see sweep.status(cfg, store). First: "
                      f"{failed[0]['error']}: {failed[0]['message'][:200]}", RuntimeWarning,
                      stacklevel=2)
    return SweepResult(ran, failed)


def _serial(todo, cfg, store, retries, run_fn, load_fn, pbar) -> list[dict]:
    """Run the tasks here, one after the other; returns the failure records written."""
    failed = []
    for task in todo:
        pbar.set_postfix_str(task.label())
        for attempt in range(1, retries + 2):
            try:
                _run_task(task, cfg, str(store.path), run_fn, load_fn, on_row=pbar.update)
            except Exception as err:  # noqa: BLE001 -- a KeyboardInterrupt stops the sweep
                if attempt > retries:
                    rec = _failure(task, store, err, attempt, "serial")
                    store.record_failure(task.key, rec)
                    failed.append({"key": task.key, **rec})
            else:
                store.clear_failure(task.key)
                break
    return failed


def _is_dask(ex) -> bool:
    return type(ex).__module__.split(".")[0] == "distributed"


def _parallel(todo, cfg, store, executor, client, workers, scheduler, retries, run_fn, load_fn,
              pbar, todo_keys, out) -> list[dict]:
    """Submit the tasks to a pool / Dask / ``client`` and follow them; returns the failure
    records written. A task that raised is queued again until it has had ``retries + 1``
    attempts; a broken process pool is replaced (its in-flight tasks each charged one)."""
    workers = workers or os.cpu_count() or 1
    state = {"env": None, "made": [], "pool": None}  # what this call creates and must undo
    try:
        return _follow(todo, cfg, store, executor, client, workers, scheduler, retries, run_fn,
                       load_fn, pbar, todo_keys, state, out)
    except KeyboardInterrupt:  # the runs in progress are lost; the rows written stay
        if state["pool"] is not None:
            pool.terminate(state["pool"])
        raise
    finally:
        if state["pool"] is not None:
            state["pool"].shutdown(wait=True, cancel_futures=True)
        for obj in state["made"]:
            obj.close()
        if state["env"]:
            pool.restore_environ(state["env"])


def _follow(todo, cfg, store, executor, client, workers, scheduler, retries, run_fn, load_fn,
            pbar, todo_keys, state, out) -> list[dict]:
    """The body of :func:`_parallel`; records in ``state`` what the caller must close."""
    from concurrent.futures import wait as futures_wait
    from concurrent.futures.process import BrokenProcessPool

    pool_factory = None
    if client is not None:
        ex, name = client, f"client:{type(client).__name__}"
    elif executor == "processes":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        def pool_factory():
            return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=pool.worker_init, initargs=(os.getpid(),))
        ex = state["pool"] = pool_factory()
        name = "processes"
    else:
        from dask.distributed import Client
        if scheduler is None:
            cluster, state["env"] = _local_cluster(workers)
            state["made"].append(cluster)
            ex = Client(cluster)
        else:
            ex = Client(scheduler)
        state["made"].insert(0, ex)
        name = "dask"
        out(f"Dask dashboard: {_dashboard(ex) or 'none (the scheduler runs none; pip install bokeh)'}")
    dask = _is_dask(ex)
    if dask:
        from distributed import wait as dask_wait

        def wait_any(futs, timeout):
            try:
                dask_wait(futs, timeout=timeout, return_when="FIRST_COMPLETED")
            except TimeoutError:  # distributed raises on timeout
                pass
    else:
        def wait_any(futs, timeout):
            futures_wait(futs, timeout=timeout, return_when="FIRST_COMPLETED")
    # a process pool gets at most `workers` tasks at a time, so that a worker's death charges
    # only the tasks really running; Dask's scheduler does its own queueing
    limit = workers if pool_factory is not None else len(todo)
    queue, inflight, attempts, failed = deque(todo), {}, {}, []
    store_path = str(store.path)
    threads = 1 if dask or pool_factory is not None else None  # not a thread pool's caller

    def submit(task):
        args = (_run_task, task, cfg, store_path, run_fn, load_fn, threads)
        return ex.submit(*args, pure=False) if dask else ex.submit(*args)

    def failure(task, err):
        if attempts[task.key] <= retries:
            queue.append(task)
        else:
            rec = _failure(task, store, err, attempts[task.key], name)
            store.record_failure(task.key, rec)
            failed.append({"key": task.key, **rec})

    last_look = 0.0
    try:
        while queue or inflight:
            while queue and len(inflight) < limit:
                task = queue.popleft()
                inflight[submit(task)] = task
            done = [f for f in inflight if f.done()]
            settled, broken = bool(done), False
            while done:
                for fut in done:
                    task = inflight.pop(fut)
                    attempts[task.key] = attempts.get(task.key, 0) + 1
                    try:
                        fut.result()
                    except BrokenProcessPool as err:
                        if pool_factory is None:  # a pool we were given: it cannot be replaced
                            raise
                        broken = True
                        failure(task, err)
                    except Exception as err:  # noqa: BLE001 -- KeyboardInterrupt stops the sweep
                        failure(task, err)
                    else:
                        store.clear_failure(task.key)
                # a dead worker fails every future of its pool: settle them all (each is
                # charged one attempt unless it had finished), then start a new pool
                done = list(futures_wait(inflight)[0]) if broken and inflight else []
            if broken:
                ex.shutdown(wait=True, cancel_futures=True)
                ex = state["pool"] = pool_factory()
            if time.monotonic() - last_look > 1.0 or not (queue or inflight):
                pbar.update(len(todo_keys & store.keys()) - pbar.n)  # rows the workers wrote
                last_look = time.monotonic()
            if not settled:  # nothing ended: sleep until a task ends (or _WAKE for progress)
                wait_any(list(inflight), _WAKE)
    finally:
        for fut in inflight:
            fut.cancel()
    return failed


_NO_TRIM = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def _local_cluster(workers: int):
    """A ``LocalCluster`` of ``workers`` single-threaded worker processes, and the environment
    its nannies change in this process (``{name: old value or None}``, to undo on close).

    Dask's nannies start workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which makes glibc give
    memory back on nearly every free: transfer runs of small models ran 1.8x slower with it
    (96-run tiny grid, one worker: 48 s of runs against 27 s), so it is not set here. The
    nannies also write their variables (OMP_NUM_THREADS=1, ...) into this process's
    ``os.environ``, where processes started later would inherit them. The workers start with
    Ctrl-C ignored (they inherit it), so that a terminal's SIGINT interrupts only this process,
    which then closes the cluster.
    """
    import dask
    from dask.distributed import LocalCluster
    keys = set(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    keys |= {"MALLOC_TRIM_THRESHOLD_", "PYTHONHASHSEED", "__DASK_PARENT_PID"}
    before = {k: os.environ.get(k) for k in keys}
    main = threading.current_thread() is threading.main_thread()  # where signals are set
    sigint = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        with dask.config.set(_NO_TRIM):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0" if _has_bokeh() else None)
    except BaseException:
        pool.restore_environ(before)
        raise
    finally:
        if main:
            signal.signal(signal.SIGINT, sigint)
    return cluster, before


def _has_bokeh() -> bool:
    """Dask's dashboard needs bokeh."""
    import importlib.util
    return importlib.util.find_spec("bokeh") is not None


def _dashboard(client) -> str | None:
    """The Dask dashboard's address of ``client`` (None when its scheduler serves none)."""
    try:
        return client.dashboard_link
    except (KeyError, AttributeError):
        return None


def status(cfg, store: Store, runs=None) -> "pandas.DataFrame":
    """Progress of ``cfg``'s sweep (or of ``runs``, ``grid`` entries, e.g. of several configs)
    in ``store``: one line per (source, target), in grid order.

    Columns: ``source``, ``target``; ``total`` (runs in ``grid(cfg)``), ``done`` (with a row),
    ``missing`` (without one, ``total - done``), ``failed`` (missing runs of a task that left a
    failure record; part of ``missing``) and ``error`` (``"<type>: <message>"`` of the latest
    such record, "" when none).
    """
    import pandas as pd
    done = store.keys()
    records = {}
    for rec in sorted(store.failures(), key=lambda r: r.get("time", "")):
        for k in rec.get("runs", ()):
            records[k] = rec  # the latest record naming the run
    cells: dict[tuple, dict] = {}
    for r in grid(cfg) if runs is None else runs:
        c = cells.setdefault((r["source"], r["target"]), dict(
            source=r["source"], target=r["target"], total=0, done=0, missing=0, failed=0,
            error="", _time=""))
        k = Store.key(r)
        c["total"] += 1
        if k in done:
            c["done"] += 1
            continue
        c["missing"] += 1
        rec = records.get(k)
        if rec is not None:
            c["failed"] += 1
            if rec.get("time", "") >= c["_time"]:
                c["error"] = f"{rec.get('error')}: {rec.get('message', '')}"
                c["_time"] = rec.get("time", "")
    cols = ["source", "target", "total", "done", "missing", "failed", "error"]
    return pd.DataFrame([{k: c[k] for k in cols} for c in cells.values()], columns=cols)
