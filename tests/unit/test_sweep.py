"""Sweep grid expansion, tasks, resume without recomputation, killed runs leave no row,
retries and failure records, status (in-process; other executors: test_executors.py)."""
import dataclasses
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

from robust_transfer import sweep
from robust_transfer.config import Config
from robust_transfer.store import Store

SOURCES = ("tiny/fmnist/natural/s0", "tiny/fmnist/l2/1.0/s0")


def _cfg(**kw):
    base = dict(sources=SOURCES, targets=("digits", "textures"), n_values=(10, 20, 40),
                seeds=(0, 1), unfrozen_blocks=(0, 1), finetune_sources=(), finetune_max_n=0,
                compare_recipe="", compare_targets=(), block_counts=(), head_to_pool=False)
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


def test_grid_adds_the_other_recipe_block_counts_seed_schedule_and_full_set():
    from robust_transfer import data, transfer
    base = sweep.grid(_cfg())
    assert {r["recipe"] for r in base} == {"ours"}
    g = sweep.grid(_cfg(compare_recipe="authors", compare_n_values=(10, 40), main_blocks=1,
                        finetune_sources=SOURCES[:1]))
    other = [r for r in g if r["recipe"] == "authors"]
    assert len(other) == 1 * 2 * 2 * 2   # fine-tuned sources x targets x n x seeds
    assert {r["unfrozen_blocks"] for r in other} == {1} and {r["source"] for r in other} == {SOURCES[0]}
    assert all("lr" not in r and "frozen_bn" not in r for r in other)  # unused by the recipe
    assert all(r["recipe_version"] == transfer.RECIPE_VERSION for r in g)
    # the recipe is part of the key: same cell, other recipe -> other row
    assert len({Store.key(r) for r in g}) == len(g)
    blocks = sweep.grid(_cfg(block_counts=(0, 1, 3), block_targets=("digits",),
                             block_n_values=(10,)))
    k3 = [r for r in blocks if r["unfrozen_blocks"] == 3]
    assert len(k3) == 2 * 1 * 1 * 2 and {r["target"] for r in k3} == {"digits"}
    assert len(blocks) == len(base) + len(k3)   # k = 0, 1 at n = 10 already in the main grid
    sched = sweep.grid(_cfg(few_seeds=1, few_seeds_n=20, full_set=True, unfrozen_blocks=(0,)))
    at40 = [r for r in sched if r["n"] == 40]
    assert {r["seed"] for r in at40} == {0}
    full = [r for r in sched if r["n"] > 40]
    pools = {t: data.info(t).train_size - Config().val_size for t in ("digits", "textures")}
    assert sorted((r["target"], r["n"]) for r in full) == sorted(
        (t, pools[t]) for t in pools for _ in SOURCES)
    assert {r["seed"] for r in full} == {0}


def test_grid_runs_the_other_recipe_on_the_compared_targets_only():
    g = sweep.grid(_cfg(compare_recipe="authors", compare_n_values=(10, 40), main_blocks=1,
                        compare_targets=("digits", "mnist5k")))
    other = [r for r in g if r["recipe"] == "authors"]
    assert {r["target"] for r in other} == {"digits"}       # mnist5k is not one of targets
    assert len(other) == 2 * 1 * 2 * 2 and {r["n"] for r in other} == {10, 40}
    assert all(r["authors_min_steps"] == Config().authors_min_steps for r in other)
    assert _cfg(compare_targets=("digits",)).compared_targets() == ("digits",)
    assert _cfg().compared_targets() == ("digits", "textures")


