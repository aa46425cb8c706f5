"""Chapter 1, the source models: what only the book shows of the zoo — the source table as
displayed, the published paper-scale accuracies, accuracy-vs-attack curves (Figure 1.1), the
adversarial examples and their edge alignment (Figure 1.2), the findings text and the headline
numbers the book glues. The numbers come from the engine (:mod:`robust_transfer.zoo`)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from .. import reference, zoo
from . import common

__all__ = ["display_table", "published_table", "accuracy_curves", "attack_curves",
           "adversarial_study", "adversarial_examples", "alignment_table", "findings", "headline"]

#: the attack of Figure 1.2 (pixel units) and the number of test images it runs on
ADV_NORM, ADV_EPS, ADV_STEPS, ADV_IMAGES = "l2", 2.0, 10, 100
#: the robust-accuracy column the text quotes (L2 attack, eps = 1)
ROBUST_COL = "L2 1"


def display_table(table: pd.DataFrame):
    """The source table for display: accuracies in percent (one decimal), no family column, no
    index. Returns a pandas Styler."""
    acc_cols = [c for c in table.columns if c == "clean_acc" or c.startswith(("L2 ", "Linf "))]
    shown = table.drop(columns=["family"]).copy()
    shown[acc_cols] = (100 * shown[acc_cols]).round(1)
    return shown.style.hide(axis="index").format(precision=1)


def published_table() -> pd.DataFrame:
    """The paper's sources with their ImageNet top-1 (%) as the authors report it: columns
    source (label), id, clean_top1."""
    return pd.DataFrame([dict(source=zoo.spec(s).label, id=s, clean_top1=100 * a)
                         for s, a in reference.PUBLISHED_CLEAN_ACC.items()])


def accuracy_curves(source_table: pd.DataFrame) -> pd.DataFrame:
    """Long table of accuracy vs attack eps per family (mean, min, max over source seeds):
    columns family, label, attack (``L2``/``Linf``), attack_eps (0 = clean), mean, min, max
    (fractions), seeds. It only feeds Figure 1.1, so it lives with the figure."""
    rows = []
    for (family, label), g in source_table.groupby(["family", "label"], sort=False):
        for attack in ("L2", "Linf"):
            cols = [("clean_acc", 0.0)] + [(c, float(c.split()[1])) for c in g.columns
                                           if c.startswith(attack + " ")]
            for col, e in cols:
                v = g[col].astype(float)
                rows.append(dict(family=family, label=label, attack=attack, attack_eps=e,
                                 mean=v.mean(), min=v.min(), max=v.max(), seeds=len(v)))
    return pd.DataFrame(rows)


def attack_curves(curves: pd.DataFrame):
    """Figure 1.1: accuracy (%) vs attack eps per source family (:func:`accuracy_curves`), one
    panel per attack norm: mean over source seeds, band = min..max over seeds. Returns the
    figure."""
    attacks_ = list(dict.fromkeys(curves["attack"]))
    colour = common.colours(curves["label"].unique())
    fig, axes = plt.subplots(1, len(attacks_), figsize=(5.5 * len(attacks_), 4), sharey=True,
                             squeeze=False)
    for ax, attack in zip(axes[0], attacks_):
        for label, g in curves[curves.attack == attack].groupby("label", sort=False):
            seeds = int(g.seeds.iloc[0])
            ax.plot(g.attack_eps, 100 * g["mean"], "o-", color=colour[label],
                    label=f"{label} ({seeds} seed{'s' * (seeds > 1)})")
            ax.fill_between(g.attack_eps, 100 * g["min"], 100 * g["max"], color=colour[label],
                            alpha=0.2)
        ax.set(xlabel=f"{attack} attack ε (pixel units, 0 = clean)", title=f"PGD {attack} attack")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("accuracy (%)")
    axes[0, -1].legend()
    fig.tight_layout()
    return fig


def adversarial_study(cfg, grid: dict, *, images: int = ADV_IMAGES) -> dict | None:
    """The inputs of Figure 1.2, computed by the engine: for the first source of each family of
    ``cfg.sources``, PGD adversarial examples (:data:`ADV_NORM`, :data:`ADV_EPS`,
    :data:`ADV_STEPS`) of the first ``images`` source test images. Returns ``{"x", "class_names",
    "examples" (:func:`zoo.adversarial_examples`), "alignment" ({label: mean edge alignment})}``,
    or None for downloaded (ImageNet) sources, which have no local test images here."""
    scale = zoo.spec(cfg.sources[0]).scale
    if scale not in zoo.TRAINED_SCALES:
        return None
    x, y, class_names = zoo.source_data(scale, "test", allow_download=cfg.allow_download)
    x, y = x[:images], y[:images]
    examples = zoo.adversarial_examples(grid, zoo.family_representatives(cfg.sources), x, y,
                                        norm=ADV_NORM, eps=ADV_EPS, steps=ADV_STEPS)
    return dict(x=x, class_names=class_names, examples=examples,
                alignment=zoo.edge_alignment_by_source(examples))


def adversarial_examples(study: dict, show=(0, 7, 14, 21)):
    """Figure 1.2: per source (row), for test images ``show``: the image, its adversarial
    example (title: the prediction) and the perturbation scaled to [-1, 1] (title: its edge
    alignment). ``study`` is :func:`adversarial_study`'s output. Returns the figure."""
    x, names, examples = study["x"], study["class_names"], study["examples"]
    fig, axes = plt.subplots(len(examples), 3 * len(show),
                             figsize=(3.3 * len(show), 1.3 * len(examples)), squeeze=False)
    for r, e in enumerate(examples.values()):
        delta = (e["x_adv"] - x).mean(1).detach().cpu()
        for j, i in enumerate(show):
            a = axes[r, 3 * j:3 * j + 3]
            common.show_image(a[0], x[i])
            common.show_image(a[1], e["x_adv"][i], title=str(names[e["pred"][i]])[:8])
            a[2].imshow((delta[i] / delta[i].abs().max().clamp_min(1e-8)).numpy(), cmap="gray",
                        vmin=-1, vmax=1)
            a[2].set_title(f"{e['alignment'][i]:.2f}", fontsize=8)
            a[2].set_xticks([]), a[2].set_yticks([])
        axes[r, 0].set_ylabel(e["label"], rotation=0, ha="right")
    fig.tight_layout()
    return fig


