"""The source zoo: ids, training + caching, corrupt-cache recovery, download/pin/convert path."""
import argparse
import dataclasses
import gzip
import json
from pathlib import Path

import dill
import numpy as np
import pytest
import torch
import torchvision

from robust_transfer import attacks, checkpoints, data, reference, train, zoo
from robust_transfer.chapters import ch01_source_models as ch01

torch.set_num_threads(1)

FAST = dict(train_images=96, epochs=1, batch_size=48, lr=0.05, steps=1, clean_images=64,
            eval_images=16, eval_steps=2)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(zoo.TRAINED_SCALES, "tiny", FAST)
    return tmp_path


def test_registry_records_and_specs():
    assert list(zoo.REGISTRY) == zoo.list_sources()
    assert all(zoo.spec(i) is r and r.id == i for i, r in zoo.REGISTRY.items())
    mini = [f"mini/fmnist/natural/s{s}" for s in range(6)] + \
        [f"mini/fmnist/l2/1.0/s{s}" for s in range(6)] + \
        ["mini/fmnist/l2/0.5/s0", "mini/fmnist/l2/2.0/s0"] + \
        [f"mini/fmnist/linf/0.1/s{s}" for s in (0, 1, 2)] + [f"mini/fmnist/noise/0.3/s{s}" for s in (0, 1, 2)]
    assert zoo.list_sources("mini") == mini
    assert zoo.list_sources("tiny") == [i.replace("mini/", "tiny/", 1) for i in mini]
    assert zoo.main_sources("mini") == mini[:12]
    assert len(zoo.list_sources("salman2020")) == 15
    assert len(zoo.list_sources()) == 20 + 20 + 4 + 15
    # a replication build's disjoint seed set: the same families, seeds shifted
    shifted = zoo.list_sources("mini", seed_offset=6)
    assert shifted == [zoo.shift_seed(i, 6) for i in mini] and not set(shifted) & set(mini)
    assert zoo.spec("mini/fmnist/l2/1.0/s106").seed == 106
    assert zoo.shift_seed("paper/imagenet/l2/3", 6) == "paper/imagenet/l2/3"
    # downloaded sources: file, URL, pin and published accuracy live in their record
    p = zoo.spec("paper/imagenet/l2/3")
    assert (p.url, p.file) == zoo.PAPER_FILES["paper/imagenet/l2/3"]
    assert p.published_clean_acc == reference.PUBLISHED_CLEAN_ACC["paper/imagenet/l2/3"]
    assert p.sha256 is None and zoo.PINNED_SHA256[p.file] is None
    h = zoo.spec("salman2020/imagenet/linf/4")
    assert h.file == "resnet50_linf_eps4.0.ckpt" and h.url.endswith("/main/resnet50_linf_eps4.0.ckpt")
    assert h.published_clean_acc is None
    assert set(zoo.PINNED_SHA256) == {r.file for r in zoo.REGISTRY.values() if r.file}
    t = zoo.spec("tiny/fmnist/linf/0.1/s0")
    assert t.url is t.file is t.sha256 is t.published_clean_acc is None
    assert not hasattr(zoo, "PUBLISHED_CLEAN_ACC")
    for sid in zoo.list_sources():
        zoo.check_id(sid)
    s = zoo.spec("mini/fmnist/l2/1.0/s2")
    assert (s.scale, s.norm, s.eps, s.seed, s.family, s.num_blocks, s.in_channels) == \
        ("mini", "l2", 1.0, 2, "mini/fmnist/l2/1.0", 3, 1)
    assert zoo.spec("mini/fmnist/natural/s1").eps == 0.0
    assert zoo.spec("mini/fmnist/noise/0.3/s0").label == "noise σ=0.3"
    p = zoo.spec("paper/imagenet/linf/4")
    assert p.eps == pytest.approx(4 / 255) and p.num_blocks == 16 and p.label == "L∞ ε=4/255"
    assert zoo.spec("salman2020/imagenet/l2/0").norm == "natural"
    with pytest.raises(ValueError, match="scale"):
        zoo.list_sources("huge")


