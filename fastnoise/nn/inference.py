"""Inference rules of randomized defenses as modules: the deployed model, which is what gets attacked.

* `MeanSoftmax(model, n)`: ``log(1/n sum_i softmax(f(x; xi_i)))`` over n independent noise draws (RSE's
  ensemble inference: `ensemble_infer` of xuanqing94/RobustNet sums the softmax of n noisy passes, 20 in
  its `acc_under_attack.py`). The output is a log-probability: its argmax is the ensemble's vote by summed
  softmax, and cross-entropy on it is the negative log of the ensemble's probability, so an attack on the
  wrapper attacks the rule as deployed.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _checks
from .draws import DEFAULT_MAX_BATCH, draw_outputs, merge_groups

__all__ = ["MeanSoftmax", "draws_per_forward"]


def draws_per_forward(model: torch.nn.Module) -> int:
    """Independent noise draws one forward of `model` averages: ``model.draws_per_forward`` when the module
    declares it (`MeanSoftmax`: n), else 1. The evaluation counts EOT in noise draws per attack gradient
    (`fastnoise.attacks.evaluate`: an ensemble of n draws gets ceil(eot / n) passes per gradient)."""
    k = getattr(model, "draws_per_forward", 1)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{type(model).__name__}.draws_per_forward must be an int >= 1, got {k!r}")
    return k


class MeanSoftmax(torch.nn.Module):
    """``log(mean_i softmax(model(x)))`` over `n` forward passes, each with fresh noise (module docstring).

    Shapes: whatever `model` takes -> [N, classes] log-probabilities. ``n = 1`` is ``log(softmax(model(x)))``.
    The n passes run batched when the model allows it (`fastnoise.nn.draws.draw_outputs`; batch: None auto,
    True, False; max_batch: most samples per forward), with the values of n sequential passes.
    """

    def __init__(self, model: torch.nn.Module, n: int, *, batch: Optional[bool] = None,
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        super().__init__()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if batch is not None and not isinstance(batch, bool):
            raise TypeError(f"batch must be None (auto), True or False, got {batch!r}")
        self.model = model
        self.n = _checks.integer("n", n, lo=1)
        self.batch = batch
        self.max_batch = _checks.integer("max_batch", max_batch, lo=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = draw_outputs(self.model, x, self.n, batch=self.batch, max_batch=self.max_batch)
        p = torch.softmax(outs[:, 0], dim=2)  # dim 1 of each [B, classes, ...] pass
        for j in range(1, self.n):  # the order of the sequential sum
            p = p + torch.softmax(outs[:, j], dim=2)
        return merge_groups((p / self.n).clamp_min(torch.finfo(p.dtype).tiny).log())

    @property
    def draws_per_forward(self) -> int:
        """Noise draws averaged by one forward (n): EOT counts them (`draws_per_forward`)."""
        return self.n

    def extra_repr(self) -> str:
        return f"n={self.n}"
