"""Tests for robust_transfer.shape_bias (metric, stimuli, probes, the per-source cache, the
transfer link) and robust_transfer.chapters.ch03_shape_bias (tables, findings, headline,
figures). The transforms are tested in test_images.py, the Geirhos loader in
test_cue_conflict.py."""
import dataclasses
import json
import types

import numpy as np
import pytest
import torch
from PIL import Image

from robust_transfer import cache, claims, images, models, stats
from robust_transfer import shape_bias as sb, shape_study as ss
from robust_transfer.chapters import ch03_shape_bias as ch


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


def test_shape_bias_ci_is_the_old_inline_bootstrap():
    """The CI now comes from stats.bootstrap_share: same draws, same numbers as the formula
    shape_bias used to compute inline (copied here)."""
    rng = np.random.default_rng(7)
    s = rng.integers(0, 6, 300)
    t = (s + rng.integers(1, 6, 300)) % 6
    pred = np.where(rng.random(300) < 0.4, s, np.where(rng.random(300) < 0.5, t, 9))
    r = sb.shape_bias(pred, s, t, n_boot=400, seed=11, level=0.9)
    hit_s, hit_t = pred == s, pred == t
    idx = np.random.default_rng(11).integers(0, 300, size=(400, 300))
    bs, bt = hit_s[idx].sum(1), hit_t[idx].sum(1)
    ok = bs + bt > 0
    lo, hi = np.quantile(bs[ok] / (bs[ok] + bt[ok]), [0.05, 0.95])
    assert (r["ci_low"], r["ci_high"]) == (float(lo), float(hi))
    assert np.isnan(sb.shape_bias(pred, s, t, n_boot=0)["ci_low"])
    with pytest.raises(ValueError, match="level"):
        sb.shape_bias(pred, s, t, level=1.5)


# --------------------------------------------------------------------------- Fourier stimuli
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
    ia, ib = sb._pairs(y, 30, 5)
    expect = images.to_unit_range(images.fourier_recombine(x[ia], x[ib]))
    np.testing.assert_allclose(a[0].numpy(), expect.astype(np.float32))


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
    masks = images.silhouette_mask(x[ia])
    assert (imgs[:, 0].numpy()[~masks] == 0).all()
    for i in range(12):
        inside = imgs[i, 0].numpy()[masks[i]]
        assert np.isin(inside, x[ib[i], 0].numpy()).all()       # every value is B's
        assert (inside > 0).mean() > 0.95                       # patches come from inside B
    with pytest.raises(ValueError, match="patch"):
        sb.texture_fill_stimuli(x, y, 2, seed=0, patch=0)


# --------------------------------------------------------------------------- probes
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
    # accuracy rows carry the Wilson interval of stats.wilson
    pred = sb.predict(model, prebuilt[0]["images"])
    w = stats.wilson(pred == prebuilt[0]["labels"])
    assert (clean["value"], clean["ci_low"], clean["ci_high"], clean["n"]) == (
        w["value"], w["ci_low"], w["ci_high"], w["n"])


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
    monkeypatch.setattr(sb, "zoo", fake_zoo)
    monkeypatch.setattr(sb, "data", fake_data)
    cfg = types.SimpleNamespace(n_stimuli=12, blur_sigmas=(0.0, 1.0), allow_download=False,
                                sources=("tiny/fmnist/natural/s0",),
                                torch_device=lambda: torch.device("cpu"))
    first = sb.evaluate_sources(cfg, progress=False)
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 1 and "shape_bias" in str(files[0])
    # the cache key (pinned; version 4 added the cue-alone probes)
    params = dataclasses.asdict(sb.ProbeParams.from_config(cfg))
    key = cache.key(dict(params=params, seed=0, source="tiny/fmnist/natural/s0", sha256="abc",
                         version=4))
    assert files[0].name == f"{key}.json" == "70bcadbc1bf13d55.json"
    monkeypatch.setattr(sb, "probe_source", lambda *a, **k: pytest.fail("cache not used"))
    second = sb.evaluate_sources(cfg, progress=False)
    assert first.equals(second)
    assert set(first.columns) >= {"source", "family", "eps", "probe", "value", "ci_low"}
    summary = sb.summarize(first)
    assert (summary["ci_kind"] == "images").all() and (summary["n_seeds"] == 1).all()
    acc = ch.accuracy_table(summary)
    assert "lowpass σ=1" in acc.index and "patch_shuffle 4x4" in acc.index
    assert acc.notna().all().all()
    assert list(ch.shape_bias_table(summary).index) == ["natural"]


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
    tr = ss.trend(s, "cue_fourier")
    assert tr["direction"] == "rises" and tr["delta"] == pytest.approx(0.30)
    assert tr["spearman"] == pytest.approx(1.0)
    assert ss.trend(s, "cue_fourier", norm="linf")["direction"] == "is flat"  # wide CI
    text = ch.findings(s)
    assert "shape share of stimulus (a) Fourier **rises**" in text
    assert "no paired" in text and "cannot be" in text


