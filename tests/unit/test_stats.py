"""CI maths and p-values against hand-computed cases; Holm / Benjamini-Hochberg; paired
comparisons over families, block counts and recipes; the pre-specified shrinkage and pooled
small-n tests on frames of known structure; reference table; chapter 2's findings text, gain
table and headline verdict."""
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from robust_transfer import reference, stats
from robust_transfer.chapters import ch02_transfer as ch02
from robust_transfer.config import Config

#: the configuration of the synthetic frames: n = 10 and 80 (the smaller half: n <= 10), head
#: only, one recipe
HEADLINE_CFG = dataclasses.replace(Config(), n_values=(10, 80), main_blocks=0, compare_recipe="")
FINDINGS = (
    "- **digits, recipe ours, 0 unfrozen block(s), l2 vs natural**: gain significantly > 0 "
    "(Holm-corrected) at 2 of 2 sample sizes (n = 10, 80); largest mean gain +6.0 points "
    "[+3.5, +8.5] at n = 10; from n = 10 to n = 80 the gain falls (+6.0 -> +1.0; slope -1.67 "
    "points per doubling of n [-2.49, -0.84]).")


def test_ci_crossed_source_and_subset_seeds_by_hand():
    # rows = source seeds, columns = subset seeds
    x = [[70, 72, 74], [60, 62, 64]]
    r = stats.ci(x)
    # row means 72, 62 -> var 50 -> /S=2 -> 25 ; column means 65, 67, 69 -> var 4 -> /J=3 -> 4/3
    se2 = 25 + 4 / 3
    df = se2 ** 2 / (25 ** 2 / 1 + (4 / 3) ** 2 / 2)
    assert r["mean"] == pytest.approx(67.0)
    assert r["df"] == pytest.approx(df)
    assert df == pytest.approx(1.10795, abs=1e-4)
    from scipy.stats import t
    assert r["half_width"] == pytest.approx(t.ppf(0.975, df) * math.sqrt(se2))
    assert r["ci_basis"] == "source+subset seeds"
    assert (r["n_source_seeds"], r["n_subset_seeds"]) == (2, 3)


def test_ci_only_source_variance_uses_t_table_value():
    # columns identical -> subset variance 0, df = S - 1 = 2, t_{0.975,2} = 4.302653
    x = [[70, 70], [60, 60], [65, 65]]
    r = stats.ci(x)
    se = math.sqrt(25 / 3)  # var(70, 60, 65) = 25
    assert r["df"] == pytest.approx(2)
    assert r["half_width"] == pytest.approx(4.302653 * se, rel=1e-6)
    assert r["ci_low"] == pytest.approx(65 - 4.302653 * se, rel=1e-6)


def test_ci_wider_than_subset_only_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 1)) * 5 + rng.normal(size=(3, 4))  # big source-seed effect
    crossed = stats.ci(x)["half_width"]
    subset_only = stats.ci(x[:1])["half_width"]  # one source seed: the fall-back
    assert crossed > subset_only


def test_ci_fallbacks():
    r = stats.ci([[10, 12, 14, 16]])
    assert r["ci_basis"] == "subset seeds only"
    assert r["half_width"] == pytest.approx(3.182446 * math.sqrt(20 / 3 / 4), rel=1e-6)
    assert stats.ci([[5.0]])["ci_basis"] == "single run"
    assert math.isnan(stats.ci([[5.0]])["half_width"])
    # an incomplete source seed (NaN) is dropped
    assert stats.ci([[1, 2], [3, np.nan]])["n_source_seeds"] == 1


def _frame():
    rows = []
    for fam, norm, shift in (("mini/fmnist/natural", "natural", 0.0), ("mini/fmnist/l2/1.0", "l2", 5.0)):
        for s in (0, 1, 2):
            for seed in (0, 1, 2):
                for n in (10, 80):
                    base = 50 + 10 * s + seed + (n == 80) * 30
                    gain = ((shift + s) * (n == 10) + 1.0 * (n == 80)) * (norm == "l2")
                    rows.append(dict(target="digits", family=fam, norm=norm, eps=0.0,
                                     source_label=norm, source_seed=s + 10 * (norm == "l2"),
                                     seed=seed, n=n, unfrozen_blocks=0, test_acc=base + gain))
    return pd.DataFrame(rows)


def test_deltas_are_paired_on_seed_index_and_subset():
    d = stats.deltas(_frame())
    assert set(d["family"]) == {"mini/fmnist/l2/1.0"}
    small = d[d["n"] == 10].iloc[0]
    # paired differences 5 + s (s = 0, 1, 2; source seeds 10, 11, 12 paired with 0, 1, 2)
    assert small["mean"] == pytest.approx(6.0)
    assert small["df"] == pytest.approx(2)
    assert small["half_width"] == pytest.approx(4.302653 * math.sqrt(1 / 3), rel=1e-6)
    large = d[d["n"] == 80].iloc[0]
    assert large["mean"] == pytest.approx(1.0) and large["half_width"] == pytest.approx(0.0)
    assert bool(small["significant"]) and bool(large["significant"])
    # Holm over the 2 rows: p(n=80) = 0 (exact gain) is the smallest, so p(n=10) is the
    # second of two and multiplied by 2 - 2 + 1 = 1
    assert large["p"] == 0 and large["p_adj"] == 0 and small["p_adj"] == pytest.approx(small["p"])
    assert small["b_family"] == "mini/fmnist/natural" and small["recipe"] == "ours"
    sh = stats.shrinkage(_frame())
    # per source seed s: slope (1 - (5 + s)) / (log2 80 - log2 10) = -(4 + s) / 3
    assert sh.iloc[0]["slope"] == pytest.approx(-5 / 3)
    assert sh.iloc[0]["slope_ci_high"] == pytest.approx(-5 / 3 + 4.302653 * math.sqrt(1 / 27),
                                                        rel=1e-6)
    assert bool(sh.iloc[0]["shrinks"])
    assert (sh.iloc[0]["gain_small"], sh.iloc[0]["gain_large"]) == pytest.approx((6.0, 1.0))


