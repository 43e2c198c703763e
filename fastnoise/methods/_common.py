"""Pieces shared by the randomized-weight methods (pni, rsr, ctrw, rpf, sal): layer discovery in module
order, the shape a layer sees (one probe forward), the two-draw protocol of CTRW / RPF, and the
ensemble loss of PNI / RSR with its noise scales excluded from weight decay.

Nothing here is a method; the registry skips private modules.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F

from ._hooks import Hooks
from ._protocol import number

__all__ = ["in_module_order", "input_channels", "probe_input_shapes", "size_option", "position_check",
           "TwoDraws", "EnsembleLoss", "noise_scales", "batch_shared_layers"]


def in_module_order(model: torch.nn.Module, named: dict, kinds: tuple) -> list[str]:
    """Names of the modules of `kinds` in `model`, pre-order, each module once ("" for the root)."""
    ids = {}
    for n, m in named.items():
        ids.setdefault(id(m), n)
    out, seen = [], set()
    for m in model.modules():
        if isinstance(m, kinds) and id(m) not in seen:
            seen.add(id(m))
            out.append(ids[id(m)])
    return out


def input_channels(model: torch.nn.Module) -> int:
    """The channels of the model's input: a leading `fastnoise.models.Normalize`'s, else the first Conv2d's."""
    for m in model.modules():
        mean = getattr(m, "mean", None)
        if type(m).__name__ == "Normalize" and isinstance(mean, torch.Tensor):
            return int(mean.numel())
        if isinstance(m, torch.nn.Conv2d):
            return int(m.in_channels)
    raise ValueError(f"cannot tell the input channels of {type(model).__name__}: it has no Normalize and no Conv2d")


def size_option(name: str, v) -> list:
    """Option check: ``[H, W]`` of the model's input images (ints >= 1)."""
    if (not isinstance(v, (list, tuple)) or len(v) != 2
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in v)):
        raise ValueError(f"{name} must be [H, W] of the model's input images (two ints >= 1), got {v!r}")
    return [int(v[0]), int(v[1])]


@torch.no_grad()
def probe_input_shapes(model: torch.nn.Module, names: Sequence[str], named: dict, input_size: Sequence[int],
                       option: str = "input_size") -> dict:
    """{name: the (C, H, W) its module receives} from one forward of zeros ``[1, C, H, W]`` (eval mode,
    the caller's RNG state and the model's train flag kept). A forward that fails is an error naming `option`."""
    c = input_channels(model)
    shapes, handles = {}, []
    for n in names:
        def hook(mod, args, n=n):
            shapes.setdefault(n, tuple(int(s) for s in args[0].shape[1:]))
        handles.append(named[n].register_forward_pre_hook(hook))
    was = model.training
    p = next(iter(model.parameters()), None)
    x = torch.zeros(1, c, *input_size, device=p.device if p is not None else None)
    try:
        with torch.random.fork_rng(devices=[]):
            model.eval()
            model(x)
    except Exception as e:  # the size does not fit the architecture
        raise ValueError(f"{option} must be [H, W] of the model's input images: a forward of shape "
                         f"{tuple(x.shape)} failed ({type(e).__name__}: {e})") from None
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    missing = [n for n in names if n not in shapes]
    if missing:
        raise ValueError(f"layers {missing} are not called by the model's forward")
    return shapes


