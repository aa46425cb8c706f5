"""Tests for robust_transfer.shape_bias: metric, stimuli, probes, Geirhos loader, cache."""
import json
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

import robust_transfer
from robust_transfer import models, shape_bias as sb


# --------------------------------------------------------------------------- metric
def test_shape_bias_hand_made_list():
    shape = [0, 1, 2, 3, 4, 5, 6, 7, 8, 8]
    texture = [1, 2, 3, 4, 5, 6, 7, 8, 8, 8]  # last two are same-class: excluded
    pred = [0, 1, 2, 3, 5, 6, 9, 9, 8, 8]     # 4 shape, 2 texture, 2 neither
    r = sb.shape_bias(pred, shape, texture, n_boot=500)
    assert r["n_conflict"] == 8
    assert (r["n_shape"], r["n_texture"]) == (4, 2)
    assert r["shape_bias"] == pytest.approx(4 / 6)
    assert r["coverage"] == pytest.approx(6 / 8)
    assert 0 <= r["ci_low"] <= r["shape_bias"] <= r["ci_high"] <= 1


def test_same_class_images_do_not_change_the_metric():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200)
    t = (s + rng.integers(1, 5, 200)) % 5
    pred = np.where(rng.random(200) < 0.6, s, t)
    base = sb.shape_bias(pred, s, t, n_boot=0)
    # add 50 same-class images, all "shape" decisions: must be ignored entirely
    s2, t2, p2 = (np.concatenate([a, np.full(50, 3)]) for a in (s, t, pred))
    more = sb.shape_bias(p2, s2, t2, n_boot=0)
    assert more["shape_bias"] == base["shape_bias"]
    assert more["coverage"] == base["coverage"] == 1.0
    assert more["n_conflict"] == base["n_conflict"] == 200


def test_shape_bias_extremes_strings_and_ci():
    s, t = np.array(["cat", "dog"] * 50), np.array(["dog", "car"] * 50)
    assert sb.shape_bias(s, s, t)["shape_bias"] == 1.0
    assert sb.shape_bias(t, s, t)["shape_bias"] == 0.0
    none = sb.shape_bias(np.array(["knife"] * 100), s, t)
    assert np.isnan(none["shape_bias"]) and none["coverage"] == 0.0
    rng = np.random.default_rng(1)
    pred = np.where(rng.random(100) < 0.7, s, t)
    a, b = sb.shape_bias(pred, s, t, seed=3), sb.shape_bias(pred, s, t, seed=3)
    assert a == b  # deterministic per seed
    big = sb.shape_bias(np.tile(pred, 16), np.tile(s, 16), np.tile(t, 16), seed=3)
    assert big["ci_high"] - big["ci_low"] < (a["ci_high"] - a["ci_low"]) / 2
    with pytest.raises(ValueError, match="equal length"):
        sb.shape_bias([0, 1], [0, 1, 2], [1, 2, 0])


def test_accuracy_ci_wilson():
    r = sb.accuracy_ci([True] * 80 + [False] * 20)
    assert r["value"] == 0.8 and r["n"] == 100
    assert 0.70 < r["ci_low"] < 0.8 < r["ci_high"] < 0.88


# --------------------------------------------------------------------------- Fourier stimuli
def _unit_phase(z):
    return z / np.maximum(np.abs(z), 1e-300)


