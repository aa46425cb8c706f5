"""Our checkpoint format (round trip, corruption) and robustness-format / torchvision import."""
import argparse

import dill
import pytest
import torch
import torchvision

from robust_transfer import checkpoints, models

torch.set_num_threads(1)


def _trained_looking(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point() and not name.startswith("normalize"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1 + (1.0 if "running_var" in name else 0))
    return model


@pytest.fixture
def saved(tmp_path):
    model = _trained_looking(models.build("resnet8", 10, 1, mean=[0.3], std=[0.4])).eval()
    meta = dict(arch="resnet8", num_classes=10, in_channels=1, norm="l2", eps=1.0,
                robust_acc={0.5: 0.7}, recipe={"epochs": 2})
    stored = checkpoints.save(tmp_path / "src", model, meta)
    return model, stored, tmp_path / "src"


def test_round_trip(saved):
    model, stored, path = saved
    assert checkpoints.exists(path)
    loaded, meta = checkpoints.load(path)
    assert not loaded.training
    assert meta["sha256"] == stored["sha256"] and len(meta["sha256"]) == 64
    assert meta["eps"] == 1.0 and meta["recipe"] == {"epochs": 2}
    assert meta["robust_acc"] == {"0.5": 0.7}  # JSON keys are strings
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert torch.allclose(loaded.normalize.mean.flatten(), torch.tensor([0.3]))


def test_save_needs_rebuild_fields(tmp_path):
    with pytest.raises(ValueError, match="arch"):
        checkpoints.save(tmp_path / "x", models.build("resnet8", 10, 1), {"norm": "l2"})


@pytest.mark.parametrize("damage", ["truncate", "flip", "bad_json", "missing"])
def test_corrupt_files_are_refused(saved, damage):
    _, _, path = saved
    weights, meta = path.with_name("src.safetensors"), path.with_name("src.json")
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "flip":
        raw = bytearray(weights.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        weights.write_bytes(bytes(raw))
    elif damage == "bad_json":
        meta.write_text(meta.read_text()[:20])
    else:
        weights.unlink()
    with pytest.raises(checkpoints.CheckpointError, match="src"):
        checkpoints.load(path)


def _tv_resnet18():
    torch.manual_seed(0)
    net = _trained_looking(torchvision.models.resnet18(weights=None, num_classes=10))
    return net.eval()


def _robustness_dict(net, mean, std, extra=None):
    sd = {}
    for k, v in net.state_dict().items():
        sd["module.model." + k] = v
        sd["module.attacker.model." + k] = v
    sd["module.normalizer.new_mean"] = torch.tensor(mean).view(3, 1, 1)
    sd["module.normalizer.new_std"] = torch.tensor(std).view(3, 1, 1)
    sd["module.attacker.normalize.new_mean"] = torch.tensor(mean).view(3, 1, 1)
    return {"model": sd, "epoch": 90, **(extra or {})}


def _same_outputs(block_net, tv_net, mean, std):
    x = torch.rand(2, 3, 64, 64)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return torch.allclose(block_net(x), tv_net((x - m) / s), atol=1e-5)


def test_import_plain_robustness_file(tmp_path):
    net, mean, std = _tv_resnet18(), [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    path = tmp_path / "plain.pt"
    torch.save(_robustness_dict(net, mean, std), path)
    obj = checkpoints.read_torch_file(path)  # safe load works: no pin needed
    model = checkpoints.import_torchvision_resnet(obj, "resnet18")
    assert model.num_blocks == 8 and model.head.out_features == 10
    assert _same_outputs(model, net, mean, std)


def test_import_plain_torchvision_state_dict(tmp_path):
    net = _tv_resnet18()
    path = tmp_path / "tv.pth"
    torch.save(net.state_dict(), path)
    model = checkpoints.import_torchvision_resnet(checkpoints.read_torch_file(path), "resnet18")
    assert _same_outputs(model, net, models.IMAGENET_MEAN, models.IMAGENET_STD)


def test_robustness_dill_file_loads_safely_without_a_pin(tmp_path):
    net, mean, std = _tv_resnet18(), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    path = tmp_path / "madry.pt"
    obj = _robustness_dict(net, mean, std, {"args": argparse.Namespace(arch="resnet18", eps=3.0)})
    torch.save(obj, path, pickle_module=dill)
    loaded = checkpoints.read_torch_file(path)          # weights_only=True + argparse.Namespace
    assert loaded["args"].eps == 3.0
    model = checkpoints.import_torchvision_resnet(loaded, "resnet18")
    assert _same_outputs(model, net, mean, std)


def test_code_carrying_pickle_needs_a_pin(tmp_path):
    from fractions import Fraction
    net, mean, std = _tv_resnet18(), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    path = tmp_path / "madry.pt"
    obj = _robustness_dict(net, mean, std, {"args": Fraction(3)})  # not allowlisted
    torch.save(obj, path, pickle_module=dill)
    with pytest.raises(checkpoints.CheckpointError, match="not pinned"):
        checkpoints.read_torch_file(path)
    with pytest.raises(checkpoints.CheckpointError, match="differs from the pinned"):
        checkpoints.read_torch_file(path, pinned_sha256="0" * 64)
    from robust_transfer.cache import sha256_file
    loaded = checkpoints.read_torch_file(path, pinned_sha256=sha256_file(path))
    assert loaded["args"] == 3


def test_strict_key_check():
    net = _tv_resnet18()
    sd = dict(net.state_dict())
    del sd["layer4.1.conv2.weight"]
    with pytest.raises(checkpoints.CheckpointError, match="missing keys.*blocks.7.conv2.weight"):
        checkpoints.import_torchvision_resnet(sd, "resnet18")
    sd = dict(net.state_dict(), **{"extra.weight": torch.zeros(1)})
    with pytest.raises(checkpoints.CheckpointError, match="unexpected keys.*extra.weight"):
        checkpoints.import_torchvision_resnet(sd, "resnet18")
    with pytest.raises(checkpoints.CheckpointError, match="missing keys"):
        checkpoints.import_torchvision_resnet(net.state_dict(), "resnet50")


def test_key_mapping():
    sd = {"conv1.weight": 0, "bn1.bias": 1, "layer1.0.conv1.weight": 2, "layer1.1.bn2.bias": 3,
          "layer2.0.downsample.0.weight": 4, "layer4.1.conv2.weight": 5, "fc.weight": 6}
    out = checkpoints.torchvision_to_blocknet(sd)  # layer1: 2 blocks, layer2: 1, layer4: 2
    assert out == {"stem.0.weight": 0, "stem.1.bias": 1, "blocks.0.conv1.weight": 2,
                   "blocks.1.bn2.bias": 3, "blocks.2.downsample.0.weight": 4,
                   "blocks.4.conv2.weight": 5, "head.weight": 6}
