"""Chapter 2, transfer gain vs sample size: its figures (accuracy and gain vs n, the paper's
gains next to ours, the two recipes side by side, accuracy vs epochs, the number of fine-tuned
blocks, L2 vs L-inf, validation curves), display tables, findings text and the headline values
the introduction's results table is built from.

Inputs are the engine's tables (:func:`analyses` collects them): ``stats.summary``
(accuracies, %), ``stats.deltas`` (paired robust-minus-natural gains, accuracy points,
Holm-corrected stars), the pre-specified tests ``stats.pooled_gain``, ``stats.gain_peak_drop``,
``stats.shrinkage`` and ``stats.gain_difference``, ``stats.compare`` (block counts, L2 vs L-inf),
``stats.curve_summary`` and ``reference.paper_deltas``. Nothing here computes a statistic; it
selects, formats and draws.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import claims, reference, stats
from ..claims import small_n_max, target_key as _key
from ..shape_study import SHAPE_TARGETS
from . import common
from .common import band, claim_values, colours, fmt_ci, log2_axis

__all__ = ["accuracy_vs_n", "paper_deltas", "validation_curves", "gain_table", "findings",
           "paper_comparison", "paper_gain_table", "ours_label", "runs_text", "budget_text",
           "validation_runs", "validation_text", "analyses", "small_n_max", "norm_pairs",
           "recipes_figure", "epochs_figure", "blocks_figure", "norms_figure", "tests_table",
           "recipes_text", "epochs_text", "blocks_text", "norms_text", "headline",
           "verdict_text", "results_row", "shrink_table", "curve_n", "last_epochs",
           "last_epochs_values", "VERDICTS", "PAPER_BLOCKS", "LAST_EPOCHS"]

#: the verdicts :func:`headline` can give the paper's transfer claim
VERDICTS = (*claims.CLAIM_LABELS, "not tested")

ACCURACY_RANGE = (0, 100)  # accuracy bands are clipped to it; gain bands are not


# --------------------------------------------------------------------------- figures


def accuracy_vs_n(summary: pd.DataFrame, deltas: pd.DataFrame | None = None, *,
                  unfrozen_blocks: int = 0, families=None, targets=None):
    """Figure: top row accuracy (%) vs n per target, one line per source family with its 95% CI
    band (clipped to 0-100); bottom row (if ``deltas``) the paired gain family - natural (points)
    with CI and a zero line. Returns the matplotlib Figure."""
    s = summary[summary["unfrozen_blocks"] == unfrozen_blocks]
    if families is not None:
        s = s[s["family"].isin(families)]
    targets = list(targets or dict.fromkeys(s["target"]))
    rows = 2 if deltas is not None else 1
    fig, axes = plt.subplots(rows, len(targets), figsize=(3.6 * len(targets), 3.0 * rows),
                             squeeze=False, sharex="col")
    colour = colours(s["source_label"].unique())
    for j, target in enumerate(targets):
        ax = axes[0, j]
        for label, g in s[s["target"] == target].groupby("source_label"):
            band(ax, g, label, colour[label], clip=ACCURACY_RANGE)
        ax.set_title(f"{target} ({unfrozen_blocks} unfrozen block{'s' if unfrozen_blocks != 1 else ''})",
                     fontsize=9)
        log2_axis(ax, s["n"])
        if j == 0:
            ax.set_ylabel("test accuracy (%)")
        if deltas is not None:
            d = deltas[(deltas["unfrozen_blocks"] == unfrozen_blocks) & (deltas["target"] == target)]
            if families is not None:
                d = d[d["family"].isin(families)]
            ax = axes[1, j]
            ax.axhline(0, color="k", lw=0.8)
            for label, g in d.groupby("source_label"):
                band(ax, g, label, colour.get(label, "grey"))
            log2_axis(ax, s["n"])
            if j == 0:
                ax.set_ylabel("gain vs natural (points)")
        axes[-1, j].set_xlabel("n (target training images)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, 1.02))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


PAPER_BLOCKS = 3  # the paper's main setting: layer4 of ResNet-50 (3 bottleneck blocks)


def ours_label(main: pd.DataFrame) -> str:
    """The title of our panel in :func:`paper_deltas`: "ours: <source> - natural, k unfrozen
    block(s) (the paper's 3 | the mini analogue of the paper's 3), recipe r" (just "ours: "
    when ``main`` is empty)."""
    if not len(main):
        return "ours: "
    k = int(main["unfrozen_blocks"].iloc[0])
    which = "the paper's 3" if k == PAPER_BLOCKS else f"analogue of the paper's {PAPER_BLOCKS}"
    recipe = f", recipe {main['recipe'].iloc[0]}" if "recipe" in main else ""
    return f"ours: {main['source_label'].iloc[0]} - natural,\n{_blocks_word(k)} ({which}){recipe}"


def paper_deltas(paper: pd.DataFrame, ours: pd.DataFrame | None = None, *, label: str | None = None):
    """Figure: the paper's robust-minus-natural gain vs n (one line per target, log2 axis; rows
    with ``full`` True, the whole training sets, are left out) and, if given and not empty, our
    gains (``ours``: columns target, n, mean, ci_low, ci_high; ``stats.main_gains``) on a second
    panel titled ``label`` (default :func:`ours_label`). Gains in points."""
    if ours is not None and not len(ours):
        ours = None
    if label is None:
        label = ours_label(ours if ours is not None else pd.DataFrame())
    if "full" in paper:
        paper = paper[~paper["full"]]
    fig, axes = plt.subplots(1, 2 if ours is not None else 1, figsize=(10, 3.4), squeeze=False)
    ax = axes[0, 0]
    ax.axhline(0, color="k", lw=0.8)
    for target, g in paper.groupby("target"):
        g = g.sort_values("n")
        ax.plot(g["n"], g["delta"], "o-", ms=3, label=target)
    log2_axis(ax, paper["n"])
    ax.set_title(f"paper: ImageNet ResNet-50, {paper.attrs.get('robust', 'robust')} - natural, "
                 "3 blocks", fontsize=9)
    ax.set_ylabel("gain (points)")
    ax.set_xlabel("n (target training images)")
    ax.legend(fontsize=7, ncol=2)
    if ours is not None:
        ax = axes[0, 1]
        ax.axhline(0, color="k", lw=0.8)
        colour = colours(ours["target"].unique())
        for target, g in ours.groupby("target"):
            band(ax, g, target, colour[target])
        log2_axis(ax, ours["n"])
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("n (target training images)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def validation_curves(frame: pd.DataFrame, *, max_runs: int = 12):
    """Figure: validation accuracy (%) vs epoch (0 = the logistic-regression head) for up to
    ``max_runs`` rows of ``frame`` (needs val_curve, best_epoch, source_label, target, n,
    unfrozen_blocks); the chosen epoch is marked."""
    frame = frame.head(max_runs)
    groups = list(frame.groupby(["target", "unfrozen_blocks"], sort=True))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups), 3.0), squeeze=False)
    for ax, ((target, k), g) in zip(axes[0], groups):
        for _, r in g.iterrows():
            curve = np.asarray(r["val_curve"], dtype=float)
            line, = ax.plot(np.arange(len(curve)), curve, lw=1.1,
                            label=f"{r['source_label']} n={r['n']}")
            ax.plot([r["best_epoch"]], [curve[r["best_epoch"]]], "o", color=line.get_color(), ms=4)
        ax.set_title(f"{target}, {k} unfrozen block(s)", fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[0, 0].set_ylabel("validation accuracy (%)")
    fig.tight_layout()
    return fig


def validation_runs(df: pd.DataFrame, cfg) -> pd.DataFrame:
    """The runs :func:`validation_curves` shows: the first source seed and subset seed on the
    first target, one natural and one L2 family, at each unfrozen_blocks' smallest and largest
    n (rows of ``Store.frame``, sorted by unfrozen_blocks, norm, n)."""
    pick = df[(df["source_seed"] == df["source_seed"].min()) & (df["seed"] == cfg.seeds[0])
              & (df["target"] == cfg.targets[0]) & df["norm"].isin(["natural", "l2"])]
    pick = pick[pick["family"].isin(pick.groupby("norm")["family"].first())]
    by_k = pick.groupby("unfrozen_blocks")["n"]
    pick = pick[(pick["n"] == by_k.transform("min")) | (pick["n"] == by_k.transform("max"))]
    return pick.sort_values(["unfrozen_blocks", "norm", "n"])


# --------------------------------------------------------------------------- tables and text


def runs_text(grid: list, df: pd.DataFrame, ran: int, seconds: float, store_path) -> str:
    """Markdown: how many runs the configuration has (per recipe and unfrozen_blocks), how many
    were computed now in ``seconds`` and how many read from the store at ``store_path`` (named
    by its last folder, never the machine's path)."""
    k_runs = df.groupby(["recipe", "unfrozen_blocks"]).size()
    return (
        f"**{len(grid)} runs** in this configuration ("
        + ", ".join(f"{v} {r} with {k} unfrozen blocks" for (r, k), v in k_runs.items())
        + f"); {ran} computed now in {seconds:.0f} s, {len(grid) - ran} read from the results "
        f"store `{Path(*Path(store_path).parts[-2:]).as_posix()}` (in the cache folder, "
        "`RT_CACHE_DIR`).")


def budget_text(df: pd.DataFrame, cfg) -> str:
    """Markdown: runs, mean seconds and CPU-minutes per recipe and unfrozen_blocks, and which
    sources and n get fine-tuned runs (``cfg.finetune_sources``, ``cfg.finetune_max_n``)."""
    t = df.groupby(["recipe", "unfrozen_blocks"])["seconds"].agg(["count", "mean", "sum"])
    ft = [s for s in cfg.sources if not cfg.finetune_sources or s in cfg.finetune_sources]
    return (
        "**The compute budget.** " + "; ".join(
            f"{r} with {k} unfrozen blocks: {int(v['count'])} runs, {v['mean']:.2f} s each "
            f"({v['sum'] / 60:.1f} CPU-minutes)" for (r, k), v in t.iterrows()) + ". "
        "Head-only runs of our recipe train a linear head on cached pooled features, so every "
        "source gets them; a fine-tuned block costs far more per run, and the authors' recipe "
        "runs the whole network at every step (augmentation, BatchNorm in train mode), so "
        f"`unfrozen_blocks > 0` runs and the other recipe are limited to {len(ft)} of the "
        f"{len(cfg.sources)} sources (`finetune_sources`: " + (", ".join(f"`{s}`" for s in ft)) + ")"
        + (f" and to n <= {cfg.finetune_max_n} (`finetune_max_n`)" if cfg.finetune_max_n else "")
        + (f"; the other recipe runs at n = {', '.join(map(str, cfg.compare_n_values))}"
           if cfg.compare_recipe and cfg.compare_n_values else "")
        + ". Set `finetune_sources=[]` and `finetune_max_n=0` to fine-tune everything.")


def validation_text(df: pd.DataFrame) -> str:
    """Markdown: how far the chosen epoch's validation accuracy is above epoch 0 (the linear fit)
    on average over the runs of ``df``, and the largest / median drop below epoch 0 (points)."""
    drops = df.apply(lambda r: r["val_curve"][0] - min(r["val_curve"]), axis=1)
    return (
        f"Over all {len(df)} runs, the chosen epoch's validation accuracy is on average "
        f"{(df['val_acc'] - df['val_curve'].str[0]).mean():+.1f} points above epoch 0 (the linear "
        f"fit); the largest drop of any run below its epoch-0 value is {drops.max():.0f} points "
        f"(median {drops.median():.0f}; validation sets have {int(df['n_val'].iloc[0])} images, so one "
        f"image is {100 / df['n_val'].iloc[0]:.0f} point(s)).")


def paper_gain_table(robust: str = "l2_3") -> pd.DataFrame:
    """The paper's gains (points, one decimal): one line per target, columns n and ``full``."""
    return reference.paper_gain_table(robust).round(1)


def gain_table(delta_table: pd.DataFrame) -> pd.DataFrame:
    """Gains as text "mean [low, high]" (points; ``*`` = CI excludes 0), one line per
    (target, unfrozen_blocks, source), one column per n."""
    if delta_table.empty:
        return pd.DataFrame()
    t = delta_table.assign(
        cell=[f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}]" + ("*" if sig else "")
              for m, lo, hi, sig in zip(delta_table["mean"], delta_table["ci_low"],
                                        delta_table["ci_high"], delta_table["significant"])])
    label = "source_label" if "source_label" in t else "family"
    return t.pivot_table(index=["target", "unfrozen_blocks", label], columns="n", values="cell",
                         aggfunc="first")


