"""The `Method` protocol: everything a defense method is, in one object.

A method is one module ``fastnoise/methods/<name>.py`` defining ``METHOD``, an instance of a `Method`
subclass. The trainer (`fastnoise train --method`), the demo, `fastnoise.convert`, `fastnoise.bitops`,
the evaluation harness and the leaderboard ask that object and contain no method names:

==================  ===========================================================================
name, description   registry key and the one line `fastnoise info` / `methods.available()` print
options             the conversion options (`Option`: default, check, doc); unknown names and bad
                    values are errors naming the option and its valid values
targets / replace   what conversion swaps: `convert` (defined here, not per method) picks the
                    targets, builds every replacement first (all or nothing), replaces a module
                    shared under several names once (it stays shared), replaces the root itself
                    (returned), refuses scripted modules, and raises naming `looks_for` when
                    there is nothing to convert
training            the training recipe it wants (`TrainingRecipe`: recipe name of
                    `fastnoise.adversarial.RECIPES`, the paper's eps / alpha / steps, and the
                    architecture it needs when it cannot train the usual ones: `model`)
hooks(config)       its `Hooks` for the trainer (loss from clean + adversarial batches, noise
                    draws around the attack, a replaced update step, projections, ...)
after_convert       an optional post-conversion recipe (e.g. NENNI's distillation), with its
                    own `post_options`
evaluation          how it must be attacked (`Evaluation`: stochastic or deterministic, one draw
                    per sample or per batch, the inference rule as a wrapper module that is
                    what gets attacked, the paper's own "seed protocol")
cost                its `CostModel` for `fastnoise.bitops` (None: its layers cost nothing extra)
example_options     the reference configuration the demo and the leaderboard use
==================  ===========================================================================
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import torch

from ._hooks import Hooks

__all__ = ["Method", "Option", "TrainingRecipe", "Evaluation", "CostModel", "LayerCost", "Bits", "ConvertData",
           "DRAWS", "STARTS", "boolean", "integer", "number", "choice", "optional"]

_MISSING = object()


# ---- options ----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a method. ``check(name, value) -> value`` validates (and may normalize) a given value
    and raises ValueError / TypeError naming the option and the valid values; None: the value is checked
    by the layers the method builds (their errors name the setting)."""
    name: str
    default: Any
    doc: str
    check: Optional[Callable[[str, Any], Any]] = None


def _fmt(v: Any) -> str:
    return repr(v)


def boolean(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"{name} must be true or false, got {_fmt(v)}")
    return v


