"""fastnoise.ops.lr_grad (the LR estimator of NIT, seed 002) in the conformance harness, plus its exact
and statistical properties: the regenerated eps is bit-identical to the forward's, the estimator's mean
is the true gradient (NIT, Eq. 1) or the Eq. 5 direction (NIT-S, Eq. 3), shared input rows (repeat)
equal the expanded rows, and spikes are kept as bits."""
import math

import pytest
import torch

import fastnoise
from conformance import MeanCheck, Spec, backend_params, bad_inputs, install
import importlib
from fastnoise.ops import noise_add

lr = importlib.import_module("fastnoise.ops.lr_grad")  # the module (fastnoise.ops.lr_grad is the function)
SEED, OFFSET = 4321, 10
# (Rx, K, N, repeat, J): rows = Rx * repeat * J; odd sizes, a K past one vector / word, shared rows, empty
SHAPES = [(5, 7, 3, 1, 1), (4, 33, 13, 3, 2), (9, 40, 17, 1, 2), (0, 5, 4, 1, 1), (3, 0, 5, 2, 1)]
FLOOR = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _state(device):
    return fastnoise.rng.make_state(SEED, OFFSET, device)


def _make(binary=False):
    def make(shape, dtype, device, gen):
        Rx, K, N, rep, J = shape
        x = (torch.rand(Rx, K, generator=gen) < 0.4).to(dtype) if binary else torch.randn(Rx, K, generator=gen, dtype=dtype)
        M = max(Rx * rep, 1)
        return {"x": x.to(device), "losses": torch.randn(M, generator=gen, dtype=dtype).to(device),
                "sigma": (0.3 + torch.rand(N, generator=gen, dtype=dtype)).to(device),
                "rows": Rx * rep * J, "repeat": rep, "state": _state(device)}
    return make


def _fn(sign=False, bits=False):
    def fn(backend, x, losses, sigma, rows, repeat, state):
        xx = lr.pack_spikes(x, backend=backend) if bits else x
        return tuple(lr.lr_grad(xx, losses, sigma, state, rows=rows, repeat=repeat, sign=sign, backend=backend))
    return fn


def _op_call(sign=False, bits=False):
    def call(inputs, backend):
        x = inputs["x"]
        xx = lr.pack_spikes(x).words if bits else x
        return torch.ops.fastnoise.lr_grad.default, (xx, inputs["losses"].float(), inputs["sigma"].float(),
                                                      inputs["state"], inputs["rows"], inputs["repeat"], x.shape[1],
                                                      sign, backend)
    return call


BAD = [
    ("sigma-zero", bad_inputs(sigma=lambda i: torch.cat([i["sigma"][:-1], i["sigma"].new_zeros(1)])), ValueError,
     "sigma must be finite and > 0"),
    ("sigma-negative", bad_inputs(sigma=lambda i: -i["sigma"]), ValueError, "sigma must be finite and > 0"),
    ("sigma-nan", bad_inputs(sigma=lambda i: i["sigma"] * float("nan")), ValueError, "sigma must be finite and > 0"),
    ("sigma-2d", bad_inputs(sigma=lambda i: i["sigma"].view(1, -1)), ValueError, "sigma must be a 1-D tensor"),
    ("losses-2d", bad_inputs(losses=lambda i: i["losses"].view(1, -1)), ValueError, "losses must be a 1-D tensor"),
    ("losses-count", bad_inputs(losses=lambda i: i["losses"][:-1]), ValueError, "losses must have M entries"),
    ("losses-nan", bad_inputs(losses=lambda i: i["losses"] * float("nan")), ValueError, "losses must be finite"),
    ("losses-int", bad_inputs(losses=lambda i: i["losses"].long()), TypeError, "losses must be a floating tensor"),
    ("x-int", bad_inputs(x=lambda i: i["x"].long()), TypeError, "x must be a floating tensor"),
    ("x-3d", bad_inputs(x=lambda i: i["x"].unsqueeze(0)), ValueError, "x must be a 2-D"),
    ("state-dtype", bad_inputs(state=torch.tensor([1.0, 2.0])), ValueError, "state must be an int64 tensor"),
    ("state-shape", bad_inputs(state=torch.tensor([1, 2, 3])), ValueError, r"state must be .* shape \(2,\)"),
    ("state-device", bad_inputs(state=lambda i: i["state"].to("meta")), ValueError, "state must be on the device"),
    ("repeat-zero", bad_inputs(repeat=0), ValueError, r"repeat must be an int in \[1"),
    ("rows-multiple", bad_inputs(rows=lambda i: i["rows"] + 1), ValueError, "rows must be a multiple of x rows"),
    ("rows-negative", bad_inputs(rows=-1), ValueError, r"rows must be an int in \[0"),
]



