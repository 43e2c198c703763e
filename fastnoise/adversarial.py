"""Adversarial examples for training: L-inf PGD, noisy FGSM, and the training recipes built on them.

This module sits below the methods and the trainer (docs/architecture.md): a method's own recipe
(e.g. NENNI's adversarial fine-tuning) and `fastnoise.train` both generate their training attacks here.
The robust *evaluation* attacks are torchattacks (`fastnoise.attacks`), never these.

    x_adv = pgd(model, x, y, eps=8/255, alpha=2/255, steps=10, start=uniform_rows(x.shape, seed, 0, 1, x.device))
    recipe = RECIPES["noisy_fgsm"]; x_adv = recipe.generate(model, x, y, eps, recipe.alpha(eps, steps, None), steps, start)

Inputs are images in [0, 1]; every generator returns a detached tensor in [0, 1].
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F

from .nn import noise_modules

__all__ = ["pgd", "noisy_fgsm", "attack_mode", "uniform_rows", "Recipe", "RECIPES", "recipe_names", "get_recipe"]


@contextlib.contextmanager
def attack_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """eval() (BN uses running stats, nothing updates) with the noise of the deployed model on:
    layers in noise mode "train" inject noise while the attack is generated, as they do in the update."""
    was_training = model.training
    switched = [m for m in noise_modules(model) if m.noise_mode == "train"]
    model.eval()
    for m in switched:
        m.noise_mode = "on"
    try:
        yield model
    finally:
        for m in switched:
            m.noise_mode = "train"
        model.train(was_training)


def uniform_rows(shape: torch.Size, seed: int, rank: int, world: int, device: torch.device) -> torch.Tensor:
    """U(-1, 1) of shape [B, ...] for this rank: rows rank::world of the global batch [B*world, ...]
    (so N ranks x B/N draw the random starts of one process with batch B)."""
    g = torch.Generator(device=device).manual_seed(seed)
    full = torch.rand((shape[0] * world,) + tuple(shape[1:]), generator=g, device=device)
    return full[rank::world].mul_(2).sub_(1)


def pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
        start: Optional[torch.Tensor] = None) -> torch.Tensor:
    """L-inf PGD on cross-entropy from ``x + eps * start`` (start in [-1, 1], None: from x); inputs in [0, 1].

    Madry et al. 2018: ``x <- clip_[x-eps, x+eps] ∩ [0,1] (x + alpha * sign(grad CE))``, `steps` times.
    """
    if eps == 0 or steps == 0:
        return x.detach()
    x = x.detach()
    x_adv = x if start is None else (x + eps * start).clamp(0, 1)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def noisy_fgsm(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float,
               noise: torch.Tensor) -> torch.Tensor:
    """Seed 003: ``x0 = clip(x + eps * noise)`` with noise ~ U(-1, 1), then one FGSM step of size `alpha`
    from x0 (bounded around the noisy point, not projected back onto the eps-ball of x)."""
    x0 = (x.detach() + eps * noise).clamp(0, 1).requires_grad_(True)
    loss = F.cross_entropy(model(x0), y)
    (grad,) = torch.autograd.grad(loss, x0)
    return (x0.detach() + alpha * grad.sign()).clamp(0, 1)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A training recipe: how the batch a model is updated on is made from (x, y).

    generate(model, x, y, eps, alpha, steps, start) -> x_train, or None to train on x (clean). `start` is
    U(-1, 1) noise of x's shape (the random start). default_alpha(eps, steps) gives the step size when
    the config does not set one (None: the data set's default, or 2.5 eps / steps).
    """
    name: str
    description: str
    generate: Optional[Callable[..., torch.Tensor]]
    default_alpha: Callable[[float, int], Optional[float]] = lambda eps, steps: None

    @property
    def attacks(self) -> bool:
        return self.generate is not None

    def alpha(self, eps: float, steps: int, alpha: Optional[float]) -> Optional[float]:
        return alpha if alpha is not None else self.default_alpha(eps, steps)


def _pgd(model, x, y, eps, alpha, steps, start):
    return pgd(model, x, y, eps, alpha, steps, start)


def _noisy_fgsm(model, x, y, eps, alpha, steps, start):
    return noisy_fgsm(model, x, y, eps, alpha, start)


#: the training recipes, by name (`fastnoise.train.TrainConfig.recipe`)
RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("standard", "clean cross-entropy (no attack)", None),
    Recipe("pgd", "Madry PGD-AT: L-inf PGD from a uniform random start, `steps` steps of `alpha`", _pgd),
    Recipe("noisy_fgsm", "seed 003: uniform noise in [-eps, eps], then one FGSM step of `alpha` (default eps) "
           "from the noisy point", _noisy_fgsm, default_alpha=lambda eps, steps: eps),
)}


def recipe_names() -> list[str]:
    return list(RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`; ValueError naming the valid ones otherwise."""
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {recipe_names()}, got {name!r}")
    return RECIPES[name]
