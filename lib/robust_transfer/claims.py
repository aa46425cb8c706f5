"""Each section's pre-specified analysis plan and verdict rules, as typed records.

The rules are fixed before any number is seen and are the same for all three sections:

- A claim has *parts*: one pre-specified test per target (or manipulation), each an interval
  of a statistic whose sign the paper's claim fixes (``side`` +1: the claim says > 0, -1: < 0).
- A part's label reads the 95% interval only, never the point estimate (:func:`part_label`):
  **holds** when the whole interval lies on the claim's side of 0, **contradicted** when it
  lies on the other side, **undecided** when it straddles 0 (or is missing), and **not testable
  at this scale** when the design cannot reach the regime the claim is about (the record says
  why, with numbers).
- A claim's label (:func:`claim_label`): **reproduced** when every counted part holds,
  **contradicted** when any counted part is contradicted, **partly** when some hold and none
  is contradicted, **not reproduced** otherwise. Control parts (``role="control"``) are
  reported beside the claim and never counted.
- Beside each part: the paper's own effect size where it is public (``paper``) and whether it
  lies inside our interval (``paper_inside``: "yes", "no", "–" when not comparable).

Section 1 (:func:`section1`): per target except the texture controls, the pooled small-n gain
(robust minus natural, n <= the smaller half of the grid, points, side +1), and whether the
gain shrinks with n, read on the head-only runs out to the target's whole training pool (the
gain at its held-out peak n minus the gain at the pool, side +1). Shrinkage is *not testable*
when the natural source has not reached, at the pool, the accuracy where the paper's own gain
(in relative error reduction) peaks on that target or its paper analogue: below that the
paper's gains fall mostly through ceiling compression of points. The texture controls'
small-n gains are control parts. Section 2 (:func:`section2`): the difference in
differences of the robust advantage on stylized and low-passed targets (side +1), and the
cue-conflict shape bias, robust minus natural (side +1), of sources trained where texture can
carry the class (the textured-source experiment; not testable when a cue alone is at chance, and
not testable on plain Fashion-MNIST, whose textures carry no class). Section 3
(:func:`section3`): the paired robust-minus-natural per-test AUC on loss-matched heads of the
first influence target (side +1); the paper's top-1 share and four other statistics are
controls.

Chapters format these records; the introduction's table, ``robust-transfer verdicts --preset``
(:func:`evaluate`) and the README read the same ones. No plotting here.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from . import data, influence_study, reference, shape_bias, shape_study, stats, sweep
from .store import Store

__all__ = ["Part", "Claim", "part_label", "claim_label", "paper_inside", "section1", "section2",
           "section3", "small_n_max", "headline_family", "paper_small_n_gain", "evaluate",
           "precision", "target_key", "counted_targets", "pools", "RECIPE_PART_SUFFIX",
           "SECTION3_PARTS",
           "table", "paper_regime_accuracy", "replication", "replicated", "REPLICATION_FILE", "PART_LABELS", "CLAIM_LABELS", "PAPER_ANALOGUE"]

HOLDS, CONTRADICTED, UNDECIDED, NOT_TESTABLE = ("holds", "contradicted", "undecided",
                                                "not testable at this scale")
PART_LABELS = (HOLDS, CONTRADICTED, UNDECIDED, NOT_TESTABLE)
CLAIM_LABELS = ("reproduced", "partly", "contradicted", "not reproduced")


@dataclass(frozen=True)
class Part:
    """One pre-specified test of a claim: its label, the statistic (``mean`` with its 95%
    interval ``ci_low``..``ci_high``, in ``unit``), what the interval rests on (``basis``), the
    claim's sign (``side``), the paper's value and whether it lies inside our interval, and
    ``why`` (the reason for "not testable at this scale"). ``role``: "test" parts decide the
    claim, "control" parts are reported beside it. ``var_source``, ``var_subset``,
    ``var_resid``: the interval's variance components (``stats.variance_components``).
    ``raw_label``: the label the interval gives when the stated ``label`` is "undecided"
    because it did not replicate (:func:`replicated`); "" otherwise."""

    key: str
    name: str
    statistic: str
    label: str
    mean: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    unit: str = "points"
    basis: str = ""
    side: int = 1
    paper: float = math.nan
    paper_inside: str = "–"
    why: str = ""
    role: str = "test"
    var_source: float = math.nan
    var_subset: float = math.nan
    var_resid: float = math.nan
    raw_label: str = ""

    def interval_text(self) -> str:
        """"+4.3 [+1.0, +7.6]" (or "–" without an interval)."""
        if not math.isfinite(self.mean):
            return "–"
        lo, hi = ((f"{self.ci_low:+.1f}", f"{self.ci_high:+.1f}")
                  if math.isfinite(self.ci_low) else ("?", "?"))
        return f"{self.mean:+.1f} [{lo}, {hi}]"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: its label by :func:`claim_label` over its ``parts``."""

    key: str
    title: str
    label: str
    parts: tuple[Part, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        """Plain JSON-able dict (NaN kept as float NaN)."""
        return asdict(self)


def part_label(ci_low: float, ci_high: float, side: int = 1) -> str:
    """The label of an interval for a claim of sign ``side`` (+1: > 0; -1: < 0): holds,
    contradicted or undecided. Reads only the interval's ends; a missing end is undecided."""
    if side not in (1, -1):
        raise ValueError(f"side={side!r} is not allowed; allowed: 1 (claim > 0) or -1 (< 0)")
    if not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return UNDECIDED
    if ci_low > ci_high:
        raise ValueError(f"interval [{ci_low}, {ci_high}] has its ends swapped")
    lo, hi = (ci_low, ci_high) if side == 1 else (-ci_high, -ci_low)
    return HOLDS if lo > 0 else CONTRADICTED if hi < 0 else UNDECIDED


#: the last replication check per preset (``robust-transfer verdicts A B C --record``): the
#: builds compared and each claim part's label in each
REPLICATION_FILE = Path(__file__).with_name("replication.json")


def replication(preset: str) -> dict:
    """The recorded replication check of ``preset``: {"builds": {name: description},
    "parts": {"<claim key>/<part key>": {build name: label}}}; empty without one."""
    if not REPLICATION_FILE.exists():
        return {}
    return json.loads(REPLICATION_FILE.read_text()).get(preset, {})


def replicated(claim: "Claim | None", preset: str | None) -> "Claim | None":
    """``claim`` with every part whose label differed between the recorded replication builds
    of ``preset`` stated as *undecided* (the design cannot decide it; its interval and the
    builds' labels stay beside it), and the claim's label recomputed. A verdict the book states
    must be the same in a build with disjoint source seeds and one with other numerics."""
    if claim is None or not preset:
        return claim
    record = replication(preset).get("parts", {})
    parts = []
    for p in claim.parts:
        labels = record.get(f"{claim.key}/{p.key}", {})
        if len(set(labels.values())) > 1 and p.label != NOT_TESTABLE:
            seen = ", ".join(f"{b}: {lab}" for b, lab in labels.items())
            p = replace(p, label=UNDECIDED, raw_label=p.label,
                        why=f"{p.interval_text()} here; did not replicate ({seen})")
        parts.append(p)
    return replace(claim, label=claim_label(parts), parts=tuple(parts))


def claim_label(parts) -> str:
    """reproduced / partly / contradicted / not reproduced over the counted (role "test")
    parts, by the rule in the module docstring."""
    labels = [p.label for p in parts if p.role == "test"]
    if any(lab == CONTRADICTED for lab in labels):
        return "contradicted"
    if labels and all(lab == HOLDS for lab in labels):
        return "reproduced"
    return "partly" if any(lab == HOLDS for lab in labels) else "not reproduced"


def paper_inside(paper: float, ci_low: float, ci_high: float) -> str:
    """"yes" / "no" whether the paper's value lies in [ci_low, ci_high]; "–" if either is
    missing."""
    if not all(math.isfinite(v) for v in (paper, ci_low, ci_high)):
        return "–"
    return "yes" if ci_low <= paper <= ci_high else "no"


def _part(key, name, statistic, row, side=1, paper=math.nan, basis_cols=None, role="test",
          cols=("mean", "ci_low", "ci_high"), unit="points") -> Part:
    """A tested part from a table row (a mapping with ``cols`` and a ``ci_basis``), or an
    undecided part without a row."""
    if row is None:
        return Part(key, name, statistic, UNDECIDED, unit=unit, side=side, paper=paper,
                    why="no runs for this test", role=role)
    m, lo, hi = (float(row[c]) for c in cols)
    basis = str(row.get("ci_basis", ""))
    if basis_cols:
        basis += " (" + ", ".join(f"{int(row[c])} {w}" for c, w in basis_cols if c in row) + ")"
    var = {v: float(row.get(v, math.nan)) for v in ("var_source", "var_subset", "var_resid")}
    return Part(key, name, statistic, part_label(lo, hi, side), m, lo, hi, unit, basis, side,
                paper, paper_inside(paper, lo, hi), role=role, **var)


def _row(table, **match):
    """The one row of ``table`` matching ``match`` as a dict, or None."""
    if table is None or len(table) == 0:
        return None
    sel = table
    for col, value in match.items():
        sel = sel[sel[col] == value]
    return sel.iloc[0].to_dict() if len(sel) else None


_SEEDS = (("n_source_seeds", "source seeds"), ("n_subset_seeds", "subset seeds"))


# --------------------------------------------------------------------------- Section 1
#: the paper's table's name of each target we run that it reports, or stands in for (mini)
PAPER_ANALOGUE = {"mnist5k": "mnist", "digits": "mnist", "fashion_mnist": "fmnist"}


def small_n_max(cfg) -> int:
    """The pre-specified "few target images" range of the gain test: the largest n of the
    smaller half of ``cfg.n_values`` (mini: n <= 80; paper: n <= 1600)."""
    ns = sorted(cfg.n_values)
    return ns[(len(ns) + 1) // 2 - 1]


def paper_small_n_gain(target: str, n_max: int = 1600) -> float:
    """The paper's gain (L2 eps=3 minus natural, 3 blocks, points) averaged over its n <=
    ``n_max`` on ``target`` or the paper target it stands in for; NaN if none."""
    d = reference.paper_deltas()
    d = d[(d["target"] == PAPER_ANALOGUE.get(target, target)) & ~d["full"] & (d["n"] <= n_max)]
    return float(d["delta"].mean()) if len(d) else math.nan


def paper_regime_accuracy(target: str) -> float:
    """The natural source's accuracy (%) where the paper's gain, in relative error reduction
    (``stats.gain_peak_drop_means``), peaks on ``target`` or the paper target it stands in
    for: beyond it the paper's gain truly shrinks (below it, mostly through ceiling
    compression of points). NaN when the paper has no such target."""
    d = reference.paper_deltas()
    d = d[(d["target"] == PAPER_ANALOGUE.get(target, target)) & ~d["full"]]
    if d.empty:
        return math.nan
    peak = stats.gain_peak_drop_means(d)["n_peak_rel"].iloc[0]
    return float(d.loc[d["n"] == peak, "natural"].iloc[0])


def counted_targets(targets) -> list[str]:
    """The targets whose parts Section 1's verdict counts: every one of ``targets`` but the
    texture controls (``shape_study.TEXTURE_TARGETS``); all of them when each is a control."""
    targets = list(dict.fromkeys(targets))
    return [t for t in targets if t not in shape_study.TEXTURE_TARGETS] or targets


def pools(cfg) -> dict:
    """{target: its whole training pool, in images (``sweep.full_n``)} for every target of
    ``cfg.targets`` of known size."""
    return {t: sweep.full_n(cfg, t) for t in cfg.targets if data.info(t).train_size is not None}


#: a suffix on the part keys of a recipe whose runs changed after the replication record was
#: taken, so that the record's labels (of the old runs) do not apply to its parts: the authors'
#: recipe runs at least ``cfg.authors_min_steps`` optimiser steps since
RECIPE_PART_SUFFIX = {"authors": "_steps"}


def section1(df, cfg, recipe: str | None = None) -> Claim | None:
    """Section 1: "robust sources transfer better with few target images, and the gain shrinks
    as n grows", on the store's rows ``df`` (``Store.frame``) in ``recipe`` (default
    ``cfg.recipe``); None when no robust family is paired with a natural one in that recipe.

    Pre-specified: the L2 family with the most source seeds vs natural at ``cfg.main_blocks``
    (``stats.main_gains``). Parts per target (:func:`counted_targets`: all but the texture
    controls, which are reported beside as controls):

    - ``<t>_gain``: the gain pooled over n <= :func:`small_n_max` (``stats.pooled_gain``,
      points, side +1);
    - ``<t>_shrinks_pool`` (counted targets): on the head-only runs (unfrozen_blocks 0) of
      ``recipe`` out to the target's whole training pool (``cfg.head_to_pool``, or
      ``cfg.full_set``), the gain at its held-out peak n minus the gain at the largest n
      (``stats.gain_peak_drop`` with :func:`pools`, points, side +1; the chapter shows the
      relative error reduction beside it). *Not testable at this scale* when the natural
      source's mean head-only accuracy at that largest n is below :func:`paper_regime_accuracy`
      (the grid then stops before the regime where the paper's gain shrinks; the reason gives
      both numbers), or when ``recipe`` has no head-only runs.

    Control parts per counted target when a noise-trained family has runs at the same blocks
    (mini: ``zoo.MATCHED_NOISE``, the clean-accuracy-matched control): ``<t>_gain_matched_noise``
    (noise - natural, pooled as ``<t>_gain``) and ``<t>_l2_minus_matched_noise`` (the L2 gain
    minus the noise gain, ``stats.gain_difference`` over family on the same pairs and n, side
    +1: adversarial training adds to what matched noise training gives).

    Part keys end in :data:`RECIPE_PART_SUFFIX`'s suffix for ``recipe``."""
    recipe = recipe or cfg.recipe
    main = stats.main_gains(stats.deltas(df), cfg.main_blocks, recipe=recipe)
    if main.empty:
        return None
    family, k = main["family"].iloc[0], int(main["unfrozen_blocks"].iloc[0])
    present = list(dict.fromkeys(main["target"]))
    targets = counted_targets(present)
    nmax, suffix = small_n_max(cfg), RECIPE_PART_SUFFIX.get(recipe, "")
    runs = stats._with_recipe(df)
    head = runs[(runs["unfrozen_blocks"] == 0) & (runs["recipe"] == recipe)]
    pooled, drop = stats.pooled_gain(df, nmax), stats.gain_peak_drop(head, pools=pools(cfg))
    label = main["source_label"].iloc[0] if "source_label" in main else family
    parts = []
    for t in present:
        role = "test" if t in targets else "control"
        parts.append(_part(f"{target_key(t)}_gain{suffix}", f"gain at small n, {t}",
                           f"{label} - natural accuracy pooled over n <= {nmax}",
                           _row(pooled, target=t, family=family, unfrozen_blocks=k,
                                recipe=recipe), 1, paper_small_n_gain(t), _SEEDS, role))
        if role == "test":
            parts.append(_shrink_part(t, head, drop, family, label, recipe, cfg, suffix))
            parts += _matched_noise_parts(df, t, pooled, family, label, k, recipe, nmax, suffix)
    words = "a new head only" if k == 0 else f"{k} unfrozen block{'s' if k != 1 else ''}"
    return replicated(Claim(f"transfer_{recipe}", f"Section 1: robust sources transfer better "
                            f"with few target images ({label} vs natural, {words}, recipe "
                            f"{recipe})", claim_label(parts), tuple(parts)), cfg.preset)


def _matched_noise_parts(df, t, pooled, family, label, k, recipe, nmax, suffix) -> list[Part]:
    """:func:`section1`'s control parts on ``t`` for the first noise-trained family with pooled
    small-n runs at ``k`` blocks in ``recipe`` (none without one)."""
    noise = pooled[(pooled["target"] == t) & (pooled["norm"] == "noise")
                   & (pooled["unfrozen_blocks"] == k) & (pooled["recipe"] == recipe)]
    if noise.empty:
        return []
    nf = noise["family"].iloc[0]
    nlabel = noise["source_label"].iloc[0] if "source_label" in noise else nf
    diff = stats.gain_difference(df, "family", family, nf, n_max=nmax)
    return [
        _part(f"{target_key(t)}_gain_matched_noise{suffix}", f"matched-noise control gain, {t}",
              f"{nlabel} - natural accuracy pooled over n <= {nmax}",
              _row(pooled, target=t, family=nf, unfrozen_blocks=k, recipe=recipe), 1,
              basis_cols=_SEEDS, role="control"),
        _part(f"{target_key(t)}_l2_minus_matched_noise{suffix}", f"robust minus matched-noise "
              f"gain, {t}", f"({label} - natural) - ({nlabel} - natural) pooled over n <= {nmax}",
              _row(diff, target=t, unfrozen_blocks=k, recipe=recipe), 1, basis_cols=_SEEDS,
              role="control")]


def _shrink_part(t, head, drop, family, label, recipe, cfg, suffix) -> Part:
    """:func:`section1`'s ``<t>_shrinks_pool`` part from the head-only runs ``head`` and their
    ``stats.gain_peak_drop`` table ``drop``."""
    key, name = f"{target_key(t)}_shrinks_pool{suffix}", f"gain shrinks with n, {t}"
    cell = head[(head["target"] == t) & (head["norm"] == "natural")]
    if cell.empty:
        return Part(key, name, "gain at the peak n minus gain at the whole pool, head only",
                    NOT_TESTABLE, why=f"no head-only runs of recipe {recipe} on {t} in this "
                                      f"configuration (unfrozen_blocks 0 is where the grid "
                                      f"reaches the whole pool)")
    n_top = int(cell["n"].max())
    at = "the whole pool" if pools(cfg).get(t) == n_top else "the largest n"
    stat = f"{label} - natural: gain at the held-out peak n minus gain at n = {n_top:,} " \
           f"({at}), head only"
    reached = float(cell.loc[cell["n"] == n_top, "test_acc"].mean())
    regime = paper_regime_accuracy(t)
    if not reached >= regime:   # NaN on either side: not testable either
        return Part(key, name, stat, NOT_TESTABLE, why=(
            f"natural source at {reached:.1f}% (head only) at n = {n_top:,} ({at}); " + (
                f"the paper's gain shrinks beyond {regime:.1f}% (its natural accuracy where the "
                f"relative error reduction peaks on {PAPER_ANALOGUE.get(t, t)})"
                if math.isfinite(regime) else
                f"the paper has no target {t} stands in for, so no accuracy where its gain "
                f"shrinks")))
    row = _row(drop, target=t, family=family, unfrozen_blocks=0, recipe=recipe)
    return _part(key, name, stat, row and {**row, "mean": row["drop"]}, 1, basis_cols=_SEEDS,
                 cols=("mean", "drop_ci_low", "drop_ci_high"))


# --------------------------------------------------------------------------- Section 2
def headline_family(test) -> str:
    """The family Section 2's verdict rests on: the L2 family with the most source seeds in
    ``test`` (``shape_study.version_test``), ties broken by eps closest to 1; "" if none."""
    if test is None or len(test) == 0:
        return ""
    l2 = test[test["norm"] == "l2"].drop_duplicates("family")
    if l2.empty:
        return ""
    l2 = l2.assign(_d=(l2["eps"] - 1).abs()).sort_values(["n_source_seeds", "_d"],
                                                          ascending=[False, True])
    return str(l2["family"].iloc[0])


def section2(test, validation=None, preset: str | None = None, textured=None,
             textured_transfer=None) -> Claim | None:
    """Section 2: "the robust advantage grows when texture (or detail) is removed", for
    :func:`headline_family`: the difference in differences of the robust advantage on each
    changed version the test has (stylized, low-passed, low-resolution targets;
    ``shape_study.version_test``, side +1), with the noise-trained family's DiDs beside them as
    control parts (``did_<version>_matched_noise``: mini's noise family is the clean-accuracy-
    matched ``zoo.MATCHED_NOISE``); and the cue-conflict part. With ``textured``
    (``shape_study.textured_test``: the textured-source experiment ran) that part is
    ``cue_conflict_textured``: the shape bias of the :func:`headline_family` of ``textured``
    minus natural (points, side +1), *not testable at this scale* when a cue alone is at chance
    for the natural textured source, with the noise control's difference beside it
    (``cue_conflict_textured_noise``, role control). With ``textured_transfer``
    (``shape_study.textured_transfer_test``) the part ``textured_shape_vs_texture``: the DiD of
    the robust advantage of the :func:`headline_family` of the textured sources, shape-only
    target minus texture-only target (points, side +1), with the noise control's beside it
    (``textured_shape_vs_texture_noise``, role control). Without it, the plain Fashion-MNIST part
    ``cue_conflict`` is *not testable* when ``validation`` (``shape_study.cue_validation``)
    finds a stimulus kind whose cues alone are at chance for some source (no source can then
    show a texture bias). None without either experiment.
    ``preset``: apply its recorded replication check (:func:`replicated`)."""
    family, tfamily = headline_family(test), headline_family(textured)
    if not family and not tfamily:
        return None
    parts = []
    if family:
        label = str(test.loc[test["family"] == family, "label"].iloc[0])
        ran = set(test["version"])   # the versions the experiment has (shape_versions)
        versions = [v for v in shape_study.VERSIONS if v != "original" and v in ran]
        noise = test[test["norm"] == "noise"]
        for version in versions:
            row = _row(test, family=family, version=version)
            parts.append(_part(f"did_{version}", f"robust advantage, {version} minus original",
                               f"DiD of {label} - natural accuracy",
                               row and {**row, "mean": row["did"]}, 1, basis_cols=_SEEDS))
        for version in versions if len(noise) else ():
            row = _row(noise, family=noise["family"].iloc[0], version=version)
            parts.append(_part(f"did_{version}_matched_noise", f"noise-control advantage, {version} "
                               f"minus original", f"DiD of {noise['label'].iloc[0]} - natural "
                               f"accuracy", row and {**row, "mean": row["did"]}, 1,
                               basis_cols=_SEEDS, role="control"))
    if tfamily:
        parts += _textured_parts(textured, tfamily)
    elif validation is not None and len(validation):
        dead = sorted(set(validation.loc[~validation["informative"].astype(bool), "kind"]))
        if dead:
            parts.append(Part("cue_conflict", "cue-conflict shape bias, robust minus natural",
                              "shape bias (Geirhos)", NOT_TESTABLE, unit="share",
                              why=f"a cue alone is at chance for some source on {', '.join(dead)}"
                                  f": no source here can take the texture shortcut"))
    parts += _textured_transfer_parts(textured_transfer)
    label = label if family else str(textured.loc[textured["family"] == tfamily, "label"].iloc[0])
    return replicated(Claim("shape", f"Section 2: the robust advantage grows when texture or "
                            f"detail is removed ({label} vs natural)", claim_label(parts),
                            tuple(parts)), preset)


_STIMULUS_SEEDS = (("n_source_seeds", "source seeds"), ("n_subset_seeds", "stimulus seeds"))


def _textured_parts(textured, family: str) -> list[Part]:
    """The textured-source parts of :func:`section2`: ``family`` minus natural (test) and the
    first noise family minus natural (control)."""
    row = _row(textured, family=family)
    name = "textured-source shape bias, robust minus natural"
    stat = f"{row['label']} - natural shape bias on textured garments (Geirhos, points)"
    if not bool(row["cues_usable"]):
        return [Part("cue_conflict_textured", name, stat, NOT_TESTABLE,
                     why=f"a cue alone is at chance for the natural textured source (shape "
                         f"alone {row['natural_shape_acc']:.1f}%, texture alone "
                         f"{row['natural_texture_acc']:.1f}%, chance {row['chance']:.0f}%): "
                         f"the stimuli cannot separate the two cues")]
    parts = [_part("cue_conflict_textured", name, stat, {**row, "mean": row["diff"]}, 1,
                   basis_cols=_STIMULUS_SEEDS)]
    noise = textured[textured["norm"] == "noise"]
    if len(noise):
        r = noise.iloc[0].to_dict()
        parts.append(_part("cue_conflict_textured_noise", "textured-source shape bias, noise "
                           "control minus natural", f"{r['label']} - natural shape bias on "
                           f"textured garments (Geirhos, points)", {**r, "mean": r["diff"]}, 1,
                           basis_cols=_STIMULUS_SEEDS, role="control"))
    return parts


def _textured_transfer_parts(test) -> list[Part]:
    """The textured-source transfer parts of :func:`section2` (none without ``test``)."""
    if test is None or len(test) == 0:
        return []
    rows = test[test["version"] == shape_study.SHAPE_VS_TEXTURE]
    family = headline_family(rows)
    if not family:
        return []
    shape, texture = rows["shape_target"].iloc[0], rows["texture_target"].iloc[0]
    parts = []
    for key, fam, role in (("textured_shape_vs_texture", family, "test"),
                           ("textured_shape_vs_texture_noise",
                            next(iter(rows.loc[rows["norm"] == "noise", "family"]), ""),
                            "control")):
        if not fam:
            continue
        row = _row(rows, family=fam)
        parts.append(_part(key, f"textured-source {'noise-control' if role == 'control' else 'robust'}"
                           f" advantage, shape-only minus texture-only target",
                           f"DiD of {row['label']} - natural accuracy ({shape} minus {texture}, "
                           f"head only)", {**row, "mean": row["did"]}, 1, basis_cols=_SEEDS,
                           role=role))
    return parts


# --------------------------------------------------------------------------- Section 3
def section3(studies, preset: str | None = None) -> Claim | None:
    """Section 3: "the most influential training images share the test image's class more
    often with a robust source", on the fine-tuned setting's ``studies``; None without a
    natural / robust pair. ``preset``: apply its recorded replication check.

    Pre-specified (issue 21, written before any of its numbers was computed). The **test part**
    (``<target>_auc_matched``) is the per-test-image AUC on **loss-matched** heads, robust minus
    natural, paired over test images and seeds with the crossed-seed interval
    (``influence_study.robust_minus_natural``, metric "auc_matched", AUC in points = x 100),
    side +1, on the first influence target. A test image's AUC is the probability that a random
    same-class training image has a larger (signed, positive = helpful) influence than a random
    other-class one, over every training image of the head problem, ties one half: chance 0.5
    whatever the class count. Loss matching: each head's L2 penalty is bisected (on its log) so
    that its mean training cross-entropy equals one target per influence target, the mean over
    the natural studies of the natural head's training loss at the default penalty. Why: the
    AUC uses every training image, so it is not at the ceiling where the top-1 share sits
    (84-96% at mini, chance 10-12.5%); its chance level does not depend on the class count; and
    loss matching removes the head-fit confound (a worse-fitting head keeps larger training
    residuals, and influence scales with them).

    **Controls** (role "control", reported beside, never counted), same target and interval:
    the paper's statistic, the top-1 same-class share at the default penalty (``_top1``, the
    paper's difference beside it), the loss-matched top-1 share (``_top1_matched``), the
    NN-adjusted top-1 share (top-1 minus the nearest-neighbour share of the same study,
    ``_top1_nn_adjusted``), the AUC at the default penalty (``_auc``) and the authors'
    computation (their head and pseudo-inverse, top-1 share, ``_top1_authors``)."""
    targets = [t for t in dict.fromkeys(t for _, t in studies)
               if ("robust", t) in studies and ("natural", t) in studies]
    if not targets:
        return None
    t = targets[0]
    paper = reference.INFLUENCE["top1"]["robust"] - reference.INFLUENCE["top1"]["natural"]
    parts = []
    for metric, name, role in SECTION3_PARTS:
        c = influence_study.robust_minus_natural(studies, t, metric, full=True)
        parts.append(_part(f"{target_key(t)}_{metric}", f"{name}, {t}",
                           "robust - natural, paired (source seed x subset seed)", c, 1,
                           paper if metric == "top1" else math.nan, _SEEDS, role))
    return replicated(Claim("influence", "Section 3: the most influential training images "
                            "carry the class more often with a robust source",
                            claim_label(parts), tuple(parts)), preset)


#: Section 3's parts in order: (``influence_study.METRICS`` name, part name, role); the first is
#: the pre-specified test (see :func:`section3`)
SECTION3_PARTS = (
    ("auc_matched", "same-class AUC x 100, loss-matched heads", "test"),
    ("top1", "top-1 same-class share (the paper's statistic)", "control"),
    ("top1_matched", "top-1 same-class share, loss-matched heads", "control"),
    ("top1_nn_adjusted", "top-1 share minus the nearest-neighbour share", "control"),
    ("auc", "same-class AUC x 100, default penalty", "control"),
    ("top1_authors", "top-1 share, the authors' head and pseudo-inverse", "control"),
)


# --------------------------------------------------------------------------- display / CLI
def table(claims) -> "pandas.DataFrame":
    """One line per part of ``claims``: claim, claim label, part, role, label, interval, basis,
    the paper's value and whether it is inside, and why (not testable)."""
    import pandas as pd
    rows = [dict(claim=c.title, claim_label=c.label, part=p.name, role=p.role, label=p.label,
                 estimate=p.interval_text(), unit=p.unit, basis=p.basis,
                 paper=(f"{p.paper:+.1f}" if math.isfinite(p.paper) else "–"),
                 paper_inside=p.paper_inside, why=p.why)
            for c in claims for p in c.parts]
    return pd.DataFrame(rows)


def _first_seeds(frame, k: int | None):
    """Rows of ``frame`` from the first ``k`` source seeds of each family (all when None)."""
    if k is None or frame is None or len(frame) == 0:
        return frame
    rank = frame.groupby("family")["source_seed"].rank(method="dense")
    return frame[rank <= k]


def evaluate(cfg, workers: int = 1, source_seeds: int | None = None) -> list[Claim]:
    """Every claim's record for ``cfg`` from the results store and the cached studies, without
    executing notebooks; missing runs are computed first, as the notebooks would.
    ``source_seeds`` keeps the first k source seeds of each family (the precision table's
    "at 3 source seeds"); None keeps every one."""
    store = Store(cfg.preset)
    sweep.run(cfg, store, workers=workers)
    df = _first_seeds(store.frame(sweep.grid(cfg)), source_seeds)
    out = [section1(df, cfg)]
    if cfg.compare_recipe and (df["recipe"] == cfg.compare_recipe).any():
        out.append(section1(df, cfg, cfg.compare_recipe))
    if cfg.shape_targets or cfg.textured_sources:
        test = (shape_study.version_test(_first_seeds(shape_study.transfer_versions(
            cfg, cfg.preset, workers=workers), source_seeds)) if cfg.shape_targets else None)
        summary = shape_bias.summarize(shape_bias.evaluate_sources(cfg))
        textured = (shape_study.textured_test(_first_seeds(shape_study.textured_rows(cfg),
                                                           source_seeds))
                    if cfg.textured_sources else None)
        out.append(section2(test, shape_study.cue_validation(summary), cfg.preset, textured))
    if cfg.influence_targets:
        fams = influence_study.families(cfg.sources)
        studies = influence_study.run_studies(fams, cfg, setting="finetuned", workers=workers)
        if source_seeds is not None:
            keep = {s for ids in fams.values() for s in list(ids)[:source_seeds]}
            studies = {k: [st for st in v if st.source in keep] for k, v in studies.items()}
        out.append(section3(studies, cfg.preset))
    return [c for c in out if c is not None]


def precision(cfg, fewer: int = 3, workers: int = 1) -> "pandas.DataFrame":
    """For every claim part: the interval's half-width with the first ``fewer`` source seeds of
    each family and with all of them (both measured on this store), and the variance components
    (source seed, subset seed, residual) of the full design; the label with each."""
    import pandas as pd
    rows = {}
    for k, which in ((fewer, "few"), (None, "all")):
        for c in evaluate(cfg, workers, source_seeds=k):
            for p in c.parts:
                if p.label == NOT_TESTABLE:
                    continue
                r = rows.setdefault((c.title, p.name), dict(claim=c.title, part=p.name))
                r[f"half_width_{which}"] = (p.ci_high - p.ci_low) / 2
                r[f"label_{which}"] = p.label
                if which == "all":
                    r.update(basis=p.basis, var_source=p.var_source, var_subset=p.var_subset,
                             var_resid=p.var_resid)
    return pd.DataFrame(list(rows.values()))


def target_key(target: str) -> str:
    """A glue-safe name for a target ("lowpass4:digits" -> "lowpass4_digits")."""
    return re.sub(r"\W+", "_", str(target)).strip("_")
