"""The influence study: which training images does a transferred head lean on, natural vs robust?

Two settings (``setting``), one code path (:func:`transferred_head`):

- ``"finetuned"`` -- the paper's: the source fine-tuned on the target by Section 1's engine
  (``transfer.finetune``, same recipe, subsets and seeds as ``transfer.run``) with the paper's
  block count (:func:`blocks`: ``cfg.main_blocks``, its mini analogue), then the fine-tuned
  model's pooled features, standardised, and a head solved *to optimum* on them, so influence's
  optimality assumption holds;
- ``"head_only"`` -- frozen source features (0 fine-tuned blocks), the same head.

For a source, target and subset seed the influence matrix (ours; the authors' pseudo-inverse on
our head; the authors' whole computation, their head and their pseudo-inverse), the
nearest-neighbour baseline and Koh & Liang's leave-one-out check are cached as a
:class:`Study` (:func:`study`). :func:`match_losses` adds, per study, the influence of a
*loss-matched* head: its L2 penalty set so that its mean training cross-entropy equals one
value per target (the natural heads' mean at the default penalty), so that no family's
influence differs only because its head fits its training images worse. Per target the
natural family is compared with the L2 family closest to eps 1 (:func:`families`,
:func:`run_studies`): each study's share (mean over its test images) fills a (source seed x subset seed) matrix whose mean and CI come from ``stats.ci``
(Section 1's crossed estimator, :func:`summary`); the paired robust-minus-natural difference
pairs the s-th source seed of each family on the same subset seed (:func:`robust_minus_natural`).
The maths is :mod:`robust_transfer.influence`; figures and the findings text are in
``chapters.ch04_influence``. Sign convention: positive influence = helpful.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import torch

from . import data, pool, reference, stats, transfer, zoo
from .cache import atomic_path, cache_dir, key as cache_key
from .influence import (AUTHORS_RCOND, SOLVERS, PseudoInverse, at_least_m_of_top_k,
                        auc_same_class, fit_head, influence, leave_one_out, loo_correlation,
                        loo_slope, losses, match_loss, probabilities, topk_same_class)
from .progress import bar

__all__ = ["SETTINGS", "blocks", "standardise", "HeadProblem", "transferred_head", "authors_head",
           "nearest_training", "Study", "study", "families", "run_studies", "loss_target",
           "match_losses", "per_test", "share_matrix", "chance", "summary",
           "robust_minus_natural", "METRICS"]

#: the two settings: the paper's fine-tuned model, and frozen source features
SETTINGS = ("finetuned", "head_only")
NN_K = 5   # the nearest-neighbour baseline ranks this many training images per test image


def blocks(cfg, setting: str) -> int:
    """Fine-tuned blocks of ``setting``: ``cfg.main_blocks`` (the paper's 3, its mini analogue
    1; 1 where the field does not exist) for "finetuned", 0 for "head_only"."""
    if setting not in SETTINGS:
        raise ValueError(f"setting={setting!r} is unknown; allowed: {list(SETTINGS)}")
    return int(getattr(cfg, "main_blocks", 1)) if setting == "finetuned" else 0


@torch.no_grad()
def _pooled(model, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    """``model.features`` (pooled penultimate features) of ``images`` in eval mode, float64."""
    model.eval()
    dev = next(model.parameters()).device
    return torch.cat([model.features(images[i:i + batch].to(dev)).double().cpu()
                      for i in range(0, len(images), batch)]).numpy()


# ---------------------------------------------------------------- the transferred head
def standardise(X_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Features standardised with the training mean and std (constant features: std 1)."""
    mu = X_train.mean(axis=0)
    sd = X_train.std(axis=0)
    sd[sd < 1e-8] = 1.0
    return [(A - mu) / sd for A in (X_train, *others)]


