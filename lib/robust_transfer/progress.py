"""Progress bars for long work: one switch for the whole library.

``bar(...)`` takes tqdm's arguments. It draws a widget bar only in a live notebook (Jupyter,
Binder, Colab), a plain text bar on stderr everywhere else (terminals, and notebooks executed
headless by papermill or ``jupyter-book build``, whose stderr the book removes), and nothing at
all when ``RT_PROGRESS=0`` (what ``make book`` sets, so its executed notebooks hold no bars) or
when the caller passes ``disable=True``.
"""
from __future__ import annotations

import os
import sys

__all__ = ["bar", "enabled", "is_interactive"]


def enabled() -> bool:
    """False when the environment variable ``RT_PROGRESS`` is ``0``/``off``/``false``/``no``."""
    return os.environ.get("RT_PROGRESS", "1").strip().lower() not in ("0", "off", "false", "no")


def is_interactive() -> bool:
    """True in a live Jupyter server session (Jupyter, Binder) or Colab; False when executed
    headless (papermill, nbclient, the book build), where widgets would only leave dead output."""
    return "google.colab" in sys.modules or "JPY_SESSION_NAME" in os.environ


def bar(*args, **kwargs):
    """A tqdm bar: widgets in a live notebook, text elsewhere, none when :func:`enabled` is
    False."""
    if is_interactive():
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    kwargs["disable"] = kwargs.get("disable", False) or not enabled()
    return tqdm(*args, **kwargs)
