"""NENNI approximation path z~ = W~ (P patches) + b~ on the ResNet-18 conv layer 256 -> 256, 8x8, 3x3, batch 128.

Variants: the eager reference (dense P, F.unfold, 1x1 conv), torch.compile(reference), every usable
backend (float W~), the INT4 path of the default backend, and the dense nn.Conv2d it approximates, so
that the ratio approx / dense conv is printed in one run, for k in {16, 32, 64, 128}.

    python benchmarks/run.py --ops ternary_projection [--quick]
"""
from __future__ import annotations

import torch

from benchmarks._common import Case, reference_variants
from fastnoise.ops import TernaryProjection, quantize_int4, ternary_conv_approx
from fastnoise.reference import ternary_projection as ref

KS = (16, 32, 64, 128)


def _reference(inp):
    return ref.conv_approx_dense(inp["x"], inp["p_dense"], inp["w"], inp["b"], 3, 3, 1, 1, 1, 1, 1, 1, 1)


def _backend(name):
    def f(inp):
        return ternary_conv_approx(inp["x"], inp["proj"], inp["w"], inp["b"], kernel_size=3, padding=1, backend=name)
    return f


def _int4(inp):
    return ternary_conv_approx(inp["x"], inp["proj"], inp["wq"], inp["bq"], w_scale=inp["w_scale"],
                               b_scale=inp["b_scale"], kernel_size=3, padding=1)


def _dense_conv(inp):
    return inp["conv"](inp["x"])


def cases(device: str, quick: bool = False) -> list[Case]:
    bsz, c, hw = (8, 64, 8) if quick else (128, 256, 8)
    d = c * 9
    out = []
    for k in (KS[:2] if quick else KS):
        def make(k=k):
            gen = torch.Generator().manual_seed(0)
            proj = TernaryProjection.generate(k, d, seed=1, device=device)
            w = (torch.randn(c, k, generator=gen) / k ** 0.5).to(device)
            b = torch.randn(c, generator=gen).to(device)
            wq, w_scale, bq, b_scale = quantize_int4(w, b)
            conv = torch.nn.Conv2d(c, c, 3, padding=1).to(device)
            x = torch.randn(bsz, c, hw, hw, generator=gen).to(device)
            return {"x": x.requires_grad_(True), "proj": proj, "p_dense": proj.dense(), "w": w.requires_grad_(True),
                    "b": b.requires_grad_(True), "wq": wq, "w_scale": w_scale, "bq": bq, "b_scale": b_scale,
                    "conv": conv}

        variants = reference_variants(_reference, {b: _backend(b) for b in ("cpu", "triton", "cuda")}, device)
        variants["nn.Conv2d (dense)"] = _dense_conv
        fwd_only = {"int4 (default backend)": _int4, "nn.Conv2d (dense)": _dense_conv}
        name = f"conv{c}x{hw}x{hw}_3x3_b{bsz}_k{k}"
        # bytes: x read, packed P + W~ read, z~ written; flops: the W~ GEMM (the projection is adds)
        nbytes = 4 * (bsz * c * hw * hw * 2 + c * k) + 2 * k * d // 8
        flops = 2 * bsz * hw * hw * c * k
        out.append(Case(op="ternary_projection", name=name, make=make, variants=variants, bytes_moved=nbytes,
                        flops=flops, loss=lambda z: z.sum()))
        out.append(Case(op="ternary_projection", name=name + "_int4", make=make,
                        variants={"reference": _reference, **fwd_only}, bytes_moved=nbytes, flops=flops, loss=None))
    return out
