"""Chapter 2, transfer gain vs sample size: its figures (accuracy and gain vs n, the paper's
gains next to ours, validation curves), display tables, findings text and the headline values
the introduction's results table is built from.

Inputs are the engine's tables: ``stats.summary`` (accuracies, %), ``stats.deltas`` (paired
robust-minus-natural gains, accuracy points), ``stats.shrinkage`` and
``reference.paper_deltas``. Nothing here computes a statistic; it selects, formats and draws.
"""
from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import reference, stats
from ..shape_bias import SHAPE_TARGETS
from .common import band, colours, fmt_ci, log2_axis

__all__ = ["accuracy_vs_n", "paper_deltas", "validation_curves", "gain_table", "findings",
           "paper_comparison", "paper_gain_table", "ours_label", "runs_text", "budget_text",
           "validation_runs", "validation_text", "headline", "verdict_text", "VERDICTS"]

#: the verdicts :func:`headline` can give the paper's transfer claim
VERDICTS = ("reproduced", "partly", "not reproduced", "not tested")

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


def ours_label(main: pd.DataFrame) -> str:
    """The title of our panel in :func:`paper_deltas`: "ours: <source> - natural, k unfrozen
    block(s)" (just "ours: " when ``main`` is empty)."""
    return "ours: " + (
        f"{main['source_label'].iloc[0]} - natural, {main['unfrozen_blocks'].iloc[0]} unfrozen block(s)"
        if len(main) else "")


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
    """Markdown: how many runs the configuration has (per unfrozen_blocks), how many were computed
    now in ``seconds`` and how many read from the store at ``store_path``, mean seconds per run."""
    k_runs = df.groupby("unfrozen_blocks").size()
    return (
        f"**{len(grid)} runs** in this configuration ({', '.join(f'{v} with {k} unfrozen blocks' for k, v in k_runs.items())}); "
        f"{ran} computed now in {seconds:.0f} s, {len(grid) - ran} read from the results store "
        f"`{store_path}`. Mean time per run: " +
        ", ".join(f"{df[df.unfrozen_blocks == k].seconds.mean():.2f} s (k={k})" for k in k_runs.index) + ".")


