"""NIT (seed 002, "noise injection training" by the likelihood-ratio method): every neuron's pre-activation
gets Gaussian noise ``sigma_i eps_i`` and the network trains from forward passes only. Everything the
method is, in one file: the estimator steps (plain functions, also used by the benchmarks) and the
`Method` (conversion, training hooks, evaluation).

* conversion: ``fastnoise.convert(model, "nit", ...)`` keeps the LR layers of the NIT networks
  (`fastnoise.models` ``spiking_mlp`` / ``spiking_cnn``: LIF networks of Eq. 7; ``lr_mlp``: an ANN, seed
  Fig. 3) and turns the ``nn.Linear`` / ``nn.Conv2d`` of an ordinary network (without batch norm or
  other parameters: the estimator trains LR layers only) into `fastnoise.nn.LRLinear` / `LRConv2d`;
* training (`NITHooks`, through ``fastnoise train --method nit``): the update of each step is the LR
  estimate (`lr_estimate`, replacing backprop via `Hooks.update`), then the projection Pi_Omega
  (`project_`). Trainers: ``nit`` (Eq. 1, Eq. 8 summed over the T steps), ``nit_s`` (Eq. 3: the sign of
  Z_theta), ``nit_s+`` (NIT-S for `switch_epoch` epochs, then NIT; seed §4.4: 70 of 100), and the
  seed's baselines on the same network by backprop: ``stbp`` (surrogate-gradient BPTT, noise off) and
  ``stbp_n`` (STBP with standard-normal noise in every neuron);
* cost (`NITCost`, for `fastnoise.bitops`): the LR layers' products counted as exact (the noise adds no
  products), once per computed row: a static input repeated over the T steps is multiplied once;
* evaluation: stochastic (fresh neuron noise per forward pass, per sample). A Heaviside network has a zero
  gradient almost everywhere, so a white-box attack on its raw gradient is gradient masking by
  construction: the spiking layers' backward is a surrogate derivative (`fastnoise.nn.LIF`: BPDA,
  selectable) and the attacks run with EOT over the neuron noise; Square is gradient-free. The seed's
  own protocol is reported beside them, labelled (`SEED_PROTOCOL`).

Estimator pieces. `lr_estimate`: C replicas of the neuron noise per sample, in chunks of `chunk`; each
LR layer's gradient ``g = 1/(B C) sum_{n,c} w_{n,c} Z_{n,c}``, w the replica's loss minus an unbiased
baseline (`fastnoise.ops.loss_weights`), computed by `fastnoise.ops.lr_grad` from the stored layer input
and the noise state (eps regenerated, never stored); each chunk's record is used and freed before the
next forward, so peak memory follows the chunk, not C. `nit_step` = zero_grad + `lr_estimate` + step +
`project_`; `stbp_step` the backprop baselines; `estimator_for_epoch` NIT-S+'s schedule;
`forward_replicas`, `replica_losses`, `lr_backward`, `set_sigma_`, `accuracy`, `peak_memory`,
`lr_vs_pathwise` (the LR estimate against backprop on a smooth network).

Models: a module whose LR network takes ``forward(x, replicas=C)`` (``spiking_mlp``, ``spiking_cnn``,
``lr_mlp``), bare or as ``Sequential(Normalize, net)`` (`fastnoise.models.build`); any other network of
LR layers runs its replicas as repeated rows (``x.repeat_interleave(C, 0)``: its first layer then stores
C copies of the input).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .. import _checks
from ..nn import noise_mode
from ..nn.lr import LRConv2d, LRLayer, LRLinear, lr_layers, recording
from ..nn.spiking import SpikeEncoder
from ..ops.lr_grad import BASELINES, loss_weights
from ._hooks import Hooks
from ._protocol import (Bits, CostModel, Evaluation, LayerCost, Method, Option, TrainingRecipe, choice, integer, number,
                        optional)

__all__ = ["METHOD", "NIT", "NITCost", "NITHooks", "TRAINERS", "SEED_PROTOCOL", "Bounds", "ESTIMATORS", "forward_replicas",
           "replica_losses", "lr_backward", "lr_estimate", "nit_step", "stbp_step", "lr_vs_pathwise", "project_",
           "estimator_for_epoch", "set_sigma_", "accuracy", "peak_memory"]

ESTIMATORS = ("nit", "nit_s")


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The box Omega of the projected SGD (seed §3.1, Assumption 1): ``|theta| <= theta`` (weights and
    biases) and ``sigma in [sigma_lo, sigma_hi]``. The seed gives no values; these defaults are ours: a
    lower bound on sigma keeps the 1/sigma of the LR scores finite."""
    theta: Optional[float] = 4.0
    sigma_lo: float = 0.05
    sigma_hi: float = 4.0

    def __post_init__(self) -> None:
        if self.theta is not None:
            _checks.number("theta", self.theta, lo=0.0, lo_open=True)
        lo = _checks.number("sigma_lo", self.sigma_lo, lo=0.0, lo_open=True)
        hi = _checks.number("sigma_hi", self.sigma_hi, lo=0.0, lo_open=True)
        if lo > hi:
            raise ValueError(f"sigma_lo must be <= sigma_hi, got {lo} > {hi}")


