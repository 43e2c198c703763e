"""`fastnoise.convert(model, method, **cfg)`: swap the eligible layers of any model for a method's layers.

Methods register themselves with `register_method`; each converter takes the model and its options
and returns the converted model (in place where possible).
"""
from __future__ import annotations

from typing import Callable

import torch

_METHODS: dict[str, Callable[..., torch.nn.Module]] = {}
# modules that register methods when imported (kept lazy: importing fastnoise stays cheap)
_PROVIDERS = ("fastnoise.nn",)


def register_method(name: str) -> Callable:
    """Decorator: ``@register_method("nenni") def convert_nenni(model, **cfg) -> nn.Module``."""
    def deco(fn: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        if name in _METHODS and _METHODS[name] is not fn:
            raise ValueError(f"conversion method {name!r} is already registered")
        _METHODS[name] = fn
        return fn
    return deco


def methods() -> list[str]:
    import importlib
    for p in _PROVIDERS:
        importlib.import_module(p)
    return sorted(_METHODS)


def convert(model: torch.nn.Module, method: str, **cfg) -> torch.nn.Module:
    """Convert `model` with `method` (one of `methods()`), passing `cfg` to the method's converter."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    valid = methods()
    if method not in valid:
        raise ValueError(f"method must be one of {valid}, got {method!r}")
    return _METHODS[method](model, **cfg)
