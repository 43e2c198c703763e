"""NENNI sparse ternary projection: conformance of every backend, the generation rule, the INT4 mode, bad input."""
import math

import pytest
import torch

import fastnoise
from conformance import Spec, backend_device_params, backends_on, install
from conformance import bad_inputs as bad
from fastnoise.ops import (TernaryProjection, dequantize_int4, quantize_int4, ternary_conv_approx,
                           ternary_conv_project, ternary_linear_approx, ternary_project)
from fastnoise.reference import ternary_projection as ref

SEED = 20240521


def _proj(k, d, device, seed=SEED):
    return TernaryProjection.generate(k, d, seed=seed, device=device, backend="reference")


def _on(proj, x):
    return proj if proj.device == x.device else proj.to(x.device)


# ---- project: shape (N, d, k) ---------------------------------------------------------------------

def make_project(shape, dtype, device, gen):
    n, d, k = shape
    return {"x": torch.randn(n, d, generator=gen, dtype=dtype).to(device), "proj": _proj(k, d, device)}


def project_fn(backend, x, proj):
    return ternary_project(x, _on(proj, x), backend=backend)


PROJECT = Spec(
    name="project", family="ternary_projection", kernels=("ternary_project", "ternary_project_t"), fn=project_fn, make=make_project, shapes=[(2, 5, 3), (7, 33, 9), (0, 6, 4), (3, 70, 17)],
    grad_inputs=("x",), noncontig_inputs=("x",),
    op_call=lambda inp, backend: (torch.ops.fastnoise.ternary_project.default,
                                  (inp["x"], inp["proj"].packed, inp["proj"].scale, backend)),
    bad_inputs=[
        ("d_mismatch", bad(x=lambda i: torch.randn(i["x"].shape[0], i["x"].shape[1] + 1)), ValueError, "last dimension d"),
        ("int_x", bad(x=lambda i: i["x"].to(torch.int32)), TypeError, "x must be a floating tensor"),
        ("not_projection", bad(proj=lambda i: i["proj"].packed), TypeError, "proj must be a fastnoise.ops.TernaryProjection"),
    ],
)


# The projection y is rounded once to float16 / bfloat16 (in the reference too) before the W~ GEMM; the
# backends sum in another order, so single elements of y may round the other way (1 ulp of bfloat16 at
# |y| ~ 4 is 0.03) and grad_w = sum(grad_z * y) (|grad_w| up to ~16 here) rounds the other way too:
# floors of 2 ulp at 8..16 (float32 keeps the harness floor).
LOWP_FLOOR = {torch.float32: 2e-6, torch.float16: 1.6e-2, torch.bfloat16: 1.25e-1}


# ---- linear approx (float): shape (N, d, k, n) ------------------------------------------------------

def make_linear(shape, dtype, device, gen):
    n_rows, d, k, n = shape
    return {"x": torch.randn(n_rows, d, generator=gen, dtype=dtype).to(device), "proj": _proj(k, d, device),
            "w": torch.randn(n, k, generator=gen, dtype=dtype).to(device),
            "b": torch.randn(n, generator=gen, dtype=dtype).to(device)}


def linear_fn(backend, x, proj, w, b, w_scale=None):
    return ternary_linear_approx(x, _on(proj, x), w, b, w_scale=w_scale, backend=backend)


def _int4_w(i):
    return torch.randint(-8, 8, i["w"].shape, dtype=torch.int8)


LINEAR = Spec(
    name="linear_approx", family="ternary_projection", kernels=("ternary_project", "ternary_project_t"),
    fn=linear_fn, make=make_linear, shapes=[(2, 5, 3, 2), (5, 40, 8, 6), (0, 7, 3, 4)],
    grad_inputs=("x", "w", "b"), noncontig_inputs=("x", "w"), floor=LOWP_FLOOR,
    op_call=lambda inp, backend: (torch.ops.fastnoise.ternary_linear_approx.default,
                                  (inp["x"], inp["proj"].packed, inp["proj"].scale, inp["w"], inp["b"], None, None,
                                   backend)),
    bad_inputs=[
        ("d_mismatch", bad(x=lambda i: torch.randn(2, i["x"].shape[1] + 3)), ValueError, "last dimension d"),
        ("w_shape", bad(w=lambda i: torch.randn(i["w"].shape[0], i["w"].shape[1] + 1)), ValueError, r"w must have shape \[n, k\]"),
        ("b_shape", bad(b=lambda i: torch.randn(i["b"].shape[0] + 1)), ValueError, r"b must have shape \[n\]"),
        ("w_int32", bad(w=lambda i: i["w"].to(torch.int32)), TypeError, "w must be a floating tensor .* or int8"),
        ("w_dtype", bad(w=lambda i: i["w"].double()), TypeError, "w must have the dtype of x"),
        ("int4_no_scale", bad(w=_int4_w, b=None), ValueError, "w_scale must be given"),
        ("int4_out_of_range", bad(w=lambda i: torch.full(i["w"].shape, 9, dtype=torch.int8), b=None,
                                  w_scale=lambda i: torch.ones(i["w"].shape[0])), ValueError,
         r"w must hold INT4 values in \[-8, 7\]"),
        ("scale_in_float_mode", bad(w_scale=lambda i: torch.ones(i["w"].shape[0])), ValueError,
         "w_scale and b_scale must be None in float mode"),
    ],
)


