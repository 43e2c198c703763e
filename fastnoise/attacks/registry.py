"""Attack registry: thin, counted, EOT-capable wrappers around torchattacks 3.5.1 (never re-implemented).

`make_attack(name, model, eps, eot=..., steps=..., seed=...)` builds the torchattacks attack on

    EOTModel(ForwardCounter(model), n)

* `ForwardCounter` counts every forward pass of the *defended* model (one per noise draw) and the
  number of samples that went through it, so the report can state the attack's cost.
* `EOTModel` (Expectation over Transformation): its forward returns the **mean of the logits of n
  independent noisy forward passes**, ``f̄(x) = 1/n Σ_i f(x; ξ_i)`` (a loop: each pass draws fresh noise,
  also for layers whose noise is shared across the batch). Every torchattacks attack then attacks the
  smoothed model f̄, so EOT works for *every* attack (gradient or score based) without touching its
  code: the attack's gradient is ∇_x L(f̄(x)), which equals the average of the n per-draw gradients
  whenever the loss is linear in the logits (C&W / DLR margins up to the max) and is the gradient of
  the expected-logit model for cross-entropy. With n = 1 the wrapper returns ``model(x)`` unchanged
  (bit-identical to calling torchattacks on the model directly).
* `autoattack_rand` is the exception: AutoAttack's ``version='rand'`` is the official protocol for
  randomized defenses and already averages the *loss gradients* over ``eot_iter`` draws inside APGD
  (Croce & Hein 2020). There the wrapper uses n = 1 and APGD's own ``eot_iter`` is set to `eot`
  (20 by default, as in AutoAttack), so the gradients are not averaged twice.
* Batched EOT: `EOTModel` runs its n draws as forwards of the batch replicated (`fastnoise.nn.draws`) when
  every active noise layer draws per element from its Philox stream and the model is in eval mode; the
  draws, logits and adversarial examples are those of the sequential passes for the same streams.
  `ForwardCounter.calls` counts noise draws (a forward of r replicas counts r), as before.

Noise stays on during the attack: torchattacks calls ``model.eval()``; fastnoise `NoiseModule`s in
noise mode ``"on"`` keep injecting noise in eval mode (fastnoise/nn/_mode.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from ..nn.draws import DEFAULT_MAX_BATCH, draw_outputs, merge_groups, replica_groups

__all__ = ["ATTACKS", "AttackSpec", "Attack", "EOTModel", "ForwardCounter", "make_attack", "check_eps",
           "attack_names"]


def rows_finite(t: torch.Tensor) -> torch.Tensor:
    """bool [rows]: whether every value of each row (first dim) of `t` is finite."""
    return torch.isfinite(t.flatten(1) if t.dim() > 1 else t.reshape(-1, 1)).all(1)


class ForwardCounter(torch.nn.Module):
    """Counts the forward passes (`calls`) and forwarded samples (`samples`) of the wrapped model, and
    watches the gradients w.r.t. its input: for every forward pass whose input requires grad, the
    backward appends to `grad_flags` a bool [rows] tensor, True where a row's gradient is not finite
    (NaN / inf). `fastnoise.attacks.evaluate` counts such samples as not robust."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.calls = 0
        self.samples = 0
        self.grad_flags: list = []

    def reset(self) -> None:
        self.calls = 0
        self.samples = 0
        self.grad_flags.clear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += replica_groups()  # a batched EOT forward of r replicas is r noise draws
        self.samples += int(x.shape[0]) if x.dim() > 0 else 1
        if torch.is_grad_enabled() and x.requires_grad and x.dim() > 0:
            x = x.view_as(x)  # a node of this pass only: its hook sees this draw's gradient
            flags = self.grad_flags
            x.register_hook(lambda g: flags.append(~rows_finite(g.detach())))
        return self.model(x)


