"""What a sweep will cost, before it runs: runs, epochs, images, and device-hours on this device.

``counts(cfg, runs)`` adds up what the transfer runs ``runs`` (``sweep.grid`` entries, or any
dicts with source, target, unfrozen_blocks and n) make :func:`robust_transfer.transfer.finetune`
process; a run's own recipe fields (``transfer.recipe_fields``: epochs, long_epochs, val_size,
..., as ``sweep.grid`` entries carry them) override ``cfg``'s, so the runs of several grids
(Section 1's and Section 2's, each with its epochs) can be counted together. Per run:

- *training images*: ``n x epochs`` (``transfer.epochs_for``); each is a forward pass through
  the frozen prefix (with the augmentation first when the run's recipe augments) and a forward
  + backward pass through the k unfrozen blocks and the head;
- *head-initialisation images*: ``n`` (one forward pass, for the new head);
- *evaluation images*: validation images (``val_size`` after every epoch and before the first
  for recipe "ours", at the curve epochs for "authors") and the target's whole test set at the
  curve epochs (``transfer.curve_epochs``; forward passes);
- with the cached-prefix fast path (``transfer.use_fast_path(cfg, recipe)``) the frozen prefix is run
  once per (source, target, k) over the target's whole train and test split (*prefix-feature
  images*, counted as if none were cached yet), and every pass above covers only the last k
  blocks and the head.

``calibrate(...)`` measures on this device (``cfg.torch_device()``), in a few seconds, a randomly
initialised model of the sources' architecture (no download; e.g. a torchvision ResNet-50 at
224 px for the paper preset) on random images in the targets' format: the forward time of each
segment (input conversion + stem, every block, pool + head), the augmentation, and one training
step (frozen prefix without gradients, forward + backward through the k unfrozen blocks) at the
largest k of the grid. The backward / forward ratio measured there scales the other k's backward
passes by their blocks' forward times. On a CPU the calibration runs one torch thread, as each
worker of the parallel executors does, so CPU estimates are core-hours. ``estimate(...)`` turns
counts and calibration into seconds. The estimate leaves out what does not grow with images (Python and optimiser overhead
per step, the logistic-regression fit, data loading, source training or download), which
dominates on small models: there a store's finished rows (``seconds``) tell more.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import data, models, transfer, zoo

__all__ = ["Calibration", "calibrate", "calibrate_config", "counts", "estimate", "target_sizes",
           "device_name"]


def device_name(device) -> str:
    """A readable name of ``device``: ``"cuda:0 (NVIDIA H200)"`` or ``"cpu (1 thread)"``."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    n = torch.get_num_threads()
    return f"{device} ({n} thread{'s' * (n > 1)})"


@dataclass
class Calibration:
    """Seconds per image of each part of a transfer step for one architecture on one device."""

    arch: str
    device: str
    input: str            # e.g. "3x32 px -> 3x224 px"
    batch: int
    augment: bool
    k_measured: int       # unfrozen blocks of the measured training step
    reps: int             # timed repetitions (after one warm-up)
    seconds: float        # wall time of the calibration
    augment_s: float      # augmentation, per image
    forward_s: list = field(default_factory=list)  # [input + stem, block 0 .. B-1, pool + head]
    backward_ratio: float = 2.0   # backward / forward time of the trainable part (measured)

    @property
    def num_blocks(self) -> int:
        return len(self.forward_s) - 2

    def _last(self, k: int) -> float:
        """Forward seconds per image through the last ``k`` blocks, the pool and the head."""
        return sum(self.forward_s[len(self.forward_s) - 1 - k:])

    def forward_image(self) -> float:
        """Seconds per image of a full forward pass (evaluation on the plain path)."""
        return sum(self.forward_s)

    def train_image(self, k: int, fast: bool = False) -> float:
        """Seconds per training image with ``k`` unfrozen blocks: (augmentation +) the frozen
        prefix + forward and backward through the trainable part; ``fast``: cached prefix, so the
        trainable part only."""
        trainable = self._last(k) * (1 + self.backward_ratio)
        if fast:
            return trainable
        return (self.augment_s if self.augment else 0.0) + self.forward_image() - self._last(k) \
            + trainable

    def eval_image(self, k: int, fast: bool = False) -> float:
        """Seconds per evaluated image (forward only; ``fast``: the last ``k`` blocks + head)."""
        return self._last(k) if fast else self.forward_image()

    def prefix_image(self, k: int) -> float:
        """Seconds per image of the frozen prefix (fast-path feature caching)."""
        return self.forward_image() - self._last(k)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def calibrate(arch: str, *, in_channels: int, image_size: int, target_channels: int,
              target_size: int, num_classes: int = 10, device="cpu", augment: bool = False,
              k: int = 0, batch: int | None = None, seconds: float = 3.0,
              max_reps: int = 20, cpu_threads: int | None = 1) -> Calibration:
    """Time a randomly initialised ``arch`` (``models.build``; no download) on ``device``.

    Inputs are random ``target_channels x target_size`` images, converted by the model to its
    ``in_channels x image_size`` format as in a transfer run. One warm-up repetition, then timed
    ones until ``seconds`` have passed (at least one, at most ``max_reps``); each part's
    fastest repetition (other work on the device only adds time).
    ``batch`` (default: the largest up to 128 whose forward pass takes about 0.25 s on a CPU,
    128 on a GPU) images per repetition. ``k``: unfrozen blocks of the timed training step
    (at least 1 where the model has blocks, so that a backward ratio can be measured).
    On a CPU the timing runs with ``cpu_threads`` torch threads (default 1: what each worker of
    the processes and Dask executors runs, and robust on a busy machine, where several threads
    wait on each other; None: the current setting), so the estimate is in CPU core-hours.
    """
    device = torch.device(device)
    before = torch.get_num_threads()
    if device.type == "cpu" and cpu_threads is not None:
        torch.set_num_threads(cpu_threads)
    try:  # random weights and images from a forked RNG: the caller's stream is untouched
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)
            return _calibrate(arch, in_channels, image_size, target_channels, target_size,
                              num_classes, device, augment, k, batch, seconds, max_reps)
    finally:
        torch.set_num_threads(before)


