"""The noisy conv / linear layers of fastnoise.nn.noise_conv: CTRW, RSE, PNI, CNI, RPF."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F

import fastnoise
from fastnoise.nn import (CNIConv2d, CNILinear, CTRWConv2d, NoiseModule, PNIConv2d, PNILinear, RPFConv2d, RSEConv2d,
                          noise_mode)
from fastnoise.ops import noise_conv as nc


def _conv(c_in=3, c_out=8, k=3, **kw):
    torch.manual_seed(0)
    return torch.nn.Conv2d(c_in, c_out, k, padding=1, **kw)


def _layers():
    """(name, layer, input shape) for every layer kind (batch-shared draws in both resample modes)."""
    lin = torch.nn.Linear(12, 5)
    return [
        ("ctrw", CTRWConv2d.from_conv(_conv(), input_shape=(3, 6, 6), seed=1), (2, 3, 6, 6)),
        ("ctrw-manual", CTRWConv2d.from_conv(_conv(), input_shape=(3, 6, 6), resample="manual", seed=1), (2, 3, 6, 6)),
        ("rse", RSEConv2d.from_conv(_conv(), sigma=0.2, seed=2), (2, 3, 6, 6)),
        ("pni-w", PNIConv2d.from_conv(_conv(), seed=3), (2, 3, 6, 6)),
        ("pni-w-layer-manual", PNIConv2d.from_conv(_conv(), granularity="layer", resample="manual", seed=3), (2, 3, 6, 6)),
        ("pni-w-element", PNIConv2d.from_conv(_conv(), granularity="element", seed=3), (2, 3, 6, 6)),
        ("pni-in", PNIConv2d.from_conv(_conv(), site="input", seed=4), (2, 3, 6, 6)),
        ("pni-out", PNIConv2d.from_conv(_conv(), site="output", granularity="layer", seed=5), (2, 3, 6, 6)),
        ("pni-linear", PNILinear.from_linear(lin, seed=6), (4, 12)),
        ("pni-linear-out", PNILinear.from_linear(torch.nn.Linear(12, 5), site="output", seed=6), (4, 12)),
        ("cni", CNIConv2d.from_conv(_conv(), seed=7), (2, 3, 6, 6)),
        ("cni-linear", CNILinear.from_linear(torch.nn.Linear(12, 5), seed=7), (4, 12)),
        ("rpf", RPFConv2d.from_conv(_conv(c_out=8), seed=8), (2, 3, 6, 6)),
        ("rpf-manual-std", RPFConv2d.from_conv(_conv(c_out=8), standardize=True, resample="manual", seed=8), (2, 3, 6, 6)),
    ]


LAYERS = _layers()
IDS = [n for n, _, _ in LAYERS]


@pytest.mark.parametrize("name,layer,shape", LAYERS, ids=IDS)
def test_layer_basics(name, layer, shape):
    assert isinstance(layer, NoiseModule)
    cfg = layer.config()
    json.dumps(cfg)
    assert cfg["method"] in ("ctrw", "rse", "pni", "cni", "rpf")
    x = torch.randn(shape)
    y1, y2 = layer(x), layer(x)
    manual = getattr(layer, "resample_mode", "forward") == "manual"
    assert torch.equal(y1, y2) == manual, "forward draws per call; manual keeps the draw until resample()"
    if manual:
        layer.resample()
        assert not torch.equal(layer(x), y1)
    with noise_mode(layer, "off"):
        a, b = layer(x), layer(x)
    assert torch.equal(a, b)
    layer.set_noise_mode("train").eval()
    assert torch.equal(layer(x), a)
    layer.set_noise_mode("on")


@pytest.mark.parametrize("name,layer,shape", LAYERS, ids=IDS)
def test_state_dict_round_trip(name, layer, shape):
    x = torch.randn(shape)
    layer(x)  # advance the stream
    clone = copy.deepcopy(layer)
    with torch.no_grad():
        for p in clone.parameters():
            p.add_(1.0)
    clone.stream.reseed(123)
    clone.load_state_dict(layer.state_dict())
    assert clone.config() == layer.config()
    assert torch.equal(clone(x), layer(x))


def test_from_conv_and_from_linear_share_parameters():
    conv = _conv()
    for layer in (CTRWConv2d.from_conv(conv, input_shape=(3, 6, 6)), RSEConv2d.from_conv(conv), PNIConv2d.from_conv(conv),
                  CNIConv2d.from_conv(conv), RPFConv2d.from_conv(conv)):
        assert layer.weight is conv.weight and layer.bias is conv.bias
        with noise_mode(layer, "off"):
            if isinstance(layer, CTRWConv2d):
                torch.testing.assert_close(layer(torch.ones(1, 3, 6, 6)), conv(torch.ones(1, 3, 6, 6)))  # mu = 1
            elif not isinstance(layer, RPFConv2d):
                x = torch.randn(2, 3, 6, 6)
                assert torch.equal(layer(x), conv(x))
    lin = torch.nn.Linear(12, 5)
    for layer in (PNILinear.from_linear(lin), CNILinear.from_linear(lin)):
        assert layer.weight is lin.weight and layer.bias is lin.bias
    # constructors make their own conv with the geometry
    layer = PNIConv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=False)
    assert layer.weight.shape == (6, 2, 3, 3) and layer.bias is None and layer(torch.randn(1, 4, 7, 7)).shape == (1, 6, 4, 4)


def test_defaults_follow_the_reference_code():
    ctrw = CTRWConv2d(3, 64, 3, padding=1, input_shape=(3, 32, 32))
    assert torch.equal(ctrw.mu, torch.ones(3, 32, 32)) and torch.equal(ctrw.sigma, torch.ones(3, 32, 32))
    pni = PNIConv2d(16, 32, 3)
    assert pni.alpha.shape == (32, 1, 1, 1) and torch.all(pni.alpha == 0.25)
    assert PNIConv2d(16, 32, 3, granularity="layer").alpha.shape == (1,)
    assert PNILinear(16, 10).alpha.shape == (10, 1)
    assert CNIConv2d(16, 32, 3).alpha.shape == (32, 1, 1, 1)
    rpf = RPFConv2d(3, 64, 3, padding=1)
    assert rpf.n_random == 48 and rpf.replace[16:].all() and not rpf.replace[:16].any()


def test_rpf_random_filters_get_no_gradient_and_the_right_std():
    conv = _conv(c_in=16, c_out=8)
    layer = RPFConv2d.from_conv(conv, fraction=0.5, seed=0)
    x = torch.randn(4, 16, 6, 6)
    layer(x).square().sum().backward()
    g = conv.weight.grad
    assert torch.all(g[4:] == 0) and torch.all(g[:4].abs().sum((1, 2, 3)) > 0)
    # the replaced filters: N(0, (1/3)^2) -> conv of x with them has variance sum(x^2) / 9 per tap window
    outs = torch.stack([layer(torch.ones(1, 16, 3, 3))[0, 4:, 1, 1] for _ in range(400)])
    assert abs(outs.var().item() / (16 * 9 / 9) - 1) < 0.15


def test_cni_prune_removes_noise_on_pruned_weights():
    conv = _conv(c_in=4, c_out=4)
    layer = CNIConv2d.from_conv(conv, alpha_init=0.5, seed=0)
    gamma = conv.weight.abs().median().item()
    layer.prune_(gamma)
    assert torch.equal(layer.keep, conv.weight != 0) and (conv.weight == 0).float().mean() >= 0.45
    x = torch.randn(2, 4, 5, 5)
    st = layer.stream.state.clone()
    y = layer(x)
    s = conv.weight.std()
    n = conv.weight.numel()
    eta = fastnoise.rng.normal(n, int(st[0]), int(st[1])).reshape(conv.weight.shape)
    w_noisy = conv.weight + layer.keep * (s * 0.5 * eta)
    torch.testing.assert_close(y, F.conv2d(x, w_noisy, conv.bias, padding=1), rtol=1e-5, atol=1e-5)
    fresh = CNIConv2d.from_conv(_conv(c_in=4, c_out=4))
    fresh.load_state_dict(layer.state_dict())
    assert torch.equal(fresh.keep, layer.keep)


def test_ctrw_constrain():
    layer = CTRWConv2d(3, 4, 3, padding=1, input_shape=(3, 4, 4), sigma_init=1.0)
    layer.constrain_(0.0, 12.0)
    assert abs(layer.sigma.sum().item() - 12.0) < 1e-4 and (layer.sigma >= 0).all()


def test_bad_settings_name_the_argument():
    conv = _conv()
    with pytest.raises(ValueError, match=r"fraction must be a finite number in \[0.0, 1.0\], got 1.5"):
        RPFConv2d.from_conv(conv, fraction=1.5)
    with pytest.raises(ValueError, match=r"fraction must be a finite number in \[0.0, 1.0\]"):
        RPFConv2d.from_conv(conv, fraction=-0.1)
    with pytest.raises(ValueError, match="fraction must be a finite number"):
        RPFConv2d.from_conv(conv, fraction=float("nan"))
    with pytest.raises(ValueError, match="RPFConv2d supports groups=1 only.*got groups=3"):
        RPFConv2d(3, 6, 3, groups=3)
    with pytest.raises(ValueError, match="granularity 'element' is supported for site 'weight' only"):
        PNIConv2d.from_conv(conv, site="input", granularity="element")
    with pytest.raises(ValueError, match=r"site must be one of \('weight', 'input', 'output'\)"):
        PNIConv2d.from_conv(conv, site="bias")
    with pytest.raises(ValueError, match=r"resample must be one of \('forward', 'manual'\)"):
        CNIConv2d.from_conv(conv, resample="epoch")
    with pytest.raises(ValueError, match="resample='manual' needs a batch-shared draw"):
        PNIConv2d.from_conv(conv, site="output", resample="manual")
    with pytest.raises(ValueError, match=r"input_shape must be \(C=3, H, W\)"):
        CTRWConv2d.from_conv(conv, input_shape=(4, 32, 32))
    with pytest.raises(ValueError, match=r"alpha_init must be a finite number in \[0.0, inf\]"):
        PNIConv2d.from_conv(conv, alpha_init=-0.25)
    with pytest.raises(ValueError, match=r"sigma must be a finite number in \[0.0, inf\]"):
        RSEConv2d.from_conv(conv, sigma=float("nan"))
    with pytest.raises(TypeError, match="conv must be a torch.nn.Conv2d"):
        CNIConv2d.from_conv(torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match=r"keep must be a bool tensor of the weight's shape \(8, 3, 3, 3\)"):
        CNIConv2d.from_conv(conv).set_keep_(torch.ones(8, 3, 3, dtype=torch.bool))
    ctrw = CTRWConv2d.from_conv(conv, input_shape=(3, 6, 6))
    with pytest.raises(ValueError, match=r"input_noise.sigma must broadcast to x.shape\[1:\]"):
        ctrw(torch.randn(2, 3, 8, 8))


def test_channels_last_and_empty_batch():
    for _, layer, shape in LAYERS:
        if len(shape) != 4:
            continue
        x = torch.randn(shape).to(memory_format=torch.channels_last)
        st = layer.stream.state.clone()
        y = layer(x)
        layer.stream.state.copy_(st)
        torch.testing.assert_close(y, layer(x.contiguous()), rtol=1e-5, atol=1e-5)
        assert layer(torch.randn((0,) + shape[1:])).shape[0] == 0


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.ctrw = CTRWConv2d(3, 8, 3, padding=1, input_shape=(3, 8, 8), seed=1)
        self.rse = RSEConv2d(8, 8, 3, padding=1, sigma=0.1, seed=2)
        self.pni = PNIConv2d(8, 8, 3, padding=1, seed=3)
        self.pni_in = PNIConv2d(8, 8, 3, padding=1, site="input", seed=4)
        self.pni_out = PNIConv2d(8, 8, 3, padding=1, site="output", seed=5)
        self.cni = CNIConv2d(8, 8, 3, padding=1, seed=6)
        self.rpf = RPFConv2d(8, 8, 3, padding=1, seed=7)
        self.fc = PNILinear(8 * 8 * 8, 10, seed=8)
        self.fc2 = CNILinear(10, 10, seed=9)

    def forward(self, x):
        for m in (self.ctrw, self.rse, self.pni, self.pni_in, self.pni_out, self.cni, self.rpf):
            x = F.relu(m(x))
        return self.fc2(self.fc(x.flatten(1)))


def test_compile_fullgraph_model_with_every_layer_matches_eager():
    torch._dynamo.reset()
    eager = _Model()
    comp = copy.deepcopy(eager)
    compiled = torch.compile(comp, fullgraph=True)
    x = torch.randn(2, 3, 8, 8)
    for step in range(2):  # the second call reads the advanced stream offsets without recompiling
        ye, yc = eager(x), compiled(x)
        torch.testing.assert_close(yc, ye, rtol=1e-4, atol=1e-4)
        ye.square().sum().backward()
        yc.square().sum().backward()
    for (n, pe), (_, pc) in zip(eager.named_parameters(), comp.named_parameters()):
        torch.testing.assert_close(pc.grad, pe.grad, rtol=1e-4, atol=1e-4, msg=n)