# ---- conv approx (float): shape (B, C, H, W); one Spec per conv configuration -----------------------

def conv_spec(name, kernel_size, stride, padding, dilation, groups, n, k, shapes):
    def make(shape, dtype, device, gen):
        bsz, c, h, w = shape
        d = c // groups * kernel_size * kernel_size
        return {"x": torch.randn(bsz, c, h, w, generator=gen, dtype=dtype).to(device), "proj": _proj(k, d, device),
                "w": torch.randn(n, k, generator=gen, dtype=dtype).to(device),
                "b": torch.randn(n, generator=gen, dtype=dtype).to(device)}

    cfg = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, groups=groups)

    def fn(backend, x, proj, w, b, w_scale=None):
        return ternary_conv_approx(x, _on(proj, x), w, b, w_scale=w_scale, backend=backend, **cfg)

    def op_call(inp, backend):
        kk = (kernel_size,) * 2
        return (torch.ops.fastnoise.ternary_conv_approx.default,
                (inp["x"], inp["proj"].packed, inp["proj"].scale, inp["w"], inp["b"], None, None, *kk,
                 stride, stride, padding, padding, dilation, dilation, groups, backend))

    return Spec(
        name=name, family="ternary_projection",
        kernels=("ternary_conv_project", "ternary_project_t", "ternary_conv_epilogue"),
        fn=fn, make=make, shapes=shapes, grad_inputs=("x", "w", "b"), noncontig_inputs=("x",),
        op_call=op_call, floor=LOWP_FLOOR,
        bad_inputs=[
            ("x_3d", bad(x=lambda i: i["x"][0]), ValueError, "x must be a 4-D tensor"),
            ("channels", bad(x=lambda i: torch.randn(1, i["x"].shape[1] + groups, 5, 5)), ValueError,
             "proj.d must equal C/groups"),
            ("w_cols", bad(w=lambda i: torch.randn(n, k + 1)), ValueError, r"w must have shape \[n, k\]"),
            ("int4_range", bad(w=lambda i: torch.full((n, k), -9, dtype=torch.int8), b=None,
                               w_scale=lambda i: torch.ones(n)), ValueError, r"w must hold INT4 values in \[-8, 7\]"),
        ],
    )


CONV = [
    conv_spec("conv_k3_p1", 3, 1, 1, 1, 1, 5, 4, [(1, 2, 3, 3), (2, 3, 5, 4), (0, 2, 4, 4)]),
    conv_spec("conv_k3_s2_p1", 3, 2, 1, 1, 1, 4, 6, [(1, 2, 4, 4), (2, 3, 7, 6)]),
    conv_spec("conv_k2_d2", 2, 1, 0, 2, 1, 3, 5, [(1, 2, 4, 4), (2, 3, 6, 5)]),
    conv_spec("conv_k3_g2_s2_d2", 3, 2, 2, 2, 2, 4, 3, [(1, 2, 3, 3), (2, 4, 6, 5)]),
    conv_spec("conv_1x1", 1, 1, 0, 1, 1, 3, 4, [(1, 3, 2, 2), (2, 5, 3, 4)]),
]

install(globals(), [PROJECT, LINEAR] + CONV)

CPU_BACKENDS = [pytest.param(b, id=b) for b in backends_on("cpu", "ternary_projection")]


def all_backends():
    """(backend, device) for generation equality: every backend of the table, GPU ones skip with a reason."""
    return backend_device_params("ternary_projection", ("ternary_generate",))


# ---- generation: the rule, bit identity, distribution, size ------------------------------------------

