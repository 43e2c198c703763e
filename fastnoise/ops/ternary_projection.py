"""NENNI sparse ternary projection (seed 000, §3): z~ = W~ P x + b~ with P in sqrt(3/k) {-1, 0, +1}^{k x d}.

P (Achlioptas, s = 3): +1 and -1 each with probability 1/6, 0 with probability 2/3. It is generated
from the shared Philox stream (`fastnoise.rng`) and is bit-identical in every backend:

* entry (p, q) uses the raw 32-bit word of element ``g = offset + p*d + q`` of the stream of `seed`
  (offset 0 unless given); with ``t = raw >> 8`` (24 bits):
  ``+1 if t < 2796203``, ``-1 if 2796203 <= t < 5592406``, ``0 otherwise``
  (P(+1) = P(-1) = 2796203 / 2**24 = 1/6 + 2e-8, P(0) = 11184810 / 2**24).
* stored packed, never as a dense float matrix: int32 ``[2, k, ceil(d/32)]``, plane 0 the +1 bitmask,
  plane 1 the -1 bitmask; entry q of row p is bit ``q % 32`` of word ``q // 32``. That is 2 bits per
  entry: 1/16 of a float32 P when d % 32 == 0 (every ResNet / WRN layer: d = 576, 1152, 2304, 4608).

The projection ``scale * P x`` (scale = sqrt(3/k)) is computed with additions and subtractions only
(one multiplication by `scale` per output). Kernels: reference (dense P), cpu (C++), triton, cuda.

INT4 mode (`quantize_int4`): W~ as int8 values in [-8, 7], one value per byte (not packed two per
byte), with a float per-output-row scale ``w_scale = max|W~[o, :]| / 7``; b~ as int8 values in
[-8, 7] with one scalar scale ``b_scale = max|b~| / 7``. The projection stays in floating point;
``z~ = w_scale * (Wq (P x)) + b_scale * bq``. INT4 mode is inference only.

Convolutions: P acts on the im2col patches of each group (d = C_in/groups * kh * kw, ordered
channel-major, then kernel row, then kernel column, as F.unfold) with the conv's stride, padding and
dilation. One P is shared by all groups; the projection has groups*k channels (group g: g*k .. g*k+k-1)
and W~ [n, k] is the grouped 1x1 map (output channel o of group o // (n/groups) reads that group's k
channels), mirroring the grouped conv it approximates.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F

from .. import _backend, _checks
from .._backend import BackendUnavailableError  # noqa: F401  (re-exported for users of this module)
from ..reference import ternary_projection as _ref
from . import _conv
from ._dispatch import kernel
from .int4 import INT4_MAX, INT4_MIN, check_int4_values, dequantize_int4, quantize_int4  # noqa: F401

__all__ = ["TernaryProjection", "ternary_project", "ternary_conv_project", "ternary_linear_approx",
           "ternary_conv_approx", "quantize_int4", "dequantize_int4", "INT4_MIN", "INT4_MAX"]

FAMILY = "ternary_projection"
_IntPair = _conv.IntPair


# ---- custom ops ---------------------------------------------------------------------------------

@torch.library.custom_op("fastnoise::ternary_generate", mutates_args=())
def _generate(state: torch.Tensor, k: int, d: int, backend: str) -> torch.Tensor:
    return kernel(FAMILY, "ternary_generate", backend)(state, k, d)


@_generate.register_fake
def _(state, k, d, backend):
    return state.new_empty((2, k, _ref.words(d)), dtype=torch.int32)


@torch.library.custom_op("fastnoise::ternary_project", mutates_args=())
def _project(x: torch.Tensor, packed: torch.Tensor, scale: float, backend: str) -> torch.Tensor:
    return kernel(FAMILY, "ternary_project", backend)(x, packed, scale)


@_project.register_fake
def _(x, packed, scale, backend):
    return x.new_empty((x.shape[0], packed.shape[1]))


@torch.library.custom_op("fastnoise::ternary_project_t", mutates_args=())
def _project_t(g: torch.Tensor, packed: torch.Tensor, d: int, scale: float, backend: str) -> torch.Tensor:
    return kernel(FAMILY, "ternary_project_t", backend)(g, packed, d, scale)


@_project_t.register_fake
def _(g, packed, d, scale, backend):
    return g.new_empty((g.shape[0], d))


def _project_setup(ctx, inputs, output):
    x, packed, scale, backend = inputs
    ctx.packed, ctx.scale, ctx.backend, ctx.d = packed, scale, backend, x.shape[1]


def _project_backward(ctx, grad):
    return _project_t(grad.contiguous(), ctx.packed, ctx.d, ctx.scale, ctx.backend), None, None, None


_project.register_autograd(_project_backward, setup_context=_project_setup)


def _project_t_setup(ctx, inputs, output):
    g, packed, d, scale, backend = inputs
    ctx.packed, ctx.scale, ctx.backend = packed, scale, backend


def _project_t_backward(ctx, grad):
    return _project(grad.contiguous(), ctx.packed, ctx.scale, ctx.backend), None, None, None, None


_project_t.register_autograd(_project_t_backward, setup_context=_project_t_setup)


@torch.library.custom_op("fastnoise::ternary_conv_project", mutates_args=())
def _conv_project(x: torch.Tensor, packed: torch.Tensor, scale: float, kh: int, kw: int, sh: int, sw: int,
                  ph: int, pw: int, dh: int, dw: int, groups: int, backend: str) -> torch.Tensor:
    return kernel(FAMILY, "ternary_conv_project", backend)(x, packed, scale, kh, kw, sh, sw, ph, pw, dh, dw, groups)


@_conv_project.register_fake
def _(x, packed, scale, kh, kw, sh, sw, ph, pw, dh, dw, groups, backend):
    b, _, h, w = x.shape
    return x.new_empty((b, groups * packed.shape[1], _conv.out_size(h, kh, sh, ph, dh),
                        _conv.out_size(w, kw, sw, pw, dw)))


def _conv_project_t(grad: torch.Tensor, packed: torch.Tensor, scale: float, in_shape, conv: tuple,
                    backend: str) -> torch.Tensor:
    """The transpose of the conv projection: P^T on every output position (custom op), then col2im."""
    kh, kw, sh, sw, ph, pw, dh, dw, groups = conv
    b, gk, ho, wo = grad.shape
    k = gk // groups
    d = in_shape[1] // groups * kh * kw
    rows = grad.reshape(b, groups, k, ho * wo).permute(0, 1, 3, 2).reshape(-1, k).contiguous()
    cols = _project_t(rows, packed, d, scale, backend)  # [B*G*L, d]
    cols = cols.view(b, groups, ho * wo, d).permute(0, 1, 3, 2).reshape(b, groups * d, ho * wo)
    return _conv.col2im(cols, in_shape, conv)


def _conv_project_setup(ctx, inputs, output):
    x, packed, scale, *conv, backend = inputs
    ctx.packed, ctx.scale, ctx.conv, ctx.backend, ctx.in_shape = packed, scale, tuple(conv), backend, x.shape


def _conv_project_backward(ctx, grad):
    gx = _conv_project_t(grad, ctx.packed, ctx.scale, ctx.in_shape, ctx.conv, ctx.backend)
    return (gx,) + (None,) * 12


_conv_project.register_autograd(_conv_project_backward, setup_context=_conv_project_setup)


def _conv_epilogue_weights(y: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor], w_scale: Optional[torch.Tensor],
                           b_scale: Optional[torch.Tensor]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The float [n, k] weights and [n] bias of the conv epilogue kernels: INT4 scales folded in."""
    wf = w.to(y.dtype)
    if w.dtype == torch.int8:
        wf = wf * w_scale.to(y.dtype)[:, None]
        b = None if b is None else b.to(y.dtype) * b_scale.to(y.dtype)
    return wf.contiguous(), None if b is None else b.to(y.dtype).contiguous()


