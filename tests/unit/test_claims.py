"""The verdict rules of ``robust_transfer.claims`` at their boundaries: a part's label reads the
interval (never the point estimate), a claim's label counts test parts only, and each
section's record on frames / tables of known structure."""
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from robust_transfer import claims
from robust_transfer.claims import CONTRADICTED, HOLDS, NOT_TESTABLE, UNDECIDED, Part
from robust_transfer.config import Config


@pytest.mark.parametrize("low,high,side,label", [
    (0.1, 5.0, 1, HOLDS),
    (-5.0, -0.1, 1, CONTRADICTED),
    (-0.1, 9.0, 1, UNDECIDED),      # point estimate far above 0, interval straddles it
    (0.0, 9.0, 1, UNDECIDED),       # "above 0" is strict: an end at 0 does not hold
    (-9.0, 0.0, 1, UNDECIDED),
    (-5.0, -0.1, -1, HOLDS),        # a claim that the statistic is negative (shrinkage)
    (0.1, 5.0, -1, CONTRADICTED),
    (-9.0, 0.1, -1, UNDECIDED),
    (math.nan, math.nan, 1, UNDECIDED),
    (0.5, math.nan, 1, UNDECIDED),
])
def test_part_label_reads_the_interval(low, high, side, label):
    assert claims.part_label(low, high, side) == label


def test_part_label_is_not_the_point_estimates_sign():
    # a rule reading the mean would call this "holds" (mean +4.45) or "contradicted" (-4.45)
    assert claims.part_label(-0.1, 9.0) == UNDECIDED
    assert claims.part_label(-9.0, 0.1) == UNDECIDED


def test_part_label_refuses_bad_input():
    with pytest.raises(ValueError, match="side=0"):
        claims.part_label(1, 2, 0)
    with pytest.raises(ValueError, match="swapped"):
        claims.part_label(2, 1)


def _p(label, role="test"):
    return Part("k", "name", "stat", label, role=role)


@pytest.mark.parametrize("labels,claim", [
    ([HOLDS, HOLDS], "reproduced"),
    ([HOLDS, UNDECIDED], "partly"),
    ([HOLDS, NOT_TESTABLE], "partly"),
    ([HOLDS, HOLDS, CONTRADICTED], "contradicted"),
    ([CONTRADICTED, UNDECIDED], "contradicted"),
    ([UNDECIDED, NOT_TESTABLE], "not reproduced"),
    ([NOT_TESTABLE], "not reproduced"),
    ([], "not reproduced"),
])
def test_claim_label(labels, claim):
    assert claims.claim_label([_p(lab) for lab in labels]) == claim


def test_controls_are_not_counted():
    parts = [_p(HOLDS), _p(CONTRADICTED, role="control")]
    assert claims.claim_label(parts) == "reproduced"
    assert claims.claim_label([_p(HOLDS, role="control")]) == "not reproduced"


def test_paper_inside():
    assert claims.paper_inside(15.1, 2.0, 16.0) == "yes"
    assert claims.paper_inside(15.1, 2.0, 15.0) == "no"
    assert claims.paper_inside(math.nan, 2.0, 15.0) == "–"


# --------------------------------------------------------------------------- Section 1
CFG = dataclasses.replace(Config(), n_values=(10, 80), main_blocks=0, compare_recipe="",
                          targets=("digits", "textures"))


def _gain_frame(small, large, texture=0.0):
    """Three source seeds x three subset seeds per family; the L2 gain at n = 10 and 80 on
    digits is ``small(s)`` / ``large(s)`` for source seed s, on textures ``texture``."""
    rows = []
    for target in ("digits", "textures"):
        for fam, norm in (("mini/fmnist/natural", "natural"), ("mini/fmnist/l2/1.0", "l2")):
            for s in range(3):
                for seed in range(3):
                    for n in (10, 80):
                        g = (small(s) if n == 10 else large(s)) if target == "digits" else texture
                        rows.append(dict(target=target, family=fam, norm=norm, eps=0.0,
                                         source_label=norm, source_seed=s, seed=seed, n=n,
                                         unfrozen_blocks=0, recipe="ours",
                                         test_acc=50 + 10 * s + seed + 30 * (n == 80)
                                         + g * (norm == "l2")))
    return pd.DataFrame(rows)


def test_section1_shrinkage_not_testable_below_the_papers_regime():
    # natural accuracy at the largest n: 80-93% < the paper's MNIST regime (97.34% at n = 6400)
    c = claims.section1(_gain_frame(lambda s: 5 + s, lambda s: 1.0), CFG)
    parts = {p.key: p for p in c.parts}
    assert parts["digits_gain"].label == HOLDS
    assert parts["digits_gain"].mean == pytest.approx(6.0)
    assert parts["digits_shrinks"].label == NOT_TESTABLE
    assert "natural source at 91.0%" in parts["digits_shrinks"].why
    assert "beyond 97.3%" in parts["digits_shrinks"].why
    assert parts["textures_gain"].role == "control"
    assert c.label == "partly"           # one part holds, the other cannot be tested
    assert parts["digits_gain"].paper == pytest.approx(claims.paper_small_n_gain("digits"))
    assert claims.paper_small_n_gain("digits") == claims.paper_small_n_gain("mnist") > 0


