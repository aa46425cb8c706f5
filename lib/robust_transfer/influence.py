"""Exact influence functions for a transferred model's last layer (a linear softmax head).

The maths only (numpy / scipy): the objective, its closed-form derivatives, the solvers, fitting
and leave-one-out retraining, and the ranking metrics. The study (features, caching, summaries)
is :mod:`robust_transfer.influence_study`.

The head is multinomial logistic regression on frozen features ``X`` (n x d, float64) with
labels ``y``. Its parameters are one array ``theta`` of shape (C, d + 1): row c is
``[W[c], b[c]]``; flat vectors are ``theta.ravel()`` (row-major), so flat index ``c*(d+1)+k``.

**Objective** (fitted by :func:`fit_head`, retrained by :func:`leave_one_out`)::

    L(theta) = (1/n) sum_i w_i CE(x_i, y_i; theta) + (l2 / 2) ||theta||^2

with w_i = 1 (leave-one-out sets one w_j = 0 and keeps the 1/n), CE in nats, and the L2 penalty
on weights *and* bias (it makes L strongly convex, so the minimiser is unique).

**Hessian** (closed form, :func:`hessian`)::

    H = (1/n) sum_i w_i (diag(p_i) - p_i p_i^T) kron (x~_i x~_i^T) + (l2 + damping) I

with x~ = [x, 1] and p_i the softmax probabilities. ``damping`` (default 0) is an *extra*
ridge added to the Hessian only; with damping = 0, H is the exact Hessian of L.

**Solvers** (H^{-1} g, one call signature ``solver(X, theta, G, l2, damping)``, by name in
:data:`SOLVERS`): :data:`exact` (Cholesky), :data:`cg` (conjugate gradients on Hessian-vector
products), :data:`pinv` (the authors' pseudo-inverse, cut at :data:`AUTHORS_RCOND`) and
:data:`auto` (exact up to :data:`EXACT_MAX_PARAMS` parameters, else cg). All three apply the
same symmetric H^{-1}, so :func:`influence` applies it to whichever side has fewer gradients
(training or test images) and contracts with the other side in factored form.

**Sign convention** (everywhere in this library, the chapter and its captions)::

    influence[t, j] = +(1/n) g_t^T H^{-1} g_j        (g = gradient of one example's CE)

is the first-order prediction of ``loss_t(theta without j) - loss_t(theta)``, the change of test
image t's loss (nats) when training image j is removed and the head retrained.
**Positive = helpful** (removing j would raise the test loss); negative = harmful.
(Koh & Liang's I_up,loss is -n times this.)
"""
from __future__ import annotations

import functools
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.stats

__all__ = [
    "augment", "probabilities", "losses", "objective", "per_example_grads", "hessian", "hvp",
    "cg_solve", "Exact", "CG", "PseudoInverse", "Auto", "exact", "cg", "pinv", "auto", "SOLVERS",
    "get_solver", "inverse_hvp", "influence", "fit_head", "leave_one_out", "loo_correlation",
    "loo_slope", "match_loss", "top_training", "topk_same_class", "at_least_m_of_top_k",
    "auc_same_class", "class_mean_matrix", "class_sorted", "EXACT_MAX_PARAMS", "NEWTON_EXPLICIT_MAX_PARAMS", "AUTHORS_RCOND",
]

# above this many head parameters "auto" uses conjugate gradients: one Cholesky of the float64
# Hessian (25k parameters: 5 GB, minutes on 2 cores) is exact and cheaper than CG up to here
EXACT_MAX_PARAMS = 25000
# fit_head's Newton steps use the explicit Hessian up to this many parameters, Newton-CG above
# (a fit needs one Hessian per step, influence only one in all)
NEWTON_EXPLICIT_MAX_PARAMS = 5000
AUTHORS_RCOND = 0.05      # the authors' pseudo-inverse cut: eigenvalues below 5% of the largest


