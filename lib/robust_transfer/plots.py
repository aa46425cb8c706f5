"""Figures: the datasets (sample grid, class balance), the sources (accuracy vs attack eps,
adversarial examples), and the paper-style transfer figures: target accuracy vs n (log2 axis)
with CI bands, and the gain panel."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["sample_grid", "class_counts", "attack_curves", "adversarial_examples", "accuracy_vs_n",
           "paper_deltas", "validation_curves"]


def sample_grid(datasets: dict, per_row: int = 10):
    """One row per dataset: the first training image of each class (up to ``per_row``).

    ``datasets`` maps a name to ``(images, labels, class_names)`` as ``data.load`` returns.
    Returns the figure."""
    fig, axes = plt.subplots(len(datasets), per_row, figsize=(1.1 * per_row, 1.3 * len(datasets)),
                             squeeze=False)
    for row, (name, (x, y, classes)) in zip(axes, datasets.items()):
        for ax, c in zip(row, range(per_row)):
            ax.set_xticks([]), ax.set_yticks([])
            hits = (y == c).nonzero()
            if c >= len(classes) or len(hits) == 0:
                ax.axis("off")
                continue
            img = x[int(hits[0])]
            ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(str(classes[c])[:10], fontsize=7)
        row[0].set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig


def class_counts(labels: dict):
    """Bar chart of training images per class, one panel per dataset (``name -> (labels,
    class_names)``). Returns the figure."""
    fig, axes = plt.subplots(1, len(labels), figsize=(3.2 * len(labels), 2.6), squeeze=False)
    for ax, (name, (y, classes)) in zip(axes[0], labels.items()):
        counts = np.bincount(np.asarray(y), minlength=len(classes))
        ax.bar(range(len(classes)), counts, color="0.4")
        ax.set_xticks(range(len(classes)))
        ax.set_xticklabels([str(c)[:6] for c in classes], rotation=90, fontsize=6)
        ax.set(title=name, ylabel="training images")
    fig.tight_layout()
    return fig


def _log2_axis(ax, ns) -> None:
    ns = sorted(set(int(n) for n in ns))
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns)
    ax.set_xticklabels([str(n) for n in ns], fontsize=7)
    ax.minorticks_off()
    ax.grid(alpha=0.3)


def _colours(labels) -> dict:
    cmap = plt.get_cmap("tab10")
    order = sorted(labels, key=lambda s: (not str(s).lower().startswith("natural"), str(s)))
    return {lab: cmap(i % 10) for i, lab in enumerate(order)}


def _band(ax, g: pd.DataFrame, label, colour) -> None:
    g = g.sort_values("n")
    ax.plot(g["n"], g["mean"], "o-", ms=3, lw=1.4, color=colour, label=label)
    ax.fill_between(g["n"], g["ci_low"], g["ci_high"], color=colour, alpha=0.2, lw=0)


def accuracy_vs_n(summary: pd.DataFrame, deltas: pd.DataFrame | None = None, *,
                  unfrozen_blocks: int = 0, families=None, targets=None):
    """Figure: top row accuracy (%) vs n per target, one line per source family with its 95% CI
    band; bottom row (if ``deltas``) the paired gain family - natural (points) with CI and a
    zero line. Returns the matplotlib Figure."""
    s = summary[summary["unfrozen_blocks"] == unfrozen_blocks]
    if families is not None:
        s = s[s["family"].isin(families)]
    targets = list(targets or dict.fromkeys(s["target"]))
    rows = 2 if deltas is not None else 1
    fig, axes = plt.subplots(rows, len(targets), figsize=(3.6 * len(targets), 3.0 * rows),
                             squeeze=False, sharex="col")
    colours = _colours(s["source_label"].unique())
    for j, target in enumerate(targets):
        ax = axes[0, j]
        for label, g in s[s["target"] == target].groupby("source_label"):
            _band(ax, g, label, colours[label])
        ax.set_title(f"{target} ({unfrozen_blocks} unfrozen block{'s' if unfrozen_blocks != 1 else ''})",
                     fontsize=9)
        _log2_axis(ax, s["n"])
        if j == 0:
            ax.set_ylabel("test accuracy (%)")
        if deltas is not None:
            d = deltas[(deltas["unfrozen_blocks"] == unfrozen_blocks) & (deltas["target"] == target)]
            if families is not None:
                d = d[d["family"].isin(families)]
            ax = axes[1, j]
            ax.axhline(0, color="k", lw=0.8)
            for label, g in d.groupby("source_label"):
                _band(ax, g, label, colours.get(label, "grey"))
            _log2_axis(ax, s["n"])
            if j == 0:
                ax.set_ylabel("gain vs natural (points)")
        axes[-1, j].set_xlabel("n (target training images)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), fontsize=8,
               frameon=False, bbox_to_anchor=(0.5, 1.02))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def paper_deltas(paper: pd.DataFrame, ours: pd.DataFrame | None = None, *, label: str = "ours"):
    """Figure: the paper's robust-minus-natural gain vs n (one line per target, log2 axis; rows
    with ``full`` True, the whole training sets, are left out) and, if given, our gains
    (``ours``: columns target, n, mean, ci_low, ci_high) on a second panel."""
    if "full" in paper:
        paper = paper[~paper["full"]]
    fig, axes = plt.subplots(1, 2 if ours is not None else 1, figsize=(10, 3.4), squeeze=False)
    ax = axes[0, 0]
    ax.axhline(0, color="k", lw=0.8)
    for target, g in paper.groupby("target"):
        g = g.sort_values("n")
        ax.plot(g["n"], g["delta"], "o-", ms=3, label=target)
    _log2_axis(ax, paper["n"])
    ax.set_title(f"paper: ImageNet ResNet-50, {paper.attrs.get('robust', 'robust')} - natural, "
                 "3 blocks", fontsize=9)
    ax.set_ylabel("gain (points)")
    ax.set_xlabel("n (target training images)")
    ax.legend(fontsize=7, ncol=2)
    if ours is not None:
        ax = axes[0, 1]
        ax.axhline(0, color="k", lw=0.8)
        colours = _colours(ours["target"].unique())
        for target, g in ours.groupby("target"):
            _band(ax, g, target, colours[target])
        _log2_axis(ax, ours["n"])
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


def adversarial_examples(grid: dict, ids, x, y, class_names, *, norm: str = "l2", eps: float = 2.0,
                         steps: int = 10, show=(0, 7, 14, 21)):
    """For each source in ``ids`` (``grid`` maps id -> (model, metadata)): test images, their PGD
    adversarial examples (title: the prediction) and the perturbation scaled to [-1, 1] (title:
    its edge alignment). Returns ``(figure, {label: mean edge alignment over x})``."""
    import torch
    from . import attacks, zoo
    fig, axes = plt.subplots(len(ids), 3 * len(show), figsize=(3.3 * len(show), 1.3 * len(ids)),
                             squeeze=False)
    alignment = {}
    for r, sid in enumerate(ids):
        model, label = grid[sid][0], zoo.spec(sid).label
        torch.manual_seed(0)
        x_adv = attacks.pgd(model, x, y, norm, eps, steps=steps)
        with torch.no_grad():
            pred = model(x_adv).argmax(1)
        align = attacks.edge_alignment(x, x_adv)
        alignment[label] = align.mean().item()
        delta = (x_adv - x).mean(1)
        for j, i in enumerate(show):
            a = axes[r, 3 * j:3 * j + 3]
            a[0].imshow(x[i].mean(0), cmap="gray", vmin=0, vmax=1)
            a[1].imshow(x_adv[i].mean(0), cmap="gray", vmin=0, vmax=1)
            a[1].set_title(str(class_names[pred[i]])[:8], fontsize=6)
            a[2].imshow(delta[i] / delta[i].abs().max().clamp_min(1e-8), cmap="gray", vmin=-1, vmax=1)
            a[2].set_title(f"{align[i]:.2f}", fontsize=6)
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right")
        for a in axes[r]:
            a.set_xticks([]), a.set_yticks([])
    fig.tight_layout()
    return fig, alignment


def attack_curves(curves):
    """Accuracy vs attack eps per source family (``zoo.accuracy_curves`` output), one panel per
    attack norm: mean over source seeds, band = min..max over seeds. Returns the figure."""
    attacks_ = list(dict.fromkeys(curves["attack"]))
    fig, axes = plt.subplots(1, len(attacks_), figsize=(5.5 * len(attacks_), 4), sharey=True,
                             squeeze=False)
    for ax, attack in zip(axes[0], attacks_):
        for label, g in curves[curves.attack == attack].groupby("label", sort=False):
            seeds = int(g.seeds.iloc[0])
            line, = ax.plot(g.attack_eps, 100 * g["mean"], "o-",
                            label=f"{label} ({seeds} seed{'s' * (seeds > 1)})")
            ax.fill_between(g.attack_eps, 100 * g["min"], 100 * g["max"], color=line.get_color(),
                            alpha=0.2)
        ax.set(xlabel=f"{attack} attack ε (pixel units, 0 = clean)", title=f"PGD {attack} attack")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("accuracy (%)")
    axes[0, -1].legend(fontsize=8)
    fig.tight_layout()
    return fig