def test_summary_groups_cells():
    s = stats.summary(_frame())
    assert len(s) == 4 and set(s["n_runs"]) == {9}
    nat = s[(s["family"] == "mini/fmnist/natural") & (s["n"] == 10)].iloc[0]
    assert nat["mean"] == pytest.approx(61.0)


def test_reference_table():
    t = reference.paper_table()
    assert {"target", "n", "source", "accuracy"} <= set(t.columns)
    d = reference.paper_deltas()
    mnist = d[(d["target"] == "mnist") & (d["n"] == 100)].iloc[0]
    assert mnist["delta"] == pytest.approx(83.83 - 68.69)


def test_natural_family_is_found_by_norm_not_by_name():
    # salman2020's natural source is family ".../l2/0" with norm "natural"
    norms = {"salman2020/imagenet/l2/0": "natural", "salman2020/imagenet/l2/3": "l2",
             "paper/imagenet/natural": "natural"}
    assert stats._natural_family("salman2020/imagenet/l2/3", norms) == "salman2020/imagenet/l2/0"
    assert stats._natural_family("paper/imagenet/linf/4", norms) == "paper/imagenet/natural"
    assert stats._natural_family("mini/fmnist/l2/1.0", norms) is None


def test_findings_text_exactly():
    d, sh = stats.deltas(_frame()), stats.shrinkage(_frame())
    assert ch02.findings(d, sh) == FINDINGS
    assert ch02.findings(d.iloc[:0], sh) == "No paired robust-vs-natural comparison in these results."


def test_gain_table_exactly():
    d = stats.deltas(_frame())
    t = ch02.gain_table(d)
    assert t.loc[("digits", 0, "l2"), 10] == "+6.0 [+3.5, +8.5]*"
    assert t.loc[("digits", 0, "l2"), 80] == "+1.0 [+1.0, +1.0]*"


def test_display_functions_left_the_engine():
    for name in ("gain_table", "findings", "paper_comparison"):
        assert not hasattr(stats, name), name
    assert "main_gains" in stats.__all__


def _gain_frame(small, large, textures=True):
    """Natural and L2 families (3 source seeds x 3 subset seeds) on digits (+ textures with no
    gain); the L2 gain is ``small(s)`` at n = 10 and ``large(s)`` at n = 80 for source seed s."""
    rows = []
    for target in ("digits", "textures") if textures else ("digits",):
        for fam, norm in (("mini/fmnist/natural", "natural"), ("mini/fmnist/l2/1.0", "l2")):
            for s in (0, 1, 2):
                for seed in (0, 1, 2):
                    for n in (10, 80):
                        gain = (small(s) if n == 10 else large(s)) * (norm == "l2") * (target == "digits")
                        rows.append(dict(target=target, family=fam, norm=norm, eps=0.0,
                                         source_label=norm, source_seed=s, seed=seed, n=n,
                                         unfrozen_blocks=0,
                                         test_acc=50 + 10 * s + seed + 30 * (n == 80) + gain))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("small,large,verdict", [
    # the shrink part is not testable on this grid (test_claims tests the rule itself)
    (lambda s: 5 + s, lambda s: 1.0, "partly"),              # significant at small n
    (lambda s: 2.0, lambda s: 2.0, "partly"),
    (lambda s: 3 * (s - 1), lambda s: -10 + s, "not reproduced"),   # not significant
    (lambda s: 3 * (s - 1), lambda s: 3 * (s - 1), "not reproduced"),
])
def test_headline_verdict_is_the_claims_label(small, large, verdict):
    df = _gain_frame(small, large)
    a = ch02.analyses(df, HEADLINE_CFG)
    h = ch02.headline(a, HEADLINE_CFG)
    assert h["verdict"] == verdict == a["claims"][0].label
    assert h["counted_targets"] == "digits"   # the texture control is not counted
    assert all(isinstance(v, (str, int, float)) and not hasattr(v, "dtype") for v in h.values())


def test_headline_values():
    df = _gain_frame(lambda s: 5 + s, lambda s: 1.0)
    h = ch02.headline(ch02.analyses(df, HEADLINE_CFG), HEADLINE_CFG)
    assert h["digits_gain"] == pytest.approx(6.0)   # pooled over n <= 10 (the smaller half)
    assert h["digits_gain_low"] == pytest.approx(6.0 - 4.302653 * math.sqrt(1 / 3), rel=1e-6)
    assert h["small_n_max"] == 10 and h["unfrozen_blocks"] == 0 and h["recipe"] == "ours"
    assert h["part_digits_shrinks_pool_label"] == "not testable at this scale"
    assert h["part_digits_gain_label"] == "holds" and h["digits_gain_large"] == pytest.approx(1.0)
    assert h["digits_slope"] == pytest.approx(-5 / 3)   # (1 - (5 + s)) / 3 doublings, mean
    assert h["digits_gain_text"] == "+6.0 [+3.5, +8.5] at n = 10"
    assert "textures_gain" not in h and h["other_verdict"] == "not tested"
    empty = ch02.analyses(df[df["norm"] == "natural"], HEADLINE_CFG)
    assert ch02.headline(empty, HEADLINE_CFG)["verdict"] == "not tested"