@dataclass
class HeadProblem:
    """A transferred model's last layer: standardised features, labels, indices into the
    target's train / test splits, the head ``theta`` (C x (d+1)) solved to optimum, its L2
    penalty, class names, the images (uint8, for figures), the ``setting``, its fine-tuned
    ``blocks``, the fine-tuned model's test accuracy (percent, full test split; NaN
    head-only) and the raw (unstandardised) pooled features ``F_train``, ``F_test``."""

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
    setting: str = "head_only"
    blocks: int = 0
    finetune_acc: float = float("nan")
    F_train: np.ndarray | None = None
    F_test: np.ndarray | None = None

    def test_accuracy(self) -> float:
        """Accuracy (fraction) of the head on its test images."""
        return float((probabilities(self.X_test, self.theta).argmax(1) == self.y_test).mean())


def transferred_head(source: str, target: str, n: int, seed: int, cfg, model=None,
                     setting: str = "finetuned") -> HeadProblem:
    """The last layer of ``source`` transferred to ``target`` in ``setting`` (see the module
    docstring): the class-covering subset of n training images and the validation split of
    ``data.train_subset`` (as ``transfer.run``), ``cfg.influence_test`` class-covering test
    images, pooled features -- of the model fine-tuned by ``transfer.finetune`` with
    :func:`blocks` blocks, or frozen source features (cached with the transfer engine's) --
    standardised with the training statistics, and the head fitted to optimum with
    l2 = ``cfg.damping``.
    """
    k = blocks(cfg, setting)
    if model is None:
        model = zoo.load(source, allow_download=cfg.allow_download, progress=False)[0]
        model = model.to(cfg.torch_device())
    x_tr, y_tr, x_te, y_te, num_classes, data_hash = transfer.target_arrays(target, cfg.allow_download)
    labels, t_labels = y_tr.numpy(), y_te.numpy()
    train_idx, val_idx = data.train_subset(labels, n, cfg.val_size, seed)
    n_test = min(cfg.influence_test, len(t_labels))
    test_idx = np.asarray(data.class_covering_subset(t_labels, n_test, seed))
    key = (source, target, data_hash)
    finetune_acc = float("nan")
    if k == 0:
        F_tr = transfer.prefix_features(model, x_tr, 0, (*key, "train")).double().numpy()[train_idx]
        F_te = transfer.prefix_features(model, x_te, 0, (*key, "test")).double().numpy()[test_idx]
    else:
        out = transfer.finetune(model, x_tr, y_tr, train_idx, val_idx, x_te, y_te, k, cfg, seed,
                                num_classes=num_classes, feature_key=key, return_model=True)
        F_tr, F_te = _pooled(out["model"], x_tr[train_idx]), _pooled(out["model"], x_te[test_idx])
        finetune_acc = float(out["test_acc"])
    X_tr, X_te = standardise(F_tr, F_te)
    y_train, y_test = labels[train_idx], t_labels[test_idx]
    theta = fit_head(X_tr, y_train, cfg.damping, num_classes=num_classes)
    class_names = data.load(target, "train", allow_download=cfg.allow_download)[2]
    u8 = lambda x: (x * 255).round().to(torch.uint8).numpy()  # noqa: E731
    return HeadProblem(source, target, X_tr, y_train, X_te, y_test, train_idx, test_idx, theta,
                       float(cfg.damping), list(class_names), u8(x_tr[train_idx]),
                       u8(x_te[test_idx]), setting, k, finetune_acc, F_tr, F_te)


