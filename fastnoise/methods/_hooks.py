"""`Hooks`: how a defense method plugs into the training loop (`fastnoise.train`) without its own loop.

A method returns its Hooks from ``Method.hooks(config)``; the trainer runs them with the caller's own hooks
(`HookList`). One training step:

    before_attack(model)                                   # e.g. CTRW / RPF: draw delta1
    x_adv = recipe attack on (x, y)                        # the config's recipe, noise on (attack_mode)
    resample_noise(model)                                  # e.g. CTRW / RPF: draw delta2 for the update
    r = update(model, net, optimizer, x, x_adv, y)         # NIT: the whole update, from forward passes only
    if r is None:                                          # the default update:
        r = loss(net, x, x_adv, y) or (CE(net(x_adv), y), net(x_adv))    # PNI / RSR: mix clean and adv
        loss += extra_loss(model, x_adv, y, logits)        # e.g. an L1 penalty on noise scales
        zero_grad -> backward -> optimizer.step()
    after_step(model)                                      # projections (e.g. sum(sigma) bounds)

``resample_noise`` runs only when the recipe attacks (eps > 0). At the end of each epoch:
``on_epoch_end(model, epoch, metrics)`` (epoch counts from 1; metrics is the dict logged for that epoch
and may be extended in place). `model` is the bare module, `net` what the trainer calls (the DDP wrapper
under ``--distributed``, else `model`).
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["Hooks", "HookList"]

LossAndLogits = tuple[torch.Tensor, torch.Tensor]


class Hooks:
    """Override what a method needs; every default does nothing (see the module docstring for the order)."""

    def before_attack(self, model: torch.nn.Module) -> None:
        """Before the training attack of each step: e.g. draw the noise the attack sees (CTRW's delta1)."""

    def resample_noise(self, model: torch.nn.Module) -> None:
        """Between the attack and the update: draw fresh noise (e.g. CTRW: attack with delta1, update with delta2)."""

    def loss(self, net: torch.nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
             y: torch.Tensor) -> Optional[LossAndLogits]:
        """The training loss of one step from the clean batch `x` and the training batch `x_adv` (the
        recipe's adversarial examples; `x` itself for the "standard" recipe): ``(loss, logits)`` with
        `logits` the outputs the step's training accuracy is measured on, or None for the default
        ``CE(net(x_adv), y)``. E.g. PNI / RSR: ``a * CE(net(x), y) + (1 - a) * CE(net(x_adv), y)``."""
        return None

    def extra_loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                   logits: torch.Tensor) -> Optional[torch.Tensor]:
        """A scalar added to the training loss (e.g. an L1 penalty on noise scales), or None."""
        return None

    def update(self, model: torch.nn.Module, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
               x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> Optional[LossAndLogits]:
        """Replace the whole update of one step (forward, loss, backward and the optimizer step), or None
        for the default one. A method whose gradient is not backpropagation (NIT's likelihood-ratio
        estimator: forward passes only) sets ``p.grad`` itself and calls ``optimizer.step()``; it returns
        ``(loss, logits)`` for the step's metrics (detached is fine). Under DDP it must all-reduce its
        gradients itself (the trainer's backward, which DDP hooks, does not run)."""
        return None

    def after_step(self, model: torch.nn.Module) -> None:
        """After each optimizer step: parameter constraints / projections (e.g. clamp sigma to bounds)."""

    def on_epoch_end(self, model: torch.nn.Module, epoch: int, metrics: dict) -> None:
        """After each epoch's validation, before its checkpoint is written."""


class HookList(Hooks):
    """Several hooks run in order; extra losses add up. `loss` and `update` define the step, so at most one
    of the hooks may override each (a ValueError at construction otherwise: the step would be ambiguous)."""

    def __init__(self, *hooks: Optional[Hooks]) -> None:
        flat: list[Hooks] = []
        for h in hooks:
            if isinstance(h, HookList):
                flat.extend(h.hooks)
            elif h is not None:
                if not isinstance(h, Hooks):
                    raise TypeError(f"hooks must be fastnoise Hooks instances, got {type(h).__name__}")
                flat.append(h)
        self.hooks = flat
        self._owner = {}
        for what in ("loss", "update"):
            owners = [h for h in flat if getattr(type(h), what) is not getattr(Hooks, what)]
            if len(owners) > 1:
                raise ValueError(f"two hooks define the training {what} ({', '.join(type(h).__name__ for h in owners)}): "
                                 f"combine them into one")
            self._owner[what] = owners[0] if owners else None

    def before_attack(self, model):
        for h in self.hooks:
            h.before_attack(model)

    def resample_noise(self, model):
        for h in self.hooks:
            h.resample_noise(model)

    def _one(self, what: str, *args):
        owner = self._owner[what]
        return None if owner is None else getattr(owner, what)(*args)

    def loss(self, net, x, x_adv, y):
        return self._one("loss", net, x, x_adv, y)

    def extra_loss(self, model, x, y, logits):
        total = None
        for h in self.hooks:
            e = h.extra_loss(model, x, y, logits)
            if e is not None:
                total = e if total is None else total + e
        return total

    def update(self, model, net, optimizer, x, x_adv, y):
        return self._one("update", model, net, optimizer, x, x_adv, y)

    def after_step(self, model):
        for h in self.hooks:
            h.after_step(model)

    def on_epoch_end(self, model, epoch, metrics):
        for h in self.hooks:
            h.on_epoch_end(model, epoch, metrics)
