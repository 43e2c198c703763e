"""The consistency checks of robust-evaluation results: the one source of the evaluation report's warnings
(`fastnoise.attacks.evaluate.consistency_warnings`, ``results["warnings"]``) and of the leaderboard's flags
(`fastnoise.leaderboard`, the table's last column; docs/robustness.md "Consistency flags", design note 57).

A randomized defense's numbers must pass these (Athalye et al. 2018; Tramer et al. 2020): each failure is
the signature of an attack that does not see the model as deployed (gradient masking, too few EOT draws):

* ``weaker_beats_stronger``: a weaker attack must not bring the accuracy lower than a stronger one on the
  same eps and protocol (`ORDER`: FGSM, Square or SPSA below a multi-step white-box attack, PGD-20 below
  AutoAttack rand; a stronger attack below a weaker one is fine);
* ``rises_with_eps``: the robust accuracy of one attack and protocol must not rise with eps;
* ``above_clean``: no attack may leave the accuracy above the clean accuracy;
* ``sanity_failed``: PGD-20 at eps 1 must bring the accuracy to about 0 (its threshold, evaluate's
  ``sanity_threshold``);
* ``attack_failed``: an attack raised (listed, left out of the comparisons).

The comparisons share one rule: a difference smaller than one sample (1 / n, n the smaller sample count of
the two numbers), two inference-draw stds (the larger std over draws of the two) or, when the two numbers
come from different sample counts (an expensive attack on the first n_s of n images), two standard errors
of a subset's accuracy around the full set's, ``2 sqrt(p (1 - p) (1 / n_s - 1 / n))`` (p their mean
accuracy), is not flagged (`tolerance`): AutoAttack on 32 images at 78% against PGD-20 on 128 at 73% is
sampling, not masking.

    res = fastnoise.attacks.evaluate(model, loader, ["fgsm", "pgd20"], 8 / 255)
    for f in consistency_checks(res["rows"], res["clean"]["accuracy"], res["sanity"], res["errors"]):
        print(f.kind, f.flag)          # e.g. weaker_beats_stronger fgsm < pgd20 (31.0 < 48.5)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Optional

__all__ = ["Inconsistency", "consistency_checks", "tolerance", "ORDER", "WEAK_ATTACKS", "STRONG_ATTACKS", "KINDS"]

#: attacks that should never beat the strong white-box ones on the same model (one step, or no gradient)
WEAK_ATTACKS = ("fgsm", "square", "spsa")
#: multi-step white-box attacks
STRONG_ATTACKS = ("pgd20", "bim", "mifgsm", "difgsm", "tifgsm", "autoattack", "autoattack_rand")
#: (weaker, stronger): the weaker attack must not bring the accuracy lower than the stronger one
ORDER = tuple((w, s) for w in WEAK_ATTACKS for s in STRONG_ATTACKS) + (("pgd20", "autoattack_rand"),)
KINDS = ("weaker_beats_stronger", "rises_with_eps", "above_clean", "sanity_failed", "attack_failed")


@dataclasses.dataclass(frozen=True)
class Inconsistency:
    """One failed check: `kind` (one of KINDS), `flag` (short: the leaderboard's column) and `warning`
    (one sentence with the likely cause: the evaluation report)."""
    kind: str
    flag: str
    warning: str


def tolerance(n: Optional[int], *stds: Optional[float], n_other: Optional[int] = None, p: float = 0.5) -> float:
    """Differences below this are noise: one sample of n (the smaller sample count), two inference-draw
    stds (the larger of `stds`), and for numbers over n and `n_other` samples (a prefix of n_s = min of
    the two inside the other), two standard errors of the subset's accuracy around the whole's at accuracy
    p: ``2 sqrt(p (1 - p) (1 / n_s - 1 / n_l))``."""
    tol = max(1.0 / max(int(n or 1), 1), 2.0 * max([float(s or 0.0) for s in stds] or [0.0]))
    if n and n_other and int(n_other) != int(n):
        lo, hi = sorted((int(n), int(n_other)))
        p = min(max(float(p), 0.0), 1.0)
        tol = max(tol, 2.0 * math.sqrt(p * (1.0 - p) * (1.0 / lo - 1.0 / hi)))
    return tol


def _eps(e) -> str:
    return "—" if e is None else format(e, ".4g")


def consistency_checks(rows: Iterable[dict], clean: Optional[dict] = None, sanity: Optional[dict] = None,
                       errors: Iterable[dict] = ()) -> list[Inconsistency]:
    """Every failed check of one model's results, in the order of KINDS.

    rows: evaluate's result rows (``attack``, ``eps``, ``n``, ``accuracy`` = {mean, std over draws}; optional
    ``protocol`` (default: one protocol) and ``bounded`` (default True; unbounded attacks are left out of the
    eps comparisons)); rows of several evaluate calls of one model may be joined (the leaderboard's headline
    and eps-curve runs). clean: the clean accuracy {mean, std} (None: no above-clean check). sanity: evaluate's
    ``results["sanity"]`` ({passed, eps, accuracy, threshold}; None: no check). errors: evaluate's
    ``results["errors"]`` ({attack, error}).
    """
    rows = list(rows)
    out: list[Inconsistency] = []
    acc = {(r["attack"], r["eps"], r.get("protocol")): r for r in rows if r.get("bounded", True)}

    def below(a: dict, b: dict) -> bool:  # a's accuracy lower than b's by more than the tolerance
        sa, sb = a["accuracy"], b["accuracy"]
        return sa["mean"] < sb["mean"] - tolerance(min(a["n"], b["n"]), sa.get("std"), sb.get("std"),
                                                   n_other=max(a["n"], b["n"]), p=(sa["mean"] + sb["mean"]) / 2)

    for weak, strong in ORDER:
        for (a, e, p), rw in acc.items():
            rs = acc.get((strong, e, p))
            if a != weak or rs is None or not below(rw, rs):
                continue
            mw, ms = 100 * rw["accuracy"]["mean"], 100 * rs["accuracy"]["mean"]
            where = f"eps {_eps(e)}" + (f" ({p})" if p is not None else "")
            out.append(Inconsistency(
                "weaker_beats_stronger", f"{weak} < {strong} ({mw:.1f} < {ms:.1f})",
                f"{weak} ({mw:.1f}%) beats the stronger white-box {strong} ({ms:.1f}%) at {where}: the white-box "
                f"attack does not find the worst case (gradient masking, or too few EOT draws)"))
    for a, p in dict.fromkeys((k[0], k[2]) for k in acc):
        pts = sorted(((e, r) for (aa, e, pp), r in acc.items() if aa == a and pp == p and e is not None),
                     key=lambda t: t[0])
        for (e0, r0), (e1, r1) in zip(pts, pts[1:]):
            if not below(r0, r1):
                continue
            m0, m1 = 100 * r0["accuracy"]["mean"], 100 * r1["accuracy"]["mean"]
            label = a + (f" ({p})" if p is not None else "")
            out.append(Inconsistency(
                "rises_with_eps", f"{a} accuracy rises with eps ({e0:.3g}: {m0:.1f} -> {e1:.3g}: {m1:.1f})",
                f"{label}: robust accuracy rises with eps ({m0:.1f}% at {e0:.4g}, {m1:.1f}% at {e1:.4g}): the "
                f"attack is not converging"))
    if clean is not None:
        for r in rows:
            c = {"n": r["n"], "accuracy": clean}
            if not below(c, r):
                continue
            m, mc = 100 * r["accuracy"]["mean"], 100 * clean["mean"]
            where = (r.get("protocol") or "") + (f", eps {_eps(r['eps'])}" if r.get("bounded", True) else "")
            label = r["attack"] + (f" ({where.lstrip(', ')})" if where else "")
            out.append(Inconsistency(
                "above_clean", f"{r['attack']} above clean ({m:.1f} > {mc:.1f})",
                f"{label} leaves {m:.1f}% accuracy, above the clean {mc:.1f}%: the attack did not see the model "
                f"as deployed"))
    if sanity and not sanity["passed"]:
        m, th = 100 * sanity["accuracy"]["mean"], 100 * sanity["threshold"]
        out.append(Inconsistency(
            "sanity_failed", f"sanity failed (PGD-20 eps {sanity['eps']:.3g}: {m:.1f} > {th:.0f})",
            f"the sanity check failed: PGD-20 at eps {sanity['eps']:.4g} leaves {m:.1f}% accuracy (more than "
            f"{th:.0f}%): an attack this large should reach about 0, the gradients are masked"))
    for err in errors:
        out.append(Inconsistency(
            "attack_failed", f"{err['attack']} failed ({err['error'][:60]})",
            f"{err['attack']} failed ({err['error']}): left out of the checks and the worst case"))
    return out