def test_head_only_runs_to_each_targets_whole_pool():
    from robust_transfer import data
    cfg = _cfg(n_values=(10, 320), head_to_pool=True)
    pools = {t: data.info(t).train_size - cfg.val_size for t in cfg.targets}
    assert pools == {"digits": 1297, "textures": 1900}
    assert sweep.pool_n_values(cfg, "digits") == [640, 1280, 1297]
    assert sweep.pool_n_values(cfg, "textures") == [640, 1280, 1900]
    assert sweep.pool_n_values(_cfg(n_values=(10, 1280), head_to_pool=True), "digits") == [1297]
    assert sweep.pool_n_values(_cfg(n_values=(10, 1297), head_to_pool=True), "digits") == []
    assert sweep.pool_n_values(_cfg(n_values=(10, 320)), "digits") == []    # off
    g = sweep.grid(cfg)
    extra = [r for r in g if r["n"] > 320]
    assert {r["unfrozen_blocks"] for r in extra} == {0} and {r["recipe"] for r in extra} == {"ours"}
    by_n = {(r["target"], r["n"]): set() for r in extra}
    for r in extra:
        by_n[(r["target"], r["n"])].add((r["source"], r["seed"]))
    # every source and subset seed where the subsets differ; the first seed at the pool
    assert by_n[("digits", 640)] == {(s, j) for s in SOURCES for j in (0, 1)}
    assert by_n[("digits", 1297)] == by_n[("textures", 1900)] == {(s, 0) for s in SOURCES}
    assert len(g) == len(sweep.grid(_cfg(n_values=(10, 320)))) + len(extra)
    # with full_set the pool runs are not repeated
    both = sweep.grid(_cfg(n_values=(10, 320), head_to_pool=True, full_set=True))
    assert len({Store.key(r) for r in both}) == len(both)


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


def test_tasks_are_cells_in_increasing_n_heaviest_first(tmp_path):
    cfg, store = _cfg(), Store(tmp_path / "s")
    tasks = sweep.tasks(cfg, store)
    # one task per (source, unfrozen_blocks, target, seed, recipe); the old grouping made 4
    assert len(tasks) == 2 * 2 * 2 * 2
    assert len({(t.source, t.unfrozen_blocks, t.target, t.seed) for t in tasks}) == len(tasks)
    assert all(t.n_values == [10, 20, 40] for t in tasks)
    assert sorted(Store.key(r) for t in tasks for r in t.runs) == \
        sorted(Store.key(r) for r in sweep.grid(cfg))
    assert [t.unfrozen_blocks for t in tasks] == [1] * 8 + [0] * 8  # heaviest first
    assert tasks[0].source != tasks[1].source   # parallel workers start on different sources
    with pytest.raises(dataclasses.FrozenInstanceError):
        tasks[0].seed = 5
    # finished runs leave the task; its key (the cell) stays
    first = tasks[0]
    store.add(first.runs[0], {"test_acc": 1.0}, 0.1)
    again = {t.key: t for t in sweep.tasks(cfg, store)}
    assert again[first.key].n_values == [20, 40] and len(again) == len(tasks)
    assert len({t.key for t in tasks}) == len(tasks)
    assert {t.key for t in sweep.tasks(_cfg(epochs=5), store)}.isdisjoint(again)


def test_source_is_loaded_once_per_process(tmp_path):
    loads = []

    def counting_load(source, **kw):
        loads.append(source)
        return f"model of {source}", {}

    sweep.run(_cfg(), Store(tmp_path / "s"), progress=False, run_fn=Counter(), load_fn=counting_load)
    assert sorted(loads) == sorted(SOURCES)  # 16 tasks, 2 sources: 2 loads


class Failing(Counter):
    """Raises for the runs of ``cell`` = (source, k, target, seed), the first ``times`` calls."""

    def __init__(self, cell, times=10**9):
        super().__init__()
        self.cell, self.left = cell, times

    def __call__(self, source, target, n, k, seed, cfg, *, model=None):
        if (source, k, target, seed) == self.cell and self.left > 0:
            self.left -= 1
            self.calls.append((source, target, n, k, seed))
            raise ValueError(f"bad cell n={n}")
        return super().__call__(source, target, n, k, seed, cfg, model=model)


