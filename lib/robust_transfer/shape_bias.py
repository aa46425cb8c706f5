"""Shape vs texture: cue-conflict stimuli, the Geirhos shape-bias metric, shape/texture probes.

Metric (Geirhos et al., ICLR 2019). Over cue-conflict images whose shape class differs from
their texture class, ``shape bias = shape decisions / (shape decisions + texture decisions)``;
``coverage`` = share of those images whose decision hits either class. Same-class images are
excluded. The 95% CI is a percentile bootstrap over images.

Mini-scale stimuli are built from the source's own test set, deterministically per seed:

* ``fourier``: phase spectrum of an image of class A (edges, shape) with the amplitude spectrum
  of an image of class B (energy per frequency, texture). ``|FFT(B)| exp(i angle FFT(A))`` is
  Hermitian-symmetric because both inputs are real, so its inverse FFT is real up to rounding;
  :func:`fourier_recombine` returns it raw (unclipped; tests check phase and amplitude there).
  :func:`to_unit_range` then maps each image into [0, 1] by shrinking its contrast about its
  own mean, ``m + a (x - m)`` with the largest ``a <= 1`` that fits: no clipping, so every
  non-DC phase is kept exactly and all non-DC amplitudes are scaled by the same factor ``a``.
* ``silhouette``: the filled silhouette of an item of class A, filled with square patches cut
  from inside an item of class B (background 0, as in Fashion-MNIST).

Probes (accuracy against the true label): Gaussian low-pass at each ``blur_sigmas``, high-pass
``clip(x - blur_sigma(x) + 0.5, 0, 1)`` at each sigma > 0, patch-shuffled images (a g x g grid of
tiles permuted: local texture kept, global shape destroyed), binary silhouettes and Sobel edge
maps (shape kept, texture removed). :func:`probe_source` runs all of them for one model,
:func:`evaluate_sources` for a config's sources with an on-disk cache per source.

Paper scale: the 1,280 cue-conflict images of Geirhos et al. (CC-BY 4.0,
github.com/rgeirhos/texture-vs-shape, ``stimuli/style-transfer-preprocessed-512/<shape>/
<shape><i>-<texture><j>.png``) via :func:`load_cue_conflict`; ImageNet's 1000 outputs are mapped
to the 16 categories by averaging member-class probabilities (:func:`imagenet_to_16`, index lists
from the authors' ``code/helper/human_categories.py``). The authors' low-pass for transfer
targets (resize down to 32 px and back) is :func:`robust_transfer.data.lowres`, used through
target names ``lowres:<dataset>``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .cache import atomic_path, atomic_write_text, cache_dir
from .data import lowres, sobel_magnitude

__all__ = [
    "CATEGORIES_16", "IMAGENET_16_INDICES", "GEIRHOS_ARCHIVE_URL", "GEIRHOS_SUBDIR",
    "shape_bias", "accuracy_ci", "fourier_recombine", "to_unit_range", "fourier_stimuli",
    "silhouette_mask", "texture_fill_stimuli", "patch_shuffle", "edge_map", "lowpass",
    "highpass", "lowres", "ProbeParams", "build_probes", "predict", "probe_source",
    "source_dataset", "evaluate_sources", "summarize", "trend", "shape_bias_table",
    "accuracy_table", "transfer_link", "findings",
    "plot_stimuli", "plot_shape_bias", "plot_probe_curves", "imagenet_to_16",
    "parse_cue_conflict_name", "load_cue_conflict", "probe_cue_conflict",
    "SHAPE_TARGETS", "TEXTURE_TARGETS",
]

# --------------------------------------------------------------------------- paper-scale constants
#: The 16 entry-level categories of Geirhos et al. (sorted, as in their code).
CATEGORIES_16 = ("airplane", "bear", "bicycle", "bird", "boat", "bottle", "car", "cat", "chair",
                 "clock", "dog", "elephant", "keyboard", "knife", "oven", "truck")

#: ImageNet-1k output indices belonging to each category, copied from
#: rgeirhos/texture-vs-shape code/helper/human_categories.py (``<category>_indices``; identical in
#: bethgelab/model-vs-human modelvshuman/helper/human_categories.py).
IMAGENET_16_INDICES: dict[str, tuple[int, ...]] = {
    "airplane": (404,),
    "bear": (294, 295, 296, 297),
    "bicycle": (444, 671),
    "bird": (8, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22, 23, 24, 80, 81, 82, 83, 87, 88, 89,
             90, 91, 92, 93, 94, 95, 96, 98, 99, 100, 127, 128, 129, 130, 131, 132, 133, 135,
             136, 137, 138, 139, 140, 141, 142, 143, 144, 145),
    "boat": (472, 554, 625, 814, 914),
    "bottle": (440, 720, 737, 898, 899, 901, 907),
    "car": (436, 511, 817),
    "cat": (281, 282, 283, 284, 285, 286),
    "chair": (423, 559, 765, 857),
    "clock": (409, 530, 892),
    "dog": (152, 153, 154, 155, 156, 157, 158, 159, 160, 161, 162, 163, 164, 165, 166, 167, 168,
            169, 170, 171, 172, 173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183, 184, 185,
            186, 187, 188, 189, 190, 191, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203,
            205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220, 221,
            222, 223, 224, 225, 226, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239,
            240, 241, 243, 244, 245, 246, 247, 248, 249, 250, 252, 253, 254, 255, 256, 257, 259,
            261, 262, 263, 265, 266, 267, 268),
    "elephant": (385, 386),
    "keyboard": (508, 878),
    "knife": (499,),
    "oven": (766,),
    "truck": (555, 569, 656, 675, 717, 734, 864, 867),
}

GEIRHOS_ARCHIVE_URL = "https://github.com/rgeirhos/texture-vs-shape/archive/refs/heads/master.zip"
GEIRHOS_SUBDIR = "stimuli/style-transfer-preprocessed-512"
_CUE_NAME = re.compile(r"^([a-z]+)(\d+)-([a-z]+)(\d+)\.png$")

# zoo SourceSpec.dataset -> robust_transfer.data name of the source's own dataset
_SOURCE_DATA = {"fashion_mnist": "fashion_mnist"}
_CACHE_VERSION = 3

#: targets whose classes are defined by shape (digits, characters) vs the texture-defined control
SHAPE_TARGETS = ("mnist5k", "digits", "mnist", "kmnist", "svhn")
TEXTURE_TARGETS = ("textures",)


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
               n_conflict=n, n_shape=ns, n_texture=nt,
               ci_low=float("nan"), ci_high=float("nan"))
    if n and ns + nt and n_boot > 0:
        idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
        bs, bt = hit_s[idx].sum(1), hit_t[idx].sum(1)
        ok = bs + bt > 0
        ratios = bs[ok] / (bs[ok] + bt[ok])
        alpha = (1 - level) / 2
        out["ci_low"], out["ci_high"] = (float(q) for q in np.quantile(ratios, [alpha, 1 - alpha]))
    return out


def accuracy_ci(correct, level: float = 0.95) -> dict:
    """Share of True in ``correct`` with its Wilson interval: dict(value, ci_low, ci_high, n)."""
    from scipy.stats import norm

    correct = np.asarray(correct, dtype=bool)
    n = correct.size
    if n == 0:
        return dict(value=float("nan"), ci_low=float("nan"), ci_high=float("nan"), n=0)
    p, z = correct.mean(), norm.ppf(0.5 + level / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return dict(value=float(p), ci_low=float(centre - half), ci_high=float(centre + half), n=n)


# --------------------------------------------------------------------------- stimuli
def _np(images) -> np.ndarray:
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W); got {x.shape}")
    return x.astype(np.float64)


def fourier_recombine(phase_images, amplitude_images) -> np.ndarray:
    """Raw recombination ``ifft2(|FFT(amplitude_images)| * exp(i angle FFT(phase_images)))``.

    Both (N, C, H, W) in [0, 1]; returns a float64 array of the same shape, NOT clipped or
    rescaled (values may leave [0, 1]). The imaginary part is dropped: it is zero up to rounding
    because the combined spectrum is Hermitian-symmetric (checked here).
    """
    a, b = _np(phase_images), _np(amplitude_images)
    if a.shape != b.shape:
        raise ValueError(f"phase_images {a.shape} and amplitude_images {b.shape} must match")
    spec = np.abs(np.fft.fft2(b)) * np.exp(1j * np.angle(np.fft.fft2(a)))
    out = np.fft.ifft2(spec)
    assert np.abs(out.imag).max(initial=0.0) <= 1e-8 * max(1.0, np.abs(out.real).max(initial=0.0))
    return out.real


def to_unit_range(x) -> np.ndarray:
    """Map each image into [0, 1] as ``m + a (x - m)``, m = per-channel mean, a <= 1 maximal.

    No clipping: each channel's spatial mean (DC term) is unchanged, every other frequency keeps
    its phase and has its amplitude multiplied by one per-image factor ``a`` (1 when already in
    range). Needs every channel mean in [0, 1], true for Fourier recombinations of [0,1] images.
    """
    x = _np(x)
    m = x.mean(axis=(2, 3), keepdims=True)
    lo, hi = x.min(axis=(2, 3), keepdims=True), x.max(axis=(2, 3), keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        a_lo = np.where(lo < 0, m / (m - lo), 1.0)
        a_hi = np.where(hi > 1, (1 - m) / (hi - m), 1.0)
    a = np.clip(np.minimum(a_lo, a_hi).min(axis=1, keepdims=True), 0.0, 1.0)
    return np.clip(m + a * (x - m), 0.0, 1.0)  # the clip only removes rounding (~1e-16)


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
    x = _np(images)
    out = to_unit_range(fourier_recombine(x[ia], x[ib]))
    return torch.from_numpy(out.astype(np.float32)), labels[ia], labels[ib]


def silhouette_mask(images, threshold: float = 0.05) -> np.ndarray:
    """Boolean (N, H, W): pixels whose channel mean exceeds ``threshold``, holes filled."""
    grey = _np(images).mean(axis=1) > threshold
    return np.stack([ndimage.binary_fill_holes(m) for m in grey])


def texture_fill_stimuli(images, labels, n: int, seed: int, patch: int = 4):
    """Silhouette cue-conflict stimuli: (images float32 tensor, shape_labels, texture_labels).

    The filled silhouette of ``images[shape_idx]`` is tiled with ``patch`` x ``patch`` squares cut
    at seeded random places fully inside the silhouette of ``images[texture_idx]`` (the most
    covered places when none fits); background 0.
    """
    labels = np.asarray(labels)
    x = _np(images)
    _, c, h, w = x.shape
    if not 1 <= patch <= min(h, w):
        raise ValueError(f"patch={patch!r} must be an integer in 1..{min(h, w)}")
    ia, ib = _pairs(labels, n, seed)
    rng = np.random.default_rng(seed + 1)
    masks_a = silhouette_mask(x[ia])
    masks_b = silhouette_mask(x[ib])
    out = np.zeros((n, c, h, w))
    for i in range(n):
        cover = np.lib.stride_tricks.sliding_window_view(masks_b[i], (patch, patch)).mean((-1, -2))
        ys, xs = np.nonzero(cover >= cover.max())
        src = x[ib[i]]
        for ty in range(0, h, patch):
            for tx in range(0, w, patch):
                k = rng.integers(len(ys))
                ph, pw = min(patch, h - ty), min(patch, w - tx)
                out[i, :, ty:ty + ph, tx:tx + pw] = src[:, ys[k]:ys[k] + ph, xs[k]:xs[k] + pw]
    out *= masks_a[:, None]
    return torch.from_numpy(out.astype(np.float32)), labels[ia], labels[ib]


def patch_shuffle(images, grid: int, seed: int) -> torch.Tensor:
    """Images cut into a ``grid`` x ``grid`` array of tiles, tiles permuted per image (seeded)."""
    x = _np(images)
    nimg, c, h, w = x.shape
    if not isinstance(grid, int) or grid < 1 or h % grid or w % grid:
        divisors = [g for g in range(1, min(h, w) + 1) if h % g == 0 and w % g == 0]
        raise ValueError(f"grid={grid!r} must divide the image size {h}x{w}; allowed: {divisors}")
    th, tw = h // grid, w // grid
    tiles = x.reshape(nimg, c, grid, th, grid, tw).transpose(0, 2, 4, 1, 3, 5)
    tiles = tiles.reshape(nimg, grid * grid, c, th, tw)
    perm = np.argsort(np.random.default_rng(seed).random((nimg, grid * grid)), axis=1)
    tiles = np.take_along_axis(tiles, perm[:, :, None, None, None], axis=1)
    out = tiles.reshape(nimg, grid, grid, c, th, tw).transpose(0, 3, 1, 4, 2, 5).reshape(x.shape)
    return torch.from_numpy(out.astype(np.float32))


def edge_map(images) -> torch.Tensor:
    """Sobel gradient magnitude of the grey image, scaled to max 1 per image, on every channel."""
    x = torch.as_tensor(_np(images))
    mag = sobel_magnitude(x)
    mag = mag / mag.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    return mag[:, None].expand(-1, x.shape[1], -1, -1).contiguous()


def lowpass(images, sigma: float) -> torch.Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels (0 = unchanged), float32 tensor."""
    if not isinstance(sigma, (int, float)) or sigma < 0:
        raise ValueError(f"sigma={sigma!r} must be a number >= 0 (pixels)")
    x = _np(images)
    if sigma > 0:
        x = ndimage.gaussian_filter(x, sigma=(0, 0, sigma, sigma), mode="nearest")
    return torch.from_numpy(x.astype(np.float32))