def _net(model: torch.nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], Optional[torch.nn.Module]]:
    """(preprocessing, LR net taking replicas=C) of `model`: the last module of a Sequential, or the model;
    (model, None) for a network of LR layers without replica support (replicas as repeated rows)."""
    if getattr(model, "supports_replicas", False):
        return (lambda x: x), model
    if isinstance(model, torch.nn.Sequential) and len(model) and getattr(model[-1], "supports_replicas", False):
        head = torch.nn.Sequential(*list(model)[:-1])
        return head, model[-1]
    if not lr_layers(model):
        raise TypeError(f"model must be a network of LR layers (fastnoise.models spiking_mlp, spiking_cnn, lr_mlp, or "
                        f"converted with fastnoise.convert(model, 'nit')), got {type(model).__name__} without any")
    return model, None


def forward_replicas(model: torch.nn.Module, x: torch.Tensor, replicas: int = 1) -> torch.Tensor:
    """Logits [B*C, classes] of C = `replicas` noisy runs of every sample (row b*C + c)."""
    replicas = _checks.integer("replicas", replicas, lo=1)
    pre, net = _net(model)
    if net is None:
        return pre(x.repeat_interleave(replicas, 0) if replicas > 1 else x)
    return net(pre(x), replicas=replicas)


def replica_losses(logits: torch.Tensor, y: torch.Tensor, replicas: int) -> torch.Tensor:
    """Cross-entropy per (sample, replica): [B, C] from logits [B*C, classes] and labels y [B]."""
    B = y.shape[0]
    if logits.shape[0] != B * replicas:
        raise ValueError(f"logits must have B * replicas = {B} * {replicas} rows, got {logits.shape[0]}")
    return F.cross_entropy(logits, y.repeat_interleave(replicas), reduction="none").view(B, replicas)


def lr_backward(model: torch.nn.Module, losses: torch.Tensor, *, baseline: str = "mean",
                clean: Optional[torch.Tensor] = None, estimator: str = "nit", scale: Optional[float] = None) -> None:
    """Add the LR estimates of the last recorded forward to every LR layer's ``.grad``.

    losses: [B, C] per (sample, replica) of that forward. scale: default 1 / (B*C) (the gradient of the
    batch mean); pass 1 / (B * C_total) when the replicas of one step are split into chunks.
    """
    _checks.choice("estimator", estimator, ESTIMATORS)
    B, C = losses.shape
    w = loss_weights(losses, baseline, clean=clean, scale=1.0 / (B * C) if scale is None else scale)
    for layer in lr_layers(model):
        layer.lr_gradients(w, sign=estimator == "nit_s")


@torch.no_grad()
def project_(model: torch.nn.Module, bounds: Bounds) -> None:
    """Pi_Omega: clamp every LR layer's weight and bias to [-theta, theta] and sigma to [sigma_lo, sigma_hi]."""
    for m in lr_layers(model):
        if bounds.theta is not None:
            m.weight.clamp_(-bounds.theta, bounds.theta)
            if m.bias is not None:
                m.bias.clamp_(-bounds.theta, bounds.theta)
        m.sigma.clamp_(bounds.sigma_lo, bounds.sigma_hi)