def budget_text(df: pd.DataFrame, cfg) -> str:
    """Markdown: runs, mean seconds and CPU-minutes per unfrozen_blocks, and which sources and n
    get fine-tuned runs (``cfg.finetune_sources``, ``cfg.finetune_max_n``)."""
    t = df.groupby("unfrozen_blocks")["seconds"].agg(["count", "mean", "sum"])
    ft = [s for s in cfg.sources if not cfg.finetune_sources or s in cfg.finetune_sources]
    return (
        "**The compute budget.** " + "; ".join(
            f"runs with {k} unfrozen blocks: {int(r['count'])}, {r['mean']:.2f} s each on average "
            f"({r['sum'] / 60:.1f} CPU-minutes)" for k, r in t.iterrows()) + ". "
        "Head-only runs train a linear head on cached pooled features, so every source gets them; "
        "a fine-tuned block costs far more per run (it is trained through, at every step), so "
        f"`unfrozen_blocks > 0` runs are limited to {len(ft)} of the {len(cfg.sources)} sources "
        "(`finetune_sources`: " + (", ".join(f"`{s}`" for s in ft)) + ")"
        + (f" and to n <= {cfg.finetune_max_n} (`finetune_max_n`)" if cfg.finetune_max_n else "")
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
    """Markdown sentences computed from ``stats.deltas`` and ``stats.shrinkage`` tables."""
    if delta_table.empty:
        return "No paired robust-vs-natural comparison in these results."
    lines = []
    families = families or list(dict.fromkeys(delta_table["family"]))
    for (target, k), g in delta_table.groupby(["target", "unfrozen_blocks"], sort=False):
        for family in families:
            f = g[g["family"] == family].sort_values("n")
            if f.empty:
                continue
            label = f["source_label"].iloc[0] if "source_label" in f else family
            up = f.loc[f["direction"] > 0, "n"].tolist()
            down = f.loc[f["direction"] < 0, "n"].tolist()
            best = f.loc[f["mean"].idxmax()]
            s = (f"- **{target}, {k} unfrozen block(s), {label} vs natural**: gain significantly "
                 f"> 0 at {len(up)} of {len(f)} sample sizes"
                 + (f" (n = {', '.join(map(str, up))})" if up else "")
                 + (f", significantly < 0 at n = {', '.join(map(str, down))}" if down else "")
                 + f"; largest mean gain {best['mean']:+.1f} points "
                 f"[{best['ci_low']:+.1f}, {best['ci_high']:+.1f}] at n = {int(best['n'])}")
            if (f["ci_basis"] == "subset seeds only").any():
                s += (" (one source seed: these CIs cover subset seeds only, miss the "
                      "source-seed variance and are too narrow)")
            sh = shrink_table[(shrink_table["target"] == target) & (shrink_table["family"] == family)
                              & (shrink_table["unfrozen_blocks"] == k)] if len(shrink_table) else []
            if len(sh):
                r = sh.iloc[0]
                verdict = ("shrinks" if r["shrinks"] else
                           "grows" if r["drop_ci_high"] < 0 else "does not change significantly")
                s += (f"; from n = {r['n_small']} to n = {r['n_large']} the gain {verdict} "
                      f"({r['gain_small']:+.1f} -> {r['gain_large']:+.1f}, difference "
                      f"[{r['drop_ci_low']:+.1f}, {r['drop_ci_high']:+.1f}])")
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


# --------------------------------------------------------------------------- headline


def _key(target: str) -> str:
    """A glue-safe name for a target ("lowres:digits" -> "lowres_digits")."""
    return re.sub(r"\W+", "_", str(target)).strip("_")


def headline(delta_table: pd.DataFrame, shrink_table: pd.DataFrame) -> dict:
    """The chapter's headline values for the introduction's results table (plain Python floats,
    ints and strings; the notebook glues each as ``ch02_<key>``).

    The comparison is ``stats.main_gains(delta_table)``: the L2 family with the most source
    seeds vs natural at its largest unfrozen_blocks. The *shape targets* are its targets in
    ``shape_bias.SHAPE_TARGETS`` (digits, characters; the texture control is left out), or all
    its targets when none is one. The *small-n half* is the smaller half of its n values (the
    first ceil(len/2) of them). Per shape target ``<t>`` (``_key``-ed):

    - ``<t>_gain``, ``<t>_gain_low``, ``<t>_gain_high``, ``<t>_gain_n``: the largest mean gain
      (points) in the small-n half, its 95% CI and its n; ``<t>_gain_text`` the same as text;
    - ``<t>_significant_cells`` / ``<t>_cells``: how many of the target's n have a gain whose
      CI is above 0, out of how many;
    - ``<t>_shrinks``: "yes" when ``stats.shrinkage`` finds the gain at the smallest n
      significantly larger than at the largest n (its CI above 0), else "no";
      ``<t>_gain_small`` / ``<t>_gain_large`` the two mean gains.

    ``verdict`` on the paper's claim "robust sources transfer better at small n and the gain
    shrinks with n", by this rule: *gain* holds when every shape target has a significantly
    positive gain at some n of the small-n half; *shrink* holds when the gain shrinks
    significantly on every shape target. "reproduced": both; "partly": exactly one; "not
    reproduced": neither; "not tested": no robust family is paired with a natural one.
    ``verdict_reason`` says which parts held; ``comparison``, ``family``, ``unfrozen_blocks``,
    ``small_n_max`` and ``shape_targets`` say what was compared.
    """
    main = stats.main_gains(delta_table)
    if main.empty:
        return {"verdict": "not tested",
                "verdict_reason": "no robust family is paired with a natural one"}
    family, k = main["family"].iloc[0], int(main["unfrozen_blocks"].iloc[0])
    label = main["source_label"].iloc[0] if "source_label" in main else family
    ns = sorted(int(n) for n in main["n"].unique())
    small = ns[:(len(ns) + 1) // 2]
    present = list(dict.fromkeys(main["target"]))
    targets = [t for t in present if t in SHAPE_TARGETS] or present
    sh = (shrink_table[(shrink_table["family"] == family) & (shrink_table["unfrozen_blocks"] == k)]
          if len(shrink_table) else pd.DataFrame(columns=["target"]))
    out = {"comparison": f"{label} vs natural, {k} unfrozen block(s)", "family": family,
           "unfrozen_blocks": k, "small_n_max": small[-1], "shape_targets": ", ".join(targets)}
    gain_all = shrink_all = True
    for t in targets:
        g = main[main["target"] == t]
        s = g[g["n"].isin(small)]
        key = _key(t)
        if len(s):
            best = s.loc[s["mean"].idxmax()]
            out.update({f"{key}_gain": float(best["mean"]), f"{key}_gain_low": float(best["ci_low"]),
                        f"{key}_gain_high": float(best["ci_high"]), f"{key}_gain_n": int(best["n"]),
                        f"{key}_gain_text": fmt_ci(best["mean"], best["ci_low"], best["ci_high"],
                                                   signed=True) + f" at n = {int(best['n'])}"})
        out[f"{key}_significant_cells"] = int((g["direction"] > 0).sum())
        out[f"{key}_cells"] = int(len(g))
        r = sh[sh["target"] == t]
        shrinks = bool(r["shrinks"].iloc[0]) if len(r) else False
        out[f"{key}_shrinks"] = "yes" if shrinks else "no"
        if len(r):
            out[f"{key}_gain_small"] = float(r["gain_small"].iloc[0])
            out[f"{key}_gain_large"] = float(r["gain_large"].iloc[0])
        gain_all &= bool((s["direction"] > 0).any())
        shrink_all &= shrinks
    out["verdict"] = ("reproduced" if gain_all and shrink_all else
                      "partly" if gain_all or shrink_all else "not reproduced")
    out["verdict_reason"] = (
        f"significant positive gain at n <= {small[-1]} on every shape target: "
        f"{'yes' if gain_all else 'no'}; gain shrinks significantly from n = {ns[0]} to "
        f"n = {ns[-1]} on every shape target: {'yes' if shrink_all else 'no'}")
    return out


def verdict_text(values: dict) -> str:
    """Markdown stating :func:`headline`'s verdict and why."""
    return (f"**Verdict on the paper's claim** (robust sources transfer better at small n and the "
            f"gain shrinks with n): **{values['verdict']}** ({values['verdict_reason']}).")


def results_row(values: dict, preset: str) -> dict:
    """The introduction's row for the paper's transfer claim (see ``common.ROW_FIELDS``): the
    paper's gains (``reference.paper_deltas``: largest gain per target at n <= 400 and the gain
    at its largest subset), ours from :func:`headline` per shape target, and the verdict."""
    paper = reference.paper_deltas()
    sub = paper[~paper["full"]]
    small = sub[sub["n"] <= 400].groupby("target")["delta"].max()
    large = sub[sub["n"] == sub["n"].max()]["delta"]
    targets = [t for t in values.get("shape_targets", "").split(", ") if t]
    ours = "; ".join(f"{t} {values[_key(t) + '_gain']:+.1f} at n = {values[_key(t) + '_gain_n']}"
                     f" (shrinks: {values[_key(t) + '_shrinks']})"
                     for t in targets if _key(t) + "_gain" in values)
    ci = "; ".join(f"{t} [{values[_key(t) + '_gain_low']:+.1f}, {values[_key(t) + '_gain_high']:+.1f}]"
                   for t in targets if _key(t) + "_gain" in values)
    return {"claim": "Robust sources transfer better with few target images; the gain shrinks "
                     "as n grows",
            "paper": f"largest gain at n <= 400: {small.min():+.1f} to {small.max():+.1f} points "
                     f"over 6 targets; at n = {int(sub['n'].max())}: {large.min():+.1f} to "
                     f"{large.max():+.1f} (L2 ε=3, 3 blocks)",
            "ours": (f"{ours} ({values['comparison']}; {preset} preset)" if ours else
                     f"no paired comparison ({preset} preset)"),
            "ci": ci or "–",
            "verdict": values["verdict"]}
