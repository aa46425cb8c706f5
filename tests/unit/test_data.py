"""Data layer: offline datasets, torchvision formats on local stand-ins, subsets, formats."""
import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from robust_transfer import data


# ---------------------------------------------------------------- offline datasets

@pytest.mark.parametrize("name", ["fashion_mnist", "mnist5k", "digits", "textures"])
def test_offline_datasets_load_in_registry_shape(name):
    info = data.info(name)
    for split, size in (("train", info.train_size), ("test", info.test_size)):
        x, y, classes = data.load(name, split)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert tuple(x.shape) == (size, info.channels, info.size, info.size)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.5
        assert len(classes) == info.num_classes
        assert sorted(torch.unique(y).tolist()) == list(range(info.num_classes))


def test_textures_are_deterministic_and_train_test_disjoint():
    a, ya, _ = data._read_textures("train")
    b, yb, _ = data._read_textures("train")
    assert torch.equal(a, b) and np.array_equal(ya, yb)
    test, _, _ = data._read_textures("test")
    # crops come from disjoint photo regions: no test crop equals a train crop
    flat_train = a.flatten(1)
    d = torch.cdist(test.flatten(1)[:50], flat_train).min()
    assert d > 1e-3


def test_fixed_splits_are_disjoint():
    for name in ("mnist5k", "digits"):
        xtr, _, _ = data.load(name, "train")
        xte, _, _ = data.load(name, "test")
        d = torch.cdist(xte.flatten(1)[:100], xtr.flatten(1)).min()
        assert d > 0, name


# ---------------------------------------------------------------- torchvision on-disk formats

def _write_idx(path, array, gz):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as fh:
            fh.write(blob)
    else:
        path.write_bytes(blob)


def _rng_images(n, c, h, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, h), dtype=np.uint8)


@pytest.mark.parametrize("name,folder,gz", [("mnist", "MNIST", False), ("kmnist", "KMNIST", True),
                                            ("fashion_mnist", "FashionMNIST", True)])
def test_idx_family_from_torchvision_root(tmp_path, name, folder, gz):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    imgs = {"train": _rng_images(30, 1, 28, 1)[:, 0], "test": _rng_images(12, 1, 28, 2)[:, 0]}
    labels = {"train": np.arange(30) % 10, "test": np.arange(12) % 10}
    for split, (fi, fl) in data._IDX_FILES.items():
        _write_idx(raw / fi, imgs[split], gz)
        _write_idx(raw / fl, labels[split], gz)
    x, y, classes = data._read_online(name, "test", allow_download=False, root=tmp_path) \
        if name != "fashion_mnist" else data._read_fashion_mnist("test", False, tmp_path)
    assert np.array_equal(x[:, 0], imgs["test"]) and np.array_equal(y, labels["test"])
    assert len(classes) == 10
    xt, yt, _ = data.load(name, "train", root=tmp_path)
    assert tuple(xt.shape) == (30, 1, 28, 28)
    assert torch.allclose(xt[3, 0] * 255, torch.tensor(imgs["train"][3], dtype=torch.float32))


def test_truncated_idx_file_is_an_error(tmp_path):
    p = tmp_path / "x-idx3-ubyte"
    _write_idx(p, _rng_images(4, 1, 28)[:, 0], gz=False)
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(p)