def test_paper_regime_accuracy_from_the_papers_table():
    # MNIST's relative error reduction peaks at n = 6400 (natural 97.34%)
    assert claims.paper_regime_accuracy("mnist5k") == pytest.approx(97.34)
    assert claims.paper_regime_accuracy("fashion_mnist") > 0
    assert math.isnan(claims.paper_regime_accuracy("textures"))


@pytest.mark.parametrize("small,large,texture,label", [
    (lambda s: 5 + s, lambda s: 1.0, 0.0, "reproduced"),          # holds, shrinks
    (lambda s: 2.0 + s, lambda s: 2.0 + s, 0.0, "partly"),        # holds, no drop: undecided
    (lambda s: 5 + s, lambda s: 1.0, -9.0, "reproduced"),         # the control does not count
    (lambda s: -5 - s, lambda s: -1.0, 0.0, "contradicted"),      # robust worse at small n
    (lambda s: 3 * (s - 1), lambda s: 3 * (s - 1), 0.0, "not reproduced"),
])
def test_section1_rule_when_shrinkage_is_testable(monkeypatch, small, large, texture, label):
    monkeypatch.setattr(claims, "paper_regime_accuracy", lambda t: 50.0)
    c = claims.section1(_gain_frame(small, large, texture), CFG)
    assert c.label == label
    assert [p.key for p in c.parts] == ["digits_gain", "digits_shrinks", "textures_gain"]


def test_section1_none_without_a_pair():
    df = _gain_frame(lambda s: 1.0, lambda s: 1.0)
    assert claims.section1(df[df["norm"] == "natural"], CFG) is None


def test_small_n_max_is_the_smaller_half():
    assert claims.small_n_max(Config()) == 80
    assert claims.small_n_max(dataclasses.replace(Config(), n_values=(10, 20, 40))) == 20


# --------------------------------------------------------------------------- Sections 2, 3
def _did(rows):
    return pd.DataFrame([dict(family=f, label=f, norm="l2", eps=e, version=v, did=(lo + hi) / 2,
                              ci_low=lo, ci_high=hi, ci_basis="source+subset seeds",
                              n_source_seeds=s, n_subset_seeds=3)
                         for f, e, s, v, lo, hi in rows])


def test_section2_reads_the_best_seeded_l2_family():
    test = _did([("a", 0.5, 1, "stylized", -9, -1), ("a", 0.5, 1, "lowpass", -9, -1),
                 ("b", 1.0, 6, "stylized", 0.5, 4), ("b", 1.0, 6, "lowpass", -1, 4)])
    c = claims.section2(test)
    assert [(p.key, p.label) for p in c.parts] == [("did_stylized", HOLDS), ("did_lowpass", UNDECIDED)]
    assert c.label == "partly" and "6 source seeds" in c.parts[0].basis
    valid = pd.DataFrame(dict(kind=["cue_a", "cue_b"], informative=[True, False]))
    c = claims.section2(test, valid)
    assert c.parts[-1].label == NOT_TESTABLE and "cue_b" in c.parts[-1].why
    assert claims.section2(pd.DataFrame()) is None


def test_section3_label_and_paper(monkeypatch):
    import robust_transfer.influence_study as ist
    ci = dict(mean=4.0, ci_low=1.0, ci_high=7.0, ci_basis="source+subset seeds",
              n_source_seeds=6, n_subset_seeds=3, var_source=2.0, var_subset=0.5, var_resid=1.0)
    monkeypatch.setattr(ist, "robust_minus_natural", lambda studies, t, metric, full: ci)
    studies = {("natural", "textures"): [], ("robust", "textures"): [], ("natural", "digits"): []}
    c = claims.section3(studies)
    p, top1 = c.parts[0], c.parts[1]
    assert (c.label, p.label, p.key, p.role) == ("reproduced", HOLDS, "textures_auc_matched", "test")
    assert (top1.key, top1.role) == ("textures_top1", "control")
    assert top1.paper == pytest.approx(78.61 - 55.08) and top1.paper_inside == "no"
    assert "6 source seeds, 3 subset seeds" in p.basis and p.var_source == 2.0
    assert claims.section3({("natural", "x"): []}) is None


def test_table_lists_every_part():
    c = claims.section1(_gain_frame(lambda s: 5 + s, lambda s: 1.0), CFG)
    t = claims.table([c])
    assert list(t["part"]) == [p.name for p in c.parts]
    assert t.loc[0, "estimate"].startswith("+6.0 [")


def test_variance_components_recover_a_planted_design():
    from robust_transfer import stats
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 3, size=(60, 1)), rng.normal(0, 1, size=(1, 40))
    x = 10 + a + b + rng.normal(0, 0.5, size=(60, 40))
    v = stats.variance_components(x)
    assert v["var_source"] == pytest.approx(a.var(ddof=1), rel=0.05)
    assert v["var_subset"] == pytest.approx(b.var(ddof=1), rel=0.1)
    assert v["var_resid"] == pytest.approx(0.25, rel=0.1)
    assert math.isnan(stats.variance_components(x[:1])["var_source"])
    assert stats.ci(x)["var_source"] == v["var_source"]
