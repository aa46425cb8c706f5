"""Tests for robust_transfer.cue_conflict (the ImageNet-16 mapping, the Geirhos stimulus loader
and its download) and the shared staged-download helper robust_transfer.cache.staged_dir."""
import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from robust_transfer import cache, cue_conflict as cc


# --------------------------------------------------------------------------- mapping
def test_imagenet_16_index_lists():
    cats = list(cc.IMAGENET_16_INDICES)
    assert tuple(cats) == cc.CATEGORIES_16 and len(cats) == 16
    allidx = [i for v in cc.IMAGENET_16_INDICES.values() for i in v]
    assert len(allidx) == len(set(allidx)) and max(allidx) < 1000
    # spot checks against the authors' human_categories.py
    assert cc.IMAGENET_16_INDICES["airplane"] == (404,)
    assert cc.IMAGENET_16_INDICES["oven"] == (766,)
    assert len(cc.IMAGENET_16_INDICES["dog"]) == 109 and len(cc.IMAGENET_16_INDICES["bird"]) == 49


def test_imagenet_to_16_averages_member_probabilities():
    p = np.zeros((2, 1000))
    dog = list(cc.IMAGENET_16_INDICES["dog"])
    p[0, dog] = 0.5 / len(dog)         # dog has more total mass ...
    p[0, 499] = 0.1                    # ... but knife has the higher mean
    p[0, 0] = 0.4
    p[1, 404] = 1.0
    scores = cc.imagenet_to_16(p)
    cats = np.array(cc.CATEGORIES_16)
    assert list(cats[scores.argmax(1)]) == ["knife", "airplane"]
    np.testing.assert_allclose(scores[0, list(cats).index("dog")], 0.5 / len(dog))
    generic = cc.imagenet_to_16(np.array([[0.1, 0.2, 0.7]]), {"a": (0, 1), "b": (2,)})
    np.testing.assert_allclose(generic, [[0.15, 0.7]])
    with pytest.raises(ValueError, match="exceed"):
        cc.imagenet_to_16(np.ones((1, 3)) / 3, {"a": (5,)})


# --------------------------------------------------------------------------- loader
def _write_standin(root, names):
    for rel in names:
        f = root / cc.GEIRHOS_SUBDIR / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), len(rel) * 7 % 255, np.uint8)).save(f)


def test_load_cue_conflict_standin_folder(tmp_path):
    names = ["bear/bear1-bottle3.png", "bear/bear2-bear1.png", "cat/cat7-elephant1.png",
             "knife/knife3-clock2.png"]
    _write_standin(tmp_path, names)
    x, shapes, textures, files = cc.load_cue_conflict(tmp_path, size=16)
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    assert list(shapes) == ["bear", "bear", "cat", "knife"]
    assert list(textures) == ["bottle", "bear", "elephant", "clock"]
    assert files == names
    # the folder itself and an extracted archive's parent are found too
    assert len(cc.load_cue_conflict(tmp_path / cc.GEIRHOS_SUBDIR, size=16)[0]) == 4
    arch = tmp_path / "a"
    _write_standin(arch / "texture-vs-shape-master", names[:2])
    assert len(cc.load_cue_conflict(arch, size=16)[0]) == 2


def test_load_cue_conflict_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing")):
        cc.load_cue_conflict(tmp_path / "nothing")
    _write_standin(tmp_path, ["bear/bear1-teapot3.png"])
    with pytest.raises(ValueError, match="teapot"):
        cc.load_cue_conflict(tmp_path)
    assert cc.parse_cue_conflict_name("x/cat7-elephant1.png") == ("cat", "elephant")
    with pytest.raises(ValueError, match="not a cue-conflict file name"):
        cc.parse_cue_conflict_name("cat7.png")


def test_every_archive_kind_loads_with_its_labels(tmp_path):
    assert list(cc.GEIRHOS_KINDS) == ["cue_stylized", "edges", "silhouette"]
    for kind, rel in (("edges", "bird/bird3.png"), ("silhouette", "oven/oven1.png"),
                      ("silhouette", "oven/oven10.png")):
        f = tmp_path / "stimuli" / cc.GEIRHOS_KINDS[kind] / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(f)
    x, shapes, textures, files = cc.load_cue_conflict(tmp_path, kind="silhouette", size=8)
    assert x.shape == (2, 3, 8, 8) and list(shapes) == ["oven", "oven"] and textures is None
    assert files == ["oven/oven1.png", "oven/oven10.png"]
    assert list(cc.load_cue_conflict(tmp_path, kind="edges", size=8)[1]) == ["bird"]
    # the cue-conflict images are not there: named, with the path looked at
    with pytest.raises(FileNotFoundError, match="no cue_stylized stimuli"):
        cc.load_cue_conflict(tmp_path)
    # only the cue-conflict folder may be passed as root itself
    with pytest.raises(FileNotFoundError, match="no edges stimuli"):
        cc.load_cue_conflict(tmp_path / "stimuli" / "edges", kind="edges")
    with pytest.raises(ValueError, match="stimulus kind 'texture' is unknown"):
        cc.load_cue_conflict(tmp_path, kind="texture")
    assert cc.parse_stimulus_name("a/cat7.png", "edges") == ("cat", None)
    assert cc.parse_stimulus_name("cat7-dog1.png", "cue_stylized") == ("cat", "dog")
    with pytest.raises(ValueError, match="not a silhouette stimulus file name"):
        cc.parse_stimulus_name("cat7-dog1.png", "silhouette")


