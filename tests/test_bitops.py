"""fastnoise.bitops: the documented convention, checked by hand on single layers and on ResNet-18."""
import copy

import pytest
import torch

import fastnoise
import fastnoise.nenni as nenni
from fastnoise.nn import NENNIConv2d, NENNILinear
from nenni_models import resnet18


def test_exact_layers():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(8 * 25, 4))
    r = fastnoise.bitops(model, (2, 3, 5, 5))
    conv_macs = 8 * 25 * 3 * 9
    lin_macs = 8 * 25 * 4
    assert [row["macs"] for row in r["layers"]] == [conv_macs, lin_macs]
    assert r["total"] == r["dense_total"] == (conv_macs + lin_macs) * 32 * 32
    assert fastnoise.bitops(model, (1, 3, 5, 5), weight_bits=8, act_bits=8)["total"] == (conv_macs + lin_macs) * 64


def test_nenni_layer_convention():
    conv = torch.nn.Conv2d(16, 32, 3, padding=1)
    layer = NENNIConv2d.from_conv(conv, ratio=0.9, k=24)
    r = fastnoise.bitops(layer, (1, 16, 6, 6))
    row = r["layers"][0]
    positions, n, d, k = 36, 32, 144, 24
    kept = 4 / 32  # ceil(0.1 * 32)
    assert row["kept_fraction"] == kept
    assert row["exact"] == pytest.approx(kept * positions * n * d * 32 * 32)
    assert row["projection"] == pytest.approx(positions * k * d / 3 * 32)
    assert row["approx"] == pytest.approx(positions * n * k * 4 * 32)
    assert r["reduction"] == pytest.approx(row["total"] / (positions * n * d * 1024) - 1)
    lin = NENNILinear.from_linear(torch.nn.Linear(64, 40), nm=(1, 8), k=16)
    row = fastnoise.bitops(lin, (3, 64))["layers"][0]
    assert row["kept_fraction"] == 1 / 8
    assert row["total"] == pytest.approx(40 * 64 * 1024 / 8 + 16 * 64 / 3 * 32 + 40 * 16 * 4 * 32)


def test_resnet18_totals_and_table():
    model = resnet18()
    dense = fastnoise.bitops(model, (1, 3, 32, 32))
    macs = sum(row["macs"] for row in dense["layers"])
    assert 5.5e8 < macs < 5.6e8  # the usual 0.56 GMACs of CIFAR ResNet-18
    conv = fastnoise.convert(copy.deepcopy(model), "nenni", ratio=0.9, convert_linear=False)
    r = fastnoise.bitops(conv, (1, 3, 32, 32))
    assert r["dense_total"] == pytest.approx(dense["total"])
    assert -0.90 < r["reduction"] < -0.80
    table = nenni.bitops_table(model, (1, 3, 32, 32))
    assert "-82.6%" in table and "-91.6%" in table and "r = 0.99" in table


def test_bad_input():
    with pytest.raises(ValueError, match="input_shape must be"):
        fastnoise.bitops(torch.nn.Linear(2, 2), (0, 2))
    with pytest.raises(TypeError, match="model must be"):
        fastnoise.bitops("resnet", (1, 2))
    with pytest.raises(ValueError, match="weight_bits must be"):
        fastnoise.bitops(torch.nn.Linear(2, 2), (1, 2), weight_bits=0)