def authors_head(F_train: np.ndarray, y_train: np.ndarray, num_classes: int, cfg,
                 seed: int) -> np.ndarray:
    """The authors' last layer on raw pooled features ``F_train``: ``transfer.RECIPES["authors"]``'s
    head (weight ~ N(0, 1), bias 0) and steps (SGD lr 0.1, momentum 0.9, weight decay 5e-4, lr
    x0.1 every epochs // 3), batches of ``cfg.batch_size`` in a seeded order, in float32, for
    ``transfer.epochs_for(cfg, n)`` epochs; the features are fixed (no augmentation). Returns
    theta (C x (d+1), float64): the last iterate, not an optimum, as theirs."""
    r = transfer.RECIPES["authors"]
    n = len(y_train)
    epochs = transfer.epochs_for(cfg, n)
    torch.manual_seed(seed)
    f = torch.as_tensor(F_train, dtype=torch.float32)
    y = torch.as_tensor(np.asarray(y_train), dtype=torch.long)
    head = r.head(f, y, num_classes)
    steps = r.optimiser(head, torch.nn.ModuleList(), cfg, epochs, n)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            steps.step(torch.nn.functional.cross_entropy(head(f[idx]), y[idx]))
        steps.end_epoch()
    return np.hstack([head.weight.detach().double().numpy(),
                      head.bias.detach().double().numpy()[:, None]])


def nearest_training(X_train: np.ndarray, X_test: np.ndarray, k: int = NN_K) -> np.ndarray:
    """Indices (n_test x k) of each test image's k nearest training images, Euclidean distance
    in the head's (standardised) feature space, nearest first."""
    d2 = (X_test ** 2).sum(1)[:, None] - 2 * X_test @ X_train.T + (X_train ** 2).sum(1)[None]
    return np.argsort(d2, axis=1, kind="stable")[:, :k]