def findings(delta_table: pd.DataFrame, shrink_table: pd.DataFrame, families=None) -> str:
    """Markdown sentences computed from ``stats.deltas`` (Holm-corrected per-cell stars) and
    ``stats.shrinkage`` (the pre-specified slope test) tables, per (target, recipe, block
    count, family)."""
    if delta_table.empty:
        return "No paired robust-vs-natural comparison in these results."
    lines = []
    families = families or list(dict.fromkeys(delta_table["family"]))
    for (target, recipe, k), g in delta_table.groupby(["target", "recipe", "unfrozen_blocks"],
                                                      sort=False):
        for family in families:
            f = g[g["family"] == family].sort_values("n")
            if f.empty:
                continue
            label = f["source_label"].iloc[0] if "source_label" in f else family
            up = f.loc[f["direction"] > 0, "n"].tolist()
            down = f.loc[f["direction"] < 0, "n"].tolist()
            best = f.loc[f["mean"].idxmax()]
            s = (f"- **{target}, recipe {recipe}, {k} unfrozen block(s), {label} vs natural**: "
                 f"gain significantly > 0 (Holm-corrected) at {len(up)} of {len(f)} sample sizes"
                 + (f" (n = {', '.join(map(str, up))})" if up else "")
                 + (f", significantly < 0 at n = {', '.join(map(str, down))}" if down else "")
                 + f"; largest mean gain {best['mean']:+.1f} points "
                 f"[{best['ci_low']:+.1f}, {best['ci_high']:+.1f}] at n = {int(best['n'])}")
            if (f["ci_basis"] == "subset seeds only").any():
                s += (" (one source seed: these CIs cover subset seeds only, miss the "
                      "source-seed variance and are too narrow)")
            sh = shrink_table[(shrink_table["target"] == target) & (shrink_table["family"] == family)
                              & (shrink_table["unfrozen_blocks"] == k)
                              & (shrink_table["recipe"] == recipe)] if len(shrink_table) else []
            if len(sh):
                r = sh.iloc[0]
                trend = ("falls" if r["shrinks"] else
                         "rises" if r["slope_ci_low"] > 0 else "does not change significantly")
                s += (f"; from n = {r['n_small']} to n = {r['n_large']} the gain {trend} "
                      f"({r['gain_small']:+.1f} -> {r['gain_large']:+.1f}; slope "
                      f"{r['slope']:+.2f} points per doubling of n "
                      f"[{r['slope_ci_low']:+.2f}, {r['slope_ci_high']:+.2f}])")
            lines.append(s + ".")
    return "\n".join(lines)


