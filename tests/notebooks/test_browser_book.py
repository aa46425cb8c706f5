"""The built tiny book in real headless Chromium: every chapter page of the toc loads without
console errors or requests to other hosts, and every image decodes."""
import pytest

from robust_transfer import browser

REASON = browser.unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"browser check cannot run: {REASON}")


@pytest.fixture(scope="module")
def tiny_book_results(tiny_book):
    """browser.check on every chapter page of the tiny book (built once per session)."""
    results = browser.check(tiny_book.html)
    print("\n" + browser._report(results))     # the findings, shown with -s
    return results


def _listing(results, key):
    return "\n".join(f"{r['page']}:\n  " + "\n  ".join(r[key]) for r in results if r[key])


def test_tiny_book_checks_every_chapter_of_the_toc(tiny_book, tiny_book_results):
    import yaml
    toc = yaml.safe_load((tiny_book.src / "_toc.yml").read_text())
    listed = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert sorted(r["page"] for r in tiny_book_results) == sorted(
        ["index.html"] + [f"{f}.html" for f in listed])
    for r in tiny_book_results:
        assert r["status"] == 200, r["page"]
        if r["page"].startswith("notebooks/"):
            assert r["images"] > 0, f"{r['page']}: no figure"


def test_tiny_book_every_image_decodes(tiny_book_results):
    bad = _listing(tiny_book_results, "broken_images")
    assert not bad, bad


def test_tiny_book_pages_have_no_console_errors(tiny_book_results):
    bad = _listing(tiny_book_results, "console_errors")
    assert not bad, bad


def test_tiny_book_needs_no_other_host(tiny_book_results):
    """The book reads offline: no CDN scripts, fonts or images (each also fails as a console
    error above, since the check's browser reaches only 127.0.0.1)."""
    bad = _listing(tiny_book_results, "external_requests")
    assert not bad, bad


# ------------------------------------------------------- a book that reads like a paper (issue 23)
PLUMBING = ("preset =", "# Colab / Binder set-up", "%matplotlib inline", "# Parameters",
            "from robust_transfer")


def _page(results, name):
    return next(r for r in results if r["page"] == name)


def test_tiny_book_shows_no_plumbing_cells(tiny_book_results):
    """Parameters, papermill's injected parameters, the Colab set-up and the imports are removed;
    analysis code sits behind a closed toggle, so a reader sees no code until asking for it."""
    bad = {r["page"]: [c for c in r["visible_code"] if c.startswith(PLUMBING)]
           for r in tiny_book_results}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, bad
    for r in tiny_book_results:
        if r["page"].startswith("notebooks/"):
            assert not r["visible_code"], (r["page"], r["visible_code"])


def test_tiny_book_figures_are_numbered_with_captions_and_alt_text(tiny_book_results):
    import re
    for r in tiny_book_results:
        if not r["page"].startswith("notebooks/"):
            continue
        assert r["captions"], f"{r['page']}: no figure captions"
        assert all(re.match(r"Fig\. (\d\.)?\d+ \S", c) for c in r["captions"]), r["captions"]
        assert all(a and not re.fullmatch(r"[0-9a-f]{32,}(\.png)?", a) for a in r["figure_alts"]), \
            (r["page"], r["figure_alts"])
    # chapter numbers in titles and figure numbers agree: the transfer chapter is 2
    ch2 = _page(tiny_book_results, "notebooks/02_transfer_vs_sample_size.html")
    assert ch2["captions"][0].startswith("Fig. 2.1 ")
    assert len(ch2["captions"]) == 7 and ch2["captions"][-1].startswith("Fig. 2.7 ")
    assert "2. Transfer gain vs sample size" in ch2["text"]
    ch4 = _page(tiny_book_results, "notebooks/04_influence_functions.html")
    assert ch4["captions"][0].startswith("Fig. 4.1 ")


def test_tiny_book_renders_the_formulas(tiny_book_results):
    """MathJax (served from the book itself, see test_tiny_book_needs_no_other_host) typesets
    the method page's formulas and the chapters' ones."""
    for name in ("book/method.html", "notebooks/02_transfer_vs_sample_size.html",
                 "notebooks/03_shape_bias.html", "notebooks/04_influence_functions.html"):
        r = _page(tiny_book_results, name)
        assert r["math"] > 0, f"{name}: no typeset maths"
    assert _page(tiny_book_results, "book/method.html")["math"] >= 10


def test_tiny_book_prints_no_machine_path(tiny_book_results):
    import os
    from pathlib import Path
    paths = [os.environ["RT_CACHE_DIR"], str(Path.home() / ".cache")]
    bad = [(r["page"], p) for r in tiny_book_results for p in paths if p in r["text"]]
    assert not bad, bad
