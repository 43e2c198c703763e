"""Layers trained by the likelihood-ratio method (NIT, seed 002): an exact layer plus per-neuron noise.

``v = theta x + b + sigma * eps`` with sigma one trainable value per output neuron (per output channel
for `LRConv2d`), eps ~ N(0, 1) drawn in the kernel (`fastnoise.ops.noise_add`) from the layer's
`PhiloxStream`. Forward-only training: while `recording` is on, a forward keeps only what the estimator
needs — the layer input (as bits when `binary_input`: spikes) and the noise state (two int64) — never
eps; `lr_gradients(loss_weights)` then regenerates eps inside `fastnoise.ops.lr_grad` and fills the
``.grad`` of weight, bias and sigma (seed Eq. 1 / 3 / 8). The same layers train by backprop (STBP-N:
noise_add is differentiable; noise off: the plain layer).

Shapes. A call takes x [B, ...] (one step) or [S, B, ...] (a sequence of S time steps) and
``replicas=C``: every sample is run C times with independent noise; ``steps=T`` repeats a one-step
input over T steps (direct-current encoding). The output is [T, B*C, ...] (or [B*C, ...] for a
one-step call), rows ordered ``(t, b, c)``: replica-minor, the row layout of `fastnoise.ops.lr_grad`.
The input is stored once for the C replicas (and once for the T steps of a direct input).
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
from typing import Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .. import _checks
from ..ops import noise_add
from ..rng import PhiloxStream
from ._mode import NoiseModule

_lr = importlib.import_module("fastnoise.ops.lr_grad")  # the module (fastnoise.ops.lr_grad is also the function)

__all__ = ["LRLayer", "LRLinear", "LRConv2d", "LRRecord", "lr_layers", "recording"]


@dataclasses.dataclass
class LRRecord:
    """What one recorded forward keeps for the estimator (no eps): `x` (float or `SpikeBits`) [S*B, ...],
    the noise `state` [seed, offset], and the row layout (rows = T*B*C, repeat = C, B samples)."""
    x: Union[torch.Tensor, _lr.SpikeBits]
    state: torch.Tensor
    samples: int
    replicas: int
    steps: int
    in_steps: int

    @property
    def rows(self) -> int:
        return self.steps * self.samples * self.replicas

    @property
    def nbytes(self) -> int:
        x = self.x.words if isinstance(self.x, _lr.SpikeBits) else self.x
        return x.numel() * x.element_size() + self.state.numel() * self.state.element_size()


class LRLayer(NoiseModule):
    """Base of the LR layers: per-neuron `sigma`, a `PhiloxStream`, the record of the last forward."""

    def __init__(self, out_features: int, sigma_init: float, bias: bool, binary_input: bool,
                 seed: Optional[int]) -> None:
        super().__init__()
        self.sigma_init = _checks.number("sigma_init", sigma_init, lo=0.0, lo_open=True)
        if not isinstance(binary_input, bool):
            raise TypeError(f"binary_input must be a bool, got {type(binary_input).__name__}")
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
        self.binary_input = binary_input
        self.sigma = torch.nn.Parameter(torch.full((out_features,), self.sigma_init))
        self.stream = PhiloxStream(seed)
        self.recording = False
        self.record: Optional[LRRecord] = None

    # -- shared forward pieces --
    def _layout(self, x: torch.Tensor, sample_dims: int, replicas: int, steps: Optional[int]):
        """(S, B, one_step) of an input with `sample_dims` dims per sample."""
        replicas = _checks.integer("replicas", replicas, lo=1)
        if x.dim() == sample_dims + 1:
            S, B, one = 1, int(x.shape[0]), True
        elif x.dim() == sample_dims + 2:
            S, B, one = int(x.shape[0]), int(x.shape[1]), False
        else:
            raise ValueError(f"x must be [B, {sample_dims} sample dims] or [steps, B, ...], got shape {tuple(x.shape)}")
        T = S if steps is None else _checks.integer("steps", steps, lo=1)
        if S not in (1, T):
            raise ValueError(f"x has {S} time steps: steps must be {S} (or x must have 1 step to repeat), got {T}")
        return S, B, T, replicas, one and T == 1

    def _noisy(self, pre: torch.Tensor, S: int, B: int, T: int, C: int, x_rows: torch.Tensor,
               lif: Optional[torch.nn.Module] = None) -> torch.Tensor:
        """pre [S*B, N, ...] -> [T*B*C, N, ...] plus sigma * eps (then `lif`, if given: spikes); records (x, state)
        when `recording`. With `lif` and no gradient needed, noise and LIF run fused (`fastnoise.ops.lif_noise`)."""
        feat = tuple(pre.shape[1:])
        if not self.noise_active:
            self.record = None
            v = pre.view(S, B, 1, *feat).expand(T, B, C, *feat).reshape(T * B * C, *feat)
            return v if lif is None else lif(v.view(T, B * C, *feat)).view(T * B * C, *feat)
        F_ = math.prod(feat)
        st = self.stream.next(T * B * C * F_)
        if st.device != pre.device:
            st = st.to(pre.device)
        fused = lif is not None and not (torch.is_grad_enabled() and (pre.requires_grad or self.sigma.requires_grad))
        if fused:
            out = _lr.lif_noise(pre.reshape(S, B, F_), self.sigma.to(pre.dtype), st, steps=T, replicas=C,
                                inner=max(1, math.prod(feat[1:])), decay=lif.decay,
                                threshold=lif.threshold).view(T * B * C, *feat)
        else:
            v = pre.view(S, B, 1, *feat).expand(T, B, C, *feat).reshape(T * B * C, *feat)
            out = noise_add(v, self.sigma.to(pre.dtype).view(-1, *([1] * (len(feat) - 1))), state=st)
            if lif is not None:
                out = lif(out.view(T, B * C, *feat)).view(T * B * C, *feat)
        if self.recording:
            x2 = x_rows.detach().reshape(S * B, -1)
            kept = _lr.pack_spikes(x2) if self.binary_input else x2.contiguous()
            self.record = LRRecord(kept, st, B, C, T, S)
        return out

    def _check_record(self, loss_weights: torch.Tensor, state: Optional[torch.Tensor]) -> tuple[LRRecord, torch.Tensor]:
        rec = self.record
        if rec is None:
            raise RuntimeError("no recorded forward: run the forward with noise on inside `recording(model)` first")
        w = _checks.floating("loss_weights", loss_weights)
        BC = rec.samples * rec.replicas
        if tuple(w.shape) not in ((BC,), (rec.samples, rec.replicas)):
            raise ValueError(f"loss_weights must have shape [B*C] = [{BC}] or [B, C] = [{rec.samples}, {rec.replicas}] "
                             f"(one per sample and replica of the recorded forward), got {tuple(w.shape)}")
        if state is not None:
            _checks.tensor("state", state)
            if state.shape != rec.state.shape or not torch.equal(state.to(rec.state.device), rec.state):
                raise ValueError(f"state {state.tolist() if state.numel() <= 2 else tuple(state.shape)} does not match "
                                 f"the noise state of the recorded forward {rec.state.tolist()}")
        return rec, w.reshape(-1)

    def _fill(self, g: _lr.LRGrads, release: bool) -> None:
        for p, v in ((self.weight, g.weight), (getattr(self, "bias", None), g.bias), (self.sigma, g.sigma)):
            if p is None or not p.requires_grad:
                continue
            v = v.to(p.dtype).view_as(p)
            p.grad = v if p.grad is None else p.grad + v
        if release:
            self.record = None

    def lr_gradients(self, loss_weights: torch.Tensor, *, sign: bool = False, state: Optional[torch.Tensor] = None,
                     release: bool = True, backend: Optional[str] = None) -> _lr.LRGrads:
        """Estimate the gradients of the recorded forward and add them to ``.grad`` (weight, bias, sigma).

        loss_weights: [B*C] or [B, C] per (sample, replica), already baseline-subtracted and scaled (see
        `fastnoise.ops.loss_weights`; the mean gradient over the batch uses scale 1 / (B*C)).
        sign: NIT-S (Eq. 3). state: optional check that the estimate uses the forward's noise state.
        release: drop the record afterwards (frees the stored input). Returns the estimates.
        """
        raise NotImplementedError  # pragma: no cover - defined by the subclasses


class LRLinear(LRLayer):
    """``y = x W^T + b + sigma * eps``, sigma [out_features] (per neuron, init `sigma_init`; the seed's
    Algorithm 1 sets 1). `binary_input=True` stores the (spike) input as bits. Noise mode as every
    `NoiseModule` ("on" by default: a deployed randomized model keeps its noise in eval())."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, sigma_init: float = 1.0,
                 binary_input: bool = False, seed: Optional[int] = None) -> None:
        _checks.integer("in_features", in_features, lo=1)
        _checks.integer("out_features", out_features, lo=1)
        super().__init__(out_features, sigma_init, bias, binary_input, seed)
        lin = torch.nn.Linear(in_features, out_features, bias=bias)
        self.in_features, self.out_features = in_features, out_features
        self.weight = torch.nn.Parameter(lin.weight.detach().clone())
        self.bias = torch.nn.Parameter(lin.bias.detach().clone()) if bias else None

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, **kw) -> "LRLinear":
        m = cls(linear.in_features, linear.out_features, linear.bias is not None, **kw)
        with torch.no_grad():
            m.weight.copy_(linear.weight)
            if linear.bias is not None:
                m.bias.copy_(linear.bias)
        return m.to(linear.weight.device)

    def config(self) -> dict:
        return {"type": "LRLinear", "in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "sigma_init": self.sigma_init, "sigma": "per-neuron",
                "binary_input": self.binary_input}

    def forward(self, x: torch.Tensor, replicas: int = 1, steps: Optional[int] = None,
                lif: Optional[torch.nn.Module] = None) -> torch.Tensor:
        """x [B, in] or [S, B, in] -> [B*C, out] (one step) or [T, B*C, out]; with `lif` (a `fastnoise.nn.LIF`):
        its spikes, ``lif(self(x))``, computed fused with the noise when no gradient is needed."""
        S, B, T, C, flat = self._layout(x, 1, replicas, steps)
        pre = F.linear(x.reshape(S * B, self.in_features), self.weight, self.bias)
        out = self._noisy(pre, S, B, T, C, x, lif)
        return out if flat else out.view(T, B * C, self.out_features)

    def lr_gradients(self, loss_weights: torch.Tensor, *, sign: bool = False, state: Optional[torch.Tensor] = None,
                     release: bool = True, backend: Optional[str] = None) -> _lr.LRGrads:
        rec, w = self._check_record(loss_weights, state)
        g = _lr.lr_grad(rec.x, w, self.sigma, rec.state, rows=rec.rows, repeat=rec.replicas, sign=sign,
                        backend=backend)
        self._fill(g, release)
        return g

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"binary_input={self.binary_input}, mode={self.noise_mode}")


