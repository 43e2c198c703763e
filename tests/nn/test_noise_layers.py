"""The noise layers of fastnoise.nn.noise: streams, modes, state_dict, gradients, compile, constraints."""
import pytest
import torch

import fastnoise.nn as fnn


# ---- layers ------------------------------------------------------------------------------------

def _layers():
    return [fnn.GaussianNoise(0.3, seed=1), fnn.LearnableNoise((3, 1, 1), init=0.2, seed=2),
            fnn.RandomWeight((3, 4, 4), seed=3), fnn.SAL(3, seed=4), fnn.SAL(3, seed=5, feature_shape=(3, 4, 4))]


@pytest.mark.parametrize("layer", _layers(), ids=lambda m: type(m).__name__)
def test_layer_advances_offset_and_modes(layer):
    x = torch.rand(2, 3, 4, 4)
    off0 = int(layer.stream.state[1])
    a, b = layer(x), layer(x)
    assert not torch.equal(a, b)
    assert int(layer.stream.state[1]) == off0 + 2 * 96
    layer.eval()
    assert not torch.equal(layer(x), layer(x)), "mode 'on' keeps the noise in eval()"
    layer.set_noise_mode("train")
    assert torch.equal(layer(x), layer(x))
    layer.set_noise_mode("off")
    off = int(layer.stream.state[1])
    y = layer(x)
    if isinstance(layer, fnn.RandomWeight):
        assert torch.equal(y, x * layer.mu)
    else:
        assert torch.equal(y, x)
    assert int(layer.stream.state[1]) == off  # no noise, no offset consumed
    layer.set_noise_mode("on")
    layer.train()


@pytest.mark.parametrize("layer", _layers(), ids=lambda m: type(m).__name__)
def test_layer_state_dict_round_trip(layer):
    x = torch.rand(2, 3, 4, 4)
    layer(x)
    for p in layer.parameters():
        with torch.no_grad():
            p.add_(0.01)
    fresh = type(layer).__new__(type(layer))
    fresh.__dict__ = {}
    fresh = {fnn.GaussianNoise: lambda: fnn.GaussianNoise(0.3, seed=99),
             fnn.LearnableNoise: lambda: fnn.LearnableNoise((3, 1, 1), seed=99),
             fnn.RandomWeight: lambda: fnn.RandomWeight((3, 4, 4), seed=99),
             fnn.SAL: lambda: fnn.SAL(3, seed=99, feature_shape=tuple(layer.w.shape) if layer.w.shape[1] > 1 else None),
             }[type(layer)]()
    fresh.load_state_dict(layer.state_dict())
    assert torch.equal(fresh(x), layer(x))  # same parameters, same stream position


def test_layer_gradients_flow_to_parameters():
    for layer in _layers()[1:]:
        x = torch.rand(2, 3, 4, 4, requires_grad=True)
        layer(x).square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        for name, p in layer.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{type(layer).__name__}.{name}"


def test_layer_compiled_matches_eager_and_advances():
    eager, comp = fnn.SAL(3, seed=7), fnn.SAL(3, seed=7)
    f = torch.compile(comp, fullgraph=True)
    x = torch.rand(2, 3, 4, 4)
    for _ in range(2):
        torch.testing.assert_close(f(x), eager(x), rtol=1e-6, atol=1e-6)
    assert comp.stream.state.tolist() == eager.stream.state.tolist()


def test_compiled_layer_gradients_use_the_forward_draw():
    """The backward regenerates the forward's noise under torch.compile too: the state saved for it must not
    alias the stream buffer that advances after the draw (PhiloxStream.next, design note 43)."""
    x = torch.randn(4, 8)
    grads = []
    for compiled in (False, True):
        m = fnn.LearnableNoise((8,), seed=5)
        f = torch.compile(m, fullgraph=True) if compiled else m
        for _ in range(2):
            f(x).square().sum().backward()
        grads.append(m.sigma.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-5)


def test_random_weight_constrain():
    torch.manual_seed(0)
    r = fnn.RandomWeight((3, 4, 4), sigma_init=0.3)
    with torch.no_grad():
        r.sigma.uniform_(-0.5, 1.0)
    r.constrain_(10.0, 12.0)
    assert (r.sigma >= 0).all() and 10.0 - 1e-4 <= r.sigma.sum().item() <= 12.0 + 1e-4
    assert abs(r.sigma.sum().item() - 10.0) < 1e-4 or abs(r.sigma.sum().item() - 12.0) < 1e-4
    r.constrain_(100.0, 200.0)
    assert abs(r.sigma.sum().item() - 100.0) < 1e-3
    before = r.sigma.detach().clone()
    r.constrain_(50.0, 150.0)  # inside: unchanged
    assert torch.equal(before, r.sigma.detach())
    with pytest.raises(ValueError, match="lower must be <= upper"):
        r.constrain_(3.0, 2.0)


def test_layer_bad_arguments():
    with pytest.raises(ValueError, match="sigma must be a finite number"):
        fnn.GaussianNoise(-1.0)
    with pytest.raises(ValueError, match="init_std must be a finite number"):
        fnn.SAL(3, init_std=0.0)
    with pytest.raises(ValueError, match="feature_shape must start with channels"):
        fnn.SAL(3, feature_shape=(4, 2, 2))
    with pytest.raises(TypeError, match="shape must be an int"):
        fnn.RandomWeight((3.0, 2))
