"""Append-only results store: one JSON file per finished run.

A row is written only when a run has finished, in one atomic rename (``cache.atomic_path``), as
``<dir>/<key>.json`` where ``key = cache.key(run)`` and ``run`` is the run's full
configuration (source, target, n, unfrozen_blocks, seed and every recipe field). A run killed
between its start and its write therefore leaves no row, a row is never half-written, rows are
never rewritten, and :meth:`Store.missing` tells a resumed sweep exactly what is left to do.
Each row holds ``key``, ``run``, ``metrics``, ``seconds`` (wall time of the run), ``version``
(``robust_transfer.__version__``) and ``finished`` (UTC ISO time).

A sweep task that kept failing leaves a *failure record*, never a row:
``<dir>/failed/<task key>.json`` (:meth:`Store.record_failure`; what it holds is documented in
``sweep``). A later successful run of that task removes it (:meth:`Store.clear_failure`).
Every process writing rows or records into one store must see the same directory.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from . import __version__
from .cache import atomic_write_text, cache_dir, key as cache_key

__all__ = ["Store", "FAILED_DIR"]

FAILED_DIR = "failed"  # failure records live in <store>/failed/, beside (never among) the rows


class Store:
    """The rows of one sweep: ``Store("mini")`` lives in ``cache_dir("results", "mini")``.

    ``where`` is a store name (a directory under ``cache_dir("results")``) or a path.
    """

    def __init__(self, where: str | os.PathLike):
        where = str(where)
        self.path = (Path(where) if os.sep in where or where.startswith(".")
                     else cache_dir("results", where))
        self.path.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, rows={len(self.keys())})"

    @staticmethod
    def key(run: dict) -> str:
        """The row key of a run configuration (16 hex digits, order of fields ignored)."""
        return cache_key(run)

    def keys(self) -> set[str]:
        """Keys of all finished rows."""
        return {p.stem for p in self.path.glob("*.json") if not p.name.startswith(".")}

    def __contains__(self, run: dict) -> bool:
        return (self.path / f"{self.key(run)}.json").exists()

    def __len__(self) -> int:
        return len(self.keys())

    def add(self, run: dict, metrics: dict, seconds: float) -> Path:
        """Write the row of a finished run atomically; returns its path. Existing rows are kept."""
        path = self.path / f"{self.key(run)}.json"
        if path.exists():  # append-only: a finished run is never rewritten
            return path
        row = {"key": self.key(run), "run": dict(run), "metrics": dict(metrics),
               "seconds": float(seconds), "version": __version__,
               "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        return atomic_write_text(path, json.dumps(row, default=float))

    def missing(self, grid: list[dict]) -> list[dict]:
        """The runs of ``grid`` that have no row yet, in grid order."""
        done = self.keys()
        return [run for run in grid if self.key(run) not in done]

    @property
    def failed_path(self) -> Path:
        """The folder of failure records (``<dir>/failed``; it may not exist yet)."""
        return self.path / FAILED_DIR

    def record_failure(self, task_key: str, record: dict) -> Path:
        """Write (atomically, replacing an older one) the failure record of the task
        ``task_key``; returns its path. ``record`` must be JSON-able; ``key`` is added."""
        path = self.failed_path / f"{task_key}.json"
        return atomic_write_text(path, json.dumps({"key": task_key, **record}, indent=1,
                                                  default=str))

    def clear_failure(self, task_key: str) -> bool:
        """Remove the failure record of ``task_key``; True if there was one."""
        try:
            (self.failed_path / f"{task_key}.json").unlink()
            return True
        except FileNotFoundError:
            return False

    def failures(self) -> list[dict]:
        """All failure records, sorted by task key (unreadable ones are skipped)."""
        out = []
        for p in sorted(self.failed_path.glob("*.json")):
            if p.name.startswith("."):
                continue
            try:
                out.append(json.loads(p.read_text()))
            except (OSError, ValueError):  # removed or replaced meanwhile
                continue
        return out

    def rows(self) -> list[dict]:
        """All rows as dicts, sorted by key."""
        return [json.loads(p.read_text()) for p in sorted(self.path.glob("*.json"))
                if not p.name.startswith(".")]

    def frame(self, grid: list[dict] | None = None) -> "pandas.DataFrame":
        """One line per row: run fields, metrics, ``seconds``, ``version``, ``key``.

        With ``grid``, only the rows of those runs (a store may hold other sweeps' rows).
        """
        import pandas as pd
        rows = self.rows()
        if grid is not None:
            wanted = {self.key(run) for run in grid}
            rows = [r for r in rows if r["key"] in wanted]
        return pd.DataFrame([{**r["run"], **r["metrics"], "seconds": r["seconds"],
                              "version": r["version"], "key": r["key"]} for r in rows])