def paper_comparison(main: pd.DataFrame, paper: pd.DataFrame) -> str:
    """Markdown comparing the paper's gain trend (``reference.paper_deltas()``) with ours
    (``stats.main_gains``): sizes of the gains at small and large n, and how many are
    significant."""
    sub = paper[~paper["full"]] if "full" in paper else paper
    ends = sub.sort_values("n").groupby("target")["delta"].agg(
        small=lambda v: v.iloc[:3].mean(), large=lambda v: v.iloc[-3:].mean())
    text = (f"**Paper.** The paper's robust source ({paper.attrs.get('robust', 'robust')}) gains "
            f"{ends['small'].mean():+.1f} points on average over its three smallest n and "
            f"{ends['large'].mean():+.1f} over its three largest subsets; the gain is larger at "
            f"small n on {int((ends['small'] > ends['large']).sum())} of {len(ends)} targets. ")
    if main.empty:
        return text + "**Ours.** This configuration has no robust family paired with a natural one."
    label, k = main["source_label"].iloc[0], main["unfrozen_blocks"].iloc[0]
    lo, hi = main[main["n"] == main["n"].min()], main[main["n"] == main["n"].max()]
    return text + (
        f"**Ours** ({label} vs natural, {k} unfrozen block(s)): the gain is significantly positive "
        f"in {int((main['direction'] > 0).sum())} and significantly negative in "
        f"{int((main['direction'] < 0).sum())} of {len(main)} (target, n) cells; averaged over "
        f"targets it is {lo['mean'].mean():+.1f} points at n = {lo['n'].iloc[0]} and "
        f"{hi['mean'].mean():+.1f} at n = {hi['n'].iloc[0]}"
        + (" (per target: " + "; ".join(
            f"{t} {a:+.1f} -> {b:+.1f}" for t, a, b in zip(
                lo["target"], lo["mean"], hi.set_index("target").loc[lo["target"], "mean"]))
           + ")." if set(lo["target"]) == set(hi["target"]) else "."))


# --------------------------------------------------------------------------- the analyses


def analyses(df: pd.DataFrame, cfg) -> dict:
    """Every table the chapter shows, from the store's rows ``df`` (``Store.frame``): ``summary``,
    ``deltas`` (Holm-corrected stars), the pre-specified tests ``pooled`` (gain pooled over
    n <= :func:`small_n_max`), ``drop`` (the head-only gain's held-out peak minus its value at
    the largest n, the whole pool where the grid reaches it: ``stats.gain_peak_drop``) and
    ``shrink`` (slope of the gain on log2 n, described beside), ``main`` (the main
    comparison's gains per recipe, ``stats.main_gains`` at ``cfg.main_blocks``), ``recipes``
    (the gain under ``compare_recipe`` minus under ``recipe``), ``blocks`` (every block count
    minus 0 blocks, paired), ``norms`` (L-inf minus L2, paired), ``curves`` (test accuracy
    per epoch) and ``claims`` (``claims.section1`` in ``recipe``, then in ``compare_recipe``;
    None where nothing is paired)."""
    out = {"summary": stats.summary(df), "deltas": stats.deltas(df),
           "pooled": stats.pooled_gain(df, small_n_max(cfg)), "shrink": stats.shrinkage(df),
           "drop": stats.gain_peak_drop(df[df["unfrozen_blocks"] == 0],
                                        pools=claims.pools(cfg))}
    out["main"] = stats.main_gains(out["deltas"], cfg.main_blocks)
    out["recipes"] = (stats.gain_difference(df, "recipe", cfg.compare_recipe, cfg.recipe)
                      if cfg.compare_recipe and cfg.compare_recipe in set(df["recipe"])
                      else pd.DataFrame())
    ks = sorted(set(df["unfrozen_blocks"]) - {0})
    out["blocks"] = pd.concat([stats.compare(df, "unfrozen_blocks", k, 0) for k in ks],
                              ignore_index=True) if ks and 0 in set(df["unfrozen_blocks"]) \
        else pd.DataFrame()
    out["norm_pairs"] = norm_pairs(out["summary"])
    out["norms"] = pd.concat([stats.compare(df, "family", a, b) for a, b in out["norm_pairs"]],
                             ignore_index=True) if out["norm_pairs"] else pd.DataFrame()
    out["curves"] = stats.curve_summary(df)
    out["claims"] = [claims.section1(df, cfg)] + (
        [claims.section1(df, cfg, cfg.compare_recipe)] if len(out["recipes"]) else [])
    return out


