"""`fastnoise.bitops(model, input_shape)`: per-layer and total BitOPs of a (NENNI) model.

Convention (the seed reports BitOPs without a formula; this is ours, stated so it can be checked):

* an exact Conv2d / Linear: ``MACs x weight_bits x act_bits`` (MACs = output elements x fan-in);
* a NENNI layer, per output row (a conv output position, or a Linear sample), with fan-in d,
  n output neurons, projection size k and kept fraction f:
  - exact product for the kept neurons only: ``f x n x d x weight_bits x act_bits``;
  - ternary projection ``P x``: additions only, ``k x d / 3`` of them (P has 1/3 non-zeros in
    expectation, s = 3), each at ``act_bits``;
  - INT4 approximation GEMM ``W~ (P x)``: ``n x k`` MACs at ``approx_bits x act_bits``;
  mask selection and blending (comparisons, no products) are not counted;
* every other layer (BN, ReLU, pooling, additions) is not counted.

Numbers are per input sample (the batch of `input_shape` is divided out). With float32 models the
defaults are 32-bit weights and activations; pass ``weight_bits=act_bits=16`` (or 8) for a
fixed-point deployment.
"""
from __future__ import annotations

from typing import Sequence

import torch

from . import _checks

__all__ = ["bitops"]


def _conv_fanin(m: torch.nn.Module) -> int:
    kh, kw = m.kernel_size
    return (m.in_channels // m.groups) * kh * kw


@torch.no_grad()
def bitops(model: torch.nn.Module, input_shape: Sequence[int], *, weight_bits: int = 32, act_bits: int = 32,
           approx_bits: int = 4) -> dict:
    """Per-layer and total BitOPs of `model` on one input of `input_shape` (see the module docstring).

    Returns ``{"layers": [row...], "total": float, "dense_total": float, "reduction": float}``; each row
    has ``name, type, macs, kept_fraction, exact, projection, approx, total`` (BitOPs per sample);
    ``dense_total`` is the cost of the same layers all exact, ``reduction = total / dense_total - 1``.
    """
    from .nn.nenni import NENNIConv2d, NENNILayer, NENNILinear, nenni_layers

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if (not isinstance(input_shape, (tuple, list, torch.Size)) or len(input_shape) < 2
            or not all(isinstance(s, int) and s > 0 for s in input_shape)):
        raise ValueError(f"input_shape must be a tuple of positive ints (batch first), got {input_shape!r}")
    wb = _checks.integer("weight_bits", weight_bits, lo=1)
    ab = _checks.integer("act_bits", act_bits, lo=1)
    qb = _checks.integer("approx_bits", approx_bits, lo=1)
    batch = input_shape[0]
    rows: list[dict] = []

    def hook(name):
        def fn(mod, inp, out):
            n_out = out.numel() / batch
            if isinstance(mod, NENNIConv2d):
                d, n = mod.d, mod.n
            elif isinstance(mod, NENNILinear):
                d, n = mod.d, mod.n
            elif isinstance(mod, torch.nn.Conv2d):
                d, n = _conv_fanin(mod), mod.out_channels
            else:
                d, n = mod.in_features, mod.out_features
            macs = n_out * d
            dense = macs * wb * ab
            if isinstance(mod, NENNILayer):
                f = mod.keep_fraction(n)  # per decision row: a position's channels, or a sample's channels
                positions = n_out / n
                exact = f * dense
                projection = positions * mod.k * d / 3.0 * ab
                approx = positions * n * mod.k * qb * ab
                typ = type(mod).__name__
            else:
                f, exact, projection, approx, typ = 1.0, dense, 0.0, 0.0, type(mod).__name__
            rows.append({"name": name, "type": typ, "macs": macs, "kept_fraction": f, "dense": dense,
                         "exact": exact, "projection": projection, "approx": approx,
                         "total": exact + projection + approx})
        return fn

    handles = []
    for name, m in model.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, NENNILayer)):
            handles.append(m.register_forward_hook(hook(name or "<root>")))
    layers = nenni_layers(model)
    modes = {id(m): m.mode for _, m in layers}
    training = model.training
    try:
        for _, m in layers:  # the exact path only: BitOPs depend on shapes, not on values
            m.set_mode("dense")
        model.eval()
        p = next(model.parameters(), None)
        x = torch.zeros(tuple(input_shape), device=p.device if p is not None else "cpu",
                        dtype=p.dtype if p is not None and p.is_floating_point() else torch.float32)
        model(x)
    finally:
        for h in handles:
            h.remove()
        for _, m in layers:
            m.set_mode(modes[id(m)])
        model.train(training)
    total = sum(r["total"] for r in rows)
    dense_total = sum(r["dense"] for r in rows)
    return {"layers": rows, "total": total, "dense_total": dense_total,
            "reduction": total / dense_total - 1.0 if dense_total else 0.0,
            "convention": {"weight_bits": wb, "act_bits": ab, "approx_bits": qb}}