def _one_blas_thread(fn):
    """Run ``fn`` with one BLAS thread when the features (first argument) are narrow (<= 512):
    the matrices are small, and OpenBLAS threads spinning on a busy machine cost up to 100x."""
    @functools.wraps(fn)
    def wrapper(X, *args, **kwargs):
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1, user_api="blas") if np.shape(X)[1] <= 512 else nullcontext():
            return fn(X, *args, **kwargs)
    return wrapper


# ---------------------------------------------------------------- the head and its derivatives
def augment(X: np.ndarray) -> np.ndarray:
    """``[X, 1]`` (n x (d+1), float64): features with a constant column for the bias."""
    X = np.asarray(X, dtype=np.float64)
    return np.hstack([X, np.ones((X.shape[0], 1))])


def _softmax(Z: np.ndarray) -> np.ndarray:
    Z = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=1, keepdims=True)


def probabilities(X: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Softmax class probabilities (n x C) of the head ``theta`` (C x (d+1)) on features X."""
    return _softmax(augment(X) @ theta.T)


def losses(X: np.ndarray, y: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Per-example cross-entropy (nats), shape (n,)."""
    Z = augment(X) @ theta.T
    Z = Z - Z.max(axis=1, keepdims=True)
    return np.log(np.exp(Z).sum(axis=1)) - Z[np.arange(len(y)), y]


def _check_weights(sample_weight, n):
    if sample_weight is None:
        return np.ones(n)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,) or (w < 0).any():
        raise ValueError(f"sample_weight must be {n} non-negative numbers, got shape {w.shape}")
    return w


def objective(theta_flat: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float,
              sample_weight=None) -> tuple[float, np.ndarray]:
    """(L(theta), dL/dtheta flat) of the module docstring's objective (nats, float64)."""
    Xa = augment(X)
    n = len(y)
    w = _check_weights(sample_weight, n)
    theta = theta_flat.reshape(-1, Xa.shape[1])
    Z = Xa @ theta.T
    Z = Z - Z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(Z).sum(axis=1))
    value = (w * (lse - Z[np.arange(n), y])).sum() / n + 0.5 * l2 * (theta_flat @ theta_flat)
    R = np.exp(Z - lse[:, None])
    R[np.arange(n), y] -= 1.0
    grad = ((R * w[:, None]).T @ Xa) / n + l2 * theta
    return value, grad.ravel()


def _residuals(X, y, theta):
    R = probabilities(X, theta)
    R[np.arange(len(y)), y] -= 1.0
    return R   # p_i - onehot(y_i): the CE gradient w.r.t. the logits


