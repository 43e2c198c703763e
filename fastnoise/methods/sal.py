"""SAL + noisy FGSM (seed 003): the Stochastic Augmentation Layer ``y = x + N(0, 1) * exp((x W + B) / 2)``
(Eqs. 2-3) as the first layer of the network, trained with noisy-FGSM adversarial training (§4: uniform
noise in [-eps, eps], then one FGSM step of size eps from the noisy point). Everything the method is,
in one file.

* conversion: ``fastnoise.convert(model, "sal", input_size=[32, 32])`` returns ``Sequential(SAL, model)``
  (`fastnoise.nn.SAL` on the image in [0, 1], before the model's own normalization): one weight and bias
  per input feature C x H x W (the seed learns "a variance for every feature of the input"; the shape is
  the model's input at `input_size`) or, with ``per_feature=False``, per channel; W = 0, B = 2 log(init_std)
  at init;
* training: the "noisy_fgsm" recipe of `fastnoise.adversarial` (alpha = eps by default). The seed trains
  with Adam and a cyclic learning rate; the fastnoise trainer uses SGD (the configs say so);
* evaluation: stochastic, fresh noise per sample and element ("per_sample"), the model itself deployed.
  The seed's protocol: PGD / FGSM / SPSA with one noise draw per forward, no EOT.
"""
from __future__ import annotations

import torch

from .. import _checks
from ..nn import SAL as SALLayer
from ._common import input_channels, probe_input_shapes, size_option
from ._protocol import Evaluation, Method, Option, TrainingRecipe, boolean, integer, number, optional

__all__ = ["METHOD", "SALMethod"]


class SALMethod(Method):
    """SAL + noisy FGSM: see the module docstring."""

    name = "sal"
    description = "SAL + noisy FGSM (seed 003): x + N(0,1)*exp((xW+B)/2) before the network, noisy-FGSM AT"
    looks_for = "a model (the SAL goes in front of it)"
    options = (
        Option("per_feature", True, "one SAL weight and bias per input feature C x H x W (seed 003); False: per channel",
               boolean),
        Option("input_size", [32, 32], "[H, W] of the model's input images (the per-feature SAL's shape)", size_option),
        Option("init_std", 0.1, "the noise std at init (W = 0, B = 2 log(init_std))", number(lo=0.0, lo_open=True)),
        Option("seed", None, "seed of the SAL's noise stream (None: random)", optional(integer(lo=0, hi=_checks.MAX_SEED))),
    )
    training = TrainingRecipe(recipe="noisy_fgsm", description="noisy FGSM: U(-eps, eps) start, one FGSM step of eps")
    evaluation = Evaluation(
        stochastic=True, draw="per_sample",
        seed_protocol="seed 003 §6: PGD / FGSM / SPSA, one noise draw per forward (no EOT), fresh draw to classify")
    example_options = {"seed": 0}

    def targets(self, model, named, opts):
        if any(isinstance(m, SALLayer) for m in model.modules()):
            raise ValueError("the model already holds a SAL layer (convert it once)")
        if opts["per_feature"]:  # the SAL's C x H x W must be the model's input
            probe_input_shapes(model, [""], {"": model}, opts["input_size"])
        return [""]

    def replace(self, name, model, index, opts):
        c = input_channels(model)
        h, w = opts["input_size"]
        layer = SALLayer(c, seed=opts["seed"], init_std=opts["init_std"],
                         feature_shape=(c, h, w) if opts["per_feature"] else None)
        p = next(iter(model.parameters()), None)
        if p is not None:
            layer.to(p.device)
        return torch.nn.Sequential(layer, model)


METHOD = SALMethod()
