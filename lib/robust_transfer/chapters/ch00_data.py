"""Chapter 0, the data: which datasets a preset uses, their sizes and licences (table), sample
images and class balance (figures), the findings text and headline values."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import data, zoo
from .common import show_image

__all__ = ["dataset_names", "sizes_table", "load_train", "sample_grid", "class_counts",
           "findings", "headline"]


def dataset_names(cfg) -> tuple[list[str], list[str]]:
    """``(names, source_data)``: the source models' datasets (those in ``data.DATASETS``, sorted)
    followed by ``cfg.targets`` not already listed, and the source datasets alone."""
    source_data = sorted({zoo.spec(s).dataset for s in cfg.sources} & set(data.DATASETS))
    return source_data + [t for t in cfg.targets if t not in source_data], source_data


def sizes_table(cfg) -> pd.DataFrame:
    """``data.summary`` of :func:`dataset_names` (images per split, the subset ``pool`` after
    ``cfg.val_size`` validation images, class balance, licence) with a ``role`` column
    (source / target) after ``dataset``."""
    names, source_data = dataset_names(cfg)
    table = data.summary(names, val_size=cfg.val_size, allow_download=cfg.allow_download)
    table.insert(1, "role", ["source" if n in source_data else "target" for n in names])
    return table


def load_train(names, cfg) -> dict:
    """``name -> (images, labels, class_names)`` of each dataset's training split."""
    return {name: data.load(name, "train", allow_download=cfg.allow_download) for name in names}


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
            show_image(ax, x[int(hits[0])], str(classes[c])[:10])
        row[0].set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig


def class_counts(labels: dict):
    """Bar chart of training images per class, one panel per dataset. ``labels`` maps a name to
    ``(labels, class_names)`` or to ``data.load``'s ``(images, labels, class_names)``. Returns
    the figure."""
    fig, axes = plt.subplots(1, len(labels), figsize=(3.2 * len(labels), 2.6), squeeze=False)
    for ax, (name, value) in zip(axes[0], labels.items()):
        y, classes = value[-2:]
        counts = np.bincount(np.asarray(y), minlength=len(classes))
        ax.bar(range(len(classes)), counts, color="0.4")
        ax.set_xticks(range(len(classes)))
        ax.set_xticklabels([str(c)[:6] for c in classes], rotation=90, fontsize=6)
        ax.set(title=name, ylabel="training images")
    fig.tight_layout()
    return fig


def _balance(table: pd.DataFrame) -> pd.Series:
    """The row of the most unbalanced dataset, with ``ratio`` = largest / smallest class."""
    balance = table.assign(ratio=table["largest class"] / table["smallest class"])
    return balance.loc[balance["ratio"].idxmax()]


def findings(table: pd.DataFrame) -> str:
    """Markdown: how many datasets were loaded and which training split is the most unbalanced
    (largest / smallest class), from :func:`sizes_table`."""
    worst = _balance(table)
    return (
        f"**Findings.** {len(table)} datasets loaded ({', '.join(table['dataset'])}). "
        f"The most unbalanced training split is `{worst['dataset']}`, whose largest class has "
        f"{worst['ratio']:.2f} times as many images as its smallest; class-covering subsets "
        f"draw n images at random after one image per class, so small-n subsets follow this balance.")


def headline(table: pd.DataFrame) -> dict:
    """Plain values the chapter states (the notebook glues each as ``ch00_<key>``):
    ``datasets`` (count), ``most_unbalanced`` (name), ``imbalance_ratio`` (largest / smallest
    class) and per dataset ``pool_<name>``: images left for target subsets after validation."""
    worst = _balance(table)
    out = {"datasets": int(len(table)), "most_unbalanced": str(worst["dataset"]),
           "imbalance_ratio": float(worst["ratio"])}
    for name, pool in zip(table["dataset"], table["pool"]):
        out["pool_" + "".join(c if c.isalnum() else "_" for c in str(name))] = int(pool)
    return out