def alignment_table(alignment: dict) -> pd.DataFrame:
    """Mean edge alignment per source label, rounded to 3 decimals, as a one-column table."""
    return pd.Series(alignment, name=f"mean edge alignment ({ADV_IMAGES} test images)",
                     dtype=float).round(3).to_frame()


def _families(t: pd.DataFrame, robust_col: str) -> pd.DataFrame:
    """Per family: label, norm, eps, mean clean and mean ``robust_col`` accuracy (fractions)."""
    return t.groupby("family", sort=False).agg(label=("label", "first"), norm=("norm", "first"),
                                               eps=("eps", "first"), clean=("clean_acc", "mean"),
                                               robust=(robust_col, "mean"))


def findings(source_table: pd.DataFrame, alignment: dict | None = None) -> str:
    """Markdown sentences computed from the source table (and the perturbations' mean edge
    alignment per source label): does clean accuracy fall and robust accuracy rise with the
    training eps, the noise control, seed spread, the L-inf source, training time."""
    from scipy import stats
    t = source_table
    robust_col = ROBUST_COL if ROBUST_COL in t else "clean_acc"
    fam = _families(t, robust_col)
    l2 = fam[fam.norm.isin(["natural", "l2"])].sort_values("eps")
    lines = []
    if len(l2) >= 3:
        rc = stats.spearmanr(l2.eps, l2.clean).statistic
        rr = stats.spearmanr(l2.eps, l2.robust).statistic
        steps = ", ".join(f"{r.label}: {100 * r.clean:.1f}% clean / {100 * r.robust:.1f}% robust"
                          for r in l2.itertuples())
        lines.append(
            f"Across the L2 training ε ({steps}), the rank correlation of training ε with clean "
            f"accuracy is {rc:+.2f} and with L2 ε=1 robust accuracy {rr:+.2f}: clean accuracy "
            f"{'falls' if rc < 0 else 'does not fall'} and robust accuracy "
            f"{'rises' if rr > 0 else 'does not rise'} with ε"
            f"{' (as in the paper)' if rc < 0 and rr > 0 else ' (unlike the paper)'}.")
    if len(l2):
        nat, rob = l2.iloc[0], l2.iloc[-1]
        p_drop = 100 * (reference.PUBLISHED_CLEAN_ACC["paper/imagenet/natural"]
                        - reference.PUBLISHED_CLEAN_ACC["paper/imagenet/l2/3"])
        drop = 100 * (nat.clean - rob.clean)
        lines.append(f"The most robust L2 source ({rob.label}) {'loses' if drop > 0 else 'gains'} "
                     f"{abs(drop):.1f} points of clean accuracy against {nat.label} training (the "
                     f"paper's ImageNet L2 ε=3 source loses {p_drop:.1f}).")
    noise, l2_1 = fam[fam.norm == "noise"], fam[(fam.norm == "l2") & (fam.eps == 1.0)]
    if len(noise) and len(l2_1):
        nz, rb = noise.iloc[0], l2_1.iloc[0]
        lines.append(f"The Gaussian-noise control ({nz.label}) keeps {100 * nz.clean:.1f}% clean "
                     f"accuracy and reaches {100 * nz.robust:.1f}% under the L2 ε=1 attack, against "
                     f"{100 * rb.robust:.1f}% for {rb.label}: noise training "
                     f"{'does not buy' if nz.robust < rb.robust else 'buys as much'} adversarial "
                     f"robustness.")
    spread = [f"{g.label.iloc[0]} {100 * g.clean_acc.min():.1f}-{100 * g.clean_acc.max():.1f}% "
              f"({len(g)} seeds)" for _, g in t.groupby("family", sort=False) if len(g) > 1]
    if spread:
        lines.append("Sources differing only in their training seed span " + ", ".join(spread)
                     + " clean accuracy.")
    linf = fam[fam.norm == "linf"]
    if len(linf) and "Linf 0.1" in t:
        lf = linf.iloc[0]
        lines.append(f"The L∞ source ({lf.label}) has {100 * lf.clean:.1f}% clean, "
                     f"{100 * lf.robust:.1f}% L2 ε=1 robust and "
                     f"{100 * t[t.family == linf.index[0]]['Linf 0.1'].mean():.1f}% L∞ ε=0.1 robust "
                     f"accuracy.")
    if alignment:
        best = max(alignment, key=alignment.get)
        adversarial = fam.set_index("label").norm.get(best) in ("l2", "linf")
        lines.append(f"Perturbation edge alignment: "
                     f"{', '.join(f'{k} {v:.2f}' for k, v in alignment.items())}; highest for "
                     f"{best}, " + ("an adversarially trained source: robust models' perturbations "
                                    "follow shapes more." if adversarial else
                                    "not an adversarially trained source: here robust models' "
                                    "perturbations do not follow shapes more."))
    secs = t.train_seconds.dropna()
    if len(secs):
        lines.append(f"Training the {len(secs)} sources took {secs.sum() / 60:.1f} minutes in total "
                     f"on this machine (when they were first trained).")
    return " ".join(lines)


