"""Source training: learns, is deterministic per seed, adversarial training buys robustness."""
import pytest
import torch

from robust_transfer import models, train

torch.set_num_threads(1)


def _data(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.6 + 0.2
    y = (x[:, 0, :, :4].mean((1, 2)) > x[:, 0, :, 4:].mean((1, 2))).long()
    x[:, 0, :, :4] += 0.15 * (2 * y.view(-1, 1, 1) - 1)  # widen the margin a little
    return x.clamp(0, 1), y


def _model(seed):
    torch.manual_seed(seed)
    return models.build("resnet8", 2, 1)


@pytest.fixture(scope="module")
def data():
    return _data(512, 0), _data(256, 1)


def test_natural_training_learns_and_is_seeded(data):
    (x, y), (xt, yt) = data
    m0 = _model(0)
    before = train.evaluate(m0, xt, yt)
    recipe = train.train_source(m0, x, y, norm="natural", epochs=3, batch_size=64, lr=0.05,
                                seed=0, progress=False)
    after = train.evaluate(m0, xt, yt)
    assert after > 0.9 and after > before
    assert not m0.training
    assert recipe["train_seconds"] > 0 and recipe["norm"] == "natural" and recipe["seed"] == 0
    again = _model(0)
    train.train_source(again, x, y, norm="natural", epochs=3, batch_size=64, lr=0.05, seed=0,
                       progress=False)
    for a, b in zip(m0.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b), "same seed must give the same weights"
    other = _model(1)
    train.train_source(other, x, y, norm="natural", epochs=3, batch_size=64, lr=0.05, seed=1,
                       progress=False)
    assert not torch.equal(other.head.weight, m0.head.weight)


def test_adversarial_training_is_more_robust(data):
    (x, y), (xt, yt) = data
    nat, adv, noise = _model(0), _model(0), _model(0)
    kw = dict(epochs=3, batch_size=64, lr=0.05, seed=0, progress=False)
    train.train_source(nat, x, y, norm="natural", **kw)
    r = train.train_source(adv, x, y, norm="linf", eps=0.1, steps=3, **kw)
    assert r["steps"] == 3 and r["eps"] == 0.1
    train.train_source(noise, x, y, norm="noise", eps=0.1, **kw)
    rob = {name: train.evaluate(m, xt, yt, norm="linf", eps=0.1, steps=10)
           for name, m in (("nat", nat), ("adv", adv))}
    assert rob["adv"] > rob["nat"] + 0.1, rob
    for m in (nat, adv, noise):
        assert train.evaluate(m, xt, yt, norm="linf", eps=0.1) <= train.evaluate(m, xt, yt) + 0.02
    assert train.evaluate(noise, xt, yt) > 0.8


def test_robust_accuracies_shape(data):
    (x, y), (xt, yt) = data
    m = _model(0)
    out = train.robust_accuracies(m, xt[:64], yt[:64], {"l2": (0.5, 1.0), "linf": (0.1,)},
                                  steps=2)
    assert set(out) == {"clean_acc", "robust_acc"}
    assert set(out["robust_acc"]["l2"]) == {0.5, 1.0} and set(out["robust_acc"]["linf"]) == {0.1}
    assert all(0 <= v <= 1 for d in out["robust_acc"].values() for v in d.values())


@pytest.mark.parametrize("kwargs,match", [
    (dict(norm="adv"), "norm"),
    (dict(norm="natural", eps=0.5), "eps"),
    (dict(norm="l2", eps=-1.0), "eps"),
    (dict(norm="l2", eps=1.0, steps=0), "steps"),
    (dict(epochs=0), "epochs"),
    (dict(lr=0), "lr"),
])
def test_bad_arguments(data, kwargs, match):
    (x, y), _ = data
    with pytest.raises(ValueError, match=match):
        train.train_source(_model(0), x, y, progress=False, **kwargs)
    with pytest.raises(ValueError, match="norm"):
        train.evaluate(_model(0), x, y, norm="l1", eps=1.0)


def test_progress_bar_follows_the_progress_switch(monkeypatch, capsys):
    x, y = _data(64, 0)
    monkeypatch.setenv("RT_PROGRESS", "0")
    train.train_source(_model(0), x, y, epochs=1, batch_size=32, seed=0)
    assert "train natural" not in capsys.readouterr().err
    monkeypatch.setenv("RT_PROGRESS", "1")
    train.train_source(_model(0), x, y, epochs=1, batch_size=32, seed=0)
    assert "train natural" in capsys.readouterr().err