@pytest.mark.parametrize("k,d,seed,offset", [(1, 1, 0, 0), (3, 31, 5, 0), (17, 70, 42, 3), (8, 64, 2 ** 40 + 3, 2 ** 33),
                                               (5, 2304, 7, 0)])
@pytest.mark.parametrize("backend,device", all_backends())
def test_packed_p_bit_identical_across_backends(k, d, seed, offset, backend, device):
    want = TernaryProjection.generate(k, d, seed, offset=offset, backend="reference").packed
    got = TernaryProjection.generate(k, d, seed, device=device, offset=offset, backend=backend).packed
    assert got.dtype == torch.int32 and got.shape == (2, k, (d + 31) // 32)
    assert torch.equal(got.cpu(), want), f"{(got.cpu() != want).sum()} packed words differ"


def test_generation_rule_from_the_philox_stream():
    k, d, seed, offset = 6, 45, 99, 8
    raw = fastnoise.rng.raw(k * d, seed, offset).reshape(k, d)
    t = raw >> 8
    want = torch.where(t < 2796203, 1, torch.where(t < 5592406, -1, 0)).to(torch.int8)
    proj = TernaryProjection.generate(k, d, seed, offset=offset, backend="cpu")
    assert torch.equal(proj.signs(), want)
    # no two bitmasks overlap, padding bits are zero
    plus, minus = proj.packed[0].to(torch.int64) & 0xFFFFFFFF, proj.packed[1].to(torch.int64) & 0xFFFFFFFF
    assert int((plus & minus).sum()) == 0
    assert int((plus[:, -1] >> (d % 32)).sum()) == 0 and int((minus[:, -1] >> (d % 32)).sum()) == 0


def test_p_distribution_one_sixth_one_sixth_two_thirds():
    s = TernaryProjection.generate(64, 4096, seed=3).signs()
    n = s.numel()
    for value, p in ((1, 1 / 6), (-1, 1 / 6), (0, 2 / 3)):
        frac = (s == value).sum().item() / n
        sigma = math.sqrt(p * (1 - p) / n)
        assert abs(frac - p) < 5 * sigma, f"P == {value}: fraction {frac:.5f}, expected {p:.5f}"
    assert not torch.equal(s, TernaryProjection.generate(64, 4096, seed=4).signs())


def test_packed_size_and_attributes():
    k, d = 64, 2304
    proj = TernaryProjection.generate(k, d, seed=1)
    assert proj.k == k and proj.d == d and proj.scale == pytest.approx(math.sqrt(3 / k))
    assert proj.nbytes * 16 == k * d * 4  # exactly 1/16 of a float32 P
    dense = proj.dense()
    s32 = float(torch.tensor(proj.scale, dtype=torch.float32))
    assert dense.shape == (k, d) and set(torch.unique(dense).tolist()) == {-s32, 0.0, s32}


def test_projection_state_dict_roundtrip():
    holder = torch.nn.Module()
    holder.proj = TernaryProjection.generate(5, 40, seed=2)
    sd = holder.state_dict()
    assert list(sd) == ["proj.packed"] and sd["proj.packed"].dtype == torch.int32
    other = torch.nn.Module()
    other.proj = TernaryProjection(torch.zeros_like(sd["proj.packed"]), d=40)
    other.load_state_dict(sd)
    assert torch.equal(other.proj.packed, holder.proj.packed)
    assert other.to("cpu").proj.device.type == "cpu"


@pytest.mark.parametrize("k,d", [(0, 5), (-1, 5), (3, 0)])
def test_generate_rejects_nonpositive_sizes(k, d):
    name = "k" if k < 1 else "d"
    with pytest.raises(ValueError, match=f"{name} must be an int in \\[1, inf\\]"):
        TernaryProjection.generate(k, d, seed=0)


def test_packed_constructor_checks_shape():
    with pytest.raises(ValueError, match=r"packed must be an int32 tensor \[2, k, ceil\(d/32\)\]"):
        TernaryProjection(torch.zeros(2, 3, 1, dtype=torch.int32), d=40)


# ---- exactness: additions only -----------------------------------------------------------------------

@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_projection_is_an_exact_signed_sum(backend):
    # integer-valued x: the signed sums are exact in float32, so y / scale equals signs @ x exactly
    proj = TernaryProjection.generate(9, 77, seed=5)
    x = torch.randint(-50, 50, (13, 77)).float()
    y = ternary_project(x, proj, backend=backend)
    want = (x.double() @ proj.signs().double().t()) * proj.scale
    assert torch.allclose(y.double(), want, rtol=1e-6, atol=0)
    xc = torch.randint(-50, 50, (2, 6, 5, 5)).float()
    pc = TernaryProjection.generate(4, 54, seed=6)
    yc = ternary_conv_project(xc, pc, kernel_size=3, padding=1, backend=backend)
    wantc = ref.conv_project_dense(xc.double(), pc.signs().double(), 3, 3, 1, 1, 1, 1, 1, 1, 1) * pc.scale
    assert torch.allclose(yc.double(), wantc, rtol=1e-6, atol=0)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_conv_project_matches_unfold_reference(backend):
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    proj = TernaryProjection.generate(5, 2 * 2 * 3, seed=8)
    got = ternary_conv_project(x, proj, kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1),
                               groups=2, backend=backend)
    want = ref.ternary_conv_project(x, proj.packed, proj.scale, 2, 3, 1, 2, 1, 0, 2, 1, 2)
    assert got.shape == want.shape == (2, 10, 6, 2)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# ---- INT4 mode of the approximation ops (quantize_int4 / dequantize_int4: tests/ops/test_int4.py) ---------