def test_headline_and_table_of_the_shrinkage_test_in_points_and_error_reduction():
    df = _gain_frame(lambda s: 5 + s, lambda s: 1.0)
    a = ch02.analyses(df, HEADLINE_CFG)
    h = ch02.headline(a, HEADLINE_CFG)
    assert (h["digits_head_n_peak"], h["digits_head_n_max"]) == (10, 80)
    assert (h["digits_head_gain_peak"], h["digits_head_gain_max"], h["digits_head_drop"]) == \
        pytest.approx((6.0, 1.0, 5.0))
    assert h["digits_head_natural_max"] == pytest.approx(91.0)    # 50 + 10 + 1 + 30
    # error reduction per pair: gain / natural error (100 - natural accuracy)
    err10 = np.array([[50 - 10 * s - j for j in range(3)] for s in range(3)])
    assert h["digits_head_rer_peak"] == pytest.approx(np.mean([[(5 + s) / err10[s, j]
                                                                for j in range(3)] for s in range(3)]))
    t = ch02.shrink_table(a["drop"], ["mini/fmnist/l2/1.0"])
    row = t.loc[("digits", "ours", "l2")]
    assert row["gain at peak / at largest n"] == "+6.0 / +1.0"
    assert row["drop (points)"].startswith("+5.0 [") and row["drop (points)"].endswith("]*")
    assert row["basis"] == "source+subset seeds (3 x 3)"
    assert ch02.shrink_table(a["drop"].iloc[:0]).empty


def test_results_row_reads_the_authors_recipes_new_part_keys():
    cfg = dataclasses.replace(HEADLINE_CFG, recipe="authors")
    df = _gain_frame(lambda s: 5 + s, lambda s: 1.0).assign(recipe="authors")
    h = ch02.headline(ch02.analyses(df, cfg), cfg)
    assert "part_digits_gain_steps_label" in h and "part_digits_gain_label" not in h
    row = ch02.results_row(h, "paper")
    assert row["ours"].startswith("digits +6.0 at n <= 10 (shrinks with n: not testable at this "
                                  "scale); control (not counted): textures +0.0 [+0.0, +0.0] (")


def _curves(last):
    """A Fig. 2.4 table: natural and L2 at n = 40, 1 block, epochs 0, 20, ..., 100 of recipe
    authors (accuracy ``last[label]`` from epoch 60 on) and 0..20 of ours."""
    rows = []
    for recipe, epochs in (("authors", range(0, 101, 20)), ("ours", range(0, 21, 4))):
        for fam, label in (("mini/fmnist/natural", "natural"), ("mini/fmnist/l2/1.0", "l2")):
            for e in epochs:
                m = last[label] + (e - 60) / 10 if e >= 60 else 10.0 + e / 2
                rows.append(dict(target="digits", recipe=recipe, family=fam, source_label=label,
                                 unfrozen_blocks=1, n=40, epoch=e, mean=m, ci_low=m - 1,
                                 ci_high=m + 1))
    return pd.DataFrame(rows)


def test_last_epochs_show_whether_the_authors_recipe_has_plateaued():
    fams = ["mini/fmnist/natural", "mini/fmnist/l2/1.0"]
    c = _curves({"natural": 45.0, "l2": 52.0})
    last = ch02.last_epochs(c, 40, 1, fams)
    assert sorted(last[last["recipe"] == "authors"]["epoch"].unique()) == [60, 80, 100]
    assert sorted(last[last["recipe"] == "ours"]["epoch"].unique()) == [12, 16, 20]
    v = ch02.last_epochs_values(c, 40, 1, fams)
    assert v["last_epochs_digits_authors"] == "l2 52.0, 54.0, 56.0%; natural 45.0, 47.0, 49.0% " \
                                              "(epochs 60, 80, 100)"
    text = ch02.epochs_text(c, 40, 1, fams)
    assert ("- digits, recipe `authors` (100 epochs): l2 reaches 95% of its final 56.0% by epoch "
            "80; natural reaches 95% of its final 49.0% by epoch 80; at its last 3 evaluated "
            "epochs: l2 52.0, 54.0, 56.0%; natural 45.0, 47.0, 49.0% (epochs 60, 80, 100).") in text
    assert ch02.last_epochs(c, 160, 1, fams).empty and ch02.last_epochs_values(c, 160, 1, fams) == {}
    # the headline glues them, at the largest n both recipes ran
    cfg = dataclasses.replace(HEADLINE_CFG, main_blocks=1, compare_n_values=(10, 40))
    a = ch02.analyses(_gain_frame(lambda s: 5 + s, lambda s: 1.0), HEADLINE_CFG)
    h = ch02.headline({**a, "curves": c}, cfg)
    assert h["last_epochs_digits_authors"] == v["last_epochs_digits_authors"]


def test_paper_comparison_states_both_sides():
    d = stats.deltas(_frame())
    text = ch02.paper_comparison(stats.main_gains(d), reference.paper_deltas())
    assert text.startswith("**Paper.** The paper's robust source (l2_3) gains +9.9 points")
    assert ("**Ours** (l2 vs natural, 0 unfrozen block(s)): the gain is significantly positive in 2 "
            "and significantly negative in 0 of 2 (target, n) cells") in text
    assert text.endswith("(per target: digits +6.0 -> +1.0).")


# --------------------------------------------------------------------------- p-values, adjust