# ---- the statistical test kind: the estimator's mean over many draws -------------------------------
# One noisy linear layer v = W x + b + sigma eps with the quadratic loss L = sum_i (v_i - a_i)^2 on every
# row: the gradient of E[L] and the NIT-S direction have closed forms, d = W x + b - a:
#   dE[L]/dW_ij = 2 d_i x_j,  dE[L]/db_i = 2 d_i,  dE[L]/dsigma_i = 2 sigma_i          (NIT, Eq. 1)
#   E[L sign(eps_i) sgn(x_j)] = 2 d_i sigma_i sqrt(2/pi) sgn(x_j)                         (NIT-S, Eq. 3 / 5)
B, C, KQ, NQ = 4, 256, 3, 3


def _quad_problem(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, KQ, generator=g)
    x[0, 1] = 0.0  # an input of 0: its NIT-S entry has expectation 0
    W, b, a = torch.randn(NQ, KQ, generator=g), torch.randn(NQ, generator=g), torch.randn(NQ, generator=g)
    sigma = 0.5 + torch.rand(NQ, generator=g)
    return tuple(t.to(device) for t in (x, W, b, a, sigma))


def _quad_draw(sign):
    def draw(backend, device, i):
        x, W, b, a, sigma = _quad_problem(device)
        st = fastnoise.rng.make_state(1000 + i, 0, device)
        mu = (x @ W.t() + b).repeat_interleave(C, dim=0)           # rows b*C + c share input row b
        v = noise_add(mu, sigma, state=st, backend=backend)       # the forward (same backend, same stream)
        L = ((v - a) ** 2).sum(1)
        w = lr.loss_weights(L.view(B, C), "mean", scale=1.0 / (B * C))
        g = lr.lr_grad(x, w, sigma, st, repeat=C, sign=sign, backend=backend)
        return g.weight, g.bias, g.sigma
    return draw


def _quad_expected(sign):
    def expected(device):
        x, W, b, a, sigma = _quad_problem(device)
        d = x @ W.t() + b - a                                       # [B, N]
        if sign:
            c = 2 * sigma * math.sqrt(2 / math.pi)
            return (c.unsqueeze(1) * (d.t() @ torch.sign(x)) / B, c * d.mean(0), 2 * sigma)
        return 2 * d.t() @ x / B, 2 * d.mean(0), 2 * sigma
    return expected


NIT = Spec(name="lr_grad", family="lr_grad", kernels=("lr_grad",), fn=_fn(), make=_make(), shapes=SHAPES, gradcheck=False, op_call=_op_call(),
           noncontig_inputs=("x",), floor=FLOOR, bad_inputs=BAD,
           mean_checks=[MeanCheck("nit_eq1", _quad_draw(False), _quad_expected(False), draws=10, power=0.15)])
NIT_S = Spec(name="lr_grad_sign", family="lr_grad", kernels=("lr_grad",), fn=_fn(sign=True), make=_make(), shapes=SHAPES[:3] + SHAPES[4:], gradcheck=False,
             op_call=_op_call(sign=True), noncontig_inputs=("x",), floor=FLOOR,
             mean_checks=[MeanCheck("nit_s_eq5", _quad_draw(True), _quad_expected(True), draws=10, power=0.15)])
BITS = Spec(name="lr_grad_bits", family="lr_grad", kernels=("lr_grad", "lr_pack_bits"), fn=_fn(bits=True), make=_make(binary=True), shapes=SHAPES[:3], gradcheck=False,
            op_call=_op_call(bits=True), floor=FLOOR,
            bad_inputs=[("x-not-binary", bad_inputs(x=lambda i: i["x"] * 0.5 + 0.25), ValueError, "x must be binary")])

install(globals(), [NIT, NIT_S, BITS])