def per_example_grads(X: np.ndarray, y: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Gradient of each example's CE w.r.t. flat theta, (n x C(d+1)): (p_i - e_{y_i}) kron x~_i."""
    R = _residuals(X, y, theta)
    Xa = augment(X)
    return (R[:, :, None] * Xa[:, None, :]).reshape(len(y), -1)


def hessian(X: np.ndarray, theta: np.ndarray, l2: float = 0.0, damping: float = 0.0,
            sample_weight=None) -> np.ndarray:
    """Closed-form Hessian (C(d+1) x C(d+1)) of the objective: see the module docstring.

    ``(1/n) sum_i w_i (diag(p_i) - p_i p_i^T) kron x~_i x~_i^T + (l2 + damping) I``, built block
    by block: block (a, b) is ``X~^T diag(w (delta_ab p_a - p_a p_b)) X~ / n``, C(C+1)/2 Gram
    matrices of size (d+1)^2 (half the work of one (n x C(d+1)) Gram matrix, no loop over
    examples, and no single huge BLAS call: OpenBLAS's syrk crashed at 20,490^2).
    """
    Xa = augment(X)
    n, D = Xa.shape
    w = _check_weights(sample_weight, n)
    P = probabilities(X, theta)
    C = P.shape[1]
    Pw = P * (w / n)[:, None]
    H = np.empty((C * D, C * D))
    for a in range(C):
        for b in range(a, C):
            weight = Pw[:, a] * ((a == b) - P[:, b])
            block = (Xa * weight[:, None]).T @ Xa
            H[a * D:(a + 1) * D, b * D:(b + 1) * D] = block
            if b != a:
                H[b * D:(b + 1) * D, a * D:(a + 1) * D] = block.T
    H[np.diag_indices_from(H)] += l2 + damping
    return H


def hvp(X: np.ndarray, theta: np.ndarray, V: np.ndarray, l2: float = 0.0, damping: float = 0.0,
        sample_weight=None, P: np.ndarray | None = None) -> np.ndarray:
    """Hessian-vector products H @ v for each row v of V (m x C(d+1)), without forming H.

    Cost O(m n C d). ``P`` (n x C probabilities) may be passed to skip recomputing them.
    """
    Xa = augment(X)
    n, D = Xa.shape
    w = _check_weights(sample_weight, n)
    P = probabilities(X, theta) if P is None else P
    C = P.shape[1]
    V = np.atleast_2d(V)
    Vm = V.reshape(-1, C, D)
    U = np.einsum("nd,mcd->mnc", Xa, Vm)                      # logit directions
    AU = P * (U - (P * U).sum(axis=2, keepdims=True))          # (diag(p) - pp^T) u
    AU *= w[None, :, None]
    out = np.einsum("mnc,nd->mcd", AU, Xa) / n
    return out.reshape(V.shape[0], -1) + (l2 + damping) * V


def cg_solve(matvec, B: np.ndarray, tol: float = 1e-10, maxiter: int | None = None) -> np.ndarray:
    """Solve A s = b for every row b of B by conjugate gradients (A symmetric positive definite).

    ``matvec(S)`` maps rows to rows (m x P -> m x P). Each row has its own step sizes; a row stops
    when its residual norm falls below ``tol * ||b||``. Raises RuntimeError if not converged.
    """
    B = np.atleast_2d(np.asarray(B, dtype=np.float64))
    maxiter = maxiter or 10 * B.shape[1]
    S = np.zeros_like(B)
    R = B.copy()
    Pd = R.copy()
    rr = (R * R).sum(axis=1)
    target = (tol * np.linalg.norm(B, axis=1)) ** 2
    active = rr > target
    for _ in range(maxiter):
        if not active.any():
            return S
        AP = np.zeros_like(Pd)
        AP[active] = matvec(Pd[active])
        pAp = (Pd * AP).sum(axis=1)
        alpha = np.where(active, rr / np.where(pAp > 0, pAp, 1.0), 0.0)
        S += alpha[:, None] * Pd
        R -= alpha[:, None] * AP
        rr_new = (R * R).sum(axis=1)
        beta = np.where(active, rr_new / np.where(rr > 0, rr, 1.0), 0.0)
        Pd = R + beta[:, None] * Pd
        rr = rr_new
        active = rr > target
    if active.any():
        raise RuntimeError(f"conjugate gradients did not converge in {maxiter} iterations "
                           f"(worst residual {np.sqrt(rr / np.maximum(target, 1e-300)).max():.1e}"
                           f" x tolerance); "
                           f"add damping or raise maxiter")
    return S


# ---------------------------------------------------------------- solvers: S = G H^{-1}
# A solver is any callable ``solver(X, theta, G, l2, damping) -> S`` returning H^{-1} g for each
# row g of G (m x C(d+1)), H = the module docstring's Hessian of the head ``theta`` on the
# training features X. The three below hold their options (tolerance, cut) as fields.
@dataclass(frozen=True)
class Exact:
    """Cholesky factorisation (float64) of the explicit closed-form Hessian, then two triangular
    solves; needs H positive definite (l2 > 0 or damping > 0), else ValueError. LAPACK through
    torch (MKL where available: 1.6x scipy's OpenBLAS here, which also crashed on a 20,490^2
    factorisation); numpy arrays in and out, shared without copies."""

    name = "exact"

    def __call__(self, X: np.ndarray, theta: np.ndarray, G: np.ndarray, l2: float,
                 damping: float = 0.0) -> np.ndarray:
        import torch
        L, info = torch.linalg.cholesky_ex(torch.from_numpy(hessian(X, theta, l2, damping)))
        if info.item() != 0:
            raise ValueError(f"the Hessian is not positive definite (l2={l2}, damping={damping}); "
                             f"use l2 > 0 or damping > 0, or solver='pinv'")
        B = torch.from_numpy(np.ascontiguousarray(np.asarray(G, dtype=np.float64).T))
        return torch.cholesky_solve(B, L).numpy().T


@dataclass(frozen=True)
class CG:
    """Conjugate gradients on closed-form Hessian-vector products (H never formed), each row to
    residual ``tol`` x ||g||; RuntimeError if not converged."""

    tol: float = 1e-10
    name = "cg"

    def __call__(self, X: np.ndarray, theta: np.ndarray, G: np.ndarray, l2: float,
                 damping: float = 0.0) -> np.ndarray:
        P = probabilities(X, theta)
        return cg_solve(lambda V: hvp(X, theta, V, l2, damping, P=P), G, tol=self.tol)


@dataclass(frozen=True)
class PseudoInverse:
    """The authors' pseudo-inverse of the explicit Hessian: eigenvalues below ``rcond`` x the
    largest are cut (the authors: ``AUTHORS_RCOND`` = 5%, with l2 = damping = 0)."""

    rcond: float = AUTHORS_RCOND
    name = "pinv"

    def __call__(self, X: np.ndarray, theta: np.ndarray, G: np.ndarray, l2: float,
                 damping: float = 0.0) -> np.ndarray:
        H = hessian(X, theta, l2, damping)
        return G @ scipy.linalg.pinvh(H, rtol=self.rcond).T


@dataclass(frozen=True)
class Auto:
    """:data:`exact` up to ``max_params`` head parameters (default :data:`EXACT_MAX_PARAMS`,
    read at call time), :data:`cg` above."""

    max_params: int | None = None
    name = "auto"

    def choose(self, n_params: int):
        """The solver used for a head of ``n_params`` parameters."""
        limit = EXACT_MAX_PARAMS if self.max_params is None else self.max_params
        return exact if n_params <= limit else cg

    def __call__(self, X: np.ndarray, theta: np.ndarray, G: np.ndarray, l2: float,
                 damping: float = 0.0) -> np.ndarray:
        return self.choose(G.shape[1])(X, theta, G, l2, damping)


exact, cg, pinv, auto = Exact(), CG(), PseudoInverse(), Auto()
#: the solvers by name (``solver=`` of :func:`influence` and :func:`inverse_hvp`)
SOLVERS = {"auto": auto, "exact": exact, "cg": cg, "pinv": pinv}


def get_solver(solver):
    """The solver callable for a name in :data:`SOLVERS` or a callable (returned as is);
    ValueError otherwise."""
    if isinstance(solver, str):
        if solver not in SOLVERS:
            raise ValueError(f"solver={solver!r} is unknown; allowed: {list(SOLVERS)} "
                             f"or a callable (X, theta, G, l2, damping) -> S")
        return SOLVERS[solver]
    if callable(solver):
        return solver
    raise ValueError(f"solver={solver!r} must be one of {list(SOLVERS)} or a callable "
                     f"(X, theta, G, l2, damping) -> S")


def inverse_hvp(X: np.ndarray, theta: np.ndarray, G: np.ndarray, l2: float, damping: float = 0.0,
                solver="auto") -> np.ndarray:
    """H^{-1} g for each row g of G (m x C(d+1)), H = the module docstring's Hessian.

    ``solver``: a name in :data:`SOLVERS` -- "exact" (Cholesky of the explicit Hessian),
    "cg" (conjugate gradients, H never formed), "pinv" (the authors' pseudo-inverse, cut at
    AUTHORS_RCOND), "auto" (exact up to EXACT_MAX_PARAMS parameters, else cg) -- or a solver
    object / callable ``(X, theta, G, l2, damping) -> S``, e.g. ``PseudoInverse(rcond=0.3)``
    or ``CG(tol=1e-8)``.
    """
    G = np.atleast_2d(G)
    return get_solver(solver)(X, theta, G, l2, damping)


def _contract(S: np.ndarray, X: np.ndarray, R: np.ndarray, chunk: int = 256) -> np.ndarray:
    """``S @ G.T`` (m x len(X)) for the per-example gradients G = R kron [X, 1] of another side,
    without materialising G: s^T g_j = sum_c R[j, c] ([x_j, 1] . s[c])."""
    Xa = augment(X)
    C, D = R.shape[1], Xa.shape[1]
    S = S.reshape(len(S), C, D)
    out = np.empty((len(S), len(X)))
    for s in range(0, len(S), chunk):
        M = (S[s:s + chunk].reshape(-1, D) @ Xa.T).reshape(-1, C, len(X))
        out[s:s + chunk] = (M * R.T[None]).sum(axis=1)
    return out


@_one_blas_thread
def influence(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
              theta: np.ndarray, l2: float, damping: float = 0.0, solver="auto") -> np.ndarray:
    """Influence matrix (n_test x n_train), nats: ``+(1/n) g_test^T H^{-1} g_train``.

    Entry [t, j] predicts loss_t(head retrained without training image j) - loss_t(head).
    **Positive = helpful** (removing j would raise test image t's loss), negative = harmful.
    ``theta`` must be the minimiser of the objective with this ``l2`` (see :func:`fit_head`);
    ``solver`` as in :func:`inverse_hvp`. H^{-1} (symmetric) is applied to the gradients of the
    smaller side -- training images if n_train < n_test (the paper's 3,200 vs 10,000), else test
    images -- and the other side's gradients g = r kron x~ are used in factored form, never
    materialised.
    """
    n = len(y_train)
    if n < len(y_test):
        S = inverse_hvp(X_train, theta, per_example_grads(X_train, y_train, theta), l2, damping,
                        solver)                                                 # (n, C*D)
        return _contract(S, X_test, _residuals(X_test, y_test, theta)).T / n
    S = inverse_hvp(X_train, theta, per_example_grads(X_test, y_test, theta), l2, damping, solver)
    return _contract(S, X_train, _residuals(X_train, y_train, theta)) / n


# ---------------------------------------------------------------- fitting and retraining
@_one_blas_thread
def fit_head(X: np.ndarray, y: np.ndarray, l2: float, num_classes: int | None = None,
             sample_weight=None, init: np.ndarray | None = None, tol: float = 1e-10,
             max_iter: int = 200) -> np.ndarray:
    """Minimiser theta (C x (d+1)) of the L2-regularised mean cross-entropy (module docstring).

    L-BFGS from zeros (skipped when ``init`` is given: warm start), then Newton steps
    (closed-form Hessian, Cholesky; Newton-CG with Hessian-vector products above
    NEWTON_EXPLICIT_MAX_PARAMS; Armijo line search until the Newton decrement g^T H^-1 g < 1e-8, full
    steps after) until the largest gradient entry is below ``tol`` or the Newton step is below
    float64 resolution of theta (1e-13 relative). ``l2`` must be > 0 (unique minimiser).
    RuntimeError if neither is reached.
    """
    if not (isinstance(l2, (int, float)) and l2 > 0):
        raise ValueError(f"l2={l2!r} must be a number > 0 (the head's L2 penalty)")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    C = int(num_classes if num_classes is not None else y.max() + 1)
    D = X.shape[1] + 1
    w = _check_weights(sample_weight, len(y))
    t = np.zeros(C * D) if init is None else np.array(init, dtype=np.float64).ravel()
    f = lambda v: objective(v, X, y, l2, w)  # noqa: E731
    if init is None:   # cheap first-order start; a warm start goes straight to Newton
        t = scipy.optimize.minimize(f, t, jac=True, method="L-BFGS-B",
                                    options=dict(maxiter=10 * max_iter, gtol=1e-8, ftol=0.0)).x
    large = C * D > NEWTON_EXPLICIT_MAX_PARAMS
    for _ in range(max_iter):
        value, g = f(t)
        if np.abs(g).max() < tol:
            return t.reshape(C, D)
        theta = t.reshape(C, D)
        if large:
            P = probabilities(X, theta)
            step = cg_solve(lambda V: hvp(X, theta, V, l2, 0.0, w, P=P), g[None], tol=1e-6)[0]
        else:
            step = scipy.linalg.cho_solve(scipy.linalg.cho_factor(hessian(X, theta, l2, 0.0, w)), g)
        if np.abs(step).max() <= 1e-13 * max(1.0, np.abs(t).max()):
            return t.reshape(C, D)      # the remaining correction is below float64 resolution
        if g @ step < 1e-8:
            # Newton decrement tiny: quadratic-convergence region, where the predicted decrease
            # is below the float64 resolution of L, so a line search cannot see it: full step
            t = t - step
            continue
        a = 1.0
        while a > 1e-10:   # Armijo backtracking
            cand = t - a * step
            if f(cand)[0] <= value - 1e-4 * a * (g @ step):
                break
            a *= 0.5
        if a <= 1e-10:
            break
        t = cand
    raise RuntimeError(f"fit_head did not reach tol={tol} in {max_iter} Newton steps "
                       f"(max |grad| {np.abs(f(t)[1]).max():.2e})")


@_one_blas_thread
def leave_one_out(X: np.ndarray, y: np.ndarray, theta: np.ndarray, l2: float,
                  train_idx, X_test: np.ndarray, y_test: np.ndarray, tol: float = 1e-10,
                  progress=True) -> np.ndarray:
    """Actual test-loss changes (n_test x len(train_idx)), nats, from retraining without each point.

    For each j in ``train_idx`` the head is refitted with w_j = 0 (the 1/n normalisation is kept,
    exactly the perturbation :func:`influence` linearises), warm-started from ``theta``, to
    ``tol`` (:func:`_refit_without`). Entry [t, k] = loss_t(theta without train_idx[k]) -
    loss_t(theta): compare it with ``influence(...)[t, train_idx[k]]`` (same sign convention:
    positive = removal hurts). ``progress``: True (a ``tqdm.auto`` bar), False, or a callable
    wrapping the loop's iterable with tqdm's arguments (e.g. ``robust_transfer.progress.bar``).
    """
    train_idx = np.asarray(train_idx, dtype=np.int64)
    if callable(progress):
        steps = progress(train_idx, desc="leave-one-out")
    else:
        from tqdm.auto import tqdm
        steps = tqdm(train_idx, desc="leave-one-out", disable=not progress)
    base = losses(X_test, y_test, theta)
    explicit = theta.size <= NEWTON_EXPLICIT_MAX_PARAMS
    H = hessian(X, theta, l2) if explicit else None
    out = np.empty((len(y_test), len(train_idx)))
    for k, j in enumerate(steps):
        w = np.ones(len(y))
        w[j] = 0.0
        th = (_refit_without(X, y, theta, l2, j, H, tol) if explicit else
              fit_head(X, y, l2, theta.shape[0], sample_weight=w, init=theta, tol=tol))
        out[:, k] = losses(X_test, y_test, th) - base
    return out


def _refit_without(X, y, theta, l2, j, H, tol, max_steps: int = 50) -> np.ndarray:
    """:func:`fit_head` without example ``j`` (weight 0), warm-started at the full optimum
    ``theta`` whose Hessian is ``H``: steps ``t -= H_j^-1 grad(t)`` with the one Cholesky of
    ``H_j`` = ``H`` minus j's term ``(diag(p_j) - p_j p_j^T) kron x~_j x~_j^T / n`` (its exact
    Hessian at ``theta``; theta moves O(1/n), so each step gains many digits), to the same
    ``tol`` as fit_head, whose Newton steps take over if these stall."""
    n, C = len(y), theta.shape[0]
    w = np.ones(n)
    w[j] = 0.0
    xa = augment(X[j:j + 1])[0]
    p = probabilities(X[j:j + 1], theta)[0]
    Hj = H - np.kron(np.diag(p) - np.outer(p, p), np.outer(xa, xa)) / n
    factor = scipy.linalg.cho_factor(Hj)
    t = np.array(theta, dtype=np.float64).ravel()
    for _ in range(max_steps):
        g = objective(t, X, y, l2, w)[1]
        if np.abs(g).max() < tol:
            return t.reshape(C, -1)
        t = t - scipy.linalg.cho_solve(factor, g)
    return fit_head(X, y, l2, C, sample_weight=w, init=t, tol=tol)


def match_loss(X: np.ndarray, y: np.ndarray, target: float, l2_start: float,
               num_classes: int | None = None, bounds: tuple[float, float] = (1e-8, 1e3),
               rtol: float = 1e-3, max_steps: int = 60) -> tuple[float, np.ndarray, float]:
    """(l2, theta, loss): the L2 penalty whose head (:func:`fit_head`) has mean training
    cross-entropy ``target`` (nats) on (X, y), that head and its achieved loss (nats).

    The optimum's training loss rises monotonically with l2. From ``l2_start`` the penalty
    moves by factors of 10 (within ``bounds``) until the target is bracketed, then bisection
    on log l2 until the loss is within ``rtol`` x ``target`` or ``max_steps`` halvings; each
    fit warm-started from the previous one, so the result is deterministic. A target out of
    reach within ``bounds`` gives the bound's head: the achieved loss says how far it is."""
    if not (np.isfinite(target) and target > 0):
        raise ValueError(f"target={target!r} must be a training loss > 0 (nats)")
    lo, hi = (float(v) for v in bounds)
    if not (0 < lo <= l2_start <= hi):
        raise ValueError(f"l2_start={l2_start!r} and bounds={bounds!r} must satisfy "
                         f"0 < low <= l2_start <= high")
    C = int(num_classes if num_classes is not None else np.max(y) + 1)
    fits = {}

    def fit(log_l2):
        init = fits[min(fits, key=lambda k: abs(k - log_l2))][0] if fits else None
        theta = fit_head(X, y, float(np.exp(log_l2)), C, init=init)
        fits[log_l2] = (theta, float(losses(X, y, theta).mean()))
        return fits[log_l2][1]

    def result():
        k = min(fits, key=lambda k: abs(fits[k][1] - target))
        return float(np.exp(k)), fits[k][0], fits[k][1]
    a = np.log(l2_start)
    up = fit(a) < target                       # the loss must rise: a larger penalty
    while abs(result()[2] - target) > rtol * target:
        b = min(a + np.log(10.0), np.log(hi)) if up else max(a - np.log(10.0), np.log(lo))
        if b == a:
            return result()                    # the target is out of reach within bounds
        if (fit(b) >= target) == up:
            break
        a = b
    else:
        return result()
    for _ in range(max_steps):
        if abs(result()[2] - target) <= rtol * target:
            break
        mid = 0.5 * (a + b)
        if (fit(mid) >= target) == up:
            b = mid
        else:
            a = mid
    return result()


def loo_correlation(predicted: np.ndarray, actual: np.ndarray) -> dict:
    """Pearson and Spearman correlation (and n) between predicted and actual loss changes."""
    p, a = np.ravel(predicted), np.ravel(actual)
    return dict(pearson=float(scipy.stats.pearsonr(p, a)[0]),
                spearman=float(scipy.stats.spearmanr(p, a)[0]), n=int(p.size))


def loo_slope(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Least-squares slope through 0 of actual on predicted loss changes (1 = right scale;
    > 1: influence underestimates the effect of removing a point)."""
    p, a = np.ravel(predicted), np.ravel(actual)
    return float(p @ a / (p @ p))


# ---------------------------------------------------------------- metrics
def top_training(I: np.ndarray, t: int, k: int, helpful: bool = True) -> np.ndarray:
    """Indices of the k most helpful (largest influence) or most harmful (most negative)
    training images for test image t, strongest first."""
    row = I[t] if helpful else -I[t]
    return np.argsort(-row, kind="stable")[:k]


def _ranked_same(I, y_test, y_train, k):
    order = np.argsort(-I, axis=1, kind="stable")[:, :k]
    return np.asarray(y_train)[order] == np.asarray(y_test)[:, None]     # (n_test, k) bool


def topk_same_class(I: np.ndarray, y_test, y_train, ks=range(1, 101)) -> np.ndarray:
    """Per test image, the fraction of its top-k most helpful training images that share its
    label, for each k in ``ks``: array (n_test x len(ks)) in [0, 1]. k = 1 is the paper's
    "top-1 same class"; the mean over test images is the share. k is capped at n_train."""
    ks = [min(int(k), I.shape[1]) for k in ks]
    same = _ranked_same(I, y_test, y_train, max(ks)).cumsum(axis=1)
    return np.stack([same[:, k - 1] / k for k in ks], axis=1)


def at_least_m_of_top_k(I: np.ndarray, y_test, y_train, m: int = 3, k: int = 5) -> np.ndarray:
    """Per test image: 1.0 if at least m of its top-k most helpful training images share its
    label, else 0.0 (the paper's "at least 3 of the top 5"), shape (n_test,)."""
    return (_ranked_same(I, y_test, y_train, k).sum(axis=1) >= m).astype(float)


def auc_same_class(I: np.ndarray, y_test, y_train) -> np.ndarray:
    """Per test image, the probability that a random training image of its label has a larger
    influence (more helpful) than a random training image of another label, ties counting one
    half: the Mann-Whitney AUC of its row of I over every training image (average ranks).
    Shape (n_test,), in [0, 1]; chance 0.5 whatever the number of classes. ValueError when a
    test label has no same-class or no other-class training image."""
    I = np.asarray(I, dtype=np.float64)
    y_test, y_train = np.asarray(y_test), np.asarray(y_train)
    same = y_train[None, :] == y_test[:, None]
    n_pos = same.sum(axis=1)
    n_neg = same.shape[1] - n_pos
    if (n_pos == 0).any() or (n_neg == 0).any():
        raise ValueError("auc_same_class needs, for every test label, at least one same-class "
                         "and one other-class training image (y_train, y_test)")
    ranks = scipy.stats.rankdata(I, axis=1)
    return ((ranks * same).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def class_mean_matrix(I: np.ndarray, y_test, y_train, num_classes: int) -> np.ndarray:
    """Mean influence (nats) per (test class, train class): array (C x C), NaN for empty cells."""
    y_test, y_train = np.asarray(y_test), np.asarray(y_train)
    M = np.full((num_classes, num_classes), np.nan)
    for a in range(num_classes):
        rows = I[y_test == a]
        for b in range(num_classes):
            if rows.size and (y_train == b).any():
                M[a, b] = rows[:, y_train == b].mean()
    return M


def class_sorted(I: np.ndarray, y_test, y_train) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(I with test rows and train columns sorted by class, test order, train order)."""
    to = np.argsort(np.asarray(y_test), kind="stable")
    tr = np.argsort(np.asarray(y_train), kind="stable")
    return I[np.ix_(to, tr)], to, tr


