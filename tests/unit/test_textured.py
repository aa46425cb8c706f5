"""The textured-source experiment (Section 2): the textured Fashion-MNIST and its procedural
textures, the textured sources' ids and config field, the stimuli and their cues, the shape
bias of planted shape-only / texture-only classifiers, and the pre-specified test's label."""
import numpy as np
import pandas as pd
import pytest
import torch

from robust_transfer import claims, config, data, images, models, shape_study, train, zoo
from robust_transfer import shape_bias as sb
from robust_transfer.claims import CONTRADICTED, HOLDS, NOT_TESTABLE, UNDECIDED

torch.set_num_threads(1)


# --------------------------------------------------------------------------- data
def test_texture_classes_differ_by_structure_not_brightness():
    lab = np.arange(10).repeat(40)
    f = images.texture_fields(lab, 28, seed=3)
    assert f.shape == (400, 28, 28) and f.dtype == np.float32 and 0 <= f.min() <= f.max() <= 1
    assert np.array_equal(f, images.texture_fields(lab, 28, seed=3))
    assert not np.array_equal(f, images.texture_fields(lab, 28, seed=4))
    means = [f[lab == k].mean() for k in range(10)]
    assert np.ptp(means) < 0.05                           # no brightness cue
    # a nearest-centroid reader of the amplitude spectrum tells the ten classes apart
    p = np.abs(np.fft.fft2(f - f.mean((1, 2), keepdims=True)))
    p = (p / p.sum((1, 2), keepdims=True)).reshape(len(f), -1)
    train, test = np.arange(len(f)) % 2 == 0, np.arange(len(f)) % 2 == 1
    cents = np.stack([p[train & (lab == k)].mean(0) for k in range(10)])
    pred = ((p[test][:, None] - cents[None]) ** 2).sum(-1).argmin(1)
    assert (pred == lab[test]).mean() > 0.9
    with pytest.raises(ValueError, match="texture_labels must lie in 0..9"):
        images.texture_fields([10], 28, 0)


def test_textured_images_fill_the_garment_with_mostly_its_own_texture():
    x, y, _ = data.load("fashion_mnist", "test")
    x, y = x[:2000], y[:2000]
    tx, texture = data.textured_images(x, y, seed=7)
    again, texture2 = data.textured_images(x, y, seed=7)
    assert torch.equal(tx, again) and np.array_equal(texture, texture2)
    assert tx.shape == x.shape and 0 <= tx.min() and tx.max() <= 1
    assert torch.equal(tx > 0, x > 0)                     # the background stays black
    own = (texture == y.numpy()).mean()
    assert abs(own - data.TEXTURED_OWN) < 0.03
    assert data.info("textured_fmnist").num_classes == 10
    data.check_name("textured_fmnist")


# --------------------------------------------------------------------------- zoo, config
def test_textured_sources_ids_listing_and_config():
    ids = zoo.textured_sources("mini")
    assert len(ids) == 12 and ids[0] == "mini/tfmnist/natural/s0"
    assert not set(ids) & set(zoo.list_sources())         # no other section lists them
    sp = zoo.spec("mini/tfmnist/l2/2.0/s4")
    assert (sp.dataset, sp.family, sp.seed, sp.norm) == ("textured_fmnist", "mini/tfmnist/l2/2.0",
                                                         4, "l2")
    assert zoo.textured_sources("mini", seed_offset=6)[0] == "mini/tfmnist/natural/s6"
    with pytest.raises(ValueError, match=r"tfmnist l2 sources.*_TEXTURED_FAMILIES"):
        zoo.check_id("mini/tfmnist/l2/0.5/s0")
    with pytest.raises(ValueError, match="tfmnist"):
        zoo.check_id("mini/tfmnist/linf/0.1/s0")
    tiny = config.resolve("tiny")
    shifted = config.resolve("tiny", source_seed_offset=6)
    assert shifted.textured_sources == tuple(zoo.shift_seed(s, 6) for s in tiny.textured_sources)
    assert config.resolve("mini").textured_sources == tuple(zoo.textured_sources("mini"))
    with pytest.raises(ValueError, match="textured_sources takes textured sources only"):
        config.resolve("tiny", textured_sources=["tiny/fmnist/natural/s0"])
    with pytest.raises(ValueError, match="belong in textured_sources"):   # mixed: refused
        config.resolve("tiny", sources=["tiny/fmnist/natural/s0", "tiny/tfmnist/natural/s0"])
    # every source textured: the textured-source transfer's own configuration
    assert config.resolve("tiny", sources=["tiny/tfmnist/natural/s0"]).sources == (
        "tiny/tfmnist/natural/s0",)


