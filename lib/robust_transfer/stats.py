"""Means, 95% confidence intervals and paired robust-minus-natural gains of transfer results.

The runs of one cell (target, source family, unfrozen_blocks, n) form a matrix ``x[s, j]``:
rows are source-training seeds (s = 1..S), columns target-subset seeds (j = 1..J). Subset
seed j draws the same images for every source, so the two factors are *crossed*:
``x[s, j] = mu + a_s + b_j + e_sj``, and the variance of the cell mean is
``var(a)/S + var(b)/J + var(e)/(S J)``. A CI over subset seeds alone ignores ``var(a)``
(source seeds differ a lot) and overstates certainty; a CI over per-source-seed means alone
ignores ``var(b)`` (the subset is shared).

Estimator (``ci_basis = "source+subset seeds"``, S >= 2 and J >= 2)::

    se^2 = var_s(row means) / S + var_j(column means) / J        (sample variances, ddof=1)
    df   = se^4 / ((var_s/S)^2/(S-1) + (var_j/J)^2/(J-1))         (Welch-Satterthwaite)
    CI   = mean +- t_{0.975, df} * se

Its expectation is ``var(a)/S + var(b)/J + 2 var(e)/(S J)``: it counts the residual twice, so
the interval is slightly conservative, never too narrow. Fall-backs, named in ``ci_basis``:
S >= 2, J = 1: t-interval over the S runs (``"source seeds"``); S = 1, J >= 2: t-interval
over the J subset seeds (``"subset seeds only"`` -- the source-seed variance is NOT included,
so the interval is too narrow); one run: no interval (NaN). Source seeds missing a subset
seed are dropped so the matrix is complete.

Gains are paired: ``d[s, j] = robust[s, j] - natural[s, j]`` on the same target, n,
unfrozen_blocks, subset seed j and source-seed index s (the s-th seed of each family), and
the same estimator is applied to ``d``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _st

__all__ = ["ci", "wilson", "bootstrap_mean", "bootstrap_share", "summary", "deltas", "shrinkage",
           "main_gains", "CELL"]

CELL = ["target", "family", "unfrozen_blocks", "n"]


def ci(matrix, confidence: float = 0.95) -> dict:
    """Mean and CI of a (source seeds x subset seeds) matrix, by the estimator above.

    Returns dict(mean, ci_low, ci_high, half_width, df, n_source_seeds, n_subset_seeds,
    ci_basis); NaN rows (incomplete source seeds) are dropped first.
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
    half = float(_st.t.ppf(0.5 + confidence / 2, df) * np.sqrt(se2)) if np.isfinite(se2) else np.nan
    return dict(mean=mean, ci_low=mean - half, ci_high=mean + half, half_width=half,
                df=float(df), n_source_seeds=S, n_subset_seeds=J, ci_basis=basis)


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


def _seed_index(df: pd.DataFrame) -> pd.Series:
    """Rank (0, 1, ...) of each row's source seed within its family."""
    seeds = df["source_seed"].fillna(0).astype(int)
    return seeds.groupby(df["family"]).transform(lambda s: s.rank(method="dense").astype(int) - 1)


def _matrix(g: pd.DataFrame, metric: str) -> pd.DataFrame:
    return g.pivot_table(index="seed_index", columns="seed", values=metric, aggfunc="mean")


def _families(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("family", "norm", "eps", "source_label") if c in df]
    return df[cols].drop_duplicates("family").set_index("family")


def summary(df: pd.DataFrame, metric: str = "test_acc", confidence: float = 0.95) -> pd.DataFrame:
    """Per (target, family, unfrozen_blocks, n): mean of ``metric`` and its CI (see module doc).

    ``df`` is ``Store.frame()`` (needs target, family, source_seed, seed, unfrozen_blocks, n).
    """
    df = df.assign(seed_index=_seed_index(df))
    fam = _families(df)
    rows = []
    for key, g in df.groupby(CELL, sort=True):
        rows.append({**dict(zip(CELL, key)), **fam.loc[key[1]].to_dict(),
                     **ci(_matrix(g, metric).to_numpy(), confidence), "n_runs": len(g)})
    return pd.DataFrame(rows)


