"""CI maths against hand-computed cases; paired deltas; reference table; chapter 2's findings
text, gain table and headline verdict."""
import math

import numpy as np
import pandas as pd
import pytest

from robust_transfer import reference, stats
from robust_transfer.chapters import ch02_transfer as ch02


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
    sh = stats.shrinkage(_frame())
    assert sh.iloc[0]["drop_mean"] == pytest.approx(5.0) and bool(sh.iloc[0]["shrinks"])
    text = ch02.findings(d, sh)
    assert "digits" in text and "shrinks" in text


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


def test_findings_text_and_gain_table_exactly():
    d, sh = stats.deltas(_frame()), stats.shrinkage(_frame())
    assert ch02.findings(d, sh) == (
        "- **digits, 0 unfrozen block(s), l2 vs natural**: gain significantly > 0 at 2 of 2 "
        "sample sizes (n = 10, 80); largest mean gain +6.0 points [+3.5, +8.5] at n = 10; "
        "from n = 10 to n = 80 the gain shrinks (+6.0 -> +1.0, difference [+2.5, +7.5]).")
    t = ch02.gain_table(d)
    assert t.loc[("digits", 0, "l2"), 10] == "+6.0 [+3.5, +8.5]*"
    assert t.loc[("digits", 0, "l2"), 80] == "+1.0 [+1.0, +1.0]*"
    assert ch02.findings(d.iloc[:0], sh) == "No paired robust-vs-natural comparison in these results."


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
    (lambda s: 5 + s, lambda s: 1.0, "reproduced"),          # significant at small n, shrinks
    (lambda s: 2.0, lambda s: 2.0, "partly"),                # significant but does not shrink
    (lambda s: 3 * (s - 1), lambda s: -10 + s, "partly"),    # not significant, but shrinks
    (lambda s: 3 * (s - 1), lambda s: 3 * (s - 1), "not reproduced"),
])
def test_headline_verdict_rule(small, large, verdict):
    df = _gain_frame(small, large)
    h = ch02.headline(stats.deltas(df), stats.shrinkage(df))
    assert h["verdict"] == verdict
    assert h["shape_targets"] == "digits"   # the texture control is not a shape target
    assert all(isinstance(v, (str, int, float)) and not hasattr(v, "dtype") for v in h.values())


def test_headline_values():
    df = _gain_frame(lambda s: 5 + s, lambda s: 1.0)
    h = ch02.headline(stats.deltas(df), stats.shrinkage(df))
    assert h["digits_gain"] == pytest.approx(6.0)
    assert h["digits_gain_low"] == pytest.approx(6.0 - 4.302653 * math.sqrt(1 / 3), rel=1e-6)
    assert h["digits_gain_n"] == 10 and h["small_n_max"] == 10 and h["unfrozen_blocks"] == 0
    assert (h["digits_significant_cells"], h["digits_cells"]) == (2, 2)
    assert h["digits_shrinks"] == "yes" and h["digits_gain_large"] == pytest.approx(1.0)
    assert h["digits_gain_text"] == "+6.0 [+3.5, +8.5] at n = 10"
    assert "textures_gain" not in h
    assert ch02.headline(stats.deltas(df).iloc[:0], stats.shrinkage(df))["verdict"] == "not tested"


def test_paper_comparison_states_both_sides():
    d = stats.deltas(_frame())
    text = ch02.paper_comparison(stats.main_gains(d), reference.paper_deltas())
    assert text.startswith("**Paper.** The paper's robust source (l2_3) gains +9.9 points")
    assert ("**Ours** (l2 vs natural, 0 unfrozen block(s)): the gain is significantly positive in 2 "
            "and significantly negative in 0 of 2 (target, n) cells") in text
    assert text.endswith("(per target: digits +6.0 -> +1.0).")
