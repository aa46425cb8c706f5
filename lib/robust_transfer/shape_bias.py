"""Shape vs texture: cue-conflict stimuli, the Geirhos shape-bias metric, shape/texture probes.

Metric (Geirhos et al., ICLR 2019). Over cue-conflict images whose shape class differs from
their texture class, ``shape bias = shape decisions / (shape decisions + texture decisions)``;
``coverage`` = share of those images whose decision hits either class. Same-class images are
excluded. The 95% CI is a percentile bootstrap over images (:func:`robust_transfer.stats.
bootstrap_share`).

Mini-scale stimuli are built from the source's own test set, deterministically per seed:

* ``fourier``: phase spectrum of an image of class A (edges, shape) with the amplitude spectrum
  of an image of class B (energy per frequency, texture). ``|FFT(B)| exp(i angle FFT(A))`` is
  Hermitian-symmetric because both inputs are real, so its inverse FFT is real up to rounding;
  :func:`robust_transfer.images.fourier_recombine` returns it raw (unclipped; tests check phase
  and amplitude there). :func:`robust_transfer.images.to_unit_range` then maps each image into
  [0, 1] by shrinking its contrast about its own mean, ``m + a (x - m)`` with the largest
  ``a <= 1`` that fits: no clipping, so every non-DC phase is kept exactly and all non-DC
  amplitudes are scaled by the same factor ``a``.
* ``silhouette``: the filled silhouette of an item of class A, filled with square patches cut
  from inside an item of class B (background 0, as in Fashion-MNIST).
* ``textured`` (sources trained on ``textured_fmnist``, where texture can carry the class): the
  grey garment of class A filled with the texture of class B (:func:`textured_probes`; the
  textures are :data:`robust_transfer.images.TEXTURE_CLASSES`).

Probes (accuracy against the true label, Wilson CI): Gaussian low-pass at each ``blur_sigmas``,
high-pass ``clip(x - blur_sigma(x) + 0.5, 0, 1)`` at each sigma > 0, patch-shuffled images (a
g x g grid of tiles permuted: local texture kept, global shape destroyed), binary silhouettes and
Sobel edge maps (shape kept, texture removed); the transforms are in :mod:`robust_transfer.images`.
:func:`probe_source` runs all of them for one model, :func:`evaluate_sources` for a config's
sources with an on-disk cache per source.

Paper scale: the Geirhos et al. stimuli (every kind of their archive) and the ImageNet-16
mapping are in :mod:`robust_transfer.cue_conflict`; :func:`probe_cue_conflict` probes an
ImageNet model on them, :func:`evaluate_cue_conflict` a config's ImageNet sources. The authors'
low-pass for transfer targets (down to 32 px, back to the model's input size) is the target
name prefix ``lowres:<dataset>`` (:mod:`robust_transfer.data`).
What Section 2 runs and compares with these (the transfer experiment on derived targets, the
cue-alone validation, trends along eps, the link to Section 1) is in
:mod:`robust_transfer.shape_study`; figures, display tables and findings text are in
:mod:`robust_transfer.chapters.ch03_shape_bias`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import torch

from . import cache, cue_conflict, data, stats, zoo
from .images import (apply_texture, as_array, edge_map, fourier_recombine, highpass, lowpass,
                     patch_shuffle, silhouette_mask, texture_fields, to_unit_range)
from .progress import bar

__all__ = [
    "shape_bias", "fourier_stimuli", "texture_fill_stimuli", "ProbeParams", "build_probes",
    "predict", "probe_source", "source_dataset", "evaluate_sources", "summarize",
    "probe_cue_conflict", "evaluate_cue_conflict", "STIMULUS_KINDS", "CUE_CHECKS",
    "cue_alone_stimuli", "textured_probes", "TEXTURE_ALONE_LEVEL",
]

# zoo SourceSpec.dataset -> robust_transfer.data name of the images its probes are built from
_SOURCE_DATA = {"fashion_mnist": "fashion_mnist", "textured_fmnist": "fashion_mnist"}
_CACHE_VERSION = 4

#: cue-conflict stimulus kinds (probe names of the shape-bias rows) -> display label, in the
#: order the tables and figures show them: the mini kinds, then the Geirhos et al. images
#: (:data:`robust_transfer.cue_conflict.CONFLICT_KINDS`). The archive's shape-only kinds
#: ("edges", "silhouette") are accuracy rows under the mini probes' names.
STIMULUS_KINDS = {"cue_fourier": "(a) Fourier", "cue_silhouette": "(b) silhouette",
                  "cue_textured": "(t) textured garments",
                  "cue_stylized": "(c) Geirhos style transfer"}


# --------------------------------------------------------------------------- metric
def shape_bias(pred, shape_labels, texture_labels, *, n_boot: int = 1000, seed: int = 0,
               level: float = 0.95) -> dict:
    """Geirhos shape bias of decisions ``pred`` on cue-conflict images, with a bootstrap CI.

    Returns ``dict(shape_bias, coverage, n_conflict, n_shape, n_texture, ci_low, ci_high)``:
    shape_bias in [0, 1] (NaN when no decision hits shape or texture), coverage = (shape +
    texture decisions) / n_conflict, both over images whose shape and texture labels differ;
    the CI is the percentile interval of shape_bias over ``n_boot`` resamplings of those images.
    Labels may be ints or strings.
    """
    pred, s, t = (np.asarray(x) for x in (pred, shape_labels, texture_labels))
    if not (pred.shape == s.shape == t.shape and pred.ndim == 1):
        raise ValueError(f"pred, shape_labels, texture_labels must be 1-d of equal length; got "
                         f"shapes {pred.shape}, {s.shape}, {t.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} must be in (0, 1)")
    keep = s != t
    hit_s, hit_t = (pred[keep] == s[keep]), (pred[keep] == t[keep])
    n = int(keep.sum())
    ns, nt = int(hit_s.sum()), int(hit_t.sum())
    out = dict(shape_bias=ns / (ns + nt) if ns + nt else float("nan"),
               coverage=(ns + nt) / n if n else float("nan"),
               n_conflict=n, n_shape=ns, n_texture=nt)
    out["ci_low"], out["ci_high"] = stats.bootstrap_share(hit_s, hit_t, n_boot, level, seed)
    return out


# --------------------------------------------------------------------------- stimuli
def _pairs(labels: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n (shape index, texture index) pairs with different labels, seeded."""
    rng = np.random.default_rng(seed)
    a = rng.choice(len(labels), size=n, replace=len(labels) < n)
    b = rng.integers(0, len(labels), size=n)
    for _ in range(1000):
        same = labels[a] == labels[b]
        if not same.any():
            return a, b
        b[same] = rng.integers(0, len(labels), size=int(same.sum()))
    raise ValueError("labels must contain at least two classes to build cue-conflict pairs")


