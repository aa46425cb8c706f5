"""Source architectures with one shared notion of "blocks".

Every model here is a :class:`BlockNet`: images in [0, 1] -> per-channel normalisation
(inside the model) -> ``stem`` -> residual ``blocks`` in order -> global average pool ->
linear ``head``. "k unfrozen blocks" always means: the last k residual blocks plus the head
are trained, everything before is frozen (k = 0: head only). For torchvision's ResNet-50 the
blocks are its 16 bottlenecks, so the paper's settings 1 / 3 / 9 are the last bottleneck,
all of layer4, and layer4 + layer3.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .data import to_source_format

__all__ = ["BlockNet", "BasicBlock", "resnet_mini", "torchvision_resnet", "build", "ARCHS"]


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` with the statistics stored as buffers."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class BlockNet(nn.Module):
    """normalise -> stem -> blocks -> global average pool -> head (logits)."""

    def __init__(self, stem: nn.Module, blocks, head: nn.Linear, mean, std):
        super().__init__()
        #: (channels, size) the source expects, or None; when set, other images are converted
        #: batch by batch on the way in (``data.to_source_format``), so a target never has to
        #: be materialised at the source's resolution
        self.input_format: tuple[int, int] | None = None
        self.normalize = Normalize(mean, std)
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.head = head

    @property
    def num_blocks(self) -> int:
        """Number of residual blocks (the largest allowed ``unfrozen_blocks``)."""
        return len(self.blocks)

    def prefix(self, x: torch.Tensor, unfrozen_blocks: int) -> torch.Tensor:
        """Activations entering the last ``unfrozen_blocks`` blocks (the frozen part's output).

        For ``unfrozen_blocks == 0`` these are the pooled features, shape (N, head.in_features).
        """
        self._check_k(unfrozen_blocks)
        if self.input_format is not None:
            x = to_source_format(x, *self.input_format)
        h = self.stem(self.normalize(x))
        for block in self.blocks[: self.num_blocks - unfrozen_blocks]:
            h = block(h)
        return self.pool(h) if unfrozen_blocks == 0 else h

    def suffix(self, h: torch.Tensor, unfrozen_blocks: int) -> torch.Tensor:
        """Logits from :meth:`prefix` activations: the last ``unfrozen_blocks`` blocks, pool, head."""
        self._check_k(unfrozen_blocks)
        if unfrozen_blocks > 0:
            for block in self.blocks[self.num_blocks - unfrozen_blocks:]:
                h = block(h)
            h = self.pool(h)
        return self.head(h)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features, shape (N, head.in_features)."""
        return self.prefix(x, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def trainable_modules(self, unfrozen_blocks: int) -> list[nn.Module]:
        """The modules that "k unfrozen blocks" trains: the last k blocks and the head."""
        self._check_k(unfrozen_blocks)
        return [*self.blocks[self.num_blocks - unfrozen_blocks:], self.head]

    @staticmethod
    def pool(h: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)

    def _check_k(self, k: int) -> None:
        if not 0 <= k <= self.num_blocks:
            raise ValueError(f"unfrozen_blocks={k} is out of range; allowed 0..{self.num_blocks} "
                             f"for this architecture")


class BasicBlock(nn.Module):
    """The CIFAR-style ResNet basic block (two 3x3 convs, BN, identity or 1x1 shortcut)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def resnet_mini(num_classes: int = 10, in_channels: int = 1, widths=(16, 32, 64),
                blocks_per_stage: int = 1, mean=None, std=None) -> BlockNet:
    """Small CIFAR-style ResNet: 3x3 stem + 3 stages (strides 1, 2, 2) of basic blocks.

    ``blocks_per_stage=1`` with widths (16, 32, 64) is a ResNet-8; 3 gives a ResNet-20.
    """
    mean = mean if mean is not None else [0.5] * in_channels
    std = std if std is not None else [0.25] * in_channels
    stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                         nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
    blocks, in_ch = [], widths[0]
    for stage, width in enumerate(widths):
        for i in range(blocks_per_stage):
            blocks.append(BasicBlock(in_ch, width, 2 if (stage > 0 and i == 0) else 1))
            in_ch = width
    return BlockNet(stem, blocks, nn.Linear(in_ch, num_classes), mean, std)


IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def torchvision_resnet(name: str = "resnet50", num_classes: int = 1000,
                       mean=IMAGENET_MEAN, std=IMAGENET_STD) -> BlockNet:
    """torchvision ResNet-18/50 (random init) re-wrapped as a :class:`BlockNet`.

    Parameter names follow ``stem.{0,1}`` (conv1, bn1), ``blocks.{i}`` (layer1..layer4 flattened)
    and ``head`` (fc); :func:`robust_transfer.checkpoints` maps torchvision keys onto these.
    """
    import torchvision   # here, not at import: 1.3 s every notebook kernel would pay
    net = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    blocks = [b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer]
    return BlockNet(stem, blocks, net.fc, mean, std)


ARCHS = {
    "resnet8": lambda k, c, **norm: resnet_mini(k, c, blocks_per_stage=1, **norm),
    "resnet20": lambda k, c, **norm: resnet_mini(k, c, blocks_per_stage=3, **norm),
    "resnet18": lambda k, c, **norm: torchvision_resnet("resnet18", k, **norm),
    "resnet50": lambda k, c, **norm: torchvision_resnet("resnet50", k, **norm),
}


def build(arch: str, num_classes: int, in_channels: int = 3, **norm) -> BlockNet:
    """A freshly initialised model of architecture ``arch`` (one of :data:`ARCHS`).

    ``norm`` may give the input normalisation ``mean`` and ``std`` (per channel, [0,1] units).
    """
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r} is unknown; allowed: {sorted(ARCHS)}")
    if arch in ("resnet18", "resnet50") and in_channels != 3:
        raise ValueError(f"in_channels={in_channels} is not allowed for {arch}; allowed: 3 "
                         f"(grey images are repeated to RGB by data.to_source_format)")
    return ARCHS[arch](num_classes, in_channels, **norm)