@pytest.mark.parametrize("hw", [(16, 16), (15, 17)])
def test_fourier_recombination_keeps_phase_of_a_and_amplitude_of_b(hw):
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 2, *hw)), rng.random((3, 2, *hw))
    raw = sb.fourier_recombine(a, b)
    assert raw.dtype == np.float64 and raw.shape == a.shape
    fa, fb, fr = np.fft.fft2(a), np.fft.fft2(b), np.fft.fft2(raw)
    np.testing.assert_allclose(np.abs(fr), np.abs(fb), atol=1e-10)
    np.testing.assert_allclose(_unit_phase(fr), _unit_phase(fa), atol=1e-9)
    # swapped roles must fail the same check (the test can fail)
    assert not np.allclose(np.abs(fr), np.abs(fa), atol=1e-3)
    # the [0,1] mapping: no clipping, DC kept, non-DC phase kept, amplitudes scaled by one factor
    mapped = sb.to_unit_range(raw)
    assert mapped.min() >= 0 and mapped.max() <= 1
    fm = np.fft.fft2(mapped)
    np.testing.assert_allclose(fm[..., 0, 0], fr[..., 0, 0], rtol=1e-10)
    nondc = np.ones(hw, bool)
    nondc[0, 0] = False
    np.testing.assert_allclose(_unit_phase(fm)[..., nondc], _unit_phase(fa)[..., nondc], atol=1e-8)
    ratio = np.abs(fm)[..., nondc] / np.abs(fb)[..., nondc]
    for i in range(3):
        np.testing.assert_allclose(ratio[i], ratio[i].mean(), rtol=1e-8)
        assert 0 < ratio[i].mean() <= 1 + 1e-12


def test_to_unit_range_leaves_in_range_images_alone():
    x = np.random.default_rng(0).random((2, 1, 8, 8)) * 0.5 + 0.2
    np.testing.assert_allclose(sb.to_unit_range(x), x)


def _templates(n=10, size=12, seed=0):
    x = np.random.default_rng(seed).random((n, 1, size, size)).astype(np.float32)
    return torch.from_numpy(x)


def test_fourier_stimuli_deterministic_and_conflicting():
    x = _templates(40)
    y = np.arange(40) % 4
    a = sb.fourier_stimuli(x, y, 30, seed=5)
    b = sb.fourier_stimuli(x, y, 30, seed=5)
    c = sb.fourier_stimuli(x, y, 30, seed=6)
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all() and (a[2] == b[2]).all()
    assert not torch.equal(a[0], c[0])
    assert (a[1] != a[2]).all() and a[0].shape == (30, 1, 12, 12)
    assert a[0].min() >= 0 and a[0].max() <= 1


class _SpectrumMatcher(torch.nn.Module):
    """Nearest template by the (DC-free, normalised) Fourier amplitude or by the Fourier phase."""

    def __init__(self, templates, by):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.by = by
        self.register_buffer("t", self._feat(templates))

    def _feat(self, x):
        f = torch.fft.fft2(x.double()).flatten(1)[:, 1:]  # drop DC
        f = f.abs() if self.by == "amplitude" else f / f.abs().clamp_min(1e-12)
        if self.by == "amplitude":
            f = f / f.norm(dim=1, keepdim=True)
        return f

    def forward(self, x):
        f = self._feat(x)
        sim = (f @ self.t.conj().T).real if f.is_complex() else f @ self.t.T
        return sim.float()


def test_fourier_stimuli_separate_a_phase_reader_from_an_amplitude_reader():
    x = _templates(10)
    y = np.arange(10)
    imgs, s, t = sb.fourier_stimuli(x, y, 60, seed=0)
    for by, expected in (("phase", 1.0), ("amplitude", 0.0)):
        pred = sb.predict(_SpectrumMatcher(x, by), imgs)
        r = sb.shape_bias(pred, s, t, n_boot=0)
        assert r["shape_bias"] == expected and r["coverage"] == 1.0, by


