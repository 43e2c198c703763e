"""The RNG contract: one counter-based generator, Philox4x32-10, bit-identical in every backend.

Bit layout (the same in csrc/philox.h, fastnoise/triton_kernels/philox.py and
fastnoise/reference/rng.py):

* key: ``k0 = seed & 0xffffffff``, ``k1 = seed >> 32`` (seed in [0, 2**63)).
* element ``g = offset + i`` of a call (``i`` the flat, row-major index of the output element) lives
  in Philox block ``c = g >> 2``: counter words ``(c & 0xffffffff, c >> 32, 0, 0)``.
  (Counter word 2 is reserved for independent sub-streams; every op uses 0 today.)
* ``raw(g)`` = output word ``g & 3`` of ``Philox4x32_10(counter, key)``.
* ``uniform(g) = (raw(g) >> 8) * 2**-24``: in [0, 1), exact in float32, bit-identical everywhere.
* ``normal(g)``: Box-Muller on words ``(2j, 2j + 1)`` of block ``c``, ``j = (g >> 1) & 1``:
  ``r = sqrt(-2 log(1 - uniform(w[2j])))``, ``t = float32(2*pi) * uniform(w[2j+1])`` (one float32
  product), ``normal(g) = r cos t`` for even ``g`` and ``r sin t`` for odd ``g``. Backends agree to a
  few ulp (their log/sin/cos differ); a backend's forward and backward agree bit for bit.

The value of an element depends only on (seed, offset + i): never on grid, block, thread count or
vector width. Ops never store noise for the backward pass; they regenerate it from the state.

A *state* is an int64 tensor ``[seed, offset]`` on the device of the data. Layers keep one as a
buffer (:class:`PhiloxStream`) and advance its offset after every call, so compiled graphs read
fresh offsets without recompiling. Functional ops without an explicit seed draw from the global
stream, seeded by :func:`manual_seed`.

Ranges: seed and offset lie in [0, 2**63), and a call's elements offset .. offset + count - 1 stay
below 2**63. Integer arguments are checked everywhere; a state tensor is checked where that costs no
host sync (a CPU tensor, outside torch.compile: `fastnoise._checks.rng_state`). A stream never wraps into
negative offsets: `PhiloxStream.next` raises on a CPU stream that would pass 2**63, and a stream on a GPU
(or under torch.compile, where the check would need a host sync) continues at ``offset + n - 2**63``
(the period is 2**63 elements: ~10**5 years of 10**9 elements per second).
"""
from __future__ import annotations

from typing import Optional, Union

import torch

from . import _backend, _checks

__all__ = ["raw", "uniform", "normal", "manual_seed", "make_state", "next_state", "PhiloxStream",
           "KIND_RAW", "KIND_UNIFORM", "KIND_NORMAL", "NORMAL_ULP_BOUND"]

KIND_RAW, KIND_UNIFORM, KIND_NORMAL = 0, 1, 2

#: the "few ulp" of the normals' contract: |normal - reference| <= NORMAL_ULP_BOUND * 2**-23 * max(|ref|, 1)
#: against the float64 Box-Muller of fastnoise.reference.rng, for every backend (tests/ops/test_philox.py,
#: tests/ops/test_philox_accuracy.py)
NORMAL_ULP_BOUND = 4.0
_DEVICE = Union[str, torch.device]


def make_state(seed: int, offset: int = 0, device: _DEVICE = "cpu") -> torch.Tensor:
    """The int64 tensor ``[seed, offset]`` that every noise op takes, on `device`."""
    seed, offset = _checks.seed_offset(seed, offset)
    return torch.tensor([seed, offset], dtype=torch.int64, device=_checks.device("device", device))


def _stream(count: int, seed: int, offset: int, kind: int, device: _DEVICE, backend: Optional[str]) -> torch.Tensor:
    count = _checks.integer("count", count, lo=0, hi=_checks.MAX_SEED)
    state = make_state(seed, offset, device)
    _checks.stream_range(int(offset), count)
    # the op `fastnoise::philox` is defined by fastnoise/ops/philox.py (loaded by `import fastnoise`): this
    # module sits below the ops and reaches the kernel through torch's op registry, not a Python import
    return torch.ops.fastnoise.philox(state, count, kind, _backend.resolve(state.device, backend))


def raw(count: int, seed: int, offset: int = 0, *, device: _DEVICE = "cpu",
        backend: Optional[str] = None) -> torch.Tensor:
    """Raw 32-bit words of elements ``offset .. offset+count-1`` of the stream `seed`, as int64 in [0, 2**32).

    >>> fastnoise.rng.raw(4, seed=0)  # words of Philox4x32_10(ctr=0, key=0)
    tensor([1713891541, 3781805453, 3159862348, 2600524760])
    """
    return _stream(count, seed, offset, KIND_RAW, device, backend)