# --------------------------------------------------------------------------- paper scale
def test_probe_cue_conflict_with_a_fake_imagenet_model(tmp_path):
    from robust_transfer.cue_conflict import GEIRHOS_SUBDIR
    for rel in ["bear/bear1-bottle3.png", "cat/cat2-dog1.png", "car/car1-car2.png"]:
        f = tmp_path / GEIRHOS_SUBDIR / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(f)

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


def test_transfer_link_reads_the_store(tmp_path):
    import pandas as pd
    from robust_transfer import config, sweep, zoo
    from robust_transfer.store import Store
    cfg = config.resolve("tiny")
    store = Store(tmp_path / "results")
    assert ss.transfer_link(cfg, store).empty  # no rows: empty, no error
    bonus = {"natural": 0.0, "l2": 5.0, "linf": 2.0, "noise": -1.0}
    for run in sweep.grid(cfg):
        sp = zoo.spec(run["source"])
        extra = bonus[sp.norm] * (1 if run["target"] == "digits" else 0.2)
        acc = 50.0 + extra + run["seed"] + 0.5 * sp.seed
        store.add(run, dict(test_acc=acc, family=sp.family, norm=sp.norm, eps=sp.eps,
                            source_seed=sp.seed, source_label=sp.label), seconds=0.0)
    summary = pd.DataFrame([dict(family=zoo.spec(s).family, probe="cue_fourier", value=0.5)
                            for s in cfg.sources]).drop_duplicates()
    link = ss.transfer_link(cfg, store, summary)
    l2 = link[link["norm"] == "l2"]
    blocks = {run["unfrozen_blocks"] for run in sweep.grid(cfg)}  # Fig. 4 block counts too
    assert len(l2) == len(blocks) and "natural" not in set(link["norm"])
    np.testing.assert_allclose(l2["gain_shape_targets"], 5.0)
    both = l2[l2["unfrozen_blocks"].isin(cfg.unfrozen_blocks)]  # block-count runs: no textures
    np.testing.assert_allclose(both["gain_texture_target"], 1.0)
    np.testing.assert_allclose(both["shape_minus_texture"], 4.0)
    assert (link["shape_bias_fourier"] == 0.5).all()
    text = ch.findings(_toy_summary(), link)
    assert "Robust sources gain more on shape targets" in text
    # block counts with no textures run (Fig. 4's) have no link line, never "vs +nan"
    assert "nan" not in text
    assert {f"Transfer link ({k} unfrozen" in text for k in blocks} == {True, False}
    specs = {zoo.spec(s).family: zoo.spec(s) for s in cfg.sources}
    by_family = pd.DataFrame([dict(family=f, norm=sp.norm, eps=sp.eps, label=sp.label,
                                   probe="cue_fourier", param=np.nan, metric="shape_bias",
                                   value=0.5, ci_low=0.4, ci_high=0.6, coverage=0.3, n_seeds=1,
                                   chance=0.2, ci_kind="images") for f, sp in specs.items()])
    h = ch.headline(by_family, link)
    assert h["cue_robust_label"] == l2["label"].iloc[0] and h["cue_verdict"] == "not reproduced"
    assert h["verdict"] == "not tested"  # no transfer-versions test given
    assert h["link_shape_minus_texture"] == pytest.approx(4.0)


def _toy_summary():
    import pandas as pd
    rows = [dict(family=f"x/{n}", norm=n, eps=e, label=n, probe="cue_fourier", param=np.nan,
                 metric="shape_bias", value=v, ci_low=v - .05, ci_high=v + .05, coverage=.3,
                 n_seeds=1, chance=.2, ci_kind="images")
            for n, e, v in (("natural", 0.0, 0.4), ("l2", 1.0, 0.6))]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- chapter 3
