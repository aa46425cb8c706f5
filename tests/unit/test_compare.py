"""robust-transfer compare: sources (a robustness-format ResNet-50 checkpoint, a torchvision
state dict; random weights) transferred to a small image folder of real images (sklearn digits
exported as PNG, with a stray and a hidden file), the report, the store and the refusals."""
import json

import numpy as np
import pytest
import torch
import torchvision

from robust_transfer import cli, data, transfer
from robust_transfer.chapters import compare
from robust_transfer.store import Store

torch.set_num_threads(1)
SIZE = 32            # the folder is read at 32 px (--image-size): ResNet-50 runs at any size
ARGS = ["--n", "3,6", "--seeds", "0,1", "--epochs", "2", "--val-size", "3",
        "--image-size", str(SIZE), "--no-calibrate", "--quiet"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """digits 0, 1, 2 as 8x8 PNGs: train/<class>/ 10 each, test/<class>/ 4 each; plus a stray
    text file, a hidden file and a hidden folder, which must be skipped."""
    from PIL import Image
    from sklearn.datasets import load_digits
    d = load_digits()
    root = tmp_path_factory.mktemp("digits_folder")
    for c in range(3):
        imgs = d.images[d.target == c]
        for split, part in (("train", imgs[:10]), ("test", imgs[10:14])):
            out = root / split / f"digit{c}"
            out.mkdir(parents=True)
            for i, im in enumerate(part):
                Image.fromarray((im * 255 / 16).astype(np.uint8)).save(out / f"{i}.png")
    (root / "train" / "digit0" / "README.txt").write_text("not an image")
    (root / "train" / "digit1" / ".DS_Store").write_bytes(b"\0junk")
    (root / "train" / ".thumbs").mkdir()
    return root


def head_verdict_shown(page):
    return any(f"class='{v}'" in page for v in compare.VERDICTS)


def _random_resnet50():
    torch.manual_seed(0)
    return torchvision.models.resnet50(weights=None, num_classes=1000).eval()


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A robustness-format file ({"model": {"module.model.*", "module.normalizer.*"}, ...}) and
    a plain torchvision state dict, both random ResNet-50s (different weights)."""
    d = tmp_path_factory.mktemp("sources")
    net = _random_resnet50()
    sd = {f"module.model.{k}": v for k, v in net.state_dict().items()}
    sd["module.normalizer.new_mean"] = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    sd["module.normalizer.new_std"] = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.save({"model": sd, "epoch": 90}, d / "robust_l2_3.pt")
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), d / "natural.pth")
    return d


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "rt_cache"))


def test_folder_reads_with_imagefolder_semantics(folder):
    name = data.folder_name(folder, SIZE)
    x, y, classes = data.load(name, "train")
    assert classes == ["digit0", "digit1", "digit2"]           # .thumbs skipped
    assert x.dtype == torch.uint8 and tuple(x.shape) == (30, 3, SIZE, SIZE)  # no stray files
    assert y.tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert data.info(name).train_size == 30 and data.info(name).test_size == 12
    # a second load maps the cached file: same images
    data._load_image_files.cache_clear()
    assert torch.equal(data.load(name, "train")[0], x)


def test_one_tree_folder_is_split_with_its_seed(tmp_path):
    from PIL import Image
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.new("RGB", (20, 10), (40 * i, 0, 0)).save(tmp_path / c / f"{i}.jpg")
    meta0 = data.folder_files(data.folder_name(tmp_path, 16, 0))
    meta1 = data.folder_files(data.folder_name(tmp_path, 16, 1))
    assert meta0["layout"] == "one tree" and len(meta0["test"][0]) == 2
    assert len(meta0["train"][0]) == 8 and meta0["test"][0] != meta1["test"][0]


def test_compare_report_store_and_rerun(folder, sources, tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["compare", "--target", f"folder:{folder}", "--sources",
            f"natural={sources / 'natural.pth'}", f"robust={sources / 'robust_l2_3.pt'}",
            "--out", str(out), *ARGS]
    assert cli.main(argv) == 0
    page = (out / "index.html").read_text()
    assert "data:image/png;base64," in page and head_verdict_shown(page)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    head = json.loads((out / "headline.json").read_text())
    assert [h["source"] for h in head] == ["robust"] and head[0]["verdict"] in compare.VERDICTS
    # the report's numbers are direct transfer.run calls
    name = data.folder_name(folder, SIZE)
    store = compare.store_for(folder)
    rows = store.frame()
    assert len(rows) == 2 * 2 * 2                       # sources x n x seeds
    cfg = compare.make_config(n_values=(3, 6), seeds=(0, 1), unfrozen_blocks=(0,), epochs=2,
                              val_size=3)
    for label, f in (("natural", "natural.pth"), ("robust", "robust_l2_3.pt")):
        src = compare.parse_source(f"{label}={sources / f}")
        model, _ = compare.load_source(src)
        for n in (3, 6):
            for seed in (0, 1):
                got = rows[(rows.source == src.key) & (rows.n == n) & (rows.seed == seed)]
                direct = transfer.run(src.key, name, n, 0, seed, cfg, model=model)
                assert float(got["test_acc"].iloc[0]) == direct["test_acc"]
    # a re-run computes nothing (and says so)
    capsys.readouterr()
    calls = []
    orig = transfer.run
    try:
        transfer.run = lambda *a, **k: calls.append(a) or orig(*a, **k)
        assert cli.main(argv) == 0
    finally:
        transfer.run = orig
    assert calls == [] and "nothing missing" in capsys.readouterr().out


def test_bad_folder_and_unreadable_checkpoint_are_refused_before_compute(
        folder, sources, tmp_path, monkeypatch, capsys):
    def boom(*a, **k):
        raise AssertionError("computed")
    monkeypatch.setattr(transfer, "run", boom)
    monkeypatch.setattr(transfer, "target_arrays", boom)
    bad = tmp_path / "bad"
    (bad / "train" / "cat").mkdir(parents=True)
    (bad / "test" / "cat").mkdir(parents=True)
    (bad / "train" / "cat" / "notes.txt").write_text("x")
    srcs = [str(sources / "natural.pth"), str(sources / "robust_l2_3.pt")]
    assert cli.main(["compare", "--target", f"folder:{bad}", "--sources", *srcs, *ARGS]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "'cat' has no image" in err
    assert cli.main(["compare", "--target", f"folder:{tmp_path / 'nope'}", "--sources", *srcs,
                     *ARGS]) == 2
    assert "nope" in capsys.readouterr().err
    junk = tmp_path / "broken.pt"
    junk.write_bytes(b"this is not a checkpoint")
    assert cli.main(["compare", "--target", f"folder:{folder}", "--sources", srcs[0], str(junk),
                     *ARGS]) == 2
    assert str(junk) in capsys.readouterr().err
    assert cli.main(["compare", "--target", f"folder:{folder}", "--sources", srcs[0],
                     "salman2020/imagenet/l2/33", *ARGS]) == 2
    assert "salman2020/imagenet/l2/33" in capsys.readouterr().err
