"""fastnoise.ops.noise_conv2d / noise_linear (input, weight and output noise sites) on every backend.

The conformance harness (forward / backward against the eager reference, gradcheck, opcheck,
torch.compile, bad inputs) per method convention; then the checks beyond it: zero noise equals the
plain conv exactly, the raw noise of each site is the documented stream element (bit-identical to
fastnoise.rng.normal of the same backend), the empirical mean / variance over 2,000 draws, what is
saved for the backward, channels-last and empty inputs, the stream accounting.
"""
import math

import pytest
import torch
import torch.nn.functional as F

import fastnoise
from conformance import Spec, backends_on, install
from conformance import bad_inputs as _bad
from fastnoise.ops import noise_conv as nc
from fastnoise.ops.noise_conv import InputNoise, OutputNoise, WeightNoise, noise_conv2d, noise_linear
from fastnoise.reference.noise_conv import eager_composition

SEED, OFFSET = 77, 5
CPU_BACKENDS = backends_on("cpu", "noise_conv")  # reference, cpu, triton (the dispatch table)

# conv shapes: (B, C, H, W, N, k, stride, padding, dilation, groups). TINY (the harness's gradcheck picks the
# shape whose entries multiply to <= 64: the Triton interpreter is slow), one with stride, dilation and
# groups, one plain, one empty batch.
TINY, EMPTY = (1, 1, 2, 2, 2, 2, 1, 1, 1, 1), (0, 3, 4, 4, 2, 3, 1, 1, 1, 1)
CONV_SHAPES = [TINY, (2, 4, 6, 7, 6, 3, 2, 2, 2, 2), EMPTY]
SMALL_SHAPES = [(2, 3, 5, 6, 5, 3, 1, 1, 1, 1), EMPTY]