@pytest.mark.parametrize("bad,match", [
    ("huge/fmnist/natural/s0", "scale"),
    ("mini/fmnist/l1/1.0/s0", "allowed forms"),
    ("mini/fmnist/l2/1/s0", "canonically"),
    ("mini/fmnist/l2/abc/s0", "not a number"),
    ("mini/fmnist/linf/2.0/s0", "out of range"),
    ("mini/fmnist/natural/s01", "leading zeros"),
    ("mini/fmnist/l2/1.0", "allowed forms"),
    ("paper/imagenet/l2/5", "not a paper source"),
    (3, "string"),
    (["mini"], "string"),
    ("mini/fmnist/l2/3.0/s0", r"eps 3 \(l2\) is not in the zoo.*_TRAINED_FAMILIES"),
])
def test_bad_ids(bad, match):
    with pytest.raises(ValueError, match=match):
        zoo.check_id(bad)
    with pytest.raises(ValueError, match=match):  # a lookup: the same explanation
        zoo.spec(bad)


def test_train_cache_and_corrupt_recovery(cache, monkeypatch):
    sid = "tiny/fmnist/l2/0.5/s0"
    model, meta = zoo.load(sid, progress=False)
    assert not model.training
    for key in ("id", "arch", "dataset", "norm", "eps", "seed", "clean_acc", "robust_acc",
                "train_seconds", "recipe", "sha256"):
        assert key in meta, key
    assert meta["norm"] == "l2" and meta["eps"] == 0.5 and meta["recipe"]["train_images"] == 96
    assert set(meta["robust_acc"]) == set(zoo.ATTACK_EPS["l2"])
    assert set(meta["robust_acc_linf"]) == set(zoo.ATTACK_EPS["linf"])
    assert all(0 <= v <= 1 for v in meta["robust_acc"].values())

    calls = []
    real_train = train.train_source
    monkeypatch.setattr(train, "train_source", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    model2, meta2 = zoo.load(sid, progress=False)  # warm: no training, same weights
    assert calls == [] and meta2 == meta
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                   model2.state_dict().values()))

    (weights,) = (cache / "sources").glob("tiny__fmnist__l2__0.5__s0-*.safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with pytest.warns(UserWarning, match="re-making"):
        _, meta3 = zoo.load(sid, progress=False)
    assert calls == [1] and checkpoints.load(weights.with_suffix(""))[1]["sha256"] == meta3["sha256"]


@pytest.mark.slow   # trains sources in a process pool (make test runs it)
def test_load_grid_trains_missing_sources_in_processes_with_the_same_weights(tmp_path,
                                                                            monkeypatch):
    """Sources train with zoo.TRAIN_THREADS threads wherever they train: two spawned workers
    give bitwise the weights this process gives (the real tiny recipe: workers do not see
    monkeypatches), and the caller trains nothing itself."""
    ids = ["tiny/fmnist/natural/s0", "tiny/fmnist/noise/0.3/s0"]
    with pytest.raises(ValueError, match="workers=0 is not allowed"):
        zoo.load_grid(ids, workers=0)
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path / "here"))
    threads = torch.get_num_threads()
    here = zoo.load_grid(ids, progress=False)
    assert torch.get_num_threads() == threads          # restored after training
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path / "pool"))
    monkeypatch.setattr(zoo, "_train", lambda *a, **k: pytest.fail("trained in the caller"))
    pooled = zoo.load_grid(ids, progress=False, workers=2)
    for sid in ids:
        assert pooled[sid][1]["sha256"] == here[sid][1]["sha256"]
        assert pooled[sid][1]["train_threads"] == zoo.TRAIN_THREADS == 1


