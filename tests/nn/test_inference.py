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


def test_eot_counts_noise_draws_per_gradient_through_an_ensemble():
    """evaluate's EOT-n means n noise draws per attack gradient: an ensemble of k draws per forward is run
    ceil(n / k) times per gradient (fewer draws would weaken the attack, more would cost k times as much)."""
    from fastnoise.attacks import evaluate
    from fastnoise.nn import draws_per_forward
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), GaussianNoise(0.3, seed=1), torch.nn.Linear(4, 3))
    x, y = torch.rand(6, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    assert draws_per_forward(model) == 1 and draws_per_forward(MeanSoftmax(model, 4)) == 4
    plain = evaluate(model, (x, y), "pgd20", 0.1, eot=8, draws=1, protocol=("eot",), sanity_eps=None,
                     eot_curve=[1, 8], steps={"pgd20": 2})
    ens = evaluate(MeanSoftmax(model, 4), (x, y), "pgd20", 0.1, eot=8, draws=1, protocol=("eot",), sanity_eps=None,
                   eot_curve=[1, 8], steps={"pgd20": 2})
    rp, re = plain["rows"][0], ens["rows"][0]
    assert (rp["eot"], rp["draws_per_gradient"]) == (8, 8) and (re["eot"], re["draws_per_gradient"]) == (2, 8)
    assert re["forwards_per_sample"] * 4 == rp["forwards_per_sample"] == 2 * 8  # same noise draws per sample
    assert [p["draws_per_gradient"] for p in ens["eot_curve"]["points"]] == [4, 8]  # 1 draw: at least one pass
    assert ens["settings"]["draws_per_forward"] == 4 and "4 noise draws per forward" in " ".join(ens["settings"]["notes"])
    with pytest.raises(ValueError, match="draws_per_forward must be an int >= 1"):
        draws_per_forward(type("Bad", (torch.nn.Module,), {"draws_per_forward": 0})())
