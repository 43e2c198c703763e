"""fastnoise.nn.LIF / SpikeEncoder and the spiking models: Eq. 7 spike for spike against snnTorch's Leaky
(an independent implementation), the surrogate gradients, the encodings, the models' shapes and the
bad-input errors."""
import math

import pytest
import torch

import fastnoise
from fastnoise import models
from fastnoise.nn import LIF, SURROGATES, LRLinear, SpikeEncoder, noise_mode, spike

import snntorch as snn  # noqa: E402  (a test dependency: Makefile, installed with --no-deps)


@pytest.mark.parametrize("decay,threshold", [(0.5, 1.0), (0.9, 0.7), (0.0, 0.25), (1.0, 1.5)])
def test_lif_matches_snntorch_leaky_spike_for_spike(decay, threshold):
    g = torch.Generator().manual_seed(int(decay * 10 + threshold * 100))
    T, B, N = 25, 32, 40
    cur = torch.randn(T, B, N, generator=g) * 0.8 + 0.35
    ours, mem = LIF(decay, threshold)(cur, return_membrane=True)
    leaky = snn.Leaky(beta=decay, threshold=threshold, reset_mechanism="zero")
    m = torch.zeros(B, N)
    ref_s, ref_m = [], []
    for t in range(T):
        s, m = leaky(cur[t], m)
        ref_s.append(s)
        ref_m.append(m)
    assert torch.equal(ours, torch.stack(ref_s))
    assert torch.equal(mem, torch.stack(ref_m))
    assert 0.05 < ours.mean().item() < 0.95  # the case exercises both spikes and silence
    # the autograd path (STBP) computes the same spikes
    assert torch.equal(LIF(decay, threshold)(cur.clone().requires_grad_(True)).detach(), ours)


def test_lif_equation_7_by_hand():
    cur = torch.tensor([[0.6], [0.6], [0.6], [2.0], [0.1]])
    s, u = LIF(decay=0.5, threshold=1.0)(cur, return_membrane=True)
    # u1 = .6; u2 = .3 + .6 = .9; u3 = .45 + .6 = 1.05 -> spike, reset; u4 = 0 + 2 -> spike; u5 = 0 + .1
    torch.testing.assert_close(u.flatten(), torch.tensor([0.6, 0.9, 1.05, 2.0, 0.1]))
    assert s.flatten().tolist() == [0, 0, 1, 1, 0]


@pytest.mark.parametrize("kind", list(SURROGATES))
def test_surrogate_gradients(kind):
    x = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    y = spike(x, kind)
    assert torch.equal(y.detach(), (x > 0).double())
    (g,) = torch.autograd.grad(y.sum(), x)
    a = SURROGATES[kind]
    xd = x.detach()
    if kind == "atan":
        want = (a / 2) / (1 + (math.pi / 2 * a * xd) ** 2)          # snntorch.surrogate.atan
    elif kind == "sigmoid":
        s = torch.sigmoid(a * xd)
        want = a * s * (1 - s)
    else:
        want = (xd.abs() < a / 2).double() / a
    torch.testing.assert_close(g, want)
    # integrates to about 1 (a smoothed Heaviside), peaks at the threshold
    assert g.argmax().item() == 20 or kind == "rectangular"


def test_stbp_gradient_flows_through_lif():
    torch.manual_seed(0)
    fc = LRLinear(6, 4, sigma_init=0.5).set_noise_mode("off")
    x = torch.rand(3, 6)
    out = LIF(0.5, 0.5, surrogate="sigmoid")(fc(x, steps=5)).sum()
    out.backward()
    assert fc.weight.grad is not None and fc.weight.grad.abs().sum() > 0


