"""`pytest benchmarks/`: every case of every benchmarks/bench_<op>.py under pytest-benchmark.

Uses the quick shapes by default (FASTNOISE_BENCH_FULL=1 for the full ones). The side-by-side ratio
table comes from `python benchmarks/run.py` (or `make bench`); this wrapper gives pytest-benchmark's
statistics and comparison tooling (--benchmark-compare, --benchmark-json) for the same variants.
"""
import importlib
import os
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.run import discover  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
QUICK = os.environ.get("FASTNOISE_BENCH_FULL") != "1"


def _params():
    out = []
    for op in discover():
        mod = importlib.import_module(f"benchmarks.bench_{op}")
        for case in mod.cases(DEVICE, quick=QUICK):
            for variant in case.variants:
                out.append(pytest.param(case, variant, id=f"{case.op}-{case.name}-{variant}"))
    return out


@pytest.mark.parametrize("case,variant", _params())
def test_forward(benchmark, case, variant):
    inputs = case.make()
    fn = case.variants[variant]

    def call():
        with torch.no_grad():
            out = fn(inputs)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return out

    call()  # warm up (torch.compile)
    benchmark(call)
