"""Accuracy of the normals of the `fastnoise::philox` op (kind 2) against the float64 reference (the ulp
bound documented in fastnoise/rng.py).

Error unit: ``err = |got - ref| / (2**-23 * max(|ref|, 1))``, i.e. float32 ulps of the value, measured at
least at 1 (near the zero crossings of cos / sin the absolute error is what the transform controls).
The CPU transform is separable, normal = r(a) * trig(t(b)), so it is checked per factor over dense grids
(every 4th of the 2**24 radii at t = 0, every 4th of the 2**24 angles at one radius: the CI time budget)
and end to end over a long stream, with the extreme radii (the tail r = 5.77 of 1 - u = 2**-24 included).
"""
import numpy as np
import pytest
import torch

import fastnoise
from fastnoise.reference import rng as ref_rng

ULP_BOUND = 4.0  # fastnoise.rng.NORMAL_ULP_BOUND (tests/ops/test_philox.py checks the same 4 ulp); maxima printed on failure
EPS = 2.0 ** -23


def _err(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    g, w = got.double(), want.double()
    return (g - w).abs() / (EPS * w.abs().clamp(min=1.0))


def _words(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """Blocks whose pairs are (a, b) and (a, b): elements 0..3 = r cos, r sin, r cos, r sin."""
    a, b = a.astype(np.int64), b.astype(np.int64)
    return torch.from_numpy(np.stack([a, b, a, b], axis=1))


def _check_blocks(words: torch.Tensor, what: str) -> float:
    got = torch.ops.fastnoise_kernels.box_muller(words)
    want = ref_rng.box_muller(words)
    err = _err(got, want)
    worst = float(err.max())
    assert worst <= ULP_BOUND, f"{what}: max error {worst:.3f} ulp at words {words[int(err.max(1).values.argmax())]}"
    return worst


def test_box_muller_kernel_matches_the_stream():
    # the test hook computes exactly what the stream kernels compute for the same words
    words = fastnoise.rng.raw(4 * 1001, seed=5, offset=8).view(-1, 4)
    stream = fastnoise.rng.normal(4 * 1001, seed=5, offset=8).view(-1, 4)
    assert torch.equal(torch.ops.fastnoise_kernels.box_muller(words), stream)


def test_radii():
    # every 4th of the 2**24 values of a >> 8 (a different residue of 4 per word pair), b = 0: t = 0, so the
    # cos elements are r(a) itself; the extreme radii are in test_long_stream_and_tails
    q = np.arange(0, 1 << 24, 4, dtype=np.uint64)
    a, a2 = q << np.uint64(8), (q + np.uint64(1)) << np.uint64(8)
    z = np.zeros_like(a)
    _check_blocks(torch.from_numpy(np.stack([a, z, a2, z], axis=1).astype(np.int64)), "radii")


def test_angles():
    # every 4th of the 2**24 values of b >> 8 (two residues per block) with u(a) = 0.5 (r = sqrt(2 ln 2)):
    # the errors of cos t and sin t over the whole circle
    q = np.arange(0, 1 << 24, 4, dtype=np.uint64)
    b, b2 = q << np.uint64(8), (q + np.uint64(2)) << np.uint64(8)
    a = np.full_like(b, np.uint64(1 << 31))
    _check_blocks(torch.from_numpy(np.stack([a, b, a, b2], axis=1).astype(np.int64)), "angles")


def test_long_stream_and_tails():
    count = 1 << 22
    got = fastnoise.rng.normal(count, seed=2024, offset=3, backend="cpu")
    want = fastnoise.rng.normal(count, seed=2024, offset=3, backend="reference")
    err = _err(got, want)
    assert float(err.max()) <= ULP_BOUND, f"max error {float(err.max()):.3f} ulp"
    # the extreme radii: 1 - u = 2**-24 (r = 5.77) and the smallest u > 0
    a = np.array([0xFFFFFF00, 0xFFFFFFFF, 0xFFFFFE00, 0x00000100, 0x000001FF, 0], dtype=np.uint64)
    b = np.array([0, 0x40000000, 0x80000000, 0xC0000000, 0xFFFFFFFF, 0x12345678], dtype=np.uint64)
    _check_blocks(_words(a, b), "tails")
    tail = torch.ops.fastnoise_kernels.box_muller(_words(a[:1], b[:1]))
    assert abs(float(tail[0, 0]) - (-2 * np.log(2.0 ** -24)) ** 0.5) < 1e-5


def test_triton_within_the_bound():
    count = 1 << 14
    got = fastnoise.rng.normal(count, seed=11, offset=1, backend="triton")
    want = fastnoise.rng.normal(count, seed=11, offset=1, backend="reference")
    assert float(_err(got, want).max()) <= ULP_BOUND


def test_bound_is_the_documented_one():
    assert fastnoise.rng.NORMAL_ULP_BOUND == ULP_BOUND
