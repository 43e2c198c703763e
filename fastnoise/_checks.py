"""Argument checks shared by every public op: each error names the argument and what was expected."""
from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def tensor(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def floating(name: str, x: object) -> torch.Tensor:
    """`x` must be a floating tensor of a supported dtype."""
    x = tensor(name, x)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating tensor (float32, float16, bfloat16 or float64), got {x.dtype}")
    return x


def same_shape(name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if x.shape != ref.shape:
        raise ValueError(f"{name} must have the shape of {ref_name}, {tuple(ref.shape)}, got {tuple(x.shape)}")


def same_dtype(name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if x.dtype != ref.dtype:
        raise TypeError(f"{name} must have the dtype of {ref_name}, {ref.dtype}, got {x.dtype}")


def same_device(name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if x.device != ref.device:
        raise ValueError(f"{name} must be on the device of {ref_name}, {ref.device}, got {x.device}")


def like(name: str, x: object, ref_name: str, ref: torch.Tensor, *, shape: bool = True) -> torch.Tensor:
    """`x` must be a floating tensor with the dtype and device (and shape) of `ref`."""
    x = floating(name, x)
    if shape:
        same_shape(name, x, ref_name, ref)
    same_dtype(name, x, ref_name, ref)
    same_device(name, x, ref_name, ref)
    return x


def number(name: str, v: object, *, lo: Optional[float] = None, hi: Optional[float] = None,
           lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite real number in the given interval."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    v = float(v)
    lb = "(" if lo_open else "["
    rb = ")" if hi_open else "]"
    interval = f"{lb}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{rb}"
    bad = (not math.isfinite(v)
           or (lo is not None and (v < lo or (lo_open and v == lo)))
           or (hi is not None and (v > hi or (hi_open and v == hi))))
    if bad:
        raise ValueError(f"{name} must be a finite number in {interval}, got {v}")
    return v


def integer(name: str, v: object, *, lo: Optional[int] = None, hi: Optional[int] = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, torch.SymInt):
            return v
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be an int in [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}], got {v}")
    return v


def choice(name: str, v: object, choices: Sequence[str]) -> str:
    if v not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {v!r}")
    return v  # type: ignore[return-value]


def nonnegative_tensor(name: str, t: torch.Tensor) -> None:
    """Values of a parameter tensor must be finite and >= 0 (skipped while tracing: data-dependent)."""
    if _tracing():
        return
    if t.numel() and (not bool(torch.isfinite(t).all()) or bool((t < 0).any())):
        raise ValueError(f"{name} must be finite and >= 0 everywhere, got min {t.min().item()}")


def broadcastable_to(name: str, p: torch.Tensor, shape: Iterable[int], what: str) -> None:
    try:
        torch.broadcast_shapes(tuple(p.shape), tuple(shape))
        ok = len(p.shape) <= len(tuple(shape)) and tuple(torch.broadcast_shapes(tuple(p.shape), tuple(shape))) == tuple(shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must broadcast to {what} {tuple(shape)}, got shape {tuple(p.shape)}")


def _tracing() -> bool:
    try:
        return torch.compiler.is_compiling()
    except AttributeError:  # pragma: no cover
        return False


MAX_SEED = 2 ** 63 - 1


def seed_offset(seed: object, offset: object) -> tuple[int, int]:
    seed = integer("seed", seed, lo=0, hi=MAX_SEED)
    offset = integer("offset", offset, lo=0, hi=MAX_SEED)
    return seed, offset


def stream_range(offset: int, count: int, name: str = "offset") -> None:
    """Elements offset .. offset + count - 1 of a stream must all lie below 2**63 (the contract of fastnoise.rng)."""
    if count > 0 and offset > MAX_SEED - (count - 1):
        raise ValueError(f"{name} + count must stay below 2**63 (the last element of a stream is 2**63 - 1): "
                         f"offset {offset} with {count} elements runs past it")


def rng_state(name: str, state: object, numel: int = 0) -> torch.Tensor:
    """An RNG state: an int64 tensor of shape (2,) = [seed, offset], seed and offset in [0, 2**63), and
    room for `numel` elements after offset (`stream_range`).

    The values are checked only when reading them costs no host sync: a CPU tensor outside a
    torch.compile trace. A CUDA state is read by the kernel on the device (DESIGN: CUDA-graph safe), so
    its values are the caller's responsibility there (fastnoise's own streams never produce bad ones).
    """
    state = tensor(name, state)
    if state.dtype != torch.int64 or tuple(state.shape) != (2,):
        raise ValueError(f"{name} must be an int64 tensor of shape (2,) = [seed, offset], got "
                         f"{state.dtype} of shape {tuple(state.shape)}")
    if state.device.type == "cpu" and not _tracing():
        seed, offset = (int(v) for v in state.tolist())
        if seed < 0 or offset < 0:
            raise ValueError(f"{name} must hold [seed, offset] with seed and offset in [0, 2**63), got "
                             f"[{seed}, {offset}] (like seed= and offset=)")
        stream_range(offset, int(numel), f"{name} offset")
    return state


def device(name: str, d: object) -> torch.device:
    """A torch.device from a str / torch.device (ValueError naming `name` for anything torch refuses)."""
    if isinstance(d, torch.device):
        return d
    if not isinstance(d, str):
        raise TypeError(f"{name} must be a torch.device or a device string such as 'cpu' or 'cuda:0', got "
                        f"{type(d).__name__}")
    try:
        return torch.device(d)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name} must be a device string such as 'cpu' or 'cuda:0', got {d!r}") from None
