"""A local Sphinx extension for the book's HTML: pages that load without console errors.

* Jupyter Book 1.0.4 with Sphinx 7.4 writes the inline config scripts of sphinx-thebe and
  sphinx-togglebutton twice per page (once with filename None, once with ""); the second
  ``const THEBE_JS_URL`` is a SyntaxError in every browser console. Each script is written once.
* The pydata theme's templates read ``default_mode`` (light / dark / auto); left empty, the theme
  logs "Got invalid theme mode" on a first visit. It is "auto" unless the book sets it.
* ``static/book.css``: glued numbers in normal weight (myst-nb pastes them bold).
"""
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


def setup(app):
    app.connect("config-inited", _add_static)
    app.add_css_file("book.css")
    app.connect("html-page-context", _clean_context, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
