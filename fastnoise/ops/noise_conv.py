"""`noise_conv2d` / `noise_linear`: a convolution (or linear layer) with reparameterized Gaussian noise at
three sites, the input, the weight and the output, drawn inside the op from the Philox stream and
regenerated in the backward pass (never stored).

Math. ``s`` is a site's amplitude scale: ``scale`` times ``std(t)`` when ``scale_by_std`` (t the site's
tensor: x, W or y0; the unbiased std over the whole tensor, detached as in PNI; 0 for fewer than 2
elements), else ``scale``::

    input   x' = x * (mu + s_in * sigma * delta)        InputNoise(sigma, mu=...)   multiplicative (CTRW)
            x' = x + s_in * sigma * delta               InputNoise(sigma)           additive (RSE, PNI-A in)
    weight  W' = W + keep * s_w * alpha * eta           WeightNoise(alpha)          (PNI-W, CNI)
            W'[n] = s_w * alpha * eta[n] for n in replace, W[n] otherwise       WeightNoise(..., replace=)  (RPF)
    conv    y0 = conv2d(x', W', bias, stride, padding, dilation, groups)
    output  y  = y0 + s_out * sigma * eps               OutputNoise(sigma)          (PNI-A out)

delta, eta, eps ~ N(0, 1). mu, sigma (input) broadcast to ``x.shape[1:]`` (scalar, per channel
``[C, 1, 1]``, per element ``[C, H, W]``); alpha broadcasts to ``W.shape`` (per layer ``[1]``, per output
channel ``[N, 1, 1, 1]``, per element); output sigma broadcasts to ``y.shape[1:]``. ``shared=True``: one
draw for the whole batch (delta of shape ``[C, H, W]``, eps ``[N, H', W']``); else a fresh draw per sample.
The weight draw is always one per call, shared by the batch (the weight has no batch dimension).

Per-method conventions (the constructors below; sources in their docstrings and docs/noise_conv.md):
CTRW `InputNoise.ctrw` (mu, sigma per C*H*W element, one delta per batch); RSE `InputNoise.rse` (additive,
per sample and element); PNI `WeightNoise.pni` / `InputNoise.pni` / `OutputNoise.pni` (alpha * std(.) *
N(0, 1), std detached; weight draw shared by the batch, activation draws per sample); CNI (seed 004)
`WeightNoise.cni` (alpha per output channel, eta ~ N(0, var(W)), no noise where `keep` is False);
RPF `WeightNoise.rpf` (the `replace` filters are fresh N(0, (1/kernel_size)^2) filters per draw).

Stream layout (how each noise value maps to the Philox stream of ``state = [seed, offset]``; the same in
every backend, so the raw words are bit-identical across backends and the normals are
`fastnoise.rng.normal` of those elements). With ``r4(n) = ceil(n / 4) * 4`` and the counts
``n_in = C*H*W`` (shared) or ``B*C*H*W`` (per sample) or 0 (no input site), ``n_w = W.numel()`` or 0,
``n_out = N*H'*W'`` (shared) or ``B*N*H'*W'`` or 0:

* input noise of element ``(b, c, h, w)``: stream element ``offset + b*C*H*W + c*H*W + h*W + w``
  (shared: ``offset + c*H*W + h*W + w``): the logical NCHW index, whatever x's memory layout;
* weight noise of ``W[n, c, i, j]``: ``offset + r4(n_in) + ((n*C/groups + c)*kh + i)*kw + j``;
* output noise of ``(b, n, h, w)``: ``offset + r4(n_in) + r4(n_w) + b*N*H'*W' + n*H'*W' + h*W' + w``
  (shared: without the ``b`` term).

A call uses ``r4(n_in) + r4(n_w) + r4(n_out)`` stream elements (`stream_numel`); layers advance their
stream by that much per draw.

Gradients: w.r.t. x, W, bias and every noise parameter (mu, sigma, alpha); the std factors are detached.
The backward regenerates delta / eta / eps from the state; it saves x, W, the noise parameters, the state
and a 3-element tensor of the scales s used (nothing of the activation's or the weight's size beyond x
and W).

Backends (what each fuses; docs/noise_conv.md): reference (eager PyTorch, autograd on explicit noise),
cpu (C++: input noise in one prologue pass over x, weight noise on the weight, the conv through ATen /
oneDNN, output noise in one in-place epilogue pass over y), triton and cuda (an implicit-GEMM conv that
applies the input noise while the x tiles are loaded and the output noise in the epilogue; weight noise
in a prologue on the weight; backward: the noisy x' and W' regenerated, ATen's conv backward, then the
noise kernels for the parameter gradients).
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional, Sequence, Union

import torch

from .. import _backend, _checks
from . import _conv, _noise
from ._dispatch import kernel
# the kernel config and stream layout live with the reference (below this layer; csrc/noise_conv/config.h)
from ..reference.noise_conv import (IN_ADD, IN_MUL, IN_NONE, NEED_BIAS, NEED_IN_A, NEED_IN_B,  # noqa: F401
                                    NEED_OUT_SIGMA, NEED_W, NEED_W_ALPHA, NEED_X, OUT_ADD, OUT_NONE, W_ADD, W_NONE,
                                    W_REPLACE, Config, Layout, _out_shape, layout)

__all__ = ["InputNoise", "WeightNoise", "OutputNoise", "noise_conv2d", "noise_linear", "stream_numel",
           "NEED_X", "NEED_W", "NEED_BIAS", "NEED_IN_A", "NEED_IN_B", "NEED_W_ALPHA", "NEED_OUT_SIGMA"]

Param = Union[float, int, torch.Tensor]
_Pair = Union[int, Sequence[int]]

# ---- the three sites --------------------------------------------------------------------------------

def _flag(name: str, v: object) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"{name} must be a bool, got {type(v).__name__}")
    return v


@dataclasses.dataclass(frozen=True)
class InputNoise:
    """Noise on the conv's input: ``x * (mu + s * sigma * delta)`` if `mu` is given, else ``x + s * sigma * delta``.

    sigma >= 0 and mu: floats or tensors broadcastable to ``x.shape[1:]``. shared: one delta ``[C, H, W]``
    for the whole batch (else one per sample). s = scale (* std(x), detached, if scale_by_std).
    """
    sigma: Param
    mu: Optional[Param] = None
    shared: bool = False
    scale_by_std: bool = False
    scale: float = 1.0

    @staticmethod
    def ctrw(mu: Param, sigma: Param) -> "InputNoise":
        """CTRW (seed 001 Eq. 4): random weight ``W^r = mu + delta * sigma`` multiplied into the input,
        mu and sigma per element of C x H x W, one delta shared by the batch. Source:
        Xz-As/Constrained_Random_Adv model/first_rand_resnet_lower_bound.py,
        ``out = x * (self.rand_weight * self.SD_ + self.Mu_)`` with ``rand_weight`` of batch dimension 1."""
        return InputNoise(sigma=sigma, mu=mu, shared=True)

    @staticmethod
    def rse(sigma: Param) -> "InputNoise":
        """RSE: ``x + sigma * delta`` before the conv, a fresh delta per sample and element. Source:
        xuanqing94/RobustNet branch dev, models/layer.py ``Noise``: ``x + buffer.normal_(0, std)`` of x.size()."""
        return InputNoise(sigma=sigma)

    @staticmethod
    def pni(alpha: Param) -> "InputNoise":
        """PNI activation variant on the input: ``x + alpha * std(x) * delta``, std detached, per sample.
        Source: elliothe/CVPR_2019_PNI (only .pyc remain of the activation layers; REFERENCES.md)."""
        return InputNoise(sigma=alpha, scale_by_std=True)


@dataclasses.dataclass(frozen=True)
class WeightNoise:
    """Noise on the weight: ``W + keep * s * alpha * eta``, or (with `replace`) filters ``s * alpha * eta``.

    alpha >= 0: a float or a tensor broadcastable to ``W.shape`` (per layer, per output channel
    ``[N, 1, 1, 1]``, per element). s = scale (* std(W), detached, if scale_by_std). keep: optional bool
    tensor of W's shape, no noise where False (pruned weights). replace: optional bool ``[N]``, the
    output channels whose filter is replaced by the noise (RPF; groups = 1 only). One draw per call.
    """
    alpha: Param
    scale_by_std: bool = True
    scale: float = 1.0
    keep: Optional[torch.Tensor] = None
    replace: Optional[torch.Tensor] = None

    @staticmethod
    def pni(alpha: Param) -> "WeightNoise":
        """PNI-W: ``W + alpha * eta``, ``eta ~ N(0, std(W)^2)`` with ``std = weight.std().item()`` (whole
        tensor, detached), weight-shaped, one draw shared by the batch, fresh every forward; alpha per
        layer ``[1]``, channel ``[N, 1, 1, 1]`` or element, init 0.25. Source: elliothe/CVPR_2019_PNI
        code/models/noise_layer.py (``noise_Conv2d``, ``noise_Linear``)."""
        return WeightNoise(alpha=alpha, scale_by_std=True)

    @staticmethod
    def cni(alpha: Param, keep: Optional[torch.Tensor] = None) -> "WeightNoise":
        """CNI (RSR, seed 004 §3.2): ``W + alpha * eta``, ``eta ~ N(0, sigma^2)`` with sigma^2 the variance
        of W computed at run time (here over the whole tensor, as PNI, which the seed follows), alpha
        ``[N, 1, 1, 1]`` per output channel; after pruning (§3.4) no noise on the pruned weights: `keep`."""
        return WeightNoise(alpha=alpha, scale_by_std=True, keep=keep)

    @staticmethod
    def rpf(replace: torch.Tensor, kernel_size: int) -> "WeightNoise":
        """RPF: the filters of the output channels in `replace` are fresh ``N(0, (1/kernel_size)^2)``
        filters at every draw (no gradient reaches them). Source: UniSerj/Random-Projection-Filters
        model/resnet.py ``random_rp_matrix``: ``torch.normal(0, 1/kernel_size)``, kernel_size the last
        weight dimension, ``requires_grad = False``."""
        k = _checks.integer("kernel_size", kernel_size, lo=1)
        return WeightNoise(alpha=1.0, scale_by_std=False, scale=1.0 / k, replace=replace)


@dataclasses.dataclass(frozen=True)
class OutputNoise:
    """Noise on the conv's output: ``y0 + s * sigma * eps``; sigma >= 0 broadcastable to ``y.shape[1:]``;
    shared: one eps ``[N, H', W']`` for the batch; s = scale (* std(y0), detached, if scale_by_std)."""
    sigma: Param
    shared: bool = False
    scale_by_std: bool = False
    scale: float = 1.0

    @staticmethod
    def pni(alpha: Param) -> "OutputNoise":
        """PNI activation variant on the output: ``y + alpha * std(y) * eps``, std detached, per sample.
        Source: elliothe/CVPR_2019_PNI (only .pyc remain of the activation layers; REFERENCES.md)."""
        return OutputNoise(sigma=alpha, scale_by_std=True)


# ---- argument packing -------------------------------------------------------------------------------

def _finite(name: str, t: torch.Tensor) -> None:
    if _checks._tracing() or t.numel() == 0:
        return
    if not bool(torch.isfinite(t.detach()).all()):
        raise ValueError(f"{name} must be finite everywhere (no NaN or inf)")


def _site_param(name: str, p: Param, site_shape: tuple, like: torch.Tensor, what: str, *,
                nonnegative: bool) -> tuple[torch.Tensor, int]:
    """(flat parameter in the math type, inner) over a site tensor of shape `site_shape` (batch first for
    activations): element i of the site uses ``flat[(i // inner) % P]``."""
    md = _noise.math_dtype(like.dtype)
    if not isinstance(p, torch.Tensor):
        v = _checks.number(name, p, lo=0.0 if nonnegative else None)
        return torch.full((1,), v, dtype=md, device=like.device), 1
    _checks.like(name, p, "x", like, shape=False)
    target = tuple(site_shape[1:]) if what.endswith("[1:]") else tuple(site_shape)
    _checks.broadcastable_to(name, p, target, what)
    if nonnegative:
        _noise._nonnegative(name, p)
    else:
        _finite(name, p)
    return _noise.layout(p, tuple(site_shape), md)


def _scale(name: str, v: object) -> float:
    return _checks.number(name, v, lo=0.0)


class _Packed(NamedTuple):
    in_a: torch.Tensor
    in_b: torch.Tensor
    w_alpha: torch.Tensor
    w_mask: Optional[torch.Tensor]
    out_sigma: torch.Tensor
    cfg: list
    scales: list


def _pack(x: torch.Tensor, weight: torch.Tensor, groups: int, y_shape: tuple,
          input_noise: Optional[InputNoise], weight_noise: Optional[WeightNoise],
          output_noise: Optional[OutputNoise]) -> _Packed:
    md = _noise.math_dtype(x.dtype)
    empty = x.new_empty(0, dtype=md)
    c = Config()._asdict()
    scales = [1.0, 1.0, 1.0]
    in_a = in_b = w_alpha = out_sigma = empty
    w_mask = None
    if input_noise is not None:
        if not isinstance(input_noise, InputNoise):
            raise TypeError(f"input_noise must be a fastnoise.ops.InputNoise or None, got {type(input_noise).__name__}")
        sh = tuple(x.shape)
        in_b, c["in_inner_b"] = _site_param("input_noise.sigma", input_noise.sigma, sh, x, "x.shape[1:]",
                                            nonnegative=True)
        if input_noise.mu is not None:
            in_a, c["in_inner_a"] = _site_param("input_noise.mu", input_noise.mu, sh, x, "x.shape[1:]",
                                                nonnegative=False)
            c["in_mode"] = IN_MUL
        else:
            c["in_mode"] = IN_ADD
        c["in_shared"] = int(_flag("input_noise.shared", input_noise.shared))
        c["in_std"] = int(_flag("input_noise.scale_by_std", input_noise.scale_by_std))
        scales[0] = _scale("input_noise.scale", input_noise.scale)
    if weight_noise is not None:
        if not isinstance(weight_noise, WeightNoise):
            raise TypeError(f"weight_noise must be a fastnoise.ops.WeightNoise or None, got {type(weight_noise).__name__}")
        ws = tuple(weight.shape)
        w_alpha, c["w_inner"] = _site_param("weight_noise.alpha", weight_noise.alpha, ws, x, "weight.shape",
                                            nonnegative=True)
        c["w_std"] = int(_flag("weight_noise.scale_by_std", weight_noise.scale_by_std))
        scales[1] = _scale("weight_noise.scale", weight_noise.scale)
        if weight_noise.keep is not None and weight_noise.replace is not None:
            raise ValueError("weight_noise: give keep (CNI pruning mask) or replace (RPF filters), not both")
        if weight_noise.replace is not None:
            if groups != 1:
                raise ValueError(f"weight_noise.replace (RPF random filters) supports groups=1 only (the RPF code "
                                 f"replaces output channels of dense convs), got groups={groups}")
            w_mask = _mask("weight_noise.replace", weight_noise.replace, x, (ws[0],), "(N,) = one flag per output channel")
            c["w_mode"] = W_REPLACE
        else:
            if weight_noise.keep is not None:
                w_mask = _mask("weight_noise.keep", weight_noise.keep, x, ws, "weight.shape")
            c["w_mode"] = W_ADD
    if output_noise is not None:
        if not isinstance(output_noise, OutputNoise):
            raise TypeError(f"output_noise must be a fastnoise.ops.OutputNoise or None, got {type(output_noise).__name__}")
        out_sigma, c["out_inner"] = _site_param("output_noise.sigma", output_noise.sigma, tuple(y_shape), x,
                                                "y.shape[1:]", nonnegative=True)
        c["out_mode"] = OUT_ADD
        c["out_shared"] = int(_flag("output_noise.shared", output_noise.shared))
        c["out_std"] = int(_flag("output_noise.scale_by_std", output_noise.scale_by_std))
        scales[2] = _scale("output_noise.scale", output_noise.scale)
    return _Packed(in_a, in_b, w_alpha, w_mask, out_sigma, list(Config(**c)), scales)


def _mask(name: str, m: object, x: torch.Tensor, shape: tuple, what: str) -> torch.Tensor:
    m = _checks.tensor(name, m)
    if m.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor, got {m.dtype}")
    if tuple(m.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} ({what}), got {tuple(m.shape)}")
    _checks.same_device(name, m, "x", x)
    return m.contiguous()


def _state(x: torch.Tensor, numel: int, seed, offset, state) -> torch.Tensor:
    return _noise.resolve_state(x, seed, offset, state) if state is not None or seed is not None \
        else _noise.rng.next_state(numel, x.device)


def stream_numel(x_shape: Sequence[int], weight_shape: Sequence[int], *, stride: _Pair = 1, padding: _Pair = 0,
                 dilation: _Pair = 1, input_noise: Optional[InputNoise] = None,
                 weight_noise: Optional[WeightNoise] = None, output_noise: Optional[OutputNoise] = None) -> int:
    """Number of stream elements one `noise_conv2d` call with these shapes and sites uses (a layer
    advances its `fastnoise.rng.PhiloxStream` by this much per draw). A linear layer: ``x_shape = [R, K,
    1, 1]``, ``weight_shape = [N, K, 1, 1]``."""
    stride, padding, dilation = (_conv.pair("stride", stride, 1), _conv.pair("padding", padding, 0),
                                 _conv.pair("dilation", dilation, 1))
    y_shape = _out_shape(tuple(x_shape), tuple(weight_shape), stride, padding, dilation)
    cfg = Config(in_mode=IN_NONE if input_noise is None else IN_ADD,
                 in_shared=int(bool(input_noise is not None and input_noise.shared)),
                 w_mode=W_NONE if weight_noise is None else W_ADD,
                 out_mode=OUT_NONE if output_noise is None else OUT_ADD,
                 out_shared=int(bool(output_noise is not None and output_noise.shared)))
    return layout(cfg, tuple(x_shape), tuple(weight_shape), y_shape).total


# ---- custom ops -------------------------------------------------------------------------------------

@torch.library.custom_op("fastnoise::noise_conv2d", mutates_args=())
def _noise_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], in_a: torch.Tensor,
                  in_b: torch.Tensor, w_alpha: torch.Tensor, w_mask: Optional[torch.Tensor], out_sigma: torch.Tensor,
                  state: torch.Tensor, stride: list[int], padding: list[int], dilation: list[int], groups: int,
                  cfg: list[int], scales: list[float], backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    y, stats = kernel("noise_conv", "noise_conv2d", backend)(x, weight, bias, in_a, in_b, w_alpha, w_mask, out_sigma,
                                                             state, stride, padding, dilation, groups, cfg, scales)
    return y, stats


@_noise_conv2d.register_fake
def _(x, weight, bias, in_a, in_b, w_alpha, w_mask, out_sigma, state, stride, padding, dilation, groups, cfg,
      scales, backend):
    shape = _out_shape(x.shape, weight.shape, stride, padding, dilation)
    return x.new_empty(shape), x.new_empty(3, dtype=_noise.math_dtype(x.dtype))


@torch.library.custom_op("fastnoise::noise_conv2d_backward", mutates_args=())
def _noise_conv2d_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, in_a: torch.Tensor,
                           in_b: torch.Tensor, w_alpha: torch.Tensor, w_mask: Optional[torch.Tensor],
                           out_sigma: torch.Tensor, state: torch.Tensor, stats: torch.Tensor, stride: list[int],
                           padding: list[int], dilation: list[int], groups: int, cfg: list[int], need: int,
                           backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                  torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad_x, grad_weight, grad_bias, grad_in_a, grad_in_b, grad_w_alpha, grad_out_sigma); the
    parameter gradients are the [P] gradients of the flat parameters; empty where not in `need`."""
    out = kernel("noise_conv", "noise_conv2d_backward", backend)(grad, x, weight, in_a, in_b, w_alpha, w_mask,
                                                                 out_sigma, state, stats, stride, padding, dilation,
                                                                 groups, cfg, need)
    return tuple(out)


@_noise_conv2d_backward.register_fake
def _(grad, x, weight, in_a, in_b, w_alpha, w_mask, out_sigma, state, stats, stride, padding, dilation, groups,
      cfg, need, backend):
    md = _noise.math_dtype(x.dtype)

    def maybe(bit, like_shape, dtype):
        return x.new_empty(like_shape if need & bit else (0,), dtype=dtype)
    return (maybe(NEED_X, x.shape, x.dtype), maybe(NEED_W, weight.shape, weight.dtype),
            maybe(NEED_BIAS, (weight.shape[0],), x.dtype), maybe(NEED_IN_A, in_a.shape, md),
            maybe(NEED_IN_B, in_b.shape, md), maybe(NEED_W_ALPHA, w_alpha.shape, md),
            maybe(NEED_OUT_SIGMA, out_sigma.shape, md))


def _setup_context(ctx, inputs, output):
    (x, weight, bias, in_a, in_b, w_alpha, w_mask, out_sigma, state, stride, padding, dilation, groups, cfg,
     scales, backend) = inputs
    _, stats = output
    ctx.save_for_backward(x, weight, in_a, in_b, w_alpha, w_mask, out_sigma, state, stats)
    ctx.args = (stride, padding, dilation, groups, cfg, backend)
    ctx.has_bias = bias is not None


def _backward(ctx, grad, _grad_stats):
    x, weight, in_a, in_b, w_alpha, w_mask, out_sigma, state, stats = ctx.saved_tensors
    stride, padding, dilation, groups, cfg, backend = ctx.args
    n = ctx.needs_input_grad
    need = ((NEED_X if n[0] else 0) | (NEED_W if n[1] else 0) | (NEED_BIAS if n[2] and ctx.has_bias else 0)
            | (NEED_IN_A if n[3] else 0) | (NEED_IN_B if n[4] else 0) | (NEED_W_ALPHA if n[5] else 0)
            | (NEED_OUT_SIGMA if n[7] else 0))
    if need == 0:
        return (None,) * 16
    gx, gw, gb, ga, gbb, gal, gos = _noise_conv2d_backward(grad.contiguous(), x, weight, in_a, in_b, w_alpha, w_mask,
                                                         out_sigma, state, stats, stride, padding, dilation, groups,
                                                         cfg, need, backend)
    pick = lambda bit, g: g if need & bit else None
    return (pick(NEED_X, gx), pick(NEED_W, gw), pick(NEED_BIAS, gb), pick(NEED_IN_A, ga), pick(NEED_IN_B, gbb),
            pick(NEED_W_ALPHA, gal), None, pick(NEED_OUT_SIGMA, gos)) + (None,) * 8


_noise_conv2d.register_autograd(_backward, setup_context=_setup_context)


# ---- public functions -------------------------------------------------------------------------------

def noise_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, *, stride: _Pair = 1,
                 padding: _Pair = 0, dilation: _Pair = 1, groups: int = 1,
                 input_noise: Optional[InputNoise] = None, weight_noise: Optional[WeightNoise] = None,
                 output_noise: Optional[OutputNoise] = None, seed: Optional[int] = None,
                 offset: Optional[int] = None, state: Optional[torch.Tensor] = None,
                 backend: Optional[str] = None) -> torch.Tensor:
    """A 2-D convolution with reparameterized noise on its input, weight and / or output (module docstring).

    Args:
        x: ``[B, C, H, W]`` floating (float32 / float16 / bfloat16 / float64; noise math in float32, float64
            for float64); any memory layout (channels-last works).
        weight: ``[N, C/groups, kh, kw]``, x's dtype and device; bias ``[N]`` or None.
        stride, padding, dilation: int or pair; groups: int dividing C and N.
        input_noise / weight_noise / output_noise: `InputNoise`, `WeightNoise`, `OutputNoise` or None.
        seed / offset / state: the Philox stream (`state` = int64 ``[seed, offset]`` on x's device wins;
            else ``[seed, offset or 0]``; else the global stream advances by `stream_numel`).
        backend: "reference", "cpu", "triton", "cuda" or None (current / default).
    Returns:
        ``[B, N, H', W']`` contiguous, x's dtype. Differentiable w.r.t. x, weight, bias and every tensor
        noise parameter.

    >>> x, w = torch.randn(8, 3, 32, 32), torch.randn(64, 3, 3, 3)
    >>> mu, sigma = torch.ones(3, 32, 32), torch.full((3, 32, 32), 0.5)
    >>> y = noise_conv2d(x, w, padding=1, input_noise=InputNoise.ctrw(mu, sigma), seed=0)   # CTRW
    >>> y = noise_conv2d(x, w, padding=1, weight_noise=WeightNoise.pni(torch.full((64, 1, 1, 1), 0.25)), seed=0)
    """
    from .sampled import _conv_args
    x, weight, stride, padding, dilation, groups, y_shape = _conv_args(x, weight, bias, stride, padding, dilation,
                                                                       groups)
    p = _pack(x, weight, groups, y_shape, input_noise, weight_noise, output_noise)
    lay = layout(p.cfg, tuple(x.shape), tuple(weight.shape), y_shape)
    st = _state(x, lay.total, seed, offset, state)
    b = _backend.resolve(x.device, backend)
    y, _ = _noise_conv2d(x, weight, bias, p.in_a, p.in_b, p.w_alpha, p.w_mask, p.out_sigma, st, stride, padding,
                         dilation, groups, p.cfg, p.scales, b)
    return y


def _linear_param(p: Param, name: str, n: int, what: str, x: torch.Tensor) -> Param:
    """A linear layer's per-feature parameter (broadcastable to ``(n,)``) as the conv's ``[n, 1, 1]``."""
    if not isinstance(p, torch.Tensor):
        return p
    _checks.tensor(name, p)
    if p.dim() > 1 or (p.dim() == 1 and p.shape[0] not in (1, n)):
        raise ValueError(f"{name} must broadcast to {what} ({n},), got shape {tuple(p.shape)}")
    return p.reshape(-1, 1, 1)


def noise_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, *,
                 input_noise: Optional[InputNoise] = None, weight_noise: Optional[WeightNoise] = None,
                 output_noise: Optional[OutputNoise] = None, seed: Optional[int] = None,
                 offset: Optional[int] = None, state: Optional[torch.Tensor] = None,
                 backend: Optional[str] = None) -> torch.Tensor:
    """`noise_conv2d` for a linear layer ``y = x W^T + b`` (x ``[..., K]``, weight ``[N, K]``): the conv
    with ``H = W = kh = kw = 1`` on ``x.reshape(R, K, 1, 1)`` (R = prod of the leading dims), so the
    stream layout is the conv's with rows as samples. Input parameters broadcast to ``(K,)``, output
    parameters to ``(N,)``, alpha / keep to ``(N, K)`` (per layer, per output ``[N, 1]``, per element);
    replace is ``[N]``.

    >>> x, w = torch.randn(16, 512), torch.randn(10, 512)
    >>> y = noise_linear(x, w, weight_noise=WeightNoise.pni(torch.full((10, 1), 0.25)), seed=0)   # PNI-W
    """
    x = _checks.floating("x", x)
    if x.dim() < 1:
        raise ValueError("x must have at least 1 dimension [..., K], got a 0-d tensor")
    weight = _checks.like("weight", weight, "x", x, shape=False)
    if weight.dim() != 2 or weight.shape[1] != x.shape[-1]:
        raise ValueError(f"weight must have shape [N, K={x.shape[-1]}], got {tuple(weight.shape)}")
    n, k = weight.shape
    lead = tuple(x.shape[:-1])
    if input_noise is not None and isinstance(input_noise, InputNoise):
        input_noise = dataclasses.replace(
            input_noise, sigma=_linear_param(input_noise.sigma, "input_noise.sigma", k, "x.shape[-1:]", x),
            mu=None if input_noise.mu is None else _linear_param(input_noise.mu, "input_noise.mu", k, "x.shape[-1:]", x))
    if output_noise is not None and isinstance(output_noise, OutputNoise):
        output_noise = dataclasses.replace(
            output_noise, sigma=_linear_param(output_noise.sigma, "output_noise.sigma", n, "y.shape[-1:]", x))
    if weight_noise is not None and isinstance(weight_noise, WeightNoise):
        a = weight_noise.alpha
        if isinstance(a, torch.Tensor):
            if a.dim() > 2:
                raise ValueError(f"weight_noise.alpha must broadcast to weight.shape {(n, k)}, got shape {tuple(a.shape)}")
            a = a.reshape((1,) * (2 - a.dim()) + tuple(a.shape) + (1, 1))
        keep = weight_noise.keep
        if isinstance(keep, torch.Tensor) and tuple(keep.shape) == (n, k):
            keep = keep.reshape(n, k, 1, 1)
        elif isinstance(keep, torch.Tensor):
            raise ValueError(f"weight_noise.keep must have shape {(n, k)} (weight.shape), got {tuple(keep.shape)}")
        weight_noise = dataclasses.replace(weight_noise, alpha=a, keep=keep)
    y = noise_conv2d(x.reshape(-1, k, 1, 1), weight.reshape(n, k, 1, 1), bias, input_noise=input_noise,
                     weight_noise=weight_noise, output_noise=output_noise, seed=seed, offset=offset, state=state,
                     backend=backend)
    return y.reshape(lead + (n,))
