"""Fuzz of every public op (fastnoise.ops, fastnoise.rng): random valid arguments (dtypes, empty and
non-contiguous / channels-last / stride-0 tensors, NaN / inf data) give the reference backend's result,
forward and backward; a random invalid argument raises ValueError / TypeError naming it (fuzzkit)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fastnoise
from fastnoise import ops, rng
from fuzzkit import (BAD_NUMBERS, FLOATS, LAYOUTS, assert_same, expect_error, expect_match, fuzz_settings,
                     relayout, run_valid, seeds, shape, tensor)

N = 30  # examples per op (derandomized: the same cases on every run)
META = torch.device("meta")


def _grads(fn, inputs: dict, names, backend: str, gseed: int):
    """fn's outputs and the gradients of sum(out * fixed weights) w.r.t. inputs[names]."""
    inp = dict(inputs)
    leaves = []
    for n in names:
        t = inp[n]
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            inp[n] = t.detach().clone().requires_grad_(True)
            leaves.append(inp[n])
    out = fn(backend=backend, **inp)
    outs = out if isinstance(out, tuple) else (out,)
    diff = [o for o in outs if o.is_floating_point() and o.requires_grad]
    if not leaves or not diff:
        return tuple(o.detach() for o in outs)
    g = torch.Generator().manual_seed(gseed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype)).sum() for o in diff)
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return tuple(o.detach() for o in outs) + tuple(grads)


def _check(target, fn, inputs, mutation, dtype, grad_names=(), gseed=0, tol=None):
    """The fuzz rule for one drawn case: a mutation (arg, change) must raise naming arg; else match (with the
    tolerance of `tol`, default `dtype`)."""
    if mutation is not None:
        arg, change = mutation
        bad = change(dict(inputs))
        expect_error(target, arg, lambda: fn(backend="cpu", **bad))
        return
    names = grad_names if dtype in (torch.float32, torch.float64) else ()
    expect_match(target, lambda b: _grads(fn, inputs, names, b, gseed), tol or dtype)


def _pick(data, mutations):
    """None (valid inputs) half of the time, else one of `mutations`."""
    return None if data.draw(st.booleans()) else data.draw(st.sampled_from(mutations))


def _set(key, value):
    return lambda d: {**d, key: value(d) if callable(value) else value}


def _tensor_mutations(name, ref_dtype):
    """Bad versions of a floating tensor argument."""
    other = torch.float64 if ref_dtype != torch.float64 else torch.float32
    return [(name, _set(name, lambda d: d[name].to(torch.int64))),
            (name, _set(name, lambda d: d[name].tolist() if d[name].dim() else "1.0")),
            (name, _set(name, lambda d: d[name].to(other))),
            (name, _set(name, lambda d: torch.empty(d[name].shape, dtype=d[name].dtype, device=META)))]


def _state_mutations(numel):
    return [("state", _set("state", torch.tensor([1, 2], dtype=torch.int32))),
            ("state", _set("state", torch.tensor([1, 2, 3]))),
            ("state", _set("state", torch.tensor([-1, 0]))),
            ("state", _set("state", torch.tensor([1, -4]))),
            ("state", _set("state", torch.tensor([1, 2 ** 63 - 1]) if numel > 1 else torch.tensor([1, -1]))),
            ("state", _set("state", torch.empty(2, dtype=torch.int64, device=META))),
            ("state", _set("state", [1, 2]))]


def _rng_args(data, numel):
    """seed/offset or a state tensor, plus their mutations."""
    if data.draw(st.booleans()):
        st_ = torch.tensor([data.draw(seeds()), 4 * data.draw(st.integers(0, 1000))])
        return {"state": st_}, _state_mutations(numel) + [("state", lambda d: {**d, "seed": 3})]
    args = {"seed": data.draw(seeds()), "offset": data.draw(st.integers(0, 2 ** 40))}
    muts = [("seed", _set("seed", v)) for v in (-1, 2 ** 63, 1.5, True, "1")]
    muts += [("offset", _set("offset", v)) for v in (-1, 2 ** 63, 0.5)]
    muts += [("offset", lambda d: {k: v for k, v in d.items() if k != "seed"})]
    return args, muts


