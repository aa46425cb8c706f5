"""Chapter 3, shape or texture: what only the book shows of the shape-bias measurements — the
stylized and low-passed targets (Figure 3.1), transfer to them (Figure 3.2, the paper's test),
the cue-conflict stimuli (Figure 3.3), shape bias per source (Figure 3.4), accuracy under
low-pass, high-pass and patch shuffling (Figure 3.5), the display tables, the findings text and
the headline numbers the book glues. The numbers come from the engine
(:mod:`robust_transfer.shape_bias`, :mod:`robust_transfer.shape_study`). Every cue-conflict kind shown must be in
:data:`robust_transfer.shape_bias.STIMULUS_KINDS` (ValueError otherwise: nothing is dropped
silently)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .. import claims
from ..shape_bias import CUE_CHECKS, STIMULUS_KINDS
from ..shape_study import SHAPE_VS_TEXTURE, VERSIONS, trend
from . import common
from .common import claim_values

__all__ = ["shape_bias_table", "accuracy_table", "validation_table", "versions_table",
           "did_table", "manipulation_table", "textured_table", "findings", "transfer_findings", "textured_findings",
           "headline", "plot_target_versions", "plot_versions", "plot_stimuli",
           "plot_textured_stimuli", "plot_shape_bias", "plot_probe_curves", "results_row"]

_NORM_ORDER = {"natural": 0, "l2": 1, "linf": 2, "noise": 3}


def _kinds(summary) -> list[str]:
    """The cue-conflict kinds (shape-bias probes) present in ``summary``, in
    :data:`STIMULUS_KINDS` order; ValueError naming any kind it does not know."""
    present = list(dict.fromkeys(summary.loc[summary["metric"] == "shape_bias", "probe"]))
    unknown = [k for k in present if k not in STIMULUS_KINDS]
    if unknown:
        raise ValueError(f"stimulus kind(s) {unknown} are not in shape_bias.STIMULUS_KINDS "
                         f"{list(STIMULUS_KINDS)}; add them there so that tables, figures and "
                         f"findings can show them")
    return [k for k in STIMULUS_KINDS if k in present]


def _uninformative(validation) -> list[str]:
    """Kinds whose cue-alone checks fail for some family (cannot separate sources)."""
    if validation is None or len(validation) == 0:
        return []
    bad = validation.loc[~validation["informative"].astype(bool), "kind"]
    return list(dict.fromkeys(bad))


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
        kinds = _kinds(summary)
        for r in sorted(g.itertuples(), key=lambda r: kinds.index(r.probe)):
            name = STIMULUS_KINDS[r.probe]
            rec[f"{name} shape bias"] = common.fmt_ci(r.value, r.ci_low, r.ci_high, digits=2)
            rec[f"{name} coverage"] = f"{100 * r.coverage:.0f}%"
        if len(g):
            rec["coverage if guessing"] = f"{100 * g['chance'].iloc[0]:.0f}%"
            rec["seeds"], rec["CI over"] = int(g["n_seeds"].iloc[0]), g["ci_kind"].iloc[0]
        out.append(rec)
    return pd.DataFrame(out).set_index("source")


def validation_table(validation) -> pd.DataFrame:
    """Display table of :func:`robust_transfer.shape_study.cue_validation`: per stimulus kind and
    source family, accuracy % [95% CI] on each cue alone, chance, and whether the kind is
    informative (both cues usable for every family)."""
    if validation is None or len(validation) == 0:
        return pd.DataFrame()
    order = {f: i for i, f in enumerate(_family_order(validation))}
    v = validation.assign(_k=validation["kind"].map(list(STIMULUS_KINDS).index),
                          _o=validation["family"].map(order)).sort_values(["_k", "_o"])
    return pd.DataFrame({
        "kind": v["kind"].map(STIMULUS_KINDS), "source": v["label"],
        "shape cue alone": [f"{r.shape_probe}: " + common.fmt_ci(
            100 * r.shape_acc, 100 * r.shape_low, 100 * r.shape_high) for r in v.itertuples()],
        "texture cue alone": [f"{r.texture_probe}: " + common.fmt_ci(
            100 * r.texture_acc, 100 * r.texture_low, 100 * r.texture_high)
            for r in v.itertuples()],
        "chance": (100 * v["chance"]).map(lambda c: f"{c:.0f}%"),
        "kind informative": v["informative"].map({True: "yes", False: "no"})}).set_index(
        ["kind", "source"])


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
def findings(summary, link=None, validation=None) -> str:
    """Markdown sentences computed from :func:`robust_transfer.shape_bias.summarize` (and
    :func:`robust_transfer.shape_study.transfer_link`, :func:`robust_transfer.shape_study.
    cue_validation`) tables."""
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
    kinds = _kinds(summary)
    checks = [(k, None, f"the shape share of stimulus {STIMULUS_KINDS[k]}", False) for k in kinds]
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
    for probe in kinds:
        g = summary[summary["probe"] == probe]
        if len(g) >= 2:
            half = ((g["ci_high"] - g["ci_low"]) / 2).mean()
            sep[probe] = (g["value"].max() - g["value"].min(), half, g["coverage"].mean(),
                          g["chance"].mean())
    if len(sep) >= 2:
        best = max(sep, key=lambda k: sep[k][0] / max(sep[k][1], 1e-9))
        name = STIMULUS_KINDS
        lines.append("- Spread of shape bias across sources: " + "; ".join(
            f"{name[k]} {v[0]:.2f} (mean CI half-width {v[1]:.2f}, mean coverage "
            f"{100 * v[2]:.0f}% vs {100 * v[3]:.0f}% for random guesses)" for k, v in sep.items())
            + f". Stimulus type **{name[best]}** separates the sources more (spread / CI "
            f"half-width {sep[best][0] / max(sep[best][1], 1e-9):.1f}"
            + ("; below 1, so no type separates them beyond the CIs)."
               if sep[best][0] <= sep[best][1] else ")."))
    if validation is not None and len(validation):
        for kind, g in validation.groupby("kind", sort=False):
            parts = "; ".join(f"{r.label} {100 * r.shape_acc:.0f}% / {100 * r.texture_acc:.0f}%"
                              for r in g.itertuples())
            text = (f"- **Cue-alone check, {STIMULUS_KINDS[kind]}** (accuracy on "
                    f"{g['shape_probe'].iloc[0]} / {g['texture_probe'].iloc[0]} images, chance "
                    f"{100 * g['chance'].iloc[0]:.0f}%): {parts}. ")
            if bool(g["informative"].iloc[0]):
                text += "Both cues alone are usable by every source: the kind is informative."
            else:
                dead = [c for c in ("shape", "texture") if not g[f"{c}_usable"].all()]
                text += (f"The {' and '.join(dead)} cue alone is not usable (CI at or below "
                         f"chance) for some source, so this kind cannot separate shape from "
                         f"texture reliance even in principle: it is left out of the headline.")
            lines.append(text)
    if link is None or len(link) == 0:
        lines.append("- **Transfer link:** the transfer chapter's results store has no paired "
                     "robust-vs-natural rows for this configuration, so the shape bias cannot be "
                     "related to transfer gains here (run the transfer chapter first).")
    else:
        for k, g in link.groupby("unfrozen_blocks"):
            g = g[g["gain_texture_target"].notna()]   # block counts run on shape targets only
            if g.empty:
                continue
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


def headline(summary, link=None, validation=None, test=None, versions=None,
             preset: str | None = None, textured=None, textured_transfer=None) -> dict:
    """This chapter's headline numbers as plain floats / strings (NaN or "" where absent).

    Transfer (the paper's test; ``test`` = :func:`robust_transfer.shape_study.version_test`,
    ``versions`` = :func:`robust_transfer.shape_study.version_table`), for the
    ``claims.headline_family`` (``robust_label``, ``robust_eps``, ``robust_seeds``) against
    ``natural_label``: per version ``v`` in original / stylized / lowpass ``{v}_natural_pct``,
    ``{v}_robust_pct`` (accuracy, percent, pooled over n and base targets), ``{v}_gain``,
    ``{v}_gain_low``, ``{v}_gain_high`` (robust - natural, points, 95% crossed-seed CI); per
    changed version ``did_{v}``, ``did_{v}_low``, ``did_{v}_high`` (the pre-specified
    difference in differences) and ``did_{v}_direction`` ("grows", "shrinks", "no detectable change").

    ``verdict`` on "the robust advantage grows when texture (or detail) is removed": the label
    of ``claims.section2`` (the stylized and low-pass DiDs and the cue-conflict part, from the
    textured sources when ``textured`` = :func:`robust_transfer.shape_study.textured_test` is
    given, and the textured-source transfer part when ``textured_transfer`` =
    :func:`robust_transfer.shape_study.textured_transfer_test` is; "not tested" without the
    experiment), with ``part_<key>_label`` / ``_text`` per part
    (``common.claim_values``); ``verdict_basis`` gives the two directions.

    Cue conflict (context): per kind ``s`` of :data:`STIMULUS_KINDS` (name without ``cue_``)
    ``{s}_natural``, ``{s}_robust`` (shape bias of the natural and the most robust L2 family),
    their ``_low`` / ``_high`` CIs and ``_coverage_pct``, ``{s}_direction`` (trend's words) and
    ``{s}_informative`` ("yes" / "no" from the cue-alone checks, "" when not checked);
    ``chance_coverage_pct``; ``cue_robust_label``; ``cue_verdict``: "rises" kinds among the
    informative ones ("reproduced" / "partly" / "not reproduced" / "not testable");
    ``blur_sigma`` and the blur accuracies; ``link_shape_minus_texture``.
    """
    nan = float("nan")
    out = dict(natural_label="", robust_label="", robust_eps=nan, robust_seeds=nan)
    for v in VERSIONS:
        out.update({f"{v}_natural_pct": nan, f"{v}_robust_pct": nan, f"{v}_gain": nan,
                    f"{v}_gain_low": nan, f"{v}_gain_high": nan})
    for v in [v for v in VERSIONS if v != "original"]:
        out.update({f"did_{v}": nan, f"did_{v}_low": nan, f"did_{v}_high": nan,
                    f"did_{v}_direction": ""})
    out.update(verdict_basis="")
    out.update(claim_values(claims.section2(test, validation, preset, textured,
                                            textured_transfer)))
    out.update(_cue_headline(summary, link, validation))
    fam = claims.headline_family(test)
    if not fam:
        return out
    t = test[test["family"] == fam]
    first = t.iloc[0]
    out.update(robust_label=str(first["label"]), robust_eps=float(first["eps"]),
               robust_seeds=float(first["n_source_seeds"]))
    if versions is not None and len(versions):
        pooled = versions[versions["n"] == 0]
        nat = pooled.loc[pooled["norm"] == "natural", "label"]
        out["natural_label"] = str(nat.iloc[0]) if len(nat) else ""
        for v in VERSIONS:
            g = pooled[pooled["version"] == v]
            acc = g[g["metric"] == "accuracy"].groupby("norm")["mean"].mean()
            rob = g[(g["metric"] == "accuracy") & (g["family"] == fam)]["mean"]
            gain = g[(g["metric"] == "gain") & (g["family"] == fam)]
            if "natural" in acc:
                out[f"{v}_natural_pct"] = float(acc["natural"])
            if len(rob):
                out[f"{v}_robust_pct"] = float(rob.mean())
            if len(gain) == 1:
                out.update({f"{v}_gain": float(gain["mean"].iloc[0]),
                            f"{v}_gain_low": float(gain["ci_low"].iloc[0]),
                            f"{v}_gain_high": float(gain["ci_high"].iloc[0])})
    for r in t.itertuples():
        out.update({f"did_{r.version}": float(r.did), f"did_{r.version}_low": float(r.ci_low),
                    f"did_{r.version}_high": float(r.ci_high),
                    f"did_{r.version}_direction": str(r.direction)})
    changed = [v for v in VERSIONS if v != "original" and (test["version"] == v).any()]
    if all(out[f"did_{v}_direction"] for v in changed):
        out["verdict_basis"] = "; ".join(f"{v}: robust advantage {out[f'did_{v}_direction']} "
                                         f"({out[f'did_{v}']:+.1f} points)" for v in changed)
    return out


def _cue_headline(summary, link=None, validation=None) -> dict:
    """The cue-conflict part of :func:`headline`."""
    nan = float("nan")
    out = dict(cue_robust_label="", chance_coverage_pct=nan)
    names = [k[len("cue_"):] if k.startswith("cue_") else k for k in STIMULUS_KINDS]
    for s in names:
        for who in ("natural", "robust"):
            out.update({f"{s}_{who}": nan, f"{s}_{who}_low": nan, f"{s}_{who}_high": nan,
                        f"{s}_{who}_coverage_pct": nan})
        out[f"{s}_direction"] = ""
        out[f"{s}_informative"] = ""
    out.update(blur_sigma=nan, blur_natural_pct=nan, blur_natural_low_pct=nan,
               blur_natural_high_pct=nan, blur_robust_pct=nan, blur_robust_low_pct=nan,
               blur_robust_high_pct=nan, link_shape_minus_texture=nan,
               cue_verdict="not testable", cue_verdict_basis="")
    ends = summary[summary["norm"].isin(["natural", "l2"])].sort_values("eps", kind="stable")
    if ends.empty or ends["norm"].iloc[0] != "natural" or ends["norm"].iloc[-1] != "l2":
        return out
    nat, rob = ends.iloc[0], ends.iloc[-1]
    out["cue_robust_label"] = str(rob["label"])
    dead = _uninformative(validation)
    checked = set() if validation is None or len(validation) == 0 else set(validation["kind"])

    def row(family, probe, param=None):
        g = summary[(summary["family"] == family) & (summary["probe"] == probe)]
        if param is not None:
            g = g[np.isclose(g["param"].astype(float), float(param))]
        return g.iloc[0] if len(g) else None

    rose, judged = [], []
    for kind, s in zip(STIMULUS_KINDS, names):
        if kind not in _kinds(summary):
            continue
        pair = row(nat["family"], kind), row(rob["family"], kind)
        if pair[0] is None or pair[1] is None:
            continue
        for who, r in zip(("natural", "robust"), pair):
            out.update({f"{s}_{who}": float(r["value"]), f"{s}_{who}_low": float(r["ci_low"]),
                        f"{s}_{who}_high": float(r["ci_high"]),
                        f"{s}_{who}_coverage_pct": 100 * float(r["coverage"])})
        out["chance_coverage_pct"] = 100 * float(pair[0]["chance"])
        out[f"{s}_direction"] = trend(summary, kind)["direction"]
        if kind in checked:
            out[f"{s}_informative"] = "no" if kind in dead else "yes"
        if kind in dead:
            continue
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
        g = link[(link["family"] == rob["family"]) & link["shape_minus_texture"].notna()]
        g = g[g["unfrozen_blocks"] == g["unfrozen_blocks"].max()]  # with both target kinds
        if len(g):
            out["link_shape_minus_texture"] = float(g["shape_minus_texture"].iloc[0])
    if judged:
        out["cue_verdict"] = ("reproduced" if len(rose) == len(judged) else
                              "partly" if rose else "not reproduced")
        out["cue_verdict_basis"] = "; ".join(f"{s}: {out[f'{s}_direction']}" for s in judged)
    return out


# --------------------------------------------------------------------------- transfer versions
def versions_table(versions) -> pd.DataFrame:
    """Display table of :func:`robust_transfer.shape_study.version_table`: one line per (base
    target, version, source family), accuracy % and robust-minus-natural gain (points) with 95%
    CIs per n and pooled over n."""
    if versions is None or len(versions) == 0:
        return pd.DataFrame()
    order = {f: i for i, f in enumerate(_family_order(versions))}
    out = []
    for (base, version, family), g in versions.groupby(["base_target", "version", "family"],
                                                       sort=False):
        rec = {"target": base, "version": VERSIONS[version], "source": g["label"].iloc[0],
               "seeds": int(g["n_source_seeds"].max()), "_o": order[family]}
        for r in g.sort_values("n").itertuples():
            n = "pooled" if r.n == 0 else f"n={r.n}"
            key = f"{'acc %' if r.metric == 'accuracy' else 'gain'} {n}"
            rec[key] = common.fmt_ci(r.mean, r.ci_low, r.ci_high, signed=r.metric == "gain")
        out.append(rec)
    vo = {v: i for i, v in enumerate(VERSIONS.values())}
    df = pd.DataFrame(out)
    df = df.assign(_v=df["version"].map(vo)).sort_values(["target", "_v", "_o"], kind="stable")
    cols = [c for c in df.columns if not c.startswith("_")]
    acc = sorted([c for c in cols if c.startswith("acc")], key=lambda c: (c.endswith("pooled"), len(c), c))
    gain = sorted([c for c in cols if c.startswith("gain")], key=lambda c: (c.endswith("pooled"), len(c), c))
    return df[["target", "version", "source", "seeds"] + acc + gain].set_index(
        ["target", "version", "source"])


def did_table(test) -> pd.DataFrame:
    """Display table of the pre-specified test (:func:`robust_transfer.shape_study.version_test`):
    per robust family and changed version, the pooled gains and their difference [95% CI]."""
    if test is None or len(test) == 0:
        return pd.DataFrame()
    order = {f: i for i, f in enumerate(_family_order(test))}
    t = test.assign(_o=test["family"].map(order)).sort_values(["version", "_o"], kind="stable")
    return _did_display(t, "changed version", t["version"].map(VERSIONS), "original", "changed")


def _did_display(t, index: str, values, baseline: str, compared: str) -> pd.DataFrame:
    """The display rows of DiD tables ``t`` (:func:`robust_transfer.shape_study.version_test`
    columns), indexed by ``index`` (``values``) and source."""
    return pd.DataFrame({
        index: list(values), "source": t["label"], "seeds": t["n_source_seeds"].astype(int),
        f"gain on {baseline}": t["gain_original"].map(lambda v: f"{v:+.1f}"),
        f"gain on {compared}": t["gain_version"].map(lambda v: f"{v:+.1f}"),
        "DiD [95% CI]": [common.fmt_ci(r.did, r.ci_low, r.ci_high, signed=True)
                         for r in t.itertuples()],
        "CI over": t["ci_basis"], "robust advantage": t["direction"]}).set_index(
        [index, "source"])


def manipulation_table(strength) -> pd.DataFrame:
    """Display table of :func:`robust_transfer.shape_study.manipulation_strength`: per changed
    target, the share of the images' contrast energy in the change (%) and the correlation
    with the original."""
    if strength is None or len(strength) == 0:
        return pd.DataFrame()
    return pd.DataFrame({
        "target": strength["target"], "version": strength["version"].map(VERSIONS),
        "energy changed": strength["energy_changed"].map(lambda v: f"{100 * v:.0f}%"),
        "correlation with the original": strength["correlation"].map(lambda v: f"{v:.2f}"),
        "test images": strength["n_images"]}).set_index("target")


def textured_table(textured) -> pd.DataFrame:
    """Display table of the textured-source test (:func:`robust_transfer.shape_study.
    textured_test`): per non-natural family its shape bias and the natural one's (percent),
    the difference [95% CI] in points, what the interval rests on, and the coverage."""
    if textured is None or len(textured) == 0:
        return pd.DataFrame()
    order = {f: i for i, f in enumerate(_family_order(textured))}
    t = textured.assign(_o=textured["family"].map(order)).sort_values("_o", kind="stable")
    return pd.DataFrame({
        "source": t["label"], "seeds": t["n_source_seeds"].astype(int),
        "shape bias %": t["bias"].map(lambda v: f"{v:.1f}"),
        "natural %": t["natural_bias"].map(lambda v: f"{v:.1f}"),
        "minus natural [95% CI]": [common.fmt_ci(r.diff, r.ci_low, r.ci_high, signed=True)
                                   for r in t.itertuples()],
        "CI over": t["ci_basis"] + " (" + t["n_subset_seeds"].astype(int).astype(str)
        + " stimulus sets)",
        "coverage": t["coverage"].map(lambda v: f"{100 * v:.0f}%")}).set_index("source")


def textured_findings(textured) -> str:
    """Markdown: the textured-source experiment's answer (the cue-alone check on the natural
    family, then each family's shape bias minus natural with its interval and label)."""
    if textured is None or len(textured) == 0:
        return ("The textured-source experiment is not run in this configuration "
                "(`textured_sources=()`).")
    r0 = textured.iloc[0]
    lines = [f"- **Cue-alone check** (natural textured source, mean over source seeds x "
             f"stimulus sets): shape alone {r0['natural_shape_acc']:.1f}% (interval from "
             f"{r0['natural_shape_low']:.1f}%), texture alone {r0['natural_texture_acc']:.1f}% "
             f"(from {r0['natural_texture_low']:.1f}%), chance {r0['chance']:.0f}%: "
             + ("both cues are usable, the test can be read." if bool(r0["cues_usable"]) else
                "a cue alone is not above chance, so the test is not testable here.")]
    for r in textured.itertuples():
        label = (f": **{claims.part_label(r.ci_low, r.ci_high)}** for \"more shape-biased than "
                 f"natural\"" if r.cues_usable else "")
        lines.append(f"- **{r.label}**: shape bias {r.bias:.1f}% vs natural "
                     f"{r.natural_bias:.1f}%; difference {r.diff:+.1f} points "
                     f"[{r.ci_low:+.1f}, {r.ci_high:+.1f}] ({r.ci_basis}){label}.")
    return "\n".join(lines)


def _contrast(r) -> str:
    """The words of a :func:`robust_transfer.shape_study.textured_transfer_test` row's contrast."""
    if r["version"] == SHAPE_VS_TEXTURE:
        return f"shape-only ({r['shape_target']}) minus texture-only ({r['texture_target']})"
    return f"{VERSIONS[r['version']]} minus original ({r['shape_target']})"


def textured_transfer_table(test) -> pd.DataFrame:
    """Display table of the textured-source transfer test (:func:`robust_transfer.shape_study.
    textured_transfer_test`): per contrast and family, both gains and their DiD [95% CI]."""
    if test is None or len(test) == 0:
        return pd.DataFrame()
    order = {f: i for i, f in enumerate(_family_order(test))}
    t = test.assign(_o=test["family"].map(order),
                    _v=(test["version"] != SHAPE_VS_TEXTURE).astype(int))
    t = t.sort_values(["_v", "version", "_o"], kind="stable")
    return _did_display(t, "contrast", [_contrast(r) for _, r in t.iterrows()], "baseline",
                        "compared")


def textured_transfer_findings(test, clean=None) -> str:
    """Markdown: the textured-source transfer test's answer (the pre-specified shape-only
    minus texture-only DiD per family, labelled for the robust families) and the changed
    copies' DiDs as context; with ``clean`` (``zoo.table`` rows of the textured sources) first
    how close the noise control's clean accuracy is to the test family's
    (``common.clean_match``)."""
    if test is None or len(test) == 0:
        return ("The textured-source transfer is not run in this configuration "
                "(`textured_targets=()` or `textured_sources=()`).")
    main = test[test["version"] == SHAPE_VS_TEXTURE]
    lines = []
    family = claims.headline_family(main)
    noise = main.loc[main["norm"] == "noise", "family"]
    if clean is not None and family and len(noise):
        m = common.clean_match(clean, family, noise.iloc[0])
        lines.append(f"- **Clean accuracy on the textured data**: noise control {m['control']:.1f}%,"
                     f" {main.loc[main['family'] == family, 'label'].iloc[0]} {m['family']:.1f}%;"
                     f" difference {m['diff']:+.1f} points [{m['low']:+.1f}, {m['high']:+.1f}] "
                     f"(Welch 95%): " + ("matched" if m["matched"] else "match not shown")
                     + f" by the +-{common.MATCH_POINTS:g}-point rule of chapter 2.")
    for r in main.itertuples():
        role = " (noise control)" if r.norm == "noise" else ""
        lines.append(f"- **{r.label}**{role}: advantage over natural {r.gain_version:+.1f} points "
                     f"on the shape-only target, {r.gain_original:+.1f} on the texture-only "
                     f"one; DiD {r.did:+.1f} [{r.ci_low:+.1f}, {r.ci_high:+.1f}] ({r.ci_basis}"
                     f"): **{claims.part_label(r.ci_low, r.ci_high)}** for \"larger where only "
                     f"shape carries the class\".")
    rest = test[test["version"] != SHAPE_VS_TEXTURE]
    if len(rest):
        lines.append("- Context, the shape-only target's changed copies (DiD against its "
                     "original): " + "; ".join(
                         f"{r['label']} {VERSIONS[r['version']]} {r['did']:+.1f} "
                         f"[{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]"
                         for _, r in rest.iterrows()) + ".")
    return "\n".join(lines)


def transfer_findings(values: dict, test) -> str:
    """Markdown: the pre-specified test's answer for the headline family (``values`` =
    :func:`headline`) and the other robust families as supporting rows."""
    if not values["robust_label"]:
        return ("No natural + L2 pair in the transfer experiment: the pre-specified test "
                "cannot be run for this configuration.")
    lines = []
    for v in [v for v in VERSIONS if v != "original"]:
        if not values[f"did_{v}_direction"]:
            continue
        lines.append(
            f"- **{VERSIONS[v]}** ({values['robust_label']}, {values['robust_seeds']:.0f} source "
            f"seeds): robust - natural is {values['original_gain']:+.1f} points "
            f"[{values['original_gain_low']:+.1f}, {values['original_gain_high']:+.1f}] on the "
            f"original targets and {values[f'{v}_gain']:+.1f} [{values[f'{v}_gain_low']:+.1f}, "
            f"{values[f'{v}_gain_high']:+.1f}] on the {v} copies; difference in differences "
            f"{values[f'did_{v}']:+.1f} [{values[f'did_{v}_low']:+.1f}, "
            f"{values[f'did_{v}_high']:+.1f}]; robust advantage: "
            f"**{values[f'did_{v}_direction']}**.")
        others = test[(test["version"] == v) & (test["label"] != values["robust_label"])]
        if len(others):
            lines.append("  Supporting rows: " + "; ".join(
                f"{r.label} {r.did:+.1f} [{r.ci_low:+.1f}, {r.ci_high:+.1f}] ({r.direction}"
                f"{', CI over subset seeds only' if r.n_source_seeds < 2 else ''})"
                for r in others.itertuples()) + ".")
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures
def plot_target_versions(versions: dict, class_names, n: int = 8):
    """Figure 3.1: the same target images in each version (``versions``: version name ->
    (N, C, H, W) images in the same order, e.g. original, stylized, low-passed), one row per
    version, titled with the class; returns the Figure."""
    names = list(class_names)
    fig, axes = plt.subplots(len(versions), n, figsize=(1.3 * n, 1.45 * len(versions)),
                             squeeze=False)
    for r, (version, (x, y)) in enumerate(versions.items()):
        for j in range(n):
            common.show_image(axes[r, j], x[j], f"{version}: {names[int(y[j])]}" if j == 0
                              else names[int(y[j])])
    fig.tight_layout()
    return fig


def plot_versions(versions):
    """Figure 3.2: robust - natural gain (points, 95% crossed-seed CI band) against n, one panel
    per target version (rows: base targets), one line per robust family; returns the Figure."""
    g = versions[(versions["metric"] == "gain") & (versions["n"] > 0)]
    bases = list(dict.fromkeys(g["base_target"]))
    vs = [v for v in VERSIONS if (g["version"] == v).any()]
    order = _family_order(versions)
    col = common.family_colours(order)
    fig, axes = plt.subplots(max(1, len(bases)), max(1, len(vs)),
                             figsize=(4.2 * max(1, len(vs)), 3.2 * max(1, len(bases))),
                             squeeze=False, sharey="row")
    for i, base in enumerate(bases):
        for j, v in enumerate(vs):
            ax = axes[i, j]
            for f in order:
                h = g[(g["base_target"] == base) & (g["version"] == v) & (g["family"] == f)]
                if len(h):
                    common.band(ax, h, h["label"].iloc[0], col[f])
            ax.axhline(0, color="grey", lw=0.8, ls="--")
            ax.set_xscale("log")
            ns = sorted(g["n"].unique())
            ax.set_xticks(ns, [str(n) for n in ns])
            ax.minorticks_off()
            ax.set_xlabel("n (target images)")
            ax.set_ylabel("robust - natural (points)")
            ax.set_title(f"{base}: {VERSIONS[v]}")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_stimuli(probes, images, class_names, n: int = 5):
    """Figure 3.3: cue-conflict stimuli (shape image A, texture image B, stimulus) for both
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
        kind = STIMULUS_KINDS[p["probe"]].split(") ")[-1]
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
            short = {"patch_shuffle": "shuffle", "silhouette": "silh.", "phase_only": "phase",
                     "amplitude_only": "ampl.", "texture_patches": "patches"}.get(p["probe"],
                                                                                 p["probe"])
            common.show_image(axes[r, j], p["images"][j], f"{short}{par}: {names[p['labels'][j]]}")
        r += 1
    fig.tight_layout()
    return fig


def plot_textured_stimuli(probes, class_names, n: int = 6):
    """The textured-source stimuli (:func:`robust_transfer.shape_bias.textured_probes`): one row
    per probe (own texture, shape alone, texture alone, cue conflict), titled with the class
    (cue conflict: shape / texture class); returns the Figure."""
    names = list(class_names)
    rows = {"textured": "own texture", "shape_alone": "shape alone",
            "texture_alone": "texture alone", "cue_textured": "conflict"}
    fig, axes = plt.subplots(len(probes), n, figsize=(1.5 * n, 1.5 * len(probes)),
                             squeeze=False)
    for r, p in enumerate(probes):
        for j in range(n):
            title = names[int(p["labels"][j])]
            if p["texture_labels"] is not None:
                title = f"{title} / {names[int(p['texture_labels'][j])]}"
            common.show_image(axes[r, j], p["images"][j],
                              f"{rows.get(p['probe'], p['probe'])}: {title}" if j == 0 else title)
    fig.tight_layout()
    return fig


def plot_shape_bias(summary):
    """Figure 3.4: shape bias (with 95% CI bars, cut to [0, 1]; coverage printed under each bar)
    per source family for the cue-conflict stimulus types; returns the Figure."""
    order = _family_order(summary)
    col = common.family_colours(order)
    details = {"cue_fourier": ": phase A + amplitude B",
               "cue_silhouette": ": silhouette A filled with texture B",
               "cue_textured": ": garment A, texture of class B"}
    probes = _kinds(summary)
    titles = {k: STIMULUS_KINDS[k] + details.get(k, "") for k in probes}
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
    """Figure 3.5: accuracy (%) vs sigma under low-pass and high-pass filtering, and vs
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
    pre-specified transfer test (robust - natural on stylized / low-passed minus on original
    targets) for the headline L2 family, with its 95% CIs."""
    changed = [v for v in VERSIONS if v != "original" and values.get(f"did_{v}_direction")]
    ours = "; ".join(f"{v}: {values[f'did_{v}']:+.1f} points ({values[f'did_{v}_direction']})"
                     for v in changed)
    ci = "; ".join(f"{v}: [{values[f'did_{v}_low']:+.1f}, {values[f'did_{v}_high']:+.1f}]"
                   for v in changed)
    return {"claim": "Adversarial training biases the representation toward shape: the robust "
                     "advantage grows on texture-removed and low-passed targets",
            "paper": "numbers not public (stylized and low-resolution Food-101 / Caltech-101); "
                     "a larger robust gain there is our expectation, not the paper's result",
            "ours": (f"change of the {values['robust_label']} - natural gain vs original "
                     f"targets, {ours} ({preset} preset)" if ours
                     else f"no transfer comparison ({preset} preset)"),
            "ci": ci or "–",
            "verdict": values["verdict"]}