def test_grid_table_curves(cache):
    ids = ["tiny/fmnist/natural/s0", "tiny/fmnist/natural/s1", "tiny/fmnist/noise/0.3/s0"]
    grid = zoo.load_grid(ids, progress=False)
    df = zoo.table(ids, grid=grid)
    assert list(df["id"]) == ids
    assert {"clean_acc", "L2 0.25", "L2 2", "Linf 0.1", "train_seconds"} <= set(df.columns)
    curves = ch01.accuracy_curves(df)
    nat = curves[(curves.family == "tiny/fmnist/natural") & (curves.attack == "L2")]
    assert list(nat.attack_eps) == [0.0, 0.25, 0.5, 1.0, 2.0] and (nat.seeds == 2).all()
    row = nat[nat.attack_eps == 0.0].iloc[0]
    assert row["mean"] == pytest.approx(df.clean_acc[:2].mean())
    assert row["min"] == df.clean_acc[:2].min() and row["max"] == df.clean_acc[:2].max()

    # Figure 1.2's numbers come from the engine: deterministic, the same as a seeded PGD by hand
    reps = zoo.family_representatives(ids)
    assert reps == ["tiny/fmnist/natural/s0", "tiny/fmnist/noise/0.3/s0"]
    x, y, names = zoo.source_data("tiny", "test")
    x, y = x[:8], y[:8]
    ex = zoo.adversarial_examples(grid, reps, x, y, eps=1.0, steps=2)
    again = zoo.adversarial_examples(grid, reps, x, y, eps=1.0, steps=2)
    assert list(ex) == reps and [e["label"] for e in ex.values()] == ["natural", "noise σ=0.3"]
    for sid, e in ex.items():
        assert torch.equal(e["x_adv"], again[sid]["x_adv"]) and e["alignment"].shape == (8,)
        assert (e["alignment"].abs() <= 1).all() and e["pred"].shape == (8,)
        assert e["mean_alignment"] == pytest.approx(e["alignment"].mean().item())
    torch.manual_seed(0)
    by_hand = attacks.pgd(grid[reps[1]][0], x, y, "l2", 1.0, steps=2)
    assert torch.equal(by_hand, ex[reps[1]]["x_adv"])
    assert attacks.edge_alignment(x, by_hand).mean().item() == ex[reps[1]]["mean_alignment"]
    alignment = zoo.edge_alignment_by_source(ex)
    assert alignment == {e["label"]: e["mean_alignment"] for e in ex.values()}

    # the chapter only draws and words them
    fig = ch01.adversarial_examples(dict(x=x, class_names=names, examples=ex), show=(0, 3))
    assert len(fig.axes) == 2 * 3 * 2
    ch01.attack_curves(curves)
    assert "edge alignment" in ch01.findings(df, alignment)
    h = ch01.headline(df, alignment)
    assert h["alignment_natural"] == alignment["natural"] and h["natural_label"] == "natural"
    import matplotlib.pyplot as plt
    plt.close("all")


def _table(rows):
    import pandas as pd
    out = []
    for family, label, norm, eps, clean, robust, seeds in rows:
        for s in range(seeds):
            out.append({"id": f"{family}/s{s}", "family": family, "label": label, "norm": norm,
                        "eps": eps, "seed": s, "clean_acc": clean + 0.01 * s, "L2 0.25": robust,
                        "L2 1": robust, "Linf 0.1": robust / 2, "train_seconds": 60.0})
    return pd.DataFrame(out)


