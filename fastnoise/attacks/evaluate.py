"""Honest robust evaluation of (randomized) models (DESIGN §7).

Protocols, for a model holding active noise (`fastnoise.nn.is_randomized`):

* ``"eot"`` (the headline): every attack runs against the EOT model (mean of `eot` noisy forward passes,
  see `fastnoise.attacks.registry`), noise on; the adversarial examples are then classified with
  `draws` fresh, independent noise draws. Robust accuracy = mean ± std over those draws.
* ``"seed"`` ("seed protocol", the protocol of the method papers): the attack sees one noise draw per
  forward pass (eot = 1), the adversarial examples are classified with fresh draws. Reported
  separately and labelled as such: it over-credits randomized defenses.

A deterministic model has one protocol (``"deterministic"``: eot = 1, one draw).
Per-sample worst case: a sample counts as robust in draw d only if it is classified correctly clean and
under every bounded attack at that eps in draw d; ``all_draws`` asks for every draw at once.
Sanity check: PGD-20 at a large eps (default 1.0, where any image can be reached) must bring the
accuracy to about zero (<= `sanity_threshold`); a defense that does not is masking gradients.
Each row reports the forward passes the attack used (per attacked sample, one per noise draw).

Inputs are validated before anything is attacked: x finite and in [0, 1]; y integer class indices of
shape [N] in [0, classes); the model's logits of shape [batch, classes] and finite on the clean inputs
(a ValueError otherwise: a model that is NaN on clean data has no accuracy to report).

NaN never counts as robustness. A sample counts as *not* robust (wrong) in a draw when its adversarial
input is not finite, when its logits are not finite (``argmax(NaN)`` is 0, which would match label 0),
or when the attack saw a non-finite gradient w.r.t. its input (NaN gradients make attack steps vanish
or vanish into NaN: gradient masking by numerics). Gradients are watched by `ForwardCounter`; a forward
pass whose rows are the attack batch maps row r to sample r, any other pass (an attack forwarding a subset,
a batched EOT repeat) marks every sample of the attack batch when one of its gradients is non-finite.
Rows report ``nonfinite_samples``: how many samples these rules counted wrong.
"""
from __future__ import annotations

import datetime as _dt
import math
import platform
import time
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

import torch

from ..nn import is_randomized, noise_modules
from ..nn.inference import draws_per_forward
from ..nn.draws import DEFAULT_MAX_BATCH, batchable, grouped
from .registry import ATTACKS, check_eps, check_name, make_attack, rows_finite

__all__ = ["evaluate", "PROTOCOLS", "consistency_warnings"]

PROTOCOLS = ("eot", "seed")
PROTOCOL_LABELS = {
    "eot": "EOT-{eot} (attack mean of {eot} draws; classify fresh draws)",
    "seed": "seed protocol (attack 1 draw; classify fresh draw)",
    "deterministic": "deterministic model",
}


def _stats(correct: torch.Tensor) -> dict:
    """correct: bool [draws, n] -> accuracy mean / std (over draws, unbiased when >1) / per draw."""
    per = correct.float().mean(dim=1) if correct.shape[1] > 0 else torch.full((correct.shape[0],), float("nan"))
    vals = [float(v) for v in per]
    std = float(per.std(unbiased=True)) if len(vals) > 1 else 0.0
    return {"mean": float(per.mean()), "std": std, "draws": vals}


def _as_list(v, name: str, check: Callable) -> list:
    if isinstance(v, str):
        v = [s.strip() for s in v.split(",") if s.strip()]
    elif not isinstance(v, (list, tuple)):
        v = [v]
    if len(v) == 0:
        raise ValueError(f"{name} must name at least one value, got an empty list")
    return [check(x) for x in v]


MAX_SEED = 2 ** 62  # seeds derived from it (seed + 7919 * draw + k) stay below torch's 2**63 limit


