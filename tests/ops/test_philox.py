"""The `fastnoise::philox` op (fastnoise/ops/philox.py) behind fastnoise.rng.raw / uniform / normal: the RNG
contract (DESIGN §4), known answers, bit-identical streams, layout independence, bad input."""
import numpy as np
import pytest
import torch

import fastnoise
from fastnoise import rng
from fastnoise.reference import rng as ref_rng
from conformance import backend_device_params, backends_on

# Random123 known-answer vectors for Philox4x32-10: (counter, key) -> output
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]

MAX = 2 ** 63 - 1
CPU_BACKENDS = backends_on("cpu", "rng")


def devices_backends():
    """(device, backend) of every non-reference backend of the "rng" family (dispatch table)."""
    return [pytest.param(p.values[1], p.values[0], id=p.id, marks=p.marks)
            for p in backend_device_params("rng", reference=False)]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_reference_philox_known_answers(ctr, key, expected):
    got = ref_rng.philox4x32_10(*[np.array([c], dtype=np.uint64) for c in ctr], *key)
    assert tuple(int(w[0]) for w in got) == expected


@pytest.mark.parametrize("device,backend", devices_backends())
def test_stream_known_answer_counter_zero(device, backend):
    # seed 0, elements 0..3 = the words of Philox(ctr=0, key=0); elements 4..7 = counter 1
    got = fastnoise.rng.raw(8, seed=0, offset=0, device=device, backend=backend).cpu().tolist()
    assert tuple(got[:4]) == KAT[0][2]
    # seed = 0xFFFFFFFF_FFFFFFFF is outside [0, 2**63); key (k0, k1) = (seed lo, seed hi)
    s = (0x7FFFFFFF << 32) | 0x12345678
    words = ref_rng.philox4x32_10(*[np.array([c], dtype=np.uint64) for c in (1, 0, 0, 0)], 0x12345678, 0x7FFFFFFF)
    got = fastnoise.rng.raw(4, seed=s, offset=4, device=device, backend=backend).cpu().tolist()
    assert got == [int(w[0]) for w in words]


CASES = [(0, 0, 1), (1, 0, 4), (42, 3, 1001), (2 ** 40 + 5, 2 ** 33 + 1, 777), (2 ** 63 - 1, 2 ** 62 + 2, 65), (7, 5, 0)]


@pytest.mark.parametrize("seed,offset,count", CASES)
@pytest.mark.parametrize("device,backend", devices_backends())
def test_raw_and_uniform_bit_identical_to_reference(seed, offset, count, device, backend):
    for fn in (fastnoise.rng.raw, fastnoise.rng.uniform):
        want = fn(count, seed, offset, backend="reference")
        got = fn(count, seed, offset, device=device, backend=backend).cpu()
        assert got.dtype == want.dtype and got.shape == (count,)
        assert torch.equal(got, want), f"{fn.__name__}: {(got != want).sum()} elements differ"


@pytest.mark.parametrize("seed,offset,count", CASES)
@pytest.mark.parametrize("device,backend", devices_backends())
def test_normal_matches_reference_to_a_few_ulp(seed, offset, count, device, backend):
    want = fastnoise.rng.normal(count, seed, offset, backend="reference")
    got = fastnoise.rng.normal(count, seed, offset, device=device, backend=backend).cpu()
    # 4 ulp of float32 at the magnitude of the value, and 4 ulp of 1 near zero crossings
    tol = 4 * torch.finfo(torch.float32).eps * torch.clamp(want.abs(), min=1.0)
    assert ((got - want).abs() <= tol).all(), f"max diff {(got - want).abs().max()}"


def test_every_element_depends_only_on_seed_and_index():
    # a slice of the stream equals the same elements generated from an earlier offset
    full = fastnoise.rng.raw(1000, 9, 10)
    for off in (11, 13, 14, 500):
        part = fastnoise.rng.raw(100, 9, off)
        assert torch.equal(part, full[off - 10: off - 10 + 100])


def test_cpu_value_independent_of_thread_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = fastnoise.rng.normal(100_003, 5, 3, backend="cpu")
        torch.set_num_threads(2)
        b = fastnoise.rng.normal(100_003, 5, 3, backend="cpu")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(a, b)


def test_triton_value_independent_of_block_size():
    from fastnoise.triton_kernels import rng as trng
    state = fastnoise.rng.make_state(123, 6)
    for kind in (0, 1, 2):
        assert torch.equal(trng.philox(state, 777, kind, block=64), trng.philox(state, 777, kind, block=1024))