class EOTModel(torch.nn.Module):
    """Forward = mean of the logits of `n` independent noisy forward passes of `model` (see module doc).

    The n passes run batched (`fastnoise.nn.draws.draw_outputs`: forwards of the batch replicated, at most
    `max_batch` samples each) when the model allows it (`fastnoise.nn.draws.batchable`: eval mode, every
    active noise layer draws per element from its Philox stream), else sequentially; both give the same
    logits for the same noise streams (bit for bit on the models tested). batch: None (auto), True, False.
    """

    def __init__(self, model: torch.nn.Module, n: int = 1, *, batch: Optional[bool] = None,
                 max_batch: int = DEFAULT_MAX_BATCH):
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n (EOT draws) must be an int >= 1, got {n!r}")
        if batch is not None and not isinstance(batch, bool):
            raise TypeError(f"batch must be None (auto), True or False, got {batch!r}")
        self.model = model
        self.n = n
        self.batch = batch
        self.max_batch = _check_int("max_batch", max_batch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.n == 1 and replica_groups() == 1:
            return self.model(x)
        outs = draw_outputs(self.model, x, self.n, batch=self.batch, max_batch=self.max_batch)
        out = outs[:, 0]
        for j in range(1, self.n):  # the order of the sequential sum
            out = out + outs[:, j]
        return merge_groups(out / self.n)


@dataclass(frozen=True)
class AttackSpec:
    """One registered attack: how to build it on a (wrapped) model and how to describe it."""
    name: str
    build: Callable[..., Any]          # build(model, eps, steps, seed, n_classes, **kw) -> torchattacks.Attack
    norm: str                          # "Linf" or "L2"
    bounded: bool                      # True: perturbation bounded by eps; False: minimal-norm attack, eps unused
    gradient: bool                     # gradient-based (False: score-based / black-box)
    default_steps: Optional[int]
    description: str
    own_eot: bool = False              # EOT done by torchattacks itself (eot_iter) instead of EOTModel
    needs_rgb: bool = False            # torchattacks' implementation only handles 3-channel images


def _ta():
    try:
        import torchattacks
    except ImportError as e:  # pragma: no cover - exercised only without the eval extra
        raise ImportError("fastnoise.attacks needs torchattacks==3.5.1: pip install --no-deps torchattacks==3.5.1") from e
    return torchattacks


def _pgd(m, eps, steps, seed, n_classes, **kw):
    return _ta().PGD(m, eps=eps, alpha=kw.pop("alpha", eps / 4), steps=steps,
                     random_start=kw.pop("random_start", True), **kw)


def _fgsm(m, eps, steps, seed, n_classes, **kw):
    return _ta().FGSM(m, eps=eps, **kw)


def _mifgsm(m, eps, steps, seed, n_classes, **kw):
    return _ta().MIFGSM(m, eps=eps, alpha=kw.pop("alpha", eps / steps), steps=steps, decay=kw.pop("decay", 1.0), **kw)


def _bim(m, eps, steps, seed, n_classes, **kw):
    return _ta().BIM(m, eps=eps, alpha=kw.pop("alpha", eps / 4), steps=steps, **kw)


def _difgsm(m, eps, steps, seed, n_classes, **kw):
    return _ta().DIFGSM(m, eps=eps, alpha=kw.pop("alpha", eps / 4), steps=steps, **kw)


def _tifgsm(m, eps, steps, seed, n_classes, **kw):
    return _ta().TIFGSM(m, eps=eps, alpha=kw.pop("alpha", eps / 4), steps=steps, **kw)


def _cw(m, eps, steps, seed, n_classes, **kw):
    return _ta().CW(m, c=kw.pop("c", 1.0), kappa=kw.pop("kappa", 0.0), steps=steps, lr=kw.pop("lr", 0.01), **kw)


def _deepfool(m, eps, steps, seed, n_classes, **kw):
    return _ta().DeepFool(m, steps=steps, overshoot=kw.pop("overshoot", 0.02), **kw)


def _spsa(m, eps, steps, seed, n_classes, **kw):
    return _ta().SPSA(m, eps=eps, nb_iter=steps, **kw)


def _square(m, eps, steps, seed, n_classes, **kw):
    return _ta().Square(m, norm="Linf", eps=eps, n_queries=steps, seed=seed, **kw)


def _set_iterations(atk, steps: int):
    """torchattacks' AutoAttack builds APGD / APGD-T / FAB with their class default of 10 iterations; the
    reference AutoAttack (Croce & Hein 2020) runs 100. Set them (Square keeps its 5000 queries)."""
    for sub in atk._autoattack.attacks:
        if hasattr(sub, "steps"):
            sub.steps = steps
    return atk


def _autoattack(m, eps, steps, seed, n_classes, **kw):
    atk = _ta().AutoAttack(m, norm="Linf", eps=eps, version="standard", n_classes=n_classes, seed=seed, **kw)
    return _set_iterations(atk, steps)


def _autoattack_rand(m, eps, steps, seed, n_classes, *, eot_iter=20, **kw):
    atk = _ta().AutoAttack(m, norm="Linf", eps=eps, version="rand", n_classes=n_classes, seed=seed, **kw)
    for sub in atk._autoattack.attacks:  # APGD-CE and APGD-DLR, both with eot_iter=20 by default
        sub.eot_iter = eot_iter
    return _set_iterations(atk, steps)


ATTACKS: dict[str, AttackSpec] = {s.name: s for s in [
    AttackSpec("pgd20", _pgd, "Linf", True, True, 20, "PGD (Madry), random start, step eps/4"),
    AttackSpec("fgsm", _fgsm, "Linf", True, True, None, "FGSM, one step of size eps"),
    AttackSpec("mifgsm", _mifgsm, "Linf", True, True, 5, "MI-FGSM, decay 1.0, step eps/steps"),
    AttackSpec("cw_l2", _cw, "L2", False, True, 1000, "C&W L2 (c=1, kappa=0, Adam lr 0.01); eps unused"),
    AttackSpec("autoattack", _autoattack, "Linf", True, True, 100,
               "AutoAttack standard: APGD-CE, APGD-T, FAB-T (steps iterations each), Square(5000)"),
    AttackSpec("autoattack_rand", _autoattack_rand, "Linf", True, True, 100,
               "AutoAttack rand: APGD-CE + APGD-DLR (steps iterations) with EOT inside APGD (eot_iter)",
               own_eot=True),
    AttackSpec("deepfool", _deepfool, "L2", False, True, 50, "DeepFool (overshoot 0.02); eps unused"),
    AttackSpec("spsa", _spsa, "Linf", True, False, 1, "SPSA (128 samples, delta 0.01, lr 0.01), score based"),
    AttackSpec("square", _square, "Linf", True, False, 5000, "Square attack (margin loss), score based"),
    AttackSpec("bim", _bim, "Linf", True, True, 10, "BIM / I-FGSM, step eps/4"),
    AttackSpec("difgsm", _difgsm, "Linf", True, True, 10, "DI-FGSM (resize 0.9, p 0.5), step eps/4"),
    AttackSpec("tifgsm", _tifgsm, "Linf", True, True, 10, "TI-FGSM (gaussian 15x15), step eps/4; RGB only",
               needs_rgb=True),
]}


def attack_names() -> list[str]:
    return list(ATTACKS)


def check_name(name: object) -> AttackSpec:
    if not isinstance(name, str):
        raise TypeError(f"attack must be a name (str) from {attack_names()}, got {type(name).__name__}")
    if name not in ATTACKS:
        raise ValueError(f"attack must be one of {attack_names()}, got {name!r}")
    return ATTACKS[name]


def check_eps(eps: object, name: str = "eps") -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"{name} must be a real number >= 0, got {type(eps).__name__}")
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {eps}")
    return eps


