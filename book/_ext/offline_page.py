"""A local Sphinx extension for the book's HTML: pages that load without console errors.

* Jupyter Book 1.0.4 with Sphinx 7.4 writes the inline config scripts of sphinx-thebe and
  sphinx-togglebutton twice per page (once with filename None, once with ""); the second
  ``const THEBE_JS_URL`` is a SyntaxError in every browser console. Each script is written once.
* The pydata theme's templates read ``default_mode`` (light / dark / auto); left empty, the theme
  logs "Got invalid theme mode" on a first visit. It is "auto" unless the book sets it.
* ``static/book.css``: glued numbers in normal weight (myst-nb pastes them bold).
* MathJax from this machine, not a CDN: the pages that hold maths load ``_static/mathjax/``,
  copied from the ``sphinx-mathjax-offline`` package (MathJax 3.2.2, requirements.txt) where it
  is installed; without it Sphinx's default (a CDN) stays.
"""
import importlib.metadata
import shutil
from pathlib import Path

STATIC = Path(__file__).parent / "static"


def _clean_context(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for script in context.get("script_files", []):
        key = (getattr(script, "filename", script) or None,
               tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def _add_static(app, config):
    config.html_static_path = [*config.html_static_path, str(STATIC)]
    if _mathjax_dir() is not None:
        config.mathjax_path = "mathjax/tex-chtml.js"


#: the parts of MathJax that ``tex-chtml.js`` loads (the other combined bundles are left out)
MATHJAX_PARTS = ("tex-chtml.js", "a11y", "adaptors", "input", "output/chtml", "sre", "ui")


def _mathjax_dir():
    """The MathJax folder of the installed ``sphinx-mathjax-offline`` package, or None."""
    try:
        dist = importlib.metadata.distribution("sphinx-mathjax-offline")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file("sphinx-mathjax-offline/static/mathjax"))
    return path if (path / "tex-chtml.js").is_file() else None


def _copy_mathjax(app, exc):
    src = _mathjax_dir()
    if exc is not None or src is None or app.builder.format != "html":
        return
    dest = Path(app.outdir) / "_static" / "mathjax"
    for part in MATHJAX_PARTS:
        if (src / part).is_dir():
            shutil.copytree(src / part, dest / part, dirs_exist_ok=True)
        else:
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / part, dest / part)


def setup(app):
    app.connect("config-inited", _add_static)
    app.add_css_file("book.css")
    app.connect("html-page-context", _clean_context, priority=900)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
