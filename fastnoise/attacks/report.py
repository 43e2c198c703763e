"""Reports of `evaluate` results: results.json, results.md (Markdown table), PNG plots (matplotlib Agg)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Union

__all__ = ["format_table", "write_reports"]


def _acc(st: dict) -> str:
    if st is None or st.get("mean") is None or (isinstance(st["mean"], float) and math.isnan(st["mean"])):
        return "n/a"
    s = f"{100 * st['mean']:.1f}"
    if len(st.get("draws", [])) > 1:
        s += f" ± {100 * st['std']:.1f}"
    return s


def _eps(e) -> str:
    if e is None:
        return "—"
    frac = e * 255
    return f"{e:.4g}" + (f" ({round(frac)}/255)" if e > 0 and abs(frac - round(frac)) < 1e-6 else "")


def format_table(results: dict) -> str:
    """Markdown: settings, then one row per (attack, eps, protocol), worst case, EOT curve, sanity check."""
    s = results["settings"]
    N = s["n_samples"]
    lines = [f"Robust accuracy (%) of `{results['meta']['model']}` ({'randomized' if s['randomized'] else 'deterministic'}"
             f", {s['noise_modules']} noise modules, modes {s['noise_modes']}); mean ± std over {s['draws']} "
             f"inference draw(s) with fresh noise; n = samples evaluated (first n of {N})"
             + (f"; data: {s['dataset']}" if s.get("dataset") else "") + ".", "",
             "| attack | eps | protocol | n | accuracy % | fwd passes / sample | time s |",
             "|---|---|---|---|---|---|---|",
             f"| clean | — | {'fresh draws' if s['randomized'] else '—'} | {results['clean']['n']} | "
             f"{_acc(results['clean']['accuracy'])} | 1 | — |"]
    for r in results["rows"]:
        n = f"{r['n']}" + (" (subsampled)" if r["subsampled"] else "")
        eps = _eps(r["eps"]) if r["bounded"] else f"— ({r['norm']}, mean L2 {r['mean_l2']:.3g})"
        lines.append(f"| {r['attack']} | {eps} | {r['protocol_label']} | {n} | {_acc(r['accuracy'])} | "
                     f"{r['forwards_per_sample']:.0f} | {r['seconds']:.1f} |")
    for err in results.get("errors", []):
        eps = _eps(err["eps"]) if err["eps"] is not None else "—"
        lines.append(f"| {err['attack']} | {eps} | {err['protocol']} | — | **failed**: {err['error']} | — | — |")
    for w in results["worst_case"]:
        lines.append(f"| **worst case** ({', '.join(w['attacks'])}) | {_eps(w['eps'])} | {w['protocol']} | {w['n']} | "
                     f"**{_acc(w['accuracy'])}** (all draws: {100 * w['all_draws']:.1f}) | — | — |")
    c = results.get("eot_curve")
    if c:
        lines += ["", f"Accuracy vs EOT draws ({c['attack']}, eps {_eps(c['eps'])}, n = {c['n']}):", "",
                  "| EOT draws | accuracy % | fwd passes / sample |", "|---|---|---|"]
        lines += [f"| {p['eot']} | {_acc(p['accuracy'])} | {p['forwards_per_sample']:.0f} |" for p in c["points"]]
    sc = results.get("sanity")
    if sc:
        lines += ["", f"Sanity check: {sc['attack']} at eps {sc['eps']} ({sc['protocol']}, EOT {sc['eot']}, n = {sc['n']}): "
                  f"accuracy {_acc(sc['accuracy'])} % -> {'OK (about zero)' if sc['passed'] else 'FAILED: should be about zero (gradient masking?)'}"]
    warns = results.get("warnings") or []
    if warns:
        lines += [""] + [f"**Warning**: {w}" for w in warns]
    d = s.get("defense")
    if d:
        lines += ["", f"Defense: {d['method']} {d['options']} on {d['base']} (before conversion: test clean "
                  f"{100 * d['base_test_clean']:.1f} %, {d['base_test_attack']} {100 * d['base_test_robust']:.1f} %)."]
    notes = list(s.get("notes", []))
    if results.get("errors"):
        notes.append("failed attacks are listed with their error and left out of the worst case")
    if any(r["subsampled"] for r in results["rows"]):
        notes.append("rows marked (subsampled) ran on the first n test samples only (expensive attacks)")
    if "seed" in s["protocols"]:
        notes.append("the seed protocol (attack one draw, classify a fresh draw) over-credits randomized defenses; "
                     "the EOT rows are the headline numbers")
    if notes:
        lines += [""] + [f"Note: {n}" for n in notes]
    return "\n".join(lines)


def _plots(results: dict, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    files = []
    rows = [r for r in results["rows"] if r["bounded"]]
    if rows:
        fig, ax = plt.subplots(figsize=(6, 4))
        for (a, p) in dict.fromkeys((r["attack"], r["protocol"]) for r in rows):
            rr = sorted((r for r in rows if r["attack"] == a and r["protocol"] == p), key=lambda r: r["eps"])
            # eps = 0 is the clean accuracy (no perturbation is possible)
            xs = [0.0] + [r["eps"] for r in rr]
            ys = [results["clean"]["accuracy"]["mean"]] + [r["accuracy"]["mean"] for r in rr]
            es = [results["clean"]["accuracy"]["std"]] + [r["accuracy"]["std"] for r in rr]
            ax.errorbar(xs, [100 * v for v in ys], yerr=[100 * v for v in es], marker="o", capsize=3,
                        linestyle="-" if p != "seed" else "--", label=f"{a} ({p})")
        sc = results.get("sanity")
        if sc:
            ax.errorbar([sc["eps"]], [100 * sc["accuracy"]["mean"]], yerr=[100 * sc["accuracy"]["std"]], marker="x",
                        color="black", linestyle="none", capsize=3, label=f"sanity {sc['attack']} ({sc['protocol']})")
        ax.axhline(100 * results["clean"]["accuracy"]["mean"], color="gray", linestyle=":", label="clean")
        ax.set_xlabel("eps (L-inf)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 100)
        ax.set_title("Robust accuracy vs eps")
        ax.legend(fontsize=7)
        fig.tight_layout()
        files.append(out / "accuracy_vs_eps.png")
        fig.savefig(files[-1], dpi=100)
        plt.close(fig)
    c = results.get("eot_curve")
    if c:
        fig, ax = plt.subplots(figsize=(6, 4))
        pts = c["points"]
        ax.errorbar([p.get("draws_per_gradient", p["eot"]) for p in pts], [100 * p["accuracy"]["mean"] for p in pts],
                    yerr=[100 * p["accuracy"]["std"] for p in pts], marker="o", capsize=3)
        ax.set_xscale("log")
        ax.set_xlabel("EOT draws per gradient")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{c['attack']} at eps {c['eps']:.4g}: accuracy vs EOT draws")
        fig.tight_layout()
        files.append(out / "accuracy_vs_eot.png")
        fig.savefig(files[-1], dpi=100)
        plt.close(fig)
    return files


def write_reports(results: dict, out_dir: Union[str, Path]) -> dict:
    """Write results.json, results.md and the PNG plots into `out_dir`; returns {kind: path}."""
    if not isinstance(results, dict) or "rows" not in results or "settings" not in results:
        raise TypeError("results must be the dict returned by fastnoise.attacks.evaluate")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps(results, indent=2, allow_nan=True) + "\n")
    paths["markdown"].write_text("# fastnoise robust evaluation\n\n" + format_table(results) + "\n")
    for p in _plots(results, out):
        paths[p.stem] = p
    return {k: str(v) for k, v in paths.items()}
