"""Transfer a source model to a target task: new head, last k blocks fine-tuned, rest frozen.

One run = (source, target, n, unfrozen_blocks, seed, recipe). The target's training split is
cut into a validation set and a pool (``data.train_subset``; never the test set); the ``n``
training images are a class-covering subset of the pool (``data.class_covering_subset``, nested
in n for a seed). Every run also records the test accuracy at :func:`curve_epochs` (report
only: the paper's Fig. 3, accuracy vs fine-tuning epochs; on ``CURVE_TEST`` test images evenly
spaced through the test set, :func:`curve_images`), never used to pick anything.
:func:`epochs_for` gives the epoch count: ``cfg.epochs``, or ``cfg.long_epochs`` for
n > ``cfg.long_epochs_n`` (the paper: 100, and 150 above 1,600 images); the authors' recipe
raises it where that would be fewer than ``cfg.authors_min_steps`` optimiser steps.

Two recipes share this engine (``cfg.recipe``, part of every result key), each a small object
behind one interface (:class:`Recipe`: head init, optimiser and schedule, BN mode, which epoch is
reported), as :mod:`influence` has its solvers; :data:`RECIPES` maps names to them:

**"authors"** (:class:`Authors`) -- the authors' code (Utrera et al. 2021, Sec. 3 and Appendix;
their repository's fine-tuning script), item by item:

- a new fc layer with weight ~ N(0, 1) and bias 0 on the raw (unstandardised) pooled features
  (``AUTHORS_HEAD_STD``);
- SGD, lr 0.1, momentum 0.9, weight decay 5e-4 on every trained parameter (the unfrozen blocks
  and the fc; ``AUTHORS_LR``, ``AUTHORS_MOMENTUM``, ``AUTHORS_WEIGHT_DECAY``), batches of
  ``cfg.batch_size`` (128) in a seeded order, plain cross-entropy, no clipping;
- the learning rate multiplied by 0.1 every ``epochs // 3`` epochs (``AUTHORS_DECAY``);
- at least ``cfg.authors_min_steps`` optimiser steps (:meth:`Authors.epochs`): the paper's 100
  epochs at n = 100 in batches of 128 are 100 steps, while the mini preset's 20 epochs at
  n <= 128 are 20 (there the recipe stopped far from converged). Epochs = max(``cfg.epochs`` or
  ``cfg.long_epochs``, ceil(min steps / steps per epoch)); the step decay follows the epochs;
- the whole model in train mode during training steps: every BatchNorm layer, frozen ones
  included, normalises with batch statistics and updates its running statistics;
- the paper's augmentation on every training batch (random crop with padding 4, horizontal
  flip, colour jitter 0.25, rotation up to 2 degrees: :func:`_augment`) applied *at the
  resolution the model sees*: a target is first converted to the source's input format (e.g.
  CIFAR-10 32 px -> 224 px for the ImageNet ResNet-50s), then cropped with padding 4 there;
- the last epoch reported (no selection).

**"ours"** (:class:`Ours`) -- stable at n = 10, where plain SGD on a fresh N(0, 1) head is not;
the epoch is chosen on validation and the test accuracy reported at that epoch:

1. features entering the head are *standardised* with the mean / std of the n training images
   (a fixed affine layer in front of the linear head);
2. the head starts from a multinomial logistic-regression fit (L2, C=1) on those standardised
   features, so epoch 0 is already a sensible linear probe;
3. Adam (``cfg.head_lr`` for the head, ``cfg.lr`` for the unfrozen blocks) with a linear
   warm-up over the first ``WARMUP`` of the steps (Adam's first steps are sign-like and would
   throw the head off its logistic-regression optimum), the same L2 penalty on the head as the
   fit, gradient-norm clipping at ``CLIP_NORM``, ``cfg.epochs`` epochs, minibatches of
   ``cfg.batch_size`` in a seeded order;
4. BatchNorm layers use their source running statistics (``cfg.frozen_bn="eval"``, also in the
   unfrozen blocks: batch statistics of 10 images are noise, and a head standardised on
   eval-mode features would see shifted inputs); ``"train"`` puts every BN layer in train mode
   during training steps as the authors' code does (batch statistics, running stats updated).

Fast path: with frozen BN in eval mode and no augmentation the frozen prefix is a fixed function
of the image, so ``model.prefix(x, k)`` is computed once per (source, target, split, k), cached
as float32 safetensors under ``cache_dir("features", ...)``, and only ``model.suffix`` is trained.
The plain path runs the full forward through the frozen layers at every step (as the authors'
code does); both paths see the same batches in the same order and give the same accuracies.
"""
from __future__ import annotations

