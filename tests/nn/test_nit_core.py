"""fastnoise.nit_core: the NIT / NIT-S / NIT-S+ steps, chunked replicas (peak memory follows the chunk, not
C), the projection Pi_Omega, the STBP / STBP-N baselines on the same network, and the errors."""
import pytest
import torch

from fastnoise import data, models
from fastnoise import nit_core as nc
from fastnoise.nn import lr_layers


def _spiking(**kw):
    return models.build("spiking_mlp", 4, 1, 8, hidden=48, steps=4, seed=0, sigma_init=0.5, **kw)


def test_peak_memory_follows_the_chunk_not_the_replicas():
    torch.manual_seed(0)
    m = _spiking()
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 4, (32,))
    peak = {}
    for C, chunk in ((4, 4), (32, 4), (32, 32)):
        _, peak[(C, chunk)] = nc.peak_memory(lambda: nc.lr_estimate(m, x, y, replicas=C, chunk=chunk))
    assert peak[(32, 4)] <= 1.2 * peak[(4, 4)], peak
    assert peak[(32, 32)] >= 4 * peak[(4, 4)], peak


def test_nit_training_reduces_the_loss():
    torch.manual_seed(0)
    sp = data.load("synthetic")
    x, y = sp.train.tensors()
    for model, estimator, gain in ((models.build("lr_mlp", 4, 1, 8, width=32, depth=1, sigma_init=0.5, seed=0), "nit", 0.8),
                                   (_spiking(), "nit", 0.8), (_spiking(), "nit_s", 0.9)):  # NIT-S: slower (seed §4.3)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        first = nc.lr_estimate(model, x[:64], y[:64], replicas=8)["loss"]
        for i in range(25):
            idx = torch.randint(0, len(y), (64,))
            nc.nit_step(model, x[idx], y[idx], opt, replicas=8, estimator=estimator)
        last = nc.lr_estimate(model, x[:64], y[:64], replicas=8)["loss"]
        assert last < gain * first, (estimator, first, last)
        assert nc.accuracy(model, x[:128], y[:128]) > 0.4  # 4 classes: chance 0.25


def test_projection_and_bounds():
    m = _spiking()
    with torch.no_grad():
        for layer in lr_layers(m):
            layer.weight.mul_(100)
            layer.sigma.fill_(0.0)
    nc.project_(m, nc.Bounds(theta=0.5, sigma_lo=0.1, sigma_hi=2.0))
    for layer in lr_layers(m):
        assert layer.weight.abs().max() <= 0.5 and layer.bias.abs().max() <= 0.5
        assert torch.all(layer.sigma == 0.1)
    with pytest.raises(ValueError, match="sigma_lo must be <= sigma_hi"):
        nc.Bounds(sigma_lo=2.0, sigma_hi=1.0)
    with pytest.raises(ValueError, match=r"sigma_lo must be a finite number in \(0.0"):
        nc.Bounds(sigma_lo=0.0)


def test_nit_s_plus_schedule():
    assert [nc.estimator_for_epoch("nit_s+", e, 70) for e in (1, 70, 71, 100)] == ["nit_s", "nit_s", "nit", "nit"]
    assert nc.estimator_for_epoch("nit", 5) == "nit" and nc.estimator_for_epoch("nit_s", 99) == "nit_s"
    with pytest.raises(ValueError, match="method must be one of"):
        nc.estimator_for_epoch("sgd", 1)


def test_stbp_and_stbp_n_train_the_same_network():
    torch.manual_seed(0)
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 4, (16,))
    for noise in (False, True):
        m = _spiking()
        nc.set_sigma_(m, 1.0, trainable=False)          # STBP-N: standard-normal noise, sigma not trained
        w0 = lr_layers(m)[0].weight.detach().clone()
        opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
        out = nc.stbp_step(m, x, y, opt, noise=noise)
        assert out["loss"] > 0 and not torch.equal(lr_layers(m)[0].weight, w0)
        assert all(torch.all(layer.sigma == 1.0) for layer in lr_layers(m))


def test_errors_name_the_argument():
    m = _spiking()
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 4, (4,))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"replicas must be an int in \[1"):
        nc.nit_step(m, x, y, opt, replicas=0)
    with pytest.raises(ValueError, match=r"chunk must be an int in \[1"):
        nc.nit_step(m, x, y, opt, replicas=4, chunk=0)
    with pytest.raises(ValueError, match="needs >= 2 replicas in every chunk"):
        nc.nit_step(m, x, y, opt, replicas=5, chunk=2)
    with pytest.raises(ValueError, match="estimator must be one of"):
        nc.nit_step(m, x, y, opt, estimator="lr")
    with pytest.raises(ValueError, match="baseline must be one of"):
        nc.nit_step(m, x, y, opt, baseline="median")
    with pytest.raises(ValueError, match="model has no LR layers"):
        nc.nit_step(models.build("mlp", 4, 1, 8), x, y, opt)
    nc.nit_step(m, x, y, opt, replicas=1, baseline="clean")     # C = 1 works with the clean baseline
