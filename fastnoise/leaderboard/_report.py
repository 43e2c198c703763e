"""The leaderboard from the per-(entry, seed) results: aggregation, consistency flags, table, JSON, plots.

Aggregation over training seeds: for each number, ``mean`` and ``std`` (unbiased, 0 with one seed) of the
per-seed values (each the mean over inference draws) and ``draws_std``, the mean over seeds of the std
over inference draws. The rows are sorted by the worst-case robust accuracy at the headline eps.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Optional

SCHEMA = 1

#: (weaker, stronger): the weaker attack must not bring the accuracy lower than the stronger one
#: (a black-box or one-step attack beating the white-box ones is the signature of gradient masking)
ORDER = (("fgsm", "pgd20"), ("pgd20", "autoattack_rand"), ("square", "pgd20"), ("square", "autoattack_rand"))

LABELS = {"fgsm": "FGSM", "pgd20": "EOT PGD-20", "autoattack_rand": "AutoAttack rand", "square": "Square"}
NAMES = dict(LABELS, clean="clean", worst_case="worst case", seed_protocol="seed protocol")


def _agg(vals: list, stds: Optional[list] = None) -> Optional[dict]:
    vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None
    out = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
           "seeds": vals}
    if stds:
        out["draws_std"] = statistics.fmean(stds)
    return out


def _row(res: dict, attack: str) -> Optional[dict]:
    for r in res["rows"]:
        if r["attack"] == attack:
            return r
    return None


def _tol(n: int, draws_std: float) -> float:
    """Differences below this are noise: one sample of n, or two inference-draw stds."""
    return max(1.0 / max(n, 1), 2.0 * draws_std)


def _flags(r: dict) -> list[str]:
    """Consistency warnings of one seed's results (see ORDER; eps curve; sanity check; failed attacks)."""
    flags = []
    main = r["main"]
    for weak, strong in ORDER:
        a, b = _row(main, weak), _row(main, strong)
        if a is None or b is None:
            continue
        da, db = a["accuracy"], b["accuracy"]
        if da["mean"] < db["mean"] - _tol(min(a["n"], b["n"]), max(da["std"], db["std"])):
            flags.append(f"{weak} < {strong} ({100 * da['mean']:.1f} < {100 * db['mean']:.1f})")
    pts = _curve_points(r)
    for (e1, s1, n1), (e2, s2, n2) in zip(pts, pts[1:]):
        if s2["mean"] > s1["mean"] + _tol(min(n1, n2), max(s1["std"], s2["std"])):
            flags.append(f"accuracy rises with eps ({e1:.3g}: {100 * s1['mean']:.1f} -> {e2:.3g}: "
                         f"{100 * s2['mean']:.1f})")
    sc = main.get("sanity")
    if sc and not sc["passed"]:
        flags.append(f"sanity failed (PGD-20 eps {sc['eps']:.3g}: {100 * sc['accuracy']['mean']:.1f} > "
                     f"{100 * sc['threshold']:.0f})")
    for res in (main, r["curve"], (r["seed_protocol"] or {}).get("result") or {}):
        for err in res.get("errors", []):
            flags.append(f"{err['attack']} failed ({err['error'][:60]})")
    return flags


def _curve_points(r: dict) -> list:
    """[(eps, accuracy stats, n)] of PGD-20 (headline protocol), eps ascending, the headline eps from `main`."""
    pts = []
    for res in (r["main"], r["curve"]):
        for row in res["rows"]:
            if row["attack"] == "pgd20":
                pts.append((row["eps"], row["accuracy"], row["n"]))
    return sorted(pts, key=lambda p: p[0])


def _worst(res: dict, eps: float) -> Optional[dict]:
    for w in res.get("worst_case", []):
        if abs(w["eps"] - eps) < 1e-9:
            return w
    return None