def test_ci_p_value_by_hand():
    x = [[70, 70], [60, 60], [65, 65]]  # se = sqrt(25 / 3), df = 2 (see above)
    from scipy.stats import t
    assert stats.ci(x)["p"] == pytest.approx(2 * t.sf(65 / math.sqrt(25 / 3), 2))
    assert stats.ci(x)["p"] == pytest.approx(0.0019666, rel=1e-4)
    assert math.isnan(stats.ci([[5.0]])["p"])
    assert stats.ci([[2.0, 2.0], [2.0, 2.0]])["p"] == 0.0  # exact: no variance, mean != 0
    assert stats.ci([[0.0, 0.0], [0.0, 0.0]])["p"] == 1.0


def test_ci_p_below_005_exactly_when_interval_excludes_zero():
    rng = np.random.default_rng(1)
    for _ in range(50):
        x = rng.normal(loc=rng.normal(), size=(3, 4)) + rng.normal(size=(3, 1))
        r = stats.ci(x)
        assert (r["p"] < 0.05) == (r["ci_low"] > 0 or r["ci_high"] < 0)


@pytest.mark.parametrize("p,holm,bh", [
    # hand-worked: sorted 0.005, 0.01, 0.03, 0.04 -> Holm 4p, 3p, 2p, 1p made monotone:
    # 0.02, 0.03, 0.06, max(0.04, 0.06); BH 4p/1, 4p/2, 4p/3, 4p/4 -> 0.02, 0.02, 0.04, 0.04
    ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02], [0.02, 0.04, 0.04, 0.02]),
    # statsmodels multipletests(..., "holm" / "fdr_bh") on 0.01..0.05
    ([0.01, 0.02, 0.03, 0.04, 0.05], [0.05, 0.08, 0.09, 0.09, 0.09], [0.05] * 5),
    # NaNs pass through and are not counted (m = 2); adjusted values are capped at 1
    ([0.01, np.nan, 0.04], [0.02, np.nan, 0.04], [0.02, np.nan, 0.04]),
    ([0.6, 0.5], [1.0, 1.0], [0.6, 0.6]),
])
def test_adjust_holm_and_bh_by_hand(p, holm, bh):
    np.testing.assert_allclose(stats.adjust(p, "holm"), holm, equal_nan=True)
    np.testing.assert_allclose(stats.adjust(p, "bh"), bh, equal_nan=True)
    np.testing.assert_allclose(stats.adjust(p), holm, equal_nan=True)  # Holm by default


def test_adjust_rejects_unknown_method():
    with pytest.raises(ValueError, match="method='bonferroni'"):
        stats.adjust([0.1], "bonferroni")
    assert stats.adjust([np.nan]).shape == (1,)


# --------------------------------------------------------------------------- compare


def _grid_frame(gain, ns=(10, 80), blocks=(0,), families=None, recipes=None, targets=("digits",)):
    """Natural + robust families, 3 source seeds x 3 subset seeds per cell; accuracy = a large
    source-seed and subset-seed effect + ``gain(norm, s, j, n, k, recipe, target)``. Source seeds
    of each family are numbered differently so pairing must go by seed index."""
    families = families or [("mini/fmnist/natural", "natural", 0.0), ("mini/fmnist/l2/1.0", "l2", 1.0)]
    rows = []
    for target in targets:
        for fam, norm, eps in families:
            for s in range(3):
                for j in range(3):
                    for n in ns:
                        for k in blocks:
                            for recipe in recipes or [None]:
                                acc = 40 + 10 * s + 3 * j + 5 * np.log2(n) + gain(
                                    norm, s, j, n, k, recipe, target)
                                row = dict(target=target, family=fam, norm=norm, eps=eps,
                                           source_label=f"{norm} {eps}",
                                           source_seed=100 * len(fam) + s, seed=j, n=n,
                                           unfrozen_blocks=k, test_acc=acc)
                                if recipe is not None:
                                    row["recipe"] = recipe
                                rows.append(row)
    return pd.DataFrame(rows)


def test_compare_over_unfrozen_blocks_pairs_the_right_rows():
    # block k adds k * (s + 1) points for source seed s: paired differences 2 (s + 1) for 2 vs 0
    df = _grid_frame(lambda norm, s, j, n, k, r, t: k * (s + 1), blocks=(0, 1, 2))
    c = stats.compare(df, "unfrozen_blocks", 2, 0)
    assert len(c) == 4  # 2 families x 2 n
    assert set(c["unfrozen_blocks"]) == {2} and set(c["b_unfrozen_blocks"]) == {0}
    r = c.iloc[0]
    assert r["mean"] == pytest.approx(4.0)  # 2 * mean(1, 2, 3)
    # only the source-seed effect is left: differences 2, 4, 6 -> var 4, se^2 = 4 / 3, df = 2
    assert r["half_width"] == pytest.approx(4.302653 * math.sqrt(4 / 3), rel=1e-6)
    assert r["n_pairs"] == 9 and r["ci_basis"] == "source+subset seeds"
    assert set(c["family"]) == {"mini/fmnist/natural", "mini/fmnist/l2/1.0"}
    # block counts are paired within one family, never across families
    assert stats.compare(df, "unfrozen_blocks", 1, 0)["mean"].tolist() == pytest.approx([2.0] * 4)


