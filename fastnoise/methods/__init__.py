"""Defense methods: one module per method (``fastnoise/methods/<name>.py`` defining ``METHOD``), and the registry.

    fastnoise.methods.available()            # {"nenni": "...", "rse": "..."}: name -> one-line description
    m = fastnoise.methods.get("rse")         # the Method object (see fastnoise/methods/_protocol.py)
    model = m.convert(model, sigma=0.1)      # = fastnoise.convert(model, "rse", sigma=0.1)
    deployed = m.deploy(model)               # the inference rule: what gets attacked

Built-in methods are found by module name (every public module of this package), so adding a method
touches only its own file; a method defined elsewhere (a test, a user's package) joins with `register`.
``"none"`` is not a method but the trainer's "no conversion": `get("none")` returns the baseline
(the architecture as is, PGD-AT), which the leaderboard ranks beside the methods.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Optional

from ._hooks import HookList, Hooks
from ._protocol import (DRAWS, STARTS, Bits, ConvertData, CostModel, Evaluation, LayerCost, Method, Option,
                        TrainingRecipe, boolean, choice, integer, number, optional)

__all__ = ["Method", "Option", "TrainingRecipe", "Evaluation", "CostModel", "LayerCost", "Bits", "ConvertData",
           "Hooks", "HookList", "DRAWS", "STARTS", "register", "unregister", "get", "available", "names", "default",
           "baseline", "cost_models", "boolean", "choice", "integer", "number", "optional"]

#: the method `fastnoise demo` runs when none is named
DEFAULT = "nenni"

_REGISTRY: dict[str, Method] = {}
_BUILTINS_LOADED = False


class _Baseline(Method):
    name = "none"
    description = "no conversion: the architecture as is (the PGD-AT baseline)"
    looks_for = "nothing (the baseline converts no layer)"
    training = TrainingRecipe(recipe="pgd", description="Madry PGD-AT")
    evaluation = Evaluation(stochastic=False, seed_protocol="deterministic model: one protocol")

    def convert(self, model, **options):
        self.check_options(options)
        if not hasattr(model, "parameters"):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        return model


_BASELINE = _Baseline()


_LOADED: set = set()  # the built-in method modules registered so far (a failed load is retried from there)


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True  # set first: a method module may call names() while it is imported
    try:
        for info in pkgutil.iter_modules(__path__):
            if info.name.startswith("_") or info.name in _LOADED:
                continue
            mod = importlib.import_module(f"{__name__}.{info.name}")
            method = getattr(mod, "METHOD", None)
            if not isinstance(method, Method):
                raise TypeError(f"fastnoise/methods/{info.name}.py must define METHOD, a fastnoise.methods.Method")
            if method.name != info.name:
                raise ValueError(f"fastnoise/methods/{info.name}.py defines a method named {method.name!r}: a "
                                 f"method's module is named after it")
            register(method)
            _LOADED.add(info.name)
    except BaseException:
        # a module that fails to import fails every later lookup too, never a registry silently missing it
        _BUILTINS_LOADED = False
        raise


def register(method: Method, *, replace: bool = False) -> Method:
    """Add `method` to the registry (e.g. from a test or a user's package); returns it.

    Its name must be new (``replace=True`` swaps a registered method of that name)."""
    if not isinstance(method, Method):
        raise TypeError(f"method must be a fastnoise.methods.Method, got {type(method).__name__}")
    if not isinstance(method.name, str) or not method.name.isidentifier() or method.name == "none":
        raise ValueError(f"method name must be an identifier other than 'none', got {method.name!r}")
    if not method.description:
        raise ValueError(f"method {method.name!r} needs a one-line description")
    if method.name in _REGISTRY and _REGISTRY[method.name] is not method and not replace:
        raise ValueError(f"method {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove the method `name` from the registry (a method registered by a test, say)."""
    _load_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"method {name!r} is not registered; registered: {names()}")
    del _REGISTRY[name]


def names() -> list[str]:
    """Registered method names, sorted ("none", the baseline, is not one)."""
    _load_builtins()
    return sorted(_REGISTRY)


def available() -> dict[str, str]:
    """{name: one-line description} of every registered method, sorted by name."""
    _load_builtins()
    return {n: _REGISTRY[n].description for n in sorted(_REGISTRY)}


def get(name: str) -> Method:
    """The registered method `name` (or the baseline for "none"); ValueError naming the valid ones."""
    if isinstance(name, Method):
        return name
    _load_builtins()
    if name == "none":
        return _BASELINE
    if name not in _REGISTRY:
        raise ValueError(f"method must be one of {names()}, got {name!r}")
    return _REGISTRY[name]


def baseline() -> Method:
    """The "none" baseline: no conversion, PGD-AT."""
    return _BASELINE


def default() -> str:
    """The method the demo runs when none is named: `DEFAULT` when registered, else the first registered one."""
    valid = names()
    if DEFAULT in valid:
        return DEFAULT
    if not valid:
        raise ValueError("no defense method is registered")
    return valid[0]


def cost_models() -> list:
    """The cost models of the registered methods (for `fastnoise.bitops`)."""
    _load_builtins()
    return [m.cost for m in _REGISTRY.values() if m.cost is not None]


def describe(name: Optional[str] = None):
    """`Method.describe()` of `name`, or of every registered method."""
    if name is not None:
        return get(name).describe()
    return {n: get(n).describe() for n in names()}
