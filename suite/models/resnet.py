"""The classic baselines' CNN backbones: images (B, C, H, W) -> features (B, out_dim).

Registered by name in BACKBONE_BUILDERS, each with plain constructor arguments:

- `cifar_resnet32`: the CIFAR ResNet-32 of PyCIL's protocol (He et al.'s CIFAR design): a 3x3
  stem of 16 channels, three stages of five basic blocks (16, 32, 64 channels), parameter-free
  shortcuts where the shape changes (stride-2 subsampling, the new channels zero: "option A"),
  global average pooling; 64 features, 463,504 parameters.
- `cifar_resnet18`: the CIFAR ResNet-18 of the DER/DyTox table's protocol: torchvision's
  ResNet-18 with a 3x3 stride-1 stem and no max-pool, the last BatchNorm of every block at zero
  (zero-init residual); 512 features, 11.22M parameters with a 100-class head.
- `resnet18`: torchvision's ResNet-18 for ImageNet-sized images (7x7 stride-2 stem, max-pool).
- `cifar_resnet32_cosine`: PyCIL's `cosine_resnet32` (UCIR's CIFAR ResNet-32), the backbone of the
  cosine-classifier methods (PODNet, UCIR): shortcuts a 1x1 convolution and BatchNorm where the
  shape changes ("option B"), and no ReLU after the last block, so that features can be negative.
- `preact_resnet18`: the pre-activation ResNet-18 DER's release trains on ImageNet-100 B0
  (`preact_resnet18` in its exps/der_womask/imagenet-100/b0_10s config): a 7x7 stride-2 stem
  without BatchNorm, max-pool, then blocks that normalise and activate before each convolution and
  add a BatchNorm and ReLU after the sum; 512 features.

Every backbone also gives its stages' outputs (`feature_maps`), for PODNet's spatial distillation;
its features are the last one's global average.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet as tv_resnet

BACKBONE_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str):
    def wrap(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        BACKBONE_BUILDERS[name] = build
        return build
    return wrap


class ShortcutA(nn.Module):
    """The parameter-free shortcut: subsample by the stride, append zero channels."""

    def __init__(self, extra_channels: int, stride: int):
        super().__init__()
        self.extra_channels, self.stride = extra_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


def shortcut_b(in_channels: int, channels: int, stride: int) -> nn.Module:
    """The projection shortcut: a 1x1 convolution with the block's stride, then BatchNorm."""
    return nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))


class CifarBasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut ("A" or "B" where the shape changes); `relu_out`: the ReLU
    after the sum (all blocks but the cosine backbones' last)."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1, shortcut: str = "A", relu_out: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu_out = relu_out
        if stride == 1 and in_channels == channels:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = ShortcutA(channels - in_channels, stride)
        else:
            self.shortcut = shortcut_b(in_channels, channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + self.shortcut(x)
        return F.relu(out) if self.relu_out else out


class StagedBackbone(nn.Module):
    """A `stem`, then `stages`; the features are the last stage's global average."""

    stem: nn.Module
    stages: nn.Sequential

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's output, (B, C, H, W)."""
        maps, x = [], self.stem(images)
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(images)).mean(dim=(2, 3))


class CifarResNet(StagedBackbone):
    """A CIFAR ResNet of depth 6n + 2 (n blocks a stage); `out_dim` features. `shortcut`: "A"
    (parameter-free) or "B" (projection) where the shape changes; `last_relu`: a ReLU after the
    last block."""

    def __init__(self, depth: int = 32, channels: int = 3, widths: tuple[int, ...] = (16, 32, 64),
                 shortcut: str = "A", last_relu: bool = True):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet's depth is 6n + 2 (20, 32, 44, 56, 110), not {depth}")
        blocks = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU())
        stages, in_channels = [], widths[0]
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(*[CifarBasicBlock(in_channels if b == 0 else width, width, stride if b == 0 else 1,
                                                          shortcut)
                                          for b in range(blocks)]))
            in_channels = width
        stages[-1][-1].relu_out = last_relu
        self.stages = nn.Sequential(*stages)
        self.out_dim = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He et al.'s: normal, std sqrt(2 / (k * k * out channels))
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")



class PreActBlock(nn.Module):
    """DER's release's pre-activation basic block: BatchNorm + ReLU before each 3x3 convolution, the
    shortcut (a 1x1 convolution of the activated input where the shape changes) added, then a
    BatchNorm and a ReLU after the sum."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)
        self.shortcut = (nn.Conv2d(in_channels, channels, 1, stride, bias=False)
                         if stride != 1 or in_channels != channels else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return F.relu(self.bn3(out + shortcut))


class PreActResNet18(StagedBackbone):
    """DER's ImageNet pre-activation ResNet-18: a 7x7 stride-2 stem (no BatchNorm) and max-pool,
    four stages of two PreActBlocks (64, 128, 256, 512 channels), global average pooling."""

    out_dim = 512

    def __init__(self, channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, 64, 7, 2, 3, bias=False), nn.MaxPool2d(3, 2, 1))
        stages, in_channels = [], 64
        for i, width in enumerate((64, 128, 256, 512)):
            stages.append(nn.Sequential(PreActBlock(in_channels, width, 1 if i == 0 else 2), PreActBlock(width, width)))
            in_channels = width
        self.stages = nn.Sequential(*stages)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")



class ResNet18(tv_resnet.ResNet):
    """torchvision's ResNet-18 (its module names, so its weights load) as a backbone: no classifier,
    512 features, its stages' outputs at hand."""

    out_dim = 512

    def __init__(self, zero_init_residual: bool):
        super().__init__(tv_resnet.BasicBlock, [2, 2, 2, 2], zero_init_residual=zero_init_residual)
        self.fc = nn.Identity()

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        maps = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            maps.append(x)
        return maps

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.feature_maps(images)[-1].mean(dim=(2, 3))


def _torchvision_resnet18(channels: int, cifar_stem: bool, zero_init_residual: bool) -> nn.Module:
    net = ResNet18(zero_init_residual)
    if cifar_stem:
        net.conv1 = nn.Conv2d(channels, 64, 3, 1, 1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
    elif channels != 3:
        net.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return net


@register_backbone("cifar_resnet32")
def cifar_resnet32(channels: int = 3) -> nn.Module:
    return CifarResNet(32, channels)


@register_backbone("cifar_resnet18")
def cifar_resnet18(channels: int = 3, zero_init_residual: bool = True) -> nn.Module:
    return _torchvision_resnet18(channels, cifar_stem=True, zero_init_residual=zero_init_residual)


@register_backbone("resnet18")
def resnet18(channels: int = 3, zero_init_residual: bool = False) -> nn.Module:
    return _torchvision_resnet18(channels, cifar_stem=False, zero_init_residual=zero_init_residual)


@register_backbone("cifar_resnet32_cosine")
def cifar_resnet32_cosine(channels: int = 3) -> nn.Module:
    return CifarResNet(32, channels, shortcut="B", last_relu=False)


@register_backbone("preact_resnet18")
def preact_resnet18(channels: int = 3) -> nn.Module:
    return PreActResNet18(channels)