# ---------------------------------------------------------------- one source on one target
@dataclass
class Study:
    """One source transferred to one target (one subset seed, one setting): the influence
    matrices, the nearest-neighbour baseline and the leave-one-out check.

    ``I`` (n_test x n_train, nats, positive = helpful), ``I_authors`` (the authors' estimator
    on our head: Hessian without the L2 term, pseudo-inverse cut at ``AUTHORS_RCOND``),
    ``y_train``, ``y_test``, ``train_idx``, ``test_idx`` (indices into the target's train / test splits),
    ``images_train``, ``images_test`` (uint8, for figures), ``test_acc`` (head test accuracy,
    fraction), and the leave-one-out check (``cfg.loo_points`` training images with the largest
    |influence| on the test image with the highest loss, Koh & Liang's protocol): ``loo_test``
    (its row), ``loo_train`` (columns), ``loo_actual`` (n_test x loo_points actual loss changes
    for every test image, nats), ``loo_pred`` (the matching influences); ``meta`` (source,
    target, class_names, l2, n, seed, setting, blocks, finetune_acc, ``train_loss``: the head's
    mean training cross-entropy in nats, ``authors_acc``: the authors' head's test accuracy,
    fraction, ``key``: the cache key); ``nn_order`` (n_test x ``NN_K`` nearest training images
    in the head's feature space, nearest first); ``X_train``, ``X_test`` (the head's
    standardised features, float64) and ``I_authors_head`` (the authors' computation: their
    head, :func:`authors_head`, on the raw features, with their estimator). The last four are
    None in caches written before they existed. ``I_matched`` and ``matched`` (dict: ``l2``,
    ``loss`` achieved, ``target``, nats) are the loss-matched head's influence, filled by
    :func:`match_losses` (None until then; never in the study's own file).
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
    nn_order: np.ndarray | None = None
    X_train: np.ndarray | None = None
    X_test: np.ndarray | None = None
    I_authors_head: np.ndarray | None = None
    I_matched: np.ndarray | None = None
    matched: dict | None = None

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
        for k in ("nn_order", "X_train", "X_test", "I_authors_head"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
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


def _cache_path(source: str, target: str, cfg, seed: int, n: int, method: str, k: int, model):
    """Where :func:`study` caches its result: keyed by everything that changes it (the source
    weights, target data, subset, head penalty, leave-one-out size, solver, fine-tuning recipe
    and block count)."""
    recipe = {} if k == 0 else dict(
        {f: getattr(cfg, f, None) for f in ("recipe", "epochs", "long_epochs", "long_epochs_n",
                                            "lr", "head_lr", "batch_size", "frozen_bn",
                                            "augment")},
        recipe_version=transfer.RECIPE_VERSION)
    key = cache_key(dict(v=5, source=source, weights=transfer.weights_fingerprint(model),
                         target=target, data=transfer.target_arrays(target, cfg.allow_download)[5],
                         n=n, seed=seed, test=cfg.influence_test, l2=cfg.damping,
                         val=cfg.val_size, loo=cfg.loo_points, method=method, blocks=k, **recipe))
    return cache_dir("influence") / f"{key}.npz"


def _source_model(source: str, cfg):
    return zoo.load(source, allow_download=cfg.allow_download, progress=False)[0].to(
        cfg.torch_device())


def study(source: str, target: str, cfg, seed: int | None = None, model=None,
          solver: str = "auto", progress: bool = True, setting: str = "finetuned",
          n: int | None = None) -> Study:
    """Influence matrices, nearest-neighbour baseline and leave-one-out check: ``source``
    transferred to ``target`` in ``setting`` (:data:`SETTINGS`) on ``n`` training images
    (default ``cfg.influence_n``) of subset ``seed`` (default ``cfg.seeds[0]``); ``solver`` a
    name in ``influence.SOLVERS``. Returns a :class:`Study`, cached in
    ``cache_dir("influence")`` keyed by everything that changes it (the fine-tuning recipe and
    block count included).
    """
    method = _solver_name(solver)
    k = blocks(cfg, setting)
    seed = cfg.seeds[0] if seed is None else seed
    n = cfg.influence_n if n is None else n
    model = _source_model(source, cfg) if model is None else model
    path = _cache_path(source, target, cfg, seed, n, method, k, model)
    if path.exists():
        return Study.load(path)
    prob = transferred_head(source, target, n, seed, cfg, model=model, setting=setting)
    I = influence(prob.X_train, prob.y_train, prob.X_test, prob.y_test, prob.theta, prob.l2,
                  solver=method)
    authors = PseudoInverse(rcond=AUTHORS_RCOND)
    I_authors = influence(prob.X_train, prob.y_train, prob.X_test, prob.y_test, prob.theta, 0.0,
                          solver=authors)
    theirs = authors_head(prob.F_train, prob.y_train, len(prob.class_names), cfg, seed)
    I_authors_head = influence(prob.F_train, prob.y_train, prob.F_test, prob.y_test, theirs, 0.0,
                               solver=authors)
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
                          l2=prob.l2, n=n, seed=seed, setting=setting, blocks=k,
                          finetune_acc=prob.finetune_acc,
                          train_loss=float(losses(prob.X_train, prob.y_train, prob.theta).mean()),
                          authors_acc=float((probabilities(prob.F_test, theirs).argmax(1)
                                             == prob.y_test).mean()),
                          key=path.stem),
                nn_order=nearest_training(prob.X_train, prob.X_test), X_train=prob.X_train,
                X_test=prob.X_test, I_authors_head=I_authors_head)
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


def run_studies(fams: dict, cfg, setting: str = "finetuned", targets=None, n: int | None = None,
                progress: bool = True, workers: int | None = 1) -> dict[tuple[str, str], list[Study]]:
    """``{(kind, target): [Study per (source seed, subset seed)]}`` in ``setting`` over
    ``targets`` (default ``cfg.influence_targets``) and every subset seed of ``cfg.seeds``, for
    the families of :func:`families` (see :func:`study`; cached). Each list runs source-major:
    all subset seeds of the family's first source, then the next source.

    ``workers`` > 1 (None: every core) makes the uncached studies in that many spawned
    processes of one torch thread each, as Section 1's sweep runs its fine-tuning (the
    leave-one-out refits use one BLAS thread anyway, so threads would leave cores idle).
    The studies come back with their loss-matched heads (:func:`match_losses`)."""
    k = blocks(cfg, setting)
    targets = cfg.influence_targets if targets is None else targets
    jobs = [(kind, t, sid, seed) for t in targets for kind, ids in fams.items()
            for sid in ids for seed in cfg.seeds]
    n_used, method = (cfg.influence_n if n is None else n), _solver_name("auto")
    models = {sid: _source_model(sid, cfg) for sid in dict.fromkeys(j[2] for j in jobs)}
    missing = [(sid, t, cfg, seed, setting, n) for _, t, sid, seed in jobs
               if not _cache_path(sid, t, cfg, seed, n_used, method, k, models[sid]).exists()]
    workers = pool.worker_count(workers, len(missing))
    if workers > 1:
        pool.run(_study_in_worker, missing, workers, desc=f"influence ({setting})",
                 progress=progress)
    out = {}
    for kind, t, sid, seed in bar(jobs, desc=f"influence ({setting})",
                                  disable=not progress or workers > 1):
        out.setdefault((kind, t), []).append(study(sid, t, cfg, seed=seed, model=models[sid],
                                                   setting=setting, n=n, progress=False))
    return match_losses(out, progress=progress)


def _study_in_worker(source: str, target: str, cfg, seed: int, setting: str, n) -> None:
    """Process-pool entry point of :func:`run_studies` (:func:`robust_transfer.pool.run`): the
    study, cached."""
    study(source, target, cfg, seed=seed, setting=setting, n=n, progress=False)


# ---------------------------------------------------------------- loss-matched heads
def loss_target(studies: dict, target: str) -> float:
    """The training loss every head of ``target`` is matched to (nats): the mean over the
    natural family's studies (source seeds x subset seeds) of the head's mean training
    cross-entropy at the default penalty. NaN without natural studies that record it."""
    losses_ = [s.meta.get("train_loss", np.nan) for s in studies.get(("natural", target), [])]
    return float(np.mean(losses_)) if losses_ else float("nan")


def _matched(s: Study, target: float) -> Study:
    """``s`` with its loss-matched head's influence (``I_matched``, ``matched``): the head
    re-solved on the study's features with the penalty :func:`influence.match_loss` finds
    from the study's own, influence as :func:`study` computes it; cached beside the study."""
    path = cache_dir("influence", "matched") / \
        f"{cache_key(dict(v=1, study=s.meta['key'], target=repr(float(target))))}.npz"
    if path.exists():
        with np.load(path) as z:
            I, m = z["I"], json.loads(str(z["matched"]))
    else:
        C = len(s.class_names)
        l2, theta, loss = match_loss(s.X_train, s.y_train, target, s.meta["l2"], C)
        I = influence(s.X_train, s.y_train, s.X_test, s.y_test, theta, l2)
        m = dict(l2=l2, loss=loss, target=float(target))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, I=I, matched=json.dumps(m))
    return replace(s, I_matched=I, matched=m)


