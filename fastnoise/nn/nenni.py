"""NENNI layers: noise injection into non-essential neurons (seed 000, §3).

For a layer with exact output ``z = W x + b`` (a Linear, or a Conv2d at every output position) NENNI
keeps a cheap approximation

    z~ = W~ (P x) + b~,      P in sqrt(3/k) * {-1, 0, +1}^{k x d}   (Achlioptas, s = 3: 2/3 zeros)

where ``d`` is the layer's fan-in (``in_features``, or ``C_in * kh * kw`` for a conv patch), ``k`` the
projection size, ``W~ in R^{n x k}`` and ``b~ in R^n`` are trained by layer-wise MSE distillation (seed
Eq. 1) and then quantized once to INT4. A mask ``m`` keeps the essential neurons (top
``ceil((1 - r) F)`` of ``|z~|``, or N of every M) and the output is (seed Eq. 2)

    z' = z * m + z~ * (1 - m).

Only the kept neurons need the exact product: the layer computes them with the sampled ops
(`fastnoise.ops.sampled_linear` / `sampled_conv2d` / `channel_conv2d`) or with the dense op, by the
measured rule `fastnoise.ops.sampled_is_faster(keep_fraction, kind, device)`.

**Where the noise comes from.** NENNI draws no random numbers per call. The "noise" is the
approximation error ``z~ - z`` written into the non-essential neurons: the sum of many small
projection errors, which the seed calls pseudo-Gaussian noise (§1, §3.2). The seed fixes P once:
"The random projection matrix P is not trainable and stays constant after initialization" (§3.1).
We do exactly that: P is generated from the layer's ``seed`` (a deterministic function of the seed,
regenerated on any device, never stored), and neither P nor W~ is re-randomized per call. A NENNI
model is therefore a deterministic function of its input; its randomness is across models built
with different seeds, not across calls. Evaluate it as a deterministic defense (docs/nenni.md).

Modes (``layer.mode``): ``"dense"`` exact layer, no noise; ``"distill"`` returns the exact output and
stores the MSE ``||z - z~||^2 / B`` (seed Eq. 1) in ``layer.distill_loss`` with gradients only to
W~ and b~; ``"noisy"`` Eq. 2. In ``"noisy"`` the `NoiseModule` noise mode also applies: with
``noise_mode="off"`` (or ``"train"`` in eval) the layer is exact.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .. import _checks
from .. import _backend
from .. import ops as _ops
from ..ops import sampled as _sampled
from ..ops import ternary_projection as _ternary
from ._mode import NoiseModule
from ._nenni_config import (DEFAULT_K, GRANULARITIES, INJECTS, MODES, SCORES, NENNIState, check_config,  # noqa: F401
                            default_k, selection)

__all__ = ["NENNILinear", "NENNIConv2d", "NENNILayer", "default_k", "MODES", "GRANULARITIES",
           "SCORES", "INJECTS", "nenni_layers", "set_nenni_mode"]


def _check_bool(name: str, v: object) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"{name} must be a bool, got {type(v).__name__}")
    return v


def _int_pair(name: str, v: object, lo: int) -> tuple:
    vals = tuple(v) if isinstance(v, (tuple, list)) else (v,)
    if len(vals) not in (1, 2):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return tuple(_checks.integer(name, e, lo=lo) for e in vals)


def _check_dtype(x: torch.Tensor, weight: torch.Tensor) -> None:
    """x must have the layer's dtype (outside autocast, which casts the dense product itself)."""
    if x.dtype != weight.dtype and not (torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")):
        raise TypeError(f"x must have the dtype of the layer's weight, {weight.dtype}, got {x.dtype} "
                        f"(convert the layer with .to({x.dtype}) or the input)")


class NENNILayer(NENNIState, NoiseModule):
    """Shared machinery of `NENNILinear` and `NENNIConv2d` (see the module docstring); configuration and
    state-dict checks: fastnoise/nn/_nenni_config.py."""

    _kind = "?"
    _channel_dim = -1  # where the neurons of one decision live (rows of the mask)
    stochastic = False  # z~ - z is a deterministic function of x: no EOT needed (module docstring)

    # --- construction ------------------------------------------------------------------------

    def _init_nenni(self, weight: torch.nn.Parameter, bias: Optional[torch.nn.Parameter], n: int, d: int, *,
                    ratio, nm, k, granularity, score, inject, mode, seed) -> None:
        ratio, nm, k, seed = check_config(ratio, nm, k, d, granularity, score, inject, mode, seed)
        # the original Parameters, shared (not copied) with the converted layer
        self.weight = weight
        self.bias = bias
        self.n, self.d, self.k = int(n), int(d), k
        self.ratio, self.nm = ratio, nm
        self.granularity, self.score, self.inject, self.mode, self.seed = granularity, score, inject, mode, seed
        self.distill_loss: Optional[torch.Tensor] = None
        # False: z~ is detached in noisy mode (gradients through the exact neurons only); see
        # `fastnoise.nenni.essential_gradients`
        self.approx_gradient = True
        self.distill_scale: Optional[torch.Tensor] = None
        if nm is not None and n % nm[1] != 0:
            raise ValueError(f"nm: M must divide the number of output neurons ({n}), got nm={tuple(nm)}")
        w = weight.detach()
        # P: fixed after initialisation (seed §3.1), generated from `seed` on the shared Philox stream
        # (bit-identical on every backend); a submodule, so it follows .to() and is saved (2 bits/entry)
        self.proj = _ops.TernaryProjection.generate(k, d, seed, w.device)
        # Data-free initialisation: W~ = argmin ||W - W~ P||_F = W P^T (P P^T)^+, the best approximation
        # for isotropic inputs (relative error 1 - k/d in expectation, against d/k for the plain JL
        # estimate W P^T); distillation on real data (seed Eq. 1) refines it.
        with torch.no_grad():
            p_dense = self.proj.dense(torch.float64).cpu()
            w_init = torch.linalg.lstsq(p_dense.t(), w.reshape(n, d).to(torch.float64).cpu().t()).solution.t()
            w_init = w_init.to(dtype=w.dtype, device=w.device)
        self.approx_weight = torch.nn.Parameter(w_init.contiguous())
        b0 = bias.detach().clone() if bias is not None else torch.zeros(n, dtype=w.dtype, device=w.device)
        self.approx_bias = torch.nn.Parameter(b0)
        # INT4 state after `quantize_()` (None before)
        self.register_buffer("approx_wq", None)
        self.register_buffer("approx_w_scale", None)
        self.register_buffer("approx_bq", None)
        self.register_buffer("approx_b_scale", None)

    # --- configuration -----------------------------------------------------------------------

    def config(self) -> dict:
        """The settings that make two layers' state_dicts compatible (saved as extra state)."""
        return {"method": "nenni", "kind": self._kind, "n": self.n, "d": self.d, "k": self.k,
                "ratio": self.ratio, "nm": list(self.nm) if self.nm is not None else None,
                "granularity": self.granularity, "score": self.score, "inject": self.inject,
                "seed": self.seed}

    @property
    def quantized(self) -> bool:
        return self.approx_wq is not None

    def set_mode(self, mode: str) -> "NENNILayer":
        self.mode = _checks.choice("mode", mode, MODES)
        if mode != "distill":
            self.distill_loss = None
        return self

    def projection(self, device: Union[str, torch.device, None] = None):
        """P for this layer (a `fastnoise.ops.TernaryProjection`, regenerable from `seed`)."""
        return self.proj

    def kept_count(self, features: int) -> int:
        """How many of the `features` neurons of one decision row get the exact product."""
        return selection(self.ratio, self.nm, self.inject, features)[0]

    def keep_fraction(self, features: int) -> float:
        """Fraction of the `features` neurons of one decision row that get the exact product."""
        return self.kept_count(features) / max(features, 1)

    @torch.no_grad()
    def quantize_(self) -> "NENNILayer":
        """One-time INT4 quantization of W~ and b~ (seed §3.1); afterwards W~, b~ are frozen."""
        wq, ws, bq, bs = _ops.quantize_int4(self.approx_weight.detach(), self.approx_bias.detach())
        self.approx_wq, self.approx_w_scale, self.approx_bq, self.approx_b_scale = wq, ws, bq, bs
        self.approx_weight.requires_grad_(False)
        self.approx_bias.requires_grad_(False)
        return self

    # --- forward -----------------------------------------------------------------------------

    def _approx_params(self, x: torch.Tensor):
        """(W~, b~, w_scale, b_scale) for the approximation op: INT4 after `quantize_()`.

        The INT4 kernels are inference only; when the approximation must pass gradients to `x`
        (fine-tuning a quantized model) the same INT4 values are used dequantized, frozen, in float.
        """
        if not self.quantized:
            return self.approx_weight, self.approx_bias, None, None
        if torch.is_grad_enabled() and x.requires_grad:
            w = (self.approx_wq.to(x.dtype) * self.approx_w_scale.to(x.dtype)[:, None])
            b = self.approx_bq.to(x.dtype) * self.approx_b_scale.to(x.dtype)
            return w, b, None, None
        return self.approx_wq, self.approx_bq, self.approx_w_scale, self.approx_b_scale

    def _noisy(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 2, straight through: z~ -> the mask once -> the exact product (for the kept neurons only when
        the sampled op is faster) -> one blend. ``inject="essential"`` is the same path with the mask
        inverted (`fastnoise.nn._nenni_config.selection`)."""
        self._check_x(x)
        feats = self._features()
        kept, sel, invert = selection(self.ratio, self.nm, self.inject, feats)
        if kept == feats:  # r = 0 (or N = M): everything exact
            return self._exact(x)
        if self.granularity == "channel" and self._fused_channel(x):
            return self._noisy_channel_fused(x, kept, sel, invert)
        za = self._approx(x)
        if not self.approx_gradient:
            za = za.detach()  # values unchanged; gradients through the exact neurons only
        if self.granularity == "channel":
            return self._noisy_channel(x, za, kept, sel, invert)
        sampled = _ops.sampled_is_faster(kept / feats, self._kind, za.device)
        if not sampled and not invert:  # selection and blend fused in one pass
            return _ops.mask_blend(self._exact(x), za, score=self.score, dim=self._channel_dim, **sel)[0]
        keep = _ops.mask_select(za, score=self.score, dim=self._channel_dim, **sel)
        if invert:
            keep = keep.logical_not_()
        z = self._exact_where(x, keep) if sampled else self._exact(x)
        return torch.where(keep, z, za)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_x(x)  # every mode: the dense product's own error would not name the layer's shape
        if self.mode == "dense" or (self.mode == "noisy" and not self.noise_active):
            return self._exact(x)
        if self.mode == "distill":
            with torch.no_grad():
                z = self._exact(x)
            xd = x.detach()
            z_approx = self._approx(xd)
            # seed Eq. 1: ||z - z~||^2 / B, gradients to W~ and b~ only
            self.distill_loss = (z - z_approx).pow(2).sum() / max(z.shape[0], 1)
            # step-size scale for `fastnoise.nenni.distill`: rows per sample times the mean ||P x_row||^2 + 1
            # (~ ||x_row||^2 + 1 by JL norm preservation), the curvature bound of Eq. 1 in W~, b~
            rows = z.numel() // max(z.shape[0] * self.n, 1)
            self.distill_scale = rows * (self.d * xd.float().pow(2).mean() + 1.0)
            return z
        return self._noisy(x)

    def extra_repr(self) -> str:
        sel = f"ratio={self.ratio}" if self.nm is None else f"nm={tuple(self.nm)}"
        return (f"{self._extra_base()}, k={self.k}, {sel}, granularity={self.granularity!r}, score={self.score!r}, "
                f"inject={self.inject!r}, mode={self.mode!r}, noise_mode={self.noise_mode!r}, seed={self.seed}, "
                f"quantized={self.quantized}")


class NENNILinear(NENNILayer):
    """Drop-in `nn.Linear` with NENNI (see the module docstring).

    Shapes: x ``[..., in_features]`` -> ``[..., out_features]``; P ``[k, in_features]``, W~ ``[out, k]``.
    The mask is per sample across the output features (``granularity`` is always "position" here).
    """

    _kind = "linear"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, ratio: Optional[float] = None,
                 nm: Optional[Sequence[int]] = None, k: Optional[int] = None, granularity: str = "position",
                 score: str = "abs", inject: str = "non_essential", mode: str = "noisy", seed: int = 0,
                 device=None, dtype=None) -> None:
        _checks.integer("in_features", in_features, lo=1)
        _checks.integer("out_features", out_features, lo=1)
        _check_bool("bias", bias)
        lin = torch.nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype)
        super().__init__()
        self._setup(lin, ratio=ratio, nm=nm, k=k, granularity=granularity, score=score, inject=inject,
                    mode=mode, seed=seed)

    def _setup(self, lin: torch.nn.Linear, **cfg) -> None:
        if lin.in_features < 1 or lin.out_features < 1:
            raise ValueError(f"linear must have in_features and out_features >= 1, got {lin.in_features} -> "
                             f"{lin.out_features}")
        if cfg["granularity"] != "position":
            raise ValueError(f"granularity must be 'position' for NENNILinear (one decision per sample and "
                             f"feature), got {cfg['granularity']!r}")
        self.in_features, self.out_features = lin.in_features, lin.out_features
        self._init_nenni(lin.weight, lin.bias, lin.out_features, lin.in_features, **cfg)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, *, ratio: Optional[float] = None,
                    nm: Optional[Sequence[int]] = None, k: Optional[int] = None, granularity: str = "position",
                    score: str = "abs", inject: str = "non_essential", mode: str = "noisy",
                    seed: int = 0) -> "NENNILinear":
        """A NENNILinear sharing `linear`'s weight and bias Parameters (no copy)."""
        if not isinstance(linear, torch.nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
        self = cls.__new__(cls)
        NENNILayer.__init__(self)
        self._setup(linear, ratio=ratio, nm=nm, k=k, granularity=granularity, score=score, inject=inject,
                    mode=mode, seed=seed)
        return self

    def _extra_base(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def _exact(self, x):
        return F.linear(x, self.weight, self.bias)

    def _approx(self, x):
        w, b, ws, bs = self._approx_params(x)
        lead = x.shape[:-1]
        z = _ops.ternary_linear_approx(x.reshape(-1, self.in_features), self.proj, w, b, w_scale=ws, b_scale=bs)
        return z.reshape(*lead, self.out_features)

    def _features(self) -> int:
        return self.out_features

    def _check_x(self, x):
        _checks.floating("x", x)
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must be [..., {self.in_features}], got shape {tuple(x.shape)}")
        _check_dtype(x, self.weight)

    def _exact_where(self, x, mask):
        lead = x.shape[:-1]
        return _ops.sampled_linear(x.reshape(-1, self.in_features), self.weight, self.bias,
                                   mask.reshape(-1, self.out_features)).reshape(*lead, self.out_features)


class NENNIConv2d(NENNILayer):
    """Drop-in `nn.Conv2d` with NENNI (see the module docstring).

    Shapes: x ``[B, C_in, H, W]`` -> ``[B, C_out, H', W']``; P ``[k, C_in/groups * kh * kw]`` applied to
    every input patch; W~ ``[C_out, k]``. ``granularity="position"``: the mask is taken across the
    output channels at each output position (the seed). ``"channel"``: one decision per sample and
    output channel from ``z~`` pooled over positions (mean of |z~|, or of z~ for ``score="signed"``), so
    the exact conv runs densely over the kept channels only (`fastnoise.ops.channel_conv2d`).
    """

    _kind = "conv2d"
    _channel_dim = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 bias: bool = True, *, ratio: Optional[float] = None, nm: Optional[Sequence[int]] = None,
                 k: Optional[int] = None, granularity: str = "position", score: str = "abs",
                 inject: str = "non_essential", mode: str = "noisy", seed: int = 0, device=None,
                 dtype=None) -> None:
        _checks.integer("in_channels", in_channels, lo=1)
        _checks.integer("out_channels", out_channels, lo=1)
        for name, v, lo in (("kernel_size", kernel_size, 1), ("stride", stride, 1), ("padding", padding, 0),
                            ("dilation", dilation, 1)):
            _int_pair(name, v, lo)
        _check_bool("bias", bias)
        conv = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                               dilation=dilation, bias=bias, device=device, dtype=dtype)
        super().__init__()
        self._setup(conv, ratio=ratio, nm=nm, k=k, granularity=granularity, score=score, inject=inject,
                    mode=mode, seed=seed)

    @staticmethod
    def unsupported_reason(conv: torch.nn.Module) -> Optional[str]:
        """Why `conv` cannot become a NENNIConv2d (None when it can)."""
        if type(conv) is not torch.nn.Conv2d:
            return f"is a {type(conv).__name__}, not a torch.nn.Conv2d"
        if conv.groups != 1:
            return f"has groups={conv.groups} (only groups=1 convolutions are supported)"
        if conv.padding_mode != "zeros":
            return f"has padding_mode={conv.padding_mode!r} (only 'zeros' is supported)"
        if isinstance(conv.padding, str):
            return f"has padding={conv.padding!r} (give explicit integer padding)"
        if conv.in_channels < 1 or conv.out_channels < 1 or min(conv.kernel_size) < 1 or min(conv.stride) < 1 \
                or min(conv.dilation) < 1 or min(conv.padding) < 0:
            return (f"has empty or invalid sizes (channels {conv.in_channels} -> {conv.out_channels}, kernel_size "
                    f"{conv.kernel_size}, stride {conv.stride}, padding {conv.padding}, dilation {conv.dilation})")
        return None

    def _setup(self, conv: torch.nn.Conv2d, **cfg) -> None:
        why = self.unsupported_reason(conv)
        if why is not None:
            raise ValueError(f"conv {why}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride = tuple(conv.kernel_size), tuple(conv.stride)
        self.padding, self.dilation, self.groups = tuple(conv.padding), tuple(conv.dilation), conv.groups
        d = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        self._init_nenni(conv.weight, conv.bias, conv.out_channels, d, **cfg)

    @classmethod
    def from_conv(cls, conv: torch.nn.Conv2d, *, ratio: Optional[float] = None,
                  nm: Optional[Sequence[int]] = None, k: Optional[int] = None, granularity: str = "position",
                  score: str = "abs", inject: str = "non_essential", mode: str = "noisy",
                  seed: int = 0) -> "NENNIConv2d":
        """A NENNIConv2d sharing `conv`'s weight and bias Parameters (no copy)."""
        if not isinstance(conv, torch.nn.Conv2d):
            raise TypeError(f"conv must be a torch.nn.Conv2d, got {type(conv).__name__}")
        self = cls.__new__(cls)
        NENNILayer.__init__(self)
        self._setup(conv, ratio=ratio, nm=nm, k=k, granularity=granularity, score=score, inject=inject,
                    mode=mode, seed=seed)
        return self

    def _extra_base(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}")

    def _conv_args(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def _exact(self, x):
        return F.conv2d(x, self.weight, self.bias, **self._conv_args())

    def _approx(self, x):
        w, b, ws, bs = self._approx_params(x)
        return _ops.ternary_conv_approx(x, self.proj, w, b, kernel_size=self.kernel_size, w_scale=ws, b_scale=bs,
                                        **self._conv_args())

    def _features(self) -> int:
        return self.out_channels

    def _check_x(self, x):
        _checks.floating("x", x)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be [B, {self.in_channels}, H, W], got shape {tuple(x.shape)}")
        _check_dtype(x, self.weight)
        kh, kw = self.kernel_size
        ho = (x.shape[2] + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        wo = (x.shape[3] + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"x spatial size {tuple(x.shape[2:])} is too small for kernel_size {self.kernel_size}, "
                             f"padding {self.padding}, dilation {self.dilation}: output would be {ho}x{wo}")

    def _exact_where(self, x, mask):
        return _ops.sampled_conv2d(x, self.weight, self.bias, mask, **self._conv_args())

    @staticmethod
    def _fused_channel(x) -> bool:
        """The fused CPU inference path of the channel granularity (design note 59): no autograd, no tracing,
        float32 / float64 on the native CPU kernels. Elsewhere `_noisy_channel` (same values)."""
        return (not torch.is_grad_enabled() and not torch.compiler.is_compiling()
                and x.dtype in (torch.float32, torch.float64) and _backend.resolve(x.device, None) == "cpu")

    def _noisy_channel_fused(self, x, kept, sel, invert):
        """`_noisy_channel` for CPU inference in two passes over z~: the approximation's epilogue also returns
        the pooled channel score (no |z~| temporary), and the exact conv of the kept channels is written
        straight into z~ (no full-size exact output, no zero fill, no scatter)."""
        w, b, ws, bs = self._approx_params(x)
        conv = self._conv_args()
        za, ps = _ternary._conv_approx_pooled(x, self.proj, w, b, kernel_size=self.kernel_size, w_scale=ws,
                                              b_scale=bs, signed=self.score == "signed", **conv)
        keep = _ops.mask_select(ps, score=self.score, dim=-1, **sel)
        if invert:
            keep = keep.logical_not_()
        if _ops.sampled_is_faster(kept / self.out_channels, "channel_conv2d", x.device):
            _sampled._channel_conv2d_into(x, self.weight, self.bias, keep, za, **conv)
        else:
            z = self._exact(x)
            idx = keep.nonzero(as_tuple=True)
            za[idx] = z[idx]
        return za

    def _noisy_channel(self, x, z_approx, kept, sel, invert):
        """Channel granularity: one decision per (sample, channel) from z~ pooled over positions."""
        c = self.out_channels
        za = z_approx.detach()
        ps = za.mean(dim=(2, 3)) if self.score == "signed" else za.abs().mean(dim=(2, 3))  # [B, C]
        keep = _ops.mask_select(ps, score=self.score, dim=-1, **sel)
        if invert:
            keep = keep.logical_not_()
        if _ops.sampled_is_faster(kept / c, "channel_conv2d", x.device):
            z = _ops.channel_conv2d(x, self.weight, self.bias, keep, **self._conv_args())
        else:
            z = self._exact(x)
        if not torch.is_grad_enabled() and not torch.compiler.is_compiling():
            # inference: z~ is this call's own fresh tensor, so write the kept planes into it (a copy of
            # the kept fraction) instead of a full select pass over z and z~
            idx = keep.nonzero(as_tuple=True)
            z_approx[idx] = z[idx]
            return z_approx
        return torch.where(keep[:, :, None, None], z, z_approx)


# --- helpers on models ---------------------------------------------------------------------------------

def nenni_layers(model: torch.nn.Module) -> list[tuple[str, NENNILayer]]:
    """(name, layer) of every NENNI layer in `model`."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, NENNILayer)]


def set_nenni_mode(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """Set ``mode`` ("dense" / "distill" / "noisy") of every NENNI layer in `model`; returns `model`."""
    _checks.choice("mode", mode, MODES)
    for _, m in nenni_layers(model):
        m.set_mode(mode)
    return model
