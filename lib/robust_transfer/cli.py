"""The command line: ``python -m robust_transfer <command>`` (or the ``robust-transfer`` script).

Commands (each takes the parameters of :func:`robust_transfer.config.resolve`, the same names
and checks as the notebooks' ``parameters`` cells):

``sources``  train or fetch the preset's sources once (before a fan-out of sweep workers).
``sweep``    run the preset's transfer runs (Section 1's grid and, with ``shape_targets``,
             Section 2's transfer experiment: :func:`sections`), or the part the parameters
             select, into a store; prints what it will cost first.
``status``   per source and target: runs done / missing / failed in the store, and what the
             missing ones will cost (counts per section and device-hours from a short
             calibration).
``book``     build the book (``python -m robust_transfer.book``).

Parameters: ``--preset NAME``, ``--config params.yaml`` (a YAML mapping of parameters, may
hold ``preset``), ``--set key=value`` (repeatable; the value is read as papermill's ``-p``
text is: ``--set targets='["digits"]' --set epochs=5``). Later ones win: the file, then each
``--set``; ``--preset`` over a preset in the file. A bad value stops with the message of
``config.resolve`` (naming the parameter) and exit status 2, before any compute.

``status --json`` and ``verdicts --json`` print one JSON document instead of tables.

Exit status: 0 done; 1 some sweep tasks failed (records in ``<store>/failed``), data / a
source is not available (not on this machine and downloads not allowed, or a download failed)
or two builds' verdicts differ; 2 bad parameters; 130 interrupted (Ctrl-C: a sweep says how
many runs it saved; the same command resumes).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from . import __version__, build, claims, config, cost, data, shape_study, sweep, transfer, zoo
from .store import Store

__all__ = ["main", "parameters", "resolve_args", "sections"]

DESCRIPTION = ("Adversarially-trained deep nets transfer better (Utrera et al., ICLR 2021): train or "
               "fetch sources, run the transfer sweep, see its status and cost, build the book.")


class UsageError(Exception):
    """A bad command line (exit status 2)."""


def _prog() -> str:
    return ("python -m robust_transfer" if Path(sys.argv[0]).name == "__main__.py"
            else "robust-transfer")


def _config_options(p: argparse.ArgumentParser, store: bool = True) -> None:
    g = p.add_argument_group("parameters (config.resolve)")
    g.add_argument("--preset", help="tiny, mini (default) or paper")
    g.add_argument("--config", metavar="FILE", type=Path,
                   help="YAML mapping of parameters (may hold preset)")
    g.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="sets",
                   help="one parameter, e.g. --set targets='[\"digits\"]' (repeatable)")
    if store:
        p.add_argument("--store", metavar="NAME",
                       help="results store: a name under the cache's results/ or a path "
                            "(default: the preset's name, as notebook 02)")


def _cost_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cost estimate")
    g.add_argument("--no-calibrate", action="store_true",
                   help="print counts only (no timing of the architecture on this device)")
    g.add_argument("--calibration-seconds", type=float, default=3.0, metavar="S",
                   help="time budget of the calibration per architecture (default 3)")
    g.add_argument("--calibration-batch", type=int, default=None, metavar="N",
                   help="images per timed step (default: about 0.25 s of forward on a CPU, "
                        "128 on a GPU)")


def parser() -> argparse.ArgumentParser:
    """The argument parser of :func:`main`."""
    ap = argparse.ArgumentParser(prog=_prog(), description=DESCRIPTION,
                                 epilog="'<command> --help' for each command's options")
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="command")
    p = sub.add_parser("sources", help="train or fetch the preset's sources")
    _config_options(p, store=False)
    p = sub.add_parser("sweep", help="run the transfer grid (or a part) into a store")
    _config_options(p)
    g = p.add_argument_group("executor (sweep.run)")
    g.add_argument("--executor", choices=sweep.EXECUTORS, default=None,
                   help="serial (default), processes (local), dask (LocalCluster or --scheduler)")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes / local Dask workers (default: every core)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. tcp://10.0.0.5:8786 (implies dask)")
    g.add_argument("--retries", type=int, default=2, metavar="N",
                   help="extra attempts of a failing task before it is recorded (default 2)")
    _cost_options(p)
    p = sub.add_parser("status", help="done / missing / failed runs and the cost of the rest")
    _config_options(p)
    _cost_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = sub.add_parser("book", help="build the book (python -m robust_transfer.book)")
    p.add_argument("--preset", default="mini")
    p.add_argument("--out", default="_build", type=Path)
    p.add_argument("--only", nargs="*", help="notebook stems to execute (default: all)")
    p.add_argument("--jobs", type=int, default=None,
                   help="notebooks executed at a time (default: 2, 1 on one core)")
    p = sub.add_parser("verdicts", help="the verdicts a built book states; with a second build, "
                                        "side by side (exit 1 if any differs); with --preset "
                                        "(no build), every claim part from the store")
    p.add_argument("builds", type=Path, nargs="*", metavar="BUILD",
                   help="book build folders (book --out): one lists its verdicts, two or more "
                        "(replication builds) are compared")
    _config_options(p, store=False)
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="processes for runs still missing from the store (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--record", metavar="PRESET",
                   help="with two or more builds of PRESET: write each claim part's labels to "
                        "claims.REPLICATION_FILE; a part whose label differs is then stated as "
                        "undecided by every later build")
    _compare_parser(sub)
    return ap


# ----------------------------------------------------------------------------- parameters
def parameters(config_file: Path | None = None, sets=(), preset: str | None = None
               ) -> tuple[str, dict]:
    """``(preset, overrides)`` from a YAML file, ``key=value`` texts and a preset name, for
    ``config.resolve(preset, **overrides)``; values of ``sets`` stay text (``resolve`` parses
    them as it parses papermill's)."""
    params: dict = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(Path(config_file).read_text())
        except OSError as err:
            raise UsageError(f"--config {config_file}: {err.strerror or err}") from None
        except yaml.YAMLError as err:
            raise UsageError(f"--config {config_file} is not valid YAML: {err}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise UsageError(f"--config {config_file} must hold a mapping of parameters "
                             f"(name: value), not a {type(loaded).__name__}")
        params.update(loaded or {})
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set {item!r} is not allowed; give KEY=VALUE, e.g. "
                             f"--set targets='[\"digits\"]'")
        params[name.strip().replace("-", "_")] = value
    file_preset = params.pop("preset", None)
    return str(preset or file_preset or "mini"), params


