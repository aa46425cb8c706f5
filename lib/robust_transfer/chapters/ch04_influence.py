"""Chapter 4, influence functions: what only the book shows of the influence study -- the top-k
same-class curves (Figure 4.1), class-sorted influence matrices (Figure 4.2), the most helpful and
harmful training images (Figure 4.3) and its widget explorer, influence vs leave-one-out
retraining (Figure 4.4), the findings text and the headline numbers the book glues. The numbers
come from the engine (:mod:`robust_transfer.influence_study`, :mod:`robust_transfer.influence`).
Sign convention: positive influence = helpful (removing the training image raises the test loss).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .. import reference, stats, zoo
from ..influence import (class_mean_matrix, class_sorted, loo_correlation, top_training,
                         topk_same_class)
from ..influence_study import chance, robust_minus_natural, summary
from . import common

__all__ = ["plot_topk", "plot_class_matrices", "plot_examples", "plot_loo", "explorer",
           "findings", "headline"]

KINDS = ("natural", "robust")


def _labels(studies: dict) -> dict:
    """``{kind: source family label}`` (e.g. "natural" -> "Natural")."""
    return {kind: zoo.spec(ss[0].source).label for (kind, _), ss in studies.items()}


def _targets(studies: dict) -> list[str]:
    """The targets of ``studies`` in run order."""
    return list(dict.fromkeys(t for _, t in studies))


def plot_topk(studies: dict, ks=range(1, 101), n_boot: int = 1000):
    """Figure: per target, mean percentage of the top-k most helpful training images that share
    the test image's label vs k, one line per source family, 95% bootstrap bands over test images
    (clipped to [0, 100]), chance line."""
    import pandas as pd
    targets = sorted({t for _, t in studies})
    labels = _labels(studies)
    colour = common.colours(KINDS)
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 3.6), squeeze=False)
    for ax, t in zip(axes[0], targets):
        for kind in KINDS:
            ss = studies.get((kind, t))
            if not ss:
                continue
            kk = [k for k in ks if k <= ss[0].I.shape[1]]
            vals = np.mean([topk_same_class(s.I, s.y_test, s.y_train, kk) for s in ss], 0)
            m, lo, hi = stats.bootstrap_mean(vals, n_boot)
            g = pd.DataFrame(dict(k=kk, mean=100 * m, ci_low=100 * lo, ci_high=100 * hi))
            common.band(ax, g, f"{labels[kind]} ({len(ss)} seeds)", colour[kind], x="k",
                        clip=(0, 100))
        ax.axhline(100 * chance(studies[next(k for k in studies if k[1] == t)][0]), color="grey",
                   ls=":", label="chance")
        ax.set(xscale="log", xlabel="k (top-k most helpful training images)",
               ylabel="same class as test image (%)", title=t)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_class_matrices(studies: dict, target: str):
    """Figure: for the first source of each family, the class-sorted influence matrix (test
    rows x train columns, red = helpful, each row scaled by its largest |influence|) and the
    mean influence per (test class, training class) pair in nats."""
    kinds = [k for k in KINDS if (k, target) in studies]
    labels = _labels(studies)
    fig, axes = plt.subplots(2, len(kinds), figsize=(5 * len(kinds), 9), squeeze=False)
    for col, kind in enumerate(kinds):
        s = studies[(kind, target)][0]
        S, to, tr = class_sorted(s.I, s.y_test, s.y_train)
        S = S / np.maximum(np.abs(S).max(axis=1, keepdims=True), 1e-300)
        axes[0, col].imshow(S, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto",
                            interpolation="nearest")
        axes[0, col].set(title=f"{target}, {labels[kind]}: influence sorted by class\n"
                               f"(each test row scaled by its max |influence|)",
                         xlabel="training images (by class)", ylabel="test images (by class)")
        C = len(s.class_names)
        M = class_mean_matrix(s.I, s.y_test, s.y_train, C)
        v = np.nanmax(np.abs(M))
        im = axes[1, col].imshow(M, cmap="RdBu_r", vmin=-v, vmax=v)
        axes[1, col].set(title="mean influence per class pair", xlabel="training class",
                         ylabel="test class", xticks=range(C), yticks=range(C))
        fig.colorbar(im, ax=axes[1, col], shrink=0.8, label="nats (+ = helpful)")
    fig.tight_layout()
    return fig


def plot_examples(studies: dict, target: str, test_rows, k: int = 3):
    """Figure: for each test image (row index into the studies' test set) and each family's first
    source, the test image, its k most helpful and k most harmful training images (titles:
    label and influence in nats; green = same class as the test image)."""
    kinds = [kd for kd in KINDS if (kd, target) in studies]
    labels = _labels(studies)
    rows = [(t, kd) for t in test_rows for kd in kinds]
    fig, axes = plt.subplots(len(rows), 1 + 2 * k, figsize=(1.2 * (1 + 2 * k), 1.35 * len(rows)),
                             squeeze=False)
    for (t, kd), ax in zip(rows, axes):
        s = studies[(kd, target)][0]
        y_t = int(s.y_test[t])
        names = s.class_names
        common.show_image(ax[0], s.images_test[t] / 255, f"test: {names[y_t]}")
        ax[0].set_ylabel(labels[kd], fontsize=7)
        for i, (j, helpful) in enumerate([(j, True) for j in top_training(s.I, t, k)]
                                         + [(j, False) for j in top_training(s.I, t, k, False)]):
            y_j = int(s.y_train[j])
            common.show_image(ax[1 + i], s.images_train[j] / 255,
                              f"{'+' if helpful else '-'} {names[y_j]} {s.I[t, j]:.1e}",
                              "green" if y_j == y_t else "black")
    fig.suptitle(f"{target}: test image | {k} most helpful (+) | {k} most harmful (-)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_loo(studies: dict, target: str):
    """Figure: predicted (influence) vs actual leave-one-out test-loss change (nats) for the
    first source of each family, all test images x the retrained points, Pearson / Spearman."""
    kinds = [kd for kd in KINDS if (kd, target) in studies]
    labels = _labels(studies)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.5 * len(kinds), 4), squeeze=False)
    for ax, kd in zip(axes[0], kinds):
        s = studies[(kd, target)][0]
        p, a = s.loo_pred, s.loo_actual
        t = int(s.loo_test)
        if p.size <= 2:
            ax.set_title(f"{target}, {labels[kd]}: no leave-one-out points (loo_points)")
            continue
        ax.scatter(p.ravel(), a.ravel(), s=3, alpha=0.3, label="all test images")
        ax.scatter(p[t], a[t], s=14, color="C3", label="highest-loss test image")
        lim = np.abs(np.concatenate([p.ravel(), a.ravel()])).max() * 1.05
        ax.plot([-lim, lim], [-lim, lim], color="grey", lw=0.8)
        r, r1 = loo_correlation(p, a), loo_correlation(p[t], a[t])
        ax.set(xlabel="predicted by influence (nats)", ylabel="actual, retrained (nats)",
               title=f"{target}, {labels[kd]}: Pearson {r['pearson']:.3f}, Spearman {r['spearman']:.3f}\n"
                     f"(highest-loss image: {r1['pearson']:.3f} / {r1['spearman']:.3f})")
        ax.title.set_fontsize(8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def explorer(studies: dict, target: str, k: int = 5):
    """An ipywidgets explorer: a slider over test images -> per source family, the k most
    helpful and k most harmful training images. Returns the widget (Jupyter, Colab, Binder)."""
    import ipywidgets as widgets
    n_test = len(next(ss for (_, t), ss in studies.items() if t == target)[0].y_test)
    out = widgets.Output()

    def draw(t):
        out.clear_output(wait=True)
        with out:
            plot_examples(studies, target, [t], k=k)
            plt.show()
    slider = widgets.IntSlider(0, 0, n_test - 1, description="test image")
    slider.observe(lambda ch: draw(ch["new"]), names="value")
    draw(0)
    return widgets.VBox([slider, out])


def findings(studies: dict, n_boot: int = 2000) -> str:
    """Markdown findings computed from the studies: per target the robust and natural shares
    with CIs, the paired difference and its verdict, the paper's numbers, and the LOO check."""
    paper = reference.INFLUENCE
    table = summary(studies, n_boot).set_index(["target", "kind"])
    labels = _labels(studies)
    out = []
    for t in sorted({t for _, t in studies}):
        if (t, "robust") not in table.index or (t, "natural") not in table.index:
            continue
        r, nat = table.loc[(t, "robust")], table.loc[(t, "natural")]
        s0 = studies[("robust", t)][0]
        n, n_test = s0.I.shape[1], s0.I.shape[0]
        parts = [f"**{t}** (n = {n} training images, {n_test} test images, head-only, "
                 f"{int(r['sources'])} robust / {int(nat['sources'])} natural source seeds; head test "
                 f"accuracy {r['test_acc']:.1f}% vs {nat['test_acc']:.1f}%)."]
        for key, name in (("top1", "the most helpful training image shares the test image's class"),
                          ("3of5", "at least 3 of the 5 most helpful training images share it")):
            m, lo, hi = robust_minus_natural(studies, t, "topk" if key == "top1" else "3of5",
                                             n_boot=n_boot)
            same_dir = (m > 0) == (paper[key]["robust"] > paper[key]["natural"]) and lo > 0
            parts.append(
                f"For {r[key]:.1f}% [{r[key + '_lo']:.1f}, {r[key + '_hi']:.1f}] of test images with "
                f"the robust source ({labels['robust']}) and {nat[key]:.1f}% "
                f"[{nat[key + '_lo']:.1f}, {nat[key + '_hi']:.1f}] with the natural one, {name}; "
                f"the paired difference is {m:+.1f} points [{lo:+.1f}, {hi:+.1f}], "
                f"{common.verdict(lo, hi, 'robust source')}. The paper reports "
                f"{paper[key]['robust']:.2f}% vs {paper[key]['natural']:.2f}% (CIFAR-10, n = 3200): "
                + ("this run reproduces the direction." if same_dir else
                   "this run does **not** reproduce a significant robust advantage."))
        parts.append(f"A random ranking would give {r['chance']:.1f}% for the top-1 share.")
        parts.append("" if np.isnan(r["loo_pearson"]) else
                     f"Influence vs actual leave-one-out retraining: Pearson {r['loo_pearson']:.3f} "
                     f"(robust) and {nat['loo_pearson']:.3f} (natural), Spearman "
                     f"{r['loo_spearman']:.3f} and {nat['loo_spearman']:.3f} (median over sources, "
                     f"all test images x the retrained points; Koh & Liang report about 0.99 for "
                     f"convex models); the actual changes are {r['loo_slope']:.2f} and "
                     f"{nat['loo_slope']:.2f} times the predicted ones (least-squares slope; 1 = "
                     f"right scale, > 1 = influence underestimates the effect of a removal).")
        parts.append(f"With the authors' estimator instead (Hessian without the L2 term, "
                     f"pseudo-inverse cutting eigenvalues below 5% of the largest), the top-1 "
                     f"same-class share would be {r['top1_authors']:.1f}% (robust) vs "
                     f"{nat['top1_authors']:.1f}% (natural).")
        out.append(" ".join(p for p in parts if p))
    return "\n\n".join(out)


def headline(studies: dict, n_boot: int = 2000) -> dict:
    """The chapter's headline numbers as plain floats / strings, for the first influence target
    (in run order, ``target``): the top-1 same-class share (percent of test images) with the
    natural and the robust source and their 95% bootstrap CIs (``top1_natural``,
    ``top1_natural_lo``, ``top1_natural_hi``, likewise ``top1_robust*``), the paired
    robust-minus-natural difference in points with its CI (``top1_diff``, ``top1_diff_lo``,
    ``top1_diff_hi``), the paper's shares (``paper_top1_robust`` = 78.61,
    ``paper_top1_natural`` = 55.08), and over *all* influence targets with both families:

    ``verdict`` -- "reproduced" if the paired top-1 difference's 95% CI lies above 0 on every
    target, "partly" if on some but not all, "not reproduced" if on none (also when there is no
    target with both families); ``verdict_detail`` says on which targets.

    The same bootstrap (``n_boot`` resamples, seed 0) as :func:`findings`, so the numbers match
    its text.
    """
    nan = float("nan")
    table = summary(studies, n_boot).set_index(["target", "kind"])
    targets = [t for t in _targets(studies)
               if (t, "robust") in table.index and (t, "natural") in table.index]
    diffs = {t: robust_minus_natural(studies, t, "topk", 1, n_boot) for t in targets}
    above = [t for t in targets if diffs[t][1] > 0]
    out = dict(target=targets[0] if targets else "")
    for kind in KINDS:
        row = table.loc[(targets[0], kind)] if targets else None
        for suffix in ("", "_lo", "_hi"):
            out[f"top1_{kind}{suffix}"] = float(row["top1" + suffix]) if targets else nan
    m, lo, hi = diffs[targets[0]] if targets else (nan, nan, nan)
    out.update(top1_diff=float(m), top1_diff_lo=float(lo), top1_diff_hi=float(hi),
               paper_top1_robust=float(reference.INFLUENCE["top1"]["robust"]),
               paper_top1_natural=float(reference.INFLUENCE["top1"]["natural"]))
    if targets and len(above) == len(targets):
        out["verdict"] = "reproduced"
    elif above:
        out["verdict"] = "partly"
    else:
        out["verdict"] = "not reproduced"
    out["verdict_detail"] = (f"robust-minus-natural top-1 CI above 0 on {len(above)} of "
                             f"{len(targets)} influence targets"
                             + (f" ({', '.join(above)})" if above else ""))
    return out


def results_row(values: dict, preset: str) -> dict:
    """The introduction's row for the influence claim (see ``common.ROW_FIELDS``): the top-1
    same-class share natural vs robust and the paired difference's CI."""
    have = bool(values.get("target"))
    return {"claim": "The most influential training image shares the test image's class more "
                     "often with a robust source",
            "paper": f"top-1 same class {values['paper_top1_natural']:.2f}% -> "
                     f"{values['paper_top1_robust']:.2f}% (CIFAR-10, n = 3200)",
            "ours": (f"{values['top1_natural']:.1f}% -> {values['top1_robust']:.1f}% "
                     f"({values['target']}; {preset} preset)" if have else
                     f"no natural/robust pair ({preset} preset)"),
            "ci": (f"difference {values['top1_diff']:+.1f} [{values['top1_diff_lo']:+.1f}, "
                   f"{values['top1_diff_hi']:+.1f}] points" if have else "–"),
            "verdict": values["verdict"]}