def fourier_stimuli(images, labels, n: int, seed: int):
    """Fourier cue-conflict stimuli: (images float32 tensor in [0,1], shape_labels, texture_labels).

    Image i has the phase of ``images[shape_idx]`` and the amplitude of ``images[texture_idx]``
    (different classes), mapped to [0, 1] by :func:`to_unit_range`.
    """
    labels = np.asarray(labels)
    ia, ib = _pairs(labels, n, seed)
    x = as_array(images)
    out = to_unit_range(fourier_recombine(x[ia], x[ib]))
    return torch.from_numpy(out.astype(np.float32)), labels[ia], labels[ib]


def texture_fill_stimuli(images, labels, n: int, seed: int, patch: int = 4):
    """Silhouette cue-conflict stimuli: (images float32 tensor, shape_labels, texture_labels).

    The filled silhouette of ``images[shape_idx]`` is tiled with ``patch`` x ``patch`` squares cut
    at seeded random places fully inside the silhouette of ``images[texture_idx]`` (the most
    covered places when none fits); background 0.
    """
    labels = np.asarray(labels)
    x = as_array(images)
    _, c, h, w = x.shape
    if not 1 <= patch <= min(h, w):
        raise ValueError(f"patch={patch!r} must be an integer in 1..{min(h, w)}")
    ia, ib = _pairs(labels, n, seed)
    out = _patch_fill(x[ib], patch, np.random.default_rng(seed + 1))
    out *= silhouette_mask(x[ia])[:, None]
    return torch.from_numpy(out.astype(np.float32)), labels[ia], labels[ib]