def _epilogue(y: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor], w_scale: Optional[torch.Tensor],
              b_scale: Optional[torch.Tensor], groups: int, conv: bool, backend: str = "reference") -> torch.Tensor:
    """z = W~ y + b~ (float), or w_scale * (Wq y) + b_scale * bq (INT4), shared by every backend.

    The conv map is the kernel ``ternary_conv_epilogue`` of the dispatch table (cpu: register-tiled C++, the
    BLAS batched GEMM is slow at K = k; triton / cuda: the torch GEMM, cuBLAS), with the INT4 scales folded
    into the [n, k] weights and the bias first (tiny, per call): one GEMM with the bias instead of GEMM,
    scale pass and bias pass over z. The linear map is F.linear on every backend.
    """
    int4 = w.dtype == torch.int8
    if conv:
        return kernel(FAMILY, "ternary_conv_epilogue", backend)(y, *_conv_epilogue_weights(y, w, b, w_scale, b_scale),
                                                                groups)
    wf = w.to(y.dtype)
    z = F.linear(y, wf, None if int4 else b)
    if int4:
        z.mul_(w_scale.to(y.dtype).view(1, -1))
        if b is not None:
            z.add_((b.to(y.dtype) * b_scale.to(y.dtype)).view(1, -1))
    return z