def _make(kind):
    """Inputs of one spec: x, weight, bias, the site parameters and the conv geometry."""
    def make(shape, dtype, device, gen):
        B, C, H, W, N, k, s, p, d, g = shape
        ho = (H + 2 * p - d * (k - 1) - 1) // s + 1
        wo = (W + 2 * p - d * (k - 1) - 1) // s + 1
        r = lambda *sh: torch.randn(*sh, generator=gen, dtype=dtype)
        u = lambda *sh: torch.rand(*sh, generator=gen, dtype=dtype)
        out = dict(x=r(B, C, H, W), weight=r(N, C // g, k, k) / math.sqrt(C // g * k * k), bias=r(N),
                   stride=s, padding=p, dilation=d, groups=g)
        if kind in ("ctrw", "all2"):
            out.update(mu=1 + 0.3 * r(C, H, W), sigma=0.2 + 0.5 * u(C, H, W))
        if kind == "rse":
            out.update(sigma=0.1 + u(C, 1, 1))
        if kind in ("pni", "cni"):
            out.update(alpha=0.1 + u(N, 1, 1, 1))
        if kind == "pni":
            out.update(sigma=0.1 + u(1), osigma=0.1 + u(N, 1, 1))
        if kind in ("cni", "all2"):
            out.update(keep=torch.rand(N, C // g, k, k, generator=gen) < 0.7)
        if kind == "all2":
            out.update(alpha=0.1 + u(N, C // g, k, k), osigma=0.1 + u(N, ho, wo))
        if kind == "rpf":
            out.update(replace=torch.arange(N) % 2 == 1)
        if kind == "all":
            out.update(sigma=0.2 + u(C, 1, 1), alpha=0.1 + u(N, 1, 1, 1), osigma=0.1 + u(1))
        return {key: (v.to(device) if isinstance(v, torch.Tensor) else v) for key, v in out.items()}
    return make


def _sites(kind, i):
    """(input_noise, weight_noise, output_noise) of spec `kind` from the inputs."""
    if kind == "ctrw":
        return InputNoise.ctrw(i["mu"], i["sigma"]), None, None
    if kind == "rse":
        return InputNoise.rse(i["sigma"]), None, None
    if kind == "pni":  # every std-scaled site at once: PNI-W and both activation variants
        return InputNoise.pni(i["sigma"]), WeightNoise.pni(i["alpha"]), OutputNoise.pni(i["osigma"])
    if kind == "cni":
        return None, WeightNoise.cni(i["alpha"], keep=i["keep"]), None
    if kind == "rpf":
        return None, WeightNoise.rpf(i["replace"], i["weight"].shape[-1]), None
    if kind == "all":  # batch-shared additive input, weight without std, per-sample output
        return (InputNoise(i["sigma"], shared=True, scale=0.5), WeightNoise(i["alpha"], scale_by_std=False),
                OutputNoise(i["osigma"]))
    if kind == "all2":  # per-sample multiplicative input, element-wise alpha with keep, batch-shared output
        return (InputNoise(i["sigma"], mu=i["mu"]), WeightNoise(i["alpha"], scale_by_std=False, scale=0.7, keep=i["keep"]),
                OutputNoise(i["osigma"], shared=True))
    raise AssertionError(kind)


def _fn(kind):
    def fn(backend, **i):
        inn, wn, on = _sites(kind, i)
        return noise_conv2d(i["x"], i["weight"], i["bias"], stride=i["stride"], padding=i["padding"],
                            dilation=i["dilation"], groups=i["groups"], input_noise=inn, weight_noise=wn,
                            output_noise=on, seed=SEED, offset=OFFSET, backend=backend)
    return fn


def _op_call(kind):
    def call(i, backend):
        x, w = i["x"], i["weight"]
        pair = lambda v: [v, v]
        st, pd, dl = pair(i["stride"]), pair(i["padding"]), pair(i["dilation"])
        y_shape = nc._out_shape(x.shape, w.shape, st, pd, dl)
        p = nc._pack(x, w, i["groups"], y_shape, *_sites(kind, i))
        state = fastnoise.rng.make_state(SEED, OFFSET, x.device)
        return torch.ops.fastnoise.noise_conv2d.default, (x, w, i["bias"], p.in_a, p.in_b, p.w_alpha, p.w_mask,
                                                          p.out_sigma, state, st, pd, dl, i["groups"], p.cfg,
                                                          p.scales, backend)
    return call


_COMMON_BAD = [
    ("x-3d", _bad(x=lambda i: i["x"][0]), ValueError, "x must be 4-D"),
    ("weight-dtype", _bad(weight=lambda i: i["weight"].double()), TypeError, "weight must have the dtype of x"),
    ("groups-not-dividing", _bad(groups=2), ValueError, "groups must divide the input channels"),
]


def _bad_sigma(key, name, what):
    return [
        (f"{key}-negative-tensor", _bad(**{key: lambda i: -i[key]}), ValueError, f"{name} must be finite and >= 0"),
        (f"{key}-nan-tensor", _bad(**{key: lambda i: i[key] * float("nan")}), ValueError,
         f"{name} must be finite and >= 0"),
        (f"{key}-shape", _bad(**{key: lambda i: torch.ones(7, 1, 1, 1, 1)}), ValueError, rf"{name} must broadcast to {what}"),
        (f"{key}-dtype", _bad(**{key: lambda i: i[key].double()}), TypeError, f"{name} must have the dtype of x"),
    ]


BAD = {
    "ctrw": _bad_sigma("sigma", "input_noise.sigma", r"x.shape\[1:\]") + [
        ("mu-nan", _bad(mu=lambda i: i["mu"] * float("nan")), ValueError, "input_noise.mu must be finite"),
        ("mu-batch-shape", _bad(mu=lambda i: torch.ones(i["x"].shape)), ValueError,
         r"input_noise.mu must broadcast to x.shape\[1:\]")],
    "rse": [("sigma-negative-float", _bad(sigma=-0.1), ValueError, r"input_noise.sigma must be a finite number in \[0"),
            ("sigma-nan-float", _bad(sigma=float("nan")), ValueError, "input_noise.sigma must be a finite number")],
    "pni": _bad_sigma("alpha", "weight_noise.alpha", "weight.shape") + _bad_sigma("osigma", "output_noise.sigma", r"y.shape\[1:\]") + [
        ("alpha-negative-float", _bad(alpha=-0.25), ValueError, r"weight_noise.alpha must be a finite number in \[0")],
    "cni": [("keep-shape", _bad(keep=lambda i: i["keep"][:, :1]), ValueError, r"weight_noise.keep must have shape \(5, 3, 3, 3\)"),
            ("keep-dtype", _bad(keep=lambda i: i["keep"].float()), TypeError, "weight_noise.keep must be a bool tensor")],
    "rpf": [("replace-shape", _bad(replace=lambda i: i["replace"][:1]), ValueError, r"weight_noise.replace must have shape \(5,\)"),
            ("replace-groups", _bad(x=lambda i: i["x"][:, :2], groups=2, weight=lambda i: i["weight"][:4, :1],
                                    replace=lambda i: i["replace"][:4], bias=lambda i: i["bias"][:4]),
             ValueError, "weight_noise.replace .RPF random filters. supports groups=1 only.*got groups=2")],
}

SPECS = []
for kind, grad_extra, gradcheck, shapes in [
        ("ctrw", ("mu", "sigma"), True, CONV_SHAPES),
        ("rse", ("sigma",), False, SMALL_SHAPES),
        ("pni", ("sigma", "alpha", "osigma"), False, SMALL_SHAPES),  # std(x), std(W), std(y) detached: no gradcheck
        ("cni", ("alpha",), False, SMALL_SHAPES),
        ("rpf", (), True, SMALL_SHAPES[:1] + [TINY, EMPTY]),
        ("all", ("sigma", "alpha", "osigma"), True, CONV_SHAPES),
        ("all2", ("mu", "sigma", "alpha", "osigma"), False, CONV_SHAPES)]:  # gradients vs the reference only
    SPECS.append(Spec(name=f"noise_conv2d_{kind}", fn=_fn(kind), make=_make(kind), shapes=shapes,
                      grad_inputs=("x", "weight", "bias") + grad_extra, gradcheck=gradcheck,
                      op_call=_op_call(kind), noncontig_inputs=("x", "weight"), family="noise_conv",
                      bad_inputs=_COMMON_BAD + BAD[kind] if kind in BAD else ()))


# ---- noise_linear: shape = (R, K, N) ------------------------------------------------------------------

def _make_linear(shape, dtype, device, gen):
    R, K, N = shape
    r = lambda *sh: torch.randn(*sh, generator=gen, dtype=dtype)
    out = dict(x=r(R, K), weight=r(N, K) / math.sqrt(K), bias=r(N), sigma=0.1 + torch.rand(K, generator=gen, dtype=dtype),
               alpha=0.1 + torch.rand(N, 1, generator=gen, dtype=dtype), osigma=0.1 + torch.rand(1, generator=gen, dtype=dtype))
    return {k: v.to(device) for k, v in out.items()}


def _linear_fn(backend, x, weight, bias, sigma, alpha, osigma):
    return noise_linear(x, weight, bias, input_noise=InputNoise.rse(sigma),
                        weight_noise=WeightNoise(alpha, scale_by_std=False), output_noise=OutputNoise(osigma),
                        seed=SEED, offset=OFFSET, backend=backend)


def _linear_op_call(i, backend):
    x, w = i["x"], i["weight"]
    n, k = w.shape
    x4, w4 = x.reshape(-1, k, 1, 1), w.reshape(n, k, 1, 1)
    p = nc._pack(x4, w4, 1, (x4.shape[0], n, 1, 1), InputNoise.rse(i["sigma"].reshape(k, 1, 1)),
                 WeightNoise(i["alpha"].reshape(n, 1, 1, 1), scale_by_std=False), OutputNoise(i["osigma"].reshape(1, 1, 1)))
    state = fastnoise.rng.make_state(SEED, OFFSET, x.device)
    return torch.ops.fastnoise.noise_conv2d.default, (x4, w4, i["bias"], p.in_a, p.in_b, p.w_alpha, p.w_mask,
                                                      p.out_sigma, state, [1, 1], [0, 0], [1, 1], 1, p.cfg, p.scales,
                                                      backend)


LINEAR = Spec(name="noise_linear", fn=_linear_fn, make=_make_linear, shapes=[(3, 5, 4), (0, 5, 4)], gradcheck=False,
              grad_inputs=("x", "weight", "bias", "sigma", "alpha", "osigma"), op_call=_linear_op_call,
              noncontig_inputs=("x", "weight"), family="noise_conv", bad_inputs=[
                  ("weight-shape", _bad(weight=lambda i: i["weight"][:, :-1]), ValueError, r"weight must have shape \[N, K=5\]"),
                  ("sigma-shape", _bad(sigma=lambda i: torch.ones(3)), ValueError, r"input_noise.sigma must broadcast to x.shape\[-1:\] \(5,\)"),
                  ("alpha-3d", _bad(alpha=lambda i: torch.ones(4, 5, 1)), ValueError, "weight_noise.alpha must broadcast to weight.shape")])

install(globals(), SPECS + [LINEAR])


# ---- beyond the harness -------------------------------------------------------------------------------

def _conv_kw(shape):
    B, C, H, W, N, k, s, p, d, g = shape
    return dict(stride=s, padding=p, dilation=d, groups=g)


ZERO_SITES = [
    ("input-mul", dict(input_noise=InputNoise.ctrw(1.0, 0.0))),
    ("input-add", dict(input_noise=InputNoise.rse(0.0))),
    ("input-pni", dict(input_noise=InputNoise.pni(0.0))),
    ("weight-pni", dict(weight_noise=WeightNoise.pni(0.0))),
    ("output-pni", dict(output_noise=OutputNoise.pni(0.0))),
    ("all", dict(input_noise=InputNoise(0.0, mu=1.0), weight_noise=WeightNoise(0.0), output_noise=OutputNoise(0.0, shared=True))),
]


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("name,sites", ZERO_SITES, ids=[z[0] for z in ZERO_SITES])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_zero_noise_is_the_plain_conv_exactly(backend, name, sites, channels_last):
    gen = torch.Generator().manual_seed(0)
    shape = (2, 3, 6, 5, 4, 3, 1, 1, 1, 1)
    x = torch.randn(2, 3, 6, 5, generator=gen)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    w, b = torch.randn(4, 3, 3, 3, generator=gen), torch.randn(4, generator=gen)
    y = noise_conv2d(x, w, b, **_conv_kw(shape), seed=1, backend=backend, **sites)
    if backend == "triton":  # its own GEMM: exactly the same kernel without noise
        want = noise_conv2d(x, w, b, **_conv_kw(shape), seed=1, backend=backend)
        torch.testing.assert_close(want, F.conv2d(x, w, b, padding=1), rtol=1e-5, atol=1e-5)
    else:
        want = F.conv2d(x, w, b, padding=1)
    assert torch.equal(y, want), f"max diff {(y - want).abs().max()}"


def _site_noise(backend, site, n_elems, device="cpu"):
    """The raw normals a backend uses at one site, read off exact identities of the op."""
    st = fastnoise.rng.make_state(SEED, OFFSET, device)
    if site == "input-shared":      # 1x1 identity conv of x = 1: y = mu + sigma * delta = delta
        C = n_elems
        x = torch.ones(1, C, 1, 1, device=device)
        w = torch.eye(C, device=device).reshape(C, C, 1, 1)
        y = noise_conv2d(x, w, input_noise=InputNoise(1.0, mu=0.0, shared=True), state=st, backend=backend)
        return y.reshape(-1)
    if site == "input":             # per sample: x = 1 of shape [B, 1, 1, 1]
        x = torch.ones(n_elems, 1, 1, 1, device=device)
        w = torch.ones(1, 1, 1, 1, device=device)
        return noise_conv2d(x, w, input_noise=InputNoise(1.0, mu=0.0), state=st, backend=backend).reshape(-1)
    if site == "weight":            # W = 0, alpha = 1, s = 1: W' = eta; x = 1 [1, 1, 1, 1] reads W'[n, 0, 0, 0]
        x = torch.ones(1, 1, 1, 1, device=device)
        w = torch.zeros(n_elems, 1, 1, 1, device=device)
        y = noise_conv2d(x, w, weight_noise=WeightNoise(1.0, scale_by_std=False), state=st, backend=backend)
        return y.reshape(-1)
    if site == "output":            # x = 0: y = eps
        x = torch.zeros(n_elems, 1, 1, 1, device=device)
        w = torch.ones(1, 1, 1, 1, device=device)
        return noise_conv2d(x, w, output_noise=OutputNoise(1.0), state=st, backend=backend).reshape(-1)
    raise AssertionError(site)


@pytest.mark.parametrize("site,base", [("input-shared", 0), ("input", 0), ("weight", 0), ("output", 0)])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_raw_noise_is_the_documented_stream_element(backend, site, base):
    """Each site's noise is element ``offset + base + index`` of the stream: bit-identical to
    fastnoise.rng.normal of the same backend (whose raw words are bit-identical across backends,
    tests/ops/test_philox.py), and within a few ulp of the reference's."""
    n = 37
    got = _site_noise(backend, site, n)
    rng_backend = "reference" if backend == "reference" else backend
    want = fastnoise.rng.normal(n, SEED, OFFSET + base, backend=rng_backend)
    assert torch.equal(got, want), f"{(got != want).sum()} of {n} differ"
    ref = fastnoise.rng.normal(n, SEED, OFFSET + base, backend="reference")
    tol = 4 * torch.finfo(torch.float32).eps * ref.abs().clamp(min=1.0)
    assert ((got - ref).abs() <= tol).all()


def test_site_stream_offsets_follow_the_layout():
    """With every site active, the weight noise starts after r4(n_in) elements, the output after r4(n_w)."""
    B, C, N = 3, 2, 5
    x = torch.ones(B, C, 1, 1)
    lay = nc.layout(list(nc.Config(in_mode=nc.IN_ADD, w_mode=nc.W_ADD, out_mode=nc.OUT_ADD)), x.shape, (N, C, 1, 1),
                    (B, N, 1, 1))
    assert (lay.base_w, lay.base_out, lay.total) == (8, 20, 36)
    st = fastnoise.rng.make_state(SEED, OFFSET)
    w = torch.zeros(N, C, 1, 1)
    # only the weight site has noise amplitude: x = 1, W = 0 -> y[b, n] = sum_c eta[n, c]
    y = noise_conv2d(x, w, input_noise=InputNoise(0.0), weight_noise=WeightNoise(1.0, scale_by_std=False),
                     output_noise=OutputNoise(0.0), state=st, backend="cpu")
    eta = fastnoise.rng.normal(N * C, SEED, OFFSET + lay.base_w, backend="cpu").reshape(N, C)
    torch.testing.assert_close(y[0, :, 0, 0], eta.sum(1), rtol=0, atol=1e-6)
    # only the output site: y = eps at base_out
    y = noise_conv2d(x, w, input_noise=InputNoise(0.0), weight_noise=WeightNoise(0.0), output_noise=OutputNoise(1.0),
                     state=st, backend="cpu")
    assert torch.equal(y.reshape(-1), fastnoise.rng.normal(B * N, SEED, OFFSET + lay.base_out, backend="cpu"))
    assert nc.stream_numel(x.shape, w.shape, input_noise=InputNoise(0.0), weight_noise=WeightNoise(0.0),
                           output_noise=OutputNoise(0.0)) == 36


def test_global_stream_advances_by_stream_numel():
    fastnoise.rng.manual_seed(3)
    x, w = torch.randn(2, 3, 4, 4), torch.randn(4, 3, 3, 3)
    sites = dict(input_noise=InputNoise.rse(0.3), weight_noise=WeightNoise.pni(0.25))
    a = noise_conv2d(x, w, padding=1, **sites)
    b = noise_conv2d(x, w, padding=1, **sites)
    n = nc.stream_numel(x.shape, w.shape, padding=1, **sites)
    assert not torch.equal(a, b)
    torch.testing.assert_close(a, noise_conv2d(x, w, padding=1, seed=3, offset=0, **sites), rtol=0, atol=0)
    torch.testing.assert_close(b, noise_conv2d(x, w, padding=1, seed=3, offset=n, **sites), rtol=0, atol=0)


# ---- statistics over 2,000 draws ------------------------------------------------------------------------

def _zscores(samples, mean, var):
    """z of the empirical mean and variance against the analytic ones (Gaussian outputs)."""
    n = samples.shape[0]
    m = samples.mean(0)
    v = samples.var(0)
    z_mean = (m - mean) / (var / n).sqrt()
    z_var = (v - var) / (var * math.sqrt(2.0 / (n - 1)))
    return z_mean, z_var


def _assert_within_3se(z, name):
    z = z.flatten()
    frac = (z.abs() > 3).float().mean().item()
    assert frac <= 0.02 and z.abs().max() < 5, f"{name}: {frac:.3f} beyond 3 SE, max |z| {z.abs().max():.2f}"


def _draws(fn, n=2000):
    return torch.stack([fn(k) for k in range(n)])


@pytest.mark.parametrize("method", ["ctrw", "rse", "pni_w", "cni", "rpf", "pni_out"])
def test_mean_and_variance_over_2000_draws(method):
    gen = torch.Generator().manual_seed(9)
    B, C, H, W, N = 2, 2, 5, 5, 3
    x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
    w = torch.randn(N, C, 3, 3, generator=gen, dtype=torch.float64) / 3
    conv = lambda a, b: F.conv2d(a, b, padding=1)
    draws = 2000
    if method == "ctrw":
        mu = 1 + 0.2 * torch.randn(C, H, W, generator=gen, dtype=torch.float64)
        sigma = 0.3 + 0.3 * torch.rand(C, H, W, generator=gen, dtype=torch.float64)
        site = dict(input_noise=InputNoise.ctrw(mu, sigma))
        mean, var = conv(x * mu, w), conv(x ** 2 * sigma ** 2, w ** 2)
    elif method == "rse":
        sigma = 0.5
        site = dict(input_noise=InputNoise.rse(sigma))
        mean, var = conv(x, w), conv(torch.full_like(x, sigma ** 2), w ** 2)
    elif method in ("pni_w", "cni"):
        alpha = 0.1 + 0.3 * torch.rand(N, 1, 1, 1, generator=gen, dtype=torch.float64)
        keep = torch.rand(N, C, 3, 3, generator=gen) < 0.6 if method == "cni" else torch.ones(N, C, 3, 3, dtype=torch.bool)
        site = dict(weight_noise=WeightNoise.pni(alpha) if method == "pni_w" else WeightNoise.cni(alpha, keep=keep))
        s = w.std()
        mean, var = conv(x, w), conv(x ** 2, (s * alpha) ** 2 * keep)
    elif method == "rpf":
        replace = torch.tensor([False, True, True])
        site = dict(weight_noise=WeightNoise.rpf(replace, 3))
        mean = conv(x, w) * (~replace).reshape(1, -1, 1, 1)
        var = conv(x ** 2, torch.ones_like(w) / 9) * replace.reshape(1, -1, 1, 1)
    else:
        osigma = 0.1 + torch.rand(N, 1, 1, generator=gen, dtype=torch.float64)
        y0 = conv(x, w)
        site = dict(output_noise=OutputNoise.pni(osigma))
        mean, var = y0, (y0.std() * osigma) ** 2 * torch.ones_like(y0)
    samples = _draws(lambda k: noise_conv2d(x, w, padding=1, seed=11, offset=k * 4096, backend="cpu", **site), draws)
    live = var > 0
    if not bool(live.all()):  # RPF: the learned filters are deterministic
        assert torch.equal(samples[:, ~live], mean[~live].expand(draws, -1).to(samples.dtype))
    z_mean, z_var = _zscores(samples[:, live], mean[live], var[live])
    _assert_within_3se(z_mean, f"{method} mean")
    _assert_within_3se(z_var, f"{method} variance")


# ---- memory: what the backward keeps ---------------------------------------------------------------------

def _saved(fn):
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, saved


@pytest.mark.parametrize("method", ["ctrw", "rse", "pni_in", "pni_w", "cni", "rpf", "pni_out"])
@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_saved_for_backward_is_x_w_and_parameters(backend, method, capsys):
    B, C, H, W, N = 4, 3, 8, 8, 8
    x = torch.randn(B, C, H, W, requires_grad=True)
    w = torch.randn(N, C, 3, 3, requires_grad=True)
    b = torch.randn(N, requires_grad=True)
    params = {}
    if method == "ctrw":
        params = dict(mu=torch.ones(C, H, W, requires_grad=True), sigma=torch.ones(C, H, W, requires_grad=True))
        site = dict(input_noise=InputNoise.ctrw(params["mu"], params["sigma"]))
    elif method in ("rse", "pni_in"):
        params = dict(sigma=torch.full((C, 1, 1), 0.2, requires_grad=True))
        site = dict(input_noise=InputNoise.rse(params["sigma"]) if method == "rse" else InputNoise.pni(params["sigma"]))
    elif method in ("pni_w", "cni"):
        params = dict(alpha=torch.full((N, 1, 1, 1), 0.25, requires_grad=True))
        keep = torch.rand(N, C, 3, 3) < 0.5 if method == "cni" else None
        site = dict(weight_noise=WeightNoise.cni(params["alpha"], keep) if keep is not None else WeightNoise.pni(params["alpha"]))
    elif method == "rpf":
        site = dict(weight_noise=WeightNoise.rpf(torch.arange(N) < 6, 3))
    else:
        params = dict(osigma=torch.full((N, 1, 1), 0.25, requires_grad=True))
        site = dict(output_noise=OutputNoise.pni(params["osigma"]))
    y, saved = _saved(lambda: noise_conv2d(x, w, b, padding=1, seed=0, backend=backend, **site))
    _, saved_eager = _saved(lambda: eager_composition(x, w, b, padding=1, **site))
    y.sum().backward()
    xb, wb = x.numel() * 4, w.numel() * 4
    pb = sum(p.numel() * 4 for p in params.values())
    mask_b = (N * C * 9 if method == "cni" else N if method == "rpf" else 0)
    # x, W, the flat noise parameters, the bool mask, the state (16 B) and the 3 amplitudes (12 B)
    assert sum(saved) <= xb + wb + pb + mask_b + 16 + 12 + 64, saved
    assert sorted(saved)[-1] == max(xb, wb) and sum(1 for s in saved if s >= min(xb, wb)) <= 2
    with capsys.disabled():
        print(f"\n[saved bytes] {method} {backend}: {sum(saved)} (x {xb}, W {wb}) vs eager composition "
              f"{sum(saved_eager)}")


# ---- layouts, empty inputs, devices ------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_channels_last_and_noncontiguous_inputs_match_the_reference(backend):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 6, 6, generator=gen).to(memory_format=torch.channels_last)
    w = torch.randn(6, 4, 3, 3, generator=gen)
    sites = dict(input_noise=InputNoise.rse(0.3), weight_noise=WeightNoise.pni(0.25), output_noise=OutputNoise.pni(0.1))
    for xi in (x, x[:, :, :, 1:]):
        got = noise_conv2d(xi, w, padding=1, seed=4, backend=backend, **sites)
        want = noise_conv2d(xi.contiguous(), w, padding=1, seed=4, backend="reference", **sites)
        assert got.is_contiguous()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_empty_batch_and_channels(backend):
    x, w = torch.randn(0, 3, 5, 5, requires_grad=True), torch.randn(4, 3, 3, 3, requires_grad=True)
    sigma = torch.full((3, 1, 1), 0.1, requires_grad=True)
    y = noise_conv2d(x, w, padding=1, input_noise=InputNoise.rse(sigma), weight_noise=WeightNoise.pni(0.2),
                     output_noise=OutputNoise.pni(0.1), seed=0, backend=backend)
    assert y.shape == (0, 4, 5, 5)
    y.sum().backward()
    assert x.grad.shape == x.shape and torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(sigma.grad, torch.zeros_like(sigma))
    lin = noise_linear(torch.randn(0, 5), torch.randn(2, 5), weight_noise=WeightNoise.pni(0.3), seed=0, backend=backend)
    assert lin.shape == (0, 2)


def test_input_noise_needs_a_tensor_site_and_wrong_types():
    x, w = torch.randn(1, 2, 3, 3), torch.randn(2, 2, 1, 1)
    with pytest.raises(TypeError, match="input_noise must be a fastnoise.ops.InputNoise"):
        noise_conv2d(x, w, input_noise=0.1)
    with pytest.raises(TypeError, match="input_noise.shared must be a bool"):
        noise_conv2d(x, w, input_noise=InputNoise(0.1, shared=1))
    with pytest.raises(ValueError, match=r"weight_noise.scale must be a finite number in \[0"):
        noise_conv2d(x, w, weight_noise=WeightNoise(0.1, scale=-1.0))
    with pytest.raises(ValueError, match="give keep .* or replace .*not both"):
        noise_conv2d(x, w, weight_noise=WeightNoise(0.1, keep=torch.ones(2, 2, 1, 1, dtype=torch.bool),
                                                   replace=torch.ones(2, dtype=torch.bool)))
    with pytest.raises(fastnoise.BackendUnavailableError):
        noise_conv2d(x, w, weight_noise=WeightNoise(0.1), backend="cuda")
