"""Shared test set-up: one thread per torch process, and a private cache for the whole session."""
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