def _patch_fill(x: np.ndarray, patch: int, rng) -> np.ndarray:
    """Each image's whole frame tiled with ``patch`` x ``patch`` squares cut at random places
    fully inside its own silhouette (the most covered places when none fits)."""
    n, c, h, w = x.shape
    masks = silhouette_mask(x)
    out = np.zeros((n, c, h, w))
    for i in range(n):
        cover = np.lib.stride_tricks.sliding_window_view(masks[i], (patch, patch)).mean((-1, -2))
        ys, xs = np.nonzero(cover >= cover.max())
        for ty in range(0, h, patch):
            for tx in range(0, w, patch):
                k = rng.integers(len(ys))
                ph, pw = min(patch, h - ty), min(patch, w - tx)
                out[i, :, ty:ty + ph, tx:tx + pw] = x[i, :, ys[k]:ys[k] + ph, xs[k]:xs[k] + pw]
    return out


#: the cue-alone checks of each mini stimulus kind: (probe carrying only its shape cue, probe
#: carrying only its texture cue), both accuracy probes of :func:`build_probes`
CUE_CHECKS = {"cue_fourier": ("phase_only", "amplitude_only"),
              "cue_silhouette": ("silhouette", "texture_patches"),
              "cue_textured": ("shape_alone", "texture_alone")}


def cue_alone_stimuli(images, seed: int, patch: int = 4) -> dict:
    """Images carrying one cue of a cue-conflict kind alone, for the validation checks
    (:data:`CUE_CHECKS`); float32 tensors in [0, 1] keyed by probe name:

    * ``phase_only``: the Fourier phase of each image with a flat amplitude spectrum (every
      non-DC frequency equally strong; the DC term keeps the image's mean), the shape cue of
      ``cue_fourier``;
    * ``amplitude_only``: each image's amplitude spectrum with a random phase (the phase of
      seeded uniform noise), the texture cue of ``cue_fourier``;
    * ``texture_patches``: the whole frame tiled with ``patch`` x ``patch`` squares cut from
      inside the image's own silhouette, the texture cue of ``cue_silhouette`` (its shape cue
      alone is the binary ``silhouette`` probe).

    Both Fourier images are mapped to [0, 1] by :func:`to_unit_range`.
    """
    x = as_array(images)
    n, c, h, w = x.shape
    flat = np.zeros_like(x)
    flat[:, :, 0, 0] = h * w * x.mean(axis=(2, 3))  # a delta: flat spectrum, same DC
    noise = np.random.default_rng(seed).random(x.shape)
    out = dict(phase_only=to_unit_range(fourier_recombine(x, flat)),
               amplitude_only=to_unit_range(fourier_recombine(noise, x)),
               texture_patches=_patch_fill(x, patch, np.random.default_rng(seed + 1)))
    return {k: torch.from_numpy(v.astype(np.float32)) for k, v in out.items()}


# --------------------------------------------------------------------------- probes
@dataclass(frozen=True)
class ProbeParams:
    """What :func:`probe_source` computes: stimulus count, blur sigmas (px), shuffle grids, ..."""

    n_stimuli: int = 1000
    blur_sigmas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
    shuffle_grids: tuple[int, ...] = (2, 4, 7)
    fill_patch: int = 4
    n_boot: int = 1000

    @classmethod
    def from_config(cls, cfg) -> "ProbeParams":
        """Params from a :class:`robust_transfer.config.Config` (n_stimuli, blur_sigmas)."""
        return cls(n_stimuli=cfg.n_stimuli, blur_sigmas=tuple(cfg.blur_sigmas))


def _params(cfg_or_params) -> ProbeParams:
    if isinstance(cfg_or_params, ProbeParams):
        return cfg_or_params
    if isinstance(cfg_or_params, dict):
        return ProbeParams(**cfg_or_params)
    return ProbeParams.from_config(cfg_or_params)


