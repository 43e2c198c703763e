"""fastnoise.ops.lif_noise (LIF neurons fed pre + sigma * eps, seed Eq. 7, in one kernel) in the conformance
harness; its noise is noise_add's layout (so lr_grad regenerates it) and it equals the unfused
noise_add + fastnoise.nn.LIF path."""
import pytest
import torch

import fastnoise
from conformance import Spec, backend_params, bad_inputs, install
from fastnoise.nn import LIF, LRConv2d, LRLinear, recording
from fastnoise.ops import lif_noise, noise_add

SEED, OFFSET = 99, 7
# (S, B, F, T, C, inner): direct (S = 1) and sequence inputs, replicas, per-channel sigma (inner > 1), empty
SHAPES = [(1, 3, 7, 4, 2, 1), (3, 2, 12, 3, 1, 4), (1, 2, 33, 2, 3, 1), (1, 0, 6, 2, 2, 3)]


def _make(shape, dtype, device, gen):
    S, B, F, T, C, inner = shape
    return {"pre": (torch.randn(S, B, F, generator=gen, dtype=dtype) * 0.8 + 0.5).to(device),
            "sigma": (0.2 + torch.rand(F // inner, generator=gen, dtype=dtype)).to(device),
            "state": fastnoise.rng.make_state(SEED, OFFSET, device), "steps": T, "replicas": C, "inner": inner}


def _fn(backend, pre, sigma, state, steps, replicas, inner, decay=0.6, threshold=1.0):
    return lif_noise(pre, sigma, state, steps=steps, replicas=replicas, inner=inner, decay=decay, threshold=threshold,
                     backend=backend)


def _op_call(inputs, backend):
    return torch.ops.fastnoise.lif_noise.default, (inputs["pre"], inputs["sigma"].float(), inputs["state"],
                                                    inputs["steps"], inputs["replicas"], inputs["inner"], 0.6, 1.0,
                                                    backend)


LIF_NOISE = Spec(
    name="lif_noise", family="lr_grad", kernels=("lif_noise",), fn=_fn, make=_make, shapes=SHAPES, gradcheck=False, op_call=_op_call, noncontig_inputs=("pre",),
    bad_inputs=[
        ("decay-high", bad_inputs(decay=1.5), ValueError, r"decay must be a finite number in \[0.0, 1.0\]"),
        ("decay-negative", bad_inputs(decay=-0.5), ValueError, r"decay must be a finite number in \[0.0, 1.0\]"),
        ("threshold-zero", bad_inputs(threshold=0.0), ValueError, r"threshold must be a finite number in \(0.0"),
        ("steps-zero", bad_inputs(steps=0), ValueError, r"steps must be an int in \[1"),
        ("replicas-zero", bad_inputs(replicas=0), ValueError, r"replicas must be an int in \[1"),
        ("steps-mismatch", bad_inputs(pre=lambda i: i["pre"].expand(2, -1, -1)), ValueError, "pre must have 1 or steps"),
        ("sigma-negative", bad_inputs(sigma=lambda i: -i["sigma"]), ValueError, "sigma must be finite and >= 0"),
        ("sigma-size", bad_inputs(sigma=lambda i: i["sigma"][:-1]), ValueError, "sigma must be 1-D with sigma.numel"),
        ("pre-2d", bad_inputs(pre=lambda i: i["pre"][0]), ValueError, "pre must be a 3-D"),
        ("state-dtype", bad_inputs(state=torch.tensor([1.0, 2.0])), ValueError, "state must be an int64 tensor"),
    ])

install(globals(), [LIF_NOISE])


@pytest.mark.parametrize("backend,device", [pytest.param("reference", "cpu", id="reference-cpu")] + backend_params())
def test_lif_noise_uses_noise_adds_layout_and_equals_the_unfused_path(backend, device):
    g = torch.Generator().manual_seed(0)
    S, B, F, T, C = 1, 4, 40, 4, 2
    pre = (torch.randn(S, B, F, generator=g) * 0.7 + 0.4).to(device)
    sigma = (0.3 + torch.rand(F, generator=g)).to(device)
    st = fastnoise.rng.make_state(5, 3, device)
    fused = lif_noise(pre, sigma, st, steps=T, replicas=C, decay=0.5, threshold=1.0, backend=backend)
    v = noise_add(pre.repeat_interleave(C, 1).expand(T, B * C, F).contiguous(), sigma, state=st, backend=backend)
    unfused = LIF(0.5, 1.0)(v)
    assert torch.equal(fused, unfused)
    assert 0.1 < fused.mean().item() < 0.9


def test_layers_fuse_noise_and_lif_without_changing_spikes_or_records():
    torch.manual_seed(0)
    for layer, x, kw in ((LRLinear(20, 30, sigma_init=0.5, seed=1), torch.rand(4, 20), {}),
                         (LRConv2d(2, 3, 3, padding=1, sigma_init=0.5, seed=2), torch.rand(4, 2, 5, 5), {})):
        lif = LIF(0.5, 0.3)
        st0 = layer.stream.state.clone()
        with recording(layer), torch.no_grad():
            fused = layer(x, replicas=3, steps=4, lif=lif)          # fused kernel
        rec = layer.record
        layer.stream.state.copy_(st0)
        with recording(layer):
            unfused = lif(layer(x.requires_grad_(True), replicas=3, steps=4))  # noise_add + LIF (autograd path)
        assert torch.equal(fused, unfused.detach())
        assert torch.equal(rec.state, layer.record.state) and torch.equal(rec.x, layer.record.x)
        x.requires_grad_(False)