def position_check(name: str, v, count: int, names: Sequence[str]) -> int:
    """An index into `names` (the candidate layers): an int in [0, count - 1] or one of the names."""
    if isinstance(v, str):
        if v not in names:
            raise ValueError(f"{name} must be an int in [0, {count - 1}] or the name of a Conv2d of the model "
                             f"({list(names)}), got {v!r}")
        return list(names).index(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < count:
        raise ValueError(f"{name} must be an int in [0, {count - 1}] (the model has {count} Conv2d layers, in "
                         f"module order) or one of their names, got {v!r}")
    return v


def batch_shared_layers(model: torch.nn.Module, kinds: tuple) -> list:
    return [m for m in model.modules() if isinstance(m, kinds)]


class TwoDraws(Hooks):
    """The two-draw protocol of CTRW (seed 001 Algorithm 1, lines 1 and 8) and RPF (`random_rp_matrix()`
    before the attack and again before the update): the training attack sees one batch-shared draw
    (delta1, fixed for all its steps), the update a fresh one (delta2). The layers deploy with a fresh
    draw per forward (``resample="forward"``); during the step they are switched to ``"manual"``."""

    def __init__(self, kinds: tuple) -> None:
        self.kinds = kinds

    def _layers(self, model):
        return batch_shared_layers(model, self.kinds)

    def before_attack(self, model):
        for m in self._layers(model):
            m.resample_mode = "manual"
            m.resample()  # delta1: the draw the attack sees, fixed for all its steps

    def resample_noise(self, model):
        for m in self._layers(model):
            m.resample()  # delta2: the draw the update sees

    def after_step(self, model):
        for m in self._layers(model):
            m.resample_mode = "forward"  # deployed: a fresh draw per forward


def noise_scales(model: torch.nn.Module, kinds: tuple) -> list[torch.nn.Parameter]:
    """The trainable noise scales (``alpha``) of the layers of `kinds` in `model`, each once."""
    out, seen = [], set()
    for m in model.modules():
        a = getattr(m, "alpha", None)
        if isinstance(m, kinds) and isinstance(a, torch.nn.Parameter) and id(a) not in seen:
            seen.add(id(a))
            out.append(a)
    return out


class EnsembleLoss(Hooks):
    """``a * CE(net(x), y) + (1 - a) * CE(net(x_adv), y)`` (+ `penalty(model)`), the PNI code's
    ``0.5 clean + 0.5 adv`` and seed 004 Eq. 5 / 6; the noise scales of `kinds` are excluded from weight
    decay (PNI code/main.py puts alpha in a param group with weight_decay 0): the update subtracts
    ``weight_decay * alpha`` from alpha's gradient before ``optimizer.step()``, which then adds it back
    (SGD: ``d_p = grad + wd * p``), so alpha moves exactly as in a group without decay.
    The training accuracy is measured on the adversarial logits."""

    def __init__(self, clean_weight: float, kinds: tuple,
                 penalty: Optional[Callable[[torch.nn.Module], torch.Tensor]] = None) -> None:
        self.a = float(clean_weight)
        self.kinds = kinds
        self.penalty = penalty

    def loss(self, net, x, x_adv, y):
        logits_adv = net(x_adv)
        loss = (1.0 - self.a) * F.cross_entropy(logits_adv, y)
        if self.a > 0:
            loss = loss + self.a * F.cross_entropy(net(x), y)
        return loss, logits_adv

    def update(self, model, net, optimizer, x, x_adv, y):
        loss, logits = self.loss(net, x, x_adv, y)
        if self.penalty is not None:
            loss = loss + self.penalty(model)
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(f"training loss is {loss.item()}: lower lr (now {optimizer.param_groups[0]['lr']})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        scales = {id(p) for p in noise_scales(model, self.kinds)}
        with torch.no_grad():
            for group in optimizer.param_groups:
                wd = group.get("weight_decay", 0.0)
                if wd:
                    for p in group["params"]:
                        if id(p) in scales and p.grad is not None:
                            p.grad.sub_(p, alpha=wd)
        optimizer.step()
        return loss.detach(), logits.detach()


def fraction_option(name: str, v) -> float:
    return number(lo=0.0, hi=1.0)(name, v)


def l1_of(modules: Iterable[torch.nn.Module]) -> torch.Tensor:
    """``sum_l ||W_l||_1`` over the `weight` of `modules` (seed 004 Eq. 6)."""
    terms = [m.weight.abs().sum() for m in modules]
    return torch.stack(terms).sum() if terms else torch.zeros(())
