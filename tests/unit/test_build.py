"""The book build's notebook executor: two notebooks at a time, one-thread kernels, failures stop
the build (papermill is replaced by a stand-in; the real run is tests/notebooks/test_book.py)."""
import os
import sys
import threading
import time
import types

import pytest

from robust_transfer import build


@pytest.fixture
def fake_papermill(monkeypatch, tmp_path):
    """A stand-in ``papermill``: records each call, the environment it saw and how many ran at
    once; ``fail`` names a notebook that raises."""
    state = dict(calls=[], env=[], running=0, most=0, fail=None)
    lock = threading.Lock()

    def execute_notebook(inp, out, **kw):
        name = os.path.basename(inp)
        with lock:
            state["calls"].append(name)
            state["env"].append({k: os.environ.get(k) for k in build.KERNEL_ENV})
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
        time.sleep(0.2)
        with lock:
            state["running"] -= 1
        if name == state["fail"]:
            raise RuntimeError(f"{name} failed")
        with open(out, "w") as fh:
            fh.write("{}")

    monkeypatch.setitem(sys.modules, "papermill",
                        types.SimpleNamespace(execute_notebook=execute_notebook))
    monkeypatch.setattr(build, "stamp_ref", lambda path, sha: None)
    (tmp_path / "notebooks").mkdir()
    return state, tmp_path


def test_notebooks_run_two_at_a_time_with_one_thread_kernels(fake_papermill, monkeypatch):
    state, src = fake_papermill
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    times = build.execute(src, "tiny", jobs=2)
    names = [nb.name for nb in build.notebooks()]
    assert list(times) == names and sorted(state["calls"]) == sorted(names)
    assert state["most"] == 2                       # two kernels side by side, never more
    assert all(env == build.KERNEL_ENV for env in state["env"])
    assert os.environ["OMP_NUM_THREADS"] == "7"     # the caller's environment is restored
    build.execute(src, "tiny", jobs=1)
    assert state["most"] == 2 and state["running"] == 0


def test_a_failing_notebook_stops_the_build(fake_papermill):
    state, src = fake_papermill
    names = [nb.name for nb in build.notebooks()]
    state["fail"] = names[0]
    with pytest.raises(RuntimeError, match=f"{names[0]} failed"):
        build.execute(src, "tiny", jobs=1)
    assert state["calls"] == [names[0]]             # the ones not started yet are skipped


def test_bad_jobs_is_refused_before_any_work(monkeypatch, capsys):
    monkeypatch.setattr(build.zoo, "load_grid", lambda *a, **k: pytest.fail("sources loaded"))
    with pytest.raises(SystemExit):
        build.main(["--preset", "tiny", "--jobs", "0"])
    assert "--jobs=0 is not allowed" in capsys.readouterr().err
    with pytest.raises(ValueError, match="jobs=0 is not allowed"):
        build.execute(build.ROOT, "tiny", jobs=0)