@torch.library.custom_op("fastnoise::ternary_linear_approx", mutates_args=())
def _linear_approx(x: torch.Tensor, packed: torch.Tensor, scale: float, w: torch.Tensor, b: Optional[torch.Tensor],
                   w_scale: Optional[torch.Tensor], b_scale: Optional[torch.Tensor], backend: str) -> torch.Tensor:
    y = kernel(FAMILY, "ternary_project", backend)(x, packed, scale)
    return _epilogue(y, w, b, w_scale, b_scale, 1, conv=False)


@_linear_approx.register_fake
def _(x, packed, scale, w, b, w_scale, b_scale, backend):
    return x.new_empty((x.shape[0], w.shape[0]))


def _linear_setup(ctx, inputs, output):
    x, packed, scale, w, b, w_scale, b_scale, backend = inputs
    ctx.save_for_backward(x, w)
    ctx.packed, ctx.scale, ctx.backend, ctx.has_b = packed, scale, backend, b is not None


def _linear_backward(ctx, grad):
    x, w = ctx.saved_tensors
    if w.dtype == torch.int8:
        raise RuntimeError("ternary_linear_approx: INT4 mode (int8 w) is inference only: no gradients")
    grad_x = grad_w = grad_b = None
    if ctx.needs_input_grad[0]:
        grad_x = _project_t((grad @ w).contiguous(), ctx.packed, x.shape[1], ctx.scale, ctx.backend)
    if ctx.needs_input_grad[3]:
        y = _project(x, ctx.packed, ctx.scale, ctx.backend)  # recomputed, never stored
        grad_w = grad.t() @ y
    if ctx.has_b and ctx.needs_input_grad[4]:
        grad_b = grad.sum(0)
    return grad_x, None, None, grad_w, grad_b, None, None, None


_linear_approx.register_autograd(_linear_backward, setup_context=_linear_setup)


@torch.library.custom_op("fastnoise::ternary_conv_approx", mutates_args=())
def _conv_approx(x: torch.Tensor, packed: torch.Tensor, scale: float, w: torch.Tensor, b: Optional[torch.Tensor],
                 w_scale: Optional[torch.Tensor], b_scale: Optional[torch.Tensor], kh: int, kw: int, sh: int,
                 sw: int, ph: int, pw: int, dh: int, dw: int, groups: int, backend: str) -> torch.Tensor:
    y = kernel(FAMILY, "ternary_conv_project", backend)(x, packed, scale, kh, kw, sh, sw, ph, pw, dh, dw, groups)
    return _epilogue(y, w, b, w_scale, b_scale, groups, conv=True, backend=backend)


@_conv_approx.register_fake
def _(x, packed, scale, w, b, w_scale, b_scale, kh, kw, sh, sw, ph, pw, dh, dw, groups, backend):
    bsz, _, h, wd = x.shape
    return x.new_empty((bsz, w.shape[0], _conv.out_size(h, kh, sh, ph, dh), _conv.out_size(wd, kw, sw, pw, dw)))