import abc
import collections
import copy
import functools
import hashlib
import math
import os
import time
import weakref

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import data, zoo
from .cache import atomic_path, cache_dir

__all__ = ["run", "finetune", "prefix_features", "target_arrays", "weights_fingerprint", "use_fast_path",
           "recipe_fields", "epochs_for", "curve_epochs", "Recipe", "Ours", "Authors", "RECIPES",
           "RECIPE_VERSION", "CURVE_VERSION", "curve_images", "CLIP_NORM",
           "AUTHORS_LR", "AUTHORS_MOMENTUM", "AUTHORS_WEIGHT_DECAY", "AUTHORS_DECAY",
           "AUTHORS_HEAD_STD", "feature_cache_bytes", "FEATURE_CACHE_MB"]

RECIPE_VERSION = 2   # bump when the fine-tuning algorithm changes (part of every result key)
CURVE_VERSION = 2    # bump when the recorded test curve changes (part of every result key)
CLIP_NORM = 1.0      # "ours": max global gradient norm per step
LOGREG_C = 1.0       # "ours": inverse L2 strength of the logistic-regression head
WARMUP = 0.1         # "ours": fraction of the steps with a linear learning-rate warm-up
AUTHORS_LR = 0.1             # "authors": SGD learning rate (every trained parameter)
AUTHORS_MOMENTUM = 0.9
AUTHORS_WEIGHT_DECAY = 5e-4
AUTHORS_DECAY = 0.1          # lr factor every epochs // 3 epochs
AUTHORS_HEAD_STD = 1.0       # new fc weight ~ N(0, AUTHORS_HEAD_STD^2), bias 0
CURVE_POINTS = 5             # test accuracy recorded at ~this many epochs (+ epoch 0)
CURVE_TEST = 200             # ... on CURVE_TEST test images (report only, curve_images)
EVAL_BATCH = 256


def _recipe(cfg, recipe: str | None) -> "Recipe":
    """The :class:`Recipe` named ``recipe`` (default ``cfg.recipe``); ValueError if unknown."""
    recipe = cfg.recipe if recipe is None else recipe
    if recipe not in RECIPES:
        raise ValueError(f"recipe={recipe!r} is not allowed; allowed: {list(RECIPES)}")
    return RECIPES[recipe]


def use_fast_path(cfg, recipe: str | None = None) -> bool:
    """True when the cached-prefix path is exact: the recipe neither augments nor trains BN
    ("ours" with no augmentation and frozen BN in eval mode; "authors" never)."""
    r = _recipe(cfg, recipe)
    return not r.augment(cfg) and not r.bn_train(cfg)


def recipe_fields(cfg, recipe: str | None = None) -> dict:
    """The configuration fields that change the result of a run of ``recipe`` (default
    ``cfg.recipe``), plus ``recipe``, ``recipe_version`` and ``curve_version``: what a result
    key must contain."""
    r = _recipe(cfg, recipe)
    names = ["epochs", "long_epochs", "long_epochs_n", "batch_size", "val_size", *r.fields]
    return {"recipe": r.name, **{f: getattr(cfg, f) for f in names},
            "recipe_version": RECIPE_VERSION, "curve_version": CURVE_VERSION}


def epochs_for(cfg, n: int, recipe: str | None = None) -> int:
    """Fine-tuning epochs of a run on ``n`` images in ``recipe`` (default ``cfg.recipe``):
    ``cfg.long_epochs`` when it is set and n > ``cfg.long_epochs_n``, else ``cfg.epochs``; the
    authors' recipe raises it to ``cfg.authors_min_steps`` optimiser steps (:meth:`Recipe.epochs`)."""
    return _recipe(cfg, recipe).epochs(cfg, n)


def _schedule_epochs(cfg, n: int) -> int:
    """``cfg.long_epochs`` when it is set and n > ``cfg.long_epochs_n``, else ``cfg.epochs``."""
    return cfg.long_epochs if cfg.long_epochs and n > cfg.long_epochs_n else cfg.epochs


