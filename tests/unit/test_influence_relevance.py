"""Issue 21 item 4, statistics that measure relevance: the per-test same-class AUC, loss-matched
heads, the NN-adjusted share and the authors' computation, on planted problems whose answers are
known; Section 3's record and the chapter's words from its labels."""
import dataclasses

import numpy as np
import pytest
import torch

from robust_transfer import claims, config
from robust_transfer import influence as inf
from robust_transfer import influence_study as ist

torch.set_num_threads(1)


def _clusters(seed, n=200, n_test=60, C=4, d=6, spread=0.3):
    """A separable head problem: tight clusters around C orthogonal-ish class means."""
    rng = np.random.default_rng(seed)
    mu = 3 * rng.normal(size=(C, d))
    y, yt = np.arange(n) % C, np.arange(n_test) % C
    return (mu[y] + spread * rng.normal(size=(n, d)), y,
            mu[yt] + spread * rng.normal(size=(n_test, d)), yt)


# ------------------------------------------------------------------------------ the AUC
def test_auc_is_the_pairwise_probability_with_ties_one_half():
    rng = np.random.default_rng(0)
    I = rng.integers(0, 4, size=(7, 12)).astype(float)        # many ties
    y_train, y_test = np.arange(12) % 3, np.arange(7) % 3
    auc = inf.auc_same_class(I, y_test, y_train)
    for t in range(7):
        pos, neg = I[t, y_train == y_test[t]], I[t, y_train != y_test[t]]
        brute = ((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean()
        assert auc[t] == pytest.approx(brute)
    with pytest.raises(ValueError, match="same-class"):
        inf.auc_same_class(I[:, :3], y_test, np.array([0, 0, 0]))


def test_auc_on_a_planted_head_problem_and_shuffled_labels():
    """Separable clusters: same-class training images are the helpful ones -> AUC near 1 (the
    top-1 share is 1 too); the same influence against shuffled training labels -> about 0.5."""
    X, y, Xt, yt = _clusters(0)
    theta = inf.fit_head(X, y, 1e-2)
    I = inf.influence(X, y, Xt, yt, theta, 1e-2)
    auc = inf.auc_same_class(I, yt, y)
    assert auc.mean() > 0.97 and auc.min() > 0.8
    shuffled = inf.auc_same_class(I, yt, np.random.default_rng(1).permutation(y))
    assert abs(shuffled.mean() - 0.5) < 0.05
    # chance is 0.5 whatever the class count: random influence on 2 and on 10 classes
    rng = np.random.default_rng(2)
    for C in (2, 10):
        R = rng.normal(size=(300, 400))
        assert abs(inf.auc_same_class(R, np.arange(300) % C, np.arange(400) % C).mean()
                   - 0.5) < 0.01


# ------------------------------------------------------------------------------ loss matching
def test_match_loss_reaches_the_target_and_the_penalty_is_monotone():
    X, y, _, _ = _clusters(3, spread=1.5)
    base = float(inf.losses(X, y, inf.fit_head(X, y, 1e-3)).mean())
    l2s = []
    for target in (0.5 * base, base, 2 * base, 8 * base):
        l2, theta, loss = inf.match_loss(X, y, target, 1e-3)
        assert loss == pytest.approx(target, rel=1e-3)
        assert loss == pytest.approx(inf.losses(X, y, theta).mean())
        np.testing.assert_allclose(theta, inf.fit_head(X, y, l2), atol=1e-6)   # its optimum
        l2s.append(l2)
    assert l2s[1] == pytest.approx(1e-3)            # the start already matches
    assert np.all(np.diff(l2s) > 0)                 # more loss, more penalty
    again = inf.match_loss(X, y, 2 * base, 1e-3)
    assert again[0] == l2s[2] and np.array_equal(again[1], inf.match_loss(X, y, 2 * base, 1e-3)[1])
    # out of reach: the loss cannot exceed log C (the zero head) -> the upper bound, said so
    l2, _, loss = inf.match_loss(X, y, 2 * np.log(4), 1e-3, bounds=(1e-6, 1e2))
    assert l2 == pytest.approx(1e2) and loss < 2 * np.log(4)
    with pytest.raises(ValueError, match="target="):
        inf.match_loss(X, y, -1.0, 1e-3)
    with pytest.raises(ValueError, match="l2_start="):
        inf.match_loss(X, y, base, 1e-9)


def _study(X, y, Xt, yt, source, seed, l2=1e-3):
    theta = inf.fit_head(X, y, l2)
    I = inf.influence(X, y, Xt, yt, theta, l2)
    n, n_test = len(y), len(yt)
    return ist.Study(I=I, I_authors=I, images_train=np.zeros((n, 1, 2, 2), np.uint8),
                     images_test=np.zeros((n_test, 1, 2, 2), np.uint8), y_train=y, y_test=yt,
                     train_idx=np.arange(n), test_idx=np.arange(n_test), test_acc=0.5,
                     loo_test=0, loo_train=np.arange(2), loo_actual=I[:, :2], loo_pred=I[:, :2],
                     meta=dict(source=source, target="t", class_names=list("abcd"), l2=l2, n=n,
                               seed=seed, setting="finetuned", key=f"{source}-{seed}",
                               train_loss=float(inf.losses(X, y, theta).mean())),
                     nn_order=np.tile(np.arange(ist.NN_K), (n_test, 1)), X_train=X, X_test=Xt,
                     I_authors_head=I)


def test_match_losses_gives_every_head_the_natural_mean_loss(tmp_path, monkeypatch):
    """One target per target (the natural studies' mean training loss at the default penalty);
    a worse-fitting family gets a smaller penalty; cached; the matched metrics read it."""
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path))
    studies = {("natural", "t"): [_study(*_clusters(s, spread=0.7), f"nat{s}", 0) for s in (0, 1)],
               ("robust", "t"): [_study(*_clusters(s, spread=1.3), f"rob{s}", 0) for s in (0, 5)]}
    target = ist.loss_target(studies, "t")
    assert target == pytest.approx(np.mean([s.meta["train_loss"] for s in studies[("natural", "t")]]))
    assert np.isnan(ist.per_test(studies[("robust", "t")][0], "auc_matched")).all()
    out = ist.match_losses(studies)
    for kind, ss in out.items():
        for s in ss:
            assert s.matched["loss"] == pytest.approx(target, rel=1e-3)
            assert s.matched["target"] == target and s.I_matched.shape == s.I.shape
    assert all(s.meta["train_loss"] > target for s in out[("robust", "t")])   # fit worse ...
    assert all(s.matched["l2"] < 1e-3 for s in out[("robust", "t")])          # ... less penalty
    row = ist.summary(out).set_index("kind")
    assert row.loc["robust", "loss_matched"] == pytest.approx(target, rel=1e-3)
    assert 50 < row.loc["robust", "auc_matched"] <= 100
    monkeypatch.setattr(ist, "match_loss", lambda *a, **k: pytest.fail("cache not used"))
    again = ist.match_losses(studies)
    np.testing.assert_array_equal(again[("robust", "t")][1].I_matched,
                                  out[("robust", "t")][1].I_matched)


