"""Means, 95% confidence intervals, paired comparisons and pre-specified tests of transfer results.

The runs of one cell (target, recipe, source family, unfrozen_blocks, n; :data:`CELL`) form a
matrix ``x[s, j]``: rows are source-training seeds (s = 1..S), columns target-subset seeds
(j = 1..J). Subset seed j draws the same images for every source, so the two factors are
*crossed*: ``x[s, j] = mu + a_s + b_j + e_sj``, and the variance of the cell mean is
``var(a)/S + var(b)/J + var(e)/(S J)``. A CI over subset seeds alone ignores ``var(a)``
(source seeds differ a lot) and overstates certainty; a CI over per-source-seed means alone
ignores ``var(b)`` (the subset is shared).

Estimator (``ci_basis = "source+subset seeds"``, S >= 2 and J >= 2)::

    se^2 = var_s(row means) / S + var_j(column means) / J        (sample variances, ddof=1)
    df   = se^4 / ((var_s/S)^2/(S-1) + (var_j/J)^2/(J-1))         (Welch-Satterthwaite)
    CI   = mean +- t_{0.975, df} * se,   p = 2 P(T_df > |mean| / se)   (H0: mean = 0)

Its expectation is ``var(a)/S + var(b)/J + 2 var(e)/(S J)``: it counts the residual twice, so
the interval is slightly conservative, never too narrow. Fall-backs, named in ``ci_basis``:
S >= 2, J = 1: t-interval over the S runs (``"source seeds"``); S = 1, J >= 2: t-interval
over the J subset seeds (``"subset seeds only"`` -- the source-seed variance is NOT included,
so the interval is too narrow); one run: no interval (NaN). Source seeds missing a subset
seed are dropped so the matrix is complete.

Comparisons are paired (:func:`compare`): ``d[s, j] = a[s, j] - b[s, j]`` for two values a, b
of one cell column (two families, two block counts, two recipes) on the same other cell
columns, subset seed j and source-seed index s (the s-th seed of each family), and the same
estimator is applied to ``d``. :func:`deltas` is every robust family minus its natural one,
with per-cell p-values corrected for multiplicity (:func:`adjust`). The paper's two claims get
one pre-specified test each per (target, recipe, family, unfrozen_blocks): :func:`pooled_gain`
(the gain averaged over the small n) and :func:`shrinkage` (the slope of the gain in log2 n);
:func:`gain_peak_drop` tests the shrinkage of an inverted-U gain (its peak against its value at
the largest n, in points and as a relative error reduction), and :func:`gain_peak_drop_means`
applies the same rule to tables of means without seed-level runs (the paper's).
Frames without a ``recipe`` column (rows stored before recipes existed) are recipe "ours".
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _st

__all__ = ["ci", "variance_components", "adjust", "wilson", "bootstrap_mean", "bootstrap_share", "summary", "compare",
           "deltas", "shrinkage", "pooled_gain", "gain_difference", "gain_peak_drop",
           "gain_peak_drop_means", "curve_summary", "main_gains", "CELL", "COMPARABLE",
           "PEAK_DROP_MARGIN", "PEAK_DROP_MARGIN_REL"]

#: the columns that define one cell of results (one crossed-seed matrix)
CELL = ["target", "recipe", "family", "unfrozen_blocks", "n"]
#: the cell columns :func:`compare` can pair over
COMPARABLE = ("family", "unfrozen_blocks", "recipe", "target")
#: the recipe of stored rows that predate the ``recipe`` column
DEFAULT_RECIPE = "ours"
_FAMILY_COLS = ("norm", "eps", "source_label")
_CI_COLS = ["mean", "ci_low", "ci_high", "half_width", "df", "p", "n_source_seeds",
            "n_subset_seeds", "ci_basis", "var_source", "var_subset",
            "var_resid"]


def _p_value(mean: float, se: float, df: float) -> float:
    """Two-sided p of "mean = 0" from a t statistic; se = 0: 0 if mean != 0 else 1."""
    if not (np.isfinite(se) and np.isfinite(df)):
        return float("nan")
    if se == 0:
        return 0.0 if mean != 0 else 1.0
    return float(2 * _st.t.sf(abs(mean) / se, df))


def ci(matrix, confidence: float = 0.95) -> dict:
    """Mean and CI of a (source seeds x subset seeds) matrix, by the estimator above.

    Returns dict(mean, ci_low, ci_high, half_width, df, p, n_source_seeds, n_subset_seeds,
    ci_basis, var_source, var_subset, var_resid) in the units of ``matrix``; ``p`` is the
    two-sided t-test p-value of "mean = 0" from the same se and df (NaN where there is no
    interval); the variances are :func:`variance_components`. NaN rows (incomplete source
    seeds) are dropped first.
    """
    x = np.asarray(matrix, dtype=float)
    x = x[~np.isnan(x).any(axis=1)] if x.ndim == 2 else x.reshape(1, -1)
    S, J = x.shape
    mean = float(x.mean()) if x.size else np.nan
    if S >= 2 and J >= 2:
        a, b = x.mean(1).var(ddof=1) / S, x.mean(0).var(ddof=1) / J
        se2 = a + b
        df = se2 ** 2 / (a ** 2 / (S - 1) + b ** 2 / (J - 1)) if se2 > 0 else S + J - 2
        basis = "source+subset seeds"
    elif S >= 2 or J >= 2:
        v = x.ravel()
        se2, df = v.var(ddof=1) / len(v), len(v) - 1
        basis = "source seeds" if S >= 2 else "subset seeds only"
    else:
        se2, df, basis = np.nan, np.nan, "single run"
    se = float(np.sqrt(se2)) if np.isfinite(se2) else np.nan
    half = float(_st.t.ppf(0.5 + confidence / 2, df) * se) if np.isfinite(se) else np.nan
    return dict(mean=mean, ci_low=mean - half, ci_high=mean + half, half_width=half,
                df=float(df), p=_p_value(mean, se, df), n_source_seeds=S, n_subset_seeds=J,
                ci_basis=basis, **variance_components(x))


def variance_components(matrix) -> dict:
    """Two-way (source seed x subset seed, no replication) ANOVA estimates of the model
    ``x[s, j] = mu + a_s + b_j + e_sj``: ``var_source`` = var(a), ``var_subset`` = var(b),
    ``var_resid`` = var(e), each ``(mean square - residual mean square) / count`` clipped at 0;
    NaN unless S >= 2 and J >= 2. The crossed-seed se^2 of :func:`ci` then has expectation
    ``var_source / S + var_subset / J + 2 var_resid / (S J)``: which seeds narrow an interval."""
    x = np.asarray(matrix, dtype=float)
    if x.ndim != 2 or min(x.shape) < 2:
        return dict(var_source=np.nan, var_subset=np.nan, var_resid=np.nan)
    S, J = x.shape
    rows, cols, grand = x.mean(1, keepdims=True), x.mean(0, keepdims=True), x.mean()
    ms_resid = float(((x - rows - cols + grand) ** 2).sum() / ((S - 1) * (J - 1)))
    ms_source = J * float(rows.var(ddof=1))
    ms_subset = S * float(cols.var(ddof=1))
    return dict(var_source=max(0.0, (ms_source - ms_resid) / J),
                var_subset=max(0.0, (ms_subset - ms_resid) / S), var_resid=ms_resid)


ADJUST_METHODS = ("holm", "bh")


def adjust(pvalues, method: str = "holm") -> np.ndarray:
    """Multiplicity-adjusted p-values (same order as ``pvalues``; NaNs passed through untouched
    and not counted in the number of tests m).

    ``"holm"``: Holm's step-down, controls the family-wise error rate: with p sorted ascending,
    ``p_adj(i) = max_{k <= i} min(1, (m - k + 1) p(k))``. ``"bh"``: Benjamini-Hochberg step-up,
    controls the false discovery rate: ``p_adj(i) = min_{k >= i} min(1, m p(k) / k)``. Reject at
    level alpha where ``p_adj < alpha``.
    """
    if method not in ADJUST_METHODS:
        raise ValueError(f"method={method!r}: allowed {ADJUST_METHODS}")
    p = np.asarray(pvalues, dtype=float)
    out = p.copy()
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    order = np.argsort(p[ok], kind="stable")
    ps = p[ok][order]
    rank = np.arange(1, m + 1)
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - rank + 1) * ps))
    else:
        adj = np.minimum.accumulate(np.minimum(1.0, m * ps / rank)[::-1])[::-1]
    sub = np.empty(m)
    sub[order] = adj
    out[ok] = sub
    return out


def wilson(correct, level: float = 0.95) -> dict:
    """Share of True in ``correct`` with its Wilson score interval: dict(value, ci_low, ci_high, n).

    For a proportion over independent trials (accuracy on n stimuli); fractions, not percent."""
    correct = np.asarray(correct, dtype=bool)
    n = correct.size
    if n == 0:
        return dict(value=float("nan"), ci_low=float("nan"), ci_high=float("nan"), n=0)
    p, z = correct.mean(), _st.norm.ppf(0.5 + level / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return dict(value=float(p), ci_low=float(centre - half), ci_high=float(centre + half), n=n)


def bootstrap_mean(values, n_boot: int = 2000, level: float = 0.95,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) over axis 0 of ``values`` with a percentile bootstrap CI that resamples
    rows (e.g. test images). For a paired comparison pass the per-row difference.

    Hand-rolled rather than ``scipy.stats.bootstrap`` because it resamples every column of a
    (rows x k) array with the same draws in one matrix product (k = 100 top-k curves at once)."""
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot)
    means = (counts @ v.reshape(n, -1) / n).reshape((n_boot,) + v.shape[1:])
    q = (1 - level) / 2
    return v.mean(axis=0), np.quantile(means, q, axis=0), np.quantile(means, 1 - q, axis=0)


