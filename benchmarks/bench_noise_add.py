"""Benchmark of fastnoise.ops.noise_add: x + sigma * delta (RSE), sigma per channel; cases in benchmarks/_noise_cases.py.

    python benchmarks/run.py --ops noise_add
"""
from __future__ import annotations

from benchmarks import _noise_cases
from benchmarks._common import Case


def cases(device: str, quick: bool = False) -> list[Case]:
    return _noise_cases.cases(device, quick, op="noise_add")