def test_distribution_moments():
    u = fastnoise.rng.uniform(1 << 20, 1)
    n = fastnoise.rng.normal(1 << 20, 2)
    assert 0 <= u.min() and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 2e-3 and abs(u.var().item() - 1 / 12) < 2e-3
    assert abs(n.mean().item()) < 5e-3 and abs(n.std().item() - 1) < 5e-3
    # normals of even and odd elements are independent (cos and sin of the same pair)
    assert abs(torch.corrcoef(torch.stack([n[0::2], n[1::2]]))[0, 1].item()) < 5e-3


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(count=-1, seed=0), ValueError, "count"),
    (dict(count=3, seed=-1), ValueError, "seed"),
    (dict(count=3, seed=2 ** 63), ValueError, "seed"),
    (dict(count=3, seed=0, offset=-4), ValueError, "offset"),
    (dict(count=3.0, seed=0), TypeError, "count"),
    (dict(count=3, seed=0, backend="tpu"), ValueError, "backend must be one of"),
])
def test_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fastnoise.rng.raw(**kwargs)


def test_unusable_backend_says_why():
    with pytest.raises(fastnoise.BackendUnavailableError, match="CUDA tensors only"):
        fastnoise.rng.raw(4, 0, backend="cuda")


def test_use_backend_setter_and_context_manager():
    assert fastnoise.current_backend() is None
    with fastnoise.use_backend("reference"):
        assert fastnoise.current_backend() == "reference"
        with fastnoise.use_backend("triton"):
            assert fastnoise.current_backend() == "triton"
        assert fastnoise.current_backend() == "reference"
    assert fastnoise.current_backend() is None
    fastnoise.use_backend("reference")
    try:
        assert fastnoise.current_backend() == "reference"
    finally:
        fastnoise.use_backend(None)
    assert "cpu" in fastnoise.available_backends("cpu")
    assert "cuda" not in fastnoise.available_backends("cpu")


def test_phox_stream_advances_and_round_trips():
    s = fastnoise.rng.PhiloxStream(seed=5)
    a = s.next(10)
    b = s.next(3)
    assert a.tolist() == [5, 0] and b.tolist() == [5, 12] and s.state.tolist() == [5, 16]
    t = fastnoise.rng.PhiloxStream()
    t.load_state_dict(s.state_dict())
    assert t.state.tolist() == [5, 16]


def test_global_stream_manual_seed_reproducible():
    fastnoise.rng.manual_seed(3)
    a = fastnoise.rng.next_state(5, "cpu").tolist()
    b = fastnoise.rng.next_state(5, "cpu").tolist()
    fastnoise.rng.manual_seed(3)
    assert fastnoise.rng.next_state(5, "cpu").tolist() == a
    assert a == [3, 0] and b == [3, 8]


@pytest.mark.parametrize("fn", [rng.raw, rng.uniform, rng.normal])
def test_rng_counts_and_ranges(fn):
    with pytest.raises(ValueError, match=r"count must be an int in \[0, 9223372036854775807\], got 18446744073709551616"):
        fn(2 ** 64, 0)  # was: "Expected a value of type 'int' ... found type 'int'"
    with pytest.raises(ValueError, match="offset \\+ count must stay below 2\\*\\*63"):
        fn(8, 0, MAX - 3)
    assert fn(4, 0, MAX - 3).shape == (4,)  # the last four elements of the stream exist
    with pytest.raises(ValueError, match="device must be a device string"):
        fn(4, 0, device="bogus")


def test_philox_stream_never_wraps_into_negative_offsets():
    s = rng.PhiloxStream(1)
    s.state[1] = MAX - 8  # room for 8 more elements (the next offset must stay below 2**63)
    assert s.next(8).tolist() == [1, MAX - 8] and int(s.state[1]) == MAX
    with pytest.raises(ValueError, match="noise stream of seed 1 is exhausted"):
        s.next(1)
    with pytest.raises(TypeError, match="numel must be an int"):
        s.next(1.5)
    with pytest.raises(ValueError, match="numel must be an int"):
        s.next(-4)
    # the rule without a host sync (GPU streams, torch.compile): offset + n - 2**63, never negative
    t = rng.PhiloxStream(2)
    t.state[1] = MAX - 3
    torch.compile(lambda: t.next(8), fullgraph=True, backend="eager")()
    assert t.state.tolist() == [2, MAX - 3 + 8 - 2 ** 63] and int(t.state[1]) >= 0
    t.state[1] = 100
    torch.compile(lambda: t.next(8), fullgraph=True, backend="eager")()
    assert t.state.tolist() == [2, 108]
