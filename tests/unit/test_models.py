"""BlockNet: one meaning of "k unfrozen blocks", prefix/suffix split, input conversion."""
import pytest
import torch

from robust_transfer import data, models


@pytest.mark.parametrize("arch,blocks", [("resnet8", 3), ("resnet20", 9), ("resnet50", 16)])
def test_prefix_then_suffix_is_the_forward_for_every_k(arch, blocks):
    torch.manual_seed(0)
    channels, size = (1, 28) if arch.startswith("resnet8") or arch == "resnet20" else (3, 64)
    net = models.build(arch, 10, channels).eval()
    assert net.num_blocks == blocks
    x = torch.rand(2, channels, size, size)
    with torch.no_grad():
        full = net(x)
        for k in range(blocks + 1):
            assert torch.allclose(net.suffix(net.prefix(x, k), k), full, atol=1e-5), k
    assert len(net.trainable_modules(3)) == 4     # the last 3 blocks and the head
    with pytest.raises(ValueError, match=f"unfrozen_blocks={blocks + 1}"):
        net.prefix(x, blocks + 1)


def test_input_format_converts_each_batch():
    torch.manual_seed(0)
    net = models.build("resnet8", 10, 1).eval()
    rgb = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        expected = net(data.to_source_format(rgb, 1, 28))
        with pytest.raises(RuntimeError):
            net(rgb)                              # 3 channels into a 1-channel stem
        net.input_format = (1, 28)
        assert torch.allclose(net(rgb), expected, atol=1e-6)


def test_torchvision_archs_need_rgb():
    with pytest.raises(ValueError, match="in_channels=1"):
        models.build("resnet18", 10, 1)
