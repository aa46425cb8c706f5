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
