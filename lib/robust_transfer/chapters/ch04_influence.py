"""Chapter 4, influence functions: what only the book shows of the influence study -- the top-k
same-class curves (Figure 4.1), class-sorted influence matrices (Figure 4.2), the most helpful and
harmful training images (Figure 4.3) and its widget explorer, influence vs leave-one-out
retraining (Figure 4.4), the comparison table of the six statistics (natural, robust, robust
minus natural), the findings text and the headline numbers the book glues. The numbers
come from the engine (:mod:`robust_transfer.influence_study`, :mod:`robust_transfer.influence`).
Sign convention: positive influence = helpful (removing the training image raises the test loss).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .. import claims, reference, stats, zoo
from ..influence import (class_mean_matrix, class_sorted, loo_correlation, top_training,
                         topk_same_class)
from ..influence_study import METRICS, chance, robust_minus_natural, share_matrix, summary
from . import common
from .common import claim_values

__all__ = ["plot_topk", "plot_class_matrices", "plot_examples", "plot_loo", "explorer",
           "table", "comparison", "matching_text", "findings", "headline", "results_row",
           "PRIMARY", "COMPARED"]

KINDS = ("natural", "robust")
#: the pre-specified comparison the verdict rests on (``claims.section3``, fixed before any of
#: its numbers was computed): the paired robust-minus-natural per-test AUC on loss-matched
#: heads, fine-tuned setting, first influence target, 95% CI of the (source seed x subset seed)
#: difference matrix (``stats.ci``)
PRIMARY = dict(setting="finetuned", metric="auc_matched")
#: the statistics of the comparison table (``influence_study.METRICS`` names) and their labels
COMPARED = {"top1": "top-1 same-class share (%)", "auc": "same-class AUC x 100",
            "top1_matched": "top-1 share, loss-matched (%)",
            "auc_matched": "AUC x 100, loss-matched (primary)",
            "top1_nn_adjusted": "top-1 minus nearest-neighbour share (points)",
            "top1_authors": "top-1 share, authors' computation (%)"}


def _labels(studies: dict) -> dict:
    """``{kind: source family label}`` (e.g. "natural" -> "Natural")."""
    return {kind: zoo.spec(ss[0].source).label for (kind, _), ss in studies.items()}


def _targets(studies: dict) -> list[str]:
    """The targets of ``studies`` in run order."""
    return list(dict.fromkeys(t for _, t in studies))


def plot_topk(studies: dict, ks=range(1, 101)):
    """Figure: per target, percentage of the top-k most helpful training images that share the
    test image's label vs k, one line per source family: mean over its (source seed x subset
    seed) studies, band = ``stats.ci`` of that matrix (clipped to [0, 100]); chance line."""
    import pandas as pd
    targets = _targets(studies)
    labels = _labels(studies)
    colour = common.colours(KINDS)
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 3.6), squeeze=False)
    for ax, t in zip(axes[0], targets):
        for kind in KINDS:
            ss = studies.get((kind, t))
            if not ss:
                continue
            kk = [k for k in ks if k <= ss[0].I.shape[1]]
            curves = [100 * topk_same_class(s.I, s.y_test, s.y_train, kk).mean(0) for s in ss]
            src = list(dict.fromkeys(s.source for s in ss))
            rows = []
            for i, k in enumerate(kk):
                m = pd.DataFrame([dict(src=src.index(s.source), seed=s.meta["seed"], v=c[i])
                                  for s, c in zip(ss, curves)]).pivot_table(
                    index="src", columns="seed", values="v")
                c = stats.ci(m.to_numpy())
                rows.append(dict(k=k, mean=c["mean"], ci_low=c["ci_low"], ci_high=c["ci_high"]))
            common.band(ax, pd.DataFrame(rows), f"{labels[kind]} ({len(ss)} studies)",
                        colour[kind], x="k", clip=(0, 100))
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


def table(by_setting: dict) -> "pandas.DataFrame":
    """``summary`` of each setting's studies (``{setting: studies}``) stacked: one row per
    (setting, target, kind), shares in percent with crossed-seed CIs, baselines beside them;
    the penalties as text (2 significant digits)."""
    import pandas as pd
    out = pd.concat([summary(st).assign(setting=setting) for setting, st in by_setting.items()],
                    ignore_index=True)
    for col in ("l2", "l2_matched", "l2_matched_min", "l2_matched_max"):   # not 0.0 when rounded
        out[col] = out[col].map(lambda v: f"{v:.2g}")
    return out


def _pairs_positive(studies: dict, target: str, metric: str = "top1") -> tuple[int, int]:
    """(cells with robust > natural, cells) of the (source seed x subset seed) difference."""
    d = (share_matrix(studies[("robust", target)], metric)
         - share_matrix(studies[("natural", target)], metric)).to_numpy().ravel()
    d = d[~np.isnan(d)]
    return int((d > 0).sum()), int(d.size)


def _ci_text(m, lo, hi, signed: bool = False) -> str:
    """``common.fmt_ci``, or "–" for a missing value."""
    return common.fmt_ci(m, lo, hi, signed=signed) if np.isfinite(m) else "–"


def comparison(studies: dict) -> "pandas.DataFrame":
    """Per target (with both families) and statistic of :data:`COMPARED`: the natural and the
    robust value and the paired robust-minus-natural difference, each "mean [95% CI]" over the
    (source seed x subset seed) matrix (``summary``, ``robust_minus_natural``), as text."""
    import pandas as pd
    tab = summary(studies).set_index(["target", "kind"])
    rows = []
    for t in _targets(studies):
        if (t, "robust") not in tab.index or (t, "natural") not in tab.index:
            continue
        for metric, label in COMPARED.items():
            row = dict(target=t, statistic=label)
            for kind in KINDS:
                r = tab.loc[(t, kind)]
                row[kind] = _ci_text(r[metric], r[f"{metric}_lo"], r[f"{metric}_hi"])
            row["robust - natural"] = _ci_text(*robust_minus_natural(studies, t, metric),
                                               signed=True)
            rows.append(row)
    return pd.DataFrame(rows, columns=["target", "statistic", *KINDS, "robust - natural"]
                        ).set_index(["target", "statistic"])


_SAYS = {claims.HOLDS: "robust ahead (the whole interval above 0)",
         claims.CONTRADICTED: "natural ahead (the whole interval below 0)",
         claims.UNDECIDED: "no difference shown (the interval includes 0)",
         claims.NOT_TESTABLE: "not testable"}


def matching_text(claim, target: str) -> str:
    """Plain words on what loss matching does to the robust advantage, read from the labels of
    ``claim``'s (``claims.section3``) parts on ``target``: for the top-1 share and the AUC, the
    label at the default penalty beside the label with loss-matched heads; "" without them."""
    if claim is None:
        return ""
    parts = {p.key: p for p in claim.parts}
    out = []
    for metric, words in (("top1", "top-1 share"), ("auc", "AUC")):
        before = parts.get(f"{claims.target_key(target)}_{metric}")
        after = parts.get(f"{claims.target_key(target)}_{metric}_matched")
        if before is None or after is None:
            continue
        how = (f"at the default penalty {_SAYS[before.label]}, {before.interval_text()}; with "
               f"loss-matched heads {_SAYS[after.label]}, {after.interval_text()}")
        if before.label == claims.HOLDS and after.label != claims.HOLDS:
            turn = (" and reverses" if after.label == claims.CONTRADICTED else "")
            out.append(f"**The robust advantage in the {words} disappears{turn} when the heads "
                       f"are loss-matched** ({how}).")
        elif before.label == claims.HOLDS:
            out.append(f"The robust advantage in the {words} survives loss matching ({how}).")
        elif after.label == claims.HOLDS:
            out.append(f"A robust advantage in the {words} appears only with loss-matched heads "
                       f"({how}).")
        else:
            out.append(f"No robust advantage in the {words} is shown, with or without loss "
                       f"matching ({how}).")
    return " ".join(out)


def findings(by_setting: dict) -> str:
    """Markdown findings per setting and target: robust and natural shares with crossed-seed
    CIs, the paired difference and its verdict, the nearest-neighbour baselines, the paper's
    numbers, the loss matching (target, penalties, achieved losses) and the AUCs, the
    authors' computation, and (fine-tuned setting) the leave-one-out check."""
    paper = reference.INFLUENCE
    out = []
    for setting, studies in by_setting.items():
        tab = summary(studies).set_index(["target", "kind"])
        labels = _labels(studies)
        for t in _targets(studies):
            if (t, "robust") not in tab.index or (t, "natural") not in tab.index:
                continue
            r, nat = tab.loc[(t, "robust")], tab.loc[(t, "natural")]
            what = ("fine-tuned model's last layer" if setting == "finetuned"
                    else "head-only, frozen source features")
            parts = [f"**{t}, {what}** (n = {int(r['n'])} training images, "
                     f"{int(r['sources'])} source seeds x {int(r['subset_seeds'])} subset seeds per "
                     f"family; head test accuracy {r['test_acc']:.1f}% robust vs "
                     f"{nat['test_acc']:.1f}% natural)."]
            for key in ("top1", "3of5"):
                m, lo, hi = robust_minus_natural(studies, t, key)
                pos, cells = _pairs_positive(studies, t, key)
                parts.append(
                    f"{METRICS[key].capitalize()}: {r[key]:.1f}% [{r[key + '_lo']:.1f}, "
                    f"{r[key + '_hi']:.1f}] of test images with the robust source "
                    f"({labels['robust']}), {nat[key]:.1f}% [{nat[key + '_lo']:.1f}, "
                    f"{nat[key + '_hi']:.1f}] with the natural one; paired difference "
                    f"{m:+.1f} points [{lo:+.1f}, {hi:+.1f}] ({pos} of {cells} seed pairs "
                    f"positive), {common.verdict(lo, hi, 'robust source')} (paper: "
                    f"{paper[key]['robust']:.2f}% vs {paper[key]['natural']:.2f}%).")
            m, lo, hi = robust_minus_natural(studies, t, "nn1")
            parts.append(
                f"Baseline, no influence at all: the nearest training image in the head's "
                f"feature space shares the label for {r['nn1']:.1f}% (robust) vs "
                f"{nat['nn1']:.1f}% (natural) of test images (difference {m:+.1f} [{lo:+.1f}, "
                f"{hi:+.1f}]), a random one of the 5 nearest for {r['nn5']:.1f}% vs "
                f"{nat['nn5']:.1f}%; chance {r['chance']:.1f}%. Influence's top-1 share is "
                f"{r['top1'] - r['nn1']:+.1f} (robust) and {nat['top1'] - nat['nn1']:+.1f} "
                f"(natural) points from the nearest-neighbour one.")
            if np.isfinite(r["loss_target"]):
                m, lo, hi = robust_minus_natural(studies, t, "auc_matched")
                parts.append(
                    f"How well the heads fit their training images: mean training cross-entropy "
                    f"{r['train_loss']:.3f} nats (robust) vs {nat['train_loss']:.3f} (natural) "
                    f"at the default penalty l2 = {r['l2']:g}. Loss-matched, every head's "
                    f"penalty is set so that this loss is {r['loss_target']:.3f} nats (the "
                    f"natural heads' mean): penalties {r['l2_matched_min']:.2g} to "
                    f"{r['l2_matched_max']:.2g} (robust) and {nat['l2_matched_min']:.2g} to "
                    f"{nat['l2_matched_max']:.2g} (natural), achieved losses "
                    f"{r['loss_matched']:.3f} and {nat['loss_matched']:.3f}. Same-class AUC x 100 "
                    f"(chance 50) {r['auc']:.1f} vs {nat['auc']:.1f} at the default penalty, "
                    f"{r['auc_matched']:.1f} vs {nat['auc_matched']:.1f} loss-matched "
                    f"(difference {m:+.1f} [{lo:+.1f}, {hi:+.1f}]); top-1 share loss-matched "
                    f"{r['top1_matched']:.1f}% vs {nat['top1_matched']:.1f}%.")
            if setting == "finetuned" and not np.isnan(r["loo_pearson"]):
                parts.append(
                    f"Influence vs actual leave-one-out retraining of this head: Pearson "
                    f"{r['loo_pearson']:.3f} / {nat['loo_pearson']:.3f} (robust / natural), "
                    f"Spearman {r['loo_spearman']:.3f} / {nat['loo_spearman']:.3f}, slope "
                    f"{r['loo_slope']:.2f} / {nat['loo_slope']:.2f} (median over studies; 1 = "
                    f"right scale).")
            parts.append(f"The authors' computation (their head, trained as their code trains "
                         f"it on the same raw features -- test accuracy {r['authors_acc']:.1f}% "
                         f"vs {nat['authors_acc']:.1f}% -- and their pseudo-inverse) gives "
                         f"{r['top1_authors']:.1f}% vs {nat['top1_authors']:.1f}% top-1; their "
                         f"pseudo-inverse on our head {r['top1_pinv']:.1f}% vs "
                         f"{nat['top1_pinv']:.1f}%.")
            out.append(" ".join(parts))
    return "\n\n".join(out)


