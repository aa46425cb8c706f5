"""Influence functions: closed-form derivatives vs autograd, solvers, sign vs leave-one-out,
metrics, the cached study and its on-disk format, the chapter's headline verdict."""
import inspect
import json
import types

import numpy as np
import pytest
import torch

from robust_transfer import influence as inf
from robust_transfer import influence_study as ist
from robust_transfer import stats

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
    I_exact = inf.influence(X, y, Xt, yt, theta, 0.02, solver="exact")
    I_cg = inf.influence(X, y, Xt, yt, theta, 0.02, solver="cg")
    I_pinv0 = inf.influence(X, y, Xt, yt, theta, 0.02, solver=inf.PseudoInverse(rcond=0.0))
    scale = np.abs(I_exact).max()
    assert np.abs(I_cg - I_exact).max() < 1e-7 * scale
    assert np.abs(I_pinv0 - I_exact).max() < 1e-9 * scale
    # a pseudo-inverse that cuts eigenvalues of the data term (the authors cut below 5% of the
    # largest) is a different operator. (Cutting only the softmax's null directions, where H has
    # eigenvalue l2, changes nothing: every per-example gradient sums to zero over classes.)
    eig = np.linalg.eigvalsh(inf.hessian(X, theta, 0.02))
    assert ((eig > 0.021) & (eig < 0.3 * eig.max())).any()
    I_cut = inf.influence(X, y, Xt, yt, theta, 0.02, solver=inf.PseudoInverse(rcond=0.3))
    assert np.abs(I_cut - I_exact).max() > 1e-3 * scale
    # the factored influence equals the textbook (1/n) G_test H^-1 G_train^T
    H = inf.hessian(X, theta, 0.02)
    G_tr, G_te = inf.per_example_grads(X, y, theta), inf.per_example_grads(Xt, yt, theta)
    np.testing.assert_allclose(I_exact, G_te @ np.linalg.solve(H, G_tr.T) / len(y),
                               atol=1e-10 * scale)


def test_solvers_share_one_signature_and_agree():
    """Every solver takes (X, theta, G, l2, damping); exact and cg (and auto, pinv with no cut)
    give the same H^-1 g, with and without damping; a name and the object give the same result."""
    X, y, Xt, yt = _problem(6, d=5, C=3)
    theta = inf.fit_head(X, y, 0.05)
    G = inf.per_example_grads(Xt, yt, theta)
    signatures = {name: [(p.name, p.kind) for p in inspect.signature(s).parameters.values()]
                  for name, s in inf.SOLVERS.items()}
    assert set(signatures) == {"auto", "exact", "cg", "pinv"}
    assert all(sig == signatures["exact"] for sig in signatures.values()), signatures
    assert [n for n, _ in signatures["exact"]] == ["X", "theta", "G", "l2", "damping"]
    for damping in (0.0, 0.1):
        S = {name: s(X, theta, G, 0.05, damping) for name, s in inf.SOLVERS.items()}
        H = inf.hessian(X, theta, 0.05, damping)
        np.testing.assert_allclose(S["exact"] @ H, G, atol=1e-10)
        np.testing.assert_allclose(S["cg"], S["exact"], rtol=0, atol=1e-8 * np.abs(S["exact"]).max())
        np.testing.assert_array_equal(S["auto"], S["exact"])       # small head: auto = exact
        np.testing.assert_allclose(inf.PseudoInverse(rcond=0.0)(X, theta, G, 0.05, damping),
                                   S["exact"], atol=1e-9 * np.abs(S["exact"]).max())
        np.testing.assert_array_equal(inf.inverse_hvp(X, theta, G, 0.05, damping, "cg"), S["cg"])
        np.testing.assert_array_equal(inf.inverse_hvp(X, theta, G, 0.05, damping, inf.cg), S["cg"])
    # auto switches to cg above its parameter limit; any callable is accepted
    assert inf.Auto(max_params=theta.size - 1).choose(theta.size) is inf.cg
    assert inf.auto.choose(theta.size) is inf.exact
    calls = []

    def mine(X_, theta_, G_, l2, damping):
        calls.append((l2, damping))
        return inf.exact(X_, theta_, G_, l2, damping)
    I = inf.influence(X, y, Xt, yt, theta, 0.05, 0.0, solver=mine)
    np.testing.assert_array_equal(I, inf.influence(X, y, Xt, yt, theta, 0.05, solver="exact"))
    assert calls == [(0.05, 0.0)]


