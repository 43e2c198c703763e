"""fastnoise.models: every architecture builds from standard layers, normalizes inside, has the
published parameter count, and bad names / options are clear errors."""
import pytest
import torch
from torch import nn

import fastnoise.models as fm

SMALL = {"small_cnn": 226_794, "mlp": 85_002}                          # 1x8x8 inputs, 10 classes
CIFAR = {"resnet18": 11_173_962, "preact_resnet18": 11_172_170, "resnet20": 272_474,
         "wrn34_10": 46_160_474, "vgg16": 14_724_042}                   # 3x32x32 inputs, 10 classes


SPIKING = ["spiking_mlp", "spiking_cnn", "lr_mlp"]                     # tests/nn/test_spiking.py


def test_names():
    assert fm.names() == list(SMALL) + list(CIFAR) + SPIKING


@pytest.mark.parametrize("name", list(SMALL) + list(CIFAR))
def test_build_forward_and_parameter_count(name):
    c, size = (1, 8) if name in SMALL else (3, 32)
    torch.manual_seed(0)
    model = fm.build(name, 10, c, size, mean=[0.5] * c, std=[0.25] * c).eval()
    assert sum(p.numel() for p in model.parameters()) == {**SMALL, **CIFAR}[name]
    assert isinstance(model[0], fm.Normalize)
    torch.testing.assert_close(model[0](torch.full((1, c, 2, 2), 0.75)), torch.ones(1, c, 2, 2))
    with torch.no_grad():
        out = model(torch.rand(2, c, size, size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    # only standard layers carry weights (fastnoise.convert swaps nn.Conv2d / nn.Linear)
    for m in model.modules():
        if any(True for _ in m.parameters(recurse=False)):
            assert type(m) in (nn.Conv2d, nn.Linear, nn.BatchNorm2d), type(m)


def test_small_models_on_mnist_size_and_options():
    m = fm.build("small_cnn", 10, 1, 28, width=8, bn=False)
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    assert m(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert fm.build("mlp", 7, 3, (5, 6), width=16, depth=3)(torch.rand(2, 3, 5, 6)).shape == (2, 7)
    assert fm.build("wrn34_10", 10, 3, 32, depth=10, widen=1)(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_errors():
    with pytest.raises(ValueError, match=r"model must be one of \['small_cnn', 'mlp', 'resnet18'"):
        fm.build("resnet50", 10, 3, 32)
    with pytest.raises(TypeError, match="bad option"):
        fm.build("mlp", 10, 1, 8, colour="red")
    with pytest.raises(ValueError, match="num_classes"):
        fm.build("mlp", 0, 1, 8)
    with pytest.raises(ValueError, match="in_channels=3"):
        fm.build("resnet20", 10, 3, 32, mean=[0.5], std=[0.2])
    with pytest.raises(ValueError, match="std must be > 0"):
        fm.Normalize([0.0], [0.0])
