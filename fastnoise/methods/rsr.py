"""RSR (seed 004, "Robust Sparse Regularization"): channel-wise noise injection (CNI) on every conv and
Linear, the ensemble loss with a lasso penalty, and pruning after training. Everything the method is,
in one file.

* conversion: ``fastnoise.convert(model, "rsr")`` swaps every Conv2d / Linear for `fastnoise.nn.CNIConv2d`
  / `CNILinear`: ``W~ = W + alpha * eta``, ``eta ~ N(0, var(W))`` with var(W) computed at run time, alpha
  ``[q, 1, 1, 1]`` per output channel, trainable, init 0.25 (seed 004 §3.2; no public RSR code: PNI's
  channel-wise default); one draw per forward shared by the batch;
* training: PGD-AT (seed 004 §4: PGD-7, eps 8/255) with the ensemble loss of Eq. 6,
  ``a * CE(clean) + (1 - a) * CE(adv) + lambda * sum_l ||W_l||_1`` (a = 0.5; lambda 1e-5 for ResNet-18 /
  VGG-16, 5e-5 for ResNet-20), alpha excluded from weight decay as PNI, whose update rule the seed follows;
* pruning (§3.4, Eqs. 7-8): at the end of epoch `prune_epoch` (default: the last one) every weight with
  ``|w| < gamma`` is set to 0 and gets no noise from then on (`CNIConv2d.prune_`: the ``keep`` mask); the
  epochs after it fine-tune the pruned network (the mask is re-applied after every step, so pruned weights
  stay 0). The epoch's metrics record ``sparsity`` (fraction of conv / Linear weights exactly 0);
* ablations of Table 1: ``variant="cni"`` (lambda = 0: CNI only), ``variant="lasso"`` (lasso only: the
  layers' noise is off, a deterministic network);
* evaluation: stochastic ("per_batch" weight draws), the model itself deployed; deterministic for
  ``variant="lasso"``.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _checks
from ..nn import CNIConv2d, CNILinear
from ._common import EnsembleLoss, in_module_order, l1_of
from ._hooks import Hooks
from ._protocol import Evaluation, Method, Option, TrainingRecipe, choice, integer, number, optional

__all__ = ["METHOD", "RSR", "prune", "sparsity", "VARIANTS"]

KINDS = (CNIConv2d, CNILinear)
VARIANTS = ("rsr", "cni", "lasso")


def _layers(model: torch.nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, KINDS)]


@torch.no_grad()
def sparsity(model: torch.nn.Module) -> float:
    """Fraction of the weights of the model's CNI layers (every conv and Linear) that are exactly 0."""
    layers = _layers(model)
    total = sum(m.weight.numel() for m in layers)
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    return zeros / total if total else 0.0


@torch.no_grad()
def prune(model: torch.nn.Module, gamma: float) -> dict:
    """Seed 004 Eqs. 7-8 on every CNI layer of `model`: ``w <- 0 where |w| < gamma``, and no noise on the
    pruned weights from then on. Returns ``{"gamma", "sparsity", "layers": {name: sparsity}}``."""
    gamma = _checks.number("gamma", gamma, lo=0.0)
    per = {}
    for n, m in model.named_modules():
        if isinstance(m, KINDS):
            m.prune_(gamma)
            per[n] = float((m.weight == 0).float().mean())
    if not per:
        raise ValueError(f"prune: {type(model).__name__} has no CNI layers (convert it with 'rsr' first)")
    return {"gamma": gamma, "sparsity": sparsity(model), "layers": per}


class RSRHooks(EnsembleLoss):
    """Ensemble loss + lasso (`EnsembleLoss` with the L1 penalty), pruning at `prune_epoch`, the pruned
    weights kept at 0 during the fine-tune epochs, sparsity in the epoch metrics."""

    def __init__(self, clean_weight: float, lam: float, gamma: float, prune_epoch: int) -> None:
        super().__init__(clean_weight, KINDS, penalty=(lambda m: lam * l1_of(_layers(m))) if lam > 0 else None)
        self.gamma = gamma
        self.prune_epoch = prune_epoch

    def after_step(self, model):
        with torch.no_grad():
            for m in _layers(model):
                if m.keep is not None:
                    m.weight.mul_(m.keep.to(m.weight.dtype))

    def on_epoch_end(self, model, epoch, metrics):
        if self.prune_epoch and epoch == self.prune_epoch:
            r = prune(model, self.gamma)
            metrics["pruned_gamma"] = r["gamma"]
        metrics["sparsity"] = sparsity(model)


class RSR(Method):
    """RSR: see the module docstring."""

    name = "rsr"
    description = "RSR (seed 004): channel-wise weight noise on every conv / Linear, clean+adv+lasso loss, pruning below gamma"
    looks_for = "torch.nn.Conv2d and torch.nn.Linear layers"
    options = (
        Option("variant", "rsr", "'rsr' (CNI + lasso), 'cni' (CNI only, lambda = 0), 'lasso' (lasso only, no noise)",
               choice(*VARIANTS)),
        Option("alpha_init", 0.25, "initial channel-wise noise scale alpha", number(lo=0.0)),
        Option("lam", 1e-5, "lasso coefficient lambda of Eq. 6 (seed: 1e-5 ResNet-18 / VGG-16, 5e-5 ResNet-20)",
               number(lo=0.0)),
        Option("clean_weight", 0.5, "a of Eq. 6: a*CE(clean) + (1-a)*CE(adv) (seed: 0.5)", number(lo=0.0, hi=1.0)),
        Option("gamma", 1e-3, "pruning threshold: weights with |w| < gamma become 0 (Eqs. 7-8)", number(lo=0.0)),
        Option("prune_epoch", None, "prune at the end of this epoch, fine-tune after it (None: the last epoch; "
               "0: never)", optional(integer(lo=0))),
        Option("seed", None, "base seed: layer k's noise uses seed + k (None: random seeds)",
               optional(integer(lo=0, hi=_checks.MAX_SEED))),
    )
    training = TrainingRecipe(recipe="pgd", steps=7, description="PGD-7 AT, a*clean + (1-a)*adv + lambda*L1, prune at the end")
    evaluation = Evaluation(
        stochastic=True, draw="per_batch",
        seed_protocol="seed 004 §4: PGD-7 / FGSM with the inference noise on (one draw per forward), no EOT")
    example_options = {"seed": 0}

    def targets(self, model, named, opts):
        return in_module_order(model, named, (torch.nn.Conv2d, torch.nn.Linear))

    def replace(self, name, module, index, opts):
        seed = None if opts["seed"] is None else opts["seed"] + index
        if isinstance(module, torch.nn.Linear):
            layer = CNILinear.from_linear(module, alpha_init=opts["alpha_init"], seed=seed)
        else:
            layer = CNIConv2d.from_conv(module, alpha_init=opts["alpha_init"], seed=seed)
        if opts["variant"] == "lasso":
            layer.set_noise_mode("off")
            layer.alpha.requires_grad_(False)
        return layer

    def hooks(self, config):
        opts = self.check_options(getattr(config, "method_options", {}) or {})
        lam = 0.0 if opts["variant"] == "cni" else opts["lam"]
        pe = opts["prune_epoch"]
        prune_epoch = int(getattr(config, "epochs", 0)) if pe is None else pe
        return RSRHooks(opts["clean_weight"], lam, opts["gamma"], prune_epoch)


METHOD = RSR()