def match_losses(studies: dict, progress: bool = False) -> dict:
    """``studies`` (``{(kind, target): [Study]}``) with every study that has its features
    (caches since v5) carrying its loss-matched head (:func:`_matched`): each head's L2
    penalty bisected so that its mean training cross-entropy equals :func:`loss_target` of its
    target (one value per target, shared by both families). Others are returned as they are."""
    out = {}
    for (kind, t), ss in bar(studies.items(), desc="loss matching", disable=not progress):
        target = loss_target(studies, t)
        out[(kind, t)] = [_matched(s, target) if s.X_train is not None and np.isfinite(target)
                          else s for s in ss]
    return out


#: per-test metrics of :func:`per_test`: name -> what it measures (percent of test images, or
#: for the AUCs the mean AUC x 100)
METRICS = {"top1": "the most helpful training image shares the test image's label",
           "3of5": "at least 3 of the 5 most helpful training images share it",
           "auc": "AUC x 100: a random same-class training image is more helpful than a random "
                  "other-class one (chance 50)",
           "top1_matched": "top-1 share with the loss-matched head",
           "auc_matched": "AUC x 100 with the loss-matched head",
           "top1_nn_adjusted": "top-1 share minus the nearest-neighbour share (nn1) of the same "
                               "model",
           "top1_authors": "top-1 share of the authors' computation (their head, their "
                           "pseudo-inverse)",
           "top1_pinv": "top-1 share with the authors' pseudo-inverse on our head",
           "nn1": "the nearest training image (head's feature space) shares it",
           "nn5": "a random one of the 5 nearest training images shares it (expected share)"}
