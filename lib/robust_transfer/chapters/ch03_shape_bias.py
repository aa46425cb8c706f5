"""Chapter 3, shape or texture: what only the book shows of the shape-bias measurements — the
stimuli (Figure 3.1), shape bias per source (Figure 3.2), accuracy under low-pass, high-pass and
patch shuffling (Figure 3.3), the display tables, the findings text and the headline numbers the
book glues. The numbers come from the engine (:mod:`robust_transfer.shape_bias`)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..shape_bias import trend
from . import common

__all__ = ["shape_bias_table", "accuracy_table", "findings", "headline", "plot_stimuli",
           "plot_shape_bias", "plot_probe_curves"]

_NORM_ORDER = {"natural": 0, "l2": 1, "linf": 2, "noise": 3}
_STIMULUS = {"cue_fourier": "(a) Fourier", "cue_silhouette": "(b) silhouette"}


def _family_order(summary) -> list[str]:
    """Families natural first, then L2, L-inf, noise, each by growing eps."""
    fam = summary.drop_duplicates("family")
    fam = fam.assign(_r=fam["norm"].map(_NORM_ORDER).fillna(9)).sort_values(["_r", "eps"])
    return fam["family"].tolist()


def _setting(probe: str, param) -> str:
    if param is None or np.isnan(param):
        return probe
    return f"{probe} {param:g}x{param:g}" if probe == "patch_shuffle" else f"{probe} σ={param:g}"


def _fmt(r, pct=False) -> str:
    """``value [low, high]`` of a summary row: fractions with 2 decimals, or percent with 1."""
    return common.fmt_ci(r["value"], r["ci_low"], r["ci_high"], pct=pct, digits=1 if pct else 2)


# --------------------------------------------------------------------------- tables
def shape_bias_table(summary) -> pd.DataFrame:
    """Display table: one line per source family, shape bias [95% CI] and coverage per stimulus."""
    out = []
    for f in _family_order(summary):
        g = summary[(summary["family"] == f) & (summary["metric"] == "shape_bias")]
        rec = {"source": g["label"].iloc[0] if len(g) else f}
        for r in g.itertuples():
            name = _STIMULUS.get(r.probe, r.probe)
            rec[f"{name} shape bias"] = common.fmt_ci(r.value, r.ci_low, r.ci_high, digits=2)
            rec[f"{name} coverage"] = f"{100 * r.coverage:.0f}%"
        if len(g):
            rec["coverage if guessing"] = f"{100 * g['chance'].iloc[0]:.0f}%"
            rec["seeds"], rec["CI over"] = int(g["n_seeds"].iloc[0]), g["ci_kind"].iloc[0]
        out.append(rec)
    return pd.DataFrame(out).set_index("source")


def accuracy_table(summary) -> pd.DataFrame:
    """Display table: accuracy % [95% CI] per probe setting (rows) and source family (columns)."""
    acc = summary[summary["metric"] == "accuracy"]
    order = _family_order(summary)
    labels = {f: summary.loc[summary["family"] == f, "label"].iloc[0] for f in order}
    settings = list(dict.fromkeys(_setting(r.probe, r.param) for r in acc.sort_values(
        ["probe", "param"]).itertuples()))
    table = pd.DataFrame(index=settings, columns=[labels[f] for f in order], dtype=object)
    for r in acc.itertuples():
        table.loc[_setting(r.probe, r.param), labels[r.family]] = common.fmt_ci(
            100 * r.value, 100 * r.ci_low, 100 * r.ci_high, digits=1)
    return table


# --------------------------------------------------------------------------- text and numbers
def findings(summary, link=None) -> str:
    """Markdown sentences computed from :func:`robust_transfer.shape_bias.summarize` (and
    :func:`robust_transfer.shape_bias.transfer_link`) tables."""
    lines = []
    nat = summary[summary["norm"] == "natural"]
    if nat.empty:
        return "No natural source among the sources: nothing to compare against."
    params = {pr: sorted(summary.loc[summary["probe"] == pr, "param"].dropna().unique())
              for pr in ("lowpass", "highpass", "patch_shuffle")}

    def at(probe, family, param=None):
        g = summary[(summary["probe"] == probe) & (summary["family"] == family)]
        if param is not None:
            g = g[np.isclose(g["param"].astype(float), param)]
        return g.iloc[0] if len(g) else None

    nat_family = nat["family"].iloc[0]
    others = [f for f in _family_order(summary) if f != nat_family]
    checks = [("cue_fourier", None, "the Fourier-phase shape share (stimulus a)", False),
              ("cue_silhouette", None, "the silhouette shape share (stimulus b)", False)]
    if params["lowpass"]:
        checks.append(("lowpass", max(params["lowpass"]),
                       f"accuracy on blurred images (sigma = {max(params['lowpass']):g} px)", True))
    if params["highpass"]:  # the widest high-pass keeps the most signal (small sigmas ~ chance)
        checks.append(("highpass", max(params["highpass"]),
                       f"accuracy on high-passed images (sigma = {max(params['highpass']):g} px)",
                       True))
    for g in params["patch_shuffle"]:
        checks.append(("patch_shuffle", g, f"accuracy on patch-shuffled images ({g:g}x{g:g} "
                       "tiles: texture kept, shape destroyed)", True))
    for probe, param, what, pct in checks:
        tr = trend(summary, probe, param)
        base = at(probe, nat_family, param)
        if base is None:
            continue
        text = f"- With growing L2 eps, {what} **{tr['direction']}**"
        if np.isfinite(tr["delta"]):
            ends = "; ".join(f"eps {e:g}: {100 * v:.1f}%" if pct else f"eps {e:g}: {v:.2f}"
                             for e, v in zip(tr["eps"], tr["values"]))
            text += f" ({ends}; Spearman rho {tr['spearman']:.2f})" if np.isfinite(
                tr["spearman"]) else f" ({ends})"
        comp = [f"{at(probe, f, param)['label']} {_fmt(at(probe, f, param), pct)}"
                for f in others if at(probe, f, param) is not None
                and at(probe, f, param)["norm"] in ("linf", "noise")]
        text += f". Natural: {_fmt(base, pct)}" + (f"; {'; '.join(comp)}" if comp else "")
        if pct and np.isfinite(base["chance"]):
            text += f" (chance {100 * base['chance']:.0f}%)"
        if not pct:  # shape and texture hits per stimulus: the two parts of the ratio
            hits = [f"{r['label']} {100 * r['value'] * r['coverage']:.0f}% / "
                    f"{100 * (1 - r['value']) * r['coverage']:.0f}%"
                    for r in (at(probe, f, param) for f in [nat_family] + others) if r is not None]
            text += f". Shape / texture hits per stimulus: {'; '.join(hits)}"
        lines.append(text + ".")
    # which cue-conflict stimulus separates the sources
    sep = {}
    for probe in ("cue_fourier", "cue_silhouette"):
        g = summary[summary["probe"] == probe]
        if len(g) >= 2:
            half = ((g["ci_high"] - g["ci_low"]) / 2).mean()
            sep[probe] = (g["value"].max() - g["value"].min(), half, g["coverage"].mean(),
                          g["chance"].mean())
    if len(sep) == 2:
        best = max(sep, key=lambda k: sep[k][0] / max(sep[k][1], 1e-9))
        name = {"cue_fourier": "(a) Fourier", "cue_silhouette": "(b) silhouette"}
        lines.append("- Spread of shape bias across sources: " + "; ".join(
            f"{name[k]} {v[0]:.2f} (mean CI half-width {v[1]:.2f}, mean coverage "
            f"{100 * v[2]:.0f}% vs {100 * v[3]:.0f}% for random guesses)" for k, v in sep.items())
            + f". Stimulus type **{name[best]}** separates the sources more (spread / CI "
            f"half-width {sep[best][0] / max(sep[best][1], 1e-9):.1f}"
            + ("; below 1, so neither type separates them beyond the CIs)."
               if sep[best][0] <= sep[best][1] else ")."))
    if link is None or len(link) == 0:
        lines.append("- **Transfer link:** the transfer chapter's results store has no paired "
                     "robust-vs-natural rows for this configuration, so the shape bias cannot be "
                     "related to transfer gains here (run the transfer chapter first).")
    else:
        for k, g in link.groupby("unfrozen_blocks"):
            parts = "; ".join(f"{r.label}: {r.gain_shape_targets:+.1f} vs "
                              f"{r.gain_texture_target:+.1f}" for r in g.itertuples())
            text = (f"- **Transfer link ({k} unfrozen block(s))**: mean gain over natural on "
                    f"shape-defined targets vs the textures control, in accuracy points: {parts}.")
            robust = g[g["norm"].isin(["l2", "linf"])]
            if len(robust):
                more = int((robust["shape_minus_texture"] > 0).sum())
                text += (f" Robust sources gain more on shape targets than on textures for "
                         f"{more} of {len(robust)} families.")
            if ("shape_bias_fourier" in g and g["shape_bias_fourier"].notna().sum() >= 3
                    and g["shape_bias_fourier"].nunique() > 1
                    and g["shape_minus_texture"].nunique() > 1):
                rho = spearmanr(g["shape_bias_fourier"], g["shape_minus_texture"]).statistic
                text += (f" Across the {len(g)} non-natural families the Spearman correlation "
                         f"between Fourier shape bias and (shape-target gain - texture gain) is "
                         f"{rho:.2f} (few families: descriptive only).")
            lines.append(text)
    return "\n".join(lines)


def headline(summary, link=None) -> dict:
    """This chapter's headline numbers as plain floats / strings (NaN or "" where absent).

    ``natural_label``, ``robust_label``, ``robust_eps``: the natural family and the most robust
    L2 family (largest eps), the two ends :func:`robust_transfer.shape_bias.trend` compares. Per
    cue-conflict stimulus ``s`` in ``fourier``, ``silhouette`` (mini scale) and ``stylized`` (the
    Geirhos images, paper scale): ``{s}_natural``, ``{s}_robust`` (shape bias, fraction),
    ``{s}_natural_low`` / ``_high`` and ``{s}_robust_low`` / ``_high`` (95% CI),
    ``{s}_natural_coverage_pct``, ``{s}_robust_coverage_pct`` (percent) and ``{s}_direction``
    (trend's words: "rises", "falls", "is flat"); ``chance_coverage_pct``: the coverage of
    random guessing. ``blur_sigma`` (px, the widest low-pass) with ``blur_natural_pct``,
    ``blur_robust_pct`` and their ``_low_pct`` / ``_high_pct`` CIs (accuracy, percent).
    ``link_shape_minus_texture``: the robust family's transfer gain on shape targets minus its
    gain on the textures control (accuracy points, at its largest unfrozen_blocks; NaN without
    transfer results).

    ``verdict`` for the claim "adversarial training biases representations toward shape",
    judged on the cue-conflict shape bias only (the direct measure; blur and shuffle accuracies
    are context): for each stimulus type present, the robust family's shape bias *rises* when
    it exceeds natural's by more than the combined CI half-width sqrt(h_nat^2 + h_robust^2)
    (the rule of :func:`robust_transfer.shape_bias.trend`). "reproduced" when every type rises,
    "partly" when at least one but not every type rises, "not reproduced" when none does; "not
    testable" when there is no natural + L2 pair with cue-conflict results. ``verdict_basis``
    says which types rose.
    """
    nan = float("nan")
    out = dict(natural_label="", robust_label="", robust_eps=nan, chance_coverage_pct=nan)
    for s in ("fourier", "silhouette", "stylized"):
        for who in ("natural", "robust"):
            out.update({f"{s}_{who}": nan, f"{s}_{who}_low": nan, f"{s}_{who}_high": nan,
                        f"{s}_{who}_coverage_pct": nan})
        out[f"{s}_direction"] = ""
    out.update(blur_sigma=nan, blur_natural_pct=nan, blur_natural_low_pct=nan,
               blur_natural_high_pct=nan, blur_robust_pct=nan, blur_robust_low_pct=nan,
               blur_robust_high_pct=nan, link_shape_minus_texture=nan,
               verdict="not testable", verdict_basis="")
    ends = summary[summary["norm"].isin(["natural", "l2"])].sort_values("eps", kind="stable")
    if ends.empty or ends["norm"].iloc[0] != "natural" or ends["norm"].iloc[-1] != "l2":
        return out
    nat, rob = ends.iloc[0], ends.iloc[-1]
    out.update(natural_label=str(nat["label"]), robust_label=str(rob["label"]),
               robust_eps=float(rob["eps"]))

    def row(family, probe, param=None):
        g = summary[(summary["family"] == family) & (summary["probe"] == probe)]
        if param is not None:
            g = g[np.isclose(g["param"].astype(float), float(param))]
        return g.iloc[0] if len(g) else None

    rose, judged = [], []
    for s in ("fourier", "silhouette", "stylized"):
        probe = f"cue_{s}"
        pair = row(nat["family"], probe), row(rob["family"], probe)
        if pair[0] is None or pair[1] is None:
            continue
        for who, r in zip(("natural", "robust"), pair):
            out.update({f"{s}_{who}": float(r["value"]), f"{s}_{who}_low": float(r["ci_low"]),
                        f"{s}_{who}_high": float(r["ci_high"]),
                        f"{s}_{who}_coverage_pct": 100 * float(r["coverage"])})
        out["chance_coverage_pct"] = 100 * float(pair[0]["chance"])
        out[f"{s}_direction"] = trend(summary, probe)["direction"]
        judged.append(s)
        if out[f"{s}_direction"] == "rises":
            rose.append(s)
    sigmas = summary.loc[summary["probe"] == "lowpass", "param"].dropna()
    if len(sigmas):
        sigma = float(sigmas.max())
        pair = row(nat["family"], "lowpass", sigma), row(rob["family"], "lowpass", sigma)
        if pair[0] is not None and pair[1] is not None:
            out["blur_sigma"] = sigma
            for who, r in zip(("natural", "robust"), pair):
                out.update({f"blur_{who}_pct": 100 * float(r["value"]),
                            f"blur_{who}_low_pct": 100 * float(r["ci_low"]),
                            f"blur_{who}_high_pct": 100 * float(r["ci_high"])})
    if link is not None and len(link) and (link["family"] == rob["family"]).any():
        g = link[link["family"] == rob["family"]]
        g = g[g["unfrozen_blocks"] == g["unfrozen_blocks"].max()]
        out["link_shape_minus_texture"] = float(g["shape_minus_texture"].iloc[0])
    if judged:
        out["verdict"] = ("reproduced" if len(rose) == len(judged) else
                          "partly" if rose else "not reproduced")
        out["verdict_basis"] = "; ".join(f"{s}: {out[f'{s}_direction']}" for s in judged)
    return out


# --------------------------------------------------------------------------- figures
def plot_stimuli(probes, images, class_names, n: int = 5):
    """Figure 3.1: cue-conflict stimuli (shape image A, texture image B, stimulus) for both
    types, then one row per shape/texture probe; returns the matplotlib Figure."""
    names = list(class_names)
    cue = [p for p in probes if p["texture_labels"] is not None]
    other = [p for p in probes if p["texture_labels"] is None and p["probe"] != "clean"
             and not (p["probe"] == "lowpass" and p["param"] == 0)]
    clean = next(p for p in probes if p["probe"] == "clean")
    rows = 3 * len(cue) + 1 + len(other)
    fig, axes = plt.subplots(rows, n, figsize=(1.6 * n, 1.4 * rows), squeeze=False)
    r = 0
    for p in cue:
        ia, ib = p["pairs"]
        kind = "Fourier" if p["probe"] == "cue_fourier" else "silhouette"
        for j in range(n):
            common.show_image(axes[r, j], images[ia[j]], f"A shape: {names[p['labels'][j]]}")
            common.show_image(axes[r + 1, j], images[ib[j]],
                              f"B texture: {names[p['texture_labels'][j]]}")
            common.show_image(axes[r + 2, j], p["images"][j], f"{kind} A+B")
        r += 3
    for p in [clean] + other:
        for j in range(n):
            par = "" if np.isnan(p["param"]) else (f" {p['param']:g}x{p['param']:g}" if
                                                   p["probe"] == "patch_shuffle" else
                                                   f" σ={p['param']:g}")
            short = {"patch_shuffle": "shuffle", "silhouette": "silh."}.get(p["probe"], p["probe"])
            common.show_image(axes[r, j], p["images"][j], f"{short}{par}: {names[p['labels'][j]]}")
        r += 1
    fig.tight_layout()
    return fig


def plot_shape_bias(summary):
    """Figure 3.2: shape bias (with 95% CI bars, cut to [0, 1]; coverage printed under each bar)
    per source family for the cue-conflict stimulus types; returns the Figure."""
    order = _family_order(summary)
    col = common.family_colours(order)
    titles = {"cue_fourier": "(a) Fourier: phase A + amplitude B",
              "cue_silhouette": "(b) silhouette A filled with texture B",
              "cue_stylized": "Geirhos et al. style-transfer stimuli"}
    probes = [p for p in titles if (summary["probe"] == p).any()]
    fig, axes = plt.subplots(1, len(probes), figsize=(5.5 * len(probes), 3.6), squeeze=False)
    for ax, probe in zip(axes[0], probes):
        g = summary[summary["probe"] == probe].set_index("family")
        fams = [f for f in order if f in g.index]
        g = g.loc[fams]
        xs = np.arange(len(fams))
        v = g["value"].to_numpy(float)
        lo = np.clip(g["ci_low"].to_numpy(float), 0, 1)
        hi = np.clip(g["ci_high"].to_numpy(float), 0, 1)
        ax.bar(xs, v, color=[col[f] for f in fams], alpha=0.8)
        ax.errorbar(xs, v, yerr=[np.maximum(v - lo, 0), np.maximum(hi - v, 0)], fmt="none",
                    ecolor="k", capsize=3)
        for xi, cov in zip(xs, g["coverage"]):
            ax.text(xi, 0.02, f"cov\n{100 * cov:.0f}%", ha="center", fontsize=7)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_xticks(xs, g["label"], rotation=30, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("shape bias")
        ax.set_title(titles[probe])
    fig.tight_layout()
    return fig


def plot_probe_curves(summary):
    """Figure 3.3: accuracy (%) vs sigma under low-pass and high-pass filtering, and vs
    patch-shuffle grid, one line per source family with its 95% CI band (cut to [0, 100]),
    chance dashed; returns the Figure."""
    order = _family_order(summary)
    col = common.family_colours(order)
    panels = [("lowpass", "low-pass: Gaussian sigma (px)"),
              ("highpass", "high-pass: sigma (px)"),
              ("patch_shuffle", "patch shuffle: grid (tiles per side)")]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for ax, (probe, xlabel) in zip(axes, panels):
        for f in order:
            g = summary[(summary["probe"] == probe) & (summary["family"] == f)]
            if g.empty:
                continue
            pct = g.assign(mean=100 * g["value"], ci_low=100 * g["ci_low"],
                           ci_high=100 * g["ci_high"])
            common.band(ax, pct, g["label"].iloc[0], col[f], x="param", clip=(0, 100))
        chance = summary.loc[summary["probe"] == probe, "chance"]
        if len(chance):
            ax.axhline(100 * chance.mean(), color="grey", lw=0.8, ls="--", label="chance")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def results_row(values: dict, preset: str) -> dict:
    """The introduction's row for the shape-bias claim (see ``common.ROW_FIELDS``): the
    cue-conflict shape bias natural vs the most robust L2 family per stimulus type, with CIs."""
    kinds = [k for k in ("fourier", "silhouette", "stylized") if values.get(f"{k}_direction")]
    ours = "; ".join(f"{k}: {values[f'{k}_natural']:.2f} -> {values[f'{k}_robust']:.2f} "
                     f"({values[f'{k}_direction']})" for k in kinds)
    ci = "; ".join(f"{k}: [{values[f'{k}_natural_low']:.2f}, {values[f'{k}_natural_high']:.2f}] -> "
                   f"[{values[f'{k}_robust_low']:.2f}, {values[f'{k}_robust_high']:.2f}]"
                   for k in kinds)
    return {"claim": "Adversarial training biases the representation toward shape",
            "paper": "qualitative (transfer to stylized and low-resolution targets; no shape-bias "
                     "number published)",
            "ours": (f"shape bias {values['natural_label']} -> {values['robust_label']}, {ours} "
                     f"({preset} preset)" if ours else f"no cue-conflict comparison ({preset} preset)"),
            "ci": ci or "–",
            "verdict": values["verdict"]}