def _summary(fourier, silhouette, blur=(0.5, 0.6), half=0.05):
    """A summary with natural and L2 eps 1 / eps 3 families: shape bias per stimulus type
    (natural, eps 1, eps 3) and low-pass accuracy (natural, eps 3) at sigma 2."""
    import pandas as pd
    fams = (("natural", 0.0, "natural"), ("l2", 1.0, "L2 ε=1"), ("l2", 3.0, "L2 ε=3"))
    rows = []
    for i, (norm, eps, label) in enumerate(fams):
        common = dict(family=f"x/{norm}/{eps}", norm=norm, eps=eps, label=label, n_seeds=1,
                      ci_kind="images")
        for probe, vals in (("cue_fourier", fourier), ("cue_silhouette", silhouette)):
            rows.append(dict(common, probe=probe, param=np.nan, metric="shape_bias",
                             value=vals[i], ci_low=vals[i] - half, ci_high=vals[i] + half,
                             coverage=0.4, chance=0.2))
        acc = blur[0] if i == 0 else blur[1]
        rows.append(dict(common, probe="lowpass", param=2.0, metric="accuracy", value=acc,
                         ci_low=acc - 0.1, ci_high=min(1.0, acc + 0.1), coverage=np.nan,
                         chance=0.1))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("fourier, silhouette, verdict", [
    ((0.3, 0.4, 0.6), (0.5, 0.6, 0.8), "reproduced"),
    ((0.3, 0.4, 0.6), (0.5, 0.5, 0.52), "partly"),
    ((0.3, 0.3, 0.32), (0.5, 0.5, 0.3), "not reproduced"),
])
def test_headline_numbers_and_verdict(fourier, silhouette, verdict):
    h = ch.headline(_summary(fourier, silhouette))
    assert h["cue_verdict"] == verdict and h["verdict"] == "not tested"
    assert h["cue_robust_label"] == "L2 ε=3"
    assert h["fourier_natural"] == pytest.approx(fourier[0])
    assert h["fourier_robust"] == pytest.approx(fourier[2])
    assert h["fourier_robust_low"] == pytest.approx(fourier[2] - 0.05)
    assert h["silhouette_robust_coverage_pct"] == pytest.approx(40.0)
    assert h["chance_coverage_pct"] == pytest.approx(20.0)
    assert h["blur_sigma"] == 2.0 and h["blur_natural_pct"] == pytest.approx(50.0)
    assert h["blur_robust_pct"] == pytest.approx(60.0)
    assert np.isnan(h["stylized_natural"]) and np.isnan(h["link_shape_minus_texture"])
    for k, v in h.items():
        assert type(v) in (float, str), (k, type(v))


def test_headline_without_a_robust_source_is_not_testable():
    s = _summary((0.3, 0.4, 0.6), (0.5, 0.6, 0.8))
    h = ch.headline(s[s["norm"] == "natural"])
    assert h["cue_verdict"] == "not testable" and np.isnan(h["fourier_natural"])


def test_findings_text_is_unchanged():
    """Pinned findings for a fixed summary: the text moved to the chapter module byte for byte."""
    text = ch.findings(_summary((0.3, 0.4, 0.6), (0.5, 0.5, 0.52)))
    assert text.splitlines()[0] == (
        "- With growing L2 eps, the shape share of stimulus (a) Fourier **rises** (eps 0: "
        "0.30; eps 1: 0.40; eps 3: 0.60; Spearman rho 1.00). Natural: 0.30 [0.25, 0.35]. "
        "Shape / texture hits per stimulus: natural 12% / 28%; L2 ε=1 16% / 24%; "
        "L2 ε=3 24% / 16%.")
    assert ("accuracy on blurred images (sigma = 2 px) **is flat** (eps 0: 50.0%; eps 1: 60.0%; "
            "eps 3: 60.0%; Spearman rho 0.87). Natural: 50.0% [40.0%, 60.0%] (chance 10%).") in text


def test_figures_clip_accuracy_bands_and_shape_bias_bars():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s = _summary((0.3, 0.4, 0.98), (0.5, 0.6, 0.8), blur=(0.95, 0.97), half=0.1)
    s.loc[s["metric"] == "accuracy", "ci_high"] = 1.08       # an interval past 100%
    fig = ch.plot_probe_curves(s)
    for coll in fig.axes[0].collections:
        for path in coll.get_paths():
            assert path.vertices[:, 1].max() <= 100 + 1e-9
    plt.close(fig)
    fig = ch.plot_shape_bias(s)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        for coll in ax.collections:
            for seg in coll.get_segments():
                assert seg[:, 1].max() <= 1 + 1e-9
    plt.close(fig)


