"""CIFAR architectures from standard nn layers (so `fastnoise.convert` can swap them).

ResNet-18 and PreAct ResNet-18 (3x3 stem, 4 stages 64..512), ResNet-20 (He et al. 2016, 3 stages
16/32/64, 1x1-conv projection shortcuts), WRN-34-10 (Zagoruyko & Komodakis, as in Madry / Rice et
al.), VGG-16 with batch norm. Global average pooling makes each work at any input size >= 8.
"""
from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        sc = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        return out + sc


class ResNet(nn.Module):
    """ResNet for small images. `preact`: pre-activation blocks (He et al. 2016b) with a final BN-ReLU."""

    def __init__(self, blocks: list[int], widths: list[int], num_classes: int, in_channels: int,
                 preact: bool = False) -> None:
        super().__init__()
        self.preact = preact
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])  # after the stem (plain) or before the head (pre-act)
        block = PreActBlock if preact else BasicBlock
        layers, cin = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            stride = 1 if i == 0 else 2
            stage = []
            for j in range(n):
                stage.append(block(cin, w, stride if j == 0 else 1))
                cin = w
            layers.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*layers)
        if preact:
            self.bn1 = nn.BatchNorm2d(cin)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if not self.preact:
            out = torch.relu(self.bn1(out))
        out = self.layers(out)
        if self.preact:
            out = torch.relu(self.bn1(out))
        return self.fc(torch.flatten(self.pool(out), 1))


def resnet18(num_classes: int, in_channels: int, **kw) -> nn.Module:
    return ResNet([2, 2, 2, 2], [64, 128, 256, 512], num_classes, in_channels, **kw)


def preact_resnet18(num_classes: int, in_channels: int) -> nn.Module:
    return ResNet([2, 2, 2, 2], [64, 128, 256, 512], num_classes, in_channels, preact=True)


def resnet20(num_classes: int, in_channels: int) -> nn.Module:
    return ResNet([3, 3, 3], [16, 32, 64], num_classes, in_channels)


class WideResNet(nn.Module):
    """WRN-depth-widen (pre-activation blocks), e.g. WRN-34-10 of Madry et al. / Rice et al."""

    def __init__(self, num_classes: int, in_channels: int, depth: int = 34, widen: int = 10,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"depth must be 6n+4 (e.g. 28, 34), got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        stages, cin = [], widths[0]
        for i, w in enumerate(widths[1:]):
            stage = []
            for j in range(n):
                stage.append(PreActBlock(cin, w, (1 if i == 0 else 2) if j == 0 else 1, dropout))
                cin = w
            stages.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(cin)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn(self.layers(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(out), 1))


def wrn34_10(num_classes: int, in_channels: int, depth: int = 34, widen: int = 10, dropout: float = 0.0) -> nn.Module:
    return WideResNet(num_classes, in_channels, depth, widen, dropout)


_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    def __init__(self, cfg: list, num_classes: int, in_channels: int, input_size: tuple[int, int]) -> None:
        super().__init__()
        layers, cin, h, w = [], in_channels, *input_size
        for v in cfg:
            if v == "M":
                if min(h, w) >= 2:  # small inputs: skip pools that would empty the feature map
                    layers.append(nn.MaxPool2d(2))
                    h, w = h // 2, w // 2
            else:
                layers += [nn.Conv2d(cin, v, 3, 1, 1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def vgg16(num_classes: int, in_channels: int, input_size: tuple[int, int]) -> nn.Module:
    return VGG(_VGG16, num_classes, in_channels, input_size)