def resolve_args(args):
    """The validated ``Config`` of parsed ``args`` (``ValueError`` naming a bad parameter)."""
    preset, overrides = parameters(args.config, args.sets, args.preset)
    return config.resolve(preset, **overrides)


# ----------------------------------------------------------------------------- grid and cost
def _offline(cfg):
    """``cfg`` that never downloads: status only reads what is on this machine."""
    return dataclasses.replace(cfg, allow_download=False)


def sections(cfg) -> list[tuple[str, "config.Config"]]:
    """``[(label, config)]`` of the transfer runs of ``cfg``: Section 1's grid (``cfg``) and,
    when ``cfg.shape_targets`` is set, Section 2's transfer experiment
    (``shape_study.transfer_config``). One store holds both (notebooks 02 and 03 read it); a
    run in both (same source, target, n, seed and recipe fields) is one row."""
    out = [("Section 1", cfg)]
    if cfg.shape_targets:
        out.append(("Section 2", shape_study.transfer_config(cfg)))
    return out


def _unique(runs) -> list[dict]:
    """``runs`` with each run (by its store key) once, at its first place."""
    seen: dict = {}
    for r in runs:
        seen.setdefault(Store.key(r), r)
    return list(seen.values())


def _status_frame(cfg, store):
    """``(sweep.status frame, grid, parts, note)`` over every :func:`sections` grid (``parts``:
    ``[(label, config, its runs)]``, ``grid`` their union); when a target's data is not on this
    machine (and ``cfg`` may not download) the store cannot be compared: the grids are
    expanded without the data's hashes (each run with its recipe fields), every run counts as
    missing and ``note`` says so. Never downloads (each section's config :func:`_offline`)."""
    secs = [(label, _offline(c)) for label, c in sections(cfg)]
    try:
        parts = [(label, c, sweep.grid(c)) for label, c in secs]
        grid = _unique(r for *_, g in parts for r in g)
        return sweep.status(cfg, store, runs=grid), grid, parts, ""
    except data.DatasetUnavailable as err:
        parts = [(label, c, [{**r, **transfer.recipe_fields(c, r["recipe"])}
                             for r in sweep.cells(c)]) for label, c in secs]
        runs = _unique(r for *_, g in parts for r in g)
        frame = (pd.DataFrame(runs).groupby(["source", "target"], sort=False).size()
                 .rename("total").reset_index())
        frame["done"], frame["missing"], frame["failed"] = pd.NA, frame["total"], pd.NA
        frame["error"] = ""
        note = (f"{str(err).split(' (')[0]} and status never downloads. The store's rows are "
                f"keyed by the data's content hash, so done and failed are unknown ('?') and "
                f"every run counts as missing; image counts use the registry's split sizes "
                f"(data.info).")
        return frame, runs, parts, note


