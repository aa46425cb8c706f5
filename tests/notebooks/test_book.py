"""Every notebook runs on the tiny preset with papermill, and the book builds strictly."""
import pytest

from robust_transfer import build


@pytest.fixture(scope="module")
def built(tiny_book):
    # staged and executed once per session in conftest.py (test_browser.py opens the same book)
    return tiny_book.out, tiny_book.src, tiny_book.times


def test_every_notebook_executes_on_tiny(built):
    import nbformat
    _, src, times = built
    assert len(times) == len(build.notebooks()) == 5
    for nb in build.notebooks():
        executed = nbformat.read(src / "notebooks" / nb.name, as_version=4)
        outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], nb.name
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{nb.name}: no figure"


def test_book_builds_strictly_with_figures(tiny_book):
    html = tiny_book.html  # build.build(src, out), shared with test_browser.py
    assert (html / "index.html").exists()
    for nb in build.notebooks():
        page = html / "notebooks" / f"{nb.stem}.html"
        assert page.exists(), page
        text = page.read_text()
        assert "Traceback" not in text
    data_page = (html / "notebooks" / "00_data.html").read_text()
    assert data_page.count("<img") >= 2


def test_colab_opens_the_published_notebook_that_installs_the_built_commit(tiny_book):
    html, sha = tiny_book.html, build.commit()
    for nb in build.notebooks():
        page = (html / "notebooks" / f"{nb.stem}.html").read_text()
        assert f"/blob/{build.PAGES_BRANCH}/_sources/notebooks/{nb.name}" in page, nb.name
        published = (html / "_sources" / "notebooks" / nb.name).read_text()
        assert build.REF_LINE not in published and (sha is None or sha in published), nb.name


def test_each_notebook_has_its_peak_memory(tiny_book):
    """Every notebook's kernel was found by its tag (two run at a time) and measured."""
    names = {nb.stem for nb in build.notebooks()}
    assert set(tiny_book.memory.peak) == names
    assert all(50 * 2**20 < rss < 8 * 2**30 for rss in tiny_book.memory.peak.values())


SECTION1 = "02_transfer_vs_sample_size"


def _run(name, out, **parameters):
    import papermill as pm
    nb = next(p for p in build.notebooks() if p.stem == name)
    return pm.execute_notebook(str(nb), str(out), kernel_name="python3", progress_bar=False,
                               parameters={"preset": "tiny", **parameters}, cwd=str(nb.parent))


@pytest.mark.parametrize("name,parameters,message", [
    ("00_data", dict(targets=["cifar11"]), "cifar11"),
    (SECTION1, dict(targets=["cifar11"]), "cifar11"),
    (SECTION1, dict(targets=["digits"], n_values=[5000]), "n_values=5000"),
    (SECTION1, dict(sources=["tiny/fmnist/l2/3.0/s0"]), "not in the zoo"),
    (SECTION1, dict(unfrozen_blocks=[7]), "unfrozen_blocks"),
])
def test_bad_parameters_stop_in_the_config_cell(tmp_path, name, parameters, message):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match=message) as err:
        _run(name, tmp_path / "out.ipynb", **parameters)
    # it stopped in the cell that resolves the configuration, before any compute cell
    assert "config.resolve(" in err.value.source and err.value.ename == "ValueError"


def test_section1_reruns_with_other_parameters(tmp_path):
    import nbformat
    _run(SECTION1, tmp_path / "out.ipynb", targets=["digits"], seeds=[3], n_values=[10, 20],
         unfrozen_blocks=[2])
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                   for c in nb.cells for o in c.get("outputs", []))
    assert "2 unfrozen block" in text and "digits" in text


# ---------------------------------------------------------------- papermill's command line
def _papermill(*args, cwd):
    """Run the ``papermill`` command line (not the Python API), as a user types it."""
    import subprocess
    import sys
    from pathlib import Path
    exe = Path(sys.executable).with_name("papermill")
    return subprocess.run([str(exe), *map(str, args), "--no-progress-bar"], cwd=cwd,
                          capture_output=True, text=True)


def _markdown_and_text(path) -> str:
    import nbformat
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", ""))
                   + str(o.get("data", {}).get("text/html", ""))
                   for c in nb.cells for o in c.get("outputs", []))


def test_papermill_command_line_takes_json_lists(tmp_path):
    """The README's example with -p JSON lists (on the tiny preset)."""
    nb = build.ROOT / "notebooks" / f"{SECTION1}.ipynb"
    done = _papermill(nb, tmp_path / "out.ipynb", "-p", "preset", "tiny", "-p", "targets",
                      '["digits"]', "-p", "seeds", "[3]", "-p", "n_values", "[10, 20]",
                      "-p", "unfrozen_blocks", "[1]", cwd=nb.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    text = _markdown_and_text(tmp_path / "out.ipynb")
    assert "1 unfrozen block" in text and "'digits'" in text and "textures" not in text


def test_papermill_command_line_takes_yaml_and_a_parameters_file(tmp_path):
    nb = build.ROOT / "notebooks" / "00_data.ipynb"
    done = _papermill(nb, tmp_path / "y.ipynb", "-y", "{preset: tiny, targets: [digits]}",
                      cwd=nb.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "textures" not in _markdown_and_text(tmp_path / "y.ipynb")
    params = tmp_path / "params.yaml"
    params.write_text("preset: tiny\ntargets:\n  - textures\n")
    done = _papermill(nb, tmp_path / "f.ipynb", "-f", params, cwd=nb.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    text = _markdown_and_text(tmp_path / "f.ipynb")
    assert "textures" in text and "digits" not in text


def test_papermill_command_line_stops_bad_values_in_the_config_cell(tmp_path):
    import nbformat
    nb = build.ROOT / "notebooks" / f"{SECTION1}.ipynb"
    done = _papermill(nb, tmp_path / "out.ipynb", "-p", "preset", "tiny", "-p", "targets",
                      '["digits"]', "-p", "n_values", "[5000]", cwd=nb.parent)
    assert done.returncode != 0 and "n_values=5000 is not allowed" in done.stderr
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    failed = [c for c in executed.cells if c.cell_type == "code"
              and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert len(failed) == 1 and "config.resolve(" in failed[0].source