#: the influence matrix (a :class:`Study` field) each influence metric reads
_MATRIX = {"top1": "I", "3of5": "I", "auc": "I", "top1_matched": "I_matched",
           "auc_matched": "I_matched", "top1_authors": "I_authors_head", "top1_pinv": "I_authors"}


def per_test(study: Study, metric: str) -> np.ndarray:
    """Per test image of one study: ``metric`` one of :data:`METRICS` -- "top1" (1 if the most
    helpful training image shares the label), "3of5" (at least 3 of the top 5 do), "auc"
    (:func:`influence.auc_same_class`, in [0, 1]), their loss-matched versions ("_matched",
    :func:`match_losses`), "top1_nn_adjusted" (top1 minus nn1, in {-1, 0, 1}), "top1_authors"
    (the authors' head and estimator), "top1_pinv" (their estimator on our head), "nn1" /
    "nn5" (the nearest-neighbour baselines). All NaN when the study lacks what the metric
    reads (a cache older than it, or no loss matching yet)."""
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is unknown; allowed: {list(METRICS)}")
    if metric == "top1_nn_adjusted":
        return per_test(study, "top1") - per_test(study, "nn1")
    if metric in ("nn1", "nn5"):
        if study.nn_order is None:
            return np.full(len(study.y_test), np.nan)
        order = study.nn_order[:, :1] if metric == "nn1" else study.nn_order[:, :5]
        return (study.y_train[order] == study.y_test[:, None]).mean(axis=1)
    I = getattr(study, _MATRIX[metric])
    if I is None:
        return np.full(len(study.y_test), np.nan)
    if metric.startswith("auc"):
        return auc_same_class(I, study.y_test, study.y_train)
    if metric == "3of5":
        return at_least_m_of_top_k(I, study.y_test, study.y_train, 3, 5)
    return topk_same_class(I, study.y_test, study.y_train, [1])[:, 0]


def share_matrix(studies: list[Study], metric: str) -> "pandas.DataFrame":
    """Percent of test images (:func:`per_test` mean x 100) per study as a (source seed x
    subset seed) matrix: rows = the family's sources in run order (index 0, 1, ...: the s-th
    seed of each family pairs), columns = subset seeds."""
    import pandas as pd
    sources = list(dict.fromkeys(s.source for s in studies))
    seeds = sorted({s.meta["seed"] for s in studies})
    M = np.full((len(sources), len(seeds)), np.nan)
    for s in studies:
        M[sources.index(s.source), seeds.index(s.meta["seed"])] = \
            100 * float(per_test(s, metric).mean())
    return pd.DataFrame(M, index=pd.RangeIndex(len(sources), name="src"),
                        columns=pd.Index(seeds, name="seed"))


def chance(study: Study) -> float:
    """Top-k same-class share a random ranking would give: mean share of each test label among
    the training labels (fraction)."""
    y_train = study.y_train
    return float(np.mean([(y_train == c).mean() for c in study.y_test]))


def _mean_ci(matrix, confidence: float, clip: tuple[float, float]) -> tuple[float, float, float]:
    """(mean, low, high) of ``stats.ci`` of a share matrix, the ends clipped to ``clip``;
    NaNs when no row is complete."""
    x = np.asarray(matrix, dtype=float)
    if not (~np.isnan(x).any(axis=1)).any():
        return (np.nan,) * 3
    c = stats.ci(x, confidence)
    return c["mean"], max(c["ci_low"], clip[0]), min(c["ci_high"], clip[1])