def _fmt(v) -> str:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return "?"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _table(frame, columns) -> str:
    """A plain-text table of ``frame``'s ``columns`` (numbers right-aligned)."""
    cells = [[_fmt(v) for v in row] for row in frame[columns].itertuples(index=False)]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    numeric = [c not in ("source", "target") for c in columns]

    def line(vals):
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(vals, widths, numeric)).rstrip()
    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


def _status_table(frame) -> str:
    cols = ["source", "target", "total", "done", "missing", "failed"]
    total = {c: (frame[c].sum() if frame[c].notna().all() else pd.NA) for c in cols[2:]}
    rows = pd.concat([frame[cols], pd.DataFrame([{"source": "all", "target": "", **total}])],
                     ignore_index=True)
    for c in cols[2:]:
        rows[c] = rows[c].map(lambda v: v if pd.isna(v) else int(v)).astype(object)
    return _table(rows, cols)


def _epochs_rule(cfg) -> str:
    return f"{cfg.epochs} per run" + (f", {cfg.long_epochs} above n = {cfg.long_epochs_n}"
                                      if cfg.long_epochs else "")


def cost_report(cfg, runs, total_runs: int, *, parts=None, done: int | None = None,
                calibrate=True, batch=None, seconds=3.0, observed=(), out=print) -> float | None:
    """Print the cost of ``runs`` (the missing runs of ``cfg``'s grids of ``total_runs``, the
    store holding ``done``): counts (per section of ``parts`` = ``[(label, config, runs)]``,
    :func:`_status_frame`'s, when there are several), the calibration, the device-hours, and
    the rate of the grids' finished runs (``observed``: their ``seconds``); returns the
    estimate in seconds (None without calibration or runs). Each run is counted with its own
    recipe fields (epochs, ...)."""
    if not runs:
        out(f"\nnothing missing: the store holds all {total_runs:,} runs of the grid")
        return None
    targets = list(dict.fromkeys(r["target"] for r in runs))
    sizes = cost.target_sizes(cfg, targets=targets)
    c = cost.counts(cfg, runs, sizes)
    fast = transfer.use_fast_path(cfg)
    held = ("unknown" if done is None else
            f"{done:,} of {total_runs:,} ({100 * done / max(total_runs, 1):.0f} %)")
    out(f"\ncost of the {c['runs']:,} missing runs (grid: {total_runs:,} runs; store holds {held})")
    recipes = sorted({r.get("recipe", cfg.recipe) for r in runs})
    missing = {Store.key(r) for r in runs}
    parts = [(label, c_i, [r for r in grid_i if Store.key(r) in missing], len(grid_i))
             for label, c_i, grid_i in parts or [("", cfg, runs)]]
    if len(parts) > 1:   # a run in two sections is counted in each line, once in the totals
        for label, c_i, mine, total in parts:
            ci = cost.counts(c_i, mine, sizes)
            out(f"  {label:<18} {ci['runs']:>16,}  missing runs of {total:,} (targets "
                f"{', '.join(c_i.targets)}; {ci['train_images']:,} training images; epochs "
                f"{_epochs_rule(c_i)})")
    out(f"  epochs             {c['epochs']:>16,}  ("
        + "; ".join(f"{label + ': ' if label else ''}{_epochs_rule(c_i)}"
                    for label, c_i, *_ in parts)
        + f"; recipes: {', '.join(recipes)})")
    out(f"  training images    {c['train_images']:>16,}  (n x epochs; "
        + ("forward + backward through the k unfrozen blocks and head on cached prefix features)"
           if fast and recipes == [cfg.recipe] else "augmentation where the recipe has it, "
           "forward through the frozen prefix, forward + backward through the k unfrozen "
           "blocks and head)"))
    out(f"  evaluation images  {c['eval_images']:>16,}  (forward: validation {c['val_images']:,}, "
        f"test set at the curve epochs {c['test_images']:,})")
    out(f"  head-init images   {c['init_images']:>16,}  (forward: n per run)")
    if fast:
        out(f"  prefix features    {c['prefix_images']:>16,}  (forward through the frozen "
            f"prefix: train + test split once per source, target and k; assumed not cached)")
    seconds_total = None
    if calibrate and runs:
        cals = cost.calibrate_config(cfg, batch=batch, seconds=seconds, targets=targets,
                                     sources=list(dict.fromkeys(r["source"] for r in runs)))
        for arch, cal in cals.items():
            rates = cost.throughput(cal, sorted(set(cfg.unfrozen_blocks)), fast)
            out(f"calibration: {arch} with random weights on {cal.device}, {cal.input}, batch "
                f"{cal.batch}, {cal.reps} timed rep(s) in {cal.seconds:.1f} s"
                + (", augmentation included" if cal.augment and not fast else "")
                + f"; backward/forward {cal.backward_ratio:.1f} measured at k={cal.k_measured},"
                  f" other k scaled by their blocks' forward times")
            out("  training images/s  " + "  ".join(f"k={k}: {r:,.1f}" for k, r in rates.items())
                + f"   evaluation images/s: {1 / cal.eval_image(0, False):,.1f}"
                  f" (full forward)")
        seconds_total = cost.estimate(cfg, runs, sizes, cals)
        device = next(iter(cals.values())).device
        unit = "CPU core-hours" if device.startswith("cpu") else "device-hours"
        h = seconds_total / 3600
        out("estimate: " + (f"{h:,.0f} {unit}" if h >= 10 else
                             f"{cost.hours(seconds_total)} ({h:.2f} {unit})")
            + f" on {device}"
            + (" (one per sweep worker: divide by --workers for the wall time)"
               if unit.startswith("CPU") else ", runs one after the other")
            + "; image passes only: per-step overhead, the head's logistic-regression fit, "
              "data loading and source training/download are not counted")
        if len(parts) > 1:
            out("  per section: " + "; ".join(
                f"{label} {cost.hours(cost.estimate(c_i, mine, sizes, cals))}"
                for label, c_i, mine, _ in parts if mine))
    if len(observed):
        mean = sum(observed) / len(observed)
        out(f"the grid's {len(observed):,} finished runs took {mean:.2f} s each on average (wall "
            f"time, all included): {cost.hours(mean * len(runs))} for the missing runs at that "
            f"rate")
    return seconds_total


