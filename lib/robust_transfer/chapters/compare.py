"""Your backbone, your data: does a robust source help *my* small data set?

``robust-transfer compare --target folder:PATH --sources A B ... [--n 10,40,160] [--out DIR]``
transfers every source to an image folder at every n (head-only by default, the cached
frozen-prefix fast path of :mod:`robust_transfer.transfer`), stores one row per run in a store
of its own per target folder (a re-run computes only what is missing), and writes a
self-contained HTML report (figures as base64 PNG, no external requests) built from chapter 2's
functions: accuracy and gain vs n per source, the pre-specified small-n test, the paired gains
table and the cost of what ran.

Sources (:func:`parse_source`): zoo ids (``robust-transfer sources``; ``salman2020/...`` and
``paper/...`` need their download once) or local files -- a torchvision state dict or a
MadryLab ``robustness`` checkpoint (read with ``torch.load(weights_only=True)``,
:func:`robust_transfer.checkpoints.read_torch_file`; ``--arch`` names the architecture,
resnet50 by default) or our safetensors format (``NAME.safetensors`` + ``NAME.json``). Each may
be written ``LABEL=ID_OR_FILE``. The *baseline* (``--baseline LABEL``; default: the first
natural zoo source, else the first source) is what every other source is compared with.

The target (``folder:PATH``): ``PATH/{train,test}/<class>/*`` or one tree ``PATH/<class>/*``
split per class with ``--split-seed``; read as ``data.folder_name(PATH, size)`` -- torchvision
ImageFolder semantics at the sources' largest input resolution (224 px for ResNet-50; or
``--image-size``), uint8, decoded once into the cache.

The verdict per (source, unfrozen blocks) is chapter 2's pre-specified small-n test,
``stats.pooled_gain`` over the smaller half of the n values (``claims.small_n_max``): **holds**
when its 95% interval is above 0, **contradicted** when below, **undecided** when it straddles
0 (or there is no interval). Each source is one family with one source seed, so the interval
covers subset seeds only (``ci_basis``): it says whether *this* checkpoint helps on *this*
folder, not whether robust training does in general.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import html
import io
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from .. import __version__, checkpoints, claims, config, cost, data, sweep, transfer, zoo
from ..cache import key as cache_key, sha256_file
from ..progress import bar
from ..store import Store
from . import ch02_transfer as ch02
from .common import use_style

__all__ = ["Source", "CompareError", "parse_source", "load_source", "target_name", "make_config",
           "grid", "store_for", "run", "analyse", "headline", "report_html",
           "compare", "main_args", "VERDICTS"]

#: the labels of the small-n test (interval above 0 / below 0 / straddles 0 or none)
VERDICTS = (claims.HOLDS, claims.CONTRADICTED, claims.UNDECIDED)  # claims.part_label's
ARCHS = ("resnet50", "resnet18", "resnet34", "resnet101", "resnet152", "resnet8")
_FILE_PREFIX = "file:"


class CompareError(ValueError):
    """A bad argument of ``compare`` (named, with the value and what is allowed)."""


@dataclass(frozen=True)
class Source:
    """One source of a comparison. ``key`` is its id in the store and in ``transfer.run``: the
    zoo id, or ``file:<sha256 of the file, 16 hex>`` for a local file (so a moved file keeps
    its rows). ``path`` is the local file (None for zoo ids)."""

    key: str
    label: str
    path: str | None
    arch: str
    norm: str          # the zoo's norm ("natural", "l2", "linf", "noise"), "unknown" for files
    eps: float         # pixel units (nan for files)
    revision: str      # zoo.revision, or the file's full sha256
    image_size: int | None = None   # input resolution (known after loading a file)
    in_channels: int | None = None


# ----------------------------------------------------------------------------- sources

def _split_label(text: str) -> tuple[str | None, str]:
    label, sep, rest = text.partition("=")
    if sep and rest and "/" not in label and "\\" not in label and label.strip():
        return label.strip(), rest
    return None, text


def parse_source(text: str, arch: str = "resnet50") -> Source:
    """The :class:`Source` of a ``--sources`` entry (``[LABEL=]ZOO_ID_OR_FILE``), without loading
    weights (a file's sha256 is read). ``CompareError`` naming the entry when it is neither a
    zoo id nor an existing file."""
    label, what = _split_label(text)
    if what in zoo.REGISTRY:
        sp = zoo.spec(what)
        return Source(what, label or sp.label, None, sp.arch, sp.norm, float(sp.eps),
                      zoo.revision(what), sp.image_size, sp.in_channels)
    path = Path(what).expanduser()
    if path.suffix == ".json" and path.with_suffix(".safetensors").exists():
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        hint = ""
        if "/" in what and what.split("/")[0] in ("tiny", "mini", "paper", "salman2020"):
            try:
                zoo.check_id(what)
            except ValueError as err:
                hint = f" ({err})"
        raise CompareError(f"--sources {text!r} is neither a zoo id (robust-transfer sources "
                           f"lists them, e.g. salman2020/imagenet/l2/3) nor an existing file"
                           f"{hint}")
    if arch not in ARCHS:
        raise CompareError(f"--arch {arch!r} is not allowed; allowed: {list(ARCHS)}")
    digest = sha256_file(path)
    return Source(_FILE_PREFIX + digest[:16], label or path.stem, str(path.resolve()), arch,
                  "unknown", float("nan"), digest)


def _load_file(path: str, arch: str):
    """``(model, image size, in channels)`` of a local checkpoint file (CheckpointError naming
    it when unreadable)."""
    p = Path(path)
    if p.suffix == ".safetensors":
        model, meta = checkpoints.load(p)
        size = meta.get("image_size")
        if size is None and meta.get("id") in zoo.REGISTRY:
            size = zoo.spec(meta["id"]).image_size
        channels = int(meta.get("in_channels", 3))
        size = int(size or (224 if channels == 3 and meta.get("arch", "").startswith("resnet5")
                            else 28 if meta.get("arch") == "resnet8" else 224))
        return model, size, channels
    try:
        obj = checkpoints.read_torch_file(p)
        model = checkpoints.import_torchvision_resnet(obj, arch)
    except checkpoints.CheckpointError as err:
        msg = str(err)
        raise checkpoints.CheckpointError(msg if str(p) in msg else f"{p}: {msg}") from None
    except Exception as err:  # noqa: BLE001 -- a torch.load failure of any kind
        raise checkpoints.CheckpointError(f"{p} cannot be read as a checkpoint: "
                                          f"{type(err).__name__}: {err}") from None
    return model, 224, 3


def load_source(src: Source, allow_download: bool = False):
    """``(model in eval mode with its input_format set, src with image_size / in_channels)``."""
    if src.path is None:
        model, _ = zoo.load(src.key, allow_download=allow_download, progress=False)
        return model, src
    model, size, channels = _load_file(src.path, src.arch)
    model.input_format = (channels, size)
    return model.eval(), dataclasses.replace(src, image_size=size, in_channels=channels)


def _load_for_sweep(paths: dict, source: str, allow_download: bool = False, progress=False):
    """``sweep``'s ``load_fn`` (picklable through ``functools.partial``): zoo ids through
    ``zoo.load``, ``file:`` keys from ``paths`` ({key: (path, arch)})."""
    if source in paths:
        path, arch = paths[source]
        model, size, channels = _load_file(path, arch)
        model.input_format = (channels, size)
        return model.eval(), {}
    return zoo.load(source, allow_download=allow_download, progress=progress)


# ----------------------------------------------------------------------------- grid

def target_name(target: str, size: int, split_seed: int = 0) -> str:
    """The dataset name of ``--target folder:PATH`` read at ``size`` px (``data.folder_name``);
    CompareError for other forms."""
    if not target.startswith("folder:"):
        raise CompareError(f"--target {target!r} is not allowed; give folder:PATH (PATH/train/"
                           f"<class>/* and PATH/test/<class>/*, or PATH/<class>/*)")
    return data.folder_name(target[len("folder:"):], size, split_seed)


def make_config(*, n_values, seeds, unfrozen_blocks, device="cpu", epochs=20, val_size=100,
                batch_size=128, allow_download=False):
    """The ``Config`` the runs use: the mini preset's recipe "ours" (head lr, Adam, frozen BN in
    eval mode, no augmentation: the cached-prefix fast path) with these fields replaced."""
    cfg = config.resolve("mini")
    return dataclasses.replace(
        cfg, device=device, allow_download=allow_download, n_values=tuple(n_values),
        seeds=tuple(seeds), unfrozen_blocks=tuple(unfrozen_blocks), epochs=epochs,
        val_size=val_size, batch_size=batch_size, compare_recipe="", block_counts=(),
        main_blocks=max(unfrozen_blocks), finetune_sources=(), finetune_max_n=0, full_set=False,
        few_seeds=0, long_epochs=0)


def grid(sources, target: str, cfg) -> list[dict]:
    """One run dict per (source, unfrozen_blocks, n, seed): the store key's fields (source key
    and revision, arch, target name and its data's content hash, ``transfer.recipe_fields``)."""
    data_hash = transfer.target_arrays(target, cfg.allow_download)[5]
    fields = transfer.recipe_fields(cfg)
    return [dict(source=s.key, source_revision=s.revision, arch=s.arch, target=target,
                 target_revision=data_hash, unfrozen_blocks=k, n=n, seed=seed, **fields)
            for s in sources for k in cfg.unfrozen_blocks for n in cfg.n_values
            for seed in cfg.seeds]