def _param(data, name, x, *, nonneg, batch):
    """A float or a tensor of x's dtype broadcastable to x.shape (batch) or x.shape[1:]."""
    if data.draw(st.booleans()):
        v = data.draw(st.floats(0.0, 2.0) if nonneg else st.floats(-2.0, 2.0))
        bad = [(name, _set(name, b)) for b in BAD_NUMBERS] + ([(name, _set(name, -0.5))] if nonneg else [])
        return v, bad
    full = tuple(x.shape) if batch else tuple(x.shape[1:])
    nd = data.draw(st.integers(0, len(full)))
    shp = tuple(s if data.draw(st.booleans()) else 1 for s in full[len(full) - nd:])
    t = tensor(data.draw(seeds()), shp, x.dtype, layout=data.draw(st.sampled_from(LAYOUTS)))
    if nonneg:
        t = t.abs()
    bad = _tensor_mutations(name, x.dtype)
    bad.append((name, _set(name, torch.zeros(full + (2,) if full else (3,), dtype=x.dtype))))
    if nonneg:
        bad += [(name, _set(name, lambda d: torch.full_like(d[name], -1.0) if d[name].numel() else
                            torch.full((1,), -1.0, dtype=x.dtype))),
                (name, _set(name, lambda d: torch.full_like(d[name], float("nan")) if d[name].numel() else
                            torch.full((1,), float("nan"), dtype=x.dtype)))]
    return t, bad


def _x(data, min_dims=0, max_dims=4, special=True):
    dtype = data.draw(st.sampled_from(FLOATS))
    shp = data.draw(shape(min_dims, max_dims))
    x = tensor(data.draw(seeds()), shp, dtype, layout=data.draw(st.sampled_from(LAYOUTS)),
               special=special and data.draw(st.booleans()))
    return x, dtype


# ---- noise ops ----------------------------------------------------------------------------------------

def _noise_tol(dtype):
    """delta is drawn in float32 for every x dtype (fastnoise.rng.normal; the CPU kernel's Box-Muller and the
    reference's torch log / cos may differ by one float32 ulp): float64 x is compared at float32 tolerance."""
    return torch.float32 if dtype == torch.float64 else dtype


def _fuzz_noise_op(data, op: str, params, min_dims: int = 0, extra=lambda dtype: []):
    """One drawn case of the noise op `op` (noise_add / _mul / _sal): x, its parameters in order ((name, nonneg,
    batch) each: a float or a broadcastable tensor, `_param`), then seed / offset or a state; the valid call
    matches the reference (forward and the gradients of x and the parameters), a mutation of x, a parameter,
    the RNG arguments or `extra(dtype)` raises naming its argument."""
    x, dtype = _x(data, min_dims=min_dims)
    inputs, muts = {"x": x}, _tensor_mutations("x", dtype)[:2]
    for name, nonneg, batch in params:
        inputs[name], bad = _param(data, name, x, nonneg=nonneg, batch=batch)
        muts += bad
    r, bad_rng = _rng_args(data, x.numel())
    inputs.update(r)
    muts += bad_rng + extra(dtype)
    _check(f"ops.{op}", getattr(ops, op), inputs, _pick(data, muts), dtype, ("x",) + tuple(p[0] for p in params),
           data.draw(seeds()), _noise_tol(dtype))


@fuzz_settings(N)
@given(st.data())
def test_fuzz_noise_add(data):
    _fuzz_noise_op(data, "noise_add", [("sigma", True, True)],
                   extra=lambda dtype: [("backend", _set("backend", "bogus"))])


@fuzz_settings(N)
@given(st.data())
def test_fuzz_noise_mul(data):
    _fuzz_noise_op(data, "noise_mul", [("mu", False, False), ("sigma", True, False)], min_dims=1,
                   extra=lambda dtype: [("x", _set("x", torch.zeros((), dtype=dtype)))])


@fuzz_settings(N)
@given(st.data())
def test_fuzz_noise_sal(data):
    _fuzz_noise_op(data, "noise_sal", [("w", False, False), ("b", False, False)], min_dims=1)


# ---- mask_blend / mask_select -------------------------------------------------------------------------