def _labels(y: object, n: int) -> torch.Tensor:
    """y as int64 [n] class indices; a TypeError / ValueError naming what is wrong (float, one-hot, shape)."""
    if not isinstance(y, torch.Tensor):
        try:
            y = torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"loader's y must be a tensor of integer class indices, got {type(y).__name__}") from None
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise TypeError(f"loader's y must hold integer class indices (e.g. int64), got {y.dtype}"
                        + ("; one-hot labels: pass y.argmax(1)" if y.dim() == 2 else "; whole-number floats: pass y.long()"))
    if y.dim() != 1 or len(y) != n:
        hint = "; one-hot labels: pass y.argmax(1)" if y.dim() == 2 and y.shape[0] == n else ""
        raise ValueError(f"loader's y must have shape [N] = [{n}] (one class index per sample), got "
                         f"{tuple(y.shape)}{hint}")
    return y.long()


def _check_logits(logits: object, rows: int, n_classes: int) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"model must return a logits tensor [N, classes], got {type(logits).__name__}")
    if logits.dim() != 2 or logits.shape[0] != rows or logits.shape[1] != n_classes:
        raise ValueError(f"model must return logits of shape [N, classes] = [{rows}, {n_classes}] for a batch of "
                         f"{rows}, got {tuple(logits.shape)}")
    return logits


def _collect(loader, n_max: Optional[int]) -> tuple[torch.Tensor, torch.Tensor, int]:
    if isinstance(loader, (tuple, list)) and len(loader) == 2 and isinstance(loader[0], torch.Tensor):
        x, y = loader
        bs = 128
    else:
        xs, ys, got = [], [], 0
        bs = getattr(loader, "batch_size", None) or 128
        if not hasattr(loader, "__iter__"):
            raise TypeError(f"loader must be an iterable of (x, y) batches or a tuple (x, y) of tensors, got "
                            f"{type(loader).__name__}")
        for batch in loader:
            if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
                raise TypeError("loader must yield (x, y) batches")
            xb, yb = batch[0], batch[1]
            if not isinstance(xb, torch.Tensor):
                raise TypeError(f"loader's x must be a floating tensor in [0, 1], got {type(xb).__name__}")
            xs.append(xb)
            ys.append(_labels(yb, len(xb)) if xb.dim() else yb)
            got += len(xb)
            if n_max is not None and got >= n_max:
                break
        if not xs:
            raise ValueError("loader must yield at least one (x, y) batch, got none")
        x, y = torch.cat(xs), torch.cat(ys)
    if not x.is_floating_point():
        raise TypeError(f"loader's x must be a floating tensor in [0, 1], got {x.dtype}")
    if x.dim() < 1:
        raise ValueError(f"loader's x must be a batch [N, ...], got a 0-d tensor")
    y = _labels(y, len(x))
    if n_max is not None:
        x, y = x[:n_max], y[:n_max]
    if x.numel():
        finite = rows_finite(x)
        if not bool(finite.all()):
            bad = (~finite).nonzero().flatten()
            raise ValueError(f"loader's x must be finite: {len(bad)} of {len(x)} samples hold NaN or inf "
                             f"(first: sample {int(bad[0])})")
        if float(x.min()) < 0 or float(x.max()) > 1:
            raise ValueError(f"loader's x must lie in [0, 1] (attacks clamp to the image box), got "
                             f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")
    return x, y, int(bs)


@torch.no_grad()
def _correct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int, draws: int,
             seed: int, n_classes: int, *, clean: bool = False, batch: Optional[bool] = None,
             max_batch: int = DEFAULT_MAX_BATCH) -> torch.Tensor:
    """bool [draws, n]: prediction == label for `draws` independent inference passes (fresh noise).

    Non-finite logits (and non-finite inputs) count as wrong; on the clean inputs (`clean`) they are an
    error instead (module docstring).

    The passes are the calls (draw d, batch i) in that order. When the model allows batched draws
    (`fastnoise.nn.draws.batchable`) consecutive calls of equal batch size run as one forward of their
    inputs concatenated (at most `max_batch` samples), as replica groups (`fastnoise.nn.draws.grouped`):
    the noise streams advance through the same elements in the same order, so the predictions are those
    of the sequential calls (per-element Philox layers draw nothing from torch's RNG, so the per-draw
    torch seeds are not needed there).
    """
    out = torch.zeros(draws, len(x), dtype=torch.bool)

    def judge(xb: torch.Tensor, yb: torch.Tensor, run: list) -> torch.Tensor:
        """bool [len(run), rows]: the verdicts of the calls `run` = [(draw, start)] on inputs xb (the
        rows of every call concatenated)."""
        ok_in = rows_finite(xb)
        if not clean:  # a broken adversarial input is never classified (and never robust)
            xb = torch.where(ok_in.view(-1, *([1] * (xb.dim() - 1))), xb,
                             torch.zeros((), dtype=xb.dtype, device=xb.device))
        if len(run) > 1:
            with grouped(len(run)):
                logits = _check_logits(model(xb), len(xb), n_classes)
        else:
            logits = _check_logits(model(xb), len(xb), n_classes)
        finite = torch.isfinite(logits).all(1)
        if clean and not bool(finite.all()):
            bad = int((~finite).nonzero().flatten()[0])
            d, i = run[bad // (len(xb) // len(run))]
            raise ValueError(f"model returned non-finite logits (NaN or inf) on {int((~finite).sum())} clean "
                             f"inputs of this batch (first: sample {i + bad % (len(xb) // len(run))}, draw {d}); "
                             f"a model that is not finite on clean data cannot be evaluated")
        return ((logits.argmax(1) == yb) & finite & ok_in).view(len(run), -1).cpu()

    if len(x) and draws > 1 and (batchable(model) if batch is None else batch):
        calls = [(d, i) for d in range(draws) for i in range(0, len(x), bs)]
        k = 0
        while k < len(calls):
            size = min(bs, len(x) - calls[k][1])
            run = [calls[k]]
            while (k + len(run) < len(calls) and min(bs, len(x) - calls[k + len(run)][1]) == size
                   and (len(run) + 1) * size <= max_batch):
                run.append(calls[k + len(run)])
            ok = judge(torch.cat([x[i:i + size] for _, i in run]), torch.cat([y[i:i + size] for _, i in run]), run)
            for r, (d, i) in enumerate(run):
                out[d, i:i + size] = ok[r]
            k += len(run)
        return out
    for d in range(draws):
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed + 7919 * d)  # torch-RNG noise layers; Philox layers advance their offsets
            for i in range(0, len(x), bs):
                out[d, i:i + bs] = judge(x[i:i + bs], y[i:i + bs], [(d, i)])[0]
    return out