# ----------------------------------------------------------------------------- commands
def _store(args, cfg):
    return Store(args.store or cfg.preset)


def _observed(store, grid) -> list:
    """Wall seconds of the finished runs of ``grid`` in ``store``."""
    if len(grid) == len(store.missing(grid)):
        return []
    return store.frame(grid)["seconds"].tolist()


def cmd_sources(args, cfg) -> int:
    ids = cfg.sources + cfg.textured_sources
    grid = zoo.load_grid(ids, allow_download=cfg.allow_download, progress=True, workers=None)
    for sid in ids:
        acc = grid[sid][1].get("clean_acc")
        print(f"{sid}: ready" + (f" (clean accuracy {100 * acc:.1f} %)" if acc else ""))
    return 0


def cmd_status(args, cfg) -> int:
    store = _store(args, cfg)
    frame, grid, parts, note = _status_frame(cfg, store)
    done = None if note else int(frame["done"].sum())
    missing = grid if note else store.missing(grid)
    report = dict(calibrate=not args.no_calibrate, batch=args.calibration_batch,
                  seconds=args.calibration_seconds, observed=[] if note else _observed(store, grid))
    if args.json:
        seconds = cost_report(cfg, missing, len(grid), parts=parts, done=done,
                              out=lambda text: None, **report)
        cells = json.loads(frame.to_json(orient="records"))   # NA (unknown) -> null
        sizes = cost.target_sizes(cfg, targets=list(dict.fromkeys(r["target"] for r in grid)))
        print(json.dumps(dict(
            preset=cfg.preset, store=str(store.path), note=note or None, runs=len(grid), done=done,
            missing=len(missing), cells=cells,
            sections={label: len(g) for label, _, g in parts},
            cost=cost.counts(cfg, missing, sizes) if missing else None,
            estimate_seconds=seconds), indent=1))
        return 0
    print(f"preset {cfg.preset}, store {store.path}")
    print(_status_table(frame))
    if note:
        print("note: " + note)
    failed = frame[frame["failed"].fillna(0) > 0] if "error" in frame else frame.iloc[:0]
    for row in failed.itertuples(index=False):
        print(f"failed: {row.source} / {row.target}: {row.error[:200]}")
    cost_report(cfg, missing, len(grid), parts=parts, done=done, **report)
    return 0