CELL = (SOURCES[1], 0, "textures", 1)


def test_failing_task_is_retried_then_recorded_and_cleared(tmp_path):
    cfg, store = _cfg(), Store(tmp_path / "s")
    total = len(sweep.grid(cfg))
    fail = Failing(CELL)
    with pytest.warns(RuntimeWarning, match=r"1 of 16 sweep tasks failed after 3 attempt\(s\) "
                      r"\(3 runs have no row\).*ValueError: bad cell n=10"):
        ran = sweep.run(cfg, store, progress=False, run_fn=fail, load_fn=load, retries=2)
    assert ran == len(store) == total - 3              # the other tasks all finished
    bad = [c for c in fail.calls if (c[0], c[3], c[1], c[4]) == CELL]
    assert bad == [(SOURCES[1], "textures", 10, 0, 1)] * 3  # 1 attempt + 2 retries
    (rec,) = store.failures()
    assert ran.failed == [rec]
    assert (rec["source"], rec["unfrozen_blocks"], rec["target"], rec["seed"]) == CELL
    assert rec["n"] == [10, 20, 40] and rec["attempts"] == 3 and rec["error"] == "ValueError"
    assert rec["message"] == "bad cell n=10" and "raise ValueError" in rec["traceback"]
    assert rec["executor"] == "serial" and rec["time"] and len(rec["runs"]) == 3
    assert (store.failed_path / f"{rec['key']}.json").exists()
    assert len(store.keys()) == total - 3 and not any("bad" in str(r) for r in store.rows())

    st = sweep.status(cfg, store)
    assert list(st.columns) == ["source", "target", "total", "done", "missing", "failed", "error"]
    assert len(st) == 4 and (st["total"] == 12).all() and st["missing"].sum() == 3
    row = st[(st.source == SOURCES[1]) & (st.target == "textures")].iloc[0]
    assert (row.done, row.missing, row.failed, row.error) == (9, 3, 3, "ValueError: bad cell n=10")
    assert (st["done"] + st["missing"] == st["total"]).all() and st["failed"].sum() == 3

    healed = Counter()          # a later successful run removes the stale record
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sweep.run(cfg, store, progress=False, run_fn=healed, load_fn=load) == 3
    assert len(healed.calls) == 3 and store.failures() == [] and len(store) == total
    st = sweep.status(cfg, store)
    assert (st["done"] == 12).all() and (st["failed"] == 0).all() and (st["error"] == "").all()


def test_failure_midway_keeps_finished_rows_and_retry_skips_them(tmp_path):
    cfg, store = _cfg(), Store(tmp_path / "s")

    class Midway(Counter):
        def __call__(self, source, target, n, k, seed, cfg, *, model=None):
            if (source, k, target, seed) == CELL and n == 20:
                self.calls.append((source, target, n, k, seed))
                raise OSError("disk full")
            return super().__call__(source, target, n, k, seed, cfg, model=model)

    c = Midway()
    with pytest.warns(RuntimeWarning, match="OSError: disk full"):
        sweep.run(cfg, store, progress=False, run_fn=c, load_fn=load, retries=1)
    cell_calls = [x[2] for x in c.calls if (x[0], x[3], x[1], x[4]) == CELL]
    assert cell_calls == [10, 20, 20]          # the retry did not redo n=10
    (rec,) = store.failures()
    assert rec["n"] == [20, 40] and rec["attempts"] == 2  # only the runs still missing


def test_flaky_task_succeeds_on_retry_and_leaves_no_record(tmp_path):
    cfg, store = _cfg(), Store(tmp_path / "s")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ran = sweep.run(cfg, store, progress=False, run_fn=Failing(CELL, times=1), load_fn=load)
    assert ran == len(sweep.grid(cfg)) and ran.failed == [] and store.failures() == []
    # retries=0: the first error is final
    store2 = Store(tmp_path / "t")
    with pytest.warns(RuntimeWarning):
        sweep.run(cfg, store2, progress=False, run_fn=Failing(CELL, times=1), load_fn=load,
                  retries=0)
    assert store2.failures()[0]["attempts"] == 1