def headline(studies: dict, preset: str | None = None) -> dict:
    """The chapter's headline numbers (plain floats / strings) from the **fine-tuned** setting's
    studies, on the first influence target in run order (``target``): for the primary
    statistic (``auc_matched``: same-class AUC x 100 on loss-matched heads) and the paper's
    (``top1``: top-1 same-class share, percent of test images), natural and robust with
    crossed-seed 95% CIs (``<stat>_natural``, ``_lo``, ``_hi``, likewise ``<stat>_robust*``)
    and the paired robust-minus-natural difference (``<stat>_diff``, ``_lo``, ``_hi``); the
    seed pairs where the primary is larger for robust (``pairs_positive`` of ``pairs``), the
    nearest-neighbour baseline (``nn1_natural``, ``nn1_robust``), the loss-matching target
    (``loss_target``, nats), the paper's shares (``paper_top1_robust`` = 78.61,
    ``paper_top1_natural`` = 55.08), ``matching`` (:func:`matching_text`), and

    ``verdict`` -- the :data:`PRIMARY` comparison's label by ``claims.section3`` (its 95% CI:
    above 0 reproduced, below 0 contradicted, else not reproduced; "not tested" without a
    natural/robust pair), with ``part_<key>_label`` / ``_text`` (``common.claim_values``);
    ``verdict_detail`` says so and lists the other targets' primary CIs.
    """
    nan = float("nan")
    tab = summary(studies).set_index(["target", "kind"]) if studies else None
    targets = [t for t in _targets(studies)
               if (t, "robust") in tab.index and (t, "natural") in tab.index]
    out = dict(target=targets[0] if targets else "")
    primary = PRIMARY["metric"]
    for stat in (primary, "top1"):
        for kind in KINDS:
            row = tab.loc[(targets[0], kind)] if targets else {}
            for suffix in ("", "_lo", "_hi"):
                out[f"{stat}_{kind}{suffix}"] = float(row[stat + suffix]) if targets else nan
        m, lo, hi = robust_minus_natural(studies, targets[0], stat) if targets else (nan,) * 3
        out.update({f"{stat}_diff": m, f"{stat}_diff_lo": lo, f"{stat}_diff_hi": hi})
    for kind in KINDS:
        out[f"nn1_{kind}"] = float(tab.loc[(targets[0], kind), "nn1"]) if targets else nan
    pos, cells = _pairs_positive(studies, targets[0], primary) if targets else (0, 0)
    out.update(pairs_positive=float(pos), pairs=float(cells),
               loss_target=float(tab.loc[(targets[0], "natural"), "loss_target"])
               if targets else nan,
               paper_top1_robust=float(reference.INFLUENCE["top1"]["robust"]),
               paper_top1_natural=float(reference.INFLUENCE["top1"]["natural"]))
    claim = claims.section3(studies, preset)
    out.update(claim_values(claim))
    out["matching"] = matching_text(claim, out["target"])
    others = "; ".join(
        f"{t}: {d[0]:+.1f} [{d[1]:+.1f}, {d[2]:+.1f}]"
        for t, d in ((t, robust_minus_natural(studies, t, primary)) for t in targets[1:]))
    out["verdict_detail"] = (
        f"pre-specified: fine-tuned setting, {out['target'] or 'no target'}, robust-minus-natural "
        f"same-class AUC x 100 on loss-matched heads {out[primary + '_diff']:+.1f} "
        f"[{out[primary + '_diff_lo']:+.1f}, {out[primary + '_diff_hi']:+.1f}], {pos} of "
        f"{cells} seed pairs positive" + (f"; other targets {others}" if others else ""))
    return out


def results_row(values: dict, preset: str) -> dict:
    """The introduction's row for the influence claim (see ``common.ROW_FIELDS``): the paper's
    top-1 share, ours beside the primary statistic (AUC x 100 on loss-matched heads) natural vs
    robust, and the primary difference's CI."""
    have = bool(values.get("target"))
    return {"claim": "The most influential training images share the test image's class more "
                     "often with a robust source",
            "paper": f"top-1 same class {values['paper_top1_natural']:.2f}% -> "
                     f"{values['paper_top1_robust']:.2f}% (CIFAR-10, n = 3200)",
            "ours": (f"top-1 {values['top1_natural']:.1f}% -> {values['top1_robust']:.1f}%; "
                     f"loss-matched AUC x 100 {values['auc_matched_natural']:.1f} -> "
                     f"{values['auc_matched_robust']:.1f} ({values['target']}, fine-tuned; "
                     f"{preset} preset)" if have else
                     f"no natural/robust pair ({preset} preset)"),
            "ci": (f"loss-matched AUC difference {values['auc_matched_diff']:+.1f} "
                   f"[{values['auc_matched_diff_lo']:+.1f}, {values['auc_matched_diff_hi']:+.1f}]"
                   if have else "–"),
            "verdict": values["verdict"]}