def headline(source_table: pd.DataFrame, alignment: dict | None = None) -> dict:
    """The chapter's headline numbers as plain floats / strings (NaN where the sources do not
    give one, e.g. no robust accuracy is measured for downloaded sources): the natural and the
    most robust L2 family (``natural_label``, ``robust_label``), their mean clean and L2 ε=1
    robust accuracy (``clean_natural_pct``, ``clean_robust_pct``, ``l2_robust_natural_pct``,
    ``l2_robust_robust_pct``; percent), the Spearman correlations of training ε with clean and
    robust accuracy over the L2 families (``spearman_eps_clean``, ``spearman_eps_robust``) and
    the two families' mean perturbation edge alignment (``alignment_natural``,
    ``alignment_robust``)."""
    from scipy import stats
    nan = float("nan")
    t = source_table
    has_robust = ROBUST_COL in t and t[ROBUST_COL].notna().any()
    fam = _families(t.assign(_robust=t[ROBUST_COL] if has_robust else nan), "_robust")
    l2 = fam[fam.norm.isin(["natural", "l2"])].sort_values("eps")
    out = dict(natural_label="", robust_label="", clean_natural_pct=nan, clean_robust_pct=nan,
               l2_robust_natural_pct=nan, l2_robust_robust_pct=nan, spearman_eps_clean=nan,
               spearman_eps_robust=nan, alignment_natural=nan, alignment_robust=nan)
    if len(l2):
        nat, rob = l2.iloc[0], l2.iloc[-1]
        alignment = alignment or {}
        out.update(natural_label=str(nat.label), robust_label=str(rob.label),
                   clean_natural_pct=100 * float(nat.clean), clean_robust_pct=100 * float(rob.clean),
                   l2_robust_natural_pct=100 * float(nat.robust),
                   l2_robust_robust_pct=100 * float(rob.robust),
                   alignment_natural=float(alignment.get(nat.label, nan)),
                   alignment_robust=float(alignment.get(rob.label, nan)))
    if len(l2) >= 3:
        out["spearman_eps_clean"] = float(stats.spearmanr(l2.eps, l2.clean).statistic)
        if has_robust:
            out["spearman_eps_robust"] = float(stats.spearmanr(l2.eps, l2.robust).statistic)
    return out