# ---- exact properties ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend,device", [pytest.param("reference", "cpu", id="reference-cpu")] + backend_params())
def test_regenerated_noise_is_bit_identical_to_the_forward(backend, device):
    """eps regenerated inside lr_grad == the eps noise_add added (same backend), bit for bit: with one-hot
    inputs, unit loss and sigma = 1 each estimate entry is a single product eps * 1."""
    R, N = 37, 11
    st = fastnoise.rng.make_state(77, 5, device)
    eps = noise_add(torch.zeros(R, N, device=device), 1.0, state=st, backend=backend)
    g = lr.lr_grad(torch.eye(R, device=device), torch.ones(1, device=device), torch.ones(N, device=device), st,
                   backend=backend)
    assert torch.equal(g.weight, eps.t())
    bits = lr.pack_spikes(torch.eye(R, device=device))
    assert torch.equal(lr.lr_grad(bits, torch.ones(1, device=device), torch.ones(N, device=device), st,
                                  backend=backend).weight, eps.t())
    one = lr.lr_grad(torch.ones(1, 1, device=device), torch.ones(1, device=device), torch.ones(N, device=device),
                     fastnoise.rng.make_state(77, 5 + 3 * N, device), backend=backend)
    assert torch.equal(one.bias, eps[3])  # the bias of noise row 0 at the offset of row 3


@pytest.mark.parametrize("backend,device", [pytest.param("reference", "cpu", id="reference-cpu")] + backend_params())
def test_shared_rows_equal_expanded_rows(backend, device):
    """repeat (an input row shared by replicas / time steps) gives the estimate of the explicitly expanded rows."""
    g = torch.Generator().manual_seed(3)
    Rx, K, N, rep, J = 6, 20, 7, 4, 2
    x = torch.randn(Rx, K, generator=g).to(device)
    L = torch.randn(Rx * rep, generator=g).to(device)
    sigma = (0.5 + torch.rand(N, generator=g)).to(device)
    st = fastnoise.rng.make_state(5, 1, device)
    rows = Rx * rep * J
    r = torch.arange(rows, device=device)
    shared = lr.lr_grad(x, L, sigma, st, rows=rows, repeat=rep, backend=backend)
    expanded = lr.lr_grad(x[(r // rep) % Rx], L, sigma, st, backend=backend)
    for a, b in zip(shared, expanded):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_spikes_are_kept_as_bits():
    x = (torch.rand(4096, 500) < 0.2).float()
    bits = lr.pack_spikes(x)
    assert bits.words.dtype == torch.int32 and tuple(bits.words.shape) == (4096, 16)
    assert bits.nbytes * 31 < x.numel() * 4  # 1 bit per spike (+ padding of 500 to 512), vs 32 bits
    assert torch.equal(lr.unpack_spikes(bits), x)
    assert torch.equal(bits.words, lr.pack_spikes(x, backend="reference").words)


def test_loss_weights_baselines_are_unbiased_forms():
    L = torch.tensor([[1.0, 2.0, 6.0], [0.0, 3.0, 3.0]])
    loo = lr.loss_weights(L, "mean").view(2, 3)
    for b in range(2):
        for c in range(3):
            others = torch.cat([L[b, :c], L[b, c + 1:]])
            assert loo[b, c].item() == pytest.approx((L[b, c] - others.mean()).item())
    clean = lr.loss_weights(L, "clean", clean=torch.tensor([1.0, 2.0]), scale=0.5)
    assert torch.equal(clean, ((L - torch.tensor([[1.0], [2.0]])) * 0.5).reshape(-1))
    with pytest.raises(ValueError, match="replicas >= 2"):
        lr.loss_weights(L[:, :1], "mean")
    with pytest.raises(ValueError, match="losses must be"):
        lr.loss_weights(L.reshape(-1), "mean")
    with pytest.raises(ValueError, match="baseline must be one of"):
        lr.loss_weights(L, "median")
    with pytest.raises(ValueError, match="clean must have shape"):
        lr.loss_weights(L, "clean", clean=torch.zeros(3))


def test_bits_errors_name_the_argument():
    bits = lr.pack_spikes(torch.ones(3, 40))
    with pytest.raises(ValueError, match="x.words must have ceil"):
        lr.lr_grad(lr.SpikeBits(bits.words, 70), torch.ones(3), torch.ones(2), _state("cpu"))
    with pytest.raises(TypeError, match="x.words must be an int32"):
        lr.lr_grad(lr.SpikeBits(bits.words.long(), 40), torch.ones(3), torch.ones(2), _state("cpu"))
    with pytest.raises(TypeError, match="sign must be a bool"):
        lr.lr_grad(bits, torch.ones(3), torch.ones(2), _state("cpu"), sign=1)
