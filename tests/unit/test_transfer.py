"""Fine-tuning engine: fast path == plain path, subsets, frozen layers, feature cache."""
import dataclasses

import numpy as np
import pytest
import torch

from robust_transfer import data, models, transfer
from robust_transfer.config import Config


@pytest.fixture(scope="module")
def digits():
    x_tr, y_tr, _ = data.load("digits", "train")
    x_te, y_te, _ = data.load("digits", "test")
    return x_tr[:500], y_tr[:500], x_te[:150], y_te[:150]


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    return models.build("resnet8", 10, 1).eval()


def _cfg(**kw):
    return dataclasses.replace(Config(), **{**dict(epochs=3, val_size=50, batch_size=16), **kw})


def _split(y, n, seed=0, val_size=50):
    return data.train_subset(y, n, val_size, seed)


def test_subsets_are_nested_class_covering_and_disjoint_from_validation(digits):
    _, y, _, _ = digits
    for seed in (0, 1):
        subs = [_split(y, n, seed) for n in (10, 40, 160)]
        val = subs[0][1]
        for (a, _), (b, _) in zip(subs, subs[1:]):
            assert set(a) <= set(b)
        for sub, _ in subs:
            assert len(set(y[sub].tolist())) == 10
            assert not set(sub) & set(val)
    assert set(_split(y, 40, 0)[0]) != set(_split(y, 40, 1)[0])


@pytest.mark.parametrize("k", [0, 1])
def test_fast_path_equals_plain_path(digits, source, k):
    x_tr, y_tr, x_te, y_te = digits
    sub, val = _split(y_tr, 30)
    cfg = _cfg()
    fast = transfer.finetune(source, x_tr, y_tr, sub, val, x_te, y_te, k, cfg, 0,
                             num_classes=10, fast=True, feature_key=("standin", "digits"))
    plain = transfer.finetune(source, x_tr, y_tr, sub, val, x_te, y_te, k, cfg, 0,
                              num_classes=10, fast=False)
    assert fast["fast_path"] and not plain["fast_path"]
    assert fast["test_acc"] == plain["test_acc"]
    assert fast["best_epoch"] == plain["best_epoch"]
    np.testing.assert_allclose(fast["val_curve"], plain["val_curve"])
    np.testing.assert_allclose(fast["train_loss_curve"], plain["train_loss_curve"], rtol=1e-4)
    assert len(fast["val_curve"]) == cfg.epochs + 1


def test_source_model_is_untouched_and_deterministic(digits, source):
    x_tr, y_tr, x_te, y_te = digits
    sub, val = _split(y_tr, 20)
    before = {k: v.clone() for k, v in source.state_dict().items()}
    a = transfer.finetune(source, x_tr, y_tr, sub, val, x_te, y_te, 1, _cfg(), 3, num_classes=10)
    b = transfer.finetune(source, x_tr, y_tr, sub, val, x_te, y_te, 1, _cfg(), 3, num_classes=10)
    assert a == b
    for k, v in source.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert 0 <= a["test_acc"] <= 100 and 0 <= a["best_epoch"] <= 3


def test_logistic_regression_head_beats_chance_at_epoch_zero(digits, source):
    x_tr, y_tr, x_te, y_te = digits
    sub, val = _split(y_tr, 200)
    r = transfer.finetune(source, x_tr, y_tr, sub, val, x_te, y_te, 0, _cfg(), 0, num_classes=10)
    assert r["val_curve"][0] > 30  # chance is 10 %
    assert r["val_acc"] == max(r["val_curve"])


def test_fast_path_refused_when_inexact(digits, source):
    x_tr, y_tr, x_te, y_te = digits
    sub, val = _split(y_tr, 20)
    assert not transfer.use_fast_path(_cfg(augment=True))
    assert not transfer.use_fast_path(_cfg(frozen_bn="train"))
    with pytest.raises(ValueError, match="fast=True"):
        transfer.finetune(source, x_tr, y_tr, sub, val, x_te, y_te, 0, _cfg(augment=True), 0,
                          num_classes=10, fast=True)
    for cfg in (_cfg(augment=True, epochs=1), _cfg(frozen_bn="train", epochs=1)):
        r = transfer.finetune(source, x_tr, y_tr, sub, val, x_te, y_te, 1, cfg, 0, num_classes=10)
        assert not r["fast_path"] and len(r["val_curve"]) == 2


def test_prefix_features_cached_float32_and_reused(digits, source, tmp_path, monkeypatch):
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path))
    x = digits[0][:64]
    f1 = transfer.prefix_features(source, x, 1, ("src/a", "digits", "train"))
    files = list((tmp_path / "features").rglob("*.safetensors"))
    assert len(files) == 1 and f1.dtype == torch.float32
    assert torch.equal(f1, source.prefix(x, 1))
    transfer._read_features.cache_clear()            # read back from disk, not from memory
    monkeypatch.setattr(transfer, "_prefix", lambda *a: pytest.fail("recomputed a cached prefix"))
    f2 = transfer.prefix_features(source, x, 1, ("src/a", "digits", "train"))
    assert torch.equal(f1, f2) and f2 is not f1
    monkeypatch.undo()
    monkeypatch.setenv("RT_CACHE_DIR", str(tmp_path))
    other = models.build("resnet8", 10, 1).eval()  # other weights -> other file
    transfer.prefix_features(other, x, 1, ("src/a", "digits", "train"))
    assert len(list((tmp_path / "features").rglob("*.safetensors"))) == 2


def test_run_end_to_end_with_zoo_spec(source, monkeypatch):
    from robust_transfer import zoo
    calls = []

    def fake_load(source_id, **kw):
        calls.append(source_id)
        return source, {}

    monkeypatch.setattr(zoo, "load", fake_load)
    cfg = _cfg(val_size=50)
    r = transfer.run("tiny/fmnist/l2/1.0/s1", "digits", 16, 0, 0, cfg)
    assert calls == ["tiny/fmnist/l2/1.0/s1"]
    assert (r["family"], r["norm"], r["eps"], r["source_seed"]) == ("tiny/fmnist/l2/1.0", "l2", 1.0, 1)
    assert r["n_val"] == 50 and r["n_test"] == data.info("digits").test_size
    assert r["seconds"] > 0 and r["fast_path"]
    again = transfer.run("tiny/fmnist/l2/1.0/s1", "digits", 16, 0, 0, cfg, model=source)
    assert len(calls) == 1 and again["test_acc"] == r["test_acc"]