def norm_pairs(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """The Fig. 2.6 comparisons (a, b): each L-inf family with at least as many source seeds as
    the best-seeded L2 family against that L2 family, and L-inf families against each other
    (larger eps minus smaller, the paper's 8/255 vs 4/255)."""
    fam = summary.groupby("family").agg(norm=("norm", "first"), eps=("eps", "first"),
                                        seeds=("n_source_seeds", "max"))
    l2 = fam[fam["norm"] == "l2"].sort_values(["seeds", "eps"], ascending=[False, True])
    linf = fam[fam["norm"] == "linf"].sort_values("eps")
    pairs = []
    if len(l2):
        pairs += [(f, l2.index[0]) for f, r in linf.iterrows() if r["seeds"] >= l2["seeds"].iloc[0]]
    pairs += [(b, a) for a, b in zip(linf.index, linf.index[1:])]
    return pairs


# --------------------------------------------------------------------------- new figures


def _blocks_word(k) -> str:
    return f"{int(k)} unfrozen block{'s' if int(k) != 1 else ''}"


def recipes_figure(summary: pd.DataFrame, deltas: pd.DataFrame, family: str, blocks: int):
    """Figure 2.3: both recipes side by side at ``blocks`` unfrozen blocks: top row accuracy (%)
    of the natural family and ``family`` per recipe (solid: ours, dashed: authors), bottom row
    the paired gain ``family - natural`` per recipe, one column per target; 95% CI bands."""
    s = summary[(summary["unfrozen_blocks"] == blocks)]
    d = deltas[(deltas["unfrozen_blocks"] == blocks) & (deltas["family"] == family)] \
        if len(deltas) else deltas
    nat = s[s["norm"] == "natural"]["family"].unique()
    s = s[s["family"].isin([family, *nat])]
    targets = list(dict.fromkeys(s["target"]))
    recipes = sorted(s["recipe"].unique())
    fig, axes = plt.subplots(2, len(targets), figsize=(3.6 * len(targets), 5.6), squeeze=False,
                             sharex="col")
    colour = colours(recipes)
    for j, t in enumerate(targets):
        ns = s[s["target"] == t]["n"]
        for (recipe, label), g in s[s["target"] == t].groupby(["recipe", "source_label"]):
            nat_line = g["norm"].iloc[0] == "natural"
            g = g.sort_values("n")
            axes[0, j].plot(g["n"], g["mean"], "o--" if nat_line else "o-", ms=3,
                            color=colour[recipe], label=f"{label}, {recipe}")
            axes[0, j].fill_between(g["n"], g["ci_low"].clip(0, 100), g["ci_high"].clip(0, 100),
                                    color=colour[recipe], alpha=0.12, lw=0)
        axes[0, j].set_title(f"{t} ({_blocks_word(blocks)})", fontsize=9)
        axes[1, j].axhline(0, color="k", lw=0.8)
        for recipe, g in d[d["target"] == t].groupby("recipe"):
            band(axes[1, j], g, f"gain, {recipe}", colour[recipe])
        for ax in axes[:, j]:
            log2_axis(ax, ns)
        axes[1, j].set_xlabel("n (target training images)")
    axes[0, 0].set_ylabel("test accuracy (%)\n(dashed: natural)")
    axes[1, 0].set_ylabel("robust - natural (points)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 4), fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, 1.03))
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


def epochs_figure(curves: pd.DataFrame, n: int, blocks: int, families, targets=None):
    """Figure 2.4 (the paper's Fig. 3): mean test accuracy (%) vs fine-tuning epoch at ``n``
    images and ``blocks`` unfrozen blocks for ``families`` (natural and robust), one panel per
    (target, recipe); 95% CI bands over source and subset seeds. Report only: no run's reported
    accuracy was chosen from these curves."""
    c = curves[(curves["n"] == n) & (curves["unfrozen_blocks"] == blocks)
               & curves["family"].isin(families)]
    panels = [(t, r) for t in (targets or dict.fromkeys(c["target"]))
              for r in sorted(c["recipe"].unique()) if len(c[(c.target == t) & (c.recipe == r)])]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(3.3 * max(len(panels), 1), 3.0),
                             squeeze=False, sharey=True)
    colour = colours(c["source_label"].unique())
    for ax, (t, r) in zip(axes[0], panels):
        for label, g in c[(c["target"] == t) & (c["recipe"] == r)].groupby("source_label"):
            band(ax, g, label, colour[label], x="epoch", clip=ACCURACY_RANGE)
        ax.set_title(f"{t}, recipe {r}\nn = {n}, {_blocks_word(blocks)}", fontsize=9)
        ax.set_xlabel("fine-tuning epoch")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("test accuracy (%)")
    if panels:
        axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def blocks_figure(summary: pd.DataFrame, block_diffs: pd.DataFrame, families, recipe: str,
                  targets=None):
    """Figure 2.5 (the paper's Fig. 4): top row test accuracy (%) vs the number of fine-tuned
    blocks, one line per n, per family (natural, robust) and target; bottom row the paired
    difference k blocks minus 0 blocks (points) with 95% CIs. ``recipe`` only."""
    s = summary[(summary["recipe"] == recipe) & summary["family"].isin(families)]
    d = block_diffs[(block_diffs["recipe"] == recipe) & block_diffs["family"].isin(families)] \
        if len(block_diffs) else block_diffs
    ks = sorted(s["unfrozen_blocks"].unique())
    # the n values every block count was run at
    ns = sorted(set.intersection(*[set(g["n"]) for _, g in s.groupby("unfrozen_blocks")])) \
        if len(s) else []
    targets = [t for t in (targets or dict.fromkeys(s["target"]))
               if len(s[(s.target == t) & (s.unfrozen_blocks == ks[-1])])] if ks else []
    panels = [(t, f) for t in targets for f in families]
    fig, axes = plt.subplots(2, max(len(panels), 1), figsize=(3.3 * max(len(panels), 1), 5.4),
                             squeeze=False, sharex=True)
    colour = colours([str(n) for n in ns])
    for j, (t, f) in enumerate(panels):
        g = s[(s["target"] == t) & (s["family"] == f) & s["n"].isin(ns)]
        for n, h in g.groupby("n"):
            band(axes[0, j], h, f"n = {n}", colour[str(n)], x="unfrozen_blocks", clip=ACCURACY_RANGE)
        label = g["source_label"].iloc[0] if len(g) else f
        axes[0, j].set_title(f"{t}: {label}", fontsize=9)
        axes[1, j].axhline(0, color="k", lw=0.8)
        for n, h in d[(d["target"] == t) & (d["family"] == f) & d["n"].isin(ns)].groupby("n"):
            band(axes[1, j], h, f"n = {n}", colour[str(n)], x="unfrozen_blocks")
        axes[1, j].set_xlabel("unfrozen blocks")
        axes[1, j].set_xticks(ks)
        for ax in axes[:, j]:
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("test accuracy (%)")
    axes[1, 0].set_ylabel("k blocks - 0 blocks (points)")
    if panels:
        axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def norms_figure(deltas: pd.DataFrame, norm_diffs: pd.DataFrame, pairs, blocks: int):
    """Figure 2.6 (the paper's Fig. 5): for each pair (a, b) of ``pairs``, the gains over natural
    of both families (top) and their paired difference a - b (bottom), vs n at ``blocks``
    unfrozen blocks, one column per (pair, target); 95% CIs over source and subset seeds."""
    d = deltas[deltas["unfrozen_blocks"] == blocks] if len(deltas) else deltas
    nd = norm_diffs[norm_diffs["unfrozen_blocks"] == blocks] if len(norm_diffs) else norm_diffs
    recipe = sorted(d["recipe"].unique())[0] if len(d) else None
    panels = [(a, b, t) for a, b in pairs
              for t in dict.fromkeys(d[d["family"] == a]["target"])] if len(d) else []
    fig, axes = plt.subplots(2, max(len(panels), 1), figsize=(3.4 * max(len(panels), 1), 5.4),
                             squeeze=False, sharex="col")
    for j, (a, b, t) in enumerate(panels):
        g = d[(d["target"] == t) & d["family"].isin([a, b]) & (d["recipe"] == recipe)]
        colour = colours(g["source_label"].unique())
        axes[0, j].axhline(0, color="k", lw=0.8)
        for label, h in g.groupby("source_label"):
            band(axes[0, j], h, label, colour[label])
        axes[0, j].set_title(f"{t} ({_blocks_word(blocks)})", fontsize=9)
        axes[0, j].legend(fontsize=7)
        h = nd[(nd["target"] == t) & (nd["family"] == a) & (nd["b_family"] == b)
               & (nd["recipe"] == recipe)]
        axes[1, j].axhline(0, color="k", lw=0.8)
        if len(h):
            band(axes[1, j], h, f"{h['source_label'].iloc[0]} - {b.split('/', 2)[-1]}", "C3")
            axes[1, j].legend(fontsize=7)
        for ax in axes[:, j]:
            log2_axis(ax, g["n"] if len(g) else [1])
        axes[1, j].set_xlabel("n (target training images)")
    axes[0, 0].set_ylabel("gain vs natural (points)")
    axes[1, 0].set_ylabel("paired difference (points)")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- new tables and text


def tests_table(pooled: pd.DataFrame, shrink: pd.DataFrame, families=None) -> pd.DataFrame:
    """The pre-specified tests, one line per claim (target, recipe, family, unfrozen_blocks):
    the gain pooled over the small-n range and the slope of the gain per doubling of n, each
    "mean [low, high]" (points; ``*`` = CI excludes 0)."""
    def cell(m, lo, hi):
        return f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}]" + ("*" if lo > 0 or hi < 0 else "")
    keys = ["target", "recipe", "unfrozen_blocks", "source_label"]
    p = pooled.assign(**{"gain, small n": [cell(*r) for r in zip(
        pooled["mean"], pooled["ci_low"], pooled["ci_high"])]}) if len(pooled) else pooled
    s = shrink.assign(**{"slope per doubling": [f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                                                + ("*" if lo > 0 or hi < 0 else "")
                         for m, lo, hi in zip(shrink["slope"], shrink["slope_ci_low"],
                                              shrink["slope_ci_high"])]}) if len(shrink) else shrink
    if families is not None:
        p = p[p["family"].isin(families)] if len(p) else p
        s = s[s["family"].isin(families)] if len(s) else s
    if not len(p):
        return pd.DataFrame()
    p = p.assign(**{"n pooled": [f"{a}-{b}" for a, b in zip(p["n_from"], p["n_to"])]})
    t = p[keys + ["n pooled", "gain, small n"]]
    if len(s):
        t = t.merge(s[keys + ["slope per doubling"]], on=keys, how="left")
    return t.set_index(keys)