def highpass(images, sigma: float) -> torch.Tensor:
    """High-pass ``clip(x - lowpass(x, sigma) + 0.5, 0, 1)`` for ``sigma`` > 0 pixels."""
    if not isinstance(sigma, (int, float)) or sigma <= 0:
        raise ValueError(f"sigma={sigma!r} must be a number > 0 (pixels) for a high-pass")
    x = _np(images)
    return torch.from_numpy(np.clip(x - lowpass(x, sigma).double().numpy() + 0.5, 0, 1)
                            .astype(np.float32))


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
    x = _np(images)
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
    for name, make, pair_seed in (
            ("cue_fourier", fourier_stimuli, seed + 1),
            ("cue_silhouette", lambda *a: texture_fill_stimuli(*a, patch=p.fill_patch), seed + 2)):
        imgs, s_lab, t_lab = make(x, labels, p.n_stimuli, pair_seed)
        probes.append(dict(probe=name, param=nan, images=imgs, labels=s_lab, texture_labels=t_lab,
                           pairs=_pairs(labels, p.n_stimuli, pair_seed)))
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
    from tqdm.auto import tqdm

    p = _params(cfg_or_params)
    probes = build_probes(images, labels, p, seed) if probes is None else probes
    k = len(np.unique(np.concatenate([np.asarray(pr["labels"]) for pr in probes])))
    rows, done = [], {}
    for pr in tqdm(probes, desc="probes", disable=not progress, leave=False):
        key = id(pr["images"])
        if key not in done:
            done[key] = predict(model, pr["images"])
        pred = done[key]
        row = dict(probe=pr["probe"], param=pr["param"])
        if pr["texture_labels"] is None:
            acc = accuracy_ci(pred == pr["labels"])
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
    """The :mod:`robust_transfer.data` name of a mini/tiny source's own dataset (its probe set)."""
    from . import zoo
    return _source_dataset(zoo.spec(source_id))