def _pair(name: str, v) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return tuple(_checks.integer(name, int(a), lo=0) for a in t)


class LRConv2d(LRLayer):
    """``y = conv2d(x, W) + b + sigma[c] * eps``, sigma one value per output channel (groups 1).
    The estimator regenerates eps per chunk of samples and uses torch's conv weight gradient
    (`fastnoise.ops.lr_grad_conv2d`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 bias: bool = True, *, sigma_init: float = 1.0, binary_input: bool = False,
                 seed: Optional[int] = None) -> None:
        _checks.integer("in_channels", in_channels, lo=1)
        _checks.integer("out_channels", out_channels, lo=1)
        super().__init__(out_channels, sigma_init, bias, binary_input, seed)
        conv = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=bias)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = conv.kernel_size, _pair("stride", stride)
        self.padding, self.dilation = _pair("padding", padding), _pair("dilation", dilation)
        self.weight = torch.nn.Parameter(conv.weight.detach().clone())
        self.bias = torch.nn.Parameter(conv.bias.detach().clone()) if bias else None
        self._in_shape: Optional[tuple] = None

    @classmethod
    def from_conv(cls, conv: torch.nn.Conv2d, **kw) -> "LRConv2d":
        """An LRConv2d with `conv`'s geometry and weights (groups 1, zero padding); `kw`: sigma_init, seed..."""
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"conv must have groups=1, zero padding and numeric padding, got groups={conv.groups}, "
                             f"padding_mode={conv.padding_mode!r}, padding={conv.padding!r}")
        m = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                conv.bias is not None, **kw)
        with torch.no_grad():
            m.weight.copy_(conv.weight)
            if conv.bias is not None:
                m.bias.copy_(conv.bias)
        return m.to(conv.weight.device)

    def config(self) -> dict:
        return {"type": "LRConv2d", "in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
                "dilation": list(self.dilation), "bias": self.bias is not None, "sigma_init": self.sigma_init,
                "sigma": "per-channel", "binary_input": self.binary_input}

    def forward(self, x: torch.Tensor, replicas: int = 1, steps: Optional[int] = None,
                lif: Optional[torch.nn.Module] = None) -> torch.Tensor:
        """x [B, C, H, W] or [S, B, C, H, W] -> [B*C', N, Ho, Wo] (one step) or [T, B*C', N, Ho, Wo]; `lif` as
        in `LRLinear.forward`."""
        S, B, T, C, flat = self._layout(x, 3, replicas, steps)
        xs = x.reshape(S * B, *x.shape[-3:])
        self._in_shape = tuple(int(v) for v in x.shape[-3:])
        pre = F.conv2d(xs, self.weight, self.bias, self.stride, self.padding, self.dilation)
        out = self._noisy(pre, S, B, T, C, xs, lif)
        return out if flat else out.view(T, B * C, *out.shape[1:])

    def lr_gradients(self, loss_weights: torch.Tensor, *, sign: bool = False, state: Optional[torch.Tensor] = None,
                     release: bool = True, backend: Optional[str] = None) -> _lr.LRGrads:
        rec, w = self._check_record(loss_weights, state)
        x = rec.x if isinstance(rec.x, _lr.SpikeBits) else rec.x.view(-1, *self._in_shape)
        g = _lr.lr_grad_conv2d(x, w, self.sigma, rec.state, in_shape=self._in_shape, weight_shape=tuple(self.weight.shape),
                               stride=self.stride, padding=self.padding, dilation=self.dilation, rows=rec.rows,
                               repeat=rec.replicas, sign=sign, backend=backend)
        self._fill(g, release)
        return g

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, binary_input={self.binary_input}, mode={self.noise_mode}")


def lr_layers(model: torch.nn.Module) -> list[LRLayer]:
    return [m for m in model.modules() if isinstance(m, LRLayer)]


@contextlib.contextmanager
def recording(model: torch.nn.Module) -> Iterator[list[LRLayer]]:
    """Turn recording on in every LR layer of `model` (forwards keep x and the noise state) and off after."""
    layers = lr_layers(model)
    previous = [m.recording for m in layers]
    try:
        for m in layers:
            m.recording = True
        yield layers
    finally:
        for m, p in zip(layers, previous):
            m.recording = p
