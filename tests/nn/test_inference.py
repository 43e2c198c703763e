"""Inference rules as modules (fastnoise/nn/inference.py): MeanSoftmax."""
import pytest
import torch

from fastnoise.nn import GaussianNoise, MeanSoftmax, is_randomized


def test_one_pass_is_log_softmax_and_n_passes_average_probabilities():
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 3)
    x = torch.randn(4, 5)
    torch.testing.assert_close(MeanSoftmax(lin, 1)(x), torch.log_softmax(lin(x), 1), rtol=1e-6, atol=1e-6)
    model = torch.nn.Sequential(GaussianNoise(1.0, seed=3), lin)
    ens = MeanSoftmax(model, 3)
    assert is_randomized(ens)
    out = ens(x)
    model[0].stream.reseed(3, 0)
    expect = torch.stack([torch.softmax(model(x), 1) for _ in range(3)]).mean(0).log()
    torch.testing.assert_close(out, expect, rtol=1e-6, atol=1e-6)
    assert torch.allclose(out.exp().sum(1), torch.ones(4))
    x.requires_grad_(True)
    ens(x).sum().backward()  # differentiable: an attack on it attacks the rule
    assert x.grad.abs().sum() > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="n must be"):
        MeanSoftmax(torch.nn.Linear(2, 2), 0)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        MeanSoftmax("model", 2)