@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_int4_linear_matches_dequantized_reference(backend):
    gen = torch.Generator().manual_seed(0)
    proj = TernaryProjection.generate(8, 40, seed=1)
    x = torch.randn(3, 5, 40, generator=gen)
    wq, w_scale, bq, b_scale = quantize_int4(torch.randn(7, 8, generator=gen), torch.randn(7, generator=gen))
    got = ternary_linear_approx(x, proj, wq, bq, w_scale=w_scale, b_scale=b_scale, backend=backend)
    wd, bd = dequantize_int4(wq, w_scale, bq, b_scale, dtype=torch.float64)
    want = ternary_linear_approx(x.double(), proj, wd, bd, backend="reference")
    assert got.shape == (3, 5, 7) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    # b_scale as a Python float and no bias work too
    got2 = ternary_linear_approx(x, proj, wq, bq, w_scale=w_scale, b_scale=float(b_scale), backend=backend)
    torch.testing.assert_close(got2, got)
    nob = ternary_linear_approx(x, proj, wq, None, w_scale=w_scale, backend=backend)
    torch.testing.assert_close(nob.double(), want - bd, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_int4_conv_matches_dequantized_reference(backend):
    gen = torch.Generator().manual_seed(1)
    proj = TernaryProjection.generate(6, 2 * 9, seed=2)
    x = torch.randn(2, 4, 5, 5, generator=gen)
    wq, w_scale, bq, b_scale = quantize_int4(torch.randn(8, 6, generator=gen), torch.randn(8, generator=gen))
    cfg = dict(kernel_size=3, stride=2, padding=1, groups=2)
    got = ternary_conv_approx(x, proj, wq, bq, w_scale=w_scale, b_scale=b_scale, backend=backend, **cfg)
    wd, bd = dequantize_int4(wq, w_scale, bq, b_scale, dtype=torch.float64)
    want = ternary_conv_approx(x.double(), proj, wd, bd, backend="reference", **cfg)
    assert got.shape == (2, 8, 3, 3)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_int4_is_inference_only():
    proj = TernaryProjection.generate(4, 10, seed=1)
    wq, w_scale, bq, b_scale = quantize_int4(torch.randn(3, 4), torch.randn(3))
    x = torch.randn(2, 10, requires_grad=True)
    with pytest.raises(RuntimeError, match="INT4 mode .* inference only"):
        ternary_linear_approx(x, proj, wq, bq, w_scale=w_scale, b_scale=b_scale)
    with torch.no_grad():
        assert ternary_linear_approx(x, proj, wq, bq, w_scale=w_scale, b_scale=b_scale).shape == (2, 3)


@pytest.mark.parametrize("change,exc,match", [
    (dict(w=torch.full((3, 4), 8, dtype=torch.int8)), ValueError, r"w must hold INT4 values in \[-8, 7\]"),
    (dict(b=torch.full((3,), -9, dtype=torch.int8)), ValueError, r"b must hold INT4 values in \[-8, 7\]"),
    (dict(b=torch.zeros(3)), TypeError, "b must be int8"),
    (dict(b_scale=None), ValueError, "b_scale must be given"),
    (dict(b_scale=float("nan")), ValueError, "b_scale must be a finite number"),
    (dict(b_scale=torch.ones(2)), ValueError, "b_scale must be a scalar"),
    (dict(w_scale=torch.ones(2)), ValueError, r"w_scale must be a float tensor of shape \[3\]"),
    (dict(w_scale=-torch.ones(3)), ValueError, "w_scale must be finite and >= 0"),
    (dict(w_scale=torch.ones(3, dtype=torch.int32)), TypeError, "w_scale must be a floating tensor"),
])
def test_int4_bad_input(change, exc, match):
    proj = TernaryProjection.generate(4, 10, seed=1)
    wq, w_scale, bq, b_scale = quantize_int4(torch.randn(3, 4), torch.randn(3))
    args = dict(w=wq, b=bq, w_scale=w_scale, b_scale=b_scale)
    args.update(change)
    for backend in ("reference", "cpu"):
        with pytest.raises(exc, match=match):
            ternary_linear_approx(torch.randn(2, 10), proj, args["w"], args["b"], w_scale=args["w_scale"],
                                  b_scale=args["b_scale"], backend=backend)


def test_float_mode_rejects_scales():
    proj = TernaryProjection.generate(4, 10, seed=1)
    with pytest.raises(ValueError, match="w_scale and b_scale must be None in float mode"):
        ternary_linear_approx(torch.randn(2, 10), proj, torch.randn(3, 4), None, w_scale=torch.ones(3))


@pytest.mark.parametrize("kw,exc,match", [
    (dict(kernel_size=3, groups=3), ValueError, r"groups must divide the channels of x \(4\)"),
    (dict(kernel_size=3, stride=0), ValueError, r"stride must be an int in \[1, inf\]"),
    (dict(kernel_size=3, padding=-1), ValueError, r"padding must be an int in \[0, inf\]"),
    (dict(kernel_size=(3, 3, 3)), ValueError, "kernel_size must be an int or a pair"),
    (dict(kernel_size=3, dilation=4), ValueError, "is too small for kernel_size"),
])
def test_conv_bad_config(kw, exc, match):
    proj = TernaryProjection.generate(3, 36, seed=1)
    with pytest.raises(exc, match=match):
        ternary_conv_approx(torch.randn(1, 4, 5, 5), proj, torch.randn(2, 3), None, **kw)


@pytest.mark.parametrize("batch", [5, 37])  # 37: the batch-lane kernel (>= 8 images), with a partial last block
def test_cpu_conv_independent_of_thread_count(batch):
    proj = TernaryProjection.generate(16, 8 * 9, seed=3)
    x = torch.randn(batch, 8, 9, 9)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = ternary_conv_project(x, proj, kernel_size=3, padding=1, backend="cpu")
        torch.set_num_threads(max(2, before))
        b = ternary_conv_project(x, proj, kernel_size=3, padding=1, backend="cpu")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(a, b)


# The CPU conv kernel vectorizes across (image, group) units once there are >= 8 of them (float32; >= 4 in
# float64); the conformance shapes above are smaller, so these configurations check that path: partial
# last block (19, 9, 13 units), fewer unit blocks than threads (rows of P split), stride, padding,
# dilation, groups, 1x1, output rows wider than one register block (W = 20), channels in several chunks
# (32x32 planes), non-contiguous input.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,k,conv", [
    ((16, 8, 8, 8), 16, dict(kernel_size=3, padding=1)),
    ((19, 6, 9, 7), 5, dict(kernel_size=3, stride=2, padding=1)),
    ((9, 4, 6, 5), 5, dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), dilation=(2, 1), groups=2)),
    ((8, 3, 13, 20), 7, dict(kernel_size=3, padding=2, dilation=2)),
    ((13, 6, 5, 5), 4, dict(kernel_size=1, groups=3)),
    ((33, 5, 4, 11), 9, dict(kernel_size=(3, 2), stride=(2, 3), padding=(0, 1))),
    ((16, 20, 32, 32), 6, dict(kernel_size=3, padding=1)),  # large planes: several channel chunks per task
])
def test_cpu_conv_lanes_match_reference(dtype, shape, k, conv):
    gen = torch.Generator().manual_seed(11)
    groups = conv.get("groups", 1)
    kh, kw = (conv["kernel_size"],) * 2 if isinstance(conv["kernel_size"], int) else conv["kernel_size"]
    proj = TernaryProjection.generate(k, shape[1] // groups * kh * kw, seed=4)
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    args = (kh, kw, *pair(conv.get("stride", 1)), *pair(conv.get("padding", 0)), *pair(conv.get("dilation", 1)),
            groups)
    x = torch.randn(*shape, generator=gen, dtype=dtype)
    got = ternary_conv_project(x, proj, backend="cpu", **conv)
    want = ref.ternary_conv_project(x.double(), proj.packed, proj.scale, *args)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)
    # non-contiguous input (channels sliced out of a wider tensor)
    xw = torch.randn(shape[0], shape[1] + 3, *shape[2:], generator=gen, dtype=dtype)[:, 2:-1]
    got = ternary_conv_project(xw, proj, backend="cpu", **conv)
    torch.testing.assert_close(got.double(), ref.ternary_conv_project(xw.double(), proj.packed, proj.scale, *args),
                               rtol=tol, atol=tol)
    # integer-valued x: exact signed sums (only the final scale rounds)
    xi = torch.randint(-50, 50, shape, generator=gen).to(dtype)
    got = ternary_conv_project(xi, proj, backend="cpu", **conv)
    sums = ref.conv_project_dense(xi.double(), proj.signs().double(), *args)
    torch.testing.assert_close(got.double(), sums * proj.scale, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("groups,n,hw", [(1, 9, (9, 9)), (2, 10, (8, 8)), (1, 4, (4, 5))])
def test_cpu_conv_epilogue_register_tiles(dtype, groups, n, hw):
    # the CPU 1x1 map runs in 4-row x 4-vector register tiles: shapes with whole tiles, vector tails and
    # scalar column tails (L = 81 = 64 + 16 + 1), row tails (n per group not a multiple of 4), float and INT4
    gen = torch.Generator().manual_seed(12)
    k = 7
    proj = TernaryProjection.generate(k, 3 * 9, seed=5)
    x = torch.randn(3, 3 * groups, *hw, generator=gen, dtype=dtype)
    w, b = torch.randn(n, k, generator=gen, dtype=dtype), torch.randn(n, generator=gen, dtype=dtype)
    cfg = dict(kernel_size=3, padding=1, groups=groups)
    want = ternary_conv_approx(x.double(), proj, w.double(), b.double(), backend="reference", **cfg)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    got = ternary_conv_approx(x, proj, w, b, backend="cpu", **cfg)
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)
    nob = ternary_conv_approx(x, proj, w, None, backend="cpu", **cfg)
    torch.testing.assert_close(nob.double(), want - b.double().view(1, -1, 1, 1), rtol=tol, atol=tol)
    wq, w_scale, bq, b_scale = quantize_int4(w.float(), b.float())
    wd, bd = dequantize_int4(wq, w_scale, bq, b_scale, dtype=torch.float64)
    got = ternary_conv_approx(x.float(), proj, wq, bq, w_scale=w_scale, b_scale=b_scale, backend="cpu", **cfg)
    want = ternary_conv_approx(x.double(), proj, wd, bd, backend="reference", **cfg)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("groups,n,hw", [(1, 9, (9, 9)), (2, 10, (3, 5))])