def summary(studies: dict, confidence: float = 0.95) -> "pandas.DataFrame":
    """One row per (target, kind): sources and subset seeds, head and fine-tuned test accuracy
    (percent; ``authors_acc`` the authors' head's), then per metric of :data:`METRICS` its
    value (percent of test images, or AUC x 100, mean over the (source seed x subset seed)
    matrix) with its ``stats.ci`` interval (``_lo``, ``_hi``), the paper's top-1 / 3-of-5
    numbers (``paper_``), chance level of the shares, the loss matching (``l2``: the default
    penalty, ``train_loss``: the heads' mean training cross-entropy there, nats;
    ``loss_target``; ``l2_matched``: geometric mean of the matched penalties, ``_min``,
    ``_max``; ``loss_matched``: mean achieved loss) and the leave-one-out Pearson / Spearman /
    slope (median over studies)."""
    import pandas as pd
    rows = []
    for (kind, target), ss in studies.items():
        r = dict(target=target, kind=kind, setting=ss[0].meta.get("setting", "head_only"),
                 sources=len({s.source for s in ss}), subset_seeds=len({s.meta["seed"] for s in ss}),
                 n=ss[0].I.shape[1], test_acc=100 * float(np.mean([s.test_acc for s in ss])),
                 finetune_acc=float(np.mean([s.meta.get("finetune_acc", np.nan) for s in ss])),
                 authors_acc=100 * float(np.mean([s.meta.get("authors_acc", np.nan) for s in ss])))
        for name in METRICS:
            clip = (-100.0, 100.0) if name == "top1_nn_adjusted" else (0.0, 100.0)
            r[name], r[f"{name}_lo"], r[f"{name}_hi"] = _mean_ci(
                share_matrix(ss, name).to_numpy(), confidence, clip)
        for name in ("top1", "3of5"):
            r[f"paper_{name}"] = reference.INFLUENCE[name][kind]
        r["chance"] = 100 * float(np.mean([chance(s) for s in ss]))
        m = [s.matched for s in ss if s.matched]
        l2s = np.log10([x["l2"] for x in m]) if m else np.array([np.nan])
        r.update(l2=float(ss[0].meta.get("l2", np.nan)),
                 train_loss=float(np.mean([s.meta.get("train_loss", np.nan) for s in ss])),
                 loss_target=m[0]["target"] if m else np.nan,
                 l2_matched=float(10 ** l2s.mean()), l2_matched_min=float(10 ** l2s.min()),
                 l2_matched_max=float(10 ** l2s.max()),
                 loss_matched=float(np.mean([x["loss"] for x in m])) if m else np.nan)
        cors = [loo_correlation(s.loo_pred, s.loo_actual) for s in ss
                if s.loo_pred.size > 2]          # loo_points = 0: no check
        r["loo_pearson"] = float(np.median([c["pearson"] for c in cors])) if cors else np.nan
        r["loo_spearman"] = float(np.median([c["spearman"] for c in cors])) if cors else np.nan
        r["loo_slope"] = float(np.median([loo_slope(s.loo_pred, s.loo_actual)
                                          for s in ss])) if cors else np.nan
        rows.append(r)
    return pd.DataFrame(rows)


def robust_minus_natural(studies: dict, target: str, metric: str = "top1",
                         confidence: float = 0.95, full: bool = False):
    """Paired robust-minus-natural difference of a :data:`METRICS` value (points): the s-th source
    seed of each family on the same subset seed, the (source seed x subset seed) difference
    matrix through ``stats.ci``. Returns (mean, CI low, CI high), or with ``full`` the whole
    ``stats.ci`` dict (seed counts, basis, variance components)."""
    d = share_matrix(studies[("robust", target)], metric) \
        - share_matrix(studies[("natural", target)], metric)
    c = stats.ci(d.dropna(how="all").dropna(axis=1, how="all").to_numpy(), confidence)
    return c if full else (float(c["mean"]), float(c["ci_low"]), float(c["ci_high"]))