def _calibrate(arch, in_channels, image_size, target_channels, target_size, num_classes, device,
               augment, k, batch, seconds, max_reps) -> Calibration:
    t_start = time.perf_counter()
    model = models.build(arch, num_classes, in_channels).to(device).eval()
    fmt = model.input_format = (in_channels, image_size)   # as zoo.load sets it
    k = min(max(k, 1), model.num_blocks)

    def segments(x):
        """Per-segment forward seconds (no gradients) of the batch ``x``."""
        out = []
        with torch.no_grad():
            _sync(device)
            t = time.perf_counter()
            h = model.stem(model.normalize(data.to_source_format(x, *fmt)))
            for block in [None, *model.blocks]:
                if block is not None:
                    h = block(h)
                _sync(device)
                now = time.perf_counter()
                out.append(now - t)
                t = now
            model.head(model.pool(h))
            _sync(device)
            out.append(time.perf_counter() - t)
        return out

    def timed(fn):
        _sync(device)
        t = time.perf_counter()
        result = fn()
        _sync(device)
        return time.perf_counter() - t, result

    if batch is None:
        if device.type == "cuda":
            batch = 128
        else:
            one = torch.rand(1, target_channels, target_size, target_size, device=device)
            segments(one)  # first call: allocations
            probe = min(sum(segments(one)) for _ in range(3))
            batch = max(1, min(128, int(0.25 / max(probe, 1e-6))))
    x = torch.rand(batch, target_channels, target_size, target_size, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    trainable = [p for m in model.trainable_modules(k) for p in m.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)

    def step():
        """One training step; returns (augmentation, suffix forward, backward) seconds."""
        aug, xa = timed(lambda: transfer._augment(x)) if augment else (0.0, x)
        with torch.no_grad():
            h = model.prefix(xa, k)
        fwd, loss = timed(lambda: F.cross_entropy(model.suffix(h, k), y))
        bwd = timed(loss.backward)[0]
        for p in trainable:
            p.grad = None
        return aug, fwd, bwd

    fwd_reps, step_reps = [], []
    for rep in range(max_reps + 1):
        fwd, st = segments(x), step()
        if rep > 0:  # rep 0 warms up
            fwd_reps.append(fwd)
            step_reps.append(st)
            if time.perf_counter() - t_start > seconds:
                break
    # the fastest repetition of each part: other work on the device only ever adds time
    forward = [min(r[i] for r in fwd_reps) / batch for i in range(len(fwd_reps[0]))]
    augment_s = min(r[0] for r in step_reps) / batch
    # backward / forward of the trainable part within the same step (robust to a busy machine)
    ratio = statistics.median(r[2] / max(r[1], 1e-9) for r in step_reps)
    return Calibration(arch=arch, device=device_name(device),
                       input=f"{target_channels}x{target_size} px -> {in_channels}x{image_size} px",
                       batch=batch, augment=augment, k_measured=k, reps=len(step_reps),
                       seconds=time.perf_counter() - t_start, augment_s=augment_s,
                       forward_s=forward, backward_ratio=ratio)


def calibrate_config(cfg, *, batch: int | None = None, seconds: float = 3.0, sources=None,
                     targets=None) -> dict:
    """``{arch: Calibration}`` for the architectures of ``sources`` (default ``cfg.sources``) on
    ``cfg.torch_device()``, with the largest target format (channels, size) of ``targets``
    (default ``cfg.targets`` and ``cfg.block_targets``), the largest k of
    ``cfg.unfrozen_blocks`` and ``cfg.augment``; ``seconds`` per architecture."""
    fmt, classes = (1, 1), 2
    for t in dict.fromkeys(targets or [*cfg.targets, *cfg.block_targets]):
        meta = data.info(t)
        fmt = max(fmt, (meta.channels or 3, meta.size or 32), key=lambda f: (f[1], f[0]))
        classes = max(classes, meta.num_classes or 2)
    out = {}
    for sid in sources or cfg.sources:
        sp = zoo.spec(sid)
        if sp.arch in out:
            continue
        out[sp.arch] = calibrate(sp.arch, in_channels=sp.in_channels, image_size=sp.image_size,
                                 target_channels=fmt[0], target_size=fmt[1], num_classes=classes,
                                 device=cfg.torch_device(), augment=cfg.augment,
                                 k=max(cfg.unfrozen_blocks), batch=batch, seconds=seconds)
    return out


def target_sizes(cfg, allow_download: bool = False, targets=None) -> dict:
    """``{target: (train images, test images)}`` of ``targets`` (default ``cfg.targets`` and
    ``cfg.block_targets``) from the dataset registry (``data.info``), or from the loaded data
    where the registry has no sizes (loaded only when on this machine)."""
    out = {}
    for t in dict.fromkeys(targets or [*cfg.targets, *cfg.block_targets]):
        meta = data.info(t)
        if meta.train_size is not None and meta.test_size is not None:
            out[t] = (meta.train_size, meta.test_size)
        else:
            x_tr, _, x_te, *_ = transfer.target_arrays(t, allow_download)
            out[t] = (len(x_tr), len(x_te))
    return out


def _run_config(cfg, r: dict):
    """``cfg`` with the recipe fields run ``r`` carries (its own epochs, val_size, ...)."""
    own = {k: r[k] for k in transfer.recipe_fields(cfg, r.get("recipe", cfg.recipe))
           if k in r and k not in ("recipe_version", "curve_version")}
    return dataclasses.replace(cfg, **own) if own else cfg


def _run_passes(cfg, r: dict, sizes: dict) -> tuple[bool, int, int, int]:
    """(fast path?, epochs, validation images, test images) of run ``r`` in its recipe:
    validation after every epoch for "ours" (the selection), at the curve epochs for "authors";
    the test set at the curve epochs (``transfer.curve_epochs``, report only)."""
    recipe = r.get("recipe", cfg.recipe)
    cfg = _run_config(cfg, r)
    epochs = transfer.epochs_for(cfg, r["n"], recipe)
    points = len(transfer.curve_epochs(epochs))
    val = cfg.val_size * (points if recipe == "authors" else epochs + 1)
    return transfer.use_fast_path(cfg, recipe), epochs, val, sizes[r["target"]][1] * points


def counts(cfg, runs, sizes: dict) -> dict:
    """Totals over ``runs`` (see the module docstring): ``runs``, ``epochs``, ``train_images``,
    ``init_images``, ``eval_images`` (of which ``val_images``, ``test_images``) and
    ``prefix_images`` (fast path only); ``sizes`` = :func:`target_sizes`."""
    c = dict(runs=len(runs), epochs=0, train_images=0, init_images=0, val_images=0,
             test_images=0, prefix_images=0)
    prefixes = set()
    for r in runs:
        fast, epochs, val, test = _run_passes(cfg, r, sizes)
        n, train_size = r["n"], sizes[r["target"]][0]
        c["epochs"] += epochs
        c["train_images"] += n * epochs
        c["init_images"] += n
        c["val_images"] += val
        c["test_images"] += test
        if fast and (r["source"], r["target"], r["unfrozen_blocks"]) not in prefixes:
            prefixes.add((r["source"], r["target"], r["unfrozen_blocks"]))
            c["prefix_images"] += train_size + sizes[r["target"]][1]
    c["eval_images"] = c["val_images"] + c["test_images"]
    return c


def estimate(cfg, runs, sizes: dict, calibrations: dict) -> float:
    """Seconds on the calibrated device to process ``runs`` one after the other (the image
    passes of :func:`counts`, each at its calibrated per-image time)."""
    total, prefixes = 0.0, set()
    for r in runs:
        fast, epochs, val, test = _run_passes(cfg, r, sizes)
        cal = calibrations[zoo.spec(r["source"]).arch]
        n, k, (train_size, test_size) = r["n"], r["unfrozen_blocks"], sizes[r["target"]]
        total += n * epochs * cal.train_image(k, fast)
        total += (n + val + test) * cal.eval_image(k, fast)
        if fast and (r["source"], r["target"], k) not in prefixes:
            prefixes.add((r["source"], r["target"], k))
            total += (train_size + test_size) * cal.prefix_image(k)
    return total


def hours(seconds: float) -> str:
    """``seconds`` as a short text: "42 s", "3.5 min", "12.3 h", "1,234 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    h = seconds / 3600
    return f"{h:,.1f} h" if h < 100 else f"{h:,.0f} h"


def throughput(cal: Calibration, ks, fast: bool = False) -> dict:
    """``{k: training images per second}`` on the calibrated device."""
    return {k: 1 / cal.train_image(k, fast) if cal.train_image(k, fast) > 0 else math.inf
            for k in ks}