def test_chapter_findings_and_headline():
    t = _table([("m/natural", "natural", "natural", 0.0, 0.90, 0.10, 3),
                ("m/l2/1.0", "L2 ε=1", "l2", 1.0, 0.80, 0.50, 3),
                ("m/l2/0.5", "L2 ε=0.5", "l2", 0.5, 0.85, 0.40, 1),
                ("m/l2/2.0", "L2 ε=2", "l2", 2.0, 0.70, 0.60, 1),
                ("m/linf", "L∞ ε=0.1", "linf", 0.1, 0.75, 0.45, 1),
                ("m/noise", "noise σ=0.1", "noise", 0.1, 0.88, 0.15, 1)])
    alignment = {"natural": 0.1, "L2 ε=1": 0.4, "L∞ ε=0.1": 0.3, "noise σ=0.1": 0.05}
    h = ch01.headline(t, alignment)
    assert h == pytest.approx(dict(
        natural_label="natural", robust_label="L2 ε=2", clean_natural_pct=91.0,
        clean_robust_pct=70.0, l2_robust_natural_pct=10.0, l2_robust_robust_pct=60.0,
        spearman_eps_clean=-1.0, spearman_eps_robust=1.0, alignment_natural=0.1,
        alignment_robust=float("nan")), nan_ok=True)
    assert all(type(v) in (float, str) for v in h.values())
    text = ch01.findings(t, alignment)
    assert text.startswith("Across the L2 training ε (natural: 91.0% clean / 10.0% robust, ")
    assert "rank correlation of training ε with clean accuracy is -1.00 and with L2 ε=1 robust " \
        "accuracy +1.00: clean accuracy falls and robust accuracy rises with ε (as in the paper)" in text
    assert "The most robust L2 source (L2 ε=2) loses 21.0 points of clean accuracy against natural " \
        "training (the paper's ImageNet L2 ε=3 source loses 18.2)." in text
    assert "noise training does not buy adversarial robustness" in text
    assert "highest for L2 ε=1, an adversarially trained source" in text
    assert text.endswith("Training the 10 sources took 10.0 minutes in total on this machine (when "
                         "they were first trained).")
    # downloaded sources: no robust accuracy measured -> NaN, never the clean accuracy
    paper = t.drop(columns=["L2 0.25", "L2 1", "Linf 0.1"])
    hp = ch01.headline(paper)
    assert np.isnan(hp["l2_robust_robust_pct"]) and np.isnan(hp["spearman_eps_robust"])
    assert hp["spearman_eps_clean"] == -1.0 and np.isnan(hp["alignment_robust"])
    assert list(ch01.published_table()["id"]) == list(reference.PUBLISHED_CLEAN_ACC)


# ------------------------------------------- Fashion-MNIST download for trained sources (no network)

def _write_idx(path, arr):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


class _StandInFashionMNIST:
    """Stands in for ``torchvision.datasets.FashionMNIST(root, train=..., download=True)``:
    writes small IDX ``.gz`` files in torchvision's ``FashionMNIST/raw`` layout."""

    calls: list = []

    def __init__(self, root, train=True, download=False, **kwargs):
        assert download
        raw = Path(root) / "FashionMNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        n, prefix = (120, "train") if train else (80, "t10k")
        rng = np.random.default_rng(n)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
        type(self).calls.append(train)


@pytest.fixture
def no_fashion_mnist(cache, tmp_path, monkeypatch):
    """No Debian files, an empty torchvision root, and a local stand-in for the download."""
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-files")
    monkeypatch.setenv("RT_DATA_DIR", str(tmp_path / "datasets"))
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", _StandInFashionMNIST)
    monkeypatch.setattr(_StandInFashionMNIST, "calls", [])
    data._load_cached.cache_clear()
    yield tmp_path / "datasets"
    data._load_cached.cache_clear()  # later tests must not see the stand-in images


def test_trained_source_fetches_fashion_mnist_only_when_allowed(no_fashion_mnist):
    sid = "tiny/fmnist/natural/s0"
    clear = r"'fashion_mnist' is not on this machine.*allow_download=True.*dataset-fashion-mnist"
    with pytest.raises(data.DatasetUnavailable, match=clear):
        zoo.load(sid, progress=False)
    with pytest.raises(data.DatasetUnavailable, match=clear):
        zoo.load_grid([sid], progress=False)
    with pytest.raises(data.DatasetUnavailable, match=clear):
        zoo.source_data("tiny", "test")
    assert _StandInFashionMNIST.calls == []

    model, meta = zoo.load(sid, allow_download=True, progress=False)
    assert _StandInFashionMNIST.calls == [True, False]   # one fetch: train and test files
    assert meta["clean_images"] == FAST["clean_images"] and 0 <= meta["clean_acc"] <= 1
    raw = no_fashion_mnist / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        f + ".gz" for split in ("train", "test") for f in data._IDX_FILES[split])
    # now on this machine: no download needed, none made
    x, y, names = zoo.source_data("tiny", "train")
    assert x.shape == (FAST["train_images"], 1, 28, 28) and len(names) == 10
    assert zoo.load_grid([sid, "tiny/fmnist/noise/0.3/s0"], progress=False)[sid][1] == meta
    assert _StandInFashionMNIST.calls == [True, False]


