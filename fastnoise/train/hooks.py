"""`Hooks`: how a defense method plugs into the training loop without its own loop."""
from __future__ import annotations

from typing import Optional

import torch


class Hooks:
    """Override what a method needs; every default does nothing.

    Call order per step: attack generation -> ``resample_noise(model)`` -> forward on the training
    input -> loss (+ ``extra_loss``) -> backward -> optimizer step -> ``after_step(model)``. At the end
    of each epoch: ``on_epoch_end(model, epoch, metrics)`` (epoch counts from 1; metrics is the dict
    logged for that epoch and may be extended in place). `model` is the bare module (never the DDP
    wrapper).
    """

    def extra_loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                   logits: torch.Tensor) -> Optional[torch.Tensor]:
        """A scalar added to the training loss (e.g. an L1 penalty on noise scales), or None."""
        return None

    def after_step(self, model: torch.nn.Module) -> None:
        """After each optimizer step: parameter constraints / projections (e.g. clamp sigma to bounds)."""

    def resample_noise(self, model: torch.nn.Module) -> None:
        """Between the attack and the update: draw fresh noise (e.g. CTRW: attack with delta1, update with delta2)."""

    def on_epoch_end(self, model: torch.nn.Module, epoch: int, metrics: dict) -> None:
        """After each epoch's validation, before its checkpoint is written."""


class HookList(Hooks):
    """Several hooks run in order; extra losses add up."""

    def __init__(self, *hooks: Hooks) -> None:
        self.hooks = [h for h in hooks if h is not None]

    def extra_loss(self, model, x, y, logits):
        total = None
        for h in self.hooks:
            e = h.extra_loss(model, x, y, logits)
            if e is not None:
                total = e if total is None else total + e
        return total

    def after_step(self, model):
        for h in self.hooks:
            h.after_step(model)

    def resample_noise(self, model):
        for h in self.hooks:
            h.resample_noise(model)

    def on_epoch_end(self, model, epoch, metrics):
        for h in self.hooks:
            h.on_epoch_end(model, epoch, metrics)
