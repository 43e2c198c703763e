"""NENNIConv2d vs nn.Conv2d on the ResNet-18 layer 256->256, 8x8, 3x3, batch 128, float32 (forward).

Rows per case: ``reference`` is the dense `nn.Conv2d` the layer replaces (so ``x_vs_reference`` is the
speed-up over the dense conv), ``nenni`` the NENNI layer in noisy mode after INT4 quantization (the
deployed inference path), ``approx`` its approximation path alone (ternary projection + INT4 GEMM).
Acceptance (docs/nenni.md): r=0.9 >= 1.5x, r=0.99 >= 2.5x, approx <= 25% of the dense conv.

    python benchmarks/run.py --ops nenni --no-backward [--quick]
"""
from __future__ import annotations

import torch

from benchmarks._common import Case


def _case(device: str, batch: int, ratio: float, granularity: str, k=None) -> Case:
    from fastnoise.nn import NENNIConv2d
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).to(device)
    layer = NENNIConv2d.from_conv(conv, ratio=ratio, granularity=granularity, k=k).to(device)
    layer.quantize_()
    layer.eval()

    def make():
        return {"x": torch.randn(batch, 256, 8, 8, device=device)}

    flops = 2 * batch * 256 * 8 * 8 * 256 * 9
    return Case(op="nenni", name=f"conv256x256_8x8_b{batch}_r{ratio}_{granularity}_k{layer.k}", make=make,
                variants={"reference": lambda i: conv(i["x"]),
                          "nenni": lambda i: layer(i["x"]),
                          "approx": lambda i: layer._approx(i["x"])},
                bytes_moved=4 * (2 * batch * 256 * 64 + 256 * 256 * 9), flops=flops, loss=None)


def cases(device: str, quick: bool = False) -> list[Case]:
    batch = 8 if quick else 128
    out = []
    for ratio in (0.9, 0.99):
        for gran in ("position", "channel"):
            out.append(_case(device, batch, ratio, gran))
        if not quick:  # the approximation's cost is linear in k: the k = 32 point next to the default
            out.append(_case(device, batch, ratio, "channel", k=32))
    return out
