"""The notebooks' shared Colab / Binder set-up."""
import sys

import pytest

from robust_transfer import colab, transfer


def test_setup_elsewhere_keeps_the_parameters(monkeypatch):
    monkeypatch.delenv("BINDER_LAUNCH_HOST", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delenv("RT_FEATURE_CACHE_MB", raising=False)
    monkeypatch.setattr(colab.os, "cpu_count", lambda: 8)
    assert colab.setup() == (None, None, 2)
    assert transfer.feature_cache_bytes() == transfer.FEATURE_CACHE_MB << 20
    assert colab.setup(False, "cpu", "3") == (False, "cpu", 3)
    monkeypatch.setattr(colab.os, "cpu_count", lambda: 1)
    assert colab.setup()[2] == 1


def test_setup_on_binder_and_colab(monkeypatch):
    monkeypatch.setattr(colab.os, "cpu_count", lambda: 72)   # Binder reports the host's cores
    monkeypatch.setenv("BINDER_LAUNCH_HOST", "https://mybinder.org/")
    monkeypatch.setenv("RT_FEATURE_CACHE_MB", "1")   # recorded, so that setup's value is undone
    monkeypatch.delenv("RT_FEATURE_CACHE_MB")
    assert colab.setup() == (True, None, 1)
    assert transfer.feature_cache_bytes() == colab.BINDER_FEATURE_CACHE_MB << 20
    monkeypatch.setenv("RT_FEATURE_CACHE_MB", "64")     # a user's own bound is kept
    colab.setup()
    assert transfer.feature_cache_bytes() == 64 << 20
    monkeypatch.delenv("BINDER_LAUNCH_HOST")
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert colab.setup() == (True, "auto", 2)
    assert colab.setup(False, "cpu") == (False, "cpu", 2)


@pytest.mark.parametrize("workers", [0, "two", 1.5, True])
def test_setup_refuses_bad_workers(workers):
    with pytest.raises(ValueError, match=f"workers={workers!r} is not allowed"):
        colab.setup(workers=workers)
