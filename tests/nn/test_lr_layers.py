"""fastnoise.nn.LRLinear / LRConv2d: the noise layout the estimator assumes, what a recorded forward keeps
(the input, as bits for spikes, and the noise state; never eps), lr_gradients against the estimator
computed by hand, the LR estimate against the pathwise gradient of a smooth network (seed Eq. 1), and
the errors (wrong loss shape, a state that is not the forward's, no record)."""
import importlib

import pytest
import torch
import torch.nn.functional as F

import fastnoise
from fastnoise.methods import nit as nc
from fastnoise.models import LRMLP
from fastnoise.nn import LRConv2d, LRLinear, recording
from fastnoise.reference.rng import normal_np

lr = importlib.import_module("fastnoise.ops.lr_grad")


def _eps(state, n):
    seed, offset = state.tolist()
    return torch.from_numpy(normal_np(seed, offset, n))


def test_lrlinear_noise_layout_and_record():
    torch.manual_seed(0)
    fc = LRLinear(5, 4, sigma_init=0.7, seed=11)
    x = torch.randn(3, 5)
    with recording(fc):
        y = fc(x, replicas=2, steps=4)                           # [T, B*C, N] = [4, 6, 4]
    rec = fc.record
    assert y.shape == (4, 6, 4) and rec.rows == 24 and rec.replicas == 2 and rec.samples == 3
    pre = (x @ fc.weight.t() + fc.bias).repeat_interleave(2, 0).expand(4, 6, 4)
    eps = _eps(rec.state, 24 * 4).view(4, 6, 4)                 # eps[r, n] = normal(offset + r N + n)
    torch.testing.assert_close(y, pre + 0.7 * eps, rtol=1e-5, atol=1e-5)
    assert torch.equal(rec.x, x)                                 # stored once for 2 replicas x 4 steps
    assert all(t.numel() != eps.numel() for t in (rec.x, rec.state))
    assert torch.equal(fc.stream.state[1] - rec.state[1], torch.tensor(96))  # the stream advanced past it


def test_spike_input_is_recorded_as_bits():
    fc = LRLinear(500, 10, binary_input=True, seed=0)
    s = (torch.rand(8, 256, 500) < 0.2).float()                  # [T, B, in] spikes
    with recording(fc), torch.no_grad():
        fc(s)
    rec = fc.record
    assert isinstance(rec.x, lr.SpikeBits) and rec.x.words.dtype == torch.int32
    assert rec.x.nbytes == 8 * 256 * 16 * 4 and s.numel() * 4 == 32 * rec.x.nbytes * 500 / 512
    assert torch.equal(lr.unpack_spikes(rec.x), s.view(-1, 500))
    with pytest.raises(ValueError, match="x must be binary"), recording(fc):
        fc(s * 0.5)


def test_lr_gradients_equal_the_estimator_and_accumulate():
    torch.manual_seed(1)
    fc = LRLinear(6, 3, sigma_init=0.5, seed=2)
    x = torch.randn(4, 6)
    with recording(fc), torch.no_grad():
        fc(x, replicas=5)
    rec = fc.record
    w = torch.randn(20)
    want = lr.lr_grad(x, w, fc.sigma.detach(), rec.state, repeat=5, backend="reference")
    g = fc.lr_gradients(w, release=False)
    for a, b in zip(g, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fc.weight.grad, want.weight)
    torch.testing.assert_close(fc.sigma.grad, want.sigma)
    fc.lr_gradients(w.view(4, 5), state=rec.state)               # [B, C] weights, the forward's state
    torch.testing.assert_close(fc.bias.grad, 2 * want.bias)      # accumulates like backward()
    assert fc.record is None                                     # released


def test_lr_gradient_errors_name_the_argument():
    fc = LRLinear(6, 3, seed=2)
    with pytest.raises(RuntimeError, match="no recorded forward"):
        fc.lr_gradients(torch.ones(4))
    with recording(fc), torch.no_grad():
        fc(torch.randn(4, 6), replicas=2)
    with pytest.raises(ValueError, match=r"loss_weights must have shape \[B\*C\] = \[8\] or \[B, C\] = \[4, 2\]"):
        fc.lr_gradients(torch.ones(7))
    with pytest.raises(ValueError, match=r"loss_weights must have shape"):
        fc.lr_gradients(torch.ones(2, 4))
    other = fastnoise.rng.make_state(5, 0)
    with pytest.raises(ValueError, match="state .* does not match the noise state of the recorded forward"):
        fc.lr_gradients(torch.ones(8), state=other)
    with torch.no_grad():
        fc.sigma.fill_(0.0)
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        fc.lr_gradients(torch.ones(8))
    with pytest.raises(ValueError, match=r"sigma_init must be a finite number in \(0.0"):
        LRLinear(3, 2, sigma_init=0.0)
    with pytest.raises(ValueError, match=r"sigma_init must be a finite number in \(0.0"):
        LRConv2d(3, 2, 3, sigma_init=-1.0)


