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
"""
from __future__ import annotations

import datetime as _dt
import math
import platform
import time
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

import torch

from ..nn import is_randomized, noise_modules
from .registry import ATTACKS, check_eps, check_name, make_attack

__all__ = ["evaluate", "PROTOCOLS"]

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


def _collect(loader, n_max: Optional[int]) -> tuple[torch.Tensor, torch.Tensor, int]:
    if isinstance(loader, (tuple, list)) and len(loader) == 2 and isinstance(loader[0], torch.Tensor):
        x, y = loader
        bs = 128
    else:
        xs, ys, got = [], [], 0
        bs = getattr(loader, "batch_size", None) or 128
        for batch in loader:
            if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
                raise TypeError("loader must yield (x, y) batches")
            xb, yb = batch[0], batch[1]
            xs.append(xb)
            ys.append(torch.as_tensor(yb))
            got += len(xb)
            if n_max is not None and got >= n_max:
                break
        if not xs:
            raise ValueError("loader must yield at least one (x, y) batch, got none")
        x, y = torch.cat(xs), torch.cat(ys)
    if n_max is not None:
        x, y = x[:n_max], y[:n_max]
    if not x.is_floating_point():
        raise TypeError(f"loader's x must be a floating tensor in [0, 1], got {x.dtype}")
    if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ValueError(f"loader's x must lie in [0, 1] (attacks clamp to the image box), got "
                         f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")
    return x, y.long(), int(bs)


@torch.no_grad()
def _correct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int, draws: int,
             seed: int) -> torch.Tensor:
    """bool [draws, n]: prediction == label for `draws` independent inference passes (fresh noise)."""
    out = torch.zeros(draws, len(x), dtype=torch.bool)
    for d in range(draws):
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed + 7919 * d)  # torch-RNG noise layers; Philox layers advance their offsets
            for i in range(0, len(x), bs):
                out[d, i:i + bs] = (model(x[i:i + bs]).argmax(1) == y[i:i + bs]).cpu()
    return out


def _run_attack(model, name, eps, x, y, bs, *, eot, seed, n_classes, steps, kw, log) -> dict:
    atk = make_attack(name, model, eps, eot=eot, steps=steps, seed=seed, n_classes=n_classes, **kw)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    with torch.enable_grad():  # attacks need autograd even when evaluate() is called under no_grad
        advs = [atk(x[i:i + bs], y[i:i + bs]).detach() for i in range(0, len(x), bs)]
    secs = time.perf_counter() - t0
    adv = torch.cat(advs) if advs else x.clone()
    delta = (adv - x).flatten(1)
    return {"adv": adv, "seconds": secs, "calls": atk.forward_calls, "samples": atk.forward_samples,
            "linf": float(delta.abs().amax(1).mean()) if len(x) else 0.0,
            "l2": float(delta.norm(dim=1).mean()) if len(x) else 0.0, "describe": atk.describe()}


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
             method=None) -> dict:
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
    steps = dict(steps or {})
    for k in steps:
        check_name(k)
    attack_kwargs = dict(attack_kwargs or {})
    for k in attack_kwargs:
        check_name(k)
    lim = _limits(max_samples, attacks)
    device = torch.device(device)
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
                            steps, eot_curve, curve_attack, sanity_eps, sanity_threshold, attack_kwargs, n_classes, log)
            if spec is not None:
                res["settings"]["method"] = spec
            return res
    finally:
        model.train(was_training)


def _evaluate(model, x_all, y_all, bs, attacks, eps_list, eot, draws, protocols, lim, device, seed, steps, eot_curve,
              curve_attack, sanity_eps, sanity_threshold, attack_kwargs, n_classes, log) -> dict:
    N = len(x_all)
    randomized = is_randomized(model)
    notes = []
    if randomized:
        runs = [(p, eot if p == "eot" else 1) for p in protocols]
        n_draws = draws
    else:
        runs, n_draws = [("deterministic", 1)], 1
        notes.append("deterministic model (no active NoiseModule): one protocol, eot = 1, one inference draw")
    if n_classes is None:
        with torch.no_grad():
            n_classes = int(model(x_all[:1]).shape[1]) if N else 10
    t_start = time.perf_counter()

    clean = _correct(model, x_all, y_all, bs, n_draws, seed + 2)
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
                                    kw=attack_kwargs.get(a, {}), log=log)
                except Exception as exc:  # one attack's failure is recorded, the others still run
                    errors.append({"attack": a, "eps": e, "protocol": p, "error": f"{type(exc).__name__}: {exc}"})
                    log(f"[eval] {a} eps={e} {p}: FAILED ({errors[-1]['error']})")
                    continue
                corr = _correct(model, r["adv"], y_all[:n_a], bs, n_draws, seed + 2)
                correct_of[(a, e, p)] = corr
                st = _stats(corr)
                desc = r["describe"]
                rows.append({"attack": a, "norm": spec.norm, "eps": e, "bounded": spec.bounded, "protocol": p,
                             "protocol_label": PROTOCOL_LABELS[p].format(eot=e_eot), "eot": e_eot,
                             "eot_kind": desc["eot_kind"], "steps": desc["steps"], "n": n_a, "subsampled": n_a < N,
                             "accuracy": st, "forward_calls": r["calls"],
                             "forwards_per_sample": r["samples"] / n_a if n_a else 0.0,
                             "seconds": r["seconds"], "mean_linf": r["linf"], "mean_l2": r["l2"],
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
                            kw=attack_kwargs.get(curve_attack, {}), log=log)
            st = _stats(_correct(model, r["adv"], y_all[:n_c], bs, n_draws, seed + 3))
            pts.append({"eot": k, "accuracy": st, "forwards_per_sample": r["samples"] / max(n_c, 1),
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
                        n_classes=n_classes, steps=None, kw={}, log=log)
        st = _stats(_correct(model, r["adv"], y_all[:n_s], bs, n_draws, seed + 4))
        sanity = {"attack": "pgd20", "eps": sanity_eps, "protocol": p, "eot": e_eot, "n": n_s, "accuracy": st,
                  "threshold": sanity_threshold, "passed": bool(st["mean"] <= sanity_threshold)}
        log(f"[eval] sanity pgd20 eps={sanity_eps}: {st['mean']:.4f} "
            f"({'ok' if sanity['passed'] else 'FAILED: accuracy should be about 0'})")

    nm = noise_modules(model)
    return {
        "schema": 1,
        "meta": {**_meta(model, device), "seconds": time.perf_counter() - t_start},
        "settings": {"attacks": attacks, "eps": eps_list, "eot": eot, "draws": n_draws, "protocols": [p for p, _ in runs],
                     "seed": seed, "n_samples": N, "n_classes": n_classes, "randomized": randomized,
                     "noise_modules": len(nm), "noise_modes": sorted({m.noise_mode for m in nm}),
                     "max_samples": {k: v for k, v in lim.items()}, "notes": notes},
        "clean": {"n": N, "accuracy": clean_stats},
        "rows": rows,
        "errors": errors,
        "worst_case": worst,
        "eot_curve": curve,
        "sanity": sanity,
    }