def _grad_failures(flags: list, n: int) -> torch.Tensor:
    """bool [n]: samples of an attack batch whose attack saw a non-finite input gradient (module docstring)."""
    out = torch.zeros(n, dtype=torch.bool)
    for f in flags:
        f = f.cpu()
        if len(f) == n:
            out |= f
        elif bool(f.any()):  # rows that cannot be mapped to samples: the whole batch
            out[:] = True
    return out


def _run_attack(model, name, eps, x, y, bs, *, eot, seed, n_classes, steps, kw, log, batch_draws=None) -> dict:
    atk = make_attack(name, model, eps, eot=eot, steps=steps, seed=seed, n_classes=n_classes, eot_batch=batch_draws,
                      **kw)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    advs, grad_bad = [], []
    with torch.enable_grad():  # attacks need autograd even when evaluate() is called under no_grad
        for i in range(0, len(x), bs):
            atk.counter.grad_flags.clear()
            advs.append(atk(x[i:i + bs], y[i:i + bs]).detach())
            grad_bad.append(_grad_failures(atk.counter.grad_flags, len(advs[-1])))
    secs = time.perf_counter() - t0
    adv = torch.cat(advs) if advs else x.clone()
    delta = (adv - x).flatten(1)
    return {"adv": adv, "grad_failed": torch.cat(grad_bad) if grad_bad else torch.zeros(0, dtype=torch.bool),
            "seconds": secs, "calls": atk.forward_calls, "samples": atk.forward_samples,
            "linf": float(delta.abs().amax(1).mean()) if len(x) else 0.0,
            "l2": float(delta.norm(dim=1).mean()) if len(x) else 0.0, "describe": atk.describe()}


