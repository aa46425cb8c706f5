"""Our checkpoint format, and import of torchvision / MadryLab ``robustness`` checkpoints.

Our format: ``<name>.safetensors`` (the :class:`~robust_transfer.models.BlockNet` state dict)
plus ``<name>.json`` (metadata: arch, num_classes, in_channels, source data, norm, eps, recipe,
accuracies, and the ``sha256`` of the weights file). Both are written atomically, weights
first, so a present JSON means a complete save; :func:`load` re-hashes the weights and raises
:class:`CheckpointError` on any mismatch, truncation or unreadable file.

Foreign checkpoints are read by :func:`read_torch_file`: ``torch.load(weights_only=True)``
first; only if that fails *and* the caller passes the file's pinned sha256 (and it matches)
is the file unpickled with ``weights_only=False`` (MadryLab files are ``dill`` pickles that
hold the training args). :func:`import_torchvision_resnet` then keeps the ``module.model.``
keys of a ``robustness`` checkpoint (``{"model": {...}, "epoch": ...}``) -- or takes a plain
torchvision state dict as is --, renames torchvision's ``conv1/bn1/layer{i}.{j}/fc`` onto
BlockNet's ``stem.0/stem.1/blocks.{flat}/head`` and loads strictly (no missing or unexpected
keys). The input normalisation is the checkpoint's own (``module.normalizer.new_mean/new_std``)
when it has one, ImageNet's otherwise.
"""
from __future__ import annotations

import argparse

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import models
from .cache import atomic_path, atomic_write_text, sha256_file

__all__ = ["CheckpointError", "save", "load", "exists", "read_torch_file",
           "state_dict_from_robustness", "torchvision_to_blocknet", "import_torchvision_resnet"]


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt, or not trusted."""


def _paths(path) -> tuple[Path, Path]:
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def exists(path) -> bool:
    """True if both files of the checkpoint ``path`` are present (not that they are valid)."""
    w, j = _paths(path)
    return w.exists() and j.exists()


def save(path, model: models.BlockNet, metadata: dict) -> dict:
    """Write ``path.safetensors`` + ``path.json``; returns the metadata as stored.

    ``metadata`` must hold ``arch``, ``num_classes`` and ``in_channels`` (to rebuild the
    model); ``sha256`` of the weights file is added.
    """
    missing = [k for k in ("arch", "num_classes", "in_channels") if k not in metadata]
    if missing:
        raise ValueError(f"metadata is missing {missing}; needed to rebuild the model")
    wpath, jpath = _paths(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(wpath) as tmp:
        save_file(state, str(tmp))
    meta = {**metadata, "sha256": sha256_file(wpath)}
    atomic_write_text(jpath, json.dumps(meta, indent=1, sort_keys=True, default=_json_default))
    return meta


def _json_default(o):
    if isinstance(o, (tuple, set)):
        return list(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"cannot store {type(o).__name__} in checkpoint metadata")


def load(path, map_location: str = "cpu") -> tuple[models.BlockNet, dict]:
    """``(model in eval mode, metadata)`` from :func:`save`'s files, after verifying sha256.

    Raises :class:`CheckpointError` (naming the file) if a file is missing, the JSON is
    unreadable, the weights' hash differs from the recorded one, or the weights do not load.
    """
    wpath, jpath = _paths(path)
    for p in (wpath, jpath):
        if not p.exists():
            raise CheckpointError(f"checkpoint file {p} does not exist")
    try:
        meta = json.loads(jpath.read_text())
        arch, k, c = meta["arch"], meta["num_classes"], meta["in_channels"]
    except (ValueError, KeyError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint metadata {jpath} is corrupt ({e!r}); delete it and "
                              f"re-make the checkpoint") from None
    digest = sha256_file(wpath)
    if digest != meta.get("sha256"):
        raise CheckpointError(f"checkpoint weights {wpath} are corrupt or truncated: sha256 "
                              f"{digest[:12]}... != recorded {str(meta.get('sha256'))[:12]}...")
    try:
        state = load_file(str(wpath), device=map_location)
        model = models.build(arch, k, c)
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as e:
        raise CheckpointError(f"checkpoint weights {wpath} do not load into {arch}: {e}") from None
    return model.to(map_location).eval(), meta


#: plain containers that robustness-library checkpoints hold besides tensors; allowed in the
#: safe (``weights_only=True``) load because rebuilding them runs no code from the file
SAFE_GLOBALS = [argparse.Namespace]


def read_torch_file(path, pinned_sha256: str | None = None):
    """The object in a ``torch.save`` file: ``weights_only=True`` (plus :data:`SAFE_GLOBALS`),
    or a full unpickle if the file's sha256 is pinned in the code.

    The full unpickle (``weights_only=False``, with ``dill`` when installed) is used only when
    the safe load fails and ``sha256(path) == pinned_sha256``; otherwise
    :class:`CheckpointError` explains why the file is refused. ``pinned_sha256`` must come from
    a hash shipped with the code, never from one recorded on first download.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as safe_error:  # noqa: BLE001 -- any failure falls through to the pin check
        reason = f"{type(safe_error).__name__}: {str(safe_error).splitlines()[0][:200]}"
    digest = sha256_file(path)
    if pinned_sha256 is None or digest != pinned_sha256:
        raise CheckpointError(
            f"{path} cannot be read with torch.load(weights_only=True) ({reason}); a full "
            f"unpickle runs code from the file and is only done for a pinned sha256, but this "
            f"file's sha256 {digest} " + ("is not pinned" if pinned_sha256 is None else
                                          f"differs from the pinned {pinned_sha256}"))
    try:
        import dill as pickle_module
    except ImportError:  # pragma: no cover - dill is a dependency
        import pickle as pickle_module
    try:
        return torch.load(path, map_location="cpu", weights_only=False,
                          pickle_module=pickle_module)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path} (pinned sha256 ok) does not unpickle: {e!r}") from None


