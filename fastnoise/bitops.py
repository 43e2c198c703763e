"""`fastnoise.bitops(model, input_shape)`: per-layer and total BitOPs of a (converted) model.

Convention (the seed reports BitOPs without a formula; this is ours, stated so it can be checked):

* an exact Conv2d / Linear, and the noisy conv / linear layers of `fastnoise.nn.noise_conv` (an exact
  product plus noise): ``MACs x weight_bits x act_bits`` (MACs = output elements x fan-in);
* a layer of a defense method: its method's cost model (`fastnoise.methods.CostModel`, defined with
  the method in fastnoise/methods/<name>.py), e.g. exact products for the kept neurons only plus the
  cost of an approximation (NENNI), or a spiking layer's products once per computed row with 1-bit spike
  inputs (NIT's LR layers);
* every other layer (BN, ReLU, pooling, additions, elementwise noise) is not counted.

Numbers are per input sample (the batch of `input_shape` is divided out), per call: a deployed model
that runs its layers n times (an ensemble) counts them n times. With float32 models the defaults are
32-bit weights and activations; pass ``weight_bits=act_bits=16`` (or 8) for a fixed-point deployment;
``approx_bits`` is the width of a method's approximation weights (default 4: INT4).
"""
from __future__ import annotations

import contextlib
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
    from .methods import Bits, cost_models
    from .nn import noise_mode
    from .nn.noise_conv import NOISY_PRODUCT_LAYERS

    exact_layers = (torch.nn.Conv2d, torch.nn.Linear) + NOISY_PRODUCT_LAYERS

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if (not isinstance(input_shape, (tuple, list, torch.Size)) or len(input_shape) < 2
            or not all(isinstance(s, int) and s > 0 for s in input_shape)):
        raise ValueError(f"input_shape must be a tuple of positive ints (batch first), got {input_shape!r}")
    bits = Bits(weight=_checks.integer("weight_bits", weight_bits, lo=1),
                act=_checks.integer("act_bits", act_bits, lo=1),
                approx=_checks.integer("approx_bits", approx_bits, lo=1))
    batch = input_shape[0]
    costs = cost_models()
    rows: list[dict] = []

    def hook(name, cm):
        def fn(mod, inp, out):
            n_out = out.numel() / batch
            if cm is not None:
                c = cm.cost(mod, n_out, bits)
                macs, dense, f, exact, projection, approx = c.macs, c.dense, c.kept_fraction, c.exact, c.projection, c.approx
            else:
                d = _conv_fanin(mod) if hasattr(mod, "kernel_size") else mod.in_features  # conv / linear
                macs = n_out * d
                dense = macs * bits.weight * bits.act
                f, exact, projection, approx = 1.0, dense, 0.0, 0.0
            rows.append({"name": name, "type": type(mod).__name__, "macs": macs, "kept_fraction": f, "dense": dense,
                         "exact": exact, "projection": projection, "approx": approx,
                         "total": exact + projection + approx})
        return fn

    handles = []
    for name, m in model.named_modules():
        cm = next((c for c in costs if c.claims(m)), None)
        if cm is not None or isinstance(m, exact_layers):
            handles.append(m.register_forward_hook(hook(name or "<root>", cm)))
    training = model.training
    try:
        with contextlib.ExitStack() as stack:
            for c in costs:
                stack.enter_context(c.prepare(model))
            stack.enter_context(noise_mode(model, "off"))  # shapes only: no noise draws consumed
            model.eval()
            p = next(model.parameters(), None)
            x = torch.zeros(tuple(input_shape), device=p.device if p is not None else "cpu",
                            dtype=p.dtype if p is not None and p.is_floating_point() else torch.float32)
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(training)
    total = sum(r["total"] for r in rows)
    dense_total = sum(r["dense"] for r in rows)
    return {"layers": rows, "total": total, "dense_total": dense_total,
            "reduction": total / dense_total - 1.0 if dense_total else 0.0,
            "convention": {"weight_bits": bits.weight, "act_bits": bits.act, "approx_bits": bits.approx}}