# --------------------------------------------------------------------------- stimuli and cues
def test_textured_probes_carry_the_labels_they_claim():
    x, y, _ = data.load("fashion_mnist", "test")
    probes = {p["probe"]: p for p in sb.textured_probes(x[:300], y[:300].numpy(),
                                                        dict(n_stimuli=100), seed=2)}
    assert list(probes) == ["textured", "shape_alone", "texture_alone", "cue_textured"]
    cue = probes["cue_textured"]
    ia, ib = cue["pairs"]
    assert (cue["labels"] != cue["texture_labels"]).all()
    assert torch.equal(cue["images"] > 0, x[:300][ia] > 0)    # the shape is garment A's
    assert (probes["texture_alone"]["images"] > 0).all()       # no garment shape at all
    assert sb.CUE_CHECKS["cue_textured"] == ("shape_alone", "texture_alone")
    again = sb.textured_probes(x[:300], y[:300].numpy(), dict(n_stimuli=100), seed=2)
    assert all(torch.equal(a["images"], probes[a["probe"]]["images"]) for a in again)


def test_a_model_trained_on_the_textured_set_reads_both_cues_alone():
    x, y, _ = data.load("fashion_mnist", "train")
    tx, _ = data.textured_images(x[:600], y[:600], seed=0)
    torch.manual_seed(0)
    model = models.build("resnet8", 10, 1, mean=[zoo.TEXTURED_MEAN], std=[zoo.TEXTURED_STD])
    train.train_source(model, tx, y[:600], epochs=3, batch_size=32, lr=0.1, progress=False)
    xt, yt, _ = data.load("fashion_mnist", "test")
    params = dict(n_stimuli=300, n_boot=0)
    rows = {r["probe"]: r for r in sb.probe_source(model, xt[:1000], yt[:1000].numpy(), params,
                                                   probes=sb.textured_probes(
                                                       xt[:1000], yt[:1000].numpy(), params))}
    for probe in ("shape_alone", "texture_alone"):
        assert rows[probe]["ci_low"] > rows[probe]["chance"] + 0.1, (probe, rows[probe])


# --------------------------------------------------------------------------- planted classifiers
class _Centroids(torch.nn.Module):
    """Nearest class centroid of a feature: logits = -distance to each centroid."""

    def __init__(self, feature, x, y):
        super().__init__()
        self.feature = feature
        f, y = feature(x), torch.as_tensor(y)
        self.register_buffer("c", torch.stack([f[y == k].mean(0) for k in range(10)]))
        self.anchor = torch.nn.Parameter(torch.zeros(1))   # predict() reads the device here

    def forward(self, x):
        return -torch.cdist(self.feature(x), self.c)


def _silhouette(x):
    """The garment's mask only: no texture changes it (the texture floor is > 0)."""
    return (x > 0).float().flatten(1)


def _spectrum(x):
    """The normalised power spectrum of the high-passed image: texture, wherever it is."""
    hp = x - torch.nn.functional.avg_pool2d(x, 5, 1, 2, count_include_pad=False)
    p = torch.fft.fft2(hp[:, 0]).abs() ** 2
    return (p / p.sum((1, 2), keepdim=True)).flatten(1)