#: attacks that should never beat the strong white-box ones on the same model (one step, or no gradient)
WEAK_ATTACKS = ("fgsm", "square", "spsa")
#: multi-step white-box attacks
STRONG_ATTACKS = ("pgd20", "bim", "mifgsm", "difgsm", "tifgsm", "autoattack", "autoattack_rand")


def _margin(*stats: dict) -> float:
    """How much two accuracies may differ by chance: 1 point, or the sum of their std over draws."""
    return max(0.01, sum(st.get("std", 0.0) for st in stats))


def consistency_warnings(rows: list, clean: dict) -> list[str]:
    """The checks a randomized defense's report must pass (Athalye et al. 2018; Tramer et al. 2020): a weak
    attack (FGSM, score-based black-box) must not beat a strong white-box one on the same model, eps and
    protocol; robust accuracy must not rise with eps; no attack may leave accuracy above clean accuracy.
    Each failure is one line (differences within `_margin` of chance are not reported)."""
    out = []
    acc = {(r["attack"], r["eps"], r["protocol"]): r["accuracy"] for r in rows if r["bounded"]}
    for (a, e, p), st in acc.items():
        if a not in WEAK_ATTACKS:
            continue
        for s in STRONG_ATTACKS:
            ss = acc.get((s, e, p))
            if ss is not None and st["mean"] + _margin(st, ss) < ss["mean"]:
                out.append(f"{a} ({100 * st['mean']:.1f}%) beats the stronger white-box {s} ({100 * ss['mean']:.1f}%) "
                           f"at eps {e:.4g} ({p}): the white-box attack does not find the worst case (gradient "
                           f"masking, or too few EOT draws)")
    for a, p in dict.fromkeys((k[0], k[2]) for k in acc):
        pts = sorted((e, st) for (aa, e, pp), st in acc.items() if aa == a and pp == p)
        for (e0, s0), (e1, s1) in zip(pts, pts[1:]):
            if s1["mean"] > s0["mean"] + _margin(s0, s1):
                out.append(f"{a} ({p}): robust accuracy rises with eps ({100 * s0['mean']:.1f}% at {e0:.4g}, "
                           f"{100 * s1['mean']:.1f}% at {e1:.4g}): the attack is not converging")
    for r in rows:
        if r["accuracy"]["mean"] > clean["mean"] + _margin(r["accuracy"], clean):
            out.append(f"{r['attack']} ({r['protocol']}{', eps ' + format(r['eps'], '.4g') if r['bounded'] else ''}) "
                       f"leaves {100 * r['accuracy']['mean']:.1f}% accuracy, above the clean "
                       f"{100 * clean['mean']:.1f}%: the attack did not see the model as deployed")
    return out


def _limits(max_samples, attacks: list[str]) -> dict:
    if max_samples is None or isinstance(max_samples, int) and not isinstance(max_samples, bool):
        default, per = max_samples, {}
    elif isinstance(max_samples, Mapping):
        per = dict(max_samples)
        default = per.pop("default", None)
        for k in per:
            if k not in ATTACKS and k not in ("sanity", "eot_curve"):
                raise ValueError(f"max_samples keys must be attack names, 'default', 'sanity' or 'eot_curve', got {k!r}")
    else:
        raise TypeError(f"max_samples must be None, an int or a dict attack -> int, got {type(max_samples).__name__}")
    for k, v in [("default", default)] + list(per.items()):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"max_samples[{k!r}] must be None or an int >= 1, got {v!r}")
    return {"default": default, **per}


