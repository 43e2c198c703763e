"""Run every benchmark module (benchmarks/bench_*.py) and print one table; append to results/bench.csv.

    python benchmarks/run.py [--ops mask_blend,noise] [--device cpu|cuda] [--no-backward] [--quick]
                             [--exclude-variants "compile(reference)"]
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks import _common  # noqa: E402


def discover() -> list[str]:
    return sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ops", default=None, help=f"comma-separated subset of {discover()}")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-backward", action="store_true")
    p.add_argument("--min-run-time", type=float, default=1.0, help="seconds per timing (CPU)")
    p.add_argument("--quick", action="store_true", help="small shapes (smoke run)")
    p.add_argument("--exclude-variants", default="", help="comma-separated variant names not to time")
    args = p.parse_args(argv)
    ops = args.ops.split(",") if args.ops else discover()
    unknown = sorted(set(ops) - set(discover()))
    if unknown:
        p.error(f"unknown ops {unknown}; valid: {discover()}")
    rows = []
    excluded = {v.strip() for v in args.exclude_variants.split(",") if v.strip()}
    for op in ops:
        mod = importlib.import_module(f"benchmarks.bench_{op}")
        for case in mod.cases(args.device, quick=args.quick):
            case.variants = {k: v for k, v in case.variants.items() if k == "reference" or k not in excluded}
            print(f"[bench] {case.op} {case.name}", flush=True)
            rows += _common.run_case(case, args.device, backward=not args.no_backward,
                                     min_run_time=args.min_run_time)
    path = _common.append_csv(rows, args.device)
    print(f"\ndevice: {_common.device_name(args.device)}; results appended to {path}\n")
    print(_common.format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
