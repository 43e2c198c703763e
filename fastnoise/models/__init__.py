"""Architectures: ``fastnoise.models.build(name, num_classes, in_channels, input_size, *, mean, std, **kw)``.

Every model takes inputs in [0, 1] pixel space and normalizes inside (a `Normalize` module first),
so attacks work on raw pixels. Models are built from standard layers (nn.Conv2d, nn.Linear,
nn.BatchNorm2d) so `fastnoise.convert` can swap them.

* ``small_cnn``: 3 conv-BN-ReLU layers (32/64/128, two 2x2 max pools) + a 256-unit linear head;
  for digits / MNIST. ``bn=False`` drops the batch norms.
* ``mlp``: Flatten + ``depth`` hidden Linear-ReLU layers of ``width`` units (default 2 x 256); no BN.
* ``spiking_mlp``, ``spiking_cnn``: LIF networks of LR layers (seed 002; `fastnoise.models.spiking`), read
  raw [0, 1] pixels (their `Normalize` is the identity); ``lr_mlp``: an ANN of LR layers. Their net takes
  ``forward(x, replicas=C)``.
* ``resnet18``, ``preact_resnet18``, ``resnet20``, ``wrn34_10`` (``depth``, ``widen``), ``vgg16``:
  CIFAR variants (3x3 stem, global average pooling).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn

from . import _cifar
from .spiking import LRMLP, SpikingCNN, SpikingMLP

__all__ = ["Normalize", "SmallCNN", "MLP", "SpikingMLP", "SpikingCNN", "LRMLP", "build", "names"]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; mean and std are buffers (saved with the weights)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean, std = [float(m) for m in mean], [float(s) for s in std]
        if len(mean) != len(std) or not mean:
            raise ValueError(f"mean and std must be non-empty and of equal length, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be > 0 everywhere, got {std}")
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, input_size: tuple[int, int], width: int = 32,
                 hidden: int = 256, bn: bool = True) -> None:
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if bn else (lambda c: nn.Identity())
        w = int(width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, 1, 1, bias=not bn), norm(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, 3, 1, 1, bias=not bn), norm(2 * w), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, 1, 1, bias=not bn), norm(4 * w), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        h, wd = input_size[0] // 4, input_size[1] // 4
        if h < 1 or wd < 1:
            raise ValueError(f"input_size must be at least (4, 4) for small_cnn, got {tuple(input_size)}")
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * h * wd, hidden), nn.ReLU(inplace=True),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, input_size: tuple[int, int], width: int = 256,
                 depth: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = in_channels * input_size[0] * input_size[1]
        for _ in range(int(depth)):
            layers += [nn.Linear(d, int(width)), nn.ReLU(inplace=True)]
            d = int(width)
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": lambda nc, c, size, **kw: SmallCNN(nc, c, size, **kw),
    "mlp": lambda nc, c, size, **kw: MLP(nc, c, size, **kw),
    "resnet18": lambda nc, c, size, **kw: _cifar.resnet18(nc, c, **kw),
    "preact_resnet18": lambda nc, c, size, **kw: _cifar.preact_resnet18(nc, c, **kw),
    "resnet20": lambda nc, c, size, **kw: _cifar.resnet20(nc, c, **kw),
    "wrn34_10": lambda nc, c, size, **kw: _cifar.wrn34_10(nc, c, **kw),
    "vgg16": lambda nc, c, size, **kw: _cifar.vgg16(nc, c, size, **kw),
    "spiking_mlp": lambda nc, c, size, **kw: SpikingMLP(nc, c, size, **kw),
    "spiking_cnn": lambda nc, c, size, **kw: SpikingCNN(nc, c, size, **kw),
    "lr_mlp": lambda nc, c, size, **kw: LRMLP(nc, c, size, **kw),
}


def names() -> list[str]:
    return list(_BUILDERS)


def _int_at_least(lo: int):
    def check(key: str, v: object) -> None:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{key} must be an int >= {lo}, got {v!r}")
    return check


def _boolean(key: str, v: object) -> None:
    if not isinstance(v, bool):
        raise ValueError(f"{key} must be true or false, got {v!r}")


def _fraction(key: str, v: object) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
        raise ValueError(f"{key} must be a number in [0, 1), got {v!r}")


def _wrn_depth(key: str, v: object) -> None:
    _int_at_least(10)(key, v)
    if (v - 4) % 6:
        raise ValueError(f"{key} must be 6n+4 (e.g. 28, 34), got {v}")


# the options each architecture takes, with their checks (`build` and `TrainConfig.validate` use them)
def _by_builder(key: str, v: object) -> None:
    """The value is checked by the model's constructor."""