def recipes_text(diffs: pd.DataFrame, family: str) -> str:
    """Markdown: per target, the robust gain under each recipe and the pre-specified
    difference (compare recipe minus main recipe, pooled over the shared n) with its CI."""
    d = diffs[diffs["family"] == family] if len(diffs) else diffs
    if not len(d):
        return "Only one recipe in these results: nothing to compare."
    r0 = d.iloc[0]
    lines = [f"**Does the robust advantage depend on the recipe?** Pre-specified test: the paired "
             f"gain ({r0['source_label']} - natural, {_blocks_word(r0['unfrozen_blocks'])}) under "
             f"the `{r0['recipe']}` recipe minus the same gain under `{r0['b_recipe']}`, per "
             f"source-seed and subset-seed pair averaged over "
             + (f"n = {r0['n_from']}-{r0['n_to']} ({r0['n_values']} values)"
                if r0["n_values"] > 1 else f"n = {r0['n_from']}")
             + ", with the crossed-seed 95% CI:"]
    for _, r in d.iterrows():
        lines.append(f"- **{r['target']}**: gain {r['gain_a']:+.1f} ({r['recipe']}) vs "
                     f"{r['gain_b']:+.1f} ({r['b_recipe']}); difference "
                     f"{fmt_ci(r['mean'], r['ci_low'], r['ci_high'], signed=True)}: "
                     + ("the gain is significantly larger with the " + r["recipe"] + " recipe"
                        if r["direction"] > 0 else
                        "the gain is significantly smaller with the " + r["recipe"] + " recipe"
                        if r["direction"] < 0 else "no significant dependence on the recipe")
                     + ".")
    return "\n".join(lines)


#: how many of a run's last evaluated epochs :func:`last_epochs` reports (has it plateaued?)
LAST_EPOCHS = 3


def curve_n(cfg) -> int:
    """The n of Fig. 2.4: the largest n both recipes ran (``compare_n_values``, else
    ``n_values``)."""
    return max(cfg.compare_n_values or cfg.n_values)


def _curves_at(curves: pd.DataFrame, n: int, blocks: int, families) -> pd.DataFrame:
    return curves[(curves["n"] == n) & (curves["unfrozen_blocks"] == blocks)
                  & curves["family"].isin(families)] if len(curves) else curves


