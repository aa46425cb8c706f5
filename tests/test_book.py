"""Every notebook runs on the tiny preset with papermill, and the book builds strictly."""
import os

import pytest

from robust_transfer import book


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    src = book.stage(out)
    times = book.execute(src, "tiny")
    return out, src, times


def test_every_notebook_executes_on_tiny(built):
    _, src, times = built
    names = sorted(p.name for p in book.notebooks())
    assert names and sorted(times) == names
    for name in names:
        assert (src / "notebooks" / name).exists()


def test_book_builds_strictly_with_figures(built):
    out, src, _ = built
    html = book.build(src, out)
    assert (html / "index.html").exists()
    for nb in book.notebooks():
        page = html / "notebooks" / f"{nb.stem}.html"
        assert page.exists(), page
        text = page.read_text()
        assert "Traceback" not in text
    data_page = (html / "notebooks" / "00_data.html").read_text()
    assert data_page.count("<img") >= 2


def test_bad_parameters_stop_before_compute(tmp_path):
    import papermill as pm
    nb = book.notebooks()[0]
    with pytest.raises(pm.PapermillExecutionError, match="targets"):
        pm.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), kernel_name="python3",
                            parameters={"preset": "tiny", "targets": ["cifar11"]}, progress_bar=False)