def store_for(folder) -> Store:
    """The store of one target folder: ``compare-<folder name>-<8 hex of its absolute path>``."""
    path = Path(folder).expanduser().resolve()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name)[:40] or "folder"
    return Store(f"compare-{slug}-{cache_key({'folder': str(path)})[:8]}")


def _tasks(missing: list[dict], order: list[str]) -> list:
    cells: dict[tuple, list] = {}
    for r in missing:
        cells.setdefault((r["source"], r["unfrozen_blocks"], r["target"], r["seed"],
                          r["recipe"]), []).append(r)
    rank = {s: i for i, s in enumerate(order)}
    out = [sweep.Task(s, k, t, seed, rec, tuple(sorted(runs, key=lambda r: r["n"])))
           for (s, k, t, seed, rec), runs in cells.items()]
    return sorted(out, key=lambda c: (-c.unfrozen_blocks, c.seed, rank[c.source]))


def run(sources, models: dict, target: str, cfg, store: Store, *, executor="serial",
        workers=None, scheduler=None, retries=1, progress=True):
    """Run the runs of :func:`grid` that ``store`` lacks; returns ``sweep.SweepResult`` (how many
    finished; ``.failed`` records). ``models``: {source key: loaded model} (serial executor)."""
    runs = grid(sources, target, cfg)
    missing = store.missing(runs)
    if not missing:
        return sweep.SweepResult(0)
    todo = _tasks(missing, [s.key for s in sources])
    pbar = bar(total=len(missing), desc="compare runs", unit="run", disable=not progress)
    try:
        if executor == "serial" and scheduler is None:
            def load_fn(source, allow_download=False, progress=False):
                return models[source], {}
            failed = sweep._serial(todo, cfg, store, retries, transfer.run, load_fn, pbar)
        else:
            paths = {s.key: (s.path, s.arch) for s in sources if s.path is not None}
            load_fn = functools.partial(_load_for_sweep, paths)
            failed = sweep._parallel(todo, cfg, store, "dask" if scheduler else executor, None,
                                     workers, scheduler, retries, transfer.run, load_fn, pbar,
                                     {Store.key(r) for r in missing})
    finally:
        pbar.close()
    return sweep.SweepResult(len(missing) - len(store.missing(missing)), failed)