def _pickle(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def test_cifar10_batches(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    batches = []
    for i in range(1, 6):
        xb = _rng_images(4, 3, 32, i).reshape(4, -1)
        batches.append(xb)
        _pickle(d / f"data_batch_{i}", {b"data": xb, b"labels": [i % 10] * 4})
    _pickle(d / "test_batch", {b"data": _rng_images(6, 3, 32, 9).reshape(6, -1), b"labels": list(range(6))})
    _pickle(d / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    x, y, classes = data.load("cifar10", "train", root=tmp_path)
    assert tuple(x.shape) == (20, 3, 32, 32) and y.tolist() == sum([[i % 10] * 4 for i in range(1, 6)], [])
    assert torch.allclose(x[5] * 255, torch.tensor(batches[1][1].reshape(3, 32, 32), dtype=torch.float32))
    assert classes[3] == "c3"
    xt, yt, _ = data.load("cifar10", "test", root=tmp_path)
    assert yt.tolist() == list(range(6))


def test_cifar100_files(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    for split, n in (("train", 8), ("test", 5)):
        _pickle(d / split, {b"data": _rng_images(n, 3, 32).reshape(n, -1),
                            b"fine_labels": list(range(n)), b"coarse_labels": [0] * n})
    _pickle(d / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)]})
    x, y, classes = data.load("cifar100", "test", root=tmp_path)
    assert tuple(x.shape) == (5, 3, 32, 32) and y.tolist() == list(range(5)) and len(classes) == 100


def test_dataset_pickles_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))

    d = tmp_path / "cifar-100-python"
    d.mkdir()
    for name in ("train", "test", "meta"):
        _pickle(d / name, {b"data": Evil()})
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data._read_cifar("cifar100", tmp_path, "test")


def test_svhn_mat(tmp_path):
    import scipy.io as sio
    for split, n in (("train", 7), ("test", 4)):
        x = np.random.default_rng(n).integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(-1, 1)   # SVHN labels 1..10, 10 means digit 0
        sio.savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
    x, y, _ = data.load("svhn", "train", root=tmp_path)
    assert tuple(x.shape) == (7, 3, 32, 32)
    assert y.tolist() == [1, 2, 3, 4, 5, 6, 7]
    _, yt, _ = data.load("svhn", "test", root=tmp_path)
    assert yt.tolist() == [1, 2, 3, 4]
    sio.savemat(tmp_path / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 10), np.uint8),
                                              "y": np.full((10, 1), 10)})
    data._load_cached.cache_clear()
    _, y10, _ = data.load("svhn", "train", root=tmp_path)
    assert y10.tolist() == [0] * 10


def test_missing_online_dataset_names_path_and_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_download", lambda *a: pytest.fail("must not download"))
    with pytest.raises(data.DatasetUnavailable) as err:
        data.load("kmnist", "train", root=tmp_path)
    assert "kmnist" in str(err.value) and str(tmp_path) in str(err.value)
    assert "allow_download" in str(err.value)
    monkeypatch.setenv("RT_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="targets: dataset 'cifar10' is not on this machine"):
        data.check_name("cifar10", allow_download=False)
    data.check_name("cifar10", allow_download=True)  # would be fetched: allowed


def test_download_is_called_only_when_allowed(tmp_path, monkeypatch):
    calls = []
    def fake_download(name, root):
        calls.append(name)
        raw = root / "KMNIST" / "raw"
        raw.mkdir(parents=True)
        for split, (fi, fl) in data._IDX_FILES.items():
            _write_idx(raw / fi, _rng_images(10, 1, 28)[:, 0], gz=False)
            _write_idx(raw / fl, np.arange(10), gz=False)
    monkeypatch.setattr(data, "_download", fake_download)
    x, y, _ = data.load("kmnist", "test", root=tmp_path, allow_download=True)
    assert calls == ["kmnist"] and tuple(x.shape) == (10, 1, 28, 28)


def test_folder_dataset(tmp_path):
    from PIL import Image
    for split in ("train", "test"):
        for c, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (40, 30), colour).save(tmp_path / split / c / f"{i}.png")
    name = f"folder:{tmp_path}"
    data.check_name(name)
    assert data.info(name).num_classes == 2
    x, y, classes = data.load(name, "test")
    assert classes == ["cat", "dog"] and y.tolist() == [0, 0, 0, 1, 1, 1]
    # held at the ImageNet sources' 224 px as uint8, read as folder@224: is
    assert tuple(x.shape) == (6, 3, 224, 224) and x.dtype == torch.uint8
    assert (x[0, 0] == 255).all() and (x[5, 2] == 255).all() and (x[0, 1:] == 0).all()
    assert torch.equal(data.load(f"folder@224:{tmp_path}", "test")[0], x)
    with pytest.raises(ValueError, match="folder"):
        data.check_name(f"folder:{tmp_path / 'nope'}")