def curve_images(n_test: int) -> torch.Tensor:
    """The indices of the test images a run's test curve is measured on: ``CURVE_TEST`` of the
    ``n_test`` evenly spaced (every ``n_test // CURVE_TEST``-th; all when fewer). Test sets
    stored by class (mnist5k, textures) would give their first images two classes only."""
    return torch.arange(n_test)[::max(1, n_test // CURVE_TEST)][:CURVE_TEST]


def curve_epochs(epochs: int) -> list[int]:
    """The epochs (0 = before any step) at which a run records its test accuracy: 0, the last
    epoch and evenly spaced ones between, at most ``CURVE_POINTS + 1``."""
    return sorted({round(i * epochs / CURVE_POINTS) for i in range(CURVE_POINTS + 1)})


# ----------------------------------------------------------------------------- data plumbing
@functools.lru_cache(maxsize=16)
def target_arrays(target: str, allow_download: bool):
    """(train images, train labels, test images, test labels, num_classes, content hash).

    Images stay in the target's own format: source models convert each batch to theirs
    (``BlockNet.input_format``), so e.g. CIFAR-10 is never held at 224 px. The hash reads the
    arrays in place (a memory-mapped image-file dataset is streamed from disk, not copied)."""
    x_tr, y_tr, names = data.load(target, "train", allow_download=allow_download)
    x_te, y_te, _ = data.load(target, "test", allow_download=allow_download)
    h = hashlib.sha256()
    for t in (x_tr, y_tr, x_te, y_te):
        h.update(memoryview(np.ascontiguousarray(t.numpy())).cast("B"))
    return x_tr, y_tr.long(), x_te, y_te.long(), len(names), h.hexdigest()[:12]


_FINGERPRINTS: "weakref.WeakKeyDictionary[nn.Module, str]" = weakref.WeakKeyDictionary()


def weights_fingerprint(model: nn.Module) -> str:
    """12-hex sha256 of the model's weights and buffers (memoised per model object)."""
    if model not in _FINGERPRINTS:
        h = hashlib.sha256()
        for name, t in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        _FINGERPRINTS[model] = h.hexdigest()[:12]
    return _FINGERPRINTS[model]


@torch.no_grad()
def _prefix(model, images: torch.Tensor, k: int) -> torch.Tensor:
    """``model.prefix`` over ``images`` in eval mode, in chunks, float32 on the CPU, computed
    channels-last whatever ``model``'s layout (the layout changes the last bits of a
    convolution, and a cached entry must not depend on which caller wrote it first)."""
    was = model.training
    if not _channels_last(model):
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    model.eval()
    dev = next(model.parameters()).device
    out = [model.prefix(images[i:i + EVAL_BATCH].to(dev), k).float().cpu()
           for i in range(0, len(images), EVAL_BATCH)]
    model.train(was)
    return torch.cat(out)


def _channels_last(model) -> bool:
    """Every 4-D weight of ``model`` is stored channels-last."""
    return all(p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters() if p.dim() == 4)


FEATURE_CACHE_ENV = "RT_FEATURE_CACHE_MB"
FEATURE_CACHE_MB = 1024   # default bound of the features held in memory per process


def feature_cache_bytes() -> int:
    """How many bytes of cached features a process keeps in memory: ``$RT_FEATURE_CACHE_MB``
    MiB (0: none; the notebooks' set-up lowers it on Binder), else :data:`FEATURE_CACHE_MB`."""
    text = os.environ.get(FEATURE_CACHE_ENV, "").strip()
    if not text:
        return FEATURE_CACHE_MB << 20
    if not text.isdigit():
        raise ValueError(f"{FEATURE_CACHE_ENV}={text!r} is not allowed; give a whole number of "
                         f"MiB >= 0 (default {FEATURE_CACHE_MB})")
    return int(text) << 20


class _FeatureMemory:
    """The last-read feature files, newest last, evicted oldest first beyond
    :func:`feature_cache_bytes` (a file larger than the bound is read but not kept). A file
    replaced under the same name (as tests do) is read again: entries are keyed on path,
    mtime and size."""

    def __init__(self):
        self.entries: "collections.OrderedDict[tuple, torch.Tensor]" = collections.OrderedDict()

    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.entries.values())

    def clear(self) -> None:
        self.entries.clear()

    def read(self, path: str) -> torch.Tensor:
        from safetensors.torch import load_file
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size)
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        feats = load_file(path)["prefix"]
        bound = feature_cache_bytes()
        if feats.nbytes <= bound:
            self.entries[key] = feats
            while self.nbytes() > bound:
                self.entries.popitem(last=False)
        return feats


