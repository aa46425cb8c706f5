"""The influence study: which training images does a transferred head lean on, natural vs robust?

For a source and a target: frozen pooled source features of a class-covering training subset
and of test images, standardised (:func:`standardise`), a head fitted to optimum
(:class:`HeadProblem`, :func:`transferred_head`), its influence matrix (ours and the authors'
estimator) and Koh & Liang's leave-one-out check, cached per source as a :class:`Study`
(:func:`study`). Then per target, the natural family against the L2 family closest to eps 1
(:func:`families`, :func:`run_studies`): top-k same-class shares with bootstrap CIs over test
images (:func:`summary`) and the paired robust-minus-natural difference
(:func:`robust_minus_natural`). The maths is :mod:`robust_transfer.influence`; figures and the
findings text are in ``chapters.ch04_influence``. Sign convention: positive influence = helpful.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from . import data, reference, stats, transfer, zoo
from .cache import atomic_path, cache_dir, key as cache_key
from .influence import (AUTHORS_RCOND, SOLVERS, PseudoInverse, at_least_m_of_top_k, fit_head,
                        influence, leave_one_out, loo_correlation, loo_slope, losses,
                        probabilities, topk_same_class)
from .progress import bar

__all__ = ["standardise", "HeadProblem", "transferred_head", "Study", "study", "families",
           "run_studies", "per_test", "chance", "summary", "robust_minus_natural"]


# ---------------------------------------------------------------- the transferred head
def standardise(X_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Features standardised with the training mean and std (constant features: std 1)."""
    mu = X_train.mean(axis=0)
    sd = X_train.std(axis=0)
    sd[sd < 1e-8] = 1.0
    return [(A - mu) / sd for A in (X_train, *others)]


@dataclass
class HeadProblem:
    """A transferred head-only model: standardised features, labels, indices into the target's
    train / test splits, the fitted head ``theta`` (C x (d+1)), its L2 penalty, class names and
    the images themselves (uint8, in the source's format) for figures."""

    source: str
    target: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    theta: np.ndarray
    l2: float
    class_names: list
    images_train: np.ndarray   # uint8 (n, C, H, W): the training images, for figures
    images_test: np.ndarray    # uint8 (n_test, C, H, W)

    def test_accuracy(self) -> float:
        """Accuracy (fraction) of the head on its test images."""
        return float((probabilities(self.X_test, self.theta).argmax(1) == self.y_test).mean())


def transferred_head(source: str, target: str, n: int, seed: int, cfg, model=None) -> HeadProblem:
    """The paper's "last layer" setting on ``target``: frozen source features, a class-covering
    subset of n images from the training pool (validation split carved off exactly as in
    ``transfer.run``), ``cfg.influence_test`` class-covering test images, features standardised
    with the training statistics, and the head fitted to optimum with l2 = ``cfg.damping``.

    Pooled features come from ``transfer.prefix_features`` (k = 0) under the same cache key as
    the transfer engine's head-only runs, so they are computed once for both sections.
    """
    if model is None:
        model = zoo.load(source, allow_download=cfg.allow_download, progress=False)[0]
        model = model.to(cfg.torch_device())
    x_tr, y_tr, x_te, y_te, num_classes, data_hash = transfer.target_arrays(target, cfg.allow_download)
    labels, t_labels = y_tr.numpy(), y_te.numpy()
    train_idx, _ = data.train_subset(labels, n, cfg.val_size, seed)
    n_test = min(cfg.influence_test, len(t_labels))
    test_idx = np.asarray(data.class_covering_subset(t_labels, n_test, seed))
    key = (source, target, data_hash)
    F_tr = transfer.prefix_features(model, x_tr, 0, (*key, "train")).double().numpy()[train_idx]
    F_te = transfer.prefix_features(model, x_te, 0, (*key, "test")).double().numpy()[test_idx]
    X_tr, X_te = standardise(F_tr, F_te)
    y_train, y_test = labels[train_idx], t_labels[test_idx]
    theta = fit_head(X_tr, y_train, cfg.damping, num_classes=num_classes)
    class_names = data.load(target, "train", allow_download=cfg.allow_download)[2]
    u8 = lambda x: (x * 255).round().to(torch.uint8).numpy()  # noqa: E731
    return HeadProblem(source, target, X_tr, y_train, X_te, y_test, train_idx, test_idx, theta,
                       float(cfg.damping), list(class_names), u8(x_tr[train_idx]),
                       u8(x_te[test_idx]))


