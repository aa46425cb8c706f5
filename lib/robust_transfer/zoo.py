"""The source zoo: ids -> cached source models (trained here, or downloaded and converted once).

Ids (``list_sources()`` lists them):

- ``mini/fmnist/natural/s{seed}``, ``mini/fmnist/{l2,linf,noise}/{eps}/s{seed}``: ResNet-8s
  trained here on Fashion-MNIST (the first 20,000 training images), natural, PGD-adversarial
  (L2 / L-inf, eps in [0, 1] pixel units) or Gaussian-noise augmented (eps = noise sigma).
  ``tiny/...``: the same families on 1,000 images (seconds; for tests). The grid is
  ``_TRAINED_GRID``; a listed source is trained on first use; eps is written canonically (``1.0``).
- ``paper/imagenet/{natural,l2/3,linf/4,linf/8}``: the paper's ResNet-50 sources (L-inf eps in
  /255 units in the id): torchvision's ImageNet weights and the MadryLab ``robustness``
  checkpoints the authors used (Dropbox).
- ``salman2020/imagenet/{l2,linf}/{eps}``: the Salman et al. 2020 ResNet-50 grid from the
  Hugging Face repo ``madrylab/robust-imagenet-models`` (revision ``main``).

Cache (under ``cache_dir()``): ``sources/<id>-<recipe hash>.{safetensors,json}`` in our
checkpoint format; raw downloads in ``downloads/`` with ``downloads/pins.json`` holding the
sha256 of every file this code downloaded (recorded on first download, verified on every later
use). Hashes known in advance are in :data:`PINNED_SHA256` (``None`` = not known here: the first
download is recorded). A corrupt or truncated cache file is detected (sha256) and re-made
(re-trained or re-downloaded), never used. Downloads happen only with ``allow_download=True``.
"""
from __future__ import annotations

import json
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import checkpoints, config, data, models, train
from .cache import atomic_path, atomic_write_text, cache_dir, sha256_file

__all__ = ["SourceSpec", "list_sources", "check_id", "spec", "revision", "load", "load_grid", "table",
           "accuracy_curves", "findings", "source_data", "ATTACK_EPS", "TRAINED_SCALES", "PINNED_SHA256",
           "PUBLISHED_CLEAN_ACC", "SourceUnavailable"]

# ------------------------------------------------------------------------------- registry

FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530  # Fashion-MNIST training-set pixel mean / std

#: recipe per trained scale (images = first N Fashion-MNIST training images; robust eval on the
#: first ``eval_images`` test images, clean accuracy on ``clean_images`` test images)
TRAINED_SCALES = {
    "mini": dict(train_images=20000, epochs=2, batch_size=128, lr=0.1, steps=3,
                 clean_images=10000, eval_images=500, eval_steps=10),
    "tiny": dict(train_images=1000, epochs=1, batch_size=50, lr=0.05, steps=2,
                 clean_images=500, eval_images=100, eval_steps=3),
}
#: attack eps of the robust-accuracy evaluation (pixel units); L2 is the table's main norm
ATTACK_EPS = {"l2": (0.25, 0.5, 1.0, 2.0), "linf": (0.05, 0.1)}
_RECIPE_VERSION = 1  # bump when train.py's recipe changes so cached sources are re-trained

_TRAINED_GRID = ([("natural", None, s) for s in (0, 1, 2)]
                 + [("l2", "1.0", s) for s in (0, 1, 2)]
                 + [("l2", "0.5", 0), ("l2", "2.0", 0), ("linf", "0.1", 0), ("noise", "0.1", 0)])

_TV_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
_DROPBOX = "https://www.dropbox.com/s/{}?dl=1"
PAPER_FILES = {  # id -> (url, file name)
    "paper/imagenet/natural": (_TV_URL, "resnet50-0676ba61.pth"),
    "paper/imagenet/l2/3": (_DROPBOX.format("knf4uimlqsi1yz8/imagenet_l2_3_0.pt"), "imagenet_l2_3_0.pt"),
    "paper/imagenet/linf/4": (_DROPBOX.format("axfuary2w1cnyrg/imagenet_linf_4.pt"), "imagenet_linf_4.pt"),
    "paper/imagenet/linf/8": (_DROPBOX.format("yxn15a9zklz3s8q/imagenet_linf_8.pt"), "imagenet_linf_8.pt"),
}
#: torchvision publishes the first 8 hex digits of the sha256 in the file name
_SHA_PREFIX = {"resnet50-0676ba61.pth": "0676ba61"}
HF_REPO, HF_REVISION = "madrylab/robust-imagenet-models", "main"
SALMAN_EPS = {"l2": ("0", "0.01", "0.03", "0.05", "0.1", "0.25", "0.5", "1", "3", "5"),
              "linf": ("0.5", "1", "2", "4", "8")}