# --------------------------------------------------------------------------- silhouette stimuli
def _blobs(n=20, size=28, seed=0):
    """Bright textured ellipses of varying size on a black background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        ry, rx = rng.uniform(5, 12, 2)
        inside = ((yy - size / 2) / ry) ** 2 + ((xx - size / 2) / rx) ** 2 <= 1
        out[i, 0] = inside * rng.uniform(0.3, 1.0, (size, size))
    return torch.from_numpy(out)


def test_texture_fill_keeps_silhouette_of_a_and_pixels_of_b():
    x = _blobs()
    y = np.arange(20) % 5
    imgs, s, t = sb.texture_fill_stimuli(x, y, 12, seed=1, patch=4)
    again = sb.texture_fill_stimuli(x, y, 12, seed=1, patch=4)
    assert torch.equal(imgs, again[0]) and (s != t).all()
    ia, ib = sb._pairs(y, 12, 1)
    masks = sb.silhouette_mask(x[ia])
    assert (imgs[:, 0].numpy()[~masks] == 0).all()
    for i in range(12):
        inside = imgs[i, 0].numpy()[masks[i]]
        assert np.isin(inside, x[ib[i], 0].numpy()).all()       # every value is B's
        assert (inside > 0).mean() > 0.95                       # patches come from inside B
    with pytest.raises(ValueError, match="patch"):
        sb.texture_fill_stimuli(x, y, 2, seed=0, patch=0)


# --------------------------------------------------------------------------- probes
def test_patch_shuffle_permutes_tiles():
    x = _templates(5, size=12)
    out = sb.patch_shuffle(x, 3, seed=0)
    assert torch.equal(sb.patch_shuffle(x, 1, seed=0), x)
    assert not torch.equal(out, x)
    tiles = lambda im: sorted(im[0, r:r + 4, c:c + 4].numpy().tobytes()  # noqa: E731
                              for r in range(0, 12, 4) for c in range(0, 12, 4))
    for i in range(5):
        assert tiles(out[i]) == tiles(x[i])
    with pytest.raises(ValueError, match=r"grid=5 .*allowed: \[1, 2, 3, 4, 6, 12\]"):
        sb.patch_shuffle(x, 5, seed=0)


def test_low_and_high_pass():
    x = _templates(4, size=16)
    assert torch.equal(sb.lowpass(x, 0), x)
    hf = lambda im: (im[..., :, 1:] - im[..., :, :-1]).pow(2).mean()  # noqa: E731
    assert hf(sb.lowpass(x, 1.0)) < 0.3 * hf(x)
    assert hf(sb.lowpass(x, 2.0)) < hf(sb.lowpass(x, 1.0))
    const = torch.full((2, 1, 8, 8), 0.3)
    np.testing.assert_allclose(sb.highpass(const, 1.0).numpy(), 0.5, atol=1e-6)
    with pytest.raises(ValueError, match="sigma"):
        sb.highpass(x, 0)


def test_lowres_removes_fine_detail():
    checker = torch.from_numpy((np.indices((64, 64)).sum(0) % 2).astype(np.float32))[None, None]
    out = sb.lowres(checker.repeat(2, 3, 1, 1), 32)
    assert out.shape == (2, 3, 64, 64)
    assert out.std() < 0.05 and abs(out.mean() - 0.5) < 0.05
    smooth = torch.linspace(0, 1, 64).view(1, 1, 1, 64).repeat(1, 1, 64, 1)
    assert (sb.lowres(smooth, 32) - smooth).abs().max() < 0.05
    assert torch.equal(sb.lowres(checker, 64), checker)
    with pytest.raises(ValueError, match="size"):
        sb.lowres(checker, 0)


def test_edge_map_and_silhouette():
    x = torch.zeros(1, 1, 10, 10)
    x[0, 0, 3:7, 3:7] = 1
    e = sb.edge_map(x)
    assert e.max() == 1 and e[0, 0, 5, 5] == 0 and e[0, 0, 0, 0] == 0
    # images are filtered one by one: a blank image beside the square has no edges
    pair = sb.edge_map(torch.cat([x, torch.zeros_like(x)]))
    assert torch.equal(pair[0], e[0]) and pair[1].abs().max() == 0
    ring = torch.zeros(1, 1, 10, 10)
    ring[0, 0, 2:8, 2:8] = 1
    ring[0, 0, 4:6, 4:6] = 0
    assert sb.silhouette_mask(ring)[0, 4, 4]  # holes are filled


def test_probe_source_rows_and_determinism():
    torch.manual_seed(0)
    model = models.build("resnet8", 4, 1).eval()
    x, y = _blobs(40), np.arange(40) % 4
    params = sb.ProbeParams(n_stimuli=16, blur_sigmas=(0.0, 1.0), shuffle_grids=(2, 4), n_boot=50)
    rows = sb.probe_source(model, x, y, params, seed=0)
    probes = [(r["probe"], r["param"]) for r in rows]
    assert ("lowpass", 0.0) in probes and ("lowpass", 1.0) in probes
    assert ("highpass", 1.0) in probes and ("highpass", 0.0) not in probes
    assert {p for p, _ in probes} >= {"clean", "patch_shuffle", "silhouette", "edges",
                                      "cue_fourier", "cue_silhouette"}
    clean = next(r for r in rows if r["probe"] == "clean")
    low0 = next(r for r in rows if r["probe"] == "lowpass" and r["param"] == 0.0)
    assert clean["value"] == low0["value"]
    for r in rows:
        assert r["metric"] in ("accuracy", "shape_bias")
        assert np.isnan(r["value"]) or 0 <= r["value"] <= 1
    assert json.dumps(rows, sort_keys=True) == json.dumps(
        sb.probe_source(model, x, y, params, seed=0), sort_keys=True)
    prebuilt = sb.build_probes(x, y, params, seed=0)
    assert json.dumps(rows) == json.dumps(sb.probe_source(model, None, None, params,
                                                          probes=prebuilt))
    other = sb.probe_source(model, x, y, params, seed=1)
    assert [r["value"] for r in other] != [r["value"] for r in rows]


# --------------------------------------------------------------------------- evaluate_sources cache
def test_evaluate_sources_caches_per_source(monkeypatch, tmp_path):
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    model = models.build("resnet8", 4, 1).eval()
    spec = types.SimpleNamespace(dataset="fashion_mnist", family="tiny/fmnist/natural", norm="natural",
                                 eps=0.0, seed=0, label="natural", in_channels=1, image_size=28)
    fake_zoo = types.SimpleNamespace(spec=lambda sid: spec,
                                     load=lambda sid, **kw: (model, {"sha256": "abc"}))
    fake_data = types.SimpleNamespace(
        load=lambda name, split, **kw: (_blobs(40), torch.arange(40) % 4, list("abcd")),
        to_source_format=lambda x, c, s: x)
    for name, mod in (("zoo", fake_zoo), ("data", fake_data)):
        monkeypatch.setitem(sys.modules, f"robust_transfer.{name}", mod)
        monkeypatch.setattr(robust_transfer, name, mod, raising=False)
    cfg = types.SimpleNamespace(n_stimuli=12, blur_sigmas=(0.0, 1.0), allow_download=False,
                                sources=("tiny/fmnist/natural/s0",),
                                torch_device=lambda: torch.device("cpu"))
    first = sb.evaluate_sources(cfg, progress=False)
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 1 and "shape_bias" in str(files[0])
    monkeypatch.setattr(sb, "probe_source", lambda *a, **k: pytest.fail("cache not used"))
    second = sb.evaluate_sources(cfg, progress=False)
    assert first.equals(second)
    assert set(first.columns) >= {"source", "family", "eps", "probe", "value", "ci_low"}
    summary = sb.summarize(first)
    assert (summary["ci_kind"] == "images").all() and (summary["n_seeds"] == 1).all()
    acc = sb.accuracy_table(summary)
    assert "lowpass σ=1" in acc.index and "patch_shuffle 4x4" in acc.index
    assert acc.notna().all().all()
    assert list(sb.shape_bias_table(summary).index) == ["natural"]


def test_summarize_and_trend():
    import pandas as pd
    rows = []
    for norm, eps, vals in (("natural", 0.0, (0.41, 0.42, 0.43)), ("l2", 1.0, (0.60, 0.61, 0.62)),
                            ("l2", 2.0, (0.71, 0.72, 0.73)), ("linf", 0.1, (0.40, 0.7, 0.1))):
        for seed, v in enumerate(vals):
            rows.append(dict(source=f"x/{norm}/{eps}/s{seed}", family=f"x/{norm}/{eps}",
                             norm=norm, eps=eps, source_seed=seed, label=norm, probe="cue_fourier",
                             param=float("nan"), metric="shape_bias", value=v, ci_low=v - .1,
                             ci_high=v + .1, coverage=0.5, n=100, chance=0.2))
    s = sb.summarize(pd.DataFrame(rows))
    nat = s[s["norm"] == "natural"].iloc[0]
    assert nat["value"] == pytest.approx(0.42) and nat["ci_kind"] == "seeds"
    assert nat["ci_low"] < 0.42 < nat["ci_high"]
    tr = sb.trend(s, "cue_fourier")
    assert tr["direction"] == "rises" and tr["delta"] == pytest.approx(0.30)
    assert tr["spearman"] == pytest.approx(1.0)
    assert sb.trend(s, "cue_fourier", norm="linf")["direction"] == "is flat"  # wide CI
    text = sb.findings(s)
    assert "Fourier-phase shape share (stimulus a) **rises**" in text
    assert "no paired" in text and "cannot be" in text


# --------------------------------------------------------------------------- paper scale
def test_imagenet_16_index_lists():
    cats = list(sb.IMAGENET_16_INDICES)
    assert tuple(cats) == sb.CATEGORIES_16 and len(cats) == 16
    allidx = [i for v in sb.IMAGENET_16_INDICES.values() for i in v]
    assert len(allidx) == len(set(allidx)) and max(allidx) < 1000
    # spot checks against the authors' human_categories.py
    assert sb.IMAGENET_16_INDICES["airplane"] == (404,)
    assert sb.IMAGENET_16_INDICES["oven"] == (766,)
    assert len(sb.IMAGENET_16_INDICES["dog"]) == 109 and len(sb.IMAGENET_16_INDICES["bird"]) == 49


def test_imagenet_to_16_averages_member_probabilities():
    p = np.zeros((2, 1000))
    dog = list(sb.IMAGENET_16_INDICES["dog"])
    p[0, dog] = 0.5 / len(dog)         # dog has more total mass ...
    p[0, 499] = 0.1                    # ... but knife has the higher mean
    p[0, 0] = 0.4
    p[1, 404] = 1.0
    scores = sb.imagenet_to_16(p)
    cats = np.array(sb.CATEGORIES_16)
    assert list(cats[scores.argmax(1)]) == ["knife", "airplane"]
    np.testing.assert_allclose(scores[0, list(cats).index("dog")], 0.5 / len(dog))
    generic = sb.imagenet_to_16(np.array([[0.1, 0.2, 0.7]]), {"a": (0, 1), "b": (2,)})
    np.testing.assert_allclose(generic, [[0.15, 0.7]])
    with pytest.raises(ValueError, match="exceed"):
        sb.imagenet_to_16(np.ones((1, 3)) / 3, {"a": (5,)})


def _write_standin(root, names):
    for rel in names:
        f = root / sb.GEIRHOS_SUBDIR / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), len(rel) * 7 % 255, np.uint8)).save(f)


def test_load_cue_conflict_standin_folder(tmp_path):
    names = ["bear/bear1-bottle3.png", "bear/bear2-bear1.png", "cat/cat7-elephant1.png",
             "knife/knife3-clock2.png"]
    _write_standin(tmp_path, names)
    x, shapes, textures, files = sb.load_cue_conflict(tmp_path, size=16)
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    assert list(shapes) == ["bear", "bear", "cat", "knife"]
    assert list(textures) == ["bottle", "bear", "elephant", "clock"]
    assert files == names
    # the folder itself and an extracted archive's parent are found too
    assert len(sb.load_cue_conflict(tmp_path / sb.GEIRHOS_SUBDIR, size=16)[0]) == 4
    arch = tmp_path / "a"
    _write_standin(arch / "texture-vs-shape-master", names[:2])
    assert len(sb.load_cue_conflict(arch, size=16)[0]) == 2
    # same-class stimulus (bear2-bear1) is excluded by the metric
    r = sb.shape_bias(shapes, shapes, textures, n_boot=0)
    assert r["n_conflict"] == 3 and r["shape_bias"] == 1.0


def test_load_cue_conflict_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing")):
        sb.load_cue_conflict(tmp_path / "nothing")
    _write_standin(tmp_path, ["bear/bear1-teapot3.png"])
    with pytest.raises(ValueError, match="teapot"):
        sb.load_cue_conflict(tmp_path)
    assert sb.parse_cue_conflict_name("x/cat7-elephant1.png") == ("cat", "elephant")


def test_probe_cue_conflict_with_a_fake_imagenet_model(tmp_path):
    names = ["bear/bear1-bottle3.png", "cat/cat2-dog1.png", "car/car1-car2.png"]
    _write_standin(tmp_path, names)

    class AlwaysBottle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            logits = torch.zeros(len(x), 1000)
            logits[:, 440] = 20.0  # a bottle class
            return logits

    (row,) = sb.probe_cue_conflict(AlwaysBottle(), tmp_path, n_boot=20)
    assert row["probe"] == "cue_stylized" and row["n"] == 2
    assert row["value"] == 0.0 and row["coverage"] == 0.5


def test_load_cue_conflict_download_only_when_allowed(tmp_path, monkeypatch):
    import io
    import zipfile
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path / "cache"))
    buf = io.BytesIO()
    png = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png, format="PNG")
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("texture-vs-shape-master/README.md", "x")
        for name in ("bear/bear1-cat2.png", "cat/cat1-bear2.png"):
            zf.writestr(f"texture-vs-shape-master/{sb.GEIRHOS_SUBDIR}/{name}", png.getvalue())
    calls = []

    def fake_urlopen(url):
        calls.append(url)
        return io.BytesIO(buf.getvalue())

    monkeypatch.setattr(sb.urllib.request, "urlopen", fake_urlopen)
    root = tmp_path / "stimuli"
    with pytest.raises(FileNotFoundError, match="allow_download=True"):
        sb.load_cue_conflict(root)
    assert calls == []
    x, shapes, textures, _ = sb.load_cue_conflict(root, allow_download=True, size=8)
    assert calls == [sb.GEIRHOS_ARCHIVE_URL] and x.shape == (2, 3, 8, 8)
    assert list(shapes) == ["bear", "cat"] and list(textures) == ["cat", "bear"]
    assert not (root / "README.md").exists()


def test_transfer_link_reads_the_store(tmp_path):
    import pandas as pd
    from robust_transfer import config, sweep, zoo
    from robust_transfer.store import Store
    cfg = config.resolve("tiny")
    store = Store(tmp_path / "results")
    assert sb.transfer_link(cfg, store).empty  # no rows: empty, no error
    bonus = {"natural": 0.0, "l2": 5.0, "linf": 2.0, "noise": -1.0}
    for run in sweep.grid(cfg):
        sp = zoo.spec(run["source"])
        extra = bonus[sp.norm] * (1 if run["target"] == "digits" else 0.2)
        acc = 50.0 + extra + run["seed"] + 0.5 * sp.seed
        store.add(run, dict(test_acc=acc, family=sp.family, norm=sp.norm, eps=sp.eps,
                            source_seed=sp.seed, source_label=sp.label), seconds=0.0)
    summary = pd.DataFrame([dict(family=zoo.spec(s).family, probe="cue_fourier", value=0.5)
                            for s in cfg.sources]).drop_duplicates()
    link = sb.transfer_link(cfg, store, summary)
    l2 = link[link["norm"] == "l2"]
    assert len(l2) == len(cfg.unfrozen_blocks) and "natural" not in set(link["norm"])
    np.testing.assert_allclose(l2["gain_shape_targets"], 5.0)
    np.testing.assert_allclose(l2["gain_texture_target"], 1.0)
    np.testing.assert_allclose(l2["shape_minus_texture"], 4.0)
    assert (link["shape_bias_fourier"] == 0.5).all()
    assert "Robust sources gain more on shape targets" in sb.findings(_toy_summary(), link)


def _toy_summary():
    import pandas as pd
    rows = [dict(family=f"x/{n}", norm=n, eps=e, label=n, probe="cue_fourier", param=np.nan,
                 metric="shape_bias", value=v, ci_low=v - .05, ci_high=v + .05, coverage=.3,
                 n_seeds=1, chance=.2, ci_kind="images")
            for n, e, v in (("natural", 0.0, 0.4), ("l2", 1.0, 0.6))]
    return pd.DataFrame(rows)
