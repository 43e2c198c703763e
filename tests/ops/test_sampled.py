"""Sampled exact products (NENNI): sampled_linear, sampled_conv2d, channel_conv2d on every backend."""
import math

import pytest
import torch

import fastnoise
from fastnoise.ops import channel_conv2d, sampled_conv2d, sampled_is_faster, sampled_linear
from conformance import Spec, backend_device_params, backends_on, install
from conformance import bad_inputs as _bad

RANDOM, ALL_TRUE, ALL_FALSE = 1, 2, 3


def _mask(shape, mode, gen, device):
    if mode == ALL_TRUE:
        m = torch.ones(shape, dtype=torch.bool)
    elif mode == ALL_FALSE:
        m = torch.zeros(shape, dtype=torch.bool)
    else:
        m = torch.rand(shape, generator=gen) < 0.4
    return m.to(device)


# ---- sampled_linear: shape = (*lead, K, n, mask mode) --------------------------------------------------

def make_linear(shape, dtype, device, gen):
    *lead, k, n, mode = shape
    x = torch.randn(*lead, k, generator=gen, dtype=dtype)
    w = torch.randn(n, k, generator=gen, dtype=dtype) / math.sqrt(max(k, 1))
    b = torch.randn(n, generator=gen, dtype=dtype)
    return dict(x=x.to(device), weight=w.to(device), bias=b.to(device),
                mask=_mask(tuple(lead) + (n,), mode, gen, device))


def linear_op_call(inp, backend):
    x = inp["x"].reshape(-1, inp["x"].shape[-1])
    m = inp["mask"].reshape(-1, inp["weight"].shape[0])
    return torch.ops.fastnoise.sampled_linear.default, (x, inp["weight"], inp["bias"], m, backend)


LINEAR = Spec(
    family="sampled", kernels=("sampled_linear", "sampled_linear_backward"),
    name="sampled_linear",
    fn=lambda backend, **kw: sampled_linear(kw["x"], kw["weight"], kw["bias"], kw["mask"], backend=backend),
    make=make_linear,
    shapes=[(3, 5, 4, RANDOM), (7, 19, 13, RANDOM), (2, 3, 9, 6, RANDOM), (6, 8, 5, ALL_TRUE),
            (5, 8, 5, ALL_FALSE), (0, 5, 4, RANDOM)],
    grad_inputs=("x", "weight", "bias"),
    op_call=linear_op_call,
    noncontig_inputs=("x", "weight", "mask"),
    bad_inputs=[
        ("mask-dtype", _bad(mask=lambda i: i["mask"].float()), TypeError, "mask must be a bool tensor"),
        ("mask-shape", _bad(mask=lambda i: i["mask"][:, :-1]), ValueError, r"mask must have shape \(3, 4\)"),
        ("weight-shape", _bad(weight=lambda i: i["weight"][:, :-1]), ValueError, r"weight must have shape \[n, K=5\]"),
        ("weight-dtype", _bad(weight=lambda i: i["weight"].double()), TypeError, "weight must have the dtype of x"),
        ("bias-shape", _bad(bias=lambda i: i["bias"][:-1]), ValueError, r"bias must have shape \(4,\)"),
        ("x-int", _bad(x=lambda i: i["x"].long()), TypeError, "x must be a floating tensor"),
        ("mask-device", _bad(mask=lambda i: i["mask"].to("meta")), ValueError, "mask must be on the device of x"),
        ("weight-device", _bad(weight=lambda i: i["weight"].to("meta")), ValueError, "weight must be on the device of x"),
    ],
)


# ---- convs: shape = (B, C, H, W, n, k, stride, padding, dilation, groups, mask mode) --------------------

