"""Progress bars for long work: one switch for the whole library.

``bar(...)`` takes tqdm's arguments. It draws a widget bar in a live notebook, a text bar in a
terminal, and nothing when ``RT_PROGRESS=0`` (what the book build sets, so the executed
notebooks and the HTML hold no progress bars) or when the caller passes ``disable=True``.
"""
from __future__ import annotations

import os

__all__ = ["bar", "enabled"]


def enabled() -> bool:
    """False when the environment variable ``RT_PROGRESS`` is ``0``/``off``/``false``."""
    return os.environ.get("RT_PROGRESS", "1").strip().lower() not in ("0", "off", "false", "no")


def bar(*args, **kwargs):
    """A ``tqdm`` bar (``tqdm.auto``: widgets in Jupyter, text elsewhere), disabled when
    :func:`enabled` is False."""
    from tqdm.auto import tqdm
    kwargs["disable"] = kwargs.get("disable", False) or not enabled()
    return tqdm(*args, **kwargs)
