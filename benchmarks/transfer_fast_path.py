"""Cached-prefix fast path vs the plain path (full forward through frozen layers), in one run.

The grid is one (source, target) slice of the preset's sweep (``sweep.grid``: every n and
unfrozen_blocks of the preset, with its ``finetune_max_n`` limit) for a few subset seeds. Each
run goes through both paths of :func:`robust_transfer.transfer.finetune`, one torch thread.
The fast path's time includes computing and caching the frozen-prefix features (cold cache in a
temporary ``RT_CACHE_DIR``). Prints per unfrozen_blocks and in total: both times, the speed-up
ratio and the max test-accuracy difference (points).

    python benchmarks/transfer_fast_path.py [--preset mini] [--target digits] [--seeds 0 1]
        [--source ZOO_ID]
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from robust_transfer import config, data, sweep, transfer, zoo  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mini")
    ap.add_argument("--target", default="digits")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--source", default=None, help="zoo id (default: the preset's first source)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    name = args.source or config.resolve(args.preset).sources[0]
    cfg = config.resolve(args.preset, targets=[args.target], seeds=args.seeds, sources=[name])
    runs = sweep.grid(cfg)
    model = zoo.load(name, allow_download=cfg.allow_download)[0]  # trained if not cached
    channels, size = zoo.spec(name).in_channels, zoo.spec(name).image_size
    x_tr, y_tr, classes = data.load(args.target, "train", allow_download=cfg.allow_download)
    x_te, y_te, _ = data.load(args.target, "test", allow_download=cfg.allow_download)
    x_tr, x_te = data.to_source_format(x_tr, channels, size), data.to_source_format(x_te, channels, size)
    ks = sorted({r["unfrozen_blocks"] for r in runs})
    print(f"source {name}; target {args.target}; seeds {args.seeds}; epochs {cfg.epochs}; "
          f"batch {cfg.batch_size}; " + "; ".join(
              f"k={k}: n {sorted({r['n'] for r in runs if r['unfrozen_blocks'] == k})}" for k in ks))
    os.environ["RT_CACHE_DIR"] = tempfile.mkdtemp(prefix="rt_bench_")  # cold feature cache
    times = {(p, k): 0.0 for p in ("fast", "plain") for k in ks}
    diffs = {k: 0.0 for k in ks}
    for r in runs:
        k, seed, n = r["unfrozen_blocks"], r["seed"], r["n"]
        sub, val = data.train_subset(y_tr, n, cfg.val_size, seed)
        acc = {}
        for path in ("fast", "plain"):
            t0 = time.perf_counter()
            out = transfer.finetune(model, x_tr, y_tr, sub, val, x_te, y_te, k, cfg, seed,
                                    num_classes=len(classes), fast=path == "fast",
                                    feature_key=(name, args.target, "bench"))
            times[(path, k)] += time.perf_counter() - t0
            acc[path] = out["test_acc"]
        diffs[k] = max(diffs[k], abs(acc["fast"] - acc["plain"]))
    print(f"{'unfrozen_blocks':>15} {'runs':>5} {'fast (s)':>9} {'plain (s)':>9} {'speed-up':>9} "
          f"{'max |acc diff| (points)':>24}")
    for k in ks:
        f, p = times[("fast", k)], times[("plain", k)]
        print(f"{k:>15} {sum(r['unfrozen_blocks'] == k for r in runs):>5} {f:9.2f} {p:9.2f} "
              f"{p / f:8.1f}x {diffs[k]:24.2f}")
    f = sum(v for (path, _), v in times.items() if path == "fast")
    p = sum(v for (path, _), v in times.items() if path == "plain")
    print(f"{'all':>15} {len(runs):>5} {f:9.2f} {p:9.2f} {p / f:8.1f}x "
          f"{max(diffs.values()):24.2f}")


if __name__ == "__main__":
    main()