def bootstrap_share(hits_a, hits_b, n_boot: int = 1000, level: float = 0.95,
                    seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI (low, high) of ``sum(a) / (sum(a) + sum(b))`` resampling the
    paired boolean rows (e.g. the Geirhos shape bias: a = shape hits, b = texture hits);
    resamples where neither hits are dropped. NaNs when there is nothing to resample."""
    a, b = np.asarray(hits_a, dtype=bool), np.asarray(hits_b, dtype=bool)
    n = a.size
    if not n or not (a.sum() + b.sum()) or n_boot <= 0:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    ba, bb = a[idx].sum(1), b[idx].sum(1)
    ok = ba + bb > 0
    ratios = ba[ok] / (ba[ok] + bb[ok])
    alpha = (1 - level) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return float(low), float(high)


def _with_recipe(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a complete ``recipe`` column: rows stored before recipes existed (no column,
    or NaN) are :data:`DEFAULT_RECIPE`. Every function here reads frames through it."""
    if "recipe" in df and df["recipe"].notna().all():
        return df
    return df.assign(recipe=df["recipe"].fillna(DEFAULT_RECIPE) if "recipe" in df
                     else DEFAULT_RECIPE)


def _frame(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Check that ``df`` (``Store.frame()``) has what the cell tables need; add ``recipe``."""
    need = ["target", "family", "norm", "source_seed", "seed", "unfrozen_blocks", "n", metric]
    missing = [c for c in need if c not in df]
    if missing:
        raise ValueError(f"df lacks columns {missing} (needs {need}; metric={metric!r})")
    return _with_recipe(df)


def _seed_index(df: pd.DataFrame) -> pd.Series:
    """Rank (0, 1, ...) of each row's source seed within its family."""
    seeds = df["source_seed"].fillna(0).astype(int)
    return seeds.groupby(df["family"]).transform(lambda s: s.rank(method="dense").astype(int) - 1)


def _matrix(g: pd.DataFrame, metric: str) -> pd.DataFrame:
    return g.pivot_table(index="seed_index", columns="seed", values=metric, aggfunc="mean")


def _cells(df: pd.DataFrame, metric: str) -> dict:
    """{cell key (:data:`CELL` order): (source-seed index x subset seed) matrix of ``metric``}."""
    df = df.assign(seed_index=_seed_index(df))
    return {k: _matrix(g, metric) for k, g in df.groupby(CELL, sort=True)}


def _families(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("family",) + _FAMILY_COLS if c in df]
    return df[cols].drop_duplicates("family").set_index("family")


def _natural_family(family: str, norms: dict) -> str | None:
    """The family with norm "natural" and the same ``scale/dataset`` prefix as ``family``
    (``norms`` maps family -> norm), or None. (salman2020's natural source is ``.../l2/0``.)"""
    prefix = family.split("/")[:2]
    naturals = [f for f, nm in norms.items() if nm == "natural" and f.split("/")[:2] == prefix]
    return naturals[0] if len(naturals) == 1 else None


def _robust_pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(family, its natural family) for every non-natural family of ``df`` that has one."""
    norms = df.drop_duplicates("family").set_index("family")["norm"].to_dict()
    out = []
    for family in sorted(norms):
        nat = _natural_family(family, norms)
        if nat is not None and nat != family:
            out.append((family, nat))
    return out


def _pairs(cells: dict, over: str, a, b):
    """Yield (cell key of ``a``, paired difference matrix a - b) for every cell with
    ``over == a`` whose partner (same key, ``over == b``) exists; aligned on (source-seed index,
    subset seed), rows and columns with no pair dropped."""
    i = CELL.index(over)
    for key, m in cells.items():
        if key[i] != a:
            continue
        partner = cells.get(key[:i] + (b,) + key[i + 1:])
        if partner is None:
            continue
        d = (m - partner).dropna(how="all").dropna(axis=1, how="all")
        if d.size:
            yield key, d


def _compare(cells: dict, fam: pd.DataFrame, over: str, a, b, confidence: float) -> pd.DataFrame:
    rows = [{**dict(zip(CELL, key)), **fam.loc[key[2]].to_dict(), f"b_{over}": b,
             **ci(d.to_numpy(), confidence), "n_pairs": int(d.notna().to_numpy().sum())}
            for key, d in _pairs(cells, over, a, b)]
    cols = CELL + list(fam.columns) + [f"b_{over}"] + _CI_COLS + ["n_pairs"]
    return pd.DataFrame(rows, columns=cols)


def summary(df: pd.DataFrame, metric: str = "test_acc", confidence: float = 0.95) -> pd.DataFrame:
    """Per :data:`CELL` (target, recipe, family, unfrozen_blocks, n): mean of ``metric`` (its
    units, % for accuracies) and its crossed-seed CI (see module doc), plus ``n_runs``.

    ``df`` is ``Store.frame()`` (needs target, family, norm, source_seed, seed,
    unfrozen_blocks, n; ``recipe`` is "ours" where absent).
    """
    df = _frame(df, metric)
    fam = _families(df)
    df = df.assign(seed_index=_seed_index(df))
    rows = [{**dict(zip(CELL, key)), **fam.loc[key[2]].to_dict(),
             **ci(_matrix(g, metric).to_numpy(), confidence), "n_runs": len(g)}
            for key, g in df.groupby(CELL, sort=True)]
    return pd.DataFrame(rows)


def compare(df: pd.DataFrame, over: str, a, b, metric: str = "test_acc",
            confidence: float = 0.95) -> pd.DataFrame:
    """Paired difference ``a - b`` of ``metric`` (points for accuracies) between the runs with
    ``over == a`` and those with ``over == b``, one row per remaining cell.

    ``over`` is one of :data:`COMPARABLE` ("family", "unfrozen_blocks", "recipe", "target").
    Runs are paired on every other :data:`CELL` column and on (source-seed index within its
    family, subset seed ``seed``) -- e.g. ``compare(df, "unfrozen_blocks", 3, 0)`` pairs the
    s-th source seed's run on subset j with 3 blocks with the same run with 0 blocks; with
    ``over="family"`` the s-th seed of family a with the s-th seed of family b. Each cell's
    difference matrix gets the crossed-seed :func:`ci` (``mean``, ``ci_low``, ``ci_high``,
    ``p`` uncorrected, ...) and ``n_pairs``. The ``over`` column holds ``a`` and ``b_<over>``
    holds ``b``; the family columns (norm, eps, source_label) describe the row's family (``a``
    when ``over="family"``). Cells where a or b has no run are left out.
    """
    if over not in COMPARABLE:
        raise ValueError(f"over={over!r}: allowed {COMPARABLE}")
    df = _frame(df, metric)
    present = list(pd.unique(df[over]))
    for name, value in (("a", a), ("b", b)):
        if value not in present:
            raise ValueError(f"{name}={value!r}: no run has {over} == {value!r}; present: {present}")
    if a == b:
        raise ValueError(f"a = b = {a!r}: compare two different values of {over}")
    return _compare(_cells(df, metric), _families(df), over, a, b, confidence)


def deltas(df: pd.DataFrame, metric: str = "test_acc", confidence: float = 0.95,
           correction: str | None = "holm") -> pd.DataFrame:
    """Paired gains ``family - natural`` (points) per cell for every non-natural family, with
    CIs: :func:`compare` over "family" against the natural family of the same ``scale/dataset``
    (``b_family``), for every target, recipe, unfrozen_blocks and n.

    The per-cell stars are corrected for multiplicity: ``p_adj`` is :func:`adjust` (``correction``
    "holm" -- family-wise error rate, the default -- or "bh" -- false discovery rate) over all
    rows of the returned table; None leaves ``p_adj = p``. ``significant`` is ``p_adj <
    1 - confidence`` (0.05) and ``direction`` is +1 / -1 for significant gains / losses, else 0.
    The CIs themselves are per-cell (uncorrected) 95% intervals, so a star needs more than a CI
    that excludes 0. The pre-specified tests of the paper's claims are :func:`pooled_gain` and
    :func:`shrinkage`, one per claim; these stars describe cells.
    """
    if correction is not None and correction not in ADJUST_METHODS:
        raise ValueError(f"correction={correction!r}: allowed {ADJUST_METHODS + (None,)}")
    df = _frame(df, metric)
    cells, fam = _cells(df, metric), _families(df)
    parts = [_compare(cells, fam, "family", f, nat, confidence) for f, nat in _robust_pairs(df)]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True).sort_values(CELL, kind="stable", ignore_index=True)
    out["p_adj"] = adjust(out["p"], correction) if correction else out["p"].to_numpy()
    sig = (out["p_adj"] < 1 - confidence).to_numpy()
    out["direction"] = np.where(sig, np.sign(out["mean"]), 0).astype(int)
    out["significant"] = sig
    return out


_CLAIM = ["target", "recipe", "family", "unfrozen_blocks"]


def _claims(df: pd.DataFrame, metric: str):
    """Yield (claim key (target, recipe, family, unfrozen_blocks), long frame of the paired gain
    family - natural with columns seed_index, seed, n, d) for every non-natural family."""
    df = _frame(df, metric)
    cells = _cells(df, metric)
    by_claim: dict = {}
    for family, nat in _robust_pairs(df):
        for key, d in _pairs(cells, "family", family, nat):
            long = d.reset_index().melt(id_vars="seed_index", var_name="seed", value_name="d")
            by_claim.setdefault(key[:4], []).append(long.dropna().assign(n=key[4]))
    fam = _families(df)
    for key in sorted(by_claim):
        yield key, fam.loc[key[2]].to_dict(), pd.concat(by_claim[key], ignore_index=True)


def _pair_matrix(values: pd.Series) -> np.ndarray:
    """(source-seed index x subset seed) matrix of a per-pair Series indexed by both."""
    return values.unstack("seed").to_numpy()


def shrinkage(df: pd.DataFrame, metric: str = "test_acc", confidence: float = 0.95) -> pd.DataFrame:
    """The pre-specified test that the gain shrinks with n: one row per claim (target, recipe,
    non-natural family, unfrozen_blocks) with at least two n.

    Per (source-seed index, subset seed) pair, the OLS slope of the paired gain (family -
    natural, points) on log2(n), over the n at which that pair has a paired run (at least two;
    subsets are nested in n for one subset seed); then the crossed-seed :func:`ci` of the
    (source-seed index x subset seed) slope matrix. Columns: ``slope`` (points per doubling of
    n), ``slope_ci_low``, ``slope_ci_high``, ``p`` (slope = 0, two-sided, uncorrected),
    ``shrinks = slope_ci_high < 0``, ``n_small``, ``n_large``, ``n_values`` and the mean gains
    ``gain_small``, ``gain_large`` at the smallest and largest n, ``ci_basis``, seed counts.

    Sign convention: "shrinks" means the gain *falls* as n grows (negative slope). A gain that
    is negative at small n and rises towards 0 has a positive slope and does not "shrink" in
    this sense, although its magnitude does.
    """
    rows = []
    for key, fam, long in _claims(df, metric):
        ns = sorted(long["n"].unique())
        if len(ns) < 2:
            continue
        x = np.log2(long["n"].astype(float))
        g = long.assign(x=x).groupby(["seed_index", "seed"])
        dx = x - g["x"].transform("mean")
        dy = long["d"] - g["d"].transform("mean")
        keys = [long["seed_index"], long["seed"]]
        den = (dx * dx).groupby(keys).sum()
        slope = ((dx * dy).groupby(keys).sum() / den).where(den > 0)
        r = ci(_pair_matrix(slope), confidence)
        at = long.groupby("n")["d"].mean()
        rows.append({**dict(zip(_CLAIM, key)), **fam, "n_small": ns[0], "n_large": ns[-1],
                     "n_values": len(ns), "gain_small": float(at[ns[0]]),
                     "gain_large": float(at[ns[-1]]), "slope": r["mean"],
                     "slope_ci_low": r["ci_low"], "slope_ci_high": r["ci_high"], "p": r["p"],
                     "df": r["df"], "n_source_seeds": r["n_source_seeds"],
                     "n_subset_seeds": r["n_subset_seeds"], "ci_basis": r["ci_basis"],
                     "shrinks": bool(r["ci_high"] < 0)})
    return pd.DataFrame(rows)


def pooled_gain(df: pd.DataFrame, n_max: int, metric: str = "test_acc",
                confidence: float = 0.95) -> pd.DataFrame:
    """The pre-specified small-n test: one interval per claim (target, recipe, non-natural
    family, unfrozen_blocks) instead of one star per cell.

    Per (source-seed index, subset seed) pair, the paired gain (family - natural, points)
    averaged over every n <= ``n_max`` at which that pair has a paired run; then the
    crossed-seed :func:`ci` of that matrix: ``mean``, ``ci_low``, ``ci_high``, ``p``
    (uncorrected; one test per claim), ``n_from``/``n_to``/``n_values`` (the n pooled),
    ``significant`` (CI excludes 0) and ``direction`` (+1 / -1 / 0). Claims with no n <=
    ``n_max`` are left out.
    """
    if not n_max > 0:
        raise ValueError(f"n_max={n_max!r}: must be a positive number of target images")
    rows = []
    for key, fam, long in _claims(df, metric):
        long = long[long["n"] <= n_max]
        if long.empty:
            continue
        ns = sorted(long["n"].unique())
        r = ci(_pair_matrix(long.groupby(["seed_index", "seed"])["d"].mean()), confidence)
        sig = bool(r["ci_low"] > 0 or r["ci_high"] < 0)
        rows.append({**dict(zip(_CLAIM, key)), **fam, "n_max": n_max, "n_from": ns[0],
                     "n_to": ns[-1], "n_values": len(ns), **r, "significant": sig,
                     "direction": int(np.sign(r["mean"])) if sig else 0})
    return pd.DataFrame(rows)


#: :func:`gain_peak_drop_means`: the smallest drop from the peak gain to the gain at the largest n
#: (points; relative error reduction) called "shrinks" from means alone, with no interval
PEAK_DROP_MARGIN = 1.0
PEAK_DROP_MARGIN_REL = 0.05
#: accuracy errors (points) are floored here before the log of the relative error reduction
_MIN_ERROR = 1e-9


def _log_error(acc) -> np.ndarray:
    """log(100 - acc) of accuracies in percent, the error floored at ``_MIN_ERROR``: the paired
    difference robust - natural of it is log(err_rob / err_nat)."""
    return np.log(np.maximum(100.0 - np.asarray(acc, dtype=float), _MIN_ERROR))


def _held_out_peaks(wide: pd.DataFrame, candidates: list) -> pd.Series:
    """Per (seed_index, seed) row of ``wide`` (one column per n), the n among ``candidates``
    with the largest mean over the rows that share neither its source-seed index nor its subset
    seed; where there are none (one source seed, or one subset seed), over the rows that differ
    in either; a row alone uses itself. Ties go to the smaller n."""
    si = wide.index.get_level_values("seed_index").to_numpy()
    sj = wide.index.get_level_values("seed").to_numpy()
    g = wide[candidates].to_numpy()
    peaks = []
    for s, j in zip(si, sj):
        for keep in ((si != s) & (sj != j), (si != s) | (sj != j), np.ones(len(si), bool)):
            if keep.any():
                break
        seen = ~np.isnan(g[keep])
        total = np.where(seen, g[keep], 0.0).sum(0)
        means = np.where(seen.any(0), total / np.maximum(seen.sum(0), 1), -np.inf)
        peaks.append(candidates[int(np.argmax(means))])
    return pd.Series(peaks, index=wide.index)


def _peak_drop(wide: pd.DataFrame, confidence: float) -> dict:
    """The rule of :func:`gain_peak_drop` on one scale: ``wide`` is the paired gain per
    (seed_index, seed) row and n column, rows without the largest n already dropped."""
    ns = sorted(wide.columns)
    candidates, n_max = ns[:-1], ns[-1]
    peaks = _held_out_peaks(wide, candidates)
    at_peak = np.array([wide.at[i, n] for i, n in peaks.items()])
    r = ci(_pair_matrix(pd.Series(at_peak - wide[n_max].to_numpy(), index=wide.index)), confidence)
    means = wide.mean()
    n_peak = candidates[int(np.nanargmax(means[candidates].to_numpy()))]
    return dict(n_peak=n_peak, peak=float(means[n_peak]), at_max=float(means[n_max]),
                peak_share=float((peaks == n_peak).mean()), **r)


def _pool_filled(wide: pd.DataFrame, n) -> pd.DataFrame:
    """``wide`` (one row per (seed_index, seed), one column per n) with each pair's missing value
    at ``n`` taken as its source seed's mean over the pairs that have one."""
    out = wide.copy()
    out[n] = out[n].fillna(out[n].groupby(level="seed_index").transform("mean"))
    return out


def gain_peak_drop(df: pd.DataFrame, metric: str = "test_acc", confidence: float = 0.95,
                   pools: dict | None = None) -> pd.DataFrame:
    """The pre-specified test that an inverted-U gain shrinks: does the gain at its peak n exceed
    the gain at the largest n? One row per claim (target, recipe, non-natural family,
    unfrozen_blocks) with at least two n; ``metric`` is an accuracy in percent.

    Rule, on each of two scales -- the paired gain family - natural in points, and the relative
    error reduction ``(err_nat - err_rob) / err_nat`` (err = 100 - accuracy; 0.3 = the robust
    source makes 30% fewer errors), which a ceiling does not compress the way it compresses
    points: per (source-seed index, subset seed) pair with a run at the largest n, ``n_max``,
    its peak n is the n < n_max with the largest mean gain over the *other* pairs -- those
    sharing neither its source seed nor its subset seed (with one source seed or one subset seed:
    those differing in the other; a lone pair: itself) -- and its drop is its own gain at that n
    minus its gain at n_max. Choosing the peak on the same pair's data would inflate the drop
    (the maximum of noisy means is biased up; a flat gain would "shrink"); held out, a flat gain's
    drop has mean 0. Then the crossed-seed :func:`ci` of the (source-seed index x subset seed)
    drop matrix. ``shrinks`` reads the interval, never the point estimate: the drop's CI lies
    above 0 (a single run has no interval and never shrinks; see :func:`gain_peak_drop_means`).

    ``pools`` ({target: n}) names each target's whole training pool: where a claim's n_max is
    its target's pool, every subset seed draws the same images there, so the sweep runs one
    (``sweep.pool_n_values``) and a pair without a run at n_max takes its source seed's mean
    gain there (on each scale); the pairs' own subsets still count at every smaller n.

    Columns, points: ``n_peak`` (the n < n_max with the largest mean gain over every pair, for
    display), ``gain_peak`` and ``gain_max`` (mean gains at n_peak and n_max), ``drop``,
    ``drop_ci_low``, ``drop_ci_high``, ``p`` (drop = 0, two-sided, uncorrected), ``df``,
    ``peak_share`` (share of pairs whose held-out peak is n_peak), ``shrinks``; the same with
    suffix ``_rel`` for the relative error reduction (fractions: ``n_peak_rel``, ``rer_peak``,
    ``rer_max``, ``drop_rel``, ...), chosen on its own scale; ``n_max``, ``n_values``,
    ``ci_basis`` and seed counts. Means are over the pairs with a run at n_max;
    ``gain_peak - gain_max`` is the in-sample drop the held-out choice avoids (biased up).
    """
    claims = list(_claims(df, metric))
    log_err = {key: long for key, _, long in
               _claims(_frame(df, metric).assign(**{metric: _log_error(df[metric])}), metric)}
    rows = []
    for key, fam, long in claims:
        idx = ["seed_index", "seed"]
        wide = long.pivot_table(index=idx, columns="n", values="d")
        log_ratio = log_err[key].pivot_table(index=idx, columns="n", values="d")
        n_max = wide.columns.max()
        if pools and pools.get(key[0]) == n_max:
            wide, log_ratio = _pool_filled(wide, n_max), _pool_filled(log_ratio, n_max)
        wide = wide[wide[n_max].notna()].dropna(axis=1, how="all")
        if wide.shape[1] < 2:
            continue
        rer = 1 - np.exp(log_ratio)
        pts = _peak_drop(wide, confidence)
        rel = _peak_drop(rer.loc[wide.index, wide.columns], confidence)
        rows.append({**dict(zip(_CLAIM, key)), **fam, "n_max": n_max, "n_values": wide.shape[1],
                     "n_peak": pts["n_peak"], "gain_peak": pts["peak"], "gain_max": pts["at_max"],
                     "drop": pts["mean"], "drop_ci_low": pts["ci_low"],
                     "drop_ci_high": pts["ci_high"], "p": pts["p"], "df": pts["df"],
                     "peak_share": pts["peak_share"], "shrinks": bool(pts["ci_low"] > 0),
                     "n_peak_rel": rel["n_peak"], "rer_peak": rel["peak"],
                     "rer_max": rel["at_max"], "drop_rel": rel["mean"],
                     "drop_rel_ci_low": rel["ci_low"], "drop_rel_ci_high": rel["ci_high"],
                     "p_rel": rel["p"], "peak_share_rel": rel["peak_share"],
                     "shrinks_rel": bool(rel["ci_low"] > 0), "ci_basis": pts["ci_basis"],
                     "n_source_seeds": pts["n_source_seeds"],
                     "n_subset_seeds": pts["n_subset_seeds"]})
    return pd.DataFrame(rows)


def gain_peak_drop_means(means: pd.DataFrame, by: str = "target", margin: float = PEAK_DROP_MARGIN,
                         margin_rel: float = PEAK_DROP_MARGIN_REL) -> pd.DataFrame:
    """:func:`gain_peak_drop`'s rule on a table of mean accuracies without seed-level runs (the
    paper's: ``reference.paper_deltas()`` rows with ``full`` False, its subsets): one row per
    ``by`` value with at least two n.

    ``means`` has columns ``by``, n, natural, robust (accuracies, %). On each scale (gain in
    points; relative error reduction ``(err_nat - err_rob) / err_nat``, a fraction) the peak n
    is the n below the largest n, ``n_max``, with the largest gain, and ``drop`` = gain at the
    peak - gain at n_max. With no seeds there is no held-out choice and no interval: the peak is
    picked from the same numbers (so the drop is biased up) and ``shrinks`` needs a drop above
    ``margin`` points (``shrinks_rel``: above ``margin_rel``). Columns: ``by``, ``n_max``,
    ``n_values``, ``n_peak``, ``gain_peak``, ``gain_max``, ``drop``, ``shrinks``, ``n_peak_rel``,
    ``rer_peak``, ``rer_max``, ``drop_rel``, ``shrinks_rel``, ``margin``, ``margin_rel``.
    """
    rows = []
    for value, g in means.groupby(by, sort=True):
        g = g.sort_values("n")
        if len(g) < 2:
            continue
        ns = g["n"].to_numpy()
        gain = (g["robust"] - g["natural"]).to_numpy(dtype=float)
        rer = 1 - np.exp(_log_error(g["robust"]) - _log_error(g["natural"]))
        i, k = int(np.argmax(gain[:-1])), int(np.argmax(rer[:-1]))
        rows.append({by: value, "n_max": ns[-1], "n_values": len(ns), "n_peak": ns[i],
                     "gain_peak": gain[i], "gain_max": gain[-1], "drop": gain[i] - gain[-1],
                     "shrinks": bool(gain[i] - gain[-1] > margin), "n_peak_rel": ns[k],
                     "rer_peak": rer[k], "rer_max": rer[-1], "drop_rel": rer[k] - rer[-1],
                     "shrinks_rel": bool(rer[k] - rer[-1] > margin_rel), "margin": margin,
                     "margin_rel": margin_rel})
    return pd.DataFrame(rows)


def gain_difference(df: pd.DataFrame, over: str, a, b, n_max: int | None = None,
                    metric: str = "test_acc", confidence: float = 0.95) -> pd.DataFrame:
    """The pre-specified test that a gain depends on ``over`` (a difference in differences):
    per claim, the paired gain (family - natural, points) when ``over == a`` minus the same
    gain when ``over == b`` -- e.g. ``over="recipe"``: does the robust advantage differ between
    the authors' recipe and ours; ``over="target"``: between a texture-removed target and its
    original; ``over="family"``: between two families (the natural runs cancel: e.g. L2 minus
    the noise-trained control).

    Per (source-seed index, subset seed) pair, the two gains are paired on n (every n both
    have, at most ``n_max`` if given) and their difference averaged over those n; then the
    crossed-seed :func:`ci` of that matrix: one interval per (remaining cell columns, family).
    Columns: the claim columns (``over`` holds a, ``b_<over>`` b), family columns, ``n_from``,
    ``n_to``, ``n_values``, the :func:`ci` columns (``p`` uncorrected: one test per claim),
    ``gain_a`` and ``gain_b`` (mean gains over the same pairs and n), ``significant`` and
    ``direction``.
    """
    if over not in ("recipe", "target", "unfrozen_blocks", "family"):
        raise ValueError(f"over={over!r}: allowed ('recipe', 'target', 'unfrozen_blocks', "
                         f"'family')")
    claims = {key: (fam, long) for key, fam, long in _claims(df, metric)}
    i = _CLAIM.index(over)
    rows = []
    for key, (fam, long_a) in claims.items():
        partner = key[:i] + (b,) + key[i + 1:]
        if key[i] != a or partner not in claims:
            continue
        m = long_a.merge(claims[partner][1], on=["seed_index", "seed", "n"], suffixes=("_a", "_b"))
        if n_max is not None:
            m = m[m["n"] <= n_max]
        if m.empty:
            continue
        by = [m["seed_index"], m["seed"]]
        r = ci(_pair_matrix((m["d_a"] - m["d_b"]).groupby(by).mean()), confidence)
        sig = bool(r["ci_low"] > 0 or r["ci_high"] < 0)
        ns = sorted(m["n"].unique())
        rows.append({**dict(zip(_CLAIM, key)), f"b_{over}": b, **fam, "n_from": ns[0],
                     "n_to": ns[-1], "n_values": len(ns), **r,
                     "gain_a": float(m["d_a"].mean()), "gain_b": float(m["d_b"].mean()),
                     "significant": sig, "direction": int(np.sign(r["mean"])) if sig else 0})
    return pd.DataFrame(rows)


def curve_summary(df: pd.DataFrame, curve: str = "test_curve", epochs: str = "curve_epochs",
                  confidence: float = 0.95) -> pd.DataFrame:
    """:func:`summary` of a per-epoch curve stored with each run (``curve`` values at the
    ``epochs`` of the same row, e.g. the test accuracy the engine records for Fig. 3): one row
    per :data:`CELL` and ``epoch``. Rows without the curve are left out."""
    have = df[df[curve].apply(lambda v: isinstance(v, (list, tuple)) and len(v) > 0)] \
        if curve in df else df.iloc[:0]
    if have.empty:
        return pd.DataFrame()
    long = have.explode([epochs, curve]).astype({epochs: int, curve: float})
    parts = [summary(g.drop(columns="test_acc", errors="ignore").rename(columns={curve: "value"}),
                     "value", confidence).assign(epoch=e)
             for e, g in long.groupby(epochs, sort=True)]
    return pd.concat(parts, ignore_index=True)


def main_gains(delta_table: pd.DataFrame, blocks: int | None = None, norm: str = "l2",
               recipe: str | None = None) -> pd.DataFrame:
    """The rows of ``delta_table`` (:func:`deltas`) closest to the paper's main figure: the
    gains of the ``norm`` family with the most source seeds (then the most cells), at
    ``unfrozen_blocks == blocks`` -- the paper's 3 blocks, or its mini analogue
    (``cfg.main_blocks``), given by the caller -- or, where no row of a recipe has that count,
    the largest block count below it (a recipe with none below is left out). ``blocks=None``
    takes the largest block count present. ``recipe`` keeps one recipe; None (default) keeps
    every recipe present, one set of rows per recipe. The rows keep ``unfrozen_blocks`` and
    ``recipe`` so titles can say which.

    A pre-specified analysis choice (which cells the claim is tested on), not presentation, so
    it lives here; the chapter's text, figure and verdict all read it."""
    if blocks is not None and not (isinstance(blocks, (int, np.integer)) and blocks >= 0):
        raise ValueError(f"blocks={blocks!r}: must be an unfrozen block count >= 0 or None")
    if delta_table.empty:
        return delta_table
    d = _with_recipe(delta_table)
    d = d[d["norm"] == norm]
    if recipe is not None:
        d = d[d["recipe"] == recipe]
    if d.empty:
        return d
    rank = d.groupby("family").agg(seeds=("n_source_seeds", "max"), cells=("n", "size"))
    family = rank.sort_values(["seeds", "cells"], ascending=False).index[0]
    d = d[d["family"] == family]
    parts = []
    for _, g in d.groupby("recipe", sort=True):
        ks = g["unfrozen_blocks"]
        k = ks.max() if blocks is None else ks[ks <= blocks].max()
        if pd.notna(k):
            parts.append(g[ks == k])
    return pd.concat(parts) if parts else d.iloc[:0]
