"""Open the built book in real headless Chromium and report what a reader's browser sees.

The HTML is served by a local ``http.server`` on 127.0.0.1 (a random free port, never
``file://``) and loaded by Debian's ``chromium`` through ``chromedriver`` (selenium). For each
page :func:`check` returns the browser's console errors (SEVERE log entries: uncaught
exceptions, ``console.error``, resources that failed to load), the images on the page and those
the browser could not decode (``img.complete && img.naturalWidth > 0`` false), and every request
to a host other than the local server (from Chrome's performance log).

The browser runs offline: every host but 127.0.0.1 resolves to nothing, so a page that needs a
CDN (require.js, widget managers, MathJax, fonts) is reported the same way on every machine,
as external requests plus the console errors of their failed loads.

From the repository root, after ``make book`` (or any ``jupyter-book build``)::

    # every chapter page (index.html, book/*.html, notebooks/*.html); exit status 1 on problems
    .venv/bin/python -m robust_transfer.browser _build/html
    .venv/bin/python -m robust_transfer.browser _build/html --json          # machine-readable
    .venv/bin/python -m robust_transfer.browser _build/html --pages notebooks/00_data.html

    # a full-page PNG of one page, 1280 px wide (``--height`` fixes the viewport instead)
    .venv/bin/python -m robust_transfer.browser _build/html --screenshot book/intro.html intro.png

Needs ``selenium`` (requirements.txt) and ``/usr/bin/chromium`` + ``/usr/bin/chromedriver``
(``make env`` apt-installs Debian's ``chromium`` and ``chromium-driver`` when run as root); the
environment variables ``RT_CHROMIUM`` and ``RT_CHROMEDRIVER`` point elsewhere.
:func:`unavailable` says why a check cannot run.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

__all__ = ["check", "screenshot", "chapter_pages", "problems", "unavailable",
           "chromium_path", "chromedriver_path"]

LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         "--hide-scrollbars", "--mute-audio", "--lang=en-US")
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"

# resolves once every <img> has loaded or failed (lazy ones are switched to eager first) and the
# web fonts are ready; returns one {src, ok} per image
_IMAGES_JS = """
const done = arguments[arguments.length - 1];
const imgs = Array.from(document.images);
for (const i of imgs) if (i.loading === 'lazy') i.loading = 'eager';
const settled = i => i.complete ? null : new Promise(r => {
  i.addEventListener('load', r, {once: true}); i.addEventListener('error', r, {once: true}); });
Promise.all(imgs.map(settled))
  .then(() => document.fonts ? document.fonts.ready : null)
  .then(() => done(imgs.map(i => ({src: i.currentSrc || i.getAttribute('src') || '',
                                   ok: i.complete && i.naturalWidth > 0}))),
        e => done([{src: 'error waiting for images: ' + e, ok: false}]));
"""

# resolves once MathJax (where the page loads it) has typeset; returns what a reader sees: the
# first line of every code cell input that is displayed (hidden-input toggles closed), the text
# of every figure caption, the alt text of every figure image, the number of typeset formulas
# (MathJax 3 mjx-container or KaTeX elements) and the page's text
_READING_JS = """
const done = arguments[arguments.length - 1];
const ready = (window.MathJax && MathJax.startup && MathJax.startup.promise)
  ? MathJax.startup.promise : Promise.resolve();
const shown = e => (e.checkVisibility ? e.checkVisibility({visibilityProperty: true}) : true)
  && !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);
ready.then(() => done({
  code: Array.from(document.querySelectorAll('div.cell_input, div.cell .cell_input'))
    .filter(shown).map(e => (e.innerText || '').trim().split('\\n')[0]),
  captions: Array.from(document.querySelectorAll('figure figcaption'))
    .map(e => (e.innerText || '').trim()),
  figure_alts: Array.from(document.querySelectorAll('figure img')).map(i => i.getAttribute('alt') || ''),
  math: document.querySelectorAll('mjx-container, .katex').length,
  text: document.body ? document.body.innerText : ''}),
  e => done({code: [], captions: [], figure_alts: [], math: -1, text: 'MathJax failed: ' + e}));