_FEATURES = _FeatureMemory()


def prefix_features(model, images: torch.Tensor, k: int, key: tuple[str, ...], *,
                    fingerprint: str | None = None) -> torch.Tensor:
    """Frozen-prefix activations ``model.prefix(images, k)`` (float32), cached on disk.

    ``key`` names the images (e.g. (source id, target, data hash, split)); the model's weight
    fingerprint (computed if not given) and ``k`` are added, so a different model never reuses
    stale features.
    """
    from safetensors.torch import save_file
    *dirs, last = [str(p).replace("/", "_").replace(":", "_") for p in key]
    fingerprint = fingerprint or weights_fingerprint(model)
    path = cache_dir("features", *dirs) / f"{last}-k{k}-{fingerprint}.safetensors"
    if not path.exists():
        feats = _prefix(model, images, k).contiguous()
        with atomic_path(path) as tmp:
            save_file({"prefix": feats}, str(tmp))
    return _FEATURES.read(str(path))


# ----------------------------------------------------------------------------- the recipes' parts
class _StandardisedHead(nn.Module):
    """``Linear((h - mean) / std)``: the head trained on standardised features."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def forward(self, h):
        return self.linear((h - self.mean) / self.std)


def _logreg_head(feats: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """Standardisation stats and a multinomial logistic-regression fit on ``feats``.

    The fit minimises ``mean_i CE_i + ||W||^2 / (2 C n)`` (scikit-learn's objective divided by
    n; C = ``LOGREG_C``, bias unpenalised) by full-batch L-BFGS in float64. Returns (mean, std,
    weight (C, D), bias (C,)) as float32.
    """
    f = feats.double()
    mean = f.mean(0)
    var = f.var(0, unbiased=False)
    std = (var + 1e-2 * var.mean() + 1e-8).sqrt()  # floor: dims constant on n images stay tame
    z = (f - mean) / std
    y = labels.long()
    weight = torch.zeros(num_classes, f.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1, max_iter=50, tolerance_grad=1e-5,
                            tolerance_change=1e-9, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (F.cross_entropy(z @ weight.T + bias, y)
                + weight.pow(2).sum() / (2 * LOGREG_C * len(y)))
        loss.backward()
        return loss

    opt.step(closure)
    return mean.float(), std.float(), weight.detach().float(), bias.detach().float()


PAD = 4              # crop padding (pixels, zero fill)
JITTER = 0.25        # brightness / contrast / saturation factors in [1 - JITTER, 1 + JITTER]
MAX_DEGREES = 2.0    # rotation angle in [-MAX_DEGREES, MAX_DEGREES]


def _augment_params(n: int, channels: int) -> dict:
    """Per-image random parameters of :func:`_augment`, drawn from torch's global RNG (on the
    CPU, as torchvision's transforms do): crop offsets ``dy, dx`` in 0..2*PAD (pixels into the
    padded image), ``flip`` (bool), jitter factors ``brightness, contrast, saturation`` in
    [0.75, 1.25] (saturation 1 unless ``channels == 3``) and ``angle`` in [-2, 2] degrees."""
    def factor():
        return 1 + JITTER * (2 * torch.rand(n) - 1)
    return dict(dy=torch.randint(0, 2 * PAD + 1, (n,)), dx=torch.randint(0, 2 * PAD + 1, (n,)),
                flip=torch.rand(n) < 0.5, brightness=factor(), contrast=factor(),
                saturation=factor() if channels == 3 else torch.ones(n),
                angle=MAX_DEGREES * (2 * torch.rand(n) - 1))


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Luma (ITU-R 601, as torchvision) of RGB images, shape (N, 1, H, W); grey images as they are."""
    if x.shape[1] != 3:
        return x
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _augment_with(x: torch.Tensor, *, dy, dx, flip, brightness, contrast, saturation,
                  angle) -> torch.Tensor:
    """Every image of the batch ``x`` (N, C, H, W, values in [0, 1]) augmented with its own
    parameters (1-D tensors of length N, see :func:`_augment_params`), on ``x``'s device.

    Geometry in one nearest-neighbour resampling with zero fill (exact pixel copies): the crop
    at offset ``dy, dx`` of ``x`` zero-padded by PAD (a translation by ``dx - PAD, dy - PAD``
    pixels), the horizontal ``flip``, and the rotation by ``angle`` degrees (counter-clockwise)
    about the centre; each equals torchvision's ``crop`` of the padded image, ``hflip`` and
    ``rotate`` (nearest, fill 0). Then colour jitter as torchvision's ``adjust_*`` functions,
    clamped to [0, 1] after each: brightness, contrast (blend with the image's mean luma),
    saturation (blend with the luma; RGB only). The per-image torchvision chain jitters before
    it rotates; here the rotation's zero-filled corners (a few pixels at 2 degrees) are
    jittered too. Neutral parameters (dy = dx = PAD, no flip, factors 1, angle 0) return ``x``.
    """
    n, c, h, w = x.shape
    dtype = x.dtype if x.is_floating_point() else torch.float32

    def per_image(v):
        return torch.as_tensor(v).to(x.device, dtype)
    rad = per_image(angle) * (math.pi / 180)
    cos, sin = torch.cos(rad), torch.sin(rad)
    mirror = 1 - 2 * per_image(flip)
    # output (u, v) reads the input at  flip(rotate(u, v)) + shift,  in affine_grid's [-1, 1]
    # coordinates (align_corners=False), the aspect ratio entering for non-square images
    theta = torch.stack([torch.stack([mirror * cos, -mirror * sin * h / w,
                                      2 * (per_image(dx) - PAD) / w], 1),
                         torch.stack([sin * w / h, cos, 2 * (per_image(dy) - PAD) / h], 1)], 1)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    out = F.grid_sample(x.to(dtype), grid, mode="nearest", padding_mode="zeros",
                        align_corners=False)
    b, k, s = (per_image(f).view(n, 1, 1, 1) for f in (brightness, contrast, saturation))
    out.mul_(b).clamp_(0, 1)
    mean = _grey(out).mean((1, 2, 3), keepdim=True)    # (before ``out`` changes in place)
    out.mul_(k).add_((1 - k) * mean).clamp_(0, 1)
    if c == 3:
        grey = _grey(out).mul_(1 - s)
        out.mul_(s).add_(grey).clamp_(0, 1)
    return out.to(x.dtype)


