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
    assert parts["digits_shrinks_pool"].label == NOT_TESTABLE
    assert "natural source at 91.0% (head only) at n = 80 (the largest n)" \
        in parts["digits_shrinks_pool"].why
    assert "beyond 97.3%" in parts["digits_shrinks_pool"].why
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
    assert [p.key for p in c.parts] == ["digits_gain", "digits_shrinks_pool", "textures_gain"]


#: the paper's six targets under this project's dataset names, and the texture control
PAPER_TARGETS = ("cifar10", "cifar100", "svhn", "fashion_mnist", "kmnist", "mnist")
POOL_CFG = dataclasses.replace(Config(), n_values=(10, 80), unfrozen_blocks=(0, 1), main_blocks=1,
                               targets=("digits", "textures"))


def _pool_frame(head_gain, cfg=POOL_CFG, recipe="ours", noise=0.5, seed=0):
    """Natural and L2 families, 3 source seeds x 3 subset seeds: 1 unfrozen block at n = 10, 80
    (L2 gain 5) and head-only runs at n = 10, 80, 320 and the target's whole pool (the first
    subset seed only there), L2 gain ``head_gain(n, pool)`` plus N(0, noise) per run. Natural
    accuracy 60 + 2 s + seed (62% on average at the pool)."""
    rng = np.random.default_rng(seed)
    rows = []
    for target, pool in claims.pools(cfg).items():
        for k, ns in ((0, (10, 80, 320, pool)), (1, (10, 80))):
            for fam, norm in (("mini/fmnist/natural", "natural"), ("mini/fmnist/l2/1.0", "l2")):
                for s in range(3):
                    for j in range(3):
                        for n in ns:
                            if n == pool and j > 0:
                                continue
                            g = head_gain(n, pool) if k == 0 else 5.0
                            acc = 60 + 2 * s + j + (norm == "l2") * (g + rng.normal(0, noise))
                            rows.append(dict(target=target, family=fam, norm=norm, eps=0.0,
                                             source_label=norm, source_seed=s, seed=j, n=n,
                                             unfrozen_blocks=k, recipe=recipe, test_acc=acc))
    return pd.DataFrame(rows)


def _inverted_u(n, pool):
    return {10: 2.0, 80: 8.0, 320: 5.0}.get(n, 1.0)     # 1.0 at the pool


def test_section1_shrinkage_reads_the_head_only_runs_to_the_pool(monkeypatch):
    monkeypatch.setattr(claims, "paper_regime_accuracy", lambda t: 50.0)
    c = claims.section1(_pool_frame(_inverted_u), POOL_CFG)
    parts = {p.key: p for p in c.parts}
    shrink = parts["digits_shrinks_pool"]
    assert shrink.label == HOLDS and c.label == "reproduced"
    assert shrink.mean == pytest.approx(7.0, abs=0.5)                  # 8 at n = 80, 1 at the pool
    assert "n = 1,297 (the whole pool), head only" in shrink.statistic
    # the pool has one subset seed; every pair's own subset counts at the smaller n
    assert shrink.basis == "source+subset seeds (3 source seeds, 3 subset seeds)"
    assert parts["digits_gain"].mean == pytest.approx(5.0, abs=0.5)   # 1 block (head only: 2)
    flat = claims.section1(_pool_frame(lambda n, pool: 3.0), POOL_CFG)
    assert {p.key: p for p in flat.parts}["digits_shrinks_pool"].label == UNDECIDED
    assert flat.label == "partly"


def test_section1_shrinkage_not_testable_below_the_papers_regime_at_the_pool():
    c = claims.section1(_pool_frame(_inverted_u), POOL_CFG)
    (shrink,) = [p for p in c.parts if p.key == "digits_shrinks_pool"]
    assert shrink.label == NOT_TESTABLE and c.label == "partly"
    assert shrink.why.startswith("natural source at 62.0% (head only) at n = 1,297 (the whole "
                                 "pool); the paper's gain shrinks beyond 97.3%")