"""


# --- the browser and the server ----------------------------------------------------------------

def chromium_path() -> str | None:
    """``$RT_CHROMIUM``, else /usr/bin/chromium, else ``chromium`` on the PATH."""
    return _find("RT_CHROMIUM", "/usr/bin/chromium", "chromium")


def chromedriver_path() -> str | None:
    """``$RT_CHROMEDRIVER``, else /usr/bin/chromedriver, else ``chromedriver`` on the PATH."""
    return _find("RT_CHROMEDRIVER", "/usr/bin/chromedriver", "chromedriver")


def _find(env: str, default: str, name: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env] if os.access(os.environ[env], os.X_OK) else None
    return default if os.access(default, os.X_OK) else shutil.which(name)


def unavailable() -> str | None:
    """None when a check can run here, else the reason it cannot (for a test's skip)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements.txt)"
    if chromium_path() is None:
        where = os.environ.get("RT_CHROMIUM") or "/usr/bin/chromium"
        return (f"no Chromium: {where} missing (`make env` as root apt-installs Debian's "
                "chromium and chromium-driver; or set RT_CHROMIUM)")
    if chromedriver_path() is None:
        where = os.environ.get("RT_CHROMEDRIVER") or "/usr/bin/chromedriver"
        return (f"no chromedriver: {where} missing (`make env` as root apt-installs "
                "Debian's chromium-driver; or set RT_CHROMEDRIVER)")
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no access log on stderr
        pass

    def send_head(self):
        # Chromium asks every origin for /favicon.ico on its own; a folder without one answers
        # 204 rather than a 404 that would show up as a console error of every page
        if (self.path.split("?")[0] == "/favicon.ico"
                and not os.path.exists(os.path.join(self.directory, "favicon.ico"))):
            self.send_response(204)
            self.end_headers()
            return None
        return super().send_head()


@contextlib.contextmanager
def serve(html_dir: Path):
    """Serve ``html_dir`` on 127.0.0.1 at a random free port; yields the base URL (ending /)."""
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900, offline: bool = True):
    """A headless Chromium (fresh profile, browser + performance logs on) driven by selenium."""
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rt-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_path()
    for flag in FLAGS + ((OFFLINE,) if offline else ()):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(chromedriver_path()), options=options)
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(30)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _load(driver, url: str, settle: float) -> None:
    """Navigate, follow a meta-refresh redirect (Jupyter Book's index.html), wait for images."""
    driver.get(url)
    refresh = driver.execute_script(
        "const m = document.querySelector('meta[http-equiv=\"refresh\" i]');"
        "return m ? m.content : null;")
    if refresh and "url=" in refresh.lower():
        target = urljoin(url, refresh[refresh.lower().index("url=") + 4:].strip(" '\""))
        deadline = time.monotonic() + 10
        while driver.current_url != target and time.monotonic() < deadline:
            time.sleep(0.05)
    deadline = time.monotonic() + 30
    while (driver.execute_script("return document.readyState") != "complete"
           and time.monotonic() < deadline):
        time.sleep(0.05)
    time.sleep(settle)  # late script errors (a failed require() fires after load)


# --- the check -----------------------------------------------------------------------------------

def chapter_pages(html_dir: Path) -> list[str]:
    """The book's chapter pages: ``index.html`` and every ``book/*.html`` and
    ``notebooks/*.html`` (the book builds only its toc's files, so these are the toc)."""
    html_dir = Path(html_dir)
    pages = ["index.html"] if (html_dir / "index.html").exists() else []
    for folder in ("book", "notebooks"):
        pages += sorted(p.relative_to(html_dir).as_posix() for p in (html_dir / folder).glob("*.html"))
    return pages