def test_unknown_names_and_splits():
    with pytest.raises(ValueError, match="'cifar11' is unknown"):
        data.load("cifar11", "train")
    with pytest.raises(ValueError, match="split='val'"):
        data.load("digits", "val")


# ---------------------------------------------------------------- subsets and splits

def test_class_covering_subset_covers_nests_and_is_seeded():
    y = np.repeat(np.arange(10), [5, 50, 50, 50, 50, 50, 50, 50, 50, 3])
    for seed in range(5):
        prev = None
        for n in (10, 20, 40, 80, 160):
            idx = data.class_covering_subset(y, n, seed)
            assert len(idx) == n == len(set(idx.tolist()))
            assert set(y[idx]) == set(range(10))
            if prev is not None:
                assert set(prev) <= set(idx)
            prev = idx
    assert np.array_equal(data.class_covering_subset(y, 40, 3), data.class_covering_subset(y, 40, 3))
    assert not np.array_equal(data.class_covering_subset(y, 40, 3), data.class_covering_subset(y, 40, 4))
    for bad in (9, 0, -1, len(y) + 1):
        with pytest.raises(ValueError, match=f"n={bad}"):
            data.class_covering_subset(y, bad, 0)


def test_split_pool_is_stratified_and_disjoint():
    y = np.repeat(np.arange(4), 25)
    pool, val = data.split_pool(y, 20, seed=0)
    assert len(set(pool) & set(val)) == 0 and len(pool) + len(val) == 100
    assert np.bincount(y[val]).tolist() == [5, 5, 5, 5]
    assert not np.array_equal(val, data.split_pool(y, 20, seed=1)[1])
    with pytest.raises(ValueError, match="val_size=2"):
        data.split_pool(y, 2, 0)


def test_to_source_format():
    grey = torch.rand(2, 1, 8, 8)
    rgb = data.to_source_format(grey, 3, 8)
    assert rgb.shape == (2, 3, 8, 8) and torch.equal(rgb[:, 0], rgb[:, 2])
    back = data.to_source_format(rgb, 1, 8)
    assert torch.allclose(back, grey, atol=1e-6)
    big = data.to_source_format(grey, 1, 32)
    assert big.shape == (2, 1, 32, 32) and float(big.min()) >= 0 and float(big.max()) <= 1
    assert torch.allclose(big.mean(), grey.mean(), atol=0.02)
    const = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(data.to_source_format(const, 3, 8), torch.full((1, 3, 8, 8), 0.3), atol=1e-6)
    with pytest.raises(ValueError, match="channels=2"):
        data.to_source_format(grey, 2, 8)


def test_lowres_prefix_low_passes_to_32_px(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / split / c / "0.png")
    name = f"folder:{tmp_path}"
    x, y, _ = data.load(name, "train")
    xl, yl, _ = data.load("lowres:" + name, "train")
    # the authors' low-pass: held at 32 px, brought back to the model's input size by the model
    assert xl.shape == (2, 3, data.LOWRES_SIZE, data.LOWRES_SIZE) and torch.equal(y, yl)
    assert x.dtype == xl.dtype == torch.uint8 and x.shape[-1] == 224
    assert data.info("lowres:" + name).size == data.LOWRES_SIZE
    back = data.to_source_format(xl, 3, 224)               # what a paper source sees
    orig = data.to_source_format(x, 3, 224)
    spec = lambda im: torch.fft.rfft2(im - im.mean((-2, -1), keepdim=True)).abs()
    # 18-30 cycles per image: above 32 px's limit (16), below 64 px's (32): gone
    band = (slice(None), slice(None), slice(18, 30), slice(18, 30))
    assert spec(back)[band].mean() < 0.1 * spec(orig)[band].mean()
    assert torch.allclose(back.mean((-2, -1)), orig.mean((-2, -1)), atol=0.02)
    # images of 32 px or less: lowres would change nothing, so it is refused by name
    for small in ("digits", "cifar10"):
        with pytest.raises(ValueError, match=f"'{small}' has (28|32) px images"):
            data.info("lowres:" + small)
        with pytest.raises(ValueError, match="targets: dataset 'lowres:"):
            data.check_name("lowres:" + small, allow_download=True)
    with pytest.raises(ValueError, match="change nothing"):
        data.load("lowres:digits", "test")