def test_shape_bias_of_planted_shape_only_and_texture_only_classifiers():
    xtr, ytr, _ = data.load("fashion_mnist", "train")
    xtr, ytr = xtr[:2000], ytr[:2000].numpy()
    shape_only = _Centroids(_silhouette, xtr, ytr)
    # texture labels drawn apart from the garments: only the texture can carry them
    random = np.random.default_rng(5).integers(0, 10, len(ytr))
    texture_only = _Centroids(_spectrum, images.apply_texture(
        xtr, images.texture_fields(random, 28, 5)), random)
    xt, yt, _ = data.load("fashion_mnist", "test")
    params = dict(n_stimuli=400, n_boot=200)
    probes = sb.textured_probes(xt[:1000], yt[:1000].numpy(), params, seed=0)
    got = {name: {r["probe"]: r for r in sb.probe_source(m, None, None, params, probes=probes)}
           for name, m in (("shape", shape_only), ("texture", texture_only))}
    assert got["shape"]["cue_textured"]["value"] > 0.9
    assert got["texture"]["cue_textured"]["value"] < 0.1
    for name, own, other in (("shape", "shape_alone", "texture_alone"),
                             ("texture", "texture_alone", "shape_alone")):
        assert got[name][own]["ci_low"] > 0.4 and got[name][other]["value"] < 0.2, name


# --------------------------------------------------------------------------- the test's label
def _rows(bias: dict, seeds=3, stimulus_seeds=(0, 1, 2), texture_alone=0.6, spread=2.0):
    """Probe rows of planted families: shape bias ``bias[family]`` (share) + seeded noise."""
    rng = np.random.default_rng(0)
    out = []
    for family, b in bias.items():
        norm = family.split("/")[0]
        eps = 0.0 if norm == "natural" else float(family.split("/")[1])
        for s in range(seeds if norm != "noise" else 1):
            for j in stimulus_seeds:
                common = dict(source=f"{family}/s{s}", family=family, norm=norm, eps=eps,
                              source_seed=s, label=family, param=np.nan, stimulus_seed=j)
                v = b + rng.normal(0, spread / 100)
                out.append(dict(common, probe="cue_textured", metric="shape_bias", value=v,
                                ci_low=v - 0.04, ci_high=v + 0.04, coverage=0.7, n=400,
                                chance=0.2))
                for probe, acc in (("shape_alone", 0.5), ("texture_alone", texture_alone)):
                    a = acc + rng.normal(0, 0.02)
                    out.append(dict(common, probe=probe, metric="accuracy", value=a,
                                    ci_low=a - 0.05, ci_high=a + 0.05, coverage=np.nan, n=400,
                                    chance=0.1))
    return pd.DataFrame(out)


@pytest.mark.parametrize("robust,label", [(0.75, HOLDS), (0.60, UNDECIDED), (0.45, CONTRADICTED)])
def test_textured_test_labels_robust_minus_natural(robust, label):
    rows = _rows({"natural": 0.60, "l2/1.0": robust, "l2/2.0": 0.9, "noise/0.1": 0.62})
    test = shape_study.textured_test(rows).set_index("family")
    assert test.loc["l2/1.0", "diff"] == pytest.approx(100 * (robust - 0.60), abs=2.5)
    assert test.loc["l2/1.0", "ci_basis"] == "source+stimulus seeds"
    assert test.loc["l2/1.0", "n_source_seeds"] == 3 and test.loc["l2/1.0", "n_subset_seeds"] == 3
    assert test["cues_usable"].all()
    claim = claims.section2(None, None, None, test.reset_index())
    parts = {p.key: p for p in claim.parts}
    assert list(parts) == ["cue_conflict_textured", "cue_conflict_textured_noise"]
    assert parts["cue_conflict_textured"].label == label and "l2/1.0 vs natural" in claim.title
    assert "l2/1.0" in parts["cue_conflict_textured"].statistic   # eps 1 heads, not eps 2
    assert parts["cue_conflict_textured_noise"].role == "control"
    assert "3 stimulus seeds" in parts["cue_conflict_textured"].basis