def test_conv_approx_pooled_is_the_approx_and_its_channel_score(backend, groups, n, hw):
    # z~ bit-identical to ternary_conv_approx on the same backend; score = mean |z~| (or mean z~) over positions,
    # to rounding (the CPU epilogue sums 16-lane partials); row tails, vector and scalar column tails; INT4.
    # (triton's pooled epilogue is the reference function: dispatch table; its projection: the conformance specs)
    from fastnoise.ops.ternary_projection import _conv_approx_pooled
    gen = torch.Generator().manual_seed(13)
    k = 5
    proj = TernaryProjection.generate(k, 2 * 9, seed=6)
    x = torch.randn(3, 2 * groups, *hw, generator=gen)
    w, b = torch.randn(n, k, generator=gen), torch.randn(n, generator=gen)
    wq, w_scale, bq, b_scale = quantize_int4(w, b)
    cfg = dict(kernel_size=3, padding=1, groups=groups, backend=backend)
    for args in (dict(w=w, b=b), dict(w=w, b=None), dict(w=wq, b=bq, w_scale=w_scale, b_scale=b_scale)):
        want = ternary_conv_approx(x, proj, **args, **cfg)
        for signed in (False, True):
            z, score = _conv_approx_pooled(x, proj, **args, signed=signed, **cfg)
            assert torch.equal(z, want)
            pooled = (want.double() if signed else want.double().abs()).mean(dim=(2, 3))
            torch.testing.assert_close(score.double(), pooled, rtol=1e-6, atol=1e-6)
    with torch.no_grad():  # float64
        z, score = _conv_approx_pooled(x.double(), proj, w.double(), b.double(), **cfg)
        torch.testing.assert_close(score, z.abs().mean(dim=(2, 3)), rtol=1e-13, atol=1e-13)