def _jpeg(path, rng, size=(48, 40)):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_food101_from_torchvision_layout(tmp_path, monkeypatch):
    import json
    monkeypatch.setattr(data, "_download", lambda *a: pytest.fail("must not download"))
    rng = np.random.default_rng(0)
    d = tmp_path / "food-101"
    meta = {"train": {"pizza": ["pizza/1", "pizza/2"], "apple_pie": ["apple_pie/7"]},
            "test": {"pizza": ["pizza/3"], "apple_pie": ["apple_pie/8", "apple_pie/9"]}}
    for split, m in meta.items():
        for rels in m.values():
            for rel in rels:
                _jpeg(d / "images" / f"{rel}.jpg", rng)
    with pytest.raises(data.DatasetUnavailable, match="food101"):
        data.load("food101", "train", root=tmp_path)       # no meta yet: not complete
    (d / "meta").mkdir()
    for split, m in meta.items():
        (d / "meta" / f"{split}.json").write_text(json.dumps(m))
    data._load_image_files.cache_clear()
    x, y, classes = data.load("food101", "train", root=tmp_path)
    assert classes == ["apple_pie", "pizza"] and y.tolist() == [0, 1, 1]
    assert tuple(x.shape) == (3, 3, 224, 224) and x.dtype == torch.uint8
    xt, yt, _ = data.load("food101", "test", root=tmp_path)
    assert yt.tolist() == [0, 0, 1] and xt.dtype == torch.uint8 and int(xt.max()) > 0
    assert data.info("food101").num_classes == 101 and data.info("lowres:food101").size == 32


def _caltech_standin(root):
    rng = np.random.default_rng(1)
    d = root / "caltech101" / "101_ObjectCategories"
    sizes = {"BACKGROUND_Google": 3, "Faces": 4, "accordion": 3, "ant": 33}
    for c, n in sizes.items():
        for i in range(1, n + 1):
            _jpeg(d / c / f"image_{i:04d}.jpg", rng)


