"""Section 2 at full resolution: image-file targets held at the ImageNet sources' 224 px as
memory-mapped uint8, their 32 px low-resolution copies, a transfer run at 224 px on a stand-in
image folder, and the paper preset's Section 2 grid (the authors' Food-101 runs)."""
import dataclasses
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robust_transfer import cli, config, data, models, shape_study as ss, sweep, transfer, zoo
from robust_transfer.config import Config

CLASSES = ("cat", "dog", "owl")


@pytest.fixture
def standin(tmp_path, monkeypatch):
    """An image folder of 3 classes, 6 training and 2 test images each (random photos of
    mixed sizes and aspect ratios, PNG and JPEG), in an empty cache."""
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("test", 2)):
        for k, c in enumerate(CLASSES):
            (tmp_path / "f" / split / c).mkdir(parents=True)
            for i in range(count):
                h, w = rng.integers(180, 400, 2)
                img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                img[..., k] = 255 - img[..., k] // 4     # a colour cue per class
                ext = "png" if i % 2 else "jpg"
                Image.fromarray(img).save(tmp_path / "f" / split / c / f"{i}.{ext}")
    data._load_image_files.cache_clear()
    transfer.target_arrays.cache_clear()
    yield f"folder:{tmp_path / 'f'}"
    data._load_image_files.cache_clear()
    transfer.target_arrays.cache_clear()


def _mapped(path: Path) -> bool:
    """True when ``path`` is memory-mapped into this process."""
    return str(path) in Path("/proc/self/maps").read_text()


def test_image_file_targets_are_held_at_the_imagenet_sources_resolution():
    sizes = {zoo.spec(s).image_size for s in zoo.list_sources()
             if zoo.spec(s).dataset == "imagenet"}
    assert sizes == {data.FOLDER_SIZE} == {224}
    for name in ("food101", "caltech101"):
        assert data.info(name).size == 224 and data.info("lowres:" + name).size == 32
    with pytest.raises(ValueError, match="lowres:food101"):   # no float copy of the whole set
        data.info("lowpass4:food101")
    assert data.version_name("lowres", "food101", 4) == "lowres:food101"
    assert data.version_name("lowpass", "digits", 4.0) == "lowpass4:digits"


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")
def test_folder_held_as_a_memory_mapped_uint8_cache_and_its_lowres_copy(standin):
    x, y, classes = data.load(standin, "train")
    assert classes == list(CLASSES) and np.bincount(y.numpy()).tolist() == [6, 6, 6]
    assert tuple(x.shape) == (18, 3, 224, 224) and x.dtype == torch.uint8
    files = sorted(Path(data.cache_dir("datasets", "folders")).glob("*.npy"))
    assert len(files) == 1 and _mapped(files[0])                # read from disk, not copied
    assert torch.equal(torch.from_numpy(np.load(files[0])), x)
    # the authors' low resolution: 224 -> 32 px (held as uint8, cached) -> 224 px by the model
    xl, yl, _ = data.load("lowres:" + standin, "train")
    assert tuple(xl.shape) == (18, 3, 32, 32) and xl.dtype == torch.uint8 and torch.equal(y, yl)
    low = [f for f in Path(data.cache_dir("datasets", "folders")).glob("*.npy") if f != files[0]]
    assert len(low) == 1 and _mapped(low[0])
    expected = data.to_source_format(x, 3, 32).mul(255).round()
    assert (xl.float() - expected).abs().max() <= 1
    back = data.to_source_format(xl, 3, 224)
    assert back.shape == (18, 3, 224, 224) and back.dtype == torch.float32
    # detail above 16 cycles per image is gone; the colour per class stays
    spec = lambda im: torch.fft.rfft2(im - im.mean((-2, -1), keepdim=True)).abs()
    band = (slice(None), slice(None), slice(24, 80), slice(24, 80))
    orig = data.to_source_format(x, 3, 224)
    assert spec(back)[band].mean() < 0.05 * spec(orig)[band].mean()
    assert torch.allclose(back.mean((-2, -1)), orig.mean((-2, -1)), atol=0.02)


