"""RSE (Liu et al. 2018, "Towards Robust Neural Networks via Random Self-ensemble"): Gaussian noise before
every convolution, and an ensemble of noisy passes at inference. Everything the method is, in one file.

* conversion: ``fastnoise.convert(model, "rse", sigma=0.1, sigma_first=0.2)`` wraps every Conv2d as
  ``Sequential(GaussianNoise(sigma), conv)`` (`fastnoise.nn.GaussianNoise`: fresh N(0, 1) per element and
  call from its own Philox stream; xuanqing94/RobustNet, branch `dev`: noise before every conv, in train
  and eval), the first conv (on the input) with `sigma_first` ("init" level 0.2, the inner convs "inner"
  level 0.1: RobustNet BayesianDefense/train_rse.sh);
* training: RSE's own recipe, the noisy model trained on clean data (recipe "standard": RSE is an
  alternative to adversarial training, Liu et al. 2018 §3; RobustNet trains with cross-entropy on clean
  batches); a config may set ``"recipe": "pgd"`` for PGD-AT of the noisy model;
* evaluation: stochastic, one draw per sample and element; the inference rule is RobustNet's
  `ensemble_infer`, the mean softmax of 20 noisy passes (`fastnoise.nn.MeanSoftmax`), which is what the
  harness attacks; its seed protocol: one draw per attack step, classify with the ensemble;
* cost: nothing beyond the convolutions (elementwise noise is not counted; the ensemble multiplies every
  layer's count by the number of passes when `fastnoise.bitops` is given the deployed model).
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _checks
from ..nn import GaussianNoise, MeanSoftmax
from ._protocol import Evaluation, Method, Option, TrainingRecipe, boolean, integer, number, optional

__all__ = ["METHOD", "RSE", "convert_rse", "ENSEMBLE"]

#: inference passes of the ensemble (RobustNet `acc_under_attack.py`: 20)
ENSEMBLE = 20


class RSE(Method):
    """RSE: see the module docstring."""

    name = "rse"
    description = "RSE (Liu et al. 2018): Gaussian noise before every Conv2d, mean-softmax ensemble at inference"
    looks_for = "torch.nn.Conv2d layers (each gets GaussianNoise before it)"
    options = (
        Option("sigma", 0.1, "noise std added before each inner conv (RobustNet 'inner' level 0.1)", number(lo=0.0)),
        Option("sigma_first", 0.2, "noise std added before the first conv, on the input (RobustNet 'init' level 0.2)",
               number(lo=0.0)),
        Option("skip_first", False, "leave the first Conv2d (in module order) without noise", boolean),
        Option("seed", None, "base seed: the k-th conv's noise uses seed + k (None: random seeds)",
               optional(integer(lo=0, hi=_checks.MAX_SEED))),
    )
    training = TrainingRecipe(recipe="standard", description="clean cross-entropy with the noise on (RSE's own recipe)")
    evaluation = Evaluation(
        stochastic=True, draw="per_sample",
        inference=lambda model: MeanSoftmax(model, ENSEMBLE),
        inference_doc=f"MeanSoftmax: log of the mean softmax of {ENSEMBLE} noisy passes (RobustNet ensemble_infer)",
        seed_protocol=("RobustNet acc_under_attack.py: the attack sees one noise draw per step; the adversarial "
                       "examples are classified by the 20-pass ensemble"))
    example_options = {"sigma": 0.1, "seed": 0}

    def targets(self, model, named, opts):
        # module order of the original convert_rse: for each module (pre-order), its Conv2d children
        ids = {id(m): n for n, m in named.items()}
        out = [""] if isinstance(model, torch.nn.Conv2d) else []
        seen = {id(model)} if out else set()
        for parent in model.modules():
            for child in parent.children():
                if isinstance(child, torch.nn.Conv2d) and id(child) not in seen:
                    seen.add(id(child))
                    out.append(ids[id(child)])
        return out[1:] if opts["skip_first"] else out

    def replace(self, name, conv, index, opts):
        k = index + (1 if opts["skip_first"] else 0)  # the k-th conv of the model
        seed = opts["seed"]
        noise = GaussianNoise(opts["sigma_first"] if k == 0 else opts["sigma"], seed=None if seed is None else seed + k)
        noise.to(conv.weight.device)
        return torch.nn.Sequential(noise, conv)


METHOD = RSE()


def convert_rse(model: torch.nn.Module, sigma: float = 0.1, skip_first: bool = False,
                seed: Optional[int] = None, sigma_first: Optional[float] = None) -> torch.nn.Module:
    """``fastnoise.convert(model, "rse", ...)``: insert `GaussianNoise(sigma)` before every Conv2d
    (``conv -> Sequential(noise, conv)``), in place; the first conv gets `sigma_first` (None: `sigma`).
    skip_first: leave the first Conv2d (in module order) without noise. seed: base seed; conv k uses
    seed + k (None: random seeds)."""
    return METHOD.convert(model, sigma=sigma, skip_first=skip_first, seed=seed,
                          sigma_first=sigma if sigma_first is None else sigma_first)
