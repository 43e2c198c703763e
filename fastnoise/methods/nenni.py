"""NENNI (seed 000): noise injection into non-essential neurons. Everything the method is, in one file.

* conversion: ``fastnoise.convert(model, "nenni", ratio=0.9)`` swaps Conv2d / Linear layers for
  `fastnoise.nn.NENNIConv2d` / `NENNILinear` (the layers: fastnoise/nn/nenni.py);
* training: the PGD-AT recipe (NENNI converts an adversarially trained model); no extra hooks;
* post-conversion recipe: `distill` (seed Eq. 1) -> PGD adversarial fine-tuning in noisy mode -> INT4;
* evaluation: deterministic (P and W~ are fixed: z~ - z is a function of x, docs/nenni.md); the seed's
  protocol is `essential_gradients` (gradient masking, labelled);
* cost: `NENNICost` for `fastnoise.bitops` (exact kept neurons + ternary projection + INT4 GEMM).

The recipe functions are also the public module `fastnoise.nenni`:

    model = fastnoise.convert(model, "nenni", ratio=0.9)          # layers start from the JL init W~ = W P^T
    fastnoise.nenni.distill(model, loader, epochs=50)            # Eq. 1 -> 1 epoch noisy fine-tune -> INT4
    fastnoise.nenni.approx_error(model, loader)                  # per layer ||z - z~||^2 / ||z||^2
    fastnoise.nenni.topk_recall(model, loader, ratio=0.9)        # recall of the true top-k by |z|
    print(fastnoise.nenni.bitops_table(resnet18, (1, 3, 32, 32)))

See docs/nenni.md for the method, the options and the measured numbers.
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .. import _checks
from ..adversarial import pgd
from ..bitops import bitops
from ..nn.nenni import (GRANULARITIES, INJECTS, MODES, SCORES, NENNIConv2d, NENNILayer, NENNILinear, default_k,
                        nenni_layers, set_nenni_mode)
from ._protocol import (Bits, ConvertData, CostModel, Evaluation, LayerCost, Method, Option, TrainingRecipe, boolean,
                        choice, integer, optional)

__all__ = ["METHOD", "NENNI", "NENNICost", "distill", "pgd_attack", "essential_gradients", "approx_error",
           "topk_recall", "bitops", "bitops_table", "SEED_BITOPS", "NENNIConv2d", "NENNILinear", "NENNILayer",
           "convert_nenni", "default_k", "nenni_layers", "set_nenni_mode", "quantize_"]


# ---- conversion ---------------------------------------------------------------------------------------

def _eligible_reason(module: torch.nn.Module) -> Optional[str]:
    """None when `module` can become a NENNI layer, else why not."""
    if isinstance(module, NENNILayer):
        return "is already a NENNI layer"
    if type(module) is torch.nn.Linear:
        return None
    if isinstance(module, torch.nn.Conv2d):
        return NENNIConv2d.unsupported_reason(module)
    return f"is a {type(module).__name__} (only torch.nn.Conv2d and torch.nn.Linear can be converted)"


def _ratio(name, v):
    return _checks.number(name, v, lo=0.0, hi=1.0, hi_open=True)


def _nm(name, v):
    from ..nn._nenni_config import _check_nm
    return _check_nm(v)


def _layers(name, v):
    if isinstance(v, str) or not isinstance(v, (list, tuple)) or not all(isinstance(n, str) for n in v):
        raise TypeError(f"layers must be a sequence of module names, got {v!r}")
    return list(v)


class NENNICost(CostModel):
    """BitOPs of a NENNI layer per output row (a conv output position, or a Linear sample), with fan-in d,
    n output neurons, projection size k and kept fraction f (convention: fastnoise/bitops.py):

    * exact product for the kept neurons only: ``f x n x d x weight_bits x act_bits``;
    * ternary projection ``P x``: additions only, ``k x d / 3`` of them (P has 1/3 non-zeros in
      expectation, s = 3), each at ``act_bits``;
    * INT4 approximation GEMM ``W~ (P x)``: ``n x k`` MACs at ``approx_bits x act_bits``;
    * mask selection and blending (comparisons, no products) are not counted.
    """

    def claims(self, module: torch.nn.Module) -> bool:
        return isinstance(module, NENNILayer)

    def cost(self, module: NENNILayer, out_per_sample: float, bits: Bits) -> LayerCost:
        d, n = module.d, module.n
        macs = out_per_sample * d
        dense = macs * bits.weight * bits.act
        f = module.keep_fraction(n)  # per decision row: a position's channels, or a sample's channels
        positions = out_per_sample / n
        return LayerCost(macs=macs, dense=dense, exact=f * dense, projection=positions * module.k * d / 3.0 * bits.act,
                         approx=positions * n * module.k * bits.approx * bits.act, kept_fraction=f)

    @contextlib.contextmanager
    def prepare(self, model: torch.nn.Module):
        layers = nenni_layers(model)
        modes = {id(m): m.mode for _, m in layers}
        try:
            for _, m in layers:  # the exact path only: BitOPs depend on shapes, not on values
                m.set_mode("dense")
            yield model
        finally:
            for _, m in layers:
                m.set_mode(modes[id(m)])


class NENNI(Method):
    """NENNI (seed 000): see the module docstring."""

    name = "nenni"
    description = ("NENNI (seed 000): exact products for the essential neurons only, a fixed sparse ternary "
                   "projection + INT4 approximation elsewhere (deterministic)")
    looks_for = ("torch.nn.Conv2d (groups=1, zero padding) and torch.nn.Linear layers, after skip_first / "
                 "skip_classifier (or the names in layers=[...])")
    options = (
        Option("ratio", None, "noise-injection ratio r in [0, 1): keep the top ceil((1 - r) F) of |z~| exact",
               optional(_ratio)),
        Option("nm", None, "(N, M): keep N of every M neurons exact (structured), instead of ratio", optional(_nm)),
        Option("k", None, "projection size (default min(d, 64))", optional(integer(lo=1))),
        Option("granularity", "position", "conv decisions per output position or per (sample, channel)",
               choice(*GRANULARITIES)),
        Option("score", "abs", "rank by |z~| or by z~", choice(*SCORES)),
        Option("inject", "non_essential", "non_essential (the seed) or essential (its §4.5 ablation)",
               choice(*INJECTS)),
        Option("mode", "noisy", "layer mode after conversion", choice(*MODES)),
        Option("seed", 0, "projection seed of the first converted layer (layer i: seed + i)",
               integer(lo=0, hi=_checks.MAX_SEED)),
        Option("skip_first", True, "keep the first eligible layer exact", boolean),
        Option("skip_classifier", True, "keep the last Linear exact", boolean),
        Option("layers", None, "exact module names to convert instead of the automatic choice", optional(_layers)),
        Option("convert_linear", True, "convert Linears too (False: convolutions only, as the seed)", boolean),
    )
    training = TrainingRecipe(recipe="pgd", description="PGD-AT of the model NENNI converts (the seed converts an "
                              "adversarially trained model)", start="trained")
    evaluation = Evaluation(
        stochastic=False,
        seed_protocol=("seed 000 attacks a non-differentiable INT4 approximation: gradients through the exact "
                       "neurons only (`fastnoise.nenni.essential_gradients`), which is gradient masking; reported "
                       "labelled, next to the full-gradient number (docs/nenni.md, Robustness)"),
        seed_gradients=lambda model: essential_gradients(model))
    cost = NENNICost()
    example_options = {"ratio": 0.9}
    post_options = (
        Option("distill_epochs", 20, "layer-wise distillation epochs (seed Eq. 1)", integer(lo=0)),
        Option("finetune_epochs", 3, "PGD adversarial fine-tuning epochs in noisy mode (W~ included), then INT4",
               integer(lo=0)),
        Option("attack_steps", 10, "PGD steps of the fine-tuning attack (step eps / 4)", integer(lo=1)),
    )

    def check_options(self, options):
        opts = super().check_options(options)
        if opts["ratio"] is not None and opts["nm"] is not None:
            raise ValueError(f"give either ratio or nm, not both (got ratio={opts['ratio']!r}, nm={opts['nm']!r})")
        if opts["ratio"] is None and opts["nm"] is None:
            raise ValueError("one of ratio (in [0, 1)) or nm=(N, M) is required")
        return opts

    def targets(self, model, named, opts):
        existing = [name or "<root>" for name, m in named.items() if isinstance(m, NENNILayer)]
        if existing:
            raise ValueError(f"model is already converted to NENNI (NENNI layers at {existing[:5]}); "
                             f"convert the original model, or change the layers' settings directly")
        if opts["layers"] is not None:
            for name in opts["layers"]:
                if name not in named:
                    raise ValueError(f"layers: model has no module named {name!r}")
                why = _eligible_reason(named[name])
                if why is not None:
                    raise ValueError(f"layers: module {name!r} cannot be converted to NENNI: it {why}")
            return list(opts["layers"])
        all_eligible = [n for n, m in named.items() if n and _eligible_reason(m) is None]
        candidates = [n for n in all_eligible if opts["convert_linear"] or not isinstance(named[n], torch.nn.Linear)]
        linears = [n for n in all_eligible if isinstance(named[n], torch.nn.Linear)]
        skip = set()
        if opts["skip_first"] and all_eligible:
            skip.add(all_eligible[0])
        if opts["skip_classifier"] and linears:
            skip.add(linears[-1])
        return [n for n in candidates if n not in skip]

    def replace(self, name, module, index, opts):
        cfg = dict(ratio=opts["ratio"], nm=opts["nm"], k=opts["k"], score=opts["score"], inject=opts["inject"],
                   mode=opts["mode"], seed=opts["seed"] + index)
        if isinstance(module, torch.nn.Linear):
            return NENNILinear.from_linear(module, granularity="position", **cfg)
        return NENNIConv2d.from_conv(module, granularity=opts["granularity"], **cfg)

    def after_convert(self, model: torch.nn.Module, data: ConvertData, **options: Any) -> str:
        """Distill W~, b~ -> PGD adversarial fine-tuning in noisy mode (W~ included) -> INT4 (`distill`;
        without the adversarial fine-tuning, full-gradient PGD breaks the approximation path: docs/nenni.md)."""
        o = self.check_post_options(options)
        eps = data.eps
        distill(model, data.batches, epochs=o["distill_epochs"], finetune_epochs=o["finetune_epochs"],
                attack=pgd_attack(eps, eps / 4, o["attack_steps"]) if eps > 0 else None, progress=False)
        return (f"nenni.distill: {o['distill_epochs']} distillation epochs, {o['finetune_epochs']} "
                f"PGD-{o['attack_steps']} adversarial fine-tuning epochs in noisy mode (W~ included), INT4")


METHOD = NENNI()


def convert_nenni(model: torch.nn.Module, **options: Any) -> torch.nn.Module:
    """``fastnoise.convert(model, "nenni", **options)`` (see `NENNI.options`): swap the eligible Conv2d /
    Linear layers of `model` (nested included) for NENNI layers, in place.

    Eligible: `torch.nn.Conv2d` with groups=1 and zero padding, and `torch.nn.Linear`
    (``convert_linear=False`` keeps Linears exact, as the seed applies NENNI to convolutions only).
    ``skip_first`` keeps the first eligible layer (in `named_modules` order) exact and
    ``skip_classifier`` the last Linear. ``layers``: the exact module names to convert instead; an
    ineligible name is an error naming it. The layer with index i (in conversion order) gets
    projection seed ``seed + i``; ``granularity`` applies to convolutions (Linears use "position").
    Converting a model that already holds NENNI layers is an error. Returns the converted model.
    """
    return METHOD.convert(model, **options)


# ---- the recipe (fastnoise.nenni) ---------------------------------------------------------------------

_Device = Union[str, torch.device, None]


def _layers_or_error(model: torch.nn.Module) -> list:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layers = nenni_layers(model)
    if not layers:
        raise ValueError("model has no NENNI layers; convert it first: fastnoise.convert(model, 'nenni', ratio=...)")
    return layers


def _model_device(model: torch.nn.Module, device: _Device) -> torch.device:
    if device is not None:
        return torch.device(device)
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _batches(loader: Iterable, device: torch.device, max_batches: Optional[int]):
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        if isinstance(batch, (tuple, list)):
            x = batch[0]
            y = batch[1] if len(batch) > 1 else None
        else:
            x, y = batch, None
        yield x.to(device), (y.to(device) if y is not None else None)


def _progress(it, progress: bool, desc: str, total: Optional[int] = None):
    if not progress:
        return it
    from tqdm.auto import tqdm
    return tqdm(it, desc=desc, total=total, leave=False)


def _len(loader, max_batches):
    try:
        n = len(loader)
    except TypeError:
        return max_batches
    return n if max_batches is None else min(n, max_batches)


def quantize_(model: torch.nn.Module) -> torch.nn.Module:
    """One-time INT4 quantization of W~, b~ in every NENNI layer of `model` (seed §3.1); returns `model`."""
    for _, layer in _layers_or_error(model):
        if not layer.quantized:
            layer.quantize_()
    return model


def pgd_attack(eps: float, alpha: float, steps: int, *, random_start: bool = True) -> Callable:
    """An L-inf PGD attack for adversarial fine-tuning: ``attack(model, x, y) -> x_adv`` (inputs in [0, 1]).

    Runs `fastnoise.adversarial.pgd` (cross-entropy, sign steps of `alpha`, projection onto the eps-ball
    and [0, 1]) from a uniform random start when `random_start`; the model is put in eval mode while
    the attack runs (BN running statistics, NENNI noisy mode on) and restored afterwards.
    """
    eps = _checks.number("eps", eps, lo=0.0)
    alpha = _checks.number("alpha", alpha, lo=0.0, lo_open=True)
    steps = _checks.integer("steps", steps, lo=1)

    def attack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        was = model.training
        model.eval()
        try:
            start = torch.rand_like(x).mul_(2).sub_(1) if random_start else None
            return pgd(model, x, y, eps, alpha, steps, start=start)
        finally:
            model.train(was)

    attack.__qualname__ = f"pgd_attack(eps={eps}, alpha={alpha}, steps={steps})"
    return attack


def distill(model: torch.nn.Module, loader: Iterable, *, epochs: int = 50, lr: float = 0.2, momentum: float = 0.9,
            finetune_epochs: int = 1, finetune_lr: float = 3e-3, finetune_approx: bool = True,
            attack: Optional[Callable] = None, quantize: bool = True, loss_fn: Callable = F.cross_entropy,
            device: _Device = None, max_batches: Optional[int] = None, progress: bool = True) -> dict:
    """The seed's recipe for a converted model: distill W~, b~ -> fine-tune in noisy mode -> INT4.

    1. ``epochs`` of layer-wise distillation (seed Eq. 1) with momentum SGD on every NENNI layer's
       W~, b~ at once: each layer sees the *exact* outputs of the layers before it (model in eval
       mode, every NENNI layer in "distill" mode, the original weights untouched). The objective of
       layer l is ``||z - z~||^2 / B`` divided by ``rows * (mean ||x_row||^2 + 1)`` (rows: output positions
       per sample; ``x_row``: a patch / input row): the curvature bound of Eq. 1 in (W~, b~) by JL
       norm preservation, so one ``lr`` in (0, 1) is stable for every layer size.
    2. ``finetune_epochs`` of fine-tuning in "noisy" mode (Eq. 2) with momentum SGD (``finetune_lr``,
       weight decay 5e-4) on ``loss_fn(model(x'), y)``, where ``x' = attack(model, x, y)`` when an
       ``attack`` is given (adversarial fine-tuning, e.g. `pgd_attack`; the loader yields (x, y)).
       ``finetune_approx=True`` (default) trains W~, b~ with every other parameter, end to end, *before*
       the INT4 step; ``False`` is the seed's literal order (INT4 first, then fine-tuning with W~, b~ frozen).
    3. ``quantize``: one-time INT4 quantization of W~ and b~ (then frozen).

    Why W~ is fine-tuned by default (docs/nenni.md, "Recipe"): on the PGD-AT digits CNN at r = 0.9 the
    literal order keeps clean accuracy 1.7-1.9 points below the unconverted model; training W~ with
    the task loss brings it within 1.1 points. With ``attack`` the approximation path is adversarially
    trained too: without it, full-gradient PGD goes through z~ and breaks the model (docs/nenni.md).

    Works on CPU and GPU (``device``: where to run; default the model's). Returns a history dict with
    the mean normalized distillation loss per epoch and the mean fine-tuning loss per epoch.
    """
    layers = _layers_or_error(model)
    epochs = _checks.integer("epochs", epochs, lo=0)
    finetune_epochs = _checks.integer("finetune_epochs", finetune_epochs, lo=0)
    lr = _checks.number("lr", lr, lo=0.0, lo_open=True)
    finetune_lr = _checks.number("finetune_lr", finetune_lr, lo=0.0, lo_open=True)
    momentum = _checks.number("momentum", momentum, lo=0.0, hi=1.0, hi_open=True)
    if attack is not None and not callable(attack):
        raise TypeError(f"attack must be a callable attack(model, x, y) -> x_adv or None, got {type(attack).__name__}")
    dev = _model_device(model, device)
    model.to(dev)
    was_training = model.training
    modes = {id(m): m.mode for _, m in layers}
    history = {"distill_loss": [], "finetune_loss": []}

    # 1. distillation
    if any(m.quantized for _, m in layers) and (epochs or (finetune_epochs and finetune_approx)):
        raise ValueError("model is already quantized: W~, b~ are frozen; pass epochs=0 and "
                         "finetune_approx=False to only fine-tune the other parameters")
    approx_params = [p for _, m in layers for p in (m.approx_weight, m.approx_bias)]
    approx_ids = {id(p) for p in approx_params}
    frozen = {id(p): p.requires_grad for p in model.parameters()}
    if epochs:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in approx_params:
            p.requires_grad_(True)
        opt = torch.optim.SGD(approx_params, lr=lr, momentum=momentum)
        model.eval()
        set_nenni_mode(model, "distill")
        for ep in _progress(range(epochs), progress, "NENNI distill (epochs)"):
            total, count = 0.0, 0
            for x, _ in _progress(_batches(loader, dev, max_batches), progress, f"distill epoch {ep + 1}",
                                  _len(loader, max_batches)):
                opt.zero_grad(set_to_none=True)
                model(x)
                loss = sum(m.distill_loss / m.distill_scale for _, m in layers)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                count += 1
            history["distill_loss"].append(total / max(count, 1))
        for p in model.parameters():
            p.requires_grad_(frozen[id(p)])

    def finetune() -> None:
        set_nenni_mode(model, "noisy")
        train_approx = finetune_approx and not any(m.quantized for _, m in layers)
        for p in approx_params:
            p.requires_grad_(train_approx)
        params = [p for p in model.parameters() if p.requires_grad and (train_approx or id(p) not in approx_ids)]
        opt = torch.optim.SGD(params, lr=finetune_lr, momentum=momentum, weight_decay=5e-4)
        model.train()
        for ep in _progress(range(finetune_epochs), progress, "NENNI fine-tune (epochs)"):
            total, count = 0.0, 0
            for x, y in _progress(_batches(loader, dev, max_batches), progress, f"fine-tune epoch {ep + 1}",
                                  _len(loader, max_batches)):
                if y is None:
                    raise ValueError("loader must yield (x, y) batches for fine-tuning (finetune_epochs > 0)")
                if attack is not None:
                    x = attack(model, x, y).detach()
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                count += 1
            history["finetune_loss"].append(total / max(count, 1))

    # 2. fine-tuning (W~ included) before INT4, or 3. INT4 then the seed's fine-tuning
    if finetune_epochs and finetune_approx:
        finetune()
    if quantize:
        quantize_(model)
    if finetune_epochs and not finetune_approx:
        finetune()

    for _, m in layers:
        m.set_mode("noisy" if (finetune_epochs or modes[id(m)] == "distill") else modes[id(m)])
    model.train(was_training)
    return history


@contextlib.contextmanager
def essential_gradients(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Inside: gradients of every NENNI layer flow through its exact (essential) neurons only.

    Forward values are unchanged; z~ is detached, as it is when the approximation is computed in
    non-differentiable fixed-point arithmetic (the seed's INT4 datapath). An attack run inside sees the
    gradient such an implementation exposes: the *seed protocol* of `docs/nenni.md`. This is gradient
    masking, not robustness: report it next to the full-gradient number, never instead of it.
    """
    layers = _layers_or_error(model)
    before = {id(m): m.approx_gradient for _, m in layers}
    for _, m in layers:
        m.approx_gradient = False
    try:
        yield model
    finally:
        for _, m in layers:
            m.approx_gradient = before[id(m)]


class _Capture:
    """Forward hooks that compute z~ next to the exact z of every NENNI layer (model in dense mode)."""

    def __init__(self, model: torch.nn.Module, fn: Callable) -> None:
        self.layers = _layers_or_error(model)
        self.model, self.fn = model, fn
        self.handles: list = []

    def __enter__(self):
        self.modes = {id(m): m.mode for _, m in self.layers}
        self.training = self.model.training
        self.model.eval()
        for name, m in self.layers:
            m.set_mode("dense")
            self.handles.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: self.fn(name, mod, out, mod._approx(inp[0]))))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        for _, m in self.layers:
            m.set_mode(self.modes[id(m)])
        self.model.train(self.training)


@torch.no_grad()
def approx_error(model: torch.nn.Module, loader: Iterable, *, device: _Device = None,
                 max_batches: Optional[int] = None) -> dict:
    """Per NENNI layer, the relative error ``sum ||z - z~||^2 / sum ||z||^2`` over the data (exact inputs)."""
    dev = _model_device(model, device)
    num: dict = {}
    den: dict = {}

    def acc(name, mod, z, za):
        num[name] = num.get(name, 0.0) + float((z.float() - za.float()).pow(2).sum())
        den[name] = den.get(name, 0.0) + float(z.float().pow(2).sum())

    with _Capture(model, acc):
        for x, _ in _batches(loader, dev, max_batches):
            model(x)
    return {name: num[name] / den[name] if den[name] > 0 else float("nan") for name in num}


def _rows(layer: NENNILayer, t: torch.Tensor) -> torch.Tensor:
    """The decision rows of `layer`: [rows, neurons]."""
    if isinstance(layer, NENNIConv2d):
        if layer.granularity == "channel":
            return t.abs().mean(dim=(2, 3))
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])
    return t.reshape(-1, t.shape[-1])