def _augment(x: torch.Tensor) -> torch.Tensor:
    """The paper's training augmentation, batched on ``x``'s device: per image a random crop
    (padding 4), horizontal flip (p = 0.5), colour jitter 0.25 (saturation for RGB only) and a
    rotation of up to 2 degrees; parameters from torch's global RNG (:func:`_augment_params`).
    Same shape, dtype and device as ``x``; values in [0, 1]."""
    return _augment_with(x, **_augment_params(len(x), x.shape[1]))


class _WarmAdam:
    """"ours" steps: Adam (the head at ``cfg.head_lr``, the blocks at ``cfg.lr``) with a linear
    warm-up over the first ``WARMUP`` of the steps, the logistic-regression fit's L2 penalty on
    the head's weight and gradient-norm clipping at ``CLIP_NORM``."""

    def __init__(self, head, blocks, cfg, epochs: int, n: int):
        self.head = head
        head_params, block_params = list(head.parameters()), list(blocks.parameters())
        self.params = head_params + block_params
        groups = [{"params": head_params, "lr": cfg.head_lr}]
        if block_params:
            groups.append({"params": block_params, "lr": cfg.lr})
        self.opt = torch.optim.Adam(groups)
        self.base_lrs = [g["lr"] for g in groups]
        self.warmup = max(1, round(WARMUP * epochs * -(-n // cfg.batch_size)))
        self.penalty = 1.0 / (2 * LOGREG_C * n)
        self.steps = 0

    def step(self, loss):
        """One update from the minibatch cross-entropy ``loss``."""
        self.opt.zero_grad(set_to_none=True)
        (loss + self.penalty * self.head.linear.weight.pow(2).sum()).backward()
        torch.nn.utils.clip_grad_norm_(self.params, CLIP_NORM)
        if self.steps < self.warmup:  # linear warm-up (a scheduler object costs more than this)
            for g, lr in zip(self.opt.param_groups, self.base_lrs):
                g["lr"] = lr * (self.steps + 1) / self.warmup
        self.opt.step()
        self.steps += 1

    def end_epoch(self):
        """Nothing: the warm-up counts steps."""


class _StepSGD:
    """"authors" steps: SGD (``AUTHORS_LR``, ``AUTHORS_MOMENTUM``, ``AUTHORS_WEIGHT_DECAY``) on
    every trained parameter, the learning rate times ``AUTHORS_DECAY`` every ``epochs // 3``
    epochs."""

    def __init__(self, head, blocks, cfg, epochs: int, n: int):
        self.opt = torch.optim.SGD([*head.parameters(), *blocks.parameters()], lr=AUTHORS_LR,
                                   momentum=AUTHORS_MOMENTUM, weight_decay=AUTHORS_WEIGHT_DECAY)
        self.decay = torch.optim.lr_scheduler.StepLR(self.opt, step_size=max(1, epochs // 3),
                                                     gamma=AUTHORS_DECAY)

    def step(self, loss):
        """One update from the minibatch cross-entropy ``loss``."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def end_epoch(self):
        """The step decay."""
        self.decay.step()


# ----------------------------------------------------------------------------- the recipes
class Recipe(abc.ABC):
    """What :func:`finetune` asks of a recipe (its epochs, head, optimiser, BN mode and
    augmentation). ``name`` (its ``cfg.recipe`` value), ``fields``
    (the configuration fields, beyond the shared ones, that change its result) and
    ``selects_epoch`` (True: validation accuracy after every epoch and the best epoch's model
    reported; False: validation at :func:`curve_epochs` only and the last epoch reported)."""

    name: str
    fields: tuple[str, ...]
    selects_epoch: bool

    def epochs(self, cfg, n: int) -> int:
        """Fine-tuning epochs on ``n`` images: ``cfg.epochs``, or ``cfg.long_epochs`` above
        ``cfg.long_epochs_n`` images (when set)."""
        return _schedule_epochs(cfg, n)

    @abc.abstractmethod
    def augment(self, cfg) -> bool:
        """Whether every training batch is augmented (:func:`_augment`)."""

    @abc.abstractmethod
    def bn_train(self, cfg) -> bool:
        """Whether every BatchNorm layer is in train mode during training steps."""

    @abc.abstractmethod
    def head(self, feats: torch.Tensor, labels: torch.Tensor, num_classes: int) -> nn.Module:
        """The new head for the pooled features ``feats`` (N, D) of the n training images."""

    @abc.abstractmethod
    def optimiser(self, head, blocks, cfg, epochs: int, n: int):
        """The steps over ``head`` and ``blocks``' parameters: an object with ``step(loss)``
        (one update) and ``end_epoch()``, for ``epochs`` epochs on ``n`` images."""


class Ours(Recipe):
    """Standardised head from a logistic-regression fit, Adam with warm-up, clipping and the
    fit's L2 penalty, BN per ``cfg.frozen_bn``, augmentation per ``cfg.augment``, the epoch
    chosen on validation."""

    name, fields, selects_epoch = "ours", ("lr", "head_lr", "frozen_bn", "augment"), True

    def augment(self, cfg) -> bool:
        return cfg.augment

    def bn_train(self, cfg) -> bool:
        return cfg.frozen_bn == "train"

    def head(self, feats, labels, num_classes):
        """A :class:`_StandardisedHead` started from the logistic-regression fit on ``feats``."""
        return _StandardisedHead(*_logreg_head(feats.cpu(), labels, num_classes))

    def optimiser(self, head, blocks, cfg, epochs, n):
        return _WarmAdam(head, blocks, cfg, epochs, n)


class Authors(Recipe):
    """The authors' code: N(0, 1) head on raw features, SGD with step decay, BN in train mode,
    augmentation always, at least ``cfg.authors_min_steps`` steps, the last epoch reported."""

    name, fields, selects_epoch = "authors", ("authors_min_steps",), False

    def epochs(self, cfg, n):
        """The schedule's epochs, raised to at least ``cfg.authors_min_steps`` optimiser steps
        of ``ceil(n / cfg.batch_size)`` per epoch (0 = the schedule's epochs as they are)."""
        per_epoch = math.ceil(n / cfg.batch_size)
        return max(_schedule_epochs(cfg, n), math.ceil(cfg.authors_min_steps / per_epoch))

    def augment(self, cfg) -> bool:
        return True

    def bn_train(self, cfg) -> bool:
        return True

    def head(self, feats, labels, num_classes):
        """An ``nn.Linear`` with weight ~ N(0, AUTHORS_HEAD_STD^2) and bias 0, drawn from torch's
        global RNG (seeded by :func:`finetune`)."""
        head = nn.Linear(feats.shape[1], num_classes)
        with torch.no_grad():
            head.weight.normal_(0.0, AUTHORS_HEAD_STD)
            head.bias.zero_()
        return head

    def optimiser(self, head, blocks, cfg, epochs, n):
        return _StepSGD(head, blocks, cfg, epochs, n)


#: the recipes by ``cfg.recipe`` name
RECIPES = {r.name: r for r in (Ours(), Authors())}


def finetune(model, x_train, y_train, train_idx, val_idx, x_test, y_test, unfrozen_blocks: int,
             cfg, seed: int, *, num_classes: int, fast: bool | None = None,
             feature_key: tuple[str, ...] | None = None, return_model: bool = False,
             recipe: str | None = None) -> dict:
    """Fine-tune a copy of ``model`` on ``x_train[train_idx]`` with ``recipe`` (default
    ``cfg.recipe``; see the module docstring) for :func:`epochs_for` epochs of that recipe.

    ``fast`` (default :func:`use_fast_path`) trains only ``model.suffix`` on frozen-prefix
    activations (cached under ``feature_key`` if given, else computed in memory); otherwise every
    step runs the full forward. Returns accuracies in percent: ``test_acc`` (at ``best_epoch``:
    chosen on validation for "ours", the last epoch for "authors"), ``val_acc``, ``val_curve``
    (validation accuracy at epochs 0..E; epoch 0 = the new head before any step),
    ``curve_epochs`` and ``test_curve`` (accuracy on the :func:`curve_images` at
    those epochs, report only),
    ``train_loss_curve``, ``epochs``, ``recipe`` and ``fast_path`` ("authors" records
    ``val_curve`` at ``curve_epochs`` only, having no selection); with ``return_model`` also
    ``model``: the fine-tuned copy (eval mode, on ``cfg``'s device) at the reported epoch.
    """
    r = _recipe(cfg, recipe)
    k = unfrozen_blocks
    fast = use_fast_path(cfg, r.name) if fast is None else fast
    if fast and not use_fast_path(cfg, r.name):
        raise ValueError("fast=True needs recipe='ours', augment=False and frozen_bn='eval' (the "
                         "prefix must be a fixed function of the image)")
    augment, bn_train = r.augment(cfg), r.bn_train(cfg)
    epochs = r.epochs(cfg, len(train_idx))
    torch.manual_seed(seed)
    dev = cfg.torch_device()
    fingerprint = weights_fingerprint(model) if fast and feature_key is not None else None
    # channels-last: 1.15-1.35x faster convolutions on a CPU (zoo trains the sources so too)
    model = copy.deepcopy(model).to(dev, memory_format=torch.channels_last)
    model.eval()
    train_idx = torch.as_tensor(np.asarray(train_idx), dtype=torch.long)
    val_idx = torch.as_tensor(np.asarray(val_idx), dtype=torch.long)
    y_train, y_test = y_train.long(), y_test.long()
    test_idx = torch.arange(len(y_test))
    curve_idx = curve_images(len(test_idx))

    if fast:
        if feature_key is None:
            h_tr, h_te = _prefix(model, x_train, k), _prefix(model, x_test, k)
        else:
            h_tr = prefix_features(model, x_train, k, (*feature_key, "train"),
                                   fingerprint=fingerprint)
            h_te = prefix_features(model, x_test, k, (*feature_key, "test"),
                                   fingerprint=fingerprint)

        if h_tr.dim() == 4:   # stage activations: the channels-last layout of the blocks
            h_tr, h_te = (h.contiguous(memory_format=torch.channels_last) for h in (h_tr, h_te))

        def frozen(split, idx, train_step=False):
            return (h_tr if split == "train" else h_te)[idx].to(dev)
    else:
        def frozen(split, idx, train_step=False):
            x = (x_train if split == "train" else x_test)[idx].to(dev)
            if train_step and augment:  # at the resolution the model sees
                if model.input_format is not None:
                    x = data.to_source_format(x, *model.input_format)
                x = _augment(x)
            with torch.no_grad():
                return model.prefix(x, k)

    trainable = model.trainable_modules(k)
    blocks = nn.ModuleList(trainable[:-1])

    def set_mode(training: bool):  # BN: running stats everywhere, or train mode
        model.train(training and bn_train)

    def logits_of(split, idx, train_step=False):
        return model.suffix(frozen(split, idx, train_step), k)

    @torch.no_grad()
    def accuracy(split, idx):
        set_mode(False)
        y = y_train if split == "train" else y_test
        correct = sum(int((logits_of(split, idx[i:i + EVAL_BATCH]).argmax(1).cpu()
                           == y[idx[i:i + EVAL_BATCH]]).sum())
                      for i in range(0, len(idx), EVAL_BATCH))
        return 100.0 * correct / max(len(idx), 1)

    # the new head, on the features the source's blocks give (eval-mode BN)
    with torch.no_grad():
        h0 = frozen("train", train_idx)
        for block in blocks:
            h0 = block(h0)
        f0 = model.pool(h0) if k > 0 else h0
    model.head = r.head(f0, y_train[train_idx], num_classes).to(dev)

    for p in model.parameters():
        p.requires_grad_(False)
    for p in [*model.head.parameters(), *blocks.parameters()]:
        p.requires_grad_(True)
    opt = r.optimiser(model.head, blocks, cfg, epochs, len(train_idx))
    changing = nn.ModuleList([*blocks, model.head]) if not bn_train else model

    def snapshot():
        return {n_: t.detach().clone() for n_, t in changing.state_dict().items()}

    gen = torch.Generator().manual_seed(seed)
    at = curve_epochs(epochs)
    val_at = range(epochs + 1) if r.selects_epoch else at
    val_curve, loss_curve = [accuracy("train", val_idx)], []
    test_curve = [accuracy("test", curve_idx)]
    best_epoch, best_state = 0, snapshot() if r.selects_epoch else None
    for epoch in range(1, epochs + 1):
        set_mode(True)
        order = train_idx[torch.randperm(len(train_idx), generator=gen)]
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            loss = F.cross_entropy(logits_of("train", idx, train_step=True), y_train[idx].to(dev))
            opt.step(loss)
            total += float(loss.detach()) * len(idx)
        opt.end_epoch()
        loss_curve.append(total / len(order))
        if epoch in at:
            test_curve.append(accuracy("test", curve_idx))
        if epoch in val_at:
            val_curve.append(accuracy("train", val_idx))
        if not r.selects_epoch:
            best_epoch = epoch
        elif val_curve[-1] > val_curve[best_epoch]:
            best_epoch, best_state = epoch, snapshot()
    if best_state is not None:
        changing.load_state_dict(best_state)
    out = {
        "test_acc": accuracy("test", test_idx),
        "val_acc": val_curve[best_epoch] if r.selects_epoch else val_curve[-1],
        "best_epoch": best_epoch,
        "epochs": epochs,
        "recipe": r.name,
        "val_curve": val_curve,
        "curve_epochs": at,
        "test_curve": test_curve,
        "train_loss_curve": loss_curve,
        "fast_path": bool(fast),
    }
    if return_model:
        out["model"] = model.eval()
    return out


def run(source_id: str, target: str, n: int, unfrozen_blocks: int, seed: int, cfg, *,
        model=None, fast: bool | None = None) -> dict:
    """One transfer run with ``cfg.recipe``; returns the metrics of :func:`finetune` plus source
    facts and timings.

    ``model`` is the loaded source (``zoo.load(source_id)[0]``; loaded here when None). Target
    images are converted to the source's channels / size. Accuracies in percent, times in s.
    A ``source_id`` that is not a zoo id (e.g. a local checkpoint's, ``robust-transfer
    compare``) needs ``model``; its result has no source facts (family, norm, eps, ...).
    """
    t0 = time.perf_counter()
    try:   # any seed of a listed trained family is a zoo source (not only REGISTRY's listing)
        spec = zoo.spec(source_id)
    except ValueError:
        if model is None:
            raise
        spec = None
    if model is None:
        model, _ = zoo.load(source_id, allow_download=cfg.allow_download, progress=False)
    x_tr, y_tr, x_te, y_te, num_classes, data_hash = target_arrays(target, cfg.allow_download)
    sub, val = data.train_subset(y_tr, n, cfg.val_size, seed)
    out = finetune(model, x_tr, y_tr, sub, val, x_te, y_te, unfrozen_blocks, cfg, seed,
                   num_classes=num_classes, fast=fast,
                   feature_key=(source_id, target, data_hash))
    if spec is not None:
        out.update(family=spec.family, norm=spec.norm, eps=float(spec.eps),
                   source_seed=spec.seed, source_label=spec.label)
    out.update(n_val=len(val), n_test=len(y_te), seconds=time.perf_counter() - t0)
    return out
