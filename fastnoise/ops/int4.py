"""INT4 weights of the NENNI approximation (seed 000 §3.1): one-time symmetric quantization of W~ and b~.

Layout: values in [-8, 7] stored one per byte as int8 (not packed two per byte); W~ has one float scale
per output row, b~ one scalar scale. The approximation ops take either float weights or these INT4
values with their scales (`fastnoise.ops.ternary_linear_approx` / `ternary_conv_approx`, INT4 mode).
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _checks

__all__ = ["quantize_int4", "dequantize_int4", "INT4_MIN", "INT4_MAX", "check_int4_values"]

INT4_MIN, INT4_MAX = -8, 7


def check_int4_values(name: str, t: torch.Tensor) -> None:
    """Values of the int8 tensor `t` lie in [INT4_MIN, INT4_MAX] (skipped while tracing)."""
    if _checks._tracing() or t.numel() == 0:
        return
    lo, hi = int(t.min()), int(t.max())
    if lo < INT4_MIN or hi > INT4_MAX:
        raise ValueError(f"{name} must hold INT4 values in [{INT4_MIN}, {INT4_MAX}], got values in [{lo}, {hi}]")


def quantize_int4(w: torch.Tensor, b: Optional[torch.Tensor] = None):
    """One-time symmetric INT4 quantization of W~ [n, k] and b~ [n].

    w_scale[o] = max|W~[o, :]| / 7 (1 for an all-zero row), wq = clamp(round(W~ / w_scale), -8, 7) as int8;
    b_scale = max|b~| / 7 (1 when b~ is 0), bq = clamp(round(b~ / b_scale), -8, 7) as int8.
    Returns (wq, w_scale, bq, b_scale): w_scale float [n] and b_scale a 0-dim tensor, in w's dtype
    (bq and b_scale are None when b is None).
    """
    w = _checks.floating("w", w)
    if w.dim() != 2:
        raise ValueError(f"w must have shape [n, k], got {tuple(w.shape)}")
    _finite("w", w)
    if w.shape[1] == 0:  # no entries: scale 1 by the all-zero-row rule
        w_scale = torch.ones(w.shape[0], dtype=w.dtype, device=w.device)
    else:
        w_scale = w.detach().abs().amax(1) / INT4_MAX
    w_scale = torch.where(w_scale > 0, w_scale, torch.ones_like(w_scale))
    wq = torch.clamp(torch.round(w.detach() / w_scale[:, None]), INT4_MIN, INT4_MAX).to(torch.int8)
    if b is None:
        return wq, w_scale, None, None
    b = _checks.floating("b", b)
    if tuple(b.shape) != (w.shape[0],):
        raise ValueError(f"b must have shape [n] = [{w.shape[0]}], got {tuple(b.shape)}")
    _checks.same_device("b", b, "w", w)
    _finite("b", b)
    b_scale = b.detach().abs().amax() / INT4_MAX if b.numel() else torch.ones((), dtype=b.dtype, device=b.device)
    b_scale = torch.where(b_scale > 0, b_scale, torch.ones_like(b_scale))
    bq = torch.clamp(torch.round(b.detach() / b_scale), INT4_MIN, INT4_MAX).to(torch.int8)
    return wq, w_scale, bq, b_scale


def _finite(name: str, t: torch.Tensor) -> None:
    """No NaN / inf (skipped while tracing: data-dependent). INT4 of a NaN weight used to be 0 with scale 1,
    of an inf weight a NaN row: silently wrong either way."""
    if _checks._tracing() or t.numel() == 0:
        return
    bad = int((~torch.isfinite(t.detach())).sum())
    if bad:
        raise ValueError(f"{name} must be finite to be quantized, got {bad} NaN / inf values of {t.numel()}")


def dequantize_int4(wq: torch.Tensor, w_scale: torch.Tensor, bq: Optional[torch.Tensor] = None, b_scale=None,
                    dtype: torch.dtype = torch.float32):
    """(wq * w_scale[:, None], bq * b_scale) in `dtype`: the float weights the INT4 path computes with.

    wq int8 [n, k], w_scale floating [n]; bq int8 [n] with b_scale (a number or a one-element tensor), or
    both None; dtype a floating dtype."""
    wq = _checks.tensor("wq", wq)
    if wq.dtype != torch.int8 or wq.dim() != 2:
        raise ValueError(f"wq must be an int8 tensor [n, k] (INT4 values), got {wq.dtype} {tuple(wq.shape)}")
    w_scale = _checks.floating("w_scale", w_scale)
    if tuple(w_scale.shape) != (wq.shape[0],):
        raise ValueError(f"w_scale must have shape [n] = [{wq.shape[0]}], got {tuple(w_scale.shape)}")
    _checks.same_device("w_scale", w_scale, "wq", wq)
    if not isinstance(dtype, torch.dtype) or dtype not in _checks.FLOAT_DTYPES:
        raise TypeError(f"dtype must be a floating torch dtype {_checks.FLOAT_DTYPES}, got {dtype!r}")
    if (bq is None) != (b_scale is None):
        raise ValueError("bq and b_scale go together: pass both (an int8 [n] bias and its scale) or neither")
    if bq is not None:
        bq = _checks.tensor("bq", bq)
        if bq.dtype != torch.int8 or tuple(bq.shape) != (wq.shape[0],):
            raise ValueError(f"bq must be an int8 tensor [n] = [{wq.shape[0]}], got {bq.dtype} {tuple(bq.shape)}")
        _checks.same_device("bq", bq, "wq", wq)
        if isinstance(b_scale, torch.Tensor):
            _checks.floating("b_scale", b_scale)
            if b_scale.numel() != 1:
                raise ValueError(f"b_scale must be a scalar (one element), got shape {tuple(b_scale.shape)}")
            b_scale = b_scale.reshape(())
        else:
            b_scale = _checks.number("b_scale", b_scale, lo=0)
    w = wq.to(dtype) * w_scale.to(dtype)[:, None]
    if bq is None:
        return w, None
    return w, bq.to(dtype) * torch.as_tensor(b_scale, dtype=dtype, device=bq.device)