def build(results: list, entries: list, seeds: int, dataset: str, budget, eps_list: list, meta: dict,
          failures: Optional[list] = None) -> dict:
    """The leaderboard dict (leaderboard.json) from the per-job results (and the failed jobs: listed, not ranked)."""
    rows = []
    for e in entries:
        rs = [r for r in results if r["entry"] == e.key]
        rs.sort(key=lambda r: r["seed"])
        if not rs:
            continue
        first = rs[0]
        stoch = bool(first["describe"]["evaluation"]["stochastic"])

        def acc(get):
            vals, stds = [], []
            for r in rs:
                st = get(r)
                vals.append(None if st is None else st["mean"])
                if st is not None:
                    stds.append(st.get("std", 0.0))
            return _agg(vals, stds)

        attacks = {a: acc(lambda r, a=a: (_row(r["main"], a) or {}).get("accuracy")) for a in LABELS}
        worst = acc(lambda r: (_worst(r["main"], r["eps"]) or {}).get("accuracy"))
        seed_acc = acc(lambda r: ((r["seed_protocol"]["result"] and _row(r["seed_protocol"]["result"], "pgd20"))
                                  or _row(r["main"], "pgd20") or {}).get("accuracy"))
        gap = _agg([None if (s is None or w is None) else s - w for s, w in
                    zip([((r["seed_protocol"]["result"] and _row(r["seed_protocol"]["result"], "pgd20"))
                          or _row(r["main"], "pgd20") or {}).get("accuracy", {}).get("mean") for r in rs],
                        [((_worst(r["main"], r["eps"]) or {}).get("accuracy") or {}).get("mean") for r in rs])])
        curve = []
        for i, eps in enumerate(eps_list):
            curve.append({"eps": eps, "accuracy": acc(lambda r, i=i: _curve_points(r)[i][1]
                                                      if i < len(_curve_points(r)) else None)})
        eot_curve = None
        if first["main"].get("eot_curve"):
            ks = [p.get("draws_per_gradient", p["eot"]) for p in first["main"]["eot_curve"]["points"]]
            eot_curve = {"attack": first["main"]["eot_curve"]["attack"], "eps": first["main"]["eot_curve"]["eps"],
                         "n": first["main"]["eot_curve"]["n"],
                         "points": [{"eot": k, "accuracy": acc(lambda r, j=j: r["main"]["eot_curve"]["points"][j]["accuracy"])}
                                    for j, k in enumerate(ks)]}
        fwd = {a: (_row(first["main"], a) or {}).get("forwards_per_sample") for a in LABELS}
        fwd["seed_protocol"] = ((first["seed_protocol"]["result"] and _row(first["seed_protocol"]["result"], "pgd20"))
                                or {}).get("forwards_per_sample")
        flags = sorted({f"seed {r['seed']}: {f}" if seeds > 1 else f for r in rs for f in _flags(r)})
        inf = first["inference"]
        train_s = [r["train"]["train_time_s"] + ((r.get("conversion") or {}).get("seconds") or 0.0) for r in rs]
        arch = first.get("architecture") or {"name": budget.model, "options": dict(budget.model_options),
                                              "source": "budget"}  # results written before the field existed
        rows.append({
            "entry": e.key, "label": e.label, "method": e.method, "description": e.description,
            "architecture": arch,
            "recipe": first["recipe"], "start": first["start"], "stochastic": stoch,
            "draw": first["describe"]["evaluation"]["draw"],
            "inference_rule": first["describe"]["evaluation"]["inference"],
            "seed_protocol": {"kind": first["seed_protocol"]["kind"],
                              "paper": first["seed_protocol"]["paper"]},
            "post_recipe": (first.get("conversion") or {}).get("post_recipe"),
            "seeds": [r["seed"] for r in rs],
            "accuracy": {"clean": acc(lambda r: r["main"]["clean"]["accuracy"]), **attacks, "worst_case": worst,
                         "seed_protocol": seed_acc, "all_draws_worst": _agg(
                             [(_worst(r["main"], r["eps"]) or {}).get("all_draws") for r in rs])},
            "gap_seed_minus_adaptive": gap,
            "eps_curve": curve, "eot_curve": eot_curve,
            "sanity": acc(lambda r: (r["main"].get("sanity") or {}).get("accuracy")),
            "n": {"clean": first["main"]["clean"]["n"], **{a: (_row(first["main"], a) or {}).get("n") for a in LABELS},
                  "worst_case": (_worst(first["main"], first["eps"]) or {}).get("n"),
                  "seed_protocol": ((first["seed_protocol"]["result"] or {}).get("settings") or {}).get("n_samples")},
            "forwards_per_sample": fwd,
            "cost": {"train_time_s": _agg(train_s), "eval_time_s": _agg([r.get("eval_seconds") for r in rs]),
                     "train_cpu_s": _agg([None if r["train"].get("train_cpu_s") is None else
                                          r["train"]["train_cpu_s"] + ((r.get("conversion") or {}).get("cpu_s") or 0.0)
                                          for r in rs]),
                     "eval_cpu_s": _agg([r.get("eval_cpu_seconds") for r in rs]),
                     "inference_ms_per_batch": _agg([r["inference"]["ms_per_batch"] for r in rs]),
                     "inference_batch": inf["batch"], "bitops_per_sample": inf.get("bitops"),
                     "dense_bitops_per_sample": inf.get("dense_bitops"), "cost_model": inf.get("cost_model")},
            "flags": flags,
        })
    key = lambda row: -(row["accuracy"]["worst_case"] or {"mean": -1})["mean"]  # noqa: E731
    rows.sort(key=key)
    return {"schema": SCHEMA, "format": "fastnoise-leaderboard-1", "dataset": dataset, "budget": budget.to_dict(),
            "eps": eps_list[budget.eps_factors.index(1.0)], "eps_curve": eps_list, "seeds": seeds, "meta": meta,
            "rows": rows, "failed": list(failures or [])}