def uniform(count: int, seed: int, offset: int = 0, *, device: _DEVICE = "cpu",
            backend: Optional[str] = None) -> torch.Tensor:
    """float32 uniforms in [0, 1): ``(raw >> 8) * 2**-24``; bit-identical across backends."""
    return _stream(count, seed, offset, KIND_UNIFORM, device, backend)


def normal(count: int, seed: int, offset: int = 0, *, device: _DEVICE = "cpu",
           backend: Optional[str] = None) -> torch.Tensor:
    """float32 standard normals (Box-Muller, see the module docstring); backends agree to a few ulp."""
    return _stream(count, seed, offset, KIND_NORMAL, device, backend)


# ---- streams that advance ---------------------------------------------------------------------

def _round4(n: int) -> int:
    return (int(n) + 3) // 4 * 4


class _GlobalStream:
    def __init__(self) -> None:
        self.seed: Optional[int] = None
        self.offset = 0

    def next(self, numel: int) -> tuple[int, int]:
        if self.seed is None:  # follow torch's global seed unless fastnoise.rng.manual_seed was called
            self.seed = int(torch.randint(0, 2 ** 62, (1,)).item())
        if self.offset + numel - 1 > _checks.MAX_SEED:
            raise ValueError(f"the global noise stream (seed {self.seed}) is exhausted at offset {self.offset}: "
                             f"{numel} more elements pass 2**63; call fastnoise.rng.manual_seed")
        out = (self.seed, self.offset)
        self.offset += _round4(numel)
        return out


_global = _GlobalStream()


def manual_seed(seed: int) -> None:
    """Seed the global stream used by functional ops called without a seed (offset restarts at 0)."""
    _global.seed, _ = _checks.seed_offset(seed, 0)
    _global.offset = 0


def next_state(numel: int, device: _DEVICE, seed: Optional[int] = None, offset: Optional[int] = None) -> torch.Tensor:
    """The state for a call using `numel` noise elements.

    With `seed` given: ``[seed, offset or 0]``, nothing advances. Without: the next slice of the global
    stream, which advances by `numel` rounded up to a multiple of 4.
    """
    numel = _checks.integer("numel", numel, lo=0)
    if seed is None:
        if offset is not None:
            raise ValueError("offset requires seed: pass both, or neither to use the global stream")
        seed, offset = _global.next(numel)
    state = make_state(seed, 0 if offset is None else offset, device)
    _checks.stream_range(0 if offset is None else offset, numel)
    return state


class PhiloxStream(torch.nn.Module):
    """A per-module noise stream: a buffer ``state = [seed, offset]`` whose offset advances per call.

    ``seed=None`` draws the seed from torch's global generator at construction (so
    ``torch.manual_seed`` makes models reproducible). The buffer follows ``.to(device)`` and is saved
    in the state_dict, so a reloaded model continues the same stream. `next(numel)` returns the
    state to use now and advances the offset in place (tensor ops only: safe under torch.compile).
    """

    def __init__(self, seed: Optional[int] = None) -> None:
        super().__init__()
        if seed is None:
            seed = int(torch.randint(0, 2 ** 62, (1,)).item())
        self.register_buffer("state", make_state(seed, 0))

    def next(self, numel: int) -> torch.Tensor:
        """The state for a call of `numel` elements (a copy); the buffer's offset advances by numel rounded
        up to a multiple of 4. Past 2**63: an error on CPU, the wrap rule of the module docstring elsewhere."""
        n = _round4(_checks.integer("numel", numel, lo=0))
        # `+ 0`, not `.clone()`: under torch.compile (2.13) inductor drops a clone of a buffer that is mutated
        # afterwards (pytorch/pytorch#198031, #156786), so the state saved for the backward aliased the
        # advanced buffer and every noise-dependent gradient was computed from the next draw's noise
        # (design note 43; tests/nn/test_noise_layers.py, tests/nn/test_noise_conv_layers.py check it).
        current = self.state + 0
        if n == 0:
            return current
        limit = _checks.MAX_SEED - n + 1  # offsets >= limit would pass 2**63 - 1
        if self.state.device.type == "cpu" and not _checks._tracing():
            if int(self.state[1]) >= limit:
                raise ValueError(f"the noise stream of seed {int(self.state[0])} is exhausted: offset "
                                 f"{int(self.state[1])} + {n} elements passes 2**63; reseed it (PhiloxStream.reseed)")
            self.state[1] += n
        else:  # no host sync: (offset + n) mod 2**63 without int64 overflow in either branch of the select
            off = self.state[1]
            self.state[1] = torch.where(off >= limit, off - limit, off.clamp(max=limit - 1) + n)
        return current

    def reseed(self, seed: int, offset: int = 0) -> None:
        seed, offset = _checks.seed_offset(seed, offset)
        with torch.no_grad():
            self.state.copy_(torch.tensor([seed, offset], dtype=torch.int64))

    def extra_repr(self) -> str:
        s, o = self.state.tolist()
        return f"seed={s}, offset={o}"