def state_dict_from_robustness(obj) -> tuple[dict, dict]:
    """``(torchvision-named state dict, normaliser {"mean","std"} or {})`` from a loaded file.

    Accepts a ``robustness`` checkpoint (``{"model"|"state_dict": {"module.model.*",
    "module.attacker.*", "module.normalizer.*"}, ...}``) or a plain torchvision state dict.
    """
    sd = obj
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], dict):
                sd = obj[key]
                break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError("checkpoint holds no state dict of tensors (expected a robustness "
                              "{'model': {...}} checkpoint or a torchvision state dict)")
    norm = {}
    if any(k.startswith("module.model.") for k in sd):
        for src, dst in (("module.normalizer.new_mean", "mean"), ("module.normalizer.new_std", "std")):
            if src in sd:
                norm[dst] = sd[src].flatten().tolist()
        sd = {k[len("module.model."):]: v for k, v in sd.items() if k.startswith("module.model.")}
    elif any(k.startswith("model.") for k in sd):  # robustness without DataParallel
        sd = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
    return sd, norm


_LAYER = re.compile(r"^layer(\d+)\.(\d+)\.(.+)$")


def torchvision_to_blocknet(sd: dict) -> dict:
    """Rename torchvision ResNet keys onto BlockNet keys (``layer{i}.{j}`` -> ``blocks.{flat}``)."""
    per_layer: dict[int, int] = {}
    for k in sd:
        m = _LAYER.match(k)
        if m:
            i, j = int(m.group(1)), int(m.group(2))
            per_layer[i] = max(per_layer.get(i, 0), j + 1)
    offset, total = {}, 0
    for i in sorted(per_layer):
        offset[i], total = total, total + per_layer[i]
    out = {}
    for k, v in sd.items():
        m = _LAYER.match(k)
        if m:
            new = f"blocks.{offset[int(m.group(1))] + int(m.group(2))}.{m.group(3)}"
        elif k.startswith("conv1."):
            new = "stem.0." + k[len("conv1."):]
        elif k.startswith("bn1."):
            new = "stem.1." + k[len("bn1."):]
        elif k.startswith("fc."):
            new = "head." + k[len("fc."):]
        else:
            new = k  # left as is: a strict load reports it as unexpected
        out[new] = v
    return out


def import_torchvision_resnet(obj, arch: str = "resnet50") -> models.BlockNet:
    """A BlockNet ``arch`` loaded strictly from a robustness checkpoint or torchvision state dict.

    ``obj`` is what :func:`read_torch_file` returned. Raises :class:`CheckpointError` listing
    missing / unexpected keys.
    """
    sd, norm = state_dict_from_robustness(obj)
    sd = torchvision_to_blocknet(sd)
    num_classes = sd["head.weight"].shape[0] if "head.weight" in sd else 1000
    model = models.build(arch, num_classes, 3, **norm)
    expected = model.state_dict()
    sd["normalize.mean"] = expected["normalize.mean"]
    sd["normalize.std"] = expected["normalize.std"]
    for k, v in expected.items():  # old checkpoints predate BatchNorm's counter buffer
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = torch.zeros_like(v)
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint does not match {arch}: missing keys {missing[:8]}"
                              f"{'...' if len(missing) > 8 else ''}, unexpected keys "
                              f"{unexpected[:8]}{'...' if len(unexpected) > 8 else ''}")
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint does not load into {arch}: {e}") from None
    return model.eval()
