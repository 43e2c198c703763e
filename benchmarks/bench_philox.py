"""Benchmark of the `fastnoise::philox` op (fastnoise/ops/philox.py) behind fastnoise.rng.raw / uniform / normal.

One case per stream kind (raw int64 words, float32 uniforms, float32 Box-Muller normals) of 2**24 elements
(2**12 with --quick). Baseline "reference": what a user writes to get the same kind of numbers from PyTorch's
own generator (``torch.randint`` / ``torch.rand`` / ``torch.randn``; the NumPy Philox of
fastnoise.reference.rng is a correctness oracle, far slower, not a fair baseline - as in
benchmarks/_noise_cases.py); "compile(reference)": the same call under torch.compile (Inductor's fused
Philox); then every usable fastnoise backend. Forward only (a stream has no backward).

    python benchmarks/run.py --ops philox [--quick]
"""
from __future__ import annotations

import torch

import fastnoise
from benchmarks._common import Case, reference_variants

BACKENDS = ("cpu", "triton", "cuda")
SEED, OFFSET = 1234, 8


def _case(kind: str, count: int, device: str) -> Case:
    ours = {"raw": fastnoise.rng.raw, "uniform": fastnoise.rng.uniform, "normal": fastnoise.rng.normal}[kind]
    reference = {
        "raw": lambda inp: torch.randint(0, 2 ** 32, (count,), dtype=torch.int64, device=device),
        "uniform": lambda inp: torch.rand(count, device=device),
        "normal": lambda inp: torch.randn(count, device=device),
    }[kind]
    backends = {b: (lambda inp, b=b: ours(count, SEED, OFFSET, device=device, backend=b)) for b in BACKENDS}
    esize = 8 if kind == "raw" else 4  # raw words are int64 in [0, 2**32), uniforms / normals float32
    return Case(op="philox", name=f"{kind} n={count}", make=dict,
                variants=reference_variants(reference, backends, device), bytes_moved=count * esize, loss=None)


def cases(device: str, quick: bool = False) -> list[Case]:
    count = 1 << 12 if quick else 1 << 24
    return [_case(kind, count, device) for kind in ("raw", "uniform", "normal")]
