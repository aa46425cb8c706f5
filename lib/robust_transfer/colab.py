"""The notebooks' one set-up for Colab and Binder (a no-op anywhere else but for ``workers``).

Each notebook's set-up cell pip-installs this package on Colab (at the commit the book build
stamps into it), then calls :func:`setup` with its parameters. Colab has a GPU when the runtime
has one and about 12 GB of memory; Binder gives about 2 GB and no GPU, where two worker
processes beside the kernel do not fit (notebook 02 peaked at 5.3 GiB with two in cold build A3):
there the runs go in the kernel (``workers=1``: the serial executor; notebook 02 then peaked at
1.5 GiB) and each process keeps at most :data:`BINDER_FEATURE_CACHE_MB` MiB of cached features
in memory (``transfer.feature_cache_bytes``).
Neither has Debian's Fashion-MNIST files, which the mini sources train on: downloads are allowed
there (torchvision's checksummed download, once).
"""
from __future__ import annotations

import os
import sys

__all__ = ["on_colab", "on_binder", "setup", "BINDER_FEATURE_CACHE_MB"]

BINDER_FEATURE_CACHE_MB = 256


def on_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def on_binder() -> bool:
    """True on a Binder (mybinder.org) server."""
    return "BINDER_LAUNCH_HOST" in os.environ


def setup(allow_download: bool | None = None, device: str | None = None,
          workers: int | None = None) -> tuple[bool | None, str | None, int]:
    """``(allow_download, device, workers)`` for this machine, a notebook's parameters of those
    names in: a value given is kept; None becomes ``allow_download=True`` on Colab and Binder,
    ``device="auto"`` on Colab (its GPU when the runtime has one; None elsewhere = the preset's),
    and ``workers`` (worker processes of the sweep, source training and studies) 1 on Binder or
    a one-core machine, else 2. On Binder it also bounds the features each process keeps in
    memory to :data:`BINDER_FEATURE_CACHE_MB` MiB (``$RT_FEATURE_CACHE_MB``, unless set)."""
    launched = on_colab() or on_binder()
    if allow_download is None and launched:
        allow_download = True
    if device is None and on_colab():
        device = "auto"
    if on_binder():
        os.environ.setdefault("RT_FEATURE_CACHE_MB", str(BINDER_FEATURE_CACHE_MB))
    if workers is None:
        workers = 1 if on_binder() else min(2, os.cpu_count() or 1)
    elif isinstance(workers, str) and workers.strip().isdigit():  # papermill's -r text
        workers = int(workers)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers={workers!r} is not allowed; give an integer >= 1, or None "
                         f"(2; 1 on Binder or one core)")
    return allow_download, device, workers
