"""Leaderboard budgets: the shared training budget and the one evaluation protocol, per data set.

A budget is a `Budget` (every field below); ``BUDGETS[name]`` holds the defaults and per-data-set
overrides (``Budget.for_dataset``). ``--budget FILE.json`` reads a budget from a JSON object of these
fields (``"datasets": {name: {field: value}}`` for overrides). Everything that differs from the full
protocol (fewer epochs, evaluation subsets, fewer Square queries) is in the budget and printed with
the table, so a quick number is never mistaken for a full one.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Mapping, Optional

__all__ = ["Budget", "BUDGETS", "budget_names", "get_budget"]


@dataclasses.dataclass(frozen=True)
class Budget:
    """The shared budget of a leaderboard run (one data set).

    Training (every method alike, `fastnoise.train.TrainConfig` fields): model / model_options, epochs,
    batch_size, lr, early_stop / val_samples (Rice et al. early stopping on the val split), train_steps
    (PGD steps of the training attack; None: the data set's default; the training eps is always the data
    set's default eps, alpha 2.5 eps / steps or the recipe's own default), post_epochs (a cap on every
    integer post-conversion option whose name ends in "epochs", e.g. NENNI's distillation / fine-tuning
    epochs; None: the methods' own defaults).
    Evaluation (`fastnoise.attacks.evaluate`, noise on, the method's inference rule): eval_samples (first n
    test samples for clean / FGSM / PGD-20 / the eps curve; None: all), expensive_samples (AutoAttack rand,
    Square, EOT curve, seed protocol), eot (draws per attack gradient), draws (inference draws: mean ±
    std), pgd_steps, aa_iterations (APGD iterations of AutoAttack rand), square_queries, eps_factors
    (the eps curve: multiples of the data set's default eps, which is the headline eps), eot_curve (EOT
    values of the accuracy-vs-EOT curve, randomized models), sanity_eps, inference_batch (batch of the
    measured inference time), attack_batch (samples attacked at once: an EOT gradient keeps the graphs of
    eot x the inference rule's passes in memory, e.g. 400 small-CNN passes for RSE), threads (torch intra-op threads: the same in every process, so results do
    not depend on how a run is split).
    """
    name: str
    description: str
    model: str = "small_cnn"
    model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.05
    early_stop: bool = True
    val_samples: int = 1000
    train_steps: Optional[int] = None
    post_epochs: Optional[int] = None
    eval_samples: Optional[int] = None
    expensive_samples: Optional[int] = 1000
    eot: int = 20
    draws: int = 5
    pgd_steps: int = 20
    aa_iterations: int = 100
    square_queries: int = 5000
    eps_factors: tuple = (0.25, 0.5, 1.0, 1.5)
    eot_curve: tuple = (1, 2, 5, 10, 20)
    sanity_eps: float = 1.0
    inference_batch: int = 128
    attack_batch: int = 32
    threads: int = 1

    def __post_init__(self):
        def bad(field, want):
            raise ValueError(f"budget {self.name!r}: {field} must be {want}, got {getattr(self, field)!r}")

        def integer(field, lo, optional=False):
            v = getattr(self, field)
            if optional and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                bad(field, f"an int >= {lo}" + (" or null" if optional else ""))

        for f in ("epochs", "batch_size", "eot", "draws", "pgd_steps", "aa_iterations", "square_queries",
                  "inference_batch", "attack_batch", "threads"):
            integer(f, 1)
        integer("val_samples", 0)
        integer("train_steps", 1, optional=True)
        integer("post_epochs", 0, optional=True)
        integer("eval_samples", 1, optional=True)
        integer("expensive_samples", 1, optional=True)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (math.isfinite(self.lr) and self.lr > 0):
            bad("lr", "a finite number > 0")
        if not isinstance(self.early_stop, bool):
            bad("early_stop", "true or false")
        f = tuple(self.eps_factors)
        if len(f) < 4 or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in f) \
                or list(f) != sorted(set(f)) or 1.0 not in f:
            bad("eps_factors", "at least 4 ascending distinct numbers > 0 including 1.0 (the headline eps)")
        object.__setattr__(self, "eps_factors", tuple(float(v) for v in f))
        c = tuple(self.eot_curve)
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in c) or list(c) != sorted(set(c)):
            bad("eot_curve", "ascending distinct ints >= 1")
        object.__setattr__(self, "eot_curve", c)
        if not isinstance(self.model_options, Mapping):
            bad("model_options", "a JSON object")
        object.__setattr__(self, "model_options", dict(self.model_options))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["eps_factors"], d["eot_curve"] = list(self.eps_factors), list(self.eot_curve)
        return d

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


_FULL_DATASETS = {
    # the method papers' settings: small CNN on the MNIST family, PreAct ResNet-18 on CIFAR (Rice et al.)
    "mnist": {"model": "small_cnn", "epochs": 100, "lr": 0.01},
    "fashion-mnist": {"model": "small_cnn", "epochs": 100, "lr": 0.01},
    "cifar10": {"model": "preact_resnet18", "epochs": 200, "lr": 0.1},
    "cifar100": {"model": "preact_resnet18", "epochs": 200, "lr": 0.1},
}

BUDGETS: dict[str, dict] = {
    "quick": {
        "description": ("quick (the demo's budget, CPU minutes): small_cnn width 16, 3 epochs PGD-5 training, "
                        "no early stopping, post-conversion recipes capped at 3 epochs; clean / FGSM / PGD-20 / eps curve on the first 96 test samples, "
                        "AutoAttack rand, Square (500 queries), seed protocol and the EOT curve on the first 32; "
                        "EOT-20, 3 inference draws"),
        "fields": {"model": "small_cnn", "model_options": {"width": 16, "hidden": 64}, "epochs": 3,
                   "batch_size": 64, "lr": 0.05, "early_stop": False, "val_samples": 0, "train_steps": 5,
                   "post_epochs": 3,
                   "eval_samples": 96, "expensive_samples": 32, "eot": 20, "draws": 3, "aa_iterations": 100,
                   "square_queries": 500, "eot_curve": (1, 5, 20), "inference_batch": 128},
        "datasets": {},
    },
    "full": {
        "description": ("full (the papers' budgets; hours per method on a GPU for CIFAR): the papers' architectures "
                        "and epochs, early stopping on the val split, the whole test split (expensive attacks "
                        "on the first 1000), EOT-20, 5 draws, AutoAttack rand 100 iterations, Square 5000 queries"),
        "fields": {"model": "small_cnn", "epochs": 30, "batch_size": 128, "lr": 0.05, "early_stop": True,
                   "val_samples": 1000, "eval_samples": None, "expensive_samples": 1000},
        "datasets": _FULL_DATASETS,
    },
}


def budget_names() -> list[str]:
    return list(BUDGETS)


def _from_spec(name: str, spec: Mapping, dataset: str) -> Budget:
    fields = dict(spec.get("fields", {}))
    fields.update(spec.get("datasets", {}).get(dataset, {}))
    unknown = sorted(set(fields) - set(Budget.fields()))
    if unknown:
        raise ValueError(f"budget {name!r}: unknown field(s) {unknown}; valid fields: {Budget.fields()}")
    return Budget(name=name, description=spec.get("description", name), **fields)


def get_budget(budget: "str | Budget", dataset: str) -> Budget:
    """The `Budget` for `dataset`: a name of `BUDGETS`, a path to a JSON budget file, or a Budget."""
    if isinstance(budget, Budget):
        return budget
    if not isinstance(budget, str):
        raise TypeError(f"budget must be a budget name or a JSON file path, got {type(budget).__name__}")
    if budget in BUDGETS:
        return _from_spec(budget, BUDGETS[budget], dataset)
    p = Path(budget)
    if budget.endswith(".json") and p.is_file():
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"budget file {p}: not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise ValueError(f"budget file {p}: expected a JSON object of budget fields")
        spec = {"description": d.pop("description", f"budget file {p.name}"), "datasets": d.pop("datasets", {}),
                "fields": d}
        return _from_spec(d.pop("name", p.stem), spec, dataset)
    raise ValueError(f"budget must be one of {budget_names()} (or a JSON budget file), got {budget!r}")
