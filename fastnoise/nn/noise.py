"""Noise-injection layers on the fastnoise noise ops (in-kernel Philox; nothing of x's size stored for
the backward pass beyond what the math needs).

Each layer is a `NoiseModule` (explicit noise mode: "on" keeps the noise in eval(), as a deployed
randomized defense must be attacked; "off" makes it the identity / the mean model) and owns a
`fastnoise.rng.PhiloxStream`, whose offset advances on every call; ``seed=`` fixes the stream.

* `GaussianNoise(sigma)`          RSE additive noise ``x + sigma * delta`` (fixed sigma)
* `LearnableNoise(shape, init)`   PNI-style trainable sigma, ``x + sigma * delta``
* `RandomWeight(shape, ...)`      CTRW random weight ``x * (mu + sigma * delta)`` (seed 001), trainable
                                  mu and sigma, with `constrain_(A, B)` for ``sum(sigma) in [A, B]``
* `SAL(channels)`                 Stochastic Augmentation Layer ``x + delta * exp((x w + b) / 2)`` (seed 003)

`config()` (saved in the state_dict, checked on load; see `fastnoise.nn.NoiseModule`) holds what defines
each layer beyond its learned tensors: GaussianNoise its sigma; the trainable layers their parameter
shapes (their initial values are not part of the trained defense). The noise mode is runtime state, not
configuration (checkpoints save it separately).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch

from .. import _checks
from ..ops import noise_add, noise_mul, noise_sal
from ..rng import PhiloxStream
from ._mode import NoiseModule

__all__ = ["GaussianNoise", "LearnableNoise", "RandomWeight", "SAL"]

Shape = Union[int, Sequence[int]]


def _shape(name: str, shape: Shape) -> tuple:
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    elif isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    elif isinstance(shape, (tuple, list)):
        shape = tuple(shape)
    else:
        raise TypeError(f"{name} must be an int or a sequence of ints (a parameter shape), got "
                        f"{type(shape).__name__} {shape!r}")
    for s in shape:
        _checks.integer(name, s, lo=1)
    return shape


class _StreamMixin(NoiseModule):
    draws_per_element = True  # _state: x.numel() stream elements per call, element i at offset + i

    def __init__(self, seed: Optional[int]) -> None:
        super().__init__()
        self.stream = PhiloxStream(seed)

    def _state(self, x: torch.Tensor) -> torch.Tensor:
        st = self.stream.next(x.numel())
        return st if st.device == x.device else st.to(x.device)


class GaussianNoise(_StreamMixin):
    """RSE additive noise: ``y = x + sigma * delta``, delta ~ N(0, 1) fresh per element and call."""

    def __init__(self, sigma: float, seed: Optional[int] = None) -> None:
        super().__init__(seed)
        self.sigma = _checks.number("sigma", sigma, lo=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.noise_active or self.sigma == 0.0:
            return x
        return noise_add(x, self.sigma, state=self._state(x))

    def config(self) -> dict:
        return {"layer": "GaussianNoise", "sigma": self.sigma}

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, mode={self.noise_mode}"


class LearnableNoise(_StreamMixin):
    """PNI-style additive noise with a trainable scale: ``y = x + sigma * delta``, sigma of `shape`
    (broadcast to x, e.g. ``(C, 1, 1)`` per channel or ``()``/``(1,)`` per layer), initialised to `init`.
    sigma is clamped at 0 in the forward pass (a negative trained value means no noise)."""

    def __init__(self, shape: Shape = (1,), init: float = 0.25, seed: Optional[int] = None) -> None:
        super().__init__(seed)
        init = _checks.number("init", init, lo=0.0)
        self.sigma = torch.nn.Parameter(torch.full(_shape("shape", shape), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.noise_active:
            return x
        return noise_add(x, self.sigma.clamp(min=0).to(x.dtype), state=self._state(x))

    def config(self) -> dict:
        return {"layer": "LearnableNoise", "shape": list(self.sigma.shape)}

    def extra_repr(self) -> str:
        return f"shape={tuple(self.sigma.shape)}, mode={self.noise_mode}"


class RandomWeight(_StreamMixin):
    """CTRW (seed 001): the input is multiplied by a random weight ``W^r = mu + delta * sigma`` (Eq. 4),
    ``y = x * (mu + sigma * delta)``, mu and sigma trainable of `shape` (= x.shape[1:] or broadcastable
    to it, e.g. (C, H, W) of the first conv's input); each sample gets a fresh delta. With the noise
    off the layer is ``x * mu``. Call `constrain_(A, B)` after each optimizer step (Algorithm 1, line 10)."""

    def __init__(self, shape: Shape, mu_init: float = 1.0, sigma_init: float = 0.3,
                 seed: Optional[int] = None) -> None:
        super().__init__(seed)
        shape = _shape("shape", shape)
        mu_init = _checks.number("mu_init", mu_init)
        sigma_init = _checks.number("sigma_init", sigma_init, lo=0.0)
        self.mu = torch.nn.Parameter(torch.full(shape, mu_init))
        self.sigma = torch.nn.Parameter(torch.full(shape, sigma_init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = self.mu.to(x.dtype)
        if not self.noise_active:
            return x * mu
        return noise_mul(x, mu, self.sigma.clamp(min=0).to(x.dtype), state=self._state(x))

    def config(self) -> dict:
        return {"layer": "RandomWeight", "shape": list(self.mu.shape)}

    @torch.no_grad()
    def constrain_(self, lower: float, upper: float) -> "RandomWeight":
        """Project sigma onto ``{sigma >= 0, sum(sigma) in [lower, upper]}`` (seed 001 Eq. 5, §2).

        Euclidean projection: clamp at 0; if the sum is outside the interval, ``sigma <- max(sigma - tau, 0)``
        with the scalar tau that makes the sum equal the violated bound.
        """
        lower = _checks.number("lower", lower, lo=0.0)
        upper = _checks.number("upper", upper, lo=0.0)
        if lower > upper:
            raise ValueError(f"lower must be <= upper, got lower={lower}, upper={upper}")
        s = self.sigma.detach().double().flatten()
        p = s.clamp(min=0)
        total = p.sum().item()
        if lower <= total <= upper:
            self.sigma.copy_(p.view_as(self.sigma))
            return self
        target = lower if total < lower else upper
        self.sigma.copy_(_project_sum(s, target).view_as(self.sigma).to(self.sigma.dtype))
        return self

    def extra_repr(self) -> str:
        return f"shape={tuple(self.mu.shape)}, mode={self.noise_mode}"


def _project_sum(v: torch.Tensor, target: float) -> torch.Tensor:
    """max(v - tau, 0) with sum == target (> 0): the Euclidean projection onto the scaled simplex."""
    if target <= 0:
        return torch.zeros_like(v)
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0) - target
    k = torch.arange(1, v.numel() + 1, dtype=v.dtype, device=v.device)
    rho = int(torch.nonzero(u - css / k > 0).max().item())
    tau = css[rho] / (rho + 1)
    return (v - tau).clamp(min=0)


class SAL(_StreamMixin):
    """Stochastic Augmentation Layer (seed 003, Eqs. 2-3): ``y = x + delta * exp((x * w + b) / 2)``.

    Per-channel w, b of shape (C, 1, 1) by default; `feature_shape` (e.g. (3, 32, 32)) gives one weight and
    bias per input feature, as in the paper. Initialised to w = 0 and b = 2 log(init_std) (so the noise
    std starts at `init_std` everywhere). With the noise off the layer is the identity (the mean of Eq. 3).
    """

    def __init__(self, channels: int, seed: Optional[int] = None, *, init_std: float = 0.1,
                 feature_shape: Optional[Shape] = None) -> None:
        super().__init__(seed)
        _checks.integer("channels", channels, lo=1)
        init_std = _checks.number("init_std", init_std, lo=0.0, lo_open=True)
        shape = (channels, 1, 1) if feature_shape is None else _shape("feature_shape", feature_shape)
        if feature_shape is not None and shape[0] != channels:
            raise ValueError(f"feature_shape must start with channels={channels}, got {shape}")
        self.w = torch.nn.Parameter(torch.zeros(shape))
        self.b = torch.nn.Parameter(torch.full(shape, 2 * math.log(init_std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.noise_active:
            return x
        return noise_sal(x, self.w.to(x.dtype), self.b.to(x.dtype), state=self._state(x))

    def config(self) -> dict:
        return {"layer": "SAL", "channels": int(self.w.shape[0]), "shape": list(self.w.shape)}

    def extra_repr(self) -> str:
        return f"shape={tuple(self.w.shape)}, mode={self.noise_mode}"
