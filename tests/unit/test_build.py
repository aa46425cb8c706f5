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
    state = dict(calls=[], env=[], running=0, most=0, fail=None, start={}, end={},
                 slow=set())
    lock = threading.Lock()

    def execute_notebook(inp, out, **kw):
        name = os.path.basename(inp)
        with lock:
            state["calls"].append(name)
            state["env"].append({k: os.environ.get(k) for k in build.KERNEL_ENV})
            state["kernel_cwd"] = kw["resources"]["metadata"]["path"]
            assert "cwd" not in kw      # papermill's cwd= would chdir the shared process
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
            state["start"][name] = time.perf_counter()
        time.sleep(1.0 if name in state["slow"] else 0.1)
        with lock:
            state["running"] -= 1
            state["end"][name] = time.perf_counter()
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
    here = os.getcwd()
    state["slow"] = {f"{stem}.ipynb" for stems in build.READS.values() for stem in stems}
    times = build.execute(src, "tiny", jobs=2)
    assert os.getcwd() == here and state["kernel_cwd"] == str(build.ROOT / "notebooks")
    names = [nb.name for nb in build.notebooks()]
    assert list(times) == names and sorted(state["calls"]) == sorted(names)
    assert state["most"] == 2                       # two kernels side by side, never more
    assert all(env == build.KERNEL_ENV for env in state["env"])
    assert os.environ["OMP_NUM_THREADS"] == "7"     # the caller's environment is restored
    for reader, stems in build.READS.items():   # e.g. chapter 3 reads Section 1's store rows
        for stem in stems:
            assert state["start"][f"{reader}.ipynb"] >= state["end"][f"{stem}.ipynb"]
    build.execute(src, "tiny", jobs=1)
    assert state["most"] == 2 and state["running"] == 0


def test_a_failing_notebook_stops_the_build(fake_papermill):
    state, src = fake_papermill
    first = "02_transfer_vs_sample_size.ipynb"      # read by chapter 3, so it starts first
    state["fail"] = first
    with pytest.raises(RuntimeError, match=f"{first} failed"):
        build.execute(src, "tiny", jobs=1)
    assert state["calls"] == [first]                # the ones not started yet are skipped


def test_bad_jobs_is_refused_before_any_work(monkeypatch, capsys):
    monkeypatch.setattr(build.zoo, "load_grid", lambda *a, **k: pytest.fail("sources loaded"))
    with pytest.raises(SystemExit):
        build.main(["--preset", "tiny", "--jobs", "0"])
    assert "--jobs=0 is not allowed" in capsys.readouterr().err
    with pytest.raises(ValueError, match="jobs=0 is not allowed"):
        build.execute(build.ROOT, "tiny", jobs=0)


def test_stamp_ref_pins_the_colab_cell_and_removes_the_injected_cell(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    nb = new_notebook(cells=[new_code_cell('preset = "mini"', metadata={"tags": ["parameters"]}),
                             new_code_cell('preset = "tiny"',
                                           metadata={"tags": ["injected-parameters"]}),
                             new_code_cell(build.REF_LINE)])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    build.stamp_ref(path, "abc123")
    cells = nbformat.read(path, as_version=4).cells
    assert cells[1].metadata["tags"] == ["injected-parameters", "remove-cell"]
    assert cells[0].metadata["tags"] == ["parameters"]
    assert cells[2].source == 'REF = "abc123"'


def test_peak_memory_sums_a_tagged_kernel_and_its_children():
    """A tagged process and the child it starts are summed; the gate opens once it is seen."""
    import subprocess
    import sys
    code = ("import subprocess, sys, time; b = bytearray(120 * 2**20); "
            "c = subprocess.Popen([sys.executable, '-c', "
            "'import time; b = bytearray(80 * 2**20); time.sleep(1)']); time.sleep(1); c.wait()")
    with build.PeakMemory(every=0.1) as memory:
        memory.starting("nb")
        proc = subprocess.Popen([sys.executable, "-c", code])
        memory.starting("other")   # waits until "nb"'s process has been seen
        assert build.MEMORY_TAG in os.environ
        memory._open()
        proc.wait()
    assert build.MEMORY_TAG not in os.environ
    assert memory.peak["nb"] > 190 * 2**20
    assert 110 * 2**20 < memory.kernel["nb"] < memory.peak["nb"]
    assert 70 * 2**20 < memory.worker["nb"] < 110 * 2**20


def test_point_colab_sends_the_button_to_the_published_copy(tmp_path):
    page = tmp_path / "notebooks" / "a.html"
    page.parent.mkdir()
    url = "https://colab.research.google.com/github/org/repo/blob/{}/notebooks/02_x.ipynb"
    page.write_text(f'<a href="{url.format("abc123")}">Colab</a> <a href="https://mybinder.org'
                    f'/v2/gh/org/repo/abc123?urlpath=tree/notebooks/02_x.ipynb">Binder</a>')
    assert build.point_colab(tmp_path) == 1
    text = page.read_text()
    assert url.format(f"{build.PAGES_BRANCH}/_sources") in text and "repo/abc123?" in text
