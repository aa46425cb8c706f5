"""Sweep grid expansion, resume without recomputation, killed runs leave no row."""
import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest

from robust_transfer import sweep
from robust_transfer.config import Config
from robust_transfer.store import Store

SOURCES = ("tiny/fmnist/natural/s0", "tiny/fmnist/l2/1.0/s0")


def _cfg(**kw):
    base = dict(sources=SOURCES, targets=("digits", "textures"), n_values=(10, 20, 40),
                seeds=(0, 1), unfrozen_blocks=(0, 1), finetune_sources=(), finetune_max_n=0)
    return dataclasses.replace(Config(), **{**base, **kw})


class Counter:
    """A fake transfer.run that counts calls and can die at call number ``die_at``."""

    def __init__(self, die_at=None):
        self.calls, self.die_at = [], die_at

    def __call__(self, source, target, n, k, seed, cfg, *, model=None):
        self.calls.append((source, target, n, k, seed))
        if len(self.calls) == self.die_at:
            raise KeyboardInterrupt("killed mid-run")
        assert model == f"model of {source}"
        return {"test_acc": float(n + seed), "val_curve": [0.0]}


def load(source, **kw):
    return f"model of {source}", {}


def test_grid_crosses_everything_and_limits_finetuning():
    cfg = _cfg()
    g = sweep.grid(cfg)
    assert len(g) == 2 * 2 * 2 * 3 * 2
    assert len({Store.key(r) for r in g}) == len(g)
    assert all(r["epochs"] == cfg.epochs and "recipe_version" in r for r in g)
    limited = sweep.grid(_cfg(finetune_sources=SOURCES[:1], finetune_max_n=20))
    k1 = [r for r in limited if r["unfrozen_blocks"] == 1]
    assert {r["source"] for r in k1} == {SOURCES[0]} and max(r["n"] for r in k1) == 20
    assert len([r for r in limited if r["unfrozen_blocks"] == 0]) == 24


def test_killed_sweep_leaves_no_partial_row_and_resumes(tmp_path):
    cfg, store = _cfg(), Store(tmp_path / "s")
    total = len(sweep.grid(cfg))
    dying = Counter(die_at=7)
    with pytest.raises(KeyboardInterrupt):
        sweep.run(cfg, store, progress=False, run_fn=dying, load_fn=load)
    assert len(store) == 6  # the 7th run started but never finished: no row
    resumed = Counter()
    assert sweep.run(cfg, store, progress=False, run_fn=resumed, load_fn=load) == total - 6
    assert len(resumed.calls) == total - 6
    assert not set(dying.calls[:6]) & set(resumed.calls)  # finished runs are not recomputed
    assert len(store) == total
    again = Counter()
    assert sweep.run(cfg, store, progress=False, run_fn=again, load_fn=load) == 0
    assert again.calls == []
    df = store.frame(sweep.grid(cfg))
    assert (df["test_acc"] == df["n"] + df["seed"]).all()


def test_changed_recipe_is_a_new_run(tmp_path):
    store = Store(tmp_path / "s")
    sweep.run(_cfg(), store, progress=False, run_fn=Counter(), load_fn=load)
    c = Counter()
    sweep.run(_cfg(epochs=5), store, progress=False, run_fn=c, load_fn=load)
    assert len(c.calls) == len(sweep.grid(_cfg()))


def test_client_executor(tmp_path):
    cfg, store = _cfg(), Store(tmp_path / "s")
    with ThreadPoolExecutor(2) as ex:
        n = sweep.run(cfg, store, progress=False, client=ex, run_fn=Counter(), load_fn=load)
    assert n == len(store) == len(sweep.grid(cfg))


def test_changed_target_data_gets_new_rows(tmp_path):
    from PIL import Image
    from robust_transfer import data, transfer

    def write(value):
        for split in ("train", "test"):
            for c in ("a", "b"):
                (tmp_path / split / c).mkdir(parents=True, exist_ok=True)
                Image.new("L", (8, 8), value if c == "a" else 255 - value).save(
                    tmp_path / split / c / "0.png")
        data._load_cached.cache_clear()
        transfer.target_arrays.cache_clear()

    target = f"folder:{tmp_path}"
    write(10)
    before = {Store.key(r) for r in sweep.grid(_cfg(targets=(target,), n_values=(2,)))}
    assert len(before) == 2 * 2 * 2   # sources x unfrozen_blocks x seeds
    write(10)
    assert {Store.key(r) for r in sweep.grid(_cfg(targets=(target,), n_values=(2,)))} == before
    write(60)                           # same name, other pixels: other keys
    after = {Store.key(r) for r in sweep.grid(_cfg(targets=(target,), n_values=(2,)))}
    assert not before & after


def test_progress_bar_follows_the_progress_switch(tmp_path, monkeypatch, capsys):
    """The bar comes from robust_transfer.progress: text on stderr, none when RT_PROGRESS=0."""
    monkeypatch.setenv("RT_PROGRESS", "0")
    sweep.run(_cfg(), Store(tmp_path / "a"), run_fn=Counter(), load_fn=load)
    assert "transfer runs" not in capsys.readouterr().err
    monkeypatch.setenv("RT_PROGRESS", "1")
    sweep.run(_cfg(), Store(tmp_path / "b"), run_fn=Counter(), load_fn=load)
    assert "transfer runs" in capsys.readouterr().err


def test_engine_imports_no_plotting_or_widgets():
    import subprocess
    import sys
    code = ("import sys; import robust_transfer.sweep, robust_transfer.train, "
            "robust_transfer.stats, robust_transfer.transfer; "
            "print([m for m in ('matplotlib', 'ipywidgets', 'IPython') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