@pytest.mark.parametrize("binary,repeat,steps", [(False, 1, 1), (False, 3, 2), (True, 2, 3)])
def test_lrconv2d_estimator_matches_the_stored_eps_formula(binary, repeat, steps):
    torch.manual_seed(3)
    conv = LRConv2d(2, 3, 3, stride=1, padding=1, sigma_init=0.6, binary_input=binary, seed=4)
    x = (torch.rand(4, 2, 5, 6) < 0.4).float() if binary else torch.randn(4, 2, 5, 6)
    with recording(conv), torch.no_grad():
        y = conv(x, replicas=repeat, steps=steps)
    rec = conv.record
    R, N, P = rec.rows, 3, 30
    eps = _eps(rec.state, R * N * P).view(R, N, 5, 6)
    pre = F.conv2d(x, conv.weight, conv.bias, padding=1).repeat_interleave(repeat, 0)
    torch.testing.assert_close(y.reshape(R, N, 5, 6), pre.repeat(steps, 1, 1, 1) + 0.6 * eps, rtol=1e-5, atol=1e-5)
    w = torch.randn(4 * repeat)
    for sign in (False, True):
        g = conv.lr_gradients(w, sign=sign, release=False, backend="reference")
        r = torch.arange(R)
        Wr = w[r % w.numel()].view(R, 1, 1, 1)
        f = Wr * (torch.where(eps >= 0, 1.0, -1.0) if sign else eps)
        cols = F.unfold(x, 3, padding=1)[(r // repeat) % 4]        # [R, C*9, P]
        xs = torch.sign(cols) if sign else cols
        gw = torch.einsum("rnp,rkp->nk", f.view(R, N, P), xs).view(3, 2, 3, 3)
        gb = f.sum(dim=(0, 2, 3))
        if not sign:
            gw, gb = gw / 0.6, gb / 0.6
        torch.testing.assert_close(g.weight, gw, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(g.bias, gb, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(g.sigma, (Wr * (eps ** 2 - 1)).sum(dim=(0, 2, 3)) / 0.6, rtol=1e-4, atol=1e-4)
    cpu = conv.lr_gradients(w, backend="cpu")                    # eps regenerated by the CPU stream
    for a, b in zip(cpu, conv_ref(conv, x, w, rec, repeat)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def conv_ref(conv, x, w, rec, repeat):
    bits = lr.pack_spikes(x.flatten(1)) if conv.binary_input else x
    return lr.lr_grad_conv2d(bits, w, conv.sigma.detach(), rec.state, in_shape=x.shape[1:],
                             weight_shape=conv.weight.shape, padding=1, rows=rec.rows, repeat=repeat,
                             backend="reference", chunk_elements=64)


def test_lr_estimate_agrees_with_the_pathwise_gradient():
    """Acceptance (seed Eq. 1): a small smooth network (tanh, Gaussian noise): with many replicas the LR
    estimate points where backprop through the same noisy objective does."""
    torch.manual_seed(0)
    m = LRMLP(3, 1, (1, 4), width=16, depth=1, activation="tanh", sigma_init=0.5, seed=1)
    x, y = torch.randn(8, 1, 1, 4), torch.randint(0, 3, (8,))
    few = nc.lr_vs_pathwise(m, x, y, replicas=16, pathwise_replicas=8192)
    many = nc.lr_vs_pathwise(m, x, y, replicas=4096, pathwise_replicas=8192)
    assert many["cosine"] >= 0.95, many
    assert many["rel_error"] < few["rel_error"]


def test_lr_conv_estimate_agrees_with_the_pathwise_gradient():
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        supports_replicas = True

        def __init__(self):
            super().__init__()
            self.conv = LRConv2d(1, 2, 3, sigma_init=0.5, seed=3)
            self.fc = LRLinear(2 * 16, 3, sigma_init=0.5, seed=4)

        def forward(self, x, replicas=1):
            return self.fc(torch.tanh(self.conv(x, replicas=replicas)).flatten(1))

    net = Net()
    x, y = torch.randn(4, 1, 6, 6), torch.randint(0, 3, (4,))
    out = nc.lr_vs_pathwise(net, x, y, replicas=4096, pathwise_replicas=4096)
    assert out["cosine"] >= 0.9, out


def test_no_eps_is_saved_for_backward_stbp_n():
    """STBP-N (backprop through the noisy layer): autograd keeps no tensor holding the noise."""
    fc = LRLinear(8, 6, sigma_init=1.0, seed=9)
    x = torch.randn(5, 8, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        with recording(fc):
            y = fc(x, replicas=2)
    eps = _eps(fc.record.state, y.numel()).view_as(y)
    y.sum().backward()
    assert not any(t.shape == eps.shape and torch.allclose(t.float(), eps, atol=1e-5) for t in saved)
    assert x.grad is not None and fc.sigma.grad is not None