def _natural_family(family: str, norms: dict) -> str | None:
    """The family with norm "natural" and the same ``scale/dataset`` prefix as ``family``
    (``norms`` maps family -> norm), or None. (salman2020's natural source is ``.../l2/0``.)"""
    prefix = family.split("/")[:2]
    naturals = [f for f, nm in norms.items() if nm == "natural" and f.split("/")[:2] == prefix]
    return naturals[0] if len(naturals) == 1 else None


def _paired(df: pd.DataFrame, metric: str):
    """Yield (cell key, family, paired difference matrix) for every non-natural family."""
    df = df.assign(seed_index=_seed_index(df))
    norms = df.drop_duplicates("family").set_index("family")["norm"].to_dict()
    cells = {k: _matrix(g, metric) for k, g in df.groupby(CELL, sort=True)}
    for (target, family, k, n), m in cells.items():
        nat = _natural_family(family, norms)
        if nat is None or nat == family or (target, nat, k, n) not in cells:
            continue
        d = m - cells[(target, nat, k, n)]  # aligned on (source-seed index, subset seed)
        yield (target, family, k, n), d.dropna(how="all").dropna(axis=1, how="all")


def deltas(df: pd.DataFrame, metric: str = "test_acc", confidence: float = 0.95) -> pd.DataFrame:
    """Paired gains ``family - natural`` per (target, family, unfrozen_blocks, n) with CIs.

    ``significant`` is True when the CI excludes 0 (``direction`` +1 / -1, 0 if not).
    """
    fam = _families(df)
    rows = []
    for key, d in _paired(df, metric):
        r = {**dict(zip(CELL, key)), **fam.loc[key[1]].to_dict(), **ci(d.to_numpy(), confidence),
             "n_pairs": int(d.notna().to_numpy().sum())}
        r["direction"] = int(np.sign(r["mean"])) if (r["ci_low"] > 0 or r["ci_high"] < 0) else 0
        r["significant"] = r["direction"] != 0
        rows.append(r)
    return pd.DataFrame(rows)


def shrinkage(df: pd.DataFrame, metric: str = "test_acc", confidence: float = 0.95) -> pd.DataFrame:
    """Per (target, family, unfrozen_blocks): gain at the smallest n minus gain at the largest n.

    Paired on (source-seed index, subset seed) -- subsets are nested in n for one seed -- with
    the same CI estimator. ``shrinks`` is True when that difference's CI is above 0.
    """
    pairs = {key: d for key, d in _paired(df, metric)}
    fam = _families(df)
    rows = []
    for (target, family, k) in sorted({key[:3] for key in pairs}):
        ns = sorted(key[3] for key in pairs if key[:3] == (target, family, k))
        if len(ns) < 2:
            continue
        lo, hi = pairs[(target, family, k, ns[0])], pairs[(target, family, k, ns[-1])]
        r = ci((lo - hi).to_numpy(), confidence)
        rows.append({"target": target, "family": family, "unfrozen_blocks": k,
                     **fam.loc[family].to_dict(), "n_small": ns[0], "n_large": ns[-1],
                     "gain_small": float(lo.to_numpy().mean()),
                     "gain_large": float(hi.to_numpy().mean()),
                     **{f"drop_{c}": r[c] for c in ("mean", "ci_low", "ci_high")},
                     "ci_basis": r["ci_basis"], "shrinks": bool(r["ci_low"] > 0)})
    return pd.DataFrame(rows)


def main_gains(delta_table: pd.DataFrame, norm: str = "l2") -> pd.DataFrame:
    """The gains of the ``norm`` family with the most source seeds (then the most cells), at its
    largest unfrozen_blocks: the comparison closest to the paper's main figure.

    A pre-specified analysis choice (which cells the claim is tested on), not presentation, so it
    lives here; the chapter's text, figure and verdict all read it."""
    d = delta_table[delta_table["norm"] == norm] if len(delta_table) else delta_table
    if d.empty:
        return d
    rank = d.groupby("family").agg(seeds=("n_source_seeds", "max"), cells=("n", "size"))
    family = rank.sort_values(["seeds", "cells"], ascending=False).index[0]
    d = d[d["family"] == family]
    return d[d["unfrozen_blocks"] == d["unfrozen_blocks"].max()]