def _is_external(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL_HOSTS


def check(html_dir, pages=None, offline: bool = True, settle: float = 0.5) -> list[dict]:
    """Open each page of ``html_dir`` (default :func:`chapter_pages`) in headless Chromium and
    return per page a dict: ``page``, ``url``, ``final_url`` (after a redirect), ``status`` (HTTP
    status of the page), ``console_errors`` (SEVERE browser-log messages), ``images`` (count),
    ``broken_images`` (src of each image not decoded) and ``external_requests`` (URLs of
    requests to hosts other than the local server, in order, without repeats); what a reader
    sees: ``visible_code`` (first line of each code cell input shown, toggled-away inputs left
    out), ``captions`` (text of each figure caption, e.g. "Fig. 2.1 ..."), ``figure_alts`` (alt
    text of each figure image), ``math`` (formulas typeset by MathJax or KaTeX, once MathJax has
    finished; -1 if it failed) and ``text`` (the page's visible text). Each page is
    opened as a first visit (storage and cookies cleared after the page before)."""
    html_dir = Path(html_dir)
    pages = chapter_pages(html_dir) if pages is None else list(pages)
    results = []
    with serve(html_dir) as base, chromium(offline=offline) as driver:
        for page in pages:
            driver.get_log("browser"), driver.get_log("performance")  # drop the last page's
            url = urljoin(base, page)
            _load(driver, url, settle)
            images = driver.execute_async_script(_IMAGES_JS)
            reading = driver.execute_async_script(_READING_JS)
            final_url = driver.current_url
            errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            external, status = [], None
            for entry in driver.get_log("performance"):
                message = json.loads(entry["message"])["message"]
                params = message.get("params", {})
                if message["method"] == "Network.requestWillBeSent":
                    request_url = params["request"]["url"]
                    if _is_external(request_url) and request_url not in external:
                        external.append(request_url)
                elif (message["method"] == "Network.responseReceived"
                      and params.get("type") == "Document" and status is None
                      and params["response"]["url"] in (url, final_url)):
                    status = params["response"]["status"]
            results.append(dict(
                page=page, url=url, final_url=final_url, status=status, console_errors=errors,
                images=len(images), broken_images=[i["src"] for i in images if not i["ok"]],
                external_requests=external, visible_code=reading["code"],
                captions=reading["captions"], figure_alts=reading["figure_alts"],
                math=reading["math"], text=reading["text"]))
            # every page is a reader's first visit: nothing remembered from the page before
            driver.execute_script("try { localStorage.clear(); sessionStorage.clear(); } catch (e) {}")
            driver.delete_all_cookies()
    return results


def problems(result: dict, external: bool = False) -> list[str]:
    """What is wrong with one :func:`check` result, one line each (empty: the page is fine).
    External requests count only when ``external`` is true (offline, their failed loads
    already show up as console errors)."""
    out = []
    if result["status"] is not None and result["status"] >= 400:
        out.append(f"HTTP {result['status']}")
    out += [f"console error: {m}" for m in result["console_errors"]]
    out += [f"image not decoded: {src}" for src in result["broken_images"]]
    if external:
        out += [f"external request: {u}" for u in result["external_requests"]]
    return out


# --- screenshots ---------------------------------------------------------------------------------

def screenshot(html_dir, page: str, out_png, width: int = 1280, height: int | None = None,
               max_height: int = 16000, offline: bool = True) -> Path:
    """Save a PNG of ``page``: the whole page at ``width`` CSS px (capped at ``max_height``), or
    a ``width`` x ``height`` viewport when ``height`` is given. Returns ``out_png``."""
    out_png = Path(out_png)
    with serve(Path(html_dir)) as base, chromium(width, height or 900, offline) as driver:
        _load(driver, urljoin(base, page), settle=0.2)
        driver.execute_async_script(_IMAGES_JS)
        if height is None:
            height = driver.execute_script(
                "return Math.max(document.documentElement.scrollHeight,"
                " document.body ? document.body.scrollHeight : 0)")
            height = max(1, min(int(height), max_height))
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", dict(
            width=width, height=height, deviceScaleFactor=1, mobile=False))
        driver.execute_async_script(_IMAGES_JS)  # the taller viewport may bring in more
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    out_png.parent.mkdir(parents=True, exist_ok=True)
    out_png.write_bytes(base64.b64decode(shot["data"]))
    return out_png


# --- command line --------------------------------------------------------------------------------

def _report(results: list[dict]) -> str:
    lines = []
    for r in results:
        bad = problems(r)
        shown = r["page"] if r["final_url"] == r["url"] else f"{r['page']} -> {r['final_url']}"
        lines.append(f"{'FAIL' if bad else 'ok  '}  {shown}  images {r['images'] - len(r['broken_images'])}"
                     f"/{r['images']}  console errors {len(r['console_errors'])}"
                     f"  external requests {len(r['external_requests'])}")
        lines += [f"        {p}" for p in bad]
        lines += [f"        external: {u}" for u in r["external_requests"]]
    pages, failing = len(results), sum(bool(problems(r)) for r in results)
    external = sorted({u for r in results for u in r["external_requests"]})
    lines.append(f"{pages} pages, {failing} with problems, "
                 f"{sum(r['images'] for r in results)} images "
                 f"({sum(len(r['broken_images']) for r in results)} not decoded), "
                 f"{sum(len(r['console_errors']) for r in results)} console errors, "
                 f"{len(external)} distinct external URLs")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m robust_transfer.browser",
        description="Check a built book's pages in headless Chromium, or screenshot one page.")
    parser.add_argument("html", type=Path, help="the built HTML folder, e.g. _build/html")
    parser.add_argument("--pages", nargs="+", help="pages relative to HTML (default: chapters)")
    parser.add_argument("--screenshot", nargs=2, metavar=("PAGE", "OUT_PNG"),
                        help="save a PNG of PAGE instead of checking")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, help="viewport height (default: the whole page)")
    parser.add_argument("--online", action="store_true",
                        help="let the browser reach hosts other than 127.0.0.1")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if not args.html.is_dir():
        parser.error(f"{args.html} is not a folder (build the book first: make book)")
    reason = unavailable()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    if args.screenshot:
        page, out = args.screenshot
        path = screenshot(args.html, page, out, args.width, args.height, offline=not args.online)
        print(f"wrote {path}")
        return 0
    results = check(args.html, args.pages, offline=not args.online)
    print(json.dumps(results, indent=1) if args.json else _report(results))
    return 1 if any(problems(r) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
