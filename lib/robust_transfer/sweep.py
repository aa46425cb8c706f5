"""Expand a configuration into transfer runs and run the ones the store does not hold yet.

``grid(cfg)`` crosses sources x targets x unfrozen_blocks x n_values x seeds; each run is a
dict with the recipe fields that change its result (see ``RECIPE_FIELDS``), so its store key
changes whenever any of them does. ``run(cfg, store)`` groups the missing runs into one task
per (source, unfrozen_blocks), loads the source once per task (``zoo.load``), runs the task's
runs in a fixed order (cached prefix features are reused across runs) and writes one row per
finished run. A killed sweep resumes where it stopped.
``workers=2`` uses two local processes; ``client`` (a ``dask.distributed.Client`` or any
``concurrent.futures`` executor) runs the tasks on its workers. Rows are written by the
workers (one atomic file each, so concurrent writers are safe).
"""
from __future__ import annotations

import time

import torch

from . import transfer, zoo
from .store import Store
from .progress import bar

__all__ = ["RECIPE_FIELDS", "grid", "run"]

RECIPE_FIELDS = ("epochs", "lr", "head_lr", "batch_size", "frozen_bn", "augment", "val_size")


def _wanted(cfg, source: str, k: int, n: int) -> bool:
    """Runs with k > 0 only for ``cfg.finetune_sources`` (() = all) and n <= ``finetune_max_n``."""
    if k == 0:
        return True
    return ((not cfg.finetune_sources or source in cfg.finetune_sources)
            and (not cfg.finetune_max_n or n <= cfg.finetune_max_n))


def grid(cfg) -> list[dict]:
    """All runs of ``cfg`` (one dict per run: source, its weights' revision, target, its data's
    content hash, unfrozen_blocks, n, seed + recipe).

    sources x targets x unfrozen_blocks x n_values x seeds, except that runs with
    unfrozen_blocks > 0 are limited to ``cfg.finetune_sources`` and ``cfg.finetune_max_n``.
    """
    recipe = {f: getattr(cfg, f) for f in RECIPE_FIELDS}
    recipe["recipe_version"] = transfer.RECIPE_VERSION
    revisions = {s: zoo.revision(s) for s in cfg.sources}
    # the content hash of each target's images and labels: a changed dataset (e.g. a
    # folder:<path> whose files changed) never reuses old rows
    data_hashes = {t: transfer.target_arrays(t, cfg.allow_download)[5] for t in cfg.targets}
    return [dict(source=s, source_revision=revisions[s], target=t, target_revision=data_hashes[t],
                 unfrozen_blocks=k, n=n, seed=seed, **recipe)
            for s in cfg.sources for t in cfg.targets for k in cfg.unfrozen_blocks
            for n in cfg.n_values for seed in cfg.seeds if _wanted(cfg, s, k, n)]


def _run_source(source: str, runs: list[dict], cfg, store_path: str, run_fn=None, load_fn=None,
                pbar=None, threads: int | None = None) -> int:
    """Run ``runs`` (all of one source) and write their rows; returns how many were written."""
    if threads is not None:
        torch.set_num_threads(threads)
    load_fn = load_fn or zoo.load
    run_fn = run_fn or transfer.run
    store = Store(store_path)
    model = load_fn(source, allow_download=cfg.allow_download, progress=False)[0]
    for r in runs:
        t0 = time.perf_counter()
        metrics = run_fn(r["source"], r["target"], r["n"], r["unfrozen_blocks"], r["seed"], cfg,
                         model=model)
        store.add(r, metrics, time.perf_counter() - t0)
        if pbar is not None:
            pbar.update()
    return len(runs)


def run(cfg, store, *, progress: bool = True, workers: int = 1, client=None, run_fn=None,
        load_fn=None) -> int:
    """Run the runs of ``grid(cfg)`` missing from ``store``; returns how many were run.

    One task per (source, unfrozen_blocks), heaviest first. ``workers > 1`` runs tasks in that
    many spawned processes (one torch thread each); ``client`` (anything with
    ``submit(fn, *args) -> future``, e.g. a Dask client) runs them there instead. ``run_fn``
    (default :func:`transfer.run`) and ``load_fn`` (default ``zoo.load``) are replaceable for
    tests (they must be picklable when run in other processes).
    """
    todo = store.missing(grid(cfg))
    tasks: dict[tuple, list[dict]] = {}
    for r in todo:
        tasks.setdefault((r["source"], r["unfrozen_blocks"]), []).append(r)
    order = sorted(tasks, key=lambda t: (-t[1], -sum(r["n"] for r in tasks[t])))
    pbar = bar(total=len(todo), desc="transfer runs", disable=not progress or not todo)
    pool = None
    if client is None and workers > 1 and len(tasks) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        client = pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        if client is None:
            for t in order:
                pbar.set_postfix_str(f"{t[0]} k={t[1]}")
                _run_source(t[0], tasks[t], cfg, str(store.path), run_fn, load_fn, pbar)
        else:
            futures = [client.submit(_run_source, t[0], tasks[t], cfg, str(store.path), run_fn,
                                     load_fn, None, 1) for t in order]
            while futures:  # progress = rows written by the workers
                for fut in [f for f in futures if f.done()]:
                    fut.result()  # re-raises a worker's error here
                    futures.remove(fut)
                pbar.update(len(todo) - len(store.missing(todo)) - pbar.n)
                time.sleep(0.5)
    finally:
        pbar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return len(todo)
