"""The append-only results store: atomic rows, missing(), frame()."""
import json
import os

import pytest

from robust_transfer import __version__
from robust_transfer.store import Store


def _run(n, seed=0):
    return dict(source="mini/fmnist/natural/s0", target="digits", n=n, unfrozen_blocks=0,
                seed=seed, epochs=3, lr=1e-4)


def test_add_missing_frame(tmp_path):
    store = Store(tmp_path / "s")
    grid = [_run(n, s) for n in (10, 20) for s in (0, 1)]
    assert store.missing(grid) == grid
    store.add(grid[0], {"test_acc": 50.0, "val_curve": [1.0, 2.0]}, 1.5)
    store.add(grid[3], {"test_acc": 60.0, "val_curve": [3.0]}, 2.5)
    assert store.missing(grid) == [grid[1], grid[2]]
    assert grid[0] in store and grid[1] not in store
    df = store.frame()
    assert len(df) == 2 and set(df["test_acc"]) == {50.0, 60.0}
    assert set(df["version"]) == {__version__}
    assert {"source", "target", "n", "seed", "epochs", "lr", "seconds", "key", "val_curve"} <= set(df)
    assert len(store.frame(grid[:1])) == 1


def test_key_ignores_field_order_but_not_values():
    a = _run(10)
    assert Store.key(a) == Store.key(dict(reversed(list(a.items()))))
    assert Store.key(a) != Store.key({**a, "lr": 1e-3})


def test_rows_are_never_rewritten(tmp_path):
    store = Store(tmp_path / "s")
    store.add(_run(10), {"test_acc": 1.0}, 1.0)
    store.add(_run(10), {"test_acc": 2.0}, 1.0)
    assert store.frame()["test_acc"].tolist() == [1.0]


def test_kill_during_write_leaves_no_row(tmp_path, monkeypatch):
    store = Store(tmp_path / "s")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed between the temporary write and the rename")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        store.add(_run(10), {"test_acc": 1.0}, 1.0)
    monkeypatch.undo()
    assert len(store) == 0 and store.missing([_run(10)]) == [_run(10)]
    assert store.frame().empty
    assert not list(store.path.glob("*.json"))  # no half-written row under a reader's name


def test_named_store_lives_in_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path))
    store = Store("mini")
    assert store.path == tmp_path / "results" / "mini"
    path = store.add(_run(10), {"test_acc": 1.0}, 0.1)
    row = json.loads(path.read_text())
    assert row["run"] == _run(10) and row["metrics"] == {"test_acc": 1.0}


def test_failure_records_live_beside_the_rows(tmp_path):
    store = Store(tmp_path / "s")
    store.add(_run(10), {"test_acc": 1.0}, 1.0)
    assert store.failures() == [] and not store.clear_failure("0123456789abcdef")
    path = store.record_failure("0123456789abcdef", {"error": "ValueError", "runs": ["k1"]})
    assert path == tmp_path / "s" / "failed" / "0123456789abcdef.json"
    store.record_failure("0123456789abcdef", {"error": "OSError", "runs": ["k1"]})  # replaced
    assert store.failures() == [{"key": "0123456789abcdef", "error": "OSError", "runs": ["k1"]}]
    # never a row: keys(), rows(), frame() and missing() do not see failure records
    assert len(store) == 1 and len(store.rows()) == 1 and len(store.frame()) == 1
    assert store.clear_failure("0123456789abcdef") and store.failures() == []