def _meta(model, device) -> dict:
    import importlib.metadata as md
    from .. import __version__
    try:
        ta = md.version("torchattacks")
    except md.PackageNotFoundError:  # pragma: no cover
        ta = None
    return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "fastnoise": __version__, "torch": torch.__version__, "torchattacks": ta,
            "python": platform.python_version(), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if str(device).startswith("cuda") else platform.processor() or platform.machine(),
            "model": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters())}


def evaluate(model: torch.nn.Module, loader: Union[Iterable, tuple], attacks: Union[str, Sequence[str]],
             eps: Union[float, Sequence[float]], *, eot: int = 20, draws: int = 5,
             protocol: Sequence[str] = ("eot", "seed"), max_samples: Union[None, int, Mapping[str, int]] = None,
             device: Union[str, torch.device] = "cpu", seed: int = 0, steps: Optional[Mapping[str, int]] = None,
             eot_curve: Optional[Sequence[int]] = None, curve_attack: str = "pgd20",
             sanity_eps: Optional[float] = 1.0, sanity_threshold: float = 0.05,
             attack_kwargs: Optional[Mapping[str, dict]] = None, n_classes: Optional[int] = None,
             batch_size: Optional[int] = None, log: Optional[Callable[[str], None]] = None,
             method=None, batch_draws: Optional[bool] = None) -> dict:
    """Robust accuracy of `model` on `loader` under `attacks` at each L-inf radius in `eps`.

    model: classifier on inputs in [0, 1] -> logits [N, classes]; NoiseModules keep their noise mode.
    loader: iterable of (x [N, ...] in [0, 1], y [N] int) batches, or a tuple (x, y) of tensors.
    attacks: names from `fastnoise.attacks.ATTACKS` (list or "pgd20,fgsm"); eps: float or list.
    eot: noise draws per attack gradient under the "eot" protocol; draws: inference draws for mean ± std.
    protocol: subset of ("eot", "seed") (see module doc). max_samples: None (all), an int, or a dict
    {attack | "default" | "sanity" | "eot_curve": n} (the first n samples of `loader`: subsets nest).
    steps: {attack: steps} overrides. eot_curve: EOT values for the accuracy-vs-EOT curve of
    `curve_attack` at the first eps (randomized models only). sanity_eps: None disables the sanity check.
    batch_size: attack / inference batch (default: the loader's, or 128 for a tensor tuple).
    method: the defense method `model` was converted with (a name or a `fastnoise.methods.Method`): the
    model is evaluated as the method deploys it (`Method.deploy`, e.g. RSE's ensemble) and the method's
    evaluation spec (stochastic, draws, inference rule, its paper's protocol) is recorded in the settings.
    batch_draws: run the EOT draws of each attack step and the inference draws as batched forwards (None:
    when the model allows it, `fastnoise.nn.draws.batchable`; the same results as sequential passes).
    Returns a JSON-able dict (see `write_reports`).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    spec = None
    if method is not None:
        from .. import methods as _methods
        m = _methods.get(method)
        model, spec = m.deploy(model), {"name": m.name, **m.evaluation.describe()}
    attacks = _as_list(attacks, "attacks", lambda a: check_name(a).name)
    if len(set(attacks)) != len(attacks):
        raise ValueError(f"attacks must not repeat a name, got {attacks}")
    eps_list = _as_list(eps, "eps", check_eps)
    for name, v, lo in (("eot", eot, 1), ("draws", draws, 1), ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    if seed > MAX_SEED:
        raise ValueError(f"seed must be an int in [0, 2**62], got {seed}")
    if n_classes is not None and (isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2):
        raise ValueError(f"n_classes must be None (from the model's logits) or an int >= 2, got {n_classes!r}")
    if isinstance(sanity_threshold, bool) or not isinstance(sanity_threshold, (int, float)) \
            or not 0 <= sanity_threshold <= 1:
        raise ValueError(f"sanity_threshold must be a number in [0, 1], got {sanity_threshold!r}")
    if log is not None and not callable(log):
        raise TypeError(f"log must be None or a callable taking a str, got {type(log).__name__}")
    protocols = _as_list(protocol, "protocol", lambda p: p)
    for p in protocols:
        if p not in PROTOCOLS:
            raise ValueError(f"protocol must be a subset of {PROTOCOLS}, got {p!r}")
    if sanity_eps is not None:
        sanity_eps = check_eps(sanity_eps, "sanity_eps")
    if eot_curve is not None:
        eot_curve = _as_list(eot_curve, "eot_curve", lambda v: v)
        for v in eot_curve:
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"eot_curve must hold ints >= 1, got {v!r}")
        check_name(curve_attack)
    if steps is not None and not isinstance(steps, Mapping):
        raise TypeError(f"steps must be None or a dict attack -> steps, got {type(steps).__name__}")
    steps = dict(steps or {})
    for k in steps:
        check_name(k)
    if attack_kwargs is not None and not isinstance(attack_kwargs, Mapping):
        raise TypeError(f"attack_kwargs must be None or a dict attack -> dict of options, got "
                        f"{type(attack_kwargs).__name__}")
    attack_kwargs = dict(attack_kwargs or {})
    for k, v in attack_kwargs.items():
        check_name(k)
        if not isinstance(v, Mapping) or not all(isinstance(o, str) for o in v):
            raise TypeError(f"attack_kwargs[{k!r}] must be a dict of torchattacks options, got {v!r}")
    lim = _limits(max_samples, attacks)
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from None
    # every attack is built once before anything runs: a bad steps / attack_kwargs value is an error here,
    # not a "failed attack" row after the others ran
    for a in set(attacks) | ({curve_attack} if eot_curve else set()):
        try:
            make_attack(a, model, eps_list[0], eot=eot, steps=steps.get(a), seed=seed, n_classes=n_classes or 10,
                        **dict(attack_kwargs.get(a, {})))
        except (TypeError, ValueError) as e:
            where = "steps" if a in steps and "steps" in str(e) else "attack_kwargs"
            raise type(e)(f"{where}[{a!r}]: {e}") from None
    log = log or (lambda s: None)

    needed = [lim.get(a, lim["default"]) for a in attacks]
    n_max = None if any(v is None for v in needed) else max(needed)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None or an int >= 1, got {batch_size!r}")
    x_all, y_all, bs = _collect(loader, n_max)
    bs = batch_size or bs
    x_all, y_all = x_all.to(device), y_all.to(device)
    was_training = model.training
    model = model.to(device).eval()
    try:  # seeded attacks and draws must not leave the caller's global RNG state changed
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            res = _evaluate(model, x_all, y_all, bs, attacks, eps_list, eot, draws, protocols, lim, device, seed,
                            steps, eot_curve, curve_attack, sanity_eps, sanity_threshold, attack_kwargs, n_classes, log,
                            batch_draws)
            if spec is not None:
                res["settings"]["method"] = spec
            return res
    finally:
        model.train(was_training)


def _evaluate(model, x_all, y_all, bs, attacks, eps_list, eot, draws, protocols, lim, device, seed, steps, eot_curve,
              curve_attack, sanity_eps, sanity_threshold, attack_kwargs, n_classes, log, batch_draws=None) -> dict:
    N = len(x_all)
    randomized = is_randomized(model)
    notes = []
    if randomized:
        # EOT counts noise draws per gradient: a deployed ensemble of k draws per forward (RSE's MeanSoftmax)
        # gets ceil(eot / k) passes, so every randomized model is attacked with >= eot draws per gradient
        k_draws = draws_per_forward(model)
        passes = -(-eot // k_draws)
        runs = [(p, passes if p == "eot" else 1) for p in protocols]
        n_draws = draws
        if k_draws > 1:
            notes.append(f"the deployed model averages {k_draws} noise draws per forward: EOT-{eot} = {passes} "
                         f"pass(es) of it per gradient ({passes * k_draws} draws); the EOT curve likewise (points "
                         f"below {k_draws} draws merge)")
            if eot_curve:
                eot_curve = sorted({-(-v // k_draws) for v in eot_curve})
    else:
        k_draws = 1
        runs, n_draws = [("deterministic", 1)], 1
        notes.append("deterministic model (no active NoiseModule): one protocol, eot = 1, one inference draw")
    if n_classes is None and N:
        with torch.no_grad():
            probe = model(x_all[:1])
        if not isinstance(probe, torch.Tensor):
            raise TypeError(f"model must return a logits tensor [N, classes], got {type(probe).__name__}")
        if probe.dim() != 2 or probe.shape[0] != 1 or probe.shape[1] < 2:
            raise ValueError(f"model must return logits of shape [N, classes] (classes >= 2); for a batch of 1 it "
                             f"returned {tuple(probe.shape)}")
        n_classes = int(probe.shape[1])
    n_classes = n_classes or 10
    if N and (int(y_all.min()) < 0 or int(y_all.max()) >= n_classes):
        raise ValueError(f"loader's y must be class indices in [0, {n_classes}) (the model's classes), got values in "
                         f"[{int(y_all.min())}, {int(y_all.max())}]")
    t_start = time.perf_counter()

    clean = _correct(model, x_all, y_all, bs, n_draws, seed + 2, n_classes, clean=True, batch=batch_draws)
    clean_stats = _stats(clean)
    log(f"[eval] clean: {clean_stats['mean']:.4f} ± {clean_stats['std']:.4f} (n={N}, {n_draws} draws)")

    rows, correct_of, errors = [], {}, []
    for a in attacks:
        spec = ATTACKS[a]
        n_a = min(N, lim.get(a, lim["default"]) or N)
        for e in (eps_list if spec.bounded else [None]):
            for p, e_eot in runs:
                try:
                    r = _run_attack(model, a, e if e is not None else 0.0, x_all[:n_a], y_all[:n_a], bs, eot=e_eot,
                                    seed=seed, n_classes=n_classes, steps=steps.get(a),
                                    kw=attack_kwargs.get(a, {}), log=log, batch_draws=batch_draws)
                except Exception as exc:  # one attack's failure is recorded, the others still run
                    errors.append({"attack": a, "eps": e, "protocol": p, "error": f"{type(exc).__name__}: {exc}"})
                    log(f"[eval] {a} eps={e} {p}: FAILED ({errors[-1]['error']})")
                    continue
                corr = _correct(model, r["adv"], y_all[:n_a], bs, n_draws, seed + 2, n_classes, batch=batch_draws)
                corr &= ~r["grad_failed"][None, :]  # a non-finite gradient is never robustness (module doc)
                nonfinite = int((~rows_finite(r["adv"]) | r["grad_failed"]).sum())
                correct_of[(a, e, p)] = corr
                st = _stats(corr)
                desc = r["describe"]
                rows.append({"attack": a, "norm": spec.norm, "eps": e, "bounded": spec.bounded, "protocol": p,
                             "protocol_label": PROTOCOL_LABELS[p].format(eot=e_eot * k_draws), "eot": e_eot,
                             "draws_per_gradient": e_eot * k_draws,
                             "eot_kind": desc["eot_kind"], "steps": desc["steps"], "n": n_a, "subsampled": n_a < N,
                             "accuracy": st, "forward_calls": r["calls"],
                             "forwards_per_sample": r["samples"] / n_a if n_a else 0.0,
                             "seconds": r["seconds"], "mean_linf": r["linf"], "mean_l2": r["l2"],
                             "nonfinite_samples": nonfinite,
                             "description": spec.description})
                log(f"[eval] {a} eps={e} {p} (eot {e_eot}, n={n_a}): {st['mean']:.4f} ± {st['std']:.4f}, "
                    f"{rows[-1]['forwards_per_sample']:.0f} fwd/sample, {r['seconds']:.1f}s")

    worst = []
    for e in eps_list:
        for p, _ in runs:
            keys = [(a, e, p) for a in attacks if ATTACKS[a].bounded and (a, e, p) in correct_of]
            if not keys:
                continue
            n = min(correct_of[k].shape[1] for k in keys)
            ok = clean[:, :n].clone()
            for k in keys:
                ok &= correct_of[k][:, :n]
            worst.append({"eps": e, "protocol": p, "attacks": [k[0] for k in keys], "n": n, "accuracy": _stats(ok),
                          "all_draws": float(ok.all(dim=0).float().mean()) if n else float("nan")})
    if any(not ATTACKS[a].bounded for a in attacks):
        notes.append("worst case excludes the minimal-norm L2 attacks (cw_l2, deepfool): their perturbation is "
                     "not bounded by eps")

    curve = None
    if eot_curve and randomized:
        n_c = min(N, lim.get("eot_curve", lim["default"]) or N)
        pts = []
        for k in eot_curve:
            r = _run_attack(model, curve_attack, eps_list[0], x_all[:n_c], y_all[:n_c], bs, eot=k, seed=seed,
                            n_classes=n_classes, steps=steps.get(curve_attack),
                            kw=attack_kwargs.get(curve_attack, {}), log=log, batch_draws=batch_draws)
            st = _stats(_correct(model, r["adv"], y_all[:n_c], bs, n_draws, seed + 3, n_classes, batch=batch_draws)
                        & ~r["grad_failed"][None, :])
            pts.append({"eot": k, "draws_per_gradient": k * k_draws, "accuracy": st,
                        "forwards_per_sample": r["samples"] / max(n_c, 1),
                        "seconds": r["seconds"]})
            log(f"[eval] EOT curve {curve_attack} eps={eps_list[0]} eot={k}: {st['mean']:.4f} ± {st['std']:.4f}")
        curve = {"attack": curve_attack, "eps": eps_list[0], "n": n_c, "points": pts}
    elif eot_curve:
        notes.append("EOT curve skipped: deterministic model")

    sanity = None
    if sanity_eps is not None:
        n_s = min(N, lim.get("sanity", min(lim["default"] or 64, 64)))
        p, e_eot = runs[0]
        r = _run_attack(model, "pgd20", sanity_eps, x_all[:n_s], y_all[:n_s], bs, eot=e_eot, seed=seed,
                        n_classes=n_classes, steps=None, kw={}, log=log, batch_draws=batch_draws)
        st = _stats(_correct(model, r["adv"], y_all[:n_s], bs, n_draws, seed + 4, n_classes, batch=batch_draws)
                    & ~r["grad_failed"][None, :])
        sanity = {"attack": "pgd20", "eps": sanity_eps, "protocol": p, "eot": e_eot, "n": n_s, "accuracy": st,
                  "threshold": sanity_threshold, "passed": bool(st["mean"] <= sanity_threshold)}
        log(f"[eval] sanity pgd20 eps={sanity_eps}: {st['mean']:.4f} "
            f"({'ok' if sanity['passed'] else 'FAILED: accuracy should be about 0'})")

    warnings = consistency_warnings(rows, clean_stats)
    for w in warnings:
        log(f"[eval] WARNING: {w}")
    nm = noise_modules(model)
    return {
        "schema": 1,
        "meta": {**_meta(model, device), "seconds": time.perf_counter() - t_start},
        "settings": {"attacks": attacks, "eps": eps_list, "eot": eot, "draws_per_forward": k_draws, "draws": n_draws,
                     "protocols": [p for p, _ in runs],
                     "seed": seed, "n_samples": N, "n_classes": n_classes, "randomized": randomized,
                     "noise_modules": len(nm), "noise_modes": sorted({m.noise_mode for m in nm}),
                     "batched_draws": bool(batchable(model) if batch_draws is None else batch_draws),
                     "max_samples": {k: v for k, v in lim.items()}, "notes": notes},
        "clean": {"n": N, "accuracy": clean_stats},
        "rows": rows,
        "errors": errors,
        "worst_case": worst,
        "eot_curve": curve,
        "sanity": sanity,
        "warnings": warnings,
    }