def last_epochs(curves: pd.DataFrame, n: int, blocks: int, families,
                k: int = LAST_EPOCHS) -> pd.DataFrame:
    """The mean test accuracy (%, on the curve's test images) of each family at the last ``k``
    evaluated epochs of each (target, recipe) of Fig. 2.4: columns target, recipe,
    source_label, epoch, mean, ci_low, ci_high (empty without curves)."""
    c = _curves_at(curves, n, blocks, families)
    if c.empty:
        return pd.DataFrame(columns=["target", "recipe", "source_label", "epoch", "mean",
                                     "ci_low", "ci_high"])
    last = c.groupby(["target", "recipe"])["epoch"].transform(
        lambda e: e.isin(sorted(e.unique())[-k:]))
    cols = ["target", "recipe", "source_label", "epoch", "mean", "ci_low", "ci_high"]
    return c[last.astype(bool)][cols].sort_values(["target", "recipe", "source_label", "epoch"],
                                                  ignore_index=True)


def _last_epochs_text(g: pd.DataFrame) -> str:
    """"natural 45.2, 45.5, 45.4%; L2 ε=1 ... (epochs 60, 80, 100)" for one (target, recipe)
    of :func:`last_epochs`."""
    per = "; ".join(f"{label} " + ", ".join(f"{m:.1f}" for m in h["mean"]) + "%"
                    for label, h in g.groupby("source_label", sort=True))
    return f"{per} (epochs {', '.join(str(int(e)) for e in sorted(g['epoch'].unique()))})"


def last_epochs_values(curves: pd.DataFrame, n: int, blocks: int, families) -> dict:
    """Glue-able texts of :func:`last_epochs`: ``last_epochs_<target>_<recipe>`` (see
    :func:`_last_epochs_text`), one per (target, recipe) of Fig. 2.4."""
    return {f"last_epochs_{_key(t)}_{r}": _last_epochs_text(g)
            for (t, r), g in last_epochs(curves, n, blocks, families).groupby(["target", "recipe"])}


def epochs_text(curves: pd.DataFrame, n: int, blocks: int, families) -> str:
    """Markdown: for each (target, recipe) of Fig. 2.4, the epoch by which each family first
    reaches 95% of its final mean accuracy, the final accuracies, and each family's accuracy at
    the last :data:`LAST_EPOCHS` evaluated epochs (flat: the recipe has plateaued)."""
    c = _curves_at(curves, n, blocks, families)
    if c.empty:
        return "No per-epoch test accuracy in these results."
    last = last_epochs(curves, n, blocks, families)
    lines = []
    for (t, r), g in c.groupby(["target", "recipe"], sort=False):
        parts = []
        for label, h in g.groupby("source_label"):
            h = h.sort_values("epoch")
            final = h["mean"].iloc[-1]
            first = int(h.loc[h["mean"] >= 0.95 * final, "epoch"].iloc[0])
            parts.append(f"{label} reaches 95% of its final {final:.1f}% by epoch {first}")
        tail = last[(last["target"] == t) & (last["recipe"] == r)]
        lines.append(f"- {t}, recipe `{r}` ({int(g['epoch'].max())} epochs): " + "; ".join(parts)
                     + f"; at its last {tail['epoch'].nunique()} evaluated epochs: "
                     + _last_epochs_text(tail) + ".")
    return "\n".join(lines)


def shrink_table(drop: pd.DataFrame, families=None) -> pd.DataFrame:
    """The shrinkage test of the verdict (``stats.gain_peak_drop`` on the head-only runs), one
    line per (target, recipe, source): the peak n, the gain there and at the largest n, and the
    drop with its 95% CI, in points and in relative error reduction (``(err_nat - err_rob) /
    err_nat``, % of the natural source's errors); ``*`` = CI above 0."""
    if not len(drop):
        return pd.DataFrame()
    d = drop[drop["family"].isin(families)] if families is not None else drop

    def cell(m, lo, hi, scale=1.0, fmt="+.1f"):
        return (f"{scale * m:{fmt}} [{scale * lo:{fmt}}, {scale * hi:{fmt}}]"
                + ("*" if lo > 0 else ""))
    t = pd.DataFrame({
        "target": d["target"], "recipe": d["recipe"], "source": d["source_label"],
        "peak n": d["n_peak"], "largest n": d["n_max"],
        "gain at peak / at largest n": [f"{a:+.1f} / {b:+.1f}"
                                        for a, b in zip(d["gain_peak"], d["gain_max"])],
        "drop (points)": [cell(*r) for r in zip(d["drop"], d["drop_ci_low"], d["drop_ci_high"])],
        "peak n (error reduction)": d["n_peak_rel"],
        "error reduction at peak / at largest n (%)": [
            f"{100 * a:+.0f} / {100 * b:+.0f}" for a, b in zip(d["rer_peak"], d["rer_max"])],
        "drop (error reduction, %)": [cell(*r, scale=100, fmt="+.0f") for r in zip(
            d["drop_rel"], d["drop_rel_ci_low"], d["drop_rel_ci_high"])],
        "basis": [f"{b} ({s} x {j})" for b, s, j in zip(d["ci_basis"], d["n_source_seeds"],
                                                       d["n_subset_seeds"])]})
    return t.set_index(["target", "recipe", "source"])


def blocks_text(summary: pd.DataFrame, block_diffs: pd.DataFrame, families, recipe: str) -> str:
    """Markdown: per (target, family) the best block count at each n (highest mean accuracy)
    and which block counts are significantly better / worse than 0 blocks (paired CI)."""
    s = summary[(summary["recipe"] == recipe) & summary["family"].isin(families)]
    if s.empty or s["unfrozen_blocks"].nunique() < 2:
        return "Only one block count in these results."
    ns = sorted(set.intersection(*[set(g["n"]) for _, g in s.groupby("unfrozen_blocks")]))
    top = s["unfrozen_blocks"].max()
    lines = []
    for (t, f), g in s[s["n"].isin(ns)].groupby(["target", "family"], sort=False):
        if top not in set(g["unfrozen_blocks"]):
            continue
        best = g.loc[g.groupby("n")["mean"].idxmax()].sort_values("n")
        d = block_diffs[(block_diffs["target"] == t) & (block_diffs["family"] == f)
                        & (block_diffs["recipe"] == recipe) & block_diffs["n"].isin(ns)]
        worse = [f"{int(r.unfrozen_blocks)} at n = {int(r.n)}" for r in d.itertuples() if r.ci_high < 0]
        better = [f"{int(r.unfrozen_blocks)} at n = {int(r.n)}" for r in d.itertuples() if r.ci_low > 0]
        lines.append(f"- **{t}, {g['source_label'].iloc[0]}**: best block count "
                     + ", ".join(f"{int(r.unfrozen_blocks)} at n = {int(r.n)} ({r['mean']:.1f}%)"
                                 for _, r in best.iterrows())
                     + "; significantly worse than 0 blocks: " + (", ".join(worse) or "none")
                     + "; significantly better: " + (", ".join(better) or "none") + ".")
    return "\n".join(lines)


