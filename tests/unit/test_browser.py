"""The browser check itself, on a tiny static site: a clean page passes, and a page with a broken
image, a console error or a CDN script is seen to fail (Debian Chromium; skipped without it)."""
import struct
import zlib

import pytest

from robust_transfer import browser

REASON = browser.unavailable()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=f"browser check cannot run: {REASON}"),
              pytest.mark.slow]  # a Chromium start per test: `make test` runs them, test-fast not


def _png(width=3, height=2) -> bytes:
    """A valid RGB PNG, without any imaging library."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\x20\x80\xc0" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _page(body: str) -> str:
    return f"<!DOCTYPE html><html><head><title>t</title></head><body>{body}</body></html>"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    (root / "sub").mkdir()
    (root / "good.png").write_bytes(_png())
    (root / "corrupt.png").write_bytes(b"this is not a png")
    (root / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=sub/good.html" />')
    (root / "sub" / "good.html").write_text(_page('<p>fine</p><img src="../good.png" alt="ok">'))
    (root / "sub" / "bad.html").write_text(_page(
        '<img src="../good.png"><img src="../corrupt.png"><img src="../missing.png">'
        '<script src="https://cdn.example.org/require.min.js"></script>'
        '<script>console.error("boom from the test page");</script>'))
    return root


def test_clean_page_and_redirect(site):
    results = browser.check(site, ["index.html", "sub/good.html"])
    assert [r["page"] for r in results] == ["index.html", "sub/good.html"]
    for r in results:
        assert r["final_url"].endswith("/sub/good.html") and r["url"].startswith("http://127.0.0.1:")
        assert r["status"] == 200
        assert r["images"] == 1 and r["broken_images"] == []
        assert r["console_errors"] == [] and r["external_requests"] == []
        assert browser.problems(r) == []


def test_broken_image_console_error_and_cdn_are_reported(site):
    [r] = browser.check(site, ["sub/bad.html"])
    assert r["images"] == 3
    assert sorted(src.rsplit("/", 1)[-1] for src in r["broken_images"]) == ["corrupt.png", "missing.png"]
    errors = "\n".join(r["console_errors"])
    assert "boom from the test page" in errors
    assert "missing.png" in errors                      # the 404
    assert "cdn.example.org" in errors                  # offline: the CDN script fails to load
    assert r["external_requests"] == ["https://cdn.example.org/require.min.js"]
    assert len(browser.problems(r)) == len(r["console_errors"]) + 2
    assert "external request: https://cdn.example.org/require.min.js" in browser.problems(r, external=True)


def test_missing_page_is_a_problem(site):
    [r] = browser.check(site, ["sub/nope.html"])
    assert r["status"] == 404 and browser.problems(r)


def test_screenshot_is_a_png_of_the_page(site, tmp_path):
    out = browser.screenshot(site, "sub/good.html", tmp_path / "shot.png", width=640, height=300)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (640, 300)
    full = browser.screenshot(site, "sub/good.html", tmp_path / "full.png", width=500)
    width, height = struct.unpack(">II", full.read_bytes()[16:24])
    assert width == 500 and height > 0


def test_cli_exit_status(site, capsys):
    assert browser.main([str(site), "--pages", "sub/good.html"]) == 0
    assert browser.main([str(site), "--pages", "sub/good.html", "sub/bad.html"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  sub/bad.html" in out and "image not decoded" in out


