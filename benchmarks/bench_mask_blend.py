"""mask_blend benchmarks: NENNI essential-neuron selection + blend (top-k by ratio, N:M), forward and backward.

Shapes: linear activations 16384 x 512 (rows x features) and ResNet-style conv activations
128 x 64 x 32 x 32 with dim=1 (a row = the 64 channels at one position). The baseline is the eager
reference (torch.topk + deterministic tie fix, autograd through torch.where) and torch.compile of it.
"""
from __future__ import annotations

import torch

import fastnoise
from benchmarks._common import Case, reference_variants
from fastnoise.ops.mask_blend import keep_count
from fastnoise.reference import mask_blend as ref_mb


def _case(name: str, shape: tuple, device: str, dim: int, ratio=None, nm=None) -> Case:
    d = dim % len(shape)
    feats = shape[d]
    keep, n, m = (keep_count(ratio, feats), 0, 0) if ratio is not None else (0, nm[0], nm[1])

    def make() -> dict:
        g = torch.Generator(device="cpu").manual_seed(0)
        z = torch.randn(shape, generator=g).to(device).requires_grad_(True)
        za = torch.randn(shape, generator=g).to(device).requires_grad_(True)
        return {"z": z, "za": za}

    def reference(inp):
        return ref_mb.mask_blend(inp["z"], inp["za"], keep, n, m, False, d)

    def backend_fn(backend):
        def fn(inp):
            return fastnoise.ops.mask_blend(inp["z"], inp["za"], ratio=ratio, nm=nm, dim=dim, backend=backend)
        return fn

    variants = reference_variants(reference, {b: backend_fn(b) for b in ("cpu", "cuda", "triton")}, device)
    numel = 1
    for s in shape:
        numel *= s
    esize = torch.finfo(torch.float32).bits // 8
    return Case(op="mask_blend", name=name, make=make, variants=variants,
                bytes_moved=numel * (3 * esize + 1),  # read z, za; write out (float32) and mask (bool)
                loss=lambda out: out[0].sum())


def cases(device: str, quick: bool = False) -> list[Case]:
    lin = (512, 512) if quick else (16384, 512)
    act = (8, 64, 8, 8) if quick else (128, 64, 32, 32)
    return [
        _case(f"topk r=0.9 {lin[0]}x{lin[1]}", lin, device, -1, ratio=0.9),
        _case(f"nm 2:8 {lin[0]}x{lin[1]}", lin, device, -1, nm=(2, 8)),
        _case(f"topk r=0.9 {'x'.join(map(str, act))} dim=1", act, device, 1, ratio=0.9),
        _case(f"nm 2:8 {'x'.join(map(str, act))} dim=1", act, device, 1, nm=(2, 8)),
    ]
