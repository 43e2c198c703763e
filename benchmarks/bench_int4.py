"""Benchmark of fastnoise/ops/int4.py: INT4 quantization of NENNI's W~ / b~ and the INT4 mode it feeds.

Two cases on a NENNI linear approximation 4096 rows x d = 512 -> k = 64 -> n = 512 (64 x 64 -> 16 -> 32
with --quick), float32, forward only (the INT4 mode is inference only, quantization a one-time step):

* ``quantize+dequantize``: quantize_int4 then dequantize_int4 of W~ [n, k] and b~ [n]. The functions are
  plain PyTorch (no kernel backend): "reference" is the eager call, "compile(reference)" the same under
  torch.compile.
* ``linear_approx_int4``: z~ = w_scale * (Wq y) + b_scale * bq. "reference": dequantize_int4, then the
  eager float approximation with a dense P (fastnoise.reference.ternary_projection.linear_approx_dense);
  "compile(reference)" the same under torch.compile; then every usable backend of
  `ternary_linear_approx` in INT4 mode (int8 weights in the kernel). The float mode and the conv layer
  are in benchmarks/bench_ternary_projection.py.

    python benchmarks/run.py --ops int4 [--quick]
"""
from __future__ import annotations

import torch

from benchmarks._common import Case, reference_variants
from fastnoise.ops import TernaryProjection, dequantize_int4, quantize_int4, ternary_linear_approx
from fastnoise.reference import ternary_projection as ref

BACKENDS = ("cpu", "triton", "cuda")


def _make(rows: int, d: int, k: int, n: int, device: str):
    def make() -> dict:
        gen = torch.Generator().manual_seed(0)
        proj = TernaryProjection.generate(k, d, seed=1, device=device)
        w = (torch.randn(n, k, generator=gen) / k ** 0.5).to(device)
        b = torch.randn(n, generator=gen).to(device)
        wq, w_scale, bq, b_scale = quantize_int4(w, b)
        return {"x": torch.randn(rows, d, generator=gen).to(device), "proj": proj, "p_dense": proj.dense(),
                "w": w, "b": b, "wq": wq, "w_scale": w_scale, "bq": bq, "b_scale": b_scale}
    return make


def _round_trip(inp):
    wq, w_scale, bq, b_scale = quantize_int4(inp["w"], inp["b"])
    return dequantize_int4(wq, w_scale, bq, b_scale)


def _reference(inp):
    wd, bd = dequantize_int4(inp["wq"], inp["w_scale"], inp["bq"], inp["b_scale"])
    return ref.linear_approx_dense(inp["x"], inp["p_dense"], wd, bd)


def _backend(name: str):
    def f(inp):
        return ternary_linear_approx(inp["x"], inp["proj"], inp["wq"], inp["bq"], w_scale=inp["w_scale"],
                                     b_scale=inp["b_scale"], backend=name)
    return f


def cases(device: str, quick: bool = False) -> list[Case]:
    rows, d, k, n = (64, 64, 16, 32) if quick else (4096, 512, 64, 512)
    make = _make(rows, d, k, n, device)
    shape = f"{rows}x{d}_k{k}_n{n}"
    return [
        # bytes: W~, b~ read (float32), wq / bq written (int8), then read and the float weights written
        Case(op="int4", name=f"quantize+dequantize {n}x{k}", make=make,
             variants=reference_variants(_round_trip, {}, device), bytes_moved=(n * k + n) * (4 + 1 + 1 + 4),
             loss=None),
        # bytes: x read, packed P (2 bits per entry) + int8 W~ read, z~ written; flops: the W~ GEMM
        Case(op="int4", name=f"linear_approx_int4 {shape}", make=make,
             variants=reference_variants(_reference, {b: _backend(b) for b in BACKENDS}, device),
             bytes_moved=4 * (rows * d + rows * n) + k * d // 4 + n * k + n, flops=2 * rows * k * n, loss=None),
    ]
