"""Everything under tests/notebooks is slow (it executes notebooks or builds the book): marked
``slow`` so that ``make test-fast`` (``pytest -m "not slow"``) skips it."""
import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/notebooks/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.slow)
