"""RPF (Dong and Xu, CVPR 2023, "Adversarial Defense via Random Projection Filters"): a fraction of the
stem conv's filters are random ``N(0, (1/k)^2)`` filters redrawn per batch, trained with the two-draw
PGD-AT loop. Everything the method is, in one file.

* conversion: ``fastnoise.convert(model, "rpf")`` swaps the first Conv2d (module order; `position` picks
  another) for `fastnoise.nn.RPFConv2d`: the last ``round(fraction * out_channels)`` filters random
  (UniSerj/Random-Projection-Filters model/resnet.py: ``rp_out_channel`` 48 of 64, fraction 0.75), the
  learned ones weight-standardized and divided by the kernel size as the code's ``model/layer.py`` Conv2d
  (``standardize=True``; False keeps the original conv's function);
* training: PGD-AT with the code's two draws (train.py: ``random_rp_matrix()`` before the attack and again
  before the update; `_common.TwoDraws`);
* evaluation: stochastic, one draw per forward shared by the batch ("per_batch"), the model itself
  deployed. Its issue #1: PGD-20 60% but EOT-PGD-20 42% on CIFAR-10, which is why the EOT rows are the
  headline.
"""
from __future__ import annotations

import torch

from .. import _checks
from ..nn import RPFConv2d
from ._common import TwoDraws, fraction_option, in_module_order, position_check
from ._protocol import Evaluation, Method, Option, TrainingRecipe, boolean, integer, optional

__all__ = ["METHOD", "RPF"]


def _position(name, v):
    return v if isinstance(v, str) else integer(lo=0)(name, v)


class RPF(Method):
    """RPF: see the module docstring."""

    name = "rpf"
    description = "RPF (Dong & Xu 2023): 75% of the stem conv's filters random N(0, 1/k^2), redrawn per batch; two-draw PGD-AT"
    looks_for = "torch.nn.Conv2d layers with groups=1 (the stem gets random filters)"
    options = (
        Option("fraction", 0.75, "fraction of the filters that are random (code: 48 of 64)", fraction_option),
        Option("standardize", True, "weight-standardize the learned filters as the RPF code's Conv2d", boolean),
        Option("position", 0, "which Conv2d (index in module order, or its name) gets the random filters", _position),
        Option("seed", None, "seed of the layer's noise stream (None: random)", optional(integer(lo=0, hi=_checks.MAX_SEED))),
    )
    training = TrainingRecipe(recipe="pgd", description="PGD-AT, random filters redrawn before the attack and before the update")
    evaluation = Evaluation(
        stochastic=True, draw="per_batch",
        seed_protocol="RPF code evaluate: PGD-20 with one draw per forward (no EOT), classified with a fresh draw")
    example_options = {"seed": 0}

    def targets(self, model, named, opts):
        convs = in_module_order(model, named, (torch.nn.Conv2d,))
        if not convs:
            return []
        return [convs[position_check("position", opts["position"], len(convs), convs)]]

    def replace(self, name, conv, index, opts):
        return RPFConv2d.from_conv(conv, fraction=opts["fraction"], standardize=opts["standardize"], seed=opts["seed"])

    def hooks(self, config):
        return TwoDraws((RPFConv2d,))


METHOD = RPF()