def test_stale_failure_records_are_pruned(tmp_path):
    cfg, store = _cfg(), Store(tmp_path / "s")
    sweep.run(cfg, store, progress=False, run_fn=Counter(), load_fn=load)
    store.record_failure("0123456789abcdef", {"runs": [Store.key(sweep.grid(cfg)[0])]})
    store.record_failure("fedcba9876543210", {"runs": ["not-a-row"]})
    assert sweep.run(cfg, store, progress=False, run_fn=Counter(), load_fn=load) == 0
    assert [r["key"] for r in store.failures()] == ["fedcba9876543210"]


@pytest.mark.parametrize("kw,match", [
    (dict(executor="threads"), r"executor='threads' is not allowed; allowed: \['serial', "
                               r"'processes', 'dask'\]"),
    (dict(workers=0), "workers=0 is not allowed"),
    (dict(workers=2.5), "workers=2.5 is not allowed"),
    (dict(retries=-1), "retries=-1 is not allowed"),
    (dict(executor="processes", scheduler="tcp://x:8786"), "needs executor='dask'"),
])
def test_bad_executor_arguments(tmp_path, kw, match):
    c = Counter()
    with pytest.raises(ValueError, match=match):
        sweep.run(_cfg(), Store(tmp_path / "s"), progress=False, run_fn=c, load_fn=load, **kw)
    assert c.calls == []


def test_changed_target_data_gets_new_rows(tmp_path):
    from PIL import Image
    from robust_transfer import data, transfer

    def write(value):
        for split in ("train", "test"):
            for c in ("a", "b"):
                (tmp_path / split / c).mkdir(parents=True, exist_ok=True)
                Image.new("L", (8, 8), value if c == "a" else 255 - value).save(
                    tmp_path / split / c / "0.png")
        data._load_image_files.cache_clear()
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


def test_matched_noise_is_fine_tuned_in_the_main_grid_only():
    """mini fine-tunes the matched-noise control at main_blocks beside the main families, but
    leaves it out of the authors' recipe and the block-count grid (controls of the main test)."""
    from robust_transfer import config, zoo
    cfg = config.resolve("mini")
    cells = sweep.cells(cfg)
    noise = {s for s in cfg.sources if zoo.spec(s).family == f"mini/fmnist/{zoo.MATCHED_NOISE}"}
    assert len(noise) == 3 and noise <= set(cfg.finetune_sources)
    tuned = [c for c in cells if c["source"] in noise and c["unfrozen_blocks"] > 0]
    assert {c["unfrozen_blocks"] for c in tuned} == {cfg.main_blocks}
    assert {c["recipe"] for c in tuned} == {cfg.recipe}
    assert max(c["n"] for c in tuned) == cfg.finetune_max_n
    l2 = {s for s in cfg.sources if zoo.spec(s).family == "mini/fmnist/l2/1.0"}
    assert any(c["recipe"] == cfg.compare_recipe for c in cells if c["source"] in l2)
    assert any(c["unfrozen_blocks"] == 3 for c in cells if c["source"] in l2)


def test_bad_feature_cache_bound_stops_before_any_run(tmp_path, monkeypatch):
    """A bad $RT_FEATURE_CACHE_MB is named before the sweep starts a run."""
    from robust_transfer import config
    monkeypatch.setenv("RT_FEATURE_CACHE_MB", "-5")
    monkeypatch.setattr(sweep, "tasks", lambda *a: pytest.fail("looked for runs"))
    with pytest.raises(ValueError, match="RT_FEATURE_CACHE_MB='-5'"):
        sweep.run(config.resolve("tiny"), Store(str(tmp_path / "s")), progress=False)