OPTIONS: dict[str, dict[str, Callable[[str, object], None]]] = {
    "small_cnn": {"width": _int_at_least(1), "hidden": _int_at_least(1), "bn": _boolean},
    "mlp": {"width": _int_at_least(1), "depth": _int_at_least(0)},
    "resnet18": {"preact": _boolean},
    "preact_resnet18": {},
    "resnet20": {},
    "wrn34_10": {"depth": _wrn_depth, "widen": _int_at_least(1), "dropout": _fraction},
    "vgg16": {},
    # the spiking / LR nets check their option values in their constructors (fastnoise/models/spiking.py)
    "spiking_mlp": dict.fromkeys(("hidden", "steps", "encoding", "decay", "threshold", "sigma_init", "surrogate",
                                  "alpha", "readout", "logit_scale", "seed"), _by_builder),
    "spiking_cnn": dict.fromkeys(("channels", "steps", "encoding", "decay", "threshold", "sigma_init", "surrogate",
                                  "alpha", "readout", "logit_scale", "seed"), _by_builder),
    "lr_mlp": dict.fromkeys(("width", "depth", "activation", "sigma_init", "seed"), _by_builder),
}


def check_options(name: str, options: dict) -> dict:
    """Check the architecture options of model `name`: known names (TypeError) and valid values (ValueError)."""
    if name not in _BUILDERS:
        raise ValueError(f"model must be one of {names()}, got {name!r}")
    if not isinstance(options, dict):
        raise TypeError(f"model options must be a dict, got {type(options).__name__}")
    valid = OPTIONS[name]
    unknown = sorted(str(k) for k in options if k not in valid)
    if unknown:
        raise TypeError(f"model {name!r}: bad option(s) {unknown} (unknown); valid options: {sorted(valid)}")
    for k, v in options.items():
        valid[k](k, v)
    return options


def _positive_int(name: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    return v


def build(name: str, num_classes: int, in_channels: int, input_size: Union[int, Sequence[int]], *,
          mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None, **kw) -> nn.Module:
    """Build model `name` (one of `names()`) for `num_classes` classes and inputs [B, in_channels, H, W].

    Returns ``nn.Sequential(Normalize(mean, std), net)`` (mean 0 / std 1 per channel when not given),
    taking inputs in [0, 1] and returning logits [B, num_classes]. `kw` goes to the architecture
    (e.g. ``width``, ``bn`` for small_cnn; ``depth``, ``widen`` for wrn34_10).
    """
    if name not in _BUILDERS:
        raise ValueError(f"model must be one of {names()}, got {name!r}")
    _positive_int("num_classes", num_classes)
    _positive_int("in_channels", in_channels)
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2:
        raise ValueError(f"input_size must be an int or (H, W), got {input_size!r}")
    for s in size:
        _positive_int("input_size", s)
    mean = [0.0] * in_channels if mean is None else list(mean)
    std = [1.0] * in_channels if std is None else list(std)
    if len(mean) != in_channels or len(std) != in_channels:
        raise ValueError(f"mean and std must have in_channels={in_channels} entries, got {len(mean)} and {len(std)}")
    check_options(name, kw)
    net = _BUILDERS[name](num_classes, in_channels, size, **kw)
    if getattr(net, "pixel_input", False):  # spiking nets read [0, 1] pixels (rate coding: probabilities)
        mean, std = [0.0] * in_channels, [1.0] * in_channels
    return nn.Sequential(Normalize(mean, std), net)