# ---- text ----------------------------------------------------------------------------------------------

def _pct(st: Optional[dict], seeds: int, stoch: bool = False) -> str:
    if st is None:
        return "n/a"
    s = f"{100 * st['mean']:.1f}"
    if seeds > 1:
        s += f" ± {100 * st['std']:.1f}"
    if stoch and st.get("draws_std") is not None:
        s += f" [{100 * st['draws_std']:.1f}]"
    return s


def _si(v: Optional[float]) -> str:
    if v is None:
        return "—"
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= f:
            return f"{v / f:.3g}{unit}"
    return f"{v:.3g}"


def _opts(options: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in options.items()) + "}"


def _arch(a: dict) -> str:
    """The architecture cell: its name, *method's* when the method declared it (not the budget's)."""
    return a["name"] + (" (*method's*)" if a["source"] == "method" else "")


def format_table(board: dict) -> str:
    """The leaderboard as Markdown: one table sorted by worst-case robust accuracy, then the legend."""
    seeds, b = board["seeds"], board["budget"]
    eps = board["eps"]
    head = ["#", "method", "architecture", "training", "clean %", "seed protocol %", "EOT PGD-20 %", "AA rand %", "Square %",
            "worst case %", "seed − adaptive", "fwd/sample PGD · AA · Square", "train s (CPU s)", "infer ms/batch",
            "BitOPs/sample", "flags"]
    lines = [f"Leaderboard: {board['dataset']}, eps {eps:.4g} (L-inf), budget **{b['name']}**, {seeds} training seed(s), "
             f"{board['meta'].get('processes', 1)} process(es) on {board['meta'].get('device')}; commit "
             f"{board['meta'].get('commit')}, {board['meta'].get('date')}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(board["rows"], 1):
        a, st = r["accuracy"], r["stochastic"]
        f = r["forwards_per_sample"]
        fwd = " · ".join("—" if f.get(k) is None else f"{f[k]:.0f}" for k in ("pgd20", "autoattack_rand", "square"))
        g = r["gap_seed_minus_adaptive"]
        gap = "n/a" if g is None else f"{100 * g['mean']:+.1f}" + (f" ± {100 * g['std']:.1f}" if seeds > 1 else "")
        training = f"{r['recipe']}" + (" → convert" if r["start"] == "trained" else "")
        c = r["cost"]
        bit = _si(c["bitops_per_sample"]) + ("" if c["cost_model"] else " (dense)")
        lines.append("| " + " | ".join([
            str(i), f"**{r['label']}**" + (" (rand)" if st else ""), _arch(r["architecture"]), training, _pct(a["clean"], seeds, st),
            _pct(a["seed_protocol"], seeds, st), _pct(a["pgd20"], seeds, st), _pct(a["autoattack_rand"], seeds, st),
            _pct(a["square"], seeds, st), f"**{_pct(a['worst_case'], seeds, st)}**", gap, fwd,
            (f"{c['train_time_s']['mean']:.0f}" if c["train_time_s"] else "—")
            + (f" ({c['train_cpu_s']['mean']:.0f})" if c.get("train_cpu_s") else ""),
            f"{c['inference_ms_per_batch']['mean']:.1f}" if c["inference_ms_per_batch"] else "—", bit,
            "; ".join(r["flags"]) if r["flags"] else "—"]) + " |")
    for f in board.get("failed", []):
        lines.append(f"| — | **{f['label']}** | {f['stage']} failed (seed {f['seed']}): {f['error'][:200]} |"
                     + " |" * (len(head) - 3))
    lines += ["", "Accuracy (%) vs eps, PGD-20 under the headline protocol (eps 0 = clean):", "",
              "| method | " + " | ".join(["0"] + [f"{e:.3g}" for e in board["eps_curve"]]) + " |",
              "|" + "---|" * (len(board["eps_curve"]) + 2)]
    for r in board["rows"]:
        lines.append(f"| {r['label']} | {_pct(r['accuracy']['clean'], seeds)} | "
                     + " | ".join(_pct(p["accuracy"], seeds) for p in r["eps_curve"]) + " |")
    own = [r for r in board["rows"] if r["architecture"]["source"] == "method"]
    arch_note = (f"Architecture: the budget's ({b['model']} {_opts(b['model_options'])}) for every row"
                 + ("; except " + "; ".join(f"{r['label']}: {r['architecture']['name']} "
                                             f"{_opts(r['architecture']['options'])}" for r in own)
                    + ", the architecture the method declares (`TrainingRecipe.model`; marked *method's*): a "
                      "different network, so its numbers are not those of the budget's architecture" if own else "")
                 + ".")
    lines += ["", f"Budget: {b['description']}.", "", arch_note, "",
              "Legend: *seed protocol* = the method paper's own evaluation (per row: "
              + "; ".join(f"{r['label']}: {r['seed_protocol']['kind']}" for r in board["rows"] if r["stochastic"]
                          or r["seed_protocol"]["kind"] != "deterministic: PGD-20 as is")
              + "; deterministic rows without their own protocol: PGD-20 as is). *Adaptive* = the attacks run on "
              "the model as deployed (its inference rule), noise on, EOT-" + str(b["eot"]) + " (mean logits of "
              + str(b["eot"]) + " noise draws per gradient; a deployed ensemble of k draws per forward, e.g. RSE's, is "
              "run ceil(" + str(b["eot"]) + " / k) times per gradient; AutoAttack rand: EOT inside APGD, " + str(b["aa_iterations"])
              + " iterations), classified with fresh draws. *Worst case* = per sample, correct clean and under every "
              "bounded attack (FGSM, PGD-20, AutoAttack rand, Square) in the same inference draw, on the samples all of "
              "them ran on. *seed − adaptive* = seed-protocol accuracy − worst case, in points: how much the paper's "
              "protocol over-credits the defense. Values: mean over inference draws"
              + (" ± std over training seeds" if seeds > 1 else "") + "; [brackets]: std over inference draws "
              "(randomized models, marked (rand)). fwd/sample: forward passes of the defended model per attacked "
              "sample. train s: training wall time (+ post-conversion recipe), CPU seconds in brackets (the wall time "
              "depends on the machine's load). infer ms/batch: measured forward of the deployed "
              f"model on a batch of {board['rows'][0]['cost']['inference_batch'] if board['rows'] else '-'}. BitOPs: "
              "`fastnoise.bitops` of the deployed model (the method's cost model; (dense): no cost model, every "
              "conv / linear exact). Flags: a weaker attack beating a stronger one, accuracy rising with eps, the "
              "eps-1 sanity check not reaching ~0, a failed attack."]
    n = board["rows"][0]["n"] if board["rows"] else {}
    lines += ["", "Samples: " + ", ".join(f"{NAMES.get(k, k)} {v}" for k, v in n.items() if v is not None)
              + " (the first n test samples)."]
    return "\n".join(lines)


def summary(board: dict) -> str:
    """Two plain-language lines: which defense holds up best, and which one its paper over-credits most."""
    rows = [r for r in board["rows"] if r["accuracy"]["worst_case"] is not None]
    if not rows:
        return "No entry was evaluated."
    best = rows[0]
    by = {r["entry"]: r for r in rows}

    def w(r):
        return 100 * r["accuracy"]["worst_case"]["mean"]

    base = [f"PGD-AT {w(by['none']):.1f}%"] if "none" in by else []
    if "standard" in by:
        base.append(f"standard training {w(by['standard']):.1f}%")
    l1 = (f"Most robust under adaptive attacks: {best['label']} ({w(best):.1f}% worst-case robust accuracy at eps "
          f"{board['eps']:.3g}, {100 * best['accuracy']['clean']['mean']:.1f}% clean)"
          + (f"; baselines: {', '.join(base)}" if base else "") + ".")
    gaps = [r for r in rows if r["gap_seed_minus_adaptive"] is not None]
    if gaps:
        g = max(gaps, key=lambda r: r["gap_seed_minus_adaptive"]["mean"])
        s = g["accuracy"]["seed_protocol"]
        l2 = (f"Largest over-credit by its paper's protocol: {g['label']} ({100 * s['mean']:.1f}% seed protocol vs "
              f"{w(g):.1f}% adaptive worst case, {100 * g['gap_seed_minus_adaptive']['mean']:+.1f} points)"
              + (f"; {sum(1 for r in rows if r['flags'])} row(s) flagged inconsistent." if any(r["flags"] for r in rows)
                 else "; no consistency flags."))
    else:
        l2 = "No seed-protocol numbers."
    if board.get("failed"):
        l2 += f" {len(board['failed'])} job(s) failed (listed in the table)."
    return l1 + "\n" + l2


# ---- plots ---------------------------------------------------------------------------------------------

def _plots(board: dict, out: Path) -> dict:
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = board["rows"]
    files = {}
    colors = {r["entry"]: plt.cm.tab10(i % 10) for i, r in enumerate(rows)}

    def save(fig, name):
        fig.tight_layout()
        files[name] = str(out / f"{name}.png")
        fig.savefig(files[name], dpi=110)
        plt.close(fig)

    def ms(st):
        return (100 * st["mean"], 100 * max(st["std"], st.get("draws_std", 0.0))) if st else (float("nan"), 0.0)

    # 1. robust vs clean
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for r in rows:
        (cx, ce), (wy, we) = ms(r["accuracy"]["clean"]), ms(r["accuracy"]["worst_case"])
        ax.errorbar([cx], [wy], xerr=[ce], yerr=[we], marker="s" if r["stochastic"] else "o", capsize=3,
                    color=colors[r["entry"]], linestyle="none", label=r["label"])
        ax.annotate(r["label"], (cx, wy), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel(f"worst-case robust accuracy (%) at eps {board['eps']:.3g}")
    ax.set_title("Robust vs clean accuracy (square: randomized)")
    ax.legend(fontsize=7, loc="best")
    save(fig, "robust_vs_clean")

    # 2. seed protocol vs adaptive
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(rows) + 2), 4.4))
    kinds = [("seed_protocol", "seed protocol"), ("pgd20", "EOT PGD-20"), ("autoattack_rand", "AutoAttack rand"),
             ("worst_case", "worst case")]
    w = 0.8 / len(kinds)
    for j, (k, lab) in enumerate(kinds):
        vals = [ms(r["accuracy"][k]) for r in rows]
        ax.bar([i + (j - 1.5) * w for i in range(len(rows))], [v[0] for v in vals], w, yerr=[v[1] for v in vals],
               capsize=2, label=lab)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["label"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"accuracy (%) at eps {board['eps']:.3g}")
    ax.set_ylim(0, 100)
    ax.set_title("The paper's protocol vs adaptive attacks")
    ax.legend(fontsize=7)
    save(fig, "seed_vs_adaptive")

    # 3. accuracy vs eps
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for r in rows:
        pts = [(0.0, r["accuracy"]["clean"])] + [(p["eps"], p["accuracy"]) for p in r["eps_curve"]]
        pts = [(e, ms(s)) for e, s in pts if s is not None]
        ax.errorbar([p[0] for p in pts], [p[1][0] for p in pts], yerr=[p[1][1] for p in pts], marker="o", capsize=2,
                    color=colors[r["entry"]], linestyle="--" if r["stochastic"] else "-", label=r["label"])
    ax.set_xlabel("eps (L-inf)")
    ax.set_ylabel("accuracy under EOT PGD-20 (%)")
    ax.set_ylim(-2, 100)
    ax.set_title("Accuracy vs eps (dashed: randomized)")
    ax.legend(fontsize=7)
    save(fig, "accuracy_vs_eps")

    # 4. accuracy vs EOT draws
    rand = [r for r in rows if r["eot_curve"]]
    if rand:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for r in rand:
            pts = [(p.get("draws_per_gradient", p["eot"]), ms(p["accuracy"])) for p in r["eot_curve"]["points"]]
            ax.errorbar([p[0] for p in pts], [p[1][0] for p in pts], yerr=[p[1][1] for p in pts], marker="o",
                        capsize=2, color=colors[r["entry"]], label=r["label"])
        ax.set_xscale("log")
        ax.set_xlabel("EOT draws per attack gradient")
        ax.set_ylabel("accuracy under PGD-20 (%)")
        ax.set_ylim(-2, 100)
        ax.set_title(f"Randomized defenses: accuracy vs EOT draws (eps {board['eps']:.3g})")
        ax.legend(fontsize=7)
        save(fig, "accuracy_vs_eot")

    # 5. robust accuracy vs inference cost
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for r in rows:
        c = r["cost"]["inference_ms_per_batch"]
        if c is None:
            continue
        wy, we = ms(r["accuracy"]["worst_case"])
        ax.errorbar([c["mean"]], [wy], yerr=[we], marker="s" if r["stochastic"] else "o", capsize=3,
                    color=colors[r["entry"]], linestyle="none", label=r["label"])
        ax.annotate(r["label"], (c["mean"], wy), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(f"inference time (ms per batch of {rows[0]['cost']['inference_batch'] if rows else '-'}, measured)")
    ax.set_ylabel("worst-case robust accuracy (%)")
    ax.set_title("Robust accuracy vs inference cost")
    ax.legend(fontsize=7)
    save(fig, "robust_vs_cost")
    return files


def write(board: dict, out: Path) -> dict:
    """leaderboard.json, leaderboard.md and the PNG plots in `out`; returns {kind: path}."""
    import os
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": str(out / "leaderboard.json"), "markdown": str(out / "leaderboard.md")}
    paths.update(_plots(board, out))
    board = dict(board, paths=paths)
    for p, text in ((paths["json"], json.dumps(board, indent=1, allow_nan=True) + "\n"),
                    (paths["markdown"], "# fastnoise leaderboard\n\n" + format_table(board) + "\n\n"
                     + summary(board).replace("\n", "\n\n") + "\n")):
        tmp = f"{p}.tmp{os.getpid()}"
        Path(tmp).write_text(text)
        os.replace(tmp, p)
    return paths