@torch.no_grad()
def topk_recall(model: torch.nn.Module, loader: Iterable, *, ratio: float = 0.9, device: _Device = None,
                max_batches: Optional[int] = None) -> dict:
    """Per NENNI layer, the recall of the true top-k by |z| among the top-k by |z~|, ``k = ceil((1 - ratio) F)``.

    Rows are the layer's decisions: each output position across channels (``granularity="position"``),
    each (sample, channel) pooled over positions (``"channel"``), each sample of a Linear. Recall is
    ``|top_k(|z|) & top_k(|z~|)| / k`` averaged over rows; also returned under ``"mean"`` (layer mean).
    """
    ratio = _checks.number("ratio", ratio, lo=0.0, hi=1.0, hi_open=True)
    dev = _model_device(model, device)
    hits: dict = {}
    tot: dict = {}

    def acc(name, mod, z, za):
        zr, ar = _rows(mod, z.float()).abs(), _rows(mod, za.float()).abs()
        f = zr.shape[1]
        kk = max(1, math.ceil((1.0 - ratio) * f))
        true = torch.zeros_like(zr, dtype=torch.bool).scatter_(1, zr.topk(kk, dim=1).indices, True)
        pred = torch.zeros_like(ar, dtype=torch.bool).scatter_(1, ar.topk(kk, dim=1).indices, True)
        hits[name] = hits.get(name, 0) + int((true & pred).sum())
        tot[name] = tot.get(name, 0) + zr.shape[0] * kk

    with _Capture(model, acc):
        for x, _ in _batches(loader, dev, max_batches):
            model(x)
    out = {name: hits[name] / tot[name] for name in hits}
    out["mean"] = sum(out.values()) / max(len(out), 1)
    return out