def test_nn_adjusted_is_top1_minus_nn1():
    s = _study(*_clusters(0), "a", 0)
    np.testing.assert_array_equal(ist.per_test(s, "top1_nn_adjusted"),
                                  ist.per_test(s, "top1") - ist.per_test(s, "nn1"))
    assert ist.share_matrix([s], "top1_nn_adjusted").iloc[0, 0] == pytest.approx(
        ist.share_matrix([s], "top1").iloc[0, 0] - ist.share_matrix([s], "nn1").iloc[0, 0])


def test_authors_head_is_their_recipe_not_an_optimum():
    """transfer.RECIPES["authors"]'s head and steps on raw features: deterministic per seed,
    it learns the planted classes, and it is the last SGD iterate, not the L2 optimum."""
    X, y, Xt, yt = _clusters(0)
    cfg = dataclasses.replace(config.resolve("tiny"), epochs=6, batch_size=32)
    theta = ist.authors_head(X, y, 4, cfg, seed=0)
    assert theta.shape == (4, X.shape[1] + 1) and theta.dtype == np.float64
    np.testing.assert_array_equal(theta, ist.authors_head(X, y, 4, cfg, seed=0))
    assert not np.array_equal(theta, ist.authors_head(X, y, 4, cfg, seed=1))
    assert (inf.probabilities(Xt, theta).argmax(1) == yt).mean() > 0.9
    grad = inf.objective(theta.ravel(), X, y, 5e-4)[1]
    assert np.abs(grad).max() > 1e-6


