"""CPU capability dispatch (fastnoise/_cpu_capability.py): one build of the C++ kernels per instruction set,
the fastest one the CPU supports loaded at import, FASTNOISE_CPU_CAPABILITY to force one, clear errors for a
value that cannot work, and the same results from every build (each build runs in its own process: two
cannot be loaded together)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fastnoise
from fastnoise import _cpu_capability as cc
from fastnoise import _ext

BUILT, SUPPORTED = _ext.cpu_capabilities()
FAKE = {"generic": [], "avx2": ["avx2", "fma"], "avx512": ["avx2", "fma", "avx512f", "avx512bw"]}
AVX2_CPU = frozenset({"sse2", "avx2", "fma"})


def _python(code: str, capability=None, timeout=600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != cc.ENV}
    if capability is not None:
        env[cc.ENV] = capability
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=Path(__file__).resolve().parent)


# ---- the choice (pure function of the built table, the CPU flags and the variable) ----

@pytest.mark.parametrize("flags,requested,expected", [
    (AVX2_CPU, None, "avx2"), (AVX2_CPU | {"avx512f", "avx512bw"}, "", "avx512"), (frozenset(), "auto", "generic"),
    (AVX2_CPU | {"avx512f", "avx512bw"}, "AVX2", "avx2"), (AVX2_CPU, " generic ", "generic")])
def test_select_fastest_supported_or_requested(flags, requested, expected):
    assert cc.select(FAKE, flags, requested) == expected


@pytest.mark.parametrize("requested,match", [
    ("avx9", r"FASTNOISE_CPU_CAPABILITY='avx9' is not a CPU capability; supported values on this machine: "
             r"avx2, generic \(or auto\)"),
    ("avx512", r"this CPU does not support avx512 \(lacks avx512bw, avx512f\); supported values on this machine: "
               r"avx2, generic"),
    ("native", r"no native build \(build with FASTNOISE_NATIVE=1\); supported values on this machine: avx2, generic"),
])
def test_select_refuses_with_the_supported_values(requested, match):
    with pytest.raises(fastnoise.CpuCapabilityError, match=match):
        cc.select(FAKE, AVX2_CPU, requested)


def test_native_needs_every_flag_of_its_build_machine():
    built = {**FAKE, "native": sorted(AVX2_CPU | {"avx512f", "avx512bw", "avx512vnni"})}
    assert cc.select(built, AVX2_CPU | {"avx512f", "avx512bw", "avx512vnni"}, None) == "native"
    assert cc.select(built, AVX2_CPU | {"avx512f", "avx512bw"}, None) == "avx512"
    with pytest.raises(cc.CpuCapabilityError, match=r"lacks avx512vnni"):
        cc.select(built, AVX2_CPU | {"avx512f", "avx512bw"}, "native")


def test_no_supported_build_is_an_error():
    with pytest.raises(cc.CpuCapabilityError, match="supports none of the fastnoise CPU builds"):
        cc.select({"avx2": ["avx2"]}, frozenset(), None)


# ---- this machine's build ----

def test_generic_is_built_and_supported_here():
    assert "generic" in BUILT and "generic" in SUPPORTED
    assert set(SUPPORTED) <= set(BUILT)


def test_loaded_capability_is_the_fastest_supported_or_the_forced_one():
    expected = (os.environ.get(cc.ENV) or "").strip().lower() or SUPPORTED[0]
    assert fastnoise.cpu_capability() == expected
    assert sys.modules["fastnoise._C"].__file__.split("/")[-1].startswith(f"_C_{expected}.")
    assert f"CPU capability in use: {expected}" in fastnoise.info()


@pytest.mark.parametrize("capability", [c for c in BUILT if c not in SUPPORTED] + ["bogus"])
def test_unsupported_or_unknown_build_refuses_clearly(capability):
    """A build this CPU cannot run, or an unknown name, stops `import fastnoise` with a clear error (the
    supported builds are forced and loaded by the `probes` fixture below, which checks the loaded name)."""
    r = _python("import fastnoise; print(fastnoise.cpu_capability())", capability)
    assert r.returncode != 0
    assert "CpuCapabilityError" in r.stderr and cc.ENV in r.stderr, r.stderr
    assert f"supported values on this machine: {', '.join(SUPPORTED)} (or auto)" in r.stderr, r.stderr


def test_cli_info_names_the_forced_capability():
    r = subprocess.run([sys.executable, "-m", "fastnoise", "info"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, cc.ENV: "generic"})
    assert r.returncode == 0, r.stderr
    assert "CPU capability in use: generic (FASTNOISE_CPU_CAPABILITY=generic)" in r.stdout


# ---- the same results on every path ----

PROBE = r"""
import sys, torch, fastnoise
from fastnoise import rng
from fastnoise.ops import mask_blend, noise_add, noise_mul, noise_sal, TernaryProjection, sampled_linear
torch.manual_seed(0)
out = {"capability": fastnoise.cpu_capability()}
n = 3 * 2 ** 18 + 7                                      # a long stream, odd length, unaligned offsets
for i, (seed, off) in enumerate([(0, 0), (2 ** 40 + 3, 5), (123, 2 ** 33 + 1)]):
    out[f"raw{i}"] = rng.raw(n // 4, seed, off)
    out[f"uniform{i}"] = rng.uniform(n, seed, off)
    out[f"normal{i}"] = rng.normal(n, seed, off)
# the normals fused into the noise kernels: x + 1 * delta and x * (0 + 1 * delta) are delta exactly
shape = (16, 17, 33, 31)
x0 = torch.zeros(shape, requires_grad=True)
y = noise_add(x0, torch.ones(17, 1, 1), seed=7)
out["noise_add_delta"] = y.detach()
out["noise_mul_delta"] = noise_mul(torch.ones(shape), 0.0, 1.0, seed=7).detach()
# arithmetic: forward and the backward that regenerates delta
x = torch.randn(shape, requires_grad=True)
s = torch.full((17, 1, 1), 0.3, requires_grad=True)
for name, f in [("add", lambda: noise_add(x, s, seed=3)), ("mul", lambda: noise_mul(x, 1.0, s, seed=3)),
                ("sal", lambda: noise_sal(x, 0.5, s, seed=3))]:
    o = f()
    gx, gs = torch.autograd.grad((o * o).sum(), [x, s])
    out[f"{name}_out"], out[f"{name}_gx"], out[f"{name}_gs"] = o.detach(), gx, gs
# selection: masks of top-k and N:M, with ties (rounded scores), float32 and bfloat16, rows and channels
for dtype in (torch.float32, torch.bfloat16):
    z = torch.randn(257, 1000).to(dtype)
    za = torch.randn(257, 1000).round(decimals=1).to(dtype)
    c = torch.randn(8, 64, 9, 9).round(decimals=1).to(dtype)
    for key, kw in [("topk", dict(ratio=0.9)), ("signed", dict(ratio=0.37, score="signed")), ("nm", dict(nm=(2, 8)))]:
        o, m = mask_blend(z, za, **kw)
        out[f"mask_{key}_{dtype}"], out[f"blend_{key}_{dtype}"] = m, o
        out[f"mask_{key}_dim1_{dtype}"] = mask_blend(c, c, dim=1, **kw)[1]
# NENNI: the Philox-generated ternary projection P, and products
proj = TernaryProjection.generate(64, 2304, seed=11)
out["ternary_P"] = proj.dense()
xt = torch.randn(96, 2304)
out["ternary_project"] = fastnoise.ops.ternary_project(xt, proj)
w, b, mk = torch.randn(200, 2304), torch.randn(200), torch.rand(96, 200) < 0.1
out["sampled_linear"] = sampled_linear(xt, w, b, mk)
torch.save(out, sys.argv[1])
"""
# bit-identical on every build: the RNG streams, the normals inside the noise kernels, the selection masks, P, and
# the noise ops' elementwise outputs and input gradients (contraction off; sal's exp gives the same bits in
# every build: nat::floor / nat::scale_pow2 are exact, design note 63). Reductions (gs) keep a tolerance.
EXACT = ("raw", "uniform", "normal", "noise_add_delta", "noise_mul_delta", "mask_", "ternary_P",
         "add_out", "add_gx", "mul_out", "mul_gx", "sal_out", "sal_gx")


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    out = {}
    for cap in SUPPORTED:
        path = tmp_path_factory.mktemp(cap) / "probe.pt"
        r = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=600,
                           env={**os.environ, cc.ENV: cap})
        assert r.returncode == 0, r.stderr
        out[cap] = torch.load(path)
        assert out[cap]["capability"] == cap
    return out


def test_every_build_gives_the_same_results(probes):
    """RNG (raw, uniform, normals), the noise kernels' normals, masks and P: bit for bit. Arithmetic is
    compiled with -ffp-contract=off (no FMA contraction) in every build, so it comes out identical too."""
    caps = list(probes)
    base = probes[caps[0]]
    assert len(caps) >= 1 and base["normal0"].numel() == 3 * 2 ** 18 + 7
    for cap in caps[1:]:
        for key, ref in base.items():
            if key == "capability":
                continue
            got = probes[cap][key]
            if key.startswith(EXACT):
                diff = (got != ref).sum().item()
                assert diff == 0, f"{key}: {diff} elements differ between {caps[0]} and {cap}"
            else:
                torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6, msg=lambda m: f"{key} {cap}: {m}")


def test_normals_match_the_reference_stream(probes):
    """Every build's normals are the documented Philox stream (few ulp of the float64 reference Box-Muller)."""
    from fastnoise.reference import rng as ref_rng
    for cap, p in probes.items():
        got = p["normal1"][:4099]
        want = torch.from_numpy(ref_rng.normal_np(2 ** 40 + 3, 5, 4099))
        torch.testing.assert_close(got.double(), want.double(), rtol=0, atol=2e-5, msg=lambda m: f"{cap}: {m}")
