"""Presets and the one place where run parameters are validated.

``resolve(preset, **overrides)`` returns a frozen :class:`Config`; every notebook passes its
papermill parameters through it, so a bad value (unknown dataset, n larger than a target's
pool, an eps not in the zoo, ...) stops with a ``ValueError`` naming the parameter, the value
and what is allowed, before any data is loaded or model trained.

Papermill's command line hands strings: ``-p targets '["digits"]'`` arrives as the text
``'["digits"]'`` and ``-r epochs 5`` as ``'5'``. Such strings are parsed (YAML, a superset of
JSON) into the field's type before validation; ``-y`` / ``-f params.yaml`` give real values.
Cache and result keys are :func:`robust_transfer.cache.key` of a configuration.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass

import yaml

from . import data, zoo

__all__ = ["Config", "PRESETS", "resolve", "describe", "check_injected"]


@dataclass(frozen=True)
class Config:
    """All knobs of all sections. Units: eps in [0,1] pixel units, n = total target images."""

    preset: str = "mini"
    # --- runtime
    device: str = "cpu"                 # "cpu", "cuda", or "auto"
    allow_download: bool = False        # torchvision datasets / paper checkpoints may be fetched
    # --- sources (zoo ids, see robust_transfer.zoo.list_sources())
    sources: tuple[str, ...] = tuple(zoo.list_sources("mini"))
    # shift the seeds of the preset's trained sources (and finetune_sources) by this; sources
    # given explicitly are used as given. The replication build's 6 trains seeds 6..11,
    # disjoint from the default build's 0..5
    source_seed_offset: int = 0
    # --- targets and target sampling
    targets: tuple[str, ...] = ("mnist5k", "digits", "textures")
    n_values: tuple[int, ...] = (10, 20, 40, 80, 160, 320, 640, 1280)
    seeds: tuple[int, ...] = (0, 1, 2)  # target-subset seeds (per source seed)
    val_size: int = 100                 # validation images carved from each target's train pool
    # --- fine-tuning recipe (robust_transfer.transfer): "ours" or "authors" (their code)
    recipe: str = "ours"
    unfrozen_blocks: tuple[int, ...] = (0, 1)
    # the paper's 3 blocks (layer4), or its mini analogue; one of unfrozen_blocks. Not given to
    # resolve: the preset's if it is in unfrozen_blocks, else the largest of unfrozen_blocks
    main_blocks: int = 1
    epochs: int = 20
    long_epochs: int = 0                # epochs for n > long_epochs_n (0 = epochs); paper 150
    long_epochs_n: int = 1600
    # "authors": at least this many optimiser steps per run (epochs raised at small n; 0 = off):
    # the paper's 100 epochs at n = 100 in batches of 128 are 100 steps
    authors_min_steps: int = 100
    lr: float = 1e-4                    # "ours": Adam lr for unfrozen blocks
    head_lr: float = 1e-3               # "ours": Adam lr for the head
    # runs with unfrozen_blocks > 0 only for these sources (() = all) and n <= finetune_max_n
    # (0 = all n): the mini budget fine-tunes the main families only (see notebook 02)
    finetune_sources: tuple[str, ...] = tuple(zoo.finetuned_sources("mini"))
    finetune_max_n: int = 640
    batch_size: int = 128
    frozen_bn: str = "eval"             # "ours": "eval", or "train" (the authors' code)
    augment: bool = False               # "ours": the paper's augmentation (no cached prefix)
    # the seed schedule: only few_seeds subset seeds for n > few_seeds_n (0 = every seed at
    # every n); full_set adds one run (the first seed) on the whole training pool
    few_seeds: int = 0
    few_seeds_n: int = 6400
    full_set: bool = False
    # or subset seeds per n_values entry (the first k of seeds; () = the few_seeds schedule)
    seed_counts: tuple[int, ...] = ()
    # head-only runs (unfrozen_blocks 0, the main recipe, every source) beyond n_values to each
    # target's whole training pool: doublings of the largest n below the pool (every subset
    # seed), then the pool itself (the first seed: every seed draws the same images there).
    # Section 1's shrinkage test reads them (sweep.pool_n_values)
    head_to_pool: bool = True
    # the other recipe, run beside the main one ("" = none) on the fine-tuned sources, at
    # main_blocks, on the targets that are also in compare_targets (() = every target) and at
    # these n (() = n_values). Mini: the digit targets (the recipe question is asked where the
    # verdict counts, not on the texture control) at the n the small-n gain test reads
    compare_recipe: str = "authors"
    compare_targets: tuple[str, ...] = ("mnist5k", "digits")
    compare_n_values: tuple[int, ...] = (10, 40)
    # Fig. 4: every block count in block_counts on the fine-tuned sources, for block_targets
    # (() = targets) at block_n_values (() = n_values)
    block_counts: tuple[int, ...] = (0, 1, 2, 3)
    block_targets: tuple[str, ...] = ("digits",)
    block_n_values: tuple[int, ...] = (10, 160)
    # --- shape bias (Section 2)
    n_stimuli: int = 500
    blur_sigmas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
    # transfer to versions of these targets (data.VERSIONS: original, stylized:<t>,
    # lowpass<f>:<t> for grey 28 px targets, lowres:<t> for image-file ones) at these n;
    # () = not run
    shape_targets: tuple[str, ...] = ("digits", "mnist5k")
    shape_versions: tuple[str, ...] = ("original", "stylized", "lowpass")
    shape_n_values: tuple[int, ...] = (40, 320)
    # subset seeds per shape_n_values entry (the first k of seeds; () = every seed at every n)
    shape_seed_counts: tuple[int, ...] = ()
    shape_full_set: bool = False        # plus one run (the first seed) on the whole pool
    shape_sources: tuple[str, ...] = ()  # zoo ids; () = the natural, L2 and L-inf of sources
    shape_blocks: int = 0               # unfrozen blocks of these runs
    shape_epochs: int = 0               # epochs of every run (0 = epochs / long_epochs)
    lowpass_factor: float = 4.0         # 28 px -> 7 px -> 28 px
    # sources trained on the textured Fashion-MNIST (zoo.textured_sources; shifted by
    # source_seed_offset): the cue-conflict experiment where texture can carry the class
    # (shape_study.textured_test); () = not run
    textured_sources: tuple[str, ...] = tuple(zoo.textured_sources("mini"))
    # (shape-only target, texture-only target) the textured sources transfer to at
    # shape_n_values, head only, the shape-only one also in shape_versions' changed copies
    # (shape_study.textured_transfer_test); () = not run
    textured_targets: tuple[str, ...] = ("mnist5k", "textures")
    # --- influence functions (Section 3); the first target is the verdict's (chapter 4 says why)
    influence_targets: tuple[str, ...] = ("textures", "digits")
    influence_n: int = 400
    influence_test: int = 500
    damping: float = 1e-3
    loo_points: int = 40
    # the settings studied: "finetuned" (the paper's, the verdict's) and "head_only" (frozen
    # source features). Mini: fine-tuned only (issue 21: the loss-matched heads' cost is offset
    # by dropping the head-only setting, which no verdict reads)
    influence_settings: tuple[str, ...] = ("finetuned",)

    def torch_device(self):
        """The ``torch.device`` runs use: ``device``, with "auto" = CUDA when available."""
        import torch
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def compared_targets(self) -> tuple[str, ...]:
        """The targets of ``compare_recipe``'s runs: those of ``targets`` also in
        ``compare_targets`` (all of them when it is empty)."""
        return tuple(t for t in self.targets
                     if not self.compare_targets or t in self.compare_targets)

    def to_dict(self) -> dict:
        """Plain JSON-able dict of every field (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


PRESETS: dict[str, dict] = {
    # seconds, for tests: two-seed natural and robust sources trained on a few hundred images
    "tiny": dict(
        preset="tiny",
        sources=("tiny/fmnist/natural/s0", "tiny/fmnist/natural/s1",
                 "tiny/fmnist/l2/1.0/s0", "tiny/fmnist/l2/1.0/s1",
                 "tiny/fmnist/linf/0.1/s0", "tiny/fmnist/noise/0.3/s0"),
        targets=("digits", "textures"),
        n_values=(10, 40),
        seeds=(0, 1),
        val_size=50,
        unfrozen_blocks=(0, 1),
        finetune_sources=(),
        finetune_max_n=0,
        compare_targets=(),
        compare_n_values=(10,),
        authors_min_steps=0,
        head_to_pool=False,
        block_counts=(0, 1, 3),
        block_targets=("digits",),
        block_n_values=(10,),
        epochs=3,
        n_stimuli=60,
        blur_sigmas=(0.0, 1.0),
        shape_targets=("digits",),
        shape_n_values=(10, 40),
        textured_sources=("tiny/tfmnist/natural/s0", "tiny/tfmnist/natural/s1",
                          "tiny/tfmnist/l2/1.0/s0", "tiny/tfmnist/l2/1.0/s1",
                          "tiny/tfmnist/noise/0.1/s0"),
        textured_targets=("digits", "textures"),
        influence_targets=("digits",),
        influence_n=100,
        influence_test=40,
        loo_points=8,
        influence_settings=("finetuned", "head_only"),
    ),
    # the default: offline, CPU, minutes
    "mini": dict(preset="mini"),
    # the paper's grid: GPU + internet (torchvision data, MadryLab ImageNet checkpoints)
    "paper": dict(
        preset="paper",
        device="auto",
        allow_download=True,
        sources=("paper/imagenet/natural", "paper/imagenet/l2/3",
                 "paper/imagenet/linf/4", "paper/imagenet/linf/8"),
        targets=("cifar10", "cifar100", "svhn", "fashion_mnist", "kmnist", "mnist"),
        n_values=(100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600),
        seeds=tuple(range(10)),
        val_size=1000,
        recipe="authors",
        unfrozen_blocks=(0, 1, 3, 9),
        main_blocks=3,
        finetune_sources=(),
        finetune_max_n=0,
        epochs=100,
        long_epochs=150,
        few_seeds=5,
        full_set=True,
        head_to_pool=False,                 # full_set reaches each target's pool
        compare_recipe="",
        compare_targets=(),
        compare_n_values=(),
        block_counts=(0, 1, 3, 9),
        block_targets=(),
        block_n_values=(),
        lr=1e-3,
        head_lr=1e-2,
        augment=True,
        n_stimuli=1280,
        # the authors' Food-101 grid (their tools/batch.py): natural and L2 eps 0.05 / 0.25 / 1
        # ResNet-50s, 3 unfrozen blocks, 150 epochs, n = 400 (3 seeds), 1600 (2), 6400,
        # 25600 and the full set (1 each), at full (224 px) and low (32 px) resolution
        shape_targets=("food101",),
        textured_sources=(),
        textured_targets=(),
        shape_versions=("original", "lowres"),
        shape_n_values=(400, 1600, 6400, 25600),
        shape_seed_counts=(3, 2, 1, 1),
        shape_full_set=True,
        shape_sources=("paper/imagenet/natural", "salman2020/imagenet/l2/0.05",
                       "salman2020/imagenet/l2/0.25", "salman2020/imagenet/l2/1"),
        shape_blocks=3,
        shape_epochs=150,
        influence_targets=("cifar10",),
        influence_n=3200,
        influence_test=10000,
        loo_points=100,
        influence_settings=("finetuned", "head_only"),
    ),
}

_CHOICES = {"device": ("cpu", "cuda", "auto"), "frozen_bn": ("eval", "train"),
            "recipe": ("ours", "authors"), "compare_recipe": ("", "ours", "authors")}
_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_TYPES = typing.get_type_hints(Config)
_STR_TUPLES = ("sources", "finetune_sources", "targets", "compare_targets", "block_targets",
               "influence_targets", "shape_targets", "shape_versions", "shape_sources",
               "textured_sources", "textured_targets", "influence_settings")
#: Section 3's settings (``influence_study.SETTINGS``; config imports no section)
_INFLUENCE_SETTINGS = ("finetuned", "head_only")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _scalar(value, typ):
    """``value`` as a ``typ`` (bool, int, float) when it is a string of one (papermill's ``-r`` /
    ``-p`` forms) or a numpy scalar; anything else is returned unchanged for validation."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()
    if not isinstance(value, str) or typ is str:
        return value
    text = value.strip()
    if typ is bool:
        low = text.lower()
        return True if low in _TRUE else False if low in _FALSE else value
    try:
        return typ(text) if typ in (int, float) else value
    except ValueError:
        return value


def _coerce(name: str, value):
    """Normalise an override to its field's type: papermill hands lists (and sometimes scalars)
    for tuple fields, and strings from the command line (``'["digits"]'``, ``'[3, 4]'``,
    ``'digits'``, ``'5'``, ``'True'``), which are parsed as YAML/JSON. ``None`` (a string that
    parses to null included) means the preset's default."""
    typ = _TYPES[name]
    if typing.get_origin(typ) is not tuple:
        return _scalar(value, typ)
    elem = typing.get_args(typ)[0]
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            _fail(name, value, f"must be a list, e.g. '[1, 2]' or '[\"a\", \"b\"]' (YAML/JSON), "
                  f"or one value ({getattr(err, 'problem', err)})")
        if parsed is None:
            return None
        if isinstance(parsed, dict):
            _fail(name, value, "must be a list (YAML/JSON) or one value, not a mapping")
        # a single word stays as typed ("yes", "1.0" are ids / names, not YAML scalars)
        value = parsed if isinstance(parsed, list) or elem is not str else value
    if isinstance(value, (str, int, float)) or type(value).__module__ == "numpy":
        value = (value,)
    try:
        return tuple(_scalar(v, elem) for v in value)
    except TypeError:
        _fail(name, value, "must be a list or one value")


def _fail(name, value, allowed):
    raise ValueError(f"{name}={value!r} is not allowed; {allowed}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    """A finite int or float; bools are not numbers."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _validate(cfg: Config) -> None:
    for name, choices in _CHOICES.items():
        if getattr(cfg, name) not in choices:
            _fail(name, getattr(cfg, name), f"allowed: {list(choices)}")
    if cfg.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            _fail("device", cfg.device, "this machine has no CUDA device; allowed here: "
                  "['cpu', 'auto'] ('auto' uses CUDA where there is one)")
    for name in ("allow_download", "augment", "full_set", "shape_full_set", "head_to_pool"):
        if not isinstance(getattr(cfg, name), bool):
            _fail(name, getattr(cfg, name), "must be True or False")
    for name in ("epochs", "batch_size", "val_size", "n_stimuli", "influence_n",
                 "influence_test", "long_epochs_n", "few_seeds_n"):
        v = getattr(cfg, name)
        if not _is_int(v) or v < 1:
            _fail(name, v, "must be a positive integer")
    for name in ("loo_points", "long_epochs", "few_seeds", "shape_epochs", "authors_min_steps"):
        if not _is_int(getattr(cfg, name)) or getattr(cfg, name) < 0:
            _fail(name, getattr(cfg, name), "must be an integer >= 0 (0 = off)")
    if cfg.compare_recipe == cfg.recipe:
        _fail("compare_recipe", cfg.compare_recipe, f"must differ from recipe={cfg.recipe!r} "
              f"(or be '' for none)")
    for name in ("lr", "head_lr"):
        v = getattr(cfg, name)
        if not _is_number(v) or not 0 < v <= 10:
            _fail(name, v, "must be a finite number in (0, 10]")
    if not _is_number(cfg.damping) or cfg.damping <= 0:
        _fail("damping", cfg.damping, "must be a finite number > 0 (the influence head's L2 "
              "penalty, which keeps its Hessian invertible)")
    for s in cfg.blur_sigmas:
        if not _is_number(s) or s < 0:
            _fail("blur_sigmas", cfg.blur_sigmas, "each sigma must be a finite number >= 0 (pixels)")
    for s in cfg.seeds:
        if not _is_int(s) or s < 0:
            _fail("seeds", cfg.seeds, "each seed must be an integer >= 0")
    for name in _STR_TUPLES:
        for v in getattr(cfg, name):
            if not isinstance(v, str):
                _fail(name, getattr(cfg, name), "each entry must be a string (a name or id)")
    if not cfg.sources:
        _fail("sources", cfg.sources, "give at least one zoo id")
    for name in ("sources", "finetune_sources", "shape_sources", "textured_sources"):
        for sid in getattr(cfg, name):
            try:
                zoo.check_id(sid)
            except ValueError as err:  # names the bad part (scale, norm, eps, seed)
                raise ValueError(f"{name}: {err}") from None
            textured = zoo.spec(sid).dataset == "textured_fmnist"
            # a textured-only `sources` is the textured-source transfer's own Section 1
            # configuration (shape_study.transfer_config); mixed with others it would pool
            # two source data sets into one comparison
            only = name == "sources" and all(zoo.spec(i).dataset == "textured_fmnist"
                                             for i in cfg.sources)
            if textured != (name == "textured_sources") and not only:
                _fail(name, sid, "textured sources ('<scale>/tfmnist/...') belong in "
                      "textured_sources (or make every source textured)" if textured else
                      f"textured_sources takes textured sources only, e.g. "
                      f"{zoo.textured_sources('mini')[:2]}")
    if not _is_int(cfg.finetune_max_n) or cfg.finetune_max_n < 0:
        _fail("finetune_max_n", cfg.finetune_max_n, "must be an integer >= 0 (0 = every n)")
    arch_blocks = min(zoo.spec(sid).num_blocks for sid in cfg.sources)
    if not cfg.unfrozen_blocks:
        _fail("unfrozen_blocks", (), "give at least one block count (0 = a new head only)")
    for name in ("unfrozen_blocks", "block_counts"):
        for k in getattr(cfg, name):
            if not _is_int(k) or not 0 <= k <= arch_blocks:
                _fail(name, getattr(cfg, name),
                      f"each must be an integer in 0..{arch_blocks} for these sources")
    if not _is_int(cfg.main_blocks) or not 0 <= cfg.main_blocks <= arch_blocks:
        _fail("main_blocks", cfg.main_blocks, f"must be an integer in 0..{arch_blocks} for these "
              f"sources (the paper's 3, or its analogue)")
    if cfg.main_blocks not in cfg.unfrozen_blocks:
        _fail("main_blocks", cfg.main_blocks, f"must be one of unfrozen_blocks="
              f"{list(cfg.unfrozen_blocks)}; give unfrozen_blocks with it, or leave main_blocks "
              f"out (it then follows unfrozen_blocks)")
    for name in ("targets", "compare_targets", "block_targets", "influence_targets"):
        if not getattr(cfg, name) and name == "targets":
            _fail(name, (), "give at least one target dataset")
        for t in getattr(cfg, name):
            data.check_name(t, allow_download=cfg.allow_download, parameter=name)
    _check_counts("seed_counts", cfg.seed_counts, "n_values", cfg.n_values, cfg.seeds)
    checks = [("n_values", cfg.targets), ("compare_n_values", cfg.compared_targets()),
              ("block_n_values", cfg.block_targets or cfg.targets)]
    for name, _ in checks:
        for n in getattr(cfg, name):
            if not _is_int(n) or n < 1:
                _fail(name, getattr(cfg, name), "each n must be a positive integer (total images)")
    for name, targets in checks:
        for t in targets:
            info = data.info(t)
            if info.train_size is None:
                continue  # folder:<path> datasets: checked when loaded
            pool = info.train_size - cfg.val_size
            if pool < info.num_classes:
                _fail("val_size", cfg.val_size, f"target {t!r} has {info.train_size} training "
                      f"images; val_size must leave at least one per class")
            for n in getattr(cfg, name):
                if n > pool:
                    _fail(name, n, f"target {t!r} has a training pool of {pool} images after "
                          f"the validation split (val_size={cfg.val_size}); allowed n <= {pool}")
                if n < info.num_classes:
                    _fail(name, n, f"target {t!r} has {info.num_classes} classes; a "
                          f"class-covering subset needs n >= {info.num_classes}")
    _validate_shape(cfg)
    _validate_influence(cfg)


def _check_counts(name, counts, n_name, n_values, seeds) -> None:
    """``counts`` (a seed schedule): () or one count in 1..len(seeds) per ``n_values`` entry."""
    if counts and (len(counts) != len(n_values)
                   or not all(_is_int(k) and 1 <= k <= len(seeds) for k in counts)):
        _fail(name, counts, f"give () or one subset-seed count per {n_name} entry "
              f"({len(n_values)}), each an integer in 1..{len(seeds)} (the seeds)")


def _validate_shape(cfg: Config) -> None:
    """Section 2's fields."""
    if not _is_number(cfg.lowpass_factor) or cfg.lowpass_factor <= 1:
        _fail("lowpass_factor", cfg.lowpass_factor, "must be a finite number > 1 (the "
              "resolution divisor of the lowpass<f>: targets)")
    for n in cfg.shape_n_values:
        if not _is_int(n) or n < 1:
            _fail("shape_n_values", cfg.shape_n_values, "each n must be a positive integer")
    _check_counts("shape_seed_counts", cfg.shape_seed_counts, "shape_n_values",
                  cfg.shape_n_values, cfg.seeds)
    if not cfg.shape_versions or "original" not in cfg.shape_versions:
        _fail("shape_versions", cfg.shape_versions, f"must hold 'original' (the baseline every "
              f"other version is compared with) and any of {list(data.VERSIONS[1:])}")
    for v in cfg.shape_versions:
        if v not in data.VERSIONS:
            _fail("shape_versions", cfg.shape_versions, f"allowed: {list(data.VERSIONS)}")
    blocks = min((zoo.spec(s).num_blocks for s in cfg.shape_sources or cfg.sources), default=0)
    if not _is_int(cfg.shape_blocks) or not 0 <= cfg.shape_blocks <= blocks:
        _fail("shape_blocks", cfg.shape_blocks, f"must be an integer in 0..{blocks} for the "
              f"shape sources")
    tt = cfg.textured_targets
    if tt and (len(tt) != 2 or tt[0] == tt[1]):
        _fail("textured_targets", tt, "give () or two different targets: (shape-only, "
              "texture-only), e.g. ('mnist5k', 'textures')")
    for t in tt:
        data.check_name(t, allow_download=cfg.allow_download, parameter="textured_targets")
    for t in dict.fromkeys((*cfg.shape_targets, *tt)):
        changed = t in cfg.shape_targets or t == tt[0]   # its changed copies are run too
        for v in cfg.shape_versions if changed else ("original",):
            data.check_name(data.version_name(v, t, cfg.lowpass_factor),
                            allow_download=cfg.allow_download, parameter="shape_targets"
                            if t in cfg.shape_targets else "textured_targets")
        info = data.info(t)
        if info.train_size is None:
            continue
        pool = info.train_size - cfg.val_size
        for n in cfg.shape_n_values:
            if not info.num_classes <= n <= pool:
                _fail("shape_n_values", n, f"target {t!r} allows {info.num_classes} (one image "
                      f"per class) <= n <= {pool} (its pool after val_size={cfg.val_size})")


def _validate_influence(cfg: Config) -> None:
    """Section 3's fields."""
    s = cfg.influence_settings
    if "finetuned" not in s or not set(s) <= set(_INFLUENCE_SETTINGS) or len(set(s)) != len(s):
        _fail("influence_settings", s, f"must hold 'finetuned' (the verdict's setting) and may "
              f"add 'head_only', each once; allowed: {list(_INFLUENCE_SETTINGS)}")
    for t in cfg.influence_targets:
        info = data.info(t)
        if info.train_size is not None and cfg.influence_n > info.train_size - cfg.val_size:
            _fail("influence_n", cfg.influence_n,
                  f"target {t!r} allows at most {info.train_size - cfg.val_size}")
        if cfg.influence_n < info.num_classes:
            _fail("influence_n", cfg.influence_n, f"target {t!r} has {info.num_classes} classes; "
                  f"a class-covering subset needs influence_n >= {info.num_classes}")


def _follow(main_blocks, unfrozen_blocks):
    """``main_blocks`` when it is one of ``unfrozen_blocks``, else their largest (left as it is
    when ``unfrozen_blocks`` is empty or not all integers, which validation then refuses)."""
    if main_blocks in unfrozen_blocks or not unfrozen_blocks \
            or not all(_is_int(k) for k in unfrozen_blocks):
        return main_blocks
    return max(unfrozen_blocks)


def resolve(preset: str = "mini", **overrides) -> Config:
    """The validated configuration for ``preset`` with papermill-style ``overrides`` applied.
    ``main_blocks``, when not given, follows ``unfrozen_blocks`` (see :class:`Config`)."""
    if preset not in PRESETS:
        _fail("preset", preset, f"allowed: {sorted(PRESETS)}")
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; allowed: {sorted(set(_FIELDS) - {'preset'})}")
    if "preset" in overrides:
        raise ValueError("preset must be given as the first argument, not as an override")
    given = {k: _coerce(k, v) for k, v in overrides.items() if v is not None}
    given = {k: v for k, v in given.items() if v is not None}
    values = {**_preset_values(preset, given.get("source_seed_offset", 0)), **given}
    if "main_blocks" not in given:
        values["main_blocks"] = _follow(values["main_blocks"], values["unfrozen_blocks"])
    cfg = Config(**values)
    _validate(cfg)
    return cfg


def _preset_values(preset: str, offset) -> dict:
    """``PRESETS[preset]`` (over the dataclass defaults) with the seeds of its trained
    ``sources``, ``finetune_sources`` and ``textured_sources`` shifted by ``source_seed_offset``; sources given
    explicitly are used as given. An offset for presets without trained sources is refused
    (downloaded checkpoints have no training seed)."""
    values = {**{f: getattr(Config, f) for f in _FIELDS if hasattr(Config, f)}, **PRESETS[preset]}
    if not _is_int(offset) or offset < 0:
        _fail("source_seed_offset", offset, "must be an integer >= 0 (0 = the preset's source "
              "seeds)")
    if offset == 0:
        return values
    if all(zoo.spec(s).scale not in zoo.TRAINED_SCALES for s in values["sources"]):
        _fail("source_seed_offset", offset, f"only 0 for preset {preset!r}: its sources are "
              f"downloaded checkpoints without a training seed")
    return {**values, **{f: tuple(zoo.shift_seed(s, offset) for s in values[f])
                         for f in ("sources", "finetune_sources", "textured_sources")}}


#: the first line of the cell papermill injects after the ``parameters`` cell
INJECTED_HEADER = "# Parameters"


def _assigned(source: str) -> set[str]:
    """The names a cell's top-level statements assign (``x = 1``, ``x: int = 1``)."""
    import ast
    names = set()
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def check_injected(namespace: dict) -> None:
    """Refuse names papermill injected that the notebook's ``parameters`` cell does not define:
    ``ValueError: unknown parameter(s) [...]; allowed: [...]``, the command line's message.

    ``namespace`` is the notebook's ``globals()``; IPython's input history there (``In``) holds
    the cells run so far, the injected one (it starts with :data:`INJECTED_HEADER`) right
    after the parameters cell. Without an injected cell (a notebook run by hand, Colab) there is
    nothing to check."""
    history = list(namespace.get("In", ()))
    for i in range(len(history) - 1, 1, -1):
        if history[i].startswith(INJECTED_HEADER + "\n"):
            allowed, given = _assigned(history[i - 1]), _assigned(history[i])
            unknown = sorted(given - allowed)
            if unknown:
                raise ValueError(f"unknown parameter(s) {unknown}; allowed: {sorted(allowed)}")
            return


def describe(cfg: Config, fields=None) -> "pandas.DataFrame":
    """A two-column table (parameter, value) of ``cfg`` for printing beside results."""
    import pandas as pd
    d = cfg.to_dict()
    keys = fields or list(d)
    return pd.DataFrame({"parameter": keys, "value": [str(d[k]) for k in keys]})