# ----------------------------------------------------------------- download path (no network)

def _small_spec(monkeypatch):
    real = zoo.spec
    monkeypatch.setattr(zoo, "spec", lambda sid: dataclasses.replace(real(sid), arch="resnet18")
                        if sid.split("/")[0] in ("paper", "salman2020") else real(sid))


def _standin_state():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).state_dict()


def _write_madry(dest, with_args=True, code=False):
    sd = {"module.model." + k: v for k, v in _standin_state().items()}
    sd["module.normalizer.new_mean"] = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    sd["module.normalizer.new_std"] = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    obj = {"model": sd, "epoch": 90}
    if with_args:
        obj["args"] = argparse.Namespace(eps=3.0)  # allowlisted for the safe load
    if code:
        from fractions import Fraction
        obj["extra"] = Fraction(1, 3)   # not allowlisted: needs a full unpickle
    torch.save(obj, dest, pickle_module=dill)


def test_download_pin_convert(cache, monkeypatch):
    _small_spec(monkeypatch)
    sid = "paper/imagenet/l2/3"
    with pytest.raises(zoo.SourceUnavailable, match=r"paper/imagenet/l2/3.*imagenet_l2_3_0\.pt.*allow_download"):
        zoo.load(sid)
    fetched = []

    def fake_fetch(url, dest, progress):
        assert url == "https://www.dropbox.com/s/knf4uimlqsi1yz8/imagenet_l2_3_0.pt?dl=1"
        fetched.append(url)
        _write_madry(dest)

    monkeypatch.setattr(zoo, "_fetch_url", fake_fetch)
    model, meta = zoo.load(sid, allow_download=True, progress=False)
    assert fetched and meta["clean_acc"] == reference.PUBLISHED_CLEAN_ACC[sid]
    assert meta["norm"] == "l2" and meta["eps"] == 3.0 and model.num_blocks == 8
    pins = json.loads((cache / "downloads" / "pins.json").read_text())
    assert pins["imagenet_l2_3_0.pt"] == meta["recipe"]["download_sha256"]
    with torch.no_grad():
        assert torch.allclose(model.head.weight, _standin_state()["fc.weight"])
    zoo.load(sid)  # warm: converted checkpoint, no download needed
    assert len(fetched) == 1

    # corrupt raw download + no converted checkpoint: detected; re-fetched when allowed
    for p in (cache / "sources").glob("paper__*"):
        p.unlink()
    raw = cache / "downloads" / "imagenet_l2_3_0.pt"
    raw.write_bytes(raw.read_bytes()[:5000])
    with pytest.raises(checkpoints.CheckpointError, match="corrupt"):
        zoo.load(sid)
    assert not raw.exists()
    zoo.load(sid, allow_download=True, progress=False)
    assert len(fetched) == 2

    # corrupt raw file still present and downloads allowed: re-fetched with a warning
    for p in (cache / "sources").glob("paper__*"):
        p.unlink()
    raw.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="corrupt"):
        zoo.load(sid, allow_download=True, progress=False)
    assert len(fetched) == 3


def test_unpinned_pickle_placed_by_hand_is_refused(cache, monkeypatch):
    _small_spec(monkeypatch)
    (cache / "downloads").mkdir()
    _write_madry(cache / "downloads" / "imagenet_linf_8.pt", code=True)
    with pytest.raises(checkpoints.CheckpointError, match="not pinned"):
        zoo.load("paper/imagenet/linf/8")
    # a weights-only-loadable file placed by hand is fine without a pin
    _write_madry(cache / "downloads" / "imagenet_linf_8.pt")
    _, meta = zoo.load("paper/imagenet/linf/8")
    assert meta["eps"] == pytest.approx(8 / 255)


