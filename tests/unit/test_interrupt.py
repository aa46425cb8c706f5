"""A sweep on the command line stopped with Ctrl-C says how many runs it saved and exits 130
without a traceback, on every executor, its workers gone; a sweep killed outright (SIGKILL)
leaves no worker process behind either. Each test runs ``python -m robust_transfer sweep`` on a
cut tiny grid in its own session (so that the SIGINT, sent to the whole process group as a
terminal sends it, does not reach pytest), with the test session's private RT_CACHE_DIR."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow   # processes and a tiny sweep each

from robust_transfer import zoo
from robust_transfer.store import Store

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "tiny/fmnist/natural/s0"
# 64 runs (2 n x 2 k x 16 seeds) of 100 epochs (minutes in all; each test stops the sweep after
# its first row): the signal must land while runs are left even when this test process is
# starved of CPU (3- and 20-epoch runs all finished between two polls on a loaded machine)
GRID = ["--preset", "tiny", "--set", f'sources=["{SOURCE}"]', "--set", 'targets=["digits"]',
        "--set", f"seeds={list(range(16))}", "--set", "epochs=100", "--set", "compare_recipe=",
        "--set", "block_counts=[]", "--set", "shape_targets=[]", "--no-calibrate"]
RUNS = 64


def _default_sigint() -> None:
    """Ctrl-C's default action in the sweep even when this test runs where SIGINT is ignored
    (a shell's background job inherits SIG_IGN, and Python then installs no KeyboardInterrupt
    handler): what a user's terminal gives it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(store: Path, *executor) -> subprocess.Popen:
    zoo.load(SOURCE, progress=False)   # trained once, in the shared private cache
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "robust_transfer", "sweep", *GRID,
                             "--store", str(store), *executor], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)


def _first_row(proc, store: Path, timeout=240.0) -> None:
    """Wait until the sweep has written a row (and has runs left)."""
    end = time.monotonic() + timeout
    while not (store.is_dir() and Store(store).keys()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "no row written"
        time.sleep(0.1)


def _gone(pids, timeout=10.0) -> list[int]:
    """The processes of ``pids`` still alive (not zombies) after ``timeout`` seconds."""
    import psutil
    end = time.monotonic() + timeout
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > end:
            return alive
        time.sleep(0.2)


def _children(pid) -> list[int]:
    import psutil
    return [c.pid for c in psutil.Process(pid).children(recursive=True)]


@pytest.mark.parametrize("executor", [["--executor", "serial"],
                                      ["--executor", "processes", "--workers", "2"],
                                      ["--executor", "dask", "--workers", "2"]],
                         ids=["serial", "processes", "dask"])
def test_ctrl_c_says_what_was_saved_and_exits_130(tmp_path, executor):
    store = tmp_path / "store"
    proc = _start(store, *executor)
    _first_row(proc, store)
    workers = _children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)            # what Ctrl-C in a terminal does
    out, err = proc.communicate(timeout=120)
    saved = len(Store(store).keys())
    assert proc.returncode == 130, err[-3000:]
    assert f"interrupted: {saved} of {RUNS} runs saved; run the same command to resume" in err
    assert 0 < saved < RUNS
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert not _gone(workers)


def test_workers_exit_when_the_sweep_is_killed(tmp_path):
    store = tmp_path / "store"
    proc = _start(store, "--executor", "processes", "--workers", "2")
    _first_row(proc, store)
    workers = _children(proc.pid)
    assert workers
    proc.kill()                                   # SIGKILL: no clean-up in the parent
    proc.communicate(timeout=30)
    try:
        assert not _gone(workers)
    finally:
        for pid in _gone(workers, timeout=0):
            os.kill(pid, signal.SIGKILL)
