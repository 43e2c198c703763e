"""Sampled exact products (NENNI): sampled_linear, sampled_conv2d (position), channel_conv2d (channel).

Shapes: linear 512 -> 512, batch 1024; the ResNet-18 conv 256 -> 256, 8x8, 3x3, pad 1, batch 32, at
keep fractions (1 - r) of 1, 10, 25 and 50 % (random masks, fixed seed). The baseline ``reference`` is
the dense product, then zero the unselected outputs (fastnoise.reference.sampled), so
``x_vs_reference`` > 1 means the sampled kernel beats "dense + mask": the crossing gives
SAMPLED_THRESHOLDS in fastnoise/ops/sampled.py.

    python benchmarks/run.py --ops sampled --no-backward [--quick]
"""
from __future__ import annotations

import torch

import fastnoise
from benchmarks._common import Case, reference_variants
from fastnoise.reference import sampled as ref

KEEP_FRACTIONS = (0.01, 0.10, 0.25, 0.50)


def _linear_case(device: str, rows: int, k: int, n: int, frac: float) -> Case:
    def make() -> dict:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(rows, k, generator=g)
        w = torch.randn(n, k, generator=g) / k ** 0.5
        b = torch.randn(n, generator=g)
        mask = torch.rand(rows, n, generator=g) < frac
        return {"x": x.to(device).requires_grad_(True), "weight": w.to(device).requires_grad_(True),
                "bias": b.to(device).requires_grad_(True), "mask": mask.to(device)}

    def reference(i):
        return ref.sampled_linear(i["x"], i["weight"], i["bias"], i["mask"])

    def backend_fn(backend):
        return lambda i: fastnoise.ops.sampled_linear(i["x"], i["weight"], i["bias"], i["mask"], backend=backend)

    kept = round(rows * n * frac)
    return Case(op="sampled", name=f"linear {k}->{n} b{rows} keep={frac:.0%}", make=make,
                variants=reference_variants(reference, {b: backend_fn(b) for b in ("cpu", "cuda", "triton")}, device),
                bytes_moved=4 * (rows * k + n * k + n + rows * n) + rows * n, flops=2 * kept * k,
                loss=lambda out: out.sum())


def _conv_case(device: str, batch: int, c: int, n: int, hw: int, frac: float, channel: bool) -> Case:
    def make() -> dict:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, c, hw, hw, generator=g)
        w = torch.randn(n, c, 3, 3, generator=g) / (9 * c) ** 0.5
        b = torch.randn(n, generator=g)
        mask = torch.rand((batch, n) if channel else (batch, n, hw, hw), generator=g) < frac
        return {"x": x.to(device).requires_grad_(True), "weight": w.to(device).requires_grad_(True),
                "bias": b.to(device).requires_grad_(True), "mask": mask.to(device)}

    ref_fn = ref.channel_conv2d if channel else ref.sampled_conv2d
    op = fastnoise.ops.channel_conv2d if channel else fastnoise.ops.sampled_conv2d

    def reference(i):
        return ref_fn(i["x"], i["weight"], i["bias"], i["mask"], [1, 1], [1, 1], [1, 1], 1)

    def backend_fn(backend):
        return lambda i: op(i["x"], i["weight"], i["bias"], i["mask"], padding=1, backend=backend)

    outs = batch * n * hw * hw
    kind = "channel" if channel else "position"
    return Case(op="sampled", name=f"conv {c}->{n} {hw}x{hw} 3x3 b{batch} {kind} keep={frac:.0%}", make=make,
                variants=reference_variants(reference, {b: backend_fn(b) for b in ("cpu", "cuda", "triton")}, device),
                bytes_moved=4 * (batch * c * hw * hw + n * c * 9 + n + outs) + (batch * n if channel else outs),
                flops=2 * round(outs * frac) * c * 9, loss=lambda out: out.sum())


def cases(device: str, quick: bool = False) -> list[Case]:
    rows, feats, batch, chans = (64, 64, 2, 16) if quick else (1024, 512, 32, 256)
    fracs = KEEP_FRACTIONS[1:2] if quick else KEEP_FRACTIONS
    out = [_linear_case(device, rows, feats, feats, f) for f in fracs]
    for channel in (False, True):
        out += [_conv_case(device, batch, chans, chans, 8, f, channel) for f in fracs]
    return out
