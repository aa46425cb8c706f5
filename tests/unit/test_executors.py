"""Executors on the real engine: a Dask LocalCluster (2 worker processes, 1 thread each) and the
spawned process pool write exactly the rows of a serial sweep, and a worker killed mid-task
loses no finished row.

The grid is the tiny preset cut to two sources and one target (16 runs, 8 tasks). Rows are
compared as ``{key: (run, metrics without wall times)}`` with exact equality: every run is
deterministic at one torch thread per process (the serial sweep runs under conftest's
``torch.set_num_threads(1)``, workers set it themselves). The frozen-prefix feature cache is
emptied before each sweep, so every executor computes its features itself.
"""
import os
import shutil
import time
from collections import Counter

import pytest

pytestmark = pytest.mark.slow   # several processes each: `make test` runs them, test-fast does not

from robust_transfer import config, sweep, transfer, zoo
from robust_transfer.cache import cache_dir
from robust_transfer.store import Store

SOURCES = ("tiny/fmnist/natural/s0", "tiny/fmnist/l2/1.0/s0")


@pytest.fixture(scope="module")
def cfg():
    return config.resolve("tiny", sources=list(SOURCES), targets=["digits"], compare_recipe="",
                          block_counts=[])  # the main grid: 16 runs


def _fresh_features():
    shutil.rmtree(cache_dir("features"), ignore_errors=True)


@pytest.fixture(scope="module")
def serial(cfg, tmp_path_factory):
    """(store, seconds) of the serial sweep: the reference rows."""
    for s in cfg.sources:  # sources are trained before any timing
        zoo.load(s, progress=False)
    store = Store(tmp_path_factory.mktemp("serial") / "rows")
    _fresh_features()
    t0 = time.perf_counter()
    assert sweep.run(cfg, store, executor="serial", progress=False) == 16
    return store, time.perf_counter() - t0


def _rows(store):
    """{key: (run, metrics without wall-time fields)} of every row."""
    return {r["key"]: (r["run"], {k: v for k, v in r["metrics"].items() if "seconds" not in k})
            for r in store.rows()}


class DieOnce:
    """``transfer.run`` that logs every call (one line per call, appended) and kills its own
    process (``os._exit``) the first time it starts ``victim`` (source, target, n, k, seed)."""

    def __init__(self, tmp, victim):
        self.marker, self.log, self.victim = str(tmp / "killed"), str(tmp / "calls.log"), victim

    def __call__(self, source, target, n, k, seed, cfg, *, model=None):
        with open(self.log, "a") as fh:
            fh.write(f"{source}|{target}|{n}|{k}|{seed}\n")
        if (source, target, n, k, seed) == self.victim:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
                os._exit(1)  # the worker dies mid-task
            except FileExistsError:
                pass
        return transfer.run(source, target, n, k, seed, cfg, model=model)

    def calls(self):
        with open(self.log) as fh:
            return Counter(tuple(line.strip().split("|")) for line in fh)


def _victim(cfg):
    """The second run (n = 40) of the first task: its n = 10 row is written before the kill."""
    task = sweep.tasks(cfg, Store(cache_dir("empty-store")))[0]
    r = task.runs[1]
    return r["source"], r["target"], r["n"], r["unfrozen_blocks"], r["seed"]


def _as_logged(victim):
    return tuple(str(v) for v in victim)


def test_dask_local_cluster_writes_the_serial_rows(cfg, serial, tmp_path):
    ref, serial_s = serial
    store = Store(tmp_path / "rows")
    _fresh_features()
    env = dict(os.environ)
    t0 = time.perf_counter()
    ran = sweep.run(cfg, store, executor="dask", workers=2, progress=False)
    dask_s = time.perf_counter() - t0
    assert dict(os.environ) == env  # the nannies' variables (MALLOC_TRIM_THRESHOLD_, ...) undone
    assert ran == 16 and ran.failed == []
    assert _rows(store) == _rows(ref)
    print(f"\n16 runs: serial {serial_s:.1f} s, Dask LocalCluster (2 workers x 1 thread, "
          f"start-up included) {dask_s:.1f} s; rows identical")
    assert sweep.run(cfg, store, executor="dask", workers=2, progress=False) == 0  # no cluster


def test_dask_worker_killed_mid_task_loses_no_row(cfg, serial, tmp_path):
    victim = _victim(cfg)
    die = DieOnce(tmp_path, victim)
    store = Store(tmp_path / "rows")
    ran = sweep.run(cfg, store, executor="dask", workers=2, progress=False, run_fn=die)
    assert os.path.exists(die.marker)                    # a worker did die mid-task
    assert ran == 16 and ran.failed == [] and store.failures() == []
    assert _rows(store) == _rows(serial[0])
    calls = die.calls()
    assert calls[_as_logged(victim)] == 2                # started, killed, run again
    assert sum(calls.values()) == 17                     # every other run exactly once: the
    assert set(calls.values()) == {1, 2}                 # killed task's n=10 row was kept


def test_process_pool_writes_the_serial_rows_and_survives_a_dead_worker(cfg, serial, tmp_path):
    victim = _victim(cfg)
    die = DieOnce(tmp_path, victim)
    store = Store(tmp_path / "rows")
    _fresh_features()
    ran = sweep.run(cfg, store, executor="processes", workers=2, progress=False, run_fn=die)
    assert os.path.exists(die.marker)
    # the dead worker broke the pool: its in-flight tasks were charged one attempt each and
    # run again in a new pool, skipping the rows they had written
    assert ran == 16 and ran.failed == [] and store.failures() == []
    assert _rows(store) == _rows(serial[0])
    calls = die.calls()
    assert calls[_as_logged(victim)] == 2
    assert 17 <= sum(calls.values()) <= 18  # at most the other worker's run in progress again


def _always_fails(source, target, n, k, seed, cfg, *, model=None):
    if (source, k, seed) == (SOURCES[0], 0, 1):
        raise RuntimeError(f"broken run n={n}")
    return {"test_acc": 1.0}


def test_process_pool_failure_record_holds_the_remote_traceback(cfg, tmp_path):
    store = Store(tmp_path / "rows")
    with pytest.warns(RuntimeWarning, match="1 of 8 sweep tasks failed after 2 attempt"):
        ran = sweep.run(cfg, store, executor="processes", workers=2, progress=False,
                        run_fn=_always_fails, retries=1)
    assert ran == 14
    (rec,) = store.failures()
    assert rec["error"] == "RuntimeError" and rec["message"] == "broken run n=10"
    assert rec["attempts"] == 2 and rec["executor"] == "processes"
    assert "_always_fails" in rec["traceback"]  # the worker's traceback, not only the driver's
    st = sweep.status(cfg, store)
    assert st.set_index("source").loc[SOURCES[0], "failed"] == 2
