"""The CPU capability builds of the C++ kernels (generic / avx2 / avx512 / native) timed side by side.

One build can be loaded per process, so each capability runs benchmarks/run.py in its own process with
FASTNOISE_CPU_CAPABILITY set, op after op (the capabilities of one op run back to back, in alternating
order over --rounds); torch.compile variants are left out (they do not use the C++ kernels). Speed-ups are
taken against the eager `reference` timed in the same process (it uses no fastnoise kernel), which cancels
drifts of the machine's speed between processes; each row keeps its best round. Rows are appended to
results/bench.csv with their `cpu_capability`.

    python benchmarks/cpu_capabilities.py [--ops noise_add,mask_blend,ternary_projection,nenni]
        [--caps generic,avx2] [--rounds 2] [--min-run-time 0.3] [--quick]
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks import _common  # noqa: E402
from benchmarks.run import discover  # noqa: E402
from fastnoise import _ext  # noqa: E402

DEFAULT_OPS = "noise_add,mask_blend,ternary_projection,nenni"


def run_capability(op: str, cap: str, args: argparse.Namespace, tmp: Path) -> list[dict]:
    out = tmp / f"{op}-{cap}"
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FASTNOISE_CPU_CAPABILITY": cap, "FASTNOISE_RESULTS": str(out)}
    cmd = [sys.executable, str(HERE / "run.py"), "--ops", op, "--device", "cpu", "--exclude-variants",
           "compile(reference)", "--min-run-time", str(args.min_run_time)] + (["--quick"] if args.quick else [])
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{op} with {cap} failed:\n{r.stderr[-3000:]}")
    with (out / "bench.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(row["cpu_capability"] == cap for row in rows), f"{op}: a row was not timed with {cap}"
    return rows


def table(rows: list[dict], caps: list[str]) -> str:
    """One line per (op, case, pass, variant): the fastest round's median ms per capability, and the speed-up
    over the first capability measured against the eager reference timed in the same process (t / t_reference
    of that process and case), so that drifts of the machine's speed between processes cancel."""
    ref = {(r["op"], r["case"], r["pass"], r["cpu_capability"], r["timestamp"]): float(r["median_ms"])
           for r in rows if r["variant"] == "reference"}
    best: dict = {}
    for r in rows:
        key = (r["op"], r["case"], r["pass"], r["variant"])
        t = float(r["median_ms"])
        norm = t / ref[(r["op"], r["case"], r["pass"], r["cpu_capability"], r["timestamp"])]
        cur = best.setdefault(key, {}).get(r["cpu_capability"])
        if cur is None or norm < cur[1]:
            best[key][r["cpu_capability"]] = (t, norm)
    base = caps[0]
    head = ["op", "case", "pass", "variant"] + [f"{c} ms" for c in caps] + [f"x {c} vs {base}" for c in caps[1:]]
    lines = [head]
    for (op, case, pas, var), t in best.items():
        if var == "reference":
            continue
        lines.append([op, case, pas, var] + [f"{t[c][0]:.2f}" if c in t else "" for c in caps] +
                     [f"{t[base][1] / t[c][1]:.2f}" if c in t and base in t else "" for c in caps[1:]])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    fmt = lambda row: "| " + " | ".join(x.ljust(w) for x, w in zip(row, widths)) + " |"
    return "\n".join([fmt(lines[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(r) for r in lines[1:]])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", default=DEFAULT_OPS, help=f"comma-separated subset of {discover()}")
    p.add_argument("--caps", default=None, help="capabilities to compare (default: every one this CPU supports, "
                                                "slowest first)")
    p.add_argument("--min-run-time", type=float, default=0.3)
    p.add_argument("--rounds", type=int, default=1, help="repeat every (op, capability) run; the fastest counts")
    p.add_argument("--quick", action="store_true", help="small shapes (smoke run)")
    args = p.parse_args(argv)
    built, supported = _ext.cpu_capabilities()
    caps = args.caps.split(",") if args.caps else list(reversed(supported))
    bad = [c for c in caps if c not in supported]
    if bad:
        p.error(f"capabilities {bad} are not supported here; supported: {supported} (built: {built})")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for op in args.ops.split(","):
            for rnd in range(args.rounds):
                for cap in (caps if rnd % 2 == 0 else caps[::-1]):
                    print(f"[cpu_capabilities] {op} with {cap} (round {rnd + 1})", flush=True)
                    rows += run_capability(op, cap, args, Path(tmp) / str(rnd))
    if rows:
        _common.append_csv(rows, "cpu")  # each row keeps the context (capability, time) of its own process
    print(f"\ndevice: {_common.device_name('cpu')}; capabilities built: {built}, supported here: {supported}\n")
    print(f"{args.rounds} round(s); x = (t / t_reference) of {caps[0]} over that of the capability, best round\n")
    print(table(rows, caps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