def norms_text(norm_diffs: pd.DataFrame, pairs, blocks: int, clean: dict | None = None) -> str:
    """Markdown: for each pair of Fig. 2.6, at how many (target, n) cells family a is
    significantly above / below family b (paired tests, Holm-corrected over the pair's cells;
    uncorrected per-cell CIs beside them), and the mean difference; ``clean`` maps family ->
    mean clean source accuracy (fraction) to say how they are matched."""
    if not pairs or not len(norm_diffs):
        return "No L2 / L-inf pair with enough source seeds in these results."
    lines = []
    for a, b in pairs:
        d = norm_diffs[(norm_diffs["family"] == a) & (norm_diffs["b_family"] == b)
                       & (norm_diffs["unfrozen_blocks"] == blocks)]
        if d.empty:
            continue
        sig, up = stats.adjust(d["p"].to_numpy()) < 0.05, d["mean"].to_numpy() > 0
        match = (f" (clean source accuracy {100 * clean[a]:.1f}% vs {100 * clean[b]:.1f}%)"
                 if clean and a in clean and b in clean else "")
        lines.append(f"- **{d['source_label'].iloc[0]} minus {b.split('/', 2)[-1]}**{match}, "
                     f"{_blocks_word(blocks)}, {d['n_source_seeds'].min()} source seeds each: "
                     f"mean paired difference {d['mean'].mean():+.1f} points over {len(d)} "
                     f"(target, n) cells; significantly above at {int((sig & up).sum())}, "
                     f"below at {int((sig & ~up).sum())} after Holm correction over these cells "
                     f"(uncorrected per-cell 95% CIs: above at {int((d['ci_low'] > 0).sum())}, "
                     f"below at {int((d['ci_high'] < 0).sum())}).")
    return "\n".join(lines) or "No L2 / L-inf pair in these results."


