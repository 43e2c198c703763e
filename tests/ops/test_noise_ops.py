"""The noise of noise_add / noise_mul / noise_sal (stream, memory), shared by the three ops.

The per-op conformance specs: tests/ops/test_noise_add.py, test_noise_mul.py, test_noise_sal.py; the
layers: tests/nn/test_noise_layers.py."""
import math

import pytest
import torch

import fastnoise
from fastnoise.ops import noise_add, noise_mul, noise_sal
from fastnoise.reference import noise as ref_noise
from conformance import backends_on

CPU_BACKENDS = backends_on("cpu", "noise")


# ---- the noise itself --------------------------------------------------------------------------

@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_delta_is_the_rng_normal_stream(backend):
    n, seed, offset = 1001, 77, 13
    y = noise_add(torch.zeros(n), 1.0, seed=seed, offset=offset, backend=backend)
    want = fastnoise.rng.normal(n, seed, offset, backend=backend if backend != "reference" else "reference")
    assert torch.equal(y, want)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_forward_and_backward_noise_bit_identical(backend):
    shape = (3, 4, 5, 6)
    # add, per-element sigma of ones on x = 0: y = delta, dL/dsigma = g * delta with g = 1
    sigma = torch.ones(shape, requires_grad=True)
    y = noise_add(torch.zeros(shape), sigma, seed=5, offset=2, backend=backend)
    y.sum().backward()
    assert torch.equal(sigma.grad, y.detach())
    # add, scalar and per-channel sigma: dL/dsigma = the forward's delta summed (up to summation order)
    for sh in [(), (4, 1, 1)]:
        s = torch.ones(sh, requires_grad=True)
        y = noise_add(torch.zeros(shape), s, seed=5, offset=2, backend=backend)
        y.backward(torch.ones(shape))
        want = y.detach().double().sum_to_size((1,) * (4 - len(sh)) + sh).reshape(sh)
        torch.testing.assert_close(s.grad.double(), want, rtol=1e-6, atol=1e-5)
    # mul with batch 1, x = 1, mu = 0, sigma = 1: y = delta = dL/dsigma
    sig = torch.ones(shape[1:], requires_grad=True)
    y = noise_mul(torch.ones((1,) + shape[1:]), torch.zeros(shape[1:]), sig, seed=9, backend=backend)
    y.sum().backward()
    assert torch.equal(sig.grad, y.detach()[0])
    # sal with w = b = 0 on x = 0: y = delta, dL/db = delta / 2
    b = torch.zeros(shape[1:], requires_grad=True)
    y = noise_sal(torch.zeros((1,) + shape[1:]), torch.zeros(shape[1:]), b, seed=11, offset=3, backend=backend)
    y.sum().backward()
    assert torch.equal(2 * b.grad, y.detach()[0])


@pytest.mark.parametrize("backend", [b for b in CPU_BACKENDS if b != "reference"])
def test_offsets_and_seeds(backend):
    x = torch.zeros(64)
    a = noise_add(x, 1.0, seed=1, offset=0, backend=backend)
    assert torch.equal(a, noise_add(x, 1.0, seed=1, offset=0, backend=backend))
    b = noise_add(x, 1.0, seed=1, offset=64, backend=backend)
    c = noise_add(x, 1.0, seed=2, offset=0, backend=backend)
    assert not torch.equal(a, b) and not torch.equal(a, c)
    # a later offset is the same stream shifted
    long = noise_add(torch.zeros(70), 1.0, seed=1, offset=0, backend=backend)
    assert torch.equal(noise_add(torch.zeros(60), 1.0, seed=1, offset=5, backend=backend), long[5:65])
    # an explicit state equals seed/offset
    st = fastnoise.rng.make_state(1, 64)
    assert torch.equal(noise_add(x, 1.0, state=st, backend=backend), b)


def test_global_stream_advances_and_is_reproducible():
    x = torch.zeros(10)
    fastnoise.rng.manual_seed(5)
    a, b = noise_add(x, 1.0), noise_add(x, 1.0)
    assert not torch.equal(a, b)
    fastnoise.rng.manual_seed(5)
    assert torch.equal(noise_add(x, 1.0), a)
    # global slices are rounded to 4: the second call starts at offset 12
    assert torch.equal(b, noise_add(x, 1.0, seed=5, offset=12))


def test_state_handling_errors():
    x = torch.zeros(4)
    with pytest.raises(ValueError, match="offset requires seed"):
        noise_add(x, 1.0, offset=3)
    with pytest.raises(ValueError, match="either state or seed"):
        noise_add(x, 1.0, seed=1, state=fastnoise.rng.make_state(1))
    with pytest.raises(ValueError, match="seed must be an int in"):
        noise_add(x, 1.0, seed=-1)
    with pytest.raises(ValueError, match="x must have a batch dimension"):
        noise_mul(torch.tensor(1.0), torch.tensor(1.0), torch.tensor(0.5))


def test_noise_statistics():
    x = torch.zeros(64, 256)
    y = noise_add(x, torch.full((256,), 0.5), seed=3)
    assert abs(y.std().item() - 0.5) < 0.01 and abs(y.mean().item()) < 0.01
    m = noise_mul(torch.ones(64, 256), torch.full((256,), 2.0), 0.25, seed=3)
    assert abs(m.mean().item() - 2) < 0.01 and abs(m.std().item() - 0.25) < 0.01
    s = noise_sal(torch.zeros(64, 256), 0.0, 2 * math.log(0.3), seed=3)
    assert abs(s.std().item() - 0.3) < 0.01


# ---- memory: nothing of x's size saved beyond what the eager formula saves for x ----------------

