"""Every setting that defines a defense is in its state_dict and checked on load (fastnoise.nn.NoiseModule):
another configuration, or none, is a ValueError naming the keys; a quantized NENNI layer never keeps its
old INT4 weights when it loads an unquantized state_dict."""
import json

import pytest
import torch

import fastnoise
from fastnoise.nn import SAL, GaussianNoise, LearnableNoise, NENNIConv2d, NENNILinear, NoiseModule, RandomWeight

LAYERS = {  # name -> (build(variant) for variant 0 / 1 differing in one defining setting, the key that differs)
    "gaussian": (lambda v: GaussianNoise([0.1, 0.9][v], seed=1), "sigma"),
    "learnable": (lambda v: LearnableNoise([(4, 1, 1), (1,)][v], seed=1), "shape"),
    "random_weight": (lambda v: RandomWeight([(4, 3, 3), (4, 1, 1)][v], seed=1), "shape"),
    "sal": (lambda v: SAL(4, seed=1, feature_shape=[None, (4, 3, 3)][v]), "shape"),
    "nenni_conv": (lambda v: NENNIConv2d(4, 8, 3, ratio=[0.5, 0.75][v], k=4), "ratio"),
    "nenni_linear": (lambda v: NENNILinear(8, 4, nm=[(1, 2), (1, 4)][v], k=4), "nm"),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_config_is_saved_json_and_checked(name):
    build, key = LAYERS[name]
    a, b = build(0), build(1)
    sd = a.state_dict()
    assert json.loads(json.dumps(sd["_extra_state"])) == sd["_extra_state"]  # JSON, never a pickle
    assert sd["_extra_state"]["config"] == json.loads(json.dumps(a.config()))
    build(0).load_state_dict(sd)  # same settings: loads
    with pytest.raises(ValueError, match=rf"another .*configuration \(.*{key}: state_dict has"):
        b.load_state_dict(sd)
    with pytest.raises(ValueError, match=rf"another .*configuration \(.*{key}: state_dict has"):
        b.load_state_dict(sd, strict=False)
    tensors_only = {k: v for k, v in sd.items() if k != "_extra_state"}
    with pytest.raises(ValueError, match="has no .*configuration .*_extra_state' missing"):
        build(0).load_state_dict(tensors_only, strict=False)


def test_gaussian_noise_sigma_is_not_silently_kept():
    """The issue's case: GaussianNoise(0.9).load_state_dict(GaussianNoise(0.1).state_dict()) kept 0.9."""
    layer = GaussianNoise(0.9)
    with pytest.raises(ValueError, match="sigma: state_dict has 0.1, layer has 0.9"):
        layer.load_state_dict(GaussianNoise(0.1).state_dict())
    assert layer.sigma == 0.9


def test_whole_rse_model_checks_sigma():
    def model(sigma):
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3))
        return fastnoise.convert(m, "rse", sigma=sigma, seed=0)
    sd = model(0.1).state_dict()
    with pytest.raises(ValueError, match="sigma: state_dict has 0.1, layer has 0.2"):
        model(0.2).load_state_dict(sd)
    m = model(0.1)
    m.load_state_dict(sd)
    x = torch.rand(2, 1, 8, 8)
    ref = model(0.1)
    ref.load_state_dict(sd)
    torch.testing.assert_close(m(x), ref(x), rtol=0, atol=0)  # same streams, same sigma


class Plain(NoiseModule):
    """A NoiseModule without a config (third-party layers): no extra-state key, loads as before."""

    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))


def test_layers_without_config_keep_their_keys():
    sd = Plain().state_dict()
    assert list(sd) == ["count"]
    Plain().load_state_dict(sd)  # strict: no missing _extra_state
    with pytest.raises(ValueError, match="carries a configuration"):
        Plain().load_state_dict({**sd, "_extra_state": {"config": {"sigma": 1.0}}})


class BadConfig(NoiseModule):
    def config(self):
        return {"shape": torch.Size([2]), "f": object()}


def test_config_must_be_json():
    with pytest.raises(TypeError, match="BadConfig.config\\(\\) must return a JSON-able dict"):
        BadConfig().state_dict()


def test_quantized_nenni_loading_an_unquantized_state_dict_is_cleared():
    """strict=False used to keep the old INT4 weights (and the frozen W~) next to the loaded float ones."""
    src = NENNIConv2d(4, 8, 3, ratio=0.5, k=4)
    with torch.no_grad():
        src.approx_weight.mul_(3.0)
    x = torch.randn(2, 4, 6, 6)
    for strict in (True, False):
        layer = NENNIConv2d(4, 8, 3, ratio=0.5, k=4).quantize_()
        assert layer.quantized
        layer.load_state_dict(src.state_dict(), strict=strict)
        assert not layer.quantized and layer.approx_wq is None and layer.approx_weight.requires_grad
        assert "approx_wq" not in layer.state_dict()
        with torch.no_grad():
            torch.testing.assert_close(layer(x), src(x), rtol=0, atol=0)


def test_quantized_state_dict_without_int4_tensors_is_refused():
    sd = NENNILinear(8, 4, ratio=0.5, k=4).quantize_().state_dict()
    del sd["approx_bq"]
    layer = NENNILinear(8, 4, ratio=0.5, k=4)
    with pytest.raises(ValueError, match=r"quantized \(INT4\) but lacks \['approx_bq'\]"):
        layer.load_state_dict(sd, strict=False)
    assert not layer.quantized
