"""The Geirhos et al. stimuli at paper scale: the 16 categories, their ImageNet-1k output
indices, the stimulus archive and its loader.

The archive (Geirhos et al., ICLR 2019; CC-BY 4.0, github.com/rgeirhos/texture-vs-shape) holds
three stimulus kinds under ``stimuli/`` (:data:`GEIRHOS_KINDS`): the 1,280 cue-conflict images
(``style-transfer-preprocessed-512/<shape>/<shape><i>-<texture><j>.png``, kind
``cue_stylized``) and 160 shape-only images each as edge drawings (``edges/<c>/<c><i>.png``, kind
``edges``) and filled black silhouettes (``filled-silhouettes/<c>/<c><i>.png``, kind
``silhouette``). :func:`load_cue_conflict` reads one kind (downloaded only when allowed, through
:func:`robust_transfer.cache.staged_dir`, so a killed extraction never leaves a partial stimulus
set). ImageNet's 1000 outputs are mapped to the 16 categories by averaging
member-class probabilities (:func:`imagenet_to_16`, index lists from the authors'
``code/helper/human_categories.py``). The metric and the probe of an ImageNet model on these
stimuli (:func:`robust_transfer.shape_bias.probe_cue_conflict`) live in
:mod:`robust_transfer.shape_bias`.
"""
from __future__ import annotations

import re
import shutil
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import torch

from .cache import atomic_path, cache_dir, staged_dir

__all__ = ["CATEGORIES_16", "IMAGENET_16_INDICES", "GEIRHOS_ARCHIVE_URL", "GEIRHOS_SUBDIR",
           "GEIRHOS_KINDS", "CONFLICT_KINDS", "imagenet_to_16", "parse_cue_conflict_name",
           "parse_stimulus_name", "stimulus_files", "load_cue_conflict"]

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
_STIMULI = "stimuli"
#: stimulus kind -> its folder under the archive's ``stimuli/`` (every kind the archive provides)
GEIRHOS_KINDS = {"cue_stylized": "style-transfer-preprocessed-512", "edges": "edges",
                 "silhouette": "filled-silhouettes"}
#: kinds whose images carry a shape and a texture category (the others carry a shape only)
CONFLICT_KINDS = ("cue_stylized",)
GEIRHOS_SUBDIR = f"{_STIMULI}/{GEIRHOS_KINDS['cue_stylized']}"
_CUE_NAME = re.compile(r"^([a-z]+)(\d+)-([a-z]+)(\d+)\.png$")
_SHAPE_NAME = re.compile(r"^([a-z]+)(\d+)\.png$")


# --------------------------------------------------------------------------- mapping
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


def _check_kind(kind: str) -> None:
    if kind not in GEIRHOS_KINDS:
        raise ValueError(f"stimulus kind {kind!r} is unknown; allowed: {list(GEIRHOS_KINDS)}")


def parse_stimulus_name(filename: str, kind: str) -> tuple[str, str | None]:
    """(shape category, texture category or None) of a stimulus file of ``kind``:
    ``bear1-bottle3.png`` for cue-conflict kinds, ``bear1.png`` for shape-only kinds."""
    _check_kind(kind)
    if kind in CONFLICT_KINDS:
        return parse_cue_conflict_name(filename)
    m = _SHAPE_NAME.match(Path(filename).name)
    if not m or m.group(1) not in CATEGORIES_16:
        raise ValueError(f"{filename!r} is not a {kind} stimulus file name '<category><i>.png' "
                         f"with a category in {CATEGORIES_16}")
    return m.group(1), None


# --------------------------------------------------------------------------- archive
def _is_kind_folder(path: Path) -> bool:
    return path.is_dir() and any((path / c).is_dir() for c in CATEGORIES_16)


def _find_stimuli(root: Path, kind: str) -> Path | None:
    sub = f"{_STIMULI}/{GEIRHOS_KINDS[kind]}"
    # the kind's folder itself is accepted for the cue-conflict images only (the other kinds'
    # folders hold the same <category>/ layout and could not be told apart)
    cands = [root / sub] + ([root] if kind == "cue_stylized" else [])
    cands += sorted(root.glob(f"*/{sub}"))  # an extracted archive: texture-vs-shape-master/
    return next((c for c in cands if _is_kind_folder(c)), None)


