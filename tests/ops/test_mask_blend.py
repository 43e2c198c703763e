"""mask_blend: conformance of every backend + selection rules (ties, NaN, exact k, N:M, r=0)."""
import math
import random

import pytest
import torch

import fastnoise
from conformance import Spec, backend_device_params, backend_params, backends_on, install
from conformance import bad_inputs as bad
from fastnoise.ops import mask_blend
from fastnoise.ops.mask_blend import keep_count


def _dim_of(shape):
    return 1 if len(shape) == 4 else -1


def _make(shape, dtype, device, gen):
    return {"z": torch.randn(shape, generator=gen, dtype=dtype).to(device),
            "z_approx": torch.randn(shape, generator=gen, dtype=dtype).to(device),
            "dim": _dim_of(shape)}


def _spec(name, shapes, **kw):
    score = kw.pop("score", "abs")

    def fn(backend, z, z_approx, dim):
        return mask_blend(z, z_approx, dim=dim, score=score, backend=backend, **kw)

    def op_call(inputs, backend):
        z, za, dim = inputs["z"], inputs["z_approx"], inputs["dim"] % inputs["z"].dim()
        feats = z.shape[dim]
        if "ratio" in kw:
            keep, n, m = keep_count(kw["ratio"], feats), 0, 0
        else:
            keep, (n, m) = 0, kw["nm"]
        return torch.ops.fastnoise.mask_blend.default, (z, za, keep, n, m, score == "signed", dim, backend)

    bad_inputs = [
        ("za-shape", bad(z_approx=lambda i: i["z_approx"][..., :1].contiguous()), ValueError, r"z_approx must have the shape"),
        ("za-dtype", bad(z_approx=lambda i: i["z_approx"].double()), TypeError, r"z_approx must have the dtype"),
        ("int-dtype", bad(z=lambda i: i["z"].long(), z_approx=lambda i: i["z_approx"].long()), TypeError, r"z must be a floating"),
        ("dim-range", bad(dim=5), ValueError, r"dim must be an int in"),
        ("z-not-tensor", bad(z=[1.0, 2.0]), TypeError, r"z must be a torch.Tensor"),
    ]
    return Spec(name=name, family="mask_blend", kernels=("mask_blend", "mask_blend_backward"), fn=fn, make=_make,
                shapes=shapes, grad_inputs=("z", "z_approx"), grad_outputs=(0,), exact_outputs=(1,), op_call=op_call,
                bad_inputs=bad_inputs, noncontig_inputs=("z", "z_approx"))


TOPK_SHAPES = [(7, 33), (5, 1), (3, 64), (0, 16), (2, 8, 3, 5), (9,)]
NM_SHAPES = [(7, 32), (3, 4), (0, 8), (2, 8, 3, 5)]
SPECS = [
    _spec("topk-r0.9", TOPK_SHAPES, ratio=0.9),
    _spec("topk-r0.5-signed", TOPK_SHAPES, ratio=0.5, score="signed"),
    _spec("nm-2:4", NM_SHAPES, nm=(2, 4)),
    _spec("nm-1:8-signed", [(5, 16), (2, 8, 3, 5)], nm=(1, 8), score="signed"),
]
install(globals(), SPECS)


# ---- the selection rule, checked against a brute-force Python selection --------------------------

def _key(v, signed):
    """Rank key of a score: NaN above everything, all NaN equal, -0 == +0."""
    s = v if signed else abs(v)
    return (1, 0.0) if math.isnan(s) else (0, s + 0.0)


def _brute_mask(za, k=None, nm=None, signed=False, dim=-1):
    """The selection rule in plain Python: stable sort by key descending (lower index wins ties)."""
    x = za.movedim(dim, -1).double()
    rows = x.reshape(-1, x.shape[-1]).tolist()
    out = []
    for row in rows:
        sel = [False] * len(row)
        groups = [range(len(row))] if nm is None else [range(g, g + nm[1]) for g in range(0, len(row), nm[1])]
        for grp in groups:
            idx = sorted(grp, key=lambda i: _key(row[i], signed), reverse=True)
            # sorted() is stable but reverse=True keeps equal keys in original order: lower index first
            for i in idx[: (k if nm is None else nm[0])]:
                sel[i] = True
        out.append(sel)
    m = torch.tensor(out, dtype=torch.bool).reshape(x.shape)
    return m.movedim(-1, dim)