def _selection_args(data, z):
    nd = z.dim()
    dim = data.draw(st.integers(-nd, nd - 1))
    f = z.shape[dim]
    if data.draw(st.booleans()) or f == 0:
        sel = {"ratio": data.draw(st.sampled_from([0.0, 0.25, 0.5, 0.9, 0.999]))}
    else:
        m = data.draw(st.sampled_from([d for d in range(1, f + 1) if f % d == 0]))
        sel = {"nm": (data.draw(st.integers(1, m)), m)}
    args = {**sel, "score": data.draw(st.sampled_from(["abs", "signed"])), "dim": dim}
    muts = [("ratio", _set("ratio", v)) for v in (1.0, -0.1, float("nan"), "0.5", True)]
    def only_nm(nm):
        return lambda d: {**{k: v for k, v in d.items() if k != "ratio"}, "nm": nm}
    muts += [("nm", only_nm(v)) for v in ((3, 2), (0, 2), (1, 0), (1,), "2:4", (1.0, 2), (1, f + 1))]
    muts += [("ratio", lambda d: {**d, "ratio": 0.5, "nm": (1, 1)})]
    muts += [("ratio", lambda d: {k: v for k, v in d.items() if k not in ("ratio", "nm")})]
    muts += [("score", _set("score", v)) for v in ("bogus", None)]
    muts += [("dim", _set("dim", v)) for v in (nd, -nd - 1, 0.5, None)]
    return args, muts


@fuzz_settings(N)
@given(st.data())
def test_fuzz_mask_blend(data):
    z, dtype = _x(data, min_dims=1, max_dims=3)
    za = tensor(data.draw(seeds()), tuple(z.shape), dtype, layout=data.draw(st.sampled_from(LAYOUTS)),
                special=data.draw(st.booleans()))
    sel, muts = _selection_args(data, za)
    inputs = {"z": z, "z_approx": za, **sel}
    muts = muts + _tensor_mutations("z", dtype)[:2] + _tensor_mutations("z_approx", dtype)
    muts.append(("z_approx", _set("z_approx", lambda d: torch.zeros(tuple(d["z"].shape) + (1,), dtype=dtype))))
    _check("ops.mask_blend", ops.mask_blend, inputs, _pick(data, muts), dtype, ("z", "z_approx"), data.draw(seeds()))


@fuzz_settings(N)
@given(st.data())
def test_fuzz_mask_select(data):
    s, dtype = _x(data, min_dims=1, max_dims=3)
    sel, muts = _selection_args(data, s)
    muts = muts + _tensor_mutations("scores", dtype)[:2]
    _check("ops.mask_select", ops.mask_select, {"scores": s, **sel}, _pick(data, muts), dtype)


# ---- sampled products ---------------------------------------------------------------------------------

def _mask(seed, shp):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shp, generator=g) < 0.5


@fuzz_settings(N)
@given(st.data())
def test_fuzz_sampled_linear(data):
    dtype = data.draw(st.sampled_from(FLOATS))
    lead = data.draw(shape(0, 2))
    k, n = data.draw(st.integers(0, 5)), data.draw(st.integers(0, 5))
    lay = lambda: data.draw(st.sampled_from(LAYOUTS))  # noqa: E731
    x = tensor(data.draw(seeds()), lead + (k,), dtype, layout=lay(), special=data.draw(st.booleans()))
    w = tensor(data.draw(seeds()), (n, k), dtype, layout=lay())
    b = tensor(data.draw(seeds()), (n,), dtype) if data.draw(st.booleans()) else None
    inputs = {"x": x, "weight": w, "bias": b, "mask": relayout(_mask(data.draw(seeds()), lead + (n,)), lay())}
    muts = _tensor_mutations("x", dtype)[:2] + _tensor_mutations("weight", dtype)
    muts += [("weight", _set("weight", torch.zeros(n, k + 1, dtype=dtype))),
             ("bias", _set("bias", torch.zeros(n + 1, dtype=dtype))),
             ("bias", _set("bias", torch.zeros(n, dtype=torch.int32))),
             ("mask", _set("mask", lambda d: d["mask"].float())),
             ("mask", _set("mask", torch.ones(lead + (n + 1,), dtype=torch.bool))),
             ("mask", _set("mask", None)),
             ("x", _set("x", torch.zeros((), dtype=dtype)))]
    _check("ops.sampled_linear", ops.sampled_linear, inputs, _pick(data, muts), dtype, ("x", "weight", "bias"),
           data.draw(seeds()))


