"""`fastnoise.convert(model, method, **options)`: swap the eligible layers of any model for a method's layers.

The method is a `fastnoise.methods.Method` (its options, targets and replacement layers live in
fastnoise/methods/<name>.py); this function only looks it up. See `Method.convert` for the guarantees
every method gets: all or nothing, shared modules converted once, scripted modules refused, an error
naming what the method looks for when there is nothing to convert.
"""
from __future__ import annotations

from typing import Any, Callable, Union

import torch

__all__ = ["convert", "methods", "register_method"]


def methods() -> list[str]:
    """The registered method names (`fastnoise.methods.names()`)."""
    from . import methods as _methods
    return _methods.names()


def convert(model: torch.nn.Module, method: Union[str, Any], **options: Any) -> torch.nn.Module:
    """Convert `model` with `method` (a name of `fastnoise.methods.available()`, or a Method), in place where
    possible; returns the converted model. `options`: the method's conversion options (errors name the
    option and its valid values)."""
    from . import methods as _methods
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(method, str) and method == "none":
        raise ValueError(f"method must be one of {_methods.names()}, got 'none' (no conversion: use the model as is)")
    return _methods.get(method).convert(model, **options)


def register_method(name: str) -> Callable:
    """Decorator of the earlier API: ``@register_method("x") def convert_x(model, **cfg) -> nn.Module``
    registers a method whose conversion is that function (and nothing else of the protocol: no targets
    check, deterministic evaluation). New methods subclass `fastnoise.methods.Method` instead."""
    from . import methods as _methods

    def deco(fn: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        class _FunctionMethod(_methods.Method):
            def convert(self, model, **options):
                if not isinstance(model, torch.nn.Module):
                    raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
                return fn(model, **options)

        m = _FunctionMethod()
        m.name = name
        m.description = (fn.__doc__ or f"conversion function {fn.__name__}").strip().splitlines()[0]
        _methods.register(m)
        return fn
    return deco