def _saved_bytes(fn):
    """(bytes of all saved tensors, list of numels) of fn() via saved_tensors_hooks."""
    saved = []

    def pack(t):
        saved.append((t.numel(), t.numel() * t.element_size()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, saved


@pytest.mark.parametrize("op", ["add", "mul", "sal"])
@pytest.mark.parametrize("backend", [b for b in CPU_BACKENDS if b != "reference"])
def test_memory_no_delta_saved(op, backend, capsys):
    shape = (8, 3, 16, 16)
    n = math.prod(shape)
    x = torch.randn(shape, requires_grad=True)
    pc = torch.rand(3, 1, 1, requires_grad=True)
    pf = torch.rand(shape[1:], requires_grad=True)
    delta = fastnoise.rng.normal(n, 1).reshape(shape)
    if op == "add":
        ours = lambda: noise_add(x, pc, seed=1, backend=backend)
        eager = lambda: ref_noise.add(x, pc, delta)
    elif op == "mul":
        ours = lambda: noise_mul(x, pf, pc, seed=1, backend=backend)
        eager = lambda: ref_noise.mul(x, pf, pc, delta)
    else:
        ours = lambda: noise_sal(x, pf, pc, seed=1, backend=backend)
        eager = lambda: ref_noise.sal(x, pf, pc, delta)
    y, saved = _saved_bytes(ours)
    _, saved_ref = _saved_bytes(eager)
    big = [b for k, b in saved if k >= n]
    big_ref = [b for k, b in saved_ref if k >= n]
    with capsys.disabled():
        print(f"\n[memory] noise_{op} ({backend}): saved {sum(b for _, b in saved)} B total, "
              f"{sum(big)} B of x's size; eager formula: {sum(b for _, b in saved_ref)} B total, {sum(big_ref)} B "
              f"of x's size (x is {n * 4} B)")
    x_saved_by_ref = 1 if op != "add" else 0  # the eager formula keeps x (mul, sal) and delta
    assert len(big) == x_saved_by_ref, f"saved tensors of x's size: {big}"
    assert len(big_ref) >= x_saved_by_ref + 1  # the eager formula also saves delta (or an x-sized product)
    assert sum(big) < sum(big_ref)
    y.sum().backward()  # still differentiable


# ---- the CPU kernel's paths: scalar / per-channel parameters (one value per run) and vector lanes -----

_PARAMS = {"scalar": lambda C: (), "per-channel": lambda C: (C, 1, 1), "per-element": lambda C: (C, 7, 9)}


@pytest.mark.parametrize("layout", sorted(_PARAMS))
@pytest.mark.parametrize("op", ["add", "mul", "sal"])
def test_cpu_parameter_runs_match_reference(op, layout):
    """Scalar and per-channel parameters take the CPU kernel's per-run path (the values as scalars, native
    vectors over each run), per-element ones the gathered path; 7 x 9 = 63 elements per channel puts run ends
    inside vectors and chunks, and 2 x 40 channels spread the work over several parallel ranges. Forward and
    every gradient against the reference backend (harness tolerances)."""
    if "cpu" not in CPU_BACKENDS:
        pytest.skip("the cpu backend is not built")
    C = 40
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, C, 7, 9, generator=g) * 3
    shp = _PARAMS[layout](C)
    a = (0.5 + torch.rand(shp, generator=g))
    b = (0.1 + torch.rand(shp, generator=g))
    outs = {}
    for backend in ("reference", "cpu"):
        xx, aa, bb = (t.clone().requires_grad_(True) for t in (x, a, b))
        if op == "add":
            y = noise_add(xx, aa, seed=9, offset=5, backend=backend)
            params = (xx, aa)
        elif op == "mul":
            y = noise_mul(xx, aa, bb, seed=9, offset=5, backend=backend)
            params = (xx, aa, bb)
        else:
            y = noise_sal(xx, aa - 1.0, bb - 2.0, seed=9, offset=5, backend=backend)
            params = (xx, aa, bb)
        gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
        grads = torch.autograd.grad(y, params, gy)
        outs[backend] = (y.detach(), grads)
    (yr, gr), (yc, gc) = outs["reference"], outs["cpu"]
    torch.testing.assert_close(yc, yr, rtol=1e-5, atol=1e-5)
    for u, v in zip(gc, gr):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4)


def test_cpu_sal_exp_special_values():
    """noise_sal's exp (Cephes, vectorized on the CPU) at the edges: underflow to 0, overflow to inf, NaN
    and +-inf inputs, in vector lanes and in the scalar tail, against the reference backend."""
    if "cpu" not in CPU_BACKENDS:
        pytest.skip("the cpu backend is not built")
    vals = torch.tensor([-1e4, -300.0, -208.0, -150.0, -50.0, -1.0, 0.0, 1e-3, 1.0, 50.0, 150.0, 177.0, 178.0,
                         200.0, 1e4, float("inf"), float("-inf"), float("nan")])
    x = vals.repeat(5)[:83]  # 83 = 5 vectors of 16 + a tail of 3
    for backend in ("reference", "cpu"):
        y = noise_sal(x, 1.0, 0.0, seed=4, offset=0, backend=backend)
        if backend == "reference":
            want = y
    d = fastnoise.rng.normal(x.numel(), 4, 0)
    assert torch.equal(torch.isnan(y), torch.isnan(want)), (x, y, want)
    assert torch.equal(torch.isinf(y), torch.isinf(want))
    fin = torch.isfinite(want)
    torch.testing.assert_close(y[fin], want[fin], rtol=2e-6, atol=0.0)
    # exp itself: (y - x) / delta where delta is not tiny and x finite
    ok = (x.abs() <= 1) & (d.abs() > 0.1)
    torch.testing.assert_close((y[ok] - x[ok]) / d[ok], torch.exp(x[ok] / 2), rtol=1e-5, atol=1e-37)
