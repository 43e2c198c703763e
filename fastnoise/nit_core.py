"""NIT estimators and training steps (seed 002) as plain functions, for `fastnoise/methods/nit.py` and scripts.

* `nit_step`: one step of noise-injection training by the likelihood-ratio method — forward passes only.
  Every sample runs with C replicas of the neuron noise; each LR layer's gradient is the LR estimate
  (Eq. 1; Eq. 8 sums over the T steps of a spiking network) ``g = 1/(B C) sum_{n,c} w_{n,c} Z_{n,c}``,
  w the replica's loss minus an unbiased baseline (`fastnoise.ops.loss_weights`), computed by
  `fastnoise.ops.lr_grad` from the stored layer input and the noise state (eps regenerated, never
  stored). ``estimator="nit_s"`` is NIT-S (Eq. 3: the sign of Z_theta). The replicas run in chunks of
  `chunk`: each chunk's record is used and freed before the next forward, so peak memory follows the
  chunk, not C. Then the optimizer step and the projection Pi_Omega (`project_`).
* `estimator_for_epoch`: NIT-S+ = NIT-S for the first `switch_epoch` epochs, then NIT (seed §4.4: 70 of 100).
* `stbp_step`: the baselines by backprop on the same network: STBP (surrogate-gradient BPTT, noise off)
  and STBP-N (STBP with the neuron noise on; `set_sigma_` to 1 for the seed's standard-normal noise).
* `forward_replicas`, `replica_losses`, `lr_backward`, `project_`, `accuracy`: the pieces.

Models: any module whose LR network takes ``forward(x, replicas=C)`` (fastnoise.models ``spiking_mlp``,
``spiking_cnn``, ``lr_mlp``), bare or wrapped as ``Sequential(Normalize, net)`` by `fastnoise.models.build`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from . import _checks
from .nn import noise_mode
from .nn.lr import LRLayer, lr_layers, recording
from .nn.spiking import SpikeEncoder
from .ops.lr_grad import BASELINES, loss_weights

__all__ = ["Bounds", "ESTIMATORS", "forward_replicas", "replica_losses", "lr_backward", "lr_estimate", "nit_step",
           "stbp_step", "lr_vs_pathwise",
           "project_", "estimator_for_epoch", "set_sigma_", "accuracy", "peak_memory"]

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


def _net(model: torch.nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.nn.Module]:
    """(preprocessing, LR net) of `model` (the net is the last module of a Sequential, or the model)."""
    if getattr(model, "supports_replicas", False):
        return (lambda x: x), model
    if isinstance(model, torch.nn.Sequential) and len(model) and getattr(model[-1], "supports_replicas", False):
        head = torch.nn.Sequential(*list(model)[:-1])
        return head, model[-1]
    raise TypeError(f"model must be an LR network with forward(x, replicas=C) (fastnoise.models spiking_mlp, "
                    f"spiking_cnn, lr_mlp) or a Sequential ending in one, got {type(model).__name__}")


def forward_replicas(model: torch.nn.Module, x: torch.Tensor, replicas: int = 1) -> torch.Tensor:
    """Logits [B*C, classes] of C = `replicas` noisy runs of every sample (row b*C + c)."""
    replicas = _checks.integer("replicas", replicas, lo=1)
    pre, net = _net(model)
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

    Returns {"loss": mean loss over the B*C noisy runs, "replicas", "chunks"}. A rate encoder (`SpikeEncoder`)
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
            L = replica_losses(forward_replicas(model, x, cc), y, cc)
            lr_backward(model, L, baseline=baseline, clean=clean, estimator=estimator, scale=1.0 / (B * replicas))
            total += float(L.sum())
            chunks += 1
    return {"loss": total / (B * replicas), "replicas": replicas, "chunks": chunks}


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