@pytest.mark.parametrize("n, n_test", [(30, 80), (120, 25)])
def test_exact_path_solves_the_smaller_side_and_matches_cg_and_finite_differences(n, n_test):
    """influence() applies H^-1 to the training gradients when n < n_test, else to the test
    gradients; both equal the explicit formula, CG, and a finite difference of the refitted head
    in the training example's weight (w_j = 1 - eps: d loss_t / d eps = influence[t, j])."""
    rng = np.random.default_rng(7)
    X, y, _, _ = _problem(8, n=n, d=4, C=3)
    Xt = rng.normal(size=(n_test, 4))
    yt = rng.integers(0, 3, n_test)
    l2 = 0.02
    theta = inf.fit_head(X, y, l2, tol=1e-13)
    calls = []

    def spy(X_, theta_, G, l2_, damping):
        calls.append(G.shape[0])
        return inf.exact(X_, theta_, G, l2_, damping)
    I = inf.influence(X, y, Xt, yt, theta, l2, solver=spy)
    assert calls == [min(n, n_test)]                      # the smaller side was solved
    H = inf.hessian(X, theta, l2)
    G_tr, G_te = inf.per_example_grads(X, y, theta), inf.per_example_grads(Xt, yt, theta)
    explicit = G_te @ np.linalg.solve(H, G_tr.T) / n
    scale = np.abs(explicit).max()
    np.testing.assert_allclose(I, explicit, rtol=0, atol=1e-11 * scale)
    np.testing.assert_allclose(inf.influence(X, y, Xt, yt, theta, l2, solver="cg"), explicit,
                               rtol=0, atol=1e-7 * scale)
    eps = 1e-4
    for j in (0, n // 2):
        lo, hi = np.ones(n), np.ones(n)
        lo[j], hi[j] = 1 - eps, 1 + eps
        th_lo = inf.fit_head(X, y, l2, 3, sample_weight=lo, init=theta, tol=1e-13)
        th_hi = inf.fit_head(X, y, l2, 3, sample_weight=hi, init=theta, tol=1e-13)
        fd = (inf.losses(Xt, yt, th_lo) - inf.losses(Xt, yt, th_hi)) / (2 * eps)
        np.testing.assert_allclose(fd, I[:, j], rtol=1e-4, atol=1e-6 * scale)
    # paper size (2048 x 10 + 10 parameters) is on the exact path
    assert inf.auto.choose(20490) is inf.exact and inf.auto.choose(25001) is inf.cg


def test_solver_errors_name_the_problem():
    X, y, Xt, yt = _problem(3)
    theta = inf.fit_head(X, y, 0.1)
    with pytest.raises(ValueError, match="solver='newton'"):
        inf.influence(X, y, Xt, yt, theta, 0.1, solver="newton")
    with pytest.raises(ValueError, match="solver=42"):
        inf.inverse_hvp(X, theta, np.ones((1, theta.size)), 0.1, solver=42)
    with pytest.raises(ValueError, match="positive definite"):
        # l2 = 0: the softmax Hessian is singular (adding a constant to every logit changes nothing)
        inf.inverse_hvp(X, theta, np.ones((1, theta.size)), l2=0.0, solver="exact")
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


def test_leave_one_out_refits_are_fit_heads_optimum():
    """The refits (one Cholesky of the full Hessian minus the point's term) land on fit_head's
    own optimum without the point: the same loss changes to float64 tolerance."""
    X, y, Xt, yt = _problem(6, n=120, d=5, C=4)
    l2 = 0.02
    theta = inf.fit_head(X, y, l2)
    cols = [0, 7, 50, 119]
    actual = inf.leave_one_out(X, y, theta, l2, cols, Xt, yt, progress=False)
    for k, j in enumerate(cols):
        w = np.ones(len(y))
        w[j] = 0.0
        th = inf.fit_head(X, y, l2, 4, sample_weight=w)     # from scratch, no warm start
        expected = inf.losses(Xt, yt, th) - inf.losses(Xt, yt, theta)
        np.testing.assert_allclose(actual[:, k], expected, rtol=1e-6, atol=1e-9)


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


def test_bootstrap_ci_of_the_shares():
    """The study's CIs (stats.bootstrap_mean over test images)."""
    rng = np.random.default_rng(0)
    v = rng.binomial(1, 0.6, size=(400, 2)).astype(float)
    mean, lo, hi = stats.bootstrap_mean(v, n_boot=500)
    np.testing.assert_allclose(mean, v.mean(0))
    assert (lo < mean).all() and (mean < hi).all() and (hi - lo < 0.15).all()
    m, l, h = stats.bootstrap_mean(np.ones(50))
    assert m == l == h == 1.0
    small = stats.bootstrap_mean(v[:40, 0], n_boot=500)
    assert small[2] - small[1] > hi[0] - lo[0]   # fewer test images, wider interval


@pytest.mark.slow
def test_both_settings_end_to_end_and_cached(tmp_path, monkeypatch):
    """End to end on a stand-in source (random ResNet-8) and the offline digits target, in the
    fine-tuned setting (transfer.finetune with cfg.main_blocks, head re-solved to optimum on the
    fine-tuned features) and head-only; each cached under its own key."""
    import dataclasses
    from robust_transfer import config, models, transfer, zoo
    cfg = dataclasses.replace(config.resolve("tiny"), val_size=50, influence_test=30,
                              damping=0.01, influence_n=60, loo_points=3, seeds=(0,), epochs=2)
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(zoo, "spec", lambda sid: types.SimpleNamespace(in_channels=1, image_size=28))
    torch.manual_seed(0)
    model = models.build("resnet8", 10, 1).eval()
    calls = []
    real = transfer.finetune

    def spy(*args, **kwargs):
        calls.append((args[7], kwargs["feature_key"][:2], kwargs["return_model"]))
        return real(*args, **kwargs)
    monkeypatch.setattr(transfer, "finetune", spy)
    out = ist.study("stand-in", "digits", cfg, model=model, progress=False)
    assert calls == [(ist.blocks(cfg, "finetuned"), ("stand-in", "digits"), True)]
    head = ist.study("stand-in", "digits", cfg, model=model, progress=False, setting="head_only")
    assert len(calls) == 1                                    # head-only: no fine-tuning
    assert out.meta["setting"] == "finetuned" and out.meta["blocks"] >= 1
    assert head.meta["setting"] == "head_only" and head.meta["blocks"] == 0
    assert np.isnan(head.meta["finetune_acc"]) and 0 <= out.meta["finetune_acc"] <= 100
    assert not np.allclose(out.I, head.I)                     # other features, other influence
    for s in (out, head):
        assert s.I.shape == s.I_authors.shape == s.I_authors_head.shape == (30, 60)
        assert s.nn_order.shape == (30, ist.NN_K) and s.X_train.shape[0] == 60
        assert s.X_test.shape == (30, s.X_train.shape[1]) and s.meta["train_loss"] > 0
        assert 0 <= s.meta["authors_acc"] <= 1 and s.meta["key"]
        assert len(set(s.y_train)) == 10 and s.loo_actual.shape == (30, 3)
        assert s.images_train.shape == (60, 1, 28, 28) and s.images_test.dtype == np.uint8
        assert inf.loo_correlation(s.loo_pred, s.loo_actual)["pearson"] > 0.9
    # the same subset as transfer.run
    from robust_transfer import data
    np.testing.assert_array_equal(out.train_idx, data.train_subset(
        transfer.target_arrays("digits", False)[1].numpy(), 60, 50, 0)[0])
    assert len(list((tmp_path / "influence").glob("*.npz"))) == 2
    monkeypatch.setattr(ist, "fit_head", lambda *a, **k: pytest.fail("cache not used"))
    again = ist.study("stand-in", "digits", cfg, model=model, progress=False)
    np.testing.assert_array_equal(again.I, out.I)
    np.testing.assert_array_equal(again.nn_order, out.nn_order)
    assert again.meta == out.meta
    # the key names the solver, the recipe and the block count
    with pytest.raises(ValueError, match="solver"):
        ist.study("stand-in", "digits", cfg, model=model, solver=inf.cg, progress=False)
    for other in (dict(epochs=3), dict(main_blocks=2) if hasattr(cfg, "main_blocks") else
                  dict(lr=cfg.lr * 2)):
        with pytest.raises(pytest.fail.Exception, match="cache not used"):
            ist.study("stand-in", "digits", dataclasses.replace(cfg, **other), model=model,
                      progress=False)
    with pytest.raises(ValueError, match="setting='last'"):
        ist.study("stand-in", "digits", cfg, model=model, setting="last")


def test_study_reads_the_dict_format_of_older_caches(tmp_path):
    """A study file as the dict-based code wrote it (np.savez of 14 keys, meta as JSON) loads as a
    Study, and saving it again writes the same keys, values and dtypes."""
    rng = np.random.default_rng(0)
    old = dict(I=rng.normal(size=(4, 6)), I_authors=rng.normal(size=(4, 6)),
               images_train=rng.integers(0, 255, (6, 1, 3, 3)).astype(np.uint8),
               images_test=rng.integers(0, 255, (4, 1, 3, 3)).astype(np.uint8),
               y_train=np.arange(6) % 2, y_test=np.arange(4) % 2, train_idx=np.arange(6),
               test_idx=np.arange(4), test_acc=np.float64(0.75), loo_test=np.int64(2),
               loo_train=np.array([1, 3]), loo_actual=rng.normal(size=(4, 2)),
               loo_pred=rng.normal(size=(4, 2)),
               meta=json.dumps(dict(source="s", target="t", class_names=["a", "b"], l2=0.01,
                                    n=6, seed=0)))
    with open(tmp_path / "old.npz", "wb") as fh:
        np.savez(fh, **old)
    s = ist.Study.load(tmp_path / "old.npz")
    assert s.test_acc == 0.75 and s.loo_test == 2 and s.class_names == ["a", "b"]
    assert s.source == "s"
    np.testing.assert_array_equal(s.I, old["I"])
    s.save(tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz") as z:
        assert sorted(z.files) == sorted(old)
        for k, v in old.items():
            assert z[k].dtype == np.asarray(v).dtype, k
            np.testing.assert_array_equal(z[k], v)


def _fake_study(I, y_train, y_test, source, seed=0):
    n_test, n = I.shape
    return ist.Study(I=I, I_authors=I, I_authors_head=I, I_matched=I,
                     matched=dict(l2=0.1, loss=0.5, target=0.5),
                     images_train=np.zeros((n, 1, 2, 2), np.uint8),
                     images_test=np.zeros((n_test, 1, 2, 2), np.uint8), y_train=y_train,
                     y_test=y_test, train_idx=np.arange(n), test_idx=np.arange(n_test),
                     test_acc=0.5, loo_test=0, loo_train=np.arange(3),
                     loo_actual=I[:, :3], loo_pred=I[:, :3],
                     meta=dict(source=source, target="t", class_names=["a", "b"], l2=0.1, n=n,
                               seed=seed, setting="finetuned"),
                     nn_order=np.tile(np.arange(ist.NN_K), (n_test, 1)))


def _fake_target(rng, robust_same, natural_same, n_test=60, n=40, sources=3, seeds=3):
    """Studies (sources x subset seeds per family) where the top-1 training image shares the
    test label with the given rates, and same-class influence is shifted by 2 (rate - 0.5) (an
    AUC above 0.5 for rates above one half); the loss-matched matrix is the same."""
    y_train, y_test = np.arange(n) % 2, np.arange(n_test) % 2
    out = {}
    for kind, rate in (("natural", natural_same), ("robust", robust_same)):
        out[kind] = []
        for src in range(sources):
            for seed in range(seeds):
                I = rng.normal(size=(n_test, n)) \
                    + 2 * (rate - 0.5) * (y_train[None] == y_test[:, None])
                same = rng.random(n_test) < rate
                for t in range(n_test):
                    cols = np.flatnonzero((y_train == y_test[t]) == same[t])
                    I[t, cols[0]] = 10.0
                out[kind].append(_fake_study(I, y_train, y_test, f"{kind}/s{src}", seed))
    return out


def test_crossed_seed_intervals_and_pairing():
    """Shares form a (source seed x subset seed) matrix through stats.ci; the paired difference
    pairs the s-th source of each family on the same subset seed."""
    rng = np.random.default_rng(1)
    fake = _fake_target(rng, 0.9, 0.4)
    m = ist.share_matrix(fake["robust"], "top1")
    assert m.shape == (3, 3) and list(m.columns) == [0, 1, 2]
    c = stats.ci(m.to_numpy())
    studies = {("natural", "A"): fake["natural"], ("robust", "A"): fake["robust"]}
    row = ist.summary(studies).set_index("kind").loc["robust"]
    assert row["top1"] == pytest.approx(c["mean"]) and row["top1_lo"] == pytest.approx(c["ci_low"])
    assert row["sources"] == 3 and row["subset_seeds"] == 3
    d = ist.robust_minus_natural(studies, "A", "top1")
    expected = stats.ci((m - ist.share_matrix(fake["natural"], "top1")).to_numpy())
    assert d == pytest.approx((expected["mean"], expected["ci_low"], expected["ci_high"]))
    # the nearest-neighbour baseline: nn_order column 0 is training image 0 (label 0)
    nn1 = ist.per_test(fake["robust"][0], "nn1")
    np.testing.assert_array_equal(nn1, (fake["robust"][0].y_test == 0).astype(float))
    with pytest.raises(ValueError, match="metric='top9'"):
        ist.per_test(fake["robust"][0], "top9")


def test_summary_and_headline_verdict_rule(monkeypatch):
    """The verdict rests on the pre-specified comparison: fine-tuned setting, first target,
    crossed-seed CI of the paired top-1 difference; other targets only in the detail."""
    from robust_transfer.chapters import ch04_influence as ch
    rng = np.random.default_rng(0)
    good, bad = _fake_target(rng, 0.95, 0.3), _fake_target(rng, 0.5, 0.5)
    worse = _fake_target(rng, 0.2, 0.8)
    studies = {("natural", "A"): good["natural"], ("robust", "A"): good["robust"]}
    table = ist.summary(studies).set_index("kind")
    assert table.loc["robust", "top1"] > 85 and table.loc["natural", "top1"] < 45
    assert table.loc["robust", "paper_top1"] == 78.61
    h = ch.headline(studies)
    assert h["verdict"] == "reproduced" and h["target"] == "A"
    assert h["top1_diff_lo"] > 0 and h["paper_top1_robust"] == 78.61
    assert h["paper_top1_natural"] == 55.08 and h["pairs"] == 9 and h["pairs_positive"] == 9
    assert h["top1_robust"] == pytest.approx(table.loc["robust", "top1"])
    assert h["auc_matched_diff_lo"] > 0 and h["part_A_auc_matched_label"] == "holds"
    assert h["auc_matched_robust"] == pytest.approx(table.loc["robust", "auc_matched"])
    assert "survives loss matching" in h["matching"]
    assert h["top1_diff"] == pytest.approx(h["top1_robust"] - h["top1_natural"])
    assert all(isinstance(v, (float, str)) for v in h.values()), h
    studies.update({("natural", "B"): bad["natural"], ("robust", "B"): bad["robust"]})
    h2 = ch.headline(studies)
    assert h2["verdict"] == "reproduced" and "B:" in h2["verdict_detail"]
    only_b = {k: v for k, v in studies.items() if k[1] == "B"}
    assert ch.headline(only_b)["verdict"] == "not reproduced"
    assert ch.headline({("natural", "C"): worse["natural"],
                        ("robust", "C"): worse["robust"]})["verdict"] == "contradicted"
    assert ch.headline({})["verdict"] == "not tested"
    monkeypatch.setattr(ch, "_labels", lambda st: {"natural": "Natural", "robust": "L2"})
    text = ch.findings({"finetuned": studies})
    assert "78.61" in text and "nearest training image" in text and "loss-matched" in text
    comp = ch.comparison(studies)
    assert list(comp.columns) == ["natural", "robust", "robust - natural"]
    assert len(comp) == 2 * len(ch.COMPARED) and "[" in comp.iloc[0]["robust - natural"]
