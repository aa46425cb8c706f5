"""Every published number the book compares with: the paper's transfer accuracies, its influence
numbers, and the published ImageNet accuracies of the paper's source checkpoints.

Utrera, Kravitz, Erichson, Khanna, Mahoney. *Adversarially-Trained Deep Nets Transfer Better:
Illustration on Image Classification.* ICLR 2021 (arXiv 2007.05869). Numbers: mean target test
accuracy (%) of ImageNet ResNet-50 sources (natural, L2 eps 3, L-inf eps 4/255 and 8/255) with 3
fine-tuned blocks, over the authors' seeds, from their results table
(github.com/utrerf/robust_transfer_learning, ``results/tables/summary_table.csv``), shipped as
``robust_transfer/reference/paper_transfer_accuracy.csv``.
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["paper_table", "paper_deltas", "paper_gain_table", "PAPER_MAX_SUBSET", "INFLUENCE",
           "PUBLISHED_CLEAN_ACC"]

PAPER_MAX_SUBSET = 25600   # the paper's largest subset; larger n are the full training sets

#: the paper's influence numbers (Sec. 5): CIFAR-10, n = 3200, 3 fine-tuned blocks, ImageNet
#: ResNet-50 sources natural vs L2 eps=3, 10,000 test images; percent of test images whose top-1
#: most helpful training image shares their label ("top1") / with >= 3 of the top 5 ("3of5")
INFLUENCE = {"top1": {"natural": 55.08, "robust": 78.61}, "3of5": {"natural": 53.79, "robust": 77.33}}

#: ImageNet top-1 (fraction) of the paper's sources as reported in the paper
PUBLISHED_CLEAN_ACC = {"paper/imagenet/natural": 0.7613, "paper/imagenet/l2/3": 0.5790,
                       "paper/imagenet/linf/4": 0.6242, "paper/imagenet/linf/8": 0.4791}


def paper_table() -> pd.DataFrame:
    """The paper's accuracies: columns target, n (total training images), source, accuracy (%),
    full (True where n is the whole training set rather than a seeded subset)."""
    with resources.files("robust_transfer").joinpath(
            "reference/paper_transfer_accuracy.csv").open() as fh:
        df = pd.read_csv(fh, comment="#")
    df = df.rename(columns={"n_train": "n"})
    return df.assign(full=df["n"] > PAPER_MAX_SUBSET)


def paper_deltas(robust: str = "l2_3", natural: str = "natural") -> pd.DataFrame:
    """Robust-minus-natural gains in points: columns target, n, full, natural, robust, delta."""
    wide = paper_table().pivot_table(index=["target", "n", "full"], columns="source",
                                     values="accuracy")
    out = pd.DataFrame({"natural": wide[natural], "robust": wide[robust]}).dropna()
    out["delta"] = out["robust"] - out["natural"]
    out.attrs["robust"] = robust
    return out.reset_index()


def paper_gain_table(robust: str = "l2_3") -> pd.DataFrame:
    """The paper's gains (points) as a table: one line per target, columns n and ``full``."""
    d = paper_deltas(robust)
    d["column"] = d["n"].astype(str).where(~d["full"], "full")
    order = [str(n) for n in sorted(d.loc[~d["full"], "n"].unique())] + ["full"]
    wide = d.pivot_table(index="target", columns="column", values="delta")
    return wide[[c for c in order if c in wide]].rename_axis(columns=f"paper gain {robust} at n")