def _source_dataset(spec) -> str:
    if spec.dataset not in _SOURCE_DATA:
        raise ValueError(f"source dataset {spec.dataset!r} has no mini-scale probe set; allowed: "
                         f"{sorted(_SOURCE_DATA)} (ImageNet sources use probe_cue_conflict)")
    return _SOURCE_DATA[spec.dataset]


def evaluate_sources(cfg, seed: int = 0, *, progress: bool = True, sources=None):
    """Probe rows for every source of ``cfg`` (or ``sources``) as a pandas DataFrame.

    Mini/tiny sources get all :func:`probe_source` probes on their own dataset's test set;
    ImageNet sources get the Geirhos cue-conflict shape bias (:func:`probe_cue_conflict`).
    Columns: source, family, norm, eps, source_seed, label + the probe_source row keys. Each
    source's rows are cached as JSON in ``cache_dir("shape_bias", <source id>)`` keyed by the
    probe parameters, seed and the checkpoint's sha256 (atomic writes), so a warm call only
    loads the checkpoints.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from . import data, zoo
    from .config import config_hash

    p = ProbeParams.from_config(cfg)
    probe_sets = {}
    frames = []
    for sid in tqdm(sources or cfg.sources, desc="shape-bias probes", disable=not progress):
        spec = zoo.spec(sid)
        model, meta = zoo.load(sid, allow_download=cfg.allow_download, progress=progress)
        model = model.to(cfg.torch_device())
        key = config_hash(dict(params=dataclasses.asdict(p), seed=seed, source=sid,
                               sha256=meta.get("sha256"), version=_CACHE_VERSION))
        path = cache_dir("shape_bias", *sid.split("/")) / f"{key}.json"
        if path.exists():
            rows = json.loads(path.read_text())
        else:
            torch.manual_seed(seed)
            if spec.dataset == "imagenet":
                rows = probe_cue_conflict(model, allow_download=cfg.allow_download, seed=seed,
                                          n_boot=p.n_boot)
            else:
                name = (_source_dataset(spec), spec.in_channels, spec.image_size)
                if name not in probe_sets:  # stimuli built once per dataset and format
                    x, y, _ = data.load(name[0], "test", allow_download=cfg.allow_download)
                    x = data.to_source_format(x, spec.in_channels, spec.image_size)
                    probe_sets[name] = build_probes(x, y.numpy(), p, seed)
                rows = probe_source(model, None, None, p, seed=seed, probes=probe_sets[name])
            atomic_write_text(path, json.dumps(rows))
        frame = pd.DataFrame(rows)
        frame.insert(0, "label", spec.label)
        frame.insert(0, "source_seed", spec.seed)
        frame.insert(0, "eps", spec.eps)
        frame.insert(0, "norm", spec.norm)
        frame.insert(0, "family", spec.family)
        frame.insert(0, "source", sid)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def summarize(rows, level: float = 0.95):
    """Per (family, probe, param): mean over source seeds with a CI.

    With >= 2 seeds the CI is a t-interval over the per-seed values, cut to [0, 1] (``ci_kind``
    "seeds"; wide with 2-3 seeds, honestly so); with one seed it is that run's own interval over
    images (``ci_kind`` "images"). Also returns the mean coverage, chance level and number of
    seeds.
    DataFrame sorted by norm, eps.
    """
    import pandas as pd
    from . import stats

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


def trend(summary, probe: str, param=None, norm: str = "l2") -> dict:
    """How ``probe`` (at ``param``) moves with eps along natural + ``norm`` sources.

    Returns dict(eps (list), values (list), spearman (rank correlation, NaN if < 3 points),
    delta (value at the largest eps minus natural), direction ("rises", "falls" or "is flat":
    flat when |delta| <= sqrt(h0^2 + h1^2), h0 and h1 the CI half-widths of the two ends)).
    """
    from scipy.stats import spearmanr

    s = summary[(summary["probe"] == probe) & summary["norm"].isin(["natural", norm])]
    if param is not None:
        s = s[np.isclose(s["param"].astype(float), float(param))]
    s = s.sort_values("eps")
    eps, vals = s["eps"].tolist(), s["value"].tolist()
    if len(s) < 2 or s["norm"].iloc[0] != "natural":
        return dict(eps=eps, values=vals, spearman=float("nan"), delta=float("nan"),
                    direction="cannot be judged (needs a natural and a robust source)")
    delta = vals[-1] - vals[0]
    half = float(np.hypot((s["ci_high"].iloc[0] - s["ci_low"].iloc[0]) / 2,
                          (s["ci_high"].iloc[-1] - s["ci_low"].iloc[-1]) / 2))
    rho = float(spearmanr(eps, vals).statistic) if len(s) >= 3 else float("nan")
    direction = "is flat" if abs(delta) <= half else ("rises" if delta > 0 else "falls")
    return dict(eps=eps, values=vals, spearman=rho, delta=float(delta), direction=direction)


_NORM_ORDER = {"natural": 0, "l2": 1, "linf": 2, "noise": 3}


def _family_order(summary) -> list[str]:
    fam = summary.drop_duplicates("family")
    fam = fam.assign(_r=fam["norm"].map(_NORM_ORDER).fillna(9)).sort_values(["_r", "eps"])
    return fam["family"].tolist()


def transfer_link(cfg, store=None, summary=None):
    """Robust-minus-natural transfer gains from Section 1's results store (read, not recomputed).

    ``store`` is a :class:`robust_transfer.store.Store` or its name (default ``cfg.preset``);
    only rows of ``sweep.grid(cfg)`` are used. Returns a DataFrame with one line per (non-natural
    family, unfrozen_blocks): mean paired gain (accuracy points, averaged over n and targets) on
    shape-defined targets (:data:`SHAPE_TARGETS`) and on the texture control
    (:data:`TEXTURE_TARGETS`), their difference ``shape_minus_texture``, the number of
    (target, n) cells, and, when ``summary`` is given, the family's Fourier shape bias. Empty
    when the store holds no paired rows.
    """
    import pandas as pd

    from . import stats, sweep
    from .store import Store

    st = store if isinstance(store, Store) else Store(store or cfg.preset)
    frame = st.frame(sweep.grid(cfg))
    d = stats.deltas(frame) if len(frame) else pd.DataFrame()
    if d.empty:
        return pd.DataFrame()
    d["kind"] = np.where(d["target"].isin(SHAPE_TARGETS), "shape",
                         np.where(d["target"].isin(TEXTURE_TARGETS), "texture", "other"))
    out = []
    for (family, k), g in d.groupby(["family", "unfrozen_blocks"], sort=False):
        shape_g, tex_g = g[g["kind"] == "shape"], g[g["kind"] == "texture"]
        rec = dict(family=family, label=g["source_label"].iloc[0] if "source_label" in g
                   else family, norm=g["norm"].iloc[0], eps=g["eps"].iloc[0],
                   unfrozen_blocks=k, gain_shape_targets=shape_g["mean"].mean(),
                   gain_texture_target=tex_g["mean"].mean(), cells=len(g),
                   significant_up=int((g["direction"] > 0).sum()),
                   significant_down=int((g["direction"] < 0).sum()))
        rec["shape_minus_texture"] = rec["gain_shape_targets"] - rec["gain_texture_target"]
        out.append(rec)
    link = pd.DataFrame(out)
    if summary is not None:
        sbf = summary[summary["probe"] == "cue_fourier"].set_index("family")["value"]
        link["shape_bias_fourier"] = link["family"].map(sbf)
    return link


def _setting(probe: str, param) -> str:
    if param is None or np.isnan(param):
        return probe
    return f"{probe} {param:g}x{param:g}" if probe == "patch_shuffle" else f"{probe} σ={param:g}"


def shape_bias_table(summary):
    """Display table: one line per source family, shape bias [95% CI] and coverage per stimulus."""
    import pandas as pd

    out = []
    for f in _family_order(summary):
        g = summary[(summary["family"] == f) & (summary["metric"] == "shape_bias")]
        rec = {"source": g["label"].iloc[0] if len(g) else f}
        for r in g.itertuples():
            name = {"cue_fourier": "(a) Fourier", "cue_silhouette": "(b) silhouette"}.get(
                r.probe, r.probe)
            rec[f"{name} shape bias"] = f"{r.value:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]"
            rec[f"{name} coverage"] = f"{100 * r.coverage:.0f}%"
        if len(g):
            rec["coverage if guessing"] = f"{100 * g['chance'].iloc[0]:.0f}%"
            rec["seeds"], rec["CI over"] = int(g["n_seeds"].iloc[0]), g["ci_kind"].iloc[0]
        out.append(rec)
    return pd.DataFrame(out).set_index("source")


def accuracy_table(summary):
    """Display table: accuracy % [95% CI] per probe setting (rows) and source family (columns)."""
    import pandas as pd

    acc = summary[summary["metric"] == "accuracy"]
    order = _family_order(summary)
    labels = {f: summary.loc[summary["family"] == f, "label"].iloc[0] for f in order}
    settings = list(dict.fromkeys(_setting(r.probe, r.param) for r in acc.sort_values(
        ["probe", "param"]).itertuples()))
    table = pd.DataFrame(index=settings, columns=[labels[f] for f in order], dtype=object)
    for r in acc.itertuples():
        table.loc[_setting(r.probe, r.param), labels[r.family]] = (
            f"{100 * r.value:.1f} [{100 * r.ci_low:.1f}, {100 * r.ci_high:.1f}]")
    return table


def _fmt(r, pct=False) -> str:
    f = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:.2f}")
    return f"{f(r['value'])} [{f(r['ci_low'])}, {f(r['ci_high'])}]"


def findings(summary, link=None) -> str:
    """Markdown sentences computed from :func:`summarize` (and :func:`transfer_link`) tables."""
    from scipy.stats import spearmanr

    lines = []
    nat = summary[summary["norm"] == "natural"]
    if nat.empty:
        return "No natural source among the sources: nothing to compare against."
    params = {pr: sorted(summary.loc[summary["probe"] == pr, "param"].dropna().unique())
              for pr in ("lowpass", "highpass", "patch_shuffle")}

    def at(probe, family, param=None):
        g = summary[(summary["probe"] == probe) & (summary["family"] == family)]
        if param is not None:
            g = g[np.isclose(g["param"].astype(float), param)]
        return g.iloc[0] if len(g) else None

    nat_family = nat["family"].iloc[0]
    others = [f for f in _family_order(summary) if f != nat_family]
    checks = [("cue_fourier", None, "the Fourier-phase shape share (stimulus a)", False),
              ("cue_silhouette", None, "the silhouette shape share (stimulus b)", False)]
    if params["lowpass"]:
        checks.append(("lowpass", max(params["lowpass"]),
                       f"accuracy on blurred images (sigma = {max(params['lowpass']):g} px)", True))
    if params["highpass"]:  # the widest high-pass keeps the most signal (small sigmas ~ chance)
        checks.append(("highpass", max(params["highpass"]),
                       f"accuracy on high-passed images (sigma = {max(params['highpass']):g} px)",
                       True))
    for g in params["patch_shuffle"]:
        checks.append(("patch_shuffle", g, f"accuracy on patch-shuffled images ({g:g}x{g:g} "
                       "tiles: texture kept, shape destroyed)", True))
    for probe, param, what, pct in checks:
        tr = trend(summary, probe, param)
        base = at(probe, nat_family, param)
        if base is None:
            continue
        text = f"- With growing L2 eps, {what} **{tr['direction']}**"
        if np.isfinite(tr["delta"]):
            ends = "; ".join(f"eps {e:g}: {100 * v:.1f}%" if pct else f"eps {e:g}: {v:.2f}"
                             for e, v in zip(tr["eps"], tr["values"]))
            text += f" ({ends}; Spearman rho {tr['spearman']:.2f})" if np.isfinite(
                tr["spearman"]) else f" ({ends})"
        comp = [f"{at(probe, f, param)['label']} {_fmt(at(probe, f, param), pct)}"
                for f in others if at(probe, f, param) is not None
                and at(probe, f, param)["norm"] in ("linf", "noise")]
        text += f". Natural: {_fmt(base, pct)}" + (f"; {'; '.join(comp)}" if comp else "")
        if pct and np.isfinite(base["chance"]):
            text += f" (chance {100 * base['chance']:.0f}%)"
        if not pct:  # shape and texture hits per stimulus: the two parts of the ratio
            hits = [f"{r['label']} {100 * r['value'] * r['coverage']:.0f}% / "
                    f"{100 * (1 - r['value']) * r['coverage']:.0f}%"
                    for r in (at(probe, f, param) for f in [nat_family] + others) if r is not None]
            text += f". Shape / texture hits per stimulus: {'; '.join(hits)}"
        lines.append(text + ".")
    # which cue-conflict stimulus separates the sources
    sep = {}
    for probe in ("cue_fourier", "cue_silhouette"):
        g = summary[summary["probe"] == probe]
        if len(g) >= 2:
            half = ((g["ci_high"] - g["ci_low"]) / 2).mean()
            sep[probe] = (g["value"].max() - g["value"].min(), half, g["coverage"].mean(),
                          g["chance"].mean())
    if len(sep) == 2:
        best = max(sep, key=lambda k: sep[k][0] / max(sep[k][1], 1e-9))
        name = {"cue_fourier": "(a) Fourier", "cue_silhouette": "(b) silhouette"}
        lines.append("- Spread of shape bias across sources: " + "; ".join(
            f"{name[k]} {v[0]:.2f} (mean CI half-width {v[1]:.2f}, mean coverage "
            f"{100 * v[2]:.0f}% vs {100 * v[3]:.0f}% for random guesses)" for k, v in sep.items())
            + f". Stimulus type **{name[best]}** separates the sources more (spread / CI "
            f"half-width {sep[best][0] / max(sep[best][1], 1e-9):.1f}"
            + ("; below 1, so neither type separates them beyond the CIs)."
               if sep[best][0] <= sep[best][1] else ")."))
    if link is None or len(link) == 0:
        lines.append("- **Transfer link:** the transfer chapter's results store has no paired "
                     "robust-vs-natural rows for this configuration, so the shape bias cannot be "
                     "related to transfer gains here (run the transfer chapter first).")
    else:
        for k, g in link.groupby("unfrozen_blocks"):
            parts = "; ".join(f"{r.label}: {r.gain_shape_targets:+.1f} vs "
                              f"{r.gain_texture_target:+.1f}" for r in g.itertuples())
            text = (f"- **Transfer link ({k} unfrozen block(s))**: mean gain over natural on "
                    f"shape-defined targets vs the textures control, in accuracy points: {parts}.")
            robust = g[g["norm"].isin(["l2", "linf"])]
            if len(robust):
                more = int((robust["shape_minus_texture"] > 0).sum())
                text += (f" Robust sources gain more on shape targets than on textures for "
                         f"{more} of {len(robust)} families.")
            if ("shape_bias_fourier" in g and g["shape_bias_fourier"].notna().sum() >= 3
                    and g["shape_bias_fourier"].nunique() > 1
                    and g["shape_minus_texture"].nunique() > 1):
                rho = spearmanr(g["shape_bias_fourier"], g["shape_minus_texture"]).statistic
                text += (f" Across the {len(g)} non-natural families the Spearman correlation "
                         f"between Fourier shape bias and (shape-target gain - texture gain) is "
                         f"{rho:.2f} (few families: descriptive only).")
            lines.append(text)
    return "\n".join(lines)


def _show(ax, img, title):
    img = np.asarray(img)
    ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0,
              vmax=1)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def plot_stimuli(probes, images, class_names, n: int = 5):
    """Figure: cue-conflict stimuli (shape image A, texture image B, stimulus) for both types,
    then one row per shape/texture probe; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    names = list(class_names)
    cue = [p for p in probes if p["texture_labels"] is not None]
    other = [p for p in probes if p["texture_labels"] is None and p["probe"] != "clean"
             and not (p["probe"] == "lowpass" and p["param"] == 0)]
    clean = next(p for p in probes if p["probe"] == "clean")
    rows = 3 * len(cue) + 1 + len(other)
    fig, axes = plt.subplots(rows, n, figsize=(1.3 * n, 1.35 * rows), squeeze=False)
    x = _np(images)
    r = 0
    for p in cue:
        ia, ib = p["pairs"]
        kind = "Fourier" if p["probe"] == "cue_fourier" else "silhouette"
        for j in range(n):
            _show(axes[r, j], x[ia[j]], f"A shape: {names[p['labels'][j]]}")
            _show(axes[r + 1, j], x[ib[j]], f"B texture: {names[p['texture_labels'][j]]}")
            _show(axes[r + 2, j], p["images"][j], f"{kind} A+B")
        r += 3
    for p in [clean] + other:
        for j in range(n):
            par = "" if np.isnan(p["param"]) else (f" {p['param']:g}x{p['param']:g}" if
                                                   p["probe"] == "patch_shuffle" else
                                                   f" σ={p['param']:g}")
            short = {"patch_shuffle": "shuffle", "silhouette": "silh."}.get(p["probe"], p["probe"])
            _show(axes[r, j], p["images"][j], f"{short}{par}: {names[p['labels'][j]]}")
        r += 1
    fig.tight_layout()
    return fig


