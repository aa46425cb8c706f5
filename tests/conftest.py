"""Shared test set-up: one thread per torch process, a private cache for the whole session, and
the tiny-preset book (executed once, built on first use) shared by the book and browser tests."""
import functools
import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Every test (and every notebook kernel a test starts) writes caches under a temporary
    RT_CACHE_DIR, never the user's; session-scoped so module fixtures see it too."""
    old = os.environ.get("RT_CACHE_DIR")
    os.environ["RT_CACHE_DIR"] = str(tmp_path_factory.mktemp("rt_cache"))
    yield
    if old is None:
        os.environ.pop("RT_CACHE_DIR", None)
    else:
        os.environ["RT_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _no_replication_record(monkeypatch, tmp_path_factory):
    """Tests see no recorded replication check (``claims.REPLICATION_FILE``) unless they write
    one: the committed record of the mini builds must not change what a rule test expects."""
    from robust_transfer import claims
    monkeypatch.setattr(claims, "REPLICATION_FILE",
                        tmp_path_factory.mktemp("replication") / "replication.json")


class TinyBook:
    """The book staged under ``out`` with every notebook executed on the tiny preset
    (``src``, ``times``); ``html`` runs the strict build the first time it is read."""

    def __init__(self, out):
        from robust_transfer import build
        self.out = out
        self.src = build.stage(out)
        with build.PeakMemory() as self.memory:
            self.times = build.execute(self.src, "tiny", memory=self.memory)

    @functools.cached_property
    def html(self):
        from robust_transfer import build
        return build.build(self.src, self.out)


@pytest.fixture(scope="session")
def tiny_book(_private_cache, tmp_path_factory):
    """One tiny-preset book per test session (executing its notebooks takes minutes)."""
    return TinyBook(tmp_path_factory.mktemp("book"))
