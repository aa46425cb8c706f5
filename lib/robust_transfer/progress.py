"""Progress bars for long work: one switch for the whole library.

``bar(...)`` takes tqdm's arguments. It draws a widget bar only in a live notebook (Jupyter,
Binder, Colab), a text bar on stderr in a terminal, and elsewhere (notebooks executed headless
by papermill, whose stderr ``papermill --log-output`` shows in the terminal; logs) one whole
line at most every :data:`SPARSE_SECONDS`, not a fragment per refresh; nothing at all when
``RT_PROGRESS=0`` (what ``make book`` sets, so its executed notebooks hold no bars) or when the
caller passes ``disable=True``.
"""
from __future__ import annotations

import os
import sys

__all__ = ["bar", "enabled", "is_interactive", "SPARSE_SECONDS"]

#: seconds between progress lines where stderr is not a terminal
SPARSE_SECONDS = 30.0


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
        if not sys.stderr.isatty():
            kwargs.setdefault("mininterval", SPARSE_SECONDS)
            kwargs.setdefault("file", _Lines())
    kwargs["disable"] = kwargs.get("disable", False) or not enabled()
    return tqdm(*args, **kwargs)


class _Lines:
    """stderr for a text bar where it is not a terminal: each refresh one whole line."""

    def write(self, text: str) -> None:
        text = text.strip("\r\n")
        if text.strip():
            sys.stderr.write(text + "\n")

    def flush(self) -> None:
        sys.stderr.flush()