@pytest.mark.slow   # a ResNet-8 at 224 px, two runs (make test runs it; make test-fast skips it)
def test_transfer_run_at_224_px_on_the_standin_folder(standin):
    """A random-weight ResNet-8 seeing 224 px RGB, the authors' recipe (augmentation at 224
    px, 1 unfrozen block), on the original and the low-resolution copy: seconds."""
    torch.manual_seed(0)
    model = models.build("resnet8", 1000, 3).eval()
    model.input_format = (3, 224)                     # as zoo.load sets an ImageNet source's
    cfg = dataclasses.replace(Config(), recipe="authors", augment=True, epochs=1, batch_size=9,
                              authors_min_steps=0,
                              val_size=3, main_blocks=1)
    t0 = time.perf_counter()
    for target in (standin, "lowres:" + standin):
        r = transfer.run("standin/resnet8", target, 9, 1, 0, cfg, model=model)
        assert r["recipe"] == "authors" and r["epochs"] == 1 and r["n_test"] == 6
        assert 0 <= r["test_acc"] <= 100 and np.isfinite(r["train_loss_curve"]).all()
    assert time.perf_counter() - t0 < 60
    x_tr, *_ = transfer.target_arrays(standin, False)
    assert x_tr.dtype == torch.uint8 and x_tr.shape[-1] == 224   # never a float copy


def test_paper_preset_section2_grid_is_the_authors_food101_grid():
    """The authors' tools/batch.py for Food-101: natural and L2 eps 0.05 / 0.25 / 1 sources x
    (original, low resolution) x (400: 3 seeds, 1600: 2, 6400, 25600, full set: 1 each), 3
    unfrozen blocks, 150 epochs: 4 x 2 x 8 = 64 runs."""
    cfg = config.resolve("paper")
    c2 = ss.transfer_config(cfg)
    cells = sweep.cells(c2)
    sources = ("paper/imagenet/natural", "salman2020/imagenet/l2/0.05",
               "salman2020/imagenet/l2/0.25", "salman2020/imagenet/l2/1")
    assert [zoo.spec(s).eps for s in sources] == [0.0, 0.05, 0.25, 1.0]
    full = data.info("food101").train_size - cfg.val_size
    schedule = {400: 3, 1600: 2, 6400: 1, 25600: 1, full: 1}
    expected = {(s, t, 3, n, seed, "authors") for s in sources
                for t in ("food101", "lowres:food101") for n, k in schedule.items()
                for seed in range(k)}
    got = [(c["source"], c["target"], c["unfrozen_blocks"], c["n"], c["seed"], c["recipe"])
           for c in cells]
    assert len(got) == len(set(got)) == len(expected) == 64 and set(got) == expected
    assert {transfer.epochs_for(c2, n) for n in schedule} == {150}
    assert Counter(c["target"] for c in cells) == {"food101": 32, "lowres:food101": 32}
    # the mini preset's experiment: head-only, every seed, three versions of each 28 px target
    m2 = ss.transfer_config(config.resolve("mini"))
    assert m2.unfrozen_blocks == (0,) and not m2.full_set and not m2.seed_counts
    assert m2.targets == ("digits", "stylized:digits", "lowpass4:digits",
                          "mnist5k", "stylized:mnist5k", "lowpass4:mnist5k")


def test_section2_fields_are_validated():
    for over, name in [(dict(shape_seed_counts=[1]), "shape_seed_counts"),
                       (dict(shape_seed_counts=[1, 4]), "shape_seed_counts"),
                       (dict(shape_versions=["stylized"]), "shape_versions"),
                       (dict(shape_versions=["original", "blurred"]), "shape_versions"),
                       (dict(shape_blocks=4), "shape_blocks"),
                       (dict(shape_sources=["paper/imagenet/l2/7"]), "shape_sources"),
                       (dict(seed_counts=[1]), "seed_counts")]:
        with pytest.raises(ValueError, match=name):
            config.resolve("tiny", **over)
    with pytest.raises(ValueError, match="lowres:"):          # 28 px digits: would change nothing
        config.resolve("tiny", shape_versions=["original", "lowres"])


def test_status_counts_section2_offline(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("RT_DATA_DIR", str(tmp_path))         # no data here: registry sizes
    assert cli.main(["status", "--preset", "paper", "--no-calibrate"]) == 0
    out = capsys.readouterr().out
    assert "7,840" in out                                      # 7,776 + 64
    assert "Section 1                     7,776  missing runs of 7,776" in out
    assert ("Section 2                        64  missing runs of 64 (targets food101, "
            "lowres:food101; 133,380,000 training images; epochs 150 per run)") in out
