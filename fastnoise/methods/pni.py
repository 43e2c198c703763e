"""PNI (He, Rakin and Fan, CVPR 2019, "Parametric Noise Injection"): trainable Gaussian noise on the
weights (or activations) of every conv and Linear, trained with ``0.5 * clean + 0.5 * adversarial``
PGD-AT. The baseline of seeds 001 and 004. Everything the method is, in one file.

* conversion: ``fastnoise.convert(model, "pni")`` swaps every Conv2d for `fastnoise.nn.PNIConv2d` and
  every Linear for `fastnoise.nn.PNILinear` (elliothe/CVPR_2019_PNI code/models/noise_layer.py: noise on
  every conv and the final Linear): site "weight" ``W + alpha * std(W) * eta`` (std of the whole tensor,
  detached; one draw per forward shared by the batch, train and eval), or the activation variants
  "input" / "output"; alpha per "layer", "channel" (default) or "element", init 0.25;
* training: PGD-AT (PNI code/main.py: PGD-7, step 0.01, eps 0.031 on CIFAR) with the loss
  ``0.5 CE(clean) + 0.5 CE(adv)`` and alpha excluded from weight decay (`_common.EnsembleLoss`);
* evaluation: stochastic; the weight noise is one draw per forward shared by the batch ("per_batch",
  the activation variants draw per sample); the model itself is deployed (no ensemble).
"""
from __future__ import annotations

import torch

from .. import _checks
from ..nn import PNIConv2d, PNILinear
from ._common import EnsembleLoss, in_module_order
from ._protocol import Evaluation, Method, Option, TrainingRecipe, boolean, choice, integer, number, optional

__all__ = ["METHOD", "PNI"]

KINDS = (PNIConv2d, PNILinear)


class PNI(Method):
    """PNI: see the module docstring."""

    name = "pni"
    description = "PNI (He et al. 2019): trainable noise W + alpha*std(W)*eta on every conv and Linear, 0.5 clean + 0.5 adv PGD-AT"
    looks_for = "torch.nn.Conv2d and torch.nn.Linear layers"
    options = (
        Option("site", "weight", "where the noise goes: 'weight' (PNI-W), 'input' or 'output' (activation variants)",
               choice("weight", "input", "output")),
        Option("granularity", "channel", "alpha per 'layer', output 'channel' or weight 'element'",
               choice("layer", "channel", "element")),
        Option("alpha_init", 0.25, "initial noise scale alpha (PNI code: 0.25)", number(lo=0.0)),
        Option("linear", True, "also convert the Linear layers (PNI: the final classifier too)", boolean),
        Option("clean_weight", 0.5, "a of the loss a*CE(clean) + (1-a)*CE(adv) (PNI code: 0.5)", number(lo=0.0, hi=1.0)),
        Option("seed", None, "base seed: layer k's noise uses seed + k (None: random seeds)",
               optional(integer(lo=0, hi=_checks.MAX_SEED))),
    )
    training = TrainingRecipe(recipe="pgd", steps=7, description="PGD-7 AT, loss 0.5 clean + 0.5 adv, alpha without weight decay")
    evaluation = Evaluation(
        stochastic=True, draw="per_batch",
        seed_protocol=("PNI code/main.py: PGD with one noise draw per forward (no EOT), classified with a fresh draw"))
    example_options = {"seed": 0}

    def check_options(self, options):
        opts = super().check_options(options)
        if opts["granularity"] == "element" and opts["site"] != "weight":
            raise ValueError(f"method 'pni': granularity 'element' needs site 'weight' (the element-wise alpha has "
                             f"the weight's shape), got site {opts['site']!r}")
        return opts

    def targets(self, model, named, opts):
        kinds = (torch.nn.Conv2d, torch.nn.Linear) if opts["linear"] else (torch.nn.Conv2d,)
        return in_module_order(model, named, kinds)

    def replace(self, name, module, index, opts):
        seed = None if opts["seed"] is None else opts["seed"] + index
        kw = dict(site=opts["site"], granularity=opts["granularity"], alpha_init=opts["alpha_init"], seed=seed)
        if isinstance(module, torch.nn.Linear):
            return PNILinear.from_linear(module, **kw)
        return PNIConv2d.from_conv(module, **kw)

    def hooks(self, config):
        opts = self.check_options(getattr(config, "method_options", {}) or {})
        return EnsembleLoss(opts["clean_weight"], KINDS)


METHOD = PNI()