#: full sha256 of downloadable files known in advance (None: recorded on first download)
PINNED_SHA256: dict[str, str | None] = {
    **{name: None for _, name in PAPER_FILES.values()},
    **{f"resnet50_l2_eps{e}.ckpt": None for e in SALMAN_EPS["l2"]},
    **{f"resnet50_linf_eps{float(e):.1f}.ckpt": None for e in SALMAN_EPS["linf"]},
}
#: ImageNet top-1 (fraction) of the paper's sources as reported in the paper
PUBLISHED_CLEAN_ACC = {"paper/imagenet/natural": 0.7613, "paper/imagenet/l2/3": 0.5790,
                       "paper/imagenet/linf/4": 0.6242, "paper/imagenet/linf/8": 0.4791}


class SourceUnavailable(ValueError):
    """A downloadable source is not in the cache and downloads are not allowed."""


@dataclass(frozen=True)
class SourceSpec:
    """What a source id means. eps in [0, 1] pixel units (noise: sigma; natural: 0)."""

    id: str
    scale: str
    dataset: str
    arch: str
    norm: str
    eps: float
    seed: int
    family: str
    in_channels: int
    image_size: int
    num_blocks: int
    label: str


def list_sources(scale: str | None = None) -> list[str]:
    """All registered source ids, or those of one ``scale`` (tiny, mini, paper, salman2020)."""
    ids = []
    for sc in ("tiny", "mini"):
        ids += [f"{sc}/fmnist/natural/s{s}" if norm == "natural" else f"{sc}/fmnist/{norm}/{e}/s{s}"
                for norm, e, s in _TRAINED_GRID]
    ids += list(PAPER_FILES)
    ids += [f"salman2020/imagenet/{nm}/{e}" for nm, es in SALMAN_EPS.items() for e in es]
    if scale is None:
        return ids
    if scale not in _SCALES:
        raise ValueError(f"scale={scale!r} is not allowed; allowed: {list(_SCALES)}")
    return [i for i in ids if i.split("/")[0] == scale]


_SCALES = ("tiny", "mini", "paper", "salman2020")
_TRAINED_RE = re.compile(r"^(tiny|mini)/fmnist/(?:(natural)|(l2|linf|noise)/([^/]+))/s(\d+)$")


def check_id(source_id: str) -> None:
    """Raise ``ValueError`` naming what is wrong with ``source_id`` (scale, norm, eps, seed),
    including a well-formed id that is not in the zoo (e.g. an eps that was never trained)."""
    sp = spec(source_id)
    listed = list_sources(sp.scale)
    if source_id not in listed:
        same_norm = sorted({i.rsplit("/", 1)[0] for i in listed if spec(i).norm == sp.norm})
        seeds = sorted({spec(i).seed for i in listed if spec(i).family == sp.family})
        what = (f"seed {sp.seed} of {sp.family} is not in the zoo; its seeds are {seeds}" if seeds
                else f"eps {sp.eps:g} ({sp.norm}) is not in the zoo; {sp.scale} {sp.norm} sources: "
                     f"{same_norm}")
        _bad(source_id, what + " (add it to zoo._TRAINED_GRID to train it)")


def _bad(source_id, what):
    raise ValueError(f"source id {source_id!r}: {what}; see robust_transfer.zoo.list_sources()")


def _label(norm: str, eps: float, linf_255: bool = False) -> str:
    if norm == "natural":
        return "natural"
    if norm == "noise":
        return f"noise σ={eps:g}"
    if norm == "linf" and linf_255:
        return f"L∞ ε={eps * 255:g}/255"
    return f"{'L2' if norm == 'l2' else 'L∞'} ε={eps:g}"