def test_textured_part_replaces_the_untestable_fashion_mnist_part():
    did = pd.DataFrame([dict(family="b", label="b", norm="l2", eps=1.0, version=v, did=1.0,
                             ci_low=0.5, ci_high=1.5, ci_basis="source+subset seeds",
                             n_source_seeds=6, n_subset_seeds=3)
                        for v in ("stylized", "lowpass")])
    dead = pd.DataFrame(dict(kind=["cue_silhouette"], informative=[False]))
    keys = [p.key for p in claims.section2(did, dead).parts]
    assert keys == ["did_stylized", "did_lowpass", "cue_conflict"]
    textured = shape_study.textured_test(_rows({"natural": 0.6, "l2/1.0": 0.8}))
    keys = [p.key for p in claims.section2(did, dead, None, textured).parts]
    assert keys == ["did_stylized", "did_lowpass", "cue_conflict_textured"]
    # a texture cue the natural source cannot read: not testable, whatever the difference
    blind = shape_study.textured_test(_rows({"natural": 0.6, "l2/1.0": 0.9}, texture_alone=0.1))
    assert not blind["cues_usable"].any()
    part = claims.section2(None, None, None, blind).parts[0]
    assert part.label == NOT_TESTABLE and "texture alone" in part.why
    assert shape_study.textured_test(_rows({"l2/1.0": 0.8})).empty   # no natural family
    with pytest.raises(ValueError, match="textured_sources=()"):
        shape_study.textured_rows(config.resolve("tiny", textured_sources=[]))


def test_textured_summary_averages_stimulus_seeds_per_source():
    rows = _rows({"natural": 0.6, "l2/1.0": 0.8, "noise/0.1": 0.7})
    s = shape_study.textured_summary(rows)
    nat = s[(s["family"] == "natural") & (s["probe"] == "cue_textured")].iloc[0]
    assert nat["n_seeds"] == 3 and nat["ci_kind"] == "seeds"
    assert nat["value"] == pytest.approx(rows.loc[(rows["family"] == "natural")
                                                  & (rows["probe"] == "cue_textured"),
                                                  "value"].mean())
    noise = s[(s["family"] == "noise/0.1") & (s["probe"] == "cue_textured")].iloc[0]
    assert noise["n_seeds"] == 1 and noise["ci_kind"] == "images"
    v = shape_study.cue_validation(s)
    assert set(v["kind"]) == {"cue_textured"} and v["informative"].all()


def test_chapter_shows_the_textured_experiment():
    import matplotlib
    matplotlib.use("Agg")
    from robust_transfer.chapters import ch03_shape_bias as ch
    rows = _rows({"natural": 0.6, "l2/1.0": 0.8, "noise/0.1": 0.62})
    test = shape_study.textured_test(rows)
    table = ch.textured_table(test)
    assert list(table.index) == ["l2/1.0", "noise/0.1"]
    assert table.loc["l2/1.0", "minus natural [95% CI]"].startswith("+20")
    text = ch.textured_findings(test)
    assert "both cues are usable" in text and "**holds**" in text
    blind = ch.textured_findings(shape_study.textured_test(_rows({"natural": 0.6, "l2/1.0": 0.8},
                                                                 texture_alone=0.1)))
    assert "not testable" in blind and "**holds**" not in blind
    assert "not run" in ch.textured_findings(None) and ch.textured_table(None).empty
    fig = ch.plot_shape_bias(shape_study.textured_summary(rows))
    assert fig.axes[0].get_title().startswith(sb.STIMULUS_KINDS["cue_textured"])
    x, y, names = data.load("fashion_mnist", "test")
    fig = ch.plot_textured_stimuli(sb.textured_probes(x[:50], y[:50].numpy(),
                                                      dict(n_stimuli=8)), names, n=3)
    assert fig.axes[0].get_title().startswith("own texture") and len(fig.axes) == 12
    values = ch.headline(shape_study.textured_summary(rows), textured=test)
    assert values["part_cue_conflict_textured_label"] == HOLDS