def test_torchvision_prefix_and_huggingface(cache, monkeypatch):
    _small_spec(monkeypatch)
    monkeypatch.setattr(zoo, "_fetch_url", lambda url, dest, progress:
                        torch.save(_standin_state(), dest))
    with pytest.raises(checkpoints.CheckpointError, match="published prefix"), \
            pytest.warns(UserWarning, match="downloading it again"):
        zoo.load("paper/imagenet/natural", allow_download=True, progress=False)
    monkeypatch.setattr(zoo, "_SHA_PREFIX", {})
    assert zoo.load("paper/imagenet/natural", allow_download=True, progress=False)[1]["eps"] == 0

    names = []
    monkeypatch.setattr(zoo, "_fetch_hf", lambda name, dest, progress:
                        names.append(name) or _write_madry(dest))
    zoo.load("salman2020/imagenet/linf/4", allow_download=True, progress=False)
    zoo.load("salman2020/imagenet/l2/3", allow_download=True, progress=False)
    assert names == ["resnet50_linf_eps4.0.ckpt", "resnet50_l2_eps3.ckpt"]


def test_first_download_hash_does_not_unlock_a_full_unpickle(cache, monkeypatch):
    _small_spec(monkeypatch)
    monkeypatch.setattr(zoo, "_fetch_url", lambda url, dest, progress: _write_madry(dest, code=True))
    with pytest.raises(checkpoints.CheckpointError, match="not pinned"):
        zoo.load("paper/imagenet/linf/4", allow_download=True, progress=False)
    # its hash was recorded (integrity), yet the next load still refuses to run its pickle
    pins = json.loads((cache / "downloads" / "pins.json").read_text())
    assert "imagenet_linf_4.pt" in pins
    with pytest.raises(checkpoints.CheckpointError, match="not pinned"):
        zoo.load("paper/imagenet/linf/4")


# --------------------------------------------- a cache shared by concurrent worker processes

@pytest.mark.parametrize("flock", [True, False], ids=["flock", "o_excl"])
def test_file_lock_excludes_and_times_out(tmp_path, monkeypatch, flock):
    """Both kinds of lock (fcntl.flock; O_EXCL lock files where fcntl is missing) exclude other
    holders, threads of one process included, and give up after ``timeout`` seconds."""
    import threading
    from robust_transfer import cache
    if not flock:
        monkeypatch.setattr(cache, "fcntl", None)
    target = tmp_path / "thing"
    inside, release = threading.Event(), threading.Event()

    def hold():
        with cache.file_lock(target) as lock:
            assert lock == tmp_path / "thing.lock" and lock.exists()
            inside.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    assert inside.wait(10)
    with pytest.raises(TimeoutError, match=r"thing\.lock"):
        with cache.file_lock(target, timeout=0.2):
            pass
    release.set()
    t.join()
    with cache.file_lock(target, timeout=1):
        pass
    assert (tmp_path / "thing.lock").exists() == flock  # an flock file stays; O_EXCL's is removed
    assert not target.exists()


def _record_pins(cache_dir, names, barrier, lock):
    """Child process: record a pin for each of ``names`` (``lock=False``: with the lock
    replaced by a no-op, to show what it prevents). Reading the pins file is slowed by 50 ms so
    that the read-modify-write windows of the processes overlap (about 1 s of them each)."""
    import contextlib
    import os
    import time
    os.environ["RT_CACHE_DIR"] = cache_dir
    from robust_transfer import zoo as z
    if not lock:
        z.file_lock = lambda path, **kw: contextlib.nullcontext()
    read = z._read_pins

    def slow_read():
        pins = read()
        time.sleep(0.05)
        return pins

    z._read_pins = slow_read
    barrier.wait(120)
    for name in names:
        assert z._record_pin(name, name * 2) == name * 2


def _spawned(target, args_of, n):
    """Run ``target(*args_of(i, barrier))`` in ``n`` spawned processes started together; returns
    their exit codes."""
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=target, args=args_of(i, barrier)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    return [p.exitcode for p in procs]


