"""Explicit noise modes for randomized layers (DESIGN §7).

torchattacks (and most evaluation code) calls ``model.eval()``; a defense whose noise is tied to
``self.training`` silently turns into a deterministic model under attack. Every randomized fastnoise
layer is a `NoiseModule` with an explicit mode:

* ``"on"``    (default) noise in train and eval: the model as deployed, and as it must be attacked;
* ``"train"`` noise only while ``self.training`` (the classical dropout-like behaviour);
* ``"off"``   never (the exact / clean model).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

NOISE_MODES = ("on", "train", "off")


class NoiseModule(torch.nn.Module):
    """Base class of every layer that injects randomness; see the module docstring for the modes."""

    noise_mode: str = "on"
    #: False for layers whose "noise" is a deterministic function of the input (NENNI's approximation
    #: error): the evaluation harness then treats the model as deterministic (no EOT, one draw)
    stochastic: bool = True
    #: True for layers whose call draws element i of x from stream element ``offset + i`` and advances the
    #: offset by ``x.numel()`` (fastnoise.rng.PhiloxStream): n calls on x then draw exactly what one call on
    #: ``cat([x] * n)`` draws, which lets EOT / ensembles batch their draws (fastnoise.nn.draws)
    draws_per_element: bool = False

    def set_noise_mode(self, mode: str) -> "NoiseModule":
        if mode not in NOISE_MODES:
            raise ValueError(f"noise mode must be one of {NOISE_MODES}, got {mode!r}")
        self.noise_mode = mode
        return self

    @property
    def noise_active(self) -> bool:
        """Whether this call injects noise under the current mode and train/eval state."""
        return self.noise_mode == "on" or (self.noise_mode == "train" and self.training)


def noise_modules(model: torch.nn.Module) -> list[NoiseModule]:
    return [m for m in model.modules() if isinstance(m, NoiseModule)]


def set_noise_mode(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """Set the noise mode of every `NoiseModule` inside `model`; returns `model`."""
    for m in noise_modules(model):
        m.set_noise_mode(mode)
    return model


@contextlib.contextmanager
def noise_mode(model: torch.nn.Module, mode: str) -> Iterator[torch.nn.Module]:
    """Temporarily set the noise mode of every `NoiseModule` inside `model`."""
    previous = [(m, m.noise_mode) for m in noise_modules(model)]
    try:
        set_noise_mode(model, mode)
        yield model
    finally:
        for m, p in previous:
            m.noise_mode = p


def is_randomized(model: torch.nn.Module) -> bool:
    """True when `model` holds a stochastic NoiseModule whose noise is active in eval mode."""
    return any(m.stochastic and m.noise_mode == "on" for m in noise_modules(model))