def test_compare_over_family_describes_a_and_names_b():
    fams = [("mini/fmnist/natural", "natural", 0.0), ("mini/fmnist/l2/1.0", "l2", 1.0),
            ("mini/fmnist/linf/0.03", "linf", 0.03)]
    df = _grid_frame(lambda norm, s, j, n, k, r, t: {"l2": 3.0, "linf": 1.0}.get(norm, 0.0),
                     families=fams)
    c = stats.compare(df, "family", "mini/fmnist/linf/0.03", "mini/fmnist/l2/1.0")
    assert len(c) == 2 and c["mean"].tolist() == pytest.approx([-2.0, -2.0])
    assert set(c["norm"]) == {"linf"} and set(c["eps"]) == {0.03}
    assert set(c["b_family"]) == {"mini/fmnist/l2/1.0"}


def test_compare_over_recipe_and_missing_recipe_is_ours():
    df = _grid_frame(lambda norm, s, j, n, k, r, t: 2.0 * (r == "authors") * (norm == "l2"),
                     recipes=["ours", "authors"])
    c = stats.compare(df, "recipe", "authors", "ours")
    assert set(c["recipe"]) == {"authors"} and set(c["b_recipe"]) == {"ours"}
    assert c.set_index("family")["mean"].to_dict() == pytest.approx(
        {"mini/fmnist/l2/1.0": 2.0, "mini/fmnist/natural": 0.0})
    old = _grid_frame(lambda *a: 0.0)  # stored before recipes existed: no recipe column
    assert "recipe" not in old and set(stats.summary(old)["recipe"]) == {"ours"}
    mixed = pd.concat([old, df[df["recipe"] == "authors"]], ignore_index=True)  # NaN recipes
    assert len(stats.compare(mixed, "recipe", "authors", "ours")) == 4


def test_compare_without_partners_is_empty_with_its_columns():
    df = _grid_frame(lambda *a: 0.0, blocks=(0, 1))
    df = df[(df["unfrozen_blocks"] == 0) == (df["norm"] == "natural")]  # no family has both
    c = stats.compare(df, "unfrozen_blocks", 1, 0)
    assert c.empty and list(stats.ci([[1.0]])) == [k for k in c.columns if k in stats.ci([[1.0]])]
    assert {"b_unfrozen_blocks", "n_pairs", "p"} <= set(c.columns)


def test_compare_rejects_bad_input():
    df = _grid_frame(lambda *a: 0.0)
    with pytest.raises(ValueError, match="over='n'"):
        stats.compare(df, "n", 10, 80)
    with pytest.raises(ValueError, match="a='authors'"):
        stats.compare(df, "recipe", "authors", "ours")
    with pytest.raises(ValueError, match="a = b"):
        stats.compare(df, "unfrozen_blocks", 0, 0)
    with pytest.raises(ValueError, match="lacks columns"):
        stats.compare(df.drop(columns="seed"), "unfrozen_blocks", 0, 0)
    with pytest.raises(ValueError, match="correction='bonferroni'"):
        stats.deltas(df, correction="bonferroni")


# --------------------------------------------------------------------------- deltas with Holm


def _borderline(norm, s, j, n, k, r, t):
    # gain 4.5 + (s - 1): t = 4.5 sqrt(3), df = 2 -> raw p = 0.0161 in each of 4 cells
    return (4.5 + (s - 1)) * (norm == "l2")


def test_deltas_stars_vanish_after_holm():
    df = _grid_frame(_borderline, ns=(10, 20, 40, 80))
    raw = stats.deltas(df, correction=None)
    assert len(raw) == 4 and raw["p"].to_numpy() == pytest.approx([0.0160653] * 4, rel=1e-5)
    assert raw["significant"].all() and (raw["direction"] == 1).all()
    assert (raw["ci_low"] > 0).all()  # every per-cell CI excludes 0 ...
    holm = stats.deltas(df)  # ... but 4 x 0.016 = 0.064 > 0.05 after Holm
    assert holm["p_adj"].to_numpy() == pytest.approx([4 * 0.0160653] * 4, rel=1e-5)
    assert not holm["significant"].any() and (holm["direction"] == 0).all()
    bh = stats.deltas(df, correction="bh")  # equal p-values: BH leaves them at 0.016
    assert bh["significant"].all()


# --------------------------------------------------------------------------- pre-specified tests


NS = (10, 20, 40, 80, 160)


def test_shrinkage_detects_a_gain_falling_linearly_in_log2_n():
    # gain 8 - 2 log2(n / 10), with a per-pair slope wobble of mean 0
    gain = lambda norm, s, j, n, k, r, t: (norm == "l2") * (
        8 + (-2 + 0.3 * (s - 1) + 0.2 * (j - 1)) * np.log2(n / 10))
    sh = stats.shrinkage(_grid_frame(gain, ns=NS)).iloc[0]
    assert sh["slope"] == pytest.approx(-2.0)
    assert sh["slope_ci_high"] < 0 and bool(sh["shrinks"]) and sh["p"] < 0.05
    assert (sh["n_small"], sh["n_large"], sh["n_values"]) == (10, 160, 5)
    assert (sh["gain_small"], sh["gain_large"]) == pytest.approx((8.0, 0.0))
    assert sh["ci_basis"] == "source+subset seeds"


def test_shrinkage_of_a_constant_gain_covers_zero():
    noise = np.random.default_rng(3).normal(scale=1.0, size=(3, 3, len(NS)))
    gain = lambda norm, s, j, n, k, r, t: (norm == "l2") * (3 + noise[s, j, NS.index(n)])
    sh = stats.shrinkage(_grid_frame(gain, ns=NS)).iloc[0]
    assert sh["slope_ci_low"] < 0 < sh["slope_ci_high"] and not sh["shrinks"]


