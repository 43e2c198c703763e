"""CTRW (seed 001, "Constrained Trainable Random Weight"): the input of one conv is multiplied by a random
weight ``mu + sigma * delta`` (mu, sigma trainable per element of C x H x W), ``sum(sigma)`` is kept in
``[A, B]`` (A: Lemma 1, B: Lemma 2) after every step, and the network is trained by the black-box
adversarial training of Algorithm 1 (attack with delta1, update with delta2). Everything the method is,
in one file.

* conversion: ``fastnoise.convert(model, "ctrw", position=0, input_size=[32, 32])`` swaps the
  `position`-th Conv2d (module order; default 0, the first conv: seed Fig. 3d finds it best; a name is
  accepted too) for `fastnoise.nn.CTRWConv2d` (the random weight on its in-channels, Table 4's best
  site), mu = sigma = 1 at init (Xz-As/Constrained_Random_Adv `torch.ones(shape)`); the shape C x H x W is
  found by one probe forward at `input_size`. One delta per forward shared by the batch.
* sites (`site`, seed Table 4 "Position Study" and §4.3 "Position of CTRW"): "in" (default: the seed's
  method and best site, the random weight on the conv's input, per element of C x H x W), "out" (on its
  output, per element of N x H' x W'), "both" (one on each, drawn together), "filter" (on the weight,
  ``W * (mu + sigma delta)``, weight-shaped). The seed gives no shapes for the other sites; the code's
  per-element convention is kept (`fastnoise.nn.CTRWConv2d`). The bounds below apply to the single-site
  cases "in", "out" and "filter" unchanged (Lemma 1 is about two draws of the random weight, wherever it
  sits; Lemma 2's B is measured through the network, and the random weight perturbs the conv's output
  linearly in sigma at all three sites); "both" has two random weights and no single sum(sigma), so it
  takes ``constraint="none"`` only (docs/design-notes.md).
* bounds (`bounds`): computed from the network on the first training batch and kept in the layer's
  ``bounds`` buffer (float64 [A, B], saved with the weights):

  - A, Lemma 1 Eq. 10: ``A = (eps_r' - sum(mu)) / (alpha * sum|W^r[1]|)`` with ``W^r[i] = mu + |sigma| * delta_i``
    two draws, ``eps_r' = eps_r * ||W^r[1]||_2 ||W^r[2]||_2``, alpha < 0 (seed §3: |alpha| = 1e-3 for
    CIFAR's 3 x 32 x 32; default: scaled to the input size, `scaled_alpha`; eps_r = o(1), default 0). At init (mu = sigma = 1) A ~ 1 / (|alpha| E|1 + delta|) ~ 857 for any size,
    the seed's "A ~ 1/|alpha| = 1000";
  - B, Lemma 2 Eq. 13: ``sum(sigma') <= eps_y / (x^{n-1} . W^n beta)`` with sigma' the random weight mapped
    to the input of the last Linear (Eqs. 11-12: sigma' proportional to sigma), turned into a bound on
    sum(sigma) by that proportionality: ``B = eps_y / (beta * S) * sum|sigma| / sum(sigma')`` where
    S = mean over the batch of ``|x^{n-1} . W^n_yhat|`` (noise off, yhat its prediction) and sigma' is
    measured: ``sum(sigma') = d * sum_nj std_k x^{n-1}_nj(delta_k) / sum_nj |x^{n-1}_nj|`` over `draws`
    noisy passes (the relative std of the d penultimate features). beta = 1e-2 (seed §3); eps_y is not
    given by the seed (default 1.0, one logit). See docs/design-notes.md for this reading of the lemmas.
  - enforced after every optimizer step (Algorithm 1 line 10; §2.1 "added by the average bias when
    sum(sigma) is lower than the lower bound", the same for the upper bound): `CTRWConv2d.constrain_`,
    the projection that shifts every sigma by one common amount (clamped at 0) so the sum lands on the
    violated bound. When B < A the interval is [A, A] and the epoch metrics say so (``ctrw_infeasible``).
* ablations (Table 1): ``constraint="none"`` (no projection: the seed observes sigma -> 0+),
  ``constraint="fixed"`` (sigma fixed at A / m per element, not trained); ``lower`` / ``upper`` replace
  the computed bounds (e.g. the code's ``lb = 2048``).
* training: PGD-AT (seed §3: PGD-10, 8/255, step 2/255) with the two-draw protocol of Algorithm 1
  (`_common.TwoDraws`: delta1 fixed for the attack, a fresh delta2 for the update);
* evaluation: stochastic, one draw per forward shared by the batch ("per_batch"), the model itself
  deployed. The seed's protocol, Algorithm 2 (attack with one fixed delta1, classify with delta2), is
  `algorithm2`; `fastnoise eval` attacks the deployed model (EOT, AutoAttack rand) beside its own
  labelled seed-protocol rows.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .. import _checks
from ..nn import CTRWConv2d
from ..nn.noise_conv import CTRW_SITES
from ._common import TwoDraws, in_module_order, position_check, probe_input_shapes, size_option
from ._protocol import Evaluation, Method, Option, TrainingRecipe, choice, integer, number, optional

__all__ = ["METHOD", "CTRW", "bounds", "ctrw_layer", "algorithm2", "CONSTRAINTS", "CTRW_SITES", "scaled_alpha"]

CONSTRAINTS = ("bounds", "none", "fixed")


def ctrw_layer(model: torch.nn.Module) -> CTRWConv2d:
    """The CTRW layer of a converted model (ValueError if there is none or several)."""
    found = [m for m in model.modules() if isinstance(m, CTRWConv2d)]
    if len(found) != 1:
        raise ValueError(f"expected one CTRWConv2d in {type(model).__name__}, found {len(found)}")
    return found[0]


def _last_linear(model: torch.nn.Module) -> torch.nn.Module:
    last = None
    for m in model.modules():
        w = getattr(m, "weight", None)
        if isinstance(m, torch.nn.Linear) or (hasattr(m, "in_features") and isinstance(w, torch.Tensor) and w.dim() == 2):
            last = m
    if last is None:
        raise ValueError(f"CTRW's upper bound (Lemma 2) needs the last Linear layer W^n: {type(model).__name__} has none")
    return last


def _draws(sigma: torch.Tensor, mu: torch.Tensor, g: torch.Generator, k: int) -> list[torch.Tensor]:
    return [mu + sigma * torch.randn(mu.shape, generator=g, dtype=torch.float64) for _ in range(k)]


#: the seed's alpha (§3, |alpha| = 1e-3) and the size of sigma it was chosen for (CIFAR: 3 x 32 x 32)
SEED_ALPHA, SEED_SIZE = -1e-3, 3 * 32 * 32


def scaled_alpha(m: int) -> float:
    """alpha for a random weight of m elements: ``-1e-3 * 3072 / m`` (-1e-3 on CIFAR-10's 3 x 32 x 32).

    A ~ 1 / (|alpha| E|1 + delta|) whatever m (Lemma 1), so the seed's alpha puts a mean sigma of A / m ~ 0.3
    on each CIFAR input element but ~ 14 on an 8 x 8 digit, where the input drowns in the noise (the quick
    leaderboard measured 13% clean accuracy with it). Scaling alpha by 3072 / m keeps the seed's per-element
    sigma at every input size (configs/digits_ctrw.json: -0.048 for m = 64); design note 54."""
    m = _checks.integer("m", m, lo=1)
    return SEED_ALPHA * SEED_SIZE / m


@torch.no_grad()
def lower_bound(layer: CTRWConv2d, alpha: float = -1e-3, eps_r: float = 0.0, seed: int = 0) -> float:
    """A of Lemma 1 (Eq. 10) for the layer's current mu and sigma (see the module docstring)."""
    alpha = _checks.number("alpha", alpha)
    if not alpha < 0:
        raise ValueError(f"alpha must be < 0 (Lemma 1), got {alpha!r}")
    mu = layer.mu.detach().double().cpu()
    sigma = layer.sigma.detach().double().abs().cpu()
    g = torch.Generator().manual_seed(int(seed))
    w1, w2 = _draws(sigma, mu, g, 2)
    eps_rp = float(eps_r) * float(w1.norm()) * float(w2.norm())
    return max(0.0, (eps_rp - float(mu.sum())) / (alpha * float(w1.abs().sum())))


@torch.no_grad()
def upper_bound(model: torch.nn.Module, layer: CTRWConv2d, x: torch.Tensor, eps_y: float = 1.0, beta: float = 1e-2,
                draws: int = 8) -> dict:
    """B of Lemma 2 (Eq. 13) on the batch `x` (see the module docstring); returns B and its terms."""
    head = _last_linear(model)
    feats = []
    h = head.register_forward_pre_hook(lambda mod, args: feats.append(args[0].detach().flatten(1).double()))
    was, mode, resample = model.training, layer.noise_mode, layer.resample_mode
    state = layer.stream.state.clone()
    try:
        model.eval()
        layer.noise_mode = "off"
        logits = model(x)
        mean_feat = feats.pop()
        yhat = logits.argmax(1)
        w = head.weight.detach().double()
        s = float((mean_feat * w[yhat]).sum(1).abs().mean())
        layer.noise_mode, layer.resample_mode = "on", "forward"
        for _ in range(draws):
            model(x)
        noisy = torch.stack(feats[-draws:])  # [draws, N, d]
    finally:
        h.remove()
        layer.noise_mode, layer.resample_mode = mode, resample
        layer.stream.state.copy_(state)  # the calibration does not move the training noise stream
        model.train(was)
    d = mean_feat.shape[1]
    sum_sigma_p = d * float(noisy.std(0).sum()) / max(float(mean_feat.abs().sum()), 1e-30)
    sum_sigma = float(layer.sigma.detach().abs().sum())
    b_prime = float(eps_y) / (float(beta) * max(s, 1e-30))
    b = b_prime * sum_sigma / max(sum_sigma_p, 1e-30)
    return {"B": b, "sum_sigma_prime_bound": b_prime, "S": s, "sum_sigma_prime": sum_sigma_p, "sum_sigma": sum_sigma,
            "features": d}


def bounds(model: torch.nn.Module, x: torch.Tensor, *, alpha: float = -1e-3, eps_r: float = 0.0, eps_y: float = 1.0,
           beta: float = 1e-2, draws: int = 8, seed: int = 0) -> dict:
    """A (Lemma 1) and B (Lemma 2) of the CTRW layer of `model`, from the network and the batch `x`
    (images in [0, 1], [N, C, H, W]). Returns ``{"A", "B", ...terms}``; does not change the model."""
    layer = ctrw_layer(model)
    out = {"A": lower_bound(layer, alpha, eps_r, seed), "m": layer.sigma.numel()}
    out.update(upper_bound(model, layer, x, eps_y, beta, draws))
    return out


@torch.no_grad()
def _classify(model, x):
    return model(x).argmax(1)


def algorithm2(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
               seed: int = 0) -> dict:
    """Seed 001 Algorithm 2 on one batch: draw delta1, PGD-`steps` (random start) against ``h(., delta1)``
    with delta1 fixed, draw delta2, classify ``h(x_adv, delta2)``. Returns clean / robust accuracy (the
    clean pass uses delta2 too). The seed's protocol, labelled as such: an attack that sees one draw."""
    from ..adversarial import attack_mode, pgd, uniform_rows
    layer = ctrw_layer(model)
    mode = layer.resample_mode
    try:
        layer.resample_mode = "manual"
        with attack_mode(model):
            layer.resample()  # delta1
            start = uniform_rows(x.shape, seed, 0, 1, x.device)
            x_adv = pgd(model, x, y, eps, alpha, steps, start)
            layer.resample()  # delta2
            robust = float((_classify(model, x_adv) == y).float().mean())
            clean = float((_classify(model, x) == y).float().mean())
    finally:
        layer.resample_mode = mode
    return {"clean": clean, "robust": robust, "n": int(len(y)), "protocol": "seed 001 Algorithm 2 (delta1 attack, delta2 classify)"}


class CTRWHooks(TwoDraws):
    """Algorithm 1: the two draws (`TwoDraws`), the bounds computed on the first batch, the projection of
    sigma after every step (or the fixed-std / unconstrained ablations), sigma's statistics per epoch."""

    def __init__(self, opts: dict) -> None:
        super().__init__((CTRWConv2d,))
        self.opts = opts

    def before_attack(self, model):
        layer = ctrw_layer(model)
        if self.opts["constraint"] == "fixed" and not torch.isnan(layer.bounds).any():
            layer.sigma.requires_grad_(False)  # also after a resume (a fresh conversion trains sigma)
        super().before_attack(model)

    def _interval(self, layer) -> tuple[float, float]:
        a, b = (float(v) for v in layer.bounds)
        return a, max(a, b)

    def loss(self, net, x, x_adv, y):
        model = net.module if hasattr(net, "module") else net
        layer = ctrw_layer(model)
        if torch.isnan(layer.bounds).any():
            o = self.opts
            alpha = o["alpha"] if o["alpha"] is not None else scaled_alpha(layer.sigma.numel())
            a = o["lower"] if o["lower"] is not None else lower_bound(layer, alpha, o["eps_r"], o["bounds_seed"])
            b = o["upper"]
            if b is None:
                b = upper_bound(model, layer, x, o["eps_y"], o["beta"], o["draws"])["B"]
            layer.bounds.copy_(torch.tensor([a, b], dtype=torch.float64))
            if o["constraint"] == "fixed":
                with torch.no_grad():
                    layer.sigma.fill_(a / layer.sigma.numel())
                layer.sigma.requires_grad_(False)
        return None  # the default loss CE(net(x_adv), y), with delta2

    def after_step(self, model):
        layer = ctrw_layer(model)
        if self.opts["constraint"] == "bounds" and not torch.isnan(layer.bounds).any():
            layer.constrain_(*self._interval(layer))
        super().after_step(model)

    def on_epoch_end(self, model, epoch, metrics):
        layer = ctrw_layer(model)
        s = layer.sigma.detach().abs()
        a, b = (float(v) for v in layer.bounds)
        metrics.update(ctrw_A=a, ctrw_B=b, ctrw_sigma_sum=float(s.sum()), ctrw_sigma_mean=float(s.mean()),
                       ctrw_sigma_min=float(s.min()), ctrw_sigma_max=float(s.max()))
        if layer.site == "both":
            metrics["ctrw_sigma_out_sum"] = float(layer.sigma_out.detach().abs().sum())
        if b < a:
            metrics["ctrw_infeasible"] = True


def _position(name, v):
    if isinstance(v, str):
        return v
    return integer(lo=0)(name, v)


class CTRW(Method):
    """CTRW: see the module docstring."""

    name = "ctrw"
    description = ("CTRW (seed 001): trainable random weight mu + sigma*delta on one conv's input (or output, both, "
                   "filter), sum(sigma) in [A, B], two-draw AT")
    looks_for = "torch.nn.Conv2d layers (the position-th gets the random weight)"
    options = (
        Option("position", 0, "which Conv2d gets the random weight on its input: index in module order, or its name",
               _position),
        Option("site", "in", "where the random weight goes (seed Table 4): 'in' (the conv's input, the seed's best), "
               "'out' (its output, per element of N x H' x W'), 'both' (input and output; constraint 'none' only), "
               "'filter' (the weight, W * (mu + sigma delta))", choice(*CTRW_SITES)),
        Option("input_size", [32, 32], "[H, W] of the model's input images (to size mu and sigma)", size_option),
        Option("constraint", "bounds", "'bounds' (sum(sigma) kept in [A, B]), 'none' (no constraint), 'fixed' "
               "(sigma fixed at A / m)", choice(*CONSTRAINTS)),
        Option("alpha", None, "alpha < 0 of Lemma 1; None: the seed's -1e-3 scaled to the input size, "
               "-1e-3 * 3072 / m (ctrw.scaled_alpha)", optional(number(hi=0.0, hi_open=True))),
        Option("eps_r", 0.0, "eps_r of Lemma 1, the cosine-similarity bound (o(1))", number(lo=0.0)),
        Option("eps_y", 1.0, "eps_y of Lemma 2, the output difference allowed (logits)", number(lo=0.0, lo_open=True)),
        Option("beta", 1e-2, "beta of Lemma 2 (seed: 1e-2)", number(lo=0.0, lo_open=True)),
        Option("lower", None, "a given lower bound A instead of Lemma 1's", optional(number(lo=0.0))),
        Option("upper", None, "a given upper bound B instead of Lemma 2's", optional(number(lo=0.0))),
        Option("draws", 8, "noisy passes measuring sigma' for Lemma 2", integer(lo=2)),
        Option("bounds_seed", 0, "seed of the two draws of Lemma 1", integer(lo=0)),
        Option("mu_init", 1.0, "initial mu (code: ones)", number()),
        Option("sigma_init", 1.0, "initial sigma (code: ones)", number(lo=0.0)),
        Option("seed", None, "seed of the layer's noise stream (None: random)", optional(integer(lo=0, hi=_checks.MAX_SEED))),
    )
    training = TrainingRecipe(recipe="pgd", description="PGD-AT, attack with delta1, update with delta2 (Algorithm 1), "
                                                        "sum(sigma) projected onto [A, B] after every step")
    evaluation = Evaluation(
        stochastic=True, draw="per_batch",
        seed_protocol=("seed 001 Algorithm 2 (ctrw.algorithm2): PGD-20 against one fixed draw delta1, classified "
                       "with a fresh delta2, no EOT"))
    example_options = {"seed": 0}

    def check_options(self, options):
        opts = super().check_options(options)
        if opts["lower"] is not None and opts["upper"] is not None and opts["lower"] > opts["upper"]:
            raise ValueError(f"method 'ctrw': lower must be <= upper, got lower={opts['lower']}, upper={opts['upper']}")
        if opts["site"] == "both" and opts["constraint"] != "none":
            raise ValueError(f"method 'ctrw': site 'both' has two random weights and no single sum(sigma) for the "
                             f"bounds A, B of Lemmas 1-2: it needs constraint='none', got constraint="
                             f"{opts['constraint']!r} (the bounds apply to sites 'in', 'out', 'filter')")
        return opts

    def targets(self, model, named, opts):
        convs = in_module_order(model, named, (torch.nn.Conv2d,))
        if not convs:
            return []
        name = convs[position_check("position", opts["position"], len(convs), convs)]
        opts["_input_shape"] = probe_input_shapes(model, [name], named, opts["input_size"])[name]
        return [name]

    def replace(self, name, conv, index, opts):
        layer = CTRWConv2d.from_conv(conv, input_shape=opts["_input_shape"], mu_init=opts["mu_init"],
                                     sigma_init=opts["sigma_init"], seed=opts["seed"], site=opts["site"])
        layer.register_buffer("bounds", torch.full((2,), math.nan, dtype=torch.float64, device=conv.weight.device))
        return layer

    def hooks(self, config):
        return CTRWHooks(self.check_options(getattr(config, "method_options", {}) or {}))


METHOD = CTRW()
