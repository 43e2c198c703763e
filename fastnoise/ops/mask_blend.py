"""mask_blend: keep the essential neurons of z, replace the others by their approximation (NENNI, seed 000).

    out = z * m + z_approx * (1 - m),  m = essential-neuron mask chosen from the scores of z_approx.

`mask_select` is the selection alone (the mask, no blend): NENNI layers that compute the exact product
only for the selected neurons take the mask first, then blend once.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Optional, Sequence

import torch

from .. import _backend, _checks
from ._dispatch import kernel

__all__ = ["mask_blend", "mask_select", "keep_count", "TRITON_MAX_FEATURES"]

# The Triton kernel holds one row (or one N:M group) in registers: at most this many features.
TRITON_MAX_FEATURES = 4096


@torch.library.custom_op("fastnoise::mask_blend", mutates_args=())
def _mask_blend(z: torch.Tensor, za: torch.Tensor, keep: int, n: int, m: int, signed_score: bool, dim: int,
                backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    return kernel("mask_blend", "mask_blend", backend)(z, za, keep, n, m, signed_score, dim)


@_mask_blend.register_fake
def _(z, za, keep, n, m, signed_score, dim, backend):
    return torch.empty_like(z, memory_format=torch.contiguous_format), \
        torch.empty_like(z, dtype=torch.bool, memory_format=torch.contiguous_format)


@torch.library.custom_op("fastnoise::mask_blend_backward", mutates_args=())
def _mask_blend_backward(grad: torch.Tensor, mask: torch.Tensor, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    return kernel("mask_blend", "mask_blend_backward", backend)(grad, mask)


@_mask_blend_backward.register_fake
def _(grad, mask, backend):
    return torch.empty_like(grad, memory_format=torch.contiguous_format), \
        torch.empty_like(grad, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    ctx.backend = inputs[-1]
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad_out, grad_mask):
    (mask,) = ctx.saved_tensors
    gz, gza = _mask_blend_backward(grad_out, mask, ctx.backend)
    return gz, gza, None, None, None, None, None, None


_mask_blend.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("fastnoise::mask_select", mutates_args=())
def _mask_select(za: torch.Tensor, keep: int, n: int, m: int, signed_score: bool, dim: int,
                 backend: str) -> torch.Tensor:
    return kernel("mask_blend", "mask_select", backend)(za, keep, n, m, signed_score, dim)


@_mask_select.register_fake
def _(za, keep, n, m, signed_score, dim, backend):
    return torch.empty_like(za, dtype=torch.bool, memory_format=torch.contiguous_format)


def keep_count(ratio: float, features: int) -> int:
    """k = ceil((1 - ratio) * features), exactly.

    `ratio` is taken as the decimal number it prints as (0.7 -> 7/10), so float error never changes k:
    ``keep_count(0.7, 10) == 3`` although ``(1 - 0.7) * 10 == 3.0000000000000004``.
    """
    r = Fraction(str(float(ratio)))
    p, q = r.numerator, r.denominator
    return ((q - p) * features + q - 1) // q


def _parse_nm(nm: object) -> tuple[int, int]:
    if (not isinstance(nm, (tuple, list)) or len(nm) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in nm)):
        raise TypeError(f"nm must be a pair of ints (N, M) with 1 <= N <= M, got {nm!r}")
    n, m = nm
    if not 1 <= n <= m:
        raise ValueError(f"nm must be a pair of ints (N, M) with 1 <= N <= M, got {tuple(nm)!r}")
    return n, m


def _selection(z: torch.Tensor, ratio: Optional[float], nm: Optional[Sequence[int]], score: str,
               dim: int) -> tuple[int, int, int, bool, int]:
    """(keep, n, m, signed_score, dim) of the kernels from the public arguments (validated)."""
    if z.dim() == 0:
        raise ValueError("z must have at least 1 dimension (the features along `dim`), got a 0-d tensor")
    dim = _checks.integer("dim", dim, lo=-z.dim(), hi=z.dim() - 1)
    dim = dim % z.dim()
    score = _checks.choice("score", score, ("abs", "signed"))
    feats = z.shape[dim]
    if (ratio is None) == (nm is None):
        raise ValueError("pass exactly one of ratio (noise ratio in [0, 1)) and nm ((N, M) structured), "
                         f"got ratio={ratio!r} and nm={nm!r}")
    if ratio is not None:
        r = _checks.number("ratio", ratio, lo=0.0, hi=1.0, hi_open=True)
        keep, n, m = keep_count(r, feats), 0, 0
    else:
        n, m = _parse_nm(nm)
        if feats % m != 0:
            raise ValueError(f"nm: M must divide the size of dim {dim} of z ({feats}), got M={m}")
        keep = 0
    return keep, n, m, score == "signed", dim


def mask_blend(z: torch.Tensor, z_approx: torch.Tensor, *, ratio: Optional[float] = None,
               nm: Optional[Sequence[int]] = None, score: str = "abs", dim: int = -1,
               backend: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the essential neurons of `z` and fill the others with `z_approx` (NENNI).

    ``out = z * m + z_approx * (1 - m)``; returns ``(out, m)`` with ``m`` a bool tensor. Both have the
    shape of `z` (contiguous); `z` and `z_approx` must have the same shape, floating dtype and device.

    A *row* is the set of features along `dim` at one index of all the other dims; F = z.shape[dim].
    The score of a feature is ``|z_approx|`` (``score="abs"``) or ``z_approx`` (``score="signed"``).
    Exactly one of:

    * ``ratio=r`` in [0, 1) (the noise-injection ratio): keep the top ``k = ceil((1 - r) * F)``
      scores of each row (computed exactly, see `keep_count`; ``r = 0`` keeps everything, so
      ``out == z``);
    * ``nm=(N, M)`` with 1 <= N <= M and M dividing F: keep the top N of every M consecutive
      features of each row (structured N:M noise injection).

    Ties (equal scores at the threshold) go to the lower index, identically in every backend.
    NaN scores rank above every number (as in torch.topk) and are equal to each other; -0 == +0.

    Examples::

        # linear activations [B, F]: rows are samples, keep 10 % of the features per sample
        out, m = mask_blend(z, z_approx, ratio=0.9)               # z: [B, F]
        # conv activations [B, C, H, W]: a row is the C channels at one (b, h, w) position
        out, m = mask_blend(z, z_approx, nm=(2, 8), dim=1)        # 2 of every 8 channels kept

    Gradients: ``d out / d z = m``, ``d out / d z_approx = 1 - m`` (the selection is piecewise
    constant). The Triton backend handles rows (or N:M groups) of at most 4096 features.
    """
    _checks.floating("z", z)
    _checks.like("z_approx", z_approx, "z", z)
    keep, n, m, signed, dim = _selection(z, ratio, nm, score, dim)
    name = _backend.resolve(z.device, backend)
    return _mask_blend(z, z_approx, keep, n, m, signed, dim, name)


def mask_select(scores: torch.Tensor, *, ratio: Optional[float] = None, nm: Optional[Sequence[int]] = None,
                score: str = "abs", dim: int = -1, backend: Optional[str] = None) -> torch.Tensor:
    """The selection of `mask_blend` alone: the bool mask of the kept (essential) features.

    ``mask_select(za, ...)`` equals ``mask_blend(z, za, ...)[1]`` for every z (same rule, same ties,
    same backends), without computing a blend: for callers that need the mask before the exact
    values exist (NENNI computes the exact product only where the mask is True, then blends once).
    Returns a contiguous bool tensor of the shape of `scores`; not differentiable (a selection).

    Example::

        keep = mask_select(z_approx, ratio=0.9)                   # [B, F] bool, ceil(0.1 F) per row
        out = torch.where(keep, exact_where(keep), z_approx)
    """
    _checks.floating("scores", scores)
    keep, n, m, signed, dim = _selection(scores, ratio, nm, score, dim)
    name = _backend.resolve(scores.device, backend)
    return _mask_select(scores.detach(), keep, n, m, signed, dim, name)