def _archive(members):
    buf, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png, format="PNG")
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("texture-vs-shape-master/README.md", "x")
        for name in members:  # "edges/..." and "filled-silhouettes/..." name their folder
            sub = "stimuli" if name.startswith(("edges/", "filled-")) else cc.GEIRHOS_SUBDIR
            zf.writestr(f"texture-vs-shape-master/{sub}/{name}", png.getvalue())
    return buf.getvalue()


def _fake_urlopen(monkeypatch, blob):
    calls = []

    def fake_urlopen(url):
        calls.append(url)
        return io.BytesIO(blob)

    monkeypatch.setattr(cc.urllib.request, "urlopen", fake_urlopen)
    return calls


def test_load_cue_conflict_download_only_when_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path / "cache"))
    calls = _fake_urlopen(monkeypatch, _archive(["bear/bear1-cat2.png", "cat/cat1-bear2.png"]))
    root = tmp_path / "stimuli"
    with pytest.raises(FileNotFoundError, match="allow_download=True"):
        cc.load_cue_conflict(root)
    assert calls == []
    x, shapes, textures, _ = cc.load_cue_conflict(root, allow_download=True, size=8)
    assert calls == [cc.GEIRHOS_ARCHIVE_URL] and x.shape == (2, 3, 8, 8)
    assert list(shapes) == ["bear", "cat"] and list(textures) == ["cat", "bear"]
    assert not (root / "README.md").exists()
    assert not [p for p in root.rglob(".partial-*")]  # no staging folder left behind


def test_the_download_extracts_every_kind_once(tmp_path, monkeypatch):
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path / "cache"))
    calls = _fake_urlopen(monkeypatch, _archive(["bear/bear1-cat2.png", "edges/cat/cat1.png",
                                                 "filled-silhouettes/dog/dog4.png"]))
    root = tmp_path / "tvs"
    assert list(cc.load_cue_conflict(root, kind="edges", allow_download=True, size=8)[1]) == ["cat"]
    assert list(cc.load_cue_conflict(root, kind="silhouette", size=8)[1]) == ["dog"]
    assert list(cc.load_cue_conflict(root, size=8)[2]) == ["cat"]
    assert calls == [cc.GEIRHOS_ARCHIVE_URL]


def test_a_bad_archive_leaves_no_partial_stimulus_set(tmp_path, monkeypatch):
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path / "cache"))
    # the first member is fine, the second is not: nothing may land under root
    _fake_urlopen(monkeypatch, _archive(["bear/bear1-cat2.png", "bear/teapot1-cat2.png"]))
    root = tmp_path / "stimuli"
    with pytest.raises(ValueError, match="teapot"):
        cc.load_cue_conflict(root, allow_download=True)
    assert not list(root.rglob("*.png")) and not list(root.rglob(".partial-*"))


# --------------------------------------------------------------------------- cache.staged_dir
def test_staged_dir_replaces_the_folder_only_on_success(tmp_path):
    dest = tmp_path / "set"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with cache.staged_dir(dest) as staging:
            assert staging.parent == tmp_path and staging.name.startswith(".partial-set-")
            (staging / "new.txt").write_text("new")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]   # staging removed
    assert [p.name for p in dest.iterdir()] == ["old.txt"]          # old set untouched
    with cache.staged_dir(dest) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in dest.iterdir()] == ["new.txt"]          # replaced as a whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_staged_dir_moves_only_the_listed_files_and_keeps_the_rest(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.bin").write_text("k")

    def finished(staging):
        return [staging / "ds" / "raw" / "a"]

    with cache.staged_dir(tmp_path, files=finished) as staging:
        assert staging.parent == tmp_path
        (staging / "ds" / "raw").mkdir(parents=True)
        (staging / "ds" / "raw" / "a").write_text("a")
        (staging / "ds" / "raw" / "a.gz").write_text("archive, not listed")
    assert (tmp_path / "ds" / "raw" / "a").read_text() == "a"
    assert not (tmp_path / "ds" / "raw" / "a.gz").exists()
    assert (tmp_path / "other" / "keep.bin").exists()
    assert not list(tmp_path.glob(".partial-*"))
    with pytest.raises(KeyError):
        with cache.staged_dir(tmp_path, files=finished) as staging:
            (staging / "ds" / "raw").mkdir(parents=True)
            (staging / "ds" / "raw" / "a").write_text("half")
            raise KeyError("killed")
    assert (tmp_path / "ds" / "raw" / "a").read_text() == "a"
    assert not list(tmp_path.glob(".partial-*"))