def cmd_sweep(args, cfg) -> int:
    store = _store(args, cfg)
    print(f"preset {cfg.preset}, store {store.path}")
    parts = [(label, c, sweep.grid(c)) for label, c in sections(cfg)]
    grid = _unique(r for *_, g in parts for r in g)
    try:
        return _sweep(args, cfg, store, grid, parts)
    except KeyboardInterrupt:
        saved = len(grid) - len(store.missing(grid))
        print(f"\ninterrupted: {saved:,} of {len(grid):,} runs saved; run the same command to "
              f"resume", file=sys.stderr)
        return 130


def _sweep(args, cfg, store, grid, parts) -> int:
    """The body of :func:`cmd_sweep`: every section's grid in turn (Ctrl-C is its caller's)."""
    missing = store.missing(grid)
    cost_report(cfg, missing, len(grid), parts=parts, done=len(grid) - len(missing),
                calibrate=not args.no_calibrate, batch=args.calibration_batch,
                seconds=args.calibration_seconds, observed=_observed(store, grid))
    if not missing:
        print("nothing to run: every run of the grid has a row")
        return 0
    print(flush=True)
    untrained = zoo.untrained(dict.fromkeys(r["source"] for r in missing))
    if untrained and args.scheduler:
        print(f"{len(untrained)} source(s) not trained yet: the Dask workers train each where it "
              f"is first needed ('sources' trains them here first)", flush=True)
    elif untrained:
        print(f"training {len(untrained)} missing source(s) first: {', '.join(untrained)}",
              flush=True)
        zoo.load_grid(untrained, allow_download=cfg.allow_download, workers=args.workers)
    ran, failed = 0, []
    for label, c, _ in parts:
        if len(parts) > 1:
            print(f"{label}:", flush=True)
        done = sweep.run(c, store, executor=args.executor, workers=args.workers,
                         scheduler=args.scheduler, retries=args.retries, progress=True,
                         out=lambda text: print(text, flush=True))
        ran += int(done)
        failed += list(getattr(done, "failed", []))
    left = len(store.missing(grid))
    print(f"ran {ran:,} runs; {len(grid) - left:,} of {len(grid):,} done, {left:,} missing"
          + (f", {len(failed)} task(s) failed (records in {store.path / 'failed'}; "
             f"'status' lists them)" if failed else ""))
    return 1 if failed else 0


def cmd_book(args) -> int:
    argv = ["--preset", args.preset, "--out", str(args.out)]
    if args.only:
        argv += ["--only", *args.only]
    if args.jobs is not None:
        argv += ["--jobs", str(args.jobs)]
    build.main(argv)
    return 0


def _compare_parser(sub) -> None:
    """Add the ``compare`` subcommand (``chapters.compare``, imported only when it runs: its
    report plots) to the subparsers ``sub``."""
    p = sub.add_parser("compare", help="does a robust source help my data set? transfer sources "
                                       "to an image folder and write an HTML report")
    p.add_argument("--target", required=True, metavar="folder:PATH",
                   help="PATH/{train,test}/<class>/* or PATH/<class>/* (split with --split-seed)")
    p.add_argument("--sources", nargs="+", required=True, metavar="[LABEL=]ID_OR_FILE",
                   help="zoo ids or checkpoint files (torchvision / robustness .pt, our "
                        ".safetensors); at least two")
    p.add_argument("--baseline", metavar="LABEL", default=None,
                   help="the source the others are compared with (default: the first natural "
                        "zoo source, else the first)")
    p.add_argument("--n", default="10,20,40,80,160,320,640", help="target training images per "
                   "run, comma-separated (default 10,...,640; too large ones are refused)")
    p.add_argument("--unfrozen-blocks", default="0", help="e.g. 0,3 (default 0: head only)")
    p.add_argument("--seeds", default="0,1,2", help="target-subset seeds (default 0,1,2)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--val-size", type=int, default=None,
                   help="validation images carved from the training split (default: 100, "
                        "fewer on small folders)")
    p.add_argument("--split-seed", type=int, default=0,
                   help="seed of the train/test split of a one-tree folder (recorded)")
    p.add_argument("--image-size", type=int, default=None,
                   help="px the folder is read at (default: the sources' largest input size)")
    p.add_argument("--arch", default="resnet50",
                   help="architecture of .pt/.pth source files (default resnet50; resnet18, 34, "
                        "101, 152 and resnet8 too)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--allow-download", action="store_true",
                   help="download zoo checkpoints (paper/..., salman2020/...) when missing")
    p.add_argument("--out", type=Path, default=Path("compare_report"),
                   help="folder of the report (index.html, rows.csv; default compare_report)")
    p.add_argument("--store", default=None, help="store name or path (default: one per folder)")
    p.add_argument("--executor", choices=sweep.EXECUTORS, default="serial")
    p.add_argument("--workers", type=int, default=None, metavar="N")
    p.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler")
    p.add_argument("--no-calibrate", action="store_true",
                   help="print the cost counts without timing the architecture")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_compare(args) -> int:
    """``compare``: sources transferred to the user's image folder, an HTML report
    (``robust_transfer.chapters.compare``)."""
    import matplotlib
    matplotlib.use("Agg")
    from .chapters import compare
    return compare.main_args(args)


