"""Section 2's paper-scale path on stand-ins: random-weight torchvision ResNet-50 BlockNets as
the ImageNet sources, a few Geirhos-format stimuli of every archive kind written into a temp dir
in the archive's layout, then shape_bias.evaluate_cue_conflict -> shape_bias.summarize -> the
chapter's tables, figures, findings and headline (what notebook 03 calls at paper scale)."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image

from robust_transfer import config, cue_conflict as cc, models, shape_bias as sb, zoo

SOURCES = ("paper/imagenet/natural", "paper/imagenet/l2/3")
CLASS = {"natural": cc.IMAGENET_16_INDICES["bottle"][0], "l2": cc.IMAGENET_16_INDICES["bear"][0]}
STIMULI = {"cue_stylized": ["bear/bear1-bottle3.png", "bear/bear2-cat1.png"],  # 8 images in all:
           "edges": ["bird/bird1.png"], "silhouette": ["truck/truck4.png"]}  # ResNet-50 on CPU


def _write_stimuli(root):
    rng = np.random.default_rng(0)
    for kind, names in STIMULI.items():
        for rel in names:
            f = root / "texture-vs-shape-master" / "stimuli" / cc.GEIRHOS_KINDS[kind] / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(f)


@pytest.fixture
def paper_standins(tmp_path, monkeypatch):
    """An empty cache, the stimuli under tmp_path/stim, zoo.load handing random ResNet-50s
    whose heads always answer one class: the natural one a bottle (a texture decision on
    bear1-bottle3, none on bear2-cat1: shape bias 0, coverage 1/2), the L2 one a bear (two shape
    decisions: shape bias 1, coverage 1)."""
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cc.urllib.request, "urlopen",
                        lambda url: pytest.fail("the stand-in test must not download"))
    loads, built = [], {}

    def fake_load(sid, **kw):
        loads.append(sid)
        if sid not in built:  # one random body (built once: ~1 s), a head per source
            if not built:
                torch.manual_seed(0)
                built[None] = models.build("resnet50", 1000)
            built[sid] = copy.deepcopy(built[None])
            with torch.no_grad():
                built[sid].head.weight.zero_()
                built[sid].head.bias.zero_()
                built[sid].head.bias[CLASS[zoo.spec(sid).norm]] = 10.0
        return built[sid], {"sha256": f"standin-{sid}"}

    monkeypatch.setattr(zoo, "load", fake_load)
    _write_stimuli(tmp_path / "stim")
    cfg = config.resolve("paper", sources=list(SOURCES), device="cpu")
    return cfg, tmp_path / "stim", loads


def test_paper_scale_chapter_path_runs_on_standins(paper_standins, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from robust_transfer.chapters import ch03_shape_bias as ch

    cfg, root, loads = paper_standins
    rows = sb.evaluate_cue_conflict(cfg, root=root, progress=False)
    assert loads == list(SOURCES)
    assert set(rows["probe"]) == set(cc.GEIRHOS_KINDS)
    assert list(rows.columns[:6]) == ["source", "family", "norm", "eps", "source_seed", "label"]
    stylized = rows[rows["probe"] == "cue_stylized"]
    assert (stylized["metric"] == "shape_bias").all() and (stylized["n"] == 2).all()
    assert stylized["value"].tolist() == [0.0, 1.0] and stylized["coverage"].tolist() == [0.5, 1.0]
    assert np.allclose(stylized["chance"], 2 / 16)
    shape_only = rows[rows["probe"] != "cue_stylized"]
    assert (shape_only["metric"] == "accuracy").all() and (shape_only["n"] == 1).all()
    assert (shape_only["value"] == 0.0).all()        # bird and truck: neither bottle nor bear

    summary = sb.summarize(rows)
    table = ch.shape_bias_table(summary)
    assert list(table.index) == ["natural", "L2 ε=3"]
    stylized_cols = [c for c in table.columns if c.startswith(
        (sb.STIMULUS_KINDS["cue_stylized"], "cue_stylized"))]   # its label, or at least its name
    assert len(stylized_cols) == 2 and table[stylized_cols].notna().all().all()
    acc = ch.accuracy_table(summary)
    assert set(acc.index) == {"edges", "silhouette"} and acc.notna().all().all()
    fig = ch.plot_shape_bias(summary)
    assert len(fig.axes) == 1
    plt.close(fig)
    plt.close(ch.plot_probe_curves(summary))
    assert isinstance(ch.findings(summary), str)
    values = ch.headline(summary)     # the cue-conflict numbers the chapter glues
    sty = summary[summary["probe"] == "cue_stylized"].set_index("norm")["value"]
    assert values["stylized_natural"] == pytest.approx(sty["natural"])
    assert values["stylized_robust"] == pytest.approx(sty["l2"])
    assert values["stylized_direction"] in ("rises", "is flat")  # 0 -> 1 on 2 images
    row = ch.results_row(values, cfg.preset)
    assert row["verdict"] and row["ours"]

    # warm: rows come from the cache, the stimuli are not read again
    monkeypatch.setattr(cc, "load_cue_conflict", lambda *a, **k: pytest.fail("cache missed"))
    again = sb.evaluate_cue_conflict(cfg, root=root, progress=False)
    assert loads == list(SOURCES) * 2
    assert np.allclose(again["value"], rows["value"], equal_nan=True)
    # evaluate_sources hands ImageNet sources to evaluate_cue_conflict (default stimulus root;
    # the same files, so the same cached rows)
    from robust_transfer import cache
    _write_stimuli(cache.cache_dir("shape_bias", "texture-vs-shape"))
    via = sb.evaluate_sources(cfg, progress=False)
    assert via.equals(again)


def test_paper_scale_errors_are_loud(paper_standins, monkeypatch):
    cfg, root, _ = paper_standins
    with pytest.raises(ValueError, match="ImageNet source"):
        sb.source_dataset("paper/imagenet/natural")
    with pytest.raises(ValueError, match="'tiny/fmnist/natural/s0' is not an ImageNet source"):
        sb.evaluate_cue_conflict(cfg, sources=["tiny/fmnist/natural/s0"], root=root)
    with pytest.raises(ValueError, match="no ImageNet source"):
        sb.evaluate_cue_conflict(config.resolve("tiny"), root=root)
    with pytest.raises(ValueError, match="stimulus kind 'texture' is unknown"):
        sb.probe_cue_conflict(None, root, kinds=("texture",))
    # a kind the chapter does not know would be dropped from its tables: refused
    monkeypatch.setattr(cc, "GEIRHOS_KINDS", {**cc.GEIRHOS_KINDS, "cue_other": "other"})
    monkeypatch.setattr(cc, "CONFLICT_KINDS", ("cue_stylized", "cue_other"))
    with pytest.raises(ValueError, match="'cue_other' is not in shape_bias.STIMULUS_KINDS"):
        sb.evaluate_cue_conflict(cfg, root=root, progress=False)