def matched_noise_text(claim, clean: pd.DataFrame) -> str:
    """Markdown: the clean-accuracy-matched noise control of Section 1 (``claims.section1``'s
    ``*_matched_noise`` control parts of ``claim``), after the clean-accuracy check
    (``common.clean_match`` on ``zoo.table`` rows ``clean``)."""
    parts = [p for p in (claim.parts if claim else ()) if "matched_noise" in p.key]
    noise = clean[clean["norm"] == "noise"]
    l2 = clean[clean["norm"] == "l2"].groupby("family").size()
    if not parts or noise.empty or l2.empty:
        return "No noise-trained control was fine-tuned in this configuration."
    family, control = l2.idxmax(), noise["family"].iloc[0]
    m = common.clean_match(clean, family, control)
    label = lambda f: clean.loc[clean["family"] == f, "label"].iloc[0]
    lines = [f"- **Clean accuracy**: {label(control)} {m['control']:.1f}% ({m['n_control']} "
             f"source seeds), {label(family)} {m['family']:.1f}% ({m['n_family']}); difference "
             f"{m['diff']:+.1f} points [{m['low']:+.1f}, {m['high']:+.1f}] (Welch 95%): "
             + ("**matched** (inside +-" if m["matched"] else "**match not shown** (the "
                "interval is not inside +-") + f"{common.MATCH_POINTS:g} points), so the "
             "comparison below " + ("holds clean accuracy fixed." if m["matched"] else
                                    "may also compare two clean accuracies; read it with that "
                                    "in mind.")]
    for p in parts:
        lines.append(f"- **{p.name}** ({p.statistic}): {p.interval_text()} ({p.basis}): "
                     f"**{p.label}**.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- headline


def _claim(table: pd.DataFrame, target: str, family: str, k: int, recipe: str) -> pd.DataFrame:
    """The rows of a per-claim test table (``stats.pooled_gain`` / ``stats.shrinkage``) for one
    claim (target, family, unfrozen_blocks, recipe)."""
    if not len(table):
        return table
    return table[(table["target"] == target) & (table["family"] == family)
                 & (table["unfrozen_blocks"] == k) & (table["recipe"] == recipe)]


def headline(a: dict, cfg) -> dict:
    """The chapter's headline values for the introduction's results table (plain Python floats,
    ints and strings; the notebook glues each as ``ch02_<key>``), from :func:`analyses`.

    The verdict is ``a["claims"][0]``'s label (``claims.section1``: the L2 family with the most
    source seeds vs natural at ``cfg.main_blocks``, in ``cfg.recipe``; the rules are in
    :mod:`robust_transfer.claims`), with one ``part_<key>_label`` / ``part_<key>_text`` per
    part (``common.claim_values``); ``other_verdict`` is the same rule on
    ``cfg.compare_recipe``'s runs ("not tested" without them). Per counted target ``<t>``
    (``claims.counted_targets``, ``_key``-ed) the numbers behind the parts: ``<t>_gain``,
    ``<t>_gain_low``, ``<t>_gain_high``, ``<t>_gain_text`` (pooled small-n gain); the shrinkage
    test on the head-only runs (``a["drop"]``): ``<t>_head_n_peak``, ``<t>_head_n_max``,
    ``<t>_head_gain_peak``, ``<t>_head_gain_max``, ``<t>_head_drop`` (``_low``, ``_high``;
    points), ``<t>_head_n_peak_rel``, ``<t>_head_rer_peak``, ``<t>_head_rer_max``,
    ``<t>_head_drop_rel`` (relative error reduction, its peak chosen on its own scale; fractions)
    and ``<t>_head_natural_max`` (the natural source's accuracy at
    ``<t>_head_n_max``, %); and ``<t>_slope``, ``<t>_slope_low``, ``<t>_slope_high``,
    ``<t>_gain_small`` / ``<t>_gain_large`` (the gain's slope per doubling of n at the main
    block count, the mean gains at the smallest and largest n). Per (target, recipe) of Fig. 2.4
    ``last_epochs_<t>_<recipe>`` (:func:`last_epochs_values`: the natural and main families at
    their last evaluated epochs). ``comparison``, ``family``, ``unfrozen_blocks``, ``recipe``,
    ``small_n_max`` and ``counted_targets`` say what was compared.
    """
    main = a["main"][a["main"]["recipe"] == cfg.recipe] if len(a["main"]) else a["main"]
    claim = a["claims"][0] if a.get("claims") else None
    if main.empty or claim is None:
        return {"verdict": "not tested", "other_verdict": "not tested",
                "verdict_reason": "no robust family is paired with a natural one"}
    family, k = main["family"].iloc[0], int(main["unfrozen_blocks"].iloc[0])
    label = main["source_label"].iloc[0] if "source_label" in main else family
    targets = claims.counted_targets(main["target"])
    nmax = small_n_max(cfg)
    out = {"comparison": f"{label} vs natural, {_blocks_word(k)}, recipe {cfg.recipe}",
           "family": family, "unfrozen_blocks": k, "recipe": cfg.recipe, "small_n_max": nmax,
           "counted_targets": ", ".join(targets)}
    pooled, shrink, summary = a["pooled"], a["shrink"], a["summary"]
    for t in targets:
        key = _key(t)
        p = _claim(pooled, t, family, k, cfg.recipe)
        if len(p):
            r = p.iloc[0]
            out.update({f"{key}_gain": float(r["mean"]), f"{key}_gain_low": float(r["ci_low"]),
                        f"{key}_gain_high": float(r["ci_high"]),
                        f"{key}_gain_text": fmt_ci(r["mean"], r["ci_low"], r["ci_high"], signed=True)
                        + (f" pooled over n = {int(r['n_from'])}-{int(r['n_to'])}"
                           if r["n_to"] > r["n_from"] else f" at n = {int(r['n_from'])}")})
        d = _claim(a["drop"], t, family, 0, cfg.recipe)
        if len(d):
            r = d.iloc[0]
            nat = summary[(summary["target"] == t) & (summary["norm"] == "natural")
                          & (summary["unfrozen_blocks"] == 0) & (summary["recipe"] == cfg.recipe)
                          & (summary["n"] == r["n_max"])]
            out.update({f"{key}_head_n_peak": int(r["n_peak"]),
                        f"{key}_head_n_max": int(r["n_max"]),
                        f"{key}_head_gain_peak": float(r["gain_peak"]),
                        f"{key}_head_gain_max": float(r["gain_max"]),
                        f"{key}_head_drop": float(r["drop"]),
                        f"{key}_head_drop_low": float(r["drop_ci_low"]),
                        f"{key}_head_drop_high": float(r["drop_ci_high"]),
                        f"{key}_head_n_peak_rel": int(r["n_peak_rel"]),
                        f"{key}_head_rer_peak": float(r["rer_peak"]),
                        f"{key}_head_rer_max": float(r["rer_max"]),
                        f"{key}_head_drop_rel": float(r["drop_rel"]),
                        f"{key}_head_natural_max": float(nat["mean"].mean())})
        s = _claim(shrink, t, family, k, cfg.recipe)
        if len(s):
            r = s.iloc[0]
            out.update({f"{key}_slope": float(r["slope"]), f"{key}_slope_low": float(r["slope_ci_low"]),
                        f"{key}_slope_high": float(r["slope_ci_high"]),
                        f"{key}_gain_small": float(r["gain_small"]),
                        f"{key}_gain_large": float(r["gain_large"])})
    natural = list(summary.loc[summary["norm"] == "natural", "family"].unique())
    out.update(last_epochs_values(a["curves"], curve_n(cfg), cfg.main_blocks, natural + [family]))
    out.update(claim_values(claim))
    out["verdict_reason"] = "; ".join(f"{p.name}: {p.label}" for p in claim.parts
                                      if p.role == "test")
    other = a["claims"][1] if len(a["claims"]) > 1 else None
    out["other_recipe"] = cfg.compare_recipe or "none"
    out.update(claim_values(other, "other_"))
    return out


def verdict_text(values: dict) -> str:
    """Markdown stating :func:`headline`'s verdicts and why."""
    text = (f"**Verdict on the paper's claim** (robust sources transfer better at small n and the "
            f"gain shrinks with n), {values.get('comparison', '')}: **{values['verdict']}** "
            f"({values['verdict_reason']}).")
    if values.get("other_verdict", "not tested") != "not tested":
        text += (f" The same pre-specified tests on the `{values['other_recipe']}` recipe's runs: "
                 f"**{values['other_verdict']}**.")
    return text


def results_row(values: dict, preset: str) -> dict:
    """The introduction's row for the paper's transfer claim (see ``common.ROW_FIELDS``): the
    paper's gains (``reference.paper_deltas``: largest gain per target at n <= 400 and the gain
    at its largest subset), ours from :func:`headline` per counted target (the pre-specified
    pooled small-n gain and the shrink part's label), the control targets' small-n gains beside
    them (not counted), and the verdict."""
    paper = reference.paper_deltas()
    sub = paper[~paper["full"]]
    small = sub[sub["n"] <= 400].groupby("target")["delta"].max()
    large = sub[sub["n"] == sub["n"].max()]["delta"]
    targets = [t for t in values.get("counted_targets", "").split(", ") if t]
    sfx = claims.RECIPE_PART_SUFFIX.get(values.get("recipe"), "")
    ours = "; ".join(f"{t} {values[_key(t) + '_gain']:+.1f} at n <= {values['small_n_max']}"
                     f" (shrinks with n: {values[f'part_{_key(t)}_shrinks_pool{sfx}_label']})"
                     for t in targets if _key(t) + "_gain" in values)
    ci = "; ".join(f"{t} [{values[_key(t) + '_gain_low']:+.1f}, {values[_key(t) + '_gain_high']:+.1f}]"
                   for t in targets if _key(t) + "_gain" in values)
    other = (f"; {values['other_recipe']} recipe: {values['other_verdict']}"
             if values.get("other_verdict", "not tested") != "not tested" else "")
    end = f"_gain{sfx}_label"
    counted = {f"part_{_key(t)}{end}" for t in targets}
    controls = [k[len("part_"):-len(end)] for k in values
                if k.startswith("part_") and k.endswith(end) and k not in counted]
    if controls:
        ours += "; control (not counted): " + "; ".join(
            f"{t} {values[f'part_{t}_gain{sfx}_text']} ({values[f'part_{t}{end}']})"
            for t in controls)
    return {"claim": "Robust sources transfer better with few target images; the gain shrinks "
                     "as n grows",
            "paper": f"largest gain at n <= 400: {small.min():+.1f} to {small.max():+.1f} points "
                     f"over 6 targets; at n = {int(sub['n'].max())}: {large.min():+.1f} to "
                     f"{large.max():+.1f} (L2 ε=3, 3 blocks)",
            "ours": (f"{ours} ({values['comparison']}; {preset} preset{other})" if ours else
                     f"no paired comparison ({preset} preset)"),
            "ci": ci or "–",
            "verdict": values["verdict"]}
