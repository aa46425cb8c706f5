"""The source zoo: ids, training + caching, corrupt-cache recovery, download/pin/convert path."""
import argparse
import dataclasses
import json

import dill
import pytest
import torch
import torchvision

from robust_transfer import checkpoints, config, train, zoo

torch.set_num_threads(1)

FAST = dict(train_images=96, epochs=1, batch_size=48, lr=0.05, steps=1, clean_images=64,
            eval_images=16, eval_steps=2)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(zoo.TRAINED_SCALES, "tiny", FAST)
    return tmp_path


def test_ids_match_config_and_specs():
    assert zoo.list_sources("mini") == list(config._mini_sources("mini"))
    for preset in ("tiny", "mini", "paper"):
        assert set(config.PRESETS[preset].get("sources", config.Config.sources)) <= set(zoo.list_sources())
    assert len(zoo.list_sources("salman2020")) == 15
    for sid in zoo.list_sources():
        zoo.check_id(sid)
    s = zoo.spec("mini/fmnist/l2/1.0/s2")
    assert (s.scale, s.norm, s.eps, s.seed, s.family, s.num_blocks, s.in_channels) == \
        ("mini", "l2", 1.0, 2, "mini/fmnist/l2/1.0", 3, 1)
    assert zoo.spec("mini/fmnist/natural/s1").eps == 0.0
    assert zoo.spec("mini/fmnist/noise/0.1/s0").label == "noise σ=0.1"
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
])
def test_bad_ids(bad, match):
    with pytest.raises(ValueError, match=match):
        zoo.check_id(bad)


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


def test_grid_table_curves(cache):
    ids = ["tiny/fmnist/natural/s0", "tiny/fmnist/natural/s1", "tiny/fmnist/noise/0.1/s0"]
    grid = zoo.load_grid(ids, progress=False)
    df = zoo.table(ids, grid=grid)
    assert list(df["id"]) == ids
    assert {"clean_acc", "L2 0.25", "L2 2", "Linf 0.1", "train_seconds"} <= set(df.columns)
    curves = zoo.accuracy_curves(df)
    nat = curves[(curves.family == "tiny/fmnist/natural") & (curves.attack == "L2")]
    assert list(nat.attack_eps) == [0.0, 0.25, 0.5, 1.0, 2.0] and (nat.seeds == 2).all()
    row = nat[nat.attack_eps == 0.0].iloc[0]
    assert row["mean"] == pytest.approx(df.clean_acc[:2].mean())
    assert row["min"] == df.clean_acc[:2].min() and row["max"] == df.clean_acc[:2].max()


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
    assert fetched and meta["clean_acc"] == zoo.PUBLISHED_CLEAN_ACC[sid]
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