def lr_estimate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, replicas: int = 8,
                chunk: Optional[int] = None, estimator: str = "nit", baseline: str = "mean") -> dict:
    """Add the LR estimate of the gradient of the mean noisy loss (C = `replicas` per sample, in chunks of
    `chunk`) to the ``.grad`` of every LR layer's weight, bias and sigma. No optimizer step.

    Returns {"loss": mean loss over the B*C noisy runs, "replicas", "chunks", "logits": [B, classes] of the
    first replica of every sample (detached; the training accuracy of the step)}. A rate encoder (`SpikeEncoder`)
    is rewound before every chunk, so all replicas of a sample see the same input spikes.
    """
    replicas = _checks.integer("replicas", replicas, lo=1)
    chunk = replicas if chunk is None else _checks.integer("chunk", chunk, lo=1)
    _checks.choice("estimator", estimator, ESTIMATORS)
    _checks.choice("baseline", baseline, BASELINES)
    if baseline == "mean" and (min(chunk, replicas) < 2 or (replicas % chunk == 1)):
        raise ValueError(f"baseline='mean' (leave-one-out within a chunk) needs >= 2 replicas in every chunk, got "
                         f"replicas={replicas}, chunk={chunk}")
    if not lr_layers(model):
        raise ValueError("model has no LR layers (fastnoise.nn.LRLinear / LRConv2d) to train")
    B = int(y.shape[0])
    total, chunks = 0.0, 0
    with torch.no_grad(), noise_mode(model, "on"), recording(model):
        clean = None
        if baseline == "clean":
            with noise_mode(model, "off"):
                clean = F.cross_entropy(forward_replicas(model, x, 1), y, reduction="none")
        encoders = [m for m in model.modules() if isinstance(m, SpikeEncoder)]
        start = [m.stream.state.clone() for m in encoders]
        for c0 in range(0, replicas, chunk):
            cc = min(chunk, replicas - c0)
            for m, s0 in zip(encoders, start):  # every chunk sees the same input encoding (rate coding)
                m.stream.state.copy_(s0)
            out = forward_replicas(model, x, cc)
            if c0 == 0:
                first = out.view(B, cc, -1)[:, 0].detach().clone()
            L = replica_losses(out, y, cc)
            del out
            lr_backward(model, L, baseline=baseline, clean=clean, estimator=estimator, scale=1.0 / (B * replicas))
            total += float(L.sum())
            chunks += 1
    return {"loss": total / (B * replicas), "replicas": replicas, "chunks": chunks, "logits": first}


def nit_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer, *,
             replicas: int = 8, chunk: Optional[int] = None, estimator: str = "nit", baseline: str = "mean",
             bounds: Optional[Bounds] = Bounds()) -> dict:
    """One NIT / NIT-S step: zero the gradients, `lr_estimate`, optimizer step, `project_` onto `bounds`
    (None: no projection). Returns `lr_estimate`'s dict."""
    optimizer.zero_grad(set_to_none=True)
    out = lr_estimate(model, x, y, replicas=replicas, chunk=chunk, estimator=estimator, baseline=baseline)
    optimizer.step()
    if bounds is not None:
        project_(model, bounds)
    return out