def test_plot_stimuli_draws_every_probe():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x, y = _blobs(40), np.arange(40) % 4
    params = sb.ProbeParams(n_stimuli=8, blur_sigmas=(0.0, 1.0), shuffle_grids=(2,), n_boot=10)
    probes = sb.build_probes(x, y, params)
    fig = ch.plot_stimuli(probes, x, list("abcd"), n=3)
    # 2 cue-conflict types x 3 rows + clean + lowpass 1 + highpass 1 + shuffle + silh. + edges
    # + phase only + amplitude only + texture patches
    assert len(fig.axes) == 3 * (6 + 9)
    plt.close(fig)


# --------------------------------------------------------------------------- cue-alone checks
def test_cue_alone_stimuli_keep_one_cue_each():
    x = _templates(6, 12)
    d = sb.cue_alone_stimuli(x, seed=5, patch=3)  # seed 0 would draw the templates themselves
    assert set(d) == {"phase_only", "amplitude_only", "texture_patches"}
    fx = np.fft.fft2(x.double().numpy())
    ph, am = (np.fft.fft2(d[k].double().numpy()) for k in ("phase_only", "amplitude_only"))
    nz = np.ones((12, 12), bool)
    nz[0, 0] = False
    # phase only: the phase of x, one amplitude at every non-DC frequency
    np.testing.assert_allclose(ph[..., nz] / np.abs(ph[..., nz]),
                               fx[..., nz] / np.abs(fx[..., nz]), atol=1e-4)
    a = np.abs(ph[..., nz]).reshape(6, -1)
    assert (a.std(1) / a.mean(1)).max() < 1e-4
    # amplitude only: x's amplitudes up to one factor per image, not x's phase
    ratio = (np.abs(am[..., nz]) / np.abs(fx[..., nz])).reshape(6, -1)
    assert (ratio.std(1) / ratio.mean(1)).max() < 1e-3
    assert not np.allclose(am[..., nz] / np.abs(am[..., nz]), fx[..., nz] / np.abs(fx[..., nz]),
                           atol=0.1)
    # texture patches: whole frame filled with pixels of the image itself
    tp = d["texture_patches"].numpy()
    assert (tp > 0).mean() > 0.9
    assert all(np.isin(tp[i], x[i].numpy()).all() for i in range(6))


def _val_summary(texture_acc_natural):
    import pandas as pd
    rows = []
    for fam, norm, eps in (("x/natural", "natural", 0.0), ("x/l2", "l2", 1.0)):
        for probe, v in (("phase_only", 0.5), ("amplitude_only", 0.4), ("silhouette", 0.6),
                         ("texture_patches", texture_acc_natural if norm == "natural" else 0.3)):
            rows.append(dict(family=fam, norm=norm, eps=eps, label=norm, probe=probe,
                             param=np.nan, metric="accuracy", value=v, ci_low=v - 0.05,
                             ci_high=v + 0.05, coverage=np.nan, n_seeds=1, chance=0.1,
                             ci_kind="images"))
    return pd.DataFrame(rows)


def test_cue_validation_flags_a_kind_whose_cue_alone_is_at_chance():
    v = ss.cue_validation(_val_summary(0.3))
    assert v.groupby("kind")["informative"].all().all()
    v = ss.cue_validation(_val_summary(0.12))  # CI [0.07, 0.17] includes chance 0.1
    informative = v.groupby("kind")["informative"].all()
    assert informative["cue_fourier"] and not informative["cue_silhouette"]
    assert not v.loc[(v["kind"] == "cue_silhouette") & (v["norm"] == "natural"),
                     "texture_usable"].iloc[0]
    table = ch.validation_table(v)
    assert set(table["kind informative"]) == {"yes", "no"}
    # the uninformative kind is dropped from the cue verdict
    s = _summary((0.3, 0.4, 0.6), (0.5, 0.5, 0.52))
    s = s.assign(family=s["family"].map({"x/natural/0.0": "x/natural", "x/l2/3.0": "x/l2"})
                 .fillna(s["family"]))
    h = ch.headline(s, None, v)
    assert h["silhouette_informative"] == "no" and h["fourier_informative"] == "yes"
    assert h["cue_verdict_basis"].startswith("fourier") and "silhouette" not in h["cue_verdict_basis"]
    assert "cannot separate shape from texture" in ch.findings(s, None, v)