def test_encoders():
    x = torch.rand(16, 1, 8, 8)
    d = SpikeEncoder("direct", 5)(x)
    assert d.shape == (1, 16, 1, 8, 8) and torch.equal(d[0], x)
    enc = SpikeEncoder("rate", 400, seed=3)
    r = enc(x)
    assert r.shape == (400, 16, 1, 8, 8) and set(r.unique().tolist()) <= {0.0, 1.0}
    assert (r.mean(0) - x).abs().max() < 0.12  # Bernoulli(x) rates
    assert not torch.equal(enc(x), r)           # the stream advances
    with noise_mode(enc, "off"):
        assert torch.equal(enc(x), x.unsqueeze(0))
    xg = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(SpikeEncoder("rate", 4, seed=1)(xg).sum(), xg)
    assert torch.equal(gx, torch.full_like(x, 4.0))  # straight-through (BPDA) gradient


@pytest.mark.parametrize("name,kw", [("spiking_mlp", {"hidden": [20, 12]}), ("spiking_mlp", {"encoding": "rate"}),
                                     ("spiking_cnn", {"channels": [4, 6]}), ("lr_mlp", {"width": 16})])
def test_models_build_and_replicas(name, kw):
    m = models.build(name, 10, 1, 8, seed=1, mean=[0.3], std=[0.2], **kw)
    x = torch.rand(5, 1, 8, 8)
    assert m(x).shape == (5, 10)
    net = m[-1]
    with torch.no_grad():
        out = net(m[0](x), replicas=3)
    assert out.shape == (15, 10) and torch.isfinite(out).all()
    if name.startswith("spiking"):
        assert torch.equal(m[0](x), x)  # spiking nets read raw pixels
    cfgs = [mod.config() for mod in m.modules() if isinstance(mod, fastnoise.nn.NoiseModule)]
    assert cfgs and all(isinstance(c, dict) and "type" in c for c in cfgs)


def test_spiking_mlp_mnist_shape_and_bits():
    m = models.build("spiking_mlp", 10, 1, 28, steps=8)
    fcs = m[-1].fcs
    assert [(f.in_features, f.out_features) for f in fcs] == [(784, 500), (500, 10)]
    assert [f.binary_input for f in fcs] == [False, True]
    assert models.build("spiking_mlp", 10, 1, 28, encoding="rate")[-1].fcs[0].binary_input


@pytest.mark.parametrize("kw,exc,match", [
    ({"decay": 1.5}, ValueError, r"decay must be a finite number in \[0.0, 1.0\]"),
    ({"decay": -0.1}, ValueError, r"decay must be a finite number in \[0.0, 1.0\]"),
    ({"threshold": 0.0}, ValueError, r"threshold must be a finite number in \(0.0"),
    ({"threshold": -1.0}, ValueError, r"threshold must be a finite number in \(0.0"),
    ({"surrogate": "erf"}, ValueError, "surrogate must be one of"),
    ({"alpha": 0.0}, ValueError, "alpha must be a finite number"),
])
def test_lif_bad_input(kw, exc, match):
    with pytest.raises(exc, match=match):
        LIF(**kw)
    with pytest.raises(exc, match=match):
        models.build("spiking_mlp", 10, 1, 8, **kw)


def test_bad_steps_replicas_and_currents():
    with pytest.raises(ValueError, match=r"steps must be an int in \[1"):
        SpikeEncoder("rate", 0)
    with pytest.raises(ValueError, match=r"steps must be an int in \[1"):
        models.build("spiking_mlp", 10, 1, 8, steps=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        SpikeEncoder("phase", 4)
    with pytest.raises(ValueError, match="current must be"):
        LIF()(torch.zeros(0, 3))
    fc = LRLinear(4, 3)
    with pytest.raises(ValueError, match=r"replicas must be an int in \[1"):
        fc(torch.zeros(2, 4), replicas=0)
    with pytest.raises(ValueError, match=r"steps must be an int in \[1"):
        fc(torch.zeros(2, 4), steps=0)
    with pytest.raises(ValueError, match="x has 3 time steps: steps must be 3"):
        fc(torch.zeros(3, 2, 4), steps=5)
    with pytest.raises(ValueError, match="readout must be one of"):
        models.build("spiking_mlp", 10, 1, 8, readout="max")