def spec(source_id: str) -> SourceSpec:
    """The :class:`SourceSpec` of ``source_id``; ``ValueError`` if the id is not valid."""
    if not isinstance(source_id, str):
        raise ValueError(f"source id {source_id!r} must be a string like 'mini/fmnist/l2/1.0/s0'")
    scale = source_id.split("/")[0]
    if scale not in _SCALES:
        _bad(source_id, f"unknown scale {scale!r}; allowed: {list(_SCALES)}")
    if scale in ("tiny", "mini"):
        return _trained_spec(source_id)
    if source_id not in list_sources(scale):
        _bad(source_id, f"not a {scale} source; allowed: {list_sources(scale)}")
    parts = source_id.split("/")
    norm = parts[2]
    eps = 0.0 if norm == "natural" else float(parts[3]) / (255 if norm == "linf" else 1)
    if scale == "salman2020" and eps == 0:
        norm = "natural"
    return SourceSpec(source_id, scale, "imagenet", "resnet50", norm, eps, 0, source_id, 3, 224,
                      16, _label(norm, eps, linf_255=True))


def _trained_spec(source_id: str) -> SourceSpec:
    m = _TRAINED_RE.match(source_id)
    if not m:
        _bad(source_id, "allowed forms: '<tiny|mini>/fmnist/natural/s<seed>' or "
             "'<tiny|mini>/fmnist/<l2|linf|noise>/<eps>/s<seed>'")
    scale, natural, norm, eps_text, seed_text = m.groups()
    seed = int(seed_text)
    if seed_text != str(seed):
        _bad(source_id, f"seed {seed_text!r} must be written without leading zeros ('s{seed}')")
    if natural:
        norm, eps = "natural", 0.0
    else:
        try:
            eps = float(eps_text)
        except ValueError:
            _bad(source_id, f"eps {eps_text!r} is not a number")
        limit = 10.0 if norm == "l2" else 1.0
        if not 0 < eps <= limit:
            _bad(source_id, f"eps {eps_text!r} out of range; allowed 0 < eps <= {limit} "
                 f"for {norm} (pixel units)")
        if eps_text != repr(eps):
            _bad(source_id, f"eps {eps_text!r} must be written canonically as {repr(eps)!r}")
    family = source_id.rsplit("/", 1)[0]
    return SourceSpec(source_id, scale, "fashion_mnist", "resnet8", norm, eps, seed, family, 1, 28,
                      3, _label(norm, eps))


# ------------------------------------------------------------------------------- loading