def _check_int(name: str, v: object, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an int >= {lo}, got {type(v).__name__}")
    if v < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {v}")
    return v


@dataclass
class Attack:
    """A ready-to-run attack: ``adv = attack(x, y)``; forward passes are counted in `counter`."""
    name: str
    spec: AttackSpec
    eps: float
    eot: int
    steps: Optional[int]
    seed: int
    torchattack: Any
    counter: ForwardCounter
    model: EOTModel
    options: dict = field(default_factory=dict)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.spec.needs_rgb and x.dim() == 4 and x.shape[1] != 3:
            raise ValueError(f"attack {self.name!r} (torchattacks TIFGSM) supports 3-channel images only, "
                             f"got x with {x.shape[1]} channels")
        if x.numel() == 0:
            return x.clone()
        # contiguous: torchattacks draws random starts with empty_like, so the layout would change the result
        return self.torchattack(x.contiguous(), y).detach()

    @property
    def forward_calls(self) -> int:
        return self.counter.calls

    @property
    def forward_samples(self) -> int:
        return self.counter.samples

    def describe(self) -> dict:
        return {"attack": self.name, "norm": self.spec.norm, "eps": self.eps if self.spec.bounded else None,
                "eot": self.eot, "eot_kind": "apgd_eot_iter" if self.spec.own_eot else "mean_logits",
                "steps": self.steps, "seed": self.seed, "description": self.spec.description,
                "options": {k: v for k, v in self.options.items() if isinstance(v, (int, float, str, bool))}}


def make_attack(name: str, model: torch.nn.Module, eps: float, *, eot: int = 1, steps: Optional[int] = None,
                seed: int = 0, n_classes: int = 10, eot_batch: Optional[bool] = None,
                max_batch: int = DEFAULT_MAX_BATCH, **kw) -> Attack:
    """Build registered attack `name` (see `ATTACKS`) against `model` at L-inf radius `eps`.

    eot: noise draws averaged per gradient (mean of logits, or APGD's eot_iter for `autoattack_rand`);
    steps: iterations (queries for `square`), default per attack (`ATTACKS[name].default_steps`);
    seed: seed of the attacks that take one (AutoAttack, Square); others use the torch global RNG;
    n_classes: number of classes (AutoAttack's targeted parts); eot_batch / max_batch: how `EOTModel` runs
    the eot draws (None: batched when the model allows it; see `EOTModel`); **kw go to the torchattacks
    constructor.
    """
    spec = check_name(name)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    eps = check_eps(eps)
    eot = _check_int("eot", eot, 1)
    seed = _check_int("seed", seed, 0)
    n_classes = _check_int("n_classes", n_classes, 2)
    if steps is None:
        steps = spec.default_steps
    elif spec.default_steps is None:
        raise ValueError(f"steps must be None for attack {name!r} (it has no step count), got {steps!r}")
    else:
        steps = _check_int("steps", steps, 1)
    counter = ForwardCounter(model)
    wrapped = EOTModel(counter, 1 if spec.own_eot else eot, batch=eot_batch, max_batch=max_batch)
    if spec.own_eot:
        kw["eot_iter"] = eot
    ta = spec.build(wrapped, eps, steps, seed, n_classes, **dict(kw))
    return Attack(name, spec, eps, eot, steps, seed, ta, counter, wrapped, dict(kw))