def test_section1_counts_every_paper_target_but_the_texture_control():
    cfg = dataclasses.replace(POOL_CFG, targets=PAPER_TARGETS + ("textures",), preset="paper")
    c = claims.section1(_pool_frame(_inverted_u, cfg), cfg)
    roles = {p.key: p.role for p in c.parts}
    assert [k for k, r in roles.items() if r == "test"] == [
        f"{t}_{part}" for t in sorted(PAPER_TARGETS) for part in ("gain", "shrinks_pool")]
    assert roles == {**{k: "test" for k in roles if not k.startswith("textures")},
                     "textures_gain": "control"}
    assert claims.counted_targets(cfg.targets) == list(PAPER_TARGETS)
    assert claims.counted_targets(["textures"]) == ["textures"]     # nothing else to count
    shrink = {p.key[:-len("_shrinks_pool")]: p for p in c.parts if p.key.endswith("_pool")}
    # natural at 62% on the whole pool: past the paper's CIFAR-100 regime (37.9%) only
    assert shrink["cifar100"].label == HOLDS and "n = 49,900 (the whole pool)" in \
        shrink["cifar100"].statistic
    assert {t for t, p in shrink.items() if p.label == NOT_TESTABLE} == set(PAPER_TARGETS) - {"cifar100"}
    assert "peaks on fmnist" in shrink["fashion_mnist"].why


def test_section1_authors_parts_have_new_keys_the_old_record_does_not_decide(monkeypatch):
    record = {"transfer_authors/digits_gain": {"A": "holds", "B": "undecided"}}
    monkeypatch.setattr(claims, "replication", lambda preset: {"parts": record})
    df = _pool_frame(_inverted_u, recipe="authors")
    c = claims.section1(df[df["unfrozen_blocks"] == 1], POOL_CFG, "authors")
    assert [p.key for p in c.parts] == ["digits_gain_steps", "digits_shrinks_pool_steps",
                                        "textures_gain_steps"]
    assert c.parts[0].label == HOLDS and not c.parts[0].raw_label       # not the old record's
    assert c.parts[1].label == NOT_TESTABLE and "no head-only runs of recipe authors" in c.parts[1].why
    old = {"transfer_authors/digits_gain_steps": {"A": "holds", "B": "undecided"}}
    monkeypatch.setattr(claims, "replication", lambda preset: {"parts": old})
    assert claims.section1(df[df["unfrozen_blocks"] == 1], POOL_CFG, "authors").parts[0].label \
        == UNDECIDED                                                    # the rule still applies


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


def _noise_frame(l2_gain, noise_gain):
    """:func:`_gain_frame` plus a matched-noise family whose gain is ``noise_gain`` (points)."""
    base = _gain_frame(lambda s: l2_gain + s, lambda s: l2_gain + s)
    nat = base[base["norm"] == "natural"]
    noise = nat.assign(family="mini/fmnist/noise/0.3", norm="noise", source_label="noise",
                       test_acc=nat["test_acc"] + noise_gain * (nat["target"] == "digits")
                       + 0.2 * nat["seed"] * nat["source_seed"])
    return pd.concat([base, noise], ignore_index=True)


@pytest.mark.parametrize("l2, noise, diff_label", [(6.0, 1.0, HOLDS), (6.0, 6.0, UNDECIDED),
                                                   (1.0, 6.0, "contradicted")])
def test_section1_matched_noise_controls(l2, noise, diff_label):
    """The matched-noise control parts: its own gain, and L2 minus it paired on source seed
    index, subset seed and n (the natural runs cancel); controls never decide the claim."""
    c = claims.section1(_noise_frame(l2, noise), CFG)
    parts = {p.key: p for p in c.parts}
    assert [k for k in parts if "noise" in k] == ["digits_gain_matched_noise",
                                                  "digits_l2_minus_matched_noise"]
    assert parts["digits_gain_matched_noise"].mean == pytest.approx(noise + 0.2, abs=0.01)
    diff = parts["digits_l2_minus_matched_noise"]
    assert diff.mean == pytest.approx(l2 + 1 - noise - 0.2, abs=0.01)   # + mean source seed
    assert diff.label == diff_label and diff.role == "control"
    assert c.label == claims.section1(_gain_frame(lambda s: l2 + s, lambda s: l2 + s), CFG).label


def test_gain_difference_over_family_cancels_the_natural_runs():
    from robust_transfer import stats
    d = stats.gain_difference(_noise_frame(6.0, 2.0), "family", "mini/fmnist/l2/1.0",
                              "mini/fmnist/noise/0.3")
    row = d[d["target"] == "digits"].iloc[0]
    assert row["b_family"] == "mini/fmnist/noise/0.3"
    assert row["gain_a"] == pytest.approx(7.0) and row["gain_b"] == pytest.approx(2.2, abs=0.01)
    assert row["mean"] == pytest.approx(4.8, abs=0.01)
    with pytest.raises(ValueError, match="over='source'"):
        stats.gain_difference(_noise_frame(6.0, 2.0), "source", "a", "b")