def _conv_make(channel):
    def make(shape, dtype, device, gen):
        B, C, H, W, n, k, s, p, d, g, mode = shape
        x = torch.randn(B, C, H, W, generator=gen, dtype=dtype)
        w = torch.randn(n, C // g, k, k, generator=gen, dtype=dtype) / math.sqrt(C // g * k * k)
        b = torch.randn(n, generator=gen, dtype=dtype)
        ho = (H + 2 * p - d * (k - 1) - 1) // s + 1
        wo = (W + 2 * p - d * (k - 1) - 1) // s + 1
        m = _mask((B, n) if channel else (B, n, ho, wo), mode, gen, device)
        return dict(x=x.to(device), weight=w.to(device), bias=b.to(device), mask=m, stride=s, padding=p,
                    dilation=d, groups=g)
    return make


def _conv_fn(fn):
    return lambda backend, **kw: fn(kw["x"], kw["weight"], kw["bias"], kw["mask"], stride=kw["stride"],
                                    padding=kw["padding"], dilation=kw["dilation"], groups=kw["groups"],
                                    backend=backend)


def _conv_op_call(op):
    def call(inp, backend):
        pair = lambda v: [v, v]
        return op, (inp["x"], inp["weight"], inp["bias"], inp["mask"], pair(inp["stride"]), pair(inp["padding"]),
                    pair(inp["dilation"]), inp["groups"], backend)
    return call


CONV_SHAPES = [
    (1, 2, 4, 4, 2, 3, 1, 1, 1, 1, RANDOM),       # small first: gradcheck runs on it
    (2, 3, 7, 6, 5, 3, 1, 1, 1, 1, RANDOM),
    (2, 4, 9, 8, 6, 3, 2, 0, 2, 2, RANDOM),       # stride, dilation, groups
    (1, 4, 5, 5, 4, 1, 1, 0, 1, 4, RANDOM),       # 1x1 depthwise
    (2, 3, 5, 5, 4, 3, 1, 2, 1, 1, ALL_TRUE),     # padding > needed
    (2, 3, 5, 5, 4, 3, 1, 1, 1, 1, ALL_FALSE),
    (0, 3, 5, 5, 4, 3, 1, 1, 1, 1, RANDOM),       # empty batch
]


def _conv_bad(mask_name, mask_shape_re):
    return [
        ("mask-dtype", _bad(mask=lambda i: i["mask"].int()), TypeError, f"{mask_name} must be a bool tensor"),
        ("mask-shape", _bad(mask=lambda i: i["mask"][..., :-1] if i["mask"].dim() == 4 else i["mask"][:, :-1]),
         ValueError, f"{mask_name} must have shape {mask_shape_re}"),
        ("mask-device", _bad(mask=lambda i: i["mask"].to("meta")), ValueError, f"{mask_name} must be on the device of x"),
        ("weight-shape", _bad(weight=lambda i: i["weight"][:, :1]), ValueError, r"weight must have shape \[n, C/groups=2"),
        ("weight-3d", _bad(weight=lambda i: i["weight"][:, :, 0]), ValueError, "weight must have shape"),
        ("x-3d", _bad(x=lambda i: i["x"][0]), ValueError, r"x must be 4-D"),
        ("groups-not-dividing", _bad(groups=3), ValueError, "groups must divide the input channels C=2"),
        ("groups-zero", _bad(groups=0), ValueError, r"groups must be an int in \[1, inf\]"),
        ("stride-zero", _bad(stride=0), ValueError, r"stride must be an int in \[1, inf\]"),
        ("padding-negative", _bad(padding=-1), ValueError, r"padding must be an int in \[0, inf\]"),
        ("stride-float", _bad(stride=1.5), TypeError, "stride must be an int"),
        ("too-small", _bad(padding=0, dilation=3), ValueError, "x spatial size 4x4 is too small"),
        ("bias-dtype", _bad(bias=lambda i: i["bias"].double()), TypeError, "bias must have the dtype of x"),
        ("weight-device", _bad(weight=lambda i: i["weight"].to("meta")), ValueError, "weight must be on the device of x"),
    ]


CONV = Spec(
    family="sampled", kernels=("sampled_conv2d", "sampled_conv2d_backward"),
    name="sampled_conv2d", fn=_conv_fn(sampled_conv2d), make=_conv_make(False), shapes=CONV_SHAPES,
    grad_inputs=("x", "weight", "bias"), op_call=_conv_op_call(torch.ops.fastnoise.sampled_conv2d.default),
    noncontig_inputs=("x", "weight", "mask"), bad_inputs=_conv_bad("mask", r"\(1, 2, 4, 4\)"),
)
CHANNEL = Spec(
    family="sampled", kernels=("channel_conv2d", "sampled_conv2d_backward"),
    name="channel_conv2d", fn=_conv_fn(channel_conv2d), make=_conv_make(True), shapes=CONV_SHAPES,
    grad_inputs=("x", "weight", "bias"), op_call=_conv_op_call(torch.ops.fastnoise.channel_conv2d.default),
    noncontig_inputs=("x", "weight", "mask"), bad_inputs=_conv_bad("keep", r"\(1, 2\)"),
)

install(globals(), [LINEAR, CONV, CHANNEL])


# ---- beyond the harness ------------------------------------------------------------------------------

CPU_BACKENDS = backends_on("cpu", "sampled")


@pytest.mark.parametrize("backend,device", backend_device_params("sampled", reference=False))
def test_skipped_tiles_and_layouts(backend, device):
    """Tiles with nothing selected (skipped by the GPU kernels) next to tiles with a few selected outputs;
    more channels than one column tile; channels-last x, Wo == 1, transposed mask."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(70, 33, generator=gen)
    w = torch.randn(75, 33, generator=gen)
    b = torch.randn(75, generator=gen)
    m = torch.zeros(70, 75, dtype=torch.bool)
    m[3, 5] = m[40, 70] = m[69, 0] = m[69, 74] = True
    d = lambda *ts: [t.to(device) for t in ts]
    got = sampled_linear(*d(x, w, b, m), backend=backend)
    torch.testing.assert_close(got.cpu(), torch.where(m, torch.nn.functional.linear(x, w, b), 0.0), rtol=1e-5,
                               atol=1e-5)
    x = torch.randn(3, 4, 5, 1, generator=gen).to(memory_format=torch.channels_last)  # output 3 x 1 (Wo = 1)
    w = torch.randn(70, 4, 3, 1, generator=gen)
    dense = torch.nn.functional.conv2d(x, w, b[:70])
    keep = torch.rand(3, 70, generator=gen) < 0.3
    keep[0] = False           # a sample with every channel dropped
    keep[1] = False
    keep[1, 69] = True        # one kept channel, in the second column tile of the CPU interpreter's blocks
    mask = (torch.rand(3, 70, 1, 3, generator=gen) < 0.1).transpose(2, 3)  # non-contiguous [3, 70, 3, 1]
    got = channel_conv2d(*d(x, w, b[:70], keep), backend=backend)
    torch.testing.assert_close(got.cpu(), torch.where(keep[:, :, None, None], dense, 0.0), rtol=1e-5, atol=1e-5)
    got = sampled_conv2d(*d(x, w, b[:70], mask), backend=backend)
    torch.testing.assert_close(got.cpu(), torch.where(mask, dense, 0.0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_no_bias_and_gradients_only_through_selected(backend):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 8, generator=gen, requires_grad=True)
    w = torch.randn(5, 8, generator=gen, requires_grad=True)
    m = torch.zeros(6, 5, dtype=torch.bool)
    m[2, 3] = True
    out = sampled_linear(x, w, None, m, backend=backend)
    assert torch.allclose(out[2, 3], x[2] @ w[3]) and out.count_nonzero() == 1
    out.sum().backward()
    # only row 2 of x and row 3 of W receive gradient
    assert torch.allclose(x.grad[2], w[3].detach()) and x.grad.count_nonzero() == x.grad[2].count_nonzero()
    assert torch.allclose(w.grad[3], x[2].detach()) and w.grad.count_nonzero() == w.grad[3].count_nonzero()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_conv_no_bias_matches_dense_where_selected(backend):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 6, 6, generator=gen)
    w = torch.randn(6, 4, 3, 3, generator=gen)
    dense = torch.nn.functional.conv2d(x, w, None, padding=1)
    m = torch.rand(dense.shape, generator=gen) < 0.3
    keep = torch.rand(2, 6, generator=gen) < 0.5
    got = sampled_conv2d(x, w, None, m, padding=1, backend=backend)
    torch.testing.assert_close(got, torch.where(m, dense, 0.0), rtol=1e-5, atol=1e-5)
    got = channel_conv2d(x, w, None, keep, padding=(1, 1), backend=backend)
    torch.testing.assert_close(got, torch.where(keep[:, :, None, None], dense, 0.0), rtol=1e-5, atol=1e-5)


def test_cpu_values_independent_of_thread_count():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 16, 9, 9, generator=gen)
    w = torch.randn(24, 16, 3, 3, generator=gen)
    m = torch.rand(4, 24, 9, 9, generator=gen) < 0.2
    keep = torch.rand(4, 24, generator=gen) < 0.2
    before = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            torch.set_num_threads(t)
            outs.append((sampled_conv2d(x, w, None, m, padding=1, backend="cpu"),
                         channel_conv2d(x, w, None, keep, padding=1, backend="cpu")))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_sampled_is_faster_rule():
    for kind in ("linear", "conv2d", "channel_conv2d"):
        assert sampled_is_faster(0.0, kind, "cpu") is True
        assert sampled_is_faster(1.0, kind, "cpu") is False
        t = fastnoise.ops.sampled.SAMPLED_THRESHOLDS["cpu"][kind]
        assert 0 < t < 1
        assert sampled_is_faster(t * 0.99, kind, "cpu") and not sampled_is_faster(t, kind, "cpu")
    with pytest.raises(ValueError, match=r"keep_fraction must be a finite number in \[0.0, 1.0\]"):
        sampled_is_faster(1.5, "linear", "cpu")
    with pytest.raises(ValueError, match=r"keep_fraction must be a finite number"):
        sampled_is_faster(float("nan"), "linear", "cpu")
    with pytest.raises(ValueError, match="kind must be one of"):
        sampled_is_faster(0.1, "conv3d", "cpu")


# the CPU kernel tiles 4 output positions x 4 kept channels (tails: fewer channels, fewer positions) over
# patch runs of kw * C values (one group, unit column dilation) or of C / groups values
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("nk", [1, 3, 8, 13])
@pytest.mark.parametrize("geom", [dict(kh=3, stride=1, padding=1, dilation=1), dict(kh=3, stride=2, padding=0, dilation=1),
                                  dict(kh=3, stride=1, padding=2, dilation=1), dict(kh=3, stride=1, padding=1, dilation=2),
                                  dict(kh=1, stride=1, padding=0, dilation=1),
                                  dict(kh=3, stride=1, padding=1, dilation=1, groups=2)])
def test_channel_conv2d_cpu_paths_match_conv(dtype, nk, geom):
    import torch.nn.functional as F
    from fastnoise.ops import channel_conv2d
    g = torch.Generator().manual_seed(nk)
    geom = dict(geom)
    kh = geom.pop("kh")
    x = torch.randn(3, 8, 7, 8, dtype=dtype, generator=g)
    w = torch.randn(16, 8 // geom.get("groups", 1), kh, kh, dtype=dtype, generator=g)
    b = torch.randn(16, dtype=dtype, generator=g)
    keep = torch.zeros(3, 16, dtype=torch.bool)
    for i in range(3):
        keep[i, torch.randperm(16, generator=g)[:nk]] = True
    out = channel_conv2d(x, w, b, keep, backend="cpu", **geom)
    ref = F.conv2d(x.double(), w.double(), b.double(), **geom) * keep[:, :, None, None]
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("geom", [dict(padding=1), dict(stride=2, groups=2)])
def test_channel_conv2d_into_writes_the_kept_planes_only(backend, dtype, geom):
    # out[b, j] = channel_conv2d(...)[b, j] where keep (bit for bit where both run the same kernel: cpu,
    # reference; triton runs the reference's conv), untouched elsewhere; a non-contiguous out too; bad out
    from fastnoise.ops.sampled import _channel_conv2d_into
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(3, 4, 6, 5, generator=gen).to(dtype)
    w = torch.randn(7 if "groups" not in geom else 6, 4 // geom.get("groups", 1), 3, 3, generator=gen).to(dtype)
    b = torch.randn(w.shape[0], generator=gen).to(dtype)
    keep = torch.rand(3, w.shape[0], generator=gen) < 0.4
    keep[0] = False
    z = channel_conv2d(x, w, b, keep, backend=backend, **geom)
    old = torch.randn(z.shape, generator=gen).to(dtype)
    for out in (old.clone(), old.clone().transpose(2, 3).contiguous().transpose(2, 3)):
        got = _channel_conv2d_into(x, w, b, keep, out, backend=backend, **geom)
        assert got is out
        want = torch.where(keep[:, :, None, None], z, old)
        if backend == "triton":
            torch.testing.assert_close(out, want, rtol=1e-2 if dtype == torch.bfloat16 else 1e-5, atol=1e-2)
            assert torch.equal(out[~keep], old[~keep])
        else:
            assert torch.equal(out, want)
    with pytest.raises(ValueError, match=r"out must have shape"):
        _channel_conv2d_into(x, w, b, keep, old[:, :1], backend=backend, **geom)
    with pytest.raises(TypeError, match=r"out must have the dtype of x"):
        _channel_conv2d_into(x, w, b, keep, old.to(torch.float16), backend=backend, **geom)