def cpu_backends():
    return [pytest.param(b, id=b) for b in backends_on("cpu", "mask_blend")]


def all_backends():
    """(backend, device) pairs of the dispatch table; the GPU ones skip with a reason on CPU machines."""
    return backend_device_params("mask_blend")


@pytest.mark.parametrize("backend,device", all_backends())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_randomized_against_brute_force(backend, device, dtype):
    rnd = random.Random(0)
    for trial in range(12):
        ndim = rnd.choice([1, 2, 3, 4])
        shape = tuple(rnd.randint(1, 6) for _ in range(ndim))
        dim = rnd.randrange(-ndim, ndim)
        feats = shape[dim]
        signed = rnd.random() < 0.5
        # few distinct values -> many ties; some NaN, +-0, +-inf
        pool = [0.0, -0.0, 1.0, -1.0, 2.5, -2.5, float("inf"), float("-inf"), float("nan"), 0.5]
        za = torch.tensor([rnd.choice(pool) for _ in range(math.prod(shape))], dtype=dtype).reshape(shape)
        z = torch.randn(shape, dtype=dtype)
        if rnd.random() < 0.5:
            ratio = rnd.choice([0.0, 0.1, 0.3, 0.5, 0.75, 0.9, 0.99])
            out, m = mask_blend(z.to(device), za.to(device), ratio=ratio, dim=dim, score="signed" if signed else "abs",
                                backend=backend)
            want = _brute_mask(za, k=keep_count(ratio, feats), signed=signed, dim=dim)
        else:
            divisors = [d for d in range(1, feats + 1) if feats % d == 0]
            mm = rnd.choice(divisors)
            nn_ = rnd.randint(1, mm)
            out, m = mask_blend(z.to(device), za.to(device), nm=(nn_, mm), dim=dim,
                                score="signed" if signed else "abs", backend=backend)
            want = _brute_mask(za, nm=(nn_, mm), signed=signed, dim=dim)
        assert torch.equal(m.cpu(), want), f"trial {trial}: shape {shape} dim {dim} signed {signed}"
        torch.testing.assert_close(out.cpu(), torch.where(want, z, za), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("backend", cpu_backends())
def test_ties_pick_lower_indices(backend):
    za = torch.ones(3, 10)
    za[1] = torch.tensor([0, 2, 2, 2, 1, 2, 2, 0, 2, 2], dtype=torch.float32)
    za[2] = -za[1]  # |.| ties too
    z = torch.randn(3, 10)
    _, m = mask_blend(z, za, ratio=0.7, backend=backend)  # k = 3
    assert m[0].tolist() == [True] * 3 + [False] * 7
    assert m[1].nonzero().flatten().tolist() == [1, 2, 3]
    assert m[2].nonzero().flatten().tolist() == [1, 2, 3]
    _, ms = mask_blend(z, za, ratio=0.7, score="signed", backend=backend)
    assert ms[2].nonzero().flatten().tolist() == [0, 4, 7]  # -0, -1, -0 are the largest signed
    _, mnm = mask_blend(z[:, :8], torch.zeros(3, 8), nm=(2, 4), backend=backend)
    assert mnm[0].tolist() == [True, True, False, False] * 2


@pytest.mark.parametrize("backend", cpu_backends())
def test_nan_ranks_above_every_number(backend):
    za = torch.tensor([[1.0, float("nan"), float("inf"), 3.0, float("nan"), -5.0]])
    z = torch.zeros_like(za)
    _, m = mask_blend(z, za, ratio=0.5, backend=backend)  # k = 3
    assert m[0].tolist() == [False, True, True, False, True, False]
    _, m = mask_blend(z, za, ratio=0.75, backend=backend)  # k = 2: the two NaNs
    assert m[0].tolist() == [False, True, False, False, True, False]
    _, m = mask_blend(z, za, ratio=0.75, score="signed", backend=backend)
    assert m[0].tolist() == [False, True, False, False, True, False]


@pytest.mark.parametrize("backend", cpu_backends())
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.3, 0.7, 0.9, 0.99])
def test_exact_number_kept_per_row(backend, ratio):
    z = torch.randn(6, 4, 50)
    za = torch.randn(6, 4, 50).round()  # ties at the threshold
    _, m = mask_blend(z, za, ratio=ratio, backend=backend)
    assert (m.sum(-1) == keep_count(ratio, 50)).all()
    _, m1 = mask_blend(z, za, ratio=ratio, dim=1, backend=backend)
    assert (m1.sum(1) == keep_count(ratio, 4)).all()


