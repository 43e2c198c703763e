"""`TrainConfig`: everything a training run depends on, validated, with JSON round trip."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

from ..adversarial import RECIPES as _RECIPES

#: the training recipes (`fastnoise.adversarial.RECIPES`)
RECIPES = tuple(_RECIPES)
MAX_SEED = 2 ** 63 - 1
#: the architecture of a run whose model is null and whose method declares none
DEFAULT_MODEL = "small_cnn"


@dataclasses.dataclass
class TrainConfig:
    """A training run.

    dataset / data_root: `fastnoise.data.load` arguments. model / model_options: `fastnoise.models.build`;
    model null (default): the method's architecture (`Method.training.model`, its options with
    `model_options` merged over them) when it declares one (NIT: ``spiking_mlp``), else ``small_cnn``
    (`resolved_model`).
    method / method_options: `fastnoise.convert(model, method, **method_options)` ("none": no conversion);
    the method also brings its training hooks (`fastnoise.methods.Method.hooks`).
    recipe: a name of `fastnoise.adversarial.RECIPES`: "standard" (clean cross-entropy), "pgd" (Madry
    PGD-AT: L-inf PGD with a random start, `steps` steps of size `alpha`), "noisy_fgsm" (seed 003: uniform
    noise in [-eps, eps], then one FGSM step of size `alpha` (default eps) from the noisy point); null
    (default): the method's recipe (`Method.training`; "pgd" for method "none").
    batch_size: the global batch (split over the ranks when distributed).
    lr schedule: SGD, x`lr_gamma` at each epoch in `milestones` (default 50% and 75% of `epochs`).
    eps / alpha / steps: default from the data set (e.g. CIFAR: 8/255, 2/255, 10; alpha = 2.5 eps / steps
    when eps or steps is given without alpha).
    early_stop: Rice et al.: evaluate PGD accuracy on (up to `val_samples` of) the val split every
    epoch and keep the best checkpoint ("best"); fit() returns the best model's results.
    device: "auto" (cuda if available), "cpu", "cuda", "cuda:1"...
    """
    dataset: str = "digits"
    data_root: Optional[str] = None
    model: Optional[str] = None
    model_options: dict = dataclasses.field(default_factory=dict)
    method: str = "none"
    method_options: dict = dataclasses.field(default_factory=dict)
    recipe: Optional[str] = None
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: Optional[list] = None
    lr_gamma: float = 0.1
    eps: Optional[float] = None
    alpha: Optional[float] = None
    steps: Optional[int] = None
    augment: bool = True
    early_stop: bool = True
    val_samples: int = 1000
    test_eval: bool = True
    seed: int = 0
    out_dir: str = "runs/default"
    device: str = "auto"
    distributed: bool = False
    workers: int = 0
    quiet: bool = False

    # keys that may differ between a run and its resumption
    RESUMABLE_CHANGES = ("epochs", "out_dir", "device", "distributed", "workers", "quiet", "data_root", "test_eval")

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise TypeError(f"a training config must be a dict (JSON object), got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls.keys()))
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; valid keys: {cls.keys()}")
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **kw) -> "TrainConfig":
        d = self.to_dict()
        d.update(kw)
        return TrainConfig.from_dict(d)

    def validate(self) -> "TrainConfig":
        """Check every field; errors name the key and the valid values."""
        from .. import data, methods, models

        def choice(key, valid):
            v = getattr(self, key)
            if v not in valid:
                raise ValueError(f"{key} must be one of {list(valid)}, got {v!r}")

        def integer(key, lo, optional=False, hi=None):
            v = getattr(self, key)
            if optional and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
                within = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
                raise ValueError(f"{key} must be an int {within}{' or null' if optional else ''}, got {v!r}")

        def number(key, lo, lo_open=False, hi=None, optional=False):
            v = getattr(self, key)
            if optional and v is None:
                return
            ok = (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
                  and (v > lo if lo_open else v >= lo) and (hi is None or v <= hi))
            if not ok:
                rng = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
                raise ValueError(f"{key} must be a finite number {rng}{' or null' if optional else ''}, got {v!r}")

        choice("dataset", data.names())
        if self.model is not None:
            choice("model", models.names())
        choice("method", ["none"] + methods.names())
        if self.recipe is not None and self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {list(RECIPES)} (or null: the method's recipe), got {self.recipe!r}")
        for key in ("model_options", "method_options"):
            if not isinstance(getattr(self, key), dict):
                raise ValueError(f"{key} must be a dict (JSON object), got {getattr(self, key)!r}")
            if not all(isinstance(k, str) for k in getattr(self, key)):
                raise ValueError(f"{key} keys must be strings, got {sorted(map(repr, getattr(self, key)))}")
        name, opts = self.resolved_model()
        if name not in models.names():  # a method declaring an architecture that is not there
            raise ValueError(f"method {self.method!r} declares model {name!r}, which is not one of {models.names()}")
        try:
            models.check_options(name, opts)
        except (TypeError, ValueError) as e:
            raise ValueError(f"model_options: {e}") from None
        try:
            methods.get(self.method).check_options(self.method_options)
        except (ValueError, TypeError) as e:
            raise ValueError(f"method_options: {e}") from None
        for key in ("augment", "early_stop", "test_eval", "distributed", "quiet"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"{key} must be true or false, got {getattr(self, key)!r}")
        integer("epochs", 1)
        integer("batch_size", 1)
        integer("steps", 1, optional=True)
        integer("val_samples", 1)  # 0 would early-stop on an empty validation set (accuracy 0 every epoch)
        integer("seed", 0, hi=MAX_SEED)  # seeds torch, numpy and the Philox streams: 63 bits
        integer("workers", 0)
        number("lr", 0, lo_open=True)
        number("momentum", 0, hi=1)
        number("weight_decay", 0)
        number("lr_gamma", 0, lo_open=True, hi=1)
        number("eps", 0, hi=1, optional=True)
        number("alpha", 0, lo_open=True, hi=1, optional=True)
        if self.milestones is not None:
            m = self.milestones
            if (not isinstance(m, (list, tuple)) or any(isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in m)
                    or list(m) != sorted(m)):
                raise ValueError(f"milestones must be an ascending list of epochs >= 1 (or null: 50% and 75% of "
                                 f"epochs), got {m!r}")
        if self.data_root is not None and not isinstance(self.data_root, str):
            raise ValueError(f"data_root must be a path string or null, got {self.data_root!r}")
        if not isinstance(self.out_dir, str) or not self.out_dir:
            raise ValueError(f"out_dir must be a non-empty path string, got {self.out_dir!r}")
        if not isinstance(self.device, str) or not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        return self

    # ---- resolved values ----------------------------------------------------------------------
    def resolved_milestones(self) -> list[int]:
        if self.milestones is not None:
            return list(self.milestones)
        return sorted({max(1, int(self.epochs * 0.5)), max(1, int(self.epochs * 0.75))})

    def resolved_model(self) -> tuple[str, dict]:
        """(architecture, options) this run builds: `model` with `model_options` when model is set; else the
        method's declared architecture (`Method.training.model`) with `model_options` merged over its
        options; else ("small_cnn", model_options)."""
        if self.model is not None:
            return self.model, dict(self.model_options)
        from .. import methods
        m = methods.get(self.method).training
        if getattr(m, "model", None) is not None:
            return m.model, {**m.model_options, **self.model_options}
        return DEFAULT_MODEL, dict(self.model_options)

    def resolved_recipe(self) -> str:
        """The recipe this run trains with: `recipe`, else the method's (`Method.training.recipe`)."""
        if self.recipe is not None:
            return self.recipe
        from .. import methods
        return methods.get(self.method).training.recipe

    def attack_params(self, splits) -> tuple[float, float, int]:
        """(eps, alpha, steps) for training: the config's values, else the method's (`Method.training`),
        else the recipe's / the data set's defaults (alpha = 2.5 eps / steps when eps or steps is given)."""
        from .. import adversarial, methods
        m = methods.get(self.method).training
        eps_v = self.eps if self.eps is not None else m.eps
        steps_v = self.steps if self.steps is not None else m.steps
        alpha_v = self.alpha if self.alpha is not None else m.alpha
        eps = splits.default_eps if eps_v is None else float(eps_v)
        steps = splits.default_steps if steps_v is None else int(steps_v)
        alpha = adversarial.get_recipe(self.resolved_recipe()).alpha(eps, steps, alpha_v)
        if alpha is not None:
            alpha = float(alpha)
        elif eps_v is None and steps_v is None:
            alpha = splits.default_alpha
        else:
            alpha = 2.5 * eps / steps
        return eps, alpha, steps

    def diff(self, other: "TrainConfig", ignore: tuple = ()) -> dict[str, tuple[Any, Any]]:
        """Keys whose values differ (the recipe and the architecture compared as resolved: null == the
        method's recipe / architecture)."""
        a, b = self.to_dict(), other.to_dict()
        a["recipe"], b["recipe"] = self.resolved_recipe(), other.resolved_recipe()
        (a["model"], a["model_options"]), (b["model"], b["model_options"]) = self.resolved_model(), other.resolved_model()
        return {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]}
