"""Benchmark of fastnoise.ops.noise_mul: x * (mu + sigma * delta) (CTRW), mu and sigma per element; cases in benchmarks/_noise_cases.py.

    python benchmarks/run.py --ops noise_mul
"""
from __future__ import annotations

from benchmarks import _noise_cases
from benchmarks._common import Case


def cases(device: str, quick: bool = False) -> list[Case]:
    return _noise_cases.cases(device, quick, op="noise_mul")