def test_chapter_refuses_unknown_stimulus_kinds():
    s = _summary((0.3, 0.4, 0.6), (0.5, 0.6, 0.8))
    s.loc[s["probe"] == "cue_silhouette", "probe"] = "cue_mystery"
    for fn in (ch.shape_bias_table, ch.findings, ch.headline, ch.plot_shape_bias):
        with pytest.raises(ValueError, match="cue_mystery"):
            fn(s)


# --------------------------------------------------------------------------- transfer versions
def _version_frame(did_stylized=4.0, seeds=(0, 1, 2), subset_seeds=(0, 1, 2), noise=False):
    """Store-like rows: natural and L2 (3 source seeds) and L-inf (1 seed) on original /
    stylized / lowpass digits at n 10 and 40; the L2 gain is 2 points on the original, 2 +
    ``did_stylized`` on the stylized copy, 1 on the low-passed copy (plus seed noise)."""
    import pandas as pd
    rows = []
    rng = np.random.default_rng(0)
    gains = {"original": 2.0, "stylized": 2.0 + did_stylized, "lowpass": 1.0}
    for family, norm, eps, label, src_seeds in (
            ("m/natural", "natural", 0.0, "natural", seeds), ("m/l2/1.0", "l2", 1.0, "L2 ε=1", seeds),
            ("m/linf/0.1", "linf", 0.1, "L∞ ε=0.1", (0,))) + (
            (("m/noise/0.1", "noise", 0.1, "noise σ=0.1", seeds),) if noise else ()):
        for version, target in (("original", "digits"), ("stylized", "stylized:digits"),
                                ("lowpass", "lowpass4:digits")):
            for n in (10, 40):
                for s in src_seeds:
                    for j in subset_seeds:
                        acc = 50 + n / 4 + 3 * j + s + (gains[version] if norm != "natural"
                                                        else 0) + rng.normal(0, 0.3)
                        rows.append(dict(target=target, version=version, base_target="digits",
                                         family=family, norm=norm, eps=eps, source_label=label,
                                         source_seed=s, seed=j, n=n, unfrozen_blocks=0,
                                         test_acc=acc))
    return pd.DataFrame(rows)


def test_version_test_recovers_a_known_difference_in_differences():
    frame = _version_frame(did_stylized=4.0)
    t = ss.version_test(frame).set_index(["family", "version"])
    l2s, l2l = t.loc[("m/l2/1.0", "stylized")], t.loc[("m/l2/1.0", "lowpass")]
    assert l2s["did"] == pytest.approx(4.0, abs=0.5) and l2s["direction"] == "grows"
    assert l2s["ci_basis"] == "source+subset seeds" and l2s["n_source_seeds"] == 3
    assert l2l["did"] == pytest.approx(-1.0, abs=0.5) and l2l["direction"] == "shrinks"
    assert l2s["gain_original"] == pytest.approx(2.0, abs=0.5)
    assert t.loc[("m/linf/0.1", "stylized"), "n_source_seeds"] == 1
    null = ss.version_test(_version_frame(did_stylized=0.0)).set_index(["family", "version"])
    assert null.loc[("m/l2/1.0", "stylized"), "direction"] == "no detectable change"


