"""Influence at the paper's size, end to end, on synthetic features: exact path vs the authors'.

The paper's Section 3 head: 2048 pooled ResNet-50 features, 10 CIFAR-10 classes (20,490
parameters), n = 3,200 training and 10,000 test images. Synthetic standardised features from a
random linear model stand in for the real ones (the cost does not depend on their values).

Ours (:func:`robust_transfer.influence.influence`, solver "exact"): the closed-form float64
Hessian, one in-place Cholesky, H^-1 applied to the 3,200 training gradients (the smaller side),
contracted with the 10,000 test gradients in factored form. Checked on a sample of test rows
against an independent solve: LU with partial pivoting (``torch.linalg.solve``, a different
factorisation from the Cholesky it checks) of a freshly built Hessian, from the test side. (A
Bunch-Kaufman LDL^T check took 38 min here; scipy's bundled OpenBLAS segfaults at this size.)

The authors' method (row-by-row double-backprop Hessian over batches of 100, then a
pseudo-inverse) is extrapolated from what this run times: a few Hessian rows at full size
(x 20,490 rows) and ``scipy.linalg.pinvh`` at smaller sizes (x (20,490 / P)^3 from the largest).

    python benchmarks/influence_paper_size.py [--d 2048] [--classes 10] [--n 3200] [--test 10000]
"""
import argparse
import resource
import time

import numpy as np
import scipy.linalg
import torch

from robust_transfer import influence as inf


def synthetic(d: int, C: int, n: int, n_test: int, seed: int = 0):
    """Standardised features (float64) and labels from a random linear model (about 80% of
    labels predictable)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(C, d)) / np.sqrt(d) * 3
    X = rng.normal(size=(n + n_test, d))
    y = (X @ W.T + rng.gumbel(size=(n + n_test, C))).argmax(1)
    return X[:n], y[:n], X[n:], y[n:]


def peak_gb() -> float:
    """Peak resident memory of this process so far (GB; Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def authors_rows_seconds(X, y, theta, l2, rows: int, batch_size: int = 100) -> float:
    """Seconds per Hessian row of the authors' double backprop at this size: per batch of 100
    the loss gradient with ``create_graph=True``, then one backward pass per row, summed."""
    W = torch.tensor(theta[:, :-1], requires_grad=True)
    b = torch.tensor(theta[:, -1], requires_grad=True)
    t0 = time.perf_counter()
    for s in range(0, len(y), batch_size):
        Xt, yt = torch.tensor(X[s:s + batch_size]), torch.tensor(y[s:s + batch_size])
        loss = torch.nn.functional.cross_entropy(Xt @ W.T + b, yt) \
            + 0.5 * l2 * ((W * W).sum() + (b * b).sum())
        gW, gb = torch.autograd.grad(loss, (W, b), create_graph=True)
        g = torch.cat([torch.cat([gW, gb[:, None]], 1).reshape(-1)])
        for i in range(rows):
            torch.autograd.grad(g[i], (W, b), retain_graph=True, create_graph=True)
    return (time.perf_counter() - t0) / rows


def pinv_seconds(P: int, seed: int = 0) -> float:
    """Seconds of ``scipy.linalg.pinvh`` (cut at the authors' 5%) of a P x P SPD matrix."""
    A = np.random.default_rng(seed).normal(size=(P, P + 10))
    A = A @ A.T / P
    t0 = time.perf_counter()
    scipy.linalg.pinvh(A, rtol=inf.AUTHORS_RCOND)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--n", type=int, default=3200)
    ap.add_argument("--test", type=int, default=10000)
    ap.add_argument("--l2", type=float, default=1e-3)
    ap.add_argument("--check", type=int, default=8, help="test rows checked independently")
    ap.add_argument("--rows", type=int, default=10, help="authors' Hessian rows timed")
    ap.add_argument("--pinv-sizes", type=int, nargs="+", default=[1000, 2000, 4000])
    a = ap.parse_args()
    P = a.classes * (a.d + 1)
    print(f"head: {a.d} features x {a.classes} classes = {P} parameters; n = {a.n} training, "
          f"{a.test} test images; solver for this size: {inf.auto.choose(P).name}")
    t_all = time.perf_counter()
    X, y, Xt, yt = synthetic(a.d, a.classes, a.n, a.test)

    t0 = time.perf_counter()
    theta = inf.fit_head(X, y, a.l2, num_classes=a.classes)
    t_fit = time.perf_counter() - t0
    how = "Newton-CG" if P > inf.NEWTON_EXPLICIT_MAX_PARAMS else "Newton"
    print(f"fit_head ({how} to max |grad| < 1e-10): {t_fit:.1f} s")

    t0, c0 = time.perf_counter(), time.process_time()
    I = inf.influence(X, y, Xt, yt, theta, a.l2, solver="exact")
    t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0
    print(f"influence, exact (Hessian + Cholesky + {a.n} solves + contraction): {t_ours:.1f} s "
          f"wall, {c_ours:.1f} s CPU (all threads; the machine is shared); matrix {I.shape}; "
          f"peak memory so far {peak_gb():.2f} GB")

    rows = np.random.default_rng(1).choice(a.test, a.check, replace=False)
    t0 = time.perf_counter()
    H = torch.from_numpy(inf.hessian(X, theta, a.l2))
    G = torch.from_numpy(inf.per_example_grads(Xt[rows], yt[rows], theta).T.copy())
    S = torch.linalg.solve(H, G).numpy().T
    del H
    check = S @ inf.per_example_grads(X, y, theta).T / a.n
    t_check = time.perf_counter() - t0
    diff = np.abs(check - I[rows]).max()
    print(f"independent check ({a.check} test rows, LU solve from the test side, "
          f"{t_check:.1f} s): max |difference| {diff:.2e} (max |influence| in those rows "
          f"{np.abs(I[rows]).max():.2e}, relative {diff / np.abs(I[rows]).max():.1e})")

    per_row = authors_rows_seconds(X, y, theta, a.l2, a.rows)
    t_rows = per_row * P
    print(f"authors' double-backprop Hessian: {per_row * 1e3:.1f} ms per row (timed {a.rows} rows "
          f"at full size) x {P} rows = {t_rows / 60:.1f} min")
    sizes = {p: pinv_seconds(p) for p in a.pinv_sizes}
    big = max(sizes)
    t_pinv = sizes[big] * (P / big) ** 3
    print("authors' pseudo-inverse (pinvh, eigh): "
          + ", ".join(f"P={p}: {t:.1f} s" for p, t in sizes.items())
          + f" -> P={P}: ~{t_pinv / 60:.1f} min (cubic from P={big})")
    t_authors = t_rows + t_pinv
    print(f"authors' method (Hessian + pseudo-inverse only, extrapolated): ~{t_authors / 60:.0f} min"
          f" = {t_authors / t_ours:.0f}x our exact influence ({t_ours:.0f} s)")
    print(f"end to end: {time.perf_counter() - t_all:.0f} s wall, {time.process_time():.0f} s CPU; "
          f"peak memory {peak_gb():.2f} GB")


if __name__ == "__main__":
    main()