def test_keep_count_is_exact():
    assert keep_count(0.7, 10) == 3 and keep_count(0.9, 512) == 52 and keep_count(0.0, 7) == 7
    assert keep_count(0.75, 4) == 1 and keep_count(0.99, 100) == 1 and keep_count(0.5, 0) == 0
    for f in range(1, 300):
        for r in (0.1, 0.2, 0.3, 0.6, 0.7, 0.9):
            assert keep_count(r, f) == -((-(10 - round(r * 10)) * f) // 10)


@pytest.mark.parametrize("backend", cpu_backends())
def test_ratio_zero_returns_z(backend):
    z = torch.randn(5, 17)
    za = torch.randn(5, 17)
    out, m = mask_blend(z, za, ratio=0.0, backend=backend)
    assert m.all() and torch.equal(out, z)


@pytest.mark.parametrize("backend", cpu_backends())
def test_nm_keeps_exactly_n_per_group(backend):
    z = torch.randn(4, 6, 5, 3)
    za = torch.randn(4, 6, 5, 3).round()
    for (n, mm), dim in [((2, 3), 1), ((1, 6), 1), ((3, 3), 1), ((1, 1), -1), ((2, 3), -1)]:
        _, m = mask_blend(z, za, nm=(n, mm), dim=dim, backend=backend)
        g = m.movedim(dim, -1)
        assert (g.reshape(*g.shape[:-1], -1, mm).sum(-1) == n).all()


@pytest.mark.parametrize("backend", cpu_backends())
def test_backward_routes_grad_through_mask(backend):
    z = torch.randn(3, 2, 8, requires_grad=True)
    za = torch.randn(3, 2, 8, requires_grad=True)
    out, m = mask_blend(z, za, nm=(1, 2), dim=1, backend=backend)
    g = torch.randn_like(out)
    out.backward(g)
    assert torch.equal(z.grad, g * m) and torch.equal(za.grad, g * ~m)
    assert not m.requires_grad


BAD = [
    (dict(ratio=1.0), ValueError, r"ratio must be a finite number in \[0.0, 1.0\)"),
    (dict(ratio=-0.1), ValueError, r"ratio must be a finite number"),
    (dict(ratio=float("nan")), ValueError, r"ratio must be a finite number"),
    (dict(ratio="0.5"), TypeError, r"ratio must be a real number"),
    (dict(), ValueError, r"exactly one of ratio"),
    (dict(ratio=0.5, nm=(2, 4)), ValueError, r"exactly one of ratio"),
    (dict(nm=(2,)), TypeError, r"nm must be a pair of ints"),
    (dict(nm=(2.0, 4)), TypeError, r"nm must be a pair of ints"),
    (dict(nm=(5, 4)), ValueError, r"nm must be a pair of ints \(N, M\) with 1 <= N <= M"),
    (dict(nm=(0, 4)), ValueError, r"1 <= N <= M"),
    (dict(nm=(2, 5)), ValueError, r"M must divide the size of dim"),
    (dict(ratio=0.5, score="max"), ValueError, r"score must be one of \('abs', 'signed'\)"),
    (dict(ratio=0.5, dim=2), ValueError, r"dim must be an int in \[-2, 1\]"),
    (dict(ratio=0.5, dim=1.0), TypeError, r"dim must be an int"),
]


@pytest.mark.parametrize("kwargs,exc,match", BAD, ids=[str(b[0]) for b in BAD])
@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_bad_arguments(kwargs, exc, match, backend):
    z = torch.randn(3, 8)
    with pytest.raises(exc, match=match):
        mask_blend(z, torch.randn(3, 8), backend=backend, **kwargs)


def test_bad_tensors():
    z = torch.randn(3, 8)
    with pytest.raises(ValueError, match="z must have at least 1 dimension"):
        mask_blend(torch.tensor(1.0), torch.tensor(2.0), ratio=0.5)
    with pytest.raises(TypeError, match="z_approx must be a floating"):
        mask_blend(z, z.int(), ratio=0.5)
    with pytest.raises(TypeError, match="z_approx must have the dtype of z"):
        mask_blend(z, z.half(), ratio=0.5)


def test_empty_and_feature_free_rows():
    for shape, dim in [((0, 8), -1), ((3, 0), -1), ((2, 0, 4), 1), ((0,), 0)]:
        z = torch.randn(shape)
        for be in backends_on("cpu", "mask_blend"):
            out, m = mask_blend(z, z.clone(), ratio=0.5, dim=dim, backend=be)
            assert out.shape == shape and m.shape == shape and m.dtype == torch.bool


@pytest.mark.parametrize("backend,device", [p for p in backend_params() if "triton" in p.id])
def test_triton_feature_limit(backend, device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    z = torch.randn(1, 4097, device=device)
    with pytest.raises(ValueError, match="at most 4096 features"):
        mask_blend(z, z, ratio=0.5, backend="triton")
    z = torch.randn(1, 8192, device=device)
    out, m = mask_blend(z, z, nm=(1, 4096), backend="triton")  # groups of 4096 are fine
    assert m.sum() == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_cuda_large_rows_match_reference(backend):
    for shape, kw in [((300, 4096), dict(ratio=0.9)), ((64, 1000), dict(ratio=0.37, score="signed")),
                      ((8, 256, 7, 7), dict(nm=(2, 8), dim=1)), ((4, 64, 9, 9), dict(ratio=0.9, dim=1)),
                      ((128, 96), dict(nm=(3, 48))), ((50, 300), dict(ratio=0.5)),
                      ((6, 5, 40, 3), dict(ratio=0.8, dim=2, score="signed"))]:
        z = torch.randn(shape, device="cuda")
        za = torch.randn(shape, device="cuda").round(decimals=1)
        o1, m1 = mask_blend(z, za, backend="reference", **kw)
        o2, m2 = mask_blend(z, za, backend=backend, **kw)
        assert torch.equal(m1, m2) and torch.equal(o1, o2), (shape, kw)


@pytest.mark.parametrize("backend", cpu_backends())
def test_backward_of_sum_expanded_grad(backend):
    # d out.sum() arrives as an expanded scalar (stride 0): kernels must read it correctly
    z = torch.randn(4, 24, requires_grad=True)
    za = torch.randn(4, 24, requires_grad=True)
    out, m = mask_blend(z, za, ratio=0.75, backend=backend)
    (3 * out).sum().backward()
    assert torch.equal(z.grad, 3 * m.float()) and torch.equal(za.grad, 3 * (~m).float())


def test_cpu_long_rows_match_reference():
    # rows longer than 16384 features take the one-row-per-tile path of the CPU kernel
    for shape, kw in [((3, 20000), dict(ratio=0.9)), ((2, 40000), dict(nm=(5, 20000), score="signed")),
                      ((2, 17000, 3), dict(ratio=0.5, dim=1))]:
        z = torch.randn(shape)
        za = torch.randn(shape).round(decimals=2)
        o1, m1 = mask_blend(z, za, backend="reference", **kw)
        o2, m2 = mask_blend(z, za, backend="cpu", **kw)
        assert torch.equal(m1, m2) and torch.equal(o1, o2), (shape, kw)