def test_caltech101_from_torchvision_layout_with_a_fixed_split(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_download", lambda *a: pytest.fail("must not download"))
    _caltech_standin(tmp_path)
    data._load_image_files.cache_clear()
    x, y, classes = data.load("caltech101", "train", root=tmp_path)
    xt, yt, _ = data.load("caltech101", "test", root=tmp_path)
    assert classes == ["Faces", "accordion", "ant"]          # background dropped, sorted
    # 30 per class for training (all but one where a class is smaller), the rest test
    assert np.bincount(y.numpy()).tolist() == [3, 2, 30] and np.bincount(yt.numpy()).tolist() == [1, 1, 3]
    assert tuple(x.shape[1:]) == (3, data.FOLDER_SIZE, data.FOLDER_SIZE)
    # the split is fixed: disjoint, and the same on every load
    flat = lambda t: {tuple(v.flatten()[:64].tolist()) for v in t}
    assert not flat(x) & flat(xt)
    data._load_image_files.cache_clear()
    assert torch.equal(data.load("caltech101", "train", root=tmp_path)[0], x)


def test_export_image_folder_keeps_the_split_for_stylized_copies(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_download", lambda *a: pytest.fail("must not download"))
    _caltech_standin(tmp_path / "tv")
    data._load_image_files.cache_clear()
    _, y, classes = data.load("caltech101", "test", root=tmp_path / "tv")
    out = data.export_image_folder("caltech101", tmp_path / "if", root=tmp_path / "tv")
    x2, y2, classes2 = data.load(f"folder:{out}", "test")
    assert classes2 == classes and torch.equal(y2, y)
    assert len(list((out / "train").rglob("*.jpg"))) == 35
    crop = data.export_image_folder("caltech101", tmp_path / "crop", center_crop=True,
                                    root=tmp_path / "tv")
    from PIL import Image
    pngs = sorted((crop / "test").rglob("*.png"))
    assert len(pngs) == len(y) and Image.open(pngs[0]).size == (224, 224)
    with pytest.raises(ValueError, match="name='cifar10'"):
        data.export_image_folder("cifar10", tmp_path / "x")


@pytest.mark.parametrize("name, cls", [("food101", "Food101"), ("caltech101", "Caltech101")])
def test_food101_caltech101_download_through_torchvision(tmp_path, monkeypatch, name, cls):
    import torchvision.datasets as tvd
    calls = []

    def fake(root, *a, download=False, **k):
        calls.append((download, k.get("split")))
        rng = np.random.default_rng(0)
        if name == "food101":
            import json
            for s in ("train", "test"):
                _jpeg(Path(root) / "food-101" / "images" / "pizza" / f"{s}.jpg", rng)
                (Path(root) / "food-101" / "meta").mkdir(parents=True, exist_ok=True)
                (Path(root) / "food-101" / "meta" / f"{s}.json").write_text(
                    json.dumps({"pizza": [f"pizza/{s}"]}))
        else:
            for i in (1, 2):
                _jpeg(Path(root) / "caltech101" / "101_ObjectCategories" / "ant" / f"image_{i:04d}.jpg", rng)

    monkeypatch.setattr(tvd, cls, fake)
    data._load_image_files.cache_clear()
    x, y, _ = data.load(name, "test", root=tmp_path, allow_download=True)
    assert calls and all(c[0] for c in calls) and len(x) == 1
    assert not list(tmp_path.glob(".partial-*"))


def test_a_killed_download_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    def dies_half_way(name, root):
        raw = root / "KMNIST" / "raw"
        raw.mkdir(parents=True)
        _write_idx(raw / "train-images-idx3-ubyte", _rng_images(10, 1, 28)[:, 0], gz=False)
        raise KeyboardInterrupt  # killed after the first file
    monkeypatch.setattr(data, "_download", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        data.load("kmnist", "train", root=tmp_path, allow_download=True)
    assert not list(tmp_path.rglob("*ubyte*"))


def test_derived_targets_stylized_and_lowpass():
    x, y, names = data.load("digits", "test")
    xs, ys, names_s = data.load("stylized:digits", "test")
    xl, yl, _ = data.load("lowpass4:digits", "test")
    assert xs.shape == xl.shape == x.shape and torch.equal(ys, y) and torch.equal(yl, y)
    assert names_s == names and not torch.equal(xs, x) and not torch.equal(xl, x)
    assert data.load("stylized:digits", "test")[0] is xs  # memoised
    from robust_transfer import images
    np.testing.assert_allclose(xl.numpy(), images.downsample(x, 4).numpy())
    i = data.info("lowpass4:digits")
    assert (i.num_classes, i.size, i.train_size) == (10, 28, data.info("digits").train_size)
    assert "28 px -> 7 px" in i.description and "12 styles" in data.info("stylized:mnist5k").description
    assert data.derived("lowpass2.5:mnist5k") == ("mnist5k", "lowpass", 2.5)
    assert data.derived("digits") is None
    # the stylizing photos are held apart from the textures target's photos
    assert not set(data.STYLE_PHOTOS) & set(data.TEXTURE_PHOTOS)
    data.check_name("stylized:digits")
    for bad, match in (("lowpassx:digits", "factor"), ("lowpass1:digits", "factor"),
                       ("stylized:", "base"), ("stylized:nope", "unknown"),
                       ("lowpass4:nope", "unknown"), ("stylized:cifar10", "grey")):
        with pytest.raises(ValueError, match=match):
            data.check_name(bad)