# ----------------------------------------------------------------------------- analysis

def _frame(sources, baseline: str, runs, store: Store) -> pd.DataFrame:
    """The store's rows of ``runs`` with chapter 2's family columns set from ``sources``: one
    family per source under one prefix, the baseline the only "natural" one (what
    ``stats.deltas`` pairs every other family with)."""
    df = store.frame(runs)
    if df.empty:
        return df
    by_key = {s.key: s for s in sources}
    fam = {s.key: f"compare/sources/{i:02d} {s.label}" for i, s in enumerate(sources)}
    df = df.assign(
        family=df["source"].map(fam),
        source_label=df["source"].map({k: s.label for k, s in by_key.items()}),
        norm=df["source"].map({k: ("natural" if s.label == baseline else
                                   "other" if s.norm in ("natural", "unknown") else s.norm)
                               for k, s in by_key.items()}),
        eps=df["source"].map({k: s.eps for k, s in by_key.items()}),
        source_seed=0)
    return df


def analyse(df: pd.DataFrame, cfg) -> dict:
    """Chapter 2's tables of the comparison (``ch02.analyses``) plus ``headline``."""
    out = ch02.analyses(df, cfg)
    out["headline"] = headline(out["pooled"], out["summary"])
    return out


def headline(pooled: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """One line per (source, unfrozen blocks) compared with the baseline: the small-n gain
    (points, pooled over n <= the smaller half's largest n) with its 95% CI, the verdict, the
    CI's basis, and the source's mean accuracy (%) at the smallest and largest n."""
    if pooled.empty:
        return pd.DataFrame()
    rows = []
    for _, r in pooled.sort_values(["unfrozen_blocks", "family"]).iterrows():
        s = summary[(summary["family"] == r["family"])
                    & (summary["unfrozen_blocks"] == r["unfrozen_blocks"])].sort_values("n")
        rows.append({"source": r["source_label"], "unfrozen blocks": int(r["unfrozen_blocks"]),
                     "n pooled": f"{int(r['n_from'])}-{int(r['n_to'])}",
                     "gain vs baseline (points)": f"{r['mean']:+.1f}",
                     "95% CI": (f"[{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]"
                                if pd.notna(r["ci_low"]) else "none"),
                     "verdict": claims.part_label(r["ci_low"], r["ci_high"]),
                     "CI basis": r["ci_basis"],
                     f"accuracy at n={int(s['n'].iloc[0])} (%)": f"{s['mean'].iloc[0]:.1f}",
                     f"accuracy at n={int(s['n'].iloc[-1])} (%)": f"{s['mean'].iloc[-1]:.1f}"})
    return pd.DataFrame(rows)


def _accuracy_table(summary: pd.DataFrame) -> pd.DataFrame:
    t = summary.assign(cell=[f"{m:.1f} [{lo:.1f}, {hi:.1f}]" if pd.notna(lo) else f"{m:.1f}"
                             for m, lo, hi in zip(summary["mean"], summary["ci_low"],
                                                  summary["ci_high"])])
    return t.pivot_table(index=["unfrozen_blocks", "source_label"], columns="n", values="cell",
                         aggfunc="first")


def _cost_table(df: pd.DataFrame) -> pd.DataFrame:
    t = df.groupby(["source_label", "unfrozen_blocks"])["seconds"].agg(["count", "mean", "sum"])
    return t.rename(columns={"count": "runs", "mean": "s per run", "sum": "s in all"}).round(2)


# ----------------------------------------------------------------------------- report

def _png(fig) -> str:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


_CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}table{border-collapse:collapse;
margin:.6em 0 1.2em;font-size:.88em}th,td{border:1px solid #ccc;padding:.25em .55em;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.holds{background:#d9f2d9}.contradicted{background:#f8d7d7}.undecided{background:#fff3cd}
code{background:#f5f5f5;padding:0 .2em}img{max-width:100%}.note{color:#555;font-size:.9em}"""


def _table_html(t: pd.DataFrame, index=True) -> str:
    if t is None or t.empty:
        return "<p class='note'>(none)</p>"
    return t.to_html(index=index, escape=True, border=0, na_rep="")


def report_html(tables: dict, df: pd.DataFrame, info: dict, cfg) -> str:
    """The self-contained HTML page of a comparison: headline, figures (base64 PNG), the
    pre-specified tests, paired gains, accuracies, and what ran at what cost."""
    use_style()
    e = html.escape
    head = tables["headline"]
    rows = []
    for _, r in head.iterrows():
        cells = "".join(f"<td class='{e(r['verdict'])}'>{e(str(v))}</td>" if c == "verdict"
                        else f"<td>{e(str(v))}</td>" for c, v in r.items())
        rows.append(f"<tr>{cells}</tr>")
    head_html = ("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in head.columns) + "</tr>"
                 + "".join(rows) + "</table>") if len(head) else "<p>No paired comparison.</p>"
    figs = []
    for k in sorted(set(df["unfrozen_blocks"])):
        fig = ch02.accuracy_vs_n(tables["summary"], tables["deltas"], unfrozen_blocks=k)
        figs.append(f"<figure><img alt='accuracy and gain vs n, {k} unfrozen blocks' "
                    f"src='data:image/png;base64,{_png(fig)}'><figcaption>Test accuracy (top) "
                    f"and paired gain over the baseline (bottom) vs n, {k} unfrozen block(s); "
                    f"95% CI bands over subset seeds.</figcaption></figure>")
    setup = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in info.items()
                    if k != "runs text")
    small = claims.small_n_max(cfg)
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Does a robust source help {e(info['target folder'])}?</title><style>{_CSS}</style></head>
<body><h1>Does a robust source help this data set?</h1>
<p>Target <code>{e(info['target folder'])}</code>: {e(str(info['classes']))} classes, each source
transferred with a new head{' and fine-tuned blocks' if max(cfg.unfrozen_blocks) else ''}
(recipe <code>ours</code>, {cfg.epochs} epochs) at n = {e(', '.join(map(str, cfg.n_values)))}
training images and {len(cfg.seeds)} subset seed(s) each; baseline
<b>{e(info['baseline'])}</b>.</p>
<h2>Headline: the pre-specified small-n test</h2>
<p>Per source, the paired gain over the baseline (same images for both: subset seed j draws the
same n images for every source) averaged over every n &le; {small} (the smaller half of the n
values), with its 95% confidence interval (<code>stats.pooled_gain</code>). <b>holds</b>: the
interval is above 0; <b>contradicted</b>: below 0; <b>undecided</b>: it straddles 0. One
checkpoint per source: the interval covers the choice of images (subset seeds), not the
variation between checkpoints trained with other seeds.</p>
{head_html}
<h2>Accuracy and gain vs n</h2>{''.join(figs)}
<h2>The pre-specified tests</h2>
<p class="note">Gain pooled over small n, and the slope of the gain per doubling of n
(<code>stats.shrinkage</code>); * = the CI excludes 0.</p>
{_table_html(ch02.tests_table(tables['pooled'], tables['shrink']))}
<h2>Paired gains over the baseline, per n</h2>
<p class="note">mean [95% CI] in accuracy points; * = significant after Holm's correction over
all cells.</p>
{_table_html(ch02.gain_table(tables['deltas']))}
<h2>Test accuracy (%)</h2>{_table_html(_accuracy_table(tables['summary']))}
<h2>What ran, and its cost</h2>
<p>{e(info['runs text'])}</p>
{_table_html(_cost_table(df))}
<h2>Set-up</h2><table>{setup}</table>
<p class="note">robust-transfer {e(__version__)}; rows in the store <code>{e(info['store'])}</code>
(one JSON file per run).</p></body></html>
"""


# ----------------------------------------------------------------------------- the command

def _ints(text: str, name: str, minimum: int = 0) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in str(text).replace(" ", "").split(",") if v != "")
    except ValueError:
        raise CompareError(f"{name} {text!r} is not allowed; give integers separated by commas, "
                           f"e.g. {name} 10,40,160") from None
    if not vals or any(v < minimum for v in vals):
        raise CompareError(f"{name} {text!r} is not allowed; give integers >= {minimum}")
    return tuple(sorted(set(vals)))


def main_args(args, out=print) -> int:
    """Run ``compare`` for parsed ``args``; returns the exit status (2: a bad argument, 1: a
    failed run or unavailable source)."""
    try:
        result = compare(
            target=args.target, sources=args.sources, baseline=args.baseline,
            n_values=_ints(args.n, "--n", 1), unfrozen_blocks=_ints(args.unfrozen_blocks,
                                                                    "--unfrozen-blocks"),
            seeds=_ints(args.seeds, "--seeds"), epochs=args.epochs, val_size=args.val_size,
            split_seed=args.split_seed, image_size=args.image_size, arch=args.arch,
            device=args.device, allow_download=args.allow_download, out_dir=args.out,
            store=args.store, executor=args.executor, workers=args.workers,
            scheduler=args.scheduler, calibrate=not args.no_calibrate,
            progress=not args.quiet, out=out)
    except (CompareError, checkpoints.CheckpointError, zoo.SourceUnavailable) as err:
        print(f"robust-transfer compare: error: {err}", file=sys.stderr)
        return 1 if isinstance(err, zoo.SourceUnavailable) else 2
    return 1 if result["failed"] else 0


def _check(cfg, n_classes: int, train_size: int, models: dict, sources, val_size_given) -> None:
    if cfg.epochs < 1:
        raise CompareError(f"--epochs {cfg.epochs} is not allowed; give an integer >= 1")
    if not n_classes <= cfg.val_size < train_size:
        raise CompareError(f"--val-size {cfg.val_size} is not allowed; need {n_classes} (one per "
                           f"class) <= val-size < {train_size} (the folder's training images)")
    pool = train_size - cfg.val_size
    bad = [n for n in cfg.n_values if not n_classes <= n <= pool]
    if bad:
        raise CompareError(f"--n {','.join(map(str, bad))} is not allowed; the folder has "
                           f"{n_classes} classes and {train_size} training images, {pool} after "
                           f"{cfg.val_size} validation images"
                           + ("" if val_size_given else " (--val-size)")
                           + f": allowed {n_classes} <= n <= {pool}")
    for s in sources:
        blocks = models[s.key].num_blocks
        if max(cfg.unfrozen_blocks) > blocks:
            raise CompareError(f"--unfrozen-blocks {max(cfg.unfrozen_blocks)} is not allowed for "
                               f"{s.label} ({s.arch}): it has {blocks} blocks")


def compare(*, target: str, sources, baseline=None, n_values=(10, 20, 40, 80, 160, 320, 640),
            unfrozen_blocks=(0,), seeds=(0, 1, 2), epochs=20, val_size=None, split_seed=0,
            image_size=None, arch="resnet50", device="cpu", allow_download=False,
            out_dir="compare_report", store=None, executor="serial", workers=None,
            scheduler=None, calibrate=True, progress=True, out=print) -> dict:
    """The whole command: check everything, print the cost, run what is missing, write
    ``out_dir/index.html`` (and ``rows.csv``) and print the headline. Returns ``{"ran",
    "failed", "tables", "report", "grid", "store", "cfg", "target", "sources"}``.

    Refuses (``CompareError`` / ``CheckpointError``, naming the bad argument, folder or file)
    before any training: an unreadable folder, unknown source, unreadable checkpoint, n too
    large for the folder, fewer than two sources."""
    t_start = time.perf_counter()
    if len(sources) < 2:
        raise CompareError(f"--sources {list(sources)}: give at least two (a baseline and one "
                           f"to compare with it)")
    if executor not in sweep.EXECUTORS:
        raise CompareError(f"--executor {executor!r} is not allowed; allowed: {sweep.EXECUTORS}")
    if not target.startswith("folder:"):
        target_name(target, 224)
    folder = Path(target[len("folder:"):]).expanduser()
    try:   # the folder first: layout, classes, images (no decoding yet)
        data.check_name(data.folder_name(folder, 224, split_seed), parameter="--target")
    except ValueError as err:
        raise CompareError(str(err)) from None
    srcs = [parse_source(s, arch) for s in sources]
    labels = [s.label for s in srcs]
    if len(set(labels)) < len(labels):
        raise CompareError(f"--sources labels {labels} are not unique; write LABEL=ID_OR_FILE")
    if len({s.key for s in srcs}) < len(srcs):
        raise CompareError(f"--sources {list(sources)} name the same weights twice")
    if baseline is None:
        nat = [s for s in srcs if s.norm == "natural"]
        baseline = (nat[0] if nat else srcs[0]).label
    elif baseline not in labels:
        raise CompareError(f"--baseline {baseline!r} is not allowed; allowed: {labels}")
    models, loaded = {}, []
    for s in srcs:
        model, s = load_source(s, allow_download)
        models[s.key] = model
        loaded.append(s)
    srcs = loaded
    size = image_size or max(s.image_size for s in srcs)
    name = target_name(target, size, split_seed)
    x_tr, y_tr, x_te, _, n_classes, _ = transfer.target_arrays(name, False)
    val = val_size if val_size is not None else min(100, max(n_classes, len(y_tr) // 5))
    cfg = make_config(n_values=n_values, seeds=seeds, unfrozen_blocks=unfrozen_blocks,
                      device=device, epochs=epochs, val_size=val, allow_download=allow_download)
    _check(cfg, n_classes, len(y_tr), models, srcs, val_size is not None)
    st = store_for(folder) if store is None else Store(store)
    runs = grid(srcs, name, cfg)
    missing = st.missing(runs)
    out(f"target {folder} at {size} px: {n_classes} classes, {len(y_tr):,} training images "
        f"({cfg.val_size} for validation), {len(x_te):,} test images; store {st.path}")
    for s in srcs:
        out(f"  source {s.label!r}: {s.path or s.key} ({s.arch}, {s.image_size} px"
            + (", baseline" if s.label == baseline else "") + ")")
    estimate = _cost(cfg, srcs, runs, missing, name, (len(y_tr), len(x_te)), n_classes, size,
                     calibrate, out)
    t0 = time.perf_counter()
    ran = run(srcs, models, name, cfg, st, executor=executor, workers=workers,
              scheduler=scheduler, progress=progress) if missing else sweep.SweepResult(0)
    seconds = time.perf_counter() - t0
    df = _frame(srcs, baseline, runs, st)
    meta = data.folder_files(name)
    info = {"target folder": str(folder.resolve()), "classes": n_classes,
            "class names": ", ".join(meta["classes"][:30]) + (" ..." if n_classes > 30 else ""),
            "layout": meta["layout"] + (f" (split seed {meta['split_seed']}, "
                                        f"{data.FOLDER_TEST_FRACTION:.0%} of each class to test)"
                                        if meta["layout"] == "one tree" else ""),
            "images": f"{len(y_tr):,} train ({cfg.val_size} of them validation), "
                      f"{len(x_te):,} test; read at {size} px (uint8, cached)",
            "dataset name": name, "baseline": baseline,
            "sources": "; ".join(f"{s.label}: {s.path or s.key} ({s.arch}"
                                 + (f", sha256 {s.revision[:16]}" if s.path else "") + ")"
                                 for s in srcs),
            "n values": ", ".join(map(str, cfg.n_values)),
            "unfrozen blocks": ", ".join(map(str, cfg.unfrozen_blocks)),
            "subset seeds": ", ".join(map(str, cfg.seeds)),
            "recipe": (f"ours (v{transfer.RECIPE_VERSION}): head from a logistic-regression fit "
                       f"on standardised features, Adam (head lr {cfg.head_lr}, blocks lr "
                       f"{cfg.lr}), {cfg.epochs} epochs, batch {cfg.batch_size}, epoch chosen "
                       f"on validation; BN frozen (eval), no augmentation; cached frozen prefix"),
            "device": cost.device_name(cfg.torch_device()),
            "estimate before compute": (cost.hours(estimate) if estimate else "not calibrated"
                                        if missing else "nothing missing"),
            "store": str(st.path)}
    info["runs text"] = (f"{len(runs)} runs in this comparison; {int(ran)} computed now in "
                         f"{seconds:.0f} s ({cost.device_name(cfg.torch_device())}), "
                         f"{len(runs) - len(missing)} read from the store; "
                         f"{sum(1 for _ in st.missing(runs))} missing.")
    result = {"ran": int(ran), "failed": list(getattr(ran, "failed", [])), "grid": runs,
              "store": st, "cfg": cfg, "target": name, "sources": srcs, "tables": None,
              "report": None, "frame": df}
    if df.empty or df["source"].nunique() < 2:
        out("no paired results to report (every run failed?)")
        return result
    tables = analyse(df, cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / "index.html"
    page.write_text(report_html(tables, df, info, cfg), encoding="utf-8")
    keep = [c for c in ("source_label", "source", "unfrozen_blocks", "n", "seed", "test_acc",
                        "val_acc", "best_epoch", "epochs", "seconds", "key") if c in df]
    df[keep].sort_values(["source_label", "unfrozen_blocks", "n", "seed"]).to_csv(
        out_dir / "rows.csv", index=False)
    (out_dir / "headline.json").write_text(json.dumps(
        tables["headline"].to_dict(orient="records"), indent=1))
    out("\n" + (tables["headline"].to_markdown(index=False) if len(tables["headline"])
                else "no paired comparison"))
    out(f"\n{info['runs text']} Report: {page} ({time.perf_counter() - t_start:.0f} s in all)")
    result.update(tables=tables, report=page)
    return result


def _cost(cfg, srcs, runs, missing, name, sizes, n_classes, size, calibrate, out):
    """Print the cost of ``missing`` (counts, and with ``calibrate`` an estimate from timing each
    architecture with random weights); returns the estimate in seconds or None."""
    if not missing:
        out(f"nothing missing: the store holds all {len(runs):,} runs")
        return None
    c = cost.counts(cfg, missing, {name: sizes})
    out(f"cost of the {c['runs']:,} missing runs (of {len(runs):,}): {c['epochs']:,} epochs, "
        f"{c['train_images']:,} training images (head / unfrozen blocks on cached prefix "
        f"features), {c['eval_images']:,} evaluation images, {c['prefix_images']:,} images "
        f"through the frozen prefix (once per source and block count)")
    if not calibrate:
        return None
    arch_of = {s.key: s for s in srcs}
    cals = {}
    for s in srcs:
        if (s.arch, s.image_size) in cals:
            continue
        cals[(s.arch, s.image_size)] = cost.calibrate(
            s.arch, in_channels=s.in_channels or 3, image_size=s.image_size, target_channels=3,
            target_size=size, num_classes=n_classes, device=cfg.torch_device(),
            k=max(cfg.unfrozen_blocks), seconds=2.0)
    total, prefixes = 0.0, set()
    for r in missing:
        fast, epochs, val, test = cost._run_passes(cfg, r, {name: sizes})
        s = arch_of[r["source"]]
        cal = cals[(s.arch, s.image_size)]
        k = r["unfrozen_blocks"]
        total += r["n"] * epochs * cal.train_image(k, fast)
        total += (r["n"] + val + test) * cal.eval_image(k, fast)
        if fast and (r["source"], k) not in prefixes:
            prefixes.add((r["source"], k))
            total += (sizes[0] + sizes[1]) * cal.prefix_image(k)
    for (a, px), cal in cals.items():
        out(f"calibration: {a} at {px} px with random weights on {cal.device}: "
            f"{1 / cal.prefix_image(0):,.1f} images/s through the frozen prefix (k=0)")
    out(f"estimate: {cost.hours(total)} on {next(iter(cals.values())).device} (image passes "
        f"only; the head's logistic-regression fit and image decoding are not counted)")
    return total
