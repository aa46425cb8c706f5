"""What Section 2 runs and compares, on top of :mod:`robust_transfer.shape_bias` (the Geirhos
metric, stimuli and probes), as :mod:`robust_transfer.influence_study` sits on
:mod:`robust_transfer.influence`:

* the paper's transfer experiment: natural and robust sources transferred to each shape target,
  its ``stylized:`` copy and its ``lowpass<f>:`` copy (:func:`version_targets`,
  :func:`transfer_config`, :func:`transfer_versions`), summarised by :func:`version_table` and
  tested by the pre-specified difference in differences (:func:`version_test`);
* the probes' comparisons across sources: :func:`trend` along eps, the cue-alone validation of
  each stimulus kind (:func:`cue_validation`), and the link to Section 1's gains
  (:func:`transfer_link`);
* the textured-source experiment: sources trained on ``textured_fmnist`` (where texture can
  carry the class, unlike plain Fashion-MNIST) probed on garments of one class filled with
  another class's texture (:func:`textured_rows`, :func:`textured_summary`), and its
  pre-specified robust-minus-natural shape-bias test (:func:`textured_test`).

Figures, display tables and findings text are in :mod:`robust_transfer.chapters.ch03_shape_bias`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy.stats import spearmanr

from . import config, data, shape_bias, stats, sweep, zoo
from .shape_bias import CUE_CHECKS
from .store import Store

__all__ = ["SHAPE_TARGETS", "TEXTURE_TARGETS", "trend", "transfer_link", "cue_validation",
           "VERSIONS", "version_targets", "manipulation_strength", "transfer_config",
           "transfer_versions", "version_table", "version_test", "textured_rows",
           "textured_summary", "textured_test", "textured_targets", "textured_transfer_test",
           "SHAPE_VS_TEXTURE"]

#: targets whose classes are defined by shape (digits, characters) vs the texture-defined control
SHAPE_TARGETS = ("mnist5k", "digits", "mnist", "kmnist", "svhn")
TEXTURE_TARGETS = ("textures",)

def trend(summary, probe: str, param=None, norm: str = "l2") -> dict:
    """How ``probe`` (at ``param``) moves with eps along natural + ``norm`` sources.

    Returns dict(eps (list), values (list), spearman (rank correlation, NaN if < 3 points),
    delta (value at the largest eps minus natural), direction ("rises", "falls" or "is flat":
    flat when |delta| <= sqrt(h0^2 + h1^2), h0 and h1 the CI half-widths of the two ends)).
    """
    s = summary[(summary["probe"] == probe) & summary["norm"].isin(["natural", norm])]
    if param is not None:
        s = s[np.isclose(s["param"].astype(float), float(param))]
    s = s.sort_values("eps")
    eps, vals = s["eps"].tolist(), s["value"].tolist()
    if len(s) < 2 or s["norm"].iloc[0] != "natural":
        return dict(eps=eps, values=vals, spearman=float("nan"), delta=float("nan"),
                    direction="cannot be judged (needs a natural and a robust source)")
    delta = vals[-1] - vals[0]
    half = float(np.hypot((s["ci_high"].iloc[0] - s["ci_low"].iloc[0]) / 2,
                          (s["ci_high"].iloc[-1] - s["ci_low"].iloc[-1]) / 2))
    rho = float(spearmanr(eps, vals).statistic) if len(s) >= 3 else float("nan")
    direction = "is flat" if abs(delta) <= half else ("rises" if delta > 0 else "falls")
    return dict(eps=eps, values=vals, spearman=rho, delta=float(delta), direction=direction)


def transfer_link(cfg, store=None, summary=None):
    """Robust-minus-natural transfer gains from Section 1's results store (read, not recomputed).

    ``store`` is a :class:`robust_transfer.store.Store` or its name (default ``cfg.preset``);
    only rows of ``sweep.grid(cfg)`` are used. Returns a DataFrame with one line per (non-natural
    family, unfrozen_blocks): mean paired gain (accuracy points, averaged over n and targets) on
    shape-defined targets (:data:`SHAPE_TARGETS`) and on the texture control
    (:data:`TEXTURE_TARGETS`), their difference ``shape_minus_texture``, the number of
    (target, n) cells, and, when ``summary`` is given, the family's Fourier shape bias. Empty
    when the store holds no paired rows.
    """
    import pandas as pd

    st = store if isinstance(store, Store) else Store(store or cfg.preset)
    frame = st.frame(sweep.grid(cfg))
    d = stats.deltas(frame) if len(frame) else pd.DataFrame()
    if d.empty:
        return pd.DataFrame()
    d["kind"] = np.where(d["target"].isin(SHAPE_TARGETS), "shape",
                         np.where(d["target"].isin(TEXTURE_TARGETS), "texture", "other"))
    out = []
    for (family, k), g in d.groupby(["family", "unfrozen_blocks"], sort=False):
        shape_g, tex_g = g[g["kind"] == "shape"], g[g["kind"] == "texture"]
        rec = dict(family=family, label=g["source_label"].iloc[0] if "source_label" in g
                   else family, norm=g["norm"].iloc[0], eps=g["eps"].iloc[0],
                   unfrozen_blocks=k, gain_shape_targets=shape_g["mean"].mean(),
                   gain_texture_target=tex_g["mean"].mean(), cells=len(g),
                   significant_up=int((g["direction"] > 0).sum()),
                   significant_down=int((g["direction"] < 0).sum()))
        rec["shape_minus_texture"] = rec["gain_shape_targets"] - rec["gain_texture_target"]
        out.append(rec)
    link = pd.DataFrame(out)
    if summary is not None:
        sbf = summary[summary["probe"] == "cue_fourier"].set_index("family")["value"]
        link["shape_bias_fourier"] = link["family"].map(sbf)
    return link


# --------------------------------------------------------------------------- cue validation
def cue_validation(summary, level: float = 0.95):
    """Whether each mini stimulus kind's cues are usable on their own (:data:`CUE_CHECKS`).

    ``summary`` is :func:`summarize`'s table. One line per (kind, family): the accuracy of the
    shape-cue-alone and texture-cue-alone probes with their CIs and chance, ``shape_usable`` /
    ``texture_usable`` (CI low above chance), and per kind ``informative``: True when both cues
    alone are usable for every family. A kind whose texture (or shape) cue alone is at chance
    cannot separate shape from texture reliance even in principle: every source must decide by
    the other cue. Kinds without checks (the Geirhos images) are not listed.
    """
    import pandas as pd

    out = []
    for kind, (shape_probe, texture_probe) in CUE_CHECKS.items():
        for family, g in summary.groupby("family", sort=False):
            rec = dict(kind=kind, family=family, label=g["label"].iloc[0],
                       norm=g["norm"].iloc[0], eps=g["eps"].iloc[0])
            for cue, probe in (("shape", shape_probe), ("texture", texture_probe)):
                r = g[g["probe"] == probe]
                if r.empty:
                    break
                r = r.iloc[0]
                rec.update({f"{cue}_probe": probe, f"{cue}_acc": r["value"],
                            f"{cue}_low": r["ci_low"], f"{cue}_high": r["ci_high"],
                            f"{cue}_usable": bool(r["ci_low"] > r["chance"])})
                rec["chance"] = r["chance"]
            else:
                out.append(rec)
    table = pd.DataFrame(out)
    if len(table):
        ok = table.groupby("kind")[["shape_usable", "texture_usable"]].transform("all").all(axis=1)
        table["informative"] = ok
    return table


# --------------------------------------------------------------------------- transfer versions
#: the target versions of the Section 2 transfer experiment, in display order
VERSIONS = {"original": "original", "stylized": "stylized (texture replaced)",
            "lowpass": "low-passed (resolution)", "lowres": "low resolution (32 px)"}


def version_targets(cfg) -> dict:
    """``{target name: (version, base target)}`` of the transfer experiment: every
    ``cfg.shape_targets`` entry in each of ``cfg.shape_versions`` (``data.version_name``: the
    original, ``stylized:``, ``lowpass<cfg.lowpass_factor>:``, ``lowres:``)."""
    return {data.version_name(v, t, cfg.lowpass_factor): (v, t)
            for t in cfg.shape_targets for v in cfg.shape_versions}


def textured_targets(cfg) -> dict:
    """``{target name: (version, base target)}`` of the textured-source transfer:
    ``cfg.textured_targets`` = (shape-only target, texture-only target), the shape-only one in
    each of ``cfg.shape_versions`` (its changed copies), the texture-only one as it is; {} when
    ``cfg.textured_targets`` or ``cfg.textured_sources`` is empty."""
    if not cfg.textured_targets or not cfg.textured_sources:
        return {}
    shape_target, texture_target = cfg.textured_targets
    names = {data.version_name(v, shape_target, cfg.lowpass_factor): (v, shape_target)
             for v in cfg.shape_versions}
    return {**names, texture_target: ("original", texture_target)}


def _targets(cfg, textured: bool) -> dict:
    """:func:`textured_targets` when ``textured``, else :func:`version_targets`."""
    return textured_targets(cfg) if textured else version_targets(cfg)


def manipulation_strength(cfg, allow_download: bool | None = None):
    """How strongly each changed version of the transfer experiment changes its target: per
    derived target of :func:`version_targets` (stylized, low-passed), over the base target's
    test images x and their changed copies x', ``energy_changed`` = sum (x' - x)^2 / sum
    (x - mean x)^2 per image (the share of the image's contrast energy in the change: for a
    low-pass, the energy it removes), and ``correlation`` = Pearson's r of x and x' per image,
    both averaged over the images. Columns: target, base_target, version, energy_changed,
    correlation, n_images. ``allow_download``: default ``cfg.allow_download``."""
    import pandas as pd

    dl = cfg.allow_download if allow_download is None else allow_download
    out = []
    for target, (version, base) in version_targets(cfg).items():
        if version == "original":
            continue
        x = data.load(base, "test", allow_download=dl)[0].flatten(1).double()
        x2 = data.load(target, "test", allow_download=dl)[0].flatten(1).double()
        xc, x2c = x - x.mean(1, keepdim=True), x2 - x2.mean(1, keepdim=True)
        energy = ((x2 - x) ** 2).sum(1) / (xc ** 2).sum(1).clamp_min(1e-12)
        r = (xc * x2c).sum(1) / ((xc ** 2).sum(1) * (x2c ** 2).sum(1)).sqrt().clamp_min(1e-12)
        out.append(dict(target=target, base_target=base, version=version,
                        energy_changed=float(energy.mean()), correlation=float(r.mean()),
                        n_images=len(x)))
    return pd.DataFrame(out)


def transfer_config(cfg, textured: bool = False):
    """The Section 1 configuration of the transfer experiment: ``cfg.shape_sources`` (() =
    ``cfg``'s natural, L2, L-inf and noise-trained sources, every eps and source seed; noise:
    the control), the :func:`version_targets` (``textured``: ``cfg.textured_sources`` to the
    :func:`textured_targets` instead), ``cfg.shape_n_values`` with ``cfg.seeds``
    subset seeds by ``cfg.shape_seed_counts`` (() = every seed), one full-set run with
    ``cfg.shape_full_set``, ``cfg.shape_blocks`` unfrozen blocks (mini: 0, the cached-prefix
    fast path) and ``cfg.shape_epochs`` epochs at every n (0 = ``cfg``'s epochs rule); the
    recipe fields, device and downloads are ``cfg``'s. ValueError when ``cfg.shape_targets``
    is empty or no source qualifies."""
    names = _targets(cfg, textured)
    if not names:
        raise ValueError("textured_targets=() : the textured-source transfer needs a shape-only "
                         "and a texture-only target" if textured else "shape_targets=() : the "
                         "transfer experiment needs at least one target")
    pool = cfg.textured_sources if textured else cfg.shape_sources or cfg.sources
    sources = [s for s in pool if zoo.spec(s).norm in ("natural", "l2", "linf", "noise")]
    if not any(zoo.spec(s).norm == "natural" for s in sources):
        raise ValueError(f"sources={cfg.sources!r}: the transfer experiment needs a natural "
                         f"source to compare the robust ones against")
    fields = {f.name for f in dataclasses.fields(cfg)} - {"preset"}
    keep = {f: getattr(cfg, f) for f in fields}  # the recipe and every other knob: cfg's
    # no side grids of Section 1 (other recipe, block counts, whole-pool runs) nor its
    # fine-tuning limits
    extra = {f: v for f, v in (("compare_recipe", ""), ("block_counts", ()),
                               ("finetune_sources", ()), ("finetune_max_n", 0),
                               ("full_set", cfg.shape_full_set), ("head_to_pool", False),
                               ("seed_counts", cfg.shape_seed_counts), ("few_seeds", 0))
             if f in fields}
    if cfg.shape_epochs:
        extra.update(epochs=cfg.shape_epochs, long_epochs=0)
    return config.resolve(cfg.preset, **{**keep, **extra, "sources": sources,
                                         "targets": list(names),
                                         "n_values": list(cfg.shape_n_values),
                                         "unfrozen_blocks": [cfg.shape_blocks],
                                         "main_blocks": cfg.shape_blocks,
                                         "seeds": list(cfg.seeds)})


def transfer_versions(cfg, store=None, *, run: bool = True, progress: bool = True,
                      workers: int | None = 1, textured: bool = False):
    """Rows of the transfer experiment (:func:`transfer_config`; ``textured``: the
    textured-source transfer) from the shared results store
    (``store``: a Store or its name, default ``cfg.preset``), running the missing ones first
    with Section 1's engine (:func:`robust_transfer.sweep.run`, ``workers`` processes of one
    torch thread when > 1) unless ``run`` is False.

    Returns ``Store.frame`` rows (accuracies in percent) with ``version`` and ``base_target``
    columns added; empty when nothing is stored.
    """
    cfg2 = transfer_config(cfg, textured)
    st = store if isinstance(store, Store) else Store(store or cfg.preset)
    if run:
        sweep.run(cfg2, st, progress=progress, workers=workers)
    frame = st.frame(sweep.grid(cfg2))
    if len(frame):
        names = _targets(cfg, textured)
        frame["version"] = frame["target"].map(lambda t: names[t][0])
        frame["base_target"] = frame["target"].map(lambda t: names[t][1])
        if textured:   # which base target is the texture-only one: the configuration says
            frame["texture_only"] = frame["base_target"] == cfg.textured_targets[1]
    return frame


def _seed_matrices(frame, keys=("version", "base_target", "family", "n"), columns="seed",
                   value: str = "test_acc") -> dict:
    """``{keys: DataFrame source-seed index x columns}`` of ``value`` (mean per cell): a
    family's i-th source seed is row i, so families pair by row (default: per version, base
    target, family and n, subset seeds as columns)."""
    f = frame.assign(seed_index=frame.groupby("family")["source_seed"].rank(method="dense")
                     .astype(int) - 1)
    return {k: g.pivot_table(index="seed_index", columns=columns, values=value, aggfunc="mean")
            for k, g in f.groupby(list(keys))}


def _families(frame):
    fam = frame.drop_duplicates("family").set_index("family")
    nat = fam.index[fam["norm"] == "natural"]
    return fam, (nat[0] if len(nat) else None)


def version_table(frame, level: float = 0.95):
    """Accuracy and robust-minus-natural gain per (version, base target, family, n), and pooled
    over n (``n`` = 0), with crossed-seed CIs (:func:`robust_transfer.stats.ci` on the source
    seed x subset seed matrix; gains paired on source-seed index and subset seed, as
    :func:`robust_transfer.stats.deltas` pairs them). Percent points. Columns: version,
    base_target, family, label, norm, eps, n, metric ("accuracy" / "gain"), mean, ci_low,
    ci_high, ci_basis, n_source_seeds, n_subset_seeds."""
    import pandas as pd

    if frame.empty:
        return pd.DataFrame()
    mats = _seed_matrices(frame)
    fam, nat = _families(frame)
    out = []
    for (version, base), _ in frame.groupby(["version", "base_target"]):
        for family in fam.index:
            ns = sorted(n for (v, b, f, n) in mats if (v, b, f) == (version, base, family))
            if not ns:
                continue
            acc = {n: mats[(version, base, family, n)] for n in ns}
            gain = {n: acc[n] - mats[(version, base, nat, n)] for n in ns
                    if nat is not None and family != nat and (version, base, nat, n) in mats}
            for metric, m in (("accuracy", acc), ("gain", gain)):
                if not m:
                    continue
                cells = list(m.items()) + [(0, sum(m.values()) / len(m))]  # 0: pooled over n
                for n, mat in cells:
                    rec = dict(version=version, base_target=base, family=family,
                               label=fam.loc[family, "source_label"], norm=fam.loc[family, "norm"],
                               eps=float(fam.loc[family, "eps"]), n=int(n), metric=metric)
                    c = stats.ci(mat.to_numpy(), level)
                    rec.update({k: c[k] for k in ("mean", "ci_low", "ci_high", "ci_basis",
                                                  "n_source_seeds", "n_subset_seeds")})
                    out.append(rec)
    order = {v: i for i, v in enumerate(VERSIONS)}
    df = pd.DataFrame(out)
    return df.sort_values(["base_target", "version", "metric", "norm", "eps", "n"],
                          key=lambda c: c.map(order) if c.name == "version" else c,
                          kind="stable").reset_index(drop=True)


def _gains(frame):
    """(families table, natural family, ``gain(family, keep)``): ``family`` minus natural as a
    source-seed index x subset seed matrix, averaged over the (version, base target, n) cells
    for which ``keep(version, base target)`` holds (None when there are none)."""
    mats = _seed_matrices(frame)
    fam, nat = _families(frame)

    def gain(family, keep):
        ds = [mats[(v, b, family, n)] - mats[(v, b, nat, n)] for (v, b, f, n) in mats
              if f == family and keep(v, b) and (v, b, nat, n) in mats]
        return sum(ds) / len(ds) if ds else None
    return fam, nat, gain


def _did(fam, family, g0, g1, level) -> dict:
    """The difference in differences ``g1 - g0`` of two :func:`_gains` matrices of ``family``
    with its crossed-seed CI and direction ("grows", "shrinks", "no detectable change")."""
    c = stats.ci((g1 - g0).to_numpy(), level)
    direction = ("grows" if c["ci_low"] > 0 else "shrinks" if c["ci_high"] < 0
                 else "no detectable change")
    return dict(family=family, label=fam.loc[family, "source_label"],
                norm=fam.loc[family, "norm"], eps=float(fam.loc[family, "eps"]),
                gain_original=stats.ci(g0.to_numpy())["mean"],
                gain_version=stats.ci(g1.to_numpy())["mean"], did=c["mean"],
                **{k: c[k] for k in ("ci_low", "ci_high", "ci_basis", "var_source", "var_subset",
                                     "var_resid", "n_source_seeds", "n_subset_seeds")},
                direction=direction)


def _compared(fam):
    """The families a DiD compares with natural: robust (L2, L-inf) and the noise control."""
    return fam.index[fam["norm"].isin(["l2", "linf", "noise"])]


def version_test(frame, level: float = 0.95):
    """The pre-specified test of Section 2's transfer claim, per robust family (and the
    noise-trained control) and changed version (stylized, lowpass): the difference in
    differences

        DiD = (robust - natural on the changed version) - (robust - natural on the original),

    each gain averaged over the n values and base targets, on the matrix of source-seed index x
    subset seed (the same subset images in every version), with a crossed-seed CI
    (:func:`robust_transfer.stats.ci`). Percent points; DiD > 0 means the robust advantage
    grows (or its loss shrinks) when texture / detail is removed. Columns: family, label, norm,
    eps, version, gain_original, gain_version, did, ci_low, ci_high, ci_basis, n_source_seeds,
    n_subset_seeds, direction ("grows", "shrinks", "no detectable change" when the CI spans 0)."""
    import pandas as pd

    if frame.empty:
        return pd.DataFrame()
    fam, nat, gain = _gains(frame)
    if nat is None:
        return pd.DataFrame()
    out = []
    for family in _compared(fam):
        g0 = gain(family, lambda v, b: v == "original")
        for version in [v for v in VERSIONS if v != "original"]:
            g1 = gain(family, lambda v, b: v == version)
            if g0 is not None and g1 is not None:
                out.append({**_did(fam, family, g0, g1, level), "version": version})
    return pd.DataFrame(out)


#: the contrast of the textured-source transfer test (:func:`textured_transfer_test`)
SHAPE_VS_TEXTURE = "shape_only"


def textured_transfer_test(frame, level: float = 0.95):
    """The pre-specified test of the textured-source transfer (fixed before any of its runs),
    on :func:`transfer_versions` rows with ``textured=True``:

    * **Statistic.** For each non-natural textured family F (L2 at two eps, the noise control):
      the difference in differences ``(F - natural on the shape-only target) - (F - natural on
      the texture-only target)`` (``contrast`` = :data:`SHAPE_VS_TEXTURE`), each gain averaged
      over n, on the source-seed index x subset seed matrix, with the crossed-seed interval of
      :func:`robust_transfer.stats.ci`. If robust sources transfer better *because* they rely
      on shape, their advantage is larger where only shape carries the class.
    * **Claim.** Side +1; ``claims.section2``'s part ``textured_shape_vs_texture`` labels the
      L2 family with the most source seeds (ties: eps closest to 1); noise minus natural is its
      control part.
    * Beside it (context, not a part): per changed version of the shape-only target (stylized,
      low-passed) the DiD against its original, as :func:`version_test` computes it.

    ``frame`` marks the texture-only target's rows (``texture_only``, from
    ``cfg.textured_targets``). Columns: those of :func:`version_test`, ``version`` being the
    contrast (``gain_original``: the baseline's gain, the texture-only target's for
    :data:`SHAPE_VS_TEXTURE`), plus ``shape_target`` and ``texture_target``. Empty without a natural family or either target."""
    import pandas as pd

    if frame.empty:
        return pd.DataFrame()
    fam, nat, gain = _gains(frame)
    texture = list(dict.fromkeys(frame.loc[frame["texture_only"], "base_target"]))
    shape = list(dict.fromkeys(frame.loc[~frame["texture_only"], "base_target"]))
    if nat is None or not texture or not shape:
        return pd.DataFrame()
    shape, texture = shape[0], texture[0]
    out = []
    for family in _compared(fam):
        g_shape = gain(family, lambda v, b: v == "original" and b == shape)
        g_texture = gain(family, lambda v, b: b == texture)
        if g_shape is not None and g_texture is not None:
            out.append({**_did(fam, family, g_texture, g_shape, level),
                        "version": SHAPE_VS_TEXTURE})
        for version in [v for v in VERSIONS if v != "original"]:
            g1 = gain(family, lambda v, b: v == version and b == shape)
            if g_shape is not None and g1 is not None:
                out.append({**_did(fam, family, g_shape, g1, level), "version": version})
    return pd.DataFrame(out).assign(shape_target=shape, texture_target=texture)


# --------------------------------------------------------------------------- textured sources
def textured_rows(cfg, *, progress: bool = True):
    """Probe rows of ``cfg.textured_sources`` on their stimuli
    (:func:`robust_transfer.shape_bias.textured_probes` via ``evaluate_sources``: cached per
    source), one stimulus set per seed of ``cfg.seeds``, as a DataFrame with a
    ``stimulus_seed`` column. ValueError when ``cfg.textured_sources`` is empty."""
    import pandas as pd

    if not cfg.textured_sources:
        raise ValueError("textured_sources=() : the textured-source experiment needs sources, "
                         "e.g. zoo.textured_sources('mini')")
    return pd.concat([shape_bias.evaluate_sources(cfg, s, progress=progress,
                                                  sources=cfg.textured_sources)
                      .assign(stimulus_seed=s) for s in cfg.seeds], ignore_index=True)


def textured_summary(rows, level: float = 0.95):
    """:func:`robust_transfer.shape_bias.summarize` of :func:`textured_rows` after averaging
    each source's rows over the stimulus seeds: per family the mean over source seeds with a
    t-interval over them (one seed: the mean of its per-stimulus-seed intervals over images)."""
    keys = ["source", "family", "norm", "eps", "source_seed", "label", "probe", "param",
            "metric"]
    per_source = (rows.fillna({"param": -1.0})
                  .groupby(keys, sort=False)[["value", "ci_low", "ci_high", "coverage", "n",
                                              "chance"]].mean().reset_index())
    per_source["param"] = per_source["param"].where(per_source["param"] >= 0)
    return shape_bias.summarize(per_source, level)


def _source_by_stimulus(rows, probe: str, scale: float = 1.0) -> dict:
    """``{family: DataFrame source-seed index x stimulus seed}`` of ``probe``'s values."""
    mats = _seed_matrices(rows[rows["probe"] == probe], ("family",), "stimulus_seed", "value")
    return {k[0]: scale * m for k, m in mats.items()}


