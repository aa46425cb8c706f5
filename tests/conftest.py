"""Shared test set-up: one thread per torch process, and a private cache per test session."""
import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test writes caches under a temporary RT_CACHE_DIR, never the user's."""
    if "RT_CACHE_DIR_TESTS" not in os.environ:
        os.environ["RT_CACHE_DIR_TESTS"] = str(tmp_path_factory.mktemp("rt_cache"))
    monkeypatch.setenv("RT_CACHE_DIR", os.environ["RT_CACHE_DIR_TESTS"])