def test_version_table_uses_the_crossed_seed_estimator():
    frame = _version_frame()
    vt = ss.version_table(frame)
    assert set(vt["version"]) == {"original", "stylized", "lowpass"}
    assert set(vt["n"]) == {0, 10, 40}
    g = frame[(frame.version == "stylized") & (frame.n == 40)]
    m = (g[g.family == "m/l2/1.0"].pivot_table(index="source_seed", columns="seed",
                                               values="test_acc").to_numpy()
         - g[g.family == "m/natural"].pivot_table(index="source_seed", columns="seed",
                                                  values="test_acc").to_numpy())
    row = vt[(vt.version == "stylized") & (vt.n == 40) & (vt.metric == "gain")
             & (vt.family == "m/l2/1.0")].iloc[0]
    c = stats.ci(m)
    assert (row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx(
        (c["mean"], c["ci_low"], c["ci_high"]))
    assert not ((vt.metric == "gain") & (vt.norm == "natural")).any()
    display = ch.versions_table(vt)
    assert "gain pooled" in display.columns and "acc % n=10" in display.columns


@pytest.mark.parametrize("did, stylized", [(4.0, "holds"), (0.0, "undecided")])
def test_transfer_headline_verdict_and_row(did, stylized):
    frame = _version_frame(did_stylized=did)
    test, vt = ss.version_test(frame), ss.version_table(frame)
    assert claims.headline_family(test) == "m/l2/1.0"
    h = ch.headline(_summary((0.3, 0.4, 0.6), (0.5, 0.6, 0.8)), None, None, test, vt)
    # the low-pass DiD is negative in every case: a contradicted part contradicts the claim
    assert h["part_did_lowpass_label"] == "contradicted"
    assert h["part_did_stylized_label"] == stylized
    verdict = "contradicted"
    assert h["verdict"] == verdict
    assert h["robust_label"] == "L2 ε=1" and h["robust_seeds"] == 3.0
    assert h["natural_label"] == "natural"
    assert h["did_stylized"] == pytest.approx(did, abs=0.5)
    assert h["stylized_gain"] == pytest.approx(2.0 + did, abs=0.5)
    for k, v in h.items():
        assert type(v) in (float, str), (k, type(v))
    row = ch.results_row(h, "mini")
    assert row["verdict"] == verdict and "stylized" in row["ours"] and "[" in row["ci"]
    text = ch.transfer_findings(h, test)
    assert "Supporting rows: L∞ ε=0.1" in text and "subset seeds only" in text
    assert list(ch.did_table(test).index.get_level_values(1)).count("L2 ε=1") == 2


def test_version_test_and_section2_carry_the_noise_control():
    t = ss.version_test(_version_frame(did_stylized=4.0, noise=True)).set_index(["family",
                                                                                 "version"])
    assert t.loc[("m/noise/0.1", "stylized"), "did"] == pytest.approx(4.0, abs=0.5)
    assert t.loc[("m/noise/0.1", "stylized"), "n_source_seeds"] == 3
    claim = claims.section2(t.reset_index())
    parts = {p.key: p for p in claim.parts}
    assert list(parts) == ["did_stylized", "did_lowpass", "did_stylized_matched_noise",
                           "did_lowpass_matched_noise"]
    assert parts["did_stylized_matched_noise"].role == "control" and "noise" in \
        parts["did_stylized_matched_noise"].statistic
    assert parts["did_stylized_matched_noise"].label == claims.HOLDS
    assert claim.label == claims.claim_label([parts["did_stylized"], parts["did_lowpass"]])


def test_manipulation_strength_measures_the_change():
    from robust_transfer import config
    m = ss.manipulation_strength(config.resolve("tiny")).set_index("version")
    assert list(m["target"]) == ["stylized:digits", "lowpass4:digits"]
    assert 0 < m.loc["lowpass", "energy_changed"] < 0.3 and m.loc["lowpass", "correlation"] > 0.9
    assert (m["n_images"] == 400).all()


def test_transfer_config_keeps_the_recipe_and_the_noise_control():
    from robust_transfer import config, zoo
    cfg = config.resolve("tiny")
    cfg2 = ss.transfer_config(cfg)
    assert cfg2.targets == ("digits", "stylized:digits", "lowpass4:digits")
    assert cfg2.n_values == cfg.shape_n_values and cfg2.seeds == cfg.seeds
    assert cfg2.unfrozen_blocks == (0,) and cfg2.main_blocks == 0
    assert {zoo.spec(s).norm for s in cfg2.sources} == {"natural", "l2", "linf", "noise"}
    for f in dataclasses.fields(cfg):
        if f.name not in ("sources", "targets", "n_values", "unfrozen_blocks", "main_blocks",
                          "compare_recipe", "block_counts", "full_set", "head_to_pool"):
            assert getattr(cfg2, f.name) == getattr(cfg, f.name), f.name
    assert list(ss.version_targets(cfg)) == list(cfg2.targets)
    assert not ss.transfer_config(config.resolve("mini")).head_to_pool   # no whole-pool runs
    with pytest.raises(ValueError, match="natural"):
        ss.transfer_config(config.resolve("tiny", sources=["tiny/fmnist/l2/1.0/s0"]))
    with pytest.raises(ValueError, match="shape_targets"):
        ss.transfer_config(config.resolve("tiny", shape_targets=[]))


def test_version_figures():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    vt = ss.version_table(_version_frame())
    fig = ch.plot_versions(vt)
    assert len(fig.axes) == 3 and all(len(ax.lines) >= 2 for ax in fig.axes)
    plt.close(fig)
    x = _templates(4, 12)
    fig = ch.plot_target_versions({"original": (x, [0, 1, 2, 3]), "stylized": (x, [0, 1, 2, 3])},
                                  list("abcd"), n=4)
    assert len(fig.axes) == 8
    plt.close(fig)