def _conv_approx_setup(ctx, inputs, output):
    x, packed, scale, w, b, w_scale, b_scale, *conv, backend = inputs
    ctx.save_for_backward(x, w)
    ctx.packed, ctx.scale, ctx.backend, ctx.conv, ctx.has_b = packed, scale, backend, tuple(conv), b is not None


def _conv_approx_backward(ctx, grad):
    x, w = ctx.saved_tensors
    if w.dtype == torch.int8:
        raise RuntimeError("ternary_conv_approx: INT4 mode (int8 w) is inference only: no gradients")
    groups = ctx.conv[-1]
    n, k = w.shape
    bsz, _, ho, wo = grad.shape
    gz = grad.reshape(bsz, groups, n // groups, ho * wo)
    wv = w.reshape(groups, n // groups, k)
    grad_x = grad_w = grad_b = None
    if ctx.needs_input_grad[0]:
        gy = torch.einsum("gmk,bgml->bgkl", wv, gz).reshape(bsz, groups * k, ho, wo)
        grad_x = _conv_project_t(gy, ctx.packed, ctx.scale, x.shape, ctx.conv, ctx.backend)
    if ctx.needs_input_grad[3]:
        y = _conv_project(x, ctx.packed, ctx.scale, *ctx.conv, ctx.backend)  # recomputed, never stored
        grad_w = torch.einsum("bgml,bgkl->gmk", gz, y.reshape(bsz, groups, k, ho * wo)).reshape(n, k)
    if ctx.has_b and ctx.needs_input_grad[4]:
        grad_b = grad.sum((0, 2, 3))
    return (grad_x, None, None, grad_w, grad_b) + (None,) * 12


_conv_approx.register_autograd(_conv_approx_backward, setup_context=_conv_approx_setup)


# ---- the projection object ------------------------------------------------------------------------

class TernaryProjection(torch.nn.Module):
    """A fixed sparse ternary projection P in sqrt(3/k) {-1, 0, +1}^{k x d}, stored as packed bitmasks.

    Build it with `generate(k, d, seed)` (see the module docstring for the exact rule). The packed
    int32 [2, k, ceil(d/32)] tensor is a buffer: it follows `.to(device)` and is saved in the
    state_dict (a layer holding a TernaryProjection as a submodule saves and reloads it).
    """

    def __init__(self, packed: torch.Tensor, d: int, seed: Optional[int] = None) -> None:
        super().__init__()
        packed = _checks.tensor("packed", packed)
        d = _checks.integer("d", d, lo=1)
        if packed.dtype != torch.int32 or packed.dim() != 3 or packed.shape[0] != 2 or packed.shape[2] != _ref.words(d):
            raise ValueError(f"packed must be an int32 tensor [2, k, ceil(d/32)] = [2, k, {_ref.words(d)}], "
                             f"got {packed.dtype} {tuple(packed.shape)}")
        if packed.shape[1] < 1:
            raise ValueError(f"packed must have k >= 1 rows, got k = {packed.shape[1]}")
        self.register_buffer("packed", packed.contiguous())
        self.d = d
        self.seed = seed

    @classmethod
    def generate(cls, k: int, d: int, seed: int, device: Union[str, torch.device] = "cpu", *, offset: int = 0,
                 backend: Optional[str] = None) -> "TernaryProjection":
        """P [k, d] from elements offset + p*d + q of the Philox stream of `seed` (same bits on every backend)."""
        k = _checks.integer("k", k, lo=1)
        d = _checks.integer("d", d, lo=1)
        from ..rng import make_state
        state = make_state(seed, offset, device)
        packed = _generate(state, k, d, _backend.resolve(state.device, backend))
        return cls(packed, d, seed=seed)

    @classmethod
    def from_packed(cls, packed: torch.Tensor, d: int) -> "TernaryProjection":
        return cls(packed, d)

    @property
    def k(self) -> int:
        return self.packed.shape[1]

    @property
    def scale(self) -> float:
        return math.sqrt(3.0 / self.k)

    @property
    def nbytes(self) -> int:
        return self.packed.numel() * self.packed.element_size()

    @property
    def device(self) -> torch.device:
        return self.packed.device

    def signs(self) -> torch.Tensor:
        """int8 [k, d] in {-1, 0, 1} (tests only)."""
        return _ref.unpack(self.packed, self.d)

    def dense(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The dense P = scale * signs, [k, d] (tests and the reference only: never used by kernels)."""
        return _ref.dense(self.packed, self.d, self.scale, dtype)

    def extra_repr(self) -> str:
        return f"k={self.k}, d={self.d}, seed={self.seed}, nbytes={self.nbytes}"


# ---- validation -------------------------------------------------------------------------------------

def _check_proj(proj: object) -> TernaryProjection:
    if not isinstance(proj, TernaryProjection):
        raise TypeError(f"proj must be a fastnoise.ops.TernaryProjection, got {type(proj).__name__}")
    return proj


def _check_x(x: object, proj: TernaryProjection, d_name: str = "the last dimension") -> torch.Tensor:
    x = _checks.floating("x", x)
    if x.device != proj.device:
        raise ValueError(f"x must be on the device of proj, {proj.device}, got {x.device}")
    return x


def _check_weights(x: torch.Tensor, k: int, w: object, b: object, w_scale: object, b_scale: object):
    """Float mode (w floating [n, k], b floating [n] or None) or INT4 mode (w int8 [n, k] ...)."""
    w = _checks.tensor("w", w)
    if w.dim() != 2 or w.shape[1] != k:
        raise ValueError(f"w must have shape [n, k] = [n, {k}], got {tuple(w.shape)}")
    if w.device != x.device:
        raise ValueError(f"w must be on the device of x, {x.device}, got {w.device}")
    n = w.shape[0]
    if b is not None:
        b = _checks.tensor("b", b)
        if tuple(b.shape) != (n,):
            raise ValueError(f"b must have shape [n] = [{n}], got {tuple(b.shape)}")
        if b.device != x.device:
            raise ValueError(f"b must be on the device of x, {x.device}, got {b.device}")
    if w.dtype == torch.int8:  # INT4 mode
        if w_scale is None:
            raise ValueError("w_scale must be given in INT4 mode (int8 w): a float tensor [n]")
        w_scale = _checks.floating("w_scale", w_scale)
        if tuple(w_scale.shape) != (n,) or w_scale.device != x.device:
            raise ValueError(f"w_scale must be a float tensor of shape [{n}] on {x.device}, "
                             f"got {tuple(w_scale.shape)} on {w_scale.device}")
        _checks.nonnegative_tensor("w_scale", w_scale)
        check_int4_values("w", w)
        if b is not None:
            if b.dtype != torch.int8:
                raise TypeError(f"b must be int8 (INT4 values) in INT4 mode, got {b.dtype}")
            check_int4_values("b", b)
            if b_scale is None:
                raise ValueError("b_scale must be given with an int8 b: a float (scalar) scale")
            if isinstance(b_scale, torch.Tensor):
                b_scale = _checks.floating("b_scale", b_scale)
                if b_scale.numel() != 1:
                    raise ValueError(f"b_scale must be a scalar (one element), got shape {tuple(b_scale.shape)}")
                _checks.nonnegative_tensor("b_scale", b_scale)
                b_scale = b_scale.reshape(()).to(x.device)
            else:
                b_scale = torch.tensor(_checks.number("b_scale", b_scale, lo=0), dtype=torch.float32, device=x.device)
        elif b_scale is not None:
            raise ValueError("b_scale must be None when b is None")
        if torch.is_grad_enabled() and x.requires_grad:
            raise RuntimeError("INT4 mode (int8 w) is inference only: x must not require grad "
                               "(use torch.no_grad(), or float w for training)")
        return w, b, w_scale, b_scale
    if w.dtype not in _checks.FLOAT_DTYPES:
        raise TypeError(f"w must be a floating tensor (float mode) or int8 INT4 values (INT4 mode), got {w.dtype}")
    _checks.same_dtype("w", w, "x", x)
    if b is not None:
        _checks.floating("b", b)
        _checks.same_dtype("b", b, "x", x)
    if w_scale is not None or b_scale is not None:
        raise ValueError("w_scale and b_scale must be None in float mode (they are for int8 INT4 weights)")
    return w, b, None, None


def _conv_args(x, proj, kernel_size, stride, padding, dilation, groups):
    if x.dim() != 4:
        raise ValueError(f"x must be a 4-D tensor [B, C, H, W], got shape {tuple(x.shape)}")
    kh, kw = _conv.pair("kernel_size", kernel_size, 1)
    sh, sw = _conv.pair("stride", stride, 1)
    ph, pw = _conv.pair("padding", padding, 0)
    dh, dw = _conv.pair("dilation", dilation, 1)
    groups = _checks.integer("groups", groups, lo=1)
    c = x.shape[1]
    if c % groups:
        raise ValueError(f"groups must divide the channels of x ({c}), got {groups}")
    if c // groups * kh * kw != proj.d:
        raise ValueError(f"proj.d must equal C/groups*kh*kw = {c // groups}*{kh}*{kw} = {c // groups * kh * kw} "
                         f"(x with C = {c}, groups = {groups}, kernel_size = {(kh, kw)}), got {proj.d}")
    ho = _conv.out_size(x.shape[2], kh, sh, ph, dh)
    wo = _conv.out_size(x.shape[3], kw, sw, pw, dw)
    if ho < 1 or wo < 1:
        raise ValueError(f"x spatial size {tuple(x.shape[2:])} is too small for kernel_size {(kh, kw)}, "
                         f"padding {(ph, pw)}, dilation {(dh, dw)}: output would be {ho}x{wo}")
    return (kh, kw, sh, sw, ph, pw, dh, dw, groups)


def _rows(x: torch.Tensor, proj: TernaryProjection) -> torch.Tensor:
    if x.dim() < 1 or x.shape[-1] != proj.d:
        raise ValueError(f"x must have last dimension d = proj.d = {proj.d}, got shape {tuple(x.shape)}")
    return x.reshape(-1, proj.d).contiguous()


# ---- public ops ----------------------------------------------------------------------------------

def ternary_project(x: torch.Tensor, proj: TernaryProjection, *, backend: Optional[str] = None) -> torch.Tensor:
    """y = sqrt(3/k) P x on the rows of x: [..., d] -> [..., k]; additions only, one scale per output.

    Differentiable in x (dx = sqrt(3/k) P^T dy).
    """
    proj = _check_proj(proj)
    x = _check_x(x, proj)
    rows = _rows(x, proj)
    y = _project(rows, proj.packed, proj.scale, _backend.resolve(x.device, backend))
    return y.reshape(*x.shape[:-1], proj.k)


def ternary_conv_project(x: torch.Tensor, proj: TernaryProjection, *, kernel_size: _IntPair, stride: _IntPair = 1,
                         padding: _IntPair = 0, dilation: _IntPair = 1, groups: int = 1,
                         backend: Optional[str] = None) -> torch.Tensor:
    """y[b, g*k + p, i, j] = sqrt(3/k) sum_q P[p, q] patch_g(b, i, j)[q]: [B, C, H, W] -> [B, groups*k, H', W'].

    patch_g is the im2col patch (F.unfold order) of group g, d = C/groups * kh * kw; H', W' as nn.Conv2d.
    """
    proj = _check_proj(proj)
    x = _check_x(x, proj)
    conv = _conv_args(x, proj, kernel_size, stride, padding, dilation, groups)
    return _conv_project(x.contiguous(), proj.packed, proj.scale, *conv, _backend.resolve(x.device, backend))


def ternary_linear_approx(x: torch.Tensor, proj: TernaryProjection, w: torch.Tensor, b: Optional[torch.Tensor],
                          *, w_scale: Optional[torch.Tensor] = None, b_scale=None,
                          backend: Optional[str] = None) -> torch.Tensor:
    """z~ = W~ (sqrt(3/k) P x) + b~ on the rows of x: [..., d] -> [..., n].

    Float mode: w floating [n, k], b floating [n] (or None), same dtype as x; differentiable in x, w, b.
    INT4 mode: w int8 [n, k] with values in [-8, 7] (one per byte), w_scale float [n] (per output row),
    b int8 [n] in [-8, 7] with the scalar b_scale (float or 1-element tensor), or b None:
    z~ = w_scale * (Wq y) + b_scale * bq. Inference only (an error if x requires grad).
    See `quantize_int4`.
    """
    proj = _check_proj(proj)
    x = _check_x(x, proj)
    rows = _rows(x, proj)
    w, b, w_scale, b_scale = _check_weights(x, proj.k, w, b, w_scale, b_scale)
    z = _linear_approx(rows, proj.packed, proj.scale, w, b, w_scale, b_scale, _backend.resolve(x.device, backend))
    return z.reshape(*x.shape[:-1], w.shape[0])


def ternary_conv_approx(x: torch.Tensor, proj: TernaryProjection, w: torch.Tensor, b: Optional[torch.Tensor], *,
                        kernel_size: _IntPair, stride: _IntPair = 1, padding: _IntPair = 0, dilation: _IntPair = 1,
                        groups: int = 1, w_scale: Optional[torch.Tensor] = None, b_scale=None,
                        backend: Optional[str] = None) -> torch.Tensor:
    """z~ = W~ (P patches) + b~ for a conv layer: [B, C, H, W] -> [B, n, H', W'].

    P acts on the im2col patches of each group (see `ternary_conv_project`: one P shared by the groups),
    then W~ [n, k] is a grouped 1x1 map (n divisible by groups) plus b~ [n]. Float and INT4 modes as in
    `ternary_linear_approx`.
    """
    proj, x, conv, w, b, w_scale, b_scale = _check_conv_approx(x, proj, w, b, w_scale, b_scale, kernel_size,
                                                               stride, padding, dilation, groups)
    return _conv_approx(x.contiguous(), proj.packed, proj.scale, w, b, w_scale, b_scale, *conv,
                        _backend.resolve(x.device, backend))


def _check_conv_approx(x, proj, w, b, w_scale, b_scale, kernel_size, stride, padding, dilation, groups):
    """The argument checks of `ternary_conv_approx` and `_conv_approx_pooled`: (proj, x, conv, w, b, scales)."""
    proj = _check_proj(proj)
    x = _check_x(x, proj)
    conv = _conv_args(x, proj, kernel_size, stride, padding, dilation, groups)
    w, b, w_scale, b_scale = _check_weights(x, proj.k, w, b, w_scale, b_scale)
    if w.shape[0] % conv[-1]:
        raise ValueError(f"w must have a number of rows n divisible by groups = {conv[-1]}, got n = {w.shape[0]}")
    return proj, x, conv, w, b, w_scale, b_scale


def _conv_approx_pooled(x: torch.Tensor, proj: TernaryProjection, w: torch.Tensor, b: Optional[torch.Tensor], *,
                        kernel_size: _IntPair, stride: _IntPair = 1, padding: _IntPair = 0, dilation: _IntPair = 1,
                        groups: int = 1, w_scale: Optional[torch.Tensor] = None, b_scale=None, signed: bool = False,
                        backend: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference helper of NENNI's channel granularity (no autograd, not for tracing): ``(z~, score)`` with
    z~ = `ternary_conv_approx` (same arguments, same values) and its pooled channel score
    ``score [B, n] = mean over positions of |z~|`` (of z~ when `signed`), computed by the epilogue kernel
    ``ternary_conv_epilogue_pooled`` while each row of z~ is in cache: no |z~| temporary (design note 59).
    The CPU kernel sums in a fixed lane order of its own, so the score agrees with torch's
    ``z.abs().mean((2, 3))`` to rounding (not bit for bit); the other backends run that reference.
    """
    proj, x, conv, w, b, w_scale, b_scale = _check_conv_approx(x, proj, w, b, w_scale, b_scale, kernel_size,
                                                               stride, padding, dilation, groups)
    be = _backend.resolve(x.device, backend)
    y = kernel(FAMILY, "ternary_conv_project", be)(x.contiguous(), proj.packed, proj.scale, *conv)
    return kernel(FAMILY, "ternary_conv_epilogue_pooled", be)(y, *_conv_epilogue_weights(y, w, b, w_scale, b_scale),
                                                              conv[-1], bool(signed))