def textured_test(rows, level: float = 0.95):
    """The pre-specified test of the textured-source experiment (fixed before any source was
    trained), on :func:`textured_rows`:

    * **Statistic.** For each non-natural family F (L2 at two eps, the noise control): shape
      bias of F minus shape bias of the natural family on the ``cue_textured`` stimuli, in
      points (100 x the Geirhos share), on the matrix source-seed index x stimulus seed (F's
      i-th source seed paired with the natural family's i-th, both on the same stimuli), with
      the crossed-seed interval of :func:`robust_transfer.stats.ci` (``n_subset_seeds`` counts
      the stimulus seeds).
    * **Claim.** Robust sources are more shape-biased: side +1; ``claims.section2``'s part
      ``cue_conflict_textured`` labels the L2 family with the most source seeds (ties: eps
      closest to 1) by ``claims.part_label``; noise minus natural is a control part.
    * **Testable** (``cues_usable``) only when the stimuli carry both cues: the natural
      family's accuracy on the shape-alone and on the texture-alone images (mean over source
      seeds x stimulus seeds, crossed-seed interval) both have their interval above chance.

    Columns: family, label, norm, eps, natural_bias, bias (points), diff, ci_low, ci_high,
    ci_basis, var_source, var_subset, var_resid, n_source_seeds, n_subset_seeds, coverage (share
    of F's decisions on either cue), natural_shape_acc, natural_shape_low,
    natural_texture_acc, natural_texture_low, chance (percent), cues_usable. Empty without a
    natural family."""
    import pandas as pd

    if rows is None or len(rows) == 0:
        return pd.DataFrame()
    fam = rows.drop_duplicates("family").set_index("family")
    nat = fam.index[fam["norm"] == "natural"]
    if not len(nat):
        return pd.DataFrame()
    nat = nat[0]
    bias = _source_by_stimulus(rows, "cue_textured", 100.0)
    cues = {c: stats.ci(_source_by_stimulus(rows, probe, 100.0)[nat].to_numpy(), level)
            for c, probe in (("shape", "shape_alone"), ("texture", "texture_alone"))}
    chance = 100 * float(rows.loc[rows["probe"] == "shape_alone", "chance"].mean())
    usable = all(c["ci_low"] > chance for c in cues.values())
    out = []
    for family in fam.index.drop(nat):
        c = stats.ci((bias[family] - bias[nat]).to_numpy(), level)
        cover = rows[(rows["family"] == family) & (rows["probe"] == "cue_textured")]
        out.append(dict(
            family=family, label=fam.loc[family, "label"], norm=fam.loc[family, "norm"],
            eps=float(fam.loc[family, "eps"]),
            natural_bias=float(np.nanmean(bias[nat].to_numpy())),
            bias=float(np.nanmean(bias[family].to_numpy())), diff=c["mean"],
            ci_low=c["ci_low"], ci_high=c["ci_high"], ci_basis=c["ci_basis"].replace("subset", "stimulus"),
            **{k: c[k] for k in ("var_source", "var_subset", "var_resid", "n_source_seeds",
                                 "n_subset_seeds")},
            coverage=float(cover["coverage"].mean()),
            natural_shape_acc=cues["shape"]["mean"], natural_shape_low=cues["shape"]["ci_low"],
            natural_texture_acc=cues["texture"]["mean"],
            natural_texture_low=cues["texture"]["ci_low"], chance=chance, cues_usable=usable))
    return pd.DataFrame(out)