# ---------------------------------------------------------------- one source on one target
@dataclass
class Study:
    """One source transferred (head only) to one target: the influence matrices and the
    leave-one-out check.

    ``I`` (n_test x n_train, nats, positive = helpful), ``I_authors`` (the authors' estimator:
    Hessian without the L2 term, pseudo-inverse cut at ``AUTHORS_RCOND``), ``y_train``,
    ``y_test``, ``train_idx``, ``test_idx`` (indices into the target's train / test splits),
    ``images_train``, ``images_test`` (uint8, for figures), ``test_acc`` (head test accuracy,
    fraction), and the leave-one-out check (``cfg.loo_points`` training images with the largest
    |influence| on the test image with the highest loss, Koh & Liang's protocol): ``loo_test``
    (its row), ``loo_train`` (columns), ``loo_actual`` (n_test x loo_points actual loss changes
    for every test image, nats), ``loo_pred`` (the matching influences); ``meta`` (source,
    target, class_names, l2, n, seed).
    """

    I: np.ndarray
    I_authors: np.ndarray
    images_train: np.ndarray
    images_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    test_acc: float
    loo_test: int
    loo_train: np.ndarray
    loo_actual: np.ndarray
    loo_pred: np.ndarray
    meta: dict

    @property
    def source(self) -> str:
        """The source id."""
        return self.meta["source"]

    @property
    def class_names(self) -> list:
        """The target's class names."""
        return self.meta["class_names"]

    def _arrays(self) -> dict:
        """The on-disk form: the arrays under their field names, ``test_acc`` float64,
        ``loo_test`` int64, ``meta`` a JSON string (the cache format since v3)."""
        out = {k: getattr(self, k) for k in ("I", "I_authors", "images_train", "images_test",
                                             "y_train", "y_test", "train_idx", "test_idx")}
        out.update(test_acc=np.float64(self.test_acc), loo_test=np.int64(self.loo_test),
                   loo_train=self.loo_train, loo_actual=self.loo_actual, loo_pred=self.loo_pred,
                   meta=json.dumps(self.meta))
        return out

    def save(self, path) -> None:
        """Write the study atomically as ``.npz`` (the format :meth:`load` reads)."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **self._arrays())

    @classmethod
    def load(cls, path) -> "Study":
        """A study from an ``.npz`` written by :meth:`save` (or by the dict-based code before it:
        same keys)."""
        with np.load(path) as z:
            d = {k: z[k] for k in z.files}
        d["test_acc"] = float(d["test_acc"])
        d["loo_test"] = int(d["loo_test"])
        d["meta"] = json.loads(str(d["meta"]))
        return cls(**d)


def _solver_name(solver) -> str:
    if not (isinstance(solver, str) and solver in SOLVERS):
        raise ValueError(f"solver={solver!r}: a cached study needs a solver name, one of "
                         f"{list(SOLVERS)}")
    return solver


def study(source: str, target: str, cfg, seed: int | None = None, model=None,
          solver: str = "auto", progress: bool = True) -> Study:
    """Influence matrices and the leave-one-out check: ``source`` transferred (head only) to
    ``target`` with target-subset ``seed`` (default ``cfg.seeds[0]``); ``solver`` a name in
    ``influence.SOLVERS``. Returns a :class:`Study`. Cached in ``cache_dir("influence")`` keyed
    by everything that changes the numbers.
    """
    method = _solver_name(solver)
    seed = cfg.seeds[0] if seed is None else seed
    if model is None:
        model = zoo.load(source, allow_download=cfg.allow_download, progress=False)[0]
        model = model.to(cfg.torch_device())
    key = cache_key(dict(v=3, source=source, weights=transfer.weights_fingerprint(model),
                         target=target, data=transfer.target_arrays(target, cfg.allow_download)[5],
                         n=cfg.influence_n, seed=seed, test=cfg.influence_test, l2=cfg.damping,
                         val=cfg.val_size, loo=cfg.loo_points, method=method))
    path = cache_dir("influence") / f"{key}.npz"
    if path.exists():
        return Study.load(path)
    prob = transferred_head(source, target, cfg.influence_n, seed, cfg, model=model)
    I = influence(prob.X_train, prob.y_train, prob.X_test, prob.y_test, prob.theta, prob.l2,
                  solver=method)
    I_authors = influence(prob.X_train, prob.y_train, prob.X_test, prob.y_test, prob.theta, 0.0,
                          solver=PseudoInverse(rcond=AUTHORS_RCOND))
    t = int(np.argmax(losses(prob.X_test, prob.y_test, prob.theta)))
    cols = np.argsort(-np.abs(I[t]), kind="stable")[: cfg.loo_points]
    actual = leave_one_out(prob.X_train, prob.y_train, prob.theta, prob.l2, cols, prob.X_test,
                           prob.y_test, progress=bar if progress else False)
    out = Study(I=I, I_authors=I_authors, images_train=prob.images_train,
                images_test=prob.images_test, y_train=prob.y_train, y_test=prob.y_test,
                train_idx=prob.train_idx, test_idx=prob.test_idx,
                test_acc=float(prob.test_accuracy()), loo_test=t, loo_train=cols,
                loo_actual=actual, loo_pred=I[:, cols],
                meta=dict(source=source, target=target, class_names=prob.class_names,
                          l2=prob.l2, n=cfg.influence_n, seed=seed))
    out.save(path)
    return out


# ---------------------------------------------------------------- natural vs robust, per target
def families(sources) -> dict[str, list[str]]:
    """``{"natural": ids, "robust": ids}``: the natural family and the L2 family whose eps is
    closest to 1.0 (all their seeds) among ``sources``. ValueError if either is missing."""
    specs = {sid: zoo.spec(sid) for sid in sources}
    nat = [s for s, sp in specs.items() if sp.norm == "natural"]
    l2 = [s for s, sp in specs.items() if sp.norm == "l2"]
    if not nat or not l2:
        raise ValueError(f"sources={list(sources)!r} must contain a natural and an L2-robust source "
                         f"(the comparison of this section)")
    nat_family = specs[nat[0]].family
    eps = min({specs[s].eps for s in l2}, key=lambda e: (abs(e - 1.0), -e))
    return {"natural": [s for s in nat if specs[s].family == nat_family],
            "robust": [s for s in l2 if specs[s].eps == eps]}


def run_studies(fams: dict, cfg, progress: bool = True) -> dict[tuple[str, str], list[Study]]:
    """``{(kind, target): [Study per source id]}`` over ``cfg.influence_targets`` for the
    families of :func:`families` (see :func:`study`; cached)."""
    jobs = [(kind, t, sid) for t in cfg.influence_targets for kind, ids in fams.items()
            for sid in ids]
    out = {}
    for kind, t, sid in bar(jobs, desc="influence", disable=not progress):
        out.setdefault((kind, t), []).append(study(sid, t, cfg, progress=False))
    return out


def per_test(studies: list[Study], metric: str, k: int = 1, matrix: str = "I") -> np.ndarray:
    """Per test image, ``metric`` averaged over a family's source seeds (same test images):
    "topk" = fraction of the top-k helpful training images sharing the label (k=1: top-1 same
    class), "3of5" = at least 3 of the top 5 share it; ``matrix`` "I" (ours) or "I_authors".
    Values in [0, 1], shape (n_test,)."""
    y_test = studies[0].y_test
    vals = []
    for s in studies:
        if not np.array_equal(s.y_test, y_test):
            raise ValueError("studies of one family must share their test images (same seed)")
        I = getattr(s, matrix)
        if metric == "topk":
            vals.append(topk_same_class(I, s.y_test, s.y_train, [k])[:, 0])
        elif metric == "3of5":
            vals.append(at_least_m_of_top_k(I, s.y_test, s.y_train, 3, 5))
        else:
            raise ValueError(f"metric={metric!r} is unknown; allowed: ['topk', '3of5']")
    return np.mean(vals, axis=0)


def chance(study: Study) -> float:
    """Top-k same-class share a random ranking would give: mean share of each test label among
    the training labels (fraction)."""
    y_train = study.y_train
    return float(np.mean([(y_train == c).mean() for c in study.y_test]))


def summary(studies: dict, n_boot: int = 2000) -> "pandas.DataFrame":
    """One row per (target, kind): sources, head test accuracy, top-1 same-class and >=3-of-top-5
    shares (percent) with 95% bootstrap CIs over test images, the paper's numbers, the top-1
    share with the authors' estimator (``top1_authors``), chance level, and the leave-one-out
    Pearson / Spearman / slope (median over sources)."""
    import pandas as pd
    rows = []
    for (kind, target), ss in studies.items():
        r = dict(target=target, kind=kind, sources=len(ss),
                 test_acc=100 * float(np.mean([s.test_acc for s in ss])))
        for name, vals in (("top1", per_test(ss, "topk", 1)), ("3of5", per_test(ss, "3of5"))):
            m, lo, hi = stats.bootstrap_mean(vals, n_boot)
            r.update({name: 100 * m, f"{name}_lo": 100 * lo, f"{name}_hi": 100 * hi,
                      f"paper_{name}": reference.INFLUENCE[name][kind]})
        r["top1_authors"] = 100 * float(per_test(ss, "topk", 1, "I_authors").mean())
        r["chance"] = 100 * chance(ss[0])
        cors = [loo_correlation(s.loo_pred, s.loo_actual) for s in ss
                if s.loo_pred.size > 2]          # loo_points = 0: no check
        r["loo_pearson"] = float(np.median([c["pearson"] for c in cors])) if cors else np.nan
        r["loo_spearman"] = float(np.median([c["spearman"] for c in cors])) if cors else np.nan
        r["loo_slope"] = float(np.median([loo_slope(s.loo_pred, s.loo_actual)
                                          for s in ss])) if cors else np.nan
        rows.append(r)
    return pd.DataFrame(rows)


def robust_minus_natural(studies: dict, target: str, metric: str = "topk", k: int = 1,
                         n_boot: int = 2000) -> tuple[float, float, float]:
    """Paired robust-minus-natural difference of a per-test metric (percentage points) on the
    same test images: (mean, CI low, CI high), bootstrap over test images."""
    d = per_test(studies[("robust", target)], metric, k) - per_test(studies[("natural", target)],
                                                                      metric, k)
    m, lo, hi = stats.bootstrap_mean(d, n_boot)
    return 100 * float(m), 100 * float(lo), 100 * float(hi)