@pytest.mark.slow
@pytest.mark.parametrize("lock", [True, False], ids=["locked", "without_lock"])
def test_concurrent_processes_record_every_pin(tmp_path, lock):
    """3 processes record 20 different pins each at the same moment: with the lock all 60
    survive; without it (the variant; 2 processes suffice) read-modify-write races lose some,
    so this test would catch a missing lock."""
    n = 3 if lock else 2
    names = [[f"file{i}-{j}.pt" for j in range(20)] for i in range(n)]
    codes = _spawned(_record_pins, lambda i, b: (str(tmp_path), names[i], b, lock), n)
    assert codes == [0] * n
    pins = json.loads((tmp_path / "downloads" / "pins.json").read_text())
    expected = {n: n * 2 for group in names for n in group}
    if lock:
        assert pins == expected
    else:
        assert set(pins) < set(expected)  # lost updates


def _load_same_source(cache_dir, out_dir, barrier):
    """Child process: load a stand-in downloadable source (its fetcher sleeps 1 s and leaves one
    marker file per call) at the same moment as the other children."""
    import os
    import time
    os.environ["RT_CACHE_DIR"] = cache_dir
    torch.set_num_threads(1)
    real_spec, real_convert = zoo.spec, zoo._convert
    zoo.spec = lambda sid: (dataclasses.replace(real_spec(sid), arch="resnet18")
                            if sid.split("/")[0] in ("paper", "salman2020") else real_spec(sid))

    def fetch(url, dest, progress):
        Path(out_dir, f"fetch-{os.getpid()}").touch()
        time.sleep(1.0)
        _write_madry(dest)

    def convert(*args):
        Path(out_dir, f"convert-{os.getpid()}").touch()
        return real_convert(*args)

    zoo._fetch_url, zoo._convert = fetch, convert
    barrier.wait(120)
    _, meta = zoo.load("paper/imagenet/l2/3", allow_download=True, progress=False)
    Path(out_dir, f"sha-{os.getpid()}").write_text(meta["sha256"])


@pytest.mark.slow
def test_concurrent_processes_download_a_source_once(tmp_path):
    """3 processes ask for the same missing downloadable source at once: the first downloads
    and converts it under the source's lock, the others wait and load the cached checkpoint."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    codes = _spawned(_load_same_source, lambda i, b: (str(cache), str(out), b), 3)
    assert codes == [0, 0, 0]
    assert len(list(out.glob("fetch-*"))) == 1 and len(list(out.glob("convert-*"))) == 1
    shas = {p.read_text() for p in out.glob("sha-*")}
    assert len(list(out.glob("sha-*"))) == 3 and len(shas) == 1
    assert list(json.loads((cache / "downloads" / "pins.json").read_text())) == ["imagenet_l2_3_0.pt"]


def test_a_failed_checkpoint_download_is_source_unavailable(monkeypatch):
    import urllib.error

    def offline(*args):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(zoo, "_fetch_url", offline)
    with pytest.raises(zoo.SourceUnavailable, match="downloading it failed .URLError"):
        zoo._verified_download(zoo.spec("paper/imagenet/l2/3"), True, False)


def test_train_threads_from_the_environment(monkeypatch):
    """RT_TRAIN_THREADS (book --train-threads) picks the sources' thread count; it is part of
    the recipe hash, so 1- and 2-thread sources never share a cache entry."""
    sid = "mini/fmnist/l2/1.0/s0"
    monkeypatch.delenv("RT_TRAIN_THREADS", raising=False)
    one = zoo.revision(sid)
    assert zoo.train_threads() == zoo.TRAIN_THREADS == 1
    monkeypatch.setenv("RT_TRAIN_THREADS", "2")
    assert zoo.train_threads() == 2 and zoo.revision(sid) != one
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("RT_TRAIN_THREADS", bad)
        with pytest.raises(ValueError, match="RT_TRAIN_THREADS"):
            zoo.train_threads()