def build_probes(images, labels, cfg_or_params, seed: int = 0) -> list[dict]:
    """All probe image sets for one source dataset, deterministic per ``seed``.

    Returns a list of dicts ``probe`` (name), ``param`` (sigma / grid / NaN), ``images`` (float32
    tensor in [0,1]), ``labels`` (true or shape labels) and ``texture_labels`` (cue-conflict
    probes only, else None); cue-conflict probes also carry ``pairs`` = (shape image indices,
    texture image indices) into ``images``. Probe images are ``n_stimuli`` test images drawn
    with ``seed``; cue-conflict pairs are drawn from the whole set.
    """
    p = _params(cfg_or_params)
    labels = np.asarray(labels)
    x = as_array(images)
    rng = np.random.default_rng(seed)
    sel = rng.choice(len(labels), size=min(p.n_stimuli, len(labels)), replace=False)
    xs, ys = x[sel], labels[sel]
    nan = float("nan")
    clean = torch.from_numpy(xs.astype(np.float32))
    probes = [dict(probe="clean", param=nan, images=clean, labels=ys, texture_labels=None)]
    for s in p.blur_sigmas:  # sigma 0 is the clean tensor itself (predicted once)
        probes.append(dict(probe="lowpass", param=float(s), images=lowpass(xs, s) if s else clean,
                           labels=ys, texture_labels=None))
    for s in p.blur_sigmas:
        if s > 0:
            probes.append(dict(probe="highpass", param=float(s), images=highpass(xs, s),
                               labels=ys, texture_labels=None))
    for g in p.shuffle_grids:
        probes.append(dict(probe="patch_shuffle", param=float(g),
                           images=patch_shuffle(xs, g, seed + 100 + g), labels=ys,
                           texture_labels=None))
    sil = torch.from_numpy(np.repeat(silhouette_mask(xs)[:, None], x.shape[1], 1)
                           .astype(np.float32))
    probes.append(dict(probe="silhouette", param=nan, images=sil, labels=ys, texture_labels=None))
    probes.append(dict(probe="edges", param=nan, images=edge_map(xs), labels=ys,
                       texture_labels=None))
    for name, imgs in cue_alone_stimuli(xs, seed + 3, p.fill_patch).items():
        probes.append(dict(probe=name, param=nan, images=imgs, labels=ys, texture_labels=None))
    for name, make, pair_seed in (
            ("cue_fourier", fourier_stimuli, seed + 1),
            ("cue_silhouette", lambda *a: texture_fill_stimuli(*a, patch=p.fill_patch), seed + 2)):
        imgs, s_lab, t_lab = make(x, labels, p.n_stimuli, pair_seed)
        probes.append(dict(probe=name, param=nan, images=imgs, labels=s_lab, texture_labels=t_lab,
                           pairs=_pairs(labels, p.n_stimuli, pair_seed)))
    return probes


#: grey level of the texture-alone images' frame: the mean Fashion-MNIST garment level inside
#: the silhouettes (0.61 over the first 5,000 training images)
TEXTURE_ALONE_LEVEL = 0.6


