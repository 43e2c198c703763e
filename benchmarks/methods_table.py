"""Issue 11's table: every randomized-weight method trained from its digits config and attacked with
`fastnoise eval`, next to PGD-AT with the same budget (docs/methods.md "Results on digits").

For each method m and training seed s, exactly what a user runs:

    fastnoise train --config configs/digits_<m>.json --seed s --out-dir DIR/<m>-s<s> --quiet true
    fastnoise eval --checkpoint DIR/<m>-s<s> --attacks ... --eot 20 --draws 3 --out DIR/<m>-s<s>/eval

Seed 0 gets the whole protocol (clean, FGSM, PGD-20 under the seed protocol and under EOT-20,
AutoAttack rand with its full 100 iterations and Square, both on the first `--expensive` test images;
per-sample worst case); seeds 1.. get clean and PGD-20 EOT-20 (the column reported as mean ± std over the
seeds). Runs are resumable (a finished train or eval is skipped), `--jobs` of them at a time, one thread
each. Prints the markdown table and writes DIR/table.json.

    python benchmarks/methods_table.py [--methods pgd,ctrw,pni,rpf,rse,rsr,sal] [--seeds 3] [--jobs 2]
        [--out runs/methods_table] [--samples 0] [--expensive 100] [--square-queries 1000]
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("pgd", "ctrw", "pni", "rpf", "rse", "rsr", "sal")
FULL_ATTACKS = "fgsm,pgd20,autoattack_rand,square"


def _run(argv: list[str], log: Path) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", "fastnoise", *argv], env=env, stdout=f, stderr=subprocess.STDOUT,
                            cwd=ROOT).returncode
    if rc != 0:
        raise RuntimeError(f"`fastnoise {' '.join(argv)}` exited {rc}; see {log}")
    return time.perf_counter() - t0


def job(method: str, seed: int, out: Path, args) -> dict:
    run = out / f"{method}-s{seed}"
    run.mkdir(parents=True, exist_ok=True)
    if not (run / "last.json").is_file() or not (run / "train_seconds.txt").is_file():
        t = _run(["train", "--config", str(ROOT / "configs" / f"digits_{method}.json"), "--seed", str(seed),
                  "--out-dir", str(run), "--quiet", "true", "--overwrite"], run / "train.log")
        (run / "train_seconds.txt").write_text(f"{t:.1f}\n")
    ev = run / "eval"
    if not (ev / "results.json").is_file():
        full = seed == 0
        argv = ["eval", "--checkpoint", str(run), "--attacks", FULL_ATTACKS if full else "pgd20", "--eot", "20",
                "--draws", "3", "--protocol", "eot,seed" if full else "eot", "--out", str(ev), "--seed", "0"]
        if args.samples:
            argv += ["--max-samples", str(args.samples)]
        if full:
            argv += ["--attack-samples", f"autoattack_rand={args.expensive},square={args.expensive}",
                     "--steps", f"square={args.square_queries}"]
        else:
            argv += ["--no-sanity"]
        _run(argv, run / "eval.log")
    res = json.loads((ev / "results.json").read_text())
    meta = json.loads((run / "last.json").read_text())
    return {"method": method, "seed": seed, "train_s": float((run / "train_seconds.txt").read_text()),
            "epochs": meta.get("epoch"), "results": res}


def _acc(res: dict, attack: str, protocol: str):
    """(accuracy %, n) of `attack` under `protocol`; a deterministic model has one protocol for both."""
    for r in res["rows"]:
        if r["attack"] == attack and r["protocol"] in (protocol, "deterministic"):
            return r["accuracy"]["mean"] * 100, r["n"]
    return None, None


def table(rows: list[dict], methods, seeds: int) -> tuple[str, list[dict]]:
    out, lines = [], []
    lines.append("| method | clean | PGD-20 seed protocol | PGD-20 EOT-20 (mean ± std, %d seeds) | AutoAttack rand "
                 "| Square | FGSM | worst case | sanity (PGD eps 1) | train s (seed 0) | epochs | flags |" % seeds)
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        rs = sorted((r for r in rows if r["method"] == m), key=lambda r: r["seed"])
        if not rs:
            continue
        r0 = rs[0]["results"]
        eot = [_acc(r["results"], "pgd20", "eot")[0] for r in rs]
        eot = [v for v in eot if v is not None]
        worst = [w for w in r0["worst_case"] if w["protocol"] in ("eot", "deterministic")]
        rec = {"method": m, "clean": r0["clean"]["accuracy"]["mean"] * 100,
               "clean_seeds": [r["results"]["clean"]["accuracy"]["mean"] * 100 for r in rs],
               "pgd20_seed": _acc(r0, "pgd20", "seed")[0], "pgd20_eot": eot,
               "pgd20_eot_mean": statistics.mean(eot) if eot else None,
               "pgd20_eot_std": statistics.stdev(eot) if len(eot) > 1 else 0.0,
               "autoattack_rand": _acc(r0, "autoattack_rand", "eot"), "square": _acc(r0, "square", "eot"),
               "fgsm": _acc(r0, "fgsm", "eot")[0],
               "worst": (worst[0]["accuracy"]["mean"] * 100, worst[0]["n"]) if worst else (None, None),
               "sanity": (r0["sanity"] or {}).get("accuracy", {}).get("mean"),
               "train_s": [r["train_s"] for r in rs], "epochs": [r["epochs"] for r in rs],
               "warnings": r0.get("warnings", [])}
        out.append(rec)

        def f(v):
            return "-" if v is None else f"{v:.1f}"

        def fn(p):
            return "-" if p[0] is None else f"{p[0]:.1f} (n={p[1]})"
        lines.append(f"| {m} | {f(rec['clean'])} | {f(rec['pgd20_seed'])} | {f(rec['pgd20_eot_mean'])} ± "
                     f"{rec['pgd20_eot_std']:.1f} | {fn(rec['autoattack_rand'])} | {fn(rec['square'])} | {f(rec['fgsm'])} "
                     f"| {fn(rec['worst'])} | {f(None if rec['sanity'] is None else rec['sanity'] * 100)} "
                     f"| {rec['train_s'][0]:.0f} | {','.join(str(e) for e in rec['epochs'])} "
                     f"| {len(rec['warnings'])} |")
    return "\n".join(lines), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "methods_table")
    p.add_argument("--samples", type=int, default=0, help="test images for clean / FGSM / PGD-20 (0: all 359)")
    p.add_argument("--expensive", type=int, default=100, help="test images for AutoAttack rand and Square (seed 0)")
    p.add_argument("--square-queries", type=int, default=1000)
    args = p.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if not (ROOT / "configs" / f"digits_{m}.json").is_file()]
    if bad:
        raise SystemExit(f"no configs/digits_<method>.json for {bad}; valid: {list(METHODS)}")
    t0 = time.time()
    rows, failed = [], []
    # seed 0 first for every method (the full protocol), then the other seeds
    todo = [(m, s) for s in range(args.seeds) for m in methods]
    with cf.ThreadPoolExecutor(args.jobs) as ex:
        futs = {ex.submit(job, m, s, args.out, args): (m, s) for m, s in todo}
        for fut in cf.as_completed(futs):
            m, s = futs[fut]
            try:
                rows.append(fut.result())
                print(f"[methods_table] {m} seed {s}: done ({time.time() - t0:.0f} s)", flush=True)
            except Exception as e:  # one failure is reported, the others still run
                failed.append({"method": m, "seed": s, "error": str(e)})
                print(f"[methods_table] {m} seed {s}: FAILED {e}", flush=True)
    md, recs = table(rows, methods, args.seeds)
    print(md)
    for r in recs:
        for w in r["warnings"]:
            print(f"  {r['method']}: {w}")
    (args.out / "table.json").write_text(json.dumps({"rows": recs, "failed": failed, "seconds": time.time() - t0,
                                                      "markdown": md}, indent=2) + "\n")
    print(f"[methods_table] {time.time() - t0:.0f} s, load average {open('/proc/loadavg').read().split()[:3]}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