#: the seed's BitOPs (Table 1, ResNet-18 on CIFAR-10) and reductions vs overfitting AT (2.60E9)
SEED_BITOPS = {"dense": 2.60e9, 0.9: 4.52e8, 0.99: 2.18e8}
SEED_REDUCTION = {0.9: -0.826, 0.99: -0.916}


def bitops_table(model: torch.nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32), *,
                 ratios: Sequence[float] = (0.9, 0.99), k: Optional[int] = None, weight_bits: int = 32,
                 act_bits: int = 32, approx_bits: int = 4, **convert_cfg) -> str:
    """Markdown table: our BitOPs of `model` converted at each ratio next to the seed's (Table 1).

    `model` is an unconverted model (copied, not modified), e.g. a CIFAR ResNet-18. It is converted as
    in the seed's experiments: convolutions only (``convert_linear=False``), first conv kept exact
    (override with `convert_cfg`). Our convention is `fastnoise.bitops` (see its docstring).
    """
    cfg = {"convert_linear": False, "skip_first": True, **convert_cfg}
    base = bitops(model, input_shape, weight_bits=weight_bits, act_bits=act_bits, approx_bits=approx_bits)
    dense = base["total"]
    lines = [f"| configuration | our BitOPs | our reduction | seed BitOPs | seed reduction |",
             "|---|---|---|---|---|",
             f"| dense ({weight_bits}-bit W x {act_bits}-bit A) | {dense:.3g} | 0 | {SEED_BITOPS['dense']:.3g} | 0 |"]
    for r in ratios:
        m = convert_nenni(copy.deepcopy(model), ratio=r, k=k, mode="dense", **cfg)
        res = bitops(m, input_shape, weight_bits=weight_bits, act_bits=act_bits, approx_bits=approx_bits)
        seed_b = SEED_BITOPS.get(r)
        seed_r = SEED_REDUCTION.get(r)
        lines.append(f"| NENNI r = {r} (k = {'default' if k is None else k}) | {res['total']:.3g} | "
                     f"{res['total'] / dense - 1:+.1%} | {'-' if seed_b is None else f'{seed_b:.3g}'} | "
                     f"{'-' if seed_r is None else f'{seed_r:+.1%}'} |")
    return "\n".join(lines)