def lr_vs_pathwise(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, replicas: int,
                   pathwise_replicas: int = 16384, chunk: Optional[int] = None, baseline: str = "mean") -> dict:
    """Check of the LR estimator on a smooth network: the LR estimate with C = `replicas` against the
    pathwise (backprop through the noise) gradient of the same noisy objective, averaged over
    `pathwise_replicas` draws per sample. Returns {"cosine", "rel_error"} over all LR parameters
    (weights, biases, sigmas concatenated); ``rel_error = |g_LR - g_path| / |g_path|``."""
    params = [p for m in lr_layers(model) for p in (m.weight, m.bias, m.sigma) if p is not None]
    for p in params:
        p.grad = None
    lr_estimate(model, x, y, replicas=replicas, chunk=chunk, baseline=baseline)
    g_lr = torch.cat([p.grad.flatten() for p in params])
    for p in params:
        p.grad = None
    P = _checks.integer("pathwise_replicas", pathwise_replicas, lo=1)
    step = max(1, min(P, 4096))
    g_path = torch.zeros_like(g_lr)
    with noise_mode(model, "on"):
        for c0 in range(0, P, step):
            cc = min(step, P - c0)
            loss = replica_losses(forward_replicas(model, x, cc), y, cc).sum() / (y.shape[0] * P)
            g_path += torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])
    cos = float(torch.nn.functional.cosine_similarity(g_lr, g_path, dim=0))
    rel = float((g_lr - g_path).norm() / g_path.norm())
    return {"cosine": cos, "rel_error": rel}


def stbp_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer, *,
              noise: bool = False, bounds: Optional[Bounds] = None) -> dict:
    """One backprop step on the same network: STBP (noise off) or STBP-N (noise on; surrogate gradients
    through the LIF neurons, the noise is differentiable: d(v + sigma eps)/dv = 1). Returns {"loss"}."""
    with noise_mode(model, "on" if noise else "off"):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward_replicas(model, x, 1), y)
        loss.backward()
        optimizer.step()
    if bounds is not None:
        project_(model, bounds)
    return {"loss": float(loss.detach())}


def estimator_for_epoch(method: str, epoch: int, switch_epoch: int = 70) -> str:
    """The estimator of `method` ("nit", "nit_s", "nit_s+") at 1-based `epoch`: NIT-S+ uses NIT-S for
    epochs 1..switch_epoch and NIT after (seed §4.4: NIT-S for the first 70 of 100 epochs)."""
    _checks.choice("method", method, ("nit", "nit_s", "nit_s+"))
    _checks.integer("epoch", epoch, lo=1)
    _checks.integer("switch_epoch", switch_epoch, lo=0)
    if method == "nit_s+":
        return "nit_s" if epoch <= switch_epoch else "nit"
    return method


@torch.no_grad()
def set_sigma_(model: torch.nn.Module, value: float, *, trainable: bool = True) -> torch.nn.Module:
    """Set every LR layer's sigma to `value` (STBP-N: 1.0, standard-normal noise) and its requires_grad."""
    value = _checks.number("value", value, lo=0.0)
    for m in lr_layers(model):
        m.sigma.fill_(value)
        m.sigma.requires_grad_(trainable)
    return model


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, noise: bool = True,
             batch: int = 512) -> float:
    """Top-1 accuracy with one noise draw per sample (noise=True: the model as deployed) or the noise off."""
    correct = 0
    with noise_mode(model, "on" if noise else "off"):
        for i in range(0, x.shape[0], batch):
            correct += int((forward_replicas(model, x[i:i + batch], 1).argmax(1) == y[i:i + batch]).sum())
    return correct / max(1, x.shape[0])


