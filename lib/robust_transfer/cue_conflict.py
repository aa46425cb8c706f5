"""The Geirhos et al. cue-conflict stimuli at paper scale: the 16 categories, their ImageNet-1k
output indices, the stimulus archive and its loader.

The 1,280 cue-conflict images of Geirhos et al. (ICLR 2019; CC-BY 4.0,
github.com/rgeirhos/texture-vs-shape, ``stimuli/style-transfer-preprocessed-512/<shape>/
<shape><i>-<texture><j>.png``) are read by :func:`load_cue_conflict` (downloaded only when
allowed, through :func:`robust_transfer.cache.staged_dir`, so a killed extraction never leaves a
partial stimulus set). ImageNet's 1000 outputs are mapped to the 16 categories by averaging
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
           "imagenet_to_16", "parse_cue_conflict_name", "load_cue_conflict"]

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


# --------------------------------------------------------------------------- archive
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
    # extract into a staging folder that replaces root/GEIRHOS_SUBDIR only when complete, so a
    # killed extraction never leaves a partial stimulus set that a later run would accept
    with staged_dir(root / GEIRHOS_SUBDIR) as staging, zipfile.ZipFile(archive) as zf:
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
