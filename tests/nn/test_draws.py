"""Batched noise draws (fastnoise/nn/draws.py): EOT, ensembles and inference draws run as forwards of the
replicated batch give the values of the sequential passes for the same Philox streams."""
import pytest
import torch

import fastnoise
from fastnoise import models
from fastnoise.attacks import EOTModel, make_attack
from fastnoise.attacks.evaluate import _correct
from fastnoise.nn import MeanSoftmax, NoiseModule
from fastnoise.nn.draws import batchable, draw_outputs


def _rse(ensemble: int = 0) -> torch.nn.Module:
    torch.manual_seed(0)
    m = fastnoise.convert(models.build("small_cnn", 10, 1, 8, width=4, hidden=16), "rse", sigma=0.2, seed=3)
    return (MeanSoftmax(m, ensemble) if ensemble else m).eval()


def _data(n: int = 6):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


class _TorchRngNoise(NoiseModule):
    def forward(self, x):
        return x + torch.randn_like(x)


@pytest.mark.parametrize("ensemble", [0, 3])
@pytest.mark.parametrize("max_batch", [4096, 13])
def test_eot_logits_equal_sequential(ensemble, max_batch):
    x, _ = _data()
    seq = EOTModel(_rse(ensemble), 4, batch=False)(x)
    if ensemble:
        m = _rse(ensemble)
        m.max_batch = max_batch
    else:
        m = _rse()
    bat = EOTModel(m, 4, batch=True, max_batch=max_batch)(x)
    # the same noise (test_noise_draws_identical); MKL / oneDNN may round a sample differently by batch size
    torch.testing.assert_close(bat, seq, rtol=1e-5, atol=1e-6)


def test_noise_draws_identical():
    x, _ = _data()
    got = {}
    for batch in (False, True):
        m = _rse(2)
        first = fastnoise.nn.noise_modules(m)[0]  # its input is x itself: its outputs compare bit for bit
        outs = []
        first.register_forward_hook(lambda mod, inp, out: outs.append(out.detach()))
        EOTModel(m, 3, batch=batch, max_batch=12)(x)
        got[batch] = torch.cat(outs)
    assert got[False].shape == (3 * 2 * len(x), 1, 8, 8) and torch.equal(got[False], got[True])


def test_offsets_advance_like_sequential_passes():
    x, _ = _data()
    m1, m2 = _rse(), _rse()
    draw_outputs(m1, x, 5, batch=False)
    draw_outputs(m2, x, 5, batch=True, max_batch=12)
    s1 = [m.stream.state for m in fastnoise.nn.noise_modules(m1)]
    s2 = [m.stream.state for m in fastnoise.nn.noise_modules(m2)]
    assert all(torch.equal(a, b) for a, b in zip(s1, s2)) and int(s1[0][1]) == 5 * x.numel()


def test_pgd_adversarial_examples_identical():
    x, y = _data()
    advs, counts = [], []
    for batch in (False, True):
        atk = make_attack("pgd20", _rse(2), 0.2, eot=3, steps=3, eot_batch=batch)
        torch.manual_seed(0)
        advs.append(atk(x, y))
        counts.append((atk.forward_calls, atk.forward_samples))
    # sign steps on gradients equal up to rounding: the same examples but where a gradient entry is ~0
    assert float((advs[0] == advs[1]).float().mean()) > 0.99 and not torch.equal(advs[0], x)
    assert counts[0] == counts[1] == (3 * 3, 3 * 3 * len(x))  # draws counted alike


def test_inference_draws_equal_sequential():
    x, y = _data(7)
    seq = _correct(_rse(2), x, y, 3, 4, 0, 10, batch=False)
    bat = _correct(_rse(2), x, y, 3, 4, 0, 10, batch=True, max_batch=7)
    assert seq.shape == bat.shape == (4, 7) and float((seq == bat).float().mean()) > 0.9


def test_batchable_rules():
    m = _rse()
    assert batchable(m)
    assert not batchable(m.train())  # train-mode BatchNorm mixes the samples of a batch
    m.eval()
    assert not batchable(torch.nn.Sequential(_TorchRngNoise(), m).eval())  # torch-RNG noise: sequential passes
    assert batchable(torch.nn.Sequential(_TorchRngNoise().set_noise_mode("off"), m).eval())  # inactive: no draws
    with pytest.raises(TypeError, match="batch must be None"):
        EOTModel(m, 2, batch="yes")
    with pytest.raises(ValueError, match="max_batch"):
        EOTModel(m, 2, max_batch=0)