def _conv_case(data):
    dtype = data.draw(st.sampled_from(FLOATS))
    groups = data.draw(st.sampled_from([1, 1, 2]))
    bsz = data.draw(st.integers(0, 2))
    c = groups * data.draw(st.integers(1, 2))
    n = groups * data.draw(st.integers(0 if groups == 1 else 1, 2))
    kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    stride = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    padding = (data.draw(st.integers(0, 1)), data.draw(st.integers(0, 1)))
    dilation = (data.draw(st.integers(1, 2)), 1)
    h = max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0]) + data.draw(st.integers(0, 3))
    w_ = max(1, kw - 2 * padding[1]) + data.draw(st.integers(0, 3))
    lay = lambda: data.draw(st.sampled_from(LAYOUTS))  # noqa: E731
    x = tensor(data.draw(seeds()), (bsz, c, h, w_), dtype, layout=lay(), special=data.draw(st.booleans()))
    weight = tensor(data.draw(seeds()), (n, c // groups, kh, kw), dtype, layout=lay())
    bias = tensor(data.draw(seeds()), (n,), dtype) if data.draw(st.booleans()) else None
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w_ + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    conv = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    muts = _tensor_mutations("x", dtype)[:2] + _tensor_mutations("weight", dtype)
    muts += [("stride", _set("stride", v)) for v in (0, -1, 1.5, (1, 2, 3), "1")]
    muts += [("padding", _set("padding", v)) for v in (-1, (0, -2), 0.5)]
    muts += [("dilation", _set("dilation", v)) for v in (0, (1, 0))]
    muts += [("groups", _set("groups", v)) for v in (0, 1.0, c + 1 if c > 1 else 3)]
    muts += [("x", _set("x", lambda d: d["x"].sum(0))),
             ("weight", _set("weight", lambda d: d["weight"][..., 0])),
             ("bias", _set("bias", torch.zeros(n + 1, dtype=dtype)))]
    return dtype, {"x": x, "weight": weight, "bias": bias, **conv}, muts, (bsz, n, ho, wo), lay


@fuzz_settings(N)
@given(st.data())
def test_fuzz_sampled_conv2d(data):
    dtype, inputs, muts, out, lay = _conv_case(data)
    inputs["mask"] = relayout(_mask(data.draw(seeds()), out), lay())
    muts += [("mask", _set("mask", lambda d: d["mask"].to(torch.uint8))),
             ("mask", _set("mask", torch.ones(out[:2] + (out[2] + 1, out[3]), dtype=torch.bool)))]
    _check("ops.sampled_conv2d", ops.sampled_conv2d, inputs, _pick(data, muts), dtype, ("x", "weight", "bias"),
           data.draw(seeds()))


@fuzz_settings(N)
@given(st.data())
def test_fuzz_channel_conv2d(data):
    dtype, inputs, muts, out, lay = _conv_case(data)
    inputs["keep"] = _mask(data.draw(seeds()), out[:2])
    muts += [("keep", _set("keep", lambda d: d["keep"].float())),
             ("keep", _set("keep", torch.ones(out[0], out[1] + 1, dtype=torch.bool)))]
    _check("ops.channel_conv2d", ops.channel_conv2d, inputs, _pick(data, muts), dtype, ("x", "weight", "bias"),
           data.draw(seeds()))


@fuzz_settings(N)
@given(st.data())
def test_fuzz_sampled_is_faster(data):
    args = {"keep_fraction": data.draw(st.floats(0.0, 1.0)), "kind": data.draw(st.sampled_from(ops.sampled.KINDS)),
            "device": data.draw(st.sampled_from(["cpu", torch.device("cpu"), "cuda", "cuda:0"]))}
    muts = [("keep_fraction", _set("keep_fraction", v)) for v in (1.5, -0.1, float("nan"), "0.5", None)]
    muts += [("kind", _set("kind", v)) for v in ("conv3d", None)]
    muts += [("device", _set("device", v)) for v in ("bogus", "meta", 3.5, None, "cuda:-1")]
    mut = _pick(data, muts)
    if mut is not None:
        arg, change = mut
        expect_error("ops.sampled_is_faster", arg, lambda: ops.sampled_is_faster(**change(dict(args))))
    else:
        assert isinstance(run_valid("ops.sampled_is_faster", lambda: ops.sampled_is_faster(**args)), bool)


# ---- ternary projection and INT4 ------------------------------------------------------------------------

@fuzz_settings(N)
@given(st.data())
def test_fuzz_ternary_generate(data):
    args = {"k": data.draw(st.integers(1, 9)), "d": data.draw(st.integers(1, 70)), "seed": data.draw(seeds()),
            "offset": data.draw(st.integers(0, 2 ** 40))}
    muts = [("k", _set("k", v)) for v in (0, -1, 2.0, None)] + [("d", _set("d", v)) for v in (0, 1.5)]
    muts += [("seed", _set("seed", v)) for v in (-1, 2 ** 63, 0.5)] + [("offset", _set("offset", -3))]
    muts += [("backend", _set("backend", "bogus")), ("device", _set("device", "bogus"))]
    mut = _pick(data, muts)
    gen = ops.TernaryProjection.generate
    if mut is not None:
        bad = {"backend": "cpu", **mut[1](dict(args))}
        expect_error("ops.TernaryProjection.generate", mut[0], lambda: gen(**bad))
        return
    expect_match("ops.TernaryProjection.generate", lambda b: gen(**args, backend=b).packed)


def _proj_case(data, d):
    return ops.TernaryProjection.generate(data.draw(st.integers(1, 6)), d, data.draw(seeds()))


_NOT_PROJ = [("proj", _set("proj", v)) for v in (None, torch.zeros(2, 3))]


@fuzz_settings(N)
@given(st.data())
def test_fuzz_ternary_project(data):
    dtype = data.draw(st.sampled_from(FLOATS))
    d = data.draw(st.integers(1, 40))
    proj = _proj_case(data, d)
    x = tensor(data.draw(seeds()), data.draw(shape(0, 2)) + (d,), dtype, layout=data.draw(st.sampled_from(LAYOUTS)),
               special=data.draw(st.booleans()))
    muts = _tensor_mutations("x", dtype)[:2] + _NOT_PROJ
    muts += [("x", _set("x", torch.zeros(2, d + 1, dtype=dtype))), ("x", _set("x", torch.zeros((), dtype=dtype))),
             ("x", _set("x", torch.zeros(2, d, dtype=dtype, device=META)))]
    _check("ops.ternary_project", ops.ternary_project, {"x": x, "proj": proj}, _pick(data, muts), dtype, ("x",),
           data.draw(seeds()))


def _int4_weights(data, n, k, dtype):
    w = tensor(data.draw(seeds()), (n, k), dtype)
    b = tensor(data.draw(seeds()), (n,), dtype)
    if data.draw(st.booleans()):  # INT4 mode
        wq, ws, bq, bs = ops.quantize_int4(w, b)
        if data.draw(st.booleans()):
            bq, bs = None, None
        return {"w": wq, "b": bq, "w_scale": ws, "b_scale": bs}, True
    return {"w": w, "b": b if data.draw(st.booleans()) else None}, False


def _weight_mutations(n, k, dtype, int4):
    muts = [("w", _set("w", torch.zeros(n, k + 1, dtype=dtype))), ("w", _set("w", torch.zeros(n, k, dtype=torch.int32))),
            ("w", _set("w", None)), ("b", _set("b", lambda d: torch.zeros(n + 1, dtype=d["w"].dtype)))]
    if int4:
        muts += [("w", _set("w", torch.full((n, k), 9, dtype=torch.int8))),
                 ("w_scale", _set("w_scale", None)),
                 ("w_scale", _set("w_scale", torch.full((n,), -1.0))),
                 ("w_scale", _set("w_scale", torch.full((n,), float("nan")))),
                 ("w_scale", _set("w_scale", torch.ones(n + 1))),
                 ("b_scale", lambda d: {**d, "b": torch.zeros(n, dtype=torch.int8), "b_scale": float("nan")}),
                 ("b_scale", lambda d: {**d, "b": torch.zeros(n, dtype=torch.int8), "b_scale": -1.0}),
                 ("b_scale", lambda d: {**d, "b": torch.zeros(n, dtype=torch.int8), "b_scale": None}),
                 ("b_scale", lambda d: {**d, "b": None, "b_scale": 1.0})]
    else:
        other = torch.float64 if dtype != torch.float64 else torch.float32
        muts += [("w", _set("w", lambda d: d["w"].to(other))), ("w_scale", _set("w_scale", torch.ones(n)))]
    return muts


@fuzz_settings(N)
@given(st.data())
def test_fuzz_ternary_linear_approx(data):
    dtype = data.draw(st.sampled_from(FLOATS))
    d, n = data.draw(st.integers(1, 40)), data.draw(st.integers(0, 5))
    proj = _proj_case(data, d)
    x = tensor(data.draw(seeds()), data.draw(shape(0, 2)) + (d,), dtype, layout=data.draw(st.sampled_from(LAYOUTS)),
               special=data.draw(st.booleans()))
    wts, int4 = _int4_weights(data, n, proj.k, dtype)
    muts = _tensor_mutations("x", dtype)[:2] + _NOT_PROJ + _weight_mutations(n, proj.k, dtype, int4)
    _check("ops.ternary_linear_approx", ops.ternary_linear_approx, {"x": x, "proj": proj, **wts}, _pick(data, muts),
           dtype, () if int4 else ("x", "w", "b"), data.draw(seeds()))


def _tconv_case(data, dtype):
    groups = data.draw(st.sampled_from([1, 1, 2]))
    c = groups * data.draw(st.integers(1, 2))
    kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))
    proj = _proj_case(data, c // groups * kh * kw)
    conv = {"kernel_size": (kh, kw), "stride": data.draw(st.integers(1, 2)), "padding": data.draw(st.integers(0, 1)),
            "dilation": data.draw(st.integers(1, 2)), "groups": groups}
    h = conv["dilation"] * (kh - 1) + 1 + data.draw(st.integers(0, 3))
    w = conv["dilation"] * (kw - 1) + 1 + data.draw(st.integers(0, 3))
    x = tensor(data.draw(seeds()), (data.draw(st.integers(0, 2)), c, h, w), dtype,
               layout=data.draw(st.sampled_from(LAYOUTS)), special=data.draw(st.booleans()))
    muts = _tensor_mutations("x", dtype)[:2] + _NOT_PROJ
    muts += [("kernel_size", _set("kernel_size", v)) for v in (0, (kh + 1, kw), None)]
    muts += [("stride", _set("stride", v)) for v in (0, 1.5)] + [("padding", _set("padding", -1))]
    muts += [("dilation", _set("dilation", 0)), ("groups", _set("groups", 0)), ("groups", _set("groups", c + 1))]
    muts += [("x", _set("x", lambda dd: dd["x"].sum(0)))]
    return proj, x, conv, muts, groups


@fuzz_settings(N)
@given(st.data())
def test_fuzz_ternary_conv_project(data):
    dtype = data.draw(st.sampled_from(FLOATS))
    proj, x, conv, muts, _ = _tconv_case(data, dtype)
    _check("ops.ternary_conv_project", ops.ternary_conv_project, {"x": x, "proj": proj, **conv}, _pick(data, muts),
           dtype, ("x",), data.draw(seeds()))


@fuzz_settings(N)
@given(st.data())
def test_fuzz_ternary_conv_approx(data):
    dtype = data.draw(st.sampled_from(FLOATS))
    proj, x, conv, muts, groups = _tconv_case(data, dtype)
    n = groups * data.draw(st.integers(1, 2))
    wts, int4 = _int4_weights(data, n, proj.k, dtype)
    muts = muts + _weight_mutations(n, proj.k, dtype, int4)
    if groups > 1:
        muts.append(("w", _set("w", lambda d: d["w"][:1])))
    _check("ops.ternary_conv_approx", ops.ternary_conv_approx, {"x": x, "proj": proj, **conv, **wts},
           _pick(data, muts), dtype, () if int4 else ("x", "w", "b"), data.draw(seeds()))


@fuzz_settings(N)
@given(st.data())
def test_fuzz_quantize_int4(data):
    """No reference backend: the property is the definition (|wq| <= 8, w ~ wq * scale within scale / 2)."""
    dtype = data.draw(st.sampled_from(FLOATS))
    n, k = data.draw(st.integers(0, 4)), data.draw(st.integers(0, 6))
    w = tensor(data.draw(seeds()), (n, k), dtype, layout=data.draw(st.sampled_from(LAYOUTS)))
    b = tensor(data.draw(seeds()), (n,), dtype) if data.draw(st.booleans()) else None
    muts = [("w", _set("w", lambda d: d["w"].to(torch.int64))), ("w", _set("w", torch.zeros(3, dtype=dtype))),
            ("w", _set("w", torch.tensor([[float("nan"), 1.0]], dtype=dtype))),
            ("w", _set("w", torch.tensor([[float("inf"), 1.0]], dtype=dtype))),
            ("b", lambda d: {"w": torch.ones(2, 2, dtype=dtype), "b": torch.tensor([float("nan"), 0.0], dtype=dtype)}),
            ("b", _set("b", torch.zeros(n + 1, dtype=dtype))), ("b", _set("b", lambda d: torch.zeros(n, dtype=torch.int8)))]
    mut = _pick(data, muts)
    args = {"w": w, "b": b}
    if mut is not None:
        expect_error("ops.quantize_int4", mut[0], lambda: ops.quantize_int4(**mut[1](dict(args))))
        return
    wq, ws, bq, bs = run_valid("ops.quantize_int4", lambda: ops.quantize_int4(w, b))
    assert wq.dtype == torch.int8 and wq.shape == (n, k) and ws.shape == (n,)
    assert int(wq.abs().max()) <= 8 if wq.numel() else True
    wd, bd = ops.dequantize_int4(wq, ws, bq, bs, dtype=torch.float64)
    assert bool(((wd - w.double()).abs() <= ws.double()[:, None] * 0.5 * (1 + 1e-3) + 1e-6).all())
    if b is not None:
        assert bool(((bd - b.double()).abs() <= bs.double() * 0.5 * (1 + 1e-3) + 1e-6).all())
    else:
        assert bq is None and bs is None and bd is None
    dmuts = [("wq", lambda d: {**d, "wq": d["wq"].float()}), ("w_scale", lambda d: {**d, "w_scale": torch.ones(n + 1)}),
             ("bq", lambda d: {**d, "bq": torch.zeros(n, dtype=torch.int8), "b_scale": None}),
             ("b_scale", lambda d: {**d, "bq": torch.zeros(n, dtype=torch.int8), "b_scale": float("nan")}),
             ("dtype", lambda d: {**d, "dtype": torch.int32})]
    arg, change = dmuts[data.draw(st.integers(0, len(dmuts) - 1))]
    expect_error("ops.dequantize_int4", arg,
                 lambda: ops.dequantize_int4(**change({"wq": wq, "w_scale": ws, "bq": bq, "b_scale": bs})))


# ---- rng -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [rng.raw, rng.uniform, rng.normal], ids=["raw", "uniform", "normal"])
@fuzz_settings(N // 2)
@given(data=st.data())
def test_fuzz_rng(fn, data):
    target = f"rng.{fn.__name__}"
    args = {"count": data.draw(st.integers(0, 40)), "seed": data.draw(st.integers(0, 2 ** 63 - 1)),
            "offset": data.draw(st.one_of(st.integers(0, 2 ** 40), st.integers(2 ** 63 - 60, 2 ** 63 - 41)))}
    muts = [("count", _set("count", v)) for v in (-1, 2 ** 64, 1.5, None, True)]
    muts += [("seed", _set("seed", v)) for v in (-1, 2 ** 63, "0")]
    muts += [("offset", _set("offset", v)) for v in (-1, 2 ** 63, 2 ** 63 - 2)]
    muts += [("device", _set("device", v)) for v in ("bogus", 7)] + [("backend", _set("backend", "nope"))]
    mut = _pick(data, muts)
    if mut is not None:
        bad = mut[1](dict(args))
        if mut[0] == "offset" and bad["offset"] == 2 ** 63 - 2 and bad["count"] < 3:
            bad["count"] = 3  # offset + count - 1 past 2**63 - 1
        expect_error(target, mut[0], lambda: fn(**{"backend": "cpu", **bad}))
        return
    expect_match(target, lambda b: fn(**args, backend=b))