def textured_probes(images, labels, cfg_or_params, seed: int = 0) -> list[dict]:
    """The probe sets of a textured source (trained on ``textured_fmnist``), built from grey
    Fashion-MNIST images, deterministic per ``seed``; dicts as :func:`build_probes` returns:

    * ``textured``: ``n_stimuli`` test garments filled with their own class's texture;
    * ``shape_alone``: the same garments with the neutral (flat) texture: shape without texture;
    * ``texture_alone``: a frame of grey level :data:`TEXTURE_ALONE_LEVEL` filled with the
      texture of each image's class: texture without the garment's shape;
    * ``cue_textured`` (shape bias): ``n_stimuli`` garments of class A filled with the texture
      of a class B != A (pairs drawn from the whole set), shape label A, texture label B.

    Texture class k is :data:`robust_transfer.images.TEXTURE_CLASSES` ``[k]``
    (:func:`robust_transfer.images.texture_fields`, fresh phases per probe and seed).
    """
    p = _params(cfg_or_params)
    labels = np.asarray(labels)
    x = torch.as_tensor(images, dtype=torch.float32)
    n, size = min(p.n_stimuli, len(labels)), x.shape[-1]
    sel = np.random.default_rng(seed).choice(len(labels), size=n, replace=False)
    xs, ys = x[sel], labels[sel]
    nan = float("nan")

    def fields(texture_labels, k):
        return texture_fields(texture_labels, size, [seed, k])

    frame = torch.full((n,) + tuple(x.shape[1:]), TEXTURE_ALONE_LEVEL)
    probes = [dict(probe=name, param=nan, images=imgs, labels=ys, texture_labels=None)
              for name, imgs in (("textured", apply_texture(xs, fields(ys, 1))),
                                 ("shape_alone", apply_texture(xs, np.full((n, size, size), 0.5))),
                                 ("texture_alone", apply_texture(frame, fields(ys, 2))))]
    ia, ib = _pairs(labels, p.n_stimuli, seed + 1)
    probes.append(dict(probe="cue_textured", param=nan,
                       images=apply_texture(x[ia], fields(labels[ib], 3)), labels=labels[ia],
                       texture_labels=labels[ib], pairs=(ia, ib)))
    return probes


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 500,
            probabilities: bool = False) -> np.ndarray:
    """Arg-max class per image (int64 array), or softmax probabilities if ``probabilities``.

    The model is put in eval mode; images are float32 (N, C, H, W) in [0, 1].
    """
    model.eval()
    device = next(model.parameters()).device
    outs = []
    for i in range(0, len(images), batch_size):
        logits = model(torch.as_tensor(images[i:i + batch_size]).to(device)).float()
        outs.append((logits.softmax(1) if probabilities else logits.argmax(1)).cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros(0, dtype=np.int64)


def probe_source(model: torch.nn.Module, images, labels, cfg_or_params, seed: int = 0,
                 progress: bool = False, probes: list[dict] | None = None) -> list[dict]:
    """Evaluate ``model`` on every probe of :func:`build_probes`; one row (dict) per probe.

    Row keys: probe, param (sigma px / grid / NaN), metric ("accuracy" or "shape_bias"), value,
    ci_low, ci_high (95%: Wilson for accuracy, bootstrap over images for shape bias), coverage
    (shape-bias rows, else NaN), n (images), chance (accuracy rows: 1/K; shape-bias rows: the
    coverage of random guessing, 2/K; K = number of classes). ``images``/``labels`` are the
    source's test set;
    ``probes`` may pass ``build_probes(images, labels, cfg_or_params, seed)`` built once for
    several models.
    """
    p = _params(cfg_or_params)
    probes = build_probes(images, labels, p, seed) if probes is None else probes
    k = len(np.unique(np.concatenate([np.asarray(pr["labels"]) for pr in probes])))
    rows, done = [], {}
    for pr in bar(probes, desc="probes", disable=not progress, leave=False):
        key = id(pr["images"])
        if key not in done:
            done[key] = predict(model, pr["images"])
        pred = done[key]
        row = dict(probe=pr["probe"], param=pr["param"])
        if pr["texture_labels"] is None:
            acc = stats.wilson(pred == pr["labels"])
            row.update(metric="accuracy", value=acc["value"], ci_low=acc["ci_low"],
                       ci_high=acc["ci_high"], coverage=float("nan"), n=acc["n"], chance=1 / k)
        else:
            sb = shape_bias(pred, pr["labels"], pr["texture_labels"], n_boot=p.n_boot, seed=seed)
            row.update(metric="shape_bias", value=sb["shape_bias"], ci_low=sb["ci_low"],
                       ci_high=sb["ci_high"], coverage=sb["coverage"], n=sb["n_conflict"],
                       chance=2 / k)
        rows.append(row)
    return rows


def source_dataset(source_id: str) -> str:
    """The :mod:`robust_transfer.data` name of the images a mini/tiny source's probes are built
    from: its own dataset (textured sources: the grey Fashion-MNIST their textures fill).

    ValueError for ImageNet sources: their probe set is the Geirhos et al. archive
    (:func:`robust_transfer.cue_conflict.load_cue_conflict`, :func:`evaluate_cue_conflict`).
    """
    return _source_dataset(zoo.spec(source_id))


def _source_dataset(spec) -> str:
    if spec.dataset == "imagenet":
        raise ValueError(f"source {spec.id!r} is an ImageNet source: it has no probe set in "
                         f"robust_transfer.data; its stimuli are the Geirhos et al. images "
                         f"(cue_conflict.load_cue_conflict), probed by "
                         f"shape_bias.evaluate_cue_conflict")
    if spec.dataset not in _SOURCE_DATA:
        raise ValueError(f"source dataset {spec.dataset!r} has no mini-scale probe set; allowed: "
                         f"{sorted(_SOURCE_DATA)}")
    return _SOURCE_DATA[spec.dataset]


def evaluate_sources(cfg, seed: int = 0, *, progress: bool = True, sources=None):
    """Probe rows for every source of ``cfg`` (or ``sources``) as a pandas DataFrame.

    Mini/tiny sources get all :func:`probe_source` probes on their own dataset's test set
    (:func:`build_probes`), textured sources (``zoo.textured_sources``) the
    :func:`textured_probes` built from the grey Fashion-MNIST test set; ImageNet sources get the
    Geirhos et al. stimuli (:func:`evaluate_cue_conflict`).
    Columns: source, family, norm, eps, source_seed, label + the probe_source row keys. Each
    source's rows are cached as JSON in ``cache_dir("shape_bias", <source id>)`` keyed by the
    probe parameters, seed and the checkpoint's sha256 (atomic writes), so a warm call only
    loads the checkpoints.
    """
    import pandas as pd

    p = ProbeParams.from_config(cfg)
    ids = list(sources or cfg.sources)
    imagenet = [sid for sid in ids if zoo.spec(sid).dataset == "imagenet"]
    probe_sets = {}
    frames = []
    for sid in bar([s for s in ids if s not in imagenet], desc="shape-bias probes",
                   disable=not progress):
        spec = zoo.spec(sid)
        model, meta = zoo.load(sid, allow_download=cfg.allow_download, progress=progress)
        model = model.to(cfg.torch_device())
        key = cache.key(dict(params=dataclasses.asdict(p), seed=seed, source=sid,
                             sha256=meta.get("sha256"), version=_CACHE_VERSION))
        path = cache.cache_dir("shape_bias", *sid.split("/")) / f"{key}.json"
        if path.exists():
            rows = json.loads(path.read_text())
        else:
            torch.manual_seed(seed)
            name = (spec.dataset, spec.in_channels, spec.image_size)
            if name not in probe_sets:  # stimuli built once per source dataset and format
                x, y, _ = data.load(_source_dataset(spec), "test",
                                    allow_download=cfg.allow_download)
                x = data.to_source_format(x, spec.in_channels, spec.image_size)
                make = textured_probes if spec.dataset == "textured_fmnist" else build_probes
                probe_sets[name] = make(x, y.numpy(), p, seed)
            rows = probe_source(model, None, None, p, seed=seed, probes=probe_sets[name])
            cache.atomic_write_text(path, json.dumps(rows))
        frames.append(_source_frame(rows, sid, spec))
    if imagenet:
        frames.append(evaluate_cue_conflict(cfg, sources=imagenet, progress=progress, seed=seed))
    return pd.concat(frames, ignore_index=True)


def _source_frame(rows: list[dict], sid: str, spec):
    """One source's probe rows as a DataFrame, led by the source columns (source, family,
    norm, eps, source_seed, label)."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    for col, value in (("label", spec.label), ("source_seed", spec.seed), ("eps", spec.eps),
                       ("norm", spec.norm), ("family", spec.family), ("source", sid)):
        frame.insert(0, col, value)
    return frame


def summarize(rows, level: float = 0.95):
    """Per (family, probe, param): mean over source seeds with a CI.

    With >= 2 seeds the CI is a t-interval over the per-seed values, cut to [0, 1] (``ci_kind``
    "seeds"; wide with 2-3 seeds, honestly so); with one seed it is that run's own interval over
    images (``ci_kind`` "images"). Also returns the mean coverage, chance level and number of
    seeds.
    DataFrame sorted by norm, eps.
    """
    import pandas as pd

    out = []
    keys = ["family", "norm", "eps", "probe", "param", "metric"]
    for k, g in rows.fillna({"param": -1.0}).groupby(keys, sort=False):
        v = g["value"].to_numpy(float)
        rec = dict(zip(keys, k), label=g["label"].iloc[0], value=float(np.mean(v)),
                   coverage=float(g["coverage"].mean()), n_seeds=len(g),
                   chance=float(g["chance"].mean()) if "chance" in g else float("nan"))
        if len(g) >= 2:  # source seeds x one stimulus set: stats.ci's t-interval over seeds
            c = stats.ci(v.reshape(-1, 1), level)
            rec.update(ci_low=max(0.0, c["ci_low"]), ci_high=min(1.0, c["ci_high"]),
                       ci_kind="seeds")
        else:
            rec.update(ci_low=float(g["ci_low"].iloc[0]), ci_high=float(g["ci_high"].iloc[0]),
                       ci_kind="images")
        out.append(rec)
    df = pd.DataFrame(out)
    df["param"] = df["param"].where(df["param"] >= 0)
    return df.sort_values(["norm", "eps", "probe", "param"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- paper scale
def _check_kinds(kinds) -> tuple[str, ...]:
    """``kinds`` (None = every archive kind) as a tuple, each a Geirhos archive kind whose rows
    the chapter can show."""
    kinds = tuple(cue_conflict.GEIRHOS_KINDS if kinds is None else kinds)
    for kind in kinds:
        if kind not in cue_conflict.GEIRHOS_KINDS:
            raise ValueError(f"stimulus kind {kind!r} is unknown; allowed: "
                             f"{list(cue_conflict.GEIRHOS_KINDS)}")
        if kind in cue_conflict.CONFLICT_KINDS and kind not in STIMULUS_KINDS:
            raise ValueError(f"stimulus kind {kind!r} is not in shape_bias.STIMULUS_KINDS "
                             f"{list(STIMULUS_KINDS)}: the tables, plots and findings would drop "
                             f"its shape-bias rows")
    if not kinds:
        raise ValueError(f"kinds=() is not allowed; give some of {list(cue_conflict.GEIRHOS_KINDS)}")
    return kinds


def probe_cue_conflict(model, root=None, *, kinds=("cue_stylized",),
                       allow_download: bool = False, seed: int = 0, n_boot: int = 1000,
                       indices: dict | None = None, stimuli: dict | None = None) -> list[dict]:
    """Rows of an ImageNet model on the Geirhos et al. stimuli, one per kind in ``kinds``
    (kinds of :data:`robust_transfer.cue_conflict.GEIRHOS_KINDS`; None = every kind; default:
    the cue-conflict images only).

    Decisions are the arg-max of :func:`robust_transfer.cue_conflict.imagenet_to_16` over the
    model's softmax. Cue-conflict kinds ("cue_stylized") give a shape-bias row (same-class
    stimuli excluded by :func:`shape_bias`; chance = coverage of random guessing, 2/16);
    shape-only kinds ("edges", "silhouette") an accuracy row (Wilson CI; chance 1/16). Row keys
    as in :func:`probe_source`. ``stimuli`` may pass ``{kind: load_cue_conflict(...)}`` loaded
    once for several models; ValueError for an unknown kind.
    """
    kinds = _check_kinds(kinds)
    indices = cue_conflict.IMAGENET_16_INDICES if indices is None else indices
    rows = []
    for kind in kinds:
        x, shapes, textures, _ = (stimuli[kind] if stimuli and kind in stimuli else
                                  cue_conflict.load_cue_conflict(root, kind=kind,
                                                                 allow_download=allow_download))
        scores = cue_conflict.imagenet_to_16(predict(model, x, batch_size=64, probabilities=True),
                                             indices)
        decisions = np.array(list(indices))[scores.argmax(1)]
        row = dict(probe=kind, param=float("nan"))
        if textures is None:
            acc = stats.wilson(decisions == shapes)
            row.update(metric="accuracy", value=acc["value"], ci_low=acc["ci_low"],
                       ci_high=acc["ci_high"], coverage=float("nan"), n=acc["n"],
                       chance=1 / len(indices))
        else:
            sb = shape_bias(decisions, shapes, textures, n_boot=n_boot, seed=seed)
            row.update(metric="shape_bias", value=sb["shape_bias"], ci_low=sb["ci_low"],
                       ci_high=sb["ci_high"], coverage=sb["coverage"], n=sb["n_conflict"],
                       chance=2 / len(indices))
        rows.append(row)
    return rows


def evaluate_cue_conflict(cfg, *, sources=None, root=None, progress: bool = True, seed: int = 0):
    """Rows of ImageNet sources on every Geirhos et al. stimulus kind (:func:`probe_cue_conflict`)
    as a pandas DataFrame in :func:`evaluate_sources`' schema, ready for :func:`summarize`.

    ``sources``: zoo ids of ImageNet sources (default: those of ``cfg.sources``; ValueError for
    any other source, or when there is none). ``root``: where the texture-vs-shape stimuli are
    (see :func:`robust_transfer.cue_conflict.load_cue_conflict`; fetched when
    ``cfg.allow_download``). ``seed`` seeds the bootstrap. Each source's rows are cached as JSON
    in ``cache_dir("shape_bias", <source id>)``, keyed by the kinds, the stimulus files (names
    and sizes), ``n_boot``, ``seed`` and the checkpoint's sha256; the images are read only when
    a source is not cached.
    """
    import pandas as pd

    ids = list(sources) if sources is not None else [
        s for s in cfg.sources if zoo.spec(s).dataset == "imagenet"]
    if not ids:
        raise ValueError(f"sources={list(cfg.sources)!r} hold no ImageNet source; "
                         f"evaluate_cue_conflict needs paper-scale sources (zoo ids "
                         f"'paper/imagenet/...'), evaluate_sources probes the others")
    for sid in ids:
        if zoo.spec(sid).dataset != "imagenet":
            raise ValueError(f"sources: {sid!r} is not an ImageNet source; evaluate_cue_conflict "
                             f"needs 'paper/imagenet/...' ids (evaluate_sources probes the others)")
    kinds = _check_kinds(None)
    n_boot = ProbeParams.from_config(cfg).n_boot
    files = {k: cue_conflict.stimulus_files(root, kind=k, allow_download=cfg.allow_download)
             for k in kinds}
    fingerprint = {k: [(str(f.relative_to(d)), f.stat().st_size) for f in fs]
                   for k, (d, fs) in files.items()}
    stimuli, frames = {}, []
    for sid in bar(ids, desc="cue-conflict probes", disable=not progress):
        model, meta = zoo.load(sid, allow_download=cfg.allow_download, progress=progress)
        key = cache.key(dict(kinds=list(kinds), stimuli=fingerprint, n_boot=n_boot, seed=seed,
                             source=sid, sha256=meta.get("sha256"), version=_CACHE_VERSION))
        path = cache.cache_dir("shape_bias", *sid.split("/")) / f"{key}.json"
        if path.exists():
            rows = json.loads(path.read_text())
        else:
            if not stimuli:  # read once, for the first source that is not cached
                stimuli.update({k: cue_conflict.load_cue_conflict(root, kind=k) for k in kinds})
            rows = probe_cue_conflict(model.to(cfg.torch_device()), kinds=kinds, seed=seed,
                                      n_boot=n_boot, stimuli=stimuli)
            cache.atomic_write_text(path, json.dumps(rows))
        frames.append(_source_frame(rows, sid, zoo.spec(sid)))
    return pd.concat(frames, ignore_index=True)
