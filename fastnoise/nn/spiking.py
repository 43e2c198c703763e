"""Spiking layers: the leaky integrate-and-fire neuron of seed 002 (Eq. 7) and the input encoders.

Eq. 7, ``u[t+1] = k u[t] (1 - x[t]) + W x_in[t+1] + sigma eps[t+1]``, ``x[t+1] = H(u[t+1] - V_th)``, is an
`LRLinear` / `LRConv2d` (the current ``W x_in + b + sigma eps``, with its noise and its LR estimator)
followed by `LIF` (leak, reset to zero after a spike, fire). `LIF` runs the T steps of a sequence
[T, ...] from ``u[0] = 0``; it agrees spike for spike with snnTorch's ``Leaky(beta=k, threshold=V_th,
reset_mechanism="zero")`` fed the same currents (snntorch/_neurons/leaky.py: the reset of step t is
``H(u[t-1] - V_th)``, detached; spike ``u - V_th > 0``).

The Heaviside has no useful gradient. For STBP training (surrogate-gradient BPTT) and for BPDA white-box
attacks, `LIF` uses a surrogate derivative of H in the backward pass, selectable:
  * ``"atan"`` (default; snnTorch's): ``dH/du ~ (alpha / 2) / (1 + (pi / 2 * alpha * x)^2)``, alpha 2;
  * ``"sigmoid"`` (SpikingJelly's): ``alpha * s (1 - s)``, ``s = sigmoid(alpha x)``, alpha 4;
  * ``"rectangular"`` (STBP, Wu et al. 2018): ``1 / alpha`` where ``|x| < alpha / 2``, alpha 1;
  with ``x = u - V_th``. The forward pass is the exact Heaviside in every case.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .. import _checks
from ..rng import KIND_UNIFORM, PhiloxStream
from ._mode import NoiseModule

__all__ = ["LIF", "SpikeEncoder", "SURROGATES", "spike"]

SURROGATES = {"atan": 2.0, "sigmoid": 4.0, "rectangular": 1.0}  # name -> default alpha
ENCODINGS = ("direct", "rate")


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kind: str, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.kind, ctx.alpha = kind, alpha
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        if ctx.kind == "atan":
            d = (a / 2) / (1 + (math.pi / 2 * a * x) ** 2)
        elif ctx.kind == "sigmoid":
            s = torch.sigmoid(a * x)
            d = a * s * (1 - s)
        else:
            d = (x.abs() < a / 2).to(x.dtype) / a
        return g * d, None, None


def spike(x: torch.Tensor, surrogate: str = "atan", alpha: Optional[float] = None) -> torch.Tensor:
    """``H(x) = (x > 0)`` with the surrogate derivative `surrogate` (module docstring) in the backward pass."""
    _checks.choice("surrogate", surrogate, tuple(SURROGATES))
    a = SURROGATES[surrogate] if alpha is None else _checks.number("alpha", alpha, lo=0.0, lo_open=True)
    return _Spike.apply(x, surrogate, float(a))


class LIF(torch.nn.Module):
    """Leaky integrate-and-fire neurons over a sequence: currents [T, ...] -> spikes [T, ...] (0 / 1).

    ``u[t] = decay * u[t-1] * (1 - x[t-1]) + I[t]``, ``x[t] = H(u[t] - threshold)``, ``u[0] = x[0] = 0``
    (seed Eq. 7 with k = decay, reset to zero). `surrogate` / `alpha`: the backward of H (module
    docstring). `detach_reset` (default, as snnTorch): no gradient through the reset factor.
    Deterministic: the noise of Eq. 7 is in the current (the LR layer before it).
    """

    def __init__(self, decay: float = 0.5, threshold: float = 1.0, surrogate: str = "atan",
                 alpha: Optional[float] = None, detach_reset: bool = True) -> None:
        super().__init__()
        self.decay = _checks.number("decay", decay, lo=0.0, hi=1.0)
        self.threshold = _checks.number("threshold", threshold, lo=0.0, lo_open=True)
        self.surrogate = _checks.choice("surrogate", surrogate, tuple(SURROGATES))
        self.alpha = float(SURROGATES[surrogate] if alpha is None else _checks.number("alpha", alpha, lo=0.0, lo_open=True))
        if not isinstance(detach_reset, bool):
            raise TypeError(f"detach_reset must be a bool, got {type(detach_reset).__name__}")
        self.detach_reset = detach_reset

    def config(self) -> dict:
        return {"type": "LIF", "decay": self.decay, "threshold": self.threshold, "surrogate": self.surrogate,
                "alpha": self.alpha, "detach_reset": self.detach_reset, "reset": "zero"}

    def forward(self, current: torch.Tensor, return_membrane: bool = False):
        """current [T, ...] -> spikes [T, ...] (and the membrane potentials [T, ...] if `return_membrane`)."""
        current = _checks.floating("current", current)
        if current.dim() < 1 or current.shape[0] < 1:
            raise ValueError(f"current must be [T, ...] with T >= 1 time steps, got shape {tuple(current.shape)}")
        if not torch.is_grad_enabled() or not current.requires_grad:
            return self._forward_nograd(current, return_membrane)
        u = torch.zeros_like(current[0])
        s = torch.zeros_like(current[0])
        spikes, mems = [], []
        for t in range(current.shape[0]):
            keep = 1 - (s.detach() if self.detach_reset else s)
            u = self.decay * u * keep + current[t]
            s = spike(u - self.threshold, self.surrogate, self.alpha)
            spikes.append(s)
            mems.append(u)
        out = torch.stack(spikes)
        return (out, torch.stack(mems)) if return_membrane else out

    @torch.no_grad()
    def _forward_nograd(self, current: torch.Tensor, return_membrane: bool):
        out = torch.empty_like(current)
        mems = torch.empty_like(current) if return_membrane else None
        u = torch.zeros_like(current[0])
        s = torch.zeros_like(current[0])
        for t in range(current.shape[0]):
            u.mul_(s.mul_(-self.decay).add_(self.decay)).add_(current[t])  # u = decay (1 - s) u + I[t]
            s = (u > self.threshold).to(current.dtype)
            out[t] = s
            if mems is not None:
                mems[t] = u
        return (out, mems) if return_membrane else out

    def extra_repr(self) -> str:
        return f"decay={self.decay}, threshold={self.threshold}, surrogate={self.surrogate}, alpha={self.alpha}"


class SpikeEncoder(NoiseModule):
    """Input encoding for a spiking network: x [B, ...] in [0, 1] -> [S, B, ...].

    * ``"direct"``: the input is the current of every step (S = 1; the first layer repeats it over T);
    * ``"rate"``: Poisson / Bernoulli rate coding, ``x_in[t] = (u_t < x)`` with u_t uniform from the
      encoder's Philox stream, T steps (S = T). One encoding per sample, shared by its replicas (the
      seed's ``x^(0)(n, c) = x^(0)(n)``). With the noise off the encoder returns the rate x itself (the
      expectation of the spikes) as a direct current. Backward: straight-through (``d x_in[t] / d x = 1``,
      the derivative of the expectation), so gradient attacks see the coding (BPDA).
    """

    def __init__(self, mode: str = "direct", steps: int = 8, seed: Optional[int] = None) -> None:
        super().__init__()
        self.mode = _checks.choice("mode", mode, ENCODINGS)
        self.steps = _checks.integer("steps", steps, lo=1)
        self.stream = PhiloxStream(seed)

    @property
    def binary(self) -> bool:
        """Whether the output is spikes (0 / 1): rate coding with the noise on."""
        return self.mode == "rate"

    @property
    def stochastic(self) -> bool:
        """Only rate coding draws randomness (`NoiseModule.stochastic`): a direct encoder is deterministic,
        so a noise-off network behind it is evaluated as a deterministic model."""
        return self.mode == "rate"

    def config(self) -> dict:
        return {"type": "SpikeEncoder", "mode": self.mode, "steps": self.steps}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _checks.floating("x", x)
        if self.mode == "direct" or not self.noise_active:
            return x.unsqueeze(0)
        from ..ops._dispatch import kernel
        from .. import _backend
        shape = (self.steps,) + tuple(x.shape)
        n = self.steps * x.numel()
        st = self.stream.next(n)
        if st.device != x.device:
            st = st.to(x.device)
        u = kernel("rng", "philox", _backend.resolve(x.device))(st, n, KIND_UNIFORM).view(shape)
        spikes = (u < x.detach().clamp(0, 1).unsqueeze(0)).to(x.dtype)
        # straight-through gradient d spikes / d x = 1 (E[spike] = x): the BPDA of the Bernoulli coding
        return spikes + (x - x.detach()).unsqueeze(0) if x.requires_grad else spikes

    def extra_repr(self) -> str:
        return f"mode={self.mode}, steps={self.steps}, noise={self.noise_mode}"
