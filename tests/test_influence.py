"""Influence functions: closed-form derivatives vs autograd, solvers, sign vs leave-one-out, metrics."""
import sys
import types

import numpy as np
import pytest
import torch

from robust_transfer import influence as inf

torch.set_num_threads(1)


def _problem(seed, n=120, d=5, C=3, scale=1.0):
    """Well-conditioned multinomial data drawn from a random linear model."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(C, d)) * scale
    X = rng.normal(size=(n, d))
    y = (X @ W.T + rng.gumbel(size=(n, C))).argmax(1)
    Xt = rng.normal(size=(25, d))
    yt = (Xt @ W.T + rng.gumbel(size=(25, C))).argmax(1)
    return X, y, Xt, yt


def _torch_objective(X, y, l2, w=None):
    Xa = torch.tensor(inf.augment(X))
    yt = torch.tensor(y)
    w = torch.ones(len(y), dtype=torch.float64) if w is None else torch.tensor(w)

    def f(t):
        Z = Xa @ t.view(-1, Xa.shape[1]).T
        ce = torch.nn.functional.cross_entropy(Z, yt, reduction="none")
        return (w * ce).sum() / len(y) + 0.5 * l2 * (t @ t)
    return f


@pytest.mark.parametrize("seed,n,d,C,l2,damping,weighted", [
    (0, 50, 4, 3, 0.0, 0.0, False), (1, 80, 7, 5, 0.1, 0.0, False),
    (2, 60, 3, 2, 1e-3, 0.05, True), (3, 30, 9, 4, 0.0, 0.3, True)])
def test_closed_form_hessian_equals_autograd(seed, n, d, C, l2, damping, weighted):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * 2
    y = rng.integers(0, C, size=n)
    theta = rng.normal(size=(C, d + 1))
    w = rng.uniform(0, 2, size=n) if weighted else None
    f = _torch_objective(X, y, l2, w)
    t = torch.tensor(theta.ravel())
    H_auto = torch.autograd.functional.hessian(f, t).numpy()
    H = inf.hessian(X, theta, l2, damping, sample_weight=w)
    np.testing.assert_allclose(H, H_auto + damping * np.eye(len(t)), rtol=0, atol=1e-8)
    # objective value and gradient, per-example gradients, Hessian-vector products
    value, grad = inf.objective(theta.ravel(), X, y, l2, w)
    tt = t.clone().requires_grad_(True)
    ft = f(tt)
    ft.backward()
    assert abs(value - ft.item()) < 1e-10
    np.testing.assert_allclose(grad, tt.grad.numpy(), atol=1e-10)
    V = rng.normal(size=(4, len(t)))
    np.testing.assert_allclose(inf.hvp(X, theta, V, l2, damping, w), V @ H, atol=1e-10)
    G = inf.per_example_grads(X, y, theta)
    f1 = _torch_objective(X[:1], y[:1], 0.0)
    g0 = torch.autograd.functional.jacobian(f1, t).numpy()
    np.testing.assert_allclose(G[0], g0, atol=1e-12)


def test_fit_head_reaches_the_optimum():
    X, y, _, _ = _problem(0)
    theta = inf.fit_head(X, y, 0.05)
    _, g = inf.objective(theta.ravel(), X, y, 0.05)
    assert np.abs(g).max() < 1e-10
    # a convex problem: any perturbation raises the objective
    rng = np.random.default_rng(1)
    v0 = inf.objective(theta.ravel(), X, y, 0.05)[0]
    for _ in range(5):
        assert inf.objective(theta.ravel() + 1e-3 * rng.normal(size=theta.size), X, y, 0.05)[0] > v0
    with pytest.raises(ValueError, match="l2"):
        inf.fit_head(X, y, 0.0)


def test_cg_and_pinv_equal_the_exact_solve():
    X, y, Xt, yt = _problem(2, d=6, C=4)
    theta = inf.fit_head(X, y, 0.02)
    I_exact = inf.influence(X, y, Xt, yt, theta, 0.02, method="exact")
    I_cg = inf.influence(X, y, Xt, yt, theta, 0.02, method="cg")
    I_pinv0 = inf.influence(X, y, Xt, yt, theta, 0.02, method="pinv", rcond=0.0)
    scale = np.abs(I_exact).max()
    assert np.abs(I_cg - I_exact).max() < 1e-7 * scale
    assert np.abs(I_pinv0 - I_exact).max() < 1e-9 * scale
    # a pseudo-inverse that cuts eigenvalues of the data term (the authors cut below 5% of the
    # largest) is a different operator. (Cutting only the softmax's null directions, where H has
    # eigenvalue l2, changes nothing: every per-example gradient sums to zero over classes.)
    eig = np.linalg.eigvalsh(inf.hessian(X, theta, 0.02))
    assert ((eig > 0.021) & (eig < 0.3 * eig.max())).any()
    I_cut = inf.influence(X, y, Xt, yt, theta, 0.02, method="pinv", rcond=0.3)
    assert np.abs(I_cut - I_exact).max() > 1e-3 * scale
    # the factored influence equals the textbook (1/n) G_test H^-1 G_train^T
    H = inf.hessian(X, theta, 0.02)
    G_tr, G_te = inf.per_example_grads(X, y, theta), inf.per_example_grads(Xt, yt, theta)
    np.testing.assert_allclose(I_exact, G_te @ np.linalg.solve(H, G_tr.T) / len(y),
                               atol=1e-10 * scale)


def test_solver_errors_name_the_problem():
    X, y, Xt, yt = _problem(3)
    theta = inf.fit_head(X, y, 0.1)
    with pytest.raises(ValueError, match="method='newton'"):
        inf.influence(X, y, Xt, yt, theta, 0.1, method="newton")
    with pytest.raises(ValueError, match="positive definite"):
        # l2 = 0: the softmax Hessian is singular (adding a constant to every logit changes nothing)
        inf.inverse_hvp(X, theta, np.ones((1, theta.size)), l2=0.0, method="exact")
    with pytest.raises(RuntimeError, match="did not converge"):
        inf.cg_solve(lambda V: V * np.array([1.0, 10.0, 100.0]), np.ones((1, 3)), maxiter=2)
    s = inf.cg_solve(lambda V: V * np.array([1.0, 10.0, 100.0]), np.ones((2, 3)), maxiter=3)
    np.testing.assert_allclose(s, [[1.0, 0.1, 0.01]] * 2, rtol=1e-8)


def test_influence_predicts_leave_one_out_retraining():
    """The ground truth: retrain without each point; sign and scale must agree."""
    X, y, Xt, yt = _problem(4, n=150, d=4, C=3)
    l2 = 0.01
    theta = inf.fit_head(X, y, l2)
    I = inf.influence(X, y, Xt, yt, theta, l2)
    t = int(np.argmax(inf.losses(Xt, yt, theta)))
    cols = np.argsort(-np.abs(I[t]))[:20]
    actual = inf.leave_one_out(X, y, theta, l2, cols, Xt, yt, progress=False)
    r = inf.loo_correlation(I[t, cols], actual[t])
    assert r["pearson"] > 0.95 and r["spearman"] > 0.9, r
    r_all = inf.loo_correlation(I[:, cols], actual)
    assert r_all["pearson"] > 0.95, r_all
    # same sign and scale (least-squares slope of actual on predicted close to 1)
    p, a = I[:, cols].ravel(), actual.ravel()
    slope = (p @ a) / (p @ p)
    assert 0.7 < slope < 1.4, slope
    # a flipped sign convention would give a strongly negative correlation
    assert inf.loo_correlation(-I[t, cols], actual[t])["pearson"] < -0.95


def test_sign_convention_helpful_is_positive():
    """A training copy of a test image is helpful (removing it raises that test image's loss);
    the same image with a wrong label is harmful. Fails if the sign is flipped."""
    X, y, _, _ = _problem(5, n=100, d=3, C=3)
    x_new = np.array([[2.5, -2.0, 1.0]])
    X2 = np.vstack([X, x_new, x_new])
    y2 = np.concatenate([y, [0, 1]])          # copy with label 0, copy with label 1
    theta = inf.fit_head(X2, y2, 0.05)
    I = inf.influence(X2, y2, x_new, np.array([0]), theta, 0.05)
    assert I[0, -2] > 0 and I[0, -1] < 0
    assert inf.top_training(I, 0, 1, helpful=True)[0] == len(y2) - 2
    assert inf.top_training(I, 0, 1, helpful=False)[0] == len(y2) - 1
    actual = inf.leave_one_out(X2, y2, theta, 0.05, [len(y2) - 2, len(y2) - 1], x_new,
                               np.array([0]), progress=False)
    assert actual[0, 0] > 0 and actual[0, 1] < 0


def test_topk_metrics_on_hand_made_matrices():
    I = np.array([[3.0, 2.0, 1.0, -1.0],
                  [0.0, 1.0, 5.0, 4.0],
                  [9.0, 8.0, 7.0, 6.0]])
    y_train = np.array([0, 1, 1, 0])
    y_test = np.array([0, 1, 1])
    share = inf.topk_same_class(I, y_test, y_train, ks=[1, 2, 3, 4, 99])
    np.testing.assert_allclose(share, [[1, 1 / 2, 1 / 3, 2 / 4, 2 / 4],
                                       [1, 1 / 2, 2 / 3, 2 / 4, 2 / 4],
                                       [0, 1 / 2, 2 / 3, 2 / 4, 2 / 4]])
    np.testing.assert_array_equal(inf.at_least_m_of_top_k(I, y_test, y_train, m=2, k=3),
                                  [0, 1, 1])
    np.testing.assert_array_equal(inf.top_training(I, 1, 2), [2, 3])
    np.testing.assert_array_equal(inf.top_training(I, 1, 2, helpful=False), [0, 1])
    M = inf.class_mean_matrix(I, y_test, y_train, 3)
    np.testing.assert_allclose(M[:2, :2], [[1.0, 1.5], [(0 + 4 + 9 + 6) / 4, (1 + 5 + 8 + 7) / 4]])
    assert np.isnan(M[2]).all() and np.isnan(M[:, 2]).all()
    S, to, tr = inf.class_sorted(I, y_test, y_train)
    np.testing.assert_array_equal(tr, [0, 3, 1, 2])
    np.testing.assert_array_equal(S[0], [3.0, -1.0, 2.0, 1.0])


def test_bootstrap_ci():
    rng = np.random.default_rng(0)
    v = rng.binomial(1, 0.6, size=(400, 2)).astype(float)
    mean, lo, hi = inf.bootstrap_ci(v, n_boot=500)
    np.testing.assert_allclose(mean, v.mean(0))
    assert (lo < mean).all() and (mean < hi).all() and (hi - lo < 0.15).all()
    m, l, h = inf.bootstrap_ci(np.ones(50))
    assert m == l == h == 1.0
    small = inf.bootstrap_ci(v[:40, 0], n_boot=500)
    assert small[2] - small[1] > hi[0] - lo[0]   # fewer test images, wider interval


def test_transferred_head_and_cached_study(tmp_path, monkeypatch):
    """End to end on a stand-in source (random ResNet-8) and the offline digits target."""
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path))
    import robust_transfer
    from robust_transfer import models
    try:
        from robust_transfer import zoo
    except ImportError:   # the zoo is optional here: only its spec() is used, and it is faked
        zoo = types.ModuleType("robust_transfer.zoo")
        monkeypatch.setitem(sys.modules, "robust_transfer.zoo", zoo)
        monkeypatch.setattr(robust_transfer, "zoo", zoo, raising=False)
    monkeypatch.setattr(zoo, "spec", lambda sid: types.SimpleNamespace(in_channels=1, image_size=28),
                        raising=False)
    torch.manual_seed(0)
    model = models.build("resnet8", 10, 1).eval()
    cfg = types.SimpleNamespace(allow_download=False, val_size=50, influence_test=30, damping=0.01,
                                influence_n=60, loo_points=3, seeds=(0,))
    out = inf.influence_study("stand-in", "digits", cfg, model=model, progress=False)
    assert out["I"].shape == (30, 60)
    assert len(set(out["y_train"])) == 10 and out["loo_actual"].shape == (30, 3)
    assert out["I_authors"].shape == (30, 60)
    assert out["images_train"].shape == (60, 1, 28, 28) and out["images_test"].dtype == np.uint8
    assert inf.loo_correlation(out["loo_pred"], out["loo_actual"])["pearson"] > 0.9
    monkeypatch.setattr(inf, "fit_head", lambda *a, **k: pytest.fail("cache not used"))
    again = inf.influence_study("stand-in", "digits", cfg, model=model, progress=False)
    np.testing.assert_array_equal(again["I"], out["I"])
    assert again["meta"]["target"] == "digits"