def test_shrinkage_sign_convention_for_a_loss_that_closes():
    # gain -4 at n = 10 rising to 0 at n = 160: slope +1, so it does not "shrink"
    gain = lambda norm, s, j, n, k, r, t: (norm == "l2") * (-4 + (1 + 0.1 * s) * np.log2(n / 10))
    sh = stats.shrinkage(_grid_frame(gain, ns=NS)).iloc[0]
    assert sh["slope"] == pytest.approx(1.1) and sh["slope_ci_low"] > 0 and not sh["shrinks"]


def test_shrinkage_one_row_per_claim_and_pair_with_missing_n():
    df = _grid_frame(lambda norm, s, j, n, k, r, t: (norm == "l2") * (6 - np.log2(n / 10)),
                     ns=NS, blocks=(0, 1), targets=("digits", "textures"))
    # subset seed 2 has no run at the two largest n: its slope comes from the three smallest
    df = df[~((df["seed"] == 2) & (df["n"] >= 80))]
    sh = stats.shrinkage(df)
    assert len(sh) == 4 and set(sh["recipe"]) == {"ours"}
    assert sh["slope"].to_numpy() == pytest.approx([-1.0] * 4)
    assert (sh["n_subset_seeds"] == 3).all()


def test_pooled_gain_averages_small_n_per_seed_pair():
    df = _frame()  # gain 5 + s at n = 10, 1 at n = 80
    one = stats.pooled_gain(df, 10).iloc[0]
    assert one["mean"] == pytest.approx(6.0) and (one["n_from"], one["n_to"]) == (10, 10)
    both = stats.pooled_gain(df, 80).iloc[0]
    # per pair (5 + s + 1) / 2 = 3 + s / 2: mean 3.5, se^2 = var(3, 3.5, 4) / 3 = 0.25 / 3
    assert both["mean"] == pytest.approx(3.5) and both["n_values"] == 2
    assert both["half_width"] == pytest.approx(4.302653 * math.sqrt(0.25 / 3), rel=1e-6)
    assert bool(both["significant"]) and both["direction"] == 1
    assert stats.pooled_gain(df, 5).empty
    with pytest.raises(ValueError, match="n_max=0"):
        stats.pooled_gain(df, 0)


# --------------------------------------------------------------------------- main_gains


def _delta_rows():
    rows = []
    for fam, seeds in (("mini/fmnist/l2/1.0", 3), ("mini/fmnist/l2/3.0", 1)):
        for recipe, blocks in (("ours", (0, 1, 2)), ("authors", (0, 1))):
            for k in blocks:
                for n in (10, 80):
                    rows.append(dict(target="digits", recipe=recipe, family=fam, norm="l2",
                                     unfrozen_blocks=k, n=n, n_source_seeds=seeds, mean=1.0))
    return pd.DataFrame(rows)


def test_main_gains_block_count_fallback_and_recipes():
    d = _delta_rows()
    m = stats.main_gains(d, 1)
    assert set(m["family"]) == {"mini/fmnist/l2/1.0"}  # the family with most source seeds
    assert m.groupby("recipe")["unfrozen_blocks"].unique().map(list).to_dict() == {
        "ours": [1], "authors": [1]}
    m = stats.main_gains(d, 3)  # the paper's 3 blocks: the largest count below it per recipe
    assert m.groupby("recipe")["unfrozen_blocks"].max().to_dict() == {"ours": 2, "authors": 1}
    assert set(stats.main_gains(d, 3, recipe="authors")["recipe"]) == {"authors"}
    assert len(stats.main_gains(d, 0)) == 4
    assert stats.main_gains(d, 1, norm="linf").empty
    with pytest.raises(ValueError, match="blocks=-1"):
        stats.main_gains(d, -1)


def test_norms_text_counts_cells_after_holm_correction():
    """Fig. 2.6's counts: two cells with p = 0.03 are significant one at a time, neither after
    Holm over the pair's four cells; p = 0.001 survives it. Sign from the mean."""
    d = pd.DataFrame(dict(family="mini/fmnist/linf/0.1", b_family="mini/fmnist/l2/1.0",
                          unfrozen_blocks=0, source_label="L∞ ε=0.1", n_source_seeds=3,
                          mean=[2.0, 1.0, -3.0, 0.5], p=[0.03, 0.03, 0.001, 0.8],
                          ci_low=[0.2, 0.1, -5.0, -1.0], ci_high=[3.8, 1.9, -1.0, 2.0]))
    text = ch02.norms_text(d, [("mini/fmnist/linf/0.1", "mini/fmnist/l2/1.0")], 0)
    assert ("significantly above at 0, below at 1 after Holm correction over these cells "
            "(uncorrected per-cell 95% CIs: above at 2, below at 1)") in text


# --------------------------------------------------------------------------- gain_peak_drop
PEAK_NS = (10, 20, 40, 80, 160, 320)


def _peak_frame(gain, S=3, J=4, ns=PEAK_NS):
    """Natural + robust families, S source seeds x J subset seeds per n; the natural accuracy
    rises with n (40-77%, off the ceiling) with source- and subset-seed effects; robust =
    natural + ``gain(s, j, n)``."""
    rows = []
    for fam, norm in (("mini/fmnist/natural", "natural"), ("mini/fmnist/l2/1.0", "l2")):
        for s in range(S):
            for j in range(J):
                for n in ns:
                    acc = 40 + 2 * s + j + 6 * np.log2(n / 10) + (norm == "l2") * gain(s, j, n)
                    rows.append(dict(target="digits", family=fam, norm=norm, eps=0.0,
                                     source_label=norm, source_seed=100 * len(fam) + s, seed=j,
                                     n=n, unfrozen_blocks=0, test_acc=acc))
    return pd.DataFrame(rows)