def source_data(scale: str, split: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``(images in [0,1], labels, class names)`` a trained scale uses: its training images
    (``split="train"``) or its robust-evaluation images (``split="test"``)."""
    if scale not in TRAINED_SCALES:
        raise ValueError(f"scale={scale!r} is not allowed; allowed: {list(TRAINED_SCALES)}")
    x, y, names = data.load("fashion_mnist", split)
    r = TRAINED_SCALES[scale]
    n = r["train_images"] if split == "train" else r["clean_images"]
    return x[:n], y[:n], names


def _recipe(sp: SourceSpec) -> dict:
    return {"version": _RECIPE_VERSION, "id": sp.id, **TRAINED_SCALES[sp.scale],
            "attack_eps": ATTACK_EPS}


def revision(source_id: str) -> str:
    """What fixes the weights ``source_id`` loads, without loading them: the hash of the
    training recipe (trained scales) or the checkpoint file name (downloaded scales). Result
    keys include it, so retraining a source with a new recipe invalidates its old results."""
    sp = spec(source_id)
    if sp.scale in TRAINED_SCALES:
        return config.config_hash(_recipe(sp))[:10]
    return _download_info(sp)[0]


def _ckpt_path(sp: SourceSpec) -> Path:
    stem = sp.id.replace("/", "__")
    if sp.scale in TRAINED_SCALES:
        stem += "-" + revision(sp.id)
    return cache_dir("sources") / stem


def load(source_id: str, *, allow_download: bool = False,
         progress: bool = True) -> tuple[models.BlockNet, dict]:
    """``(model in eval mode, metadata)`` of a source, training or downloading it if missing.

    The model converts any image batch to its input format (channels, size) itself.

    metadata: id, arch, dataset, norm, eps (pixel units), seed, clean_acc (fraction),
    robust_acc ({L2 attack eps: accuracy}), robust_acc_linf ({L-inf attack eps: accuracy}),
    train_seconds, recipe, sha256 (of our weights file). For paper/salman2020 sources clean_acc
    is the published ImageNet top-1 (if known) and no robust accuracy is measured here.
    """
    check_id(source_id)
    sp = spec(source_id)
    path = _ckpt_path(sp)
    if checkpoints.exists(path):
        try:
            model, meta = checkpoints.load(path)
            model.input_format = (sp.in_channels, sp.image_size)
            return model, _float_keys(meta)
        except checkpoints.CheckpointError as e:
            warnings.warn(f"cached source {source_id} is unusable ({e}); re-making it")
            for p in path.parent.glob(path.name + ".*"):
                p.unlink()
    if sp.scale in TRAINED_SCALES:
        model, meta = _train(sp, progress)
    else:
        model, meta = _convert(sp, allow_download, progress)
    meta = checkpoints.save(path, model, meta)
    model.input_format = (sp.in_channels, sp.image_size)
    return model.eval(), _float_keys(meta)


def _float_keys(meta: dict) -> dict:
    """JSON turns the attack-eps keys into strings: make them floats again."""
    for key in ("robust_acc", "robust_acc_linf"):
        meta[key] = {float(k): v for k, v in meta.get(key, {}).items()}
    return meta


def _train(sp: SourceSpec, progress: bool) -> tuple[models.BlockNet, dict]:
    r = TRAINED_SCALES[sp.scale]
    x, y, names = source_data(sp.scale, "train")
    torch.manual_seed(sp.seed)
    model = models.build(sp.arch, len(names), sp.in_channels, mean=[FMNIST_MEAN], std=[FMNIST_STD])
    recipe = train.train_source(model, x, y, norm=sp.norm, eps=sp.eps, steps=r["steps"],
                                epochs=r["epochs"], batch_size=r["batch_size"], lr=r["lr"],
                                seed=sp.seed, progress=progress)
    xt, yt, _ = source_data(sp.scale, "test")
    start = time.perf_counter()
    acc = train.robust_accuracies(model, xt[:r["eval_images"]], yt[:r["eval_images"]],
                                  ATTACK_EPS, steps=r["eval_steps"], progress=progress)
    clean = train.evaluate(model, xt, yt)
    meta = dict(id=sp.id, arch=sp.arch, dataset=sp.dataset, num_classes=len(names),
                in_channels=sp.in_channels, norm=sp.norm, eps=sp.eps, seed=sp.seed,
                family=sp.family, clean_acc=clean, clean_images=len(xt),
                robust_acc=acc["robust_acc"]["l2"], robust_acc_linf=acc["robust_acc"]["linf"],
                robust_eval=f"PGD-{r['eval_steps']} on the first {r['eval_images']} test images",
                train_seconds=recipe["train_seconds"],
                eval_seconds=round(time.perf_counter() - start, 2), recipe=recipe)
    return model, meta


def _pins_path() -> Path:
    return cache_dir("downloads") / "pins.json"


def _read_pins() -> dict:
    """Hashes recorded on first download; an unreadable pins file is an error, not "empty"
    (treating it as empty would silently drop every recorded pin)."""
    path = _pins_path()
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise checkpoints.CheckpointError(
            f"{path} (sha256 of downloaded checkpoints) is not valid JSON ({err}); fix it, or "
            f"delete it together with the files in {path.parent} to download and record again"
        ) from None


def _fetch_url(url: str, dest: Path, progress: bool) -> None:
    """Download ``url`` to ``dest`` atomically (replaced in tests by a stand-in writer)."""
    with atomic_path(dest) as tmp:
        torch.hub.download_url_to_file(url, str(tmp), progress=progress)


def _fetch_hf(filename: str, dest: Path, progress: bool) -> None:
    """Download ``filename`` of :data:`HF_REPO` to ``dest`` atomically (stand-in in tests)."""
    from huggingface_hub import hf_hub_download
    got = hf_hub_download(HF_REPO, filename, revision=HF_REVISION)
    with atomic_path(dest) as tmp:
        Path(tmp).write_bytes(Path(got).read_bytes())


def _download_info(sp: SourceSpec) -> tuple[str, str]:
    """``(file name, where it comes from)`` of a downloadable source."""
    if sp.scale == "paper":
        url, name = PAPER_FILES[sp.id]
        return name, url
    nm, e = sp.id.split("/")[2:4]
    name = f"resnet50_l2_eps{e}.ckpt" if nm == "l2" else f"resnet50_linf_eps{float(e):.1f}.ckpt"
    return name, f"https://huggingface.co/{HF_REPO}/resolve/{HF_REVISION}/{name}"


def _verified_download(sp: SourceSpec, allow_download: bool, progress: bool) -> tuple[Path, str]:
    """Path of the raw file (downloaded if needed and allowed) and its trusted sha256."""
    name, origin = _download_info(sp)
    dest = cache_dir("downloads") / name
    for attempt in range(2):
        fresh = False
        if not dest.exists():
            if not allow_download:
                raise SourceUnavailable(
                    f"source {sp.id!r} needs the file {name} ({origin}) which is not in the cache "
                    f"at {dest}; pass allow_download=True (or preset 'paper') to download it, or "
                    f"put the file there yourself")
            (_fetch_url if sp.scale == "paper" else _fetch_hf)(
                *((origin,) if sp.scale == "paper" else (name,)), dest, progress)
            fresh = True
        digest = sha256_file(dest)
        pins = _read_pins()
        pinned = PINNED_SHA256.get(name) or pins.get(name)
        ok = digest == pinned if pinned else digest.startswith(_SHA_PREFIX.get(name, ""))
        if ok and pinned is None and fresh:  # first download: record the hash
            atomic_write_text(_pins_path(), json.dumps({**pins, name: digest}, indent=1))
            pinned = digest
        if ok:
            return dest, pinned
        dest.unlink()
        if attempt == 1 or not allow_download:
            raise checkpoints.CheckpointError(
                f"downloaded file {name} for {sp.id!r} is corrupt: sha256 {digest} does not match "
                f"{'the pinned ' + pinned if pinned else 'the published prefix'}; it was deleted "
                f"from {dest}" + ("" if allow_download else "; pass allow_download=True to fetch it again"))
        warnings.warn(f"{dest} was corrupt (sha256 mismatch); downloading it again")
    raise AssertionError("unreachable")


def _convert(sp: SourceSpec, allow_download: bool, progress: bool) -> tuple[models.BlockNet, dict]:
    raw, pinned = _verified_download(sp, allow_download, progress)
    # a hash recorded on first download proves integrity, not trust: only a hash shipped in
    # PINNED_SHA256 may unlock a full unpickle
    shipped = PINNED_SHA256.get(raw.name)
    model = checkpoints.import_torchvision_resnet(checkpoints.read_torch_file(raw, shipped),
                                                  sp.arch)
    _, origin = _download_info(sp)
    meta = dict(id=sp.id, arch=sp.arch, dataset=sp.dataset, num_classes=model.head.out_features,
                in_channels=3, norm=sp.norm, eps=sp.eps, seed=sp.seed, family=sp.family,
                clean_acc=PUBLISHED_CLEAN_ACC.get(sp.id), robust_acc={}, robust_acc_linf={},
                train_seconds=None, recipe={"origin": origin, "download_sha256": pinned})
    return model, meta


# ------------------------------------------------------------------------------- tables

def load_grid(ids, *, allow_download: bool = False, progress: bool = True) -> dict:
    """``{id: (model, metadata)}`` for ``ids``, training / converting what is missing."""
    out = {}
    for sid in tqdm(list(ids), desc="sources", disable=not progress):
        out[sid] = load(sid, allow_download=allow_download, progress=progress)
    return out


def table(ids, *, grid: dict | None = None, progress: bool = True) -> pd.DataFrame:
    """The source table: one row per id with id, family, label, norm, eps, seed, clean_acc,
    ``L2 <eps>`` / ``Linf <eps>`` robust accuracies (fractions) and train_seconds."""
    grid = grid if grid is not None else load_grid(ids, progress=progress)
    rows = []
    for sid in ids:
        sp, meta = spec(sid), grid[sid][1]
        row = dict(id=sid, family=sp.family, label=sp.label, norm=sp.norm, eps=sp.eps,
                   seed=sp.seed, clean_acc=meta["clean_acc"])
        for nm, key in (("L2", "robust_acc"), ("Linf", "robust_acc_linf")):
            for e, acc in sorted(meta.get(key, {}).items()):
                row[f"{nm} {e:g}"] = acc
        row["train_seconds"] = meta.get("train_seconds")
        rows.append(row)
    return pd.DataFrame(rows)


def accuracy_curves(source_table: pd.DataFrame) -> pd.DataFrame:
    """Long table of accuracy vs attack eps per family (mean, min, max over source seeds):
    columns family, label, attack (``L2``/``Linf``), attack_eps (0 = clean), mean, min, max."""
    rows = []
    for (family, label), g in source_table.groupby(["family", "label"], sort=False):
        for attack in ("L2", "Linf"):
            cols = [("clean_acc", 0.0)] + [(c, float(c.split()[1])) for c in g.columns
                                           if c.startswith(attack + " ")]
            for col, e in cols:
                v = g[col].astype(float)
                rows.append(dict(family=family, label=label, attack=attack, attack_eps=e,
                                 mean=v.mean(), min=v.min(), max=v.max(), seeds=len(v)))
    return pd.DataFrame(rows)


def findings(source_table: pd.DataFrame, alignment: dict | None = None) -> str:
    """Markdown sentences computed from the source table (and the perturbations' mean edge
    alignment per source label): does clean accuracy fall and robust accuracy rise with the
    training eps, the noise control, seed spread, the L-inf source, training time."""
    from scipy import stats
    t = source_table
    robust_col = "L2 1" if "L2 1" in t else "clean_acc"
    fam = t.groupby("family", sort=False).agg(label=("label", "first"), norm=("norm", "first"),
                                              eps=("eps", "first"), clean=("clean_acc", "mean"),
                                              robust=(robust_col, "mean"))
    l2 = fam[fam.norm.isin(["natural", "l2"])].sort_values("eps")
    lines = []
    if len(l2) >= 3:
        rc = stats.spearmanr(l2.eps, l2.clean).statistic
        rr = stats.spearmanr(l2.eps, l2.robust).statistic
        steps = ", ".join(f"{r.label}: {100 * r.clean:.1f}% clean / {100 * r.robust:.1f}% robust"
                          for r in l2.itertuples())
        lines.append(
            f"Across the L2 training ε ({steps}), the rank correlation of training ε with clean "
            f"accuracy is {rc:+.2f} and with L2 ε=1 robust accuracy {rr:+.2f}: clean accuracy "
            f"{'falls' if rc < 0 else 'does not fall'} and robust accuracy "
            f"{'rises' if rr > 0 else 'does not rise'} with ε"
            f"{' (as in the paper)' if rc < 0 and rr > 0 else ' (unlike the paper)'}.")
    if len(l2):
        nat, rob = l2.iloc[0], l2.iloc[-1]
        p_drop = 100 * (PUBLISHED_CLEAN_ACC["paper/imagenet/natural"]
                        - PUBLISHED_CLEAN_ACC["paper/imagenet/l2/3"])
        drop = 100 * (nat.clean - rob.clean)
        lines.append(f"The most robust L2 source ({rob.label}) {'loses' if drop > 0 else 'gains'} "
                     f"{abs(drop):.1f} points of clean accuracy against {nat.label} training (the "
                     f"paper's ImageNet L2 ε=3 source loses {p_drop:.1f}).")
    noise, l2_1 = fam[fam.norm == "noise"], fam[(fam.norm == "l2") & (fam.eps == 1.0)]
    if len(noise) and len(l2_1):
        nz, rb = noise.iloc[0], l2_1.iloc[0]
        lines.append(f"The Gaussian-noise control ({nz.label}) keeps {100 * nz.clean:.1f}% clean "
                     f"accuracy and reaches {100 * nz.robust:.1f}% under the L2 ε=1 attack, against "
                     f"{100 * rb.robust:.1f}% for {rb.label}: noise training "
                     f"{'does not buy' if nz.robust < rb.robust else 'buys as much'} adversarial "
                     f"robustness.")
    spread = [f"{g.label.iloc[0]} {100 * g.clean_acc.min():.1f}-{100 * g.clean_acc.max():.1f}% "
              f"({len(g)} seeds)" for _, g in t.groupby("family", sort=False) if len(g) > 1]
    if spread:
        lines.append("Sources differing only in their training seed span " + ", ".join(spread)
                     + " clean accuracy.")
    linf = fam[fam.norm == "linf"]
    if len(linf) and "Linf 0.1" in t:
        lf = linf.iloc[0]
        lines.append(f"The L∞ source ({lf.label}) has {100 * lf.clean:.1f}% clean, "
                     f"{100 * lf.robust:.1f}% L2 ε=1 robust and "
                     f"{100 * t[t.family == linf.index[0]]['Linf 0.1'].mean():.1f}% L∞ ε=0.1 robust "
                     f"accuracy.")
    if alignment:
        best = max(alignment, key=alignment.get)
        adversarial = fam.set_index("label").norm.get(best) in ("l2", "linf")
        lines.append(f"Perturbation edge alignment: "
                     f"{', '.join(f'{k} {v:.2f}' for k, v in alignment.items())}; highest for "
                     f"{best}, " + ("an adversarially trained source: robust models' perturbations "
                                    "follow shapes more." if adversarial else
                                    "not an adversarially trained source: here robust models' "
                                    "perturbations do not follow shapes more."))
    secs = t.train_seconds.dropna()
    if len(secs):
        lines.append(f"Training the {len(secs)} sources took {secs.sum() / 60:.1f} minutes in total "
                     f"on this machine (when they were first trained).")
    return " ".join(lines)
