"""Inference rules of randomized defenses as modules: the deployed model, which is what gets attacked.

* `MeanSoftmax(model, n)`: ``log(1/n sum_i softmax(f(x; xi_i)))`` over n independent noise draws (RSE's
  ensemble inference: `ensemble_infer` of xuanqing94/RobustNet sums the softmax of n noisy passes, 20 in
  its `acc_under_attack.py`). The output is a log-probability: its argmax is the ensemble's vote by summed
  softmax, and cross-entropy on it is the negative log of the ensemble's probability, so an attack on the
  wrapper attacks the rule as deployed.
"""
from __future__ import annotations

import torch

from .. import _checks

__all__ = ["MeanSoftmax"]


class MeanSoftmax(torch.nn.Module):
    """``log(mean_i softmax(model(x)))`` over `n` forward passes, each with fresh noise (module docstring).

    Shapes: whatever `model` takes -> [N, classes] log-probabilities. ``n = 1`` is ``log_softmax(model(x))``.
    """

    def __init__(self, model: torch.nn.Module, n: int) -> None:
        super().__init__()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.n = _checks.integer("n", n, lo=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(self.model(x), dim=1)
        for _ in range(self.n - 1):
            p = p + torch.softmax(self.model(x), dim=1)
        return (p / self.n).clamp_min(torch.finfo(p.dtype).tiny).log()

    def extra_repr(self) -> str:
        return f"n={self.n}"