def _download_stimuli(root: Path) -> None:
    """Fetch the texture-vs-shape archive and extract every kind's folder under ``root/stimuli``
    (all of them, or none: the folder is replaced only when the extraction is complete)."""
    archive = cache_dir("shape_bias", "downloads") / "texture-vs-shape-master.zip"
    if not archive.exists():
        with atomic_path(archive) as tmp, urllib.request.urlopen(GEIRHOS_ARCHIVE_URL) as resp, \
                open(tmp, "wb") as fh:
            shutil.copyfileobj(resp, fh)
    kind_of = {folder: kind for kind, folder in GEIRHOS_KINDS.items()}
    # extract into a staging folder that replaces root/stimuli only when complete, so a killed
    # extraction never leaves a partial stimulus set that a later run would accept
    with staged_dir(root / _STIMULI) as staging, zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            parts = member.split("/", 1)[-1].split("/")
            if parts[0] != _STIMULI or len(parts) < 3 or parts[1] not in kind_of \
                    or not member.endswith(".png"):
                continue
            # only stimuli/<kind folder>/<category>/<name>.png: no "..", no other folders
            if len(parts) != 4 or parts[2] not in CATEGORIES_16:
                raise ValueError(f"unexpected archive member {member!r}")
            parse_stimulus_name(member, kind_of[parts[1]])
            (staging / parts[1] / parts[2]).mkdir(parents=True, exist_ok=True)
            (staging / parts[1] / parts[2] / parts[3]).write_bytes(zf.read(member))


def stimulus_files(root=None, *, kind: str = "cue_stylized",
                   allow_download: bool = False) -> tuple[Path, list[Path]]:
    """(the kind's folder, its ``<category>/*.png`` files sorted by path) under ``root``.

    ``root`` as in :func:`load_cue_conflict`. Missing stimuli are downloaded (every kind at
    once) only when ``allow_download``; otherwise FileNotFoundError names the path looked at.
    """
    _check_kind(kind)
    root = Path(root) if root is not None else cache_dir("shape_bias", "texture-vs-shape")
    stim = _find_stimuli(root, kind)
    if stim is None and allow_download:
        _download_stimuli(root)
        stim = _find_stimuli(root, kind)
    sub = f"{_STIMULI}/{GEIRHOS_KINDS[kind]}"
    if stim is None:
        raise FileNotFoundError(
            f"no {kind} stimuli under {root} (looked for {root / sub}/<category>/*.png); pass "
            f"allow_download=True to fetch {GEIRHOS_ARCHIVE_URL}, or put the texture-vs-shape "
            f"repository there")
    files = sorted(f for c in CATEGORIES_16 for f in (stim / c).glob("*.png"))
    if not files:
        raise FileNotFoundError(f"{stim} holds no <category>/*.png {kind} images")
    return stim, files


def load_cue_conflict(root=None, *, kind: str = "cue_stylized", allow_download: bool = False,
                      size: int = 224):
    """The Geirhos et al. stimuli of ``kind`` (one of :data:`GEIRHOS_KINDS`; CC-BY 4.0).

    ``root`` (default ``cache_dir("shape_bias", "texture-vs-shape")``) may be the repository
    root or an extracted archive's parent (``stimuli/<kind folder>/<category>/*.png``), or, for
    ``cue_stylized``, the ``style-transfer-preprocessed-512`` folder itself. Missing files are
    downloaded from :data:`GEIRHOS_ARCHIVE_URL` only when ``allow_download``; otherwise
    FileNotFoundError names the path looked at. Returns (images float32 (N, 3, size, size) in
    [0,1], shape_labels, texture_labels (str arrays; None for shape-only kinds), file names
    relative to the kind's folder), sorted by file path.
    """
    from PIL import Image

    stim, files = stimulus_files(root, kind=kind, allow_download=allow_download)
    shapes, textures, imgs = [], [], []
    for f in files:
        s, t = parse_stimulus_name(f.name, kind)
        if s != f.parent.name:
            raise ValueError(f"{f}: shape {s!r} in the name but folder {f.parent.name!r}")
        with Image.open(f) as im:
            im = im.convert("RGB").resize((size, size), Image.BILINEAR)
            imgs.append(np.asarray(im, dtype=np.float32) / 255.0)
        shapes.append(s)
        textures.append(t)
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
    return (x, np.array(shapes), np.array(textures) if kind in CONFLICT_KINDS else None,
            [str(f.relative_to(stim)) for f in files])