def peak_memory(fn: Callable[[], object]) -> tuple[object, int]:
    """(fn(), peak bytes of tensor memory alive at once while fn runs, above what was alive before).

    Measured from the allocation and free events of the torch profiler (CPU and CUDA allocators; every
    torch tensor, including the fastnoise kernels' outputs and temporaries made with at::empty; not the
    kernels' small thread-local work buffers)."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts, profile_memory=True) as prof:
        out = fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    cur = peak = 0
    for _, n in events:
        cur += n
        peak = max(peak, cur)
    return out, peak


# ---- the method: conversion, training hooks, evaluation ---------------------------------------------

TRAINERS = ("nit", "nit_s", "nit_s+", "stbp", "stbp_n")

#: the seed's evaluation (seed 002 §4.2-4.3), reported beside the adaptive attacks and labelled
SEED_PROTOCOL = ("seed 002 §4: white-box BIM / PGD / MIM (eps 0.1, step 0.01, 15 steps), FGSM (eps 0.1), DIM, TIM on "
                 "1000 test images, one noise draw per attack step (no EOT); here the white-box gradient of the "
                 "Heaviside is the LIF's surrogate (BPDA), since its raw gradient is zero almost everywhere")


class NITHooks(Hooks):
    """The NIT update of one training step (seed Algorithm 1), replacing backprop (`Hooks.update`).

    ``update``: zero the gradients, `lr_estimate` on the training batch (C replicas in chunks, the
    epoch's estimator: NIT, NIT-S, or NIT-S+'s schedule), all-reduce the estimates under DDP (the
    trainer's backward, which DDP hooks, does not run), ``optimizer.step()``. ``after_step``: the
    projection Pi_Omega (`project_`). The STBP baselines use the trainer's default backprop update.

    The epoch count NIT-S+ needs survives a resume: it is kept in the optimizer's first param group
    (``nit_epochs_done``, saved with the optimizer state in the checkpoint).
    """

    def __init__(self, trainer: str, switch_epoch: int, replicas: int, chunk: Optional[int], baseline: str,
                 bounds: Optional[Bounds]) -> None:
        self.trainer, self.switch_epoch = trainer, switch_epoch
        self.replicas, self.chunk, self.baseline, self.bounds = replicas, chunk, baseline, bounds
        self._optimizer: Optional[torch.optim.Optimizer] = None

    @property
    def backprop(self) -> bool:
        return self.trainer in ("stbp", "stbp_n")

    def estimator(self, epoch: int) -> str:
        """The estimator of 1-based `epoch` ("nit" or "nit_s")."""
        return estimator_for_epoch(self.trainer, epoch, self.switch_epoch)

    def update(self, model, net, optimizer, x, x_adv, y):
        if self.backprop:
            return None  # STBP / STBP-N: surrogate-gradient BPTT, the trainer's own update
        self._optimizer = optimizer
        epoch = int(optimizer.param_groups[0].get("nit_epochs_done", 0)) + 1
        optimizer.zero_grad(set_to_none=True)
        out = lr_estimate(model, x_adv, y, replicas=self.replicas, chunk=self.chunk, estimator=self.estimator(epoch),
                          baseline=self.baseline)
        import torch.distributed as dist
        # average over ranks only when this training is data-parallel (the trainer wrapped it in DDP); a process
        # group alone is not enough: the leaderboard runs one training job per rank (design note 60)
        if isinstance(net, torch.nn.parallel.DistributedDataParallel) and dist.get_world_size() > 1:
            world = dist.get_world_size()
            for p in model.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad.div_(world)
        optimizer.step()
        return torch.tensor(out["loss"], device=y.device), out["logits"]

    def after_step(self, model):
        if not self.backprop and self.bounds is not None:
            project_(model, self.bounds)

    def on_epoch_end(self, model, epoch, metrics):
        if self._optimizer is not None:
            self._optimizer.param_groups[0]["nit_epochs_done"] = epoch
        if not self.backprop:
            metrics["nit_estimator"] = self.estimator(epoch)
            sig = [float(m.sigma.detach().mean()) for m in lr_layers(model)]
            metrics["nit_mean_sigma"] = [round(s, 4) for s in sig]


class NITCost(CostModel):
    """BitOPs of an LR layer (`fastnoise.nn.LRLinear` / `LRConv2d`; convention: fastnoise/bitops.py): its
    product ``x W^T`` (or the conv) is exact, ``MACs x weight_bits x act_bits`` with MACs = fan-in x output
    neurons per *computed* row. The layer computes its product once per input row (S x B rows: a static
    input repeated over T steps is multiplied once, a rate-coded [T, B, ...] input T times) and only
    broadcasts it over the T steps and C replicas of its [T x B x C, ...] output, so the count per output
    element is scaled by (input rows / output rows). Spike inputs (``binary_input=True``) count 1-bit
    activations: a spike x weight product is an accumulate. The noise and the LIF are elementwise: not counted.
    """

    def claims(self, module: torch.nn.Module) -> bool:
        return isinstance(module, LRLayer)

    @staticmethod
    def _fan_in(module: LRLayer) -> int:
        if isinstance(module, LRConv2d):
            kh, kw = module.kernel_size
            return module.in_channels * kh * kw
        return module.in_features

    @staticmethod
    def _share(module: LRLayer, inputs, output) -> None:
        x = inputs[0]
        if isinstance(module, LRConv2d):
            rows_in = x.numel() / (module.in_channels * math.prod(x.shape[-2:]))
            rows_out = output.numel() / (module.out_channels * math.prod(output.shape[-2:]))
        else:
            rows_in, rows_out = x.numel() / module.in_features, output.numel() / module.out_features
        module._bitops_share = rows_in / rows_out if rows_out else 0.0

    def cost(self, module: LRLayer, out_per_sample: float, bits: Bits) -> LayerCost:
        share = getattr(module, "_bitops_share", None)
        if share is None:
            raise RuntimeError("NITCost.cost needs the forward of NITCost.prepare (the computed rows of the call)")
        macs = out_per_sample * share * self._fan_in(module)
        act = 1 if module.binary_input else bits.act
        dense = macs * bits.weight * act
        return LayerCost(macs=macs, dense=dense, exact=dense)

    @contextlib.contextmanager
    def prepare(self, model: torch.nn.Module):
        layers = [m for m in model.modules() if isinstance(m, LRLayer)]
        # prepend: the share of the call is known before fastnoise.bitops's own hook reads it
        handles = [m.register_forward_hook(self._share, prepend=True) for m in layers]
        try:
            yield model
        finally:
            for h in handles:
                h.remove()
            for m in layers:
                m.__dict__.pop("_bitops_share", None)


class NIT(Method):
    """NIT (seed 002): see the module docstring. Options choose the trainer (NIT, NIT-S, NIT-S+ and the
    STBP / STBP-N baselines on the same network), the replicas C, the estimator's baseline and the box
    Omega of the projection."""

    name = "nit"
    description = ("NIT (seed 002): per-neuron Gaussian noise, trained forward-only by the likelihood-ratio "
                   "estimator (NIT / NIT-S / NIT-S+; STBP baselines), spiking or ordinary networks")
    looks_for = ("fastnoise LR layers (models spiking_mlp, spiking_cnn, lr_mlp) or torch.nn.Linear / Conv2d "
                 "layers of a network without other parameters (no batch norm)")
    options = (
        Option("trainer", "nit_s+", "nit (Eq. 1/8), nit_s (Eq. 3), nit_s+ (nit_s, then nit), stbp (surrogate BPTT, "
               "noise off), stbp_n (surrogate BPTT, standard-normal neuron noise, sigma fixed at 1)",
               choice(*TRAINERS)),
        Option("replicas", 16, "C: noisy runs of every training sample per step", integer(lo=1)),
        Option("chunk", None, "replicas per forward pass (peak memory follows the chunk; null: all C at once)",
               optional(integer(lo=1))),
        Option("baseline", "mean", "subtracted from the replica losses: none, mean (leave-one-out over the replicas), "
               "clean (the noise-free loss); each keeps the estimator unbiased", choice(*BASELINES)),
        Option("switch_epoch", None, "nit_s+: the last epoch of NIT-S (null: 70% of the epochs, seed §4.4: 70 of 100)",
               optional(integer(lo=0))),
        Option("sigma_init", None, "initial sigma of every neuron (null: the model's; converted Linear / Conv2d: 1.0, "
               "seed Algorithm 1)", optional(number(lo=0.0, lo_open=True))),
        Option("theta_bound", 4.0, "Pi_Omega: |weight|, |bias| <= theta_bound (null: unbounded)",
               optional(number(lo=0.0, lo_open=True))),
        Option("sigma_lo", 0.05, "Pi_Omega: sigma >= sigma_lo (keeps the 1/sigma of the estimator finite)",
               number(lo=0.0, lo_open=True)),
        Option("sigma_hi", 4.0, "Pi_Omega: sigma <= sigma_hi", number(lo=0.0, lo_open=True)),
    )
    #: the architecture NIT trains when none is given (`fastnoise train --method nit`, the leaderboard's row):
    #: configs/digits_nit.json's spiking MLP (LIF, T = 8, 100 hidden neurons, sigma 1 at init; seed §4.1's
    #: MLP, smaller). The budgets' small_cnn has batch norm, which the LR estimator cannot train.
    training = TrainingRecipe(recipe="standard", description="clean batches; the update is the LR estimate "
                              "(forward passes only, Hooks.update), then the projection Pi_Omega",
                              model="spiking_mlp", model_options={"hidden": 100, "steps": 8, "sigma_init": 1.0})
    evaluation = Evaluation(
        stochastic=True, draw="per_sample",
        inference_doc="the network itself with its neuron noise on (one draw per forward pass); spiking nets: "
                      "white-box gradients through the LIF surrogate (BPDA), attacked with EOT; Square is gradient-free",
        seed_protocol=SEED_PROTOCOL)
    cost = NITCost()
    example_options = {"trainer": "nit_s+", "replicas": 16}

    def check_options(self, options):
        opts = super().check_options(options)
        if opts["sigma_lo"] > opts["sigma_hi"]:
            raise ValueError(f"method 'nit': sigma_lo must be <= sigma_hi, got {opts['sigma_lo']} > {opts['sigma_hi']}")
        if opts["baseline"] == "mean":
            c = opts["replicas"] if opts["chunk"] is None else min(opts["chunk"], opts["replicas"])
            if c < 2 or (opts["chunk"] is not None and opts["replicas"] % opts["chunk"] == 1):
                raise ValueError(f"method 'nit': baseline 'mean' (leave-one-out) needs >= 2 replicas in every chunk, "
                                 f"got replicas={opts['replicas']}, chunk={opts['chunk']}")
        return opts

    def targets(self, model, named, opts):
        out = []
        inside = set()
        for n, m in named.items():
            if isinstance(m, LRLayer):
                out.append(n)
                inside.update(id(p) for p in m.parameters())
            elif isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and type(m) in (torch.nn.Linear, torch.nn.Conv2d):
                if isinstance(m, torch.nn.Conv2d) and (m.groups != 1 or m.padding_mode != "zeros"):
                    raise ValueError(f"layer {n!r}: NIT converts Conv2d with groups=1 and zero padding, got "
                                     f"groups={m.groups}, padding_mode={m.padding_mode!r}")
                out.append(n)
                inside.update(id(p) for p in m.parameters())
        for n, m in named.items():
            own = [k for k, p in m.named_parameters(recurse=False) if id(p) not in inside]
            if own:
                raise ValueError(f"layer {n or '<root>'!r} ({type(m).__name__}) has parameters {own} that the LR "
                                 f"estimator cannot train (NIT trains LR / Linear / Conv2d layers only: no batch norm)")
        return out

    def replace(self, name, module, index, opts):
        sig = opts["sigma_init"]
        if isinstance(module, LRLayer):
            new = module
            if sig is not None:
                with torch.no_grad():
                    new.sigma.fill_(sig)
        elif isinstance(module, torch.nn.Linear):
            new = LRLinear.from_linear(module, sigma_init=1.0 if sig is None else sig, seed=index)
        else:
            new = LRConv2d.from_conv(module, sigma_init=1.0 if sig is None else sig, seed=index)
        if opts["trainer"] == "stbp":
            new.set_noise_mode("off")
        elif opts["trainer"] == "stbp_n":
            with torch.no_grad():
                new.sigma.fill_(1.0)
            new.sigma.requires_grad_(False)
        return new

    def hooks(self, config):
        opts = self.check_options(getattr(config, "method_options", {}) or {})
        switch = opts["switch_epoch"]
        if switch is None:
            switch = int(round(0.7 * int(getattr(config, "epochs", 100))))
        bounds = Bounds(theta=opts["theta_bound"], sigma_lo=opts["sigma_lo"], sigma_hi=opts["sigma_hi"])
        return NITHooks(opts["trainer"], switch, opts["replicas"], opts["chunk"], opts["baseline"], bounds)


METHOD = NIT()