def _colours(order):
    import matplotlib.pyplot as plt
    cmap = plt.get_cmap("tab10")
    return {f: cmap(i % 10) for i, f in enumerate(order)}


def plot_shape_bias(summary):
    """Figure: shape bias (with CI bars; coverage printed under each bar) per source family for
    the two cue-conflict stimulus types; returns the Figure."""
    import matplotlib.pyplot as plt

    order = _family_order(summary)
    col = _colours(order)
    probes = [p for p in ("cue_fourier", "cue_silhouette") if (summary["probe"] == p).any()]
    fig, axes = plt.subplots(1, len(probes), figsize=(5.5 * len(probes), 3.6), squeeze=False)
    for ax, probe in zip(axes[0], probes):
        g = summary[summary["probe"] == probe].set_index("family").loc[order]
        xs = np.arange(len(order))
        ax.bar(xs, g["value"], color=[col[f] for f in order], alpha=0.8)
        ax.errorbar(xs, g["value"], yerr=[g["value"] - g["ci_low"], g["ci_high"] - g["value"]],
                    fmt="none", ecolor="k", capsize=3)
        for xi, cov in zip(xs, g["coverage"]):
            ax.text(xi, 0.02, f"cov\n{100 * cov:.0f}%", ha="center", fontsize=7)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xticks(xs, g["label"], rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("shape bias")
        ax.set_title({"cue_fourier": "(a) Fourier: phase A + amplitude B",
                      "cue_silhouette": "(b) silhouette A filled with texture B"}[probe])
    fig.tight_layout()
    return fig


def plot_probe_curves(summary):
    """Figure: accuracy vs sigma under low-pass and high-pass filtering, and vs patch-shuffle
    grid, one line (with 95% CI bars) per source family, chance dashed; returns the Figure."""
    import matplotlib.pyplot as plt

    order = _family_order(summary)
    col = _colours(order)
    panels = [("lowpass", "low-pass: Gaussian sigma (px)"),
              ("highpass", "high-pass: sigma (px)"),
              ("patch_shuffle", "patch shuffle: grid (tiles per side)")]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for ax, (probe, xlabel) in zip(axes, panels):
        for f in order:
            g = summary[(summary["probe"] == probe) & (summary["family"] == f)].sort_values("param")
            if g.empty:
                continue
            v = 100 * g["value"]
            ax.errorbar(g["param"], v, yerr=[v - 100 * g["ci_low"], 100 * g["ci_high"] - v],
                        fmt="o-", color=col[f], capsize=2, label=g["label"].iloc[0])
        chance = summary.loc[summary["probe"] == probe, "chance"]
        if len(chance):
            ax.axhline(100 * chance.mean(), color="grey", lw=0.8, ls="--", label="chance")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- paper scale
def imagenet_to_16(probabilities, indices: dict | None = None) -> np.ndarray:
    """(N, K) category scores: mean of the member-class probabilities of each category.

    ``probabilities`` (N, 1000) softmax outputs; ``indices`` maps category -> output indices
    (default :data:`IMAGENET_16_INDICES`, K = 16 in :data:`CATEGORIES_16` order). The decision is
    the arg-max over the returned columns (Geirhos et al.'s ``np.mean`` aggregation).
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    indices = IMAGENET_16_INDICES if indices is None else indices
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be (N, classes); got shape {probs.shape}")
    bad = [c for c, idx in indices.items() if not idx or max(idx) >= probs.shape[1]]
    if bad:
        raise ValueError(f"indices for {bad} are empty or exceed the {probs.shape[1]} outputs")
    return np.stack([probs[:, list(idx)].mean(1) for idx in indices.values()], axis=1)


def parse_cue_conflict_name(filename: str) -> tuple[str, str]:
    """(shape category, texture category) from a name like ``bear1-bottle3.png``."""
    m = _CUE_NAME.match(Path(filename).name)
    if not m or m.group(1) not in CATEGORIES_16 or m.group(3) not in CATEGORIES_16:
        raise ValueError(f"{filename!r} is not a cue-conflict file name "
                         f"'<shape><i>-<texture><j>.png' with categories in {CATEGORIES_16}")
    return m.group(1), m.group(3)


def _find_stimuli(root: Path) -> Path | None:
    for cand in (root / GEIRHOS_SUBDIR, root):
        if cand.is_dir() and any((cand / c).is_dir() for c in CATEGORIES_16):
            return cand
    for cand in root.glob(f"*/{GEIRHOS_SUBDIR}"):  # an extracted archive: texture-vs-shape-master/
        return cand
    return None


def _download_stimuli(root: Path) -> None:
    """Fetch the texture-vs-shape archive and extract GEIRHOS_SUBDIR under ``root``."""
    archive = cache_dir("shape_bias", "downloads") / "texture-vs-shape-master.zip"
    if not archive.exists():
        with atomic_path(archive) as tmp, urllib.request.urlopen(GEIRHOS_ARCHIVE_URL) as resp, \
                open(tmp, "wb") as fh:
            shutil.copyfileobj(resp, fh)
    # extract into a staging folder and rename it into place at the end, so a killed
    # extraction never leaves a partial stimulus set that a later run would accept
    final = root / GEIRHOS_SUBDIR
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=final.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                rel = member.split("/", 1)[-1]
                parts = rel.split("/")
                if rel.startswith(GEIRHOS_SUBDIR + "/") and member.endswith(".png"):
                    # only <subdir>/<category>/<name>.png: no "..", no other folders
                    if len(parts) != GEIRHOS_SUBDIR.count("/") + 3 or parts[-2] not in CATEGORIES_16:
                        raise ValueError(f"unexpected archive member {member!r}")
                    parse_cue_conflict_name(member)
                    (staging / parts[-2]).mkdir(exist_ok=True)
                    (staging / parts[-2] / parts[-1]).write_bytes(zf.read(member))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def load_cue_conflict(root=None, *, allow_download: bool = False, size: int = 224):
    """The Geirhos et al. cue-conflict images (CC-BY 4.0) from ``root``.

    ``root`` (default ``cache_dir("shape_bias", "texture-vs-shape")``) may be the repository
    root, an extracted archive's parent, or the ``style-transfer-preprocessed-512`` folder itself
    (``<shape>/<shape><i>-<texture><j>.png``). Missing files are downloaded from
    :data:`GEIRHOS_ARCHIVE_URL` only when ``allow_download``; otherwise FileNotFoundError names
    the path looked at. Returns (images float32 (N, 3, size, size) in [0,1], shape_labels,
    texture_labels (str arrays), file names), sorted by file path.
    """
    from PIL import Image

    root = Path(root) if root is not None else cache_dir("shape_bias", "texture-vs-shape")
    stim = _find_stimuli(root)
    if stim is None and allow_download:
        _download_stimuli(root)
        stim = _find_stimuli(root)
    if stim is None:
        raise FileNotFoundError(
            f"no cue-conflict stimuli under {root} (looked for {root / GEIRHOS_SUBDIR}/<category>/"
            f"*.png); pass allow_download=True to fetch {GEIRHOS_ARCHIVE_URL}, or put the "
            f"texture-vs-shape repository there")
    files = sorted(f for c in CATEGORIES_16 for f in (stim / c).glob("*.png"))
    if not files:
        raise FileNotFoundError(f"{stim} holds no <category>/*.png cue-conflict images")
    shapes, textures, imgs = [], [], []
    for f in files:
        s, t = parse_cue_conflict_name(f.name)
        if s != f.parent.name:
            raise ValueError(f"{f}: shape {s!r} in the name but folder {f.parent.name!r}")
        with Image.open(f) as im:
            im = im.convert("RGB").resize((size, size), Image.BILINEAR)
            imgs.append(np.asarray(im, dtype=np.float32) / 255.0)
        shapes.append(s)
        textures.append(t)
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
    return x, np.array(shapes), np.array(textures), [str(f.relative_to(stim)) for f in files]


def probe_cue_conflict(model, root=None, *, allow_download: bool = False, seed: int = 0,
                       n_boot: int = 1000, indices: dict | None = None) -> list[dict]:
    """Shape-bias row (probe "cue_stylized") of an ImageNet model on the Geirhos stimuli.

    Decisions are the arg-max of :func:`imagenet_to_16` over the model's softmax; same-class
    stimuli are excluded by :func:`shape_bias`. Row keys as in :func:`probe_source`.
    """
    indices = IMAGENET_16_INDICES if indices is None else indices
    x, shapes, textures, _ = load_cue_conflict(root, allow_download=allow_download)
    scores = imagenet_to_16(predict(model, x, batch_size=64, probabilities=True), indices)
    decisions = np.array(list(indices))[scores.argmax(1)]
    sb = shape_bias(decisions, shapes, textures, n_boot=n_boot, seed=seed)
    return [dict(probe="cue_stylized", param=float("nan"), metric="shape_bias",
                 value=sb["shape_bias"], ci_low=sb["ci_low"], ci_high=sb["ci_high"],
                 coverage=sb["coverage"], n=sb["n_conflict"], chance=2 / len(indices))]