# --------------------------------------------------------------------------- textured transfer
def _transfer_frame(shape_gain, texture_gain, noise_gain=(0.0, 0.0)):
    """Store-like rows of the textured-source transfer: natural, L2 eps 1 and noise (3 source
    seeds x 3 subset seeds) on mnist5k, its stylized copy and textures at n 40 and 320; the
    L2 (noise) gain is ``shape_gain`` (``noise_gain[0]``) on mnist5k and its copy,
    ``texture_gain`` (``noise_gain[1]``) on textures, plus seed effects."""
    import pandas as pd
    rng = np.random.default_rng(1)
    rows = []
    for family, norm, eps, (g_shape, g_tex) in (
            ("mini/tfmnist/natural", "natural", 0.0, (0.0, 0.0)),
            ("mini/tfmnist/l2/1.0", "l2", 1.0, (shape_gain, texture_gain)),
            ("mini/tfmnist/noise/0.1", "noise", 0.1, noise_gain)):
        for target, version, base in (("mnist5k", "original", "mnist5k"),
                                      ("stylized:mnist5k", "stylized", "mnist5k"),
                                      ("textures", "original", "textures")):
            for n in (40, 320):
                for s in range(3):
                    for j in range(3):
                        g = g_tex if base == "textures" else g_shape
                        rows.append(dict(target=target, version=version, base_target=base,
                                         texture_only=base == "textures",
                                         family=family, norm=norm, eps=eps, source_label=norm,
                                         source_seed=s, seed=j, n=n, unfrozen_blocks=0,
                                         test_acc=40 + n / 10 + 2 * s + j + g
                                         + rng.normal(0, 0.3)))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("shape_gain, texture_gain, label", [
    (7.0, -10.0, "holds"), (3.0, 3.0, "undecided"), (-4.0, 5.0, "contradicted")])
def test_textured_transfer_test_and_its_part(shape_gain, texture_gain, label):
    """The pre-specified DiD (robust advantage on the shape-only target minus on the
    texture-only one) is recovered from planted gains and labelled by its interval; the noise
    family is its control; the changed copies are context rows."""
    t = shape_study.textured_transfer_test(_transfer_frame(shape_gain, texture_gain, (1.0, 1.0)))
    row = t[(t["version"] == shape_study.SHAPE_VS_TEXTURE) & (t["norm"] == "l2")].iloc[0]
    assert row["did"] == pytest.approx(shape_gain - texture_gain, abs=0.5)
    assert row["gain_original"] == pytest.approx(texture_gain, abs=0.5)
    assert (row["shape_target"], row["texture_target"]) == ("mnist5k", "textures")
    assert set(t["version"]) == {shape_study.SHAPE_VS_TEXTURE, "stylized"}
    parts = {p.key: p for p in claims._textured_transfer_parts(t)}
    assert list(parts) == ["textured_shape_vs_texture", "textured_shape_vs_texture_noise"]
    assert parts["textured_shape_vs_texture"].label == label
    assert parts["textured_shape_vs_texture"].role == "test"
    assert parts["textured_shape_vs_texture_noise"].role == "control"
    assert parts["textured_shape_vs_texture_noise"].label == "undecided"   # planted 0


def test_textured_targets_and_config():
    mini = config.resolve("mini")
    assert shape_study.textured_targets(mini) == {
        "mnist5k": ("original", "mnist5k"), "stylized:mnist5k": ("stylized", "mnist5k"),
        "lowpass4:mnist5k": ("lowpass", "mnist5k"), "textures": ("original", "textures")}
    cfg = shape_study.transfer_config(mini, textured=True)
    assert cfg.sources == mini.textured_sources and cfg.unfrozen_blocks == (0,)
    assert shape_study.textured_targets(config.resolve("mini", textured_targets=())) == {}
    assert shape_study.textured_targets(config.resolve("mini", textured_sources=())) == {}
    with pytest.raises(ValueError, match="textured_targets=\\(\\) : the textured-source"):
        shape_study.transfer_config(config.resolve("mini", textured_targets=()), textured=True)
    for bad in (("mnist5k",), ("textures", "textures")):
        with pytest.raises(ValueError, match=r"textured_targets=.*two different targets"):
            config.resolve("mini", textured_targets=bad)
    with pytest.raises(ValueError, match="textured_targets: dataset 'cifar11' is unknown"):
        config.resolve("mini", textured_targets=("cifar11", "textures"))
