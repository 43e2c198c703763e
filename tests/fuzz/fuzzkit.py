"""Shared pieces of the property-based fuzz suite (issue 16, item 4).

Every fuzz test draws one *case*: valid inputs for a public entry point, and with about even odds one
*mutation* that makes exactly one named argument invalid (wrong type / dtype / shape / device, NaN, inf,
out of range). The outcome rule is the project's (HELPERS.md, DESIGN.md):

* a mutated case must raise ``ValueError`` or ``TypeError`` whose message names the mutated argument
  (`expect_error`); any other exception is an internal error, and a returned value is a silent result;
* a valid case must run and give the result of the reference (`expect_match`: the CPU backend against
  ``backend="reference"``; for entry points without a reference, the test states the property it checks).

Budget: a fixed number of examples per test (`fuzz_settings`), ``derandomize=True`` (the same cases on
every run: CI is reproducible and its time is fixed), no example database, no deadline. The number of cases
tried per target is counted (`COUNTS`) and printed at the end of the session (tests/fuzz/conftest.py).
"""
from __future__ import annotations

import collections
import re
from typing import Any, Callable, Optional

import torch
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

#: cases tried per target, and per (target, outcome) with outcome "error" / "result"
COUNTS: collections.Counter = collections.Counter()
OUTCOMES: collections.Counter = collections.Counter()

FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
#: tolerance of the CPU backend against the reference, per dtype (the reference runs the same math in the
#: same dtype; the kernels may round once more: a few ulps)
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.float64: dict(rtol=1e-10, atol=1e-10),
       torch.float16: dict(rtol=4e-3, atol=2e-3), torch.bfloat16: dict(rtol=3e-2, atol=2e-2)}


def fuzz_settings(n: int):
    """`n` examples, the same on every run; no shrinking (a failure is reported as drawn, at once: shrinking
    re-runs the slow entry points for minutes)."""
    return settings(max_examples=n, derandomize=True, deadline=None, database=None, print_blob=False,
                    suppress_health_check=list(HealthCheck), phases=(Phase.explicit, Phase.generate),
                    report_multiple_bugs=False)


def _names(message: str, arg: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(arg)}(?![A-Za-z0-9_])", message) is not None


def expect_error(target: str, arg: str, call: Callable[[], Any], *, also: tuple = (),
                 types: tuple = (ValueError, TypeError)) -> BaseException:
    """`call()` must raise ValueError / TypeError (or `types`) naming `arg` (or one of `also`)."""
    COUNTS[target] += 1
    OUTCOMES[(target, "error")] += 1
    try:
        out = call()
    except types as e:
        msg = str(e)
        assert any(_names(msg, a) for a in (arg, *also)), \
            f"{target}: the error for a bad {arg!r} does not name it: {type(e).__name__}: {msg}"
        return e
    except Exception as e:  # noqa: BLE001  (anything else is an internal error)
        raise AssertionError(f"{target}: a bad {arg!r} gave an internal error {type(e).__name__}: {e}") from e
    raise AssertionError(f"{target}: a bad {arg!r} gave a result without an error: {_short(out)}")


def run_valid(target: str, call: Callable[[], Any]) -> Any:
    """`call()` on valid inputs must not raise."""
    COUNTS[target] += 1
    OUTCOMES[(target, "result")] += 1
    try:
        return call()
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"{target}: valid inputs raised {type(e).__name__}: {e}") from e


def assert_same(target: str, got: Any, ref: Any, dtype: Optional[torch.dtype] = None) -> None:
    """Tensors (or tuples of them, or None) equal up to the tolerance of `dtype`; NaN where the reference is."""
    got = got if isinstance(got, (tuple, list)) else (got,)
    ref = ref if isinstance(ref, (tuple, list)) else (ref,)
    assert len(got) == len(ref), f"{target}: {len(got)} outputs, the reference has {len(ref)}"
    for i, (g, r) in enumerate(zip(got, ref)):
        if r is None or g is None:
            assert g is None and r is None, f"{target}: output {i} is {_short(g)}, the reference {_short(r)}"
            continue
        assert g.shape == r.shape and g.dtype == r.dtype, \
            f"{target}: output {i} is {g.dtype} {tuple(g.shape)}, the reference {r.dtype} {tuple(r.shape)}"
        if not g.is_floating_point():
            assert torch.equal(g, r), f"{target}: output {i} differs from the reference"
            continue
        tol = TOL[dtype or g.dtype]
        torch.testing.assert_close(g, r, equal_nan=True, **tol, msg=lambda m: f"{target}: output {i}: {m}")


def expect_match(target: str, call: Callable[[str], Any], dtype: Optional[torch.dtype] = None) -> Any:
    """call("cpu") must run and equal call("reference")."""
    got = run_valid(target, lambda: call("cpu"))
    ref = call("reference")
    assert_same(target, got, ref, dtype)
    return got


def _short(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return f"tensor {v.dtype} {tuple(v.shape)}"
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(_short(e) for e in v) + ")"
    return repr(v)[:80]


# ---- strategies --------------------------------------------------------------------------------------

def shape(min_dims: int = 1, max_dims: int = 3, min_side: int = 0, max_side: int = 4):
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


LAYOUTS = ("contiguous", "strided", "transposed", "channels_last", "expanded")


def tensor(seed: int, shp: tuple, dtype: torch.dtype, *, layout: str = "contiguous", special: bool = False,
           lo: Optional[float] = None, hi: Optional[float] = None) -> torch.Tensor:
    """Values of N(0, 1) (or U(lo, hi)) from `seed`, in `dtype`, in one of LAYOUTS (the values do not depend
    on the layout); `special`: some NaN / inf / -0 entries."""
    g = torch.Generator().manual_seed(seed)
    if lo is not None:
        t = torch.rand(shp, generator=g, dtype=torch.float64) * (hi - lo) + lo
    else:
        t = torch.randn(shp, generator=g, dtype=torch.float64)
    if special and t.numel():
        flat = t.view(-1)
        idx = torch.randint(0, flat.numel(), (3,), generator=g)
        flat[idx[0]], flat[idx[1]], flat[idx[2]] = float("nan"), float("inf"), -0.0
    return relayout(t.to(dtype), layout)


def relayout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values with other strides: every other element of a wider buffer ("strided"), the last two
    dims stored transposed, channels-last (4-D), or a stride-0 view of a broadcast dim ("expanded")."""
    if layout == "strided" and t.dim() >= 1:
        buf = torch.zeros(*t.shape[:-1], 2 * t.shape[-1] + 1, dtype=t.dtype)
        buf[..., 1::2] = t
        return buf[..., 1::2]
    if layout == "transposed" and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "channels_last" and t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "expanded" and t.dim() >= 1 and t.numel() and t.shape[0] > 1:
        # rows all equal to the first one: a stride-0 view (the values change, the shape does not)
        return t[:1].expand(t.shape)
    return t


def seeds():
    return st.integers(0, 2 ** 31 - 1)


#: values that are never a valid real hyper-parameter
BAD_NUMBERS = (float("nan"), float("inf"), -float("inf"), "0.5", None, True, [0.1], torch.tensor([0.1, 0.2]))