def _noisy(mean, rng, S=3, J=4, ns=PEAK_NS, scale=1.0):
    """gain(s, j, n) = mean(n) + source-seed (s, n) + subset-seed (j, n) effects ~ N(0, scale^2)
    + residual ~ N(0, (scale / 2)^2)."""
    a, b = rng.normal(0, scale, (S, len(ns))), rng.normal(0, scale, (J, len(ns)))
    e = rng.normal(0, scale / 2, (S, J, len(ns)))
    return lambda s, j, n: mean(n) + a[s, ns.index(n)] + b[j, ns.index(n)] + e[s, j, ns.index(n)]


def _inverted_u(n, top=6.0):
    return 2 + top * np.exp(-np.log2(n / 40) ** 2 / 2)   # 2.8, 5.6, 2 + top, 5.6, 2.8, 2.1


def test_gain_peak_drop_by_hand_in_points_and_relative_error_reduction():
    g = {10: 2.0, 20: 10.0, 40: 4.0}
    r = stats.gain_peak_drop(_peak_frame(lambda s, j, n: g[n], ns=(10, 20, 40))).iloc[0]
    assert (r["n_peak"], r["n_max"], r["n_values"], r["peak_share"]) == (20, 40, 3, 1.0)
    assert (r["gain_peak"], r["gain_max"], r["drop"]) == pytest.approx((10.0, 4.0, 6.0))
    assert r["drop_ci_low"] == pytest.approx(6.0) and bool(r["shrinks"])   # no spread: se 0
    # relative error reduction per pair = gain / natural error
    err = {n: np.array([[60 - 2 * s - j - 6 * np.log2(n / 10) for j in range(4)]
                        for s in range(3)]) for n in g}
    rer = {n: g[n] / err[n] for n in g}
    assert r["n_peak_rel"] == 20
    assert (r["rer_peak"], r["rer_max"]) == pytest.approx((rer[20].mean(), rer[40].mean()))
    assert r["drop_rel"] == pytest.approx((rer[20] - rer[40]).mean())
    assert r["ci_basis"] == "source+subset seeds"
    assert (r["n_source_seeds"], r["n_subset_seeds"]) == (3, 4)


def test_gain_peak_drop_sees_an_inverted_u_that_shrinks():
    df = _peak_frame(_noisy(_inverted_u, np.random.default_rng(0)))
    r = stats.gain_peak_drop(df).iloc[0]
    assert r["n_peak"] == 40 and r["n_max"] == 320
    assert r["drop_ci_low"] > 0 and bool(r["shrinks"]) and r["p"] < 0.05
    assert r["drop"] == pytest.approx(_inverted_u(40) - _inverted_u(320), abs=1.5)
    # the slope test cannot see it: the gain at 320 is about that at 10
    assert not stats.shrinkage(df).iloc[0]["shrinks"]


def test_gain_peak_drop_of_a_flat_gain_covers_zero():
    df = _peak_frame(_noisy(lambda n: 3.0, np.random.default_rng(1)))
    r = stats.gain_peak_drop(df).iloc[0]
    assert r["drop_ci_low"] < 0 < r["drop_ci_high"] and not r["shrinks"]
    assert r["drop_rel_ci_low"] < 0 < r["drop_rel_ci_high"] and not r["shrinks_rel"]


def test_gain_peak_drop_holds_the_peak_out_of_the_pair_it_tests():
    """A flat gain: the peak of the means over all pairs, tested on the same pairs, drops by
    the bias of a maximum (here about +1 point on average); held out, the drop averages 0."""
    rng = np.random.default_rng(2)
    naive, held_out = [], []
    for _ in range(20):
        r = stats.gain_peak_drop(_peak_frame(_noisy(lambda n: 3.0, rng))).iloc[0]
        naive.append(r["gain_peak"] - r["gain_max"])
        held_out.append(r["drop"])
    assert np.mean(naive) > 0.6 and abs(np.mean(held_out)) < 0.3


def test_gain_peak_drop_label_reads_the_interval_not_the_point_estimate():
    # a peak 1 point above the gain at n_max under noise of 2 points: drop > 0, CI across 0
    df = _peak_frame(_noisy(lambda n: 3.0 + (n == 40), np.random.default_rng(7), scale=2.0))
    r = stats.gain_peak_drop(df).iloc[0]
    assert r["drop"] > 0 and r["drop_ci_low"] < 0 < r["drop_ci_high"]
    assert not r["shrinks"]


def test_gain_peak_drop_fallbacks():
    g = {10: 2.0, 20: 10.0, 40: 4.0}
    one_source = stats.gain_peak_drop(_peak_frame(lambda s, j, n: g[n] + j, S=1,
                                                  ns=(10, 20, 40))).iloc[0]
    assert one_source["ci_basis"] == "subset seeds only" and one_source["n_peak"] == 20
    single = stats.gain_peak_drop(_peak_frame(lambda s, j, n: g[n], S=1, J=1,
                                              ns=(10, 20, 40))).iloc[0]
    assert single["drop"] == pytest.approx(6.0) and math.isnan(single["drop_ci_low"])
    assert not single["shrinks"]                                   # no interval, no label
    assert stats.gain_peak_drop(_peak_frame(lambda s, j, n: 1.0, ns=(10,))).empty


