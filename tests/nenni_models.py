"""Small models for the NENNI tests: a CIFAR ResNet-18 (fastnoise.models when present) and a nested CNN."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class _Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class LocalResNet18(nn.Module):
    """The CIFAR ResNet-18 of the seed's experiments (3x3 stem, 4 stages of 2 blocks, 10 classes)."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(_Block(cin, cout, stride), _Block(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet18(num_classes=10, in_channels=3, size=32):
    try:
        from fastnoise import models
        return models.build("resnet18", num_classes, in_channels, size)
    except (ImportError, AttributeError):
        return LocalResNet18(num_classes, in_channels)


class Inner(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(8, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)])
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)  # depthwise: not eligible

    def forward(self, x):
        for c in self.convs:
            x = F.relu(c(x))
        return F.relu(self.dw(x))


class NestedCNN(nn.Module):
    """Conv stem, nested blocks (ModuleList inside a module inside a Sequential), two Linears."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.body = nn.Sequential(Inner(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, classes))

    def forward(self, x):
        return self.head(self.body(F.relu(self.stem(x))))