def cmd_verdicts(args) -> int:
    if not args.builds:
        if args.preset is None and args.config is None:
            raise UsageError("give a book build folder (BUILD [OTHER]) or --preset / --config "
                             "to read the results store")
        t0 = time.perf_counter()
        records = claims.evaluate(resolve_args(args), workers=args.workers)
        if args.json:
            print(json.dumps(dict(claims=[c.to_dict() for c in records],
                                  seconds=time.perf_counter() - t0), indent=1))
        else:
            print(claims.table(records).drop(columns="claim").to_markdown(index=False))
            print("\n" + "\n".join(f"{c.title}: {c.label}" for c in records))
            print(f"\n({time.perf_counter() - t0:.1f} s)")
        return 0
    if args.preset or args.config or args.sets:
        raise UsageError("--preset / --config / --set read the results store; a build folder "
                         "states its own verdicts: give one or the other")
    if len(args.builds) == 1:
        verdicts = build.verdicts(args.builds[0])
        if args.json:
            print(json.dumps(dict(build=str(args.builds[0]), verdicts=verdicts), indent=1,
                             default=str))
        else:
            for name, value in verdicts.items():
                print(f"{name}: {value}")
        return 0
    table = build.compare_verdicts(*args.builds)
    checked = table.dropna(subset=["same"])
    if args.record:
        config.resolve(args.record)   # a known preset
        record = json.loads(claims.REPLICATION_FILE.read_text()) \
            if claims.REPLICATION_FILE.exists() else {}
        record[args.record] = build.replication_record(*args.builds)
        claims.REPLICATION_FILE.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(record[args.record]['parts'])} claim parts of "
              f"{len(args.builds)} builds in {claims.REPLICATION_FILE}", file=sys.stderr)
    if args.json:
        print(json.dumps(dict(builds=[str(b) for b in args.builds],
                              verdicts=json.loads(table.to_json(orient="records")),
                              same=int(checked.same.sum()), compared=len(checked)), indent=1))
    else:
        print(table.to_markdown(index=False))
        print(f"\n{int(checked.same.sum())} of {len(checked)} verdicts the same")
    return 0 if checked.same.all() else 1


def _check_executor(args) -> None:
    """The executor options' own errors (before any compute)."""
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers {args.workers} is not allowed; give an integer >= 1")
    if args.retries < 0:
        raise UsageError(f"--retries {args.retries} is not allowed; give an integer >= 0")
    if args.scheduler and args.executor not in (None, "dask"):
        raise UsageError(f"--scheduler needs --executor dask (got --executor {args.executor})")


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    ap = parser()
    args = ap.parse_args(argv)
    if args.command == "book":
        try:
            return cmd_book(args)
        except KeyboardInterrupt:
            print(f"\n{ap.prog} book: interrupted", file=sys.stderr)
            return 130
    if args.command == "compare":
        return cmd_compare(args)
    if args.command == "verdicts":
        try:
            return cmd_verdicts(args)
        except (UsageError, ValueError) as err:
            print(f"{ap.prog} {args.command}: error: {err}", file=sys.stderr)
            return 2
    try:
        if args.command == "sweep":
            _check_executor(args)
        cfg = resolve_args(args)
    except (UsageError, ValueError) as err:
        print(f"{ap.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2
    commands = {"sources": cmd_sources, "status": cmd_status, "sweep": cmd_sweep}
    try:
        return commands[args.command](args, cfg)
    except (data.DatasetUnavailable, zoo.SourceUnavailable) as err:
        print(f"{ap.prog} {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{ap.prog} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