def test_gain_peak_drop_at_the_whole_pool_counts_every_subset_seed_below_it():
    """At a target's whole pool the sweep runs the first subset seed only (every seed draws the
    same images): with ``pools``, every pair takes its source seed's gain there; without, only
    the first subset seed's pairs are tested."""
    g = _noisy(_inverted_u, np.random.default_rng(3))
    df = _peak_frame(g)
    df = df[(df["n"] < 320) | (df["seed"] == 0)]            # n = 320 is digits' pool here
    alone = stats.gain_peak_drop(df).iloc[0]
    pooled = stats.gain_peak_drop(df, pools={"digits": 320}).iloc[0]
    assert (alone["n_source_seeds"], alone["n_subset_seeds"]) == (3, 1)
    assert alone["ci_basis"] == "source seeds"
    assert (pooled["n_source_seeds"], pooled["n_subset_seeds"]) == (3, 4)
    assert pooled["ci_basis"] == "source+subset seeds" and bool(pooled["shrinks"])
    # the gain at the pool is the first subset seed's, every pair of a source seed the same
    assert pooled["gain_max"] == pytest.approx(np.mean([g(s, 0, 320) for s in range(3)]))
    assert stats.gain_peak_drop(df, pools={"digits": 640}).iloc[0]["n_subset_seeds"] == 1
    flat = _peak_frame(_noisy(lambda n: 3.0, np.random.default_rng(1)))
    r = stats.gain_peak_drop(flat[(flat["n"] < 320) | (flat["seed"] == 0)],
                             pools={"digits": 320}).iloc[0]
    assert r["drop_ci_low"] < 0 < r["drop_ci_high"] and not r["shrinks"]


#: the paper's subsets (reference table, natural vs L2 eps 3): peak n, gain at the peak and at
#: n = 25,600 (points); relative error reduction's peak n and values there
PAPER_PEAKS = {
    "cifar10": (200, 6.61, 0.99, 6400, 0.285, 0.163),
    "cifar100": (1600, 7.76, 0.60, 1600, 0.125, 0.024),
    "fmnist": (100, 5.69, -0.18, 200, 0.188, -0.027),
    "kmnist": (400, 19.20, 0.51, 6400, 0.520, 0.171),
    "mnist": (100, 15.14, 0.21, 6400, 0.523, 0.223),
    "svhn": (400, 24.67, 2.12, 6400, 0.451, 0.273),
}


def test_gain_peak_drop_means_says_shrinks_where_the_papers_numbers_do():
    d = reference.paper_deltas()
    r = stats.gain_peak_drop_means(d[~d["full"]]).set_index("target")
    assert sorted(r.index) == sorted(PAPER_PEAKS)
    for target, (n, peak, last, n_rel, rer_peak, rer_last) in PAPER_PEAKS.items():
        row = r.loc[target]
        assert (row["n_peak"], row["n_max"], row["n_peak_rel"]) == (n, 25600, n_rel), target
        assert (row["gain_peak"], row["gain_max"]) == pytest.approx((peak, last), abs=0.006)
        assert (row["rer_peak"], row["rer_max"]) == pytest.approx((rer_peak, rer_last), abs=5e-4)
        assert row["drop"] > stats.PEAK_DROP_MARGIN and bool(row["shrinks"]), target
        assert bool(row["shrinks_rel"]), target


def test_gain_peak_drop_means_shrinks_to_the_papers_full_sets_too():
    """The paper's table with its full training sets as the largest n (the analogue of our whole
    pool): every target's gain still shrinks from its peak, in points and in relative error
    reduction."""
    d = reference.paper_deltas()
    r = stats.gain_peak_drop_means(d).set_index("target")
    assert sorted(r.index) == sorted(PAPER_PEAKS)
    assert r.loc["cifar10", "n_max"] == 50000 and r.loc["svhn", "n_max"] == 73257
    for target, (n, peak, *_) in PAPER_PEAKS.items():
        assert (r.loc[target, "n_peak"], r.loc[target, "gain_peak"]) == (n, pytest.approx(peak, abs=0.006))
        assert bool(r.loc[target, "shrinks"]) and bool(r.loc[target, "shrinks_rel"]), target


def test_gain_peak_drop_means_margin():
    means = pd.DataFrame(dict(target="t", n=[10, 20, 40], natural=[50.0, 60, 70],
                              robust=[52.0, 61.5, 71]))   # gains 2, 1.5, 1: drop 1 from n = 10
    r = stats.gain_peak_drop_means(means).iloc[0]
    assert (r["n_peak"], r["drop"]) == (10, pytest.approx(1.0)) and not r["shrinks"]
    assert bool(stats.gain_peak_drop_means(means, margin=0.5).iloc[0]["shrinks"])


def _clean(l2, noise):
    """``zoo.table``-like rows: clean accuracies (fractions) of an L2 and a noise family."""
    import pandas as pd
    rows = [dict(family="m/l2/1.0", norm="l2", label="L2 ε=1", clean_acc=a) for a in l2]
    rows += [dict(family="m/noise/0.3", norm="noise", label="noise σ=0.3", clean_acc=a)
             for a in noise]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("noise, matched", [
    ((0.790, 0.792, 0.794), True),     # +0.1 points, tight: inside +-2
    ((0.815, 0.817, 0.819), False),    # +2.6 points: outside
    ((0.760, 0.800, 0.840), False),    # +0.9 on average, but the interval is wider than +-2
])
def test_clean_match_reads_the_interval_not_the_mean(noise, matched):
    from robust_transfer.chapters import common
    m = common.clean_match(_clean((0.789, 0.791, 0.793, 0.79), noise), "m/l2/1.0", "m/noise/0.3")
    assert m["matched"] is matched
    assert m["low"] < m["diff"] < m["high"]
    assert m["diff"] == pytest.approx(100 * (np.mean(noise) - 0.79075))