def integer(lo: Optional[int] = None, hi: Optional[int] = None) -> Callable[[str, Any], int]:
    def check(name: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = " and ".join(s for s in ((f">= {lo}" if lo is not None else ""), (f"<= {hi}" if hi is not None else "")) if s)
            raise ValueError(f"{name} must be an int{' ' + rng if rng else ''}, got {_fmt(v)}")
        return v
    return check


def number(lo: Optional[float] = None, hi: Optional[float] = None, lo_open: bool = False,
           hi_open: bool = False) -> Callable[[str, Any], float]:
    def check(name: str, v: Any) -> float:
        ok = (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
              and (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or (v < hi if hi_open else v <= hi)))
        if not ok:
            parts = ([f"{'>' if lo_open else '>='} {lo}"] if lo is not None else []) + \
                    ([f"{'<' if hi_open else '<='} {hi}"] if hi is not None else [])
            raise ValueError(f"{name} must be a finite number{' ' + ' and '.join(parts) if parts else ''}, got {_fmt(v)}")
        return float(v)
    return check


def choice(*valid: Any) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if v not in valid:
            raise ValueError(f"{name} must be one of {list(valid)}, got {_fmt(v)}")
        return v
    return check


def optional(inner: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    """None, or a value `inner` accepts."""
    def check(name: str, v: Any) -> Any:
        return None if v is None else inner(name, v)
    return check


def _check_options(owner: str, specs: Sequence[Option], given: Mapping[str, Any], what: str = "option") -> dict:
    if not isinstance(given, Mapping):
        raise TypeError(f"{owner}: {what}s must be a dict of {what} -> value, got {type(given).__name__}")
    valid = [o.name for o in specs]
    unknown = [k for k in given if k not in valid]
    if unknown:
        raise ValueError(f"{owner}: unknown {what}{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                         f"valid {what}s: {', '.join(valid) if valid else 'none'}")
    out = {}
    for o in specs:
        v = given.get(o.name, o.default)
        out[o.name] = o.check(o.name, v) if (o.check is not None and o.name in given) else v
    return out


# ---- training, evaluation, cost -------------------------------------------------------------------

#: where a method's training starts (`TrainingRecipe.start`)
STARTS = ("scratch", "trained")


@dataclasses.dataclass(frozen=True)
class TrainingRecipe:
    """The training a method wants: a recipe of `fastnoise.adversarial.RECIPES` and the attack settings of
    its paper (eps / alpha / steps; None: the data set's defaults). A config value that is set wins.

    start: "scratch" (default): the converted model is trained with the recipe (`fastnoise train --method`);
    "trained": the method converts a model already trained with the recipe (the unconverted architecture),
    then runs its post-conversion recipe (`Method.after_convert`), as NENNI's seed does. The leaderboard
    trains each method this way (and reuses the PGD-AT baseline's checkpoint when the training is the same).

    model / model_options: the architecture the method needs (a `fastnoise.models` name and its options),
    for a method that cannot train the usual ones (NIT: networks of LR layers, no batch norm); None
    (default): any architecture, the caller's. `fastnoise train --method M` without ``--model`` builds it
    (``--model-options`` given are merged over `model_options`); the leaderboard trains the method's row
    on it instead of the budget's architecture and says so in the row (`architecture`, source "method").
    """
    recipe: str = "pgd"
    eps: Optional[float] = None
    alpha: Optional[float] = None
    steps: Optional[int] = None
    description: str = ""
    start: str = "scratch"
    model: Optional[str] = None
    model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.start not in STARTS:
            raise ValueError(f"start must be one of {STARTS}, got {self.start!r}")
        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            raise TypeError(f"model must be a fastnoise.models name or None, got {self.model!r}")
        if not isinstance(self.model_options, Mapping) or not all(isinstance(k, str) for k in self.model_options):
            raise TypeError(f"model_options must be a dict of option name -> value, got {self.model_options!r}")
        if self.model is None and self.model_options:
            raise ValueError(f"model_options {dict(self.model_options)} need a model (model=None: the caller's "
                             f"architecture, with the caller's options)")
        object.__setattr__(self, "model_options", dict(self.model_options))

    def describe(self) -> dict:
        """JSON-able fields; model / model_options only when the method declares an architecture (so the
        description of a method without one is what it was before these fields existed)."""
        d = dataclasses.asdict(self)
        if self.model is None:
            del d["model"], d["model_options"]
        return d


#: how a stochastic method draws its noise: one draw per sample (per element), or one per batch
DRAWS = ("per_sample", "per_batch", "none")


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """How a method must be evaluated (fastnoise.attacks.evaluate, the demo, the leaderboard).

    stochastic: the converted model draws fresh randomness per forward pass (EOT and several inference
    draws are needed); False: a deterministic function of the input (one protocol, no EOT).
    draw: "per_sample" (independent noise per sample), "per_batch" (one draw shared by the batch: such
    layers offer ``resample()``) or "none" (deterministic).
    inference: the inference rule as a module factory ``inference(model) -> deployed``: the deployed model
    is what gets attacked and classified (e.g. RSE's mean softmax over n draws). None: the model itself.
    seed_protocol: the method paper's own evaluation, reported beside the headline and labelled.
    seed_gradients: for a method whose paper attacked a gradient other than the true one (e.g. NENNI's
    exact-neurons-only gradient), ``seed_gradients(model)`` is a context manager inside which the model's
    forward values are unchanged and its gradients are the paper's: the leaderboard runs its labelled
    seed-protocol attack inside it. None: the paper attacked the true gradient (for a stochastic method
    the seed protocol is then "one draw per attack step", `fastnoise.attacks.evaluate`'s "seed").
    """
    stochastic: bool
    draw: str = "none"
    seed_protocol: str = ""
    inference: Optional[Callable[[torch.nn.Module], torch.nn.Module]] = None
    inference_doc: str = "the converted model itself"
    seed_gradients: Optional[Callable[[torch.nn.Module], Any]] = None

    def __post_init__(self):
        if self.draw not in DRAWS:
            raise ValueError(f"draw must be one of {DRAWS}, got {self.draw!r}")
        if not self.stochastic and self.draw != "none":
            raise ValueError(f"a deterministic method has draw='none', got {self.draw!r}")
        if self.stochastic and self.draw == "none":
            raise ValueError("a stochastic method draws 'per_sample' or 'per_batch', got draw='none'")

    def deploy(self, model: torch.nn.Module) -> torch.nn.Module:
        """The deployed model: the inference rule applied to `model` (`model` itself without one)."""
        return model if self.inference is None else self.inference(model)

    def describe(self) -> dict:
        return {"stochastic": self.stochastic, "draw": self.draw, "inference": self.inference_doc,
                "seed_protocol": self.seed_protocol}


@dataclasses.dataclass(frozen=True)
class Bits:
    """The fixed-point widths of a BitOPs count: exact weights, activations, approximation weights."""
    weight: int = 32
    act: int = 32
    approx: int = 4


@dataclasses.dataclass
class LayerCost:
    """BitOPs per sample of one layer: ``total = exact + projection + approx``; `dense` is the same layer
    all exact (``macs x weight x act``); `kept_fraction` the fraction computed exactly."""
    macs: float
    dense: float
    exact: float
    projection: float = 0.0
    approx: float = 0.0
    kept_fraction: float = 1.0


class CostModel:
    """How `fastnoise.bitops` counts the layers a method adds (see fastnoise/bitops.py for the convention).

    `claims(module)`: whether this model prices `module` (its forward output is hooked); `cost(module,
    out_per_sample, bits)` the `LayerCost` of one call. `prepare(model)`: a context in which one forward
    pass has the shapes of inference (e.g. NENNI layers in "dense" mode; the count depends on shapes only).
    """

    def claims(self, module: torch.nn.Module) -> bool:
        return False

    def cost(self, module: torch.nn.Module, out_per_sample: float, bits: Bits) -> LayerCost:
        raise NotImplementedError

    def prepare(self, model: torch.nn.Module):
        return contextlib.nullcontext()


@dataclasses.dataclass
class ConvertData:
    """What a post-conversion recipe may use: training batches, the attack radius, the seed, the classes."""
    batches: Iterable
    eps: float
    seed: int = 0
    num_classes: Optional[int] = None

    @classmethod
    def from_splits(cls, splits, batch_size: int = 64, seed: int = 0) -> "ConvertData":
        """Shuffled (x, y) batches of the training split of `fastnoise.data.Splits` (a fixed permutation of `seed`)."""
        x, y = splits.train.tensors()
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        batches = [(x[perm[i:i + batch_size]], y[perm[i:i + batch_size]]) for i in range(0, len(y), batch_size)]
        return cls(batches, splits.default_eps, seed, splits.num_classes)


# ---- the method -------------------------------------------------------------------------------------

class Method:
    """A defense method (see the module docstring). Subclass it, set the class attributes, implement
    `targets` and `replace` (and override `hooks` / `after_convert` where the method has them)."""

    name: str = ""
    description: str = ""
    options: Sequence[Option] = ()
    looks_for: str = ""
    training: TrainingRecipe = TrainingRecipe()
    evaluation: Evaluation = Evaluation(stochastic=False)
    cost: Optional[CostModel] = None
    example_options: Mapping[str, Any] = {}
    post_options: Sequence[Option] = ()

    # ---- conversion -----------------------------------------------------------------------------

    def targets(self, model: torch.nn.Module, named: dict, options: dict) -> list[str]:
        """Names (keys of `named` = dict(model.named_modules()), each module once) of the modules to replace,
        in conversion order ("" is the root). Raise ValueError naming a layer that cannot be converted."""
        raise NotImplementedError(f"method {self.name!r} does not define targets()")

    def replace(self, name: str, module: torch.nn.Module, index: int, options: dict) -> torch.nn.Module:
        """The module that replaces `module` (the `index`-th target, named `name`)."""
        raise NotImplementedError(f"method {self.name!r} does not define replace()")

    def check_options(self, options: Mapping[str, Any]) -> dict:
        """Every option with its value (given or default); errors name the option and the valid values."""
        return _check_options(f"method {self.name!r}", self.options, options)

    def convert(self, model: torch.nn.Module, **options: Any) -> torch.nn.Module:
        """Swap the target layers of `model` for this method's layers, in place; returns the converted model
        (`model`, or the replacement when the root itself is converted).

        All or nothing: options are checked and every replacement is built before anything is swapped, so
        an error leaves `model` untouched. A module reachable under several names (shared) is converted once
        and the replacement is set under every name. Scripted modules are refused.
        """
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        opts = self.check_options(options)
        for name, m in model.named_modules():
            if isinstance(m, torch.jit.ScriptModule):
                where = f"its submodule {name!r}" if name else "the model"
                raise TypeError(f"cannot convert a scripted module ({where} is a {type(m).__name__}): convert the "
                                f"eager model with {self.name!r}, then script the result")
        named = dict(model.named_modules())
        targets = list(self.targets(model, named, opts))
        if not targets:
            raise ValueError(f"method {self.name!r} found nothing to convert in {type(model).__name__}: it looks for "
                             f"{self.looks_for or 'layers it can replace'}")
        if len(set(targets)) != len(targets):
            raise ValueError(f"method {self.name!r}: a layer is named twice in {targets}")
        built: dict[int, torch.nn.Module] = {}
        for i, name in enumerate(targets):
            old = named[name]
            try:
                new = self.replace(name, old, i, opts)
            except (ValueError, TypeError) as e:
                raise type(e)(f"layer {name or '<root>'!r}: {e}") from None
            new.train(old.training)
            built[id(old)] = new
        if id(model) in built:
            return built[id(model)]
        for parent in list(model.modules()):  # every (parent, attribute) holding a target: shared ones too
            for attr, child in list(parent._modules.items()):
                if child is not None and id(child) in built:
                    setattr(parent, attr, built[id(child)])
        return model

    # ---- training --------------------------------------------------------------------------------

    def hooks(self, config: Any) -> Optional[Hooks]:
        """The trainer hooks this method needs for `config` (a `fastnoise.train.TrainConfig`), or None."""
        return None

    # ---- post-conversion recipe ------------------------------------------------------------------

    def check_post_options(self, options: Mapping[str, Any]) -> dict:
        return _check_options(f"method {self.name!r} post-conversion recipe", self.post_options, options)

    def after_convert(self, model: torch.nn.Module, data: ConvertData, **options: Any) -> str:
        """The post-conversion recipe (run on a converted model before it is evaluated, e.g. distillation);
        returns a one-line description of what it did ("none": the method has none)."""
        self.check_post_options(options)
        return "none"

    # ---- evaluation --------------------------------------------------------------------------------

    def deploy(self, model: torch.nn.Module) -> torch.nn.Module:
        """The deployed model (what is attacked): `evaluation.inference` applied to a converted model."""
        return self.evaluation.deploy(model)

    # ---- description -------------------------------------------------------------------------------

    def describe(self) -> dict:
        """A JSON-able summary (for reports and `fastnoise info`)."""
        return {"name": self.name, "description": self.description,
                "options": {o.name: o.default for o in self.options}, "looks_for": self.looks_for,
                "training": self.training.describe(), "evaluation": self.evaluation.describe(),
                "cost_model": self.cost is not None, "post_convert": [o.name for o in self.post_options],
                "example_options": dict(self.example_options)}

    def __repr__(self) -> str:
        return f"<fastnoise method {self.name!r}: {self.description}>"