# ------------------------------------------------------------------------------ Section 3
def _ci(mean, low, high):
    return dict(mean=mean, ci_low=low, ci_high=high, ci_basis="source+subset seeds",
                n_source_seeds=6, n_subset_seeds=3)


@pytest.mark.parametrize("primary,label,verdict", [
    ((4.0, 1.0, 7.0), claims.HOLDS, "reproduced"),
    ((4.0, -0.5, 8.5), claims.UNDECIDED, "not reproduced"),   # mean > 0: a point-estimate rule says holds
    ((-4.0, -7.0, -1.0), claims.CONTRADICTED, "contradicted"),
    ((-4.0, -8.5, 0.5), claims.UNDECIDED, "not reproduced"),
])
def test_section3_label_comes_from_the_primary_interval_only(monkeypatch, primary, label, verdict):
    """The AUC on loss-matched heads is the one counted part; every other statistic is a
    control and cannot move the claim's label however clear its interval."""
    controls = _ci(9.0, 5.0, 13.0) if label != claims.HOLDS else _ci(-9.0, -13.0, -5.0)
    monkeypatch.setattr(ist, "robust_minus_natural", lambda studies, t, metric, full: (
        _ci(*primary) if metric == "auc_matched" else controls))
    c = claims.section3({("natural", "textures"): [], ("robust", "textures"): []})
    parts = {p.key: p for p in c.parts}
    assert list(parts) == ["textures_auc_matched", "textures_top1", "textures_top1_matched",
                           "textures_top1_nn_adjusted", "textures_auc", "textures_top1_authors"]
    assert [p.role for p in c.parts] == ["test"] + ["control"] * 5
    assert parts["textures_auc_matched"].label == label and c.label == verdict
    assert parts["textures_top1"].paper == pytest.approx(78.61 - 55.08)
    assert np.isnan(parts["textures_auc_matched"].paper)
    # the old record (influence/textures_top1) names no new part
    assert "influence/textures_auc_matched" not in claims.replication("mini").get("parts", {})


def test_matching_text_says_when_the_advantage_disappears(monkeypatch):
    from robust_transfer.chapters import ch04_influence as ch
    cis = {"top1": _ci(5.0, 2.0, 8.0), "top1_matched": _ci(1.0, -2.0, 4.0),
           "auc": _ci(3.0, 1.0, 5.0), "auc_matched": _ci(2.0, 0.5, 3.5)}
    monkeypatch.setattr(ist, "robust_minus_natural",
                        lambda studies, t, metric, full: cis.get(metric, _ci(0.0, -1.0, 1.0)))
    c = claims.section3({("natural", "textures"): [], ("robust", "textures"): []})
    text = ch.matching_text(c, "textures")
    assert "advantage in the top-1 share disappears when the heads are loss-matched" in text
    assert "advantage in the AUC survives loss matching" in text
    cis["auc_matched"] = _ci(-2.0, -3.5, -0.5)
    text = ch.matching_text(claims.section3({("natural", "textures"): [],
                                             ("robust", "textures"): []}), "textures")
    assert "AUC disappears and reverses" in text and "natural ahead" in text
    assert ch.matching_text(None, "textures") == ""
