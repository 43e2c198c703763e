"""Cases of the noise-op benchmarks (bench_noise_add / _mul / _sal.py) on activations 128x64x32x32 float32.

Baseline "reference": the eager PyTorch formula a user writes, with ``torch.randn_like`` for delta (the
NumPy Philox of fastnoise.reference is a correctness oracle, far slower, not a fair baseline);
"compile(reference)": the same formula under torch.compile (Inductor generates its own fused Philox);
then every usable fastnoise backend (delta generated in the kernel, regenerated in the backward).
"""
from __future__ import annotations

import torch

from benchmarks._common import Case, reference_variants
from fastnoise.ops import noise_add, noise_mul, noise_sal

BACKENDS = ("cpu", "triton", "cuda")


def _backends(fn):
    return {b: (lambda inp, b=b: fn(inp, b)) for b in BACKENDS}


def cases(device: str, quick: bool = False, op: str = "all") -> list[Case]:
    """The benchmark cases of noise op `op` ("noise_add", "noise_mul", "noise_sal"; "all": every one)."""
    n, c, h, w = (8, 16, 16, 16) if quick else (128, 64, 32, 32)
    shape = (n, c, h, w)
    numel = n * c * h * w
    name = "x".join(map(str, shape)) + " f32"

    def make_add():
        return {"x": torch.randn(shape, device=device, requires_grad=True),
                "sigma": torch.full((c, 1, 1), 0.1, device=device, requires_grad=True)}

    def make_mul():
        return {"x": torch.randn(shape, device=device, requires_grad=True),
                "mu": torch.ones((c, h, w), device=device, requires_grad=True),
                "sigma": torch.full((c, h, w), 0.3, device=device, requires_grad=True)}

    def make_sal():
        return {"x": torch.rand(shape, device=device, requires_grad=True),
                "w": torch.zeros((c, h, w), device=device, requires_grad=True),
                "b": torch.full((c, h, w), -4.6, device=device, requires_grad=True)}

    ref_add = lambda i: i["x"] + i["sigma"] * torch.randn_like(i["x"])
    ref_mul = lambda i: i["x"] * (i["mu"] + i["sigma"] * torch.randn_like(i["x"]))
    ref_sal = lambda i: i["x"] + torch.randn_like(i["x"]) * torch.exp((i["x"] * i["w"] + i["b"]) / 2)
    ours_add = lambda i, b: noise_add(i["x"], i["sigma"], seed=0, backend=b)
    ours_mul = lambda i, b: noise_mul(i["x"], i["mu"], i["sigma"], seed=0, backend=b)
    ours_sal = lambda i, b: noise_sal(i["x"], i["w"], i["b"], seed=0, backend=b)
    xbytes = 2 * numel * 4
    pbytes = 2 * c * h * w * 4
    loss = lambda out: out.sum()
    out = [
        Case("noise_add", name + " sigma[C,1,1]", make_add, reference_variants(ref_add, _backends(ours_add), device),
             bytes_moved=xbytes, loss=loss),
        Case("noise_mul", name + " mu,sigma[C,H,W]", make_mul, reference_variants(ref_mul, _backends(ours_mul), device),
             bytes_moved=xbytes + pbytes, loss=loss),
        Case("noise_sal", name + " w,b[C,H,W]", make_sal, reference_variants(ref_sal, _backends(ours_sal), device),
             bytes_moved=xbytes + pbytes, loss=loss),
    ]
    return [c for c in out if op in ("all", c.op)]
